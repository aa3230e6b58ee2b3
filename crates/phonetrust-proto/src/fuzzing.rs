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
use crate::{capf, devconfig, enccnf, show, tftp, tftp_server, trustlist, tvs};

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

/// Encrypted configs: decrypting arbitrary bytes with a phone key never panics; whatever
/// decrypts, encrypted again to the same phone (and signed), verifies and decrypts back to
/// the same plaintext. Returns whether `data` decrypted (so callers can tell the round
/// trip was exercised).
pub fn enc_config(data: &[u8], phone: &CertAndKey) -> bool {
    let _ = enccnf::verify(data, &phone.cert);
    let Ok(plain) = enccnf::decrypt(data, &phone.key) else {
        return false;
    };
    let again = enccnf::encrypt(
        "SEP0011AABBCCDD.cnf.xml",
        &plain,
        &phone.cert,
        phone,
        crate::tlv::HashAlg::Sha512,
        1_800_000_000,
        &crate::rand::SeededRandom::new(data.len() as u64),
    )
    .expect("a decrypted config encrypts again");
    enccnf::verify(&again, &phone.cert).expect("our encryption verifies with its signer");
    assert_eq!(
        enccnf::decrypt(&again, &phone.key).expect("our encryption decrypts"),
        plain,
        "round trip changed the plaintext"
    );
    true
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
/// server sends decodes and re-encodes to itself; one `Finish` at most, and the session
/// is done exactly when it has given it (no silent end); a phone never gets a certificate issued, installed or fetched
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
        // A session that has ended told the phone how (END_SESSION) and the caller what
        // to record: never a silent end.
        assert_eq!(
            s.is_done(),
            finished == 1,
            "a session is done exactly when its outcome was given"
        );
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

/// TFTP datagrams: a packet that decodes, encoded and decoded again, is the same packet
/// (decoding normalises: mode and option names lower-cased, an unpaired option and the
/// text after an error message's NUL dropped); the encoding is stable after that.
pub fn tftp_packet(data: &[u8]) {
    let Ok(p) = tftp::Packet::decode(data) else {
        return;
    };
    let bytes = p.encode();
    let q = tftp::Packet::decode(&bytes).expect("an encoded packet decodes");
    assert_eq!(p, q, "packet changed in a round trip");
    assert_eq!(q.encode(), bytes, "encoding not stable");
}

/// The phone's side of a TFTP read driven by an arbitrary server. The first byte picks the
/// client options; the rest is a sequence of datagrams, each prefixed by a 2-byte length.
/// Properties: no panic; everything the client sends is a TFTP packet (the RRQ or an
/// ACK); a finished file is never larger than the limit nor than what the server sent;
/// nothing happens after `Done` or `Failed` that the shell would act on.
pub fn tftp_client(data: &[u8]) {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let opts = tftp::ClientOptions {
        blksize: match sel & 3 {
            0 => None,
            1 => Some(8),
            2 => Some(512),
            _ => Some(1428),
        },
        windowsize: match (sel >> 2) & 3 {
            0 => None,
            1 => Some(1),
            2 => Some(4),
            _ => Some(16),
        },
        tsize: sel & 0x10 != 0,
        max_size: if sel & 0x20 != 0 { 100 } else { 4096 },
    };
    let (mut t, rrq) = tftp::ReadTransfer::new("SEP001122AABBCC.cnf.xml.sgn", opts);
    assert!(matches!(
        tftp::Packet::decode(&rrq),
        Ok(tftp::Packet::Rrq(..))
    ));
    let mut received = 0usize;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let n = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (dgram, tail) = tail.split_at(n);
        rest = tail;
        if let Ok(tftp::Packet::Data(_, d)) = tftp::Packet::decode(dgram) {
            received += d.len();
        }
        let timeout = t.on_timeout();
        assert!(
            tftp::Packet::decode(&timeout).is_ok(),
            "retransmission decodes"
        );
        match t.on_packet(dgram) {
            tftp::ClientStep::Send(p) => assert!(
                matches!(tftp::Packet::decode(&p), Ok(tftp::Packet::Ack(_))),
                "client sends only ACKs after the RRQ"
            ),
            tftp::ClientStep::Wait => {}
            tftp::ClientStep::Done(file, ack) => {
                assert!(file.len() <= opts.max_size, "file over the limit accepted");
                assert!(file.len() <= received, "file longer than what was sent");
                assert!(matches!(
                    tftp::Packet::decode(&ack),
                    Ok(tftp::Packet::Ack(_))
                ));
                return;
            }
            tftp::ClientStep::Failed(why) => {
                assert!(!why.is_empty(), "a failure says why");
                return;
            }
        }
    }
}

/// TFTP server transfers: the first length-prefixed datagram is the request, the others
/// (a zero length standing for a timeout) the client's. Properties: no panic; a refusal is
/// an ERROR packet; nothing but DATA and OACK is sent during a transfer; before the first
/// ACK at most one distinct datagram is sent, at most `1 + unverified_retries` times; each
/// ACK releases no more blocks than the window; a block is never longer than agreed.
pub fn tftp_server(data: &[u8]) {
    let policy = tftp_server::ServerPolicy::default();
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let n = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (d, tail) = tail.split_at(n);
        chunks.push(d);
        rest = tail;
    }
    let Some((req, client)) = chunks.split_first() else {
        return;
    };
    let r = match tftp_server::accept(req, &policy) {
        Ok(r) => r,
        Err(refused) => {
            assert!(matches!(
                tftp::Packet::decode(&refused.reply),
                Ok(tftp::Packet::Error(..))
            ));
            return;
        }
    };
    assert!(r.negotiated.blksize >= 8 && r.negotiated.blksize <= policy.max_blksize);
    assert!(
        r.negotiated
            .timeout
            .is_none_or(|t| t >= 1 && t <= policy.max_timeout)
    );
    let window = usize::from(r.negotiated.window);
    assert!(window * usize::from(r.negotiated.blksize) <= policy.max_window_bytes.max(65464));
    let blksize = usize::from(r.negotiated.blksize);
    let size = 3 * blksize as u64 + 5;
    let (mut t, first) = tftp_server::ReadTransfer::start(r.negotiated, Some(size), &policy);
    let mut offset = 0u64;
    let mut unverified_sends = first.len();
    let check = |p: &[u8]| match tftp::Packet::decode(p) {
        Ok(tftp::Packet::Data(_, d)) => assert!(d.len() <= blksize, "block over blksize"),
        Ok(tftp::Packet::OAck(_)) | Ok(tftp::Packet::Error(..)) => {}
        other => panic!("server sent {other:?}"),
    };
    let fill = |t: &mut tftp_server::ReadTransfer, offset: &mut u64| -> usize {
        let mut n = 0;
        while let Some(want) = t.wants_block() {
            assert_eq!(want, blksize);
            let take = (size - *offset).min(want as u64) as usize;
            *offset += take as u64;
            check(&t.push_block(&vec![0x5a; take]));
            n += 1;
            assert!(n <= window, "more blocks than the window at once");
        }
        n
    };
    if !t.verified() {
        unverified_sends += fill(&mut t, &mut offset);
    }
    for c in client {
        let was_verified = t.verified();
        let step = if c.is_empty() {
            t.on_timeout()
        } else {
            t.on_packet(c)
        };
        match step {
            tftp_server::Step::Send(v) => {
                assert!(v.len() <= window.max(1));
                v.iter().for_each(|p| check(p));
                let n = fill(&mut t, &mut offset);
                if !was_verified && !t.verified() {
                    unverified_sends += v.len() + n;
                }
            }
            tftp_server::Step::Done => {
                assert_eq!(offset, size, "done before the whole file was sent");
                return;
            }
            tftp_server::Step::Failed(e, reply) => {
                assert!(!e.to_string().is_empty());
                if let Some(p) = reply {
                    check(&p);
                }
                return;
            }
        }
        assert!(
            unverified_sends <= 1 + policy.unverified_retries as usize,
            "{unverified_sends} datagrams before the first ACK"
        );
    }
}

/// Device configuration XML: reading the facts of any bytes never panics; and a
/// configuration generated from arbitrary field values (drawn from an alphabet that
/// includes XML's special characters) reads back with exactly those values.
pub fn device_config(data: &[u8]) {
    let _ = devconfig::facts(data);
    const ALPHABET: [char; 22] = [
        'a', 'b', '.', '-', '_', ':', '<', '>', '&', '\'', '"', '=', ';', '/', '?', '#', '%', 'A',
        'Z', '0', '9', 'é',
    ];
    let text = |b: &[u8]| -> String {
        // Never empty or whitespace-bounded: phones trim what they read.
        let mut s = String::from("h");
        s.extend(
            b.iter()
                .take(40)
                .filter_map(|&c| ALPHABET.get(usize::from(c) % ALPHABET.len())),
        );
        s
    };
    let mut parts = data.split(|&c| c == b'|');
    let mut next = || parts.next().unwrap_or_default();
    let head = next();
    let byte = |i: usize| head.get(i).copied().unwrap_or(0);
    let cfg = devconfig::DeviceConfig {
        protocol: text(next()),
        device_security_mode: byte(0) % 4,
        transport_layer_protocol: byte(1) % 5,
        ip_address_mode: byte(2) % 3,
        load_information: text(next()),
        capf_auth_mode: byte(3) % 4,
        capf: (text(next()), u16::from_be_bytes([byte(4), byte(5)])),
        call_managers: (0..byte(6) % 4)
            .map(|_| devconfig::NodeRef { host: text(next()) })
            .collect(),
        tvs: (0..byte(7) % 4)
            .map(|_| devconfig::NodeRef { host: text(next()) })
            .collect(),
        tvs_port: u16::from_be_bytes([byte(8), byte(9)]),
        cert_hash: text(next()),
        encr_config: byte(10) & 1 == 1,
    };
    let xml = cfg.to_xml();
    let f = devconfig::facts(xml.as_bytes()).expect("our own config reads back");
    assert!(f.full);
    assert_eq!(f.encr_config, cfg.encr_config);
    assert_eq!(f.cert_hash, cfg.cert_hash);
    assert_eq!(f.capf, Some(cfg.capf.clone()));
    assert_eq!(f.device_security_mode, Some(cfg.device_security_mode));
    assert_eq!(f.capf_auth_mode, Some(cfg.capf_auth_mode));
    let tvs: Vec<(String, u16)> = cfg
        .tvs
        .iter()
        .map(|t| (t.host.clone(), cfg.tvs_port))
        .collect();
    assert_eq!(f.tvs, tvs);
}

/// The TVS server's framing driven by arbitrary bytes, fed in chunks of the size the first
/// byte picks. Properties: no panic; a buffer never grows past the cap; every request
/// answered gets one response that decodes, echoes its session id and is a response
/// command; after an error the connection would close (nothing more is read).
pub fn tvs_server_session(data: &[u8]) {
    use crate::tvs_server::{MAX_MESSAGE, ServerSession, Verdict, respond};
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(sel).max(1);
    let mut s = ServerSession::new();
    for piece in rest.chunks(chunk) {
        if s.feed(piece).is_err() {
            return;
        }
        assert!(s.pending() <= MAX_MESSAGE, "buffer over the cap");
        loop {
            match s.next_request() {
                Ok(Some(req)) => {
                    let verdict = if req.session_id % 2 == 0 {
                        Verdict::Unknown
                    } else {
                        Verdict::Trusted {
                            roles: vec![crate::trustlist::Role::Sast],
                            ttl: 60,
                        }
                    };
                    let out = respond(&req, &verdict);
                    let m = tvs::Message::decode(&out).expect("our response decodes");
                    assert_eq!(m.session_id, req.session_id);
                    assert!(matches!(
                        m.command,
                        tvs::Command::VerifyResponse | tvs::Command::QueryResponse
                    ));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A list of phone names (`phone bulk --names`): any text gives names or a refusal naming
/// a line, never a panic; every name returned is a valid phone name, upper-case.
pub fn device_names(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(names) = crate::device::names_from_csv(&text) {
        for n in names {
            assert!(crate::device::DeviceName::parse(&n).is_ok(), "{n}");
            assert_eq!(n, n.to_ascii_uppercase());
        }
    }
}
