//! The data directory:
//!
//! ```text
//! <data>/
//!   identity/            0700
//!     CAPF.pem           0600  certificate + private key
//!     CallManager.pem    0600
//!     CallManager-ECDSA.pem, TVS.pem, ITLRecovery.pem, tomcat.pem
//!     pending/           0700  keys and CSRs waiting for a CA-signed certificate
//!       CAPF.key         0600
//!       CAPF.csr
//!   phonetrust.db        SQLite database (parameters, trust stores, phones)
//! ```

use std::path::{Path, PathBuf};

use phonetrust_pki::profiles::OwnCert;

/// A node's data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
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
