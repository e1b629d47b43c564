//! The shipped `haproxy/haproxy.cfg`, run in the real HAProxy 2.6 (Debian's): it loads without
//! a warning, and so do its TLS check variant and `haproxy/keepalived.conf.example`; its health
//! check is an HTTP/1.1 request with a Host header that only a 200 passes; the requests it
//! forwards carry the X-Forwarded-* headers Jenkins builds its root URL from, set by HAProxy and
//! not by the client; in a cluster, a switchover followed by an HAProxy restart and a reload
//! never brings the standby back into traffic, while routing comes back to the active within a
//! couple of intervals; and the TLS check variant routes to sidecars that serve HTTPS and
//! require client certificates (`node.tls`), through a switchover.
//!
//! The tests run the shipped file itself, rewritten only where a test on loopback must: see
//! [`REWRITES`] for each rewrite and why.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{free_port, Cluster, Proc, Spec, TlsSpec, NAMES};

const BACKENDS: [&str; 2] = ["jenkins_http", "jenkins_agent"];

fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn shipped() -> String {
    let path = repo_path("haproxy/haproxy.cfg");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn haproxy() -> &'static str {
    [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("haproxy is not installed: run scripts/install-deps")
}

/// The lines of a config that are not comments.
fn settings(cfg: &str) -> impl Iterator<Item = &str> {
    cfg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// `haproxy -c -f FILE`: (passed, everything it printed).
fn haproxy_check(cfg: &Path) -> (bool, String) {
    let out = Command::new(haproxy())
        .arg("-c")
        .arg("-f")
        .arg(cfg)
        .output()
        .expect("run haproxy -c");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_loads_cleanly(cfg: &Path) {
    let (ok, text) = haproxy_check(cfg);
    assert!(ok, "haproxy -c -f {} failed:\n{text}", cfg.display());
    assert!(text.contains("Configuration file is valid"), "{text}");
    for line in text.lines() {
        assert!(
            !line.contains("[WARNING]") && !line.contains("[ALERT]"),
            "haproxy -c -f {}: {line}",
            cfg.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The rewrites for loopback
// ---------------------------------------------------------------------------------------------

const CHROOT: &str =
    "`chroot /var/lib/haproxy` removed: chroot(2) needs root, and the tests also run unprivileged";
const USER: &str =
    "`user haproxy` and `group haproxy` removed: switching to another user needs root";
const UNIX_SOCKET: &str = "the admin socket /run/haproxy/admin.sock moved into the test's directory: /run/haproxy belongs to root, and the harness reads HAProxy's state there";
const TCP_SOCKET: &str = "the TCP admin socket ipv4@10.0.0.5:9999 bound to 127.0.0.1 on a free port: this machine has no 10.0.0.5; the sidecars write through it, as they do from the Jenkins hosts";
const BINDS: &str = "`bind :80` and `bind :50000` on 127.0.0.1 and free ports: port 80 needs root, and tests run side by side";
const SERVERS: &str = "each server's address (Jenkins :8080, agents :50000) and `check port 7070` (the sidecar's API) moved to that host's stand-in and sidecar on loopback, each on its own free port";
const STATE_FILE: &str = "a `server-state-file` (the shipped file has none) pointed at the file the test dumps `show servers state` into, so that bringing one back shows what it does";

/// Every rewrite the tests make to the shipped file, and why; nothing else is changed (timeouts,
/// checks, `disabled`, `track` and the rest stay as shipped). The pid file is not a rewrite: like
/// Debian's unit, the harness passes it on the command line (`-p`).
const REWRITES: [&str; 7] = [
    CHROOT,
    USER,
    UNIX_SOCKET,
    TCP_SOCKET,
    BINDS,
    SERVERS,
    STATE_FILE,
];

/// The rewrites that must apply to the shipped file: if one no longer matches, the shipped file
/// changed in a way these tests must follow.
const REQUIRED: [&str; 6] = [CHROOT, USER, UNIX_SOCKET, TCP_SOCKET, BINDS, SERVERS];

/// Where the example's addresses go.
struct Loopback {
    admin_socket: PathBuf,
    tcp_admin_port: u16,
    front_port: u16,
    agent_front_port: u16,
    state_file: PathBuf,
    hosts: Vec<HostPorts>,
}

/// Where HAProxy reaches one host: server `name` at `ip`, its Jenkins on `jenkins`, its sidecar's
/// API (the health check) on `api` and its agent port on `agent`.
struct HostPorts {
    name: String,
    ip: String,
    jenkins: u16,
    api: u16,
    agent: u16,
}

impl HostPorts {
    fn loopback(name: &str, jenkins: u16, api: u16, agent: u16) -> HostPorts {
        HostPorts {
            name: name.into(),
            ip: "127.0.0.1".into(),
            jenkins,
            api,
            agent,
        }
    }
}

impl Loopback {
    fn for_cluster(c: &Cluster, k: usize, tcp_admin_port: u16) -> Loopback {
        let h = &c.haproxies[k];
        Loopback {
            admin_socket: h.socket.clone(),
            tcp_admin_port,
            front_port: h.front_port,
            agent_front_port: h.agent_front_port,
            state_file: h.state_file.clone(),
            hosts: c
                .hosts
                .iter()
                .map(|host| HostPorts {
                    name: host.name.to_string(),
                    ip: host.haproxy_ip.clone(),
                    jenkins: host.jenkins_port,
                    api: host.api_port,
                    agent: host.agent_port,
                })
                .collect(),
        }
    }
}

/// The shipped config with [`REWRITES`] applied; returns the text and the rewrites that applied.
fn for_loopback(cfg: &str, to: &Loopback) -> (String, BTreeSet<&'static str>) {
    let mut applied = BTreeSet::new();
    let mut out = String::new();
    for line in cfg.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let rewritten: Option<Option<String>> = if trimmed.starts_with('#') {
            None
        } else {
            match words.as_slice() {
                ["chroot", ..] => {
                    applied.insert(CHROOT);
                    Some(None)
                }
                ["user", ..] | ["group", ..] => {
                    applied.insert(USER);
                    Some(None)
                }
                ["stats", "socket", path, rest @ ..] if path.starts_with('/') => {
                    applied.insert(UNIX_SOCKET);
                    Some(Some(format!(
                        "stats socket {} {}",
                        to.admin_socket.display(),
                        rest.join(" ")
                    )))
                }
                ["stats", "socket", addr, rest @ ..] if addr.starts_with("ipv4@") => {
                    applied.insert(TCP_SOCKET);
                    Some(Some(format!(
                        "stats socket ipv4@127.0.0.1:{} {}",
                        to.tcp_admin_port,
                        rest.join(" ")
                    )))
                }
                ["bind", addr, rest @ ..] => {
                    applied.insert(BINDS);
                    let port = match addr.rsplit_once(':').map(|(_, p)| p) {
                        Some("80") => to.front_port,
                        Some("50000") => to.agent_front_port,
                        _ => panic!("haproxy.cfg: a bind the tests do not know: {line:?}"),
                    };
                    Some(Some(
                        format!("bind 127.0.0.1:{port} {}", rest.join(" "))
                            .trim_end()
                            .to_string(),
                    ))
                }
                ["server", name, addr, rest @ ..] => {
                    applied.insert(SERVERS);
                    let HostPorts {
                        ip,
                        jenkins,
                        api,
                        agent,
                        ..
                    } = to
                        .hosts
                        .iter()
                        .find(|h| h.name == *name)
                        .unwrap_or_else(|| panic!("haproxy.cfg: an unknown server: {line:?}"));
                    let port = match addr.rsplit_once(':').map(|(_, p)| p) {
                        Some("8080") => jenkins,
                        Some("50000") => agent,
                        _ => panic!("haproxy.cfg: a server port the tests do not know: {line:?}"),
                    };
                    let mut options: Vec<String> = rest.iter().map(|w| w.to_string()).collect();
                    for i in 1..options.len() {
                        if options[i - 1] == "port" {
                            assert_eq!(options[i], "7070", "haproxy.cfg: check port: {line:?}");
                            options[i] = api.to_string();
                        }
                    }
                    Some(Some(format!(
                        "server {name} {ip}:{port} {}",
                        options.join(" ")
                    )))
                }
                ["server-state-file", _] => {
                    applied.insert(STATE_FILE);
                    Some(Some(format!(
                        "server-state-file {}",
                        to.state_file.display()
                    )))
                }
                _ => None,
            }
        };
        match rewritten {
            None => out.push_str(line),
            Some(None) => continue,
            Some(Some(new)) => {
                out.push_str(indent);
                out.push_str(&new);
            }
        }
        out.push('\n');
    }
    for left in settings(&out) {
        assert!(
            !left.contains("10.0.0."),
            "a rewritten line still names the example network: {left:?}"
        );
    }
    (out, applied)
}

fn assert_required_rewrites(applied: &BTreeSet<&'static str>) {
    for r in applied {
        assert!(REWRITES.contains(r), "a rewrite not in REWRITES: {r}");
    }
    for r in REQUIRED {
        assert!(
            applied.contains(r),
            "this rewrite no longer matches the shipped haproxy.cfg: {r}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Talking to HAProxy and being its servers
// ---------------------------------------------------------------------------------------------

/// One command on an admin socket; the whole reply (HAProxy closes after it).
fn admin(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `show stat`: the `status` column of one backend's server.
fn stat_status(socket: &Path, backend: &str, server: &str) -> Option<String> {
    let text = admin(socket, "show stat").ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (px, sv, status) = (col("pxname")?, col("svname")?, col("status")?);
    lines.find_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        (f.get(px) == Some(&backend) && f.get(sv) == Some(&server))
            .then(|| f.get(status).map(|s| s.to_string()))
            .flatten()
    })
}

/// One row of `show servers state`, read by the header's column names.
#[derive(Debug, Clone)]
struct Row {
    backend: String,
    server: String,
    admin_state: u8,
}

/// Maintenance from the CLI, through `track`, or from DNS (HAProxy's SRV_ADMF_MAINT); a server
/// `disabled` in the config starts with the CLI bit set too.
const MAINT_BITS: u8 = 0x01 | 0x02 | 0x20;

impl Row {
    fn maint(&self) -> bool {
        self.admin_state & MAINT_BITS != 0
    }
}

fn servers_state(socket: &Path) -> Option<Vec<Row>> {
    let text = admin(socket, "show servers state").ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    if lines.next()? != "1" {
        return None;
    }
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(' ').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (be, srv, admin_col) = (col("be_name")?, col("srv_name")?, col("srv_admin_state")?);
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some(Row {
                backend: f.get(be)?.to_string(),
                server: f.get(srv)?.to_string(),
                admin_state: f.get(admin_col)?.parse().ok()?,
            })
        })
        .collect()
}

/// A request head as read by [`read_head`]: the request line and the header lines.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The values of header `name` (any case) in a request head, in order.
fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// A plain HTTP/1.1 server on a raw TCP listener: it records every request head and answers
/// each with the status in `status`, then closes the connection.
struct RawHttp {
    port: u16,
    status: Arc<AtomicU16>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawHttp {
    fn start(status: u16) -> RawHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test listener");
        let port = listener.local_addr().expect("listener address").port();
        let status = Arc::new(AtomicU16::new(status));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (st, hs) = (status.clone(), heads.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Some(head) = read_head(&mut stream) {
                    hs.lock().expect("heads").push(head);
                    let code = st.load(Ordering::SeqCst);
                    let _ = stream.write_all(
                        format!(
                            "HTTP/1.1 {code} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                }
            }
        });
        RawHttp {
            port,
            status,
            heads,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// `openssl s_server` on 127.0.0.1:`port` with the certificate and key in `pem`; it answers any
/// GET with 200 (`-www`). Returns once it listens.
fn start_s_server(port: u16, pem: &Path, dir: &Path) -> Proc {
    let p = Proc::spawn(
        "s_server",
        Path::new("openssl"),
        &[
            "s_server".into(),
            "-quiet".into(),
            "-www".into(),
            "-accept".into(),
            format!("127.0.0.1:{port}"),
            "-cert".into(),
            pem.display().to_string(),
        ],
        &dir.join("s_server.log"),
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "openssl s_server did not listen"
    );
    p
}

/// HAProxy in the foreground on `cfg`; returns once its admin socket `socket` exists.
fn start_haproxy(cfg: &Path, log: &Path, socket: &Path) -> Proc {
    let _ = std::fs::remove_file(socket);
    let p = Proc::spawn(
        "haproxy",
        Path::new(haproxy()),
        &["-db".into(), "-f".into(), cfg.display().to_string()],
        log,
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()),
        "HAProxy did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    p
}

/// A request through HAProxy's frontend with `Connection: close`: (status, X-Standin-Node).
fn get_through(port: u16, path: &str, extra_headers: &str) -> Option<(u16, Option<String>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(800))).ok()?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: jenkins.example.com\r\n{extra_headers}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .ok()?;
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let head = reply.split("\r\n\r\n").next().unwrap_or("");
    let node = header_values(head, "X-Standin-Node")
        .first()
        .map(|v| v.to_string());
    Some((status, node))
}

// ---------------------------------------------------------------------------------------------
// The files load
// ---------------------------------------------------------------------------------------------

#[test]
fn the_shipped_config_loads_in_haproxy_without_a_warning() {
    assert_loads_cleanly(&repo_path("haproxy/haproxy.cfg"));
    let cfg = shipped();
    // What the restart test relies on, named here so that a change says why it is wrong.
    for s in settings(&cfg) {
        assert!(
            !s.starts_with("server-state-file") && !s.starts_with("load-server-state-from-file"),
            "a state file brings back stale routing after a switchover and a restart: {s:?}"
        );
        if s.starts_with("server ") {
            assert!(
                s.split_whitespace().any(|w| w == "disabled"),
                "every server starts disabled, so a fresh HAProxy routes to no master until the active sidecar says so: {s:?}"
            );
        }
    }
}

/// Makes a CA and a server certificate for `name` signed by it, in `dir`: (ca.crt, server.pem
/// with the certificate and its key).
fn make_ca_and_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (scripts/install-deps)");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=jenkins-ha test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=DNS:{name}\n")).expect("san");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    let pem = [
        std::fs::read_to_string(dir.join("server.crt")).expect("server.crt"),
        std::fs::read_to_string(dir.join("server.key")).expect("server.key"),
    ]
    .concat();
    std::fs::write(dir.join("server.pem"), pem).expect("server.pem");
    (dir.join("ca.crt"), dir.join("server.pem"))
}

/// The shipped config with its commented TLS check lines in place of the plain `server` lines
/// of jenkins_http, and `ca_file` for the CA path.
fn tls_variant(cfg: &str, ca_file: &Path) -> String {
    let mut out = String::new();
    let mut tls_lines = 0;
    let mut backend = "";
    for line in cfg.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("backend ") {
            backend = name.trim();
        }
        if backend == "jenkins_http" && trimmed.starts_with("server ") {
            continue;
        }
        if let Some(server) = trimmed.strip_prefix("#server ") {
            if server.contains("check-ssl") {
                tls_lines += 1;
                out.push_str(&format!(
                    "    server {}\n",
                    server.replace(
                        "/etc/haproxy/jenkins-ha-ca.crt",
                        &ca_file.display().to_string()
                    )
                ));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(tls_lines, 2, "the TLS variant has one line per server");
    out
}

#[test]
fn the_tls_check_variant_loads_and_verifies_the_sidecar_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, server_pem) = make_ca_and_cert(dir.path(), "jenkins01.example.com");
    let variant = tls_variant(&shipped(), &ca);
    let path = dir.path().join("tls.cfg");
    std::fs::write(&path, &variant).expect("tls.cfg");
    assert_loads_cleanly(&path);

    // And it really checks over TLS: a TLS server with a certificate for jenkins01.example.com
    // signed by that CA (openssl s_server answers any GET with 200) passes the check.
    let api = free_port();
    let mut s_server = start_s_server(api, &server_pem, dir.path());
    let socket = dir.path().join("admin.sock");
    let to = Loopback {
        admin_socket: socket.clone(),
        tcp_admin_port: free_port(),
        front_port: free_port(),
        agent_front_port: free_port(),
        state_file: dir.path().join("state"),
        hosts: vec![
            HostPorts::loopback("jenkins01", free_port(), api, free_port()),
            HostPorts::loopback("jenkins02", free_port(), free_port(), free_port()),
        ],
    };
    let (text, _) = for_loopback(&variant, &to);
    let cfg = dir.path().join("run.cfg");
    std::fs::write(&cfg, &text).expect("run.cfg");
    let mut hap = start_haproxy(&cfg, &dir.path().join("haproxy.log"), &socket);
    admin(&socket, "set server jenkins_http/jenkins01 state ready").expect("set server");
    let up = wait_until(Duration::from_secs(5), || {
        stat_status(&socket, "jenkins_http", "jenkins01").as_deref() == Some("UP")
    });
    let log = std::fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default();
    assert!(up, "the TLS check did not pass\n{log}");
    hap.kill9();
    s_server.kill9();

    // The same server presented to a check that expects another name fails it.
    let wrong = variant.replace(
        "check-sni jenkins01.example.com",
        "check-sni other.example.com",
    );
    let mut s_server = start_s_server(api, &server_pem, dir.path());
    let (text, _) = for_loopback(&wrong, &to);
    std::fs::write(&cfg, &text).expect("run.cfg");
    let mut hap = start_haproxy(&cfg, &dir.path().join("haproxy.log"), &socket);
    admin(&socket, "set server jenkins_http/jenkins01 state ready").expect("set server");
    let down = wait_until(Duration::from_secs(5), || {
        stat_status(&socket, "jenkins_http", "jenkins01").as_deref() == Some("DOWN")
    });
    assert!(down, "a certificate for another name passed the check");
    hap.kill9();
    s_server.kill9();
}

#[test]
fn the_keepalived_example_passes_keepalived_config_test() {
    let keepalived = [
        "/usr/sbin/keepalived",
        "/usr/bin/keepalived",
        "/sbin/keepalived",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("keepalived is not installed: run scripts/install-deps");
    let text = std::fs::read_to_string(repo_path("haproxy/keepalived.conf.example"))
        .expect("keepalived.conf.example");
    // keepalived -t also checks that the interface exists. The example names eth0; on a machine
    // without one, the test names an interface this machine has (never the loopback, which VRRP
    // refuses).
    let text = if Path::new("/sys/class/net/eth0").exists() {
        text
    } else {
        let other = std::fs::read_dir("/sys/class/net")
            .expect("/sys/class/net")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find(|n| n != "lo")
            .expect("a network interface other than lo");
        text.replace("eth0", &other)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keepalived.conf");
    std::fs::write(&path, text).expect("keepalived.conf");
    let out = Command::new(keepalived)
        .arg("-t")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run keepalived -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "keepalived -t: {text}");
    assert!(!text.contains("WARNING"), "keepalived -t: {text}");
}

// ---------------------------------------------------------------------------------------------
// The check and the forwarded request
// ---------------------------------------------------------------------------------------------

#[test]
fn the_check_is_http11_with_a_host_and_jenkins_gets_the_forwarded_headers_from_haproxy() {
    let dir = tempfile::tempdir().expect("temp dir");
    // jenkins01: a sidecar API and a Jenkins, both raw listeners that record what they get.
    let api = RawHttp::start(200);
    let jenkins = RawHttp::start(200);
    let socket = dir.path().join("admin.sock");
    let to = Loopback {
        admin_socket: socket.clone(),
        tcp_admin_port: free_port(),
        front_port: free_port(),
        agent_front_port: free_port(),
        state_file: dir.path().join("state"),
        hosts: vec![
            HostPorts::loopback("jenkins01", jenkins.port, api.port, free_port()),
            HostPorts::loopback("jenkins02", free_port(), free_port(), free_port()),
        ],
    };
    let (text, applied) = for_loopback(&shipped(), &to);
    assert_required_rewrites(&applied);
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, &text).expect("haproxy.cfg");
    let log = dir.path().join("haproxy.log");
    let mut hap = start_haproxy(&cfg, &log, &socket);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // Disabled servers are not checked: nothing reaches the sidecar until it is set ready.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(api.heads().is_empty(), "a disabled server was checked");
    assert_eq!(
        stat_status(&socket, "jenkins_http", "jenkins01").as_deref(),
        Some("MAINT")
    );
    // What the active sidecar does:
    let reply = admin(&socket, "set server jenkins_http/jenkins01 state ready").expect("admin");
    assert_eq!(reply.trim(), "", "set server: {reply}");
    admin(&socket, "set server jenkins_agent/jenkins01 state ready").expect("admin");
    assert!(
        wait_until(Duration::from_secs(5), || !api.heads().is_empty()),
        "no health check reached the sidecar's port\n{}",
        logs()
    );
    let check = api.heads()[0].clone();
    let request_line = check.lines().next().unwrap_or("");
    assert_eq!(request_line, "GET /active HTTP/1.1", "{check}");
    let hosts = header_values(&check, "Host");
    assert!(
        hosts.len() == 1 && !hosts[0].is_empty(),
        "an HTTP/1.1 check needs exactly one Host header: {check}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            stat_status(&socket, "jenkins_http", "jenkins01").as_deref() == Some("UP")
        }),
        "a 200 from /active did not make the server UP"
    );

    // A request through the frontend, with forged X-Forwarded-* headers from the client.
    let forged = "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example.com\r\nX-Forwarded-Port: 443\r\n";
    let got = get_through(to.front_port, "/login", forged);
    assert_eq!(got.map(|g| g.0), Some(200), "{}", logs());
    let forwarded = jenkins
        .heads()
        .into_iter()
        .find(|h| h.starts_with("GET /login "))
        .expect("Jenkins got the request");
    assert_eq!(
        header_values(&forwarded, "X-Forwarded-Proto"),
        vec!["http"],
        "{forwarded}"
    );
    assert_eq!(
        header_values(&forwarded, "X-Forwarded-Host"),
        vec!["jenkins.example.com"],
        "{forwarded}"
    );
    assert_eq!(
        header_values(&forwarded, "X-Forwarded-Port"),
        vec![to.front_port.to_string().as_str()],
        "{forwarded}"
    );
    assert_eq!(
        header_values(&forwarded, "X-Forwarded-For"),
        vec!["127.0.0.1"],
        "{forwarded}"
    );

    // The sidecar says "not active": the server goes DOWN and HAProxy routes nobody there.
    api.status.store(503, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(5), || {
            stat_status(&socket, "jenkins_http", "jenkins01").as_deref() == Some("DOWN")
        }),
        "a 503 from /active did not take the server down"
    );
    let before = jenkins.heads().len();
    let got = get_through(to.front_port, "/login", "");
    assert_eq!(got.map(|g| g.0), Some(503));
    assert_eq!(
        jenkins.heads().len(),
        before,
        "a request reached a DOWN server"
    );
    hap.kill9();
}

// ---------------------------------------------------------------------------------------------
// Restart and reload in a cluster
// ---------------------------------------------------------------------------------------------

/// What the sampler saw.
#[derive(Debug, Default)]
struct Samples {
    /// Rounds (every 50 ms, both HAProxy instances each).
    rounds: usize,
    /// Rounds in which an HAProxy's admin socket answered.
    answered: usize,
    /// Requests through a frontend answered 200 by the active's Jenkins.
    served_by_active: usize,
    /// Every moment the standby was ready in a backend or answered a request, with what showed it.
    violations: Vec<String>,
}

/// Every 50 ms until `stop`: each HAProxy's `show servers state` (the standby's server must be
/// in maint in every backend) and a request through its frontend (never answered by the
/// standby's Jenkins).
fn sample(
    sockets: Vec<PathBuf>,
    fronts: Vec<u16>,
    standby: &'static str,
    active: &'static str,
    stop: Arc<AtomicBool>,
    start: Instant,
) -> Samples {
    let mut s = Samples::default();
    while !stop.load(Ordering::SeqCst) {
        let tick = Instant::now();
        s.rounds += 1;
        for (k, (socket, front)) in sockets.iter().zip(&fronts).enumerate() {
            let at = start.elapsed();
            if let Some(rows) = servers_state(socket) {
                s.answered += 1;
                for r in rows.iter().filter(|r| r.server == standby) {
                    if !r.maint() {
                        s.violations.push(format!(
                            "{at:?}: HAProxy {k}: {}/{} admin state {:#x} (not maint)",
                            r.backend, r.server, r.admin_state
                        ));
                    }
                }
            }
            match get_through(*front, "/login", "") {
                Some((_, Some(node))) if node == standby => s.violations.push(format!(
                    "{at:?}: HAProxy {k}: a request was served by {standby}"
                )),
                Some((200, Some(node))) if node == active => s.served_by_active += 1,
                _ => {}
            }
        }
        let spent = tick.elapsed();
        if spent < Duration::from_millis(50) {
            std::thread::sleep(Duration::from_millis(50) - spent);
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_switchover_an_haproxy_restart_or_reload_never_brings_the_standby_back() {
    // The sidecars' default timing, which the shipped check timing (inter 1s) is made for.
    let spec = Spec {
        interval: Duration::from_secs(1),
        fall: 3,
        lease_timeout: Duration::from_secs(5),
        haproxies: 2,
        ..Spec::default()
    };
    let interval = spec.interval;
    let tcp_ports = [free_port(), free_port()];
    let shipped = shipped();
    let mut c = Cluster::prepare_with_haproxy_cfg(spec, |c, k| {
        let (text, applied) = for_loopback(&shipped, &Loopback::for_cluster(c, k, tcp_ports[k]));
        assert_required_rewrites(&applied);
        text
    });
    // Like sidecars on the Jenkins hosts: both HAProxy instances through their TCP admin sockets.
    c.set_sidecar_haproxy_sockets(&tcp_ports.map(|p| format!("tcp://127.0.0.1:{p}")));
    c.start_sidecar(0);
    c.start_sidecar(1);
    let first = c.settle().await;
    let (old, new) = (first, 1 - first);

    // The old advice: dump `show servers state` into the state file (before a reload). Taken
    // here, while the soon-to-be standby is ready. Were the config to load such a file, the
    // restart below would bring it back ready.
    for k in 0..2 {
        let dump = admin(&c.haproxies[k].socket, "show servers state").expect("show servers state");
        std::fs::write(&c.haproxies[k].state_file, dump).expect("state file");
    }

    // The switchover.
    let (code, out, err) = c.cli(old, &["failover"]);
    assert_eq!(code, Some(0), "failover: {out}{err}\n{}", c.logs());
    for k in 0..2 {
        assert!(
            c.wait_routed(k, new, Duration::from_secs(10)).await,
            "HAProxy {k} not routed to {} after the switchover\n{}",
            NAMES[new],
            c.logs()
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let sampler = {
        let sockets = c.haproxies.iter().map(|h| h.socket.clone()).collect();
        let fronts = c.haproxies.iter().map(|h| h.front_port).collect();
        let stop = stop.clone();
        std::thread::spawn(move || sample(sockets, fronts, NAMES[old], NAMES[new], stop, start))
    };

    // 1. HAProxy 0 crashes (every process of it, kill -9) and is started again.
    c.kill_haproxy_master_worker(0);
    tokio::time::sleep(interval).await;
    c.start_haproxy_master_worker(0);
    let back = Instant::now();
    assert!(
        c.wait_routed(0, new, interval * 2 + Duration::from_millis(1500))
            .await,
        "HAProxy 0 not routed to {} within two intervals of its restart\n{}",
        NAMES[new],
        c.logs()
    );
    let routed = back.elapsed();
    let served = c
        .wait_served_by(0, new, interval * 2 + Duration::from_millis(1500))
        .await;
    assert!(served.is_some(), "HAProxy 0 does not serve {}", NAMES[new]);
    eprintln!(
        "restart: routed to {} {routed:?} after HAProxy 0 was back",
        NAMES[new]
    );

    // 2. HAProxy 1 is reloaded (`systemctl reload haproxy`: SIGUSR2 to the master).
    let reloaded = Instant::now();
    let worker = c.reload_haproxy(1).await;
    assert!(
        c.wait_routed(1, new, interval * 2 + Duration::from_millis(1500))
            .await,
        "HAProxy 1 (worker {worker}) not routed to {} within two intervals of its reload\n{}",
        NAMES[new],
        c.logs()
    );
    eprintln!(
        "reload: routed to {} {:?} after SIGUSR2",
        NAMES[new],
        reloaded.elapsed()
    );
    assert!(c
        .wait_served_by(1, new, interval * 2 + Duration::from_millis(1500))
        .await
        .is_some());

    // 3. And HAProxy 0, which was restarted, is reloaded too.
    c.reload_haproxy(0).await;
    assert!(
        c.wait_routed(0, new, interval * 2 + Duration::from_millis(1500))
            .await
    );

    // A few more intervals: the state holds.
    tokio::time::sleep(interval * 3).await;
    stop.store(true, Ordering::SeqCst);
    let s = sampler.join().expect("the sampler");
    eprintln!(
        "{} rounds, {} socket answers, {} requests served by {}",
        s.rounds, s.answered, s.served_by_active, NAMES[new]
    );
    assert!(
        s.violations.is_empty(),
        "the standby {} came back: {:#?}\n{}",
        NAMES[old],
        s.violations,
        c.logs()
    );
    assert!(s.rounds > 50 && s.served_by_active > 50, "{s:?}");
    for k in 0..2 {
        for b in BACKENDS {
            assert_eq!(c.server_label(k, b, NAMES[new]).await, Some("ready"));
            assert_eq!(c.server_label(k, b, NAMES[old]).await, Some("maint"));
        }
    }
    assert_eq!(c.active_code(new).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_check_variant_routes_to_https_sidecars_that_require_client_certificates() {
    // The sidecars serve HTTPS with require_client_cert; HAProxy runs the shipped file with its
    // commented TLS server lines (check-ssl verify required ca-file ... check-sni
    // <name>.example.com), presenting no client certificate: GET /active answers it anyway.
    let spec = Spec {
        interval: Duration::from_secs(1),
        fall: 3,
        lease_timeout: Duration::from_secs(5),
        tls: Some(TlsSpec {
            require_client_cert: true,
        }),
        ..Spec::default()
    };
    let tcp_port = free_port();
    let shipped = shipped();
    let mut c = Cluster::prepare_with_haproxy_cfg(spec, |c, k| {
        let ca = c.pki.as_ref().expect("a TLS cluster").ca_file();
        let (text, applied) = for_loopback(
            &tls_variant(&shipped, &ca),
            &Loopback::for_cluster(c, k, tcp_port),
        );
        assert_required_rewrites(&applied);
        assert!(text.contains("check-ssl verify required ca-file"), "{text}");
        text
    });
    c.start_sidecar(0);
    c.start_sidecar(1);
    // Settled means HAProxy routes to the active and serves its Jenkins: its TLS check passed.
    let first = c.settle().await;
    let socket = c.haproxies[0].socket.clone();
    assert_eq!(
        stat_status(&socket, "jenkins_http", NAMES[first]).as_deref(),
        Some("UP")
    );
    // The check that passed is HTTP over TLS: Layer 7, status 200.
    let l7ok = |name: &str| {
        admin(&socket, "show stat").ok().is_some_and(|stat| {
            stat.lines()
                .find(|l| l.starts_with(&format!("jenkins_http,{name},")))
                .is_some_and(|l| l.contains(",L7OK,200,"))
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || l7ok(NAMES[first])),
        "{:?}",
        admin(&socket, "show stat")
    );

    // A switchover: HAProxy's TLS check follows the new active.
    let (code, out, err) = c.cli(first, &["failover", "--yes"]);
    assert_eq!(code, Some(0), "failover: {out}{err}\n{}", c.logs());
    assert!(c.wait_routed(0, 1 - first, Duration::from_secs(10)).await);
    assert!(
        c.wait_served_by(0, 1 - first, Duration::from_secs(10))
            .await
            .is_some(),
        "HAProxy does not serve from the new active\n{}",
        c.logs()
    );
    assert!(wait_until(Duration::from_secs(5), || l7ok(
        NAMES[1 - first]
    )));
}
