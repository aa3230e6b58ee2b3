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

/// Phone models known to speak CAPF and download trust lists (the number on the phone,
/// upper case: `8845`, `8865NR`, `7942`), and `Universal` for a phone whose model is not
/// recorded. Another model is accepted only when the administrator says so (a model newer
/// than this list): a mistyped model is otherwise the first thing that goes wrong.
pub const KNOWN_MODELS: &[&str] = &[
    "Universal",
    "6901",
    "6911",
    "6921",
    "6941",
    "6945",
    "6961",
    "7811",
    "7821",
    "7832",
    "7841",
    "7861",
    "7906",
    "7911",
    "7925",
    "7926",
    "7931",
    "7937",
    "7940",
    "7941",
    "7942",
    "7945",
    "7960",
    "7961",
    "7962",
    "7965",
    "7970",
    "7971",
    "7975",
    "8811",
    "8821",
    "8831",
    "8832",
    "8841",
    "8845",
    "8851",
    "8851NR",
    "8861",
    "8865",
    "8865NR",
    "8875",
    "8941",
    "8945",
    "8961",
    "9841",
    "9851",
    "9861",
    "9871",
    "9951",
    "9971",
    "DX650",
    "DX70",
    "DX80",
];

/// Models that cannot ask TVS about a trust-list signer they do not know (no "security by
/// default"): the seeds name the 7940 and 7960 and the 7935, 7936 and 7937 conference
/// phones. In mixed mode such a phone refuses a CTL or ITL signed by a new certificate
/// until its trust lists are deleted on the phone by hand.
pub const MODELS_WITHOUT_TVS: &[&str] = &["7935", "7936", "7937", "7940", "7960"];

/// Whether a phone of `model` (as recorded) can ask TVS.
pub fn uses_tvs(model: &str) -> bool {
    !MODELS_WITHOUT_TVS.contains(&model)
}

/// Why a model is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown phone model '{0}': known models are {list}; if the model is right and newer than this list, repeat with --allow-unknown-model",
    list = KNOWN_MODELS.join(", ")
)]
pub struct UnknownModel(pub String);

/// The model as recorded (`Cisco 8845` and `cp-8845` become `8845`), when it is known or
/// `allow_unknown` says to keep it anyway.
pub fn check_model(model: &str, allow_unknown: bool) -> Result<String, UnknownModel> {
    let t = model.trim();
    let lower = t.to_ascii_lowercase();
    let bare = lower
        .strip_prefix("cisco ")
        .or_else(|| lower.strip_prefix("cp-"))
        .unwrap_or(&lower);
    if let Some(k) = KNOWN_MODELS.iter().find(|k| k.eq_ignore_ascii_case(bare)) {
        return Ok((*k).to_string());
    }
    if allow_unknown && !t.is_empty() {
        return Ok(t.to_string());
    }
    Err(UnknownModel(t.to_string()))
}

#[cfg(test)]
mod model_tests {
    use super::*;

    #[test]
    fn models_are_checked_against_the_list() {
        assert_eq!(check_model("8845", false).unwrap(), "8845");
        assert_eq!(check_model("Cisco 7942", false).unwrap(), "7942");
        assert_eq!(check_model("cp-8865nr", false).unwrap(), "8865NR");
        let e = check_model("99999", false).unwrap_err().to_string();
        assert!(
            e.contains("'99999'") && e.contains("--allow-unknown-model"),
            "{e}"
        );
        assert_eq!(check_model("99999", true).unwrap(), "99999");
        assert!(check_model(" ", true).is_err());
    }
}

/// Most names read from one list.
pub const MAX_NAMES: usize = 1_000_000;

/// Phone names from a CSV list (`phone bulk --names FILE`): the first column of each row;
/// a first row whose first field is not a phone name (a header such as `Device Name`) and
/// blank lines are skipped. A row that is not a phone name is refused, naming its line.
pub fn names_from_csv(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let first = line
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .trim();
        if first.is_empty() {
            continue;
        }
        match DeviceName::parse(first) {
            Ok(n) => out.push(String::from(n)),
            Err(_) if i == 0 => {}
            Err(e) => return Err(format!("line {}: {e}", i + 1)),
        }
        if out.len() > MAX_NAMES {
            return Err(format!("more than {MAX_NAMES} phone names"));
        }
    }
    Ok(out)
}
