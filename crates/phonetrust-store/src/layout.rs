//! The data directory:
//!
//! ```text
//! <data>/                0700
//!   serve.lock           held (locked) by the one `phonetrust serve` of this directory
//!   identity/            0700
//!     CAPF.pem           0600  certificate + private key
//!     CallManager.pem    0600
//!     CallManager-ECDSA.pem, TVS.pem, ITLRecovery.pem, tomcat.pem
//!     pending/           0700  keys and CSRs waiting for a CA-signed certificate
//!       CAPF.key         0600
//!       CAPF.csr
//!   phonetrust.db        0600  SQLite database (parameters, trust stores, phones,
//!                              CAPF authentication strings); -wal, -shm 0600
//! ```

use std::path::{Path, PathBuf};

use phonetrust_pki::profiles::OwnCert;

/// A node's data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

/// The lock a running `phonetrust serve` holds on its data directory; released when
/// dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
}

impl DataDir {
    /// Create the directory when missing, readable by its owner only (0700), and take
    /// group and other permissions away from one that has them. True when it changed.
    pub fn secure(&self) -> Result<bool, crate::StoreError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !self.root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(crate::io(&self.root))?;
            return Ok(true);
        }
        let meta = std::fs::metadata(&self.root).map_err(crate::io(&self.root))?;
        if meta.permissions().mode() & 0o077 == 0 {
            return Ok(false);
        }
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .map_err(crate::io(&self.root))?;
        Ok(true)
    }

    /// Take the serve lock: refused while another process serves this directory (two
    /// servers on one directory would fight over what phones are told).
    pub fn lock_serve(&self) -> Result<ServeLock, crate::StoreError> {
        let path = self.root.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(crate::io(&path))?;
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                let _ = file.set_len(0);
                let _ = writeln!(&file, "{}", std::process::id());
                Ok(ServeLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                Err(crate::StoreError::Conflict(format!(
                    "{} is already served by another `phonetrust serve` (process {}): stop it first, or give this one its own --data directory",
                    self.root.display(),
                    pid.trim()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(crate::io(&path)(e)),
        }
    }

    /// The data directory at `root` (not created here).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the own certificates.
    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }

    /// Directory of pending CSRs and their keys.
    pub fn pending_dir(&self) -> PathBuf {
        self.identity_dir().join("pending")
    }

    /// Private key of a pending CSR.
    pub fn pending_key(&self, which: OwnCert) -> PathBuf {
        self.pending_dir().join(format!("{}.key", which.name()))
    }

    /// A pending CSR.
    pub fn pending_csr(&self, which: OwnCert) -> PathBuf {
        self.pending_dir().join(format!("{}.csr", which.name()))
    }

    /// The SQLite database file.
    pub fn database(&self) -> PathBuf {
        self.root.join("phonetrust.db")
    }

    /// File of one own certificate and its key.
    pub fn own_cert(&self, which: OwnCert) -> PathBuf {
        self.identity_dir().join(format!("{}.pem", which.name()))
    }
}
