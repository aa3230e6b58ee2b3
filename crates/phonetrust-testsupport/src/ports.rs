//! Ports for test servers, reserved without races and outside the ephemeral range.
//!
//! Asking the kernel for port 0 and closing the socket hands out an ephemeral port that
//! the next outgoing connection of any process (another test's client) may take before
//! the server binds it. Ports here come from 20000–32767, below Linux's ephemeral range
//! (32768–60999), and each is held by a lock file (`<tmp>/phonetrust-test-ports/N.lock`)
//! until the [`Port`] is dropped, so two tests — in this process or another test binary
//! running at the same time — never get the same port. A port is handed out only when
//! TCP and UDP on 127.0.0.1 (and .2, .3 where configured) bind it at that moment.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Mutex;

/// The range ports are taken from.
pub const RANGE: std::ops::Range<u16> = 20_000..32_768;

static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A reserved port: free when reserved, and given to no one else until dropped.
#[derive(Debug)]
pub struct Port {
    port: u16,
    _lock: File,
}

impl Port {
    /// The port number.
    pub fn get(&self) -> u16 {
        self.port
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.port)
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let mut t = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = t.as_mut() {
            set.remove(&self.port);
        }
    }
}

/// Free for TCP and UDP on 127.0.0.1, and on 127.0.0.2 and .3 where the system has them
/// (Linux: all of 127/8), which cluster tests give their other nodes.
fn bindable(port: u16) -> bool {
    let free = |ip: &str| {
        std::net::TcpListener::bind((ip, port)).is_ok()
            && std::net::UdpSocket::bind((ip, port)).is_ok()
    };
    let absent = |ip: &str| std::net::UdpSocket::bind((ip, 0)).is_err();
    free("127.0.0.1")
        && ["127.0.0.2", "127.0.0.3"]
            .iter()
            .all(|ip| absent(ip) || free(ip))
}

/// Reserve one free port.
pub fn reserve() -> Port {
    let dir = std::env::temp_dir().join("phonetrust-test-ports");
    std::fs::create_dir_all(&dir).expect("creating the port lock directory");
    let span = u32::from(RANGE.end - RANGE.start);
    // Start where other processes are unlikely to: spread by process id and time.
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for i in 0..span {
        let port = RANGE.start + u16::try_from((seed.wrapping_add(i * 7919)) % span).unwrap_or(0);
        {
            let mut t = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
            let set = t.get_or_insert_with(HashSet::new);
            if set.contains(&port) {
                continue;
            }
            let Ok(lock) = File::create(dir.join(format!("{port}.lock"))) else {
                continue;
            };
            if lock.try_lock().is_err() || !bindable(port) {
                continue;
            }
            set.insert(port);
            return Port { port, _lock: lock };
        }
    }
    panic!("no free port in {RANGE:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_free_and_locked() {
        let a = reserve();
        let b = reserve();
        assert_ne!(a.get(), b.get());
        for p in [&a, &b] {
            assert!(RANGE.contains(&p.get()), "{p} outside the range");
            // Held for this test: the lock file cannot be taken by another reservation.
            let f = File::create(
                std::env::temp_dir()
                    .join("phonetrust-test-ports")
                    .join(format!("{p}.lock")),
            )
            .unwrap();
            assert!(f.try_lock().is_err(), "{p} not locked");
            // And still free to bind for the server under test.
            assert!(bindable(p.get()));
        }
        let n = a.get();
        drop(a);
        let f = File::create(
            std::env::temp_dir()
                .join("phonetrust-test-ports")
                .join(format!("{n}.lock")),
        )
        .unwrap();
        assert!(f.try_lock().is_ok(), "released on drop");
    }
}
