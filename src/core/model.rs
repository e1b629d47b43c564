//! What the decision core sees (an [`Observation`]) and what it says (a [`Decision`] of
//! [`Action`]s), plus the fixed [`Params`] and the lease write [`Outcome`]s fed back to it.
//!
//! Observations are raw facts. Nothing is adjusted before the core sees it: a Jenkins answering
//! 503 during its own promotion reload is reported as 503, and the core knows why.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::reason::Reason;
use super::timing::{Mono, Timing};

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Starting,
    Standby,
    Active,
    SteppingDown,
    /// Only ever said of another node: nothing heard from it lately.
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

/// The content of the newest term's record, as read from the lease.
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
    /// The storage did not answer (in time).
    Unreadable(String),
    /// No term was ever claimed.
    Empty,
    Term(TermView),
    /// The newest term exists (so it is taken) but its record cannot be read: empty (being
    /// created), truncated, not a record. If it is our own term, that is a torn or cached read
    /// and our next renewal rewrites it; otherwise it is a term held by nobody we know, whose
    /// counter never moves: it goes stale after `lease_timeout` and is then claimed past.
    Garbage {
        term: u64,
        why: String,
    },
}

/// Why a full reload of our Jenkins was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", content = "term", rename_all = "kebab-case")]
pub enum ReloadPurpose {
    /// The standby follows a change on disk (an item added or removed, a global file).
    Follow,
    /// A switchover hands this term to us: reload while still quiet.
    Prepare(u64),
    /// The catch-up of our promotion for this term.
    Promote(u64),
    /// Learning what a Jenkins of unknown state has loaded (after its restart or ours).
    Resync,
}

/// The last full reload (`POST /reload`) we asked of our Jenkins.
///
/// Real Jenkins answers 302 at once and then 503 on every URL until the reload is over (for
/// ever after a failed one). The core decides from this and the health checks whether it is
/// still running, done, or failed: done once a health check *started after* it was accepted got
/// a 200; failed once it has run for `reload_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullReloadObs {
    pub purpose: ReloadPurpose,
    /// When `POST /reload` was sent.
    pub asked_at: Mono,
    /// Jenkins accepted it (302): it answers 503 from then until the reload is over.
    pub accepted: bool,
}

/// How far the catch-up of a promotion has come: bringing our Jenkins up to date with what is
/// on disk before it serves and builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CatchUpPhase {
    /// Scanning JENKINS_HOME and reloading.
    Started,
    /// Our Jenkins no longer serves anything stale: the changed items are re-read, or a full
    /// reload was accepted (Jenkins answers 503 until it is over).
    Current,
    /// The first pass is over; the final pass (after the peers are fenced) may run.
    FirstPassDone,
    /// The final pass is over too: nothing the old active wrote before it was fenced is missed.
    Done,
}

/// The catch-up for one term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUpObs {
    pub term: u64,
    pub phase: CatchUpPhase,
}

/// The local Jenkins, as the health checks and the Jenkins adapter saw it lately.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JenkinsObs {
    /// Health checks in a row that got a 200, counting only checks started after the last full
    /// reload was asked for (so a Jenkins is only healthy once it served a 200 since).
    pub successes: u32,
    /// Health checks in a row that did not get a 200 (a 503 counts).
    pub failures: u32,
    /// Of those, how many in a row got no usable answer at all, not even a 503: a Jenkins that
    /// died, hangs, or refuses connections.
    pub unanswered: u32,
    /// When the last check that got a 200 started.
    pub last_ok_at: Option<Mono>,
    /// How many times `X-Jenkins-Session` changed since we started: a new value is a new JVM.
    pub session: u64,
    /// Whether Jenkins is in quiet-down, when known.
    pub quieting_down: Option<bool>,
    /// Running builds, when known (asked while a switchover waits for them).
    pub busy_executors: Option<u32>,
    /// Our Jenkins has applied every change seen on disk: nothing waits to be reloaded, and we
    /// know what it has loaded. Among standbys of equal priority, a current one claims first.
    pub current: bool,
    /// The last full reload we asked for.
    pub full_reload: Option<FullReloadObs>,
    /// The term whose hand-over our Jenkins finished preparing for (reloaded while quiet).
    pub prepared_for: Option<u64>,
    /// The catch-up of the promotion, for the term it runs for.
    pub catch_up: Option<CatchUpObs>,
    /// The term for which the other nodes' Jenkins were asked into quiet-down (done or failed:
    /// an unreachable Jenkins cannot be fenced and cannot hold up a promotion).
    pub fenced_for: Option<u64>,
}

/// Another node, from its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerObs {
    pub name: String,
    pub role: Role,
    pub term: u64,
    /// Its Jenkins is healthy and could be promoted.
    pub jenkins_healthy: bool,
    /// Its Jenkins runs a full reload (a promotion's catch-up, say): 503 until it is over,
    /// which is not down.
    pub jenkins_reloading: bool,
    /// Its Jenkins has applied every change seen on disk (no pending reload).
    pub current: bool,
    /// Its `node.failover_priority` (0: never takes over).
    pub priority: u32,
    /// How long ago its last heartbeat arrived, on our clock.
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
    /// Clean stop: release the term so that another node takes over at once.
    Shutdown,
}

/// Everything the core looks at in one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub now: Mono,
    pub lease: LeaseObs,
    pub jenkins: JenkinsObs,
    /// The other nodes heard from so far (never heard: absent).
    pub peers: Vec<PeerObs>,
    pub paused: bool,
    pub command: Option<Command>,
}

/// How HAProxy is written when we route to ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOrder {
    /// Every other server `maint` first, then ours `ready` (break before make: after a failure).
    MaintFirst,
    /// Ours `ready` first (make before break: a planned switchover, the old master still serves).
    ReadyFirst,
    /// Only every other server `maint`: our Jenkins is not current yet and would serve stale
    /// configuration.
    FenceOnly,
}

/// What the daemon must do. Route and Jenkins actions describe a desired state and are
/// idempotent: the same action every tick changes nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the term exclusively; report [`Outcome::Claimed`] or [`Outcome::ClaimLost`].
    Claim { term: u64 },
    /// Rewrite our term's record with the next counter; report [`Outcome::Renewed`].
    Renew {
        term: u64,
        counter: u64,
        handover_to: Option<String>,
    },
    /// Mark our term released so another node can take it at once; report [`Outcome::Released`].
    Release { term: u64 },
    /// Make HAProxy send traffic to us and to no other node. No write may leave after `until`.
    Route {
        term: u64,
        until: Mono,
        order: RouteOrder,
    },
    /// Write nothing to HAProxy any more.
    StopRouting,
    /// Keep our Jenkins in quiet-down (and follow JENKINS_HOME while a standby).
    KeepQuiet,
    /// A planned switchover hands `term` to us: bring our Jenkins up to date now, still quiet,
    /// so that we can claim the next term with a current Jenkins and route without a 503 window.
    PrepareTakeover { term: u64 },
    /// Quiet every other node's Jenkins for our new term (fencing a master whose sidecar is
    /// frozen or gone); report [`JenkinsObs::fenced_for`].
    FencePeers { term: u64 },
    /// Bring our still-quiet Jenkins up to date with the disk for `term`: the items whose
    /// configuration or build records moved since it loaded them (or a full reload when that
    /// cannot be told), then a final pass once `final_pass` is set (the peers are fenced).
    /// `prepared`: a switchover already did the first pass. Report [`JenkinsObs::catch_up`].
    CatchUp {
        term: u64,
        prepared: bool,
        final_pass: bool,
    },
    /// Our Jenkins is the active one for `term`: take it out of quiet-down; never after `until`.
    CancelQuietDown { term: u64, until: Mono },
    /// A switchover drains our Jenkins: keep it quiet and count its running builds.
    Drain { term: u64 },
    /// Our Jenkins is stuck after a failed reload: run `jenkins.restart_command`, once per JVM.
    RestartJenkins { session: u64 },
    /// Send the other nodes a heartbeat now instead of at the next interval.
    NotifyPeers,
}

/// The core's answer for one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub role: Role,
    pub actions: Vec<Action>,
    /// What this node is doing and why: a kind for code, a sentence for people.
    pub reason: Reason,
    /// `GET /active` answers 200 until this instant (our lease's deadline) and 503 after, or
    /// 503 at once when `None`: we hold the current term, our Jenkins can serve, and HAProxy
    /// may send users here.
    pub serving_until: Option<Mono>,
    /// Whether our Jenkins could be promoted now; said in heartbeats.
    pub jenkins_healthy: bool,
    /// Whether our Jenkins is stuck after a failed reload (it needs a restart).
    pub jenkins_broken: bool,
    /// A full reload of ours is running (Jenkins answers 503 until it is over).
    pub jenkins_reloading: bool,
}

/// What a lease write came to; fed back with [`super::Core::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// We created the term; `at` is when the create started (validity counts from there).
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

/// The fixed inputs: who we are, who the others are, and the timing.
#[derive(Debug, Clone)]
pub struct Params {
    pub node: String,
    /// Our `node.failover_priority`.
    pub priority: u32,
    /// Every other node's name.
    pub peers: Vec<String>,
    pub timing: Timing,
    /// How long a hand-over may wait for the target to claim before it is abandoned.
    pub handover_timeout: Duration,
    /// A full reload still running after this has failed (Jenkins stays 503 until restarted).
    pub reload_timeout: Duration,
}

impl Params {
    /// The other nodes' names, joined for sentences: `jenkins02` or `jenkins02 or jenkins03`.
    pub fn peer_names(&self) -> String {
        self.peers.join(" or ")
    }
}
