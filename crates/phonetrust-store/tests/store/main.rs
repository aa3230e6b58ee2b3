//! phonetrust-store: identity files, the database (parameters, trust stores, phones,
//! CSV import, read-only SQL) and the own-certificate operations, on a real SQLite file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod certops;
mod database;
mod identity;

use std::path::PathBuf;

/// A fresh, empty directory for one test.
pub(crate) fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("phonetrust-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A database in a fresh directory (a file: never `sqlite::memory:` with a pool).
pub(crate) async fn db(tag: &str) -> (PathBuf, phonetrust_store::Db) {
    let d = tmp(tag);
    std::fs::create_dir_all(&d).unwrap();
    let url = phonetrust_store::db::default_url(&d);
    let db = phonetrust_store::Db::open(&url).await.unwrap();
    (d, db)
}
