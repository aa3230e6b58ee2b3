//! File helpers for the command line: bounded reads and atomic writes.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Largest input file the tools read.
pub(crate) const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Read a whole file, refusing anything larger than [`MAX_INPUT`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.len() > MAX_INPUT {
        bail!(
            "{}: {} bytes is larger than the {} bytes these tools accept",
            path.display(),
            meta.len(),
            MAX_INPUT
        );
    }
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}

/// Write `bytes` to `path` atomically (see [`phonetrust_store::write_atomic`]);
/// `private` files get mode 0600, others 0644.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    phonetrust_store::write_atomic(path, bytes, if private { 0o600 } else { 0o644 })?;
    Ok(())
}

/// The file name part of `path`, as text.
pub(crate) fn base_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{}: not a file name", path.display()))
}

/// Modification time of `path` in Unix seconds.
pub(crate) fn mtime(path: &Path) -> Option<i64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    let d = m.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_secs()).ok()
}

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    phonetrust_proto::clock::unix_now()
}

/// Now, in Unix seconds as file headers carry it (u32).
pub(crate) fn now_u32() -> u32 {
    u32::try_from(now()).unwrap_or(u32::MAX)
}
