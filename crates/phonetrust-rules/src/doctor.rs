//! `phonetrust doctor`: the seeds' troubleshooting as checks. Each finding names what is
//! wrong, the cause and the fix, in the seeds' words where they have them ("No valid CAPF
//! server", "LSC: Connection failed", "Upgrade Failed: User Initiated Request
//! Late/Timeout"). The network facts (does a name resolve, does a port answer) come
//! through [`Probe`], so the checks own no sockets and tests can inject faults.

use std::collections::HashMap;

use openssl::x509::X509;
use phonetrust_pki::profiles::OwnCert;
use phonetrust_proto::trustlist::{self, Role};
use phonetrust_store::Db;
use phonetrust_store::ctlfile::ClusterSecurityMode;
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::{AuthMode, CertOperation, OpState, format_time};
use phonetrust_store::params;

use crate::itlstatus::ItlState;

/// An ITL this much of the size phones accept (64 KB) is reported.
pub const ITL_NEAR_LIMIT: usize = crate::trustlists::MAX_ITL_BYTES * 9 / 10;

/// Operations pending longer than this are reported with why.
pub const STUCK_AFTER: i64 = 86_400;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something will go wrong, or needs doing soon.
    Warning,
    /// Phones fail now.
    Error,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// A stable name of the check, e.g. `capf-unreachable`.
    pub check: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What it is about: a phone, a certificate, a node.
    pub subject: String,
    /// What is wrong and why.
    pub cause: String,
    /// What to do.
    pub fix: String,
}

/// The network as the doctor sees it.
pub trait Probe: Send + Sync {
    /// Whether `host` resolves (`Err` says why not).
    fn resolves(&self, host: &str) -> Result<(), String>;
    /// Whether something accepts TCP connections on `host:port` (`Err` says why not).
    fn connects(&self, host: &str, port: u16) -> Result<(), String>;
}

fn f(
    check: &'static str,
    severity: Severity,
    subject: impl Into<String>,
    cause: String,
    fix: String,
) -> Finding {
    Finding {
        check,
        severity,
        subject: subject.into(),
        cause,
        fix,
    }
}

/// Whether trust-list record `r` carries `cert` (its DER, or its SHA-1 as vendor ITLs
/// carry CAPF).
fn carries(r: &trustlist::Record, cert: &X509) -> bool {
    let Ok(der) = cert.to_der() else { return false };
    if let Some(c) = &r.certificate {
        return *c == der;
    }
    match (
        &r.cert_hash,
        openssl::hash::hash(openssl::hash::MessageDigest::sha1(), &der),
    ) {
        (Some(h), Ok(d)) => h.as_slice() == &d[..],
        _ => false,
    }
}

/// The checks on the ITL a node serves: a CAPF record, the one CAPF presents, its size.
pub fn check_itl(bytes: &[u8], capf: &X509, node: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let subject = format!("ITLFile.tlv of {node}");
    let list = match trustlist::parse(bytes) {
        Ok(l) => l,
        Err(e) => {
            out.push(f(
                "itl-damaged",
                Severity::Error,
                subject,
                format!("the ITL this node serves does not parse ({e}): phones reject it"),
                "rebuild it: `phonetrust utils itl restore` (or regenerate CallManager) and check `phonetrust show itl`".into(),
            ));
            return out;
        }
    };
    let capf_records: Vec<_> = list
        .records
        .iter()
        .filter(|r| r.record.role == Some(Role::Capf))
        .collect();
    if capf_records.is_empty() {
        out.push(f(
            "itl-no-capf",
            Severity::Error,
            subject.clone(),
            "the ITL has no CAPF record: phones show \"No valid CAPF server\" and never contact CAPF".into(),
            "the publisher must have published its CAPF certificate: run `phonetrust serve` on it once, check `phonetrust show network cluster` and `phonetrust show itl`".into(),
        ));
    } else if !capf_records.iter().any(|r| carries(&r.record, capf)) {
        out.push(f(
            "itl-capf-mismatch",
            Severity::Error,
            subject.clone(),
            "the ITL's CAPF certificate is not the one CAPF presents: phones cannot verify CAPF (\"LSC: Connection failed\")".into(),
            "let the ITL be rebuilt from the current CAPF certificate (`phonetrust show itl` lists what phones get), then reset the phones so they download it".into(),
        ));
    }
    if bytes.len() >= ITL_NEAR_LIMIT {
        out.push(f(
            "itl-size",
            Severity::Warning,
            subject,
            format!(
                "the ITL is {} bytes, near the {} phones accept (about 39 certificates): one more node with TVS and phones reject it",
                bytes.len(),
                crate::trustlists::MAX_ITL_BYTES
            ),
            "run TVS on fewer nodes (`phonetrust cluster set-node NAME --services tftp,capf`)".into(),
        ));
    }
    out
}

/// What the doctor needs from the node.
struct Node {
    id: phonetrust_store::identity::Identity,
    topo: crate::groups::Topology,
    host: String,
    capf: X509,
    capf_host: String,
    capf_port: u16,
}

async fn node(db: &Db, data: &DataDir) -> Result<Node, String> {
    let e = |e: phonetrust_store::StoreError| e.to_string();
    let id = phonetrust_store::identity::load(data).map_err(e)?;
    let host = id
        .node()
        .map(|n| n.host)
        .ok_or("the identity has no CallManager certificate")?;
    let capf = id
        .get(OwnCert::Capf)
        .ok_or("the identity has no CAPF certificate")?
        .cert
        .clone();
    let topo = crate::groups::Topology::load(db).await.map_err(e)?;
    let capf_host = topo
        .nodes_for(&phonetrust_store::groups::Placement::default())
        .capf
        .unwrap_or_else(|| host.clone());
    let capf_port =
        u16::try_from(db.param(params::CAPF_PHONE_PORT).await.map_err(e)?).unwrap_or(3804);
    Ok(Node {
        id,
        topo,
        host,
        capf,
        capf_host,
        capf_port,
    })
}

fn capf_network(n: &Node, probe: &dyn Probe) -> Vec<Finding> {
    let target = format!("CAPF {}:{}", n.capf_host, n.capf_port);
    if let Err(why) = probe.resolves(&n.capf_host) {
        return vec![f(
            "capf-host-unresolved",
            Severity::Error,
            target,
            format!(
                "phones are told CAPF is at {}, which does not resolve ({why}): operations stay \"Operation Pending\"",
                n.capf_host
            ),
            format!(
                "add {} to DNS (the phones' resolver), or give the node a host name that resolves",
                n.capf_host
            ),
        )];
    }
    match probe.connects(&n.capf_host, n.capf_port) {
        Ok(()) => vec![],
        Err(why) => vec![f(
            "capf-unreachable",
            Severity::Error,
            target,
            format!(
                "CAPF does not answer on {}:{} ({why}): phones show \"LSC: Connection failed\"",
                n.capf_host, n.capf_port
            ),
            format!(
                "start `phonetrust serve` on {} (CAPF listens on CapfPhonePort {}), open TCP {} between the phones and it, or `phonetrust set param CapfPhonePort N` to where it listens",
                n.capf_host, n.capf_port, n.capf_port
            ),
        )],
    }
}

/// The findings about one phone's operation at `now` (late, pending too long and why).
fn phone_operation(
    d: &phonetrust_store::model::Device,
    itl: Option<ItlState>,
    capf_unresolved: bool,
    has_lsc: bool,
    now: i64,
) -> Vec<Finding> {
    let c = &d.capf;
    if c.operation == CertOperation::None || c.state != OpState::Pending {
        return vec![];
    }
    let mut out = Vec::new();
    if let Some(t) = c.completes_by
        && t <= now
    {
        out.push(f(
            "operation-late",
            Severity::Error,
            d.name.clone(),
            format!(
                "its {} operation was to complete by {}; the phone will get \"Upgrade Failed: User Initiated Request Late/Timeout\"",
                c.operation,
                format_time(t)
            ),
            format!("schedule it again with a later deadline: `phonetrust phone capf {} --operation {} --completes-by …`, then reset the phone", d.name, c.operation.as_str()),
        ));
        return out;
    }
    if now - c.status_at >= STUCK_AFTER {
        let mut why = Vec::new();
        match itl {
            Some(ItlState::Current) | None => {}
            Some(s) => why.push(format!("the phone is on a stale ITL ({})", s.label())),
        }
        if c.auth_mode == AuthMode::Lsc && !has_lsc {
            why.push("it authenticates \"By Existing Certificate (precedence to LSC)\" but has no LSC: CAPF can only take its MIC, which must chain to CAPF-trust".into());
        }
        if capf_unresolved {
            why.push("the CAPF host name in its config does not resolve".into());
        }
        if why.is_empty() {
            why.push("the phone has not contacted CAPF (switched off, or not reset since the operation was scheduled)".into());
        }
        out.push(f(
            "operation-stuck",
            Severity::Warning,
            d.name.clone(),
            format!(
                "\"Operation Pending\" since {}: {}",
                format_time(c.status_at),
                why.join("; ")
            ),
            format!("fix the cause, then reset {} so that it contacts CAPF; `phonetrust doctor phone {}` explains it", d.name, d.name),
        ));
    }
    out
}

/// Every check of the node at `now`, errors first.
pub async fn node_checks(
    db: &Db,
    data: &DataDir,
    probe: &dyn Probe,
    now: i64,
) -> Result<Vec<Finding>, String> {
    let e = |e: phonetrust_store::StoreError| e.to_string();
    let n = node(db, data).await?;
    let mut out = Vec::new();
    // The ITL this node serves.
    let recovery = db.param(params::ITL_SIGNER).await.map_err(e)? == 1;
    let itl = crate::trustlists::served_itl(
        db,
        &n.host,
        &n.id,
        recovery,
        u32::try_from(now).unwrap_or(u32::MAX),
    )
    .await?;
    out.extend(check_itl(&itl.bytes, &n.capf, &n.host));
    // CAPF on the network.
    let net = capf_network(&n, probe);
    let unresolved = net.iter().any(|x| x.check == "capf-host-unresolved");
    out.extend(net);
    // A CTL left behind.
    if db.security_mode().await.map_err(e)? == ClusterSecurityMode::NonSecure
        && db.ctl().await.map_err(e)?.is_some()
    {
        out.push(f(
            "ctl-left-behind",
            Severity::Warning,
            "CTLFile.tlv",
            "the cluster is in non-secure mode (ClusterSecurityMode 0) yet a CTL is served: phones that hold it keep trusting only its signers".into(),
            "delete it once no phone needs it: `phonetrust file delete tftp CTLFile.tlv`".into(),
        ));
    }
    // Operations.
    let statuses: HashMap<String, ItlState> = crate::itlstatus::status(db)
        .await?
        .into_iter()
        .map(|p| (p.device, p.state))
        .collect();
    let lsc: std::collections::HashSet<String> = db
        .lscs()
        .await
        .map_err(e)?
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let pending = db
        .devices(&phonetrust_store::devices::DeviceFilter {
            state: Some(OpState::Pending),
            ..Default::default()
        })
        .await
        .map_err(e)?;
    for d in &pending {
        out.extend(phone_operation(
            d,
            statuses.get(&d.name).copied(),
            unresolved,
            lsc.contains(&d.name),
            now,
        ));
    }
    // Certificates expiring (the monitor's findings).
    for x in
        crate::monitor::findings(data, db, &n.host, crate::monitor::DEFAULT_WARN_DAYS, now).await?
    {
        let sev = if x.severity == crate::monitor::Severity::Critical && x.cert.not_after <= now {
            Severity::Error
        } else {
            Severity::Warning
        };
        out.push(f(
            "certificate-expiring",
            sev,
            format!("{} {}", x.cert.kind, x.cert.name),
            x.headline.clone(),
            "see `phonetrust show cert expiry`; renew before it expires".into(),
        ));
    }
    // Trust certificates LSCs depend on: earlier CAPF generations still in use.
    for g in phonetrust_store::own::rollover(data, db).await.map_err(e)? {
        if g.current || g.lsc_holders.is_empty() {
            continue;
        }
        let issuer = phonetrust_pki::details::display_name(g.cert.subject_name());
        out.push(f(
            "lsc-depends-on-old-capf",
            Severity::Warning,
            format!("CAPF-trust {}", g.in_capf_trust.clone().unwrap_or_else(|| g.serial.clone())),
            format!(
                "{} phone(s) hold LSCs of an earlier CAPF generation (serial {}, e.g. {}): they authenticate through this CAPF-trust certificate, and deleting it before they renew leaves them with \"Invalid LSC\"",
                g.lsc_holders.len(),
                g.serial,
                g.lsc_holders.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
            format!("keep it, and renew them: `phonetrust phone bulk schedule --issuer \"{issuer}\" --operation install --auth lsc` (or the renewal policy, [lifecycle])"),
        ));
    }
    out.sort_by_key(|x| std::cmp::Reverse(x.severity));
    Ok(out)
}

/// One phone explained: its records as lines, and its findings.
pub async fn phone_checks(
    db: &Db,
    data: &DataDir,
    name: &str,
    probe: &dyn Probe,
    now: i64,
) -> Result<(Vec<String>, Vec<Finding>), String> {
    let e = |e: phonetrust_store::StoreError| e.to_string();
    let d = db.device(name).await.map_err(e)?;
    let n = node(db, data).await?;
    let mut lines = vec![format!(
        "{}: model {}, {}, profile \"{}\"",
        d.name, d.model, d.protocol, d.profile
    )];
    let certs = db.device_certs(&d.name).await.map_err(e)?;
    let lsc = certs
        .iter()
        .find(|c| c.kind == phonetrust_store::model::DeviceCertKind::Lsc);
    match lsc {
        Some(c) => {
            let chains = n
                .capf
                .public_key()
                .is_ok_and(|k| phonetrust_store::own::signed_by(&c.pem, &k));
            lines.push(format!(
                "LSC: issued by {} (serial {}), valid until {}{}",
                c.issuer,
                c.serial,
                format_time(c.not_after),
                if chains {
                    ""
                } else {
                    "; not by the current CAPF certificate"
                }
            ));
        }
        None => lines.push("LSC: none".into()),
    }
    if let Some(m) = certs
        .iter()
        .find(|c| c.kind == phonetrust_store::model::DeviceCertKind::Mic)
    {
        lines.push(format!(
            "MIC seen: issued by {}, valid until {}",
            m.issuer,
            format_time(m.not_after)
        ));
    }
    lines.push(format!(
        "CAPF: {} ({}), completes by {}; Certificate Operation Status: {}",
        d.capf.operation,
        d.capf.auth_mode,
        d.capf
            .completes_by
            .map(format_time)
            .unwrap_or_else(|| "-".into()),
        d.capf.status
    ));
    let place = db.placement(&d.name).await.map_err(e)?;
    let nodes = n.topo.nodes_for(&place);
    let capf_host = nodes.capf.clone().unwrap_or_else(|| n.host.clone());
    lines.push(format!(
        "Told: CAPF {capf_host}:{}, call managers {}",
        n.capf_port,
        nodes.call_managers.join(", ")
    ));
    let itl = crate::itlstatus::of_phone(db, &d.name).await?;
    lines.push(format!("ITL: {}", itl.state.label()));
    for dl in db.downloads_of(&d.name).await.map_err(e)? {
        lines.push(format!(
            "Last {}: {} from {} over {} at {}",
            dl.kind.as_str(),
            dl.file,
            dl.node,
            dl.protocol,
            format_time(dl.at)
        ));
    }
    let mut out = Vec::new();
    let node_for_phone = Node { capf_host, ..n };
    let net = if d.capf.operation != CertOperation::None && d.capf.state == OpState::Pending {
        capf_network(&node_for_phone, probe)
    } else {
        vec![]
    };
    let unresolved = net.iter().any(|x| x.check == "capf-host-unresolved");
    out.extend(net);
    out.extend(phone_operation(
        &d,
        Some(itl.state),
        unresolved,
        lsc.is_some(),
        now,
    ));
    if let Some(w) = crate::capf::secure_registration_gap(db, &d.name, now)
        .await
        .map_err(|e| e.to_string())?
    {
        out.push(f(
            "secure-without-certificate",
            Severity::Warning,
            d.name.clone(),
            w,
            format!("`phonetrust phone capf {} --operation install`", d.name),
        ));
    }
    if let Some(c) = lsc
        && c.not_after < now + i64::from(crate::monitor::DEFAULT_WARN_DAYS) * 86_400
    {
        out.push(f(
            "certificate-expiring",
            if c.not_after <= now {
                Severity::Error
            } else {
                Severity::Warning
            },
            d.name.clone(),
            format!("its LSC expires on {}", format_time(c.not_after)),
            format!(
                "`phonetrust phone capf {} --operation install --auth lsc`",
                d.name
            ),
        ));
    }
    out.sort_by_key(|x| std::cmp::Reverse(x.severity));
    Ok((lines, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonetrust_pki::DistinguishedName;
    use phonetrust_pki::profiles::NodeIdentity;
    use phonetrust_proto::rand::SeededRandom;
    use phonetrust_proto::tlv::HashAlg;
    use phonetrust_proto::trustlist::{CertForm, Record, TrustListParams};

    fn identity(host: &str, seed: u64) -> Vec<(OwnCert, phonetrust_proto::cert::CertAndKey)> {
        let mut n = NodeIdentity::new(host, DistinguishedName::default());
        n.rsa_bits = 1024;
        let dir = phonetrust_testsupport::tempdir(&format!("doctor-{seed}"));
        let data = DataDir::new(dir.path());
        let id =
            phonetrust_store::identity::create(&data, &n, 1_700_000_000, &SeededRandom::new(seed))
                .unwrap();
        id.all().map(|(w, c)| (w, c.clone())).collect()
    }

    fn get(
        id: &[(OwnCert, phonetrust_proto::cert::CertAndKey)],
        w: OwnCert,
    ) -> &phonetrust_proto::cert::CertAndKey {
        &id.iter().find(|(x, _)| *x == w).unwrap().1
    }

    fn itl(id: &[(OwnCert, phonetrust_proto::cert::CertAndKey)], records: &[Record]) -> Vec<u8> {
        let p = TrustListParams::new("ITLFile.tlv", HashAlg::Sha1, 1_700_000_000);
        trustlist::build(&p, get(id, OwnCert::CallManager), records).unwrap()
    }

    #[test]
    fn itl_faults_are_found_and_a_good_itl_passes() {
        let id = identity("pub.example.test", 1);
        let capf = &get(&id, OwnCert::Capf).cert;
        let rec = |r, c: &X509, form| Record::from_cert(r, c, form).unwrap();
        // Good, by full certificate and by hash.
        for form in [CertForm::Full, CertForm::Hash] {
            let good = itl(&id, &[rec(Role::Capf, capf, form)]);
            assert_eq!(check_itl(&good, capf, "pub"), vec![], "{form:?}");
        }
        // No CAPF record.
        let none = itl(
            &id,
            &[rec(Role::Tvs, &get(&id, OwnCert::Tvs).cert, CertForm::Full)],
        );
        let f = check_itl(&none, capf, "pub");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, "itl-no-capf");
        assert!(f[0].cause.contains("No valid CAPF server"));
        // Another CAPF.
        let other = identity("other.example.test", 2);
        let wrong = itl(
            &id,
            &[rec(
                Role::Capf,
                &get(&other, OwnCert::Capf).cert,
                CertForm::Full,
            )],
        );
        let f = check_itl(&wrong, capf, "pub");
        assert_eq!(f[0].check, "itl-capf-mismatch");
        assert!(f[0].cause.contains("LSC: Connection failed"));
        // Near the size limit: as many TVS records as it takes.
        let mut many = vec![rec(Role::Capf, capf, CertForm::Full)];
        let tvs = rec(Role::Tvs, &get(&other, OwnCert::Tvs).cert, CertForm::Full);
        while itl(&id, &many).len() < ITL_NEAR_LIMIT {
            many.push(tvs.clone());
        }
        let big = itl(&id, &many);
        let f = check_itl(&big, capf, "pub");
        assert!(big.len() >= ITL_NEAR_LIMIT, "{}", big.len());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, "itl-size");
        // Damaged.
        let f = check_itl(&big[..100], capf, "pub");
        assert_eq!(f[0].check, "itl-damaged");
    }
}
