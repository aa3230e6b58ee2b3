//! The real network as [`phonetrust_rules::doctor`] sees it: name resolution and a TCP
//! connection with a short deadline. Used by `phonetrust doctor` and the web pages that
//! show a diagnosis. The checks block; on a multi-threaded runtime they run with
//! [`tokio::task::block_in_place`] so the other tasks of the worker move elsewhere.

use std::net::ToSocketAddrs;
use std::time::Duration;

use phonetrust_rules::doctor::Probe;

/// How long one connection attempt may take.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(3);

/// The real network.
#[derive(Clone, Copy, Debug, Default)]
pub struct Net;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Probe for Net {
    fn resolves(&self, host: &str) -> Result<(), String> {
        blocking(|| match (host, 0).to_socket_addrs() {
            Ok(mut a) => a.next().map(|_| ()).ok_or_else(|| "no address".into()),
            Err(e) => Err(e.to_string()),
        })
    }

    fn connects(&self, host: &str, port: u16) -> Result<(), String> {
        blocking(|| {
            let addrs: Vec<_> = (host, port)
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .collect();
            let mut last = "no address".to_string();
            for a in addrs {
                match std::net::TcpStream::connect_timeout(&a, CONNECT_DEADLINE) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("{a}: {e}"),
                }
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_port_connects_and_a_closed_one_does_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(Net.connects("127.0.0.1", port), Ok(()));
        assert!(Net.resolves("127.0.0.1").is_ok());
        drop(l);
        let e = Net.connects("127.0.0.1", port).unwrap_err();
        assert!(e.contains("127.0.0.1"), "{e}");
        assert!(Net.resolves("no-such-host.invalid").is_err());
    }
}
