//! `phonetrust bench tftp`: a boot storm. N simulated phones download their ITL
//! (`ITLSEP<MAC>.tlv`) and signed config (`SEP<MAC>.cnf.xml.sgn`) from a `phonetrust
//! serve` started as a separate process, over TFTP and then over HTTP; then the same
//! bytes, written out as static files, from Debian's tftpd-hpa (`in.tftpd`) when it is
//! installed. Prints phones per second, bytes per second, failures and the server's peak
//! memory, and the ratio to tftpd-hpa.

use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use phonetrust_phonesim::boot::{Transport, fetch};
use phonetrust_proto::tftp::ClientOptions;

use crate::bench_node::{BenchNode, Ports, free_tcp, free_udp};

/// Options of `bench tftp`.
#[derive(Debug, clap::Args)]
pub(crate) struct TftpBench {
    /// Phones booting.
    #[arg(long, default_value_t = 10_000)]
    phones: usize,
    /// Phones downloading at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// TFTP block size the phones ask for.
    #[arg(long, default_value_t = 1428)]
    blksize: u16,
}

struct Storm {
    ok: usize,
    failed: usize,
    bytes: u64,
    wall: Duration,
}

async fn storm(via: Transport, macs: &[String], concurrency: usize) -> Storm {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(macs.len());
    for mac in macs {
        let (sem, mac) = (sem.clone(), mac.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.ok()?;
            let itl = fetch(via, &format!("ITLSEP{mac}.tlv")).await.ok()?;
            let cnf = fetch(via, &format!("SEP{mac}.cnf.xml.sgn")).await.ok()?;
            Some((itl.len() + cnf.len()) as u64)
        }));
    }
    let (mut ok, mut failed, mut bytes) = (0, 0, 0);
    for t in tasks {
        match t.await.ok().flatten() {
            Some(b) => {
                ok += 1;
                bytes += b;
            }
            None => failed += 1,
        }
    }
    Storm {
        ok,
        failed,
        bytes,
        wall: start.elapsed(),
    }
}

fn report(label: &str, s: &Storm) -> f64 {
    let rate = s.ok as f64 / s.wall.as_secs_f64();
    outln!(
        "  {label:<22} {:>6} booted, {} failed, {:.2} s, {rate:>7.0} phones/s, {:>6.1} MB/s",
        s.ok,
        s.failed,
        s.wall.as_secs_f64(),
        s.bytes as f64 / s.wall.as_secs_f64() / 1e6
    );
    rate
}

/// Run the benchmark.
pub(crate) async fn run(b: TftpBench) -> Result<ExitCode> {
    let macs: Vec<String> = (0..b.phones)
        .map(|i| format!("{:012X}", 0xA000_0000_0000u64 + i as u64))
        .collect();
    let mut csv = String::from("name,model,protocol,profile\n");
    for m in &macs {
        csv.push_str(&format!("SEP{m},8845,SIP,Standard Authenticated Profile\n"));
    }
    let node = BenchNode::new("tftp", &csv)?;
    let (tftp_port, http_port, capf_port) = (free_udp()?, free_tcp()?, free_tcp()?);
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    let tftp: SocketAddr = format!("127.0.0.1:{tftp_port}").parse()?;
    let server = node
        .serve(
            Ports {
                capf: capf_port,
                tftp: tftp_port,
                http: http_port,
                ..Ports::default()
            },
            &[],
            http,
        )
        .await?;
    let opts = ClientOptions {
        blksize: Some(b.blksize),
        ..ClientOptions::default()
    };
    outln!(
        "Boot storm: {} phones (ITLSEP<MAC>.tlv + SEP<MAC>.cnf.xml.sgn each), {} at once, TFTP blksize {}, server and phones on this machine",
        b.phones,
        b.concurrency,
        b.blksize
    );
    // First storm over TFTP right after start, racing the warm-up that signs every config.
    let cold = storm(Transport::Tftp(tftp, opts), &macs, b.concurrency).await;
    let first = report("phonetrust TFTP (1st)", &cold);
    let warm = storm(Transport::Tftp(tftp, opts), &macs, b.concurrency).await;
    let ours = report("phonetrust TFTP (2nd)", &warm);
    let web = storm(Transport::Http(http), &macs, b.concurrency).await;
    report("phonetrust HTTP", &web);
    let peak = server.peak_kib() as f64 / 1024.0;
    outln!("  server memory          {peak:.1} MB peak (VmHWM)");

    // The same bytes as static files, from tftpd-hpa.
    let mut failed = cold.failed + warm.failed + web.failed;
    let stat = node.scratch("static")?;
    for m in &macs {
        for name in [format!("ITLSEP{m}.tlv"), format!("SEP{m}.cnf.xml.sgn")] {
            if let Ok(bytes) = fetch(Transport::Http(http), &name).await {
                std::fs::write(stat.join(&name), bytes)?;
            }
        }
    }
    drop(server);
    let hpa = ["/usr/sbin/in.tftpd", "in.tftpd"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok());
    match hpa {
        None => {
            outln!("  tftpd-hpa              not installed (apt install tftpd-hpa): no comparison")
        }
        Some(bin) => {
            let port = free_udp()?;
            let mut d = Command::new(bin)
                .args([
                    "-L",
                    "-s",
                    &stat.to_string_lossy(),
                    "-a",
                    &format!("127.0.0.1:{port}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let h = storm(
                Transport::Tftp(format!("127.0.0.1:{port}").parse()?, opts),
                &macs,
                b.concurrency,
            )
            .await;
            let theirs = report("tftpd-hpa (static)", &h);
            let _ = d.kill();
            let _ = d.wait();
            outln!(
                "  ratio                  phonetrust TFTP / tftpd-hpa = {:.2} (1st), {:.2} (2nd)",
                first / theirs.max(1e-9),
                ours / theirs.max(1e-9)
            );
            failed += h.failed;
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
