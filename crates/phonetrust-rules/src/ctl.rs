//! The cluster's CTL (`CTLFile.tlv`, mixed mode), as `004_*` of the seeds builds it:
//!
//! - **tokenless** (`utils ctl set-cluster mixed-mode`, `utils ctl update CTLFile`): signed
//!   by the publisher's CallManager certificate, which is listed as SAST (the signer) and
//!   as CCM+TFTP; then the CAPF record — the layout of the reference `CTLFile.tlv`;
//! - **recovery** (`utils ctl reset localkey`): signed by the ITLRecovery key (listed as
//!   SAST), same records;
//! - **hardware tokens**: signed by one security token's key (through PKCS#11), every
//!   token certificate as a SAST record, then CCM+TFTP and CAPF.
//!
//! In a cluster the CTL lists every node's CallManager as CCM+TFTP with its DNS name and
//! IP address, and the CAPF of every node running CAPF ([`CtlCluster`]); it is built on
//! the publisher only.
//!
//! The file is kept in the database with Cluster Security Mode
//! ([`phonetrust_store::ctlfile`]), where TFTP, HTTP and TVS pick it up within a second.

use openssl::x509::X509;
use phonetrust_pki::profiles::OwnCert;
use phonetrust_proto::tlv::{FileSigner, HashAlg};
use phonetrust_proto::trustlist::{self, CertForm, Record, Role, TrustList, TrustListParams};
use phonetrust_store::identity::Identity;

pub use phonetrust_store::ctlfile::CTL_NAME;

/// Why a CTL could not be built or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// The identity lacks a certificate the CTL lists.
    #[error("the identity has no {0:?} certificate (run `phonetrust init`)")]
    Missing(OwnCert),
    /// Building or signing failed.
    #[error("building the CTL: {0}")]
    Build(String),
    /// The signing token's certificate is not in the current CTL.
    #[error(
        "The Security Token you have inserted does not exist in the CTL File\nPlease remove any Security Tokens already inserted and insert another\nSecurity Token. (To move from a tokenless CTL to tokens, delete the CTL with `phonetrust file delete tftp CTLFile.tlv` first, after importing the token certificates into Phone-SAST-trust.)"
    )]
    TokenNotInCtl,
    /// The cluster's nodes or their published certificates could not be read.
    #[error("reading the cluster's nodes for the CTL: {0}")]
    Cluster(String),
    /// The CTL is built on the publisher only (it signs with the publisher's keys).
    #[error(
        "{node} is a subscriber: the cluster's CTL is built on the publisher ({publisher}); run the command there, every node serves the result within a second"
    )]
    NotPublisher {
        /// This node.
        node: String,
        /// The publisher.
        publisher: String,
    },
}

/// Another node as the CTL lists it.
#[derive(Clone, Debug)]
pub struct CtlNode {
    /// Its name (DNS_NAME of its records).
    pub name: String,
    /// The address phones reach it at (IP_ADDRESS when it is an IPv4 address).
    pub host: String,
    /// Its CallManager certificate (CCM+TFTP).
    pub callmanager: X509,
    /// Its CAPF certificate, when it runs CAPF.
    pub capf: Option<X509>,
}

/// The cluster as the CTL lists it: this node's name and host, and every other node that
/// has published its certificates. Empty for a single node (its CTL is unchanged).
#[derive(Clone, Debug, Default)]
pub struct CtlCluster {
    /// This node's (name, host), when the cluster has other nodes.
    pub this: Option<(String, String)>,
    /// The other nodes, in cluster order.
    pub others: Vec<CtlNode>,
}

impl CtlCluster {
    /// The cluster as seen by `node`. Refused on a subscriber: the CTL is the publisher's.
    pub async fn of(db: &phonetrust_store::Db, node: &str) -> Result<Self, CtlError> {
        use crate::cluster::{Role, Services};
        let err = |e: phonetrust_store::StoreError| CtlError::Cluster(e.to_string());
        let nodes = db.nodes().await.map_err(err)?;
        let Some(me) = nodes.iter().find(|n| n.name == node) else {
            return Ok(Self::default());
        };
        if Role::parse(&me.role) == Some(Role::Subscriber) {
            return Err(CtlError::NotPublisher {
                node: node.to_string(),
                publisher: nodes
                    .iter()
                    .find(|n| Role::parse(&n.role) == Some(Role::Publisher))
                    .map_or_else(|| "none defined".to_string(), |n| n.name.clone()),
            });
        }
        let published = crate::cluster::Published::load(db).await.map_err(err)?;
        let cert = |n: &str, w: OwnCert| published.get(n, w).ok().flatten().cloned();
        let mut out = Self::default();
        for n in nodes.iter().filter(|n| n.name != node) {
            let Some(callmanager) = cert(&n.name, OwnCert::CallManager) else {
                continue;
            };
            let capf = Services::parse(&n.services)
                .is_ok_and(|s| s.capf)
                .then(|| cert(&n.name, OwnCert::Capf))
                .flatten();
            out.others.push(CtlNode {
                name: n.name.clone(),
                host: n.host.clone(),
                callmanager,
                capf,
            });
        }
        if !out.others.is_empty() {
            out.this = Some((me.name.clone(), me.host.clone()));
        }
        Ok(out)
    }
}

fn with_address(mut r: Record, name: &str, host: &str) -> Record {
    r.dns_name = Some(name.to_string());
    r.ip_address = host.parse().ok();
    r
}

/// Who signs the CTL.
pub enum CtlSigner<'a> {
    /// The publisher's CallManager certificate (tokenless).
    CallManager,
    /// The ITLRecovery key (`utils ctl reset localkey`).
    ItlRecovery,
    /// A security token; `all` holds every token's certificate (the signer's included).
    Token {
        /// The token that signs.
        signer: &'a dyn FileSigner,
        /// All token certificates listed as SAST.
        all: &'a [X509],
    },
}

fn own(id: &Identity, w: OwnCert) -> Result<&X509, CtlError> {
    id.get(w).map(|c| &c.cert).ok_or(CtlError::Missing(w))
}

fn record(role: Role, cert: &X509) -> Result<Record, CtlError> {
    Record::from_cert(role, cert, CertForm::Full).map_err(|e| CtlError::Build(e.to_string()))
}

/// The records after the signer's own SAST record (which the builder puts first).
pub fn ctl_records(id: &Identity, signer: &CtlSigner<'_>) -> Result<Vec<Record>, CtlError> {
    ctl_records_in(id, signer, &CtlCluster::default())
}

/// [`ctl_records`] of a cluster: the CCM+TFTP record of every node with its DNS name and
/// IP address (this node's first), then the CAPF of this node and of every other node
/// running CAPF.
pub fn ctl_records_in(
    id: &Identity,
    signer: &CtlSigner<'_>,
    cluster: &CtlCluster,
) -> Result<Vec<Record>, CtlError> {
    let mut out = Vec::new();
    if let CtlSigner::Token { signer, all } = signer {
        let der = signer
            .certificate()
            .to_der()
            .map_err(|e| CtlError::Build(e.to_string()))?;
        for c in all.iter() {
            if c.to_der().ok().as_deref() != Some(der.as_slice()) {
                out.push(record(Role::Sast, c)?);
            }
        }
    }
    let cm = record(Role::CcmTftp, own(id, OwnCert::CallManager)?)?;
    out.push(match &cluster.this {
        Some((name, host)) => with_address(cm, name, host),
        None => cm,
    });
    for n in &cluster.others {
        out.push(with_address(
            record(Role::CcmTftp, &n.callmanager)?,
            &n.name,
            &n.host,
        ));
    }
    out.push(record(Role::Capf, own(id, OwnCert::Capf)?)?);
    for n in &cluster.others {
        if let Some(c) = &n.capf {
            out.push(record(Role::Capf, c)?);
        }
    }
    Ok(out)
}

/// Build and sign the CTL.
pub fn build_ctl(
    id: &Identity,
    signer: &CtlSigner<'_>,
    timestamp: u32,
) -> Result<Vec<u8>, CtlError> {
    build_ctl_in(id, signer, &CtlCluster::default(), timestamp)
}

/// Build and sign the cluster's CTL ([`ctl_records_in`]).
pub fn build_ctl_in(
    id: &Identity,
    signer: &CtlSigner<'_>,
    cluster: &CtlCluster,
    timestamp: u32,
) -> Result<Vec<u8>, CtlError> {
    let records = ctl_records_in(id, signer, cluster)?;
    let p = TrustListParams::new(CTL_NAME, HashAlg::Sha1, timestamp);
    let key: &dyn FileSigner = match signer {
        CtlSigner::CallManager => id
            .get(OwnCert::CallManager)
            .ok_or(CtlError::Missing(OwnCert::CallManager))?,
        CtlSigner::ItlRecovery => id
            .get(OwnCert::ItlRecovery)
            .ok_or(CtlError::Missing(OwnCert::ItlRecovery))?,
        CtlSigner::Token { signer, .. } => *signer,
    };
    trustlist::build(&p, key, &records).map_err(|e| CtlError::Build(e.to_string()))
}

/// The full certificates of a list's SAST records.
pub fn sast_certs(list: &TrustList) -> Vec<X509> {
    list.plain_records()
        .filter(|r| r.role == Some(Role::Sast))
        .filter_map(|r| r.x509())
        .collect()
}
