//! The CAPF server: TLS on the CAPF Phone Port (TLS 1.0–1.3, static-RSA CBC suites
//! included for old firmware), one task per phone, the session logic in
//! [`phonetrust_proto::capf_server`]. This shell frames messages (length capped, a
//! deadline on every read), answers lookups from the store, issues LSCs with the CAPF key
//! and records outcomes in one transaction before the END_SESSION leaves.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslOptions, SslVersion};
use openssl::x509::X509;
use phonetrust_pki::profiles::lsc;
use phonetrust_proto::capf::Message;
use phonetrust_proto::capf_server::{Action, FailKind, MAX_MESSAGE, Outcome, Plan, ServerSession};
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::clock::unix_now;
use phonetrust_proto::rand::{OsRandom, RandomSource};
use phonetrust_store::Db;
use phonetrust_store::devices::{CapfRecord, device_cert};
use phonetrust_store::model::{DeviceCertKind, TrustStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{RwLock, Semaphore, mpsc, oneshot};
use tokio_openssl::SslStream;

use crate::ServiceError;
use crate::limits::{Admission, Limiter, Throttle};
use phonetrust_rules::authguard::{self, Key};

/// Settings of the CAPF server.
#[derive(Clone, Debug)]
pub struct CapfConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Lowest TLS version accepted (TLS 1.0 by default: old phones need it).
    pub min_tls: SslVersion,
    /// Sessions at once; further phones get RETRY_LATER.
    pub max_sessions: usize,
    /// Sessions at once from one address; further phones there get RETRY_LATER.
    pub max_sessions_per_address: usize,
    /// TLS handshakes in progress at once; further connections are closed at once.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one address.
    pub max_handshakes_per_address: usize,
    /// Longest a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Longest the phone may take to generate its key, REQUEST_IN_PROGRESS messages
    /// included (they do not extend it).
    pub key_gen_timeout: Duration,
    /// RETRY_LATER delay, seconds.
    pub retry_delay: u32,
    /// Authentication failures from one address or device before it is slowed down.
    pub auth_failures_before_backoff: u32,
    /// How long the batched lookups and the group commit wait for more sessions' items
    /// when other sessions are in flight (zero: never wait). A few milliseconds on a
    /// session of several round trips turn one trip to the database per phone into one
    /// per batch.
    pub batch_delay: Duration,
}

impl Default for CapfConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], phonetrust_proto::ports::CAPF)),
            min_tls: SslVersion::TLS1,
            max_sessions: 1000,
            max_sessions_per_address: 100,
            max_handshakes: 256,
            max_handshakes_per_address: 32,
            handshake_timeout: Duration::from_secs(10),
            key_gen_timeout: phonetrust_proto::capf_server::KEY_GEN_TIMEOUT,
            retry_delay: 30,
            auth_failures_before_backoff: 5,
            batch_delay: Duration::from_millis(2),
        }
    }
}

/// The TLS acceptor CAPF presents: the CAPF certificate, TLS `min`–1.3, modern suites
/// first and the static-RSA CBC suites legacy phones need.
pub fn acceptor(capf: &CertAndKey, min: SslVersion) -> Result<SslAcceptor, ServiceError> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.clear_options(SslOptions::NO_TLSV1 | SslOptions::NO_TLSV1_1);
    b.set_security_level(0);
    b.set_min_proto_version(Some(min))?;
    b.set_cipher_list(
        "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:ECDHE+AES:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA:@SECLEVEL=0",
    )?;
    // TLS 1.3: AES-128-GCM with SHA-256 first, and the server's order wins (SHA-384's
    // transcript and key schedule cost both sides more for nothing a phone needs).
    b.set_ciphersuites(
        "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384",
    )?;
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
    b.set_certificate(&capf.cert)?;
    b.set_private_key(&capf.key)?;
    b.check_private_key()?;
    // Phones never resume a session, so there is no session cache. But TLS 1.3 gets one
    // stateless ticket: it is the only thing the server sends right after the handshake,
    // and it carries the ACK of the client's Finished. Without it, a client that leaves
    // Nagle on (most embedded stacks do) holds its first request until the server's
    // delayed ACK, some 40 ms later, on every connection.
    b.set_num_tickets(1)?;
    b.set_session_cache_mode(openssl::ssl::SslSessionCacheMode::OFF);
    // Read whole TLS records (header and body) in one system call.
    b.set_read_ahead(true);
    Ok(b.build())
}

/// What sessions read from the store, cached.
#[derive(Clone)]
struct Settings {
    /// CAPF-trust.
    anchors: Vec<X509>,
    /// LscValidityDays.
    lsc_days: u32,
}

/// The CAPF certificate and the TLS acceptor presenting it: replaced whole when the
/// certificate changes, so a session uses one certificate from handshake to LSC.
struct Presented {
    capf: CertAndKey,
    acceptor: SslAcceptor,
}

/// State shared by the sessions.
struct Shared {
    db: Db,
    presented: std::sync::RwLock<Arc<Presented>>,
    cfg: CapfConfig,
    sessions: Arc<Semaphore>,
    /// Sessions per address.
    per_address: Limiter,
    /// TLS handshakes in progress.
    handshakes: Limiter,
    /// Phones with a session running: a second session of the same phone waits.
    active: std::sync::Mutex<HashSet<String>>,
    busy_log: Throttle,
    /// Failed handshakes (scans, floods): summarised.
    handshake_log: Throttle,
    next_sid: AtomicU32,
    /// When the settings were read, the change feed's generation then, the settings.
    settings: RwLock<(Instant, u64, Settings)>,
    /// Announces cluster changes (CAPF-trust imported on another node).
    changes: phonetrust_store::changes::ChangeFeed,
    /// Authentication failures per phone and per address (phonetrust_rules::authguard).
    failures: std::sync::Mutex<HashMap<Key, authguard::Record>>,
    guard: authguard::Policy,
    rng: OsRandom,
    recorder: mpsc::Sender<(CapfRecord, oneshot::Sender<Result<(), String>>)>,
    lookups: mpsc::Sender<(String, LookupReply)>,
}

type LookupReply = oneshot::Sender<Result<Option<phonetrust_store::model::Device>, LookupError>>;

/// Why a phone's record could not be looked up.
#[derive(Debug)]
enum LookupError {
    /// The name the phone sent is not a device name: the phone is told the operation
    /// failed.
    BadName(String),
    /// The store cannot be read now (the database is down or restarting): the phone is
    /// told RETRY_LATER and nothing is recorded.
    Unavailable(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadName(m) => f.write_str(m),
            Self::Unavailable(m) => write!(f, "the database cannot be read ({m})"),
        }
    }
}

/// Batched lookups: the phones of concurrent sessions are read in one query (one trip
/// to the database worker instead of one each). Always the current rows: a batch holds
/// only lookups waiting at the moment it runs.
async fn looker(db: Db, mut rx: mpsc::Receiver<(String, LookupReply)>, linger: Linger) {
    while let Some(batch) = next_batch(&mut rx, &linger).await {
        let mut names = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for (name, reply) in batch {
            match phonetrust_store::model::device_name(&name) {
                Ok(n) => {
                    names.push(n.clone());
                    waiting.push((n, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(LookupError::BadName(e.to_string())));
                }
            }
        }
        match db.devices_named(&names).await {
            Ok(found) => {
                // Every waiter gets its phone, also when two sessions of one phone wait
                // in the same batch.
                for (n, reply) in waiting {
                    let _ = reply.send(Ok(found.get(&n).cloned()));
                }
            }
            Err(e) => {
                let m = e.to_string();
                for (_, reply) in waiting {
                    let _ = reply.send(Err(LookupError::Unavailable(m.clone())));
                }
            }
        }
    }
}

/// Most outcomes committed in one transaction by the recorder.
const MAX_BATCH: usize = 256;

/// How the batching tasks wait for more: `delay` while more sessions are in flight than
/// the batch holds.
#[derive(Clone)]
struct Linger {
    delay: Duration,
    sessions: Arc<Semaphore>,
    max_sessions: usize,
}

impl Linger {
    fn in_flight(&self) -> usize {
        self.max_sessions
            .saturating_sub(self.sessions.available_permits())
    }
}

/// The next batch: the first item to arrive, then whatever else is waiting (at most
/// [`MAX_BATCH`]) — after waiting `linger.delay` for more when other sessions are in
/// flight, as a database's commit delay does; `None` when every sender is gone.
async fn next_batch<T>(rx: &mut mpsc::Receiver<T>, linger: &Linger) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    drain(rx, &mut batch);
    if !linger.delay.is_zero() && batch.len() < MAX_BATCH && linger.in_flight() > batch.len() {
        tokio::time::sleep(linger.delay).await;
        drain(rx, &mut batch);
    }
    Some(batch)
}

/// Add what is waiting in `rx` to `batch` (up to [`MAX_BATCH`]).
fn drain<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
}

/// Group commit: outcomes of concurrent sessions are written in one transaction (one disk
/// sync), each session told when its own record is committed.
async fn recorder(
    db: Db,
    mut rx: mpsc::Receiver<(CapfRecord, oneshot::Sender<Result<(), String>>)>,
    linger: Linger,
) {
    while let Some(batch) = next_batch(&mut rx, &linger).await {
        let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match db.record_capf_results(&records).await {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(match r {
                        // The phone was deleted meanwhile: nothing to record.
                        Err(phonetrust_store::StoreError::NotFound(_)) => Ok(()),
                        other => other.map_err(|e| e.to_string()),
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, phones = records.len(), "CAPF: recording outcomes failed");
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// A running CAPF server.
pub struct CapfServer {
    shared: Arc<Shared>,
    listener: TcpListener,
}

/// How long CAPF-trust and the LSC validity are taken from the cache.
const SETTINGS_TTL: Duration = Duration::from_secs(5);

impl CapfServer {
    /// Bind the CAPF port with the node's CAPF certificate ([`CapfServer::follow_identity`]
    /// takes over a new one).
    pub async fn bind(db: Db, capf: CertAndKey, cfg: CapfConfig) -> Result<Self, ServiceError> {
        let acceptor = acceptor(&capf, cfg.min_tls)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| ServiceError::Bind(cfg.listen, e))?;
        let mut first = [0u8; 4];
        OsRandom
            .fill(&mut first)
            .map_err(|e| ServiceError::Other(e.to_string()))?;
        // The failures of the last window, kept across restarts.
        let guard = authguard::Policy::with_device_failures(cfg.auth_failures_before_backoff);
        let failures: HashMap<Key, authguard::Record> = db
            .auth_failures(unix_now() - guard.window)
            .await
            .map_err(|e| ServiceError::Other(e.to_string()))?
            .into_iter()
            .filter_map(|f| {
                Some((
                    Key::parse(&f.key)?,
                    authguard::Record {
                        failures: f.failures,
                        last: f.last_failure,
                        locked_until: f.locked_until,
                    },
                ))
            })
            .collect();
        let db_for_recorder = db.clone();
        let db_changes = db.changes();
        let sessions = Arc::new(Semaphore::new(cfg.max_sessions));
        let linger = Linger {
            delay: cfg.batch_delay,
            sessions: sessions.clone(),
            max_sessions: cfg.max_sessions,
        };
        let shared = Arc::new(Shared {
            db,
            presented: std::sync::RwLock::new(Arc::new(Presented { capf, acceptor })),
            sessions,
            per_address: Limiter::new(cfg.max_sessions, cfg.max_sessions_per_address),
            handshakes: Limiter::new(cfg.max_handshakes, cfg.max_handshakes_per_address),
            active: std::sync::Mutex::new(HashSet::new()),
            busy_log: Throttle::new(Duration::from_secs(5)),
            handshake_log: Throttle::new(Duration::from_secs(5)),
            cfg,
            next_sid: AtomicU32::new(u32::from_be_bytes(first) | 1),
            changes: db_changes,
            settings: RwLock::new((
                Instant::now() - SETTINGS_TTL * 2,
                0,
                Settings {
                    anchors: Vec::new(),
                    lsc_days: 1826,
                },
            )),
            failures: std::sync::Mutex::new(failures),
            guard,
            rng: OsRandom,
            lookups: {
                let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
                tokio::spawn(looker(db_for_recorder.clone(), rx, linger.clone()));
                tx
            },
            recorder: {
                let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
                tokio::spawn(recorder(db_for_recorder, rx, linger));
                tx
            },
        });
        Ok(Self { shared, listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServiceError> {
        self.listener.local_addr().map_err(ServiceError::Io)
    }

    /// Follow the node's CAPF certificate: every `every`, when the identity files in
    /// `data` change (`set cert regen CAPF`, an import), the new certificate is taken
    /// over for new sessions — no restart, no window where phones holding a new ITL meet
    /// the old certificate. Runs until the task is dropped.
    pub fn follow_identity(
        &self,
        data: phonetrust_store::layout::DataDir,
        every: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            let mut seen = phonetrust_store::identity::files_fingerprint(&data);
            loop {
                tokio::time::sleep(every).await;
                let fp = phonetrust_store::identity::files_fingerprint(&data);
                if fp == seen {
                    continue;
                }
                match shared.reload(&data) {
                    Ok(()) => seen = fp,
                    Err(e) => {
                        tracing::error!(error = %e, "CAPF: the new CAPF certificate cannot be used; still presenting the old one")
                    }
                }
            }
        }
    }

    /// The CAPF certificate new sessions are given.
    pub fn certificate(&self) -> X509 {
        self.shared.current().capf.cert.clone()
    }

    /// Accept phones until the task is dropped.
    pub async fn run(self) {
        let accept_log = Throttle::new(Duration::from_secs(5));
        loop {
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    // A handshake costs memory and CPU before anything is known of the
                    // client: they are counted, and the excess is closed at once, except
                    // that a lighter address takes a slot from the heaviest one.
                    let slot = match self.shared.handshakes.admit_fair(peer.ip()) {
                        Ok(s) => s,
                        Err(busy) => {
                            if let Some(k) = self.shared.busy_log.hit(Instant::now()) {
                                tracing::warn!(%peer, count = k, limit = %busy, "CAPF: connection closed, too many TLS handshakes in progress");
                            }
                            drop(tcp);
                            continue;
                        }
                    };
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        connection(shared, tcp, peer, slot).await;
                    });
                }
                Err(e) => {
                    if let Some(k) = accept_log.hit(Instant::now()) {
                        tracing::warn!(error = %e, count = k, "CAPF: accepting a connection failed{}", crate::limits::fd_hint(&e));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn send(tls: &mut SslStream<TcpStream>, bytes: &[u8]) -> std::io::Result<()> {
    // One message, one write: the whole buffer goes into one TLS record.
    tokio::time::timeout(Duration::from_secs(20), tls.write_all(bytes))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
    tls.flush().await
}

/// Why no whole message was read from the phone.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The header declares more than [`MAX_MESSAGE`] bytes.
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte cap")]
    TooLarge(usize),
    /// The connection broke or closed.
    #[error("connection lost ({0})")]
    Lost(std::io::Error),
    /// Nothing (whole) within the deadline.
    #[error("no message within {0} s")]
    Silent(u64),
}

async fn read_message(
    tls: &mut SslStream<TcpStream>,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, ReadError> {
    let secs = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .as_secs();
    let fut = async {
        let mut head = [0u8; 8];
        tls.read_exact(&mut head).await.map_err(ReadError::Lost)?;
        let [.., hi, lo] = head;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len + 8 > MAX_MESSAGE {
            return Err(ReadError::TooLarge(len + 8));
        }
        let mut body = vec![0u8; len];
        tls.read_exact(&mut body).await.map_err(ReadError::Lost)?;
        let mut msg = head.to_vec();
        msg.extend_from_slice(&body);
        Ok(msg)
    };
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| ReadError::Silent(secs))?
}

impl Shared {
    fn current(&self) -> Arc<Presented> {
        self.presented
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Take over the CAPF certificate of the identity in `data` if it changed.
    fn reload(&self, data: &phonetrust_store::layout::DataDir) -> Result<(), String> {
        let id = phonetrust_store::identity::load(data).map_err(|e| e.to_string())?;
        let capf = id
            .get(phonetrust_pki::profiles::OwnCert::Capf)
            .ok_or("the identity has no CAPF certificate")?
            .clone();
        let der = |c: &X509| c.to_der().unwrap_or_default();
        if der(&capf.cert) == der(&self.current().capf.cert) {
            return Ok(());
        }
        let acceptor = acceptor(&capf, self.cfg.min_tls).map_err(|e| e.to_string())?;
        tracing::info!(
            subject = %phonetrust_proto::cert::name_string(capf.cert.subject_name()),
            serial = %phonetrust_proto::codec::hex(
                &phonetrust_proto::cert::serial_bytes(&capf.cert).unwrap_or_default()
            ),
            "CAPF: new CAPF certificate in use for new sessions"
        );
        *self.presented.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Presented { capf, acceptor });
        Ok(())
    }

    /// Note an authentication failure of `key` now (when the attempt is evaluated), and
    /// store it so that a restart keeps it.
    async fn note_failure(&self, key: Key) {
        let now = unix_now();
        let rec = {
            let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let r = authguard::after_failure(&self.guard, &key, map.get(&key).copied(), now);
            map.insert(key.clone(), r);
            if map.len() > 100_000 {
                let g = self.guard;
                map.retain(|_, r| !authguard::expired(&g, r, now));
            }
            r
        };
        let stored = phonetrust_store::authfail::AuthFailure {
            key: key.stored(),
            failures: rec.failures,
            last_failure: rec.last,
            locked_until: rec.locked_until,
        };
        // Stored before the phone is answered (the count in memory is already in force).
        if let Err(e) = self
            .db
            .put_auth_failure(&stored, now - self.guard.window)
            .await
        {
            tracing::warn!(key = stored.key, error = %e, "CAPF: could not store an authentication failure (it counts until serve restarts)");
        }
    }

    /// A phone authenticated: its count starts again.
    async fn clear_failures(&self, device: &str) {
        let key = Key::Device(device.to_string());
        let had = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
            .is_some();
        if had && let Err(e) = self.db.clear_auth_failure(&key.stored()).await {
            tracing::warn!(key = key.stored(), error = %e, "CAPF: could not clear the stored authentication failures");
        }
    }

    /// Seconds `key` is still locked for, if it is: the delay RETRY_LATER tells.
    fn backoff_delay(&self, key: &Key) -> Option<u32> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        authguard::locked_for(map.get(key), unix_now())
    }

    /// CAPF-trust and the LSC validity, read from the store at most every
    /// [`SETTINGS_TTL`] and after a cluster change was announced, so a session costs no
    /// extra queries for them. While the store cannot be read, the last ones stay.
    async fn settings(&self) -> Settings {
        let generation = self.changes.generation();
        {
            let c = self.settings.read().await;
            if c.0.elapsed() < SETTINGS_TTL && c.1 == generation {
                return c.2.clone();
            }
        }
        let read = async {
            let anchors = self.db.trust_certs(TrustStore::Capf).await?;
            let days = self
                .db
                .param(phonetrust_store::params::LSC_VALIDITY_DAYS)
                .await?;
            Ok::<_, phonetrust_store::StoreError>(Settings {
                anchors,
                lsc_days: u32::try_from(days).unwrap_or(1826),
            })
        };
        match read.await {
            Ok(fresh) => {
                *self.settings.write().await = (Instant::now(), generation, fresh.clone());
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "CAPF: reading CAPF-trust and LscValidityDays failed; the last ones read stay");
                self.settings.read().await.2.clone()
            }
        }
    }

    async fn plan(
        &self,
        capf: &CertAndKey,
        device: &str,
        now: i64,
    ) -> Result<Option<Plan>, LookupError> {
        let stopped = || LookupError::Unavailable("the lookup task has stopped".into());
        let (tx, rx) = oneshot::channel();
        self.lookups
            .send((device.to_string(), tx))
            .await
            .map_err(|_| stopped())?;
        let d = match rx.await.map_err(|_| stopped())?? {
            Some(d) => d,
            None => return Ok(None),
        };
        let trust = self.settings().await.anchors;
        Ok(Some(phonetrust_rules::capf::plan(
            &d.capf, &capf.cert, trust, now,
        )))
    }

    async fn issue(
        &self,
        capf: &CertAndKey,
        device: &str,
        key: &openssl::pkey::PKeyRef<openssl::pkey::Public>,
        now: i64,
    ) -> Result<Issued, String> {
        let params = lsc(device, &capf.cert, now, self.settings().await.lsc_days);
        let cert =
            phonetrust_pki::issue(&params, key, capf, &self.rng).map_err(|e| e.to_string())?;
        Ok(Issued {
            der: cert.to_der().map_err(|e| e.to_string())?,
            // What the record will hold, taken from the certificate just built (the DER
            // the phone returns is not parsed again).
            record: device_cert(DeviceCertKind::Lsc, &cert, now).map_err(|e| e.to_string())?,
        })
    }

    /// Record an outcome; Ok when it is committed (or there is nothing to record).
    /// `issued`: the LSC this session issued, whose record is reused when the outcome
    /// carries that very certificate.
    async fn record(
        &self,
        capf: &CertAndKey,
        outcome: &Outcome,
        now: i64,
        issued: Option<&Issued>,
    ) -> Result<(), String> {
        let Some(record) = phonetrust_rules::capf::record(outcome, &capf.cert, issued, now)? else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        self.recorder
            .send((record, tx))
            .await
            .map_err(|_| "the recorder has stopped".to_string())?;
        rx.await
            .map_err(|_| "the recorder has stopped".to_string())?
    }
}

use phonetrust_rules::capf::IssuedLsc as Issued;

/// A phone's claim on its own name while its session runs.
struct DeviceClaim<'a> {
    shared: &'a Shared,
    name: String,
}

impl Drop for DeviceClaim<'_> {
    fn drop(&mut self) {
        self.shared
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

impl Shared {
    fn claim(&self, device: &str) -> Option<DeviceClaim<'_>> {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        a.insert(device.to_string()).then(|| DeviceClaim {
            shared: self,
            name: device.to_string(),
        })
    }
}

async fn connection(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, handshake: Admission) {
    let _ = tcp.set_nodelay(true);
    // One certificate for the whole session, even if it is replaced meanwhile.
    let presented = shared.current();
    let capf = &presented.capf;
    let ssl = match Ssl::new(presented.acceptor.context()) {
        Ok(s) => s,
        Err(e) => return tracing::warn!(%peer, error = %e, "CAPF: TLS setup failed"),
    };
    let Ok(mut tls) = SslStream::new(ssl, tcp) else {
        return;
    };
    let hs = tokio::time::timeout(shared.cfg.handshake_timeout, Pin::new(&mut tls).accept());
    let accepted = tokio::select! {
        r = hs => r,
        () = handshake.evicted() => {
            if let Some(k) = shared.busy_log.hit(Instant::now()) {
                tracing::warn!(%peer, count = k, "CAPF: pending TLS handshake closed to make room for a client of another address (all handshake slots in use)");
            }
            return;
        }
    };
    match accepted {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if let Some(k) = shared.handshake_log.hit(Instant::now()) {
                tracing::info!(%peer, error = %e, count = k, "CAPF: TLS handshake failed");
            }
            return;
        }
        Err(_) => {
            if let Some(k) = shared.handshake_log.hit(Instant::now()) {
                tracing::info!(%peer, count = k, "CAPF: TLS handshake timed out");
            }
            return;
        }
    }
    drop(handshake);
    let sid = shared.next_sid.fetch_add(1, Ordering::Relaxed);
    // Busy, or this address failed too often: RETRY_LATER, never a dropped connection.
    let delay = shared.backoff_delay(&Key::Address(peer.ip()));
    let here = shared.per_address.admit(peer.ip());
    let retry = shared.cfg.retry_delay;
    let permit = match (delay, shared.sessions.try_acquire(), here) {
        (None, Ok(p), Ok(h)) => (p, h),
        refused => {
            let (d, why) = match refused {
                (Some(d), ..) => (
                    d,
                    "repeated authentication failures from this address".to_string(),
                ),
                (None, Err(_), _) => (
                    retry,
                    format!("all {} sessions in use", shared.cfg.max_sessions),
                ),
                (None, Ok(_), Err(b)) => (retry, b.to_string()),
                (None, Ok(_), Ok(_)) => (retry, String::new()),
            };
            if let Some(k) = shared.busy_log.hit(Instant::now()) {
                tracing::warn!(%peer, delay = d, count = k, cause = why, "CAPF: RETRY_LATER");
            }
            if let Ok(m) = Message::retry_later(sid, d).encode() {
                let _ = send(&mut tls, &m).await;
            }
            let _ = tls.shutdown().await;
            return;
        }
    };
    let mut s = ServerSession::with_timeouts(
        sid,
        phonetrust_proto::capf_server::SHORT_TIMEOUT,
        shared.cfg.key_gen_timeout,
    );
    let mut issued: Option<Issued> = None;
    let mut claim: Option<DeviceClaim<'_>> = None;
    let mut actions = s.start();
    let mut deadline = tokio::time::Instant::now() + s.read_timeout();
    'session: loop {
        let mut next = Vec::new();
        for a in actions.drain(..) {
            match a {
                Action::Send(b) => {
                    if let Err(e) = send(&mut tls, &b).await {
                        tracing::info!(%peer, device = s.device().unwrap_or("?"), error = %e, "CAPF: LSC: Connection failed (write)");
                        break 'session;
                    }
                }
                Action::Lookup { device } => {
                    // One session per phone runs its operation; another one waits.
                    match shared.claim(&device) {
                        Some(c) => claim = Some(c),
                        None => {
                            let d = shared.cfg.retry_delay;
                            if let Some(k) = shared.busy_log.hit(Instant::now()) {
                                tracing::warn!(%peer, device, delay = d, count = k, "CAPF: RETRY_LATER, this phone has a session running already");
                            }
                            if let Ok(m) = Message::retry_later(sid, d).encode() {
                                let _ = send(&mut tls, &m).await;
                            }
                            break 'session;
                        }
                    }
                    let plan = match shared.plan(capf, &device, unix_now()).await {
                        Ok(p) => p,
                        Err(e @ LookupError::Unavailable(_)) => {
                            // Nothing started for this phone: it comes back later, when
                            // the database is back.
                            let d = shared.cfg.retry_delay;
                            tracing::error!(%peer, device, delay = d, error = %e, "CAPF: RETRY_LATER, the phone's record cannot be read");
                            if let Ok(m) = Message::retry_later(sid, d).encode() {
                                let _ = send(&mut tls, &m).await;
                            }
                            break 'session;
                        }
                        Err(e @ LookupError::BadName(_)) => {
                            tracing::error!(%peer, device, error = %e, "CAPF: store lookup failed");
                            let _ = send(&mut tls, &s.failure_end()).await;
                            break 'session;
                        }
                    };
                    // Locked phone or address: checked right before the attempt is
                    // evaluated, with no wait in between, so parallel guesses are
                    // counted one after the other.
                    let locked = shared
                        .backoff_delay(&Key::Device(device.clone()))
                        .or_else(|| shared.backoff_delay(&Key::Address(peer.ip())));
                    if let Some(d) = locked {
                        tracing::warn!(%peer, device, delay = d, "CAPF: repeated authentication failures, RETRY_LATER until the lock ends");
                        if let Ok(m) = Message::retry_later(sid, d).encode() {
                            let _ = send(&mut tls, &m).await;
                        }
                        break 'session;
                    }
                    let acts = s.plan(plan);
                    let auth_failed = acts.iter().any(|a| {
                        matches!(
                            a,
                            Action::Finish {
                                outcome: Outcome::Failed {
                                    kind: FailKind::Auth,
                                    ..
                                },
                                ..
                            }
                        )
                    });
                    if auth_failed {
                        shared.note_failure(Key::Address(peer.ip())).await;
                        shared.note_failure(Key::Device(device.clone())).await;
                    }
                    next.extend(acts);
                }
                Action::Issue { device, public_key } => {
                    let r = shared.issue(capf, &device, &public_key, unix_now()).await;
                    let der = match r {
                        Ok(i) => {
                            let der = i.der.clone();
                            issued = Some(i);
                            Ok(der)
                        }
                        Err(e) => {
                            tracing::error!(%peer, device, error = %e, "CAPF: could not issue the LSC");
                            Err(e)
                        }
                    };
                    next.extend(s.issued(der));
                }
                Action::Finish { outcome, end } => {
                    let end = match shared
                        .record(capf, &outcome, unix_now(), issued.as_ref())
                        .await
                    {
                        Ok(()) => end,
                        Err(e) => {
                            tracing::error!(%peer, device = s.device().unwrap_or("?"), error = %e, "CAPF: could not record the outcome; the phone is told the operation failed");
                            s.failure_end()
                        }
                    };
                    if let Outcome::Installed { device, .. }
                    | Outcome::Fetched { device, .. }
                    | Outcome::Deleted { device } = &outcome
                    {
                        shared.clear_failures(device).await;
                    }
                    log_outcome(&outcome, peer);
                    let _ = send(&mut tls, &end).await;
                    break 'session;
                }
            }
        }
        if !next.is_empty() {
            actions = next;
            continue;
        }
        if s.is_done() {
            break;
        }
        if !s.keeps_deadline() {
            deadline = tokio::time::Instant::now() + s.read_timeout();
        }
        match read_message(&mut tls, deadline).await {
            Ok(m) => actions = s.handle(&m),
            Err(why) => {
                // Oversized: tell the phone (reason 7). Lost or silent: nothing to tell.
                if matches!(why, ReadError::TooLarge(_)) {
                    let _ = send(&mut tls, &s.failure_end()).await;
                }
                if s.device().is_some()
                    && let Some(outcome) = s.lost(&why.to_string())
                {
                    let _ = shared.record(capf, &outcome, unix_now(), None).await;
                }
                crate::metrics::CAPF.inc("lost");
                tracing::warn!(%peer, device = s.device().unwrap_or("?"), cause = %why, "CAPF: session ended");
                break;
            }
        }
    }
    drop(claim);
    drop(permit);
    let _ = tokio::time::timeout(Duration::from_secs(2), tls.shutdown()).await;
}

fn log_outcome(o: &Outcome, peer: SocketAddr) {
    crate::metrics::CAPF.inc(match o {
        Outcome::Installed { .. } => "installed",
        Outcome::Fetched { .. } => "fetched",
        Outcome::Deleted { .. } => "deleted",
        Outcome::NothingScheduled { .. } => "nothing_scheduled",
        Outcome::UnknownDevice { .. } => "unknown_device",
        _ => "failed",
    });
    match o {
        Outcome::Installed { device, .. } => {
            tracing::info!(%peer, device, "CAPF: LSC installed (Upgrade Success)")
        }
        Outcome::Fetched { device, .. } => {
            tracing::info!(%peer, device, "CAPF: certificate fetched (Troubleshoot Success)")
        }
        Outcome::Deleted { device } => {
            tracing::info!(%peer, device, "CAPF: LSC deleted (Delete Success)")
        }
        Outcome::NothingScheduled { device } => {
            tracing::info!(%peer, device, "CAPF: no operation scheduled")
        }
        Outcome::UnknownDevice { device } => {
            tracing::warn!(%peer, device, "CAPF: unknown device (reason 9): add the phone first")
        }
        Outcome::Failed {
            device,
            kind,
            status,
        } => {
            tracing::warn!(%peer, device = device.as_deref().unwrap_or("?"), ?kind, status, "CAPF: operation failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linger(delay_ms: u64, in_flight: usize) -> Linger {
        let sessions = Arc::new(Semaphore::new(10));
        // Permits held by sessions in flight; forgotten so they stay taken.
        if let Ok(p) = sessions.clone().try_acquire_many_owned(in_flight as u32) {
            p.forget();
        }
        Linger {
            delay: Duration::from_millis(delay_ms),
            sessions,
            max_sessions: 10,
        }
    }

    /// Other sessions in flight: items arriving during the delay join the batch.
    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_sessions_in_flight() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(1).await.unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            late.send(2).await.unwrap();
            late.send(3).await.unwrap();
        });
        let b = next_batch(&mut rx, &linger(2, 3)).await.unwrap();
        assert_eq!(b, vec![1, 2, 3]);
    }

    /// Alone (or no delay configured): the batch leaves at once with what is waiting.
    #[tokio::test(start_paused = true)]
    async fn a_lone_session_does_not_wait() {
        for (delay, in_flight) in [(2, 1), (0, 5)] {
            let (tx, mut rx) = mpsc::channel(16);
            tx.send(1).await.unwrap();
            let t0 = tokio::time::Instant::now();
            let b = next_batch(&mut rx, &linger(delay, in_flight))
                .await
                .unwrap();
            assert_eq!(b, vec![1]);
            assert_eq!(
                t0.elapsed(),
                Duration::ZERO,
                "delay {delay} in flight {in_flight}"
            );
        }
        // Every sender gone: no batch.
        let (tx, mut rx) = mpsc::channel::<u8>(1);
        drop(tx);
        assert!(next_batch(&mut rx, &linger(2, 3)).await.is_none());
    }
}
