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
