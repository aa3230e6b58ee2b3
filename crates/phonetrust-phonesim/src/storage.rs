//! A simulated phone's flash: one directory per phone (`<dir>/SEP<MAC>/`) holding what a
//! phone keeps across reboots: `model`, `mic.pem`/`mic.key` (factory), `lsc.pem`/`lsc.key`
//! (installed by CAPF), the trust lists `ITLFile.tlv` and `CTLFile.tlv`, `tvs` (the TVS
//! servers of the last configuration, `host port` per line) and `status.log` (the Status
//! Messages screen, one line each).
//! Private keys are written with mode 0600; every file is replaced atomically.
//!
//! The manufacturer CA of the simulated factory lives beside the phones as
//! `manufacturer-ca.pem`/`manufacturer-ca.key`.

use std::io::Write;
use std::path::{Path, PathBuf};

use openssl::pkey::PKey;
use openssl::x509::X509;
use phonetrust_proto::cert::CertAndKey;

use crate::SimPhone;

/// Biggest file read back from a phone directory.
const MAX_FILE: u64 = 1 << 20;

/// What went wrong with a phone directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Reading or writing a file.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A stored certificate or key does not parse, or they do not match.
    #[error("{0}: {1}")]
    Damaged(PathBuf, String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::Io(p.to_path_buf(), e)
}

/// Write `bytes` to `path` atomically (temporary file, sync, rename) with `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let r = (|| {
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn read_capped(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::Io(path.to_path_buf(), e)),
        Ok(m) if m.len() > MAX_FILE => {
            return Err(StorageError::Damaged(
                path.to_path_buf(),
                format!("{} bytes is over the {MAX_FILE}-byte cap", m.len()),
            ));
        }
        Ok(_) => {}
    }
    std::fs::read(path).map(Some).map_err(io(path))
}

/// Write a certificate and its key as `<stem>.pem` (0644) and `<stem>.key` (0600).
pub fn save_pair(dir: &Path, stem: &str, ck: &CertAndKey) -> Result<(), StorageError> {
    let key_path = dir.join(format!("{stem}.key"));
    let key = ck
        .key
        .private_key_to_pem_pkcs8()
        .map_err(|e| StorageError::Damaged(key_path.clone(), e.to_string()))?;
    write_file(&key_path, &key, 0o600)?;
    let cert_path = dir.join(format!("{stem}.pem"));
    let pem = ck
        .cert
        .to_pem()
        .map_err(|e| StorageError::Damaged(cert_path.clone(), e.to_string()))?;
    write_file(&cert_path, &pem, 0o644)
}

/// Read `<stem>.pem` and `<stem>.key`; `None` when the certificate is absent.
pub fn load_pair(dir: &Path, stem: &str) -> Result<Option<CertAndKey>, StorageError> {
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    let Some(pem) = read_capped(&cert_path)? else {
        return Ok(None);
    };
    let Some(key) = read_capped(&key_path)? else {
        return Err(StorageError::Damaged(
            key_path,
            "certificate present but its key is missing".into(),
        ));
    };
    let cert = X509::from_pem(&pem)
        .map_err(|e| StorageError::Damaged(cert_path.clone(), e.to_string()))?;
    let key = PKey::private_key_from_pem(&key)
        .map_err(|e| StorageError::Damaged(key_path.clone(), e.to_string()))?;
    CertAndKey::new(cert, key)
        .map(Some)
        .map_err(|e| StorageError::Damaged(cert_path, e.to_string()))
}

fn remove(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io(path.into(), e)),
        _ => Ok(()),
    }
}

impl SimPhone {
    /// The directory of `device` under `dir`.
    pub fn dir_of(dir: &Path, device: &str) -> PathBuf {
        dir.join(device)
    }

    /// Load phone `SEP<mac>` from `dir`, or a new phone of `model` when it has never been
    /// saved (a new phone gets a MIC from `factory` when one is given).
    pub fn load_or_new(
        dir: &Path,
        mac: &str,
        model: &str,
        factory: Option<&crate::Factory>,
    ) -> Result<Self, StorageError> {
        let mut phone = SimPhone::new(mac, model);
        let pdir = Self::dir_of(dir, &phone.state.device);
        if let Some(m) = read_capped(&pdir.join("model"))? {
            phone.model = String::from_utf8_lossy(&m).trim().to_string();
            phone.state.mic = load_pair(&pdir, "mic")?;
            phone.state.lsc = load_pair(&pdir, "lsc")?;
            phone.itl = read_capped(&pdir.join("ITLFile.tlv"))?;
            phone.ctl = read_capped(&pdir.join("CTLFile.tlv"))?;
            if let Some(t) = read_capped(&pdir.join("tvs"))? {
                phone.tvs_servers = String::from_utf8_lossy(&t)
                    .lines()
                    .filter_map(|l| {
                        let (h, p) = l.rsplit_once(' ')?;
                        Some((h.to_string(), p.parse().ok()?))
                    })
                    .collect();
            }
            if let Some(c) = read_capped(&pdir.join("capf"))? {
                phone.capf_server = String::from_utf8_lossy(&c)
                    .trim()
                    .rsplit_once(' ')
                    .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)));
            }
            if let Some(m) = read_capped(&pdir.join("capfAuthMode"))? {
                phone.capf_auth_mode = String::from_utf8_lossy(&m).trim().parse().ok();
            }
            if let Some(log) = read_capped(&pdir.join("status.log"))? {
                phone.status_messages = String::from_utf8_lossy(&log)
                    .lines()
                    .map(str::to_string)
                    .collect();
            }
        } else if let Some(f) = factory {
            let key = f
                .mic_key()
                .map_err(|e| StorageError::Damaged(pdir.clone(), e))?;
            let mic = crate::mic(f.ca(), model, &phone.state.device, &key)
                .map_err(|e| StorageError::Damaged(pdir.clone(), e))?;
            phone.state.mic = Some(mic);
        }
        Ok(phone)
    }

    /// Save the phone's flash under `dir` (its own subdirectory).
    pub fn save(&self, dir: &Path) -> Result<(), StorageError> {
        let pdir = Self::dir_of(dir, &self.state.device);
        std::fs::create_dir_all(&pdir).map_err(io(&pdir))?;
        write_file(&pdir.join("model"), self.model.as_bytes(), 0o644)?;
        match &self.state.mic {
            Some(m) => save_pair(&pdir, "mic", m)?,
            None => {
                remove(&pdir.join("mic.pem"))?;
                remove(&pdir.join("mic.key"))?;
            }
        }
        match &self.state.lsc {
            Some(l) => save_pair(&pdir, "lsc", l)?,
            None => {
                remove(&pdir.join("lsc.pem"))?;
                remove(&pdir.join("lsc.key"))?;
            }
        }
        match &self.itl {
            Some(b) => write_file(&pdir.join("ITLFile.tlv"), b, 0o644)?,
            None => remove(&pdir.join("ITLFile.tlv"))?,
        }
        match &self.ctl {
            Some(b) => write_file(&pdir.join("CTLFile.tlv"), b, 0o644)?,
            None => remove(&pdir.join("CTLFile.tlv"))?,
        }
        let tvs: String = self
            .tvs_servers
            .iter()
            .map(|(h, p)| format!("{h} {p}\n"))
            .collect();
        write_file(&pdir.join("tvs"), tvs.as_bytes(), 0o644)?;
        match &self.capf_server {
            Some((h, p)) => write_file(&pdir.join("capf"), format!("{h} {p}\n").as_bytes(), 0o644)?,
            None => remove(&pdir.join("capf"))?,
        }
        match self.capf_auth_mode {
            Some(m) => write_file(&pdir.join("capfAuthMode"), m.to_string().as_bytes(), 0o644)?,
            None => remove(&pdir.join("capfAuthMode"))?,
        }
        let mut log = self.status_messages.join("\n");
        log.push('\n');
        write_file(&pdir.join("status.log"), log.as_bytes(), 0o644)
    }
}

/// The simulated factory's CA under `dir`, made on first use.
pub fn manufacturer_ca_in(dir: &Path) -> Result<(CertAndKey, bool), StorageError> {
    if let Some(ca) = load_pair(dir, "manufacturer-ca")? {
        return Ok((ca, false));
    }
    let ca = crate::manufacturer_ca("Example Phones Manufacturing CA")
        .map_err(|e| StorageError::Damaged(dir.to_path_buf(), e))?;
    save_pair(dir, "manufacturer-ca", &ca)?;
    Ok((ca, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_keeps_its_flash_across_reboots() {
        let tmp = phonetrust_testsupport::tempdir("phonesim-storage");
        let dir = tmp.path().join("phones");
        let (ca, made) = manufacturer_ca_in(&dir).unwrap();
        assert!(made);
        let (again, made) = manufacturer_ca_in(&dir).unwrap();
        assert!(!made);
        assert_eq!(again.cert.to_der().unwrap(), ca.cert.to_der().unwrap());

        let factory = crate::Factory::new(ca.clone());
        let mut p = SimPhone::load_or_new(&dir, "00aabbccddee", "8845", Some(&factory)).unwrap();
        assert_eq!(p.state.device, "SEP00AABBCCDDEE");
        let mic = p.state.mic.clone().unwrap();
        p.status_messages.push("LSC: Connection failed".into());
        p.capf_auth_mode = Some(2);
        p.capf_server = Some(("cucm.example.com".into(), 23804));
        p.save(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(dir.join("SEP00AABBCCDDEE/mic.key")).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        let q = SimPhone::load_or_new(&dir, "00AABBCCDDEE", "7975", None).unwrap();
        assert_eq!(q.model, "8845", "the stored model wins");
        assert_eq!(
            q.state.mic.unwrap().cert.to_der().unwrap(),
            mic.cert.to_der().unwrap()
        );
        assert!(q.state.lsc.is_none());
        assert_eq!(q.status_messages, ["LSC: Connection failed"]);
        assert_eq!(
            q.capf_auth_mode,
            Some(2),
            "the configured CAPF authentication mode"
        );
        assert_eq!(
            q.capf_server,
            Some(("cucm.example.com".into(), 23804)),
            "the configured CAPF server and phone port"
        );

        // A damaged file is reported, not ignored.
        std::fs::write(dir.join("SEP00AABBCCDDEE/mic.pem"), b"garbage").unwrap();
        let e = SimPhone::load_or_new(&dir, "00AABBCCDDEE", "8845", None).unwrap_err();
        assert!(e.to_string().contains("mic.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// New phones take their MIC keys from the factory's pool: a few keys for any number
    /// of phones, each MIC still its own certificate for its own phone.
    #[test]
    fn new_phones_reuse_the_factory_key_pool() {
        let tmp = phonetrust_testsupport::tempdir("phonesim-factory");
        let dir = tmp.join("phones");
        let (ca, _) = manufacturer_ca_in(&dir).unwrap();
        let factory = crate::Factory::with_pool(ca, 2);
        let mut keys = std::collections::HashSet::new();
        let mut serials = std::collections::HashSet::new();
        for i in 0..6 {
            let p =
                SimPhone::load_or_new(&dir, &format!("0000000000{i:02X}"), "8845", Some(&factory))
                    .unwrap();
            let mic = p.state.mic.unwrap();
            keys.insert(mic.cert.public_key().unwrap().public_key_to_der().unwrap());
            serials.insert(mic.cert.serial_number().to_bn().unwrap().to_vec());
            assert!(
                phonetrust_proto::cert::name_string(mic.cert.subject_name())
                    .contains(&format!("SEP0000000000{i:02X}")),
                "the MIC names its phone"
            );
        }
        assert_eq!(keys.len(), 2, "two keys for six phones");
        assert_eq!(serials.len(), 6, "six certificates");
        // A factory without a pool makes a key per phone.
        let (ca, _) = manufacturer_ca_in(&dir).unwrap();
        let fresh = crate::Factory::with_pool(ca, 0);
        let a = SimPhone::load_or_new(&dir, "0000000001AA", "8845", Some(&fresh)).unwrap();
        let b = SimPhone::load_or_new(&dir, "0000000001AB", "8845", Some(&fresh)).unwrap();
        assert_ne!(
            a.state
                .mic
                .unwrap()
                .cert
                .public_key()
                .unwrap()
                .public_key_to_der()
                .unwrap(),
            b.state
                .mic
                .unwrap()
                .cert
                .public_key()
                .unwrap()
                .public_key_to_der()
                .unwrap()
        );
    }
}
