//! The well-known ports of the phone-facing services, defined once. The enterprise
//! parameters (`CapfPhonePort`, `TvsPort`, `TftpPort`, `HttpPort`) start from these and
//! say what phones are told; every server's default listen address uses them.

/// CAPF (TCP, TLS): `CapfPhonePort`.
pub const CAPF: u16 = 3804;
/// TVS (TCP, TLS): `TvsPort`.
pub const TVS: u16 = 2445;
/// TFTP (UDP): `TftpPort`.
pub const TFTP: u16 = 69;
/// HTTP downloads of the TFTP namespace (TCP): `HttpPort`.
pub const HTTP: u16 = 6970;
