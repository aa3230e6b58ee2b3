//! `phonetrust report capf [--csv]`: the vendor's "Generate CAPF Report" — per phone its
//! model, LSC status, the LSC's issuer, serial and expiry, the scheduled operation, the
//! authentication mode and the status line.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use phonetrust_store::devices::DeviceFilter;
use phonetrust_store::model::format_time;

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

const HEADER: [&str; 9] = [
    "Device Name",
    "Model",
    "LSC Status",
    "LSC Issuer",
    "LSC Serial",
    "LSC Valid Until",
    "Operation",
    "Authentication Mode",
    "Status",
];

/// One CSV field, quoted when it needs to be.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `phonetrust report ...`.
pub(crate) async fn run(node: &Node, cmd: ReportCmd) -> Result<ExitCode> {
    let ReportCmd::Capf { csv } = cmd;
    let db = node.db().await?;
    let lscs: std::collections::HashMap<String, phonetrust_store::model::DeviceCert> =
        db.lscs().await?.into_iter().collect();
    let rows: Vec<Vec<String>> = db
        .devices(&DeviceFilter::default())
        .await?
        .into_iter()
        .map(|d| {
            let l = lscs.get(&d.name);
            vec![
                d.name.clone(),
                d.model.clone(),
                if l.is_some() { "Installed" } else { "None" }.into(),
                l.map(|c| c.issuer.clone()).unwrap_or_default(),
                l.map(|c| c.serial.clone()).unwrap_or_default(),
                l.map(|c| format_time(c.not_after)).unwrap_or_default(),
                d.capf.operation.label().into(),
                d.capf.auth_mode.label().into(),
                d.capf.status.clone(),
            ]
        })
        .collect();
    if csv {
        outln!("{}", HEADER.join(","));
        for r in &rows {
            let f: Vec<String> = r.iter().map(|c| csv_field(c)).collect();
            outln!("{}", f.join(","));
        }
    } else {
        let mut t = crate::table::Table::new(&HEADER);
        for r in rows.iter().cloned() {
            t.row(r);
        }
        out!("{}", t.render());
        outln!("{} phone(s)", rows.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("SEP001122334455"), "SEP001122334455");
        assert_eq!(csv_field("CN=CAPF-1, O=x"), "\"CN=CAPF-1, O=x\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
