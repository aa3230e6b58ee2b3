//! `phonetrust cluster add-node|set-node|remove-node|migrate|group|pool`, `show network cluster`, and the
//! joining steps of `init --join` and `serve` (a shell over `phonetrust_rules::cluster`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use phonetrust_rules::cluster::{self, ClusterError, HEARTBEAT_SECS, NewNode, Services};
use phonetrust_rules::groups;
use phonetrust_store::Db;
use phonetrust_store::identity::Identity;
use phonetrust_store::model::format_time;

use crate::fsutil::now;
use crate::node::Node;

/// `phonetrust cluster ...`
#[derive(Debug, Subcommand)]
#[allow(clippy::enum_variant_names)] // the command names (`add-node`, …) scripts use
pub(crate) enum ClusterCmd {
    /// Define a node on the publisher before starting it on its own machine with
    /// `phonetrust init --join NAME --database postgres://…` (the first node defined is
    /// the publisher: the node this command runs on, when the cluster is empty).
    AddNode {
        /// The node's host name (its CallManager certificate's CN).
        name: String,
        /// The IP address or DNS name phones reach it at.
        #[arg(long)]
        host: String,
        /// Services it runs, comma-separated (default: tftp,tvs for a subscriber).
        #[arg(long, value_parser = parse_services)]
        services: Option<Services>,
    },
    /// Change a node's host or services.
    SetNode {
        /// The node's name.
        name: String,
        /// New IP address or DNS name.
        #[arg(long)]
        host: Option<String>,
        /// New services, comma-separated.
        #[arg(long, value_parser = parse_services)]
        services: Option<Services>,
    },
    /// Remove a subscriber (refused for the publisher and while call manager groups
    /// name it). Asks for confirmation: its TVS leaves every ITL.
    RemoveNode {
        /// The node's name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Grow this single node into a cluster: copy its store (parameters, profiles, trust
    /// stores, phones, their LSC records, the CTL, groups) into a new, empty PostgreSQL
    /// database, prove the copy (rows and a digest per table), make this node the
    /// cluster's publisher and point it at that database (`[server] database` in its
    /// config file). Stop `serve` first. The SQLite file is left as it was.
    Migrate {
        /// The cluster database (postgres://USER@HOST/DB), created empty beforehand.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Call manager groups: ordered lists of at most three nodes that phones are told
    /// (`callManager` members and TVS servers, in priority order).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Device pools: each gives its phones a call manager group.
    #[command(subcommand)]
    Pool(PoolCmd),
}

/// `phonetrust cluster group ...`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCmd {
    /// Define a group: `cluster group add East sub1.example.net pub.example.net`.
    Add {
        /// The group's name.
        name: String,
        /// Its nodes (one to three), the phones' primary first.
        #[arg(required = true, num_args = 1..)]
        nodes: Vec<String>,
    },
    /// Replace a group's nodes. Asks for confirmation: its phones are told other nodes.
    Set {
        /// The group's name.
        name: String,
        /// Its nodes (one to three), the phones' primary first.
        #[arg(required = true, num_args = 1..)]
        nodes: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Remove a group (refused for Default and while pools or phones name it).
    Remove {
        /// The group's name.
        name: String,
    },
    /// List the groups, their nodes and the phones given each directly.
    List,
}

/// `phonetrust cluster pool ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PoolCmd {
    /// Define a device pool: `cluster pool add Branch --group East`.
    Add {
        /// The pool's name.
        name: String,
        /// Its call manager group.
        #[arg(long)]
        group: String,
    },
    /// Give a pool another group. Asks for confirmation: its phones are told other nodes.
    Set {
        /// The pool's name.
        name: String,
        /// Its call manager group.
        #[arg(long)]
        group: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Remove a pool (refused while phones are placed in it).
    Remove {
        /// The pool's name.
        name: String,
    },
    /// List the pools, their groups and how many phones each holds.
    List,
}

fn parse_services(s: &str) -> Result<Services, String> {
    Services::parse(s).map_err(|e| e.to_string())
}

/// `phonetrust cluster ...`
pub(crate) async fn run(node: &Node, cmd: ClusterCmd) -> Result<ExitCode> {
    let db = node.db().await?;
    let id = phonetrust_store::identity::load(&node.data)?;
    let me = cluster::this_node(&id);
    match cmd {
        ClusterCmd::AddNode {
            name,
            host,
            services,
        } => {
            let rec = cluster::add_node(
                &db,
                &id,
                &NewNode {
                    name: &name,
                    host: &host,
                    services,
                },
                now(),
            )
            .await?;
            outln!(
                "Node {} defined as {} at {} (services {}). Start it on its own machine with:\n  phonetrust init --join {} --database <this cluster's database URL>",
                rec.name,
                rec.role,
                rec.host,
                rec.services,
                rec.name
            );
        }
        ClusterCmd::SetNode {
            name,
            host,
            services,
        } => {
            let me_ref = me.as_ref().map(|(n, h)| (n.as_str(), h.as_str()));
            let n = cluster::set_node(&db, me_ref, &id, &name, host.as_deref(), services, now())
                .await?;
            outln!("Node {name}: host {}, services {}", n.host, n.services);
        }
        ClusterCmd::Migrate { to, yes } => return migrate(node, &db, &id, &to, yes).await,
        ClusterCmd::Group(cmd) => return group(&db, cmd).await,
        ClusterCmd::Pool(cmd) => return pool(&db, cmd).await,
        ClusterCmd::RemoveNode { name, yes } => {
            if db.node(&name).await?.is_none() {
                return Err(ClusterError::NotDefined(name).into());
            }
            if !crate::confirm::operation(
                &cluster::remove_question(&name),
                yes,
                "the node stays defined",
            )? {
                return Ok(ExitCode::FAILURE);
            }
            cluster::remove_node(&db, &name).await?;
            outln!("Node {name} removed from the cluster");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `phonetrust cluster migrate --to postgres://…`.
async fn migrate(node: &Node, db: &Db, id: &Identity, to: &str, yes: bool) -> Result<ExitCode> {
    use phonetrust_store::db::Backend;
    use phonetrust_store::transfer;
    if db.backend() != Backend::Sqlite {
        anyhow::bail!(
            "this node's database is PostgreSQL already: `cluster migrate` grows a single node's SQLite store into a cluster (add nodes with `phonetrust cluster add-node`)"
        );
    }
    if Backend::of(to)? != Backend::Postgres {
        anyhow::bail!(
            "--to {to}: give the cluster's PostgreSQL database (postgres://USER@HOST/DB), created empty beforehand (`createdb`)"
        );
    }
    // No serve on this node while its store is copied: nothing may change in between.
    let _lock = node.data.lock_serve().map_err(|e| {
        anyhow::anyhow!("{e} (stop `phonetrust serve` on this node before migrating)")
    })?;
    let phones = db.device_count().await?;
    if !crate::confirm::operation(
        &format!(
            "copies this node's store ({phones} phones, their LSC records, parameters, trust stores) into {to} and makes this node the publisher of a cluster on it; this node then uses that database"
        ),
        yes,
        "nothing was copied",
    )? {
        return Ok(ExitCode::FAILURE);
    }
    let target = Db::open(to).await?;
    outln!("Copying {} into {to} ...", db.url());
    let cmp = transfer::copy_store(db, &target).await?;
    outln!("{:<18} {:>9} {:>9}  digest", "table", "source", "target");
    for (a, b) in cmp.source.iter().zip(&cmp.target) {
        outln!(
            "{:<18} {:>9} {:>9}  {}",
            a.table,
            a.rows,
            b.rows,
            if a == b {
                format!("{} (same)", a.digest.get(..16).unwrap_or(&a.digest))
            } else {
                "DIFFERENT".to_string()
            }
        );
    }
    if !cmp.identical() {
        anyhow::bail!(
            "the copy differs from the source (tables marked DIFFERENT): this node still uses its SQLite database; drop {to}, create it empty again and retry"
        );
    }
    // This node is the publisher: recorded as such (when it never served) and its
    // certificates published, so a subscriber's ITL, the CTL and TVS find them.
    take_place(&target, id).await?;
    let path = node
        .settings
        .config_path
        .clone()
        .unwrap_or_else(|| node.data.root().join("phonetrust.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    match crate::config::with_database(&text, to) {
        Some(new) => {
            // The URL may hold a password: the file is private.
            crate::fsutil::write_atomic(&path, new.as_bytes(), true)?;
            outln!(
                "Copy verified: every table has the same rows on both sides. This node is now the publisher of the cluster on {to} ({} set in {}).",
                "[server] database",
                path.display()
            );
        }
        None => {
            outln!(
                "Copy verified: every table has the same rows on both sides. This node is the publisher of the cluster on {to}; set `[server] database = \"{to}\"` in {} (its layout was not changed automatically).",
                path.display()
            );
        }
    }
    outln!(
        "Its identity is unchanged: phones keep their LSCs and trust its ITL. Start it again (`phonetrust serve`), then define subscribers with `phonetrust cluster add-node`. The SQLite file {} is left as it was (a backup; this node no longer uses it).",
        db.url().trim_start_matches("sqlite://")
    );
    if std::env::var_os("PHONETRUST_DATABASE").is_some() {
        outln!(
            "Note: PHONETRUST_DATABASE is set in this environment and overrides the config file: set it to {to} too."
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn group(db: &Db, cmd: GroupCmd) -> Result<ExitCode> {
    match cmd {
        GroupCmd::Add { name, nodes } => {
            groups::define_group(db, &name, &nodes, now()).await?;
            outln!("Call manager group {name}: {}", nodes.join(", "));
        }
        GroupCmd::Set { name, nodes, yes } => {
            if !crate::confirm::operation(
                &groups::set_question(db, &name, &nodes).await?,
                yes,
                "the group is unchanged",
            )? {
                return Ok(ExitCode::FAILURE);
            }
            groups::set_group(db, &name, &nodes).await?;
            outln!("Call manager group {name}: {}", nodes.join(", "));
        }
        GroupCmd::Remove { name } => {
            groups::remove_group(db, &name).await?;
            outln!("Call manager group {name} removed");
        }
        GroupCmd::List => {
            let mut t = crate::table::Table::new(&["Group", "Members (priority order)", "Phones"]);
            for g in groups::list(db).await? {
                t.row(vec![g.name, g.members.join(", "), g.phones.to_string()]);
            }
            out!("{}", t.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn pool(db: &Db, cmd: PoolCmd) -> Result<ExitCode> {
    match cmd {
        PoolCmd::Add { name, group } => {
            groups::define_pool(db, &name, &group, now()).await?;
            outln!("Device pool {name}: call manager group {group}");
        }
        PoolCmd::Set { name, group, yes } => {
            let (n, _) = db.phones_in_pool(&name).await?;
            if !crate::confirm::operation(
                &format!(
                    "gives device pool {name} call manager group {group}: its {n} phone(s) are told that group's call managers and TVS servers from their next configuration download"
                ),
                yes,
                "the pool is unchanged",
            )? {
                return Ok(ExitCode::FAILURE);
            }
            groups::set_pool(db, &name, &group).await?;
            outln!("Device pool {name}: call manager group {group}");
        }
        PoolCmd::Remove { name } => {
            groups::remove_pool(db, &name).await?;
            outln!("Device pool {name} removed");
        }
        PoolCmd::List => {
            let mut t = crate::table::Table::new(&["Device Pool", "Call Manager Group", "Phones"]);
            for p in db.pools().await? {
                let (n, _) = db.phones_in_pool(&p.name).await?;
                t.row(vec![p.name, p.group, n.to_string()]);
            }
            out!("{}", t.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `phonetrust show network cluster`: every node, its host, role, services, published
/// certificates' serials and whether it is alive.
pub(crate) async fn show(node: &Node) -> Result<ExitCode> {
    let db = node.db().await?;
    let view = cluster::cluster_view(&db, now()).await?;
    if view.is_empty() {
        outln!(
            "This node is not yet part of a cluster: `phonetrust serve` defines it as the publisher when it starts, `phonetrust cluster add-node` defines others."
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = crate::table::Table::new(&[
        "Node",
        "Host",
        "Role",
        "Services",
        "Status",
        "Heartbeat",
        "CallManager",
        "TVS",
        "CAPF",
    ]);
    for v in &view {
        t.row(vec![
            v.name.clone(),
            v.host.clone(),
            v.role.map_or("unknown", |r| r.as_str()).to_string(),
            v.services.map_or("unknown".into(), |s| s.to_string()),
            v.status().to_string(),
            if v.heartbeat_at > 0 {
                format_time(v.heartbeat_at)
            } else {
                "never".into()
            },
            v.serial("CallManager"),
            v.serial("TVS"),
            v.serial("CAPF"),
        ]);
    }
    out!("{}", t.render());
    Ok(ExitCode::SUCCESS)
}

/// Before `init` creates an identity: with `--join NAME`, the node must have been
/// defined; without, the database must not belong to a cluster this node is not in.
pub(crate) async fn check_before_init(db: &Db, join: Option<&str>, host: &str) -> Result<()> {
    match join {
        Some(name) => {
            cluster::check_node_name(name)?;
            if db.node(name).await?.is_none() {
                return Err(ClusterError::NotDefined(name.to_string()).into());
            }
        }
        None => {
            let nodes = db.nodes().await?;
            if !nodes.is_empty() && !nodes.iter().any(|n| n.name == host) {
                anyhow::bail!(
                    "this database belongs to a cluster (publisher {}) that does not define {host}: define the node on the publisher (`phonetrust cluster add-node {host} --host ADDRESS`), then run `phonetrust init --join {host} --database …`",
                    cluster::publisher_name(db).await?
                );
            }
        }
    }
    Ok(())
}

/// Take this node's place in the cluster: a defined node joins (first time) or rejoins;
/// in an empty cluster this node becomes the publisher; otherwise it is refused, as a
/// node not defined on the publisher. Publishes its certificates' public parts and
/// returns its name.
pub(crate) async fn take_place(db: &Db, id: &Identity) -> Result<String> {
    let Some((name, host)) = cluster::this_node(id) else {
        anyhow::bail!("the identity has no CallManager certificate: run `phonetrust init`");
    };
    let t = now();
    if db.node(&name).await?.is_some() {
        cluster::join(db, &name, t).await?;
    } else {
        cluster::ensure_publisher(db, &name, &host, t).await?;
    }
    cluster::publish_identity(db, &name, id, t).await?;
    Ok(name)
}

/// The services the node `name` runs (every service for a node not found: a single node).
pub(crate) async fn services_of(db: &Db, name: &str) -> Result<Services> {
    Ok(db
        .node(name)
        .await?
        .and_then(|n| Services::parse(&n.services).ok())
        .unwrap_or(Services::PUBLISHER))
}

/// Record this node's heartbeat every few seconds while `serve` runs; a failure is
/// logged once when it starts and once when it ends.
pub(crate) async fn heartbeat(db: Db, name: String) {
    let mut failing = false;
    let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS.unsigned_abs()));
    loop {
        tick.tick().await;
        match db.heartbeat(&name, now()).await {
            Ok(true) => {
                if failing {
                    tracing::info!(node = %name, "cluster heartbeat recorded again");
                }
                failing = false;
            }
            Ok(false) => {
                if !failing {
                    tracing::warn!(node = %name, "this node is no longer defined in the cluster (removed with `cluster remove-node`?): its heartbeat is not recorded; define it again on the publisher");
                }
                failing = true;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(node = %name, error = %e, "cluster heartbeat could not be recorded (database unreachable?): other nodes show this one as down until it is");
                }
                failing = true;
            }
        }
    }
}
