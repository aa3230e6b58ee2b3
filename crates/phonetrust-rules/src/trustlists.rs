//! What this node's ITL lists and how it is signed: the layout of the reference
//! `ITLFile.tlv` (the signer's SAST record first, then ITLRecovery as SAST unless it signs,
//! CallManager as CCM+TFTP, CAPF, TVS, CallManager-ECDSA as TFTP). Which records may sign
//! a file a phone downloads is [`phonetrust_proto::trustlist::FILE_SIGNER_ROLES`].

use phonetrust_pki::profiles::OwnCert;
use phonetrust_proto::tlv::HashAlg;
use phonetrust_proto::trustlist::{self, CertForm, Record, Role, TrustListParams};
use phonetrust_store::identity::Identity;

/// The records of this node's ITL, after the signer's own SAST record: ITLRecovery (SAST,
/// unless it signs), CallManager (CCM+TFTP), CAPF, TVS, CallManager-ECDSA (TFTP) — the
/// layout of the reference `ITLFile.tlv`.
pub fn itl_records(id: &Identity, recovery_signed: bool) -> Result<Vec<Record>, String> {
    let get = |w: OwnCert| {
        id.get(w)
            .map(|c| &c.cert)
            .ok_or_else(|| format!("the identity has no {w:?} certificate"))
    };
    let rec = |role, w| {
        Record::from_cert(role, get(w)?, CertForm::Full).map_err(|e| format!("{w:?}: {e}"))
    };
    let mut out = Vec::new();
    if !recovery_signed {
        out.push(rec(Role::Sast, OwnCert::ItlRecovery)?);
    }
    out.push(rec(Role::CcmTftp, OwnCert::CallManager)?);
    out.push(rec(Role::Capf, OwnCert::Capf)?);
    out.push(rec(Role::Tvs, OwnCert::Tvs)?);
    out.push(rec(Role::Tftp, OwnCert::CallManagerEcdsa)?);
    Ok(out)
}

/// Build and sign this node's ITL.
pub fn build_itl(id: &Identity, recovery_signed: bool, timestamp: u32) -> Result<Vec<u8>, String> {
    let signer = id
        .get(if recovery_signed {
            OwnCert::ItlRecovery
        } else {
            OwnCert::CallManager
        })
        .ok_or("the identity has no signer certificate")?;
    let records = itl_records(id, recovery_signed)?;
    let p = TrustListParams::new("ITLFile.tlv", HashAlg::Sha1, timestamp);
    trustlist::build(&p, signer, &records).map_err(|e| e.to_string())
}

/// Version of the ITL layout: part of every source fingerprint, so that a new layout
/// rebuilds stored ITLs.
const LAYOUT: &[u8] = b"phonetrust-itl-1";

/// The fingerprint of what this node's ITL is built from: the layout, the signer choice
/// and every certificate it lists or is signed with. Equal fingerprints give the same
/// ITL but for its timestamp and signature.
pub fn itl_source(id: &Identity, recovery_signed: bool) -> Result<String, String> {
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
    let source = itl_source(id, recovery_signed)?;
    let damaged = match db.itl(node).await {
        Ok(Some(s)) if s.source == source => return Ok(s),
        Ok(_) => false,
        Err(phonetrust_store::StoreError::Db(_)) => true,
        Err(e) => return Err(e.to_string()),
    };
    let bytes = build_itl(id, recovery_signed, now)?;
    db.store_itl(node, &bytes, &source, i64::from(now), damaged)
        .await
        .map_err(|e| e.to_string())
}
