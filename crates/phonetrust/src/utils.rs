//! `phonetrust utils itl ...` (ITL recovery), `utils ctl ...` (mixed mode and the CTL),
//! `show itl`, `show ctl` and `file delete tftp NAME`.
//!
//! `utils itl reset localkey` has the TFTP service sign the ITL with the ITLRecovery key:
//! phones whose ITL no longer lists the current signer (a regenerated CallManager
//! certificate, a lost ITL) still list ITLRecovery and accept it. `utils itl restore` goes
//! back to the CallManager signer once the phones have taken the recovery-signed ITL
//! (which lists the current CallManager certificate).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use phonetrust_rules::ctl::{self, CtlSigner};
use phonetrust_store::ctlfile::{ClusterSecurityMode, CtlChange, StoredCtl};
use phonetrust_store::identity;
use phonetrust_store::params::ITL_SIGNER;

use crate::node::Node;

/// `utils` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UtilsCmd {
    /// ITL recovery (`utils itl reset localkey`, `utils itl restore`).
    #[command(subcommand)]
    Itl(ItlCmd),
    /// Mixed mode and the cluster CTL (`utils ctl set-cluster mixed-mode`, `utils ctl
    /// update CTLFile`, `utils ctl reset localkey`, `utils ctl set-cluster
    /// non-secure-mode`).
    #[command(subcommand)]
    Ctl(CtlCmd),
}

/// `utils ctl` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CtlCmd {
    /// Set the cluster security mode: `mixed-mode` builds the tokenless CTL (signed by
    /// the CallManager certificate) and sets Cluster Security Mode to 1;
    /// `non-secure-mode` sets it to 0 (the CTL stays until `file delete tftp
    /// CTLFile.tlv`; phones keep theirs until reset by hand).
    SetCluster {
        /// `mixed-mode` or `non-secure-mode`.
        #[arg(value_enum)]
        mode: ClusterMode,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Rebuild the CTL (`utils ctl update CTLFile`): tokenless, signed by the current
    /// CallManager certificate — also the way from hardware tokens to tokenless.
    Update {
        /// The file: `CTLFile`.
        #[arg(value_parser = ["CTLFile"])]
        file: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Sign the CTL with the ITLRecovery key (`utils ctl reset localkey`), for phones that
    /// no longer trust the CTL's signer.
    Reset {
        /// `localkey`.
        #[arg(value_parser = ["localkey"])]
        what: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// Cluster security modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ClusterMode {
    /// Cluster Security Mode 1: CTL, encrypted signalling and media possible.
    MixedMode,
    /// Cluster Security Mode 0.
    NonSecureMode,
}

/// `file` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum FileCmd {
    /// `file delete tftp NAME`: delete a file from the TFTP (static) directory, e.g. a CTL
    /// left behind in non-secure mode.
    Delete {
        /// `tftp`.
        #[arg(value_parser = ["tftp"])]
        area: String,
        /// File name, relative to the TFTP directory.
        name: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// `ctl-client`: what the vendor's CTL Client plugin does with hardware tokens.
#[derive(Debug, clap::Args)]
pub(crate) struct CtlClientArgs {
    /// PKCS#11 module of the token middleware (SoftHSM2:
    /// /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, env = "PHONETRUST_PKCS11_MODULE")]
    module: std::path::PathBuf,
    /// Label of a security token; give it again for each token. The first one inserted
    /// signs the CTL; every one is listed as SAST (System Administrator Security Token).
    #[arg(long = "token", required = true)]
    tokens: Vec<String>,
    /// The tokens' user PIN (better given in the environment than on the command line).
    #[arg(long, env = "PHONETRUST_TOKEN_PIN", hide_env_values = true)]
    pin: String,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    yes: bool,
}

/// `ctl-client`: sign the CTL with a hardware token (mixed mode with tokens).
pub(crate) async fn ctl_client(node: &Node, a: CtlClientArgs) -> Result<ExitCode> {
    use phonetrust_services::token::Module;
    use phonetrust_store::model::TrustStore;
    let db = node.db().await?;
    let id = identity::load(&node.data)?;
    let cluster = ctl_cluster(&db, &id).await?;
    let module = Module::load(&a.module)?;
    let mut tokens = Vec::new();
    for label in &a.tokens {
        tokens.push(module.open(label, &a.pin)?);
    }
    let Some(signer) = tokens.first() else {
        bail!("give at least one --token");
    };
    let mixed = db.security_mode().await? == ClusterSecurityMode::Mixed;
    match db.ctl().await?.map(|c| c.bytes) {
        Some(bytes) => {
            // Updating an existing CTL: the inserted token must be one the CTL lists.
            let list = phonetrust_proto::trustlist::parse(&bytes)
                .context("the CTL file on the server does not parse; delete it with `phonetrust file delete tftp CTLFile.tlv`")?;
            let der = signer.cert().to_der()?;
            let listed = ctl::sast_certs(&list)
                .iter()
                .any(|c| c.to_der().ok().as_deref() == Some(der.as_slice()));
            if !listed {
                return Err(ctl::CtlError::TokenNotInCtl.into());
            }
        }
        None if mixed => outln!(
            "No CTL File exists on the server but the Call Manager Cluster Security Mode is in Secure Mode.\nFor the system to function, you must create the CTL File and set Call Manager Cluster the Secure Mode."
        ),
        None => {}
    }
    // Phones holding a CTL that does not list a token verify it through TVS, which knows
    // tokens from Phone-SAST-trust.
    let sast = db.trust_certs(TrustStore::PhoneSast).await?;
    for t in &tokens {
        let der = t.cert().to_der()?;
        if !sast
            .iter()
            .any(|c| c.to_der().ok().as_deref() == Some(der.as_slice()))
        {
            outln!(
                "Warning: the certificate of token '{}' ({}) is not in Phone-SAST-trust: phones whose CTL does not list it cannot verify the new CTL through TVS. Export it from the token and run `phonetrust set cert import trust Phone-SAST-trust FILE`.",
                t.label(),
                phonetrust_proto::cert::name_string(t.cert().subject_name())
            );
        }
    }
    let what = if mixed {
        "updates the CTLFile, signed by the security token"
    } else {
        "sets the cluster to Mixed mode with a CTLFile signed by the security token"
    };
    if !crate::confirm::operation(
        what,
        a.yes,
        "the CTL file and the cluster security mode are unchanged.",
    )? {
        return Ok(ExitCode::FAILURE);
    }
    let certs: Vec<openssl::x509::X509> = tokens.iter().map(|t| t.cert().clone()).collect();
    let bytes = ctl::build_ctl_in(
        &id,
        &CtlSigner::Token {
            signer,
            all: &certs,
        },
        &cluster,
        timestamp(),
    )?;
    // The CTL and the mode in one transaction.
    db.set_cluster_security(
        CtlChange::Write(&bytes),
        (!mixed).then_some(ClusterSecurityMode::Mixed),
        phonetrust_proto::clock::unix_now(),
    )
    .await?;
    if !mixed {
        outln!("Cluster set to Mixed Mode");
    }
    outln!(
        "CTL file Updated: signed by security token '{}' ({}), {} token(s) listed.",
        signer.label(),
        phonetrust_proto::cert::name_string(signer.cert().subject_name()),
        tokens.len()
    );
    outln!("{RELOAD}");
    Ok(ExitCode::SUCCESS)
}

use phonetrust_rules::security::{RELOAD, SecurityAction, ctl_cluster};

fn timestamp() -> u32 {
    u32::try_from(phonetrust_proto::clock::unix_now()).unwrap_or(u32::MAX)
}

/// Run one of the cluster's security actions: tell when there is nothing to do, ask,
/// then run it.
async fn security(node: &Node, action: SecurityAction, yes: bool) -> Result<ExitCode> {
    let db = node.db().await?;
    if let Some(m) = action.precheck(&node.data, &db).await? {
        outln!("{m}");
        return Ok(ExitCode::SUCCESS);
    }
    if !crate::confirm::operation(action.what(), yes, action.unchanged())? {
        return Ok(ExitCode::FAILURE);
    }
    for l in action
        .run(&node.data, &db, phonetrust_proto::clock::unix_now())
        .await?
    {
        outln!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_ctl(node: &Node, cmd: CtlCmd) -> Result<ExitCode> {
    let (action, yes) = match cmd {
        CtlCmd::SetCluster {
            mode: ClusterMode::MixedMode,
            yes,
        } => (SecurityAction::MixedMode, yes),
        CtlCmd::SetCluster {
            mode: ClusterMode::NonSecureMode,
            yes,
        } => (SecurityAction::NonSecureMode, yes),
        CtlCmd::Update { yes, .. } => (SecurityAction::UpdateCtl, yes),
        CtlCmd::Reset { yes, .. } => (SecurityAction::ResetCtl, yes),
    };
    security(node, action, yes).await
}

/// `file delete tftp NAME`.
pub(crate) async fn file(node: &Node, cmd: FileCmd) -> Result<ExitCode> {
    let FileCmd::Delete { name, yes, .. } = cmd;
    let rel = phonetrust_rules::names::static_path(&name)
        .map_err(|_| anyhow::anyhow!("{name}: not a file name inside the TFTP directory"))?;
    // The CTL is kept in the database with the cluster's security mode.
    let is_ctl = rel.as_os_str() == ctl::CTL_NAME;
    let path = node.static_dir().join(&rel);
    let db = if is_ctl { Some(node.db().await?) } else { None };
    let found = match &db {
        Some(db) => db.ctl_stamp().await?.is_some(),
        None => path.is_file(),
    };
    if !found {
        outln!("files: found = 0, deleted = 0");
        return Ok(ExitCode::FAILURE);
    }
    outln!("Delete the File {name}?");
    if !crate::confirm::ask("Enter \"y\" followed by return to continue: ", yes)? {
        outln!("files: found = 1, deleted = 0");
        return Ok(ExitCode::FAILURE);
    }
    match &db {
        Some(db) => {
            db.set_cluster_security(CtlChange::Delete, None, phonetrust_proto::clock::unix_now())
                .await?
        }
        None => {
            std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?
        }
    }
    outln!("files: found = 1, deleted = 1");
    Ok(ExitCode::SUCCESS)
}

/// `utils itl` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ItlCmd {
    /// Sign the ITL with a recovery key.
    #[command(subcommand)]
    Reset(ResetCmd),
    /// Sign the ITL with the CallManager certificate again (after a reset, once the phones
    /// have the recovery-signed ITL).
    Restore {
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// `utils itl reset` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ResetCmd {
    /// Sign the ITL with this node's ITLRecovery key.
    Localkey {
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// Run a `utils` command.
pub(crate) async fn run(node: &Node, cmd: UtilsCmd) -> Result<ExitCode> {
    match cmd {
        UtilsCmd::Ctl(c) => run_ctl(node, c).await,
        UtilsCmd::Itl(ItlCmd::Reset(ResetCmd::Localkey { yes })) => {
            security(node, SecurityAction::ItlReset, yes).await
        }
        UtilsCmd::Itl(ItlCmd::Restore { yes }) => {
            security(node, SecurityAction::ItlRestore, yes).await
        }
    }
}

/// `show itl`: the ITL this node serves, built now, in the seeds' layout.
pub(crate) async fn show_itl(node: &Node, of: Option<String>) -> Result<ExitCode> {
    let db = node.db().await?;
    let id = identity::load(&node.data)?;
    let host = id
        .node()
        .map(|n| n.host)
        .context("the identity has no CallManager certificate")?;
    let stored = match of {
        // Another TFTP node of the cluster: the ITL it stored, as it serves it.
        Some(other) if !other.eq_ignore_ascii_case(&host) => {
            let Some(s) = db.itl(&other).await? else {
                out!(
                    "{}",
                    phonetrust_proto::show::missing(phonetrust_proto::show::ListKind::Itl)
                );
                let known = db.itl_nodes().await?;
                outln!(
                    "No ITL of TFTP node {other} is stored (nodes with an ITL: {}).",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
                return Ok(ExitCode::FAILURE);
            };
            s
        }
        _ => {
            let recovery = db.param(ITL_SIGNER).await? == 1;
            let now = u32::try_from(phonetrust_proto::clock::unix_now()).unwrap_or(u32::MAX);
            phonetrust_rules::trustlists::served_itl(&db, &host, &id, recovery, now)
                .await
                .map_err(anyhow::Error::msg)?
        }
    };
    let report = phonetrust_proto::show::trust_list(&stored.bytes, Some(stored.updated_at), None)?;
    out!("{}", report.text);
    outln!(
        "This is the ITL TFTP node {} serves (as phones download it).",
        stored.node
    );
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `show itl status`: a count per state, then the phones not on their node's current ITL
/// (all phones with `all`). This node's ITL is brought up to date first, as a download
/// would, so that a change of its certificates counts at once.
pub(crate) async fn show_itl_status(node: &Node, all: bool, csv: bool) -> Result<ExitCode> {
    use phonetrust_rules::itlstatus::{self, ItlState};
    let db = node.db().await?;
    let id = identity::load(&node.data)?;
    if let Some(host) = id.node().map(|n| n.host) {
        let recovery = db.param(ITL_SIGNER).await? == 1;
        let now = u32::try_from(phonetrust_proto::clock::unix_now()).unwrap_or(u32::MAX);
        phonetrust_rules::trustlists::served_itl(&db, &host, &id, recovery, now)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let phones = itlstatus::status(&db).await.map_err(anyhow::Error::msg)?;
    let shown: Vec<_> = phones
        .iter()
        .filter(|p| all || p.state != ItlState::Current)
        .collect();
    let row = |p: &itlstatus::PhoneItl| -> Vec<String> {
        let l = p.last.as_ref();
        vec![
            p.device.clone(),
            p.state.label().to_string(),
            l.map(|l| l.node.clone()).unwrap_or_default(),
            l.map(|l| l.protocol.clone()).unwrap_or_default(),
            l.map(|l| phonetrust_store::model::format_time(l.at))
                .unwrap_or_default(),
            l.map(|l| l.sha256.clone()).unwrap_or_default(),
            p.current.clone().unwrap_or_default(),
        ]
    };
    const HEADER: [&str; 7] = [
        "Phone",
        "ITL status",
        "Node",
        "Protocol",
        "Last ITL download",
        "SHA-256 downloaded",
        "SHA-256 served now",
    ];
    if csv {
        outln!("phone,status,node,protocol,last_download,sha256_downloaded,sha256_current");
        for p in &shown {
            let f: Vec<String> = row(p).iter().map(|c| crate::report::csv_field(c)).collect();
            outln!("{}", f.join(","));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let count = |s: ItlState| phones.iter().filter(|p| p.state == s).count();
    for s in [
        ItlState::Current,
        ItlState::Outdated,
        ItlState::NotSeenSinceSignerChange,
        ItlState::Never,
    ] {
        outln!("{:<36} {}", format!("{}:", s.label()), count(s));
    }
    if !shown.is_empty() {
        outln!();
        let mut t = crate::table::Table::new(&HEADER);
        for p in &shown {
            let mut r = row(p);
            // The table shows checksum prefixes; --csv gives them whole.
            for c in r.iter_mut().skip(5) {
                c.truncate(16);
            }
            t.row(r);
        }
        out!("{}", t.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// `show ctl`: the CTL this node serves, in the seeds' layout; "CTL File not found" when
/// there is none. A CTL left behind in non-secure mode, and mixed mode without a CTL, are
/// reported as such.
pub(crate) async fn show_ctl(node: &Node) -> Result<ExitCode> {
    let db = node.db().await?;
    let mixed = db.security_mode().await? == ClusterSecurityMode::Mixed;
    let Some(StoredCtl {
        bytes,
        updated_at: modified,
        ..
    }) = db.ctl().await?
    else {
        out!(
            "{}",
            phonetrust_proto::show::missing(phonetrust_proto::show::ListKind::Ctl)
        );
        if mixed {
            outln!(
                "No CTL File exists on the server but the Call Manager Cluster Security Mode is in Secure Mode.\nFor the system to function, you must create the CTL File (`phonetrust utils ctl update CTLFile`)."
            );
        }
        return Ok(ExitCode::FAILURE);
    };
    let report = phonetrust_proto::show::trust_list(
        &bytes,
        Some(modified),
        Some(phonetrust_proto::show::ListKind::Ctl),
    )?;
    out!("{}", report.text);
    if !mixed {
        outln!(
            "\nNote: the cluster is not in Mixed mode (ClusterSecurityMode 0), yet a CTL file is on the server: it was left behind when the cluster moved back to non-secure mode. Delete it with `phonetrust file delete tftp CTLFile.tlv` once no phone needs it."
        );
    }
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
