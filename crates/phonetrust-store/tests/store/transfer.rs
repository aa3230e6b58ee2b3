//! A whole store copied into another database (`cluster migrate`): a SQLite file of
//! 10,000 phones with their LSCs into a new database (PostgreSQL when
//! `PHONETRUST_TEST_POSTGRES` is set, else another SQLite file), proved by counts and
//! digests; a database in use is refused; a changed row shows in the comparison.

use phonetrust_store::devices::{CapfRecord, NewDevice};
use phonetrust_store::groups::{GroupRecord, Placement, PoolRecord};
use phonetrust_store::model::{DeviceCertKind, OpState, Protocol};
use phonetrust_store::transfer::{self, TABLES};

use crate::{db, tmp};

const PHONES: usize = 10_000;

/// The tables `transfer` copies are exactly those the migrations create.
#[tokio::test]
async fn every_table_of_the_schema_is_copied() {
    use sqlx::Connection;
    let d = tmp("transfer-tables");
    let url = phonetrust_store::db::default_url(d.path());
    let _db = phonetrust_store::Db::open(&url).await.unwrap();
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    names.sort();
    let mut listed: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    listed.sort();
    assert_eq!(names, listed);
}

#[tokio::test]
async fn a_store_of_ten_thousand_phones_is_copied_whole() {
    let d = tmp("transfer-src");
    let src = phonetrust_store::Db::open(&phonetrust_store::db::default_url(d.path()))
        .await
        .unwrap();
    let phones: Vec<NewDevice> = (0..PHONES)
        .map(|i| NewDevice {
            name: format!("SEP{i:012X}"),
            model: "8845".into(),
            protocol: Protocol::Sip,
            profile: None,
            description: format!("phone {i} — Zürich"),
        })
        .collect();
    for chunk in phones.chunks(1000) {
        src.add_devices(chunk, 1_000).await.unwrap();
    }
    let records: Vec<CapfRecord> = (0..PHONES)
        .map(|i| CapfRecord {
            device: format!("SEP{i:012X}"),
            state: OpState::Success,
            status: "Upgrade Success".into(),
            certs: vec![phonetrust_store::model::DeviceCert {
                kind: DeviceCertKind::Lsc,
                pem: format!("-----BEGIN CERTIFICATE-----\nLSC{i}\n-----END CERTIFICATE-----\n"),
                md5: format!("{i:032x}"),
                public_key: format!("{i:064x}"),
                subject: format!("CN=SEP{i:012X}"),
                issuer: "CN=CAPF-1234abcd".into(),
                serial: format!("{i:X}"),
                not_before: 1_000,
                not_after: 2_000_000_000,
                recorded_at: 1_000,
            }],
            delete_lsc: false,
            now: 1_000,
        })
        .collect();
    for chunk in records.chunks(2000) {
        for r in src.record_capf_results(chunk).await.unwrap() {
            r.unwrap();
        }
    }
    src.set_param("LscValidityDays", "730", 1_100)
        .await
        .unwrap();
    src.put_group(
        &GroupRecord {
            name: "East".into(),
            members: vec!["pub".into()],
        },
        false,
        1_200,
    )
    .await
    .unwrap();
    src.put_pool(
        &PoolRecord {
            name: "Berlin".into(),
            group: "East".into(),
        },
        false,
        1_200,
    )
    .await
    .unwrap();
    src.set_placement(
        "SEP000000000007",
        &Placement {
            pool: Some("Berlin".into()),
            group: None,
        },
    )
    .await
    .unwrap();

    let (_t, dst) = db("transfer-dst").await;
    let cmp = transfer::copy_store(&src, &dst).await.unwrap();
    assert!(cmp.identical(), "{cmp:?}");
    let devices = cmp.target.iter().find(|t| t.table == "device").unwrap();
    assert_eq!(devices.rows, PHONES as u64);
    let certs = cmp.target.iter().find(|t| t.table == "devicecert").unwrap();
    assert_eq!(certs.rows, PHONES as u64);
    // The copy is the store: the phones, their LSCs, parameters and placements read back.
    assert_eq!(dst.device_count().await.unwrap(), PHONES as i64);
    let c = dst.device_certs("SEP00000000270F").await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].md5, format!("{:032x}", 9999));
    assert_eq!(
        dst.device("SEP000000000005").await.unwrap().description,
        "phone 5 — Zürich"
    );
    assert_eq!(dst.param("LscValidityDays").await.unwrap(), 730);
    assert_eq!(
        dst.placement("SEP000000000007")
            .await
            .unwrap()
            .pool
            .as_deref(),
        Some("Berlin")
    );

    // Into a database in use: refused, nothing changed.
    let e = transfer::copy_store(&src, &dst).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("the target database is in use (10000 phones, 10000 phone certificates)"),
        "{e}"
    );
    assert_eq!(transfer::summarise(&dst).await.unwrap(), cmp.target);

    // One changed row shows in that table's digest, the count unchanged.
    src.set_param("LscValidityDays", "731", 1_300)
        .await
        .unwrap();
    let a = transfer::summarise(&src).await.unwrap();
    let b = transfer::summarise(&dst).await.unwrap();
    let differ: Vec<&str> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.table)
        .collect();
    assert_eq!(differ, vec!["processconfig"]);
}
