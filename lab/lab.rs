//! The lab: a real failover on one machine (README command 1, through `lab/run`).
//!
//! It starts Debian's HAProxy, two Jenkins stand-ins on one shared JENKINS_HOME and two
//! jenkins-ha sidecars on loopback; prints `jenkins-ha status`; kills the active's Jenkins with
//! SIGKILL; prints how long until HAProxy served the standby's Jenkins; prints the status again
//! and cleans up.
//!
//! `LAB_NODES=3` runs three masters (the sidecars configured with `peers:`), `LAB_BACKEND=etcd`
//! keeps the lease in a real 3-member etcd cluster that the lab starts on loopback too;
//! `LAB_TLS=1` (or `server`) serves the sidecars' API over mutual TLS (or TLS);
//! `LAB_INTERVAL_MS` sets the interval, `LAB_DIR` keeps every file and log in that directory.

#[path = "cluster.rs"]
mod cluster;
#[path = "etcd.rs"]
mod etcd;

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

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
    Ok(Settings {
        interval,
        nodes,
        etcd,
        tls,
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
    let interval = s.interval;
    // etcd: a lease that outlives an etcd leader election (the holder trusts it for 3 s after
    // each renewal at interval 500 ms), as in the etcd tests.
    let lease_ms = if etcd.is_some() {
        (interval * 8).max(4000)
    } else {
        interval * 6
    };
    let spec = Spec {
        nodes: s.nodes,
        interval: Duration::from_millis(interval),
        fall: 3,
        lease_timeout: Duration::from_millis(lease_ms),
        jobs: 20,
        etcd_lease: etcd.map(|e| (e.endpoints(), "/jenkins-ha/lab".to_string())),
        tls: s.tls,
        ..Spec::default()
    };
    println!(
        "lab: HAProxy + {n} Jenkins stand-ins on one JENKINS_HOME + {n} jenkins-ha sidecars (interval {} ms, fall 3, lease_timeout {} ms{})",
        spec.interval.as_millis(),
        spec.lease_timeout.as_millis(),
        match spec.tls {
            Some(t) if t.require_client_cert => ", API over mutual TLS",
            Some(_) => ", API over TLS",
            None => "",
        },
        n = s.nodes,
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
        Ok(dir) => {
            let mut c = Cluster::prepare_in(std::path::Path::new(&dir), spec);
            for i in 0..c.hosts.len() {
                c.start_sidecar(i);
            }
            c
        }
        Err(_) => Cluster::start(spec),
    };
    let result = failover(c, interval).await;
    if let Some(e) = etcd.filter(|_| result.is_err()) {
        eprintln!("lab: etcd's logs:\n{}", e.logs());
    }
    result
}

/// Shows the status, kills the active's Jenkins, waits for HAProxy to serve another, shows the
/// status again. The cluster is gone when it returns.
async fn failover(mut c: Cluster, interval: u64) -> Result<(), String> {
    println!("lab: files and logs in {}", c.dir.display());
    let Some(active) = c.wait_one_active(Duration::from_secs(20)).await else {
        return Err(format!("no node became active in 20 s\n{}", c.logs()));
    };
    if !c.wait_routed(0, active, Duration::from_secs(10)).await
        || c.wait_served_by(0, active, Duration::from_secs(20))
            .await
            .is_none()
    {
        return Err(format!(
            "HAProxy does not route to {}\n{}",
            c.name(active),
            c.logs()
        ));
    }
    // Let the standbys' first heartbeats and quiet-down land before showing the table.
    tokio::time::sleep(Duration::from_millis(interval * 3)).await;
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
    tokio::time::sleep(Duration::from_millis(interval * 2)).await;
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
