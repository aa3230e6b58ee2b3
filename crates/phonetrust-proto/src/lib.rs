//! Phone-facing formats and protocols of phonetrust, with no sockets and no async runtime.
//!
//! - [`codec`]: the borrowing reader, capped lengths and back-filled length prefixes
//!   every format below is built on.
//! - [`tlv`]: the signed header shared by every file a phone downloads.
//! - [`trustlist`]: ITL and CTL files.
//! - [`sgn`]: signed files (`.sgn`).
//! - [`enccnf`]: encrypted configuration (`.enc.sgn`) and the partial `.cnf.xml.sgn`.
//! - [`capf`] and [`tvs`]: the CAPF and TVS messages; [`capf_server`] and [`capf_phone`]:
//!   the two sides of a CAPF session as state machines (messages in, actions out).
//! - [`show`]: the `show itl` / `show ctl` text administrators know.
//! - [`cert`]: certificate facts these formats carry, read with OpenSSL.
//!
//! Everything decoded from a peer or a file is untrusted until its signature and fields
//! are checked; parsers never panic and never allocate more than their input allows.

#![forbid(unsafe_code)]

pub mod capf;
pub mod capf_phone;
pub mod capf_server;
pub mod cert;
pub mod clock;
pub mod codec;
pub mod devconfig;
pub mod device;
pub mod element;
pub mod enccnf;
#[doc(hidden)]
pub mod fuzzing;
pub mod ports;
pub mod rand;
pub mod sgn;
pub mod show;
pub mod tftp;
pub mod tftp_server;
pub mod tlv;
pub mod trustlist;
pub mod tvs;
pub mod tvs_server;

#[cfg(test)]
pub(crate) mod testutil {
    //! The reference vectors, for unit tests (committed in `phonetrust-testsupport`).
    pub(crate) use phonetrust_testsupport::vectors::bytes as vector;
}
