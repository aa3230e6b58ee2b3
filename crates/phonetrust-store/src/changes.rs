//! Change notification between the nodes of a cluster.
//!
//! On PostgreSQL, triggers on the tables that shape what phones are served (parameters,
//! profiles, trust stores, the CTL, nodes and their certificates, groups, pools) send
//! `NOTIFY phonetrust_change` when a transaction that changed them commits; every node
//! `LISTEN`s and wakes its services' refresh at once instead of at their next poll. A
//! node's heartbeat does not notify. The triggers are PostgreSQL's own SQL, so they are
//! installed by [`Db::open`](crate::Db::open) on that engine only (under an advisory
//! lock: nodes starting together do not race; skipped when they are all there), not by a
//! migration shared with SQLite. A later change of their SQL gives the function a new
//! name, so that databases with the old triggers get the new ones.
//!
//! SQLite is one node: its feed never fires and the services' polling (every second)
//! sees changes made by other processes (the CLI).
//!
//! When the listening connection is lost (the database restarted), the feed fires once
//! it is back, since notifications sent in between were missed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::StoreError;
use crate::db::{Backend, Db, db_err};

/// The channel the triggers notify.
pub const CHANNEL: &str = "phonetrust_change";

/// Tables whose every change is announced. (`device`, `devicecert`, `device_placement`
/// are read per request; `auth_failure` and `itlfile` are a node's own bookkeeping.)
const WATCHED: [&str; 8] = [
    "processconfig",
    "securityprofile",
    "trustcert",
    "trustlistfile",
    "node_cert",
    "cm_group",
    "device_pool",
    "cluster_node",
];

/// Idempotent; `cluster_node` notifies on everything but a heartbeat.
fn trigger_sql() -> String {
    let mut s = format!(
        "CREATE OR REPLACE FUNCTION phonetrust_notify() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $f$;\n"
    );
    for t in WATCHED {
        if t == "cluster_node" {
            s.push_str(
                "CREATE OR REPLACE TRIGGER phonetrust_notify AFTER INSERT OR DELETE OR TRUNCATE ON cluster_node \
                 FOR EACH STATEMENT EXECUTE FUNCTION phonetrust_notify();\n\
                 CREATE OR REPLACE TRIGGER phonetrust_notify_update AFTER UPDATE ON cluster_node FOR EACH ROW \
                 WHEN (OLD.host IS DISTINCT FROM NEW.host OR OLD.role IS DISTINCT FROM NEW.role \
                 OR OLD.services IS DISTINCT FROM NEW.services OR OLD.joined_at IS DISTINCT FROM NEW.joined_at) \
                 EXECUTE FUNCTION phonetrust_notify();\n",
            );
        } else {
            s.push_str(&format!(
                "CREATE OR REPLACE TRIGGER phonetrust_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} \
                 FOR EACH STATEMENT EXECUTE FUNCTION phonetrust_notify();\n"
            ));
        }
    }
    s
}

/// Triggers [`trigger_sql`] creates: one per watched table, two on `cluster_node`.
const TRIGGERS: i64 = WATCHED.len() as i64 + 1;

/// Install the triggers (PostgreSQL only), one node at a time; nothing to do when they
/// are there already (replacing a trigger locks its table against writes, which a
/// command run beside busy nodes must not do).
pub(crate) async fn install(db: &Db) -> Result<(), StoreError> {
    if db.backend != Backend::Postgres {
        return Ok(());
    }
    let present: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
         WHERE p.proname = 'phonetrust_notify' AND NOT t.tgisinternal",
    )
    .fetch_one(&db.pool)
    .await
    .map_err(db_err)?;
    if present == TRIGGERS {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    // Any constant: serialises nodes replacing the triggers at the same moment.
    sqlx::query("SELECT pg_advisory_xact_lock(7316002)")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(trigger_sql()))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

/// Wakes a waiting service when the cluster's configuration changed. Cloned freely;
/// each clone remembers what it has seen.
#[derive(Clone, Debug)]
pub struct ChangeFeed {
    rx: Option<watch::Receiver<u64>>,
    up: Option<watch::Receiver<bool>>,
}

/// The sending side of a database's feed: changes seen, and whether the listening
/// connection is up.
#[derive(Debug)]
pub(crate) struct FeedSender {
    changes: watch::Sender<u64>,
    up: watch::Sender<bool>,
}

impl ChangeFeed {
    /// A feed that never fires (SQLite, tests).
    pub fn none() -> Self {
        Self { rx: None, up: None }
    }

    /// Wait until the listening connection has subscribed, so that every change committed
    /// afterwards is announced. True at once for a feed that never fires (it has nothing to
    /// wait for); false when the listener stopped.
    pub async fn listening(&self) -> bool {
        match &self.up {
            Some(up) => {
                let mut up = up.clone();
                up.wait_for(|u| *u).await.is_ok()
            }
            None => true,
        }
    }

    /// Wait for the next change; on a feed that never fires, forever.
    pub async fn changed(&mut self) {
        match &mut self.rx {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The listener stopped: behave as a feed that never fires.
                    self.rx = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// How many changes were announced so far (compare two readings to know whether
    /// something changed in between, without waiting).
    pub fn generation(&self) -> u64 {
        self.rx.as_ref().map(|r| *r.borrow()).unwrap_or(0)
    }
}

impl Db {
    /// The change feed of this database, started on first use (one listening connection
    /// per process).
    pub fn changes(&self) -> ChangeFeed {
        if self.backend != Backend::Postgres {
            return ChangeFeed::none();
        }
        let tx = self.feed.get_or_init(|| {
            let tx = Arc::new(FeedSender {
                changes: watch::channel(0u64).0,
                up: watch::channel(false).0,
            });
            tokio::spawn(listen(self.url.clone(), tx.clone()));
            tx
        });
        ChangeFeed {
            rx: Some(tx.changes.subscribe()),
            up: Some(tx.up.subscribe()),
        }
    }
}

/// Listen for the life of the process; reconnect (and fire, as changes may have been missed)
/// after the connection is lost.
async fn listen(url: String, feed: Arc<FeedSender>) {
    use sqlx::postgres::PgListener;
    let tx = &feed.changes;
    let bump = |tx: &watch::Sender<u64>| tx.send_modify(|g| *g = g.wrapping_add(1));
    let up = |v: bool| {
        feed.up.send_if_modified(|u| std::mem::replace(u, v) != v);
    };
    let mut lost = false;
    loop {
        let mut l = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                if !lost {
                    tracing::warn!(error = %e, "cluster changes: cannot listen to the database; retrying every second (services still poll)");
                }
                lost = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = l.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cluster changes: LISTEN failed; retrying");
            lost = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        up(true);
        // Back after a loss: what was sent meanwhile is gone, announce a change.
        if std::mem::take(&mut lost) {
            tracing::info!("cluster changes: listening again");
            bump(tx);
        }
        loop {
            match l.try_recv().await {
                Ok(Some(n)) => {
                    tracing::debug!(table = n.payload(), "cluster change");
                    bump(tx);
                }
                Ok(None) => {
                    // Connection lost; the next try_recv reconnects. Anything sent in
                    // between is gone: announce a change.
                    tracing::warn!(
                        "cluster changes: connection to the database lost; reconnecting"
                    );
                    bump(tx);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster changes: listening failed; reconnecting");
                    up(false);
                    lost = true;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}
