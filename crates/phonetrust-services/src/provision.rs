//! What phones download, by name: the namespace TFTP and HTTP both serve.
//!
//! - `ITLFile.tlv`, `ITLSEP<MAC>.tlv`: this node's ITL, built from the identity and signed
//!   with the CallManager certificate (or the ITLRecovery certificate after `utils itl
//!   reset localkey`), rebuilt when an own certificate or the signer setting changes.
//! - `CTLFile.tlv`, `CTLSEP<MAC>.tlv`: the cluster CTL when one exists (kept in the
//!   database with Cluster Security Mode: [`phonetrust_store::ctlfile`]).
//! - `SEP<MAC>.cnf.xml` (profiles without encrypted config), `SEP<MAC>.cnf.xml.sgn`
//!   (signed; the partial config for encrypted profiles), `SEP<MAC>.cnf.xml.enc.sgn`
//!   (encrypted to the phone's recorded certificate once CAPF has it).
//! - Anything else: a file of the static directory (firmware, ringtones), by a strictly
//!   checked relative name. Unknown phones, traversal and absolute names: "File not found".
//!
//! Content is generated from the store and cached: the ITL until what it lists changes, a
//! signed or encrypted config until the XML it carries (or the phone's certificate)
//! changes. A background refresh (every second) notices changes other processes make.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openssl::x509::X509;
use phonetrust_pki::profiles::OwnCert;
use phonetrust_proto::clock::unix_now;
use phonetrust_proto::devconfig::{DeviceConfig, NodeRef};
use phonetrust_proto::enccnf::{self, PartialConfig};
use phonetrust_proto::rand::OsRandom;
use phonetrust_proto::tlv::HashAlg;
use phonetrust_store::Db;
use phonetrust_store::identity::{self, Identity};
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::{AuthMode, DeviceCertKind, SecurityMode, SecurityProfile};
use phonetrust_store::params;
use tokio::sync::RwLock;

/// Biggest static file served.
pub const MAX_STATIC_FILE: u64 = 256 * 1024 * 1024;
/// Most signed configs kept in the cache.
const MAX_CACHED_CONFIGS: usize = 50_000;

/// Why a name is not served. Phones only ever see "File not found"; the reason goes to
/// the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotServed {
    /// Nothing by that name (the reason says why).
    #[error("File not found: {0}")]
    NotFound(String),
    /// Generating the file failed (logged as an error; the phone gets "File not found").
    #[error("cannot generate {0}: {1}")]
    Internal(String, String),
}

/// Settings of the provisioning namespace.
#[derive(Clone, Debug)]
pub struct ProvisionConfig {
    /// Static files (firmware, ringtones), served by relative name.
    pub static_dir: PathBuf,
    /// How often changes by other processes are looked for.
    pub refresh: Duration,
}

/// The node facts files are generated from, refreshed in the background.
struct Snapshot {
    /// Changes whenever the identity files or the settings change.
    generation: u64,
    identity: Arc<Identity>,
    /// The CallManager certificate's host name.
    host: String,
    /// [`identity::files_fingerprint`] of the files `identity` was loaded from.
    fingerprint: u64,
    settings: Settings,
    profiles: HashMap<String, SecurityProfile>,
    itl: Option<Arc<[u8]>>,
    /// The stored CTL (its SHA-256 and bytes), taken over on every refresh.
    ctl: Option<(String, Arc<[u8]>)>,
}

/// The enterprise parameters the files depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Settings {
    capf_port: u16,
    tvs_port: u16,
    recovery_signed: bool,
}

/// A cached signed or encrypted config: valid while `key` matches.
struct Cached {
    key: Vec<u8>,
    bytes: Arc<[u8]>,
}

/// The namespace.
pub struct Provisioning {
    db: Db,
    data: DataDir,
    cfg: ProvisionConfig,
    snap: RwLock<Snapshot>,
    configs: std::sync::Mutex<HashMap<String, Cached>>,
}

/// What a requested name means.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Itl,
    Ctl,
    Config,
    SignedConfig,
    EncryptedConfig,
    Static,
}

/// `SEP<MAC>` of a per-device name, upper-case, with what is asked for.
fn classify(name: &str) -> (Kind, Option<String>) {
    // Phones ask with upper-case `SEP`; the MAC in either case.
    let sep = |s: &str| -> Option<String> {
        s.starts_with("SEP")
            .then(|| phonetrust_proto::device::DeviceName::parse(s).ok())
            .flatten()
            .map(String::from)
    };
    if name == "ITLFile.tlv" {
        return (Kind::Itl, None);
    }
    if name == "CTLFile.tlv" {
        return (Kind::Ctl, None);
    }
    if let Some(d) = name
        .strip_prefix("ITL")
        .and_then(|r| r.strip_suffix(".tlv"))
        .and_then(sep)
    {
        return (Kind::Itl, Some(d));
    }
    if let Some(d) = name
        .strip_prefix("CTL")
        .and_then(|r| r.strip_suffix(".tlv"))
        .and_then(sep)
    {
        return (Kind::Ctl, Some(d));
    }
    for (suffix, kind) in [
        (".cnf.xml.enc.sgn", Kind::EncryptedConfig),
        (".cnf.xml.sgn", Kind::SignedConfig),
        (".cnf.xml", Kind::Config),
    ] {
        if let Some(d) = name.strip_suffix(suffix).and_then(sep) {
            return (kind, Some(d));
        }
    }
    (Kind::Static, None)
}

use phonetrust_rules::names::{MAX_NAME, RefusedName, static_path};
use phonetrust_rules::trustlists::served_itl;

impl From<RefusedName> for NotServed {
    fn from(e: RefusedName) -> Self {
        Self::NotFound(e.0)
    }
}

impl Provisioning {
    /// The namespace of the node in `data` (reads the identity and parameters now).
    pub async fn new(db: Db, data: DataDir, cfg: ProvisionConfig) -> Result<Arc<Self>, String> {
        let (identity, host, fingerprint) = load_identity(&data)?;
        let (settings, profiles) = read_settings(&db).await?;
        let ctl = read_ctl(&db, None).await?.flatten();
        let snap = Snapshot {
            generation: 0,
            identity,
            host,
            fingerprint,
            settings,
            profiles,
            itl: None,
            ctl,
        };
        Ok(Arc::new(Self {
            db,
            data,
            cfg,
            snap: RwLock::new(snap),
            configs: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// Look for changes every `refresh` until the task is dropped; after a change, sign
    /// everything ahead again ([`Provisioning::warm`]).
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.cfg.refresh).await;
            match self.refresh(false).await {
                Ok(true) => {
                    tokio::spawn(self.clone().warm());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "provisioning: refresh failed"),
            }
        }
    }

    /// Read the settings and profiles, and the identity when its files changed (or
    /// `force`); true when the files served change (a new generation, ITL dropped).
    /// Profiles are always taken over: configs are cached by their XML, so a changed
    /// profile gives new XML by itself.
    async fn refresh(&self, force: bool) -> Result<bool, String> {
        let (settings, profiles) = read_settings(&self.db).await?;
        let fp = identity::files_fingerprint(&self.data);
        let identity = if force || fp != self.snap.read().await.fingerprint {
            Some(load_identity(&self.data)?)
        } else {
            None
        };
        let known = self.snap.read().await.ctl.as_ref().map(|c| c.0.clone());
        let ctl = read_ctl(&self.db, known.as_deref()).await?;
        let mut cur = self.snap.write().await;
        cur.profiles = profiles;
        if let Some(ctl) = ctl {
            cur.ctl = ctl;
        }
        if identity.is_none() && settings == cur.settings {
            return Ok(false);
        }
        if let Some((id, host, fingerprint)) = identity {
            cur.identity = id;
            cur.host = host;
            cur.fingerprint = fingerprint;
        }
        cur.settings = settings;
        cur.itl = None;
        cur.generation += 1;
        tracing::info!(
            generation = cur.generation,
            recovery_signed = settings.recovery_signed,
            "provisioning: identity or parameters changed; ITL rebuilt on next request"
        );
        Ok(true)
    }

    /// Build the ITL and sign every phone's config ahead of the phones (at start and after
    /// a change of signer or parameters), so a boot storm finds them ready — as a
    /// regenerated CallManager certificate resets every phone at once. Two workers.
    pub async fn warm(self: Arc<Self>) {
        let start = std::time::Instant::now();
        let _ = self.itl().await;
        let names = match self.db.device_names().await {
            Ok(n) => n,
            Err(e) => return tracing::warn!(error = %e, "provisioning: warm-up skipped"),
        };
        let total = names.len();
        let names = Arc::new(std::sync::Mutex::new(names));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (me, names) = (self.clone(), names.clone());
            workers.spawn(async move {
                loop {
                    let next = names.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some(name) = next else { break };
                    let _ = me.open(&format!("{name}.cnf.xml.sgn")).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
        tracing::info!(
            phones = total,
            ms = start.elapsed().as_millis() as u64,
            "provisioning: ITL and configs prepared"
        );
    }

    /// Force a refresh now (after a change made in this process).
    pub async fn refresh_now(&self) -> Result<(), String> {
        self.refresh(true).await.map(|_| ())
    }

    /// The static directory.
    pub fn static_dir(&self) -> &Path {
        &self.cfg.static_dir
    }

    /// The bytes served as `name`.
    pub async fn open(&self, name: &str) -> Result<Arc<[u8]>, NotServed> {
        if name.len() > MAX_NAME {
            return Err(NotServed::NotFound("name too long".into()));
        }
        let (kind, device) = classify(name);
        match (kind, device) {
            (Kind::Itl, dev) => {
                if let Some(d) = &dev {
                    self.known(d).await?;
                }
                self.itl().await
            }
            (Kind::Ctl, dev) => {
                if let Some(d) = &dev {
                    self.known(d).await?;
                }
                let ctl = self.snap.read().await.ctl.as_ref().map(|c| c.1.clone());
                ctl.ok_or_else(|| {
                    NotServed::NotFound(
                        "no CTL: the cluster is not in mixed mode (`phonetrust utils ctl set-cluster mixed-mode`)".into(),
                    )
                })
            }
            (Kind::Static, _) => {
                let rel = static_path(name)?;
                self.read_static(&rel).await
            }
            (kind, Some(device)) => self.config(kind, &device).await,
            (_, None) => Err(NotServed::NotFound(name.into())),
        }
    }

    async fn known(&self, device: &str) -> Result<phonetrust_store::model::Device, NotServed> {
        match self.db.device(device).await {
            Ok(d) => Ok(d),
            Err(phonetrust_store::StoreError::NotFound(_)) => Err(NotServed::NotFound(format!(
                "unknown phone {device} (auto-registration is off: `phonetrust phone add {device}`)"
            ))),
            Err(e) => Err(NotServed::Internal(device.into(), e.to_string())),
        }
    }

    async fn read_static(&self, rel: &Path) -> Result<Arc<[u8]>, NotServed> {
        let path = self.cfg.static_dir.join(rel);
        let nf = |why: String| NotServed::NotFound(format!("{}: {why}", rel.display()));
        let meta = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| nf(e.to_string()))?;
        if !meta.is_file() {
            return Err(nf("not a regular file".into()));
        }
        if meta.len() > MAX_STATIC_FILE {
            return Err(nf(format!("over the {MAX_STATIC_FILE}-byte limit")));
        }
        tokio::fs::read(&path)
            .await
            .map(Arc::from)
            .map_err(|e| nf(e.to_string()))
    }

    async fn itl(&self) -> Result<Arc<[u8]>, NotServed> {
        if let Some(b) = self.snap.read().await.itl.clone() {
            return Ok(b);
        }
        let mut s = self.snap.write().await;
        if let Some(b) = s.itl.clone() {
            return Ok(b);
        }
        let now = u32::try_from(unix_now()).unwrap_or(u32::MAX);
        // The stored ITL while it lists the current certificates: `show itl` prints the
        // same bytes.
        let stored = served_itl(
            &self.db,
            &s.host,
            &s.identity,
            s.settings.recovery_signed,
            now,
        )
        .await
        .map_err(|e| NotServed::Internal("ITLFile.tlv".into(), e))?;
        tracing::info!(
            bytes = stored.bytes.len(),
            sha256 = stored.sha256,
            built_at = stored.updated_at,
            signer = if s.settings.recovery_signed {
                "ITLRecovery"
            } else {
                "CallManager"
            },
            "provisioning: ITL ready"
        );
        let b: Arc<[u8]> = Arc::from(stored.bytes);
        s.itl = Some(b.clone());
        Ok(b)
    }

    /// The full configuration XML of `device` and whether its profile encrypts it.
    pub async fn config_xml(
        &self,
        device: &str,
    ) -> Result<(String, bool, Option<String>), NotServed> {
        let d = self.known(device).await?;
        let s = self.snap.read().await;
        let profile = s.profiles.get(&d.profile).ok_or_else(|| {
            NotServed::Internal(device.into(), format!("unknown profile {}", d.profile))
        })?;
        let mode = match profile.mode {
            SecurityMode::NonSecure => 1,
            SecurityMode::Authenticated => 2,
            SecurityMode::Encrypted => 3,
        };
        let cfg = DeviceConfig {
            protocol: d.protocol.as_str().to_ascii_uppercase(),
            device_security_mode: mode,
            transport_layer_protocol: if mode == 1 { 2 } else { 4 },
            ip_address_mode: 0,
            load_information: String::new(),
            capf_auth_mode: match d.capf.auth_mode {
                AuthMode::NullString => 0,
                AuthMode::AuthString => 1,
                AuthMode::Lsc => 2,
                AuthMode::Mic => 3,
            },
            capf: (s.host.clone(), s.settings.capf_port),
            call_managers: vec![NodeRef {
                host: s.host.clone(),
            }],
            tvs: vec![NodeRef {
                host: s.host.clone(),
            }],
            tvs_port: s.settings.tvs_port,
            cert_hash: d.md5hash.clone().unwrap_or_default(),
            encr_config: profile.encrypted_config,
        };
        Ok((cfg.to_xml(), profile.encrypted_config, d.md5hash))
    }

    async fn config(&self, kind: Kind, device: &str) -> Result<Arc<[u8]>, NotServed> {
        let (xml, encrypted, md5) = self.config_xml(device).await?;
        let plain_name = format!("{device}.cnf.xml");
        let (signer, sgen) = {
            let s = self.snap.read().await;
            (s.identity.get(OwnCert::CallManager).cloned(), s.generation)
        };
        let signer = signer.ok_or_else(|| {
            NotServed::Internal(device.into(), "no CallManager certificate".into())
        })?;
        let now = u32::try_from(unix_now()).unwrap_or(u32::MAX);
        match kind {
            Kind::Config if encrypted => Err(NotServed::NotFound(format!(
                "{plain_name}: the phone's profile encrypts its config (ask for .cnf.xml.sgn)"
            ))),
            Kind::Config => Ok(Arc::from(xml.into_bytes())),
            Kind::SignedConfig => {
                let body = if encrypted {
                    let mut p = PartialConfig::from_full_config(xml.as_bytes(), None)
                        .map_err(|e| NotServed::Internal(device.into(), e.to_string()))?;
                    p.cert_hash = md5.unwrap_or_default();
                    p.to_xml()
                } else {
                    xml
                };
                let key = cache_key(&[body.as_bytes(), &sgen.to_be_bytes()]);
                self.cached(format!("{plain_name}.sgn"), key, || {
                    phonetrust_proto::sgn::sign(
                        &plain_name,
                        body.as_bytes(),
                        &signer,
                        HashAlg::Sha1,
                        now,
                    )
                    .map_err(|e| e.to_string())
                })
            }
            Kind::EncryptedConfig => {
                if !encrypted {
                    return Err(NotServed::NotFound(format!(
                        "{plain_name}.enc.sgn: the phone's profile does not encrypt its config"
                    )));
                }
                let cert = self.phone_cert(device).await?.ok_or_else(|| {
                    NotServed::NotFound(format!(
                        "{plain_name}.enc.sgn: CAPF has no certificate of {device} yet (the phone gets the partial config until it enrolls)"
                    ))
                })?;
                let rsa = cert
                    .public_key()
                    .map(|k| k.id() == openssl::pkey::Id::RSA)
                    .unwrap_or(false);
                if !rsa {
                    return Err(NotServed::Internal(
                        format!("{plain_name}.enc.sgn"),
                        format!(
                            "{device}'s certificate has no RSA key, and an encrypted config is encrypted to an RSA key: schedule Install/Upgrade with key order rsa (`phonetrust phone capf {device} --operation install --key-order rsa`), or give the phone a profile without encrypted config"
                        ),
                    ));
                }
                let der = cert.to_der().unwrap_or_default();
                let key = cache_key(&[xml.as_bytes(), &der, &sgen.to_be_bytes()]);
                self.cached(format!("{plain_name}.enc.sgn"), key, || {
                    enccnf::encrypt(
                        &plain_name,
                        xml.as_bytes(),
                        &cert,
                        &signer,
                        HashAlg::Sha1,
                        now,
                        &OsRandom,
                    )
                    .map_err(|e| e.to_string())
                })
            }
            _ => Err(NotServed::NotFound(plain_name)),
        }
    }

    /// The certificate CAPF recorded for the phone: its LSC, else its MIC.
    async fn phone_cert(&self, device: &str) -> Result<Option<X509>, NotServed> {
        let certs = self
            .db
            .device_certs(device)
            .await
            .map_err(|e| NotServed::Internal(device.into(), e.to_string()))?;
        let pick = certs
            .iter()
            .find(|c| c.kind == DeviceCertKind::Lsc)
            .or_else(|| certs.iter().find(|c| c.kind == DeviceCertKind::Mic));
        match pick {
            None => Ok(None),
            Some(c) => X509::from_pem(c.pem.as_bytes())
                .map(Some)
                .map_err(|e| NotServed::Internal(device.into(), e.to_string())),
        }
    }

    fn cached(
        &self,
        name: String,
        key: Vec<u8>,
        make: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Arc<[u8]>, NotServed> {
        {
            let c = self.configs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = c.get(&name).filter(|h| h.key == key) {
                return Ok(hit.bytes.clone());
            }
        }
        let bytes: Arc<[u8]> = Arc::from(make().map_err(|e| NotServed::Internal(name.clone(), e))?);
        let mut c = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= MAX_CACHED_CONFIGS {
            c.clear();
        }
        c.insert(
            name,
            Cached {
                key,
                bytes: bytes.clone(),
            },
        );
        Ok(bytes)
    }
}

fn cache_key(parts: &[&[u8]]) -> Vec<u8> {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&(p.len() as u64).to_be_bytes());
        all.extend_from_slice(p);
    }
    phonetrust_proto::cert::sha256(&all)
}

/// The identity in `data`, its host name and the fingerprint of its files.
fn load_identity(data: &DataDir) -> Result<(Arc<Identity>, String, u64), String> {
    let fingerprint = identity::files_fingerprint(data);
    let id = identity::load(data).map_err(|e| e.to_string())?;
    let host = id
        .node()
        .map(|n| n.host)
        .ok_or("the identity has no CallManager certificate")?;
    Ok((Arc::new(id), host, fingerprint))
}

/// The parameters files depend on, and the security profiles by name.
async fn read_settings(db: &Db) -> Result<(Settings, HashMap<String, SecurityProfile>), String> {
    let p: HashMap<&str, i64> = db
        .params()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(d, v)| (d.name, v))
        .collect();
    let ports = params::PhonePorts::from_values(&p);
    let settings = Settings {
        capf_port: ports.capf,
        tvs_port: ports.tvs,
        recovery_signed: p.get(params::ITL_SIGNER).copied().unwrap_or(0) == 1,
    };
    let profiles = db
        .profiles()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    Ok((settings, profiles))
}

/// The stored CTL when it differs from the one whose SHA-256 is `known`: `None` when
/// unchanged, `Some(None)` when there is none.
async fn read_ctl(
    db: &Db,
    known: Option<&str>,
) -> Result<Option<Option<(String, Arc<[u8]>)>>, String> {
    let stamp = db.ctl_stamp().await.map_err(|e| e.to_string())?;
    if stamp.as_ref().map(|s| s.0.as_str()) == known {
        return Ok(None);
    }
    let ctl = db.ctl().await.map_err(|e| e.to_string())?;
    Ok(Some(ctl.map(|c| (c.sha256, Arc::from(c.bytes)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        assert_eq!(classify("ITLFile.tlv"), (Kind::Itl, None));
        assert_eq!(
            classify("ITLSEP0011aabbccdd.tlv"),
            (Kind::Itl, Some("SEP0011AABBCCDD".into()))
        );
        assert_eq!(
            classify("SEP001122334455.cnf.xml.enc.sgn"),
            (Kind::EncryptedConfig, Some("SEP001122334455".into()))
        );
        assert_eq!(
            classify("SEP001122334455.cnf.xml.sgn").0,
            Kind::SignedConfig
        );
        assert_eq!(classify("SEP001122334455.cnf.xml").0, Kind::Config);
        assert_eq!(classify("SEP0011223344.cnf.xml").0, Kind::Static);
        assert_eq!(classify("CTLSEP001122334455.tlv").0, Kind::Ctl);
    }

    #[test]
    fn static_names_cannot_leave_the_directory() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "firmware/../../x",
            ".hidden",
            "a/.ssh/id",
            "a\\b",
            "",
            "a//b\0",
            "é",
        ] {
            assert!(static_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            static_path("firmware/sip88xx.14-1-1.loads").unwrap(),
            PathBuf::from("firmware/sip88xx.14-1-1.loads")
        );
        assert!(static_path(&"a".repeat(MAX_NAME + 1)).is_err());
    }
}
