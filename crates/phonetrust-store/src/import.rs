//! Bulk import of phones from CSV, with a report per row.
//!
//! The first line names the columns (any order, any case): `name` (required), `model`,
//! `protocol`, `profile`, `description`, `operation`, `auth`, `auth_string`, `key_order`,
//! `rsa_bits`, `ec_curve`, `completes_by`. Empty cells take the defaults of `phone add`.
//! Every row is checked first; the valid rows are then written in one transaction, so a
//! crash or a full disk leaves the store as it was before the import or with every valid
//! row, never part of them.

use std::collections::{HashMap, HashSet};

use crate::StoreError;
use crate::db::{Db, db_err};
use crate::devices::{CapfChange, NewDevice, apply_capf_change, insert_device, write_capf};
use crate::model::{CapfInfo, SecurityProfile, device_name, parse_time};

/// Largest CSV file accepted.
pub const MAX_CSV: usize = 64 << 20;
/// Most rows in one import.
pub const MAX_ROWS: usize = 100_000;

/// What happened to one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowReport {
    /// Line number in the file (the header is line 1).
    pub line: u64,
    /// The phone name as given.
    pub name: String,
    /// `Ok(())` when added, else why not.
    pub result: Result<(), String>,
}

const COLUMNS: [&str; 12] = [
    "name",
    "model",
    "protocol",
    "profile",
    "description",
    "operation",
    "auth",
    "auth_string",
    "key_order",
    "rsa_bits",
    "ec_curve",
    "completes_by",
];

struct Row {
    line: u64,
    dev: NewDevice,
    capf: CapfChange,
    /// The CAPF information to write, when the row sets any.
    final_capf: Option<CapfInfo>,
}

fn parse_row(
    cells: &[(String, String)],
    line: u64,
    allow_unknown_models: bool,
) -> Result<Row, String> {
    let cell = |k: &str| {
        cells
            .iter()
            .find(|(c, _)| c == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let name = device_name(cell("name").unwrap_or_default()).map_err(|e| e.to_string())?;
    let dev = NewDevice {
        name,
        model: phonetrust_proto::device::check_model(
            cell("model").unwrap_or("Universal"),
            allow_unknown_models,
        )
        .map_err(|e| e.to_string())?,
        protocol: cell("protocol")
            .map(str::parse)
            .transpose()
            .map_err(|e: StoreError| e.to_string())?
            .unwrap_or(crate::model::Protocol::Sip),
        profile: cell("profile").map(str::to_string),
        description: cell("description").unwrap_or_default().to_string(),
    };
    let e = |e: StoreError| e.to_string();
    let capf = CapfChange {
        operation: cell("operation").map(str::parse).transpose().map_err(e)?,
        auth_mode: cell("auth").map(str::parse).transpose().map_err(e)?,
        auth_string: cell("auth_string").map(str::to_string),
        key_order: cell("key_order").map(str::parse).transpose().map_err(e)?,
        rsa_bits: cell("rsa_bits")
            .map(|b| {
                b.parse::<u32>().map_err(|_| {
                    format!("invalid RSA key size '{b}': use 1024, 2048, 3072 or 4096")
                })
            })
            .transpose()?,
        ec_curve: cell("ec_curve").map(str::parse).transpose().map_err(e)?,
        completes_by: cell("completes_by")
            .map(parse_time)
            .transpose()
            .map_err(e)?,
    };
    Ok(Row {
        line,
        dev,
        capf,
        final_capf: None,
    })
}

impl Db {
    /// Import phones from CSV. Returns one report per data row; the valid rows are
    /// committed together.
    pub async fn import_csv(
        &self,
        input: &[u8],
        now: i64,
        allow_unknown_models: bool,
    ) -> Result<Vec<RowReport>, StoreError> {
        if input.len() > MAX_CSV {
            return Err(StoreError::Invalid(format!(
                "the CSV file is {} bytes; import at most {MAX_CSV} bytes at a time",
                input.len()
            )));
        }
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| StoreError::Invalid(format!("CSV header: {e}")))?
            .iter()
            .map(|h| h.trim().to_ascii_lowercase().replace([' ', '-'], "_"))
            .collect();
        if let Some(unknown) = headers.iter().find(|h| !COLUMNS.contains(&h.as_str())) {
            return Err(StoreError::Invalid(format!(
                "unknown CSV column '{unknown}' (columns: {})",
                COLUMNS.join(",")
            )));
        }
        if !headers.iter().any(|h| h == "name") {
            return Err(StoreError::Invalid(
                "the CSV header has no 'name' column (e.g. name,model,protocol,profile)".into(),
            ));
        }
        let days = self
            .param(crate::params::CAPF_OPERATION_EXPIRES_DAYS)
            .await?;
        let profiles: HashMap<String, SecurityProfile> = self
            .profiles()
            .await?
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let existing: HashSet<String> = self.device_names().await?.into_iter().collect();
        let mut seen = HashSet::new();
        let mut reports = Vec::new();
        let mut good = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            if i >= MAX_ROWS {
                return Err(StoreError::Invalid(format!(
                    "more than {MAX_ROWS} rows; split the file"
                )));
            }
            let line = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(2);
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    reports.push(RowReport {
                        line,
                        name: String::new(),
                        result: Err(format!("unreadable row: {e}")),
                    });
                    continue;
                }
            };
            let cells: Vec<(String, String)> = headers
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect();
            let given = cells
                .iter()
                .find(|(c, _)| c == "name")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let checked = parse_row(&cells, line, allow_unknown_models).and_then(|mut row| {
                let name = row
                    .dev
                    .profile
                    .clone()
                    .unwrap_or_else(|| crate::devices::DEFAULT_PROFILE.to_string());
                let Some(profile) = profiles.get(&name) else {
                    return Err(format!("no phone security profile '{name}'"));
                };
                if existing.contains(&row.dev.name) {
                    return Err(format!("phone {} exists already", row.dev.name));
                }
                if !seen.insert(row.dev.name.clone()) {
                    return Err(format!("phone {} appears twice in the file", row.dev.name));
                }
                // The phone's CAPF information as it will be written, checked now.
                if row.capf != CapfChange::default() {
                    let mut capf = CapfInfo::idle(profile, now);
                    apply_capf_change(&mut capf, profile, &row.capf, now, days).map_err(
                        |e| match e {
                            StoreError::MissingAuthString => format!(
                                "{e}: fill the auth_string column (or choose another auth_mode)"
                            ),
                            e => e.to_string(),
                        },
                    )?;
                    row.final_capf = Some(capf);
                }
                Ok(row)
            });
            match checked {
                Ok(row) => {
                    reports.push(RowReport {
                        line,
                        name: row.dev.name.clone(),
                        result: Ok(()),
                    });
                    good.push(row);
                }
                Err(e) => reports.push(RowReport {
                    line,
                    name: given,
                    result: Err(e),
                }),
            }
        }
        let mut tx = self.begin().await?;
        for row in &good {
            let name = insert_device(&mut tx, &row.dev, now)
                .await
                .map_err(|e| StoreError::Invalid(format!("line {}: {e}", row.line)))?;
            if let Some(capf) = &row.final_capf {
                write_capf(&mut tx, &name, capf, now).await?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        tracing::info!(
            added = good.len(),
            refused = reports.len() - good.len(),
            "CSV import"
        );
        Ok(reports)
    }
}
