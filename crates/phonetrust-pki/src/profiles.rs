//! The certificates a phonetrust node owns, as a fresh cluster node has them, and the LSC
//! profile CAPF issues to phones.
//!
//! | own certificate | key | subject CN | role |
//! |---|---|---|---|
//! | CAPF | RSA | `CAPF-<8 hex>` | CA for LSCs (CA:TRUE, pathlen:0, keyCertSign + cRLSign); CAPF TLS |
//! | CallManager | RSA | host | signs ITL and configs (CCM+TFTP) |
//! | CallManager-ECDSA | P-256 | `<host>-EC` | EC TFTP record, EC TLS |
//! | TVS | RSA | `<host>-tvs` | TVS TLS |
//! | ITLRecovery | RSA | `ITLRECOVERY_<host>` | recovery signer of ITL/CTL |
//! | tomcat | RSA | host | web/HTTPS |

use openssl::x509::X509Ref;

use crate::params::{
    BasicConstraints, CertParams, DistinguishedName, ExtKeyUsage, KeySpec, KeyUsage, SubjectAltName,
};

/// One of the node's own certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnCert {
    /// The CAPF CA.
    Capf,
    /// The CallManager (TFTP signer) certificate.
    CallManager,
    /// The CallManager EC certificate.
    CallManagerEcdsa,
    /// The TVS certificate.
    Tvs,
    /// The ITL recovery certificate.
    ItlRecovery,
    /// The web (tomcat) certificate.
    Tomcat,
}

impl OwnCert {
    /// Every own certificate, in the order a fresh node creates them.
    pub const ALL: [OwnCert; 6] = [
        OwnCert::Capf,
        OwnCert::CallManager,
        OwnCert::CallManagerEcdsa,
        OwnCert::Tvs,
        OwnCert::ItlRecovery,
        OwnCert::Tomcat,
    ];

    /// The name administrators use (`show cert own CAPF`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Capf => "CAPF",
            Self::CallManager => "CallManager",
            Self::CallManagerEcdsa => "CallManager-ECDSA",
            Self::Tvs => "TVS",
            Self::ItlRecovery => "ITLRecovery",
            Self::Tomcat => "tomcat",
        }
    }
}

impl std::str::FromStr for OwnCert {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.to_ascii_lowercase();
        OwnCert::ALL
            .into_iter()
            .find(|c| c.name().to_ascii_lowercase() == l)
            .or(match l.as_str() {
                "callmanager-ec" | "callmanager_ecdsa" => Some(OwnCert::CallManagerEcdsa),
                "itl-recovery" | "itlrecovery" => Some(OwnCert::ItlRecovery),
                "web" => Some(OwnCert::Tomcat),
                _ => None,
            })
            .ok_or_else(|| {
                format!(
                    "unknown certificate '{s}' (use CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery or tomcat)"
                )
            })
    }
}

impl std::fmt::Display for OwnCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a node's identity is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Host name (FQDN) of the node.
    pub host: String,
    /// O, OU, L, ST, C shared by all own certificates (CN is ignored).
    pub org: DistinguishedName,
    /// RSA key size (default 2048).
    pub rsa_bits: u32,
    /// Validity in days (default 5 years).
    pub validity_days: u32,
}

impl NodeIdentity {
    /// Defaults of a fresh node: RSA 2048, five years.
    pub fn new(host: impl Into<String>, org: DistinguishedName) -> Self {
        Self {
            host: host.into(),
            org,
            rsa_bits: 2048,
            validity_days: 5 * 365 + 1,
        }
    }
}

/// Parameters and key type of one own certificate. `capf_tag` is the 8 hex digits of the
/// CAPF common name (`CAPF-<capf_tag>`), random per node.
pub fn own_cert(
    which: OwnCert,
    id: &NodeIdentity,
    capf_tag: &str,
    now: i64,
) -> (CertParams, KeySpec) {
    let rsa = KeySpec::Rsa(id.rsa_bits);
    let (cn, key) = match which {
        OwnCert::Capf => (format!("CAPF-{capf_tag}"), rsa),
        OwnCert::CallManager | OwnCert::Tomcat => (id.host.clone(), rsa),
        OwnCert::CallManagerEcdsa => (format!("{}-EC", id.host), KeySpec::EcP256),
        OwnCert::Tvs => (format!("{}-tvs", id.host), rsa),
        OwnCert::ItlRecovery => (format!("ITLRECOVERY_{}", id.host), rsa),
    };
    let mut p = CertParams::new(id.org.with_cn(cn), now, id.validity_days);
    p.basic_constraints = Some(BasicConstraints {
        ca: true,
        path_len: (which == OwnCert::Capf).then_some(0),
    });
    let ec = matches!(key, KeySpec::EcP256 | KeySpec::EcP384 | KeySpec::EcP521);
    p.key_usage = Some(KeyUsage {
        digital_signature: true,
        key_encipherment: !ec,
        key_agreement: ec,
        key_cert_sign: true,
        crl_sign: which == OwnCert::Capf,
        ..KeyUsage::default()
    });
    p.ext_key_usage = vec![
        ExtKeyUsage::ServerAuth,
        ExtKeyUsage::ClientAuth,
        ExtKeyUsage::IpsecEndSystem,
    ];
    if matches!(
        which,
        OwnCert::Tomcat | OwnCert::CallManager | OwnCert::CallManagerEcdsa
    ) {
        p.subject_alt_names = vec![SubjectAltName::Dns(id.host.clone())];
    }
    (p, key)
}

/// The LSC CAPF issues to `device_name` (`SEP<MAC>`): subject `CN=<device>` plus the
/// issuer's O, OU, L, ST, C; random 16-byte serial; CA:FALSE (critical);
/// digitalSignature + keyEncipherment (critical); serverAuth, clientAuth, IPsec end
/// system; `URI:<device>`.
pub fn lsc(device_name: &str, issuer: &X509Ref, now: i64, days: u32) -> CertParams {
    let mut subject = DistinguishedName::from_x509_name(issuer.subject_name()).with_cn(device_name);
    subject.cn_first = true;
    let mut p = CertParams::new(subject, now, days);
    p.basic_constraints = Some(BasicConstraints {
        ca: false,
        path_len: None,
    });
    p.key_usage = Some(KeyUsage {
        digital_signature: true,
        key_encipherment: true,
        ..KeyUsage::default()
    });
    p.ext_key_usage = vec![
        ExtKeyUsage::ServerAuth,
        ExtKeyUsage::ClientAuth,
        ExtKeyUsage::IpsecEndSystem,
    ];
    p.subject_alt_names = vec![SubjectAltName::Uri(device_name.to_string())];
    p.key_identifiers = false;
    p
}
