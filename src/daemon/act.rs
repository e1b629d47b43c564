//! Act: carries out a decision's actions. Lease writes happen here (and their outcomes go back
//! to the core); HAProxy and Jenkins actions become goals for their tasks, which act on them
//! idempotently; heartbeats are nudged.

use std::sync::Arc;

use tokio::sync::watch;

use super::jenkins_control::{JenkinsGoal, Mode};
use super::routing::RouteGoal;
use super::shared::Shared;
use crate::core::{Action, Core, Decision, Outcome, RouteOrder};
use crate::io::clock;
use crate::io::haproxy::WriteOrder;
use crate::io::lease::{unix_ms, LeaseIo, TermRecord};
use crate::lock;

/// The handles the actions need.
pub struct Actor {
    pub shared: Arc<Shared>,
    pub lease: LeaseIo,
    pub route_goal: watch::Sender<RouteGoal>,
    pub jenkins_goal: watch::Sender<JenkinsGoal>,
    /// Bumped to send heartbeats at once.
    pub peers_now: watch::Sender<u64>,
    /// Our current term's record, as last written.
    pub record: Option<TermRecord>,
}

impl Actor {
    /// Carries out the actions. Returns true if a claim was won (decide again at once).
    pub async fn act(&mut self, core: &mut Core, decision: &Decision) -> bool {
        self.jenkins_goal.send_if_modified(|goal| {
            let mut next = goal.clone();
            merge_jenkins_goal(&mut next, decision);
            set(goal, next)
        });
        let mut claimed = false;
        for action in &decision.actions {
            match action {
                Action::Claim { term } => {
                    let now_ms = unix_ms();
                    let record = TermRecord {
                        term: *term,
                        node: self.shared.config.node.name.clone(),
                        counter: 0,
                        state: "active".into(),
                        released: false,
                        handover_to: None,
                        reason: decision.reason.text.clone(),
                        end_reason: None,
                        started_unix_ms: now_ms,
                        renewed_unix_ms: now_ms,
                    };
                    let at = clock::now();
                    let to_write = record.clone();
                    match self.lease.call(move |l| l.claim(&to_write)).await {
                        Ok(true) => {
                            tracing::info!("won term {term}");
                            if let Some(why) = decision.reason.kind.claim() {
                                self.shared.metrics.failover(why);
                            }
                            core.record(Outcome::Claimed { term: *term, at });
                            self.record = Some(record);
                            claimed = true;
                            // Tell the others at once: an old holder stops routing at its next tick.
                            self.nudge_peers();
                        }
                        Ok(false) => {
                            tracing::info!(
                                "term {term} was taken by another node first; following it"
                            );
                            core.record(Outcome::ClaimLost { term: *term });
                        }
                        Err(e) => tracing::warn!("claiming term {term} failed: {e}"),
                    }
                }
                Action::Renew {
                    term,
                    counter,
                    handover_to,
                } => {
                    let Some(mut record) = self.record.clone().filter(|r| r.term == *term) else {
                        continue;
                    };
                    record.counter = *counter;
                    record.handover_to = handover_to.clone();
                    record.renewed_unix_ms = unix_ms();
                    if let Some(to) = handover_to {
                        record.end_reason = Some(format!("planned switchover to {to}"));
                    }
                    let at = clock::now();
                    let to_write = record.clone();
                    match self.lease.call(move |l| l.write(&to_write)).await {
                        Ok(()) => {
                            core.record(Outcome::Renewed {
                                term: *term,
                                counter: *counter,
                                at,
                                done: clock::now(),
                            });
                            self.record = Some(record);
                        }
                        Err(e) => tracing::warn!("renewing term {term} failed: {e}"),
                    }
                    lock(&self.shared.published).handover_to = handover_to.clone();
                }
                Action::Release { term } => {
                    let Some(mut record) = self.record.clone().filter(|r| r.term == *term) else {
                        continue;
                    };
                    record.released = true;
                    record.state = "released".into();
                    record.end_reason = Some(decision.reason.text.clone());
                    record.renewed_unix_ms = unix_ms();
                    let to_write = record.clone();
                    match self.lease.call(move |l| l.write(&to_write)).await {
                        Ok(()) => {
                            core.record(Outcome::Released { term: *term });
                            lock(&self.shared.published).released = true;
                            self.record = None;
                        }
                        Err(e) => tracing::warn!(
                            "releasing term {term} failed: {e}; the lease will expire instead"
                        ),
                    }
                }
                Action::Route { until, order, .. } => {
                    let order = match order {
                        RouteOrder::FenceOnly => WriteOrder::FenceOnly,
                        RouteOrder::ReadyFirst => WriteOrder::ReadyFirst,
                        RouteOrder::MaintFirst => WriteOrder::MaintFirst,
                    };
                    let goal = RouteGoal::Route {
                        until: *until,
                        order,
                    };
                    self.route_goal.send_if_modified(|g| set(g, goal));
                    lock(&self.shared.published).released = false;
                }
                Action::StopRouting => {
                    self.route_goal
                        .send_if_modified(|g| set(g, RouteGoal::Observe));
                }
                Action::NotifyPeers => self.nudge_peers(),
                // The Jenkins goal is taken from the whole list above.
                Action::KeepQuiet
                | Action::PrepareTakeover { .. }
                | Action::FencePeers { .. }
                | Action::CatchUp { .. }
                | Action::CancelQuietDown { .. }
                | Action::Drain { .. }
                | Action::RestartJenkins { .. } => {}
            }
        }
        claimed
    }

    fn nudge_peers(&self) {
        self.peers_now.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Folds a decision's Jenkins actions into the goal: the mode they describe (if any; a
/// decision that only claims leaves it as it is), and the latest fencing and restart asked for.
pub fn merge_jenkins_goal(goal: &mut JenkinsGoal, decision: &Decision) {
    let mut mode = None;
    for action in &decision.actions {
        match action {
            Action::KeepQuiet => {
                mode.get_or_insert(Mode::Standby { prepare: None });
            }
            Action::PrepareTakeover { term } => {
                mode = Some(Mode::Standby {
                    prepare: Some(*term),
                })
            }
            Action::CatchUp {
                term,
                prepared,
                final_pass,
            } => {
                mode = Some(Mode::Promote {
                    term: *term,
                    prepared: *prepared,
                    final_pass: *final_pass,
                })
            }
            Action::CancelQuietDown { term, until } => {
                mode = Some(Mode::Active {
                    term: *term,
                    until: *until,
                    drain: false,
                })
            }
            Action::Drain { term } => {
                mode = Some(Mode::Active {
                    term: *term,
                    until: crate::core::Mono::MAX,
                    drain: true,
                })
            }
            Action::FencePeers { term } => goal.fence = Some(*term),
            Action::RestartJenkins { session } => goal.restart = Some(*session),
            _ => {}
        }
    }
    if let Some(mode) = mode {
        goal.mode = mode;
    }
}

/// Updates a watch value only when it differs (so tasks wake only on real changes of goal).
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}
