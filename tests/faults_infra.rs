//! Faults of the infrastructure under the sidecars, injected for real: the shared storage hangs or
//! disappears under the active node (each node sees JENKINS_HOME through its own bindfs (FUSE)
//! mount, the NFS stand-in), and the network link between the two hosts is cut (host 1 lives in
//! its own network namespace behind a veth pair).
//!
//! Every test samples the whole cluster every ~100 ms through the fault and the recovery and
//! asserts that no sample shows a split brain: both servers out of maint in a backend, two
//! `/active` 200s, or two Jenkins out of quiet-down. Each ends with exactly one healthy active
//! that HAProxy routes to.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use cluster::{Cluster, Spec, SplitBrain, NAMES};

/// Starts a cluster and waits until it is settled: one active that HAProxy routes to and serves
/// from, its Jenkins out of quiet-down, the standby's quiet, heartbeats flowing both ways.
async fn started(spec: Spec) -> (Cluster, usize) {
    let c = Cluster::start(spec);
    let active = c
        .wait_one_active(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no single active node\n{}", c.logs()));
    settled(&c, active).await;
    (c, active)
}

/// Waits until `active` serves through HAProxy, promoted, with the other node a quiet standby,
/// and both sidecars hear each other.
async fn settled(c: &Cluster, active: usize) {
    let standby = 1 - active;
    assert!(
        c.wait_routed(0, active, Duration::from_secs(5)).await,
        "HAProxy not routed to {}\n{}",
        NAMES[active],
        c.logs()
    );
    assert!(
        c.wait_served_by(0, active, Duration::from_secs(10))
            .await
            .is_some(),
        "HAProxy does not serve from {}\n{}",
        NAMES[active],
        c.logs()
    );
    let ok = c
        .wait(Duration::from_secs(10), || async {
            let a = c.status(active).await?;
            let s = c.status(standby).await?;
            // The active's promotion (its catch-up, then cancel quiet-down) is over.
            let promoted = a.nodes[0].jenkins == "up"
                && a.nodes[0].promotion.as_ref().map(|p| p.term) == a.nodes[0].term;
            let ok = promoted
                && a.nodes[1].role.as_str() == "standby"
                && s.nodes[1].role.as_str() == "active"
                && c.quieting_down(standby).await == Some(true)
                && c.quieting_down(active).await == Some(false);
            ok.then_some(())
        })
        .await;
    assert!(ok.is_some(), "the cluster did not settle\n{}", c.logs());
}

/// The term files in the lease directory, read from the shared directory itself (not through a
/// node's mount, which a test may have frozen or unmounted).
fn term_files(c: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(c.home.join(".jenkins-ha"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("term-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The node named in a term file.
fn term_holder(c: &Cluster, term: u64) -> String {
    let path = c.home.join(format!(".jenkins-ha/term-{term}"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("term file")).expect("term record");
    record["node"].as_str().unwrap_or_default().to_string()
}

/// What the sampler saw through one fault, timed from the fault's start.
#[derive(Debug, Default)]
struct Timeline {
    split: SplitBrain,
    /// The faulted node's `/active` first stopped answering 200.
    stepped_down: Option<Duration>,
    /// The peer's `/active` first answered 200.
    peer_active: Option<Duration>,
    /// HAProxy first served a request from the peer's Jenkins, with the peer ready and the
    /// faulted node in maint in every backend.
    peer_served: Option<Duration>,
    /// Samples where the faulted node's `/health` or `/status` did not answer at once (its
    /// decision loop or API blocked on the storage).
    unanswered: Vec<String>,
    /// The faulted node's reason sentences, in order, without repeats.
    reasons: Vec<String>,
}

impl Timeline {
    /// Samples every ~100 ms until the peer took over (`/active`, routed and served) and then
    /// for `settle` more, or until `timeout`.
    async fn through_takeover(
        &mut self,
        c: &Cluster,
        faulted: usize,
        since: Instant,
        timeout: Duration,
        settle: Duration,
    ) {
        let peer = 1 - faulted;
        let mut converged_at: Option<Instant> = None;
        while since.elapsed() < timeout {
            let tick = Instant::now();
            c.sample_once(&mut self.split, true).await;
            self.check_answers(c, faulted, since).await;
            if self.stepped_down.is_none() && c.active_code(faulted).await != Some(200) {
                self.stepped_down = Some(since.elapsed());
            }
            if self.peer_active.is_none() && c.active_code(peer).await == Some(200) {
                self.peer_active = Some(since.elapsed());
            }
            if self.peer_served.is_none()
                && matches!(c.through_haproxy(0, "/login").await,
                    Some((200, Some(node))) if node == NAMES[peer])
                && c.wait_routed(0, peer, Duration::ZERO).await
            {
                self.peer_served = Some(since.elapsed());
            }
            if self.stepped_down.is_some()
                && self.peer_active.is_some()
                && self.peer_served.is_some()
            {
                let at = *converged_at.get_or_insert_with(Instant::now);
                if at.elapsed() >= settle {
                    return;
                }
            }
            pace(tick).await;
        }
    }

    /// The faulted node's `/health` must answer 200 and its `/status` must answer, each within
    /// 500 ms, on every sample: its loop and API never wait for the storage.
    async fn check_answers(&mut self, c: &Cluster, faulted: usize, since: Instant) {
        let port = c.hosts[faulted].api_port;
        let at = since.elapsed();
        let short = Duration::from_millis(500);
        match c.request(hyper::Method::GET, port, "/health", short).await {
            Some(r) if r.status.as_u16() == 200 => {}
            other => self.unanswered.push(format!(
                "{at:?}: /health {:?}",
                other.map(|r| r.status.as_u16())
            )),
        }
        match c.request(hyper::Method::GET, port, "/status", short).await {
            Some(r) if r.status.as_u16() == 200 => {
                if let Ok(s) = serde_json::from_slice::<jenkins_ha::status::ClusterStatus>(&r.body)
                {
                    let reason = format!(
                        "{:.1} s {}: {}",
                        at.as_secs_f64(),
                        s.nodes[0].role.as_str(),
                        s.nodes[0].reason
                    );
                    let shape = |r: &str| strip_numbers(r.split_once(' ').map_or(r, |x| x.1));
                    if self.reasons.last().map(|l| shape(l)) != Some(shape(&reason)) {
                        self.reasons.push(reason);
                    }
                }
            }
            other => self.unanswered.push(format!(
                "{at:?}: /status {:?}",
                other.map(|r| r.status.as_u16())
            )),
        }
    }
}

fn strip_numbers(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_ascii_digit() && *c != '.')
        .collect()
}

/// Sleeps out the rest of a ~100 ms sampling period.
async fn pace(tick: Instant) {
    let spent = tick.elapsed();
    if spent < Duration::from_millis(100) {
        tokio::time::sleep(Duration::from_millis(100) - spent).await;
    }
}

/// Samples until `old` is back as a standby of `new_active` (role standby in its own status and
/// in the active's, following `term`, lease readable, Jenkins quiet, `/active` 503) and then for
/// `settle` more. Returns how long it took.
async fn until_rejoined(
    c: &Cluster,
    split: &mut SplitBrain,
    old: usize,
    term: u64,
    timeout: Duration,
    settle: Duration,
) -> Option<Duration> {
    let new_active = 1 - old;
    let since = Instant::now();
    let mut rejoined: Option<Duration> = None;
    while since.elapsed() < timeout {
        let tick = Instant::now();
        c.sample_once(split, true).await;
        if rejoined.is_none() {
            let mine = c.status(old).await;
            let theirs = c.status(new_active).await;
            let ok = mine.as_ref().is_some_and(|s| {
                s.nodes[0].role.as_str() == "standby"
                    && s.lease.term == Some(term)
                    && s.lease.holder.as_deref() == Some(NAMES[new_active])
                    && s.lease.error.is_none()
                    && s.nodes[1].role.as_str() == "active"
            }) && theirs
                .as_ref()
                .is_some_and(|s| s.nodes[1].role.as_str() == "standby")
                && c.quieting_down(old).await == Some(true)
                && c.active_code(old).await == Some(503);
            if ok {
                rejoined = Some(since.elapsed());
            }
        } else if since.elapsed() >= rejoined.unwrap_or_default() + settle {
            break;
        }
        pace(tick).await;
    }
    rejoined
}

/// Asserts the end state after a takeover by `active`: no split-brain sample, exactly one
/// active, HAProxy routed to it and serving from it, the other node a quiet standby.
async fn assert_one_healthy_active(c: &Cluster, split: &SplitBrain, active: usize) {
    assert_eq!(split.total(), 0, "split-brain samples: {split:?}");
    assert_eq!(
        c.wait_one_active(Duration::from_secs(2)).await,
        Some(active),
        "not exactly one active\n{}",
        c.logs()
    );
    assert!(c.wait_routed(0, active, Duration::from_secs(2)).await);
    assert!(c
        .wait_served_by(0, active, Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(c.quieting_down(active).await, Some(false));
    assert_eq!(c.quieting_down(1 - active).await, Some(true));
    let s = c.status(active).await.expect("the active answers");
    assert_eq!(s.active.as_deref(), Some(NAMES[active]), "{s:?}");
}

/// Asserts the takeover of a storage fault on `faulted`: it stepped down on its own clock before
/// the peer could claim, the peer claimed only after the lease timeout, the faulted node's loop
/// and API kept answering, and the peer holds the next term.
fn assert_takeover(c: &Cluster, t: &Timeline, faulted: usize, spec: &Spec) {
    let peer = 1 - faulted;
    let (Some(down), Some(claimed), Some(served)) = (t.stepped_down, t.peer_active, t.peer_served)
    else {
        panic!("no takeover: {t:#?}\n{}", c.logs());
    };
    eprintln!(
        "{}: stepped down after {down:?}; {} active after {claimed:?}, served through HAProxy after \
         {served:?} (lease_timeout {:?})\n{}: {:#?}",
        NAMES[faulted],
        NAMES[peer],
        spec.lease_timeout,
        NAMES[faulted],
        t.reasons
    );
    assert!(
        t.unanswered.is_empty(),
        "the faulted node stopped answering: {t:#?}"
    );
    assert!(
        down < claimed,
        "the peer claimed before the faulted node stepped down: {t:#?}"
    );
    assert!(
        down <= spec.lease_timeout,
        "stepped down only after {down:?}: the local expiry is late"
    );
    // Its last renewal was at most one interval before the fault.
    assert!(
        claimed >= spec.lease_timeout - spec.interval,
        "the peer claimed after {claimed:?}, before the lease could have run out"
    );
    assert!(
        t.reasons.iter().any(|r| r.contains("stepping down")),
        "no step-down in the faulted node's reasons: {t:#?}"
    );
    assert_eq!(term_files(c), vec!["term-1", "term-2"]);
    assert_eq!(term_holder(c, 2), NAMES[peer]);
}

/// Row 5: the active's storage hangs (its FUSE process is stopped, as a hard-mounted NFS whose
/// server stopped answering). Its loop never blocks on it: it keeps answering, its lease expires
/// by its own clock and it steps down; the peer takes over after the lease timeout. When the
/// storage answers again, the old active comes back as a quiet standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_storage_on_the_active_steps_it_down_and_the_peer_takes_over() {
    let spec = Spec {
        bindfs: true,
        ..Spec::default()
    };
    let (c, active) = started(spec.clone()).await;
    let standby = 1 - active;
    let bind = c.bind.as_ref().expect("bindfs mounts");
    // The FUSE process behind the active's mount, and only that one.
    let pid = bind
        .fuse_pid(active)
        .unwrap_or_else(|| panic!("no bindfs process found for {}", NAMES[active]));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(
        args.last().map(String::as_str),
        Some(c.hosts[active].home.to_str().unwrap()),
        "pid {pid} does not serve the active's mount: {args:?}"
    );
    assert!(args[0].ends_with("bindfs"), "{args:?}");
    assert_ne!(bind.fuse_pid(standby), Some(pid));

    // The guard sends SIGCONT on every path out of this test, or the unmount would hang.
    let mut frozen = bind.freeze(active);
    let since = Instant::now();
    let mut t = Timeline::default();
    t.through_takeover(
        &c,
        active,
        since,
        spec.lease_timeout * 5,
        Duration::from_secs(1),
    )
    .await;
    assert_takeover(&c, &t, active, &spec);
    // Still frozen: the storage really hangs for the old active (a read through its mount does
    // not come back), while it answers on its API as a standby that cannot read the lease.
    let home = c.hosts[active].home.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_dir(home.join(".jenkins-ha")).is_ok());
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the frozen mount answered: the fault was not injected"
    );
    let s = c.status(active).await.expect("the faulted node answers");
    assert_eq!(s.nodes[0].role.as_str(), "standby", "{s:?}");
    assert!(s.lease.error.is_some(), "{s:?}");
    assert_eq!(c.active_code(active).await, Some(503));

    frozen.thaw();
    let thawed = Instant::now();
    let rejoined = until_rejoined(
        &c,
        &mut t.split,
        active,
        2,
        Duration::from_secs(15),
        Duration::from_secs(1),
    )
    .await
    .unwrap_or_else(|| panic!("the old active never rejoined as standby\n{}", c.logs()));
    eprintln!(
        "{} rejoined as standby {rejoined:?} after SIGCONT ({} samples in all, {:?} since the freeze)",
        NAMES[active],
        t.split.samples,
        since.elapsed()
    );
    assert!(thawed.elapsed() < Duration::from_secs(15));
    assert_one_healthy_active(&c, &t.split, standby).await;
    assert!(t.split.samples > 40, "too few samples: {:?}", t.split);
    assert_eq!(term_files(&c), vec!["term-1", "term-2"]);
}

/// Row 6: the active's storage disappears (its mount is lazily unmounted, so its JENKINS_HOME is
/// a bare local directory). It steps down, the peer takes over after the lease timeout, and it
/// writes nothing into the bare mount point. Mounted again, it rejoins as a quiet standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_gone_on_the_active_steps_it_down_and_it_rejoins_when_remounted() {
    let spec = Spec {
        bindfs: true,
        ..Spec::default()
    };
    let (c, active) = started(spec.clone()).await;
    let standby = 1 - active;
    let bind = c.bind.as_ref().expect("bindfs mounts");
    assert!(bind.is_mounted(active));
    // A file held open on the mount, as a JVM holds its logs: the lazily unmounted filesystem
    // lives on until it is closed, so the remount below is a new one (a new device number).
    let held = std::fs::File::open(c.hosts[active].home.join("config.xml")).expect("open");
    let dev_before = std::fs::metadata(&c.hosts[active].home).unwrap().dev();
    let since = Instant::now();
    assert!(bind.unmount(active), "fusermount -u -z failed");
    assert!(!bind.is_mounted(active), "still mounted");
    assert!(bind.is_mounted(standby));
    let mut t = Timeline::default();
    t.through_takeover(
        &c,
        active,
        since,
        spec.lease_timeout * 5,
        Duration::from_secs(1),
    )
    .await;
    assert_takeover(&c, &t, active, &spec);
    let s = c.status(active).await.expect("the faulted node answers");
    assert_eq!(s.nodes[0].role.as_str(), "standby", "{s:?}");
    assert!(
        s.lease
            .error
            .as_deref()
            .is_some_and(|e| e.contains("No such file")),
        "{s:?}"
    );
    // Nothing was created in the bare mount point: a lease directory there would be an empty
    // lease that the node could "win".
    let bare: Vec<_> = std::fs::read_dir(&c.hosts[active].home)
        .expect("the bare mount point")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert!(
        bare.is_empty(),
        "written into the bare mount point: {bare:?}"
    );

    bind.remount(active);
    assert!(bind.is_mounted(active));
    let dev_after = std::fs::metadata(&c.hosts[active].home).unwrap().dev();
    drop(held);
    let rejoined = until_rejoined(
        &c,
        &mut t.split,
        active,
        2,
        Duration::from_secs(15),
        Duration::from_secs(1),
    )
    .await
    .unwrap_or_else(|| panic!("the old active never rejoined as standby\n{}", c.logs()));
    eprintln!(
        "{} rejoined as standby {rejoined:?} after the remount ({} samples in all)",
        NAMES[active], t.split.samples
    );
    assert_one_healthy_active(&c, &t.split, standby).await;
    assert!(t.split.samples > 40, "too few samples: {:?}", t.split);
    assert_eq!(term_files(&c), vec!["term-1", "term-2"]);

    // And it is a standby that stays current: an edit made through the new active's mount
    // reaches its Jenkins, although the storage came back as another mount.
    eprintln!("device of the mount: {dev_before} before, {dev_after} after the remount");
    cluster::write_job(&c.hosts[standby].home, "job-1", "edited after the remount");
    let edited = Instant::now();
    let followed = c
        .wait(Duration::from_secs(8), || async {
            let state = c.jenkins_state(active).await?;
            (state["items"]["job-1"] == "edited after the remount").then(|| edited.elapsed())
        })
        .await;
    let s = c.status(active).await.unwrap();
    let followed = followed.unwrap_or_else(|| {
        panic!(
            "the rejoined standby does not follow JENKINS_HOME: {:?}\n{}",
            s.nodes[0].watch,
            c.logs()
        )
    });
    eprintln!("the rejoined standby followed an edit after {followed:?}");
    let mut split = t.split;
    let after = c.sample_split_brain(Duration::from_millis(500), true).await;
    split.samples += after.samples;
    assert_eq!(after.total(), 0, "{after:?}");
    assert_one_healthy_active(&c, &split, standby).await;
}

/// Row 7: the network between the two hosts is cut while both still reach the storage. Host 1
/// runs in its own network namespace; the namespace's end of the veth goes down for three lease
/// timeouts. Host 0 is made the active first (its sidecar starts alone), so HAProxy, which sits
/// in the root namespace, still reaches the active: with host 1 active the cut would also cut
/// HAProxy from it, an outage of routing that is not this test's subject. Expect no failover at
/// all: same holder, no new term file, no split-brain sample, and each side showing the other
/// unreachable. With the link back, both see each other again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_partition_between_the_hosts_causes_no_failover() {
    let spec = Spec {
        netns_host1: true,
        ..Spec::default()
    };
    let lease_timeout = spec.lease_timeout;
    let mut c = Cluster::prepare(spec);
    let ns = c.netns.as_ref().expect("host 1's namespace");
    eprintln!(
        "host 1 in namespace {} at {} (root side {})",
        ns.name, ns.ns_ip, ns.root_ip
    );
    // Host 1's addresses are the namespace's: in HAProxy and in host 0's config.
    let haproxy_cfg = std::fs::read_to_string(&c.haproxies[0].cfg).unwrap();
    assert!(
        haproxy_cfg.contains(&format!(
            "server {} {}:{} check",
            NAMES[1], ns.ns_ip, c.hosts[1].jenkins_port
        )),
        "{haproxy_cfg}"
    );
    let config0 = std::fs::read_to_string(&c.hosts[0].config).unwrap();
    assert!(
        config0.contains(&format!("url: http://{}:{}", ns.ns_ip, c.hosts[1].api_port)),
        "{config0}"
    );

    c.start_sidecar(0);
    assert_eq!(
        c.wait_one_active(Duration::from_secs(15)).await,
        Some(0),
        "host 0 did not become active alone\n{}",
        c.logs()
    );
    c.start_sidecar(1);
    // Heartbeats flow both ways over the veth before the cut.
    settled(&c, 0).await;
    let pid1 = c.sidecar(1).pid();
    let in_ns = std::fs::read_link(format!("/proc/{pid1}/ns/net")).unwrap();
    let in_root = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        in_ns, in_root,
        "host 1's sidecar is not in its own namespace"
    );
    assert_eq!(term_files(&c), vec!["term-1"]);

    let ns = c.netns.as_ref().unwrap();
    let mut split = SplitBrain::default();
    ns.set_link(false);
    let cut = Instant::now();
    let mut unreachable_at: [Option<Duration>; 2] = [None, None];
    let mut served_by_host0 = 0;
    while cut.elapsed() < lease_timeout * 3 {
        let tick = Instant::now();
        c.sample_once(&mut split, true).await;
        for (i, at) in unreachable_at.iter_mut().enumerate() {
            if at.is_none()
                && c.status(i)
                    .await
                    .is_some_and(|s| s.nodes[1].role.as_str() == "unreachable")
            {
                *at = Some(cut.elapsed());
            }
        }
        if matches!(c.through_haproxy(0, "/login").await, Some((200, Some(n))) if n == NAMES[0]) {
            served_by_host0 += 1;
        }
        pace(tick).await;
    }
    // The cut was real: host 0 cannot reach host 1's API over the veth.
    let url = format!("http://{}:{}/health", ns.ns_ip, c.hosts[1].api_port);
    assert!(
        c.http
            .send(
                hyper::Method::GET,
                &url,
                &[],
                bytes::Bytes::new(),
                Duration::from_millis(500)
            )
            .await
            .is_err(),
        "host 1 still answers over the cut link"
    );
    eprintln!(
        "during the {:?} cut: {} samples, peer unreachable after {:?} (host 0) and {:?} (host 1), \
         {served_by_host0} requests served by host 0",
        cut.elapsed(),
        split.samples,
        unreachable_at[0],
        unreachable_at[1]
    );
    assert_eq!(split.total(), 0, "split-brain during the cut: {split:?}");
    assert!(
        unreachable_at.iter().all(Option::is_some),
        "a side never showed the peer unreachable: {unreachable_at:?}\n{}",
        c.logs()
    );
    assert_eq!(
        term_files(&c),
        vec!["term-1"],
        "a new term was claimed during the partition\n{}",
        c.logs()
    );
    assert_eq!(term_holder(&c, 1), NAMES[0]);
    assert_eq!(c.active_code(0).await, Some(200), "host 0 lost its role");
    assert_eq!(c.active_code(1).await, Some(503));
    let s1 = c
        .status(1)
        .await
        .expect("host 1 answers inside its namespace");
    assert_eq!(s1.nodes[0].role.as_str(), "standby", "{s1:?}");
    assert_eq!(s1.lease.holder.as_deref(), Some(NAMES[0]), "{s1:?}");
    assert!(
        split.samples >= 40 && served_by_host0 >= split.samples * 9 / 10,
        "HAProxy did not keep serving from host 0: {served_by_host0} of {} samples",
        split.samples
    );

    ns.set_link(true);
    let restored = Instant::now();
    let seen = c
        .wait(Duration::from_secs(10), || async {
            let a = c.status(0).await?;
            let b = c.status(1).await?;
            (a.nodes[1].role.as_str() == "standby" && b.nodes[1].role.as_str() == "active")
                .then(|| restored.elapsed())
        })
        .await;
    let seen = seen.unwrap_or_else(|| panic!("the sides never saw each other again\n{}", c.logs()));
    eprintln!("both sides saw each other again {seen:?} after the link came back");
    let after = c.sample_split_brain(Duration::from_secs(1), true).await;
    split.samples += after.samples;
    split.haproxy_both_ready += after.haproxy_both_ready;
    split.both_active += after.both_active;
    split.both_unquiet += after.both_unquiet;
    split.first = split.first.or(after.first);
    assert_one_healthy_active(&c, &split, 0).await;
    assert_eq!(term_files(&c), vec!["term-1"]);
}

/// Row 5b: SIGTERM while the active's storage hangs. The stop quiets its Jenkins before any
/// storage call, releases the term only as far as the hung storage lets it (best effort), and
/// the process exits within a bound, though a storage call never returns. The peer takes over
/// once the lease runs out; no instant has two Jenkins out of quiet-down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_hung_mount_exits_in_time_and_quiets_its_jenkins() {
    const EXIT_BOUND: Duration = Duration::from_secs(5);
    let spec = Spec {
        bindfs: true,
        ..Spec::default()
    };
    let (mut c, active) = started(spec.clone()).await;
    let standby = 1 - active;
    let mut frozen = c.bind.as_ref().expect("bindfs mounts").freeze(active);
    // Let a storage call get stuck in the frozen mount first.
    let mut split = SplitBrain::default();
    let frozen_at = Instant::now();
    while frozen_at.elapsed() < spec.interval * 3 {
        c.sample_once(&mut split, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.sidecar(active).signal(nix::sys::signal::Signal::SIGTERM);
    let stopped = Instant::now();
    let mut exited = None;
    while stopped.elapsed() < EXIT_BOUND * 2 {
        c.sample_once(&mut split, true).await;
        if !c.sidecar(active).running() {
            exited = Some(stopped.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = exited.unwrap_or_else(|| {
        panic!(
            "the sidecar did not exit within {:?} of SIGTERM on a hung mount\n{}",
            EXIT_BOUND * 2,
            c.logs()
        )
    });
    eprintln!("the sidecar exited {exited:?} after SIGTERM, its mount hung");
    assert!(exited <= EXIT_BOUND, "took {exited:?} to exit");
    assert_eq!(
        c.quieting_down(active).await,
        Some(true),
        "its Jenkins was left out of quiet-down\n{}",
        c.logs()
    );
    let log = std::fs::read_to_string(c.dir.join(format!("{}-sidecar.log", NAMES[active])))
        .unwrap_or_default();
    assert!(
        log.contains("stopping: our Jenkins is in quiet-down"),
        "{log}"
    );
    // The peer takes over once the lease runs out.
    let took_over = c
        .wait(spec.lease_timeout * 4, || async {
            c.sample_once(&mut SplitBrain::default(), true).await;
            (c.active_code(standby).await == Some(200)).then_some(())
        })
        .await;
    assert!(
        took_over.is_some(),
        "the peer never took over\n{}",
        c.logs()
    );
    let after = c.sample_split_brain(Duration::from_secs(2), true).await;
    assert_eq!(split.total() + after.total(), 0, "{split:?} {after:?}");
    assert!(c.wait_routed(0, standby, Duration::from_secs(3)).await);
    frozen.thaw();
}

/// `status` must answer while the shared mount hangs (it only asks the local sidecar's API);
/// `history` needs the storage: it gives up after its timeout with one line naming the mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_answer_or_fail_in_time_while_the_mount_hangs() {
    let spec = Spec {
        bindfs: true,
        ..Spec::default()
    };
    let (c, active) = started(spec).await;
    let mut frozen = c.bind.as_ref().expect("bindfs mounts").freeze(active);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let (code, out, err) = tokio::task::block_in_place(|| c.cli(active, &["status"]));
    let took = asked.elapsed();
    eprintln!("status took {took:?} with the mount hung");
    assert!(matches!(code, Some(0) | Some(3)), "{code:?} {out}{err}");
    assert!(out.contains(NAMES[active]), "{out}");
    assert!(took < Duration::from_secs(4), "status took {took:?}");

    let asked = Instant::now();
    let (code, out, err) = tokio::task::block_in_place(|| c.cli(active, &["history"]));
    let took = asked.elapsed();
    eprintln!("history took {took:?} with the mount hung: {err}");
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("no answer within 5 s")
            && err.contains(c.hosts[active].home.to_str().unwrap()),
        "{err}"
    );
    assert!(took < Duration::from_secs(7), "history took {took:?}");
    // The other node's mount is fine: its history answers.
    let (code, out, err) = tokio::task::block_in_place(|| c.cli(1 - active, &["history"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Term"), "{out}");
    frozen.thaw();
}

/// A small filesystem for the lease directory, mounted for a test and unmounted at its end.
struct SmallFs {
    dir: std::path::PathBuf,
}

impl SmallFs {
    fn mount(dir: &std::path::Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount")
            .success();
        assert!(
            ok,
            "mounting a tmpfs at {} failed (root is needed)",
            dir.display()
        );
        SmallFs {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills it up; returns the filler, whose removal gives the space back.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.dir.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// The lease's filesystem fills up. The active cannot renew, so its lease runs out by its own
/// clock and it steps down; claims fail with ENOSPC and leave nothing behind (an empty term file
/// would make every node wait out another `lease_timeout` before claiming past it). Once space
/// returns, a node claims within one `lease_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_a_claim_recovers_within_a_lease_timeout_of_space_returning() {
    let spec = Spec::default();
    let lease_timeout = spec.lease_timeout;
    let mut c = Cluster::prepare(spec);
    let small = SmallFs::mount(&c.home.join(".jenkins-ha"), "256k");
    c.start_sidecar(0);
    c.start_sidecar(1);
    let active = c
        .wait_one_active(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no single active node\n{}", c.logs()));
    settled(&c, active).await;
    let filler = small.fill();
    let mut split = SplitBrain::default();
    // Full: the active steps down by its clock, nobody can claim.
    let full_since = Instant::now();
    while full_since.elapsed() < lease_timeout * 3 {
        c.sample_once(&mut split, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        c.active_code(active).await,
        Some(200),
        "renewed on a full disk?"
    );
    assert_ne!(c.active_code(1 - active).await, Some(200));
    let garbage: Vec<String> = term_files(&c)
        .into_iter()
        .filter(|t| {
            std::fs::metadata(c.home.join(".jenkins-ha").join(t))
                .map(|m| m.len() == 0)
                .unwrap_or(false)
        })
        .collect();
    assert!(
        garbage.is_empty(),
        "empty term files left behind: {garbage:?}"
    );
    assert_eq!(
        term_files(&c),
        vec!["term-1"],
        "a term was claimed on a full disk"
    );
    // Space returns.
    std::fs::remove_file(&filler).expect("remove the filler");
    let freed = Instant::now();
    let mut back = None;
    while freed.elapsed() < lease_timeout * 3 {
        c.sample_once(&mut split, true).await;
        for i in 0..2 {
            if c.active_code(i).await == Some(200) {
                back = Some((i, freed.elapsed()));
            }
        }
        if back.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (new_active, took) =
        back.unwrap_or_else(|| panic!("no node took the term once space returned\n{}", c.logs()));
    eprintln!(
        "{} active {took:?} after space returned (lease_timeout {lease_timeout:?})",
        NAMES[new_active]
    );
    assert!(took <= lease_timeout, "recovery took {took:?}");
    assert_eq!(term_files(&c), vec!["term-1", "term-2"]);
    settled(&c, new_active).await;
    let after = c.sample_split_brain(Duration::from_secs(1), true).await;
    assert_eq!(split.total() + after.total(), 0, "{split:?} {after:?}");
    // The tmpfs goes first (lazily): the cluster's temp dir can then be removed whole.
    drop(small);
    drop(c);
}
