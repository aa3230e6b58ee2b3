//! Certificates for phonetrust, from plain data (as rcgen does): a [`CertParams`] value
//! says what a certificate holds; [`self_signed`] and [`issue`] turn it into an X.509
//! certificate with OpenSSL, [`csr`] into a signing request.
//!
//! [`profiles`] holds the node's own certificates as a fresh cluster node has them (CAPF,
//! CallManager, CallManager-ECDSA, TVS, ITLRecovery, tomcat) and the LSC that CAPF issues
//! to phones. Clock and randomness are parameters, so tests are repeatable.

#![forbid(unsafe_code)]

pub mod details;
pub mod params;
pub mod profiles;

pub use params::{
    BasicConstraints, CertParams, DistinguishedName, ExtKeyUsage, KeySpec, KeyUsage, PkiError,
    SubjectAltName, csr, generate_key, issue, self_signed,
};
