//! Where a command finds the node: its data directory, database URL and settings
//! ([`crate::config`]).

use anyhow::{Context, Result};
use phonetrust_store::Db;
use phonetrust_store::layout::DataDir;

use crate::config::Settings;

/// The node a command works on.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Data directory.
    pub(crate) data: DataDir,
    /// Database URL.
    pub(crate) db_url: String,
    /// Everything resolved from the command line, environment, config file, defaults.
    pub(crate) settings: Settings,
}

impl Node {
    /// The node these settings name.
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            data: DataDir::new(&settings.data),
            db_url: settings.db_url.clone(),
            settings,
        }
    }

    /// The directory TFTP and HTTP serve static files from.
    pub(crate) fn static_dir(&self) -> std::path::PathBuf {
        self.settings.static_dir.clone()
    }

    /// Open (and migrate) the database. The data directory must hold an identity.
    pub(crate) async fn db(&self) -> Result<Db> {
        if !phonetrust_store::identity::exists(&self.data) {
            return Err(phonetrust_store::StoreError::NotInitialised(
                self.data.root().to_path_buf(),
            )
            .into());
        }
        if self.data.secure()? {
            tracing::warn!(data = %self.data.root().display(), "data directory was open to others: now 0700");
        }
        Db::open(&self.db_url)
            .await
            .with_context(|| format!("opening the database {}", self.db_url))
    }
}
