//! `phonetrust doctor [phone SEP…]`: the checks of [`phonetrust_rules::doctor`], each
//! finding printed with its cause and fix; exit status 0 only when nothing is wrong.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use phonetrust_rules::doctor::{self, Finding, Severity};
use phonetrust_services::probe::Net;

use crate::node::Node;

/// `phonetrust doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Evaluate as of this time instead of now (e.g. 2026-12-08T10:00Z, or a span ahead:
    /// +2d): what will be late, stuck or expiring then.
    #[arg(long, value_parser = parse_at)]
    at: Option<i64>,
    #[command(subcommand)]
    what: Option<DoctorCmd>,
}

/// What to diagnose.
#[derive(Debug, Subcommand)]
pub(crate) enum DoctorCmd {
    /// Explain one phone from its records: certificates, operation, what it is told,
    /// its ITL and downloads, and what is wrong.
    Phone {
        /// `SEP<MAC>`.
        name: String,
    },
}

fn parse_at(s: &str) -> Result<i64, String> {
    if let Some(span) = s.strip_prefix('+') {
        let back = crate::audit::parse_since(span)?;
        let now = crate::fsutil::now();
        return Ok(now + (now - back));
    }
    phonetrust_store::model::parse_time(s).map_err(|e| e.to_string())
}

fn print(findings: &[Finding]) {
    for x in findings {
        let sev = match x.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        };
        outln!("{sev:<8}{}  {}", x.check, x.subject);
        outln!("  cause: {}", x.cause);
        outln!("  fix:   {}", x.fix);
    }
}

/// `phonetrust doctor`.
pub(crate) async fn run(node: &Node, a: DoctorArgs) -> Result<ExitCode> {
    let db = node.db().await?;
    let now = a.at.unwrap_or_else(crate::fsutil::now);
    let findings = match a.what {
        None => doctor::node_checks(&db, &node.data, &Net, now)
            .await
            .map_err(anyhow::Error::msg)?,
        Some(DoctorCmd::Phone { name }) => {
            let name = phonetrust_store::model::device_name(&name)?;
            let (lines, f) = doctor::phone_checks(&db, &node.data, &name, &Net, now)
                .await
                .map_err(anyhow::Error::msg)?;
            for l in lines {
                outln!("{l}");
            }
            outln!();
            f
        }
    };
    if findings.is_empty() {
        outln!("No problems found.");
        return Ok(ExitCode::SUCCESS);
    }
    print(&findings);
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    outln!(
        "{} finding(s): {errors} error(s), {} warning(s).",
        findings.len(),
        findings.len() - errors
    );
    Ok(ExitCode::FAILURE)
}
