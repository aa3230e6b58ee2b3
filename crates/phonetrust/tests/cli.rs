//! The `phonetrust` file tools run as a user runs them: exit codes, output, files
//! written, and one clear line (never a panic) for bad input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vectors() -> PathBuf {
    std::env::var("PHONETRUST_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
        })
        .canonicalize()
        .expect("shared/vectors beside the project")
}

fn v(rel: &str) -> String {
    vectors().join(rel).to_string_lossy().into_owned()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("phonetrust-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pt(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .args(args)
        .current_dir(dir)
        .env("PHONETRUST_DATA", dir.join("data"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_one_line_error(o: &Output, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    let e = stderr(o);
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "one line expected: {e}");
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
}

#[test]
fn tlv_show_prints_the_seed_layout_and_exit_status() {
    let d = tmp("show");
    let o = pt(&d, &["tlv", "show", &v("files/ITLFile.tlv")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "The checksum value of the ITL file:",
        "4029262dcb1a6fb0cf8ddf0471ecd00b(MD5)",
        "Length of ITL file: 9848",
        "\tITL Record #:1",
        "System Administrator Security Token",
        "This etoken was used to sign the ITL file.",
        "This etoken was not used to sign the ITL file.",
        "The ITL file was verified successfully.",
    ] {
        assert!(out.contains(needle), "missing '{needle}'");
    }
    let o = pt(&d, &["tlv", "show", &v("files/CTLFile.tlv")]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("The CTL file was verified successfully."));

    // Tampered: output still printed, verdict negative, exit 1.
    let mut f = std::fs::read(v("files/ITLFile.tlv")).unwrap();
    f[9000] ^= 4;
    std::fs::write(d.join("ITLFile.tlv"), &f).unwrap();
    let o = pt(&d, &["tlv", "show", "ITLFile.tlv"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("The ITL file could not be verified"));

    // Missing CTL: the seeds' text.
    let o = pt(&d, &["tlv", "show", "CTLFile.tlv"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("Length of CTL file: 0\nCTL File not found"));
}

#[test]
fn bad_files_get_one_clear_line() {
    let d = tmp("bad");
    let f = std::fs::read(v("files/ITLFile.tlv")).unwrap();
    std::fs::write(d.join("cut.tlv"), &f[..300]).unwrap();
    assert_one_line_error(
        &pt(&d, &["tlv", "show", "cut.tlv"]),
        "byte 5 (tag 2 HEADERLENGTH)",
    );
    std::fs::write(d.join("xml.tlv"), b"<device></device>").unwrap();
    assert_one_line_error(
        &pt(&d, &["tlv", "show", "xml.tlv"]),
        "not a signed TLV file",
    );
    // A record overrunning the file.
    std::fs::write(d.join("rec.tlv"), &f[..f.len() - 7]).unwrap();
    assert_one_line_error(&pt(&d, &["tlv", "show", "rec.tlv"]), "record 6");
    std::fs::write(d.join("empty.sgn"), b"").unwrap();
    assert_one_line_error(&pt(&d, &["sgn", "show", "empty.sgn"]), "truncated");
    assert_one_line_error(
        &pt(
            &d,
            &[
                "tlv",
                "show",
                &v("files/signed/SEP001122AABBCC.cnf.xml.sgn"),
            ],
        ),
        "use `phonetrust sgn show`",
    );
    std::fs::write(
        d.join("junk.pem"),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_one_line_error(
        &pt(
            &d,
            &["tlv", "build", "--out", "x.tlv", "--signer", "junk.pem"],
        ),
        "signer must be a PEM",
    );
    assert_one_line_error(
        &pt(
            &d,
            &[
                "tlv",
                "build",
                "--out",
                "x.tlv",
                "--signer",
                &v("pki/callmanager.pem"),
                "--record",
                "BOSS=x.pem",
            ],
        ),
        "unknown role",
    );
    assert!(!d.join("x.tlv").exists(), "nothing written on failure");
}

#[test]
fn tlv_build_reproduces_the_vector() {
    let d = tmp("build");
    let o = pt(
        &d,
        &[
            "tlv",
            "build",
            "--out",
            "ITLFile.tlv",
            "--signer",
            &v("pki/callmanager.pem"),
            "--record",
            &format!("SAST={}", v("pki/itlrecovery.crt")),
            "--record",
            &format!("CCM+TFTP={}", v("pki/callmanager.crt")),
            "--record",
            &format!("CAPF={}", v("pki/capf.crt")),
            "--record",
            &format!("TVS={}", v("pki/tvs.crt")),
            "--record",
            &format!("TFTP={}", v("pki/callmanager-ecdsa.crt")),
            "--timestamp",
            "1795355474",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(d.join("ITLFile.tlv")).unwrap(),
        std::fs::read(v("files/ITLFile.tlv")).unwrap()
    );
    // SHA-512, hash-form records, DNS and IP, then shown and verified.
    let o = pt(
        &d,
        &[
            "tlv",
            "build",
            "--out",
            "ITLSEP001122AABBCC.tlv",
            "--digest",
            "sha512",
            "--signer",
            &v("pki/callmanager.pem"),
            "--record",
            &format!("CAPF={},hash", v("pki/capf.crt")),
            "--record",
            &format!(
                "TVS={},hash,dns=pub.example.test,ip=192.0.2.1",
                v("pki/tvs.crt")
            ),
            "--record",
            &format!("APP-SERVER={}", v("pki/callmanager-ecdsa.crt")),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(&d, &["tlv", "show", "ITLSEP001122AABBCC.tlv"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("CERTHASH"));
    assert!(out.contains("192.0.2.1"));
    assert!(out.contains("APP-SERVER"));
    assert!(out.contains("DIGESTALGORTITHM     1       3"));
}

#[test]
fn sgn_build_show_strip() {
    let d = tmp("sgn");
    std::fs::copy(
        v("files/SEP001122AABBCC.cnf.xml"),
        d.join("SEP001122AABBCC.cnf.xml"),
    )
    .unwrap();
    let o = pt(
        &d,
        &[
            "sgn",
            "build",
            "--signer",
            &v("pki/callmanager.pem"),
            "--timestamp",
            "1795355481",
            "SEP001122AABBCC.cnf.xml",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(d.join("SEP001122AABBCC.cnf.xml.sgn")).unwrap(),
        std::fs::read(v("files/signed/SEP001122AABBCC.cnf.xml.sgn")).unwrap()
    );
    let ok = pt(
        &d,
        &[
            "sgn",
            "show",
            "--cert",
            &v("pki/callmanager.crt"),
            "SEP001122AABBCC.cnf.xml.sgn",
        ],
    );
    assert!(ok.status.success());
    assert!(stdout(&ok).contains("verified successfully"));
    let wrong = pt(
        &d,
        &[
            "sgn",
            "show",
            "--cert",
            &v("pki/tvs.crt"),
            "SEP001122AABBCC.cnf.xml.sgn",
        ],
    );
    assert_eq!(wrong.status.code(), Some(1));
    let unchecked = pt(&d, &["sgn", "show", "SEP001122AABBCC.cnf.xml.sgn"]);
    assert_eq!(unchecked.status.code(), Some(1));
    let by_itl = pt(
        &d,
        &[
            "sgn",
            "show",
            "--itl",
            &v("files/ITLFile.tlv"),
            "SEP001122AABBCC.cnf.xml.sgn",
        ],
    );
    assert!(by_itl.status.success(), "{}", stdout(&by_itl));

    std::fs::remove_file(d.join("SEP001122AABBCC.cnf.xml")).unwrap();
    let o = pt(&d, &["sgn", "strip", "SEP001122AABBCC.cnf.xml.sgn"]);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(d.join("SEP001122AABBCC.cnf.xml")).unwrap(),
        std::fs::read(v("files/SEP001122AABBCC.cnf.xml")).unwrap()
    );
    let o = pt(
        &d,
        &[
            "sgn",
            "strip",
            "--out",
            "-",
            &v("files/signed/SEP001122AABBCC.cnf.xml.sgn"),
        ],
    );
    assert_eq!(
        o.stdout,
        std::fs::read(v("files/SEP001122AABBCC.cnf.xml")).unwrap()
    );
}

#[test]
fn cnf_encrypt_and_decrypt() {
    let d = tmp("cnf");
    std::fs::copy(
        v("files/SEP0011AABBCCDD.cnf.xml"),
        d.join("SEP0011AABBCCDD.cnf.xml"),
    )
    .unwrap();
    let o = pt(
        &d,
        &[
            "cnf",
            "encrypt",
            "--signer",
            &v("pki/callmanager.pem"),
            "--device-cert",
            &v("pki/lsc/SEP0011AABBCCDD.pem"),
            "--timestamp",
            "1795355481",
            "SEP0011AABBCCDD.cnf.xml",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(d.join("SEP0011AABBCCDD.cnf.xml.sgn")).unwrap(),
        std::fs::read(v("files/encrypted/SEP0011AABBCCDD.cnf.xml.sgn")).unwrap(),
        "partial config identical to the vector"
    );
    std::fs::rename(d.join("SEP0011AABBCCDD.cnf.xml"), d.join("orig.xml")).unwrap();
    let o = pt(
        &d,
        &[
            "cnf",
            "decrypt",
            "--key",
            &v("pki/lsc/SEP0011AABBCCDD.pem"),
            "--cert",
            &v("pki/callmanager.crt"),
            "SEP0011AABBCCDD.cnf.xml.enc.sgn",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(d.join("SEP0011AABBCCDD.cnf.xml")).unwrap(),
        std::fs::read(d.join("orig.xml")).unwrap()
    );
    // SHA-512 digest.
    let o = pt(
        &d,
        &[
            "cnf",
            "encrypt",
            "--digest",
            "sha512",
            "--signer",
            &v("pki/callmanager.pem"),
            "--device-cert",
            &v("pki/lsc/SEP001122AABBCC.pem"),
            "--out-dir",
            ".",
            &v("files/SEP001122AABBCC.cnf.xml"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(
        &d,
        &[
            "cnf",
            "decrypt",
            "--key",
            &v("pki/lsc/SEP001122AABBCC.pem"),
            "--out",
            "-",
            "SEP001122AABBCC.cnf.xml.enc.sgn",
        ],
    );
    assert_eq!(
        o.stdout,
        std::fs::read(v("files/SEP001122AABBCC.cnf.xml")).unwrap()
    );
    // Stripping the encrypted file yields its ciphertext and leaves the plaintext alone.
    std::fs::write(d.join("SEP001122AABBCC.cnf.xml"), b"plain").unwrap();
    let o = pt(&d, &["sgn", "strip", "SEP001122AABBCC.cnf.xml.enc.sgn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(d.join("SEP001122AABBCC.cnf.xml")).unwrap(),
        b"plain"
    );
    assert_eq!(
        std::fs::read(d.join("SEP001122AABBCC.cnf.xml.enc"))
            .unwrap()
            .len()
            % 16,
        0
    );
    // The vector decrypts to the plain file; the wrong key is refused clearly.
    let o = pt(
        &d,
        &[
            "cnf",
            "decrypt",
            "--key",
            &v("pki/lsc/SEP0011AABBCCDD.pem"),
            "--out",
            "-",
            &v("files/encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn"),
        ],
    );
    assert_eq!(
        o.stdout,
        std::fs::read(v("files/SEP0011AABBCCDD.cnf.xml")).unwrap()
    );
    assert_one_line_error(
        &pt(
            &d,
            &[
                "cnf",
                "decrypt",
                "--key",
                &v("pki/lsc/SEP001122AABBCC.pem"),
                "--out",
                "x",
                &v("files/encrypted/SEP0011AABBCCDD.cnf.xml.enc.sgn"),
            ],
        ),
        "cannot unwrap",
    );
}

#[test]
fn bench_files_runs() {
    let d = tmp("bench");
    let o = pt(&d, &["bench", "files", "--iterations", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("ITL parse + verify"));
    assert!(out.contains("µs/op"));
}

#[test]
fn help_reads_well() {
    let d = tmp("help");
    let o = pt(&d, &["--help"]);
    assert!(o.status.success());
    for cmd in ["tlv", "sgn", "cnf", "bench"] {
        assert!(stdout(&o).contains(cmd));
    }
    let o = pt(&d, &["tlv", "build", "--help"]);
    assert!(stdout(&o).contains("ROLE=CERT.pem"));
    assert_eq!(pt(&d, &["tlv", "frobnicate"]).status.code(), Some(2));
}

#[test]
fn init_and_show_cert() {
    let d = tmp("init");
    let o = pt(
        &d,
        &[
            "init",
            "--host",
            "pub.example.test",
            "--country",
            "NZ",
            "--rsa-bits",
            "1024",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("CAPF-"));
    let o = pt(&d, &["show", "cert", "list", "own"]);
    assert!(o.status.success());
    for name in [
        "CAPF",
        "CallManager",
        "CallManager-ECDSA",
        "TVS",
        "ITLRecovery",
        "tomcat",
    ] {
        assert!(stdout(&o).contains(name), "{name}");
    }
    let o = pt(&d, &["show", "cert", "own", "CAPF", "--pem"]);
    assert!(stdout(&o).starts_with("-----BEGIN CERTIFICATE-----"));
    openssl::x509::X509::from_pem(&o.stdout).unwrap();
    let o = pt(&d, &["show", "cert", "own", "ITLRecovery", "--der"]);
    let c = openssl::x509::X509::from_der(&o.stdout).unwrap();
    assert!(format!("{:?}", c.subject_name()).contains("ITLRECOVERY_pub.example.test"));
    let o = pt(&d, &["show", "cert", "own", "tvs"]);
    assert!(stdout(&o).contains("Version: V3"));
    assert_one_line_error(&pt(&d, &["init"]), "already holds an identity");
    assert_eq!(
        pt(&d, &["show", "cert", "own", "BOGUS"]).status.code(),
        Some(2)
    );
    let e = tmp("noinit");
    assert_one_line_error(
        &pt(&e, &["show", "cert", "list", "own"]),
        "run `phonetrust init` first",
    );
}
