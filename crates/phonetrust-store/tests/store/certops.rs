//! Own-certificate operations: regenerate (with the CAPF confirmation), CSR, import of a
//! CA-signed certificate with every refusal, expiry report.

use openssl::x509::{X509, X509Req};
use phonetrust_pki::profiles::OwnCert;
use phonetrust_pki::{
    BasicConstraints, CertParams, DistinguishedName, KeySpec, KeyUsage, generate_key, issue,
    self_signed,
};
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::rand::SeededRandom;
use phonetrust_store::devices::{NewDevice, device_cert};
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::{DeviceCertKind, OpState, Protocol, TrustStore};
use phonetrust_store::{StoreError, identity, own};

use crate::database::NOW;
use crate::identity::node;

fn enterprise_ca(not_before: i64) -> CertAndKey {
    let key = generate_key(KeySpec::Rsa(2048)).unwrap();
    let mut p = CertParams::new(
        DistinguishedName {
            cn: "Example Enterprise Root".into(),
            o: "Example Corp".into(),
            ..DistinguishedName::default()
        },
        not_before,
        3650,
    );
    p.basic_constraints = Some(BasicConstraints {
        ca: true,
        path_len: None,
    });
    p.key_usage = Some(KeyUsage {
        key_cert_sign: true,
        crl_sign: true,
        digital_signature: true,
        ..KeyUsage::default()
    });
    let cert = self_signed(&p, &key, &SeededRandom::new(11)).unwrap();
    CertAndKey::new(cert, key).unwrap()
}

/// The CA signs `csr` the way an enterprise CA would (subject from the CSR).
fn sign(ca: &CertAndKey, csr: &X509Req, not_before: i64, days: u32, is_ca: bool) -> X509 {
    let subject = DistinguishedName::from_x509_name(csr.subject_name());
    let mut p = CertParams::new(subject, not_before, days);
    p.basic_constraints = Some(BasicConstraints {
        ca: is_ca,
        path_len: is_ca.then_some(0),
    });
    p.key_usage = Some(KeyUsage {
        digital_signature: true,
        key_encipherment: true,
        key_cert_sign: is_ca,
        crl_sign: is_ca,
        ..KeyUsage::default()
    });
    issue(&p, &csr.public_key().unwrap(), ca, &SeededRandom::new(12)).unwrap()
}

async fn setup(
    tag: &str,
) -> (
    phonetrust_testsupport::TestDir,
    DataDir,
    phonetrust_store::Db,
) {
    let (dir, db) = crate::db(tag).await;
    let data = DataDir::new(dir.path());
    identity::create(&data, &node(), NOW, &SeededRandom::new(5)).unwrap();
    (dir, data, db)
}

fn pem_of(data: &DataDir, which: OwnCert) -> Vec<u8> {
    std::fs::read(data.own_cert(which)).unwrap()
}

#[tokio::test]
async fn regenerate_changes_key_and_serial_and_names_the_phones() {
    let (_dir, data, db) = setup("regen").await;
    let old = identity::load(&data).unwrap();
    db.add_devices(
        &[NewDevice {
            name: "SEP001122334455".into(),
            model: "8845".into(),
            protocol: Protocol::Sip,
            profile: None,
            description: String::new(),
        }],
        NOW,
    )
    .await
    .unwrap();
    let r = own::regenerate(
        &data,
        &db,
        OwnCert::CallManager,
        false,
        NOW + 10,
        &SeededRandom::new(9),
    )
    .await
    .unwrap();
    assert!(r.in_itl);
    assert_eq!(r.phones_to_reset, ["SEP001122334455"]);
    assert_ne!(r.old_serial, r.new_serial);
    let new = identity::load(&data).unwrap();
    let (a, b) = (
        old.get(OwnCert::CallManager).unwrap(),
        new.get(OwnCert::CallManager).unwrap(),
    );
    assert!(!a.key.public_eq(&b.key), "new key");
    assert_eq!(
        a.cert.subject_name().to_der().unwrap(),
        b.cert.subject_name().to_der().unwrap(),
        "same subject"
    );
    assert_eq!(
        a.cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_string))
            .collect::<Vec<_>>(),
        b.cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_string))
            .collect::<Vec<_>>()
    );
    // tomcat is not in the ITL: no phone resets.
    let r = own::regenerate(
        &data,
        &db,
        OwnCert::Tomcat,
        false,
        NOW,
        &SeededRandom::new(9),
    )
    .await
    .unwrap();
    assert!(!r.in_itl && r.phones_to_reset.is_empty());
}

#[tokio::test]
async fn regenerating_capf_with_installed_lscs_needs_confirmation() {
    let (_dir, data, db) = setup("regen-capf").await;
    let id = identity::load(&data).unwrap();
    let capf = id.get(OwnCert::Capf).unwrap();
    db.add_devices(
        &[NewDevice {
            name: "SEP001122334455".into(),
            model: "8845".into(),
            protocol: Protocol::Sip,
            profile: None,
            description: String::new(),
        }],
        NOW,
    )
    .await
    .unwrap();
    let key = generate_key(KeySpec::Rsa(1024)).unwrap();
    let lsc_params = phonetrust_pki::profiles::lsc("SEP001122334455", &capf.cert, NOW, 365);
    let lsc = issue(&lsc_params, &key, capf, &SeededRandom::new(4)).unwrap();
    let rec = device_cert(DeviceCertKind::Lsc, &lsc, NOW).unwrap();
    db.record_capf_result(
        "SEP001122334455",
        OpState::Success,
        "Upgrade Success",
        std::slice::from_ref(&rec),
        false,
        NOW,
    )
    .await
    .unwrap();

    // The LSC chains to CAPF and expires in a year: not in a 30-day report.
    let r = own::expiring(&data, &db, 30, NOW).await.unwrap();
    assert!(r.iter().all(|e| e.kind != "LSC"), "{r:?}");
    let before = pem_of(&data, OwnCert::Capf);
    let e = own::regenerate(&data, &db, OwnCert::Capf, false, NOW, &SeededRandom::new(9))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NeedsConfirmation(_)), "{e}");
    assert!(e.to_string().contains("1 phone(s)"), "{e}");
    assert_eq!(pem_of(&data, OwnCert::Capf), before, "unchanged");
    let r = own::regenerate(&data, &db, OwnCert::Capf, true, NOW, &SeededRandom::new(9))
        .await
        .unwrap();
    assert_eq!(r.lsc_holders, 1);
    assert!(
        r.lsc_auth_phones.is_empty(),
        "the phone authenticates by null string"
    );
    // Now the LSC no longer chains (same CAPF name, new key): reported with its subject.
    let r = own::expiring(&data, &db, 30, NOW).await.unwrap();
    let lsc: Vec<_> = r.iter().filter(|e| e.kind == "LSC").collect();
    assert_eq!(lsc.len(), 1, "{r:?}");
    assert_eq!(lsc[0].name, "SEP001122334455");
    assert!(lsc[0].subject.contains("SEP001122334455"), "{:?}", lsc[0]);
    let note = lsc[0].note.as_deref().unwrap();
    assert!(
        note.starts_with("does not chain to the current CAPF certificate")
            && note.ends_with("schedule Install/Upgrade for SEP001122334455"),
        "{note}"
    );
    let new = identity::load(&data).unwrap();
    let cn =
        DistinguishedName::from_x509_name(new.get(OwnCert::Capf).unwrap().cert.subject_name()).cn;
    assert_eq!(
        cn,
        DistinguishedName::from_x509_name(capf.cert.subject_name()).cn,
        "CAPF keeps its name"
    );
}

#[tokio::test]
async fn csr_and_ca_signed_import_with_every_refusal() {
    let (_dir, data, db) = setup("import").await;
    let ca = enterprise_ca(NOW - 86_400);
    // Without a pending CSR.
    let e = own::import_signed(&data, &db, OwnCert::Capf, &ca.cert.to_pem().unwrap(), NOW)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("set csr gen CAPF"), "{e}");

    let csr = own::csr_generate(&data, OwnCert::Capf).unwrap();
    assert!(csr.subject.contains("CN=CAPF-"), "{}", csr.subject);
    let req = X509Req::from_pem(csr.pem.as_bytes()).unwrap();
    assert!(req.verify(&req.public_key().unwrap()).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.pending_key(OwnCert::Capf))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let before = pem_of(&data, OwnCert::Capf);
    let good = sign(&ca, &req, NOW - 60, 365, true);

    // Garbage, key mismatch, expired, not yet valid, not a CA, broken chain.
    let other_key = generate_key(KeySpec::Rsa(1024)).unwrap();
    let other_req = phonetrust_pki::csr(
        &DistinguishedName {
            cn: "x".into(),
            ..DistinguishedName::default()
        },
        &[],
        &other_key,
    )
    .unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not a certificate".to_vec(), "neither a PEM"),
        (
            sign(&ca, &other_req, NOW - 60, 365, true).to_pem().unwrap(),
            "does not match the key of the pending CSR",
        ),
        (
            sign(&ca, &req, NOW - 400 * 86_400, 365, true)
                .to_pem()
                .unwrap(),
            "expired",
        ),
        (
            sign(&ca, &req, NOW + 86_400, 365, true).to_pem().unwrap(),
            "not valid before",
        ),
        (
            sign(&ca, &req, NOW - 60, 365, false).to_pem().unwrap(),
            "must be a CA",
        ),
        (good.to_pem().unwrap(), "chain does not verify"),
    ];
    for (input, want) in cases {
        let e = own::import_signed(&data, &db, OwnCert::Capf, &input, NOW)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "want {want}: {e}");
        assert_eq!(pem_of(&data, OwnCert::Capf), before, "unchanged after: {e}");
    }
    // The root into CAPF-trust, then the import goes through.
    db.trust_import(TrustStore::Capf, &ca.cert.to_pem().unwrap(), NOW)
        .await
        .unwrap();
    let r = own::import_signed(&data, &db, OwnCert::Capf, &good.to_pem().unwrap(), NOW)
        .await
        .unwrap();
    assert_ne!(r.old_serial, r.new_serial);
    let now_capf = identity::load(&data).unwrap();
    let capf = now_capf.get(OwnCert::Capf).unwrap();
    assert_eq!(capf.cert.to_der().unwrap(), good.to_der().unwrap());
    assert!(
        !data.pending_key(OwnCert::Capf).exists(),
        "pending key consumed"
    );
    assert!(
        phonetrust_proto::cert::verify_chain(&capf.cert, &[], std::slice::from_ref(&ca.cert), NOW)
            .is_ok()
    );
}

#[tokio::test]
async fn expiry_report_lists_what_expires_soon() {
    let (_dir, data, db) = setup("expiry").await;
    let soon = crate::database::ca("Soon CA", NOW - 86_400, 20);
    db.trust_import(TrustStore::CallManager, &soon.to_pem().unwrap(), NOW)
        .await
        .unwrap();
    let r = own::expiring(&data, &db, 30, NOW).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, "CallManager-trust");
    // Five years on, every own certificate shows.
    let r = own::expiring(&data, &db, 30, NOW + 1826 * 86_400)
        .await
        .unwrap();
    assert_eq!(r.iter().filter(|e| e.kind == "own").count(), 6);
}
