//! The database: migrations and defaults, enterprise parameters, trust stores, phones and
//! their CAPF information, CSV import, `run sql`.

use openssl::x509::X509;
use phonetrust_pki::{CertParams, DistinguishedName, KeySpec, generate_key, self_signed};
use phonetrust_proto::rand::SeededRandom;
use phonetrust_store::StoreError;
use phonetrust_store::devices::{
    CapfChange, DeviceChange, DeviceFilter, LscFilter, NewDevice, device_cert,
};
use phonetrust_store::model::{
    AuthMode, CertOperation, DeviceCertKind, KeyOrder, OpState, Protocol, TrustStore,
};
use phonetrust_store::trust::ImportOutcome;

use crate::db;

pub(crate) const NOW: i64 = 1_795_000_000;

pub(crate) fn ca(cn: &str, not_before: i64, days: u32) -> X509 {
    let key = generate_key(KeySpec::EcP256).unwrap();
    let mut p = CertParams::new(
        DistinguishedName {
            cn: cn.into(),
            o: "Test Manufacturer".into(),
            ..DistinguishedName::default()
        },
        not_before,
        days,
    );
    p.basic_constraints = Some(phonetrust_pki::BasicConstraints {
        ca: true,
        path_len: None,
    });
    self_signed(&p, &key, &SeededRandom::new(7)).unwrap()
}

fn phone(name: &str) -> NewDevice {
    NewDevice {
        name: name.into(),
        model: "8845".into(),
        protocol: Protocol::Sip,
        profile: None,
        description: String::new(),
    }
}

#[tokio::test]
async fn fresh_database_has_schema_defaults_and_seed_queries() {
    let (_d, db) = db("fresh").await;
    assert_eq!(db.schema_version().await.unwrap(), 11);
    assert_eq!(db.param("ClusterSecurityMode").await.unwrap(), 0);
    assert_eq!(db.param("CAPF Phone Port").await.unwrap(), 3804);
    assert_eq!(db.param("CapfOperationExpiresInDays").await.unwrap(), 10);
    let t = db
        .run_sql(
            "select paramname,paramvalue from processconfig where paramname='ClusterSecurityMode'",
        )
        .await
        .unwrap();
    assert_eq!(
        t.render(),
        "paramname           paramvalue\n=================== ==========\nClusterSecurityMode 0\n"
    );
    assert_eq!(db.profiles().await.unwrap().len(), 3);
}

#[tokio::test]
async fn parameters_are_validated() {
    let (_d, db) = db("params").await;
    assert_eq!(
        db.set_param("CapfOperationExpiresInDays", "5", NOW)
            .await
            .unwrap(),
        (10, 5)
    );
    assert_eq!(db.param("CapfOperationExpiresInDays").await.unwrap(), 5);
    for (name, value) in [
        // Only with the CTL (`utils ctl set-cluster`), never through `set param`.
        ("ClusterSecurityMode", "1"),
        ("ClusterSecurityMode", "2"),
        ("CapfPhonePort", "70000"),
        ("CapfPhonePort", "abc"),
        ("NoSuchParam", "1"),
    ] {
        let e = db.set_param(name, value, NOW).await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{name}={value}: {e}");
    }
    assert_eq!(db.param("CapfPhonePort").await.unwrap(), 3804);
    assert_eq!(db.param("ClusterSecurityMode").await.unwrap(), 0);
    assert_eq!(
        db.phone_ports().await.unwrap(),
        phonetrust_store::params::PhonePorts {
            capf: 3804,
            tvs: 2445,
            tftp: 69,
            http: 6970
        }
    );
}

/// Mixed mode is one step: the CTL and Cluster Security Mode change in one transaction,
/// and a failure (here: an empty CTL the schema refuses, written after the mode) leaves
/// both as they were.
#[tokio::test]
async fn ctl_and_security_mode_change_together() {
    use phonetrust_store::ctlfile::{ClusterSecurityMode as M, CtlChange};
    let (_d, db) = db("ctl").await;
    assert_eq!(db.ctl().await.unwrap(), None);
    assert_eq!(db.security_mode().await.unwrap(), M::NonSecure);

    db.set_cluster_security(CtlChange::Write(&[]), Some(M::Mixed), NOW)
        .await
        .unwrap_err();
    assert_eq!(
        db.security_mode().await.unwrap(),
        M::NonSecure,
        "rolled back"
    );
    assert_eq!(db.ctl().await.unwrap(), None);

    db.set_cluster_security(CtlChange::Write(b"ctl one"), Some(M::Mixed), NOW)
        .await
        .unwrap();
    assert_eq!(db.security_mode().await.unwrap(), M::Mixed);
    let c = db.ctl().await.unwrap().unwrap();
    assert_eq!((c.bytes.as_slice(), c.updated_at), (&b"ctl one"[..], NOW));
    assert_eq!(
        c.sha256,
        "30c560f8331fd5861936f60b81aa0c3c9660c6af092f5ee61dcd2a8bb966ca46"
    );
    assert_eq!(db.ctl_stamp().await.unwrap(), Some((c.sha256.clone(), NOW)));

    // A failed update keeps the old CTL and the mode.
    db.set_cluster_security(CtlChange::Write(&[]), Some(M::NonSecure), NOW + 1)
        .await
        .unwrap_err();
    assert_eq!(db.security_mode().await.unwrap(), M::Mixed);
    assert_eq!(db.ctl().await.unwrap().unwrap().bytes, b"ctl one");

    // Back to non-secure: the CTL stays (phones still hold it) until deleted.
    db.set_cluster_security(CtlChange::Keep, Some(M::NonSecure), NOW + 2)
        .await
        .unwrap();
    assert_eq!(db.security_mode().await.unwrap(), M::NonSecure);
    assert!(db.ctl().await.unwrap().is_some());
    db.set_cluster_security(CtlChange::Delete, None, NOW + 3)
        .await
        .unwrap();
    assert_eq!(db.ctl().await.unwrap(), None);
    assert_eq!(db.ctl_stamp().await.unwrap(), None);
}

#[tokio::test]
async fn run_sql_is_read_only() {
    let (_d, db) = db("sql").await;
    for bad in [
        "delete from device",
        "select 1; delete from device",
        "insert into processconfig values ('x','1',0)",
    ] {
        assert!(db.run_sql(bad).await.is_err(), "{bad}");
    }
    // Even a SELECT that would write (a function with side effects) cannot: the
    // connection is read-only. A syntax error is reported, not a crash.
    let e = db
        .run_sql("select from where")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("run sql"), "{e}");
    assert_eq!(db.param("ClusterSecurityMode").await.unwrap(), 0);
    // Two million matching rows: the first MAX_ROWS, and the note that there are more.
    let t = db
        .run_sql("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 2000000) SELECT n FROM c")
        .await
        .unwrap();
    assert!(t.truncated);
    assert_eq!(t.rows.len(), phonetrust_store::sql::MAX_ROWS);
    assert_eq!(t.columns, ["n"]);
    assert_eq!(t.rows[9_999], ["10000"]);
}

/// The second guard of `run sql` by itself (the text check passed or bypassed): nothing
/// can write through the read-only connection or transaction, on either engine.
#[tokio::test]
async fn run_sql_connection_cannot_write() {
    use phonetrust_store::db::Backend;
    let (d, db) = db("sql-ro").await;
    db.add_devices(
        &[phonetrust_store::devices::NewDevice {
            name: "SEP001122334455".into(),
            model: "8845".into(),
            protocol: phonetrust_store::model::Protocol::Sip,
            profile: None,
            description: String::new(),
        }],
        NOW,
    )
    .await
    .unwrap();
    let count = || async {
        db.run_sql("select count(*) from device")
            .await
            .unwrap()
            .rows[0][0]
            .clone()
    };
    assert_eq!(count().await, "1");
    match db.backend() {
        Backend::Postgres => {
            // A writing CTE passes the text check (it starts with WITH): the READ ONLY
            // transaction refuses it.
            let cte = "WITH gone AS (DELETE FROM device RETURNING name) SELECT * FROM gone";
            let e = db.run_sql(cte).await.unwrap_err().to_string();
            assert!(e.contains("read-only"), "{e}");
            for bad in [
                "INSERT INTO processconfig VALUES ('x', '1', 0)",
                "CREATE TABLE x (a INTEGER)",
                "SELECT set_config('default_transaction_read_only', 'off', false), nextval('x')",
            ] {
                assert!(db.query_read_only(bad).await.is_err(), "{bad}");
            }
        }
        Backend::Sqlite => {
            let other = d.path().join("attached.db");
            for bad in [
                format!("ATTACH DATABASE '{}' AS other", other.display()),
                "PRAGMA user_version = 7".to_string(),
                "INSERT INTO processconfig VALUES ('x', '1', 0)".to_string(),
                "DELETE FROM device".to_string(),
                "SELECT load_extension('libsqlite3_mod_dummy')".to_string(),
            ] {
                let e = db.query_read_only(&bad).await.unwrap_err().to_string();
                assert!(e.starts_with("run sql: "), "{bad}: {e}");
            }
            assert!(!other.exists(), "ATTACH created no file");
            assert_eq!(
                db.run_sql("PRAGMA user_version").await.ok(),
                None,
                "PRAGMA does not pass the text check"
            );
            let v = db.query_read_only("PRAGMA user_version").await.unwrap();
            assert_eq!(v.rows[0][0], "0");
        }
    }
    assert_eq!(count().await, "1");
    assert_eq!(
        db.run_sql("select count(*) from processconfig where paramname = 'x'")
            .await
            .unwrap()
            .rows[0][0],
        "0"
    );
}

#[tokio::test]
async fn trust_store_import_list_show_delete() {
    let (_d, db) = db("trust").await;
    let a = ca("Test Manufacturing CA", NOW - 86_400, 3650);
    let b = ca("Test Manufacturing CA", NOW - 86_400, 3650); // same CN, other key
    let mut bundle = a.to_pem().unwrap();
    bundle.extend(b.to_pem().unwrap());
    let out = db
        .trust_import(TrustStore::Capf, &bundle, NOW)
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            ImportOutcome::Added("Test_Manufacturing_CA.pem".into()),
            ImportOutcome::Added("Test_Manufacturing_CA_2.pem".into())
        ]
    );
    // DER of one already there: reported, nothing added.
    let again = db
        .trust_import(TrustStore::Capf, &a.to_der().unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![ImportOutcome::AlreadyPresent(
            "Test_Manufacturing_CA.pem".into()
        )]
    );
    assert_eq!(
        db.trust_list(Some(TrustStore::Capf)).await.unwrap().len(),
        2
    );
    assert!(
        db.trust_list(Some(TrustStore::Tomcat))
            .await
            .unwrap()
            .is_empty()
    );
    let got = db
        .trust_get(TrustStore::Capf, "Test_Manufacturing_CA")
        .await
        .unwrap();
    assert_eq!(got.subject, "CN=Test Manufacturing CA, O=Test Manufacturer");
    assert_eq!(db.trust_certs(TrustStore::Capf).await.unwrap().len(), 2);

    // Refusals leave the store unchanged.
    let expired = ca("Old CA", NOW - 20 * 86_400, 10);
    let future = ca("Future CA", NOW + 86_400, 10);
    let fresh = ca("Fresh CA", NOW - 1, 10);
    let mut mixed = fresh.to_pem().unwrap();
    mixed.extend(expired.to_pem().unwrap());
    for (input, want) in [
        (b"garbage".to_vec(), "neither a PEM"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            "no certificate",
        ),
        (mixed, "expired"),
        (future.to_pem().unwrap(), "not valid before"),
    ] {
        let e = db
            .trust_import(TrustStore::Capf, &input, NOW)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    assert_eq!(
        db.trust_list(Some(TrustStore::Capf)).await.unwrap().len(),
        2
    );

    let gone = db
        .trust_delete(TrustStore::Capf, "Test_Manufacturing_CA_2.pem")
        .await
        .unwrap();
    assert_eq!(gone.name, "Test_Manufacturing_CA_2.pem");
    let e = db
        .trust_delete(TrustStore::Capf, "nope.pem")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert_eq!(db.trust_list(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn phones_add_show_change_list_delete() {
    let (_d, db) = db("phones").await;
    db.add_devices(&[phone("sep001122334455"), phone("SEP0011223344AA")], NOW)
        .await
        .unwrap();
    let d = db.device("SEP001122334455").await.unwrap();
    assert_eq!(d.name, "SEP001122334455");
    assert_eq!(d.profile, "Standard Non-Secure Profile");
    assert_eq!(d.capf.operation, CertOperation::None);
    assert_eq!(d.capf.status, "None");

    // Refusals: duplicate, invalid MAC, unknown profile, unknown phone; nothing changes.
    let e = db
        .add_devices(&[phone("SEP001122334456"), phone("SEP001122334455")], NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert_eq!(
        db.device_count().await.unwrap(),
        2,
        "the batch was rolled back"
    );
    assert!(matches!(
        db.add_devices(&[phone("SEP12")], NOW).await,
        Err(StoreError::Invalid(_))
    ));
    let mut p = phone("SEP001122334457");
    p.profile = Some("No Such Profile".into());
    assert!(matches!(
        db.add_devices(&[p], NOW).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        db.device("SEP999999999999").await,
        Err(StoreError::NotFound(_))
    ));

    let d = db
        .update_device(
            "SEP001122334455",
            &DeviceChange {
                profile: Some("Standard Encrypted Profile".into()),
                protocol: Some(Protocol::Sccp),
                ..DeviceChange::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(d.profile, "Standard Encrypted Profile");

    // Schedule an operation: pending, default deadline from the enterprise parameter.
    let d = db
        .set_capf(
            "SEP001122334455",
            &CapfChange {
                operation: Some(CertOperation::Install),
                auth_mode: Some(AuthMode::AuthString),
                auth_string: Some("123456".into()),
                key_order: Some(KeyOrder::RsaEc),
                ..CapfChange::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(d.capf.state, OpState::Pending);
    assert_eq!(d.capf.status, "Operation Pending");
    assert_eq!(d.capf.completes_by, Some(NOW + 10 * 86_400));
    for bad in [
        CapfChange {
            auth_string: Some("123".into()),
            ..CapfChange::default()
        },
        CapfChange {
            auth_string: Some("12345678901234567".into()),
            ..CapfChange::default()
        },
        CapfChange {
            rsa_bits: Some(1000),
            ..CapfChange::default()
        },
        CapfChange {
            operation: Some(CertOperation::Install),
            completes_by: Some(NOW - 1),
            ..CapfChange::default()
        },
    ] {
        assert!(
            db.set_capf("SEP001122334455", &bad, NOW).await.is_err(),
            "{bad:?}"
        );
    }
    let e = db
        .set_capf(
            "SEP0011223344AA",
            &CapfChange {
                auth_mode: Some(AuthMode::AuthString),
                ..CapfChange::default()
            },
            NOW,
        )
        .await
        .unwrap_err();
    // The shells say where to give it (`--auth-string`, the CSV column `auth_string`).
    assert!(
        matches!(e, phonetrust_store::StoreError::MissingAuthString),
        "{e}"
    );
    assert_eq!(
        db.device("SEP001122334455").await.unwrap().capf,
        d.capf,
        "unchanged"
    );

    // CAPF records an LSC: md5hash follows, filters see it.
    let key = generate_key(KeySpec::Rsa(1024)).unwrap();
    let lsc = self_signed(
        &CertParams::new(
            DistinguishedName {
                cn: "SEP001122334455".into(),
                ..DistinguishedName::default()
            },
            NOW,
            30,
        ),
        &key,
        &SeededRandom::new(3),
    )
    .unwrap();
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
    let d = db.device("SEP001122334455").await.unwrap();
    assert_eq!(d.capf.status, "Upgrade Success");
    assert_eq!(d.capf.operation, CertOperation::None);
    // Scheduling "no operation" keeps the last outcome visible (issue 14.11); a pending
    // operation cancelled reads "None".
    let d = db
        .set_capf(
            "SEP001122334455",
            &CapfChange {
                operation: Some(CertOperation::None),
                ..CapfChange::default()
            },
            NOW + 5,
        )
        .await
        .unwrap();
    assert_eq!(
        (d.capf.state, d.capf.status.as_str()),
        (OpState::Success, "Upgrade Success")
    );
    assert_eq!(d.capf.status_at, NOW);
    for (op, state, status) in [
        (
            CertOperation::Install,
            OpState::Pending,
            "Operation Pending",
        ),
        (CertOperation::None, OpState::None, "None"),
    ] {
        let d = db
            .set_capf(
                "SEP001122334455",
                &CapfChange {
                    operation: Some(op),
                    ..CapfChange::default()
                },
                NOW + 10,
            )
            .await
            .unwrap();
        assert_eq!((d.capf.state, d.capf.status.as_str()), (state, status));
    }
    assert_eq!(d.md5hash.as_deref(), Some(rec.md5.as_str()));
    let t = db
        .run_sql("select md5hash,name from device where name='SEP001122334455'")
        .await
        .unwrap();
    assert_eq!(
        t.rows,
        vec![vec![rec.md5.clone(), "SEP001122334455".to_string()]]
    );

    let names =
        |v: Vec<phonetrust_store::model::Device>| v.into_iter().map(|d| d.name).collect::<Vec<_>>();
    let f = |lsc, auth: Option<&str>, exp| DeviceFilter {
        lsc,
        auth_string: auth.map(str::to_string),
        lsc_expires_before: exp,
        ..DeviceFilter::default()
    };
    assert_eq!(
        names(
            db.devices(&f(Some(LscFilter::Installed), None, None))
                .await
                .unwrap()
        ),
        ["SEP001122334455"]
    );
    assert_eq!(
        names(
            db.devices(&f(Some(LscFilter::None), None, None))
                .await
                .unwrap()
        ),
        ["SEP0011223344AA"]
    );
    assert_eq!(
        names(db.devices(&f(None, Some("123456"), None)).await.unwrap()),
        ["SEP001122334455"]
    );
    assert!(
        db.devices(&f(None, None, Some(NOW + 86_400)))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        names(
            db.devices(&f(None, None, Some(NOW + 31 * 86_400)))
                .await
                .unwrap()
        ),
        ["SEP001122334455"]
    );
    assert_eq!(db.devices(&DeviceFilter::default()).await.unwrap().len(), 2);

    // Delete clears the LSC record with the phone.
    db.record_capf_result(
        "SEP001122334455",
        OpState::Success,
        "Delete Success",
        &[],
        true,
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(db.device("SEP001122334455").await.unwrap().md5hash, None);
    db.delete_device("SEP001122334455").await.unwrap();
    assert!(matches!(
        db.delete_device("SEP001122334455").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.device_count().await.unwrap(), 1);
}

#[tokio::test]
async fn csv_import_reports_each_row_and_commits_the_valid_ones() {
    let (_d, db) = db("csv").await;
    db.add_devices(&[phone("SEP000000000001")], NOW)
        .await
        .unwrap();
    let csv = "name,model,protocol,profile,operation,auth,auth_string,key_order,rsa_bits,completes_by\n\
        SEP00000000000A,8845,SIP,,install,auth-string,1234,rsa,2048,2026-12-01T10:00Z\n\
        SEP12,8845,SIP,,,,,,,\n\
        SEP000000000001,7975,SCCP,,,,,,,\n\
        SEP00000000000B,7975,SCCP,Standard Encrypted Profile,,,,,,\n\
        SEP00000000000B,7975,SCCP,,,,,,,\n\
        SEP00000000000C,8845,SIP,,install,auth-string,12,,,\n\
        SEP00000000000D,8845,SIP,Nope,,,,,,\n\
        SEP00000000000E,8845,SIP,,,,,,512,\n";
    let rep = db.import_csv(csv.as_bytes(), NOW, false).await.unwrap();
    let summary: Vec<(u64, bool)> = rep.iter().map(|r| (r.line, r.result.is_ok())).collect();
    assert_eq!(
        summary,
        [
            (2, true),
            (3, false),
            (4, false),
            (5, true),
            (6, false),
            (7, false),
            (8, false),
            (9, false)
        ]
    );
    assert!(
        rep[1]
            .result
            .as_ref()
            .unwrap_err()
            .contains("invalid phone name")
    );
    assert!(
        rep[2]
            .result
            .as_ref()
            .unwrap_err()
            .contains("exists already")
    );
    assert!(rep[4].result.as_ref().unwrap_err().contains("twice"));
    assert!(
        rep[5]
            .result
            .as_ref()
            .unwrap_err()
            .contains("4 to 16 digits")
    );
    assert!(rep[6].result.as_ref().unwrap_err().contains("profile"));
    assert!(rep[7].result.as_ref().unwrap_err().contains("RSA key size"));
    assert_eq!(db.device_count().await.unwrap(), 3);
    let a = db.device("SEP00000000000A").await.unwrap();
    assert_eq!(a.capf.operation, CertOperation::Install);
    assert_eq!(a.capf.auth_string.as_deref(), Some("1234"));
    assert_eq!(a.capf.completes_by, Some(1_796_119_200));
    assert_eq!(
        db.device("SEP00000000000B").await.unwrap().profile,
        "Standard Encrypted Profile"
    );
    for bad in ["model\n8845\n", "name,colour\nSEP000000000009,red\n"] {
        assert!(
            db.import_csv(bad.as_bytes(), NOW, false).await.is_err(),
            "{bad}"
        );
    }
    assert_eq!(db.device_count().await.unwrap(), 3);
}

/// Group commit: several outcomes in one transaction; an unknown phone in the batch gets
/// its own NotFound and does not stop the others.
#[tokio::test]
async fn capf_results_are_recorded_in_batches() {
    let (_dir, db) = db("batch").await;
    for n in ["SEP00000000000A", "SEP00000000000B"] {
        db.add_devices(&[phone(n)], NOW).await.unwrap();
    }
    let rec = |device: &str, status: &str| phonetrust_store::devices::CapfRecord {
        device: device.into(),
        state: OpState::Failed,
        status: status.into(),
        certs: Vec::new(),
        delete_lsc: false,
        now: NOW,
    };
    let out = db
        .record_capf_results(&[
            rec(
                "SEP00000000000A",
                "Upgrade Failed: Invalid Authentication String",
            ),
            rec("SEP0000000000FF", "Upgrade Failed: whatever"),
            rec(
                "SEP00000000000B",
                "Upgrade Failed: User Initiated Request Late/Timeout",
            ),
        ])
        .await
        .unwrap();
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    assert!(matches!(out[1], Err(StoreError::NotFound(_))), "{out:?}");
    let a = db.device("SEP00000000000A").await.unwrap().capf;
    assert_eq!(a.state, OpState::Failed);
    assert_eq!(a.status, "Upgrade Failed: Invalid Authentication String");
    assert_eq!(
        db.device("SEP00000000000B").await.unwrap().capf.status,
        "Upgrade Failed: User Initiated Request Late/Timeout"
    );
}

/// The record of a certificate (computed from its DER once) says what OpenSSL and the
/// trust-store facts say of it: the vectors' LSCs, MIC and node certificates.
#[test]
fn device_cert_records_match_openssl() {
    let dir = phonetrust_testsupport::vectors::dir();
    let mut seen = 0;
    for rel in [
        "pki/lsc/SEP001122AABBCC.pem",
        "pki/lsc/SEP0011AABBCCDD.pem",
        "pki/mic-SEP0011AABBCCDD.crt",
        "pki/callmanager.crt",
        "pki/callmanager-ecdsa.crt",
        "pki/capf.crt",
    ] {
        let Ok(pem) = std::fs::read(dir.join(rel)) else {
            panic!("vector {rel} missing under {}", dir.display());
        };
        let cert = X509::from_pem(&pem).unwrap();
        let rec = device_cert(DeviceCertKind::Lsc, &cert, NOW).unwrap();
        let facts = phonetrust_store::trust::CertFacts::of(&cert).unwrap();
        assert_eq!(
            rec.pem.as_bytes(),
            cert.to_pem().unwrap().as_slice(),
            "{rel}"
        );
        assert_eq!(X509::from_pem(rec.pem.as_bytes()).unwrap(), cert);
        assert_eq!(
            (
                &rec.subject,
                &rec.issuer,
                &rec.serial,
                rec.not_before,
                rec.not_after
            ),
            (
                &facts.subject,
                &facts.issuer,
                &facts.serial,
                facts.not_before,
                facts.not_after
            ),
            "{rel}"
        );
        assert_eq!(
            rec.md5,
            phonetrust_proto::cert::md5_hex(&cert.to_der().unwrap())
        );
        assert_eq!(rec.recorded_at, NOW);
        seen += 1;
    }
    assert_eq!(seen, 6);
}

/// A cert row as CAPF records it (the store keeps the text as given).
fn cert(kind: DeviceCertKind, tag: &str) -> phonetrust_store::model::DeviceCert {
    phonetrust_store::model::DeviceCert {
        kind,
        pem: format!("PEM {tag}"),
        md5: format!("md5-{tag}"),
        public_key: format!("key-{tag}"),
        subject: format!("CN={tag}"),
        issuer: "CN=CAPF-1234abcd".into(),
        serial: "0A".into(),
        not_before: NOW,
        not_after: NOW + 1000,
        recorded_at: NOW,
    }
}

/// A whole batch is written with a fixed set of statements: every kind of outcome in one
/// batch (install with MIC and LSC, replace an LSC, delete, failures that keep the
/// operation), two records of one phone applied in order, more records than one chunk of
/// placeholders, unknown phones in between.
#[tokio::test]
async fn capf_batches_keep_every_outcome_and_the_order() {
    let (_dir, db) = db("batch-kinds").await;
    let names: Vec<String> = (0..230).map(|i| format!("SEP{:012X}", 0x200 + i)).collect();
    let new: Vec<NewDevice> = names.iter().map(|n| phone(n)).collect();
    db.add_devices(&new, NOW).await.unwrap();
    let install = CapfChange {
        operation: Some(CertOperation::Install),
        ..CapfChange::default()
    };
    for n in &names {
        db.set_capf(n, &install, NOW).await.unwrap();
    }
    let rec = |device: &str, state, status: &str, certs, delete_lsc| {
        phonetrust_store::devices::CapfRecord {
            device: device.into(),
            state,
            status: status.into(),
            certs,
            delete_lsc,
            now: NOW + 5,
        }
    };
    // First batch: every phone installs (MIC + LSC); the first phone twice, the second
    // record (a later LSC) wins; an unknown phone in the middle.
    let mut batch: Vec<_> = names
        .iter()
        .map(|n| {
            rec(
                n,
                OpState::Success,
                "Upgrade Success",
                vec![
                    cert(DeviceCertKind::Mic, &format!("mic-{n}")),
                    cert(DeviceCertKind::Lsc, n),
                ],
                false,
            )
        })
        .collect();
    batch.insert(
        100,
        rec(
            "SEP0000000000FF",
            OpState::Success,
            "Upgrade Success",
            vec![],
            false,
        ),
    );
    batch.push(rec(
        &names[0],
        OpState::Success,
        "Upgrade Success",
        vec![cert(DeviceCertKind::Lsc, "second")],
        false,
    ));
    let out = db.record_capf_results(&batch).await.unwrap();
    assert_eq!(out.len(), batch.len());
    for (i, o) in out.iter().enumerate() {
        if i == 100 {
            assert!(matches!(o, Err(StoreError::NotFound(_))), "{o:?}");
        } else {
            assert!(o.is_ok(), "{i}: {o:?}");
        }
    }
    for (i, n) in names.iter().enumerate() {
        let d = db.device(n).await.unwrap();
        assert_eq!(d.capf.state, OpState::Success, "{n}");
        assert_eq!(d.capf.status, "Upgrade Success");
        assert_eq!(d.capf.status_at, NOW + 5);
        assert_eq!(d.updated_at, NOW + 5);
        assert_eq!(
            d.capf.operation,
            CertOperation::None,
            "a success ends the operation"
        );
        assert_eq!(d.capf.completes_by, None);
        let certs = db.device_certs(n).await.unwrap();
        assert_eq!(certs.len(), 2, "{n}: {certs:?}");
        let lsc = certs
            .iter()
            .find(|c| c.kind == DeviceCertKind::Lsc)
            .unwrap();
        let want = if i == 0 { "second" } else { n.as_str() };
        assert_eq!(lsc.pem, format!("PEM {want}"));
        assert_eq!(d.md5hash.as_deref(), Some(format!("md5-{want}").as_str()));
    }
    assert!(db.device("SEP0000000000FF").await.is_err());

    // Second batch: delete the LSC of phone 1 (md5hash falls back to the MIC), fail phone
    // 2 (operation and certificates kept), replace phone 3's LSC, then fail phone 3 in the
    // same batch (the certificate stays, the status is the later one).
    for n in &names[1..4] {
        db.set_capf(n, &install, NOW + 6).await.unwrap();
    }
    let out = db
        .record_capf_results(&[
            rec(&names[1], OpState::Success, "Delete Success", vec![], true),
            rec(
                &names[2],
                OpState::Failed,
                "Upgrade Failed: LSC: Failed",
                vec![],
                false,
            ),
            rec(
                &names[3],
                OpState::Success,
                "Upgrade Success",
                vec![cert(DeviceCertKind::Lsc, "renewed")],
                false,
            ),
            rec(
                &names[3],
                OpState::Failed,
                "Upgrade Failed: User Initiated Request Late/Timeout",
                vec![],
                false,
            ),
        ])
        .await
        .unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let d1 = db.device(&names[1]).await.unwrap();
    assert_eq!(d1.capf.status, "Delete Success");
    let c1 = db.device_certs(&names[1]).await.unwrap();
    assert_eq!(c1.len(), 1);
    assert_eq!(c1[0].kind, DeviceCertKind::Mic);
    assert_eq!(
        d1.md5hash.as_deref(),
        Some(format!("md5-mic-{}", names[1]).as_str())
    );
    let d2 = db.device(&names[2]).await.unwrap();
    assert_eq!(d2.capf.state, OpState::Failed);
    assert_eq!(
        d2.capf.operation,
        CertOperation::Install,
        "a failure keeps the operation"
    );
    assert!(d2.capf.completes_by.is_some());
    assert_eq!(db.device_certs(&names[2]).await.unwrap().len(), 2);
    let d3 = db.device(&names[3]).await.unwrap();
    assert_eq!(d3.capf.state, OpState::Failed);
    assert_eq!(
        d3.capf.status,
        "Upgrade Failed: User Initiated Request Late/Timeout"
    );
    assert_eq!(d3.md5hash.as_deref(), Some("md5-renewed"));
    // The success before the failure ended the operation; the failure did not bring it back.
    assert_eq!(d3.capf.operation, CertOperation::None);
}

/// Batched lookups (the CAPF server reads concurrent sessions' phones in one query):
/// every known phone once, unknown names absent, more than one chunk of placeholders.
#[tokio::test]
async fn devices_are_read_in_batches() {
    let (_dir, db) = db("lookup").await;
    let names: Vec<String> = (0..250).map(|i| format!("SEP{:012X}", 0x100 + i)).collect();
    let new: Vec<NewDevice> = names.iter().map(|n| phone(n)).collect();
    db.add_devices(&new, NOW).await.unwrap();
    let mut ask = names.clone();
    ask.push("SEP0000000000FF".into());
    let found = db.devices_named(&ask).await.unwrap();
    assert_eq!(found.len(), 250);
    assert!(!found.contains_key("SEP0000000000FF"));
    assert_eq!(
        found["SEP000000000105"],
        db.device("SEP000000000105").await.unwrap()
    );
    assert!(db.devices_named(&[]).await.unwrap().is_empty());
}

/// An empty or unreadable database file is refused with its name — never silently
/// replaced by a new, empty database.
#[tokio::test]
async fn an_empty_or_damaged_database_is_refused_by_name() {
    let tmp = phonetrust_testsupport::tempdir("store-damaged");
    let path = tmp.path().join("phonetrust.db");
    let url = phonetrust_store::db::default_url(tmp.path());
    std::fs::write(&path, b"").unwrap();
    let e = phonetrust_store::Db::open(&url).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("phonetrust.db") && m.contains("empty (0 bytes)"),
        "{m}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "the file was touched"
    );
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let e = phonetrust_store::Db::open(&url).await.unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(
        m.contains("phonetrust.db") && m.contains("restore it from a backup"),
        "{m}"
    );
    // A new database is still created where there is none.
    std::fs::remove_file(&path).unwrap();
    let db = phonetrust_store::Db::open(&url).await.unwrap();
    db.close().await;
    // And opened again.
    phonetrust_store::Db::open(&url).await.unwrap();
}

/// Authentication failures: stored, read back by age, the newest count wins whatever the
/// order the writes arrive in, old ones forgotten, one cleared.
#[tokio::test]
async fn auth_failures_keep_the_newest_count() {
    use phonetrust_store::authfail::AuthFailure;
    let (_d, db) = db("authfail").await;
    let f = |key: &str, failures: u32, last: i64, locked: i64| AuthFailure {
        key: key.into(),
        failures,
        last_failure: last,
        locked_until: locked,
    };
    db.put_auth_failure(&f("ip:192.0.2.1", 3, NOW, 0), NOW - 600)
        .await
        .unwrap();
    // A stale write (an earlier count) arriving late changes nothing.
    db.put_auth_failure(&f("ip:192.0.2.1", 2, NOW, 0), NOW - 600)
        .await
        .unwrap();
    db.put_auth_failure(&f("ip:192.0.2.1", 1, NOW - 5, 0), NOW - 600)
        .await
        .unwrap();
    db.put_auth_failure(&f("dev:SEP001122334455", 5, NOW, NOW + 10), NOW - 600)
        .await
        .unwrap();
    let mut got = db.auth_failures(NOW - 600).await.unwrap();
    got.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        got,
        vec![
            f("dev:SEP001122334455", 5, NOW, NOW + 10),
            f("ip:192.0.2.1", 3, NOW, 0)
        ]
    );
    // A write 20 minutes later forgets what is older than its window.
    db.put_auth_failure(&f("ip:192.0.2.9", 1, NOW + 1200, 0), NOW + 600)
        .await
        .unwrap();
    let got = db.auth_failures(0).await.unwrap();
    assert_eq!(got, vec![f("ip:192.0.2.9", 1, NOW + 1200, 0)]);
    db.clear_auth_failure("ip:192.0.2.9").await.unwrap();
    assert!(db.auth_failures(0).await.unwrap().is_empty());
}

/// The audit log keeps entries in order, filters by time, keeps the newest at a limit.
#[tokio::test]
async fn audit_log_in_order_since_and_limited() {
    use phonetrust_store::audit::AuditEntry;
    let (_d, db) = db("audit").await;
    let e = |at_ms, action: &str, result: &str| AuditEntry {
        at_ms,
        actor: "alice".into(),
        node: "pub".into(),
        action: action.into(),
        detail: "--force".into(),
        result: result.into(),
    };
    db.audit(&e(1_000, "set cert regen", "ok")).await.unwrap();
    db.audit(&e(2_000, "phone delete", "refused: no such phone"))
        .await
        .unwrap();
    db.audit(&e(3_000, "phone add", "ok")).await.unwrap();
    let all = db.audit_since(0, 100).await.unwrap();
    let actions: Vec<_> = all.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["set cert regen", "phone delete", "phone add"]);
    assert_eq!(all[1].result, "refused: no such phone");
    assert_eq!(all[0].actor, "alice");
    let since = db.audit_since(2_000, 100).await.unwrap();
    assert_eq!(since.len(), 2);
    let newest = db.audit_since(0, 1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].action, "phone add");
    // A very long detail is kept cut, not refused.
    let mut long = e(4_000, "phone import", "ok");
    long.detail = "x".repeat(10_000);
    db.audit(&long).await.unwrap();
    let last = db.audit_since(4_000, 10).await.unwrap();
    assert_eq!(last[0].detail.len(), phonetrust_store::audit::MAX_DETAIL);
}

/// Downloads: one record per phone and kind, the newest wins, unknown names are not
/// recorded, deleting the phone deletes its records; a certificate notice is claimed once
/// per day.
#[tokio::test]
async fn downloads_recorded_per_phone_and_kind() {
    use phonetrust_store::downloads::{Download, DownloadKind};
    let (_d, db) = db("downloads").await;
    db.add_devices(&[phone("SEP001122334455"), phone("SEP001122334466")], 0)
        .await
        .unwrap();
    let d = |dev: &str, kind, sha: &str, at| Download {
        device: dev.into(),
        kind,
        file: format!("ITL{dev}.tlv"),
        sha256: sha.into(),
        node: "pub".into(),
        protocol: "tftp".into(),
        at,
    };
    // 450 records in one call: more than one statement's worth, most for unknown phones.
    let mut batch: Vec<Download> = (0..448)
        .map(|i| d(&format!("SEP{i:012X}"), DownloadKind::Itl, "00", 5))
        .collect();
    batch.push(d("SEP001122334455", DownloadKind::Itl, "aa", 10));
    batch.push(d("SEP001122334455", DownloadKind::Config, "cc", 10));
    db.record_downloads(&batch).await.unwrap();
    db.record_downloads(&[
        d("SEP001122334455", DownloadKind::Itl, "bb", 20),
        d("SEP001122334466", DownloadKind::Itl, "dd", 20),
    ])
    .await
    .unwrap();
    // An older record arriving late does not replace a newer one.
    db.record_downloads(&[d("SEP001122334466", DownloadKind::Itl, "old", 15)])
        .await
        .unwrap();
    let itl = db.downloads(DownloadKind::Itl).await.unwrap();
    let got: Vec<_> = itl
        .iter()
        .map(|x| (x.device.as_str(), x.sha256.as_str(), x.at))
        .collect();
    assert_eq!(
        got,
        [("SEP001122334455", "bb", 20), ("SEP001122334466", "dd", 20)]
    );
    assert_eq!(db.downloads_of("SEP001122334455").await.unwrap().len(), 2);
    db.delete_device("SEP001122334455").await.unwrap();
    assert!(db.downloads_of("SEP001122334455").await.unwrap().is_empty());

    assert!(db.claim_cert_notice("abcd", 100).await.unwrap());
    assert!(!db.claim_cert_notice("abcd", 100).await.unwrap());
    assert!(db.claim_cert_notice("abcd", 101).await.unwrap());
}

/// Renewals and their batches: recorded in one transaction, counted per hour, finished,
/// listed by state; a phone's row goes with the phone.
#[tokio::test]
async fn renewals_and_batches_are_kept() {
    use phonetrust_store::lifecycle::{Renewal, RenewalState};
    let (_d, db) = db("renewals").await;
    db.add_devices(&[phone("SEP001122334455"), phone("SEP001122334466")], 0)
        .await
        .unwrap();
    assert_eq!(db.next_renewal_batch().await.unwrap(), 1);
    let r = |dev: &str| Renewal {
        device: dev.into(),
        reason: "CAPF generation retired".into(),
        lsc_serial: "0A".into(),
        batch: 1,
        scheduled_at: 1_000,
        state: RenewalState::Scheduled,
        finished_at: None,
        detail: String::new(),
    };
    db.put_renewals(&[r("SEP001122334455"), r("SEP001122334466")])
        .await
        .unwrap();
    db.set_batch_hook(1, "command x: ok").await.unwrap();
    assert_eq!(db.next_renewal_batch().await.unwrap(), 2);
    assert_eq!(db.renewals_scheduled_since(999).await.unwrap(), 2);
    assert_eq!(db.renewals_scheduled_since(1_000).await.unwrap(), 0);
    db.finish_renewal(
        "SEP001122334455",
        RenewalState::Done,
        "new LSC installed",
        2_000,
    )
    .await
    .unwrap();
    let open = db.renewals(Some(RenewalState::Scheduled)).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].device, "SEP001122334466");
    let done = db.renewals(Some(RenewalState::Done)).await.unwrap();
    assert_eq!(done[0].finished_at, Some(2_000));
    assert_eq!(db.renewals(None).await.unwrap().len(), 2);
    let b = db.renewal_batches(10).await.unwrap();
    assert_eq!(
        (b.len(), b[0].phones, b[0].hook.as_str()),
        (1, 2, "command x: ok")
    );
    db.delete_device("SEP001122334466").await.unwrap();
    assert_eq!(db.renewals(None).await.unwrap().len(), 1);
}
