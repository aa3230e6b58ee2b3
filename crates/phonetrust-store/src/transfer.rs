//! Copying a whole store into another database (`phonetrust cluster migrate --to …`: a
//! single node's SQLite file into a new cluster database on PostgreSQL), and proving the
//! copy: per table the row count and a digest of every row, computed alike on both sides.
//!
//! The copy is one transaction on the target: it holds all of the source or, after any
//! failure, none of it. The target must be a new database: its schema is made by the
//! migrations on opening; only the rows the migrations insert (default parameters,
//! profiles, the default group) may be there, and they are replaced by the source's.
//!
//! The schema uses TEXT, INTEGER and BIGINT only ([`crate::db`]), so a row is a list of
//! optional texts and integers on either engine. The digest of a table is the SHA-256 of
//! its rows' SHA-256s in sorted order: independent of the order the engines return rows
//! in (their text collations differ).

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// Every table of the store, parents before children (foreign keys). A test checks that
/// this lists exactly the tables the migrations create.
pub const TABLES: [&str; 20] = [
    "processconfig",
    "securityprofile",
    "device",
    "devicecert",
    "trustcert",
    "trustlistfile",
    "itlfile",
    "auth_failure",
    "cluster_node",
    "node_cert",
    "cm_group",
    "device_pool",
    "device_placement",
    "audit_log",
    "download_log",
    "cert_notice",
    "renewal_batch",
    "renewal",
    "account",
    "api_token",
];

/// Rows inserted per statement (PostgreSQL takes at most 65,535 parameters).
const ROWS_PER_INSERT: usize = 500;

/// A value of the schema's column types.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Null,
    Text(String),
    Int(i64),
}

/// What one table holds: rows and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSum {
    /// The table.
    pub table: &'static str,
    /// Its rows.
    pub rows: u64,
    /// SHA-256 (hex) of the sorted SHA-256s of its rows.
    pub digest: String,
}

/// Both sides of a copy, table by table.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The source's tables.
    pub source: Vec<TableSum>,
    /// The target's tables, in the same order.
    pub target: Vec<TableSum>,
}

impl Comparison {
    /// True when every table has the same rows on both sides.
    pub fn identical(&self) -> bool {
        self.source == self.target
    }
}

/// Column names and whether each is an integer, as `db` declares them.
async fn columns(db: &Db, table: &str) -> Result<Vec<(String, bool)>, StoreError> {
    // An empty result still describes the columns on both engines.
    let rows = sqlx::query(sqlx::AssertSqlSafe(match db.backend {
        crate::db::Backend::Sqlite => format!(
            "SELECT name, type FROM pragma_table_info('{table}') ORDER BY cid"
        ),
        crate::db::Backend::Postgres => format!(
            "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    }))
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get(0).map_err(db_err)?;
        let ty: String = r.try_get(1).map_err(db_err)?;
        let ty = ty.to_ascii_uppercase();
        out.push((name, ty.contains("INT")));
    }
    if out.is_empty() {
        return Err(StoreError::Invalid(format!(
            "table {table} is missing in {}: is it a phonetrust database?",
            db.url
        )));
    }
    Ok(out)
}

/// Every row of `table` in `db`, columns as `cols`.
async fn rows(
    db: &Db,
    table: &str,
    cols: &[(String, bool)],
) -> Result<Vec<Vec<Value>>, StoreError> {
    let list: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let sql = format!("SELECT {} FROM {table}", list.join(", "));
    let got = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(got.len());
    for r in got {
        let mut row = Vec::with_capacity(cols.len());
        for (i, (_, int)) in cols.iter().enumerate() {
            let v = if *int {
                r.try_get::<Option<i64>, _>(i)
                    .map_err(db_err)?
                    .map_or(Value::Null, Value::Int)
            } else {
                r.try_get::<Option<String>, _>(i)
                    .map_err(db_err)?
                    .map_or(Value::Null, Value::Text)
            };
            row.push(v);
        }
        out.push(row);
    }
    Ok(out)
}

fn row_hash(row: &[Value]) -> [u8; 32] {
    let mut bytes = Vec::new();
    for v in row {
        match v {
            Value::Null => bytes.push(0),
            Value::Text(s) => {
                bytes.push(1);
                bytes.extend_from_slice(&(s.len() as u64).to_be_bytes());
                bytes.extend_from_slice(s.as_bytes());
            }
            Value::Int(n) => {
                bytes.push(2);
                bytes.extend_from_slice(&n.to_be_bytes());
            }
        }
    }
    openssl::sha::sha256(&bytes)
}

fn digest(rows: &[Vec<Value>]) -> String {
    let mut hashes: Vec<[u8; 32]> = rows.iter().map(|r| row_hash(r)).collect();
    hashes.sort_unstable();
    let mut h = openssl::sha::Sha256::new();
    for x in &hashes {
        h.update(x);
    }
    h.finish().iter().map(|b| format!("{b:02x}")).collect()
}

/// Count and digest every table of `db`.
pub async fn summarise(db: &Db) -> Result<Vec<TableSum>, StoreError> {
    let mut out = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let cols = columns(db, table).await?;
        let r = rows(db, table, &cols).await?;
        out.push(TableSum {
            table,
            rows: r.len() as u64,
            digest: digest(&r),
        });
    }
    Ok(out)
}

/// What in `db` shows it is in use: phones, nodes, imported certificates, LSC and MIC
/// records, a CTL (rows no migration inserts).
pub async fn in_use(db: &Db) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut out = Vec::new();
    for (table, what) in [
        ("device", "phones"),
        ("devicecert", "phone certificates"),
        ("cluster_node", "nodes"),
        ("trustcert", "trust-store certificates"),
        ("trustlistfile", "CTL files"),
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&db.pool)
                .await
                .map_err(db_err)?;
        if n > 0 {
            out.push((what, n));
        }
    }
    Ok(out)
}

/// Copy every row of `from` into `to` in one transaction on `to`, replacing the rows its
/// migrations inserted; refused when `to` is in use ([`in_use`]). Then both sides are
/// summarised again and compared: the caller reports [`Comparison::identical`].
pub async fn copy_store(from: &Db, to: &Db) -> Result<Comparison, StoreError> {
    let used = in_use(to).await?;
    if !used.is_empty() {
        let what: Vec<String> = used.iter().map(|(w, n)| format!("{n} {w}")).collect();
        return Err(StoreError::Invalid(format!(
            "the target database is in use ({}): migrate into a new, empty database (`createdb`), nothing was copied",
            what.join(", ")
        )));
    }
    if from.schema_version().await? != to.schema_version().await? {
        return Err(StoreError::Invalid(
            "the two databases have different schema versions: open the source with this version of phonetrust first (it migrates it)".into(),
        ));
    }
    let mut plan = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let cols = columns(from, table).await?;
        let target_cols = columns(to, table).await?;
        if target_cols
            .iter()
            .map(|c| &c.0)
            .ne(cols.iter().map(|c| &c.0))
        {
            return Err(StoreError::Invalid(format!(
                "table {table} has other columns in the target database: nothing was copied"
            )));
        }
        let r = rows(from, table, &cols).await?;
        plan.push((table, cols, r));
    }
    let mut tx = to.begin().await?;
    for table in TABLES.iter().rev() {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    for (table, cols, rows) in &plan {
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            // `$n` placeholders, which both engines read (the `Any` QueryBuilder writes
            // `?`, which PostgreSQL does not).
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
            let mut n = 0usize;
            for (i, row) in chunk.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ", (" });
                for (j, v) in row.iter().enumerate() {
                    if j > 0 {
                        sql.push_str(", ");
                    }
                    if *v == Value::Null {
                        sql.push_str("NULL");
                    } else {
                        n += 1;
                        sql.push_str(&format!("${n}"));
                    }
                }
                sql.push(')');
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in chunk.iter().flatten() {
                q = match v {
                    Value::Null => q,
                    Value::Text(s) => q.bind(s.clone()),
                    Value::Int(i) => q.bind(*i),
                };
            }
            q.execute(&mut *tx).await.map_err(db_err)?;
        }
    }
    tx.commit().await.map_err(db_err)?;
    Ok(Comparison {
        source: summarise(from).await?,
        target: summarise(to).await?,
    })
}
