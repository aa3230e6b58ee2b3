//! Property checks shared by the `cargo fuzz` targets (in `fuzz/`) and by the tests that
//! replay the committed corpus and mutations on stable Rust.
//!
//! Each check feeds untrusted bytes to a parser and asserts what must hold for any input:
//! no panic, and for inputs that parse, encoding and parsing again gives the same value
//! (for messages: the same bytes).
//!
//! Panicking on a violated property is the point of these checks.
#![allow(clippy::expect_used, clippy::panic)]

use crate::cert::CertAndKey;
use crate::{capf, enccnf, show, trustlist, tvs};

/// Trust lists: parse, render, verify; records re-encode and re-parse to themselves.
pub fn trust_list(data: &[u8]) {
    let Ok(list) = trustlist::parse(data) else {
        let _ = crate::tlv::parse_header(data);
        return;
    };
    assert!(usize::from(list.header.header_length) <= data.len());
    assert!(list.header.signature_item.end <= usize::from(list.header.header_length));
    let _ = list.verify(data);
    let _ = show::trust_list(data, Some(0), None);
    let _ = show::header_table(data, &list.header);
    let mut body = Vec::new();
    for r in list.plain_records() {
        if r.encode(&mut body).is_err() {
            return;
        }
    }
    // Re-parse the records behind the same header.
    let mut again = data
        .get(..usize::from(list.header.header_length))
        .unwrap_or_default()
        .to_vec();
    again.extend_from_slice(&body);
    let reparsed = trustlist::parse(&again).expect("re-encoded records must parse");
    let a: Vec<_> = list.plain_records().collect();
    let b: Vec<_> = reparsed.plain_records().collect();
    assert_eq!(a, b, "records changed in a round trip");
}

/// CAPF messages: a message that decodes re-encodes to the same bytes; its structured
/// elements parse without panicking.
pub fn capf_message(data: &[u8]) {
    let _ = capf::Header::peek(data);
    let Ok(m) = capf::Message::decode(data) else {
        return;
    };
    assert_eq!(m.encode().expect("decoded message re-encodes"), data);
    if let Some(s) = m.sudi_data() {
        let _ = capf::parse_sudi(s);
    }
    if let Some(s) = m.sha2_signed_data() {
        let _ = capf::parse_sha2_signed(s);
    }
    let _ = (m.device_name(), m.password(), m.certificate(), m.reason());
}

/// TVS messages: a message that decodes re-encodes to the same bytes.
pub fn tvs_message(data: &[u8]) {
    let _ = tvs::Header::peek(data);
    let Ok(m) = tvs::Message::decode(data) else {
        return;
    };
    assert_eq!(m.encode().expect("decoded message re-encodes"), data);
    let _ = (m.device_name(), m.roles(), m.ttl(), m.status());
}

/// Encrypted configs: decrypting arbitrary bytes with a phone key never panics.
pub fn enc_config(data: &[u8], phone: &CertAndKey) {
    let _ = enccnf::decrypt(data, &phone.key);
    let _ = enccnf::verify(data, &phone.cert);
}

/// Config XML: the partial config taken from any XML survives its own round trip.
pub fn partial_config(data: &[u8]) {
    let Ok(p) = enccnf::PartialConfig::from_full_config(data, None) else {
        return;
    };
    let xml = p.to_xml();
    let q = enccnf::PartialConfig::from_full_config(xml.as_bytes(), None)
        .expect("our own partial config parses");
    assert_eq!(p, q);
}

/// The CAPF server's session state machine driven by arbitrary phone messages. The first
/// byte picks the scheduled operation and authentication; the rest is a sequence of
/// messages, each prefixed by a 2-byte length. Properties: no panic; everything the
/// server sends decodes and re-encodes to itself; one `Finish` at most, after which the
/// session is done; a phone never gets a certificate issued, installed or fetched
/// without passing the authentication required (no trust anchors ⇒ certificate
/// authentication always fails; an authentication string is never matched by a message
/// without it).
pub fn capf_server_session(data: &[u8]) {
    use crate::capf_server::{
        Action, AuthPolicy, KeyRequest, Operation, Outcome, Plan, ServerSession,
    };
    const SECRET: &str = "135792468";
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let operation = match sel & 3 {
        0 => Operation::None,
        1 => Operation::Install(vec![
            KeyRequest::Ec(capf::Curve::P256),
            KeyRequest::Rsa(2048),
        ]),
        2 => Operation::Fetch,
        _ => Operation::Delete,
    };
    let auth = match (sel >> 2) & 3 {
        0 => AuthPolicy::NullString,
        1 => AuthPolicy::AuthString(SECRET.into()),
        2 => AuthPolicy::Lsc,
        _ => AuthPolicy::Mic,
    };
    let cert_auth = matches!(auth, AuthPolicy::Lsc | AuthPolicy::Mic);
    let password_auth = matches!(auth, AuthPolicy::AuthString(_));
    let plan = Plan {
        operation,
        auth,
        expired: sel & 0x10 != 0,
        lsc_anchors: Vec::new(),
        mic_anchors: Vec::new(),
        now: 1_800_000_000,
    };
    let mut s = ServerSession::new(0x0102_0304);
    let mut pending = s.start();
    let mut finished = 0usize;
    let mut saw_secret = false;
    let mut plan = Some(plan);
    loop {
        while let Some(a) = (!pending.is_empty()).then(|| pending.remove(0)) {
            match a {
                Action::Send(b) => {
                    let m = capf::Message::decode(&b).expect("the server sends valid messages");
                    assert_eq!(m.encode().expect("re-encodes"), b);
                }
                Action::Lookup { .. } => pending.extend(s.plan(plan.take())),
                Action::Issue { .. } => {
                    assert!(!cert_auth, "issued without a verified certificate");
                    assert!(
                        !password_auth || saw_secret,
                        "issued without the auth string"
                    );
                    let fake = rest.get(..rest.len().min(64)).unwrap_or_default().to_vec();
                    pending.extend(s.issued(if sel & 0x20 != 0 {
                        Ok(fake)
                    } else {
                        Err("signing failed".into())
                    }));
                }
                Action::Finish { outcome, end } => {
                    finished += 1;
                    assert!(s.is_done(), "finish leaves the session done");
                    let m = capf::Message::decode(&end).expect("END_SESSION decodes");
                    assert_eq!(m.encode().expect("re-encodes"), end);
                    if cert_auth {
                        assert!(
                            !matches!(outcome, Outcome::Installed { .. } | Outcome::Fetched { .. }),
                            "certificate authentication cannot pass without anchors: {outcome:?}"
                        );
                    }
                }
            }
        }
        assert!(finished <= 1, "one Finish per session");
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let n = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (msg, tail) = tail.split_at(n);
        rest = tail;
        if capf::Message::decode(msg)
            .ok()
            .and_then(|m| m.password())
            .is_some_and(|p| p == SECRET)
        {
            saw_secret = true;
        }
        let _ = s.read_timeout();
        pending = s.handle(msg);
    }
}
