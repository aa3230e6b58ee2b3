//! phonetrust-proto against the independent reference vectors (committed in
//! `phonetrust-testsupport/vectors`):
//! every file parses with the documented facts and verifies, every byte flip breaks
//! verification, every transcript message decodes and re-encodes to the same bytes, and
//! the `openssl` command line agrees with our signatures and encryption.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::Command;

use phonetrust_proto::capf;
use phonetrust_proto::cert::{CertAndKey, load_certs, md5_hex, sha256};
use phonetrust_proto::codec::{hex, unhex};
use phonetrust_proto::enccnf;
use phonetrust_proto::rand::SeededRandom;
use phonetrust_proto::sgn;
use phonetrust_proto::tlv::{self, HashAlg, Version};
use phonetrust_proto::trustlist::{self, CertForm, Record, Role, TrustListParams};
use phonetrust_proto::tvs;

use phonetrust_testsupport::vectors::{self, bytes as v};

fn cert(rel: &str) -> openssl::x509::X509 {
    load_certs(&v(rel)).unwrap().remove(0)
}

fn roles(t: &trustlist::TrustList) -> Vec<Role> {
    t.plain_records().map(|r| r.role.unwrap()).collect()
}

fn serial_of(r: &Record) -> String {
    hex(r.serial.as_deref().unwrap()).to_uppercase()
}

#[test]
fn itl_vector_facts() {
    let f = v("files/ITLFile.tlv");
    assert_eq!(md5_hex(&f), "4029262dcb1a6fb0cf8ddf0471ecd00b");
    let t = trustlist::parse(&f).unwrap();
    assert_eq!(t.header.version, Version::new(1, 2));
    assert_eq!(t.header.header_length, 484);
    assert_eq!(t.header.hash_alg, HashAlg::Sha1);
    assert_eq!(
        roles(&t),
        [
            Role::Sast,
            Role::Sast,
            Role::CcmTftp,
            Role::Capf,
            Role::Tvs,
            Role::Tftp
        ]
    );
    let r: Vec<&Record> = t.plain_records().collect();
    assert_eq!(serial_of(r[0]), "05A01F30E59F16E4966F8EBEDC5F63B81FDF3377");
    assert_eq!(serial_of(r[1]), "4B8A2892B6EAEA0ED6457E33E94365B5A41A8E2B");
    assert_eq!(serial_of(r[3]), "77F8DFC4EF49D95B4C945A7F4BE749755A9C68BE");
    assert_eq!(serial_of(r[4]), "3DE0744BBF35411F62251F4EA2316808E11D8E69");
    assert_eq!(serial_of(r[5]), "607B39E98305C64031393E7B7DF3A00C3E883FA9");
    assert_eq!(
        r[5].public_key.as_ref().unwrap().len(),
        65,
        "EC key as a point"
    );
    assert_eq!(
        r[2].public_key.as_ref().unwrap().len(),
        270,
        "RSA key as PKCS#1"
    );
    assert_eq!(
        hex(&r[3].cert_sha1().unwrap()),
        "7a8f2fa298c3099a6c4b5570885d1c6148f1df94"
    );
    assert_eq!(t.verify(&f).unwrap(), 0, "signed by record 1");
    assert_eq!(t.signer_index(), Some(0));
}

#[test]
fn other_trust_list_vectors() {
    let f = v("files/ITLFile-sha512.tlv");
    let t = trustlist::parse(&f).unwrap();
    assert_eq!(t.header.hash_alg, HashAlg::Sha512);
    assert_eq!(t.header.signer_version, Some(Version::new(1, 1)));
    assert_eq!(
        roles(&t),
        [Role::Sast, Role::CcmTftp, Role::Capf, Role::Tvs]
    );
    t.verify(&f).unwrap();

    let f = v("files/ITLFile-recovery-signed.tlv");
    let t = trustlist::parse(&f).unwrap();
    assert_eq!(
        roles(&t),
        [Role::Sast, Role::CcmTftp, Role::Capf, Role::Tvs]
    );
    assert_eq!(
        t.records[0].record.subject.as_deref(),
        Some("C=NZ,ST=WGN,L=Wellington,O=Example Corp,OU=VOICE,CN=ITLRECOVERY_pub.example.test")
    );
    assert_eq!(t.verify(&f).unwrap(), 0);
    // The recovery-signed list is trusted by a phone holding the normal ITL, because the
    // normal ITL lists the ITLRecovery certificate.
    let normal = trustlist::parse(&v("files/ITLFile.tlv")).unwrap();
    let recovery = normal.records[1].record.x509().unwrap();
    t.verify_with(&f, &recovery).unwrap();

    let f = v("files/CTLFile.tlv");
    let t = trustlist::parse(&f).unwrap();
    assert!(t.is_ctl());
    assert_eq!(roles(&t), [Role::Sast, Role::CcmTftp, Role::Capf]);
    t.verify(&f).unwrap();
}

#[test]
fn signed_and_encrypted_config_vectors() {
    let cm = cert("pki/callmanager.crt");
    let f = v("files/signed/SEP001122AABBCC.cnf.xml.sgn");
    let s = sgn::SignedFile::parse(&f).unwrap();
    assert_eq!(s.header.version, Version::SIGNED);
    s.verify_with_cert(&cm).unwrap();
    assert_eq!(s.body(), v("files/SEP001122AABBCC.cnf.xml").as_slice());

    let f = v("files/encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn");
    let h = tlv::parse_header(&f).unwrap();
    assert_eq!(h.version, Version::ENCRYPTED);
    assert_eq!(h.encryption.as_ref().unwrap().hash_alg, HashAlg::Sha1);
    tlv::verify_with_cert(&f, &h, &cm).unwrap();
    let lsc = CertAndKey::from_pem(&v("pki/lsc/SEP0011AABBCCDD.pem")).unwrap();
    assert_eq!(
        enccnf::decrypt(&f, &lsc.key).unwrap(),
        v("files/SEP0011AABBCCDD.cnf.xml")
    );

    let f = v("files/encrypted/SEP0011AABBCCDD.cnf.xml.sgn");
    let s = sgn::SignedFile::parse(&f).unwrap();
    s.verify_with_cert(&cm).unwrap();
    let xml = String::from_utf8(s.body().to_vec()).unwrap();
    assert!(xml.contains("<fullConfig>false</fullConfig>"));
    assert!(xml.contains("<certHash>5a7c9ba27e845ca5ae1c5909712e527f</certHash>"));
    assert!(xml.contains("<encrConfig>true</encrConfig>"));
}

#[test]
fn lsc_fingerprints() {
    for (name, md5) in [
        ("SEP001122AABBCC", "7b48e4ce7c5a926c98e29bb08c2589e4"),
        ("SEP001122AABBDD", "d2e06ebc053dfd438af89ab0fe5a5f8c"),
        ("SEP0011AABBCCDD", "5a7c9ba27e845ca5ae1c5909712e527f"),
    ] {
        let c = CertAndKey::from_pem(&v(&format!("pki/lsc/{name}.pem"))).unwrap();
        assert_eq!(md5_hex(&c.cert.to_der().unwrap()), md5);
    }
}

/// Parse and verify a file the way a phone would: trust lists with their own SAST
/// record, other files with the callmanager certificate.
fn verifies(f: &[u8], trust_list: bool, cm: &openssl::x509::X509) -> bool {
    if trust_list {
        trustlist::parse(f).is_ok_and(|t| t.verify(f).is_ok())
    } else {
        tlv::parse_header(f).is_ok_and(|h| tlv::verify_with_cert(f, &h, cm).is_ok())
    }
}

#[test]
fn every_single_byte_flip_breaks_verification() {
    let cm = cert("pki/callmanager.crt");
    for (rel, tl) in [
        ("files/ITLFile.tlv", true),
        ("files/signed/SEP001122AABBCC.cnf.xml.sgn", false),
        ("files/encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn", false),
    ] {
        let f = v(rel);
        assert!(verifies(&f, tl, &cm), "{rel} must verify unaltered");
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x01;
            assert!(
                !verifies(&g, tl, &cm),
                "{rel}: flip at byte {i} still verifies"
            );
            g[i] ^= 0x81;
            assert!(
                !verifies(&g, tl, &cm),
                "{rel}: flip at byte {i} still verifies"
            );
        }
    }
}

#[test]
fn every_vector_records_reencode_to_the_same_body() {
    for rel in [
        "files/ITLFile.tlv",
        "files/ITLFile-sha512.tlv",
        "files/ITLFile-recovery-signed.tlv",
        "files/CTLFile.tlv",
    ] {
        let f = v(rel);
        let t = trustlist::parse(&f).unwrap();
        let mut body = Vec::new();
        for r in t.plain_records() {
            r.encode(&mut body).unwrap();
        }
        assert_eq!(body, t.header.body(&f), "{rel}: record layout differs");
    }
}

fn vector_records(list: &[(Role, &str)]) -> Vec<Record> {
    list.iter()
        .map(|(r, p)| Record::from_cert(*r, &cert(p), CertForm::Full).unwrap())
        .collect()
}

#[test]
fn builds_reproduce_every_trust_list_vector() {
    let cm = CertAndKey::from_pem(&v("pki/callmanager.pem")).unwrap();
    let rec = CertAndKey::from_pem(&v("pki/itlrecovery.pem")).unwrap();
    let four = [
        (Role::CcmTftp, "pki/callmanager.crt"),
        (Role::Capf, "pki/capf.crt"),
        (Role::Tvs, "pki/tvs.crt"),
    ];
    let sha512 = TrustListParams::new("ITLFile.tlv", HashAlg::Sha512, 0x6b02_f353);
    assert_eq!(
        trustlist::build(&sha512, &cm, &vector_records(&four)).unwrap(),
        v("files/ITLFile-sha512.tlv")
    );
    let p = TrustListParams::new("ITLFile.tlv", HashAlg::Sha1, 0x6b02_f353);
    assert_eq!(
        trustlist::build(&p, &rec, &vector_records(&four)).unwrap(),
        v("files/ITLFile-recovery-signed.tlv")
    );
    let p = TrustListParams::new("CTLFile.tlv", HashAlg::Sha1, 0x6b02_f353);
    assert_eq!(
        trustlist::build(
            &p,
            &cm,
            &vector_records(&[
                (Role::CcmTftp, "pki/callmanager.crt"),
                (Role::Capf, "pki/capf.crt")
            ])
        )
        .unwrap(),
        v("files/CTLFile.tlv")
    );
}

#[test]
fn build_parse_round_trip_with_every_record_form() {
    let cm = CertAndKey::from_pem(&v("pki/callmanager.pem")).unwrap();
    let mut records = vec![
        Record::from_cert(Role::Capf, &cert("pki/capf.crt"), CertForm::Hash).unwrap(),
        Record::from_cert(Role::Tvs, &cert("pki/tvs.crt"), CertForm::Hash).unwrap(),
        Record::from_cert(Role::Sast, &cert("pki/itlrecovery.crt"), CertForm::Full).unwrap(),
        Record::from_cert(Role::Tftp, &cert("pki/callmanager.crt"), CertForm::Full).unwrap(),
        Record::from_cert(
            Role::AppServer,
            &cert("pki/callmanager-ecdsa.crt"),
            CertForm::Full,
        )
        .unwrap()
        .with_dns_name("pub.example.test")
        .with_ip("192.0.2.10".parse().unwrap()),
        Record::from_cert(Role::Ccm, &cert("pki/callmanager.crt"), CertForm::Full).unwrap(),
    ];
    records[5].unknown.push((99, vec![1, 2, 3]));
    for hash in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
        let p = TrustListParams::new("ITLSEP001122AABBCC.tlv", hash, 1_800_000_000);
        let f = trustlist::build(&p, &cm, &records).unwrap();
        let t = trustlist::parse(&f).unwrap();
        assert_eq!(t.verify(&f).unwrap(), 0);
        let back: Vec<Record> = t.plain_records().skip(1).cloned().collect();
        assert_eq!(back, records);
        assert_eq!(t.header.filename.as_deref(), Some("ITLSEP001122AABBCC.tlv"));
        assert_eq!(usize::from(t.header.header_length) % 4, 0);
        // A record carried as hash keeps the certificate's SHA-1.
        assert_eq!(
            hex(&t.records[1].record.cert_sha1().unwrap()),
            "7a8f2fa298c3099a6c4b5570885d1c6148f1df94"
        );
    }
}

fn transcript(name: &str) -> Vec<(String, String, Vec<u8>)> {
    let text = String::from_utf8(v(&format!("transcripts/{name}"))).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix("## ") {
            section = s.to_string();
        } else if let Some((who, h)) = line.split_once(' ') {
            out.push((section.clone(), who.to_string(), unhex(h).unwrap()));
        }
    }
    out
}

#[test]
fn capf_transcript_round_trips_and_flows() {
    let msgs = transcript("capf.log");
    assert!(msgs.len() > 40);
    let mut flows: Vec<(String, Vec<(String, capf::Command)>)> = Vec::new();
    for (section, who, bytes) in &msgs {
        let m = capf::Message::decode(bytes).unwrap_or_else(|e| panic!("{section}: {e}"));
        assert_eq!(
            &m.encode().unwrap(),
            bytes,
            "{section}: re-encoding differs"
        );
        let h = capf::Header::peek(bytes).unwrap().unwrap();
        assert_eq!(h.message_len(), bytes.len());
        if flows.last().map(|f| &f.0) != Some(section) {
            flows.push((section.clone(), Vec::new()));
        }
        flows.last_mut().unwrap().1.push((who.clone(), m.command));
        // Every message of a session carries the server's session id.
        let first = msgs.iter().find(|(s, _, _)| s == section).unwrap();
        assert_eq!(
            m.session_id,
            capf::Message::decode(&first.2).unwrap().session_id
        );
    }
    assert_eq!(flows.len(), 8);
    use capf::Command::*;
    let cmds = |i: usize| -> Vec<capf::Command> { flows[i].1.iter().map(|x| x.1).collect() };
    assert_eq!(
        cmds(0),
        [
            AuthRequest,
            AuthResponse,
            KeyGenRequest,
            RequestInProgress,
            KeyGenResponse,
            StoreCertRequest,
            StoreCertResponse,
            EndSession
        ]
    );
    assert_eq!(cmds(3), [AuthRequest, AuthResponse, EndSession]);
    assert_eq!(
        cmds(6),
        [
            AuthRequest,
            AuthResponse,
            FetchCertRequest,
            FetchCertResponse,
            EndSession
        ]
    );
    assert_eq!(
        cmds(7),
        [
            AuthRequest,
            AuthResponse,
            DeleteCertRequest,
            DeleteCertResponse,
            EndSession
        ]
    );

    // Field checks on particular messages.
    let decode = |i: usize| capf::Message::decode(&msgs[i].2).unwrap();
    let auth = decode(1);
    assert_eq!(auth.device_name().as_deref(), Some("SEP001122AABBCC"));
    let kg = decode(2);
    assert_eq!(kg.key_size(), Some(2048));
    assert_eq!(kg.key_type(), Some(capf::KeyType::Rsa));
    let store = decode(5);
    let der = store.certificate().unwrap();
    let issued = openssl::x509::X509::from_der(der).unwrap();
    assert_eq!(
        md5_hex(der),
        "7b48e4ce7c5a926c98e29bb08c2589e4",
        "the LSC in the transcript is pki/lsc/SEP001122AABBCC"
    );
    assert!(
        issued
            .verify(&cert("pki/capf.crt").public_key().unwrap())
            .unwrap()
    );
    let end_reasons: Vec<u8> = msgs
        .iter()
        .filter_map(|(_, _, b)| {
            let m = capf::Message::decode(b).unwrap();
            (m.command == EndSession).then(|| m.reason().unwrap().code())
        })
        .collect();
    assert_eq!(end_reasons, [1, 1, 1, 0, 9, 7, 0, 1]);

    // The MIC session carries certificate, signatures and SUDI data.
    let mic = msgs
        .iter()
        .find(|(s, w, _)| s.contains("MIC") && w == "capfc")
        .map(|(_, _, b)| capf::Message::decode(b).unwrap())
        .unwrap();
    assert_eq!(
        hex(&openssl::hash::hash(
            openssl::hash::MessageDigest::md5(),
            mic.certificate().unwrap()
        )
        .unwrap()),
        "2aa053f34e53aeb65cb579de1584815c"
    );
    assert_eq!(mic.signed_data().unwrap().len(), 256);
    let (alg, sig) = capf::parse_sha2_signed(mic.sha2_signed_data().unwrap()).unwrap();
    assert_eq!((alg, sig.len()), (HashAlg::Sha512, 256));
    let sudi = capf::parse_sudi(mic.sudi_data().unwrap()).unwrap();
    assert_eq!(sudi.certificate, mic.certificate().unwrap());
    assert!(sudi.sha1_signature.is_some() && sudi.sha512_signature.is_some());
}

#[test]
fn tvs_transcript_round_trips() {
    let msgs = transcript("tvs.log");
    assert_eq!(msgs.len(), 6);
    let mut answers = Vec::new();
    for (section, who, bytes) in &msgs {
        let m = tvs::Message::decode(bytes).unwrap_or_else(|e| panic!("{section}: {e}"));
        assert_eq!(&m.encode().unwrap(), bytes, "{section}");
        if who == "tvsd" {
            answers.push((m.status().unwrap(), m.roles(), m.ttl()));
        } else {
            assert!(m.device_name().unwrap().starts_with("CP-"));
            openssl::x509::X509::from_der(m.certificate().unwrap()).unwrap();
        }
    }
    assert_eq!(
        answers,
        [
            (
                tvs::Status::Valid,
                vec![Role::Sast, Role::CcmTftp],
                Some(86400)
            ),
            (tvs::Status::Valid, vec![Role::Capf], Some(3600)),
            (tvs::Status::Invalid, vec![], None),
        ]
    );
}

/// Our TVS server session, fed the phone's bytes of `tvs.log` (split at an awkward place),
/// answers with exactly the server's bytes, given what the transcript's server knew:
/// callmanager.crt as SAST + CCM+TFTP (TTL 86400), capf.crt as CAPF (TTL 3600), and
/// nothing else.
#[test]
fn tvs_server_session_answers_the_transcript_byte_for_byte() {
    use phonetrust_proto::tvs_server::{ServerSession, Verdict, respond};
    let known = |der: &[u8]| {
        let fp = sha256(der);
        if fp == sha256(&cert("pki/callmanager.crt").to_der().unwrap()) {
            Verdict::Trusted {
                roles: vec![Role::Sast, Role::CcmTftp],
                ttl: 86400,
            }
        } else if fp == sha256(&cert("pki/capf.crt").to_der().unwrap()) {
            Verdict::Trusted {
                roles: vec![Role::Capf],
                ttl: 3600,
            }
        } else {
            Verdict::Unknown
        }
    };
    let msgs = transcript("tvs.log");
    let mut sent = 0;
    for pair in msgs.chunks(2) {
        let [(section, c, phone), (_, d, server)] = pair else {
            panic!("pairs")
        };
        assert_eq!((c.as_str(), d.as_str()), ("tvsc", "tvsd"));
        let mut s = ServerSession::new();
        s.feed(&phone[..7]).unwrap();
        assert!(s.next_request().unwrap().is_none(), "{section}");
        s.feed(&phone[7..]).unwrap();
        let req = s.next_request().unwrap().unwrap();
        let verdict = known(req.certificate.as_deref().unwrap());
        assert_eq!(&respond(&req, &verdict), server, "{section}");
        sent += 1;
    }
    assert_eq!(sent, 3);
}

// ---- cross-checks with the openssl command line ----

fn openssl_cli() -> bool {
    phonetrust_testsupport::have_tool("openssl", "version", "openssl")
}

fn run(args: &[&str], dir: &Path) -> Vec<u8> {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[test]
fn openssl_cli_verifies_our_signatures() {
    if !openssl_cli() {
        return;
    }
    let tmp = phonetrust_testsupport::tempdir("sigcheck");
    let dir = tmp.path();
    let cm = CertAndKey::from_pem(&v("pki/callmanager.pem")).unwrap();
    std::fs::write(
        dir.join("pub.pem"),
        cm.cert.public_key().unwrap().public_key_to_pem().unwrap(),
    )
    .unwrap();
    let records = vector_records(&[(Role::Capf, "pki/capf.crt"), (Role::Tvs, "pki/tvs.crt")]);
    for (hash, flag) in [(HashAlg::Sha1, "-sha1"), (HashAlg::Sha512, "-sha512")] {
        let p = TrustListParams::new("ITLFile.tlv", hash, 1_800_000_000);
        let f = trustlist::build(&p, &cm, &records).unwrap();
        let h = tlv::parse_header(&f).unwrap();
        std::fs::write(dir.join("msg"), h.signed_message(&f)).unwrap();
        std::fs::write(dir.join("sig"), &h.signature).unwrap();
        let out = run(
            &[
                "dgst",
                flag,
                "-verify",
                "pub.pem",
                "-signature",
                "sig",
                "msg",
            ],
            dir,
        );
        assert!(String::from_utf8_lossy(&out).contains("Verified OK"));
    }
}

#[test]
fn openssl_cli_decrypts_our_encrypted_config() {
    if !openssl_cli() {
        return;
    }
    let tmp = phonetrust_testsupport::tempdir("enccheck");
    let dir = tmp.path();
    let cm = CertAndKey::from_pem(&v("pki/callmanager.pem")).unwrap();
    let lsc = CertAndKey::from_pem(&v("pki/lsc/SEP0011AABBCCDD.pem")).unwrap();
    let plain = v("files/SEP0011AABBCCDD.cnf.xml");
    let f = enccnf::encrypt(
        "SEP0011AABBCCDD.cnf.xml",
        &plain,
        &lsc.cert,
        &cm,
        HashAlg::Sha512,
        1_800_000_000,
        &SeededRandom::new(3),
    )
    .unwrap();
    let h = tlv::parse_header(&f).unwrap();
    let e = h.encryption.clone().unwrap();
    std::fs::write(
        dir.join("key.pem"),
        lsc.key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("wrapped"), &e.wrapped_key).unwrap();
    std::fs::write(dir.join("body"), h.body(&f)).unwrap();
    let aes = run(
        &[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            "key.pem",
            "-in",
            "wrapped",
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
        ],
        dir,
    );
    assert_eq!(aes.len(), 16);
    let padded = run(
        &[
            "enc",
            "-d",
            "-aes-128-cbc",
            "-nopad",
            "-K",
            &hex(&aes),
            "-iv",
            &hex(&e.iv),
            "-in",
            "body",
        ],
        dir,
    );
    let pad = usize::from(e.padding);
    assert!(padded[padded.len() - pad..].iter().all(|&b| b == b'\r'));
    assert_eq!(&padded[..padded.len() - pad], plain.as_slice());
    assert_eq!(
        e.hash,
        openssl::hash::hash(openssl::hash::MessageDigest::sha512(), &plain)
            .unwrap()
            .to_vec()
    );
}

/// The plan each transcript session was made with (see vectors/README.md).
fn transcript_plan(section: &str) -> Option<phonetrust_proto::capf_server::Plan> {
    use phonetrust_proto::capf::Curve;
    use phonetrust_proto::capf_server::{AuthPolicy, KeyRequest, Operation, Plan};
    let capf = openssl::x509::X509::from_pem(&v("pki/capf.crt")).unwrap();
    let mfg = openssl::x509::X509::from_pem(&v("pki/mfgca.crt")).unwrap();
    let (operation, auth) = match section {
        s if s.starts_with("install RSA-2048, auth by null") => (
            Operation::Install(vec![KeyRequest::Rsa(2048)]),
            AuthPolicy::NullString,
        ),
        s if s.starts_with("install RSA-1024") => (
            Operation::Install(vec![KeyRequest::Rsa(1024)]),
            AuthPolicy::AuthString("123456".into()),
        ),
        s if s.contains("MIC signed by mfgca") => (
            Operation::Install(vec![KeyRequest::Rsa(2048)]),
            AuthPolicy::Mic,
        ),
        "no operation scheduled" => (Operation::None, AuthPolicy::NullString),
        "unknown device" => return None,
        s if s.starts_with("wrong authentication string") => (
            Operation::Install(vec![KeyRequest::Rsa(2048)]),
            AuthPolicy::AuthString("123456".into()),
        ),
        s if s.starts_with("fetch") => (Operation::Fetch, AuthPolicy::Lsc),
        s if s.starts_with("delete") => (Operation::Delete, AuthPolicy::Lsc),
        other => panic!("unknown section {other}"),
    };
    let _ = Curve::P256;
    Some(Plan {
        operation,
        auth,
        expired: false,
        lsc_anchors: vec![capf],
        mic_anchors: vec![mfg],
        now: 1_795_400_000,
    })
}

/// Our CAPF server, fed the phone's messages of every transcript session (and, for the
/// issued LSC, the transcript's certificate), sends exactly the server's messages.
#[test]
fn capf_server_session_matches_every_transcript() {
    use phonetrust_proto::capf_server::{Action, Outcome, ServerSession};
    let msgs = transcript("capf.log");
    let mut sections: Vec<String> = msgs.iter().map(|m| m.0.clone()).collect();
    sections.dedup();
    assert_eq!(sections.len(), 8);
    for section in &sections {
        let flow: Vec<&(String, String, Vec<u8>)> =
            msgs.iter().filter(|m| &m.0 == section).collect();
        let sid = capf::Message::decode(&flow[0].2).unwrap().session_id;
        let mut s = ServerSession::new(sid);
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut outcome = None;
        let mut pending = s.start();
        let mut phone_msgs = flow.iter().filter(|m| m.1 == "capfc");
        loop {
            let mut next = Vec::new();
            for a in pending.drain(..) {
                match a {
                    Action::Send(b) => sent.push(b),
                    Action::Lookup { device } => {
                        assert!(device.starts_with("SEP"));
                        next.extend(s.plan(transcript_plan(section)));
                    }
                    Action::Issue { .. } => {
                        // The transcript's LSC: our session must wrap and send it as-is.
                        let store = flow.iter().find(|m| m.2[1] == 9).unwrap();
                        let der = capf::Message::decode(&store.2)
                            .unwrap()
                            .certificate()
                            .unwrap()
                            .to_vec();
                        next.extend(s.issued(Ok(der)));
                    }
                    Action::Finish { outcome: o, end } => {
                        sent.push(end);
                        outcome = Some(o);
                    }
                }
            }
            if !next.is_empty() {
                pending = next;
                continue;
            }
            if s.is_done() {
                break;
            }
            let m = phone_msgs
                .next()
                .unwrap_or_else(|| panic!("{section}: out of phone messages"));
            pending = s.handle(&m.2);
        }
        let want: Vec<&Vec<u8>> = flow
            .iter()
            .filter(|m| m.1 == "capfd")
            .map(|m| &m.2)
            .collect();
        assert_eq!(sent.iter().collect::<Vec<_>>(), want, "{section}");
        let o = outcome.unwrap();
        match section.as_str() {
            "unknown device" => assert!(matches!(o, Outcome::UnknownDevice { .. })),
            "no operation scheduled" => assert!(matches!(o, Outcome::NothingScheduled { .. })),
            s if s.starts_with("wrong") => match o {
                Outcome::Failed { status, .. } => {
                    assert_eq!(status, "Upgrade Failed: Invalid Authentication String")
                }
                other => panic!("{other:?}"),
            },
            s if s.starts_with("fetch") => assert!(matches!(o, Outcome::Fetched { .. })),
            s if s.starts_with("delete") => assert!(matches!(o, Outcome::Deleted { .. })),
            s if s.contains("MIC") => match o {
                Outcome::Installed {
                    auth_cert: Some((k, _)),
                    ..
                } => {
                    assert_eq!(k, phonetrust_proto::capf_server::AuthCertKind::Mic)
                }
                other => panic!("{other:?}"),
            },
            _ => assert!(matches!(o, Outcome::Installed { .. }), "{section}: {o:?}"),
        }
    }
}

/// Our phone, fed the server's messages of every transcript session, with the vectors'
/// keys, sends exactly the phone's messages (signatures included).
#[test]
fn capf_phone_session_matches_every_transcript() {
    use phonetrust_proto::capf_phone::{
        PhoneAction, PhoneAuth, PhoneResult, PhoneSession, PhoneState,
    };

    let msgs = transcript("capf.log");
    let mut sections: Vec<String> = msgs.iter().map(|m| m.0.clone()).collect();
    sections.dedup();
    for section in &sections {
        let flow: Vec<&(String, String, Vec<u8>)> =
            msgs.iter().filter(|m| &m.0 == section).collect();
        let auth_resp = capf::Message::decode(&flow[1].2).unwrap();
        let device = auth_resp.device_name().unwrap();
        let lsc_file = format!("pki/lsc/{device}.pem");
        let lsc_key = vectors::dir()
            .join(&lsc_file)
            .exists()
            .then(|| CertAndKey::from_pem(&v(&lsc_file)).unwrap());
        let uses_cert = auth_resp.certificate().is_some();
        let mic = (device == "SEP0011AABBCCDD")
            .then(|| CertAndKey::from_pem(&v("pki/mic-SEP0011AABBCCDD.pem")).unwrap());
        let state = PhoneState {
            device: device.clone(),
            mic,
            // Phones authenticating by LSC hold it; the others are enrolling.
            lsc: if section.starts_with("fetch") || section.starts_with("delete") {
                lsc_key.clone()
            } else {
                None
            },
            version: auth_resp.version().unwrap(),
        };
        let auth = match auth_resp.password().filter(|p| !p.is_empty()) {
            Some(p) => PhoneAuth::Password(p),
            None if uses_cert => PhoneAuth::Certificate {
                sudi: auth_resp.sudi_data().is_some(),
            },
            None => PhoneAuth::None,
        };
        let mut phone = PhoneSession::new(state, auth);
        let mut sent = Vec::new();
        let mut result = None;
        for m in flow.iter().filter(|m| m.1 == "capfd") {
            let mut actions = phone.handle(&m.2);
            while let Some(a) = (!actions.is_empty()).then(|| actions.remove(0)) {
                match a {
                    PhoneAction::Send(b) => sent.push(b),
                    PhoneAction::GenerateKey(_) => {
                        let key = lsc_key.as_ref().map(|k| k.key.clone());
                        actions.extend(phone.key_ready(key));
                    }
                    PhoneAction::Done(r) => result = Some(r),
                }
            }
        }
        let want: Vec<&Vec<u8>> = flow
            .iter()
            .filter(|m| m.1 == "capfc")
            .map(|m| &m.2)
            .collect();
        assert_eq!(sent.iter().collect::<Vec<_>>(), want, "{section}");
        let r = result.unwrap();
        match section.as_str() {
            s if s.starts_with("install") => {
                assert_eq!(r, PhoneResult::Installed);
                assert_eq!(r.status_message(), "LSC: Installed");
                assert!(phone.state().lsc.is_some());
            }
            s if s.starts_with("delete") => {
                assert_eq!(r, PhoneResult::Deleted);
                assert!(phone.state().lsc.is_none());
            }
            "unknown device" | "wrong authentication string (server expects 123456)" => {
                assert_eq!(r.status_message(), "LSC: Failed")
            }
            _ => {}
        }
    }
}
