//! Criterion benchmark of the pure decision core: one [`Core::decide`] call for a steady active
//! tick (it holds the term, its Jenkins is caught up and healthy: renew, route, keep Jenkins out of
//! quiet-down) and for a
//! steady standby tick (the peer holds a fresh term: keep Jenkins quiet). Each call includes the
//! reason sentence the core formats for the log and `status`.
//!
//! ```text
//! cargo bench --bench decide_tick
//! ```
//!
//! The results land in `target/criterion/decide/*/new/estimates.json`, which `lab/bench.rs`
//! puts in its table.
//!
//! The observation is the same on every iteration, so the core stays in its steady state: the
//! active's renewal is never recorded (its held counter does not move) and the clock does not
//! advance (the standby's lease never looks stale). That is exactly the work of one tick in
//! which nothing changes, which is every tick of a healthy cluster.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use jenkins_ha::core::{
    Action, CatchUpObs, CatchUpPhase, Core, JenkinsObs, LeaseObs, Observation, Outcome, Params,
    PeerObs, Role, TermView, Timing,
};

fn params(node: &str, peer: &str) -> Params {
    Params {
        node: node.into(),
        priority: 1,
        peers: vec![peer.into()],
        timing: Timing {
            interval: Duration::from_millis(500),
            fall: 3,
            rise: 2,
            lease_timeout: Duration::from_secs(3),
        },
        handover_timeout: Duration::from_secs(60),
        reload_timeout: Duration::from_secs(300),
    }
}

/// A healthy Jenkins whose promotion for term 1 (if it is the active) is complete.
fn healthy() -> JenkinsObs {
    JenkinsObs {
        failures: 0,
        successes: 10,
        current: true,
        catch_up: Some(CatchUpObs {
            term: 1,
            phase: CatchUpPhase::Done,
        }),
        fenced_for: Some(1),
        ..Default::default()
    }
}

fn term(holder: &str, counter: u64) -> LeaseObs {
    LeaseObs::Term(TermView {
        term: 1,
        holder: holder.into(),
        counter,
        released: false,
        handover_to: None,
    })
}

fn observation(now: Duration, lease: LeaseObs, peer_role: Role) -> Observation {
    Observation {
        now,
        lease,
        jenkins: healthy(),
        peers: vec![PeerObs {
            name: "peer".into(),
            role: peer_role,
            term: 1,
            jenkins_healthy: true,
            jenkins_reloading: false,
            current: true,
            priority: 1,
            age: Duration::from_millis(200),
        }],
        paused: false,
        command: None,
    }
}

/// A core that claimed term 1 from an empty lease, the way the daemon does on a fresh cluster.
fn active_core() -> (Core, Observation) {
    let mut core = Core::new(params("jenkins01", "jenkins02"));
    let mut now = Duration::ZERO;
    let claimed = (0..10).any(|_| {
        now += Duration::from_millis(500);
        let d = core.decide(&observation(now, LeaseObs::Empty, Role::Standby));
        let claims = d
            .actions
            .iter()
            .any(|a| matches!(a, Action::Claim { term: 1 }));
        if claims {
            core.record(Outcome::Claimed { term: 1, at: now });
        }
        claims
    });
    assert!(claimed, "the core never claimed term 1 of an empty lease");
    now += Duration::from_millis(500);
    let obs = observation(now, term("jenkins01", 0), Role::Standby);
    let d = core.decide(&obs);
    assert_eq!(d.role, Role::Active, "{}", d.reason);
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::CancelQuietDown { .. })),
        "{:?}",
        d.actions
    );
    assert!(
        d.actions.iter().any(|a| matches!(a, Action::Renew { .. })),
        "{:?}",
        d.actions
    );
    (core, obs)
}

/// A core following the peer's fresh term 1.
fn standby_core() -> (Core, Observation) {
    let mut core = Core::new(params("jenkins02", "jenkins01"));
    let mut obs = observation(Duration::from_secs(5), term("jenkins01", 7), Role::Active);
    obs.peers[0].name = "jenkins01".into();
    for _ in 0..3 {
        core.decide(&obs);
    }
    let d = core.decide(&obs);
    assert_eq!(d.role, Role::Standby, "{}", d.reason);
    assert!(
        d.actions.iter().any(|a| matches!(a, Action::KeepQuiet)),
        "{:?}",
        d.actions
    );
    (core, obs)
}

fn decide_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    let (mut active, active_obs) = active_core();
    group.bench_function("steady active tick", |b| {
        b.iter(|| black_box(active.decide(black_box(&active_obs))))
    });
    let (mut standby, standby_obs) = standby_core();
    group.bench_function("steady standby tick", |b| {
        b.iter(|| black_box(standby.decide(black_box(&standby_obs))))
    });
    group.finish();
}

criterion_group!(benches, decide_tick);
criterion_main!(benches);
