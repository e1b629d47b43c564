//! The rules: [`Core::decide`] applies them once per tick to an [`Observation`].
//!
//! In the order they are checked (see `protocol.md`):
//! 1. A node that holds a term whose lease has expired *by its own clock* steps down before doing
//!    anything else: it stops routing, quiets its Jenkins, and writes nothing.
//! 2. A holder that sees a newer term steps down.
//! 3. A holder releases its term on shutdown, hands it over on a planned switchover, and releases
//!    it when its Jenkins failed (not while paused, not when every other node reports its own
//!    Jenkins down too). A 503 during a full reload of our own is not a failure, unless the reload
//!    has run for `reload_timeout` (it failed: Jenkins stays 503 until restarted) or Jenkins
//!    stopped answering at all for `fall` checks (it died).
//! 4. Otherwise the holder renews and promotes its Jenkins: it fences the other nodes' Jenkins,
//!    catches its own up with the disk, lets HAProxy send users to it once its Jenkins no longer
//!    serves anything stale, and takes it out of quiet-down once the catch-up is complete, for as
//!    long as its *live* lease is valid, however long the catch-up took.
//! 5. A non-holder claims the next term only when its Jenkins is healthy (`rise` checks that got a
//!    200 since its last reload, and no reload running), the cluster is not paused, and the
//!    current term is released, handed over to it, or its counter has not moved for
//!    `lease_timeout` on this node's clock. Among several standbys, a higher priority (then a
//!    more current Jenkins, then the lower name) gets the first chance. A node that held the
//!    newest term itself before a restart (and did not release it) claims the next one at once.
//! 6. A stale term is taken over only from a holder that runs the same timing (`interval`,
//!    `lease_timeout`, `fall`) as this node, as its term record says (or, for a record of an
//!    older version, its last heartbeat): a holder with a longer `lease_timeout` still trusts its
//!    lease when ours runs out. A holder whose timing is not known at all is taken over only when
//!    an operator forces it. A term the holder released or handed to us is taken whatever its
//!    timing: the holder asked, and no longer relies on its lease.
//!
//! Another node's heartbeat never makes a takeover happen on its own: only the lease does.

use std::time::Duration;

use super::model::*;
use super::reason::{ClaimWhy, Reason, ReasonKind, ReleaseWhy, StepDownWhy};
use super::timing::{secs, Mono, SharedTiming};

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
    /// We got this term from a planned switchover (our Jenkins was brought up to date before).
    via_handover: bool,
    /// The catch-up of our Jenkins for this term is complete: it may leave quiet-down.
    promoted: bool,
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

/// A Jenkins whose full reload failed: it answers 503 until restarted (its session changes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Broken {
    session: u64,
}

/// What the core makes of the Jenkins observation this tick.
#[derive(Debug, Clone)]
struct JenkinsView {
    /// A full reload of ours runs: Jenkins answers 503 on purpose.
    reloading: bool,
    /// It runs for this purpose.
    reload_purpose: Option<ReloadPurpose>,
    broken: bool,
    /// Why this Jenkins may not be promoted now, if it may not.
    blocker: Option<String>,
}

/// The decision core's memory between ticks. Pure: no IO, no clock.
#[derive(Debug, Clone)]
pub struct Core {
    params: Params,
    role: Role,
    held: Option<Held>,
    watched: Option<Watched>,
    /// When the takeover of the watched (term, counter) first became due (for the ranking).
    due_since: Option<Mono>,
    /// The term we are claiming because it was handed over to us.
    claiming_handover: Option<u64>,
    /// When an operator asked for a forced takeover; kept until it happens or the lease moves.
    forced: Option<Mono>,
    broken: Option<Broken>,
    /// The JVM (session) we last asked `restart_command` to restart.
    restart_asked: Option<u64>,
}

impl Core {
    pub fn new(params: Params) -> Self {
        Core {
            params,
            role: Role::Starting,
            held: None,
            watched: None,
            due_since: None,
            claiming_handover: None,
            forced: None,
            broken: None,
            restart_asked: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// `jenkins.reload_timeout` may change while running (SIGHUP).
    pub fn set_reload_timeout(&mut self, reload_timeout: Duration) {
        self.params.reload_timeout = reload_timeout;
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

    /// The term we hold was claimed because it was handed to us.
    pub fn claimed_by_handover(&self) -> Option<u64> {
        self.claiming_handover
    }

    /// Until when (our clock) our lease is valid, if we hold one.
    pub fn valid_until(&self) -> Option<Mono> {
        self.held.as_ref().map(|h| self.expiry_of(h))
    }

    fn expiry_of(&self, held: &Held) -> Mono {
        held.renewed_at + self.params.timing.trust()
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

    /// The (term, counter) we watch for stillness, if we hold no term: the loop peeks at that
    /// term's record between ticks and ticks at once when it moves, so that stillness counts
    /// from (nearly) the holder's last renewal, not from up to an interval after.
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
                    promoted: false,
                });
                self.watched = Some(Watched {
                    term,
                    counter: 0,
                    since: at,
                });
                self.due_since = None;
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
        let jenkins = self.jenkins_view(obs);
        let mut decision = match self.held.clone() {
            Some(held) => self.decide_holder(obs, held, &jenkins),
            None => self.decide_follower(obs, &jenkins),
        };
        self.role = decision.role;
        decision.jenkins_healthy = jenkins.blocker.is_none();
        decision.jenkins_broken = jenkins.broken;
        decision.jenkins_reloading = jenkins.reloading;
        // A Jenkins stuck after a failed reload: `restart_command`, once per JVM (not in the
        // tick that steps down by its clock: that one does nothing else).
        let expired = decision.reason.kind == ReasonKind::SteppingDown(StepDownWhy::LeaseExpired);
        if jenkins.broken && !expired && self.restart_asked != Some(obs.jenkins.session) {
            self.restart_asked = Some(obs.jenkins.session);
            decision.actions.push(Action::RestartJenkins {
                session: obs.jenkins.session,
            });
        }
        decision
    }

    /// Remembers when the lease's (term, counter) last changed, on our clock.
    fn track_lease(&mut self, obs: &Observation) {
        let (term, counter) = match &obs.lease {
            LeaseObs::Unreadable(_) => return,
            LeaseObs::Empty => {
                self.watched = None;
                self.due_since = None;
                return;
            }
            LeaseObs::Term(view) => (view.term, view.counter),
            LeaseObs::Garbage { term, .. } => {
                if self.held_term() == Some(*term) {
                    // Our own term read torn: we know its counter better than the read.
                    return;
                }
                (*term, 0)
            }
        };
        let changed = match &self.watched {
            Some(w) => w.term != term || w.counter != counter,
            None => true,
        };
        if changed {
            self.watched = Some(Watched {
                term,
                counter,
                since: obs.now,
            });
            self.due_since = None;
        }
    }

    /// What the health checks and the last full reload say about our Jenkins.
    fn jenkins_view(&mut self, obs: &Observation) -> JenkinsView {
        let j = &obs.jenkins;
        let t = &self.params.timing;
        if self.broken.as_ref().is_some_and(|b| b.session != j.session) {
            // A new JVM: the failed reload is behind it.
            self.broken = None;
        }
        // A full reload runs from its 302 until a check started after it gets a 200.
        let running = j
            .full_reload
            .as_ref()
            .filter(|r| r.accepted && j.last_ok_at.is_none_or(|ok| ok < r.asked_at));
        if let Some(r) = running {
            // Still answering 503 after `reload_timeout`: the reload failed, and Jenkins stays
            // 503 until restarted. (One that does not answer at all is down, not stuck.)
            if obs.now.saturating_sub(r.asked_at) >= self.params.reload_timeout && j.unanswered == 0
            {
                self.broken = Some(Broken { session: j.session });
            }
        }
        let broken = self.broken.is_some();
        let reloading = running.is_some() && !broken;
        let blocker = if broken {
            Some("my Jenkins failed its last reload and needs a restart".to_string())
        } else if let Some(r) = running {
            if j.unanswered >= t.fall {
                Some(format!(
                    "my Jenkins stopped answering during its reload ({} checks without an answer)",
                    j.unanswered
                ))
            } else {
                Some(format!(
                    "my Jenkins is reloading (503 for {})",
                    secs(obs.now.saturating_sub(r.asked_at))
                ))
            }
        } else if j.failures > 0 {
            Some(format!("my Jenkins is down ({} failed checks)", j.failures))
        } else if j.successes < t.rise {
            Some(format!(
                "my Jenkins has passed {} of the {} health checks in a row it needs",
                j.successes, t.rise
            ))
        } else {
            None
        };
        JenkinsView {
            reloading,
            reload_purpose: running.map(|r| r.purpose),
            broken,
            blocker,
        }
    }

    fn step_down(&mut self, kind: StepDownWhy, text: String) -> Decision {
        self.held = None;
        decision(
            Role::SteppingDown,
            vec![Action::StopRouting, Action::KeepQuiet],
            Reason::new(ReasonKind::SteppingDown(kind), text),
        )
    }

    fn decide_holder(&mut self, obs: &Observation, held: Held, jenkins: &JenkinsView) -> Decision {
        let p = self.params.clone();
        let now = obs.now;
        let until = self.expiry_of(&held);
        let since_renewal = now.saturating_sub(held.renewed_at);

        // 1. The clock first, not the world.
        if now >= until {
            return self.step_down(
                StepDownWhy::LeaseExpired,
                format!(
                    "stepping down: my lease on term {} expired by my own clock (last renewal {} ago, \
                     valid for {}); writing nothing to HAProxy",
                    held.term,
                    secs(since_renewal),
                    secs(p.timing.trust()),
                ),
            );
        }

        // 2. A newer term means someone else won it.
        match &obs.lease {
            LeaseObs::Term(view)
                if view.term > held.term || (view.term == held.term && view.holder != p.node) =>
            {
                if held.handover_to.as_deref() == Some(view.holder.as_str()) {
                    return self.step_down(
                        StepDownWhy::HandedOver,
                        format!(
                            "stepping down: {} took over term {} (planned switchover)",
                            view.holder, view.term
                        ),
                    );
                }
                return self.step_down(
                    StepDownWhy::NewerTerm,
                    format!(
                        "stepping down: {} holds term {} (mine was {})",
                        view.holder, view.term, held.term
                    ),
                );
            }
            LeaseObs::Garbage { term, why } if *term > held.term => {
                return self.step_down(
                    StepDownWhy::NewerTerm,
                    format!(
                        "stepping down: term {term} exists (its record is unreadable: {why}); mine was {}",
                        held.term
                    ),
                );
            }
            _ => {}
        }

        // 3. Commands.
        match &obs.command {
            Some(Command::Shutdown) => {
                return release(
                    held.term,
                    ReleaseWhy::Shutdown,
                    format!(
                        "releasing term {}: shutting down, {} can take over at once",
                        held.term,
                        p.peer_names()
                    ),
                );
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

        // The promotion's catch-up completes once, for this term.
        let caught_up = obs
            .jenkins
            .catch_up
            .as_ref()
            .is_some_and(|c| c.term == held.term && c.phase == CatchUpPhase::Done);
        if caught_up {
            if let Some(h) = self.held.as_mut() {
                h.promoted = true;
            }
        }
        let held = self.held.clone().unwrap_or(held);

        // 4. A planned switchover: drain, then write handover_to and keep serving until the target claims.
        if let Some(h) = &held.handover {
            if now >= h.drain_until + p.handover_timeout {
                if let Some(x) = self.held.as_mut() {
                    x.handover = None;
                    x.handover_to = None;
                }
                let mut d = self.keep_term(obs, &held, until, None, false, jenkins);
                d.reason = Reason::new(
                    ReasonKind::HandoverAbandoned,
                    format!(
                        "active: the switchover to {} was abandoned: it did not take term {} within {}",
                        h.to,
                        held.term,
                        secs(p.handover_timeout)
                    ),
                );
                return d;
            }
            let drained = obs.jenkins.busy_executors == Some(0) || now >= h.drain_until;
            let handover_to = if drained { Some(h.to.clone()) } else { None };
            if let Some(x) = self.held.as_mut() {
                x.handover_to = handover_to.clone();
            }
            let text = if drained {
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
                        .unwrap_or_else(|| "an unknown number of".into()),
                    secs(now.saturating_sub(h.since)),
                    secs(h.drain_until.saturating_sub(h.since))
                )
            };
            let mut d = self.keep_term(obs, &held, until, handover_to, true, jenkins);
            if drained {
                // From here the target may claim at any moment and will set HAProxy itself
                // (ready first): stop asserting our own state so that the two never fight.
                // HAProxy keeps routing to us meanwhile, and /active stays 200 until we see
                // the new term, so users are never left without a server.
                for a in d.actions.iter_mut() {
                    if matches!(a, Action::Route { .. }) {
                        *a = Action::StopRouting;
                    }
                }
                d.actions.push(Action::NotifyPeers);
            }
            d.reason = Reason::new(ReasonKind::HandingOver, text);
            return d;
        }

        // 5. Our Jenkins has failed: release so a healthy node need not wait out the lease.
        let failure = self.holder_failure(obs, jenkins);
        if let Some(failure) = &failure {
            if !obs.paused {
                let t = &p.timing;
                let everyone_down = !p.peers.is_empty()
                    && p.peers.iter().all(|name| {
                        obs.peers.iter().any(|peer| {
                            &peer.name == name && t.peer_fresh(peer.age) && !peer.jenkins_healthy
                        })
                    });
                if !everyone_down {
                    return release(
                        held.term,
                        ReleaseWhy::JenkinsFailed,
                        format!(
                            "releasing term {}: {failure}; {} can take over",
                            held.term,
                            p.peer_names()
                        ),
                    );
                }
            }
        }

        // 6. Keep the term.
        let mut d = self.keep_term(obs, &held, until, None, false, jenkins);
        let mut text = match &obs.lease {
            LeaseObs::Unreadable(why) => format!(
                "active: cannot read the lease ({why}); my lease on term {} stays valid for {}",
                held.term,
                secs(until.saturating_sub(now))
            ),
            LeaseObs::Garbage { why, .. } => format!(
                "active: my term's record read as unreadable ({why}); my lease on term {} stays valid for {}",
                held.term,
                secs(until.saturating_sub(now))
            ),
            _ => format!(
                "active: I hold term {}, renewed {} ago",
                held.term,
                secs(since_renewal)
            ),
        };
        let mut kind = ReasonKind::Active;
        match &failure {
            Some(failure) if obs.paused => {
                text.push_str(&format!("; {failure} but the cluster is paused"));
            }
            Some(failure) => {
                kind = ReasonKind::NotServing;
                text = format!(
                    "holding term {} but NOT SERVING: {failure} and {} reports its Jenkins down too; NO ACTIVE NODE until one recovers",
                    held.term,
                    p.peer_names()
                );
            }
            None if obs.paused => text.push_str(" (paused)"),
            None => {}
        }
        if failure.is_none() && !serves_current_config(&held, obs) {
            text.push_str(
                "; HAProxy sends users here once my Jenkins no longer serves a stale configuration",
            );
        }
        d.reason = Reason::new(kind, text);
        d
    }

    /// Why our Jenkins has failed as the active one, if it has.
    fn holder_failure(&self, obs: &Observation, jenkins: &JenkinsView) -> Option<String> {
        let j = &obs.jenkins;
        let fall = self.params.timing.fall;
        if jenkins.broken {
            Some("my Jenkins failed to reload and answers 503 until restarted".into())
        } else if jenkins.reloading {
            // A 503 is expected while our own full reload runs; no answer at all is not.
            (j.unanswered >= fall).then(|| {
                format!(
                    "my Jenkins stopped answering during its reload ({} checks in a row, fall {fall})",
                    j.unanswered
                )
            })
        } else {
            (j.failures >= fall).then(|| {
                format!(
                    "my Jenkins failed {} health checks in a row (fall {fall})",
                    j.failures
                )
            })
        }
    }

    /// What a holder does every tick while it keeps its term: renew (naming the switchover
    /// target once a hand-over has drained), route to itself, and promote its Jenkins (quiet
    /// while a switchover drains it).
    fn keep_term(
        &self,
        obs: &Observation,
        held: &Held,
        until: Mono,
        handover_to: Option<String>,
        draining: bool,
        jenkins: &JenkinsView,
    ) -> Decision {
        let serve = serves_current_config(held, obs);
        let order = match (serve, held.via_handover) {
            (false, _) => RouteOrder::FenceOnly,
            (true, true) => RouteOrder::ReadyFirst,
            (true, false) => RouteOrder::MaintFirst,
        };
        let mut actions = vec![
            Action::Renew {
                term: held.term,
                counter: held.counter + 1,
                handover_to,
            },
            Action::Route {
                term: held.term,
                until,
                order,
            },
        ];
        if held.promoted {
            actions.push(if draining {
                Action::Drain { term: held.term }
            } else {
                Action::CancelQuietDown {
                    term: held.term,
                    until,
                }
            });
        } else {
            actions.push(Action::FencePeers { term: held.term });
            actions.push(Action::CatchUp {
                term: held.term,
                prepared: held.via_handover,
                final_pass: obs.jenkins.fenced_for == Some(held.term),
            });
        }
        let failed = self.holder_failure(obs, jenkins).is_some() && !obs.paused;
        let can_serve = !jenkins.broken
            && !failed
            && if jenkins.reloading {
                // The reload of our own promotion: users get Jenkins' "getting ready" page.
                jenkins.reload_purpose == Some(ReloadPurpose::Promote(held.term))
            } else {
                let j = &obs.jenkins;
                (j.successes > 0 || j.failures > 0) && j.failures < self.params.timing.fall
            };
        let mut d = decision(
            Role::Active,
            actions,
            Reason::new(ReasonKind::Active, String::new()),
        );
        d.serving_until = (serve && can_serve).then_some(until);
        d
    }

    fn decide_follower(&mut self, obs: &Observation, jenkins: &JenkinsView) -> Decision {
        let p = self.params.clone();
        let now = obs.now;
        let standby = |kind: ReasonKind, text: String| {
            decision(
                Role::Standby,
                vec![Action::StopRouting, Action::KeepQuiet],
                Reason::new(kind, text),
            )
        };
        let claim = |term: u64, why: ClaimWhy, text: String| {
            decision(
                Role::Standby,
                vec![Action::Claim { term }],
                Reason::new(ReasonKind::Claiming(why), text),
            )
        };
        let blocker = jenkins.blocker.clone();

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

        let j = &obs.jenkins;
        if self.role == Role::Starting
            && j.failures == 0
            && j.successes == 0
            && !jenkins.broken
            && !jenkins.reloading
        {
            return decision(
                Role::Starting,
                vec![],
                Reason::new(
                    ReasonKind::Starting,
                    "starting: waiting for the first Jenkins health check",
                ),
            );
        }

        let view = match &obs.lease {
            LeaseObs::Unreadable(why) => {
                return standby(
                    ReasonKind::LeaseUnreadable,
                    format!("standby: cannot read the lease: {why}"),
                )
            }
            LeaseObs::Empty => {
                if paused {
                    return standby(
                        ReasonKind::Paused,
                        "standby: no node holds a term, and the cluster is paused".into(),
                    );
                }
                return match blocker {
                    Some(why) => standby(
                        ReasonKind::NoActiveNode,
                        format!("standby: no node holds a term yet, but {why}"),
                    ),
                    // Not even the first term: a node that never takes over stays out of the
                    // election, also when it starts before every other node.
                    None if p.priority == 0 => standby(
                        ReasonKind::NoActiveNode,
                        "standby: no node holds a term yet, but my failover_priority is 0 (this node never takes over)".into(),
                    ),
                    None => match self.outranked_by(obs, now, None) {
                        Some(better) => standby(
                            ReasonKind::Deferring,
                            format!(
                                "standby: no node holds a term yet; {better} ranks higher and gets the first chance"
                            ),
                        ),
                        None => claim(
                            1,
                            ClaimWhy::First,
                            "claiming term 1: no node holds a term yet".into(),
                        ),
                    },
                };
            }
            LeaseObs::Term(view) => view.clone(),
            LeaseObs::Garbage { term, why } => TermView {
                term: *term,
                holder: format!("(unreadable term record: {why})"),
                counter: 0,
                released: false,
                handover_to: None,
                timing: None,
            },
        };
        // An unreadable record names no holder whose timing could matter: nobody renews it, and
        // it is claimed past once stale (see `LeaseObs::Garbage`).
        let garbage = matches!(obs.lease, LeaseObs::Garbage { .. });
        let mine = p.timing.shared();
        let holder_timing = holder_timing(&view, obs);
        // Said when a term is taken whose holder runs another timing (released or handed over).
        let timing_note = match holder_timing {
            Some((theirs, source)) if theirs != mine => format!(
                "; its timing ({theirs}{source}) differs from mine ({mine}): align timing: in both configs"
            ),
            _ => String::new(),
        };
        let next = view.term + 1;
        let still_for = self.lease_still_for(now);
        let stale = p.timing.stale(still_for);
        let no_active = |why: String| {
            standby(
                ReasonKind::NoActiveNode,
                format!(
                    "standby: NO ACTIVE NODE: {} holds term {} but {}; I cannot take over because {why}",
                    view.holder,
                    view.term,
                    if view.released {
                        "released it".to_string()
                    } else {
                        format!("has not renewed it for {}", secs(still_for))
                    }
                ),
            )
        };

        if view.handover_to.as_deref() == Some(p.node.as_str()) && view.holder != p.node {
            // A planned switchover hands the term to us: bring our Jenkins up to date first,
            // still quiet (its reload answers 503 on purpose), then claim once it is healthy.
            let preparing = jenkins.reloading
                && jenkins.reload_purpose == Some(ReloadPurpose::Prepare(view.term));
            let prepared = j.prepared_for == Some(view.term) && !preparing;
            let prepare = |text: String| {
                decision(
                    Role::Standby,
                    vec![
                        Action::StopRouting,
                        Action::KeepQuiet,
                        Action::PrepareTakeover { term: view.term },
                    ],
                    Reason::new(ReasonKind::Preparing, text),
                )
            };
            let handing = format!(
                "standby: {} is handing term {} over to me",
                view.holder, view.term
            );
            if jenkins.broken {
                return standby(
                    ReasonKind::Standby,
                    format!("{handing}, but {}", blocker.unwrap_or_default()),
                );
            }
            if !prepared {
                return match blocker.filter(|_| !preparing) {
                    Some(why) => prepare(format!("{handing}, but {why}")),
                    None => prepare(format!("{handing}; reloading my Jenkins first")),
                };
            }
            if let Some(why) = blocker {
                return prepare(format!("{handing}, but {why}"));
            }
            self.claiming_handover = Some(view.term);
            return claim(
                next,
                ClaimWhy::Planned,
                format!(
                    "claiming term {next}: {} handed term {} over to me (planned switchover){timing_note}",
                    view.holder, view.term
                ),
            );
        }

        if view.holder == p.node && !view.released && view.handover_to.is_none() {
            // Our own term from before a restart (or before a local expiry): nobody else can be
            // acting on it, and the exclusive create of the next term arbitrates any race.
            if paused {
                return standby(
                    ReasonKind::Paused,
                    format!(
                        "standby: I held term {} before, and the cluster is paused",
                        view.term
                    ),
                );
            }
            return match blocker {
                None => claim(
                    next,
                    ClaimWhy::Restart,
                    format!("claiming term {next}: I held term {} before", view.term),
                ),
                Some(why) => no_active(why),
            };
        }

        let takeover = if view.released && view.holder != p.node {
            Some((
                ClaimWhy::Released,
                format!("{} released term {}", view.holder, view.term),
            ))
        } else if stale {
            Some((
                ClaimWhy::LeaseExpired,
                format!(
                    "{} has not renewed term {} for {}",
                    view.holder,
                    view.term,
                    secs(still_for)
                ),
            ))
        } else {
            None
        };
        let Some((why_claim, why_takeover)) = takeover else {
            self.due_since = None;
            let mut text = format!(
                "standby: {} holds term {} and renewed {} ago",
                view.holder,
                view.term,
                secs(still_for)
            );
            if view.released {
                text = format!(
                    "standby: I released term {} {} ago; {} may take it",
                    view.term,
                    secs(still_for),
                    p.peer_names()
                );
            }
            if let Some(why) = blocker {
                let holder = obs
                    .peers
                    .iter()
                    .find(|peer| peer.name == view.holder && p.timing.peer_fresh(peer.age));
                let holder_down =
                    holder.is_some_and(|peer| !peer.jenkins_healthy && !peer.jenkins_reloading);
                if holder.is_some_and(|peer| peer.jenkins_reloading) {
                    text.push_str(&format!(
                        " (its Jenkins is reloading; I could not take over: {why})"
                    ));
                    return standby(ReasonKind::Standby, text);
                }
                if holder_down {
                    return standby(
                        ReasonKind::NoActiveNode,
                        format!(
                            "standby: NO ACTIVE NODE: {} holds term {} but its Jenkins is down, and I cannot take over because {why}",
                            view.holder, view.term
                        ),
                    );
                }
                text.push_str(&format!(" ({why})"));
            }
            return standby(ReasonKind::Standby, text);
        };
        if paused {
            return standby(
                ReasonKind::Paused,
                format!("standby: {why_takeover}, but the cluster is paused"),
            );
        }
        if why_claim == ClaimWhy::LeaseExpired && !garbage && view.holder != p.node {
            // Its lease ran out by *our* timing: only the same timing says it ran out by its own.
            // (Our own term, released and left to the others, is ours to take back.)
            match holder_timing {
                Some((theirs, source)) if theirs != mine => {
                    return standby(
                        ReasonKind::TimingMismatch,
                        format!(
                            "standby: cannot take over term {} from {} (not renewed for {}): its timing ({theirs}{source}) \
                             differs from mine ({mine}); align timing: in both configs",
                            view.term,
                            view.holder,
                            secs(still_for)
                        ),
                    );
                }
                None if self.forced.is_none() => {
                    return standby(
                        ReasonKind::TimingUnknown,
                        format!(
                            "standby: {why_takeover}, but I cannot take it over: its term record carries no timing \
                             (an older version wrote it) and its heartbeats never said it, so its lease may outlast \
                             mine ({mine}); finish the upgrade, or `jenkins-ha failover --force` if {} is dead",
                            view.holder
                        ),
                    );
                }
                _ => {}
            }
        }
        if let Some(why) = blocker {
            return no_active(why);
        }
        if self.forced.is_some() {
            return claim(
                next,
                ClaimWhy::Forced,
                format!(
                    "claiming term {next}: {why_takeover} (forced by an operator){timing_note}"
                ),
            );
        }
        if p.priority == 0 {
            return no_active("my failover_priority is 0 (this node never takes over)".into());
        }
        if let Some(better) = self.outranked_by(obs, now, Some(&view.holder)) {
            return standby(
                ReasonKind::Deferring,
                format!("standby: {why_takeover}; {better} ranks higher and gets the first chance"),
            );
        }
        claim(
            next,
            why_claim,
            format!("claiming term {next}: {why_takeover}{timing_note}"),
        )
    }

    /// The better-ranked standby that should claim before us, if one is due its chance.
    ///
    /// The candidates are the nodes heard lately whose Jenkins is healthy, that are standbys,
    /// not the holder, and whose priority is above 0. They rank by priority, then by a current
    /// Jenkins, then by name (the lower first). Each one that ranks above us gets one interval
    /// from the moment the takeover became due; after that we claim anyway (it may be failing).
    fn outranked_by(
        &mut self,
        obs: &Observation,
        now: Mono,
        holder: Option<&str>,
    ) -> Option<String> {
        let p = &self.params;
        let t = &p.timing;
        let my_current = obs.jenkins.current;
        let mine = (p.priority, my_current, std::cmp::Reverse(p.node.as_str()));
        let better: Vec<&PeerObs> = obs
            .peers
            .iter()
            .filter(|peer| {
                t.peer_fresh(peer.age)
                    && peer.jenkins_healthy
                    && matches!(peer.role, Role::Standby | Role::Starting)
                    && Some(peer.name.as_str()) != holder
                    && peer.priority > 0
                    && (
                        peer.priority,
                        peer.current,
                        std::cmp::Reverse(peer.name.as_str()),
                    ) > mine
            })
            .collect();
        if better.is_empty() {
            self.due_since = None;
            return None;
        }
        let since = *self.due_since.get_or_insert(now);
        let wait = t.interval * better.len() as u32;
        if now.saturating_sub(since) >= wait {
            return None;
        }
        let mut names: Vec<&str> = better.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        Some(names.join(" and "))
    }
}

/// What we know of the holder's timing: its term record's, or for a record of an older version
/// its last heartbeat's (with a note saying so for the reason), if any.
fn holder_timing(view: &TermView, obs: &Observation) -> Option<(SharedTiming, &'static str)> {
    if let Some(t) = view.timing {
        return Some((t, ""));
    }
    obs.peers
        .iter()
        .find(|peer| peer.name == view.holder)
        .and_then(|peer| peer.timing)
        .map(|t| (t, ", as its heartbeats say"))
}

/// A decision with no `/active` and health yet (filled in by [`Core::decide`]).
fn decision(role: Role, actions: Vec<Action>, reason: Reason) -> Decision {
    Decision {
        role,
        actions,
        reason,
        serving_until: None,
        jenkins_healthy: false,
        jenkins_broken: false,
        jenkins_reloading: false,
    }
}

/// Releasing our term: stop routing, write `released`, quiet our Jenkins, tell the others at
/// once so that they need not wait out the lease.
fn release(term: u64, why: ReleaseWhy, text: String) -> Decision {
    decision(
        Role::SteppingDown,
        vec![
            Action::StopRouting,
            Action::Release { term },
            Action::KeepQuiet,
            Action::NotifyPeers,
        ],
        Reason::new(ReasonKind::Releasing(why), text),
    )
}

/// Whether HAProxy may send users to our Jenkins: a switchover prepared it, or its catch-up has
/// come far enough that it no longer serves what it had as a standby (the changed items are
/// re-read, or a full reload was accepted: Jenkins answers 503 until that is over).
fn serves_current_config(held: &Held, obs: &Observation) -> bool {
    held.via_handover
        || held.promoted
        || obs
            .jenkins
            .catch_up
            .as_ref()
            .is_some_and(|c| c.term == held.term && c.phase >= CatchUpPhase::Current)
}

#[cfg(test)]
mod tests;
