//! Hardware security tokens (the USB eTokens of `004_*`) through PKCS#11: a token holds
//! an RSA private key and its certificate; the CTL is signed on the token, the key never
//! leaves it. Tested with SoftHSM2.
//!
//! A token is found by its label; the first private key on it signs, and the certificate
//! whose public key matches that key is the SAST certificate listed in the CTL.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use openssl::x509::{X509, X509Ref};
use phonetrust_proto::tlv::{FileSigner, HashAlg, SignError};

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error(
        "PKCS#11 module {0}: {1} (is the token middleware installed? SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
    )]
    Module(String, String),
    /// No token with this label.
    #[error("no security token labelled '{0}' is inserted (tokens present: {1})")]
    NotFound(String, String),
    /// Login failed.
    #[error(
        "security token '{0}': login failed ({1}); check the PIN (the eToken default is Cisco123)"
    )]
    Login(String, String),
    /// The token lacks a key or certificate.
    #[error("security token '{0}': {1}")]
    Content(String, String),
}

/// A loaded PKCS#11 module.
#[derive(Clone, Debug)]
pub struct Module {
    ctx: Pkcs11,
    path: String,
}

impl Module {
    /// Load and initialise the module at `path`.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let p = path.display().to_string();
        let ctx = Pkcs11::new(path).map_err(|e| TokenError::Module(p.clone(), e.to_string()))?;
        ctx.initialize(CInitializeArgs::OsThreads)
            .map_err(|e| TokenError::Module(p.clone(), e.to_string()))?;
        Ok(Self { ctx, path: p })
    }

    /// Labels of the tokens present.
    pub fn labels(&self) -> Vec<String> {
        let Ok(slots) = self.ctx.get_slots_with_token() else {
            return Vec::new();
        };
        slots
            .into_iter()
            .filter_map(|s| self.ctx.get_token_info(s).ok())
            .map(|i| i.label().trim().to_string())
            .collect()
    }

    /// Log in to the token labelled `label`.
    pub fn open(&self, label: &str, pin: &str) -> Result<TokenSigner, TokenError> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| TokenError::Module(self.path.clone(), e.to_string()))?;
        let slot = slots
            .into_iter()
            .find(|s| {
                self.ctx
                    .get_token_info(*s)
                    .is_ok_and(|i| i.label().trim() == label)
            })
            .ok_or_else(|| TokenError::NotFound(label.into(), self.labels().join(", ")))?;
        let session = self
            .ctx
            .open_ro_session(slot)
            .map_err(|e| TokenError::Module(self.path.clone(), e.to_string()))?;
        session
            .login(UserType::User, Some(&AuthPin::from(pin.to_string())))
            .map_err(|e| TokenError::Login(label.into(), e.to_string()))?;
        let content = |why: &str| TokenError::Content(label.into(), why.into());
        let key = session
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .map_err(|e| content(&e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| content("no private key on the token"))?;
        let modulus = attr_bytes(&session, key, AttributeType::Modulus)
            .ok_or_else(|| content("the private key is not an RSA key"))?;
        let certs = session
            .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])
            .map_err(|e| content(&e.to_string()))?;
        let cert = certs
            .into_iter()
            .filter_map(|h| attr_bytes(&session, h, AttributeType::Value))
            .filter_map(|der| X509::from_der(&der).ok())
            .find(|c| {
                c.public_key()
                    .ok()
                    .and_then(|k| k.rsa().ok())
                    .is_some_and(|r| r.n().to_vec() == trim_zeros(&modulus))
            })
            .ok_or_else(|| content("no certificate on the token matches its private key"))?;
        Ok(TokenSigner {
            label: label.into(),
            session,
            key,
            cert,
        })
    }
}

fn trim_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default().to_vec()
}

fn attr_bytes(session: &Session, h: ObjectHandle, t: AttributeType) -> Option<Vec<u8>> {
    session
        .get_attributes(h, &[t])
        .ok()?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) | Attribute::Modulus(v) => Some(v),
            _ => None,
        })
}

/// A logged-in token: signs with its key, presents its certificate.
pub struct TokenSigner {
    label: String,
    session: Session,
    key: ObjectHandle,
    cert: X509,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("label", &self.label)
            .finish()
    }
}

impl TokenSigner {
    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The token's certificate.
    pub fn cert(&self) -> &X509 {
        &self.cert
    }
}

impl FileSigner for TokenSigner {
    fn certificate(&self) -> &X509Ref {
        &self.cert
    }

    fn sign(&self, hash: HashAlg, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let mech = match hash {
            HashAlg::Sha1 => Mechanism::Sha1RsaPkcs,
            HashAlg::Sha256 => Mechanism::Sha256RsaPkcs,
            HashAlg::Sha512 => Mechanism::Sha512RsaPkcs,
            other => return Err(SignError::UnsupportedHash(other)),
        };
        self.session
            .sign(&mech, self.key, message)
            .map_err(|e| SignError::Signer(format!("token {}: {e}", self.label)))
    }
}
