//! Notification targets: a webhook (a JSON document POSTed over HTTP or HTTPS) and e-mail
//! over SMTP with STARTTLS (`lettre`; TLS through OpenSSL). Every send has a deadline; a
//! failure names the target and the cause. What is sent is decided elsewhere
//! ([`phonetrust_rules::monitor`]).

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

/// Biggest answer read from a webhook.
const MAX_ANSWER: usize = 64 * 1024;

/// Why a notice did not reach its target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The target's address or settings are wrong.
    #[error("{0}")]
    Config(String),
    /// Connecting, TLS or the exchange failed.
    #[error("{target}: {cause}")]
    Send {
        /// The target.
        target: String,
        /// What failed.
        cause: String,
    },
    /// No answer within the deadline.
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
}

/// A webhook: POST of a JSON body.
#[derive(Clone, Debug)]
pub struct Webhook {
    /// `http://` or `https://` URL.
    pub url: String,
    /// CA certificates (PEM) to verify an HTTPS server with; the system's when absent.
    pub ca_file: Option<PathBuf>,
}

/// E-mail over SMTP.
#[derive(Clone, Debug)]
pub struct Smtp {
    /// Server host (name or address).
    pub host: String,
    /// Port (587 for submission with STARTTLS).
    pub port: u16,
    /// The name the server's certificate must carry (default: `host`).
    pub tls_name: Option<String>,
    /// CA certificates (PEM) to verify the server with; the system's when absent.
    pub ca_file: Option<PathBuf>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// User and password for AUTH, if the server asks for them.
    pub credentials: Option<(String, String)>,
}

/// The targets a node notifies, with the deadline of each send.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    /// The webhook, if configured.
    pub webhook: Option<Webhook>,
    /// E-mail, if configured.
    pub smtp: Option<Smtp>,
    /// Deadline of one send (default 20 s).
    pub timeout: Option<Duration>,
}

impl Notifier {
    fn deadline(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(20))
    }

    /// The names of the configured targets (`webhook`, `smtp`).
    pub fn targets(&self) -> Vec<&'static str> {
        let mut t = Vec::new();
        if self.webhook.is_some() {
            t.push("webhook");
        }
        if self.smtp.is_some() {
            t.push("smtp");
        }
        t
    }

    /// POST `json` to the webhook.
    pub async fn post(&self, json: &str) -> Result<(), NotifyError> {
        let Some(w) = &self.webhook else {
            return Err(NotifyError::Config("no webhook is configured".into()));
        };
        let d = self.deadline();
        tokio::time::timeout(d, post(w, json))
            .await
            .map_err(|_| NotifyError::Timeout(format!("webhook {}", w.url), d))?
    }

    /// Mail `subject` and `text` to the recipients.
    pub async fn mail(&self, subject: &str, text: &str) -> Result<(), NotifyError> {
        let Some(s) = &self.smtp else {
            return Err(NotifyError::Config("no SMTP server is configured".into()));
        };
        let d = self.deadline();
        tokio::time::timeout(d, mail(s, subject, text, d))
            .await
            .map_err(|_| NotifyError::Timeout(format!("SMTP {}:{}", s.host, s.port), d))?
    }
}

async fn post(w: &Webhook, json: &str) -> Result<(), NotifyError> {
    let target = format!("webhook {}", w.url);
    let err = |cause: String| NotifyError::Send {
        target: target.clone(),
        cause,
    };
    let uri: hyper::Uri = w
        .url
        .parse()
        .map_err(|e| NotifyError::Config(format!("webhook URL {}: {e}", w.url)))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(NotifyError::Config(format!(
                "webhook URL {}: use http:// or https://",
                w.url
            )));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| NotifyError::Config(format!("webhook URL {}: no host", w.url)))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| err(format!("cannot connect: {e}")))?;
    let req = hyper::Request::post(path)
        .header(
            hyper::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(&host),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("phonetrust/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(json.to_string())))
        .map_err(|e| err(e.to_string()))?;
    let status = if tls {
        let mut b =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| err(e.to_string()))?;
        load_roots(&mut b, w.ca_file.as_deref()).map_err(err)?;
        b.set_verify(SslVerifyMode::PEER);
        let cfg = b.build().configure().map_err(|e| err(e.to_string()))?;
        let ssl = cfg.into_ssl(&host).map_err(|e| err(e.to_string()))?;
        let mut s = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| err(e.to_string()))?;
        std::pin::Pin::new(&mut s)
            .connect()
            .await
            .map_err(|e| err(format!("TLS: {e}")))?;
        exchange(TokioIo::new(s), req).await.map_err(err)?
    } else {
        exchange(TokioIo::new(tcp), req).await.map_err(err)?
    };
    if !status.is_success() {
        return Err(err(format!("answered {status}")));
    }
    Ok(())
}

/// Send `req` on `io` (HTTP/1.1) and read the answer (at most [`MAX_ANSWER`] bytes).
async fn exchange<I>(io: I, req: hyper::Request<Full<Bytes>>) -> Result<hyper::StatusCode, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = tx.send_request(req).await.map_err(|e| e.to_string());
    let out = match resp {
        Ok(r) => {
            let status = r.status();
            let mut body = r.into_body();
            let mut read = 0usize;
            while let Some(frame) = body.frame().await {
                let f = frame.map_err(|e| e.to_string())?;
                if let Some(d) = f.data_ref() {
                    read += d.len();
                    if read > MAX_ANSWER {
                        break;
                    }
                }
            }
            Ok(status)
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}

/// The system's CA certificates, or `ca_file`'s.
fn load_roots(
    b: &mut openssl::ssl::SslConnectorBuilder,
    ca_file: Option<&std::path::Path>,
) -> Result<(), String> {
    if let Some(f) = ca_file {
        return b
            .set_ca_file(f)
            .map_err(|e| format!("CA file {}: {e}", f.display()));
    }
    for f in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if std::path::Path::new(f).exists() {
            return b.set_ca_file(f).map_err(|e| format!("CA file {f}: {e}"));
        }
    }
    b.set_default_verify_paths().map_err(|e| e.to_string())
}

async fn mail(s: &Smtp, subject: &str, text: &str, deadline: Duration) -> Result<(), NotifyError> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let target = format!("SMTP {}:{}", s.host, s.port);
    let err = |cause: String| NotifyError::Send {
        target: target.clone(),
        cause,
    };
    let conf = |what: &str, e: &dyn std::fmt::Display| {
        NotifyError::Config(format!("{target}: {what}: {e}"))
    };
    let mut m = Message::builder()
        .from(s.from.parse().map_err(|e| conf("sender address", &e))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &s.to {
        m = m.to(to.parse().map_err(|e| conf("recipient address", &e))?);
    }
    let msg = m.body(text.to_string()).map_err(|e| conf("message", &e))?;
    let mut tls = TlsParameters::builder(s.tls_name.clone().unwrap_or_else(|| s.host.clone()));
    if let Some(f) = &s.ca_file {
        let pem = std::fs::read(f).map_err(|e| conf(&format!("CA file {}", f.display()), &e))?;
        tls = tls.add_root_certificate(
            Certificate::from_pem(&pem)
                .map_err(|e| conf(&format!("CA file {}", f.display()), &e))?,
        );
    }
    let tls = tls.build().map_err(|e| conf("TLS", &e))?;
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
        .port(s.port)
        .tls(Tls::Required(tls))
        .timeout(Some(deadline));
    if let Some((u, p)) = &s.credentials {
        t = t.credentials(Credentials::new(u.clone(), p.clone()));
    }
    t.build()
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| err(e.to_string()))
}
