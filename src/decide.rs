//! The decision core: observations in, the next role, actions and one human sentence out.
//!
//! This module does no IO and reads no clock. The runtime loop ([`crate::node`]) gathers an
//! [`Observation`] every `interval`, calls [`Core::decide`], carries out the [`Action`]s, and reports
//! what the lease writes did back through [`Core::record`]. Time is a monotonic [`Mono`] passed in,
//! so tests can drive the core through any timeline.
//!
//! The rules, in the order they are checked (see `protocol.md`):
//! 1. A node that holds a term whose lease has expired *by its own clock* steps down before doing
//!    anything else: it stops routing, quiets its Jenkins, and writes nothing.
//! 2. A holder that sees a newer term steps down.
//! 3. A holder releases its term on shutdown, hands it over on a planned switchover, and releases it
//!    when its Jenkins failed `fall` checks in a row (not while paused, not when the peer reports its
//!    own Jenkins down too). Otherwise it renews and keeps HAProxy and Jenkins in the active shape.
//! 4. A non-holder claims the next term only when its Jenkins is healthy (`rise` checks), the cluster
//!    is not paused, and the current term is released, handed over to it, or its counter has not
//!    moved for `lease_timeout` on this node's clock. A node that held the latest term itself before
//!    a restart (and did not release it) claims the next one at once: nobody else can be acting on it.
//!
//! The peer's heartbeat never makes a takeover happen on its own: only the lease does.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Timing;

/// Monotonic time since the daemon started. Wall clocks never enter a decision.
pub type Mono = Duration;

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Starting,
    Standby,
    Active,
    SteppingDown,
    /// Only ever said of the peer: nothing heard from it lately.
    Unreachable,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Active => "active",
            Role::SteppingDown => "stepping-down",
            Role::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The content of the newest term file, as read from shared storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermView {
    pub term: u64,
    pub holder: String,
    pub counter: u64,
    pub released: bool,
    pub handover_to: Option<String>,
}

/// What the lease looks like this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseObs {
    /// The storage did not answer (in time) or the term file is unreadable.
    Unreadable(String),
    /// No term was ever claimed.
    Empty,
    Term(TermView),
}

/// The local Jenkins, as the health checks saw it lately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JenkinsObs {
    /// Checks failed in a row (a 503 during a reload we started does not count).
    pub failures: u32,
    /// Checks passed in a row.
    pub successes: u32,
    /// A full reload never finished: Jenkins stays 503 until restarted, so it must not be promoted.
    pub reload_failed: bool,
    /// Running builds, when known (asked while a switchover waits for them).
    pub busy_executors: Option<u32>,
    /// The term whose hand-over our Jenkins finished preparing for (reloaded while still quiet).
    pub prepared_for: Option<u64>,
    /// The term whose promotion reload our Jenkins has been asked for (or the asking failed).
    /// Real Jenkins answers 503 from the moment it accepts `POST /reload` until it serves the
    /// reloaded configuration, so from then on no user can be served the configuration it had
    /// as a standby.
    pub reload_requested_for: Option<u64>,
}

/// The peer's last heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerObs {
    pub role: Role,
    pub term: u64,
    pub jenkins_healthy: bool,
    /// How long ago it arrived, on our clock.
    pub age: Duration,
}

/// An operator's or the daemon's own request, handled at the next decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Planned switchover: quiet our Jenkins, wait up to `wait_builds` for running builds to
    /// end, then hand the term to `to`.
    Handover { to: String, wait_builds: Duration },
    /// Take over a stale term even while paused (an operator's `failover --force`). The term must
    /// still have been still for `lease_timeout`: force never shortens the lease.
    ForceTakeover,
    /// Clean stop: release the term so that the peer takes over at once.
    Shutdown,
}

/// Everything the core looks at in one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub now: Mono,
    pub lease: LeaseObs,
    pub jenkins: JenkinsObs,
    pub peer: Option<PeerObs>,
    pub paused: bool,
    pub command: Option<Command>,
}

/// What the loop must do. Route/Jenkins actions describe a desired state and are idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create `term-N` exclusively; report [`Outcome::Claimed`] or [`Outcome::ClaimLost`].
    Claim { term: u64 },
    /// Rewrite our term file with the next counter; report [`Outcome::Renewed`].
    Renew {
        term: u64,
        counter: u64,
        handover_to: Option<String>,
    },
    /// Mark our term released so the peer can take it at once; report [`Outcome::Released`].
    Release { term: u64 },
    /// Make HAProxy send traffic to us and not the peer. No write may leave after `until`.
    /// `ready_first`: set ourselves ready before the peer goes to maint (make-before-break, for a
    /// planned switchover where the old master still serves); otherwise maint first.
    /// `serve: false`: only put the peer in maint for now. Our Jenkins has not yet been asked
    /// for its promotion reload, and until then it would serve the configuration it had as a
    /// standby.
    Route {
        term: u64,
        until: Mono,
        ready_first: bool,
        serve: bool,
    },
    /// Write nothing to HAProxy any more.
    StopRouting,
    /// Our Jenkins is the active one: reload once for this term (unless it was just prepared),
    /// then cancel quiet-down; or keep it quiet while a switchover drains it. Not after `until`.
    JenkinsActive {
        term: u64,
        until: Mono,
        reload: bool,
        quiet: bool,
    },
    /// A planned switchover hands `term` to us: reload our Jenkins now, still quiet, so that we
    /// can claim the next term with a current Jenkins and route without a 503 window.
    PrepareTakeover { term: u64 },
    /// Our Jenkins is a standby: keep it in quiet-down.
    JenkinsStandby,
    /// Send the peer a heartbeat now instead of at the next interval (release fast path).
    NotifyPeer,
}

/// The core's answer for one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub role: Role,
    pub actions: Vec<Action>,
    /// One sentence for the log and `status`: what this node is doing and why.
    pub reason: String,
}

/// What a lease write came to; fed back with [`Core::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// We created `term-N`; `at` is when the create started (validity counts from there).
    Claimed {
        term: u64,
        at: Mono,
    },
    ClaimLost {
        term: u64,
    },
    /// The write of `counter` to our term started at `at` and had succeeded by `done`.
    Renewed {
        term: u64,
        counter: u64,
        at: Mono,
        done: Mono,
    },
    Released {
        term: u64,
    },
}

/// The fixed inputs: who we are and the timing.
#[derive(Debug, Clone)]
pub struct Params {
    pub node: String,
    pub peer: String,
    pub timing: Timing,
    /// How long a hand-over may wait for the target to claim before it is abandoned.
    pub handover_timeout: Duration,
}

/// The term we hold, as far as we know.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    term: u64,
    counter: u64,
    /// Start of the last successful write (claim or renewal).
    renewed_at: Mono,
    /// Written into the term once the switchover has drained (then the target may claim).
    handover_to: Option<String>,
    handover: Option<Handover>,
    /// We got this term from a planned switchover (our Jenkins is already reloaded).
    via_handover: bool,
}

/// A planned switchover in progress on the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Handover {
    to: String,
    since: Mono,
    /// Stop waiting for running builds at this instant.
    drain_until: Mono,
}

/// The last change seen in the lease: which term and counter, and since when (our clock).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    term: u64,
    counter: u64,
    since: Mono,
}

/// The decision core's memory between ticks. Pure: no IO, no clock.
#[derive(Debug, Clone)]
pub struct Core {
    params: Params,
    role: Role,
    held: Option<Held>,
    watched: Option<Watched>,
    /// Whether we have seen the lease at least once (a fresh start claims nothing unseen).
    seen_lease: bool,
    /// The term we are claiming because it was handed over to us.
    claiming_handover: Option<u64>,
    /// When an operator asked for a forced takeover; kept until it happens or the lease moves.
    forced: Option<Mono>,
}

impl Core {
    pub fn new(params: Params) -> Self {
        Core {
            params,
            role: Role::Starting,
            held: None,
            watched: None,
            seen_lease: false,
            claiming_handover: None,
            forced: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The term we hold, if any.
    pub fn held_term(&self) -> Option<u64> {
        self.held.as_ref().map(|h| h.term)
    }

    /// Whether we hold a term that we have handed over (the target may already have claimed the
    /// next one): our Jenkins is quiet and we no longer write to HAProxy.
    pub fn handing_over(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.handover_to.is_some())
    }

    /// Until when (our clock) our lease is valid, if we hold one.
    pub fn valid_until(&self) -> Option<Mono> {
        self.held.as_ref().map(|h| self.expiry_of(h))
    }

    fn expiry_of(&self, held: &Held) -> Mono {
        let t = &self.params.timing;
        (held.renewed_at + t.lease_timeout).saturating_sub(t.margin())
    }

    /// How long the lease's (term, counter) has been still at `now`, on our clock.
    pub fn lease_still_for(&self, now: Mono) -> Duration {
        self.watched
            .as_ref()
            .map(|w| now.saturating_sub(w.since))
            .unwrap_or_default()
    }

    /// When the term we watch will have been still for `lease_timeout`, if we hold none: the
    /// loop ticks right then, so a dead holder is replaced without waiting for the next interval.
    /// The holder's own lease ran out `margin` before (it counts from the start of its last
    /// renewal, which we can only have seen after), so ticking then is as safe as any tick.
    pub fn lease_stale_at(&self) -> Option<Mono> {
        if self.held.is_some() {
            return None;
        }
        self.watched
            .as_ref()
            .map(|w| w.since + self.params.timing.lease_timeout)
    }

    /// The (term, counter) we watch for stillness, if we hold no term:
    /// the loop peeks at that term file between ticks and ticks at once when it moves, so that
    /// stillness counts from (nearly) the holder's last renewal, not from up to an interval after.
    pub fn watched_renewal(&self) -> Option<(u64, u64)> {
        if self.held.is_some() {
            return None;
        }
        self.watched.as_ref().map(|w| (w.term, w.counter))
    }

    /// Feeds back what a lease write came to.
    pub fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Claimed { term, at } => {
                let via_handover = self.claiming_handover == Some(term.saturating_sub(1));
                self.claiming_handover = None;
                self.forced = None;
                self.held = Some(Held {
                    term,
                    counter: 0,
                    renewed_at: at,
                    handover_to: None,
                    handover: None,
                    via_handover,
                });
                self.watched = Some(Watched {
                    term,
                    counter: 0,
                    since: at,
                });
                self.role = Role::Active;
            }
            Outcome::ClaimLost { .. } => {}
            Outcome::Renewed {
                term,
                counter,
                at,
                done,
            } => {
                // A renewal extends the lease only if it was on storage before the lease it renews
                // ran out: a peer that read the old counter at our expiry may already have claimed.
                let current_expiry = self.valid_until();
                if let Some(h) = self.held.as_mut() {
                    if h.term == term
                        && counter > h.counter
                        && current_expiry.is_some_and(|e| done < e)
                    {
                        h.counter = counter;
                        h.renewed_at = at;
                    }
                }
            }
            Outcome::Released { term } => {
                if self.held.as_ref().is_some_and(|h| h.term == term) {
                    self.held = None;
                }
            }
        }
    }

    /// One decision. Updates the core's memory and returns what to do and why.
    pub fn decide(&mut self, obs: &Observation) -> Decision {
        self.track_lease(obs);
        let decision = match self.held.clone() {
            Some(held) => self.decide_holder(obs, held),
            None => self.decide_follower(obs),
        };
        self.role = decision.role;
        decision
    }

    /// Remembers when the lease's (term, counter) last changed, on our clock.
    fn track_lease(&mut self, obs: &Observation) {
        match &obs.lease {
            LeaseObs::Unreadable(_) => {}
            LeaseObs::Empty => {
                self.seen_lease = true;
                self.watched = None;
            }
            LeaseObs::Term(view) => {
                self.seen_lease = true;
                let changed = match &self.watched {
                    Some(w) => w.term != view.term || w.counter != view.counter,
                    None => true,
                };
                if changed {
                    self.watched = Some(Watched {
                        term: view.term,
                        counter: view.counter,
                        since: obs.now,
                    });
                }
            }
        }
    }

    fn step_down(&mut self, reason: String) -> Decision {
        self.held = None;
        Decision {
            role: Role::SteppingDown,
            actions: vec![Action::StopRouting, Action::JenkinsStandby],
            reason,
        }
    }

    fn decide_holder(&mut self, obs: &Observation, held: Held) -> Decision {
        let p = self.params.clone();
        let now = obs.now;
        let until = self.expiry_of(&held);
        let since_renewal = now.saturating_sub(held.renewed_at);

        // 1. The clock first, not the world.
        if now >= until {
            return self.step_down(format!(
                "stepping down: my lease on term {} expired by my own clock (last renewal {} ago, \
                 valid for {}); writing nothing to HAProxy",
                held.term,
                secs(since_renewal),
                secs(p.timing.lease_timeout.saturating_sub(p.timing.margin())),
            ));
        }

        // 2. A newer term means someone else won it.
        if let LeaseObs::Term(view) = &obs.lease {
            if view.term > held.term || (view.term == held.term && view.holder != p.node) {
                let why = if held.handover_to.as_deref() == Some(view.holder.as_str()) {
                    format!(
                        "stepping down: {} took over term {} (planned switchover)",
                        view.holder, view.term
                    )
                } else {
                    format!(
                        "stepping down: {} holds term {} (mine was {})",
                        view.holder, view.term, held.term
                    )
                };
                return self.step_down(why);
            }
        }

        // 3. Commands.
        match &obs.command {
            Some(Command::Shutdown) => {
                return Decision {
                    role: Role::SteppingDown,
                    actions: vec![
                        Action::StopRouting,
                        Action::Release { term: held.term },
                        Action::JenkinsStandby,
                        Action::NotifyPeer,
                    ],
                    reason: format!(
                        "releasing term {}: shutting down, {} can take over at once",
                        held.term, p.peer
                    ),
                };
            }
            Some(Command::Handover { to, wait_builds }) if held.handover.is_none() => {
                let handover = Handover {
                    to: to.clone(),
                    since: now,
                    drain_until: now + *wait_builds,
                };
                if let Some(h) = self.held.as_mut() {
                    h.handover = Some(handover);
                }
            }
            _ => {}
        }
        let held = self.held.clone().unwrap_or(held);

        // 4. A planned switchover: drain, then write handover_to and keep serving until the target claims.
        if let Some(h) = &held.handover {
            if now >= h.drain_until + p.handover_timeout {
                if let Some(x) = self.held.as_mut() {
                    x.handover = None;
                    x.handover_to = None;
                }
                return Decision {
                    role: Role::Active,
                    actions: keep_term(&held, until, None, false, &obs.jenkins),
                    reason: format!(
                        "active: the switchover to {} was abandoned: it did not take term {} within {}",
                        h.to,
                        held.term,
                        secs(p.handover_timeout)
                    ),
                };
            }
            let drained = obs.jenkins.busy_executors == Some(0) || now >= h.drain_until;
            let handover_to = if drained { Some(h.to.clone()) } else { None };
            if let Some(x) = self.held.as_mut() {
                x.handover_to = handover_to.clone();
            }
            let reason = if drained {
                format!(
                    "active, handing over: term {} goes to {} as soon as it has reloaded its Jenkins",
                    held.term, h.to
                )
            } else {
                format!(
                    "active, handing over to {}: waiting for {} running build(s) to end ({} of {})",
                    h.to,
                    obs.jenkins
                        .busy_executors
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "?".into()),
                    secs(now.saturating_sub(h.since)),
                    secs(h.drain_until.saturating_sub(h.since))
                )
            };
            let mut actions = keep_term(&held, until, handover_to, true, &obs.jenkins);
            if drained {
                // From here the target may claim at any moment and will set HAProxy itself
                // (ready first): stop asserting our own state so that the two never fight.
                // HAProxy keeps routing to us meanwhile, and /active stays 200 until we see
                // the new term, so users are never left without a server.
                for a in actions.iter_mut() {
                    if matches!(a, Action::Route { .. }) {
                        *a = Action::StopRouting;
                    }
                }
                actions.push(Action::NotifyPeer);
            }
            return Decision {
                role: Role::Active,
                actions,
                reason,
            };
        }

        // 5. Our Jenkins has failed: release so a healthy peer need not wait out the lease.
        let j = &obs.jenkins;
        let jenkins_failed = j.reload_failed || j.failures >= p.timing.fall;
        if jenkins_failed && !obs.paused {
            let peer_down_too = obs
                .peer
                .is_some_and(|peer| peer.age <= p.timing.lease_timeout && !peer.jenkins_healthy);
            if !peer_down_too {
                return Decision {
                    role: Role::SteppingDown,
                    actions: vec![
                        Action::StopRouting,
                        Action::Release { term: held.term },
                        Action::JenkinsStandby,
                        Action::NotifyPeer,
                    ],
                    reason: format!(
                        "releasing term {}: {}; {} can take over",
                        held.term,
                        jenkins_failure(j, p.timing.fall),
                        p.peer
                    ),
                };
            }
        }

        // 6. Keep the term.
        let mut reason = match &obs.lease {
            LeaseObs::Unreadable(why) => format!(
                "active: cannot read the lease ({why}); my lease on term {} stays valid for {}",
                held.term,
                secs(until.saturating_sub(now))
            ),
            _ => format!(
                "active: I hold term {}, renewed {} ago",
                held.term,
                secs(since_renewal)
            ),
        };
        if jenkins_failed && obs.paused {
            reason.push_str(&format!(
                "; {} but the cluster is paused",
                jenkins_failure(j, p.timing.fall)
            ));
        } else if jenkins_failed {
            reason = format!(
                "holding term {} but NOT SERVING: {} and {} reports its Jenkins down too; NO ACTIVE NODE until one recovers",
                held.term,
                jenkins_failure(j, p.timing.fall),
                p.peer
            );
        } else if obs.paused {
            reason.push_str(" (paused)");
        }
        if !jenkins_failed && !serves_current_config(&held, j) {
            reason.push_str(
                "; HAProxy sends users here once my Jenkins has begun its promotion reload",
            );
        }
        Decision {
            role: Role::Active,
            actions: keep_term(&held, until, None, false, &obs.jenkins),
            reason,
        }
    }

    fn decide_follower(&mut self, obs: &Observation) -> Decision {
        let p = self.params.clone();
        let now = obs.now;
        let j = &obs.jenkins;
        let standby = |reason: String| Decision {
            role: Role::Standby,
            actions: vec![Action::StopRouting, Action::JenkinsStandby],
            reason,
        };
        let claim = |term: u64, reason: String| Decision {
            role: Role::Standby,
            actions: vec![Action::Claim { term }],
            reason,
        };
        // Why we may not claim, if we may not.
        let blocker = || -> Option<String> {
            if j.reload_failed {
                Some("my Jenkins failed its last reload and needs a restart".into())
            } else if j.failures > 0 {
                Some(format!("my Jenkins is down ({} failed checks)", j.failures))
            } else if j.successes < p.timing.rise {
                Some(format!(
                    "my Jenkins has passed {} of the {} health checks in a row it needs",
                    j.successes, p.timing.rise
                ))
            } else {
                None
            }
        };

        if obs.command == Some(Command::ForceTakeover) {
            self.forced = Some(now);
        }
        // The holder renewed after the force was asked for: it is alive, so the force lapses.
        if let (Some(f), Some(w)) = (self.forced, &self.watched) {
            if w.since > f {
                self.forced = None;
            }
        }
        let paused = obs.paused && self.forced.is_none();

        if self.role == Role::Starting && j.failures == 0 && j.successes == 0 && !j.reload_failed {
            return Decision {
                role: Role::Starting,
                actions: vec![],
                reason: "starting: waiting for the first Jenkins health check".into(),
            };
        }

        let view = match &obs.lease {
            LeaseObs::Unreadable(why) => {
                return standby(format!("standby: cannot read the lease: {why}"))
            }
            LeaseObs::Empty => {
                if paused {
                    return standby(
                        "standby: no node holds a term, and the cluster is paused".into(),
                    );
                }
                return match blocker() {
                    None => claim(1, "claiming term 1: no node holds a term yet".into()),
                    Some(why) => standby(format!("standby: no node holds a term yet, but {why}")),
                };
            }
            LeaseObs::Term(view) => view.clone(),
        };
        let next = view.term + 1;
        let still_for = self
            .watched
            .as_ref()
            .map(|w| now.saturating_sub(w.since))
            .unwrap_or_default();
        let stale = still_for >= p.timing.lease_timeout;
        let no_active = |why: String| {
            standby(format!(
                "standby: NO ACTIVE NODE: {} holds term {} but {}; I cannot take over because {why}",
                view.holder,
                view.term,
                if view.released {
                    "released it".to_string()
                } else {
                    format!("has not renewed it for {}", secs(still_for))
                }
            ))
        };

        if view.handover_to.as_deref() == Some(p.node.as_str()) && view.holder != p.node {
            if let Some(why) = blocker() {
                return standby(format!(
                    "standby: {} is handing term {} over to me, but {why}",
                    view.holder, view.term
                ));
            }
            if j.prepared_for != Some(view.term) {
                return Decision {
                    role: Role::Standby,
                    actions: vec![
                        Action::StopRouting,
                        Action::JenkinsStandby,
                        Action::PrepareTakeover { term: view.term },
                    ],
                    reason: format!(
                        "standby: {} is handing term {} over to me; reloading my Jenkins first",
                        view.holder, view.term
                    ),
                };
            }
            self.claiming_handover = Some(view.term);
            return claim(
                next,
                format!(
                    "claiming term {next}: {} handed term {} over to me (planned switchover)",
                    view.holder, view.term
                ),
            );
        }

        if view.holder == p.node && !view.released && view.handover_to.is_none() {
            // Our own term from before a restart (or before a local expiry): nobody else can be
            // acting on it, and the exclusive create of the next term arbitrates any race.
            if paused {
                return standby(format!(
                    "standby: I held term {} before, and the cluster is paused",
                    view.term
                ));
            }
            return match blocker() {
                None => claim(
                    next,
                    format!("claiming term {next}: I held term {} before", view.term),
                ),
                Some(why) => no_active(why),
            };
        }

        let takeover = if view.released && view.holder != p.node {
            Some(format!("{} released term {}", view.holder, view.term))
        } else if stale {
            Some(format!(
                "{} has not renewed term {} for {}",
                view.holder,
                view.term,
                secs(still_for)
            ))
        } else {
            None
        };
        match takeover {
            None => {
                let mut reason = format!(
                    "standby: {} holds term {} and renewed {} ago",
                    view.holder,
                    view.term,
                    secs(still_for)
                );
                if view.released {
                    reason = format!(
                        "standby: I released term {} {} ago; {} may take it",
                        view.term,
                        secs(still_for),
                        p.peer
                    );
                }
                if let Some(why) = blocker() {
                    let holder_down = view.holder == p.peer
                        && obs.peer.is_some_and(|peer| {
                            peer.age <= p.timing.lease_timeout && !peer.jenkins_healthy
                        });
                    if holder_down {
                        return standby(format!(
                            "standby: NO ACTIVE NODE: {} holds term {} but its Jenkins is down, and I cannot take over because {why}",
                            view.holder, view.term
                        ));
                    }
                    reason.push_str(&format!(" ({why})"));
                }
                standby(reason)
            }
            Some(why_takeover) => {
                if paused {
                    return standby(format!(
                        "standby: {why_takeover}, but the cluster is paused"
                    ));
                }
                match blocker() {
                    None if self.forced.is_some() => claim(
                        next,
                        format!("claiming term {next}: {why_takeover} (forced by an operator)"),
                    ),
                    None => claim(next, format!("claiming term {next}: {why_takeover}")),
                    Some(why) => no_active(why),
                }
            }
        }
    }
}

/// What a holder does every tick while it keeps its term: renew (naming the switchover target
/// once a hand-over has drained), route to itself, keep its Jenkins active (quiet while a
/// switchover drains it).
fn keep_term(
    held: &Held,
    until: Mono,
    handover_to: Option<String>,
    quiet: bool,
    jenkins: &JenkinsObs,
) -> Vec<Action> {
    vec![
        Action::Renew {
            term: held.term,
            counter: held.counter + 1,
            handover_to,
        },
        Action::Route {
            term: held.term,
            until,
            ready_first: held.via_handover,
            serve: serves_current_config(held, jenkins),
        },
        Action::JenkinsActive {
            term: held.term,
            until,
            reload: !held.via_handover,
            quiet,
        },
    ]
}

/// Whether HAProxy may send users to our Jenkins: a switchover prepared it (reloaded while
/// quiet), or it has been asked for its promotion reload, after which it answers 503 until the
/// reload is over. Before that it would serve what it had as a standby, possibly stale.
fn serves_current_config(held: &Held, jenkins: &JenkinsObs) -> bool {
    held.via_handover || jenkins.reload_requested_for == Some(held.term)
}

fn jenkins_failure(j: &JenkinsObs, fall: u32) -> String {
    if j.reload_failed {
        "my Jenkins failed to reload and answers 503 until restarted".into()
    } else {
        format!(
            "my Jenkins failed {} health checks in a row (fall {fall})",
            j.failures
        )
    }
}

/// A duration in seconds with one decimal, for reason sentences.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests;
