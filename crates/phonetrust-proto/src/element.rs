//! The element encoding CAPF and TVS messages share: `tag:u8, length:u16, value`.
//!
//! Unknown tags never stop a reader; an element running past the end of its message is
//! malformed.

use crate::codec::{DecodeError, Reader};

/// One element as it lies in a message body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawElement<'a> {
    /// Absolute offset of the tag byte.
    pub offset: usize,
    /// Tag.
    pub tag: u8,
    /// Value.
    pub value: &'a [u8],
}

/// Split a message body into elements.
pub fn split(mut r: Reader<'_>) -> Result<Vec<RawElement<'_>>, DecodeError> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let offset = r.offset();
        let tag = r.u8("element tag")?;
        let len = r.u16("element length").map_err(|_| {
            DecodeError::malformed(offset, format!("element tag {tag}"), "length field cut off")
        })?;
        let value = r.take(usize::from(len), "element value").map_err(|_| {
            DecodeError::malformed(
                offset,
                format!("element tag {tag}"),
                format!("value of {len} bytes runs past the end of the message"),
            )
        })?;
        out.push(RawElement { offset, tag, value });
    }
    Ok(out)
}

/// Append elements to a message whose header (of `header_len` bytes, body length as a
/// u16 at `len_at`) is already in `out`, then fill in the body length.
pub(crate) fn finish_message(
    out: &mut Vec<u8>,
    header_len: usize,
    len_at: usize,
    elements: impl Iterator<Item = (u8, Vec<u8>)>,
    what: &str,
) -> Result<(), crate::codec::EncodeError> {
    for (tag, value) in elements {
        crate::codec::put_tlv(out, tag, &value, what)?;
    }
    let body = out.len() - header_len;
    let len = u16::try_from(body).map_err(|_| crate::codec::EncodeError::TooLong {
        what: format!("{what} body"),
        length: body,
    })?;
    if let Some(s) = out.get_mut(len_at..len_at + 2) {
        s.copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// Decode the elements of a message that must be exactly `message_len` bytes long.
pub(crate) fn decode_body<E>(
    bytes: &[u8],
    header_len: usize,
    message_len: usize,
    decode: impl Fn(usize, u8, &[u8]) -> Result<E, DecodeError>,
) -> Result<Vec<E>, DecodeError> {
    if bytes.len() != message_len {
        return Err(DecodeError::malformed(
            header_len - 2,
            "body length",
            format!(
                "header announces {} body bytes, {} were given",
                message_len - header_len,
                bytes.len().saturating_sub(header_len)
            ),
        ));
    }
    let body = Reader::at(bytes.get(header_len..).unwrap_or_default(), header_len);
    split(body)?
        .into_iter()
        .map(|e| decode(e.offset, e.tag, e.value))
        .collect()
}

/// A NUL-terminated text value kept exactly as received, so it re-encodes byte for byte.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct NulText(pub Vec<u8>);

impl NulText {
    /// Text with a terminating NUL.
    pub fn new(s: &str) -> Self {
        Self(crate::codec::with_nul(s))
    }

    /// The text without its terminating NUL (lossy UTF-8).
    pub fn text(&self) -> String {
        crate::codec::nul_text(&self.0)
    }
}

impl std::fmt::Debug for NulText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

/// Declare a protocol enum whose unknown codes are kept (`Unknown(code)`), with
/// `code()` and `From<code>`.
macro_rules! wire_enum {
    ($(#[$m:meta])* $vis:vis enum $name:ident : $ty:ty {
        $($(#[$vm:meta])* $var:ident = $val:literal),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vm])* $var,)+
            /// A code this implementation does not know, kept as received.
            Unknown($ty),
        }
        impl $name {
            /// The wire code.
            pub fn code(self) -> $ty {
                match self { $(Self::$var => $val,)+ Self::Unknown(c) => c }
            }
        }
        impl From<$ty> for $name {
            fn from(c: $ty) -> Self {
                match c { $($val => Self::$var,)+ c => Self::Unknown(c) }
            }
        }
    };
}
pub(crate) use wire_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_refuses_overruns() {
        let b = crate::codec::unhex("0100010107000103").unwrap();
        let e = split(Reader::new(&b)).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[1].tag, e[1].value, e[1].offset), (7, &[3u8][..], 4));
        let b = crate::codec::unhex("01000501").unwrap();
        assert!(
            split(Reader::new(&b))
                .unwrap_err()
                .to_string()
                .contains("runs past")
        );
        let b = crate::codec::unhex("0100").unwrap();
        assert!(split(Reader::new(&b)).is_err());
    }
}
