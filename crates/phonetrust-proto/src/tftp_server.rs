//! The server side of a TFTP read transfer (RFC 1350, options RFC 2347/2348/2349/7440) as
//! a sans-IO state machine. The shell owns the sockets, the file and the clock: it hands
//! the request datagram to [`accept`], then feeds the transfer the client's datagrams and
//! its timeouts, reads the blocks the transfer asks for, and sends what it returns.
//!
//! The rules that bound what one request can cost live here:
//! - options are granted within the [`ServerPolicy`] (a `timeout` above its cap is refused
//!   by leaving it out of the OACK, as RFC 2349 allows; the window is kept within a byte
//!   budget);
//! - before the client's first ACK shows that it is real (not a spoofed source), at most
//!   one datagram (the OACK or block 1) is in flight, retransmitted at most
//!   [`ServerPolicy::unverified_retries`] times;
//! - after that, each ACK releases at most as many blocks as it acknowledged (a partial
//!   ACK does not resend the whole window; unacknowledged blocks go again on a timeout);
//! - a duplicate ACK sends nothing (no "Sorcerer's Apprentice" doubling);
//! - write requests are answered with error 2 (access violation).

use std::collections::VecDeque;

use crate::tftp::Packet;

/// TFTP error codes (RFC 1350, 2347).
pub mod code {
    /// Not defined, see the message.
    pub const UNDEFINED: u16 = 0;
    /// File not found.
    pub const FILE_NOT_FOUND: u16 = 1;
    /// Access violation.
    pub const ACCESS_VIOLATION: u16 = 2;
    /// Illegal TFTP operation.
    pub const ILLEGAL_OPERATION: u16 = 4;
}

/// Longest file name accepted in a request.
pub const MAX_REQUEST_NAME: usize = 255;

/// What the server grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerPolicy {
    /// Largest `timeout` option granted (seconds); a larger request is refused.
    pub max_timeout: u8,
    /// Largest block size granted.
    pub max_blksize: u16,
    /// Largest window granted.
    pub max_window: u16,
    /// Most bytes of data in flight (window × block size) per transfer.
    pub max_window_bytes: usize,
    /// Retransmissions of a block once the client has acknowledged something.
    pub max_retries: u32,
    /// Retransmissions before the client's first ACK.
    pub unverified_retries: u32,
}

impl Default for ServerPolicy {
    fn default() -> Self {
        Self {
            max_timeout: 10,
            max_blksize: 16384,
            max_window: 64,
            max_window_bytes: 128 * 1024,
            max_retries: 5,
            unverified_retries: 1,
        }
    }
}

/// What was agreed for one transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Block size.
    pub blksize: u16,
    /// Window size.
    pub window: u16,
    /// The retransmission timeout the client asked for and got (seconds); None: the
    /// server's own.
    pub timeout: Option<u8>,
    /// The options to acknowledge (empty: no OACK); `tsize` is filled in when the size is
    /// known.
    pub oack: Vec<(String, String)>,
    /// The client asked for `tsize`.
    pub tsize_asked: bool,
}

/// A read request that may be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// The file asked for.
    pub name: String,
    /// What was agreed.
    pub negotiated: Negotiated,
}

/// A request refused before any transfer: the error datagram to send back, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The ERROR packet.
    pub reply: Vec<u8>,
    /// For the log.
    pub reason: String,
    /// The file named, if the request could be read.
    pub name: Option<String>,
}

/// An ERROR packet.
pub fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    Packet::Error(code, msg.into()).encode()
}

fn refuse(code: u16, msg: &str, reason: String, name: Option<String>) -> Refused {
    Refused {
        reply: error_packet(code, msg),
        reason,
        name,
    }
}

/// Read the first datagram of a transfer (sent to port 69).
pub fn accept(datagram: &[u8], policy: &ServerPolicy) -> Result<ReadRequest, Refused> {
    let packet = Packet::decode(datagram).map_err(|e| {
        refuse(
            code::ILLEGAL_OPERATION,
            "Illegal TFTP operation",
            format!("not a TFTP request: {e}"),
            None,
        )
    })?;
    let (name, mode, opts) = match packet {
        Packet::Rrq(n, m, o) => (n, m, o),
        Packet::Wrq(n, ..) => {
            return Err(refuse(
                code::ACCESS_VIOLATION,
                "Access violation: this server is read-only",
                "write request".into(),
                Some(n),
            ));
        }
        other => {
            return Err(refuse(
                code::ILLEGAL_OPERATION,
                "Illegal TFTP operation",
                format!("{} sent to the request port", kind(&other)),
                None,
            ));
        }
    };
    if name.is_empty() || name.len() > MAX_REQUEST_NAME {
        return Err(refuse(
            code::FILE_NOT_FOUND,
            "File not found",
            format!("file name of {} bytes", name.len()),
            None,
        ));
    }
    if mode != "octet" && mode != "netascii" {
        return Err(refuse(
            code::ILLEGAL_OPERATION,
            "Illegal TFTP operation: mode must be octet",
            format!("mode {mode:?}"),
            Some(name),
        ));
    }
    let mut n = Negotiated {
        blksize: 512,
        window: 1,
        timeout: None,
        oack: Vec::new(),
        tsize_asked: false,
    };
    let mut asked_window = None;
    for (k, v) in opts {
        match k.as_str() {
            "blksize" => {
                if let Ok(b) = v.parse::<u32>()
                    && b >= 8
                    && !n.oack.iter().any(|(k, _)| k == "blksize")
                {
                    let b = b.min(u32::from(policy.max_blksize.max(8))).min(65464) as u16;
                    n.blksize = b;
                    n.oack.push(("blksize".into(), b.to_string()));
                }
            }
            "timeout" => {
                if let Ok(t) = v.parse::<u8>()
                    && t >= 1
                    && t <= policy.max_timeout
                    && n.timeout.is_none()
                {
                    n.timeout = Some(t);
                    n.oack.push(("timeout".into(), t.to_string()));
                }
            }
            "tsize" if v == "0" => n.tsize_asked = true,
            "windowsize" => {
                if let Ok(w) = v.parse::<u16>()
                    && w >= 1
                    && asked_window.is_none()
                {
                    asked_window = Some(w);
                }
            }
            _ => {}
        }
    }
    if let Some(w) = asked_window {
        let by_bytes = (policy.max_window_bytes / usize::from(n.blksize)).max(1);
        let w = w
            .min(policy.max_window.max(1))
            .min(u16::try_from(by_bytes).unwrap_or(u16::MAX));
        n.window = w;
        n.oack.push(("windowsize".into(), w.to_string()));
    }
    Ok(ReadRequest {
        name,
        negotiated: n,
    })
}

fn kind(p: &Packet<'_>) -> &'static str {
    match p {
        Packet::Rrq(..) => "RRQ",
        Packet::Wrq(..) => "WRQ",
        Packet::Data(..) => "DATA",
        Packet::Ack(..) => "ACK",
        Packet::Error(..) => "ERROR",
        Packet::OAck(..) => "OACK",
    }
}

/// How a transfer ended badly.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferError {
    /// No ACK after the retransmissions allowed.
    TimedOut {
        /// The client had acknowledged something (a real client that went away), or not
        /// (perhaps a spoofed request).
        verified: bool,
    },
    /// The client sent an ERROR.
    ClientError(u16, String),
    /// The client sent something that is not an ACK or ERROR for this transfer.
    Protocol(String),
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TimedOut { verified: true } => f.write_str("the client stopped acknowledging"),
            Self::TimedOut { verified: false } => {
                f.write_str("the client never acknowledged (a lost or spoofed request)")
            }
            Self::ClientError(c, m) => write!(f, "the client ended it with error {c}: {m}"),
            Self::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

/// What the shell does after feeding a datagram or a timeout.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these datagrams (in order), then read the blocks [`ReadTransfer::wants_block`]
    /// asks for and send each one [`ReadTransfer::push_block`] returns.
    Send(Vec<Vec<u8>>),
    /// The file was delivered and acknowledged.
    Done,
    /// The transfer failed; send the datagram, if any, and stop.
    Failed(TransferError, Option<Vec<u8>>),
}

#[derive(Debug)]
struct Block {
    packet: Vec<u8>,
    /// Must be (re)sent when credit allows.
    pending: bool,
}

/// One read transfer, server side.
#[derive(Debug)]
pub struct ReadTransfer {
    n: Negotiated,
    oack: Option<Vec<u8>>,
    /// Blocks sent and not acknowledged, oldest first; `base` is the number of the first.
    window: VecDeque<Block>,
    base: u64,
    /// Number of the next block to read.
    next: u64,
    eof: bool,
    verified: bool,
    retries: u32,
    /// Datagrams that may be sent before the next ACK.
    credit: usize,
    policy: ServerPolicy,
    sent_bytes: u64,
}

impl ReadTransfer {
    /// Start serving a file of `size` bytes (None: unknown) as agreed; returns the transfer
    /// and what to send first (the OACK, or nothing: then block 1, via
    /// [`wants_block`](Self::wants_block)).
    pub fn start(
        mut n: Negotiated,
        size: Option<u64>,
        policy: &ServerPolicy,
    ) -> (Self, Vec<Vec<u8>>) {
        if n.tsize_asked
            && let Some(s) = size
        {
            n.oack.push(("tsize".into(), s.to_string()));
        }
        let oack = (!n.oack.is_empty()).then(|| Packet::OAck(n.oack.clone()).encode());
        let first: Vec<Vec<u8>> = oack.iter().cloned().collect();
        let credit = if oack.is_some() { 0 } else { 1 };
        let sent_bytes = first.iter().map(|p| p.len() as u64).sum();
        (
            Self {
                n,
                oack,
                window: VecDeque::new(),
                base: 1,
                next: 1,
                eof: false,
                verified: false,
                retries: 0,
                credit,
                policy: *policy,
                sent_bytes,
            },
            first,
        )
    }

    /// The retransmission timeout the client negotiated (seconds), if any.
    pub fn client_timeout(&self) -> Option<u8> {
        self.n.timeout
    }

    /// What was agreed.
    pub fn negotiated(&self) -> &Negotiated {
        &self.n
    }

    /// The client has acknowledged something.
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// Bytes of datagrams handed to the shell so far (retransmissions included).
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes
    }

    /// How many bytes of the file the shell should read next (one block), if a new block
    /// may be sent now.
    pub fn wants_block(&self) -> Option<usize> {
        let may = self.oack.is_none()
            && !self.eof
            && self.credit > 0
            && self.window.len() < usize::from(self.n.window)
            && !self.window.iter().any(|b| b.pending);
        may.then_some(usize::from(self.n.blksize))
    }

    /// The next block of the file (at most the size [`wants_block`](Self::wants_block)
    /// asked; shorter means the end of the file): the DATA datagram to send.
    pub fn push_block(&mut self, data: &[u8]) -> Vec<u8> {
        let data = data.get(..usize::from(self.n.blksize)).unwrap_or(data);
        if data.len() < usize::from(self.n.blksize) {
            self.eof = true;
        }
        let packet = Packet::Data(self.next as u16, data).encode();
        self.next += 1;
        self.credit = self.credit.saturating_sub(1);
        self.sent_bytes += packet.len() as u64;
        self.window.push_back(Block {
            packet: packet.clone(),
            pending: false,
        });
        packet
    }

    fn release_pending(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for b in self.window.iter_mut().filter(|b| b.pending) {
            if self.credit == 0 {
                break;
            }
            b.pending = false;
            self.credit -= 1;
            out.push(b.packet.clone());
        }
        self.sent_bytes += out.iter().map(|p| p.len() as u64).sum::<u64>();
        out
    }

    /// A datagram from the client (already known to come from its address and port).
    pub fn on_packet(&mut self, datagram: &[u8]) -> Step {
        match Packet::decode(datagram) {
            Ok(Packet::Ack(n)) => self.on_ack(n),
            Ok(Packet::Error(c, m)) => Step::Failed(TransferError::ClientError(c, m), None),
            Ok(other) => {
                let why = format!("{} during a read transfer", kind(&other));
                Step::Failed(
                    TransferError::Protocol(why),
                    Some(error_packet(
                        code::ILLEGAL_OPERATION,
                        "Illegal TFTP operation",
                    )),
                )
            }
            Err(e) => Step::Failed(
                TransferError::Protocol(e.to_string()),
                Some(error_packet(
                    code::ILLEGAL_OPERATION,
                    "Illegal TFTP operation",
                )),
            ),
        }
    }

    fn on_ack(&mut self, n: u16) -> Step {
        if self.oack.is_some() {
            if n != 0 {
                return Step::Send(Vec::new());
            }
            self.oack = None;
            self.verified = true;
            self.retries = 0;
            self.credit = usize::from(self.n.window);
            return Step::Send(Vec::new());
        }
        // Which block of the window does it acknowledge?
        let Some(k) = (0..self.window.len()).find(|&k| (self.base + k as u64) as u16 == n) else {
            // A duplicate or stale ACK: nothing (unacknowledged blocks go on a timeout).
            return Step::Send(Vec::new());
        };
        let acked = k + 1;
        self.window.drain(..acked);
        self.base += acked as u64;
        self.retries = 0;
        if !self.verified {
            self.verified = true;
            self.credit = usize::from(self.n.window);
        } else {
            self.credit = (self.credit + acked).min(usize::from(self.n.window));
        }
        if self.window.is_empty() && self.eof {
            return Step::Done;
        }
        // A partial ACK (blocks after it were lost): those go again first, within credit.
        for b in self.window.iter_mut() {
            b.pending = true;
        }
        Step::Send(self.release_pending())
    }

    /// The retransmission timeout passed without an ACK.
    pub fn on_timeout(&mut self) -> Step {
        let limit = if self.verified {
            self.policy.max_retries
        } else {
            self.policy.unverified_retries
        };
        if self.retries >= limit {
            return Step::Failed(
                TransferError::TimedOut {
                    verified: self.verified,
                },
                None,
            );
        }
        self.retries += 1;
        if let Some(o) = &self.oack {
            self.sent_bytes += o.len() as u64;
            return Step::Send(vec![o.clone()]);
        }
        // Everything unacknowledged again (at most one window).
        let out: Vec<Vec<u8>> = self.window.iter().map(|b| b.packet.clone()).collect();
        for b in self.window.iter_mut() {
            b.pending = false;
        }
        self.sent_bytes += out.iter().map(|p| p.len() as u64).sum::<u64>();
        Step::Send(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(name: &str, opts: &[(&str, &str)]) -> Vec<u8> {
        Packet::Rrq(
            name.into(),
            "octet".into(),
            opts.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .encode()
    }

    fn ack(n: u16) -> Vec<u8> {
        vec![0, 4, (n >> 8) as u8, n as u8]
    }

    #[test]
    fn write_requests_get_access_violation() {
        let wrq = b"\x00\x02passwd\x00octet\x00";
        let r = accept(wrq, &ServerPolicy::default()).unwrap_err();
        assert_eq!(&r.reply[..4], &[0, 5, 0, 2]);
        assert_eq!(r.name.as_deref(), Some("passwd"));
        // An ACK to port 69 is an illegal operation (code 4).
        let r = accept(&ack(1), &ServerPolicy::default()).unwrap_err();
        assert_eq!(&r.reply[..4], &[0, 5, 0, 4]);
        let r = accept(b"\x00\x01f\x00mail\x00", &ServerPolicy::default()).unwrap_err();
        assert_eq!(&r.reply[..4], &[0, 5, 0, 4]);
    }

    #[test]
    fn options_are_granted_within_the_policy() {
        let p = ServerPolicy::default();
        let r = accept(
            &rrq(
                "ITLFile.tlv",
                &[
                    ("blksize", "65464"),
                    ("timeout", "255"),
                    ("windowsize", "1000"),
                    ("tsize", "0"),
                ],
            ),
            &p,
        )
        .unwrap();
        let n = r.negotiated;
        assert_eq!(n.blksize, 16384);
        // timeout=255 is refused (left out): the server's own timer.
        assert_eq!(n.timeout, None);
        assert!(!n.oack.iter().any(|(k, _)| k == "timeout"));
        // 128 KiB / 16384 = 8 blocks in flight at most.
        assert_eq!(n.window, 8);
        assert!(n.tsize_asked);
        let r = accept(&rrq("f", &[("timeout", "5"), ("blksize", "4")]), &p).unwrap();
        assert_eq!(r.negotiated.timeout, Some(5));
        assert_eq!(r.negotiated.blksize, 512);
        assert_eq!(r.negotiated.oack, vec![("timeout".into(), "5".into())]);
    }

    #[test]
    fn one_block_before_the_first_ack_and_few_retransmissions() {
        let p = ServerPolicy::default();
        let r = accept(&rrq("f", &[]), &p).unwrap();
        let (mut t, first) = ReadTransfer::start(r.negotiated, Some(2000), &p);
        assert!(first.is_empty());
        assert_eq!(t.wants_block(), Some(512));
        let d1 = t.push_block(&[1; 512]);
        assert_eq!(&d1[..4], &[0, 3, 0, 1]);
        assert_eq!(t.wants_block(), None);
        // One retransmission, then it is given up.
        assert_eq!(t.on_timeout(), Step::Send(vec![d1.clone()]));
        assert_eq!(
            t.on_timeout(),
            Step::Failed(TransferError::TimedOut { verified: false }, None)
        );
        assert_eq!(t.sent_bytes(), 2 * 516);
    }

    #[test]
    fn a_windowed_transfer_with_a_partial_ack() {
        let p = ServerPolicy::default();
        let r = accept(
            &rrq(
                "f",
                &[("blksize", "8"), ("windowsize", "4"), ("tsize", "0")],
            ),
            &p,
        )
        .unwrap();
        let (mut t, first) = ReadTransfer::start(r.negotiated, Some(40), &p);
        assert_eq!(
            Packet::decode(&first[0]).unwrap(),
            Packet::OAck(vec![
                ("blksize".into(), "8".into()),
                ("windowsize".into(), "4".into()),
                ("tsize".into(), "40".into()),
            ])
        );
        // Nothing before ACK 0.
        assert_eq!(t.wants_block(), None);
        assert_eq!(t.on_packet(&ack(3)), Step::Send(vec![]));
        assert_eq!(t.on_packet(&ack(0)), Step::Send(vec![]));
        let mut sent = Vec::new();
        while let Some(n) = t.wants_block() {
            assert_eq!(n, 8);
            sent.push(t.push_block(&[7; 8]));
        }
        assert_eq!(sent.len(), 4);
        // Partial ACK of block 2: blocks 3 and 4 go again (2 acknowledged, credit 2), no
        // new block until they are.
        let Step::Send(again) = t.on_packet(&ack(2)) else {
            panic!()
        };
        assert_eq!(again, vec![sent[2].clone(), sent[3].clone()]);
        assert_eq!(t.wants_block(), None);
        // A duplicate ACK sends nothing.
        assert_eq!(t.on_packet(&ack(2)), Step::Send(vec![]));
        // ACK 4: four more blocks allowed; block 5 is the last (40 bytes = 5 × 8, then 0).
        assert_eq!(t.on_packet(&ack(4)), Step::Send(vec![]));
        let d5 = t.push_block(&[9; 8]);
        assert_eq!(&d5[..4], &[0, 3, 0, 5]);
        let d6 = t.push_block(&[]);
        assert_eq!(d6, vec![0, 3, 0, 6]);
        assert_eq!(t.wants_block(), None);
        assert_eq!(t.on_packet(&ack(5)), Step::Send(vec![d6.clone()]));
        assert_eq!(t.on_packet(&ack(6)), Step::Done);
    }

    #[test]
    fn each_ack_releases_at_most_what_it_acknowledged() {
        let p = ServerPolicy::default();
        let r = accept(&rrq("f", &[("blksize", "512"), ("windowsize", "64")]), &p).unwrap();
        let (mut t, _) = ReadTransfer::start(r.negotiated, None, &p);
        t.on_packet(&ack(0));
        let mut n = 0u16;
        while t.wants_block().is_some() {
            t.push_block(&[0; 512]);
            n += 1;
        }
        assert_eq!(n, 64);
        let before = t.sent_bytes();
        // A client acknowledging one block at a time gets one block per ACK.
        for i in 1..=10u16 {
            let Step::Send(v) = t.on_packet(&ack(i)) else {
                panic!()
            };
            let mut out = v.len();
            while t.wants_block().is_some() {
                t.push_block(&[0; 512]);
                out += 1;
            }
            assert_eq!(out, 1, "ACK {i}");
        }
        assert_eq!(t.sent_bytes() - before, 10 * 516);
    }

    #[test]
    fn client_errors_and_garbage_end_the_transfer() {
        let p = ServerPolicy::default();
        let r = accept(&rrq("f", &[]), &p).unwrap();
        let (mut t, _) = ReadTransfer::start(r.negotiated.clone(), Some(1), &p);
        t.push_block(&[1]);
        assert_eq!(
            t.on_packet(&error_packet(0, "bye")),
            Step::Failed(TransferError::ClientError(0, "bye".into()), None)
        );
        let (mut t, _) = ReadTransfer::start(r.negotiated, Some(1), &p);
        t.push_block(&[1]);
        assert!(matches!(
            t.on_packet(&[0, 3, 0, 1, 9]),
            Step::Failed(TransferError::Protocol(_), Some(_))
        ));
    }

    #[test]
    fn block_numbers_roll_over() {
        let p = ServerPolicy::default();
        let r = accept(&rrq("f", &[("blksize", "8")]), &p).unwrap();
        let (mut t, _) = ReadTransfer::start(r.negotiated, None, &p);
        t.on_packet(&ack(0));
        for i in 1..=65_537u64 {
            let d = t.push_block(&[0; 8]);
            assert_eq!(u16::from_be_bytes([d[2], d[3]]), i as u16);
            assert_eq!(t.on_packet(&ack(i as u16)), Step::Send(vec![]));
        }
        t.push_block(&[]);
        assert_eq!(t.on_packet(&ack(2)), Step::Done);
    }
}
