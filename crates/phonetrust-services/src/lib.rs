//! The network services of a phonetrust node, as thin async shells: sockets, TLS,
//! deadlines and the store here; protocol logic in `phonetrust-proto`'s sans-IO sessions.
//!
//! - [`capf`]: the CAPF server (certificate enrolment).
//! - [`provision`]: the files phones download (ITL, CTL, configs, static files).
//! - [`tftp`], [`http`]: the TFTP (UDP 69) and HTTP (6970) servers of that namespace.
//! - [`guard`]: a stream wrapper that ends connections whose client stopped reading.
//! - [`limits`]: caps per service and per address, and summarised refusal logs.
//! - [`tvs`]: the TVS server (is this certificate trusted, and for which roles).
//! - [`token`]: hardware security tokens (PKCS#11) that sign the CTL.
//! - [`metrics`]: the services' counters and the Prometheus exposition.
//! - [`web`]: the web administration over HTTPS (sessions, CSRF, CSP, roles).
//! - [`renewal`]: the LSC renewal policy's minute tick and its reset hook.
//! - [`monitor`]: the certificate monitor's hourly check; [`notify`]: its targets (a
//!   webhook, e-mail over SMTP with STARTTLS).

#![forbid(unsafe_code)]

pub mod capf;
pub mod guard;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod probe;
pub mod provision;
pub mod renewal;
pub mod tftp;
pub mod token;
pub mod tvs;
pub mod web;

/// Why a service could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The port could not be bound.
    #[error(
        "cannot listen on {0}: {1} (is another service using the port? a port below 1024 needs privileges)"
    )]
    Bind(std::net::SocketAddr, std::io::Error),
    /// A socket operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}
