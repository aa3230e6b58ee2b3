//! phonetrust-pki: the node's own certificates and LSCs have the extensions phones
//! require, and the `openssl` command line verifies them and our CSRs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::Command;

use openssl::x509::X509;
use phonetrust_pki::details::details;
use phonetrust_pki::profiles::{NodeIdentity, OwnCert, lsc, own_cert};
use phonetrust_pki::{
    CertParams, DistinguishedName, KeySpec, csr, generate_key, issue, self_signed,
};
use phonetrust_proto::cert::{CertAndKey, load_certs, name_string};
use phonetrust_proto::rand::{OsRandom, SeededRandom};

const NOW: i64 = 1_795_000_000;

fn org() -> DistinguishedName {
    DistinguishedName {
        o: "Example Corp".into(),
        ou: "VOICE".into(),
        l: "Wellington".into(),
        st: "WGN".into(),
        c: "NZ".into(),
        ..DistinguishedName::default()
    }
}

use phonetrust_testsupport::vectors;

fn make(which: OwnCert) -> CertAndKey {
    let id = NodeIdentity::new("pub.example.test", org());
    let (p, spec) = own_cert(which, &id, "5b2e1c9a", NOW);
    let key = generate_key(spec).unwrap();
    let cert = self_signed(&p, &key, &OsRandom).unwrap();
    CertAndKey::new(cert, key).unwrap()
}

/// `openssl ARGS` in `dir`: success and output. Without the openssl command line the
/// check is skipped outside CI (`skipped` output) and fails in CI.
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    if !phonetrust_testsupport::have_tool("openssl", "version", "openssl") {
        return (true, "skipped: no openssl".into());
    }
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn text(dir: &Path, file: &str) -> String {
    openssl(dir, &["x509", "-in", file, "-noout", "-text"]).1
}

#[test]
fn own_certificates_of_a_fresh_node() {
    let tmp = phonetrust_testsupport::tempdir("own");
    let dir = tmp.path().to_path_buf();
    for which in OwnCert::ALL {
        let ck = make(which);
        let subject = name_string(ck.cert.subject_name());
        let expected_cn = match which {
            OwnCert::Capf => "CN=CAPF-5b2e1c9a",
            OwnCert::CallManager | OwnCert::Tomcat => "CN=pub.example.test",
            OwnCert::CallManagerEcdsa => "CN=pub.example.test-EC",
            OwnCert::Tvs => "CN=pub.example.test-tvs",
            OwnCert::ItlRecovery => "CN=ITLRECOVERY_pub.example.test",
        };
        assert_eq!(
            subject,
            format!("C=NZ,ST=WGN,L=Wellington,O=Example Corp,OU=VOICE,{expected_cn}")
        );
        let key = ck.cert.public_key().unwrap();
        match which {
            OwnCert::CallManagerEcdsa => assert_eq!(key.id(), openssl::pkey::Id::EC),
            _ => assert_eq!((key.id(), key.bits()), (openssl::pkey::Id::RSA, 2048)),
        }
        let days = (ck.cert.not_after().diff(ck.cert.not_before()).unwrap().days).abs();
        assert!((1825..=1827).contains(&days), "{which}: {days} days");
        let file = format!("{}.pem", which.name());
        std::fs::write(dir.join(&file), ck.cert.to_pem().unwrap()).unwrap();
        let (ok, out) = openssl(&dir, &["verify", "-CAfile", &file, &file]);
        assert!(ok, "{which}: {out}");
    }
    let t = text(&dir, "CAPF.pem");
    if !t.starts_with("skipped") {
        assert!(t.contains("CA:TRUE, pathlen:0"), "{t}");
        assert!(t.contains("Certificate Sign, CRL Sign"), "{t}");
        assert!(t.contains("X509v3 Basic Constraints: critical"), "{t}");
    }
}

#[test]
fn lsc_matches_the_reference_layout_and_chains_to_capf() {
    let tmp = phonetrust_testsupport::tempdir("lsc");
    let dir = tmp.path().to_path_buf();
    // Issued by the vectors' CAPF, our LSC has the layout of the vectors' LSCs.
    let capf = CertAndKey::from_pem(&vectors::bytes("pki/capf.pem")).unwrap();
    let phone_key = generate_key(KeySpec::Rsa(2048)).unwrap();
    let p = lsc("SEP001122AABBCC", &capf.cert, NOW, 365);
    let cert = issue(&p, &phone_key, &capf, &OsRandom).unwrap();
    let reference = load_certs(&vectors::bytes("pki/lsc/SEP001122AABBCC.pem"))
        .unwrap()
        .remove(0);
    assert_eq!(
        name_string(cert.subject_name()),
        name_string(reference.subject_name())
    );
    assert_eq!(
        name_string(cert.issuer_name()),
        name_string(reference.issuer_name())
    );
    assert_eq!(
        phonetrust_proto::cert::serial_bytes(&cert).unwrap().len(),
        16
    );
    assert!(cert.verify(&capf.cert.public_key().unwrap()).unwrap());

    std::fs::write(dir.join("capf.pem"), capf.cert.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("lsc.pem"), cert.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("ref.pem"), reference.to_pem().unwrap()).unwrap();
    let (ok, out) = openssl(&dir, &["verify", "-CAfile", "capf.pem", "lsc.pem"]);
    assert!(ok, "{out}");
    let exts = |t: String| -> String {
        t.split("X509v3 extensions:")
            .nth(1)
            .and_then(|s| s.split("Signature Algorithm").next())
            .unwrap_or_default()
            .to_string()
    };
    let ours = text(&dir, "lsc.pem");
    if !ours.starts_with("skipped") {
        assert_eq!(
            exts(ours),
            exts(text(&dir, "ref.pem")),
            "extensions as the reference LSC"
        );
    }

    // An LSC made by our own CAPF chains to it, for EC phone keys too.
    let own = make(OwnCert::Capf);
    for spec in [
        KeySpec::Rsa(1024),
        KeySpec::EcP256,
        KeySpec::EcP384,
        KeySpec::EcP521,
    ] {
        let k = generate_key(spec).unwrap();
        let c = issue(
            &lsc("SEP0011AABBCCDD", &own.cert, NOW, 365),
            &k,
            &own,
            &OsRandom,
        )
        .unwrap();
        assert!(
            c.verify(&own.cert.public_key().unwrap()).unwrap(),
            "{spec:?}"
        );
    }
}

#[test]
fn csr_verifies_and_carries_the_subject() {
    let tmp = phonetrust_testsupport::tempdir("csr");
    let dir = tmp.path().to_path_buf();
    let key = generate_key(KeySpec::Rsa(2048)).unwrap();
    let req = csr(
        &org().with_cn("pub.example.test"),
        &["pub.example.test".into()],
        &key,
    )
    .unwrap();
    assert!(req.verify(&key).unwrap());
    std::fs::write(dir.join("req.pem"), req.to_pem().unwrap()).unwrap();
    let (ok, out) = openssl(
        &dir,
        &["req", "-in", "req.pem", "-noout", "-verify", "-subject"],
    );
    assert!(ok, "{out}");
    if !out.starts_with("skipped") {
        assert!(out.contains("pub.example.test"), "{out}");
    }
}

#[test]
fn refusals_are_clear() {
    assert!(
        generate_key(KeySpec::Rsa(512))
            .unwrap_err()
            .to_string()
            .contains("1024 to 4096")
    );
    let key = generate_key(KeySpec::EcP256).unwrap();
    let empty = CertParams::new(DistinguishedName::default(), NOW, 10);
    assert!(
        self_signed(&empty, &key, &OsRandom)
            .unwrap_err()
            .to_string()
            .contains("common name")
    );
    let mut bad_c = CertParams::new(org().with_cn("x"), NOW, 10);
    bad_c.subject.c = "NZL".into();
    assert!(
        self_signed(&bad_c, &key, &OsRandom)
            .unwrap_err()
            .to_string()
            .contains("two-letter")
    );
    let mut backwards = CertParams::new(org().with_cn("x"), NOW, 10);
    backwards.not_after = NOW - 1;
    assert!(self_signed(&backwards, &key, &OsRandom).is_err());
    assert!("nope".parse::<OwnCert>().is_err());
    assert_eq!(
        "callmanager-ecdsa".parse::<OwnCert>().unwrap(),
        OwnCert::CallManagerEcdsa
    );
}

#[test]
fn serials_come_from_the_injected_source() {
    let key = generate_key(KeySpec::EcP256).unwrap();
    let p = CertParams::new(org().with_cn("x"), NOW, 10);
    let a: X509 = self_signed(&p, &key, &SeededRandom::new(9)).unwrap();
    let b: X509 = self_signed(&p, &key, &SeededRandom::new(9)).unwrap();
    let c: X509 = self_signed(&p, &key, &SeededRandom::new(10)).unwrap();
    let s = |x: &X509| phonetrust_proto::cert::serial_bytes(x).unwrap();
    assert_eq!(s(&a), s(&b));
    assert_ne!(s(&a), s(&c));
}

#[test]
fn details_block() {
    let ck = make(OwnCert::Capf);
    let d = details(&ck.cert);
    assert!(d.contains("Version: V3"));
    assert!(d.contains("SignatureAlgorithm: SHA256withRSA (1.2.840.113549.1.1.11)"));
    assert!(d.contains(
        "Subject Name: CN=CAPF-5b2e1c9a, OU=VOICE, O=Example Corp, L=Wellington, ST=WGN, C=NZ"
    ));
    assert!(d.contains("Key: RSA (1.2.840.113549.1.1.1), 2048 bits"));
    assert!(d.contains("3082010a0282010100"));
}
