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
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.len() == 0
    {
        // An empty file where a database was: truncated or replaced. Opening it would
        // silently start an empty database. (A database in WAL mode may keep its data
        // in the -wal file for a while: only an empty file without one is refused.)
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if wal_len == 0 {
            return Err(StoreError::Corrupt {
                path,
                reason: "the database file is empty (0 bytes): it was truncated or replaced; restore it from a backup, or remove it to start a new, empty database".into(),
            });
        }
    }
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
    /// The change feed's sender, once [`Db::changes`] started it.
    pub(crate) feed:
        std::sync::Arc<std::sync::OnceLock<std::sync::Arc<crate::changes::FeedSender>>>,
}

/// SQLite result codes that mean the disk is full: SQLITE_FULL, and
/// SQLITE_IOERR_SHMSIZE (the shared-memory file could not grow).
const SQLITE_DISK_FULL: [&str; 2] = ["13", "4874"];
/// SQLITE_NOTADB, SQLITE_CORRUPT.
const SQLITE_DAMAGED: [&str; 2] = ["26", "11"];

fn sqlite_code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match sqlite_code(&e) {
        Some(c) if SQLITE_DISK_FULL.contains(&c.as_str()) => StoreError::DiskFull(e.to_string()),
        _ => StoreError::Db(e.to_string()),
    }
}

/// An error opening or migrating the SQLite file `path`, named for the administrator.
fn open_err(url: &str, what: &str, e: sqlx::Error) -> StoreError {
    let path = sqlite_path(url);
    match (sqlite_code(&e), path) {
        (Some(c), Some(path)) if SQLITE_DAMAGED.contains(&c.as_str()) => StoreError::Corrupt {
            path,
            reason: format!(
                "not a readable SQLite database ({e}): it is damaged or another file; restore it from a backup (`phonetrust` never re-initialises a database it cannot read)"
            ),
        },
        (Some(c), _) if SQLITE_DISK_FULL.contains(&c.as_str()) => {
            StoreError::DiskFull(format!("{what} {url}: {e}"))
        }
        _ => StoreError::Db(format!("{what} {url}: {e}")),
    }
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
            // A database that is down is known within seconds, not the default 30: the
            // services then serve what they hold, or tell phones to try again, before
            // the phones give up on the request.
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_with(opts)
            .await
            .map_err(|e| open_err(url, "cannot open the database", e))?;
        if backend == Backend::Sqlite && !full.contains("mode=ro") {
            // Write-ahead log: one sync per commit instead of the rollback journal's
            // several, readers never blocked by the writer. Still `synchronous = FULL`
            // (SQLite's default), so a committed enrolment survives a power cut. The
            // setting is stored in the file; other connections follow it.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|e| open_err(url, "setting WAL on", e))?;
        }
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => open_err(url, "migrating", inner),
            other => StoreError::Db(format!("migrating {url}: {other}")),
        })?;
        let db = Self {
            pool,
            backend,
            url: url.to_string(),
            feed: Default::default(),
        };
        crate::changes::install(&db).await?;
        Ok(db)
    }

    /// Begin a transaction that writes. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails
    /// with "database is locked" (SQLITE_BUSY_SNAPSHOT, not retried by the busy timeout)
    /// when another connection — a heartbeat, CAPF's recorder — wrote in between. Writers
    /// wait for each other instead (busy timeout).
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(db_err),
            Backend::Postgres => self.pool.begin().await.map_err(db_err),
        }
    }

    /// The URL the database was opened with.
    pub fn url(&self) -> &str {
        &self.url
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

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// A database that cannot grow (SQLITE_FULL, as on a full disk) is reported as a full
    /// disk, not as an opaque database error.
    #[tokio::test]
    async fn a_full_disk_is_called_a_full_disk() {
        let mut c = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE t (b BLOB); PRAGMA max_page_count = 3;")
            .execute(&mut c)
            .await
            .unwrap();
        let e = sqlx::query("INSERT INTO t VALUES (zeroblob(100000))")
            .execute(&mut c)
            .await
            .unwrap_err();
        let e = db_err(e);
        assert!(matches!(e, StoreError::DiskFull(_)), "{e:?}");
        assert!(e.to_string().starts_with("disk full:"), "{e}");
    }

    /// Out of descriptors is said as such, not blamed on the file being opened.
    #[test]
    fn descriptor_exhaustion_names_the_cause() {
        let p = std::path::Path::new("/var/lib/phonetrust/identity/CAPF.pem");
        let e = crate::io(p)(std::io::Error::from_raw_os_error(24));
        assert!(matches!(e, StoreError::OutOfDescriptors(_)));
        let m = e.to_string();
        assert!(
            m.contains("no file descriptors left") && m.contains("LimitNOFILE"),
            "{m}"
        );
    }
}
