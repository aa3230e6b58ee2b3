//! phonetrust-services over loopback: the CAPF server with simulated phones
//! ([`capf`]), provisioning over TFTP and HTTP ([`provision`]), and TVS ([`tvs`]). One
//! test binary; the set-up of a fresh node is shared here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod capf;
mod provision;
mod tvs;

/// A SIP 8845 named `name`, in `profile` (default: the standard non-secure one).
pub(crate) fn phone(name: &str, profile: Option<&str>) -> phonetrust_store::devices::NewDevice {
    phonetrust_store::devices::NewDevice {
        name: name.into(),
        model: "8845".into(),
        protocol: phonetrust_store::model::Protocol::Sip,
        profile: profile.map(Into::into),
        description: String::new(),
    }
}

pub(crate) use phonetrust_testsupport::now;

pub(crate) use phonetrust_testsupport::FreshNode;
pub(crate) use phonetrust_testsupport::vectors::bytes as v;
