//! `run sql`: read-only queries for administrators, printed as a table like the vendor's
//! CLI prints them (`paramname           paramvalue` over a line of `=`).
//!
//! Read-only is enforced twice: the text must be one `SELECT` (or `WITH ... SELECT`)
//! statement, and it runs where writing is impossible (a SQLite connection opened
//! read-only; a PostgreSQL transaction `READ ONLY`, rolled back).

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyRow};
// The text is the administrator's own query, checked read-only above and run where
// writing is impossible.
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Row, ValueRef};

use crate::StoreError;
use crate::db::{Backend, Db, db_err};

/// Most rows a query returns.
pub const MAX_ROWS: usize = 10_000;

/// A query result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each value as text (`NULL` for null).
    pub rows: Vec<Vec<String>>,
    /// True when more than [`MAX_ROWS`] rows matched.
    pub truncated: bool,
}

impl Table {
    /// The table as the CLI prints it: columns padded to their widest value, a line of
    /// `=` under each name.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &self.rows {
            for (w, v) in widths.iter_mut().zip(r) {
                *w = (*w).max(v.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join(" ");
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let mut out = line(&self.columns);
        out.push_str(&line(
            &widths.iter().map(|w| "=".repeat(*w)).collect::<Vec<_>>(),
        ));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// Check that `sql` is one read-only statement; returns it without a trailing `;`.
pub fn check_read_only(sql: &str) -> Result<&str, StoreError> {
    let s = sql.trim().trim_end_matches(';').trim_end();
    let first = s
        .split(|c: char| c.is_whitespace() || c == '(')
        .find(|w| !w.is_empty())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if first != "select" && first != "with" {
        return Err(StoreError::Invalid(
            "run sql only runs queries: the statement must start with SELECT (or WITH); nothing was changed".into(),
        ));
    }
    if s.contains(';') {
        return Err(StoreError::Invalid(
            "run sql runs one statement at a time: remove the ';' inside it".into(),
        ));
    }
    Ok(s)
}

fn cell(row: &AnyRow, i: usize) -> String {
    match row.try_get_raw(i) {
        Ok(v) if v.is_null() => return "NULL".into(),
        Err(_) => return "?".into(),
        Ok(_) => {}
    }
    if let Ok(v) = row.try_get::<i64, _>(i) {
        return v.to_string();
    }
    if let Ok(v) = row.try_get::<f64, _>(i) {
        return v.to_string();
    }
    if let Ok(v) = row.try_get::<String, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<bool, _>(i) {
        return if v { "t" } else { "f" }.into();
    }
    if let Ok(v) = row.try_get::<Vec<u8>, _>(i) {
        return phonetrust_proto::codec::hex(&v);
    }
    "?".into()
}

impl Db {
    /// Run one read-only query: the text is checked ([`check_read_only`]), then run by
    /// [`Db::query_read_only`].
    pub async fn run_sql(&self, sql: &str) -> Result<Table, StoreError> {
        self.query_read_only(check_read_only(sql)?).await
    }

    /// The second guard alone: run `sql` where writing is impossible (a SQLite connection
    /// opened read-only; a PostgreSQL `READ ONLY` transaction, rolled back), without the
    /// text check. Public so that this guard is tested by itself; commands call
    /// [`Db::run_sql`].
    pub async fn query_read_only(&self, sql: &str) -> Result<Table, StoreError> {
        let refused = |e: sqlx::Error| StoreError::Invalid(format!("run sql: {e}"));
        match self.backend {
            Backend::Sqlite => {
                let base = self.url.split('?').next().unwrap_or(&self.url);
                let opts =
                    AnyConnectOptions::from_str(&format!("{base}?mode=ro")).map_err(db_err)?;
                let mut conn = opts.connect().await.map_err(db_err)?;
                let r = collect(sqlx::query(AssertSqlSafe(sql.to_string())).fetch(&mut conn))
                    .await
                    .map_err(refused);
                let _ = conn.close().await;
                r
            }
            Backend::Postgres => {
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                sqlx::query("SET TRANSACTION READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                let r = collect(sqlx::query(AssertSqlSafe(sql.to_string())).fetch(&mut *tx))
                    .await
                    .map_err(refused);
                let _ = tx.rollback().await;
                r
            }
        }
    }
}

/// Rows as they arrive, as text, stopping after [`MAX_ROWS`]: a query matching millions
/// of rows costs the first ten thousand, not all of them.
async fn collect<S>(mut rows: S) -> Result<Table, sqlx::Error>
where
    S: futures_lite::Stream<Item = Result<AnyRow, sqlx::Error>> + Unpin,
{
    use futures_lite::StreamExt;
    let mut t = Table {
        columns: Vec::new(),
        rows: Vec::new(),
        truncated: false,
    };
    while let Some(r) = rows.next().await {
        let r = r?;
        if t.rows.len() == MAX_ROWS {
            t.truncated = true;
            break;
        }
        if t.rows.is_empty() {
            t.columns = r.columns().iter().map(|c| c.name().to_string()).collect();
        }
        t.rows.push((0..r.len()).map(|i| cell(&r, i)).collect());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_selects_pass() {
        assert!(check_read_only("select 1").is_ok());
        assert!(check_read_only("  WITH x AS (SELECT 1) SELECT * FROM x;").is_ok());
        for bad in [
            "delete from device",
            "update processconfig set paramvalue='1'",
            "select 1; delete from device",
            "pragma writable_schema=1",
            "",
        ] {
            assert!(check_read_only(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_layout() {
        let t = Table {
            columns: vec!["paramname".into(), "paramvalue".into()],
            rows: vec![vec!["ClusterSecurityMode".into(), "0".into()]],
            truncated: false,
        };
        assert_eq!(
            t.render(),
            "paramname           paramvalue\n=================== ==========\nClusterSecurityMode 0\n"
        );
    }
}
