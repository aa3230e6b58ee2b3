//! Work on many phones at once (the vendor's Bulk Administration Tool): which phones a
//! selection matches (the `phone list` filters, a model, an LSC issuer, a list of names
//! from a CSV file), and what a bulk schedule, change or cancel does to each of them.
//! The CLI's `phone bulk` and the renewal policy are shells over this.

use std::collections::HashSet;

use phonetrust_proto::rand::RandomSource;
use phonetrust_store::StoreError;
use phonetrust_store::devices::{CapfChange, DeviceFilter};
use phonetrust_store::model::{CertOperation, Device, OpState, format_time};

pub use phonetrust_proto::device::{MAX_NAMES, names_from_csv};

/// Which phones.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// The filters `phone list` takes, plus model and LSC issuer.
    pub filter: DeviceFilter,
    /// Only these phones (from a CSV file).
    pub names: Option<Vec<String>>,
}

/// The phones `sel` matches, by name.
pub async fn select(db: &phonetrust_store::Db, sel: &Selection) -> Result<Vec<Device>, String> {
    let all = db.devices(&sel.filter).await.map_err(|e| e.to_string())?;
    Ok(match &sel.names {
        None => all,
        Some(names) => {
            let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
            all.into_iter()
                .filter(|d| wanted.contains(d.name.as_str()))
                .collect()
        }
    })
}

/// What a bulk command does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BulkAction {
    /// Schedule this operation (with its settings) on every selected phone, replacing
    /// what was scheduled.
    Schedule(CapfChange),
    /// Change the settings of the operation pending on each selected phone; phones with
    /// nothing pending are left alone.
    Change(CapfChange),
    /// Cancel the operation pending on each selected phone.
    Cancel,
}

/// One phone's part of a bulk command: its change, or why it is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// Changed this way.
    Change(CapfChange),
    /// Left alone, and why.
    Skip(&'static str),
}

/// The per-phone plan of `action` over `devices`. With `random_auth`, each phone that is
/// scheduled for authentication by string gets its own random 6-digit string (as the
/// vendor's "Generate String"), drawn from `rng`.
pub fn plan(
    action: &BulkAction,
    devices: &[Device],
    random_auth: bool,
    rng: &dyn RandomSource,
) -> Result<Vec<(String, Planned)>, String> {
    let mut out = Vec::with_capacity(devices.len());
    for d in devices {
        let pending = d.capf.state == OpState::Pending && d.capf.operation != CertOperation::None;
        let p = match action {
            BulkAction::Schedule(ch) => Planned::Change(ch.clone()),
            BulkAction::Change(_) | BulkAction::Cancel if !pending => {
                Planned::Skip("no operation pending")
            }
            BulkAction::Change(ch) => Planned::Change(ch.clone()),
            BulkAction::Cancel => Planned::Change(CapfChange {
                operation: Some(CertOperation::None),
                ..CapfChange::default()
            }),
        };
        let p = match p {
            Planned::Change(mut ch) if random_auth => {
                ch.auth_string = Some(random_digits(rng, 6)?);
                Planned::Change(ch)
            }
            p => p,
        };
        out.push((d.name.clone(), p));
    }
    Ok(out)
}

/// Phones per transaction (and per step of a progress report).
pub const STEP: usize = 500;

/// A plan split into the changes to make and the phones left alone with why.
pub type Split = (Vec<(String, CapfChange)>, Vec<(String, &'static str)>);

/// The changes of `plan` and its skipped phones.
pub fn split(plan: &[(String, Planned)]) -> Split {
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    for (n, p) in plan {
        match p {
            Planned::Change(c) => changes.push((n.clone(), c.clone())),
            Planned::Skip(why) => skipped.push((n.clone(), *why)),
        }
    }
    (changes, skipped)
}

/// Make `changes` in transactions of [`STEP`] phones, telling `progress` how many are
/// done after each; every phone's result.
pub async fn apply(
    db: &phonetrust_store::Db,
    changes: &[(String, CapfChange)],
    now: i64,
    mut progress: impl FnMut(usize),
) -> Result<Vec<(String, Result<Device, StoreError>)>, StoreError> {
    let mut results = Vec::with_capacity(changes.len());
    for chunk in changes.chunks(STEP) {
        results.extend(db.set_capf_many(chunk, now).await?);
        progress(results.len());
    }
    Ok(results)
}

/// The per-phone report's header.
pub const REPORT_HEADER: [&str; 7] = [
    "phone",
    "result",
    "operation",
    "authentication mode",
    "authentication string",
    "completes by",
    "status",
];

/// The per-phone report of a bulk command as CSV: each changed phone with its new
/// operation (its authentication string only when `strings`, i.e. drawn at random for
/// it), each failure with why, each phone left alone with why.
pub fn report_csv(
    results: &[(String, Result<Device, StoreError>)],
    skipped: &[(String, &str)],
    strings: bool,
) -> String {
    let mut rows: Vec<Vec<String>> = results
        .iter()
        .map(|(name, r)| match r {
            Ok(d) => vec![
                name.clone(),
                "ok".into(),
                d.capf.operation.to_string(),
                d.capf.auth_mode.to_string(),
                if strings {
                    d.capf.auth_string.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                d.capf.completes_by.map(format_time).unwrap_or_default(),
                d.capf.status.clone(),
            ],
            Err(e) => {
                let mut v = vec![name.clone(), format!("failed: {e}")];
                v.resize(REPORT_HEADER.len(), String::new());
                v
            }
        })
        .collect();
    for (n, why) in skipped {
        let mut v = vec![n.clone(), format!("skipped: {why}")];
        v.resize(REPORT_HEADER.len(), String::new());
        rows.push(v);
    }
    crate::reports::csv(&REPORT_HEADER, &rows)
}

/// `n` random decimal digits, without bias.
fn random_digits(rng: &dyn RandomSource, n: usize) -> Result<String, String> {
    let mut s = String::with_capacity(n);
    while s.len() < n {
        let mut b = [0u8; 16];
        rng.fill(&mut b).map_err(|e| e.to_string())?;
        // 250 = 25 × 10: bytes from 250 up would favour 0–5.
        for x in b.iter().filter(|x| **x < 250) {
            if s.len() < n {
                s.push(char::from(b'0' + x % 10));
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonetrust_proto::rand::SeededRandom;

    #[test]
    fn names_come_from_the_first_column() {
        let csv = "Device Name,Description\nSEP001122334455,lobby\n\n sep0011223344AA ,x\n";
        assert_eq!(
            names_from_csv(csv).unwrap(),
            ["SEP001122334455", "SEP0011223344AA"]
        );
        let e = names_from_csv("SEP001122334455\nlobby phone\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn random_strings_are_digits_and_differ() {
        let r = SeededRandom::new(3);
        let a = random_digits(&r, 6).unwrap();
        let b = random_digits(&r, 6).unwrap();
        assert_eq!(a.len(), 6);
        assert!(a.bytes().all(|c| c.is_ascii_digit()));
        assert_ne!(a, b);
    }
}
