//! What the server benchmarks share: a throw-away node (its own data directory, made with
//! this binary's `init` and `phone import`), `phonetrust serve` started on it as a
//! separate process on loopback, free ports, and the server's peak memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Config of a benchmark node.
const BENCH_CONFIG: &str = "\n[tftp]\nmax_transfers_per_address = 100000\n\n[http]\nmax_connections_per_address = 100000\n\n[capf]\nmax_sessions_per_address = 100000\nmax_handshakes = 100000\nmax_handshakes_per_address = 100000\n\n[tvs]\nmax_connections_per_address = 100000\nmax_handshakes_per_address = 100000\n";

/// A node in a temporary directory, removed on drop.
pub(crate) struct BenchNode {
    exe: PathBuf,
    dir: PathBuf,
    /// The database URL every command is given (`None`: the node's own SQLite file).
    database: Option<String>,
    _tmp: tempfile::TempDir,
}

impl BenchNode {
    /// A fresh node (`init --host bench.example.test`) with the phones of `csv` imported
    /// and the per-address caps lifted (all the load comes from one address).
    pub(crate) fn new(tag: &str, csv: &str) -> Result<Self> {
        Self::with_caps(tag, csv, false)
    }

    /// [`BenchNode::new`]; `default_caps` keeps the per-address caps a real network has
    /// (for `bench probe`, which measures them).
    pub(crate) fn with_caps(tag: &str, csv: &str, default_caps: bool) -> Result<Self> {
        Self::build(
            tag,
            csv,
            default_caps,
            None,
            &["init", "--host", "bench.example.test"],
        )
    }

    /// [`BenchNode::new`] on the database `url` (PostgreSQL: the cluster's database).
    pub(crate) fn on_database(tag: &str, csv: &str, url: &str) -> Result<Self> {
        Self::build(
            tag,
            csv,
            false,
            Some(url),
            &["init", "--host", "bench.example.test"],
        )
    }

    /// A subscriber joining the cluster on `url` as `name` (defined on the publisher).
    pub(crate) fn joining(tag: &str, url: &str, name: &str) -> Result<Self> {
        Self::build(tag, "", false, Some(url), &["init", "--join", name])
    }

    fn build(
        tag: &str,
        csv: &str,
        default_caps: bool,
        database: Option<&str>,
        init: &[&str],
    ) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("phonetrust-bench-{tag}-"))
            .tempdir()?;
        let n = Self {
            exe: std::env::current_exe()?,
            dir: tmp.path().to_path_buf(),
            database: database.map(str::to_string),
            _tmp: tmp,
        };
        n.run(init)?;
        // All the load comes from one loopback address: the per-address caps, meant for
        // a network of phones, are lifted (the global ones stay).
        if !default_caps {
            let cfg = n.dir.join("data").join("phonetrust.toml");
            let mut text = std::fs::read_to_string(&cfg).unwrap_or_default();
            text.push_str(BENCH_CONFIG);
            std::fs::write(&cfg, text)?;
        }
        if !csv.is_empty() {
            let path = n.dir.join("phones.csv");
            std::fs::write(&path, csv)?;
            n.run(&["phone", "import", &path.to_string_lossy()])?;
        }
        Ok(n)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(args).env("PHONETRUST_DATA", self.dir.join("data"));
        if let Some(url) = &self.database {
            c.env("PHONETRUST_DATABASE", url);
        }
        c
    }

    /// Run a command on the node; its standard output.
    pub(crate) fn run(&self, args: &[&str]) -> Result<Vec<u8>> {
        let o = self.command(args).output()?;
        if !o.status.success() {
            bail!("{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(o.stdout)
    }

    /// The node's data directory.
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A scratch directory beside the node.
    pub(crate) fn scratch(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p)?;
        Ok(p)
    }

    /// `phonetrust serve --bind 127.0.0.1` on `ports` (0: any free port) with `extra`
    /// arguments, once `ready` accepts TCP connections.
    pub(crate) async fn serve(
        &self,
        ports: Ports,
        extra: &[&str],
        ready: SocketAddr,
    ) -> Result<Server> {
        let ports = [
            ("--capf-port", ports.capf),
            ("--tvs-port", ports.tvs),
            ("--tftp-port", ports.tftp),
            ("--http-port", ports.http),
        ]
        .map(|(flag, p)| (flag, p.to_string()));
        let mut all = vec!["serve", "--bind", "127.0.0.1", "--web-port", "0"];
        for (flag, p) in &ports {
            all.push(flag);
            all.push(p);
        }
        all.extend_from_slice(extra);
        let child = self
            .command(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Killed on drop, also when it never comes up.
        let server = Server(child);
        let up = Instant::now();
        while tokio::net::TcpStream::connect(ready).await.is_err() {
            if up.elapsed() > Duration::from_secs(20) {
                bail!("the server did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }
}

impl BenchNode {
    /// `serve` on free loopback ports, once its HTTP port accepts; the ports.
    pub(crate) async fn serve_free(&self) -> Result<(Server, Ports)> {
        let ports = Ports {
            capf: free_tcp()?,
            tvs: free_tcp()?,
            tftp: free_udp()?,
            http: free_tcp()?,
        };
        let ready = SocketAddr::from(([127, 0, 0, 1], ports.http));
        Ok((self.serve(ports, &[], ready).await?, ports))
    }
}

/// The ports `serve` listens on in a benchmark (0: any free port).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ports {
    pub(crate) capf: u16,
    pub(crate) tvs: u16,
    pub(crate) tftp: u16,
    pub(crate) http: u16,
}

/// A `serve` child process, killed on drop.
pub(crate) struct Server(Child);

impl Server {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Wait until the server is idle (under 10 ms of CPU in 250 ms, at most 30 s): its
    /// start-up work — the ITL built and every phone's config signed ahead — must not be
    /// counted as the benchmark's. Returns how long that took.
    pub(crate) async fn settle(&self) -> Duration {
        self.settle_within(Duration::from_secs(30)).await
    }

    /// [`Server::settle`], waiting at most `max` (a node with many phones to sign).
    pub(crate) async fn settle_within(&self, max: Duration) -> Duration {
        let pid = self.pid().to_string();
        let start = Instant::now();
        let mut last = cpu_secs(&pid).unwrap_or(0.0);
        while start.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = cpu_secs(&pid).unwrap_or(0.0);
            if now - last <= 0.010 {
                break;
            }
            last = now;
        }
        start.elapsed()
    }

    /// Its peak resident memory so far (VmHWM), KiB.
    pub(crate) fn peak_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Its resident memory now (VmRSS), KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// File descriptors it has open now.
    pub(crate) fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.0.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on loopback.
pub(crate) fn free_tcp() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A free UDP port on loopback.
pub(crate) fn free_udp() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub(crate) fn cpu_secs(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The `p` quantile of sorted durations.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}
