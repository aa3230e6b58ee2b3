//! Plain-data certificate parameters and the functions that turn them into keys,
//! certificates and CSRs.

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints as BcExt, ExtendedKeyUsage as EkuExt,
    KeyUsage as KuExt, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name, X509NameBuilder, X509Req, X509ReqBuilder};
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::rand::RandomSource;

/// Why a key, certificate or CSR could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A parameter is out of range.
    #[error("invalid certificate parameter: {0}")]
    Invalid(String),
    /// OpenSSL refused.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// Pairing certificate and key failed.
    #[error(transparent)]
    Cert(#[from] phonetrust_proto::cert::CertError),
}

/// A key to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA with this many bits (1024–4096).
    Rsa(u32),
    /// EC P-256.
    EcP256,
    /// EC P-384.
    EcP384,
    /// EC P-521.
    EcP521,
}

/// Generate a private key.
pub fn generate_key(spec: KeySpec) -> Result<PKey<Private>, PkiError> {
    let ec = |nid: Nid| -> Result<PKey<Private>, PkiError> {
        let group = EcGroup::from_curve_name(nid)?;
        Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
    };
    match spec {
        KeySpec::Rsa(bits) if (1024..=4096).contains(&bits) && bits % 8 == 0 => {
            Ok(PKey::from_rsa(Rsa::generate(bits)?)?)
        }
        KeySpec::Rsa(bits) => Err(PkiError::Invalid(format!(
            "RSA key size {bits}: use 1024 to 4096 bits"
        ))),
        KeySpec::EcP256 => ec(Nid::X9_62_PRIME256V1),
        KeySpec::EcP384 => ec(Nid::SECP384R1),
        KeySpec::EcP521 => ec(Nid::SECP521R1),
    }
}

/// A subject or issuer name. Entries are written in the order C, ST, L, O, OU, CN, as in
/// the reference certificates; empty ones are left out.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DistinguishedName {
    /// commonName.
    pub cn: String,
    /// organizationName.
    pub o: String,
    /// organizationalUnitName.
    pub ou: String,
    /// localityName.
    pub l: String,
    /// stateOrProvinceName.
    pub st: String,
    /// countryName (two letters).
    pub c: String,
    /// Write CN first (then C, ST, L, O, OU), as CAPF-issued LSCs are laid out.
    pub cn_first: bool,
}

impl DistinguishedName {
    /// The same organisation with another common name.
    pub fn with_cn(&self, cn: impl Into<String>) -> Self {
        Self {
            cn: cn.into(),
            ..self.clone()
        }
    }

    /// Take O, OU, L, ST and C (and CN) from an existing certificate name.
    pub fn from_x509_name(name: &openssl::x509::X509NameRef) -> Self {
        let get = |nid: Nid| {
            name.entries_by_nid(nid)
                .next()
                .and_then(|e| e.data().to_string().ok())
                .unwrap_or_default()
        };
        Self {
            cn: get(Nid::COMMONNAME),
            o: get(Nid::ORGANIZATIONNAME),
            ou: get(Nid::ORGANIZATIONALUNITNAME),
            l: get(Nid::LOCALITYNAME),
            st: get(Nid::STATEORPROVINCENAME),
            c: get(Nid::COUNTRYNAME),
            cn_first: false,
        }
    }

    /// The OpenSSL name.
    pub fn to_x509_name(&self) -> Result<X509Name, PkiError> {
        if self.cn.is_empty() {
            return Err(PkiError::Invalid("the common name (CN) is empty".into()));
        }
        if !self.c.is_empty() && self.c.len() != 2 {
            return Err(PkiError::Invalid(format!(
                "country '{}' must be a two-letter code",
                self.c
            )));
        }
        let mut b = X509NameBuilder::new()?;
        if self.cn_first {
            b.append_entry_by_nid(Nid::COMMONNAME, &self.cn)?;
        }
        for (nid, v) in [
            (Nid::COUNTRYNAME, &self.c),
            (Nid::STATEORPROVINCENAME, &self.st),
            (Nid::LOCALITYNAME, &self.l),
            (Nid::ORGANIZATIONNAME, &self.o),
            (Nid::ORGANIZATIONALUNITNAME, &self.ou),
            (Nid::COMMONNAME, &self.cn),
        ] {
            let skip_cn = self.cn_first && nid == Nid::COMMONNAME;
            if !v.is_empty() && !skip_cn {
                b.append_entry_by_nid(nid, v)?;
            }
        }
        Ok(b.build())
    }
}

/// keyUsage bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KeyUsage {
    /// digitalSignature.
    pub digital_signature: bool,
    /// keyEncipherment.
    pub key_encipherment: bool,
    /// dataEncipherment.
    pub data_encipherment: bool,
    /// keyAgreement.
    pub key_agreement: bool,
    /// keyCertSign.
    pub key_cert_sign: bool,
    /// cRLSign.
    pub crl_sign: bool,
}

/// extendedKeyUsage purposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtKeyUsage {
    /// id-kp-serverAuth.
    ServerAuth,
    /// id-kp-clientAuth.
    ClientAuth,
    /// IPsec end system (1.3.6.1.5.5.7.3.5).
    IpsecEndSystem,
}

/// basicConstraints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicConstraints {
    /// cA.
    pub ca: bool,
    /// pathLenConstraint.
    pub path_len: Option<u32>,
}

/// A subjectAltName entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectAltName {
    /// dNSName.
    Dns(String),
    /// uniformResourceIdentifier.
    Uri(String),
    /// iPAddress.
    Ip(String),
}

/// What a certificate holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertParams {
    /// Subject.
    pub subject: DistinguishedName,
    /// Serial number (big-endian, positive); `None` draws 16 random bytes.
    pub serial: Option<Vec<u8>>,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// basicConstraints (always written critical).
    pub basic_constraints: Option<BasicConstraints>,
    /// keyUsage (written critical when present).
    pub key_usage: Option<KeyUsage>,
    /// extendedKeyUsage.
    pub ext_key_usage: Vec<ExtKeyUsage>,
    /// subjectAltName.
    pub subject_alt_names: Vec<SubjectAltName>,
    /// Add subject and authority key identifiers.
    pub key_identifiers: bool,
}

impl CertParams {
    /// Parameters for `subject`, valid from `not_before` for `days`.
    pub fn new(subject: DistinguishedName, not_before: i64, days: u32) -> Self {
        Self {
            subject,
            serial: None,
            not_before,
            not_after: not_before + i64::from(days) * 86_400,
            basic_constraints: None,
            key_usage: None,
            ext_key_usage: Vec::new(),
            subject_alt_names: Vec::new(),
            key_identifiers: true,
        }
    }
}

fn serial(params: &CertParams, rng: &dyn RandomSource) -> Result<Asn1Integer, PkiError> {
    let bytes = match &params.serial {
        Some(s) if !s.is_empty() && s.len() <= 20 => s.clone(),
        Some(s) => {
            return Err(PkiError::Invalid(format!(
                "serial of {} bytes: use 1 to 20",
                s.len()
            )));
        }
        None => {
            let mut b = vec![0u8; 16];
            rng.fill(&mut b)?;
            // Positive, and 16 significant bytes as CAPF LSCs carry.
            if let Some(first) = b.first_mut() {
                *first = (*first & 0x7f).max(1);
            }
            b
        }
    };
    Ok(BigNum::from_slice(&bytes)?.to_asn1_integer()?)
}

fn build(
    params: &CertParams,
    public: &PKeyRef<impl HasPublic>,
    issuer: Option<&CertAndKey>,
    signing_key: &PKeyRef<Private>,
    rng: &dyn RandomSource,
) -> Result<X509, PkiError> {
    if params.not_after <= params.not_before {
        return Err(PkiError::Invalid(
            "the certificate would expire before it becomes valid".into(),
        ));
    }
    let subject = params.subject.to_x509_name()?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = serial(params, rng)?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&subject)?;
    match issuer {
        Some(i) => b.set_issuer_name(i.cert.subject_name())?,
        None => b.set_issuer_name(&subject)?,
    }
    b.set_pubkey(public)?;
    let nb = Asn1Time::from_unix(params.not_before)?;
    let na = Asn1Time::from_unix(params.not_after)?;
    b.set_not_before(&nb)?;
    b.set_not_after(&na)?;
    if let Some(bc) = params.basic_constraints {
        let mut e = BcExt::new();
        e.critical();
        if bc.ca {
            e.ca();
        }
        if let Some(p) = bc.path_len {
            e.pathlen(p);
        }
        b.append_extension(e.build()?)?;
    }
    if let Some(ku) = params.key_usage {
        let mut e = KuExt::new();
        e.critical();
        if ku.digital_signature {
            e.digital_signature();
        }
        if ku.key_encipherment {
            e.key_encipherment();
        }
        if ku.data_encipherment {
            e.data_encipherment();
        }
        if ku.key_agreement {
            e.key_agreement();
        }
        if ku.key_cert_sign {
            e.key_cert_sign();
        }
        if ku.crl_sign {
            e.crl_sign();
        }
        b.append_extension(e.build()?)?;
    }
    if !params.ext_key_usage.is_empty() {
        let mut e = EkuExt::new();
        for u in &params.ext_key_usage {
            match u {
                ExtKeyUsage::ServerAuth => e.server_auth(),
                ExtKeyUsage::ClientAuth => e.client_auth(),
                ExtKeyUsage::IpsecEndSystem => e.other("1.3.6.1.5.5.7.3.5"),
            };
        }
        b.append_extension(e.build()?)?;
    }
    if params.key_identifiers {
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))?;
        b.append_extension(ski)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None));
        // A self-signed certificate has no issuer certificate to take the key id from yet;
        // OpenSSL then uses the subject key id, which is the same key.
        if let Ok(aki) = aki {
            b.append_extension(aki)?;
        }
    }
    if !params.subject_alt_names.is_empty() {
        let mut e = SubjectAlternativeName::new();
        for s in &params.subject_alt_names {
            match s {
                SubjectAltName::Dns(d) => e.dns(d),
                SubjectAltName::Uri(u) => e.uri(u),
                SubjectAltName::Ip(i) => e.ip(i),
            };
        }
        let ext = e.build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))?;
        b.append_extension(ext)?;
    }
    b.sign(signing_key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// A self-signed certificate for `key`.
pub fn self_signed(
    params: &CertParams,
    key: &PKeyRef<Private>,
    rng: &dyn RandomSource,
) -> Result<X509, PkiError> {
    build(params, key, None, key, rng)
}

/// A certificate for `public`, issued (SHA-256) by `issuer`.
pub fn issue(
    params: &CertParams,
    public: &PKeyRef<impl HasPublic>,
    issuer: &CertAndKey,
    rng: &dyn RandomSource,
) -> Result<X509, PkiError> {
    build(params, public, Some(issuer), &issuer.key, rng)
}

/// A certificate signing request for `key` with `subject` and optional DNS names.
pub fn csr(
    subject: &DistinguishedName,
    dns: &[String],
    key: &PKeyRef<Private>,
) -> Result<X509Req, PkiError> {
    let mut b = X509ReqBuilder::new()?;
    b.set_version(0)?;
    let name = subject.to_x509_name()?;
    b.set_subject_name(&name)?;
    b.set_pubkey(key)?;
    if !dns.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for d in dns {
            san.dns(d);
        }
        let ext = san.build(&b.x509v3_context(None))?;
        let mut stack = Stack::new()?;
        stack.push(ext)?;
        b.add_extensions(&stack)?;
    }
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}
