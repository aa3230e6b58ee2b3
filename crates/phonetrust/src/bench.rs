//! `phonetrust bench`: speed figures measured on this machine (never timed assertions
//! in tests).
//!
//! `bench files` times the file operations a TFTP node performs per phone or per
//! certificate change: build + sign an ITL, parse + verify it, sign a config, encrypt a
//! config to a phone key, and decrypt it as the phone does. Keys are generated in
//! memory, so the command needs no data directory.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Subcommand;
use phonetrust_pki::{
    CertParams, DistinguishedName, KeySpec, generate_key, self_signed as pki_self_signed,
};
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::enccnf;
use phonetrust_proto::rand::OsRandom;
use phonetrust_proto::sgn;
use phonetrust_proto::tlv::HashAlg;
use phonetrust_proto::trustlist::{self, CertForm, Record, Role, TrustListParams};

/// `phonetrust bench ...`
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCmd {
    /// File operations: ITL build/sign, parse/verify, config sign, encrypt, decrypt.
    Files {
        /// Repetitions of each operation.
        #[arg(long, default_value_t = 200)]
        iterations: u32,
    },
    /// CAPF enrolment: N simulated phones against a local `phonetrust serve`.
    Capf(crate::bench_capf::CapfBench),
    /// Boot storm: N simulated phones fetch ITL and signed config over TFTP and HTTP,
    /// compared with tftpd-hpa serving the same bytes.
    Tftp(crate::bench_tftp::TftpBench),
    /// TVS: many phones asking about known and unknown certificates at once.
    Tvs(crate::bench_tvs::TvsBench),
    /// Hostile clients at full scale against a node with default limits, a phone served
    /// beside each attack: descriptors, memory, guesses per minute, amplification.
    Probe(crate::bench_probe::ProbeBench),
    /// Cluster propagation: how long a change made on the publisher takes to reach what a
    /// subscriber serves (two nodes on one PostgreSQL database).
    Cluster(crate::bench_cluster::ClusterBench),
    /// Scale of one cluster: 100,000 phones in the database; a node's start-up time and
    /// memory, `phone list` with a filter.
    Scale(crate::bench_scale::ScaleBench),
    /// Cluster boot storm: phones over three nodes on one PostgreSQL database, failing
    /// over when a node is killed.
    Storm(crate::bench_storm::StormBench),
}

/// Run a benchmark.
pub(crate) fn run(cmd: BenchCmd) -> Result<ExitCode> {
    match cmd {
        BenchCmd::Files { iterations } => files(iterations.max(1)),
        // The phones run on one thread: they need well under a core, and a second
        // runtime thread would only compete with the server for the two cores.
        BenchCmd::Tftp(b) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::bench_tftp::run(b)),
        BenchCmd::Tvs(b) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::bench_tvs::run(b)),
        BenchCmd::Probe(b) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::bench_probe::run(b)),
        BenchCmd::Cluster(b) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::bench_cluster::run(b)),
        BenchCmd::Storm(b) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::bench_storm::run(b)),
        BenchCmd::Scale(b) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::bench_scale::run(b)),
        BenchCmd::Capf(b) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::bench_capf::run(b)),
    }
}

fn self_signed(cn: &str, spec: KeySpec) -> Result<CertAndKey> {
    let key = generate_key(spec)?;
    let subject = DistinguishedName {
        cn: cn.into(),
        o: "phonetrust bench".into(),
        c: "NZ".into(),
        ..DistinguishedName::default()
    };
    let cert = pki_self_signed(
        &CertParams::new(subject, 1_800_000_000, 365),
        &key,
        &OsRandom,
    )?;
    Ok(CertAndKey::new(cert, key)?)
}

fn time<T>(n: u32, mut f: impl FnMut() -> Result<T>) -> Result<Duration> {
    // One untimed run to warm caches.
    f()?;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f()?);
    }
    Ok(start.elapsed() / n)
}

fn report(name: &str, per_op: Duration) {
    let us = per_op.as_secs_f64() * 1e6;
    let rate = if us > 0.0 { 1e6 / us } else { f64::INFINITY };
    outln!("{name:<38} {us:>10.1} µs/op {rate:>12.0} ops/s");
}

fn files(n: u32) -> Result<ExitCode> {
    outln!("Generating keys (RSA 2048 signer and phone, P-256 TFTP)...");
    let rsa = KeySpec::Rsa(2048);
    let signer = self_signed("bench-tftp", rsa)?;
    let recovery = self_signed("ITLRECOVERY_bench", rsa)?;
    let capf = self_signed("CAPF-bench", rsa)?;
    let tvs = self_signed("bench-tvs", rsa)?;
    let ec = self_signed("bench-EC", KeySpec::EcP256)?;
    let phone = self_signed("SEP001122334455", rsa)?;
    let records = vec![
        Record::from_cert(Role::Sast, &recovery.cert, CertForm::Full)?,
        Record::from_cert(Role::CcmTftp, &signer.cert, CertForm::Full)?,
        Record::from_cert(Role::Capf, &capf.cert, CertForm::Hash)?,
        Record::from_cert(Role::Tvs, &tvs.cert, CertForm::Hash)?,
        Record::from_cert(Role::Tftp, &ec.cert, CertForm::Full)?,
    ];
    let params = TrustListParams::new("ITLFile.tlv", HashAlg::Sha1, 1_800_000_000);
    let itl = trustlist::build(&params, &signer, &records)?;
    let config = {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<device>\n");
        while x.len() < 4000 {
            x.push_str("  <line><featureLabel>bench</featureLabel></line>\n");
        }
        x.push_str("</device>\n");
        x.into_bytes()
    };
    let encrypt = || {
        enccnf::encrypt(
            "SEP001122334455.cnf.xml",
            &config,
            &phone.cert,
            &signer,
            HashAlg::Sha1,
            1,
            &OsRandom,
        )
    };
    let enc = encrypt()?;

    outln!(
        "\n{n} iterations each; ITL of {} bytes (6 records), config of {} bytes\n",
        itl.len(),
        config.len()
    );
    report(
        "ITL build + sign (SHA-1, RSA 2048)",
        time(n, || Ok(trustlist::build(&params, &signer, &records)?))?,
    );
    report(
        "ITL parse + verify",
        time(n, || {
            let t = trustlist::parse(&itl)?;
            Ok(t.verify(&itl)?)
        })?,
    );
    report(
        "config sign (.cnf.xml.sgn)",
        time(n, || {
            Ok(sgn::sign(
                "SEP001122334455.cnf.xml",
                &config,
                &signer,
                HashAlg::Sha1,
                1,
            )?)
        })?,
    );
    report(
        "config encrypt + sign (.enc.sgn)",
        time(n, || Ok(encrypt()?))?,
    );
    report(
        "config decrypt + digest check (phone)",
        time(n, || Ok(enccnf::decrypt(&enc, &phone.key)?))?,
    );
    Ok(ExitCode::SUCCESS)
}
