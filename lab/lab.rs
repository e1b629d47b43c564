//! The lab: a real failover on one machine (README command 1, through `lab/run`).
//!
//! It generates a JENKINS_HOME (`LAB_JOBS` jobs in folders, build histories, some jobs on a
//! timer), starts Debian's HAProxy, two Jenkins stand-ins that each see the home through their
//! own bindfs mount (as two NFS clients do; `LAB_BINDFS=0` shares the directory) and two
//! jenkins-ha sidecars on loopback, all at once as two booting hosts do; prints
//! `jenkins-ha status`; lets builds run; kills the active's Jenkins with SIGKILL; prints how long
//! until HAProxy served the standby's Jenkins, what the promotion did, and the ledger of builds
//! (collisions, duplicate builds, lost fires); prints the status again and cleans up.

#[path = "cluster.rs"]
mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster::home_gen::HomeSpec;
use cluster::{binaries, Cluster, Spec, TlsSpec, NAMES};

fn show_status(c: &Cluster, i: usize) {
    let out = Command::new(binaries().join("jenkins-ha"))
        .args(["status", "-c"])
        .arg(&c.hosts[i].config)
        .output()
        .expect("run jenkins-ha status");
    println!("$ jenkins-ha status        # on {}", NAMES[i]);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let interval = std::env::var("LAB_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
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
    let timers = (jobs / 100).clamp(4, 60);
    let spec = Spec {
        interval: Duration::from_millis(interval),
        fall: 3,
        lease_timeout: Duration::from_millis(interval * 6),
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
        tls,
        ..Spec::default()
    };
    println!(
        "lab: HAProxy + 2 Jenkins stand-ins on one JENKINS_HOME ({jobs} jobs, {timers} on a timer every 5 s; {}) + 2 jenkins-ha sidecars (interval {} ms, fall 3, lease_timeout {} ms{})",
        if bindfs { "each through its own bindfs mount, as NFS clients" } else { "one shared directory" },
        spec.interval.as_millis(),
        spec.lease_timeout.as_millis(),
        match spec.tls {
            Some(t) if t.require_client_cert => ", API over mutual TLS",
            Some(_) => ", API over TLS",
            None => "",
        }
    );
    // LAB_DIR=path keeps every file and log there after the run.
    let c = match std::env::var("LAB_DIR") {
        Ok(dir) => Cluster::boot_in(std::path::Path::new(&dir), spec),
        Err(_) => Cluster::boot(spec),
    };
    println!("lab: files and logs in {}", c.dir.display());
    println!("lab: both Jenkins load the home while both sidecars start (as at boot)");
    for i in 0..2 {
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
    let mut c = c;
    // A first promotion may need a full reload (a sidecar that started beside a running
    // Jenkins cannot tell what it loaded), and the standby checks its Jenkins item by item.
    let patience = Duration::from_secs(60) + Duration::from_millis(load * 3);
    let Some(active) = c.wait_one_active(patience).await else {
        eprintln!("lab: no node became active in {patience:?}\n{}", c.logs());
        std::process::exit(1);
    };
    let standby = 1 - active;
    if !c.wait_routed(0, active, patience).await
        || c.wait_served_by(0, active, patience).await.is_none()
    {
        eprintln!(
            "lab: HAProxy does not route to {}\n{}",
            NAMES[active],
            c.logs()
        );
        std::process::exit(1);
    }
    // Let the standby become current and builds run before showing the table.
    let current = c
        .wait(patience * 2, || async {
            let s = c.status(standby).await?;
            (s.nodes[0].current && s.nodes[0].loaded.as_deref() == Some("known")).then_some(())
        })
        .await;
    if current.is_none() {
        eprintln!(
            "lab: {} never became a current standby\n{}",
            NAMES[standby],
            c.logs()
        );
        std::process::exit(1);
    }
    let from = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    println!();
    show_status(&c, active);
    println!();
    println!(
        "lab: kill -9 the Jenkins of {} (the active node)",
        NAMES[active]
    );
    let killed = Instant::now();
    let killed_at = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    c.kill_jenkins(active);
    let served = c.wait_served_by(0, standby, Duration::from_secs(60)).await;
    match served {
        Some(_) => println!(
            "lab: HAProxy served {}'s Jenkins (HTTP 200) {:.2} s after the kill (at {killed_at})",
            NAMES[standby],
            killed.elapsed().as_secs_f64()
        ),
        None => {
            eprintln!(
                "lab: the standby did not take over within 60 s\n{}",
                c.logs()
            );
            std::process::exit(1);
        }
    }
    if let Some(p) = c
        .wait(Duration::from_secs(30), || async {
            c.status(standby).await?.nodes[0]
                .promotion
                .clone()
                .filter(|p| p.term > 1)
        })
        .await
    {
        println!(
            "lab: the promotion: {} ({} ms; {} queued build(s) cancelled that {} had run)",
            p.detail, p.took_ms, p.cancelled_queued, NAMES[active]
        );
    }
    // Builds run on the new active; then the ledger of every build on disk.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let verdict = c.build_ledger(standby, from, Duration::from_secs(6)).await;
    println!(
        "lab: builds: {} build-number collisions, {} duplicate builds, {} lost timer fires ({} fires judged, {} builds run)",
        verdict.collisions,
        verdict.duplicates.len(),
        verdict.lost.len(),
        verdict.fires_judged,
        verdict.run_builds
    );
    println!();
    show_status(&c, standby);
    println!();
    println!(
        "lab: done; stopping every process and removing {}",
        c.dir.display()
    );
}
