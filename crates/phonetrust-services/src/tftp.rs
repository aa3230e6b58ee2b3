//! The TFTP server (UDP, port 69 by default): read requests only, served from
//! [`Provisioning`]. The protocol rules are `phonetrust_proto::tftp_server` (sans-IO:
//! option negotiation within a policy, one block before the client proves it is real,
//! ACK-clocked windows); this module owns the sockets and the clock:
//!
//! - one task reads requests on the listening socket; each transfer runs on a task of its
//!   own with a socket of its own (its transfer ID), connected to the client so that
//!   nobody else can feed it;
//! - a transfer holds a slot of a [`Limiter`] (global and per client address); requests
//!   over the caps get a TFTP error at once ("Server busy"), never a silent drop;
//! - each transfer has an absolute deadline on a timer (a base plus time for the file's
//!   size at a minimum rate), whatever the client sends;
//! - files are read block by block as the window advances (static files are streamed
//!   from disk, never read whole);
//! - refusals are logged at warn, summarised (one line per few seconds with a count).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phonetrust_proto::tftp_server::{self, ReadRequest, ServerPolicy, Step};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::UdpSocket;

use crate::ServiceError;
use crate::limits::{Admission, Busy, Limiter, Throttle};
use crate::provision::{Content, NotServed, Provisioning, Via};

/// What the TFTP and HTTP shells serve from: content by name.
pub trait FileSource: Send + Sync + 'static {
    /// The file named `name`, asked for by `peer` over `via`.
    fn open(
        &self,
        name: &str,
        peer: SocketAddr,
        via: Via,
    ) -> impl std::future::Future<Output = Result<Content, NotServed>> + Send;
}

impl FileSource for Provisioning {
    async fn open(&self, name: &str, _peer: SocketAddr, via: Via) -> Result<Content, NotServed> {
        Provisioning::serve_via(self, name, via).await
    }
}

/// TFTP settings.
#[derive(Clone, Debug)]
pub struct TftpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Retransmission timeout when the client does not negotiate one.
    pub timeout: Duration,
    /// What options are granted and how often blocks are sent again.
    pub policy: ServerPolicy,
    /// Longest a transfer may take, whatever the client does: this, plus
    /// [`min_rate`](Self::min_rate) for the file's size.
    pub transfer_deadline: Duration,
    /// Slowest rate a transfer is given time for (bytes per second).
    pub min_rate: u64,
    /// Transfers at once, all clients.
    pub max_transfers: usize,
    /// Transfers at once from one address.
    pub max_per_address: usize,
    /// Longest the file lookup may take.
    pub lookup_deadline: Duration,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], phonetrust_proto::ports::TFTP)),
            timeout: Duration::from_secs(3),
            policy: ServerPolicy::default(),
            transfer_deadline: Duration::from_secs(120),
            min_rate: 16 * 1024,
            max_transfers: 1024,
            max_per_address: 64,
            lookup_deadline: Duration::from_secs(10),
        }
    }
}

impl TftpConfig {
    /// The deadline of a transfer of `len` bytes.
    pub fn deadline_for(&self, len: u64) -> Duration {
        self.transfer_deadline + Duration::from_secs(len / self.min_rate.max(1))
    }
}

struct Shared<S> {
    source: Arc<S>,
    cfg: TftpConfig,
    limiter: Limiter,
    busy_log: Throttle,
    refused_log: Throttle,
    deadline_log: Throttle,
    /// Transfers that failed (client gone, retries exhausted), lookups that timed out,
    /// sockets that could not be opened: summarised.
    failed_log: Throttle,
    notfound_log: Throttle,
}

/// A TFTP server running on tokio tasks.
pub struct TftpServer {
    local: SocketAddr,
    limiter: Limiter,
    task: tokio::task::JoinHandle<()>,
}

impl TftpServer {
    /// Bind and start serving `source` (call from within a tokio runtime).
    pub fn start<S: FileSource>(source: Arc<S>, cfg: TftpConfig) -> Result<Self, ServiceError> {
        let sock =
            std::net::UdpSocket::bind(cfg.listen).map_err(|e| ServiceError::Bind(cfg.listen, e))?;
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        let sock = UdpSocket::from_std(sock)?;
        let limiter = Limiter::new(cfg.max_transfers, cfg.max_per_address);
        let shared = Arc::new(Shared {
            source,
            cfg,
            limiter: limiter.clone(),
            busy_log: Throttle::new(Duration::from_secs(5)),
            refused_log: Throttle::new(Duration::from_secs(5)),
            deadline_log: Throttle::new(Duration::from_secs(5)),
            failed_log: Throttle::new(Duration::from_secs(5)),
            notfound_log: Throttle::new(Duration::from_secs(1)),
        });
        let task = tokio::spawn(dispatch(sock, shared));
        Ok(Self {
            local,
            limiter,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Transfers running now.
    pub fn transfers(&self) -> usize {
        self.limiter.in_use()
    }

    /// Wait until the server stops (it runs until the process exits).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Reads requests; never blocks on a transfer.
async fn dispatch<S: FileSource>(sock: UdpSocket, shared: Arc<Shared<S>>) {
    // Requests fit in 512 bytes (RFC 1350); a longer datagram is cut and then refused.
    let mut buf = vec![0u8; 1024];
    let recv_log = Throttle::new(Duration::from_secs(5));
    let local_ip = sock.local_addr().map(|a| a.ip()).ok();
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                if let Some(k) = recv_log.hit(Instant::now()) {
                    tracing::warn!(error = %e, count = k, "TFTP: receiving a request failed");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let req = match tftp_server::accept(buf.get(..n).unwrap_or_default(), &shared.cfg.policy) {
            Ok(r) => r,
            Err(refused) => {
                if let Some(k) = shared.refused_log.hit(Instant::now()) {
                    tracing::warn!(%peer, file = refused.name.as_deref().unwrap_or("-"), reason = refused.reason, count = k, "TFTP: request refused");
                }
                let _ = sock.send_to(&refused.reply, peer).await;
                continue;
            }
        };
        let slot = match shared.limiter.admit(peer.ip()) {
            Ok(s) => s,
            Err(busy) => {
                if let Some(k) = shared.busy_log.hit(Instant::now()) {
                    tracing::warn!(%peer, file = req.name, count = k, limit = %busy, "TFTP: transfer refused, server busy (raise [tftp] max_transfers / max_transfers_per_address if these are phones)");
                }
                let msg = match busy {
                    Busy::PerAddress(n) => {
                        format!("Server busy: {n} transfers from this address; try again later")
                    }
                    _ => "Server busy; try again later".to_string(),
                };
                let _ = sock
                    .send_to(
                        &tftp_server::error_packet(tftp_server::code::UNDEFINED, &msg),
                        peer,
                    )
                    .await;
                continue;
            }
        };
        tokio::spawn(transfer(shared.clone(), req, peer, local_ip, slot));
    }
}

async fn transfer<S: FileSource>(
    shared: Arc<Shared<S>>,
    req: ReadRequest,
    peer: SocketAddr,
    local_ip: Option<IpAddr>,
    _slot: Admission,
) {
    let cfg = &shared.cfg;
    let name = req.name.clone();
    // The lookup (database, disk) has its own deadline.
    let content = match tokio::time::timeout(
        cfg.lookup_deadline,
        shared.source.open(&name, peer, Via::Tftp),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(NotServed::NotFound(why))) => {
            crate::metrics::TFTP.inc("not_found");
            if let Some(k) = shared.notfound_log.hit(Instant::now()) {
                tracing::info!(%peer, file = name, reason = why, count = k, "TFTP: File not found");
            }
            Err((tftp_server::code::FILE_NOT_FOUND, "File not found"))
        }
        Ok(Err(e @ NotServed::Unavailable(..))) => {
            crate::metrics::TFTP.inc("busy");
            // The phone tries its next TFTP server, or this one again later.
            if let Some(k) = shared.failed_log.hit(Instant::now()) {
                tracing::warn!(%peer, file = name, error = %e, count = k, "TFTP: Server busy (database unavailable)");
            }
            Err((tftp_server::code::UNDEFINED, "Server busy; try again later"))
        }
        Ok(Err(e)) => {
            tracing::error!(%peer, file = name, error = %e, "TFTP: cannot serve");
            Err((tftp_server::code::FILE_NOT_FOUND, "File not found"))
        }
        Err(_) => {
            if let Some(k) = shared.failed_log.hit(Instant::now()) {
                tracing::warn!(%peer, file = name, count = k, "TFTP: the file lookup timed out");
            }
            Err((tftp_server::code::UNDEFINED, "Server busy; try again later"))
        }
    };
    let sock = match open_tid(local_ip, peer).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(k) = shared.failed_log.hit(Instant::now()) {
                tracing::warn!(%peer, file = name, error = %e, count = k, "TFTP: no socket for the transfer{}", crate::limits::fd_hint(&e));
            }
            return;
        }
    };
    let content = match content {
        Ok(c) => c,
        Err((code, msg)) => {
            let _ = sock.send(&tftp_server::error_packet(code, msg)).await;
            return;
        }
    };
    let len = content.len();
    let deadline = cfg.deadline_for(len);
    let started = Instant::now();
    match tokio::time::timeout(deadline, run(&sock, cfg, req, content)).await {
        Ok(Ok(sent)) => {
            crate::metrics::TFTP.inc("ok");
            tracing::debug!(%peer, file = name, bytes = len, sent, ms = started.elapsed().as_millis() as u64, "TFTP read");
        }
        Ok(Err(e)) => {
            crate::metrics::TFTP.inc("failed");
            if let Some(k) = shared.failed_log.hit(Instant::now()) {
                tracing::info!(%peer, file = name, error = %e, count = k, "TFTP: transfer failed");
            }
        }
        Err(_) => {
            crate::metrics::TFTP.inc("timeout");
            if let Some(k) = shared.deadline_log.hit(Instant::now()) {
                tracing::warn!(%peer, file = name, bytes = len, secs = deadline.as_secs(), count = k, "TFTP: transfer deadline passed, given up");
            }
            let _ = sock
                .send(&tftp_server::error_packet(
                    tftp_server::code::UNDEFINED,
                    "Transfer took too long",
                ))
                .await;
        }
    }
}

/// A socket for one transfer: a new port on the address the request came to (or any),
/// connected to the client.
async fn open_tid(local_ip: Option<IpAddr>, peer: SocketAddr) -> std::io::Result<UdpSocket> {
    let ip = match local_ip {
        Some(ip) if !ip.is_unspecified() => ip,
        _ if peer.is_ipv4() => IpAddr::from([0, 0, 0, 0]),
        _ => IpAddr::from([0u16; 8]),
    };
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    sock.connect(peer).await?;
    Ok(sock)
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Transfer(tftp_server::TransferError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

enum Reader {
    Mem(Arc<[u8]>, usize),
    File(tokio::io::Take<BufReader<tokio::fs::File>>),
}

impl Reader {
    /// Up to `n` bytes (fewer only at the end).
    async fn block(&mut self, n: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        out.clear();
        match self {
            Self::Mem(b, pos) => {
                let rest = b.get(*pos..).unwrap_or_default();
                let take = rest.get(..n.min(rest.len())).unwrap_or_default();
                out.extend_from_slice(take);
                *pos += take.len();
            }
            Self::File(f) => {
                out.resize(n, 0);
                let mut got = 0;
                while got < n {
                    let dst = out.get_mut(got..).unwrap_or_default();
                    let k = f.read(dst).await?;
                    if k == 0 {
                        break;
                    }
                    got += k;
                }
                out.truncate(got);
            }
        }
        Ok(())
    }
}

async fn fill(
    t: &mut tftp_server::ReadTransfer,
    reader: &mut Reader,
    sock: &UdpSocket,
    buf: &mut Vec<u8>,
) -> Result<(), RunError> {
    while let Some(n) = t.wants_block() {
        reader.block(n, buf).await?;
        let p = t.push_block(buf);
        sock.send(&p).await?;
    }
    Ok(())
}

/// One transfer; returns the bytes sent.
async fn run(
    sock: &UdpSocket,
    cfg: &TftpConfig,
    req: ReadRequest,
    content: Content,
) -> Result<u64, RunError> {
    let len = content.len();
    let mut reader = match content {
        Content::Bytes(b) => Reader::Mem(b, 0),
        Content::File(f, n) => Reader::File(BufReader::with_capacity(64 * 1024, f).take(n)),
    };
    let (mut t, first) = tftp_server::ReadTransfer::start(req.negotiated, Some(len), &cfg.policy);
    let rto = t
        .client_timeout()
        .map_or(cfg.timeout, |s| Duration::from_secs(u64::from(s)));
    for p in first {
        sock.send(&p).await?;
    }
    let mut block = Vec::new();
    fill(&mut t, &mut reader, sock, &mut block).await?;
    // ACKs are 4 bytes, ERRORs at most a message; longer datagrams are cut.
    let mut buf = vec![0u8; 1024];
    // The retransmission timer runs from the last datagram sent: packets that change
    // nothing (duplicate ACKs) do not push it back.
    let mut timer = tokio::time::Instant::now() + rto;
    loop {
        let step = match tokio::time::timeout_at(timer, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => t.on_packet(buf.get(..n).unwrap_or_default()),
            // ICMP "port unreachable": the client has gone.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(RunError::Transfer(tftp_server::TransferError::ClientError(
                    0,
                    "port unreachable".into(),
                )));
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => t.on_timeout(),
        };
        match step {
            Step::Send(v) => {
                let mut sent = !v.is_empty();
                for p in v {
                    sock.send(&p).await?;
                }
                let before = t.sent_bytes();
                fill(&mut t, &mut reader, sock, &mut block).await?;
                sent |= t.sent_bytes() != before;
                if sent {
                    timer = tokio::time::Instant::now() + rto;
                }
            }
            Step::Done => return Ok(t.sent_bytes()),
            Step::Failed(e, reply) => {
                if let Some(p) = reply {
                    let _ = sock.send(&p).await;
                }
                return Err(RunError::Transfer(e));
            }
        }
    }
}
