//! Jenkins at scale, with builds running: a home of 2,000 jobs in nested folders with build
//! histories, 40 of them on a timer, Jenkins stand-ins whose full reload takes twice the lease
//! (the load model of the stand-in, per item and per build record), each home seen through its
//! own bindfs mount (NFS semantics: the watcher polls).
//!
//! Each test checks what a Jenkins admin checks after a failover: the new active serves, it ran
//! no full reload it did not need, and the ledger of builds is clean: no build number used twice
//! (no `builds/N` overwritten, every next number above every `builds/N` on disk), no fire built
//! twice, no fire seen by a running controller left unbuilt (see `lab/ledger.rs`).

#[path = "../lab/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant, SystemTime};

use cluster::home_gen::HomeSpec;
use cluster::{Cluster, Spec, NAMES};

const JOBS: usize = 2_000;
/// Timer period of the jobs on a timer: several fires per failover.
const TIMER_EVERY: Duration = Duration::from_secs(3);

fn spec() -> Spec {
    Spec {
        jobs: 0,
        home: Some(HomeSpec {
            jobs: JOBS,
            folders: 20,
            top_level_jobs: 20,
            nested_every: 4,
            builds: 3,
            timers: 40,
            timer_every: TIMER_EVERY,
            threads: 2,
            ..HomeSpec::default()
        }),
        // 2,045 items × (2 ms + 3 × 20 µs) ≈ 4.2 s, plus 0.3 s: over twice the 2 s lease.
        reload_base: Duration::from_millis(300),
        reload_per_item: Duration::from_millis(2),
        reload_timeout: Duration::from_secs(60),
        standin_args: [
            "--load-per-build-entry",
            "20us",
            "--executors",
            "8",
            "--build-duration",
            "300ms",
        ]
        .map(String::from)
        .to_vec(),
        bindfs: true,
        ..Spec::default()
    }
}

/// Waits for one active node serving through HAProxy, out of quiet-down, and for the other's
/// sidecar to say its Jenkins is healthy, quiet and current (what it loaded is known and no
/// change waits). Returns the active.
async fn settled(c: &Cluster, timeout: Duration) -> usize {
    let active = c
        .wait_one_active(timeout)
        .await
        .unwrap_or_else(|| panic!("no single active node\n{}", c.logs()));
    let standby = 1 - active;
    assert!(
        c.wait_served_by(0, active, timeout).await.is_some(),
        "HAProxy never served {}\n{}",
        NAMES[active],
        c.logs()
    );
    let ready = c
        .wait(timeout, || async {
            let s = c.status(standby).await?;
            let me = &s.nodes[0];
            let ok = me.role.as_str() == "standby"
                && me.jenkins_healthy
                && me.current
                && me.loaded.as_deref() == Some("known")
                && c.quieting_down(standby).await == Some(true)
                && c.quieting_down(active).await == Some(false);
            ok.then_some(())
        })
        .await;
    assert!(
        ready.is_some(),
        "{} never became a current standby: {:?}\n{}",
        NAMES[standby],
        c.status(standby).await.map(|s| s.nodes[0].clone()),
        c.logs()
    );
    active
}

fn full_reloads(state: &serde_json::Value) -> u64 {
    state["fullReloads"].as_u64().unwrap_or(0)
}

/// How long after `killed` HAProxy served a 200 from `i`'s Jenkins.
async fn served_after(c: &Cluster, i: usize, killed: Instant) -> Duration {
    c.wait_served_by(0, i, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| {
            panic!(
                "{} never served after the failover
{}",
                NAMES[i],
                c.logs()
            )
        });
    killed.elapsed()
}

/// The term `i` holds now, by its own `status`.
async fn term_of(c: &Cluster, i: usize) -> u64 {
    c.status(i).await.and_then(|s| s.nodes[0].term).unwrap_or(0)
}

/// `i`'s promotion to a term after `after`, as its `status` tells it, once its Jenkins left
/// quiet-down.
async fn promotion(c: &Cluster, i: usize, after: u64) -> jenkins_ha::status::PromotionRecord {
    c.wait(Duration::from_secs(30), || async {
        let s = c.status(i).await?;
        let p = s.nodes[0].promotion.clone().filter(|p| p.term > after)?;
        (c.quieting_down(i).await == Some(false)).then_some(p)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{} shows no promotion after term {after}\n{}",
            NAMES[i],
            c.logs()
        )
    })
}

/// A top-level job, a job in a folder and a job in a nested folder of the generated home.
fn three_jobs(c: &Cluster) -> Vec<String> {
    let names = |dir: std::path::PathBuf| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("jobs dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    let jobs = c.home.join("jobs");
    let top = names(jobs.clone())
        .into_iter()
        .find(|n| n.starts_with("job-"))
        .expect("a top-level job");
    let in_folder = names(jobs.join("F001/jobs"))
        .into_iter()
        .find(|n| n.starts_with("job-"))
        .expect("a job in F001");
    let nested = names(jobs.join("F004/jobs/sub/jobs"))
        .into_iter()
        .find(|n| n.starts_with("job-"))
        .expect("a job in F004/sub");
    vec![
        top,
        format!("F001/{in_folder}"),
        format!("F004/sub/{nested}"),
    ]
}

/// Judges the builds of the fires since `from` (see `lab/ledger.rs`).
async fn assert_clean_ledger(c: &Cluster, active: usize, from: SystemTime, what: &str) {
    // Let the new active build, and the fires of the last seconds be built, before judging.
    tokio::time::sleep(TIMER_EVERY * 3).await;
    let verdict = c.build_ledger(active, from, TIMER_EVERY * 2).await;
    eprintln!("{what}: {}", verdict.summary());
    assert!(
        verdict.clean(),
        "{what}: {}\n{}",
        verdict.summary(),
        c.logs()
    );
    assert!(
        verdict.run_builds > 0 && verdict.fires_judged > 0,
        "{what}: no build ran, nothing was judged: {}",
        verdict.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_reload_longer_than_the_lease_settles_and_the_next_failover_reloads_nothing() {
    let spec = spec();
    let lease = spec.lease_timeout;
    let c = Cluster::start(spec);
    let active = settled(&c, Duration::from_secs(90)).await;
    let standby = 1 - active;
    let from = SystemTime::now();
    // The first active could not tell what its Jenkins had loaded (both were running before the
    // sidecars): one full reload, longer than the lease, and no second one.
    let first = promotion(&c, active, 0).await;
    assert_eq!(first.kind, "full", "{first:?}");
    assert!(
        first.took_ms > lease.as_millis() as u64,
        "the reload was meant to outlast the lease: {first:?}"
    );
    let state = c.jenkins_state(active).await.expect("state");
    assert_eq!(full_reloads(&state), 1, "reloaded more than once");
    assert!(
        c.jenkins_state(active).await.unwrap()["lastLoad"]["modelledMs"]
            .as_u64()
            .unwrap_or(0)
            > 2 * lease.as_millis() as u64,
        "the stand-in's full reload is shorter than twice the lease"
    );
    let standby_reloads = full_reloads(&c.jenkins_state(standby).await.unwrap());
    // Builds run on the active meanwhile.
    tokio::time::sleep(TIMER_EVERY * 2).await;

    let mut c = c;
    let before = term_of(&c, active).await;
    c.kill_jenkins(active);
    let took = served_after(&c, standby, Instant::now()).await;
    let second = promotion(&c, standby, before).await;
    eprintln!("crash failover at {JOBS} jobs: served after {took:?}; promotion {second:?}");
    assert_eq!(second.kind, "incremental", "{second:?}");
    assert_eq!(
        full_reloads(&c.jenkins_state(standby).await.unwrap()),
        standby_reloads,
        "the promotion ran a full reload"
    );
    assert_clean_ledger(&c, standby, from, "after the crash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_failovers_and_switchovers_with_builds_running_reuse_no_number_and_lose_no_fire() {
    let mut c = Cluster::start(spec());
    let mut active = settled(&c, Duration::from_secs(90)).await;
    let from = SystemTime::now();
    for round in 0..4 {
        let standby = 1 - active;
        // Let the timers fire and builds run through the active before the failover.
        tokio::time::sleep(TIMER_EVERY + Duration::from_millis(700 * round as u64)).await;
        let reloads = full_reloads(&c.jenkins_state(standby).await.unwrap());
        let before = term_of(&c, active).await;
        if round % 2 == 0 {
            let killed = Instant::now();
            c.kill_jenkins(active);
            let took = served_after(&c, standby, killed).await;
            eprintln!(
                "round {round}: crash failover to {} served after {took:?}",
                NAMES[standby]
            );
            let p = promotion(&c, standby, before).await;
            assert_eq!(p.kind, "incremental", "round {round}: {p:?}");
            // The dead Jenkins comes back, loads the home, and is the standby.
            c.start_jenkins(active);
        } else {
            let started = Instant::now();
            let (code, out, err) = c.cli(active, &["failover"]);
            assert_eq!(code, Some(0), "round {round}: {out}{err}\n{}", c.logs());
            eprintln!(
                "round {round}: switchover to {} took {:?}",
                NAMES[standby],
                started.elapsed()
            );
            let p = promotion(&c, standby, before).await;
            assert_eq!(p.kind, "incremental", "round {round}: {p:?}");
        }
        assert_eq!(
            full_reloads(&c.jenkins_state(standby).await.unwrap()),
            reloads,
            "round {round}: the promotion ran a full reload"
        );
        active = standby;
        let now_active = settled(&c, Duration::from_secs(60)).await;
        assert_eq!(now_active, active, "round {round}: the active moved again");
        assert_clean_ledger(&c, active, from, &format!("after round {round}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_jenkins_restarted_is_promoted_with_its_numbers_above_the_disk() {
    let mut c = Cluster::start(spec());
    let active = settled(&c, Duration::from_secs(90)).await;
    let standby = 1 - active;
    let from = SystemTime::now();
    // The standby's Jenkins restarts while the active builds and an admin edits jobs: some
    // while it is down, some once it is up again.
    let edited = three_jobs(&c);
    let home = c.home.clone();
    let edit = |tag: &str| {
        for job in &edited {
            cluster::write_job(&home, job, &format!("{job} {tag}"));
        }
    };
    c.kill_jenkins(standby);
    edit("while down");
    tokio::time::sleep(TIMER_EVERY).await;
    c.start_jenkins(standby);
    tokio::time::sleep(Duration::from_secs(1)).await;
    edit("after the restart");
    assert_eq!(settled(&c, Duration::from_secs(60)).await, active);
    // Fires go to both (the standby queues them) before the crash.
    tokio::time::sleep(TIMER_EVERY * 2).await;
    let reloads = full_reloads(&c.jenkins_state(standby).await.unwrap());

    let before = term_of(&c, active).await;
    let killed = Instant::now();
    c.kill_jenkins(active);
    let took = served_after(&c, standby, killed).await;
    let p = promotion(&c, standby, before).await;
    eprintln!("crash failover after a standby restart: served after {took:?}; promotion {p:?}");
    assert_eq!(p.kind, "incremental", "{p:?}");
    assert_eq!(
        full_reloads(&c.jenkins_state(standby).await.unwrap()),
        reloads,
        "the promotion ran a full reload"
    );
    let state = c.jenkins_state(standby).await.unwrap();
    for job in &edited {
        assert_eq!(
            state["items"][job.as_str()],
            format!("{job} after the restart"),
            "{job} is stale on the new active"
        );
    }
    assert_clean_ledger(&c, standby, from, "after the promotion").await;
}
