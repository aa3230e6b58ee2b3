//! CAPF authentication failures, kept across restarts (the rules are
//! `phonetrust_rules::authguard`; this is only their storage).

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// One stored record: the key (`dev:…` / `ip:…`), failures, last failure, locked until.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    /// `dev:SEP…` or `ip:…`.
    pub key: String,
    /// Failures within the window.
    pub failures: u32,
    /// Unix seconds.
    pub last_failure: i64,
    /// Unix seconds (0: not locked).
    pub locked_until: i64,
}

impl Db {
    /// Records whose last failure is at or after `since`, or still locked at `since`.
    pub async fn auth_failures(&self, since: i64) -> Result<Vec<AuthFailure>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, failures, last_failure, locked_until FROM auth_failure \
             WHERE last_failure >= $1 OR locked_until > $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(AuthFailure {
                    key: r.try_get(0).map_err(db_err)?,
                    failures: u32::try_from(r.try_get::<i64, _>(1).map_err(db_err)?)
                        .unwrap_or(u32::MAX),
                    last_failure: r.try_get(2).map_err(db_err)?,
                    locked_until: r.try_get(3).map_err(db_err)?,
                })
            })
            .collect()
    }

    /// Store `f` (insert, or replace an older record: writes of concurrent sessions may
    /// arrive out of order, the newest count wins), and forget records older than
    /// `forget_before`.
    pub async fn put_auth_failure(
        &self,
        f: &AuthFailure,
        forget_before: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO auth_failure (key, failures, last_failure, locked_until) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE \
             SET failures = $2, last_failure = $3, locked_until = $4 \
             WHERE auth_failure.last_failure < $3 \
                OR (auth_failure.last_failure = $3 AND auth_failure.failures < $2)",
        )
        .bind(&f.key)
        .bind(i64::from(f.failures))
        .bind(f.last_failure)
        .bind(f.locked_until)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM auth_failure WHERE last_failure < $1 AND locked_until < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    /// Forget `key` (a phone that authenticated).
    pub async fn clear_auth_failure(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM auth_failure WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
