//! Hostile clients against TFTP and HTTP on loopback, each beside a well-behaved phone
//! (from another loopback address) that must still be served: requests that are never
//! acknowledged, `timeout=255`, floods over the per-address cap, write requests, ACKs
//! that keep a transfer alive past its deadline, symbolic links out of the static
//! directory, slowloris and idle keep-alive connections, downloads that stop reading.
//! Every loop is bounded in count and time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use phonetrust_phonesim::boot::{Fetch, http_get_from, tftp_get_from};
use phonetrust_pki::DistinguishedName;
use phonetrust_pki::profiles::NodeIdentity;
use phonetrust_proto::tftp::{ClientOptions, Packet};
use phonetrust_services::http::{HttpConfig, HttpServer};
use phonetrust_services::limits::Limiter;
use phonetrust_services::provision::{ProvisionConfig, Provisioning};
use phonetrust_services::tftp::{TftpConfig, TftpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::FreshNode;

const ATTACKER: [u8; 4] = [127, 0, 0, 1];
const PHONE: [u8; 4] = [127, 0, 0, 2];

struct Lab {
    _node: FreshNode,
    static_dir: std::path::PathBuf,
    outside: phonetrust_testsupport::TestDir,
    tftp: TftpServer,
    http: SocketAddr,
    http_conns: Limiter,
}

async fn lab(tag: &str, tftp: TftpConfig, http: HttpConfig) -> Lab {
    let n = NodeIdentity::new(
        "pub.example.test",
        DistinguishedName {
            o: "Example Corp".into(),
            ..DistinguishedName::default()
        },
    );
    let node = FreshNode::new(&format!("hostile-{tag}"), &n).await;
    let static_dir = node.tmp.path().join("tftp");
    std::fs::create_dir_all(&static_dir).unwrap();
    // 16 MB of firmware, and a secret outside the directory.
    std::fs::write(static_dir.join("firmware.loads"), vec![0x5a; 16 << 20]).unwrap();
    std::fs::write(static_dir.join("ring.raw"), b"ring ring").unwrap();
    let outside = phonetrust_testsupport::tempdir(&format!("hostile-{tag}-outside"));
    std::fs::write(outside.path().join("passwd"), b"root:x:0:0").unwrap();
    let prov = Provisioning::new(
        node.db.clone(),
        node.data.clone(),
        ProvisionConfig {
            static_dir: static_dir.clone(),
            refresh: Duration::from_millis(200),
        },
    )
    .await
    .unwrap();
    let tftp = TftpServer::start(
        prov.clone(),
        TftpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..tftp
        },
    )
    .unwrap();
    let http = HttpServer::bind_with(
        prov,
        HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..http
        },
    )
    .await
    .unwrap();
    let http_addr = http.local_addr().unwrap();
    let http_conns = http.limiter();
    tokio::spawn(http.run());
    Lab {
        _node: node,
        static_dir,
        outside,
        tftp,
        http: http_addr,
        http_conns,
    }
}

fn quick_tftp() -> TftpConfig {
    TftpConfig {
        timeout: Duration::from_millis(300),
        ..TftpConfig::default()
    }
}

/// A good phone on 127.0.0.2 downloads the ITL over TFTP and the ring tone over HTTP.
async fn phone_is_served(l: &Lab) {
    let t0 = Instant::now();
    let itl = tftp_get_from(
        IpAddr::from(PHONE),
        l.tftp.local_addr(),
        "ITLFile.tlv",
        ClientOptions::default(),
    )
    .await
    .expect("the phone is served over TFTP");
    assert!(!itl.is_empty());
    let ring = http_get_from(Some(IpAddr::from(PHONE)), l.http, "ring.raw")
        .await
        .expect("the phone is served over HTTP");
    assert_eq!(ring, b"ring ring");
    // Normal latency on loopback: well under a second (a generous bound, not a benchmark).
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rrq(name: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    Packet::Rrq(
        name.into(),
        "octet".into(),
        opts.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .encode()
}

/// Datagrams received on `s` within `for_`, with their source.
async fn drain(s: &UdpSocket, for_: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + for_;
    let mut buf = vec![0u8; 70_000];
    while out.len() < 10_000 {
        match tokio::time::timeout_at(end, s.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => out.push((buf[..n].to_vec(), from)),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn unacknowledged_requests_cost_one_block_twice_and_end() {
    let l = lab("unacked", quick_tftp(), HttpConfig::default()).await;
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::from(ATTACKER), 0))
        .await
        .unwrap();
    // 50 requests without options, and 50 asking timeout=255, never acknowledged.
    for i in 0..100 {
        let opts: &[(&str, &str)] = if i % 2 == 0 {
            &[]
        } else {
            &[("timeout", "255"), ("blksize", "1428")]
        };
        s.send_to(&rrq("firmware.loads", opts), l.tftp.local_addr())
            .await
            .unwrap();
    }
    let got = drain(&s, Duration::from_millis(1500)).await;
    // Each transfer sent its first datagram (block 1, or an OACK without timeout) at most
    // twice: one retransmission before a first ACK.
    assert!(got.len() <= 200, "{} datagrams for 100 requests", got.len());
    let payload: usize = got.iter().map(|(d, _)| d.len()).sum();
    let asked: usize = 50 * rrq("firmware.loads", &[]).len()
        + 50 * rrq("firmware.loads", &[("timeout", "255"), ("blksize", "1428")]).len();
    let factor = payload as f64 / asked as f64;
    assert!(factor < 40.0, "amplification {factor:.1}x");
    for (d, _) in &got {
        if let Ok(Packet::OAck(o)) = Packet::decode(d) {
            assert!(
                !o.iter().any(|(k, _)| k == "timeout"),
                "timeout=255 granted: {o:?}"
            );
        }
    }
    // All gone within the retransmission budget, not minutes.
    wait_until("transfers given up", 5, || l.tftp.transfers() == 0).await;
    phone_is_served(&l).await;
}

#[tokio::test]
async fn a_flood_over_the_per_address_cap_is_answered_busy() {
    let l = lab(
        "flood",
        TftpConfig {
            max_per_address: 4,
            timeout: Duration::from_secs(2),
            ..TftpConfig::default()
        },
        HttpConfig::default(),
    )
    .await;
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::from(ATTACKER), 0))
        .await
        .unwrap();
    for _ in 0..20 {
        s.send_to(&rrq("firmware.loads", &[]), l.tftp.local_addr())
            .await
            .unwrap();
    }
    let got = drain(&s, Duration::from_millis(500)).await;
    let busy = got
        .iter()
        .filter(|(d, _)| {
            matches!(Packet::decode(d), Ok(Packet::Error(0, m)) if m.starts_with("Server busy"))
        })
        .count();
    assert_eq!(busy, 16, "{got:?}");
    assert_eq!(l.tftp.transfers(), 4);
    // The phone, from another address, is served while the attacker holds its 4.
    phone_is_served(&l).await;
}

#[tokio::test]
async fn write_requests_get_access_violation() {
    let l = lab("wrq", quick_tftp(), HttpConfig::default()).await;
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::from(ATTACKER), 0))
        .await
        .unwrap();
    s.send_to(
        b"\x00\x02SEP001122334455.cnf.xml\x00octet\x00",
        l.tftp.local_addr(),
    )
    .await
    .unwrap();
    let got = drain(&s, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 1);
    assert!(
        matches!(Packet::decode(&got[0].0), Ok(Packet::Error(2, _))),
        "{:?}",
        Packet::decode(&got[0].0)
    );
}

#[tokio::test]
async fn a_transfer_kept_alive_by_duplicate_acks_ends_at_its_deadline() {
    let l = lab(
        "deadline",
        TftpConfig {
            timeout: Duration::from_millis(300),
            transfer_deadline: Duration::from_secs(1),
            min_rate: u64::MAX,
            ..TftpConfig::default()
        },
        HttpConfig::default(),
    )
    .await;
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::from(ATTACKER), 0))
        .await
        .unwrap();
    s.send_to(&rrq("firmware.loads", &[]), l.tftp.local_addr())
        .await
        .unwrap();
    let mut buf = vec![0u8; 2000];
    let (_, tid) = s.recv_from(&mut buf).await.unwrap();
    // ACK block 1 once, then only duplicates, every 100 ms, for up to 3 s.
    s.send_to(&[0, 4, 0, 1], tid).await.unwrap();
    let t0 = Instant::now();
    let mut ended = None;
    while t0.elapsed() < Duration::from_secs(3) {
        s.send_to(&[0, 4, 0, 1], tid).await.unwrap();
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(100), s.recv_from(&mut buf)).await
            && let Ok(Packet::Error(_, m)) = Packet::decode(&buf[..n])
        {
            ended = Some((t0.elapsed(), m));
            break;
        }
    }
    let (at, msg) = ended.expect("the transfer ended with an error");
    assert_eq!(msg, "Transfer took too long");
    assert!(at < Duration::from_millis(2500), "{at:?}");
    wait_until("slot given back", 3, || l.tftp.transfers() == 0).await;
}

#[tokio::test]
async fn a_window_is_not_resent_for_each_partial_ack() {
    let l = lab("partial", quick_tftp(), HttpConfig::default()).await;
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::from(ATTACKER), 0))
        .await
        .unwrap();
    s.send_to(
        &rrq(
            "firmware.loads",
            &[("blksize", "512"), ("windowsize", "64")],
        ),
        l.tftp.local_addr(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 2000];
    let (_, tid) = s.recv_from(&mut buf).await.unwrap();
    s.send_to(&[0, 4, 0, 0], tid).await.unwrap();
    let window = drain(&s, Duration::from_millis(200)).await;
    assert_eq!(window.len(), 64);
    // Twenty ACKs of one block each: at most one block for each.
    for b in 1..=20u16 {
        s.send_to(&Packet::Ack(b).encode(), tid).await.unwrap();
    }
    let after = drain(&s, Duration::from_millis(200)).await;
    assert!(after.len() <= 20, "{} blocks for 20 ACKs", after.len());
}

#[tokio::test]
async fn static_files_never_leave_the_static_directory() {
    let l = lab("symlink", quick_tftp(), HttpConfig::default()).await;
    std::os::unix::fs::symlink(l.outside.path(), l.static_dir.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(
        l.outside.path().join("passwd"),
        l.static_dir.join("passwd.raw"),
    )
    .unwrap();
    // A link that stays inside is followed.
    std::os::unix::fs::symlink(
        l.static_dir.join("ring.raw"),
        l.static_dir.join("alias.raw"),
    )
    .unwrap();
    for name in ["dirlink/passwd", "passwd.raw"] {
        let t = tftp_get_from(
            IpAddr::from(PHONE),
            l.tftp.local_addr(),
            name,
            ClientOptions::default(),
        )
        .await;
        assert!(matches!(t, Err(Fetch::NotFound)), "TFTP {name}: {t:?}");
        let h = http_get_from(Some(IpAddr::from(PHONE)), l.http, name).await;
        assert!(matches!(h, Err(Fetch::NotFound)), "HTTP {name}: {h:?}");
    }
    let a = http_get_from(Some(IpAddr::from(PHONE)), l.http, "alias.raw")
        .await
        .unwrap();
    assert_eq!(a, b"ring ring");
}

#[tokio::test]
async fn slowloris_and_idle_connections_are_closed() {
    let l = lab(
        "slowloris",
        quick_tftp(),
        HttpConfig {
            header_timeout: Duration::from_secs(1),
            ..HttpConfig::default()
        },
    )
    .await;
    // Six connections dripping a request head one byte every 200 ms.
    let mut drips = Vec::new();
    for _ in 0..6 {
        let mut c = TcpStream::connect(l.http).await.unwrap();
        drips.push(tokio::spawn(async move {
            let t0 = Instant::now();
            for b in b"GET /ring.raw HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if c.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                if t0.elapsed() > Duration::from_secs(8) {
                    break;
                }
            }
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut rest)).await;
            t0.elapsed()
        }));
    }
    // An idle keep-alive connection after one answered request.
    let mut idle = TcpStream::connect(l.http).await.unwrap();
    idle.write_all(b"GET /ring.raw HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    phone_is_served(&l).await;
    let t0 = Instant::now();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut all))
        .await
        .expect("the idle connection is closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    for d in drips {
        let held = d.await.unwrap();
        assert!(held < Duration::from_secs(5), "slowloris held {held:?}");
    }
    wait_until("connections released", 3, || l.http_conns.in_use() == 0).await;
}

#[tokio::test]
async fn connections_over_the_per_address_cap_get_503() {
    let l = lab(
        "httpcap",
        quick_tftp(),
        HttpConfig {
            max_per_address: 3,
            ..HttpConfig::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(l.http).await.unwrap());
    }
    wait_until("three held", 3, || l.http_conns.in_use() == 3).await;
    let mut fourth = TcpStream::connect(l.http).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), fourth.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("Retry-After"), "{text}");
    phone_is_served(&l).await;
}

/// Silent connections from several addresses that fill every HTTP slot together do not
/// keep out a phone from another address: a silent connection of the heaviest address
/// is closed to make room; a connection that is being served never is.
#[tokio::test]
async fn silent_connections_make_room_for_another_address() {
    let l = lab(
        "httpfair",
        quick_tftp(),
        HttpConfig {
            max_connections: 6,
            max_per_address: 3,
            ..HttpConfig::default()
        },
    )
    .await;
    let connect = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        let to = l.http;
        async move {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(ip, 0)).unwrap();
            sock.connect(to).await.unwrap()
        }
    };
    // A download in progress from 127.0.0.3 (never read), and five silent connections.
    let mut busy = connect("127.0.0.3").await;
    busy.write_all(b"GET /firmware.loads HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut silent = Vec::new();
    // 127.0.0.4 holds the most (three), strictly: which address loses a connection is
    // then not a tie.
    for ip in [
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.4",
        "127.0.0.4",
        "127.0.0.5",
    ] {
        silent.push(connect(ip).await);
    }
    wait_until("six held", 10, || l.http_conns.in_use() == 6).await;
    phone_is_served(&l).await;
    // The download still flows.
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), busy.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Silent ones of 127.0.0.4 (the heaviest) were closed, one per phone connection. (A
    // generous deadline per connection: under a loaded machine the close may take a
    // while to be seen; one still open costs the whole wait.)
    let mut closed = 0;
    for c in &mut silent[1..4] {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await;
        if matches!(r, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no silent connection was closed");
}

#[tokio::test]
async fn a_download_that_stops_reading_is_ended() {
    let l = lab(
        "stall",
        quick_tftp(),
        HttpConfig {
            write_stall: Duration::from_secs(1),
            ..HttpConfig::default()
        },
    )
    .await;
    // 16 MB requested, nothing read.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut c = sock.connect(l.http).await.unwrap();
    c.write_all(b"GET /firmware.loads HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_until("connection open", 3, || l.http_conns.in_use() == 1).await;
    phone_is_served(&l).await;
    // The server gives up on it after the stall limit.
    wait_until("stalled download ended", 6, || l.http_conns.in_use() == 0).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut got)).await;
    assert!(
        got.len() < 16 << 20,
        "the whole file went to a client that did not read"
    );
}
