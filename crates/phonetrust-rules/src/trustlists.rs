//! What this node's ITL lists and how it is signed: the layout of the reference
//! `ITLFile.tlv` (the signer's SAST record first, then ITLRecovery as SAST unless it signs,
//! CallManager as CCM+TFTP, CAPF, TVS, CallManager-ECDSA as TFTP). Which records may sign
//! a file a phone downloads is [`phonetrust_proto::trustlist::FILE_SIGNER_ROLES`].
//!
//! In a cluster ([`ClusterPeers`]) each TFTP node's ITL also lists the TVS certificate of
//! every other node that runs TVS, after its own, and a subscriber lists the publisher's
//! CAPF (and its own, when it runs CAPF too).

use openssl::x509::X509;
use phonetrust_pki::profiles::OwnCert;
use phonetrust_proto::tlv::HashAlg;
use phonetrust_proto::trustlist::{self, CertForm, Record, Role, TrustListParams};
use phonetrust_store::identity::Identity;

/// What a node's ITL lists from the other nodes of its cluster (empty for a single node).
#[derive(Clone, Debug, Default)]
pub struct ClusterPeers {
    /// The TVS certificates of the other nodes running TVS, in cluster order.
    pub tvs: Vec<X509>,
    /// The publisher's CAPF certificate, when this node is not the publisher.
    pub publisher_capf: Option<X509>,
    /// The cluster's ITLRecovery (the publisher's), when this node is not the publisher
    /// and its own differs: listed in its place.
    pub publisher_recovery: Option<X509>,
    /// Whether this node runs CAPF itself (only asked of a subscriber: its own CAPF is
    /// then listed after the publisher's).
    pub own_capf: bool,
}

impl ClusterPeers {
    /// The cluster's nodes and published certificates as seen by `node`. A node that is
    /// not (yet) in the cluster table has no peers.
    pub async fn of(db: &phonetrust_store::Db, node: &str) -> Result<Self, String> {
        use crate::cluster::{Role, Services};
        let nodes = db.nodes().await.map_err(|e| e.to_string())?;
        let Some(me) = nodes.iter().find(|n| n.name == node) else {
            return Ok(Self::default());
        };
        let published = crate::cluster::Published::load(db)
            .await
            .map_err(|e| e.to_string())?;
        let cert_of = |n: &str, which: OwnCert| -> Result<Option<X509>, String> {
            Ok(published.get(n, which)?.cloned())
        };
        let mut out = Self::default();
        for n in nodes.iter().filter(|n| n.name != node) {
            let runs_tvs = Services::parse(&n.services).is_ok_and(|s| s.tvs);
            if runs_tvs && let Some(c) = cert_of(&n.name, OwnCert::Tvs)? {
                out.tvs.push(c);
            }
            if Role::parse(&n.role) == Some(Role::Publisher) {
                out.publisher_capf = cert_of(&n.name, OwnCert::Capf)?;
                out.publisher_recovery = cert_of(&n.name, OwnCert::ItlRecovery)?;
            }
        }
        out.own_capf = Services::parse(&me.services).is_ok_and(|s| s.capf);
        Ok(out)
    }
}

/// The records of this node's ITL, after the signer's own SAST record: ITLRecovery (SAST,
/// unless it signs), CallManager (CCM+TFTP), CAPF, TVS, CallManager-ECDSA (TFTP) — the
/// layout of the reference `ITLFile.tlv`.
pub fn itl_records(id: &Identity, recovery_signed: bool) -> Result<Vec<Record>, String> {
    itl_records_in(id, recovery_signed, &ClusterPeers::default())
}

/// [`itl_records`] of a node in a cluster: the publisher's CAPF (and this node's own when
/// it runs CAPF) in place of this node's, every other node's TVS after its own.
pub fn itl_records_in(
    id: &Identity,
    recovery_signed: bool,
    peers: &ClusterPeers,
) -> Result<Vec<Record>, String> {
    let get = |w: OwnCert| {
        id.get(w)
            .map(|c| &c.cert)
            .ok_or_else(|| format!("the identity has no {w:?} certificate"))
    };
    let rec = |role, w| {
        Record::from_cert(role, get(w)?, CertForm::Full).map_err(|e| format!("{w:?}: {e}"))
    };
    let peer =
        |role, c: &X509| Record::from_cert(role, c, CertForm::Full).map_err(|e| e.to_string());
    let mut out = Vec::new();
    if !signs_with_recovery(id, recovery_signed, peers) {
        match &peers.publisher_recovery {
            Some(c) if !same_cert(c, get(OwnCert::ItlRecovery)?) => out.push(peer(Role::Sast, c)?),
            _ => out.push(rec(Role::Sast, OwnCert::ItlRecovery)?),
        }
    }
    out.push(rec(Role::CcmTftp, OwnCert::CallManager)?);
    match &peers.publisher_capf {
        Some(c) => {
            out.push(peer(Role::Capf, c)?);
            if peers.own_capf {
                out.push(rec(Role::Capf, OwnCert::Capf)?);
            }
        }
        None => out.push(rec(Role::Capf, OwnCert::Capf)?),
    }
    out.push(rec(Role::Tvs, OwnCert::Tvs)?);
    for c in &peers.tvs {
        out.push(peer(Role::Tvs, c)?);
    }
    out.push(rec(Role::Tftp, OwnCert::CallManagerEcdsa)?);
    Ok(out)
}

/// The most an ITL may weigh: what phones accept (64 KB, about 39 certificates).
pub const MAX_ITL_BYTES: usize = 64 * 1024;

fn same_cert(a: &X509, b: &openssl::x509::X509Ref) -> bool {
    matches!((a.to_der(), b.to_der()), (Ok(x), Ok(y)) if x == y)
}

/// Whether the ITL is signed by ITLRecovery: when the parameter asks for it and this node
/// holds the cluster's ITLRecovery key (a subscriber whose ITLRecovery is not the
/// publisher's signs with its CallManager certificate, which phones trust either way).
pub fn signs_with_recovery(id: &Identity, recovery_signed: bool, peers: &ClusterPeers) -> bool {
    recovery_signed
        && match (&peers.publisher_recovery, id.get(OwnCert::ItlRecovery)) {
            (Some(p), Some(own)) => same_cert(p, &own.cert),
            _ => true,
        }
}

/// Build and sign this node's ITL.
pub fn build_itl(id: &Identity, recovery_signed: bool, timestamp: u32) -> Result<Vec<u8>, String> {
    build_itl_in(id, recovery_signed, &ClusterPeers::default(), timestamp)
}

/// Build and sign the ITL of a node in a cluster ([`itl_records_in`]).
pub fn build_itl_in(
    id: &Identity,
    recovery_signed: bool,
    peers: &ClusterPeers,
    timestamp: u32,
) -> Result<Vec<u8>, String> {
    let signer = itl_signer_in(id, recovery_signed, peers)?;
    let records = itl_records_in(id, recovery_signed, peers)?;
    let p = TrustListParams::new("ITLFile.tlv", HashAlg::Sha1, timestamp);
    let f = trustlist::build(&p, signer, &records).map_err(|e| e.to_string())?;
    if f.len() > MAX_ITL_BYTES {
        return Err(format!(
            "the ITL would be {} bytes ({} records), more than the {MAX_ITL_BYTES} phones accept: run TVS on fewer nodes",
            f.len(),
            records.len() + 1
        ));
    }
    Ok(f)
}

/// The certificate and key that sign this node's ITL: its CallManager certificate, or
/// ITLRecovery when the ITL is recovery-signed.
pub fn itl_signer_in<'a>(
    id: &'a Identity,
    recovery_signed: bool,
    peers: &ClusterPeers,
) -> Result<&'a phonetrust_proto::cert::CertAndKey, String> {
    id.get(if signs_with_recovery(id, recovery_signed, peers) {
        OwnCert::ItlRecovery
    } else {
        OwnCert::CallManager
    })
    .ok_or_else(|| "the identity has no signer certificate".to_string())
}

/// Version of the ITL layout: part of every source fingerprint, so that a new layout
/// rebuilds stored ITLs.
const LAYOUT: &[u8] = b"phonetrust-itl-1";

/// The fingerprint of what this node's ITL is built from: the layout, the signer choice
/// and every certificate it lists or is signed with. Equal fingerprints give the same
/// ITL but for its timestamp and signature.
pub fn itl_source(id: &Identity, recovery_signed: bool) -> Result<String, String> {
    itl_source_in(id, recovery_signed, &ClusterPeers::default())
}

/// [`itl_source`] of a node in a cluster: the peers' certificates count too. A single
/// node's fingerprint is unchanged by the cluster code (no peers, same bytes hashed).
pub fn itl_source_in(
    id: &Identity,
    recovery_signed: bool,
    peers: &ClusterPeers,
) -> Result<String, String> {
    let mut all = LAYOUT.to_vec();
    all.push(u8::from(recovery_signed));
    for w in [
        OwnCert::ItlRecovery,
        OwnCert::CallManager,
        OwnCert::Capf,
        OwnCert::Tvs,
        OwnCert::CallManagerEcdsa,
    ] {
        let der = id
            .get(w)
            .ok_or_else(|| format!("the identity has no {w:?} certificate"))?
            .cert
            .to_der()
            .map_err(|e| e.to_string())?;
        all.extend_from_slice(&(der.len() as u64).to_be_bytes());
        all.extend_from_slice(&der);
    }
    let peer_certs = peers
        .publisher_capf
        .iter()
        .chain(&peers.publisher_recovery)
        .chain(&peers.tvs);
    if peers.publisher_capf.is_some() || !peers.tvs.is_empty() {
        all.extend_from_slice(b"cluster");
        all.push(u8::from(peers.publisher_recovery.is_some()));
        all.push(u8::from(peers.own_capf));
        all.push(u8::from(peers.publisher_capf.is_some()));
    }
    for c in peer_certs {
        let der = c.to_der().map_err(|e| e.to_string())?;
        all.extend_from_slice(&(der.len() as u64).to_be_bytes());
        all.extend_from_slice(&der);
    }
    Ok(phonetrust_proto::codec::hex(
        &phonetrust_proto::cert::sha256(&all),
    ))
}

/// The ITL this node serves — the one `show itl` prints and TFTP/HTTP hand out: the
/// stored ITL of `node` while it was built from the current identity and signer, else a
/// new one built now (`now`) and stored. Two processes building at once serve the one
/// stored first.
pub async fn served_itl(
    db: &phonetrust_store::Db,
    node: &str,
    id: &Identity,
    recovery_signed: bool,
    now: u32,
) -> Result<phonetrust_store::itlfile::StoredItl, String> {
    let peers = ClusterPeers::of(db, node).await?;
    let source = itl_source_in(id, recovery_signed, &peers)?;
    let damaged = match db.itl(node).await {
        Ok(Some(s)) if s.source == source => return Ok(s),
        Ok(_) => false,
        Err(phonetrust_store::StoreError::Db(_)) => true,
        Err(e) => return Err(e.to_string()),
    };
    let bytes = build_itl_in(id, recovery_signed, &peers, now)?;
    let signer = itl_signer_in(id, recovery_signed, &peers)?
        .cert
        .digest(openssl::hash::MessageDigest::sha256())
        .map_err(|e| e.to_string())?;
    let signer = phonetrust_proto::codec::hex(&signer);
    db.store_itl(node, &bytes, &source, &signer, i64::from(now), damaged)
        .await
        .map_err(|e| e.to_string())
}
