//! The certificate monitor's rules: what it watches (own certificates, trust stores,
//! phones' LSCs and the MICs CAPF has seen: [`phonetrust_store::own::expiring`]), when a
//! certificate is worth a warning (within the threshold, 30 days by default like the
//! vendor's certificate monitor, or already expired, or an LSC that no longer chains to
//! the current CAPF certificate), what a notice says, and that each target gets one
//! notice per certificate per day for the whole cluster (claimed in the store).

use phonetrust_store::Db;
use phonetrust_store::model::format_time;
use phonetrust_store::own::Expiring;

/// Days before expiry a certificate is reported, by default.
pub const DEFAULT_WARN_DAYS: u32 = 30;

/// How urgent a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Expires within the threshold.
    Warning,
    /// Expired, or an LSC that phones can no longer renew by without a rollover.
    Critical,
}

impl Severity {
    /// As printed and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One notice: what is sent to each target and written to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The certificate.
    pub cert: Expiring,
    /// The node that found it.
    pub node: String,
    /// Whole days left (negative: expired that many days ago).
    pub days_left: i64,
    /// How urgent.
    pub severity: Severity,
    /// One line: what, where, when, and what to do.
    pub headline: String,
}

/// What to do about a certificate of `kind` named `name`.
fn fix(kind: &str, name: &str) -> String {
    match kind {
        "own" => {
            format!("regenerate it (`phonetrust set cert regen {name}`) or import a CA-signed one")
        }
        "LSC" => format!(
            "schedule Install/Upgrade for {name} (`phonetrust phone capf {name} --operation install --auth lsc`)"
        ),
        "MIC" => format!(
            "give {name} an LSC before its MIC expires (`phonetrust phone capf {name} --operation install`)"
        ),
        _ => format!("import a renewed certificate into {kind}, then delete the old one"),
    }
}

/// The notice for `e`, found by `node` at `now`.
pub fn notice(e: &Expiring, node: &str, now: i64) -> Notice {
    let days_left = (e.not_after - now).div_euclid(86_400);
    let expired = e.not_after <= now;
    let severity = if expired || e.note.is_some() {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let what = match e.kind.as_str() {
        "own" => format!("the {} certificate of {node}", e.name),
        "LSC" | "MIC" => format!("the {} of {}", e.kind, e.name),
        store => format!("{} in {store}", e.name),
    };
    let when = if expired {
        format!("expired on {}", format_time(e.not_after))
    } else {
        format!(
            "expires in {days_left} day{} ({})",
            if days_left == 1 { "" } else { "s" },
            format_time(e.not_after)
        )
    };
    let mut headline = format!("{what} {when}: {}", fix(&e.kind, &e.name));
    if let Some(n) = &e.note {
        headline = format!("{what} {n}; it {when}");
    }
    Notice {
        cert: e.clone(),
        node: node.to_string(),
        days_left,
        severity,
        headline,
    }
}

/// The findings of one check: every certificate within `warn_days` of expiry (or past
/// it), or otherwise in need of action.
pub async fn findings(
    data: &phonetrust_store::layout::DataDir,
    db: &Db,
    node: &str,
    warn_days: u32,
    now: i64,
) -> Result<Vec<Notice>, String> {
    let list = phonetrust_store::own::expiring(data, db, warn_days, now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(list.iter().map(|e| notice(e, node, now)).collect())
}

/// The Unix day of `t` (notices are one per certificate per target per day).
pub fn day(t: i64) -> i64 {
    t.div_euclid(86_400)
}

/// Claim the notice of `n` for `target` today: true when it is this node's to send
/// (no node of the cluster sent it to that target today).
pub async fn claim(db: &Db, n: &Notice, target: &str, now: i64) -> Result<bool, String> {
    db.claim_cert_notice(&format!("{target}:{}", n.cert.sha256), day(now))
        .await
        .map_err(|e| e.to_string())
}

/// Give a claimed notice back after sending it failed, so the next check tries again.
pub async fn release(db: &Db, n: &Notice, target: &str, now: i64) -> Result<(), String> {
    db.release_cert_notice(&format!("{target}:{}", n.cert.sha256), day(now))
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: &str, name: &str, not_after: i64, note: Option<&str>) -> Expiring {
        Expiring {
            kind: kind.into(),
            sha256: "ab".into(),
            name: name.into(),
            subject: "CN=x".into(),
            not_after,
            note: note.map(String::from),
        }
    }

    #[test]
    fn notices_say_what_when_and_what_to_do() {
        let now = 1_796_119_200; // 2026-12-01 10:00 UTC
        let n = notice(&e("own", "CAPF", now + 12 * 86_400 + 5, None), "pub", now);
        assert_eq!(n.days_left, 12);
        assert_eq!(n.severity, Severity::Warning);
        assert!(
            n.headline
                .starts_with("the CAPF certificate of pub expires in 12 days"),
            "{}",
            n.headline
        );
        assert!(
            n.headline.contains("phonetrust set cert regen CAPF"),
            "{}",
            n.headline
        );
        let n = notice(&e("LSC", "SEP001122334455", now - 86_400, None), "pub", now);
        assert_eq!(n.severity, Severity::Critical);
        assert_eq!(n.days_left, -1);
        assert!(
            n.headline
                .starts_with("the LSC of SEP001122334455 expired on"),
            "{}",
            n.headline
        );
        assert!(n.headline.contains("--auth lsc"), "{}", n.headline);
        let n = notice(&e("CAPF-trust", "old.pem", now + 86_400, None), "pub", now);
        assert!(
            n.headline
                .starts_with("old.pem in CAPF-trust expires in 1 day ("),
            "{}",
            n.headline
        );
        let n = notice(
            &e(
                "LSC",
                "SEP1",
                now + 400 * 86_400,
                Some("does not chain to the current CAPF certificate"),
            ),
            "pub",
            now,
        );
        assert_eq!(n.severity, Severity::Critical);
        assert!(n.headline.contains("does not chain"), "{}", n.headline);
        assert_eq!(day(now), 20_788);
    }
}
