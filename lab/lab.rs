//! The lab: a real failover on one machine (README command 1, through `lab/run`).
//!
//! It generates a JENKINS_HOME (`LAB_JOBS` jobs in folders, build histories, some jobs on a
//! timer), starts Debian's HAProxy, two Jenkins stand-ins that each see the home through their
//! own bindfs mount (as two NFS clients do; `LAB_BINDFS=0` shares the directory) and two
//! jenkins-ha sidecars on loopback, all at once as two booting hosts do; prints
//! `jenkins-ha status`; lets builds run; kills the active's Jenkins with SIGKILL; prints how long
//! until HAProxy served the standby's Jenkins, what the promotion did, and the ledger of builds
//! (collisions, duplicate builds, lost fires); prints the status again and cleans up.
//!
//! `LAB_NODES=3` runs three masters (the sidecars configured with `peers:`); `LAB_BACKEND=etcd`
//! keeps the lease in a real 3-member etcd cluster that the lab starts on loopback too;
//! `LAB_TLS=1` (or `server`) serves the sidecars' API over mutual TLS (or TLS);
//! `LAB_INTERVAL_MS` sets the interval, `LAB_DIR` keeps every file and log in that directory.

#[path = "cluster.rs"]
mod cluster;
#[path = "etcd.rs"]
mod etcd;

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use cluster::home_gen::HomeSpec;
use cluster::{binaries, Cluster, Spec, TlsSpec, NODE_NAMES};
use etcd::EtcdCluster;

fn show_status(c: &Cluster, i: usize) {
    let out = Command::new(binaries().join("jenkins-ha"))
        .args(["status", "-c"])
        .arg(&c.hosts[i].config)
        .output()
        .expect("run jenkins-ha status");
    println!("$ jenkins-ha status        # on {}", c.name(i));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// What to run, from the environment.
struct Settings {
    interval: u64,
    nodes: usize,
    etcd: bool,
    tls: Option<TlsSpec>,
    jobs: usize,
    bindfs: bool,
}

fn settings() -> Result<Settings, String> {
    let interval = std::env::var("LAB_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let nodes = match std::env::var("LAB_NODES") {
        Err(_) => 2,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| (2..=NODE_NAMES.len()).contains(n))
            .ok_or_else(|| {
                format!(
                    "LAB_NODES={v:?}: give a number of masters from 2 to {}",
                    NODE_NAMES.len()
                )
            })?,
    };
    let etcd = match std::env::var("LAB_BACKEND").as_deref() {
        Err(_) | Ok("file") => false,
        Ok("etcd") => true,
        Ok(other) => {
            return Err(format!(
                "LAB_BACKEND={other:?}: give file (term files on JENKINS_HOME, the default) or etcd"
            ))
        }
    };
    // LAB_TLS=1: the sidecars serve HTTPS (node.tls, certificates made for the run), with
    // client certificates required; LAB_TLS=server without them.
    let tls = match std::env::var("LAB_TLS").as_deref() {
        Ok("1") | Ok("mutual") => Some(TlsSpec {
            require_client_cert: true,
        }),
        Ok("server") => Some(TlsSpec {
            require_client_cert: false,
        }),
        _ => None,
    };
    let jobs: usize = std::env::var("LAB_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20);
    let bindfs = std::env::var("LAB_BINDFS").as_deref() != Ok("0");
    Ok(Settings {
        interval,
        nodes,
        etcd,
        tls,
        jobs,
        bindfs,
    })
}

/// Waits until a request through HAProxy gets a 200 from a Jenkins other than host `dead`'s;
/// returns that host.
async fn wait_served_by_another(c: &Cluster, dead: usize, timeout: Duration) -> Option<usize> {
    c.wait(timeout, || async {
        match c.through_haproxy(0, "/login").await {
            Some((200, Some(node))) if node != c.name(dead) => c.index_of(&node),
            _ => None,
        }
    })
    .await
}

async fn run(s: &Settings, etcd: Option<&EtcdCluster>) -> Result<(), String> {
    let (interval, jobs, bindfs, n) = (s.interval, s.jobs, s.bindfs, s.nodes);
    // etcd: a lease that outlives an etcd leader election (the holder trusts it for 3 s after
    // each renewal at interval 500 ms), as in the etcd tests.
    let lease_ms = if etcd.is_some() {
        (interval * 8).max(4000)
    } else {
        interval * 6
    };
    let timers = (jobs / 100).clamp(4, 60);
    let spec = Spec {
        nodes: n,
        interval: Duration::from_millis(interval),
        fall: 3,
        lease_timeout: Duration::from_millis(lease_ms),
        jobs: 0,
        home: Some(HomeSpec {
            jobs,
            folders: (jobs / 100).clamp(1, 100),
            top_level_jobs: (jobs / 100).clamp(4, 100).min(jobs),
            builds: 5,
            timers,
            timer_every: Duration::from_secs(5),
            ..HomeSpec::default()
        }),
        // The stand-in's own load model: 0.3 s + 4 ms per item + 20 us per build record (a
        // 10,000-job home takes about 41 s to load, at start-up and on a full reload).
        reload_base: Duration::from_millis(300),
        reload_per_item: Duration::from_millis(4),
        reload_timeout: Duration::from_secs(600),
        standin_args: ["--build-duration", "2s", "--executors", "4"]
            .map(String::from)
            .to_vec(),
        bindfs,
        tls: s.tls,
        etcd_lease: etcd.map(|e| (e.endpoints(), "/jenkins-ha/lab".to_string())),
        ..Spec::default()
    };
    println!(
        "lab: HAProxy + {n} Jenkins stand-ins on one JENKINS_HOME ({jobs} jobs, {timers} on a timer every 5 s; {}) + {n} jenkins-ha sidecars (interval {} ms, fall 3, lease_timeout {} ms{})",
        if bindfs { "each through its own bindfs mount, as NFS clients" } else { "one shared directory" },
        spec.interval.as_millis(),
        spec.lease_timeout.as_millis(),
        match spec.tls {
            Some(t) if t.require_client_cert => ", API over mutual TLS",
            Some(_) => ", API over TLS",
            None => "",
        }
    );
    if let Some(e) = etcd {
        println!(
            "lab: the lease in etcd ({} members at {}), prefix /jenkins-ha/lab",
            e.members.len(),
            e.endpoints().join(", ")
        );
    }
    // LAB_DIR=path keeps every file and log there after the run.
    let c = match std::env::var("LAB_DIR") {
        Ok(dir) => Cluster::boot_in(std::path::Path::new(&dir), spec),
        Err(_) => Cluster::boot(spec),
    };
    let result = failover(c).await;
    if let Some(e) = etcd.filter(|_| result.is_err()) {
        eprintln!("lab: etcd's logs:\n{}", e.logs());
    }
    result
}

/// Shows the status, lets builds run, kills the active's Jenkins, waits for HAProxy to serve
/// another, shows the promotion, the ledger of builds and the status again. The cluster is gone
/// when it returns.
async fn failover(mut c: Cluster) -> Result<(), String> {
    let n = c.hosts.len();
    println!("lab: files and logs in {}", c.dir.display());
    if n == 2 {
        println!("lab: both Jenkins load the home while both sidecars start (as at boot)");
    } else {
        println!("lab: every Jenkins loads the home while every sidecar starts (as at boot)");
    }
    for i in 0..n {
        c.wait_jenkins_loaded(i, 0);
    }
    let load = c
        .jenkins_state(0)
        .await
        .and_then(|s| s["lastLoad"]["modelledMs"].as_u64())
        .unwrap_or(0);
    println!(
        "lab: the stand-ins loaded the home in {:.1} s each (a full reload costs as much)",
        load as f64 / 1000.0
    );
    // A first promotion may need a full reload (a sidecar that started beside a running
    // Jenkins cannot tell what it loaded), and the standbys check their Jenkins item by item.
    let patience = Duration::from_secs(60) + Duration::from_millis(load * 3);
    let Some(active) = c.wait_one_active(patience).await else {
        return Err(format!(
            "no node became active in {patience:?}\n{}",
            c.logs()
        ));
    };
    if !c.wait_routed(0, active, patience).await
        || c.wait_served_by(0, active, patience).await.is_none()
    {
        return Err(format!(
            "HAProxy does not route to {}\n{}",
            c.name(active),
            c.logs()
        ));
    }
    // Let the standbys become current and builds run before showing the table.
    for standby in c.others(active) {
        let current = c
            .wait(patience * 2, || async {
                let s = c.status(standby).await?;
                (s.nodes[0].current && s.nodes[0].loaded.as_deref() == Some("known")).then_some(())
            })
            .await;
        if current.is_none() {
            return Err(format!(
                "{} never became a current standby\n{}",
                c.name(standby),
                c.logs()
            ));
        }
    }
    let from = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    println!();
    show_status(&c, active);
    println!();
    println!(
        "lab: kill -9 the Jenkins of {} (the active node)",
        c.name(active)
    );
    let killed = Instant::now();
    let killed_at = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    c.kill_jenkins(active);
    let Some(new) = wait_served_by_another(&c, active, Duration::from_secs(60)).await else {
        return Err(format!("no standby took over within 60 s\n{}", c.logs()));
    };
    println!(
        "lab: HAProxy served {}'s Jenkins (HTTP 200) {:.2} s after the kill (at {killed_at})",
        c.name(new),
        killed.elapsed().as_secs_f64()
    );
    if let Some(p) = c
        .wait(Duration::from_secs(30), || async {
            c.status(new).await?.nodes[0]
                .promotion
                .clone()
                .filter(|p| p.term > 1)
        })
        .await
    {
        println!(
            "lab: the promotion: {} ({} ms; {} queued build(s) cancelled that {} had run)",
            p.detail,
            p.took_ms,
            p.cancelled_queued,
            c.name(active)
        );
    }
    // Builds run on the new active; then the ledger of every build on disk.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let verdict = c.build_ledger(new, from, Duration::from_secs(6)).await;
    println!(
        "lab: builds: {} build-number collisions, {} duplicate builds, {} lost timer fires ({} fires judged, {} builds run)",
        verdict.collisions,
        verdict.duplicates.len(),
        verdict.lost.len(),
        verdict.fires_judged,
        verdict.run_builds
    );
    println!();
    show_status(&c, new);
    println!();
    println!(
        "lab: done; stopping every process and removing {}",
        c.dir.display()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lab: {e}");
            return ExitCode::from(2);
        }
    };
    let etcd = settings.etcd.then(|| EtcdCluster::start(3));
    match run(&settings, etcd.as_ref()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab: {e}");
            ExitCode::FAILURE
        }
    }
}
