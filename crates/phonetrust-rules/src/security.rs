//! The cluster's security actions as every shell runs them (`utils ctl …`, `utils itl …`
//! on the command line, the Mixed Mode page and the API): mixed mode on and off, the CTL
//! rebuilt or recovery-signed, and ITL recovery. Each action has the question asked
//! before it and returns what the administrator is told after it; the CTL and the mode
//! change in one transaction.

use phonetrust_pki::profiles::OwnCert;
use phonetrust_store::ctlfile::{ClusterSecurityMode, CtlChange};
use phonetrust_store::params::ITL_SIGNER;
use phonetrust_store::{Db, StoreError, identity, layout::DataDir};

use crate::ctl::{self, CtlError, CtlSigner};

/// What TFTP, HTTP and TVS do after the CTL changed, and what the administrator does.
pub const RELOAD: &str = "Services that reload: TFTP and HTTP (serve the new CTL) and TVS (trusts its records); a running `phonetrust serve` does so within a second, no restart needed.\nReset the phones so that they download the CTL file.";

/// Why an action was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The CTL could not be built (or this node is a subscriber).
    #[error(transparent)]
    Ctl(#[from] CtlError),
    /// The database or the identity could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `utils ctl update CTLFile` outside mixed mode.
    #[error(
        "the cluster is not in Mixed mode (Cluster Security Mode 0): run `phonetrust utils ctl set-cluster mixed-mode` first"
    )]
    NotMixed,
    /// `utils ctl reset localkey` outside mixed mode.
    #[error(
        "the cluster is not in Mixed mode: there is no CTL to recover (for the ITL use `phonetrust utils itl reset localkey`)"
    )]
    NoCtlToRecover,
    /// The identity has no ITLRecovery certificate.
    #[error("the identity has no ITLRecovery certificate (run `phonetrust init`)")]
    NoRecovery,
}

/// One of the cluster's security actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityAction {
    /// `utils ctl set-cluster mixed-mode`.
    MixedMode,
    /// `utils ctl set-cluster non-secure-mode`.
    NonSecureMode,
    /// `utils ctl update CTLFile`.
    UpdateCtl,
    /// `utils ctl reset localkey`.
    ResetCtl,
    /// `utils itl reset localkey`.
    ItlReset,
    /// `utils itl restore`.
    ItlRestore,
}

impl SecurityAction {
    /// Every action, in the order the Mixed Mode page offers them.
    pub const ALL: [SecurityAction; 6] = [
        Self::MixedMode,
        Self::UpdateCtl,
        Self::ResetCtl,
        Self::NonSecureMode,
        Self::ItlReset,
        Self::ItlRestore,
    ];

    /// Its name in URLs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MixedMode => "mixed-mode",
            Self::NonSecureMode => "non-secure-mode",
            Self::UpdateCtl => "update-ctl",
            Self::ResetCtl => "reset-ctl",
            Self::ItlReset => "itl-reset",
            Self::ItlRestore => "itl-restore",
        }
    }

    /// From [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The command line that does the same.
    pub fn command(self) -> &'static str {
        match self {
            Self::MixedMode => "utils ctl set-cluster mixed-mode",
            Self::NonSecureMode => "utils ctl set-cluster non-secure-mode",
            Self::UpdateCtl => "utils ctl update CTLFile",
            Self::ResetCtl => "utils ctl reset localkey",
            Self::ItlReset => "utils itl reset localkey",
            Self::ItlRestore => "utils itl restore",
        }
    }

    /// What it does, as the confirmation question says it ("This operation …").
    pub fn what(self) -> &'static str {
        match self {
            Self::MixedMode => "sets the cluster to Mixed mode",
            Self::NonSecureMode => "sets the cluster to non-secure mode",
            Self::UpdateCtl => "updates the CTLFile",
            Self::ResetCtl => "signs the CTLFile with the ITLRecovery key",
            Self::ItlReset => "signs the ITL file with the ITLRecovery key",
            Self::ItlRestore => "signs the ITL file with the CallManager certificate again",
        }
    }

    /// What stays when the administrator says no.
    pub fn unchanged(self) -> &'static str {
        match self {
            Self::MixedMode => "the cluster stays in non-secure mode.",
            Self::NonSecureMode => "the cluster stays in Mixed mode.",
            Self::UpdateCtl | Self::ResetCtl => "the CTL file is unchanged.",
            Self::ItlReset | Self::ItlRestore => "the ITL file is unchanged.",
        }
    }

    /// When the action has nothing to do (the mode already set), what to tell instead of
    /// asking; refusals (no CTL to rebuild) are errors. Checked before the question.
    pub async fn precheck(
        self,
        data: &DataDir,
        db: &Db,
    ) -> Result<Option<&'static str>, SecurityError> {
        let mixed = db.security_mode().await? == ClusterSecurityMode::Mixed;
        let id = identity::load(data)?;
        if matches!(
            self,
            Self::MixedMode | Self::NonSecureMode | Self::UpdateCtl | Self::ResetCtl
        ) {
            // Refused on a subscriber before anything is asked: the CTL is the publisher's.
            ctl_cluster(db, &id).await?;
        }
        Ok(match self {
            Self::MixedMode if mixed => Some(
                "The cluster is already in Mixed mode. To rebuild the CTL file run `phonetrust utils ctl update CTLFile`.",
            ),
            Self::NonSecureMode if !mixed => Some("The cluster is already in non-secure mode."),
            Self::UpdateCtl if !mixed => return Err(SecurityError::NotMixed),
            Self::ResetCtl if !mixed => return Err(SecurityError::NoCtlToRecover),
            Self::ItlReset if id.get(OwnCert::ItlRecovery).is_none() => {
                return Err(SecurityError::NoRecovery);
            }
            _ => None,
        })
    }

    /// Run it (after [`Self::precheck`] and the confirmation): what to tell, line by line.
    pub async fn run(
        self,
        data: &DataDir,
        db: &Db,
        now: i64,
    ) -> Result<Vec<String>, SecurityError> {
        if let Some(m) = self.precheck(data, db).await? {
            return Ok(vec![m.to_string()]);
        }
        let id = identity::load(data)?;
        let subject = |w: OwnCert| {
            id.get(w)
                .map(|c| phonetrust_proto::cert::name_string(c.cert.subject_name()))
                .unwrap_or_default()
        };
        let stamp = u32::try_from(now).unwrap_or(u32::MAX);
        let build = |recovery: bool| {
            let id = &id;
            async move {
                let cluster = ctl_cluster(db, id).await?;
                // Made after the await: a signer may hold a token that is not `Send`.
                let signer = if recovery {
                    CtlSigner::ItlRecovery
                } else {
                    CtlSigner::CallManager
                };
                Ok::<_, SecurityError>(ctl::build_ctl_in(id, &signer, &cluster, stamp)?)
            }
        };
        let mut out = Vec::new();
        match self {
            Self::MixedMode => {
                out.push("Moving Cluster to Mixed Mode".into());
                let bytes = build(false).await?;
                db.set_cluster_security(
                    CtlChange::Write(&bytes),
                    Some(ClusterSecurityMode::Mixed),
                    now,
                )
                .await?;
                out.push("Cluster set to Mixed Mode".into());
                out.push(RELOAD.into());
            }
            Self::NonSecureMode => {
                out.push("Moving Cluster to non-secure mode".into());
                db.set_cluster_security(CtlChange::Keep, Some(ClusterSecurityMode::NonSecure), now)
                    .await?;
                out.push("Cluster set to non-secure mode".into());
                out.push("The CTL file stays on the TFTP server and on the phones. Once no phone needs it, delete it with `phonetrust file delete tftp CTLFile.tlv`; phones keep their copy until it is deleted on each phone.".into());
            }
            Self::UpdateCtl | Self::ResetCtl => {
                let recovery = self == Self::ResetCtl;
                out.push("Updating CTL file".into());
                let bytes = build(recovery).await?;
                db.set_cluster_security(CtlChange::Write(&bytes), None, now)
                    .await?;
                if recovery {
                    out.push("CTL file Updated: signed with the ITLRecovery certificate.".into());
                    out.push("Reset the phones: they accept it because their trust list lists ITLRecovery. Then run `phonetrust utils ctl update CTLFile` to sign with the CallManager certificate again.".into());
                } else {
                    out.push("CTL file Updated".into());
                    out.push(RELOAD.into());
                }
            }
            Self::ItlReset => {
                let host = id.node().map(|n| n.host).unwrap_or_default();
                out.push("Locating active Tftp servers in the cluster.....".into());
                out.push(String::new());
                out.push("Following is the list of Active tftp servers in the cluster".into());
                out.push(String::new());
                out.push(host);
                out.push(String::new());
                db.set_param(ITL_SIGNER, "1", now).await?;
                out.push(format!(
                    "The ITL file is now signed with the ITLRecovery certificate ({}).",
                    subject(OwnCert::ItlRecovery)
                ));
                out.push("A running `phonetrust serve` serves it within a second. Reset the phones: they accept it because their ITL lists ITLRecovery.".into());
                out.push("Once they have it, run `phonetrust utils itl restore` to sign with the CallManager certificate again.".into());
            }
            Self::ItlRestore => {
                db.set_param(ITL_SIGNER, "0", now).await?;
                out.push(format!(
                    "The ITL file is signed with the CallManager certificate ({}) again.",
                    subject(OwnCert::CallManager)
                ));
                out.push("Phones that took the ITLRecovery-signed ITL accept it: that ITL lists this CallManager certificate.".into());
            }
        }
        Ok(out)
    }
}

/// The cluster as this node's CTL lists it (refused on a subscriber).
pub async fn ctl_cluster(db: &Db, id: &identity::Identity) -> Result<ctl::CtlCluster, CtlError> {
    let Some(me) = id.node() else {
        return Ok(ctl::CtlCluster::default());
    };
    ctl::CtlCluster::of(db, &me.host).await
}

/// The actions run inside the web server's tasks: their futures must be `Send`.
#[allow(dead_code)]
fn _futures_are_send(a: SecurityAction, d: &DataDir, db: &Db) {
    fn is_send<T: Send>(_: T) {}
    is_send(a.precheck(d, db));
    is_send(a.run(d, db, 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_commands_are_the_seeds() {
        for a in SecurityAction::ALL {
            assert_eq!(SecurityAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(SecurityAction::parse("mixed"), None);
        assert_eq!(
            SecurityAction::UpdateCtl.command(),
            "utils ctl update CTLFile"
        );
    }
}
