//! Which ports phones are told, and where a server listens.
//!
//! The rule: the enterprise parameters (CAPF Phone Port, TVS Port, TFTP Port, HTTP Port;
//! [`PhonePorts`]) say what phones are told, in their configs and by default where
//! `serve` listens. A command-line option or config-file setting moves only where this
//! process listens; it never rewrites a parameter. When the two differ, phones would go
//! to the wrong port, so `serve` warns with [`mismatches`].

use std::fmt;

use phonetrust_store::params::{self, PhonePorts};

/// A service listening elsewhere than where phones are told to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The service (`CAPF`, `TVS`, `TFTP`, `HTTP`).
    pub service: &'static str,
    /// The enterprise parameter that tells phones the port.
    pub param: &'static str,
    /// What the parameter says.
    pub told: u16,
    /// Where this process listens.
    pub listening: u16,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} listens on port {} but phones are told port {} ({}): phones reach it only if something forwards {} to {}; to tell phones this port, run `phonetrust set param {} {}`",
            self.service,
            self.listening,
            self.told,
            self.param,
            self.told,
            self.listening,
            self.param,
            self.listening
        )
    }
}

/// The services whose listening port differs from the port phones are told.
pub fn mismatches(told: &PhonePorts, listening: &PhonePorts) -> Vec<Mismatch> {
    [
        ("CAPF", params::CAPF_PHONE_PORT, told.capf, listening.capf),
        ("TVS", params::TVS_PORT, told.tvs, listening.tvs),
        ("TFTP", params::TFTP_PORT, told.tftp, listening.tftp),
        ("HTTP", params::HTTP_PORT, told.http, listening.http),
    ]
    .into_iter()
    .filter(|(_, _, t, l)| t != l)
    .map(|(service, param, told, listening)| Mismatch {
        service,
        param,
        told,
        listening,
    })
    .collect()
}
