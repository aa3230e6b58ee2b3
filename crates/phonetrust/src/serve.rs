//! `phonetrust serve`: create the identity on first start, open the store, run the
//! services (CAPF, TVS, TFTP, HTTP) until interrupted.
//!
//! Settings come from [`crate::config`]: command line over environment over config file
//! over the enterprise parameters (ports) over the built-in defaults.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use phonetrust_pki::profiles::OwnCert;
use phonetrust_services::capf::{CapfConfig, CapfServer};
use phonetrust_services::http::HttpConfig;
use phonetrust_services::http::HttpServer;
use phonetrust_services::provision::{ProvisionConfig, Provisioning};
use phonetrust_services::tftp::{TftpConfig, TftpServer};
use phonetrust_services::tvs::{TvsConfig, TvsServer};
use phonetrust_store::identity;

use crate::admin::{InitArgs, create_identity};
use crate::config::{batch_delay, first, tls_name, tls_version};
use crate::node::Node;

/// Arguments of `serve`. Each overrides the config file (`[server]`, `[capf]`, `[tvs]`,
/// …) and the enterprise parameters for this process only.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default `[server] bind`, else 0.0.0.0).
    #[arg(long, env = "PHONETRUST_BIND")]
    bind: Option<IpAddr>,
    /// CAPF port (default `[capf] port`, else the enterprise parameter CAPF Phone Port).
    /// Where this process listens only: phones are told the parameter; `serve` warns when
    /// they differ.
    #[arg(long, env = "PHONETRUST_CAPF_PORT")]
    capf_port: Option<u16>,
    /// Lowest TLS version for CAPF and TVS: 1.0 (default, old phones need it), 1.1, 1.2,
    /// 1.3.
    #[arg(long, env = "PHONETRUST_MIN_TLS")]
    min_tls: Option<String>,
    /// CAPF sessions at once; further phones get RETRY_LATER.
    #[arg(long, env = "PHONETRUST_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// TFTP port (UDP; default `[tftp] port`, else the enterprise parameter TFTP Port).
    #[arg(long, env = "PHONETRUST_TFTP_PORT")]
    tftp_port: Option<u16>,
    /// HTTP port for phone downloads (default `[http] port`, else the enterprise
    /// parameter HTTP Port).
    #[arg(long, env = "PHONETRUST_HTTP_PORT")]
    http_port: Option<u16>,
    /// TVS port (default `[tvs] port`, else the enterprise parameter TVS Port). Where this
    /// process listens only: phones are told the parameter (`set param TvsPort N`).
    #[arg(long, env = "PHONETRUST_TVS_PORT")]
    tvs_port: Option<u16>,
    /// Port of the web administration (HTTPS; default `[web] port`, else 8443; 0 with
    /// `[web] enabled = false` turns it off).
    #[arg(long, env = "PHONETRUST_WEB_PORT")]
    web_port: Option<u16>,
    /// Identity of a fresh node, used only when the data directory has none.
    #[command(flatten)]
    init: InitArgs,
}

/// `phonetrust serve`.
pub(crate) async fn serve(node: &Node, a: ServeArgs) -> Result<ExitCode> {
    let file = node.settings.file.clone();
    if let Some(p) = &node.settings.config_path {
        outln!("phonetrust: config file {}", p.display());
    }
    // The monitor's settings first: a mistake there stops serve before it listens.
    let monitor = file.monitor.resolve()?;
    let lifecycle = file.lifecycle.resolve()?;
    node.data.secure()?;
    // One server per data directory: a second one would change what the first tells phones.
    let _lock = node.data.lock_serve()?;
    if !identity::exists(&node.data) {
        tracing::info!(data = %node.data.root().display(), "no identity: creating one");
        let join = a.init.join.clone();
        let ident = a.init.node_identity();
        crate::admin::check_cluster_before_init(node, join.as_deref(), &ident.host).await?;
        create_identity(&node.data, &ident)?;
    }
    for p in identity::remove_leftovers(&node.data)? {
        outln!(
            "phonetrust: removed {} (left by an interrupted write)",
            p.display()
        );
    }
    let db = node.db().await?;
    let id = identity::load(&node.data)?;
    // This node's place in the cluster (a single node is the publisher of a cluster of
    // one); its heartbeat tells the other nodes it is alive.
    let node_name = crate::cluster::take_place(&db, &id).await?;
    tokio::spawn(crate::cluster::heartbeat(db.clone(), node_name.clone()));
    // The certificate monitor: at start, then every hour (`[monitor]`).
    match monitor {
        Some((cfg, notifier)) => {
            let targets = notifier.targets();
            outln!(
                "phonetrust: certificate monitor every {} s, warning {} days before expiry{}",
                cfg.interval.as_secs(),
                cfg.warn_days,
                if targets.is_empty() {
                    " (log only)".to_string()
                } else {
                    format!(", notifying {}", targets.join(" and "))
                }
            );
            tokio::spawn(phonetrust_services::monitor::run(
                db.clone(),
                node.data.clone(),
                node_name.clone(),
                cfg,
                notifier,
            ));
        }
        None => outln!("phonetrust: certificate monitor off ([monitor] enabled = false)"),
    }
    // LSC renewal by policy, on the publisher only (one scheduler for the cluster).
    let publisher = db
        .node(&node_name)
        .await?
        .is_none_or(|n| n.role == "publisher");
    match lifecycle {
        Some((policy, hook)) if publisher => {
            outln!(
                "phonetrust: LSC renewal by policy: at most {} phone(s) an hour{}",
                policy.max_per_hour,
                policy
                    .window
                    .map(|w| format!(", inside {w}"))
                    .unwrap_or_default()
            );
            tokio::spawn(phonetrust_services::renewal::run(
                db.clone(),
                node.data.clone(),
                policy,
                hook,
            ));
        }
        Some(_) => outln!("phonetrust: LSC renewal by policy runs on the publisher, not here"),
        None => {}
    }
    // The services this node runs (`cluster add-node|set-node --services`), read at start.
    let services = crate::cluster::services_of(&db, &node_name).await?;
    outln!("phonetrust: node {node_name} runs {services}");
    let capf = id
        .get(OwnCert::Capf)
        .context("the identity has no CAPF certificate")?
        .clone();
    // In CAPF-trust and CallManager-trust (a node made by an earlier version, too).
    phonetrust_store::own::trust_capf(&db, &capf.cert, crate::fsutil::now()).await?;
    let bind = a
        .bind
        .or(file.server.bind)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    // The web administration (HTTPS, the tomcat certificate).
    if file.web.enabled != Some(false) {
        let port = a.web_port.or(file.web.port).unwrap_or(8443);
        let listen = SocketAddr::new(file.web.bind.unwrap_or(bind), port);
        let tomcat = id
            .get(OwnCert::Tomcat)
            .context("the identity has no tomcat certificate")?
            .clone();
        match phonetrust_services::web::WebServer::bind(
            db.clone(),
            node.data.clone(),
            node_name.clone(),
            &tomcat,
            phonetrust_services::web::WebConfig {
                listen,
                metrics_token: file
                    .web
                    .metrics_token_file
                    .as_deref()
                    .map(|f| crate::config::read_secret("[web] metrics_token_file", f))
                    .transpose()?,
                ..Default::default()
            },
        )
        .await
        {
            Ok(web) => {
                let at = web.local_addr()?;
                if db.account_count().await? == 0 {
                    outln!(
                        "phonetrust: web administration on https://{at}/ — no account yet: `phonetrust user add NAME --role admin`"
                    );
                } else {
                    outln!("phonetrust: web administration on https://{at}/");
                }
                tokio::spawn(web.run());
            }
            // Phones do not need the web administration: the other services go on.
            Err(e) => {
                outln!(
                    "phonetrust: warning: the web administration did not start: {e} (set [web] port, or [web] enabled = false)"
                );
                tracing::warn!(error = %e, "web administration not started");
            }
        }
    }
    let ports = db.phone_ports().await?;
    let port = first(&[a.capf_port, file.capf.port], ports.capf);
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
        max_sessions_per_address: file
            .capf
            .max_sessions_per_address
            .unwrap_or(defaults.max_sessions_per_address),
        max_handshakes: file.capf.max_handshakes.unwrap_or(defaults.max_handshakes),
        max_handshakes_per_address: file
            .capf
            .max_handshakes_per_address
            .unwrap_or(defaults.max_handshakes_per_address),
        retry_delay: file.capf.retry_delay.unwrap_or(defaults.retry_delay),
        auth_failures_before_backoff: file
            .capf
            .auth_failures_before_backoff
            .unwrap_or(defaults.auth_failures_before_backoff),
        batch_delay: batch_delay(file.capf.batch_delay_ms, defaults.batch_delay)?,
        ..defaults
    };
    // The descriptor budget: the soft limit raised to the hard one, divided between the
    // services (phonetrust_rules::fdbudget), each service's caps kept within its share.
    let limit = raise_nofile_limit();
    let tftp_defaults = TftpConfig::default();
    let http_defaults = HttpConfig::default();
    let tvs_defaults = TvsConfig::default();
    let budget = phonetrust_rules::fdbudget::plan(
        limit,
        phonetrust_rules::fdbudget::Wanted {
            tftp_transfers: file
                .tftp
                .max_transfers
                .unwrap_or(tftp_defaults.max_transfers),
            http_connections: file
                .http
                .max_connections
                .unwrap_or(http_defaults.max_connections),
            capf_handshakes: cfg.max_handshakes,
            capf_sessions: cfg.max_sessions,
            tvs_connections: file
                .tvs
                .max_connections
                .unwrap_or(tvs_defaults.max_connections),
        },
    );
    tracing::info!(
        descriptors = limit,
        tftp_transfers = budget.caps.tftp_transfers,
        http_connections = budget.caps.http_connections,
        capf_handshakes = budget.caps.capf_handshakes,
        capf_sessions = budget.caps.capf_sessions,
        tvs_connections = budget.caps.tvs_connections,
        "descriptor budget"
    );
    if !budget.lowered.is_empty() {
        let m = format!(
            "the file-descriptor limit ({limit}) is too low for the configured limits; lowered: {} (raise LimitNOFILE / `ulimit -n`)",
            budget.lowered.join(", ")
        );
        outln!("phonetrust: warning: {m}");
        tracing::warn!("{m}");
    }
    let cfg = CapfConfig {
        max_handshakes: budget.caps.capf_handshakes,
        max_sessions: budget.caps.capf_sessions,
        ..cfg
    };
    let tftp_port = first(&[a.tftp_port, file.tftp.port], ports.tftp);
    let http_port = first(&[a.http_port, file.http.port], ports.http);
    let static_dir = node.static_dir();
    std::fs::create_dir_all(&static_dir)
        .with_context(|| format!("creating {}", static_dir.display()))?;
    adopt_static_ctl(&db, &static_dir).await?;
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
    let tvs_param = ports.tvs;
    let tvs_addr = if services.tvs {
        let tvs = TvsServer::bind(
            db.clone(),
            node.data.clone(),
            TvsConfig {
                listen: SocketAddr::new(bind, first(&[a.tvs_port, file.tvs.port], tvs_param)),
                min_tls: cfg.min_tls,
                ttl: file.tvs.ttl.unwrap_or(tvs_defaults.ttl),
                max_connections: budget.caps.tvs_connections,
                max_sessions: tvs_defaults.max_sessions.min(budget.caps.tvs_connections),
                max_per_address: file
                    .tvs
                    .max_connections_per_address
                    .unwrap_or(tvs_defaults.max_per_address),
                max_handshakes: file
                    .tvs
                    .max_handshakes
                    .unwrap_or(tvs_defaults.max_handshakes),
                max_handshakes_per_address: file
                    .tvs
                    .max_handshakes_per_address
                    .unwrap_or(tvs_defaults.max_handshakes_per_address),
                ..tvs_defaults
            },
        )
        .await?;
        let tvs_addr = tvs.local_addr();
        outln!("phonetrust: TVS listening on {tvs_addr}");
        tokio::spawn(tvs.clone().watch());
        tokio::spawn(tvs.run());
        Some(tvs_addr)
    } else {
        None
    };
    let mut http_run = None;
    let web = if services.tftp {
        tokio::spawn(prov.clone().watch());
        tokio::spawn(prov.clone().warm());
        let tftp = TftpServer::start(
            prov.clone(),
            TftpConfig {
                listen: SocketAddr::new(bind, tftp_port),
                max_transfers: file
                    .tftp
                    .max_transfers
                    .unwrap_or(tftp_defaults.max_transfers),
                max_per_address: file
                    .tftp
                    .max_transfers_per_address
                    .unwrap_or(tftp_defaults.max_per_address),
                ..tftp_defaults
            },
        )?;
        let tftp_addr = tftp.local_addr();
        outln!(
            "phonetrust: TFTP listening on {} (static files: {})",
            tftp_addr,
            static_dir.display()
        );
        let http = HttpServer::bind_with(
            prov.clone(),
            HttpConfig {
                listen: SocketAddr::new(bind, http_port),
                max_connections: budget.caps.http_connections,
                max_per_address: file
                    .http
                    .max_connections_per_address
                    .unwrap_or(http_defaults.max_per_address),
                ..http_defaults
            },
        )
        .await?;
        let http_addr = http.local_addr()?;
        outln!("phonetrust: HTTP listening on {http_addr}");
        http_run = Some(http);
        Some((tftp_addr, http_addr))
    } else {
        None
    };
    let mut capf_run = None;
    let capf_addr = if services.capf {
        let server = CapfServer::bind(db, capf, cfg.clone()).await?;
        let addr = server.local_addr()?;
        // A regenerated or imported CAPF certificate is taken over within a second.
        tokio::spawn(server.follow_identity(node.data.clone(), std::time::Duration::from_secs(1)));
        outln!(
            "phonetrust: CAPF listening on {addr} ({}+)",
            tls_name(cfg.min_tls)
        );
        tracing::info!(%addr, "CAPF listening");
        capf_run = Some(server);
        Some(addr)
    } else {
        None
    };
    // The parameters say what phones are told; the options only moved where we listen
    // (a service this node does not run is not compared).
    let listening = phonetrust_store::params::PhonePorts {
        capf: capf_addr.map_or(ports.capf, |a| a.port()),
        tvs: tvs_addr.map_or(ports.tvs, |a| a.port()),
        tftp: web.map_or(ports.tftp, |w| w.0.port()),
        http: web.map_or(ports.http, |w| w.1.port()),
    };
    for m in phonetrust_rules::ports::mismatches(&ports, &listening) {
        outln!("phonetrust: warning: {m}");
        tracing::warn!(
            service = m.service,
            told = m.told,
            listening = m.listening,
            "{m}"
        );
    }
    let capf_task = async move {
        match capf_run {
            Some(s) => s.run().await,
            None => std::future::pending().await,
        }
    };
    let http_task = async move {
        match http_run {
            Some(h) => h.run().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = capf_task => {}
        () = http_task => {}
        r = shutdown_signal() => {
            r?;
            outln!("phonetrust: stopping");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Earlier versions kept the CTL as `<static>/CTLFile.tlv`; it now lives in the database
/// with Cluster Security Mode. A CTL found there is taken over (when the database has
/// none) and renamed to `CTLFile.tlv.adopted`, so that only one CTL is ever served.
async fn adopt_static_ctl(db: &phonetrust_store::Db, static_dir: &std::path::Path) -> Result<()> {
    let path = static_dir.join(phonetrust_store::ctlfile::CTL_NAME);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    let adopted = path.with_extension("tlv.adopted");
    if db.ctl_stamp().await?.is_none() {
        phonetrust_proto::trustlist::parse(&bytes).with_context(|| {
            format!(
                "{} does not parse as a CTL: move it away (the CTL is built with `phonetrust utils ctl update CTLFile`)",
                path.display()
            )
        })?;
        db.set_cluster_security(
            phonetrust_store::ctlfile::CtlChange::Write(&bytes),
            None,
            phonetrust_proto::clock::unix_now(),
        )
        .await?;
        tracing::warn!(file = %path.display(), "CTL taken over from the static directory into the database");
    } else {
        tracing::warn!(file = %path.display(), "a CTLFile.tlv in the static directory is ignored: the CTL in the database is served");
    }
    std::fs::rename(&path, &adopted)
        .with_context(|| format!("renaming {} to {}", path.display(), adopted.display()))?;
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Raise the soft limit of open files to the hard limit; the limit in force afterwards.
pub(crate) fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    let before = l.current.unwrap_or(u64::MAX);
    if l.current != l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::warn!(error = %e, "could not raise the open-files limit to the hard limit");
            return before;
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now != before {
        tracing::info!(from = before, to = now, "open-files limit raised");
    }
    now
}
