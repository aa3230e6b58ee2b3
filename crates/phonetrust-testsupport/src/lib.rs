//! What phonetrust's tests share, so that each test binary states only what it checks:
//!
//! - [`vectors`]: the reference vectors, committed under `vectors/` in this crate (made by
//!   independent implementations; every key is a throw-away test key);
//! - [`tempdir`]: a fresh temporary directory, removed when dropped;
//! - [`FreshNode`]: a node in a temporary directory (identity files and database);
//! - [`mfg_ca`]: the test manufacturer CA of the vectors, which issued their MIC;
//! - [`sinks`]: an SMTP sink (STARTTLS) and a webhook receiver for notification tests.
//!
//! Not published (`publish = false`); tests may `unwrap` here, nothing else may use it.

#![allow(clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use phonetrust_pki::profiles::NodeIdentity;
use phonetrust_proto::cert::CertAndKey;
use phonetrust_proto::rand::OsRandom;
use phonetrust_store::Db;
use phonetrust_store::identity::{self, Identity};
use phonetrust_store::layout::DataDir;

pub mod ports;
pub mod postgres;
pub mod sinks;

pub mod vectors {
    //! The reference vectors: `files/` (ITL, CTL, signed and encrypted configs), `pki/`
    //! (certificates and throw-away keys), `transcripts/` (CAPF and TVS sessions). See
    //! `vectors/README.md` in this crate for where each file comes from.

    use std::path::{Path, PathBuf};

    /// The directory of the vectors inside this crate.
    pub fn dir() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/vectors"))
    }

    /// The path of one vector, `rel` relative to [`dir`] (e.g. `pki/capf.pem`). Panics
    /// when the file is missing, naming it: a test without its data must not pass.
    pub fn path(rel: &str) -> PathBuf {
        let p = dir().join(rel);
        assert!(p.is_file(), "test vector {} is missing", p.display());
        p
    }

    /// [`path`] as a string, for command lines.
    pub fn arg(rel: &str) -> String {
        path(rel).to_string_lossy().into_owned()
    }

    /// The bytes of one vector.
    pub fn bytes(rel: &str) -> Vec<u8> {
        let p = path(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    /// The text of one vector.
    pub fn text(rel: &str) -> String {
        String::from_utf8(bytes(rel)).unwrap_or_else(|_| panic!("{rel} is not UTF-8"))
    }
}

/// A fresh temporary directory for one test, named after `tag`; removed when dropped.
pub fn tempdir(tag: &str) -> TestDir {
    let inner = tempfile::Builder::new()
        .prefix(&format!("phonetrust-{tag}-"))
        .tempdir()
        .expect("a temporary directory");
    TestDir { inner }
}

/// A temporary directory that reads as a [`Path`] and is removed when dropped (unless
/// `PHONETRUST_KEEP_TEST_DIRS` is set, to look at what a failed test left).
#[derive(Debug)]
pub struct TestDir {
    inner: tempfile::TempDir,
}

impl TestDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.inner.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.inner.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("PHONETRUST_KEEP_TEST_DIRS").is_some() {
            let kept = std::mem::replace(
                &mut self.inner,
                tempfile::TempDir::new().expect("a temporary directory"),
            );
            eprintln!("kept test directory {}", kept.keep().display());
        }
    }
}

/// The vectors' manufacturer CA (`CN=Example Manufacturing CA`), which issued the MIC
/// `pki/mic-SEP0011AABBCCDD.*`: certificate and key.
pub fn mfg_ca() -> CertAndKey {
    let mut pem = vectors::bytes("pki/mfgca.crt");
    pem.extend_from_slice(&vectors::bytes("pki/mfgca.key"));
    CertAndKey::from_pem(&pem).expect("the vectors' manufacturer CA")
}

/// The vectors' own certificates of a node (certificate + key), by the certificate they
/// stand for: CallManager, CallManager-ECDSA, CAPF, TVS, ITLRecovery.
pub const VECTOR_OWN_CERTS: [(phonetrust_pki::profiles::OwnCert, &str); 5] = [
    (
        phonetrust_pki::profiles::OwnCert::CallManager,
        "pki/callmanager.pem",
    ),
    (
        phonetrust_pki::profiles::OwnCert::CallManagerEcdsa,
        "pki/callmanager-ecdsa.pem",
    ),
    (phonetrust_pki::profiles::OwnCert::Capf, "pki/capf.pem"),
    (phonetrust_pki::profiles::OwnCert::Tvs, "pki/tvs.pem"),
    (
        phonetrust_pki::profiles::OwnCert::ItlRecovery,
        "pki/itlrecovery.pem",
    ),
];

/// Replace the own certificates of the node in `data` with the vectors' ones
/// ([`VECTOR_OWN_CERTS`]; tomcat stays as it was).
pub fn use_vector_identity(data: &DataDir) {
    for (which, file) in VECTOR_OWN_CERTS {
        let ck = CertAndKey::from_pem(&vectors::bytes(file)).expect("a vector certificate and key");
        identity::replace(data, which, &ck).expect("identity replaced");
    }
}

/// Now, Unix seconds.
pub fn now() -> i64 {
    phonetrust_proto::clock::unix_now()
}

/// A node in a fresh temporary directory: its identity for a host (valid from a minute
/// ago) and its database (a SQLite file: never `sqlite::memory:` with a pool). The
/// directory goes when the value is dropped.
pub struct FreshNode {
    /// Keeps the directory alive; [`FreshNode::dir`] is its path.
    pub tmp: TestDir,
    /// The data directory's layout.
    pub data: DataDir,
    /// The node's own certificates and keys.
    pub id: Identity,
    /// The node's database.
    pub db: Db,
}

impl FreshNode {
    /// A node for `n` in a new temporary directory named after `tag`.
    pub async fn new(tag: &str, n: &NodeIdentity) -> Self {
        let tmp = tempdir(tag);
        let data = DataDir::new(tmp.path());
        let id = identity::create(&data, n, now() - 60, &OsRandom).expect("node identity");
        let db = Db::open(&phonetrust_store::db::default_url(tmp.path()))
            .await
            .expect("node database");
        Self { tmp, data, id, db }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// A path inside the data directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
}

/// Whether the independent tool `cmd` runs (`cmd version_arg` succeeds). Outside CI a
/// missing tool skips the caller's check with a line on stderr; in CI (`CI` set, as
/// `.ci/run` does) it fails the test, naming the package that `.ci/setup` installs.
pub fn have_tool(cmd: &str, version_arg: &str, package: &str) -> bool {
    let ok = std::process::Command::new(cmd)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{cmd}` is needed in CI: apt-get install {package} (see .ci/setup)"
        );
        eprintln!("skipping: no `{cmd}` (apt-get install {package})");
    }
    ok
}
