//! How a promotion catches its Jenkins up with the disk, and what becomes of the builds the
//! standby queued while it was quiet. Pure rules, called by the Jenkins adapter with what it
//! knows; the kind and the reason go to the log and `status`.
//!
//! - A standby that has followed every change needs only per-item reloads: the items whose
//!   configuration or build records moved since its Jenkins loaded them, and the folders of
//!   nested items added or removed. That takes the same time whatever the size of the home.
//! - A full reload is the fallback for what a per-item reload cannot apply (the global
//!   configuration, nodes, users, a top-level item added or removed), and for a Jenkins whose
//!   loaded state is unknown (the sidecar started while it was already running, and has not
//!   finished checking it item by item).
//! - Queue: timer and SCM triggers keep firing on a quiet standby, and each fire queues a build
//!   that `cancelQuietDown` would start at once. While a live active builds, the standby cancels
//!   the items queued long enough before the active's last renewal that the active was
//!   certainly healthy then (it built that fire). At promotion, an item is cancelled when its
//!   job's last build (re-read from disk) started at or after the item was queued (the old
//!   active built that fire); any other item is a fire the old active never built, and it
//!   starts with the promotion.

/// What the adapter knows about what its Jenkins has loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Knowledge {
    /// It cannot tell (why, for people).
    Unknown(String),
    /// It is checking the items one by one; this many are left.
    Resyncing { left: usize },
    /// Every change seen on disk was applied, or waits in the watcher.
    Known,
}

impl Default for Knowledge {
    fn default() -> Self {
        Knowledge::Unknown("not checked yet".into())
    }
}

impl Knowledge {
    /// One phrase for `status`.
    pub fn describe(&self) -> String {
        match self {
            Knowledge::Unknown(why) => format!("unknown ({why})"),
            Knowledge::Resyncing { left } => format!("checking item by item, {left} left"),
            Knowledge::Known => "known".into(),
        }
    }
}

/// The kind of catch-up a promotion runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUpKind {
    /// Per-item reloads only: Jenkins keeps answering.
    Items { count: usize },
    /// A full reload (Jenkins answers 503 until it is over), then per-item reloads of nested
    /// items.
    Full { why: String },
}

impl CatchUpKind {
    /// One phrase for the log and `status`.
    pub fn describe(&self) -> String {
        match self {
            CatchUpKind::Items { count: 0 } => "incremental: nothing moved".into(),
            CatchUpKind::Items { count: 1 } => "incremental: 1 item reload".into(),
            CatchUpKind::Items { count } => format!("incremental: {count} item reloads"),
            CatchUpKind::Full { why } => format!("full reload: {why}"),
        }
    }
}

/// The catch-up for what the adapter knows, given what waits in the watcher: whether a full
/// reload is needed for it (and why), and how many items need a per-item reload.
pub fn catch_up_kind(knowledge: &Knowledge, full_needed: &[String], items: usize) -> CatchUpKind {
    if let Knowledge::Unknown(why) = knowledge {
        return CatchUpKind::Full {
            why: format!("cannot tell what this Jenkins has loaded ({why})"),
        };
    }
    if !full_needed.is_empty() {
        return CatchUpKind::Full {
            why: full_needed.join("; "),
        };
    }
    let left = match knowledge {
        Knowledge::Resyncing { left } => *left,
        _ => 0,
    };
    CatchUpKind::Items {
        count: items + left,
    }
}

/// A build waiting in a quiet Jenkins' queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedBuild {
    pub id: u64,
    /// The job's full name (`folder/job`).
    pub job: String,
    /// When it was queued (Jenkins' `inQueueSince`, wall-clock ms): the first fire it covers.
    pub queued_at_ms: u64,
    /// When the job's last build on disk started (wall-clock ms), once known.
    pub last_build_ms: Option<u64>,
}

/// On a standby: the queued builds the live active certainly built, to cancel: those queued
/// before `before_ms` (wall clock; the decision's `sweep_before`, see
/// [`super::Decision::sweep_before`]).
pub fn sweep(queue: &[QueuedBuild], before_ms: u64) -> Vec<u64> {
    queue
        .iter()
        .filter(|q| q.queued_at_ms < before_ms)
        .map(|q| q.id)
        .collect()
}

/// At a promotion: the queued builds the old active already built (its last build of that job
/// started at or after the item was queued, less `tolerance_ms` for the clocks of two hosts),
/// to cancel. The others are fires it never built, and start with the promotion.
pub fn triage(queue: &[QueuedBuild], tolerance_ms: u64) -> Vec<u64> {
    queue
        .iter()
        .filter(|q| {
            q.last_build_ms
                .is_some_and(|started| started + tolerance_ms >= q.queued_at_ms)
        })
        .map(|q| q.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_current_standby_catches_up_item_by_item() {
        assert_eq!(
            catch_up_kind(&Knowledge::Known, &[], 3),
            CatchUpKind::Items { count: 3 }
        );
        assert_eq!(
            catch_up_kind(&Knowledge::Resyncing { left: 40 }, &[], 2),
            CatchUpKind::Items { count: 42 }
        );
        assert_eq!(
            CatchUpKind::Items { count: 0 }.describe(),
            "incremental: nothing moved"
        );
    }

    #[test]
    fn a_full_reload_only_when_an_item_reload_cannot_do_or_nothing_is_known() {
        let k = catch_up_kind(
            &Knowledge::Known,
            &["global configuration changed".into()],
            5,
        );
        assert_eq!(k.describe(), "full reload: global configuration changed");
        let k = catch_up_kind(
            &Knowledge::Unknown("the sidecar just started".into()),
            &[],
            0,
        );
        assert_eq!(
            k.describe(),
            "full reload: cannot tell what this Jenkins has loaded (the sidecar just started)"
        );
    }

    fn q(id: u64, queued: u64, last: Option<u64>) -> QueuedBuild {
        QueuedBuild {
            id,
            job: format!("job-{id}"),
            queued_at_ms: queued,
            last_build_ms: last,
        }
    }

    #[test]
    fn the_standby_cancels_only_fires_the_live_active_certainly_built() {
        let queue = [q(1, 10_000, None), q(2, 14_000, None), q(3, 15_500, None)];
        assert_eq!(sweep(&queue, 15_000), [1, 2]);
        assert_eq!(sweep(&queue, 10_001), [1]);
        assert!(
            sweep(&queue, 10_000).is_empty(),
            "queued exactly at the edge: kept"
        );
    }

    #[test]
    fn a_promotion_cancels_fires_the_old_active_built_and_keeps_the_others() {
        let queue = [
            // Built: the old active's last build started after the fire was queued.
            q(1, 60_000, Some(60_020)),
            // Built, a little clock skew between the hosts.
            q(2, 60_000, Some(59_700)),
            // Not built: the last build is the fire before.
            q(3, 120_000, Some(60_010)),
            // Never built at all.
            q(4, 120_000, None),
        ];
        assert_eq!(triage(&queue, 1_000), [1, 2]);
    }
}
