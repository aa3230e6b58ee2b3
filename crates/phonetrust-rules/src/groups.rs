//! Call manager groups and device pools: which nodes a phone is told, in which order.
//!
//! A group is an ordered list of at most [`MAX_MEMBERS`] nodes, as the vendor's groups. A
//! device pool names a group; a phone is placed in a pool, or given a group directly (which
//! wins), or takes the [`DEFAULT_GROUP`]. The Default group is created with the publisher
//! and takes each new node while it has fewer than three members. Each phone's
//! configuration lists its group's nodes as `callManager` members in priority order and
//! the same nodes, those running TVS, as its TVS servers ([`Topology`]).

use std::collections::HashMap;

use phonetrust_store::Db;
use phonetrust_store::StoreError;
use phonetrust_store::cluster::NodeRecord;
use phonetrust_store::groups::{GroupRecord, Placement, PoolRecord};

use crate::cluster::Services;

/// The group every phone takes unless its pool or its own setting names another.
pub const DEFAULT_GROUP: &str = "Default";
/// Most nodes in one group (the vendor's limit).
pub const MAX_MEMBERS: usize = 3;
/// Longest group or pool name.
pub const MAX_NAME: usize = 50;

/// What a group, pool or placement change was refused for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A name with characters other than letters, digits, space, `-`, `_`, `.`.
    #[error(
        "'{0}' is not a valid name: use letters, digits, spaces, '-', '_' or '.', at most {MAX_NAME} characters"
    )]
    InvalidName(String),
    /// A group without members.
    #[error("call manager group {0} needs at least one node")]
    Empty(String),
    /// More than three members.
    #[error(
        "call manager group {group} lists {count} nodes: a group holds at most {MAX_MEMBERS} (phones are told at most three call managers)"
    )]
    TooMany {
        /// The group.
        group: String,
        /// How many were given.
        count: usize,
    },
    /// A node listed twice.
    #[error("call manager group {group} lists node {node} twice")]
    Duplicate {
        /// The group.
        group: String,
        /// The node.
        node: String,
    },
    /// A member that is not a node of the cluster.
    #[error(
        "node {node} is not defined in the cluster (see `phonetrust show network cluster`); call manager group {group} was not changed"
    )]
    UnknownNode {
        /// The group.
        group: String,
        /// The node.
        node: String,
    },
    /// A group or pool that exists already.
    #[error("{kind} {name} exists already; change it with `phonetrust cluster {cmd} set`")]
    Exists {
        /// "call manager group" or "device pool".
        kind: &'static str,
        /// Its name.
        name: String,
        /// `group` or `pool`.
        cmd: &'static str,
    },
    /// A group or pool that does not exist.
    #[error("{kind} {name} is not defined (see `phonetrust cluster {cmd} list`)")]
    NotDefined {
        /// "call manager group" or "device pool".
        kind: &'static str,
        /// Its name.
        name: String,
        /// `group` or `pool`.
        cmd: &'static str,
    },
    /// The Default group cannot be removed.
    #[error(
        "the {DEFAULT_GROUP} call manager group cannot be removed: phones without a pool or group take it (change its members with `phonetrust cluster group set {DEFAULT_GROUP} …`)"
    )]
    RemoveDefault,
    /// Still in use.
    #[error("{kind} {name} is still used by {users}: move them first")]
    InUse {
        /// "call manager group" or "device pool".
        kind: &'static str,
        /// Its name.
        name: String,
        /// Who uses it ("3 phones (SEP…, …)", "device pool Branch").
        users: String,
    },
}

/// Check a group or pool name.
pub fn check_name(name: &str) -> Result<(), GroupError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.trim() == name
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(GroupError::InvalidName(name.escape_debug().to_string()))
    }
}

const GROUP: (&str, &str) = ("call manager group", "group");
const POOL: (&str, &str) = ("device pool", "pool");

fn not_defined((kind, cmd): (&'static str, &'static str), name: &str) -> GroupError {
    GroupError::NotDefined {
        kind,
        name: name.to_string(),
        cmd,
    }
}

/// Check a group's members against the cluster's nodes.
async fn check_members(db: &Db, group: &str, members: &[String]) -> Result<(), GroupError> {
    if members.is_empty() {
        return Err(GroupError::Empty(group.to_string()));
    }
    if members.len() > MAX_MEMBERS {
        return Err(GroupError::TooMany {
            group: group.to_string(),
            count: members.len(),
        });
    }
    let nodes = db.nodes().await?;
    for (i, m) in members.iter().enumerate() {
        if members.iter().take(i).any(|x| x == m) {
            return Err(GroupError::Duplicate {
                group: group.to_string(),
                node: m.clone(),
            });
        }
        if !nodes.iter().any(|n| &n.name == m) {
            return Err(GroupError::UnknownNode {
                group: group.to_string(),
                node: m.clone(),
            });
        }
    }
    Ok(())
}

/// Define a call manager group (members in priority order).
pub async fn define_group(
    db: &Db,
    name: &str,
    members: &[String],
    now: i64,
) -> Result<(), GroupError> {
    check_name(name)?;
    check_members(db, name, members).await?;
    let g = GroupRecord {
        name: name.to_string(),
        members: members.to_vec(),
    };
    if db.put_group(&g, false, now).await? {
        Ok(())
    } else {
        Err(GroupError::Exists {
            kind: GROUP.0,
            name: name.to_string(),
            cmd: GROUP.1,
        })
    }
}

/// What changing group `name` to `members` does, as asked before it is done.
pub async fn set_question(db: &Db, name: &str, members: &[String]) -> Result<String, StoreError> {
    let (n, _) = db.phones_in_group(name).await?;
    Ok(format!(
        "changes the nodes of call manager group {name} to {}: its phones ({n} given it directly, and those of its device pools) are told these call managers and TVS servers from their next configuration download",
        members.join(", ")
    ))
}

/// Replace a group's members.
pub async fn set_group(db: &Db, name: &str, members: &[String]) -> Result<(), GroupError> {
    check_members(db, name, members).await?;
    let g = GroupRecord {
        name: name.to_string(),
        members: members.to_vec(),
    };
    if db.put_group(&g, true, 0).await? {
        Ok(())
    } else {
        Err(not_defined(GROUP, name))
    }
}

fn users(count: i64, first: &[String]) -> String {
    let more = if count > first.len() as i64 {
        ", …"
    } else {
        ""
    };
    format!(
        "{count} phone{} ({}{more})",
        if count == 1 { "" } else { "s" },
        first.join(", ")
    )
}

/// Remove a group: refused for the Default group and while pools or phones name it.
pub async fn remove_group(db: &Db, name: &str) -> Result<(), GroupError> {
    if name == DEFAULT_GROUP {
        return Err(GroupError::RemoveDefault);
    }
    if !db.groups().await?.iter().any(|g| g.name == name) {
        return Err(not_defined(GROUP, name));
    }
    let pools: Vec<String> = db
        .pools()
        .await?
        .into_iter()
        .filter(|p| p.group == name)
        .map(|p| p.name)
        .collect();
    if !pools.is_empty() {
        return Err(GroupError::InUse {
            kind: GROUP.0,
            name: name.to_string(),
            users: format!("device pool(s) {}", pools.join(", ")),
        });
    }
    let (n, first) = db.phones_in_group(name).await?;
    if n > 0 {
        return Err(GroupError::InUse {
            kind: GROUP.0,
            name: name.to_string(),
            users: users(n, &first),
        });
    }
    db.delete_group(name).await?;
    Ok(())
}

async fn check_group_exists(db: &Db, group: &str) -> Result<(), GroupError> {
    if group == DEFAULT_GROUP || db.groups().await?.iter().any(|g| g.name == group) {
        Ok(())
    } else {
        Err(not_defined(GROUP, group))
    }
}

/// Define a device pool giving its phones `group`.
pub async fn define_pool(db: &Db, name: &str, group: &str, now: i64) -> Result<(), GroupError> {
    check_name(name)?;
    check_group_exists(db, group).await?;
    let p = PoolRecord {
        name: name.to_string(),
        group: group.to_string(),
    };
    ensure_default_stored(db, now).await?;
    if db.put_pool(&p, false, now).await? {
        Ok(())
    } else {
        Err(GroupError::Exists {
            kind: POOL.0,
            name: name.to_string(),
            cmd: POOL.1,
        })
    }
}

/// Give a device pool another group.
pub async fn set_pool(db: &Db, name: &str, group: &str) -> Result<(), GroupError> {
    check_group_exists(db, group).await?;
    ensure_default_stored(db, 0).await?;
    let p = PoolRecord {
        name: name.to_string(),
        group: group.to_string(),
    };
    if db.put_pool(&p, true, 0).await? {
        Ok(())
    } else {
        Err(not_defined(POOL, name))
    }
}

/// Remove a device pool: refused while phones are placed in it.
pub async fn remove_pool(db: &Db, name: &str) -> Result<(), GroupError> {
    let (n, first) = db.phones_in_pool(name).await?;
    if n > 0 {
        return Err(GroupError::InUse {
            kind: POOL.0,
            name: name.to_string(),
            users: users(n, &first),
        });
    }
    if db.delete_pool(name).await? {
        Ok(())
    } else {
        Err(not_defined(POOL, name))
    }
}

/// Place a phone in a pool and/or give it a group directly (`None`: neither; it takes
/// the Default group). The phone must exist.
pub async fn place_phone(db: &Db, device: &str, p: &Placement) -> Result<(), GroupError> {
    let d = db.device(device).await?;
    if let Some(pool) = &p.pool
        && !db.pools().await?.iter().any(|x| &x.name == pool)
    {
        return Err(not_defined(POOL, pool));
    }
    if let Some(g) = &p.group {
        check_group_exists(db, g).await?;
        ensure_default_stored(db, 0).await?;
    }
    db.set_placement(&d.name, p).await?;
    Ok(())
}

/// The groups that name `node` (a node is removed only when none does).
pub async fn groups_naming(db: &Db, node: &str) -> Result<Vec<String>, StoreError> {
    Ok(db
        .groups()
        .await?
        .into_iter()
        .filter(|g| g.members.iter().any(|m| m == node))
        .map(|g| g.name)
        .collect())
}

/// The Default group as stored; when it was never stored (a store older than groups), the
/// first three nodes, the publisher first.
fn implied_default(nodes: &[NodeRecord]) -> Vec<String> {
    nodes
        .iter()
        .take(MAX_MEMBERS)
        .map(|n| n.name.clone())
        .collect()
}

/// Store the Default group (as implied by the nodes) if it is not stored yet, so that a
/// pool or phone may name it.
async fn ensure_default_stored(db: &Db, now: i64) -> Result<(), StoreError> {
    if db.groups().await?.iter().any(|g| g.name == DEFAULT_GROUP) {
        return Ok(());
    }
    let members = implied_default(&db.nodes().await?);
    if !members.is_empty() {
        let g = GroupRecord {
            name: DEFAULT_GROUP.to_string(),
            members,
        };
        db.put_group(&g, false, now).await?;
    }
    Ok(())
}

/// A new node joins the Default group while it has fewer than three members (called when
/// a node is defined).
pub async fn join_default(db: &Db, node: &str, now: i64) -> Result<(), StoreError> {
    let groups = db.groups().await?;
    match groups.iter().find(|g| g.name == DEFAULT_GROUP) {
        None => ensure_default_stored(db, now).await,
        Some(g) if g.members.len() < MAX_MEMBERS && !g.members.iter().any(|m| m == node) => {
            let mut g = g.clone();
            g.members.push(node.to_string());
            db.put_group(&g, true, now).await.map(|_| ())
        }
        Some(_) => Ok(()),
    }
}

/// The cluster as phones' configurations depend on it: nodes, groups, pools. Loaded once
/// per refresh; [`Topology::nodes_for`] answers per phone without the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    nodes: Vec<NodeRecord>,
    groups: HashMap<String, Vec<String>>,
    pools: HashMap<String, String>,
}

/// The nodes a phone is told about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNodes {
    /// The group's name.
    pub group: String,
    /// `callManager` members (their hosts), in priority order.
    pub call_managers: Vec<String>,
    /// TVS servers: the members running TVS, in the same order.
    pub tvs: Vec<String>,
    /// The CAPF phones are sent to: the first member running CAPF, else the first node of
    /// the cluster running CAPF (the publisher by default).
    pub capf: Option<String>,
}

impl Topology {
    /// Read the cluster's nodes, groups and pools.
    pub async fn load(db: &Db) -> Result<Self, StoreError> {
        Ok(Self {
            nodes: db.nodes().await?,
            groups: db
                .groups()
                .await?
                .into_iter()
                .map(|g| (g.name, g.members))
                .collect(),
            pools: db
                .pools()
                .await?
                .into_iter()
                .map(|p| (p.name, p.group))
                .collect(),
        })
    }

    /// The group a phone placed so takes: its own, its pool's, or Default.
    pub fn group_of<'a>(&'a self, p: &'a Placement) -> &'a str {
        p.group
            .as_deref()
            .or_else(|| {
                p.pool
                    .as_ref()
                    .and_then(|x| self.pools.get(x))
                    .map(String::as_str)
            })
            .unwrap_or(DEFAULT_GROUP)
    }

    /// The node names of the group a phone placed so takes, in priority order.
    pub fn members_of(&self, p: &Placement) -> Vec<String> {
        match self.groups.get(self.group_of(p)) {
            Some(m) => m.clone(),
            None => implied_default(&self.nodes),
        }
    }

    /// The nodes a phone placed so is told about. Nodes no longer defined are skipped; an
    /// empty result means the cluster has no node yet (the caller tells this node).
    pub fn nodes_for(&self, p: &Placement) -> PhoneNodes {
        let group = self.group_of(p).to_string();
        let names = self.members_of(p);
        let members: Vec<&NodeRecord> = names
            .iter()
            .filter_map(|n| self.nodes.iter().find(|x| &x.name == n))
            .collect();
        let runs = |n: &NodeRecord, f: fn(&Services) -> bool| {
            Services::parse(&n.services).is_ok_and(|s| f(&s))
        };
        let capf = members
            .iter()
            .copied()
            .find(|n| runs(n, |s| s.capf))
            .or_else(|| self.nodes.iter().find(|n| runs(n, |s| s.capf)))
            .map(|n| n.host.clone());
        PhoneNodes {
            group,
            call_managers: members.iter().map(|n| n.host.clone()).collect(),
            tvs: members
                .iter()
                .filter(|n| runs(n, |s| s.tvs))
                .map(|n| n.host.clone())
                .collect(),
            capf,
        }
    }
}

/// One line of `cluster group list`: a group, its members in priority order, and how
/// many phones are given it directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLine {
    /// The group's name.
    pub name: String,
    /// Its nodes, first the phones' primary (the default group: every node).
    pub members: Vec<String>,
    /// Phones given it directly.
    pub phones: i64,
}

/// Every group, the default one first when it is not stored, as `cluster group list`
/// shows them.
pub async fn list(db: &Db) -> Result<Vec<GroupLine>, StoreError> {
    let topo = Topology::load(db).await?;
    let mut names: Vec<String> = db.groups().await?.into_iter().map(|g| g.name).collect();
    if !names.iter().any(|n| n == DEFAULT_GROUP) {
        names.insert(0, DEFAULT_GROUP.to_string());
    }
    let mut out = Vec::new();
    for g in names {
        let p = Placement {
            pool: None,
            group: Some(g.clone()),
        };
        let members = topo.members_of(&p);
        let (phones, _) = db.phones_in_group(&g).await?;
        out.push(GroupLine {
            name: g,
            members,
            phones,
        });
    }
    Ok(out)
}
