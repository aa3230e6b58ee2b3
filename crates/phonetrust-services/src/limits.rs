//! What one service may hold at once: a global count and a count per client address,
//! each with its cap ([`Limiter`]), and log lines that summarise a flood instead of
//! writing one line per refused packet ([`Throttle`]).
//!
//! Every connection, transfer or session holds an [`Admission`] for as long as it lives;
//! dropping it gives the slot back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a new client was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Busy {
    /// The service holds its global maximum.
    #[error("the service is at its limit of {0} at once")]
    Global(usize),
    /// This address holds its maximum.
    #[error("this address is at its limit of {0} at once")]
    PerAddress(usize),
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_addr: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Inner {
    global: usize,
    per_addr: usize,
    counts: Mutex<Counts>,
}

/// Caps on what a service holds at once, globally and per address.
#[derive(Clone, Debug)]
pub struct Limiter {
    inner: Arc<Inner>,
}

impl Limiter {
    /// At most `global` at once, at most `per_addr` from one address (0 means 1).
    pub fn new(global: usize, per_addr: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                global: global.max(1),
                per_addr: per_addr.max(1),
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Take a slot for a client at `addr`.
    pub fn admit(&self, addr: IpAddr) -> Result<Admission, Busy> {
        let mut c = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.total >= self.inner.global {
            return Err(Busy::Global(self.inner.global));
        }
        let n = c.by_addr.entry(addr).or_insert(0);
        if *n >= self.inner.per_addr {
            return Err(Busy::PerAddress(self.inner.per_addr));
        }
        *n += 1;
        c.total += 1;
        Ok(Admission {
            inner: self.inner.clone(),
            addr,
        })
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .total
    }

    /// The global cap.
    pub fn global(&self) -> usize {
        self.inner.global
    }

    /// The per-address cap.
    pub fn per_address(&self) -> usize {
        self.inner.per_addr
    }
}

/// One slot of a [`Limiter`], given back when dropped.
#[derive(Debug)]
pub struct Admission {
    inner: Arc<Inner>,
    addr: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_addr.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                c.by_addr.remove(&self.addr);
            }
        }
    }
}

/// " (file descriptors exhausted: …)" when `e` is EMFILE or ENFILE, for accept-failure
/// log lines; otherwise empty.
pub fn fd_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(23 | 24) => {
            " (file descriptors exhausted: raise LimitNOFILE, or lower the services' max_* settings)"
        }
        _ => "",
    }
}

/// Lets one log line through per interval and counts the ones held back, so that a
/// flood of refusals costs a line every few seconds, each saying how many it stands for.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// One line per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// An event happened at `now`: `Some(n)` when it should be logged, `n` being how many
    /// events (this one included) the line stands for.
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.1 += 1;
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => None,
            _ => {
                s.0 = Some(now);
                Some(std::mem::take(&mut s.1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_per_address_caps() {
        let l = Limiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Busy::PerAddress(2));
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Busy::Global(3));
        drop(a1);
        assert_eq!(l.in_use(), 2);
        let _b2 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Busy::Global(3));
    }

    #[test]
    fn a_flood_is_summarised() {
        let t = Throttle::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(t.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.hit(t0 + Duration::from_secs(6)), Some(1000));
    }
}
