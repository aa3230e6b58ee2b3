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

use phonetrust_testsupport::TestDir;
use phonetrust_testsupport::vectors::arg as v;

/// A fresh directory for one test (removed when the test ends).
fn tmp(tag: &str) -> TestDir {
    phonetrust_testsupport::tempdir(&format!("cli-{tag}"))
}

fn pt(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
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

    // The phone's signer rule: a file signed by a certificate the ITL lists only as CAPF
    // (or TVS) is refused, as a phone refuses it; the ITL's TFTP records may sign.
    for (signer, ok) in [
        ("pki/capf.pem", false),
        ("pki/tvs.pem", false),
        ("pki/callmanager.pem", true),
    ] {
        let o = pt(
            &d,
            &[
                "sgn",
                "build",
                "--signer",
                &v(signer),
                "--out",
                "by.sgn",
                "SEP001122AABBCC.cnf.xml",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = pt(
            &d,
            &["sgn", "show", "--itl", &v("files/ITLFile.tlv"), "by.sgn"],
        );
        if ok {
            assert!(o.status.success(), "{signer}: {}", stdout(&o));
        } else {
            assert_one_line_error(&o, "which may not sign files");
        }
    }

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

/// `bench tvs` end to end, small: every answer as expected (valid for the known
/// certificate, invalid for the unknown one).
#[test]
fn bench_tvs_runs() {
    let d = tmp("bench-tvs");
    let o = pt(
        &d,
        &[
            "bench",
            "tvs",
            "--phones",
            "20",
            "--concurrency",
            "5",
            "--requests",
            "4",
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("80 verifies (40 valid, 40 invalid, all as expected), 0 phones failed"),
        "{out}"
    );
    assert!(out.contains("verifies/s"));
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

fn init_node(d: &Path) {
    let o = pt(
        d,
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
}

#[test]
fn admin_commands_from_the_seeds() {
    let d = tmp("admin");
    init_node(&d);
    // The seeds' queries, verbatim (unquoted words, as typed at the admin: prompt).
    let o = pt(
        &d,
        &[
            "run",
            "sql",
            "select",
            "paramname,paramvalue",
            "from",
            "processconfig",
            "where",
            "paramname='ClusterSecurityMode'",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "paramname           paramvalue\n=================== ==========\nClusterSecurityMode 0\n"
    );
    assert!(
        pt(
            &d,
            &[
                "phone",
                "add",
                "SEP001122334455",
                "--model",
                "8845",
                "--protocol",
                "SIP"
            ]
        )
        .status
        .success()
    );
    let o = pt(
        &d,
        &[
            "run",
            "sql",
            "select md5hash,name from device where name='SEP001122334455'",
        ],
    );
    assert!(
        stdout(&o).contains("NULL    SEP001122334455"),
        "{}",
        stdout(&o)
    );
    assert_one_line_error(
        &pt(&d, &["run", "sql", "delete from device"]),
        "only runs queries",
    );

    let o = pt(
        &d,
        &[
            "phone",
            "capf",
            "SEP001122334455",
            "--operation",
            "install",
            "--auth",
            "auth-string",
            "--auth-string",
            "123456",
            "--key-order",
            "ec-rsa",
            "--rsa-bits",
            "2048",
            "--ec-curve",
            "p384",
            "--completes-by",
            "2099-12-01T10:00Z",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(&d, &["phone", "show", "SEP001122334455"]);
    let out = stdout(&o);
    for line in [
        "Certificate Operation: Install/Upgrade",
        "Authentication Mode: By Authentication String",
        "Key Order: EC Preferred, RSA Backup",
        "EC Key Size (Bits): 384",
        "Operation Completes By: 2099-12-01T10:00:00Z",
        "Certificate Operation Status: Operation Pending",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert!(stdout(&pt(&d, &["phone", "list", "--auth-string", "123456"])).contains("1 phone(s)"));
    assert!(stdout(&pt(&d, &["phone", "list", "--lsc", "installed"])).contains("0 phone(s)"));

    // Refusals, each one clear line, nothing changed.
    assert_one_line_error(&pt(&d, &["phone", "add", "SEP0011"]), "invalid phone name");
    assert_one_line_error(
        &pt(&d, &["phone", "show", "SEP999999999999"]),
        "unknown phone",
    );
    assert_one_line_error(
        &pt(
            &d,
            &["phone", "capf", "SEP001122334455", "--auth-string", "123"],
        ),
        "4 to 16 digits",
    );
    // Cluster Security Mode changes only with the CTL, through `utils ctl set-cluster`.
    for v in ["1", "2"] {
        assert_one_line_error(
            &pt(&d, &["set", "param", "ClusterSecurityMode", v]),
            "run `phonetrust utils ctl set-cluster mixed-mode`",
        );
    }
    assert!(stdout(&pt(&d, &["show", "param"])).contains("ClusterSecurityMode"));
    assert!(
        stdout(&pt(&d, &["phone", "show", "SEP001122334455"]))
            .contains("Authentication String: 123456")
    );
    assert!(
        pt(&d, &["set", "param", "CapfOperationExpiresInDays", "5"])
            .status
            .success()
    );
    assert!(stdout(&pt(&d, &["show", "param"])).contains("CapfOperationExpiresInDays"));

    // Trust store round trip.
    let ca = pt(&d, &["show", "cert", "own", "CallManager", "--pem"]).stdout;
    std::fs::write(d.join("ca.pem"), &ca).unwrap();
    std::fs::write(d.join("junk.pem"), b"junk").unwrap();
    let o = pt(
        &d,
        &["set", "cert", "import", "trust", "CAPF-trust", "ca.pem"],
    );
    assert!(
        stdout(&o).contains("Imported pub.example.test.pem into CAPF-trust"),
        "{}",
        stdout(&o)
    );
    assert_one_line_error(
        &pt(
            &d,
            &["set", "cert", "import", "trust", "CAPF-trust", "junk.pem"],
        ),
        "neither a PEM",
    );
    // The node's own CAPF is in CAPF-trust and CallManager-trust from the start.
    let trust = stdout(&pt(&d, &["show", "cert", "list", "trust"]));
    assert!(trust.contains("3 certificate(s)"), "{trust}");
    for store in ["CAPF-trust", "CallManager-trust"] {
        assert!(
            trust
                .lines()
                .any(|l| l.starts_with(store) && l.contains("CN=CAPF-")),
            "{trust}"
        );
    }
    // 14.15: one date format in every table, columns that do not run together.
    let own = stdout(&pt(&d, &["show", "cert", "list", "own"]));
    for table in [&trust, &own] {
        assert!(!table.contains("GMT"), "{table}");
        let dated: Vec<&str> = table
            .lines()
            .filter(|l| l.contains("T") && l.ends_with('Z'))
            .collect();
        assert!(!dated.is_empty(), "{table}");
        for l in dated {
            let date = l.rsplit("  ").next().unwrap();
            assert!(
                date.len() == 20 && date.as_bytes()[10] == b'T',
                "'{date}' in {l}"
            );
        }
    }
    let o = pt(
        &d,
        &[
            "show",
            "cert",
            "trust",
            "CAPF-trust",
            "pub.example.test.pem",
            "--pem",
        ],
    );
    assert_eq!(o.stdout, ca);
    assert!(
        pt(
            &d,
            &[
                "set",
                "cert",
                "delete",
                "trust",
                "CAPF-trust",
                "pub.example.test.pem"
            ]
        )
        .status
        .success()
    );
    assert_one_line_error(
        &pt(
            &d,
            &[
                "set",
                "cert",
                "delete",
                "trust",
                "CAPF-trust",
                "pub.example.test.pem",
            ],
        ),
        "no certificate",
    );

    // CSV import with a per-row report.
    std::fs::write(
        d.join("phones.csv"),
        "name,model,protocol\nSEP00000000000A,8845,SIP\nSEPXYZ,8845,SIP\n",
    )
    .unwrap();
    let o = pt(&d, &["phone", "import", "phones.csv"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("line 2: SEP00000000000A: added"), "{out}");
    assert!(
        out.contains("line 3: SEPXYZ: refused: invalid phone name"),
        "{out}"
    );
    assert!(out.contains("2 row(s): 1 added, 1 refused"), "{out}");

    // Regenerate: phones named, ITL rebuilt.
    let o = pt(&d, &["set", "cert", "regen", "CallManager", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "Nothing resets the phones by itself: reset these 2 phone(s) so that they download the new ITL: SEP00000000000A SEP001122334455"
        ),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("will reset"), "{}", stdout(&o));
    let o = pt(&d, &["set", "csr", "gen", "CAPF"]);
    assert!(stdout(&o).contains("-----BEGIN CERTIFICATE REQUEST-----"));
    let (ok, out) = openssl_cli(
        &d,
        &[
            "req",
            "-in",
            "data/identity/pending/CAPF.csr",
            "-verify",
            "-noout",
        ],
    );
    assert!(ok, "{out}");
    assert!(stdout(&pt(&d, &["show", "cert", "expiry", "--days", "3650"])).contains("CAPF"));
    assert!(
        pt(&d, &["phone", "delete", "SEP00000000000A"])
            .status
            .success()
    );
}

fn openssl_cli(dir: &Path, args: &[&str]) -> (bool, String) {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(o) => (o.status.success(), format!("{}{}", stdout(&o), stderr(&o))),
        Err(e) => {
            assert!(
                !phonetrust_testsupport::have_tool("openssl", "version", "openssl"),
                "openssl: {e}"
            );
            (true, format!("skipped: {e}"))
        }
    }
}

/// Kill the process after `delay_ms`; true when it had finished by itself.
fn run_and_kill(d: &Path, args: &[&str], delay_ms: u64) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
        .args(args)
        .current_dir(d)
        .env("PHONETRUST_DATA", d.join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL: no clean-up runs
    let _ = child.wait();
    finished
}

#[test]
fn killed_regeneration_leaves_the_old_or_the_new_pair() {
    let d = tmp("crash-regen");
    init_node(&d);
    let pem = |d: &Path| pt(d, &["show", "cert", "own", "CallManager", "--pem"]).stdout;
    let mut seen = vec![pem(&d)];
    let mut finished = 0;
    for i in 0..24u64 {
        if run_and_kill(
            &d,
            &["set", "cert", "regen", "CallManager", "-y"],
            (i * 7) % 120,
        ) {
            finished += 1;
        }
        // The identity loads (certificate and key match: checked on load).
        let o = pt(&d, &["show", "cert", "list", "own"]);
        assert!(o.status.success(), "after kill {i}: {}", stderr(&o));
        let now = pem(&d);
        assert!(!now.is_empty());
        if seen.last() != Some(&now) {
            seen.push(now);
        }
    }
    assert!(
        finished > 0,
        "no regeneration ever finished: raise the delays"
    );
    assert!(seen.len() > 1, "the certificate never changed");
}

#[test]
fn killed_bulk_import_leaves_none_or_all_rows() {
    let d = tmp("crash-import");
    init_node(&d);
    let rows = 3000;
    let mut csv = String::from("name,model,protocol,operation\n");
    for i in 0..rows {
        csv.push_str(&format!("SEP{i:012X},8845,SIP,install\n"));
    }
    std::fs::write(d.join("bulk.csv"), csv).unwrap();
    let count = |d: &Path| -> usize {
        let o = pt(d, &["run", "sql", "select count(*) as n from device"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().nth(2).unwrap().trim().parse().unwrap()
    };
    let mut delay = 5;
    // Kills that stopped an import before it finished: each must have left no row.
    let mut interrupted = 0;
    loop {
        let finished = run_and_kill(&d, &["phone", "import", "bulk.csv"], delay);
        let n = count(&d);
        assert!(n == 0 || n == rows, "after a kill at {delay} ms: {n} rows");
        if !finished && n == 0 {
            interrupted += 1;
        }
        if n == rows {
            break;
        }
        delay += 25;
        assert!(delay < 20_000, "the import never completed");
    }
    assert!(
        interrupted > 0,
        "no kill landed before the import finished: lower the first delay"
    );
    let o = pt(
        &d,
        &[
            "run",
            "sql",
            "select count(*) as n from device where capf_state = 'pending'",
        ],
    );
    assert!(stdout(&o).contains(&rows.to_string()));
}

#[test]
fn serve_creates_the_identity_on_first_start_and_listens() {
    let d = tmp("serve");
    let port = free_port();
    let others = [free_port(), free_port(), free_port()].map(|p| p.to_string());
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--capf-port",
            &port.to_string(),
            "--tvs-port",
            &others[0],
            "--tftp-port",
            &others[1],
            "--http-port",
            &others[2],
            "--host",
            "pub.example.test",
            "--rsa-bits",
            "1024",
        ])
        .current_dir(&d)
        .env("PHONETRUST_DATA", d.join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let mut up = false;
    while start.elapsed() < std::time::Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "serve did not listen on the CAPF port");
    let o = pt(&d, &["show", "cert", "list", "own"]);
    assert!(stdout(&o).contains("CAPF-"), "{}", stdout(&o));
    assert!(d.join("data/phonetrust.db").exists());
}

/// A port reserved without races, outside the ephemeral range
/// ([`phonetrust_testsupport::ports`]), held until this test binary exits.
fn free_port() -> u16 {
    let p = phonetrust_testsupport::ports::reserve();
    let n = p.get();
    std::mem::forget(p);
    n
}

/// `phone capf DEVICE --operation install --auth AUTH`, which must succeed.
fn schedule_install(d: &Path, device: &str, auth: &str) {
    let o = pt(
        d,
        &[
            "phone",
            "capf",
            device,
            "--operation",
            "install",
            "--auth",
            auth,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `serve` on loopback with the given ports; killed on drop.
struct Server(std::process::Child);

impl Server {
    fn start(d: &Path, capf_port: u16) -> Self {
        Self::start_with(
            d,
            capf_port,
            &["--tvs-port", "0", "--tftp-port", "0", "--http-port", "0"],
        )
    }

    /// `serve` with `extra` arguments (a port option given as "0" gets a reserved port);
    /// its log (`-v`) goes to `<d>/serve.log`. When serve exits or does not listen
    /// within 30 s, the test fails with serve's exit status and log.
    fn start_with(d: &Path, capf_port: u16, extra: &[&str]) -> Self {
        Self::spawn(d, capf_port, extra, true)
    }

    /// As [`Server::start_with`], at serve's default log level (no `-v`).
    fn start_quiet(d: &Path, capf_port: u16, extra: &[&str]) -> Self {
        Self::spawn(d, capf_port, extra, false)
    }

    fn spawn(d: &Path, capf_port: u16, extra: &[&str], verbose: bool) -> Self {
        Self::spawn_ready(d, capf_port, extra, verbose, capf_port, "CAPF")
    }

    /// `serve` of a node that runs no CAPF: ready when it listens on `http_port`.
    fn start_without_capf(d: &Path, http_port: u16) -> Self {
        let http = http_port.to_string();
        Self::spawn_ready(
            d,
            free_port(),
            &["--tvs-port", "0", "--tftp-port", "0", "--http-port", &http],
            true,
            http_port,
            "HTTP",
        )
    }

    /// `serve`, ready when it listens on TCP port `ready` (`what` names it in failures).
    fn spawn_ready(
        d: &Path,
        capf_port: u16,
        extra: &[&str],
        verbose: bool,
        ready: u16,
        what: &str,
    ) -> Self {
        let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        for i in 1..args.len() {
            if args[i] == "0" && args[i - 1].ends_with("-port") {
                args[i] = free_port().to_string();
            }
        }
        let log = std::fs::File::create(d.join("serve.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
            .env("PHONETRUST_WEB_PORT", "0")
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--capf-port",
                &capf_port.to_string(),
            ])
            .args(verbose.then_some("-v"))
            .args(&args)
            .current_dir(d)
            .env("PHONETRUST_DATA", d.join("data"))
            .stdout(std::fs::File::create(d.join("serve.out")).unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_listening(
            &mut child,
            ("127.0.0.1", ready),
            d,
            &format!("serve {args:?} ({what} port)"),
        );
        Self(child)
    }
}

/// Wait (at most 30 s) until `serve` (`child`, its log in `<d>/serve.log`) accepts TCP
/// connections on `addr`; when it exits first or never does, fail with its log.
fn wait_listening(child: &mut std::process::Child, addr: (&str, u16), d: &Path, what: &str) {
    let start = std::time::Instant::now();
    let log = || std::fs::read_to_string(d.join("serve.log")).unwrap_or_default();
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening on {}:{}; its log:\n{}",
                addr.0,
                addr.1,
                log()
            );
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!(
                "{what} did not listen on {}:{} within 30 s; its log:\n{}",
                addr.0,
                addr.1,
                log()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The README's walk-through: schedule an operation, run the simulated phone, watch the
/// status; MIC authentication with the simulated factory's CA in CAPF-trust; the legacy
/// TLS 1.0 `AES128-SHA` handshake checked with `openssl s_client`.
#[test]
fn phone_sim_enrols_against_serve() {
    let d = tmp("phonesim");
    init_node(&d);
    let port = free_port();
    let server = Server::start(&d, port);
    let addr = format!("127.0.0.1:{port}");
    let sim = |args: &[&str]| {
        let mut all = vec!["phone-sim"];
        all.extend_from_slice(args);
        pt(&d, &all)
    };

    // Null string, install.
    assert!(
        pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"])
            .status
            .success()
    );
    schedule_install(&d, "SEP001122334455", "null-string");
    let o = pt(&d, &["phone", "show", "SEP001122334455"]);
    assert!(
        stdout(&o).contains("Certificate Operation Status: Operation Pending"),
        "{}",
        stdout(&o)
    );
    let o = sim(&["capf", "--mac", "001122334455", "--server", &addr]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).trim(), "SEP001122334455: LSC: Installed");
    let shown = stdout(&pt(&d, &["phone", "show", "SEP001122334455"]));
    assert!(
        shown.contains("Certificate Operation Status: Upgrade Success"),
        "{shown}"
    );
    let sim_shown = stdout(&sim(&["show", "SEP001122334455"]));
    let md5 = shown
        .lines()
        .find_map(|l| l.strip_prefix("LSC MD5: "))
        .expect("LSC MD5 line")
        .trim()
        .to_string();
    assert!(sim_shown.contains(&format!("MD5 {md5})")), "{sim_shown}");
    assert!(sim_shown.contains("  LSC: Installed"), "{sim_shown}");
    assert!(d.join("phonetrust-phones/SEP001122334455/lsc.key").exists());

    // The CAPF report: one line per phone, the LSC's issuer quoted (it holds commas).
    let o = pt(&d, &["report", "capf", "--csv"]);
    let csv = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        csv.starts_with("Device Name,Model,LSC Status,LSC Issuer,LSC Serial,LSC Valid Until,Operation,Authentication Mode,Status\n"),
        "{csv}"
    );
    let line = csv
        .lines()
        .find(|l| l.starts_with("SEP001122334455,"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(
        line.starts_with("SEP001122334455,8845,Installed,\"CN=CAPF-")
            && line.ends_with(",Upgrade Success"),
        "{line}"
    );
    let table = stdout(&pt(&d, &["report", "capf"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("SEP001122334455") && l.contains("Installed")),
        "{table}"
    );

    // A secure profile for a phone with an LSC: nothing to warn of; for one without an
    // LSC or a trusted MIC: it will not register securely, said so.
    let auth = "Standard Authenticated Profile";
    let o = pt(&d, &["phone", "set", "SEP001122334455", "--profile", auth]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("warning"), "{}", stdout(&o));
    let o = pt(
        &d,
        &[
            "phone",
            "add",
            "SEP0011223344BB",
            "--model",
            "8845",
            "--profile",
            auth,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("warning: SEP0011223344BB uses Standard Authenticated Profile (authenticated) but has no LSC and no MIC that chains to CAPF-trust: it will not register securely"),
        "{}",
        stdout(&o)
    );
    // Imported: one warning line for the rows with a secure profile.
    std::fs::write(
        d.join("secure.csv"),
        "name,model,protocol,profile\nSEP0011223344C1,8845,SIP,Standard Encrypted Profile\nSEP0011223344C2,8845,SIP,Standard Non-Secure Profile\n",
    )
    .unwrap();
    let o = pt(&d, &["phone", "import", "secure.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    let warning = said
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        warning.starts_with(
            "warning: 1 phone(s) have an authenticated or encrypted profile but no LSC yet"
        ) && warning.ends_with(": SEP0011223344C1"),
        "{warning}"
    );
    let o = pt(
        &d,
        &[
            "phone",
            "set",
            "SEP0011223344BB",
            "--profile",
            "Standard Non-Secure Profile",
        ],
    );
    assert!(!stdout(&o).contains("warning"), "{}", stdout(&o));
    let o = pt(
        &d,
        &[
            "phone",
            "set",
            "SEP001122334455",
            "--profile",
            "Standard Non-Secure Profile",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // Unknown phone: refused, the phone shows LSC: Failed.
    let o = sim(&["capf", "--mac", "0011223344FF", "--server", &addr]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("SEP0011223344FF: LSC: Failed"),
        "{}",
        stdout(&o)
    );

    // MIC authentication: the factory CA goes into CAPF-trust first.
    assert!(
        pt(&d, &["phone", "add", "SEP0011223344AA"])
            .status
            .success()
    );
    schedule_install(&d, "SEP0011223344AA", "mic");
    let o = sim(&[
        "capf",
        "--mac",
        "0011223344AA",
        "--server",
        &addr,
        "--certificate",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("LSC: Failed"), "{}", stdout(&o));
    let status = stdout(&pt(&d, &["phone", "show", "SEP0011223344AA"]));
    assert!(status.contains("Upgrade Failed: Invalid MIC"), "{status}");
    let o = sim(&["factory"]);
    assert!(
        stdout(&o).contains("set cert import trust CAPF-trust"),
        "{}",
        stdout(&o)
    );
    let o = pt(
        &d,
        &[
            "set",
            "cert",
            "import",
            "trust",
            "CAPF-trust",
            "phonetrust-phones/manufacturer-ca.pem",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    schedule_install(&d, "SEP0011223344AA", "mic");
    // The server reads CAPF-trust again after at most 5 seconds.
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let o = sim(&[
        "capf",
        "--mac",
        "0011223344AA",
        "--server",
        &addr,
        "--certificate",
        "--retries",
        "0",
    ]);
    let installed = stdout(&o).contains("SEP0011223344AA: LSC: Installed");
    assert!(installed, "{}", stdout(&o));
    // The MIC CAPF saw chains to the factory CA only: deleting it is refused (the phone
    // named), and done with --force.
    let ca_name = stdout(&pt(&d, &["show", "cert", "list", "trust", "CAPF-trust"]))
        .lines()
        .find(|l| l.starts_with("CAPF-trust") && !l.contains("CN=CAPF-"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .expect("the factory CA in CAPF-trust");
    let o = pt(
        &d,
        &["set", "cert", "delete", "trust", "CAPF-trust", &ca_name],
    );
    assert_one_line_error(&o, "phone(s) authenticate to CAPF through");
    assert!(stderr(&o).contains("SEP0011223344AA"), "{}", stderr(&o));
    let o = pt(
        &d,
        &[
            "set",
            "cert",
            "delete",
            "trust",
            "CAPF-trust",
            &ca_name,
            "--force",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("warning: "), "{}", stdout(&o));

    // Old firmware: TLS 1.0 with AES128-SHA, by an independent client.
    let capf_pem = stdout(&pt(&d, &["show", "cert", "own", "CAPF", "--pem"]));
    std::fs::write(d.join("capf.pem"), capf_pem).unwrap();
    let o = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr,
            "-tls1",
            "-cipher",
            "AES128-SHA:@SECLEVEL=0",
            "-CAfile",
            "capf.pem",
        ])
        .current_dir(&d)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(out.contains("Protocol  : TLSv1\n"), "{out}");
    assert!(out.contains("Cipher    : AES128-SHA"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    drop(server);
}

// ---- mixed mode, TVS and rollover: one scenario per section of 004_* ----

fn pt_in(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
        .args(args)
        .current_dir(dir)
        .env("PHONETRUST_DATA", dir.join("data"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A running node for the scenarios: `serve` with known HTTP and TVS ports, one phone
/// known to it.
struct Cluster {
    d: TestDir,
    capf: String,
    http: String,
    tvs: String,
    _server: Server,
}

impl Cluster {
    fn start(tag: &str) -> Self {
        let d = tmp(tag);
        init_node(&d);
        let o = pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = pt(&d, &["phone", "add", "SEP001122334466", "--model", "7960"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (capf, http, tvs) = (free_port(), free_port(), free_port());
        let server = Server::start_with(
            &d,
            capf,
            &[
                "--tvs-port",
                &tvs.to_string(),
                "--tftp-port",
                "0",
                "--http-port",
                &http.to_string(),
            ],
        );
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", tvs)).is_err() {
            assert!(start.elapsed() < std::time::Duration::from_secs(30));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            capf: format!("127.0.0.1:{capf}"),
            http: format!("127.0.0.1:{http}"),
            tvs: format!("127.0.0.1:{tvs}"),
            d,
            _server: server,
        }
    }

    /// Boot a simulated phone; (succeeded, its output).
    fn boot(&self, mac: &str, extra: &[&str]) -> (bool, String) {
        let mut args = vec![
            "phone-sim",
            "boot",
            "--mac",
            mac,
            "--http",
            &self.http,
            "--tvs",
            &self.tvs,
        ];
        args.extend_from_slice(extra);
        let o = pt(&self.d, &args);
        (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
    }

    /// The phone's trust list `name` (`CTLFile.tlv`, `ITLFile.tlv`) from its flash.
    fn phone_list(&self, mac: &str, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.d.join(format!("phonetrust-phones/SEP{mac}/{name}"))).ok()
    }

    /// The CTL the node serves, as an independent client (curl over HTTP) gets it, once
    /// `serve` has followed the last change (it looks every second).
    fn served_ctl(&self) -> Option<Vec<u8>> {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let o = Command::new("curl")
            .args(["-sf", &format!("http://{}/CTLFile.tlv", self.http)])
            .output()
            .unwrap();
        o.status.success().then_some(o.stdout)
    }

    fn own_der(&self, name: &str) -> Vec<u8> {
        let o = pt(&self.d, &["show", "cert", "own", name, "--der"]);
        assert!(o.status.success(), "{}", stderr(&o));
        o.stdout
    }

    fn param(&self, name: &str) -> String {
        let o = pt(
            &self.d,
            &[
                "run",
                "sql",
                &format!("select paramvalue from processconfig where paramname='{name}'"),
            ],
        );
        stdout(&o)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Wait until `serve`'s log holds `needle` `n` times (the services follow changes
    /// within a second).
    fn wait_log(&self, needle: &str, n: usize) {
        let start = std::time::Instant::now();
        loop {
            let log = std::fs::read_to_string(self.d.join("serve.log")).unwrap_or_default();
            if log.matches(needle).count() >= n {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "serve.log never had '{needle}' {n} times:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Give the running services time to follow a change (they look every second).
    fn settle(&self) {
        std::thread::sleep(std::time::Duration::from_millis(2500));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.d.join("serve.log")).unwrap_or_default()
    }
}

/// (role codes in record order, DER of the signer).
fn ctl_layout(bytes: &[u8]) -> (Vec<u16>, Vec<u8>) {
    use phonetrust_proto::trustlist;
    let list = trustlist::parse(bytes).unwrap();
    list.verify(bytes).unwrap();
    let roles = list
        .plain_records()
        .map(|r| r.role.unwrap().code())
        .collect();
    let signer = list.signer_cert().unwrap().to_der().unwrap();
    (roles, signer)
}

/// 004, "from non-secure to mixed mode (tokenless CTL)".
#[test]
fn scenario_non_secure_to_mixed_mode_tokenless() {
    let c = Cluster::start("mixed");
    // Given a server that is down first (as DHCP option 150 may), the phone moves on.
    let dead = format!("127.0.0.1:{}", free_port());
    let o = pt(
        &c.d,
        &[
            "phone-sim",
            "boot",
            "--mac",
            "001122334455",
            "--http",
            &dead,
            "--http",
            &c.http,
            "--tvs",
            &c.tvs,
        ],
    );
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!("HTTP Timeout : CTLFile.tlv ({dead}"))
            && out.contains("trying the next server"),
        "{out}"
    );
    assert!(out.contains("File not found : CTLFile.tlv"), "{out}");
    let o = pt(&c.d, &["show", "ctl"]);
    assert!(!o.status.success());
    assert!(stdout(&o).starts_with("Length of CTL file: 0\nCTL File not found"));
    assert_eq!(c.param("ClusterSecurityMode"), "0");

    // Refused without "y".
    let o = pt_in(&c.d, &["utils", "ctl", "set-cluster", "mixed-mode"], "n\n");
    assert!(!o.status.success());
    assert!(c.served_ctl().is_none());
    let o = pt(&c.d, &["utils", "ctl", "set-cluster", "mixed-mode", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "This operation sets the cluster to Mixed mode. Do you want to continue? (y/n):",
        "Moving Cluster to Mixed Mode",
        "Cluster set to Mixed Mode",
        "Services that reload: TFTP and HTTP",
    ] {
        assert!(text.contains(line), "{text}");
    }
    assert_eq!(c.param("ClusterSecurityMode"), "1");

    // The tokenless CTL: signed by CallManager, listed as SAST and CCM+TFTP, then CAPF.
    let ctl = c.served_ctl().unwrap();
    let (roles, signer) = ctl_layout(&ctl);
    assert_eq!(roles, [0, 2, 4]);
    assert_eq!(signer, c.own_der("CallManager"));
    let shown = stdout(&pt(&c.d, &["show", "ctl"]));
    assert!(
        shown.contains("This etoken was used to sign the CTL file."),
        "{shown}"
    );
    assert!(shown.contains("The CTL file was verified successfully."));
    assert!(shown.contains(&format!("Length of CTL file: {}", ctl.len())));

    // TVS caches the CTL's records.
    c.wait_log(
        "CTLFile.tlv has been modified. Recaching CTL Certificate Cache",
        1,
    );

    // Phones download it (trust on first use) and stay registered.
    let (ok, out) = c.boot("001122334455", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("CTLSEP001122334455.tlv(HTTP)"), "{out}");
    assert_eq!(c.phone_list("001122334455", "CTLFile.tlv").unwrap(), ctl);

    // Back to non-secure: the CTL left behind is reported, then deleted.
    let o = pt(
        &c.d,
        &["utils", "ctl", "set-cluster", "non-secure-mode", "-y"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.param("ClusterSecurityMode"), "0");
    let shown = stdout(&pt(&c.d, &["show", "ctl"]));
    assert!(shown.contains("it was left behind"), "{shown}");
    let o = pt(&c.d, &["file", "delete", "tftp", "CTLFile.tlv", "-y"]);
    let text = stdout(&o);
    assert!(text.contains("Delete the File CTLFile.tlv?"), "{text}");
    assert!(text.contains("files: found = 1, deleted = 1"), "{text}");
    assert!(c.served_ctl().is_none());
    // The phone keeps its CTL (deleted on the phone by hand only).
    let (ok, out) = c.boot("001122334455", &[]);
    assert!(ok, "{out}");
    assert_eq!(c.phone_list("001122334455", "CTLFile.tlv").unwrap(), ctl);
}

/// 004, "regenerating certificates for the tokenless CTL": CallManager regenerated, `utils
/// ctl update CTLFile`; phones that can ask TVS accept the CTL and ITL signed by the new
/// certificate (TVS finds it: roles 0 and 2), phones that cannot refuse them and keep the
/// old lists until reset by hand. TVS answers as its log in the seed shows.
#[test]
fn scenario_regenerate_callmanager_then_update_ctl() {
    let c = Cluster::start("regen");
    let o = pt(&c.d, &["utils", "ctl", "set-cluster", "mixed-mode", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    for (mac, extra) in [
        ("001122334455", &[][..]),
        ("001122334466", &["--no-tvs"][..]),
    ] {
        let (ok, out) = c.boot(mac, extra);
        assert!(ok, "{out}");
        assert!(c.phone_list(mac, "CTLFile.tlv").is_some());
    }
    let old_ctl = c.served_ctl().unwrap();
    let old_cm = c.own_der("CallManager");
    // 7940s cannot ask TVS (SEP001122334466 is one too): the question names them (mixed
    // mode, a signer regenerated).
    let o = pt(
        &c.d,
        &["phone", "add", "SEP0011223344EE", "--model", "7940"],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let o = pt(&c.d, &["set", "cert", "regen", "CallManager", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    assert!(
        said.contains("; 2 phone(s) cannot ask TVS about a new signer (models 7935, 7936, 7937, 7940, 7960): in mixed mode they refuse the new CTL and ITL until their trust lists are deleted on the phone by hand: SEP001122334466 SEP0011223344EE"),
        "{said}"
    );
    let o = pt(&c.d, &["phone", "delete", "SEP0011223344EE"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Issue 14.3: the CTL is not rebuilt by this, and the message says so and what to
    // run; nothing "will reset": the phones to reset are named.
    assert!(
        said.contains("The CTL still lists the old CallManager certificate and was NOT rebuilt: run `phonetrust utils ctl update CTLFile`"),
        "{said}"
    );
    assert!(
        said.contains("reset these 3 phone(s), after the CTL update, so that they download the new ITL and CTL: SEP001122334455 SEP001122334466 SEP0011223344EE"),
        "{said}"
    );
    assert!(
        !said.contains("will reset") && !said.contains("CTL) is rebuilt"),
        "{said}"
    );
    c.settle();
    assert_eq!(
        c.served_ctl().unwrap(),
        old_ctl,
        "the CTL waits for utils ctl update"
    );
    let new_cm = c.own_der("CallManager");
    assert_ne!(old_cm, new_cm);
    let o = pt(&c.d, &["utils", "ctl", "update", "CTLFile", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "This operation updates the CTLFile. Do you want to continue? (y/n):",
        "Updating CTL file",
        "CTL file Updated",
    ] {
        assert!(text.contains(line), "{text}");
    }
    let new_ctl = c.served_ctl().unwrap();
    let (roles, signer) = ctl_layout(&new_ctl);
    assert_eq!((roles, signer), (vec![0, 2, 4], new_cm.clone()));
    // TVS re-caches the CTL (the new CallManager, by serial and subject).
    let serial = phonetrust_proto::codec::hex(
        &phonetrust_proto::cert::serial_bytes(&openssl::x509::X509::from_der(&new_cm).unwrap())
            .unwrap(),
    )
    .to_ascii_uppercase();
    c.wait_log(
        &format!("tvs_sql_get_all_CTL_certificate - Unique Key used for Caching :: {serial}"),
        2,
    );
    assert!(
        c.log()
            .contains("CTLFile.tlv has been modified. Recaching CTL Certificate Cache")
    );
    c.settle();

    // TVS unreachable: the phone keeps its old CTL and says so.
    let closed = format!("127.0.0.1:{}", free_port());
    let o = pt(
        &c.d,
        &[
            "phone-sim",
            "boot",
            "--mac",
            "001122334455",
            "--http",
            &c.http,
            "--tvs",
            &closed,
        ],
    );
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("Trust List Update Failed: TVS unreachable; keeping the current CTL"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        c.phone_list("001122334455", "CTLFile.tlv").unwrap(),
        old_ctl
    );

    // A phone with TVS: the CTL's and the ITL's new signer is unknown to its lists; TVS
    // vouches; it takes both and stays registered.
    let (ok, out) = c.boot("001122334455", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("TVS: signer of the new CTL verified"), "{out}");
    // The new ITL's signer is listed by the CTL the phone has just taken.
    assert_eq!(
        ctl_layout(&c.phone_list("001122334455", "ITLFile.tlv").unwrap()).1,
        new_cm
    );
    assert_eq!(
        c.phone_list("001122334455", "CTLFile.tlv").unwrap(),
        new_ctl
    );
    let log = c.log();
    assert!(
        log.contains("tvsHandleQueryCertReq : Subject Name is:"),
        "{log}"
    );
    assert!(
        log.contains("Found entry {rolecount : 2} {role : 0} {role : 2}"),
        "{log}"
    );

    // A phone without TVS refuses both and keeps the old CTL: reset by hand.
    let (ok, out) = c.boot("001122334466", &["--no-tvs"]);
    assert!(!ok, "{out}");
    assert!(out.contains("Trust List Update Failed"), "{out}");
    assert_eq!(
        c.phone_list("001122334466", "CTLFile.tlv").unwrap(),
        old_ctl
    );
}

/// ITL and CTL recovery: after a CallManager regeneration a phone that cannot ask TVS
/// takes lists signed by ITLRecovery (`utils ctl reset localkey`, `utils itl reset
/// localkey`), then the lists signed by the new CallManager again.
#[test]
fn scenario_itl_and_ctl_recovery() {
    let c = Cluster::start("recover");
    let o = pt(&c.d, &["utils", "ctl", "set-cluster", "mixed-mode", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    let mac = "001122334466";
    let (ok, out) = c.boot(mac, &["--no-tvs"]);
    assert!(ok, "{out}");
    let o = pt(&c.d, &["set", "cert", "regen", "CallManager", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(&c.d, &["utils", "ctl", "update", "CTLFile", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    let (ok, _) = c.boot(mac, &["--no-tvs"]);
    assert!(!ok, "the new signer is unknown to this phone");

    let o = pt(&c.d, &["utils", "ctl", "reset", "localkey", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(&c.d, &["utils", "itl", "reset", "localkey", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.param("ItlSigner"), "1");
    let recovery = c.own_der("ITLRecovery");
    let (roles, signer) = ctl_layout(&c.served_ctl().unwrap());
    assert_eq!((roles, signer), (vec![0, 2, 4], recovery.clone()));
    c.settle();
    let (ok, out) = c.boot(mac, &["--no-tvs"]);
    assert!(ok, "{out}");
    let (_, signer) = ctl_layout(&c.phone_list(mac, "ITLFile.tlv").unwrap());
    assert_eq!(signer, recovery);

    // And back to the CallManager signer: the recovery-signed lists list it.
    let o = pt(&c.d, &["utils", "ctl", "update", "CTLFile", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(&c.d, &["utils", "itl", "restore", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cm = c.own_der("CallManager");
    c.settle();
    let (ok, out) = c.boot(mac, &["--no-tvs"]);
    assert!(ok, "{out}");
    assert_eq!(ctl_layout(&c.phone_list(mac, "ITLFile.tlv").unwrap()).1, cm);
    assert_eq!(ctl_layout(&c.phone_list(mac, "CTLFile.tlv").unwrap()).1, cm);
}

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Two SoftHSM2 tokens standing in for the USB eTokens of 004 (`SAST-ADN0054f509`,
/// `SAST-ADN008580ef`), each with an RSA-2048 key and its certificate; PIN Cisco123.
/// Returns the SoftHSM2 config to pass as `SOFTHSM2_CONF`, or `None` (skip) when SoftHSM2
/// or pkcs11-tool is missing outside CI.
fn softhsm_tokens(d: &Path) -> Option<PathBuf> {
    let have = Path::new(SOFTHSM).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok()
        && Command::new("pkcs11-tool")
            .arg("--version")
            .output()
            .is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs softhsm2 and opensc (pkcs11-tool): see .ci/setup"
        );
        eprintln!("skipping: no SoftHSM2 / pkcs11-tool");
        return None;
    }
    let hsm = d.join("hsm");
    std::fs::create_dir_all(hsm.join("tokens")).unwrap();
    let conf = hsm.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            hsm.join("tokens").display()
        ),
    )
    .unwrap();
    let run = |prog: &str, args: &[&str]| {
        let o = Command::new(prog)
            .args(args)
            .current_dir(&hsm)
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        assert!(o.status.success(), "{prog} {args:?}: {}", stderr(&o));
    };
    for t in ["0054f509", "008580ef"] {
        let label = format!("SAST-ADN{t}");
        run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                &label,
                "--pin",
                "Cisco123",
                "--so-pin",
                "12345678",
            ],
        );
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{t}.key"),
                "-out",
                &format!("{t}.pem"),
                "-days",
                "365",
                "-subj",
                &format!("/O=Cisco Systems/OU=IPCBU/CN=SAST-ADN{t}"),
            ],
        );
        run(
            "openssl",
            &[
                "x509",
                "-in",
                &format!("{t}.pem"),
                "-outform",
                "der",
                "-out",
                &format!("{t}.der"),
            ],
        );
        run(
            "softhsm2-util",
            &[
                "--import",
                &format!("{t}.key"),
                "--token",
                &label,
                "--label",
                "sast",
                "--id",
                "01",
                "--pin",
                "Cisco123",
            ],
        );
        run(
            "pkcs11-tool",
            &[
                "--module",
                SOFTHSM,
                "--token-label",
                &label,
                "--login",
                "--pin",
                "Cisco123",
                "--write-object",
                &format!("{t}.der"),
                "--type",
                "cert",
                "--label",
                "sast",
                "--id",
                "01",
            ],
        );
    }
    Some(conf)
}

fn pt_env<V: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[&str], env: &[(&str, V)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_phonetrust"));
    c.env("PHONETRUST_WEB_PORT", "0");
    c.args(args)
        .current_dir(dir)
        .env("PHONETRUST_DATA", dir.join("data"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn token_cert_der(d: &Path, t: &str) -> Vec<u8> {
    std::fs::read(d.join(format!("hsm/{t}.der"))).unwrap()
}

/// 004, "from the tokenless solution to hardware eTokens": the CTL client refuses a token
/// the tokenless CTL does not list; after `file delete tftp CTLFile.tlv` and importing the
/// token certificates into Phone-SAST-trust it signs the CTL with a token, and phones
/// accept it because TVS vouches for the token (Phone-SAST-trust, role SAST).
#[test]
fn scenario_tokenless_to_hardware_tokens() {
    let c = Cluster::start("to-token");
    let Some(conf) = softhsm_tokens(&c.d) else {
        return;
    };
    let env = [("SOFTHSM2_CONF", conf.as_path())];
    let client = [
        "ctl-client",
        "-y",
        "--pin",
        "Cisco123",
        "--module",
        SOFTHSM,
        "--token",
        "SAST-ADN008580ef",
        "--token",
        "SAST-ADN0054f509",
    ];
    let o = pt(&c.d, &["utils", "ctl", "set-cluster", "mixed-mode", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    let (ok, out) = c.boot("001122334455", &[]);
    assert!(ok, "{out}");
    let tokenless = c.served_ctl().unwrap();

    let o = pt_env(&c.d, &client, &env);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("The Security Token you have inserted does not exist in the CTL File"),
        "{}",
        stderr(&o)
    );
    assert_eq!(c.served_ctl().unwrap(), tokenless, "CTL unchanged");

    let o = pt(&c.d, &["file", "delete", "tftp", "CTLFile.tlv", "-y"]);
    assert!(stdout(&o).contains("files: found = 1, deleted = 1"));
    for t in ["0054f509", "008580ef"] {
        let f = c.d.join(format!("hsm/{t}.pem"));
        let o = pt(
            &c.d,
            &[
                "set",
                "cert",
                "import",
                "trust",
                "Phone-SAST-trust",
                f.to_str().unwrap(),
                "-y",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = pt_env(&c.d, &client, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("No CTL File exists on the server but the Call Manager Cluster Security Mode is in Secure Mode."),
        "{}",
        stdout(&o)
    );
    let ctl = c.served_ctl().unwrap();
    let (roles, signer) = ctl_layout(&ctl);
    assert_eq!(roles, [0, 0, 2, 4], "two tokens as SAST, CCM+TFTP, CAPF");
    assert_eq!(
        signer,
        token_cert_der(&c.d, "008580ef"),
        "the first token inserted signs"
    );
    let shown = stdout(&pt(&c.d, &["show", "ctl"]));
    assert!(
        shown.contains("This etoken was used to sign the CTL file."),
        "{shown}"
    );
    assert!(
        shown.contains("This etoken was not used to sign the CTL file."),
        "{shown}"
    );
    assert!(
        shown.contains("The CTL file was verified successfully."),
        "{shown}"
    );

    c.settle();
    let (ok, out) = c.boot("001122334455", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("TVS: signer of the new CTL verified"), "{out}");
    assert_eq!(c.phone_list("001122334455", "CTLFile.tlv").unwrap(), ctl);
    assert!(
        c.log().contains("Found entry {rolecount : 1} {role : 0}"),
        "{}",
        c.log()
    );
}

/// 004, "from hardware eTokens to the tokenless solution": `utils ctl update CTLFile`
/// replaces the token-signed CTL by one signed with the CallManager certificate and
/// without the token records; phones take it because the token CTL lists that certificate
/// (CCM+TFTP).
#[test]
fn scenario_hardware_tokens_to_tokenless() {
    let c = Cluster::start("to-tokenless");
    let Some(conf) = softhsm_tokens(&c.d) else {
        return;
    };
    let env = [("SOFTHSM2_CONF", conf.as_path())];
    let o = pt_env(
        &c.d,
        &[
            "ctl-client",
            "-y",
            "--pin",
            "Cisco123",
            "--module",
            SOFTHSM,
            "--token",
            "SAST-ADN0054f509",
            "--token",
            "SAST-ADN008580ef",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Cluster set to Mixed Mode"));
    assert_eq!(c.param("ClusterSecurityMode"), "1");
    let (_, signer) = ctl_layout(&c.served_ctl().unwrap());
    assert_eq!(signer, token_cert_der(&c.d, "0054f509"));
    let (ok, out) = c.boot("001122334466", &["--no-tvs"]);
    assert!(ok, "{out}");

    let o = pt(&c.d, &["utils", "ctl", "update", "CTLFile", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ctl = c.served_ctl().unwrap();
    let (roles, signer) = ctl_layout(&ctl);
    assert_eq!((roles, signer), (vec![0, 2, 4], c.own_der("CallManager")));
    // Even a phone that cannot ask TVS takes it: its CTL lists CallManager as CCM+TFTP.
    let (ok, out) = c.boot("001122334466", &["--no-tvs"]);
    assert!(ok, "{out}");
    assert!(!out.contains("TVS:"), "{out}");
    assert_eq!(c.phone_list("001122334466", "CTLFile.tlv").unwrap(), ctl);
}

/// The ITL after a CallManager regeneration (non-secure cluster, no CTL): TVS vouches for
/// the new signer; a phone that cannot ask TVS keeps its ITL and is told why.
#[test]
fn scenario_regenerate_callmanager_itl_through_tvs() {
    let c = Cluster::start("itl-tvs");
    for (mac, extra) in [
        ("001122334455", &[][..]),
        ("001122334466", &["--no-tvs"][..]),
    ] {
        let (ok, out) = c.boot(mac, extra);
        assert!(ok, "{out}");
    }
    let old_itl = c.phone_list("001122334466", "ITLFile.tlv").unwrap();
    let o = pt(&c.d, &["set", "cert", "regen", "CallManager", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    let (ok, out) = c.boot("001122334455", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("TVS: signer of the new ITL verified"), "{out}");
    let (_, signer) = ctl_layout(&c.phone_list("001122334455", "ITLFile.tlv").unwrap());
    assert_eq!(signer, c.own_der("CallManager"));
    let (ok, out) = c.boot("001122334466", &["--no-tvs"]);
    assert!(!ok, "{out}");
    assert!(out.contains("Trust List Update Failed"), "{out}");
    assert_eq!(
        c.phone_list("001122334466", "ITLFile.tlv").unwrap(),
        old_itl
    );
}

/// One configuration for every command: the command line beats the environment, which
/// beats the config file, which beats the defaults; a malformed file is an error naming
/// its line.
#[test]
fn configuration_layers_for_every_command() {
    let d = tmp("config");
    init_node(&d);
    let good = format!("sqlite://{}", d.join("data/phonetrust.db").display());
    let bad = format!("sqlite://{}", d.join("no-such-dir/x.db").display());
    let o = pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lists = |o: &Output| o.status.success() && stdout(o).contains("SEP001122334455");

    // The file's database beats the default …
    std::fs::write(
        d.join("data/phonetrust.toml"),
        format!("[server]\ndatabase = \"{bad}\"\n"),
    )
    .unwrap();
    let o = pt(&d, &["phone", "list"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-dir"), "{}", stderr(&o));
    // … the environment beats the file, the command line beats both.
    assert!(lists(&pt_env(
        &d,
        &["phone", "list"],
        &[("PHONETRUST_DATABASE", &good)]
    )));
    assert!(lists(&pt(&d, &["phone", "list", "--database", &good])));
    assert!(lists(&pt_env(
        &d,
        &["--database", &good, "phone", "list"],
        &[("PHONETRUST_DATABASE", &bad)]
    )));
    // `serve` takes the same database as the other commands.
    let o = pt(
        &d,
        &[
            "serve",
            "--capf-port",
            "0",
            "--tvs-port",
            "0",
            "--tftp-port",
            "0",
            "--http-port",
            "0",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-dir"), "{}", stderr(&o));

    // A malformed file or an unknown key: one line naming the file and the line.
    std::fs::write(
        d.join("data/phonetrust.toml"),
        "[server]\nbind = 127.0.0.1\n",
    )
    .unwrap();
    assert_one_line_error(&pt(&d, &["phone", "list"]), "phonetrust.toml: line 2");
    std::fs::write(
        d.join("data/phonetrust.toml"),
        "[capf]\nport = 3804\nmax_session = 5\n",
    )
    .unwrap();
    assert_one_line_error(&pt(&d, &["show", "ctl"]), "line 3, column 1");
    // A config file named but missing.
    std::fs::remove_file(d.join("data/phonetrust.toml")).unwrap();
    assert_one_line_error(
        &pt(&d, &["phone", "list", "--config", "nope.toml"]),
        "nope.toml",
    );
}

/// `serve --config X` (whose `[provision] static_dir` is elsewhere) or `serve --static-dir
/// Y`, and the admin commands run without those options: the CTL they build is the one
/// `serve` hands out, and `file delete tftp CTLFile.tlv` deletes that one.
#[test]
fn the_ctl_is_where_serve_looks_whatever_its_options() {
    for (tag, extra) in [
        ("ctl-config", &["--config", "site.toml"][..]),
        ("ctl-static", &["--static-dir", "elsewhere"][..]),
    ] {
        let d = tmp(tag);
        init_node(&d);
        std::fs::write(d.join("site.toml"), "[provision]\nstatic_dir = \"files\"\n").unwrap();
        let http = free_port();
        let http_s = http.to_string();
        let mut args = vec![
            "--tvs-port",
            "0",
            "--tftp-port",
            "0",
            "--http-port",
            &http_s,
        ];
        args.extend_from_slice(extra);
        let _server = Server::start_with(&d, free_port(), &args);
        let served = || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let o = Command::new("curl")
                .args(["-sf", &format!("http://127.0.0.1:{http}/CTLFile.tlv")])
                .output()
                .unwrap();
            o.status.success().then_some(o.stdout)
        };
        assert_eq!(served(), None, "{tag}: no CTL yet");
        let o = pt(&d, &["utils", "ctl", "set-cluster", "mixed-mode", "-y"]);
        assert!(o.status.success(), "{tag}: {}", stderr(&o));
        let ctl = served().unwrap_or_else(|| panic!("{tag}: the new CTL is not served"));
        let shown = stdout(&pt(&d, &["show", "ctl"]));
        assert!(
            shown.contains(&format!("Length of CTL file: {}", ctl.len())),
            "{tag}: {shown}"
        );
        let o = pt(&d, &["file", "delete", "tftp", "CTLFile.tlv", "-y"]);
        assert!(o.status.success(), "{tag}: {}", stdout(&o));
        assert_eq!(served(), None, "{tag}: deleted");
    }
}

/// A phone authenticates to CAPF as its configuration says (`capfAuthMode`), as a real
/// phone does: after a boot whose config says "by existing certificate", `phone-sim capf`
/// without `--certificate` signs with its LSC and the troubleshoot succeeds.
#[test]
fn phone_sim_authenticates_as_its_configuration_says() {
    let c = Cluster::start("authmode");
    let mac = "001122334455";
    let capf = |extra: &[&str]| {
        let mut args = vec!["phone-sim", "capf", "--mac", mac, "--server", &c.capf];
        args.extend_from_slice(extra);
        pt(&c.d, &args)
    };
    schedule_install(&c.d, "SEP001122334455", "null-string");
    let o = capf(&[]);
    assert_eq!(
        stdout(&o).trim(),
        "SEP001122334455: LSC: Installed",
        "{}",
        stderr(&o)
    );
    let o = pt(
        &c.d,
        &[
            "phone",
            "capf",
            "SEP001122334455",
            "--operation",
            "troubleshoot",
            "--auth",
            "lsc",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    let (ok, out) = c.boot(mac, &[]);
    assert!(ok, "{out}");
    let o = capf(&["--retries", "0"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "SEP001122334455: LSC: Operation complete"
    );
    let shown = stdout(&pt(&c.d, &["phone", "show", "SEP001122334455"]));
    assert!(shown.contains("Troubleshoot Success"), "{shown}");
}

/// Man pages and shell completions come from the command-line definitions: one page per
/// command, each naming its synopsis as it is typed; completions know every subcommand.
#[test]
fn man_pages_and_completions_are_generated() {
    let d = tmp("generate");
    let o = pt(&d, &["generate", "man", "man1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (page, synopsis) in [
        ("phonetrust.1", "phonetrust"),
        ("phonetrust-serve.1", "phonetrust serve"),
        (
            "phonetrust-utils-ctl-update.1",
            "phonetrust utils ctl update",
        ),
        ("phonetrust-phone-sim-capf.1", "phonetrust phone\\-sim capf"),
    ] {
        let text = std::fs::read_to_string(d.join("man1").join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".SH NAME"), "{page}");
        assert!(text.contains(".SH SYNOPSIS"), "{page}");
        assert!(text.contains(synopsis), "{page}: no '{synopsis}'");
    }
    let serve = std::fs::read_to_string(d.join("man1/phonetrust-serve.1")).unwrap();
    assert!(
        serve.contains("PHONETRUST_CAPF_PORT"),
        "environment variables documented"
    );
    for (shell, needle) in [
        ("bash", "set-cluster"),
        ("zsh", "set-cluster"),
        ("fish", "set-cluster"),
    ] {
        let o = pt(&d, &["generate", "completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        assert!(stdout(&o).contains(needle), "{shell}");
    }
    assert_eq!(
        pt(&d, &["generate", "completions", "tcsh"]).status.code(),
        Some(2)
    );
}

// ---- what a new administrator trips on (issue 14) ----

fn md5_hex(b: &[u8]) -> String {
    phonetrust_proto::codec::hex(
        &openssl::hash::hash(openssl::hash::MessageDigest::md5(), b).unwrap(),
    )
}

fn curl_bytes(url: &str) -> Option<Vec<u8>> {
    let o = Command::new("curl").args(["-sf", url]).output().unwrap();
    o.status.success().then_some(o.stdout)
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// 14.1: `show itl` prints the ITL phones download — the MD5 that HTTP's copy has — and
/// the same bytes on every call, until what the ITL lists changes.
#[test]
fn show_itl_prints_the_bytes_phones_download() {
    let c = Cluster::start("itl-served");
    let url = format!("http://{}/ITLFile.tlv", c.http);
    let first = pt(&c.d, &["show", "itl"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let served = curl_bytes(&url).unwrap();
    assert!(
        stdout(&first).contains(&format!("{}(MD5)", md5_hex(&served))),
        "show itl does not print the served file's MD5 {}:\n{}",
        md5_hex(&served),
        stdout(&first)
    );
    // A second later (a rebuilt ITL would carry a new timestamp): the same file.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = pt(&c.d, &["show", "itl"]);
    assert_eq!(stdout(&first), stdout(&again));
    assert_eq!(curl_bytes(&url).unwrap(), served);
    // What it lists changes: a new ITL is served, and show itl prints that one.
    let o = pt(&c.d, &["set", "cert", "regen", "TVS", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    let new = curl_bytes(&url).unwrap();
    assert_ne!(new, served);
    let o = pt(&c.d, &["show", "itl"]);
    assert!(
        stdout(&o).contains(&format!("{}(MD5)", md5_hex(&new))),
        "{}",
        stdout(&o)
    );
    // Another TFTP node's ITL: only what it stored.
    let o = pt(&c.d, &["show", "itl", "--node", "other.example.test"]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains(
            "No ITL of TFTP node other.example.test is stored (nodes with an ITL: pub.example.test)"
        ),
        "{}",
        stdout(&o)
    );
}

/// 14.2, 14.10, 14.6, 14.4: the parameters say what phones are told and serve warns
/// when it listens elsewhere; a second serve on the directory is refused; phone-sim capf
/// goes where phones are told; the server's recorded reason reaches the simulator's
/// report; data directory and database are the owner's only.
#[test]
fn serve_tells_phones_the_parameters_and_locks_its_directory() {
    let c = Cluster::start("ports");
    let port = |a: &str| a.rsplit_once(':').unwrap().1.to_string();
    let (capf, tvs) = (port(&c.capf), port(&c.tvs));
    let out = std::fs::read_to_string(c.d.join("serve.out")).unwrap();
    for needle in [
        format!(
            "warning: CAPF listens on port {capf} but phones are told port 3804 (CapfPhonePort)"
        ),
        format!("warning: TVS listens on port {tvs} but phones are told port 2445 (TvsPort)"),
        format!("`phonetrust set param TvsPort {tvs}`"),
    ] {
        assert!(out.contains(&needle), "missing '{needle}' in:\n{out}");
    }
    assert!(!out.contains("SslVersion"), "{out}");
    assert!(out.contains("(TLS 1.0+)"), "{out}");
    assert_eq!(c.param("TvsPort"), "2445", "serve rewrote TvsPort");
    let cfg = || {
        String::from_utf8(
            curl_bytes(&format!("http://{}/SEP001122334455.cnf.xml", c.http)).unwrap(),
        )
        .unwrap()
    };
    let x = cfg();
    assert!(x.contains("<phonePort>3804</phonePort>"), "{x}");
    assert!(x.contains("<port>2445</port>"), "{x}");

    // A second serve on the same data directory is refused and changes nothing.
    let o = pt(
        &c.d,
        &[
            "serve",
            "--bind",
            "127.0.0.1",
            "--capf-port",
            &free_port().to_string(),
            "--tvs-port",
            &free_port().to_string(),
            "--tftp-port",
            &free_port().to_string(),
            "--http-port",
            &free_port().to_string(),
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is already served by another `phonetrust serve`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(c.param("TvsPort"), "2445");

    // Telling phones the ports serve listens on: the configs follow.
    for (name, value) in [("CapfPhonePort", &capf), ("TvsPort", &tvs)] {
        let o = pt(&c.d, &["set", "param", name, value]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    c.settle();
    let x = cfg();
    assert!(x.contains(&format!("<phonePort>{capf}</phonePort>")), "{x}");
    assert!(x.contains(&format!("<port>{tvs}</port>")), "{x}");

    // phone-sim capf without --server goes to CapfPhonePort.
    schedule_install(&c.d, "SEP001122334455", "null-string");
    let o = pt(&c.d, &["phone-sim", "capf", "--mac", "001122334455"]);
    assert!(
        stdout(&o).contains("SEP001122334455: LSC: Installed"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // A wrong authentication string: the report says what the server recorded, in words.
    let o = pt(
        &c.d,
        &[
            "phone",
            "capf",
            "SEP001122334466",
            "--operation",
            "install",
            "--auth",
            "auth-string",
            "--auth-string",
            "123456",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(
        &c.d,
        &[
            "phone-sim",
            "capf",
            "--mac",
            "001122334466",
            "--auth-string",
            "999999",
            "--retries",
            "0",
        ],
    );
    let said = stdout(&o);
    assert!(said.contains("the server recorded: "), "{said}");
    assert!(
        !said.contains("Some(") && !said.contains("END_SESSION"),
        "{said}"
    );

    // 14.4: CAPF regenerated while a phone authenticates by its LSC: named, with the cause.
    let o = pt(
        &c.d,
        &[
            "phone",
            "capf",
            "SEP001122334455",
            "--operation",
            "install",
            "--auth",
            "lsc",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(&c.d, &["set", "cert", "regen", "CAPF", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    assert!(
        said.contains("1 phone(s) authenticate to CAPF by their LSC (auth mode lsc): CAPF accepts it through the old certificate kept in CAPF-trust")
            && said.contains("SEP001122334455"),
        "{said}"
    );
    // The rollover: both generations in CAPF-trust, the earlier one still holding the
    // phone's LSC; the phone renews by that LSC; then no phone depends on it.
    let rollover = |c: &Cluster| stdout(&pt(&c.d, &["show", "cert", "rollover"]));
    let r = rollover(&c);
    let row = |r: &str, g: &str| {
        r.lines()
            .find(|l| l.starts_with(g))
            .unwrap_or_else(|| panic!("{g}: {r}"))
            .to_string()
    };
    assert!(row(&r, "earlier").contains("SEP001122334455"), "{r}");
    assert!(
        r.contains("1 phone(s) still hold an LSC of the earlier CAPF certificate"),
        "{r}"
    );
    let old_name = row(&r, "earlier")
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_string();
    // Deleting the earlier generation while the phone depends on it: refused, named.
    let delete = |c: &Cluster| {
        pt(
            &c.d,
            &[
                "set",
                "cert",
                "delete",
                "trust",
                "CAPF-trust",
                old_name.as_str(),
            ],
        )
    };
    let o = delete(&c);
    assert_one_line_error(
        &o,
        &format!("1 phone(s) authenticate to CAPF through {old_name} only (SEP001122334455)"),
    );
    assert!(stderr(&o).contains("repeat with --force"), "{}", stderr(&o));
    c.settle();
    let o = pt(
        &c.d,
        &[
            "phone-sim",
            "capf",
            "--mac",
            "001122334455",
            "--certificate",
            "--retries",
            "0",
        ],
    );
    assert!(
        stdout(&o).contains("LSC: Installed"),
        "renewed by the LSC of the earlier CAPF: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let r = rollover(&c);
    assert!(row(&r, "current").contains("SEP001122334455"), "{r}");
    assert!(
        r.contains("No phone holds an LSC of the earlier CAPF certificate")
            && r.contains("set cert delete trust CAPF-trust"),
        "{r}"
    );
    // Renewed: the earlier generation goes.
    let o = delete(&c);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let r = rollover(&c);
    assert!(!r.contains("earlier"), "{r}");

    // 14.10: the data directory and the database (with its WAL and SHM) are the owner's.
    let data = c.d.join("data");
    assert_eq!(mode_of(&data), 0o700);
    for f in ["phonetrust.db", "phonetrust.db-wal", "phonetrust.db-shm"] {
        assert_eq!(mode_of(&data.join(f)), 0o600, "{f}");
    }
}

/// 14.10: a data directory and database an earlier version left readable are tightened.
#[test]
fn a_readable_database_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmp("perms");
    init_node(&d);
    let data = d.join("data");
    assert_eq!(mode_of(&data), 0o700);
    assert_eq!(mode_of(&data.join("phonetrust.db")), 0o600);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("phonetrust.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let o = pt(&d, &["phone", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode_of(&data), 0o700);
    assert_eq!(mode_of(&data.join("phonetrust.db")), 0o600);
}

/// `phonetrust ARGS` with standard output a pipe whose reader is already gone.
fn pt_closed_stdout(d: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
        .args(args)
        .current_dir(d)
        .env("PHONETRUST_DATA", d.join("data"))
        .stdout(writer)
        .output()
        .unwrap()
}

/// 14.5: a closed standard output (`| head`) ends a command quietly, with its own exit
/// status, and a change made by it is complete.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let d = tmp("pipe");
    init_node(&d);
    for i in 0..5 {
        let o = pt(
            &d,
            &[
                "phone",
                "add",
                &format!("SEP00000000000{i}"),
                "--model",
                "8845",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = pt(&d, &["utils", "ctl", "set-cluster", "mixed-mode", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ctl_sha = || stdout(&pt(&d, &["run", "sql", "select sha256 from trustlistfile"]));
    let before = ctl_sha();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for args in [
        &["phone", "list"][..],
        &["run", "sql", "select * from device"],
        &["show", "ctl"],
        &["show", "itl"],
        &["show", "cert", "list", "own"],
        &["utils", "ctl", "update", "CTLFile", "-y"],
    ] {
        let o = pt_closed_stdout(&d, args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
        assert!(
            !e.contains("panicked") && !e.contains("Broken pipe"),
            "{args:?}: {e}"
        );
    }
    assert_ne!(ctl_sha(), before, "the CTL update was made in full");
    let o = pt(&d, &["show", "ctl"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// 14.7: every command that changes what phones trust asks, takes -y, and without a
/// terminal and without -y refuses and changes nothing; on a terminal "n" aborts and "y"
/// goes ahead.
#[test]
fn trust_changes_ask_take_y_and_refuse_without_a_terminal() {
    let d = tmp("confirm");
    init_node(&d);
    let param = |name: &str| {
        stdout(&pt(
            &d,
            &[
                "run",
                "sql",
                &format!("select paramvalue from processconfig where paramname='{name}'"),
            ],
        ))
        .lines()
        .last()
        .map(|l| l.trim())
        // No row: the parameter still has its default, 0.
        .filter(|l| *l != "(no rows)")
        .unwrap_or("0")
        .to_string()
    };
    let cm = || pt(&d, &["show", "cert", "own", "CallManager", "--der"]).stdout;
    let tvs_pem = d.join("tvs.pem");
    std::fs::write(
        &tvs_pem,
        pt(&d, &["show", "cert", "own", "TVS", "--pem"]).stdout,
    )
    .unwrap();
    let refused = |args: &[&str]| {
        let o = pt(&d, args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{args:?} was not refused: {}",
            stdout(&o)
        );
        assert!(
            stderr(&o).contains(
                "not a terminal to ask on: nothing was changed; repeat with -y to confirm"
            ),
            "{args:?}: {}",
            stderr(&o)
        );
    };
    let old_cm = cm();
    refused(&["utils", "itl", "reset", "localkey"]);
    refused(&["set", "param", "ItlSigner", "1"]);
    assert_eq!(param("ItlSigner"), "0");
    refused(&["set", "cert", "regen", "CallManager"]);
    assert_eq!(cm(), old_cm);
    refused(&[
        "set",
        "cert",
        "import",
        "trust",
        "Phone-SAST-trust",
        tvs_pem.to_str().unwrap(),
    ]);
    assert!(!stdout(&pt(&d, &["show", "cert", "list", "trust"])).contains("Phone-SAST-trust "));
    refused(&["utils", "ctl", "set-cluster", "mixed-mode"]);
    assert_eq!(param("ClusterSecurityMode"), "0");
    // A parameter that changes no trust needs no confirmation.
    assert!(
        pt(&d, &["set", "param", "LscValidityDays", "900"])
            .status
            .success()
    );

    let o = pt(&d, &["utils", "ctl", "set-cluster", "mixed-mode", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ctl = || stdout(&pt(&d, &["run", "sql", "select sha256 from trustlistfile"]));
    let old_ctl = ctl();
    refused(&["utils", "ctl", "update", "CTLFile"]);
    refused(&["utils", "ctl", "reset", "localkey"]);
    refused(&["file", "delete", "tftp", "CTLFile.tlv"]);
    assert_eq!(ctl(), old_ctl);
    let o = pt(
        &d,
        &[
            "set",
            "cert",
            "import",
            "trust",
            "Phone-SAST-trust",
            tvs_pem.to_str().unwrap(),
            "-y",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // On a terminal (script(1) gives the command one): "n" aborts, "y" goes ahead.
    if !phonetrust_testsupport::have_tool("script", "--version", "bsdutils") {
        return;
    }
    let on_tty = |cmd: &str, answer: &str| {
        use std::io::Write as _;
        let mut child = Command::new("script")
            .args([
                "-qec",
                &format!("{} {cmd}", env!("CARGO_BIN_EXE_phonetrust")),
                "/dev/null",
            ])
            .current_dir(&*d)
            .env("PHONETRUST_DATA", d.join("data"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        stdin.write_all(answer.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        drop(stdin);
        o
    };
    let o = on_tty("utils itl reset localkey", "n\n");
    assert!(
        stdout(&o).contains("Do you want to continue? (y/n):"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("Aborted: the ITL file is unchanged."),
        "{}",
        stdout(&o)
    );
    assert_eq!(param("ItlSigner"), "0");
    let o = on_tty("utils itl reset localkey", "y\n");
    assert!(
        stdout(&o).contains("The ITL file is now signed with the ITLRecovery certificate"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(param("ItlSigner"), "1");
}

/// 14.8, 14.9, 14.6, 14.15: profiles are not overwritten or deleted by accident; an
/// encrypted config with an EC key order is refused wherever it is set; unknown models
/// need a flag; messages name the CSV column and the values as the CLI spells them.
#[test]
fn profiles_and_phones_refuse_what_would_break_phones() {
    let d = tmp("profiles");
    init_node(&d);
    let show = |name: &str| stdout(&pt(&d, &["profile", "show", name]));
    let fails = |args: &[&str], needle: &str| {
        let o = pt(&d, args);
        assert!(!o.status.success(), "{args:?} accepted: {}", stdout(&o));
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: expected '{needle}' in {}",
            stderr(&o)
        );
    };
    fails(
        &[
            "profile",
            "add",
            "Standard Non-Secure Profile",
            "--mode",
            "encrypted",
        ],
        "exists already: nothing was changed (change given settings with `phonetrust profile set`)",
    );
    assert!(show("Standard Non-Secure Profile").contains("Device Security Mode: Non Secure"));
    let o = pt(
        &d,
        &[
            "profile",
            "add",
            "Lab",
            "--mode",
            "authenticated",
            "--description",
            "lab phones",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(&d, &["profile", "set", "Lab", "--key-order", "rsa-ec"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lab = show("Lab");
    assert!(lab.contains("Device Security Mode: Authenticated"), "{lab}");
    assert!(lab.contains("Description: lab phones"), "{lab}");
    assert!(
        lab.contains("Key Order: RSA Preferred, EC Backup") || lab.contains("Key Order: RSA"),
        "{lab}"
    );
    fails(
        &["profile", "delete", "Standard Encrypted Profile"],
        "cannot be deleted",
    );
    assert!(pt(&d, &["profile", "delete", "Lab"]).status.success());

    // Encrypted config needs an RSA key: refused on the profile, the phone and in CSV.
    fails(
        &[
            "profile",
            "add",
            "Enc",
            "--mode",
            "encrypted",
            "--encrypted-config",
            "--key-order",
            "ec",
        ],
        "needs an RSA key",
    );
    fails(
        &[
            "profile",
            "set",
            "Standard Encrypted Profile",
            "--key-order",
            "ec",
        ],
        "needs an RSA key",
    );
    let o = pt(
        &d,
        &[
            "phone",
            "add",
            "SEP000000000001",
            "--model",
            "8845",
            "--profile",
            "Standard Encrypted Profile",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    fails(
        &[
            "phone",
            "capf",
            "SEP000000000001",
            "--operation",
            "install",
            "--auth",
            "null-string",
            "--key-order",
            "ec",
        ],
        "needs an RSA key",
    );
    fails(
        &[
            "phone",
            "capf",
            "SEP000000000001",
            "--operation",
            "install",
            "--auth",
            "auth-string",
        ],
        "needs an authentication string (4 to 16 digits): give --auth-string",
    );

    // Models: known ones, others with --allow-unknown-model.
    fails(
        &["phone", "add", "SEP000000000002", "--model", "99999"],
        "unknown phone model '99999'",
    );
    let o = pt(
        &d,
        &[
            "phone",
            "add",
            "SEP000000000002",
            "--model",
            "99999",
            "--allow-unknown-model",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    std::fs::write(
        d.join("phones.csv"),
        "name,model,profile,operation,auth,auth_string,key_order\n\
         SEP000000000010,8845,Standard Encrypted Profile,install,null-string,,ec\n\
         SEP000000000011,8845,,install,auth-string,,\n\
         SEP000000000012,99999,,,,,\n\
         SEP000000000013,Cisco 7942,,,,,\n",
    )
    .unwrap();
    let o = pt(&d, &["phone", "import", "phones.csv"]);
    let out = stdout(&o);
    assert!(out.contains("line 2: SEP000000000010: refused: key order 'ec' with profile 'Standard Encrypted Profile'"), "{out}");
    assert!(
        out.contains("line 3: SEP000000000011: refused:")
            && out.contains("fill the auth_string column"),
        "{out}"
    );
    assert!(!out.contains("--auth-string"), "{out}");
    assert!(
        out.contains("line 4: SEP000000000012: refused: unknown phone model '99999'"),
        "{out}"
    );
    assert!(out.contains("line 5: SEP000000000013: added"), "{out}");
    assert!(stdout(&pt(&d, &["phone", "show", "SEP000000000013"])).contains("7942"));

    // Choices named as the CLI spells them, never a type name.
    fails(
        &["phone", "list", "--status", "bogus"],
        "'bogus' is not a valid operation state (use one of: none, pending, success, failed)",
    );
    let o = pt(&d, &["show", "cert", "list", "trust", "bogus"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not a valid trust store (use one of: CallManager-trust"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("TrustStore"), "{}", stderr(&o));
}

/// 14.15: serve logs one line per completed phone operation at its default level (no
/// `-v`), naming the phone; `serve --help` says what it serves.
#[test]
fn serve_logs_each_completed_operation_by_default() {
    let d = tmp("oplog");
    init_node(&d);
    let o = pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"]);
    assert!(o.status.success(), "{}", stderr(&o));
    schedule_install(&d, "SEP001122334455", "null-string");
    let capf = free_port();
    let _server = Server::start_quiet(
        &d,
        capf,
        &["--tvs-port", "0", "--tftp-port", "0", "--http-port", "0"],
    );
    let o = pt(
        &d,
        &[
            "phone-sim",
            "capf",
            "--mac",
            "001122334455",
            "--server",
            &format!("127.0.0.1:{capf}"),
        ],
    );
    assert!(
        stdout(&o).contains("LSC: Installed"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let start = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(d.join("serve.log")).unwrap_or_default();
        if log.lines().any(|l| {
            l.contains("INFO")
                && l.contains("LSC installed (Upgrade Success)")
                && l.contains("SEP001122334455")
        }) {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "no info line:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let help = stdout(&pt(&d, &["serve", "--help"]));
    assert!(help.contains("CAPF, TVS, TFTP and HTTP"), "{help}");
    let help = stdout(&pt(&d, &["--help"]));
    assert!(help.contains("CAPF, TVS, TFTP and HTTP"), "{help}");
}

/// 14.13, 14.15: the shipped binary is stripped (symbols only in the `profiling`
/// profile), and the admin guide's parameter table lists every enterprise parameter.
#[test]
fn release_profile_and_parameter_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let section = |name: &str| -> String {
        let start = manifest
            .find(&format!("[{name}]\n"))
            .unwrap_or_else(|| panic!("no [{name}] in Cargo.toml"));
        let body = &manifest[start + name.len() + 3..];
        body[..body.find("\n[").unwrap_or(body.len())].to_string()
    };
    let release = section("profile.release");
    assert!(release.contains("strip = \"symbols\""), "{release}");
    assert!(!release.contains("debug"), "{release}");
    let profiling = section("profile.profiling");
    assert!(
        profiling.contains("inherits = \"release\"") && profiling.contains("debug"),
        "{profiling}"
    );
    let guide = std::fs::read_to_string(root.join("docs/admin-guide.md")).unwrap();
    for p in phonetrust_store::params::PARAMS {
        let row = format!("| {} | {} | {} |", p.name, p.label, p.default);
        assert!(
            guide.contains(&row),
            "the admin guide lacks the row '{row}'"
        );
    }
}

/// `serve` raises its open-files limit to the hard limit and divides it between the
/// services: under a hard limit of 700 the default caps do not fit, and serve says which
/// it lowered and how to raise the limit.
#[test]
fn serve_plans_its_file_descriptors() {
    let d = tmp("fdbudget");
    let capf = free_port();
    let ports: Vec<String> = (0..3).map(|_| free_port().to_string()).collect();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -Sn 300 && ulimit -Hn 700 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_phonetrust"),
            "serve",
            "-v",
            "--bind",
            "127.0.0.1",
            "--capf-port",
            &capf.to_string(),
            "--tvs-port",
            &ports[0],
            "--tftp-port",
            &ports[1],
            "--http-port",
            &ports[2],
            "--host",
            "pub.example.test",
            "--rsa-bits",
            "1024",
        ])
        .current_dir(&d)
        .env("PHONETRUST_DATA", d.join("data"))
        .stdout(std::fs::File::create(d.join("serve.out")).unwrap())
        .stderr(std::fs::File::create(d.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", capf)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "serve did not start: {}",
            std::fs::read_to_string(d.join("serve.log")).unwrap_or_default()
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = std::fs::read_to_string(d.join("serve.out")).unwrap();
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
    assert!(
        out.contains("warning: the file-descriptor limit (700) is too low"),
        "{out}"
    );
    assert!(out.contains("TFTP transfers 1024 → 85"), "{out}");
    assert!(out.contains("raise LimitNOFILE"), "{out}");
    assert!(log.contains("open-files limit raised"), "{log}");
}

/// Resident memory of a process (VmRSS), KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

/// Stalled downloads of a 50 MB static file — 20 over HTTP whose client never reads, 10
/// over TFTP (blksize 16384, windowsize 64) never acknowledged after the options — cost
/// `serve` a bounded amount of memory (under 64 MB for all 30; reading whole files into
/// memory cost 1.4 GB), and another client is served meanwhile.
#[test]
fn stalled_downloads_cost_bounded_memory() {
    use std::io::{Read, Write};
    let d = tmp("memory");
    let stat = d.join("data").join("tftp");
    std::fs::create_dir_all(&stat).unwrap();
    std::fs::write(stat.join("big.bin"), vec![0x5a; 50 << 20]).unwrap();
    std::fs::write(stat.join("ring.raw"), b"ring ring").unwrap();
    let [capf, tvs, tftp, http] = [0; 4].map(|_| free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
        .args(["serve", "--bind", "127.0.0.1", "--host", "pub.example.test"])
        .args(["--rsa-bits", "1024"])
        .args([
            "--capf-port",
            &capf.to_string(),
            "--tvs-port",
            &tvs.to_string(),
        ])
        .args([
            "--tftp-port",
            &tftp.to_string(),
            "--http-port",
            &http.to_string(),
        ])
        .current_dir(&d)
        .env("PHONETRUST_DATA", d.join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(d.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "serve did not start"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = rss_kib(child.id());
    let mut rrq = b"\x00\x01big.bin\x00octet\x00".to_vec();
    rrq.extend_from_slice(b"blksize\x0016384\x00windowsize\x0064\x00");
    let mut udp = Vec::new();
    for _ in 0..10 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        s.send_to(&rrq, ("127.0.0.1", tftp)).unwrap();
        let mut b = [0u8; 512];
        let (n, from) = s.recv_from(&mut b).unwrap();
        assert_eq!(&b[..2], b"\x00\x06", "OACK expected: {:?}", &b[..n]);
        s.send_to(b"\x00\x04\x00\x00", from).unwrap();
        udp.push(s);
    }
    let mut tcp = Vec::new();
    for _ in 0..20 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        tcp.push(c);
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let during = rss_kib(child.id());
    // Another client, meanwhile.
    let sock = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], http)),
        std::time::Duration::from_secs(3),
    )
    .unwrap();
    let mut sock = sock;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    sock.write_all(b"GET /ring.raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    sock.read_to_end(&mut got).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    drop((udp, tcp));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("ring ring"),
        "{text}"
    );
    let grew = during.saturating_sub(before);
    assert!(
        grew < 64 * 1024,
        "30 stalled downloads cost {} MB",
        grew / 1024
    );
}

/// `cluster add-node` on the publisher (the node it runs on becomes the publisher of an
/// empty cluster), `show network cluster`, refusals with their causes, `remove-node`
/// asking for confirmation, and a running `serve` shown as up by its heartbeat.
#[test]
fn cluster_nodes_are_defined_on_the_publisher() {
    let d = tmp("cluster-nodes");
    init_node(&d);
    let o = pt(&d, &["show", "network", "cluster"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("not yet part of a cluster"),
        "{}",
        stdout(&o)
    );

    assert_one_line_error(
        &pt(&d, &["cluster", "add-node", "sub_1", "--host", "127.0.0.2"]),
        "'sub_1' is not a valid node name",
    );
    let o = pt(
        &d,
        &[
            "cluster",
            "add-node",
            "sub1.example.test",
            "--host",
            "127.0.0.2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("defined as subscriber at 127.0.0.2 (services tftp,tvs)"),
        "{out}"
    );
    assert!(
        out.contains("phonetrust init --join sub1.example.test"),
        "{out}"
    );
    assert_one_line_error(
        &pt(
            &d,
            &[
                "cluster",
                "add-node",
                "sub1.example.test",
                "--host",
                "127.0.0.2",
            ],
        ),
        "already defined",
    );
    let o = pt(
        &d,
        &[
            "cluster",
            "add-node",
            "sub2.example.test",
            "--host",
            "127.0.0.3",
            "--services",
            "tftp,dhcp",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown service 'dhcp'"),
        "{}",
        stderr(&o)
    );

    let o = pt(&d, &["show", "network", "cluster"]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let publisher = lines
        .iter()
        .find(|l| l.contains("pub.example.test"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        publisher.contains("publisher") && publisher.contains("tftp,tvs,capf"),
        "{out}"
    );
    let serial = stdout(&pt(&d, &["show", "cert", "own", "CallManager"]))
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Serial Number:")
                .map(|s| s.trim().replace(':', "").to_ascii_lowercase())
        })
        .unwrap_or_default();
    assert!(!serial.is_empty());
    assert!(
        publisher.contains(serial.trim_start_matches('0')),
        "the publisher's CallManager serial {serial}: {out}"
    );
    let sub = lines
        .iter()
        .find(|l| l.contains("sub1.example.test"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        sub.contains("subscriber") && sub.contains("not joined"),
        "{out}"
    );

    let d2 = tmp("cluster-join-sqlite");
    let o = pt(&d2, &["init", "--join", "sub1.example.test"]);
    assert_one_line_error(&o, "joining a cluster needs the cluster's shared database");
    assert!(
        !d2.path().join("data").join("identity").exists(),
        "nothing created"
    );

    assert_one_line_error(
        &pt(&d, &["cluster", "remove-node", "pub.example.test", "-y"]),
        "is the cluster's publisher and cannot be removed",
    );
    assert_one_line_error(
        &pt(&d, &["cluster", "remove-node", "sub1.example.test"]),
        "repeat with -y",
    );
    assert_one_line_error(
        &pt(&d, &["cluster", "remove-node", "sub1.example.test", "-y"]),
        "node sub1.example.test is still in call manager group(s) Default",
    );

    // Call manager groups and device pools.
    let o = pt(&d, &["cluster", "group", "list"]);
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.contains("Default") && l.contains("pub.example.test, sub1.example.test")),
        "{}",
        stdout(&o)
    );
    assert_one_line_error(
        &pt(
            &d,
            &[
                "cluster",
                "group",
                "add",
                "East",
                "sub1.example.test",
                "pub.example.test",
                "sub1.example.test",
            ],
        ),
        "lists node sub1.example.test twice",
    );
    let ok = |args: &[&str]| {
        let o = pt(&d, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    ok(&[
        "cluster",
        "group",
        "add",
        "East",
        "sub1.example.test",
        "pub.example.test",
    ]);
    ok(&["cluster", "pool", "add", "Branch", "--group", "East"]);
    assert_one_line_error(
        &pt(&d, &["cluster", "pool", "add", "Other", "--group", "West"]),
        "call manager group West is not defined",
    );
    ok(&["phone", "add", "SEP001122334455"]);
    let out = ok(&["phone", "place", "SEP001122334455", "--pool", "Branch"]);
    assert!(
        out.contains("call manager group East (127.0.0.2, pub.example.test)"),
        "{out}"
    );
    let out = ok(&["phone", "show", "SEP001122334455"]);
    assert!(out.contains("Device Pool: Branch"), "{out}");
    assert!(
        out.contains("Call Manager Group: East (127.0.0.2, pub.example.test)"),
        "{out}"
    );
    assert!(
        ok(&["cluster", "pool", "list"])
            .lines()
            .any(|l| l.contains("Branch") && l.contains("East") && l.trim_end().ends_with('1'))
    );
    assert_one_line_error(
        &pt(&d, &["cluster", "pool", "remove", "Branch"]),
        "device pool Branch is still used by 1 phone (SEP001122334455)",
    );
    assert_one_line_error(
        &pt(&d, &["cluster", "group", "set", "East", "pub.example.test"]),
        "repeat with -y",
    );
    ok(&[
        "cluster",
        "group",
        "set",
        "Default",
        "pub.example.test",
        "-y",
    ]);
    assert_one_line_error(
        &pt(&d, &["cluster", "remove-node", "sub1.example.test", "-y"]),
        "call manager group(s) East",
    );
    ok(&["cluster", "group", "set", "East", "pub.example.test", "-y"]);
    let o = pt(&d, &["cluster", "remove-node", "sub1.example.test", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Node sub1.example.test removed"),
        "{}",
        stdout(&o)
    );
    assert_one_line_error(
        &pt(&d, &["cluster", "remove-node", "sub1.example.test", "-y"]),
        "is not defined in the cluster",
    );

    let _server = Server::start(&d, free_port());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = stdout(&pt(&d, &["show", "network", "cluster"]));
        if out
            .lines()
            .any(|l| l.contains("pub.example.test") && l.contains(" up "))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never shown up: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn pt_db(dir: &Path, db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
        .args(args)
        .current_dir(dir)
        .env("PHONETRUST_DATA", dir.join("data"))
        .env("PHONETRUST_DATABASE", db)
        .output()
        .unwrap()
}

/// Two nodes on one throw-away PostgreSQL: the publisher defines the subscriber, which
/// joins with `init --join` (its own keys in its own directory, 0600; its certificates'
/// public parts in the database); a node not defined is refused before anything is
/// created, and a plain `init` on the cluster's database too; both nodes list the same
/// cluster, and a running subscriber shows up.
#[test]
fn a_subscriber_joins_the_cluster_database() {
    let Some(pg) = phonetrust_testsupport::postgres::PgServer::start("join") else {
        return;
    };
    let url = pg.create_db("cluster");
    let publ = tmp("cluster-pub");
    let o = pt_db(
        &publ,
        &url,
        &["init", "--host", "pub.example.test", "--rsa-bits", "1024"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt_db(
        &publ,
        &url,
        &[
            "cluster",
            "add-node",
            "sub1.example.test",
            "--host",
            "127.0.0.2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let stranger = tmp("cluster-stranger");
    let o = pt_db(
        &stranger,
        &url,
        &["init", "--join", "sub9.example.test", "--rsa-bits", "1024"],
    );
    assert_one_line_error(
        &o,
        "node sub9.example.test is not defined in the cluster: define it on the publisher first",
    );
    assert!(
        !stranger.path().join("data").join("identity").exists(),
        "nothing created"
    );
    let o = pt_db(
        &stranger,
        &url,
        &["init", "--host", "other.example.test", "--rsa-bits", "1024"],
    );
    assert_one_line_error(
        &o,
        "this database belongs to a cluster (publisher pub.example.test)",
    );
    assert!(
        !stranger.path().join("data").join("identity").exists(),
        "nothing created"
    );

    let sub = tmp("cluster-sub");
    let o = pt_db(
        &sub,
        &url,
        &["init", "--join", "sub1.example.test", "--rsa-bits", "1024"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Joined the cluster as sub1.example.test"),
        "{}",
        stdout(&o)
    );
    for e in std::fs::read_dir(sub.path().join("data").join("identity")).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode_of(&p) & 0o077, 0, "{} is private", p.display());
    }
    assert_one_line_error(
        &pt_db(
            &sub,
            &url,
            &[
                "cluster",
                "add-node",
                "sub2.example.test",
                "--host",
                "127.0.0.3",
            ],
        ),
        "sub1.example.test is a subscriber: define nodes on the publisher (pub.example.test)",
    );

    let on_pub = stdout(&pt_db(&publ, &url, &["show", "network", "cluster"]));
    let on_sub = stdout(&pt_db(&sub, &url, &["show", "network", "cluster"]));
    assert_eq!(on_pub, on_sub, "one cluster, seen alike from every node");
    let row = on_pub
        .lines()
        .find(|l| l.starts_with("sub1.example.test"))
        .unwrap_or_else(|| panic!("{on_pub}"));
    assert!(
        row.contains("subscriber") && row.contains("down"),
        "joined, not running: {on_pub}"
    );
    assert!(
        !row.contains(" - "),
        "its certificates are published: {on_pub}"
    );

    // One CTL for the cluster, built on the publisher, the same on every node, listing
    // every node's CallManager with its DNS name and address.
    assert_one_line_error(
        &pt_db(
            &sub,
            &url,
            &["utils", "ctl", "set-cluster", "mixed-mode", "-y"],
        ),
        "sub1.example.test is a subscriber: the cluster's CTL is built on the publisher (pub.example.test)",
    );
    let o = pt_db(
        &publ,
        &url,
        &["utils", "ctl", "set-cluster", "mixed-mode", "-y"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ctl_pub = stdout(&pt_db(&publ, &url, &["show", "ctl"]));
    let ctl_sub = stdout(&pt_db(&sub, &url, &["show", "ctl"]));
    assert_eq!(
        ctl_pub, ctl_sub,
        "the same CTL (bytes, checksums) on every node"
    );
    assert!(
        ctl_pub.contains("sub1.example.test") && ctl_pub.contains("127.0.0.2"),
        "{ctl_pub}"
    );
    assert_eq!(
        ctl_pub.matches("CCM+TFTP").count(),
        2,
        "a CCM+TFTP record per node: {ctl_pub}"
    );

    // The subscriber runs (on reserved ports of 127.0.0.1), only the services it was
    // defined with (tftp,tvs: no CAPF), and shows up on the publisher.
    let sub_dir = sub_with_db(&sub, &url);
    let sub_http = free_port();
    let _server = Server::start_without_capf(&sub_dir, sub_http);
    let out = std::fs::read_to_string(sub_dir.join("serve.out")).unwrap();
    assert!(
        out.contains("node sub1.example.test runs tftp,tvs"),
        "{out}"
    );
    assert!(
        out.contains("TVS listening") && out.contains("HTTP listening"),
        "{out}"
    );
    assert!(
        !out.contains("CAPF listening"),
        "CAPF runs on the publisher: {out}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = stdout(&pt_db(&publ, &url, &["show", "network", "cluster"]));
        if out
            .lines()
            .any(|l| l.starts_with("sub1.example.test") && l.contains(" up "))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never shown up: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The subscriber's ITL lists the publisher's TVS; regenerated on the publisher, the
    // new certificate is published and the subscriber's ITL follows without a restart.
    let pub_tvs = || {
        let o = pt_db(&publ, &url, &["show", "cert", "own", "TVS", "--pem"]);
        openssl::x509::X509::from_pem(&o.stdout)
            .unwrap()
            .to_der()
            .unwrap()
    };
    let itl_lists = |der: &[u8]| {
        let itl = http_get(sub_http, "/ITLFile.tlv");
        itl.windows(der.len()).any(|w| w == der)
    };
    let before = pub_tvs();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !itl_lists(&before) {
        assert!(
            std::time::Instant::now() < deadline,
            "the publisher's TVS never listed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = pt_db(&publ, &url, &["set", "cert", "regen", "TVS", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = pub_tvs();
    assert_ne!(before, after);
    while !itl_lists(&after) {
        assert!(
            std::time::Instant::now() < deadline,
            "the regenerated TVS never reached the subscriber's ITL"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!itl_lists(&before), "the old TVS certificate is gone");
}

/// The body of `GET path` from the HTTP server on loopback `port`.
fn http_get(port: u16, path: &str) -> Vec<u8> {
    http_fetch("127.0.0.1", port, path)
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// `sub`'s directory with a config file naming the cluster database, so that `serve`
/// (started by [`Server`]) uses it.
fn sub_with_db(sub: &TestDir, url: &str) -> PathBuf {
    std::fs::write(
        sub.path().join("data").join("phonetrust.toml"),
        format!("[server]\ndatabase = \"{url}\"\n"),
    )
    .unwrap();
    sub.path().to_path_buf()
}

/// A `serve` process of one cluster node, bound to its own loopback address with the
/// cluster's ports (the enterprise parameters, the same on every node); killed on drop.
struct NodeProc {
    child: std::process::Child,
    dir: PathBuf,
}

impl NodeProc {
    /// Start the node of `dir` on `ip` (database `url`); ready when `ip:ready` accepts.
    fn start(dir: &Path, url: &str, ip: &str, ready: u16) -> Self {
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
            .env("PHONETRUST_WEB_PORT", "0")
            .args(["serve", "--bind", ip, "-v"])
            .current_dir(dir)
            .env("PHONETRUST_DATA", dir.join("data"))
            .env("PHONETRUST_DATABASE", url)
            .stdout(std::fs::File::create(dir.join("serve.out")).unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_listening(&mut child, (ip, ready), dir, &format!("node on {ip}"));
        Self {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET `path` from `ip:port`: (status code, body); None when nothing answers.
fn http_fetch(ip: &str, port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect((ip, port)).ok()?;
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .ok()?;
    let mut all = Vec::new();
    c.read_to_end(&mut all).ok()?;
    let i = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&all[..i]).to_string();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, all.split_off(i + 4)))
}

/// Wait (at most 30 s) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The issue's cluster scenario: a publisher and two subscribers, three `serve`
/// processes on 127.0.0.1–127.0.0.3 (each on the same ports), one throw-away PostgreSQL.
/// A phone boots from a subscriber and gets an ITL signed by that subscriber listing
/// every node's TVS; it enrols through the publisher's CAPF and another through the
/// second subscriber's, each known on every node; a subscriber's TVS vouches for the
/// publisher's regenerated CallManager certificate; mixed mode gives one CTL, the same
/// bytes on every node. The database stopped: every node keeps serving ITL, CTL, configs
/// and TVS answers, CAPF says RETRY_LATER; back, everything resumes by itself. A node
/// killed during a boot storm: phones move to the next node, none fails; restarted, it
/// rejoins by itself. PostgreSQL
/// restarted during CAPF load: no phone is told success without its record, and no LSC
/// is recorded that the phone does not hold.
#[test]
fn three_nodes_on_loopback_fail_over_and_ride_out_the_database() {
    let Some(pg) = phonetrust_testsupport::postgres::PgServer::start("three") else {
        return;
    };
    let url = pg.create_db("three");
    let (capf, tftp, http, tvs) = (free_port(), free_port(), free_port(), free_port());
    let ok = |o: Output| -> Output {
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        o
    };
    let publ = tmp("three-pub");
    let s1 = tmp("three-sub1");
    let s2 = tmp("three-sub2");
    let phones = tmp("three-phones");
    ok(pt_db(
        &publ,
        &url,
        &["init", "--host", "pub.example.test", "--rsa-bits", "1024"],
    ));
    std::fs::write(
        publ.path().join("data").join("phonetrust.toml"),
        "[capf]\nretry_delay = 1\n",
    )
    .unwrap();
    for (p, v) in [
        ("CapfPhonePort", capf),
        ("TftpPort", tftp),
        ("HttpPort", http),
        ("TvsPort", tvs),
    ] {
        ok(pt_db(&publ, &url, &["set", "param", p, &v.to_string()]));
    }
    ok(pt_db(
        &publ,
        &url,
        &[
            "cluster",
            "set-node",
            "pub.example.test",
            "--host",
            "127.0.0.1",
        ],
    ));
    for (name, ip, services) in [
        ("sub1.example.test", "127.0.0.2", "tftp,tvs"),
        ("sub2.example.test", "127.0.0.3", "tftp,tvs,capf"),
    ] {
        ok(pt_db(
            &publ,
            &url,
            &[
                "cluster",
                "add-node",
                name,
                "--host",
                ip,
                "--services",
                services,
            ],
        ));
    }
    for (d, name) in [(&s1, "sub1.example.test"), (&s2, "sub2.example.test")] {
        ok(pt_db(
            d,
            &url,
            &["init", "--join", name, "--rsa-bits", "1024"],
        ));
    }
    std::fs::write(
        s2.path().join("data").join("phonetrust.toml"),
        "[capf]\nretry_delay = 1\n",
    )
    .unwrap();
    let mut csv = String::from("name,model,protocol,operation\n");
    for i in 0..4 {
        csv.push_str(&format!("SEP0011223344A{i},8845,SIP,install\n"));
    }
    for i in 0..24 {
        csv.push_str(&format!("SEP00112233C0{i:02X},8845,SIP,install\n"));
    }
    for i in 0..48 {
        csv.push_str(&format!("SEP00112233B{i:03X},8845,SIP,none\n"));
    }
    std::fs::write(publ.path().join("phones.csv"), csv).unwrap();
    ok(pt_db(&publ, &url, &["phone", "import", "phones.csv"]));

    let _pub = NodeProc::start(publ.path(), &url, "127.0.0.1", capf);
    let mut sub1 = NodeProc::start(s1.path(), &url, "127.0.0.2", http);
    let _sub2 = NodeProc::start(s2.path(), &url, "127.0.0.3", capf);
    let capf_pem = phones.path().join("capf.pem");
    std::fs::write(
        &capf_pem,
        ok(pt_db(
            &publ,
            &url,
            &["show", "cert", "own", "CAPF", "--pem"],
        ))
        .stdout,
    )
    .unwrap();
    let own_der = |d: &TestDir, which: &str| {
        ok(pt_db(d, &url, &["show", "cert", "own", which, "--der"])).stdout
    };
    let sim = |args: &[&str]| {
        let mut all = vec!["phone-sim"];
        all.extend_from_slice(args);
        pt(phones.path(), &all)
    };
    let tftp_of = |ip: &str| format!("{ip}:{tftp}");

    // Booted from sub1: its ITL, signed by sub1's CallManager, lists the three TVS.
    let o = ok(sim(&[
        "boot",
        "--mac",
        "0011223344A0",
        "--tftp",
        &tftp_of("127.0.0.2"),
    ]));
    assert!(stdout(&o).contains("configured"), "{}", stdout(&o));
    let itl = std::fs::read(
        phones
            .path()
            .join("phonetrust-phones/SEP0011223344A0/ITLFile.tlv"),
    )
    .unwrap();
    let list = phonetrust_proto::trustlist::parse(&itl).unwrap();
    list.verify(&itl).unwrap();
    assert_eq!(
        list.signer_cert().unwrap().to_der().unwrap(),
        own_der(&s1, "CallManager"),
        "signed by the node it came from"
    );
    let tvs_in_itl: Vec<Vec<u8>> = list
        .plain_records()
        .filter(|r| r.role == Some(phonetrust_proto::trustlist::Role::Tvs))
        .filter_map(|r| r.x509()?.to_der().ok())
        .collect();
    for d in [&publ, &s1, &s2] {
        assert!(
            tvs_in_itl.contains(&own_der(d, "TVS")),
            "every node's TVS is listed"
        );
    }
    let cfg = std::fs::read_to_string(phones.path().join("phonetrust-phones/SEP0011223344A0/tvs"))
        .unwrap();
    assert!(
        cfg.contains("127.0.0.1") && cfg.contains("127.0.0.2") && cfg.contains("127.0.0.3"),
        "the default group's nodes are the phone's TVS servers: {cfg}"
    );

    // Enrolled through the publisher's CAPF, and another phone through sub2's: both
    // known on every node.
    let capf_args = |mac: &'static str, ip: &str| -> Vec<String> {
        [
            "capf",
            "--mac",
            mac,
            "--server",
            &format!("{ip}:{capf}"),
            "--capf-cert",
            capf_pem.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run_capf = |mac: &'static str, ip: &str, extra: &[&str]| {
        let mut a = capf_args(mac, ip);
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        sim(&refs)
    };
    // sub2's CAPF presents its own certificate.
    std::fs::write(phones.path().join("capf2.pem"), {
        ok(pt_db(&s2, &url, &["show", "cert", "own", "CAPF", "--pem"])).stdout
    })
    .unwrap();
    let o = ok(run_capf("0011223344A0", "127.0.0.1", &[]));
    assert!(stdout(&o).contains("LSC: Installed"), "{}", stdout(&o));
    let o = ok(sim(&[
        "capf",
        "--mac",
        "0011223344A1",
        "--server",
        &format!("127.0.0.3:{capf}"),
        "--capf-cert",
        phones.path().join("capf2.pem").to_str().unwrap(),
    ]));
    assert!(stdout(&o).contains("LSC: Installed"), "{}", stdout(&o));
    for d in [&publ, &s1, &s2] {
        for dev in ["SEP0011223344A0", "SEP0011223344A1"] {
            let shown = stdout(&ok(pt_db(d, &url, &["phone", "show", dev])));
            assert!(
                shown.contains("Certificate Operation Status: Upgrade Success"),
                "{shown}"
            );
        }
    }

    // The publisher's CallManager regenerated: a phone holding sub1's ITL boots from the
    // publisher, whose new signer its ITL does not list; sub1's TVS vouches for it.
    ok(pt_db(
        &publ,
        &url,
        &["set", "cert", "regen", "CallManager", "-y"],
    ));
    let new_cm = own_der(&publ, "CallManager");
    eventually(
        "the publisher signs its ITL with the new CallManager",
        || {
            http_fetch("127.0.0.1", http, "/ITLFile.tlv").is_some_and(|(_, b)| {
                phonetrust_proto::trustlist::parse(&b)
                    .ok()
                    .and_then(|l| l.signer_cert())
                    .and_then(|c| c.to_der().ok())
                    == Some(new_cm.clone())
            })
        },
    );
    let o = ok(sim(&[
        "boot",
        "--mac",
        "0011223344A0",
        "--tftp",
        &tftp_of("127.0.0.1"),
        "--tvs",
        &format!("127.0.0.2:{tvs}"),
    ]));
    let out = stdout(&o);
    assert!(out.contains("configured"), "{out}");
    assert!(
        out.contains("TVS: signer of the new ITL verified"),
        "the TVS vouched: {out}"
    );
    assert!(
        sub1.log().contains("tvsHandleQueryCertReq"),
        "sub1's TVS was the one asked: {}",
        sub1.log()
    );

    // Mixed mode on the publisher: one CTL, the same bytes on every node.
    ok(pt_db(
        &publ,
        &url,
        &["utils", "ctl", "set-cluster", "mixed-mode", "-y"],
    ));
    let mut ctls = Vec::new();
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let mut got = None;
        eventually(&format!("{ip} serves the CTL"), || {
            got = http_fetch(ip, http, "/CTLFile.tlv").filter(|(c, _)| *c == 200);
            got.is_some()
        });
        ctls.push(got.unwrap().1);
    }
    assert!(
        ctls[0] == ctls[1] && ctls[1] == ctls[2],
        "one CTL for the cluster"
    );
    let shown: Vec<String> = [&publ, &s1, &s2]
        .iter()
        .map(|d| stdout(&ok(pt_db(d, &url, &["show", "ctl"]))))
        .collect();
    assert!(shown[0] == shown[1] && shown[1] == shown[2], "{shown:?}");
    let cfg_name = "/SEP0011223344A0.cnf.xml.sgn";
    let served: Vec<_> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| {
            let mut got = None;
            eventually(&format!("{ip} serves the phone's config"), || {
                got = http_fetch(ip, http, cfg_name).filter(|(c, _)| *c == 200);
                got.is_some()
            });
            (
                http_fetch(ip, http, "/ITLFile.tlv").unwrap().1,
                got.unwrap().1,
            )
        })
        .collect();
    // Settled: the phone boots once more with the CTL before the database goes.
    ok(sim(&[
        "boot",
        "--mac",
        "0011223344A0",
        "--tftp",
        &tftp_of("127.0.0.2"),
    ]));

    // The database stopped: trust lists, configs and TVS answers go on; CAPF says
    // RETRY_LATER and records nothing.
    ok(pt_db(
        &publ,
        &url,
        &[
            "phone",
            "capf",
            "SEP0011223344A2",
            "--operation",
            "install",
            "--auth",
            "null-string",
        ],
    ));
    pg.stop();
    for (i, ip) in ["127.0.0.1", "127.0.0.2", "127.0.0.3"].iter().enumerate() {
        let same = |path: &str, want: &[u8]| {
            let got = http_fetch(ip, http, path);
            assert!(
                got.as_ref().is_some_and(|(c, b)| *c == 200 && b == want),
                "{ip} serves {path} as before: {:?}",
                got.map(|(c, b)| (c, b.len()))
            );
        };
        same("/ITLFile.tlv", &served[i].0);
        same("/CTLFile.tlv", &ctls[0]);
        same(cfg_name, &served[i].1);
    }
    // Every known phone's config was signed ahead; a name the node holds nothing for
    // cannot be looked up: try again later, not "File not found".
    let (code, _) = http_fetch("127.0.0.2", http, "/SEP0011223344FE.cnf.xml.sgn").unwrap();
    assert_eq!(code, 503, "nothing held: try again later");
    let o = ok(sim(&[
        "boot",
        "--mac",
        "0011223344A0",
        "--tftp",
        &tftp_of("127.0.0.2"),
    ]));
    assert!(stdout(&o).contains("configured"), "{}", stdout(&o));
    let o = run_capf("0011223344A2", "127.0.0.1", &["--retries", "0"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("server busy"), "{}", stdout(&o));
    pg.restart();
    eventually("CAPF works again once the database is back", || {
        stdout(&run_capf("0011223344A2", "127.0.0.1", &["--retries", "0"]))
            .contains("LSC: Installed")
    });
    eventually("an unknown phone is told File not found again", || {
        http_fetch("127.0.0.2", http, "/SEP0011223344FE.cnf.xml.sgn").is_some_and(|(c, _)| c == 404)
    });

    // A node killed during a boot storm: the phones move to the next TFTP server.
    let storm = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
        .args([
            "phone-sim",
            "boot",
            "--mac",
            "00112233B000",
            "--count",
            "48",
            "--concurrency",
            "24",
            "--tftp",
            &tftp_of("127.0.0.2"),
            "--tftp",
            &tftp_of("127.0.0.3"),
        ])
        .current_dir(phones.path())
        .env("PHONETRUST_DATA", phones.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the storm has begun", || {
        std::fs::read_dir(phones.path().join("phonetrust-phones"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().starts_with("SEP00112233B"))
            })
            .unwrap_or(false)
    });
    sub1.kill();
    let o = storm.wait_with_output().unwrap();
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "no phone failed for good:\n{out}{}",
        stderr(&o)
    );
    assert_eq!(out.matches(": configured").count(), 48, "{out}");
    let moved = (0..48)
        .filter(|i| {
            std::fs::read_to_string(
                phones
                    .path()
                    .join(format!("phonetrust-phones/SEP00112233B{i:03X}/status.log")),
            )
            .unwrap_or_default()
            .contains("trying the next server")
        })
        .count();
    assert!(moved > 0, "phones after the kill moved to sub2");
    // Restarted, the node rejoins by itself: up again, serving its ITL.
    drop(sub1);
    eventually("sub1 is shown down (no heartbeat for 15 s)", || {
        stdout(&pt_db(&publ, &url, &["show", "network", "cluster"]))
            .lines()
            .any(|l| l.starts_with("sub1.example.test") && l.contains(" down "))
    });
    let _sub1 = NodeProc::start(s1.path(), &url, "127.0.0.2", http);
    eventually("sub1 is up again", || {
        stdout(&pt_db(&publ, &url, &["show", "network", "cluster"]))
            .lines()
            .any(|l| l.starts_with("sub1.example.test") && l.contains(" up "))
    });
    assert!(
        http_fetch("127.0.0.2", http, "/ITLFile.tlv").is_some_and(|(c, _)| c == 200),
        "sub1 serves again"
    );

    // PostgreSQL restarted during CAPF load.
    // The 24 phones' CAPF sessions, 8 at once, each trying `retries` times more after a
    // RETRY_LATER.
    let capf_load = |retries: &str| {
        Command::new(env!("CARGO_BIN_EXE_phonetrust"))
            .env("PHONETRUST_WEB_PORT", "0")
            .args([
                "phone-sim",
                "capf",
                "--mac",
                "00112233C000",
                "--count",
                "24",
                "--concurrency",
                "8",
                "--retries",
                retries,
                "--server",
                &format!("127.0.0.1:{capf}"),
                "--capf-cert",
                capf_pem.to_str().unwrap(),
            ])
            .current_dir(phones.path())
            .env("PHONETRUST_DATA", phones.path().join("data"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let load = capf_load("20");
    std::thread::sleep(std::time::Duration::from_millis(150));
    pg.stop();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    pg.restart();
    let o = load.wait_with_output().unwrap();
    let out = stdout(&o);
    let check = |out: &str| {
        for i in 0..24 {
            let dev = format!("SEP00112233C0{i:02X}");
            let told_ok = out
                .lines()
                .any(|l| l.starts_with(&format!("{dev}: ")) && l.contains("LSC: Installed"));
            let shown = stdout(&ok(pt_db(&publ, &url, &["phone", "show", &dev])));
            let recorded = shown
                .lines()
                .find_map(|l| l.strip_prefix("LSC MD5: "))
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty() && m != "-");
            let on_phone = stdout(&sim(&["show", &dev]));
            if told_ok {
                let md5 = recorded
                    .clone()
                    .unwrap_or_else(|| panic!("{dev} told success, no record: {shown}"));
                assert!(on_phone.contains(&format!("MD5 {md5})")), "{on_phone}");
            }
            if let Some(md5) = recorded {
                assert!(
                    on_phone.contains(&format!("MD5 {md5})")),
                    "{dev}: recorded LSC {md5} the phone does not hold: {on_phone}"
                );
            }
        }
    };
    check(&out);
    // Whatever the restart interrupted is done on the next try.
    let o = capf_load("5").wait_with_output().unwrap();
    let again = stdout(&o);
    assert!(o.status.success(), "{out}\n---\n{again}");
    check(&again);
}

/// `cluster migrate --to postgres://…`: a single node on SQLite (a phone enrolled, more
/// imported) grows into a cluster. Refused while `serve` runs and without confirmation;
/// then every table is copied and shown the same on both sides, the node is the
/// publisher and uses the new database (config file, 0600); the phone keeps its LSC
/// record and, booting again from the node on PostgreSQL, trusts its ITL; a second
/// migrate is refused.
#[test]
fn a_single_node_grows_into_a_cluster_on_postgresql() {
    let Some(pg) = phonetrust_testsupport::postgres::PgServer::start("migrate") else {
        return;
    };
    let url = pg.create_db("grown");
    let d = tmp("migrate");
    init_node(&d);
    let mut csv = String::from("name,model,protocol,operation\n");
    for i in 0..300 {
        csv.push_str(&format!("SEP00AA00{i:06X},8845,SIP,none\n"));
    }
    std::fs::write(d.join("phones.csv"), csv).unwrap();
    assert!(pt(&d, &["phone", "import", "phones.csv"]).status.success());
    assert!(
        pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"])
            .status
            .success()
    );
    schedule_install(&d, "SEP001122334455", "null-string");
    let port = free_port();
    let lsc_md5 = |d: &Path| {
        stdout(&pt(d, &["phone", "show", "SEP001122334455"]))
            .lines()
            .find_map(|l| l.strip_prefix("LSC MD5: ").map(|m| m.trim().to_string()))
    };
    let start = |http: u16| {
        let http = http.to_string();
        Server::start_with(
            &d,
            port,
            &["--tvs-port", "0", "--tftp-port", "0", "--http-port", &http],
        )
    };
    let boot = |http: u16| {
        let via = format!("127.0.0.1:{http}");
        pt(
            &d,
            &["phone-sim", "boot", "--mac", "001122334455", "--http", &via],
        )
    };
    let (http, md5) = {
        let http = free_port();
        let _s = start(http);
        let o = pt(
            &d,
            &[
                "phone-sim",
                "capf",
                "--mac",
                "001122334455",
                "--server",
                &format!("127.0.0.1:{port}"),
            ],
        );
        assert!(stdout(&o).contains("LSC: Installed"), "{}", stdout(&o));
        let o = boot(http);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let o = pt(&d, &["cluster", "migrate", "--to", &url, "-y"]);
        assert_one_line_error(&o, "stop `phonetrust serve` on this node before migrating");
        (http, lsc_md5(&d).expect("an LSC recorded"))
    };
    let o = pt(&d, &["cluster", "migrate", "--to", &url]);
    assert!(!o.status.success(), "not without confirmation");
    let o = pt(
        &d,
        &["cluster", "migrate", "--to", "sqlite:///tmp/x.db", "-y"],
    );
    assert_one_line_error(&o, "give the cluster's PostgreSQL database");

    let o = pt(&d, &["cluster", "migrate", "--to", &url, "-y"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for table in [
        "device",
        "devicecert",
        "processconfig",
        "trustcert",
        "cluster_node",
    ] {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{table} ")))
            .unwrap_or_else(|| panic!("{table} reported: {out}"));
        assert!(row.ends_with("(same)"), "{row}");
    }
    let device_row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("device "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&device_row[1..3], ["301", "301"], "{out}");
    assert!(out.contains("Copy verified"), "{out}");
    let cfg = d.join("data").join("phonetrust.toml");
    assert!(
        std::fs::read_to_string(&cfg).unwrap().contains(&url),
        "the node uses the cluster database"
    );
    assert_eq!(mode_of(&cfg) & 0o077, 0, "the URL may hold a password");

    // Now on PostgreSQL: the same LSC record, this node the publisher.
    assert_eq!(lsc_md5(&d).as_deref(), Some(md5.as_str()));
    let shown = stdout(&pt(&d, &["show", "network", "cluster"]));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("pub.example.test") && l.contains("publisher")),
        "{shown}"
    );
    let o = pt(&d, &["run", "sql", "select count(*) as n from device"]);
    assert!(stdout(&o).contains("301"), "{}", stdout(&o));
    let _s = start(http);
    let o = boot(http);
    assert!(
        o.status.success() && stdout(&o).contains("configured"),
        "the phone trusts the node's ITL: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = pt(&d, &["cluster", "migrate", "--to", &url, "-y"]);
    assert_one_line_error(&o, "this node's database is PostgreSQL already");
}

/// Every change made through the CLI is in the audit log (who, node, what, result),
/// secrets masked; reads are not; `--since` and `--csv` work.
#[test]
fn every_change_is_in_the_audit_log() {
    let d = tmp("audit");
    init_node(d.path());
    let ok = |args: &[&str]| {
        let o = pt(d.path(), args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o
    };
    ok(&["phone", "add", "SEP001122334455", "--model", "8845"]);
    let dup = pt(
        d.path(),
        &["phone", "add", "SEP001122334455", "--model", "8845"],
    );
    assert!(!dup.status.success());
    ok(&[
        "phone",
        "capf",
        "SEP001122334455",
        "--operation",
        "install",
        "--auth",
        "auth-string",
        "--auth-string",
        "246810",
    ]);
    ok(&["phone", "list"]);
    ok(&["show", "itl"]);
    let o = ok(&["show", "audit"]);
    let out = stdout(&o);
    let changes: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("phone ") || l.contains("init"))
        .collect();
    assert_eq!(changes.len(), 4, "init, add, failed add, capf: {out}");
    assert!(
        changes[0].contains("init") && changes[0].contains("ok"),
        "{out}"
    );
    assert!(
        changes[2].contains("phone add") && changes[2].contains("failed"),
        "{out}"
    );
    assert!(changes[3].contains("--auth-string ****"), "{out}");
    assert!(!out.contains("246810"), "the secret is not recorded: {out}");
    assert!(
        !out.contains("phone list") && !out.contains("show itl"),
        "{out}"
    );
    let who = std::env::var("LOGNAME")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_default();
    if !who.is_empty() {
        assert!(changes[1].contains(&who), "the account is named: {out}");
    }
    assert!(changes[1].contains("pub.example.test"), "the node: {out}");
    // --since: a span back from now keeps them, a time in the future none.
    assert!(stdout(&ok(&["show", "audit", "--since", "1h"])).contains("phone capf"));
    assert!(
        stdout(&ok(&["show", "audit", "--since", "2099-01-01"])).contains("No changes recorded")
    );
    let csv = stdout(&ok(&["show", "audit", "--csv"]));
    assert!(
        csv.starts_with("time,actor,node,action,arguments,result\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let bad = pt(d.path(), &["show", "audit", "--since", "7w"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// `show itl status` from what phones downloaded: never fetched, current, outdated after
/// the ITL's content changed, not seen since the signer changed, current again after
/// the phone took the new ITL (through TVS); each phone's download recorded with node,
/// protocol, checksum.
#[test]
fn show_itl_status_follows_what_phones_downloaded() {
    let c = Cluster::start("itl-status");
    let o = pt(
        &c.d,
        &["phone", "add", "SEP001122334477", "--model", "8845"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for mac in ["001122334455", "001122334466"] {
        let (ok, out) = c.boot(mac, &[]);
        assert!(ok, "{out}");
    }
    // Records are written by serve within a second or two.
    let status = |args: &[&str]| {
        let mut a = vec!["show", "itl", "status"];
        a.extend_from_slice(args);
        let o = pt(&c.d, &a);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let wait_for = |needle: &str| -> String {
        let start = std::time::Instant::now();
        loop {
            let s = status(&[]);
            if s.contains(needle) {
                return s;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{needle}: {s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let s = wait_for("current:                             2");
    assert!(s.contains("never fetched an ITL:                1"), "{s}");
    assert!(s.contains("SEP001122334477"), "{s}");
    assert!(
        !s.contains("SEP001122334455"),
        "current phones are not listed: {s}"
    );
    let all = status(&["--all", "--csv"]);
    let line = all
        .lines()
        .find(|l| l.starts_with("SEP001122334455,"))
        .unwrap_or_else(|| panic!("{all}"));
    let f: Vec<&str> = line.split(',').collect();
    assert_eq!(f[1], "current", "{line}");
    assert_eq!(f[2], "pub.example.test", "{line}");
    assert_eq!(f[3], "http", "{line}");
    assert_eq!(f[5], f[6], "{line}");
    assert_eq!(f[5].len(), 64, "{line}");
    // What the ITL lists changes (TVS regenerated): both phones are on an outdated ITL.
    let o = pt(&c.d, &["set", "cert", "regen", "TVS", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    let s = status(&[]);
    assert!(s.contains("outdated ITL:                        2"), "{s}");
    // One phone takes the new ITL (same signer): current again.
    let (ok, out) = c.boot("001122334455", &[]);
    assert!(ok, "{out}");
    let s = wait_for("current:                             1");
    assert!(s.contains("outdated ITL:                        1"), "{s}");
    // The signer changes (CallManager regenerated): not seen since.
    let o = pt(&c.d, &["set", "cert", "regen", "CallManager", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.settle();
    let s = status(&[]);
    assert!(s.contains("not seen since the signer changed:   2"), "{s}");
    // One phone boots again and takes the new ITL through TVS: current.
    let (ok, out) = c.boot("001122334455", &[]);
    assert!(ok, "{out}");
    let s = wait_for("current:                             1");
    assert!(s.contains("not seen since the signer changed:   1"), "{s}");
}

/// 17.3: serve's certificate monitor finds a trust certificate that expires in 10 days,
/// logs it, POSTs one JSON notice to the webhook and mails one notice over STARTTLS; a
/// restarted serve (a second check the same day) sends nothing more; `show cert expiry`
/// lists it.
#[test]
fn serve_monitors_certificates_and_notifies_once_a_day() {
    use phonetrust_testsupport::sinks::{SmtpSink, WebhookSink};
    let d = tmp("monitor");
    init_node(d.path());
    let (ok, e) = openssl_cli(
        d.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "soon.key",
            "-out",
            "soon.pem",
            "-days",
            "10",
            "-subj",
            "/CN=Soon Expiring CA/O=Example",
        ],
    );
    assert!(ok, "{e}");
    let o = pt(
        d.path(),
        &[
            "set",
            "cert",
            "import",
            "trust",
            "CAPF-trust",
            "soon.pem",
            "-y",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(d.path(), &["show", "cert", "expiry"]);
    assert!(stdout(&o).contains("Soon Expiring CA"), "{}", stdout(&o));
    let smtp = SmtpSink::start();
    let hook = WebhookSink::start();
    std::fs::write(d.join("sink-ca.pem"), smtp.ca_pem()).unwrap();
    let pass = d.join("smtp.pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(
        d.join("data/phonetrust.toml"),
        format!(
            "[monitor]\nwebhook = \"{}/certs\"\nsmtp_server = \"127.0.0.1:{}\"\nsmtp_tls_name = \"localhost\"\nsmtp_ca_file = \"{}\"\nsmtp_from = \"phonetrust@example.test\"\nsmtp_to = [\"pki@example.test\"]\nsmtp_user = \"monitor\"\nsmtp_password_file = \"{}\"\n",
            hook.url(),
            smtp.port(),
            d.join("sink-ca.pem").display(),
            pass.display()
        ),
    )
    .unwrap();
    let wait = |n: usize| {
        let start = std::time::Instant::now();
        while hook.posts().len() < n || smtp.mails().len() < n {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "posts {:?}, mails {:?}",
                hook.posts().len(),
                smtp.mails().len()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    {
        let _s = Server::start(d.path(), free_port());
        wait(1);
        // The check is done: give a second notice a chance to show up wrongly.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let posts = hook.posts();
    assert_eq!(posts.len(), 1, "one webhook");
    let j = String::from_utf8_lossy(&posts[0].body).into_owned();
    assert!(
        j.contains("\"name\":\"soon.pem\"") || j.contains("Soon Expiring CA"),
        "{j}"
    );
    assert!(j.contains("\"kind\":\"CAPF-trust\""), "{j}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one e-mail");
    assert!(mails[0].tls && mails[0].user.as_deref() == Some("monitor"));
    assert!(
        mails[0].data.contains("in CAPF-trust expires in"),
        "{}",
        mails[0].data
    );
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap_or_default();
    assert!(log.contains("certificate monitor:"), "{log}");
    // Restarted: checks at start again, same day: nothing new.
    {
        let _s = Server::start(d.path(), free_port());
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    assert_eq!(hook.posts().len(), 1);
    assert_eq!(smtp.mails().len(), 1);
    // A password file others can read is refused, naming the fix.
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .env("PHONETRUST_WEB_PORT", "0")
        .args([
            "serve",
            "--capf-port",
            "0",
            "--tvs-port",
            "0",
            "--tftp-port",
            "0",
            "--http-port",
            "0",
        ])
        .current_dir(d.path())
        .env("PHONETRUST_DATA", d.join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("serve started with a password file others can read");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("chmod 600"), "{err}");
}

/// 17.5: `phone bulk` — a selection is required, a dry run changes nothing and names the
/// phones, schedule with a random string per phone writes a 0600 report, change touches
/// only pending operations, cancel clears them, a CSV of names narrows the selection.
#[test]
fn phone_bulk_schedules_changes_and_cancels() {
    let d = tmp("bulk");
    init_node(d.path());
    for i in 0..6 {
        let model = if i < 4 { "8845" } else { "7975" };
        let name = format!("SEP00112233440{i}");
        let o = pt(d.path(), &["phone", "add", &name, "--model", model]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let ok = |args: &[&str]| {
        let o = pt(d.path(), args);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let pending = || -> Vec<String> {
        stdout(&pt(d.path(), &["phone", "list", "--status", "pending"]))
            .lines()
            .filter(|l| l.starts_with("SEP"))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    assert_one_line_error(
        &pt(
            d.path(),
            &["phone", "bulk", "schedule", "--operation", "install", "-y"],
        ),
        "--all for every phone",
    );
    let out = ok(&[
        "phone",
        "bulk",
        "schedule",
        "--model",
        "8845",
        "--operation",
        "install",
        "--dry-run",
    ]);
    assert!(out.contains("4 phone(s) match; 4 to schedule"), "{out}");
    assert!(
        out.contains("SEP001122334403") && !out.contains("SEP001122334404"),
        "{out}"
    );
    assert!(out.contains("Dry run: nothing was changed."), "{out}");
    assert!(pending().is_empty());
    let out = ok(&[
        "phone",
        "bulk",
        "schedule",
        "--model",
        "8845",
        "--operation",
        "install",
        "--auth",
        "auth-string",
        "--random-auth-string",
        "--report",
        "report.csv",
        "-y",
    ]);
    assert!(out.contains("4 phone(s) changed, 0 failed"), "{out}");
    assert_eq!(pending().len(), 4);
    assert_eq!(mode_of(&d.join("report.csv")) & 0o777, 0o600);
    let report = std::fs::read_to_string(d.join("report.csv")).unwrap();
    let strings: std::collections::HashSet<&str> = report
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[1], "ok", "{l}");
            assert_eq!(f[4].len(), 6, "{l}");
            f[4]
        })
        .collect();
    assert_eq!(strings.len(), 4, "a string per phone: {report}");
    let one = report.lines().nth(1).unwrap();
    let (name, string) = (
        one.split(',').next().unwrap(),
        one.split(',').nth(4).unwrap(),
    );
    let show = ok(&["phone", "show", name]);
    assert!(show.contains(string), "{show}");
    assert!(show.contains("Operation Pending"), "{show}");
    // change: only the pending ones (the 7975s have nothing pending).
    let out = ok(&[
        "phone",
        "bulk",
        "change",
        "--all",
        "--completes-by",
        "2099-01-01T00:00Z",
        "-y",
    ]);
    assert!(
        out.contains("6 phone(s) match; 4 to change, 2 left alone"),
        "{out}"
    );
    assert!(ok(&["phone", "show", name]).contains("2099-01-01"));
    // cancel, narrowed by a CSV of names.
    std::fs::write(
        d.join("names.csv"),
        "Device Name,Note\nSEP001122334400,a\nSEP001122334401,b\nSEP001122334405,c\n",
    )
    .unwrap();
    let out = ok(&["phone", "bulk", "cancel", "--names", "names.csv", "-y"]);
    assert!(
        out.contains("3 phone(s) match; 2 to cancel, 1 left alone"),
        "{out}"
    );
    assert_eq!(pending(), ["SEP001122334402", "SEP001122334403"]);
    std::fs::write(d.join("bad.csv"), "SEP001122334400\nnot a phone\n").unwrap();
    assert_one_line_error(
        &pt(
            d.path(),
            &["phone", "bulk", "cancel", "--names", "bad.csv", "-y"],
        ),
        "bad.csv: line 2",
    );
    // A refused change is reported per phone, the others go on: the 7975s have no
    // authentication string, the 8845s keep theirs.
    let out = pt(
        d.path(),
        &[
            "phone",
            "bulk",
            "schedule",
            "--all",
            "--operation",
            "install",
            "--auth",
            "auth-string",
            "-y",
        ],
    );
    assert!(!out.status.success());
    let o = stdout(&out);
    assert!(o.contains("4 phone(s) changed, 2 failed"), "{o}");
    assert!(o.contains("SEP001122334404: authentication mode 'By Authentication String' needs an authentication string"), "{o}");
    // The audit log has each bulk command.
    assert!(ok(&["show", "audit"]).contains("phone bulk cancel"));
}

/// 17.4 through serve: with `[lifecycle]` on, a phone holding an LSC of a regenerated
/// CAPF is scheduled for Install/Upgrade by LSC at serve's first tick, the reset hook is
/// called with its name, `show lifecycle` shows the batch; off, `show lifecycle` says so.
#[test]
fn serve_renews_lscs_of_a_retired_capf_by_policy() {
    let d = tmp("lifecycle");
    init_node(&d);
    let o = pt(&d, &["show", "lifecycle"]);
    assert!(
        stdout(&o).contains("LSC renewal by policy: off"),
        "{}",
        stdout(&o)
    );
    assert!(
        pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"])
            .status
            .success()
    );
    schedule_install(&d, "SEP001122334455", "null-string");
    let port = free_port();
    {
        let _s = Server::start(&d, port);
        let o = pt(
            &d,
            &[
                "phone-sim",
                "capf",
                "--mac",
                "001122334455",
                "--server",
                &format!("127.0.0.1:{port}"),
            ],
        );
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    }
    let o = pt(&d, &["set", "cert", "regen", "CAPF", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hook_log = d.join("hook.log");
    std::fs::write(
        d.join("data/phonetrust.toml"),
        format!(
            "[lifecycle]\nenabled = true\nmax_per_hour = 10\nreset_command = [\"sh\", \"-c\", \"printf '%s\\\\n' \\\"$*\\\" >> {}\", \"hook\"]\n",
            hook_log.display()
        ),
    )
    .unwrap();
    let o = pt(&d, &["show", "lifecycle"]);
    let out = stdout(&o);
    assert!(out.contains("LSC renewal by policy: on"), "{out}");
    assert!(
        out.contains("every LSC of a retired CAPF generation"),
        "{out}"
    );
    assert!(out.contains("Waiting:      1"), "{out}");
    {
        let _s = Server::start(&d, port);
        let start = std::time::Instant::now();
        while std::fs::read_to_string(&hook_log)
            .unwrap_or_default()
            .is_empty()
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the hook was not called"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert_eq!(
        std::fs::read_to_string(&hook_log).unwrap().trim(),
        "SEP001122334455"
    );
    let shown = stdout(&pt(&d, &["phone", "show", "SEP001122334455"]));
    assert!(shown.contains("Operation Pending"), "{shown}");
    assert!(
        shown.contains("By Existing Certificate (precedence to LSC)"),
        "{shown}"
    );
    let out = stdout(&pt(&d, &["show", "lifecycle"]));
    assert!(out.contains("Scheduled:    1"), "{out}");
    assert!(out.contains("command sh: ok (1 call(s))"), "{out}");
}

/// A node for the doctor: host `localhost` (it resolves), CapfPhonePort set to where
/// `serve` will listen.
fn doctor_node(tag: &str, host: &str) -> (TestDir, u16) {
    let d = tmp(tag);
    let o = pt(&d, &["init", "--host", host, "--rsa-bits", "1024"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let port = free_port();
    let o = pt(&d, &["set", "param", "CapfPhonePort", &port.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    (d, port)
}

/// `doctor` with `args`: (exit status, output).
fn doctor(d: &Path, args: &[&str]) -> (i32, String) {
    let mut a = vec!["doctor"];
    a.extend_from_slice(args);
    let o = pt(d, &a);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    (o.status.code().unwrap_or(-1), stdout(&o))
}

/// 17.8: a healthy node — CAPF listening where phones are told, the ITL listing it, no
/// operation late, nothing expiring — reports nothing and exits 0.
#[test]
fn doctor_reports_nothing_on_a_healthy_node() {
    let (d, port) = doctor_node("doctor-ok", "localhost");
    assert!(
        pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"])
            .status
            .success()
    );
    let _s = Server::start(&d, port);
    let (code, out) = doctor(&d, &[]);
    assert_eq!((code, out.trim()), (0, "No problems found."), "{out}");
    let (code, out) = doctor(&d, &["phone", "SEP001122334455"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("LSC: none") && out.contains("No problems found."),
        "{out}"
    );
}

/// 17.8: CAPF not listening: "LSC: Connection failed", with the port and the fix.
#[test]
fn doctor_finds_capf_not_listening() {
    let (d, port) = doctor_node("doctor-down", "localhost");
    let (code, out) = doctor(&d, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("ERROR   capf-unreachable  CAPF localhost:{port}")),
        "{out}"
    );
    assert!(out.contains("LSC: Connection failed"), "{out}");
    assert!(out.contains("start `phonetrust serve`"), "{out}");
}

/// 17.8: a CAPF host name in the configs that does not resolve.
#[test]
fn doctor_finds_an_unresolvable_capf_host() {
    let (d, _) = doctor_node("doctor-dns", "capf.nowhere.invalid");
    let (code, out) = doctor(&d, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("capf-host-unresolved  CAPF capf.nowhere.invalid:"),
        "{out}"
    );
    assert!(out.contains("add capf.nowhere.invalid to DNS"), "{out}");
}

/// 17.8: an operation past its deadline ("Upgrade Failed: User Initiated Request
/// Late/Timeout"), and one pending longer than a day with why (LSC precedence without an
/// LSC, a phone that never fetched its ITL); `doctor phone` explains it.
#[test]
fn doctor_finds_late_and_stuck_operations() {
    let (d, port) = doctor_node("doctor-ops", "localhost");
    let _s = Server::start(&d, port);
    for p in ["SEP001122334455", "SEP001122334466"] {
        assert!(
            pt(&d, &["phone", "add", p, "--model", "8845"])
                .status
                .success()
        );
    }
    schedule_install(&d, "SEP001122334455", "lsc");
    let o = pt(
        &d,
        &[
            "phone",
            "capf",
            "SEP001122334466",
            "--operation",
            "install",
            "--auth",
            "null-string",
            "--completes-by",
            "+1d",
        ],
    );
    if !o.status.success() {
        // --completes-by takes a date: one a day and a half ahead.
        let t = time_in(36 * 3_600);
        let o = pt(
            &d,
            &[
                "phone",
                "capf",
                "SEP001122334466",
                "--operation",
                "install",
                "--auth",
                "null-string",
                "--completes-by",
                &t,
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Today: nothing is wrong yet.
    let (code, out) = doctor(&d, &[]);
    assert_eq!(code, 0, "{out}");
    // Two days on: SEP…66 is late, SEP…55 is stuck, and why.
    let (code, out) = doctor(&d, &["--at", "+2d"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ERROR   operation-late  SEP001122334466"),
        "{out}"
    );
    assert!(
        out.contains("Upgrade Failed: User Initiated Request Late/Timeout"),
        "{out}"
    );
    assert!(
        out.contains("WARNING operation-stuck  SEP001122334455"),
        "{out}"
    );
    assert!(out.contains("precedence to LSC)\" but has no LSC"), "{out}");
    assert!(out.contains("stale ITL (never fetched an ITL)"), "{out}");
    let (code, out) = doctor(&d, &["--at", "+2d", "phone", "SEP001122334455"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CAPF: Install/Upgrade"), "{out}");
    assert!(
        out.contains(&format!("Told: CAPF localhost:{port}")),
        "{out}"
    );
    assert!(out.contains("operation-stuck"), "{out}");
}

/// A date and time `secs` from now, as the CLI takes it.
fn time_in(secs: i64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + secs;
    let o = Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// 17.8: a CTL left behind in non-secure mode.
#[test]
fn doctor_finds_a_ctl_left_behind() {
    let (d, port) = doctor_node("doctor-ctl", "localhost");
    let _s = Server::start(&d, port);
    for m in ["mixed-mode", "non-secure-mode"] {
        let o = pt(&d, &["utils", "ctl", "set-cluster", m, "-y"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (code, out) = doctor(&d, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("WARNING ctl-left-behind  CTLFile.tlv"),
        "{out}"
    );
    assert!(
        out.contains("phonetrust file delete tftp CTLFile.tlv"),
        "{out}"
    );
}

/// 17.8: a certificate expiring within 30 days.
#[test]
fn doctor_finds_certificates_expiring() {
    let (d, port) = doctor_node("doctor-exp", "localhost");
    let _s = Server::start(&d, port);
    let (ok, e) = openssl_cli(
        &d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "soon.pem",
            "-days",
            "10",
            "-subj",
            "/CN=Soon CA",
        ],
    );
    assert!(ok, "{e}");
    let o = pt(
        &d,
        &[
            "set",
            "cert",
            "import",
            "trust",
            "CAPF-trust",
            "soon.pem",
            "-y",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (code, out) = doctor(&d, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("certificate-expiring  CAPF-trust"), "{out}");
    assert!(out.contains("in CAPF-trust expires in"), "{out}");
}

/// 17.8: phones' LSCs depend on an earlier CAPF generation kept in CAPF-trust (after a
/// regeneration), with the bulk command that renews them.
#[test]
fn doctor_finds_lscs_depending_on_an_old_capf() {
    let (d, port) = doctor_node("doctor-gen", "localhost");
    let _s = Server::start(&d, port);
    assert!(
        pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"])
            .status
            .success()
    );
    schedule_install(&d, "SEP001122334455", "null-string");
    let o = pt(
        &d,
        &[
            "phone-sim",
            "capf",
            "--mac",
            "001122334455",
            "--server",
            &format!("127.0.0.1:{port}"),
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(doctor(&d, &[]).0, 0);
    let o = pt(&d, &["set", "cert", "regen", "CAPF", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 phone(s) hold an LSC issued by the current CAPF certificate"),
        "{}",
        stdout(&o)
    );
    // A second regeneration: the phone's LSC is of the first generation (same subject),
    // not of the current one: it is not counted again.
    let o = pt(&d, &["set", "cert", "regen", "CAPF", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stdout(&o).contains("hold an LSC issued by the current"),
        "{}",
        stdout(&o)
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out) = doctor(&d, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lsc-depends-on-old-capf  CAPF-trust"), "{out}");
    assert!(
        out.contains("1 phone(s) hold LSCs of an earlier CAPF generation"),
        "{out}"
    );
    assert!(
        out.contains("phonetrust phone bulk schedule --issuer \"CN=CAPF-"),
        "{out}"
    );
}

/// 18.2: accounts — none by default, the password never on the command line (stdin or a
/// file; without a terminal the command says how), the password rule, duplicates refused,
/// list, passwd, disable/enable, delete; audited without the password.
#[test]
fn user_accounts_without_defaults() {
    let d = tmp("users");
    init_node(&d);
    let o = pt(&d, &["user", "list"]);
    assert!(stdout(&o).contains("No accounts"), "{}", stdout(&o));
    assert_one_line_error(
        &pt(&d, &["user", "add", "alice", "--role", "admin"]),
        "give --password-file FILE or --password-stdin",
    );
    assert_one_line_error(
        &pt_in(
            &d,
            &[
                "user",
                "add",
                "alice",
                "--role",
                "admin",
                "--password-stdin",
            ],
            "short\n",
        ),
        "at least 12 characters",
    );
    let o = pt_in(
        &d,
        &[
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Added account alice (admin)."));
    assert_one_line_error(
        &pt_in(
            &d,
            &[
                "user",
                "add",
                "alice",
                "--role",
                "operator",
                "--password-stdin",
            ],
            "another good one 1\n",
        ),
        "exists already",
    );
    assert_one_line_error(
        &pt_in(
            &d,
            &[
                "user",
                "add",
                "Bad Name",
                "--role",
                "operator",
                "--password-stdin",
            ],
            "another good one 1\n",
        ),
        "is not an account name",
    );
    let o = pt(&d, &["user", "add", "bob", "--role", "root"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&o).contains("admin, operator or read-only"),
        "{}",
        stderr(&o)
    );
    std::fs::write(d.join("pw"), "another good one 2\n").unwrap();
    let o = pt(
        &d,
        &[
            "user",
            "add",
            "bob",
            "--role",
            "read-only",
            "--password-file",
            "pw",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&pt(&d, &["user", "list"]));
    assert!(
        list.contains("alice") && list.contains("admin") && list.contains("never"),
        "{list}"
    );
    assert!(list.contains("bob") && list.contains("read-only"), "{list}");
    assert!(pt(&d, &["user", "disable", "bob"]).status.success());
    assert!(stdout(&pt(&d, &["user", "list"])).contains("disabled"));
    assert!(pt(&d, &["user", "enable", "bob"]).status.success());
    let o = pt_in(
        &d,
        &["user", "passwd", "bob", "--password-stdin"],
        "a third good one 3\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_one_line_error(
        &pt(&d, &["user", "passwd", "carol", "--password-stdin"]),
        "no account carol",
    );
    let o = pt(&d, &["user", "delete", "bob", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&pt(&d, &["user", "list"])).contains("bob"));
    // The database holds hashes only; the audit log has the commands, not the passwords.
    let o = pt(&d, &["run", "sql", "select password_hash from account"]);
    assert!(stdout(&o).contains("$argon2id$"), "{}", stdout(&o));
    let audit = stdout(&pt(&d, &["show", "audit"]));
    assert!(
        audit.contains("user add") && audit.contains("user delete"),
        "{audit}"
    );
    assert!(
        !audit.contains("correct horse") && !audit.contains("good one"),
        "{audit}"
    );
    assert!(!stdout(&o).contains("correct horse"));
}

/// `serve` in `d` with CAPF on `capf` and the web administration on a reserved port;
/// the server and the web administration's base URL.
fn web_server(d: &Path, capf: u16) -> (Server, String) {
    let web_port = free_port();
    let s = Server::start_with(
        d,
        capf,
        &[
            "--tvs-port",
            "0",
            "--tftp-port",
            "0",
            "--http-port",
            "0",
            "--web-port",
            &web_port.to_string(),
        ],
    );
    (s, format!("https://127.0.0.1:{web_port}"))
}

/// curl against the web administration: (status, headers and body as text).
fn web(base: &str, method: &str, path: &str, jar: &Path, form: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-k", "-i", "-X", method, "-b"])
        .arg(jar)
        .arg("-c")
        .arg(jar)
        .arg(format!("{base}{path}"));
    if let Some(f) = form {
        c.args([
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data-raw",
            f,
        ]);
    }
    let o = c.output().expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The value of the hidden `csrf` field of a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

/// 18.1–18.3 without a browser: the set-up page until an account exists, login with
/// CSRF, cookies' attributes, CSP, roles, escaping, logout, per-account lock.
#[test]
fn web_admin_is_safe_by_default() {
    if !phonetrust_testsupport::have_tool("curl", "--version", "curl") {
        return;
    }
    let d = tmp("web");
    init_node(&d);
    std::fs::write(d.join("metrics.token"), "s3cret-metrics\n").unwrap();
    std::fs::set_permissions(
        d.join("metrics.token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        d.join("data/phonetrust.toml"),
        format!(
            "[web]\nmetrics_token_file = \"{}\"\n",
            d.join("metrics.token").display()
        ),
    )
    .unwrap();
    let (_s, base) = web_server(&d, free_port());
    let jar = d.join("cookies");
    // No account: every route says how to make one, and nothing else.
    for path in ["/", "/phones", "/login", "/anything"] {
        let (code, page) = web(&base, "GET", path, &jar, None);
        assert_eq!(code, 503, "{path}: {page}");
        assert!(
            page.contains("phonetrust user add NAME --role admin"),
            "{page}"
        );
    }
    for (name, role) in [("alice", "admin"), ("reader", "read-only")] {
        let o = pt_in(
            &d,
            &["user", "add", name, "--role", role, "--password-stdin"],
            "correct horse battery\n",
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = pt(
        &d,
        &[
            "phone",
            "add",
            "SEP001122334455",
            "--model",
            "8845",
            "--description",
            "<script>alert(1)</script>",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Without a session: to the login page.
    let (code, page) = web(&base, "GET", "/phones", &jar, None);
    assert_eq!(code, 303, "{page}");
    assert!(
        page.to_ascii_lowercase().contains("location: /login"),
        "{page}"
    );
    let (code, login) = web(&base, "GET", "/login", &jar, None);
    assert_eq!(code, 200);
    assert!(
        login.contains("content-security-policy: default-src 'none'"),
        "{login}"
    );
    let token = csrf_of(&login);
    // What a browser asks for on its own (the tab's icon) is served without a login and
    // does not replace the login form's token; a second login page keeps it too.
    let (code, icon) = web(&base, "GET", "/favicon.ico", &jar, None);
    assert_eq!(code, 200, "{icon}");
    assert!(
        icon.contains("image/svg+xml") && icon.contains("<svg"),
        "{icon}"
    );
    let (_, again) = web(&base, "GET", "/login", &jar, None);
    assert_eq!(csrf_of(&again), token, "one login token per browser");
    // CSRF missing or wrong: refused.
    let (code, _) = web(
        &base,
        "POST",
        "/login",
        &jar,
        Some("name=alice&password=correct+horse+battery&csrf="),
    );
    assert_eq!(code, 403);
    let (code, _) = web(
        &base,
        "POST",
        "/login",
        &jar,
        Some("name=alice&password=correct+horse+battery&csrf=00"),
    );
    assert_eq!(code, 403);
    let (code, page) = web(
        &base,
        "POST",
        "/login",
        &jar,
        Some(&format!(
            "name=alice&password=wrong+password+x&csrf={token}"
        )),
    );
    assert_eq!(code, 401, "{page}");
    assert!(page.contains("wrong account name or password"), "{page}");
    let token = csrf_of(&page);
    let (code, page) = web(
        &base,
        "POST",
        "/login",
        &jar,
        Some(&format!(
            "name=alice&password=correct+horse+battery&csrf={token}"
        )),
    );
    assert_eq!(code, 303, "{page}");
    let cookie = page
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: pt_session=")
        })
        .unwrap_or_else(|| panic!("{page}"));
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let (code, dash) = web(&base, "GET", "/", &jar, None);
    assert_eq!(code, 200, "{dash}");
    assert!(
        dash.contains("Cluster Security Mode") && dash.contains("<svg"),
        "{dash}"
    );
    // Hostile text is shown as text.
    let (code, list) = web(&base, "GET", "/phones?lsc=none", &jar, None);
    assert_eq!(code, 200);
    assert!(list.contains("&lt;script&gt;alert(1)&lt;"), "{list}");
    assert!(!list.contains("<script>"), "{list}");
    let (code, p) = web(&base, "GET", "/phones/SEP001122334455", &jar, None);
    assert_eq!(code, 200);
    assert!(
        p.contains("Certification Authority Proxy Function (CAPF) Information"),
        "{p}"
    );
    assert!(p.contains("Certificate Operation Status: None"), "{p}");
    // Logout needs the session's CSRF token.
    let (code, _) = web(&base, "POST", "/logout", &jar, Some("csrf=nope"));
    assert_eq!(code, 403);
    let (code, _) = web(
        &base,
        "POST",
        "/logout",
        &jar,
        Some(&format!("csrf={}", csrf_of(&dash))),
    );
    assert_eq!(code, 303);
    let (code, _) = web(&base, "GET", "/", &jar, None);
    assert_eq!(code, 303, "the session is gone");
    // Five wrong passwords lock the account: then even the right one is refused.
    for _ in 0..5 {
        let (_, login) = web(&base, "GET", "/login", &jar, None);
        web(
            &base,
            "POST",
            "/login",
            &jar,
            Some(&format!(
                "name=reader&password=not+the+password&csrf={}",
                csrf_of(&login)
            )),
        );
    }
    let (_, login) = web(&base, "GET", "/login", &jar, None);
    let (code, page) = web(
        &base,
        "POST",
        "/login",
        &jar,
        Some(&format!(
            "name=reader&password=correct+horse+battery&csrf={}",
            csrf_of(&login)
        )),
    );
    assert_eq!(code, 429, "{page}");
    assert!(page.contains("too many failed logins"), "{page}");
    assert!(stdout(&pt(&d, &["user", "list"])).contains("locked until"));
    assert!(stdout(&pt(&d, &["show", "audit"])).contains("web login"));
    // /metrics with a token configured: refused without it, served with it.
    let (code, _) = web(&base, "GET", "/metrics", &jar, None);
    assert_eq!(code, 401);
    let o = Command::new("curl")
        .args([
            "-s",
            "-k",
            "-H",
            "Authorization: Bearer s3cret-metrics",
            &format!("{base}/metrics"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("# TYPE phonetrust_tvs_verdicts_total counter")
    );
}

/// Log in as `name` (password "correct horse battery") with cookie jar `jar`.
fn web_login(base: &str, jar: &Path, name: &str) {
    let (_, login) = web(base, "GET", "/login", jar, None);
    let (code, page) = web(
        base,
        "POST",
        "/login",
        jar,
        Some(&format!(
            "name={name}&password=correct+horse+battery&csrf={}",
            csrf_of(&login)
        )),
    );
    assert_eq!(code, 303, "{page}");
}

/// 18.2–18.3: roles on the server side — a read-only account sees the phone page without
/// the form and is refused when it posts anyway; an operator schedules an install from
/// the phone page (CSRF checked), a refusal shows the store's message, and a simulated
/// phone's enrolment shows on the page.
#[test]
fn web_phone_page_schedules_by_role() {
    if !phonetrust_testsupport::have_tool("curl", "--version", "curl") {
        return;
    }
    let d = tmp("web-roles");
    init_node(&d);
    let capf = free_port();
    let (_s, base) = web_server(&d, capf);
    for (name, role) in [("olivia", "operator"), ("reader", "read-only")] {
        let o = pt_in(
            &d,
            &["user", "add", name, "--role", role, "--password-stdin"],
            "correct horse battery\n",
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(
        pt(&d, &["phone", "add", "SEP001122334455", "--model", "8845"])
            .status
            .success()
    );
    let (rj, oj) = (d.join("reader.jar"), d.join("operator.jar"));
    web_login(&base, &rj, "reader");
    web_login(&base, &oj, "olivia");
    let (_, page) = web(&base, "GET", "/phones/SEP001122334455", &rj, None);
    assert!(
        !page.contains("action=\"/phones/SEP001122334455/capf\""),
        "no form for read-only"
    );
    let form =
        |csrf: &str, auth: &str| format!("csrf={csrf}&operation=install&auth={auth}&auth_string=");
    let (code, _) = web(
        &base,
        "POST",
        "/phones/SEP001122334455/capf",
        &rj,
        Some(&form(&csrf_of(&page), "null-string")),
    );
    assert_eq!(code, 403, "read-only may not schedule");
    let (_, refused) = web(
        &base,
        "POST",
        "/phones/SEP001122334455/capf",
        &rj,
        Some(&form("x", "null-string")),
    );
    assert!(
        refused.contains("the read-only role may not do this: it needs operator"),
        "{refused}"
    );
    let (_, page) = web(&base, "GET", "/phones/SEP001122334455", &oj, None);
    assert!(
        page.contains("action=\"/phones/SEP001122334455/capf\""),
        "{page}"
    );
    let token = csrf_of(&page);
    let (code, _) = web(
        &base,
        "POST",
        "/phones/SEP001122334455/capf",
        &oj,
        Some(&form("bad", "null-string")),
    );
    assert_eq!(code, 403, "CSRF");
    let (code, page) = web(
        &base,
        "POST",
        "/phones/SEP001122334455/capf",
        &oj,
        Some(&form(&token, "auth-string")),
    );
    assert_eq!(code, 400);
    assert!(page.contains("needs an authentication string"), "{page}");
    let (code, _) = web(
        &base,
        "POST",
        "/phones/SEP001122334455/capf",
        &oj,
        Some(&form(&token, "null-string")),
    );
    assert_eq!(code, 303);
    let (_, page) = web(&base, "GET", "/phones/SEP001122334455", &oj, None);
    assert!(
        page.contains("Certificate Operation Status: Operation Pending"),
        "{page}"
    );
    let o = pt(
        &d,
        &[
            "phone-sim",
            "capf",
            "--mac",
            "001122334455",
            "--server",
            &format!("127.0.0.1:{capf}"),
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let (_, page) = web(&base, "GET", "/phones/SEP001122334455", &rj, None);
    assert!(
        page.contains("Certificate Operation Status: Upgrade Success"),
        "{page}"
    );
    assert!(page.contains("LSC: "), "{page}");
    let audit = stdout(&pt(&d, &["show", "audit"]));
    assert!(
        audit.contains("web phone capf") && audit.contains("olivia"),
        "{audit}"
    );

    // 18.3: the phone page's ITL status and the doctor's diagnosis of the phone.
    assert!(
        page.contains("<th>ITL Status</th><td>never fetched an ITL</td>"),
        "{page}"
    );
    let doctor = stdout(&pt(&d, &["doctor", "phone", "SEP001122334455"]));
    assert!(
        doctor.starts_with("SEP001122334455: model 8845"),
        "{doctor}"
    );
    // Every line the CLI's diagnosis gives, as the page shows it (escaped).
    let escaped = |l: &str| {
        l.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    for l in doctor.lines().take_while(|l| !l.is_empty()) {
        assert!(
            page.contains(&format!("<p>{}</p>", escaped(l))),
            "{l}\n{page}"
        );
    }
    assert!(page.contains("<h2>Diagnosis</h2>"), "{page}");

    // The dashboard's pictures, as inline SVG with the counts.
    let (code, dash) = web(&base, "GET", "/", &rj, None);
    assert_eq!(code, 200);
    for title in [
        "Phones by LSC status",
        "LSCs by month of expiry",
        "Enrolments per hour (last 24 hours, UTC)",
        "Phones by ITL status",
    ] {
        assert!(
            dash.contains(&format!("<figcaption>{title}</figcaption><svg")),
            "{title}: {dash}"
        );
    }
    let svg = |title: &str| -> String {
        let at = dash.find(&format!("aria-label=\"{title}\"")).unwrap();
        dash[at..].split("</svg>").next().unwrap().to_string()
    };
    // One enrolment, in the current hour (the last bar), and one phone never fetched an ITL.
    let hours = svg("Enrolments per hour (last 24 hours, UTC)");
    assert_eq!(hours.matches("<rect").count(), 24, "{hours}");
    let counts: Vec<&str> = hours
        .split("font-size=\"12\">")
        .skip(1)
        .map(|x| x.split('<').next().unwrap())
        .collect();
    assert_eq!(counts.last(), Some(&"1"), "{hours}");
    assert_eq!(counts.iter().filter(|c| **c == "1").count(), 1, "{hours}");
    let itl = svg("Phones by ITL status");
    assert!(itl.contains(">never fetched an ITL</text>"), "{itl}");
    let months = svg("LSCs by month of expiry");
    assert!(
        months.contains(">expired</text>") && months.contains(">later</text>"),
        "{months}"
    );
    assert!(dash.contains("<h2>Doctor</h2>"), "{dash}");

    // Reports: ITL file status, certificate expiry, the audit log; each as CSV too.
    let (code, r) = web(&base, "GET", "/reports/itl", &rj, None);
    assert_eq!(code, 200, "{r}");
    assert!(
        r.contains("<td>SEP001122334455</td><td>never fetched an ITL</td>"),
        "{r}"
    );
    let (_, csv) = web(&base, "GET", "/reports/itl?csv=1", &rj, None);
    assert!(csv.contains("filename=\"itl-report.csv\""), "{csv}");
    assert!(
        csv.contains("Device Name,ITL Status,TFTP Node,Last ITL Download,Phone's ITL SHA-256,Node's ITL SHA-256\r\nSEP001122334455,never fetched an ITL,,,,\r\n"),
        "{csv}"
    );
    // The LSC is valid for years: in the expiry report only when looking far enough.
    let (_, r) = web(&base, "GET", "/reports/expiry?days=30", &rj, None);
    assert!(!r.contains("<td>LSC</td><td>SEP001122334455</td>"), "{r}");
    let (_, r) = web(&base, "GET", "/reports/expiry?days=20000", &rj, None);
    assert!(r.contains("<td>LSC</td><td>SEP001122334455</td>"), "{r}");
    let (_, r) = web(&base, "GET", "/reports/audit?csv=1&days=1", &rj, None);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.lines()
            .any(|l| l.contains(",olivia,") && l.contains(",web phone capf,")),
        "{r}"
    );
    let (code, r) = web(&base, "GET", "/reports/nothing", &rj, None);
    assert_eq!(code, 404);
    assert!(
        r.contains("the reports are capf, itl, expiry and audit"),
        "{r}"
    );
}

/// curl a JSON API route with an optional bearer token: (status, body).
fn api(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-k", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-raw", b]);
    }
    c.arg(format!("{base}{path}"));
    let out = String::from_utf8_lossy(&c.output().expect("curl").stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// 18.4: the REST API — tokens per account (shown once, listed, revoked), refused without
/// a token or with a revoked one, the role enforced, every route answering, errors as
/// JSON with the CLI's messages, paging, the OpenAPI document listing every route.
#[test]
fn rest_api_with_tokens_and_openapi() {
    if !phonetrust_testsupport::have_tool("curl", "--version", "curl") {
        return;
    }
    let d = tmp("api");
    init_node(&d);
    let (_s, base) = web_server(&d, free_port());
    for (name, role) in [("olivia", "operator"), ("reader", "read-only")] {
        let o = pt_in(
            &d,
            &["user", "add", name, "--role", role, "--password-stdin"],
            "correct horse battery\n",
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let token = |name: &str| {
        let o = pt(&d, &["user", "token", "create", name, "--label", "tests"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().next().unwrap().to_string()
    };
    let (op, ro) = (token("olivia"), token("reader"));
    assert!(op.starts_with("pt_"), "{op}");
    for i in 0..3 {
        assert!(
            pt(
                &d,
                &[
                    "phone",
                    "add",
                    &format!("SEP00112233445{i}"),
                    "--model",
                    "8845"
                ]
            )
            .status
            .success()
        );
    }
    // No token, a wrong one: refused, with the way to get one.
    let (code, body) = api(&base, "GET", "/api/v1/phones", None, None);
    assert_eq!(code, 401);
    assert!(body.contains("phonetrust user token create"), "{body}");
    assert_eq!(
        api(&base, "GET", "/api/v1/phones", Some("pt_0_bad"), None).0,
        401
    );
    // Every route.
    let (code, body) = api(
        &base,
        "GET",
        "/api/v1/phones?limit=2&offset=1",
        Some(&ro),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"total\":3")
            && body.contains("\"limit\":2")
            && body.contains("SEP001122334451"),
        "{body}"
    );
    assert!(!body.contains("SEP001122334450"), "offset 1: {body}");
    let (code, body) = api(
        &base,
        "GET",
        "/api/v1/phones/SEP001122334450",
        Some(&ro),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\":\"None\""), "{body}");
    let (code, body) = api(
        &base,
        "GET",
        "/api/v1/phones/SEP001122339999",
        Some(&ro),
        None,
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.starts_with("{\"error\":"), "{body}");
    let (code, body) = api(&base, "GET", "/api/v1/certificates/own", Some(&ro), None);
    assert_eq!(code, 200);
    assert!(
        body.contains("\"name\":\"CAPF\"") && body.contains("\"name\":\"tomcat\""),
        "{body}"
    );
    let capf = r#"{"operation":"install","auth":"null-string"}"#;
    let (code, body) = api(
        &base,
        "POST",
        "/api/v1/phones/SEP001122334450/capf",
        Some(&ro),
        Some(capf),
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("the read-only role may not do this: it needs operator"),
        "{body}"
    );
    let (code, body) = api(
        &base,
        "POST",
        "/api/v1/phones/SEP001122334450/capf",
        Some(&op),
        Some(r#"{"operation":"install","auth":"auth-string"}"#),
    );
    assert_eq!(code, 400);
    assert!(
        body.contains("needs an authentication string"),
        "the CLI's message: {body}"
    );
    let (code, body) = api(
        &base,
        "POST",
        "/api/v1/phones/SEP001122334450/capf",
        Some(&op),
        Some(capf),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Operation Pending"), "{body}");
    let (code, _) = api(&base, "GET", "/api/v1/nothing", Some(&ro), None);
    assert_eq!(code, 404);
    // The OpenAPI document lists every route.
    let (code, doc) = api(&base, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(code, 200);
    for p in [
        "/api/v1/phones",
        "/api/v1/phones/{name}",
        "/api/v1/phones/{name}/capf",
        "/api/v1/certificates/own",
    ] {
        assert!(doc.contains(&format!("\"{p}\"")), "{p}: {doc}");
    }
    // Tokens are listed (never shown again) and revoked.
    let list = stdout(&pt(&d, &["user", "token", "list"]));
    assert!(
        list.contains("olivia") && list.contains("tests") && !list.contains(&op),
        "{list}"
    );
    let id = ro.split('_').nth(1).unwrap();
    assert!(pt(&d, &["user", "token", "revoke", id]).status.success());
    assert_eq!(api(&base, "GET", "/api/v1/phones", Some(&ro), None).0, 401);
    assert!(stdout(&pt(&d, &["show", "audit"])).contains("api phone capf"));
}

/// curl a multipart form (`-F`) to the web administration: (status, headers and body).
fn web_upload(
    base: &str,
    path: &str,
    jar: &Path,
    fields: &[(&str, &str)],
    file: Option<&Path>,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-k", "-i", "-b"]).arg(jar).arg("-c").arg(jar);
    for (k, v) in fields {
        c.args(["-F", &format!("{k}={v}")]);
    }
    if let Some(f) = file {
        c.args(["-F", &format!("file=@{}", f.display())]);
    }
    c.arg(format!("{base}{path}"));
    let text = String::from_utf8_lossy(&c.output().expect("curl").stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// 18.3 Certificate Management, Mixed Mode, phones added and deleted, the CAPF report,
/// through the web forms (curl): find the CAPF certificate, its details block, downloads,
/// Regenerate refused without the confirmation and done with it (the warning with the
/// count of phones, the serial changed), Generate CSR, a CA-signed tomcat certificate
/// uploaded with its root in tomcat-trust, a trust certificate uploaded (refused without
/// confirmation) and deleted, mixed mode set, operators refused the administrators' pages.
#[test]
fn web_certificate_management_and_mixed_mode() {
    if !phonetrust_testsupport::have_tool("curl", "--version", "curl")
        || !phonetrust_testsupport::have_tool("openssl", "version", "openssl")
    {
        return;
    }
    let d = tmp("web-certs");
    init_node(&d);
    let (_s, base) = web_server(&d, free_port());
    for (name, role) in [("ada", "admin"), ("olivia", "operator")] {
        let o = pt_in(
            &d,
            &["user", "add", name, "--role", role, "--password-stdin"],
            "correct horse battery\n",
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (aj, oj) = (d.join("admin.jar"), d.join("operator.jar"));
    web_login(&base, &aj, "ada");
    web_login(&base, &oj, "olivia");

    // Phones: added through the form, shown in the list with SQL paging.
    let (_, list) = web(&base, "GET", "/phones", &oj, None);
    let csrf = csrf_of(&list);
    let (code, page) = web(
        &base,
        "POST",
        "/phones",
        &oj,
        Some(&format!(
            "csrf={csrf}&name=sep001122334455&model=8845&protocol=SIP&profile=&description=lobby"
        )),
    );
    assert_eq!(code, 303, "{page}");
    let (code, page) = web(
        &base,
        "POST",
        "/phones",
        &oj,
        Some(&format!("csrf={csrf}&name=SEPXYZ&model=8845")),
    );
    assert_eq!(code, 400, "{page}");
    assert!(page.contains("SEPXYZ"), "{page}");
    let (_, list) = web(&base, "GET", "/phones?page=7", &oj, None);
    assert!(
        list.contains("1 phone(s); page 1 of 1") && list.contains("SEP001122334455"),
        "{list}"
    );

    // Find Certificate List where Certificate is exactly CAPF.
    let (code, page) = web(&base, "GET", "/certificates?find=CAPF", &aj, None);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("/certificates/own/CAPF\""), "{page}");
    assert!(!page.contains("/certificates/own/CallManager\""), "{page}");
    let (_, page) = web(&base, "GET", "/certificates/own/CAPF", &aj, None);
    assert!(
        page.contains("Certificate Details for") && page.contains("Certificate Purpose: CAPF"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let (_, pem) = web(
        &base,
        "GET",
        "/certificates/own/CAPF/download?form=pem",
        &aj,
        None,
    );
    assert!(pem.contains("-----BEGIN CERTIFICATE-----") && pem.contains("CAPF.pem"));
    let (_, der) = web(
        &base,
        "GET",
        "/certificates/own/CAPF/download?form=der",
        &aj,
        None,
    );
    assert!(der.contains("application/pkix-cert") && der.contains("CAPF.der"));

    // Regenerate: the warning shown; refused without the box, done with it.
    let (_, page) = web(&base, "GET", "/certificates/own/CallManager", &aj, None);
    assert!(
        page.contains("This operation regenerates the CallManager certificate; the ITL lists it, so the 1 phone(s) must be reset"),
        "{page}"
    );
    let before = stdout(&pt(&d, &["show", "cert", "own", "CallManager", "--pem"]));
    let (code, page) = web(
        &base,
        "POST",
        "/certificates/own/CallManager/regenerate",
        &aj,
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(code, 400, "{page}");
    assert!(
        page.contains("Aborted: the CallManager certificate is unchanged"),
        "{page}"
    );
    assert_eq!(
        before,
        stdout(&pt(&d, &["show", "cert", "own", "CallManager", "--pem"]))
    );
    let (code, _) = web(
        &base,
        "POST",
        "/certificates/own/CallManager/regenerate",
        &oj,
        Some(&format!("csrf={csrf}&confirm=yes")),
    );
    assert_eq!(code, 403, "an operator may not regenerate");
    let (code, page) = web(
        &base,
        "POST",
        "/certificates/own/CallManager/regenerate",
        &aj,
        Some(&format!("csrf={csrf}&confirm=yes")),
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("Successfully Regenerated Certificate for CallManager.")
            && page.contains("reset these 1 phone(s)")
            && page.contains("SEP001122334455"),
        "{page}"
    );
    assert_ne!(
        before,
        stdout(&pt(&d, &["show", "cert", "own", "CallManager", "--pem"]))
    );

    // Generate CSR for tomcat, sign it with a CA, upload the root and then the chain.
    let (code, page) = web(
        &base,
        "POST",
        "/certificates/own/tomcat/csr",
        &aj,
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("-----BEGIN CERTIFICATE REQUEST-----"),
        "{page}"
    );
    let (ok, out) = openssl_cli(
        &d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=Example Root CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl_cli(
        &d,
        &[
            "x509",
            "-req",
            "-in",
            "data/identity/pending/tomcat.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "20",
            "-out",
            "tomcat.pem",
        ],
    );
    assert!(ok, "{out}");
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(d.join("tomcat.pem")).unwrap(),
        std::fs::read_to_string(d.join("ca.pem")).unwrap()
    );
    std::fs::write(d.join("chain.pem"), chain).unwrap();
    let (code, page) = web_upload(
        &base,
        "/certificates/trust",
        &aj,
        &[("csrf", &csrf), ("store", "CallManager-trust")],
        Some(&d.join("ca.pem")),
    );
    assert_eq!(code, 400, "{page}");
    assert!(
        page.contains("Aborted: CallManager-trust is unchanged"),
        "{page}"
    );
    let (code, page) = web_upload(
        &base,
        "/certificates/trust",
        &aj,
        &[("csrf", &csrf), ("store", "tomcat-trust")],
        Some(&d.join("ca.pem")),
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("into tomcat-trust"), "{page}");
    let (code, page) = web_upload(
        &base,
        "/certificates/own/tomcat/import",
        &aj,
        &[("csrf", "wrong")],
        Some(&d.join("chain.pem")),
    );
    assert_eq!(code, 403, "{page}");
    let (code, page) = web_upload(
        &base,
        "/certificates/own/tomcat/import",
        &aj,
        &[("csrf", &csrf)],
        Some(&d.join("chain.pem")),
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("Successfully imported the CA-signed certificate for tomcat."),
        "{page}"
    );
    let (_, page) = web(&base, "GET", "/certificates?find=tomcat", &aj, None);
    assert!(page.contains("CA-signed"), "{page}");

    // A trust certificate: shown, uploaded into CallManager-trust with the box, deleted.
    let (code, page) = web_upload(
        &base,
        "/certificates/trust",
        &aj,
        &[
            ("csrf", &csrf),
            ("store", "CallManager-trust"),
            ("confirm", "yes"),
        ],
        Some(&d.join("ca.pem")),
    );
    assert_eq!(code, 200, "{page}");
    let name = page
        .split("Imported ")
        .nth(1)
        .and_then(|s| s.split(" into").next())
        .expect("the imported name")
        .to_string();
    let (code, page) = web(
        &base,
        "GET",
        &format!("/certificates/trust/CallManager-trust/{name}"),
        &aj,
        None,
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("Example Root CA") && page.contains("TVS no longer vouches"),
        "{page}"
    );
    let (code, page) = web(
        &base,
        "POST",
        &format!("/certificates/trust/CallManager-trust/{name}/delete"),
        &aj,
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(code, 400, "{page}");
    let (code, page) = web(
        &base,
        "POST",
        &format!("/certificates/trust/CallManager-trust/{name}/delete"),
        &aj,
        Some(&format!("csrf={csrf}&confirm=yes")),
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("Deleted ") && page.contains("from CallManager-trust"),
        "{page}"
    );

    // Mixed mode with its confirmation; the CTL's checksum then shown.
    let (_, page) = web(&base, "GET", "/security", &aj, None);
    assert!(
        page.contains("CTL File not found") && page.contains("Non-secure (0)"),
        "{page}"
    );
    let (code, page) = web(
        &base,
        "POST",
        "/security/update-ctl",
        &aj,
        Some(&format!("csrf={csrf}&confirm=yes")),
    );
    assert_eq!(code, 400, "{page}");
    assert!(page.contains("not in Mixed mode"), "{page}");
    let (code, page) = web(
        &base,
        "POST",
        "/security/mixed-mode",
        &aj,
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(code, 400, "{page}");
    let (code, page) = web(
        &base,
        "POST",
        "/security/mixed-mode",
        &aj,
        Some(&format!("csrf={csrf}&confirm=yes")),
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Cluster set to Mixed Mode"), "{page}");
    let (_, page) = web(&base, "GET", "/security", &aj, None);
    assert!(
        page.contains("Mixed (1)") && page.contains("SHA-256"),
        "{page}"
    );
    assert!(stdout(&pt(&d, &["show", "ctl"])).contains("CTL"));

    // The CAPF report, as a page and as CSV.
    let (_, page) = web(&base, "GET", "/reports/capf", &oj, None);
    assert!(
        page.contains("SEP001122334455") && page.contains("LSC Status"),
        "{page}"
    );
    let (_, csv) = web(&base, "GET", "/reports/capf?csv=1", &oj, None);
    assert!(
        csv.contains("text/csv") && csv.contains("Device Name,Model,LSC Status"),
        "{csv}"
    );

    // A phone deleted with its box ticked.
    let (_, page) = web(&base, "GET", "/phones/SEP001122334455", &oj, None);
    let csrf_o = csrf_of(&page);
    let (code, _) = web(
        &base,
        "POST",
        "/phones/SEP001122334455/delete",
        &oj,
        Some(&format!("csrf={csrf_o}")),
    );
    assert_eq!(code, 400);
    let (code, page) = web(
        &base,
        "POST",
        "/phones/SEP001122334455/delete",
        &oj,
        Some(&format!("csrf={csrf_o}&confirm=yes")),
    );
    assert_eq!(code, 200, "{page}");
    assert!(!stdout(&pt(&d, &["phone", "list"])).contains("SEP001122334455"));
    let audit = stdout(&pt(&d, &["show", "audit"]));
    for a in [
        "web set cert regen",
        "web set cert import own",
        "web set cert import trust",
        "web set cert delete trust",
        "web utils ctl set-cluster mixed-mode",
        "web phone add",
        "web phone delete",
    ] {
        assert!(audit.contains(a), "{a}: {audit}");
    }
}

/// chromedriver on a reserved loopback port, stopped when dropped.
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver");
    let d = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Up within 20 s (bounded), or the test fails saying so.
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return d;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("chromedriver did not listen on {port} within 20 s");
}

/// The text of the page's `main`, once the page has it (a click's page may still be
/// loading): at most 10 s.
async fn page_text(c: &fantoccini::Client) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        match c.find(fantoccini::Locator::Css("main")).await {
            Ok(m) => match m.text().await {
                Ok(t) => return t,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{last}: {}", c.source().await.unwrap_or_default());
}

/// The page's text once it holds `needle` (at most 10 s).
async fn wait_text(c: &fantoccini::Client, needle: &str) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = page_text(c).await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the page never showed {needle:?}: {text}");
}

/// Wait (at most 10 s) until the browser shows `path`.
async fn wait_path(c: &fantoccini::Client, path: &str) {
    let mut at = String::new();
    for _ in 0..100 {
        at = c.current_url().await.unwrap().path().to_string();
        if at == path {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the browser shows {at}, not {path}");
}

/// 18.3 in a real browser (headless Chromium through WebDriver): log in through the form,
/// the dashboard with its four pictures, the phone list and the phone page (a description
/// `<script>…` shown as text, nothing run), an Install/Upgrade scheduled through the CAPF
/// form and its status line, the reports, mixed mode refused without its confirmation
/// box and set with it, and logout. A screenshot of each page is saved under the target
/// directory (`browser-screenshots/`) and checked to be a PNG.
#[test]
fn web_admin_in_a_real_browser() {
    if !phonetrust_testsupport::have_tool("chromium", "--version", "chromium")
        || !phonetrust_testsupport::have_tool("chromedriver", "--version", "chromium-driver")
    {
        return;
    }
    let d = tmp("browser");
    init_node(&d);
    let (_s, base) = web_server(&d, free_port());
    let o = pt_in(
        &d,
        &["user", "add", "ada", "--role", "admin", "--password-stdin"],
        "correct horse battery\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = pt(
        &d,
        &[
            "phone",
            "add",
            "SEP001122334455",
            "--model",
            "8845",
            "--description",
            "<script>document.title='owned'</script>",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let driver = chromedriver();
    let profile = d.join("chromium-profile");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use fantoccini::Locator;
        let caps: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--window-size=1280,1024",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }))
            .unwrap();
        let c = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver");
        let shot = |name: &'static str| {
            let c = c.clone();
            let path = shots.join(format!("{name}.png"));
            async move {
                let png = c.screenshot().await.unwrap();
                assert!(
                    png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
                    "{name}"
                );
                std::fs::write(&path, png).unwrap();
            }
        };
        let body = |c: fantoccini::Client| async move { page_text(&c).await };

        // Not logged in: the login page. A wrong password is refused on the page.
        c.goto(&format!("{base}/")).await.unwrap();
        assert!(c.current_url().await.unwrap().path().ends_with("/login"));
        let f = c.form(Locator::Css("form")).await.unwrap();
        f.set_by_name("name", "ada").await.unwrap();
        f.set_by_name("password", "wrong password").await.unwrap();
        f.submit().await.unwrap();
        wait_text(&c, "wrong").await;
        shot("login-refused").await;
        let f = c.form(Locator::Css("main form")).await.unwrap();
        f.set_by_name("name", "ada").await.unwrap();
        f.set_by_name("password", "correct horse battery")
            .await
            .unwrap();
        f.submit().await.unwrap();
        wait_path(&c, "/").await;

        // The dashboard: the security mode and four inline SVG pictures.
        let text = body(c.clone()).await;
        assert!(
            text.contains("Cluster Security Mode: Non-secure (0)"),
            "{text}"
        );
        let figures = c.find_all(Locator::Css("figure svg")).await.unwrap();
        assert_eq!(figures.len(), 4);
        for fig in &figures {
            let (_, _, w, h) = fig.rectangle().await.unwrap();
            assert!(w > 100.0 && h > 20.0, "a picture is drawn: {w}x{h}");
        }
        shot("dashboard").await;

        // The phone list, then the phone page; the description is text, not a script.
        c.find(Locator::LinkText("Phones"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&c, "/phones").await;
        c.find(Locator::LinkText("SEP001122334455"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&c, "/phones/SEP001122334455").await;
        assert!(
            body(c.clone())
                .await
                .contains("<script>document.title='owned'</script>"),
            "the description shows as text"
        );
        assert_eq!(
            c.title().await.unwrap(),
            "SEP001122334455 — phonetrust",
            "nothing the description holds ran"
        );
        // Schedule Install/Upgrade by null string through the CAPF form.
        let f = c
            .form(Locator::Css("form[action='/phones/SEP001122334455/capf']"))
            .await
            .unwrap();
        c.find(Locator::Css("select[name='operation']"))
            .await
            .unwrap()
            .select_by_value("install")
            .await
            .unwrap();
        c.find(Locator::Css("select[name='auth']"))
            .await
            .unwrap()
            .select_by_value("null-string")
            .await
            .unwrap();
        f.submit().await.unwrap();
        let text = wait_text(&c, "Certificate Operation Status: Operation Pending").await;
        assert!(text.contains("ITL Status never fetched an ITL"), "{text}");
        shot("phone").await;

        // The reports: CAPF report with the phone, then the audit log names the change.
        c.find(Locator::LinkText("Reports"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&c, "/reports/capf").await;
        assert!(body(c.clone()).await.contains("SEP001122334455"));
        c.find(Locator::LinkText("Audit Log"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&c, "/reports/audit").await;
        let text = body(c.clone()).await;
        assert!(
            text.contains("web phone capf") && text.contains("ada"),
            "{text}"
        );
        shot("audit").await;

        // Mixed mode: refused without the confirmation box, set with it.
        c.find(Locator::LinkText("Mixed Mode"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&c, "/security").await;
        let form = "form[action='/security/mixed-mode']";
        c.form(Locator::Css(form))
            .await
            .unwrap()
            .submit()
            .await
            .unwrap();
        wait_path(&c, "/security/mixed-mode").await;
        let text = body(c.clone()).await;
        assert!(
            text.contains("Aborted: the cluster stays in non-secure mode. Tick the box"),
            "{text}"
        );
        c.find(Locator::LinkText("Mixed Mode"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&c, "/security").await;
        c.find(Locator::Css(&format!("{form} input[name='confirm']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.form(Locator::Css(form))
            .await
            .unwrap()
            .submit()
            .await
            .unwrap();
        wait_path(&c, "/security/mixed-mode").await;
        shot("mixed-mode").await;
        c.goto(&format!("{base}/")).await.unwrap();
        let text = body(c.clone()).await;
        assert!(text.contains("Cluster Security Mode: Mixed (1)"), "{text}");

        // Logout: back to the login page, and the dashboard needs a login again.
        c.find(Locator::Css("form.logout button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&c, "/login").await;
        c.goto(&format!("{base}/")).await.unwrap();
        assert!(c.current_url().await.unwrap().path().ends_with("/login"));
        c.close().await.unwrap();
    });
    for name in ["login-refused", "dashboard", "phone", "audit", "mixed-mode"] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}");
    }
    eprintln!("screenshots: {}", shots.display());
}

/// 18.3: Phone Security Profiles, Enterprise Parameters and the cluster's nodes and call
/// manager groups through their pages: what the CLI then shows agrees; refusals carry the
/// store's and the cluster's messages; changes that alter what phones trust or are told
/// need their box; read-only sees the pages without forms and is refused a change.
#[test]
fn web_profiles_parameters_and_cluster() {
    if !phonetrust_testsupport::have_tool("curl", "--version", "curl") {
        return;
    }
    let d = tmp("web-config");
    init_node(&d);
    let (_s, base) = web_server(&d, free_port());
    for (name, role) in [("ada", "admin"), ("reader", "read-only")] {
        let o = pt_in(
            &d,
            &["user", "add", name, "--role", role, "--password-stdin"],
            "correct horse battery\n",
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (aj, rj) = (d.join("admin.jar"), d.join("reader.jar"));
    web_login(&base, &aj, "ada");
    web_login(&base, &rj, "reader");

    // Profiles.
    let (code, page) = web(&base, "GET", "/profiles", &rj, None);
    assert_eq!(code, 200);
    assert!(page.contains("Standard Non-Secure Profile"), "{page}");
    assert!(
        !page.contains("action=\"/profiles\""),
        "no form for read-only"
    );
    let (_, page) = web(&base, "GET", "/profiles", &aj, None);
    let csrf = csrf_of(&page);
    let fields = |ec: &str, rsa: &str, enc: bool| {
        format!(
            "csrf={csrf}&description=lab&mode=encrypted{}&auth=lsc&key_order=rsa-ec&rsa_bits={rsa}&ec_curve={ec}",
            if enc { "&encrypted_config=on" } else { "" }
        )
    };
    let (code, page) = web(
        &base,
        "POST",
        "/profiles",
        &rj,
        Some(&format!(
            "name=Secure+8845&{}",
            fields("p384", "2048", true)
        )),
    );
    assert_eq!(code, 403, "{page}");
    let (code, page) = web(
        &base,
        "POST",
        "/profiles",
        &aj,
        Some(&format!(
            "name=Secure+8845&{}",
            fields("p384", "2048", true)
        )),
    );
    assert_eq!(code, 303, "{page}");
    assert!(page.contains("location: /profiles/Secure%208845"), "{page}");
    let show = || stdout(&pt(&d, &["profile", "show", "Secure 8845"]));
    let s = show();
    assert!(
        s.contains("Device Security Mode: Encrypted")
            && s.contains("TFTP Encrypted Config: On")
            && s.contains("EC Key Size (Bits): 384"),
        "{s}"
    );
    let (_, page) = web(&base, "GET", "/profiles/Secure%208845", &aj, None);
    assert!(
        page.contains("<th>TFTP Encrypted Config</th><td>On</td>"),
        "{page}"
    );
    // The same name again: the store's refusal, on the page.
    let (code, page) = web(
        &base,
        "POST",
        "/profiles",
        &aj,
        Some(&format!(
            "name=Secure+8845&{}",
            fields("p384", "2048", true)
        )),
    );
    assert_eq!(code, 400);
    assert!(page.contains("Secure 8845"), "{page}");
    // The box unticked: TFTP Encrypted Config Off; a bad key size refused.
    let (code, page) = web(
        &base,
        "POST",
        "/profiles/Secure%208845",
        &aj,
        Some(&fields("p256", "2048", false)),
    );
    assert_eq!(code, 303, "{page}");
    assert!(show().contains("TFTP Encrypted Config: Off"), "{}", show());
    let (code, page) = web(
        &base,
        "POST",
        "/profiles/Secure%208845",
        &aj,
        Some(&fields("p256", "lots", false)),
    );
    assert_eq!(code, 400);
    assert!(page.contains("is not a valid RSA key size"), "{page}");
    // Delete: the box first.
    let del = format!("csrf={csrf}");
    let (code, page) = web(
        &base,
        "POST",
        "/profiles/Secure%208845/delete",
        &aj,
        Some(&del),
    );
    assert_eq!(code, 400);
    assert!(page.contains("Tick the box to delete it"), "{page}");
    let (code, _) = web(
        &base,
        "POST",
        "/profiles/Secure%208845/delete",
        &aj,
        Some(&format!("{del}&confirm=yes")),
    );
    assert_eq!(code, 303);
    assert!(!pt(&d, &["profile", "show", "Secure 8845"]).status.success());

    // Enterprise Parameters.
    let (code, page) = web(&base, "GET", "/parameters", &rj, None);
    assert_eq!(code, 200);
    assert!(
        page.contains("CAPF Operation Expires in (days)")
            && !page.contains("action=\"/parameters/"),
        "{page}"
    );
    let (code, page) = web(
        &base,
        "POST",
        "/parameters/CapfOperationExpiresInDays",
        &aj,
        Some(&format!("csrf={csrf}&value=5")),
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(
            "CAPF Operation Expires in (days) (CapfOperationExpiresInDays) changed from 10 to 5"
        ),
        "{page}"
    );
    let params = stdout(&pt(&d, &["show", "param"]));
    assert!(
        params
            .lines()
            .any(|l| l.contains("CapfOperationExpiresInDays")
                && l.split_whitespace().rev().nth(1) == Some("5")),
        "{params}"
    );
    let (code, page) = web(
        &base,
        "POST",
        "/parameters/CapfOperationExpiresInDays",
        &aj,
        Some(&format!("csrf={csrf}&value=999")),
    );
    assert_eq!(code, 400);
    assert!(page.contains("999"), "{page}");
    let (code, page) = web(
        &base,
        "POST",
        "/parameters/ItlSigner",
        &aj,
        Some(&format!("csrf={csrf}&value=1")),
    );
    assert_eq!(code, 400);
    assert!(
        page.contains("Aborted: ITL Signer (ItlSigner) changes what phones trust and is unchanged"),
        "{page}"
    );

    // The cluster: the publisher, a subscriber added, a group, the guards.
    let (code, page) = web(&base, "GET", "/cluster", &rj, None);
    assert_eq!(code, 200);
    assert!(
        page.contains("<td>pub.example.test</td>") && page.contains("publisher"),
        "{page}"
    );
    let (code, page) = web(
        &base,
        "POST",
        "/cluster/nodes",
        &aj,
        Some(&format!(
            "csrf={csrf}&name=sub1.example.test&host=127.0.0.2&services=tftp%2Ctvs"
        )),
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("Node sub1.example.test defined as subscriber at 127.0.0.2"),
        "{page}"
    );
    let (code, page) = web(
        &base,
        "POST",
        "/cluster/nodes",
        &aj,
        Some(&format!("csrf={csrf}&name=bad_name&host=127.0.0.3")),
    );
    assert_eq!(code, 400);
    assert!(page.contains("is not a valid node name"), "{page}");
    let net = stdout(&pt(&d, &["show", "network", "cluster"]));
    assert!(
        net.contains("sub1.example.test") && net.contains("127.0.0.2"),
        "{net}"
    );
    let (code, page) = web(
        &base,
        "POST",
        "/cluster/groups",
        &aj,
        Some(&format!(
            "csrf={csrf}&name=G1&nodes=sub1.example.test%2C+pub.example.test"
        )),
    );
    assert_eq!(code, 303, "{page}");
    let groups = || stdout(&pt(&d, &["cluster", "group", "list"]));
    assert!(
        groups().contains("sub1.example.test, pub.example.test"),
        "{}",
        groups()
    );
    let set = format!("csrf={csrf}&nodes=pub.example.test%2Csub1.example.test");
    let (code, page) = web(&base, "POST", "/cluster/groups/G1", &aj, Some(&set));
    assert_eq!(code, 400);
    assert!(
        page.contains("Aborted: this changes the nodes of call manager group G1"),
        "{page}"
    );
    let (code, _) = web(
        &base,
        "POST",
        "/cluster/groups/G1",
        &aj,
        Some(&format!("{set}&confirm=yes")),
    );
    assert_eq!(code, 303);
    assert!(
        groups().contains("pub.example.test, sub1.example.test"),
        "{}",
        groups()
    );
    let (_, page) = web(&base, "GET", "/cluster", &aj, None);
    assert!(
        page.contains("<td>G1</td><td>pub.example.test, sub1.example.test</td>"),
        "{page}"
    );
    // The node is still in G1: refused with the cluster's message.
    let rm = format!("csrf={csrf}&confirm=yes");
    let (code, page) = web(
        &base,
        "POST",
        "/cluster/nodes/sub1.example.test/delete",
        &aj,
        Some(&rm),
    );
    assert_eq!(code, 400);
    assert!(
        page.contains("node sub1.example.test is still in call manager group(s) Default, G1"),
        "{page}"
    );
    let (code, _) = web(&base, "POST", "/cluster/groups/G1/delete", &aj, Some(&rm));
    assert_eq!(code, 303);
    let (code, _) = web(
        &base,
        "POST",
        "/cluster/groups/Default",
        &aj,
        Some(&format!("{rm}&nodes=pub.example.test")),
    );
    assert_eq!(code, 303);
    let (code, page) = web(
        &base,
        "POST",
        "/cluster/nodes/sub1.example.test/delete",
        &aj,
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(code, 400);
    assert!(page.contains("the node stays defined"), "{page}");
    let (code, page) = web(
        &base,
        "POST",
        "/cluster/nodes/sub1.example.test/delete",
        &aj,
        Some(&rm),
    );
    assert_eq!(code, 200, "{page}");
    assert!(!stdout(&pt(&d, &["show", "network", "cluster"])).contains("sub1.example.test"));

    let audit = stdout(&pt(&d, &["show", "audit"]));
    for a in [
        "web profile add",
        "web profile set",
        "web profile delete",
        "web set param",
        "web cluster add-node",
        "web cluster group set",
        "web cluster remove-node",
    ] {
        assert!(audit.contains(a), "{a}: {audit}");
    }
}
