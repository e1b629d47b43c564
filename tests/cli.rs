//! The command line as an operator meets it: broken configs are refused with one line naming the
//! file, the line and the field (exit 2), before anything listens; `status` without a daemon exits 1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn jenkins_ha() -> &'static str {
    env!("CARGO_BIN_EXE_jenkins-ha")
}

struct Dir {
    tmp: tempfile::TempDir,
    port: u16,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("home")).unwrap();
        fs::write(tmp.path().join("home/config.xml"), "<hudson/>").unwrap();
        let token = tmp.path().join("cluster.token");
        fs::write(&token, "t0ken\n").unwrap();
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Dir { tmp, port }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A valid config, with `edit` applied to its text.
    fn config(&self, edit: impl Fn(String) -> String) -> PathBuf {
        let text = format!(
            "node:\n  name: jenkins01\n  listen: 127.0.0.1:{port}\n\
             peer:\n  name: jenkins02\n  url: http://127.0.0.1:1\n\
             auth:\n  token_file: cluster.token\n\
             jenkins:\n  url: http://127.0.0.1:2\n  home: home\n\
             timing:\n  interval: 200ms\n  lease_timeout: 2s\n\
             haproxy:\n  sockets: [{dir}/haproxy.sock]\n",
            port = self.port,
            dir = self.path().display()
        );
        let path = self.path().join("config.yaml");
        fs::write(&path, edit(text)).unwrap();
        path
    }
}

fn run(args: &[&str], config: &Path, wait: Duration) -> Output {
    let mut child = Command::new(jenkins_ha())
        .args(args)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("jenkins-ha {args:?} did not exit within {wait:?}");
}

/// Both `run` and `check-config` refuse the config with exit 2, one line naming `expect`, and
/// `run` never listens.
fn refused(dir: &Dir, config: &Path, expect: &[&str]) {
    for cmd in ["check-config", "run"] {
        let out = run(&[cmd], config, Duration::from_secs(5));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{cmd}: one line expected, got:\n{stderr}"
        );
        for e in expect {
            assert!(stderr.contains(e), "{cmd}: {e:?} missing in: {stderr}");
        }
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", dir.port)).is_err(),
            "{cmd} left something listening on node.listen"
        );
    }
}

#[test]
fn yaml_syntax_error() {
    let d = Dir::new();
    let c = d.config(|t| t.replace("  name: jenkins02\n", "  name: [jenkins02\n"));
    refused(&d, &c, &["config.yaml:", "peer.name"]);
}

#[test]
fn unknown_key() {
    let d = Dir::new();
    let c = d.config(|t| {
        t.replace(
            "  lease_timeout: 2s\n",
            "  lease_timeout: 2s\n  leese: 3s\n",
        )
    });
    refused(&d, &c, &["config.yaml:15: timing.leese: unknown key"]);
}

#[test]
fn flow_style_errors_name_the_line_and_column_of_the_key() {
    let d = Dir::new();
    let c = d.config(|t| {
        t.replace(
            "timing:\n  interval: 200ms\n  lease_timeout: 2s\n",
            "timing: {interval: 200ms, lease_timeout: 500ms}\n",
        )
    });
    refused(
        &d,
        &c,
        &["config.yaml:12:27: timing.lease_timeout: must be at least 3 × timing.interval"],
    );
    let c = d.config(|t| {
        t.replace(
            "peer:\n  name: jenkins02\n  url: http://127.0.0.1:1\n",
            "peers: [{name: jenkins02, url: http://127.0.0.1:1},\n        {name: jenkins03, url: ftp://x}]\n",
        )
    });
    refused(
        &d,
        &c,
        &["config.yaml:5:27: peers[1].url:", "must start with http://"],
    );
}

#[test]
fn duplicate_key_names_both_lines() {
    let d = Dir::new();
    let c = d.config(|t| {
        t.replace(
            "  lease_timeout: 2s\n",
            "  lease_timeout: 2s\n  interval: 1s\n",
        )
    });
    refused(
        &d,
        &c,
        &["config.yaml:15: timing.interval: duplicate key (first at line 13)"],
    );
}

#[test]
fn unclosed_quote_is_reported_where_it_opens() {
    let d = Dir::new();
    let c = d.config(|t| {
        t.replace(
            "  url: http://127.0.0.1:2\n",
            "  url: \"http://127.0.0.1:2\n",
        )
    });
    refused(
        &d,
        &c,
        &[
            "config.yaml:10:8: jenkins.url:",
            "is the quote opened here closed?",
        ],
    );
}

#[test]
fn bad_duration() {
    let d = Dir::new();
    let c = d.config(|t| t.replace("interval: 200ms", "interval: fast"));
    refused(&d, &c, &["config.yaml:13: timing.interval:", "duration"]);
}

#[test]
fn missing_token_file() {
    let d = Dir::new();
    let c = d.config(|t| t.replace("token_file: cluster.token", "token_file: missing.token"));
    refused(
        &d,
        &c,
        &[
            "config.yaml:8: auth.token_file:",
            "missing.token",
            "No such file",
        ],
    );
}

#[test]
fn world_readable_token_file() {
    let d = Dir::new();
    let token = d.path().join("cluster.token");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    let c = d.config(|t| t);
    refused(&d, &c, &["auth.token_file:", "chmod 600"]);
}

#[test]
fn missing_config_file() {
    let d = Dir::new();
    let c = d.path().join("nope.yaml");
    refused(&d, &c, &["nope.yaml", "cannot read the config file"]);
}

#[test]
fn valid_config_passes_check_config_with_warnings_only() {
    let d = Dir::new();
    let c = d.config(|t| t);
    let out = run(&["check-config"], &c, Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("warning: HAProxy"),
        "unreachable socket should warn: {stdout}"
    );
    assert!(
        stdout.contains("warning: Jenkins"),
        "unreachable Jenkins should warn: {stdout}"
    );
    assert!(stdout.contains("valid"), "{stdout}");
}

#[test]
fn status_without_a_daemon_exits_1() {
    let d = Dir::new();
    let c = d.config(|t| t);
    let out = run(&["status"], &c, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not answer"), "{stderr}");
}

#[test]
fn run_can_log_json() {
    let d = Dir::new();
    let c = d.config(|t| t);
    let child = Command::new(jenkins_ha())
        .args(["run", "--log-format", "json", "-c"])
        .arg(&c)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().expect("a log line");
    let line: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("starting as jenkins01"),
        "{line}"
    );
    for l in stderr.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn run_refuses_to_create_a_lease_on_a_bare_mount_point() {
    // JENKINS_HOME not mounted: the mount point is an empty directory. A lease created there
    // would be private to this node, and two nodes could both claim term 1.
    let d = Dir::new();
    fs::remove_file(d.path().join("home/config.xml")).unwrap();
    let c = d.config(|t| t);
    let out = run(&["run"], &c, Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is the shared JENKINS_HOME mounted?"),
        "{stderr}"
    );
    assert!(
        !d.path().join("home/.jenkins-ha").exists(),
        "a lease directory was created"
    );
}

/// Starts `jenkins-ha run` on `config` and waits until its API listens on `port`.
fn start_daemon(config: &Path, port: u16) -> std::process::Child {
    let child = Command::new(jenkins_ha())
        .args(["run", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn stop(mut child: std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// Runs `jenkins-ha ARGS -c CONFIG` for `run_for`, then SIGINT; (exit code, stdout).
fn interrupted(args: &[&str], config: &Path, run_for: Duration) -> (Option<i32>, String) {
    let child = Command::new(jenkins_ha())
        .args(args)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(run_for);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `command` (a shell line) on a pseudo-terminal with `script`, typing `input`; returns
/// everything the terminal showed.
fn on_a_terminal(command: &str, input: &str, wait: Duration) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    std::thread::sleep(wait);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn status_watch_prints_a_table_per_round_and_exits_with_the_last_rounds_code() {
    let d = Dir::new();
    let c = d.config(|t| t);
    let daemon = start_daemon(&c, d.port);
    // Piped: one table per round, separated by a blank line, no escape codes. The lone node's
    // Jenkins is down, so no node is active: exit 3 when interrupted.
    let (code, out) = interrupted(
        &["status", "--watch", "200ms"],
        &c,
        Duration::from_millis(1500),
    );
    assert_eq!(code, Some(3), "{out}");
    let rounds = out.matches("Cluster: term").count();
    assert!(rounds >= 3, "{rounds} rounds in 1.5 s at 200ms:\n{out}");
    assert_eq!(out.split("\n\nCluster: term").count(), rounds, "{out}");
    assert!(!out.contains('\x1b'), "escape codes in a pipe: {out:?}");
    assert!(out.contains("Version"), "{out}");
    // --json: one JSON document per line and round.
    let (code, out) = interrupted(
        &["status", "--watch", "200ms", "--json"],
        &c,
        Duration::from_millis(1000),
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(out.lines().count() >= 2, "{out}");
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["reporter"], "jenkins01");
    }
    // On a terminal: the screen is redrawn each round, under a header.
    let (_, screen) = on_a_terminal(
        &format!("{} status --watch 200ms -c {}", jenkins_ha(), c.display()),
        "",
        Duration::from_millis(1200),
    );
    assert!(
        screen.contains("\x1b[H\x1b[2JEvery 200ms: jenkins-ha status (http://127.0.0.1:"),
        "{screen:?}"
    );
    assert!(screen.matches("\x1b[2J").count() >= 2, "{screen:?}");
    stop(daemon);
    // Once the sidecar is gone, a round exits 1 (and so would the watch).
    let (code, _) = interrupted(
        &["status", "--watch", "200ms"],
        &c,
        Duration::from_millis(600),
    );
    assert_eq!(code, Some(1));
}

#[test]
fn status_url_needs_no_config_for_http_and_tls_settings_for_https() {
    let d = Dir::new();
    let absent = d.path().join("absent.yaml");
    let out = run(
        &["status", "--url", &format!("http://127.0.0.1:{}", d.port)],
        &absent,
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");
    let c = d.config(|t| t);
    let out = run(
        &["status", "--url", "https://127.0.0.1:1"],
        &c,
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("https:// needs node.tls"), "{stderr}");
}

/// Every file under `dir` with its length and modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn status_and_history_write_nothing() {
    let d = Dir::new();
    let c = d.config(|t| t);
    let daemon = start_daemon(&c, d.port);
    // Let the daemon write its lease first; then nothing may change while only the commands run.
    std::thread::sleep(Duration::from_millis(600));
    stop(daemon);
    let before = tree(d.path());
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["history"],
        &["history", "--json"],
    ] {
        run(args, &c, Duration::from_secs(10));
    }
    assert_eq!(tree(d.path()), before);
}
