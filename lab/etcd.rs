//! Dev-only: a real etcd cluster (Debian's `etcd-server`) on loopback for the etcd lease tests.
//!
//! Members listen on free loopback ports and keep their data in a temporary directory. Faults
//! are real: `kill -9`, `SIGSTOP`/`SIGCONT`, and restarts on the same data directory. Every member
//! is killed and the directory removed when the [`EtcdCluster`] drops; member logs are kept in the
//! directory until then and can be printed with [`EtcdCluster::logs`].

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Where Debian's `etcd-server` puts the binary (`scripts/install-deps` installs it).
pub const ETCD: &str = "/usr/bin/etcd";

/// One member: its ports, data directory, log, and process while it runs.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// Plain-HTTP `/metrics` and `/health`, also when clients must use TLS.
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    scheme: &'static str,
    child: Option<Child>,
}

/// Client TLS for every member: its certificate and key, and the CA its clients must present
/// certificates from (`--client-cert-auth`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
    }

    fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }
}

/// A running etcd cluster of real processes.
pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    initial_cluster: String,
    token: String,
    tls: Option<ServerTls>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP GET on loopback; `None` when the member does not answer within `timeout`.
fn http_get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster has a leader and answers.
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_with(n, None)
    }

    /// Like [`EtcdCluster::start`], with clients on https:// and client certificates required.
    pub fn start_with(n: usize, tls: Option<ServerTls>) -> EtcdCluster {
        assert!(
            Path::new(ETCD).is_file(),
            "{ETCD} is missing: run scripts/install-deps (Debian's etcd-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("etcd-lab-")
            .tempdir()
            .expect("temp dir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                metrics_port: free_port(),
                scheme: if tls.is_some() { "https" } else { "http" },
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "lab-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let mut c = EtcdCluster {
            dir,
            members,
            initial_cluster,
            token,
            tls,
        };
        for i in 0..n {
            c.spawn(i);
        }
        assert!(
            c.wait_ready(Duration::from_secs(20)),
            "etcd did not elect a leader\n{}",
            c.logs()
        );
        c
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("open etcd log");
        let err = log.try_clone().expect("clone log");
        let client = m.endpoint();
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        let mut cmd = Command::new(ETCD);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.client_ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-metrics-urls", &metrics])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"));
        self.members[i].child = Some(child);
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// `kill -9` member `i` (its data stays for a restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes member `i` (SIGSTOP): its sockets stay open but it answers nothing.
    pub fn stop(&self, i: usize) {
        if let Some(pid) = self.members[i].pid() {
            let _ = kill(pid, Signal::SIGSTOP);
        }
    }

    /// Thaws member `i` (SIGCONT).
    pub fn cont(&self, i: usize) {
        if let Some(pid) = self.members[i].pid() {
            let _ = kill(pid, Signal::SIGCONT);
        }
    }

    /// Starts member `i` again on its data directory (after [`EtcdCluster::kill`]).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Whether member `i` says it is the raft leader (from its metrics).
    pub fn is_leader(&self, i: usize) -> bool {
        self.members[i].child.is_some()
            && http_get(
                self.members[i].metrics_port,
                "/metrics",
                Duration::from_millis(500),
            )
            .is_some_and(|m| m.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
    }

    /// The member that is raft leader now, if one is.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| self.is_leader(i))
    }

    /// Whether member `i` runs and reports healthy (`/health`: it has a leader and answers).
    pub fn member_healthy(&self, i: usize) -> bool {
        let m = &self.members[i];
        m.child.is_some()
            && http_get(m.metrics_port, "/health", Duration::from_millis(500))
                .is_some_and(|b| b.contains("\"health\":\"true\""))
    }

    /// Waits until some member is leader and a running member reports healthy.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let healthy = self.members.iter().any(|m| {
                m.child.is_some()
                    && http_get(m.metrics_port, "/health", Duration::from_millis(500))
                        .is_some_and(|b| b.contains("\"health\":\"true\""))
            });
            if healthy && self.leader().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The tail of every member's log, for a failing test.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- {} ({})\n", m.name, m.endpoint()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
