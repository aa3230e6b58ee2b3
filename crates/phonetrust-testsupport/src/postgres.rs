//! A throw-away PostgreSQL server for a test: `initdb` in a temporary directory (as an
//! unprivileged account when the test runs as root, which PostgreSQL refuses), trust
//! authentication on 127.0.0.1 only, a reserved port, stopped and removed when dropped.
//! Needs Debian's `postgresql` package (`initdb`, `pg_ctl`, `createdb`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ports::Port;
use crate::{TestDir, tempdir};

/// The account the server runs as when the test is root.
const CI_ACCOUNT: &str = "phonetrust-ci";

/// A running throw-away server.
pub struct PgServer {
    bin: PathBuf,
    dir: TestDir,
    port: Port,
    as_user: Option<&'static str>,
}

fn find_bin() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        v.sort();
        v.reverse();
        candidates.extend(v);
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
            .unwrap_or(false)
    })
}

impl PgServer {
    /// Start a server, or `None` (outside CI, with a line on stderr) when PostgreSQL is
    /// not installed; in CI a missing PostgreSQL fails the test.
    pub fn start(tag: &str) -> Option<Self> {
        let Some(bin) = find_bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL (initdb, pg_ctl) is needed in CI: apt-get install postgresql (see .ci/setup)"
            );
            eprintln!("skipping: no PostgreSQL (apt-get install postgresql)");
            return None;
        };
        let dir = tempdir(&format!("pg-{tag}"));
        let as_user = if is_root() {
            let exists = Command::new("id")
                .arg(CI_ACCOUNT)
                .output()
                .is_ok_and(|o| o.status.success());
            if !exists {
                let ok = Command::new("useradd")
                    .args(["--system", "--no-create-home", CI_ACCOUNT])
                    .status()
                    .is_ok_and(|s| s.success());
                // Another test may have created it at the same moment.
                assert!(
                    ok || Command::new("id")
                        .arg(CI_ACCOUNT)
                        .output()
                        .is_ok_and(|o| o.status.success()),
                    "cannot create the account {CI_ACCOUNT} for PostgreSQL"
                );
            }
            let st = Command::new("chown")
                .args(["-R", CI_ACCOUNT])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown {}", dir.path().display());
            Some(CI_ACCOUNT)
        } else {
            None
        };
        let port = crate::ports::reserve();
        let s = Self {
            bin,
            dir,
            port,
            as_user,
        };
        let data = s.data_dir();
        let out = s
            .cmd("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.pg_ctl_start();
        Some(s)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.dir.path().display(),
            self.port.get()
        );
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &opts, "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// Stop the server (fast shutdown), keeping its data: [`PgServer::restart`] brings it
    /// back on the same port.
    pub fn stop(&self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }

    /// Start the server again after [`PgServer::stop`].
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port.get()
    }

    /// Create the database `name` and return its URL.
    pub fn create_db(&self, name: &str) -> String {
        let out = self
            .cmd("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port().to_string(),
                "-U",
                "postgres",
                name,
            ])
            .output()
            .expect("createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port())
    }

    /// The server's directory (its log is `server.log` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
