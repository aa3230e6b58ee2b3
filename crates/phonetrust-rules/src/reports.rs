//! The reports every shell gives (`report capf`, the Reports pages, the API): the
//! vendor's CAPF report — per phone its model, LSC status, the LSC's issuer, serial and
//! expiry, the scheduled operation, the authentication mode and the status line — and
//! CSV as RFC 4180 writes it.

use phonetrust_store::devices::DeviceFilter;
use phonetrust_store::model::format_time;
use phonetrust_store::{Db, StoreError};

/// The CAPF report's columns.
pub const CAPF_HEADER: [&str; 9] = [
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
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV line (without its line end).
pub fn csv_line<S: AsRef<str>>(fields: &[S]) -> String {
    fields
        .iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The CAPF report: one row per phone, by name, with [`CAPF_HEADER`]'s columns.
pub async fn capf(db: &Db) -> Result<Vec<Vec<String>>, StoreError> {
    let lscs: std::collections::HashMap<String, phonetrust_store::model::DeviceCert> =
        db.lscs().await?.into_iter().collect();
    Ok(db
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
        .collect())
}

/// The CAPF report as CSV with a header line, each line ended by CRLF.
pub async fn capf_csv(db: &Db) -> Result<String, StoreError> {
    let mut s = csv_line(&CAPF_HEADER);
    s.push_str("\r\n");
    for r in capf(db).await? {
        s.push_str(&csv_line(&r));
        s.push_str("\r\n");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("SEP001122334455"), "SEP001122334455");
        assert_eq!(csv_field("CN=CAPF-1, O=x"), "\"CN=CAPF-1, O=x\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_line(&["a", "b,c"]), "a,\"b,c\"");
    }
}
