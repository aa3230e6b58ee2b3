//! LSC renewal by policy: which LSCs are due (a share of their validity passed, N days
//! before expiry, or issued by a CAPF generation being retired — one that is no longer the
//! current CAPF certificate), and how renewals are rolled out: as Install/Upgrade
//! authenticated by the existing LSC, at most N phones per hour, only inside an optional
//! maintenance window, with a reset hook called for each batch so that the phones learn of
//! their operation (phonetrust has no call control of its own).
//!
//! [`tick`] is the whole scheduler, called every minute by `serve` on the publisher with
//! the real clock and by tests with a simulated one: it first records how the phones of
//! earlier batches did (done when a new LSC is recorded, failed when CAPF says so or the
//! deadline passed), then, when the window and the hourly budget allow, schedules the next
//! batch and returns its phone names for the hook.

use std::collections::HashSet;

use phonetrust_pki::profiles::OwnCert;
use phonetrust_store::Db;
use phonetrust_store::devices::CapfChange;
use phonetrust_store::lifecycle::{Renewal, RenewalState};
use phonetrust_store::model::{AuthMode, CertOperation, OpState};

/// The renewal policy (`[lifecycle]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Renew once this share of an LSC's validity has passed (0 < share < 1).
    pub renew_after_share: Option<f64>,
    /// Renew this many days before expiry.
    pub renew_days_before: Option<u32>,
    /// Renew every LSC that no longer chains to the current CAPF certificate.
    pub renew_retired: bool,
    /// Most phones scheduled per hour.
    pub max_per_hour: u32,
    /// Only inside this daily window (UTC), if any.
    pub window: Option<Window>,
}

/// A daily window, UTC, `start` inclusive, `end` exclusive, in minutes after midnight;
/// `end` before `start` wraps over midnight (`22:00-04:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Minutes after midnight UTC.
    pub start: u32,
    /// Minutes after midnight UTC.
    pub end: u32,
}

impl Window {
    /// `HH:MM-HH:MM`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad =
            || format!("maintenance window {s:?}: write it as HH:MM-HH:MM (UTC), e.g. 01:00-05:00");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let hm = |t: &str| -> Result<u32, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
            let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h > 24 || m > 59 || (h == 24 && m > 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let w = Self {
            start: hm(a)?,
            end: hm(b)?,
        };
        if w.start == w.end {
            return Err(format!(
                "maintenance window {s:?} is empty: leave it out to renew at any hour"
            ));
        }
        Ok(w)
    }

    /// Whether `t` (Unix seconds) is inside.
    pub fn contains(&self, t: i64) -> bool {
        let m = (t.rem_euclid(86_400) / 60) as u32;
        if self.start < self.end {
            m >= self.start && m < self.end
        } else {
            m >= self.start || m < self.end
        }
    }

    /// The next time at or after `t` the window is open.
    pub fn next_open(&self, t: i64) -> i64 {
        if self.contains(t) {
            return t;
        }
        let day = t.div_euclid(86_400) * 86_400;
        let start = day + i64::from(self.start) * 60;
        if start > t { start } else { start + 86_400 }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02} UTC",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Why an LSC is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Its CAPF generation is being retired.
    Retired,
    /// It expires within the days set.
    Expiring,
    /// The share of its validity set has passed.
    Aged,
}

impl Reason {
    /// As stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retired => "CAPF generation retired",
            Self::Expiring => "expires soon",
            Self::Aged => "validity share passed",
        }
    }
}

/// Whether an LSC valid from `not_before` to `not_after`, chaining to the current CAPF
/// certificate or not, is due at `now`.
pub fn due(p: &Policy, not_before: i64, not_after: i64, chains: bool, now: i64) -> Option<Reason> {
    if p.renew_retired && !chains {
        return Some(Reason::Retired);
    }
    if let Some(d) = p.renew_days_before
        && not_after - i64::from(d) * 86_400 <= now
    {
        return Some(Reason::Expiring);
    }
    if let Some(s) = p.renew_after_share {
        let span = (not_after - not_before).max(0) as f64;
        if not_before as f64 + span * s <= now as f64 {
            return Some(Reason::Aged);
        }
    }
    None
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Renewals found done (a new LSC recorded) in this tick.
    pub done: Vec<String>,
    /// Renewals found failed in this tick, with why.
    pub failed: Vec<(String, String)>,
    /// The batch scheduled in this tick (its number and phones), if any.
    pub batch: Option<(i64, Vec<String>)>,
    /// Why no batch was scheduled (outside the window, the hour's budget spent, nothing
    /// due).
    pub waiting: Option<String>,
}

/// One LSC and whether it chains to the current CAPF certificate.
struct Lsc {
    device: String,
    serial: String,
    not_before: i64,
    not_after: i64,
    chains: bool,
}

async fn lscs(db: &Db, data: &phonetrust_store::layout::DataDir) -> Result<Vec<Lsc>, String> {
    let id = phonetrust_store::identity::load(data).map_err(|e| e.to_string())?;
    let key = id
        .get(OwnCert::Capf)
        .and_then(|c| c.cert.public_key().ok())
        .ok_or("the identity has no CAPF certificate")?;
    let list = db.lscs().await.map_err(|e| e.to_string())?;
    Ok(list
        .into_iter()
        .map(|(device, c)| {
            let chains = phonetrust_store::own::signed_by(&c.pem, &key);
            Lsc {
                device,
                serial: c.serial,
                not_before: c.not_before,
                not_after: c.not_after,
                chains,
            }
        })
        .collect())
}

/// Every LSC due now, soonest expiry first, with why (the phones `show lifecycle` counts
/// as waiting).
pub async fn due_now(
    db: &Db,
    data: &phonetrust_store::layout::DataDir,
    p: &Policy,
    now: i64,
) -> Result<Vec<(String, String, Reason)>, String> {
    Ok(due_among(&lscs(db, data).await?, p, now))
}

/// The LSCs of `all` due at `now`, soonest expiry first.
fn due_among(all: &[Lsc], p: &Policy, now: i64) -> Vec<(String, String, Reason)> {
    let mut v: Vec<(i64, String, String, Reason)> = all
        .iter()
        .filter_map(|l| {
            due(p, l.not_before, l.not_after, l.chains, now)
                .map(|r| (l.not_after, l.device.clone(), l.serial.clone(), r))
        })
        .collect();
    v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    v.into_iter().map(|(_, d, s, r)| (d, s, r)).collect()
}

/// Record how the renewals in flight did, then schedule the next batch if the window and
/// the hour's budget allow. The operations' deadline is the parameter "CAPF Operation
/// Expires in (days)".
pub async fn tick(
    db: &Db,
    data: &phonetrust_store::layout::DataDir,
    p: &Policy,
    now: i64,
) -> Result<TickReport, String> {
    let e = |e: phonetrust_store::StoreError| e.to_string();
    let mut r = TickReport::default();
    // Every LSC, read and checked against the current CAPF once for the whole tick.
    let all = lscs(db, data).await?;
    // 1. How did the scheduled ones do?
    let open = db
        .renewals(Some(RenewalState::Scheduled))
        .await
        .map_err(e)?;
    if !open.is_empty() {
        let names: Vec<String> = open.iter().map(|x| x.device.clone()).collect();
        let devices = db.devices_named(&names).await.map_err(e)?;
        let serials: std::collections::HashMap<&str, &str> = all
            .iter()
            .map(|l| (l.device.as_str(), l.serial.as_str()))
            .collect();
        for x in &open {
            let Some(d) = devices.get(&x.device) else {
                continue; // deleted: its row went with it
            };
            let renewed = serials
                .get(x.device.as_str())
                .is_some_and(|s| *s != x.lsc_serial);
            let outcome = if renewed && d.capf.operation == CertOperation::None {
                Some((RenewalState::Done, "new LSC installed".to_string()))
            } else if d.capf.state == OpState::Failed {
                Some((RenewalState::Failed, d.capf.status.clone()))
            } else if d.capf.operation == CertOperation::None {
                Some((
                    RenewalState::Failed,
                    "the operation was cancelled or replaced".to_string(),
                ))
            } else if d.capf.completes_by.is_some_and(|t| t <= now) {
                Some((
                    RenewalState::Failed,
                    "Upgrade Failed: User Initiated Request Late/Timeout".to_string(),
                ))
            } else {
                None
            };
            if let Some((state, detail)) = outcome {
                db.finish_renewal(&x.device, state, &detail, now)
                    .await
                    .map_err(e)?;
                match state {
                    RenewalState::Done => r.done.push(x.device.clone()),
                    _ => r.failed.push((x.device.clone(), detail)),
                }
            }
        }
    }
    // 2. The next batch.
    if let Some(w) = p.window
        && !w.contains(now)
    {
        r.waiting = Some(format!("outside the maintenance window {w}"));
        return Ok(r);
    }
    let this_hour = db.renewals_scheduled_since(now - 3_600).await.map_err(e)?;
    let room = i64::from(p.max_per_hour) - this_hour;
    if room <= 0 {
        r.waiting = Some(format!(
            "{this_hour} phone(s) scheduled in the last hour (at most {} per hour)",
            p.max_per_hour
        ));
        return Ok(r);
    }
    let known: HashSet<(String, String)> = db
        .renewals(None)
        .await
        .map_err(e)?
        .into_iter()
        .filter(|x| {
            x.state != RenewalState::Failed || x.finished_at.is_none_or(|t| t > now - 86_400)
        })
        .map(|x| (x.device, x.lsc_serial))
        .collect();
    let candidates = due_among(&all, p, now);
    let names: Vec<String> = candidates.iter().map(|c| c.0.clone()).collect();
    let devices = db.devices_named(&names).await.map_err(e)?;
    let mut batch = Vec::new();
    for (dev, serial, reason) in candidates {
        if batch.len() as i64 >= room {
            break;
        }
        // Not twice for the same LSC (a failed one is tried again after a day), and not
        // over an operation the administrator scheduled.
        if known.contains(&(dev.clone(), serial.clone())) {
            continue;
        }
        let Some(d) = devices.get(&dev) else { continue };
        if d.capf.operation != CertOperation::None && d.capf.state == OpState::Pending {
            continue;
        }
        batch.push((dev, serial, reason));
    }
    if batch.is_empty() {
        r.waiting = Some("no LSC is due".into());
        return Ok(r);
    }
    let change = CapfChange {
        operation: Some(CertOperation::Install),
        auth_mode: Some(AuthMode::Lsc),
        ..CapfChange::default()
    };
    let changes: Vec<(String, CapfChange)> = batch
        .iter()
        .map(|b| (b.0.clone(), change.clone()))
        .collect();
    let results = db.set_capf_many(&changes, now).await.map_err(e)?;
    let id = db.next_renewal_batch().await.map_err(e)?;
    let mut scheduled = Vec::new();
    let mut rows = Vec::new();
    for ((name, res), (_, serial, reason)) in results.into_iter().zip(&batch) {
        match res {
            Ok(_) => {
                rows.push(Renewal {
                    device: name.clone(),
                    reason: reason.as_str().to_string(),
                    lsc_serial: serial.clone(),
                    batch: id,
                    scheduled_at: now,
                    state: RenewalState::Scheduled,
                    finished_at: None,
                    detail: String::new(),
                });
                scheduled.push(name);
            }
            Err(err) => r.failed.push((name, err.to_string())),
        }
    }
    db.put_renewals(&rows).await.map_err(e)?;
    r.batch = Some((id, scheduled));
    Ok(r)
}

/// Where the renewals stand (`show lifecycle`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// LSCs due and not yet scheduled (nor renewed or failed for that LSC).
    pub waiting: usize,
    /// Scheduled, not renewed yet.
    pub scheduled: usize,
    /// Renewed.
    pub done: usize,
    /// Failed (with why, by phone).
    pub failed: Vec<(String, String)>,
    /// When the next batch goes out: `Some(t)` (now or later), `None` when nothing waits.
    pub next_batch: Option<i64>,
}

/// Where the renewals stand at `now` under `p`.
pub async fn progress(
    db: &Db,
    data: &phonetrust_store::layout::DataDir,
    p: &Policy,
    now: i64,
) -> Result<Progress, String> {
    let e = |e: phonetrust_store::StoreError| e.to_string();
    let all = db.renewals(None).await.map_err(e)?;
    let count = |s: RenewalState| all.iter().filter(|r| r.state == s).count();
    let known: HashSet<(&str, &str)> = all
        .iter()
        .map(|r| (r.device.as_str(), r.lsc_serial.as_str()))
        .collect();
    let waiting = due_now(db, data, p, now)
        .await?
        .iter()
        .filter(|(d, s, _)| !known.contains(&(d.as_str(), s.as_str())))
        .count();
    let next_batch = if waiting == 0 {
        None
    } else {
        let open = p.window.map_or(now, |w| w.next_open(now));
        // The hour's budget: the batch after the oldest one still counting.
        let recent: Vec<i64> = all
            .iter()
            .map(|r| r.scheduled_at)
            .filter(|t| *t > now - 3_600)
            .collect();
        let budget_free = if recent.len() as u64 >= u64::from(p.max_per_hour) {
            recent.iter().min().map_or(now, |t| t + 3_600)
        } else {
            now
        };
        let t = open.max(budget_free);
        Some(p.window.map_or(t, |w| w.next_open(t)))
    };
    Ok(Progress {
        waiting,
        scheduled: count(RenewalState::Scheduled),
        done: count(RenewalState::Done),
        failed: all
            .iter()
            .filter(|r| r.state == RenewalState::Failed)
            .map(|r| (r.device.clone(), r.detail.clone()))
            .collect(),
        next_batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            renew_after_share: Some(0.8),
            renew_days_before: Some(30),
            renew_retired: true,
            max_per_hour: 50,
            window: None,
        }
    }

    #[test]
    fn due_by_generation_days_or_share() {
        let p = policy();
        let d = 86_400;
        // Valid 1000 days from 0; now day 100: not due.
        assert_eq!(due(&p, 0, 1000 * d, true, 100 * d), None);
        assert_eq!(due(&p, 0, 1000 * d, false, 100 * d), Some(Reason::Retired));
        assert_eq!(due(&p, 0, 1000 * d, true, 800 * d), Some(Reason::Aged));
        // Valid 100 days: 30 days before comes before 80 %.
        assert_eq!(due(&p, 0, 100 * d, true, 70 * d), Some(Reason::Expiring));
        let off = Policy {
            renew_after_share: None,
            renew_days_before: None,
            renew_retired: false,
            ..policy()
        };
        assert_eq!(due(&off, 0, 100 * d, false, 99 * d), None);
    }

    #[test]
    fn windows_parse_contain_and_wrap() {
        let w = Window::parse("01:00-05:00").unwrap();
        assert!(w.contains(3_600) && w.contains(4 * 3_600 + 3_599));
        assert!(!w.contains(5 * 3_600) && !w.contains(0));
        assert_eq!(w.next_open(0), 3_600);
        assert_eq!(w.next_open(6 * 3_600), 86_400 + 3_600);
        assert_eq!(w.to_string(), "01:00-05:00 UTC");
        let n = Window::parse("22:00-04:00").unwrap();
        assert!(n.contains(23 * 3_600) && n.contains(3_600) && !n.contains(12 * 3_600));
        for bad in ["1-5", "01:00", "25:00-01:00", "01:00-01:00", "a:b-c:d"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }
}
