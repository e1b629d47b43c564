//! End-to-end tests of the `jenkins-standin` binary, talking to it as a client would (a plain HTTP/1.1
//! client over std `TcpStream`): authentication (403 vs 401, crumb exemption), the reload window, the
//! folder caveat, per-item reloads, failed reloads, quiet-down, the session header, start delay, the agent
//! port and the control API; then the scale model: load time growing with items and build entries
//! (on homes written by the lab's generator), build numbers and collisions between two controllers,
//! timer fires queued and coalesced during quiet-down, the queue API, what a reload does not re-read,
//! and the writes a controller makes into the shared home.
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

// ---------------------------------------------------------------------------------------------------
// The scale model: load time, builds, the queue, and what a controller writes into the home.

use std::path::PathBuf;

use jenkins_ha_lab::home_gen::{generate, HomeSpec};

fn post_auth(addr: &str, path: &str, auth: (&str, &str)) -> Resp {
    request(addr, "POST", path, Some(auth))
}

fn brief(addr: &str) -> Value {
    let r = get(addr, "/standin/state?brief=1");
    assert_eq!(r.status, 200);
    r.json()
}

fn standin_builds(addr: &str) -> Vec<Value> {
    let r = get(addr, "/standin/builds");
    assert_eq!(r.status, 200);
    r.json().as_array().unwrap().clone()
}

fn next_number(addr: &str, job: &str) -> u64 {
    let r = get(addr, &format!("/standin/next-numbers?job={job}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()[job].as_u64().unwrap()
}

/// Waits until build `job #number` started by this stand-in has ended, and returns its record.
fn wait_build_end(addr: &str, job: &str, number: u64) -> Value {
    let mut found = Value::Null;
    wait_for(
        &format!("{job} #{number} to end"),
        Duration::from_secs(10),
        || {
            found = standin_builds(addr)
                .into_iter()
                .find(|b| b["job"] == job && b["number"] == number && !b["endedMs"].is_null())
                .unwrap_or(Value::Null);
            !found.is_null()
        },
    );
    found
}

/// A job config with a timer trigger and a build duration (both optional).
fn write_timer_job(home: &Path, rel: &str, every: Option<&str>, duration: &str) {
    let dir = home.join(rel);
    std::fs::create_dir_all(&dir).unwrap();
    let triggers = every
        .map(|e| {
            format!(
                "<triggers><hudson.triggers.TimerTrigger><spec>@every {e}</spec>\
                 </hudson.triggers.TimerTrigger></triggers>"
            )
        })
        .unwrap_or_else(|| "<triggers/>".into());
    std::fs::write(
        dir.join("config.xml"),
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<project>\n  <description>t</description>\n  {triggers}\n  \
             <standinBuildDuration>{duration}</standinBuildDuration>\n</project>\n"
        ),
    )
    .unwrap();
}

/// A finished (or, without a result, running) build record as another controller would leave it.
fn write_build(home: &Path, job_rel: &str, n: u64, result: Option<&str>, controller: &str) {
    let dir = home.join(job_rel).join("builds").join(n.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let result = result
        .map(|r| format!("<result>{r}</result><duration>5</duration>"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("build.xml"),
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<build><number>{n}</number><timestamp>1700000000000</timestamp>\
             {result}<standinController>{controller}</standinController></build>\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("log"), "Started by timer\n").unwrap();
}

/// Spawns a stand-in on a chosen port without waiting for its "listening" line (to watch start-up).
fn spawn_on(home: &Path, name: &str, addr: &str, extra: &[&str]) -> Standin {
    let child = Command::new(env!("CARGO_BIN_EXE_jenkins-standin"))
        .args(["--listen", addr, "--home"])
        .arg(home)
        .args(["--name", name])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("STANDIN_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawn jenkins-standin");
    Standin {
        child,
        addr: addr.to_string(),
    }
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// How long `/api/json` answers 503 after `POST /reload`.
fn reload_window(addr: &str) -> Duration {
    let t0 = Instant::now();
    assert_eq!(post(addr, "/reload").status, 302);
    wait_for("the reload to end", Duration::from_secs(30), || {
        get(addr, "/api/json").status == 200
    });
    t0.elapsed()
}

const MODEL: &[&str] = &[
    "--reload-base",
    "100ms",
    "--load-per-item",
    "1ms",
    "--load-per-build-entry",
    "10us",
];

#[test]
fn generated_homes_load_and_the_window_grows_with_items() {
    let small_dir = tempfile::tempdir().unwrap();
    let big_dir = tempfile::tempdir().unwrap();
    let small_spec = HomeSpec {
        jobs: 20,
        folders: 2,
        top_level_jobs: 2,
        builds: 1,
        ..HomeSpec::default()
    };
    let big_spec = HomeSpec {
        jobs: 2000,
        folders: 20,
        top_level_jobs: 20,
        builds: 1,
        ..HomeSpec::default()
    };
    let small_home = generate(small_dir.path(), &small_spec).unwrap();
    let big_home = generate(big_dir.path(), &big_spec).unwrap();
    assert_eq!(
        big_home.items,
        2000 + 20 + 5,
        "20 folders, 5 of them nested"
    );

    let small = start(small_dir.path(), "small", MODEL);
    let big = start(big_dir.path(), "big", MODEL);
    for (s, home, spec) in [
        (&small, &small_home, &small_spec),
        (&big, &big_home, &big_spec),
    ] {
        let st = brief(&s.addr);
        assert!(st.get("items").is_none(), "brief=1 leaves the items out");
        assert_eq!(st["itemCount"], home.items);
        assert_eq!(st["lastLoad"]["kind"], "startup");
        assert_eq!(st["lastLoad"]["items"], home.items);
        assert_eq!(st["lastLoad"]["buildEntries"], spec.jobs);
        assert_eq!(st["nodes"], 3);
        assert_eq!(st["users"], 1);
        assert_eq!(
            st["model"],
            serde_json::json!({
                "reloadBaseMs": 100, "loadPerItemUs": 1000, "loadPerBuildEntryUs": 10,
                "loadThreads": 1, "startDelayMs": 0, "executors": 2, "buildDurationMs": 1000,
                "lastBuildLoadUs": 1000, "queueSaveDelayMs": 60000, "tokenStats": true, "noWrite": [],
            })
        );
        // Every generated job is in memory, with its next number from nextBuildNumber (builds + 1).
        let all = get(&s.addr, "/standin/next-numbers").json();
        assert_eq!(all.as_object().unwrap().len(), home.jobs.len());
        assert!(home.jobs.iter().all(|j| all[j] == 2));
        let nested = home.jobs.iter().find(|j| j.contains("/sub/")).unwrap();
        let segs: Vec<&str> = nested.split('/').collect();
        let url = format!("/job/{}/job/{}/job/{}/api/json", segs[0], segs[1], segs[2]);
        assert_eq!(get(&s.addr, &url).json()["fullName"], nested.as_str());
    }

    let small_window = reload_window(&small.addr);
    let big_window = reload_window(&big.addr);
    assert!(
        big_window > small_window,
        "2,000 jobs reload in {big_window:?}, 20 in {small_window:?}"
    );
    let st = brief(&big.addr);
    assert_eq!(st["lastLoad"]["kind"], "full-reload");
    assert_eq!(st["lastLoad"]["items"], big_home.items);
    let modelled = st["lastLoad"]["modelledMs"].as_u64().unwrap();
    assert!(
        modelled >= 100 + big_home.items as u64 + 20,
        "base + 1 ms per item + 10 µs per build entry: {modelled} ms"
    );
    assert!(big_window >= Duration::from_millis(modelled));
}

#[test]
fn per_item_reload_costs_that_items_load() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_job(home, "jobs/Few", "f");
    write_job(home, "jobs/Many", "m");
    for n in 1..=200 {
        std::fs::create_dir_all(home.join(format!("jobs/Many/builds/{n}"))).unwrap();
    }
    let s = start(
        home,
        "n1",
        &[
            "--reload-base",
            "0ms",
            "--load-per-item",
            "200ms",
            "--load-per-build-entry",
            "3ms",
        ],
    );
    let timed = |path: &str| {
        let t0 = Instant::now();
        assert_eq!(post(&s.addr, path).status, 200);
        t0.elapsed()
    };
    let few = timed("/job/Few/reload");
    let many = timed("/job/Many/reload");
    assert!(few >= Duration::from_millis(200), "{few:?}");
    assert!(many >= Duration::from_millis(200 + 600), "{many:?}");
    assert!(many > few);
    assert_eq!(next_number(&s.addr, "Many"), 201);
}

#[test]
fn a_stale_next_number_collides_and_a_per_item_reload_avoids_it() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_timer_job(home, "jobs/J", None, "200ms");
    let args = ["--queue-save-delay", "-1"];
    let a = start(home, "a", &args);
    let b = start(home, "b", &args);

    let r = post(&a.addr, "/job/J/build");
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("Location"),
        Some(format!("http://{}/queue/item/1/", a.addr).as_str())
    );
    let first = wait_build_end(&a.addr, "J", 1);
    assert_eq!(first["collided"], false);
    assert_eq!(
        first["causes"],
        serde_json::json!(["Started by user anonymous"])
    );
    assert_eq!(
        std::fs::read_to_string(home.join("jobs/J/nextBuildNumber")).unwrap(),
        "2\n",
        "written when the build started"
    );
    assert_eq!(next_number(&a.addr, "J"), 2);

    // B loaded J before A's build: its in-memory number is stale, so it reuses builds/1.
    assert_eq!(next_number(&b.addr, "J"), 1);
    assert_eq!(post(&b.addr, "/job/J/build").status, 201);
    let clash = wait_build_end(&b.addr, "J", 1);
    assert_eq!(clash["collided"], true);
    assert_eq!(brief(&b.addr)["collisions"], 1);
    let xml = std::fs::read_to_string(home.join("jobs/J/builds/1/build.xml")).unwrap();
    assert!(
        xml.contains("<standinController>b</standinController>"),
        "{xml}"
    );
    assert!(xml.contains("<result>SUCCESS</result>"), "{xml}");

    // B builds #2 (its number moved on); A, which has not seen it, would reuse builds/2 ...
    assert_eq!(post(&b.addr, "/job/J/build").status, 201);
    wait_build_end(&b.addr, "J", 2);
    assert_eq!(next_number(&a.addr, "J"), 2);
    // ... unless a per-item reload shows it the builds B wrote.
    assert_eq!(post(&a.addr, "/job/J/reload").status, 200);
    assert_eq!(next_number(&a.addr, "J"), 3);
    assert_eq!(post(&a.addr, "/job/J/build").status, 201);
    assert_eq!(wait_build_end(&a.addr, "J", 3)["collided"], false);
    assert_eq!(brief(&a.addr)["collisions"], 0);
    assert_eq!(brief(&b.addr)["collisions"], 1);
    assert_eq!(
        std::fs::read_to_string(home.join("jobs/J/nextBuildNumber")).unwrap(),
        "4\n"
    );
    assert_eq!(get(&a.addr, "/standin/next-numbers?job=Nope").status, 404);
}

#[test]
fn a_timer_job_on_two_unquiet_controllers_collides() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_timer_job(home, "jobs/T", Some("1s"), "200ms");
    let a = start(home, "a", &[]);
    let b = start(home, "b", &[]);
    let slots = |addr: &str| -> Vec<u64> {
        standin_builds(addr)
            .iter()
            .flat_map(|b| b["fireSlots"].as_array().unwrap().clone())
            .map(|s| s.as_u64().unwrap())
            .collect()
    };
    wait_for(
        "a collision and a slot fired on both",
        Duration::from_secs(10),
        || {
            let collisions = brief(&a.addr)["collisions"].as_u64().unwrap()
                + brief(&b.addr)["collisions"].as_u64().unwrap();
            let on_b = slots(&b.addr);
            collisions >= 1 && slots(&a.addr).iter().any(|s| on_b.contains(s))
        },
    );
    assert!(
        slots(&a.addr).iter().all(|s| s % 1000 == 0),
        "epoch-aligned"
    );
    // The colliding build reused a number the other controller had used for its own build.
    let all: Vec<Value> = standin_builds(&a.addr)
        .into_iter()
        .chain(standin_builds(&b.addr))
        .collect();
    let clash = all.iter().find(|x| x["collided"] == true).unwrap();
    assert!(all
        .iter()
        .any(|x| x["collided"] == false && x["number"] == clash["number"]));
    assert_eq!(clash["causes"], serde_json::json!(["Started by timer"]));
}

#[test]
fn loading_takes_the_next_number_from_the_file_and_the_builds_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_timer_job(home, "jobs/J", None, "100ms");
    std::fs::write(home.join("jobs/J/nextBuildNumber"), "3\n").unwrap();
    write_build(home, "jobs/J", 1, Some("SUCCESS"), "x");
    write_build(home, "jobs/J", 7, Some("SUCCESS"), "x");
    write_job(home, "jobs/K", "k");
    std::fs::write(home.join("jobs/K/nextBuildNumber"), "20\n").unwrap();
    write_build(home, "jobs/K", 2, Some("SUCCESS"), "x");
    write_folder(home, "jobs/F", "f");
    write_job(home, "jobs/F/jobs/C", "c1");
    let s = start(home, "n1", FAST);
    assert_eq!(next_number(&s.addr, "J"), 8);
    assert_eq!(next_number(&s.addr, "K"), 20);
    assert_eq!(next_number(&s.addr, "F/C"), 1);

    // Another controller's builds appear: a per-item reload sees them ...
    write_build(home, "jobs/K", 30, Some("SUCCESS"), "x");
    assert_eq!(post(&s.addr, "/job/K/reload").status, 200);
    assert_eq!(next_number(&s.addr, "K"), 31);
    // ... and so does a full reload, also for a folder child whose config it keeps.
    write_build(home, "jobs/J", 9, Some("SUCCESS"), "x");
    write_build(home, "jobs/F/jobs/C", 4, Some("SUCCESS"), "x");
    write_job(home, "jobs/F/jobs/C", "c2");
    assert_eq!(post(&s.addr, "/reload").status, 302);
    wait_for("the reload", Duration::from_secs(10), || {
        state(&s.addr)["fullReloadsCompleted"] == 1
    });
    assert_eq!(next_number(&s.addr, "J"), 10);
    assert_eq!(next_number(&s.addr, "F/C"), 5);
    assert_eq!(state(&s.addr)["items"]["F/C"], "c1");

    assert_eq!(post(&s.addr, "/job/J/build").status, 201);
    wait_build_end(&s.addr, "J", 10);
    assert!(home.join("jobs/J/builds/10/build.xml").is_file());
    let v = get(
        &s.addr,
        "/job/J/api/json?tree=name,fullName,nextBuildNumber,inQueue,lastBuild[number,timestamp,building,result]",
    )
    .json();
    assert_eq!(v["nextBuildNumber"], 11);
    assert_eq!(v["inQueue"], false);
    assert_eq!(v["lastBuild"]["number"], 10);
    assert_eq!(v["lastBuild"]["building"], false);
    assert_eq!(v["lastBuild"]["result"], "SUCCESS");
    assert!(v["lastBuild"]["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "_class",
            "fullName",
            "inQueue",
            "lastBuild",
            "name",
            "nextBuildNumber"
        ]
    );
}

#[test]
fn quiet_down_queues_and_coalesces_fires_and_cancel_starts_them_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_timer_job(home, "jobs/T1", Some("400ms"), "2s");
    write_timer_job(home, "jobs/T2", Some("400ms"), "2s");
    let s = start(home, "n1", &["--start-quiet", "--executors", "2"]);
    assert_eq!(get(&s.addr, "/api/json").json()["quietingDown"], true);

    wait_for("three fires of each job", Duration::from_secs(10), || {
        let q = get(&s.addr, "/standin/queue").json();
        q.as_array().unwrap().len() == 2
            && q.as_array()
                .unwrap()
                .iter()
                .all(|it| it["fireSlots"].as_array().unwrap().len() >= 3)
    });
    let q = get(&s.addr, "/queue/api/json").json();
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "one item per job");
    let standin_q = get(&s.addr, "/standin/queue").json();
    for it in items {
        let name = it["task"]["name"].as_str().unwrap();
        assert_eq!(it["task"]["url"], format!("http://{}/job/{name}/", s.addr));
        assert_eq!(it["why"], "Jenkins is about to shut down");
        assert_eq!(it["blocked"], false);
        assert_eq!(it["buildable"], true);
        assert_eq!(
            it["actions"][0]["causes"][0]["shortDescription"],
            "Started by timer"
        );
        let mine = standin_q
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == it["id"])
            .unwrap();
        assert_eq!(
            it["inQueueSince"], mine["fireSlots"][0],
            "the item keeps its first fire's time"
        );
    }
    let st = brief(&s.addr);
    assert_eq!(st["buildsStarted"], 0, "quiet-down blocks the start");
    assert_eq!(st["queueLength"], 2);

    let queued = get(&s.addr, "/standin/queue").json();
    assert_eq!(post(&s.addr, "/cancelQuietDown").status, 302);
    wait_for("both builds to start", Duration::from_secs(5), || {
        brief(&s.addr)["buildsStarted"] == 2
    });
    assert!(
        standin_builds(&s.addr)
            .iter()
            .all(|b| b["endedMs"].is_null()),
        "both started at once, not one after the other"
    );
    let firsts: Vec<Value> = standin_builds(&s.addr)
        .into_iter()
        .filter(|b| b["number"] == 1)
        .collect();
    assert_eq!(firsts.len(), 2);
    for b in firsts {
        let item = queued
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["job"] == b["job"])
            .unwrap();
        let slots = b["fireSlots"].as_array().unwrap();
        for slot in item["fireSlots"].as_array().unwrap() {
            assert!(slots.contains(slot), "the build covers every queued fire");
        }
        let path = home.join(format!(
            "jobs/{}/builds/1/build.xml",
            b["job"].as_str().unwrap()
        ));
        let slot = format!("<slot>{}</slot>", slots[0]);
        wait_for("the build record", Duration::from_secs(5), || {
            std::fs::read_to_string(&path).is_ok_and(|xml| xml.contains(&slot))
        });
    }
}

#[test]
fn queue_api_cancel_item_and_coalesced_manual_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_timer_job(home, "jobs/J", None, "100ms");
    let token_file = home.join("token");
    std::fs::write(&token_file, "tok").unwrap();
    let s = start(
        home,
        "n1",
        &[
            "--user",
            "admin",
            "--token-file",
            token_file.to_str().unwrap(),
            "--start-quiet",
        ],
    );
    let auth = ("admin", "tok");
    assert_eq!(post(&s.addr, "/job/J/build").status, 403, "no crumb");
    let r1 = post_auth(&s.addr, "/job/J/build", auth);
    let r2 = post_auth(&s.addr, "/job/J/build", auth);
    assert_eq!((r1.status, r2.status), (201, 201));
    assert_eq!(r1.header("Location"), r2.header("Location"), "coalesced");
    let q = get(&s.addr, "/standin/queue").json();
    assert_eq!(
        q[0]["causes"][0]["shortDescription"],
        "Started by user admin"
    );
    assert_eq!(q[0]["causes"][0]["count"], 2);
    let id = q[0]["id"].as_u64().unwrap();
    // Jenkins' queue API lists a cause once per request folded in (CauseAction.getCauses).
    let listed = request(
        &s.addr,
        "GET",
        "/queue/api/json?tree=items[id,actions[causes[shortDescription]]]",
        Some(auth),
    )
    .json();
    assert_eq!(
        listed["items"][0]["actions"][0]["causes"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{listed}"
    );

    let item = request(
        &s.addr,
        "GET",
        &format!("/queue/item/{id}/api/json"),
        Some(auth),
    )
    .json();
    assert_eq!(item["why"], "Jenkins is about to shut down");
    let job = request(
        &s.addr,
        "GET",
        "/job/J/api/json?tree=inQueue,queueItem[id]",
        Some(auth),
    )
    .json();
    assert_eq!(job["inQueue"], true);
    assert_eq!(job["queueItem"]["id"], id);

    let cancel = format!("/queue/cancelItem?id={id}");
    assert_eq!(request(&s.addr, "GET", &cancel, Some(auth)).status, 405);
    assert_eq!(post(&s.addr, &cancel).status, 403);
    assert_eq!(post_auth(&s.addr, &cancel, auth).status, 204);
    assert_eq!(post_auth(&s.addr, &cancel, auth).status, 404);
    assert_eq!(
        post_auth(&s.addr, "/queue/cancelItem?id=999", auth).status,
        404
    );
    let left = request(
        &s.addr,
        "GET",
        &format!("/queue/item/{id}/api/json"),
        Some(auth),
    )
    .json();
    assert_eq!(left["cancelled"], true);
    let q = request(&s.addr, "GET", "/queue/api/json", Some(auth)).json();
    assert_eq!(q["items"], serde_json::json!([]));
    assert_eq!(brief(&s.addr)["buildsStarted"], 0);
}

#[test]
fn credentials_are_read_at_start_up_and_not_by_a_full_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let w = |name: &str, content: &str| std::fs::write(home.join(name), content).unwrap();
    w(
        "config.xml",
        "<hudson><numExecutors>2</numExecutors></hudson>",
    );
    w("credentials.xml", "<credentials>v1</credentials>");
    w("hudson.tasks.Mailer.xml", "<mailer>v1</mailer>");
    let mut s = start(home, "n1", FAST);
    let st = brief(&s.addr);
    let loaded = st["globalsLoaded"].clone();
    assert_eq!(
        loaded.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["config.xml", "credentials.xml", "hudson.tasks.Mailer.xml"]
    );
    assert_eq!(st["globalsStale"], serde_json::json!([]));

    w(
        "config.xml",
        "<hudson><numExecutors>4</numExecutors></hudson>",
    );
    w("credentials.xml", "<credentials>v2</credentials>");
    w("hudson.tasks.Mailer.xml", "<mailer>v2</mailer>");
    assert_eq!(
        brief(&s.addr)["globalsStale"],
        serde_json::json!(["config.xml", "credentials.xml", "hudson.tasks.Mailer.xml"])
    );
    assert_eq!(post(&s.addr, "/reload").status, 302);
    wait_for("the reload", Duration::from_secs(10), || {
        brief(&s.addr)["fullReloadsCompleted"] == 1
    });
    let st = brief(&s.addr);
    assert_eq!(
        st["globalsStale"],
        serde_json::json!(["credentials.xml", "hudson.tasks.Mailer.xml"]),
        "a reload re-reads config.xml only"
    );
    assert_eq!(
        st["globalsLoaded"]["credentials.xml"],
        loaded["credentials.xml"]
    );

    drop(s);
    s = start(home, "n1", FAST);
    let st = brief(&s.addr);
    assert_eq!(
        st["globalsStale"],
        serde_json::json!([]),
        "a restart reads them"
    );
    assert_ne!(
        st["globalsLoaded"]["credentials.xml"],
        loaded["credentials.xml"]
    );
}

#[test]
fn static_resources_answer_while_loading_and_the_loading_page_has_no_session() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(
        tmp.path(),
        "n1",
        &["--start-delay", "1s", "--reload-base", "300ms"],
    );
    let r = get(&s.addr, "/api/json");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("X-Jenkins"), None);
    assert_eq!(r.header("X-Jenkins-Session"), None);
    let st = brief(&s.addr);
    assert_eq!(
        (st["starting"].clone(), st["loading"].clone()),
        (true.into(), true.into())
    );
    for path in [
        "/robots.txt",
        "/favicon.ico",
        "/static/4f1a2b3c/css/layout-common.css",
    ] {
        let r = get(&s.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("X-Jenkins-Session"), None, "{path}");
    }
    wait_for("the start delay", Duration::from_secs(10), || {
        get(&s.addr, "/api/json").status == 200
    });
    let r = get(&s.addr, "/api/json");
    assert!(r.header("X-Jenkins-Session").is_some());
    assert_eq!(brief(&s.addr)["loading"], false);

    let r = post(&s.addr, "/reload");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("X-Jenkins-Session"), None, "not on redirects");
    let r = get(&s.addr, "/login");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("X-Jenkins"), None);
    assert_eq!(brief(&s.addr)["loading"], true);
    assert_eq!(get(&s.addr, "/robots.txt").status, 200);
}

#[test]
fn start_up_load_answers_503_on_an_open_port() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..30 {
        write_job(tmp.path(), &format!("jobs/j{i}"), "x");
    }
    let addr = free_addr();
    let s = spawn_on(tmp.path(), "n1", &addr, &["--reload-base", "800ms"]);
    wait_for("the port", Duration::from_secs(5), || {
        TcpStream::connect(&addr).is_ok()
    });
    assert_eq!(get(&s.addr, "/login").status, 503);
    assert_eq!(
        brief(&s.addr)["itemCount"],
        0,
        "items load during the window"
    );
    wait_for("the start-up load", Duration::from_secs(10), || {
        get(&s.addr, "/login").status == 200
    });
    assert_eq!(brief(&s.addr)["itemCount"], 30);
}

#[test]
fn token_requests_write_api_token_stats_and_anonymous_ones_do_not() {
    let token = tempfile::tempdir().unwrap();
    let token_file = token.path().join("token");
    std::fs::write(&token_file, "tok").unwrap();
    let sec = [
        "--user",
        "admin",
        "--token-file",
        token_file.to_str().unwrap(),
    ];

    // A home whose users/users.xml maps admin to admin_4242.
    let mapped = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(mapped.path().join("users/admin_4242")).unwrap();
    std::fs::write(mapped.path().join("users/admin_4242/config.xml"), "<user/>").unwrap();
    std::fs::write(
        mapped.path().join("users/users.xml"),
        "<hudson.model.UserIdMapper><version>1</version><idToDirectoryNameMap class=\"concurrent-hash-map\">\
         <entry><string>admin</string><string>admin_4242</string></entry></idToDirectoryNameMap></hudson.model.UserIdMapper>",
    )
    .unwrap();
    let stats = mapped.path().join("users/admin_4242/apiTokenStats.xml");
    let s = start(mapped.path(), "n1", &sec);
    assert_eq!(get(&s.addr, "/login").status, 200);
    assert_eq!(get(&s.addr, "/whoAmI/api/json").status, 200);
    assert_eq!(get(&s.addr, "/api/json").status, 403);
    assert_eq!(
        request(&s.addr, "GET", "/api/json", Some(("admin", "bad"))).status,
        401
    );
    assert!(
        !stats.exists(),
        "anonymous and failed requests write nothing"
    );
    assert_eq!(brief(&s.addr)["tokenRequests"], 0);
    assert_eq!(brief(&s.addr)["users"], 1);
    assert_eq!(
        request(&s.addr, "GET", "/whoAmI/api/json", Some(("admin", "tok"))).status,
        200
    );
    assert_eq!(
        request(&s.addr, "GET", "/api/json", Some(("admin", "tok"))).status,
        200
    );
    assert_eq!(brief(&s.addr)["tokenRequests"], 2);
    let xml = std::fs::read_to_string(&stats).unwrap();
    assert!(xml.contains("<useCounter>2</useCounter>"), "{xml}");

    // Without a mapping the directory is the user id; usageStatisticsEnabled=false writes nothing.
    let plain = tempfile::tempdir().unwrap();
    let s = start(plain.path(), "n2", &sec);
    request(&s.addr, "GET", "/api/json", Some(("admin", "tok")));
    assert!(plain.path().join("users/admin/apiTokenStats.xml").is_file());
    let off = tempfile::tempdir().unwrap();
    let s = start(
        off.path(),
        "n3",
        &[&sec[..], &["--no-token-stats"]].concat(),
    );
    request(&s.addr, "GET", "/api/json", Some(("admin", "tok")));
    assert_eq!(brief(&s.addr)["tokenRequests"], 1);
    assert!(!off.path().join("users").exists());
}

#[test]
fn default_api_json_loads_last_builds_and_a_tree_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_job(home, "jobs/Green", "g");
    write_build(home, "jobs/Green", 1, Some("SUCCESS"), "x");
    write_job(home, "jobs/Red", "r");
    write_build(home, "jobs/Red", 4, Some("FAILURE"), "x");
    write_job(home, "jobs/New", "n");
    write_folder(home, "jobs/F", "f");
    write_job(home, "jobs/F/jobs/C", "c");
    let s = start(home, "n1", FAST);

    let r = get(
        &s.addr,
        "/api/json?tree=mode,quietingDown,numExecutors,useCrumbs,useSecurity,jobs%5Bname,url%5D",
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "_class",
            "jobs",
            "mode",
            "numExecutors",
            "quietingDown",
            "useCrumbs",
            "useSecurity"
        ]
    );
    assert_eq!(
        v["jobs"][0],
        serde_json::json!({"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": "F",
            "url": format!("http://{}/job/F/", s.addr)})
    );
    let r = get(&s.addr, "/api/json?tree=mode,noSuchField");
    assert_eq!(
        r.json(),
        serde_json::json!({"_class": "hudson.model.Hudson", "mode": "NORMAL"})
    );
    assert_eq!(get(&s.addr, "/api/json?tree=jobs%5Bname").status, 400);
    assert_eq!(brief(&s.addr)["lastBuildLoads"], 0);

    let v = get(&s.addr, "/api/json").json();
    assert_eq!(brief(&s.addr)["lastBuildLoads"], 3, "one per top-level job");
    let color = |name: &str| {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .unwrap()["color"]
            .clone()
    };
    assert_eq!(color("Green"), "blue");
    assert_eq!(color("Red"), "red");
    assert_eq!(color("New"), "notbuilt");
    assert_eq!(color("F"), Value::Null);
}

#[test]
fn start_up_and_reloads_write_the_queue_and_resume_another_controllers_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    write_job(home, "jobs/J", "j");
    write_job(home, "jobs/R", "r");
    write_build(home, "jobs/R", 3, None, "other");
    std::fs::write(home.join("config.xml"), "<hudson/>").unwrap();
    let config_inode = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(home.join("config.xml")).unwrap().ino()
    };
    let log = || std::fs::read_to_string(home.join("jobs/R/builds/3/log")).unwrap();
    let queue_xml: PathBuf = home.join("queue.xml");
    let bak = home.join("queue.xml.bak");

    // A: resumes the running build of "other", queues J while quiet, and its queue saver writes it.
    let inode0 = config_inode();
    let a = start(home, "a", &["--start-quiet", "--queue-save-delay", "200ms"]);
    assert_ne!(config_inode(), inode0, "start-up rewrites config.xml");
    assert_eq!(
        std::fs::read_to_string(home.join("config.xml")).unwrap(),
        "<hudson/>"
    );
    assert_eq!(brief(&a.addr)["resumedForeignBuilds"], 1);
    assert!(
        log().contains("controller a resumed a build of other"),
        "{}",
        log()
    );
    assert_eq!(post(&a.addr, "/job/J/build").status, 201);
    wait_for("the queue saver", Duration::from_secs(5), || {
        queue_xml.exists()
    });
    let saved = std::fs::read_to_string(&queue_xml).unwrap();
    assert!(
        saved.contains("<task class=\"hudson.model.FreeStyleProject\">J</task>"),
        "{saved}"
    );
    drop(a);

    // B starts on the home: it adopts A's queue and moves queue.xml away, and resumes R #3 too.
    let b = start(home, "b", &["--start-quiet", "--queue-save-delay", "-1"]);
    assert!(!queue_xml.exists());
    assert_eq!(std::fs::read_to_string(&bak).unwrap(), saved);
    let q = get(&b.addr, "/standin/queue").json();
    assert_eq!(q[0]["job"], "J");
    assert_eq!(q[0]["id"], 1);
    assert_eq!(brief(&b.addr)["resumedForeignBuilds"], 1);
    assert!(log().contains("controller b resumed"), "{}", log());

    // A full reload saves the queue, loads it back and moves it to .bak again.
    std::fs::remove_file(&bak).unwrap();
    assert_eq!(post(&b.addr, "/reload").status, 302);
    wait_for("the reload", Duration::from_secs(10), || {
        brief(&b.addr)["fullReloadsCompleted"] == 1
    });
    assert!(!queue_xml.exists());
    assert!(std::fs::read_to_string(&bak).unwrap().contains(">J</task>"));
    assert_eq!(brief(&b.addr)["queueLength"], 1);
    assert_eq!(
        brief(&b.addr)["quietingDown"],
        true,
        "quiet-down survives a reload"
    );

    // A clean shutdown writes queue.xml.
    let status = Command::new("kill")
        .args(["-TERM", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("queue.xml on shutdown", Duration::from_secs(5), || {
        queue_xml.exists()
    });
    drop(b);

    // With every dev-only switch off, start-up and reloads leave the home alone.
    let inode1 = config_inode();
    let before = std::fs::read_to_string(&queue_xml).unwrap();
    let log_before = log();
    let c = start(
        home,
        "c",
        &[
            "--start-quiet",
            "--queue-save-delay",
            "-1",
            "--no-write",
            "startup-config,startup-queue,resume,reload-queue,shutdown-queue",
        ],
    );
    assert_eq!(config_inode(), inode1);
    assert_eq!(brief(&c.addr)["resumedForeignBuilds"], 0);
    assert_eq!(brief(&c.addr)["queueLength"], 0);
    assert_eq!(post(&c.addr, "/reload").status, 302);
    wait_for("the reload", Duration::from_secs(10), || {
        brief(&c.addr)["fullReloadsCompleted"] == 1
    });
    assert_eq!(std::fs::read_to_string(&queue_xml).unwrap(), before);
    assert_eq!(log(), log_before);
}
