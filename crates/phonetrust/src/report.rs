//! `phonetrust report capf [--csv]`: the vendor's "Generate CAPF Report" — per phone its
//! model, LSC status, the LSC's issuer, serial and expiry, the scheduled operation, the
//! authentication mode and the status line.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use phonetrust_rules::reports::CAPF_HEADER;

use crate::node::Node;

/// `phonetrust report ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ReportCmd {
    /// Every phone's CAPF information and LSC, as the vendor's CAPF report.
    Capf {
        /// Comma-separated values (RFC 4180, a header line) instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

pub(crate) use phonetrust_rules::reports::csv_field;

/// `phonetrust report ...`.
pub(crate) async fn run(node: &Node, cmd: ReportCmd) -> Result<ExitCode> {
    let ReportCmd::Capf { csv } = cmd;
    let db = node.db().await?;
    let rows = phonetrust_rules::reports::capf(&db).await?;
    if csv {
        outln!("{}", phonetrust_rules::reports::csv_line(&CAPF_HEADER));
        for r in &rows {
            outln!("{}", phonetrust_rules::reports::csv_line(r));
        }
    } else {
        let mut t = crate::table::Table::new(&CAPF_HEADER);
        for r in rows.iter().cloned() {
            t.row(r);
        }
        out!("{}", t.render());
        outln!("{} phone(s)", rows.len());
    }
    Ok(ExitCode::SUCCESS)
}
