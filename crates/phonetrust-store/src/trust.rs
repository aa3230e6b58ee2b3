//! Trust stores: certificates this node trusts, by purpose (CallManager-trust, CAPF-trust,
//! Phone-SAST-trust, tomcat-trust). Imports are checked first and written in one
//! transaction: a bundle goes in whole or not at all.

use openssl::x509::{X509, X509Ref};
use phonetrust_pki::details::display_name;
use phonetrust_proto::cert::{load_certs, serial_bytes, sha256};
use phonetrust_proto::codec::hex;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::db::{Db, db_err};
use crate::model::{TrustCert, TrustStore};

/// Largest certificate bundle accepted for import.
pub const MAX_BUNDLE: usize = 1 << 20;
/// Most certificates in one import.
pub const MAX_CERTS_PER_IMPORT: usize = 256;

/// Unix seconds of an ASN.1 time.
pub fn unix_time(t: &openssl::asn1::Asn1TimeRef) -> i64 {
    openssl::asn1::Asn1Time::from_unix(0)
        .ok()
        .and_then(|epoch| epoch.diff(t).ok())
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .unwrap_or(0)
}

/// The facts of a certificate the database keeps.
#[derive(Clone, Debug)]
pub struct CertFacts {
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// Subject, most specific first.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Serial, upper-case hex.
    pub serial: String,
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
    /// PEM.
    pub pem: String,
    /// Common name (or the first name entry).
    pub cn: String,
}

impl CertFacts {
    /// Read the facts of `cert`.
    pub fn of(cert: &X509Ref) -> Result<Self, StoreError> {
        let der = cert.to_der()?;
        let pem = String::from_utf8(cert.to_pem()?)
            .map_err(|_| StoreError::Invalid("certificate PEM is not text".into()))?;
        let cn = phonetrust_pki::DistinguishedName::from_x509_name(cert.subject_name()).cn;
        let cn = if cn.is_empty() {
            cert.subject_name()
                .entries()
                .last()
                .and_then(|e| e.data().to_string().ok().map(|s| s.to_string()))
                .unwrap_or_else(|| "certificate".into())
        } else {
            cn
        };
        Ok(Self {
            fingerprint: hex(&sha256(&der)),
            subject: display_name(cert.subject_name()),
            issuer: display_name(cert.issuer_name()),
            serial: hex(&serial_bytes(cert).map_err(|e| StoreError::Invalid(e.to_string()))?)
                .to_uppercase(),
            not_before: unix_time(cert.not_before()),
            not_after: unix_time(cert.not_after()),
            pem,
            cn,
        })
    }
}

/// A file-like name for a certificate: its common name with unsafe characters replaced.
fn base_name(cn: &str) -> String {
    let s: String = cn
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() {
        "certificate".into()
    } else {
        s
    }
}

/// What an import did with each certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Added under this name.
    Added(String),
    /// Already in the store under this name (nothing changed).
    AlreadyPresent(String),
}

fn row_to_trust(r: &AnyRow) -> Result<TrustCert, StoreError> {
    let store: String = r.try_get("store").map_err(db_err)?;
    Ok(TrustCert {
        store: store.parse()?,
        name: r.try_get("name").map_err(db_err)?,
        fingerprint: r.try_get("fingerprint").map_err(db_err)?,
        subject: r.try_get("subject").map_err(db_err)?,
        issuer: r.try_get("issuer").map_err(db_err)?,
        serial: r.try_get("serial").map_err(db_err)?,
        not_before: r.try_get("not_before").map_err(db_err)?,
        not_after: r.try_get("not_after").map_err(db_err)?,
        pem: r.try_get("pem").map_err(db_err)?,
        imported_at: r.try_get("imported_at").map_err(db_err)?,
    })
}

const TRUST_COLUMNS: &str =
    "store, name, fingerprint, subject, issuer, serial, not_before, not_after, pem, imported_at";

/// Read a certificate file: a PEM bundle or one DER certificate, size and count capped.
pub fn read_bundle(input: &[u8]) -> Result<Vec<X509>, StoreError> {
    if input.len() > MAX_BUNDLE {
        return Err(StoreError::Invalid(format!(
            "the file is {} bytes; a certificate bundle is at most {MAX_BUNDLE}",
            input.len()
        )));
    }
    let certs = load_certs(input).map_err(|e| {
        StoreError::Invalid(format!(
            "{e}: the file is neither a PEM certificate (bundle) nor a DER certificate"
        ))
    })?;
    if certs.len() > MAX_CERTS_PER_IMPORT {
        return Err(StoreError::Invalid(format!(
            "{} certificates in one file; import at most {MAX_CERTS_PER_IMPORT} at a time",
            certs.len()
        )));
    }
    Ok(certs)
}

/// Parse and check a bundle for import: at least one certificate, none expired or not yet
/// valid at `now`.
pub fn parse_bundle(input: &[u8], now: i64) -> Result<Vec<X509>, StoreError> {
    let certs = read_bundle(input)?;
    for c in &certs {
        let f = CertFacts::of(c)?;
        if f.not_after < now {
            return Err(StoreError::Invalid(format!(
                "the certificate '{}' expired on {}; nothing was imported (get a current certificate from its issuer)",
                f.subject,
                c.not_after()
            )));
        }
        if f.not_before > now {
            return Err(StoreError::Invalid(format!(
                "the certificate '{}' is not valid before {}; nothing was imported (check this node's clock)",
                f.subject,
                c.not_before()
            )));
        }
    }
    Ok(certs)
}

impl Db {
    /// Import every certificate of `input` (PEM bundle or DER) into `store`, in one
    /// transaction. Refuses the whole file when one certificate is unreadable, expired or not
    /// yet valid.
    pub async fn trust_import(
        &self,
        store: TrustStore,
        input: &[u8],
        now: i64,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        let certs = parse_bundle(input, now)?;
        let mut tx = self.begin().await?;
        let mut out = Vec::new();
        for c in &certs {
            let f = CertFacts::of(c)?;
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT name FROM trustcert WHERE store = $1 AND fingerprint = $2",
            )
            .bind(store.as_str())
            .bind(&f.fingerprint)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            if let Some(name) = existing {
                out.push(ImportOutcome::AlreadyPresent(name));
                continue;
            }
            let base = base_name(&f.cn);
            let mut name = format!("{base}.pem");
            let mut n = 1;
            loop {
                let taken: Option<String> =
                    sqlx::query_scalar("SELECT name FROM trustcert WHERE store = $1 AND name = $2")
                        .bind(store.as_str())
                        .bind(&name)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                if taken.is_none() {
                    break;
                }
                n += 1;
                name = format!("{base}_{n}.pem");
            }
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO trustcert ({TRUST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            )))
            .bind(store.as_str())
            .bind(&name)
            .bind(&f.fingerprint)
            .bind(&f.subject)
            .bind(&f.issuer)
            .bind(&f.serial)
            .bind(f.not_before)
            .bind(f.not_after)
            .bind(&f.pem)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tracing::info!(
                store = store.as_str(),
                name,
                subject = f.subject,
                "trust certificate imported"
            );
            out.push(ImportOutcome::Added(name));
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    /// The certificates of one store, or of every store, by store and name.
    pub async fn trust_list(
        &self,
        store: Option<TrustStore>,
    ) -> Result<Vec<TrustCert>, StoreError> {
        let rows =
            match store {
                Some(s) => sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TRUST_COLUMNS} FROM trustcert WHERE store = $1 ORDER BY store, name"
                )))
                .bind(s.as_str())
                .fetch_all(&self.pool)
                .await,
                None => {
                    sqlx::query(AssertSqlSafe(format!(
                        "SELECT {TRUST_COLUMNS} FROM trustcert ORDER BY store, name"
                    )))
                    .fetch_all(&self.pool)
                    .await
                }
            }
            .map_err(db_err)?;
        rows.iter().map(row_to_trust).collect()
    }

    /// One certificate of `store`, by name or by (a prefix of at least 8 digits of) its
    /// SHA-256 fingerprint.
    pub async fn trust_get(&self, store: TrustStore, name: &str) -> Result<TrustCert, StoreError> {
        let all = self.trust_list(Some(store)).await?;
        let key = name.to_ascii_lowercase().replace(':', "");
        let hits: Vec<&TrustCert> = all
            .iter()
            .filter(|c| {
                c.name == name
                    || c.name.eq_ignore_ascii_case(&format!("{name}.pem"))
                    || (key.len() >= 8 && c.fingerprint.starts_with(&key))
            })
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(StoreError::NotFound(format!(
                "no certificate '{name}' in {store} (see `phonetrust show cert list trust {store}`)"
            ))),
            _ => Err(StoreError::Invalid(format!(
                "'{name}' matches {} certificates in {store}; give the full name",
                hits.len()
            ))),
        }
    }

    /// Delete one certificate from `store`.
    pub async fn trust_delete(
        &self,
        store: TrustStore,
        name: &str,
    ) -> Result<TrustCert, StoreError> {
        let c = self.trust_get(store, name).await?;
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM trustcert WHERE store = $1 AND name = $2")
            .bind(store.as_str())
            .bind(&c.name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(
            store = store.as_str(),
            name = c.name,
            "trust certificate deleted"
        );
        Ok(c)
    }

    /// Phones whose recorded LSC or MIC authenticates to CAPF through the certificate
    /// `name` of CAPF-trust and through nothing else (with `also` trusted beside the
    /// store: the node's current CAPF certificate, which CAPF accepts LSCs of anyway):
    /// deleting it would make their next operation fail. By phone name.
    pub async fn capf_trust_dependents(
        &self,
        name: &str,
        also: &[X509],
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let target = self.trust_get(TrustStore::Capf, name).await?;
        let mut with: Vec<X509> = also.to_vec();
        let mut without: Vec<X509> = also.to_vec();
        for c in self.trust_list(Some(TrustStore::Capf)).await? {
            let x = X509::from_pem(c.pem.as_bytes())?;
            if c.fingerprint != target.fingerprint {
                without.push(x.clone());
            }
            with.push(x);
        }
        let rows = sqlx::query("SELECT device, pem FROM devicecert ORDER BY device, kind")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut out: Vec<String> = Vec::new();
        for r in rows {
            let device: String = r.try_get(0).map_err(db_err)?;
            let pem: String = r.try_get(1).map_err(db_err)?;
            let Ok(cert) = X509::from_pem(pem.as_bytes()) else {
                continue;
            };
            let verifies = |anchors: &[X509]| {
                phonetrust_proto::cert::verify_chain(&cert, &[], anchors, now).is_ok()
            };
            if verifies(&with) && !verifies(&without) && out.last() != Some(&device) {
                out.push(device);
            }
        }
        Ok(out)
    }

    /// The certificates of `store` as OpenSSL objects (for chain verification).
    pub async fn trust_certs(&self, store: TrustStore) -> Result<Vec<X509>, StoreError> {
        let mut out = Vec::new();
        for c in self.trust_list(Some(store)).await? {
            let x = X509::from_pem(c.pem.as_bytes()).map_err(|e| StoreError::Corrupt {
                path: format!("trustcert {}/{}", store, c.name).into(),
                reason: e.to_string(),
            })?;
            out.push(x);
        }
        Ok(out)
    }
}
