//! The TFTP server (UDP, port 69 by default): read requests only, served from
//! [`Provisioning`]. The protocol engine is `async-tftp` (RFC 1350 with option
//! negotiation: blksize, timeout, tsize, windowsize; retransmission on timeout; duplicate
//! ACKs ignored), running on a thread of its own; this module is the bridge to our
//! namespace (the [`FileSource`] trait), the refusals, and a per-transfer deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use futures_lite::AsyncRead;

use crate::ServiceError;
use crate::provision::{NotServed, Provisioning};

/// What the TFTP and HTTP shells serve from: bytes by name.
pub trait FileSource: Send + Sync + 'static {
    /// The file named `name`, asked for by `peer`.
    fn open(
        &self,
        name: &str,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Result<Arc<[u8]>, NotServed>> + Send;
}

impl FileSource for Provisioning {
    async fn open(&self, name: &str, _peer: SocketAddr) -> Result<Arc<[u8]>, NotServed> {
        Provisioning::open(self, name).await
    }
}

/// TFTP settings.
#[derive(Clone, Debug)]
pub struct TftpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Retransmission timeout when the client does not ask for one.
    pub timeout: Duration,
    /// Retransmissions of a block before the transfer is given up.
    pub max_retries: u32,
    /// Longest a transfer may take, whatever the client does.
    pub transfer_deadline: Duration,
    /// Largest block size granted (RFC 2348 allows up to 65464).
    pub max_block_size: u16,
    /// Largest window granted (RFC 7440).
    pub max_window_size: u16,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], phonetrust_proto::ports::TFTP)),
            timeout: Duration::from_secs(3),
            max_retries: 5,
            transfer_deadline: Duration::from_secs(120),
            max_block_size: 16384,
            max_window_size: 64,
        }
    }
}

/// The bytes of one transfer; fails once the transfer deadline has passed.
pub struct Transfer {
    bytes: Arc<[u8]>,
    pos: usize,
    deadline: Instant,
}

impl AsyncRead for Transfer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if Instant::now() > self.deadline {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "transfer deadline passed",
            )));
        }
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

/// Refuses writes; never accepts a byte.
pub struct NoWrite;

impl futures_lite::AsyncWrite for NoWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Err(std::io::ErrorKind::PermissionDenied.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct Bridge<S: FileSource> {
    source: Arc<S>,
    rt: tokio::runtime::Handle,
    deadline: Duration,
}

impl<S: FileSource> Handler for Bridge<S> {
    type Reader = Transfer;
    type Writer = NoWrite;

    async fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Transfer, Option<u64>), packet::Error> {
        let name = path.to_string_lossy().into_owned();
        let (source, peer) = (self.source.clone(), *client);
        // The namespace lives on the tokio runtime (database, files); the handler only
        // waits for it, so it stays cheap for the serialised TFTP dispatcher.
        let lookup = {
            let name = name.clone();
            self.rt.spawn(async move { source.open(&name, peer).await })
        };
        match lookup.await {
            Ok(Ok(bytes)) => {
                tracing::debug!(%peer, file = name, bytes = bytes.len(), "TFTP read");
                let len = bytes.len() as u64;
                Ok((
                    Transfer {
                        bytes,
                        pos: 0,
                        deadline: Instant::now() + self.deadline,
                    },
                    Some(len),
                ))
            }
            Ok(Err(NotServed::NotFound(why))) => {
                tracing::info!(%peer, file = name, reason = why, "TFTP: File not found");
                Err(packet::Error::FileNotFound)
            }
            Ok(Err(e)) => {
                tracing::error!(%peer, file = name, error = %e, "TFTP: cannot serve");
                Err(packet::Error::FileNotFound)
            }
            Err(e) => {
                tracing::error!(%peer, file = name, error = %e, "TFTP: lookup task failed");
                Err(packet::Error::UnknownError)
            }
        }
    }

    async fn write_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
        _size: Option<u64>,
    ) -> Result<NoWrite, packet::Error> {
        tracing::info!(peer = %client, file = %path.display(), "TFTP: write request refused");
        Err(packet::Error::Msg(
            "Access violation: this server is read-only".into(),
        ))
    }
}

/// A TFTP server running on its own thread.
pub struct TftpServer {
    local: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TftpServer {
    /// Bind and start serving `source` (call from within a tokio runtime).
    pub fn start<S: FileSource>(source: Arc<S>, cfg: TftpConfig) -> Result<Self, ServiceError> {
        let sock =
            std::net::UdpSocket::bind(cfg.listen).map_err(|e| ServiceError::Bind(cfg.listen, e))?;
        let local = sock.local_addr()?;
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| ServiceError::Other(format!("TFTP needs a tokio runtime: {e}")))?;
        let bridge = Bridge {
            source,
            rt,
            deadline: cfg.transfer_deadline,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tftp".into())
            .spawn(move || {
                futures_lite::future::block_on(async move {
                    let built = async {
                        TftpServerBuilder::with_handler(bridge)
                            .std_socket(sock)?
                            .timeout(cfg.timeout)
                            .max_send_retries(cfg.max_retries)
                            .block_size_limit(cfg.max_block_size)
                            .window_size_limit(cfg.max_window_size)
                            .build()
                            .await
                    }
                    .await;
                    match built {
                        Ok(server) => {
                            let _ = tx.send(Ok(()));
                            if let Err(e) = server.serve().await {
                                tracing::error!(error = %e, "TFTP server stopped");
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            })?;
        rx.recv()
            .map_err(|_| ServiceError::Other("the TFTP thread died".into()))?
            .map_err(ServiceError::Other)?;
        Ok(Self {
            local,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Wait until the server thread ends (it runs until the process exits).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
