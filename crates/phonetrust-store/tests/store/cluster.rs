//! The cluster's nodes and their published certificates (on SQLite, and on PostgreSQL
//! when `PHONETRUST_TEST_POSTGRES` is set).

use phonetrust_store::cluster::{NodeCert, NodeRecord};

use crate::db;

fn node(name: &str, role: &str) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        host: format!("{name}.example.test"),
        role: role.into(),
        services: "tftp,tvs".into(),
        created_at: 100,
        joined_at: 0,
        heartbeat_at: 0,
    }
}

fn cert(node: &str, which: &str, serial: &str) -> NodeCert {
    NodeCert {
        node: node.into(),
        which: which.into(),
        serial: serial.into(),
        pem: format!("-----BEGIN CERTIFICATE-----\n{serial}\n-----END CERTIFICATE-----\n"),
        updated_at: 200,
    }
}

#[tokio::test]
async fn nodes_have_one_publisher_heartbeats_and_published_certificates() {
    let (_d, db) = db("cluster").await;
    assert!(db.nodes().await.unwrap().is_empty());
    assert!(db.insert_node(&node("sub1", "subscriber")).await.unwrap());
    assert!(db.insert_node(&node("pub", "publisher")).await.unwrap());
    assert!(
        !db.insert_node(&node("pub2", "publisher")).await.unwrap(),
        "a second publisher is refused"
    );
    assert!(
        !db.insert_node(&node("sub1", "subscriber")).await.unwrap(),
        "a name is defined once"
    );
    let names: Vec<String> = db
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["pub", "sub1"], "the publisher first");

    assert!(db.mark_joined("sub1", 150).await.unwrap());
    assert!(db.heartbeat("sub1", 300).await.unwrap());
    assert!(db.heartbeat("sub1", 250).await.unwrap());
    let s = db.node("sub1").await.unwrap().unwrap();
    assert_eq!(
        (s.joined_at, s.heartbeat_at),
        (150, 300),
        "never moves backwards"
    );
    assert!(!db.heartbeat("nowhere", 300).await.unwrap());
    assert!(
        db.update_node("sub1", "10.0.0.2", "tftp,tvs,capf")
            .await
            .unwrap()
    );
    let s = db.node("sub1").await.unwrap().unwrap();
    assert_eq!(
        (s.host.as_str(), s.services.as_str()),
        ("10.0.0.2", "tftp,tvs,capf")
    );

    db.publish_node_certs(
        "sub1",
        &[cert("sub1", "CallManager", "0a"), cert("sub1", "TVS", "0b")],
    )
    .await
    .unwrap();
    db.publish_node_certs("pub", &[cert("pub", "CallManager", "01")])
        .await
        .unwrap();
    db.publish_node_certs("sub1", &[cert("sub1", "CallManager", "0c")])
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = db
        .node_certs()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.node, c.which, c.serial))
        .collect();
    assert_eq!(
        got,
        [
            ("pub".into(), "CallManager".into(), "01".into()),
            ("sub1".into(), "CallManager".into(), "0c".into()),
            ("sub1".into(), "TVS".into(), "0b".into()),
        ]
    );

    assert!(db.delete_node("sub1").await.unwrap());
    assert!(!db.delete_node("sub1").await.unwrap());
    assert!(db.node("sub1").await.unwrap().is_none());
    let left: Vec<String> = db
        .node_certs()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert_eq!(left, ["pub"], "its certificates go with it");
}

#[tokio::test]
async fn groups_pools_and_placements_are_stored() {
    use phonetrust_store::devices::NewDevice;
    use phonetrust_store::groups::{GroupRecord, Placement, PoolRecord};
    let (_d, db) = db("groups").await;
    let g = |name: &str, m: &[&str]| GroupRecord {
        name: name.into(),
        members: m.iter().map(|s| s.to_string()).collect(),
    };
    assert!(
        db.put_group(&g("Default", &["pub"]), false, 1)
            .await
            .unwrap()
    );
    assert!(!db.put_group(&g("Default", &["x"]), false, 1).await.unwrap());
    assert!(!db.put_group(&g("Missing", &["x"]), true, 1).await.unwrap());
    assert!(
        db.put_group(&g("East", &["sub1", "pub"]), false, 1)
            .await
            .unwrap()
    );
    assert!(
        db.put_group(&g("Default", &["pub", "sub1"]), true, 1)
            .await
            .unwrap()
    );
    assert_eq!(
        db.groups().await.unwrap(),
        [g("Default", &["pub", "sub1"]), g("East", &["sub1", "pub"])],
        "by name, members in priority order"
    );
    let pool = PoolRecord {
        name: "Branch".into(),
        group: "East".into(),
    };
    assert!(db.put_pool(&pool, false, 1).await.unwrap());
    assert_eq!(db.pools().await.unwrap(), std::slice::from_ref(&pool));

    db.add_devices(
        &[NewDevice {
            name: "SEP001122334455".into(),
            model: "8845".into(),
            protocol: phonetrust_store::model::Protocol::Sip,
            profile: None,
            description: String::new(),
        }],
        1,
    )
    .await
    .unwrap();
    let dev = "SEP001122334455";
    assert_eq!(db.placement(dev).await.unwrap(), Placement::default());
    let p = Placement {
        pool: Some("Branch".into()),
        group: None,
    };
    db.set_placement(dev, &p).await.unwrap();
    assert_eq!(db.placement(dev).await.unwrap(), p);
    assert_eq!(
        db.phones_in_pool("Branch").await.unwrap(),
        (1, vec![dev.to_string()])
    );
    assert_eq!(db.phones_in_group("East").await.unwrap().0, 0);
    db.set_placement(dev, &Placement::default()).await.unwrap();
    assert_eq!(db.phones_in_pool("Branch").await.unwrap().0, 0);
    db.set_placement(
        dev,
        &Placement {
            pool: None,
            group: Some("East".into()),
        },
    )
    .await
    .unwrap();
    db.delete_device(dev).await.unwrap();
    assert_eq!(
        db.phones_in_group("East").await.unwrap().0,
        0,
        "a deleted phone's placement goes with it"
    );
    assert!(db.delete_pool("Branch").await.unwrap());
    assert!(db.delete_group("East").await.unwrap());
    assert!(!db.delete_group("East").await.unwrap());
}

/// A change committed by another node (another connection pool) wakes this node's
/// change feed at once on PostgreSQL (`LISTEN/NOTIFY`), a heartbeat does not; SQLite's
/// feed never fires (its services poll).
#[tokio::test]
async fn changes_made_elsewhere_are_announced_on_postgresql() {
    use phonetrust_store::db::Backend;
    let (_d, db) = db("changes").await;
    let mut feed = db.changes();
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(20), feed.listening())
            .await
            .unwrap_or(false),
        "the feed listens"
    );
    let other = phonetrust_store::Db::open(db.url()).await.unwrap();
    assert!(other.insert_node(&node("pub", "publisher")).await.unwrap());
    let wait = |feed: &mut phonetrust_store::changes::ChangeFeed, secs| {
        let mut f = feed.clone();
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(secs), f.changed())
                .await
                .is_ok()
        }
    };
    if db.backend() != Backend::Postgres {
        assert!(!wait(&mut feed, 1).await, "SQLite announces nothing");
        assert_eq!(feed.generation(), 0);
        return;
    }
    assert!(wait(&mut feed, 20).await, "a new node is announced");
    // Settle what the insert announced, then a heartbeat: nothing.
    feed.changed().await;
    let seen = feed.generation();
    assert!(other.heartbeat("pub", 1_000).await.unwrap());
    assert!(
        !wait(&mut feed, 1).await,
        "a heartbeat is not a configuration change"
    );
    assert_eq!(feed.generation(), seen);
    other
        .set_param("LscValidityDays", "400", 2_000)
        .await
        .unwrap();
    assert!(wait(&mut feed, 20).await, "a parameter change is announced");
    assert!(feed.generation() > seen);
}
