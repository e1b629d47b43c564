//! Timing agreement on real processes: two sidecars whose `timing.lease_timeout` differ. The
//! holder at 3 s trusts its lease for 2.4 s after each renewal (3 s less its margin); the other
//! node at 2 s would call that lease stale after 2 s, while the holder may still act. So it
//! never takes the holder's term over when the lease goes stale: `status`, the metrics, the log
//! and `check-config` say why, and once its config is fixed (timing needs a restart: SIGHUP
//! says so) it fails over as usual. A term the holder releases is still taken at once.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Cluster, Spec, NAMES};
use nix::sys::signal::Signal;

/// The lease_timeout of jenkins01 (the holder) in these tests; jenkins02 keeps the spec's 2 s.
const HOLDER_LEASE: Duration = Duration::from_secs(3);

/// Sets host `i`'s `timing.lease_timeout` in its config file (read at its next start or SIGHUP).
fn set_lease_timeout(c: &Cluster, i: usize, lease: Duration) {
    let path = &c.hosts[i].config;
    let yaml = std::fs::read_to_string(path).expect("the sidecar's config");
    let (head, tail) = yaml
        .split_once("  lease_timeout: ")
        .expect("a timing.lease_timeout line");
    let rest = tail.split_once('\n').map(|(_, r)| r).unwrap_or("");
    let yaml = format!("{head}  lease_timeout: {}ms\n{rest}", lease.as_millis());
    std::fs::write(path, yaml).expect("write the config");
}

/// A cluster whose jenkins01 runs lease_timeout 3 s and holds term 1, and whose jenkins02 runs
/// 2 s and follows it as a standby.
async fn mismatched() -> Cluster {
    let mut c = Cluster::prepare(Spec::default());
    set_lease_timeout(&c, 0, HOLDER_LEASE);
    c.start_sidecar(0);
    let active = c
        .wait(Duration::from_secs(15), || async {
            (c.active_code(0).await == Some(200)).then_some(())
        })
        .await;
    assert!(
        active.is_some(),
        "jenkins01 never became active\n{}",
        c.logs()
    );
    c.start_sidecar(1);
    let following = c
        .wait(Duration::from_secs(15), || async {
            let s = c.status(1).await?;
            (s.nodes[0].role.as_str() == "standby" && s.nodes[0].jenkins_healthy).then_some(())
        })
        .await;
    assert!(
        following.is_some(),
        "jenkins02 never followed\n{}",
        c.logs()
    );
    c
}

/// `GET /metrics` of node `i`, in the text format.
async fn metrics(c: &Cluster, i: usize) -> String {
    let r = c
        .get(c.hosts[i].api_port, "/metrics")
        .await
        .expect("metrics answer");
    String::from_utf8_lossy(&r.body).into_owned()
}

fn sidecar_log(c: &Cluster, i: usize) -> String {
    std::fs::read_to_string(c.dir.join(format!("{}-sidecar.log", NAMES[i]))).unwrap_or_default()
}

const MISMATCH_LINE: &str =
    "Timing differs: jenkins01 has lease_timeout 3s, jenkins02 has lease_timeout 2s; \
     neither takes a stale term over from the other: align timing: in both configs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_with_other_timing_never_takes_a_stale_term_over_until_its_config_is_fixed() {
    let mut c = mismatched().await;

    // Both nodes see the mismatch while all is well: status (table and JSON), the metric, and
    // check-config against the running peer.
    let seen = c
        .wait(Duration::from_secs(5), || async {
            let s = c.status(1).await?;
            (s.nodes[1].timing_differs == ["lease_timeout"]).then_some(())
        })
        .await;
    assert!(seen.is_some(), "status shows no mismatch\n{}", c.logs());
    let (code, table, _) = c.cli(1, &["status"]);
    assert_eq!(code, Some(0), "{table}");
    assert!(table.contains(MISMATCH_LINE), "{table}");
    let (_, table, _) = c.cli(0, &["status"]);
    assert!(
        table.contains(
            "Timing differs: jenkins02 has lease_timeout 2s, jenkins01 has lease_timeout 3s;"
        ),
        "{table}"
    );
    for i in [0, 1] {
        let m = metrics(&c, i).await;
        assert!(m.contains("\njenkins_ha_timing_mismatch 1\n"), "{m}");
    }
    let (code, out, err) = c.cli(1, &["check-config"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(
            "warning: timing differs from the running jenkins01: it has lease_timeout 3s, this \
             config lease_timeout 2s; neither node takes a stale term over from the other: align \
             timing: in both configs\n"
        ),
        "{out}"
    );

    // The holder's host dies: its lease goes stale by jenkins02's 2 s, and by its own 3 s, and
    // stays so. jenkins02 never claims.
    c.kill_sidecar(0);
    c.kill_jenkins(0);
    let died = Instant::now();
    while died.elapsed() < HOLDER_LEASE * 3 {
        assert_ne!(
            c.active_code(1).await,
            Some(200),
            "jenkins02 took over under other timing after {:?}\n{}",
            died.elapsed(),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.term_files(), ["term-1"], "no new term may exist");
    let s = c.status(1).await.expect("jenkins02's status");
    assert_eq!(s.active, None);
    let reason = &s.nodes[0].reason;
    assert!(
        reason.starts_with("standby: cannot take over term 1 from jenkins01 (not renewed for ")
            && reason.ends_with(
                "): its timing (interval 200ms, lease_timeout 3s, fall 3) differs from mine \
                 (interval 200ms, lease_timeout 2s, fall 3); align timing: in both configs"
            ),
        "{reason}\n{}",
        c.logs()
    );
    assert_eq!(s.nodes[1].timing_differs, ["lease_timeout"]);
    assert_eq!(
        s.lease.timing.map(|t| t.lease_timeout),
        Some(HOLDER_LEASE),
        "the term record carries the holder's timing"
    );
    let (code, table, _) = c.cli(1, &["status"]);
    assert_eq!(code, Some(3), "no node is active: {table}");
    assert!(table.contains(MISMATCH_LINE), "{table}");
    assert!(metrics(&c, 1)
        .await
        .contains("\njenkins_ha_timing_mismatch 1\n"));
    let log = sidecar_log(&c, 1);
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("standby: cannot take over term 1 from jenkins01")),
        "{log}"
    );

    // The config fixed: SIGHUP cannot apply timing (it says so), a restart does.
    set_lease_timeout(&c, 1, HOLDER_LEASE);
    c.sidecar(1).signal(Signal::SIGHUP);
    let said = c
        .wait(Duration::from_secs(5), || async {
            sidecar_log(&c, 1)
                .contains("SIGHUP: not applied, needs a restart: timing")
                .then_some(())
        })
        .await;
    assert!(said.is_some(), "{}", sidecar_log(&c, 1));
    assert_ne!(c.active_code(1).await, Some(200));
    assert_eq!(c.sidecar(1).terminate(Duration::from_secs(10)), Some(0));
    c.start_sidecar(1);
    let restarted = Instant::now();
    let took = c
        .wait(HOLDER_LEASE + Duration::from_secs(15), || async {
            (c.active_code(1).await == Some(200)).then(|| restarted.elapsed())
        })
        .await
        .unwrap_or_else(|| panic!("no takeover after the fix\n{}", c.logs()));
    eprintln!("jenkins02 took over {took:?} after its restart with the holder's timing");
    assert!(
        took >= HOLDER_LEASE,
        "took over {took:?} after its start: before the holder's lease_timeout of stillness"
    );
    assert!(c.wait_routed(0, 1, Duration::from_secs(5)).await);
    assert_eq!(c.term_files(), ["term-1", "term-2"]);
    let m = metrics(&c, 1).await;
    assert!(m.contains("\njenkins_ha_timing_mismatch 0\n"), "{m}");
    assert!(
        m.contains("\njenkins_ha_failovers_total{reason=\"lease_expired\"} 1\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_term_is_taken_at_once_whatever_the_holders_timing() {
    let mut c = mismatched().await;
    // The holder's Jenkins dies: after `fall` failed checks it releases its term, and no longer
    // relies on its lease. jenkins02 takes it at once, and says the timing differs.
    let killed = Instant::now();
    c.kill_jenkins(0);
    let took = c
        .wait(Duration::from_secs(10), || async {
            (c.active_code(1).await == Some(200)).then(|| killed.elapsed())
        })
        .await
        .unwrap_or_else(|| panic!("no takeover of a released term\n{}", c.logs()));
    eprintln!("jenkins02 took the released term {took:?} after the kill");
    let log = sidecar_log(&c, 1);
    assert!(
        log.contains(
            "claiming term 2: jenkins01 released term 1; its timing (interval 200ms, \
             lease_timeout 3s, fall 3) differs from mine (interval 200ms, lease_timeout 2s, \
             fall 3): align timing: in both configs"
        ),
        "{log}"
    );
    assert!(c.wait_routed(0, 1, Duration::from_secs(5)).await);
    let m = metrics(&c, 1).await;
    assert!(
        m.contains("\njenkins_ha_failovers_total{reason=\"released\"} 1\n"),
        "{m}"
    );
}
