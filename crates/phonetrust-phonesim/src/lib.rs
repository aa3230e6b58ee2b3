//! Simulated IP phones: a MAC, a model, a factory MIC (from a test manufacturer CA),
//! storage for the LSC, and CAPF sessions run exactly as the reference phone client does
//! (the session logic is `phonetrust_proto::capf_phone`; this crate owns the socket).
//! Keys come from a [`KeySource`], so load tests can use pre-generated keys.

#![forbid(unsafe_code)]

pub mod boot;
pub mod storage;
pub mod tvs;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use phonetrust_pki::{
    BasicConstraints, CertParams, DistinguishedName, KeySpec, KeyUsage, generate_key, issue,
    self_signed,
};
use phonetrust_proto::capf::Curve;
use phonetrust_proto::capf_phone::{PhoneAction, PhoneAuth, PhoneResult, PhoneSession, PhoneState};
use phonetrust_proto::capf_server::KeyRequest;
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::clock::unix_now as now;
use phonetrust_proto::rand::OsRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where a phone's new keys come from.
pub trait KeySource: Send + Sync {
    /// A key for `req`, or `None` when this phone cannot make such a key.
    fn key(&self, req: KeyRequest) -> Option<PKey<Private>>;
}

/// Generates a fresh key for every request (as a phone does); `ec: false` models a phone
/// without EC support.
#[derive(Clone, Copy, Debug)]
pub struct Generate {
    /// Whether the phone can make EC keys.
    pub ec: bool,
}

impl KeySource for Generate {
    fn key(&self, req: KeyRequest) -> Option<PKey<Private>> {
        let spec = match req {
            KeyRequest::Rsa(bits) => KeySpec::Rsa(u32::from(bits)),
            KeyRequest::Ec(_) if !self.ec => return None,
            KeyRequest::Ec(Curve::P384) => KeySpec::EcP384,
            KeyRequest::Ec(Curve::P521) => KeySpec::EcP521,
            KeyRequest::Ec(_) => KeySpec::EcP256,
        };
        generate_key(spec).ok()
    }
}

/// Hands out keys from a pool made beforehand, round robin (load tests).
#[derive(Debug)]
pub struct Pool {
    keys: Vec<PKey<Private>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Pool {
    /// `n` RSA keys of `bits`.
    pub fn rsa(n: usize, bits: u32) -> Result<Self, openssl::error::ErrorStack> {
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            keys.push(PKey::from_rsa(openssl::rsa::Rsa::generate(bits)?)?);
        }
        Ok(Self {
            keys,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }
}

impl KeySource for Pool {
    fn key(&self, req: KeyRequest) -> Option<PKey<Private>> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let k = self.keys.get(i % self.keys.len())?;
        match req {
            KeyRequest::Rsa(bits) if k.bits() == u32::from(bits) => Some(k.clone()),
            _ => None,
        }
    }
}

/// The simulated factory: its manufacturer CA, and the keys it puts into new phones' MICs.
///
/// A real factory makes a key per phone; generating 3,000 RSA-2048 keys takes minutes,
/// so by default the factory reuses a small pool of keys (made on first need: phones
/// that exist already cost nothing). Each MIC is still its own certificate (subject,
/// serial); only the key pair repeats.
#[derive(Debug)]
pub struct Factory {
    ca: CertAndKey,
    pool_size: usize,
    pool: std::sync::OnceLock<Result<Pool, String>>,
}

impl Factory {
    /// Keys the factory reuses by default.
    pub const DEFAULT_POOL: usize = 8;

    /// A factory with `ca`, reusing [`Factory::DEFAULT_POOL`] keys.
    pub fn new(ca: CertAndKey) -> Self {
        Self::with_pool(ca, Self::DEFAULT_POOL)
    }

    /// A factory with `ca` reusing `n` keys; 0: a fresh key for every phone.
    pub fn with_pool(ca: CertAndKey, n: usize) -> Self {
        Self {
            ca,
            pool_size: n,
            pool: std::sync::OnceLock::new(),
        }
    }

    /// The manufacturer CA.
    pub fn ca(&self) -> &CertAndKey {
        &self.ca
    }

    /// The key for the next new phone's MIC.
    pub fn mic_key(&self) -> Result<PKey<Private>, String> {
        if self.pool_size == 0 {
            return generate_key(KeySpec::Rsa(2048)).map_err(|e| e.to_string());
        }
        let pool = self
            .pool
            .get_or_init(|| Pool::rsa(self.pool_size, 2048).map_err(|e| e.to_string()));
        let pool = pool.as_ref().map_err(Clone::clone)?;
        pool.key(KeyRequest::Rsa(2048))
            .ok_or_else(|| "the factory key pool is empty".to_string())
    }
}

/// A test manufacturer CA that issues MICs.
pub fn manufacturer_ca(name: &str) -> Result<CertAndKey, String> {
    let key = generate_key(KeySpec::Rsa(2048)).map_err(|e| e.to_string())?;
    let mut p = CertParams::new(
        DistinguishedName {
            cn: name.into(),
            o: "Example Phones Inc".into(),
            ..DistinguishedName::default()
        },
        now() - 86_400,
        3650,
    );
    p.basic_constraints = Some(BasicConstraints {
        ca: true,
        path_len: None,
    });
    p.key_usage = Some(KeyUsage {
        key_cert_sign: true,
        crl_sign: true,
        digital_signature: true,
        ..KeyUsage::default()
    });
    let cert = self_signed(&p, &key, &OsRandom).map_err(|e| e.to_string())?;
    CertAndKey::new(cert, key).map_err(|e| e.to_string())
}

/// A MIC for `device` of `model`, issued by `ca` (`CN=CP-<model>-<device>`).
pub fn mic(
    ca: &CertAndKey,
    model: &str,
    device: &str,
    key: &PKey<Private>,
) -> Result<CertAndKey, String> {
    let mut p = CertParams::new(
        DistinguishedName {
            cn: format!("CP-{model}-{device}"),
            ou: "EPI".into(),
            o: "Example Phones Inc".into(),
            ..DistinguishedName::default()
        },
        now() - 86_400,
        3650,
    );
    p.basic_constraints = Some(BasicConstraints {
        ca: false,
        path_len: None,
    });
    let cert = issue(&p, key, ca, &OsRandom).map_err(|e| e.to_string())?;
    CertAndKey::new(cert, key.clone()).map_err(|e| e.to_string())
}

/// The TLS client side of a phone's CAPF connection: trusts exactly the CAPF certificate
/// its ITL lists (no system CA store), TLS 1.0 and up. Made once, used by many phones.
#[derive(Clone)]
pub struct CapfConnector(SslContext);

impl std::fmt::Debug for CapfConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CapfConnector")
    }
}

/// Which TLS a simulated phone speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PhoneTls {
    /// Current firmware: TLS 1.2/1.3 with X25519/P-256 key exchange.
    #[default]
    Modern,
    /// TLS 1.2 at most, ECDHE-RSA with AES-GCM.
    Tls12,
    /// Old firmware: TLS 1.0 with the static-RSA `AES128-SHA` suite.
    Legacy,
}

impl CapfConnector {
    /// A connector trusting `capf`, speaking current TLS.
    pub fn new(capf: &X509) -> Result<Self, String> {
        Self::with_tls(capf, PhoneTls::Modern)
    }

    /// The TLS context (for callers making their own connections).
    pub fn context(&self) -> &SslContext {
        &self.0
    }

    /// A connector trusting `capf`, speaking `tls`.
    pub fn with_tls(capf: &X509, tls: PhoneTls) -> Result<Self, String> {
        Self::trusting(std::slice::from_ref(capf), tls)
    }

    /// A connector trusting exactly `certs` (e.g. the TVS certificates of the phone's
    /// trust list), speaking `tls`.
    pub fn trusting(certs: &[X509], tls: PhoneTls) -> Result<Self, String> {
        let mut ctx = SslContext::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        ctx.set_security_level(0);
        ctx.set_min_proto_version(Some(SslVersion::TLS1))
            .map_err(|e| e.to_string())?;
        for c in certs {
            ctx.cert_store_mut()
                .add_cert(c.clone())
                .map_err(|e| e.to_string())?;
        }
        ctx.set_verify(SslVerifyMode::PEER);
        // Phones offer classic key-exchange groups only (no post-quantum hybrids).
        ctx.set_groups_list("X25519:P-256:P-384")
            .map_err(|e| e.to_string())?;
        ctx.set_read_ahead(true);
        match tls {
            PhoneTls::Modern => {}
            PhoneTls::Tls12 => {
                ctx.set_max_proto_version(Some(SslVersion::TLS1_2))
                    .map_err(|e| e.to_string())?;
                ctx.set_cipher_list("ECDHE-RSA-AES128-GCM-SHA256")
                    .map_err(|e| e.to_string())?;
            }
            PhoneTls::Legacy => {
                ctx.set_max_proto_version(Some(SslVersion::TLS1))
                    .map_err(|e| e.to_string())?;
                ctx.set_cipher_list("AES128-SHA:@SECLEVEL=0")
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(Self(ctx.build()))
    }
}

/// A simulated phone.
#[derive(Clone, Debug)]
pub struct SimPhone {
    /// Storage: name, MIC, LSC.
    pub state: PhoneState,
    /// Model (e.g. 8845).
    pub model: String,
    /// Status messages, as the phone's Status Messages screen lists them.
    pub status_messages: Vec<String>,
    /// The ITL it holds (bytes as downloaded), if any.
    pub itl: Option<Vec<u8>>,
    /// The authentication string a user would type when CAPF asks for one.
    pub auth_string: Option<String>,
    /// The CTL it holds (mixed mode), if any.
    pub ctl: Option<Vec<u8>>,
    /// TVS servers from its last configuration (host, port).
    pub tvs_servers: Vec<(String, u16)>,
    /// Whether the model can ask TVS (models without "security by default" cannot).
    pub supports_tvs: bool,
    /// `capfAuthMode` of its last configuration (0 null string, 1 authentication string,
    /// 2 LSC, 3 MIC), if it has booted.
    pub capf_auth_mode: Option<u8>,
    /// The CAPF server (host, phone port) of its last configuration, if it has booted.
    pub capf_server: Option<(String, u16)>,
    /// The local address its connections come from (None: any; in tests a phone of its
    /// own on 127.0.0.x).
    pub source: Option<std::net::IpAddr>,
}

impl SimPhone {
    /// How it authenticates to CAPF when the server does not say (AUTH_TYPE 0): as its
    /// last configuration's `capfAuthMode` says — by certificate (LSC, else MIC), by the
    /// authentication string a user types, or by null string (also before any boot).
    pub fn configured_auth(&mut self) -> Result<PhoneAuth, String> {
        Ok(match self.capf_auth_mode {
            Some(1) => match &self.auth_string {
                Some(s) => PhoneAuth::Password(s.clone()),
                None => {
                    self.status("LSC: Authentication string required");
                    return Err("CAPF wants an authentication string typed on the phone".into());
                }
            },
            Some(2 | 3) => PhoneAuth::Certificate { sudi: false },
            _ => PhoneAuth::None,
        })
    }

    /// A phone `SEP<mac>` without MIC or LSC.
    pub fn new(mac: &str, model: &str) -> Self {
        Self {
            state: PhoneState {
                device: format!("SEP{}", mac.to_ascii_uppercase()),
                mic: None,
                lsc: None,
                version: 3,
            },
            model: model.into(),
            status_messages: Vec::new(),
            itl: None,
            auth_string: None,
            ctl: None,
            tvs_servers: Vec::new(),
            capf_auth_mode: None,
            capf_server: None,
            supports_tvs: true,
            source: None,
        }
    }

    /// One CAPF session against `addr`, trusting `capf` (the CAPF certificate from the
    /// phone's ITL). Returns the result and records the status message.
    pub async fn capf(
        &mut self,
        addr: SocketAddr,
        capf: &X509,
        auth: PhoneAuth,
        keys: &dyn KeySource,
    ) -> PhoneResult {
        match CapfConnector::new(capf) {
            Ok(conn) => self.capf_via(addr, &conn, auth, keys).await,
            Err(e) => {
                self.status_messages.push("LSC: Connection failed".into());
                PhoneResult::Failed(format!("LSC: Connection failed ({e})"))
            }
        }
    }

    /// As [`SimPhone::capf`], through a connector made once for many phones (load tests).
    pub async fn capf_via(
        &mut self,
        addr: SocketAddr,
        conn: &CapfConnector,
        auth: PhoneAuth,
        keys: &dyn KeySource,
    ) -> PhoneResult {
        let r = match self.capf_inner(addr, conn, auth, keys).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(
                    device = self.state.device,
                    error = e,
                    "LSC: Connection failed"
                );
                self.status_messages.push("LSC: Connection failed".into());
                return PhoneResult::Failed(format!("LSC: Connection failed ({e})"));
            }
        };
        self.status_messages.push(r.status_message());
        r
    }

    async fn capf_inner(
        &mut self,
        addr: SocketAddr,
        conn: &CapfConnector,
        auth: PhoneAuth,
        keys: &dyn KeySource,
    ) -> Result<PhoneResult, String> {
        let conn = &conn.0;
        let tcp = tokio::time::timeout(Duration::from_secs(10), connect_from(self.source, addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let ssl = Ssl::new(conn).map_err(|e| e.to_string())?;
        let mut tls = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(20), Pin::new(&mut tls).connect())
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS: {e}"))?;
        let mut session = PhoneSession::new(self.state.clone(), auth);
        let result = loop {
            let mut head = [0u8; 8];
            tokio::time::timeout(Duration::from_secs(60), tls.read_exact(&mut head))
                .await
                .map_err(|_| "no answer from CAPF".to_string())?
                .map_err(|e| e.to_string())?;
            let [.., hi, lo] = head;
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let mut body = vec![0u8; len];
            tls.read_exact(&mut body).await.map_err(|e| e.to_string())?;
            let mut msg = head.to_vec();
            msg.extend_from_slice(&body);
            let mut actions = session.handle(&msg);
            let mut done = None;
            while !actions.is_empty() {
                let a = actions.remove(0);
                match a {
                    PhoneAction::Send(b) => tls.write_all(&b).await.map_err(|e| e.to_string())?,
                    PhoneAction::GenerateKey(req) => {
                        actions.extend(session.key_ready(keys.key(req)))
                    }
                    PhoneAction::Done(r) => done = Some(r),
                }
            }
            if let Some(r) = done {
                break r;
            }
        };
        let _ = tls.shutdown().await;
        self.state = session.into_state();
        Ok(result)
    }
}

/// A TCP connection to `server` from the local address `local` (None: any).
pub async fn connect_from(
    local: Option<std::net::IpAddr>,
    server: SocketAddr,
) -> std::io::Result<TcpStream> {
    let Some(ip) = local else {
        return TcpStream::connect(server).await;
    };
    let sock = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    sock.bind(SocketAddr::new(ip, 0))?;
    sock.connect(server).await
}
