//! The phone's side of a CAPF session, sans I/O, as the reference phone client behaves in
//! `vectors/transcripts/capf.log`: AUTH_RESPONSE elements in tag order (PASSWORD always
//! present, empty when none), REQUEST_IN_PROGRESS before the key, each message whole.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::capf::{
    AuthType, CertType, Command, Element, Message, Reason, WrappedCert, auth_signed_message,
    encode_sha2_signed, encode_sudi, sudi_signed_message,
};
use crate::capf_server::KeyRequest;
use crate::cert::{CertAndKey, raw_sign};
use crate::element::NulText;
use crate::tlv::HashAlg;

/// How the phone authenticates when the server's AUTH_REQUEST does not say (AUTH_TYPE 0):
/// its configured mode (`capfAuthMode` of its config file, as a real phone learns it).
/// When the server names an AUTH_TYPE, the phone answers that one.
#[derive(Clone, Debug)]
pub enum PhoneAuth {
    /// Null string.
    None,
    /// Authentication string entered on the phone.
    Password(String),
    /// Its existing certificate: the LSC when it has one, else the MIC.
    Certificate {
        /// Also send SUDI data signed with the same key.
        sudi: bool,
    },
}

/// The phone's identity and storage.
#[derive(Clone, Debug)]
pub struct PhoneState {
    /// `SEP<MAC>`.
    pub device: String,
    /// Factory certificate.
    pub mic: Option<CertAndKey>,
    /// Installed LSC.
    pub lsc: Option<CertAndKey>,
    /// Protocol version it answers with (3; some clients say 2).
    pub version: u8,
}

/// What the phone shell must do next.
#[derive(Debug)]
pub enum PhoneAction {
    /// Write this message (in one write).
    Send(Vec<u8>),
    /// Generate (or take a pre-generated) key and call [`PhoneSession::key_ready`] with
    /// it, or with `None` when the phone cannot make this kind of key.
    GenerateKey(KeyRequest),
    /// The session is over.
    Done(PhoneResult),
}

/// How a session ended, with the status message the phone shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PhoneResult {
    /// A new LSC is installed.
    Installed,
    /// The LSC was deleted.
    Deleted,
    /// The server fetched the certificate.
    Fetched,
    /// Nothing was scheduled.
    NothingToDo,
    /// The server is busy: try again after this many seconds.
    RetryLater(u32),
    /// The operation failed (END_SESSION reason, or a protocol problem).
    Failed(String),
}

impl PhoneResult {
    /// The phone's status message.
    pub fn status_message(&self) -> String {
        match self {
            Self::Installed => "LSC: Installed".into(),
            Self::Deleted => "LSC: Deleted".into(),
            Self::Fetched | Self::NothingToDo => "LSC: Operation complete".into(),
            Self::RetryLater(_) => "LSC: Operation pending".into(),
            Self::Failed(_) => "LSC: Failed".into(),
        }
    }
}

/// One CAPF session, phone side.
#[derive(Debug)]
pub struct PhoneSession {
    state: PhoneState,
    auth: PhoneAuth,
    session_id: Option<u32>,
    pending_key: Option<PKey<Private>>,
    did: Option<PhoneResult>,
}

/// What the phone authenticates with in one AUTH_RESPONSE.
enum Answer<'a> {
    Null,
    Password(&'a str),
    /// The certificate and key, and whether SUDI data goes along.
    Certificate(&'a CertAndKey, bool),
}

fn enc(m: &Message) -> Vec<u8> {
    m.encode().unwrap_or_default()
}

impl PhoneSession {
    /// A session for `state`, authenticating with `auth`.
    pub fn new(state: PhoneState, auth: PhoneAuth) -> Self {
        Self {
            state,
            auth,
            session_id: None,
            pending_key: None,
            did: None,
        }
    }

    /// The phone's storage (with the new LSC after an install).
    pub fn state(&self) -> &PhoneState {
        &self.state
    }

    /// Give the storage back.
    pub fn into_state(self) -> PhoneState {
        self.state
    }

    fn sid(&self) -> u32 {
        self.session_id.unwrap_or(0)
    }

    /// What to authenticate with, for the AUTH_TYPE the server asked for: the server's
    /// choice when it names one, else the configured mode.
    fn answer(&self, asked: Option<AuthType>) -> Result<Answer<'_>, String> {
        let sudi = matches!(self.auth, PhoneAuth::Certificate { sudi: true });
        let password = match &self.auth {
            PhoneAuth::Password(p) => p.as_str(),
            _ => "",
        };
        let lsc = || self.state.lsc.as_ref().ok_or("no LSC to authenticate with");
        let mic = || self.state.mic.as_ref().ok_or("no MIC to authenticate with");
        Ok(match asked {
            Some(AuthType::Password) => Answer::Password(password),
            Some(AuthType::NoPassword) => Answer::Null,
            Some(AuthType::Lsc) => Answer::Certificate(lsc()?, sudi),
            Some(AuthType::Mic) => Answer::Certificate(mic()?, sudi),
            _ => match &self.auth {
                PhoneAuth::None => Answer::Null,
                PhoneAuth::Password(p) => Answer::Password(p),
                PhoneAuth::Certificate { sudi } => Answer::Certificate(
                    self.state
                        .lsc
                        .as_ref()
                        .or(self.state.mic.as_ref())
                        .ok_or("no certificate to authenticate with")?,
                    *sudi,
                ),
            },
        })
    }

    fn auth_response(&self, sid: u32, asked: Option<AuthType>) -> Result<Message, String> {
        let dev = &self.state.device;
        let mut els = vec![Element::Reason(Reason::Success)];
        let mut tail = Vec::new();
        let answer = self.answer(asked)?;
        if let Answer::Certificate(ck, sudi) = answer {
            let der = ck.cert.to_der().map_err(|e| e.to_string())?;
            let msg = auth_signed_message(dev, &der);
            let s1 = raw_sign(&ck.key, MessageDigest::sha1(), &msg).map_err(|e| e.to_string())?;
            let s5 = raw_sign(&ck.key, MessageDigest::sha512(), &msg).map_err(|e| e.to_string())?;
            els.push(Element::Certificate(
                WrappedCert::new(CertType::Lsc, &der).map_err(|e| e.to_string())?,
            ));
            els.push(Element::SignedData(s1));
            if sudi {
                let m = sudi_signed_message(sid, &der);
                let a = raw_sign(&ck.key, MessageDigest::sha1(), &m).map_err(|e| e.to_string())?;
                let b =
                    raw_sign(&ck.key, MessageDigest::sha512(), &m).map_err(|e| e.to_string())?;
                tail.push(Element::SudiData(
                    encode_sudi(&der, &a, &b).map_err(|e| e.to_string())?,
                ));
            }
            tail.push(Element::Sha2SignedData(
                encode_sha2_signed(HashAlg::Sha512, &s5).map_err(|e| e.to_string())?,
            ));
        }
        els.push(Element::Version(self.state.version));
        let pw = match answer {
            Answer::Password(p) => p,
            _ => "",
        };
        els.push(Element::Password(NulText::new(pw)));
        els.push(Element::DeviceName(NulText::new(dev)));
        els.extend(tail);
        Ok(Message::new(Command::AuthResponse, sid, els))
    }

    fn done(&mut self, r: PhoneResult) -> Vec<PhoneAction> {
        vec![PhoneAction::Done(r)]
    }

    /// A whole message from the server.
    pub fn handle(&mut self, bytes: &[u8]) -> Vec<PhoneAction> {
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => return self.done(PhoneResult::Failed(format!("malformed message: {e}"))),
        };
        let sid = msg.session_id;
        match msg.command {
            Command::AuthRequest => {
                self.session_id = Some(sid);
                match self.auth_response(sid, msg.auth_type()) {
                    Ok(m) => vec![PhoneAction::Send(enc(&m))],
                    Err(e) => self.done(PhoneResult::Failed(e)),
                }
            }
            Command::KeyGenRequest => {
                let req = match (msg.key_type(), msg.key_size(), msg.curve()) {
                    (Some(crate::capf::KeyType::Ec), _, Some(c)) => KeyRequest::Ec(c),
                    (_, Some(bits), _) => KeyRequest::Rsa(bits),
                    _ => return self.done(PhoneResult::Failed("bad key request".into())),
                };
                vec![
                    PhoneAction::Send(enc(&Message::request_in_progress(self.sid()))),
                    PhoneAction::GenerateKey(req),
                ]
            }
            Command::StoreCertRequest => {
                let stored = msg
                    .certificate()
                    .and_then(|der| X509::from_der(der).ok())
                    .zip(self.pending_key.take())
                    .and_then(|(cert, key)| CertAndKey::new(cert, key).ok());
                match stored {
                    Some(ck) => {
                        self.state.lsc = Some(ck);
                        self.did = Some(PhoneResult::Installed);
                        vec![PhoneAction::Send(enc(&Message::reason_only(
                            Command::StoreCertResponse,
                            self.sid(),
                            Reason::Success,
                        )))]
                    }
                    None => vec![PhoneAction::Send(enc(&Message::reason_only(
                        Command::StoreCertResponse,
                        self.sid(),
                        Reason::Failure,
                    )))],
                }
            }
            Command::FetchCertRequest => {
                let cert = self.state.lsc.as_ref().or(self.state.mic.as_ref());
                let m = cert
                    .and_then(|c| c.cert.to_der().ok())
                    .and_then(|der| Message::fetch_cert_response(self.sid(), &der).ok())
                    .unwrap_or_else(|| {
                        Message::reason_only(
                            Command::FetchCertResponse,
                            self.sid(),
                            Reason::Failure,
                        )
                    });
                self.did = Some(PhoneResult::Fetched);
                vec![PhoneAction::Send(enc(&m))]
            }
            Command::DeleteCertRequest => {
                self.state.lsc = None;
                self.did = Some(PhoneResult::Deleted);
                vec![PhoneAction::Send(enc(&Message::reason_only(
                    Command::DeleteCertResponse,
                    self.sid(),
                    Reason::Success,
                )))]
            }
            Command::RetryLater => {
                let d = msg.retry_delay().unwrap_or(60);
                self.done(PhoneResult::RetryLater(d))
            }
            Command::EndSession => {
                let r = match (msg.reason(), self.did.take()) {
                    (Some(Reason::Success | Reason::NoAction), Some(did)) => did,
                    (Some(Reason::NoAction), None) => PhoneResult::NothingToDo,
                    (Some(Reason::UnknownDevice), _) => {
                        PhoneResult::Failed("unknown device".into())
                    }
                    (r, _) => PhoneResult::Failed(format!(
                        "the server ended the session with {}",
                        describe_reason(r)
                    )),
                };
                self.done(r)
            }
            other => self.done(PhoneResult::Failed(format!(
                "the server sent an unexpected message (command {})",
                other.code()
            ))),
        }
    }

    /// The key asked for by [`PhoneAction::GenerateKey`], or `None` when the phone cannot
    /// make it (the server may then ask for its backup key type).
    pub fn key_ready(&mut self, key: Option<PKey<Private>>) -> Vec<PhoneAction> {
        let sid = self.sid();
        match key.and_then(|k| k.public_key_to_der().ok().map(|d| (k, d))) {
            Some((k, spki)) => {
                self.pending_key = Some(k);
                vec![PhoneAction::Send(enc(&Message::key_gen_response(
                    sid, &spki,
                )))]
            }
            None => vec![PhoneAction::Send(enc(&Message::reason_only(
                Command::KeyGenResponse,
                sid,
                Reason::Failure,
            )))],
        }
    }
}

/// An END_SESSION reason in words, for the phone's status and the simulator's report.
pub fn describe_reason(r: Option<Reason>) -> String {
    match r {
        None => "no reason".into(),
        Some(Reason::NoAction) => "nothing to do (reason 0)".into(),
        Some(Reason::Success) => "success (reason 1)".into(),
        Some(Reason::Failure) => {
            "a failure (reason 7: invalid element, authentication or protocol)".into()
        }
        Some(Reason::UnknownDevice) => "unknown device (reason 9)".into(),
        Some(Reason::Unknown(c)) => format!("reason {c}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::codec::unhex;
    use crate::testutil::vector;

    /// The reference server's AUTH_REQUEST (`capf.log`, session 1: VERSION 3, AUTH_TYPE 0)
    /// with its AUTH_TYPE byte replaced.
    fn auth_request(auth_type: u8) -> Vec<u8> {
        let mut m = unhex("55010000000100080700010308000100").unwrap();
        *m.last_mut().unwrap() = auth_type;
        m
    }

    fn state(lsc: bool) -> PhoneState {
        PhoneState {
            device: "SEP0011AABBCCDD".into(),
            mic: Some(CertAndKey::from_pem(&vector("pki/mic-SEP0011AABBCCDD.pem")).unwrap()),
            lsc: lsc.then(|| CertAndKey::from_pem(&vector("pki/lsc/SEP0011AABBCCDD.pem")).unwrap()),
            version: 3,
        }
    }

    /// The AUTH_RESPONSE to an AUTH_REQUEST of `auth_type`.
    fn respond(s: PhoneState, configured: PhoneAuth, auth_type: u8) -> Result<Message, String> {
        let mut p = PhoneSession::new(s, configured);
        match p.handle(&auth_request(auth_type)).as_slice() {
            [PhoneAction::Send(b)] => Ok(Message::decode(b).unwrap()),
            [PhoneAction::Done(PhoneResult::Failed(why))] => Err(why.clone()),
            other => panic!("{other:?}"),
        }
    }

    fn der(c: &Option<CertAndKey>) -> Vec<u8> {
        c.as_ref().unwrap().cert.to_der().unwrap()
    }

    #[test]
    fn the_phone_answers_the_auth_type_the_server_asks_for() {
        let (s, pw) = (state(true), || PhoneAuth::Password("123456".into()));
        // 3: the LSC, whatever the phone was configured with.
        let m = respond(s.clone(), PhoneAuth::None, 3).unwrap();
        assert_eq!(m.certificate(), Some(der(&s.lsc).as_slice()));
        assert!(m.signed_data().is_some());
        assert_eq!(m.password().as_deref(), Some(""));
        // 4: the MIC, even when an LSC is installed.
        let m = respond(s.clone(), PhoneAuth::None, 4).unwrap();
        assert_eq!(m.certificate(), Some(der(&s.mic).as_slice()));
        // 1: the authentication string; 2: nothing, even for a phone set to certificates.
        let m = respond(s.clone(), pw(), 1).unwrap();
        assert_eq!(m.password().as_deref(), Some("123456"));
        assert_eq!(m.certificate(), None);
        let m = respond(s.clone(), PhoneAuth::Certificate { sudi: true }, 2).unwrap();
        assert_eq!((m.certificate(), m.sudi_data()), (None, None));
        assert_eq!(m.password().as_deref(), Some(""));
        // 0: the server does not say: the configured mode.
        let m = respond(s.clone(), PhoneAuth::Certificate { sudi: true }, 0).unwrap();
        assert_eq!(m.certificate(), Some(der(&s.lsc).as_slice()));
        assert!(m.sudi_data().is_some());
        let m = respond(s.clone(), pw(), 0).unwrap();
        assert_eq!(m.password().as_deref(), Some("123456"));
        let m = respond(state(false), PhoneAuth::Certificate { sudi: false }, 0).unwrap();
        assert_eq!(
            m.certificate(),
            Some(der(&s.mic).as_slice()),
            "no LSC: the MIC"
        );
        // Asked for an LSC it does not have: the session fails on the phone, saying why.
        let e = respond(state(false), PhoneAuth::None, 3).unwrap_err();
        assert!(e.contains("no LSC"), "{e}");
    }
}
