//! Integration tests of the HAProxy runtime-API client against the real `haproxy` binary.
//!
//! Each test starts its own HAProxy in the foreground (`-db`) with a temporary config: an admin
//! unix socket, an admin TCP socket, an operator-level socket, an HTTP backend and a TCP agent
//! backend whose servers `track` the HTTP ones (the topology the sidecar drives). The tests fail,
//! rather than skip, when HAProxy is missing: set `HAPROXY=/path/to/haproxy` if it is not in
//! `/usr/sbin` or on `PATH`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jenkins_ha::core::Mono;
use jenkins_ha::io::clock;
use jenkins_ha::io::haproxy::{
    observe, parse_servers_state, reconcile, summarize, AdminState, Endpoint, HaproxyClient,
    HaproxyError, ServerState,
};

const TIMEOUT: Duration = Duration::from_secs(3);

/// One HAProxy process with its config in a temporary directory; killed on drop.
struct Haproxy {
    child: Option<Child>,
    dir: tempfile::TempDir,
    tcp_port: u16,
}

fn haproxy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HAPROXY") {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/sbin/haproxy");
    if debian.exists() {
        debian.to_path_buf()
    } else {
        PathBuf::from("haproxy")
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local address")
        .port()
}

impl Haproxy {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tcp_port = free_port();
        let d = dir.path().display();
        // The servers point at ports nothing listens on; checks only need to exist for `track`.
        let config = format!(
            "global\n\
             \x20   stats socket {d}/admin.sock level admin\n\
             \x20   stats socket {d}/operator.sock level operator\n\
             \x20   stats socket ipv4@127.0.0.1:{tcp_port} level admin\n\
             defaults\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 5s\n\
             \x20   timeout server 5s\n\
             backend jenkins_http\n\
             \x20   mode http\n\
             \x20   server jenkins01 127.0.0.1:{p1} check inter 1h\n\
             \x20   server jenkins02 127.0.0.1:{p2} check inter 1h\n\
             backend jenkins_agent\n\
             \x20   mode tcp\n\
             \x20   server jenkins01 127.0.0.1:{p3} track jenkins_http/jenkins01\n\
             \x20   server jenkins02 127.0.0.1:{p4} track jenkins_http/jenkins02\n",
            p1 = free_port(),
            p2 = free_port(),
            p3 = free_port(),
            p4 = free_port(),
        );
        std::fs::write(dir.path().join("haproxy.cfg"), config).expect("write haproxy.cfg");
        let mut haproxy = Haproxy {
            child: None,
            dir,
            tcp_port,
        };
        haproxy.spawn();
        haproxy
    }

    fn spawn(&mut self) {
        let binary = haproxy_binary();
        let log = std::fs::File::create(self.dir.path().join("haproxy.log")).expect("log file");
        let child = Command::new(&binary)
            .arg("-f")
            .arg(self.dir.path().join("haproxy.cfg"))
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): these tests need HAProxy; install it or set HAPROXY",
                    binary.display()
                )
            });
        self.child = Some(child);
        // Wait until both admin sockets accept connections.
        let started = std::time::Instant::now();
        loop {
            let unix_up = std::os::unix::net::UnixStream::connect(self.unix_path()).is_ok();
            let tcp_up = std::net::TcpStream::connect(("127.0.0.1", self.tcp_port)).is_ok();
            if unix_up && tcp_up {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("haproxy exited with {status}: {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "haproxy did not open its sockets within 10 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills HAProxy (its runtime state is lost with it) and starts it again.
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    fn unix_path(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    fn unix(&self) -> HaproxyClient {
        HaproxyClient::new(Endpoint::Unix(self.unix_path()), TIMEOUT)
    }

    fn tcp(&self) -> HaproxyClient {
        let endpoint = format!("tcp://127.0.0.1:{}", self.tcp_port)
            .parse()
            .unwrap();
        HaproxyClient::new(endpoint, TIMEOUT)
    }

    fn operator(&self) -> HaproxyClient {
        HaproxyClient::new(
            Endpoint::Unix(self.dir.path().join("operator.sock")),
            TIMEOUT,
        )
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn backends() -> Vec<String> {
    vec!["jenkins_http".to_string(), "jenkins_agent".to_string()]
}

fn find<'a>(states: &'a [ServerState], backend: &str, server: &str) -> &'a ServerState {
    states
        .iter()
        .find(|s| s.backend == backend && s.server == server)
        .unwrap_or_else(|| panic!("no {backend}/{server} in {states:?}"))
}

fn far_future() -> Mono {
    clock::now() + Duration::from_secs(3600)
}

/// Asserts that jenkins01 is ready and jenkins02 in maint in both backends.
fn assert_converged(states: &[ServerState]) {
    for backend in backends() {
        assert!(find(states, &backend, "jenkins01").is_ready(), "{states:?}");
        assert!(find(states, &backend, "jenkins02").is_maint(), "{states:?}");
    }
}

#[tokio::test]
async fn show_servers_state_parses_the_real_output_by_header() {
    let haproxy = Haproxy::start();
    let states = haproxy.unix().show_servers_state(None).await.unwrap();
    assert_eq!(states.len(), 4, "{states:?}");
    for backend in backends() {
        for server in ["jenkins01", "jenkins02"] {
            let s = find(&states, &backend, server);
            assert!(s.is_ready(), "{s:?}");
            assert!(s.op_state <= 3, "{s:?}");
        }
    }
    let only = haproxy
        .tcp()
        .show_servers_state(Some("jenkins_agent"))
        .await
        .unwrap();
    assert_eq!(only.len(), 2);
    assert!(only.iter().all(|s| s.backend == "jenkins_agent"));

    // The pure parser accepts the raw reply of the generic command path too. The
    // operational state is left out of the comparison: HAProxy's first health check
    // (against a port nothing listens on) may land between the two reads and mark a
    // server down, which is HAProxy's business, not the parser's.
    let raw = haproxy.unix().command("show servers state").await.unwrap();
    let admin_view = |states: &[ServerState]| {
        states
            .iter()
            .map(|s| (s.backend.clone(), s.server.clone(), s.admin_state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        admin_view(&parse_servers_state(&raw).unwrap()),
        admin_view(&states)
    );
}

#[tokio::test]
async fn set_and_read_back_over_unix_and_tcp() {
    let haproxy = Haproxy::start();
    for (client, server) in [(haproxy.unix(), "jenkins01"), (haproxy.tcp(), "jenkins02")] {
        for (state, check) in [
            (
                AdminState::Maint,
                ServerState::is_maint as fn(&ServerState) -> bool,
            ),
            (AdminState::Drain, ServerState::is_drain),
            (AdminState::Ready, ServerState::is_ready),
        ] {
            client
                .set_server_state("jenkins_http", server, state)
                .await
                .unwrap();
            // Read back through the other socket: both see the same process.
            let other = if server == "jenkins01" {
                haproxy.tcp()
            } else {
                haproxy.unix()
            };
            let states = other.show_servers_state(None).await.unwrap();
            assert!(
                check(find(&states, "jenkins_http", server)),
                "{state}: {states:?}"
            );
        }
    }
}

#[tokio::test]
async fn tracking_servers_inherit_maint_and_accept_their_own_state() {
    let haproxy = Haproxy::start();
    let client = haproxy.unix();
    client
        .set_server_state("jenkins_http", "jenkins02", AdminState::Maint)
        .await
        .unwrap();
    let states = client.show_servers_state(None).await.unwrap();
    // Inherited maint through `track`: bit 0x02.
    assert_eq!(
        find(&states, "jenkins_agent", "jenkins02").admin_state,
        0x02
    );
    // `ready` on the tracking server cannot clear the inherited bit.
    client
        .set_server_state("jenkins_agent", "jenkins02", AdminState::Ready)
        .await
        .unwrap();
    let states = client.show_servers_state(None).await.unwrap();
    assert!(find(&states, "jenkins_agent", "jenkins02").is_maint());
    // Its own maint adds 0x01 and survives the tracked server becoming ready.
    client
        .set_server_state("jenkins_agent", "jenkins02", AdminState::Maint)
        .await
        .unwrap();
    client
        .set_server_state("jenkins_http", "jenkins02", AdminState::Ready)
        .await
        .unwrap();
    let states = client.show_servers_state(None).await.unwrap();
    assert_eq!(
        find(&states, "jenkins_agent", "jenkins02").admin_state,
        0x01
    );
}

#[tokio::test]
async fn reconcile_converges_then_makes_no_writes() {
    let haproxy = Haproxy::start();
    // Start from the opposite of the target, with drift in both backends.
    let unix = haproxy.unix();
    unix.set_server_state("jenkins_http", "jenkins01", AdminState::Maint)
        .await
        .unwrap();
    unix.set_server_state("jenkins_agent", "jenkins01", AdminState::Drain)
        .await
        .unwrap();
    let clients = [haproxy.unix(), haproxy.tcp()];

    let reports = reconcile(
        &clients,
        &backends(),
        "jenkins01",
        "jenkins02",
        far_future(),
    )
    .await;
    assert_eq!(reports.len(), 2);
    let total: usize = reports
        .iter()
        .map(|r| r.outcome.as_ref().expect("reconcile failed").writes)
        .sum();
    // Both sockets reach the same process and run at once: together they write at least
    // http/jenkins01 ready, agent/jenkins01 ready, http/jenkins02 maint, agent/jenkins02 maint.
    assert!(total >= 4, "{reports:?}");
    for report in &reports {
        assert_converged(&report.outcome.as_ref().unwrap().states);
    }
    assert_eq!(summarize(&reports, &backends(), "jenkins01"), "ready");
    assert_eq!(summarize(&reports, &backends(), "jenkins02"), "maint");

    let again = reconcile(
        &clients,
        &backends(),
        "jenkins01",
        "jenkins02",
        far_future(),
    )
    .await;
    for report in &again {
        let outcome = report.outcome.as_ref().unwrap();
        assert_eq!(outcome.writes, 0, "{report:?}");
        assert_converged(&outcome.states);
    }

    let observed = observe(&clients, &backends()).await;
    assert_eq!(
        observed[0].endpoint,
        haproxy.unix_path().display().to_string()
    );
    assert_eq!(
        observed[1].endpoint,
        format!("tcp://127.0.0.1:{}", haproxy.tcp_port)
    );
    for report in &observed {
        let outcome = report.outcome.as_ref().unwrap();
        assert_eq!(outcome.writes, 0);
        assert_eq!(outcome.states.len(), 4);
    }
}

#[tokio::test]
async fn a_passed_deadline_sends_no_write() {
    let haproxy = Haproxy::start();
    let clients = [haproxy.unix()];
    let before = haproxy.unix().show_servers_state(None).await.unwrap();
    let reports = reconcile(
        &clients,
        &backends(),
        "jenkins01",
        "jenkins02",
        clock::now().saturating_sub(Duration::from_millis(1)),
    )
    .await;
    match &reports[0].outcome {
        Err(HaproxyError::DeadlinePassed { skipped }) => assert_eq!(*skipped, 2),
        other => panic!("expected DeadlinePassed, got {other:?}"),
    }
    let after = haproxy.unix().show_servers_state(None).await.unwrap();
    // Health checks may move op_state meanwhile; what a write would change is the admin state.
    let admin = |states: &[jenkins_ha::io::haproxy::ServerState]| {
        states
            .iter()
            .map(|s| (s.backend.clone(), s.server.clone(), s.admin_state))
            .collect::<Vec<_>>()
    };
    assert_eq!(admin(&before), admin(&after));
    // Nothing to write is no error, even past the deadline.
    let observed = observe(&clients, &backends()).await;
    assert!(observed[0].outcome.is_ok());
}

#[tokio::test]
async fn unknown_server_and_backend_give_clear_errors() {
    let haproxy = Haproxy::start();
    let client = haproxy.unix();
    let e = client
        .set_server_state("jenkins_http", "jenkins03", AdminState::Maint)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        HaproxyError::NoSuchServer {
            backend: "jenkins_http".into(),
            server: "jenkins03".into()
        }
    );
    assert!(e.to_string().contains("jenkins03"), "{e}");
    let e = client
        .set_server_state("nope", "jenkins01", AdminState::Maint)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        HaproxyError::NoSuchBackend {
            backend: "nope".into()
        }
    );
    let e = client.show_servers_state(Some("nope")).await.unwrap_err();
    assert!(matches!(e, HaproxyError::NoSuchBackend { .. }), "{e:?}");
    let e = client.command("no such command").await.unwrap_err();
    assert!(matches!(e, HaproxyError::Rejected { .. }), "{e:?}");
    let e = client
        .set_server_state("jenkins_http", "a;b", AdminState::Maint)
        .await
        .unwrap_err();
    assert!(matches!(e, HaproxyError::InvalidName { .. }), "{e:?}");

    // In reconcile: reported per socket, the possible writes still done.
    let clients = [client.clone()];
    let mut with_missing = backends();
    with_missing.push("jenkins_missing".into());
    let reports = reconcile(
        &clients,
        &with_missing,
        "jenkins01",
        "jenkins03",
        far_future(),
    )
    .await;
    let e = reports[0].outcome.as_ref().unwrap_err();
    assert!(e.to_string().contains("jenkins03"), "{e}");
    let states = client.show_servers_state(None).await.unwrap();
    assert!(find(&states, "jenkins_http", "jenkins01").is_ready());
    let reports = reconcile(
        &clients,
        &with_missing,
        "jenkins01",
        "jenkins02",
        far_future(),
    )
    .await;
    let e = reports[0].outcome.as_ref().unwrap_err();
    assert!(e.to_string().contains("jenkins_missing"), "{e}");
    let reports = observe(&clients, &with_missing).await;
    assert!(reports[0].outcome.is_err());
}

#[tokio::test]
async fn an_operator_level_socket_says_it_is_not_admin() {
    let haproxy = Haproxy::start();
    let operator = haproxy.operator();
    // Reading works at operator level...
    operator.show_servers_state(None).await.unwrap();
    // ...writing does not.
    let e = operator
        .set_server_state("jenkins_http", "jenkins01", AdminState::Maint)
        .await
        .unwrap_err();
    assert_eq!(e, HaproxyError::PermissionDenied);
    assert!(e.to_string().contains("level admin"), "{e}");
    let reports = reconcile(
        &[operator],
        &backends(),
        "jenkins02",
        "jenkins01",
        far_future(),
    )
    .await;
    assert_eq!(
        reports[0].outcome.as_ref().unwrap_err(),
        &HaproxyError::PermissionDenied
    );
}

#[tokio::test]
async fn an_absent_socket_gives_a_connect_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let client = HaproxyClient::new(Endpoint::Unix(path.clone()), TIMEOUT);
    let e = client.show_servers_state(None).await.unwrap_err();
    assert!(matches!(e, HaproxyError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    let port = free_port();
    let client = HaproxyClient::new(format!("tcp://127.0.0.1:{port}").parse().unwrap(), TIMEOUT);
    let reports = reconcile(&[client], &backends(), "a", "b", far_future()).await;
    let e = reports[0].outcome.as_ref().unwrap_err();
    assert!(
        e.to_string().contains(&format!("tcp://127.0.0.1:{port}")),
        "{e}"
    );
}

#[tokio::test]
async fn a_silent_socket_times_out() {
    // Accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = HaproxyClient::new(
        format!("tcp://127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    );
    let started = std::time::Instant::now();
    let e = client.show_servers_state(None).await.unwrap_err();
    assert!(matches!(e, HaproxyError::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    hold.abort();
}

#[tokio::test]
async fn a_restart_loses_runtime_state_and_reconcile_restores_it() {
    let mut haproxy = Haproxy::start();
    let clients = [haproxy.unix(), haproxy.tcp()];
    let reports = reconcile(
        &clients,
        &backends(),
        "jenkins02",
        "jenkins01",
        far_future(),
    )
    .await;
    assert!(reports.iter().all(|r| r.outcome.is_ok()), "{reports:?}");

    haproxy.restart();
    let states = haproxy.unix().show_servers_state(None).await.unwrap();
    assert!(
        find(&states, "jenkins_http", "jenkins01").is_ready(),
        "runtime state survived a restart? {states:?}"
    );

    let reports = reconcile(
        &clients,
        &backends(),
        "jenkins02",
        "jenkins01",
        far_future(),
    )
    .await;
    let writes: usize = reports
        .iter()
        .map(|r| r.outcome.as_ref().expect("reconcile failed").writes)
        .sum();
    assert!(writes >= 2, "{reports:?}");
    assert_eq!(summarize(&reports, &backends(), "jenkins02"), "ready");
    assert_eq!(summarize(&reports, &backends(), "jenkins01"), "maint");
}
