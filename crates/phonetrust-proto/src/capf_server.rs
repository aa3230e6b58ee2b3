//! The CAPF server's side of one session, sans I/O: whole messages in, [`Action`]s out.
//! The caller owns the socket, the clock, the store and the CA key:
//!
//! ```text
//! start()                  -> Send(AUTH_REQUEST)
//! handle(AUTH_RESPONSE)    -> Lookup{device}            caller reads the phone's CAPF info
//! plan(Some(plan))         -> Send(KEY_GEN / FETCH / DELETE request) | Finish
//! handle(KEY_GEN_RESPONSE) -> Issue{device, public key} caller signs the LSC
//! issued(der)              -> Send(STORE_CERT_REQUEST)
//! handle(STORE_RESPONSE)   -> Finish{outcome, end}      caller commits, then sends `end`
//! ```
//!
//! Every way out is one `Finish`: the outcome to record and the END_SESSION to send after
//! it is recorded (or [`ServerSession::failure_end`] when recording failed).

use std::time::Duration;

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::x509::X509;

use crate::capf::{AuthType, Command, Curve, Message, Reason, parse_sha2_signed, parse_sudi};
use crate::cert::{raw_verify, verify_chain};

/// Read deadline while the phone generates a key (real phones take tens of seconds).
pub const KEY_GEN_TIMEOUT: Duration = Duration::from_secs(180);
/// Read deadline for every other message.
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest CAPF message accepted (header + body).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// One key the server may ask the phone for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRequest {
    /// RSA with this many bits.
    Rsa(u16),
    /// EC on this curve.
    Ec(Curve),
}

/// How the phone must authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthPolicy {
    /// Nothing (null string).
    NullString,
    /// This authentication string.
    AuthString(String),
    /// An existing certificate, LSC first (a phone without LSC uses its MIC).
    Lsc,
    /// An existing certificate, MIC first.
    Mic,
}

/// The operation scheduled for the phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Nothing scheduled.
    None,
    /// Install or upgrade: key requests in order (the second is the backup).
    Install(Vec<KeyRequest>),
    /// Troubleshoot: fetch the phone's certificate.
    Fetch,
    /// Delete the phone's LSC.
    Delete,
}

impl Operation {
    /// The word the phone's status uses ("Upgrade", "Troubleshoot", "Delete").
    pub fn status_word(&self) -> &'static str {
        match self {
            Self::None => "Operation",
            Self::Install(_) => "Upgrade",
            Self::Fetch => "Troubleshoot",
            Self::Delete => "Delete",
        }
    }
}

/// What the caller knows of the phone, given after [`Action::Lookup`].
#[derive(Clone, Debug)]
pub struct Plan {
    /// The operation.
    pub operation: Operation,
    /// The authentication required.
    pub auth: AuthPolicy,
    /// The operation's "completes by" has passed.
    pub expired: bool,
    /// The CAPF certificate(s) LSCs chain to.
    pub lsc_anchors: Vec<X509>,
    /// CAPF-trust: manufacturer CAs (for MICs) and earlier or external CAPF roots.
    pub mic_anchors: Vec<X509>,
    /// Now, Unix seconds (for certificate validity).
    pub now: i64,
}

/// Which certificate a phone authenticated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthCertKind {
    /// Its LSC (chains to CAPF).
    Lsc,
    /// Its MIC (chains to a manufacturer CA).
    Mic,
}

/// Why a session failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// Wrong authentication string, invalid certificate or signature.
    Auth,
    /// The operation's deadline passed.
    Expired,
    /// The phone could not generate the key, store or delete the certificate.
    Phone,
    /// Malformed or unexpected message.
    Protocol,
    /// The server could not issue the certificate.
    Server,
}

/// How a session ended, for the caller to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The phone stored the LSC.
    Installed {
        /// The phone.
        device: String,
        /// The LSC (DER).
        cert: Vec<u8>,
        /// The certificate it authenticated with, if any.
        auth_cert: Option<(AuthCertKind, Vec<u8>)>,
    },
    /// The phone sent its certificate.
    Fetched {
        /// The phone.
        device: String,
        /// The certificate (DER).
        cert: Vec<u8>,
        /// The certificate it authenticated with, if any.
        auth_cert: Option<(AuthCertKind, Vec<u8>)>,
    },
    /// The phone deleted its LSC.
    Deleted {
        /// The phone.
        device: String,
    },
    /// Nothing was scheduled.
    NothingScheduled {
        /// The phone.
        device: String,
    },
    /// The phone is not known.
    UnknownDevice {
        /// The name it gave.
        device: String,
    },
    /// The operation failed.
    Failed {
        /// The phone, when it said who it is.
        device: Option<String>,
        /// What failed.
        kind: FailKind,
        /// The status the phone page shows ("Upgrade Failed: ...").
        status: String,
    },
}

/// What the caller must do next.
#[derive(Debug)]
pub enum Action {
    /// Write this message (in one write).
    Send(Vec<u8>),
    /// Look the phone up and call [`ServerSession::plan`].
    Lookup {
        /// `SEP<MAC>` as the phone sent it.
        device: String,
    },
    /// Issue an LSC for this key and call [`ServerSession::issued`].
    Issue {
        /// The phone.
        device: String,
        /// The phone's new public key.
        public_key: PKey<Public>,
    },
    /// Record the outcome; then send `end` (or [`ServerSession::failure_end`] when
    /// recording failed) and close.
    Finish {
        /// What happened.
        outcome: Outcome,
        /// The END_SESSION message.
        end: Vec<u8>,
    },
}

#[derive(Debug)]
enum State {
    Start,
    AwaitAuth,
    AwaitPlan,
    AwaitKeyGen { next: usize },
    AwaitIssue,
    AwaitStore { cert: Vec<u8> },
    AwaitFetch,
    AwaitDelete,
    Done,
}

/// One CAPF session, server side.
#[derive(Debug)]
pub struct ServerSession {
    session_id: u32,
    state: State,
    device: Option<String>,
    auth: Option<AuthResponse>,
    plan: Option<Plan>,
    auth_cert: Option<(AuthCertKind, Vec<u8>)>,
    /// The outcome has been given ([`Action::Finish`]): nothing more is answered. Kept
    /// apart from `state`, which [`ServerSession::handle`] takes out while it works.
    ended: bool,
    /// A protocol error in AUTH_RESPONSE of a phone that named itself: reported once the
    /// lookup says which operation failed ("Upgrade Failed: protocol version 9").
    deferred: Option<String>,
    /// The last message was REQUEST_IN_PROGRESS: the read deadline runs on.
    keep_deadline: bool,
    /// Read deadlines: for a reply, and for the phone's key generation.
    timeouts: (Duration, Duration),
}

#[derive(Debug, Clone)]
struct AuthResponse {
    password: Option<String>,
    cert: Option<Vec<u8>>,
    signed: Option<Vec<u8>>,
    sha2: Option<Vec<u8>>,
    sudi: Option<Vec<u8>>,
}

fn enc(m: &Message) -> Vec<u8> {
    // Encoding our own messages cannot overflow: every element is small and bounded.
    m.encode().unwrap_or_default()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

impl ServerSession {
    /// A session with the id chosen for this connection.
    pub fn new(session_id: u32) -> Self {
        Self {
            session_id,
            state: State::Start,
            device: None,
            auth: None,
            plan: None,
            auth_cert: None,
            ended: false,
            deferred: None,
            keep_deadline: false,
            timeouts: (SHORT_TIMEOUT, KEY_GEN_TIMEOUT),
        }
    }

    /// A session whose reads wait at most `reply` for a reply and `key_gen` for the
    /// phone's key generation (REQUEST_IN_PROGRESS included).
    pub fn with_timeouts(session_id: u32, reply: Duration, key_gen: Duration) -> Self {
        Self {
            timeouts: (reply, key_gen),
            ..Self::new(session_id)
        }
    }

    /// The session id.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// The phone, once it said who it is.
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    /// The read deadline for the next message.
    pub fn read_timeout(&self) -> Duration {
        match self.state {
            State::AwaitKeyGen { .. } => self.timeouts.1,
            _ => self.timeouts.0,
        }
    }

    /// The next read keeps the deadline of the previous one instead of starting a new
    /// [`read_timeout`](Self::read_timeout): after REQUEST_IN_PROGRESS, which may not
    /// extend the key-generation deadline.
    pub fn keeps_deadline(&self) -> bool {
        self.keep_deadline
    }

    /// True once the session has finished.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The first message: AUTH_REQUEST.
    pub fn start(&mut self) -> Vec<Action> {
        self.state = State::AwaitAuth;
        vec![Action::Send(enc(&Message::auth_request(
            self.session_id,
            AuthType::None,
        )))]
    }

    /// END_SESSION for a failure (reason 7).
    pub fn failure_end(&self) -> Vec<u8> {
        enc(&Message::end_session(self.session_id, Reason::Failure))
    }

    fn op_word(&self) -> &'static str {
        self.plan
            .as_ref()
            .map(|p| p.operation.status_word())
            .unwrap_or("Operation")
    }

    /// The connection broke or the phone fell silent (`why`): the session ends, and its
    /// outcome is a failure of the scheduled operation ("Upgrade Failed: …"), to be
    /// recorded (nothing can be sent any more). None when the outcome was given already.
    pub fn lost(&mut self, why: &str) -> Option<Outcome> {
        if self.ended {
            return None;
        }
        self.ended = true;
        self.state = State::Done;
        Some(Outcome::Failed {
            device: self.device.clone(),
            kind: FailKind::Protocol,
            status: format!("{} Failed: {why}", self.op_word()),
        })
    }

    fn fail(&mut self, kind: FailKind, why: impl Into<String>) -> Vec<Action> {
        // A finished session stays finished: one outcome, one END_SESSION.
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        self.state = State::Done;
        let status = format!("{} Failed: {}", self.op_word(), why.into());
        vec![Action::Finish {
            outcome: Outcome::Failed {
                device: self.device.clone(),
                kind,
                status,
            },
            end: self.failure_end(),
        }]
    }

    fn finish(&mut self, outcome: Outcome, reason: Reason) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        self.state = State::Done;
        vec![Action::Finish {
            outcome,
            end: enc(&Message::end_session(self.session_id, reason)),
        }]
    }

    /// A whole message from the phone (header and body).
    pub fn handle(&mut self, bytes: &[u8]) -> Vec<Action> {
        if self.ended || self.is_done() {
            return Vec::new();
        }
        if bytes.len() > MAX_MESSAGE {
            return self.fail(FailKind::Protocol, "message too large");
        }
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => return self.fail(FailKind::Protocol, format!("malformed message: {e}")),
        };
        if msg.session_id != self.session_id {
            return self.fail(
                FailKind::Protocol,
                format!(
                    "session id {} instead of {}",
                    msg.session_id, self.session_id
                ),
            );
        }
        self.keep_deadline = false;
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, msg.command) {
            (State::AwaitAuth, Command::AuthResponse) => self.on_auth(&msg),
            (s @ State::AwaitKeyGen { .. }, Command::RequestInProgress) => {
                self.state = s;
                self.keep_deadline = true;
                Vec::new()
            }
            (State::AwaitKeyGen { next }, Command::KeyGenResponse) => self.on_key(&msg, next),
            (State::AwaitStore { cert }, Command::StoreCertResponse) => {
                if msg.reason() == Some(Reason::Success) {
                    let device = self.device.clone().unwrap_or_default();
                    let auth_cert = self.auth_cert.take();
                    self.finish(
                        Outcome::Installed {
                            device,
                            cert,
                            auth_cert,
                        },
                        Reason::Success,
                    )
                } else {
                    self.fail(FailKind::Phone, "the phone did not store the certificate")
                }
            }
            (State::AwaitFetch, Command::FetchCertResponse) => {
                match (msg.reason(), msg.certificate()) {
                    (Some(Reason::Success), Some(der)) if X509::from_der(der).is_ok() => {
                        let outcome = Outcome::Fetched {
                            device: self.device.clone().unwrap_or_default(),
                            cert: der.to_vec(),
                            auth_cert: self.auth_cert.take(),
                        };
                        self.finish(outcome, Reason::NoAction)
                    }
                    _ => self.fail(FailKind::Phone, "the phone sent no certificate"),
                }
            }
            (State::AwaitDelete, Command::DeleteCertResponse) => {
                if msg.reason() == Some(Reason::Success) {
                    let outcome = Outcome::Deleted {
                        device: self.device.clone().unwrap_or_default(),
                    };
                    self.finish(outcome, Reason::Success)
                } else {
                    self.fail(FailKind::Phone, "the phone did not delete the certificate")
                }
            }
            (s, c) => self.fail(
                FailKind::Protocol,
                format!("unexpected {c:?} in state {}", state_name(&s)),
            ),
        }
    }

    fn on_auth(&mut self, msg: &Message) -> Vec<Action> {
        let Some(device) = msg.device_name() else {
            return self.fail(FailKind::Protocol, "AUTH_RESPONSE without DEVICE_NAME");
        };
        let device = match crate::device::DeviceName::parse(&device) {
            Ok(d) => String::from(d),
            Err(e) => return self.fail(FailKind::Protocol, e.to_string()),
        };
        self.device = Some(device.clone());
        match msg.version() {
            Some(2 | 3) | None => {}
            Some(v) => self.deferred = Some(format!("protocol version {v}")),
        }
        // Phones answer with reason 1 (some older ones 0); 7 is a failure they report.
        if let Some(r @ Reason::Failure) = msg.reason()
            && self.deferred.is_none()
        {
            self.deferred = Some(format!(
                "the phone answered AUTH_REQUEST with failure reason {}",
                r.code()
            ));
        }
        self.auth = Some(AuthResponse {
            password: msg.password(),
            cert: msg.certificate().map(<[u8]>::to_vec),
            signed: msg.signed_data().map(<[u8]>::to_vec),
            sha2: msg.sha2_signed_data().map(<[u8]>::to_vec),
            sudi: msg.sudi_data().map(<[u8]>::to_vec),
        });
        self.state = State::AwaitPlan;
        vec![Action::Lookup { device }]
    }

    /// The phone's plan (`None`: unknown device).
    pub fn plan(&mut self, plan: Option<Plan>) -> Vec<Action> {
        if !matches!(self.state, State::AwaitPlan) {
            return self.fail(FailKind::Server, "plan given out of turn");
        }
        let device = self.device.clone().unwrap_or_default();
        let Some(plan) = plan else {
            return self.finish(Outcome::UnknownDevice { device }, Reason::UnknownDevice);
        };
        let op = plan.operation.clone();
        self.plan = Some(plan);
        if let Some(why) = self.deferred.take() {
            return self.fail(FailKind::Protocol, why);
        }
        if op == Operation::None {
            return self.finish(Outcome::NothingScheduled { device }, Reason::NoAction);
        }
        if self.plan.as_ref().is_some_and(|p| p.expired) {
            return self.fail(FailKind::Expired, "User Initiated Request Late/Timeout");
        }
        if let Err(why) = self.authenticate() {
            return self.fail(FailKind::Auth, why);
        }
        match op {
            Operation::None => Vec::new(),
            Operation::Install(keys) => self.ask_key(&keys, 0),
            Operation::Fetch => {
                self.state = State::AwaitFetch;
                vec![Action::Send(enc(&Message::fetch_cert_request(
                    self.session_id,
                )))]
            }
            Operation::Delete => {
                self.state = State::AwaitDelete;
                vec![Action::Send(enc(&Message::delete_cert_request(
                    self.session_id,
                )))]
            }
        }
    }

    fn ask_key(&mut self, keys: &[KeyRequest], i: usize) -> Vec<Action> {
        let Some(k) = keys.get(i) else {
            return self.fail(FailKind::Phone, "the phone could not generate a key");
        };
        self.state = State::AwaitKeyGen { next: i + 1 };
        let m = match *k {
            KeyRequest::Rsa(bits) => Message::key_gen_request_rsa(self.session_id, bits),
            KeyRequest::Ec(c) => Message::key_gen_request_ec(self.session_id, c),
        };
        vec![Action::Send(enc(&m))]
    }

    fn on_key(&mut self, msg: &Message, next: usize) -> Vec<Action> {
        let keys = match self.plan.as_ref().map(|p| &p.operation) {
            Some(Operation::Install(k)) => k.clone(),
            _ => return self.fail(FailKind::Server, "no install plan"),
        };
        let Some(spki) = msg.public_key() else {
            // The phone could not make this key type: try the backup, if any.
            return self.ask_key(&keys, next);
        };
        let Ok(public_key) = crate::cert::public_key_from_spki(spki) else {
            return self.fail(FailKind::Protocol, "unreadable public key");
        };
        let asked = keys.get(next.wrapping_sub(1)).copied();
        let fits = match (asked, public_key.id()) {
            (Some(KeyRequest::Rsa(bits)), Id::RSA) => public_key.bits() == u32::from(bits),
            (Some(KeyRequest::Ec(c)), Id::EC) => {
                let want = match c {
                    Curve::P256 => 256,
                    Curve::P384 => 384,
                    Curve::P521 => 521,
                    Curve::Unknown(_) => 0,
                };
                public_key.bits() == want
            }
            _ => false,
        };
        if !fits {
            return self.fail(
                FailKind::Protocol,
                format!(
                    "the phone sent a {} {}-bit key, not the one requested",
                    if public_key.id() == Id::EC {
                        "EC"
                    } else {
                        "RSA"
                    },
                    public_key.bits()
                ),
            );
        }
        self.state = State::AwaitIssue;
        vec![Action::Issue {
            device: self.device.clone().unwrap_or_default(),
            public_key,
        }]
    }

    /// The LSC the caller issued (DER), or why it could not.
    pub fn issued(&mut self, cert: Result<Vec<u8>, String>) -> Vec<Action> {
        if !matches!(self.state, State::AwaitIssue) {
            return self.fail(FailKind::Server, "certificate given out of turn");
        }
        match cert {
            Err(why) => self.fail(FailKind::Server, why),
            Ok(der) => match Message::store_cert_request(self.session_id, &der) {
                Ok(m) => {
                    self.state = State::AwaitStore { cert: der };
                    vec![Action::Send(enc(&m))]
                }
                Err(e) => self.fail(FailKind::Server, e.to_string()),
            },
        }
    }

    fn authenticate(&mut self) -> Result<(), String> {
        let (Some(plan), Some(auth), Some(device)) = (&self.plan, &self.auth, &self.device) else {
            return Err("no authentication data".into());
        };
        match &plan.auth {
            AuthPolicy::NullString => Ok(()),
            AuthPolicy::AuthString(want) => {
                let got = auth.password.clone().unwrap_or_default();
                if ct_eq(got.as_bytes(), want.as_bytes()) {
                    Ok(())
                } else if got.is_empty() {
                    Err("Authentication String missing".into())
                } else {
                    Err("Invalid Authentication String".into())
                }
            }
            AuthPolicy::Lsc | AuthPolicy::Mic => {
                let label = if plan.auth == AuthPolicy::Lsc {
                    "Invalid LSC"
                } else {
                    "Invalid MIC"
                };
                // Either precedence accepts either certificate (the phone sends the one
                // it has); it is recorded as what it chains to.
                let found = verify_cert_auth(device, auth, plan, self.session_id)
                    .map_err(|why| format!("{label} ({why})"))?;
                self.auth_cert = Some(found);
                Ok(())
            }
        }
    }
}

fn state_name(s: &State) -> &'static str {
    match s {
        State::Start => "start",
        State::AwaitAuth => "waiting for AUTH_RESPONSE",
        State::AwaitPlan => "waiting for the device lookup",
        State::AwaitKeyGen { .. } => "waiting for KEY_GEN_RESPONSE",
        State::AwaitIssue => "issuing",
        State::AwaitStore { .. } => "waiting for STORE_CERT_RESPONSE",
        State::AwaitFetch => "waiting for FETCH_CERT_RESPONSE",
        State::AwaitDelete => "waiting for DELETE_CERT_RESPONSE",
        State::Done => "done",
    }
}

/// Check existing-certificate authentication: the certificate names this phone, its
/// signatures verify, it chains to CAPF (LSC) or a manufacturer CA (MIC), and SUDI data,
/// when present, verifies.
fn verify_cert_auth(
    device: &str,
    auth: &AuthResponse,
    plan: &Plan,
    session_id: u32,
) -> Result<(AuthCertKind, Vec<u8>), String> {
    let der = auth
        .cert
        .as_deref()
        .ok_or("the phone sent no certificate")?;
    let cert = X509::from_der(der).map_err(|_| "unreadable certificate")?;
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    if cn != device && !cn.ends_with(&format!("-{device}")) {
        return Err(format!("certificate of '{cn}', not of {device}"));
    }
    let public = cert.public_key().map_err(|_| "unreadable public key")?;
    let msg = crate::capf::auth_signed_message(device, der);
    let signed = auth.signed.as_deref().ok_or("no SIGNED_DATA")?;
    if !raw_verify(&public, MessageDigest::sha1(), &msg, signed) {
        return Err("SIGNED_DATA does not verify".into());
    }
    if let Some(v) = &auth.sha2 {
        let (alg, sig) = parse_sha2_signed(v).map_err(|e| e.to_string())?;
        let md = alg
            .digest()
            .ok_or_else(|| format!("unknown hash algorithm {}", alg.code()))?;
        if !raw_verify(&public, md, &msg, sig) {
            return Err("SHA2_SIGNED_DATA does not verify".into());
        }
    }
    if let Some(v) = &auth.sudi {
        let sudi = parse_sudi(v).map_err(|e| format!("SUDI data: {e}"))?;
        let sc = X509::from_der(sudi.certificate).map_err(|_| "unreadable SUDI certificate")?;
        let sp = sc.public_key().map_err(|_| "unreadable SUDI key")?;
        // RSA: raw signatures over bare digests; EC: DER ECDSA. Both are checked.
        if !matches!(sp.id(), Id::RSA | Id::EC) {
            return Err(format!(
                "SUDI key type {:?} is not supported (RSA or EC)",
                sp.id()
            ));
        }
        let m = crate::capf::sudi_signed_message(session_id, sudi.certificate);
        let ok1 = sudi
            .sha1_signature
            .is_some_and(|s| raw_verify(&sp, MessageDigest::sha1(), &m, s));
        let ok2 = sudi
            .sha512_signature
            .is_none_or(|s| raw_verify(&sp, MessageDigest::sha512(), &m, s));
        if !(ok1 && ok2) {
            return Err("SUDI signature does not verify".into());
        }
    }
    // An LSC names the phone itself (CN=SEP<MAC>); a MIC names the model too
    // (CN=CP-<model>-SEP<MAC>). Either must chain to a trusted issuer.
    let kind = if cn == device {
        AuthCertKind::Lsc
    } else {
        AuthCertKind::Mic
    };
    let mut anchors = plan.lsc_anchors.clone();
    anchors.extend(plan.mic_anchors.iter().cloned());
    verify_chain(&cert, &[], &anchors, plan.now).map_err(|e| {
        format!("the certificate chains to no CAPF or manufacturer CA in CAPF-trust: {e}")
    })?;
    Ok((kind, der.to_vec()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::capf::Element;
    use crate::capf_phone::{PhoneAction, PhoneAuth, PhoneSession, PhoneState};
    use crate::cert::CertAndKey;
    use crate::testutil::vector;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Builder, X509NameBuilder};

    const NOW: i64 = 1_800_000_000;

    fn mfg() -> CertAndKey {
        let mut pem = vector("pki/mfgca.crt");
        pem.extend_from_slice(&vector("pki/mfgca.key"));
        CertAndKey::from_pem(&pem).unwrap()
    }

    /// A MIC with a P-256 key for `device`, issued by the vectors' manufacturer CA.
    fn ec_mic(device: &str) -> CertAndKey {
        let ca = mfg();
        let key = PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, &format!("CP-8845-{device}"))
            .unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(ca.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(NOW - 86_400).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(NOW + 86_400).unwrap())
            .unwrap();
        b.sign(&ca.key, MessageDigest::sha256()).unwrap();
        CertAndKey::new(b.build(), key).unwrap()
    }

    /// The phone's AUTH_RESPONSE (authenticating by its MIC, with SUDI data) to the
    /// AUTH_REQUEST of session `sid`.
    fn auth_response(device: &str, mic: CertAndKey, sid: u32) -> Message {
        let mut p = PhoneSession::new(
            PhoneState {
                device: device.into(),
                mic: Some(mic),
                lsc: None,
                version: 3,
            },
            PhoneAuth::Certificate { sudi: true },
        );
        let req = enc(&Message::auth_request(sid, AuthType::None));
        match p.handle(&req).as_slice() {
            [PhoneAction::Send(b)] => Message::decode(b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// Run `auth` through a session troubleshooting `device` by MIC: the first outcome
    /// (`None` when the session goes on to the fetch, i.e. authentication passed).
    fn outcome(auth: &Message, sid: u32) -> Option<Outcome> {
        let mut s = ServerSession::new(sid);
        s.start();
        let a = s.handle(&enc(auth));
        assert!(matches!(a.as_slice(), [Action::Lookup { .. }]), "{a:?}");
        let plan = Plan {
            operation: Operation::Fetch,
            auth: AuthPolicy::Mic,
            expired: false,
            lsc_anchors: vec![],
            mic_anchors: vec![mfg().cert],
            now: NOW,
        };
        s.plan(Some(plan)).into_iter().find_map(|a| match a {
            Action::Finish { outcome, .. } => Some(outcome),
            _ => None,
        })
    }

    fn refused(auth: &Message, sid: u32, why: &str) {
        match outcome(auth, sid) {
            Some(Outcome::Failed {
                kind: FailKind::Auth,
                status,
                ..
            }) => assert!(status.contains(why), "'{why}' not in '{status}'"),
            other => panic!("expected an authentication failure ({why}), got {other:?}"),
        }
    }

    /// Flip the last byte of the element of `tag` (a signature's end).
    fn tamper(m: &Message, pick: fn(&mut Element) -> Option<&mut Vec<u8>>) -> Message {
        let mut m = m.clone();
        let v = m.elements.iter_mut().find_map(pick).unwrap();
        *v.last_mut().unwrap() ^= 1;
        m
    }

    #[test]
    fn an_ec_mic_with_ec_sudi_data_authenticates_and_each_bad_signature_is_refused() {
        let dev = "SEP0011AABBCC01";
        let sid = 0x0102_0304;
        let good = auth_response(dev, ec_mic(dev), sid);
        assert!(good.sudi_data().is_some());
        assert_eq!(
            outcome(&good, sid),
            None,
            "authenticated: the fetch follows"
        );

        refused(
            &tamper(&good, |e| match e {
                Element::SignedData(v) => Some(v),
                _ => None,
            }),
            sid,
            "SIGNED_DATA does not verify",
        );
        refused(
            &tamper(&good, |e| match e {
                Element::Sha2SignedData(v) => Some(v),
                _ => None,
            }),
            sid,
            "SHA2_SIGNED_DATA does not verify",
        );
        // EC SUDI data is verified too (ECDSA over session id + certificate).
        refused(
            &tamper(&good, |e| match e {
                Element::SudiData(v) => Some(v),
                _ => None,
            }),
            sid,
            "SUDI signature does not verify",
        );
        // SUDI data signed for another session does not verify either.
        let replayed = auth_response(dev, ec_mic(dev), sid + 1);
        let mut mixed = good.clone();
        for (a, b) in mixed.elements.iter_mut().zip(replayed.elements.iter()) {
            if matches!(a, Element::SudiData(_)) {
                *a = b.clone();
            }
        }
        refused(&mixed, sid, "SUDI");
    }

    #[test]
    fn a_certificate_of_another_phone_is_refused() {
        let mic = ec_mic("SEP0011AABBCC02");
        // Signed correctly, but the MIC names another phone.
        let m = auth_response("SEP0011AABBCC01", mic, 9);
        refused(&m, 9, "not of SEP0011AABBCC01");
    }
}
