//! Where a command finds the node: its data directory and database URL.

use anyhow::{Context, Result};
use phonetrust_store::Db;
use phonetrust_store::layout::DataDir;

/// The node a command works on.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Data directory.
    pub(crate) data: DataDir,
    /// Database URL.
    pub(crate) db_url: String,
}

impl Node {
    /// The node in `data`, with the database at `db_url` (default: SQLite in `data`).
    pub(crate) fn new(data: &std::path::Path, db_url: Option<String>) -> Self {
        Self {
            db_url: db_url.unwrap_or_else(|| phonetrust_store::db::default_url(data)),
            data: DataDir::new(data),
        }
    }

    /// Open (and migrate) the database. The data directory must hold an identity.
    pub(crate) async fn db(&self) -> Result<Db> {
        if !phonetrust_store::identity::exists(&self.data) {
            return Err(phonetrust_store::StoreError::NotInitialised(
                self.data.root().to_path_buf(),
            )
            .into());
        }
        Db::open(&self.db_url)
            .await
            .with_context(|| format!("opening the database {}", self.db_url))
    }
}
