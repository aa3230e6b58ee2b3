//! The TVS server's side of a connection as a sans-IO state machine: bytes from the phone
//! in, requests out; the shell looks the certificate up in its trust index and turns the
//! verdict into the one response message to write.
//!
//! A connection may carry several requests one after the other. Framing follows the
//! header's body length; a message longer than the cap, a message that is not TVS, or a
//! command a phone does not send ends the connection (the shell logs why).

use crate::codec::DecodeError;
use crate::trustlist::Role;
use crate::tvs::{Command, Element, Header, Message, Status};

/// Largest message accepted from a phone (a certificate of up to ~16 KiB; real phones
/// send about 3.7 KB).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// Why a connection is ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Not a TVS message, or its elements overrun it.
    #[error("malformed TVS message: {0}")]
    Malformed(#[from] DecodeError),
    /// Over [`MAX_MESSAGE`].
    #[error("TVS message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// A server-side command (or an unknown one) sent by the phone.
    #[error("command {0:?} is not a request")]
    NotARequest(Command),
}

/// What a phone asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Session id chosen by the phone (echoed).
    pub session_id: u32,
    /// VERIFY_REQUEST or QUERY_REQUEST (answered with the matching response).
    pub command: Command,
    /// `CP-<model>-SEP<MAC>`, if sent.
    pub device: Option<String>,
    /// The certificate (DER) asked about; `None` if the request carried none.
    pub certificate: Option<Vec<u8>>,
}

/// The trust index's answer about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Trusted for these roles; the phone may cache the answer for `ttl` seconds.
    Trusted {
        /// Roles, in code order.
        roles: Vec<Role>,
        /// Seconds.
        ttl: u32,
    },
    /// Not known (or no certificate was sent).
    Unknown,
}

/// Framing and request decoding for one connection.
#[derive(Debug, Default)]
pub struct ServerSession {
    buf: Vec<u8>,
}

impl ServerSession {
    /// A new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes read from the phone. Call [`Self::next_request`] until it returns `Ok(None)`.
    /// Fails (without growing the buffer) when the data cannot become a message within
    /// the cap.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        // Requests are answered as they complete, so more than one message's worth of
        // unread bytes is a message over the cap or a misbehaving phone.
        let total = self.buf.len() + bytes.len();
        if total > MAX_MESSAGE {
            return Err(SessionError::TooLarge(total));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes buffered and not yet returned as a request.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete request, if one is buffered.
    pub fn next_request(&mut self) -> Result<Option<Request>, SessionError> {
        let Some(h) = Header::peek(&self.buf)? else {
            return Ok(None);
        };
        let len = h.message_len();
        if len > MAX_MESSAGE {
            return Err(SessionError::TooLarge(len));
        }
        if self.buf.len() < len {
            return Ok(None);
        }
        let m = Message::decode(self.buf.get(..len).unwrap_or_default())?;
        self.buf.drain(..len);
        match m.command {
            Command::VerifyRequest | Command::QueryRequest => {}
            other => return Err(SessionError::NotARequest(other)),
        }
        Ok(Some(Request {
            session_id: m.session_id,
            command: m.command,
            device: m.device_name(),
            certificate: m.certificate().map(<[u8]>::to_vec),
        }))
    }
}

/// The response to `req` (one message, header and body together).
pub fn respond(req: &Request, verdict: &Verdict) -> Vec<u8> {
    let command = match req.command {
        Command::QueryRequest => Command::QueryResponse,
        _ => Command::VerifyResponse,
    };
    let elements = match verdict {
        Verdict::Trusted { roles, ttl } => vec![
            Element::Status(Status::Valid),
            Element::Roles(
                roles
                    .iter()
                    .filter_map(|r| u8::try_from(r.code()).ok())
                    .collect(),
            ),
            Element::Ttl(*ttl),
        ],
        Verdict::Unknown => vec![Element::Status(Status::Invalid)],
    };
    // Three fixed-size elements and a role list: always within the u16 body length.
    Message::new(command, req.session_id, elements)
        .encode()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::unhex;

    fn req(session: u32) -> Vec<u8> {
        Message::verify_request(session, "CP-8845-SEP0011AABBCCDD", &[0x30, 0x00])
            .encode()
            .unwrap()
    }

    #[test]
    fn split_and_pipelined_requests() {
        let mut s = ServerSession::new();
        let a = req(1);
        let b = req(2);
        let mut all = a.clone();
        all.extend_from_slice(&b);
        s.feed(&all[..5]).unwrap();
        assert_eq!(s.next_request().unwrap(), None);
        s.feed(&all[5..]).unwrap();
        let r1 = s.next_request().unwrap().unwrap();
        assert_eq!(r1.session_id, 1);
        assert_eq!(r1.device.as_deref(), Some("CP-8845-SEP0011AABBCCDD"));
        assert_eq!(r1.certificate.as_deref(), Some(&[0x30, 0x00][..]));
        assert_eq!(s.next_request().unwrap().unwrap().session_id, 2);
        assert_eq!(s.next_request().unwrap(), None);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn responses_match_the_transcript_layout() {
        let r = Request {
            session_id: 1,
            command: Command::VerifyRequest,
            device: None,
            certificate: Some(vec![]),
        };
        let v = Verdict::Trusted {
            roles: vec![Role::Sast, Role::CcmTftp],
            ttl: 86400,
        };
        assert_eq!(
            respond(&r, &v),
            unhex("5701020000000001001007000100080002000209000400015180").unwrap()
        );
        assert_eq!(
            respond(&r, &Verdict::Unknown),
            unhex("5701020000000001000407000101").unwrap()
        );
        let q = Request {
            command: Command::QueryRequest,
            ..r
        };
        assert_eq!(respond(&q, &Verdict::Unknown)[2], 4);
    }

    #[test]
    fn hostile_input_ends_the_session() {
        let mut s = ServerSession::new();
        // Declares a 65535-byte body.
        s.feed(&unhex("57010100000000 01ffff".replace(' ', "").as_str()).unwrap())
            .unwrap();
        assert!(matches!(s.next_request(), Err(SessionError::TooLarge(_))));
        let mut s = ServerSession::new();
        assert!(matches!(
            s.feed(&[0x55, 1, 1, 0, 0, 0, 0, 1, 0, 0]),
            Ok(()) // buffered; refused when read
        ));
        assert!(matches!(s.next_request(), Err(SessionError::Malformed(_))));
        let mut s = ServerSession::new();
        s.feed(&unhex("5701020000000001000407000101").unwrap())
            .unwrap();
        assert!(matches!(
            s.next_request(),
            Err(SessionError::NotARequest(Command::VerifyResponse))
        ));
        let mut s = ServerSession::new();
        assert!(matches!(
            s.feed(&vec![0x57; MAX_MESSAGE + 1]),
            Err(SessionError::TooLarge(_))
        ));
    }
}
