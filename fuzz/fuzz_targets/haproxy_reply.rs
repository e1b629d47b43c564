//! `check_reply` and `parse_servers_state` on arbitrary UTF-8, then `plan_reconcile` on whatever
//! parsed. Every rejection must be an `HaproxyError` whose Display is one line, and a plan must
//! keep its promises: only the named servers, all `maint` writes before all `ready` writes (or the
//! reverse for a planned switchover), and no write for a server already in its target state.
#![no_main]

use jenkins_ha::io::haproxy::{
    check_reply, parse_servers_state, plan_reconcile, AdminState, HaproxyError, WriteOrder,
};
use libfuzzer_sys::{fuzz_target, Corpus};

fn assert_one_line(e: &HaproxyError) {
    let shown = e.to_string();
    assert!(
        !shown.contains(['\n', '\r']),
        "an HAProxy error must be one line: {shown:?}"
    );
}

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    if let Err(e) = check_reply(text) {
        assert_one_line(&e);
    }
    let states = match parse_servers_state(text) {
        Ok(states) => states,
        Err(e) => {
            assert_one_line(&e);
            return Corpus::Keep;
        }
    };
    for s in &states {
        // The three labels are exclusive and one of them always applies.
        let labels = [s.is_ready(), s.is_drain(), s.is_maint()];
        assert!(labels.iter().filter(|b| **b).count() <= 1, "{s:?}");
        assert!(["ready", "drain", "maint"].contains(&s.admin_label()));
    }

    // Every backend seen, plus one that is surely missing.
    let mut backends: Vec<String> = Vec::new();
    for s in &states {
        if !backends.contains(&s.backend) {
            backends.push(s.backend.clone());
        }
    }
    backends.push("fuzz-missing-backend".into());
    let ready = states.first().map_or("jenkins01", |s| s.server.as_str());
    let maint = states
        .iter()
        .map(|s| s.server.as_str())
        .find(|s| *s != ready)
        .unwrap_or(if ready == "jenkins02" {
            "jenkins01"
        } else {
            "jenkins02"
        });
    assert_ne!(ready, maint);

    let others = [maint.to_string()];
    let (maint_first, problems) =
        plan_reconcile(&states, &backends, ready, &others, WriteOrder::MaintFirst);
    let (ready_first, problems2) =
        plan_reconcile(&states, &backends, ready, &others, WriteOrder::ReadyFirst);
    assert_eq!(problems, problems2);
    assert!(!problems.is_empty(), "the missing backend was not reported");
    for p in &problems {
        assert_one_line(p);
    }
    assert_eq!(maint_first.len(), ready_first.len());
    for w in &maint_first {
        assert!(backends.contains(&w.backend));
        let expected = if w.server == maint {
            AdminState::Maint
        } else {
            assert_eq!(w.server, ready);
            AdminState::Ready
        };
        assert_eq!(w.state, expected);
        assert!(ready_first.contains(w));
        let current = states
            .iter()
            .find(|s| s.backend == w.backend && s.server == w.server)
            .expect("a write for a server that is not there");
        assert!(!current.satisfies(w.state), "a needless write: {w:?}");
    }
    let is_maint = |w: &&jenkins_ha::io::haproxy::PlannedWrite| w.state == AdminState::Maint;
    let first_ready = maint_first
        .iter()
        .position(|w| w.state == AdminState::Ready);
    if let Some(i) = first_ready {
        assert!(
            !maint_first[i..].iter().any(|w| is_maint(&w)),
            "ready before maint"
        );
    }
    let first_maint = ready_first
        .iter()
        .position(|w| w.state == AdminState::Maint);
    if let Some(i) = first_maint {
        assert!(
            !ready_first[i..].iter().any(|w| !is_maint(&w)),
            "maint before ready"
        );
    }
    Corpus::Keep
});
