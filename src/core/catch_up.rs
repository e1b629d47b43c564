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
//!   that `cancelQuietDown` would start at once. An item is cancelled once another controller
//!   started a build of its job after the item's newest request showed in a listing: the
//!   job's `nextBuildNumber` on disk moved since ([`QueueWatch`]). The standby does this every
//!   interval, and the promotion once more after its final pass; any item left holds a fire
//!   the old active never started, and it starts with the promotion. Time alone proves
//!   nothing (a busy active may hold a fire in its own queue for minutes), and the clocks of
//!   two hosts are compared only for an item no listing showed before the promotion.

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

/// The jobs whose next build number on disk is above the one their Jenkins has in memory: a
/// build another controller started that this Jenkins has not loaded. Each needs a per-item
/// reload before any build starts here, or its next build reuses `builds/N` (a collision). Jobs
/// this Jenkins has not loaded at all are the watcher's (a new item), not this check's.
pub fn stale_next_numbers(
    on_disk: &std::collections::BTreeMap<String, u64>,
    in_memory: &std::collections::BTreeMap<String, u64>,
) -> Vec<String> {
    on_disk
        .iter()
        .filter(|(job, disk)| in_memory.get(*job).is_some_and(|memory| memory < *disk))
        .map(|(job, _)| job.clone())
        .collect()
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
    /// The job's `nextBuildNumber` on disk, read right after the listing that first showed
    /// the item's newest request; `None` when this very listing is the first to show it.
    pub next_at_newest: Option<u64>,
    /// The job's `nextBuildNumber` on disk now (after this listing).
    pub next_now: Option<u64>,
    /// When the job's newest build on disk started (wall-clock ms of the host that ran it).
    pub last_build_ms: Option<u64>,
    /// When the job's newest builds started by a trigger (timer or SCM polling: the causes a
    /// quiet Jenkins queues too) started, newest first, as far back as the adapter read.
    pub trigger_starts_ms: Vec<u64>,
}

/// What the disk says of a queued job's newest builds, read right after a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskBuilds {
    /// Its `nextBuildNumber`.
    pub next: u64,
    /// When its newest build started.
    pub last_started_ms: Option<u64>,
    /// When its newest builds with a trigger cause started, newest first (see
    /// [`QueuedBuild::trigger_starts_ms`]).
    pub trigger_starts_ms: Vec<u64>,
}

/// One queue item as listed: id, job, `inQueueSince` and how many requests it folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedItem {
    pub id: u64,
    pub job: String,
    pub queued_at_ms: u64,
    pub requests: u32,
}

/// What a quiet Jenkins' queue listings tell about each item's newest request.
///
/// Jenkins folds a new request for a job into the job's queued item and keeps its
/// `inQueueSince` (the first request); the API only counts the requests. So the adapter lists
/// the queue every interval and reads each queued job's `nextBuildNumber` right after. A build
/// numbered at or above the number read when an item's newest request first showed started
/// after that request, so it covered it: a build of one job takes every request queued for
/// it when it starts. No clock of another host is involved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueWatch {
    /// When the queue was last listed (wall-clock ms).
    pub listed_at_ms: Option<u64>,
    /// Per item id: (requests seen, newest after, newest by, `nextBuildNumber` at first sight
    /// of that many requests).
    seen: std::collections::BTreeMap<u64, (u32, u64, u64, Option<u64>)>,
}

impl QueueWatch {
    /// Takes a listing made at `now_ms` and the `nextBuildNumber` of the queued jobs read
    /// right after it; returns the items with what is known of them. Items gone from the
    /// queue are forgotten.
    pub fn observe(
        &mut self,
        listing: &[ListedItem],
        now_ms: u64,
        newest: &std::collections::BTreeMap<String, DiskBuilds>,
    ) -> Vec<QueuedBuild> {
        let previous = self.listed_at_ms;
        let mut seen = std::collections::BTreeMap::new();
        let mut out = Vec::with_capacity(listing.len());
        for item in listing {
            let (next_now, last_build_ms, trigger_starts_ms) = match newest.get(&item.job) {
                Some(d) => (Some(d.next), d.last_started_ms, d.trigger_starts_ms.clone()),
                None => (None, None, Vec::new()),
            };
            let (after, by, next_at_newest) = match self.seen.get(&item.id) {
                Some(&(requests, after, by, at)) if requests >= item.requests => {
                    (after, by, Some(at))
                }
                // More requests than at the last listing: the newest came since.
                Some(_) => (previous.unwrap_or(item.queued_at_ms), now_ms, None),
                None if item.requests <= 1 => (item.queued_at_ms, item.queued_at_ms, None),
                // New, and already folding several: the newest came after the first, and
                // after the last listing (the item was not in it), if there was one.
                None => (
                    previous.unwrap_or(0).max(item.queued_at_ms),
                    now_ms.max(item.queued_at_ms),
                    None,
                ),
            };
            let at = next_at_newest.unwrap_or(next_now);
            seen.insert(item.id, (item.requests, after, by, at));
            out.push(QueuedBuild {
                id: item.id,
                job: item.job.clone(),
                queued_at_ms: item.queued_at_ms,
                requests: item.requests,
                newest_after_ms: after,
                newest_by_ms: by,
                next_at_newest: next_at_newest.flatten(),
                next_now,
                last_build_ms,
                trigger_starts_ms,
            });
        }
        self.seen = seen;
        self.listed_at_ms = Some(now_ms);
        out
    }
}

/// Whether another controller already ran the item's fires: a build of its job started after
/// the item's newest request. Certain when the job's `nextBuildNumber` moved since the listing
/// that first showed that request. Otherwise by the starts of the job's builds (the other
/// host's clock, so less `tolerance_ms` of skew):
/// - an item of one request: its newest build started at or after it (`inQueueSince` is exact);
/// - an item folding several: its newest build started at or after the listing that first
///   showed the newest (only a listing dates it); or as many builds started by a trigger as
///   the item folds requests started at or after its first (`inQueueSince`), the newest of them
///   after the last listing that did not show the newest request. Both controllers fire on the
///   same schedule, and a build takes every request queued for its job when it starts, so each
///   such build after the first took at least one fire later than the one before it: `n` of
///   them reach the item's `n`-th fire. This judges an item whose fires the other controller
///   built between two listings, or before this quiet Jenkins' queue was first listed (it just
///   started).
///
/// Anything else is kept: a fire nobody built must not be lost.
pub fn already_built(q: &QueuedBuild, tolerance_ms: u64) -> bool {
    if matches!((q.next_at_newest, q.next_now), (Some(then), Some(now)) if now > then) {
        return true;
    }
    let by_newest = q.last_build_ms.is_some_and(|started| {
        if q.requests <= 1 {
            started + tolerance_ms >= q.queued_at_ms
        } else {
            started >= q.newest_by_ms
        }
    });
    by_newest || (q.requests > 1 && fires_counted(q, tolerance_ms))
}

/// For a folded item: `requests` trigger builds started since its first request, the newest
/// after the last listing without its newest request.
fn fires_counted(q: &QueuedBuild, tolerance_ms: u64) -> bool {
    let since_first = q
        .trigger_starts_ms
        .iter()
        .take_while(|&&s| s + tolerance_ms >= q.queued_at_ms)
        .count();
    let newest_after_last_listing = q
        .trigger_starts_ms
        .first()
        .is_some_and(|&s| s + tolerance_ms >= q.newest_after_ms);
    since_first >= q.requests as usize && newest_after_last_listing
}

/// The queued builds another controller already ran, to cancel: on a standby at every listing,
/// and at a promotion once the other controllers are fenced (see [`already_built`]). Every
/// other item holds a fire the old active never started, and starts with the promotion.
pub fn triage(queue: &[QueuedBuild], tolerance_ms: u64) -> Vec<u64> {
    queue
        .iter()
        .filter(|q| already_built(q, tolerance_ms))
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
            next_at_newest: None,
            next_now: None,
            last_build_ms: last,
            trigger_starts_ms: last.into_iter().collect(),
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

    fn numbers(v: &[(u64, u64)]) -> std::collections::BTreeMap<String, DiskBuilds> {
        v.iter()
            .map(|(id, n)| {
                let d = DiskBuilds {
                    next: *n,
                    ..DiskBuilds::default()
                };
                (format!("job-{id}"), d)
            })
            .collect()
    }

    #[test]
    fn a_fire_is_covered_by_a_build_numbered_after_it_showed() {
        let mut watch = QueueWatch::default();
        // First seen: nothing to judge yet.
        let first = watch.observe(&[listed(1, 10_000, 1)], 10_500, &numbers(&[(1, 8)]));
        assert_eq!(first[0].next_at_newest, None);
        assert!(triage(&first, 50).is_empty());
        // Same count, the number did not move: the other controller has not built it yet.
        let second = watch.observe(&[listed(1, 10_000, 1)], 11_500, &numbers(&[(1, 8)]));
        assert_eq!(second[0].next_at_newest, Some(8));
        assert!(triage(&second, 50).is_empty());
        // A second fire folded in, and build 8 started meanwhile (before or after the fire:
        // no telling), so the item waits for a number read after this listing.
        let third = watch.observe(&[listed(1, 10_000, 2)], 13_500, &numbers(&[(1, 9)]));
        assert_eq!(
            (third[0].newest_after_ms, third[0].newest_by_ms),
            (11_500, 13_500)
        );
        assert!(
            triage(&third, 50).is_empty(),
            "build 8 may be the first fire's"
        );
        // Build 9 started after the second fire showed: it covered both.
        let fourth = watch.observe(&[listed(1, 10_000, 2)], 14_500, &numbers(&[(1, 10)]));
        assert_eq!(fourth[0].next_at_newest, Some(9));
        assert_eq!(triage(&fourth, 50), [1]);
    }

    #[test]
    fn an_item_first_seen_with_several_fires_is_dated_after_the_last_listing() {
        let mut watch = QueueWatch::default();
        watch.observe(&[], 20_000, &numbers(&[]));
        let items = watch.observe(&[listed(7, 20_100, 3)], 21_000, &numbers(&[(7, 4)]));
        assert_eq!(
            (items[0].newest_after_ms, items[0].newest_by_ms),
            (20_100, 21_000)
        );
        // Gone from the queue: forgotten; a new item with the same id starts afresh.
        watch.observe(&[], 22_000, &numbers(&[]));
        let again = watch.observe(&[listed(7, 22_500, 1)], 23_000, &numbers(&[(7, 5)]));
        assert_eq!(
            (
                again[0].newest_after_ms,
                again[0].newest_by_ms,
                again[0].next_at_newest
            ),
            (22_500, 22_500, None)
        );
    }

    #[test]
    fn the_newest_build_start_judges_what_the_numbers_cannot_yet() {
        // One request: its inQueueSince is exact, and the build started just after it.
        let one = q(2, 60_000, Some(60_020));
        assert_eq!(triage(&[one], 50), [2]);
        // Started a little before it, within the clocks' skew: the same fire.
        let skewed = q(2, 60_000, Some(59_970));
        assert_eq!(triage(&[skewed], 50), [2]);
        // Started well before: the build of an earlier fire.
        let earlier = q(2, 60_000, Some(59_000));
        assert!(triage(&[earlier], 50).is_empty());
        // Several requests, the newest first shown by the listing at 62_200: only a build
        // started after that listing certainly took it.
        let mut folded = q(3, 60_000, Some(62_100));
        folded.requests = 2;
        folded.newest_after_ms = 62_000;
        folded.newest_by_ms = 62_200;
        assert!(triage(&[folded.clone()], 50).is_empty());
        folded.last_build_ms = Some(62_300);
        assert_eq!(triage(&[folded], 50), [3]);
    }

    #[test]
    fn a_folded_item_is_judged_by_counting_the_trigger_builds_since_its_first_fire() {
        // Fires at 33 s and 36 s folded into one item, first listed at 36.5 s (this Jenkins
        // had just started: no listing before). The other controller built both fires at once.
        let mut folded = q(4, 33_000, Some(36_010));
        folded.requests = 2;
        folded.newest_after_ms = 33_000;
        folded.newest_by_ms = 36_500;
        folded.trigger_starts_ms = vec![36_010, 33_005, 30_004];
        assert_eq!(triage(&[folded.clone()], 50), [4]);
        // It built the 33 s fire only (it died at the 36 s one): one build since the first
        // request, for two requests. Kept: the 36 s fire must not be lost.
        folded.trigger_starts_ms = vec![33_005, 30_004];
        folded.last_build_ms = Some(33_005);
        assert!(triage(&[folded.clone()], 50).is_empty());
        // A build for another cause (a user's Build Now) between the fires is no fire's.
        folded.trigger_starts_ms = vec![33_005, 30_004];
        folded.last_build_ms = Some(34_000);
        assert!(triage(&[folded.clone()], 50).is_empty());
        // Two trigger builds since the first request, but the newest before the last listing
        // that still showed one request (the newest fire came after it): kept.
        folded.trigger_starts_ms = vec![34_000, 33_005];
        folded.newest_after_ms = 35_000;
        assert!(triage(&[folded], 50).is_empty());
    }

    #[test]
    fn a_job_built_elsewhere_since_it_was_loaded_needs_a_reload() {
        let map = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let disk = map(&[("a", 5), ("F/b", 12), ("c", 3), ("new", 1)]);
        let memory = map(&[("a", 5), ("F/b", 11), ("c", 4)]);
        assert_eq!(stale_next_numbers(&disk, &memory), ["F/b"]);
    }
}
