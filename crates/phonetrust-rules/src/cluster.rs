//! The cluster's rules: what a node's name and services may be, which node is the
//! publisher, when a node counts as alive, and when a node may be removed.
//!
//! A cluster has one publisher (the first node, where nodes are defined) and any number
//! of subscribers, all on one database. The store keeps the records; the command line,
//! `serve` and (later) the web admin ask these functions what the records mean.

use std::fmt;

use crate::trustlists::{ClusterPeers, MAX_ITL_BYTES};
use phonetrust_pki::profiles::OwnCert;
use phonetrust_store::Db;
use phonetrust_store::StoreError;
use phonetrust_store::cluster::{NodeCert, NodeRecord};
use phonetrust_store::identity::Identity;

/// Longest node name (a host name: the DNS limit).
pub const MAX_NODE_NAME: usize = 253;

/// How often a running node records that it is alive, in seconds.
pub const HEARTBEAT_SECS: i64 = 5;

/// A node whose last heartbeat is older than this many seconds is shown as down (three
/// missed heartbeats).
pub const ALIVE_WITHIN_SECS: i64 = 3 * HEARTBEAT_SECS;

/// A node's role in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The first node: nodes, groups and cluster-wide changes are defined there.
    Publisher,
    /// Every other node.
    Subscriber,
}

impl Role {
    /// The stored word (`publisher` / `subscriber`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        }
    }

    /// The role a stored word names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "publisher" => Some(Role::Publisher),
            "subscriber" => Some(Role::Subscriber),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The services a node runs for phones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Services {
    /// TFTP and HTTP provisioning (the node's own ITL, the CTL, configs).
    pub tftp: bool,
    /// Trust Verification Service.
    pub tvs: bool,
    /// Certificate Authority Proxy Function.
    pub capf: bool,
}

impl Services {
    /// The publisher's default: every service.
    pub const PUBLISHER: Services = Services {
        tftp: true,
        tvs: true,
        capf: true,
    };

    /// A subscriber's default: TFTP and TVS (CAPF runs on the publisher unless enabled).
    pub const SUBSCRIBER: Services = Services {
        tftp: true,
        tvs: true,
        capf: false,
    };

    /// The default services of a node in `role`.
    pub fn default_for(role: Role) -> Self {
        match role {
            Role::Publisher => Self::PUBLISHER,
            Role::Subscriber => Self::SUBSCRIBER,
        }
    }

    /// Parse a comma-separated list (`tftp,tvs,capf`; order and case free, no repeats).
    pub fn parse(s: &str) -> Result<Self, ClusterError> {
        if s.trim().is_empty() {
            return Err(ClusterError::NoService);
        }
        let mut out = Services {
            tftp: false,
            tvs: false,
            capf: false,
        };
        for word in s.split(',').map(str::trim) {
            let slot = match word.to_ascii_lowercase().as_str() {
                "tftp" => &mut out.tftp,
                "tvs" => &mut out.tvs,
                "capf" => &mut out.capf,
                _ => return Err(ClusterError::UnknownService(word.to_string())),
            };
            if *slot {
                return Err(ClusterError::UnknownService(format!(
                    "{word} (named twice)"
                )));
            }
            *slot = true;
        }
        Ok(out)
    }
}

impl fmt::Display for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [(self.tftp, "tftp"), (self.tvs, "tvs"), (self.capf, "capf")]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Why a cluster change is refused; each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node name that is not a host name.
    #[error(
        "'{0}' is not a valid node name: use the node's host name (letters, digits and '-', labels separated by '.', at most {MAX_NODE_NAME} characters)"
    )]
    InvalidName(String),
    /// A host that is neither a host name nor an IP address.
    #[error("'{0}' is not a valid host: give the node's IP address or DNS name")]
    InvalidHost(String),
    /// A word in `--services` that is not a service.
    #[error("unknown service '{0}': the services are tftp, tvs and capf, comma-separated")]
    UnknownService(String),
    /// A node must run at least one service.
    #[error("a node must run at least one of tftp, tvs, capf")]
    NoService,
    /// The node is defined already.
    #[error(
        "node {0} is already defined in the cluster; nothing was changed (see `phonetrust show network cluster`)"
    )]
    Exists(String),
    /// The node is not defined.
    #[error(
        "node {0} is not defined in the cluster: define it on the publisher first (`phonetrust cluster add-node {0} --host HOST`), then join"
    )]
    NotDefined(String),
    /// The publisher cannot be removed.
    #[error(
        "{0} is the cluster's publisher and cannot be removed (every other node depends on it)"
    )]
    RemovePublisher(String),
    /// A node still named by phones' call manager groups.
    #[error(
        "node {node} is still in call manager group(s) {groups}: remove it from them first (`phonetrust cluster group set …`)"
    )]
    InGroups {
        /// The node.
        node: String,
        /// The groups that name it, comma-separated.
        groups: String,
    },
    /// Another TVS node would make the ITLs larger than phones accept.
    #[error(
        "node {node} cannot run TVS (nothing was changed): with its TVS certificate each node's ITL would be about {size} bytes, more than the {max} bytes phones accept (about 39 certificates); add it with --services tftp or --services capf, or run TVS on fewer nodes"
    )]
    ItlTooLarge {
        /// The node refused.
        node: String,
        /// The estimated size of the largest ITL.
        size: usize,
        /// [`crate::trustlists::MAX_ITL_BYTES`].
        max: usize,
    },
    /// The ITL size could not be estimated (a certificate of the model identity).
    #[error("the ITL size could not be estimated: {0}")]
    Itl(String),
    /// Nodes are defined on the publisher only.
    #[error(
        "{node} is a subscriber: define nodes on the publisher ({publisher}), as servers are defined there first"
    )]
    NotPublisher {
        /// The node the change was asked on.
        node: String,
        /// The cluster's publisher.
        publisher: String,
    },
}

/// Check a node name: a host name (RFC 1123 labels), case kept as given.
pub fn check_node_name(name: &str) -> Result<(), ClusterError> {
    if is_host_name(name) {
        Ok(())
    } else {
        Err(ClusterError::InvalidName(name.escape_debug().to_string()))
    }
}

/// Check a host: an IP address or a host name.
pub fn check_host(host: &str) -> Result<(), ClusterError> {
    if host.parse::<std::net::IpAddr>().is_ok() || is_host_name(host) {
        Ok(())
    } else {
        Err(ClusterError::InvalidHost(host.escape_debug().to_string()))
    }
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NODE_NAME
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The role a newly defined node gets: the first node of a cluster is its publisher.
pub fn role_for_new_node(existing_nodes: usize) -> Role {
    if existing_nodes == 0 {
        Role::Publisher
    } else {
        Role::Subscriber
    }
}

/// Whether a node whose last heartbeat was at `heartbeat_at` (Unix seconds; 0: never)
/// counts as alive at `now`.
pub fn is_alive(heartbeat_at: i64, now: i64) -> bool {
    heartbeat_at > 0 && now.saturating_sub(heartbeat_at) <= ALIVE_WITHIN_SECS
}

/// Whether `node` (in `role`) may be removed, given the groups that still name it.
pub fn check_removal(node: &str, role: Role, groups: &[String]) -> Result<(), ClusterError> {
    if role == Role::Publisher {
        return Err(ClusterError::RemovePublisher(node.to_string()));
    }
    if !groups.is_empty() {
        return Err(ClusterError::InGroups {
            node: node.to_string(),
            groups: groups.join(", "),
        });
    }
    Ok(())
}

/// A node as `show network cluster` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Host name.
    pub name: String,
    /// Address or DNS name phones use.
    pub host: String,
    /// Publisher or subscriber (`None`: a stored word this version does not know).
    pub role: Option<Role>,
    /// Services it runs (`None`: a stored list this version does not understand).
    pub services: Option<Services>,
    /// Whether it has joined (run `init --join` or, for the publisher, started).
    pub joined: bool,
    /// Whether its heartbeat is recent.
    pub alive: bool,
    /// Its last heartbeat (Unix seconds, 0: never).
    pub heartbeat_at: i64,
    /// Published certificates: (kind, serial in hex).
    pub certs: Vec<(String, String)>,
}

impl NodeStatus {
    /// The serial of its published certificate `kind` (`CallManager`, `TVS`, `CAPF`), or
    /// "-".
    pub fn serial(&self, kind: &str) -> String {
        self.certs
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| "-".into())
    }

    /// `up`, `down` (joined, no recent heartbeat) or `not joined`.
    pub fn status(&self) -> &'static str {
        if self.alive {
            "up"
        } else if self.joined {
            "down"
        } else {
            "not joined"
        }
    }
}

/// What to define: `cluster add-node NAME --host HOST [--services …]`.
#[derive(Clone, Debug)]
pub struct NewNode<'a> {
    /// Host name.
    pub name: &'a str,
    /// Address or DNS name phones use.
    pub host: &'a str,
    /// Services (`None`: the role's default).
    pub services: Option<Services>,
}

/// Define a node. The first node defined becomes the publisher; `this_node` (the node the
/// command runs on) is defined first as the publisher when the cluster is still empty, as
/// a server is defined on the publisher. `model` (the identity of the node the command
/// runs on) stands for the new node's certificates when the size of the ITLs with one
/// more TVS node is estimated ([`itl_size_with`]): a node that would make them larger than
/// phones accept is refused.
pub async fn define_node(
    db: &Db,
    this_node: Option<(&str, &str)>,
    model: &Identity,
    new: &NewNode<'_>,
    now: i64,
) -> Result<NodeRecord, ClusterError> {
    check_node_name(new.name)?;
    check_host(new.host)?;
    if let Some(s) = new.services
        && !(s.tftp || s.tvs || s.capf)
    {
        return Err(ClusterError::NoService);
    }
    if let Some((name, host)) = this_node
        && name != new.name
        && db.nodes().await?.is_empty()
    {
        ensure_publisher(db, name, host, now).await?;
    }
    let role = role_for_new_node(db.nodes().await?.len());
    let rec = NodeRecord {
        name: new.name.to_string(),
        host: new.host.to_string(),
        role: role.as_str().to_string(),
        services: new
            .services
            .unwrap_or_else(|| Services::default_for(role))
            .to_string(),
        created_at: now,
        joined_at: 0,
        heartbeat_at: 0,
    };
    if Services::parse(&rec.services).is_ok_and(|s| s.tvs) {
        check_itl_room(db, model, new.name).await?;
    }
    if !db.insert_node(&rec).await? {
        return Err(ClusterError::Exists(new.name.to_string()));
    }
    crate::groups::join_default(db, &rec.name, now).await?;
    Ok(rec)
}

/// Change a node's host and/or services. A node that starts running TVS is refused when
/// the ITLs would pass the phones' limit, as in [`define_node`]. `this_node` (name, host):
/// the node running the command; a single node not recorded yet (never served) is
/// recorded as the publisher first, so its host can be set before it first starts.
pub async fn set_node(
    db: &Db,
    this_node: Option<(&str, &str)>,
    model: &Identity,
    name: &str,
    host: Option<&str>,
    services: Option<Services>,
    now: i64,
) -> Result<NodeRecord, ClusterError> {
    if let Some((me, my_host)) = this_node
        && me == name
        && db.nodes().await?.is_empty()
    {
        ensure_publisher(db, me, my_host, now).await?;
    }
    let Some(n) = db.node(name).await? else {
        return Err(ClusterError::NotDefined(name.to_string()));
    };
    let host = host.unwrap_or(&n.host).to_string();
    check_host(&host)?;
    if let Some(s) = services
        && !(s.tftp || s.tvs || s.capf)
    {
        return Err(ClusterError::NoService);
    }
    let was_tvs = Services::parse(&n.services).is_ok_and(|s| s.tvs);
    if let Some(s) = services
        && s.tvs
        && !was_tvs
    {
        check_itl_room(db, model, name).await?;
    }
    let services = services.map_or(n.services.clone(), |s| s.to_string());
    if !db.update_node(name, &host, &services).await? {
        return Err(ClusterError::NotDefined(name.to_string()));
    }
    Ok(NodeRecord {
        host,
        services,
        ..n
    })
}

/// The nodes' published certificates, parsed once: what the ITL, the CTL and TVS of
/// every node read of the other nodes.
#[derive(Clone, Debug, Default)]
pub struct Published {
    certs: Vec<(String, OwnCert, Result<openssl::x509::X509, String>)>,
}

impl Published {
    /// Read and parse every published certificate (a row that does not parse is kept as
    /// its error; a certificate name this version does not know is left out).
    pub async fn load(db: &Db) -> Result<Self, StoreError> {
        let certs = db
            .node_certs()
            .await?
            .into_iter()
            .filter_map(|c| {
                let which = c.which.parse::<OwnCert>().ok()?;
                let cert = openssl::x509::X509::from_pem(c.pem.as_bytes())
                    .map_err(|e| format!("the published {which} certificate of {}: {e}", c.node));
                Some((c.node, which, cert))
            })
            .collect();
        Ok(Self { certs })
    }

    /// `node`'s `which` certificate: `Ok(None)` when not published, an error when it does
    /// not parse.
    pub fn get(&self, node: &str, which: OwnCert) -> Result<Option<&openssl::x509::X509>, String> {
        self.certs
            .iter()
            .find(|(n, w, _)| n == node && *w == which)
            .map(|(_, _, c)| c.as_ref().map_err(Clone::clone))
            .transpose()
    }

    /// Every published certificate of the nodes other than `me`, with its parse result.
    pub fn others<'a>(
        &'a self,
        me: Option<&'a str>,
    ) -> impl Iterator<
        Item = (
            &'a str,
            OwnCert,
            Result<&'a openssl::x509::X509, &'a String>,
        ),
    > {
        self.certs
            .iter()
            .filter(move |(n, _, _)| Some(n.as_str()) != me)
            .map(|(n, w, c)| (n.as_str(), *w, c.as_ref()))
    }
}

/// Refuse `node` as one more TVS node when the ITLs would pass [`MAX_ITL_BYTES`].
async fn check_itl_room(db: &Db, model: &Identity, node: &str) -> Result<(), ClusterError> {
    let tvs_nodes = db
        .nodes()
        .await?
        .iter()
        .filter(|n| Services::parse(&n.services).is_ok_and(|s| s.tvs))
        .count()
        + 1;
    let size = itl_size_with(model, tvs_nodes)?;
    if size > MAX_ITL_BYTES {
        return Err(ClusterError::ItlTooLarge {
            node: node.to_string(),
            size,
            max: MAX_ITL_BYTES,
        });
    }
    Ok(())
}

/// The size of the largest ITL of a cluster with `tvs_nodes` nodes running TVS, each
/// node's certificates the size of `model`'s: a subscriber running CAPF, listing the
/// publisher's CAPF and ITLRecovery beside its own CAPF and every TVS.
pub fn itl_size_with(model: &Identity, tvs_nodes: usize) -> Result<usize, ClusterError> {
    let cert = |w: OwnCert| {
        model
            .get(w)
            .map(|c| c.cert.clone())
            .ok_or_else(|| ClusterError::Itl(format!("the identity has no {w} certificate")))
    };
    let peers = ClusterPeers {
        tvs: vec![cert(OwnCert::Tvs)?; tvs_nodes.saturating_sub(1)],
        publisher_capf: Some(cert(OwnCert::Capf)?),
        publisher_recovery: None,
        own_capf: true,
    };
    let records =
        crate::trustlists::itl_records_in(model, false, &peers).map_err(ClusterError::Itl)?;
    let p = phonetrust_proto::trustlist::TrustListParams::new(
        "ITLFile.tlv",
        phonetrust_proto::tlv::HashAlg::Sha1,
        0,
    );
    let signer = model
        .get(OwnCert::CallManager)
        .ok_or_else(|| ClusterError::Itl("the identity has no CallManager certificate".into()))?;
    phonetrust_proto::trustlist::build(&p, signer, &records)
        .map(|f| f.len())
        .map_err(|e| ClusterError::Itl(e.to_string()))
}

/// Make sure the node named `name` (at `host`) is defined: in an empty cluster it is
/// defined as the publisher, joined at once. A single node is a cluster of one.
pub async fn ensure_publisher(
    db: &Db,
    name: &str,
    host: &str,
    now: i64,
) -> Result<NodeRecord, ClusterError> {
    if let Some(n) = db.node(name).await? {
        return Ok(n);
    }
    let nodes = db.nodes().await?;
    if !nodes.is_empty() {
        return Err(ClusterError::NotDefined(name.to_string()));
    }
    check_node_name(name)?;
    let rec = NodeRecord {
        name: name.to_string(),
        host: host.to_string(),
        role: Role::Publisher.as_str().to_string(),
        services: Services::PUBLISHER.to_string(),
        created_at: now,
        joined_at: now,
        heartbeat_at: 0,
    };
    if db.insert_node(&rec).await? {
        crate::groups::join_default(db, name, now).await?;
        Ok(rec)
    } else {
        // Another process defined a node at the same moment: ask again.
        db.node(name)
            .await?
            .ok_or_else(|| ClusterError::NotDefined(name.to_string()))
    }
}

/// Join `name` to the cluster: refused unless it was defined on the publisher first.
pub async fn join(db: &Db, name: &str, now: i64) -> Result<NodeRecord, ClusterError> {
    check_node_name(name)?;
    let Some(n) = db.node(name).await? else {
        return Err(ClusterError::NotDefined(name.to_string()));
    };
    if n.joined_at == 0 {
        db.mark_joined(name, now).await?;
    }
    Ok(NodeRecord {
        joined_at: if n.joined_at == 0 { now } else { n.joined_at },
        ..n
    })
}

/// What removing node `name` does, as asked before it is done.
pub fn remove_question(name: &str) -> String {
    format!(
        "removes node {name} from the cluster: its TFTP, TVS and CAPF leave what every node tells phones"
    )
}

/// Remove a subscriber that no call manager group names (the Default group included).
pub async fn remove_node(db: &Db, name: &str) -> Result<(), ClusterError> {
    let Some(n) = db.node(name).await? else {
        return Err(ClusterError::NotDefined(name.to_string()));
    };
    let role = Role::parse(&n.role).unwrap_or(Role::Subscriber);
    let groups_naming = crate::groups::groups_naming(db, name).await?;
    check_removal(name, role, &groups_naming)?;
    if !db.delete_node(name).await? {
        return Err(ClusterError::NotDefined(name.to_string()));
    }
    Ok(())
}

/// The node `id` is (name and the host it is reached at: the CallManager CN for both
/// until the node is defined otherwise).
pub fn this_node(id: &Identity) -> Option<(String, String)> {
    id.node().map(|n| (n.host.clone(), n.host))
}

/// Refuse a cluster definition made anywhere but on the publisher (`me`).
pub async fn require_publisher(db: &Db, me: &str) -> Result<(), ClusterError> {
    if let Some(n) = db.node(me).await?
        && n.role != Role::Publisher.as_str()
    {
        return Err(ClusterError::NotPublisher {
            node: me.to_string(),
            publisher: publisher_name(db).await?,
        });
    }
    Ok(())
}

/// The publisher's name, or "none defined".
pub async fn publisher_name(db: &Db) -> Result<String, StoreError> {
    Ok(db
        .nodes()
        .await?
        .into_iter()
        .find(|n| n.role == Role::Publisher.as_str())
        .map(|n| n.name)
        .unwrap_or_else(|| "none defined".into()))
}

/// `cluster add-node` on the node whose identity is `id`: only on the publisher;
/// [`define_node`], then this node's certificates published (it may have been recorded
/// as the publisher just now).
pub async fn add_node(
    db: &Db,
    id: &Identity,
    new: &NewNode<'_>,
    now: i64,
) -> Result<NodeRecord, ClusterError> {
    let me = this_node(id);
    let me_ref = me.as_ref().map(|(n, h)| (n.as_str(), h.as_str()));
    if let Some((n, _)) = me_ref {
        require_publisher(db, n).await?;
    }
    let rec = define_node(db, me_ref, id, new, now).await?;
    if let Some((n, _)) = me_ref
        && db.node(n).await?.is_some()
    {
        publish_identity(db, n, id, now).await?;
    }
    Ok(rec)
}

/// Publish the public parts of `id`'s own certificates as `node`'s.
pub async fn publish_identity(
    db: &Db,
    node: &str,
    id: &Identity,
    now: i64,
) -> Result<(), ClusterError> {
    let mut certs = Vec::new();
    for (which, ck) in id.all() {
        let serial = ck
            .cert
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_hex_str().map(|h| h.to_ascii_lowercase()))
            .map_err(StoreError::from)?;
        let pem = String::from_utf8(ck.cert.to_pem().map_err(StoreError::from)?)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        certs.push(NodeCert {
            node: node.to_string(),
            which: which.name().to_string(),
            serial,
            pem,
            updated_at: now,
        });
    }
    db.publish_node_certs(node, &certs).await?;
    Ok(())
}

/// Every node with its liveness at `now` and its published certificates' serials.
pub async fn cluster_view(db: &Db, now: i64) -> Result<Vec<NodeStatus>, ClusterError> {
    let certs = db.node_certs().await?;
    Ok(db
        .nodes()
        .await?
        .into_iter()
        .map(|n| NodeStatus {
            role: Role::parse(&n.role),
            services: Services::parse(&n.services).ok(),
            joined: n.joined_at > 0,
            alive: is_alive(n.heartbeat_at, now),
            heartbeat_at: n.heartbeat_at,
            certs: certs
                .iter()
                .filter(|c| c.node == n.name)
                .map(|c| (c.which.clone(), c.serial.clone()))
                .collect(),
            name: n.name,
            host: n.host,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_host_names() {
        for ok in ["ao115pub", "cucm-1051-a-sub1", "pub.example.com", "N1"] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-pub",
            "pub-",
            "a..b",
            "pub_1",
            "pub 1",
            "ünï",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(check_node_name(bad), Err(ClusterError::InvalidName(_))),
                "{bad}"
            );
        }
        assert!(check_node_name(&format!("{}.{}", "a".repeat(63), "b".repeat(63))).is_ok());
        assert!(check_node_name(&["a"; 128].join(".")).is_err()); // 255 characters
    }

    #[test]
    fn hosts_are_addresses_or_names() {
        assert!(check_host("127.0.0.2").is_ok());
        assert!(check_host("::1").is_ok());
        assert!(check_host("sub1.example.com").is_ok());
        assert!(matches!(
            check_host("10.0.0.1:6970"),
            Err(ClusterError::InvalidHost(_))
        ));
    }

    #[test]
    fn services_parse_and_print() {
        assert_eq!(
            Services::parse("tftp,tvs,capf").unwrap(),
            Services::PUBLISHER
        );
        assert_eq!(
            Services::parse(" TVS , tftp").unwrap(),
            Services::SUBSCRIBER
        );
        assert_eq!(Services::PUBLISHER.to_string(), "tftp,tvs,capf");
        assert_eq!(Services::parse("capf").unwrap().to_string(), "capf");
        assert!(matches!(
            Services::parse("tftp,dhcp"),
            Err(ClusterError::UnknownService(w)) if w == "dhcp"
        ));
        assert!(Services::parse("tftp,tftp").is_err());
        assert!(matches!(Services::parse(""), Err(ClusterError::NoService)));
        assert_eq!(
            Services::parse(&Services::SUBSCRIBER.to_string()).unwrap(),
            Services::SUBSCRIBER
        );
    }

    #[test]
    fn the_first_node_publishes() {
        assert_eq!(role_for_new_node(0), Role::Publisher);
        assert_eq!(role_for_new_node(1), Role::Subscriber);
        assert!(!Services::default_for(Role::Subscriber).capf);
        assert_eq!(
            Role::parse(Role::Subscriber.as_str()),
            Some(Role::Subscriber)
        );
        assert_eq!(Role::parse("master"), None);
    }

    #[test]
    fn alive_means_a_recent_heartbeat() {
        assert!(!is_alive(0, 100));
        assert!(is_alive(100, 100));
        assert!(is_alive(100, 100 + ALIVE_WITHIN_SECS));
        assert!(!is_alive(100, 101 + ALIVE_WITHIN_SECS));
        assert!(is_alive(100, 50)); // a clock a little behind another node's
    }

    #[test]
    fn removal_spares_the_publisher_and_grouped_nodes() {
        assert!(matches!(
            check_removal("pub", Role::Publisher, &[]),
            Err(ClusterError::RemovePublisher(n)) if n == "pub"
        ));
        let e = check_removal("sub1", Role::Subscriber, &["Default".into(), "West".into()])
            .unwrap_err();
        assert!(e.to_string().contains("Default, West"), "{e}");
        assert!(check_removal("sub1", Role::Subscriber, &[]).is_ok());
    }
}
