//! CAPF messages (protocol id 0x55, version 3): an 8-byte header
//! `id:u8, command:u8, session:u32, length:u16` and a body of elements.
//!
//! [`Message::decode`] reads exactly one message from untrusted bytes and keeps element
//! order and unknown elements, so decoding and encoding again gives the same bytes.
//! [`Header::peek`] lets a transport find where a message ends before reading it whole.
//! Constructors build every message the server and the phone send, in the element order
//! of the reference transcripts.

use crate::codec::{DecodeError, EncodeError, Reader, put_tlv, put_u16, put_u32};
use crate::element::{NulText, decode_body, finish_message, split, wire_enum};
use crate::tlv::HashAlg;

/// Protocol id of CAPF.
pub const PROTOCOL_ID: u8 = 0x55;
/// Protocol version the server announces.
pub const PROTOCOL_VERSION: u8 = 3;
/// Header length.
pub const HEADER_LEN: usize = 8;
/// Largest message (header plus the u16 body length).
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + u16::MAX as usize;

wire_enum! {
    /// CAPF commands.
    pub enum Command: u8 {
        /// Server → phone, always first.
        AuthRequest = 1,
        /// Phone → server.
        AuthResponse = 2,
        /// Server → phone: generate a key pair.
        KeyGenRequest = 3,
        /// Phone → server: the public key.
        KeyGenResponse = 4,
        /// Unused so far.
        EncryptResponse = 5,
        /// Unused so far.
        EncryptRequest = 6,
        /// Unused so far.
        DecryptRequest = 7,
        /// Unused so far.
        DecryptResponse = 8,
        /// Server → phone: store this certificate.
        StoreCertRequest = 9,
        /// Phone → server.
        StoreCertResponse = 10,
        /// Server → phone: send your certificate.
        FetchCertRequest = 11,
        /// Phone → server.
        FetchCertResponse = 12,
        /// Server → phone: delete your LSC.
        DeleteCertRequest = 13,
        /// Phone → server.
        DeleteCertResponse = 14,
        /// Server → phone, always last.
        EndSession = 15,
        /// Server → phone: busy, come back after RETRY_DELAY.
        RetryLater = 16,
        /// Phone → server while generating a key.
        RequestInProgress = 17,
        /// Unused so far.
        StatusRequest = 18,
        /// Unused so far.
        StatusResponse = 19,
        /// Unused so far.
        AbortRequest = 20,
        /// Unused so far.
        AbortResponse = 21,
        /// Unused so far.
        SignCertRequest = 22,
        /// Unused so far.
        SignCertResponse = 23,
    }
}

wire_enum! {
    /// REASON codes.
    pub enum Reason: u8 {
        /// 0: nothing to do.
        NoAction = 0,
        /// 1: update certificate / success.
        Success = 1,
        /// 7: invalid element, authentication or protocol failure.
        Failure = 7,
        /// 9: unknown device.
        UnknownDevice = 9,
    }
}

wire_enum! {
    /// AUTH_TYPE codes.
    pub enum AuthType: u8 {
        /// 0: none.
        None = 0,
        /// 1: authentication string.
        Password = 1,
        /// 2: null string.
        NoPassword = 2,
        /// 3: existing LSC.
        Lsc = 3,
        /// 4: MIC.
        Mic = 4,
    }
}

wire_enum! {
    /// KEY_TYPE codes.
    pub enum KeyType: u8 {
        /// RSA.
        Rsa = 0,
        /// EC.
        Ec = 1,
    }
}

wire_enum! {
    /// CURVE codes.
    pub enum Curve: u8 {
        /// secp256r1.
        P256 = 0,
        /// secp384r1.
        P384 = 1,
        /// secp521r1.
        P521 = 2,
    }
}

wire_enum! {
    /// CERTIFICATE_TYPE codes.
    pub enum CertType: u8 {
        /// Locally significant certificate.
        Lsc = 1,
        /// Manufacturer-installed certificate.
        Mic = 2,
    }
}

/// Element tags.
pub mod tag {
    /// REASON.
    pub const REASON: u8 = 1;
    /// REASON_INFO.
    pub const REASON_INFO: u8 = 2;
    /// CERTIFICATE_TYPE.
    pub const CERTIFICATE_TYPE: u8 = 3;
    /// CERTIFICATE (wrapped).
    pub const CERTIFICATE: u8 = 4;
    /// CERTIFICATE_ID.
    pub const CERTIFICATE_ID: u8 = 5;
    /// SIGNED_DATA.
    pub const SIGNED_DATA: u8 = 6;
    /// VERSION.
    pub const VERSION: u8 = 7;
    /// AUTH_TYPE.
    pub const AUTH_TYPE: u8 = 8;
    /// PUBLIC_KEY (DER SubjectPublicKeyInfo).
    pub const PUBLIC_KEY: u8 = 9;
    /// KEY_SIZE.
    pub const KEY_SIZE: u8 = 10;
    /// PASSWORD.
    pub const PASSWORD: u8 = 11;
    /// RETRY_DELAY.
    pub const RETRY_DELAY: u8 = 12;
    /// DEVICE_NAME.
    pub const DEVICE_NAME: u8 = 13;
    /// SUDI_DATA.
    pub const SUDI_DATA: u8 = 16;
    /// KEY_TYPE.
    pub const KEY_TYPE: u8 = 17;
    /// CURVE.
    pub const CURVE: u8 = 18;
    /// DIGEST_TYPE.
    pub const DIGEST_TYPE: u8 = 19;
    /// SHA2_SIGNED_DATA.
    pub const SHA2_SIGNED_DATA: u8 = 20;
}

/// The value of a CERTIFICATE element, kept as received:
/// `0x01, length:u16 (= DER length + 2), 0x00, certificate_type:u8, DER`.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedCert(pub Vec<u8>);

impl WrappedCert {
    /// Wrap a DER certificate.
    pub fn new(cert_type: CertType, der: &[u8]) -> Result<Self, EncodeError> {
        let len = u16::try_from(der.len() + 2).map_err(|_| EncodeError::TooLong {
            what: "wrapped certificate".into(),
            length: der.len(),
        })?;
        let mut v = Vec::with_capacity(der.len() + 5);
        v.push(1);
        put_u16(&mut v, len);
        v.push(0);
        v.push(cert_type.code());
        v.extend_from_slice(der);
        Ok(Self(v))
    }

    /// The DER certificate (a reader skips the first 5 bytes).
    pub fn der(&self) -> Option<&[u8]> {
        self.0.get(5..).filter(|d| !d.is_empty())
    }

    /// The certificate type byte.
    pub fn cert_type(&self) -> Option<CertType> {
        self.0.get(4).map(|&b| CertType::from(b))
    }
}

impl std::fmt::Debug for WrappedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedCert({} bytes)", self.0.len())
    }
}

/// One CAPF element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Element {
    /// REASON.
    Reason(Reason),
    /// REASON_INFO text.
    ReasonInfo(NulText),
    /// CERTIFICATE_TYPE.
    CertificateType(CertType),
    /// CERTIFICATE.
    Certificate(WrappedCert),
    /// CERTIFICATE_ID.
    CertificateId(Vec<u8>),
    /// SIGNED_DATA: raw RSA (bare SHA-1 digest) or DER ECDSA signature.
    SignedData(Vec<u8>),
    /// VERSION.
    Version(u8),
    /// AUTH_TYPE.
    AuthType(AuthType),
    /// PUBLIC_KEY: DER SubjectPublicKeyInfo.
    PublicKey(Vec<u8>),
    /// KEY_SIZE in bits.
    KeySize(u16),
    /// PASSWORD: the authentication string.
    Password(NulText),
    /// RETRY_DELAY in seconds.
    RetryDelay(u32),
    /// DEVICE_NAME (`SEP` + 12 hex digits).
    DeviceName(NulText),
    /// SUDI_DATA (see [`parse_sudi`]).
    SudiData(Vec<u8>),
    /// KEY_TYPE.
    KeyType(KeyType),
    /// CURVE.
    Curve(Curve),
    /// DIGEST_TYPE.
    DigestType(Vec<u8>),
    /// SHA2_SIGNED_DATA (see [`parse_sha2_signed`]).
    Sha2SignedData(Vec<u8>),
    /// Any other tag, kept as received.
    Unknown {
        /// Tag.
        tag: u8,
        /// Value.
        value: Vec<u8>,
    },
}

impl Element {
    /// The element's tag.
    pub fn tag(&self) -> u8 {
        match self {
            Self::Reason(_) => tag::REASON,
            Self::ReasonInfo(_) => tag::REASON_INFO,
            Self::CertificateType(_) => tag::CERTIFICATE_TYPE,
            Self::Certificate(_) => tag::CERTIFICATE,
            Self::CertificateId(_) => tag::CERTIFICATE_ID,
            Self::SignedData(_) => tag::SIGNED_DATA,
            Self::Version(_) => tag::VERSION,
            Self::AuthType(_) => tag::AUTH_TYPE,
            Self::PublicKey(_) => tag::PUBLIC_KEY,
            Self::KeySize(_) => tag::KEY_SIZE,
            Self::Password(_) => tag::PASSWORD,
            Self::RetryDelay(_) => tag::RETRY_DELAY,
            Self::DeviceName(_) => tag::DEVICE_NAME,
            Self::SudiData(_) => tag::SUDI_DATA,
            Self::KeyType(_) => tag::KEY_TYPE,
            Self::Curve(_) => tag::CURVE,
            Self::DigestType(_) => tag::DIGEST_TYPE,
            Self::Sha2SignedData(_) => tag::SHA2_SIGNED_DATA,
            Self::Unknown { tag, .. } => *tag,
        }
    }

    fn value(&self) -> Vec<u8> {
        match self {
            Self::Reason(v) => vec![v.code()],
            Self::CertificateType(v) => vec![v.code()],
            Self::Version(v) => vec![*v],
            Self::AuthType(v) => vec![v.code()],
            Self::KeyType(v) => vec![v.code()],
            Self::Curve(v) => vec![v.code()],
            Self::KeySize(v) => v.to_be_bytes().to_vec(),
            Self::RetryDelay(v) => v.to_be_bytes().to_vec(),
            Self::ReasonInfo(t) | Self::Password(t) | Self::DeviceName(t) => t.0.clone(),
            Self::Certificate(c) => c.0.clone(),
            Self::CertificateId(v)
            | Self::SignedData(v)
            | Self::PublicKey(v)
            | Self::SudiData(v)
            | Self::DigestType(v)
            | Self::Sha2SignedData(v)
            | Self::Unknown { value: v, .. } => v.clone(),
        }
    }

    fn decode(offset: usize, t: u8, v: &[u8]) -> Result<Self, DecodeError> {
        let fixed = |n: usize| -> Result<&[u8], DecodeError> {
            if v.len() == n {
                Ok(v)
            } else {
                Err(DecodeError::malformed(
                    offset,
                    format!("element tag {t}"),
                    format!("length {} where {n} is required", v.len()),
                ))
            }
        };
        let b = |n| fixed(n).map(|s| s.first().copied().unwrap_or(0));
        Ok(match t {
            tag::REASON => Self::Reason(Reason::from(b(1)?)),
            tag::REASON_INFO => Self::ReasonInfo(NulText(v.to_vec())),
            tag::CERTIFICATE_TYPE => Self::CertificateType(CertType::from(b(1)?)),
            tag::CERTIFICATE => Self::Certificate(WrappedCert(v.to_vec())),
            tag::CERTIFICATE_ID => Self::CertificateId(v.to_vec()),
            tag::SIGNED_DATA => Self::SignedData(v.to_vec()),
            tag::VERSION => Self::Version(b(1)?),
            tag::AUTH_TYPE => Self::AuthType(AuthType::from(b(1)?)),
            tag::PUBLIC_KEY => Self::PublicKey(v.to_vec()),
            tag::KEY_SIZE => {
                let s = fixed(2)?;
                Self::KeySize(u16::from_be_bytes([
                    s.first().copied().unwrap_or(0),
                    s.get(1).copied().unwrap_or(0),
                ]))
            }
            tag::PASSWORD => Self::Password(NulText(v.to_vec())),
            tag::RETRY_DELAY => {
                let mut r = Reader::at(fixed(4)?, offset + 3);
                Self::RetryDelay(r.u32("RETRY_DELAY")?)
            }
            tag::DEVICE_NAME => Self::DeviceName(NulText(v.to_vec())),
            tag::SUDI_DATA => Self::SudiData(v.to_vec()),
            tag::KEY_TYPE => Self::KeyType(KeyType::from(b(1)?)),
            tag::CURVE => Self::Curve(Curve::from(b(1)?)),
            tag::DIGEST_TYPE => Self::DigestType(v.to_vec()),
            tag::SHA2_SIGNED_DATA => Self::Sha2SignedData(v.to_vec()),
            tag => Self::Unknown {
                tag,
                value: v.to_vec(),
            },
        })
    }
}

/// A message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Command.
    pub command: Command,
    /// Session id.
    pub session_id: u32,
    /// Body length.
    pub body_len: u16,
}

impl Header {
    /// Read the header from the first bytes received; `Ok(None)` until 8 bytes are there.
    /// A wrong protocol id is an error at once, so a transport can drop garbage early.
    pub fn peek(buf: &[u8]) -> Result<Option<Self>, DecodeError> {
        if buf.first().is_some_and(|&b| b != PROTOCOL_ID) {
            return Err(DecodeError::malformed(
                0,
                "protocol id",
                format!(
                    "0x{:02x} is not CAPF (0x55)",
                    buf.first().copied().unwrap_or(0)
                ),
            ));
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut r = Reader::new(buf);
        r.u8("protocol id")?;
        Ok(Some(Self {
            command: Command::from(r.u8("command")?),
            session_id: r.u32("session id")?,
            body_len: r.u16("body length")?,
        }))
    }

    /// Total length of the message this header starts.
    pub fn message_len(&self) -> usize {
        HEADER_LEN + usize::from(self.body_len)
    }
}

/// One CAPF message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Command.
    pub command: Command,
    /// Session id.
    pub session_id: u32,
    /// Elements in order.
    pub elements: Vec<Element>,
}

impl Message {
    /// A message.
    pub fn new(command: Command, session_id: u32, elements: Vec<Element>) -> Self {
        Self {
            command,
            session_id,
            elements,
        }
    }

    /// Encode header and body into one buffer (to leave in one write).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        out.push(PROTOCOL_ID);
        out.push(self.command.code());
        put_u32(&mut out, self.session_id);
        put_u16(&mut out, 0);
        finish_message(
            &mut out,
            HEADER_LEN,
            6,
            self.elements.iter().map(|e| (e.tag(), e.value())),
            "CAPF message",
        )?;
        Ok(out)
    }

    /// Decode exactly one message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let h = Header::peek(bytes)?.ok_or(DecodeError::Truncated {
            offset: 0,
            what: "CAPF header",
            needed: HEADER_LEN,
            available: bytes.len(),
        })?;
        let elements = decode_body(bytes, HEADER_LEN, h.message_len(), Element::decode)?;
        Ok(Self {
            command: h.command,
            session_id: h.session_id,
            elements,
        })
    }

    fn find<'a, T>(&'a self, f: impl Fn(&'a Element) -> Option<T>) -> Option<T> {
        self.elements.iter().find_map(f)
    }

    /// REASON, if present.
    pub fn reason(&self) -> Option<Reason> {
        self.find(|e| match e {
            Element::Reason(r) => Some(*r),
            _ => None,
        })
    }

    /// VERSION, if present.
    pub fn version(&self) -> Option<u8> {
        self.find(|e| match e {
            Element::Version(v) => Some(*v),
            _ => None,
        })
    }

    /// DEVICE_NAME text, if present.
    pub fn device_name(&self) -> Option<String> {
        self.find(|e| match e {
            Element::DeviceName(t) => Some(t.text()),
            _ => None,
        })
    }

    /// PASSWORD text, if present.
    pub fn password(&self) -> Option<String> {
        self.find(|e| match e {
            Element::Password(t) => Some(t.text()),
            _ => None,
        })
    }

    /// The DER certificate of the CERTIFICATE element, if present.
    pub fn certificate(&self) -> Option<&[u8]> {
        self.find(|e| match e {
            Element::Certificate(c) => c.der(),
            _ => None,
        })
    }

    /// PUBLIC_KEY, if present.
    pub fn public_key(&self) -> Option<&[u8]> {
        self.find(|e| match e {
            Element::PublicKey(k) => Some(k.as_slice()),
            _ => None,
        })
    }

    /// SIGNED_DATA, if present.
    pub fn signed_data(&self) -> Option<&[u8]> {
        self.find(|e| match e {
            Element::SignedData(k) => Some(k.as_slice()),
            _ => None,
        })
    }

    /// SHA2_SIGNED_DATA value, if present.
    pub fn sha2_signed_data(&self) -> Option<&[u8]> {
        self.find(|e| match e {
            Element::Sha2SignedData(k) => Some(k.as_slice()),
            _ => None,
        })
    }

    /// SUDI_DATA value, if present.
    pub fn sudi_data(&self) -> Option<&[u8]> {
        self.find(|e| match e {
            Element::SudiData(k) => Some(k.as_slice()),
            _ => None,
        })
    }

    /// KEY_SIZE, if present.
    pub fn key_size(&self) -> Option<u16> {
        self.find(|e| match e {
            Element::KeySize(v) => Some(*v),
            _ => None,
        })
    }

    /// KEY_TYPE, if present.
    pub fn key_type(&self) -> Option<KeyType> {
        self.find(|e| match e {
            Element::KeyType(v) => Some(*v),
            _ => None,
        })
    }

    /// CURVE, if present.
    pub fn curve(&self) -> Option<Curve> {
        self.find(|e| match e {
            Element::Curve(v) => Some(*v),
            _ => None,
        })
    }

    /// AUTH_TYPE, if present.
    pub fn auth_type(&self) -> Option<AuthType> {
        self.find(|e| match e {
            Element::AuthType(v) => Some(*v),
            _ => None,
        })
    }

    /// RETRY_DELAY, if present.
    pub fn retry_delay(&self) -> Option<u32> {
        self.find(|e| match e {
            Element::RetryDelay(v) => Some(*v),
            _ => None,
        })
    }

    // ---- server → phone ----

    /// AUTH_REQUEST `{VERSION=3, AUTH_TYPE}`.
    pub fn auth_request(session_id: u32, auth_type: AuthType) -> Self {
        Self::new(
            Command::AuthRequest,
            session_id,
            vec![
                Element::Version(PROTOCOL_VERSION),
                Element::AuthType(auth_type),
            ],
        )
    }

    /// KEY_GENERATE_REQUEST for an RSA key `{KEY_SIZE, KEY_TYPE=0}`.
    pub fn key_gen_request_rsa(session_id: u32, bits: u16) -> Self {
        Self::new(
            Command::KeyGenRequest,
            session_id,
            vec![Element::KeySize(bits), Element::KeyType(KeyType::Rsa)],
        )
    }

    /// KEY_GENERATE_REQUEST for an EC key `{CURVE, KEY_TYPE=1}`.
    pub fn key_gen_request_ec(session_id: u32, curve: Curve) -> Self {
        Self::new(
            Command::KeyGenRequest,
            session_id,
            vec![Element::Curve(curve), Element::KeyType(KeyType::Ec)],
        )
    }

    /// STORE_CERTIFICATE_REQUEST `{CERTIFICATE_TYPE=1, CERTIFICATE}`.
    pub fn store_cert_request(session_id: u32, der: &[u8]) -> Result<Self, EncodeError> {
        Ok(Self::new(
            Command::StoreCertRequest,
            session_id,
            vec![
                Element::CertificateType(CertType::Lsc),
                Element::Certificate(WrappedCert::new(CertType::Lsc, der)?),
            ],
        ))
    }

    /// FETCH_CERTIFICATE_REQUEST `{}`.
    pub fn fetch_cert_request(session_id: u32) -> Self {
        Self::new(Command::FetchCertRequest, session_id, vec![])
    }

    /// DELETE_CERTIFICATE_REQUEST `{}`.
    pub fn delete_cert_request(session_id: u32) -> Self {
        Self::new(Command::DeleteCertRequest, session_id, vec![])
    }

    /// END_SESSION `{REASON}`.
    pub fn end_session(session_id: u32, reason: Reason) -> Self {
        Self::new(
            Command::EndSession,
            session_id,
            vec![Element::Reason(reason)],
        )
    }

    /// RETRY_LATER `{RETRY_DELAY}`.
    pub fn retry_later(session_id: u32, delay_secs: u32) -> Self {
        Self::new(
            Command::RetryLater,
            session_id,
            vec![Element::RetryDelay(delay_secs)],
        )
    }

    // ---- phone → server ----

    /// AUTH_RESPONSE by null string or authentication string
    /// `{REASON=1, VERSION, PASSWORD, DEVICE_NAME}` (an empty password is a lone NUL).
    pub fn auth_response_password(
        session_id: u32,
        version: u8,
        device: &str,
        password: &str,
    ) -> Self {
        Self::new(
            Command::AuthResponse,
            session_id,
            vec![
                Element::Reason(Reason::Success),
                Element::Version(version),
                Element::Password(NulText::new(password)),
                Element::DeviceName(NulText::new(device)),
            ],
        )
    }

    /// REQUEST_IN_PROGRESS `{}`.
    pub fn request_in_progress(session_id: u32) -> Self {
        Self::new(Command::RequestInProgress, session_id, vec![])
    }

    /// KEY_GENERATE_RESPONSE `{PUBLIC_KEY}`.
    pub fn key_gen_response(session_id: u32, spki_der: &[u8]) -> Self {
        Self::new(
            Command::KeyGenResponse,
            session_id,
            vec![Element::PublicKey(spki_der.to_vec())],
        )
    }

    /// A phone's `{REASON}`-only answer (STORE/DELETE/KEY_GEN failure responses).
    pub fn reason_only(command: Command, session_id: u32, reason: Reason) -> Self {
        Self::new(command, session_id, vec![Element::Reason(reason)])
    }

    /// FETCH_CERTIFICATE_RESPONSE `{REASON=1, CERTIFICATE}`.
    pub fn fetch_cert_response(session_id: u32, der: &[u8]) -> Result<Self, EncodeError> {
        Ok(Self::new(
            Command::FetchCertResponse,
            session_id,
            vec![
                Element::Reason(Reason::Success),
                Element::Certificate(WrappedCert::new(CertType::Lsc, der)?),
            ],
        ))
    }
}

/// The message a phone signs to authenticate with its certificate:
/// `device_name + 0x00 + certificate DER`.
pub fn auth_signed_message(device_name: &str, cert_der: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(device_name.len() + 1 + cert_der.len());
    m.extend_from_slice(device_name.as_bytes());
    m.push(0);
    m.extend_from_slice(cert_der);
    m
}

/// The message a SUDI signature covers: `session_id (u32 little-endian) + certificate DER`.
pub fn sudi_signed_message(session_id: u32, cert_der: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + cert_der.len());
    m.extend_from_slice(&session_id.to_le_bytes());
    m.extend_from_slice(cert_der);
    m
}

/// SHA2_SIGNED_DATA: `hash_alg:u8, length:u16, signature`.
pub fn parse_sha2_signed(v: &[u8]) -> Result<(HashAlg, &[u8]), DecodeError> {
    let mut r = Reader::new(v);
    let alg = HashAlg::from(r.u8("SHA2_SIGNED_DATA hash")?);
    let len = r.u16("SHA2_SIGNED_DATA length")?;
    let sig = r.take(usize::from(len), "SHA2_SIGNED_DATA signature")?;
    Ok((alg, sig))
}

/// Encode SHA2_SIGNED_DATA.
pub fn encode_sha2_signed(alg: HashAlg, sig: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut v = Vec::with_capacity(sig.len() + 3);
    put_tlv(&mut v, alg.code(), sig, "SHA2_SIGNED_DATA")?;
    Ok(v)
}

/// The parts of SUDI_DATA.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sudi<'a> {
    /// SUDI certificate DER (item 0).
    pub certificate: &'a [u8],
    /// SHA-1 signature (item 1).
    pub sha1_signature: Option<&'a [u8]>,
    /// SHA-512 signature (item 3).
    pub sha512_signature: Option<&'a [u8]>,
}

/// SUDI_DATA: `0x00, len, cert, 0x01, len, sha1 sig, 0x03, len, sha512 sig`.
pub fn parse_sudi(v: &[u8]) -> Result<Sudi<'_>, DecodeError> {
    let mut s = Sudi::default();
    let mut have_cert = false;
    for e in split(Reader::new(v))? {
        match e.tag {
            0 => {
                s.certificate = e.value;
                have_cert = true;
            }
            1 => s.sha1_signature = Some(e.value),
            3 => s.sha512_signature = Some(e.value),
            _ => {}
        }
    }
    if !have_cert {
        return Err(DecodeError::malformed(
            0,
            "SUDI_DATA",
            "no certificate item (0)",
        ));
    }
    Ok(s)
}

/// Encode SUDI_DATA.
pub fn encode_sudi(
    cert: &[u8],
    sha1_sig: &[u8],
    sha512_sig: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut v = Vec::new();
    put_tlv(&mut v, 0, cert, "SUDI certificate")?;
    put_tlv(&mut v, 1, sha1_sig, "SUDI SHA-1 signature")?;
    put_tlv(&mut v, 3, sha512_sig, "SUDI SHA-512 signature")?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::unhex;

    #[test]
    fn auth_request_hex() {
        let m = Message::auth_request(1, AuthType::None);
        assert_eq!(
            m.encode().unwrap(),
            unhex("55010000000100080700010308000100").unwrap()
        );
    }

    #[test]
    fn auth_response_hex_round_trip() {
        let b =
            unhex("550200000001001f01000101070001030b0001000d001053455030303131323241414242434300")
                .unwrap();
        let m = Message::decode(&b).unwrap();
        assert_eq!(m.command, Command::AuthResponse);
        assert_eq!(m.device_name().as_deref(), Some("SEP001122AABBCC"));
        assert_eq!(m.password().as_deref(), Some(""));
        assert_eq!(m.version(), Some(3));
        assert_eq!(
            m,
            Message::auth_response_password(1, 3, "SEP001122AABBCC", "")
        );
        assert_eq!(m.encode().unwrap(), b);
    }

    #[test]
    fn key_gen_and_end_session_hex() {
        assert_eq!(
            Message::key_gen_request_rsa(1, 2048).encode().unwrap(),
            unhex("55030000000100090a0002080011000100").unwrap()
        );
        assert_eq!(
            Message::end_session(5, Reason::UnknownDevice)
                .encode()
                .unwrap(),
            unhex("550f00000005000401000109").unwrap()
        );
        assert_eq!(
            Message::request_in_progress(1).encode().unwrap(),
            unhex("5511000000010000").unwrap()
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        // Wrong protocol id.
        assert!(Header::peek(&[0x57]).is_err());
        // Header only partly there.
        assert_eq!(Header::peek(&[0x55, 1]).unwrap(), None);
        // Body shorter than announced.
        assert!(Message::decode(&unhex("5501000000010008070001").unwrap()).is_err());
        // Element overruns the body.
        assert!(Message::decode(&unhex("550100000001000407000503").unwrap()).is_err());
        // Fixed-size element with a wrong length.
        assert!(Message::decode(&unhex("55010000000100050700020303").unwrap()).is_err());
    }

    #[test]
    fn unknown_commands_and_elements_are_kept() {
        let b = unhex("556300000009000463000101").unwrap();
        let m = Message::decode(&b).unwrap();
        assert_eq!(m.command, Command::Unknown(0x63));
        assert_eq!(
            m.elements,
            vec![Element::Unknown {
                tag: 0x63,
                value: vec![1]
            }]
        );
        assert_eq!(m.encode().unwrap(), b);
    }

    #[test]
    fn wrapped_cert_layout() {
        let w = WrappedCert::new(CertType::Lsc, &[0x30, 0x01, 0x00]).unwrap();
        assert_eq!(w.0, vec![0x01, 0x00, 0x05, 0x00, 0x01, 0x30, 0x01, 0x00]);
        assert_eq!(w.der(), Some(&[0x30, 0x01, 0x00][..]));
        assert_eq!(WrappedCert(vec![1, 2]).der(), None);
    }

    #[test]
    fn sudi_and_sha2_round_trip() {
        let v = encode_sudi(b"cert", b"s1", b"s512").unwrap();
        let s = parse_sudi(&v).unwrap();
        assert_eq!(s.certificate, b"cert");
        assert_eq!(s.sha1_signature, Some(&b"s1"[..]));
        assert_eq!(s.sha512_signature, Some(&b"s512"[..]));
        let v = encode_sha2_signed(HashAlg::Sha512, b"sig").unwrap();
        assert_eq!(
            parse_sha2_signed(&v).unwrap(),
            (HashAlg::Sha512, &b"sig"[..])
        );
        assert_eq!(sudi_signed_message(1, b"c"), vec![1, 0, 0, 0, b'c']);
        assert_eq!(auth_signed_message("SEP1", b"c"), b"SEP1\0c".to_vec());
    }
}
