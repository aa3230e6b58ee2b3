//! Provisioning over loopback: TFTP and HTTP serving every file kind and every refusal,
//! TFTP option negotiation and loss handling, `curl` as an independent client, the
//! encrypted-config boot end to end (partial config → CAPF → decrypted config), and ITL
//! rollover with `utils itl reset localkey`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::{FreshNode, now, phone};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use phonetrust_phonesim::boot::{BootOptions, BootResult, Fetch, Transport, fetch};
use phonetrust_phonesim::{Generate, SimPhone};
use phonetrust_pki::DistinguishedName;
use phonetrust_pki::profiles::{NodeIdentity, OwnCert};
use phonetrust_proto::rand::OsRandom;
use phonetrust_proto::tftp::{ClientOptions, Packet};
use phonetrust_proto::trustlist::{self, Role};
use phonetrust_services::capf::{CapfConfig, CapfServer};
use phonetrust_services::http::HttpServer;
use phonetrust_services::provision::{ProvisionConfig, Provisioning};
use phonetrust_services::tftp::{TftpConfig, TftpServer};
use phonetrust_store::devices::{CapfChange, DeviceChange};
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::{AuthMode, CertOperation};
use phonetrust_store::{Db, identity};
use tokio::net::UdpSocket;

struct Node {
    /// The node's data directory, removed with the node.
    _tmp: phonetrust_testsupport::TestDir,
    db: Db,
    data: DataDir,
    prov: Arc<Provisioning>,
    tftp: SocketAddr,
    http: SocketAddr,
    capf: SocketAddr,
    static_dir: std::path::PathBuf,
}

async fn node(tag: &str) -> Node {
    let n = NodeIdentity::new(
        "pub.example.test",
        DistinguishedName {
            o: "Example Corp".into(),
            ..DistinguishedName::default()
        },
    );
    let FreshNode { tmp, data, id, db } = FreshNode::new(&format!("prov-{tag}"), &n).await;
    let static_dir = tmp.path().join("tftp");
    std::fs::create_dir_all(static_dir.join("firmware")).unwrap();
    let prov = Provisioning::new(
        db.clone(),
        data.clone(),
        ProvisionConfig {
            static_dir: static_dir.clone(),
            refresh: Duration::from_millis(200),
        },
    )
    .await
    .unwrap();
    tokio::spawn(prov.clone().watch());
    let tftp = TftpServer::start(
        prov.clone(),
        TftpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            timeout: Duration::from_millis(300),
            ..TftpConfig::default()
        },
    )
    .unwrap();
    let http = HttpServer::bind(prov.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http_addr = http.local_addr().unwrap();
    tokio::spawn(http.run());
    let capf = CapfServer::bind(
        db.clone(),
        id.get(OwnCert::Capf).unwrap().clone(),
        CapfConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..CapfConfig::default()
        },
    )
    .await
    .unwrap();
    let capf_addr = capf.local_addr().unwrap();
    tokio::spawn(capf.run());
    Node {
        _tmp: tmp,
        db,
        data,
        prov,
        tftp: tftp.local_addr(),
        http: http_addr,
        capf: capf_addr,
        static_dir,
    }
}

async fn add(db: &Db, name: &str, profile: &str) {
    db.add_devices(&[phone(name, Some(profile))], now())
        .await
        .unwrap();
}

async fn schedule_install(db: &Db, name: &str) {
    db.set_capf(
        name,
        &CapfChange {
            operation: Some(CertOperation::Install),
            auth_mode: Some(AuthMode::NullString),
            ..CapfChange::default()
        },
        now(),
    )
    .await
    .unwrap();
}

fn both(n: &Node) -> [Transport; 2] {
    [
        Transport::Tftp(n.tftp, ClientOptions::default()),
        Transport::Http(n.http),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_kind_and_every_refusal_over_tftp_and_http() {
    let n = node("kinds").await;
    add(&n.db, "SEP001122334455", "Standard Non-Secure Profile").await;
    add(&n.db, "SEP0011223344AA", "Standard Authenticated Profile").await;
    add(&n.db, "SEP0011223344EE", "Standard Encrypted Profile").await;
    std::fs::write(
        n.static_dir.join("firmware/sip88xx.loads"),
        vec![7u8; 100_000],
    )
    .unwrap();
    std::fs::write(
        n.static_dir.join("Ringlist.xml"),
        b"<CiscoIPPhoneRingList/>",
    )
    .unwrap();
    let id = identity::load(&n.data).unwrap();
    let cm = id.get(OwnCert::CallManager).unwrap().cert.clone();

    for via in both(&n) {
        // ITL: signed by CallManager, the reference layout.
        let itl = fetch(via, "ITLFile.tlv").await.unwrap();
        let t = trustlist::parse(&itl).unwrap();
        assert_eq!(t.verify(&itl).unwrap(), 0, "{via:?}");
        let roles: Vec<_> = t.plain_records().map(|r| r.role.unwrap()).collect();
        assert_eq!(
            roles,
            [
                Role::Sast,
                Role::Sast,
                Role::CcmTftp,
                Role::Capf,
                Role::Tvs,
                Role::Tftp
            ]
        );
        assert_eq!(
            t.records[0].record.x509().unwrap().to_der().unwrap(),
            cm.to_der().unwrap()
        );
        assert_eq!(fetch(via, "ITLSEP001122334455.tlv").await.unwrap(), itl);
        assert_eq!(
            fetch(via, "ITLSEP00112233FFFF.tlv").await,
            Err(Fetch::NotFound),
            "unknown phone"
        );
        assert_eq!(
            fetch(via, "CTLFile.tlv").await,
            Err(Fetch::NotFound),
            "not in mixed mode"
        );

        // Non-secure: plain and signed full config.
        let xml = fetch(via, "SEP001122334455.cnf.xml").await.unwrap();
        let s = String::from_utf8(xml.clone()).unwrap();
        assert!(
            s.contains("<deviceSecurityMode>1</deviceSecurityMode>"),
            "{s}"
        );
        assert!(s.contains("<processNodeName>pub.example.test</processNodeName>"));
        assert!(s.contains("<port>2445</port>"));
        let sgn = fetch(via, "SEP001122334455.cnf.xml.sgn").await.unwrap();
        let sf = phonetrust_proto::sgn::SignedFile::parse(&sgn).unwrap();
        sf.verify_with_cert(&cm).unwrap();
        assert_eq!(sf.body(), xml.as_slice());
        let auth = fetch(via, "SEP0011223344AA.cnf.xml").await.unwrap();
        assert!(
            String::from_utf8(auth)
                .unwrap()
                .contains("<deviceSecurityMode>2</deviceSecurityMode>")
        );

        // Encrypted profile: no plain config, a partial signed config with an empty hash,
        // no .enc.sgn until CAPF knows the phone's key.
        assert_eq!(
            fetch(via, "SEP0011223344EE.cnf.xml").await,
            Err(Fetch::NotFound)
        );
        let partial = fetch(via, "SEP0011223344EE.cnf.xml.sgn").await.unwrap();
        let body = phonetrust_proto::sgn::SignedFile::parse(&partial)
            .unwrap()
            .body()
            .to_vec();
        let f = phonetrust_proto::devconfig::facts(&body).unwrap();
        assert!(!f.full && f.encr_config && f.cert_hash.is_empty(), "{f:?}");
        assert_eq!(f.capf, Some(("pub.example.test".into(), 3804)));
        assert_eq!(
            fetch(via, "SEP0011223344EE.cnf.xml.enc.sgn").await,
            Err(Fetch::NotFound)
        );

        // Unknown phones, static files, traversal.
        for name in [
            "SEP00112233FFFF.cnf.xml",
            "SEP00112233FFFF.cnf.xml.sgn",
            "SEP00112233FFFF.cnf.xml.enc.sgn",
        ] {
            assert_eq!(fetch(via, name).await, Err(Fetch::NotFound), "{name}");
        }
        assert_eq!(
            fetch(via, "firmware/sip88xx.loads").await.unwrap(),
            vec![7u8; 100_000]
        );
        assert_eq!(
            fetch(via, "Ringlist.xml").await.unwrap(),
            b"<CiscoIPPhoneRingList/>"
        );
        for bad in [
            "../phonetrust.db",
            "/etc/passwd",
            "firmware/../../phonetrust.db",
            "identity/CAPF.pem",
            ".hidden",
            "nothing-here",
        ] {
            assert_eq!(
                fetch(via, bad).await,
                Err(Fetch::NotFound),
                "{bad} over {via:?}"
            );
        }
    }

    // A CTL, once there is one, is served as it is; one in the static directory is not
    // the cluster's CTL and is never served.
    std::fs::write(n.static_dir.join("CTLFile.tlv"), b"stray file").unwrap();
    n.prov.refresh_now().await.unwrap();
    for via in both(&n) {
        assert_eq!(fetch(via, "CTLFile.tlv").await, Err(Fetch::NotFound));
    }
    n.db.set_cluster_security(
        phonetrust_store::ctlfile::CtlChange::Write(b"ctl bytes"),
        None,
        now(),
    )
    .await
    .unwrap();
    n.prov.refresh_now().await.unwrap();
    for via in both(&n) {
        assert_eq!(fetch(via, "CTLFile.tlv").await.unwrap(), b"ctl bytes");
        assert_eq!(
            fetch(via, "CTLSEP001122334455.tlv").await.unwrap(),
            b"ctl bytes"
        );
    }

    // HTTP headers as the seeds show them.
    let out = std::process::Command::new("curl")
        .args([
            "-si",
            &format!("http://{}/SEP001122334455.cnf.xml.sgn", n.http),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(head.contains("content-length: "), "{head}");

    // A profile change shows in the next download (no restart).
    n.db.update_device(
        "SEP001122334455",
        &DeviceChange {
            profile: Some("Standard Encrypted Profile".into()),
            ..DeviceChange::default()
        },
        now(),
    )
    .await
    .unwrap();
    assert_eq!(
        fetch(Transport::Http(n.http), "SEP001122334455.cnf.xml").await,
        Err(Fetch::NotFound)
    );
}

/// One raw TFTP exchange: send `rrq`, return the server's first answer and its port.
async fn raw_rrq(server: SocketAddr, rrq: &[u8]) -> (UdpSocket, Vec<u8>, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(rrq, server).await.unwrap();
    let mut buf = vec![0u8; 70_000];
    let (k, from) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(k);
    (s, buf, from)
}

async fn recv(s: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 70_000];
    match tokio::time::timeout(wait, s.recv_from(&mut buf)).await {
        Ok(Ok((k, _))) => {
            buf.truncate(k);
            Some(buf)
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_options_loss_duplicates_and_errors() {
    let n = node("tftp").await;
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(n.static_dir.join("big.bin"), &body).unwrap();

    // Option negotiation: blksize 512/1428/8192, windowsize, tsize — through our client.
    for (blk, win) in [
        (512, None),
        (1428, None),
        (8192, None),
        (1428, Some(4)),
        (512, Some(16)),
    ] {
        let opts = ClientOptions {
            blksize: Some(blk),
            windowsize: win,
            tsize: true,
            max_size: 1 << 20,
        };
        let got = fetch(Transport::Tftp(n.tftp, opts), "big.bin")
            .await
            .unwrap();
        assert_eq!(got, body, "blksize {blk} window {win:?}");
    }

    // The OACK carries what was asked, tsize with the real size.
    let rrq = Packet::Rrq(
        "big.bin".into(),
        "octet".into(),
        vec![
            ("blksize".into(), "8192".into()),
            ("tsize".into(), "0".into()),
            ("windowsize".into(), "4".into()),
            ("timeout".into(), "1".into()),
        ],
    )
    .encode();
    let (s, first, port) = raw_rrq(n.tftp, &rrq).await;
    match Packet::decode(&first).unwrap() {
        Packet::OAck(o) => {
            assert!(o.contains(&("blksize".into(), "8192".into())), "{o:?}");
            assert!(o.contains(&("tsize".into(), "50000".into())), "{o:?}");
            assert!(o.contains(&("windowsize".into(), "4".into())), "{o:?}");
            assert!(o.contains(&("timeout".into(), "1".into())), "{o:?}");
        }
        other => panic!("expected OACK, got {other:?}"),
    }
    // Lost ACK of the OACK: the server retransmits it.
    let again = recv(&s, Duration::from_secs(3))
        .await
        .expect("OACK retransmitted");
    assert!(matches!(Packet::decode(&again).unwrap(), Packet::OAck(_)));
    s.send_to(&Packet::Ack(0).encode(), port).await.unwrap();
    // A window of 4 blocks arrives.
    let mut blocks = Vec::new();
    while blocks.len() < 4 {
        let p = recv(&s, Duration::from_secs(3)).await.expect("data");
        if let Packet::Data(b, d) = Packet::decode(&p).unwrap() {
            assert_eq!(d.len(), 8192);
            blocks.push(b);
        }
    }
    assert_eq!(blocks, [1, 2, 3, 4]);
    // ACK 4 twice (a duplicate): the next window is sent once, not twice. Everything
    // that arrives is collected until 400 ms of silence (the negotiated retransmission
    // timeout is 1 s), at most 16 packets: a window sent twice shows as 5, 6, 7, 5, ...
    s.send_to(&Packet::Ack(4).encode(), port).await.unwrap();
    s.send_to(&Packet::Ack(4).encode(), port).await.unwrap();
    let mut seen = Vec::new();
    while let Some(p) = recv(&s, Duration::from_millis(400)).await {
        match Packet::decode(&p).unwrap() {
            Packet::Data(b, _) => seen.push(b),
            other => panic!("unexpected {other:?}"),
        }
        if seen.len() >= 16 {
            break;
        }
    }
    // 50000 bytes / 8192: blocks 5, 6 and 7 (the last, short), each once.
    assert_eq!(seen, [5, 6, 7], "no Sorcerer's Apprentice duplicates");
    drop(s);

    // Errors: not found, write refused, traversal.
    let (_, e, _) = raw_rrq(
        n.tftp,
        &Packet::Rrq("nothing".into(), "octet".into(), vec![]).encode(),
    )
    .await;
    assert_eq!(
        Packet::decode(&e).unwrap(),
        Packet::Error(1, "File not found".into())
    );
    let (_, e, _) = raw_rrq(
        n.tftp,
        &Packet::Wrq("x".into(), "octet".into(), vec![]).encode(),
    )
    .await;
    assert!(
        matches!(Packet::decode(&e).unwrap(), Packet::Error(..)),
        "write refused"
    );
    assert!(!n.static_dir.join("x").exists());
    let (_, e, _) = raw_rrq(
        n.tftp,
        &Packet::Rrq("../phonetrust.db".into(), "octet".into(), vec![]).encode(),
    )
    .await;
    assert_eq!(
        Packet::decode(&e).unwrap(),
        Packet::Error(1, "File not found".into())
    );

    // An independent client: curl's TFTP, default and large blocks.
    for extra in [&[][..], &["--tftp-blksize", "8192"][..]] {
        let out = std::process::Command::new("curl")
            .args(extra)
            .args(["-s", &format!("tftp://{}/big.bin", n.tftp)])
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {extra:?}: {:?}", out.status);
        assert_eq!(out.stdout, body, "curl {extra:?}");
    }
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("tftp://{}/ITLFile.tlv", n.tftp)])
        .output()
        .unwrap();
    assert!(
        trustlist::parse(&out.stdout)
            .unwrap()
            .verify(&out.stdout)
            .is_ok()
    );
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("tftp://{}/no-such-file", n.tftp)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(68), "curl: TFTP file not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_config_boot_end_to_end() {
    let n = node("e2e").await;
    add(&n.db, "SEP0011AABBCC01", "Standard Encrypted Profile").await;
    schedule_install(&n.db, "SEP0011AABBCC01").await;
    for (i, via) in both(&n).into_iter().enumerate() {
        if i == 1 {
            // Second round over HTTP: a fresh phone with another MAC.
            add(&n.db, "SEP0011AABBCC02", "Standard Encrypted Profile").await;
            schedule_install(&n.db, "SEP0011AABBCC02").await;
        }
        let mac = format!("0011AABBCC0{}", i + 1);
        let dev = format!("SEP{mac}");
        let mut phone = SimPhone::new(&mac, "8845");
        let r = phone
            .boot(BootOptions {
                via,
                capf_addr: Some(n.capf),
                keys: &Generate { ec: false },
                tvs_addr: None,
            })
            .await;
        let (expected, _, md5) = n.prov.config_xml(&dev).await.unwrap();
        match r {
            BootResult::Configured { xml, encrypted } => {
                assert!(encrypted);
                assert_eq!(
                    xml,
                    expected.as_bytes(),
                    "the phone decrypted the generated XML"
                );
            }
            BootResult::Failed(e) => panic!("{e}: {:?}", phone.status_messages),
        }
        let lsc = phone.state.lsc.as_ref().expect("LSC installed");
        let mine = phonetrust_proto::cert::md5_hex(&lsc.cert.to_der().unwrap());
        assert_eq!(md5.as_deref(), Some(mine.as_str()));
        let tag = if i == 0 { "TFTP" } else { "HTTP" };
        let msgs = phone.status_messages.join("\n");
        for m in [
            format!("ITL{dev}.tlv({tag})"),
            "Trust List Updated".to_string(),
            format!("{dev}.cnf.xml.sgn({tag})"),
            "LSC: Installed".to_string(),
            format!("{dev}.cnf.xml.enc.sgn({tag})"),
        ] {
            assert!(msgs.contains(&m), "missing '{m}' in:\n{msgs}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn itl_rollover_and_reset_localkey() {
    let n = node("roll").await;
    add(&n.db, "SEP001122334455", "Standard Non-Secure Profile").await;
    let via = Transport::Http(n.http);
    let mut phone = SimPhone::new("001122334455", "8845");
    phone.update_itl(via).await.unwrap();
    assert!(
        phone
            .status_messages
            .contains(&"Trust List Updated".to_string())
    );

    // CallManager regenerated: the new ITL is signed by a key the phone's ITL does not
    // list; the phone refuses it and keeps the old one.
    phonetrust_store::own::regenerate(&n.data, &n.db, OwnCert::CallManager, true, now(), &OsRandom)
        .await
        .unwrap();
    n.prov.refresh_now().await.unwrap();
    let old = phone.itl.clone();
    let e = phone.update_itl(via).await.unwrap_err();
    assert!(e.contains("does not list"), "{e}");
    assert_eq!(phone.itl, old);
    // This phone knows no TVS server yet (it never had a config), so it cannot ask.
    assert_eq!(
        phone.status_messages.last().unwrap(),
        "Trust List Update Failed: no TVS server to verify the signer"
    );

    // utils itl reset localkey: signed by ITLRecovery, which the old ITL lists.
    n.db.set_param(phonetrust_store::params::ITL_SIGNER, "1", now())
        .await
        .unwrap();
    n.prov.refresh_now().await.unwrap();
    phone.update_itl(via).await.unwrap();
    let t = trustlist::parse(phone.itl.as_ref().unwrap()).unwrap();
    let id = identity::load(&n.data).unwrap();
    let rec = id.get(OwnCert::ItlRecovery).unwrap().cert.to_der().unwrap();
    assert_eq!(
        t.records[0].record.x509().unwrap().to_der().unwrap(),
        rec,
        "signed by ITLRecovery"
    );

    // And back: the CallManager-signed ITL is accepted, its signer being listed now.
    n.db.set_param(phonetrust_store::params::ITL_SIGNER, "0", now())
        .await
        .unwrap();
    n.prov.refresh_now().await.unwrap();
    phone.update_itl(via).await.unwrap();
    let t = trustlist::parse(phone.itl.as_ref().unwrap()).unwrap();
    let cm = id.get(OwnCert::CallManager).unwrap().cert.to_der().unwrap();
    assert_eq!(t.records[0].record.x509().unwrap().to_der().unwrap(), cm);

    // A config signed by the new CallManager verifies against the new ITL.
    let r = phone
        .boot(BootOptions {
            via,
            capf_addr: Some(n.capf),
            keys: &Generate { ec: false },
            tvs_addr: None,
        })
        .await;
    assert!(
        matches!(
            r,
            BootResult::Configured {
                encrypted: false,
                ..
            }
        ),
        "{r:?}"
    );
}

/// Issue 14.9: a phone whose recorded certificate has an EC key cannot get an encrypted
/// config; the refusal (logged, the phone sees "File not found") names the phone and the
/// cause, not an OpenSSL error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ec_certificate_gets_no_encrypted_config_and_the_cause_is_said() {
    use phonetrust_pki::{CertParams, KeySpec, generate_key, self_signed};
    use phonetrust_services::provision::NotServed;
    use phonetrust_store::model::{DeviceCertKind, OpState};
    let n = node("ec-enc").await;
    add(&n.db, "SEP001122334455", "Standard Encrypted Profile").await;
    let key = generate_key(KeySpec::EcP256).unwrap();
    let p = CertParams::new(
        DistinguishedName {
            cn: "SEP001122334455".into(),
            ..DistinguishedName::default()
        },
        now() - 60,
        30,
    );
    let cert = self_signed(&p, &key, &OsRandom).unwrap();
    let rec = phonetrust_store::devices::device_cert(DeviceCertKind::Lsc, &cert, now()).unwrap();
    n.db.record_capf_result(
        "SEP001122334455",
        OpState::Success,
        "Upgrade Success",
        std::slice::from_ref(&rec),
        false,
        now(),
    )
    .await
    .unwrap();
    match n.prov.open("SEP001122334455.cnf.xml.enc.sgn").await {
        Err(NotServed::Internal(file, why)) => {
            assert_eq!(file, "SEP001122334455.cnf.xml.enc.sgn");
            assert!(
                why.contains("SEP001122334455's certificate has no RSA key")
                    && why.contains("--key-order rsa"),
                "{why}"
            );
        }
        other => panic!("expected a refusal naming the cause, got {other:?}"),
    }
}

/// The `processNodeName`s of a config's call manager group, in member order.
fn call_managers(xml: &str) -> Vec<String> {
    let Some(group) = xml
        .split("<callManagerGroup>")
        .nth(1)
        .and_then(|g| g.split("</callManagerGroup>").next())
    else {
        return Vec::new();
    };
    group
        .split("<processNodeName>")
        .skip(1)
        .filter_map(|p| p.split("</processNodeName>").next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_list_the_phones_call_manager_group_and_follow_its_changes() {
    use phonetrust_rules::cluster::{self, NewNode};
    use phonetrust_rules::groups;
    use phonetrust_store::groups::Placement;
    let n = node("groups").await;
    add(&n.db, "SEP001122334455", "Standard Non-Secure Profile").await;
    add(&n.db, "SEP0011223344AA", "Standard Non-Secure Profile").await;
    let id = identity::load(&n.data).unwrap();
    let me = Some(("pub.example.test", "pub.example.test"));
    for (name, host) in [
        ("sub1.example.test", "10.0.0.2"),
        ("sub2.example.test", "10.0.0.3"),
    ] {
        let nn = NewNode {
            name,
            host,
            services: None,
        };
        cluster::define_node(&n.db, me, &id, &nn, now())
            .await
            .unwrap();
    }
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    groups::define_group(
        &n.db,
        "East",
        &names(&["sub2.example.test", "sub1.example.test"]),
        now(),
    )
    .await
    .unwrap();
    groups::define_pool(&n.db, "Branch", "East", now())
        .await
        .unwrap();
    groups::place_phone(
        &n.db,
        "SEP0011223344AA",
        &Placement {
            pool: Some("Branch".into()),
            group: None,
        },
    )
    .await
    .unwrap();

    let tvs = |xml: &[u8]| -> Vec<String> {
        phonetrust_proto::devconfig::facts(xml)
            .unwrap()
            .tvs
            .into_iter()
            .map(|(h, p)| {
                assert_eq!(p, 2445);
                h
            })
            .collect()
    };
    // The refresh that follows a cluster change (200 ms here, 1 s in serve).
    let settle = || tokio::time::sleep(Duration::from_millis(700));
    settle().await;
    for via in both(&n) {
        let d = fetch(via, "SEP001122334455.cnf.xml").await.unwrap();
        let dx = String::from_utf8(d.clone()).unwrap();
        assert_eq!(
            call_managers(&dx),
            names(&["pub.example.test", "10.0.0.2", "10.0.0.3"]),
            "the Default group: {via:?}"
        );
        assert_eq!(tvs(&d), call_managers(&dx), "the same nodes as TVS servers");
        let a = fetch(via, "SEP0011223344AA.cnf.xml").await.unwrap();
        let ax = String::from_utf8(a.clone()).unwrap();
        assert_eq!(call_managers(&ax), names(&["10.0.0.3", "10.0.0.2"]));
        assert_eq!(tvs(&a), names(&["10.0.0.3", "10.0.0.2"]));
        assert_eq!(
            phonetrust_proto::devconfig::facts(&a).unwrap().capf,
            Some(("pub.example.test".into(), 3804)),
            "no CAPF in the group: the publisher's"
        );
    }
    // A group change reaches the configs without a restart; a node without TVS stays a
    // call manager but is not a TVS server.
    cluster::set_node(
        &n.db,
        None,
        &id,
        "sub1.example.test",
        None,
        Some(cluster::Services::parse("tftp").unwrap()),
        0,
    )
    .await
    .unwrap();
    groups::set_group(
        &n.db,
        "East",
        &names(&["sub1.example.test", "pub.example.test", "sub2.example.test"]),
    )
    .await
    .unwrap();
    settle().await;
    let a = fetch(Transport::Http(n.http), "SEP0011223344AA.cnf.xml")
        .await
        .unwrap();
    let ax = String::from_utf8(a.clone()).unwrap();
    assert_eq!(
        call_managers(&ax),
        names(&["10.0.0.2", "pub.example.test", "10.0.0.3"])
    );
    assert_eq!(tvs(&a), names(&["pub.example.test", "10.0.0.3"]));
    let sgn = fetch(Transport::Http(n.http), "SEP0011223344AA.cnf.xml.sgn")
        .await
        .unwrap();
    assert_eq!(
        phonetrust_proto::sgn::SignedFile::parse(&sgn)
            .unwrap()
            .body(),
        a.as_slice(),
        "the signed config follows too (not a stale cache)"
    );
}

/// A phone given several TFTP servers (DHCP option 150) passes over one that does not
/// answer and boots from the next, over TFTP and over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_fails_over_to_the_next_tftp_server() {
    let n = node("failover").await;
    add(&n.db, "SEP001122334455", "Standard Non-Secure Profile").await;
    // Nothing listens on these (a node that is down).
    let dead_tcp = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead_udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let opts = ClientOptions::default();
    for servers in [
        vec![Transport::Http(dead_tcp), Transport::Http(n.http)],
        vec![
            Transport::Tftp(dead_udp, opts),
            Transport::Tftp(n.tftp, opts),
        ],
    ] {
        let mut phone = SimPhone::new("001122334455", "8845");
        let (r, used) = phone
            .boot_from(
                &servers,
                BootOptions {
                    via: servers[0],
                    capf_addr: None,
                    keys: &Generate { ec: false },
                    tvs_addr: None,
                },
            )
            .await;
        assert!(matches!(r, BootResult::Configured { .. }), "{r:?}");
        assert_eq!(used, Some(1), "booted from the second server");
        assert!(
            phone.status_messages.iter().any(
                |m| m.contains("Timeout : CTLFile.tlv") && m.contains("trying the next server")
            ),
            "{:?}",
            phone.status_messages
        );
    }
    // With every server down the boot fails, naming the last one.
    let mut phone = SimPhone::new("001122334455", "8845");
    let (r, used) = phone
        .boot_from(
            &[Transport::Http(dead_tcp)],
            BootOptions {
                via: Transport::Http(dead_tcp),
                capf_addr: None,
                keys: &Generate { ec: false },
                tvs_addr: None,
            },
        )
        .await;
    assert!(
        matches!(&r, BootResult::Failed(e) if e.contains("did not answer")),
        "{r:?}"
    );
    assert_eq!(used, None);
}
