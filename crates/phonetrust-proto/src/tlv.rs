//! The signed header ("TLV file") that every file a phone downloads starts with.
//!
//! A file is `header || body`. The header is a run of `tag:u8, length:u16, value` items
//! (tag 13, padding, is one bare byte); containers (tags 3, 7, 9, 16, 17, 21) announce the
//! length of the items nested in them and a reader steps into them. The signature
//! (tag 12) is RSA PKCS#1 v1.5 over the whole file with the signature item cut out.
//!
//! [`parse_header`] reads a header from untrusted bytes (every item bounded by the
//! header length and by its container; duplicates of singleton items refused; unknown
//! tags kept). [`sign`] writes a header in the layout of the reference vectors —
//! `VERSION, HEADER_LENGTH, [SIGNER_VERSION], SIGNER_INFO{4,6,5},
//! SIGNATURE_INFO{8, 9{10,11}}, SIGNATURE, FILENAME, TIMESTAMP, [encryption items],
//! PADDING*` — and signs it through a [`FileSigner`], so the key may live in memory or
//! in a hardware token.

use std::ops::Range;

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKeyRef, Public};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509Ref;

use crate::cert::{CertAndKey, CertError, name_string, serial_bytes};
use crate::codec::{
    DecodeError, EncodeError, LengthSlot, Reader, nul_text, put_tlv, put_u16, with_nul,
};

/// Largest file any parser in this crate accepts (trust lists of big clusters stay far
/// below this).
pub const MAX_FILE_LEN: usize = 4 * 1024 * 1024;

/// Header tags.
pub mod tag {
    /// VERSION: major, minor.
    pub const VERSION: u8 = 1;
    /// HEADER_LENGTH: u16.
    pub const HEADER_LENGTH: u8 = 2;
    /// SIGNER_INFO container (tags 4, 6, 5).
    pub const SIGNER_INFO: u8 = 3;
    /// SIGNER_NAME: NUL-terminated subject.
    pub const SIGNER_NAME: u8 = 4;
    /// SERIAL_NUMBER of the signing certificate.
    pub const SERIAL_NUMBER: u8 = 5;
    /// ISSUER_NAME (CANAME) of the signing certificate.
    pub const ISSUER_NAME: u8 = 6;
    /// SIGNATURE_INFO container (tags 8, 9).
    pub const SIGNATURE_INFO: u8 = 7;
    /// HASH_ALGORITHM: u8.
    pub const HASH_ALGORITHM: u8 = 8;
    /// SIGNATURE_ALGORITHM_INFO container (tags 10, 11).
    pub const SIGNATURE_ALGORITHM_INFO: u8 = 9;
    /// SIGNATURE_ALGORITHM: u8.
    pub const SIGNATURE_ALGORITHM: u8 = 10;
    /// SIGNATURE_MODULUS: u8 index of the modulus size.
    pub const SIGNATURE_MODULUS: u8 = 11;
    /// SIGNATURE: RSA PKCS#1 v1.5.
    pub const SIGNATURE: u8 = 12;
    /// PADDING: a single 0x0D byte, no length.
    pub const PADDING: u8 = 13;
    /// FILENAME: NUL-terminated.
    pub const FILENAME: u8 = 14;
    /// TIMESTAMP: u32 Unix seconds.
    pub const TIMESTAMP: u8 = 15;
    /// ENCRYPTION_INFO container.
    pub const ENCRYPTION_INFO: u8 = 16;
    /// ENCRYPTION_IV_INFO container.
    pub const ENCRYPTION_IV_INFO: u8 = 17;
    /// Reserved u8 (0) inside the IV container.
    pub const ENCRYPTION_IV_RESERVED: u8 = 18;
    /// ENCRYPTION_IV: 16 bytes.
    pub const ENCRYPTION_IV: u8 = 19;
    /// ENCRYPTION_PADDING: u16 count of pad bytes.
    pub const ENCRYPTION_PADDING: u8 = 20;
    /// ENCRYPTION_KEY_INFO container.
    pub const ENCRYPTION_KEY_INFO: u8 = 21;
    /// Reserved u8 (0) inside the key container.
    pub const ENCRYPTION_KEY_RESERVED: u8 = 22;
    /// ENCRYPTION_KEY_SIZE: u16 bit length of the wrapped key.
    pub const ENCRYPTION_KEY_SIZE: u8 = 23;
    /// ENCRYPTION_KEY_ALGORITHM: u8 (1).
    pub const ENCRYPTION_KEY_ALGORITHM: u8 = 24;
    /// ENCRYPTION_KEY: the wrapped AES key.
    pub const ENCRYPTION_KEY: u8 = 25;
    /// ENCRYPTION_HASH_ALGORITHM: u8.
    pub const ENCRYPTION_HASH_ALGORITHM: u8 = 26;
    /// ENCRYPTION_HASH: digest of the plaintext.
    pub const ENCRYPTION_HASH: u8 = 27;
    /// SIGNER_VERSION: major, minor (trust lists).
    pub const SIGNER_VERSION: u8 = 28;
}

/// The name `show itl` / `show ctl` print for a header tag (the vendor's spelling,
/// misspellings included, because administrators grep for them).
pub fn tag_name(t: u8) -> &'static str {
    match t {
        tag::VERSION => "VERSION",
        tag::HEADER_LENGTH => "HEADERLENGTH",
        tag::SIGNER_INFO => "SIGNERID",
        tag::SIGNER_NAME => "SIGNERNAME",
        tag::SERIAL_NUMBER => "SERIALNUMBER",
        tag::ISSUER_NAME => "CANAME",
        tag::SIGNATURE_INFO => "SIGNATUREINFO",
        tag::HASH_ALGORITHM => "DIGESTALGORTITHM",
        tag::SIGNATURE_ALGORITHM_INFO => "SIGNATUREALGOINFO",
        tag::SIGNATURE_ALGORITHM => "SIGNATUREALGORTITHM",
        tag::SIGNATURE_MODULUS => "SIGNATUREMODULUS",
        tag::SIGNATURE => "SIGNATURE",
        tag::PADDING => "PADDING",
        tag::FILENAME => "FILENAME",
        tag::TIMESTAMP => "TIMESTAMP",
        tag::ENCRYPTION_INFO => "ENCRYPTIONINFO",
        tag::ENCRYPTION_IV_INFO => "ENCRYPTIONIVINFO",
        tag::ENCRYPTION_IV_RESERVED => "ENCRYPTIONIVRESERVED",
        tag::ENCRYPTION_IV => "ENCRYPTIONIV",
        tag::ENCRYPTION_PADDING => "ENCRYPTIONPADDING",
        tag::ENCRYPTION_KEY_INFO => "ENCRYPTIONKEYINFO",
        tag::ENCRYPTION_KEY_RESERVED => "ENCRYPTIONKEYRESERVED",
        tag::ENCRYPTION_KEY_SIZE => "ENCRYPTIONKEYSIZE",
        tag::ENCRYPTION_KEY_ALGORITHM => "ENCRYPTIONKEYALGORITHM",
        tag::ENCRYPTION_KEY => "ENCRYPTIONKEY",
        tag::ENCRYPTION_HASH_ALGORITHM => "ENCRYPTIONHASHALGORITHM",
        tag::ENCRYPTION_HASH => "ENCRYPTIONHASH",
        tag::SIGNER_VERSION => "SIGNERVERSION",
        _ => "UNKNOWN",
    }
}

/// True for the tags whose length covers nested items.
pub fn is_container(t: u8) -> bool {
    matches!(
        t,
        tag::SIGNER_INFO
            | tag::SIGNATURE_INFO
            | tag::SIGNATURE_ALGORITHM_INFO
            | tag::ENCRYPTION_INFO
            | tag::ENCRYPTION_IV_INFO
            | tag::ENCRYPTION_KEY_INFO
    )
}

/// A `major.minor` version pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major number.
    pub major: u8,
    /// Minor number.
    pub minor: u8,
}

impl Version {
    /// Trust lists (ITL, CTL): 1.2.
    pub const TRUST_LIST: Self = Self::new(1, 2);
    /// Signed files (.sgn): 1.0.
    pub const SIGNED: Self = Self::new(1, 0);
    /// Encrypted files (.enc.sgn): 2.0.
    pub const ENCRYPTED: Self = Self::new(2, 0);

    /// A version.
    pub const fn new(major: u8, minor: u8) -> Self {
        Self { major, minor }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Hash algorithm codes shared by headers, records and CAPF messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// 1.
    Sha1,
    /// 2.
    Sha256,
    /// 3.
    Sha512,
    /// Any other code, kept as read.
    Unknown(u8),
}

impl HashAlg {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::Sha1 => 1,
            Self::Sha256 => 2,
            Self::Sha512 => 3,
            Self::Unknown(c) => c,
        }
    }

    /// OpenSSL's digest for this code, if known.
    pub fn digest(self) -> Option<MessageDigest> {
        match self {
            Self::Sha1 => Some(MessageDigest::sha1()),
            Self::Sha256 => Some(MessageDigest::sha256()),
            Self::Sha512 => Some(MessageDigest::sha512()),
            Self::Unknown(_) => None,
        }
    }

    /// Display name.
    pub fn name(self) -> String {
        match self {
            Self::Sha1 => "SHA1".into(),
            Self::Sha256 => "SHA256".into(),
            Self::Sha512 => "SHA512".into(),
            Self::Unknown(c) => format!("unknown({c})"),
        }
    }
}

impl From<u8> for HashAlg {
    fn from(c: u8) -> Self {
        match c {
            1 => Self::Sha1,
            2 => Self::Sha256,
            3 => Self::Sha512,
            c => Self::Unknown(c),
        }
    }
}

impl std::str::FromStr for HashAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            _ => Err(format!("unknown digest '{s}' (use sha1, sha256 or sha512)")),
        }
    }
}

/// The encryption items of a `.enc.sgn` header (tags 16–27).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionInfo {
    /// AES-CBC IV (16 bytes).
    pub iv: Vec<u8>,
    /// Number of `\r` pad bytes appended to the plaintext.
    pub padding: u16,
    /// Bit length of the wrapped key (the RSA modulus size).
    pub key_size_bits: u16,
    /// Key algorithm code (1).
    pub key_algorithm: u8,
    /// The AES key wrapped with RSA PKCS#1 v1.5 to the phone's public key.
    pub wrapped_key: Vec<u8>,
    /// Digest algorithm of [`Self::hash`].
    pub hash_alg: HashAlg,
    /// Digest of the plaintext.
    pub hash: Vec<u8>,
}

/// One header item as it lies in the file, for display and error reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderItem {
    /// Absolute offset of the tag byte.
    pub offset: usize,
    /// The tag.
    pub tag: u8,
    /// The length field (for containers, the length of what they hold; 0 for padding).
    pub length: u16,
    /// The value's byte range in the file (empty for containers and padding).
    pub value: Range<usize>,
}

/// A parsed signed header. Nothing in it is trusted until [`verify_signature`] passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// VERSION.
    pub version: Version,
    /// HEADER_LENGTH: the body starts here.
    pub header_length: u16,
    /// SIGNER_VERSION, in trust lists.
    pub signer_version: Option<Version>,
    /// SIGNER_NAME.
    pub signer_name: String,
    /// ISSUER_NAME (CANAME).
    pub issuer_name: String,
    /// SERIAL_NUMBER of the signing certificate.
    pub serial: Vec<u8>,
    /// HASH_ALGORITHM of the signature.
    pub hash_alg: HashAlg,
    /// SIGNATURE_ALGORITHM (0 or 1 both mean RSA).
    pub signature_algorithm: u8,
    /// SIGNATURE_MODULUS index.
    pub signature_modulus: u8,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// Byte range of the whole SIGNATURE item (tag, length, value).
    pub signature_item: Range<usize>,
    /// FILENAME.
    pub filename: Option<String>,
    /// TIMESTAMP.
    pub timestamp: Option<u32>,
    /// Encryption items, in `.enc.sgn` files.
    pub encryption: Option<EncryptionInfo>,
    /// Every item in file order.
    pub items: Vec<HeaderItem>,
}

impl Header {
    /// The signed message: the whole file with the SIGNATURE item cut out.
    pub fn signed_message(&self, file: &[u8]) -> Vec<u8> {
        cut(file, &self.signature_item)
    }

    /// The body (everything after the header).
    pub fn body<'f>(&self, file: &'f [u8]) -> &'f [u8] {
        file.get(usize::from(self.header_length)..)
            .unwrap_or_default()
    }
}

/// `file` without the bytes in `item`.
fn cut(file: &[u8], item: &Range<usize>) -> Vec<u8> {
    let mut m = Vec::with_capacity(file.len());
    m.extend_from_slice(file.get(..item.start).unwrap_or_default());
    m.extend_from_slice(file.get(item.end..).unwrap_or_default());
    m
}

/// Modulus size index (tag 11) for an RSA key of `bits`.
pub fn modulus_index(bits: u32) -> Option<u8> {
    match bits {
        512 => Some(0),
        1024 => Some(1),
        2048 => Some(2),
        4096 => Some(3),
        _ => None,
    }
}

#[derive(Default)]
struct EncParts {
    iv: Option<Vec<u8>>,
    padding: Option<u16>,
    key_size: Option<u16>,
    key_alg: Option<u8>,
    key: Option<Vec<u8>>,
    hash_alg: Option<HashAlg>,
    hash: Option<Vec<u8>>,
    seen: bool,
}

fn fixed(value: &[u8], want: usize, offset: usize, t: u8) -> Result<&[u8], DecodeError> {
    if value.len() == want {
        Ok(value)
    } else {
        Err(DecodeError::malformed(
            offset,
            format!("tag {t} {}", tag_name(t)),
            format!("length {} where {want} is required", value.len()),
        ))
    }
}

fn be16(v: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(v.get(..2).unwrap_or(&[0, 0]));
    u16::from_be_bytes(a)
}

/// Parse the signed header at the start of `file`.
pub fn parse_header(file: &[u8]) -> Result<Header, DecodeError> {
    if file.len() > MAX_FILE_LEN {
        return Err(DecodeError::TooLarge {
            size: file.len(),
            limit: MAX_FILE_LEN,
        });
    }
    let mut r = Reader::new(file);
    let mut items = Vec::new();

    let expect = |r: &mut Reader<'_>, want: u8| -> Result<(usize, [u8; 2]), DecodeError> {
        let off = r.offset();
        let t = r.u8("header tag")?;
        if t != want {
            return Err(DecodeError::malformed(
                off,
                format!("tag {t}"),
                format!(
                    "expected tag {want} {} here; this is not a signed TLV file",
                    tag_name(want)
                ),
            ));
        }
        let len = r.u16("item length")?;
        let v = r.take(usize::from(len), tag_name(want))?;
        let v = fixed(v, 2, off, want)?;
        Ok((
            off,
            [
                v.first().copied().unwrap_or(0),
                v.get(1).copied().unwrap_or(0),
            ],
        ))
    };
    let (voff, v) = expect(&mut r, tag::VERSION)?;
    items.push(HeaderItem {
        offset: voff,
        tag: tag::VERSION,
        length: 2,
        value: voff + 3..voff + 5,
    });
    let version = Version::new(v[0], v[1]);
    let (hoff, hl) = expect(&mut r, tag::HEADER_LENGTH)?;
    items.push(HeaderItem {
        offset: hoff,
        tag: tag::HEADER_LENGTH,
        length: 2,
        value: hoff + 3..hoff + 5,
    });
    let header_length = u16::from_be_bytes(hl);
    let hl = usize::from(header_length);
    if hl > file.len() {
        return Err(DecodeError::malformed(
            hoff,
            "tag 2 HEADERLENGTH",
            format!(
                "header length {hl} is beyond the end of the file ({} bytes)",
                file.len()
            ),
        ));
    }
    if hl < r.offset() {
        return Err(DecodeError::malformed(
            hoff,
            "tag 2 HEADERLENGTH",
            format!("header length {hl} is shorter than the items before it"),
        ));
    }
    let start = r.offset();
    let mut hr = Reader::at(file.get(start..hl).unwrap_or_default(), start);

    let mut seen = [false; 256];
    let mut containers: Vec<(u8, usize)> = Vec::new();
    let mut signer_version = None;
    let mut signer_name = None;
    let mut issuer_name = None;
    let mut serial = None;
    let mut hash_alg = None;
    let mut sig_alg = None;
    let mut sig_mod = None;
    let mut signature: Option<(Vec<u8>, Range<usize>)> = None;
    let mut filename = None;
    let mut timestamp = None;
    let mut enc = EncParts::default();

    while !hr.is_empty() {
        let off = hr.offset();
        while containers.last().is_some_and(|&(_, end)| end <= off) {
            containers.pop();
        }
        let t = hr.u8("header tag")?;
        if t == tag::PADDING {
            items.push(HeaderItem {
                offset: off,
                tag: t,
                length: 0,
                value: off + 1..off + 1,
            });
            continue;
        }
        let len = usize::from(hr.u16("item length")?);
        let end = hr.offset() + len;
        if let Some(&(ct, cend)) = containers.last()
            && end > cend
        {
            return Err(DecodeError::malformed(
                off,
                format!("tag {t} {}", tag_name(t)),
                format!(
                    "runs to byte {end}, past the end of its container (tag {ct} {}, ends at byte {cend})",
                    tag_name(ct)
                ),
            ));
        }
        let what = format!("tag {t} {}", tag_name(t));
        if is_container(t) {
            if end > hl {
                return Err(DecodeError::malformed(
                    off,
                    what,
                    format!("container runs to byte {end}, past the header end ({hl})"),
                ));
            }
            if crate::codec::seen_before(&mut seen, t) {
                return Err(DecodeError::malformed(off, what, "appears twice"));
            }
            if matches!(
                t,
                tag::ENCRYPTION_INFO | tag::ENCRYPTION_IV_INFO | tag::ENCRYPTION_KEY_INFO
            ) {
                enc.seen = true;
            }
            containers.push((t, end));
            items.push(HeaderItem {
                offset: off,
                tag: t,
                length: len as u16,
                value: off + 3..off + 3,
            });
            continue;
        }
        let value = hr.take(len, tag_name(t)).map_err(|_| {
            DecodeError::malformed(
                off,
                &what,
                format!("value of {len} bytes runs past the header end (byte {hl})"),
            )
        })?;
        items.push(HeaderItem {
            offset: off,
            tag: t,
            length: len as u16,
            value: off + 3..end,
        });
        if tag_name(t) != "UNKNOWN" && crate::codec::seen_before(&mut seen, t) {
            return Err(DecodeError::malformed(off, what, "appears twice"));
        }
        match t {
            tag::SIGNER_VERSION => {
                let v = fixed(value, 2, off, t)?;
                signer_version = Some(Version::new(
                    v.first().copied().unwrap_or(0),
                    v.get(1).copied().unwrap_or(0),
                ));
            }
            tag::SIGNER_NAME => signer_name = Some(nul_text(value)),
            tag::ISSUER_NAME => issuer_name = Some(nul_text(value)),
            tag::SERIAL_NUMBER => {
                if value.is_empty() {
                    return Err(DecodeError::malformed(off, what, "empty serial number"));
                }
                serial = Some(value.to_vec());
            }
            tag::HASH_ALGORITHM => {
                hash_alg = Some(HashAlg::from(fixed1(value, off, t)?));
            }
            tag::SIGNATURE_ALGORITHM => sig_alg = Some(fixed1(value, off, t)?),
            tag::SIGNATURE_MODULUS => sig_mod = Some(fixed1(value, off, t)?),
            tag::SIGNATURE => {
                if value.is_empty() {
                    return Err(DecodeError::malformed(off, what, "empty signature"));
                }
                signature = Some((value.to_vec(), off..end));
            }
            tag::FILENAME => filename = Some(nul_text(value)),
            tag::TIMESTAMP => timestamp = Some(u32::from_be_bytes(fixed4(value, off, t)?)),
            tag::ENCRYPTION_IV_RESERVED | tag::ENCRYPTION_KEY_RESERVED => {
                fixed(value, 1, off, t)?;
            }
            tag::ENCRYPTION_IV => {
                enc.iv = Some(fixed(value, 16, off, t)?.to_vec());
                enc.seen = true;
            }
            tag::ENCRYPTION_PADDING => {
                let v = fixed(value, 2, off, t)?;
                enc.padding = Some(be16(v));
                enc.seen = true;
            }
            tag::ENCRYPTION_KEY_SIZE => {
                enc.key_size = Some(be16(fixed(value, 2, off, t)?));
                enc.seen = true;
            }
            tag::ENCRYPTION_KEY_ALGORITHM => {
                enc.key_alg = Some(fixed1(value, off, t)?);
                enc.seen = true;
            }
            tag::ENCRYPTION_KEY => {
                enc.key = Some(value.to_vec());
                enc.seen = true;
            }
            tag::ENCRYPTION_HASH_ALGORITHM => {
                enc.hash_alg = Some(HashAlg::from(fixed1(value, off, t)?));
                enc.seen = true;
            }
            tag::ENCRYPTION_HASH => {
                enc.hash = Some(value.to_vec());
                enc.seen = true;
            }
            _ => {}
        }
    }
    if let Some(&(ct, cend)) = containers.last()
        && cend > hl
    {
        return Err(DecodeError::malformed(
            hl,
            format!("tag {ct} {}", tag_name(ct)),
            "container not closed before the header end",
        ));
    }

    let missing = |t: u8| {
        DecodeError::malformed(
            hl,
            "header",
            format!("required item tag {t} {} is missing", tag_name(t)),
        )
    };
    let (signature, signature_item) = signature.ok_or_else(|| missing(tag::SIGNATURE))?;
    let hash_alg = hash_alg.ok_or_else(|| missing(tag::HASH_ALGORITHM))?;
    let serial = serial.ok_or_else(|| missing(tag::SERIAL_NUMBER))?;

    let encryption = if enc.seen {
        Some(EncryptionInfo {
            iv: enc.iv.ok_or_else(|| missing(tag::ENCRYPTION_IV))?,
            padding: enc
                .padding
                .ok_or_else(|| missing(tag::ENCRYPTION_PADDING))?,
            key_size_bits: enc
                .key_size
                .ok_or_else(|| missing(tag::ENCRYPTION_KEY_SIZE))?,
            key_algorithm: enc.key_alg.unwrap_or(1),
            wrapped_key: enc.key.ok_or_else(|| missing(tag::ENCRYPTION_KEY))?,
            hash_alg: enc
                .hash_alg
                .ok_or_else(|| missing(tag::ENCRYPTION_HASH_ALGORITHM))?,
            hash: enc.hash.ok_or_else(|| missing(tag::ENCRYPTION_HASH))?,
        })
    } else {
        None
    };

    Ok(Header {
        version,
        header_length,
        signer_version,
        signer_name: signer_name.unwrap_or_default(),
        issuer_name: issuer_name.unwrap_or_default(),
        serial,
        hash_alg,
        signature_algorithm: sig_alg.unwrap_or(0),
        signature_modulus: sig_mod.unwrap_or(0),
        signature,
        signature_item,
        filename,
        timestamp,
        encryption,
        items,
    })
}

fn fixed1(value: &[u8], off: usize, t: u8) -> Result<u8, DecodeError> {
    Ok(fixed(value, 1, off, t)?.first().copied().unwrap_or(0))
}

fn fixed4(value: &[u8], off: usize, t: u8) -> Result<[u8; 4], DecodeError> {
    let v = fixed(value, 4, off, t)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(v);
    Ok(a)
}

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header names a hash this implementation does not know.
    #[error("unsupported hash algorithm code {0} in tag 8 DIGESTALGORTITHM")]
    UnsupportedHash(u8),
    /// The verifying key is not RSA.
    #[error("the signer's key is not RSA; signed files are verified with RSA only")]
    NotRsa,
    /// The signature does not match the file.
    #[error("signature does not match the file contents (file altered, or signed by another key)")]
    BadSignature,
    /// No SAST record carries the signer's certificate.
    #[error(
        "no SAST record with a certificate has the header's signer serial {serial}; the file cannot be verified"
    )]
    SignerNotFound {
        /// Header serial, hex.
        serial: String,
    },
    /// The given certificate is not the one the header names.
    #[error("the header names signer serial {header}, but the certificate given has serial {cert}")]
    SerialMismatch {
        /// Header serial, hex.
        header: String,
        /// Certificate serial, hex.
        cert: String,
    },
    /// The file could not be read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A certificate could not be read.
    #[error("signer certificate: {0}")]
    Cert(#[from] CertError),
    /// OpenSSL failed.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// Verify `header`'s signature over `file` with `key`.
pub fn verify_signature(
    file: &[u8],
    header: &Header,
    key: &PKeyRef<Public>,
) -> Result<(), VerifyError> {
    if key.id() != Id::RSA {
        return Err(VerifyError::NotRsa);
    }
    let md = header
        .hash_alg
        .digest()
        .ok_or(VerifyError::UnsupportedHash(header.hash_alg.code()))?;
    let message = header.signed_message(file);
    let mut v = Verifier::new(md, key)?;
    v.update(&message)?;
    // OpenSSL reports a malformed signature as an error, a wrong one as false.
    match v.verify(&header.signature) {
        Ok(true) => Ok(()),
        _ => Err(VerifyError::BadSignature),
    }
}

/// Verify with a certificate the caller trusts; its serial must be the header's.
pub fn verify_with_cert(file: &[u8], header: &Header, cert: &X509Ref) -> Result<(), VerifyError> {
    let serial = serial_bytes(cert)?;
    if serial != header.serial {
        return Err(VerifyError::SerialMismatch {
            header: crate::codec::hex(&header.serial),
            cert: crate::codec::hex(&serial),
        });
    }
    let key = cert.public_key()?;
    verify_signature(file, header, &key)
}

/// Why a file could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The signing key is not RSA.
    #[error("the signing key must be RSA (phones verify signed files with RSA only)")]
    NotRsa,
    /// The key size has no SIGNATURE_MODULUS code.
    #[error("RSA key of {0} bits cannot be signalled; use 1024, 2048 or 4096 bits")]
    UnsupportedKeySize(u32),
    /// The hash has no OpenSSL digest.
    #[error("unsupported digest {0:?}")]
    UnsupportedHash(HashAlg),
    /// An item does not fit its length.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The signer returned a signature of the wrong size.
    #[error("the signer returned {got} signature bytes, {expected} were expected")]
    WrongSignatureLength {
        /// Expected.
        expected: usize,
        /// Received.
        got: usize,
    },
    /// The signer (e.g. a hardware token) failed.
    #[error("signer failed: {0}")]
    Signer(String),
    /// A certificate problem.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// OpenSSL failed.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// The encrypted payload could not be produced.
    #[error("encryption: {0}")]
    Encrypt(String),
}

/// Something that signs files: a certificate plus a way to make RSA PKCS#1 v1.5
/// signatures with its key (software key, hardware token, ...).
pub trait FileSigner {
    /// The signing certificate (its subject, issuer and serial go into the header).
    fn certificate(&self) -> &X509Ref;
    /// RSA PKCS#1 v1.5 signature of `message` with digest `hash`.
    fn sign(&self, hash: HashAlg, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

impl FileSigner for CertAndKey {
    fn certificate(&self) -> &X509Ref {
        &self.cert
    }

    fn sign(&self, hash: HashAlg, message: &[u8]) -> Result<Vec<u8>, SignError> {
        if self.key.id() != Id::RSA {
            return Err(SignError::NotRsa);
        }
        let md = hash.digest().ok_or(SignError::UnsupportedHash(hash))?;
        let mut s = Signer::new(md, &self.key)?;
        s.update(message)?;
        Ok(s.sign_to_vec()?)
    }
}

/// What goes into a header besides the signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderParams {
    /// VERSION.
    pub version: Version,
    /// SIGNER_VERSION (trust lists only).
    pub signer_version: Option<Version>,
    /// Signature digest.
    pub hash: HashAlg,
    /// FILENAME as served.
    pub filename: String,
    /// TIMESTAMP (Unix seconds; injected so output is repeatable).
    pub timestamp: u32,
    /// SIGNATURE_ALGORITHM byte: 0 as the reference implementations write (phones accept
    /// it), 1 as the vendor writes.
    pub signature_algorithm: u8,
    /// Encryption items (`.enc.sgn`).
    pub encryption: Option<EncryptionInfo>,
}

impl HeaderParams {
    /// Parameters for a file of `version` named `filename`.
    pub fn new(
        version: Version,
        filename: impl Into<String>,
        hash: HashAlg,
        timestamp: u32,
    ) -> Self {
        Self {
            version,
            signer_version: None,
            hash,
            filename: filename.into(),
            timestamp,
            signature_algorithm: 0,
            encryption: None,
        }
    }
}

fn write_encryption(out: &mut Vec<u8>, e: &EncryptionInfo) -> Result<(), EncodeError> {
    out.push(tag::ENCRYPTION_INFO);
    let info = LengthSlot::open(out);
    out.push(tag::ENCRYPTION_IV_INFO);
    let iv = LengthSlot::open(out);
    put_tlv(
        out,
        tag::ENCRYPTION_IV_RESERVED,
        &[0],
        "ENCRYPTION reserved",
    )?;
    put_tlv(out, tag::ENCRYPTION_IV, &e.iv, "ENCRYPTION_IV")?;
    put_tlv(
        out,
        tag::ENCRYPTION_PADDING,
        &e.padding.to_be_bytes(),
        "ENCRYPTION_PADDING",
    )?;
    iv.close(out, "ENCRYPTION_IV_INFO")?;
    out.push(tag::ENCRYPTION_KEY_INFO);
    let key = LengthSlot::open(out);
    put_tlv(
        out,
        tag::ENCRYPTION_KEY_RESERVED,
        &[0],
        "ENCRYPTION reserved",
    )?;
    put_tlv(
        out,
        tag::ENCRYPTION_KEY_SIZE,
        &e.key_size_bits.to_be_bytes(),
        "ENCRYPTION_KEY_SIZE",
    )?;
    put_tlv(
        out,
        tag::ENCRYPTION_KEY_ALGORITHM,
        &[e.key_algorithm],
        "ENCRYPTION_KEY_ALGORITHM",
    )?;
    put_tlv(out, tag::ENCRYPTION_KEY, &e.wrapped_key, "ENCRYPTION_KEY")?;
    key.close(out, "ENCRYPTION_KEY_INFO")?;
    info.close(out, "ENCRYPTION_INFO")?;
    put_tlv(
        out,
        tag::ENCRYPTION_HASH_ALGORITHM,
        &[e.hash_alg.code()],
        "ENCRYPTION_HASH_ALGORITHM",
    )?;
    put_tlv(out, tag::ENCRYPTION_HASH, &e.hash, "ENCRYPTION_HASH")?;
    Ok(())
}

/// Write a signed file: header from `params` and `signer`, then `body`, signed.
pub fn sign(
    params: &HeaderParams,
    signer: &dyn FileSigner,
    body: &[u8],
) -> Result<Vec<u8>, SignError> {
    let cert = signer.certificate();
    let public = cert.public_key()?;
    if public.id() != Id::RSA {
        return Err(SignError::NotRsa);
    }
    let bits = public.bits();
    let modulus = modulus_index(bits).ok_or(SignError::UnsupportedKeySize(bits))?;
    let sig_len = (bits / 8) as usize;
    if params.hash.digest().is_none() {
        return Err(SignError::UnsupportedHash(params.hash));
    }

    let mut out = Vec::with_capacity(600 + body.len());
    put_tlv(
        &mut out,
        tag::VERSION,
        &[params.version.major, params.version.minor],
        "VERSION",
    )?;
    out.push(tag::HEADER_LENGTH);
    put_u16(&mut out, 2);
    let header_length_at = out.len();
    put_u16(&mut out, 0);
    if let Some(sv) = params.signer_version {
        put_tlv(
            &mut out,
            tag::SIGNER_VERSION,
            &[sv.major, sv.minor],
            "SIGNER_VERSION",
        )?;
    }
    out.push(tag::SIGNER_INFO);
    let info = LengthSlot::open(&mut out);
    put_tlv(
        &mut out,
        tag::SIGNER_NAME,
        &with_nul(&name_string(cert.subject_name())),
        "SIGNER_NAME",
    )?;
    put_tlv(
        &mut out,
        tag::ISSUER_NAME,
        &with_nul(&name_string(cert.issuer_name())),
        "ISSUER_NAME",
    )?;
    put_tlv(
        &mut out,
        tag::SERIAL_NUMBER,
        &serial_bytes(cert)?,
        "SERIAL_NUMBER",
    )?;
    info.close(&mut out, "SIGNER_INFO")?;
    out.push(tag::SIGNATURE_INFO);
    let sinfo = LengthSlot::open(&mut out);
    put_tlv(
        &mut out,
        tag::HASH_ALGORITHM,
        &[params.hash.code()],
        "HASH_ALGORITHM",
    )?;
    out.push(tag::SIGNATURE_ALGORITHM_INFO);
    let ainfo = LengthSlot::open(&mut out);
    put_tlv(
        &mut out,
        tag::SIGNATURE_ALGORITHM,
        &[params.signature_algorithm],
        "SIGNATURE_ALGORITHM",
    )?;
    put_tlv(
        &mut out,
        tag::SIGNATURE_MODULUS,
        &[modulus],
        "SIGNATURE_MODULUS",
    )?;
    ainfo.close(&mut out, "SIGNATURE_ALGORITHM_INFO")?;
    sinfo.close(&mut out, "SIGNATURE_INFO")?;
    let sig_item = out.len();
    put_tlv(&mut out, tag::SIGNATURE, &vec![0u8; sig_len], "SIGNATURE")?;
    let sig_end = out.len();
    put_tlv(
        &mut out,
        tag::FILENAME,
        &with_nul(&params.filename),
        "FILENAME",
    )?;
    put_tlv(
        &mut out,
        tag::TIMESTAMP,
        &params.timestamp.to_be_bytes(),
        "TIMESTAMP",
    )?;
    if let Some(e) = &params.encryption {
        write_encryption(&mut out, e)?;
    }
    while out.len() % 4 != 0 {
        out.push(tag::PADDING);
    }
    let header_length = u16::try_from(out.len()).map_err(|_| EncodeError::TooLong {
        what: "header".into(),
        length: out.len(),
    })?;
    if let Some(slot) = out.get_mut(header_length_at..header_length_at + 2) {
        slot.copy_from_slice(&header_length.to_be_bytes());
    }
    out.extend_from_slice(body);

    let signature = signer.sign(params.hash, &cut(&out, &(sig_item..sig_end)))?;
    if signature.len() != sig_len {
        return Err(SignError::WrongSignatureLength {
            expected: sig_len,
            got: signature.len(),
        });
    }
    if let Some(slot) = out.get_mut(sig_item + 3..sig_end) {
        slot.copy_from_slice(&signature);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::vector;

    #[test]
    fn parses_the_signed_config_vector() {
        let f = vector("files/signed/SEP001122AABBCC.cnf.xml.sgn");
        let h = parse_header(&f).unwrap();
        assert_eq!(h.version, Version::SIGNED);
        assert_eq!(h.header_length, 496);
        assert_eq!(h.signer_version, None);
        assert_eq!(h.hash_alg, HashAlg::Sha1);
        assert_eq!(h.signature_modulus, 2);
        assert_eq!(h.signature.len(), 256);
        assert_eq!(h.filename.as_deref(), Some("SEP001122AABBCC.cnf.xml.sgn"));
        assert_eq!(h.timestamp, Some(0x6b02_f359));
        assert_eq!(h.signature_item, 198..457);
        assert_eq!(h.items.last().map(|i| i.tag), Some(tag::PADDING));
        assert_eq!(
            h.body(&f),
            vector("files/signed/SEP001122AABBCC.cnf.xml").as_slice()
        );
    }

    #[test]
    fn minimal_header_in_hex() {
        // VERSION 1.0, HEADER_LENGTH 20, HASH sha1, SERIAL 01, SIGNATURE 2 bytes, PAD.
        let f =
            crate::codec::unhex("010002 0100 020002 0018 080001 01 050001 01 0c0002 abcd 0d 4142")
                .unwrap();
        let h = parse_header(&f).unwrap();
        assert_eq!(h.header_length, 24);
        assert_eq!(h.serial, vec![1]);
        assert_eq!(h.signature, vec![0xab, 0xcd]);
        assert_eq!(h.body(&f), b"AB");
        assert_eq!(h.signed_message(&f).len(), f.len() - 5);
    }

    #[test]
    fn refusals_name_offset_and_tag() {
        // Header length beyond the file.
        let f = crate::codec::unhex("010002 0100 020002 00ff").unwrap();
        let e = parse_header(&f).unwrap_err().to_string();
        assert!(e.contains("byte 5"), "{e}");
        assert!(e.contains("HEADERLENGTH"), "{e}");

        // Signature item longer than the header.
        let f = crate::codec::unhex("010002 0100 020002 000e 0c0010 00").unwrap();
        let e = parse_header(&f).unwrap_err().to_string();
        assert!(e.contains("SIGNATURE"), "{e}");

        // Duplicate serial.
        let f = crate::codec::unhex("010002 0100 020002 0017 050001 01 050001 02 0c0001 aa 0d")
            .unwrap();
        let e = parse_header(&f).unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");

        // Not a TLV file.
        let e = parse_header(b"<?xml version").unwrap_err().to_string();
        assert!(e.contains("not a signed TLV file"), "{e}");
    }

    #[test]
    fn item_overrunning_its_container_is_refused() {
        // SIGNATURE_INFO container of length 4 holding a 5-byte item.
        let f = crate::codec::unhex("010002 0100 020002 0013 070004 080002 0101 0d").unwrap();
        let e = parse_header(&f).unwrap_err().to_string();
        assert!(e.contains("past the end of its container"), "{e}");
    }

    #[test]
    fn sign_then_verify_and_detect_tampering() {
        let signer = CertAndKey::from_pem(&vector("pki/callmanager.pem")).unwrap();
        for hash in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
            let p = HeaderParams::new(Version::SIGNED, "x.sgn", hash, 1_700_000_000);
            let f = sign(&p, &signer, b"hello").unwrap();
            let h = parse_header(&f).unwrap();
            assert_eq!(usize::from(h.header_length) % 4, 0);
            verify_with_cert(&f, &h, &signer.cert).unwrap();
            let mut bad = f.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            let h2 = parse_header(&bad).unwrap();
            assert!(matches!(
                verify_with_cert(&bad, &h2, &signer.cert),
                Err(VerifyError::BadSignature)
            ));
        }
    }

    #[test]
    fn ec_signers_are_refused() {
        let signer = CertAndKey::from_pem(&vector("pki/callmanager-ecdsa.pem")).unwrap();
        let p = HeaderParams::new(Version::SIGNED, "x.sgn", HashAlg::Sha1, 0);
        assert!(matches!(sign(&p, &signer, b""), Err(SignError::NotRsa)));
    }
}
