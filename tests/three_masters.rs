//! Three masters: three Jenkins stand-ins on one JENKINS_HOME, a sidecar beside each (configured
//! with `peers:`), one real HAProxy with three servers per backend, on the term files and on a
//! real 3-member etcd. Every test runs on both lease backends and watches for split brain every
//! 100 ms (two servers out of maint in a backend, two `/active` 200, two Jenkins out of
//! quiet-down, out of any two of the three); each ends with zero samples of it.
//!
//! What a user of three masters checks: one active at any start, the best-ranked healthy standby
//! takes over (a higher `failover_priority`, then a more current Jenkins, then the lower name), a
//! priority-0 node never takes over on its own, a frozen active steps down when it wakes, a
//! standby cut off from the other hosts causes no failover, and `failover --to` moves the active
//! to any node, from any node.

#[path = "../lab/cluster.rs"]
mod cluster;
#[path = "../lab/etcd.rs"]
mod etcd;

use std::time::{Duration, Instant};

use cluster::{Cluster, Spec, SplitBrain, NODE_NAMES};
use etcd::EtcdCluster;
use nix::sys::signal::Signal;

/// Where the lease lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// Term files on the shared JENKINS_HOME.
    File,
    /// A real 3-member etcd cluster.
    Etcd,
}

/// A lease backend to build clusters on: the etcd members, if any, live as long as this.
struct Lease {
    etcd: Option<EtcdCluster>,
    /// One key prefix per cluster built on the same etcd.
    clusters: usize,
}

impl Lease {
    fn new(backend: Backend) -> Lease {
        Lease {
            etcd: (backend == Backend::Etcd).then(|| EtcdCluster::start(3)),
            clusters: 0,
        }
    }

    /// Three masters on this backend. The file lease keeps the harness's timings (interval
    /// 200 ms, lease_timeout 2 s); etcd gets a lease that outlives an etcd election (interval
    /// 500 ms, lease_timeout 4 s), as in `tests/etcd_failover.rs`.
    fn spec(&mut self, priorities: &[u32]) -> Spec {
        self.clusters += 1;
        let base = Spec {
            nodes: 3,
            priorities: priorities.to_vec(),
            ..Spec::default()
        };
        match &self.etcd {
            None => base,
            Some(etcd) => Spec {
                interval: Duration::from_millis(500),
                lease_timeout: Duration::from_secs(4),
                etcd_lease: Some((
                    etcd.endpoints(),
                    format!("/jenkins-ha/three-{}", self.clusters),
                )),
                ..base
            },
        }
    }
}

/// One cluster at a time: up to three etcd members, three stand-ins, three sidecars and HAProxy
/// share two cores.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Samples split brain into `sb` every 100 ms until `until` says stop or `timeout` passes;
/// returns whether it stopped.
async fn observe_until<F, Fut>(
    c: &Cluster,
    sb: &mut SplitBrain,
    timeout: Duration,
    mut until: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        let tick = Instant::now();
        c.sample_once(sb, true).await;
        if until().await {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        let spent = tick.elapsed();
        if spent < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(100) - spent).await;
        }
    }
}

/// Samples split brain into `sb` for `duration`.
async fn observe_for(c: &Cluster, sb: &mut SplitBrain, duration: Duration) {
    observe_until(c, sb, duration, || async { false }).await;
}

/// Waits (sampling) until host `i` answers `/active` 200 and HAProxy routes to it alone.
async fn wait_taken_over(c: &Cluster, sb: &mut SplitBrain, i: usize, timeout: Duration) -> bool {
    observe_until(c, sb, timeout, || async {
        c.active_code(i).await == Some(200) && c.routed_only_to(0, i).await
    })
    .await
}

/// Starts host `first`'s sidecar alone and waits until it is active, then the others, and waits
/// until the cluster has settled with `first` active and every node has heard every standby
/// current (the ranking among equal priorities depends on it).
async fn started_with_active(spec: Spec, first: usize) -> Cluster {
    let mut c = Cluster::prepare(spec);
    c.start_sidecar(first);
    assert_eq!(
        c.wait_one_active(Duration::from_secs(20)).await,
        Some(first),
        "{} did not become active alone\n{}",
        c.name(first),
        c.logs()
    );
    for i in c.others(first) {
        c.start_sidecar(i);
    }
    assert_eq!(c.settle().await, first);
    let standbys: Vec<(usize, bool)> = c.others(first).into_iter().map(|i| (i, true)).collect();
    assert!(
        seen_current_everywhere(&c, &standbys).await,
        "the standbys are not current in every node's view\n{}",
        c.logs()
    );
    c
}

/// Waits until every node's `status` shows each listed host healthy and with the given
/// `current` (a Jenkins with no reload pending), so that the ranking every standby computes from
/// heartbeats agrees.
async fn seen_current_everywhere(c: &Cluster, want: &[(usize, bool)]) -> bool {
    c.wait(Duration::from_secs(15), || async {
        for i in 0..c.hosts.len() {
            let s = c.status(i).await?;
            for &(j, current) in want {
                let row = s.nodes.iter().find(|n| n.name == c.name(j))?;
                if row.current != current || !row.jenkins_healthy {
                    return None;
                }
            }
        }
        Some(())
    })
    .await
    .is_some()
}

/// The lease as host `i` reports it: (term, holder).
async fn lease_of(c: &Cluster, i: usize) -> (Option<u64>, Option<String>) {
    let s = c
        .status(i)
        .await
        .unwrap_or_else(|| panic!("{} does not answer /status", c.name(i)));
    (s.lease.term, s.lease.holder)
}

/// The last decision's sentence of host `i`.
async fn reason_of(c: &Cluster, i: usize) -> String {
    c.status(i)
        .await
        .map(|s| s.nodes[0].reason.clone())
        .unwrap_or_default()
}

/// Samples during a planned switchover until `until` says stop or `timeout` passes: every
/// criterion is recorded in `sb`, but only its Jenkins one (`both_unquiet`) must stay 0 there.
async fn watch_switchover<F, Fut>(
    c: &Cluster,
    sb: &mut SplitBrain,
    timeout: Duration,
    until: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    observe_until(c, sb, timeout, until).await
}

/// Runs a `jenkins-ha` subcommand with host `i`'s config on a blocking thread, so that the
/// caller can sample while it runs; (exit code, stdout, stderr).
fn cli_in_background(
    c: &Cluster,
    i: usize,
    args: &[&str],
) -> tokio::task::JoinHandle<(Option<i32>, String, String)> {
    let program = cluster::binaries().join("jenkins-ha");
    let config = c.hosts[i].config.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(program)
            .args(&args)
            .arg("-c")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run jenkins-ha");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

fn assert_no_split(sb: &SplitBrain, c: &Cluster) {
    assert_eq!(sb.total(), 0, "split brain: {sb:?}\n{}", c.logs());
    eprintln!("{} samples, no split brain", sb.samples);
}

/// Every test once per backend.
macro_rules! on_both_backends {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file() {
                super::$test(super::Backend::File).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                super::$test(super::Backend::Etcd).await;
            }
        }
    };
}

/// All three sidecars start at the same moment, ten times over, each time on a fresh cluster:
/// exactly one becomes active and HAProxy routes to it alone, never to two, and no two Jenkins
/// are out of quiet-down (they start quiet, as the README's init.groovy.d script makes them).
async fn simultaneous_start_elects_exactly_one(backend: Backend) {
    let _serial = serial().await;
    let mut lease = Lease::new(backend);
    let mut wins = [0usize; 3];
    let mut sb = SplitBrain::default();
    for round in 0..10 {
        let mut c = Cluster::prepare(lease.spec(&[]));
        // Back to back: the three processes start within a millisecond of each other.
        for i in 0..3 {
            c.start_sidecar(i);
        }
        let settled = observe_until(&c, &mut sb, Duration::from_secs(20), || async {
            match c.active_nodes().await[..] {
                [one] => c.routed_only_to(0, one).await,
                _ => false,
            }
        })
        .await;
        assert!(settled, "round {round}: no single active\n{}", c.logs());
        let active = c.settle().await;
        observe_for(&c, &mut sb, Duration::from_secs(1)).await;
        assert_eq!(c.active_nodes().await, vec![active], "round {round}");
        assert!(c.routed_only_to(0, active).await, "round {round}");
        assert_eq!(lease_of(&c, active).await.0, Some(1), "round {round}");
        assert_no_split(&sb, &c);
        wins[active] += 1;
    }
    eprintln!(
        "{backend:?}: active after a simultaneous start: {}",
        (0..3)
            .map(|i| format!("{} {} times", NODE_NAMES[i], wins[i]))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
on_both_backends!(simultaneous_start_elects_exactly_one);

/// Priorities 1, 2 and 5, the priority-1 node active: when its Jenkins is killed, the priority-5
/// node takes over, although jenkins02 has the lower name. Then jenkins01's Jenkins comes back
/// and jenkins03's is killed: the priority-2 node takes over, although jenkins01 has the lower
/// name.
async fn crash_the_highest_priority_standby_takes_over(backend: Backend) {
    let _serial = serial().await;
    let mut lease = Lease::new(backend);
    let mut c = started_with_active(lease.spec(&[1, 2, 5]), 0).await;
    let (term, _) = lease_of(&c, 0).await;
    let term = term.expect("a term");
    let mut sb = SplitBrain::default();
    observe_for(&c, &mut sb, Duration::from_millis(500)).await;
    c.kill_jenkins(0);
    assert!(
        wait_taken_over(&c, &mut sb, 2, Duration::from_secs(20)).await,
        "jenkins03 (priority 5) did not take over\n{}",
        c.logs()
    );
    observe_for(&c, &mut sb, Duration::from_secs(2)).await;
    assert_eq!(c.active_nodes().await, vec![2]);
    assert_eq!(
        lease_of(&c, 1).await,
        (Some(term + 1), Some("jenkins03".to_string())),
        "one new term, jenkins03's"
    );
    assert_eq!(c.quieting_down(1).await, Some(true));

    c.start_jenkins(0);
    assert_eq!(c.settle().await, 2);
    c.kill_jenkins(2);
    assert!(
        wait_taken_over(&c, &mut sb, 1, Duration::from_secs(20)).await,
        "jenkins02 (priority 2) did not take over\n{}",
        c.logs()
    );
    observe_for(&c, &mut sb, Duration::from_secs(2)).await;
    assert_eq!(c.active_nodes().await, vec![1]);
    assert_eq!(
        lease_of(&c, 0).await,
        (Some(term + 2), Some("jenkins02".to_string()))
    );
    assert!(c.routed_only_to(0, 1).await);
    assert_eq!(c.quieting_down(0).await, Some(true));
    assert_no_split(&sb, &c);
}
on_both_backends!(crash_the_highest_priority_standby_takes_over);

/// Equal priorities: when the active's Jenkins is killed, the lower name takes over while both
/// standbys are current; and a standby with reloads still pending (not current) lets a current
/// one with a higher name go first.
async fn crash_equal_priorities_the_current_then_the_lower_name(backend: Backend) {
    let _serial = serial().await;
    let mut lease = Lease::new(backend);
    let mut c = Cluster::prepare(lease.spec(&[]));
    // jenkins01 lets changes settle for a minute before reloading: once a standby, a change on
    // disk leaves it not current for that long.
    let config = std::fs::read_to_string(&c.hosts[0].config).unwrap();
    assert!(!config.contains("watch:"), "{config}");
    std::fs::write(
        &c.hosts[0].config,
        format!("{config}watch:\n  debounce: 60s\n"),
    )
    .unwrap();
    c.start_sidecar(0);
    assert_eq!(
        c.wait_one_active(Duration::from_secs(20)).await,
        Some(0),
        "{}",
        c.logs()
    );
    c.start_sidecar(1);
    c.start_sidecar(2);
    assert_eq!(c.settle().await, 0);

    // Both standbys current, equal priorities: the lower name, jenkins02, goes first. (A standby
    // checks what its Jenkins loaded at start and may reload items then: wait until every node
    // has heard both standbys current.)
    assert!(
        seen_current_everywhere(&c, &[(1, true), (2, true)]).await,
        "the standbys are not current in every node's view: {:#?}",
        c.status(0).await
    );
    let mut sb = SplitBrain::default();
    c.kill_jenkins(0);
    assert!(
        wait_taken_over(&c, &mut sb, 1, Duration::from_secs(20)).await,
        "jenkins02 (the lower name) did not take over\n{}",
        c.logs()
    );
    c.start_jenkins(0);
    assert_eq!(c.settle().await, 1);
    observe_for(&c, &mut sb, Duration::from_secs(1)).await;

    // A change on disk: jenkins03 reloads it within a second, jenkins01 holds it for a minute.
    let reloads = |s: Option<jenkins_ha::status::ClusterStatus>| {
        s.map(|s| s.nodes[0].reloads.item + s.nodes[0].reloads.full)
    };
    let before = reloads(c.status(2).await).expect("jenkins03's status");
    cluster::write_job(&c.home, "job-0", "job 0 v2");
    let reloaded = c
        .wait(Duration::from_secs(15), || async {
            (reloads(c.status(2).await)? > before).then_some(())
        })
        .await;
    assert!(reloaded.is_some(), "jenkins03 did not reload\n{}", c.logs());
    assert!(
        seen_current_everywhere(&c, &[(0, false), (2, true)]).await,
        "jenkins03 current and jenkins01 not, in every node's view: {:#?}\n{}",
        c.status(1).await,
        c.logs()
    );
    c.kill_jenkins(1);
    assert!(
        wait_taken_over(&c, &mut sb, 2, Duration::from_secs(20)).await,
        "jenkins03 (current) did not take over before jenkins01 (changes pending)\n{}",
        c.logs()
    );
    observe_for(&c, &mut sb, Duration::from_secs(2)).await;
    assert_eq!(c.active_nodes().await, vec![2]);
    assert_no_split(&sb, &c);
}
on_both_backends!(crash_equal_priorities_the_current_then_the_lower_name);

/// Priorities 1, 1 and 0. Started alone, the priority-0 node does not claim even the first
/// term; with jenkins02 down, killing the active's Jenkins leaves the cluster without an active
/// node rather than let the priority-0 node take over, and jenkins03 says so; once jenkins02 is
/// back, it takes over.
async fn priority_zero_never_takes_over(backend: Backend) {
    let _serial = serial().await;
    let mut lease = Lease::new(backend);
    let mut c = Cluster::prepare(lease.spec(&[1, 1, 0]));
    let lease_timeout = c.spec.lease_timeout;
    let mut sb = SplitBrain::default();
    c.start_sidecar(2);
    let someone = observe_until(&c, &mut sb, lease_timeout * 2, || async {
        !c.active_nodes().await.is_empty()
    })
    .await;
    assert!(!someone, "jenkins03 claimed the first term\n{}", c.logs());
    let said = reason_of(&c, 2).await;
    assert!(
        said.contains("no node holds a term yet") && said.contains("failover_priority is 0"),
        "{said}"
    );
    eprintln!("jenkins03 alone: {said}");
    c.start_sidecar(0);
    assert!(
        wait_taken_over(&c, &mut sb, 0, Duration::from_secs(20)).await,
        "jenkins01 did not claim the first term\n{}",
        c.logs()
    );
    c.start_sidecar(1);
    assert_eq!(c.settle().await, 0);

    c.kill_sidecar(1);
    c.kill_jenkins(1);
    observe_for(&c, &mut sb, Duration::from_secs(1)).await;
    c.kill_jenkins(0);
    let released = observe_until(&c, &mut sb, Duration::from_secs(10), || async {
        c.active_nodes().await.is_empty()
    })
    .await;
    assert!(released, "the active kept serving\n{}", c.logs());
    let said = c
        .wait(lease_timeout * 2, || async {
            let r = reason_of(&c, 2).await;
            r.contains("NO ACTIVE NODE").then_some(r)
        })
        .await
        .unwrap_or_else(|| panic!("jenkins03 did not say NO ACTIVE NODE\n{}", c.logs()));
    assert!(said.contains("failover_priority is 0"), "{said}");
    eprintln!("jenkins03: {said}");
    // Well past the lease: nobody claims, HAProxy routes to nobody.
    let someone = observe_until(&c, &mut sb, lease_timeout * 3, || async {
        !c.active_nodes().await.is_empty()
    })
    .await;
    assert!(!someone, "a node became active\n{}", c.logs());
    // The old active's server is left as it was (a standby never writes to HAProxy), but its
    // `/active` check fails: HAProxy has no server to send a user to.
    let answer = c.through_haproxy(0, "/login").await;
    assert_eq!(
        answer.as_ref().map(|(code, _)| *code),
        Some(503),
        "{answer:?}: HAProxy served a user\n{:?}",
        c.haproxy_states(0).await
    );
    assert!(reason_of(&c, 2).await.contains("NO ACTIVE NODE"));

    // jenkins02 comes back: it may take over, and does.
    c.start_jenkins(1);
    c.start_sidecar(1);
    assert!(
        wait_taken_over(&c, &mut sb, 1, Duration::from_secs(30)).await,
        "jenkins02 did not take over once back\n{}",
        c.logs()
    );
    observe_for(&c, &mut sb, Duration::from_secs(1)).await;
    assert_eq!(c.active_nodes().await, vec![1]);
    assert_no_split(&sb, &c);
}
on_both_backends!(priority_zero_never_takes_over);

/// The active host dies (sidecar and Jenkins killed at once): after lease_timeout, the
/// best-ranked standby (priority 3 over priority 1) takes over, and not sooner.
async fn host_death_the_best_ranked_standby_takes_over_after_the_lease(backend: Backend) {
    let _serial = serial().await;
    let mut lease = Lease::new(backend);
    let mut c = started_with_active(lease.spec(&[2, 1, 3]), 0).await;
    let lease_timeout = c.spec.lease_timeout;
    let interval = c.spec.interval;
    let mut sb = SplitBrain::default();
    observe_for(&c, &mut sb, Duration::from_millis(500)).await;
    c.kill_sidecar(0);
    c.kill_jenkins(0);
    let died = Instant::now();
    assert!(
        wait_taken_over(&c, &mut sb, 2, lease_timeout * 4).await,
        "jenkins03 (priority 3) did not take over\n{}",
        c.logs()
    );
    let took = died.elapsed();
    eprintln!("{backend:?}: jenkins03 served {took:?} after the host died");
    // Its last renewal came at most an interval before the kill.
    assert!(
        took >= lease_timeout - interval,
        "{took:?}: sooner than the lease allows"
    );
    observe_for(&c, &mut sb, Duration::from_secs(2)).await;
    assert_eq!(c.active_nodes().await, vec![2]);
    assert_eq!(lease_of(&c, 1).await.1.as_deref(), Some("jenkins03"));
    assert_eq!(c.settle_with(&[0]).await, 2);
    assert_no_split(&sb, &c);
}
on_both_backends!(host_death_the_best_ranked_standby_takes_over_after_the_lease);

/// The active sidecar freezes (SIGSTOP) past its lease: the best-ranked standby takes over; the
/// frozen node, woken, steps down by its own clock and follows the new term; never two actives.
async fn a_frozen_active_is_replaced_and_steps_down_when_it_wakes(backend: Backend) {
    let _serial = serial().await;
    let mut lease = Lease::new(backend);
    let mut c = started_with_active(lease.spec(&[]), 0).await;
    let lease_timeout = c.spec.lease_timeout;
    let mut sb = SplitBrain::default();
    c.sidecar(0).signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    assert!(
        wait_taken_over(&c, &mut sb, 1, lease_timeout * 4).await,
        "jenkins02 did not take over\n{}",
        c.logs()
    );
    eprintln!(
        "{backend:?}: jenkins02 took over {:?} after SIGSTOP",
        stopped.elapsed()
    );
    // Past the lease, well past the takeover.
    observe_for(&c, &mut sb, lease_timeout).await;
    c.sidecar(0).signal(Signal::SIGCONT);
    let stepped_down = observe_until(&c, &mut sb, Duration::from_secs(10), || async {
        c.status(0).await.is_some_and(|s| {
            s.nodes[0].role.as_str() == "standby" && s.lease.holder.as_deref() == Some("jenkins02")
        })
    })
    .await;
    assert!(stepped_down, "jenkins01 did not step down\n{}", c.logs());
    observe_for(&c, &mut sb, Duration::from_secs(2)).await;
    assert_eq!(c.settle().await, 1);
    assert_no_split(&sb, &c);
}
on_both_backends!(a_frozen_active_is_replaced_and_steps_down_when_it_wakes);

/// jenkins03, a standby, lives in its own network namespace; its link goes down for three lease
/// timeouts while every node still reaches the lease (the shared directory, or etcd over a path
/// the cut leaves alone). No failover: the same term and holder throughout, jenkins03 stays a
/// quiet standby, each side shows the other unreachable; with the link back, all see each other.
async fn a_standby_cut_off_from_the_others_causes_no_failover(backend: Backend) {
    let _serial = serial().await;
    let mut lease = Lease::new(backend);
    let spec = Spec {
        netns_host: Some(2),
        ..lease.spec(&[])
    };
    let lease_timeout = spec.lease_timeout;
    let c = started_with_active(spec, 0).await;
    let ns = c.netns.as_ref().expect("jenkins03's namespace");
    let pid = c.hosts[2].sidecar.as_ref().unwrap().pid();
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap(),
        "jenkins03's sidecar is not in its own namespace"
    );
    let before = lease_of(&c, 0).await;
    let mut sb = SplitBrain::default();
    ns.set_link(false);
    let cut = Instant::now();
    let unreachable = |s: &jenkins_ha::status::ClusterStatus, name: &str| {
        s.nodes
            .iter()
            .any(|n| n.name == name && n.role.as_str() == "unreachable")
    };
    let mut seen = [false; 3];
    while cut.elapsed() < lease_timeout * 3 {
        let tick = Instant::now();
        c.sample_once(&mut sb, true).await;
        for (i, seen) in seen.iter_mut().enumerate() {
            if let Some(s) = c.status(i).await {
                *seen |= if i == 2 {
                    unreachable(&s, "jenkins01") && unreachable(&s, "jenkins02")
                } else {
                    unreachable(&s, "jenkins03")
                };
            }
        }
        assert_eq!(
            c.active_nodes().await,
            vec![0],
            "the active changed during the cut\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed())).await;
    }
    assert_eq!(seen, [true; 3], "each side sees the other unreachable");
    for i in 0..3 {
        assert_eq!(lease_of(&c, i).await, before, "{}'s view", c.name(i));
    }
    // jenkins03 still reads the lease and sees it renewed.
    let s = c.status(2).await.unwrap();
    assert_eq!(s.nodes[0].role.as_str(), "standby", "{:?}", s.nodes[0]);
    assert!(
        s.lease.error.is_none() && s.lease.still_s < lease_timeout.as_secs_f64() / 2.0,
        "{:?}",
        s.lease
    );
    assert_eq!(c.quieting_down(2).await, Some(true));
    assert!(c.routed_only_to(0, 0).await);
    ns.set_link(true);
    assert_eq!(c.settle().await, 0);
    observe_for(&c, &mut sb, Duration::from_secs(1)).await;
    assert_eq!(lease_of(&c, 2).await, before);
    assert_no_split(&sb, &c);
}
on_both_backends!(a_standby_cut_off_from_the_others_causes_no_failover);

/// `jenkins-ha failover --to NODE`, asked on a standby that is not the target (it forwards),
/// on the active, and on the target itself: each time the named node becomes active and HAProxy
/// routes to it alone. `status` on every node lists all three.
///
/// A planned switchover is make-before-break (README, "A planned failover"): the target sets
/// itself `ready` before the old server goes `maint`, and the old active answers `/active` 200
/// until its next tick sees the new term, so that no request finds no server. While it runs,
/// from the command until the old active has stepped down, only the Jenkins criterion is
/// counted (two Jenkins out of quiet-down: two masters that may start builds); between
/// switchovers, all three are.
async fn failover_to_any_node_from_any_node(backend: Backend) {
    let _serial = serial().await;
    let mut lease = Lease::new(backend);
    let c = started_with_active(lease.spec(&[]), 0).await;
    for i in 0..3 {
        let (code, out, err) = c.cli(i, &["status"]);
        assert_eq!(code, Some(0), "{out}{err}");
        for name in ["jenkins01", "jenkins02", "jenkins03"] {
            assert!(
                out.lines().any(|l| l.contains(name)),
                "status on {} does not list {name}:\n{out}",
                c.name(i)
            );
        }
    }
    let mut sb = SplitBrain::default();
    let mut during = SplitBrain::default();
    let mut active = 0;
    // (asked on, target): a standby for another node, the active for another, a standby for
    // itself; `--to jenkins03` from each of the three nodes.
    for (from, to) in [(1, 2), (2, 0), (2, 2), (2, 1), (0, 2)] {
        observe_for(&c, &mut sb, Duration::from_secs(1)).await;
        let target = NODE_NAMES[to];
        let cli = cli_in_background(&c, from, &["failover", "--to", target]);
        let returned = watch_switchover(&c, &mut during, Duration::from_secs(60), || async {
            cli.is_finished()
        })
        .await;
        assert!(
            returned,
            "failover --to {target} did not return\n{}",
            c.logs()
        );
        let (code, out, err) = cli.await.expect("the CLI thread");
        assert_eq!(
            code,
            Some(0),
            "failover --to {target} on {}: {out}{err}\n{}",
            c.name(from),
            c.logs()
        );
        assert!(
            out.contains(&format!(
                "{target} is active and every HAProxy routes to it"
            )),
            "{out}"
        );
        assert!(c.routed_only_to(0, to).await);
        let alone = watch_switchover(&c, &mut during, Duration::from_secs(5), || async {
            c.active_nodes().await == vec![to]
        })
        .await;
        assert!(
            alone,
            "the old active kept answering /active 200\n{}",
            c.logs()
        );
        assert_eq!(c.settle().await, to);
        eprintln!(
            "{backend:?}: failover --to {target} on {} (active was {}): done",
            c.name(from),
            NODE_NAMES[active]
        );
        active = to;
    }
    observe_for(&c, &mut sb, Duration::from_secs(1)).await;
    assert_eq!(
        during.both_unquiet,
        0,
        "two Jenkins out of quiet-down during a switchover: {during:?}\n{}",
        c.logs()
    );
    eprintln!(
        "{backend:?}: during the switchovers, {} of {} samples saw the make-before-break overlap",
        during.haproxy_both_ready + during.both_active,
        during.samples
    );
    for i in 0..3 {
        let (code, out, err) = c.cli(i, &["status"]);
        assert_eq!(code, Some(0), "{out}{err}");
        let rows: Vec<&str> = out
            .lines()
            .filter(|l| NODE_NAMES[..3].iter().any(|n| l.contains(n)))
            .collect();
        assert!(rows.len() >= 3, "status on {}:\n{out}", c.name(i));
        let s = c.status(i).await.unwrap();
        assert_eq!(s.active.as_deref(), Some(NODE_NAMES[active]));
        assert_eq!(s.nodes.len(), 3);
    }
    assert_no_split(&sb, &c);
}
on_both_backends!(failover_to_any_node_from_any_node);

/// Runs `etcdctl` (v3 API) against `etcd` with `args`; panics with its output when it fails.
fn etcdctl(etcd: &EtcdCluster, args: &[&str]) -> String {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("etcdctl is not installed ({e}): run scripts/install-deps"));
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running cluster moved from the lease backend `from` to the other one by the README's
/// procedure ("Moving a running cluster from one backend to the other"): pause the new backend
/// before any node uses it, pause the old one, rewrite every config, restart the standbys, then
/// the active, and resume on the new backend. Never two actives, on either backend: the split
/// brain criteria are sampled throughout, and the active keeps serving until its own restart.
/// Then one node is active on the new backend, and the old backend stays paused.
async fn moving_a_running_cluster_to_the_other_lease_backend(from: Backend) {
    let _serial = serial().await;
    let etcd = EtcdCluster::start(3);
    let prefix = "/jenkins-ha/moved";
    let on_etcd = Some((etcd.endpoints(), prefix.to_string()));
    let spec = Spec {
        nodes: 3,
        interval: Duration::from_millis(500),
        lease_timeout: Duration::from_secs(4),
        etcd_lease: if from == Backend::Etcd {
            on_etcd.clone()
        } else {
            None
        },
        ..Spec::default()
    };
    let lease_timeout = spec.lease_timeout;
    let mut c = started_with_active(spec, 0).await;
    let mut sb = SplitBrain::default();
    let old_term = lease_of(&c, 0).await.0.expect("a term");

    // 1-2. The new backend is paused before any node uses it.
    let pause_file = c.lease_dir().join("paused");
    match from {
        Backend::File => {
            assert_eq!(etcdctl(&etcd, &["get", "--prefix", prefix]), "");
            etcdctl(
                &etcd,
                &["put", &format!("{prefix}/paused"), "paused for the move"],
            );
        }
        Backend::Etcd => {
            std::fs::create_dir_all(c.lease_dir()).unwrap();
            std::fs::write(&pause_file, "paused for the move\n").unwrap();
        }
    }
    // 3. The old backend too, from any node.
    let (code, out, err) = c.cli(1, &["pause"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // 4. Every config points at the new backend; nothing restarts yet.
    c.set_lease(match from {
        Backend::File => on_etcd.clone(),
        Backend::Etcd => None,
    });
    // 5. The standbys, one by one: each comes back a quiet, paused standby of the new lease, and
    // jenkins01 serves throughout.
    for i in [1, 2] {
        assert_eq!(
            c.restart_sidecar(i),
            Some(0),
            "{} stopped cleanly",
            c.name(i)
        );
        let back = observe_until(&c, &mut sb, Duration::from_secs(15), || async {
            c.status(i).await.is_some_and(|s| {
                s.nodes[0].role.as_str() == "standby"
                    && s.nodes[0].reason
                        == "standby: no node holds a term, and the cluster is paused"
            })
        })
        .await;
        assert!(back, "{} is not a paused standby\n{}", c.name(i), c.logs());
        assert_eq!(c.active_nodes().await, vec![0]);
        assert!(c.routed_only_to(0, 0).await);
        assert_eq!(c.quieting_down(i).await, Some(true));
    }
    observe_for(&c, &mut sb, Duration::from_secs(1)).await;
    assert_eq!(c.active_nodes().await, vec![0]);
    // 6. The active: it releases its term on the old backend, and nobody serves.
    assert_eq!(c.restart_sidecar(0), Some(0), "jenkins01 stopped cleanly");
    let stopped = observe_until(&c, &mut sb, Duration::from_secs(10), || async {
        c.active_nodes().await.is_empty()
    })
    .await;
    assert!(stopped, "{}", c.logs());
    // Nobody claims on either backend while both are paused, well past the lease.
    let someone = observe_until(&c, &mut sb, lease_timeout * 2, || async {
        !c.active_nodes().await.is_empty()
    })
    .await;
    assert!(!someone, "a node claimed while paused\n{}", c.logs());
    // 7. Resume, on the new backend.
    let (code, out, err) = c.cli(2, &["resume"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let one = observe_until(&c, &mut sb, Duration::from_secs(30), || async {
        match c.active_nodes().await[..] {
            [one] => c.routed_only_to(0, one).await,
            _ => false,
        }
    })
    .await;
    assert!(one, "no node became active after resume\n{}", c.logs());
    let active = c.settle().await;
    observe_for(&c, &mut sb, Duration::from_secs(2)).await;
    // 8. Every node reads the new lease; the old one keeps its pause, and its last term released.
    let (term, holder) = lease_of(&c, active).await;
    assert_eq!(holder.as_deref(), Some(c.name(active)));
    for i in 0..3 {
        assert_eq!(
            lease_of(&c, i).await,
            (term, holder.clone()),
            "{}",
            c.name(i)
        );
        let (code, out, err) = c.cli(i, &["status"]);
        assert_eq!(code, Some(0), "{out}{err}");
    }
    match from {
        Backend::File => {
            assert_eq!(term, Some(1), "the first term on an empty etcd prefix");
            assert!(pause_file.exists(), "the old backend is still paused");
            let newest = c.term_files().pop().expect("term files");
            let record = std::fs::read_to_string(c.lease_dir().join(&newest)).unwrap();
            assert_eq!(newest, format!("term-{old_term}"));
            assert!(record.contains("\"released\":true"), "{record}");
        }
        Backend::Etcd => {
            assert_eq!(term, Some(1), "the first term in an empty lease directory");
            assert!(!etcdctl(&etcd, &["get", &format!("{prefix}/paused")]).is_empty());
            let record = etcdctl(&etcd, &["get", &format!("{prefix}/terms/{old_term:020}")]);
            assert!(record.contains("\"released\":true"), "{record}");
        }
    }
    eprintln!(
        "{from:?} to the other backend: {} active on term {term:?}",
        c.name(active)
    );
    assert_no_split(&sb, &c);
}
on_both_backends!(moving_a_running_cluster_to_the_other_lease_backend);
