//! `phonetrust phone-sim`: simulated phones from the command line. Each phone keeps its
//! flash (MIC, LSC, status messages) in `<dir>/SEP<MAC>/`, so running the same MAC again
//! is the same phone rebooting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use openssl::x509::X509;
use phonetrust_phonesim::storage::manufacturer_ca_in;
use phonetrust_phonesim::{CapfConnector, Generate, KeySource, PhoneTls, Pool, SimPhone};
use phonetrust_proto::capf_phone::{PhoneAuth, PhoneResult};

use crate::node::Node;

/// `phone-sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PhoneSimCmd {
    /// Run CAPF sessions as phones do: the operation scheduled for each phone (install,
    /// troubleshoot, delete) is carried out and its status message printed.
    Capf(CapfArgs),
    /// Boot as phones do: ITL (per-device copy first), then the configuration over TFTP or
    /// HTTP, verified against the ITL; with an encrypted config, CAPF when the partial
    /// config's certHash is not the phone's own, then the decrypted `.enc.sgn`.
    Boot(BootArgs),
    /// Show a simulated phone's flash: MIC, LSC and status messages.
    Show {
        /// The phone's MAC (12 hex digits) or SEP name.
        mac: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// The simulated factory: its manufacturer CA (made on first use), which issues the
    /// phones' MICs. Import it into CAPF-trust for MIC authentication.
    Factory {
        #[command(flatten)]
        dir: DirArg,
        /// Print the CA certificate (PEM) instead of a summary.
        #[arg(long)]
        pem: bool,
    },
}

/// Where the simulated phones keep their flash.
#[derive(Debug, clap::Args)]
pub(crate) struct DirArg {
    /// Directory of the simulated phones (one subdirectory per phone).
    #[arg(
        long = "phones-dir",
        env = "PHONETRUST_PHONES",
        default_value = "./phonetrust-phones"
    )]
    dir: PathBuf,
}

/// Options of `phone-sim capf`.
#[derive(Debug, clap::Args)]
pub(crate) struct CapfArgs {
    /// The first phone's MAC (12 hex digits, or SEP<MAC>); with --count, the next MACs follow.
    #[arg(long)]
    mac: String,
    /// How many phones (consecutive MACs).
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Phones running a session at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Model of new phones.
    #[arg(long, default_value = "8845")]
    model: String,
    /// CAPF server (HOST or HOST:PORT). Default: the CAPF server and phone port of each
    /// phone's last configuration (`phone-sim boot`), else 127.0.0.1 and the node's CAPF
    /// Phone Port (`CapfPhonePort`, with --data), else 3804. Without a port, the port of
    /// the phone's configuration, else CapfPhonePort.
    #[arg(long)]
    server: Option<String>,
    /// The CAPF certificate the phones trust (PEM), as their ITL lists it; default: the
    /// CAPF certificate of the local node (--data).
    #[arg(long)]
    capf_cert: Option<PathBuf>,
    /// Authentication string entered on the phone.
    #[arg(long, conflicts_with = "certificate")]
    auth_string: Option<String>,
    /// Authenticate with the phone's existing certificate (LSC if it has one, else MIC).
    /// Without this or --auth-string, each phone authenticates as its last configuration
    /// (`phone-sim boot`) says, and as the server's AUTH_TYPE asks when it names one.
    #[arg(long)]
    certificate: bool,
    /// Also send SUDI data (with --certificate).
    #[arg(long, requires = "certificate")]
    sudi: bool,
    /// TLS the phones speak: modern, tls12 or legacy (TLS 1.0 AES128-SHA, old firmware).
    #[arg(long, value_enum, default_value_t = TlsArg::Modern)]
    tls: TlsArg,
    /// Protocol version in the phone's replies (2 or 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    protocol_version: u8,
    /// New phones get no MIC (as phones without a factory certificate).
    #[arg(long)]
    no_mic: bool,
    /// Phones that cannot make EC keys (answer an EC request with a failure).
    #[arg(long)]
    no_ec: bool,
    /// Use N pre-generated RSA keys instead of generating one per phone (load tests).
    #[arg(long)]
    key_pool: Option<usize>,
    /// Times a phone told RETRY_LATER tries again (after the delay the server asks for).
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Key pairs the simulated factory reuses for new phones' MICs (0: a fresh RSA key
    /// per phone, slow for thousands of phones).
    #[arg(long, default_value_t = phonetrust_phonesim::Factory::DEFAULT_POOL)]
    factory_keys: usize,
    #[command(flatten)]
    dir: DirArg,
}

/// Options of `phone-sim boot`.
#[derive(Debug, clap::Args)]
pub(crate) struct BootArgs {
    /// The first phone's MAC; with --count, the next MACs follow.
    #[arg(long)]
    mac: String,
    /// How many phones (consecutive MACs).
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Phones booting at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// TFTP server (host:port) to boot from; give it again for more servers, tried in
    /// order as phones try the servers of DHCP option 150 (the next when one does not
    /// answer).
    #[arg(long, conflicts_with = "http")]
    tftp: Vec<String>,
    /// HTTP server (host:port, usually port 6970) to boot from; may be repeated as --tftp.
    #[arg(long)]
    http: Vec<String>,
    /// TFTP block size asked for.
    #[arg(long, default_value_t = 1428)]
    blksize: u16,
    /// TFTP window size asked for (RFC 7440; 1 = plain lock-step).
    #[arg(long, default_value_t = 1)]
    windowsize: u16,
    /// CAPF address to use instead of the config's CAPF host (labs without DNS).
    #[arg(long)]
    capf: Option<String>,
    /// TVS address (host:port) to ask about an unknown trust-list signer, instead of the
    /// TVS servers of the phone's last configuration.
    #[arg(long)]
    tvs: Option<String>,
    /// The phone cannot ask TVS (models without "security by default", e.g. 7940/7960):
    /// a trust list signed by a certificate its lists do not hold is refused.
    #[arg(long)]
    no_tvs: bool,
    /// Model of new phones.
    #[arg(long, default_value = "8845")]
    model: String,
    /// The authentication string to "type" when the config asks for one.
    #[arg(long)]
    auth_string: Option<String>,
    /// Key pairs the simulated factory reuses for new phones' MICs (0: a fresh RSA key
    /// per phone, slow for thousands of phones).
    #[arg(long, default_value_t = phonetrust_phonesim::Factory::DEFAULT_POOL)]
    factory_keys: usize,
    #[command(flatten)]
    dir: DirArg,
}

async fn resolve(s: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(s)
        .await
        .with_context(|| format!("resolving {s}"))?
        .next()
        .with_context(|| format!("{s} has no address"))
}

async fn boot(a: BootArgs) -> Result<ExitCode> {
    use phonetrust_phonesim::boot::{BootOptions, BootResult, Transport};
    let first = first_mac(&a.mac, a.count)?;
    let mut vias = Vec::new();
    for t in &a.tftp {
        vias.push(Transport::Tftp(
            resolve(t).await?,
            phonetrust_proto::tftp::ClientOptions {
                blksize: Some(a.blksize),
                windowsize: (a.windowsize > 1).then_some(a.windowsize),
                ..Default::default()
            },
        ));
    }
    for h in &a.http {
        vias.push(Transport::Http(resolve(h).await?));
    }
    let Some(&first_via) = vias.first() else {
        bail!("give --tftp HOST:PORT or --http HOST:PORT");
    };
    let vias = Arc::new(vias);
    let capf = match &a.capf {
        Some(c) => Some(resolve(c).await?),
        None => None,
    };
    let tvs = match &a.tvs {
        Some(t) => Some(resolve(t).await?),
        None => None,
    };
    let factory = Arc::new(Some(phonetrust_phonesim::Factory::with_pool(
        manufacturer_ca_in(&a.dir.dir)?.0,
        a.factory_keys,
    )));
    let a = Arc::new(a);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut tasks = Vec::new();
    for i in 0..u64::from(a.count) {
        let (a, factory, sem, vias) = (a.clone(), factory.clone(), sem.clone(), vias.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            let mac = format!("{:012X}", first + i);
            let mut phone =
                SimPhone::load_or_new(&a.dir.dir, &mac, &a.model, factory.as_ref().as_ref())?;
            phone.auth_string = a.auth_string.clone();
            phone.supports_tvs = !a.no_tvs;
            let before = phone.status_messages.len();
            let (r, _) = phone
                .boot_from(
                    &vias,
                    BootOptions {
                        via: first_via,
                        capf_addr: capf,
                        keys: &Generate { ec: true },
                        tvs_addr: tvs,
                    },
                )
                .await;
            phone.save(&a.dir.dir)?;
            let new = phone
                .status_messages
                .get(before..)
                .unwrap_or_default()
                .to_vec();
            anyhow::Ok((phone.state.device.clone(), r, new))
        }));
    }
    let mut failed = 0;
    let single = a.count == 1;
    for t in tasks {
        let (device, r, msgs) = t.await??;
        match r {
            BootResult::Configured { xml, encrypted } => outln!(
                "{device}: configured ({} bytes{})",
                xml.len(),
                if encrypted { ", encrypted config" } else { "" }
            ),
            BootResult::Failed(e) => {
                failed += 1;
                outln!("{device}: boot failed: {e}");
            }
        }
        if single {
            for m in msgs {
                outln!("  {m}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TlsArg {
    Modern,
    Tls12,
    Legacy,
}

/// HOST or HOST:PORT (IPv6 in brackets: `[::1]:3804`).
fn split_host_port(s: &str) -> Result<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .with_context(|| format!("'{s}': an IPv6 address needs its closing ]"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().with_context(|| format!("'{s}': bad port"))?),
            None if tail.is_empty() => None,
            None => bail!("'{s}' is not HOST or HOST:PORT"),
        };
        return Ok((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((
            h.to_string(),
            Some(
                p.parse()
                    .with_context(|| format!("'{s}': bad port '{p}'"))?,
            ),
        )),
        _ => Ok((s.to_string(), None)),
    }
}

/// Where a phone goes for CAPF: the server given (its port, else the phone's configured
/// port, else the port the node tells phones), else the CAPF server of the phone's last
/// configuration, else this machine on the port the node tells phones.
fn capf_target(
    explicit: Option<&(String, Option<u16>)>,
    configured: Option<&(String, u16)>,
    told_port: u16,
) -> (String, u16) {
    match (explicit, configured) {
        (Some((h, Some(p))), _) => (h.clone(), *p),
        (Some((h, None)), Some((_, p))) => (h.clone(), *p),
        (Some((h, None)), None) => (h.clone(), told_port),
        (None, Some((h, p))) => (h.clone(), *p),
        (None, None) => ("127.0.0.1".into(), told_port),
    }
}

/// `SEP<MAC>` of `s` (MAC or SEP name), upper case; error otherwise.
fn mac_of(s: &str) -> Result<u64> {
    match phonetrust_proto::device::DeviceName::from_mac(s) {
        Ok(d) => Ok(d.mac_number()),
        Err(_) => {
            bail!("'{s}' is not a MAC address: give 12 hex digits (e.g. 001122334455) or SEP<MAC>")
        }
    }
}

/// The first MAC of `count` consecutive phones starting at `mac`.
fn first_mac(mac: &str, count: u32) -> Result<u64> {
    let first = mac_of(mac)?;
    if count == 0 || first + u64::from(count) - 1 > 0xFFFF_FFFF_FFFF {
        bail!("--count must be at least 1 and stay within the MAC range");
    }
    Ok(first)
}

/// Run a `phone-sim` command.
pub(crate) async fn run(node: &Node, cmd: PhoneSimCmd) -> Result<ExitCode> {
    match cmd {
        PhoneSimCmd::Capf(a) => capf(node, a).await,
        PhoneSimCmd::Boot(a) => boot(a).await,
        PhoneSimCmd::Show { mac, dir } => {
            let m = mac_of(&mac)?;
            let device = format!("SEP{m:012X}");
            if !SimPhone::dir_of(&dir.dir, &device).join("model").exists() {
                bail!(
                    "no simulated phone {device} in {}: run `phonetrust phone-sim capf --mac {m:012X}` first",
                    dir.dir.display()
                );
            }
            let p = SimPhone::load_or_new(&dir.dir, &format!("{m:012X}"), "", None)?;
            outln!("Device Name: {}", p.state.device);
            outln!("Model: {}", p.model);
            let describe = |c: &Option<phonetrust_proto::cert::CertAndKey>| match c {
                None => "none".to_string(),
                Some(c) => {
                    let md5 = phonetrust_proto::cert::md5_hex(&c.cert.to_der().unwrap_or_default());
                    format!(
                        "{} (issuer {}, serial {}, valid until {}, MD5 {md5})",
                        phonetrust_proto::cert::name_string(c.cert.subject_name()),
                        phonetrust_proto::cert::name_string(c.cert.issuer_name()),
                        c.cert
                            .serial_number()
                            .to_bn()
                            .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
                            .unwrap_or_default(),
                        c.cert.not_after()
                    )
                }
            };
            outln!("MIC: {}", describe(&p.state.mic));
            outln!("LSC: {}", describe(&p.state.lsc));
            outln!("Status Messages:");
            for m in &p.status_messages {
                outln!("  {m}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PhoneSimCmd::Factory { dir, pem } => {
            let (ca, made) = manufacturer_ca_in(&dir.dir)?;
            let path = dir.dir.join("manufacturer-ca.pem");
            if pem {
                out!("{}", String::from_utf8_lossy(&ca.cert.to_pem()?));
            } else {
                outln!(
                    "{} manufacturer CA {} ({})",
                    if made { "Created" } else { "Using" },
                    phonetrust_proto::cert::name_string(ca.cert.subject_name()),
                    path.display()
                );
                outln!(
                    "For MIC authentication: phonetrust set cert import trust CAPF-trust {}",
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn capf(node: &Node, a: CapfArgs) -> Result<ExitCode> {
    let first = first_mac(&a.mac, a.count)?;
    let capf = match &a.capf_cert {
        Some(p) => {
            X509::from_pem(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("{}: not a PEM certificate", p.display()))?
        }
        None => {
            let id = phonetrust_store::identity::load(&node.data).context(
                "No valid CAPF server: give --capf-cert FILE (the CAPF certificate of the phones' ITL) or --data of a node",
            )?;
            id.get(phonetrust_pki::profiles::OwnCert::Capf)
                .context("No valid CAPF server: the node has no CAPF certificate")?
                .cert
                .clone()
        }
    };
    // What the node tells phones, when this is a node's data directory.
    let db = if phonetrust_store::identity::exists(&node.data) {
        node.db().await.ok()
    } else {
        None
    };
    let told_port = match &db {
        Some(db) => db.phone_ports().await?.capf,
        None => phonetrust_proto::ports::CAPF,
    };
    let explicit = a.server.as_deref().map(split_host_port).transpose()?;
    let tls = match a.tls {
        TlsArg::Modern => PhoneTls::Modern,
        TlsArg::Tls12 => PhoneTls::Tls12,
        TlsArg::Legacy => PhoneTls::Legacy,
    };
    let conn = Arc::new(CapfConnector::with_tls(&capf, tls).map_err(anyhow::Error::msg)?);
    let factory = if a.no_mic {
        None
    } else {
        Some(phonetrust_phonesim::Factory::with_pool(
            manufacturer_ca_in(&a.dir.dir)?.0,
            a.factory_keys,
        ))
    };
    let keys: Arc<dyn KeySource> = match a.key_pool {
        Some(n) => Arc::new(Pool::rsa(n, 2048)?),
        None => Arc::new(Generate { ec: !a.no_ec }),
    };
    // Given on the command line, or (None) as each phone's last configuration says.
    let auth = match (&a.auth_string, a.certificate) {
        (Some(s), _) => Some(PhoneAuth::Password(s.clone())),
        (None, true) => Some(PhoneAuth::Certificate { sudi: a.sudi }),
        (None, false) => None,
    };
    let a = Arc::new(a);
    let factory = Arc::new(factory);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut tasks = Vec::new();
    for i in 0..u64::from(a.count) {
        let explicit = explicit.clone();
        let (a, factory, sem, conn, keys, auth) = (
            a.clone(),
            factory.clone(),
            sem.clone(),
            conn.clone(),
            keys.clone(),
            auth.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            let mac = format!("{:012X}", first + i);
            let mut phone =
                SimPhone::load_or_new(&a.dir.dir, &mac, &a.model, factory.as_ref().as_ref())?;
            phone.state.version = a.protocol_version;
            let auth = match auth.clone() {
                Some(a) => a,
                None => match phone.configured_auth() {
                    Ok(a) => a,
                    Err(why) => {
                        phone.save(&a.dir.dir)?;
                        return anyhow::Ok((phone.state.device.clone(), PhoneResult::Failed(why)));
                    }
                },
            };
            let (host, port) =
                capf_target(explicit.as_ref(), phone.capf_server.as_ref(), told_port);
            let addr = match tokio::net::lookup_host((host.as_str(), port))
                .await
                .ok()
                .and_then(|mut i| i.next())
            {
                Some(addr) => addr,
                None => {
                    phone.status("No valid CAPF server");
                    phone.save(&a.dir.dir)?;
                    return anyhow::Ok((
                        phone.state.device.clone(),
                        PhoneResult::Failed(format!("No valid CAPF server: cannot resolve {host}")),
                    ));
                }
            };
            let mut tries = 0;
            let result = loop {
                let r = phone
                    .capf_via(addr, &conn, auth.clone(), keys.as_ref())
                    .await;
                match r {
                    PhoneResult::RetryLater(s) if tries < a.retries => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_secs(u64::from(s.min(600))))
                            .await;
                    }
                    other => break other,
                }
            };
            phone.save(&a.dir.dir)?;
            anyhow::Ok((phone.state.device.clone(), result))
        }));
    }
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok((device, r)) => {
                // What the server recorded, when this is its data directory.
                let recorded = match (&r, &db) {
                    (PhoneResult::Failed(_), Some(db)) => db
                        .device(&device)
                        .await
                        .ok()
                        .map(|d| d.capf.status)
                        .filter(|s| !s.is_empty() && s != "Operation Pending"),
                    _ => None,
                };
                let ok = matches!(
                    r,
                    PhoneResult::Installed
                        | PhoneResult::Deleted
                        | PhoneResult::Fetched
                        | PhoneResult::NothingToDo
                );
                if !ok {
                    failed += 1;
                }
                match &r {
                    PhoneResult::Failed(why) => match &recorded {
                        Some(status) => outln!(
                            "{device}: {} (the server recorded: {status}; {why})",
                            r.status_message()
                        ),
                        None => outln!("{device}: {} ({why})", r.status_message()),
                    },
                    PhoneResult::RetryLater(s) => {
                        outln!(
                            "{device}: {} (server busy, retry in {s} s)",
                            r.status_message()
                        )
                    }
                    _ => outln!("{device}: {}", r.status_message()),
                }
            }
            Err(e) => {
                failed += 1;
                outln!("phone: {e:#}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capf_server_a_phone_goes_to() {
        let cfg = ("cucm.example.test".to_string(), 23804);
        assert_eq!(
            split_host_port("10.0.0.1:3804").unwrap(),
            ("10.0.0.1".into(), Some(3804))
        );
        assert_eq!(split_host_port("cucm").unwrap(), ("cucm".into(), None));
        assert_eq!(split_host_port("[::1]:5").unwrap(), ("::1".into(), Some(5)));
        assert!(split_host_port("h:x").is_err());
        // Given with a port: that one.
        let e = ("10.0.0.1".to_string(), Some(3805));
        assert_eq!(
            capf_target(Some(&e), Some(&cfg), 3804),
            ("10.0.0.1".into(), 3805)
        );
        // Given without a port: the phone's configured port, else CapfPhonePort.
        let h = ("10.0.0.1".to_string(), None);
        assert_eq!(
            capf_target(Some(&h), Some(&cfg), 3804),
            ("10.0.0.1".into(), 23804)
        );
        assert_eq!(
            capf_target(Some(&h), None, 13804),
            ("10.0.0.1".into(), 13804)
        );
        // Not given: the configuration, else loopback and CapfPhonePort.
        assert_eq!(capf_target(None, Some(&cfg), 3804), cfg.clone());
        assert_eq!(capf_target(None, None, 13804), ("127.0.0.1".into(), 13804));
    }
}
