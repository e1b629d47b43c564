//! Carries out what the decision asks of the local Jenkins, and reports how far it got.
//!
//! It decides nothing: the core says which [`Mode`] Jenkins must be in, whether to fence the
//! other nodes' Jenkins and whether to run `jenkins.restart_command`; this task does it and
//! reports progress in [`JenkinsState`] (the catch-up phase, the last full reload, the fencing,
//! quiet-down), which the next observation carries back to the core. Health checks run in their
//! own task ([`super::health`]) and never wait behind anything done here.
//!
//! - `Standby`: quiet-down, asserted once per JVM (a restart forgets it; `X-Jenkins-Session`
//!   tells), and the standby follows JENKINS_HOME: the watcher's plans become per-item or full
//!   reloads, build records included, so that its Jenkins stays current. While it cannot tell
//!   what its Jenkins has loaded (the sidecar started while Jenkins already ran), it checks the
//!   items one by one in the background. It cancels queued builds the live active certainly
//!   built. `prepare`: a switchover hands us a term; catch up now, still quiet.
//! - `Promote`: still quiet; catch up with the disk (first pass: per-item reloads, or a full
//!   reload when the core's [`catch_up_kind`] says so), then, once the other nodes' Jenkins are
//!   fenced, a final pass that re-reads whatever the old active wrote until then, and cancels
//!   the queued builds the old active already built.
//! - `Active`: out of quiet-down once per term and JVM, never after the lease's deadline; or
//!   quiet while a switchover drains it, counting its running builds.
//!
//! The standby's steady state makes no authenticated call at all: each one makes Jenkins write
//! `users/<id>/apiTokenStats.xml` into the shared home.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::health::Checks;
use super::live::Live;
use super::metrics::Metrics;
use crate::core::catch_up::{
    catch_up_kind, stale_next_numbers, triage, CatchUpKind, DiskBuilds, Knowledge, ListedItem,
    QueueWatch, QueuedBuild,
};
use crate::core::{CatchUpObs, CatchUpPhase, FullReloadObs, Mono, ReloadPurpose};
use crate::io::build_numbers;
use crate::io::clock;
use crate::io::jenkins::{JenkinsClient, JenkinsError};
use crate::io::lease::unix_ms;
use crate::io::watch::{BatchConfig, HomeWatch, ReloadPlan, WatchConfig};
use crate::lock;
use crate::status::{PromotionRecord, ReloadRecord, WatchState};

/// Items checked per round while the standby learns what its Jenkins has loaded.
const RESYNC_CHUNK: usize = 50;

/// Clock skew allowed between the hosts when a queued build is matched with the start of the
/// other controller's newest build of that job (the README asks for NTP: skew well under this).
const QUEUE_TOLERANCE_MS: u64 = 50;

/// Threads reading `nextBuildNumber` files at a promotion.
const NUMBER_READERS: usize = 16;

/// The mode the decision wants the local Jenkins in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Starting: leave it as it is. Changes seen on disk meanwhile wait in the watcher.
    Leave,
    /// Keep it in quiet-down and follow JENKINS_HOME; `prepare`: catch up for that handed-over
    /// term. Builds its queue holds that the active already ran are cancelled.
    Standby { prepare: Option<u64> },
    /// Catch up for `term`, still quiet (`prepared`: a switchover did the first pass); the final
    /// pass once `final_pass` (the other nodes' Jenkins are fenced).
    Promote {
        term: u64,
        prepared: bool,
        final_pass: bool,
    },
    /// Out of quiet-down for `term` until `until`; or quiet while `drain`.
    Active { term: u64, until: Mono, drain: bool },
}

/// Everything the decision wants from the Jenkins side this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JenkinsGoal {
    pub mode: Mode,
    /// Quiet every other node's Jenkins for this term (once).
    pub fence: Option<u64>,
    /// Run `jenkins.restart_command` for this JVM (once).
    pub restart: Option<u64>,
}

impl JenkinsGoal {
    /// A goal of just this mode (no fencing, no restart).
    pub fn of(mode: Mode) -> Self {
        JenkinsGoal {
            mode,
            fence: None,
            restart: None,
        }
    }
}

impl Default for JenkinsGoal {
    fn default() -> Self {
        JenkinsGoal {
            mode: Mode::Leave,
            fence: None,
            restart: None,
        }
    }
}

/// What this task knows and did, for the core and for `status`.
#[derive(Debug, Clone, Default)]
pub struct JenkinsState {
    /// Whether Jenkins is in quiet-down, as last set or seen.
    pub quieting_down: Option<bool>,
    /// Running builds, polled while a switchover drains this Jenkins.
    pub busy_executors: Option<u32>,
    pub full_reload: Option<FullReloadObs>,
    pub prepared_for: Option<u64>,
    pub catch_up: Option<CatchUpObs>,
    pub fenced_for: Option<u64>,
    /// Nothing seen on disk waits to be applied.
    pub current: bool,
    pub full_reloads: u64,
    pub item_reloads: u64,
    pub last_reload: Option<ReloadRecord>,
    /// The JENKINS_HOME watcher, once started.
    pub watch: Option<WatchState>,
    pub last_error: Option<String>,
    /// What this node knows of what its Jenkins has loaded.
    pub knowledge: Knowledge,
    /// Files changed on disk that only a restart of this Jenkins applies, and since when.
    pub restart_needed: std::collections::BTreeMap<String, u64>,
    pub last_promotion: Option<PromotionRecord>,
    /// Queued builds cancelled: on the standby (the live active built them) and at promotions.
    pub queue_cancelled: u64,
}

/// What the JENKINS_HOME watcher needs.
pub struct WatchSetup {
    pub home: std::path::PathBuf,
    pub lease_dir: std::path::PathBuf,
    pub config: WatchConfig,
}

/// The quiet-down shape last asserted, and for which JVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asserted {
    Quiet { session: u64 },
    Active { term: u64, session: u64 },
}

/// What the task shares with the rest of the daemon.
#[derive(Clone)]
pub struct Handles {
    /// Where it reports.
    pub state: Arc<Mutex<JenkinsState>>,
    /// The health checks: the JVM's session, and where a reload's start is noted.
    pub checks: Arc<Checks>,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// Wakes the decision loop when something it waits for is done.
    pub wake: Arc<Notify>,
}

/// The task and its handles.
pub struct JenkinsControl {
    client: JenkinsClient,
    /// The other nodes' Jenkins, for fencing.
    peer_clients: Vec<JenkinsClient>,
    state: Arc<Mutex<JenkinsState>>,
    checks: Arc<Checks>,
    interval: Duration,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    asserted: Mutex<Option<Asserted>>,
    /// Items still to check while learning what Jenkins has loaded.
    resync: Mutex<std::collections::VecDeque<String>>,
    /// The JVM (session epoch) last seen, to notice restarts.
    session_seen: Mutex<Option<u64>>,
    /// Jenkins was seen down after the watcher's baseline: once it is up, it loaded the disk
    /// after that baseline, and every later change is in the watcher.
    down_after_baseline: Mutex<bool>,
    /// When the quiet Jenkins' queue was last listed, and what the listings told.
    last_listing: Mutex<Option<std::time::Instant>>,
    queue_watch: Mutex<QueueWatch>,
    /// JENKINS_HOME, when it is watched.
    home: Option<std::path::PathBuf>,
    /// Failures already logged (see [`JenkinsControl::note_error`]).
    warned: Mutex<std::collections::BTreeSet<String>>,
    /// The term whose catch-up ended last, and when (see [`JenkinsControl::settling`]).
    caught_up: Mutex<Option<(u64, std::time::Instant)>>,
}

/// Whether the goal still wants the work started under `at_start` (same mode, same term).
fn same_work(at_start: &Mode, now: &Mode) -> bool {
    match (at_start, now) {
        (Mode::Standby { prepare: a, .. }, Mode::Standby { prepare: b, .. }) => a == b,
        (Mode::Promote { term: a, .. }, Mode::Promote { term: b, .. }) => a == b,
        _ => false,
    }
}

impl JenkinsControl {
    pub fn new(
        client: JenkinsClient,
        peer_clients: Vec<JenkinsClient>,
        interval: Duration,
        handles: Handles,
    ) -> Self {
        JenkinsControl {
            client,
            peer_clients,
            state: handles.state,
            checks: handles.checks,
            interval,
            live: handles.live,
            metrics: handles.metrics,
            wake: handles.wake,
            asserted: Mutex::new(None),
            resync: Mutex::new(Default::default()),
            session_seen: Mutex::new(None),
            down_after_baseline: Mutex::new(false),
            last_listing: Mutex::new(None),
            queue_watch: Mutex::new(QueueWatch::default()),
            home: None,
            warned: Mutex::new(Default::default()),
            caught_up: Mutex::new(None),
        }
    }

    /// The control of the Jenkins a config names, with its own health checks' state and
    /// metrics (no fencing clients): for running the task alone.
    pub fn from_config(
        config: &crate::config::Config,
        state: Arc<Mutex<JenkinsState>>,
        wake: Arc<Notify>,
    ) -> Result<Self, JenkinsError> {
        let client = JenkinsClient::new(
            &config.jenkins.url,
            config.jenkins.user.clone(),
            config
                .jenkins
                .api_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            config.jenkins.timeout,
        )?;
        Ok(Self::new(
            client,
            Vec::new(),
            config.timing.interval,
            Handles {
                state,
                checks: Arc::new(Checks::new()),
                live: Arc::new(Live::new(config)),
                metrics: Arc::new(Metrics::new()),
                wake,
            },
        ))
    }

    fn update(&self, f: impl FnOnce(&mut JenkinsState)) {
        f(&mut lock(&self.state));
    }

    fn snapshot(&self) -> JenkinsState {
        lock(&self.state).clone()
    }

    /// Runs until the goal channel closes. With `watch`, it also watches JENKINS_HOME and
    /// follows its configuration on a standby.
    pub async fn run(mut self, mut goal: watch::Receiver<JenkinsGoal>, watch: Option<WatchSetup>) {
        self.home = watch.as_ref().map(|w| w.home.clone());
        let mut side = JoinSet::new();
        let mut home_watch: Option<HomeWatch> = None;
        let mut starting = JoinSet::new();
        if let Some(setup) = watch {
            // The baseline scan can take a while (or hang with the storage): not on this loop.
            starting.spawn(async move {
                HomeWatch::start(
                    &setup.home,
                    &setup.lease_dir,
                    &setup.config,
                    BatchConfig::new(setup.config.debounce),
                )
                .await
            });
        }
        let mut fence_started = None;
        let mut restart_started = None;
        let mut last_scan = None;
        loop {
            let current = goal.borrow_and_update().clone();
            if current.fence.is_some() && current.fence != fence_started {
                fence_started = current.fence;
                if let Some(term) = current.fence {
                    side.spawn(fence(
                        self.peer_clients.clone(),
                        term,
                        self.state.clone(),
                        self.wake.clone(),
                    ));
                }
            }
            if current.restart.is_some() && current.restart != restart_started {
                restart_started = current.restart;
                side.spawn(run_restart_command(self.live.get().restart_command));
            }
            self.apply(&current.mode, &mut goal, &mut home_watch).await;
            // Only a standby takes plans; the catch-ups of a promotion or of a switchover's
            // preparation flush what waits, and the active wrote its changes itself. What the
            // watcher sees meanwhile waits in its batch.
            // A new active also takes the plans of its first moments: the old master may have
            // written (a user saving a job) until HAProxy moved its users, after the final pass.
            let follow = match goal.borrow().mode {
                Mode::Standby { prepare: None } => true,
                Mode::Active { term, .. } => self.settling(term),
                _ => false,
            };
            tokio::select! {
                changed = goal.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(self.interval) => {}
                Some(_) = side.join_next(), if !side.is_empty() => {}
                Some(started) = starting.join_next(), if !starting.is_empty() => {
                    match started {
                        Ok(Ok(w)) => {
                            tracing::info!("watching JENKINS_HOME: {}", w.reason());
                            self.metrics.set_watch_mode(&w.mode().to_string());
                            home_watch = Some(w);
                        }
                        Ok(Err(e)) => {
                            tracing::error!("the JENKINS_HOME watcher did not start: {e}; the standby will not follow config changes");
                            self.update(|s| s.watch = Some(WatchState { error: Some(e.to_string()), ..Default::default() }));
                        }
                        Err(e) => tracing::error!("the JENKINS_HOME watcher failed to start: {e}"),
                    }
                }
                plan = next_plan(&mut home_watch, follow) => {
                    let mode = goal.borrow().mode.clone();
                    match plan {
                        Ok(plan) => self.follow(plan, &mode, &mut goal, home_watch.as_mut()).await,
                        Err(e) => {
                            tracing::warn!("JENKINS_HOME scan failed: {e}");
                            self.update(|s| {
                                if let Some(w) = s.watch.as_mut() {
                                    w.error = Some(e.to_string());
                                }
                            });
                        }
                    }
                }
            }
            if let Some(w) = &home_watch {
                self.note_watch(w, &mut last_scan);
            }
        }
        side.abort_all();
    }

    /// Publishes the watcher's figures for `status` and metrics.
    fn note_watch(&self, w: &HomeWatch, last_scan: &mut Option<crate::io::watch::ScanStats>) {
        let stats = w.last_stats();
        if stats != *last_scan {
            if let Some(st) = stats {
                self.metrics
                    .watch_scan_seconds
                    .observe(st.duration.as_secs_f64());
            }
            *last_scan = stats;
        }
        self.update(|s| {
            let last_plan = s.watch.as_ref().and_then(|x| x.last_plan.clone());
            s.current = s.knowledge == Knowledge::Known && !w.pending();
            s.watch = Some(WatchState {
                mode: w.mode().to_string(),
                reason: w.reason().to_string(),
                items: w.items(),
                pending: w.pending(),
                last_plan,
                last_scan_ms: stats.map(|st| st.duration.as_secs_f64() * 1000.0),
                files_statted: stats.map(|st| st.files_statted),
                error: w.problems().first().cloned(),
            });
        });
    }

    /// One round of whatever the mode needs. Idempotent: repeated every interval.
    async fn apply(
        &self,
        mode: &Mode,
        goal: &mut watch::Receiver<JenkinsGoal>,
        home_watch: &mut Option<HomeWatch>,
    ) {
        self.track_jvm(home_watch.is_some());
        match mode {
            Mode::Leave => {}
            Mode::Standby { prepare } => {
                self.keep_quiet().await;
                self.watch_queue().await;
                if let Some(term) = prepare {
                    let changed = home_watch.as_ref().is_some_and(|w| w.pending());
                    if changed && self.snapshot().prepared_for == Some(*term) {
                        tracing::info!(
                            "config changed after the switchover's catch-up; catching up again"
                        );
                        self.update(|s| s.prepared_for = None);
                    }
                    if self.snapshot().prepared_for != Some(*term) {
                        tracing::info!(
                            "preparing to take over term {term}: catching up while still quiet"
                        );
                        if self
                            .catch_up(ReloadPurpose::Prepare(*term), mode, goal, home_watch)
                            .await
                        {
                            self.update(|s| s.prepared_for = Some(*term));
                            self.wake.notify_one();
                        }
                    }
                    return;
                }
                self.resync_step(home_watch).await;
            }
            Mode::Promote {
                term,
                prepared,
                final_pass,
            } => {
                self.keep_quiet().await;
                self.watch_queue().await;
                let phase = self
                    .snapshot()
                    .catch_up
                    .filter(|c| c.term == *term)
                    .map(|c| c.phase);
                let first_done = *prepared || phase >= Some(CatchUpPhase::FirstPassDone);
                if !first_done {
                    self.set_phase(*term, CatchUpPhase::Started);
                    if !self
                        .catch_up(ReloadPurpose::Promote(*term), mode, goal, home_watch)
                        .await
                    {
                        return;
                    }
                    self.set_phase(*term, CatchUpPhase::FirstPassDone);
                } else if phase < Some(CatchUpPhase::FirstPassDone) {
                    // Prepared by the switchover: the first pass is behind us, and its record
                    // (made for the term handed over) is this term's promotion.
                    self.set_phase(*term, CatchUpPhase::FirstPassDone);
                    self.update(|s| {
                        if let Some(p) = s.last_promotion.as_mut().filter(|p| p.term < *term) {
                            p.term = *term;
                        }
                    });
                }
                if *final_pass && phase < Some(CatchUpPhase::Done) {
                    self.final_pass(*term, mode, goal, home_watch).await;
                    self.set_phase(*term, CatchUpPhase::Done);
                    *lock(&self.caught_up) = Some((*term, std::time::Instant::now()));
                    tracing::info!("Jenkins caught up for term {term}");
                }
            }
            Mode::Active { term, until, drain } => {
                if *drain {
                    self.assert(Asserted::Quiet { session: 0 }, None).await;
                    match self.client.busy_executors().await {
                        Ok(busy) => self.update(|s| s.busy_executors = Some(busy)),
                        Err(e) => self.note_error(&e),
                    }
                } else {
                    self.assert(
                        Asserted::Active {
                            term: *term,
                            session: 0,
                        },
                        Some(*until),
                    )
                    .await;
                }
            }
        }
    }

    /// Notices a new JVM (its restart applied every file, so what needed a restart no longer
    /// does) and a Jenkins that started after the watcher's baseline (it loaded the disk as the
    /// watcher knows it: nothing to check item by item).
    fn track_jvm(&self, watching: bool) {
        let h = self.checks.snapshot();
        {
            let mut seen = lock(&self.session_seen);
            if seen.is_some_and(|s| s != h.session_epoch) {
                tracing::info!("Jenkins restarted: it read every file again at its start");
                self.update(|s| s.restart_needed.clear());
            }
            *seen = Some(h.session_epoch);
        }
        if !watching || self.snapshot().knowledge == Knowledge::Known {
            return;
        }
        let mut down = lock(&self.down_after_baseline);
        if h.word == "down" {
            *down = true;
        } else if *down && h.word == "up" {
            tracing::info!(
                "Jenkins started after the JENKINS_HOME watcher's baseline: what it loaded is known"
            );
            lock(&self.resync).clear();
            self.update(|s| s.knowledge = Knowledge::Known);
        }
    }

    /// One step of learning what a Jenkins of unknown state has loaded: the top-level items it
    /// has are compared with the disk (a full reload when they differ), then every item is
    /// reloaded, a chunk per round, in the background. Jenkins keeps answering meanwhile.
    async fn resync_step(&self, home_watch: &mut Option<HomeWatch>) {
        let knowledge = self.snapshot().knowledge;
        if knowledge == Knowledge::Known {
            return;
        }
        let Some(w) = home_watch.as_mut() else {
            return;
        };
        let h = self.checks.snapshot();
        if h.word != "up" || h.failures > 0 {
            return;
        }
        if let Knowledge::Unknown(_) = knowledge {
            let Some(names) = w.item_names() else {
                return;
            };
            match self.client.info().await {
                Ok(info) => {
                    let loaded: std::collections::BTreeSet<&str> =
                        info.jobs.iter().map(String::as_str).collect();
                    let on_disk: std::collections::BTreeSet<&str> = names
                        .iter()
                        .filter(|n| !n.contains('/'))
                        .map(String::as_str)
                        .collect();
                    if loaded != on_disk {
                        w.force_full("the top-level items Jenkins has loaded differ from the disk");
                    }
                }
                Err(e) => {
                    self.note_error(&e);
                    return;
                }
            }
            tracing::info!(
                "checking what Jenkins has loaded: {} items, one by one, in the background",
                names.len()
            );
            let left = names.len();
            *lock(&self.resync) = names.into();
            self.update(|s| s.knowledge = Knowledge::Resyncing { left });
        }
        let chunk: Vec<String> = {
            let mut queue = lock(&self.resync);
            let n = queue.len().min(RESYNC_CHUNK);
            queue.drain(..n).collect()
        };
        let (not_loaded, failed) = self.reload_items(&chunk).await;
        for item in &not_loaded {
            w.item_not_loaded(item);
        }
        let left = {
            let mut queue = lock(&self.resync);
            for item in failed.into_iter().rev() {
                queue.push_front(item);
            }
            queue.len()
        };
        if left == 0 {
            tracing::info!("what Jenkins has loaded is known: every item was checked");
            self.update(|s| s.knowledge = Knowledge::Known);
        } else {
            self.update(|s| s.knowledge = Knowledge::Resyncing { left });
        }
    }

    /// On a quiet Jenkins, at most once an interval: lists its queue, reads the queued jobs'
    /// `nextBuildNumber`, and cancels the builds another controller already ran (see
    /// [`QueueWatch`]).
    async fn watch_queue(&self) {
        if self.checks.snapshot().word != "up" {
            return;
        }
        {
            let mut last = lock(&self.last_listing);
            if last.is_some_and(|t| t.elapsed() < self.interval) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let Some(queued) = self.list_queue().await else {
            return;
        };
        let cancel = triage(&queued, QUEUE_TOLERANCE_MS);
        self.log_queue(&queued, &cancel);
        let cancelled = self.cancel_queued(&cancel).await;
        if cancelled > 0 {
            tracing::debug!(
                "cancelled {cancelled} queued build(s) on this quiet Jenkins: another controller ran them"
            );
        }
    }

    /// Lists the queue, reads each queued job's `nextBuildNumber` right after, and returns the
    /// items with what the listings tell; `None` when Jenkins did not answer.
    async fn list_queue(&self) -> Option<Vec<QueuedBuild>> {
        let queue = match self.client.queue().await {
            Ok(queue) => queue,
            Err(e) => {
                self.note_error(&e);
                return None;
            }
        };
        let listed_at = unix_ms();
        let listing: Vec<ListedItem> = queue
            .into_iter()
            .filter_map(|q| {
                Some(ListedItem {
                    id: q.id,
                    job: q.job?,
                    queued_at_ms: q.in_queue_since,
                    requests: q.requests,
                })
            })
            .collect();
        let newest = match (&self.home, listing.is_empty()) {
            (Some(home), false) => {
                let home = home.clone();
                // Back to each item's first request (less a second for the clocks' skew),
                // for as many trigger builds as it folds requests.
                let jobs: Vec<build_numbers::JobQuery> = listing
                    .iter()
                    .map(|i| build_numbers::JobQuery {
                        job: i.job.clone(),
                        since_ms: i.queued_at_ms.saturating_sub(1_000),
                        want: i.requests.max(1),
                    })
                    .collect();
                tokio::task::spawn_blocking(move || {
                    build_numbers::read_newest_builds(&home, &jobs, 4)
                        .into_iter()
                        .map(|(job, b)| {
                            let disk = DiskBuilds {
                                next: b.next,
                                last_started_ms: b.started_ms,
                                trigger_starts_ms: b.trigger_starts_ms,
                            };
                            (job, disk)
                        })
                        .collect()
                })
                .await
                .unwrap_or_default()
            }
            _ => Default::default(),
        };
        Some(lock(&self.queue_watch).observe(&listing, listed_at, &newest))
    }

    fn log_queue(&self, queued: &[QueuedBuild], cancel: &[u64]) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        for q in queued {
            tracing::debug!(
                "queue item {} ({}): {} request(s), the newest after {} and by {}; next build number {:?} then, {:?} now; last build started {:?}: {}",
                q.id,
                q.job,
                q.requests,
                q.newest_after_ms,
                q.newest_by_ms,
                q.next_at_newest,
                q.next_now,
                q.last_build_ms,
                if cancel.contains(&q.id) { "run elsewhere, cancelled" } else { "kept" }
            );
        }
    }

    /// Cancels queued builds; returns how many went.
    async fn cancel_queued(&self, ids: &[u64]) -> usize {
        let mut cancelled = 0;
        for id in ids {
            match self.client.cancel_queue_item(*id).await {
                Ok(true) => cancelled += 1,
                Ok(false) => {}
                Err(e) => self.note_error(&e),
            }
        }
        self.update(|s| s.queue_cancelled += cancelled as u64);
        cancelled
    }

    fn set_phase(&self, term: u64, phase: CatchUpPhase) {
        let changed = self
            .snapshot()
            .catch_up
            .is_none_or(|c| c.term != term || c.phase != phase);
        if changed {
            self.update(|s| s.catch_up = Some(CatchUpObs { term, phase }));
            self.wake.notify_one();
        }
    }

    async fn keep_quiet(&self) {
        self.assert(Asserted::Quiet { session: 0 }, None).await;
    }

    /// Puts Jenkins into quiet-down, or takes it out for a term, once per JVM: quiet-down lives
    /// in Jenkins' memory only, so a new `X-Jenkins-Session` means asking again. Never takes it
    /// out of quiet-down after `until`.
    async fn assert(&self, wanted: Asserted, until: Option<Mono>) {
        let session = self.checks.snapshot().session_epoch;
        let wanted = match wanted {
            Asserted::Quiet { .. } => Asserted::Quiet { session },
            Asserted::Active { term, .. } => Asserted::Active { term, session },
        };
        if *lock(&self.asserted) == Some(wanted) {
            return;
        }
        let quiet = matches!(wanted, Asserted::Quiet { .. });
        if !quiet && until.is_some_and(clock::passed) {
            return;
        }
        let result = if quiet {
            self.client.quiet_down().await
        } else {
            self.client.cancel_quiet_down().await
        };
        match result {
            Ok(()) => {
                *lock(&self.asserted) = Some(wanted);
                self.update(|s| {
                    s.quieting_down = Some(quiet);
                    s.last_error = None;
                });
                lock(&self.warned).clear();
                match wanted {
                    Asserted::Active { term, .. } => {
                        tracing::info!("Jenkins is active for term {term}: quiet-down cancelled")
                    }
                    Asserted::Quiet { .. } => {
                        tracing::info!("Jenkins is in quiet-down: it starts no build")
                    }
                }
            }
            Err(e) => self.note_error(&e),
        }
    }

    /// Whether the new active of `term` is in its first moments (ten intervals after its
    /// catch-up ended), while HAProxy moves the users and the old master may still write.
    fn settling(&self, term: u64) -> bool {
        lock(&self.caught_up).is_some_and(|(t, at)| t == term && at.elapsed() < self.interval * 10)
    }

    /// Records a failed call; each distinct failure is logged once until a quiet-down or its
    /// cancel goes through again (a Jenkins that loads for minutes answers 503 to everything).
    fn note_error(&self, e: &JenkinsError) {
        let text = e.to_string();
        let mut warned = lock(&self.warned);
        if warned.len() >= 64 {
            warned.clear();
        }
        if warned.insert(text.clone()) {
            tracing::warn!("Jenkins: {text}");
        }
        drop(warned);
        self.update(|s| s.last_error = Some(text));
    }

    /// The first pass of a catch-up (a promotion's, or a switchover's preparation): what waits
    /// in the watcher (and what is left of a check item by item), applied the way the core's
    /// [`catch_up_kind`] says: per-item reloads only (Jenkins keeps answering; the time does not
    /// grow with the home), or a full reload. False when it did not end.
    async fn catch_up(
        &self,
        purpose: ReloadPurpose,
        mode: &Mode,
        goal: &mut watch::Receiver<JenkinsGoal>,
        home_watch: &mut Option<HomeWatch>,
    ) -> bool {
        let started = std::time::Instant::now();
        let term = match purpose {
            ReloadPurpose::Promote(t) | ReloadPurpose::Prepare(t) => t,
            _ => 0,
        };
        // A promotion serves users after this first pass: it takes what the watcher's scans
        // found so far (a scan of 10,000 jobs on NFS takes seconds), and the final pass scans.
        // A switchover's preparation runs while the old master serves: it scans first.
        let scan = !matches!(purpose, ReloadPurpose::Promote(_));
        let pending = self.flush_watch(home_watch, scan).await;
        let (full_why, mut items) = match &pending {
            Some(plan) => {
                self.note_restart_needed(plan);
                (plan.full_why.clone(), plan.items.clone())
            }
            None => (Vec::new(), Vec::new()),
        };
        let knowledge = self.snapshot().knowledge;
        let kind = catch_up_kind(&knowledge, &full_why, items.len());
        let what = match purpose {
            ReloadPurpose::Prepare(_) => "preparing the switchover",
            _ => "promoting Jenkins",
        };
        tracing::info!("{what} for term {term}: {}", kind.describe());
        let done = match &kind {
            CatchUpKind::Items { .. } => {
                // What is left of a check item by item goes along.
                let left: Vec<String> = lock(&self.resync).drain(..).collect();
                items.extend(left);
                items.sort();
                items.dedup();
                let (not_loaded, failed) = self.reload_items(&items).await;
                if not_loaded.is_empty() && failed.is_empty() {
                    if let ReloadPurpose::Promote(term) = purpose {
                        // Jenkins serves nothing stale from here.
                        self.set_phase(term, CatchUpPhase::Current);
                    }
                    true
                } else {
                    // An item Jenkins has not loaded (404) only a full reload loads; one that
                    // failed must not be left stale: fall back to the full reload.
                    let why = not_loaded
                        .first()
                        .map(|i| format!("{i} is not loaded in Jenkins (404 on its reload)"))
                        .or_else(|| failed.first().map(|i| format!("the reload of {i} failed")))
                        .unwrap_or_default();
                    tracing::warn!("{what} for term {term}: falling back to a full reload: {why}");
                    self.full_catch_up(purpose, mode, goal, home_watch, &items)
                        .await
                }
            }
            CatchUpKind::Full { .. } => {
                self.full_catch_up(purpose, mode, goal, home_watch, &items)
                    .await
            }
        };
        if done {
            lock(&self.resync).clear();
            self.update(|s| {
                s.knowledge = Knowledge::Known;
                if term > 0 {
                    s.last_promotion = Some(PromotionRecord {
                        term,
                        kind: match kind {
                            CatchUpKind::Items { .. } => "incremental".into(),
                            CatchUpKind::Full { .. } => "full".into(),
                        },
                        detail: kind.describe(),
                        took_ms: started.elapsed().as_millis() as u64,
                        builds_after_ms: None,
                        started_unix_ms: unix_ms()
                            .saturating_sub(started.elapsed().as_millis() as u64),
                        cancelled_queued: 0,
                        renumbered: 0,
                    });
                }
            });
            self.metrics.promotion(match kind {
                CatchUpKind::Items { .. } => "incremental",
                CatchUpKind::Full { .. } => "full",
            });
        }
        done
    }

    /// The full-reload catch-up: the nested items first (a full reload keeps the folder
    /// children it already has, and users may be sent here as soon as the full reload begins),
    /// then `POST /reload`, the wait until it is over, and the nested items edited meanwhile.
    async fn full_catch_up(
        &self,
        purpose: ReloadPurpose,
        mode: &Mode,
        goal: &mut watch::Receiver<JenkinsGoal>,
        home_watch: &mut Option<HomeWatch>,
        items: &[String],
    ) -> bool {
        let mut nested: Vec<String> = items.iter().filter(|i| i.contains('/')).cloned().collect();
        self.reload_items(&nested).await;
        let kind = match purpose {
            ReloadPurpose::Promote(_) => "full (promotion)",
            ReloadPurpose::Prepare(_) => "full (switchover)",
            _ => "full",
        };
        if !self.full_reload(kind, purpose, mode, goal).await {
            return false;
        }
        if let Some(plan) = self.flush_watch(home_watch, true).await {
            self.note_restart_needed(&plan);
            for item in plan.items {
                if !nested.contains(&item) {
                    nested.push(item);
                }
            }
        }
        self.reload_items(&nested).await;
        true
    }

    /// The final pass of a promotion, once the other nodes' Jenkins are fenced: whatever the old
    /// active wrote until then (build records above all), then the queued builds it had built
    /// already are cancelled, so that `cancelQuietDown` starts only fires it never ran.
    async fn final_pass(
        &self,
        term: u64,
        mode: &Mode,
        goal: &mut watch::Receiver<JenkinsGoal>,
        home_watch: &mut Option<HomeWatch>,
    ) {
        if let Some(plan) = self.flush_watch(home_watch, true).await {
            self.note_restart_needed(&plan);
            // A full reload when the plan needs one, or when an item reload met an item its
            // Jenkins does not have (only a full reload discovers it).
            let full = if plan.full {
                tracing::info!(
                    "term {term}: the final pass needs a full reload: {}",
                    plan.full_why.join("; ")
                );
                true
            } else {
                !self.reload_items(&plan.items).await.0.is_empty()
            };
            if full {
                self.full_catch_up(
                    ReloadPurpose::Promote(term),
                    mode,
                    goal,
                    home_watch,
                    &plan.items,
                )
                .await;
            }
        }
        let renumbered = self.check_next_numbers(term, home_watch).await;
        let cancelled = self.triage_queue().await;
        if cancelled > 0 {
            tracing::info!(
                "term {term}: cancelled {cancelled} queued build(s) the old active had already run"
            );
        }
        self.update(|s| {
            if let Some(p) = s.last_promotion.as_mut().filter(|p| p.term == term) {
                p.cancelled_queued = cancelled;
                p.renumbered = renumbered;
                p.builds_after_ms = Some(unix_ms().saturating_sub(p.started_unix_ms));
            }
        });
    }

    /// The promotion's last check before builds start: every job's `nextBuildNumber`, read by
    /// content (fresh even where `stat` is cached), against the numbers its Jenkins has in
    /// memory; a job behind gets a per-item reload (see
    /// [`crate::core::catch_up::stale_next_numbers`]). Returns how many.
    async fn check_next_numbers(&self, term: u64, home_watch: &mut Option<HomeWatch>) -> usize {
        let (Some(home), Some(items)) = (
            self.home.clone(),
            home_watch.as_ref().and_then(HomeWatch::item_names),
        ) else {
            tracing::warn!(
                "term {term}: the next build numbers were not checked (JENKINS_HOME is not watched)"
            );
            return 0;
        };
        let started = std::time::Instant::now();
        let depth = items
            .iter()
            .map(|i| i.matches('/').count())
            .max()
            .unwrap_or(0);
        let count = items.len();
        let on_disk = match tokio::task::spawn_blocking(move || {
            build_numbers::read_next_numbers(&home, &items, NUMBER_READERS)
        })
        .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("term {term}: reading the next build numbers failed: {e}");
                return 0;
            }
        };
        for (job, why) in on_disk.unreadable.iter().take(5) {
            tracing::warn!("term {term}: the next build number of {job}: {why}");
        }
        let in_memory = match self.client.next_build_numbers(depth).await {
            Ok(numbers) => numbers,
            Err(e) => {
                tracing::warn!(
                    "term {term}: could not read the next build numbers Jenkins has loaded: {e}"
                );
                return 0;
            }
        };
        let stale = stale_next_numbers(&on_disk.numbers, &in_memory);
        if stale.is_empty() {
            tracing::info!(
                "term {term}: next build numbers checked: {} jobs of {count} items, none behind the disk ({} ms)",
                on_disk.numbers.len(),
                started.elapsed().as_millis()
            );
            return 0;
        }
        tracing::info!(
            "term {term}: {} job(s) were built elsewhere since this Jenkins loaded them and no stamp showed it yet (the file system's attribute cache): reloading {}",
            stale.len(),
            summarize(&stale)
        );
        let (_, failed) = self.reload_items(&stale).await;
        if !failed.is_empty() {
            tracing::warn!(
                "term {term}: {} job(s) could not be reloaded; their next build may reuse a number: {}",
                failed.len(),
                summarize(&failed)
            );
        }
        stale.len() - failed.len()
    }

    /// At promotion: the queued builds whose fire the old active built (see
    /// [`crate::core::catch_up::triage`]) are cancelled. Returns how many.
    async fn triage_queue(&self) -> usize {
        let Some(queued) = self.list_queue().await else {
            tracing::warn!("the queue could not be read before leaving quiet-down");
            return 0;
        };
        let cancel = triage(&queued, QUEUE_TOLERANCE_MS);
        self.log_queue(&queued, &cancel);
        self.cancel_queued(&cancel).await
    }

    /// Remembers the files of a plan that only a restart applies, and since when.
    fn note_restart_needed(&self, plan: &ReloadPlan) {
        if plan.restart_needed.is_empty() {
            return;
        }
        let now = unix_ms();
        self.update(|s| {
            for file in &plan.restart_needed {
                if !s.restart_needed.contains_key(file) {
                    tracing::warn!(
                        "{file} changed on disk: no reload applies it, only a restart of this node's Jenkins"
                    );
                    s.restart_needed.insert(file.clone(), now);
                }
            }
        });
    }

    /// Scans JENKINS_HOME now and takes every pending change, within a bound (storage may
    /// hang).
    async fn flush_watch(
        &self,
        home_watch: &mut Option<HomeWatch>,
        scan: bool,
    ) -> Option<ReloadPlan> {
        let w = home_watch.as_mut()?;
        let plan = if scan {
            // A scan of a large home on NFS takes seconds: give it three times the last one.
            let last = w.last_stats().map(|s| s.duration).unwrap_or_default();
            let bound = (self.interval * 4)
                .max(Duration::from_secs(2))
                .max(last * 3);
            match tokio::time::timeout(bound, w.flush()).await {
                Ok(Ok(plan)) => plan,
                Ok(Err(e)) => {
                    tracing::warn!("JENKINS_HOME scan before the catch-up failed: {e}");
                    w.take_pending()
                }
                Err(_) => {
                    tracing::warn!(
                        "JENKINS_HOME scan before the catch-up did not finish in {bound:?}; going on with what earlier scans found"
                    );
                    w.take_pending()
                }
            }
        } else {
            w.take_pending()
        };
        if let Some(plan) = &plan {
            tracing::info!("applying pending JENKINS_HOME changes: {plan}");
        }
        plan
    }

    /// Per-item reloads (`POST /job/.../reload`), in order (a folder before its children).
    /// Returns the items Jenkins has not loaded (404: new ones, which only a full reload or
    /// their folder's reload picks up), and those whose reload failed otherwise.
    async fn reload_items(&self, items: &[String]) -> (Vec<String>, Vec<String>) {
        let mut not_loaded = Vec::new();
        let mut failed = Vec::new();
        for item in items {
            let started = std::time::Instant::now();
            match self.client.reload_item(item).await {
                Ok(()) => {
                    let took = started.elapsed();
                    self.metrics.reload("item", took.as_secs_f64());
                    self.update(|s| {
                        s.item_reloads += 1;
                        s.last_reload = Some(ReloadRecord {
                            kind: format!("item {item}"),
                            at_unix_ms: unix_ms(),
                            duration_ms: took.as_millis() as u64,
                            result: "ok".into(),
                        });
                    });
                }
                Err(JenkinsError::ItemNotLoaded { .. }) => not_loaded.push(item.clone()),
                Err(e) => {
                    tracing::warn!("reload of {item} failed: {e}");
                    failed.push(item.clone());
                }
            }
        }
        (not_loaded, failed)
    }

    /// `POST /reload`, then the wait until Jenkins serves again. True once it is over. The wait
    /// is abandoned when the goal no longer wants this work (the reload itself goes on in
    /// Jenkins; the core follows it through the health checks). Whether a reload that runs too
    /// long has failed is the core's to decide.
    async fn full_reload(
        &self,
        kind: &str,
        purpose: ReloadPurpose,
        mode: &Mode,
        goal: &mut watch::Receiver<JenkinsGoal>,
    ) -> bool {
        let started = std::time::Instant::now();
        let asked_at = clock::now();
        let record = |result: String| ReloadRecord {
            kind: kind.into(),
            at_unix_ms: unix_ms(),
            duration_ms: started.elapsed().as_millis() as u64,
            result,
        };
        if let Err(e) = self.client.reload().await {
            tracing::warn!("{kind} reload could not be asked for: {e}");
            self.update(|s| s.last_reload = Some(record(format!("error: {e}"))));
            return false;
        }
        self.checks.reload_accepted(asked_at);
        self.update(|s| {
            s.full_reloads += 1;
            s.full_reload = Some(FullReloadObs {
                purpose,
                asked_at,
                accepted: true,
            });
            if let ReloadPurpose::Promote(term) | ReloadPurpose::Prepare(term) = purpose {
                // From here Jenkins answers 503 until it serves the reloaded configuration.
                s.catch_up = Some(CatchUpObs {
                    term,
                    phase: CatchUpPhase::Current,
                });
            }
        });
        self.wake.notify_one();
        let still_wanted = async {
            loop {
                if goal.changed().await.is_err() {
                    return;
                }
                if !same_work(mode, &goal.borrow().mode) {
                    return;
                }
            }
        };
        // The wait is bounded a little past the reload timeout: by then the core has marked
        // this Jenkins broken, and waiting longer serves nothing.
        let bound = self.live.get().reload_timeout + self.interval * 2;
        let poll = Duration::from_millis(100);
        let ended = tokio::select! {
            ready = self.client.wait_ready(bound, poll) => ready,
            _ = still_wanted => {
                tracing::info!("{kind} reload: no longer waiting for it, the role changed (Jenkins goes on reloading)");
                self.update(|s| s.last_reload = Some(record("abandoned: the role changed".into())));
                return false;
            }
        };
        match ended {
            Ok(took) => {
                tracing::info!("{kind} reload done in {:.1} s", took.as_secs_f64());
                self.metrics.reload(kind, started.elapsed().as_secs_f64());
                self.update(|s| s.last_reload = Some(record("ok".into())));
                self.wake.notify_one();
                true
            }
            Err(e) => {
                tracing::error!("{kind} reload did not end: {e}");
                self.update(|s| {
                    s.last_reload =
                        Some(record("failed: still 503 after the reload timeout".into()))
                });
                self.wake.notify_one();
                false
            }
        }
    }

    /// Carries out a reload plan on a standby; the active wrote those changes itself.
    async fn follow(
        &self,
        plan: ReloadPlan,
        mode: &Mode,
        goal: &mut watch::Receiver<JenkinsGoal>,
        home_watch: Option<&mut HomeWatch>,
    ) {
        let note = |what: String| {
            self.update(|s| {
                if let Some(w) = s.watch.as_mut() {
                    w.last_plan = Some(what);
                }
            })
        };
        self.note_restart_needed(&plan);
        if let Mode::Active { term, .. } = mode {
            // Settling after a promotion: per-item reloads only (a full reload would make the
            // Jenkins users were just sent to answer 503 for as long as it takes).
            if plan.full {
                tracing::warn!(
                    "term {term}: JENKINS_HOME changed right after the promotion in a way only a full reload applies ({}); not applied on the active: a switchover applies it",
                    plan.full_why.join("; ")
                );
            }
            if !plan.items.is_empty() {
                tracing::info!(
                    "term {term}: the old master wrote until users moved: reloading {}",
                    summarize(&plan.items)
                );
                self.reload_items(&plan.items).await;
            }
            note(format!("applied while settling: {plan}"));
            return;
        }
        if let Mode::Standby {
            prepare: Some(term),
            ..
        } = mode
        {
            // A switchover prepares us: make sure its catch-up sees these changes too.
            if self.snapshot().prepared_for == Some(*term) {
                tracing::info!(
                    "config changed after the switchover's catch-up ({plan}); catching up again"
                );
                self.update(|s| s.prepared_for = None);
            }
            // The edited items are re-read now (still quiet, not routed); a full reload, if
            // the catch-up runs one, keeps what they read.
            self.reload_items(&plan.items).await;
            note(format!("folded into the switchover's catch-up: {plan}"));
            return;
        }
        if !plan.full && plan.items.is_empty() {
            note(format!("not applied: {plan}"));
            return;
        }
        tracing::info!("standby follows JENKINS_HOME: {plan}");
        // Quiet-down first: a reload must never give a standby the chance to start builds.
        self.keep_quiet().await;
        if plan.full
            && !self
                .full_reload("full", ReloadPurpose::Follow, mode, goal)
                .await
        {
            // Abandoned or not asked: the changes go back to the watcher, for the next plan or
            // a promotion's flush. (A reload that never ends makes Jenkins broken; a restarted
            // Jenkins reads everything from disk.)
            if let Some(w) = home_watch {
                w.requeue(&plan);
            }
            note(format!("full reload did not finish: {plan}"));
            return;
        }
        let (not_loaded, failed) = self.reload_items(&plan.items).await;
        if let Some(w) = home_watch {
            for item in &not_loaded {
                tracing::info!(
                    "{item} is not loaded in Jenkins yet: a full reload will pick it up"
                );
                w.item_not_loaded(item);
            }
            // Not left stale: they come again with the next plan.
            w.retry_items(&failed);
        }
        note(format!("applied: {plan}"));
    }
}

/// Up to five names, then how many more.
fn summarize(names: &[String]) -> String {
    let mut text = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}

/// The next plan of the watcher, or never when there is none. Without `hand_out`, the watcher
/// keeps scanning but its changes wait in the batch (only a failed scan is returned).
async fn next_plan(
    watch: &mut Option<HomeWatch>,
    hand_out: bool,
) -> Result<ReloadPlan, crate::io::watch::WatchError> {
    match watch {
        Some(w) if hand_out => w.next_plan().await,
        Some(w) => Err(w.hold_plans().await),
        None => std::future::pending().await,
    }
}

/// Quiets every other node's Jenkins for our new term (fencing a master whose sidecar is frozen
/// or gone), then reports it done, whether each one answered or not.
async fn fence(
    peers: Vec<JenkinsClient>,
    term: u64,
    state: Arc<Mutex<JenkinsState>>,
    wake: Arc<Notify>,
) {
    for peer in &peers {
        match peer.quiet_down().await {
            Ok(()) => tracing::info!(
                "fenced the Jenkins at {} for term {term}: quiet-down",
                peer.base_url()
            ),
            Err(e) => tracing::info!(
                "could not quiet the Jenkins at {} ({e}); it is down or unreachable",
                peer.base_url()
            ),
        }
    }
    lock(&state).fenced_for = Some(term);
    wake.notify_one();
}

/// Runs `jenkins.restart_command` after a failed reload.
pub async fn run_restart_command(restart_command: Option<String>) {
    let Some(cmd) = &restart_command else {
        tracing::warn!("no jenkins.restart_command is set: restart Jenkins by hand");
        return;
    };
    tracing::warn!("running jenkins.restart_command: {cmd}");
    let run = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(300), run).await {
        Ok(Ok(status)) if status.success() => tracing::info!("jenkins.restart_command finished"),
        Ok(Ok(status)) => tracing::error!("jenkins.restart_command exited with {status}"),
        Ok(Err(e)) => tracing::error!("jenkins.restart_command could not start: {e}"),
        Err(_) => tracing::error!("jenkins.restart_command still runs after 300 s; not waiting"),
    }
}
