//! `phonetrust bench probe`: the hostile-input and resource probe of issue 15 rerun at
//! full scale against a `phonetrust serve` with the default limits (per-address caps
//! kept), on loopback. Each attack comes from 127.0.0.1 (or from many 127.0.x.y
//! addresses where the probe spread its load) while a well-behaved phone on 127.0.0.2
//! fetches its ITL over TFTP and HTTP, enrols at CAPF and asks TVS; the probe prints
//! what the attack cost the server (descriptors, memory, how long it held them), what a
//! guesser achieves per minute, the TFTP amplification factor, and the phone's latency
//! beside each attack. Every loop is bounded in count and time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use openssl::x509::X509;
use phonetrust_phonesim::boot::{http_get_from, tftp_get_from};
use phonetrust_phonesim::tvs::TvsConnection;
use phonetrust_phonesim::{CapfConnector, PhoneTls, Pool, SimPhone, connect_from};
use phonetrust_proto::capf_phone::{PhoneAuth, PhoneResult};
use phonetrust_proto::tftp::{ClientOptions, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::bench_node::{BenchNode, Ports, Server, free_tcp, free_udp};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const PHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Phones enrolling beside the attacks (one per check).
const BYSTANDERS: usize = 64;
/// Phones with an authentication string the guessers aim at.
const TARGETS: usize = 50;
/// Size of the static file the memory attacks download.
const BIG_FILE: usize = 50 << 20;

/// Options of `bench probe`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeBench {
    /// Share of the probe's full scale (1.0: its counts — 1,100 TFTP requests, 1,100 idle
    /// HTTP connections, 20,000 pending CAPF handshakes, 500 parallel guessers, 10,000
    /// dripping TVS connections; 0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Seconds of sustained authentication-string guessing.
    #[arg(long, default_value_t = 60)]
    guess_secs: u64,
}

struct Lab {
    /// Kept for its directory.
    _node: BenchNode,
    server: Server,
    tftp: SocketAddr,
    http: SocketAddr,
    capf: SocketAddr,
    tvs: SocketAddr,
    capf_conn: Arc<CapfConnector>,
    tvs_conn: Arc<CapfConnector>,
    known: Vec<u8>,
    keys: Arc<Pool>,
    next_bystander: AtomicUsize,
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale).round() as usize).max(1)
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
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

/// 127.0.`block`.x addresses, `per` connections each.
fn spread(i: usize, per: usize, block: u8) -> IpAddr {
    let a = i / per.max(1);
    IpAddr::V4(Ipv4Addr::new(
        127,
        block,
        (a / 250) as u8,
        (a % 250 + 1) as u8,
    ))
}

/// Run the probe.
pub(crate) async fn run(b: ProbeBench) -> Result<ExitCode> {
    let own_limit = crate::serve::raise_nofile_limit();
    let lab = lab().await?;
    lab.server.settle().await;
    outln!(
        "Probe: `phonetrust serve` with default limits on loopback (open-files limit {own_limit}); attacks from 127.0.0.1 or 127.0.x.y, a phone on 127.0.0.2 beside each"
    );
    let mut failures = 0;
    let base = bystander(&lab).await;
    failures += base.1;
    outln!("  phone, no attack      {}", base.0);
    outln!(
        "  server at rest        {} descriptors, {:.1} MB resident",
        lab.server.fds(),
        mb(lab.server.rss_kib())
    );

    failures += tftp_timeout(&lab, scaled(1100, b.scale)).await?;
    failures += tftp_amplification(&lab).await?;
    failures += memory(&lab, scaled(10, b.scale), scaled(20, b.scale)).await?;
    failures += http_idle(&lab, scaled(1100, b.scale), scaled(6, b.scale)).await?;
    // The phone side needs a descriptor per pending connection, and some to spare.
    let pending = scaled(20_000, b.scale).min((own_limit as usize).saturating_sub(1_000));
    failures += capf_pending(&lab, pending).await?;
    failures += guessing(
        &lab,
        scaled(500, b.scale),
        Duration::from_secs(b.guess_secs),
    )
    .await?;
    let drip = scaled(10_000, b.scale).min((own_limit as usize).saturating_sub(1_000));
    failures += tvs_drip(&lab, drip).await?;
    outln!(
        "  server peak memory    {:.1} MB (VmHWM over the whole probe)",
        mb(lab.server.peak_kib())
    );
    if failures > 0 {
        outln!("  {failures} checks of the phone failed beside an attack");
        return Ok(ExitCode::FAILURE);
    }
    outln!("  the phone was served beside every attack");
    Ok(ExitCode::SUCCESS)
}

async fn lab() -> Result<Lab> {
    let mut csv =
        String::from("name,model,protocol,operation,auth,auth_string,key_order,rsa_bits\n");
    for i in 0..BYSTANDERS {
        csv.push_str(&format!(
            "SEP0000000B{i:04X},8845,SIP,install,null-string,,rsa,2048\n"
        ));
    }
    for i in 0..TARGETS {
        csv.push_str(&format!(
            "SEP0000000C{i:04X},8845,SIP,install,auth-string,{},rsa,2048\n",
            246_800 + i
        ));
    }
    csv.push_str("SEP0000000D0001,8845,SIP,install,auth-string,135790,rsa,2048\n");
    csv.push_str("SEP0000000D0002,8845,SIP,install,auth-string,135791,rsa,2048\n");
    let node = BenchNode::with_caps("probe", &csv, true)?;
    let stat = node.data().join("tftp");
    std::fs::create_dir_all(&stat)?;
    std::fs::write(stat.join("probe.bin"), vec![0x5a; BIG_FILE])?;
    let (capf_port, tvs_port, http_port, tftp_port) =
        (free_tcp()?, free_tcp()?, free_tcp()?, free_udp()?);
    let at = |p: u16| SocketAddr::new(ATTACKER, p);
    let server = node
        .serve(
            Ports {
                capf: capf_port,
                tvs: tvs_port,
                tftp: tftp_port,
                http: http_port,
            },
            &[],
            at(http_port),
        )
        .await?;
    let pem = |name: &str| -> Result<X509> {
        Ok(X509::from_pem(
            &node.run(&["show", "cert", "own", name, "--pem"])?,
        )?)
    };
    let capf_conn = CapfConnector::new(&pem("CAPF")?).map_err(anyhow::Error::msg)?;
    let tvs_conn =
        CapfConnector::trusting(&[pem("TVS")?], PhoneTls::Modern).map_err(anyhow::Error::msg)?;
    let known = pem("CallManager")?.to_der()?;
    Ok(Lab {
        _node: node,
        server,
        tftp: at(tftp_port),
        http: at(http_port),
        capf: at(capf_port),
        tvs: at(tvs_port),
        capf_conn: Arc::new(capf_conn),
        tvs_conn: Arc::new(tvs_conn),
        known,
        keys: Arc::new(Pool::rsa(4, 2048).context("generating keys")?),
        next_bystander: AtomicUsize::new(0),
    })
}

/// The well-behaved phone on 127.0.0.2: ITL over TFTP and HTTP, a CAPF enrolment (a
/// fresh phone each time), a TVS verify. One line, and how many of the four failed.
async fn bystander(lab: &Lab) -> (String, usize) {
    let i = lab.next_bystander.fetch_add(1, Ordering::Relaxed) % BYSTANDERS;
    let tftp = async {
        let t = Instant::now();
        tftp_get_from(PHONE, lab.tftp, "ITLFile.tlv", ClientOptions::default())
            .await
            .map(|_| t.elapsed())
            .map_err(|e| format!("{e:?}"))
    };
    let http = async {
        let t = Instant::now();
        http_get_from(Some(PHONE), lab.http, "ITLFile.tlv")
            .await
            .map(|_| t.elapsed())
            .map_err(|e| format!("{e:?}"))
    };
    let capf = async {
        let mut p = SimPhone::new(&format!("0000000B{i:04X}"), "8845");
        p.source = Some(PHONE);
        let t = Instant::now();
        match p
            .capf_via(lab.capf, &lab.capf_conn, PhoneAuth::None, lab.keys.as_ref())
            .await
        {
            PhoneResult::Installed | PhoneResult::NothingToDo => Ok(t.elapsed()),
            PhoneResult::Failed(e) => Err(e),
            other => Err(other.status_message()),
        }
    };
    let tvs = async {
        let t = Instant::now();
        let mut c = TvsConnection::connect_from(
            Some(PHONE),
            lab.tvs,
            &lab.tvs_conn,
            &format!("CP-8845-SEP0000000B{i:04X}"),
        )
        .await?;
        let a = c.verify(&lab.known).await?;
        if a.trusted {
            Ok(t.elapsed())
        } else {
            Err("TVS said the CallManager certificate is unknown".to_string())
        }
    };
    let (a, b, c, d) = tokio::join!(tftp, http, capf, tvs);
    let mut failed = 0;
    let mut line = Vec::new();
    for (name, r) in [("TFTP", a), ("HTTP", b), ("CAPF", c), ("TVS", d)] {
        match r {
            Ok(t) => line.push(format!("{name} {}", ms(t))),
            Err(e) => {
                failed += 1;
                line.push(format!("{name} FAILED ({e})"));
            }
        }
    }
    (line.join(", "), failed)
}

/// Poll until the server holds at most `fds` descriptors (at most `limit`); how long.
async fn released(server: &Server, fds: usize, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if server.fds() <= fds {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

fn after(d: Option<Duration>, limit: Duration) -> String {
    match d {
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
        None => format!("not within {} s", limit.as_secs()),
    }
}

async fn tftp_timeout(lab: &Lab, n: usize) -> Result<usize> {
    let rest = lab.server.fds();
    let mut socks = Vec::with_capacity(n);
    let req = rrq("ITLFile.tlv", &[("timeout", "255"), ("blksize", "1428")]);
    let t = Instant::now();
    for _ in 0..n {
        let s = UdpSocket::bind(SocketAddr::new(ATTACKER, 0)).await?;
        s.send_to(&req, lab.tftp).await?;
        socks.push(s);
    }
    let sent = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut started, mut refused, mut timeout) = (0, 0, None);
    let mut buf = vec![0u8; 2048];
    for s in &socks {
        if let Ok(k) = s.try_recv(&mut buf) {
            match Packet::decode(buf.get(..k).unwrap_or_default()) {
                Ok(Packet::OAck(o)) => {
                    started += 1;
                    timeout = o
                        .iter()
                        .find(|(k, _)| k == "timeout")
                        .map(|(_, v)| v.clone());
                }
                Ok(Packet::Data(..)) => started += 1,
                Ok(Packet::Error(..)) => refused += 1,
                _ => {}
            }
        }
    }
    let held = lab.server.fds().saturating_sub(rest);
    let (phone, failed) = bystander(lab).await;
    let limit = Duration::from_secs(180);
    let gone = released(&lab.server, rest + 2, limit).await;
    outln!(
        "\n1. TFTP timeout=255: {n} requests in {:.2} s, never acknowledged (before: ~25 min per transfer, every service down)",
        sent.as_secs_f64()
    );
    outln!(
        "  started {started} (timeout option {}), refused with a TFTP error {refused}, {held} descriptors held, all released after {}",
        timeout.map_or("ignored, not echoed".to_string(), |t| format!(
            "lowered to {t}"
        )),
        after(gone, limit)
    );
    outln!("  phone meanwhile       {phone}");
    Ok(failed)
}

/// Payload bytes a request without an ACK brings back.
async fn reflected(lab: &Lab, req: &[u8]) -> Result<(usize, usize)> {
    let s = UdpSocket::bind(SocketAddr::new(ATTACKER, 0)).await?;
    s.send_to(req, lab.tftp).await?;
    let mut buf = vec![0u8; 65_536];
    let (mut bytes, mut packets) = (0, 0);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(90) {
        match tokio::time::timeout(Duration::from_secs(12), s.recv_from(&mut buf)).await {
            Ok(Ok((k, _))) => {
                bytes += k;
                packets += 1;
            }
            _ => break,
        }
    }
    Ok((bytes, packets))
}

async fn tftp_amplification(lab: &Lab) -> Result<usize> {
    outln!(
        "\n2. TFTP amplification: one request, never acknowledged (before: 156x without options)"
    );
    for (label, opts) in [
        ("no options", &[][..]),
        (
            "blksize 16384, windowsize 64",
            &[("blksize", "16384"), ("windowsize", "64")][..],
        ),
    ] {
        let req = rrq("probe.bin", opts);
        let (bytes, packets) = reflected(lab, &req).await?;
        outln!(
            "  {label:<30} {} request bytes -> {bytes} bytes in {packets} packets: {:.1}x",
            req.len(),
            bytes as f64 / req.len() as f64
        );
    }
    Ok(0)
}

async fn memory(lab: &Lab, tftp_n: usize, http_n: usize) -> Result<usize> {
    let rest = lab.server.rss_kib();
    // TFTP: options acknowledged (so the transfer is real), then never another ACK.
    let mut socks = Vec::new();
    let req = rrq("probe.bin", &[("blksize", "16384"), ("windowsize", "64")]);
    for _ in 0..tftp_n {
        let s = UdpSocket::bind(SocketAddr::new(ATTACKER, 0)).await?;
        s.send_to(&req, lab.tftp).await?;
        socks.push(s);
    }
    let mut buf = vec![0u8; 65_536];
    for s in &socks {
        if let Ok(Ok((_, from))) =
            tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await
        {
            s.send_to(&Packet::Ack(0).encode(), from).await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tftp_rss = lab.server.rss_kib();
    // HTTP: the request sent, the body never read.
    let mut conns = Vec::new();
    for _ in 0..http_n {
        let mut c = connect_from(Some(ATTACKER), lab.http).await?;
        c.write_all(b"GET /probe.bin HTTP/1.1\r\nHost: probe\r\n\r\n")
            .await?;
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let http_rss = lab.server.rss_kib();
    let (phone, failed) = bystander(lab).await;
    drop(conns);
    drop(socks);
    outln!(
        "\n3. Memory: a {} MB static file (before: 488 MB for 10 TFTP requests, 977 MB for 20 stalled HTTP downloads)",
        BIG_FILE >> 20
    );
    outln!(
        "  {tftp_n} stalled TFTP transfers +{:.1} MB; with {http_n} stalled HTTP downloads besides +{:.1} MB (resident {:.1} MB)",
        mb(tftp_rss.saturating_sub(rest)),
        mb(http_rss.saturating_sub(rest)),
        mb(http_rss)
    );
    outln!("  phone meanwhile       {phone}");
    Ok(failed)
}

/// Whether the server closed `c` (EOF or reset), answered it (bytes), or holds it open.
enum Held {
    Closed,
    Answered,
    Open,
}

fn state(c: &TcpStream) -> Held {
    let mut b = [0u8; 512];
    match c.try_read(&mut b) {
        Ok(0) => Held::Closed,
        Ok(_) => Held::Answered,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Held::Open,
        Err(_) => Held::Closed,
    }
}

async fn http_idle(lab: &Lab, n: usize, slow: usize) -> Result<usize> {
    let rest = lab.server.fds();
    let mut conns = Vec::with_capacity(n);
    let mut refused_connect = 0;
    for _ in 0..n {
        match connect_from(Some(ATTACKER), lab.http).await {
            Ok(c) => conns.push(c),
            Err(_) => refused_connect += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut open, mut answered) = (0, 0);
    for c in &conns {
        match state(c) {
            Held::Open => open += 1,
            Held::Answered => answered += 1,
            Held::Closed => {}
        }
    }
    let held = lab.server.fds().saturating_sub(rest);
    let (phone, mut failed) = bystander(lab).await;
    let limit = Duration::from_secs(60);
    let gone = released(&lab.server, rest + 2, limit).await;
    drop(conns);
    outln!("\n4. HTTP: {n} idle connections from one address (before: every service down)");
    outln!(
        "  held open {open}, answered 503 {answered}, connect refused {refused_connect}; {held} server descriptors; all closed by the server after {}",
        after(gone, limit)
    );
    outln!("  phone meanwhile       {phone}");

    // The same count from 20 addresses, under the per-address cap: together over the
    // global one.
    let rest = lab.server.fds();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        if let Ok(c) = connect_from(Some(spread(i, n.div_ceil(20), 3)), lab.http).await {
            conns.push(c);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (p2, f2) = bystander(lab).await;
    failed += f2;
    let open = conns
        .iter()
        .filter(|c| matches!(state(c), Held::Open))
        .count();
    drop(conns);
    let _ = released(&lab.server, rest + 2, limit).await;
    outln!(
        "  from 20 addresses: {open} of {n} still open after the phone came (silent ones give way to another address)"
    );
    outln!("  phone meanwhile       {p2}");

    // Slowloris: a header line every 2 s, never the end of the header.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..slow {
        let addr = lab.http;
        tasks.push(tokio::spawn(async move {
            let mut c = connect_from(Some(ATTACKER), addr).await.ok()?;
            c.write_all(b"GET /ITLFile.tlv HTTP/1.1\r\n").await.ok()?;
            let mut b = [0u8; 512];
            for i in 0..300u32 {
                tokio::select! {
                    r = c.read(&mut b) => { if matches!(r, Ok(0) | Err(_)) { return Some(t.elapsed()); } }
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {
                        if c.write_all(format!("X-{i}: a\r\n").as_bytes()).await.is_err() {
                            return Some(t.elapsed());
                        }
                    }
                }
            }
            None
        }));
    }
    let mid = bystander(lab).await;
    failed += mid.1;
    let mut longest = Duration::ZERO;
    let mut survivors = 0;
    for task in tasks {
        match task.await.ok().flatten() {
            Some(d) => longest = longest.max(d),
            None => survivors += 1,
        }
    }
    outln!(
        "  slowloris: {slow} connections, a header line every 2 s: closed by the server after at most {:.1} s, {survivors} survived 600 s (before: 330 s)",
        longest.as_secs_f64()
    );
    outln!("  phone meanwhile       {}", mid.0);
    Ok(failed)
}

async fn capf_pending(lab: &Lab, n: usize) -> Result<usize> {
    let rest = lab.server.fds();
    let rss0 = lab.server.rss_kib();
    let mut conns = Vec::with_capacity(n);
    let mut refused_connect = 0;
    let t = Instant::now();
    // From many addresses (100 connections each), so that the global cap is what holds.
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut tasks = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let addr = lab.capf;
            tasks.push(tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    connect_from(Some(spread(i, 100, 1)), addr),
                )
                .await
                .ok()
                .and_then(Result::ok)
            }));
        }
        for task in tasks {
            match task.await.ok().flatten() {
                Some(c) => conns.push(c),
                None => refused_connect += 1,
            }
        }
    }
    let connected = t.elapsed();
    let peak_fds = lab.server.fds().saturating_sub(rest);
    let rss = lab.server.rss_kib();
    let (phone, failed) = bystander(lab).await;
    let limit = Duration::from_secs(60);
    let gone = released(&lab.server, rest + 2, limit).await;
    drop(conns);
    tokio::time::sleep(Duration::from_secs(1)).await;
    outln!(
        "\n5. CAPF: {n} TCP connections that never start TLS, from {} addresses, in {:.1} s (before: 20,000 pending cost ~1 GB, not returned)",
        n.div_ceil(100),
        connected.as_secs_f64()
    );
    outln!(
        "  server held {peak_fds} descriptors (+{:.1} MB), all released after {}; connect refused {refused_connect}; resident {:.1} MB afterwards (connections beyond the handshake cap are closed at accept or wait in the kernel's listen queue, at no cost to the server)",
        mb(rss.saturating_sub(rss0)),
        after(gone, limit),
        mb(lab.server.rss_kib())
    );
    outln!("  phone meanwhile       {phone}");
    Ok(failed)
}

#[derive(Default)]
struct Guesses {
    evaluated: usize,
    slowed: usize,
    refused: usize,
    last_evaluated: Duration,
    per_phone: Vec<usize>,
}

async fn guessing(lab: &Lab, parallel: usize, secs: Duration) -> Result<usize> {
    let counts = Arc::new(std::sync::Mutex::new(Guesses {
        per_phone: vec![0; TARGETS],
        ..Guesses::default()
    }));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(parallel);
    for g in 0..parallel {
        let (counts, conn, keys, addr) = (
            counts.clone(),
            lab.capf_conn.clone(),
            lab.keys.clone(),
            lab.capf,
        );
        tasks.push(tokio::spawn(async move {
            let mut k = g;
            while t.elapsed() < secs {
                let target = k % TARGETS;
                k += parallel;
                let mut p = SimPhone::new(&format!("0000000C{target:04X}"), "8845");
                p.source = Some(ATTACKER);
                let r = p
                    .capf_via(
                        addr,
                        &conn,
                        PhoneAuth::Password("000000".into()),
                        keys.as_ref(),
                    )
                    .await;
                if let Ok(mut c) = counts.lock() {
                    match r {
                        PhoneResult::RetryLater(_) => c.slowed += 1,
                        PhoneResult::Failed(e) if e.starts_with("LSC: Connection failed") => {
                            c.refused += 1
                        }
                        PhoneResult::Failed(_) => {
                            c.evaluated += 1;
                            c.last_evaluated = t.elapsed();
                            if let Some(n) = c.per_phone.get_mut(target) {
                                *n += 1;
                            }
                        }
                        _ => {}
                    }
                }
                // A refused or slowed guesser does not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    tokio::time::sleep(secs / 2).await;
    let (phone, mut failed) = bystander(lab).await;
    for task in tasks {
        let _ = task.await;
    }
    let wall = t.elapsed();
    // A user typing the right string: on its own address, and behind the guessers' one.
    let right = |mac: &str, string: &str, from: IpAddr| {
        let mut p = SimPhone::new(mac, "8845");
        p.source = Some(from);
        let auth = PhoneAuth::Password(string.into());
        async move {
            p.capf_via(lab.capf, &lab.capf_conn, auth, lab.keys.as_ref())
                .await
        }
    };
    let own = right("0000000D0001", "135790", PHONE).await;
    let nat = right("0000000D0002", "135791", ATTACKER).await;
    if !matches!(own, PhoneResult::Installed) {
        failed += 1;
    }
    let c = counts
        .lock()
        .map_err(|_| anyhow::anyhow!("guess counters poisoned"))?;
    let per_min = |n: usize| n as f64 * 60.0 / wall.as_secs_f64();
    let worst = c.per_phone.iter().copied().max().unwrap_or(0);
    outln!(
        "\n6. Authentication-string guessing: {parallel} guessers from one address for {:.0} s at {TARGETS} phones (before: 500 guesses evaluated in 0.18 s, ~100 per minute sustained, every phone behind the address locked out 10 minutes)",
        wall.as_secs_f64()
    );
    outln!(
        "  evaluated {} ({:.1}/min; the last at {:.1} s; at most {worst} for one phone), answered RETRY_LATER {}, connection refused {}",
        c.evaluated,
        per_min(c.evaluated),
        c.last_evaluated.as_secs_f64(),
        c.slowed,
        c.refused
    );
    outln!(
        "  right string afterwards: from another address {own:?}; from the guessers' address {nat:?}"
    );
    outln!("  phone meanwhile       {phone}");
    drop(c);
    Ok(failed)
}

async fn tvs_drip(lab: &Lab, n: usize) -> Result<usize> {
    let rest = lab.server.fds();
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    // A TLS record header, one byte a second, from many addresses (50 connections each).
    for i in 0..n {
        let addr = lab.tvs;
        tasks.push(tokio::spawn(async move {
            let mut c = tokio::time::timeout(
                Duration::from_secs(5),
                connect_from(Some(spread(i, 50, 2)), addr),
            )
            .await
            .ok()?
            .ok()?;
            let opened = t.elapsed();
            let hello = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
            let mut b = [0u8; 64];
            for byte in hello.iter().cycle().take(70) {
                tokio::select! {
                    r = c.read(&mut b) => {
                        if matches!(r, Ok(0) | Err(_)) {
                            return Some(t.elapsed().saturating_sub(opened));
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if c.write_all(&[*byte]).await.is_err() {
                            return Some(t.elapsed().saturating_sub(opened));
                        }
                    }
                }
            }
            Some(Duration::MAX)
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = lab.server.fds().saturating_sub(rest);
    let (phone, failed) = bystander(lab).await;
    let (mut longest, mut survived, mut refused) = (Duration::ZERO, 0, 0);
    for task in tasks {
        match task.await.ok().flatten() {
            Some(Duration::MAX) => survived += 1,
            Some(d) => longest = longest.max(d),
            None => refused += 1,
        }
    }
    outln!(
        "\n7. TVS: {n} connections dripping a TLS header a byte a second, from {} addresses (before: TVS at 0 of 12 for a minute)",
        n.div_ceil(50)
    );
    outln!(
        "  server held {held} descriptors; each closed after at most {:.1} s, {survived} survived 70 s, {refused} could not connect",
        longest.as_secs_f64()
    );
    outln!("  phone meanwhile       {phone}");
    Ok(failed)
}
