//! The node's rules without sockets: the ITL rebuilt from the vectors' keys byte for byte,
//! the CTL's records, served names, the CAPF plan and what an outcome records.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use phonetrust_pki::DistinguishedName;
use phonetrust_pki::profiles::{NodeIdentity, OwnCert};
use phonetrust_proto::capf::Curve;
use phonetrust_proto::capf_server::{
    AuthCertKind, AuthPolicy, FailKind, KeyRequest, Operation, Outcome,
};
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::rand::SeededRandom;
use phonetrust_proto::trustlist::{self, Role};
use phonetrust_rules::{capf, ctl, names, trustlists};
use phonetrust_store::identity::{self, Identity};
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::{
    AuthMode, CapfInfo, CertOperation, DeviceCertKind, EcCurve, KeyOrder, OpState,
};
use phonetrust_testsupport::vectors;

/// An identity whose own certificates are the vectors' (tomcat stays generated).
fn vector_identity() -> (phonetrust_testsupport::TestDir, Identity) {
    let tmp = phonetrust_testsupport::tempdir("rules");
    let data = DataDir::new(tmp.path().join("node"));
    let mut n = NodeIdentity::new("pub.example.test", DistinguishedName::default());
    n.rsa_bits = 1024;
    identity::create(&data, &n, 1_795_000_000, &SeededRandom::new(1)).unwrap();
    phonetrust_testsupport::use_vector_identity(&data);
    let id = identity::load(&data).unwrap();
    (tmp, id)
}

fn roles(f: &[u8]) -> Vec<Role> {
    trustlist::parse(f)
        .unwrap()
        .plain_records()
        .map(|r| r.role.unwrap())
        .collect()
}

#[test]
fn the_itl_is_the_reference_itl_byte_for_byte() {
    let (_t, id) = vector_identity();
    let reference = vectors::bytes("files/ITLFile.tlv");
    let ts = phonetrust_proto::tlv::parse_header(&reference)
        .unwrap()
        .timestamp
        .unwrap();
    let ours = trustlists::build_itl(&id, false, ts).unwrap();
    assert_eq!(ours, reference, "the layout of the reference ITL");
    // Recovery-signed: ITLRecovery is the signer's SAST record, not listed twice.
    let rec = trustlists::build_itl(&id, true, ts).unwrap();
    assert_eq!(
        roles(&rec),
        [Role::Sast, Role::CcmTftp, Role::Capf, Role::Tvs, Role::Tftp]
    );
    let list = trustlist::parse(&rec).unwrap();
    let signer = list.signer_cert().unwrap();
    assert_eq!(
        signer.to_der().unwrap(),
        id.get(OwnCert::ItlRecovery).unwrap().cert.to_der().unwrap()
    );
    // The files a phone holding this ITL accepts are signed by TFTP, CCM+TFTP or SAST
    // records: CallManager (twice: SAST and CCM+TFTP), ITLRecovery, CallManager-ECDSA.
    let signers = trustlist::parse(&reference).unwrap().file_signers();
    assert_eq!(signers.len(), 4);
    let capf = id.get(OwnCert::Capf).unwrap().cert.to_der().unwrap();
    assert!(signers.iter().all(|c| c.to_der().unwrap() != capf));
}

#[test]
fn the_tokenless_ctl_lists_the_signer_callmanager_and_capf() {
    let (_t, id) = vector_identity();
    let f = ctl::build_ctl(&id, &ctl::CtlSigner::CallManager, 1_800_000_000).unwrap();
    assert_eq!(roles(&f), [Role::Sast, Role::CcmTftp, Role::Capf]);
    let f = ctl::build_ctl(&id, &ctl::CtlSigner::ItlRecovery, 1_800_000_000).unwrap();
    let list = trustlist::parse(&f).unwrap();
    list.verify(&f).unwrap();
    assert_eq!(
        list.signer_cert().unwrap().to_der().unwrap(),
        id.get(OwnCert::ItlRecovery).unwrap().cert.to_der().unwrap()
    );
}

#[test]
fn served_names_are_checked() {
    assert_eq!(
        names::static_path("firmware/sip88xx.loads").unwrap(),
        std::path::PathBuf::from("firmware/sip88xx.loads")
    );
    for bad in [
        "",
        "../phonetrust.db",
        "/etc/passwd",
        "firmware/../../x",
        ".hidden",
        "a\\b",
        "a b",
        &"x".repeat(256),
    ] {
        assert!(names::static_path(bad).is_err(), "{bad:?}");
    }
}

fn info(op: CertOperation, auth: AuthMode, order: KeyOrder) -> CapfInfo {
    CapfInfo {
        operation: op,
        auth_mode: auth,
        auth_string: (auth == AuthMode::AuthString).then(|| "123456".into()),
        key_order: order,
        rsa_bits: 3072,
        ec_curve: EcCurve::P384,
        completes_by: Some(1_800_000_000),
        state: OpState::Pending,
        status: "Operation Pending".into(),
        status_at: 0,
    }
}

#[test]
fn the_capf_plan_follows_the_phone_page() {
    let capf = CertAndKey::from_pem(&vectors::bytes("pki/capf.pem"))
        .unwrap()
        .cert;
    let mfg = phonetrust_testsupport::mfg_ca().cert;
    let rsa = KeyRequest::Rsa(3072);
    let ec = KeyRequest::Ec(Curve::P384);
    for (order, keys) in [
        (KeyOrder::Rsa, vec![rsa]),
        (KeyOrder::Ec, vec![ec]),
        (KeyOrder::EcRsa, vec![ec, rsa]),
        (KeyOrder::RsaEc, vec![rsa, ec]),
    ] {
        let p = capf::plan(
            &info(CertOperation::Install, AuthMode::NullString, order),
            &capf,
            vec![mfg.clone()],
            1_700_000_000,
        );
        assert_eq!(p.operation, Operation::Install(keys), "{order:?}");
        assert!(!p.expired);
    }
    let p = capf::plan(
        &info(
            CertOperation::Troubleshoot,
            AuthMode::AuthString,
            KeyOrder::Rsa,
        ),
        &capf,
        vec![mfg.clone()],
        1_900_000_000,
    );
    assert_eq!(p.operation, Operation::Fetch);
    assert_eq!(p.auth, AuthPolicy::AuthString("123456".into()));
    assert!(p.expired, "completes by has passed");
    assert_eq!(p.lsc_anchors[0].to_der().unwrap(), capf.to_der().unwrap());
    assert_eq!(p.mic_anchors[0].to_der().unwrap(), mfg.to_der().unwrap());
    for (auth, want) in [
        (AuthMode::Lsc, AuthPolicy::Lsc),
        (AuthMode::Mic, AuthPolicy::Mic),
    ] {
        let p = capf::plan(
            &info(CertOperation::Delete, auth, KeyOrder::Rsa),
            &capf,
            vec![],
            0,
        );
        assert_eq!((p.operation, p.auth), (Operation::Delete, want));
    }
}

#[test]
fn what_an_outcome_records() {
    let capf = CertAndKey::from_pem(&vectors::bytes("pki/capf.pem"))
        .unwrap()
        .cert;
    let lsc = CertAndKey::from_pem(&vectors::bytes("pki/lsc/SEP001122AABBCC.pem")).unwrap();
    let lsc_der = lsc.cert.to_der().unwrap();
    let mic = CertAndKey::from_pem(&vectors::bytes("pki/mic-SEP0011AABBCCDD.pem")).unwrap();
    let mic_der = mic.cert.to_der().unwrap();
    let now = 1_800_000_000;

    let r = capf::record(
        &Outcome::Installed {
            device: "SEP001122AABBCC".into(),
            cert: lsc_der.clone(),
            auth_cert: Some((AuthCertKind::Mic, mic_der.clone())),
        },
        &capf,
        None,
        now,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (r.state, r.status.as_str(), r.delete_lsc),
        (OpState::Success, "Upgrade Success", false)
    );
    let kinds: Vec<_> = r.certs.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [DeviceCertKind::Mic, DeviceCertKind::Lsc]);
    assert_eq!(
        r.certs[1].md5, "7b48e4ce7c5a926c98e29bb08c2589e4",
        "the vectors' LSC MD5"
    );

    // A fetched certificate this CAPF issued is the LSC; any other is the MIC.
    for (der, kind) in [
        (&lsc_der, DeviceCertKind::Lsc),
        (&mic_der, DeviceCertKind::Mic),
    ] {
        let r = capf::record(
            &Outcome::Fetched {
                device: "SEP001122AABBCC".into(),
                cert: der.clone(),
                auth_cert: None,
            },
            &capf,
            None,
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status, "Troubleshoot Success");
        assert_eq!(r.certs[0].kind, kind);
    }
    let r = capf::record(
        &Outcome::Deleted {
            device: "SEP001122AABBCC".into(),
        },
        &capf,
        None,
        now,
    )
    .unwrap()
    .unwrap();
    assert!(r.delete_lsc && r.certs.is_empty());
    let r = capf::record(
        &Outcome::Failed {
            device: Some("SEP001122AABBCC".into()),
            kind: FailKind::Auth,
            status: "Upgrade Failed: Invalid Authentication String".into(),
        },
        &capf,
        None,
        now,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (r.state, r.status.as_str()),
        (
            OpState::Failed,
            "Upgrade Failed: Invalid Authentication String"
        )
    );
    // Nothing to record.
    for o in [
        Outcome::Failed {
            device: None,
            kind: FailKind::Protocol,
            status: "x".into(),
        },
        Outcome::NothingScheduled {
            device: "SEP001122AABBCC".into(),
        },
        Outcome::UnknownDevice {
            device: "SEP001122AABBCC".into(),
        },
    ] {
        assert!(capf::record(&o, &capf, None, now).unwrap().is_none());
    }
    // A damaged certificate is an error, never a panic.
    let e = capf::record(
        &Outcome::Installed {
            device: "SEP001122AABBCC".into(),
            cert: vec![0x30, 0x03, 1, 2, 3],
            auth_cert: None,
        },
        &capf,
        None,
        now,
    );
    assert!(e.is_err());
}

#[test]
fn what_tvs_trusts_and_answers() {
    use phonetrust_proto::tvs_server::Verdict;
    use phonetrust_rules::tvs::{Sources, build_index, verdict};
    let (_t, id) = vector_identity();
    let der = |f: &str| {
        openssl::x509::X509::from_pem(&vectors::bytes(f))
            .unwrap()
            .to_der()
            .unwrap()
    };
    let lsc = CertAndKey::from_pem(&vectors::bytes("pki/lsc/SEP001122AABBCC.pem")).unwrap();
    let mfg = phonetrust_testsupport::mfg_ca().cert;
    let src = Sources {
        own: id.all().map(|(w, c)| (w, c.cert.clone())).collect(),
        ctl: Some(vectors::bytes("files/CTLFile.tlv")),
        callmanager_trust: vec![lsc.cert.clone()],
        phone_sast_trust: vec![mfg.clone()],
        peers: Vec::new(),
    };
    let ix = build_index(&src);
    assert!(ix.problems.is_empty());
    let roles = |d: &[u8]| match verdict(ix.lookup(d), 86_400) {
        Verdict::Trusted { roles, ttl } => {
            assert_eq!(ttl, 86_400);
            roles
        }
        Verdict::Unknown => vec![],
    };
    // As the transcript's answers: CallManager SAST + CCM+TFTP, CAPF as CAPF.
    assert_eq!(
        roles(&der("pki/callmanager.crt")),
        [Role::Sast, Role::CcmTftp]
    );
    assert_eq!(roles(&der("pki/capf.crt")), [Role::Capf]);
    assert_eq!(roles(&der("pki/callmanager-ecdsa.crt")), [Role::Tftp]);
    assert_eq!(roles(&der("pki/itlrecovery.crt")), [Role::Sast]);
    assert_eq!(roles(&lsc.cert.to_der().unwrap()), [Role::Ccm]);
    assert_eq!(roles(&mfg.to_der().unwrap()), [Role::Sast]);
    assert_eq!(roles(&der("pki/mic-SEP0011AABBCCDD.crt")), [], "unknown");
    // A CTL that does not parse is reported, its records not trusted.
    let broken = Sources {
        ctl: Some(b"not a CTL".to_vec()),
        ..Sources::default()
    };
    let ix = build_index(&broken);
    assert_eq!(ix.len(), 0);
    assert_eq!(ix.problems.len(), 1);
}

/// The port rule: the parameters say what phones are told; a server listening elsewhere
/// is reported per service, with the command that tells phones the port it uses.
#[test]
fn listening_elsewhere_than_phones_are_told_is_reported() {
    use phonetrust_rules::ports::mismatches;
    use phonetrust_store::params::PhonePorts;
    let told = PhonePorts::default();
    assert!(mismatches(&told, &told).is_empty());
    let listening = PhonePorts {
        capf: 23804,
        tvs: 22445,
        ..told
    };
    let m = mismatches(&told, &listening);
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0].service, m[0].told, m[0].listening),
        ("CAPF", 3804, 23804)
    );
    assert_eq!(m[1].param, "TvsPort");
    assert!(
        m[1].to_string()
            .starts_with("TVS listens on port 22445 but phones are told port 2445 (TvsPort)")
            && m[1]
                .to_string()
                .ends_with("`phonetrust set param TvsPort 22445`"),
        "{}",
        m[1]
    );
}

/// The served ITL is stored: asked again with the same certificates and signer, the same
/// bytes come back (a later timestamp does not rebuild it); a new signer gives a new ITL.
#[tokio::test]
async fn the_served_itl_is_built_once_per_source() {
    use phonetrust_pki::DistinguishedName;
    use phonetrust_pki::profiles::NodeIdentity;
    use phonetrust_rules::trustlists::served_itl;
    let n = NodeIdentity::new("pub.example.test", DistinguishedName::default());
    let node = phonetrust_testsupport::FreshNode::new("rules-itl", &n).await;
    let a = served_itl(&node.db, "pub.example.test", &node.id, false, 1_000)
        .await
        .unwrap();
    let b = served_itl(&node.db, "pub.example.test", &node.id, false, 2_000)
        .await
        .unwrap();
    assert_eq!(a, b, "same source: the stored ITL");
    assert_eq!(a.updated_at, 1_000);
    let t = phonetrust_proto::trustlist::parse(&a.bytes).unwrap();
    assert_eq!(t.header.timestamp, Some(1_000));
    let r = served_itl(&node.db, "pub.example.test", &node.id, true, 3_000)
        .await
        .unwrap();
    assert_ne!(r.bytes, a.bytes);
    assert_ne!(r.source, a.source);
    assert_eq!(node.db.itl("pub.example.test").await.unwrap().unwrap(), r);
    // Another node's ITL is kept apart.
    assert!(node.db.itl("sub.example.test").await.unwrap().is_none());
}

/// A cluster is defined on its publisher: the node the command runs on becomes the
/// publisher, the next ones subscribers (TFTP and TVS by default); a node not defined
/// cannot join; the publisher cannot be removed; the published certificates' serials and
/// the heartbeat show in the cluster view.
#[tokio::test]
async fn a_cluster_is_defined_on_its_publisher() {
    use phonetrust_pki::DistinguishedName;
    use phonetrust_pki::profiles::NodeIdentity;
    use phonetrust_rules::cluster::{self, ClusterError, NewNode, Role, Services};
    let n = NodeIdentity::new("pub.example.test", DistinguishedName::default());
    let node = phonetrust_testsupport::FreshNode::new("rules-cluster", &n).await;
    let db = &node.db;
    let me = Some(("pub.example.test", "127.0.0.1"));
    let sub = NewNode {
        name: "sub1.example.test",
        host: "127.0.0.2",
        services: None,
    };
    let rec = cluster::define_node(db, me, &node.id, &sub, 1_000)
        .await
        .unwrap();
    assert_eq!(
        (rec.role.as_str(), rec.services.as_str()),
        ("subscriber", "tftp,tvs")
    );
    assert!(matches!(
        cluster::define_node(db, me, &node.id, &sub, 1_001).await,
        Err(ClusterError::Exists(_))
    ));
    let bad = NewNode {
        name: "sub_2",
        host: "127.0.0.3",
        services: None,
    };
    assert!(matches!(
        cluster::define_node(db, me, &node.id, &bad, 1_001).await,
        Err(ClusterError::InvalidName(_))
    ));
    let capf_sub = NewNode {
        name: "sub2.example.test",
        host: "127.0.0.3",
        services: Some(Services::parse("tftp,tvs,capf").unwrap()),
    };
    cluster::define_node(db, me, &node.id, &capf_sub, 1_002)
        .await
        .unwrap();

    let e = cluster::join(db, "sub9.example.test", 1_100)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("define it on the publisher first"),
        "{e}"
    );
    let j = cluster::join(db, "sub1.example.test", 1_100).await.unwrap();
    assert_eq!(j.joined_at, 1_100);
    assert_eq!(
        cluster::join(db, "sub1.example.test", 1_200)
            .await
            .unwrap()
            .joined_at,
        1_100,
        "joining again keeps the first date"
    );

    cluster::publish_identity(db, "pub.example.test", &node.id, 1_000)
        .await
        .unwrap();
    db.heartbeat("pub.example.test", 1_300).await.unwrap();
    let view = cluster::cluster_view(db, 1_305).await.unwrap();
    let names: Vec<&str> = view.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["pub.example.test", "sub1.example.test", "sub2.example.test"]
    );
    let p = &view[0];
    assert_eq!(p.role, Some(Role::Publisher));
    assert!(p.alive && p.joined);
    let cm_serial = node
        .id
        .get(OwnCert::CallManager)
        .unwrap()
        .cert
        .serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(p.certs.contains(&("CallManager".to_string(), cm_serial)));
    assert_eq!(p.certs.len(), OwnCert::ALL.len());
    assert!(!view[1].alive, "never sent a heartbeat");
    assert!(view[1].joined && !view[2].joined);
    assert!(view[2].services.unwrap().capf);
    assert!(!cluster::cluster_view(db, 1_300 + 60).await.unwrap()[0].alive);

    assert!(matches!(
        cluster::remove_node(db, "pub.example.test").await,
        Err(ClusterError::RemovePublisher(_))
    ));
    // Every node defined joined the Default group (three at most): sub1 is named by it.
    let e = cluster::remove_node(db, "sub1.example.test")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClusterError::InGroups { groups, .. } if groups == "Default"),
        "{e}"
    );
    phonetrust_rules::groups::set_group(
        db,
        "Default",
        &["pub.example.test".into(), "sub2.example.test".into()],
    )
    .await
    .unwrap();
    cluster::remove_node(db, "sub1.example.test").await.unwrap();
    assert!(matches!(
        cluster::remove_node(db, "sub1.example.test").await,
        Err(ClusterError::NotDefined(_))
    ));
}

#[tokio::test]
async fn a_subscribers_itl_lists_every_tvs_and_the_publishers_capf() {
    use phonetrust_pki::DistinguishedName;
    use phonetrust_proto::rand::OsRandom;
    use phonetrust_rules::cluster::{self, ClusterError, NewNode};
    use phonetrust_rules::trustlists::{ClusterPeers, MAX_ITL_BYTES};
    let pub_n = NodeIdentity::new("pub.example.test", DistinguishedName::default());
    let node = phonetrust_testsupport::FreshNode::new("rules-sub-itl", &pub_n).await;
    let db = &node.db;
    let sub_dir = phonetrust_testsupport::tempdir("rules-sub-itl-sub");
    let sub_n = NodeIdentity::new("sub1.example.test", DistinguishedName::default());
    let sub_id = identity::create(
        &DataDir::new(sub_dir.path()),
        &sub_n,
        phonetrust_testsupport::now() - 60,
        &OsRandom,
    )
    .unwrap();
    let single = trustlists::build_itl(&node.id, false, 1_000).unwrap();

    let me = Some(("pub.example.test", "127.0.0.1"));
    let sub = NewNode {
        name: "sub1.example.test",
        host: "127.0.0.2",
        services: None,
    };
    cluster::define_node(db, me, &node.id, &sub, 1_000)
        .await
        .unwrap();
    cluster::publish_identity(db, "pub.example.test", &node.id, 1_000)
        .await
        .unwrap();
    // Not joined yet: the publisher's ITL is still its single-node ITL.
    let peers = ClusterPeers::of(db, "pub.example.test").await.unwrap();
    assert_eq!(
        trustlists::build_itl_in(&node.id, false, &peers, 1_000).unwrap(),
        single
    );
    cluster::join(db, "sub1.example.test", 1_100).await.unwrap();
    cluster::publish_identity(db, "sub1.example.test", &sub_id, 1_100)
        .await
        .unwrap();

    let der = |id: &Identity, w: OwnCert| id.get(w).unwrap().cert.to_der().unwrap();
    let records = |f: &[u8]| -> Vec<(Role, Vec<u8>)> {
        let list = trustlist::parse(f).unwrap();
        list.verify(f).unwrap();
        list.plain_records()
            .map(|r| (r.role.unwrap(), r.certificate.clone().unwrap()))
            .collect()
    };
    let peers = ClusterPeers::of(db, "sub1.example.test").await.unwrap();
    let f = trustlists::build_itl_in(&sub_id, false, &peers, 1_200).unwrap();
    assert_eq!(
        trustlist::parse(&f)
            .unwrap()
            .signer_cert()
            .unwrap()
            .to_der()
            .unwrap(),
        der(&sub_id, OwnCert::CallManager),
        "signed by the subscriber's own CallManager"
    );
    assert_eq!(
        records(&f),
        [
            (Role::Sast, der(&sub_id, OwnCert::CallManager)),
            (Role::Sast, der(&node.id, OwnCert::ItlRecovery)),
            (Role::CcmTftp, der(&sub_id, OwnCert::CallManager)),
            (Role::Capf, der(&node.id, OwnCert::Capf)),
            (Role::Tvs, der(&sub_id, OwnCert::Tvs)),
            (Role::Tvs, der(&node.id, OwnCert::Tvs)),
            (Role::Tftp, der(&sub_id, OwnCert::CallManagerEcdsa)),
        ]
    );
    // Recovery-signed on the subscriber: it has not the cluster's ITLRecovery key, so its
    // CallManager signs and the publisher's ITLRecovery stays listed.
    let r = trustlists::build_itl_in(&sub_id, true, &peers, 1_200).unwrap();
    assert_eq!(records(&r), records(&f));
    // The publisher lists the subscriber's TVS after its own, its own CAPF and ITLRecovery.
    let peers = ClusterPeers::of(db, "pub.example.test").await.unwrap();
    let p = trustlists::build_itl_in(&node.id, false, &peers, 1_200).unwrap();
    assert_eq!(
        records(&p),
        [
            (Role::Sast, der(&node.id, OwnCert::CallManager)),
            (Role::Sast, der(&node.id, OwnCert::ItlRecovery)),
            (Role::CcmTftp, der(&node.id, OwnCert::CallManager)),
            (Role::Capf, der(&node.id, OwnCert::Capf)),
            (Role::Tvs, der(&node.id, OwnCert::Tvs)),
            (Role::Tvs, der(&sub_id, OwnCert::Tvs)),
            (Role::Tftp, der(&node.id, OwnCert::CallManagerEcdsa)),
        ]
    );
    // The fingerprint changes with a peer's certificate, so a served ITL is rebuilt.
    assert_ne!(
        trustlists::itl_source(&node.id, false).unwrap(),
        trustlists::itl_source_in(&node.id, false, &peers).unwrap()
    );

    // The 64 KB limit: the smallest number of TVS nodes that passes it is refused.
    let limit = (1..200)
        .find(|&n| cluster::itl_size_with(&node.id, n).unwrap() > MAX_ITL_BYTES)
        .unwrap();
    assert!((25..=45).contains(&limit), "about 39 certificates: {limit}");
    // pub and sub1 run TVS: sub{i} would be the (i+1)-th TVS node.
    let mut refused = None;
    for i in 2..=limit {
        let name = format!("sub{i}.example.test");
        let n = NewNode {
            name: &name,
            host: "127.0.0.9",
            services: None,
        };
        match cluster::define_node(db, me, &node.id, &n, 2_000).await {
            Ok(_) => {}
            Err(ClusterError::ItlTooLarge { size, max, .. }) => {
                assert!(size > max);
                refused = Some(i);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, Some(limit - 1), "the node that passes the limit");
    assert_eq!(db.nodes().await.unwrap().len(), limit - 1);
    // A node without TVS adds nothing to the ITLs and is still accepted.
    let tftp_only = NewNode {
        name: "tftp9.example.test",
        host: "127.0.0.9",
        services: Some(cluster::Services::parse("tftp").unwrap()),
    };
    cluster::define_node(db, me, &node.id, &tftp_only, 2_000)
        .await
        .unwrap();
}

#[tokio::test]
async fn phones_are_told_their_groups_nodes_in_priority_order() {
    use phonetrust_pki::DistinguishedName;
    use phonetrust_rules::cluster::{self, NewNode, Services};
    use phonetrust_rules::groups::{self, GroupError, Topology};
    use phonetrust_store::groups::Placement;
    let n = NodeIdentity::new("pub.example.test", DistinguishedName::default());
    let node = phonetrust_testsupport::FreshNode::new("rules-groups", &n).await;
    let db = &node.db;
    let me = Some(("pub.example.test", "10.0.0.1"));
    for (name, host, services) in [
        ("sub1.example.test", "10.0.0.2", None),
        ("sub2.example.test", "10.0.0.3", Some("tftp")),
        ("sub3.example.test", "10.0.0.4", None),
    ] {
        let s = services.map(|s| Services::parse(s).unwrap());
        let nn = NewNode {
            name,
            host,
            services: s,
        };
        cluster::define_node(db, me, &node.id, &nn, 1_000)
            .await
            .unwrap();
    }
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // The Default group took the first three nodes, the publisher first.
    let topo = Topology::load(db).await.unwrap();
    let none = Placement::default();
    let d = topo.nodes_for(&none);
    assert_eq!(d.group, "Default");
    assert_eq!(d.call_managers, s(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]));
    assert_eq!(d.tvs, s(&["10.0.0.1", "10.0.0.2"]), "sub2 runs no TVS");
    assert_eq!(d.capf.as_deref(), Some("10.0.0.1"));

    let four = s(&[
        "sub3.example.test",
        "sub1.example.test",
        "pub.example.test",
        "sub2.example.test",
    ]);
    assert!(matches!(
        groups::define_group(db, "East", &four, 1).await,
        Err(GroupError::TooMany { count: 4, .. })
    ));
    assert!(matches!(
        groups::define_group(
            db,
            "East",
            &s(&["sub1.example.test", "sub1.example.test"]),
            1
        )
        .await,
        Err(GroupError::Duplicate { .. })
    ));
    assert!(matches!(
        groups::define_group(db, "East", &s(&["sub9.example.test"]), 1).await,
        Err(GroupError::UnknownNode { .. })
    ));
    assert!(matches!(
        groups::define_group(db, "East;drop", &four[..1], 1).await,
        Err(GroupError::InvalidName(_))
    ));
    groups::define_group(db, "East", &four[..3], 1)
        .await
        .unwrap();
    assert!(matches!(
        groups::define_group(db, "East", &four[..1], 1).await,
        Err(GroupError::Exists { .. })
    ));
    assert!(matches!(
        groups::define_pool(db, "Branch", "West", 1).await,
        Err(GroupError::NotDefined { .. })
    ));
    groups::define_pool(db, "Branch", "East", 1).await.unwrap();

    db.add_devices(
        &[
            phonetrust_store::devices::NewDevice {
                name: "SEP0011223344AA".into(),
                model: "8845".into(),
                protocol: phonetrust_store::model::Protocol::Sip,
                profile: None,
                description: String::new(),
            },
            phonetrust_store::devices::NewDevice {
                name: "SEP0011223344BB".into(),
                model: "8845".into(),
                protocol: phonetrust_store::model::Protocol::Sip,
                profile: None,
                description: String::new(),
            },
        ],
        1,
    )
    .await
    .unwrap();
    let in_pool = Placement {
        pool: Some("Branch".into()),
        group: None,
    };
    groups::place_phone(db, "SEP0011223344AA", &in_pool)
        .await
        .unwrap();
    let direct = Placement {
        pool: Some("Branch".into()),
        group: Some("Default".into()),
    };
    groups::place_phone(db, "SEP0011223344BB", &direct)
        .await
        .unwrap();
    assert!(
        groups::place_phone(db, "SEP0011223344CC", &in_pool)
            .await
            .is_err(),
        "an unknown phone"
    );
    let topo = Topology::load(db).await.unwrap();
    let a = topo.nodes_for(&db.placement("SEP0011223344AA").await.unwrap());
    assert_eq!(a.group, "East");
    assert_eq!(
        a.call_managers,
        s(&["10.0.0.4", "10.0.0.2", "10.0.0.1"]),
        "the pool's group, in its priority order"
    );
    assert_eq!(a.tvs, a.call_managers, "each of them runs TVS");
    assert_eq!(
        a.capf.as_deref(),
        Some("10.0.0.1"),
        "the only CAPF in the group"
    );
    let b = topo.nodes_for(&db.placement("SEP0011223344BB").await.unwrap());
    assert_eq!(
        b.group, "Default",
        "a group given directly wins over the pool's"
    );

    // What may not be removed while it is used.
    assert!(matches!(
        groups::remove_group(db, "Default").await,
        Err(GroupError::RemoveDefault)
    ));
    let e = groups::remove_group(db, "East").await.unwrap_err();
    assert!(e.to_string().contains("device pool(s) Branch"), "{e}");
    let e = groups::remove_pool(db, "Branch").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("2 phones (SEP0011223344AA, SEP0011223344BB)"),
        "{e}"
    );
    let e = cluster::remove_node(db, "sub3.example.test")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("call manager group(s) East"), "{e}");
    groups::set_group(db, "East", &four[1..3]).await.unwrap();
    cluster::remove_node(db, "sub3.example.test").await.unwrap();
    for d in ["SEP0011223344AA", "SEP0011223344BB"] {
        groups::place_phone(db, d, &Placement::default())
            .await
            .unwrap();
    }
    groups::remove_pool(db, "Branch").await.unwrap();
    groups::remove_group(db, "East").await.unwrap();
}

/// A publisher (its own database) and a joined subscriber at 10.0.0.2, both published.
async fn publisher_and_subscriber(
    tag: &str,
) -> (
    phonetrust_testsupport::FreshNode,
    phonetrust_testsupport::TestDir,
    Identity,
) {
    use phonetrust_pki::DistinguishedName;
    use phonetrust_proto::rand::OsRandom;
    use phonetrust_rules::cluster::{self, NewNode};
    let pub_n = NodeIdentity::new("pub.example.test", DistinguishedName::default());
    let node = phonetrust_testsupport::FreshNode::new(tag, &pub_n).await;
    let sub_dir = phonetrust_testsupport::tempdir(&format!("{tag}-sub"));
    let sub_n = NodeIdentity::new("sub1.example.test", DistinguishedName::default());
    let sub_id = identity::create(
        &DataDir::new(sub_dir.path()),
        &sub_n,
        phonetrust_testsupport::now() - 60,
        &OsRandom,
    )
    .unwrap();
    let me = Some(("pub.example.test", "10.0.0.1"));
    let sub = NewNode {
        name: "sub1.example.test",
        host: "10.0.0.2",
        services: None,
    };
    let db = &node.db;
    cluster::define_node(db, me, &node.id, &sub, 1_000)
        .await
        .unwrap();
    cluster::publish_identity(db, "pub.example.test", &node.id, 1_000)
        .await
        .unwrap();
    cluster::join(db, "sub1.example.test", 1_100).await.unwrap();
    cluster::publish_identity(db, "sub1.example.test", &sub_id, 1_100)
        .await
        .unwrap();
    (node, sub_dir, sub_id)
}

#[tokio::test]
async fn the_clusters_ctl_lists_every_node_and_tvs_trusts_every_node() {
    use phonetrust_rules::ctl::{CtlCluster, CtlError, CtlSigner};
    use phonetrust_rules::tvs::{Sources, build_index};
    let (node, _sub_dir, sub_id) = publisher_and_subscriber("rules-cluster-ctl").await;
    let db = &node.db;
    let der = |id: &Identity, w: OwnCert| id.get(w).unwrap().cert.to_der().unwrap();

    let cluster = CtlCluster::of(db, "pub.example.test").await.unwrap();
    let f = ctl::build_ctl_in(&node.id, &CtlSigner::CallManager, &cluster, 1_800_000_000).unwrap();
    let list = trustlist::parse(&f).unwrap();
    list.verify(&f).unwrap();
    let recs: Vec<_> = list
        .plain_records()
        .map(|r| {
            (
                r.role.unwrap(),
                r.certificate.clone().unwrap(),
                r.dns_name.clone(),
                r.ip_address.map(|a| a.to_string()),
            )
        })
        .collect();
    let at = |n: &str, ip: &str| (Some(n.to_string()), Some(ip.to_string()));
    assert_eq!(
        recs.iter()
            .map(|(r, c, d, i)| (*r, c.clone(), (d.clone(), i.clone())))
            .collect::<Vec<_>>(),
        [
            (
                Role::Sast,
                der(&node.id, OwnCert::CallManager),
                (None, None)
            ),
            (
                Role::CcmTftp,
                der(&node.id, OwnCert::CallManager),
                at("pub.example.test", "10.0.0.1")
            ),
            (
                Role::CcmTftp,
                der(&sub_id, OwnCert::CallManager),
                at("sub1.example.test", "10.0.0.2")
            ),
            (Role::Capf, der(&node.id, OwnCert::Capf), (None, None)),
        ]
    );
    // The same bytes for the same cluster and time: every node serves the stored file.
    assert_eq!(
        ctl::build_ctl_in(&node.id, &CtlSigner::CallManager, &cluster, 1_800_000_000).unwrap(),
        f
    );
    // Built on the publisher only.
    let e = CtlCluster::of(db, "sub1.example.test").await.unwrap_err();
    assert!(
        matches!(&e, CtlError::NotPublisher { publisher, .. } if publisher == "pub.example.test"),
        "{e}"
    );
    assert!(e.to_string().contains("run the command there"), "{e}");

    // TVS on the publisher trusts the subscriber's certificates for their roles.
    let peers = db
        .node_certs()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.node != "pub.example.test")
        .map(|c| {
            (
                c.node.clone(),
                c.which.parse::<OwnCert>().unwrap(),
                openssl::x509::X509::from_pem(c.pem.as_bytes()).unwrap(),
            )
        })
        .collect();
    let ix = build_index(&Sources {
        own: node.id.all().map(|(w, c)| (w, c.cert.clone())).collect(),
        peers,
        ..Sources::default()
    });
    let e = ix.lookup(&der(&sub_id, OwnCert::Tvs)).unwrap();
    assert!(e.roles.contains(&Role::Tvs.code()));
    assert!(e.sources.contains("node sub1.example.test"));
    let e = ix.lookup(&der(&sub_id, OwnCert::CallManager)).unwrap();
    assert!(e.roles.contains(&Role::CcmTftp.code()) && e.roles.contains(&Role::Sast.code()));
    assert!(ix.lookup(&der(&node.id, OwnCert::Tvs)).is_some());
}

/// Logins: a wrong password and an unknown name get the same answer; five failures lock
/// the account (the lock grows), a lock hides even the right password, it lapses; a
/// disabled account is refused after its password was checked; success clears the count.
#[tokio::test]
async fn logins_are_counted_locked_and_cleared() {
    use phonetrust_rules::accounts::{self, LoginRefused, Role as AccountRole};
    let dir = phonetrust_testsupport::tempdir("rules-login");
    let db = phonetrust_store::Db::open(&phonetrust_store::db::default_url(dir.path()))
        .await
        .unwrap();
    let pw = "correct horse battery";
    let hash = accounts::hash_password(pw).unwrap();
    db.add_account("alice", "operator", &hash, 0).await.unwrap();
    assert_eq!(
        accounts::login(&db, "alice", pw, 10).await.unwrap(),
        AccountRole::Operator
    );
    assert_eq!(
        accounts::login(&db, "nobody", pw, 10).await.unwrap_err(),
        LoginRefused::Wrong
    );
    for i in 0..4 {
        assert_eq!(
            accounts::login(&db, "alice", "wrong password!", 20 + i)
                .await
                .unwrap_err(),
            LoginRefused::Wrong
        );
    }
    let locked = accounts::login(&db, "alice", "wrong password!", 30)
        .await
        .unwrap_err();
    assert_eq!(locked, LoginRefused::Locked(30 + accounts::FIRST_LOCK_SECS));
    assert!(locked.to_string().contains("too many failed logins"));
    // Locked: even the right password is refused until it lapses.
    assert!(matches!(
        accounts::login(&db, "alice", pw, 31).await.unwrap_err(),
        LoginRefused::Locked(_)
    ));
    assert_eq!(
        accounts::login(&db, "alice", pw, 200).await.unwrap(),
        AccountRole::Operator
    );
    assert_eq!(db.account("alice").await.unwrap().unwrap().failures, 0);
    assert_eq!(
        db.account("alice").await.unwrap().unwrap().last_login_at,
        200
    );
    db.set_account_disabled("alice", true).await.unwrap();
    assert_eq!(
        accounts::login(&db, "alice", pw, 300).await.unwrap_err(),
        LoginRefused::Disabled
    );
}
