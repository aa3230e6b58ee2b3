//! Node administration: `init` and the `show cert` commands of the seeds' CLI.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use phonetrust_pki::DistinguishedName;
use phonetrust_pki::details::details;
use phonetrust_pki::profiles::{NodeIdentity, OwnCert};
use phonetrust_proto::rand::OsRandom;
use phonetrust_store::identity;
use phonetrust_store::layout::DataDir;

use crate::fsutil::now;

/// Arguments of `init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Host name (FQDN) of this node: CN of CallManager and tomcat (default: this
    /// machine's host name).
    #[arg(long)]
    host: Option<String>,
    /// Organisation (O) of every own certificate.
    #[arg(long, default_value = "phonetrust")]
    org: String,
    /// Organisational unit (OU).
    #[arg(long, default_value = "VOICE")]
    ou: String,
    /// Locality (L).
    #[arg(long, default_value = "")]
    locality: String,
    /// State or province (ST).
    #[arg(long, default_value = "")]
    state: String,
    /// Two-letter country code (C).
    #[arg(long, default_value = "")]
    country: String,
    /// RSA key size of the RSA certificates.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1024..=4096))]
    rsa_bits: u32,
    /// Validity of the own certificates in days (default five years).
    #[arg(long, default_value_t = 1826)]
    validity_days: u32,
}

/// `phonetrust show ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ShowCmd {
    /// Certificates.
    #[command(subcommand)]
    Cert(ShowCertCmd),
}

/// Which certificates to list.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ListWhich {
    /// The node's own certificates.
    Own,
}

/// `phonetrust show cert ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ShowCertCmd {
    /// List certificates: `own` (CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery,
    /// tomcat).
    List {
        /// Which list.
        which: ListWhich,
    },
    /// Show one own certificate: the details block, or only its PEM or DER.
    Own {
        /// CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery or tomcat.
        #[arg(value_parser = parse_own)]
        name: OwnCert,
        /// Print only the PEM certificate.
        #[arg(long, conflicts_with = "der")]
        pem: bool,
        /// Write only the DER certificate to standard output.
        #[arg(long)]
        der: bool,
    },
}

fn parse_own(s: &str) -> Result<OwnCert, String> {
    s.parse()
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `phonetrust init`.
pub(crate) fn init(data: &Path, a: InitArgs) -> Result<ExitCode> {
    let dir = DataDir::new(data);
    let org = DistinguishedName {
        o: a.org,
        ou: a.ou,
        l: a.locality,
        st: a.state,
        c: a.country,
        ..DistinguishedName::default()
    };
    let mut node = NodeIdentity::new(a.host.unwrap_or_else(this_host), org);
    node.rsa_bits = a.rsa_bits;
    node.validity_days = a.validity_days;
    let id = identity::create(&dir, &node, now(), &OsRandom)
        .with_context(|| format!("initialising {}", data.display()))?;
    println!(
        "Created the identity of {} in {}",
        node.host,
        dir.identity_dir().display()
    );
    print_list(&id);
    Ok(ExitCode::SUCCESS)
}

fn print_list(id: &identity::Identity) {
    println!(
        "{:<18} {:<34} {:<12} {:<8} Expiration",
        "Certificate", "Common Name", "Type", "Key Type"
    );
    for (which, ck) in id.all() {
        let cn = DistinguishedName::from_x509_name(ck.cert.subject_name()).cn;
        let self_signed =
            ck.cert.issuer_name().to_der().ok() == ck.cert.subject_name().to_der().ok();
        let key = match ck.key.id() {
            openssl::pkey::Id::EC => "EC",
            _ => "RSA",
        };
        println!(
            "{:<18} {:<34} {:<12} {:<8} {}",
            which.name(),
            cn,
            if self_signed {
                "Self-signed"
            } else {
                "CA-signed"
            },
            key,
            ck.cert.not_after()
        );
    }
}

/// `phonetrust show ...`.
pub(crate) fn show(data: &Path, cmd: ShowCmd) -> Result<ExitCode> {
    let dir = DataDir::new(data);
    match cmd {
        ShowCmd::Cert(ShowCertCmd::List {
            which: ListWhich::Own,
        }) => {
            let id = identity::load(&dir)?;
            print_list(&id);
        }
        ShowCmd::Cert(ShowCertCmd::Own { name, pem, der }) => {
            let id = identity::load(&dir)?;
            let ck = id
                .get(name)
                .with_context(|| format!("no {name} certificate in the identity"))?;
            if pem {
                print!("{}", String::from_utf8_lossy(&ck.cert.to_pem()?));
            } else if der {
                use std::io::Write;
                std::io::stdout().write_all(&ck.cert.to_der()?)?;
            } else {
                println!(
                    "Certificate Details for {}, {}",
                    DistinguishedName::from_x509_name(ck.cert.subject_name()).cn,
                    name
                );
                println!("File Name: {}", dir.own_cert(name).display());
                println!("Certificate Purpose: {name}\n");
                print!("{}", details(&ck.cert));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
