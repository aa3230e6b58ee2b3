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
    assert_one_line_error(
        &pt(&d, &["set", "param", "ClusterSecurityMode", "2"]),
        "from 0 to 1",
    );
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
    assert!(stdout(&pt(&d, &["show", "cert", "list", "trust"])).contains("1 certificate(s)"));
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
    let o = pt(&d, &["set", "cert", "regen", "CallManager"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("2 phone(s) will reset"),
        "{}",
        stdout(&o)
    );
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
        Err(e) if std::env::var_os("CI").is_none() => (true, format!("skipped: {e}")),
        Err(e) => panic!("openssl command line needed in CI: {e}"),
    }
}

/// Kill the process after `delay_ms`; true when it had finished by itself.
fn run_and_kill(d: &Path, args: &[&str], delay_ms: u64) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
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
        if run_and_kill(&d, &["set", "cert", "regen", "CallManager"], (i * 7) % 120) {
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
    loop {
        let finished = run_and_kill(&d, &["phone", "import", "bulk.csv"], delay);
        let n = count(&d);
        assert!(n == 0 || n == rows, "after a kill at {delay} ms: {n} rows");
        if n == rows {
            assert!(finished || delay > 0);
            break;
        }
        delay += 25;
        assert!(delay < 20_000, "the import never completed");
    }
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--capf-port",
            &port.to_string(),
            "--tvs-port",
            "0",
            "--tftp-port",
            "0",
            "--http-port",
            "0",
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve` on loopback with the given ports; killed on drop.
struct Server(std::process::Child);

impl Server {
    fn start(d: &Path, capf_port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_phonetrust"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--capf-port",
                &capf_port.to_string(),
                "--tvs-port",
                "0",
                "--tftp-port",
                "0",
                "--http-port",
                "0",
            ])
            .current_dir(d)
            .env("PHONETRUST_DATA", d.join("data"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", capf_port)).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "serve did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self(child)
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
    let o = pt(
        &d,
        &[
            "phone",
            "capf",
            "SEP001122334455",
            "--operation",
            "install",
            "--auth",
            "null-string",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
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
    assert!(
        pt(
            &d,
            &[
                "phone",
                "capf",
                "SEP0011223344AA",
                "--operation",
                "install",
                "--auth",
                "mic"
            ]
        )
        .status
        .success()
    );
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
    assert!(
        pt(
            &d,
            &[
                "phone",
                "capf",
                "SEP0011223344AA",
                "--operation",
                "install",
                "--auth",
                "mic"
            ]
        )
        .status
        .success()
    );
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
