//! A phone booting: trust list, then configuration, over TFTP or HTTP, as `003_*` of the
//! seeds shows it (`ITLSEP<MAC>.tlv`, then `SEP<MAC>.cnf.xml.sgn`, CAPF when the
//! `certHash` of a partial config is not its own, then `SEP<MAC>.cnf.xml.enc.sgn`).

use std::net::SocketAddr;
use std::time::Duration;

use openssl::x509::X509;
use phonetrust_proto::capf_phone::PhoneResult;
use phonetrust_proto::cert::{md5_hex, sha1};
use phonetrust_proto::devconfig::facts;
use phonetrust_proto::enccnf;
use phonetrust_proto::sgn::SignedFile;
use phonetrust_proto::tftp::{ClientOptions, ClientStep, ReadTransfer};
use phonetrust_proto::trustlist::{self, Role, TrustList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::{CapfConnector, KeySource, SimPhone};

/// Biggest file a phone downloads.
const MAX_FILE: usize = 16 * 1024 * 1024;

/// How the phone downloads.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    /// TFTP to this server (port 69 on real networks), with these options.
    Tftp(SocketAddr, ClientOptions),
    /// HTTP to this server (port 6970).
    Http(SocketAddr),
}

impl Transport {
    fn tag(&self) -> &'static str {
        match self {
            Transport::Tftp(..) => "TFTP",
            Transport::Http(_) => "HTTP",
        }
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        match self {
            Transport::Tftp(a, _) | Transport::Http(a) => *a,
        }
    }
}

/// Why a download did not give a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetch {
    /// The server has no such file.
    NotFound,
    /// Anything else (unreachable, timed out, protocol error).
    Failed(String),
}

/// Download `name`.
pub async fn fetch(via: Transport, name: &str) -> Result<Vec<u8>, Fetch> {
    match via {
        Transport::Tftp(addr, opts) => tftp_get(addr, name, opts).await,
        Transport::Http(addr) => http_get(addr, name).await,
    }
}

/// A TFTP read: RRQ to `server`, then the transfer with whatever port answers.
pub async fn tftp_get(
    server: SocketAddr,
    name: &str,
    opts: ClientOptions,
) -> Result<Vec<u8>, Fetch> {
    let any: std::net::IpAddr = if server.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    tftp_get_from(any, server, name, opts).await
}

/// [`tftp_get`] from the local address `local` (a phone with its own address, in tests
/// on 127.0.0.x).
pub async fn tftp_get_from(
    local: std::net::IpAddr,
    server: SocketAddr,
    name: &str,
    opts: ClientOptions,
) -> Result<Vec<u8>, Fetch> {
    let bind = SocketAddr::new(local, 0);
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| Fetch::Failed(e.to_string()))?;
    let (mut t, rrq) = ReadTransfer::new(name, opts);
    sock.send_to(&rrq, server)
        .await
        .map_err(|e| Fetch::Failed(e.to_string()))?;
    let mut peer: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    let mut timeouts = 0;
    loop {
        let got = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await;
        let (n, from) = match got {
            Err(_) => {
                timeouts += 1;
                if timeouts > 5 {
                    return Err(Fetch::Failed(format!("TFTP: no answer for {name}")));
                }
                let again = t.on_timeout();
                let _ = sock.send_to(&again, peer.unwrap_or(server)).await;
                continue;
            }
            Ok(r) => r.map_err(|e| Fetch::Failed(e.to_string()))?,
        };
        if from.ip() != server.ip() || peer.is_some_and(|p| p != from) {
            continue;
        }
        timeouts = 0;
        peer = Some(from);
        match t.on_packet(buf.get(..n).unwrap_or_default()) {
            ClientStep::Send(b) => {
                let _ = sock.send_to(&b, from).await;
            }
            ClientStep::Wait => {}
            ClientStep::Done(data, ack) => {
                let _ = sock.send_to(&ack, from).await;
                return Ok(data);
            }
            ClientStep::Failed(e) if e.starts_with("TFTP error 1:") => return Err(Fetch::NotFound),
            ClientStep::Failed(e) => return Err(Fetch::Failed(e)),
        }
    }
}

/// An HTTP/1.1 GET of `/name` (`Connection: close`, body by Content-Length).
pub async fn http_get(server: SocketAddr, name: &str) -> Result<Vec<u8>, Fetch> {
    http_get_from(None, server, name).await
}

/// [`http_get`] from the local address `local` (None: any).
pub async fn http_get_from(
    local: Option<std::net::IpAddr>,
    server: SocketAddr,
    name: &str,
) -> Result<Vec<u8>, Fetch> {
    let f = |e: std::io::Error| Fetch::Failed(e.to_string());
    let fut = async {
        let mut s = crate::connect_from(local, server).await.map_err(f)?;
        let req = format!("GET /{name} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(f)?;
        let mut all = Vec::new();
        (&mut s)
            .take(MAX_FILE as u64 + 8192)
            .read_to_end(&mut all)
            .await
            .map_err(f)?;
        let end = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| Fetch::Failed("HTTP: no header end".into()))?;
        let head = String::from_utf8_lossy(all.get(..end).unwrap_or_default()).into_owned();
        let body = all.get(end + 4..).unwrap_or_default();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0);
        if status == 404 {
            return Err(Fetch::NotFound);
        }
        if status != 200 {
            return Err(Fetch::Failed(format!("HTTP status {status}")));
        }
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .ok_or_else(|| Fetch::Failed("HTTP: no Content-Length".into()))?;
        body.get(..len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Fetch::Failed("HTTP: body shorter than Content-Length".into()))
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| Fetch::Failed("HTTP: timed out".into()))?
}

/// What a boot ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootResult {
    /// Configured: the configuration XML in effect, and whether it came encrypted.
    Configured {
        /// The XML.
        xml: Vec<u8>,
        /// It came as `.enc.sgn`.
        encrypted: bool,
    },
    /// The boot stopped (the reason is also the last status message).
    Failed(String),
}

/// Options of a boot.
#[derive(Clone, Copy)]
pub struct BootOptions<'a> {
    /// Where files come from.
    pub via: Transport,
    /// CAPF address to use instead of resolving the config's `processNodeName`.
    pub capf_addr: Option<SocketAddr>,
    /// Keys for CAPF.
    pub keys: &'a dyn KeySource,
    /// TVS address to use instead of the configuration's TVS list.
    pub tvs_addr: Option<SocketAddr>,
}

/// Which trust list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// `ITLFile.tlv`.
    Itl,
    /// `CTLFile.tlv` (mixed mode).
    Ctl,
}

/// The full certificates of a trust list's records with one of `roles` (any role when
/// empty).
fn certs_of(list: &TrustList, roles: &[Role]) -> Vec<X509> {
    list.plain_records()
        .filter(|r| roles.is_empty() || r.role.is_some_and(|x| roles.contains(&x)))
        .filter_map(|r| r.x509())
        .collect()
}

/// Whether `new` (verified by its own signer) is signed by a certificate `old` lists.
fn signer_listed(old: &TrustList, new: &TrustList) -> bool {
    let Some(signer) = new.signer_cert() else {
        return false;
    };
    let der = signer.to_der().unwrap_or_default();
    let digest = sha1(&der);
    old.plain_records().any(|r| {
        r.x509()
            .and_then(|c| c.to_der().ok())
            .is_some_and(|d| d == der)
            || r.cert_hash.as_deref() == Some(digest.as_slice())
    })
}

impl SimPhone {
    /// Record a status message, as the phone shows it under Settings > Status.
    pub fn status(&mut self, s: impl Into<String>) {
        self.status_messages.push(s.into());
    }

    /// Fetch the ITL (per-device copy first, then `ITLFile.tlv`) with the rules of
    /// [`SimPhone::update_list`]; no TVS to ask.
    pub async fn update_itl(&mut self, via: Transport) -> Result<(), String> {
        self.update_list(ListKind::Itl, via, None).await
    }

    /// Fetch a trust list: per-device copy first (`ITLSEP<MAC>.tlv` / `CTLSEP<MAC>.tlv`),
    /// then the cluster's. Trusted on first use; afterwards accepted only when signed by a
    /// certificate the phone's current ITL or CTL lists, or one TVS vouches for (as SAST,
    /// CCM+TFTP or TFTP). A rejected list leaves the current one in place; so does a
    /// server without the file (a phone forgets a CTL only when reset by hand).
    pub async fn update_list(
        &mut self,
        kind: ListKind,
        via: Transport,
        tvs: Option<SocketAddr>,
    ) -> Result<(), String> {
        let dev = self.state.device.clone();
        let (prefix, what) = match kind {
            ListKind::Itl => ("ITL", "ITL"),
            ListKind::Ctl => ("CTL", "CTL"),
        };
        let mut got = None;
        for name in [format!("{prefix}{dev}.tlv"), format!("{prefix}File.tlv")] {
            match fetch(via, &name).await {
                Ok(b) => {
                    self.status(format!("{name}({})", via.tag()));
                    got = Some(b);
                    break;
                }
                Err(Fetch::NotFound) => self.status(format!("File not found : {name}")),
                Err(Fetch::Failed(e)) => {
                    self.status(format!("Trust List Update Failed: {e}"));
                    return Err(e);
                }
            }
        }
        let current = match kind {
            ListKind::Itl => self.itl.clone(),
            ListKind::Ctl => self.ctl.clone(),
        };
        let Some(bytes) = got else {
            return match (kind, current) {
                (ListKind::Ctl, _) | (ListKind::Itl, Some(_)) => Ok(()),
                (ListKind::Itl, None) => Err("no trust list on the server".into()),
            };
        };
        let new = match trustlist::parse(&bytes) {
            Ok(t) => t,
            Err(e) => {
                self.status("Trust List Update Failed");
                return Err(format!("{what} does not parse: {e}"));
            }
        };
        if let Err(e) = new.verify(&bytes) {
            self.status("Trust List Update Failed");
            return Err(format!("{what} signature: {e}"));
        }
        if let Some(old) = current.as_ref().and_then(|b| trustlist::parse(b).ok()) {
            if current.as_deref() == Some(bytes.as_slice()) {
                return Ok(());
            }
            // The phone's trust store is its ITL and CTL together: a signer either lists
            // (e.g. ITLRecovery, listed by the ITL, signing a CTL) is known.
            let other = match kind {
                ListKind::Itl => self.ctl.as_ref(),
                ListKind::Ctl => self.itl.as_ref(),
            }
            .and_then(|b| trustlist::parse(b).ok());
            let known =
                signer_listed(&old, &new) || other.as_ref().is_some_and(|o| signer_listed(o, &new));
            if !known {
                self.vouch(&new, what, tvs).await?;
            }
        }
        match kind {
            ListKind::Itl => self.itl = Some(bytes),
            ListKind::Ctl => self.ctl = Some(bytes),
        }
        self.status("Trust List Updated");
        Ok(())
    }

    /// The signer of `new` is not in the current list: ask TVS (the servers of the
    /// phone's configuration, over TLS trusting the TVS records of its ITL).
    async fn vouch(
        &mut self,
        new: &TrustList,
        what: &str,
        tvs: Option<SocketAddr>,
    ) -> Result<(), String> {
        let refuse = |why: String| format!("the new {what} is signed by a certificate {why}");
        let Some(signer) = new.signer_cert() else {
            self.status("Trust List Update Failed");
            return Err(refuse("that is not in its own records".into()));
        };
        if !self.supports_tvs {
            self.status("Trust List Update Failed");
            return Err(refuse(format!(
                "the current {what} does not list (this model cannot ask TVS; delete the {what} on the phone by hand)"
            )));
        }
        let tvs_certs = self
            .itl_parsed()
            .map(|itl| certs_of(&itl, &[Role::Tvs]))
            .unwrap_or_default();
        let addrs: Vec<SocketAddr> = match tvs {
            Some(a) => vec![a],
            None => {
                let mut v = Vec::new();
                for (host, port) in self.tvs_servers.clone() {
                    if let Ok(mut it) = tokio::net::lookup_host((host.as_str(), port)).await {
                        v.extend(it.next());
                    }
                }
                v
            }
        };
        if tvs_certs.is_empty() || addrs.is_empty() {
            self.status("Trust List Update Failed: no TVS server to verify the signer");
            return Err(refuse(format!(
                "the current {what} does not list, and no TVS server is known"
            )));
        }
        let der = signer.to_der().map_err(|e| e.to_string())?;
        let conn = crate::CapfConnector::trusting(&tvs_certs, crate::PhoneTls::Modern)?;
        let name = format!("CP-{}-{}", self.model, self.state.device);
        let mut last = String::new();
        for addr in addrs {
            let answer = match crate::tvs::TvsConnection::connect(addr, &conn, &name).await {
                Ok(mut c) => c.verify(&der).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(a)
                    if a.trusted
                        && a.roles
                            .iter()
                            .any(|r| matches!(r, Role::Sast | Role::CcmTftp | Role::Tftp)) =>
                {
                    self.status(format!("TVS: signer of the new {what} verified"));
                    return Ok(());
                }
                Ok(_) => {
                    self.status("Trust List Update Failed");
                    return Err(refuse(
                        "neither the current list nor TVS trusts".to_string(),
                    ));
                }
                Err(e) => last = e,
            }
        }
        self.status(format!(
            "Trust List Update Failed: TVS unreachable; keeping the current {what}"
        ));
        Err(refuse(format!(
            "the current {what} does not list, and TVS could not be asked ({last})"
        )))
    }

    fn itl_parsed(&self) -> Option<TrustList> {
        self.itl.as_ref().and_then(|b| trustlist::parse(b).ok())
    }

    /// Verify a signed file against the ITL's TFTP signers.
    fn verify_signed(&self, file: &[u8]) -> Result<Vec<u8>, String> {
        let itl = self
            .itl_parsed()
            .ok_or("no ITL to verify the signature with")?;
        let sf = SignedFile::parse(file).map_err(|e| e.to_string())?;
        for c in itl.file_signers() {
            if sf.verify_with_cert(&c).is_ok() {
                return Ok(sf.body().to_vec());
            }
        }
        Err("signed by a certificate the ITL does not list as TFTP".into())
    }

    /// Boot: trust list, then configuration (with CAPF and decryption when the profile
    /// encrypts the config).
    pub async fn boot(&mut self, o: BootOptions<'_>) -> BootResult {
        match self.boot_inner(o).await {
            Ok(r) => r,
            Err(e) => BootResult::Failed(e),
        }
    }

    /// Boot from the first server of `servers` that answers, as a phone walks the TFTP
    /// servers DHCP option 150 gave it: a server that does not answer its first request
    /// (down, unreachable, timed out) is passed over with a status line, and so is one
    /// that stops answering during the boot. A server that answers (a file, or "File not
    /// found") is the one the phone boots from. Returns the result and the index of the
    /// server that answered last.
    pub async fn boot_from(
        &mut self,
        servers: &[Transport],
        o: BootOptions<'_>,
    ) -> (BootResult, Option<usize>) {
        let mut last = (BootResult::Failed("no TFTP server given".into()), None);
        for (i, via) in servers.iter().enumerate() {
            let more = i + 1 < servers.len();
            // The phone's first request, as in a boot (the CTL, then the ITL).
            if let Err(Fetch::Failed(e)) = fetch(*via, "CTLFile.tlv").await {
                self.status(format!(
                    "{} Timeout : CTLFile.tlv ({} {e}){}",
                    via.tag(),
                    via.server(),
                    if more { "; trying the next server" } else { "" }
                ));
                last = (
                    BootResult::Failed(format!("{} did not answer: {e}", via.server())),
                    None,
                );
                continue;
            }
            let r = self
                .boot(BootOptions {
                    via: *via,
                    capf_addr: o.capf_addr,
                    keys: o.keys,
                    tvs_addr: o.tvs_addr,
                })
                .await;
            if matches!(r, BootResult::Failed(_))
                && more
                && matches!(fetch(*via, "CTLFile.tlv").await, Err(Fetch::Failed(_)))
            {
                self.status(format!(
                    "{} server {} stopped answering; trying the next server",
                    via.tag(),
                    via.server()
                ));
                last = (r, Some(i));
                continue;
            }
            return (r, Some(i));
        }
        last
    }

    async fn boot_inner(&mut self, o: BootOptions<'_>) -> Result<BootResult, String> {
        self.update_list(ListKind::Ctl, o.via, o.tvs_addr).await?;
        self.update_list(ListKind::Itl, o.via, o.tvs_addr).await?;
        let dev = self.state.device.clone();
        let sgn = format!("{dev}.cnf.xml.sgn");
        for round in 0..2 {
            let body = match fetch(o.via, &sgn).await {
                Ok(b) => {
                    self.status(format!("{sgn}({})", o.via.tag()));
                    match self.verify_signed(&b) {
                        Ok(body) => body,
                        Err(e) => {
                            self.status(format!("Config file verification failed: {sgn}"));
                            return Err(e);
                        }
                    }
                }
                Err(Fetch::NotFound) => {
                    self.status(format!("File not found : {sgn}"));
                    let plain = format!("{dev}.cnf.xml");
                    return match fetch(o.via, &plain).await {
                        Ok(b) => {
                            self.status(format!("{plain}({})", o.via.tag()));
                            Ok(BootResult::Configured {
                                xml: b,
                                encrypted: false,
                            })
                        }
                        Err(_) => {
                            self.status(format!("File not found : {plain}"));
                            Err(format!("no configuration for {dev}"))
                        }
                    };
                }
                Err(Fetch::Failed(e)) => {
                    self.status(format!("Config download failed: {sgn}"));
                    return Err(e);
                }
            };
            let f = facts(&body).map_err(|e| e.to_string())?;
            if !f.tvs.is_empty() {
                self.tvs_servers = f.tvs.clone();
            }
            self.capf_auth_mode = f.capf_auth_mode;
            if f.capf.is_some() {
                self.capf_server = f.capf.clone();
            }
            if !f.encr_config {
                return Ok(BootResult::Configured {
                    xml: body,
                    encrypted: false,
                });
            }
            let mine = self
                .state
                .lsc
                .as_ref()
                .or(self.state.mic.as_ref())
                .map(|c| md5_hex(&c.cert.to_der().unwrap_or_default()))
                .unwrap_or_default();
            if !f.cert_hash.is_empty() && f.cert_hash == mine {
                return self.fetch_encrypted(o.via).await;
            }
            if round == 1 {
                return Err("certHash still differs after CAPF".into());
            }
            // The server does not know this phone's key: CAPF first.
            let itl = self.itl_parsed().ok_or("no ITL")?;
            let Some(capf_cert) = certs_of(&itl, &[Role::Capf]).into_iter().next() else {
                self.status("No valid CAPF server");
                return Err("No valid CAPF server: the ITL has no CAPF record".into());
            };
            let (host, port) = f.capf.clone().ok_or("the config names no CAPF server")?;
            let addr = match o.capf_addr {
                Some(a) => a,
                None => tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        self.status("LSC: Connection failed");
                        format!("cannot resolve CAPF server {host}")
                    })?,
            };
            let conn = CapfConnector::new(&capf_cert)?;
            let auth = self.configured_auth()?;
            match self.capf_via(addr, &conn, auth, o.keys).await {
                PhoneResult::Installed | PhoneResult::Fetched | PhoneResult::NothingToDo => {}
                other => return Err(format!("CAPF: {}", other.status_message())),
            }
        }
        Err("configuration loop".into())
    }

    async fn fetch_encrypted(&mut self, via: Transport) -> Result<BootResult, String> {
        let name = format!("{}.cnf.xml.enc.sgn", self.state.device);
        let b = match fetch(via, &name).await {
            Ok(b) => b,
            Err(Fetch::NotFound) => {
                self.status(format!("File not found : {name}"));
                return Err(format!("no {name}"));
            }
            Err(Fetch::Failed(e)) => return Err(e),
        };
        self.status(format!("{name}({})", via.tag()));
        let itl = self.itl_parsed().ok_or("no ITL")?;
        let ok = itl
            .file_signers()
            .iter()
            .any(|c| enccnf::verify(&b, c).is_ok());
        if !ok {
            self.status(format!("Config file verification failed: {name}"));
            return Err("encrypted config signed by a certificate the ITL does not list".into());
        }
        let key = self
            .state
            .lsc
            .as_ref()
            .or(self.state.mic.as_ref())
            .map(|c| c.key.clone())
            .ok_or("no key to decrypt with")?;
        match enccnf::decrypt(&b, &key) {
            Ok(xml) => Ok(BootResult::Configured {
                xml,
                encrypted: true,
            }),
            Err(e) => {
                self.status(format!("Decryption failed: {name}"));
                Err(e.to_string())
            }
        }
    }
}
