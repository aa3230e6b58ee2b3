//! `phonetrust phone bulk schedule|change|cancel`: a CAPF operation for every phone a
//! selection matches (the vendor's Bulk Administration Tool), with `--dry-run`, a
//! progress bar on a terminal and a per-phone report. The rules are
//! [`phonetrust_rules::fleet`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use phonetrust_proto::rand::OsRandom;
use phonetrust_rules::fleet::{self, BulkAction, Selection};
use phonetrust_store::devices::{CapfChange, DeviceFilter, LscFilter};
use phonetrust_store::model::{AuthMode, CertOperation, EcCurve, KeyOrder, OpState};

use crate::fsutil::now;
use crate::phones::{parse, parse_when};

use fleet::STEP;

/// `phonetrust phone bulk ...`
#[derive(Debug, Subcommand)]
pub(crate) enum BulkCmd {
    /// Schedule a CAPF operation on every phone the filters match (replacing what was
    /// scheduled): `phone bulk schedule --model 8845 --operation install --auth lsc`.
    Schedule {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        op: OpArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Change the settings of the operation pending on every phone the filters match
    /// (phones with nothing pending are left alone).
    Change {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        op: OpArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Cancel the operation pending on every phone the filters match.
    Cancel {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// Which phones. At least one filter, or `--all`.
#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
    /// Phones with this security profile.
    #[arg(long)]
    profile: Option<String>,
    /// Phones of this model, e.g. 8845.
    #[arg(long)]
    model: Option<String>,
    /// Phones whose LSC was issued by this issuer, as `report capf` prints it (e.g.
    /// "CN=CAPF-1a2b3c4d, O=Example"): a CAPF generation.
    #[arg(long)]
    issuer: Option<String>,
    /// Phones whose LSC expires within this many days.
    #[arg(long)]
    expires_within: Option<u32>,
    /// LSC status: installed or none.
    #[arg(long, value_parser = ["installed", "none"])]
    lsc: Option<String>,
    /// Operation status: none, pending, success, failed.
    #[arg(long, value_parser = parse::<OpState>)]
    status: Option<OpState>,
    /// Only the phones named in this CSV file (first column; a header row is skipped).
    #[arg(long, value_name = "FILE")]
    names: Option<PathBuf>,
    /// Every phone (required when no filter is given).
    #[arg(long)]
    all: bool,
}

/// The operation's settings.
#[derive(Debug, Args)]
pub(crate) struct OpArgs {
    /// Certificate operation: install (Install/Upgrade), delete, troubleshoot.
    #[arg(long, value_parser = parse::<CertOperation>)]
    operation: Option<CertOperation>,
    /// Authentication mode: null-string, auth-string, lsc, mic.
    #[arg(long, value_parser = parse::<AuthMode>)]
    auth: Option<AuthMode>,
    /// One authentication string for every phone (4 to 16 digits).
    #[arg(long, conflicts_with = "random_auth_string")]
    auth_string: Option<String>,
    /// A random 6-digit authentication string for each phone (in the report).
    #[arg(long)]
    random_auth_string: bool,
    /// Key order: rsa, ec, ec-rsa, rsa-ec.
    #[arg(long, value_parser = parse::<KeyOrder>)]
    key_order: Option<KeyOrder>,
    /// RSA key size: 1024, 2048, 3072, 4096.
    #[arg(long)]
    rsa_bits: Option<u32>,
    /// EC key size: p256, p384, p521.
    #[arg(long, value_parser = parse::<EcCurve>)]
    ec_curve: Option<EcCurve>,
    /// Operation completes by, e.g. 2026-12-01T10:00Z.
    #[arg(long, value_parser = parse_when)]
    completes_by: Option<i64>,
}

/// How the command runs.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Print how many phones and which, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    yes: bool,
    /// Write the per-phone result as CSV to this file (mode 0600: it may hold
    /// authentication strings).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

impl SelectArgs {
    fn selection(&self, now: i64) -> Result<Selection> {
        let filtered = self.profile.is_some()
            || self.model.is_some()
            || self.issuer.is_some()
            || self.expires_within.is_some()
            || self.lsc.is_some()
            || self.status.is_some()
            || self.names.is_some();
        if !filtered && !self.all {
            bail!(
                "no phones selected: give a filter (--profile, --model, --issuer, --expires-within, --lsc, --status, --names FILE), or --all for every phone"
            );
        }
        let names = match &self.names {
            None => None,
            Some(f) => {
                let text = String::from_utf8(crate::fsutil::read(f)?)
                    .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", f.display()))?;
                Some(
                    fleet::names_from_csv(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
                )
            }
        };
        Ok(Selection {
            filter: DeviceFilter {
                lsc: self.lsc.as_deref().map(|l| {
                    if l == "installed" {
                        LscFilter::Installed
                    } else {
                        LscFilter::None
                    }
                }),
                lsc_expires_before: self.expires_within.map(|d| now + i64::from(d) * 86_400),
                state: self.status,
                profile: self.profile.clone(),
                model: self.model.clone(),
                lsc_issuer: self.issuer.clone(),
                ..DeviceFilter::default()
            },
            names,
        })
    }
}

impl OpArgs {
    fn change(&self) -> CapfChange {
        CapfChange {
            operation: self.operation,
            auth_mode: self.auth,
            auth_string: self.auth_string.clone(),
            key_order: self.key_order,
            rsa_bits: self.rsa_bits,
            ec_curve: self.ec_curve,
            completes_by: self.completes_by,
        }
    }
}

/// A progress bar on standard error when it is a terminal.
struct Progress {
    total: usize,
    on: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            on: std::io::stderr().is_terminal() && total > STEP,
        }
    }

    fn show(&self, done: usize) {
        if !self.on {
            return;
        }
        let width = 40;
        let filled = done * width / self.total.max(1);
        let mut e = std::io::stderr();
        let _ = write!(
            e,
            "\r[{}{}] {done}/{} phones",
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.total
        );
        if done >= self.total {
            let _ = writeln!(e);
        }
        let _ = e.flush();
    }
}

/// `phonetrust phone bulk ...`.
pub(crate) async fn run(db: &phonetrust_store::Db, cmd: BulkCmd) -> Result<ExitCode> {
    let now = now();
    let (select, action, random, run, verb) = match cmd {
        BulkCmd::Schedule { select, op, run } => {
            if op.operation.is_none() {
                bail!("phone bulk schedule needs --operation (install, delete or troubleshoot)");
            }
            let r = op.random_auth_string;
            (
                select,
                BulkAction::Schedule(op.change()),
                r,
                run,
                "schedule",
            )
        }
        BulkCmd::Change { select, op, run } => {
            let r = op.random_auth_string;
            let ch = op.change();
            if ch == CapfChange::default() && !r {
                bail!(
                    "phone bulk change: give what to change (--auth, --auth-string, --key-order, --rsa-bits, --ec-curve, --completes-by, --operation)"
                );
            }
            (select, BulkAction::Change(ch), r, run, "change")
        }
        BulkCmd::Cancel { select, run } => (select, BulkAction::Cancel, false, run, "cancel"),
    };
    let sel = select.selection(now)?;
    let devices = fleet::select(db, &sel).await.map_err(anyhow::Error::msg)?;
    let plan = fleet::plan(&action, &devices, random, &OsRandom).map_err(anyhow::Error::msg)?;
    let (changes, skipped) = fleet::split(&plan);
    outln!(
        "{} phone(s) match; {} to {verb}, {} left alone (no operation pending).",
        devices.len(),
        changes.len(),
        skipped.len()
    );
    if run.dry_run {
        for (n, _) in &changes {
            outln!("{n}");
        }
        outln!("Dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    if changes.is_empty() {
        outln!("Nothing to do.");
        return Ok(ExitCode::SUCCESS);
    }
    if !crate::confirm::operation(
        &format!("changes the CAPF operation of {} phone(s)", changes.len()),
        run.yes,
        "no phone was changed.",
    )? {
        return Ok(ExitCode::FAILURE);
    }
    let progress = Progress::new(changes.len());
    let results = fleet::apply(db, &changes, now, |n| progress.show(n)).await?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let report = fleet::report_csv(&results, &skipped, random);
    for (name, r) in &results {
        if let Err(e) = r {
            outln!("{name}: {e}");
        }
    }
    outln!(
        "{} phone(s) changed, {failed} failed, {} left alone.",
        results.len() - failed,
        skipped.len()
    );
    match &run.report {
        Some(f) => {
            crate::fsutil::write_atomic(f, report.as_bytes(), true)?;
            outln!("Per-phone report: {}", f.display());
        }
        None if random => {
            outln!(
                "warning: the random authentication strings are only in the report: give --report FILE next time; `phone show NAME` shows each"
            );
        }
        None => {}
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
