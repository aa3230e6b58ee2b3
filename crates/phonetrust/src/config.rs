//! One configuration for every command.
//!
//! Each setting is taken from, strongest first:
//!
//! 1. the command line (`--database`, `--static-dir`, `serve --capf-port`, …);
//! 2. the environment (`PHONETRUST_DATA`, `PHONETRUST_DATABASE`, `PHONETRUST_CONFIG`,
//!    `PHONETRUST_STATIC_DIR`, `PHONETRUST_BIND`, … — clap reads them, `--help` names
//!    them);
//! 3. the config file: `--config FILE` / `PHONETRUST_CONFIG`, else
//!    `<data>/phonetrust.toml` when it exists; relative paths in it are relative to the
//!    file's directory;
//! 4. for the ports phones are told, the enterprise parameters (`CapfPhonePort`,
//!    `TvsPort`, `TftpPort`, `HttpPort`, defined once in `phonetrust_store::params`);
//! 5. the built-in defaults.
//!
//! Every command resolves through [`Settings::resolve`], so `serve --config X` and
//! `utils ctl …` with the same environment work on the same database. A config file that
//! does not parse, or has a key this version does not know, is an error naming the file
//! and the line: never silently ignored.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use openssl::ssl::SslVersion;
use serde::Deserialize;

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GlobalArgs {
    /// Data directory (identity, database, `phonetrust.toml`).
    #[arg(
        long,
        global = true,
        env = "PHONETRUST_DATA",
        default_value = "./phonetrust-data"
    )]
    pub(crate) data: PathBuf,

    /// Database URL (default: `[server] database` of the config file, else
    /// sqlite://<data>/phonetrust.db; or postgres://user@host/db).
    #[arg(long, global = true, env = "PHONETRUST_DATABASE")]
    pub(crate) database: Option<String>,

    /// Config file (TOML; default `<data>/phonetrust.toml` when it exists).
    #[arg(long, global = true, env = "PHONETRUST_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    /// Directory of static files served over TFTP and HTTP (firmware, ringtones;
    /// default `[provision] static_dir` of the config file, else `<data>/tftp`).
    #[arg(long, global = true, env = "PHONETRUST_STATIC_DIR")]
    pub(crate) static_dir: Option<PathBuf>,

    /// More log output (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// The config file (`phonetrust.toml`). Unknown sections and keys are refused.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub(crate) server: ServerSection,
    #[serde(default)]
    pub(crate) capf: CapfSection,
    #[serde(default)]
    pub(crate) tftp: TftpSection,
    #[serde(default)]
    pub(crate) http: HttpSection,
    #[serde(default)]
    pub(crate) tvs: TvsSection,
    #[serde(default)]
    pub(crate) provision: ProvisionSection,
    #[serde(default)]
    pub(crate) monitor: MonitorSection,
    #[serde(default)]
    pub(crate) lifecycle: LifecycleSection,
    #[serde(default)]
    pub(crate) web: WebSection,
}

/// `[web]`: the web administration (HTTPS).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebSection {
    /// Off with `false` (default on; it serves only its set-up page until an account exists).
    pub(crate) enabled: Option<bool>,
    /// Port (default 8443).
    pub(crate) port: Option<u16>,
    /// Address (default `[server] bind`).
    pub(crate) bind: Option<IpAddr>,
    /// A file holding the bearer token `/metrics` requires (0600); without it `/metrics`
    /// answers without login.
    pub(crate) metrics_token_file: Option<PathBuf>,
}

/// `[lifecycle]`: LSC renewal by policy (off unless `enabled = true`).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct LifecycleSection {
    /// On with `true` (default off: nothing is scheduled by itself).
    pub(crate) enabled: Option<bool>,
    /// Renew once this share of an LSC's validity has passed, e.g. 0.8.
    pub(crate) renew_after_share: Option<f64>,
    /// Renew this many days before expiry (default 30).
    pub(crate) renew_days_before: Option<u32>,
    /// Renew every LSC that no longer chains to the current CAPF certificate (default
    /// true: a regenerated or replaced CAPF retires the earlier generation).
    pub(crate) renew_retired_generations: Option<bool>,
    /// Most phones scheduled per hour (default 100).
    pub(crate) max_per_hour: Option<u32>,
    /// Only inside this daily window, `HH:MM-HH:MM` UTC.
    pub(crate) window: Option<String>,
    /// The reset hook: a command and its first arguments; the phone names follow.
    pub(crate) reset_command: Option<Vec<String>>,
    /// The reset hook: a webhook receiving the batch's phone names as JSON.
    pub(crate) reset_webhook: Option<String>,
    /// CA certificates (PEM) for an https:// reset_webhook (default: the system's).
    pub(crate) reset_webhook_ca_file: Option<PathBuf>,
}

impl LifecycleSection {
    /// The policy and the hook; None when off.
    pub(crate) fn resolve(
        &self,
    ) -> Result<
        Option<(
            phonetrust_rules::lifecycle::Policy,
            phonetrust_services::renewal::ResetHook,
        )>,
    > {
        use phonetrust_rules::lifecycle::{Policy, Window};
        if self.enabled != Some(true) {
            return Ok(None);
        }
        if let Some(s) = self.renew_after_share
            && !(s > 0.0 && s < 1.0)
        {
            anyhow::bail!(
                "[lifecycle] renew_after_share = {s}: a share of the validity between 0 and 1, e.g. 0.8"
            );
        }
        let window = self
            .window
            .as_deref()
            .map(Window::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("[lifecycle] {e}"))?;
        let max = self.max_per_hour.unwrap_or(100);
        if max == 0 {
            anyhow::bail!("[lifecycle] max_per_hour = 0: at least 1 (or enabled = false)");
        }
        if matches!(&self.reset_command, Some(c) if c.is_empty()) {
            anyhow::bail!(
                "[lifecycle] reset_command is empty: give the program and its arguments, or leave it out"
            );
        }
        Ok(Some((
            Policy {
                renew_after_share: self.renew_after_share,
                renew_days_before: Some(self.renew_days_before.unwrap_or(30)),
                renew_retired: self.renew_retired_generations.unwrap_or(true),
                max_per_hour: max,
                window,
            },
            phonetrust_services::renewal::ResetHook {
                command: self.reset_command.clone(),
                webhook: self.reset_webhook.as_ref().map(|u| {
                    phonetrust_services::notify::Webhook {
                        url: u.clone(),
                        ca_file: self.reset_webhook_ca_file.clone(),
                    }
                }),
                timeout: None,
            },
        )))
    }
}

/// `[monitor]`: the certificate monitor of `serve` and its notification targets.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct MonitorSection {
    /// Off with `false` (default on: findings go to the log at least).
    pub(crate) enabled: Option<bool>,
    /// Days before expiry a certificate is reported (default 30).
    pub(crate) warn_days: Option<u32>,
    /// Seconds between two checks (default 3600).
    pub(crate) interval_secs: Option<u64>,
    /// Most notices per target in one check (default 100; the rest at the next check).
    pub(crate) max_per_check: Option<usize>,
    /// Webhook URL (http:// or https://) that receives one JSON POST per notice.
    pub(crate) webhook: Option<String>,
    /// CA certificates (PEM) to verify an https:// webhook with (default: the system's).
    pub(crate) webhook_ca_file: Option<PathBuf>,
    /// SMTP server, `HOST:PORT` (port 587 when left out); STARTTLS is required.
    pub(crate) smtp_server: Option<String>,
    /// The name the SMTP server's certificate carries (default: its host).
    pub(crate) smtp_tls_name: Option<String>,
    /// CA certificates (PEM) to verify the SMTP server with (default: the system's).
    pub(crate) smtp_ca_file: Option<PathBuf>,
    /// Sender address.
    pub(crate) smtp_from: Option<String>,
    /// Recipients.
    pub(crate) smtp_to: Option<Vec<String>>,
    /// User for SMTP AUTH.
    pub(crate) smtp_user: Option<String>,
    /// File holding the SMTP password (mode 0600 or 0400; not readable by others).
    pub(crate) smtp_password_file: Option<PathBuf>,
}

impl MonitorSection {
    /// The monitor's settings and targets; None when it is off.
    pub(crate) fn resolve(
        &self,
    ) -> Result<
        Option<(
            phonetrust_services::monitor::MonitorConfig,
            phonetrust_services::notify::Notifier,
        )>,
    > {
        use phonetrust_services::monitor::MonitorConfig;
        use phonetrust_services::notify::{Notifier, Smtp, Webhook};
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let d = MonitorConfig::default();
        let interval = self.interval_secs.unwrap_or(d.interval.as_secs());
        if interval < 60 {
            anyhow::bail!(
                "[monitor] interval_secs = {interval}: at least 60 (default 3600, one check an hour)"
            );
        }
        let cfg = MonitorConfig {
            interval: std::time::Duration::from_secs(interval),
            warn_days: self.warn_days.unwrap_or(d.warn_days),
            max_per_check: self.max_per_check.unwrap_or(d.max_per_check).max(1),
        };
        let webhook = self.webhook.as_ref().map(|url| Webhook {
            url: url.clone(),
            ca_file: self.webhook_ca_file.clone(),
        });
        let smtp = match &self.smtp_server {
            None => None,
            Some(server) => {
                let (host, port) = match server.rsplit_once(':') {
                    Some((h, p)) if !h.is_empty() && !h.ends_with(':') => (
                        h.trim_matches(['[', ']']).to_string(),
                        p.parse::<u16>().map_err(|_| {
                            anyhow::anyhow!(
                                "[monitor] smtp_server = {server:?}: the port is not a number"
                            )
                        })?,
                    ),
                    _ => (server.trim_matches(['[', ']']).to_string(), 587),
                };
                let from = self.smtp_from.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "[monitor] smtp_server is set: set smtp_from (the sender address) too"
                    )
                })?;
                let to = self.smtp_to.clone().unwrap_or_default();
                if to.is_empty() {
                    anyhow::bail!("[monitor] smtp_server is set: set smtp_to (the recipients) too");
                }
                let credentials = match (&self.smtp_user, &self.smtp_password_file) {
                    (None, None) => None,
                    (Some(u), Some(f)) => {
                        Some((u.clone(), read_secret("[monitor] smtp_password_file", f)?))
                    }
                    _ => anyhow::bail!(
                        "[monitor] smtp_user and smtp_password_file go together: set both or neither"
                    ),
                };
                Some(Smtp {
                    host,
                    port,
                    tls_name: self.smtp_tls_name.clone(),
                    ca_file: self.smtp_ca_file.clone(),
                    from,
                    to,
                    credentials,
                })
            }
        };
        Ok(Some((
            cfg,
            Notifier {
                webhook,
                smtp,
                timeout: None,
            },
        )))
    }
}

/// A secret from a file that only its owner may read; its first line.
pub(crate) fn read_secret(what: &str, path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        anyhow::bail!(
            "{what} {} can be read by others: chmod 600 it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// `[server]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// Address the services listen on.
    pub(crate) bind: Option<IpAddr>,
    /// Database URL.
    pub(crate) database: Option<String>,
}

/// `[tftp]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TftpSection {
    /// Port this process listens on.
    pub(crate) port: Option<u16>,
    /// Transfers at once, all clients.
    pub(crate) max_transfers: Option<usize>,
    /// Transfers at once from one address.
    pub(crate) max_transfers_per_address: Option<usize>,
}

/// `[http]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpSection {
    /// Port this process listens on.
    pub(crate) port: Option<u16>,
    /// Connections at once, all clients.
    pub(crate) max_connections: Option<usize>,
    /// Connections at once from one address.
    pub(crate) max_connections_per_address: Option<usize>,
}

/// `[tvs]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TvsSection {
    /// Port this process listens on.
    pub(crate) port: Option<u16>,
    /// Seconds a phone may cache a "valid" answer (default 86400).
    pub(crate) ttl: Option<u32>,
    /// Connections at once (sessions and those waiting for a slot).
    pub(crate) max_connections: Option<usize>,
    /// Connections at once from one address.
    pub(crate) max_connections_per_address: Option<usize>,
    /// TLS handshakes in progress at once.
    pub(crate) max_handshakes: Option<usize>,
    /// TLS handshakes in progress at once from one address.
    pub(crate) max_handshakes_per_address: Option<usize>,
}

/// `[provision]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProvisionSection {
    /// Static files served over TFTP and HTTP.
    pub(crate) static_dir: Option<PathBuf>,
}

/// `[capf]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CapfSection {
    /// Port this process listens on.
    pub(crate) port: Option<u16>,
    /// Lowest TLS version: 1.0, 1.1, 1.2, 1.3.
    pub(crate) min_tls: Option<String>,
    /// Sessions at once.
    pub(crate) max_sessions: Option<usize>,
    /// Sessions at once from one address.
    pub(crate) max_sessions_per_address: Option<usize>,
    /// TLS handshakes in progress at once.
    pub(crate) max_handshakes: Option<usize>,
    /// TLS handshakes in progress at once from one address.
    pub(crate) max_handshakes_per_address: Option<usize>,
    /// Seconds a refused phone is told to wait.
    pub(crate) retry_delay: Option<u32>,
    /// Failed authentications of one phone (within 10 minutes) before it is locked;
    /// an address is locked after ten times as many.
    pub(crate) auth_failures_before_backoff: Option<u32>,
    /// Group-commit delay in milliseconds (at most 100).
    pub(crate) batch_delay_ms: Option<u64>,
}

/// What every command works with, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The data directory.
    pub(crate) data: PathBuf,
    /// The database URL.
    pub(crate) db_url: String,
    /// The static directory of TFTP and HTTP.
    pub(crate) static_dir: PathBuf,
    /// The config file read, if any.
    pub(crate) config_path: Option<PathBuf>,
    /// Its content (all defaults when there is none).
    pub(crate) file: std::sync::Arc<ConfigFile>,
}

impl Settings {
    /// Resolve the global options (command line and environment, through clap), the
    /// config file and the defaults.
    pub(crate) fn resolve(g: &GlobalArgs) -> Result<Self> {
        let default_path = g.data.join("phonetrust.toml");
        let (path, explicit) = match &g.config {
            Some(p) => (p.clone(), true),
            None => (default_path, false),
        };
        let (file, config_path) = match std::fs::read_to_string(&path) {
            Ok(text) => (parse_file(&path, &text)?, Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                (ConfigFile::default(), None)
            }
            Err(e) => bail!(
                "config file {}: {e} (give an existing file with --config or PHONETRUST_CONFIG)",
                path.display()
            ),
        };
        Ok(Self::layer(g, file, config_path))
    }

    /// The layering itself, for a parsed file: command line and environment over the
    /// file over the defaults.
    pub(crate) fn layer(g: &GlobalArgs, file: ConfigFile, config_path: Option<PathBuf>) -> Self {
        let base = config_path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let db_url = g
            .database
            .clone()
            .or_else(|| file.server.database.clone())
            .unwrap_or_else(|| phonetrust_store::db::default_url(&g.data));
        let static_dir = g
            .static_dir
            .clone()
            .or_else(|| file.provision.static_dir.as_ref().map(|p| base.join(p)))
            .unwrap_or_else(|| g.data.join("tftp"));
        Self {
            data: g.data.clone(),
            db_url,
            static_dir,
            config_path,
            file: std::sync::Arc::new(file),
        }
    }
}

/// Parse a config file; an error names the file, the line and the column.
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<ConfigFile> {
    toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let before = text.get(..s.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        anyhow::anyhow!(
            "config file {}: {at}{} (fix or remove the file)",
            path.display(),
            e.message()
        )
    })
}

/// `text` (a config file, possibly empty) with `[server] database` set to `url`, the rest
/// kept as written (comments included): the key's line replaced, else a line added under
/// `[server]`, else a `[server]` section appended. None when the result would not read
/// back as that URL (a layout this line-based edit does not handle): the administrator
/// is then told to set it.
pub(crate) fn with_database(text: &str, url: &str) -> Option<String> {
    let value = toml::Value::String(url.to_string()).to_string();
    let line = format!("database = {value}");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = |l: &str| l.trim().starts_with('[');
    let server = lines.iter().position(|l| l.trim() == "[server]");
    match server {
        Some(h) => {
            let end = lines
                .iter()
                .skip(h + 1)
                .position(|l| header(l))
                .map_or(lines.len(), |i| h + 1 + i);
            let existing = (h + 1..end).find(|&i| {
                lines.get(i).is_some_and(|l| {
                    l.trim_start()
                        .strip_prefix("database")
                        .is_some_and(|r| r.trim_start().starts_with('='))
                })
            });
            match existing.and_then(|i| lines.get_mut(i)) {
                Some(l) => *l = line,
                None => lines.insert(h + 1, line),
            }
        }
        None => {
            if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.push("[server]".into());
            lines.push(line);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    let back = parse_file(Path::new("-"), &out).ok()?;
    (back.server.database.as_deref() == Some(url)).then_some(out)
}

/// A TLS version as the config file and `--min-tls` spell it.
pub(crate) fn tls_version(s: &str) -> Result<SslVersion> {
    Ok(match s {
        "1.0" | "1" => SslVersion::TLS1,
        "1.1" => SslVersion::TLS1_1,
        "1.2" => SslVersion::TLS1_2,
        "1.3" => SslVersion::TLS1_3,
        other => bail!("min_tls '{other}': use 1.0, 1.1, 1.2 or 1.3"),
    })
}

/// How administrators spell a TLS version: "TLS 1.0".
pub(crate) fn tls_name(v: SslVersion) -> &'static str {
    match v {
        SslVersion::TLS1 => "TLS 1.0",
        SslVersion::TLS1_1 => "TLS 1.1",
        SslVersion::TLS1_2 => "TLS 1.2",
        SslVersion::TLS1_3 => "TLS 1.3",
        _ => "TLS",
    }
}

/// The group-commit delay of `[capf] batch_delay_ms`, checked.
pub(crate) fn batch_delay(
    ms: Option<u64>,
    default: std::time::Duration,
) -> Result<std::time::Duration> {
    match ms {
        Some(ms) if ms > 100 => bail!("[capf] batch_delay_ms {ms}: at most 100"),
        Some(ms) => Ok(std::time::Duration::from_millis(ms)),
        None => Ok(default),
    }
}

/// The first of `layers` that is set: command line (with environment), config file,
/// enterprise parameter, default.
pub(crate) fn first<T: Copy>(layers: &[Option<T>], default: T) -> T {
    layers.iter().flatten().next().copied().unwrap_or(default)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// `cluster migrate` points the node at the new database: the line replaced, added
    /// under `[server]` or in a new section, the rest (comments) kept; a URL that needs
    /// quoting stays one string; an unreadable result is not written.
    #[test]
    fn the_database_url_is_set_in_place() {
        let url = "postgres://pt:se\"cret@db/cluster";
        assert_eq!(
            with_database("", url).unwrap(),
            "[server]\ndatabase = 'postgres://pt:se\"cret@db/cluster'\n"
        );
        let t = "# node A\n[server]\nbind = \"0.0.0.0\"\ndatabase = \"sqlite:///x.db\" # old\n\n[capf]\nport = 3804\n";
        let out = with_database(t, "postgres://db/c").unwrap();
        assert_eq!(
            out,
            "# node A\n[server]\nbind = \"0.0.0.0\"\ndatabase = \"postgres://db/c\"\n\n[capf]\nport = 3804\n"
        );
        let t = "[capf]\nport = 3804\n[server]\nbind = \"0.0.0.0\"\n";
        let out = with_database(t, "postgres://db/c").unwrap();
        assert!(
            out.starts_with("[capf]\nport = 3804\n[server]\ndatabase = \"postgres://db/c\"\nbind"),
            "{out}"
        );
        let t = "[capf]\nretry_delay = 1\n";
        assert_eq!(
            with_database(t, "postgres://db/c").unwrap(),
            "[capf]\nretry_delay = 1\n\n[server]\ndatabase = \"postgres://db/c\"\n"
        );
        // A dotted key elsewhere (`server.database = ...`) is not edited line by line.
        assert_eq!(
            with_database("server.database = \"a\"\n", "postgres://db/c"),
            None
        );
    }
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        g: GlobalArgs,
    }

    fn globals(args: &[&str]) -> GlobalArgs {
        let mut v = vec!["phonetrust"];
        v.extend_from_slice(args);
        T::try_parse_from(v).unwrap().g
    }

    fn file(text: &str) -> ConfigFile {
        parse_file(Path::new("/etc/phonetrust/phonetrust.toml"), text).unwrap()
    }

    #[test]
    fn defaults_without_file_or_options() {
        let s = Settings::layer(&globals(&["--data", "/d"]), ConfigFile::default(), None);
        assert_eq!(s.db_url, "sqlite:///d/phonetrust.db");
        assert_eq!(s.static_dir, PathBuf::from("/d/tftp"));
    }

    #[test]
    fn the_file_beats_the_defaults() {
        let f = file(
            "[server]\ndatabase = \"postgres://pt@db/pt\"\n[provision]\nstatic_dir = \"tftp-files\"\n",
        );
        let s = Settings::layer(
            &globals(&["--data", "/d"]),
            f,
            Some(PathBuf::from("/etc/phonetrust/phonetrust.toml")),
        );
        assert_eq!(s.db_url, "postgres://pt@db/pt");
        // Relative to the file's directory.
        assert_eq!(s.static_dir, PathBuf::from("/etc/phonetrust/tftp-files"));
    }

    #[test]
    fn the_command_line_beats_the_file() {
        let f = file(
            "[server]\ndatabase = \"postgres://pt@db/pt\"\n[provision]\nstatic_dir = \"/srv/a\"\n",
        );
        let s = Settings::layer(
            &globals(&[
                "--data",
                "/d",
                "--database",
                "sqlite:///x.db",
                "--static-dir",
                "/srv/b",
            ]),
            f,
            None,
        );
        assert_eq!(s.db_url, "sqlite:///x.db");
        assert_eq!(s.static_dir, PathBuf::from("/srv/b"));
    }

    #[test]
    fn first_layer_wins() {
        assert_eq!(first(&[None, Some(2), Some(3)], 9), 2);
        assert_eq!(first::<u16>(&[None, None], 9), 9);
        assert_eq!(first(&[Some(1), Some(2)], 9), 1);
    }

    #[test]
    fn a_malformed_file_names_the_line() {
        let p = Path::new("/etc/pt.toml");
        let e = parse_file(p, "[server]\nbind = \"0.0.0.0\"\ndatabase = \n").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("/etc/pt.toml: line 3"), "{m}");
        let e = parse_file(p, "[capf]\nport = 3804\nmax_session = 5\n").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("line 3, column 1"), "{m}");
        assert!(m.contains("max_session"), "{m}");
        let e = parse_file(p, "[cpaf]\nport = 1\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = parse_file(p, "[tvs]\nport = 70000\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_a_missing_default_is_not() {
        let tmp = phonetrust_testsupport::tempdir("config");
        let d = tmp.path().to_string_lossy().into_owned();
        assert!(Settings::resolve(&globals(&["--data", &d])).is_ok());
        let missing = format!("{d}/nope.toml");
        let e = Settings::resolve(&globals(&["--data", &d, "--config", &missing])).unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
        std::fs::write(tmp.path().join("phonetrust.toml"), "[server\n").unwrap();
        let e = Settings::resolve(&globals(&["--data", &d])).unwrap_err();
        assert!(e.to_string().contains("phonetrust.toml: line 1"), "{e}");
    }

    #[test]
    fn the_lifecycle_section_is_off_unless_enabled() {
        assert!(file("").lifecycle.resolve().unwrap().is_none());
        let (p, h) = file(
            "[lifecycle]\nenabled = true\nwindow = \"01:00-05:00\"\nmax_per_hour = 20\nreset_command = [\"/bin/echo\", \"reset\"]\n",
        )
        .lifecycle
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(p.max_per_hour, 20);
        assert_eq!(p.renew_days_before, Some(30));
        assert!(p.renew_retired);
        assert_eq!(p.window.unwrap().to_string(), "01:00-05:00 UTC");
        assert_eq!(h.command.unwrap(), ["/bin/echo", "reset"]);
        for (text, needle) in [
            ("renew_after_share = 1.5", "between 0 and 1"),
            ("window = \"1-5\"", "HH:MM-HH:MM"),
            ("max_per_hour = 0", "at least 1"),
            ("reset_command = []", "reset_command is empty"),
        ] {
            let e = file(&format!("[lifecycle]\nenabled = true\n{text}\n"))
                .lifecycle
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_monitor_section_resolves_with_clear_refusals() {
        let on = file("").monitor.resolve().unwrap().unwrap();
        assert_eq!(on.0.interval.as_secs(), 3_600);
        assert_eq!(on.0.warn_days, 30);
        assert!(on.1.targets().is_empty(), "log only by default");
        assert!(
            file("[monitor]\nenabled = false\n")
                .monitor
                .resolve()
                .unwrap()
                .is_none()
        );
        let m = file(
            "[monitor]\nwarn_days = 45\nsmtp_server = \"mail.example.com\"\nsmtp_from = \"a@example.com\"\nsmtp_to = [\"b@example.com\"]\nwebhook = \"https://hooks.example.com/x\"\n",
        )
        .monitor
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(m.0.warn_days, 45);
        let smtp = m.1.smtp.as_ref().unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("mail.example.com", 587));
        assert_eq!(m.1.targets(), ["webhook", "smtp"]);
        for (text, needle) in [
            (
                "[monitor]\nsmtp_server = \"m:25\"\nsmtp_to = [\"b@x\"]\n",
                "set smtp_from",
            ),
            (
                "[monitor]\nsmtp_server = \"m:25\"\nsmtp_from = \"a@x\"\n",
                "set smtp_to",
            ),
            (
                "[monitor]\nsmtp_server = \"m:x\"\n",
                "the port is not a number",
            ),
            ("[monitor]\ninterval_secs = 5\n", "at least 60"),
            (
                "[monitor]\nsmtp_server = \"m\"\nsmtp_from = \"a@x\"\nsmtp_to = [\"b@x\"]\nsmtp_user = \"u\"\n",
                "go together",
            ),
        ] {
            let e = file(text).monitor.resolve().unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn tls_versions_are_named_as_administrators_say_them() {
        assert_eq!(tls_name(tls_version("1.0").unwrap()), "TLS 1.0");
        assert_eq!(tls_name(tls_version("1.3").unwrap()), "TLS 1.3");
        assert!(tls_version("1.4").is_err());
    }
}
