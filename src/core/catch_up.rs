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
//!   that `cancelQuietDown` would start at once. An item is cancelled once its job's last build
//!   (as the standby's Jenkins loaded it from disk, which the watcher keeps current) started
//!   after the item's newest request: the other controller built that fire. The standby does
//!   this every few intervals, and the promotion once more after its final pass; any item left
//!   holds a fire the old active never built, and it starts with the promotion. Time alone
//!   proves nothing: a busy active may hold a fire in its own queue for minutes. Jenkins folds requests for one job into one item that keeps the
//!   first one's `inQueueSince`, so the standby lists its queue every few intervals to date the
//!   newest request ([`QueueWatch`]).

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

/// A build waiting in a quiet Jenkins' queue, with what is known of the fires folded into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedBuild {
    pub id: u64,
    /// The job's full name (`folder/job`).
    pub job: String,
    /// When it was queued (Jenkins' `inQueueSince`, wall-clock ms): the first fire it covers.
    pub queued_at_ms: u64,
    /// How many requests (fires) it folds.
    pub requests: u32,
    /// The newest request folded into it came after this instant (wall-clock ms)…
    pub newest_after_ms: u64,
    /// …and at or before this one. Both are `queued_at_ms` for an item of one request.
    pub newest_by_ms: u64,
    /// When the job's last build on disk started (wall-clock ms), once known.
    pub last_build_ms: Option<u64>,
}

/// One queue item as listed: id, job, `inQueueSince` and how many requests it folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedItem {
    pub id: u64,
    pub job: String,
    pub queued_at_ms: u64,
    pub requests: u32,
}

/// What the standby's listings of its queue tell about when each item's newest request came.
///
/// Jenkins folds a new request for a job into the job's queued item and keeps its
/// `inQueueSince` (the first request); the API only counts the requests. So the adapter lists
/// the queue every few intervals, and an item whose count went up between two listings got
/// its newest request between them. Only those bounds let a promotion tell "the old active
/// built the newest fire" from "it built only the first one".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueWatch {
    /// When the queue was last listed (wall-clock ms).
    pub listed_at_ms: Option<u64>,
    /// Per item id: (requests seen, newest request after, newest request by).
    seen: std::collections::BTreeMap<u64, (u32, u64, u64)>,
}

impl QueueWatch {
    /// Takes a listing made at `now_ms`; returns the items with their bounds. Items gone from
    /// the queue are forgotten.
    pub fn observe(&mut self, listing: &[ListedItem], now_ms: u64) -> Vec<QueuedBuild> {
        let previous = self.listed_at_ms;
        let mut seen = std::collections::BTreeMap::new();
        let mut out = Vec::with_capacity(listing.len());
        for item in listing {
            let bounds = match self.seen.get(&item.id) {
                Some(&(requests, after, by)) if requests >= item.requests => (after, by),
                // More requests than at the last listing: the newest came since.
                Some(_) => (previous.unwrap_or(item.queued_at_ms), now_ms),
                None if item.requests <= 1 => (item.queued_at_ms, item.queued_at_ms),
                // New, and already folding several: the newest came after the first, and
                // after the last listing (the item was not in it), if there was one.
                None => (
                    previous.unwrap_or(0).max(item.queued_at_ms),
                    now_ms.max(item.queued_at_ms),
                ),
            };
            seen.insert(item.id, (item.requests, bounds.0, bounds.1));
            out.push(QueuedBuild {
                id: item.id,
                job: item.job.clone(),
                queued_at_ms: item.queued_at_ms,
                requests: item.requests,
                newest_after_ms: bounds.0,
                newest_by_ms: bounds.1,
                last_build_ms: None,
            });
        }
        self.seen = seen;
        self.listed_at_ms = Some(now_ms);
        out
    }
}

/// The queued builds another controller already ran, to cancel (on a standby, and at a
/// promotion): its last build of that job started after the item's newest request (less `tolerance_ms` for the clocks of
/// two hosts), and, for an item folding several requests, was not the build of the first one
/// (it started more than `tolerance_ms` after it). The others hold a fire the old active never
/// built, and start with the promotion.
pub fn triage(queue: &[QueuedBuild], tolerance_ms: u64) -> Vec<u64> {
    queue
        .iter()
        .filter(|q| {
            q.last_build_ms.is_some_and(|started| {
                let after_newest = started + tolerance_ms >= q.newest_after_ms;
                let not_the_first = q.requests <= 1 || started > q.queued_at_ms + tolerance_ms;
                after_newest && not_the_first
            })
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
            requests: 1,
            newest_after_ms: queued,
            newest_by_ms: queued,
            last_build_ms: last,
        }
    }

    fn listed(id: u64, queued: u64, requests: u32) -> ListedItem {
        ListedItem {
            id,
            job: format!("job-{id}"),
            queued_at_ms: queued,
            requests,
        }
    }

    #[test]
    fn a_fire_folded_into_a_queued_item_is_dated_between_two_listings() {
        let mut watch = QueueWatch::default();
        let first = watch.observe(&[listed(1, 10_000, 1)], 10_500);
        assert_eq!(
            (first[0].newest_after_ms, first[0].newest_by_ms),
            (10_000, 10_000)
        );
        // Unchanged at the next listing: same bounds.
        let second = watch.observe(&[listed(1, 10_000, 1)], 11_500);
        assert_eq!(
            (second[0].newest_after_ms, second[0].newest_by_ms),
            (10_000, 10_000)
        );
        // A second fire folded in: it came after 11_500 and by 13_500.
        let third = watch.observe(&[listed(1, 10_000, 2)], 13_500);
        assert_eq!(
            (third[0].newest_after_ms, third[0].newest_by_ms),
            (11_500, 13_500)
        );
        // The old active built the first fire at 10_020 and then died: the item stays.
        let mut at_promotion = third.clone();
        at_promotion[0].last_build_ms = Some(10_020);
        assert!(
            triage(&at_promotion, 200).is_empty(),
            "the second fire is not lost"
        );
        // Even with a tolerance that reaches the listing before the second fire.
        assert!(
            triage(&at_promotion, 1_500).is_empty(),
            "the build of the first fire"
        );
        // Had it built the second one too, the item goes.
        at_promotion[0].last_build_ms = Some(12_020);
        assert_eq!(triage(&at_promotion, 200), [1]);
    }

    #[test]
    fn an_item_first_seen_with_several_fires_is_dated_after_the_last_listing() {
        let mut watch = QueueWatch::default();
        watch.observe(&[], 20_000);
        let items = watch.observe(&[listed(7, 20_100, 3)], 21_000);
        assert_eq!(
            (items[0].newest_after_ms, items[0].newest_by_ms),
            (20_100, 21_000)
        );
        // Gone from the queue: forgotten; a new item with the same id starts afresh.
        watch.observe(&[], 22_000);
        let again = watch.observe(&[listed(7, 22_500, 1)], 23_000);
        assert_eq!(
            (again[0].newest_after_ms, again[0].newest_by_ms),
            (22_500, 22_500)
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
