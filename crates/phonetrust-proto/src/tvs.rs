//! TVS messages (protocol id 0x57, version 1): a 10-byte header
//! `id:u8, version:u8, command:u8, reserved:u8, session:u32, length:u16` and a body of
//! elements. A phone asks whether a certificate its ITL/CTL does not list is trusted; the
//! answer carries the roles it is trusted for and how long the phone may cache that.

use crate::codec::{DecodeError, EncodeError, Reader, put_u16, put_u32};
use crate::element::{decode_body, finish_message, wire_enum};
use crate::trustlist::Role;

/// Protocol id of TVS.
pub const PROTOCOL_ID: u8 = 0x57;
/// Protocol version.
pub const PROTOCOL_VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 10;

wire_enum! {
    /// TVS commands.
    pub enum Command: u8 {
        /// Phone → server.
        VerifyRequest = 1,
        /// Server → phone.
        VerifyResponse = 2,
        /// Phone → server.
        QueryRequest = 3,
        /// Server → phone.
        QueryResponse = 4,
    }
}

wire_enum! {
    /// STATUS codes.
    pub enum Status: u8 {
        /// Trusted.
        Valid = 0,
        /// Not trusted.
        Invalid = 1,
    }
}

/// Element tags.
pub mod tag {
    /// DEVICE_NAME: `0x01` then `CP-<model>-SEP<MAC>`.
    pub const DEVICE_NAME: u8 = 1;
    /// CERTIFICATE: DER.
    pub const CERTIFICATE: u8 = 2;
    /// STATUS.
    pub const STATUS: u8 = 7;
    /// ROLES: one byte per role.
    pub const ROLES: u8 = 8;
    /// TTL: u32 seconds.
    pub const TTL: u8 = 9;
}

/// One TVS element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Element {
    /// DEVICE_NAME value as received (leading `0x01` included).
    DeviceName(Vec<u8>),
    /// CERTIFICATE (DER).
    Certificate(Vec<u8>),
    /// STATUS.
    Status(Status),
    /// ROLES, one code per byte.
    Roles(Vec<u8>),
    /// TTL.
    Ttl(u32),
    /// Any other tag.
    Unknown {
        /// Tag.
        tag: u8,
        /// Value.
        value: Vec<u8>,
    },
}

impl Element {
    fn tag(&self) -> u8 {
        match self {
            Self::DeviceName(_) => tag::DEVICE_NAME,
            Self::Certificate(_) => tag::CERTIFICATE,
            Self::Status(_) => tag::STATUS,
            Self::Roles(_) => tag::ROLES,
            Self::Ttl(_) => tag::TTL,
            Self::Unknown { tag, .. } => *tag,
        }
    }

    fn value(&self) -> Vec<u8> {
        match self {
            Self::DeviceName(v) | Self::Certificate(v) | Self::Roles(v) => v.clone(),
            Self::Unknown { value, .. } => value.clone(),
            Self::Status(s) => vec![s.code()],
            Self::Ttl(t) => t.to_be_bytes().to_vec(),
        }
    }

    fn decode(offset: usize, t: u8, v: &[u8]) -> Result<Self, DecodeError> {
        let bad = |n: usize| {
            DecodeError::malformed(
                offset,
                format!("element tag {t}"),
                format!("length {} where {n} is required", v.len()),
            )
        };
        Ok(match t {
            tag::DEVICE_NAME => Self::DeviceName(v.to_vec()),
            tag::CERTIFICATE => Self::Certificate(v.to_vec()),
            tag::STATUS => match v {
                [s] => Self::Status(Status::from(*s)),
                _ => return Err(bad(1)),
            },
            tag::ROLES => Self::Roles(v.to_vec()),
            tag::TTL => match v {
                [a, b, c, d] => Self::Ttl(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => return Err(bad(4)),
            },
            tag => Self::Unknown {
                tag,
                value: v.to_vec(),
            },
        })
    }
}

/// A TVS message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Version byte.
    pub version: u8,
    /// Command.
    pub command: Command,
    /// Reserved byte.
    pub reserved: u8,
    /// Session id (chosen by the phone).
    pub session_id: u32,
    /// Body length.
    pub body_len: u16,
}

impl Header {
    /// Read the header from the first bytes received; `Ok(None)` until 10 bytes are there.
    pub fn peek(buf: &[u8]) -> Result<Option<Self>, DecodeError> {
        if let Some(&b) = buf.first()
            && b != PROTOCOL_ID
        {
            return Err(DecodeError::malformed(
                0,
                "protocol id",
                format!("0x{b:02x} is not TVS (0x57)"),
            ));
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut r = Reader::new(buf);
        r.u8("protocol id")?;
        Ok(Some(Self {
            version: r.u8("version")?,
            command: Command::from(r.u8("command")?),
            reserved: r.u8("reserved")?,
            session_id: r.u32("session id")?,
            body_len: r.u16("body length")?,
        }))
    }

    /// Total length of the message this header starts.
    pub fn message_len(&self) -> usize {
        HEADER_LEN + usize::from(self.body_len)
    }
}

/// One TVS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Version byte (1).
    pub version: u8,
    /// Command.
    pub command: Command,
    /// Reserved byte (0).
    pub reserved: u8,
    /// Session id.
    pub session_id: u32,
    /// Elements in order.
    pub elements: Vec<Element>,
}

impl Message {
    /// A version-1 message.
    pub fn new(command: Command, session_id: u32, elements: Vec<Element>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            command,
            reserved: 0,
            session_id,
            elements,
        }
    }

    /// VERIFY_REQUEST `{DEVICE_NAME, CERTIFICATE}`; `device` is `CP-<model>-SEP<MAC>`.
    pub fn verify_request(session_id: u32, device: &str, cert_der: &[u8]) -> Self {
        let mut name = vec![1u8];
        name.extend_from_slice(device.as_bytes());
        Self::new(
            Command::VerifyRequest,
            session_id,
            vec![
                Element::DeviceName(name),
                Element::Certificate(cert_der.to_vec()),
            ],
        )
    }

    /// VERIFY_RESPONSE `{STATUS=0, ROLES, TTL}`.
    pub fn verify_valid(session_id: u32, roles: &[Role], ttl: u32) -> Self {
        let roles = roles
            .iter()
            .map(|r| u8::try_from(r.code()).unwrap_or(u8::MAX))
            .collect();
        Self::new(
            Command::VerifyResponse,
            session_id,
            vec![
                Element::Status(Status::Valid),
                Element::Roles(roles),
                Element::Ttl(ttl),
            ],
        )
    }

    /// VERIFY_RESPONSE `{STATUS=1}`.
    pub fn verify_invalid(session_id: u32) -> Self {
        Self::new(
            Command::VerifyResponse,
            session_id,
            vec![Element::Status(Status::Invalid)],
        )
    }

    /// Encode header and body into one buffer.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&[
            PROTOCOL_ID,
            self.version,
            self.command.code(),
            self.reserved,
        ]);
        put_u32(&mut out, self.session_id);
        put_u16(&mut out, 0);
        finish_message(
            &mut out,
            HEADER_LEN,
            8,
            self.elements.iter().map(|e| (e.tag(), e.value())),
            "TVS message",
        )?;
        Ok(out)
    }

    /// Decode exactly one message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let h = Header::peek(bytes)?.ok_or(DecodeError::Truncated {
            offset: 0,
            what: "TVS header",
            needed: HEADER_LEN,
            available: bytes.len(),
        })?;
        let elements = decode_body(bytes, HEADER_LEN, h.message_len(), Element::decode)?;
        Ok(Self {
            version: h.version,
            command: h.command,
            reserved: h.reserved,
            session_id: h.session_id,
            elements,
        })
    }

    fn find<'a, T>(&'a self, f: impl Fn(&'a Element) -> Option<T>) -> Option<T> {
        self.elements.iter().find_map(f)
    }

    /// The device name without its leading `0x01`.
    pub fn device_name(&self) -> Option<String> {
        self.find(|e| match e {
            Element::DeviceName(v) => {
                let t = v.strip_prefix(&[1]).unwrap_or(v);
                Some(String::from_utf8_lossy(t).into_owned())
            }
            _ => None,
        })
    }

    /// The certificate asked about.
    pub fn certificate(&self) -> Option<&[u8]> {
        self.find(|e| match e {
            Element::Certificate(v) => Some(v.as_slice()),
            _ => None,
        })
    }

    /// STATUS.
    pub fn status(&self) -> Option<Status> {
        self.find(|e| match e {
            Element::Status(s) => Some(*s),
            _ => None,
        })
    }

    /// ROLES as roles.
    pub fn roles(&self) -> Vec<Role> {
        self.find(|e| match e {
            Element::Roles(v) => Some(v.iter().map(|&b| Role::from(u16::from(b))).collect()),
            _ => None,
        })
        .unwrap_or_default()
    }

    /// TTL.
    pub fn ttl(&self) -> Option<u32> {
        self.find(|e| match e {
            Element::Ttl(t) => Some(*t),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::unhex;

    #[test]
    fn verify_responses_hex() {
        assert_eq!(
            Message::verify_valid(1, &[Role::Sast, Role::CcmTftp], 86400)
                .encode()
                .unwrap(),
            unhex("5701020000000001001007000100080002000209000400015180").unwrap()
        );
        assert_eq!(
            Message::verify_invalid(1).encode().unwrap(),
            unhex("5701020000000001000407000101").unwrap()
        );
        let m =
            Message::decode(&unhex("5701020000000001000f070001000800010409000400000e10").unwrap())
                .unwrap();
        assert_eq!(m.status(), Some(Status::Valid));
        assert_eq!(m.roles(), vec![Role::Capf]);
        assert_eq!(m.ttl(), Some(3600));
    }

    #[test]
    fn verify_request_builds_device_name() {
        let m = Message::verify_request(7, "CP-8845-SEP0011AABBCCDD", &[0x30]);
        let b = m.encode().unwrap();
        let d = Message::decode(&b).unwrap();
        assert_eq!(d.device_name().as_deref(), Some("CP-8845-SEP0011AABBCCDD"));
        assert_eq!(d.certificate(), Some(&[0x30][..]));
        assert_eq!(d, m);
    }

    #[test]
    fn malformed_is_refused() {
        assert!(Header::peek(&[0x55]).is_err());
        assert!(Message::decode(&unhex("57010200000000010003070002").unwrap()).is_err());
        assert!(Message::decode(&unhex("570102000000000100050700020000").unwrap()).is_err());
    }
}
