//! `phonetrust bench scale --database URL [--phones 100000]`: one cluster's worth of
//! phones in the database, and what it costs a node: how long `serve` takes to listen and
//! to have its ITL and every phone's config signed ahead, its memory then, and how long
//! `phone list` with a filter takes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::bench_node::{BenchNode, cpu_secs};

/// Options of `bench scale`.
#[derive(Debug, clap::Args)]
pub(crate) struct ScaleBench {
    /// The database: an empty PostgreSQL database (or a `sqlite://` file to compare).
    #[arg(long)]
    database: String,
    /// Phones in the database (at most 100,000: one import).
    #[arg(long, default_value_t = 100_000)]
    phones: u32,
}

/// Run the benchmark.
pub(crate) async fn run(b: ScaleBench) -> Result<ExitCode> {
    let n = b.phones.min(100_000);
    // One phone in a hundred has an operation pending: what a filter picks out.
    let mut csv = String::from("name,model,protocol,operation\n");
    for i in 0..n {
        let op = if i % 100 == 0 { "install" } else { "none" };
        csv.push_str(&format!(
            "SEP{:012X},8845,SIP,{op}\n",
            0xA0_0000_0000u64 + u64::from(i)
        ));
    }
    let t = Instant::now();
    let node = BenchNode::on_database("scale", &csv, &b.database)?;
    let imported = t.elapsed();
    let t = Instant::now();
    let (server, _) = node.serve_free().await?;
    let listening = t.elapsed();
    let cpu0 = cpu_secs(&server.pid().to_string()).unwrap_or(0.0);
    let prepared = listening + server.settle_within(Duration::from_secs(1200)).await;
    let cpu = cpu_secs(&server.pid().to_string()).unwrap_or(0.0) - cpu0;
    let (peak, rss) = (server.peak_kib(), server.rss_kib());
    let mut lists = Vec::new();
    for (what, args) in [
        (
            "--status pending",
            vec!["phone", "list", "--status", "pending"],
        ),
        (
            "--status failed",
            vec!["phone", "list", "--status", "failed"],
        ),
        (
            "--lsc installed",
            vec!["phone", "list", "--lsc", "installed"],
        ),
    ] {
        let mut best = Duration::MAX;
        let mut rows = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let out = node.run(&args)?;
            best = best.min(t.elapsed());
            rows = String::from_utf8_lossy(&out)
                .lines()
                .count()
                .saturating_sub(2);
        }
        lists.push((what, best, rows));
    }
    drop(server);
    outln!(
        "Scale: {n} phones in {}",
        b.database.split('@').next_back().unwrap_or_default()
    );
    outln!(
        "  import (phone import, one CSV)        {:.1} s",
        imported.as_secs_f64()
    );
    outln!(
        "  serve listening                       {:.2} s",
        listening.as_secs_f64()
    );
    outln!(
        "  ITL and every config signed ahead     {:.1} s after start ({cpu:.1} s CPU)",
        prepared.as_secs_f64()
    );
    outln!(
        "  node memory                           {:.1} MB peak (VmHWM), {:.1} MB after",
        peak as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    for (what, t, rows) in lists {
        outln!(
            "  phone list {what:<20}       {} ms (best of 3, about {rows} lines)",
            t.as_millis()
        );
    }
    Ok(ExitCode::SUCCESS)
}
