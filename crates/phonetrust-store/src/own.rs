//! Operations on the node's own certificates: regenerate (self-signed), generate a CSR,
//! import the CA-signed certificate for a pending CSR, and the expiry report.
//!
//! A certificate and its key live in one file replaced by rename, so an interrupted
//! operation leaves the old pair or the new one, never a mix. A pending CSR's key waits in
//! `identity/pending/` (0600) until its certificate is imported.

use openssl::pkey::{Id, PKey, Private};
use openssl::x509::X509;
use phonetrust_pki::details::display_name;
use phonetrust_pki::profiles::{OwnCert, own_cert};
use phonetrust_pki::{DistinguishedName, KeySpec, generate_key, self_signed};
use phonetrust_proto::cert::{CertAndKey, load_private_key};
use phonetrust_proto::rand::RandomSource;

use crate::db::Db;
use crate::identity::{self, write_private};
use crate::layout::DataDir;
use crate::model::TrustStore;
use crate::trust::{CertFacts, unix_time};
use crate::{StoreError, io};

/// The trust store that must hold the issuers of a CA-signed own certificate.
pub fn trust_store_for(which: OwnCert) -> TrustStore {
    match which {
        OwnCert::Capf => TrustStore::Capf,
        OwnCert::Tomcat => TrustStore::Tomcat,
        OwnCert::CallManager | OwnCert::CallManagerEcdsa | OwnCert::Tvs | OwnCert::ItlRecovery => {
            TrustStore::CallManager
        }
    }
}

/// What a change of an own certificate means for phones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeReport {
    /// Which certificate.
    pub which: OwnCert,
    /// Serial before (upper-case hex).
    pub old_serial: String,
    /// Serial now.
    pub new_serial: String,
    /// Whether this node's ITL lists this certificate: it is served rebuilt at once (a
    /// running `serve` takes the new certificate within a second).
    pub in_itl: bool,
    /// Whether the stored CTL lists the old certificate: it stays as it is until `utils
    /// ctl update CTLFile` (or `ctl-client` with tokens) rebuilds it.
    pub ctl_outdated: bool,
    /// The phones that must be reset to download the new trust list (nothing resets
    /// them by itself).
    pub phones_to_reset: Vec<String>,
    /// Phones holding an LSC issued by the old CAPF certificate (CAPF only).
    pub lsc_holders: i64,
    /// Of those, the phones whose CAPF authentication is by their LSC: the LSC no longer
    /// chains to the CAPF certificate, so their next operation by LSC fails.
    pub lsc_auth_phones: Vec<String>,
}

/// What a change of `which` (now `old`) would mean for phones, known before the change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impact {
    /// See [`ChangeReport::in_itl`].
    pub in_itl: bool,
    /// See [`ChangeReport::ctl_outdated`].
    pub ctl_outdated: bool,
    /// See [`ChangeReport::phones_to_reset`].
    pub phones_to_reset: Vec<String>,
    /// See [`ChangeReport::lsc_holders`].
    pub lsc_holders: i64,
    /// See [`ChangeReport::lsc_auth_phones`].
    pub lsc_auth_phones: Vec<String>,
    /// In mixed mode, for a trust-list signer (CallManager, CallManager-ECDSA,
    /// ITLRecovery): the phones whose model cannot ask TVS about the new one
    /// ([`phonetrust_proto::device::MODELS_WITHOUT_TVS`]).
    pub without_tvs: Vec<String>,
}

/// What changing own certificate `which` means for phones: whether the ITL lists it,
/// whether the stored CTL lists the current one, which phones download a trust list that
/// lists it, and (CAPF) which phones hold LSCs it issued.
pub async fn impact(data: &DataDir, db: &Db, which: OwnCert) -> Result<Impact, StoreError> {
    let id = identity::load(data)?;
    let old = id
        .get(which)
        .ok_or_else(|| StoreError::NotFound(format!("no {which} certificate")))?;
    if which == OwnCert::Tomcat {
        return Ok(Impact::default());
    }
    let old_der = old.cert.to_der()?;
    let ctl_outdated = match db.ctl().await? {
        Some(c) => phonetrust_proto::trustlist::parse(&c.bytes)
            .map(|l| {
                l.records
                    .iter()
                    .any(|r| r.record.certificate.as_deref() == Some(old_der.as_slice()))
            })
            .unwrap_or(false),
        None => false,
    };
    let (lsc_holders, lsc_auth_phones) = if which == OwnCert::Capf {
        // By signature: the generations of a node's CAPF share their subject, so the
        // issuer name alone would count the LSCs of earlier generations too.
        let issuer = display_name(old.cert.subject_name());
        let key = old.cert.public_key()?;
        let holders: Vec<String> = db
            .lscs()
            .await?
            .into_iter()
            .filter(|(_, c)| c.issuer == issuer)
            .filter(|(_, c)| signed_by(&c.pem, &key))
            .map(|(d, _)| d)
            .collect();
        let devices = db.devices_named(&holders).await?;
        let mut by_lsc: Vec<String> = holders
            .iter()
            .filter(|d| {
                devices
                    .get(*d)
                    .is_some_and(|x| x.capf.auth_mode == crate::model::AuthMode::Lsc)
            })
            .cloned()
            .collect();
        by_lsc.sort();
        (holders.len() as i64, by_lsc)
    } else {
        (0, Vec::new())
    };
    let signer = matches!(
        which,
        OwnCert::CallManager | OwnCert::CallManagerEcdsa | OwnCert::ItlRecovery
    );
    let without_tvs = if signer && db.param(crate::params::CLUSTER_SECURITY_MODE).await? == 1 {
        db.devices(&crate::devices::DeviceFilter::default())
            .await?
            .into_iter()
            .filter(|d| !phonetrust_proto::device::uses_tvs(&d.model))
            .map(|d| d.name)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Impact {
        in_itl: true,
        ctl_outdated,
        phones_to_reset: db.device_names().await?,
        lsc_holders,
        lsc_auth_phones,
        without_tvs,
    })
}

impl ChangeReport {
    fn new(which: OwnCert, old_serial: String, new_serial: String, i: Impact) -> Self {
        Self {
            which,
            old_serial,
            new_serial,
            in_itl: i.in_itl,
            ctl_outdated: i.ctl_outdated,
            phones_to_reset: i.phones_to_reset,
            lsc_holders: i.lsc_holders,
            lsc_auth_phones: i.lsc_auth_phones,
        }
    }
}

fn spec_of(key: &PKey<Private>) -> KeySpec {
    match key.id() {
        Id::EC => match key.bits() {
            b if b > 384 => KeySpec::EcP521,
            b if b > 256 => KeySpec::EcP384,
            _ => KeySpec::EcP256,
        },
        _ => KeySpec::Rsa(key.bits()),
    }
}

fn dns_names(cert: &X509) -> Vec<String> {
    cert.subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Regenerate `which` self-signed: new key (same type and size), new serial, same
/// subject, validity from `now` for as long as the old one was valid. Regenerating CAPF
/// while phones hold LSCs it issued needs `confirm`.
pub async fn regenerate(
    data: &DataDir,
    db: &Db,
    which: OwnCert,
    confirm: bool,
    now: i64,
    rng: &dyn RandomSource,
) -> Result<ChangeReport, StoreError> {
    let id = identity::load(data)?;
    let old = id
        .get(which)
        .ok_or_else(|| StoreError::NotFound(format!("no {which} certificate")))?;
    let node = id
        .node()
        .ok_or_else(|| StoreError::NotFound("no CallManager certificate".into()))?;
    let impact = impact(data, db, which).await?;
    let lsc_holders = impact.lsc_holders;
    if lsc_holders > 0 && !confirm {
        return Err(StoreError::NeedsConfirmation(format!(
            "{lsc_holders} phone(s) hold an LSC issued by the current CAPF certificate; the current certificate stays in CAPF-trust (they can renew by their LSC), and each of these phones needs a new LSC before it is deleted (schedule Install/Upgrade). Nothing was changed; repeat with --confirm to regenerate"
        )));
    }
    let old_subject = DistinguishedName::from_x509_name(old.cert.subject_name());
    let capf_tag = old_subject.cn.trim_start_matches("CAPF-").to_string();
    let days = u32::try_from(
        (unix_time(old.cert.not_after()) - unix_time(old.cert.not_before()) + 43_200) / 86_400,
    )
    .unwrap_or(1826)
    .max(1);
    let mut n = node.clone();
    n.validity_days = days;
    if let KeySpec::Rsa(bits) = spec_of(&old.key) {
        n.rsa_bits = bits;
    }
    let (mut params, _) = own_cert(which, &n, &capf_tag, now);
    params.subject = old_subject;
    params.subject_alt_names = dns_names(&old.cert)
        .into_iter()
        .map(phonetrust_pki::SubjectAltName::Dns)
        .collect();
    let key = generate_key(spec_of(&old.key))?;
    let cert = self_signed(&params, &key, rng)?;
    let new = CertAndKey::new(cert, key).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let old_serial = CertFacts::of(&old.cert)?.serial;
    let new_serial = CertFacts::of(&new.cert)?.serial;
    identity::replace(data, which, &new)?;
    tracing::info!(
        cert = which.name(),
        old_serial,
        new_serial,
        "own certificate regenerated"
    );
    if which == OwnCert::Capf {
        trust_capf(db, &new.cert, now).await?;
    }
    Ok(ChangeReport::new(which, old_serial, new_serial, impact))
}

/// A CSR generated for an own certificate.
#[derive(Clone, Debug)]
pub struct CsrReport {
    /// The CSR (PEM).
    pub pem: String,
    /// Where it was written.
    pub path: std::path::PathBuf,
    /// Subject it asks for.
    pub subject: String,
}

/// Generate a new key and a CSR for `which` with the subject and DNS names of the current
/// certificate. The key waits in `identity/pending/` until the signed certificate is
/// imported; a second CSR replaces the first.
pub fn csr_generate(data: &DataDir, which: OwnCert) -> Result<CsrReport, StoreError> {
    let id = identity::load(data)?;
    let cur = id
        .get(which)
        .ok_or_else(|| StoreError::NotFound(format!("no {which} certificate")))?;
    let subject = DistinguishedName::from_x509_name(cur.cert.subject_name());
    let key = generate_key(spec_of(&cur.key))?;
    let req = phonetrust_pki::csr(&subject, &dns_names(&cur.cert), &key)?;
    let dir = data.pending_dir();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
    }
    let pem = String::from_utf8(req.to_pem()?)
        .map_err(|_| StoreError::Invalid("CSR PEM is not text".into()))?;
    write_private(&data.pending_key(which), &key.private_key_to_pem_pkcs8()?)?;
    let path = data.pending_csr(which);
    crate::write_atomic(&path, pem.as_bytes(), 0o644)?;
    tracing::info!(cert = which.name(), "CSR generated");
    Ok(CsrReport {
        pem,
        path,
        subject: display_name(cur.cert.subject_name()),
    })
}

fn is_ca(cert: &X509) -> bool {
    let Ok(der) = cert.to_der() else { return false };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, c)) => c.is_ca(),
        Err(_) => false,
    }
}

/// Import the CA-signed certificate (and chain) for the pending CSR of `which`. The
/// certificate must carry the pending key, be valid at `now`, and chain to a certificate
/// in the matching trust store (CAPF-trust for CAPF, tomcat-trust for tomcat,
/// CallManager-trust for the others); intermediates may come in the same file. A CAPF
/// certificate must be a CA. Nothing changes when a check fails.
pub async fn import_signed(
    data: &DataDir,
    db: &Db,
    which: OwnCert,
    input: &[u8],
    now: i64,
) -> Result<ChangeReport, StoreError> {
    let id = identity::load(data)?;
    let old = id
        .get(which)
        .ok_or_else(|| StoreError::NotFound(format!("no {which} certificate")))?;
    let impact = impact(data, db, which).await?;
    let key_path = data.pending_key(which);
    let key_pem = match std::fs::read(&key_path) {
        Ok(k) => k,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Invalid(format!(
                "no pending CSR for {which}: run `phonetrust set csr gen {which}`, have the CSR signed, then import the certificate"
            )));
        }
        Err(e) => return Err(io(&key_path)(e)),
    };
    let key = load_private_key(&key_pem).map_err(|e| StoreError::Corrupt {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    if input.len() > crate::trust::MAX_BUNDLE {
        return Err(StoreError::Invalid(
            "the certificate file is too large".into(),
        ));
    }
    let certs = phonetrust_proto::cert::load_certs(input).map_err(|e| {
        StoreError::Invalid(format!(
            "{e}: the file is neither a PEM certificate (chain) nor a DER certificate"
        ))
    })?;
    let mut leaf = None;
    let mut chain = Vec::new();
    for c in certs {
        let matches = c.public_key().map(|p| key.public_eq(&p)).unwrap_or(false);
        if matches && leaf.is_none() {
            leaf = Some(c);
        } else {
            chain.push(c);
        }
    }
    let leaf = leaf.ok_or_else(|| {
        StoreError::Invalid(format!(
            "the certificate's public key does not match the key of the pending CSR for {which}: import the certificate the CA issued for that CSR ({})",
            data.pending_csr(which).display()
        ))
    })?;
    let facts = CertFacts::of(&leaf)?;
    if facts.not_after < now {
        return Err(StoreError::Invalid(format!(
            "the certificate expired on {}; nothing was changed (have the CSR signed again)",
            leaf.not_after()
        )));
    }
    if facts.not_before > now {
        return Err(StoreError::Invalid(format!(
            "the certificate is not valid before {}; nothing was changed (check this node's clock, or import it later)",
            leaf.not_before()
        )));
    }
    if which == OwnCert::Capf && !is_ca(&leaf) {
        return Err(StoreError::Invalid(
            "a CAPF certificate signs LSCs, so it must be a CA certificate (basicConstraints CA:TRUE, keyCertSign); have the CA issue a subordinate CA certificate".into(),
        ));
    }
    let store = trust_store_for(which);
    let anchors = db.trust_certs(store).await?;
    phonetrust_proto::cert::verify_chain(&leaf, &chain, &anchors, now).map_err(|reason| {
        StoreError::Invalid(format!(
            "the certificate chain does not verify ({reason}): import the issuing CA certificates into {store} first (`phonetrust set cert import trust {store} ca.pem`); nothing was changed"
        ))
    })?;
    let new = CertAndKey::new(leaf, key).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let old_serial = CertFacts::of(&old.cert)?.serial;
    identity::replace_with_chain(data, which, &new, &chain)?;
    let _ = std::fs::remove_file(&key_path);
    let _ = std::fs::remove_file(data.pending_csr(which));
    tracing::info!(
        cert = which.name(),
        old_serial,
        new_serial = facts.serial,
        "CA-signed own certificate imported"
    );
    if which == OwnCert::Capf {
        trust_capf(db, &new.cert, now).await?;
    }
    Ok(ChangeReport::new(which, old_serial, facts.serial, impact))
}

/// The trust stores that hold every CAPF certificate of the node, as the vendor's nodes
/// keep theirs: CAPF-trust (phones authenticating by an LSC an earlier CAPF generation
/// issued still chain to it, so they can renew) and CallManager-trust.
pub const CAPF_TRUSTED_IN: [TrustStore; 2] = [TrustStore::Capf, TrustStore::CallManager];

/// Put the CAPF certificate `cert` into [`CAPF_TRUSTED_IN`] (nothing when it is there
/// already). Earlier generations stay until the administrator deletes them, once no LSC
/// depends on them (`show cert rollover`).
pub async fn trust_capf(db: &Db, cert: &X509, now: i64) -> Result<(), StoreError> {
    let pem = cert.to_pem()?;
    for store in CAPF_TRUSTED_IN {
        for o in db.trust_import(store, &pem, now).await? {
            if let crate::trust::ImportOutcome::Added(name) = o {
                tracing::info!(store = store.as_str(), name, "CAPF certificate trusted");
            }
        }
    }
    Ok(())
}

/// One CAPF generation: a CAPF certificate of this node, current or kept in CAPF-trust.
#[derive(Clone, Debug)]
pub struct CapfGeneration {
    /// The certificate.
    pub cert: X509,
    /// Its serial (upper-case hex), validity.
    pub serial: String,
    /// notAfter.
    pub not_after: i64,
    /// Whether CAPF issues with it now.
    pub current: bool,
    /// Its name in CAPF-trust, if it is there.
    pub in_capf_trust: Option<String>,
    /// Phones holding an LSC it issued, by name.
    pub lsc_holders: Vec<String>,
}

/// Whether the certificate in `pem` (an LSC) was signed by the key `issuer` (a CAPF
/// generation's public key); false when it does not parse.
pub fn signed_by(pem: &str, issuer: &openssl::pkey::PKeyRef<openssl::pkey::Public>) -> bool {
    X509::from_pem(pem.as_bytes())
        .ok()
        .and_then(|x| x.verify(issuer).ok())
        .unwrap_or(false)
}

/// Whether `cert` is a CAPF certificate (its CN is `CAPF-…`, as the node's own).
pub fn is_capf_cert(cert: &X509) -> bool {
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .is_some_and(|cn| cn.starts_with("CAPF-"))
}

/// Every CAPF generation (the current one first, then those in CAPF-trust, newest
/// first) and which phones hold an LSC each issued (verified by signature: generations
/// share their subject).
pub async fn rollover(data: &DataDir, db: &Db) -> Result<Vec<CapfGeneration>, StoreError> {
    let id = identity::load(data)?;
    let current = id
        .get(OwnCert::Capf)
        .ok_or_else(|| StoreError::NotFound("no CAPF certificate".into()))?
        .cert
        .clone();
    let cur_fp = CertFacts::of(&current)?.fingerprint;
    let mut gens = vec![(current, true, None)];
    for t in db.trust_list(Some(TrustStore::Capf)).await? {
        let cert = X509::from_pem(t.pem.as_bytes())?;
        if !is_capf_cert(&cert) {
            continue;
        }
        if t.fingerprint == cur_fp {
            if let Some(g) = gens.first_mut() {
                g.2 = Some(t.name.clone());
            }
            continue;
        }
        gens.push((cert, false, Some(t.name.clone())));
    }
    // Each LSC parsed once, then checked against each generation's key.
    let lscs: Vec<(String, X509)> = db
        .lscs()
        .await?
        .into_iter()
        .filter_map(|(device, c)| Some((device, X509::from_pem(c.pem.as_bytes()).ok()?)))
        .collect();
    let mut out = Vec::with_capacity(gens.len());
    for (cert, current, in_trust) in gens {
        let key = cert.public_key()?;
        let holders: Vec<String> = lscs
            .iter()
            .filter(|(_, l)| l.verify(&key).unwrap_or(false))
            .map(|(device, _)| device.clone())
            .collect();
        let f = CertFacts::of(&cert)?;
        out.push(CapfGeneration {
            serial: f.serial,
            not_after: f.not_after,
            cert,
            current,
            in_capf_trust: in_trust,
            lsc_holders: holders,
        });
    }
    // The kept generations, newest first.
    if let Some(rest) = out.get_mut(1..) {
        rest.sort_by_key(|g| std::cmp::Reverse(g.not_after));
    }
    Ok(out)
}

/// One line of the expiry report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiring {
    /// `own`, the trust store name, `LSC` or `MIC`.
    pub kind: String,
    /// SHA-256 of the certificate's DER, lower-case hex (what a notification is kept by).
    pub sha256: String,
    /// Certificate or phone name.
    pub name: String,
    /// Subject.
    pub subject: String,
    /// notAfter.
    pub not_after: i64,
    /// What else is wrong with it (an LSC that no longer chains to the current CAPF
    /// certificate), and what to do.
    pub note: Option<String>,
}

/// Every own certificate, trust certificate, phone LSC and MIC CAPF has seen that
/// expires before `now + days`, and every LSC that no longer chains to the current CAPF
/// certificate (issued by one since regenerated or replaced: the phone must get a new
/// one), soonest first.
pub async fn expiring(
    data: &DataDir,
    db: &Db,
    days: u32,
    now: i64,
) -> Result<Vec<Expiring>, StoreError> {
    let limit = now + i64::from(days) * 86_400;
    let mut out = Vec::new();
    for (which, ck) in identity::load(data)?.all() {
        let t = unix_time(ck.cert.not_after());
        if t < limit {
            out.push(Expiring {
                kind: "own".into(),
                sha256: sha256_hex(&ck.cert)?,
                name: which.name().into(),
                subject: display_name(ck.cert.subject_name()),
                not_after: t,
                note: None,
            });
        }
    }
    for c in db.trust_list(None).await? {
        if c.not_after < limit {
            out.push(Expiring {
                kind: c.store.as_str().into(),
                sha256: c.fingerprint.to_ascii_lowercase(),
                name: c.name,
                subject: c.subject,
                not_after: c.not_after,
                note: None,
            });
        }
    }
    let id = identity::load(data)?;
    let capf_key = id.get(OwnCert::Capf).and_then(|c| c.cert.public_key().ok());
    for (name, c) in db.lscs().await? {
        let x = X509::from_pem(c.pem.as_bytes()).ok();
        let chains = match (&capf_key, &x) {
            (Some(k), Some(x)) => x.verify(k).unwrap_or(false),
            _ => false,
        };
        if c.not_after >= limit && chains {
            continue;
        }
        out.push(Expiring {
            kind: "LSC".into(),
            sha256: match &x {
                Some(x) => sha256_hex(x)?,
                None => format!("md5:{}", c.md5),
            },
            name: name.clone(),
            subject: c.subject,
            not_after: c.not_after,
            note: (!chains).then(|| {
                format!(
                    "does not chain to the current CAPF certificate (issued by {}, since regenerated or replaced): schedule Install/Upgrade for {name}",
                    c.issuer
                )
            }),
        });
    }
    for (name, c) in db.mics().await? {
        if c.not_after >= limit {
            continue;
        }
        let sha256 = match X509::from_pem(c.pem.as_bytes()) {
            Ok(x) => sha256_hex(&x)?,
            Err(_) => format!("md5:{}", c.md5),
        };
        out.push(Expiring {
            kind: "MIC".into(),
            sha256,
            name,
            subject: c.subject,
            not_after: c.not_after,
            note: None,
        });
    }
    out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.name.cmp(&b.name)));
    Ok(out)
}

fn sha256_hex(c: &openssl::x509::X509Ref) -> Result<String, StoreError> {
    let d = c
        .digest(openssl::hash::MessageDigest::sha256())
        .map_err(|e| StoreError::Db(e.to_string()))?;
    Ok(phonetrust_proto::codec::hex(&d))
}
