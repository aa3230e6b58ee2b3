//! The phone's TVS client: a TLS connection to a TVS server the phone's trust list lists
//! (role TVS), then VERIFY_REQUEST `{DEVICE_NAME, CERTIFICATE}` per certificate and the
//! VERIFY_RESPONSE read back, one message per write, every read with a deadline.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use openssl::ssl::Ssl;
use phonetrust_proto::trustlist::Role;
use phonetrust_proto::tvs::{self, HEADER_LEN, Header, Message, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::CapfConnector;

/// Largest answer read from a server.
const MAX_ANSWER: usize = 4096;
const DEADLINE: Duration = Duration::from_secs(10);

/// What TVS said about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// STATUS = 0.
    pub trusted: bool,
    /// ROLES.
    pub roles: Vec<Role>,
    /// TTL (seconds the phone may cache the answer).
    pub ttl: Option<u32>,
}

/// One TLS connection to a TVS server; several requests may follow each other on it.
pub struct TvsConnection {
    tls: SslStream<TcpStream>,
    device: String,
    next_session: u32,
}

impl std::fmt::Debug for TvsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TvsConnection")
            .field("device", &self.device)
            .finish()
    }
}

impl TvsConnection {
    /// Connect to `addr` as `device` (`CP-<model>-SEP<MAC>`), trusting what `conn`
    /// trusts (the TVS certificates of the phone's trust list).
    pub async fn connect(
        addr: SocketAddr,
        conn: &CapfConnector,
        device: &str,
    ) -> Result<Self, String> {
        Self::connect_from(None, addr, conn, device).await
    }

    /// [`TvsConnection::connect`] from the local address `local` (None: any).
    pub async fn connect_from(
        local: Option<std::net::IpAddr>,
        addr: SocketAddr,
        conn: &CapfConnector,
        device: &str,
    ) -> Result<Self, String> {
        let tcp = tokio::time::timeout(DEADLINE, crate::connect_from(local, addr))
            .await
            .map_err(|_| format!("TVS {addr}: connect timed out"))?
            .map_err(|e| format!("TVS {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let ssl = Ssl::new(&conn.0).map_err(|e| e.to_string())?;
        let mut tls = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
        tokio::time::timeout(DEADLINE, Pin::new(&mut tls).connect())
            .await
            .map_err(|_| format!("TVS {addr}: TLS handshake timed out"))?
            .map_err(|e| format!("TVS {addr}: TLS handshake failed ({e})"))?;
        Ok(Self {
            tls,
            device: device.to_string(),
            next_session: 1,
        })
    }

    /// Ask about the certificate `der`.
    pub async fn verify(&mut self, der: &[u8]) -> Result<Answer, String> {
        let sid = self.next_session;
        self.next_session = self.next_session.wrapping_add(1);
        let req = Message::verify_request(sid, &self.device, der)
            .encode()
            .map_err(|e| e.to_string())?;
        let io = async {
            self.tls.write_all(&req).await?;
            self.tls.flush().await?;
            let mut head = [0u8; HEADER_LEN];
            self.tls.read_exact(&mut head).await?;
            Ok::<_, std::io::Error>(head)
        };
        let head = tokio::time::timeout(DEADLINE, io)
            .await
            .map_err(|_| "TVS: no answer".to_string())?
            .map_err(|e| format!("TVS: {e}"))?;
        let h = Header::peek(&head)
            .map_err(|e| e.to_string())?
            .ok_or("TVS: short header")?;
        if h.message_len() > MAX_ANSWER {
            return Err(format!("TVS: answer of {} bytes", h.message_len()));
        }
        let mut msg = head.to_vec();
        msg.resize(h.message_len(), 0);
        tokio::time::timeout(
            DEADLINE,
            self.tls
                .read_exact(msg.get_mut(HEADER_LEN..).unwrap_or_default()),
        )
        .await
        .map_err(|_| "TVS: answer cut short".to_string())?
        .map_err(|e| format!("TVS: {e}"))?;
        let m = Message::decode(&msg).map_err(|e| format!("TVS: {e}"))?;
        if m.session_id != sid || m.command != tvs::Command::VerifyResponse {
            return Err("TVS: answer does not match the request".into());
        }
        Ok(Answer {
            trusted: m.status() == Some(Status::Valid),
            roles: m.roles(),
            ttl: m.ttl(),
        })
    }
}
