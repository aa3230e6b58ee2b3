//! The reports every shell gives (`report capf`, the Reports pages, the API): the
//! vendor's CAPF report — per phone its model, LSC status, the LSC's issuer, serial and
//! expiry, the scheduled operation, the authentication mode and the status line —, the
//! ITL file status per phone, the certificates expiring and the audit log, each as rows
//! under a header and as CSV as RFC 4180 writes it; and the counts the dashboard draws
//! (LSC expiry by month, enrolments per hour, phones by ITL status).

use phonetrust_store::devices::DeviceFilter;
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::format_time;
use phonetrust_store::{Db, StoreError};

use crate::itlstatus::{ItlState, PhoneItl};

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
    Ok(csv(&CAPF_HEADER, &capf(db).await?))
}

/// `rows` under `header` as CSV, each line ended by CRLF.
pub fn csv<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let mut s = csv_line(header);
    s.push_str("\r\n");
    for r in rows {
        s.push_str(&csv_line(r));
        s.push_str("\r\n");
    }
    s
}

/// The ITL file status report's columns.
pub const ITL_HEADER: [&str; 6] = [
    "Device Name",
    "ITL Status",
    "TFTP Node",
    "Last ITL Download",
    "Phone's ITL SHA-256",
    "Node's ITL SHA-256",
];

/// One row of the ITL file status report.
pub fn itl_row(p: &PhoneItl) -> Vec<String> {
    vec![
        p.device.clone(),
        p.state.label().to_string(),
        p.last.as_ref().map(|l| l.node.clone()).unwrap_or_default(),
        p.last
            .as_ref()
            .map(|l| format_time(l.at))
            .unwrap_or_default(),
        p.last
            .as_ref()
            .map(|l| l.sha256.clone())
            .unwrap_or_default(),
        p.current.clone().unwrap_or_default(),
    ]
}

/// The ITL file status report: every phone, by name, with [`ITL_HEADER`]'s columns.
pub async fn itl(db: &Db) -> Result<Vec<Vec<String>>, String> {
    Ok(crate::itlstatus::status(db)
        .await?
        .iter()
        .map(itl_row)
        .collect())
}

/// Phones per ITL status, every status listed (the dashboard's picture).
pub fn itl_counts(all: &[PhoneItl]) -> Vec<(&'static str, i64)> {
    [
        ItlState::Current,
        ItlState::Outdated,
        ItlState::NotSeenSinceSignerChange,
        ItlState::Never,
    ]
    .into_iter()
    .map(|s| {
        (
            s.label(),
            all.iter().filter(|p| p.state == s).count() as i64,
        )
    })
    .collect()
}

/// The certificate expiry report's columns.
pub const EXPIRY_HEADER: [&str; 6] = [
    "Kind",
    "Name",
    "Subject",
    "Valid Until",
    "Days Left",
    "Note",
];

/// Every certificate (own, trust, LSC, MIC) expiring within `days` of `now` or in need of
/// action, soonest first, with [`EXPIRY_HEADER`]'s columns.
pub async fn expiry(
    data: &DataDir,
    db: &Db,
    node: &str,
    days: u32,
    now: i64,
) -> Result<Vec<Vec<String>>, String> {
    Ok(crate::monitor::findings(data, db, node, days, now)
        .await?
        .into_iter()
        .map(|n| {
            vec![
                n.cert.kind,
                n.cert.name,
                n.cert.subject,
                format_time(n.cert.not_after),
                n.days_left.to_string(),
                n.cert.note.unwrap_or_default(),
            ]
        })
        .collect())
}

/// The audit log report's columns.
pub const AUDIT_HEADER: [&str; 6] = ["Time", "Account", "Node", "Action", "Detail", "Result"];

/// The audit log from `since` (Unix seconds), oldest first, at most `limit` entries (the
/// newest), with [`AUDIT_HEADER`]'s columns.
pub async fn audit(db: &Db, since: i64, limit: u32) -> Result<Vec<Vec<String>>, StoreError> {
    Ok(db
        .audit_since(since.saturating_mul(1_000), limit)
        .await?
        .into_iter()
        .map(|e| {
            vec![
                format_time(e.at_ms.div_euclid(1_000)),
                e.actor,
                e.node,
                e.action,
                e.detail,
                e.result,
            ]
        })
        .collect())
}

/// The reports the Reports pages and the API give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportKind {
    /// [`capf`].
    Capf,
    /// [`itl`].
    Itl,
    /// [`expiry`].
    Expiry,
    /// [`audit`].
    Audit,
}

impl ReportKind {
    /// Every report, in the order the pages list them.
    pub const ALL: [Self; 4] = [Self::Capf, Self::Itl, Self::Expiry, Self::Audit];

    /// As in the page's address: `capf`, `itl`, `expiry`, `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capf => "capf",
            Self::Itl => "itl",
            Self::Expiry => "expiry",
            Self::Audit => "audit",
        }
    }

    /// From [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Its title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Capf => "CAPF Report",
            Self::Itl => "ITL File Status",
            Self::Expiry => "Certificate Expiry",
            Self::Audit => "Audit Log",
        }
    }

    /// Its columns.
    pub fn header(self) -> &'static [&'static str] {
        match self {
            Self::Capf => &CAPF_HEADER,
            Self::Itl => &ITL_HEADER,
            Self::Expiry => &EXPIRY_HEADER,
            Self::Audit => &AUDIT_HEADER,
        }
    }

    /// Its rows. `days` is how far ahead the expiry report looks and how far back the
    /// audit log goes (at most [`AUDIT_ROWS`] entries).
    pub async fn rows(
        self,
        db: &Db,
        data: &DataDir,
        node: &str,
        days: u32,
        now: i64,
    ) -> Result<Vec<Vec<String>>, String> {
        match self {
            Self::Capf => capf(db).await.map_err(|e| e.to_string()),
            Self::Itl => itl(db).await,
            Self::Expiry => expiry(data, db, node, days, now).await,
            Self::Audit => audit(db, now - i64::from(days) * 86_400, AUDIT_ROWS)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// Most audit entries one report holds (the newest).
pub const AUDIT_ROWS: u32 = 100_000;

/// Months `t` lies after January of year 0 (UTC).
fn month_of(t: i64) -> Option<i64> {
    let d = time::OffsetDateTime::from_unix_timestamp(t).ok()?;
    Some(i64::from(d.year()) * 12 + i64::from(u8::from(d.month())) - 1)
}

/// LSCs by the month they expire: "expired", then each of the `months` months from the
/// month of `now` on (`YYYY-MM`), then "later". `not_after` is every LSC's notAfter.
pub fn lsc_expiry_by_month(not_after: &[i64], now: i64, months: usize) -> Vec<(String, i64)> {
    let Some(first) = month_of(now) else {
        return Vec::new();
    };
    let mut out = vec![("expired".to_string(), 0i64)];
    out.extend((first..first + months as i64).map(|m| {
        (
            format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1),
            0,
        )
    }));
    out.push(("later".to_string(), 0));
    for &na in not_after {
        let i = if na <= now {
            0
        } else {
            match month_of(na).map(|m| m - first) {
                Some(k) if (0..months as i64).contains(&k) => k as usize + 1,
                _ => months + 1,
            }
        };
        if let Some(x) = out.get_mut(i) {
            x.1 += 1;
        }
    }
    out
}

/// LSCs recorded in each of the `hours` hours up to `now` (UTC, oldest first, labelled
/// `HH:00`): the enrolments per hour. `recorded` is when each LSC was committed.
pub fn enrolments_per_hour(recorded: &[i64], now: i64, hours: usize) -> Vec<(String, i64)> {
    let this_hour = now - now.rem_euclid(3_600);
    let first = this_hour - (hours as i64 - 1) * 3_600;
    let mut out: Vec<(String, i64)> = (0..hours as i64)
        .map(|i| {
            let h = first + i * 3_600;
            (format!("{:02}:00", h.rem_euclid(86_400) / 3_600), 0)
        })
        .collect();
    for &t in recorded {
        if t >= first && t <= now {
            let i = ((t - first) / 3_600) as usize;
            if let Some(x) = out.get_mut(i) {
                x.1 += 1;
            }
        }
    }
    out
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
        assert_eq!(
            csv(&["x", "y"], &[vec!["1", "a\nb"]]),
            "x,y\r\n1,\"a\nb\"\r\n"
        );
    }

    // 2026-12-07T20:00:00Z
    const NOW: i64 = 1796673600;

    #[test]
    fn lscs_are_counted_by_the_month_they_expire() {
        let day = 86_400;
        let v = lsc_expiry_by_month(
            &[
                NOW - 1,
                NOW + day,
                NOW + 30 * day,
                NOW + 60 * day,
                NOW + 3_000 * day,
            ],
            NOW,
            3,
        );
        assert_eq!(
            v,
            vec![
                ("expired".to_string(), 1),
                ("2026-12".to_string(), 1),
                ("2027-01".to_string(), 1),
                ("2027-02".to_string(), 1),
                ("later".to_string(), 1),
            ]
        );
        // Twelve months from the 31st of a month: none skipped or repeated.
        let jan31 = 1801353600; // 2027-01-31T00:00Z
        let labels: Vec<String> = lsc_expiry_by_month(&[], jan31, 12)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(labels[1], "2027-01");
        assert_eq!(labels[2], "2027-02");
        assert_eq!(labels[3], "2027-03");
        assert_eq!(labels[12], "2027-12");
    }

    #[test]
    fn enrolments_are_counted_per_hour_up_to_now() {
        let v = enrolments_per_hour(
            &[NOW, NOW + 59, NOW - 1, NOW - 3 * 3_600, NOW + 7_200],
            NOW + 60,
            3,
        );
        assert_eq!(
            v,
            vec![
                ("18:00".to_string(), 0),
                ("19:00".to_string(), 1),
                ("20:00".to_string(), 2),
            ]
        );
    }
}
