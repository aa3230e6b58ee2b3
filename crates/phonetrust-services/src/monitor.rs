//! The certificate monitor while `serve` runs: a check at start and then every interval
//! (an hour by default) of what [`phonetrust_rules::monitor`] reports; each finding is
//! written to the log and sent to each notification target ([`crate::notify`]) once a day
//! for the whole cluster. A send that fails is logged and tried again at the next check.

use std::time::Duration;

use phonetrust_rules::monitor::{self, Notice};
use phonetrust_store::Db;
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::format_time;

use crate::notify::Notifier;

/// Monitor settings.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// Between two checks.
    pub interval: Duration,
    /// Days before expiry a certificate is reported.
    pub warn_days: u32,
    /// Most notices sent per target in one check (the rest at the next check), so a fleet
    /// of expiring LSCs does not flood a mailbox at once.
    pub max_per_check: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3_600),
            warn_days: monitor::DEFAULT_WARN_DAYS,
            max_per_check: 100,
        }
    }
}

/// What one check did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Certificates found.
    pub findings: usize,
    /// Notices sent (all targets).
    pub sent: usize,
    /// Sends that failed (tried again at the next check).
    pub failed: usize,
    /// Notices left for the next check ([`MonitorConfig::max_per_check`]).
    pub deferred: usize,
}

/// The JSON document a webhook receives for `n`.
pub fn webhook_json(n: &Notice) -> String {
    serde_json::json!({
        "event": "certificate-expiry",
        "severity": n.severity.as_str(),
        "node": n.node,
        "kind": n.cert.kind,
        "name": n.cert.name,
        "subject": n.cert.subject,
        "sha256": n.cert.sha256,
        "not_after": format_time(n.cert.not_after),
        "not_after_unix": n.cert.not_after,
        "days_left": n.days_left,
        "message": n.headline,
    })
    .to_string()
}

/// The e-mail subject and text for `n`.
pub fn mail_text(n: &Notice) -> (String, String) {
    let when = if n.days_left < 0 || n.cert.not_after <= 0 {
        "expired".to_string()
    } else {
        format!("expires in {} days", n.days_left)
    };
    let subject = format!(
        "[phonetrust {}] {}: {} {} {}",
        n.node,
        n.severity.as_str(),
        n.cert.kind,
        n.cert.name,
        when
    );
    let text = format!(
        "{}\n\nNode:        {}\nKind:        {}\nName:        {}\nSubject:     {}\nValid until: {}\nSHA-256:     {}\n\nThis notice is sent once a day while the certificate is reported (`phonetrust show cert expiry`).\n",
        n.headline,
        n.node,
        n.cert.kind,
        n.cert.name,
        n.cert.subject,
        format_time(n.cert.not_after),
        n.cert.sha256
    );
    (subject, text)
}

/// One check at `now`.
pub async fn check(
    db: &Db,
    data: &DataDir,
    node: &str,
    cfg: &MonitorConfig,
    notifier: &Notifier,
    now: i64,
) -> Result<CheckReport, String> {
    let list = monitor::findings(data, db, node, cfg.warn_days, now).await?;
    let mut r = CheckReport {
        findings: list.len(),
        ..CheckReport::default()
    };
    let log_target = format!("log@{node}");
    let mut sent_to: std::collections::HashMap<&str, usize> = Default::default();
    for n in &list {
        if monitor::claim(db, n, &log_target, now).await? {
            tracing::warn!(
                node = n.node,
                kind = n.cert.kind,
                name = n.cert.name,
                not_after = %format_time(n.cert.not_after),
                severity = n.severity.as_str(),
                "certificate monitor: {}",
                n.headline
            );
        }
        for target in notifier.targets() {
            let count = sent_to.entry(target).or_default();
            if *count >= cfg.max_per_check {
                r.deferred += 1;
                continue;
            }
            if !monitor::claim(db, n, target, now).await? {
                continue;
            }
            *count += 1;
            let result = match target {
                "webhook" => notifier.post(&webhook_json(n)).await,
                _ => {
                    let (subject, text) = mail_text(n);
                    notifier.mail(&subject, &text).await
                }
            };
            match result {
                Ok(()) => r.sent += 1,
                Err(e) => {
                    r.failed += 1;
                    tracing::warn!(target, name = n.cert.name, error = %e, "certificate monitor: notice not sent; trying again at the next check");
                    monitor::release(db, n, target, now).await?;
                }
            }
        }
    }
    if r.deferred > 0 {
        tracing::info!(
            deferred = r.deferred,
            "certificate monitor: more notices than max_per_check; the rest at the next check"
        );
    }
    Ok(r)
}

/// Check at start, then every `cfg.interval`, until the task is dropped.
pub async fn run(db: Db, data: DataDir, node: String, cfg: MonitorConfig, notifier: Notifier) {
    loop {
        let now = phonetrust_proto::clock::unix_now() as i64;
        match check(&db, &data, &node, &cfg, &notifier, now).await {
            Ok(r) => tracing::debug!(
                findings = r.findings,
                sent = r.sent,
                failed = r.failed,
                "certificate monitor: checked"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "certificate monitor: the check failed; trying again at the next one")
            }
        }
        tokio::time::sleep(cfg.interval).await;
    }
}
