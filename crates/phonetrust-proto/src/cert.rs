//! Certificate facts that trust-list records and signed headers carry, read with OpenSSL:
//! names in the text form the vectors use, minimal serial bytes, the record's public-key
//! encoding, fingerprints, and PEM/DER loading of certificates and keys.

use openssl::bn::BigNumContext;
use openssl::ec::PointConversionForm;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::x509::{X509, X509NameRef, X509Ref};

/// Why a certificate or key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The input holds no certificate.
    #[error("no certificate found (expected PEM \"BEGIN CERTIFICATE\" or DER)")]
    NoCertificate,
    /// The input holds no private key.
    #[error("no private key found (expected a PEM \"PRIVATE KEY\" block beside the certificate)")]
    NoPrivateKey,
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    /// The key type is not usable for this purpose.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// OpenSSL refused the input.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// A certificate with its private key (a signer, a phone, a CA).
#[derive(Clone)]
pub struct CertAndKey {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("subject", &name_string(self.cert.subject_name()))
            .field("key", &"<private>")
            .finish()
    }
}

impl CertAndKey {
    /// Load a PEM bundle holding the certificate (first one) and its private key, in any
    /// order; the key must match the certificate.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertError> {
        let cert = load_certs(pem)?
            .into_iter()
            .next()
            .ok_or(CertError::NoCertificate)?;
        let key = PKey::private_key_from_pem(pem).map_err(|_| CertError::NoPrivateKey)?;
        Self::new(cert, key)
    }

    /// Pair a certificate with its key, checking that they match.
    pub fn new(cert: X509, key: PKey<Private>) -> Result<Self, CertError> {
        let public = cert.public_key()?;
        if !key.public_eq(&public) {
            return Err(CertError::KeyMismatch);
        }
        Ok(Self { cert, key })
    }
}

/// Every certificate in a PEM bundle, or the one certificate of a DER input.
pub fn load_certs(input: &[u8]) -> Result<Vec<X509>, CertError> {
    if input.windows(10).any(|w| w == b"-----BEGIN") {
        let certs = X509::stack_from_pem(input).unwrap_or_default();
        if certs.is_empty() {
            return Err(CertError::NoCertificate);
        }
        Ok(certs)
    } else {
        X509::from_der(input)
            .map(|c| vec![c])
            .map_err(|_| CertError::NoCertificate)
    }
}

/// A private key from PEM (PKCS#8 or traditional) or DER.
pub fn load_private_key(input: &[u8]) -> Result<PKey<Private>, CertError> {
    PKey::private_key_from_pem(input)
        .or_else(|_| PKey::private_key_from_der(input))
        .map_err(|_| CertError::NoPrivateKey)
}

/// A name as the trust-list files write it: `type=value` pairs in certificate (DER)
/// order joined with `,` (e.g. `C=NZ,ST=WGN,L=Wellington,O=Example Corp,OU=VOICE,CN=pub`).
pub fn name_string(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("UNKNOWN");
            let value = e
                .data()
                .to_string()
                .unwrap_or_else(|_| String::from_utf8_lossy(e.data().as_slice()).into_owned());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The serial number as minimal big-endian bytes (no sign byte), as headers and records
/// carry it.
pub fn serial_bytes(cert: &X509Ref) -> Result<Vec<u8>, CertError> {
    let bn = cert.serial_number().to_bn()?;
    let v = bn.to_vec();
    Ok(if v.is_empty() { vec![0] } else { v })
}

/// The public key as a trust-list record carries it: PKCS#1 `RSAPublicKey` DER for RSA,
/// the uncompressed point for EC.
pub fn record_public_key(key: &PKey<Public>) -> Result<Vec<u8>, CertError> {
    match key.id() {
        Id::RSA => Ok(key.rsa()?.public_key_to_der_pkcs1()?),
        Id::EC => {
            let ec = key.ec_key()?;
            let mut ctx = BigNumContext::new()?;
            Ok(ec
                .public_key()
                .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)?)
        }
        other => Err(CertError::UnsupportedKey(format!("key type {other:?}"))),
    }
}

/// MD5 of a DER certificate (the `certHash` phones compare), lower-case hex.
pub fn md5_hex(der: &[u8]) -> String {
    digest_hex(MessageDigest::md5(), der)
}

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> Vec<u8> {
    digest(MessageDigest::sha1(), data)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    digest(MessageDigest::sha256(), data)
}

/// MD5 of `data`.
pub fn md5(data: &[u8]) -> Vec<u8> {
    digest(MessageDigest::md5(), data)
}

fn digest(md: MessageDigest, data: &[u8]) -> Vec<u8> {
    // Hashing in-memory data with a built-in digest only fails when OpenSSL itself is
    // broken; an empty result then makes every comparison fail safely.
    hash(md, data).map(|d| d.to_vec()).unwrap_or_default()
}

fn digest_hex(md: MessageDigest, data: &[u8]) -> String {
    crate::codec::hex(&digest(md, data))
}

/// A public key from its DER SubjectPublicKeyInfo, as a phone sends it. RSA and EC keys
/// are read through OpenSSL's direct (legacy) codecs: such a key is also written into a
/// certificate without a round trip through the provider encoder and decoder, which cost
/// more than the rest of building the certificate apart from its signature. Other key
/// types go through the generic decoder.
pub fn public_key_from_spki(der: &[u8]) -> Result<PKey<Public>, CertError> {
    if let Ok(rsa) = openssl::rsa::Rsa::public_key_from_der(der) {
        return Ok(PKey::from_rsa(rsa)?);
    }
    if let Ok(ec) = openssl::ec::EcKey::public_key_from_der(der) {
        return Ok(PKey::from_ec_key(ec)?);
    }
    Ok(PKey::public_key_from_der(der)?)
}

/// The CAPF authentication signature of `msg`: for RSA the raw private-key operation on
/// a PKCS#1 type-1 padded **bare** digest (no DigestInfo), for EC a DER ECDSA signature.
pub fn raw_sign(
    key: &PKey<Private>,
    md: openssl::hash::MessageDigest,
    msg: &[u8],
) -> Result<Vec<u8>, CertError> {
    match key.id() {
        Id::RSA => {
            let digest = hash(md, msg)?;
            let rsa = key.rsa()?;
            let mut out = vec![0u8; rsa.size() as usize];
            let n = rsa.private_encrypt(&digest, &mut out, openssl::rsa::Padding::PKCS1)?;
            out.truncate(n);
            Ok(out)
        }
        Id::EC => {
            let mut s = openssl::sign::Signer::new(md, key)?;
            s.update(msg)?;
            Ok(s.sign_to_vec()?)
        }
        other => Err(CertError::UnsupportedKey(format!("{other:?}"))),
    }
}

/// Check a signature made by [`raw_sign`].
pub fn raw_verify(
    key: &PKey<Public>,
    md: openssl::hash::MessageDigest,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    let Ok(digest) = hash(md, msg) else {
        return false;
    };
    match key.id() {
        Id::RSA => {
            let Ok(rsa) = key.rsa() else { return false };
            if sig.len() != rsa.size() as usize {
                return false;
            }
            let mut out = vec![0u8; rsa.size() as usize];
            match rsa.public_decrypt(sig, &mut out, openssl::rsa::Padding::PKCS1) {
                Ok(n) => out.get(..n) == Some(&digest[..]),
                Err(_) => false,
            }
        }
        Id::EC => openssl::sign::Verifier::new(md, key)
            .and_then(|mut v| {
                v.update(msg)?;
                v.verify(sig)
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// Verify `leaf` against `anchors`, with `chain` as untrusted intermediates, at time
/// `now` (Unix seconds). The error is OpenSSL's reason.
pub fn verify_chain(
    leaf: &X509Ref,
    chain: &[X509],
    anchors: &[X509],
    now: i64,
) -> Result<(), String> {
    // Anchors that share a subject (the generations of one CAPF certificate: regenerated
    // with the same name) confuse OpenSSL's issuer lookup for a leaf without an authority
    // key identifier: it takes the first by name and does not try the next when the
    // signature fails. So each round holds one anchor of each name; a chain verifies when
    // a round verifies it.
    let mut groups: Vec<(Vec<u8>, Vec<&X509>)> = Vec::new();
    for a in anchors {
        let name = a.subject_name().to_der().unwrap_or_default();
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, g)) => g.push(a),
            None => groups.push((name, vec![a])),
        }
    }
    let rounds = groups.iter().map(|(_, g)| g.len()).max().unwrap_or(1);
    let mut first_error = None;
    for r in 0..rounds {
        let set: Vec<X509> = groups
            .iter()
            .filter_map(|(_, g)| g.get(r).or_else(|| g.first()).map(|c| (*c).clone()))
            .collect();
        match verify_with(leaf, chain, &set, now) {
            Ok(()) => return Ok(()),
            Err(e) => {
                // A failed round leaves OpenSSL's thread-local error queue full; the next
                // TLS call on this thread would take those errors for its own.
                let _ = openssl::error::ErrorStack::get();
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "no trust anchor".into()))
}

fn verify_with(leaf: &X509Ref, chain: &[X509], anchors: &[X509], now: i64) -> Result<(), String> {
    let run = || -> Result<Result<(), String>, openssl::error::ErrorStack> {
        let mut b = openssl::x509::store::X509StoreBuilder::new()?;
        for a in anchors {
            b.add_cert(a.clone())?;
        }
        let mut param = openssl::x509::verify::X509VerifyParam::new()?;
        param.set_time(now);
        b.set_param(&param)?;
        let store = b.build();
        let mut untrusted = openssl::stack::Stack::new()?;
        for c in chain {
            untrusted.push(c.clone())?;
        }
        let mut ctx = openssl::x509::X509StoreContext::new()?;
        ctx.init(&store, leaf, &untrusted, |c| {
            Ok(if c.verify_cert()? {
                Ok(())
            } else {
                Err(c.error().error_string().to_string())
            })
        })
    };
    run().map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh P-256 key.
    fn p256() -> PKey<openssl::pkey::Private> {
        PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap()
    }

    /// A certificate `cn` signed by `issuer` (self-signed without one), P-256 keys.
    fn cert(
        cn: &str,
        issuer: Option<(&X509, &PKey<openssl::pkey::Private>)>,
    ) -> (X509, PKey<openssl::pkey::Private>) {
        use openssl::x509::{X509Builder, X509NameBuilder};
        let key = p256();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(issuer.map_or(&*name, |(c, _)| c.subject_name()))
            .unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::from_unix(1_000_000_000).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::from_unix(2_000_000_000).unwrap())
            .unwrap();
        if issuer.is_none() {
            b.append_extension(
                openssl::x509::extension::BasicConstraints::new()
                    .critical()
                    .ca()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        let signer = issuer.map_or(&key, |(_, k)| k);
        b.sign(signer, openssl::hash::MessageDigest::sha256())
            .unwrap();
        (b.build(), key)
    }

    /// Two generations of a CAPF certificate share their subject: a leaf of either
    /// verifies with both as anchors, whichever comes first; of neither, it does not;
    /// a failure leaves no error behind on the thread.
    #[test]
    fn generations_with_one_subject_are_each_tried() {
        let (old, old_key) = cert("CAPF-1234abcd", None);
        let (new, new_key) = cert("CAPF-1234abcd", None);
        let (lsc_old, _) = cert("SEP001122334455", Some((&old, &old_key)));
        let (lsc_new, _) = cert("SEP001122334455", Some((&new, &new_key)));
        for anchors in [
            vec![new.clone(), old.clone()],
            vec![old.clone(), new.clone()],
        ] {
            verify_chain(&lsc_old, &[], &anchors, 1_500_000_000).unwrap();
            verify_chain(&lsc_new, &[], &anchors, 1_500_000_000).unwrap();
        }
        assert!(verify_chain(&lsc_old, &[], std::slice::from_ref(&new), 1_500_000_000).is_err());
        let (other, other_key) = cert("CAPF-1234abcd", None);
        let (stranger, _) = cert("SEP001122334455", Some((&other, &other_key)));
        assert!(verify_chain(&stranger, &[], &[new, old], 1_500_000_000).is_err());
        assert!(openssl::error::ErrorStack::get().errors().is_empty());
    }

    #[test]
    fn spki_public_keys_read_back_exactly() {
        let rsa = CertAndKey::from_pem(&crate::testutil::vector("pki/callmanager.pem")).unwrap();
        let ec = p256();
        for (key, id, bits) in [(&rsa.key, Id::RSA, 2048), (&ec, Id::EC, 256)] {
            let der = key.public_key_to_der().unwrap();
            let back = public_key_from_spki(&der).unwrap();
            assert_eq!((back.id(), back.bits()), (id, bits));
            assert_eq!(back.public_key_to_der().unwrap(), der);
            assert!(back.public_eq(key));
        }
        // Truncated, or not a key at all.
        let der = rsa.key.public_key_to_der().unwrap();
        assert!(public_key_from_spki(&der[..der.len() - 1]).is_err());
        assert!(public_key_from_spki(&crate::codec::unhex("3003020101").unwrap()).is_err());
    }

    #[test]
    fn name_and_serial_match_the_vectors_layout() {
        let ck = CertAndKey::from_pem(&crate::testutil::vector("pki/callmanager.pem")).unwrap();
        assert_eq!(
            name_string(ck.cert.subject_name()),
            "C=NZ,ST=WGN,L=Wellington,O=Example Corp,OU=VOICE,CN=pub.example.test"
        );
        assert_eq!(
            crate::codec::hex(&serial_bytes(&ck.cert).unwrap()),
            "05a01f30e59f16e4966f8ebedc5f63b81fdf3377"
        );
        let pk = record_public_key(&ck.cert.public_key().unwrap()).unwrap();
        assert_eq!(pk.len(), 270);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            load_certs(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(CertError::NoCertificate)
        ));
        assert!(matches!(
            load_certs(b"\x30\x03abc"),
            Err(CertError::NoCertificate)
        ));
        assert!(CertAndKey::from_pem(b"nothing").is_err());
    }
}
