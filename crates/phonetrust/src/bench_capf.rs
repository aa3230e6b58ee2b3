//! `phonetrust bench capf`: enrol N simulated phones (RSA keys pre-generated) with
//! concurrency C against a `phonetrust serve` started as a separate process on loopback;
//! print enrolments per second, p50/p99 latency and the server's peak memory (VmHWM).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use openssl::x509::X509;
use phonetrust_phonesim::{CapfConnector, PhoneTls, Pool, SimPhone};
use phonetrust_proto::capf_phone::{PhoneAuth, PhoneResult};

use crate::bench_node::{BenchNode, Ports, cpu_secs, free_tcp, percentile};

/// Options of `bench capf`.
#[derive(Debug, clap::Args)]
pub(crate) struct CapfBench {
    /// Phones to enrol.
    #[arg(long, default_value_t = 2000)]
    phones: usize,
    /// Phones enrolling at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// RSA key size the phones are asked for.
    #[arg(long, default_value_t = 2048)]
    rsa_bits: u32,
    /// Distinct pre-generated phone keys (reused round robin).
    #[arg(long, default_value_t = 32)]
    keys: usize,
    /// TLS the phones speak: modern (1.3, X25519), tls12 (ECDHE-RSA-AES128-GCM-SHA256) or
    /// legacy (TLS 1.0, AES128-SHA, as old firmware).
    #[arg(long, value_enum, default_value_t = TlsArg::Modern)]
    tls: TlsArg,
    /// Run the node on this database instead of its own SQLite file: an empty PostgreSQL
    /// database (`postgres://user@host/db`), as a cluster's.
    #[arg(long)]
    database: Option<String>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TlsArg {
    Modern,
    Tls12,
    Legacy,
}

/// Run the benchmark.
pub(crate) async fn run(b: CapfBench) -> Result<ExitCode> {
    let mut csv = String::from("name,model,protocol,operation,auth,key_order,rsa_bits\n");
    for i in 0..b.phones {
        csv.push_str(&format!(
            "SEP{i:012X},8845,SIP,install,null-string,rsa,{}\n",
            b.rsa_bits
        ));
    }
    let node = match &b.database {
        Some(url) => BenchNode::on_database("capf", &csv, url)?,
        None => BenchNode::new("capf", &csv)?,
    };
    let capf = X509::from_pem(&node.run(&["show", "cert", "own", "CAPF", "--pem"])?)?;
    let port = free_tcp()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let server = node
        .serve(
            Ports {
                capf: port,
                ..Ports::default()
            },
            &["--max-sessions", "100000"],
            addr,
        )
        .await?;
    let idle_kib = server.peak_kib();

    outln!(
        "pre-generating {} RSA-{} phone keys ...",
        b.keys,
        b.rsa_bits
    );
    let keys = Arc::new(Pool::rsa(b.keys, b.rsa_bits).context("generating keys")?);
    let sem = Arc::new(tokio::sync::Semaphore::new(b.concurrency.max(1)));
    let capf = Arc::new(
        CapfConnector::with_tls(
            &capf,
            match b.tls {
                TlsArg::Modern => PhoneTls::Modern,
                TlsArg::Tls12 => PhoneTls::Tls12,
                TlsArg::Legacy => PhoneTls::Legacy,
            },
        )
        .map_err(anyhow::Error::msg)?,
    );
    let settled = server.settle().await;
    let server_pid = server.pid().to_string();
    let cpu0 = (cpu_secs(&server_pid), cpu_secs("self"));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(b.phones);
    for i in 0..b.phones {
        let (sem, keys, capf) = (sem.clone(), keys.clone(), capf.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            let mut phone = SimPhone::new(&format!("{i:012X}"), "8845");
            let t = Instant::now();
            let r = phone
                .capf_via(addr, &capf, PhoneAuth::None, keys.as_ref())
                .await;
            Some((r, t.elapsed()))
        }));
    }
    let mut lat = Vec::with_capacity(b.phones);
    let mut failed = 0usize;
    for t in tasks {
        match t.await.ok().flatten() {
            Some((PhoneResult::Installed, d)) => lat.push(d),
            _ => failed += 1,
        }
    }
    let wall = start.elapsed();
    let peak_kib = server.peak_kib();
    let cpu1 = (cpu_secs(&server_pid), cpu_secs("self"));
    let used = |a: Option<f64>, b: Option<f64>| b.zip(a).map(|(b, a)| b - a).unwrap_or(0.0);
    let (server_cpu, phones_cpu) = (used(cpu0.0, cpu1.0), used(cpu0.1, cpu1.1));
    drop(server);
    lat.sort();
    let ok = lat.len();
    outln!(
        "CAPF enrolment: {} phones, concurrency {}, RSA-{} keys (pre-generated), TLS {:?}, {}, server and phones on this machine",
        b.phones,
        b.concurrency,
        b.rsa_bits,
        b.tls,
        if b.database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    outln!(
        "  (server idle {:.1} s after start: configs signed ahead before the clock starts)",
        settled.as_secs_f64()
    );
    outln!("  enrolled        {ok} ({failed} failed)");
    outln!("  wall time       {:.2} s", wall.as_secs_f64());
    outln!("  enrolments/s    {:.0}", ok as f64 / wall.as_secs_f64());
    outln!(
        "  latency p50     {:.1} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3
    );
    outln!(
        "  latency p99     {:.1} ms",
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    outln!(
        "  CPU             server {server_cpu:.2} s ({:.2} ms/enrolment), phones {phones_cpu:.2} s",
        server_cpu * 1e3 / ok.max(1) as f64
    );
    outln!(
        "  server memory   {:.1} MB peak (VmHWM; {:.1} MB after start)",
        peak_kib as f64 / 1024.0,
        idle_kib as f64 / 1024.0
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
