//! Counters of the services, and the Prometheus text exposition at `/metrics` of the web
//! administration: CAPF outcomes, TVS verdicts, TFTP transfers and HTTP downloads by
//! result (since `serve` started), and from the store at each scrape: phones by LSC
//! status, days until the nearest expiry of the node's own certificates and of the LSCs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A labelled family of counters.
pub struct Family {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: &'static [&'static str],
    counts: [AtomicU64; 8],
}

impl Family {
    const fn new(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            label,
            values,
            counts: [
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
            ],
        }
    }

    /// Count one of `value` (a value not in the family is not counted).
    pub fn inc(&self, value: &str) {
        if let Some(i) = self.values.iter().position(|v| *v == value)
            && let Some(c) = self.counts.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count of `value`.
    pub fn get(&self, value: &str) -> u64 {
        self.values
            .iter()
            .position(|v| *v == value)
            .and_then(|i| self.counts.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (v, c) in self.values.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{}{{{}=\"{v}\"}} {}",
                self.name,
                self.label,
                c.load(Ordering::Relaxed)
            );
        }
    }
}

/// CAPF sessions by outcome.
pub static CAPF: Family = Family::new(
    "phonetrust_capf_sessions_total",
    "CAPF sessions by outcome since serve started.",
    "outcome",
    &[
        "installed",
        "fetched",
        "deleted",
        "nothing_scheduled",
        "unknown_device",
        "failed",
        "lost",
    ],
);
/// TVS answers by verdict.
pub static TVS: Family = Family::new(
    "phonetrust_tvs_verdicts_total",
    "TVS answers by verdict since serve started.",
    "verdict",
    &["trusted", "unknown"],
);
/// TFTP transfers by result.
pub static TFTP: Family = Family::new(
    "phonetrust_tftp_transfers_total",
    "TFTP read requests by result since serve started.",
    "result",
    &["ok", "not_found", "busy", "failed", "timeout"],
);
/// HTTP downloads by result.
pub static HTTP: Family = Family::new(
    "phonetrust_http_downloads_total",
    "HTTP downloads (port 6970) by result since serve started.",
    "result",
    &["ok", "not_found", "unavailable"],
);

/// The exposition: the counters, then the store's gauges at `now`.
pub async fn render(
    db: &phonetrust_store::Db,
    data: &phonetrust_store::layout::DataDir,
    now: i64,
) -> String {
    let mut out = String::new();
    for f in [&CAPF, &TVS, &TFTP, &HTTP] {
        f.render(&mut out);
    }
    let phones = db.device_count().await.unwrap_or(0);
    let with_lsc = db.lsc_device_names().await.map(|v| v.len()).unwrap_or(0);
    let _ = writeln!(out, "# HELP phonetrust_phones Phones by LSC status.");
    let _ = writeln!(out, "# TYPE phonetrust_phones gauge");
    let _ = writeln!(out, "phonetrust_phones{{lsc=\"installed\"}} {}", with_lsc);
    let _ = writeln!(
        out,
        "phonetrust_phones{{lsc=\"none\"}} {}",
        phones - with_lsc as i64
    );
    let days = |t: i64| (t - now) as f64 / 86_400.0;
    if let Ok(id) = phonetrust_store::identity::load(data)
        && let Some(t) = id
            .all()
            .map(|(_, c)| phonetrust_store::trust::unix_time(c.cert.not_after()))
            .min()
    {
        let _ = writeln!(
            out,
            "# HELP phonetrust_own_certificate_expiry_days Days until the node's own certificate that expires first expires."
        );
        let _ = writeln!(out, "# TYPE phonetrust_own_certificate_expiry_days gauge");
        let _ = writeln!(out, "phonetrust_own_certificate_expiry_days {:.2}", days(t));
    }
    if let Ok(Some(t)) = db.lsc_earliest_expiry().await {
        let _ = writeln!(
            out,
            "# HELP phonetrust_lsc_expiry_days Days until the LSC that expires first expires."
        );
        let _ = writeln!(out, "# TYPE phonetrust_lsc_expiry_days gauge");
        let _ = writeln!(out, "phonetrust_lsc_expiry_days {:.2}", days(t));
    }
    out
}
