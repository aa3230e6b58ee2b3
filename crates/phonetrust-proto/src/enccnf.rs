//! Encrypted configuration (`SEP<MAC>.cnf.xml.enc.sgn`, header version 2.0) and the
//! partial `SEP<MAC>.cnf.xml.sgn` that tells a phone how to get its key to CAPF.
//!
//! Encryption: a fresh AES-128 key and IV; the plaintext padded with `\r` to a multiple
//! of 16 (always 1–16 bytes, count in tag 20); AES-128-CBC; the key wrapped with RSA
//! PKCS#1 v1.5 to the phone's public key (from its LSC or MIC); a SHA-1 or SHA-512
//! digest of the plaintext in tag 27; then signed like any TLV file.

use openssl::pkey::{Id, PKeyRef, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use openssl::x509::X509Ref;
use quick_xml::events::Event;

use crate::cert::md5_hex;
use crate::codec::DecodeError;
use crate::rand::RandomSource;
use crate::tlv::{
    self, EncryptionInfo, FileSigner, HashAlg, HeaderParams, SignError, VerifyError, Version,
};

/// The pad byte.
pub const PAD: u8 = b'\r';

/// The name the encrypted copy of `filename` (`SEP<MAC>.cnf.xml`) is served under.
pub fn enc_name(filename: &str) -> String {
    format!("{filename}.enc.sgn")
}

/// Why an encrypted config could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The header could not be read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The file has no encryption items.
    #[error("not an encrypted file: the header has no ENCRYPTION_INFO (tag 16)")]
    NotEncrypted,
    /// The key cannot open the wrapped AES key.
    #[error(
        "the private key cannot unwrap the file's AES key (encrypted to another phone's certificate?)"
    )]
    WrongKey,
    /// The ciphertext is not whole blocks.
    #[error("ciphertext of {0} bytes is not a multiple of the 16-byte AES block")]
    BadCiphertextLength(usize),
    /// The padding count exceeds the plaintext.
    #[error("padding count {padding} (tag 20) exceeds the {len} decrypted bytes")]
    BadPadding {
        /// Tag 20.
        padding: u16,
        /// Decrypted length.
        len: usize,
    },
    /// The digest of the plaintext does not match tag 27.
    #[error(
        "decrypted content does not match the file's {0} digest (tag 27): wrong key, or the file was altered"
    )]
    DigestMismatch(String),
    /// The digest algorithm is not known.
    #[error("unsupported digest code {0} in tag 26")]
    UnsupportedHash(u8),
    /// The key is not RSA.
    #[error("the phone key must be RSA to unwrap the configuration key")]
    NotRsa,
    /// OpenSSL failed.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// Encrypt and sign the config `plaintext` (served as `filename`, e.g.
/// `SEP0011AABBCCDD.cnf.xml`) to the phone certificate `device_cert`.
pub fn encrypt(
    filename: &str,
    plaintext: &[u8],
    device_cert: &X509Ref,
    signer: &dyn FileSigner,
    digest: HashAlg,
    timestamp: u32,
    rng: &dyn RandomSource,
) -> Result<Vec<u8>, SignError> {
    let md = digest.digest().ok_or(SignError::UnsupportedHash(digest))?;
    let phone_key = device_cert.public_key()?;
    if phone_key.id() != Id::RSA {
        return Err(SignError::Encrypt(
            "the phone certificate's key is not RSA; encrypted configs need an RSA LSC or MIC"
                .into(),
        ));
    }
    let rsa = phone_key.rsa()?;
    let mut key = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill(&mut key)?;
    rng.fill(&mut iv)?;

    let pad = 16 - plaintext.len() % 16;
    let mut padded = Vec::with_capacity(plaintext.len() + pad);
    padded.extend_from_slice(plaintext);
    padded.resize(plaintext.len() + pad, PAD);
    let ciphertext = aes_cbc(Mode::Encrypt, &key, &iv, &padded)?;

    let mut wrapped = vec![0u8; rsa.size() as usize];
    let n = rsa.public_encrypt(&key, &mut wrapped, Padding::PKCS1)?;
    wrapped.truncate(n);

    let hash = openssl::hash::hash(md, plaintext)?.to_vec();
    let info = EncryptionInfo {
        iv: iv.to_vec(),
        padding: u16::try_from(pad).unwrap_or(16),
        key_size_bits: u16::try_from(wrapped.len() * 8).unwrap_or(u16::MAX),
        key_algorithm: 1,
        wrapped_key: wrapped,
        hash_alg: digest,
        hash,
    };
    let mut params = HeaderParams::new(
        Version::ENCRYPTED,
        enc_name(filename),
        HashAlg::Sha1,
        timestamp,
    );
    params.encryption = Some(info);
    tlv::sign(&params, signer, &ciphertext)
}

fn aes_cbc(
    mode: Mode,
    key: &[u8],
    iv: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let cipher = Cipher::aes_128_cbc();
    let mut c = Crypter::new(cipher, mode, key, Some(iv))?;
    c.pad(false);
    let mut out = vec![0u8; data.len() + cipher.block_size()];
    let mut n = c.update(data, &mut out)?;
    n += c.finalize(out.get_mut(n..).unwrap_or_default())?;
    out.truncate(n);
    Ok(out)
}

/// Decrypt an `.enc.sgn` with the phone's private key and check the plaintext digest.
/// The signature is not checked here; see [`verify`].
pub fn decrypt(file: &[u8], key: &PKeyRef<Private>) -> Result<Vec<u8>, DecryptError> {
    let header = tlv::parse_header(file)?;
    let enc = header
        .encryption
        .as_ref()
        .ok_or(DecryptError::NotEncrypted)?;
    if key.id() != Id::RSA {
        return Err(DecryptError::NotRsa);
    }
    let rsa = key.rsa()?;
    let mut aes_key = vec![0u8; rsa.size() as usize];
    let n = rsa
        .private_decrypt(&enc.wrapped_key, &mut aes_key, Padding::PKCS1)
        .map_err(|_| DecryptError::WrongKey)?;
    aes_key.truncate(n);
    // OpenSSL 3 answers a wrong key with a random unwrapped value (implicit rejection)
    // rather than an error; anything but 16 bytes means the key is not the phone's.
    if aes_key.len() != 16 {
        return Err(DecryptError::WrongKey);
    }
    let body = header.body(file);
    if body.len() % 16 != 0 {
        return Err(DecryptError::BadCiphertextLength(body.len()));
    }
    let mut plain = aes_cbc(Mode::Decrypt, &aes_key, &enc.iv, body)?;
    let pad = usize::from(enc.padding);
    if pad > plain.len() {
        return Err(DecryptError::BadPadding {
            padding: enc.padding,
            len: plain.len(),
        });
    }
    plain.truncate(plain.len() - pad);
    let md = enc
        .hash_alg
        .digest()
        .ok_or(DecryptError::UnsupportedHash(enc.hash_alg.code()))?;
    let digest = openssl::hash::hash(md, &plain)?;
    if *digest != *enc.hash {
        return Err(DecryptError::DigestMismatch(enc.hash_alg.name()));
    }
    Ok(plain)
}

/// Verify the signature of an `.enc.sgn` with the TFTP certificate.
pub fn verify(file: &[u8], cert: &X509Ref) -> Result<(), VerifyError> {
    let header = tlv::parse_header(file)?;
    tlv::verify_with_cert(file, &header, cert)
}

/// One `<capf>` entry of a config's `<capfList>`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CapfEntry {
    /// `<phonePort>` (3804 by default).
    pub phone_port: String,
    /// `<processNodeName>`: the CAPF host.
    pub process_node_name: String,
}

/// The partial config a phone gets while its config is encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PartialConfig {
    /// `<ipAddressMode>`.
    pub ip_address_mode: Option<String>,
    /// `<loadInformation>`.
    pub load_information: Option<String>,
    /// `<capfAuthMode>`.
    pub capf_auth_mode: Option<String>,
    /// `<capfList>`.
    pub capf_list: Vec<CapfEntry>,
    /// `<certHash>`: MD5 of the phone's recorded certificate, lower-case hex; empty if
    /// none is recorded yet.
    pub cert_hash: String,
}

/// Why a config XML could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// Not well-formed.
    #[error("config XML is not well-formed at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset.
        offset: u64,
        /// Parser message.
        reason: String,
    },
    /// No `<device>` root.
    #[error("config XML has no <device> root element")]
    NoDevice,
}

/// Largest config XML accepted.
pub const MAX_CONFIG_LEN: usize = 1024 * 1024;

impl PartialConfig {
    /// Take the fields a partial config repeats from the full config, with the certificate
    /// hash the server has recorded for the phone (`None` when CAPF has no key yet).
    pub fn from_full_config(xml: &[u8], device_cert_der: Option<&[u8]>) -> Result<Self, XmlError> {
        let mut out = PartialConfig {
            cert_hash: device_cert_der.map(md5_hex).unwrap_or_default(),
            ..Self::default()
        };
        walk_config(xml, |step| match step {
            XmlStep::Open(path) => {
                if path == ["device", "capfList", "capf"] {
                    out.capf_list.push(CapfEntry::default());
                }
                // An element that is present counts, even when empty.
                out.slot(path);
            }
            XmlStep::Text(path, text) => {
                if let Some(slot) = out.slot(path) {
                    slot.push_str(text);
                }
            }
        })?;
        out.trim();
        Ok(out)
    }

    /// The text a tracked element at `path` fills (created when first seen).
    fn slot(&mut self, path: &[String]) -> Option<&mut String> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["device", "ipAddressMode"] => {
                Some(self.ip_address_mode.get_or_insert_with(String::new))
            }
            ["device", "loadInformation"] => {
                Some(self.load_information.get_or_insert_with(String::new))
            }
            ["device", "capfAuthMode"] => Some(self.capf_auth_mode.get_or_insert_with(String::new)),
            ["device", "capfList", "capf", "phonePort"] => {
                self.capf_list.last_mut().map(|c| &mut c.phone_port)
            }
            ["device", "capfList", "capf", "processNodeName"] => {
                self.capf_list.last_mut().map(|c| &mut c.process_node_name)
            }
            _ => None,
        }
    }

    fn trim(&mut self) {
        for s in [
            &mut self.ip_address_mode,
            &mut self.load_information,
            &mut self.capf_auth_mode,
        ]
        .into_iter()
        .flatten()
        {
            *s = s.trim().to_string();
        }
        for c in &mut self.capf_list {
            c.phone_port = c.phone_port.trim().to_string();
            c.process_node_name = c.process_node_name.trim().to_string();
        }
    }

    /// The partial config XML, in the layout of the reference vector.
    pub fn to_xml(&self) -> String {
        use quick_xml::escape::escape;
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<device>\n");
        s.push_str("  <fullConfig>false</fullConfig>\n");
        if let Some(v) = &self.ip_address_mode {
            s.push_str(&format!(
                "  <ipAddressMode>{}</ipAddressMode>\n",
                escape(v.as_str())
            ));
        }
        if let Some(v) = &self.load_information {
            s.push_str(&format!(
                "  <loadInformation>{}</loadInformation>\n",
                escape(v.as_str())
            ));
        }
        if let Some(v) = &self.capf_auth_mode {
            s.push_str(&format!(
                "  <capfAuthMode>{}</capfAuthMode>\n",
                escape(v.as_str())
            ));
        }
        if !self.capf_list.is_empty() {
            s.push_str("  <capfList>\n");
            for c in &self.capf_list {
                s.push_str("    <capf>\n");
                s.push_str(&format!(
                    "      <phonePort>{}</phonePort>\n",
                    escape(c.phone_port.as_str())
                ));
                s.push_str(&format!(
                    "      <processNodeName>{}</processNodeName>\n",
                    escape(c.process_node_name.as_str())
                ));
                s.push_str("    </capf>\n");
            }
            s.push_str("  </capfList>\n");
        }
        s.push_str(&format!(
            "  <certHash>{}</certHash>\n",
            escape(self.cert_hash.as_str())
        ));
        s.push_str("  <encrConfig>true</encrConfig>\n</device>\n");
        s
    }
}

/// One step of a walk through configuration XML.
pub(crate) enum XmlStep<'a> {
    /// An element opened (also an empty one); the path ends with its name.
    Open(&'a [String]),
    /// A piece of text (entities resolved; CDATA as it is) inside the element at the path.
    Text(&'a [String], &'a str),
}

/// Walk configuration XML as phones read it: untrusted, so at most [`MAX_CONFIG_LEN`]
/// bytes and 64 levels of elements, never a panic; the root must be `<device>`. Element
/// names without their namespace prefix.
pub(crate) fn walk_config(xml: &[u8], mut f: impl FnMut(XmlStep<'_>)) -> Result<(), XmlError> {
    if xml.len() > MAX_CONFIG_LEN {
        return Err(XmlError::Malformed {
            offset: 0,
            reason: format!("{} bytes, more than {MAX_CONFIG_LEN}", xml.len()),
        });
    }
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut saw_device = false;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| XmlError::Malformed {
                offset: reader.buffer_position(),
                reason: e.to_string(),
            })?;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                if path.is_empty() && name == "device" {
                    saw_device = true;
                }
                if path.len() > 64 {
                    return Err(XmlError::Malformed {
                        offset: reader.buffer_position(),
                        reason: "elements nested more than 64 deep".into(),
                    });
                }
                path.push(name);
                f(XmlStep::Open(&path));
                if matches!(ev, Event::Empty(_)) {
                    path.pop();
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&t).into_owned());
                f(XmlStep::Text(&path, &text));
            }
            Event::CData(t) => f(XmlStep::Text(&path, &String::from_utf8_lossy(&t))),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if saw_device {
        Ok(())
    } else {
        Err(XmlError::NoDevice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{CertAndKey, load_certs};
    use crate::rand::SeededRandom;
    use crate::testutil::vector;

    fn lsc() -> CertAndKey {
        CertAndKey::from_pem(&vector("pki/lsc/SEP0011AABBCCDD.pem")).unwrap()
    }

    #[test]
    fn decrypts_the_vector_exactly() {
        let f = vector("files/encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn");
        let plain = decrypt(&f, &lsc().key).unwrap();
        assert_eq!(plain, vector("files/SEP0011AABBCCDD.cnf.xml"));
        let cm = load_certs(&vector("pki/callmanager.crt"))
            .unwrap()
            .remove(0);
        verify(&f, &cm).unwrap();
        let h = tlv::parse_header(&f).unwrap();
        let e = h.encryption.unwrap();
        assert_eq!(e.padding, 16);
        assert_eq!(e.key_size_bits, 2048);
        assert_eq!(e.hash_alg, HashAlg::Sha1);
    }

    #[test]
    fn wrong_key_is_refused() {
        let f = vector("files/encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn");
        let other = CertAndKey::from_pem(&vector("pki/lsc/SEP001122AABBCC.pem")).unwrap();
        assert!(decrypt(&f, &other.key).is_err());
    }

    #[test]
    fn encrypt_round_trip_and_layout() {
        let signer = CertAndKey::from_pem(&vector("pki/callmanager.pem")).unwrap();
        let phone = lsc();
        for (digest, len) in [
            (HashAlg::Sha1, 0usize),
            (HashAlg::Sha512, 5),
            (HashAlg::Sha1, 16),
        ] {
            let plain = vec![b'x'; len];
            let f = encrypt(
                "SEPX.cnf.xml",
                &plain,
                &phone.cert,
                &signer,
                digest,
                1,
                &SeededRandom::new(1),
            )
            .unwrap();
            assert_eq!(decrypt(&f, &phone.key).unwrap(), plain);
            verify(&f, &signer.cert).unwrap();
            let h = tlv::parse_header(&f).unwrap();
            assert_eq!(h.filename.as_deref(), Some("SEPX.cnf.xml.enc.sgn"));
            let no_pad = |h: &tlv::Header| -> Vec<u8> {
                h.items
                    .iter()
                    .map(|i| i.tag)
                    .filter(|&t| t != tlv::tag::PADDING)
                    .collect()
            };
            let tags = no_pad(&h);
            let reference =
                tlv::parse_header(&vector("files/encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn"))
                    .unwrap();
            let ref_tags = no_pad(&reference);
            assert_eq!(tags, ref_tags);
            assert_eq!(usize::from(h.encryption.unwrap().padding), 16 - len % 16);
        }
    }

    #[test]
    fn partial_config_reproduces_the_vector() {
        let full = vector("files/SEP0011AABBCCDD.cnf.xml");
        let der = lsc().cert.to_der().unwrap();
        let p = PartialConfig::from_full_config(&full, Some(&der)).unwrap();
        let signer = CertAndKey::from_pem(&vector("pki/callmanager.pem")).unwrap();
        let f = crate::sgn::sign(
            "SEP0011AABBCCDD.cnf.xml",
            p.to_xml().as_bytes(),
            &signer,
            HashAlg::Sha1,
            0x6b02_f359,
        )
        .unwrap();
        assert_eq!(f, vector("files/encrypted/SEP0011AABBCCDD.cnf.xml.sgn"));
    }

    #[test]
    fn partial_config_without_key_has_empty_hash() {
        let p = PartialConfig::from_full_config(
            b"<device><capfAuthMode>1</capfAuthMode></device>",
            None,
        )
        .unwrap();
        assert!(p.to_xml().contains("<certHash></certHash>"));
        assert!(PartialConfig::from_full_config(b"<other/>", None).is_err());
        assert!(PartialConfig::from_full_config(b"<device><a></b></device>", None).is_err());
    }
}
