//! Accounts of the web administration and the REST API: name, role, Argon2id password
//! hash, disabled flag, the login-failure count and lock (the rules are
//! `phonetrust_rules::accounts`; this is their storage).

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// One account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// `admin`, `operator` or `read-only`.
    pub role: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// May not log in.
    pub disabled: bool,
    /// Consecutive failed logins.
    pub failures: u32,
    /// Locked until (Unix seconds; 0: not locked).
    pub locked_until: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub password_changed_at: i64,
    /// Unix seconds (0: never).
    pub last_login_at: i64,
}

const COLUMNS: &str = "name, role, password_hash, disabled, failures, locked_until, created_at, password_changed_at, last_login_at";

/// `Ok` when a statement touched the account `name`, else "no account".
fn found(rows: u64, name: &str) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::NotFound(format!(
            "no account {name} (`phonetrust user list` lists them)"
        )));
    }
    Ok(())
}

fn row(r: &sqlx::any::AnyRow) -> Result<Account, StoreError> {
    Ok(Account {
        name: r.try_get(0).map_err(db_err)?,
        role: r.try_get(1).map_err(db_err)?,
        password_hash: r.try_get(2).map_err(db_err)?,
        disabled: r.try_get::<i64, _>(3).map_err(db_err)? != 0,
        failures: u32::try_from(r.try_get::<i64, _>(4).map_err(db_err)?).unwrap_or(u32::MAX),
        locked_until: r.try_get(5).map_err(db_err)?,
        created_at: r.try_get(6).map_err(db_err)?,
        password_changed_at: r.try_get(7).map_err(db_err)?,
        last_login_at: r.try_get(8).map_err(db_err)?,
    })
}

impl Db {
    /// Add an account; refused when the name exists.
    pub async fn add_account(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO account (name, role, password_hash, disabled, failures, locked_until, created_at, password_changed_at, last_login_at) \
             VALUES ($1, $2, $3, 0, 0, 0, $4, $4, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "an account {name} exists already: `phonetrust user passwd {name}` changes its password"
            )));
        }
        Ok(())
    }

    /// One account.
    pub async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM account WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        r.as_ref().map(row).transpose()
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM account ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(row).collect()
    }

    /// How many accounts exist (the web admin serves only its set-up page until one does).
    pub async fn account_count(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM account")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Set a new password hash (and clear failures and lock).
    pub async fn set_account_password(
        &self,
        name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.update_account(
            name,
            "password_hash = $2, password_changed_at = $3, failures = 0, locked_until = 0",
            password_hash,
            now,
        )
        .await
    }

    /// Disable or enable an account.
    pub async fn set_account_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE account SET disabled = $2 WHERE name = $1")
            .bind(name)
            .bind(i64::from(disabled))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(r.rows_affected(), name)
    }

    /// Record a login: its failure count and lock, or a success (count cleared).
    pub async fn record_login(
        &self,
        name: &str,
        failures: u32,
        locked_until: i64,
        success_at: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE account SET failures = $2, locked_until = $3, \
             last_login_at = CASE WHEN $4 > 0 THEN $4 ELSE last_login_at END WHERE name = $1",
        )
        .bind(name)
        .bind(i64::from(failures))
        .bind(locked_until)
        .bind(success_at.unwrap_or(0))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Delete an account.
    pub async fn delete_account(&self, name: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM account WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(r.rows_affected(), name)
    }

    async fn update_account(
        &self,
        name: &str,
        set: &str,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE account SET {set} WHERE name = $1"
        )))
        .bind(name)
        .bind(text)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        found(r.rows_affected(), name)
    }
}

/// A REST API token as stored (its SHA-256 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Short id (list, revoke).
    pub id: String,
    /// Its account.
    pub account: String,
    /// What it is for.
    pub label: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds (0: never).
    pub last_used_at: i64,
}

impl Db {
    /// Store a token's SHA-256 for `account`.
    pub async fn add_api_token(
        &self,
        id: &str,
        account: &str,
        label: &str,
        sha256: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_token (id, account, label, sha256, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(id)
        .bind(account)
        .bind(label)
        .bind(sha256)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// The account of the token whose SHA-256 is `sha256`, noting its use.
    pub async fn api_token_account(
        &self,
        sha256: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let a: Option<String> =
            sqlx::query_scalar("SELECT account FROM api_token WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        if a.is_some() {
            sqlx::query("UPDATE api_token SET last_used_at = $2 WHERE sha256 = $1 AND last_used_at < $2 - 60")
                .bind(sha256)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        }
        Ok(a)
    }

    /// Tokens, of one account or all.
    pub async fn api_tokens(&self, account: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account, label, created_at, last_used_at FROM api_token \
             WHERE ($1 = '' OR account = $1) ORDER BY account, created_at",
        )
        .bind(account.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(ApiToken {
                    id: r.try_get(0).map_err(db_err)?,
                    account: r.try_get(1).map_err(db_err)?,
                    label: r.try_get(2).map_err(db_err)?,
                    created_at: r.try_get(3).map_err(db_err)?,
                    last_used_at: r.try_get(4).map_err(db_err)?,
                })
            })
            .collect()
    }

    /// Revoke a token by id.
    pub async fn revoke_api_token(&self, id: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM api_token WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no API token {id} (`phonetrust user token list` lists them)"
            )));
        }
        Ok(())
    }
}
