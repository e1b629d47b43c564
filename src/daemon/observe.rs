//! Observe: gathers what the core looks at in one decision from the adapters' reports. Raw
//! facts only: nothing is adjusted here, whatever the node is doing.

use crate::core::cluster::LeaseFacts;
use crate::core::{Command, JenkinsObs, LeaseObs, Mono, Observation, PeerObs};
use crate::io::lease::{LeaseError, LeaseSnapshot, TermFile};
use crate::lock;
use crate::status::LeaseStatus;

use super::shared::Shared;

/// The observation for one decision at `now`, from a lease read and the shared reports.
pub fn observation(
    shared: &Shared,
    snapshot: &Result<LeaseSnapshot, LeaseError>,
    command: Option<Command>,
    now: Mono,
) -> Observation {
    let health = shared.checks.snapshot();
    let jenkins = lock(&shared.jenkins).clone();
    let peers = lock(&shared.peers)
        .values()
        .map(|p| PeerObs {
            name: p.status.name.clone(),
            role: p.status.role,
            term: p.status.term.unwrap_or(0),
            jenkins_healthy: p.status.jenkins_healthy,
            jenkins_reloading: p.status.jenkins == "reloading",
            current: p.status.current,
            priority: p.status.priority,
            age: now.saturating_sub(p.at),
        })
        .collect();
    let (lease, paused) = match snapshot {
        Ok(s) => (s.obs(), s.paused),
        Err(e) => (
            LeaseObs::Unreadable(e.to_string()),
            lock(&shared.published).paused,
        ),
    };
    Observation {
        now,
        lease,
        jenkins: JenkinsObs {
            successes: health.successes,
            failures: health.failures,
            unanswered: health.unanswered,
            last_ok_at: health.last_ok_at,
            session: health.session_epoch,
            quieting_down: jenkins.quieting_down,
            busy_executors: jenkins.busy_executors,
            current: jenkins.current,
            full_reload: jenkins.full_reload,
            prepared_for: jenkins.prepared_for,
            catch_up: jenkins.catch_up,
            fenced_for: jenkins.fenced_for,
        },
        peers,
        paused,
        command,
    }
}

/// The lease as `status` shows it, and the facts the cluster views need, from one read.
/// `still` is how long the core has seen the counter still; a failed read keeps what was known.
pub fn lease_status(
    snapshot: &Result<LeaseSnapshot, LeaseError>,
    still: std::time::Duration,
    previous: &LeaseStatus,
) -> (LeaseStatus, LeaseFacts) {
    let status = match snapshot {
        Ok(s) => {
            let (term, holder, counter, released, handover_to, error) = match &s.newest {
                Some(TermFile::Valid(r)) => (
                    Some(r.term),
                    Some(r.node.clone()),
                    Some(r.counter),
                    r.released,
                    r.handover_to.clone(),
                    None,
                ),
                Some(TermFile::Garbage { term, why }) => (
                    Some(*term),
                    None,
                    None,
                    false,
                    None,
                    Some(format!("term-{term}: {why}")),
                ),
                None => (None, None, None, false, None, None),
            };
            LeaseStatus {
                term,
                holder,
                counter,
                still_s: still.as_secs_f64(),
                released,
                handover_to,
                error,
            }
        }
        Err(e) => LeaseStatus {
            error: Some(e.to_string()),
            still_s: still.as_secs_f64(),
            ..previous.clone()
        },
    };
    let facts = LeaseFacts {
        term: status.term,
        holder: status.holder.clone(),
        released: status.released,
        still,
    };
    (status, facts)
}
