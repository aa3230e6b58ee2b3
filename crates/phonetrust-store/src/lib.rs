//! Persistent state of a phonetrust node.
//!
//! - [`layout`]: where things live in the data directory.
//! - [`identity`]: the node's own certificates and private keys. Each is one PEM file
//!   (certificate + key) with mode 0600, replaced by write-temp-fsync-rename, so a crash
//!   leaves the old or the new pair, never a mix; the first identity is built in a
//!   temporary directory and renamed into place whole.
//! - [`own`]: regenerate, CSR, import CA-signed, expiry report.
//! - [`db`]: the database (SQLite by default, PostgreSQL by URL) with embedded
//!   migrations; [`params`] enterprise parameters, [`trust`] trust stores, [`devices`]
//!   phones and security profiles, [`import`] CSV bulk import, [`sql`] read-only queries.
//! - [`ctlfile`]: the cluster's CTL and Cluster Security Mode, changed together.
//! - [`cluster`]: the cluster's nodes and their published certificates.
//! - [`changes`]: change notification between nodes (PostgreSQL `LISTEN/NOTIFY`).
//! - [`accounts`]: accounts of the web administration and the API.
//! - [`authfail`]: CAPF authentication failures, kept across restarts.
//! - [`audit`]: the audit log of changes; [`downloads`]: what each phone last downloaded
//!   (ITL, CTL, config), and the certificate monitor's one notice per day.
//! - [`lifecycle`]: LSC renewals by policy and their batches.
//! - [`transfer`]: a whole store copied into another database, with counts and digests.
//! - [`model`]: the records, as plain data.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod audit;
pub mod authfail;
pub mod changes;
pub mod cluster;
pub mod ctlfile;
pub mod db;
pub mod devices;
pub mod downloads;
pub mod groups;
pub mod identity;
pub mod import;
pub mod itlfile;
pub mod layout;
pub mod lifecycle;
pub mod model;
pub mod own;
pub mod params;
pub mod sql;
pub mod transfer;
pub mod trust;

pub use db::Db;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No file descriptor was left to open a file (the file itself is fine).
    #[error("cannot open {}: the process has no file descriptors left (too many connections or files open); raise LimitNOFILE or lower the services' max_* settings", .0.display())]
    OutOfDescriptors(std::path::PathBuf),
    /// The node has no identity yet.
    #[error("no identity in {0}: run `phonetrust init` first")]
    NotInitialised(std::path::PathBuf),
    /// The node has an identity already.
    #[error(
        "{0} already holds an identity; nothing was changed (to start over, move its identity/ directory away: that discards the node's keys)"
    )]
    AlreadyInitialised(std::path::PathBuf),
    /// A stored file is damaged.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] phonetrust_pki::PkiError),
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(String),
    /// The disk holding the database is full: nothing was changed.
    #[error(
        "disk full: the database could not be written ({0}); nothing was changed: free space on the database's file system and try again"
    )]
    DiskFull(String),
    /// The input is not acceptable (the message says why and what to do).
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something to be created exists already.
    #[error("{0}")]
    Conflict(String),
    /// The operation has consequences the caller must confirm.
    #[error("{0}")]
    NeedsConfirmation(String),
    /// Authentication mode 'By Authentication String' without a string; the shell says
    /// where to give one (`--auth-string`, the CSV column `auth_string`).
    #[error(
        "authentication mode 'By Authentication String' needs an authentication string (4 to 16 digits)"
    )]
    MissingAuthString,
}

impl From<openssl::error::ErrorStack> for StoreError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Self::Pki(phonetrust_pki::PkiError::from(e))
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| match source.raw_os_error() {
        // EMFILE, ENFILE: not the file's fault.
        Some(23 | 24) => StoreError::OutOfDescriptors(path.to_path_buf()),
        _ => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The name of the temporary file (or directory) this process writes before renaming it
/// into place as `name`: `.<name>.tmp-<pid>`.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", std::process::id())
}

/// The process that wrote a temporary file named by [`temp_name`], if `name` is one.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, pid) = rest.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

/// Remove what a crash mid-write left in `dir`: temporary files and directories of
/// [`write_atomic`] and of the first identity (they may hold private keys), whose writer
/// is no longer running. Returns what was removed, for the log.
pub fn remove_stale_temp_files(
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io(dir)(e)),
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = temp_owner(&name.to_string_lossy()) else {
            continue;
        };
        let alive =
            pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists();
        if alive {
            continue;
        }
        let p = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(io(&p))?;
        tracing::warn!(file = %p.display(), "removed a temporary file left by an interrupted write");
        removed.push(p);
    }
    Ok(removed)
}

/// Write `bytes` to `path` atomically with permission `mode`: temporary file in the same
/// directory, fsync, rename, fsync of the directory. A reader (or a crash) sees the old
/// file or the new one, never half of either.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    let tmp = dir.join(temp_name(
        &path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
