//! The core's acceptance tests: two real sidecars, two Jenkins stand-ins on one JENKINS_HOME and a
//! real HAProxy on loopback. Faults are real signals. Each test says what a user would check.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Cluster, Relay, Spec, NAMES};

const BACKENDS: [&str; 2] = ["jenkins_http", "jenkins_agent"];

async fn started(spec: Spec) -> (Cluster, usize) {
    let c = Cluster::start(spec);
    let active = c
        .wait_one_active(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no single active node\n{}", c.logs()));
    assert!(
        c.wait_routed(0, active, Duration::from_secs(5)).await,
        "HAProxy not routed"
    );
    (c, active)
}

fn term_files(c: &Cluster) -> Vec<String> {
    c.term_files()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_becomes_active_and_haproxy_routes_to_it() {
    let spec = Spec::default();
    let interval = spec.interval;
    let start = Instant::now();
    let c = Cluster::start(spec);
    let active = c
        .wait_one_active(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no single active node\n{}", c.logs()));
    let standby = 1 - active;
    let became_active = start.elapsed();
    assert!(
        became_active < interval * 15,
        "took {became_active:?} to elect an active node"
    );
    assert!(c.wait_routed(0, active, Duration::from_secs(5)).await);
    for b in BACKENDS {
        assert_eq!(
            c.server_label(0, b, NAMES[active]).await,
            Some("ready"),
            "{b}"
        );
        assert_eq!(
            c.server_label(0, b, NAMES[standby]).await,
            Some("maint"),
            "{b}"
        );
    }
    // Requests through the HTTP frontend reach the active's Jenkins...
    let took = c.wait_served_by(0, active, Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "HTTP frontend does not reach {}",
        NAMES[active]
    );
    for _ in 0..10 {
        let (code, node) = c
            .through_haproxy(0, "/login")
            .await
            .expect("HAProxy answers");
        assert_eq!((code, node.as_deref()), (200, Some(NAMES[active])));
    }
    // ... and so do agent connections (the TCP backend tracks the HTTP one).
    let banner = agent_banner(c.haproxies[0].agent_front_port).await;
    assert_eq!(banner.trim(), format!("jenkins-standin {}", NAMES[active]));
    // The standby's Jenkins is quieting down; the active's is not.
    let quiet = c
        .wait(Duration::from_secs(5), || async {
            (c.quieting_down(standby).await == Some(true)).then_some(())
        })
        .await;
    assert!(
        quiet.is_some(),
        "the standby's Jenkins is not quieting down"
    );
    // The active's Jenkins leaves quiet-down once its promotion reload is done.
    let unquiet = c
        .wait(Duration::from_secs(5), || async {
            (c.quieting_down(active).await == Some(false)).then_some(())
        })
        .await;
    assert!(
        unquiet.is_some(),
        "the active's Jenkins stays in quiet-down"
    );
    assert_eq!(c.quieting_down(standby).await, Some(true));
    // And `status` tells the same story from either node.
    for i in [0, 1] {
        let s = c
            .wait(Duration::from_secs(5), || async {
                c.status(i).await.filter(|s| {
                    s.active.as_deref() == Some(NAMES[active])
                        && s.nodes[1].role.as_str() != "unreachable"
                        && s.nodes.iter().all(|n| n.jenkins == "up")
                })
            })
            .await
            .unwrap_or_else(|| panic!("status on {} never agreed", NAMES[i]));
        let me = &s.nodes[0];
        assert_eq!(me.name, NAMES[i]);
        assert_eq!(
            me.role.as_str(),
            if i == active { "active" } else { "standby" }
        );
        assert_eq!(me.jenkins, "up");
        assert_eq!(me.term, Some(1));
    }
}

async fn agent_banner(port: u16) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("agent frontend");
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_active_jenkins_fails_over_to_the_standby() {
    let (mut c, active) = started(Spec::default()).await;
    let standby = 1 - active;
    let killed = Instant::now();
    c.kill_jenkins(active);
    let served = c.wait_served_by(0, standby, Duration::from_secs(20)).await;
    assert!(
        served.is_some(),
        "the standby never served through HAProxy\n{}",
        c.logs()
    );
    eprintln!(
        "served by the standby {:?} after the kill",
        killed.elapsed()
    );
    assert!(c.wait_routed(0, standby, Duration::from_secs(2)).await);
    for b in BACKENDS {
        assert_eq!(
            c.server_label(0, b, NAMES[active]).await,
            Some("maint"),
            "{b}"
        );
    }
    // Served means it caught up with the disk; quiet-down is cancelled right after.
    let state = c
        .wait(Duration::from_secs(3), || async {
            c.jenkins_state(standby)
                .await
                .filter(|s| s["quietingDown"] == false)
        })
        .await
        .unwrap_or_else(|| panic!("the new active is still quieting down\n{}", c.logs()));
    let promoted = c
        .status(standby)
        .await
        .and_then(|s| s.nodes[0].promotion.clone());
    assert!(
        promoted.as_ref().is_some_and(|p| p.term == 2),
        "the new active was not caught up for its term: {promoted:?} {state}"
    );
    assert_eq!(c.active_code(active).await, Some(503));
    assert_eq!(c.active_code(standby).await, Some(200));
    let s = c.status(standby).await.unwrap();
    assert_eq!(s.active.as_deref(), Some(NAMES[standby]));
    assert_eq!(s.nodes[0].term, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_death_takes_over_after_the_lease_timeout_and_not_before() {
    let spec = Spec::default();
    let (lease_timeout, interval) = (spec.lease_timeout, spec.interval);
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    tokio::time::sleep(interval * 3).await;
    let killed = Instant::now();
    c.kill_sidecar(active);
    c.kill_jenkins(active);
    let mut first_active = None;
    while killed.elapsed() < lease_timeout + Duration::from_secs(10) {
        if c.active_code(standby).await == Some(200) {
            first_active = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = first_active.unwrap_or_else(|| panic!("no takeover\n{}", c.logs()));
    eprintln!(
        "the standby became active {took:?} after the host died (lease_timeout {lease_timeout:?})"
    );
    // Its last renewal was at most one interval before the kill.
    assert!(
        took >= lease_timeout - interval,
        "took over after {took:?}, before the lease could have run out"
    );
    assert!(c
        .wait_served_by(0, standby, Duration::from_secs(10))
        .await
        .is_some());
    assert!(c.wait_routed(0, standby, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_active_steps_down_when_it_wakes_and_never_splits() {
    let spec = Spec::default();
    let lease_timeout = spec.lease_timeout;
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    let mut split = cluster::SplitBrain::default();
    c.sidecar(active).signal(nix::sys::signal::Signal::SIGSTOP);
    let stopped = Instant::now();
    // Sample all through the pause: HAProxy must never route to both.
    while stopped.elapsed() < lease_timeout * 2 + Duration::from_secs(1) {
        c.sample_once(&mut split, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        c.active_code(standby).await,
        Some(200),
        "the standby did not take over\n{}",
        c.logs()
    );
    assert!(c.wait_routed(0, standby, Duration::from_secs(2)).await);
    c.sidecar(active).signal(nix::sys::signal::Signal::SIGCONT);
    let woke = Instant::now();
    while woke.elapsed() < Duration::from_secs(3) {
        c.sample_once(&mut split, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(split.total(), 0, "split-brain samples: {split:?}");
    assert!(split.samples > 30, "too few samples: {split:?}");
    // The old node stepped down: /active 503, its Jenkins quiet, HAProxy still routed to the new one.
    assert_eq!(c.active_code(active).await, Some(503));
    assert_eq!(c.active_code(standby).await, Some(200));
    assert_eq!(
        c.quieting_down(active).await,
        Some(true),
        "the old active's Jenkins is not quiet"
    );
    assert_eq!(c.quieting_down(standby).await, Some(false));
    assert!(c.wait_routed(0, standby, Duration::from_secs(1)).await);
    let s = c.status(active).await.expect("the woken node answers");
    assert_eq!(s.nodes[0].role.as_str(), "standby", "{s:?}");
    // And it wrote nothing to HAProxy after waking.
    let log =
        std::fs::read_to_string(c.dir.join(format!("{}-sidecar.log", NAMES[active]))).unwrap();
    let after_wake = log
        .split("stepping down")
        .nth(1)
        .unwrap_or_else(|| panic!("no step-down logged:\n{log}"));
    assert!(
        !after_wake.contains("to route to"),
        "wrote to HAProxy after waking:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_partition_alone_causes_no_failover() {
    let spec = Spec::default();
    let lease_timeout = spec.lease_timeout;
    let mut c = Cluster::prepare(spec);
    // Heartbeats go through relays that can cut the link both ways.
    let relays = [
        Relay::start(c.hosts[1].api_port).await,
        Relay::start(c.hosts[0].api_port).await,
    ];
    c.set_peer_port(0, relays[0].port);
    c.set_peer_port(1, relays[1].port);
    c.start_sidecar(0);
    c.start_sidecar(1);
    let active = c
        .wait_one_active(Duration::from_secs(15))
        .await
        .expect("one active");
    assert!(c.wait_routed(0, active, Duration::from_secs(5)).await);
    // Wait until both see each other, then cut.
    let seen = c
        .wait(Duration::from_secs(5), || async {
            let s = c.status(active).await?;
            (s.nodes[1].role.as_str() == "standby").then_some(())
        })
        .await;
    assert!(seen.is_some(), "heartbeats never went through the relays");
    for r in &relays {
        r.cut(true);
    }
    let split = c.sample_split_brain(lease_timeout * 3, true).await;
    assert_eq!(split.total(), 0, "{split:?}");
    assert_eq!(
        c.active_code(active).await,
        Some(200),
        "the active lost its role\n{}",
        c.logs()
    );
    assert_eq!(c.active_code(1 - active).await, Some(503));
    assert_eq!(
        term_files(&c),
        vec!["term-1"],
        "a new term was claimed during the partition"
    );
    let s = c.status(active).await.unwrap();
    assert_eq!(
        s.nodes[1].role.as_str(),
        "unreachable",
        "the peer should show as unreachable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_haproxy_gets_the_state_back_within_a_couple_of_intervals() {
    let spec = Spec::default();
    let interval = spec.interval;
    let (mut c, active) = started(spec).await;
    c.kill_haproxy(0);
    tokio::time::sleep(interval * 2).await;
    c.start_haproxy(0);
    let restarted = Instant::now();
    // A fresh HAProxy has no runtime state: both servers come up ready from the config.
    assert!(
        c.wait_routed(0, active, interval * 2 + Duration::from_millis(1500))
            .await,
        "state not re-asserted\n{}",
        c.logs()
    );
    eprintln!("re-asserted {:?} after the restart", restarted.elapsed());
    assert!(c
        .wait_served_by(0, active, Duration::from_secs(5))
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_starts_elect_exactly_one_active_every_time() {
    let spec = Spec::default();
    let interval = spec.interval;
    let mut c = Cluster::prepare(spec);
    let mut winners = [0; 2];
    for round in 0..20 {
        let _ = std::fs::remove_dir_all(c.home.join(".jenkins-ha"));
        c.start_sidecar(0);
        c.start_sidecar(1);
        let active = c
            .wait_one_active(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("round {round}: no single active\n{}", c.logs()));
        winners[active] += 1;
        let split = c.sample_split_brain(interval * 5, true).await;
        assert_eq!(split.total(), 0, "round {round}: {split:?}");
        assert_eq!(term_files(&c), vec!["term-1"], "round {round}");
        assert!(
            c.wait_routed(0, active, Duration::from_secs(3)).await,
            "round {round}"
        );
        c.kill_sidecar(0);
        c.kill_sidecar(1);
    }
    eprintln!("winners over 20 rounds: {winners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_active_hands_over_at_once() {
    let spec = Spec::default();
    let lease_timeout = spec.lease_timeout;
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    // Let the standby's Jenkins pass its rise checks and the first heartbeats land.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stopped = Instant::now();
    let code = c.sidecar(active).terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "a clean stop exits 0\n{}", c.logs());
    let took = c
        .wait(lease_timeout * 3, || async {
            (c.active_code(standby).await == Some(200)).then(|| stopped.elapsed())
        })
        .await
        .unwrap_or_else(|| panic!("no takeover after SIGTERM\n{}", c.logs()));
    eprintln!("the peer was active {took:?} after SIGTERM");
    assert!(
        took < lease_timeout,
        "took {took:?}: the term was not released"
    );
    assert!(c.wait_routed(0, standby, Duration::from_secs(2)).await);
    assert_eq!(
        c.quieting_down(active).await,
        Some(true),
        "the stopped node's Jenkins must be quiet"
    );
    let record = std::fs::read_to_string(c.home.join(".jenkins-ha/term-1")).unwrap();
    assert!(record.contains("\"released\":true"), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_need_the_cluster_token() {
    let (c, active) = started(Spec::default()).await;
    let port = c.hosts[active].api_port;
    let url = format!("http://127.0.0.1:{port}/v1/heartbeat");
    let forged = serde_json::json!({
        "name": cluster::NAMES[1 - active], "role": "active", "term": 99, "jenkins": "up",
        "released": true
    })
    .to_string();
    for auth in [None, Some("Bearer wrong-token"), Some("Basic Zm9vOmJhcg==")] {
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
                &url,
                &headers,
                forged.clone().into(),
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 401, "{auth:?}");
    }
    // Nothing changed.
    let s = c.status(active).await.unwrap();
    assert_ne!(s.nodes[1].term, Some(99));
    assert_eq!(c.active_code(active).await, Some(200));
}

/// A large home: the stand-in's full reload takes three times the lease timeout. The first
/// promotion (a full reload: nothing tells yet what the stand-ins loaded) must finish while the
/// node keeps renewing its lease (it once compared the clock with the deadline copied when the
/// promotion began, and reloaded again and again, answering 503 for ever). Then a crash fails
/// over, and the new active, which followed every change as a standby, needs no full reload at
/// all: its promotion does not grow with the reload time. No instant has two actives or two
/// Jenkins out of quiet-down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_reload_three_times_the_lease_settles_and_fails_over() {
    let spec = Spec {
        reload_base: Duration::from_secs(6),
        reload_per_item: Duration::ZERO,
        reload_timeout: Duration::from_secs(60),
        ..Spec::default()
    };
    assert_eq!(spec.reload_base, spec.lease_timeout * 3);
    let reload = spec.reload_base;
    let mut c = Cluster::start(spec);
    let active = c
        .wait_one_active(reload * 3)
        .await
        .unwrap_or_else(|| panic!("no single active node\n{}", c.logs()));
    let standby = 1 - active;
    // It serves a 200 once the reload is over, and leaves quiet-down once: one reload, not a loop.
    let served = c.wait_served_by(0, active, reload * 3).await;
    assert!(
        served.is_some(),
        "the first active never served\n{}",
        c.logs()
    );
    let unquiet = c
        .wait(reload * 2, || async {
            (c.quieting_down(active).await == Some(false)).then_some(())
        })
        .await;
    assert!(
        unquiet.is_some(),
        "the first active stays in quiet-down\n{}",
        c.logs()
    );
    let first = c.jenkins_state(active).await.unwrap();
    assert_eq!(first["fullReloads"], 1, "reloaded more than once: {first}");
    let s = c.status(active).await.unwrap();
    assert_eq!(s.active.as_deref(), Some(NAMES[active]), "{s:?}");
    let first_promotion = s.nodes[0].promotion.clone().expect("its promotion");
    assert_eq!(first_promotion.kind, "full", "{first_promotion:?}");
    assert!(
        first_promotion.took_ms >= reload.as_millis() as u64,
        "{first_promotion:?}"
    );
    // The standby learns what its Jenkins has loaded, item by item, without reloading it.
    let current = c
        .wait(reload * 2, || async {
            let s = c.status(standby).await?;
            s.nodes[0].current.then_some(())
        })
        .await;
    assert!(
        current.is_some(),
        "the standby never became current\n{}",
        c.logs()
    );

    // A crash: the standby takes over at once, with no full reload.
    let reloads_before = c.jenkins_state(standby).await.unwrap()["fullReloads"]
        .as_u64()
        .unwrap();
    let mut sb = cluster::SplitBrain::default();
    c.kill_jenkins(active);
    let killed = Instant::now();
    let mut served_at = None;
    while killed.elapsed() < reload * 4 {
        c.sample_once(&mut sb, true).await;
        if served_at.is_none() {
            if let Some((200, Some(node))) = c.through_haproxy(0, "/login").await {
                if node == NAMES[standby] {
                    served_at = Some(killed.elapsed());
                }
            }
        }
        if served_at.is_some() && c.quieting_down(standby).await == Some(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served_at = served_at
        .unwrap_or_else(|| panic!("the standby never served after the crash\n{}", c.logs()));
    eprintln!(
        "served by the new active {served_at:?} after the crash (a full reload takes {reload:?})"
    );
    assert_eq!(
        c.quieting_down(standby).await,
        Some(false),
        "the new active stays in quiet-down\n{}",
        c.logs()
    );
    let after = c.jenkins_state(standby).await.unwrap();
    assert_eq!(
        after["fullReloads"].as_u64().unwrap(),
        reloads_before,
        "the promotion ran a full reload: {after}"
    );
    assert_eq!(sb.total(), 0, "split-brain samples: {sb:?}");
    let s = c.status(standby).await.unwrap();
    assert_eq!(s.active.as_deref(), Some(NAMES[standby]), "{s:?}");
    assert_eq!(s.nodes[0].term, Some(2));
    let promotion = s.nodes[0].promotion.clone().expect("its promotion");
    assert_eq!(promotion.kind, "incremental", "{promotion:?}");
}
