//! `phonetrust bench cluster --database postgres://…`: a publisher and a subscriber on one
//! (empty) PostgreSQL database, the subscriber running `serve`; how long a change made on
//! the publisher takes to reach what the subscriber serves: a call manager group change
//! (the order of `callManager` members in a phone's config) and a regenerated TVS
//! certificate of the publisher (the subscriber's ITL lists the new one). Also the
//! subscriber's memory.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use phonetrust_phonesim::boot::{Transport, fetch};

use crate::bench_node::{BenchNode, percentile};

/// Options of `bench cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterBench {
    /// The cluster's database: an empty PostgreSQL database.
    #[arg(long)]
    database: String,
    /// Changes of each kind to time.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
}

const SUB: &str = "sub.bench.example.test";
const PHONE: &str = "SEP000000000001";

/// The first `processNodeName` of a config's call manager group.
fn primary(xml: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(xml).ok()?;
    let g = s.split("<callManagerGroup>").nth(1)?;
    let p = g.split("<processNodeName>").nth(1)?;
    Some(p.split("</processNodeName>").next()?.to_string())
}

/// Poll the subscriber every 5 ms (at most 30 s) until `done` holds for what it serves.
async fn until(http: SocketAddr, name: &str, done: impl Fn(&[u8]) -> bool) -> Result<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if let Ok(b) = fetch(Transport::Http(http), name).await
            && done(&b)
        {
            return Ok(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("{name} on the subscriber did not change within 30 s")
}

/// Run the benchmark.
pub(crate) async fn run(b: ClusterBench) -> Result<ExitCode> {
    let csv = format!("name,model,protocol\n{PHONE},8845,SIP\n");
    let publ = BenchNode::on_database("cluster-pub", &csv, &b.database)?;
    publ.run(&["cluster", "add-node", SUB, "--host", "127.0.0.1"])?;
    let sub = BenchNode::joining("cluster-sub", &b.database, SUB)?;
    let (server, ports) = sub.serve_free().await?;
    let http = SocketAddr::from(([127, 0, 0, 1], ports.http));
    server.settle().await;
    let pub_name = "bench.example.test";

    let mut groups = Vec::new();
    for i in 0..b.rounds {
        let (first, second) = if i % 2 == 0 {
            (SUB, pub_name)
        } else {
            (pub_name, SUB)
        };
        let want = if first == SUB { "127.0.0.1" } else { pub_name };
        publ.run(&["cluster", "group", "set", "Default", first, second, "-y"])?;
        let cfg = format!("{PHONE}.cnf.xml");
        groups.push(until(http, &cfg, |x| primary(x).as_deref() == Some(want)).await?);
    }
    let mut certs = Vec::new();
    for _ in 0..b.rounds {
        publ.run(&["set", "cert", "regen", "TVS", "-y"])?;
        let pem = publ.run(&["show", "cert", "own", "TVS", "--pem"])?;
        let der = openssl::x509::X509::from_pem(&pem)?.to_der()?;
        certs.push(
            until(http, "ITLFile.tlv", |f| {
                f.windows(der.len()).any(|w| w == der.as_slice())
            })
            .await?,
        );
    }
    groups.sort();
    certs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    outln!(
        "Cluster propagation: publisher and subscriber on one PostgreSQL database, {} changes of each kind, measured from the publisher's command returning to the subscriber serving the change",
        b.rounds
    );
    outln!(
        "  call manager group -> subscriber's config   p50 {:.0} ms, max {:.0} ms",
        ms(percentile(&groups, 0.5)),
        ms(percentile(&groups, 1.0))
    );
    outln!(
        "  publisher's new TVS -> subscriber's ITL     p50 {:.0} ms, max {:.0} ms",
        ms(percentile(&certs, 0.5)),
        ms(percentile(&certs, 1.0))
    );
    outln!(
        "  subscriber memory   {:.1} MB peak (VmHWM), {:.1} MB now",
        server.peak_kib() as f64 / 1024.0,
        server.rss_kib() as f64 / 1024.0
    );
    Ok(ExitCode::SUCCESS)
}
