//! The text of `show itl` / `show ctl` (and the header table of any signed file), laid
//! out as administrators know it from the vendor's CLI: checksums, length, modification
//! time, the header table, one "ITL Record #:N" table per record with the SAST signer
//! note, and the closing verdict.
//!
//! The BYTEPOS column carries the item's tag, as the vendor's output does.

use std::fmt::Write;

use crate::cert::{md5, sha1};
use crate::codec::{DecodeError, hex, hex_upper_sep};
use crate::tlv::{self, Header, tag};
use crate::trustlist::{self, Role, TrustList};

/// Which list a report speaks of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Initial trust list.
    Itl,
    /// Certificate trust list.
    Ctl,
}

impl ListKind {
    fn upper(self) -> &'static str {
        match self {
            Self::Itl => "ITL",
            Self::Ctl => "CTL",
        }
    }
}

/// A rendered report and its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The text.
    pub text: String,
    /// True only when the signature verified.
    pub verified: bool,
}

/// `Fri Mar 06 19:45:13 UTC 2015`.
pub fn format_time(unix: i64) -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short] [month repr:short] [day] [hour]:[minute]:[second] UTC [year]"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// What `show itl` prints when there is no file.
pub fn missing(kind: ListKind) -> String {
    match kind {
        ListKind::Itl => "Length of ITL file: 0\n\
            ITL File not found. To generate an ITL file, run `phonetrust serve` (the TFTP service builds it) or `phonetrust utils itl reset localkey`.\n\
            Error parsing the ITL File.\n"
            .to_string(),
        ListKind::Ctl => "Length of CTL file: 0\n\
            CTL File not found. Please run CTLClient plugin or run the CLI - utils ctl.. to\n\
            generate the CTL file.\n\
            Error parsing the CTL File.\n"
            .to_string(),
    }
}

fn row(out: &mut String, t: u8, name: &str, length: impl std::fmt::Display, value: &str) {
    // Value-less rows end without trailing blanks.
    let line = format!("{t:<7} {name:<20} {length:<7} {value}");
    out.push_str(line.trim_end());
    out.push('\n');
}

fn table_head(out: &mut String) {
    out.push_str("BYTEPOS TAG                  LENGTH  VALUE\n");
    out.push_str("------- ---                  ------  -----\n");
}

/// The header table (items from SIGNERID on), as `show itl` prints it.
pub fn header_table(file: &[u8], h: &Header) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Version:        {}", h.version);
    let _ = writeln!(out, "HeaderLength:   {} (BYTES)\n", h.header_length);
    table_head(&mut out);
    for item in &h.items {
        let v = file.get(item.value.clone()).unwrap_or_default();
        let name = tlv::tag_name(item.tag);
        match item.tag {
            tag::VERSION | tag::HEADER_LENGTH | tag::PADDING => {}
            t if tlv::is_container(t) => row(&mut out, t, name, 2, &item.length.to_string()),
            tag::SIGNER_NAME | tag::ISSUER_NAME | tag::FILENAME => {
                row(
                    &mut out,
                    item.tag,
                    name,
                    item.length,
                    &crate::codec::nul_text(v),
                );
            }
            tag::SERIAL_NUMBER => row(
                &mut out,
                item.tag,
                name,
                item.length,
                &hex_upper_sep(v, ":"),
            ),
            tag::SIGNATURE => {
                row(&mut out, item.tag, name, item.length, "");
                for chunk in v.chunks(16) {
                    let _ = writeln!(out, "        {}", hex_upper_sep(chunk, " ").to_lowercase());
                }
            }
            tag::TIMESTAMP => {
                let secs = v
                    .try_into()
                    .map(|a: [u8; 4]| i64::from(u32::from_be_bytes(a)))
                    .unwrap_or(0);
                row(&mut out, item.tag, name, item.length, &format_time(secs));
            }
            tag::SIGNER_VERSION => {
                let s = match v {
                    [a, b] => format!("{a}.{b}"),
                    _ => hex(v),
                };
                row(&mut out, item.tag, name, item.length, &s);
            }
            tag::ENCRYPTION_KEY => row(&mut out, item.tag, name, item.length, ""),
            _ => {
                let s = match v.len() {
                    1 => v.first().map(|b| b.to_string()).unwrap_or_default(),
                    2 => u16::from_be_bytes([
                        v.first().copied().unwrap_or(0),
                        v.get(1).copied().unwrap_or(0),
                    ])
                    .to_string(),
                    _ => hex(v),
                };
                row(&mut out, item.tag, name, item.length, &s);
            }
        }
    }
    out
}

fn record_table(out: &mut String, kind: ListKind, n: usize, rec: &trustlist::ParsedRecord) {
    let _ = writeln!(out, "\n\t{} Record #:{n}\n\t----", kind.upper());
    table_head(out);
    for item in &rec.items {
        let v = item.value.as_slice();
        let name = trustlist::tag_name(item.tag);
        let value = match item.tag {
            trustlist::tag::RECORD_LENGTH => rec.length.to_string(),
            trustlist::tag::DNS_NAME
            | trustlist::tag::SUBJECT_NAME
            | trustlist::tag::ISSUER_NAME => crate::codec::nul_text(v),
            trustlist::tag::FUNCTION => rec.record.role.map(Role::display_name).unwrap_or_default(),
            trustlist::tag::SERIAL_NUMBER => hex_upper_sep(v, ":"),
            trustlist::tag::PUBLIC_KEY | trustlist::tag::SIGNATURE => String::new(),
            trustlist::tag::CERTIFICATE => {
                format!("{} (SHA1 Hash HEX)", hex_upper_sep(&sha1(v), " "))
            }
            trustlist::tag::IP_ADDRESS => rec
                .record
                .ip_address
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            trustlist::tag::CERT_HASH => hex_upper_sep(v, " "),
            trustlist::tag::HASH_ALGORITHM => {
                rec.record.hash_alg.map(|a| a.name()).unwrap_or_default()
            }
            _ => hex(v.get(..16).unwrap_or(v)),
        };
        row(out, item.tag, name, item.length, &value);
    }
}

/// Render `show itl` / `show ctl` for `file`. `modified` is the file's modification time
/// (Unix seconds) when known; `kind` defaults to the header's FILENAME.
pub fn trust_list(
    file: &[u8],
    modified: Option<i64>,
    kind: Option<ListKind>,
) -> Result<Report, DecodeError> {
    let list: TrustList = trustlist::parse(file)?;
    let kind = kind.unwrap_or(if list.is_ctl() {
        ListKind::Ctl
    } else {
        ListKind::Itl
    });
    let k = kind.upper();
    let mut out = String::new();
    let _ = writeln!(out, "The checksum value of the {k} file:");
    let _ = writeln!(out, "{}(MD5)", hex(&md5(file)));
    let _ = writeln!(out, "{}(SHA1)\n", hex(&sha1(file)));
    let _ = writeln!(out, "Length of {k} file: {}", file.len());
    if let Some(m) = modified {
        let _ = writeln!(out, "The {k} File was last modified on {}", format_time(m));
    }
    let _ = writeln!(out, "\n\tParse {k} File\n\t----------------\n");
    out.push_str(&header_table(file, &list.header));

    let verdict = list.verify(file);
    let signer = verdict
        .as_ref()
        .ok()
        .copied()
        .or_else(|| list.signer_index());
    for (i, rec) in list.records.iter().enumerate() {
        record_table(&mut out, kind, i + 1, rec);
        if rec.record.role == Some(Role::Sast) {
            let used = if signer == Some(i) { "was" } else { "was not" };
            let _ = writeln!(out, "This etoken {used} used to sign the {k} file.");
        }
    }
    out.push('\n');
    let verified = match &verdict {
        Ok(_) => {
            let _ = writeln!(out, "The {k} file was verified successfully.");
            true
        }
        Err(e) => {
            let _ = writeln!(out, "The {k} file could not be verified: {e}.");
            false
        }
    };
    Ok(Report {
        text: out,
        verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::vector;

    #[test]
    fn itl_report_matches_the_seed_layout() {
        let f = vector("files/ITLFile.tlv");
        let r = trust_list(&f, Some(0), None).unwrap();
        assert!(r.verified);
        let t = &r.text;
        assert!(t.contains("4029262dcb1a6fb0cf8ddf0471ecd00b(MD5)"), "{t}");
        assert!(t.contains("Length of ITL file: 9848"));
        assert!(t.contains("HeaderLength:   484 (BYTES)"));
        assert!(t.contains("\tITL Record #:6"));
        assert!(
            t.contains("4       FUNCTION             2       System Administrator Security Token")
        );
        assert!(t.contains("4       FUNCTION             2       CCM+TFTP"));
        assert!(t.contains("6       SERIALNUMBER         20      05:A0:1F:30"));
        assert!(t.contains("(SHA1 Hash HEX)"));
        assert_eq!(
            t.matches("This etoken was used to sign the ITL file.")
                .count(),
            1
        );
        assert_eq!(
            t.matches("This etoken was not used to sign the ITL file.")
                .count(),
            1
        );
        assert!(t.ends_with("The ITL file was verified successfully.\n"));
        assert!(t.contains("The ITL File was last modified on Thu Jan 01 00:00:00 UTC 1970"));
    }

    #[test]
    fn ctl_is_recognised_and_tampering_reported() {
        let mut f = vector("files/CTLFile.tlv");
        let r = trust_list(&f, None, None).unwrap();
        assert!(r.text.contains("CTL Record #:3"));
        assert!(r.verified);
        let n = f.len() - 10;
        f[n] ^= 0xff;
        let r = trust_list(&f, None, None).unwrap();
        assert!(!r.verified);
        assert!(r.text.contains("The CTL file could not be verified"));
    }

    #[test]
    fn missing_file_text() {
        assert!(missing(ListKind::Ctl).starts_with("Length of CTL file: 0\nCTL File not found"));
        assert!(missing(ListKind::Itl).contains("Error parsing the ITL File."));
    }
}
