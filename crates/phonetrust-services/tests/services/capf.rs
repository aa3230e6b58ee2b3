//! The CAPF server end to end over loopback TLS, with simulated phones: every operation,
//! every authentication mode, and every refusal, checked on the phone and in the store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::{FreshNode, now, phone};
use std::net::SocketAddr;
use std::pin::Pin;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use phonetrust_phonesim::{Generate, SimPhone, manufacturer_ca, mic};
use phonetrust_pki::profiles::{NodeIdentity, OwnCert};
use phonetrust_pki::{DistinguishedName, KeySpec, generate_key};
use phonetrust_proto::capf::{Command, Message, Reason};
use phonetrust_proto::capf_phone::{PhoneAuth, PhoneResult};
use phonetrust_proto::rand::OsRandom;
use phonetrust_services::capf::{CapfConfig, CapfServer};
use phonetrust_store::Db;
use phonetrust_store::devices::CapfChange;
use phonetrust_store::model::{AuthMode, CertOperation, KeyOrder, OpState, TrustStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Node {
    /// The node's data directory, removed with the node.
    _tmp: phonetrust_testsupport::TestDir,
    db: Db,
    data: phonetrust_store::layout::DataDir,
    capf: X509,
    addr: SocketAddr,
}

async fn node(tag: &str, cfg: CapfConfig) -> Node {
    let mut n = NodeIdentity::new(
        "pub.example.test",
        DistinguishedName {
            o: "Example Corp".into(),
            c: "NZ".into(),
            ..DistinguishedName::default()
        },
    );
    n.rsa_bits = 2048;
    let FreshNode { tmp, id, db, data } = FreshNode::new(&format!("capf-{tag}"), &n).await;
    let capf = id.get(OwnCert::Capf).unwrap().clone();
    let server = CapfServer::bind(
        db.clone(),
        capf.clone(),
        CapfConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..cfg
        },
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.follow_identity(data.clone(), std::time::Duration::from_millis(100)));
    tokio::spawn(server.run());
    Node {
        _tmp: tmp,
        db,
        data,
        capf: capf.cert,
        addr,
    }
}

async fn schedule(
    db: &Db,
    name: &str,
    op: CertOperation,
    auth: AuthMode,
    s: Option<&str>,
    order: KeyOrder,
) {
    if db.device(name).await.is_err() {
        db.add_devices(&[phone(name, None)], now()).await.unwrap();
    }
    db.set_capf(
        name,
        &CapfChange {
            operation: Some(op),
            auth_mode: Some(auth),
            auth_string: s.map(str::to_string),
            key_order: Some(order),
            ..CapfChange::default()
        },
        now(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_fetch_delete_with_every_authentication_mode() {
    let n = node("ops", CapfConfig::default()).await;
    let rsa = Generate { ec: true };

    // Null string, RSA: installed, recorded only with the phone's confirmation.
    let mut p = SimPhone::new("001122334455", "8845");
    schedule(
        &n.db,
        "SEP001122334455",
        CertOperation::Install,
        AuthMode::NullString,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, PhoneAuth::None, &rsa).await,
        PhoneResult::Installed
    );
    assert_eq!(p.status_messages, ["LSC: Installed"]);
    let lsc = p.state.lsc.clone().unwrap();
    assert!(
        phonetrust_proto::cert::verify_chain(&lsc.cert, &[], std::slice::from_ref(&n.capf), now())
            .is_ok()
    );
    let d = n.db.device("SEP001122334455").await.unwrap();
    assert_eq!(d.capf.status, "Upgrade Success");
    assert_eq!(d.capf.state, OpState::Success);
    assert_eq!(d.capf.operation, CertOperation::None);
    let md5 = phonetrust_proto::cert::md5_hex(&lsc.cert.to_der().unwrap());
    assert_eq!(d.md5hash.as_deref(), Some(md5.as_str()));
    let certs = n.db.device_certs("SEP001122334455").await.unwrap();
    assert_eq!(certs.len(), 1);
    assert!(certs[0].issuer.contains("CN=CAPF-"));

    // Nothing scheduled now.
    assert_eq!(
        p.capf(n.addr, &n.capf, PhoneAuth::None, &rsa).await,
        PhoneResult::NothingToDo
    );

    // Troubleshoot and delete, authenticated by the LSC.
    schedule(
        &n.db,
        "SEP001122334455",
        CertOperation::Troubleshoot,
        AuthMode::Lsc,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, PhoneAuth::Certificate { sudi: true }, &rsa)
            .await,
        PhoneResult::Fetched
    );
    assert_eq!(
        n.db.device("SEP001122334455").await.unwrap().capf.status,
        "Troubleshoot Success"
    );
    schedule(
        &n.db,
        "SEP001122334455",
        CertOperation::Delete,
        AuthMode::Lsc,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(
            n.addr,
            &n.capf,
            PhoneAuth::Certificate { sudi: false },
            &rsa
        )
        .await,
        PhoneResult::Deleted
    );
    assert!(p.state.lsc.is_none());
    let d = n.db.device("SEP001122334455").await.unwrap();
    assert_eq!(d.capf.status, "Delete Success");
    assert_eq!(d.md5hash, None);

    // Authentication string: wrong, then right. EC preferred, RSA backup, phone without EC.
    let mut q = SimPhone::new("0011223344AA", "7975");
    schedule(
        &n.db,
        "SEP0011223344AA",
        CertOperation::Install,
        AuthMode::AuthString,
        Some("123456"),
        KeyOrder::EcRsa,
    )
    .await;
    let r = q
        .capf(n.addr, &n.capf, PhoneAuth::Password("999999".into()), &rsa)
        .await;
    assert!(matches!(r, PhoneResult::Failed(_)), "{r:?}");
    assert_eq!(q.status_messages, ["LSC: Failed"]);
    let d = n.db.device("SEP0011223344AA").await.unwrap();
    assert_eq!(
        d.capf.status,
        "Upgrade Failed: Invalid Authentication String"
    );
    assert_eq!(d.capf.state, OpState::Failed);
    assert_eq!(
        q.capf(
            n.addr,
            &n.capf,
            PhoneAuth::Password("123456".into()),
            &Generate { ec: false }
        )
        .await,
        PhoneResult::Installed
    );
    let k = q.state.lsc.as_ref().unwrap().key.clone();
    assert_eq!(k.id(), openssl::pkey::Id::RSA, "fell back to RSA");

    // EC only, P-256.
    let mut e = SimPhone::new("0011223344EE", "8845");
    schedule(
        &n.db,
        "SEP0011223344EE",
        CertOperation::Install,
        AuthMode::NullString,
        None,
        KeyOrder::Ec,
    )
    .await;
    assert_eq!(
        e.capf(n.addr, &n.capf, PhoneAuth::None, &rsa).await,
        PhoneResult::Installed
    );
    assert_eq!(
        e.state.lsc.as_ref().unwrap().key.id(),
        openssl::pkey::Id::EC
    );

    // MIC: refused until the manufacturer CA is in CAPF-trust, then installed; MIC recorded.
    let mfg = manufacturer_ca("Example Manufacturing CA").unwrap();
    let mut m = SimPhone::new("0011AABBCCDD", "8845");
    let key = generate_key(KeySpec::Rsa(2048)).unwrap();
    m.state.mic = Some(mic(&mfg, "8845", &m.state.device, &key).unwrap());
    schedule(
        &n.db,
        "SEP0011AABBCCDD",
        CertOperation::Install,
        AuthMode::Mic,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert!(matches!(
        m.capf(n.addr, &n.capf, PhoneAuth::Certificate { sudi: true }, &rsa)
            .await,
        PhoneResult::Failed(_)
    ));
    let st = n.db.device("SEP0011AABBCCDD").await.unwrap().capf.status;
    assert!(st.starts_with("Upgrade Failed: Invalid MIC"), "{st}");
    n.db.trust_import(TrustStore::Capf, &mfg.cert.to_pem().unwrap(), now())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await; // trust cache TTL
    schedule(
        &n.db,
        "SEP0011AABBCCDD",
        CertOperation::Install,
        AuthMode::Mic,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        m.capf(n.addr, &n.capf, PhoneAuth::Certificate { sudi: true }, &rsa)
            .await,
        PhoneResult::Installed
    );
    let kinds: Vec<String> =
        n.db.device_certs("SEP0011AABBCCDD")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.kind.as_str().to_string())
            .collect();
    assert_eq!(kinds, ["MIC", "LSC"]);

    // An LSC from another CAPF: "Invalid LSC".
    let other = manufacturer_ca("Some Other CAPF").unwrap();
    let mut x = SimPhone::new("0011223344BB", "8845");
    let xk = generate_key(KeySpec::Rsa(1024)).unwrap();
    let params = phonetrust_pki::profiles::lsc("SEP0011223344BB", &other.cert, now() - 60, 30);
    let forged = phonetrust_pki::issue(&params, &xk, &other, &OsRandom).unwrap();
    x.state.lsc = Some(phonetrust_proto::cert::CertAndKey::new(forged, xk).unwrap());
    schedule(
        &n.db,
        "SEP0011223344BB",
        CertOperation::Troubleshoot,
        AuthMode::Lsc,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert!(matches!(
        x.capf(
            n.addr,
            &n.capf,
            PhoneAuth::Certificate { sudi: false },
            &rsa
        )
        .await,
        PhoneResult::Failed(_)
    ));
    let st = n.db.device("SEP0011223344BB").await.unwrap().capf.status;
    assert!(st.starts_with("Troubleshoot Failed: Invalid LSC"), "{st}");

    // Unknown phone.
    let mut u = SimPhone::new("00000000000D", "8845");
    assert!(matches!(
        u.capf(n.addr, &n.capf, PhoneAuth::None, &rsa).await,
        PhoneResult::Failed(_)
    ));
    assert_eq!(u.status_messages, ["LSC: Failed"]);

    // Operation completes by: passed.
    let mut t = SimPhone::new("00000000000E", "8845");
    n.db.add_devices(&[phone("SEP00000000000E", None)], now())
        .await
        .unwrap();
    n.db.set_capf(
        "SEP00000000000E",
        &CapfChange {
            operation: Some(CertOperation::Install),
            completes_by: Some(now() + 1),
            ..CapfChange::default()
        },
        now(),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(matches!(
        t.capf(n.addr, &n.capf, PhoneAuth::None, &rsa).await,
        PhoneResult::Failed(_)
    ));
    assert_eq!(
        n.db.device("SEP00000000000E").await.unwrap().capf.status,
        "Upgrade Failed: User Initiated Request Late/Timeout"
    );

    // Server unreachable: "LSC: Connection failed".
    let mut c = SimPhone::new("00000000000F", "8845");
    let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert!(matches!(
        c.capf(closed, &n.capf, PhoneAuth::None, &rsa).await,
        PhoneResult::Failed(_)
    ));
    assert_eq!(c.status_messages, ["LSC: Connection failed"]);
}

async fn raw_client(
    addr: SocketAddr,
    legacy: bool,
) -> tokio_openssl::SslStream<tokio::net::TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    if legacy {
        b.set_security_level(0);
        b.set_min_proto_version(Some(SslVersion::TLS1)).unwrap();
        b.set_max_proto_version(Some(SslVersion::TLS1)).unwrap();
        b.set_cipher_list("AES128-SHA:@SECLEVEL=0").unwrap();
    }
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .into_ssl("capf")
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut s).connect().await.unwrap();
    s
}

async fn read_msg(s: &mut tokio_openssl::SslStream<tokio::net::TcpStream>) -> Message {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).await.unwrap();
    let len = u16::from_be_bytes([head[6], head[7]]) as usize;
    let mut m = head.to_vec();
    m.resize(8 + len, 0);
    s.read_exact(&mut m[8..]).await.unwrap();
    Message::decode(&m).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tls_limits_and_malformed_input() {
    let n = node(
        "limits",
        CapfConfig {
            max_sessions: 1,
            retry_delay: 42,
            ..CapfConfig::default()
        },
    )
    .await;
    // TLS 1.0 with static-RSA AES128-SHA, as old firmware speaks it.
    let mut a = raw_client(n.addr, true).await;
    assert_eq!(a.ssl().version_str(), "TLSv1");
    assert_eq!(a.ssl().current_cipher().unwrap().name(), "AES128-SHA");
    let first = read_msg(&mut a).await;
    assert_eq!(first.command, Command::AuthRequest);
    // The one session slot is taken: the next phone gets RETRY_LATER, not a dropped line.
    let mut b = raw_client(n.addr, false).await;
    let m = read_msg(&mut b).await;
    assert_eq!(m.command, Command::RetryLater);
    assert_eq!(m.retry_delay(), Some(42));
    // A message over the cap ends the session with reason 7.
    let mut big = vec![0x55, 2];
    big.extend(first.session_id.to_be_bytes());
    big.extend(60_000u16.to_be_bytes());
    a.write_all(&big).await.unwrap();
    let m = read_msg(&mut a).await;
    assert_eq!(
        (m.command, m.reason()),
        (Command::EndSession, Some(Reason::Failure))
    );
    drop(a);
    // Garbage inside the cap: reason 7 too; session ids differ per connection.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut c = raw_client(n.addr, false).await;
    let m1 = read_msg(&mut c).await;
    assert_eq!(m1.command, Command::AuthRequest);
    assert_ne!(m1.session_id, first.session_id);
    let mut junk = vec![0x55, 2];
    junk.extend(m1.session_id.to_be_bytes());
    junk.extend([0u8, 3, 0xff, 0xff, 0xff]);
    c.write_all(&junk).await.unwrap();
    let m = read_msg(&mut c).await;
    assert_eq!(
        (m.command, m.reason()),
        (Command::EndSession, Some(Reason::Failure))
    );
}

/// A TLS 1.3 phone that leaves Nagle on: the server's first record after the handshake is
/// a session ticket, which acknowledges the phone's Finished at once, so the phone's next
/// write is not held for the server's delayed ACK. Then the session runs as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_nagle_on_is_answered_without_delay() {
    let n = node("nagle", CapfConfig::default()).await;
    let (mut s, tickets) = crate::tls13_client_with_nagle(n.addr).await;
    let first = read_msg(&mut s).await;
    assert_eq!(first.command, Command::AuthRequest);
    assert_eq!(
        tickets.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one ticket right after the handshake"
    );
}

/// `set cert regen CAPF` or an import replaces the CAPF certificate: the running server
/// presents the new one to new sessions within seconds, without a restart, and issues
/// LSCs with it; a phone that holds the new ITL (and so trusts only the new certificate)
/// enrols instead of failing with "LSC: Connection failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_capf_certificate_is_used_without_restart() {
    let n = node("follow", CapfConfig::default()).await;
    let new = phonetrust_proto::cert::CertAndKey::from_pem(&crate::v("pki/capf.pem")).unwrap();
    assert_ne!(n.capf.to_der().unwrap(), new.cert.to_der().unwrap());
    phonetrust_store::identity::replace(&n.data, OwnCert::Capf, &new).unwrap();
    let start = std::time::Instant::now();
    loop {
        let s = raw_client(n.addr, false).await;
        let presented = s.ssl().peer_certificate().unwrap().to_der().unwrap();
        if presented == new.cert.to_der().unwrap() {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the new CAPF certificate was not taken over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    schedule(
        &n.db,
        "SEP00112233AA01",
        CertOperation::Install,
        AuthMode::NullString,
        None,
        KeyOrder::Rsa,
    )
    .await;
    let mut p = SimPhone::new("00112233AA01", "8845");
    assert_eq!(
        p.capf(n.addr, &new.cert, PhoneAuth::None, &Generate { ec: true })
            .await,
        PhoneResult::Installed
    );
    let lsc = p.state.lsc.clone().unwrap();
    assert!(
        phonetrust_proto::cert::verify_chain(
            &lsc.cert,
            &[],
            std::slice::from_ref(&new.cert),
            now()
        )
        .is_ok(),
        "the LSC is issued by the new CAPF certificate"
    );
}

/// The operations and authentication modes the first test does not cover: install by the
/// LSC (an upgrade), troubleshoot and delete by MIC and by authentication string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_by_lsc_and_troubleshoot_delete_by_mic_and_string() {
    let n = node("modes", CapfConfig::default()).await;
    let mfg = phonetrust_testsupport::mfg_ca();
    // CAPF-trust before the first session (the server reads it then).
    n.db.trust_import(TrustStore::Capf, &mfg.cert.to_pem().unwrap(), now())
        .await
        .unwrap();
    let keys = Generate { ec: true };
    let dev = "SEP0011AABBCC10";
    let mut p = SimPhone::new("0011AABBCC10", "8845");
    let key = generate_key(KeySpec::Rsa(2048)).unwrap();
    p.state.mic = Some(mic(&mfg, "8845", dev, &key).unwrap());
    let by_cert = || PhoneAuth::Certificate { sudi: false };
    let status = |db: &Db| {
        let db = db.clone();
        async move { db.device(dev).await.unwrap().capf.status }
    };

    // Troubleshoot by MIC: the MIC is fetched and recorded as the MIC.
    schedule(
        &n.db,
        dev,
        CertOperation::Troubleshoot,
        AuthMode::Mic,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, by_cert(), &keys).await,
        PhoneResult::Fetched
    );
    assert_eq!(status(&n.db).await, "Troubleshoot Success");
    let certs = n.db.device_certs(dev).await.unwrap();
    assert!(
        certs
            .iter()
            .any(|c| c.kind == phonetrust_store::model::DeviceCertKind::Mic)
    );

    // Install by MIC, then upgrade by the LSC: a new LSC replaces the old one.
    schedule(
        &n.db,
        dev,
        CertOperation::Install,
        AuthMode::Mic,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, by_cert(), &keys).await,
        PhoneResult::Installed
    );
    let first = p.state.lsc.clone().unwrap().cert.to_der().unwrap();
    schedule(
        &n.db,
        dev,
        CertOperation::Install,
        AuthMode::Lsc,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, by_cert(), &keys).await,
        PhoneResult::Installed
    );
    let second = p.state.lsc.clone().unwrap().cert.to_der().unwrap();
    assert_ne!(first, second, "a new LSC");
    let md5 = phonetrust_proto::cert::md5_hex(&second);
    assert_eq!(
        n.db.device(dev).await.unwrap().md5hash.as_deref(),
        Some(md5.as_str())
    );

    // Troubleshoot and delete by authentication string: wrong string refused, right one
    // accepted.
    let pw = |s: &str| PhoneAuth::Password(s.into());
    schedule(
        &n.db,
        dev,
        CertOperation::Troubleshoot,
        AuthMode::AuthString,
        Some("24680"),
        KeyOrder::Rsa,
    )
    .await;
    assert!(matches!(
        p.capf(n.addr, &n.capf, pw("13579"), &keys).await,
        PhoneResult::Failed(_)
    ));
    assert_eq!(
        status(&n.db).await,
        "Troubleshoot Failed: Invalid Authentication String"
    );
    schedule(
        &n.db,
        dev,
        CertOperation::Troubleshoot,
        AuthMode::AuthString,
        Some("24680"),
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, pw("24680"), &keys).await,
        PhoneResult::Fetched
    );
    schedule(
        &n.db,
        dev,
        CertOperation::Delete,
        AuthMode::AuthString,
        Some("24680"),
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, pw("24680"), &keys).await,
        PhoneResult::Deleted
    );
    assert_eq!(status(&n.db).await, "Delete Success");
    assert!(p.state.lsc.is_none());

    // Delete by MIC (a phone whose LSC is gone still has its MIC).
    schedule(
        &n.db,
        dev,
        CertOperation::Install,
        AuthMode::NullString,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, PhoneAuth::None, &keys).await,
        PhoneResult::Installed
    );
    p.state.lsc = None; // as after a factory reset: only the MIC is left
    schedule(
        &n.db,
        dev,
        CertOperation::Delete,
        AuthMode::Mic,
        None,
        KeyOrder::Rsa,
    )
    .await;
    assert_eq!(
        p.capf(n.addr, &n.capf, by_cert(), &keys).await,
        PhoneResult::Deleted
    );
    assert_eq!(status(&n.db).await, "Delete Success");
    // No LSC left: the certHash phones are told falls back to the MIC.
    let mic_md5 =
        phonetrust_proto::cert::md5_hex(&p.state.mic.as_ref().unwrap().cert.to_der().unwrap());
    assert_eq!(
        n.db.device(dev).await.unwrap().md5hash.as_deref(),
        Some(mic_md5.as_str())
    );
}

/// Drive a session by hand up to the STORE_CERTIFICATE_REQUEST: AUTH_RESPONSE (null
/// string), KEY_GENERATE_RESPONSE with a fresh RSA key.
async fn to_store_request(
    addr: SocketAddr,
    device: &str,
) -> (tokio_openssl::SslStream<tokio::net::TcpStream>, u32) {
    let (mut s, sid, kg) = authenticate_as(addr, device, 3, Reason::Success).await;
    assert_eq!(kg.command, Command::KeyGenRequest);
    let key = generate_key(KeySpec::Rsa(2048)).unwrap();
    let spki = key.public_key_to_der().unwrap();
    s.write_all(&Message::key_gen_response(sid, &spki).encode().unwrap())
        .await
        .unwrap();
    let store = read_msg(&mut s).await;
    assert_eq!(store.command, Command::StoreCertRequest);
    (s, sid)
}

/// The phone refuses to store the LSC: nothing is recorded as issued, the status says
/// why, the phone is told the session failed. A commit that fails after the phone stored
/// the LSC: the phone is told the operation failed (END_SESSION 7), nothing is recorded.
/// Repeated authentication failures slow the address down (RETRY_LATER).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_refused_commit_failed_and_backoff() {
    let n = node(
        "refusals",
        CapfConfig {
            auth_failures_before_backoff: 2,
            ..CapfConfig::default()
        },
    )
    .await;
    let dev = "SEP0011AABBCC20";
    schedule(
        &n.db,
        dev,
        CertOperation::Install,
        AuthMode::NullString,
        None,
        KeyOrder::Rsa,
    )
    .await;

    // The phone answers STORE_CERTIFICATE_REQUEST with a failure.
    let (mut s, sid) = to_store_request(n.addr, dev).await;
    let refuse = Message::reason_only(Command::StoreCertResponse, sid, Reason::Failure);
    s.write_all(&refuse.encode().unwrap()).await.unwrap();
    let end = read_msg(&mut s).await;
    assert_eq!(
        (end.command, end.reason()),
        (Command::EndSession, Some(Reason::Failure))
    );
    let d = n.db.device(dev).await.unwrap();
    assert_eq!(d.capf.state, OpState::Failed);
    assert!(
        d.capf.status.starts_with("Upgrade Failed"),
        "{}",
        d.capf.status
    );
    assert_eq!(d.md5hash, None, "nothing recorded as issued");
    assert!(n.db.device_certs(dev).await.unwrap().is_empty());

    // The commit of the outcome fails (a trigger stands in for a full disk): the phone,
    // which stored the LSC, is told the operation failed.
    let url = phonetrust_store::db::default_url(n._tmp.path());
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TRIGGER full_disk BEFORE UPDATE ON device WHEN NEW.capf_state = 'success' \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(&mut c)
    .await
    .unwrap();
    schedule(
        &n.db,
        dev,
        CertOperation::Install,
        AuthMode::NullString,
        None,
        KeyOrder::Rsa,
    )
    .await;
    let (mut s, sid) = to_store_request(n.addr, dev).await;
    let ok = Message::reason_only(Command::StoreCertResponse, sid, Reason::Success);
    s.write_all(&ok.encode().unwrap()).await.unwrap();
    let end = read_msg(&mut s).await;
    assert_eq!(
        (end.command, end.reason()),
        (Command::EndSession, Some(Reason::Failure))
    );
    let d = n.db.device(dev).await.unwrap();
    assert_ne!(d.capf.state, OpState::Success);
    assert_eq!(
        d.md5hash, None,
        "an LSC counts as issued only once committed"
    );
    sqlx::raw_sql("DROP TRIGGER full_disk")
        .execute(&mut c)
        .await
        .unwrap();

    // Two wrong authentication strings from this address: the third session is slowed
    // down with RETRY_LATER instead of being authenticated.
    let mut p = SimPhone::new("0011AABBCC21", "8845");
    let keys = Generate { ec: true };
    schedule(
        &n.db,
        "SEP0011AABBCC21",
        CertOperation::Install,
        AuthMode::AuthString,
        Some("11223344"),
        KeyOrder::Rsa,
    )
    .await;
    for _ in 0..2 {
        let r = p
            .capf(n.addr, &n.capf, PhoneAuth::Password("0000".into()), &keys)
            .await;
        assert!(matches!(r, PhoneResult::Failed(_)), "{r:?}");
    }
    let r = p
        .capf(
            n.addr,
            &n.capf,
            PhoneAuth::Password("11223344".into()),
            &keys,
        )
        .await;
    assert!(matches!(r, PhoneResult::RetryLater(d) if d >= 10), "{r:?}");
}

/// AUTH_RESPONSE for `device` (protocol `version`): the stream, the session id, and the
/// server's next message.
async fn authenticate_as(
    addr: SocketAddr,
    device: &str,
    version: u8,
    reason: Reason,
) -> (
    tokio_openssl::SslStream<tokio::net::TcpStream>,
    u32,
    Message,
) {
    use phonetrust_proto::capf::Element;
    use phonetrust_proto::element::NulText;
    let mut s = raw_client(addr, false).await;
    let req = read_msg(&mut s).await;
    assert_eq!(req.command, Command::AuthRequest);
    let sid = req.session_id;
    let auth = Message::new(
        Command::AuthResponse,
        sid,
        vec![
            Element::Reason(reason),
            Element::Version(version),
            Element::Password(NulText::new("")),
            Element::DeviceName(NulText::new(device)),
        ],
    );
    s.write_all(&auth.encode().unwrap()).await.unwrap();
    let next = read_msg(&mut s).await;
    (s, sid, next)
}

/// Protocol errors found inside a session never just close the connection: each ends
/// with END_SESSION 7 and, for a phone the store knows, a failure status naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_inside_a_session_end_with_reason_7_and_a_status() {
    let n = node("protocol-errors", CapfConfig::default()).await;
    let weak = generate_key(KeySpec::Rsa(1024))
        .unwrap()
        .public_key_to_der()
        .unwrap();
    type Reply = Option<Box<dyn Fn(u32) -> Message>>;
    let cases: Vec<(&str, Reply, &str)> = vec![
        ("SEP0011AABBCC31", None, "protocol version 9"),
        ("SEP0011AABBCC36", None, "failure reason 7"),
        (
            "SEP0011AABBCC32",
            Some(Box::new(move |sid| Message::key_gen_response(sid, &weak))),
            "1024-bit key",
        ),
        (
            "SEP0011AABBCC33",
            Some(Box::new(|sid| {
                Message::key_gen_response(sid, b"\x30\x03abc")
            })),
            "unreadable public key",
        ),
        (
            "SEP0011AABBCC34",
            Some(Box::new(|sid| {
                Message::reason_only(Command::DeleteCertResponse, sid, Reason::Success)
            })),
            "unexpected",
        ),
        (
            "SEP0011AABBCC35",
            Some(Box::new(|sid| {
                Message::reason_only(Command::KeyGenResponse, sid, Reason::Failure)
            })),
            "could not generate a key",
        ),
    ];
    for (dev, reply, cause) in cases {
        schedule(
            &n.db,
            dev,
            CertOperation::Install,
            AuthMode::NullString,
            None,
            KeyOrder::Rsa,
        )
        .await;
        let (version, reason) = match cause {
            "protocol version 9" => (9, Reason::Success),
            "failure reason 7" => (3, Reason::Failure),
            _ => (3, Reason::Success),
        };
        let (mut s, sid, next) = authenticate_as(n.addr, dev, version, reason).await;
        let end = match reply {
            None => next,
            Some(f) => {
                assert_eq!(next.command, Command::KeyGenRequest, "{dev}");
                s.write_all(&f(sid).encode().unwrap()).await.unwrap();
                read_msg(&mut s).await
            }
        };
        assert_eq!(
            (end.command, end.reason()),
            (Command::EndSession, Some(Reason::Failure)),
            "{dev}: {cause}"
        );
        let d = n.db.device(dev).await.unwrap();
        assert_eq!(d.capf.state, OpState::Failed, "{dev}: {}", d.capf.status);
        assert!(
            d.capf.status.starts_with("Upgrade Failed") && d.capf.status.contains(cause),
            "{dev}: {}",
            d.capf.status
        );
    }
    // A DEVICE_NAME that is no phone's name: reason 7 as well (nothing to record).
    let (_s, _sid, end) = authenticate_as(n.addr, "bogus", 3, Reason::Success).await;
    assert_eq!(
        (end.command, end.reason()),
        (Command::EndSession, Some(Reason::Failure))
    );
}

/// Several sessions of one phone at once (a phone retrying while its old session is
/// open): one runs the operation, the others get RETRY_LATER — none is told the phone
/// does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_of_one_phone() {
    let n = node(
        "same-phone",
        CapfConfig {
            batch_delay: std::time::Duration::from_millis(20),
            ..CapfConfig::default()
        },
    )
    .await;
    let dev = "SEP0011AABBCC40";
    schedule(
        &n.db,
        dev,
        CertOperation::Install,
        AuthMode::NullString,
        None,
        KeyOrder::Rsa,
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let addr = n.addr;
        tasks.push(tokio::spawn(async move {
            let (s, _, m) = authenticate_as(addr, dev, 3, Reason::Success).await;
            (s, m)
        }));
    }
    let mut held = Vec::new();
    let (mut keygen, mut retry) = (0, 0);
    for t in tasks {
        let (s, m) = t.await.unwrap();
        match m.command {
            Command::KeyGenRequest => keygen += 1,
            Command::RetryLater => retry += 1,
            other => panic!("{other:?} {:?}", m.reason()),
        }
        held.push(s);
    }
    assert_eq!((keygen, retry), (1, 5));
}

/// REQUEST_IN_PROGRESS does not extend the key-generation deadline; a phone that keeps
/// sending it is given up when the deadline passes, with END-of-session status recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_progress_does_not_extend_the_key_generation_deadline() {
    let n = node(
        "keygen-deadline",
        CapfConfig {
            key_gen_timeout: std::time::Duration::from_secs(2),
            ..CapfConfig::default()
        },
    )
    .await;
    let dev = "SEP0011AABBCC41";
    schedule(
        &n.db,
        dev,
        CertOperation::Install,
        AuthMode::NullString,
        None,
        KeyOrder::Rsa,
    )
    .await;
    let (mut s, sid, m) = authenticate_as(n.addr, dev, 3, Reason::Success).await;
    assert_eq!(m.command, Command::KeyGenRequest);
    let t0 = std::time::Instant::now();
    let rip = Message::new(Command::RequestInProgress, sid, vec![])
        .encode()
        .unwrap();
    // One every 500 ms for up to 6 s.
    let mut closed = None;
    while t0.elapsed() < std::time::Duration::from_secs(6) {
        if s.write_all(&rip).await.is_err() {
            closed = Some(t0.elapsed());
            break;
        }
        let mut b = [0u8; 1];
        match tokio::time::timeout(std::time::Duration::from_millis(500), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(t0.elapsed());
                break;
            }
            _ => {}
        }
    }
    let at = closed.expect("the session was ended");
    assert!(at < std::time::Duration::from_secs(4), "{at:?}");
    let d = n.db.device(dev).await.unwrap();
    assert_eq!(d.capf.state, OpState::Failed, "{}", d.capf.status);
    assert!(
        d.capf
            .status
            .starts_with("Upgrade Failed: no message within"),
        "{}",
        d.capf.status
    );
}

/// TLS handshakes in progress are capped per address: connections that never finish
/// theirs do not take every slot, and a phone from another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_handshakes_are_capped_and_time_out() {
    let n = node(
        "handshakes",
        CapfConfig {
            max_handshakes_per_address: 4,
            handshake_timeout: std::time::Duration::from_secs(1),
            ..CapfConfig::default()
        },
    )
    .await;
    // Ten connections from 127.0.0.1 that send nothing.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(tokio::net::TcpStream::connect(n.addr).await.unwrap());
    }
    // Six of them are closed at once (over the cap), the other four after the deadline.
    let t0 = std::time::Instant::now();
    let mut closed_at = Vec::new();
    for mut c in silent {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(std::time::Duration::from_secs(4), c.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
        closed_at.push(t0.elapsed());
    }
    assert!(
        closed_at
            .iter()
            .all(|t| *t < std::time::Duration::from_secs(3))
    );
    // A phone from 127.0.0.2 meanwhile: its handshake and AUTH_REQUEST.
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .into_ssl("capf")
        .unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(n.addr).await.unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut s).connect().await.unwrap();
    assert_eq!(read_msg(&mut s).await.command, Command::AuthRequest);
}

/// Silent connections from several addresses that fill every handshake slot together
/// do not keep out a phone from another address: it takes a slot of the heaviest
/// address, whose oldest pending handshake is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_handshake_cap_makes_room_for_another_address() {
    let n = node(
        "handshakes-fair",
        CapfConfig {
            max_handshakes: 8,
            max_handshakes_per_address: 4,
            handshake_timeout: std::time::Duration::from_secs(30),
            ..CapfConfig::default()
        },
    )
    .await;
    let mut silent = Vec::new();
    for ip in ["127.0.0.3", "127.0.0.4"] {
        for _ in 0..4 {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            silent.push(sock.connect(n.addr).await.unwrap());
        }
    }
    // Every slot is taken (the handshakes have 30 s): the accept loop has seen them all
    // once a ninth connection from a full address is closed at once.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut extra = sock.connect(n.addr).await.unwrap();
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), extra.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    // A phone from 127.0.0.2: its handshake and AUTH_REQUEST, well inside the 30 s.
    let mut cb = SslConnector::builder(SslMethod::tls_client()).unwrap();
    cb.set_verify(SslVerifyMode::NONE);
    let ssl = cb
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .into_ssl("capf")
        .unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(n.addr).await.unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        Pin::new(&mut s).connect(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(read_msg(&mut s).await.command, Command::AuthRequest);
    // Exactly one of the silent connections was closed to make room.
    let mut closed = 0;
    for c in &mut silent {
        let r = tokio::time::timeout(std::time::Duration::from_millis(200), c.read(&mut b)).await;
        if matches!(r, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 1);
}

/// Authentication-string guessing: parallel guesses from one address are counted as
/// they are evaluated (the address is locked after ten phones' worth of failures, not
/// after all of them ran); a locked phone is told the true delay and may try again once
/// it has passed; the counts survive a restart of the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_counted_when_evaluated_and_survives_a_restart() {
    let n = node(
        "guessing",
        CapfConfig {
            auth_failures_before_backoff: 2,
            ..CapfConfig::default()
        },
    )
    .await;
    // 30 phones, each guessed once, all at once from 127.0.0.1 (address limit: 20).
    let names: Vec<String> = (0..30)
        .map(|i| format!("SEP0011AABB{:04X}", 0x100 + i))
        .collect();
    for name in &names {
        schedule(
            &n.db,
            name,
            CertOperation::Install,
            AuthMode::AuthString,
            Some("11223344"),
            KeyOrder::Rsa,
        )
        .await;
    }
    let mut tasks = Vec::new();
    for name in names.clone() {
        let addr = n.addr;
        tasks.push(tokio::spawn(async move {
            use phonetrust_proto::capf::Element;
            use phonetrust_proto::element::NulText;
            let mut s = raw_client(addr, false).await;
            let req = read_msg(&mut s).await;
            if req.command == Command::RetryLater {
                return Command::RetryLater;
            }
            let auth = Message::new(
                Command::AuthResponse,
                req.session_id,
                vec![
                    Element::Reason(Reason::Success),
                    Element::Version(3),
                    Element::Password(NulText::new("0000")),
                    Element::DeviceName(NulText::new(&name)),
                ],
            );
            s.write_all(&auth.encode().unwrap()).await.unwrap();
            read_msg(&mut s).await.command
        }));
    }
    let (mut failed, mut retry) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Command::EndSession => failed += 1,
            Command::RetryLater => retry += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(failed + retry, 30);
    // 20 evaluated (a worker thread or two may overlap), the rest locked out.
    assert!(failed <= 22, "{failed} guesses evaluated, {retry} refused");
    let stored = n.db.auth_failures(0).await.unwrap();
    assert!(
        stored
            .iter()
            .any(|f| f.key == "ip:127.0.0.1" && f.locked_until > 0),
        "{stored:?}"
    );

    // The counts survive a restart: a new server on the same database still refuses
    // this address.
    let capf = phonetrust_store::identity::load(&n.data)
        .unwrap()
        .get(OwnCert::Capf)
        .unwrap()
        .clone();
    let again = CapfServer::bind(
        n.db.clone(),
        capf,
        CapfConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            auth_failures_before_backoff: 2,
            ..CapfConfig::default()
        },
    )
    .await
    .unwrap();
    let addr2 = again.local_addr().unwrap();
    tokio::spawn(again.run());
    let mut s = raw_client(addr2, false).await;
    let m = read_msg(&mut s).await;
    assert_eq!(m.command, Command::RetryLater);
    let d = m.retry_delay().unwrap();
    assert!((1..=20).contains(&d), "delay {d}");
}

/// The delay RETRY_LATER gives a locked phone is the truth: once it has passed, the phone
/// is evaluated again, and the right string succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_later_delay_is_the_truth() {
    let n = node(
        "truthful",
        CapfConfig {
            auth_failures_before_backoff: 2,
            ..CapfConfig::default()
        },
    )
    .await;
    let dev = "SEP0011AABBCC50";
    schedule(
        &n.db,
        dev,
        CertOperation::Install,
        AuthMode::AuthString,
        Some("11223344"),
        KeyOrder::Rsa,
    )
    .await;
    let mut p = SimPhone::new("0011AABBCC50", "8845");
    let keys = Generate { ec: true };
    for _ in 0..2 {
        let r = p
            .capf(n.addr, &n.capf, PhoneAuth::Password("0000".into()), &keys)
            .await;
        assert!(matches!(r, PhoneResult::Failed(_)), "{r:?}");
    }
    let r = p
        .capf(
            n.addr,
            &n.capf,
            PhoneAuth::Password("11223344".into()),
            &keys,
        )
        .await;
    let PhoneResult::RetryLater(d) = r else {
        panic!("{r:?}")
    };
    assert!((9..=10).contains(&d), "delay {d}");
    tokio::time::sleep(std::time::Duration::from_secs(u64::from(d) + 1)).await;
    let r = p
        .capf(
            n.addr,
            &n.capf,
            PhoneAuth::Password("11223344".into()),
            &keys,
        )
        .await;
    assert!(matches!(r, PhoneResult::Installed), "{r:?}");
    // Authenticated: the phone's count is cleared.
    assert!(
        !n.db
            .auth_failures(0)
            .await
            .unwrap()
            .iter()
            .any(|f| f.key == format!("dev:{dev}")),
    );
}
