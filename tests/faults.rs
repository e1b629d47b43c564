//! The fault matrix: each row is its own test on real processes. An observer samples every
//! 100 ms (HAProxy's `show servers state`, both `/active`, both Jenkins' quiet-down) and counts
//! split-brain samples; every test ends with zero of them and one healthy active that HAProxy
//! routes to. Where the row says so, a writer keeps editing job configs through the active's
//! mount, and no edit may be lost. Storage and network rows are in `faults_infra.rs`.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{write_folder, write_job, Cluster, Spec, SplitBrain, NAMES};
use nix::sys::signal::Signal;

/// Samples the cluster every 100 ms until `until` says stop, returning the split-brain count.
async fn observe_until<F, Fut>(c: &Cluster, timeout: Duration, mut until: F) -> (SplitBrain, bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut sb = SplitBrain::default();
    let start = Instant::now();
    while start.elapsed() < timeout {
        c.sample_once(&mut sb, true).await;
        if until().await {
            return (sb, true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (sb, false)
}

/// Keeps sampling for `more` after the fault settled, then asserts that no sample, before or
/// after, saw a split brain.
async fn assert_no_split_brain(c: &Cluster, sb: &SplitBrain, more: Duration) {
    let (sb2, _) = observe_until(c, more, || async { false }).await;
    assert_eq!(sb.total() + sb2.total(), 0, "{sb:?} {sb2:?}");
}

/// One healthy active that HAProxy routes to and serves from; the other Jenkins (if alive) quiet.
async fn assert_converged(c: &Cluster, active: usize) {
    assert_eq!(
        c.active_code(active).await,
        Some(200),
        "{} is not active\n{}",
        NAMES[active],
        c.logs()
    );
    assert_ne!(c.active_code(1 - active).await, Some(200));
    for k in 0..c.haproxies.len() {
        assert!(
            c.wait_routed(k, active, Duration::from_secs(3)).await,
            "HAProxy {k} not routed"
        );
        assert!(c
            .wait_served_by(k, active, Duration::from_secs(10))
            .await
            .is_some());
    }
    let quiet = c
        .wait(Duration::from_secs(3), || async {
            matches!(c.quieting_down(1 - active).await, Some(true) | None).then_some(())
        })
        .await;
    assert!(quiet.is_some(), "the standby's Jenkins is not quiet");
    let unquiet = c
        .wait(Duration::from_secs(5), || async {
            (c.quieting_down(active).await == Some(false)).then_some(())
        })
        .await;
    assert!(
        unquiet.is_some(),
        "the active's Jenkins stays in quiet-down\n{}",
        c.logs()
    );
}

async fn started(spec: Spec) -> (Cluster, usize) {
    Cluster::start_settled(spec).await
}

fn terms(c: &Cluster) -> usize {
    c.term_files().len()
}

/// Keeps editing job configs (top-level and nested) through one node's mount, remembering the
/// last content written to each.
struct Writer {
    stop: Arc<AtomicBool>,
    last: Arc<Mutex<BTreeMap<String, String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const EDITED: [&str; 4] = ["job-0", "job-1", "team/app", "team/lib"];

impl Writer {
    fn start(home: std::path::PathBuf) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(Mutex::new(BTreeMap::new()));
        let (s, l) = (stop.clone(), last.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let job = EDITED[(n % EDITED.len() as u64) as usize];
                let desc = format!("{job} edit {n}");
                write_job(&home, job, &desc);
                l.lock().unwrap().insert(job.to_string(), desc);
                n += 1;
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        Writer {
            stop,
            last,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let last = self.last.lock().unwrap().clone();
        last
    }
}

/// A bindfs cluster whose home has a folder with two nested jobs, loaded by both stand-ins.
async fn started_with_folder() -> (Cluster, usize) {
    let spec = Spec {
        bindfs: true,
        jobs: 3,
        extra_config: "watch:\n  mode: auto\n  poll_interval: 250ms\n  debounce: 250ms\n".into(),
        ..Spec::default()
    };
    let mut c = Cluster::prepare(spec);
    write_folder(&c.home, "team");
    write_job(&c.home, "team/app", "app v1");
    write_job(&c.home, "team/lib", "lib v1");
    for i in 0..2 {
        c.kill_jenkins(i);
        c.start_jenkins(i);
    }
    c.start_sidecar(0);
    c.start_sidecar(1);
    let active = c
        .wait_one_active(Duration::from_secs(15))
        .await
        .expect("one active");
    assert!(c
        .wait_served_by(0, active, Duration::from_secs(10))
        .await
        .is_some());
    let settled = c
        .wait(Duration::from_secs(10), || async {
            let s = c.status(1 - active).await?;
            let ok = s.nodes[0].watch.as_ref().is_some_and(|w| w.items >= 5)
                && c.quieting_down(1 - active).await == Some(true)
                && s.nodes[1].role.as_str() == "active";
            ok.then_some(())
        })
        .await;
    assert!(
        settled.is_some(),
        "the cluster did not settle\n{}",
        c.logs()
    );
    (c, active)
}

/// After convergence, the new active's Jenkins shows the last content of every edited job.
async fn assert_nothing_lost(c: &Cluster, active: usize, last: &BTreeMap<String, String>) {
    assert!(
        last.len() == EDITED.len(),
        "the writer did not get going: {last:?}"
    );
    let all_there = c
        .wait(Duration::from_secs(5), || async {
            let items = c.jenkins_state(active).await?["items"].clone();
            last.iter()
                .all(|(job, desc)| items.get(job).and_then(|d| d.as_str()) == Some(desc.as_str()))
                .then_some(())
        })
        .await;
    let items = c.jenkins_state(active).await.map(|s| s["items"].clone());
    assert!(
        all_there.is_some(),
        "config changes were lost: wrote {last:?}, the new active shows {items:?}\n{}",
        c.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_01_kill_the_active_jenkins_loses_no_config_change() {
    let (mut c, active) = started_with_folder().await;
    let standby = 1 - active;
    let writer = Writer::start(c.hosts[active].home.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The active's Jenkins dies: no more edits come from it.
    c.kill_jenkins(active);
    let last = writer.stop();
    let killed = Instant::now();
    let (sb, ok) = observe_until(&c, Duration::from_secs(20), || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    assert!(ok, "no failover\n{}", c.logs());
    eprintln!("row 1: converged {:?} after the kill", killed.elapsed());
    assert_no_split_brain(&c, &sb, Duration::from_secs(2)).await;
    assert_converged(&c, standby).await;
    assert_nothing_lost(&c, standby, &last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_02_kill_the_active_sidecar_only_never_routes_to_the_orphan() {
    let spec = Spec::default();
    let lease_timeout = spec.lease_timeout;
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    // The sidecar dies; its Jenkins keeps running, out of quiet-down: an orphan.
    c.kill_sidecar(active);
    let killed = Instant::now();
    let (sb, ok) = observe_until(&c, lease_timeout * 5, || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    assert!(ok, "no takeover\n{}", c.logs());
    eprintln!("row 2: converged {:?} after the kill", killed.elapsed());
    // Through HAProxy, only the new active answers; the orphan Jenkins was fenced (quiet-down).
    assert_no_split_brain(&c, &sb, Duration::from_secs(2)).await;
    for _ in 0..20 {
        let (code, node) = c.through_haproxy(0, "/login").await.unwrap();
        assert_eq!((code, node.as_deref()), (200, Some(NAMES[standby])));
    }
    assert_eq!(
        c.quieting_down(active).await,
        Some(true),
        "the orphan was not fenced"
    );
    assert_converged(&c, standby).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_03_host_death_loses_no_config_change() {
    let (mut c, active) = started_with_folder().await;
    let standby = 1 - active;
    let lease_timeout = c.spec.lease_timeout;
    let writer = Writer::start(c.hosts[active].home.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.kill_sidecar(active);
    c.kill_jenkins(active);
    let last = writer.stop();
    let killed = Instant::now();
    let (sb, ok) = observe_until(&c, lease_timeout * 5, || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    assert!(ok, "no takeover\n{}", c.logs());
    eprintln!(
        "row 3: converged {:?} after the host died",
        killed.elapsed()
    );
    assert_eq!(sb.total(), 0, "{sb:?}");
    assert_converged(&c, standby).await;
    assert_nothing_lost(&c, standby, &last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_04_sigstop_past_the_lease_loses_no_config_change() {
    let (mut c, active) = started_with_folder().await;
    let standby = 1 - active;
    let lease_timeout = c.spec.lease_timeout;
    let writer = Writer::start(c.hosts[active].home.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.sidecar(active).signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    // Users keep editing through the (still running) old Jenkins until the new active routes.
    let (sb, ok) = observe_until(&c, lease_timeout * 5, || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    let last = writer.stop();
    assert!(ok, "no takeover\n{}", c.logs());
    eprintln!(
        "row 4: the standby took over {:?} after SIGSTOP",
        stopped.elapsed()
    );
    c.sidecar(active).signal(Signal::SIGCONT);
    assert_no_split_brain(&c, &sb, Duration::from_secs(3)).await;
    assert_converged(&c, standby).await;
    assert_nothing_lost(&c, standby, &last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_08_haproxy_killed_for_a_while_and_restarted() {
    let spec = Spec::default();
    let interval = spec.interval;
    let (mut c, active) = started(spec).await;
    c.kill_haproxy(0);
    let (sb, _) = observe_until(&c, Duration::from_secs(4), || async { false }).await;
    // No crash loop meanwhile: both sidecars are alive and the active stays active.
    for i in [0, 1] {
        assert!(
            c.sidecar(i).running(),
            "sidecar {i} died while HAProxy was down"
        );
    }
    assert_eq!(c.active_code(active).await, Some(200));
    let log =
        std::fs::read_to_string(c.dir.join(format!("{}-sidecar.log", NAMES[active]))).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("HAProxy") && l.contains("WARN"))
        .count();
    assert!(
        warnings <= 3,
        "HAProxy being down should be said once, not every tick:\n{log}"
    );
    c.start_haproxy(0);
    let back = Instant::now();
    assert!(
        c.wait_routed(0, active, interval * 2 + Duration::from_secs(1))
            .await
    );
    eprintln!(
        "row 8: re-asserted {:?} after HAProxy came back",
        back.elapsed()
    );
    assert_no_split_brain(&c, &sb, Duration::from_secs(1)).await;
    assert_converged(&c, active).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_09_two_haproxies_converge_even_when_one_is_down_during_the_failover() {
    let spec = Spec {
        haproxies: 2,
        ..Spec::default()
    };
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    assert!(c.wait_routed(1, active, Duration::from_secs(3)).await);
    c.kill_haproxy(1);
    c.kill_jenkins(active);
    let (sb, ok) = observe_until(&c, Duration::from_secs(20), || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    assert!(ok, "no failover\n{}", c.logs());
    assert!(c.wait_routed(0, standby, Duration::from_secs(3)).await);
    c.start_haproxy(1);
    let back = Instant::now();
    assert!(
        c.wait_routed(1, standby, Duration::from_secs(3)).await,
        "the second HAProxy did not converge"
    );
    eprintln!(
        "row 9: the second HAProxy converged {:?} after it came back",
        back.elapsed()
    );
    assert_no_split_brain(&c, &sb, Duration::from_secs(1)).await;
    assert_converged(&c, standby).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_10_simultaneous_start_fifty_times() {
    let spec = Spec::default();
    let interval = spec.interval;
    let mut c = Cluster::prepare(spec);
    let mut winners = [0; 2];
    for round in 0..50 {
        let _ = std::fs::remove_dir_all(c.home.join(".jenkins-ha"));
        c.start_sidecar(0);
        c.start_sidecar(1);
        let mut sb = SplitBrain::default();
        let start = Instant::now();
        let mut active = None;
        while start.elapsed() < Duration::from_secs(10) {
            c.sample_once(&mut sb, true).await;
            let a = c.active_code(0).await == Some(200);
            let b = c.active_code(1).await == Some(200);
            match (a, b) {
                (true, false) => active = Some(0),
                (false, true) => active = Some(1),
                _ => {}
            }
            if active.is_some() && c.wait_routed(0, active.unwrap_or(0), Duration::ZERO).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let active = active.unwrap_or_else(|| panic!("round {round}: no active\n{}", c.logs()));
        let (sb2, _) = observe_until(&c, interval * 3, || async { false }).await;
        assert_eq!(sb.total() + sb2.total(), 0, "round {round}: {sb:?} {sb2:?}");
        assert_eq!(
            terms(&c),
            1,
            "round {round}: more than one term was claimed"
        );
        winners[active] += 1;
        c.kill_sidecar(0);
        c.kill_sidecar(1);
    }
    eprintln!("row 10: winners over 50 rounds: {winners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_11_both_sidecars_restarted_bring_back_the_same_active_without_a_flip() {
    let (mut c, active) = started(Spec::default()).await;
    let standby = 1 - active;
    // Both sidecars die (an upgrade gone wrong, an OOM kill); both Jenkins keep running.
    c.kill_sidecar(0);
    c.kill_sidecar(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.start_sidecar(0);
    c.start_sidecar(1);
    let restarted = Instant::now();
    // HAProxy must keep routing to the same master the whole time: nobody may flip it.
    let mut sb = SplitBrain::default();
    let mut flipped = false;
    while restarted.elapsed() < Duration::from_secs(6) {
        c.sample_once(&mut sb, true).await;
        if c.server_label(0, "jenkins_http", NAMES[active]).await != Some("ready")
            || c.server_label(0, "jenkins_http", NAMES[standby]).await != Some("maint")
        {
            flipped = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !flipped,
        "HAProxy was flipped during the restart\n{}",
        c.logs()
    );
    assert_eq!(sb.total(), 0, "{sb:?}");
    let s = c.status(active).await.unwrap();
    assert_eq!(s.active.as_deref(), Some(NAMES[active]), "{s:?}");
    assert_eq!(s.lease.holder.as_deref(), Some(NAMES[active]));
    assert!(
        s.nodes[0].reason.starts_with("active"),
        "{}",
        s.nodes[0].reason
    );
    assert_converged(&c, active).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_12a_a_slow_jenkins_fails_over_once_and_does_not_ping_pong() {
    let (c, active) = started(Spec::default()).await;
    let standby = 1 - active;
    // Answers after twice the health timeout (jenkins.timeout defaults to 500 ms at this interval).
    c.post(c.hosts[active].jenkins_port, "/standin/delay?ms=1000")
        .await
        .unwrap();
    let (sb, ok) = observe_until(&c, Duration::from_secs(20), || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    assert!(
        ok,
        "a Jenkins too slow for its health checks should be failed away from\n{}",
        c.logs()
    );
    let terms_after = terms(&c);
    let (sb2, _) = observe_until(&c, Duration::from_secs(8), || async { false }).await;
    assert_eq!(
        terms(&c),
        terms_after,
        "the term moved again: ping-pong\n{}",
        c.logs()
    );
    assert_eq!(sb.total() + sb2.total(), 0, "{sb:?} {sb2:?}");
    assert_converged(&c, standby).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_12b_a_flapping_jenkins_causes_no_failover() {
    let spec = Spec::default();
    let interval = spec.interval;
    let (c, active) = started(spec).await;
    // Up one health check, down the next: never `fall` (3) failures in a row.
    c.post(c.hosts[active].jenkins_port, "/standin/flap?on=true")
        .await
        .unwrap();
    let mut sb = SplitBrain::default();
    let flapping = Instant::now();
    while flapping.elapsed() < interval * 40 {
        c.sample_once(&mut sb, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.post(c.hosts[active].jenkins_port, "/standin/flap?on=false")
        .await
        .unwrap();
    let state = c.jenkins_state(active).await.unwrap();
    assert!(
        state["requests"].as_u64().unwrap() > 20,
        "the health checks did not run: {state}"
    );
    tokio::time::sleep(interval * 3).await;
    assert_eq!(
        terms(&c),
        1,
        "a flapping Jenkins caused a failover\n{}",
        c.logs()
    );
    assert_eq!(sb.total(), 0, "{sb:?}");
    assert_converged(&c, active).await;
}

/// A relay that loses heartbeats: each connection carries one exchange; 30 % are held silent
/// (dropped), the others are delayed by 0 to 100 ms.
struct LossyRelay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl LossyRelay {
    async fn start(target: u16, seed: u64) -> LossyRelay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut rng = seed | 1;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let roll = rng % 100;
                let jitter = Duration::from_millis(rng % 101);
                tokio::spawn(async move {
                    if roll < 30 {
                        // Dropped: hold the connection and say nothing.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    tokio::time::sleep(jitter).await;
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    let Ok(n) = inbound.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 || outbound.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let Ok(m) = outbound.read(&mut buf).await else {
                        return;
                    };
                    let _ = inbound.write_all(&buf[..m]).await;
                    // One exchange per connection: the next heartbeat rolls the dice again.
                });
            }
        });
        LossyRelay { port, task }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `SOAK_SECS` (default 120) long: lossy heartbeats both ways and SIGSTOP pauses of the active
/// shorter than its lease every `SOAK_PAUSE_EVERY_SECS` (default 20): zero failovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_lossy_heartbeats_and_short_pauses_cause_no_failover() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let every: u64 = std::env::var("SOAK_PAUSE_EVERY_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let spec = Spec::default();
    let (lease_timeout, interval) = (spec.lease_timeout, spec.interval);
    let margin = std::cmp::max(interval * 2, lease_timeout / 5);
    let pause = (lease_timeout - margin) * 2 / 5;
    let mut c = Cluster::prepare(spec);
    let relays = [
        LossyRelay::start(c.hosts[1].api_port, 7).await,
        LossyRelay::start(c.hosts[0].api_port, 11).await,
    ];
    c.set_peer_port(0, relays[0].port);
    c.set_peer_port(1, relays[1].port);
    c.start_sidecar(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.start_sidecar(1);
    let active = c
        .wait_one_active(Duration::from_secs(15))
        .await
        .expect("one active");
    assert!(c
        .wait_served_by(0, active, Duration::from_secs(10))
        .await
        .is_some());
    let start = Instant::now();
    let mut sb = SplitBrain::default();
    let mut next_pause = Instant::now() + Duration::from_secs(every.min(5));
    let mut pauses = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        if Instant::now() >= next_pause {
            c.sidecar(active).signal(Signal::SIGSTOP);
            tokio::time::sleep(pause).await;
            c.sidecar(active).signal(Signal::SIGCONT);
            pauses += 1;
            next_pause = Instant::now() + Duration::from_secs(every);
        }
        c.sample_once(&mut sb, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "soak: {secs} s, {pauses} pauses of {pause:?}, {} samples",
        sb.samples
    );
    assert_eq!(
        terms(&c),
        1,
        "a failover happened during the soak\n{}",
        c.logs()
    );
    assert_eq!(sb.total(), 0, "{sb:?}");
    assert_converged(&c, active).await;
    // The heartbeats really were lossy: the peer was seen unreachable or late at times is fine,
    // but the link must have carried some heartbeats.
    let s = c.status(active).await.unwrap();
    assert!(
        s.nodes[1].last_heard_s.is_some(),
        "no heartbeat ever went through the relay"
    );
}

/// Row 13b: a standby whose full reload failed answers 503 for ever, but its reload timeout is
/// still far off (the default is 5 minutes). Its health checks, which never wait behind a reload,
/// see the 503: it is not healthy, it says so in heartbeats, the active's crash does not hand it
/// the term, and nobody claims (NO ACTIVE NODE, with the reason in `status`). Once the reload
/// timeout passes, the reload counts as failed and `restart_command` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_13b_a_standby_stuck_in_a_failed_reload_never_claims_long_before_its_timeout() {
    let reload_timeout = Duration::from_secs(12);
    let spec = Spec {
        reload_timeout,
        restart_command: Some("touch {dir}/restart-{node}".into()),
        ..Spec::default()
    };
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    c.post(
        c.hosts[standby].jenkins_port,
        "/standin/fail-reloads?on=true",
    )
    .await
    .unwrap();
    // A new job: the standby's full reload, which fails (503 until restarted).
    write_job(&c.hosts[active].home, "brand-new", "x");
    let reloading = c
        .wait(Duration::from_secs(10), || async {
            let s = c.jenkins_state(standby).await?;
            (s["reloadFailed"] == true).then_some(())
        })
        .await;
    assert!(
        reloading.is_some(),
        "the standby's reload did not start\n{}",
        c.logs()
    );
    let unhealthy = c
        .wait(Duration::from_secs(5), || async {
            let s = c.status(active).await?;
            (!s.nodes[1].jenkins_healthy).then_some(())
        })
        .await;
    assert!(
        unhealthy.is_some(),
        "the stuck standby still says it is healthy\n{}",
        c.logs()
    );
    // The active's Jenkins dies long before the standby's reload timeout.
    let killed = Instant::now();
    c.kill_jenkins(active);
    let (sb, claimed) = observe_until(&c, Duration::from_secs(6), || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    assert!(!claimed, "a standby stuck at 503 took over\n{}", c.logs());
    assert_eq!(sb.total(), 0, "{sb:?}");
    assert!(killed.elapsed() < reload_timeout);
    let s = c.status(standby).await.expect("the standby answers");
    assert_eq!(s.active, None, "{s:?}");
    assert!(
        s.nodes[0].reason.contains("NO ACTIVE NODE")
            && s.nodes[0].reason.contains("reloading (503"),
        "status must say why: {}",
        s.nodes[0].reason
    );
    assert_eq!(terms(&c), 1, "a term was claimed\n{}", c.logs());
    // Past the reload timeout the reload has failed: restart_command runs.
    let flag = c.dir.join(format!("restart-{}", NAMES[standby]));
    let ran = c
        .wait(reload_timeout + Duration::from_secs(5), || async {
            flag.exists().then_some(())
        })
        .await;
    assert!(ran.is_some(), "restart_command did not run\n{}", c.logs());
    let s = c.status(standby).await.expect("the standby answers");
    assert!(s.nodes[0].reload_failed, "{s:?}");
    assert!(
        s.nodes[0].reason.contains("failed its last reload"),
        "{}",
        s.nodes[0].reason
    );
    // Restarted healthy (what the restart command would do), it takes over.
    c.kill_jenkins(standby);
    c.start_jenkins(standby);
    let served = c.wait_served_by(0, standby, Duration::from_secs(15)).await;
    assert!(
        served.is_some(),
        "the restarted standby did not take over\n{}",
        c.logs()
    );
}

/// A heartbeat signed with the right token that claims a future term and the active role is
/// flagged, not believed: the lease decides the roles `status` shows, so it shows one active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_future_term_heartbeat_leaves_one_active_in_status() {
    let (c, active) = started(Spec::default()).await;
    let standby = 1 - active;
    // Pretend to be the standby, with the real token, to the active.
    let url = format!("http://127.0.0.1:{}/v1/heartbeat", c.hosts[active].api_port);
    let forged = serde_json::json!({
        "name": NAMES[standby], "role": "active", "term": 99, "jenkins": "up",
        "jenkins_healthy": true, "serving": true
    })
    .to_string();
    let bearer = format!("Bearer {}", cluster::CLUSTER_TOKEN);
    let headers = vec![(
        hyper::header::AUTHORIZATION,
        hyper::header::HeaderValue::from_str(&bearer).unwrap(),
    )];
    let r = c
        .http
        .send(
            hyper::Method::POST,
            &url,
            &headers,
            forged.into(),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    let s = c.status(active).await.unwrap();
    let actives: Vec<&str> = s
        .nodes
        .iter()
        .filter(|n| n.role.as_str() == "active")
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(actives, [NAMES[active]], "{s:?}");
    assert_eq!(s.active.as_deref(), Some(NAMES[active]));
    let flagged = s.nodes[1]
        .contradiction
        .as_deref()
        .unwrap_or_else(|| panic!("the forged heartbeat is not flagged: {s:?}"));
    assert!(flagged.contains("says it is active"), "{flagged}");
    let (_, table, _) = tokio::task::block_in_place(|| c.cli(active, &["status"]));
    assert!(table.contains("the lease is believed"), "{table}");
    // And nothing moved.
    assert_eq!(terms(&c), 1);
    assert_eq!(c.active_code(active).await, Some(200));
}

/// A hung Jenkins (connections accepted, answers only after three health-check timeouts, like a
/// GC pause). Checks overlap, so the failures are confirmed about `jenkins.timeout + (fall − 1) ×
/// interval / 4` after the hang, not `fall × jenkins.timeout`: the standby takes over, and the
/// hung one is fenced (its quiet-down lands within the fencing call's longer timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_12c_a_hung_jenkins_is_failed_away_from_without_waiting_fall_timeouts() {
    let spec = Spec::default();
    let (c, active) = started(spec).await;
    let standby = 1 - active;
    let hung = Instant::now();
    // jenkins.timeout is 500 ms at this interval.
    c.post(c.hosts[active].jenkins_port, "/standin/delay?ms=1500")
        .await
        .unwrap();
    let (sb, ok) = observe_until(&c, Duration::from_secs(20), || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    assert!(ok, "a hung Jenkins was not failed away from\n{}", c.logs());
    let took = hung.elapsed();
    eprintln!("row 12c: the standby was active {took:?} after its peer's Jenkins hung");
    assert_eq!(sb.total(), 0, "{sb:?}");
    assert_no_split_brain(&c, &sb, Duration::from_secs(1)).await;
    let routed = c.wait_routed(0, standby, Duration::from_secs(5)).await;
    assert!(routed, "HAProxy not routed to the new active");
}
