//! Call manager groups, device pools and where each phone is placed, as stored. The rules
//! (at most three members, which nodes a phone is told, what may be removed) are
//! `phonetrust_rules::groups`; this is only their storage.

use sqlx::Row;

use crate::StoreError;
use crate::db::{Db, db_err};

/// A call manager group: node names in priority order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group's name.
    pub name: String,
    /// Node names, first the phones' primary.
    pub members: Vec<String>,
}

/// A device pool and the group it gives its phones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRecord {
    /// The pool's name.
    pub name: String,
    /// Its call manager group.
    pub group: String,
}

/// Where one phone is placed: a pool, a group given directly (which wins), or neither.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Its device pool.
    pub pool: Option<String>,
    /// A call manager group given directly.
    pub group: Option<String>,
}

fn members_of(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

impl Db {
    /// Every call manager group, by name.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, members FROM cm_group ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let m: String = r.try_get(1).map_err(db_err)?;
                Ok(GroupRecord {
                    name: r.try_get(0).map_err(db_err)?,
                    members: members_of(&m),
                })
            })
            .collect()
    }

    /// Define a group, or replace its members (`replace`). Returns false when the group
    /// exists and `replace` is false, or is missing and `replace` is true.
    pub async fn put_group(
        &self,
        g: &GroupRecord,
        replace: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let members = g.members.join(",");
        let done = if replace {
            sqlx::query("UPDATE cm_group SET members = $1 WHERE name = $2")
                .bind(&members)
                .bind(&g.name)
                .execute(&self.pool)
                .await
        } else {
            sqlx::query(
                "INSERT INTO cm_group (name, members, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&g.name)
            .bind(&members)
            .bind(now)
            .execute(&self.pool)
            .await
        }
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Delete a group (false: it did not exist).
    pub async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM cm_group WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Every device pool, by name.
    pub async fn pools(&self) -> Result<Vec<PoolRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, cm_group FROM device_pool ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(PoolRecord {
                    name: r.try_get(0).map_err(db_err)?,
                    group: r.try_get(1).map_err(db_err)?,
                })
            })
            .collect()
    }

    /// Define a pool, or change its group (`replace`); as [`Db::put_group`].
    pub async fn put_pool(
        &self,
        p: &PoolRecord,
        replace: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = if replace {
            sqlx::query("UPDATE device_pool SET cm_group = $1 WHERE name = $2")
                .bind(&p.group)
                .bind(&p.name)
                .execute(&self.pool)
                .await
        } else {
            sqlx::query(
                "INSERT INTO device_pool (name, cm_group, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&p.name)
            .bind(&p.group)
            .bind(now)
            .execute(&self.pool)
            .await
        }
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Delete a pool (false: it did not exist).
    pub async fn delete_pool(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM device_pool WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Where `device` is placed (the default when it has no placement).
    pub async fn placement(&self, device: &str) -> Result<Placement, StoreError> {
        let row =
            sqlx::query("SELECT device_pool, cm_group FROM device_placement WHERE device = $1")
                .bind(device)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        match row {
            Some(r) => Ok(Placement {
                pool: r.try_get(0).map_err(db_err)?,
                group: r.try_get(1).map_err(db_err)?,
            }),
            None => Ok(Placement::default()),
        }
    }

    /// Place `device` (an empty placement removes the row). The phone must exist.
    pub async fn set_placement(&self, device: &str, p: &Placement) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM device_placement WHERE device = $1")
            .bind(device)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if p.pool.is_some() || p.group.is_some() {
            sqlx::query(
                "INSERT INTO device_placement (device, device_pool, cm_group) VALUES ($1, $2, $3)",
            )
            .bind(device)
            .bind(p.pool.as_deref())
            .bind(p.group.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// How many phones are placed in pool `pool`, and the first few of them.
    pub async fn phones_in_pool(&self, pool: &str) -> Result<(i64, Vec<String>), StoreError> {
        self.placed("device_pool", pool).await
    }

    /// How many phones are given group `group` directly, and the first few of them.
    pub async fn phones_in_group(&self, group: &str) -> Result<(i64, Vec<String>), StoreError> {
        self.placed("cm_group", group).await
    }

    async fn placed(&self, column: &str, value: &str) -> Result<(i64, Vec<String>), StoreError> {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM device_placement WHERE {column} = $1"
        )))
        .bind(value)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let first: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT device FROM device_placement WHERE {column} = $1 ORDER BY device LIMIT 5"
        )))
        .bind(value)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((n, first))
    }
}
