//! `phonetrust serve`: create the identity on first start, open the store, run the
//! services (CAPF, TVS, TFTP, HTTP) until interrupted.
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
use phonetrust_services::http::HttpServer;
use phonetrust_services::provision::{ProvisionConfig, Provisioning};
use phonetrust_services::tftp::{TftpConfig, TftpServer};
use phonetrust_services::tvs::{TvsConfig, TvsServer};
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
    /// TFTP port (UDP; default: the enterprise parameter TFTP Port, 69).
    #[arg(long)]
    tftp_port: Option<u16>,
    /// HTTP port for phone downloads (default: the enterprise parameter HTTP Port, 6970).
    #[arg(long)]
    http_port: Option<u16>,
    /// TVS port (default: the enterprise parameter TVS Port, 2445); written into the
    /// phones' configs. 0 picks a free port (and writes that one).
    #[arg(long)]
    tvs_port: Option<u16>,
    /// Directory of static files served over TFTP and HTTP (firmware, ringtones, the CTL;
    /// default `<data>/tftp`).
    #[arg(long)]
    static_dir: Option<PathBuf>,
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
    #[serde(default)]
    tftp: PortSection,
    #[serde(default)]
    http: PortSection,
    #[serde(default)]
    tvs: TvsSection,
    #[serde(default)]
    provision: ProvisionSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSection {
    port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TvsSection {
    port: Option<u16>,
    /// Seconds a phone may cache a "valid" answer (default 86400).
    ttl: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionSection {
    static_dir: Option<PathBuf>,
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
    batch_delay_ms: Option<u64>,
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
        batch_delay: match file.capf.batch_delay_ms {
            Some(ms) if ms > 100 => bail!("[capf] batch_delay_ms {ms}: at most 100"),
            Some(ms) => std::time::Duration::from_millis(ms),
            None => defaults.batch_delay,
        },
        ..defaults
    };
    let param = |name: &'static str, default: u16| {
        let db = db.clone();
        async move {
            db.param(name)
                .await
                .map(|v| u16::try_from(v).unwrap_or(default))
        }
    };
    let tftp_port = match a.tftp_port.or(file.tftp.port) {
        Some(p) => p,
        None => param(phonetrust_store::params::TFTP_PORT, 69).await?,
    };
    let http_port = match a.http_port.or(file.http.port) {
        Some(p) => p,
        None => param(phonetrust_store::params::HTTP_PORT, 6970).await?,
    };
    let static_dir = a
        .static_dir
        .clone()
        .or(file.provision.static_dir.clone())
        .unwrap_or_else(|| node.data.root().join("tftp"));
    std::fs::create_dir_all(&static_dir)
        .with_context(|| format!("creating {}", static_dir.display()))?;
    let prov = Provisioning::new(
        db.clone(),
        node.data.clone(),
        ProvisionConfig {
            static_dir: static_dir.clone(),
            refresh: std::time::Duration::from_secs(1),
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let tvs_param = param(phonetrust_store::params::TVS_PORT, 2445).await?;
    let tvs = TvsServer::bind(
        db.clone(),
        node.data.clone(),
        TvsConfig {
            listen: SocketAddr::new(bind, a.tvs_port.or(file.tvs.port).unwrap_or(tvs_param)),
            min_tls: cfg.min_tls,
            ttl: file.tvs.ttl.unwrap_or(TvsConfig::default().ttl),
            static_dir: static_dir.clone(),
            ..TvsConfig::default()
        },
    )
    .await?;
    let tvs_port = tvs.local_addr().port();
    if tvs_port != tvs_param {
        // The port phones are told in their configs is the one TVS listens on.
        db.set_param(
            phonetrust_store::params::TVS_PORT,
            &tvs_port.to_string(),
            phonetrust_proto::clock::unix_now(),
        )
        .await?;
        prov.refresh_now().await.map_err(anyhow::Error::msg)?;
    }
    println!("phonetrust: TVS listening on {}", tvs.local_addr());
    tokio::spawn(tvs.clone().watch());
    tokio::spawn(tvs.run());
    tokio::spawn(prov.clone().watch());
    tokio::spawn(prov.clone().warm());
    let tftp = TftpServer::start(
        prov.clone(),
        TftpConfig {
            listen: SocketAddr::new(bind, tftp_port),
            ..TftpConfig::default()
        },
    )?;
    println!(
        "phonetrust: TFTP listening on {} (static files: {})",
        tftp.local_addr(),
        static_dir.display()
    );
    let http = HttpServer::bind(prov.clone(), SocketAddr::new(bind, http_port)).await?;
    println!("phonetrust: HTTP listening on {}", http.local_addr()?);
    let server = CapfServer::bind(db, capf, cfg.clone()).await?;
    let addr = server.local_addr()?;
    println!(
        "phonetrust: CAPF listening on {addr} (TLS {:?}+)",
        cfg.min_tls
    );
    tracing::info!(%addr, "CAPF listening");
    tokio::select! {
        () = server.run() => {}
        () = http.run() => {}
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
