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
    out.push(record(Role::CcmTftp, own(id, OwnCert::CallManager)?)?);
    out.push(record(Role::Capf, own(id, OwnCert::Capf)?)?);
    Ok(out)
}

/// Build and sign the CTL.
pub fn build_ctl(
    id: &Identity,
    signer: &CtlSigner<'_>,
    timestamp: u32,
) -> Result<Vec<u8>, CtlError> {
    let records = ctl_records(id, signer)?;
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
