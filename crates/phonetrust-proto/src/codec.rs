//! Byte-level reading and writing shared by every format in this crate.
//!
//! [`Reader`] borrows the input and never reads past its end: every read names what it
//! was reading, so a short or malformed input yields a [`DecodeError`] that says where
//! (absolute byte offset) and what. Writers append big-endian integers and back-fill
//! 16-bit length prefixes once the value is known ([`LengthSlot`]).

use std::fmt;

/// Why a peer- or file-supplied byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field it announces.
    #[error("truncated at byte {offset}: {what} needs {needed} bytes, only {available} left")]
    Truncated {
        /// Absolute byte offset where the field starts.
        offset: usize,
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A field is present but its value is not acceptable.
    #[error("at byte {offset} ({what}): {reason}")]
    Malformed {
        /// Absolute byte offset of the item (its tag byte).
        offset: usize,
        /// The item, e.g. `tag 12 SIGNATURE`.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The whole input is larger than this format allows.
    #[error("input is {size} bytes; at most {limit} are accepted")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The cap.
        limit: usize,
    },
}

impl DecodeError {
    /// Shorthand for [`DecodeError::Malformed`].
    pub fn malformed(offset: usize, what: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Self::Malformed {
            offset,
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The absolute byte offset the error points at.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Self::Truncated { offset, .. } | Self::Malformed { offset, .. } => Some(*offset),
            Self::TooLarge { .. } => None,
        }
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A value does not fit its 16-bit length prefix.
    #[error("{what} is {length} bytes; a 16-bit length allows at most 65535")]
    TooLong {
        /// The item being written.
        what: String,
        /// Its length.
        length: usize,
    },
}

/// A cursor over borrowed bytes that knows its absolute position in the whole input.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, whose first byte is at absolute offset 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::at(buf, 0)
    }

    /// A reader over `buf`, whose first byte is at absolute offset `base`.
    pub fn at(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when everything has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// The next byte, without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consume `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e).map(|s| (e, s))) {
            Some((e, s)) => {
                self.pos = e;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                offset: self.offset(),
                what,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    /// Consume `n` bytes and return a reader over them that keeps absolute offsets.
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        let base = self.offset();
        let bytes = self.take(n, what)?;
        Ok(Reader::at(bytes, base))
    }

    /// Consume one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = self.take(1, what)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    /// Consume a big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        let mut a = [0u8; 2];
        a.copy_from_slice(b);
        Ok(u16::from_be_bytes(a))
    }

    /// Consume a big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }
}

/// Append one byte.
pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

/// Append a big-endian u16.
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Append a big-endian u32.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A 16-bit length prefix written as zero, to be filled in once the value is complete.
#[derive(Debug)]
#[must_use = "a length slot must be closed with `close`"]
pub struct LengthSlot {
    at: usize,
    counts_from: usize,
}

impl LengthSlot {
    /// Reserve two bytes; the length will count everything written after them.
    pub fn open(out: &mut Vec<u8>) -> Self {
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        Self {
            at,
            counts_from: at + 2,
        }
    }

    /// Reserve two bytes; the length will count from absolute position `from` (e.g. the
    /// record's first byte, for lengths that include their own item).
    pub fn open_counting_from(out: &mut Vec<u8>, from: usize) -> Self {
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        Self {
            at,
            counts_from: from,
        }
    }

    /// Write the length of everything since the slot's start.
    pub fn close(self, out: &mut [u8], what: &str) -> Result<u16, EncodeError> {
        let length = out.len().saturating_sub(self.counts_from);
        let v = u16::try_from(length).map_err(|_| EncodeError::TooLong {
            what: what.to_string(),
            length,
        })?;
        if let Some(slot) = out.get_mut(self.at..self.at + 2) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
        Ok(v)
    }
}

/// Append `tag:u8, length:u16, value`.
pub fn put_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8], what: &str) -> Result<(), EncodeError> {
    let length = u16::try_from(value.len()).map_err(|_| EncodeError::TooLong {
        what: what.to_string(),
        length: value.len(),
    })?;
    out.push(tag);
    put_u16(out, length);
    out.extend_from_slice(value);
    Ok(())
}

/// Mark tag `t` as seen; true if it had been seen already (duplicate detection).
pub fn seen_before(seen: &mut [bool; 256], t: u8) -> bool {
    seen.get_mut(usize::from(t))
        .map(|s| std::mem::replace(s, true))
        .unwrap_or(false)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let digit = |n: u8| char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 });
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 0x0f));
    }
    s
}

/// Upper-case hex with a separator between bytes (`"0A:1B"`, `"0A 1B"`).
pub fn hex_upper_sep(bytes: &[u8], sep: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Parse hex (either case, optional `:` or space separators).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !matches!(c, b':' | b' ' | b'\n' | b'\r' | b'\t'))
        .collect();
    if !clean.len().is_multiple_of(2) {
        return None;
    }
    clean
        .chunks(2)
        .map(|p| {
            let hi = (p.first().copied()? as char).to_digit(16)?;
            let lo = (p.get(1).copied()? as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// A NUL-terminated text value as it appears on the wire: decoding drops one trailing
/// NUL, encoding adds one.
pub fn nul_text(bytes: &[u8]) -> String {
    let trimmed = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    String::from_utf8_lossy(trimmed).into_owned()
}

/// Encode `s` with a terminating NUL.
pub fn with_nul(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_big_endian_and_tracks_offsets() {
        let data = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07];
        let mut r = Reader::at(&data, 100);
        assert_eq!(r.u8("a").unwrap(), 0x01);
        assert_eq!(r.u16("b").unwrap(), 0x0203);
        assert_eq!(r.offset(), 103);
        assert_eq!(r.u32("c").unwrap(), 0x0405_0607);
        assert!(r.is_empty());
        let err = r.u8("d").unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                offset: 107,
                what: "d",
                needed: 1,
                available: 0
            }
        );
    }

    #[test]
    fn take_does_not_overflow_on_huge_lengths() {
        let data = [0u8; 4];
        let mut r = Reader::new(&data);
        r.u8("x").unwrap();
        assert!(r.take(usize::MAX, "huge").is_err());
        assert_eq!(r.remaining(), 3);
    }

    #[test]
    fn sub_reader_keeps_absolute_offsets() {
        let data = [9u8, 1, 2, 3];
        let mut r = Reader::new(&data);
        r.u8("skip").unwrap();
        let mut s = r.sub(2, "inner").unwrap();
        assert_eq!(s.offset(), 1);
        s.u16("v").unwrap();
        let e = s.u8("past").unwrap_err();
        assert_eq!(e.offset(), Some(3));
    }

    #[test]
    fn length_slot_backfills() {
        let mut out = vec![0xAA];
        let slot = LengthSlot::open(&mut out);
        out.extend_from_slice(&[1, 2, 3]);
        assert_eq!(slot.close(&mut out, "x").unwrap(), 3);
        assert_eq!(out, [0xAA, 0x00, 0x03, 1, 2, 3]);

        let mut out = vec![0x01];
        let slot = LengthSlot::open_counting_from(&mut out, 0);
        out.push(7);
        slot.close(&mut out, "rec").unwrap();
        assert_eq!(out, [0x01, 0x00, 0x04, 0x07]);
    }

    #[test]
    fn oversized_values_are_refused() {
        let mut out = Vec::new();
        let big = vec![0u8; 70_000];
        assert!(put_tlv(&mut out, 1, &big, "big").is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
        for b in 0..=255u8 {
            assert_eq!(hex(&[b]), format!("{b:02x}"));
        }
        assert_eq!(hex_upper_sep(&[0x0a, 0xff], ":"), "0A:FF");
        assert_eq!(unhex("0A:ff").unwrap(), vec![0x0a, 0xff]);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }

    #[test]
    fn nul_text_round_trip() {
        assert_eq!(nul_text(b"abc\0"), "abc");
        assert_eq!(nul_text(b"abc"), "abc");
        assert_eq!(with_nul("abc"), b"abc\0");
    }
}
