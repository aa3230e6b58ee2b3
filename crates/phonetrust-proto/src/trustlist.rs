//! Trust lists: the ITL (`ITLFile.tlv`) and the CTL (`CTLFile.tlv`).
//!
//! The body of a trust list is a run of records. Each record starts with
//! RECORD_LENGTH (tag 1, counting the whole record) and holds `tag:u8, length:u16, value`
//! items: subject, role, issuer, serial, public key, the certificate's own signature, and
//! either the full certificate or its hash. [`parse`] reads them into typed [`Record`]s
//! that keep unknown tags; [`build`] writes them in the vectors' order
//! (`1, [2], 3, 5, 6, 4, 7, 8, 9 | 11 12, [10]`) under a signed header. A phone finds the
//! key that signed the file in the SAST record whose serial equals the header's; so does
//! [`TrustList::verify`].

use std::net::Ipv4Addr;

use openssl::x509::{X509, X509Ref};

use crate::cert::{CertError, name_string, record_public_key, serial_bytes, sha1};
use crate::codec::{DecodeError, EncodeError, LengthSlot, Reader, nul_text, put_tlv, with_nul};
use crate::tlv::{
    self, FileSigner, HashAlg, Header, HeaderParams, SignError, VerifyError, Version,
};

/// Record tags.
pub mod tag {
    /// RECORD_LENGTH: u16, the whole record.
    pub const RECORD_LENGTH: u8 = 1;
    /// DNS_NAME: NUL-terminated.
    pub const DNS_NAME: u8 = 2;
    /// SUBJECT_NAME: NUL-terminated.
    pub const SUBJECT_NAME: u8 = 3;
    /// FUNCTION: u16 role.
    pub const FUNCTION: u8 = 4;
    /// ISSUER_NAME: NUL-terminated.
    pub const ISSUER_NAME: u8 = 5;
    /// SERIAL_NUMBER.
    pub const SERIAL_NUMBER: u8 = 6;
    /// PUBLIC_KEY.
    pub const PUBLIC_KEY: u8 = 7;
    /// SIGNATURE: the certificate's own signature.
    pub const SIGNATURE: u8 = 8;
    /// CERTIFICATE: DER.
    pub const CERTIFICATE: u8 = 9;
    /// IP_ADDRESS: IPv4.
    pub const IP_ADDRESS: u8 = 10;
    /// CERT_HASH: SHA-1 of the DER certificate.
    pub const CERT_HASH: u8 = 11;
    /// HASH_ALGORITHM of CERT_HASH.
    pub const HASH_ALGORITHM: u8 = 12;
}

/// The name `show itl` prints for a record tag (vendor spelling).
pub fn tag_name(t: u8) -> &'static str {
    match t {
        tag::RECORD_LENGTH => "RECORDLENGTH",
        tag::DNS_NAME => "DNSNAME",
        tag::SUBJECT_NAME => "SUBJECTNAME",
        tag::FUNCTION => "FUNCTION",
        tag::ISSUER_NAME => "ISSUERNAME",
        tag::SERIAL_NUMBER => "SERIALNUMBER",
        tag::PUBLIC_KEY => "PUBLICKEY",
        tag::SIGNATURE => "SIGNATURE",
        tag::CERTIFICATE => "CERTIFICATE",
        tag::IP_ADDRESS => "IPADDRESS",
        tag::CERT_HASH => "CERTHASH",
        tag::HASH_ALGORITHM => "HASH ALGORITHM",
        _ => "UNKNOWN",
    }
}

/// The roles whose certificates a phone accepts as the signer of a downloaded file: TFTP,
/// CCM+TFTP and SAST ([`TrustList::file_signers`]).
pub const FILE_SIGNER_ROLES: [Role; 3] = [Role::Tftp, Role::CcmTftp, Role::Sast];

/// A record's role (FUNCTION), shared with TVS answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// 0: System Administrator Security Token (a trust-list signer).
    Sast,
    /// 1: CallManager.
    Ccm,
    /// 2: CallManager + TFTP.
    CcmTftp,
    /// 3: TFTP.
    Tftp,
    /// 4: CAPF.
    Capf,
    /// 7: application server (HTTPS).
    AppServer,
    /// 21: TVS.
    Tvs,
    /// Any other code, kept as read.
    Unknown(u16),
}

impl Role {
    /// Every named role.
    pub const ALL: [Role; 7] = [
        Role::Sast,
        Role::Ccm,
        Role::CcmTftp,
        Role::Tftp,
        Role::Capf,
        Role::AppServer,
        Role::Tvs,
    ];

    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            Self::Sast => 0,
            Self::Ccm => 1,
            Self::CcmTftp => 2,
            Self::Tftp => 3,
            Self::Capf => 4,
            Self::AppServer => 7,
            Self::Tvs => 21,
            Self::Unknown(c) => c,
        }
    }

    /// Short name used on the command line (`SAST`, `CCM+TFTP`, ...).
    pub fn short_name(self) -> String {
        match self {
            Self::Sast => "SAST".into(),
            Self::Ccm => "CCM".into(),
            Self::CcmTftp => "CCM+TFTP".into(),
            Self::Tftp => "TFTP".into(),
            Self::Capf => "CAPF".into(),
            Self::AppServer => "APP-SERVER".into(),
            Self::Tvs => "TVS".into(),
            Self::Unknown(c) => format!("{c}"),
        }
    }

    /// The name `show itl` prints.
    pub fn display_name(self) -> String {
        match self {
            Self::Sast => "System Administrator Security Token".into(),
            other => other.short_name(),
        }
    }
}

impl From<u16> for Role {
    fn from(c: u16) -> Self {
        match c {
            0 => Self::Sast,
            1 => Self::Ccm,
            2 => Self::CcmTftp,
            3 => Self::Tftp,
            4 => Self::Capf,
            7 => Self::AppServer,
            21 => Self::Tvs,
            c => Self::Unknown(c),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let u = s.trim().to_ascii_uppercase();
        Role::ALL
            .into_iter()
            .find(|r| r.short_name() == u)
            .or(match u.as_str() {
                "HTTPS" | "APPSERVER" | "APP_SERVER" => Some(Role::AppServer),
                "CCMTFTP" | "CCM_TFTP" => Some(Role::CcmTftp),
                _ => None,
            })
            .ok_or_else(|| {
                format!(
                    "unknown role '{s}' (use SAST, CCM, CCM+TFTP, TFTP, CAPF, APP-SERVER or TVS)"
                )
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short_name())
    }
}

impl Record {
    /// Whether a phone accepts this record's certificate as the signer of a file it
    /// downloads (its role is one of [`FILE_SIGNER_ROLES`]).
    pub fn may_sign_files(&self) -> bool {
        self.role.is_some_and(|x| FILE_SIGNER_ROLES.contains(&x))
    }
}

/// One trust-list record. Every field is optional on the wire; unknown tags are kept.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    /// DNS_NAME.
    pub dns_name: Option<String>,
    /// SUBJECT_NAME.
    pub subject: Option<String>,
    /// FUNCTION.
    pub role: Option<Role>,
    /// ISSUER_NAME.
    pub issuer: Option<String>,
    /// SERIAL_NUMBER.
    pub serial: Option<Vec<u8>>,
    /// PUBLIC_KEY.
    pub public_key: Option<Vec<u8>>,
    /// SIGNATURE (the certificate's own).
    pub signature: Option<Vec<u8>>,
    /// CERTIFICATE (DER).
    pub certificate: Option<Vec<u8>>,
    /// IP_ADDRESS.
    pub ip_address: Option<Ipv4Addr>,
    /// CERT_HASH.
    pub cert_hash: Option<Vec<u8>>,
    /// HASH_ALGORITHM of CERT_HASH.
    pub hash_alg: Option<HashAlg>,
    /// Items with tags this implementation does not know, in file order.
    pub unknown: Vec<(u8, Vec<u8>)>,
}

/// How a certificate is carried in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CertForm {
    /// The full DER certificate (tag 9).
    #[default]
    Full,
    /// Its SHA-1 hash (tags 11 and 12), as vendor ITLs carry CAPF and TVS.
    Hash,
}

impl Record {
    /// A record for `cert` in `role`, in the form the vectors use.
    pub fn from_cert(role: Role, cert: &X509Ref, form: CertForm) -> Result<Self, CertError> {
        let der = cert.to_der()?;
        let mut r = Record {
            subject: Some(name_string(cert.subject_name())),
            role: Some(role),
            issuer: Some(name_string(cert.issuer_name())),
            serial: Some(serial_bytes(cert)?),
            public_key: Some(record_public_key(&cert.public_key()?)?),
            signature: Some(cert.signature().as_slice().to_vec()),
            ..Record::default()
        };
        match form {
            CertForm::Full => r.certificate = Some(der),
            CertForm::Hash => {
                r.cert_hash = Some(sha1(&der));
                r.hash_alg = Some(HashAlg::Sha1);
            }
        }
        Ok(r)
    }

    /// Set the DNS name.
    pub fn with_dns_name(mut self, name: impl Into<String>) -> Self {
        self.dns_name = Some(name.into());
        self
    }

    /// Set the IPv4 address.
    pub fn with_ip(mut self, ip: Ipv4Addr) -> Self {
        self.ip_address = Some(ip);
        self
    }

    /// The certificate, if the record carries one that parses.
    pub fn x509(&self) -> Option<X509> {
        self.certificate
            .as_deref()
            .and_then(|d| X509::from_der(d).ok())
    }

    /// SHA-1 of the certificate: computed from the full certificate, or as carried.
    pub fn cert_sha1(&self) -> Option<Vec<u8>> {
        match (&self.certificate, &self.cert_hash) {
            (Some(der), _) => Some(sha1(der)),
            (None, Some(h)) => Some(h.clone()),
            _ => None,
        }
    }

    /// Append the encoded record.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.push(tag::RECORD_LENGTH);
        crate::codec::put_u16(out, 2);
        let len = LengthSlot::open_counting_from(out, start);
        if let Some(d) = &self.dns_name {
            put_tlv(out, tag::DNS_NAME, &with_nul(d), "DNS_NAME")?;
        }
        if let Some(s) = &self.subject {
            put_tlv(out, tag::SUBJECT_NAME, &with_nul(s), "SUBJECT_NAME")?;
        }
        if let Some(s) = &self.issuer {
            put_tlv(out, tag::ISSUER_NAME, &with_nul(s), "ISSUER_NAME")?;
        }
        if let Some(s) = &self.serial {
            put_tlv(out, tag::SERIAL_NUMBER, s, "SERIAL_NUMBER")?;
        }
        if let Some(r) = self.role {
            put_tlv(out, tag::FUNCTION, &r.code().to_be_bytes(), "FUNCTION")?;
        }
        if let Some(k) = &self.public_key {
            put_tlv(out, tag::PUBLIC_KEY, k, "PUBLIC_KEY")?;
        }
        if let Some(s) = &self.signature {
            put_tlv(out, tag::SIGNATURE, s, "SIGNATURE")?;
        }
        if let Some(c) = &self.certificate {
            put_tlv(out, tag::CERTIFICATE, c, "CERTIFICATE")?;
        }
        if let Some(h) = &self.cert_hash {
            put_tlv(out, tag::CERT_HASH, h, "CERT_HASH")?;
        }
        if let Some(a) = self.hash_alg {
            put_tlv(out, tag::HASH_ALGORITHM, &[a.code()], "HASH_ALGORITHM")?;
        }
        if let Some(ip) = self.ip_address {
            put_tlv(out, tag::IP_ADDRESS, &ip.octets(), "IP_ADDRESS")?;
        }
        for (t, v) in &self.unknown {
            put_tlv(out, *t, v, "unknown record item")?;
        }
        len.close(out, "record")?;
        Ok(())
    }
}

/// One item of a record as it lies in the file (for display).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordItem {
    /// Absolute offset of the tag byte.
    pub offset: usize,
    /// Tag.
    pub tag: u8,
    /// Length field.
    pub length: u16,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// A record with where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRecord {
    /// Absolute offset of the record.
    pub offset: usize,
    /// RECORD_LENGTH.
    pub length: u16,
    /// The items in file order.
    pub items: Vec<RecordItem>,
    /// The typed record.
    pub record: Record,
}

/// A parsed trust list. Its records are untrusted until [`TrustList::verify`] passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustList {
    /// The signed header.
    pub header: Header,
    /// The records.
    pub records: Vec<ParsedRecord>,
}

/// Largest number of records accepted in one trust list.
pub const MAX_RECORDS: usize = 4096;

fn parse_record(r: &mut Reader<'_>, index: usize) -> Result<ParsedRecord, DecodeError> {
    let offset = r.offset();
    let what = |t: u8| format!("record {index}, tag {t} {}", tag_name(t));
    let t = r.u8("record tag")?;
    if t != tag::RECORD_LENGTH {
        return Err(DecodeError::malformed(
            offset,
            what(t),
            "a record must start with tag 1 RECORDLENGTH",
        ));
    }
    let l = r.u16("RECORDLENGTH length")?;
    if l != 2 {
        return Err(DecodeError::malformed(
            offset,
            what(t),
            format!("length {l} where 2 is required"),
        ));
    }
    let length = r.u16("RECORDLENGTH")?;
    let body_len = usize::from(length).checked_sub(5).ok_or_else(|| {
        DecodeError::malformed(
            offset,
            what(t),
            format!("record length {length} is shorter than its own length item"),
        )
    })?;
    if body_len > r.remaining() {
        return Err(DecodeError::malformed(
            offset,
            what(t),
            format!(
                "record length {length} runs past the end of the file ({} bytes left)",
                r.remaining() + 5
            ),
        ));
    }
    let mut rr = r.sub(body_len, "record")?;
    let mut items = vec![RecordItem {
        offset,
        tag: t,
        length: 2,
        value: length.to_be_bytes().to_vec(),
    }];
    let mut rec = Record::default();
    let mut seen = [false; 256];
    while !rr.is_empty() {
        let off = rr.offset();
        let t = rr.u8("record item tag")?;
        let len = rr.u16("record item length")?;
        let value = rr.take(usize::from(len), "record item").map_err(|_| {
            DecodeError::malformed(
                off,
                what(t),
                format!("value of {len} bytes runs past the end of the record"),
            )
        })?;
        items.push(RecordItem {
            offset: off,
            tag: t,
            length: len,
            value: value.to_vec(),
        });
        let known = tag_name(t) != "UNKNOWN";
        if known && crate::codec::seen_before(&mut seen, t) {
            return Err(DecodeError::malformed(
                off,
                what(t),
                "appears twice in the record",
            ));
        }
        let exact = |n: usize| -> Result<(), DecodeError> {
            if value.len() == n {
                Ok(())
            } else {
                Err(DecodeError::malformed(
                    off,
                    what(t),
                    format!("length {} where {n} is required", value.len()),
                ))
            }
        };
        match t {
            tag::RECORD_LENGTH => {
                return Err(DecodeError::malformed(
                    off,
                    what(t),
                    "appears twice in the record",
                ));
            }
            tag::DNS_NAME => rec.dns_name = Some(nul_text(value)),
            tag::SUBJECT_NAME => rec.subject = Some(nul_text(value)),
            tag::FUNCTION => {
                exact(2)?;
                rec.role = Some(Role::from(u16::from_be_bytes([
                    value.first().copied().unwrap_or(0),
                    value.get(1).copied().unwrap_or(0),
                ])));
            }
            tag::ISSUER_NAME => rec.issuer = Some(nul_text(value)),
            tag::SERIAL_NUMBER => rec.serial = Some(value.to_vec()),
            tag::PUBLIC_KEY => rec.public_key = Some(value.to_vec()),
            tag::SIGNATURE => rec.signature = Some(value.to_vec()),
            tag::CERTIFICATE => rec.certificate = Some(value.to_vec()),
            tag::IP_ADDRESS => {
                exact(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(value);
                rec.ip_address = Some(Ipv4Addr::from(a));
            }
            tag::CERT_HASH => rec.cert_hash = Some(value.to_vec()),
            tag::HASH_ALGORITHM => {
                exact(1)?;
                rec.hash_alg = Some(HashAlg::from(value.first().copied().unwrap_or(0)));
            }
            _ => rec.unknown.push((t, value.to_vec())),
        }
    }
    Ok(ParsedRecord {
        offset,
        length,
        items,
        record: rec,
    })
}

/// Parse a trust list (header and records) from untrusted bytes.
pub fn parse(file: &[u8]) -> Result<TrustList, DecodeError> {
    let header = tlv::parse_header(file)?;
    let start = usize::from(header.header_length);
    let mut r = Reader::at(header.body(file), start);
    let mut records = Vec::new();
    while !r.is_empty() {
        if records.len() >= MAX_RECORDS {
            return Err(DecodeError::malformed(
                r.offset(),
                "records",
                format!("more than {MAX_RECORDS} records"),
            ));
        }
        records.push(parse_record(&mut r, records.len() + 1)?);
    }
    Ok(TrustList { header, records })
}

impl TrustList {
    /// Index (0-based) of the SAST record that signed the file, found as phones do: role
    /// SAST, serial equal to the header's, carrying a certificate.
    pub fn signer_index(&self) -> Option<usize> {
        self.records.iter().position(|p| {
            p.record.role == Some(Role::Sast)
                && p.record.serial.as_deref() == Some(self.header.serial.as_slice())
                && p.record.certificate.is_some()
        })
    }

    /// The signer's certificate, from its SAST record (unverified: call [`Self::verify`]).
    pub fn signer_cert(&self) -> Option<openssl::x509::X509> {
        self.signer_index()
            .and_then(|i| self.records.get(i))
            .and_then(|r| r.record.x509())
    }

    /// The certificates a phone holding this list accepts as the signer of a file it
    /// downloads (signed and encrypted configs, firmware): the records of the roles in
    /// [`FILE_SIGNER_ROLES`]. The one rule for phones and tools alike.
    pub fn file_signers(&self) -> Vec<openssl::x509::X509> {
        self.plain_records()
            .filter(|r| r.may_sign_files())
            .filter_map(Record::x509)
            .collect()
    }

    /// Verify the signature with the signer's own record; returns its index.
    pub fn verify(&self, file: &[u8]) -> Result<usize, VerifyError> {
        let idx = self
            .signer_index()
            .ok_or_else(|| VerifyError::SignerNotFound {
                serial: crate::codec::hex(&self.header.serial),
            })?;
        let cert = self
            .records
            .get(idx)
            .and_then(|p| p.record.x509())
            .ok_or(VerifyError::Cert(CertError::NoCertificate))?;
        let key = cert.public_key()?;
        tlv::verify_signature(file, &self.header, &key)?;
        Ok(idx)
    }

    /// Verify with a key the caller already trusts (e.g. the signer of the phone's
    /// current list), regardless of the file's own records.
    pub fn verify_with(&self, file: &[u8], cert: &X509Ref) -> Result<(), VerifyError> {
        tlv::verify_with_cert(file, &self.header, cert)
    }

    /// True when the file is a CTL (by its FILENAME).
    pub fn is_ctl(&self) -> bool {
        self.header
            .filename
            .as_deref()
            .is_some_and(|f| f.to_ascii_uppercase().starts_with("CTL"))
    }

    /// The typed records.
    pub fn plain_records(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().map(|p| &p.record)
    }
}

/// What a trust list is built from.
#[derive(Clone, Debug)]
pub struct TrustListParams {
    /// FILENAME (`ITLFile.tlv`, `CTLFile.tlv`, `ITLSEP<MAC>.tlv`, ...).
    pub filename: String,
    /// Signature digest (SHA-1 for the widest phone support, SHA-512 for newer phones).
    pub hash: HashAlg,
    /// SIGNER_VERSION; `None` picks 1.0 for SHA-1 and 1.1 otherwise, as the vectors do.
    pub signer_version: Option<Version>,
    /// TIMESTAMP.
    pub timestamp: u32,
    /// SIGNATURE_ALGORITHM byte (see [`HeaderParams::signature_algorithm`]).
    pub signature_algorithm: u8,
}

impl TrustListParams {
    /// Parameters with the defaults above.
    pub fn new(filename: impl Into<String>, hash: HashAlg, timestamp: u32) -> Self {
        Self {
            filename: filename.into(),
            hash,
            signer_version: None,
            timestamp,
            signature_algorithm: 0,
        }
    }
}

/// The signer's own SAST record (full certificate), which [`build`] puts first.
pub fn signer_record(signer: &dyn FileSigner) -> Result<Record, CertError> {
    Record::from_cert(Role::Sast, signer.certificate(), CertForm::Full)
}

/// Build and sign a trust list: the signer's SAST record first, then `records`.
pub fn build(
    params: &TrustListParams,
    signer: &dyn FileSigner,
    records: &[Record],
) -> Result<Vec<u8>, SignError> {
    let mut body = Vec::with_capacity(records.len() * 1800 + 1800);
    signer_record(signer)?.encode(&mut body)?;
    for r in records {
        r.encode(&mut body)?;
    }
    let signer_version = params.signer_version.unwrap_or(match params.hash {
        HashAlg::Sha1 => Version::new(1, 0),
        _ => Version::new(1, 1),
    });
    let header = HeaderParams {
        version: Version::TRUST_LIST,
        signer_version: Some(signer_version),
        hash: params.hash,
        filename: params.filename.clone(),
        timestamp: params.timestamp,
        signature_algorithm: params.signature_algorithm,
        encryption: None,
    };
    tlv::sign(&header, signer, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::CertAndKey;
    use crate::testutil::vector;

    #[test]
    fn itl_vector_has_the_documented_records() {
        let f = vector("files/ITLFile.tlv");
        let t = parse(&f).unwrap();
        assert_eq!(t.header.version, Version::TRUST_LIST);
        assert_eq!(t.header.header_length, 484);
        let roles: Vec<_> = t.plain_records().map(|r| r.role.unwrap()).collect();
        assert_eq!(
            roles,
            [
                Role::Sast,
                Role::Sast,
                Role::CcmTftp,
                Role::Capf,
                Role::Tvs,
                Role::Tftp
            ]
        );
        assert_eq!(t.verify(&f).unwrap(), 0);
        assert_eq!(t.records[5].record.public_key.as_ref().unwrap().len(), 65);
        assert!(!t.is_ctl());
    }

    #[test]
    fn record_round_trip_with_every_tag() {
        let r = Record {
            dns_name: Some("pub".into()),
            subject: Some("CN=x".into()),
            role: Some(Role::Unknown(99)),
            issuer: Some("CN=y".into()),
            serial: Some(vec![1, 2]),
            public_key: Some(vec![4; 65]),
            signature: Some(vec![5; 3]),
            certificate: None,
            ip_address: Some(Ipv4Addr::new(10, 0, 0, 1)),
            cert_hash: Some(vec![7; 20]),
            hash_alg: Some(HashAlg::Sha1),
            unknown: vec![(200, vec![1, 2, 3])],
        };
        let mut out = Vec::new();
        r.encode(&mut out).unwrap();
        let mut rd = Reader::new(&out);
        let p = parse_record(&mut rd, 1).unwrap();
        assert_eq!(p.record, r);
        assert_eq!(usize::from(p.length), out.len());
    }

    #[test]
    fn record_item_hex_literal() {
        // RECORD_LENGTH 14, FUNCTION CAPF, IP 192.0.2.1
        let bytes = crate::codec::unhex("0100020011 0400020004 0a0004c0000201").unwrap();
        let p = parse_record(&mut Reader::new(&bytes), 1).unwrap();
        assert_eq!(p.record.role, Some(Role::Capf));
        assert_eq!(p.record.ip_address, Some(Ipv4Addr::new(192, 0, 2, 1)));
        // Record length shorter than its content.
        let bad = crate::codec::unhex("0100020006 0400020004").unwrap();
        assert!(parse_record(&mut Reader::new(&bad), 1).is_err());
    }

    #[test]
    fn build_reproduces_the_itl_vector_byte_for_byte() {
        let signer = CertAndKey::from_pem(&vector("pki/callmanager.pem")).unwrap();
        let cert = |p: &str| crate::cert::load_certs(&vector(p)).unwrap().remove(0);
        let recs = [
            (Role::Sast, "pki/itlrecovery.crt"),
            (Role::CcmTftp, "pki/callmanager.crt"),
            (Role::Capf, "pki/capf.crt"),
            (Role::Tvs, "pki/tvs.crt"),
            (Role::Tftp, "pki/callmanager-ecdsa.crt"),
        ]
        .iter()
        .map(|(role, p)| Record::from_cert(*role, &cert(p), CertForm::Full).unwrap())
        .collect::<Vec<_>>();
        let params = TrustListParams::new("ITLFile.tlv", HashAlg::Sha1, 0x6b02_f352);
        let built = build(&params, &signer, &recs).unwrap();
        assert_eq!(built, vector("files/ITLFile.tlv"));
    }
}
