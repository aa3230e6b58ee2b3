//! The certificate details block administrators know from the vendor's certificate
//! pages ("Certificate File Data"): version, serial, signature algorithm, issuer,
//! validity, subject, key and key value.

use std::fmt::Write;

use openssl::nid::Nid;
use openssl::pkey::Id;
use openssl::x509::{X509NameRef, X509Ref};
use phonetrust_proto::cert::{record_public_key, serial_bytes};
use phonetrust_proto::codec::hex;

/// A name most-specific first: `CN=..., OU=..., O=..., L=..., ST=..., C=...`.
pub fn display_name(name: &X509NameRef) -> String {
    let mut parts: Vec<String> = name
        .entries()
        .map(|e| {
            format!(
                "{}={}",
                e.object().nid().short_name().unwrap_or("?"),
                e.data().to_string().unwrap_or_default()
            )
        })
        .collect();
    parts.reverse();
    parts.join(", ")
}

fn sig_alg(nid: Nid) -> String {
    let (name, oid) = match nid {
        Nid::SHA1WITHRSAENCRYPTION => ("SHA1withRSA", "1.2.840.113549.1.1.5"),
        Nid::SHA256WITHRSAENCRYPTION => ("SHA256withRSA", "1.2.840.113549.1.1.11"),
        Nid::SHA384WITHRSAENCRYPTION => ("SHA384withRSA", "1.2.840.113549.1.1.12"),
        Nid::SHA512WITHRSAENCRYPTION => ("SHA512withRSA", "1.2.840.113549.1.1.13"),
        Nid::ECDSA_WITH_SHA256 => ("SHA256withECDSA", "1.2.840.10045.4.3.2"),
        Nid::ECDSA_WITH_SHA384 => ("SHA384withECDSA", "1.2.840.10045.4.3.3"),
        Nid::ECDSA_WITH_SHA512 => ("SHA512withECDSA", "1.2.840.10045.4.3.4"),
        other => return other.long_name().unwrap_or("unknown").to_string(),
    };
    format!("{name} ({oid})")
}

/// The details block of `cert`.
pub fn details(cert: &X509Ref) -> String {
    let mut out = String::from("[\n");
    let _ = writeln!(out, "  Version: V{}", cert.version() + 1);
    let serial = serial_bytes(cert)
        .map(|s| hex(&s).to_uppercase())
        .unwrap_or_default();
    let _ = writeln!(out, "  Serial Number: {serial}");
    let _ = writeln!(
        out,
        "  SignatureAlgorithm: {}",
        sig_alg(cert.signature_algorithm().object().nid())
    );
    let _ = writeln!(out, "  Issuer Name: {}", display_name(cert.issuer_name()));
    let _ = writeln!(out, "  Validity From: {}", cert.not_before());
    let _ = writeln!(out, "           To:   {}", cert.not_after());
    let _ = writeln!(out, "  Subject Name: {}", display_name(cert.subject_name()));
    match cert.public_key() {
        Ok(k) => {
            let (name, oid) = match k.id() {
                Id::RSA => ("RSA", "1.2.840.113549.1.1.1"),
                Id::EC => ("EC", "1.2.840.10045.2.1"),
                _ => ("other", "?"),
            };
            let _ = writeln!(out, "  Key: {name} ({oid}), {} bits", k.bits());
            let value = record_public_key(&k).map(|v| hex(&v)).unwrap_or_default();
            let _ = writeln!(out, "    Key value:");
            for chunk in value.as_bytes().chunks(86) {
                let _ = writeln!(out, "{}", String::from_utf8_lossy(chunk));
            }
        }
        Err(_) => {
            let _ = writeln!(out, "  Key: unreadable");
        }
    }
    out.push_str("]\n");
    out
}
