//! Storage of LSC renewals by policy: one row per phone being renewed (the rules are
//! `phonetrust_rules::lifecycle`), one per batch.

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// Where a renewal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RenewalState {
    /// Install/Upgrade scheduled; the phone has not renewed yet.
    Scheduled,
    /// The phone holds a new LSC.
    Done,
    /// CAPF failed it, or its deadline passed.
    Failed,
}

impl RenewalState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "scheduled" => Ok(Self::Scheduled),
            "done" => Ok(Self::Done),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Db(format!("renewal: unknown state {other:?}"))),
        }
    }
}

/// One phone's renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// `SEP<MAC>`.
    pub device: String,
    /// Why it is renewed.
    pub reason: String,
    /// Serial of the LSC being renewed.
    pub lsc_serial: String,
    /// Its batch.
    pub batch: i64,
    /// Unix seconds.
    pub scheduled_at: i64,
    /// Where it stands.
    pub state: RenewalState,
    /// When it ended (Unix seconds).
    pub finished_at: Option<i64>,
    /// How it ended.
    pub detail: String,
}

/// One batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalBatch {
    /// Its number.
    pub id: i64,
    /// When it was scheduled (Unix seconds).
    pub at: i64,
    /// How many phones.
    pub phones: i64,
    /// What the reset hook did.
    pub hook: String,
}

impl Db {
    /// Renewals, all or in one state, oldest batch first.
    pub async fn renewals(&self, state: Option<RenewalState>) -> Result<Vec<Renewal>, StoreError> {
        let sql = "SELECT device, reason, lsc_serial, batch, scheduled_at, state, finished_at, detail \
                   FROM renewal WHERE ($1 = '' OR state = $1) ORDER BY batch, device";
        let rows = sqlx::query(sql)
            .bind(state.map(|s| s.as_str()).unwrap_or(""))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get(5).map_err(db_err)?;
                Ok(Renewal {
                    device: r.try_get(0).map_err(db_err)?,
                    reason: r.try_get(1).map_err(db_err)?,
                    lsc_serial: r.try_get(2).map_err(db_err)?,
                    batch: r.try_get(3).map_err(db_err)?,
                    scheduled_at: r.try_get(4).map_err(db_err)?,
                    state: RenewalState::parse(&state)?,
                    finished_at: r.try_get(6).map_err(db_err)?,
                    detail: r.try_get(7).map_err(db_err)?,
                })
            })
            .collect()
    }

    /// Phones scheduled for renewal after `t` (an hour ago: within the last hour).
    pub async fn renewals_scheduled_since(&self, t: i64) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM renewal WHERE scheduled_at > $1")
            .bind(t)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    /// The number the next batch gets.
    pub async fn next_renewal_batch(&self) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM renewal_batch")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(n.unwrap_or(0) + 1)
    }

    /// Record a batch: its phones' rows (replacing earlier renewals of the same phones)
    /// and the batch itself, in one transaction.
    pub async fn put_renewals(&self, rows: &[Renewal]) -> Result<(), StoreError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO renewal_batch (id, at, phones, hook) VALUES ($1, $2, $3, '')")
            .bind(first.batch)
            .bind(first.scheduled_at)
            .bind(rows.len() as i64)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for r in rows {
            sqlx::query(
                "INSERT INTO renewal (device, reason, lsc_serial, batch, scheduled_at, state, finished_at, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7) ON CONFLICT (device) DO UPDATE SET \
                 reason = $2, lsc_serial = $3, batch = $4, scheduled_at = $5, state = $6, \
                 finished_at = NULL, detail = $7",
            )
            .bind(&r.device)
            .bind(&r.reason)
            .bind(&r.lsc_serial)
            .bind(r.batch)
            .bind(r.scheduled_at)
            .bind(r.state.as_str())
            .bind(&r.detail)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// A renewal ended.
    pub async fn finish_renewal(
        &self,
        device: &str,
        state: RenewalState,
        detail: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE renewal SET state = $2, detail = $3, finished_at = $4 WHERE device = $1",
        )
        .bind(device)
        .bind(state.as_str())
        .bind(detail)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// What the reset hook did for batch `id`.
    pub async fn set_batch_hook(&self, id: i64, hook: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE renewal_batch SET hook = $2 WHERE id = $1")
            .bind(id)
            .bind(hook)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// The batches, newest first, at most `limit`.
    pub async fn renewal_batches(&self, limit: u32) -> Result<Vec<RenewalBatch>, StoreError> {
        let rows =
            sqlx::query("SELECT id, at, phones, hook FROM renewal_batch ORDER BY id DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(RenewalBatch {
                    id: r.try_get(0).map_err(db_err)?,
                    at: r.try_get(1).map_err(db_err)?,
                    phones: r.try_get(2).map_err(db_err)?,
                    hook: r.try_get(3).map_err(db_err)?,
                })
            })
            .collect()
    }
}
