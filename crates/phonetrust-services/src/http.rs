//! The HTTP server phones download from (port 6970 by default): `GET /<name>` for the
//! same namespace as TFTP, with `Content-Length` and `Cache-Control: no-store` as the
//! seeds show; anything not served is a 404 "File not found".
//!
//! What one client can hold is bounded: connections are counted globally and per
//! address (over the cap: `503` with `Retry-After` in one write, then close); the request
//! head must arrive within the header timeout, which is also how long an idle keep-alive
//! connection may wait for its next request (a slowloris drip does not extend it); a
//! download whose client stops reading ends after the write-stall limit; static files
//! are streamed in chunks, never read whole.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ServiceError;
use crate::guard::WriteStall;
use crate::limits::{Limiter, Throttle};
use crate::provision::{Content, NotServed, Via};
use crate::tftp::FileSource;

/// "File not found" lines: at most one a second, each with the count it stands for.
static NOT_FOUND_LOG: Throttle = Throttle::new(Duration::from_secs(1));
static UNAVAILABLE_LOG: Throttle = Throttle::new(Duration::from_secs(1));

/// Chunk size of streamed files.
const CHUNK: usize = 64 * 1024;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Longest the request head may take to arrive, and an idle keep-alive connection may
    /// wait for the next request.
    pub header_timeout: Duration,
    /// Longest a response write may stay blocked by a client that does not read.
    pub write_stall: Duration,
    /// Connections at once, all clients.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_per_address: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], phonetrust_proto::ports::HTTP)),
            header_timeout: Duration::from_secs(10),
            write_stall: Duration::from_secs(30),
            max_connections: 1024,
            max_per_address: 64,
        }
    }
}

async fn get<S: FileSource>(
    State(source): State<Arc<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    match source.open(&name, peer, Via::Http).await {
        Ok(content) => {
            crate::metrics::HTTP.inc("ok");
            tracing::debug!(%peer, file = name, bytes = content.len(), "HTTP GET");
            let len = content.len();
            let body = match content {
                Content::Bytes(b) => axum::body::Body::from(axum::body::Bytes::from_owner(b)),
                Content::File(f, n) => {
                    let stream = futures_lite::stream::unfold(Some(f.take(n)), |st| async move {
                        let mut f = st?;
                        let mut buf = vec![0u8; CHUNK];
                        match f.read(&mut buf).await {
                            Ok(0) => None,
                            Ok(k) => {
                                buf.truncate(k);
                                Some((Ok(axum::body::Bytes::from(buf)), Some(f)))
                            }
                            Err(e) => Some((Err(e), None)),
                        }
                    });
                    axum::body::Body::from_stream(stream)
                }
            };
            let mut r = body.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("*/*"));
            r
        }
        Err(NotServed::NotFound(why)) => {
            if let Some(k) = NOT_FOUND_LOG.hit(Instant::now()) {
                tracing::info!(%peer, file = name, reason = why, count = k, "HTTP: File not found");
            }
            not_found()
        }
        Err(e @ NotServed::Unavailable(..)) => {
            crate::metrics::HTTP.inc("unavailable");
            if let Some(k) = UNAVAILABLE_LOG.hit(Instant::now()) {
                tracing::warn!(%peer, file = name, error = %e, count = k, "HTTP: 503, database unavailable");
            }
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable; try again later\n",
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            r
        }
        Err(e) => {
            tracing::error!(%peer, file = name, error = %e, "HTTP: cannot serve");
            not_found()
        }
    }
}

fn not_found() -> Response {
    crate::metrics::HTTP.inc("not_found");
    let mut r = (StatusCode::NOT_FOUND, "File not found\n").into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A bound HTTP server.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cfg: HttpConfig,
    limiter: Limiter,
}

impl HttpServer {
    /// Bind `listen` for `source` with the default limits.
    pub async fn bind<S: FileSource>(
        source: Arc<S>,
        listen: SocketAddr,
    ) -> Result<Self, ServiceError> {
        Self::bind_with(
            source,
            HttpConfig {
                listen,
                ..HttpConfig::default()
            },
        )
        .await
    }

    /// Bind as `cfg` says.
    pub async fn bind_with<S: FileSource>(
        source: Arc<S>,
        cfg: HttpConfig,
    ) -> Result<Self, ServiceError> {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| ServiceError::Bind(cfg.listen, e))?;
        let app = axum::Router::new()
            .route("/{*name}", axum::routing::get(get::<S>))
            .fallback(|| async { not_found() })
            .with_state(source);
        let limiter = Limiter::new(cfg.max_connections, cfg.max_per_address);
        Ok(Self {
            listener,
            app,
            cfg,
            limiter,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServiceError> {
        self.listener.local_addr().map_err(ServiceError::Io)
    }

    /// Connections open now (shared counter, usable after `run` took the server).
    pub fn limiter(&self) -> Limiter {
        self.limiter.clone()
    }

    /// Serve until the task is dropped.
    pub async fn run(self) {
        let accept_log = Throttle::new(Duration::from_secs(5));
        let busy_log = Throttle::new(Duration::from_secs(5));
        let busy_log_evict = Arc::new(Throttle::new(Duration::from_secs(5)));
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.cfg.header_timeout)
            .max_buf_size(64 * 1024);
        let h1 = Arc::new(h1);
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    if let Some(k) = accept_log.hit(Instant::now()) {
                        tracing::warn!(error = %e, count = k, "HTTP: accepting a connection failed{}", crate::limits::fd_hint(&e));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            // A connection that has sent nothing yet may be closed to make room for a
            // client of a lighter address when every slot is taken.
            let slot = match self.limiter.admit_fair(peer.ip()) {
                Ok(s) => s,
                Err(busy) => {
                    if let Some(k) = busy_log.hit(Instant::now()) {
                        tracing::warn!(%peer, count = k, limit = %busy, "HTTP: connection refused, server busy");
                    }
                    tokio::spawn(async move {
                        let mut tcp = tcp;
                        let msg = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\nContent-Length: 12\r\nConnection: close\r\n\r\nServer busy\n";
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            let _ = tcp.write_all(msg).await;
                            let _ = tcp.shutdown().await;
                        })
                        .await;
                    });
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let svc = hyper_util::service::TowerToHyperService::new(
                self.app
                    .clone()
                    .layer(axum::Extension(ConnectInfo(peer)))
                    .into_service(),
            );
            let (h1, write_stall, header_timeout) =
                (h1.clone(), self.cfg.write_stall, self.cfg.header_timeout);
            let evict_log = busy_log_evict.clone();
            tokio::spawn(async move {
                // The first byte, peeked (readiness alone may be spurious).
                let mut first = [0u8; 1];
                let spoke = tokio::select! {
                    r = tokio::time::timeout(header_timeout, tcp.peek(&mut first)) => matches!(r, Ok(Ok(1..))),
                    () = slot.evicted() => {
                        if let Some(k) = evict_log.hit(Instant::now()) {
                            tracing::warn!(%peer, count = k, "HTTP: silent connection closed to make room for a client of another address (all connections in use)");
                        }
                        false
                    }
                };
                if !spoke || !slot.keep() {
                    return;
                }
                let io = hyper_util::rt::TokioIo::new(WriteStall::new(tcp, write_stall));
                if let Err(e) = h1.serve_connection(io, svc).await {
                    tracing::debug!(%peer, error = %e, "HTTP: connection ended");
                }
            });
        }
    }
}
