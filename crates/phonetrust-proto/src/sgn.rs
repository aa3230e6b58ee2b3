//! Signed files (`.sgn`, header version 1.0): any file a phone downloads — usually its
//! `SEP<MAC>.cnf.xml` — behind a signed header whose FILENAME is the `.sgn` name.

use openssl::x509::X509Ref;

use crate::codec::DecodeError;
use crate::tlv::{
    self, FileSigner, HashAlg, Header, HeaderParams, SignError, VerifyError, Version,
};

/// The name a signed copy of `filename` is served under.
pub fn sgn_name(filename: &str) -> String {
    format!("{filename}.sgn")
}

/// Sign `content`, served as `filename` (the name without `.sgn`).
pub fn sign(
    filename: &str,
    content: &[u8],
    signer: &dyn FileSigner,
    hash: HashAlg,
    timestamp: u32,
) -> Result<Vec<u8>, SignError> {
    let params = HeaderParams::new(Version::SIGNED, sgn_name(filename), hash, timestamp);
    tlv::sign(&params, signer, content)
}

/// A parsed signed file; the body is untrusted until [`SignedFile::verify_with_cert`]
/// passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedFile<'f> {
    /// The header.
    pub header: Header,
    /// The whole file.
    pub file: &'f [u8],
}

impl<'f> SignedFile<'f> {
    /// Parse the header of a signed file.
    pub fn parse(file: &'f [u8]) -> Result<Self, DecodeError> {
        Ok(Self {
            header: tlv::parse_header(file)?,
            file,
        })
    }

    /// The content behind the header.
    pub fn body(&self) -> &'f [u8] {
        self.header.body(self.file)
    }

    /// Verify with the certificate the caller trusts for this file.
    pub fn verify_with_cert(&self, cert: &X509Ref) -> Result<(), VerifyError> {
        tlv::verify_with_cert(self.file, &self.header, cert)
    }
}

/// The content of a signed file without its header (no verification).
pub fn strip(file: &[u8]) -> Result<&[u8], DecodeError> {
    let h = tlv::parse_header(file)?;
    Ok(file.get(usize::from(h.header_length)..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::CertAndKey;
    use crate::testutil::vector;

    #[test]
    fn reproduces_the_signed_config_vector() {
        let signer = CertAndKey::from_pem(&vector("pki/callmanager.pem")).unwrap();
        let plain = vector("files/SEP001122AABBCC.cnf.xml");
        let f = sign(
            "SEP001122AABBCC.cnf.xml",
            &plain,
            &signer,
            HashAlg::Sha1,
            0x6b02_f359,
        )
        .unwrap();
        assert_eq!(f, vector("files/signed/SEP001122AABBCC.cnf.xml.sgn"));
        let s = SignedFile::parse(&f).unwrap();
        s.verify_with_cert(&signer.cert).unwrap();
        assert_eq!(strip(&f).unwrap(), plain.as_slice());
    }

    #[test]
    fn wrong_certificate_is_reported() {
        let f = vector("files/signed/SEP001122AABBCC.cnf.xml.sgn");
        let s = SignedFile::parse(&f).unwrap();
        let capf = crate::cert::load_certs(&vector("pki/capf.crt"))
            .unwrap()
            .remove(0);
        assert!(matches!(
            s.verify_with_cert(&capf),
            Err(VerifyError::SerialMismatch { .. })
        ));
    }
}
