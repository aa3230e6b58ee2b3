//! phonetrust-services over loopback: the CAPF server with simulated phones
//! ([`capf`]), hostile clients beside a well-behaved phone ([`hostile`]), the certificate monitor ([`monitor`]), LSC renewal by policy ([`renewal`]), provisioning over TFTP and HTTP ([`provision`]), and TVS ([`tvs`]). One
//! test binary; the set-up of a fresh node is shared here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod capf;
mod hostile;
mod monitor;
mod provision;
mod renewal;
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

/// A TLS 1.3 client as embedded stacks are: Nagle left on (no `TCP_NODELAY`). Returns the
/// stream after the handshake and a counter of the session tickets it has received.
pub(crate) async fn tls13_client_with_nagle(
    addr: std::net::SocketAddr,
) -> (
    tokio_openssl::SslStream<tokio::net::TcpStream>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use openssl::ssl::{SslConnector, SslMethod, SslSessionCacheMode, SslVerifyMode, SslVersion};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let tickets = std::sync::Arc::new(AtomicUsize::new(0));
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
    b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
    let t = tickets.clone();
    b.set_new_session_callback(move |_, _| {
        t.fetch_add(1, Ordering::SeqCst);
    });
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("phonetrust")
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(!tcp.nodelay().unwrap(), "Nagle stays on, as on the phones");
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut s).connect().await.unwrap();
    (s, tickets)
}
