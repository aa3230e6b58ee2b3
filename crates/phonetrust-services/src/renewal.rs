//! The renewal policy while `serve` runs on the publisher: every minute a
//! [`phonetrust_rules::lifecycle::tick`], and for each new batch the reset hook — a command
//! given the phone names as arguments (500 per call), and/or a webhook given them as JSON —
//! so that the phones (or the PBX that resets them, e.g. with `sip notify`) learn of their
//! operation. What the hook did is recorded with the batch (`show lifecycle`).

use std::time::Duration;

use phonetrust_rules::lifecycle::{self, Policy, TickReport};
use phonetrust_store::Db;
use phonetrust_store::layout::DataDir;

use crate::notify::{Notifier, Webhook};

/// Phone names per call of the reset command.
const NAMES_PER_CALL: usize = 500;

/// The reset hook.
#[derive(Clone, Debug, Default)]
pub struct ResetHook {
    /// A command and its first arguments; the phone names follow.
    pub command: Option<Vec<String>>,
    /// A webhook that receives `{"event": "lsc-renewal-batch", "batch": N, "phones": [...]}`.
    pub webhook: Option<Webhook>,
    /// Deadline of one call (default 60 s; a command still running is killed).
    pub timeout: Option<Duration>,
}

impl ResetHook {
    fn deadline(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(60))
    }

    /// Call the hook for batch `id`; what it did, in one line.
    pub async fn call(&self, id: i64, phones: &[String]) -> String {
        let mut said = Vec::new();
        if let Some(cmd) = &self.command {
            said.push(self.run_command(cmd, phones).await);
        }
        if let Some(w) = &self.webhook {
            let body = serde_json::json!({
                "event": "lsc-renewal-batch",
                "batch": id,
                "phones": phones,
            })
            .to_string();
            let n = Notifier {
                webhook: Some(w.clone()),
                smtp: None,
                timeout: Some(self.deadline()),
            };
            said.push(match n.post(&body).await {
                Ok(()) => format!("webhook {}: ok", w.url),
                Err(e) => format!("webhook failed: {e}"),
            });
        }
        if said.is_empty() {
            "no reset hook configured: the phones take the operation at their next reset".into()
        } else {
            said.join("; ")
        }
    }

    async fn run_command(&self, cmd: &[String], phones: &[String]) -> String {
        let Some((prog, args)) = cmd.split_first() else {
            return "reset_command is empty".into();
        };
        let mut calls = 0;
        for chunk in phones.chunks(NAMES_PER_CALL) {
            let mut c = tokio::process::Command::new(prog);
            c.args(args).args(chunk).kill_on_drop(true);
            c.stdin(std::process::Stdio::null());
            c.stdout(std::process::Stdio::null());
            c.stderr(std::process::Stdio::piped());
            let out = match c.spawn() {
                Ok(child) => tokio::time::timeout(self.deadline(), child.wait_with_output()).await,
                Err(e) => return format!("command {prog}: cannot start: {e}"),
            };
            match out {
                Err(_) => return format!("command {prog}: killed after {:?}", self.deadline()),
                Ok(Err(e)) => return format!("command {prog}: {e}"),
                Ok(Ok(o)) if !o.status.success() => {
                    let err = String::from_utf8_lossy(&o.stderr);
                    return format!(
                        "command {prog}: {} ({})",
                        o.status,
                        err.lines().next().unwrap_or("").trim()
                    );
                }
                Ok(Ok(_)) => calls += 1,
            }
        }
        format!("command {prog}: ok ({calls} call(s))")
    }
}

/// One tick at `now`, then the hook for the batch it scheduled; the batch's hook result
/// is recorded and logged with the phones.
pub async fn tick(
    db: &Db,
    data: &DataDir,
    policy: &Policy,
    hook: &ResetHook,
    now: i64,
) -> Result<TickReport, String> {
    let r = lifecycle::tick(db, data, policy, now).await?;
    for d in &r.done {
        tracing::info!(device = d, "renewal: new LSC installed");
    }
    for (d, why) in &r.failed {
        tracing::warn!(device = d, reason = why, "renewal: failed");
    }
    if let Some((id, phones)) = &r.batch {
        let said = hook.call(*id, phones).await;
        tracing::info!(
            batch = id,
            phones = phones.len(),
            first = phones.first().map(String::as_str).unwrap_or(""),
            hook = said,
            "renewal: batch scheduled (Install/Upgrade by the existing LSC)"
        );
        db.set_batch_hook(*id, &said)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(r)
}

/// Every minute until the task is dropped.
pub async fn run(db: Db, data: DataDir, policy: Policy, hook: ResetHook) {
    loop {
        let now = phonetrust_proto::clock::unix_now() as i64;
        if let Err(e) = tick(&db, &data, &policy, &hook, now).await {
            tracing::warn!(error = %e, "renewal: the check failed; trying again in a minute");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
