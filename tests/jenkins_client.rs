//! Integration tests of the Jenkins client against the project's Jenkins stand-in
//! (`jenkins-standin`, crate `lab/`): health probes, 403 vs 401, quiet-down, full reloads and
//! waiting for them, failed reloads, per-item reloads, the restart-detecting session and the queue.
//!
//! The stand-in is built once per test run with `cargo build -p jenkins-ha-lab` into the same
//! target directory as this test. Set `STANDIN_LOG=1` to see the stand-ins' stderr.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use jenkins_ha::io::http_client::HttpClient;
use jenkins_ha::io::jenkins::{Health, JenkinsClient, JenkinsError};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(5);
const USER: &str = "ha-bot";
const TOKEN: &str = "11aa22bb33cc44dd55ee66ff77889900aa";
/// Short reload windows: 100 ms + 10 ms per item on disk.
const FAST: &[&str] = &["--reload-base", "100ms", "--reload-per-item", "10ms"];

/// Builds the stand-in once and returns its path: `<target>/<profile>/jenkins-standin`, next to
/// this test binary's `<target>/<profile>/deps/`.
fn standin_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target>/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let mut build = Command::new(env!("CARGO"));
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-p", "jenkins-ha-lab", "--bin", "jenkins-standin"])
            .arg("--target-dir")
            .arg(&target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build for jenkins-standin");
        assert!(status.success(), "building jenkins-standin failed");
        let binary = profile_dir.join("jenkins-standin");
        assert!(
            binary.exists(),
            "{} missing after the build",
            binary.display()
        );
        binary
    })
}

/// A running stand-in, killed on drop.
struct Standin {
    child: Option<Child>,
    home: PathBuf,
    name: String,
    addr: String,
    extra: Vec<String>,
}

impl Standin {
    fn start(home: &Path, name: &str, extra: &[&str]) -> Self {
        let mut standin = Standin {
            child: None,
            home: home.to_path_buf(),
            name: name.to_string(),
            addr: "127.0.0.1:0".to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        standin.spawn();
        standin
    }

    fn spawn(&mut self) {
        let stderr = if std::env::var_os("STANDIN_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(standin_binary())
            .args(["--listen", &self.addr, "--home"])
            .arg(&self.home)
            .args(["--name", &self.name])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn jenkins-standin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the stand-in's first line");
        let prefix = format!("jenkins-standin {} listening on ", self.name);
        self.addr = line
            .trim()
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        self.child = Some(child);
    }

    /// Kills the stand-in and starts it again on the same address: a Jenkins restart.
    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self, user: Option<&str>, token: Option<&str>) -> JenkinsClient {
        JenkinsClient::new(
            &self.url(),
            user.map(str::to_string),
            token.map(str::to_string),
            TIMEOUT,
        )
        .expect("client")
    }

    fn anonymous(&self) -> JenkinsClient {
        self.client(None, None)
    }

    fn authenticated(&self) -> JenkinsClient {
        self.client(Some(USER), Some(TOKEN))
    }

    async fn state(&self) -> Value {
        let response = HttpClient::new()
            .send(
                Method::GET,
                &format!("{}/standin/state", self.url()),
                &[],
                Bytes::new(),
                TIMEOUT,
            )
            .await
            .expect("GET /standin/state");
        assert_eq!(response.status, 200);
        serde_json::from_slice(&response.body).expect("state JSON")
    }

    async fn control(&self, path_and_query: &str) {
        let response = HttpClient::new()
            .send(
                Method::POST,
                &format!("{}/standin/{path_and_query}", self.url()),
                &[],
                Bytes::new(),
                TIMEOUT,
            )
            .await
            .expect("POST to the control API");
        assert_eq!(response.status, 200, "POST /standin/{path_and_query}");
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A JENKINS_HOME with a token file for the stand-in's security.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("jobs")).expect("jobs dir");
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).expect("token file");
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn secured(&self) -> Vec<String> {
        vec![
            "--user".into(),
            USER.into(),
            "--token-file".into(),
            self.path().join("token").display().to_string(),
        ]
    }

    /// `jobs/<a>/jobs/<b>/config.xml` for the full name `a/b`.
    fn write_item(&self, full_name: &str, folder: bool, description: &str) {
        let mut dir = self.path().to_path_buf();
        for segment in full_name.split('/') {
            dir = dir.join("jobs").join(segment);
        }
        std::fs::create_dir_all(&dir).expect("item dir");
        let root = if folder {
            "com.cloudbees.hudson.plugins.folder.Folder"
        } else {
            "project"
        };
        std::fs::write(
            dir.join("config.xml"),
            format!(
                "<?xml version='1.1' encoding='UTF-8'?>\n<{root}>\n  \
                 <description>{description}</description>\n</{root}>\n"
            ),
        )
        .expect("config.xml");
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn probe_tells_up_getting_ready_and_down() {
    let home = Home::new();
    let standin = Standin::start(home.path(), "j1", &["--start-delay", "1500ms"]);
    let client = standin.anonymous();
    let probe = client.probe().await;
    assert_eq!(probe.health, Health::GettingReady);
    let session = standin.state().await["session"]
        .as_str()
        .expect("session")
        .to_string();
    // Jenkins' "getting ready" page carries no X-Jenkins-Session (jenkins.md): a 503 never tells
    // a restart. The session shows once Jenkins is up.
    assert_eq!(probe.session, None);

    let waited = client
        .wait_ready(Duration::from_secs(10), Duration::from_millis(50))
        .await
        .expect("ready after the start delay");
    assert!(waited <= Duration::from_millis(1600), "{waited:?}");
    let probe = client.probe().await;
    assert_eq!(probe.health, Health::Up);
    assert_eq!(probe.session.as_deref(), Some(session.as_str()));

    // Nothing listening: down, and the reason names the URL.
    let port = free_port();
    let nobody = JenkinsClient::new(&format!("http://127.0.0.1:{port}"), None, None, TIMEOUT)
        .expect("client");
    match nobody.probe().await.health {
        Health::Down(reason) => assert!(reason.contains(&port.to_string()), "{reason}"),
        other => panic!("expected Down, got {other:?}"),
    }

    // A Jenkins slower than the timeout: down too.
    standin.control("delay?ms=1000").await;
    let impatient =
        JenkinsClient::new(&standin.url(), None, None, Duration::from_millis(200)).expect("client");
    match impatient.probe().await.health {
        Health::Down(reason) => assert!(reason.contains("200ms"), "{reason}"),
        other => panic!("expected Down, got {other:?}"),
    }
}

#[tokio::test]
async fn forbidden_and_unauthorized_are_told_apart() {
    let home = Home::new();
    let standin = Standin::start(home.path(), "j1", &args(&home.secured()));

    // Anonymous: /login is open, everything else 403 without a challenge.
    let anonymous = standin.anonymous();
    assert_eq!(anonymous.probe().await.health, Health::Up);
    let e = anonymous.info().await.unwrap_err();
    assert!(matches!(e, JenkinsError::Forbidden { .. }), "{e:?}");
    assert!(e.to_string().contains("jenkins.api_token_file"), "{e}");
    // An anonymous POST meets the crumb filter: still "no credentials".
    let e = anonymous.quiet_down().await.unwrap_err();
    assert!(matches!(e, JenkinsError::Forbidden { .. }), "{e:?}");

    // A wrong token: 401 everywhere, /login included.
    let wrong = standin.client(Some(USER), Some("not-the-token"));
    let e = wrong.info().await.unwrap_err();
    assert!(matches!(e, JenkinsError::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("not-the-token"), "{e}");
    assert!(!format!("{e:?}").contains("not-the-token"), "{e:?}");
    match wrong.probe().await.health {
        Health::Down(reason) => {
            assert!(reason.contains("401"), "{reason}");
            assert!(!reason.contains("not-the-token"), "{reason}");
        }
        other => panic!("expected Down, got {other:?}"),
    }

    // The right token: preemptive basic auth, and no crumb needed for POSTs.
    let client = standin.authenticated();
    let info = client.info().await.expect("info with the token");
    assert!(!info.quieting_down);
    client.quiet_down().await.expect("quietDown with the token");
    assert!(!format!("{client:?}").contains(TOKEN));
}

#[tokio::test]
async fn quiet_down_and_cancel_are_visible() {
    let home = Home::new();
    home.write_item("alpha", false, "a");
    home.write_item("beta", false, "b");
    let standin = Standin::start(home.path(), "j1", &args(&home.secured()));
    let client = standin.authenticated();

    client.quiet_down().await.expect("quietDown");
    let state = standin.state().await;
    assert_eq!(state["quietingDown"], true);
    assert_eq!(state["quietDownCalls"], 1);
    let info = client.info().await.expect("info");
    assert!(info.quieting_down);
    assert_eq!(info.jobs, ["alpha", "beta"]);
    assert_eq!(info.mode.as_deref(), Some("NORMAL"));
    assert_eq!(info.num_executors, 2);
    assert_eq!(info.session, state["session"].as_str().map(str::to_string));

    client.cancel_quiet_down().await.expect("cancelQuietDown");
    let state = standin.state().await;
    assert_eq!(state["quietingDown"], false);
    assert_eq!(state["cancelQuietDownCalls"], 1);
    assert!(!client.info().await.expect("info").quieting_down);

    standin.control("busy?n=1").await;
    assert_eq!(client.busy_executors().await.expect("busy executors"), 1);
}

#[tokio::test]
async fn reload_then_wait_until_ready() {
    let home = Home::new();
    home.write_item("alpha", false, "a");
    let standin = Standin::start(home.path(), "j1", FAST);
    let client = standin.anonymous();
    home.write_item("beta", false, "b");

    client.reload().await.expect("reload");
    // 503 from the moment the 302 came back.
    assert_eq!(client.probe().await.health, Health::GettingReady);
    let e = client.info().await.unwrap_err();
    assert!(matches!(e, JenkinsError::GettingReady { .. }), "{e:?}");

    let waited = client
        .wait_ready(Duration::from_secs(10), Duration::from_millis(20))
        .await
        .expect("the reload ends");
    // 100 ms base + 10 ms per item on disk.
    assert!(waited >= Duration::from_millis(60), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let state = standin.state().await;
    assert_eq!(state["fullReloadsCompleted"], 1);
    assert_eq!(client.info().await.expect("info").jobs, ["alpha", "beta"]);
}

#[tokio::test]
async fn a_failed_reload_is_reported_after_the_bound() {
    let home = Home::new();
    let standin = Standin::start(home.path(), "j1", FAST);
    let client = standin.anonymous();
    standin.control("fail-reloads?on=true").await;

    client.reload().await.expect("the reload starts");
    let bound = Duration::from_millis(800);
    let e = client
        .wait_ready(bound, Duration::from_millis(50))
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("restarted") && !message.contains('\n'),
        "{message}"
    );
    match e {
        JenkinsError::ReloadFailed { waited } => {
            assert!(waited >= bound, "{waited:?}");
            assert!(waited < bound + Duration::from_secs(2), "{waited:?}");
        }
        other => panic!("expected ReloadFailed, got {other:?}"),
    }
    assert_eq!(standin.state().await["reloadFailed"], true);
    // It never ends on its own.
    assert_eq!(client.probe().await.health, Health::GettingReady);
}

#[tokio::test]
async fn item_reloads_and_items_not_loaded() {
    let home = Home::new();
    home.write_item("alpha", false, "v1");
    home.write_item("team folder", true, "");
    home.write_item("team folder/build é", false, "v1");
    let standin = Standin::start(home.path(), "j1", &args(&home.secured()));
    let client = standin.authenticated();

    home.write_item("alpha", false, "v2");
    home.write_item("team folder/build é", false, "v2");
    client.reload_item("alpha").await.expect("reload alpha");
    client
        .reload_item("team folder/build é")
        .await
        .expect("reload the nested job");
    let state = standin.state().await;
    assert_eq!(state["itemReloads"], 2);
    assert_eq!(state["items"]["alpha"], "v2");
    assert_eq!(state["items"]["team folder/build é"], "v2");

    // On disk since the start, but not in memory: only a full reload can load it.
    home.write_item("gamma", false, "new");
    let e = client.reload_item("gamma").await.unwrap_err();
    match &e {
        JenkinsError::ItemNotLoaded { full_name } => assert_eq!(full_name, "gamma"),
        other => panic!("expected ItemNotLoaded, got {other:?}"),
    }
    assert!(e.to_string().contains("full reload"), "{e}");
    let e = client.reload_item("a//b").await.unwrap_err();
    assert!(matches!(e, JenkinsError::BadItemName { .. }), "{e:?}");
    // Without credentials: forbidden, not "not loaded".
    let e = standin.anonymous().reload_item("alpha").await.unwrap_err();
    assert!(matches!(e, JenkinsError::Forbidden { .. }), "{e:?}");
}

#[tokio::test]
async fn the_session_changes_on_restart() {
    let home = Home::new();
    let mut standin = Standin::start(home.path(), "j1", &[]);
    let client = standin.anonymous();
    let before = client.probe().await;
    assert_eq!(before.health, Health::Up);
    let before = before.session.expect("a session header");
    client.quiet_down().await.expect("quietDown");

    standin.restart();
    let after = client.probe().await;
    assert_eq!(after.health, Health::Up);
    let after = after.session.expect("a session header");
    assert_ne!(before, after);
    // Quiet-down lived in memory only: the sidecar re-asserts it when the session changes.
    assert!(!client.info().await.expect("info").quieting_down);
    client
        .quiet_down()
        .await
        .expect("quietDown after the restart");
    assert_eq!(standin.state().await["quietingDown"], true);
}

#[tokio::test]
async fn the_queue_counts_folded_requests_and_cancels_by_id() {
    let home = Home::new();
    home.write_item("team folder", true, "");
    home.write_item("team folder/build é", false, "v1");
    let mut extra = home.secured();
    extra.push("--start-quiet".into());
    let standin = Standin::start(home.path(), "j1", &args(&extra));
    let client = standin.authenticated();
    // Two build requests on a quiet Jenkins: one item, two requests.
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"))
    );
    let auth = [(
        hyper::header::AUTHORIZATION,
        hyper::header::HeaderValue::from_str(&basic).expect("header"),
    )];
    for _ in 0..2 {
        let response = HttpClient::new()
            .send(
                Method::POST,
                &format!(
                    "{}/job/team%20folder/job/build%20%C3%A9/build",
                    standin.url()
                ),
                &auth,
                Bytes::new(),
                TIMEOUT,
            )
            .await
            .expect("queue a build");
        assert_eq!(response.status, 201);
    }
    let queue = client.queue().await.expect("queue");
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0].job.as_deref(), Some("team folder/build é"));
    assert_eq!(queue[0].requests, 2);
    assert!(queue[0].in_queue_since > 0);
    assert!(client.cancel_queue_item(queue[0].id).await.expect("cancel"));
    assert!(
        !client
            .cancel_queue_item(queue[0].id)
            .await
            .expect("cancel again"),
        "an unknown id is not an error"
    );
    assert!(client.queue().await.expect("queue").is_empty());
}

#[tokio::test]
async fn next_build_numbers_come_in_one_request_through_folders() {
    let home = Home::new();
    home.write_item("alpha", false, "v1");
    home.write_item("team folder", true, "");
    home.write_item("team folder/inner", true, "");
    home.write_item("team folder/inner/build é", false, "v1");
    std::fs::write(home.path().join("jobs/alpha/nextBuildNumber"), "12\n").unwrap();
    std::fs::write(
        home.path()
            .join("jobs/team folder/jobs/inner/jobs/build é/nextBuildNumber"),
        "7\n",
    )
    .unwrap();
    let standin = Standin::start(home.path(), "j1", &args(&home.secured()));
    let client = standin.authenticated();
    let numbers = client.next_build_numbers(2).await.expect("numbers");
    assert_eq!(numbers.get("alpha"), Some(&12));
    assert_eq!(numbers.get("team folder/inner/build é"), Some(&7));
    assert_eq!(numbers.len(), 2, "folders have none: {numbers:?}");
    // Not deep enough: the nested job is not listed.
    let shallow = client.next_build_numbers(0).await.expect("numbers");
    assert_eq!(shallow.len(), 1, "{shallow:?}");
    let state = standin.state().await;
    assert_eq!(state["lastBuildLoads"], 0, "no build was loaded to answer");
}
