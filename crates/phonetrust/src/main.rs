//! `phonetrust`: the security services an IP-phone call-control cluster gives its phones
//! (CAPF, trust lists, TVS, provisioning), and the tools to inspect and build the files
//! phones download.
//!
//! This binary is a thin shell: argument parsing and file I/O here, formats and protocols
//! in `phonetrust-proto`.

#![forbid(unsafe_code)]

#[macro_use]
mod output;
mod admin;
mod audit;
mod bench;
mod bench_capf;
mod bench_cluster;
mod bench_node;
mod bench_probe;
mod bench_scale;
mod bench_storm;
mod bench_tftp;
mod bench_tvs;
mod bulk;
mod cluster;
mod config;
mod confirm;
mod doctor;
mod files;
mod fsutil;
mod generate;
mod node;
mod phones;
mod phonesim_cmd;
mod report;
mod serve;
mod table;
mod users;
mod utils;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Security services for IP-phone fleets: CAPF, ITL/CTL trust lists, TVS, signed and
/// encrypted provisioning.
#[derive(Debug, Parser)]
#[command(name = "phonetrust", version, propagate_version = true)]
#[command(
    after_help = "Exit status: 0 on success (for `show` commands: only when the signature verifies), 1 on failure, 2 on a usage error."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: config::GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node: create the identity on first start, then serve CAPF, TVS, TFTP and
    /// HTTP (trust lists, signed and encrypted configs, static files) until interrupted.
    Serve(serve::ServeArgs),
    /// Create this node's identity (CAPF, CallManager, CallManager-ECDSA, TVS,
    /// ITLRecovery, tomcat) in the data directory.
    Init(admin::InitArgs),
    /// Show certificates and parameters (`show cert list own|trust`, `show cert own CAPF
    /// --pem`, `show cert expiry`, `show param`).
    #[command(subcommand)]
    Show(admin::ShowCmd),
    /// Change certificates and parameters (`set cert regen CallManager`, `set csr gen
    /// CAPF`, `set cert import own|trust ...`, `set cert delete trust ...`, `set param`).
    #[command(subcommand)]
    Set(admin::SetCmd),
    /// The cluster's nodes (`cluster add-node NAME --host HOST [--services tftp,tvs,capf]`,
    /// `cluster set-node`, `cluster remove-node`); `show network cluster` lists them.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Phones and their CAPF information (`phone add|set|capf|show|list|delete|import`).
    #[command(subcommand)]
    Phone(phones::PhoneCmd),
    /// Reports (`report capf [--csv]`: every phone's LSC and CAPF operation).
    #[command(subcommand)]
    Report(report::ReportCmd),
    /// Phone security profiles (`profile list|show|add|delete`).
    #[command(subcommand)]
    Profile(phones::ProfileCmd),
    /// Read-only database queries (`run sql select paramname,paramvalue from processconfig`).
    #[command(subcommand)]
    Run(admin::RunCmd),
    /// Trust lists (ITL, CTL): show and build `.tlv` files.
    #[command(subcommand)]
    Tlv(files::TlvCmd),
    /// Signed files (`.sgn`): sign, show and verify, strip the header.
    #[command(subcommand)]
    Sgn(files::SgnCmd),
    /// Device configuration: encrypt to a phone's certificate, decrypt with its key.
    #[command(subcommand)]
    Cnf(files::CnfCmd),
    /// Simulated phones: CAPF sessions from the command line, each phone's flash kept in
    /// a directory (`phone-sim capf --mac 001122334455`, `phone-sim show`, `phone-sim factory`).
    #[command(subcommand, name = "phone-sim")]
    PhoneSim(phonesim_cmd::PhoneSimCmd),
    /// ITL recovery (`utils itl reset localkey`, `utils itl restore`) and mixed mode
    /// (`utils ctl set-cluster mixed-mode|non-secure-mode`, `utils ctl update CTLFile`,
    /// `utils ctl reset localkey`).
    #[command(subcommand)]
    Utils(utils::UtilsCmd),
    /// The CTL client for hardware security tokens (PKCS#11): sign the CTL with a token,
    /// every token listed as SAST (`ctl-client --module M --token A --token B`).
    CtlClient(utils::CtlClientArgs),
    /// Files in the TFTP directory: `file delete tftp CTLFile.tlv`.
    #[command(subcommand)]
    File(utils::FileCmd),
    /// Measure speed (per-operation times, throughput).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Man pages and shell completions (`generate man DIR`, `generate completions bash`).
    #[command(subcommand)]
    Generate(generate::GenerateCmd),
    /// Check the node as the seeds troubleshoot it (ITL and CAPF, CAPF reachable,
    /// operations late or stuck, a CTL left behind, certificates expiring, trust
    /// certificates LSCs depend on, the ITL's size); `doctor phone SEP…` explains one
    /// phone. Exit status 0 only when nothing is wrong.
    Doctor(doctor::DoctorArgs),
    /// Accounts of the web administration and the REST API (there is none until one is
    /// added): `user add NAME --role admin|operator|read-only`, `user list|passwd|enable|disable|delete`.
    #[command(subcommand)]
    User(users::UserCmd),
}

/// Log to standard error: warnings by default, `-v` info, `-vv` debug; `serve` logs at
/// info by default (one line per completed phone operation, as a service should).
fn init_logging(verbose: u8, service: bool) {
    let default = match verbose {
        0 if service => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Run an administration command on a small runtime of its own.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Run the services on a multi-threaded runtime.
fn serve_runtime<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let path = audit::command_path(&matches);
    init_logging(cli.global.verbose, matches!(cli.command, Command::Serve(_)));
    tracing::debug!(data = %cli.global.data.display(), "starting");
    let result = config::Settings::resolve(&cli.global).and_then(|s| {
        let node = node::Node::new(s);
        let r = run(node.clone(), cli.command);
        if audit::is_change(&path) {
            let args: Vec<String> = std::env::args().skip(1).collect();
            audit::record(&node, &path, &args, &r);
        }
        r
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the chain of causes, never a backtrace.
            eprintln!("phonetrust: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(node: node::Node, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(a) => serve_runtime(serve::serve(&node, a)),
        Command::Init(a) => block_on(admin::init(&node, a)),
        Command::Show(c) => block_on(admin::show(&node, c)),
        Command::Set(c) => block_on(admin::set(&node, c)),
        Command::Cluster(c) => block_on(cluster::run(&node, c)),
        Command::Phone(c) => block_on(phones::phone(&node, c)),
        Command::Report(c) => block_on(report::run(&node, c)),
        Command::Profile(c) => block_on(phones::profile(&node, c)),
        Command::Run(c) => block_on(admin::run(&node, c)),
        Command::Tlv(c) => files::tlv(c),
        Command::Sgn(c) => files::sgn(c),
        Command::Cnf(c) => files::cnf(c),
        Command::Bench(c) => bench::run(c),
        Command::Generate(c) => generate::run(c),
        Command::Utils(c) => block_on(utils::run(&node, c)),
        Command::File(c) => block_on(utils::file(&node, c)),
        Command::CtlClient(a) => block_on(utils::ctl_client(&node, a)),
        Command::PhoneSim(c) => serve_runtime(phonesim_cmd::run(&node, c)),
        Command::Doctor(a) => block_on(doctor::run(&node, a)),
        Command::User(c) => block_on(users::run(&node, c)),
    }
}
