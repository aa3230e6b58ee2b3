//! The TVS server (Trust Verification Service): TLS on the TVS port (2445), presenting the
//! node's TVS certificate; phones ask whether a certificate their ITL/CTL does not list is
//! trusted, and for which roles. Framing and answers are
//! [`phonetrust_proto::tvs_server`]; this shell owns the sockets, the deadlines and the
//! trust index.
//!
//! The index maps a certificate's SHA-256 fingerprint to its roles. It holds this node's
//! own certificates (CallManager as SAST + CCM+TFTP, CallManager-ECDSA as TFTP, CAPF, TVS,
//! ITLRecovery as SAST), every record of the CTL being served, CallManager-trust (CCM) and
//! Phone-SAST-trust (SAST). [`TvsServer::watch`] rebuilds it within a second of a change to
//! any of them (a regenerated certificate, `utils ctl update CTLFile`, an import), without a
//! restart, and swaps the TLS certificate when TVS's own changes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::{Ssl, SslAcceptor, SslVersion};
use openssl::x509::X509;
use phonetrust_pki::profiles::OwnCert;
use phonetrust_proto::trustlist;
use phonetrust_proto::tvs_server::{Request, ServerSession, SessionError, Verdict, respond};
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::{TrustCert, TrustStore};
use phonetrust_store::{Db, identity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{RwLock, Semaphore};
use tokio_openssl::SslStream;

use crate::ServiceError;
use crate::limits::{Admission, Limiter, Throttle};

/// Settings of the TVS server.
#[derive(Clone, Debug)]
pub struct TvsConfig {
    /// Address to listen on (port 2445 by default).
    pub listen: SocketAddr,
    /// Lowest TLS version accepted (TLS 1.0: old phones need it).
    pub min_tls: SslVersion,
    /// TTL sent with a "valid" answer: how long a phone may cache it (seconds).
    pub ttl: u32,
    /// Longest a whole request may take to arrive (from the end of the previous answer,
    /// or the handshake): bytes that trickle in do not extend it.
    pub read_timeout: Duration,
    /// Longest the TLS handshake may take.
    pub handshake_timeout: Duration,
    /// TLS handshakes in progress at once (from the accept to the end of the handshake,
    /// the wait for a session slot included); further connections are closed at once,
    /// except that a client of a lighter address takes the oldest slot of the heaviest.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one address.
    pub max_handshakes_per_address: usize,
    /// Sessions at once; further phones wait for a free slot.
    pub max_sessions: usize,
    /// Connections at once (sessions and those waiting for a slot); further ones are
    /// closed at once.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_per_address: usize,
    /// Longest a connection waits for a session slot before it is closed.
    pub slot_wait: Duration,
    /// How often the sources of the index are checked for changes.
    pub refresh: Duration,
}

impl Default for TvsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], phonetrust_proto::ports::TVS)),
            min_tls: SslVersion::TLS1,
            ttl: 86_400,
            read_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            max_handshakes_per_address: 64,
            max_sessions: 10_000,
            max_connections: 12_000,
            max_per_address: 64,
            slot_wait: Duration::from_secs(5),
            refresh: Duration::from_secs(1),
        }
    }
}

pub use phonetrust_rules::tvs::{Entry, Sources, TrustIndex, build_index};

/// What a phone sent, for the log: subject, issuer and serial of an untrusted certificate
/// (x509-parser; never panics on garbage).
fn describe(der: &[u8]) -> (String, String, String) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => (
            c.subject().to_string(),
            c.issuer().to_string(),
            c.raw_serial_as_string()
                .replace(':', "")
                .to_ascii_uppercase(),
        ),
        Err(_) => ("(not a certificate)".into(), String::new(), String::new()),
    }
}

/// The verdict for one request, logged as the TVS log does (the certificate is parsed for
/// the log line only when that line is written).
pub fn decide(index: &TrustIndex, ttl: u32, peer: SocketAddr, req: &Request) -> Verdict {
    let device = req.device.as_deref().unwrap_or("(no device name)");
    let Some(der) = req.certificate.as_deref() else {
        static NO_CERT: Throttle = Throttle::new(Duration::from_secs(5));
        if let Some(k) = NO_CERT.hit(std::time::Instant::now()) {
            tracing::info!(%peer, device, count = k, "tvsHandleQueryCertReq : no certificate in the request; answered invalid");
        }
        return Verdict::Unknown;
    };
    let entry = index.lookup(der);
    if tracing::enabled!(tracing::Level::INFO) {
        let (subject, issuer, serial) = describe(der);
        let found = match entry {
            Some(e) => {
                let roles: Vec<String> =
                    e.roles.iter().map(|r| format!("{{role : {r}}}")).collect();
                let sources: Vec<&str> = e.sources.iter().map(String::as_str).collect();
                format!(
                    "getCertificateInformation - Found entry {{rolecount : {}}} {} (from {})",
                    e.roles.len(),
                    roles.join(" "),
                    sources.join(", ")
                )
            }
            None => "ERROR:getCertificateInformation - Cannot find the certificate in the cache"
                .to_string(),
        };
        tracing::info!(
            %peer, device,
            "tvsHandleQueryCertReq : Subject Name is: {subject} ; Issuer Name is: {issuer} ; Serial Number is: {serial} ; {found}"
        );
    }
    crate::metrics::TVS.inc(if entry.is_some() {
        "trusted"
    } else {
        "unknown"
    });
    phonetrust_rules::tvs::verdict(entry, ttl)
}

struct State {
    index: Arc<TrustIndex>,
    acceptor: Arc<SslAcceptor>,
    /// What the index was built from.
    stamp: Stamp,
}

/// What the index depends on, cheap to take every second: the identity files'
/// fingerprint, the stored CTL's SHA-256 and time, the SHA-256 of every row of
/// CallManager-trust and Phone-SAST-trust. Nothing is parsed unless it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    identity: u64,
    ctl: Option<(String, i64)>,
    trust: Vec<(TrustStore, String)>,
    /// The cluster's stamp: another node's new certificate is trusted at once.
    cluster: u64,
}

/// A running TVS server.
pub struct TvsServer {
    db: Db,
    data: DataDir,
    cfg: TvsConfig,
    state: RwLock<State>,
    sessions: Semaphore,
    connections: Limiter,
    handshakes: Limiter,
    busy_log: Throttle,
    handshake_log: Throttle,
    listener: std::sync::Mutex<Option<TcpListener>>,
    addr: SocketAddr,
}

/// The stamp now, with the trust rows it was taken from.
async fn stamp(db: &Db, data: &DataDir) -> Result<(Stamp, Vec<TrustCert>), String> {
    let rows: Vec<TrustCert> = db
        .trust_list(None)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|c| matches!(c.store, TrustStore::CallManager | TrustStore::PhoneSast))
        .collect();
    let ctl = db.ctl_stamp().await.map_err(|e| e.to_string())?;
    let stamp = Stamp {
        identity: identity::files_fingerprint(data),
        ctl,
        trust: rows
            .iter()
            .map(|c| (c.store, c.fingerprint.clone()))
            .collect(),
        cluster: db.cluster_stamp().await.map_err(|e| e.to_string())?,
    };
    Ok((stamp, rows))
}

/// Read the sources (identity, CTL, the trust rows' certificates); the TVS certificate and
/// key come along for the TLS context.
async fn load(
    db: &Db,
    data: &DataDir,
    rows: &[TrustCert],
) -> Result<(Sources, phonetrust_proto::cert::CertAndKey), String> {
    let id = identity::load(data).map_err(|e| e.to_string())?;
    let tvs = id
        .get(OwnCert::Tvs)
        .cloned()
        .ok_or("the identity has no TVS certificate (run `phonetrust init`)")?;
    let ctl = db.ctl().await.map_err(|e| e.to_string())?.map(|c| c.bytes);
    let mut src = Sources {
        own: id.all().map(|(w, c)| (w, c.cert.clone())).collect(),
        ctl,
        ..Sources::default()
    };
    let me = id.node().map(|n| n.host);
    let published = phonetrust_rules::cluster::Published::load(db)
        .await
        .map_err(|e| e.to_string())?;
    for (node, which, cert) in published.others(me.as_deref()) {
        match cert {
            Ok(c) => src.peers.push((node.to_string(), which, c.clone())),
            Err(e) => {
                tracing::warn!(node, %which, error = %e, "TVS: a published node certificate does not parse; it is not trusted")
            }
        }
    }
    for row in rows {
        let cert = X509::from_pem(row.pem.as_bytes())
            .map_err(|e| format!("{} {}: {e}", row.store, row.name))?;
        match row.store {
            TrustStore::CallManager => src.callmanager_trust.push(cert),
            _ => src.phone_sast_trust.push(cert),
        }
    }
    Ok((src, tvs))
}

fn log_ctl_cache(src: &Sources) {
    let Some(ctl) = &src.ctl else { return };
    let Ok(list) = trustlist::parse(ctl) else {
        return;
    };
    for r in list.plain_records() {
        let serial = r
            .serial
            .as_deref()
            .map(phonetrust_proto::codec::hex)
            .unwrap_or_default()
            .to_ascii_uppercase();
        let subject = r.subject.clone().unwrap_or_default();
        tracing::info!(
            "tvs_sql_get_all_CTL_certificate - Unique Key used for Caching :: {serial}{subject}, length : {}",
            serial.len() + subject.len()
        );
    }
}

impl TvsServer {
    /// Bind the TVS port and build the index from the node in `data`.
    pub async fn bind(db: Db, data: DataDir, cfg: TvsConfig) -> Result<Arc<Self>, ServiceError> {
        let (stamp, rows) = stamp(&db, &data).await.map_err(ServiceError::Other)?;
        let (src, tvs) = load(&db, &data, &rows).await.map_err(ServiceError::Other)?;
        let acceptor = crate::capf::acceptor(&tvs, cfg.min_tls)?;
        let index = build_index(&src);
        log_problems(&index);
        tracing::info!(certificates = index.len(), "TVS certificate cache built");
        log_ctl_cache(&src);
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| ServiceError::Bind(cfg.listen, e))?;
        let addr = listener.local_addr()?;
        Ok(Arc::new(Self {
            state: RwLock::new(State {
                index: Arc::new(index),
                acceptor: Arc::new(acceptor),
                stamp,
            }),
            sessions: Semaphore::new(cfg.max_sessions),
            connections: Limiter::new(cfg.max_connections, cfg.max_per_address),
            handshakes: Limiter::new(cfg.max_handshakes, cfg.max_handshakes_per_address),
            busy_log: Throttle::new(Duration::from_secs(5)),
            handshake_log: Throttle::new(Duration::from_secs(5)),
            db,
            data,
            cfg,
            listener: std::sync::Mutex::new(Some(listener)),
            addr,
        }))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current index.
    pub async fn index(&self) -> Arc<TrustIndex> {
        self.state.read().await.index.clone()
    }

    /// Re-read the sources now; true when the index changed.
    pub async fn refresh_now(&self) -> Result<bool, String> {
        let (stamp, rows) = stamp(&self.db, &self.data).await?;
        let old = self.state.read().await.stamp.clone();
        if stamp == old {
            return Ok(false);
        }
        let (src, tvs) = load(&self.db, &self.data, &rows).await?;
        if stamp.ctl != old.ctl {
            tracing::info!(
                "CertificateCache::localCTLCacheMonitor - CTLFile.tlv has been modified. Recaching CTL Certificate Cache"
            );
            log_ctl_cache(&src);
        }
        let acceptor = crate::capf::acceptor(&tvs, self.cfg.min_tls).map_err(|e| e.to_string())?;
        let index = build_index(&src);
        log_problems(&index);
        tracing::info!(
            certificates = index.len(),
            "TVS certificate cache refreshed"
        );
        *self.state.write().await = State {
            index: Arc::new(index),
            acceptor: Arc::new(acceptor),
            stamp,
        };
        Ok(true)
    }

    /// Follow changes of the sources until the task is dropped: every `refresh`, and at
    /// once when the cluster announces one (PostgreSQL `NOTIFY`). While the database
    /// cannot be read, the index read last answers.
    pub async fn watch(self: Arc<Self>) {
        let mut feed = self.db.changes();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.refresh) => {}
                _ = feed.changed() => {}
            }
            if let Err(e) = self.refresh_now().await {
                tracing::warn!(error = %e, "TVS: refreshing the certificate cache failed; the old one stays");
            }
        }
    }

    /// Accept phones until the task is dropped (call once).
    pub async fn run(self: Arc<Self>) {
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            tracing::error!("TVS: run called twice");
            return;
        };
        let accept_log = Throttle::new(Duration::from_secs(5));
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let slot = match self.connections.admit(peer.ip()) {
                        Ok(s) => s,
                        Err(busy) => {
                            if let Some(k) = self.busy_log.hit(std::time::Instant::now()) {
                                tracing::warn!(%peer, count = k, limit = %busy, "TVS: connection closed, server busy");
                            }
                            drop(tcp);
                            continue;
                        }
                    };
                    // A handshake costs memory before anything is known of the client.
                    let hs = match self.handshakes.admit_fair(peer.ip()) {
                        Ok(s) => s,
                        Err(busy) => {
                            if let Some(k) = self.busy_log.hit(std::time::Instant::now()) {
                                tracing::warn!(%peer, count = k, limit = %busy, "TVS: connection closed, too many TLS handshakes in progress");
                            }
                            drop(tcp);
                            continue;
                        }
                    };
                    let me = self.clone();
                    tokio::spawn(async move { me.connection(tcp, peer, slot, hs).await });
                }
                Err(e) => {
                    if let Some(k) = accept_log.hit(std::time::Instant::now()) {
                        tracing::warn!(error = %e, count = k, "TVS: accepting a connection failed{}", crate::limits::fd_hint(&e));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Connections open now (sessions and those waiting for a slot).
    pub fn connections(&self) -> usize {
        self.connections.in_use()
    }

    fn evicted_log(&self, peer: SocketAddr) {
        if let Some(k) = self.busy_log.hit(std::time::Instant::now()) {
            tracing::warn!(%peer, count = k, "TVS: pending TLS handshake closed to make room for a client of another address (all handshake slots in use)");
        }
    }

    /// One connection; `handshake` is its handshake slot (evictable), given back once
    /// the TLS handshake is done.
    async fn connection(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        _slot: Admission,
        handshake: Admission,
    ) {
        // A bounded wait for a session slot, then a close: never an endless queue.
        let wait = tokio::time::timeout(self.cfg.slot_wait, self.sessions.acquire());
        let waited = tokio::select! {
            r = wait => r,
            () = handshake.evicted() => return self.evicted_log(peer),
        };
        let _permit = match waited {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return,
            Err(_) => {
                if let Some(k) = self.busy_log.hit(std::time::Instant::now()) {
                    tracing::warn!(%peer, count = k, sessions = self.cfg.max_sessions, "TVS: no session slot free within {} s; connection closed", self.cfg.slot_wait.as_secs());
                }
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = self.state.read().await.acceptor.clone();
        let ssl = match Ssl::new(acceptor.context()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "TVS: TLS context");
                return;
            }
        };
        let Ok(mut tls) = SslStream::new(ssl, tcp) else {
            return;
        };
        let t = self.cfg.read_timeout;
        let h = self.cfg.handshake_timeout;
        let hs = tokio::time::timeout(h, Pin::new(&mut tls).accept());
        let accepted = tokio::select! {
            r = hs => r,
            () = handshake.evicted() => return self.evicted_log(peer),
        };
        match accepted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if let Some(k) = self.handshake_log.hit(std::time::Instant::now()) {
                    tracing::info!(%peer, error = %e, count = k, "TVS: TLS handshake failed");
                }
                return;
            }
            Err(_) => {
                if let Some(k) = self.handshake_log.hit(std::time::Instant::now()) {
                    tracing::info!(%peer, count = k, "TVS: no TLS handshake within {} s", h.as_secs());
                }
                return;
            }
        }
        drop(handshake);
        let mut session = ServerSession::new();
        let mut buf = vec![0u8; 4096];
        // The next request must be whole by this time; only an answered request moves it.
        let mut deadline = tokio::time::Instant::now() + t;
        loop {
            // Answer everything buffered, then read more.
            loop {
                match session.next_request() {
                    Ok(Some(req)) => {
                        let index = self.state.read().await.index.clone();
                        let verdict = decide(&index, self.cfg.ttl, peer, &req);
                        let bytes = respond(&req, &verdict);
                        // One message, one write.
                        let w = async {
                            tls.write_all(&bytes).await?;
                            tls.flush().await
                        };
                        match tokio::time::timeout(t, w).await {
                            Ok(Ok(())) => deadline = tokio::time::Instant::now() + t,
                            _ => {
                                tracing::info!(%peer, "TVS: could not send the answer; connection closed");
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        refuse(peer, &e);
                        return;
                    }
                }
            }
            let n = match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
                Ok(Ok(0)) => return,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TVS: connection lost");
                    return;
                }
                Err(_) => {
                    if session.pending() > 0 {
                        tracing::info!(%peer, "TVS: incomplete request, nothing more within {} s; connection closed", t.as_secs());
                    }
                    return;
                }
            };
            if let Err(e) = session.feed(buf.get(..n).unwrap_or_default()) {
                refuse(peer, &e);
                return;
            }
        }
    }
}

fn log_problems(index: &TrustIndex) {
    for p in &index.problems {
        tracing::warn!(problem = %p, "TVS: certificate cache");
    }
}

fn refuse(peer: SocketAddr, e: &SessionError) {
    tracing::warn!(%peer, error = %e, "TVS: request refused; connection closed");
}
