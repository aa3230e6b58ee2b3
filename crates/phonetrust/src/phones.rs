//! Phones and phone security profiles: `phone add|set|capf|show|list|delete|import`
//! (`phone bulk` is [`crate::bulk`]),
//! `profile list|show|add|delete`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use phonetrust_store::devices::{CapfChange, DeviceChange, DeviceFilter, LscFilter, NewDevice};
use phonetrust_store::model::{
    AuthMode, CertOperation, Device, EcCurve, KeyOrder, OpState, Protocol, SecurityMode,
    SecurityProfile, format_time, parse_time,
};

use crate::fsutil::{now, read};
use crate::node::Node;

/// A store value from the command line, with the store's message on error.
pub(crate) fn parse<T: std::str::FromStr<Err = phonetrust_store::StoreError>>(
    s: &str,
) -> Result<T, String> {
    s.parse()
        .map_err(|e: phonetrust_store::StoreError| e.to_string())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("'{s}' is not on or off")),
    }
}

pub(crate) fn parse_when(s: &str) -> Result<i64, String> {
    parse_time(s).map_err(|e| e.to_string())
}

/// `phonetrust phone ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PhoneCmd {
    /// Add a phone: `phone add SEP001122334455 --model 8845 --protocol SIP`.
    Add {
        /// `SEP` followed by the 12-digit MAC address.
        name: String,
        #[command(flatten)]
        conf: PhoneConf,
    },
    /// Change a phone's model, protocol, security profile or description.
    Set {
        /// The phone.
        name: String,
        #[command(flatten)]
        conf: PhoneConf,
    },
    /// Place a phone in a device pool and/or give it a call manager group directly (the
    /// group wins); with neither, it takes the Default group.
    Place {
        /// The phone.
        name: String,
        /// Its device pool (`phonetrust cluster pool list`).
        #[arg(long)]
        pool: Option<String>,
        /// A call manager group given directly (`phonetrust cluster group list`).
        #[arg(long)]
        group: Option<String>,
    },
    /// Schedule a certificate operation (CAPF information).
    Capf(CapfArgs),
    /// Show a phone, its CAPF information and the certificates CAPF recorded.
    Show {
        /// The phone.
        name: String,
    },
    /// List phones, optionally filtered.
    List(ListArgs),
    /// Delete a phone and what CAPF recorded of it.
    Delete {
        /// The phone.
        name: String,
    },
    /// Add phones from a CSV file (header: name,model,protocol,profile,description,
    /// operation,auth,auth_string,key_order,rsa_bits,ec_curve,completes_by), with a
    /// report per row. Valid rows are committed together; exit status 1 when a row was
    /// refused.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Accept models that are not in the list of known models (newer phones).
        #[arg(long)]
        allow_unknown_model: bool,
    },
    /// Schedule, change or cancel a CAPF operation on every phone a filter matches
    /// (profile, model, LSC issuer, LSC expiring, status, names from a CSV file), with
    /// --dry-run and a per-phone report.
    #[command(subcommand)]
    Bulk(crate::bulk::BulkCmd),
}

/// A phone's configuration.
#[derive(Debug, Args)]
pub(crate) struct PhoneConf {
    /// Model, e.g. 8845 (add: default "Universal").
    #[arg(long)]
    model: Option<String>,
    /// SIP or SCCP (add: default SIP).
    #[arg(long, value_parser = parse::<Protocol>)]
    protocol: Option<Protocol>,
    /// Phone security profile (add: default "Standard Non-Secure Profile").
    #[arg(long)]
    profile: Option<String>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Accept a model that is not in the list of known models (a newer phone).
    #[arg(long)]
    allow_unknown_model: bool,
}

impl PhoneConf {
    /// The model as recorded, checked against the known models.
    fn model(&self) -> Result<Option<String>> {
        self.model
            .as_deref()
            .map(|m| phonetrust_proto::device::check_model(m, self.allow_unknown_model))
            .transpose()
            .map_err(Into::into)
    }
}

/// `phone capf`.
#[derive(Debug, Args)]
pub(crate) struct CapfArgs {
    /// The phone.
    name: String,
    /// Certificate operation: install (Install/Upgrade), delete, troubleshoot, none.
    #[arg(long, value_parser = parse::<CertOperation>)]
    operation: Option<CertOperation>,
    /// Authentication mode: null-string, auth-string, lsc (existing certificate,
    /// precedence to LSC), mic (precedence to MIC).
    #[arg(long, value_parser = parse::<AuthMode>)]
    auth: Option<AuthMode>,
    /// Authentication string for `--auth auth-string`: 4 to 16 digits.
    #[arg(long)]
    auth_string: Option<String>,
    /// Key order: rsa, ec, ec-rsa (EC preferred, RSA backup), rsa-ec.
    #[arg(long, value_parser = parse::<KeyOrder>)]
    key_order: Option<KeyOrder>,
    /// RSA key size: 1024, 2048, 3072, 4096.
    #[arg(long)]
    rsa_bits: Option<u32>,
    /// EC key size: p256, p384, p521.
    #[arg(long, value_parser = parse::<EcCurve>)]
    ec_curve: Option<EcCurve>,
    /// Operation completes by, e.g. 2026-12-01T10:00Z (default: now + "CAPF Operation
    /// Expires in (days)").
    #[arg(long, value_parser = parse_when)]
    completes_by: Option<i64>,
}

/// `phone list` filters.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// LSC status: installed or none.
    #[arg(long, value_parser = ["installed", "none"])]
    lsc: Option<String>,
    /// Operation status: none, pending, success, failed.
    #[arg(long, value_parser = parse::<OpState>)]
    status: Option<OpState>,
    /// Phones with this authentication string.
    #[arg(long)]
    auth_string: Option<String>,
    /// Phones whose LSC expires within this many days.
    #[arg(long)]
    expires_within: Option<u32>,
    /// Phones with this security profile.
    #[arg(long)]
    profile: Option<String>,
    /// Phones of this model.
    #[arg(long)]
    model: Option<String>,
    /// Phones whose LSC was issued by this issuer (as `report capf` prints it).
    #[arg(long)]
    issuer: Option<String>,
}

/// `phonetrust profile ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCmd {
    /// List the phone security profiles.
    List,
    /// Show one profile.
    Show {
        /// Its name.
        name: String,
    },
    /// Add a new profile (refused when the name exists: see `profile set`).
    Add {
        /// Its name.
        name: String,
        /// Device security mode: non-secure, authenticated, encrypted.
        #[arg(long, value_parser = parse::<SecurityMode>, default_value = "non-secure")]
        mode: SecurityMode,
        /// TFTP encrypted configuration.
        #[arg(long)]
        encrypted_config: bool,
        /// CAPF authentication mode: null-string, auth-string, lsc, mic.
        #[arg(long, value_parser = parse::<AuthMode>, default_value = "null-string")]
        auth: AuthMode,
        /// Key order: rsa, ec, ec-rsa, rsa-ec.
        #[arg(long, value_parser = parse::<KeyOrder>, default_value = "rsa")]
        key_order: KeyOrder,
        /// RSA key size.
        #[arg(long, default_value_t = 2048)]
        rsa_bits: u32,
        /// EC key size: p256, p384, p521.
        #[arg(long, value_parser = parse::<EcCurve>, default_value = "p256")]
        ec_curve: EcCurve,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change the given settings of a profile; the others stay as they are.
    Set {
        /// Its name.
        name: String,
        /// Device security mode: non-secure, authenticated, encrypted.
        #[arg(long, value_parser = parse::<SecurityMode>)]
        mode: Option<SecurityMode>,
        /// TFTP encrypted configuration: on or off.
        #[arg(long, value_parser = parse_on_off)]
        encrypted_config: Option<bool>,
        /// CAPF authentication mode: null-string, auth-string, lsc, mic.
        #[arg(long, value_parser = parse::<AuthMode>)]
        auth: Option<AuthMode>,
        /// Key order: rsa, ec, ec-rsa, rsa-ec.
        #[arg(long, value_parser = parse::<KeyOrder>)]
        key_order: Option<KeyOrder>,
        /// RSA key size.
        #[arg(long)]
        rsa_bits: Option<u32>,
        /// EC key size: p256, p384, p521.
        #[arg(long, value_parser = parse::<EcCurve>)]
        ec_curve: Option<EcCurve>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a profile no phone uses (the three standard profiles cannot be deleted).
    Delete {
        /// Its name.
        name: String,
    },
}

fn print_device(d: &Device, p: Option<&SecurityProfile>) {
    outln!("Device Name: {}", d.name);
    outln!("Model: {}", d.model);
    outln!("Device Protocol: {}", d.protocol);
    if !d.description.is_empty() {
        outln!("Description: {}", d.description);
    }
    outln!("Device Security Profile: {}", d.profile);
    if let Some(p) = p {
        outln!("Device Security Mode: {}", p.mode);
        outln!(
            "TFTP Encrypted Config: {}",
            if p.encrypted_config { "On" } else { "Off" }
        );
    }
    let c = &d.capf;
    outln!("Certificate Operation: {}", c.operation);
    outln!("Authentication Mode: {}", c.auth_mode);
    outln!(
        "Authentication String: {}",
        c.auth_string.as_deref().unwrap_or("")
    );
    outln!("Key Order: {}", c.key_order);
    outln!("RSA Key Size (Bits): {}", c.rsa_bits);
    outln!("EC Key Size (Bits): {}", c.ec_curve.label());
    outln!(
        "Operation Completes By: {}",
        c.completes_by.map(format_time).unwrap_or_default()
    );
    outln!("Certificate Operation Status: {}", c.status);
}

/// `phonetrust phone ...`.
pub(crate) async fn phone(node: &Node, cmd: PhoneCmd) -> Result<ExitCode> {
    let db = node.db().await?;
    let now = now();
    match cmd {
        PhoneCmd::Add { name, conf } => {
            let d = NewDevice {
                name,
                model: conf.model()?.unwrap_or_else(|| "Universal".into()),
                protocol: conf.protocol.unwrap_or(Protocol::Sip),
                profile: conf.profile,
                description: conf.description.unwrap_or_default(),
            };
            db.add_devices(std::slice::from_ref(&d), now).await?;
            let d = db.device(&d.name).await?;
            outln!(
                "Added {} ({}, {}, {})",
                d.name,
                d.model,
                d.protocol,
                d.profile
            );
            if let Some(w) =
                phonetrust_rules::capf::secure_registration_gap(&db, &d.name, now).await?
            {
                outln!("warning: {w}");
            }
        }
        PhoneCmd::Set { name, conf } => {
            let d = db
                .update_device(
                    &name,
                    &DeviceChange {
                        model: conf.model()?,
                        protocol: conf.protocol,
                        profile: conf.profile,
                        description: conf.description,
                    },
                    now,
                )
                .await?;
            outln!("Updated {}", d.name);
            if let Some(w) =
                phonetrust_rules::capf::secure_registration_gap(&db, &d.name, now).await?
            {
                outln!("warning: {w}");
            }
        }
        PhoneCmd::Place { name, pool, group } => {
            let p = phonetrust_store::groups::Placement { pool, group };
            phonetrust_rules::groups::place_phone(&db, &name, &p).await?;
            let nodes = phonetrust_rules::groups::Topology::load(&db)
                .await?
                .nodes_for(&p);
            outln!(
                "{name}: call manager group {} ({}); TVS {}",
                nodes.group,
                nodes.call_managers.join(", "),
                nodes.tvs.join(", ")
            );
        }
        PhoneCmd::Bulk(b) => return crate::bulk::run(&db, b).await,
        PhoneCmd::Capf(a) => {
            let d = db
                .set_capf(
                    &a.name,
                    &CapfChange {
                        operation: a.operation,
                        auth_mode: a.auth,
                        auth_string: a.auth_string,
                        key_order: a.key_order,
                        rsa_bits: a.rsa_bits,
                        ec_curve: a.ec_curve,
                        completes_by: a.completes_by,
                    },
                    now,
                )
                .await
                .map_err(|e| match e {
                    phonetrust_store::StoreError::MissingAuthString => {
                        anyhow::anyhow!("{e}: give --auth-string")
                    }
                    e => e.into(),
                })?;
            outln!(
                "{}: {} ({}), completes by {}; status: {}",
                d.name,
                d.capf.operation,
                d.capf.auth_mode,
                d.capf
                    .completes_by
                    .map(format_time)
                    .unwrap_or_else(|| "-".into()),
                d.capf.status
            );
        }
        PhoneCmd::Show { name } => {
            let d = db.device(&name).await?;
            let p = db.profile(&d.profile).await.ok();
            print_device(&d, p.as_ref());
            let place = db.placement(&d.name).await?;
            let nodes = phonetrust_rules::groups::Topology::load(&db)
                .await?
                .nodes_for(&place);
            outln!("Device Pool: {}", place.pool.as_deref().unwrap_or("-"));
            outln!(
                "Call Manager Group: {} ({})",
                nodes.group,
                nodes.call_managers.join(", ")
            );
            for c in db.device_certs(&d.name).await? {
                let k = c.kind.as_str();
                outln!("{k} MD5: {}", c.md5);
                outln!("{k} Subject: {}", c.subject);
                outln!("{k} Issued By: {}", c.issuer);
                outln!("{k} Serial Number: {}", c.serial);
                outln!("{k} Valid From: {}", format_time(c.not_before));
                outln!("{k} Valid Until: {}", format_time(c.not_after));
            }
        }
        PhoneCmd::List(a) => {
            let f = DeviceFilter {
                lsc: a.lsc.as_deref().map(|l| {
                    if l == "installed" {
                        LscFilter::Installed
                    } else {
                        LscFilter::None
                    }
                }),
                auth_string: a.auth_string,
                lsc_expires_before: a.expires_within.map(|d| now + i64::from(d) * 86_400),
                state: a.status,
                profile: a.profile,
                model: a.model,
                lsc_issuer: a.issuer,
            };
            let list = db.devices(&f).await?;
            outln!(
                "{:<16} {:<10} {:<6} {:<32} {:<16} Certificate Operation Status",
                "Device Name",
                "Model",
                "Proto",
                "Security Profile",
                "Operation"
            );
            for d in &list {
                outln!(
                    "{:<16} {:<10} {:<6} {:<32} {:<16} {}",
                    d.name,
                    d.model,
                    d.protocol.label(),
                    d.profile,
                    d.capf.operation.as_str(),
                    d.capf.status
                );
            }
            outln!("{} phone(s)", list.len());
        }
        PhoneCmd::Delete { name } => {
            db.delete_device(&name).await?;
            outln!("Deleted {}", name.to_ascii_uppercase());
        }
        PhoneCmd::Import {
            file,
            allow_unknown_model,
        } => {
            let reports = db
                .import_csv(&read(&file)?, now, allow_unknown_model)
                .await?;
            let mut refused = 0;
            for r in &reports {
                match &r.result {
                    Ok(()) => outln!("line {}: {}: added", r.line, r.name),
                    Err(e) => {
                        refused += 1;
                        outln!("line {}: {}: refused: {e}", r.line, r.name);
                    }
                }
            }
            outln!(
                "{} row(s): {} added, {refused} refused",
                reports.len(),
                reports.len() - refused
            );
            let added: Vec<String> = reports
                .iter()
                .filter(|r| r.result.is_ok())
                .map(|r| r.name.clone())
                .collect();
            let unready = phonetrust_rules::capf::imported_without_lsc(&db, &added).await?;
            if !unready.is_empty() {
                let shown: Vec<&str> = unready.iter().take(10).map(String::as_str).collect();
                outln!(
                    "warning: {} phone(s) have an authenticated or encrypted profile but no LSC yet: they will not register securely until they enrol (an operation scheduled in the file, or `phonetrust phone capf NAME --operation install`): {}{}",
                    unready.len(),
                    shown.join(" "),
                    if unready.len() > shown.len() {
                        " ..."
                    } else {
                        ""
                    }
                );
            }
            if refused > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `phonetrust profile ...`.
pub(crate) async fn profile(node: &Node, cmd: ProfileCmd) -> Result<ExitCode> {
    let db = node.db().await?;
    match cmd {
        ProfileCmd::List => {
            outln!(
                "{:<40} {:<14} {:<9} {:<44} Key Order",
                "Name",
                "Mode",
                "Enc. Cnf",
                "Authentication Mode"
            );
            for p in db.profiles().await? {
                outln!(
                    "{:<40} {:<14} {:<9} {:<44} {}",
                    p.name,
                    p.mode.label(),
                    if p.encrypted_config { "On" } else { "Off" },
                    p.auth_mode.label(),
                    p.key_order.label()
                );
            }
        }
        ProfileCmd::Show { name } => {
            let p = db.profile(&name).await?;
            outln!("Name: {}", p.name);
            outln!("Description: {}", p.description);
            outln!("Device Security Mode: {}", p.mode);
            outln!(
                "TFTP Encrypted Config: {}",
                if p.encrypted_config { "On" } else { "Off" }
            );
            outln!("Authentication Mode: {}", p.auth_mode);
            outln!("Key Order: {}", p.key_order);
            outln!("RSA Key Size (Bits): {}", p.rsa_bits);
            outln!("EC Key Size (Bits): {}", p.ec_curve.label());
        }
        ProfileCmd::Add {
            name,
            mode,
            encrypted_config,
            auth,
            key_order,
            rsa_bits,
            ec_curve,
            description,
        } => {
            let p = SecurityProfile {
                name,
                description,
                mode,
                encrypted_config,
                auth_mode: auth,
                key_order,
                rsa_bits,
                ec_curve,
            };
            db.add_profile(&p, now()).await?;
            outln!("Added phone security profile '{}'", p.name);
        }
        ProfileCmd::Set {
            name,
            mode,
            encrypted_config,
            auth,
            key_order,
            rsa_bits,
            ec_curve,
            description,
        } => {
            let ch = phonetrust_store::devices::ProfileChange {
                description,
                mode,
                encrypted_config,
                auth_mode: auth,
                key_order,
                rsa_bits,
                ec_curve,
            };
            if ch == phonetrust_store::devices::ProfileChange::default() {
                bail!(
                    "nothing to change: give at least one of --mode, --encrypted-config, --auth, --key-order, --rsa-bits, --ec-curve, --description"
                );
            }
            let p = db.change_profile(&name, &ch, now()).await?;
            outln!("Changed phone security profile '{}'", p.name);
        }
        ProfileCmd::Delete { name } => {
            db.delete_profile(&name).await?;
            outln!("Deleted phone security profile '{name}'");
        }
    }
    Ok(ExitCode::SUCCESS)
}
