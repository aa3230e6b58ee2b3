//! CAPF: the plan for a phone (what is scheduled, which keys to ask for, how it must
//! authenticate, which certificates it may authenticate with) and what the outcome of a
//! session records (state, the status text the phone page shows, certificates).
//!
//! The server shell looks the phone up, gives [`plan`] to the sans-IO session
//! ([`phonetrust_proto::capf_server`]) and commits what [`record`] returns before the
//! phone is told the outcome.

use openssl::x509::X509;
use phonetrust_proto::capf::Curve;
use phonetrust_proto::capf_server::{
    AuthCertKind, AuthPolicy, KeyRequest, Operation, Outcome, Plan,
};
use phonetrust_store::devices::{CapfRecord, device_cert};
use phonetrust_store::model::{
    AuthMode, CapfInfo, CertOperation, DeviceCert, DeviceCertKind, EcCurve, KeyOrder, OpState,
};

/// The keys to ask the phone for, in order (the second is the backup).
pub fn key_requests(c: &CapfInfo) -> Vec<KeyRequest> {
    let curve = match c.ec_curve {
        EcCurve::P256 => Curve::P256,
        EcCurve::P384 => Curve::P384,
        EcCurve::P521 => Curve::P521,
    };
    let rsa = KeyRequest::Rsa(u16::try_from(c.rsa_bits).unwrap_or(2048));
    let ec = KeyRequest::Ec(curve);
    match c.key_order {
        KeyOrder::Rsa => vec![rsa],
        KeyOrder::Ec => vec![ec],
        KeyOrder::EcRsa => vec![ec, rsa],
        KeyOrder::RsaEc => vec![rsa, ec],
    }
}

/// The plan for a phone with CAPF information `c`: LSCs chain to `capf` or to an earlier
/// CAPF certificate kept in `capf_trust` (CAPF-trust), MICs to `capf_trust`; a passed
/// "completes by" expires the operation.
pub fn plan(c: &CapfInfo, capf: &X509, capf_trust: Vec<X509>, now: i64) -> Plan {
    let operation = match c.operation {
        CertOperation::None => Operation::None,
        CertOperation::Install => Operation::Install(key_requests(c)),
        CertOperation::Troubleshoot => Operation::Fetch,
        CertOperation::Delete => Operation::Delete,
    };
    let auth = match c.auth_mode {
        AuthMode::NullString => AuthPolicy::NullString,
        AuthMode::AuthString => AuthPolicy::AuthString(c.auth_string.clone().unwrap_or_default()),
        AuthMode::Lsc => AuthPolicy::Lsc,
        AuthMode::Mic => AuthPolicy::Mic,
    };
    Plan {
        operation,
        auth,
        expired: c.completes_by.is_some_and(|t| t < now),
        // The current CAPF and every earlier generation kept in CAPF-trust: a phone
        // whose LSC an earlier CAPF issued renews by it (the rollover the seeds assume).
        lsc_anchors: std::iter::once(capf.clone())
            .chain(
                capf_trust
                    .iter()
                    .filter(|c| phonetrust_store::own::is_capf_cert(c))
                    .cloned(),
            )
            .collect(),
        mic_anchors: capf_trust,
        now,
    }
}

/// An LSC issued in this session: the DER pushed to the phone and its record, built from
/// the certificate itself (the phone's copy is not parsed again).
#[derive(Clone, Debug)]
pub struct IssuedLsc {
    /// The certificate sent to the phone.
    pub der: Vec<u8>,
    /// Its record.
    pub record: DeviceCert,
}

/// What `outcome` records, or `None` when there is nothing to record (nothing
/// scheduled, unknown phone, a failure before the phone said who it is). `capf` is the
/// certificate this session presented (a fetched certificate it issued is the LSC).
pub fn record(
    outcome: &Outcome,
    capf: &X509,
    issued: Option<&IssuedLsc>,
    now: i64,
) -> Result<Option<CapfRecord>, String> {
    let rec = |device: &str, state, status: &str, certs, delete_lsc| CapfRecord {
        device: device.to_string(),
        state,
        status: status.to_string(),
        certs,
        delete_lsc,
        now,
    };
    let to_cert = |kind, der: &[u8]| {
        X509::from_der(der)
            .map_err(|e| e.to_string())
            .and_then(|x| device_cert(kind, &x, now).map_err(|e| e.to_string()))
    };
    let auth_cert = |a: &Option<(AuthCertKind, Vec<u8>)>| -> Result<Vec<_>, String> {
        match a {
            Some((AuthCertKind::Mic, der)) => Ok(vec![to_cert(DeviceCertKind::Mic, der)?]),
            _ => Ok(Vec::new()),
        }
    };
    Ok(Some(match outcome {
        Outcome::Installed {
            device,
            cert,
            auth_cert: a,
        } => {
            let mut certs = auth_cert(a)?;
            certs.push(match issued {
                Some(i) if i.der == *cert => DeviceCert {
                    recorded_at: now,
                    ..i.record.clone()
                },
                _ => to_cert(DeviceCertKind::Lsc, cert)?,
            });
            rec(device, OpState::Success, "Upgrade Success", certs, false)
        }
        Outcome::Fetched {
            device,
            cert,
            auth_cert: a,
        } => {
            let issued_here = X509::from_der(cert)
                .ok()
                .is_some_and(|x| capf.issued(&x) == openssl::x509::X509VerifyResult::OK);
            let kind = if issued_here {
                DeviceCertKind::Lsc
            } else {
                DeviceCertKind::Mic
            };
            let mut certs = auth_cert(a)?;
            certs.push(to_cert(kind, cert)?);
            rec(
                device,
                OpState::Success,
                "Troubleshoot Success",
                certs,
                false,
            )
        }
        Outcome::Deleted { device } => {
            rec(device, OpState::Success, "Delete Success", Vec::new(), true)
        }
        Outcome::Failed {
            device: Some(device),
            status,
            ..
        } => rec(device, OpState::Failed, status, Vec::new(), false),
        Outcome::Failed { device: None, .. }
        | Outcome::NothingScheduled { .. }
        | Outcome::UnknownDevice { .. } => return Ok(None),
    }))
}

/// Why the phone `device` will not register securely with its security profile: Some
/// when the profile is authenticated or encrypted and the phone has neither an LSC nor a
/// recorded MIC that chains to CAPF-trust (the phone then has no certificate its TLS to
/// the call manager can use). None when it can, or its profile is non-secure.
pub async fn secure_registration_gap(
    db: &phonetrust_store::Db,
    device: &str,
    now: i64,
) -> Result<Option<String>, phonetrust_store::StoreError> {
    use phonetrust_store::model::{SecurityMode, TrustStore};
    let d = db.device(device).await?;
    let p = db.profile(&d.profile).await?;
    if p.mode == SecurityMode::NonSecure {
        return Ok(None);
    }
    let certs = db.device_certs(&d.name).await?;
    if certs.iter().any(|c| c.kind == DeviceCertKind::Lsc) {
        return Ok(None);
    }
    let anchors = db.trust_certs(TrustStore::Capf).await?;
    let trusted_mic = certs
        .iter()
        .filter(|c| c.kind == DeviceCertKind::Mic)
        .any(|c| {
            X509::from_pem(c.pem.as_bytes())
                .is_ok_and(|m| phonetrust_proto::cert::verify_chain(&m, &[], &anchors, now).is_ok())
        });
    if trusted_mic {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} uses {} ({}) but has no LSC and no MIC that chains to CAPF-trust: it will not register securely; give it an LSC (`phonetrust phone capf {} --operation install --auth …`) or import its manufacturer's CA into CAPF-trust",
        d.name,
        p.name,
        p.mode.as_str(),
        d.name
    )))
}

/// Of `names` (phones just imported), those whose profile is authenticated or encrypted
/// and that hold no LSC: in bulk, one query each for phones and profiles. A phone just
/// imported has no MIC CAPF has seen either, so each of these will not register securely
/// until it enrols ([`secure_registration_gap`] tells one phone exactly).
pub async fn imported_without_lsc(
    db: &phonetrust_store::Db,
    names: &[String],
) -> Result<Vec<String>, phonetrust_store::StoreError> {
    use phonetrust_store::devices::{DeviceFilter, LscFilter};
    use phonetrust_store::model::SecurityMode;
    let secure: std::collections::HashSet<String> = db
        .profiles()
        .await?
        .into_iter()
        .filter(|p| p.mode != SecurityMode::NonSecure)
        .map(|p| p.name)
        .collect();
    let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    Ok(db
        .devices(&DeviceFilter {
            lsc: Some(LscFilter::None),
            ..DeviceFilter::default()
        })
        .await?
        .into_iter()
        .filter(|d| secure.contains(&d.profile) && wanted.contains(d.name.as_str()))
        .map(|d| d.name)
        .collect())
}
