//! The lab: a real failover on one machine (README command 1, through `lab/run`).
//!
//! It starts Debian's HAProxy, two Jenkins stand-ins on one shared JENKINS_HOME and two
//! jenkins-ha sidecars on loopback; prints `jenkins-ha status`; kills the active's Jenkins with
//! SIGKILL; prints how long until HAProxy served the standby's Jenkins; prints the status again
//! and cleans up.

#[path = "cluster.rs"]
mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

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
    let spec = Spec {
        interval: Duration::from_millis(interval),
        fall: 3,
        lease_timeout: Duration::from_millis(interval * 6),
        jobs: 20,
        tls,
        ..Spec::default()
    };
    println!(
        "lab: HAProxy + 2 Jenkins stand-ins on one JENKINS_HOME + 2 jenkins-ha sidecars (interval {} ms, fall 3, lease_timeout {} ms{})",
        spec.interval.as_millis(),
        spec.lease_timeout.as_millis(),
        match spec.tls {
            Some(t) if t.require_client_cert => ", API over mutual TLS",
            Some(_) => ", API over TLS",
            None => "",
        }
    );
    // LAB_DIR=path keeps every file and log there after the run.
    let mut c = match std::env::var("LAB_DIR") {
        Ok(dir) => {
            let mut c = Cluster::prepare_in(std::path::Path::new(&dir), spec);
            c.start_sidecar(0);
            c.start_sidecar(1);
            c
        }
        Err(_) => Cluster::start(spec),
    };
    println!("lab: files and logs in {}", c.dir.display());
    let Some(active) = c.wait_one_active(Duration::from_secs(20)).await else {
        eprintln!("lab: no node became active in 20 s\n{}", c.logs());
        std::process::exit(1);
    };
    let standby = 1 - active;
    if !c.wait_routed(0, active, Duration::from_secs(10)).await
        || c.wait_served_by(0, active, Duration::from_secs(20))
            .await
            .is_none()
    {
        eprintln!(
            "lab: HAProxy does not route to {}\n{}",
            NAMES[active],
            c.logs()
        );
        std::process::exit(1);
    }
    // Let the standby's first heartbeat and quiet-down land before showing the table.
    tokio::time::sleep(Duration::from_millis(interval * 3)).await;
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
    tokio::time::sleep(Duration::from_millis(interval * 2)).await;
    println!();
    show_status(&c, standby);
    println!();
    println!(
        "lab: done; stopping every process and removing {}",
        c.dir.display()
    );
}
