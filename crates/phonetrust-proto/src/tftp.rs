//! TFTP packets (RFC 1350, options RFC 2347/2348/2349/7440) and the client side of a read
//! transfer as a sans-IO state machine: the simulated phone feeds it datagrams and
//! timeouts and sends what it returns. The server side is [`crate::tftp_server`].

/// Why a datagram is not a TFTP packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Largest datagram accepted (blksize 65464 + 4).
pub const MAX_PACKET: usize = 65_468;

/// A TFTP packet (borrowing the datagram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request: file, mode, options.
    Rrq(String, String, Vec<(String, String)>),
    /// Write request.
    Wrq(String, String, Vec<(String, String)>),
    /// Data block.
    Data(u16, &'a [u8]),
    /// Acknowledgement.
    Ack(u16),
    /// Error code and message.
    Error(u16, String),
    /// Option acknowledgement.
    OAck(Vec<(String, String)>),
}

fn strings(b: &[u8]) -> Result<Vec<String>, DecodeError> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = b.strip_suffix(&[0]) else {
        return Err(DecodeError::Invalid("TFTP string without NUL".into()));
    };
    Ok(body
        .split(|&c| c == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

fn pairs(v: &[String]) -> Vec<(String, String)> {
    v.chunks(2)
        .filter_map(|c| match c {
            [k, val] => Some((k.to_ascii_lowercase(), val.clone())),
            _ => None,
        })
        .collect()
}

impl<'a> Packet<'a> {
    /// Decode a datagram.
    pub fn decode(b: &'a [u8]) -> Result<Self, DecodeError> {
        if b.len() > MAX_PACKET {
            return Err(DecodeError::Invalid("TFTP packet too large".into()));
        }
        let (Some(op), Some(rest)) = (b.get(..2), b.get(2..)) else {
            return Err(DecodeError::Invalid("shorter than an opcode".into()));
        };
        let u16_at = |i: usize| -> Result<u16, DecodeError> {
            rest.get(i..i + 2)
                .and_then(|x| <[u8; 2]>::try_from(x).ok())
                .map(u16::from_be_bytes)
                .ok_or_else(|| DecodeError::Invalid("truncated".into()))
        };
        let op = u16::from_be_bytes(<[u8; 2]>::try_from(op).unwrap_or_default());
        match op {
            1 | 2 => {
                let s = strings(rest)?;
                let (name, mode) = match s.as_slice() {
                    [n, m, ..] => (n.clone(), m.to_ascii_lowercase()),
                    _ => {
                        return Err(DecodeError::Invalid(
                            "request without file name and mode".into(),
                        ));
                    }
                };
                let opts = pairs(s.get(2..).unwrap_or_default());
                Ok(if op == 1 {
                    Packet::Rrq(name, mode, opts)
                } else {
                    Packet::Wrq(name, mode, opts)
                })
            }
            3 => Ok(Packet::Data(u16_at(0)?, rest.get(2..).unwrap_or_default())),
            4 => Ok(Packet::Ack(u16_at(0)?)),
            5 => {
                let code = u16_at(0)?;
                let msg = strings(rest.get(2..).unwrap_or_default())?
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                Ok(Packet::Error(code, msg))
            }
            6 => Ok(Packet::OAck(pairs(&strings(rest)?))),
            n => Err(DecodeError::Invalid(format!("unknown TFTP opcode {n}"))),
        }
    }

    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let s = |out: &mut Vec<u8>, x: &str| {
            out.extend_from_slice(x.as_bytes());
            out.push(0);
        };
        match self {
            Packet::Rrq(n, m, o) | Packet::Wrq(n, m, o) => {
                out.extend_from_slice(&[
                    0,
                    if matches!(self, Packet::Rrq(..)) {
                        1
                    } else {
                        2
                    },
                ]);
                s(&mut out, n);
                s(&mut out, m);
                for (k, v) in o {
                    s(&mut out, k);
                    s(&mut out, v);
                }
            }
            Packet::Data(b, d) => {
                out.extend_from_slice(&[0, 3]);
                out.extend_from_slice(&b.to_be_bytes());
                out.extend_from_slice(d);
            }
            Packet::Ack(b) => {
                out.extend_from_slice(&[0, 4]);
                out.extend_from_slice(&b.to_be_bytes());
            }
            Packet::Error(c, m) => {
                out.extend_from_slice(&[0, 5]);
                out.extend_from_slice(&c.to_be_bytes());
                s(&mut out, m);
            }
            Packet::OAck(o) => {
                out.extend_from_slice(&[0, 6]);
                for (k, v) in o {
                    s(&mut out, k);
                    s(&mut out, v);
                }
            }
        }
        out
    }
}

/// Options a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// blksize (None: 512 without asking).
    pub blksize: Option<u16>,
    /// windowsize (None: 1 without asking).
    pub windowsize: Option<u16>,
    /// Ask for tsize.
    pub tsize: bool,
    /// Largest file accepted.
    pub max_size: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            blksize: Some(1428),
            windowsize: None,
            tsize: true,
            max_size: 64 * 1024 * 1024,
        }
    }
}

/// What the client shell does next.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientStep {
    /// Send this datagram (to the server's transfer port).
    Send(Vec<u8>),
    /// Nothing to send; keep waiting.
    Wait,
    /// The file, complete (after sending the final ACK returned with it).
    Done(Vec<u8>, Vec<u8>),
    /// The transfer failed (a TFTP error from the server, or a protocol problem).
    Failed(String),
}

/// One read transfer, client side.
#[derive(Debug)]
pub struct ReadTransfer {
    opts: ClientOptions,
    blksize: usize,
    window: u16,
    expected: u16,
    since_ack: u16,
    last_ack: Option<Vec<u8>>,
    rrq: Vec<u8>,
    data: Vec<u8>,
    tsize: Option<u64>,
    started: bool,
}

impl ReadTransfer {
    /// Start reading `name`; returns the transfer and the RRQ to send to port 69.
    pub fn new(name: &str, opts: ClientOptions) -> (Self, Vec<u8>) {
        let mut o = Vec::new();
        if let Some(b) = opts.blksize {
            o.push(("blksize".to_string(), b.to_string()));
        }
        if opts.tsize {
            o.push(("tsize".to_string(), "0".to_string()));
        }
        if let Some(w) = opts.windowsize {
            o.push(("windowsize".to_string(), w.to_string()));
        }
        let rrq = Packet::Rrq(name.into(), "octet".into(), o).encode();
        (
            Self {
                opts,
                blksize: 512,
                window: 1,
                expected: 1,
                since_ack: 0,
                last_ack: None,
                rrq: rrq.clone(),
                data: Vec::new(),
                tsize: None,
                started: false,
            },
            rrq,
        )
    }

    /// The size the server announced (tsize), if any.
    pub fn tsize(&self) -> Option<u64> {
        self.tsize
    }

    /// A retransmission timeout: resend the last ACK (or the RRQ).
    pub fn on_timeout(&self) -> Vec<u8> {
        self.last_ack.clone().unwrap_or_else(|| self.rrq.clone())
    }

    fn ack(&mut self, block: u16) -> Vec<u8> {
        let a = Packet::Ack(block).encode();
        self.last_ack = Some(a.clone());
        self.since_ack = 0;
        a
    }

    /// A datagram from the server's transfer port.
    pub fn on_packet(&mut self, b: &[u8]) -> ClientStep {
        match Packet::decode(b) {
            Err(e) => ClientStep::Failed(format!("malformed TFTP packet: {e}")),
            Ok(Packet::Error(code, msg)) => ClientStep::Failed(format!("TFTP error {code}: {msg}")),
            Ok(Packet::OAck(o)) if !self.started => {
                self.started = true;
                for (k, v) in o {
                    match k.as_str() {
                        "blksize" => match v.parse::<usize>() {
                            Ok(n)
                                if (8..=65464).contains(&n)
                                    && self.opts.blksize.is_some_and(|m| n <= usize::from(m)) =>
                            {
                                self.blksize = n
                            }
                            _ => return ClientStep::Failed(format!("bad blksize {v} in OACK")),
                        },
                        "windowsize" => match v.parse::<u16>() {
                            Ok(n) if n >= 1 && self.opts.windowsize.is_some_and(|m| n <= m) => {
                                self.window = n
                            }
                            _ => return ClientStep::Failed(format!("bad windowsize {v} in OACK")),
                        },
                        "tsize" => {
                            let t = v.parse::<u64>().ok();
                            if t.is_some_and(|t| t > self.opts.max_size as u64) {
                                return ClientStep::Failed(format!(
                                    "file of {v} bytes is over the limit"
                                ));
                            }
                            self.tsize = t;
                        }
                        _ => {}
                    }
                }
                ClientStep::Send(self.ack(0))
            }
            Ok(Packet::Data(block, d)) => {
                if !self.started {
                    // No OACK: the server ignored our options (RFC 1350 defaults).
                    self.started = true;
                }
                if block != self.expected {
                    // A duplicate or a gap: say again what we have (once per window).
                    return match &self.last_ack {
                        Some(a) => ClientStep::Send(a.clone()),
                        _ => ClientStep::Wait,
                    };
                }
                if d.len() > self.blksize {
                    return ClientStep::Failed(format!(
                        "block of {} bytes over blksize {}",
                        d.len(),
                        self.blksize
                    ));
                }
                if self.data.len() + d.len() > self.opts.max_size {
                    return ClientStep::Failed("file over the size limit".into());
                }
                self.data.extend_from_slice(d);
                self.expected = self.expected.wrapping_add(1);
                self.since_ack += 1;
                if d.len() < self.blksize {
                    let ack = self.ack(block);
                    return ClientStep::Done(std::mem::take(&mut self.data), ack);
                }
                if self.since_ack >= self.window {
                    ClientStep::Send(self.ack(block))
                } else {
                    ClientStep::Wait
                }
            }
            Ok(_) => ClientStep::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip() {
        let rrq = Packet::Rrq(
            "ITLFile.tlv".into(),
            "octet".into(),
            vec![("blksize".into(), "1428".into())],
        );
        let b = rrq.encode();
        assert_eq!(
            b,
            b"\x00\x01ITLFile.tlv\x00octet\x00blksize\x001428\x00".to_vec()
        );
        assert_eq!(Packet::decode(&b).unwrap(), rrq);
        assert_eq!(Packet::decode(&[0, 4, 0, 7]).unwrap(), Packet::Ack(7));
        assert_eq!(
            Packet::decode(b"\x00\x05\x00\x01File not found\x00").unwrap(),
            Packet::Error(1, "File not found".into())
        );
        assert!(Packet::decode(&[0, 9]).is_err());
        assert!(Packet::decode(&[0]).is_err());
        assert!(Packet::decode(&[0, 1, b'a']).is_err());
    }

    #[test]
    fn windowed_read_with_a_duplicate_and_a_gap() {
        let (mut t, _) = ReadTransfer::new(
            "f",
            ClientOptions {
                blksize: Some(8),
                windowsize: Some(2),
                tsize: true,
                max_size: 100,
            },
        );
        let oack = Packet::OAck(vec![
            ("blksize".into(), "8".into()),
            ("windowsize".into(), "2".into()),
            ("tsize".into(), "20".into()),
        ])
        .encode();
        assert_eq!(
            t.on_packet(&oack),
            ClientStep::Send(Packet::Ack(0).encode())
        );
        assert_eq!(t.tsize(), Some(20));
        let d = |n: u16, body: &[u8]| Packet::Data(n, body).encode();
        assert_eq!(t.on_packet(&d(1, b"aaaaaaaa")), ClientStep::Wait);
        assert_eq!(
            t.on_packet(&d(2, b"bbbbbbbb")),
            ClientStep::Send(Packet::Ack(2).encode())
        );
        // Duplicate of block 2: the last ACK again, nothing appended.
        assert_eq!(
            t.on_packet(&d(2, b"bbbbbbbb")),
            ClientStep::Send(Packet::Ack(2).encode())
        );
        // Block 4 before 3 (3 lost): ACK 2 again.
        assert_eq!(
            t.on_packet(&d(4, b"dd")),
            ClientStep::Send(Packet::Ack(2).encode())
        );
        assert_eq!(
            t.on_packet(&d(3, b"cccc")),
            ClientStep::Done(b"aaaaaaaabbbbbbbbcccc".to_vec(), Packet::Ack(3).encode())
        );
    }

    #[test]
    fn errors_and_limits() {
        let (mut t, _) = ReadTransfer::new("x", ClientOptions::default());
        assert_eq!(
            t.on_packet(&Packet::Error(1, "File not found".into()).encode()),
            ClientStep::Failed("TFTP error 1: File not found".into())
        );
        let (mut t, _) = ReadTransfer::new(
            "x",
            ClientOptions {
                max_size: 10,
                ..ClientOptions::default()
            },
        );
        let oack = Packet::OAck(vec![("tsize".into(), "11".into())]).encode();
        assert!(matches!(t.on_packet(&oack), ClientStep::Failed(_)));
    }
}
