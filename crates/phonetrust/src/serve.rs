//! `phonetrust serve`: create the identity on first start, open the store, run the
//! services (CAPF now) until interrupted.
//!
//! Settings come from, strongest first: the command line, the config file
//! (`<data>/phonetrust.toml` or `--config`), the enterprise parameters (CAPF Phone Port),
//! the built-in defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use openssl::ssl::SslVersion;
use phonetrust_pki::profiles::OwnCert;
use phonetrust_services::capf::{CapfConfig, CapfServer};
use phonetrust_store::identity;
use serde::Deserialize;

use crate::admin::{InitArgs, create_identity};
use crate::node::Node;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Config file (TOML; default `<data>/phonetrust.toml` when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 0.0.0.0).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// CAPF port (default: the enterprise parameter CAPF Phone Port, 3804).
    #[arg(long)]
    capf_port: Option<u16>,
    /// Lowest TLS version for CAPF: 1.0 (default, old phones need it), 1.1, 1.2, 1.3.
    #[arg(long)]
    min_tls: Option<String>,
    /// CAPF sessions at once; further phones get RETRY_LATER.
    #[arg(long)]
    max_sessions: Option<usize>,
    /// Identity of a fresh node, used only when the data directory has none.
    #[command(flatten)]
    init: InitArgs,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    capf: CapfSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    bind: Option<IpAddr>,
    database: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapfSection {
    port: Option<u16>,
    min_tls: Option<String>,
    max_sessions: Option<usize>,
    retry_delay: Option<u32>,
}

fn tls_version(s: &str) -> Result<SslVersion> {
    Ok(match s {
        "1.0" | "1" => SslVersion::TLS1,
        "1.1" => SslVersion::TLS1_1,
        "1.2" => SslVersion::TLS1_2,
        "1.3" => SslVersion::TLS1_3,
        other => bail!("min_tls '{other}': use 1.0, 1.1, 1.2 or 1.3"),
    })
}

/// `phonetrust serve`.
pub(crate) async fn serve(node: &Node, a: ServeArgs) -> Result<ExitCode> {
    let path = a
        .config
        .clone()
        .unwrap_or_else(|| node.data.root().join("phonetrust.toml"));
    let file: ConfigFile = match std::fs::read_to_string(&path) {
        Ok(t) => toml::from_str(&t).with_context(|| format!("config file {}", path.display()))?,
        Err(_) if a.config.is_none() => ConfigFile::default(),
        Err(e) => bail!("config file {}: {e}", path.display()),
    };
    if !identity::exists(&node.data) {
        tracing::info!(data = %node.data.root().display(), "no identity: creating one");
        create_identity(&node.data, &a.init.node_identity())?;
    }
    let mut node = node.clone();
    if let Some(url) = file.server.database.clone() {
        node.db_url = url;
    }
    let db = node.db().await?;
    let id = identity::load(&node.data)?;
    let capf = id
        .get(OwnCert::Capf)
        .context("the identity has no CAPF certificate")?
        .clone();
    let bind = a
        .bind
        .or(file.server.bind)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let param_port =
        u16::try_from(db.param(phonetrust_store::params::CAPF_PHONE_PORT).await?).unwrap_or(3804);
    let port = a.capf_port.or(file.capf.port).unwrap_or(param_port);
    let defaults = CapfConfig::default();
    let cfg = CapfConfig {
        listen: SocketAddr::new(bind, port),
        min_tls: tls_version(
            a.min_tls
                .as_deref()
                .or(file.capf.min_tls.as_deref())
                .unwrap_or("1.0"),
        )?,
        max_sessions: a
            .max_sessions
            .or(file.capf.max_sessions)
            .unwrap_or(defaults.max_sessions),
        retry_delay: file.capf.retry_delay.unwrap_or(defaults.retry_delay),
        ..defaults
    };
    let server = CapfServer::bind(db, capf, cfg.clone()).await?;
    let addr = server.local_addr()?;
    println!(
        "phonetrust: CAPF listening on {addr} (TLS {:?}+)",
        cfg.min_tls
    );
    tracing::info!(%addr, "CAPF listening");
    tokio::select! {
        () = server.run() => {}
        r = shutdown_signal() => {
            r?;
            println!("phonetrust: stopping");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
