//! Operating the cluster as ops would at 3 a.m.: planned failover under load, refusals, forced
//! takeover, pause/resume, history, API auth, metrics and the systemd protocol.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{Cluster, Spec, NAMES};

async fn started(spec: Spec) -> (Cluster, usize) {
    Cluster::start_settled(spec).await
}

/// A bounded load through HAProxy: requests back to back until stopped (at most `max`).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(port: u16, max: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let http = jenkins_ha::io::http_client::HttpClient::new();
            let url = format!("http://127.0.0.1:{port}/login");
            let mut failures = Vec::new();
            let mut n = 0;
            while !s.load(Ordering::Relaxed) && n < max {
                n += 1;
                match http
                    .send(
                        hyper::Method::GET,
                        &url,
                        &[],
                        bytes::Bytes::new(),
                        Duration::from_secs(5),
                    )
                    .await
                {
                    Ok(r) if r.status.as_u16() == 200 => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        failures.push(format!(
                            "HTTP {} from {:?}",
                            r.status,
                            r.header("X-Standin-Node")
                        ));
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        failures.push(e.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            failures
        });
        Load {
            stop,
            ok,
            failed,
            task,
        }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_failover_under_load_loses_no_request_both_ways_five_times() {
    let (c, mut active) = started(Spec::default()).await;
    let load = Load::start(c.haproxies[0].front_port, 200_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..5 {
        let target = 1 - active;
        // Run it from either node: the CLI talks to its local sidecar, which forwards as needed.
        let from = round % 2;
        let started = Instant::now();
        let (code, out, err) = c.cli(from, &["failover"]);
        assert_eq!(code, Some(0), "round {round}: {out}{err}\n{}", c.logs());
        assert!(
            out.contains(&format!(
                "{} is active and every HAProxy routes to it",
                NAMES[target]
            )),
            "{out}"
        );
        eprintln!(
            "round {round}: switchover to {} took {:?}",
            NAMES[target],
            started.elapsed()
        );
        assert_eq!(c.active_code(target).await, Some(200));
        assert_eq!(c.active_code(active).await, Some(503));
        assert!(c.wait_routed(0, target, Duration::from_secs(1)).await);
        let quiet = c
            .wait(Duration::from_secs(3), || async {
                (c.quieting_down(active).await == Some(true)).then_some(())
            })
            .await;
        assert!(
            quiet.is_some(),
            "round {round}: the old active's Jenkins is not quiet"
        );
        assert_eq!(c.quieting_down(target).await, Some(false));
        active = target;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (ok, failed, failures) = load.finish().await;
    eprintln!("load: {ok} ok, {failed} failed");
    assert!(ok > 500, "the load was too thin to mean anything: {ok}");
    assert_eq!(
        failed, 0,
        "failed requests during planned switchovers: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_an_unhealthy_target_is_refused_and_nothing_changes() {
    let (mut c, active) = started(Spec::default()).await;
    let standby = 1 - active;
    c.kill_jenkins(standby);
    let down = c
        .wait(Duration::from_secs(5), || async {
            let s = c.status(active).await?;
            (!s.nodes[1].jenkins_healthy && s.nodes[1].jenkins == "down").then_some(())
        })
        .await;
    assert!(down.is_some());
    let before = c.status(active).await.unwrap();
    for from in [active, standby] {
        let (code, out, err) = c.cli(from, &["failover"]);
        assert_ne!(code, Some(0), "{out}{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("refused") && err.contains("not healthy"),
            "{err}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = c.status(active).await.unwrap();
    assert_eq!(after.active, before.active);
    assert_eq!(after.lease.term, before.lease.term);
    assert_eq!(c.active_code(active).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_failover_while_the_active_is_frozen_waits_out_the_lease() {
    let spec = Spec::default();
    let (lease_timeout, interval) = (spec.lease_timeout, spec.interval);
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    // Paused, so that only the operator's force can move it.
    let (code, out, err) = c.cli(standby, &["pause"]);
    assert_eq!(code, Some(0), "{out}{err}");
    c.sidecar(active).signal(nix::sys::signal::Signal::SIGSTOP);
    tokio::time::sleep(interval * 4).await;
    let (code, _, err) = c.cli(standby, &["failover"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("unreachable") && err.contains("--force"),
        "{err}"
    );
    let stopped = Instant::now();
    let mut split = cluster::SplitBrain::default();
    let sampler = async {
        while stopped.elapsed() < lease_timeout * 3 {
            c.sample_once(&mut split, true).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let cli = async { tokio::task::block_in_place(|| c.cli(standby, &["failover", "--force"])) };
    let ((code, out, err), ()) = tokio::join!(cli, sampler);
    assert_eq!(code, Some(0), "{out}{err}\n{}", c.logs());
    assert!(
        out.contains("waiting out its lease"),
        "the progress must say so: {out}"
    );
    assert!(
        stopped.elapsed() >= lease_timeout - interval * 5,
        "took over after {:?}, before the lease ran out",
        stopped.elapsed()
    );
    assert_eq!(split.total(), 0, "{split:?}");
    assert!(c.wait_routed(0, standby, Duration::from_secs(2)).await);
    c.sidecar(active).signal(nix::sys::signal::Signal::SIGCONT);
    let (code, _, _) = c.cli(standby, &["resume"]);
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_automatic_failover_and_resume_brings_it_back() {
    let spec = Spec::default();
    let lease_timeout = spec.lease_timeout;
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    let (code, out, err) = c.cli(active, &["pause"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let shown = c
        .wait(Duration::from_secs(3), || async {
            c.status(standby).await.filter(|s| s.paused).map(|_| ())
        })
        .await;
    assert!(shown.is_some(), "status does not show the pause");
    let (_, table, _) = c.cli(standby, &["status"]);
    assert!(table.contains("PAUSED"), "{table}");
    c.kill_jenkins(active);
    tokio::time::sleep(lease_timeout * 3).await;
    assert_ne!(
        c.active_code(standby).await,
        Some(200),
        "failed over while paused\n{}",
        c.logs()
    );
    let s = c.status(standby).await.unwrap();
    assert_eq!(s.lease.holder.as_deref(), Some(NAMES[active]));
    let (code, out, err) = c.cli(standby, &["resume"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let served = c.wait_served_by(0, standby, Duration::from_secs(15)).await;
    assert!(served.is_some(), "no failover after resume\n{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_the_same_from_both_nodes() {
    let (mut c, active) = started(Spec::default()).await;
    c.kill_jenkins(active);
    assert!(c
        .wait_served_by(0, 1 - active, Duration::from_secs(15))
        .await
        .is_some());
    c.start_jenkins(active);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, out, err) = c.cli(active, &["failover"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (a, b) = (
        c.cli(0, &["history", "--json"]),
        c.cli(1, &["history", "--json"]),
    );
    assert_eq!(a.0, Some(0), "{}", a.2);
    assert_eq!(a.1, b.1, "the two nodes disagree on history");
    let rows: serde_json::Value = serde_json::from_str(&a.1).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["term"], 3);
    assert!(
        rows[0]["began"]
            .as_str()
            .unwrap()
            .contains("planned switchover"),
        "{rows:?}"
    );
    assert!(
        rows[1]["end"]
            .as_str()
            .unwrap()
            .contains("planned switchover"),
        "{rows:?}"
    );
    assert!(
        rows[2]["end"]
            .as_str()
            .unwrap()
            .contains("failed 3 health checks"),
        "{rows:?}"
    );
    let (_, table, _) = c.cli(0, &["history"]);
    assert!(table.starts_with("Term"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_endpoint_needs_the_token() {
    let (c, active) = started(Spec::default()).await;
    let before = c.status(active).await.unwrap();
    for i in [0, 1] {
        let port = c.hosts[i].api_port;
        for path in ["/failover", "/pause", "/resume", "/v1/heartbeat"] {
            for auth in [None, Some("Bearer not-the-token"), Some("Bearer ")] {
                let mut headers = vec![];
                if let Some(a) = auth {
                    headers.push((
                        hyper::header::AUTHORIZATION,
                        hyper::header::HeaderValue::from_static(a),
                    ));
                }
                let r = c
                    .http
                    .send(
                        hyper::Method::POST,
                        &format!("http://127.0.0.1:{port}{path}"),
                        &headers,
                        bytes::Bytes::from_static(b"{}"),
                        Duration::from_secs(2),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.status.as_u16(), 401, "{path} with {auth:?}");
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = c.status(active).await.unwrap();
    assert_eq!(after.active, before.active);
    assert_eq!(after.lease.term, before.lease.term);
    assert!(!after.paused);
    assert!(!c.home.join(".jenkins-ha/paused").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_failovers() {
    let (mut c, active) = started(Spec::default()).await;
    let standby = 1 - active;
    async fn scrape(c: &Cluster, port: u16) -> prometheus_parse::Scrape {
        let r = c.get(port, "/metrics").await.expect("/metrics answers");
        assert_eq!(r.status.as_u16(), 200);
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
    }
    let failovers = |s: &prometheus_parse::Scrape, reason: &str| -> f64 {
        s.samples
            .iter()
            .filter(|m| {
                m.metric == "jenkins_ha_failovers_total" && m.labels.get("reason") == Some(reason)
            })
            .map(|m| match m.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let before = scrape(&c, c.hosts[standby].api_port).await;
    assert!(before.samples.iter().any(|m| m.metric == "jenkins_ha_term"));
    assert!(before
        .samples
        .iter()
        .any(|m| m.metric == "jenkins_ha_lease_age_seconds"));
    assert!(before
        .samples
        .iter()
        .any(|m| m.metric == "jenkins_ha_peer_heartbeat_age_seconds"));
    let role = before
        .samples
        .iter()
        .find(|m| m.metric == "jenkins_ha_role" && m.labels.get("role") == Some("standby"))
        .expect("role gauge");
    assert!(
        matches!(role.value, prometheus_parse::Value::Gauge(v) if v == 1.0),
        "{role:?}"
    );
    assert_eq!(failovers(&before, "released"), 0.0);
    c.kill_jenkins(active);
    assert!(c
        .wait_served_by(0, standby, Duration::from_secs(15))
        .await
        .is_some());
    let after = scrape(&c, c.hosts[standby].api_port).await;
    assert_eq!(
        failovers(&after, "released"),
        1.0,
        "the failover counter did not move"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_sees_ready_status_and_watchdog() {
    let mut c = Cluster::prepare(Spec::default());
    let socket_path = c.dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let path = socket_path.display().to_string();
    c.start_sidecar_env(0, &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "3000000")]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else { break };
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        let all = seen.join("\n");
        if all.contains("READY=1")
            && all.contains("STATUS=")
            && all.matches("WATCHDOG=1").count() >= 2
        {
            break;
        }
    }
    let all = seen.join("\n");
    assert!(all.contains("READY=1"), "{all}");
    assert!(
        all.contains("STATUS=standby:")
            || all.contains("STATUS=claiming")
            || all.contains("STATUS=starting"),
        "{all}"
    );
    assert!(all.matches("WATCHDOG=1").count() >= 2, "{all}");
    let code = c.sidecar(0).terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_safe_changes_and_names_the_rest() {
    let (mut c, active) = started(Spec::default()).await;
    let config = c.hosts[active].config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    // A new cluster token on both nodes, a restart command, and a timing change.
    let token = c.dir.join("cluster.token");
    std::fs::write(&token, "rotated-token-0123456789\n").unwrap();
    let changed = text
        .replace(
            "reload_timeout: 10000ms\n",
            "reload_timeout: 10000ms\n  restart_command: \"true\"\n",
        )
        .replace("fall: 3", "fall: 4");
    std::fs::write(&config, changed).unwrap();
    for i in [0, 1] {
        c.sidecar(i).signal(nix::sys::signal::Signal::SIGHUP);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log =
        std::fs::read_to_string(c.dir.join(format!("{}-sidecar.log", NAMES[active]))).unwrap();
    assert!(log.contains("SIGHUP: applied: auth.token_file"), "{log}");
    assert!(
        log.contains("SIGHUP: applied: jenkins.restart_command"),
        "{log}"
    );
    assert!(
        log.contains("SIGHUP: not applied, needs a restart: timing"),
        "{log}"
    );
    assert!(!log.contains("rotated-token"), "a secret reached the log");
    // The new token is the one the API takes now, and heartbeats still flow with it.
    let url = format!("http://127.0.0.1:{}/pause", c.hosts[active].api_port);
    for (auth, want) in [
        ("Bearer lab-cluster-token-5f0e1d2c3b4a", 401),
        ("Bearer rotated-token-0123456789", 200),
    ] {
        let r = c
            .http
            .send(
                hyper::Method::POST,
                &url,
                &[(
                    hyper::header::AUTHORIZATION,
                    hyper::header::HeaderValue::from_static(auth),
                )],
                bytes::Bytes::new(),
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), want, "{auth}");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = c.status(active).await.unwrap();
    assert_eq!(
        s.nodes[1].role.as_str(),
        "standby",
        "heartbeats stopped after the rotation: {s:?}"
    );
    assert!(s.nodes[1].last_heard_s.unwrap() < 1.0);
    // A broken config on SIGHUP keeps the running one.
    std::fs::write(&config, "node: [\n").unwrap();
    c.sidecar(active).signal(nix::sys::signal::Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log =
        std::fs::read_to_string(c.dir.join(format!("{}-sidecar.log", NAMES[active]))).unwrap();
    assert!(
        log.contains("SIGHUP: config not reloaded, keeping the running one"),
        "{log}"
    );
    assert_eq!(c.active_code(active).await, Some(200));
    let health = c.get(c.hosts[active].api_port, "/health").await.unwrap();
    assert_eq!(health.status.as_u16(), 200);
}
