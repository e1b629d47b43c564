//! The structured reason of a decision: a [`ReasonKind`] that code uses (metrics, the
//! "no active node" alarm, the log level), and one sentence for people (the log and `status`).
//! No code ever looks inside the sentence.

use std::fmt;

/// Why a node claims a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimWhy {
    /// No node ever held a term.
    First,
    /// The holder released its term (its Jenkins failed, or it stopped).
    Released,
    /// The holder has not renewed its term for `lease_timeout`.
    LeaseExpired,
    /// A planned switchover handed the term to us.
    Planned,
    /// An operator forced a takeover of a stale term.
    Forced,
    /// We held the newest term ourselves before a restart.
    Restart,
}

impl ClaimWhy {
    /// The stable label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ClaimWhy::First => "first",
            ClaimWhy::Released => "released",
            ClaimWhy::LeaseExpired => "lease_expired",
            ClaimWhy::Planned => "planned",
            ClaimWhy::Forced => "forced",
            ClaimWhy::Restart => "restart",
        }
    }

    pub const ALL: [ClaimWhy; 6] = [
        ClaimWhy::First,
        ClaimWhy::Released,
        ClaimWhy::LeaseExpired,
        ClaimWhy::Planned,
        ClaimWhy::Forced,
        ClaimWhy::Restart,
    ];
}

/// Why a holder releases its term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseWhy {
    JenkinsFailed,
    Shutdown,
}

/// Why a holder steps down without releasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepDownWhy {
    /// Its lease expired by its own clock.
    LeaseExpired,
    /// Another node holds a newer term.
    NewerTerm,
    /// The target of our planned switchover took the term.
    HandedOver,
}

/// What kind of decision this is. Code branches on this, never on the sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonKind {
    /// Waiting for the first Jenkins health check.
    Starting,
    /// Holding the term; catching our Jenkins up or serving.
    Active,
    /// Holding the term while a switchover drains our Jenkins or waits for the target.
    HandingOver,
    /// A switchover's target did not take the term in time; we carry on.
    HandoverAbandoned,
    /// Holding the term, but our Jenkins failed and no other node can take over:
    /// no node serves.
    NotServing,
    Releasing(ReleaseWhy),
    SteppingDown(StepDownWhy),
    Claiming(ClaimWhy),
    /// Following a live holder.
    Standby,
    /// A switchover hands the term to us; our Jenkins is being brought up to date first.
    Preparing,
    /// A takeover is due but another standby ranks higher: it gets the first chance.
    Deferring,
    /// A takeover is due but the cluster is paused.
    Paused,
    /// The lease cannot be read: nothing is claimed.
    LeaseUnreadable,
    /// No node serves and this standby cannot take over (its Jenkins is not healthy, or its
    /// priority is 0).
    NoActiveNode,
    /// The holder's term is stale, but the holder runs another timing (`interval`,
    /// `lease_timeout`, `fall`) than ours: its lease may outlast ours, so we do not take over.
    TimingMismatch,
    /// The holder's term is stale, but neither its term record nor its heartbeats say its
    /// timing (it runs an older version): its lease may outlast ours, so we do not take over
    /// unless an operator forces it.
    TimingUnknown,
}

impl ReasonKind {
    /// No node of the cluster serves users: logged at ERROR, and an alarm in `status`.
    pub fn no_active_node(self) -> bool {
        matches!(self, ReasonKind::NotServing | ReasonKind::NoActiveNode)
    }

    /// Logged at ERROR: no node serves, or a takeover is refused that the operator must unblock.
    pub fn is_error(self) -> bool {
        self.no_active_node()
            || matches!(self, ReasonKind::TimingMismatch | ReasonKind::TimingUnknown)
    }

    /// The claim's why, when this decision claims a term.
    pub fn claim(self) -> Option<ClaimWhy> {
        match self {
            ReasonKind::Claiming(why) => Some(why),
            _ => None,
        }
    }
}

/// A decision's reason: its kind, and the sentence saying what the node does and why
/// ("standby: jenkins01 holds term 7 and renewed 0.4 s ago").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub kind: ReasonKind,
    pub text: String,
}

impl Reason {
    pub fn new(kind: ReasonKind, text: impl Into<String>) -> Self {
        Reason {
            kind,
            text: text.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
