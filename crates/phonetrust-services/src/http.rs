//! The HTTP server phones download from (port 6970 by default): `GET /<name>` for the
//! same namespace as TFTP, with `Content-Length` and `Cache-Control: no-store` as the
//! seeds show; anything not served is a 404 "File not found".

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ServiceError;
use crate::provision::NotServed;
use crate::tftp::FileSource;

async fn get<S: FileSource>(
    State(source): State<Arc<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    match source.open(&name, peer).await {
        Ok(bytes) => {
            tracing::debug!(%peer, file = name, bytes = bytes.len(), "HTTP GET");
            let len = bytes.len();
            let mut r =
                axum::body::Body::from(axum::body::Bytes::from_owner(bytes)).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("*/*"));
            r
        }
        Err(NotServed::NotFound(why)) => {
            tracing::info!(%peer, file = name, reason = why, "HTTP: File not found");
            not_found()
        }
        Err(e) => {
            tracing::error!(%peer, file = name, error = %e, "HTTP: cannot serve");
            not_found()
        }
    }
}

fn not_found() -> Response {
    let mut r = (StatusCode::NOT_FOUND, "File not found\n").into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A bound HTTP server.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
    app: axum::Router,
}

impl HttpServer {
    /// Bind `listen` for `source`.
    pub async fn bind<S: FileSource>(
        source: Arc<S>,
        listen: SocketAddr,
    ) -> Result<Self, ServiceError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServiceError::Bind(listen, e))?;
        let app = axum::Router::new()
            .route("/{*name}", axum::routing::get(get::<S>))
            .fallback(|| async { not_found() })
            .with_state(source);
        Ok(Self { listener, app })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServiceError> {
        self.listener.local_addr().map_err(ServiceError::Io)
    }

    /// Serve until the task is dropped.
    pub async fn run(self) {
        if let Err(e) = axum::serve(
            self.listener,
            self.app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }
}
