//! Turning a stream of changes into reload plans: debounce, coalesce, classify, rate-limit.
//!
//! Pure and synchronous: time is passed in (as a [`Duration`] since any fixed origin), so every
//! rule is tested without clocks or disks.
//!
//! The rules (from `shared/design/protocol.md` and `jenkins.md`, "What a reload covers"):
//! - edits of existing items, and jobs whose build records moved (`nextBuildNumber` or
//!   `builds/`) → per-item reloads of those items (a per-item reload re-reads the item's
//!   `config.xml`, its `nextBuildNumber` and its build index);
//! - a nested item added, removed or replaced → a per-item reload of its parent folder, which
//!   reads new child directories and drops deleted ones (a replaced one keeps its old object
//!   under the folder, so it is reloaded itself too);
//! - a top-level item added, removed or replaced, the global `config.xml`, `nodes/` or `users/`
//!   changed, or a forced full reload → one full reload, then per-item reloads of the *nested*
//!   items of the batch, because a full reload keeps the folder children it already has and may
//!   not re-read their `config.xml` (JENKINS-28043). Top-level items are re-read by the full
//!   reload itself; items that are new in the batch are loaded fresh by it;
//! - any other root `*.xml` (`credentials.xml`, plugin configuration) is read once, when Jenkins
//!   starts: no reload applies it, so the plan names it as needing a restart instead;
//! - a plan comes once no change has arrived for `debounce`, or once the oldest pending change
//!   has waited `max_wait` (so endless churn cannot starve the standby);
//! - full reloads come at most once per `min_full_gap`; changes arriving meanwhile are held and
//!   merged into the next plan. The caller runs plans one at a time (a full reload, then
//!   `wait_ready`), so the real gap is at least as long as a reload takes.
//!
//! A per-item reload answered with 404 means Jenkins has not loaded that item: the caller reports
//! it with [`Batcher::item_not_loaded`], which schedules a full reload.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::Duration;

use super::{Change, ChangeKind, Target};

/// At most this many reasons are listed in a plan; the rest are counted.
const MAX_REASONS: usize = 20;

/// The timing rules of a [`Batcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// A plan waits until no change has arrived for this long (`watch.debounce`).
    pub debounce: Duration,
    /// At most one full reload per this long.
    pub min_full_gap: Duration,
    /// A change waits at most this long for the changes after it to settle.
    pub max_wait: Duration,
}

impl BatchConfig {
    pub const DEFAULT_MIN_FULL_GAP: Duration = Duration::from_secs(10);
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);

    /// The defaults around a configured debounce.
    pub fn new(debounce: Duration) -> Self {
        BatchConfig {
            debounce,
            min_full_gap: Self::DEFAULT_MIN_FULL_GAP,
            max_wait: Self::DEFAULT_MAX_WAIT.max(debounce),
        }
    }
}

/// What to do to the standby's Jenkins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadPlan {
    /// A full `POST /reload` (then `wait_ready`), before the per-item reloads.
    pub full: bool,
    /// Why a full reload, when one is needed.
    pub full_why: Vec<String>,
    /// Items to reload one by one (`POST /job/A/job/B/reload`), by full name, sorted (a folder
    /// before its children).
    pub items: Vec<String>,
    /// Root files that changed but that only a restart of Jenkins applies (relative paths).
    pub restart_needed: Vec<String>,
    /// What changed, as short phrases (`jobs/app/config.xml edited`, `job new-job added`).
    pub reasons: Vec<String>,
}

/// Whether a global file is applied by a full reload: the global `config.xml`, `nodes/` and
/// `users/`. Every other root `*.xml` (`credentials.xml`, plugin configuration) is read once,
/// when its descriptor is built at start-up (`jenkins.md`, "What a reload covers").
pub fn reload_applies(global: &str) -> bool {
    global == "config.xml" || global.starts_with("nodes/") || global.starts_with("users/")
}

/// One sentence for logs and `status`: "full reload, then reload 1 nested item (F/b): job x
/// added; jobs/F/jobs/b/config.xml edited".
impl fmt::Display for ReloadPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = |f: &mut fmt::Formatter<'_>, what: &str| {
            let s = if self.items.len() == 1 { "" } else { "s" };
            write!(
                f,
                "reload {} {what}item{s} ({})",
                self.items.len(),
                self.items.join(", ")
            )
        };
        match (self.full, self.items.is_empty()) {
            (true, true) => f.write_str("full reload")?,
            (true, false) => {
                f.write_str("full reload, then ")?;
                items(f, "nested ")?;
            }
            (false, true) if !self.restart_needed.is_empty() => write!(
                f,
                "no reload applies {} (a restart of Jenkins does)",
                self.restart_needed.join(", ")
            )?,
            (false, _) => items(f, "")?,
        }
        if !self.reasons.is_empty() {
            write!(f, ": {}", self.reasons.join("; "))?;
        }
        Ok(())
    }
}

/// How one item moved during a batch.
#[derive(Debug, Clone, Copy)]
struct Track {
    /// Whether it existed before the batch (as Jenkins last loaded it).
    was_present: bool,
    present: bool,
    /// It went away and came back within the batch.
    replaced: bool,
    edited: bool,
}

#[derive(Debug)]
struct Pending {
    first: Duration,
    last: Duration,
    items: BTreeMap<String, Track>,
    /// Jobs whose build records moved.
    built: BTreeSet<String>,
    /// Global files a full reload applies that changed.
    global_changes: usize,
    /// Global files only a restart applies that changed.
    restart_needed: BTreeSet<String>,
    forced: bool,
    reasons: Vec<String>,
    seen_reasons: HashSet<String>,
    more_reasons: usize,
}

impl Pending {
    fn new(now: Duration) -> Self {
        Pending {
            first: now,
            last: now,
            items: BTreeMap::new(),
            built: BTreeSet::new(),
            global_changes: 0,
            restart_needed: BTreeSet::new(),
            forced: false,
            reasons: Vec::new(),
            seen_reasons: HashSet::new(),
            more_reasons: 0,
        }
    }

    fn reason(&mut self, reason: String) {
        if self.seen_reasons.contains(&reason) {
            return;
        }
        if self.reasons.len() < MAX_REASONS {
            self.seen_reasons.insert(reason.clone());
            self.reasons.push(reason);
        } else {
            self.more_reasons += 1;
        }
    }

    fn add(&mut self, change: Change) {
        self.reason(change.to_string());
        match change.what {
            Target::Global { path } if reload_applies(&path) => self.global_changes += 1,
            Target::Global { path } => {
                self.restart_needed.insert(path);
            }
            Target::Builds { full_name } => {
                self.built.insert(full_name);
            }
            Target::Item { full_name } => {
                let kind = change.kind;
                self.items
                    .entry(full_name)
                    .and_modify(|t| match kind {
                        ChangeKind::Added => {
                            t.replaced |= t.was_present && !t.present;
                            t.present = true;
                        }
                        ChangeKind::Modified => {
                            t.edited = true;
                            t.present = true;
                        }
                        ChangeKind::Removed => t.present = false,
                    })
                    .or_insert(Track {
                        was_present: kind != ChangeKind::Added,
                        present: kind != ChangeKind::Removed,
                        replaced: false,
                        edited: kind == ChangeKind::Modified,
                    });
            }
        }
    }

    /// The plan for what is pending; `None` when it all cancelled out (an item added and removed
    /// again within the batch).
    fn plan(&self) -> Option<ReloadPlan> {
        let parent = |name: &str| name.rsplit_once('/').map(|(p, _)| p.to_string());
        let moved = |t: &Track| t.was_present != t.present || (t.present && t.replaced);
        let mut full_why: Vec<String> = Vec::new();
        if self.forced {
            full_why.push("asked for".into());
        }
        if self.global_changes > 0 {
            full_why.push("global configuration changed".into());
        }
        if self
            .items
            .iter()
            .any(|(name, t)| !name.contains('/') && moved(t))
        {
            full_why.push("a top-level item was added or removed".into());
        }
        let full = !full_why.is_empty();
        let mut items: BTreeSet<String> = BTreeSet::new();
        for (name, t) in &self.items {
            if t.was_present && t.present && (t.edited || t.replaced) {
                items.insert(name.clone());
            }
            // A folder reads its new children and drops deleted ones when it is reloaded.
            if moved(t) {
                if let Some(folder) = parent(name) {
                    items.insert(folder);
                }
            }
        }
        for name in &self.built {
            // New in this batch: loaded fresh with its builds by whatever loads it.
            let new = self.items.get(name).is_some_and(|t| !t.was_present);
            let gone = self.items.get(name).is_some_and(|t| !t.present);
            if !new && !gone {
                items.insert(name.clone());
            }
        }
        if full {
            // The full reload re-reads the top-level items itself.
            items.retain(|name| name.contains('/'));
        }
        let items: Vec<String> = items.into_iter().collect();
        let restart_needed: Vec<String> = self.restart_needed.iter().cloned().collect();
        if !full && items.is_empty() && restart_needed.is_empty() {
            return None;
        }
        let mut reasons = self.reasons.clone();
        if self.more_reasons > 0 {
            reasons.push(format!("and {} more changes", self.more_reasons));
        }
        Some(ReloadPlan {
            full,
            full_why,
            items,
            restart_needed,
            reasons,
        })
    }
}

/// Collects changes and hands out [`ReloadPlan`]s when they are due.
#[derive(Debug)]
pub struct Batcher {
    config: BatchConfig,
    pending: Option<Pending>,
    last_full: Option<Duration>,
}

impl Batcher {
    pub fn new(config: BatchConfig) -> Self {
        Batcher {
            config,
            pending: None,
            last_full: None,
        }
    }

    pub fn config(&self) -> BatchConfig {
        self.config
    }

    /// Adds the changes of one scan, seen at `now`. An empty list changes nothing (it does not
    /// postpone the pending plan).
    pub fn push(&mut self, now: Duration, changes: impl IntoIterator<Item = Change>) {
        let mut changes = changes.into_iter().peekable();
        if changes.peek().is_none() {
            return;
        }
        let pending = self.pending.get_or_insert_with(|| Pending::new(now));
        pending.last = pending.last.max(now);
        for change in changes {
            pending.add(change);
        }
    }

    /// Asks for a full reload, as a change arriving at `now` (it is debounced and rate-limited
    /// like the others).
    pub fn force_full(&mut self, now: Duration, reason: impl Into<String>) {
        let pending = self.pending.get_or_insert_with(|| Pending::new(now));
        pending.last = pending.last.max(now);
        pending.forced = true;
        pending.reason(reason.into());
    }

    /// A per-item reload was answered with 404 (`JenkinsError::ItemNotLoaded`): Jenkins does not
    /// have that item in memory, and only a full reload can load it.
    pub fn item_not_loaded(&mut self, now: Duration, full_name: &str) {
        self.force_full(
            now,
            format!("job {full_name} is not loaded in Jenkins (404 on its reload)"),
        );
    }

    /// Whether changes are waiting.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The plan, if one is due at `now`; the pending changes are then cleared. `None` while the
    /// changes are settling, while a full reload is held back by `min_full_gap`, or when nothing
    /// is pending.
    pub fn take(&mut self, now: Duration) -> Option<ReloadPlan> {
        let pending = self.pending.as_ref()?;
        let settled = now >= pending.last + self.config.debounce
            || now >= pending.first + self.config.max_wait;
        if !settled {
            return None;
        }
        let Some(plan) = pending.plan() else {
            self.pending = None;
            return None;
        };
        if plan.full && self.full_held(now) {
            return None;
        }
        if plan.full {
            self.last_full = Some(now);
        }
        self.pending = None;
        Some(plan)
    }

    /// Everything pending, at once: no debounce and no full-reload gap. For a promotion, which
    /// reloads anyway and must not leave a nested edit behind (the folder caveat).
    pub fn take_now(&mut self, now: Duration) -> Option<ReloadPlan> {
        let plan = self.pending.take()?.plan()?;
        if plan.full {
            self.last_full = Some(now);
        }
        Some(plan)
    }

    fn full_held(&self, now: Duration) -> bool {
        self.last_full
            .is_some_and(|last| now < last + self.config.min_full_gap)
    }

    /// When [`Batcher::take`] may next return a plan (`None`: nothing is pending). A caller sleeps
    /// until then, or until new changes arrive.
    pub fn next_due(&self) -> Option<Duration> {
        let pending = self.pending.as_ref()?;
        let settled =
            (pending.last + self.config.debounce).min(pending.first + self.config.max_wait);
        let full = pending.plan().is_some_and(|p| p.full);
        Some(match (full, self.last_full) {
            (true, Some(last)) => settled.max(last + self.config.min_full_gap),
            _ => settled,
        })
    }
}

#[cfg(test)]
mod take_now_tests {
    use super::*;

    #[test]
    fn take_now_ignores_debounce_and_the_full_gap() {
        let mut b = Batcher::new(BatchConfig::new(Duration::from_secs(5)));
        b.force_full(Duration::ZERO, "x");
        assert!(b.take(Duration::from_secs(6)).unwrap().full);
        b.push(
            Duration::from_secs(7),
            [Change::item(ChangeKind::Added, "new")],
        );
        b.push(
            Duration::from_secs(7),
            [Change::item(ChangeKind::Modified, "F/b")],
        );
        assert_eq!(b.take(Duration::from_secs(7)), None, "debounced");
        let plan = b.take_now(Duration::from_secs(7)).unwrap();
        assert!(plan.full);
        assert_eq!(plan.items, vec!["F/b"]);
        assert!(!b.is_pending());
        assert_eq!(b.take_now(Duration::from_secs(8)), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn batcher() -> Batcher {
        Batcher::new(BatchConfig {
            debounce: 500 * MS,
            min_full_gap: s(10.0),
            max_wait: s(30.0),
        })
    }

    fn edited(name: &str) -> Change {
        Change::item(ChangeKind::Modified, name)
    }
    fn added(name: &str) -> Change {
        Change::item(ChangeKind::Added, name)
    }
    fn removed(name: &str) -> Change {
        Change::item(ChangeKind::Removed, name)
    }
    fn global(kind: ChangeKind, path: &str) -> Change {
        Change::global(kind, path)
    }

    /// Pushes at `at`, takes after the debounce.
    fn plan_of(changes: Vec<Change>) -> Option<ReloadPlan> {
        let mut b = batcher();
        b.push(s(1.0), changes);
        b.take(s(2.0))
    }

    #[test]
    fn nothing_pending_no_plan() {
        let mut b = batcher();
        assert_eq!(b.take(s(100.0)), None);
        assert_eq!(b.next_due(), None);
        b.push(s(1.0), vec![]);
        assert!(!b.is_pending());
    }

    #[test]
    fn only_edits_give_per_item_reloads() {
        let plan = plan_of(vec![edited("app"), edited("F/b"), edited("app")]).unwrap();
        assert!(!plan.full);
        assert_eq!(plan.items, vec!["F/b", "app"]);
        assert_eq!(
            plan.reasons,
            vec![
                "jobs/app/config.xml edited",
                "jobs/F/jobs/b/config.xml edited"
            ]
        );
        assert_eq!(
            plan.to_string(),
            "reload 2 items (F/b, app): jobs/app/config.xml edited; \
             jobs/F/jobs/b/config.xml edited"
        );
    }

    #[test]
    fn an_added_item_gives_a_full_reload() {
        let plan = plan_of(vec![added("new-job")]).unwrap();
        assert!(plan.full);
        assert!(plan.items.is_empty());
        assert_eq!(plan.reasons, vec!["job new-job added"]);
        assert_eq!(plan.to_string(), "full reload: job new-job added");
    }

    #[test]
    fn a_removed_top_level_item_gives_a_full_reload() {
        let plan = plan_of(vec![removed("old")]).unwrap();
        assert!(plan.full);
        assert!(plan.items.is_empty());
        assert_eq!(plan.full_why, ["a top-level item was added or removed"]);
    }

    #[test]
    fn a_removed_nested_item_reloads_its_folder_only() {
        // A folder's reload drops the children whose directory is gone.
        let plan = plan_of(vec![removed("F/old")]).unwrap();
        assert!(!plan.full);
        assert_eq!(plan.items, ["F"]);
    }

    #[test]
    fn a_rename_reloads_the_folder_or_everything_at_the_top() {
        let plan = plan_of(vec![removed("F/old"), added("F/new")]).unwrap();
        assert!(!plan.full);
        assert_eq!(plan.items, ["F"], "the folder reads the new name fresh");
        let plan = plan_of(vec![removed("old"), added("new")]).unwrap();
        assert!(plan.full);
        assert!(plan.items.is_empty(), "the new name is loaded fresh");
    }

    #[test]
    fn global_config_nodes_and_users_give_a_full_reload() {
        for path in [
            "config.xml",
            "nodes/agent1/config.xml",
            "users/users.xml",
            "users/alice_123/config.xml",
        ] {
            for kind in [ChangeKind::Added, ChangeKind::Modified, ChangeKind::Removed] {
                let plan = plan_of(vec![global(kind, path)]).unwrap();
                assert!(plan.full, "{path} {kind:?}");
                assert!(plan.items.is_empty());
                assert!(plan.restart_needed.is_empty());
            }
        }
    }

    #[test]
    fn credentials_and_plugin_files_need_a_restart_not_a_reload() {
        for path in ["credentials.xml", "hudson.plugins.git.GitTool.xml"] {
            for kind in [ChangeKind::Added, ChangeKind::Modified, ChangeKind::Removed] {
                let plan = plan_of(vec![global(kind, path)]).unwrap();
                assert!(
                    !plan.full,
                    "{path} {kind:?}: a full reload does not read it"
                );
                assert!(plan.items.is_empty());
                assert_eq!(plan.restart_needed, [path]);
                assert_eq!(
                    plan.to_string(),
                    format!(
                        "no reload applies {path} (a restart of Jenkins does): {path} {}",
                        kind_verb(kind)
                    )
                );
            }
        }
    }

    fn kind_verb(kind: ChangeKind) -> &'static str {
        match kind {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "edited",
            ChangeKind::Removed => "removed",
        }
    }

    #[test]
    fn moved_build_records_give_per_item_reloads() {
        let plan = plan_of(vec![Change::builds("app"), Change::builds("F/b")]).unwrap();
        assert!(!plan.full);
        assert_eq!(plan.items, ["F/b", "app"]);
        assert_eq!(plan.reasons, ["job app built", "job F/b built"]);
        // A job new in the batch is loaded with its builds by what loads it.
        let plan = plan_of(vec![added("F/new"), Change::builds("F/new")]).unwrap();
        assert_eq!(plan.items, ["F"]);
    }

    #[test]
    fn a_full_reload_keeps_per_item_reloads_for_nested_edits_only() {
        let plan = plan_of(vec![
            edited("top"),
            edited("F/b"),
            edited("F/G/c"),
            global(ChangeKind::Modified, "config.xml"),
        ])
        .unwrap();
        assert!(plan.full);
        assert_eq!(
            plan.items,
            vec!["F/G/c", "F/b"],
            "top is re-read by the full reload"
        );
        assert_eq!(
            plan.to_string(),
            "full reload, then reload 2 nested items (F/G/c, F/b): jobs/top/config.xml edited; \
             jobs/F/jobs/b/config.xml edited; jobs/F/jobs/G/jobs/c/config.xml edited; \
             config.xml edited"
        );
    }

    #[test]
    fn items_added_in_the_batch_need_no_per_item_reload() {
        let plan = plan_of(vec![added("F/new"), edited("F/new"), edited("F/old")]).unwrap();
        assert!(!plan.full);
        assert_eq!(plan.items, vec!["F", "F/old"], "F reads F/new fresh");
    }

    #[test]
    fn items_removed_in_the_batch_are_not_reloaded() {
        let plan = plan_of(vec![edited("F/gone"), removed("F/gone"), edited("F/b")]).unwrap();
        assert!(!plan.full);
        assert_eq!(plan.items, vec!["F", "F/b"], "F drops F/gone");
    }

    #[test]
    fn a_nested_item_replaced_within_the_batch_is_reloaded_after_the_full_reload() {
        // Jenkins still holds the old object under that name, which a folder keeps.
        let plan = plan_of(vec![removed("F/x"), added("F/x"), removed("y"), added("y")]).unwrap();
        assert!(plan.full);
        assert_eq!(plan.items, vec!["F/x"]);
    }

    #[test]
    fn an_item_added_and_removed_within_the_batch_cancels_out() {
        let mut b = batcher();
        b.push(s(1.0), vec![added("tmp"), removed("tmp")]);
        assert_eq!(b.take(s(2.0)), None);
        assert!(!b.is_pending());
    }

    #[test]
    fn debounce_waits_for_quiet() {
        let mut b = batcher();
        b.push(s(1.0), vec![edited("a")]);
        assert_eq!(b.take(s(1.2)), None);
        b.push(s(1.4), vec![edited("b")]);
        assert_eq!(b.next_due(), Some(s(1.9)));
        assert_eq!(b.take(s(1.7)), None, "quiet only since 1.4");
        let plan = b.take(s(1.9)).unwrap();
        assert_eq!(plan.items, vec!["a", "b"]);
        assert_eq!(b.take(s(5.0)), None, "cleared");
    }

    #[test]
    fn endless_churn_does_not_starve_the_plan() {
        let mut b = batcher();
        let mut plans = 0;
        let mut t = 0.0;
        while t < 31.0 {
            b.push(s(t), vec![edited("a")]);
            if b.take(s(t)).is_some() {
                plans += 1;
                assert!(t >= 30.0, "the plan came at {t}");
            }
            t += 0.1;
        }
        assert_eq!(plans, 1);
    }

    #[test]
    fn full_reloads_are_rate_limited_and_held_changes_merge() {
        let mut b = batcher();
        b.push(s(0.0), vec![added("a")]);
        assert!(b.take(s(1.0)).unwrap().full);
        b.push(s(2.0), vec![added("b")]);
        b.push(s(3.0), vec![edited("F/x")]);
        assert_eq!(b.next_due(), Some(s(11.0)));
        assert_eq!(
            b.take(s(4.0)),
            None,
            "held: the last full reload was at 1.0"
        );
        assert_eq!(b.take(s(10.9)), None);
        let plan = b.take(s(11.0)).unwrap();
        assert!(plan.full);
        assert_eq!(plan.items, vec!["F/x"]);
        assert_eq!(
            plan.reasons,
            vec!["job b added", "jobs/F/jobs/x/config.xml edited"]
        );
    }

    #[test]
    fn per_item_plans_are_not_held_by_the_full_gap() {
        let mut b = batcher();
        b.push(s(0.0), vec![added("a")]);
        assert!(b.take(s(1.0)).unwrap().full);
        b.push(s(2.0), vec![edited("a")]);
        let plan = b.take(s(2.5)).unwrap();
        assert!(!plan.full);
        assert_eq!(plan.items, vec!["a"]);
    }

    #[test]
    fn a_burst_of_five_thousand_changes_gives_a_handful_of_full_reloads() {
        let mut b = batcher();
        let mut plans = Vec::new();
        let mut seen_nested = std::collections::BTreeSet::new();
        // 5,000 changes over 60 s: every 12 ms, a mix of nested edits, adds and global edits.
        for i in 0..5000u32 {
            let now = Duration::from_millis(u64::from(i) * 12);
            let change = match i % 10 {
                0 => added(&format!("new-{i}")),
                1 => global(ChangeKind::Modified, "config.xml"),
                _ => edited(&format!("F/job-{}", i % 200)),
            };
            b.push(now, vec![change]);
            if let Some(plan) = b.take(now) {
                plans.push((now, plan));
            }
        }
        // Then the daemon keeps ticking until the queue drains.
        let mut now = Duration::from_millis(5000 * 12);
        while b.is_pending() {
            now += 100 * MS;
            if let Some(plan) = b.take(now) {
                plans.push((now, plan));
            }
            assert!(now < s(200.0), "never drained");
        }
        let fulls: Vec<Duration> = plans
            .iter()
            .filter(|(_, p)| p.full)
            .map(|(t, _)| *t)
            .collect();
        assert!(
            (1..=7).contains(&fulls.len()),
            "{} full reloads at {fulls:?}",
            fulls.len()
        );
        for pair in fulls.windows(2) {
            assert!(pair[1] - pair[0] >= s(10.0), "{fulls:?}");
        }
        for (_, plan) in &plans {
            seen_nested.extend(plan.items.iter().cloned());
            assert!(plan.reasons.len() <= MAX_REASONS + 1);
        }
        // No nested edit was lost: i % 200 for the i with i % 10 >= 2.
        assert_eq!(seen_nested.len(), 160);
    }

    #[test]
    fn item_not_loaded_forces_a_full_reload() {
        let mut b = batcher();
        b.item_not_loaded(s(1.0), "F/new");
        let plan = b.take(s(2.0)).unwrap();
        assert!(plan.full);
        assert_eq!(
            plan.reasons,
            vec!["job F/new is not loaded in Jenkins (404 on its reload)"]
        );
    }

    #[test]
    fn reasons_are_capped_and_counted() {
        let changes: Vec<Change> = (0..30).map(|i| edited(&format!("j{i:02}"))).collect();
        let plan = plan_of(changes).unwrap();
        assert_eq!(plan.items.len(), 30);
        assert_eq!(plan.reasons.len(), MAX_REASONS + 1);
        assert_eq!(plan.reasons.last().unwrap(), "and 10 more changes");
    }

    #[test]
    fn defaults() {
        let c = BatchConfig::new(500 * MS);
        assert_eq!(c.min_full_gap, s(10.0));
        assert_eq!(c.max_wait, s(30.0));
        assert_eq!(BatchConfig::new(s(60.0)).max_wait, s(60.0));
    }
}
