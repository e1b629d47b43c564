//! The standby stays current: each node sees JENKINS_HOME through its own bindfs (FUSE) mount of
//! one directory, as two NFS clients would. Edits made through the active's mount must reach the
//! standby's Jenkins by polling, with the right kind of reload. One test runs the control task
//! in-process on the plain directory: edits seen while a node is still starting must not be lost.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{write_folder, write_job, BindMounts, Cluster, Spec, NAMES};
use jenkins_ha::config::Config;
use jenkins_ha::daemon::jenkins_control::{
    JenkinsControl, JenkinsGoal, JenkinsState, Mode, WatchSetup,
};
use notify::{RecursiveMode, Watcher};

const POLL: Duration = Duration::from_millis(250);
const DEBOUNCE: Duration = Duration::from_millis(250);

fn spec(mode: &str) -> Spec {
    Spec {
        bindfs: true,
        jobs: 4,
        extra_config: format!(
            "watch:\n  mode: {mode}\n  poll_interval: {}ms\n  debounce: {}ms\n",
            POLL.as_millis(),
            DEBOUNCE.as_millis()
        ),
        ..Spec::default()
    }
}

/// What the stand-in of node `i` has in memory for an item.
async fn description(c: &Cluster, i: usize, item: &str) -> Option<String> {
    let state = c.jenkins_state(i).await?;
    state["items"]
        .get(item)
        .and_then(|d| d.as_str())
        .map(str::to_string)
}

async fn counter(c: &Cluster, i: usize, name: &str) -> u64 {
    c.jenkins_state(i)
        .await
        .and_then(|s| s[name].as_u64())
        .unwrap_or(0)
}

async fn started(spec: Spec) -> (Cluster, usize) {
    let c = Cluster::start(spec);
    let active = c
        .wait_one_active(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no single active node\n{}", c.logs()));
    // Let the standby settle: quiet, watcher started, the promotion reload of the active done,
    // and its check of what its Jenkins loaded (item by item, against the disk) over: an edit
    // written while that check runs is found by it, whatever the watcher sees.
    let settled = c
        .wait(Duration::from_secs(10), || async {
            let s = c.status(1 - active).await?;
            let ok = s.nodes[0].watch.as_ref().is_some_and(|w| w.items > 0)
                && s.nodes[0].loaded.as_deref() == Some("known")
                && c.quieting_down(1 - active).await == Some(true)
                && c.quieting_down(active).await == Some(false);
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

#[test]
fn bindfs_mounts_behave_like_nfs_for_inotify() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mounts = BindMounts::new(&shared, dir.path());
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e {
            let _ = tx.send(e);
        }
    })
    .unwrap();
    watcher
        .watch(&mounts.mounts[1], RecursiveMode::Recursive)
        .unwrap();
    // A write through the other mount: no event here.
    std::fs::write(mounts.mounts[0].join("config.xml"), "<hudson/>").unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "inotify saw a write made through another mount: bindfs no longer models NFS"
    );
    assert_eq!(
        std::fs::read_to_string(mounts.mounts[1].join("config.xml")).unwrap(),
        "<hudson/>"
    );
    // A write through this mount: an event (the watcher itself works).
    std::fs::write(mounts.mounts[1].join("config.xml"), "<hudson>2</hudson>").unwrap();
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_ok(),
        "inotify saw nothing at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_follows_edits_made_through_the_actives_mount() {
    let (c, active) = started(spec("auto")).await;
    let standby = 1 - active;
    let through_active = c.hosts[active].home.clone();
    let s = c.status(standby).await.unwrap();
    let w = s.nodes[0].watch.clone().unwrap();
    assert_eq!(w.mode, "poll", "auto must poll on FUSE: {w:?}");
    assert!(w.reason.contains("FUSE"), "{w:?}");
    let bound = POLL + DEBOUNCE + Duration::from_secs(3);

    // (a) An edited top-level job: a per-item reload, not a full one.
    let (full0, item0) = (
        counter(&c, standby, "fullReloadsCompleted").await,
        counter(&c, standby, "itemReloads").await,
    );
    let edited = Instant::now();
    write_job(&through_active, "job-1", "job 1 v2");
    let seen = c
        .wait(bound, || async {
            (description(&c, standby, "job-1").await.as_deref() == Some("job 1 v2"))
                .then(|| edited.elapsed())
        })
        .await
        .unwrap_or_else(|| panic!("the standby never showed the edit\n{}", c.logs()));
    eprintln!("(a) top-level edit seen by the standby after {seen:?}");
    assert!(counter(&c, standby, "itemReloads").await > item0);
    assert_eq!(
        counter(&c, standby, "fullReloadsCompleted").await,
        full0,
        "an edit needs no full reload"
    );

    // (b) A new job and a deleted one: one full reload, listed in status.
    let active_full_before = c.jenkins_state(active).await.unwrap()["fullReloadsCompleted"].clone();
    let created = Instant::now();
    write_job(&through_active, "new-job", "brand new");
    std::fs::remove_dir_all(cluster::item_dir(&through_active, "job-2")).unwrap();
    let seen = c
        .wait(bound + Duration::from_secs(10), || async {
            let items = c.jenkins_state(standby).await?["items"].clone();
            (items.get("new-job").is_some() && items.get("job-2").is_none())
                .then(|| created.elapsed())
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the standby never picked up the new and deleted jobs\n{}",
                c.logs()
            )
        });
    eprintln!("(b) new + deleted job seen by the standby after {seen:?}");
    assert!(counter(&c, standby, "fullReloadsCompleted").await > full0);
    // The two may land in one plan or in two (the second full reload waits out the 10 s gap).
    let seen = std::sync::Mutex::new(String::new());
    let listed = c
        .wait(Duration::from_secs(14), || async {
            let s = c.status(standby).await?;
            let plan = s.nodes[0]
                .watch
                .as_ref()
                .and_then(|w| w.last_plan.clone())?;
            let mut all = seen.lock().unwrap();
            if !all.contains(&plan) {
                all.push_str(&plan);
                all.push('\n');
            }
            (all.contains("new-job") && all.contains("job-2")).then_some(())
        })
        .await;
    assert!(
        listed.is_some(),
        "status should list the change\n{}",
        c.logs()
    );
    // The active wrote it: its own Jenkins is not reloaded for it.
    let active_state = c.jenkins_state(active).await.unwrap();
    assert_eq!(
        active_state["fullReloadsCompleted"], active_full_before,
        "the active was reloaded for its own change: {active_state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_edit_reaches_the_standby_despite_the_folder_caveat() {
    let mut spec = spec("auto");
    spec.jobs = 1;
    let mut cl = Cluster::prepare(spec);
    write_folder(&cl.home, "team");
    write_job(&cl.home, "team/app", "app v1");
    // Restart the stand-ins so they load the folder from disk.
    for i in 0..2 {
        cl.kill_jenkins(i);
        cl.start_jenkins(i);
    }
    cl.start_sidecar(0);
    cl.start_sidecar(1);
    let active = cl
        .wait_one_active(Duration::from_secs(15))
        .await
        .expect("one active");
    let standby = 1 - active;
    assert_eq!(
        description(&cl, standby, "team/app").await.as_deref(),
        Some("app v1")
    );
    let settled = cl
        .wait(Duration::from_secs(10), || async {
            let s = cl.status(standby).await?;
            s.nodes[0]
                .watch
                .as_ref()
                .is_some_and(|w| w.items >= 2)
                .then_some(())
        })
        .await;
    assert!(settled.is_some());
    let edited = Instant::now();
    write_job(&cl.hosts[active].home, "team/app", "app v2");
    let seen = cl
        .wait(POLL + DEBOUNCE + Duration::from_secs(3), || async {
            (description(&cl, standby, "team/app").await.as_deref() == Some("app v2"))
                .then(|| edited.elapsed())
        })
        .await
        .unwrap_or_else(|| panic!("the nested edit never reached the standby\n{}", cl.logs()));
    eprintln!("(c) nested edit seen by the standby after {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_inotify_misses_changes_made_through_another_mount() {
    // This is why `watch.mode: auto` polls on NFS and FUSE: inotify only sees local writes.
    let (c, active) = started(spec("inotify")).await;
    let standby = 1 - active;
    let s = c.status(standby).await.unwrap();
    assert_eq!(s.nodes[0].watch.as_ref().unwrap().mode, "inotify");
    let reloads = counter(&c, standby, "itemReloads").await;
    write_job(&c.hosts[active].home, "job-1", "job 1 v2");
    tokio::time::sleep(POLL + DEBOUNCE + Duration::from_secs(3)).await;
    assert_eq!(
        description(&c, standby, "job-1").await.as_deref(),
        Some("job 1 v1"),
        "inotify saw a remote write: this test no longer shows the NFS problem"
    );
    assert_eq!(counter(&c, standby, "itemReloads").await, reloads);
    // The same edit made through the standby's own mount is seen at once.
    write_job(&c.hosts[standby].home, "job-1", "job 1 v3");
    let seen = c
        .wait(Duration::from_secs(5), || async {
            (description(&c, standby, "job-1").await.as_deref() == Some("job 1 v3")).then_some(())
        })
        .await;
    assert!(seen.is_some(), "inotify missed a local write\n{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_marks_the_standby_unhealthy_and_it_is_never_promoted() {
    let mut spec = spec("auto");
    spec.reload_timeout = Duration::from_secs(2);
    spec.restart_command = Some("touch {dir}/restart-{node}".into());
    let lease_timeout = spec.lease_timeout;
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    c.post(
        c.hosts[standby].jenkins_port,
        "/standin/fail-reloads?on=true",
    )
    .await
    .unwrap();
    // A new job needs a full reload, which now fails: Jenkins stays 503.
    write_job(&c.hosts[active].home, "another", "x");
    let marked = c
        .wait(Duration::from_secs(10), || async {
            let s = c.status(standby).await?;
            s.nodes[0].reload_failed.then_some(s)
        })
        .await
        .unwrap_or_else(|| panic!("the failed reload was never noticed\n{}", c.logs()));
    assert!(!marked.nodes[0].jenkins_healthy);
    let restart_flag = c.dir.join(format!("restart-{}", NAMES[standby]));
    let ran = c
        .wait(Duration::from_secs(5), || async {
            restart_flag.exists().then_some(())
        })
        .await;
    assert!(ran.is_some(), "jenkins.restart_command did not run");
    // The active dies: the broken standby must not be promoted; the cluster says so loudly.
    c.kill_jenkins(active);
    let mut split = cluster::SplitBrain::default();
    let until = Instant::now() + lease_timeout * 3;
    while Instant::now() < until {
        assert_ne!(
            c.active_code(standby).await,
            Some(200),
            "a broken standby was promoted"
        );
        c.sample_once(&mut split, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(split.total(), 0, "{split:?}");
    let s = c.status(standby).await.unwrap();
    assert_eq!(s.active, None, "{s:?}");
    assert!(
        s.nodes[0].reason.contains("NO ACTIVE NODE"),
        "{}",
        s.nodes[0].reason
    );
    let log =
        std::fs::read_to_string(c.dir.join(format!("{}-sidecar.log", NAMES[standby]))).unwrap();
    assert!(
        log.contains("ERROR") && log.contains("NO ACTIVE NODE"),
        "not loud enough:\n{log}"
    );
    // Restarted healthy, it takes over.
    c.kill_jenkins(standby);
    c.start_jenkins(standby);
    let served = c.wait_served_by(0, standby, Duration::from_secs(15)).await;
    assert!(
        served.is_some(),
        "the restarted standby did not take over\n{}",
        c.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_jenkins_restarted_by_hand_comes_back_quiet() {
    let spec = spec("auto");
    let interval = spec.interval;
    let (mut c, active) = started(spec).await;
    let standby = 1 - active;
    c.kill_jenkins(standby);
    c.start_jenkins(standby);
    let restarted = Instant::now();
    let quiet = c
        .wait(interval * 5 + Duration::from_secs(1), || async {
            (c.quieting_down(standby).await == Some(true)).then(|| restarted.elapsed())
        })
        .await
        .unwrap_or_else(|| panic!("the restarted standby is not quiet\n{}", c.logs()));
    eprintln!("the restarted standby Jenkins was quiet again after {quiet:?}");
    assert_eq!(
        c.active_code(active).await,
        Some(200),
        "no failover for a standby restart"
    );
}

/// Stand-ins on one local directory (inotify), with a folder, and no sidecars: for the tests
/// that run host 0's Jenkins control task in-process.
fn in_process_cluster() -> Cluster {
    let mut spec = spec("inotify");
    spec.bindfs = false;
    spec.folder_jobs = 1;
    Cluster::prepare(spec)
}

/// Host 0's Jenkins control task, run in-process from its config with the JENKINS_HOME watcher,
/// starting at `goal`: its state, the goal to change, and the task.
fn in_process_control(
    c: &Cluster,
    goal: JenkinsGoal,
) -> (
    Arc<Mutex<JenkinsState>>,
    tokio::sync::watch::Sender<JenkinsGoal>,
    tokio::task::JoinHandle<()>,
) {
    let config = Config::load(&c.hosts[0].config).expect("host 0's config");
    let state = Arc::new(Mutex::new(JenkinsState::default()));
    let control =
        JenkinsControl::from_config(&config, state.clone(), Arc::new(tokio::sync::Notify::new()))
            .expect("control");
    let (goal, goal_rx) = tokio::sync::watch::channel(goal);
    let setup = WatchSetup {
        home: config.jenkins.home.clone(),
        lease_dir: config.lease_dir.clone(),
        config: config.watch.clone(),
    };
    let task = tokio::spawn(control.run(goal_rx, Some(setup)));
    (state, goal, task)
}

/// A node's Jenkins goal is unknown for up to one interval after start: while its first claim,
/// lost to the peer, waits for the next decision, or until the first health check answers. The
/// standby's watcher already runs then. Edits it sees meanwhile must reach the Jenkins once the
/// node knows it is the standby; they were dropped ("not reloading yet"), and the standby stayed
/// stale until the next edit. The crash benchmark hit this when it edited right after a fast
/// settle. Here the control task runs in-process with a goal held at `Leave`, and no sidecar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_seen_while_starting_reach_the_standby_once_it_knows_its_role() {
    let c = in_process_cluster();
    let (state, goal, task) = in_process_control(&c, JenkinsGoal::of(Mode::Leave));
    let watching = c
        .wait(Duration::from_secs(10), || async {
            state.lock().unwrap().watch.is_some().then_some(())
        })
        .await;
    assert!(watching.is_some(), "the watcher did not start");

    write_job(&c.home, "job-0", "edited while starting");
    write_job(&c.home, "folder/nested-0", "nested edited while starting");
    write_job(&c.home, "new-job", "added while starting");
    // Well past the debounce, still starting: the Jenkins is left as it is.
    tokio::time::sleep(DEBOUNCE * 4).await;
    assert_eq!(counter(&c, 0, "fullReloads").await, 0);
    assert_eq!(
        description(&c, 0, "job-0").await.as_deref(),
        Some("job 0 v1")
    );

    goal.send(JenkinsGoal::of(Mode::Standby { prepare: None }))
        .unwrap();
    let followed = c
        .wait(Duration::from_secs(10), || async {
            let ok = description(&c, 0, "job-0").await.as_deref() == Some("edited while starting")
                && description(&c, 0, "folder/nested-0").await.as_deref()
                    == Some("nested edited while starting")
                && description(&c, 0, "new-job").await.as_deref() == Some("added while starting");
            ok.then_some(())
        })
        .await;
    task.abort();
    assert!(
        followed.is_some(),
        "the edits made while starting never reached the standby's Jenkins: {}\n{}",
        c.jenkins_state(0).await.unwrap_or_default(),
        c.logs()
    );
}

/// A switchover prepares the target with a full reload while it stays quiet. Edits that land
/// after that reload start it again, and a nested edit among them gets its own reload: a full
/// reload keeps the folder children it already has, so it would not read the edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_during_a_switchover_preparation_reach_the_target_nested_ones_too() {
    let c = in_process_cluster();
    let (state, _goal, task) =
        in_process_control(&c, JenkinsGoal::of(Mode::Standby { prepare: Some(1) }));
    let prepared = c
        .wait(Duration::from_secs(10), || async {
            let s = state.lock().unwrap();
            (s.prepared_for == Some(1) && s.watch.is_some()).then_some(())
        })
        .await;
    assert!(
        prepared.is_some(),
        "the first preparation did not finish\n{}",
        c.logs()
    );
    let reloads_before = counter(&c, 0, "fullReloads").await;

    write_job(
        &c.home,
        "folder/nested-0",
        "nested edited during the switchover",
    );
    write_job(&c.home, "new-job", "added during the switchover");
    let current = c
        .wait(Duration::from_secs(10), || async {
            let ok = description(&c, 0, "folder/nested-0").await.as_deref()
                == Some("nested edited during the switchover")
                && description(&c, 0, "new-job").await.as_deref()
                    == Some("added during the switchover")
                && state.lock().unwrap().prepared_for == Some(1);
            ok.then_some(())
        })
        .await;
    let reloads_after = counter(&c, 0, "fullReloads").await;
    task.abort();
    assert!(
        current.is_some(),
        "the target is not current after its preparation: {}\n{}",
        c.jenkins_state(0).await.unwrap_or_default(),
        c.logs()
    );
    assert!(
        reloads_after > reloads_before,
        "the preparation's full reload did not run again"
    );
}
