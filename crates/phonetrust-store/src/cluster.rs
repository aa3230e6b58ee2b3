//! The cluster's nodes and the public parts of their certificates, as stored. The rules
//! (names, roles, services, liveness, removal) are `phonetrust_rules::cluster`; this is
//! only their storage.

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// One node, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// Host name (the node's CallManager CN).
    pub name: String,
    /// IP address or DNS name phones use.
    pub host: String,
    /// `publisher` or `subscriber`.
    pub role: String,
    /// Comma-separated services.
    pub services: String,
    /// When it was defined (Unix seconds).
    pub created_at: i64,
    /// When it joined (0: not yet).
    pub joined_at: i64,
    /// Its last heartbeat (0: never ran).
    pub heartbeat_at: i64,
}

/// The public part of one of a node's own certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCert {
    /// The node.
    pub node: String,
    /// Which own certificate (CallManager, CAPF, TVS, …).
    pub which: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// The certificate, PEM.
    pub pem: String,
    /// When it was published (Unix seconds).
    pub updated_at: i64,
}

const NODE_COLUMNS: &str = "name, host, role, services, created_at, joined_at, heartbeat_at";

fn node_of(r: &sqlx::any::AnyRow) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        name: r.try_get(0).map_err(db_err)?,
        host: r.try_get(1).map_err(db_err)?,
        role: r.try_get(2).map_err(db_err)?,
        services: r.try_get(3).map_err(db_err)?,
        created_at: r.try_get(4).map_err(db_err)?,
        joined_at: r.try_get(5).map_err(db_err)?,
        heartbeat_at: r.try_get(6).map_err(db_err)?,
    })
}

impl Db {
    /// Every node, the publisher first, then by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NODE_COLUMNS} FROM cluster_node \
             ORDER BY CASE WHEN role = 'publisher' THEN 0 ELSE 1 END, name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(node_of).collect()
    }

    /// The node named `name`, if defined.
    pub async fn node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NODE_COLUMNS} FROM cluster_node WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(node_of).transpose()
    }

    /// Define a node. Returns false (and changes nothing) when a node of that name, or a
    /// second publisher, would result.
    pub async fn insert_node(&self, n: &NodeRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO cluster_node (name, host, role, services, created_at, joined_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&n.name)
        .bind(&n.host)
        .bind(&n.role)
        .bind(&n.services)
        .bind(n.created_at)
        .bind(n.joined_at)
        .bind(n.heartbeat_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Change a node's host and services. Returns false when it is not defined.
    pub async fn update_node(
        &self,
        name: &str,
        host: &str,
        services: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE cluster_node SET host = $2, services = $3 WHERE name = $1")
            .bind(name)
            .bind(host)
            .bind(services)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Remove a node and its published certificates, in one transaction. Returns false
    /// when it is not defined.
    pub async fn delete_node(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM node_cert WHERE node = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let done = sqlx::query("DELETE FROM cluster_node WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Record that `name` joined at `now`. Returns false when it is not defined.
    pub async fn mark_joined(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE cluster_node SET joined_at = $2 WHERE name = $1")
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Record `name`'s heartbeat at `now` (never moves backwards). Returns false when it
    /// is not defined.
    pub async fn heartbeat(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE cluster_node SET heartbeat_at = CASE WHEN heartbeat_at > $2 THEN heartbeat_at ELSE $2 END \
             WHERE name = $1",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Publish the public parts of `node`'s own certificates (replacing what was there for
    /// the same kinds), in one transaction.
    pub async fn publish_node_certs(
        &self,
        node: &str,
        certs: &[NodeCert],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for c in certs {
            sqlx::query(
                "INSERT INTO node_cert (node, which, serial, pem, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (node, which) DO UPDATE SET serial = $3, pem = $4, updated_at = $5 \
                 WHERE node_cert.serial <> $3 OR node_cert.pem <> $4",
            )
            .bind(node)
            .bind(&c.which)
            .bind(&c.serial)
            .bind(&c.pem)
            .bind(c.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// The published certificates of every node (by node, then kind).
    pub async fn node_certs(&self) -> Result<Vec<NodeCert>, StoreError> {
        let rows = sqlx::query(
            "SELECT node, which, serial, pem, updated_at FROM node_cert ORDER BY node, which",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(NodeCert {
                    node: r.try_get(0).map_err(db_err)?,
                    which: r.try_get(1).map_err(db_err)?,
                    serial: r.try_get(2).map_err(db_err)?,
                    pem: r.try_get(3).map_err(db_err)?,
                    updated_at: r.try_get(4).map_err(db_err)?,
                })
            })
            .collect()
    }

    /// A fingerprint of the cluster as files depend on it (nodes, roles, services, the
    /// serials of published certificates, call manager groups and device pools): equal while nothing a node's ITL or
    /// configs list has changed. For change detection only (not a security check).
    pub async fn cluster_stamp(&self) -> Result<u64, StoreError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for n in self.nodes().await? {
            (n.name, n.host, n.role, n.services).hash(&mut h);
        }
        let rows = sqlx::query("SELECT node, which, serial FROM node_cert ORDER BY node, which")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        for r in &rows {
            let t: (String, String, String) = (
                r.try_get(0).map_err(db_err)?,
                r.try_get(1).map_err(db_err)?,
                r.try_get(2).map_err(db_err)?,
            );
            t.hash(&mut h);
        }
        for g in self.groups().await? {
            (g.name, g.members).hash(&mut h);
        }
        for p in self.pools().await? {
            (p.name, p.group).hash(&mut h);
        }
        Ok(h.finish())
    }
}
