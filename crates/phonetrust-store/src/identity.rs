//! The node's own certificates and keys on disk.

use std::path::Path;

use phonetrust_pki::profiles::{NodeIdentity, OwnCert, own_cert};
use phonetrust_pki::{DistinguishedName, generate_key, self_signed};
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::codec::hex;
use phonetrust_proto::rand::RandomSource;

use crate::layout::DataDir;
use crate::{StoreError, io};

/// Every own certificate of a node.
#[derive(Clone, Debug)]
pub struct Identity {
    certs: Vec<(OwnCert, CertAndKey)>,
}

impl Identity {
    /// One own certificate with its key.
    pub fn get(&self, which: OwnCert) -> Option<&CertAndKey> {
        self.certs.iter().find(|(w, _)| *w == which).map(|(_, c)| c)
    }

    /// All of them, in [`OwnCert::ALL`] order.
    pub fn all(&self) -> impl Iterator<Item = (OwnCert, &CertAndKey)> {
        self.certs.iter().map(|(w, c)| (*w, c))
    }

    /// Host and organisation, as recorded in the CallManager certificate.
    pub fn node(&self) -> Option<NodeIdentity> {
        let cm = self.get(OwnCert::CallManager)?;
        let dn = DistinguishedName::from_x509_name(cm.cert.subject_name());
        Some(NodeIdentity::new(dn.cn.clone(), dn))
    }
}

/// True when `data` holds an identity.
pub fn exists(data: &DataDir) -> bool {
    data.identity_dir().is_dir()
}

fn pem_of(ck: &CertAndKey) -> Result<Vec<u8>, StoreError> {
    let mut pem = ck.cert.to_pem()?;
    pem.extend_from_slice(&ck.key.private_key_to_pem_pkcs8()?);
    Ok(pem)
}

/// Write `bytes` to `path` with mode 0600, atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::write_atomic(path, bytes, 0o600)
}

fn make_own(
    which: OwnCert,
    node: &NodeIdentity,
    capf_tag: &str,
    now: i64,
    rng: &dyn RandomSource,
) -> Result<CertAndKey, StoreError> {
    let (params, spec) = own_cert(which, node, capf_tag, now);
    let key = generate_key(spec)?;
    let cert = self_signed(&params, &key, rng)?;
    CertAndKey::new(cert, key).map_err(|e| StoreError::Pki(e.into()))
}

/// Remove what an interrupted write left in the data directory and the identity
/// directory (temporary files that may hold private keys); returns what was removed.
pub fn remove_leftovers(data: &DataDir) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let mut out = crate::remove_stale_temp_files(data.root())?;
    out.extend(crate::remove_stale_temp_files(&data.identity_dir())?);
    Ok(out)
}

/// Create the identity of a fresh node (every own certificate), as one step: built in a
/// temporary directory, then renamed into place.
pub fn create(
    data: &DataDir,
    node: &NodeIdentity,
    now: i64,
    rng: &dyn RandomSource,
) -> Result<Identity, StoreError> {
    let dir = data.identity_dir();
    if dir.exists() {
        return Err(StoreError::AlreadyInitialised(data.root().to_path_buf()));
    }
    data.secure()?;
    let tmp = data.root().join(crate::temp_name("identity"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).map_err(io(&tmp))?;
    }
    let mut tag = [0u8; 4];
    rng.fill(&mut tag)?;
    let capf_tag = hex(&tag);
    let result = (|| {
        let mut certs = Vec::new();
        for which in OwnCert::ALL {
            let ck = make_own(which, node, &capf_tag, now, rng)?;
            write_private(&tmp.join(format!("{}.pem", which.name())), &pem_of(&ck)?)?;
            tracing::info!(cert = which.name(), "created own certificate");
            certs.push((which, ck));
        }
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        Ok(Identity { certs })
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// A fingerprint of the identity files (names, sizes, modification times): cheap to take
/// every second, it changes whenever a certificate or key is replaced. The services
/// reload the identity only when it does.
pub fn files_fingerprint(data: &DataDir) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(rd) = std::fs::read_dir(data.identity_dir()) {
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            e.file_name().hash(&mut h);
            if let Ok(m) = e.metadata() {
                m.len().hash(&mut h);
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Load the identity.
pub fn load(data: &DataDir) -> Result<Identity, StoreError> {
    if !exists(data) {
        return Err(StoreError::NotInitialised(data.root().to_path_buf()));
    }
    let mut certs = Vec::new();
    for which in OwnCert::ALL {
        let path = data.own_cert(which);
        keep_private(&path)?;
        let pem = std::fs::read(&path).map_err(io(&path))?;
        let ck = CertAndKey::from_pem(&pem).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        certs.push((which, ck));
    }
    Ok(Identity { certs })
}

/// A private key readable by group or others (copied with the wrong umask, restored
/// from a backup) is made 0600 again, with a warning naming the file.
fn keep_private(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
        tracing::warn!(file = %path.display(), was = format!("{:o}", mode & 0o777), "a private key was readable by others: now 0600 (check who could read it, and regenerate the certificate if that was anyone but this node's account)");
    }
    Ok(())
}

/// Replace one own certificate and key (atomically).
pub fn replace(data: &DataDir, which: OwnCert, ck: &CertAndKey) -> Result<(), StoreError> {
    replace_with_chain(data, which, ck, &[])
}

/// Replace one own certificate and key, with the certificates of its issuing chain after
/// the key (atomically: one file, renamed into place).
pub fn replace_with_chain(
    data: &DataDir,
    which: OwnCert,
    ck: &CertAndKey,
    chain: &[openssl::x509::X509],
) -> Result<(), StoreError> {
    let mut pem = pem_of(ck)?;
    for c in chain {
        pem.extend_from_slice(&c.to_pem()?);
    }
    write_private(&data.own_cert(which), &pem)
}
