//! The file tools: `tlv show|build`, `sgn build|show|strip`, `cnf encrypt|decrypt`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use openssl::x509::X509;
use phonetrust_proto::cert::{CertAndKey, load_certs, load_private_key, md5_hex, name_string};
use phonetrust_proto::codec::hex;
use phonetrust_proto::enccnf::{self, PartialConfig};
use phonetrust_proto::rand::OsRandom;
use phonetrust_proto::show::{self, ListKind};
use phonetrust_proto::tlv::{self, HashAlg, Version};
use phonetrust_proto::trustlist::{self, CertForm, Record, Role, TrustListParams};
use phonetrust_proto::{sgn, trustlist::TrustList};

use crate::fsutil::{base_name, mtime, now_u32, read, write_atomic};

/// `phonetrust tlv ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TlvCmd {
    /// Print a trust list as `show itl` / `show ctl` do; exit 0 only when its signature
    /// verifies.
    Show {
        /// The `.tlv` file (ITLFile.tlv, CTLFile.tlv, ITLSEP<MAC>.tlv, ...).
        file: PathBuf,
    },
    /// Build and sign a trust list. The signer gets its SAST record first.
    Build(BuildArgs),
}

/// Arguments of `tlv build`.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Where to write the file.
    #[arg(long)]
    out: PathBuf,
    /// FILENAME in the header (default: the name of --out).
    #[arg(long)]
    filename: Option<String>,
    /// Signature digest: sha1 (every phone) or sha512 (newer firmware).
    #[arg(long, default_value = "sha1", value_parser = parse_digest)]
    digest: HashAlg,
    /// PEM holding the signing certificate and its RSA private key.
    #[arg(long)]
    signer: PathBuf,
    /// A record: ROLE=CERT.pem, ROLE one of SAST, CCM, CCM+TFTP, TFTP, CAPF, APP-SERVER,
    /// TVS. Options after commas: `hash` (carry the SHA-1 hash instead of the
    /// certificate), `dns=NAME`, `ip=A.B.C.D`. Repeat for each record.
    #[arg(
        long = "record",
        value_name = "ROLE=CERT.pem[,hash][,dns=NAME][,ip=ADDR]"
    )]
    records: Vec<String>,
    /// SIGNER_VERSION (default 1.0 with sha1, 1.1 otherwise).
    #[arg(long, value_parser = parse_version)]
    signer_version: Option<Version>,
    /// TIMESTAMP in Unix seconds (default: now).
    #[arg(long)]
    timestamp: Option<u32>,
}

/// `phonetrust sgn ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SgnCmd {
    /// Sign FILE; writes FILE.sgn (or --out).
    Build {
        /// PEM holding the signing (TFTP) certificate and its RSA private key.
        #[arg(long)]
        signer: PathBuf,
        /// Signature digest.
        #[arg(long, default_value = "sha1", value_parser = parse_digest)]
        digest: HashAlg,
        /// TIMESTAMP in Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<u32>,
        /// Output file (default FILE.sgn).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The file to sign.
        file: PathBuf,
    },
    /// Print the header of a signed file and verify it; exit 0 only when valid.
    Show {
        /// The certificate that should have signed it (PEM or DER).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Or: a trust list (ITLFile.tlv) that lists the signer, as a phone checks.
        #[arg(long, conflicts_with = "cert")]
        itl: Option<PathBuf>,
        /// The `.sgn` (or `.enc.sgn`) file.
        file: PathBuf,
    },
    /// Write the content of FILE.sgn without its header to FILE (or --out; `-` for
    /// standard output); X.enc.sgn gives the ciphertext X.enc (use `cnf decrypt` for the
    /// plaintext). The signature is not checked: use `sgn show` for that.
    Strip {
        /// Output file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The `.sgn` file.
        file: PathBuf,
    },
}

/// `phonetrust cnf ...`
#[derive(Debug, Subcommand)]
pub(crate) enum CnfCmd {
    /// Encrypt SEP<MAC>.cnf.xml to the phone's certificate: writes SEP<MAC>.cnf.xml.enc.sgn
    /// and the partial SEP<MAC>.cnf.xml.sgn beside it (or in --out-dir).
    Encrypt {
        /// PEM holding the signing (TFTP) certificate and its RSA private key.
        #[arg(long)]
        signer: PathBuf,
        /// The phone's certificate (LSC, or MIC) the config is encrypted to.
        #[arg(long)]
        device_cert: PathBuf,
        /// Digest of the plaintext carried in the file: sha1 or sha512.
        #[arg(long, default_value = "sha1", value_parser = parse_digest)]
        digest: HashAlg,
        /// TIMESTAMP in Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<u32>,
        /// Directory for the two output files.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// The plain config, SEP<MAC>.cnf.xml.
        file: PathBuf,
    },
    /// Decrypt SEP<MAC>.cnf.xml.enc.sgn with the phone's private key and check its digest;
    /// writes SEP<MAC>.cnf.xml beside it (or --out; `-` for standard output).
    Decrypt {
        /// The phone's private key (PEM, alone or with its certificate).
        #[arg(long)]
        key: PathBuf,
        /// Also verify the signature with this (TFTP) certificate.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Output file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The `.enc.sgn` file.
        file: PathBuf,
    },
}

fn parse_digest(s: &str) -> Result<HashAlg, String> {
    s.parse()
}

fn parse_version(s: &str) -> Result<Version, String> {
    let (a, b) = s
        .split_once('.')
        .ok_or_else(|| format!("'{s}' is not MAJOR.MINOR"))?;
    Ok(Version::new(
        a.parse().map_err(|_| format!("'{s}' is not MAJOR.MINOR"))?,
        b.parse().map_err(|_| format!("'{s}' is not MAJOR.MINOR"))?,
    ))
}

fn load_signer(path: &Path) -> Result<CertAndKey> {
    let pem = read(path)?;
    CertAndKey::from_pem(&pem).with_context(|| {
        format!(
            "{}: signer must be a PEM holding the certificate and its private key",
            path.display()
        )
    })
}

fn load_cert(path: &Path) -> Result<X509> {
    let data = read(path)?;
    load_certs(&data)
        .with_context(|| path.display().to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{}: no certificate", path.display()))
}

fn ok_if(verified: bool) -> ExitCode {
    if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Run a `tlv` command.
pub(crate) fn tlv(cmd: TlvCmd) -> Result<ExitCode> {
    match cmd {
        TlvCmd::Show { file } => tlv_show(&file),
        TlvCmd::Build(args) => tlv_build(args),
    }
}

fn kind_of(path: &Path) -> ListKind {
    let n = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_uppercase())
        .unwrap_or_default();
    if n.starts_with("CTL") {
        ListKind::Ctl
    } else {
        ListKind::Itl
    }
}

fn tlv_show(file: &Path) -> Result<ExitCode> {
    if !file.exists() {
        out!("{}", show::missing(kind_of(file)));
        return Ok(ExitCode::FAILURE);
    }
    let bytes = read(file)?;
    let header = tlv::parse_header(&bytes).with_context(|| format!("{}", file.display()))?;
    if header.version != Version::TRUST_LIST {
        bail!(
            "{}: header version {} is a signed file, not a trust list (1.2); use `phonetrust sgn show`",
            file.display(),
            header.version
        );
    }
    let report = show::trust_list(&bytes, mtime(file), None)
        .with_context(|| format!("{}", file.display()))?;
    out!("{}", report.text);
    Ok(ok_if(report.verified))
}

struct RecordSpec {
    role: Role,
    cert: PathBuf,
    form: CertForm,
    dns: Option<String>,
    ip: Option<Ipv4Addr>,
}

fn parse_record_spec(s: &str) -> Result<RecordSpec> {
    let (role, rest) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("--record '{s}': expected ROLE=CERT.pem"))?;
    let role: Role = role
        .parse()
        .map_err(|e: String| anyhow!("--record '{s}': {e}"))?;
    let mut parts = rest.split(',');
    let cert = PathBuf::from(parts.next().unwrap_or_default());
    let mut spec = RecordSpec {
        role,
        cert,
        form: CertForm::Full,
        dns: None,
        ip: None,
    };
    for p in parts {
        match p.split_once('=') {
            None if p == "hash" => spec.form = CertForm::Hash,
            Some(("dns", v)) => spec.dns = Some(v.to_string()),
            Some(("ip", v)) => {
                spec.ip = Some(
                    v.parse()
                        .map_err(|_| anyhow!("--record '{s}': '{v}' is not an IPv4 address"))?,
                )
            }
            _ => bail!("--record '{s}': unknown option '{p}' (use hash, dns=NAME, ip=ADDR)"),
        }
    }
    Ok(spec)
}

fn tlv_build(a: BuildArgs) -> Result<ExitCode> {
    let signer = load_signer(&a.signer)?;
    let mut records = Vec::new();
    for s in &a.records {
        let spec = parse_record_spec(s)?;
        let cert = load_cert(&spec.cert)?;
        let mut r = Record::from_cert(spec.role, &cert, spec.form)
            .with_context(|| spec.cert.display().to_string())?;
        if let Some(d) = spec.dns {
            r = r.with_dns_name(d);
        }
        if let Some(ip) = spec.ip {
            r = r.with_ip(ip);
        }
        records.push(r);
    }
    let filename = match a.filename {
        Some(f) => f,
        None => base_name(&a.out)?,
    };
    let mut params = TrustListParams::new(filename, a.digest, a.timestamp.unwrap_or_else(now_u32));
    params.signer_version = a.signer_version;
    let bytes = trustlist::build(&params, &signer, &records).context("signing the trust list")?;
    write_atomic(&a.out, &bytes, false)?;
    outln!(
        "Built {} ({} records, {} bytes), signed by {} with {}",
        a.out.display(),
        records.len() + 1,
        bytes.len(),
        name_string(signer.cert.subject_name()),
        a.digest.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// Run an `sgn` command.
pub(crate) fn sgn(cmd: SgnCmd) -> Result<ExitCode> {
    match cmd {
        SgnCmd::Build {
            signer,
            digest,
            timestamp,
            out,
            file,
        } => {
            let signer = load_signer(&signer)?;
            let content = read(&file)?;
            let name = base_name(&file)?;
            let bytes = sgn::sign(
                &name,
                &content,
                &signer,
                digest,
                timestamp.unwrap_or_else(now_u32),
            )
            .context("signing")?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.sgn", file.display())));
            write_atomic(&out, &bytes, false)?;
            outln!(
                "Signed {} -> {} ({} bytes)",
                file.display(),
                out.display(),
                bytes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        SgnCmd::Show { cert, itl, file } => sgn_show(&file, cert.as_deref(), itl.as_deref()),
        SgnCmd::Strip { out, file } => {
            let bytes = read(&file)?;
            let body = sgn::strip(&bytes).with_context(|| file.display().to_string())?;
            let out = match out {
                Some(o) => o,
                None => {
                    let s = file.to_string_lossy();
                    let stem = s.strip_suffix(".sgn").ok_or_else(|| {
                        anyhow!(
                            "{}: name does not end in .sgn; say where to write with --out",
                            file.display()
                        )
                    })?;
                    // X.cnf.xml.enc.sgn strips to the ciphertext X.cnf.xml.enc, never onto
                    // the plaintext X.cnf.xml beside it.
                    PathBuf::from(stem)
                }
            };
            write_out(&out, body)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_out(out: &Path, bytes: &[u8]) -> Result<()> {
    if out.as_os_str() == "-" {
        crate::output::write_bytes(bytes);
    } else {
        write_atomic(out, bytes, false)?;
        eprintln!("Wrote {} ({} bytes)", out.display(), bytes.len());
    }
    Ok(())
}

/// The certificate a phone would use to check a signed file: the record of its ITL
/// whose serial matches the header, if its role may sign files (the phone's rule,
/// [`TrustList::file_signers`]).
fn signer_from_itl(itl_path: &Path, serial: &[u8]) -> Result<X509> {
    let itl_bytes = read(itl_path)?;
    let itl: TrustList =
        trustlist::parse(&itl_bytes).with_context(|| itl_path.display().to_string())?;
    itl.verify(&itl_bytes).with_context(|| {
        format!(
            "{}: the trust list itself does not verify",
            itl_path.display()
        )
    })?;
    let named = || {
        itl.plain_records()
            .filter(|r| r.serial.as_deref() == Some(serial))
    };
    if let Some(c) = named()
        .filter(|r| r.may_sign_files())
        .find_map(Record::x509)
    {
        return Ok(c);
    }
    match named().next() {
        Some(r) => bail!(
            "{}: the signer (serial {}) is listed as {}, which may not sign files: a phone accepts only a TFTP, CCM+TFTP or SAST record",
            itl_path.display(),
            hex(serial),
            r.role
                .map_or_else(|| "no role".to_string(), |x| x.short_name())
        ),
        None => bail!(
            "{}: no TFTP, CCM+TFTP or SAST record has the signer serial {}",
            itl_path.display(),
            hex(serial)
        ),
    }
}

fn sgn_show(file: &Path, cert: Option<&Path>, itl: Option<&Path>) -> Result<ExitCode> {
    let bytes = read(file)?;
    let s = sgn::SignedFile::parse(&bytes).with_context(|| file.display().to_string())?;
    outln!("Signed file: {}", file.display());
    outln!("Length: {} bytes", bytes.len());
    outln!("{}", show::header_table(&bytes, &s.header));
    let body = s.body();
    let what = if s.header.encryption.is_some() {
        "encrypted content"
    } else {
        "content"
    };
    outln!(
        "Body: {} bytes of {what} (MD5 {})\n",
        body.len(),
        md5_hex(body)
    );
    let signer = match (cert, itl) {
        (Some(c), _) => load_cert(c)?,
        (None, Some(i)) => signer_from_itl(i, &s.header.serial)?,
        (None, None) => {
            outln!(
                "The signature was not checked: give the signer's certificate with --cert, or --itl ITLFile.tlv."
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    match s.verify_with_cert(&signer) {
        Ok(()) => {
            outln!(
                "The file was verified successfully (signed by {}).",
                name_string(signer.subject_name())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            outln!("The file could not be verified: {e}.");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Run a `cnf` command.
pub(crate) fn cnf(cmd: CnfCmd) -> Result<ExitCode> {
    match cmd {
        CnfCmd::Encrypt {
            signer,
            device_cert,
            digest,
            timestamp,
            out_dir,
            file,
        } => {
            if !matches!(digest, HashAlg::Sha1 | HashAlg::Sha512) {
                bail!("--digest: encrypted configs carry sha1 or sha512");
            }
            let signer = load_signer(&signer)?;
            let phone = load_cert(&device_cert)?;
            let plain = read(&file)?;
            let name = base_name(&file)?;
            let ts = timestamp.unwrap_or_else(now_u32);
            let dir = out_dir.unwrap_or_else(|| {
                file.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."))
            });
            let der = phone.to_der()?;
            let partial = PartialConfig::from_full_config(&plain, Some(&der))
                .with_context(|| file.display().to_string())?;
            let enc = enccnf::encrypt(&name, &plain, &phone, &signer, digest, ts, &OsRandom)
                .context("encrypting")?;
            let partial_sgn = sgn::sign(
                &name,
                partial.to_xml().as_bytes(),
                &signer,
                HashAlg::Sha1,
                ts,
            )
            .context("signing the partial config")?;
            let enc_path = dir.join(enccnf::enc_name(&name));
            let sgn_path = dir.join(sgn::sgn_name(&name));
            write_atomic(&enc_path, &enc, false)?;
            write_atomic(&sgn_path, &partial_sgn, false)?;
            outln!(
                "Encrypted {} to {} (certHash {})\nWrote {} and the partial {}",
                name,
                name_string(phone.subject_name()),
                partial.cert_hash,
                enc_path.display(),
                sgn_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CnfCmd::Decrypt {
            key,
            cert,
            out,
            file,
        } => {
            let bytes = read(&file)?;
            let key =
                load_private_key(&read(&key)?).with_context(|| format!("{}", key.display()))?;
            if let Some(c) = cert {
                let signer = load_cert(&c)?;
                enccnf::verify(&bytes, &signer)
                    .with_context(|| format!("{}: signature", file.display()))?;
            }
            let plain =
                enccnf::decrypt(&bytes, &key).with_context(|| file.display().to_string())?;
            let out = match out {
                Some(o) => o,
                None => {
                    let s = file.to_string_lossy();
                    PathBuf::from(s.strip_suffix(".enc.sgn").ok_or_else(|| {
                        anyhow!(
                            "{}: name does not end in .enc.sgn; say where to write with --out",
                            file.display()
                        )
                    })?)
                }
            };
            write_out(&out, &plain)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_specs() {
        let s = parse_record_spec("CCM+TFTP=cm.pem,hash,dns=pub,ip=10.0.0.1").unwrap();
        assert_eq!(s.role, Role::CcmTftp);
        assert_eq!(s.cert, PathBuf::from("cm.pem"));
        assert_eq!(s.form, CertForm::Hash);
        assert_eq!(s.dns.as_deref(), Some("pub"));
        assert_eq!(s.ip, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(parse_record_spec("NOPE=x.pem").is_err());
        assert!(parse_record_spec("CAPF").is_err());
        assert!(parse_record_spec("CAPF=x.pem,bogus").is_err());
        assert!(parse_record_spec("CAPF=x.pem,ip=1.2.3").is_err());
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("1.1").unwrap(), Version::new(1, 1));
        assert!(parse_version("11").is_err());
    }
}
