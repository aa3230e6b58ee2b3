//! What each known phone last downloaded: its ITL, its CTL, its configuration, with the
//! checksum, the node, the protocol and the time (the vendor's ITL file status report).
//! The serving nodes collect these in memory and write them in batches; a name that is
//! not a known phone is not recorded (a peer cannot grow the table).

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// Records written per statement.
const ROWS_PER_INSERT: usize = 200;

/// What was downloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DownloadKind {
    /// `ITLSEP<MAC>.tlv`.
    Itl,
    /// `CTLSEP<MAC>.tlv`.
    Ctl,
    /// `SEP<MAC>.cnf.xml[.enc][.sgn]`.
    Config,
}

impl DownloadKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Itl => "itl",
            Self::Ctl => "ctl",
            Self::Config => "config",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "itl" => Some(Self::Itl),
            "ctl" => Some(Self::Ctl),
            "config" => Some(Self::Config),
            _ => None,
        }
    }
}

/// One download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    /// `SEP<MAC>`.
    pub device: String,
    /// What.
    pub kind: DownloadKind,
    /// The name the phone asked for.
    pub file: String,
    /// SHA-256 of the bytes served, lower-case hex.
    pub sha256: String,
    /// The node that served it.
    pub node: String,
    /// `tftp`, `http`, `https`.
    pub protocol: String,
    /// Unix seconds.
    pub at: i64,
}

impl Db {
    /// Record `downloads` (a later record of the same phone and kind replaces an earlier
    /// one; names that are not known phones are skipped). One transaction.
    pub async fn record_downloads(&self, downloads: &[Download]) -> Result<(), StoreError> {
        if downloads.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in downloads.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO download_log (device, kind, file, sha256, node, protocol, at) \
                 SELECT v.device, v.kind, v.file, v.sha256, v.node, v.protocol, v.at FROM (",
            );
            // One SELECT per record; the first names the columns.
            const COLUMNS: [&str; 7] =
                ["device", "kind", "file", "sha256", "node", "protocol", "at"];
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "SELECT "
                } else {
                    " UNION ALL SELECT "
                });
                for (j, col) in COLUMNS.iter().enumerate() {
                    let n = i * COLUMNS.len() + j + 1;
                    if j > 0 {
                        sql.push_str(", ");
                    }
                    if *col == "at" {
                        sql.push_str(&format!("CAST(${n} AS BIGINT)"));
                    } else {
                        sql.push_str(&format!("${n}"));
                    }
                    if i == 0 {
                        sql.push_str(&format!(" AS {col}"));
                    }
                }
            }
            sql.push_str(
                ") v WHERE EXISTS (SELECT 1 FROM device d WHERE d.name = v.device) \
                 ON CONFLICT (device, kind) DO UPDATE SET file = excluded.file, \
                 sha256 = excluded.sha256, node = excluded.node, \
                 protocol = excluded.protocol, at = excluded.at \
                 WHERE download_log.at <= excluded.at",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for d in chunk {
                q = q
                    .bind(d.device.clone())
                    .bind(d.kind.as_str())
                    .bind(d.file.clone())
                    .bind(d.sha256.clone())
                    .bind(d.node.clone())
                    .bind(d.protocol.clone())
                    .bind(d.at);
            }
            q.execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// Every recorded download of `kind`, by phone name.
    pub async fn downloads(&self, kind: DownloadKind) -> Result<Vec<Download>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, kind, file, sha256, node, protocol, at FROM download_log \
             WHERE kind = $1 ORDER BY device",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(row).collect()
    }

    /// Every recorded download of one phone.
    pub async fn downloads_of(&self, device: &str) -> Result<Vec<Download>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, kind, file, sha256, node, protocol, at FROM download_log \
             WHERE device = $1 ORDER BY kind",
        )
        .bind(device)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(row).collect()
    }

    /// Claim the notification of certificate `cert` (SHA-256 of its DER) for unix day
    /// `day`: true for the first claim in the cluster, false when already sent.
    pub async fn claim_cert_notice(&self, cert: &str, day: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO cert_notice (cert, day) VALUES ($1, $2) ON CONFLICT (cert, day) DO NOTHING",
        )
        .bind(cert)
        .bind(day)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        // Forget notices older than a week.
        sqlx::query("DELETE FROM cert_notice WHERE day < $1")
            .bind(day - 7)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected() == 1)
    }
}

impl Db {
    /// Give back a claim of [`claim_cert_notice`](Db::claim_cert_notice) (sending failed:
    /// the next check tries again).
    pub async fn release_cert_notice(&self, cert: &str, day: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cert_notice WHERE cert = $1 AND day = $2")
            .bind(cert)
            .bind(day)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

fn row(r: &sqlx::any::AnyRow) -> Result<Download, StoreError> {
    let kind: String = r.try_get(1).map_err(db_err)?;
    Ok(Download {
        device: r.try_get(0).map_err(db_err)?,
        kind: DownloadKind::parse(&kind)
            .ok_or_else(|| StoreError::Db(format!("download_log: unknown kind {kind:?}")))?,
        file: r.try_get(2).map_err(db_err)?,
        sha256: r.try_get(3).map_err(db_err)?,
        node: r.try_get(4).map_err(db_err)?,
        protocol: r.try_get(5).map_err(db_err)?,
        at: r.try_get(6).map_err(db_err)?,
    })
}
