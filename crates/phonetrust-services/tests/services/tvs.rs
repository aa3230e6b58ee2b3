//! The TVS server over loopback: a node made of the reference vectors' keys answers the
//! transcript's request byte for byte to an independent client (`openssl s_client`, TLS
//! 1.0 `AES128-SHA`); the simulated phone's client gets roles for every kind of trusted
//! certificate; the cache follows imports and a new CTL without a restart; hostile input
//! ends only the offending connection.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::{FreshNode, now, v};
use phonetrust_store::ctlfile::CtlChange;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use openssl::x509::X509;
use phonetrust_phonesim::tvs::TvsConnection;
use phonetrust_phonesim::{CapfConnector, PhoneTls};
use phonetrust_pki::DistinguishedName;
use phonetrust_pki::profiles::NodeIdentity;
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::codec::unhex;
use phonetrust_proto::tlv::HashAlg;
use phonetrust_proto::trustlist::{self, CertForm, Record, Role, TrustListParams};
use phonetrust_services::tvs::{TvsConfig, TvsServer};
use phonetrust_store::Db;
use phonetrust_store::model::TrustStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cert(rel: &str) -> X509 {
    X509::from_pem(&v(rel)).unwrap()
}

struct Node {
    /// The node's data directory, removed with the node.
    _tmp: phonetrust_testsupport::TestDir,
    db: Db,
    tvs: Arc<TvsServer>,
    addr: SocketAddr,
}

/// A node whose own certificates are the vectors' (CallManager, CallManager-ECDSA, CAPF,
/// TVS, ITLRecovery), with its TVS server on loopback.
async fn node(tag: &str) -> Node {
    node_with(
        tag,
        TvsConfig {
            read_timeout: Duration::from_secs(2),
            ..TvsConfig::default()
        },
    )
    .await
}

async fn node_with(tag: &str, cfg: TvsConfig) -> Node {
    let n = NodeIdentity::new("pub.example.test", DistinguishedName::default());
    let FreshNode { tmp, data, db, .. } = FreshNode::new(&format!("tvs-{tag}"), &n).await;
    phonetrust_testsupport::use_vector_identity(&data);
    let tvs = TvsServer::bind(
        db.clone(),
        data,
        TvsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..cfg
        },
    )
    .await
    .unwrap();
    let addr = tvs.local_addr();
    tokio::spawn(tvs.clone().run());
    Node {
        _tmp: tmp,
        db,
        tvs,
        addr,
    }
}

fn phone_tls() -> CapfConnector {
    CapfConnector::trusting(&[cert("pki/tvs.crt")], PhoneTls::Modern).unwrap()
}

async fn ask(n: &Node, der: &[u8]) -> (bool, Vec<Role>, Option<u32>) {
    let mut c = TvsConnection::connect(n.addr, &phone_tls(), "CP-8845-SEP0011AABBCCDD")
        .await
        .unwrap();
    let a = c.verify(der).await.unwrap();
    (a.trusted, a.roles, a.ttl)
}

/// The transcript's first exchange through `openssl s_client` speaking TLS 1.0 with
/// `AES128-SHA`, as the oldest phones do: the server's answer is the transcript's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_client_gets_the_transcript_answer_over_tls10() {
    if !phonetrust_testsupport::have_tool("openssl", "version", "openssl") {
        return;
    }
    let n = node("sclient").await;
    let log = String::from_utf8(v("transcripts/tvs.log")).unwrap();
    let mut lines = log
        .lines()
        .filter(|l| l.starts_with("tvsc ") || l.starts_with("tvsd "));
    let request = unhex(lines.next().unwrap().split_once(' ').unwrap().1).unwrap();
    let answer = unhex(lines.next().unwrap().split_once(' ').unwrap().1).unwrap();
    let addr = n.addr;
    let want = answer.len();
    let got = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-tls1",
                "-cipher",
                "AES128-SHA:@SECLEVEL=0",
                "-quiet",
                "-ign_eof",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.as_mut().unwrap().write_all(&request).unwrap();
        child.stdin.as_mut().unwrap().flush().unwrap();
        let mut buf = vec![0u8; want];
        let r = child.stdout.as_mut().unwrap().read_exact(&mut buf);
        let _ = child.kill();
        let _ = child.wait();
        r.map(|()| buf)
    })
    .await
    .unwrap()
    .expect("an answer over TLS 1.0 AES128-SHA");
    assert_eq!(
        got, answer,
        "the transcript's VERIFY_RESPONSE (SAST + CCM+TFTP, TTL 86400)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_of_every_source_and_the_cache_follows_changes() {
    let n = node("roles").await;
    let der = |rel: &str| cert(rel).to_der().unwrap();
    // Own certificates.
    assert_eq!(
        ask(&n, &der("pki/callmanager.crt")).await,
        (true, vec![Role::Sast, Role::CcmTftp], Some(86_400))
    );
    assert_eq!(
        ask(&n, &der("pki/capf.crt")).await,
        (true, vec![Role::Capf], Some(86_400))
    );
    assert_eq!(ask(&n, &der("pki/tvs.crt")).await.1, vec![Role::Tvs]);
    assert_eq!(
        ask(&n, &der("pki/itlrecovery.crt")).await.1,
        vec![Role::Sast]
    );
    assert_eq!(
        ask(&n, &der("pki/callmanager-ecdsa.crt")).await.1,
        vec![Role::Tftp]
    );
    // Unknown: the manufacturer CA, a phone's MIC, garbage.
    assert_eq!(ask(&n, &der("pki/mfgca.crt")).await, (false, vec![], None));
    assert!(!ask(&n, b"not a certificate").await.0);

    // Phone-SAST-trust (a security token's certificate) and CallManager-trust: known
    // after the next refresh, without a restart.
    n.db.trust_import(TrustStore::PhoneSast, &v("pki/mfgca.crt"), now())
        .await
        .unwrap();
    assert!(n.tvs.refresh_now().await.unwrap());
    assert_eq!(
        ask(&n, &der("pki/mfgca.crt")).await,
        (true, vec![Role::Sast], Some(86_400))
    );
    n.db.trust_import(
        TrustStore::CallManager,
        &v("pki/mic-SEP0011AABBCCDD.crt"),
        now(),
    )
    .await
    .unwrap();
    assert!(n.tvs.refresh_now().await.unwrap());
    assert_eq!(
        ask(&n, &der("pki/mic-SEP0011AABBCCDD.crt")).await.1,
        vec![Role::Ccm]
    );
    assert!(!n.tvs.refresh_now().await.unwrap(), "nothing changed");

    // A CTL's records count with their roles.
    let other = CertAndKey::from_pem(&v("pki/lsc/SEP001122AABBCC.pem")).unwrap();
    let cm = CertAndKey::from_pem(&v("pki/callmanager.pem")).unwrap();
    let ctl = trustlist::build(
        &TrustListParams::new("CTLFile.tlv", HashAlg::Sha1, 1),
        &cm,
        &[Record::from_cert(Role::AppServer, &other.cert, CertForm::Full).unwrap()],
    )
    .unwrap();
    n.db.set_cluster_security(CtlChange::Write(&ctl), None, now())
        .await
        .unwrap();
    assert!(n.tvs.refresh_now().await.unwrap());
    assert_eq!(
        ask(&n, &other.cert.to_der().unwrap()).await.1,
        vec![Role::AppServer]
    );
    // Deleting the CTL forgets its records.
    n.db.set_cluster_security(CtlChange::Delete, None, now())
        .await
        .unwrap();
    assert!(n.tvs.refresh_now().await.unwrap());
    assert!(!ask(&n, &other.cert.to_der().unwrap()).await.0);
}

/// A TLS 1.3 client that leaves Nagle on (as the independent clients and most embedded
/// stacks do) gets a record from the server right after the handshake (a session ticket,
/// which acknowledges its Finished), before it has asked anything: so its request is sent
/// at once instead of waiting for the server's delayed ACK (~40 ms). Then it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_nagle_on_is_answered_without_delay() {
    use std::sync::atomic::Ordering;
    let n = node("nagle").await;
    let (mut s, tickets) = crate::tls13_client_with_nagle(n.addr).await;
    // Nothing asked yet: the read sees the ticket, then no data until the deadline.
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_millis(500), s.read(&mut b)).await;
    assert!(r.is_err(), "TVS sends no data unasked");
    assert_eq!(
        tickets.load(Ordering::SeqCst),
        1,
        "one ticket after the handshake"
    );
    let req = phonetrust_proto::tvs::Message::verify_request(
        1,
        "CP-8845-SEP0011AABBCCDD",
        &cert("pki/capf.crt").to_der().unwrap(),
    )
    .encode()
    .unwrap();
    s.write_all(&req).await.unwrap();
    use phonetrust_proto::tvs::{HEADER_LEN, Header, Message};
    let mut m = vec![0u8; HEADER_LEN];
    s.read_exact(&mut m).await.unwrap();
    let len = Header::peek(&m).unwrap().unwrap().message_len();
    m.resize(len, 0);
    s.read_exact(&mut m[HEADER_LEN..]).await.unwrap();
    let answer = Message::decode(&m).unwrap();
    assert_eq!(answer.session_id, 1);
}

/// Several requests on one connection, a request split across writes, then hostile input:
/// each ends only its own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_and_hostile_input() {
    let n = node("hostile").await;
    let cm = cert("pki/callmanager.crt").to_der().unwrap();
    let mut c = TvsConnection::connect(n.addr, &phone_tls(), "CP-8845-SEP0011AABBCCDD")
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(c.verify(&cm).await.unwrap().trusted);
    }

    // Raw TLS connections sending hostile bytes: what came back, and whether the server
    // closed the connection (false: still open when this client gave up after 5 s).
    async fn raw(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
        let ctx = phone_tls();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let ssl = openssl::ssl::Ssl::new(ctx.context()).unwrap();
        let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
        std::pin::Pin::new(&mut tls).connect().await.unwrap();
        tls.write_all(bytes).await.unwrap();
        tls.flush().await.unwrap();
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
            .await
            .is_ok();
        (out, closed)
    }
    let closed_unanswered = (Vec::new(), true);
    // Declares a 65 KB body: closed at once without an answer (not left to time out).
    assert_eq!(
        raw(
            n.addr,
            &unhex("570101000000000 1ffff".replace(' ', "").as_str()).unwrap()
        )
        .await,
        closed_unanswered
    );
    // Not TVS.
    assert_eq!(
        raw(n.addr, b"GET / HTTP/1.0\r\n\r\n").await,
        closed_unanswered
    );
    // A server message sent by a "phone".
    assert_eq!(
        raw(n.addr, &unhex("5701020000000001000407000101").unwrap()).await,
        closed_unanswered
    );
    // Half a request, then silence: closed after the read deadline.
    let req = phonetrust_proto::tvs::Message::verify_request(9, "CP-8845-SEP0011AABBCCDD", &cm)
        .encode()
        .unwrap();
    assert_eq!(raw(n.addr, &req[..20]).await, closed_unanswered);
    // The server still answers (the first connection has meanwhile been closed for
    // idling past the read deadline).
    assert!(c.verify(&cm).await.is_err());
    let mut c = TvsConnection::connect(n.addr, &phone_tls(), "CP-8845-SEP0011AABBCCDD")
        .await
        .unwrap();
    assert!(c.verify(&cm).await.unwrap().trusted);
    // A whole request on a fresh connection is answered.
    let (answer, _) = raw(n.addr, &req).await;
    assert_eq!(
        phonetrust_proto::tvs::Message::decode(&answer)
            .unwrap()
            .session_id,
        9
    );
}

/// Connections that drip a byte at a time hold a session only until the request
/// deadline (the drip does not extend it); connections waiting for a slot are closed
/// after a bounded wait; a phone is served once the drippers are gone, and connections
/// over the per-address cap are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_connections_do_not_hold_tvs() {
    let n = node_with(
        "drip",
        TvsConfig {
            read_timeout: Duration::from_secs(2),
            max_sessions: 2,
            max_per_address: 4,
            slot_wait: Duration::from_secs(1),
            ..TvsConfig::default()
        },
    )
    .await;
    let cm = cert("pki/callmanager.crt").to_der().unwrap();
    let req = phonetrust_proto::tvs::Message::verify_request(9, "CP-8845-SEP0011AABBCCDD", &cm)
        .encode()
        .unwrap();
    // Two sessions dripping one byte every 300 ms (a request would take minutes).
    let mut drips = Vec::new();
    for _ in 0..2 {
        let ctx = phone_tls();
        let tcp = tokio::net::TcpStream::connect(n.addr).await.unwrap();
        let ssl = openssl::ssl::Ssl::new(ctx.context()).unwrap();
        let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
        std::pin::Pin::new(&mut tls).connect().await.unwrap();
        let req = req.clone();
        drips.push(tokio::spawn(async move {
            let t0 = std::time::Instant::now();
            for b in req {
                if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
                    break;
                }
                let mut one = [0u8; 1];
                match tokio::time::timeout(Duration::from_millis(300), tls.read(&mut one)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    _ => {}
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            t0.elapsed()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third connection finds no slot: closed within the slot wait, not left queued.
    let t0 = std::time::Instant::now();
    let mut waiting = tokio::net::TcpStream::connect(n.addr).await.unwrap();
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    for d in drips {
        let held = d.await.unwrap();
        assert!(
            held < Duration::from_secs(4),
            "a dripping connection held {held:?}"
        );
    }
    // Over the per-address cap (4): the fifth idle connection is closed at once.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(n.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = tokio::net::TcpStream::connect(n.addr).await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(500), fifth.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (trusted, _, _) = ask(&n, &cm).await;
    assert!(trusted);
}

/// Silent connections from several addresses that fill every handshake slot together do
/// not keep out a phone from another address: the oldest of the heaviest address gives
/// way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_handshake_cap_makes_room_for_another_address() {
    let n = node_with(
        "handshakes-fair",
        TvsConfig {
            max_handshakes: 6,
            max_handshakes_per_address: 3,
            handshake_timeout: Duration::from_secs(30),
            ..TvsConfig::default()
        },
    )
    .await;
    let connect = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let to = n.addr;
        async move {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(ip, 0)).unwrap();
            sock.connect(to).await.unwrap()
        }
    };
    let mut silent = Vec::new();
    for ip in [
        "127.0.0.3",
        "127.0.0.3",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.4",
        "127.0.0.4",
    ] {
        silent.push(connect(ip).await);
    }
    // Every slot taken: a further connection from a full address is closed at once.
    let mut extra = connect("127.0.0.4").await;
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    // The phone on 127.0.0.2 is answered, well inside the silent ones' 30 s.
    let cm = cert("pki/callmanager.crt").to_der().unwrap();
    let mut c = tokio::time::timeout(
        Duration::from_secs(5),
        TvsConnection::connect_from(
            Some("127.0.0.2".parse().unwrap()),
            n.addr,
            &phone_tls(),
            "CP-8845-SEP0011AABBCCDD",
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(c.verify(&cm).await.unwrap().trusted);
    let mut closed = 0;
    for s in &mut silent {
        let r = tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await;
        if matches!(r, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 1);
}

/// In a cluster TVS trusts every node's published certificates for their roles, and a
/// node's regenerated certificate replaces the old one at the next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodes_published_certificates_are_trusted() {
    use phonetrust_pki::profiles::OwnCert;
    use phonetrust_rules::cluster::{self, NewNode};
    use phonetrust_store::identity;
    use phonetrust_store::layout::DataDir;
    let n = node("peers").await;
    let peer = |tag: &str| {
        let d = phonetrust_testsupport::tempdir(tag);
        let id = identity::create(
            &DataDir::new(d.path()),
            &NodeIdentity::new("sub1.example.test", DistinguishedName::default()),
            now() - 60,
            &phonetrust_proto::rand::OsRandom,
        )
        .unwrap();
        (d, id)
    };
    let (_d1, first) = peer("tvs-peer-1");
    let me = identity::load(&DataDir::new(n._tmp.path())).unwrap();
    let sub = NewNode {
        name: "sub1.example.test",
        host: "127.0.0.2",
        services: None,
    };
    cluster::define_node(
        &n.db,
        Some(("pub.example.test", "127.0.0.1")),
        &me,
        &sub,
        now(),
    )
    .await
    .unwrap();
    cluster::publish_identity(&n.db, "sub1.example.test", &first, now())
        .await
        .unwrap();
    assert!(n.tvs.refresh_now().await.unwrap());
    let der = |id: &identity::Identity, w: OwnCert| id.get(w).unwrap().cert.to_der().unwrap();
    assert_eq!(
        ask(&n, &der(&first, OwnCert::Tvs)).await,
        (true, vec![Role::Tvs], Some(86_400))
    );
    assert_eq!(
        ask(&n, &der(&first, OwnCert::CallManager)).await.1,
        vec![Role::Sast, Role::CcmTftp]
    );
    // The subscriber regenerates: its new CallManager is vouched for, the old one not.
    let (_d2, second) = peer("tvs-peer-2");
    cluster::publish_identity(&n.db, "sub1.example.test", &second, now())
        .await
        .unwrap();
    assert!(n.tvs.refresh_now().await.unwrap());
    assert!(ask(&n, &der(&second, OwnCert::CallManager)).await.0);
    assert!(!ask(&n, &der(&first, OwnCert::CallManager)).await.0);
}
