//! `phonetrust bench storm --database URL [--phones 30000]`: a cluster boot storm. A
//! publisher and two subscribers on one PostgreSQL database, each a `serve` process;
//! every phone downloads its ITL and signed config over TFTP from the first node of its
//! list (the lists rotated so that each node is first for a third of the phones) and
//! moves to the next node when one does not answer, as phones walk DHCP option 150. Two
//! storms: all nodes up, then one subscriber killed when a third of the phones have
//! booted. Prints phones per second, phones that moved, phones failed for good (after
//! every node was tried twice), and each node's memory.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use phonetrust_phonesim::boot::{Transport, fetch};
use phonetrust_proto::tftp::ClientOptions;

use crate::bench_node::{BenchNode, Server};

/// Options of `bench storm`.
#[derive(Debug, clap::Args)]
pub(crate) struct StormBench {
    /// The cluster's database: an empty PostgreSQL database.
    #[arg(long)]
    database: String,
    /// Phones booting.
    #[arg(long, default_value_t = 30_000)]
    phones: usize,
    /// Phones downloading at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
}

struct Outcome {
    booted: usize,
    moved: usize,
    failed: usize,
    wall: Duration,
}

/// One phone: ITL and config from the first server of `list` that serves both.
/// (booted, moved to another server).
async fn boot(list: &[Transport], mac: &str) -> (bool, bool) {
    for round in 0..2 {
        for (i, via) in list.iter().enumerate() {
            let Ok(_) = fetch(*via, &format!("ITLSEP{mac}.tlv")).await else {
                continue;
            };
            if fetch(*via, &format!("SEP{mac}.cnf.xml.sgn")).await.is_ok() {
                return (true, round > 0 || i > 0);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (false, true)
}

async fn storm(
    servers: &[Transport],
    macs: &[String],
    concurrency: usize,
    mut kill_at_third: Option<&mut Option<Server>>,
) -> Outcome {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (k, mac) in macs.iter().enumerate() {
        let (sem, mac, done) = (sem.clone(), mac.clone(), done.clone());
        // This phone's list: the nodes rotated, so each is first for a third.
        let n = servers.len();
        let list: Vec<Transport> = (0..n)
            .filter_map(|j| servers.get((k + j) % n).copied())
            .collect();
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await.ok();
            let r = boot(&list, &mac).await;
            done.fetch_add(1, Ordering::Relaxed);
            r
        });
    }
    let (mut booted, mut moved, mut failed) = (0, 0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            r = tasks.join_next() => match r {
                None => break,
                Some(Ok((ok, mv))) => {
                    if ok { booted += 1 } else { failed += 1 }
                    if mv && ok { moved += 1 }
                }
                Some(Err(_)) => failed += 1,
            },
            _ = tick.tick() => {
                if done.load(Ordering::Relaxed) >= macs.len() / 3
                    && let Some(slot) = kill_at_third.take()
                {
                    // The node dies: its process is killed, its sockets closed.
                    slot.take();
                }
            }
        }
    }
    Outcome {
        booted,
        moved,
        failed,
        wall: start.elapsed(),
    }
}

fn report(label: &str, o: &Outcome) {
    outln!(
        "  {label:<34} {:>6} booted, {:>5} moved to another node, {} failed for good, {:.1} s, {:.0} phones/s",
        o.booted,
        o.moved,
        o.failed,
        o.wall.as_secs_f64(),
        o.booted as f64 / o.wall.as_secs_f64()
    );
}

/// Run the benchmark.
pub(crate) async fn run(b: StormBench) -> Result<ExitCode> {
    let macs: Vec<String> = (0..b.phones)
        .map(|i| format!("{:012X}", 0xB000_0000_0000u64 + i as u64))
        .collect();
    let mut csv = String::from("name,model,protocol,profile\n");
    for m in &macs {
        csv.push_str(&format!("SEP{m},8845,SIP,Standard Authenticated Profile\n"));
    }
    let publ = BenchNode::on_database("storm-pub", &csv, &b.database)?;
    let subs = ["sub1.storm.example.test", "sub2.storm.example.test"];
    for s in subs {
        publ.run(&["cluster", "add-node", s, "--host", "127.0.0.1"])?;
    }
    let nodes = [
        publ,
        BenchNode::joining("storm-sub1", &b.database, subs[0])?,
        BenchNode::joining("storm-sub2", &b.database, subs[1])?,
    ];
    let opts = ClientOptions {
        blksize: Some(1428),
        ..ClientOptions::default()
    };
    let mut servers = Vec::new();
    let mut transports = Vec::new();
    for n in &nodes {
        let (server, ports) = n.serve_free().await?;
        servers.push(Some(server));
        transports.push(Transport::Tftp(
            SocketAddr::from(([127, 0, 0, 1], ports.tftp)),
            opts,
        ));
    }
    let t = Instant::now();
    for s in servers.iter().flatten() {
        s.settle().await;
    }
    outln!(
        "Cluster boot storm: {} phones over 3 nodes (TFTP, ITLSEP<MAC>.tlv + SEP<MAC>.cnf.xml.sgn each), {} at once; nodes ready {:.1} s after start",
        b.phones,
        b.concurrency,
        t.elapsed().as_secs_f64()
    );
    let all = storm(&transports, &macs, b.concurrency, None).await;
    report("all nodes up", &all);
    let mem: Vec<String> = servers
        .iter()
        .flatten()
        .map(|s| format!("{:.1} MB", s.peak_kib() as f64 / 1024.0))
        .collect();
    let killed = storm(&transports, &macs, b.concurrency, servers.get_mut(1)).await;
    report("sub1 killed at a third", &killed);
    outln!(
        "  node memory (peak, VmHWM): {} (publisher, sub1, sub2)",
        mem.join(", ")
    );
    Ok(if all.failed + killed.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
