//! `phonetrust bench tvs`: many simulated phones ask TVS about certificates at once, as
//! after a CallManager regeneration when every phone meets an unknown signer. Each phone
//! opens one TLS connection to `phonetrust serve`'s TVS port and sends its requests one
//! after the other (half about a certificate TVS knows, half about one it does not).
//! Prints verifies per second, p50/p99 latency per request, handshake cost, server CPU
//! and peak memory.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use openssl::x509::X509;
use phonetrust_phonesim::tvs::TvsConnection;
use phonetrust_phonesim::{CapfConnector, PhoneTls};

use crate::bench_node::{BenchNode, Ports, cpu_secs, free_tcp, percentile};

/// Options of `bench tvs`.
#[derive(Debug, clap::Args)]
pub(crate) struct TvsBench {
    /// Phones asking.
    #[arg(long, default_value_t = 1000)]
    phones: usize,
    /// Phones connected at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Requests each phone sends on its connection.
    #[arg(long, default_value_t = 20)]
    requests: usize,
}

struct PhoneRun {
    handshake: Duration,
    latencies: Vec<Duration>,
    trusted: usize,
}

/// Run the benchmark.
pub(crate) async fn run(b: TvsBench) -> Result<ExitCode> {
    let node = BenchNode::new("tvs", "name,model,protocol,profile\n")?;
    let (capf_port, tvs_port) = (free_tcp()?, free_tcp()?);
    let tvs: SocketAddr = format!("127.0.0.1:{tvs_port}").parse()?;
    let server = node
        .serve(
            Ports {
                capf: capf_port,
                tvs: tvs_port,
                ..Ports::default()
            },
            &[],
            tvs,
        )
        .await?;
    let pem = |name: &str| -> Result<X509> {
        Ok(X509::from_pem(
            &node.run(&["show", "cert", "own", name, "--pem"])?,
        )?)
    };
    let tvs_cert = pem("TVS")?;
    let known = pem("CallManager")?.to_der()?;
    let unknown = pem("tomcat")?.to_der()?;
    let conn =
        CapfConnector::trusting(&[tvs_cert], PhoneTls::Modern).map_err(anyhow::Error::msg)?;
    let certs = Arc::new((known, unknown));
    outln!(
        "TVS: {} phones, {} connected at once, {} requests each (half known, half unknown), server and phones on this machine",
        b.phones,
        b.concurrency,
        b.requests
    );
    server.settle().await;
    let server_pid = server.pid().to_string();
    let cpu0 = (cpu_secs(&server_pid), cpu_secs("self"));
    let sem = Arc::new(tokio::sync::Semaphore::new(b.concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(b.phones);
    for i in 0..b.phones {
        let (sem, conn, certs) = (sem.clone(), conn.clone(), certs.clone());
        let requests = b.requests;
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            let name = format!("CP-8845-SEP{:012X}", 0xB000_0000_0000u64 + i as u64);
            let t0 = Instant::now();
            let mut c = TvsConnection::connect(tvs, &conn, &name).await.ok()?;
            let handshake = t0.elapsed();
            let mut latencies = Vec::with_capacity(requests);
            let mut trusted = 0;
            for r in 0..requests {
                let der = if r % 2 == 0 { &certs.0 } else { &certs.1 };
                let t = Instant::now();
                let a = c.verify(der).await.ok()?;
                latencies.push(t.elapsed());
                if a.trusted != (r % 2 == 0) {
                    return None;
                }
                trusted += usize::from(a.trusted);
            }
            Some(PhoneRun {
                handshake,
                latencies,
                trusted,
            })
        }));
    }
    let mut runs = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.context("phone task")? {
            Some(r) => runs.push(r),
            None => failed += 1,
        }
    }
    let wall = start.elapsed();
    let cpu1 = (cpu_secs(&server_pid), cpu_secs("self"));
    let used = |a: Option<f64>, b: Option<f64>| b.unwrap_or(0.0) - a.unwrap_or(0.0);
    let (server_cpu, phones_cpu) = (used(cpu0.0, cpu1.0), used(cpu0.1, cpu1.1));
    let mut lat: Vec<Duration> = runs.iter().flat_map(|r| r.latencies.clone()).collect();
    lat.sort();
    let mut hs: Vec<Duration> = runs.iter().map(|r| r.handshake).collect();
    hs.sort();
    let verifies = lat.len();
    let trusted: usize = runs.iter().map(|r| r.trusted).sum();
    outln!(
        "  answered        {verifies} verifies ({trusted} valid, {} invalid, all as expected), {failed} phones failed, {:.2} s",
        verifies - trusted,
        wall.as_secs_f64()
    );
    outln!(
        "  rate            {:.0} verifies/s (TLS handshakes included)",
        verifies as f64 / wall.as_secs_f64()
    );
    outln!(
        "  latency         p50 {:.2} ms, p99 {:.2} ms per request; handshake p50 {:.1} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        percentile(&hs, 0.50).as_secs_f64() * 1e3
    );
    outln!(
        "  CPU             server {server_cpu:.2} s ({:.1} µs/verify), phones {phones_cpu:.2} s",
        server_cpu * 1e6 / verifies.max(1) as f64
    );
    outln!(
        "  server memory   {:.1} MB peak (VmHWM)",
        server.peak_kib() as f64 / 1024.0
    );
    if failed > 0 {
        bail!("{failed} phones failed");
    }
    Ok(ExitCode::SUCCESS)
}
