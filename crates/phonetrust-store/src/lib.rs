//! Persistent state of a phonetrust node.
//!
//! - [`layout`]: where things live in the data directory.
//! - [`identity`]: the node's own certificates and private keys. Each is one PEM file
//!   (certificate + key) with mode 0600, replaced by write-temp-fsync-rename, so a crash
//!   leaves the old or the new pair, never a mix; the first identity is built in a
//!   temporary directory and renamed into place whole.

#![forbid(unsafe_code)]

pub mod identity;
pub mod layout;

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
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}
