//! The records the database keeps, as plain data: phones, their CAPF information and
//! certificates, phone security profiles, trust-store entries. Each choice is an enum with
//! the short name stored in the database and on the command line, and the label the
//! vendor's administration pages show.

use std::fmt;
use std::str::FromStr;

use crate::StoreError;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident ($what:literal) { $($(#[$vm:meta])* $v:ident => $db:literal, $label:literal $(, $alias:literal)*;)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$v,)+];
            /// The short name stored in the database and used on the command line.
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $db,)+ } }
            /// The label administrators know from the vendor's pages.
            pub fn label(self) -> &'static str { match self { $($name::$v => $label,)+ } }
            /// The accepted short names, for error messages.
            pub fn choices() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                let l = s.trim().to_ascii_lowercase();
                $(
                    if l == $db || l == $label.to_ascii_lowercase() $(|| l == $alias)* {
                        return Ok($name::$v);
                    }
                )+
                Err(StoreError::Invalid(format!(
                    "'{}' is not a valid {} (use one of: {})",
                    s, $what, Self::choices()
                )))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.label()) }
        }
    };
}

text_enum!(
    /// The phone's signalling protocol.
    Protocol ("protocol") {
        /// SIP.
        Sip => "sip", "SIP";
        /// SCCP (Skinny).
        Sccp => "sccp", "SCCP", "skinny";
    }
);

text_enum!(
    /// Device security mode of a phone security profile.
    SecurityMode ("device security mode") {
        /// Non-secure.
        NonSecure => "non-secure", "Non Secure", "nonsecure", "1";
        /// Authenticated signalling.
        Authenticated => "authenticated", "Authenticated", "2";
        /// Encrypted signalling and media.
        Encrypted => "encrypted", "Encrypted", "3";
    }
);

text_enum!(
    /// The certificate operation scheduled for a phone.
    CertOperation ("certificate operation") {
        /// No operation pending.
        None => "none", "No Pending Operation";
        /// Install or upgrade the LSC.
        Install => "install", "Install/Upgrade", "upgrade", "install/upgrade";
        /// Delete the LSC.
        Delete => "delete", "Delete";
        /// Fetch the phone's certificate.
        Troubleshoot => "troubleshoot", "Troubleshoot", "fetch";
    }
);

text_enum!(
    /// How CAPF authenticates the phone.
    AuthMode ("authentication mode") {
        /// No authentication (null string).
        NullString => "null-string", "By Null String", "null";
        /// An authentication string entered on the phone.
        AuthString => "auth-string", "By Authentication String", "string";
        /// The existing certificate, LSC first.
        Lsc => "lsc", "By Existing Certificate (precedence to LSC)";
        /// The existing certificate, MIC first.
        Mic => "mic", "By Existing Certificate (precedence to MIC)";
    }
);

text_enum!(
    /// Which key types CAPF asks the phone for, in which order.
    KeyOrder ("key order") {
        /// RSA only.
        Rsa => "rsa", "RSA Only";
        /// EC only.
        Ec => "ec", "EC Only";
        /// EC first, RSA when the phone cannot do EC.
        EcRsa => "ec-rsa", "EC Preferred, RSA Backup";
        /// RSA first, EC when the phone cannot do RSA.
        RsaEc => "rsa-ec", "RSA Preferred, EC Backup";
    }
);

text_enum!(
    /// EC key size of an LSC.
    EcCurve ("EC key size") {
        /// P-256 (256 bits).
        P256 => "p256", "256", "secp256r1", "prime256v1";
        /// P-384.
        P384 => "p384", "384", "secp384r1";
        /// P-521.
        P521 => "p521", "521", "secp521r1";
    }
);

text_enum!(
    /// Where a phone's certificate operation stands.
    OpState ("operation state") {
        /// Nothing has happened yet.
        None => "none", "None";
        /// Scheduled, waiting for the phone.
        Pending => "pending", "Pending";
        /// Done.
        Success => "success", "Success";
        /// Failed (the status says why).
        Failed => "failed", "Failed";
    }
);

text_enum!(
    /// Which certificate of a phone.
    DeviceCertKind ("certificate kind") {
        /// Locally significant certificate, issued by CAPF.
        Lsc => "LSC", "LSC", "lsc";
        /// Manufacturer installed certificate.
        Mic => "MIC", "MIC", "mic";
    }
);

/// The RSA key sizes CAPF may ask phones for.
pub const RSA_BITS: [u32; 4] = [1024, 2048, 3072, 4096];

/// Check a phone name: `SEP` followed by 12 hex digits (surrounding blanks ignored).
/// Returns it with the MAC in upper case. The rule is
/// [`phonetrust_proto::device::DeviceName`].
pub fn device_name(s: &str) -> Result<String, StoreError> {
    phonetrust_proto::device::DeviceName::parse(s.trim())
        .map(String::from)
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Check an authentication string: 4 to 16 digits.
pub fn auth_string(s: &str) -> Result<String, StoreError> {
    if !(4..=16).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::Invalid(format!(
            "invalid authentication string '{s}': use 4 to 16 digits (0-9)"
        )));
    }
    Ok(s.to_string())
}

/// Check an RSA key size for an LSC.
pub fn rsa_bits(bits: u32) -> Result<u32, StoreError> {
    if !RSA_BITS.contains(&bits) {
        return Err(StoreError::Invalid(format!(
            "invalid RSA key size {bits}: use 1024, 2048, 3072 or 4096"
        )));
    }
    Ok(bits)
}

/// Parse a date and time: `2026-12-01T10:00Z`, `2026-12-01T10:00:00+01:00`,
/// `2026-12-01 10:00` (UTC) or a plain date `2026-12-01` (midnight UTC). Returns Unix
/// seconds.
pub fn parse_time(s: &str) -> Result<i64, StoreError> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let t = s.trim();
    let bad = || {
        StoreError::Invalid(format!(
            "invalid date and time '{s}': use e.g. 2026-12-01T10:00Z or 2026-12-01T10:00:00+01:00"
        ))
    };
    if let Ok(dt) = time::OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(dt.unix_timestamp());
    }
    // Without seconds, with Z or an offset.
    let (body, offset) = if let Some(b) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        (b, time::UtcOffset::UTC)
    } else if let Some(pos) = t
        .get(10..)
        .and_then(|r| r.rfind(['+', '-']))
        .map(|p| p + 10)
    {
        let off = time::UtcOffset::parse(
            t.get(pos..).unwrap_or_default(),
            format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
        )
        .map_err(|_| bad())?;
        (t.get(..pos).unwrap_or_default(), off)
    } else {
        (t, time::UtcOffset::UTC)
    };
    let body = body.replace(' ', "T");
    let dt = time::PrimitiveDateTime::parse(
        &body,
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    )
    .or_else(|_| {
        time::PrimitiveDateTime::parse(
            &body,
            format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
    })
    .or_else(|_| {
        time::Date::parse(&body, format_description!("[year]-[month]-[day]")).map(|d| d.midnight())
    })
    .map_err(|_| bad())?;
    Ok(dt.assume_offset(offset).unix_timestamp())
}

/// Format Unix seconds as `2026-12-01T10:00:00Z`.
pub fn format_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// A phone security profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityProfile {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Device security mode.
    pub mode: SecurityMode,
    /// TFTP encrypted configuration.
    pub encrypted_config: bool,
    /// CAPF authentication mode given to phones that use it.
    pub auth_mode: AuthMode,
    /// Key order.
    pub key_order: KeyOrder,
    /// RSA key size.
    pub rsa_bits: u32,
    /// EC key size.
    pub ec_curve: EcCurve,
}

/// A phone's CAPF information: the operation scheduled for it and how it is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapfInfo {
    /// Operation.
    pub operation: CertOperation,
    /// Authentication mode.
    pub auth_mode: AuthMode,
    /// Authentication string (4–16 digits) for [`AuthMode::AuthString`].
    pub auth_string: Option<String>,
    /// Key order.
    pub key_order: KeyOrder,
    /// RSA key size.
    pub rsa_bits: u32,
    /// EC key size.
    pub ec_curve: EcCurve,
    /// Operation completes by (Unix seconds).
    pub completes_by: Option<i64>,
    /// Where the operation stands.
    pub state: OpState,
    /// The status line, as the phone page shows it ("Upgrade Success", ...).
    pub status: String,
    /// When the status last changed.
    pub status_at: i64,
}

impl CapfInfo {
    /// The CAPF information of a new phone with profile `p`: nothing scheduled, the
    /// profile's key settings. A profile cannot carry a per-phone string, so "By
    /// Authentication String" starts as the null string.
    pub fn idle(p: &SecurityProfile, now: i64) -> Self {
        Self {
            operation: CertOperation::None,
            auth_mode: if p.auth_mode == AuthMode::AuthString {
                AuthMode::NullString
            } else {
                p.auth_mode
            },
            auth_string: None,
            key_order: p.key_order,
            rsa_bits: p.rsa_bits,
            ec_curve: p.ec_curve,
            completes_by: None,
            state: OpState::None,
            status: "None".into(),
            status_at: now,
        }
    }
}

/// A phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// `SEP<MAC>`.
    pub name: String,
    /// Model (e.g. `8845`).
    pub model: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Phone security profile name.
    pub profile: String,
    /// Free text.
    pub description: String,
    /// CAPF information.
    pub capf: CapfInfo,
    /// MD5 (hex) of the certificate CAPF recorded for the phone.
    pub md5hash: Option<String>,
    /// Created.
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
}

/// A certificate CAPF learnt of a phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCert {
    /// LSC or MIC.
    pub kind: DeviceCertKind,
    /// PEM.
    pub pem: String,
    /// MD5 of the DER, hex.
    pub md5: String,
    /// Public key as trust-list records carry it, hex.
    pub public_key: String,
    /// Subject (`CN=..., O=...`).
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Serial, upper-case hex.
    pub serial: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// When CAPF recorded it.
    pub recorded_at: i64,
}

/// A certificate in a trust store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustCert {
    /// Trust store.
    pub store: TrustStore,
    /// Name (unique in the store), e.g. `Cisco_Manufacturing_CA.pem`.
    pub name: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// Subject.
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
    /// When imported.
    pub imported_at: i64,
}

text_enum!(
    /// The trust stores of a node.
    TrustStore ("trust store") {
        /// CallManager-trust: certificates the CallManager and TVS services trust.
        CallManager => "CallManager-trust", "CallManager-trust", "callmanager";
        /// CAPF-trust: CAPF roots and the phone manufacturers' CAs (MIC verification).
        Capf => "CAPF-trust", "CAPF-trust", "capf";
        /// Phone-SAST-trust: security-token (SAST) certificates for the CTL.
        PhoneSast => "Phone-SAST-trust", "Phone-SAST-trust", "phone-sast";
        /// tomcat-trust: web and CA certificates for HTTPS.
        Tomcat => "tomcat-trust", "tomcat-trust", "tomcat";
    }
);

impl TrustStore {
    /// Whether phones rely on the store: TVS vouches for the certificates of
    /// CallManager-trust and Phone-SAST-trust, so changing them changes what phones trust.
    pub fn vouched_to_phones(self) -> bool {
        matches!(self, Self::CallManager | Self::PhoneSast)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(device_name("sep001122aabbcc").unwrap(), "SEP001122AABBCC");
        for bad in [
            "SEP0011",
            "SEP00112233445G",
            "ABC001122334455",
            "SEP0011223344556",
            "",
        ] {
            assert!(device_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("2026-12-01T10:00Z").unwrap(), 1_796_119_200);
        assert_eq!(parse_time("2026-12-01T10:00:00Z").unwrap(), 1_796_119_200);
        assert_eq!(parse_time("2026-12-01T11:00+01:00").unwrap(), 1_796_119_200);
        assert_eq!(parse_time("2026-12-01 10:00").unwrap(), 1_796_119_200);
        assert_eq!(parse_time("2026-12-01").unwrap(), 1_796_119_200 - 36_000);
        assert_eq!(format_time(1_796_119_200), "2026-12-01T10:00:00Z");
        for bad in ["tomorrow", "2026-13-01T10:00Z", "2026-12-01T25:00Z", ""] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_strings() {
        assert!(auth_string("1234").is_ok());
        assert!(auth_string("1234567890123456").is_ok());
        for bad in ["123", "12345678901234567", "12a4", ""] {
            assert!(auth_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_parse_short_names_labels_and_aliases() {
        assert_eq!("ec-rsa".parse::<KeyOrder>().unwrap(), KeyOrder::EcRsa);
        assert_eq!(
            "By Existing Certificate (precedence to MIC)"
                .parse::<AuthMode>()
                .unwrap(),
            AuthMode::Mic
        );
        assert_eq!(
            "CAPF-trust".parse::<TrustStore>().unwrap(),
            TrustStore::Capf
        );
        assert_eq!(
            "upgrade".parse::<CertOperation>().unwrap(),
            CertOperation::Install
        );
        let e = "sha1".parse::<KeyOrder>().unwrap_err().to_string();
        assert!(e.contains("rsa, ec, ec-rsa, rsa-ec"), "{e}");
    }
}
