//! `phonetrust utils itl ...`: ITL recovery.
//!
//! `utils itl reset localkey` has the TFTP service sign the ITL with the ITLRecovery key:
//! phones whose ITL no longer lists the current signer (a regenerated CallManager
//! certificate, a lost ITL) still list ITLRecovery and accept it. `utils itl restore` goes
//! back to the CallManager signer once the phones have taken the recovery-signed ITL
//! (which lists the current CallManager certificate).

use std::process::ExitCode;

use anyhow::{Context, Result};
use phonetrust_pki::profiles::OwnCert;
use phonetrust_store::identity;
use phonetrust_store::params::ITL_SIGNER;

use crate::node::Node;

/// `utils` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UtilsCmd {
    /// ITL recovery (`utils itl reset localkey`, `utils itl restore`).
    #[command(subcommand)]
    Itl(ItlCmd),
}

/// `utils itl` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ItlCmd {
    /// Sign the ITL with a recovery key.
    #[command(subcommand)]
    Reset(ResetCmd),
    /// Sign the ITL with the CallManager certificate again (after a reset, once the phones
    /// have the recovery-signed ITL).
    Restore,
}

/// `utils itl reset` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ResetCmd {
    /// Sign the ITL with this node's ITLRecovery key.
    Localkey,
}

/// Run a `utils` command.
pub(crate) async fn run(node: &Node, cmd: UtilsCmd) -> Result<ExitCode> {
    let db = node.db().await?;
    let id = identity::load(&node.data)?;
    let host = id.node().map(|n| n.host).unwrap_or_default();
    let subject = |w: OwnCert| {
        id.get(w)
            .map(|c| phonetrust_proto::cert::name_string(c.cert.subject_name()))
            .unwrap_or_default()
    };
    let now = phonetrust_proto::clock::unix_now();
    match cmd {
        UtilsCmd::Itl(ItlCmd::Reset(ResetCmd::Localkey)) => {
            id.get(OwnCert::ItlRecovery)
                .context("the identity has no ITLRecovery certificate")?;
            println!("Locating active Tftp servers in the cluster.....");
            println!();
            println!("Following is the list of Active tftp servers in the cluster");
            println!();
            println!("{host}");
            println!();
            db.set_param(ITL_SIGNER, "1", now).await?;
            println!(
                "The ITL file is now signed with the ITLRecovery certificate ({}).",
                subject(OwnCert::ItlRecovery)
            );
            println!(
                "A running `phonetrust serve` serves it within a second. Reset the phones: they accept it because their ITL lists ITLRecovery."
            );
            println!(
                "Once they have it, run `phonetrust utils itl restore` to sign with the CallManager certificate again."
            );
        }
        UtilsCmd::Itl(ItlCmd::Restore) => {
            db.set_param(ITL_SIGNER, "0", now).await?;
            println!(
                "The ITL file is signed with the CallManager certificate ({}) again.",
                subject(OwnCert::CallManager)
            );
            println!(
                "Phones that took the ITLRecovery-signed ITL accept it: that ITL lists this CallManager certificate."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `show itl`: the ITL this node serves, built now, in the seeds' layout.
pub(crate) async fn show_itl(node: &Node) -> Result<ExitCode> {
    let db = node.db().await?;
    let id = identity::load(&node.data)?;
    let recovery = db.param(ITL_SIGNER).await? == 1;
    let now = u32::try_from(phonetrust_proto::clock::unix_now()).unwrap_or(u32::MAX);
    let bytes = phonetrust_services::provision::build_itl(&id, recovery, now)
        .map_err(anyhow::Error::msg)?;
    let report = phonetrust_proto::show::trust_list(&bytes, Some(i64::from(now)), None)?;
    print!("{}", report.text);
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
