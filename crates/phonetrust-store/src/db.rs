//! The database: one `sqlx` `Any` pool over SQLite (the default: a bundled library, one
//! file in the data directory) or PostgreSQL (`postgres://...`), schema migrations
//! embedded in the binary, and one SQL text for both backends (`$1` placeholders,
//! TEXT/INTEGER/BIGINT columns, integer timestamps).
//!
//! Every change goes through a transaction; callers never see the pool.

use std::path::Path;
use std::str::FromStr;

use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use crate::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which database engine a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (`sqlite://path`).
    Sqlite,
    /// PostgreSQL (`postgres://...`).
    Postgres,
}

impl Backend {
    /// The backend of `url`.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Invalid(format!(
                "unsupported database URL '{url}': use sqlite://PATH or postgres://USER@HOST/DB"
            )))
        }
    }
}

/// The URL of the default database of a data directory: `sqlite://<data>/phonetrust.db`.
pub fn default_url(data: &Path) -> String {
    format!("sqlite://{}", data.join("phonetrust.db").display())
}

/// The file of a SQLite URL (`sqlite://PATH`, `sqlite:PATH`, without `?options`), unless
/// in memory.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// The database holds the CAPF authentication strings: create it readable by its owner
/// only (SQLite gives its `-wal` and `-shm` files the database's mode), and take group
/// and other permissions away from a database (and its WAL/SHM) an earlier version left
/// readable.
fn secure_sqlite_file(url: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    let io = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    if !path.exists() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    let mut name = path.clone().into_os_string();
    let mut files = vec![path.clone()];
    for suffix in ["-wal", "-shm"] {
        name.push(suffix);
        files.push(std::path::PathBuf::from(&name));
        name = path.clone().into_os_string();
    }
    for f in files {
        let Ok(meta) = std::fs::metadata(&f) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).map_err(io(&f))?;
            tracing::warn!(file = %f.display(), "database file was readable by others: now 0600");
        }
    }
    Ok(())
}

/// An open database.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) url: String,
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

impl Db {
    /// Open (creating when missing, for SQLite) and migrate the database at `url`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let full = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        if backend == Backend::Sqlite {
            secure_sqlite_file(url)?;
        }
        let opts = AnyConnectOptions::from_str(&full).map_err(db_err)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Db(format!("cannot open the database {url}: {e}")))?;
        if backend == Backend::Sqlite && !full.contains("mode=ro") {
            // Write-ahead log: one sync per commit instead of the rollback journal's
            // several, readers never blocked by the writer. Still `synchronous = FULL`
            // (SQLite's default), so a committed enrolment survives a power cut. The
            // setting is stored in the file; other connections follow it.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|e| StoreError::Db(format!("setting WAL on {url}: {e}")))?;
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(format!("migrating {url}: {e}")))?;
        Ok(Self {
            pool,
            backend,
            url: url.to_string(),
        })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The schema version (the newest migration applied).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(v.unwrap_or(0))
    }

    /// Close the pool (waits for connections to return).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
