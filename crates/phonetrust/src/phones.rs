//! Phones and phone security profiles: `phone add|set|capf|show|list|delete|import`,
//! `profile list|show|add|delete`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
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

fn parse_when(s: &str) -> Result<i64, String> {
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
    },
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
    /// Add or change a profile.
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
    /// Delete a profile no phone uses.
    Delete {
        /// Its name.
        name: String,
    },
}

fn print_device(d: &Device, p: Option<&SecurityProfile>) {
    println!("Device Name: {}", d.name);
    println!("Model: {}", d.model);
    println!("Device Protocol: {}", d.protocol);
    if !d.description.is_empty() {
        println!("Description: {}", d.description);
    }
    println!("Device Security Profile: {}", d.profile);
    if let Some(p) = p {
        println!("Device Security Mode: {}", p.mode);
        println!(
            "TFTP Encrypted Config: {}",
            if p.encrypted_config { "On" } else { "Off" }
        );
    }
    let c = &d.capf;
    println!("Certificate Operation: {}", c.operation);
    println!("Authentication Mode: {}", c.auth_mode);
    println!(
        "Authentication String: {}",
        c.auth_string.as_deref().unwrap_or("")
    );
    println!("Key Order: {}", c.key_order);
    println!("RSA Key Size (Bits): {}", c.rsa_bits);
    println!("EC Key Size (Bits): {}", c.ec_curve.label());
    println!(
        "Operation Completes By: {}",
        c.completes_by.map(format_time).unwrap_or_default()
    );
    println!("Certificate Operation Status: {}", c.status);
}

/// `phonetrust phone ...`.
pub(crate) async fn phone(node: &Node, cmd: PhoneCmd) -> Result<ExitCode> {
    let db = node.db().await?;
    let now = now();
    match cmd {
        PhoneCmd::Add { name, conf } => {
            let d = NewDevice {
                name,
                model: conf.model.unwrap_or_else(|| "Universal".into()),
                protocol: conf.protocol.unwrap_or(Protocol::Sip),
                profile: conf.profile,
                description: conf.description.unwrap_or_default(),
            };
            db.add_devices(std::slice::from_ref(&d), now).await?;
            let d = db.device(&d.name).await?;
            println!(
                "Added {} ({}, {}, {})",
                d.name, d.model, d.protocol, d.profile
            );
        }
        PhoneCmd::Set { name, conf } => {
            let d = db
                .update_device(
                    &name,
                    &DeviceChange {
                        model: conf.model,
                        protocol: conf.protocol,
                        profile: conf.profile,
                        description: conf.description,
                    },
                    now,
                )
                .await?;
            println!("Updated {}", d.name);
        }
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
                .await?;
            println!(
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
            for c in db.device_certs(&d.name).await? {
                let k = c.kind.as_str();
                println!("{k} MD5: {}", c.md5);
                println!("{k} Subject: {}", c.subject);
                println!("{k} Issued By: {}", c.issuer);
                println!("{k} Serial Number: {}", c.serial);
                println!("{k} Valid From: {}", format_time(c.not_before));
                println!("{k} Valid Until: {}", format_time(c.not_after));
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
            };
            let list = db.devices(&f).await?;
            println!(
                "{:<16} {:<10} {:<6} {:<32} {:<16} Certificate Operation Status",
                "Device Name", "Model", "Proto", "Security Profile", "Operation"
            );
            for d in &list {
                println!(
                    "{:<16} {:<10} {:<6} {:<32} {:<16} {}",
                    d.name,
                    d.model,
                    d.protocol.label(),
                    d.profile,
                    d.capf.operation.as_str(),
                    d.capf.status
                );
            }
            println!("{} phone(s)", list.len());
        }
        PhoneCmd::Delete { name } => {
            db.delete_device(&name).await?;
            println!("Deleted {}", name.to_ascii_uppercase());
        }
        PhoneCmd::Import { file } => {
            let reports = db.import_csv(&read(&file)?, now).await?;
            let mut refused = 0;
            for r in &reports {
                match &r.result {
                    Ok(()) => println!("line {}: {}: added", r.line, r.name),
                    Err(e) => {
                        refused += 1;
                        println!("line {}: {}: refused: {e}", r.line, r.name);
                    }
                }
            }
            println!(
                "{} row(s): {} added, {refused} refused",
                reports.len(),
                reports.len() - refused
            );
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
            println!(
                "{:<40} {:<14} {:<9} {:<44} Key Order",
                "Name", "Mode", "Enc. Cnf", "Authentication Mode"
            );
            for p in db.profiles().await? {
                println!(
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
            println!("Name: {}", p.name);
            println!("Description: {}", p.description);
            println!("Device Security Mode: {}", p.mode);
            println!(
                "TFTP Encrypted Config: {}",
                if p.encrypted_config { "On" } else { "Off" }
            );
            println!("Authentication Mode: {}", p.auth_mode);
            println!("Key Order: {}", p.key_order);
            println!("RSA Key Size (Bits): {}", p.rsa_bits);
            println!("EC Key Size (Bits): {}", p.ec_curve.label());
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
            db.put_profile(&p, now()).await?;
            println!("Saved phone security profile '{}'", p.name);
        }
        ProfileCmd::Delete { name } => {
            db.delete_profile(&name).await?;
            println!("Deleted phone security profile '{name}'");
        }
    }
    Ok(ExitCode::SUCCESS)
}
