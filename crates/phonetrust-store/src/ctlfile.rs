//! The cluster's CTL (`CTLFile.tlv`) and Cluster Security Mode, kept together.
//!
//! Both live in the database and change in one transaction ([`Db::set_cluster_security`]):
//! moving to mixed mode writes the CTL and sets the mode, or, on any failure, neither.
//! Provisioning (TFTP/HTTP) serves the stored CTL and TVS trusts its records, whatever
//! static directory or config file a command was started with. The mode cannot be set
//! through `set param` ([`crate::params`] refuses it).

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};
use crate::params::CLUSTER_SECURITY_MODE;

/// The name the CTL is served under.
pub const CTL_NAME: &str = "CTLFile.tlv";

/// Largest CTL accepted (a CTL of a large cluster is some tens of KiB).
pub const MAX_CTL_BYTES: usize = 1 << 20;

/// Cluster Security Mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterSecurityMode {
    /// 0: non-secure.
    NonSecure,
    /// 1: mixed mode (a CTL exists; phones may register encrypted).
    Mixed,
}

impl ClusterSecurityMode {
    /// The parameter's value.
    pub fn value(self) -> i64 {
        match self {
            Self::NonSecure => 0,
            Self::Mixed => 1,
        }
    }

    /// The mode of a stored value (anything but 1 is non-secure).
    pub fn of(value: i64) -> Self {
        if value == 1 {
            Self::Mixed
        } else {
            Self::NonSecure
        }
    }
}

/// The stored CTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCtl {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// When it was written (Unix seconds).
    pub updated_at: i64,
}

/// What [`Db::set_cluster_security`] does to the CTL.
#[derive(Clone, Copy, Debug)]
pub enum CtlChange<'a> {
    /// Leave it as it is.
    Keep,
    /// Store these bytes as the CTL.
    Write(&'a [u8]),
    /// Delete it (`file delete tftp CTLFile.tlv`).
    Delete,
}

impl Db {
    /// The current Cluster Security Mode.
    pub async fn security_mode(&self) -> Result<ClusterSecurityMode, StoreError> {
        Ok(ClusterSecurityMode::of(
            self.param(CLUSTER_SECURITY_MODE).await?,
        ))
    }

    /// The stored CTL, if any.
    pub async fn ctl(&self) -> Result<Option<StoredCtl>, StoreError> {
        let row =
            sqlx::query("SELECT content, sha256, updated_at FROM trustlistfile WHERE name = $1")
                .bind(CTL_NAME)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let content: String = r.try_get(0).map_err(db_err)?;
        let bytes = openssl::base64::decode_block(&content).map_err(|e| {
            StoreError::Db(format!(
                "the stored {CTL_NAME} is damaged ({e}); rebuild it with `phonetrust utils ctl update CTLFile`"
            ))
        })?;
        Ok(Some(StoredCtl {
            bytes,
            sha256: r.try_get(1).map_err(db_err)?,
            updated_at: r.try_get(2).map_err(db_err)?,
        }))
    }

    /// What changes when the CTL changes, cheap to ask every second: its SHA-256 and
    /// time, without the content.
    pub async fn ctl_stamp(&self) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query("SELECT sha256, updated_at FROM trustlistfile WHERE name = $1")
            .bind(CTL_NAME)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
            .transpose()
    }

    /// Change the CTL and (when `mode` is given) Cluster Security Mode in one
    /// transaction: on any failure neither changes.
    pub async fn set_cluster_security(
        &self,
        ctl: CtlChange<'_>,
        mode: Option<ClusterSecurityMode>,
        now: i64,
    ) -> Result<(), StoreError> {
        let what = match ctl {
            CtlChange::Keep => "kept",
            CtlChange::Write(_) => "written",
            CtlChange::Delete => "deleted",
        };
        let mut tx = self.begin().await?;
        if let Some(m) = mode {
            sqlx::query(
                "INSERT INTO processconfig (paramname, paramvalue, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (paramname) DO UPDATE SET paramvalue = $2, updated_at = $3",
            )
            .bind(CLUSTER_SECURITY_MODE)
            .bind(m.value().to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        match ctl {
            CtlChange::Keep => {}
            CtlChange::Write(bytes) => {
                if bytes.len() > MAX_CTL_BYTES {
                    return Err(StoreError::Invalid(format!(
                        "a CTL of {} bytes is over the {MAX_CTL_BYTES}-byte limit",
                        bytes.len()
                    )));
                }
                let sha = openssl::hash::hash(openssl::hash::MessageDigest::sha256(), bytes)?;
                sqlx::query(
                    "INSERT INTO trustlistfile (name, content, sha256, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE \
                     SET content = $2, sha256 = $3, updated_at = $4",
                )
                .bind(CTL_NAME)
                .bind(openssl::base64::encode_block(bytes))
                .bind(phonetrust_proto::codec::hex(&sha))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            CtlChange::Delete => {
                sqlx::query("DELETE FROM trustlistfile WHERE name = $1")
                    .bind(CTL_NAME)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        tracing::info!(?mode, ctl = what, "cluster security changed");
        Ok(())
    }
}
