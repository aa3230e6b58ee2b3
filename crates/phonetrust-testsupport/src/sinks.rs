//! Notification receivers for tests, each on its own reserved loopback port, in threads
//! of the test process, stopped when dropped:
//!
//! - [`SmtpSink`]: an SMTP server that offers STARTTLS (a throw-away CA and a server
//!   certificate for `localhost` / 127.0.0.1), takes AUTH PLAIN/LOGIN, and keeps every
//!   message with whether it came over TLS;
//! - [`WebhookSink`]: an HTTP server that keeps every POST (path, content type, body).
//!
//! Bounded: a line longer than 8 KiB, a message over 1 MiB or an idle client of 10 s ends
//! the connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

use crate::ports::{Port, reserve};

const MAX_LINE: usize = 8 * 1024;
const MAX_MESSAGE: usize = 1 << 20;

/// One message the SMTP sink received.
#[derive(Clone, Debug)]
pub struct Mail {
    /// MAIL FROM.
    pub from: String,
    /// RCPT TO, in order.
    pub to: Vec<String>,
    /// The message (headers and body), dot-unstuffed.
    pub data: String,
    /// Whether the session was in TLS (after STARTTLS) when the message was sent.
    pub tls: bool,
    /// The user name of AUTH, if any.
    pub user: Option<String>,
}

/// A throw-away CA and a certificate for `localhost` and 127.0.0.1 it signed.
fn tls_material() -> (X509, X509, PKey<Private>) {
    let name = |cn: &str| {
        let mut n = X509NameBuilder::new().expect("name");
        n.append_entry_by_text("CN", cn).expect("cn");
        n.build()
    };
    let key = || PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa")).expect("key");
    let ca_key = key();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    b.set_subject_name(&name("phonetrust test sink CA"))
        .expect("subject");
    b.set_issuer_name(&name("phonetrust test sink CA"))
        .expect("issuer");
    b.set_pubkey(&ca_key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("t"))
        .expect("na");
    b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
        .expect("ext");
    b.sign(&ca_key, MessageDigest::sha256()).expect("sign");
    let ca = b.build();
    let srv_key = key();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    let mut serial = openssl::bn::BigNum::new().expect("bn");
    serial
        .rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)
        .expect("rand");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name("localhost")).expect("subject");
    b.set_issuer_name(ca.subject_name()).expect("issuer");
    b.set_pubkey(&srv_key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("t"))
        .expect("na");
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(Some(&ca), None))
        .expect("san");
    b.append_extension(san).expect("ext");
    b.sign(&ca_key, MessageDigest::sha256()).expect("sign");
    (ca, b.build(), srv_key)
}

/// Accept connections until `stop`, each in its own thread.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                    let h = handle.clone();
                    std::thread::spawn(move || h(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
}

/// A line ending in CRLF (or LF), without it; None at the end, on a timeout or when too
/// long.
fn read_line(r: &mut impl BufRead) -> Option<String> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .ok()?;
    if n == 0 || !buf.ends_with(b"\n") {
        return None;
    }
    buf.pop();
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The SMTP sink.
pub struct SmtpSink {
    port: Port,
    ca_pem: Vec<u8>,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
}

impl SmtpSink {
    /// Start it on 127.0.0.1.
    pub fn start() -> Self {
        let port = reserve();
        let listener = TcpListener::bind(("127.0.0.1", port.get())).expect("binding the SMTP sink");
        let (ca, cert, key) = tls_material();
        let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        acc.set_certificate(&cert).expect("cert");
        acc.set_private_key(&key).expect("key");
        let acceptor = Arc::new(acc.build());
        let mails = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let m = mails.clone();
        accept_loop(listener, stop.clone(), move |s| {
            session(s, &acceptor, &m);
        });
        Self {
            port,
            ca_pem: ca.to_pem().expect("pem"),
            mails,
            stop,
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port.get()
    }

    /// The CA certificate (PEM) that signed its TLS certificate (for `localhost`).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// The messages received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A stream before or after STARTTLS.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn session(s: TcpStream, acceptor: &SslAcceptor, mails: &Mutex<Vec<Mail>>) {
    let mut conn: Box<dyn Stream> = Box::new(s.try_clone().expect("clone"));
    let mut tls = false;
    let mut plain = Some(s);
    let mut user = None;
    let (mut from, mut to) = (String::new(), Vec::new());
    let send =
        |c: &mut Box<dyn Stream>, line: &str| c.write_all(format!("{line}\r\n").as_bytes()).is_ok();
    if !send(&mut conn, "220 localhost phonetrust test sink ESMTP") {
        return;
    }
    loop {
        // One byte at a time through a small reader: the stream may switch to TLS.
        let Some(line) = read_line(&mut BufReader::with_capacity(1, &mut conn)) else {
            return;
        };
        let upper = line.to_ascii_uppercase();
        let ok = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let mut r = vec!["250-localhost"];
            if !tls {
                r.push("250-STARTTLS");
            }
            r.push("250-AUTH PLAIN LOGIN");
            r.push("250 8BITMIME");
            send(&mut conn, &r.join("\r\n"))
        } else if upper == "STARTTLS" && !tls {
            if !send(&mut conn, "220 ready to start TLS") {
                return;
            }
            drop(conn);
            let Some(s) = plain.take() else { return };
            match acceptor.accept(s) {
                Ok(t) => conn = Box::new(t),
                Err(_) => return,
            }
            tls = true;
            true
        } else if let Some(rest) = upper.strip_prefix("AUTH PLAIN") {
            let arg = line
                .get(line.len() - rest.len()..)
                .unwrap_or("")
                .trim()
                .to_string();
            let arg = if arg.is_empty() {
                if !send(&mut conn, "334 ") {
                    return;
                }
                read_line(&mut BufReader::with_capacity(1, &mut conn)).unwrap_or_default()
            } else {
                arg
            };
            let dec = openssl::base64::decode_block(&arg).unwrap_or_default();
            let parts: Vec<&[u8]> = dec.split(|b| *b == 0).collect();
            user = parts
                .get(1)
                .map(|u| String::from_utf8_lossy(u).into_owned());
            send(&mut conn, "235 2.7.0 accepted")
        } else if upper.starts_with("AUTH LOGIN") {
            let _ = send(&mut conn, "334 VXNlcm5hbWU6");
            let u = read_line(&mut BufReader::with_capacity(1, &mut conn)).unwrap_or_default();
            user = openssl::base64::decode_block(&u)
                .ok()
                .map(|u| String::from_utf8_lossy(&u).into_owned());
            let _ = send(&mut conn, "334 UGFzc3dvcmQ6");
            let _ = read_line(&mut BufReader::with_capacity(1, &mut conn));
            send(&mut conn, "235 2.7.0 accepted")
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..]
                .trim()
                .trim_matches(['<', '>'])
                .split(' ')
                .next()
                .unwrap_or("")
                .trim_matches(['<', '>'])
                .to_string();
            to.clear();
            send(&mut conn, "250 2.1.0 ok")
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
            send(&mut conn, "250 2.1.5 ok")
        } else if upper == "DATA" {
            if !send(&mut conn, "354 end with <CRLF>.<CRLF>") {
                return;
            }
            let mut data = String::new();
            loop {
                let Some(l) = read_line(&mut BufReader::with_capacity(1, &mut conn)) else {
                    return;
                };
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push('\n');
                if data.len() > MAX_MESSAGE {
                    return;
                }
            }
            mails.lock().unwrap_or_else(|p| p.into_inner()).push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
                tls,
                user: user.clone(),
            });
            send(&mut conn, "250 2.0.0 queued")
        } else if upper == "QUIT" {
            let _ = send(&mut conn, "221 2.0.0 bye");
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            send(&mut conn, "250 2.0.0 ok")
        } else {
            send(&mut conn, "502 5.5.2 not implemented")
        };
        if !ok {
            return;
        }
    }
}

/// One POST the webhook sink received.
#[derive(Clone, Debug)]
pub struct Post {
    /// The request path.
    pub path: String,
    /// Its Content-Type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The webhook sink: answers every request 200 and keeps each POST.
pub struct WebhookSink {
    port: Port,
    posts: Arc<Mutex<Vec<Post>>>,
    stop: Arc<AtomicBool>,
}

impl WebhookSink {
    /// Start it on 127.0.0.1.
    pub fn start() -> Self {
        let port = reserve();
        let listener =
            TcpListener::bind(("127.0.0.1", port.get())).expect("binding the webhook sink");
        let posts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let p = posts.clone();
        accept_loop(listener, stop.clone(), move |s| http_session(s, &p));
        Self { port, posts, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.get())
    }

    /// The POSTs received so far.
    pub fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn http_session(s: TcpStream, posts: &Mutex<Vec<Post>>) {
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(s);
    loop {
        let Some(request) = read_line(&mut r) else {
            return;
        };
        let mut parts = request.split(' ');
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let (mut len, mut ctype, mut close) = (0usize, String::new(), false);
        loop {
            let Some(h) = read_line(&mut r) else { return };
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((&h, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "content-type" => ctype = v.trim().to_string(),
                "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if len > MAX_MESSAGE {
            return;
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if method == "POST" {
            posts.lock().unwrap_or_else(|p| p.into_inner()).push(Post {
                path: path.to_string(),
                content_type: ctype,
                body,
            });
        }
        if w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
        )
        .is_err()
            || close
        {
            return;
        }
    }
}
