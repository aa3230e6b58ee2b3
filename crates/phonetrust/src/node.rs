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

    /// The directory TFTP and HTTP serve static files (and the CTL) from: `[provision]
    /// static_dir` of `<data>/phonetrust.toml` when set, else `<data>/tftp`.
    pub(crate) fn static_dir(&self) -> std::path::PathBuf {
        #[derive(serde::Deserialize, Default)]
        struct Provision {
            static_dir: Option<std::path::PathBuf>,
        }
        #[derive(serde::Deserialize, Default)]
        struct File {
            #[serde(default)]
            provision: Provision,
        }
        std::fs::read_to_string(self.data.root().join("phonetrust.toml"))
            .ok()
            .and_then(|t| toml::from_str::<File>(&t).ok())
            .and_then(|f| f.provision.static_dir)
            .unwrap_or_else(|| self.data.root().join("tftp"))
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
