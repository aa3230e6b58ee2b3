//! phonetrust-store: identity files, the database (parameters, trust stores, phones,
//! CSV import, read-only SQL) and the own-certificate operations, on a real SQLite file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod certops;
mod cluster;
mod database;
mod identity;
mod transfer;

use phonetrust_testsupport::TestDir;

/// A fresh temporary directory for one test (removed when dropped).
pub(crate) fn tmp(tag: &str) -> TestDir {
    phonetrust_testsupport::tempdir(&format!("store-{tag}"))
}

/// A database in a fresh directory (a file: never `sqlite::memory:` with a pool).
///
/// With `PHONETRUST_TEST_POSTGRES=postgres://USER@HOST:PORT` set, each test gets a fresh
/// PostgreSQL database there instead (`pt_<tag>_<pid>`, dropped first), so the same
/// tests check that the SQL text also holds on PostgreSQL.
pub(crate) async fn db(tag: &str) -> (TestDir, phonetrust_store::Db) {
    let d = tmp(tag);
    let url = match std::env::var("PHONETRUST_TEST_POSTGRES") {
        Ok(server) if !server.is_empty() => postgres_db(&server, tag).await,
        _ => phonetrust_store::db::default_url(d.path()),
    };
    let db = phonetrust_store::Db::open(&url).await.unwrap();
    (d, db)
}

/// A fresh PostgreSQL database on `server` for the test `tag`; its URL.
async fn postgres_db(server: &str, tag: &str) -> String {
    use sqlx::Connection;
    let name: String = format!("pt_{tag}_{}", std::process::id())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let server = server.trim_end_matches('/');
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    format!("{server}/{name}")
}
