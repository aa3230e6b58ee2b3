//! The ITL each TFTP node serves, kept in the database once built.
//!
//! An ITL carries its build time, so one built on demand would differ (timestamp,
//! signature, checksum) on every build: `show itl` would never match what phones
//! downloaded. The node's ITL is therefore stored with the fingerprint of what it was
//! built from ([`StoredItl::source`]); services and commands take the stored one while
//! the source is unchanged and store a new one when it changes
//! (`phonetrust_rules::trustlists::served_itl`).

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// Largest ITL accepted.
pub const MAX_ITL_BYTES: usize = 1 << 20;

/// A stored ITL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredItl {
    /// The node it belongs to (host name).
    pub node: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// Fingerprint of what it was built from.
    pub source: String,
    /// When it was stored (Unix seconds).
    pub updated_at: i64,
    /// SHA-256 of the signer certificate's DER (empty: stored before this was kept).
    pub signer: String,
    /// Since when that certificate signs this node's ITL (Unix seconds).
    pub signer_since: i64,
}

fn decode(node: &str, content: &str) -> Result<Vec<u8>, StoreError> {
    openssl::base64::decode_block(content).map_err(|e| {
        StoreError::Db(format!(
            "the stored ITL of {node} is damaged ({e}): it is rebuilt on the next `phonetrust show itl` or download"
        ))
    })
}

impl Db {
    /// The ITL stored for `node`, if any.
    pub async fn itl(&self, node: &str) -> Result<Option<StoredItl>, StoreError> {
        let row =
            sqlx::query("SELECT content, sha256, source, updated_at, signer, signer_since FROM itlfile WHERE node = $1")
                .bind(node)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let content: String = r.try_get(0).map_err(db_err)?;
        Ok(Some(StoredItl {
            node: node.to_string(),
            bytes: decode(node, &content)?,
            sha256: r.try_get(1).map_err(db_err)?,
            source: r.try_get(2).map_err(db_err)?,
            updated_at: r.try_get(3).map_err(db_err)?,
            signer: r.try_get(4).map_err(db_err)?,
            signer_since: r.try_get(5).map_err(db_err)?,
        }))
    }

    /// The source fingerprint of the ITL stored for `node` (cheap, without the content).
    pub async fn itl_source(&self, node: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT source FROM itlfile WHERE node = $1")
            .bind(node)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Nodes with a stored ITL.
    pub async fn itl_nodes(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT node FROM itlfile ORDER BY node")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Store `bytes` as the ITL of `node` built from `source`, unless one built from the
    /// same source is stored already (`replace`: store it anyway, over a damaged one);
    /// returns the stored one either way, so that two processes building at once end up
    /// serving the same file.
    pub async fn store_itl(
        &self,
        node: &str,
        bytes: &[u8],
        source: &str,
        signer: &str,
        now: i64,
        replace: bool,
    ) -> Result<StoredItl, StoreError> {
        if bytes.len() > MAX_ITL_BYTES {
            return Err(StoreError::Invalid(format!(
                "an ITL of {} bytes is over the {MAX_ITL_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let sha = openssl::hash::hash(openssl::hash::MessageDigest::sha256(), bytes)?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO itlfile (node, content, sha256, source, updated_at, signer, signer_since) \
             VALUES ($1, $2, $3, $4, $5, $7, $5) ON CONFLICT (node) DO UPDATE \
             SET content = $2, sha256 = $3, source = $4, updated_at = $5, signer = $7, \
                 signer_since = CASE WHEN itlfile.signer = $7 THEN itlfile.signer_since ELSE $5 END \
             WHERE itlfile.source <> $4 OR $6 = 1",
        )
        .bind(node)
        .bind(openssl::base64::encode_block(bytes))
        .bind(phonetrust_proto::codec::hex(&sha))
        .bind(source)
        .bind(now)
        .bind(i64::from(replace))
        .bind(signer)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.itl(node)
            .await?
            .ok_or_else(|| StoreError::Db(format!("the ITL of {node} was not stored")))
    }
}
