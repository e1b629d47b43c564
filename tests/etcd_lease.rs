//! The etcd lease backend against a real 3-member etcd cluster (Debian's etcd 3.4) on loopback:
//! one winner per term, a live holder keeps its term, an expired, released or handed-over one
//! does not, a stale holder can never write over a newer term, history, the pause flag, the watch,
//! and what calls do while members die, freeze, lose quorum and come back.

#[path = "../lab/etcd.rs"]
mod etcd;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd::EtcdCluster;
use jenkins_ha::io::lease::{
    Lease, LeaseError, LeaseIo, LeaseMeter, LeaseOp, TermFile, TermRecord, HISTORY_KEEP,
};
use jenkins_ha::io::lease_etcd::{call_budget, EtcdLease, EtcdSettings};
use tokio::sync::Notify;

/// The lease timeout of these tests: the etcd lease's TTL is 2 s.
const LEASE_TIMEOUT: Duration = Duration::from_secs(2);
/// The loop's LeaseIo deadline at a 1 s interval, and the budget of one etcd call inside it.
const DEADLINE: Duration = Duration::from_secs(1);

/// One etcd cluster at a time: three members per test are plenty for two cores.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn settings(c: &EtcdCluster, prefix: &str) -> EtcdSettings {
    EtcdSettings {
        endpoints: c.endpoints(),
        prefix: prefix.into(),
        ca_pem: None,
        identity: None,
        user: None,
    }
}

fn lease(c: &EtcdCluster, prefix: &str) -> EtcdLease {
    EtcdLease::new(&settings(c, prefix), LEASE_TIMEOUT, call_budget(DEADLINE)).unwrap()
}

fn record(term: u64, node: &str, counter: u64) -> TermRecord {
    TermRecord {
        term,
        node: node.into(),
        counter,
        state: "active".into(),
        released: false,
        handover_to: None,
        reason: format!("{node} claims term {term}"),
        end_reason: None,
        started_unix_ms: 1,
        renewed_unix_ms: 1,
        // The holder's timing travels in its record, as the daemon writes it.
        timing: Some(
            jenkins_ha::core::Timing {
                interval: Duration::from_secs(1),
                fall: 3,
                rise: 2,
                lease_timeout: Duration::from_secs(5),
            }
            .shared(),
        ),
    }
}

fn newest(l: &EtcdLease) -> TermRecord {
    match l.observe().unwrap().newest {
        Some(TermFile::Valid(r)) => r,
        other => panic!("expected a record, got {other:?}"),
    }
}

/// Waits for a wake-up, up to `timeout`; returns how long it took.
fn woken(wake: &Notify, timeout: Duration) -> Option<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async { tokio::time::timeout(timeout, wake.notified()).await.ok() })
        .map(|_| start.elapsed())
}

#[test]
fn exactly_one_node_wins_a_term_claimed_by_many_at_once() {
    let _serial = serial();
    let c = EtcdCluster::start(3);
    let contenders = 8;
    let barrier = Arc::new(Barrier::new(contenders));
    let winners = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for k in 0..contenders {
        let (barrier, winners, s) = (barrier.clone(), winners.clone(), settings(&c, "/race"));
        threads.push(std::thread::spawn(move || {
            let l = EtcdLease::new(&s, LEASE_TIMEOUT, call_budget(DEADLINE)).unwrap();
            // Connect first, so that the claims really start together.
            l.observe().unwrap();
            barrier.wait();
            let won = l.claim(&record(1, &format!("node{k}"), 0)).unwrap();
            if won {
                winners.fetch_add(1, Ordering::SeqCst);
            }
            (won, format!("node{k}"))
        }));
    }
    let results: Vec<(bool, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(winners.load(Ordering::SeqCst), 1, "{results:?}");
    let winner = results.iter().find(|(won, _)| *won).unwrap().1.clone();
    let l = lease(&c, "/race");
    assert_eq!(newest(&l).node, winner);
    // While the winner's etcd lease lives, nobody gets the next term either.
    assert!(!l.claim(&record(2, "late", 0)).unwrap());
    assert_eq!(newest(&l).term, 1);
}

#[test]
fn a_renewing_holder_keeps_its_term_and_loses_it_only_after_the_ttl() {
    let _serial = serial();
    let c = EtcdCluster::start(3);
    let a = lease(&c, "/ttl");
    let b = lease(&c, "/ttl");
    assert!(a.claim(&record(1, "a", 0)).unwrap());
    // Renewing every 300 ms for 3 s (longer than the TTL): b sees every counter and never wins.
    let mut last_renewal = Instant::now();
    for counter in 1..=10 {
        std::thread::sleep(Duration::from_millis(300));
        last_renewal = Instant::now();
        a.write(&record(1, "a", counter)).unwrap();
        assert_eq!(
            newest(&b),
            record(1, "a", counter),
            "the whole record, timing too"
        );
        assert!(!b.claim(&record(2, "b", 0)).unwrap(), "renewal {counter}");
    }
    // a goes silent: its counter freezes where b can see it, and b gets term 2 only once etcd
    // has expired a's key, never sooner than the lease timeout after a's last renewal began.
    let won_at = loop {
        assert_eq!(newest(&b).counter, 10);
        if b.claim(&record(2, "b", 0)).unwrap() {
            break last_renewal.elapsed();
        }
        assert!(
            last_renewal.elapsed() < Duration::from_secs(10),
            "never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        won_at >= LEASE_TIMEOUT,
        "b won {won_at:?} after a's last renewal"
    );
    // The stale holder's renewal fails and changes nothing.
    let e = a.write(&record(1, "a", 11)).unwrap_err();
    assert!(matches!(e, LeaseError::Etcd(_)), "{e}");
    assert!(e.to_string().contains("has expired"), "{e}");
    let now = newest(&a);
    assert_eq!((now.term, now.node.as_str()), (2, "b"));
    // b renews as usual.
    b.write(&record(2, "b", 1)).unwrap();
}

#[test]
fn a_release_lets_anyone_in_and_a_handover_only_its_target() {
    let _serial = serial();
    let c = EtcdCluster::start(3);
    let a = lease(&c, "/release");
    let b = lease(&c, "/release");
    let t = lease(&c, "/release");
    assert!(a.claim(&record(1, "a", 0)).unwrap());
    a.write(&record(1, "a", 1)).unwrap();
    let mut released = record(1, "a", 2);
    released.released = true;
    a.write(&released).unwrap();
    // At once, well before a's etcd lease could expire.
    let start = Instant::now();
    assert!(b.claim(&record(2, "b", 0)).unwrap());
    assert!(start.elapsed() < LEASE_TIMEOUT);
    // a is done with term 1: it cannot write it any more.
    assert!(a.write(&record(1, "a", 3)).is_err());

    b.write(&record(2, "b", 1)).unwrap();
    let mut handing = record(2, "b", 2);
    handing.handover_to = Some("t".into());
    b.write(&handing).unwrap();
    assert!(!a.claim(&record(3, "a", 0)).unwrap(), "not the target");
    assert!(t.claim(&record(3, "t", 0)).unwrap(), "the target");
    // The old holder's next renewal is refused and does not touch term 3.
    handing.counter = 3;
    let e = b.write(&handing).unwrap_err();
    assert!(e.to_string().contains("t holds term 3 now"), "{e}");
    assert_eq!(newest(&a).node, "t");
}

#[test]
fn terms_only_grow() {
    let _serial = serial();
    let c = EtcdCluster::start(3);
    let a = lease(&c, "/grow");
    let b = lease(&c, "/grow");
    assert!(a.claim(&record(1, "a", 0)).unwrap());
    let mut released = record(1, "a", 1);
    released.released = true;
    a.write(&released).unwrap();
    assert!(b.claim(&record(2, "b", 0)).unwrap());
    let mut released = record(2, "b", 1);
    released.released = true;
    b.write(&released).unwrap();
    // Term 2 is released, but no term up to 2 can be won again: they exist.
    assert!(!a.claim(&record(1, "a", 0)).unwrap());
    assert!(!a.claim(&record(2, "a", 0)).unwrap());
    // Nor after the leader key has expired.
    std::thread::sleep(LEASE_TIMEOUT + Duration::from_millis(1500));
    assert!(!a.claim(&record(2, "a", 0)).unwrap());
    assert!(a.claim(&record(3, "a", 0)).unwrap());
    assert_eq!(newest(&b).term, 3);
    assert_eq!(
        a.history(10)
            .unwrap()
            .iter()
            .map(TermFile::term)
            .collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
}

#[test]
fn history_is_newest_first_and_bounded_and_the_pause_flag_round_trips() {
    let _serial = serial();
    let c = EtcdCluster::start(3);
    let a = lease(&c, "/history");
    let b = lease(&c, "/history");
    let last = HISTORY_KEEP + 5;
    for term in 1..=last {
        let node = if term % 2 == 0 { "b" } else { "a" };
        let l = if term % 2 == 0 { &b } else { &a };
        assert!(l.claim(&record(term, node, 0)).unwrap(), "term {term}");
        let mut released = record(term, node, 1);
        released.released = true;
        l.write(&released).unwrap();
    }
    let h = a.history(3).unwrap();
    assert_eq!(
        h.iter().map(TermFile::term).collect::<Vec<_>>(),
        vec![last, last - 1, last - 2]
    );
    match &h[0] {
        TermFile::Valid(r) => assert!(r.released && r.node == "a" && r.counter == 1, "{r:?}"),
        other => panic!("{other:?}"),
    }
    let all = a.history(usize::MAX).unwrap();
    assert_eq!(all.len() as u64, HISTORY_KEEP);
    assert_eq!(all.last().unwrap().term(), last - HISTORY_KEEP + 1);
    assert!(matches!(a.read(last).unwrap(), Some(TermFile::Valid(r)) if r.term == last));
    assert_eq!(a.read(1).unwrap(), None, "pruned");

    assert!(!a.observe().unwrap().paused);
    a.set_paused(true, "ops").unwrap();
    assert!(b.observe().unwrap().paused);
    b.set_paused(false, "ops").unwrap();
    b.set_paused(false, "ops").unwrap();
    assert!(!a.observe().unwrap().paused);
    // Another cluster's prefix shares nothing.
    let other = lease(&c, "/history-other");
    assert_eq!(other.observe().unwrap().newest, None);
    assert!(other.history(10).unwrap().is_empty());
}

#[test]
fn the_watch_wakes_a_standby_at_once_and_the_holder_only_for_others() {
    let _serial = serial();
    let c = EtcdCluster::start(3);
    let a = lease(&c, "/watch");
    let b = lease(&c, "/watch");
    let a_wake = Arc::new(Notify::new());
    let b_wake = Arc::new(Notify::new());
    a.subscribe(a_wake.clone());
    b.subscribe(b_wake.clone());
    assert!(a.claim(&record(1, "a", 0)).unwrap());
    // The claim wakes b; keep renewing until the watch has surely started.
    let mut counter = 0;
    let mut live = false;
    for _ in 0..20 {
        counter += 1;
        a.write(&record(1, "a", counter)).unwrap();
        if woken(&b_wake, Duration::from_millis(200)).is_some() {
            live = true;
            break;
        }
    }
    assert!(live, "the standby's watch never fired\n{}", c.logs());
    // The holder's own renewals do not wake it (its loop would spin), and a quiet watch stays
    // quiet (it checks its member with progress requests, and does not reconnect needlessly).
    let _ = woken(&a_wake, Duration::from_millis(300));
    for _ in 0..8 {
        counter += 1;
        a.write(&record(1, "a", counter)).unwrap();
        assert_eq!(woken(&a_wake, Duration::from_millis(500)), None);
    }
    assert!(woken(&b_wake, Duration::from_secs(1)).is_some(), "renewal");

    // A release wakes the standby at once.
    let _ = woken(&b_wake, Duration::from_millis(100));
    let mut released = record(1, "a", counter + 1);
    released.released = true;
    a.write(&released).unwrap();
    let took = woken(&b_wake, Duration::from_secs(2)).expect("the release woke nobody");
    println!("release → standby woken in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A new holder wakes the old one; its key's expiry wakes the other.
    assert!(b.claim(&record(2, "b", 0)).unwrap());
    assert!(woken(&a_wake, Duration::from_secs(1)).is_some(), "claim");
    let _ = woken(&a_wake, Duration::from_millis(100));
    let took = woken(&a_wake, LEASE_TIMEOUT + Duration::from_secs(3)).expect("expiry woke nobody");
    println!("expiry → woken {took:?} after b's claim");
    assert!(a.claim(&record(3, "a", 0)).unwrap());
}

/// Renews every 200 ms for `run`; returns the attempts as (started since `t0`, took, result).
fn renew_for(
    l: &EtcdLease,
    term: u64,
    counter: &mut u64,
    run: Duration,
    t0: Instant,
) -> Vec<(Duration, Duration, Result<(), String>)> {
    let mut out = Vec::new();
    let end = Instant::now() + run;
    while Instant::now() < end {
        *counter += 1;
        let start = Instant::now();
        let r = l
            .write(&record(term, "a", *counter))
            .map_err(|e| e.to_string());
        out.push((start - t0, start.elapsed(), r));
        std::thread::sleep(Duration::from_millis(200));
    }
    out
}

#[test]
fn calls_carry_on_when_the_raft_leader_dies_or_a_member_freezes() {
    let _serial = serial();
    let mut c = EtcdCluster::start(3);
    let a = lease(&c, "/faults");
    assert!(a.claim(&record(1, "a", 0)).unwrap());
    let mut counter = 0;
    let leader = c.leader().expect("a leader");
    let t0 = Instant::now();
    c.kill(leader);
    let calls = renew_for(&a, 1, &mut counter, Duration::from_secs(6), t0);
    for (at, took, r) in &calls {
        assert!(*took < DEADLINE, "a call took {took:?} at {at:?}");
        if *at > Duration::from_secs(4) {
            assert!(
                r.is_ok(),
                "still failing {at:?} after the kill: {r:?}\n{calls:?}"
            );
        }
    }
    assert!(c.wait_ready(Duration::from_secs(5)));

    // Freeze the member the client now talks to (and the leader, if that is another one).
    c.restart(leader);
    assert!(c.wait_ready(Duration::from_secs(10)));
    let a_peek = renew_for(&a, 1, &mut counter, Duration::from_millis(500), t0);
    assert!(a_peek.iter().all(|(_, _, r)| r.is_ok()), "{a_peek:?}");
    let frozen = c.leader().expect("a leader");
    // A standby whose watch runs through the member about to freeze (its first endpoint).
    let mut s = settings(&c, "/faults");
    s.endpoints.rotate_left(frozen);
    let b = EtcdLease::new(&s, LEASE_TIMEOUT, call_budget(DEADLINE)).unwrap();
    let b_wake = Arc::new(Notify::new());
    b.subscribe(b_wake.clone());
    let watching = (0..20).any(|_| {
        counter += 1;
        a.write(&record(1, "a", counter)).unwrap();
        woken(&b_wake, Duration::from_millis(200)).is_some()
    });
    assert!(watching, "the standby's watch never started");
    let t1 = Instant::now();
    c.stop(frozen);
    let calls = renew_for(&a, 1, &mut counter, Duration::from_secs(6), t1);
    // By now the standby's watch has left a frozen member: a renewal still wakes it.
    let _ = woken(&b_wake, Duration::from_millis(100));
    counter += 1;
    a.write(&record(1, "a", counter)).unwrap();
    assert!(
        woken(&b_wake, Duration::from_secs(2)).is_some(),
        "the watch stayed on the frozen member"
    );
    c.cont(frozen);
    let failed: Vec<_> = calls.iter().filter(|(_, _, r)| r.is_err()).collect();
    for (at, took, r) in &calls {
        assert!(*took < DEADLINE, "a call took {took:?} at {at:?}");
        if *at > Duration::from_secs(4) {
            assert!(r.is_ok(), "still failing {at:?} after the freeze: {r:?}");
        }
    }
    println!(
        "leader frozen: {} of {} renewals failed",
        failed.len(),
        calls.len()
    );
    assert_eq!(newest(&a).counter, counter);
}

#[test]
fn without_quorum_calls_fail_within_the_deadline_and_work_again_after() {
    let _serial = serial();
    let c = EtcdCluster::start(3);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(without_quorum(c));
}

/// What a [`LeaseMeter`] was told: each op's failures and measured calls.
#[derive(Default)]
struct Meter(std::sync::Mutex<Vec<(LeaseOp, Option<Duration>)>>);

impl LeaseMeter for Meter {
    fn took(&self, op: LeaseOp, took: Duration) {
        self.0.lock().unwrap().push((op, Some(took)));
    }
    fn failed(&self, op: LeaseOp) {
        self.0.lock().unwrap().push((op, None));
    }
}

impl Meter {
    fn count(&self, op: LeaseOp, failed: bool) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, t)| *o == op && t.is_none() == failed)
            .count()
    }
}

/// The daemon's way: every call through [`LeaseIo`] on the runtime's blocking threads, each
/// one measured and each failure counted (the daemon's lease metrics).
async fn without_quorum(mut c: EtcdCluster) {
    let l = lease(&c, "/quorum");
    let meter = Arc::new(Meter::default());
    let io = LeaseIo::new(Arc::new(l), DEADLINE).metered(meter.clone());
    assert!(io
        .call(LeaseOp::Claim, |l| l.claim(&record(1, "a", 0)))
        .await
        .unwrap());
    c.kill(1);
    c.kill(2);
    for counter in 1..=4u64 {
        let start = Instant::now();
        let r = io
            .call(LeaseOp::Write, move |l| l.write(&record(1, "a", counter)))
            .await;
        let took = start.elapsed();
        // The etcd call gives up on its own, inside the loop's deadline, with its own error.
        let e = r.expect_err("a renewal without quorum");
        assert!(matches!(e, LeaseError::Etcd(_)), "{e:?}");
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(&c.members[0].endpoint()), "{line}");
        assert!(took < DEADLINE, "{took:?}");
        let e = io
            .call(LeaseOp::Read, |l| l.observe())
            .await
            .expect_err("a read");
        assert!(matches!(e, LeaseError::Etcd(_)), "{e:?}");
    }
    // Each failed call was counted once, by its operation, and measured as it ran.
    assert_eq!(meter.count(LeaseOp::Claim, false), 1);
    assert_eq!(meter.count(LeaseOp::Claim, true), 0);
    assert_eq!(meter.count(LeaseOp::Write, true), 4);
    assert_eq!(meter.count(LeaseOp::Read, true), 4);
    assert_eq!(meter.count(LeaseOp::Write, false), 4);
    assert_eq!(meter.count(LeaseOp::Read, false), 4);
    c.restart(1);
    c.restart(2);
    assert!(c.wait_ready(Duration::from_secs(20)), "{}", c.logs());
    // The holder's etcd lease survived (etcd renews every lease when a new leader takes over).
    let mut ok = false;
    for counter in 5..60u64 {
        if io
            .call(LeaseOp::Write, move |l| l.write(&record(1, "a", counter)))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "renewals never worked again\n{}", c.logs());
    let snap = io.call(LeaseOp::Read, |l| l.observe()).await.unwrap();
    assert!(matches!(snap.newest, Some(TermFile::Valid(r)) if r.node == "a"));
}

#[test]
fn the_lease_survives_a_restart_of_every_member() {
    let _serial = serial();
    let mut c = EtcdCluster::start(3);
    let a = lease(&c, "/restart");
    assert!(a.claim(&record(1, "a", 0)).unwrap());
    let mut released = record(1, "a", 7);
    released.released = true;
    a.write(&released).unwrap();
    assert!(a.claim(&record(2, "a", 0)).unwrap());
    a.set_paused(true, "ops").unwrap();
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    assert!(c.wait_ready(Duration::from_secs(20)), "{}", c.logs());
    let fresh = lease(&c, "/restart");
    let mut snap = fresh.observe();
    for _ in 0..20 {
        if snap.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        snap = fresh.observe();
    }
    let snap = snap.unwrap();
    assert!(snap.paused);
    assert!(matches!(snap.newest, Some(TermFile::Valid(ref r)) if r.term == 2 && r.node == "a"));
    let h = fresh.history(10).unwrap();
    assert!(matches!(&h[1], TermFile::Valid(r) if r.term == 1 && r.released && r.counter == 7));
}

/// Runs openssl in `dir`; panics with its output if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA.
fn make_certificates(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=lab-ca"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let (key, csr, crt, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.crt"),
            format!("{who}.ext"),
        );
        let subject = format!("/CN={who}");
        let mut req = vec!["req", "-subj", subject.as_str()];
        req.extend(ec);
        req.extend(["-keyout", key.as_str(), "-out", csr.as_str()]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        );
    }
}

#[test]
fn tls_with_a_client_certificate() {
    let _serial = serial();
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let file = |name: &str| certs.path().join(name);
    let read = |name: &str| std::fs::read_to_string(file(name)).unwrap();
    let c = EtcdCluster::start_with(
        1,
        Some(etcd::ServerTls {
            cert: file("server.crt"),
            key: file("server.key"),
            client_ca: file("ca.crt"),
        }),
    );
    assert!(c.endpoints()[0].starts_with("https://"));
    let mut s = settings(&c, "/tls");
    s.ca_pem = Some(read("ca.crt"));
    s.identity = Some((
        read("client.crt"),
        jenkins_ha::secret::Secret::new(read("client.key")),
    ));
    let l = EtcdLease::new(&s, LEASE_TIMEOUT, call_budget(DEADLINE)).unwrap();
    assert!(l.claim(&record(1, "a", 0)).unwrap());
    l.write(&record(1, "a", 1)).unwrap();
    assert_eq!(newest(&l).counter, 1);

    // Without a client certificate the member refuses the connection: a one-line error.
    s.identity = None;
    let anonymous = EtcdLease::new(&s, LEASE_TIMEOUT, call_budget(DEADLINE)).unwrap();
    let e = anonymous.observe().unwrap_err();
    let line = e.to_string();
    assert!(
        line.starts_with(&format!("etcd {}", c.endpoints()[0])),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
}

#[test]
fn etcd_authentication_with_a_user_and_password() {
    let _serial = serial();
    let c = EtcdCluster::start(1);
    let endpoints = c.endpoints();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use etcd_client::{Client, Permission};
        let mut admin = Client::connect(&endpoints, None).await.unwrap();
        admin.user_add("root", "r00t-pw", None).await.unwrap();
        admin.user_grant_role("root", "root").await.unwrap();
        admin.role_add("jenkins-ha").await.unwrap();
        admin
            .role_grant_permission("jenkins-ha", Permission::read_write("/auth").with_prefix())
            .await
            .unwrap();
        admin
            .user_add("jenkins-ha", "s3cret-pw", None)
            .await
            .unwrap();
        admin
            .user_grant_role("jenkins-ha", "jenkins-ha")
            .await
            .unwrap();
        admin.auth_enable().await.unwrap();
    });
    let with = |password: &str| {
        let mut s = settings(&c, "/auth");
        s.user = Some((
            "jenkins-ha".into(),
            jenkins_ha::secret::Secret::new(password),
        ));
        EtcdLease::new(&s, LEASE_TIMEOUT, call_budget(DEADLINE)).unwrap()
    };
    let a = with("s3cret-pw");
    assert!(a.claim(&record(1, "a", 0)).unwrap());
    a.write(&record(1, "a", 1)).unwrap();
    a.set_paused(true, "ops").unwrap();
    assert!(a.observe().unwrap().paused);

    let e = with("wrong-pw").observe().unwrap_err();
    let line = e.to_string();
    assert!(line.contains("authentication failed"), "{line}");
    assert!(!line.contains("wrong-pw") && !line.contains('\n'), "{line}");
    // Without a user, etcd refuses too.
    let e = lease(&c, "/auth").observe().unwrap_err();
    assert!(matches!(e, LeaseError::Etcd(_)), "{e}");
}
