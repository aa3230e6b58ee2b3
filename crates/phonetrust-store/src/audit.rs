//! The audit log: who changed what, when, on which node, and how it ended. The CLI
//! records every command that changes something; the web admin and API will record
//! through the same call.

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// Longest detail kept (arguments of a command); longer ones are cut.
pub const MAX_DETAIL: usize = 2_000;

/// One entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The OS account (CLI) or web account.
    pub actor: String,
    /// The node the change was made on.
    pub node: String,
    /// What was done, e.g. `set cert regen`.
    pub action: String,
    /// Its arguments, secrets masked.
    pub detail: String,
    /// `ok`, or the refusal or failure.
    pub result: String,
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Db {
    /// Append `e` to the audit log.
    pub async fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let mut suffix = [0u8; 6];
        openssl::rand::rand_bytes(&mut suffix).map_err(|e| StoreError::Db(e.to_string()))?;
        let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let id = format!("{:016x}-{hex}", e.at_ms.max(0));
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, node, action, detail, result) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(e.at_ms)
        .bind(cut(&e.actor, 200).to_string())
        .bind(cut(&e.node, 255).to_string())
        .bind(cut(&e.action, 200).to_string())
        .bind(cut(&e.detail, MAX_DETAIL).to_string())
        .bind(cut(&e.result, MAX_DETAIL).to_string())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Entries at or after `since_ms`, oldest first, at most `limit` (the newest ones).
    pub async fn audit_since(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, node, action, detail, result FROM audit_log \
             WHERE at >= $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    at_ms: r.try_get(0).map_err(db_err)?,
                    actor: r.try_get(1).map_err(db_err)?,
                    node: r.try_get(2).map_err(db_err)?,
                    action: r.try_get(3).map_err(db_err)?,
                    detail: r.try_get(4).map_err(db_err)?,
                    result: r.try_get(5).map_err(db_err)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc");
        // "é" is two bytes: cutting inside it keeps what precedes.
        assert_eq!(cut("aé", 2), "a");
    }
}
