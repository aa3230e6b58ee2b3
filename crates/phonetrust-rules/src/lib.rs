//! The rules of a phonetrust node, in one place, with no sockets and no command line:
//!
//! - [`trustlists`]: which certificates the node's ITL lists, and its signer;
//! - [`cluster`]: node names, roles and services, liveness, when a node may be removed;
//! - [`groups`]: call manager groups and device pools (which nodes each phone is told);
//! - [`monitor`]: the certificate monitor (what is reported, what a notice says, once a day);
//! - [`lifecycle`]: LSC renewal by policy (what is due, batches per hour, the window);
//! - [`itlstatus`]: which phones hold their node's current ITL, an outdated one, or none;
//! - [`doctor`]: the seeds' troubleshooting as checks, each finding with cause and fix;
//! - [`ctl`]: what the cluster's CTL holds (tokenless, recovery-signed, hardware tokens);
//! - [`fleet`]: which phones a bulk selection matches and what a bulk command does to each;
//! - [`fdbudget`]: how `serve` divides its file descriptors between the services;
//! - [`names`]: which names are served to phones (static files by checked name);
//! - [`ports`]: which ports phones are told (the parameters) against where a server
//!   listens;
//! - [`reports`]: the CAPF report and CSV;
//! - [`security`]: mixed mode, the CTL rebuilt or recovery-signed, ITL recovery;
//! - [`tvs`]: what TVS trusts (the trust index) and its answer for a certificate;
//! - [`certs`]: changes of own certificates and trust stores (warnings, reports, guards);
//! - [`accounts`]: web/API accounts: roles, names, the password rule, Argon2id, login locks;
//! - [`authguard`]: how CAPF slows down authentication guessing (per phone first, per
//!   address proportionally, truthful delays);
//! - [`capf`]: the CAPF plan for a phone (its scheduled operation, key requests and
//!   authentication) and what a session's outcome records (status, certificates).
//!
//! The device-name rule is [`phonetrust_proto::device::DeviceName`] and the phone's rule
//! for which trust-list records may sign a file is
//! [`phonetrust_proto::trustlist::TrustList::file_signers`]: the protocol crate needs them
//! and this one re-exports them. The network services (`phonetrust-services`) and the
//! command line (`phonetrust`) are shells over these rules.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod authguard;
pub mod capf;
pub mod certs;
pub mod cluster;
pub mod ctl;
pub mod doctor;
pub mod fdbudget;
pub mod fleet;
pub mod groups;
pub mod itlstatus;
pub mod lifecycle;
pub mod monitor;
pub mod names;
pub mod ports;
pub mod reports;
pub mod security;
pub mod trustlists;
pub mod tvs;

pub use phonetrust_proto::device::{DeviceName, InvalidDeviceName};
pub use phonetrust_proto::trustlist::FILE_SIGNER_ROLES;
