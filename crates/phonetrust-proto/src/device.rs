//! A phone's device name, `SEP` followed by its 12-hex-digit MAC address: the one
//! validator every layer uses (CAPF and TVS messages, file names phones ask for, the
//! store, the command line).

use std::fmt;

/// A valid device name, the MAC in upper case (`SEP001122AABBCC`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceName(String);

/// Why a text is not a device name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid phone name '{0}': a phone is SEP followed by its 12-digit MAC address, e.g. SEP001122334455"
)]
pub struct InvalidDeviceName(pub String);

impl DeviceName {
    /// `SEP` (any case) and 12 hex digits, nothing else around them.
    pub fn parse(s: &str) -> Result<Self, InvalidDeviceName> {
        let mac = s
            .get(..3)
            .filter(|p| p.eq_ignore_ascii_case("SEP"))
            .and_then(|_| s.get(3..))
            .filter(|m| is_mac(m))
            .ok_or_else(|| InvalidDeviceName(s.chars().take(40).collect()))?;
        Ok(Self(format!("SEP{}", mac.to_ascii_uppercase())))
    }

    /// A MAC address (12 hex digits) or a device name.
    pub fn from_mac(s: &str) -> Result<Self, InvalidDeviceName> {
        if is_mac(s) {
            Ok(Self(format!("SEP{}", s.to_ascii_uppercase())))
        } else {
            Self::parse(s)
        }
    }

    /// The phone whose MAC address is `mac` (its low 48 bits).
    pub fn from_mac_number(mac: u64) -> Self {
        Self(format!("SEP{:012X}", mac & 0xFFFF_FFFF_FFFF))
    }

    /// The MAC address as a number.
    pub fn mac_number(&self) -> u64 {
        self.0
            .get(3..)
            .and_then(|m| u64::from_str_radix(m, 16).ok())
            .unwrap_or(0)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_mac(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DeviceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<DeviceName> for String {
    fn from(d: DeviceName) -> Self {
        d.0
    }
}

impl std::str::FromStr for DeviceName {
    type Err = InvalidDeviceName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_macs() {
        assert_eq!(
            DeviceName::parse("sep001122aabbcc").unwrap().as_str(),
            "SEP001122AABBCC"
        );
        assert_eq!(
            DeviceName::from_mac("001122aabbcc").unwrap().to_string(),
            "SEP001122AABBCC"
        );
        assert_eq!(
            DeviceName::from_mac("SEP001122AABBCC")
                .unwrap()
                .mac_number(),
            0x0011_22AA_BBCC
        );
        assert_eq!(
            DeviceName::from_mac_number(0x0011_22AA_BBCC).as_str(),
            "SEP001122AABBCC"
        );
        for bad in [
            "SEP0011",
            "SEP00112233445G",
            "ABC001122334455",
            "SEP0011223344556",
            " SEP001122334455",
            "SEP00112233445\u{e9}",
            "",
        ] {
            let e = DeviceName::parse(bad).unwrap_err();
            assert!(e.to_string().contains("12-digit MAC"), "{bad}");
        }
        assert!(DeviceName::from_mac("00112233445").is_err());
    }
}
