//! What TVS trusts, and for which roles: this node's own certificates (CallManager as
//! SAST + CCM+TFTP, CallManager-ECDSA as TFTP, CAPF, TVS, ITLRecovery as SAST), every
//! record of the CTL, CallManager-trust (CCM) and Phone-SAST-trust (SAST), and in a
//! cluster every other node's published certificates for the same roles; and the answer
//! to a phone's question about one certificate.

use std::collections::{BTreeSet, HashMap};

use openssl::x509::X509;
use phonetrust_pki::profiles::OwnCert;
use phonetrust_proto::cert::sha256;
use phonetrust_proto::trustlist::{self, Role};
use phonetrust_proto::tvs_server::Verdict;

/// One trusted certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Roles, in code order.
    pub roles: BTreeSet<u16>,
    /// Where it was found (for logs): "own", "CTL", a trust store's name.
    pub sources: BTreeSet<String>,
}

/// Fingerprint (SHA-256 of the DER) → roles.
#[derive(Clone, Debug, Default)]
pub struct TrustIndex {
    entries: HashMap<Vec<u8>, Entry>,
    /// What could not be taken in (for the caller to log).
    pub problems: Vec<String>,
}

impl TrustIndex {
    /// Add `der` with `role`, found in `source`.
    pub fn add(&mut self, der: &[u8], role: Role, source: &str) {
        let e = self.entries.entry(sha256(der)).or_insert_with(|| Entry {
            roles: BTreeSet::new(),
            sources: BTreeSet::new(),
        });
        e.roles.insert(role.code());
        e.sources.insert(source.to_string());
    }

    /// What is known about the certificate `der`.
    pub fn lookup(&self, der: &[u8]) -> Option<&Entry> {
        self.entries.get(&sha256(der))
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Empty?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What the index is built from.
#[derive(Default)]
pub struct Sources {
    /// This node's certificates.
    pub own: Vec<(OwnCert, X509)>,
    /// The CTL file served, if any.
    pub ctl: Option<Vec<u8>>,
    /// CallManager-trust.
    pub callmanager_trust: Vec<X509>,
    /// Phone-SAST-trust.
    pub phone_sast_trust: Vec<X509>,
    /// The other nodes' published certificates (node name, which, certificate), trusted
    /// for the same roles as this node's own.
    pub peers: Vec<(String, OwnCert, X509)>,
}

fn own_roles(which: OwnCert) -> &'static [Role] {
    match which {
        OwnCert::CallManager => &[Role::Sast, Role::CcmTftp],
        OwnCert::CallManagerEcdsa => &[Role::Tftp],
        OwnCert::Capf => &[Role::Capf],
        OwnCert::Tvs => &[Role::Tvs],
        OwnCert::ItlRecovery => &[Role::Sast],
        _ => &[],
    }
}

/// Build the index (pure: the same sources give the same index).
pub fn build_index(src: &Sources) -> TrustIndex {
    let mut ix = TrustIndex::default();
    for (which, cert) in &src.own {
        let Ok(der) = cert.to_der() else { continue };
        for r in own_roles(*which) {
            ix.add(&der, *r, "own");
        }
    }
    for (node, which, cert) in &src.peers {
        let Ok(der) = cert.to_der() else { continue };
        let source = format!("node {node}");
        for r in own_roles(*which) {
            ix.add(&der, *r, &source);
        }
    }
    if let Some(ctl) = &src.ctl {
        match trustlist::parse(ctl) {
            Ok(list) => {
                for r in list.plain_records() {
                    if let (Some(der), Some(role)) = (&r.certificate, r.role) {
                        ix.add(der, role, "CTL");
                    }
                }
            }
            Err(e) => ix.problems.push(format!(
                "the CTL does not parse ({e}); its records are not trusted"
            )),
        }
    }
    for c in &src.callmanager_trust {
        if let Ok(der) = c.to_der() {
            ix.add(&der, Role::Ccm, "CallManager-trust");
        }
    }
    for c in &src.phone_sast_trust {
        if let Ok(der) = c.to_der() {
            ix.add(&der, Role::Sast, "Phone-SAST-trust");
        }
    }
    ix
}

/// The answer for a certificate whose index entry is `entry`: its roles, cacheable for
/// `ttl` seconds, or unknown.
pub fn verdict(entry: Option<&Entry>, ttl: u32) -> Verdict {
    match entry {
        Some(e) => Verdict::Trusted {
            roles: e.roles.iter().map(|r| Role::from(*r)).collect(),
            ttl,
        },
        None => Verdict::Unknown,
    }
}
