//! End-to-end tests of the `jenkins-standin` binary, talking to it as a client would (a plain HTTP/1.1
//! client over std `TcpStream`): authentication (403 vs 401, crumb exemption), the reload window, the
//! folder caveat, per-item reloads, failed reloads, quiet-down, the session header, start delay, the agent
//! port and the control API.
//!
//! Set `STANDIN_LOG=1` to see the stand-ins' stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

/// A running stand-in, killed on drop.
struct Standin {
    child: Child,
    addr: String,
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(home: &Path, name: &str, extra: &[&str]) -> Standin {
    let stderr = if std::env::var_os("STANDIN_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_jenkins-standin"))
        .args(["--listen", "127.0.0.1:0", "--home"])
        .arg(home)
        .args(["--name", name])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn jenkins-standin");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let prefix = format!("jenkins-standin {name} listening on ");
    let addr = line
        .trim()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Standin { child, addr }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn request(addr: &str, method: &str, path: &str, auth: Option<(&str, &str)>) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    if let Some((u, t)) = auth {
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{t}"));
        req.push_str(&format!("Authorization: Basic {cred}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("no end of headers");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(addr: &str, path: &str) -> Resp {
    request(addr, "GET", path, None)
}

fn post(addr: &str, path: &str) -> Resp {
    request(addr, "POST", path, None)
}

fn state(addr: &str) -> Value {
    let r = get(addr, "/standin/state");
    assert_eq!(r.status, 200);
    r.json()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_job(home: &Path, rel: &str, desc: &str) {
    let dir = home.join(rel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.xml"),
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<project>\n  <description>{desc}</description>\n\
             <disabled>false</disabled>\n</project>\n"
        ),
    )
    .unwrap();
}

fn write_folder(home: &Path, rel: &str, desc: &str) {
    let dir = home.join(rel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.xml"),
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<com.cloudbees.hudson.plugins.folder.Folder plugin=\"cloudbees-folder@6.9\">\n\
             <description>{desc}</description>\n</com.cloudbees.hudson.plugins.folder.Folder>\n"
        ),
    )
    .unwrap();
}

const FAST: &[&str] = &["--reload-base", "100ms", "--reload-per-item", "10ms"];

#[test]
fn anonymous_gets_403_wrong_token_gets_401_token_skips_crumb() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_job(home, "jobs/A", "a");
    let token_file = home.join("token");
    std::fs::write(&token_file, "  s3cret-token\n").unwrap();
    let s = start(
        home,
        "n1",
        &[
            "--user",
            "admin",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let good = Some(("admin", "s3cret-token"));

    let r = get(&s.addr, "/api/json");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("WWW-Authenticate"), None);

    for bad in [("admin", "wrong"), ("root", "s3cret-token")] {
        let r = request(&s.addr, "GET", "/api/json", Some(bad));
        assert_eq!(r.status, 401, "{bad:?}");
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Basic realm=\"Jenkins\"")
        );
    }

    let r = request(&s.addr, "GET", "/api/json", good);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["useSecurity"], true);
    assert_eq!(v["useCrumbs"], true);
    assert_eq!(v["_class"], "hudson.model.Hudson");
    assert_eq!(v["jobs"][0]["name"], "A");
    assert_eq!(v["jobs"][0]["_class"], "hudson.model.FreeStyleProject");
    assert_eq!(v["jobs"][0]["url"], format!("http://{}/job/A/", s.addr));

    // Anonymous POST: no crumb. API-token POST: exempt.
    let r = post(&s.addr, "/quietDown");
    assert_eq!(r.status, 403);
    assert!(
        r.body
            .contains("No valid crumb was included in the request"),
        "{}",
        r.body
    );
    let r = request(&s.addr, "POST", "/quietDown", good);
    assert_eq!(r.status, 302);

    // Unprotected URLs.
    assert_eq!(get(&s.addr, "/login").status, 200);
    let r = get(&s.addr, "/whoAmI/api/json");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], "anonymous");
    assert_eq!(r.json()["anonymous"], true);
    let r = request(&s.addr, "GET", "/whoAmI/api/json", good);
    assert_eq!(r.json()["name"], "admin");
    assert_eq!(r.json()["anonymous"], false);
    assert_eq!(r.json()["authenticated"], true);
    assert_eq!(state(&s.addr)["quietingDown"], true);

    // Unknown URLs are protected too; with the token they are 404.
    assert_eq!(get(&s.addr, "/nope").status, 403);
    assert_eq!(request(&s.addr, "GET", "/nope", good).status, 404);
    assert_eq!(request(&s.addr, "GET", "/", good).status, 200);
    assert!(request(&s.addr, "GET", "/", good)
        .body
        .contains("Dashboard [Jenkins]"));
}

#[test]
fn security_off_lets_anonymous_do_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path(), "open", &[]);
    let r = get(&s.addr, "/api/json");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["useSecurity"], false);
    assert_eq!(r.json()["jobs"], serde_json::json!([]));
    assert_eq!(post(&s.addr, "/quietDown").status, 302);
    let r = get(&s.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("open"));
}

#[test]
fn full_reload_answers_302_then_503_then_shows_new_items() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_job(home, "jobs/A", "a1");
    write_job(home, "jobs/B", "b1");
    let s = start(home, "n1", FAST);
    assert_eq!(
        state(&s.addr)["items"],
        serde_json::json!({"A": "a1", "B": "b1"})
    );

    let r = get(&s.addr, "/reload");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));

    write_job(home, "jobs/A", "a2");
    std::fs::remove_dir_all(home.join("jobs/B")).unwrap();
    write_job(home, "jobs/C", "c1 &amp; more");

    let t0 = Instant::now();
    let r = post(&s.addr, "/reload");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("/"));

    let r = get(&s.addr, "/api/json");
    assert_eq!(r.status, 503);
    assert!(r
        .body
        .contains("Please wait while Jenkins is getting ready to work"));
    assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    assert_eq!(r.header("Retry-After"), None);
    assert_eq!(
        post(&s.addr, "/reload").status,
        503,
        "a reload during a reload"
    );
    assert_eq!(get(&s.addr, "/login").status, 503);
    let st = state(&s.addr);
    assert_eq!(st["reloading"], true);
    assert_eq!(
        st["items"]["B"], "b1",
        "the new tree is applied at the end of the window"
    );

    wait_for("the reload to end", Duration::from_secs(10), || {
        get(&s.addr, "/api/json").status == 200
    });
    // base 100ms + 10ms × 2 items on disk
    assert!(
        t0.elapsed() >= Duration::from_millis(120),
        "{:?}",
        t0.elapsed()
    );
    let st = state(&s.addr);
    assert_eq!(
        st["items"],
        serde_json::json!({"A": "a2", "C": "c1 & more"})
    );
    assert_eq!(st["reloading"], false);
    assert_eq!(st["fullReloads"], 1);
    assert_eq!(st["fullReloadsCompleted"], 1);
    let r = get(&s.addr, "/job/C/api/json");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["description"], "c1 & more");
    assert_eq!(get(&s.addr, "/job/B/api/json").status, 404);
}

#[test]
fn full_reload_keeps_existing_folder_children_but_item_reload_rereads() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_folder(home, "jobs/F", "f1");
    write_job(home, "jobs/F/jobs/B", "b1");
    write_job(home, "jobs/F/jobs/D", "d1");
    let s = start(home, "n1", FAST);

    let r = get(&s.addr, "/api/json");
    assert_eq!(
        r.json()["jobs"][0]["_class"],
        "com.cloudbees.hudson.plugins.folder.Folder"
    );
    let r = get(&s.addr, "/job/F/job/B/api/json");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["name"], "B");
    assert_eq!(v["fullName"], "F/B");
    assert_eq!(v["description"], "b1");
    assert_eq!(v["url"], format!("http://{}/job/F/job/B/", s.addr));

    write_folder(home, "jobs/F", "f2");
    write_job(home, "jobs/F/jobs/B", "b2");
    write_job(home, "jobs/F/jobs/C", "c1");
    std::fs::remove_dir_all(home.join("jobs/F/jobs/D")).unwrap();

    assert_eq!(post(&s.addr, "/reload").status, 302);
    wait_for("the reload to end", Duration::from_secs(10), || {
        state(&s.addr)["fullReloadsCompleted"] == 1
    });
    let items = state(&s.addr)["items"].clone();
    assert_eq!(
        items,
        serde_json::json!({"F": "f2", "F/B": "b1", "F/C": "c1"}),
        "the folder is re-read, its existing child is not, the new child shows, the deleted one is gone"
    );
    assert_eq!(
        get(&s.addr, "/job/F/job/B/api/json").json()["description"],
        "b1"
    );

    let r = get(&s.addr, "/job/F/job/B/reload");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));
    let r = post(&s.addr, "/job/F/job/B/reload");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
    assert_eq!(
        get(&s.addr, "/job/F/job/B/api/json").json()["description"],
        "b2"
    );
    let st = state(&s.addr);
    assert_eq!(st["items"]["F/B"], "b2");
    assert_eq!(st["itemReloads"], 1);
}

#[test]
fn item_reload_cannot_discover_new_items_and_fails_on_vanished_config() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_job(home, "jobs/A", "a1");
    let s = start(home, "n1", FAST);

    write_job(home, "jobs/N", "n1");
    assert_eq!(post(&s.addr, "/job/N/reload").status, 404);
    assert_eq!(get(&s.addr, "/job/N/api/json").status, 404);

    std::fs::remove_file(home.join("jobs/A/config.xml")).unwrap();
    assert_eq!(post(&s.addr, "/job/A/reload").status, 500);
    let st = state(&s.addr);
    assert_eq!(st["items"], serde_json::json!({"A": "a1"}));
    assert_eq!(st["itemReloads"], 0);
}

#[test]
fn failed_reload_means_503_forever() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_job(home, "jobs/A", "a1");
    let s = start(home, "n1", FAST);

    assert_eq!(post(&s.addr, "/standin/fail-reloads?on=true").status, 200);
    assert_eq!(post(&s.addr, "/reload").status, 302);
    wait_for("the reload to fail", Duration::from_secs(10), || {
        state(&s.addr)["reloadFailed"] == true
    });
    assert_eq!(post(&s.addr, "/standin/fail-reloads?on=false").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    for path in ["/", "/api/json", "/login", "/whoAmI/api/json"] {
        let r = get(&s.addr, path);
        assert_eq!(r.status, 503, "{path}");
        assert!(r.body.contains("failed to reload"), "{}", r.body);
    }
    assert_eq!(post(&s.addr, "/reload").status, 503);
    let st = state(&s.addr);
    assert_eq!(st["reloading"], false);
    assert_eq!(st["fullReloads"], 1);
    assert_eq!(st["fullReloadsCompleted"], 0);
}

#[test]
fn quiet_down_is_in_memory_and_session_changes_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let s = start(home, "n1", FAST);

    let r = get(&s.addr, "/api/json");
    assert_eq!(r.header("X-Jenkins"), Some("2.462.3"));
    assert_eq!(r.header("X-Standin-Node"), Some("n1"));
    let session = r.header("X-Jenkins-Session").unwrap().to_string();
    assert_eq!(session.len(), 8);
    assert!(session.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(state(&s.addr)["session"], session.as_str());
    assert_eq!(r.json()["quietingDown"], false);

    assert_eq!(get(&s.addr, "/quietDown").status, 405);
    let r = post(&s.addr, "/quietDown");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("/"));
    assert_eq!(get(&s.addr, "/api/json").json()["quietingDown"], true);
    assert_eq!(post(&s.addr, "/cancelQuietDown").status, 302);
    assert_eq!(get(&s.addr, "/api/json").json()["quietingDown"], false);
    assert_eq!(post(&s.addr, "/quietDown").status, 302);
    let st = state(&s.addr);
    assert_eq!(st["quietDownCalls"], 2);
    assert_eq!(st["cancelQuietDownCalls"], 1);

    drop(s);
    let s = start(home, "n1", FAST);
    let r = get(&s.addr, "/api/json");
    assert_ne!(r.header("X-Jenkins-Session").unwrap(), session);
    assert_eq!(
        r.json()["quietingDown"],
        false,
        "quiet-down does not survive a restart"
    );
}

#[test]
fn start_delay_agent_port_and_control_api() {
    let tmp = tempfile::tempdir().unwrap();
    let agent_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent_addr = format!("127.0.0.1:{agent_port}");
    let s = start(
        tmp.path(),
        "n2",
        &[
            "--start-delay",
            "1s",
            "--agent-listen",
            &agent_addr,
            "--executors",
            "3",
        ],
    );
    let r = get(&s.addr, "/api/json");
    assert_eq!(r.status, 503);
    assert!(r
        .body
        .contains("Please wait while Jenkins is getting ready to work"));
    assert_eq!(state(&s.addr)["name"], "n2");
    wait_for("the start delay to pass", Duration::from_secs(10), || {
        get(&s.addr, "/api/json").status == 200
    });

    let mut greeting = String::new();
    TcpStream::connect(&agent_addr)
        .unwrap()
        .read_to_string(&mut greeting)
        .unwrap();
    assert_eq!(greeting, "jenkins-standin n2\n");

    assert_eq!(post(&s.addr, "/standin/busy?n=1").status, 200);
    let v = get(&s.addr, "/computer/api/json").json();
    assert_eq!(v["busyExecutors"], 1);
    assert_eq!(v["totalExecutors"], 3);
    assert_eq!(get(&s.addr, "/api/json").json()["numExecutors"], 3);
    assert_eq!(
        get(&s.addr, "/queue/api/json").json()["items"],
        serde_json::json!([])
    );

    assert_eq!(post(&s.addr, "/standin/delay?ms=200").status, 200);
    let t0 = Instant::now();
    assert_eq!(get(&s.addr, "/api/json").status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(200));
    let t0 = Instant::now();
    get(&s.addr, "/standin/state");
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "the control API is not delayed"
    );

    assert_eq!(post(&s.addr, "/standin/delay?ms=x").status, 400);
    assert_eq!(get(&s.addr, "/standin/busy?n=1").status, 405);
    let st = state(&s.addr);
    assert_eq!(st["busyExecutors"], 1);
    assert_eq!(st["delayMs"], 200);
}
