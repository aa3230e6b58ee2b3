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
