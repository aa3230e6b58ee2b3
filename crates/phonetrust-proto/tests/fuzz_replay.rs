//! The fuzz targets' properties on stable Rust, in every CI run: each check of
//! `phonetrust_proto::fuzzing` is fed the reference vectors, every committed crash
//! reproducer in `fuzz/regressions/<target>/`, and thousands of seeded mutations
//! (bit flips, truncations, splices, length-field smashes) of the vectors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;

use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::codec::unhex;
use phonetrust_proto::fuzzing;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vectors() -> &'static std::path::Path {
    phonetrust_testsupport::vectors::dir()
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = root().join("fuzz/regressions").join(target);
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            out.push(read(e.path()));
        }
    }
    out
}

fn transcript_messages(prefix: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for log in ["capf.log", "tvs.log"] {
        let text = String::from_utf8(read(vectors().join("transcripts").join(log))).unwrap();
        for line in text.lines() {
            if let Some((who, hex)) = line.split_once(' ')
                && who.starts_with(prefix)
            {
                out.push(unhex(hex).unwrap());
            }
        }
    }
    out
}

/// xorshift64*: repeatable, not cryptographic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(6) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                let n = rng.below(m.len() + 1);
                m.truncate(n);
            }
            2 if !m.is_empty() => {
                // Smash what may be a u16 length field.
                let i = rng.below(m.len());
                let v = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)];
                m[i] = v;
                if i + 1 < m.len() {
                    m[i + 1] = v;
                }
            }
            3 if !m.is_empty() => {
                let a = rng.below(m.len());
                let b = (a + rng.below(64)).min(m.len());
                let chunk = m[a..b].to_vec();
                let at = rng.below(m.len() + 1);
                m.splice(at..at, chunk);
            }
            4 if !m.is_empty() => {
                let a = rng.below(m.len());
                let b = (a + rng.below(32)).min(m.len());
                m.drain(a..b);
            }
            _ => m.push(rng.below(256) as u8),
        }
    }
    m
}

fn exercise(target: &str, seeds: &[Vec<u8>], rounds: usize, check: impl Fn(&[u8])) {
    for r in regressions(target) {
        check(&r);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    for s in seeds {
        check(s);
        for _ in 0..rounds {
            check(&mutate(s, &mut rng));
        }
    }
    check(&[]);
}

#[test]
fn trust_list_target() {
    let seeds: Vec<Vec<u8>> = [
        "ITLFile.tlv",
        "ITLFile-sha512.tlv",
        "ITLFile-recovery-signed.tlv",
        "CTLFile.tlv",
        "signed/SEP001122AABBCC.cnf.xml.sgn",
        "encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn",
    ]
    .iter()
    .map(|f| read(vectors().join("files").join(f)))
    .collect();
    exercise("trust_list", &seeds, 1500, fuzzing::trust_list);
}

#[test]
fn capf_message_target() {
    exercise(
        "capf_message",
        &transcript_messages("capf"),
        300,
        fuzzing::capf_message,
    );
}

#[test]
fn tvs_message_target() {
    exercise(
        "tvs_message",
        &transcript_messages("tvs"),
        1000,
        fuzzing::tvs_message,
    );
}

#[test]
fn enc_config_target() {
    let phone = CertAndKey::from_pem(&read(root().join("fuzz/phone-key.pem"))).unwrap();
    let lsc = CertAndKey::from_pem(&read(vectors().join("pki/lsc/SEP0011AABBCCDD.pem"))).unwrap();
    let seed = read(vectors().join("files/encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn"));
    exercise("enc_config", std::slice::from_ref(&seed), 1500, |d| {
        let _ = fuzzing::enc_config(d, &phone);
    });
    // With the right key too, so mutations reach the AES and digest checks, and the
    // round-trip property runs (the unmutated seed must decrypt).
    assert!(
        fuzzing::enc_config(&seed, &lsc),
        "the seed decrypts: the round trip ran"
    );
    exercise("enc_config", &[seed], 1500, |d| {
        let _ = fuzzing::enc_config(d, &lsc);
    });
}

#[test]
fn partial_config_target() {
    let seeds = vec![
        read(vectors().join("files/SEP0011AABBCCDD.cnf.xml")),
        read(vectors().join("files/SEP001122AABBCC.cnf.xml")),
        b"<device><capfList><capf><phonePort>1</phonePort></capf></capfList></device>".to_vec(),
    ];
    exercise("partial_config", &seeds, 2000, fuzzing::partial_config);
}

/// The phone's messages of each transcript session, as `capf_server_session` inputs
/// (selector byte, then 2-byte-length-prefixed messages), under every operation ×
/// authentication selector.
fn capf_session_seeds() -> Vec<Vec<u8>> {
    let text = String::from_utf8(read(vectors().join("transcripts/capf.log"))).unwrap();
    let mut sessions: Vec<Vec<Vec<u8>>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("##") {
            sessions.push(Vec::new());
        } else if let Some(hex) = line.strip_prefix("capfc ")
            && let Some(s) = sessions.last_mut()
        {
            s.push(unhex(hex).unwrap());
        }
    }
    assert_eq!(sessions.len(), 8, "the transcript's eight sessions");
    let mut out = Vec::new();
    for msgs in &sessions {
        for sel in 0u8..64 {
            let mut v = vec![sel];
            for m in msgs {
                v.extend_from_slice(&u16::try_from(m.len()).unwrap().to_be_bytes());
                v.extend_from_slice(m);
            }
            out.push(v);
        }
    }
    out
}

#[test]
fn capf_server_session_target() {
    exercise(
        "capf_server_session",
        &capf_session_seeds(),
        20,
        fuzzing::capf_server_session,
    );
}

/// TFTP packets as a phone and a server exchange them.
fn tftp_seeds() -> Vec<Vec<u8>> {
    vec![
        b"\x00\x01SEP001122AABBCC.cnf.xml.sgn\x00octet\x00blksize\x001428\x00tsize\x000\x00windowsize\x0016\x00".to_vec(),
        b"\x00\x02ITLFile.tlv\x00netascii\x00".to_vec(),
        b"\x00\x06blksize\x001428\x00tsize\x005120\x00".to_vec(),
        [b"\x00\x03\x00\x01".as_slice(), &[0x5a; 600]].concat(),
        b"\x00\x04\x00\x07".to_vec(),
        b"\x00\x05\x00\x01File not found\x00".to_vec(),
    ]
}

#[test]
fn tftp_packet_target() {
    exercise("tftp_packet", &tftp_seeds(), 3000, fuzzing::tftp_packet);
}

/// A server's replies to a read (OACK, data blocks, an error), 2-byte length prefixed,
/// behind each client-options selector.
#[test]
fn tftp_client_target() {
    let reply = |blocks: &[Vec<u8>]| {
        let mut v = Vec::new();
        for b in blocks {
            v.extend_from_slice(&u16::try_from(b.len()).unwrap().to_be_bytes());
            v.extend_from_slice(b);
        }
        v
    };
    let data = |n: u16, len: usize| [&[0, 3][..], &n.to_be_bytes(), &vec![0x41; len]].concat();
    let oack = b"\x00\x06blksize\x00512\x00tsize\x00600\x00windowsize\x004\x00".to_vec();
    let bodies = [
        reply(&[oack.clone(), data(1, 512), data(2, 88)]),
        reply(&[data(1, 512), data(1, 512), data(3, 10), data(2, 5)]),
        reply(&[oack, b"\x00\x05\x00\x01File not found\x00".to_vec()]),
    ];
    let mut seeds = Vec::new();
    for b in &bodies {
        for sel in 0u8..64 {
            seeds.push([&[sel][..], b].concat());
        }
    }
    exercise("tftp_client", &seeds, 40, fuzzing::tftp_client);
}

/// The TFTP server transfer behind requests with and without options and with ACK
/// sequences, errors and timeouts.
#[test]
fn tftp_server_target() {
    let frame = |parts: &[&[u8]]| {
        let mut v = Vec::new();
        for b in parts {
            v.extend_from_slice(&u16::try_from(b.len()).unwrap().to_be_bytes());
            v.extend_from_slice(b);
        }
        v
    };
    let rrq_opts = b"\x00\x01SEP001122AABBCC.cnf.xml.sgn\x00octet\x00blksize\x0064\x00tsize\x000\x00windowsize\x004\x00timeout\x00255\x00";
    let rrq = b"\x00\x01ITLFile.tlv\x00octet\x00";
    let a = |n: u16| vec![0, 4, (n >> 8) as u8, n as u8];
    let seeds = vec![
        frame(&[rrq_opts, &a(0), &a(4), &[], &a(2), &a(4), &a(5)]),
        frame(&[rrq, &a(1), &a(2), &a(3), &[], &a(4)]),
        frame(&[rrq, &[], &[], &[]]),
        frame(&[rrq_opts, &[], &a(0), b"\x00\x05\x00\x00bye\x00"]),
        frame(&[b"\x00\x02passwd\x00octet\x00"]),
    ];
    exercise("tftp_server", &seeds, 3000, fuzzing::tftp_server);
}

#[test]
fn device_config_target() {
    let seeds = vec![
        read(vectors().join("files/SEP0011AABBCCDD.cnf.xml")),
        read(vectors().join("files/SEP001122AABBCC.cnf.xml")),
        b"\x03\x04\x00\x01\x0e\xd4\x02\x03\x09\x8d\x01|SIP|load|pub.example|cm1|cm2|tvs1|tvs2|tvs3|5a7c".to_vec(),
    ];
    exercise("device_config", &seeds, 2000, fuzzing::device_config);
}

#[test]
fn tvs_server_session_target() {
    let mut seeds = Vec::new();
    for m in transcript_messages("tvsc") {
        for sel in [1u8, 7, 10, 64, 255] {
            seeds.push([&[sel][..], &m, &m].concat());
        }
    }
    exercise(
        "tvs_server_session",
        &seeds,
        200,
        fuzzing::tvs_server_session,
    );
}

#[test]
fn device_names_target() {
    let seeds = vec![
        b"Device Name,Description\nSEP001122334455,lobby\n\n sep0011223344aa ,x\n".to_vec(),
        b"SEP001122334455\n\"SEP0011223344AB\",\"a,b\"\r\nnot a phone\n".to_vec(),
    ];
    exercise("device_names", &seeds, 3000, fuzzing::device_names);
}
