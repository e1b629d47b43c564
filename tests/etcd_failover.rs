//! Two sidecars on `lease.backend: etcd` (a real 3-member etcd cluster), real HAProxy and the
//! Jenkins stand-ins: what the cluster does when etcd loses its raft leader, loses quorum, has
//! every member restarted in turn, when the active is cut off from etcd (a network namespace),
//! or when the active sidecar freezes. An observer samples split brain every 100 ms throughout;
//! every test ends with zero samples of it.

#[path = "../lab/cluster.rs"]
mod cluster;
#[path = "../lab/etcd.rs"]
mod etcd;

use std::time::{Duration, Instant};

use cluster::{Cluster, Spec, SplitBrain, NAMES};
use etcd::EtcdCluster;
use nix::sys::signal::Signal;

/// A lease that outlives an etcd election (about 1-2 s with etcd's default timings): the
/// holder trusts it for 3 s after each renewal (margin 1 s), renewing every 500 ms.
fn spec(etcd: &EtcdCluster) -> Spec {
    Spec {
        interval: Duration::from_millis(500),
        lease_timeout: Duration::from_secs(4),
        etcd_lease: Some((etcd.endpoints(), "/jenkins-ha/test".into())),
        ..Spec::default()
    }
}

/// Samples until `until` says stop or `timeout` passes; returns the samples and whether it stopped.
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

/// One cluster at a time: three etcd members, two stand-ins, two sidecars and HAProxy each.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

async fn term_of(c: &Cluster, i: usize) -> Option<u64> {
    c.status(i).await.and_then(|s| s.nodes[0].term)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_etcd_leader_causes_no_failover() {
    let _serial = serial().await;
    let mut etcd = EtcdCluster::start(3);
    let (c, active) = Cluster::start_settled(spec(&etcd)).await;
    let term = term_of(&c, active).await;
    let leader = etcd.leader().expect("an etcd leader");
    etcd.kill(leader);
    let (sb, _) = observe_until(&c, Duration::from_secs(8), || async { false }).await;
    assert_eq!(sb.total(), 0, "{sb:?}");
    assert_eq!(
        c.active_code(active).await,
        Some(200),
        "the active lost its lease\n{}",
        c.logs()
    );
    assert_eq!(term_of(&c, active).await, term, "a failover happened");
    assert_eq!(term_of(&c, 1 - active).await, term);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_quorum_the_active_steps_down_and_nobody_claims_until_it_returns() {
    let _serial = serial().await;
    let mut etcd = EtcdCluster::start(3);
    let (c, active) = Cluster::start_settled(spec(&etcd)).await;
    let lease_timeout = c.spec.lease_timeout;
    let term = term_of(&c, active).await.expect("a term");
    // Keep the member the sidecars may talk to last, kill the other two.
    let survivor = etcd.leader().expect("an etcd leader");
    for i in (0..3).filter(|&i| i != survivor) {
        etcd.kill(i);
    }
    let lost = Instant::now();
    let (mut sb, stepped_down) = observe_until(&c, lease_timeout * 2, || async {
        c.active_code(active).await != Some(200)
    })
    .await;
    assert!(stepped_down, "the active kept serving\n{}", c.logs());
    let took = lost.elapsed();
    eprintln!("quorum lost: the active stepped down after {took:?}");
    assert!(took <= lease_timeout, "{took:?}");
    // Nobody is active while etcd has no quorum.
    let (sb2, someone) = observe_until(&c, Duration::from_secs(5), || async {
        c.active_code(0).await == Some(200) || c.active_code(1).await == Some(200)
    })
    .await;
    assert!(
        !someone,
        "a node became active without quorum\n{}",
        c.logs()
    );
    sb.samples += sb2.samples;
    assert_eq!(sb.total() + sb2.total(), 0, "{sb:?} {sb2:?}");

    for i in (0..3).filter(|&i| i != survivor) {
        etcd.restart(i);
    }
    let back = Instant::now();
    let (sb3, recovered) = observe_until(&c, Duration::from_secs(30), || async {
        c.active_code(0).await == Some(200) || c.active_code(1).await == Some(200)
    })
    .await;
    assert!(recovered, "no node became active again\n{}", c.logs());
    eprintln!(
        "quorum back: a node was active again after {:?}",
        back.elapsed()
    );
    let now = c.settle().await;
    let (sb4, _) = observe_until(&c, Duration::from_secs(2), || async { false }).await;
    assert_eq!(sb3.total() + sb4.total(), 0, "{sb3:?} {sb4:?}");
    assert!(
        term_of(&c, now).await > Some(term),
        "a new term after the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_active_is_replaced_once_its_etcd_lease_expires() {
    let _serial = serial().await;
    let etcd = EtcdCluster::start(3);
    let (mut c, active) = Cluster::start_settled(spec(&etcd)).await;
    let standby = 1 - active;
    let lease_timeout = c.spec.lease_timeout;
    c.sidecar(active).signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    let (sb, took_over) = observe_until(&c, lease_timeout * 4, || async {
        c.active_code(standby).await == Some(200)
    })
    .await;
    assert!(took_over, "no takeover\n{}", c.logs());
    let took = stopped.elapsed();
    eprintln!("{} took over {took:?} after SIGSTOP", NAMES[standby]);
    // Its last renewal came at most an interval before the freeze.
    let floor = lease_timeout - c.spec.interval;
    assert!(took >= floor, "{took:?}: sooner than the lease allows");
    c.sidecar(active).signal(Signal::SIGCONT);
    // The old active wakes up, checks its clock first, and follows the new term.
    let (sb2, _) = observe_until(&c, Duration::from_secs(3), || async { false }).await;
    assert_eq!(sb.total() + sb2.total(), 0, "{sb:?} {sb2:?}");
    assert_eq!(c.settle().await, standby);
}

/// Every etcd member restarted in turn (`kill -9`, then started again on its data; the next one
/// only once it is healthy again, so quorum holds throughout, and the leader's restart forces an
/// election): no failover, the same term and holder, zero split-brain samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_etcd_member_in_turn_causes_no_failover() {
    let _serial = serial().await;
    let mut etcd = EtcdCluster::start(3);
    let (c, active) = Cluster::start_settled(spec(&etcd)).await;
    let term = term_of(&c, active).await.expect("a term");
    let mut sb = SplitBrain::default();
    for i in 0..3 {
        let was_leader = etcd.is_leader(i);
        etcd.restart(i);
        let (s, back) = observe_until(&c, Duration::from_secs(30), || async {
            etcd.member_healthy(i)
        })
        .await;
        sb.add(&s);
        assert!(back, "etcd member {i} never came back\n{}", etcd.logs());
        eprintln!("etcd member {i} restarted (it was the leader: {was_leader})");
        // A few intervals with it back before the next one goes.
        let (s, _) = observe_until(&c, Duration::from_secs(2), || async { false }).await;
        sb.add(&s);
        assert_eq!(
            c.active_code(active).await,
            Some(200),
            "the active lost its lease when member {i} restarted\n{}",
            c.logs()
        );
    }
    assert_eq!(sb.total(), 0, "{sb:?}");
    assert_eq!(term_of(&c, active).await, Some(term), "a failover happened");
    assert_eq!(term_of(&c, 1 - active).await, Some(term));
    assert_eq!(c.settle().await, active);
}

/// jenkins02 runs in its own network namespace and reaches etcd by a path apart from the hosts'
/// network; it is the active. That path is cut like a dropped link (open connections carry
/// nothing, new ones are never answered), while the hosts still reach each other. It cannot
/// renew: it steps down by its own clock within `lease_timeout` (`/active` 503, its Jenkins
/// quiet), and jenkins01 takes over once etcd has expired the lease (its TTL), not before. With
/// the path back, jenkins02 rejoins as a standby. Zero split-brain samples throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_etcd_steps_down_and_the_standby_takes_over_after_the_ttl() {
    let _serial = serial().await;
    let etcd = EtcdCluster::start(3);
    let spec = Spec {
        netns_host: Some(1),
        ..spec(&etcd)
    };
    let (interval, lease_timeout) = (spec.interval, spec.lease_timeout);
    let mut c = Cluster::prepare(spec);
    c.start_sidecar(1);
    assert_eq!(
        c.wait_one_active(Duration::from_secs(20)).await,
        Some(1),
        "jenkins02 did not become active alone\n{}",
        c.logs()
    );
    c.start_sidecar(0);
    assert_eq!(c.settle().await, 1);
    let term = term_of(&c, 1).await.expect("a term");
    let ns = c.netns.as_ref().expect("jenkins02's namespace");
    ns.cut_out(true);
    let cut = Instant::now();
    let (mut sb, stepped_down) = observe_until(&c, lease_timeout * 2, || async {
        c.active_code(1).await != Some(200)
    })
    .await;
    assert!(
        stepped_down,
        "the cut-off active kept serving\n{}",
        c.logs()
    );
    let stepped = cut.elapsed();
    eprintln!("cut off from etcd: jenkins02 stepped down after {stepped:?}");
    assert!(stepped <= lease_timeout, "{stepped:?}");
    let (s, took_over) = observe_until(&c, lease_timeout * 4, || async {
        c.active_code(0).await == Some(200)
    })
    .await;
    sb.add(&s);
    assert!(took_over, "jenkins01 never took over\n{}", c.logs());
    let took = cut.elapsed();
    eprintln!("jenkins01 took over {took:?} after the cut");
    // The holder's last keep-alive came at most an interval before the cut.
    assert!(
        took >= lease_timeout - interval,
        "{took:?}: sooner than the lease allows"
    );
    assert!(term_of(&c, 0).await > Some(term), "a new term");
    assert_eq!(
        c.quieting_down(1).await,
        Some(true),
        "the cut-off node's Jenkins is not quiet"
    );
    ns.cut_out(false);
    let (s, _) = observe_until(&c, Duration::from_secs(3), || async { false }).await;
    sb.add(&s);
    assert_eq!(c.settle().await, 0);
    let s = c.status(1).await.expect("jenkins02's status");
    assert_eq!(s.nodes[0].role.as_str(), "standby", "{:?}", s.nodes[0]);
    assert_eq!(sb.total(), 0, "{sb:?}");
}
