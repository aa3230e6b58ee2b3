//! Node administration, named after the seeds' CLI: `init`, `show cert ...`,
//! `set cert ...`, `set csr gen`, `show param`/`set param`, `run sql`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use phonetrust_pki::DistinguishedName;
use phonetrust_pki::details::details;
use phonetrust_pki::profiles::{NodeIdentity, OwnCert};
use phonetrust_proto::rand::OsRandom;
use phonetrust_rules::certs;
use phonetrust_store::layout::DataDir;
use phonetrust_store::model::{TrustStore, format_time};
use phonetrust_store::{Db, identity, own};

use crate::fsutil::{now, read};
use crate::node::Node;

/// Arguments of `init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Host name (FQDN) of this node: CN of CallManager and tomcat (default: this
    /// machine's host name).
    #[arg(long)]
    host: Option<String>,
    /// Join a cluster as the node NAME, defined on the publisher first (`phonetrust
    /// cluster add-node NAME --host HOST`); give the cluster's database with `--database
    /// postgres://…`. NAME is also this node's host name.
    #[arg(long, value_name = "NAME", conflicts_with = "host")]
    pub(crate) join: Option<String>,
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

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl InitArgs {
    /// The identity of a fresh node from these arguments.
    pub(crate) fn node_identity(self) -> NodeIdentity {
        let org = DistinguishedName {
            o: self.org,
            ou: self.ou,
            l: self.locality,
            st: self.state,
            c: self.country,
            ..DistinguishedName::default()
        };
        let host = self.join.or(self.host).unwrap_or_else(this_host);
        let mut node = NodeIdentity::new(host, org);
        node.rsa_bits = self.rsa_bits;
        node.validity_days = self.validity_days;
        node
    }
}

/// Create the identity of a fresh node in `data` and print it.
pub(crate) fn create_identity(data: &DataDir, node: &NodeIdentity) -> Result<()> {
    std::fs::create_dir_all(data.root())
        .with_context(|| format!("creating {}", data.root().display()))?;
    let id = identity::create(data, node, now(), &OsRandom)
        .with_context(|| format!("initialising {}", data.root().display()))?;
    outln!(
        "Created the identity of {} in {}",
        node.host,
        data.identity_dir().display()
    );
    print_list(&id);
    Ok(())
}

/// `phonetrust init`: the identity, and the database with its defaults.
pub(crate) async fn init(node: &Node, a: InitArgs) -> Result<ExitCode> {
    let join = a.join.clone();
    let ident = a.node_identity();
    check_cluster_before_init(node, join.as_deref(), &ident.host).await?;
    create_identity(&node.data, &ident)?;
    let db = node.db().await?;
    outln!(
        "Database ready ({}), schema version {}",
        node.db_url,
        db.schema_version().await?
    );
    let id = identity::load(&node.data)?;
    if let Some(capf) = id.get(OwnCert::Capf) {
        // As the vendor's nodes: the CAPF certificate is trusted from the start.
        phonetrust_store::own::trust_capf(&db, &capf.cert, now()).await?;
    }
    if join.is_some() {
        let name = crate::cluster::take_place(&db, &id).await?;
        outln!(
            "Joined the cluster as {name}; its certificates are published. Start it with `phonetrust serve`."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Before an identity is made: `--join` needs a shared database that defines the node;
/// a plain `init` on a cluster's database must be one of its nodes.
pub(crate) async fn check_cluster_before_init(
    node: &Node,
    join: Option<&str>,
    host: &str,
) -> Result<()> {
    let sqlite = node.db_url.starts_with("sqlite:");
    if join.is_some() && sqlite {
        bail!(
            "joining a cluster needs the cluster's shared database: give it with --database postgres://USER@HOST/DB (or PHONETRUST_DATABASE); nothing was created"
        );
    }
    if sqlite || identity::exists(&node.data) {
        return Ok(());
    }
    let db = Db::open(&node.db_url)
        .await
        .with_context(|| format!("opening the database {}", node.db_url))?;
    let r = crate::cluster::check_before_init(&db, join, host).await;
    db.close().await;
    r
}

fn print_list(id: &identity::Identity) {
    let mut t = crate::table::Table::new(&[
        "Certificate",
        "Common Name",
        "Type",
        "Key Type",
        "Expiration",
    ]);
    for r in certs::own_rows(id) {
        t.row(vec![
            r.name.to_string(),
            r.common_name,
            r.signed.into(),
            r.key_type.into(),
            format_time(r.not_after),
        ]);
    }
    out!("{}", t.render());
}

/// `phonetrust show ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ShowCmd {
    /// Certificates: `show cert list own|trust`, `show cert own NAME`, `show cert trust
    /// STORE NAME`, `show cert expiry`.
    #[command(subcommand)]
    Cert(ShowCertCmd),
    /// Enterprise parameters with their values and defaults.
    Param,
    /// The ITL this node serves (`show itl`): the very bytes phones download (same MD5
    /// and SHA-1 as TFTP or HTTP hand out).
    Itl {
        /// Another TFTP node of the cluster (host name): the ITL it serves.
        #[arg(long)]
        node: Option<String>,
        /// `status`: which phones hold their node's current ITL.
        #[command(subcommand)]
        what: Option<ShowItlCmd>,
    },
    /// The CTL this node serves (`show ctl`), or "CTL File not found".
    Ctl,
    /// The cluster (`show network cluster`): nodes, hosts, roles, services, their
    /// certificates' serials, and whether each is alive (heartbeat).
    Network {
        /// `cluster`.
        #[arg(value_parser = ["cluster"])]
        what: String,
    },
    /// LSC renewal by policy (`[lifecycle]`): the policy, how many LSCs are due,
    /// scheduled, done and failed, when the next batch goes out, the recent batches with
    /// what the reset hook did, and the phones that failed.
    Lifecycle,
    /// The audit log: every change made on the cluster (who, when, on which node, what,
    /// and how it ended), oldest first.
    Audit {
        /// Only entries since this time: a date and time (2026-12-01T10:00Z) or a span
        /// back from now (30m, 24h, 7d).
        #[arg(long, value_parser = crate::audit::parse_since)]
        since: Option<i64>,
        /// At most this many entries (the newest).
        #[arg(long, default_value_t = 200)]
        limit: u32,
        /// Comma-separated values (header line first) instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

/// `phonetrust show itl ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ShowItlCmd {
    /// The ITL file status of the phones: those on an outdated ITL, those not seen since
    /// their node's ITL signer changed, those that never fetched one (from what each
    /// phone last downloaded as ITLSEP<MAC>.tlv: checksum, node, protocol, time).
    Status {
        /// List the phones on the current ITL too.
        #[arg(long)]
        all: bool,
        /// Comma-separated values (header line first) instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

/// `phonetrust show cert ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ShowCertCmd {
    /// List certificates: `own` (CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery,
    /// tomcat) or `trust [STORE]` (CallManager-trust, CAPF-trust, Phone-SAST-trust,
    /// tomcat-trust).
    List {
        /// `own` or `trust`.
        #[arg(value_parser = ["own", "trust"])]
        which: String,
        /// With `trust`: only this store.
        #[arg(value_parser = parse_store)]
        store: Option<TrustStore>,
    },
    /// Show one own certificate: the details block, or only its PEM or DER.
    Own {
        /// CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery or tomcat.
        #[arg(value_parser = parse_own)]
        name: OwnCert,
        #[command(flatten)]
        form: Form,
    },
    /// Show one trust certificate: the details block, or only its PEM or DER.
    Trust {
        /// CallManager-trust, CAPF-trust, Phone-SAST-trust or tomcat-trust.
        #[arg(value_parser = parse_store)]
        store: TrustStore,
        /// Its name (as `show cert list trust` prints it) or SHA-256 fingerprint prefix.
        name: String,
        #[command(flatten)]
        form: Form,
    },
    /// Own and trust certificates, and phones' LSCs, that expire within N days (default
    /// 30), with their subjects; and every LSC that no longer chains to the current CAPF
    /// certificate, whatever its expiry.
    Expiry {
        /// Days from now (default 30).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// The CAPF generations: the current CAPF certificate and the earlier ones kept in
    /// CAPF-trust (so that phones holding their LSCs renew by them), each with the phones
    /// that still hold an LSC it issued. An earlier generation can be deleted from
    /// CAPF-trust once no phone holds one.
    Rollover,
}

/// Output form of a certificate.
#[derive(Debug, Args)]
pub(crate) struct Form {
    /// Print only the PEM certificate.
    #[arg(long, conflicts_with = "der")]
    pem: bool,
    /// Write only the DER certificate to standard output.
    #[arg(long)]
    der: bool,
}

/// `phonetrust set ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SetCmd {
    /// Own and trust certificates: `set cert regen NAME`, `set cert import own NAME FILE`,
    /// `set cert import trust STORE FILE`, `set cert delete trust STORE NAME`.
    #[command(subcommand)]
    Cert(SetCertCmd),
    /// Certificate signing requests: `set csr gen NAME`.
    #[command(subcommand)]
    Csr(SetCsrCmd),
    /// Change an enterprise parameter: `set param ClusterSecurityMode 1`.
    Param {
        /// Name (`CapfPhonePort`) or label (`"CAPF Phone Port"`).
        name: String,
        /// New value.
        value: String,
        /// Do not ask for confirmation (asked for parameters that change what phones
        /// trust, such as ItlSigner).
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// `phonetrust set cert ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SetCertCmd {
    /// Regenerate an own certificate, self-signed: new key, new serial, same subject.
    /// Says what it means for phones (the ITL, the CTL, LSCs of the old CAPF) and asks
    /// first, except for tomcat.
    Regen {
        /// CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery or tomcat.
        #[arg(value_parser = parse_own)]
        name: OwnCert,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long, alias = "confirm")]
        yes: bool,
    },
    /// Import certificates.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Delete certificates.
    #[command(subcommand)]
    Delete(DeleteCmd),
}

/// `phonetrust set cert import ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ImportCmd {
    /// The CA-signed certificate (optionally followed by its chain) for the pending CSR of
    /// an own certificate. Its issuers must be in the matching trust store first.
    Own {
        /// CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery or tomcat.
        #[arg(value_parser = parse_own)]
        name: OwnCert,
        /// PEM (certificate or chain) or DER file.
        file: PathBuf,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// One certificate or a PEM bundle into a trust store.
    Trust {
        /// CallManager-trust, CAPF-trust, Phone-SAST-trust or tomcat-trust.
        #[arg(value_parser = parse_store)]
        store: TrustStore,
        /// PEM (one or many certificates) or DER file.
        file: PathBuf,
        /// Do not ask for confirmation (asked for CallManager-trust and
        /// Phone-SAST-trust, which TVS vouches for to phones).
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// `phonetrust set cert delete ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DeleteCmd {
    /// Delete a certificate from a trust store.
    Trust {
        /// CallManager-trust, CAPF-trust, Phone-SAST-trust or tomcat-trust.
        #[arg(value_parser = parse_store)]
        store: TrustStore,
        /// Its name (as `show cert list trust` prints it) or SHA-256 fingerprint prefix.
        name: String,
        /// Do not ask for confirmation (asked for CallManager-trust and
        /// Phone-SAST-trust).
        #[arg(short = 'y', long)]
        yes: bool,
        /// Delete a CAPF-trust certificate even though phones' LSCs or MICs authenticate
        /// to CAPF through it only (refused otherwise, naming them).
        #[arg(long)]
        force: bool,
    },
}

/// `phonetrust set csr ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SetCsrCmd {
    /// Generate a new key and a CSR with the subject of the current certificate; print the
    /// CSR. The key waits until `set cert import own NAME FILE`.
    Gen {
        /// CAPF, CallManager, CallManager-ECDSA, TVS, ITLRecovery or tomcat.
        #[arg(value_parser = parse_own)]
        name: OwnCert,
    },
}

/// `phonetrust run ...`
#[derive(Debug, Subcommand)]
pub(crate) enum RunCmd {
    /// Run one read-only SQL query and print the result as a table:
    /// `run sql select md5hash,name from device where name='SEP001122334455'`.
    Sql {
        /// The query (the words are joined with spaces, so quoting is optional).
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        query: Vec<String>,
    },
}

fn parse_own(s: &str) -> Result<OwnCert, String> {
    s.parse()
}

fn parse_store(s: &str) -> Result<TrustStore, String> {
    crate::phones::parse(s)
}

fn write_cert(cert: &openssl::x509::X509Ref, pem: bool) -> Result<()> {
    let bytes = if pem { cert.to_pem()? } else { cert.to_der()? };
    crate::output::write_bytes(&bytes);
    Ok(())
}

/// `show lifecycle`.
async fn show_lifecycle(node: &Node) -> Result<ExitCode> {
    let db = node.db().await?;
    let now = now();
    let Some((p, hook)) = node.settings.file.lifecycle.resolve()? else {
        outln!(
            "LSC renewal by policy: off (set [lifecycle] enabled = true in the config file to turn it on)"
        );
        let done = db.renewals(None).await?;
        if !done.is_empty() {
            outln!("{} renewal(s) recorded from when it was on.", done.len());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut what = Vec::new();
    if let Some(d) = p.renew_days_before {
        what.push(format!("{d} days before expiry"));
    }
    if let Some(s) = p.renew_after_share {
        what.push(format!("after {:.0} % of the validity", s * 100.0));
    }
    if p.renew_retired {
        what.push("every LSC of a retired CAPF generation".into());
    }
    outln!("LSC renewal by policy: on");
    outln!("  Renew:        {}", what.join("; "));
    outln!(
        "  Rate:         at most {} phone(s) an hour{}",
        p.max_per_hour,
        p.window
            .map(|w| format!(", inside {w}"))
            .unwrap_or_default()
    );
    let mut hooks = Vec::new();
    if let Some(c) = &hook.command {
        hooks.push(format!("command {}", c.join(" ")));
    }
    if let Some(w) = &hook.webhook {
        hooks.push(format!("webhook {}", w.url));
    }
    outln!(
        "  Reset hook:   {}",
        if hooks.is_empty() {
            "none (phones take the operation at their next reset)".to_string()
        } else {
            hooks.join("; ")
        }
    );
    let pr = phonetrust_rules::lifecycle::progress(&db, &node.data, &p, now)
        .await
        .map_err(anyhow::Error::msg)?;
    outln!("  Waiting:      {}", pr.waiting);
    outln!("  Scheduled:    {}", pr.scheduled);
    outln!("  Done:         {}", pr.done);
    outln!("  Failed:       {}", pr.failed.len());
    outln!(
        "  Next batch:   {}",
        match pr.next_batch {
            None => "none: no LSC is due".to_string(),
            Some(t) if t <= now =>
                "within a minute (serve on the publisher schedules it)".to_string(),
            Some(t) => format_time(t),
        }
    );
    let batches = db.renewal_batches(10).await?;
    if !batches.is_empty() {
        outln!();
        let mut t = crate::table::Table::new(&["Batch", "Scheduled", "Phones", "Reset hook"]);
        for b in &batches {
            t.row(vec![
                b.id.to_string(),
                format_time(b.at),
                b.phones.to_string(),
                b.hook.clone(),
            ]);
        }
        out!("{}", t.render());
    }
    if !pr.failed.is_empty() {
        outln!();
        outln!("Failed renewals (`phonetrust phone show NAME` shows the CAPF status):");
        for (d, why) in &pr.failed {
            outln!("  {d}: {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `phonetrust show ...`.
pub(crate) async fn show(node: &Node, cmd: ShowCmd) -> Result<ExitCode> {
    let dir = &node.data;
    match cmd {
        ShowCmd::Itl {
            what: Some(ShowItlCmd::Status { all, csv }),
            ..
        } => return crate::utils::show_itl_status(node, all, csv).await,
        ShowCmd::Itl { node: of, .. } => return crate::utils::show_itl(node, of).await,
        ShowCmd::Ctl => return crate::utils::show_ctl(node).await,
        ShowCmd::Network { .. } => return crate::cluster::show(node).await,
        ShowCmd::Lifecycle => return show_lifecycle(node).await,
        ShowCmd::Audit { since, limit, csv } => {
            return crate::audit::show(node, since, limit, csv).await;
        }
        ShowCmd::Cert(ShowCertCmd::List { which, store }) => {
            if which == "own" {
                print_list(&identity::load(dir)?);
            } else {
                let db = node.db().await?;
                let certs = db.trust_list(store).await?;
                let mut t =
                    crate::table::Table::new(&["Trust Store", "Name", "Subject", "Expiration"]);
                for c in &certs {
                    t.row(vec![
                        c.store.as_str().into(),
                        c.name.clone(),
                        c.subject.clone(),
                        format_time(c.not_after),
                    ]);
                }
                out!("{}", t.render());
                outln!("{} certificate(s)", certs.len());
            }
        }
        ShowCmd::Cert(ShowCertCmd::Own { name, form }) => {
            let id = identity::load(dir)?;
            let ck = id
                .get(name)
                .with_context(|| format!("no {name} certificate in the identity"))?;
            if form.pem || form.der {
                write_cert(&ck.cert, form.pem)?;
            } else {
                out!("{}", certs::own_details(dir, name, &ck.cert));
            }
        }
        ShowCmd::Cert(ShowCertCmd::Trust { store, name, form }) => {
            let db = node.db().await?;
            let c = db.trust_get(store, &name).await?;
            let x = openssl::x509::X509::from_pem(c.pem.as_bytes())?;
            if form.pem || form.der {
                write_cert(&x, form.pem)?;
            } else {
                outln!("Certificate Details for {}, {}", c.name, store);
                outln!("SHA-256 Fingerprint: {}", c.fingerprint);
                outln!("Imported: {}\n", format_time(c.imported_at));
                out!("{}", details(&x));
            }
        }
        ShowCmd::Cert(ShowCertCmd::Rollover) => {
            let db = node.db().await?;
            let gens = own::rollover(dir, &db).await?;
            let mut t = crate::table::Table::new(&[
                "Generation",
                "Serial",
                "Expiration",
                "CAPF-trust",
                "LSCs",
                "Phones",
            ]);
            for g in &gens {
                let first: Vec<&str> = g.lsc_holders.iter().take(3).map(String::as_str).collect();
                let more = g.lsc_holders.len().saturating_sub(first.len());
                t.row(vec![
                    if g.current { "current" } else { "earlier" }.into(),
                    g.serial.clone(),
                    format_time(g.not_after),
                    g.in_capf_trust.clone().unwrap_or_else(|| "-".into()),
                    g.lsc_holders.len().to_string(),
                    if more > 0 {
                        format!("{}, … ({more} more)", first.join(", "))
                    } else {
                        first.join(", ")
                    },
                ]);
            }
            out!("{}", t.render());
            for g in gens.iter().filter(|g| !g.current) {
                match (&g.in_capf_trust, g.lsc_holders.len()) {
                    (Some(name), 0) => outln!(
                        "No phone holds an LSC of the earlier CAPF certificate {}: it can be deleted (`phonetrust set cert delete trust CAPF-trust {name}`).",
                        g.serial
                    ),
                    (_, n) => outln!(
                        "{n} phone(s) still hold an LSC of the earlier CAPF certificate {}: schedule Install/Upgrade for them (authentication by their LSC) before deleting it.",
                        g.serial
                    ),
                }
            }
        }
        ShowCmd::Cert(ShowCertCmd::Expiry { days }) => {
            let db = node.db().await?;
            let now = now();
            let list = own::expiring(dir, &db, days, now).await?;
            if list.is_empty() {
                outln!(
                    "No certificate expires within {days} days, and every LSC chains to the current CAPF certificate."
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut t =
                crate::table::Table::new(&["Kind", "Name", "State", "Expiration", "Subject"]);
            for e in &list {
                let when = if e.not_after < now {
                    "EXPIRED"
                } else if e.not_after < now + i64::from(days) * 86_400 {
                    "expires"
                } else {
                    "valid"
                };
                t.row(vec![
                    e.kind.clone(),
                    e.name.clone(),
                    when.into(),
                    format_time(e.not_after),
                    e.subject.clone(),
                ]);
            }
            out!("{}", t.render());
            for e in list.iter().filter(|e| e.note.is_some()) {
                outln!(
                    "{} {}: {}",
                    e.kind,
                    e.name,
                    e.note.as_deref().unwrap_or_default()
                );
            }
        }
        ShowCmd::Param => {
            let db = node.db().await?;
            outln!(
                "{:<34} {:<28} {:>6} {:>8}",
                "Parameter",
                "Name",
                "Value",
                "Default"
            );
            for (d, v) in db.params().await? {
                outln!("{:<34} {:<28} {:>6} {:>8}", d.label, d.name, v, d.default);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a change of `which` will mean, asked before it is made (trust-changing ones).
fn impact_question(which: OwnCert, i: &own::Impact, verb: &str) -> String {
    format!(
        "{} Do you want to continue? (y/n):",
        certs::impact_warning(which, i, verb)
    )
}

fn print_reset(r: &own::ChangeReport) {
    for l in certs::change_lines(r) {
        outln!("{l}");
    }
}

/// `phonetrust set ...`.
pub(crate) async fn set(node: &Node, cmd: SetCmd) -> Result<ExitCode> {
    let dir = &node.data;
    match cmd {
        SetCmd::Cert(SetCertCmd::Regen { name, yes }) => {
            let db = node.db().await?;
            let i = own::impact(dir, &db, name).await?;
            if certs::needs_confirmation(name)
                && !crate::confirm::ask(&impact_question(name, &i, "regenerates"), yes)?
            {
                outln!("Aborted: the {name} certificate is unchanged.");
                return Ok(ExitCode::FAILURE);
            }
            let r = certs::regenerate(dir, &db, name, now(), &OsRandom).await?;
            outln!("Successfully Regenerated Certificate for {name}.");
            print_reset(&r);
        }
        SetCmd::Cert(SetCertCmd::Import(ImportCmd::Own { name, file, yes })) => {
            let db = node.db().await?;
            let bytes = read(&file)?;
            let i = own::impact(dir, &db, name).await?;
            if certs::needs_confirmation(name)
                && !crate::confirm::ask(&impact_question(name, &i, "replaces"), yes)?
            {
                outln!("Aborted: the {name} certificate is unchanged.");
                return Ok(ExitCode::FAILURE);
            }
            let r = certs::import_signed(dir, &db, name, &bytes, now()).await?;
            outln!("Successfully imported the CA-signed certificate for {name}.");
            print_reset(&r);
        }
        SetCmd::Cert(SetCertCmd::Import(ImportCmd::Trust { store, file, yes })) => {
            let db = node.db().await?;
            if store.vouched_to_phones()
                && !crate::confirm::operation(
                    &format!("adds certificates to {store}, which TVS vouches for to phones"),
                    yes,
                    &format!("{store} is unchanged."),
                )?
            {
                return Ok(ExitCode::FAILURE);
            }
            let out = db.trust_import(store, &read(&file)?, now()).await?;
            for l in certs::import_lines(store, &out) {
                outln!("{l}");
            }
        }
        SetCmd::Cert(SetCertCmd::Delete(DeleteCmd::Trust {
            store,
            name,
            yes,
            force,
        })) => {
            let db = node.db().await?;
            if let Some(m) = certs::trust_delete_guard(dir, &db, store, &name, now()).await? {
                if !force {
                    anyhow::bail!(
                        "{m}; nothing was deleted: renew their LSCs first (`phonetrust show cert rollover`), or repeat with --force"
                    );
                }
                outln!("warning: {m}");
            }
            if store.vouched_to_phones()
                && !crate::confirm::operation(
                    &format!("deletes {name} from {store}: TVS no longer vouches for it to phones"),
                    yes,
                    &format!("{store} is unchanged."),
                )?
            {
                return Ok(ExitCode::FAILURE);
            }
            let c = db.trust_delete(store, &name).await?;
            outln!("Deleted {} ({}) from {store}", c.name, c.subject);
        }
        SetCmd::Csr(SetCsrCmd::Gen { name }) => {
            let r = own::csr_generate(dir, name)?;
            outln!("Successfully Generated CSR for {name} ({})", r.subject);
            outln!("CSR file: {}", r.path.display());
            out!("{}", r.pem);
        }
        SetCmd::Param { name, value, yes } => {
            let db = node.db().await?;
            let d = phonetrust_store::params::def(&name)?;
            if d.alters_trust
                && !crate::confirm::operation(
                    &format!(
                        "changes {} ({}), which changes what phones trust",
                        d.label, d.name
                    ),
                    yes,
                    &format!("{} is unchanged.", d.name),
                )?
            {
                return Ok(ExitCode::FAILURE);
            }
            let (old, new) = db.set_param(&name, &value, now()).await?;
            outln!("{} ({}) changed from {old} to {new}", d.label, d.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `phonetrust run sql ...`.
pub(crate) async fn run(node: &Node, cmd: RunCmd) -> Result<ExitCode> {
    let RunCmd::Sql { query } = cmd;
    let db: Db = node.db().await?;
    let t = db.run_sql(&query.join(" ")).await?;
    if t.columns.is_empty() {
        outln!("(no rows)");
    } else {
        out!("{}", t.render());
    }
    if t.truncated {
        bail!(
            "more than {} rows: only the first ones are shown",
            phonetrust_store::sql::MAX_ROWS
        );
    }
    Ok(ExitCode::SUCCESS)
}
