//! Which names the node serves to phones, checked before anything is opened.

use std::path::{Component, Path, PathBuf};

/// Longest name a phone may ask for.
pub const MAX_NAME: usize = 255;

/// A name that is not served (phones only ever see "File not found"; this says why, for
/// the log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RefusedName(pub String);

/// The relative path of a static file, or why the name is refused: empty, too long,
/// absolute, with `..`, `.`-hidden parts, backslashes or characters outside
/// `[A-Za-z0-9._-/]`.
pub fn static_path(name: &str) -> Result<PathBuf, RefusedName> {
    let refuse = |why: &str| Err(RefusedName(format!("'{}': {why}", name.escape_debug())));
    if name.is_empty() || name.len() > MAX_NAME {
        return refuse("empty or too long a name");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
    {
        return refuse("characters outside the served namespace");
    }
    let p = Path::new(name);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => out.push(part),
            Component::RootDir => return refuse("absolute path"),
            _ => return refuse("path outside the served directory"),
        }
    }
    if out.as_os_str().is_empty() {
        return refuse("empty name");
    }
    Ok(out)
}
