//! Keeps the local Jenkins in the shape the decision asks for, and measures its health.
//!
//! One task probes Jenkins every interval and follows a [`JenkinsGoal`]:
//! - `Standby`: keep it in quiet-down, re-asserted whenever it drifts (a restart changes
//!   `X-Jenkins-Session` and forgets quiet-down);
//! - `Active`: once per term, promote it: quiet the peer's Jenkins if we can reach it (fencing),
//!   full reload (build history and `nextBuildNumber` may have moved), wait out the 503 window,
//!   then cancel quiet-down, but never after the lease's deadline.
//!
//! A reload that stays 503 past `jenkins.reload_timeout` has failed (real Jenkins stays 503 until
//! restarted): Jenkins is marked unhealthy and never promoted, and `jenkins.restart_command` runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::jenkins::{Health, JenkinsClient, JenkinsError};
use crate::lease::unix_ms;
use crate::metrics::Metrics;
use crate::watch::{BatchConfig, HomeWatch, ReloadPlan};

/// What the JENKINS_HOME watcher needs.
pub struct WatchSetup {
    pub home: std::path::PathBuf,
    pub lease_dir: std::path::PathBuf,
    pub config: crate::config::WatchConfig,
}

/// The next plan of the watcher, or never when there is none. Without `hand_out`, the watcher
/// keeps scanning but its changes wait in the batch (only a failed scan is returned).
async fn next_plan(
    watch: &mut Option<HomeWatch>,
    hand_out: bool,
) -> Result<ReloadPlan, crate::watch::WatchError> {
    match watch {
        Some(w) if hand_out => w.next_plan().await,
        Some(w) => Err(w.hold_plans().await),
        None => std::future::pending().await,
    }
}

/// What the decision wants from the local Jenkins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JenkinsGoal {
    /// Starting: leave it as it is. Changes seen on disk meanwhile wait in the watcher.
    Leave,
    /// Keep it in quiet-down. `prepare`: a switchover hands that term to us; reload now, still
    /// quiet, and report it in [`JenkinsState::prepared_for`].
    Standby { prepare: Option<u64> },
    /// Promote once for `term` (with a full reload unless `reload` is false because a switchover
    /// just prepared it), then keep it out of quiet-down, or in it while `quiet` (a switchover
    /// drains it). Touch nothing after `until` (the lease's deadline).
    Active {
        term: u64,
        until: Instant,
        reload: bool,
        quiet: bool,
    },
}

/// How a reload we started ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadEnd {
    Done,
    Abandoned,
    Failed,
}

/// A finished reload, for `status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReloadRecord {
    pub kind: String,
    pub at_unix_ms: u64,
    pub duration_ms: u64,
    pub result: String,
}

/// What the control task knows about the local Jenkins.
#[derive(Debug, Clone, Default)]
pub struct JenkinsState {
    /// `up`, `down`, `reloading`, `unknown`.
    pub health: &'static str,
    pub failures: u32,
    pub successes: u32,
    pub reload_failed: bool,
    /// A reload we started is running: Jenkins answers 503 on purpose.
    pub promoting: bool,
    pub quieting_down: Option<bool>,
    pub session: Option<String>,
    pub last_error: Option<String>,
    pub promoted_term: Option<u64>,
    /// The term a switchover handed us, once our Jenkins is reloaded for it.
    pub prepared_for: Option<u64>,
    /// The term whose promotion reload Jenkins has been asked for (answered, or failed): from
    /// then on it answers 503 until it serves the reloaded configuration, so HAProxy may send
    /// users to it.
    pub reload_requested_for: Option<u64>,
    /// Running builds, polled while a switchover drains this Jenkins.
    pub busy_executors: Option<u32>,
    pub full_reloads: u64,
    pub item_reloads: u64,
    pub last_reload: Option<ReloadRecord>,
    /// The JENKINS_HOME watcher, once started.
    pub watch: Option<WatchState>,
}

/// The JENKINS_HOME watcher as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WatchState {
    /// `poll` or `inotify`.
    pub mode: String,
    /// Why that mode.
    pub reason: String,
    pub items: usize,
    /// Changes waiting in the batch.
    pub pending: bool,
    /// The last reload plan, as a sentence, and what became of it.
    pub last_plan: Option<String>,
    pub last_scan_ms: Option<f64>,
    pub files_statted: Option<usize>,
    pub error: Option<String>,
}

impl JenkinsState {
    /// Healthy enough to serve users: up, or in the reload of its own promotion.
    /// The same hysteresis as the decision: fewer than `fall` failed checks in a row still
    /// counts, so one bad check of a flapping Jenkins does not flap `/active` (and HAProxy) too.
    pub fn serving(&self, fall: u32) -> bool {
        !self.reload_failed
            && (self.promoting || (self.successes > 0 || self.failures > 0) && self.failures < fall)
    }
}

/// The task and its shared state.
pub struct JenkinsControl {
    client: JenkinsClient,
    peer_client: Option<JenkinsClient>,
    state: Arc<Mutex<JenkinsState>>,
    interval: Duration,
    fall: u32,
    /// `jenkins.reload_timeout` and `jenkins.restart_command` come from here: SIGHUP may change them.
    live: Arc<Mutex<crate::node::Reloadable>>,
    metrics: Arc<Metrics>,
    /// Wakes the decision loop when the health crosses `fall` or `rise` (no waiting for a tick).
    wake: Arc<tokio::sync::Notify>,
    rise: u32,
}

impl JenkinsControl {
    pub fn new(
        config: &Config,
        state: Arc<Mutex<JenkinsState>>,
        metrics: Arc<Metrics>,
        live: Arc<Mutex<crate::node::Reloadable>>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<Self, JenkinsError> {
        let token = config
            .jenkins
            .api_token
            .as_ref()
            .map(|s| s.expose().to_string());
        let client = JenkinsClient::new(
            &config.jenkins.url,
            config.jenkins.user.clone(),
            token.clone(),
            config.jenkins.timeout,
        )?;
        // Both masters share JENKINS_HOME, hence users and API tokens: the same credentials work there.
        // Fencing may meet a slow Jenkins: give it more time (it runs beside our own reload).
        let peer_client = match &config.peer.jenkins_url {
            Some(url) => Some(JenkinsClient::new(
                url,
                config.jenkins.user.clone(),
                token,
                (config.jenkins.timeout * 3).max(Duration::from_secs(2)),
            )?),
            None => None,
        };
        state.lock().unwrap_or_else(|e| e.into_inner()).health = "unknown";
        Ok(JenkinsControl {
            client,
            peer_client,
            state,
            interval: config.timing.interval,
            fall: config.timing.fall,
            live,
            metrics,
            wake,
            rise: config.timing.rise,
        })
    }

    pub fn client(&self) -> &JenkinsClient {
        &self.client
    }

    fn update(&self, f: impl FnOnce(&mut JenkinsState)) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    fn snapshot(&self) -> JenkinsState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs until the goal channel closes. With `watch`, it also watches JENKINS_HOME and
    /// reloads the standby's Jenkins when its configuration changes on disk.
    pub async fn run(self, mut goal: watch::Receiver<JenkinsGoal>, watch: Option<WatchSetup>) {
        let (started_tx, mut started_rx) = tokio::sync::oneshot::channel();
        let mut home_watch: Option<HomeWatch> = None;
        let mut watch_starting = false;
        if let Some(setup) = watch {
            watch_starting = true;
            // The baseline scan can take a while (or hang with the storage): not on this loop.
            tokio::spawn(async move {
                let result = HomeWatch::start(
                    &setup.home,
                    &setup.lease_dir,
                    &setup.config,
                    BatchConfig::new(setup.config.debounce),
                )
                .await;
                let _ = started_tx.send(result);
            });
        }
        let mut last_scan: Option<crate::watch::ScanStats> = None;
        loop {
            let current = goal.borrow_and_update().clone();
            self.check(&current, &mut goal, &mut home_watch).await;
            // While starting, no plan is taken: what the watcher sees waits in its batch until
            // the goal is known, then a standby follows it and a promotion flushes it. A plan
            // taken now could only be dropped, and the standby would stay stale until the next
            // edit (a lost first claim leaves the goal unknown for an interval).
            let starting = *goal.borrow() == JenkinsGoal::Leave;
            tokio::select! {
                changed = goal.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(self.next_check_in()) => {}
                started = &mut started_rx, if watch_starting => {
                    watch_starting = false;
                    match started {
                        Ok(Ok(w)) => {
                            tracing::info!("watching JENKINS_HOME: {}", w.reason());
                            self.metrics
                                .watch_mode
                                .get_or_create(&crate::metrics::ModeLabel { mode: w.mode().to_string() })
                                .set(1);
                            home_watch = Some(w);
                        }
                        Ok(Err(e)) => {
                            tracing::error!("the JENKINS_HOME watcher did not start: {e}; the standby will not follow config changes");
                            self.update(|s| s.watch = Some(WatchState { error: Some(e.to_string()), ..Default::default() }));
                        }
                        Err(_) => {}
                    }
                }
                plan = next_plan(&mut home_watch, !starting) => {
                    let current = goal.borrow().clone();
                    match plan {
                        Ok(plan) => self.follow(plan, &current, &mut goal, home_watch.as_mut()).await,
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
                let stats = w.last_stats();
                if stats != last_scan {
                    if let Some(st) = stats {
                        self.metrics
                            .watch_scan_seconds
                            .observe(st.duration.as_secs_f64());
                    }
                    last_scan = stats;
                }
                self.update(|s| {
                    let last_plan = s.watch.as_ref().and_then(|x| x.last_plan.clone());
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
        }
    }

    /// Scans JENKINS_HOME now and takes every pending change, within a bound (storage may hang).
    /// Returns the items to reload one by one alongside the full reload that follows.
    async fn flush_watch(&self, home_watch: &mut Option<HomeWatch>) -> Vec<String> {
        let Some(w) = home_watch.as_mut() else {
            return Vec::new();
        };
        let bound = (self.interval * 4).max(Duration::from_secs(2));
        match tokio::time::timeout(bound, w.flush()).await {
            Ok(Ok(Some(plan))) => {
                tracing::info!("applying pending JENKINS_HOME changes with this reload: {plan}");
                plan.items
            }
            Ok(Ok(None)) => Vec::new(),
            Ok(Err(e)) => {
                tracing::warn!("JENKINS_HOME scan before the reload failed: {e}");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("JENKINS_HOME scan before the reload did not finish in {bound:?}; reloading anyway");
                Vec::new()
            }
        }
    }

    /// Per-item reloads that go with a full reload. A 404 is fine here: the item is new, and
    /// the full reload loads it.
    async fn reload_items(&self, items: &[String]) {
        for item in items {
            let started = std::time::Instant::now();
            match self.client.reload_item(item).await {
                Ok(()) => {
                    self.metrics.reload("item", started.elapsed().as_secs_f64());
                    self.update(|s| s.item_reloads += 1);
                }
                Err(JenkinsError::ItemNotLoaded { .. }) => {}
                Err(e) => tracing::warn!("reload of {item} failed: {e}"),
            }
        }
    }

    /// When to check again: every interval, but faster (a quarter interval) while a failure is
    /// being confirmed, as HAProxy's `fastinter` does, so `fall` failures take less than `fall`
    /// intervals to count. The hysteresis is the same; only detection is quicker.
    fn next_check_in(&self) -> Duration {
        let failures = self.snapshot().failures;
        if failures > 0 && failures < self.fall {
            (self.interval / 4).max(Duration::from_millis(50))
        } else {
            self.interval
        }
    }

    /// Carries out a reload plan on a standby; the active wrote those changes itself.
    async fn follow(
        &self,
        plan: ReloadPlan,
        goal: &JenkinsGoal,
        goal_rx: &mut watch::Receiver<JenkinsGoal>,
        home_watch: Option<&mut HomeWatch>,
    ) {
        let note = |what: String| {
            self.update(|s| {
                if let Some(w) = s.watch.as_mut() {
                    w.last_plan = Some(what);
                }
            })
        };
        match goal {
            JenkinsGoal::Active { .. } => {
                tracing::debug!(
                    "config changed on disk ({plan}); as the active node, our Jenkins wrote it"
                );
                note(format!("ignored (active): {plan}"));
                return;
            }
            JenkinsGoal::Leave => {
                // Not reached: `run` takes no plan while starting (the goal never returns to it).
                tracing::info!("config changed on disk while starting ({plan}); not reloading yet");
                note(format!("ignored (starting): {plan}"));
                return;
            }
            JenkinsGoal::Standby {
                prepare: Some(term),
            } => {
                // A switchover prepares us with a full reload: make sure it sees these changes too.
                if self.snapshot().prepared_for == Some(*term) {
                    tracing::info!(
                        "config changed after the switchover reload ({plan}); reloading again"
                    );
                    self.update(|s| s.prepared_for = None);
                }
                // A full reload keeps the folder children it already has: the edited items are
                // re-read now (still quiet, not routed), and the full reload keeps what they read.
                if !self.snapshot().reload_failed {
                    self.reload_items(&plan.items).await;
                }
                note(format!("folded into the switchover reload: {plan}"));
                return;
            }
            JenkinsGoal::Standby { prepare: None } => {}
        }
        if self.snapshot().reload_failed {
            note(format!("not applied, Jenkins needs a restart: {plan}"));
            return;
        }
        tracing::info!("standby follows JENKINS_HOME: {plan}");
        // Quiet-down first: a reload must never give a standby the chance to start builds.
        self.ensure_quiet(true, None).await;
        if plan.full && self.full_reload("full", None, goal_rx).await != ReloadEnd::Done {
            // Abandoned (the role changed) or failed short of the 503 bound: the changes go
            // back to the watcher, for the next plan or a promotion's flush. (After the bound,
            // Jenkins needs a restart, and a restarted Jenkins reads everything from disk.)
            if !self.snapshot().reload_failed {
                if let Some(w) = home_watch {
                    w.requeue(&plan);
                }
            }
            note(format!("full reload did not finish: {plan}"));
            return;
        }
        let mut not_loaded = Vec::new();
        for item in &plan.items {
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
                Err(e) => tracing::warn!("reload of {item} failed: {e}"),
            }
        }
        if let Some(w) = home_watch {
            for item in &not_loaded {
                tracing::info!(
                    "{item} is not loaded in Jenkins yet: a full reload will pick it up"
                );
                w.item_not_loaded(item);
            }
        }
        note(format!("applied: {plan}"));
    }

    /// One probe, then whatever the goal needs.
    async fn check(
        &self,
        goal: &JenkinsGoal,
        goal_rx: &mut watch::Receiver<JenkinsGoal>,
        home_watch: &mut Option<HomeWatch>,
    ) {
        let probe = self.client.probe().await;
        let before = self.snapshot();
        let restarted = matches!((&before.session, &probe.session), (Some(a), Some(b)) if a != b);
        if restarted {
            tracing::warn!(
                "Jenkins restarted (X-Jenkins-Session changed); re-asserting its mode{}",
                if before.reload_failed {
                    "; the failed reload is cleared"
                } else {
                    ""
                }
            );
        }
        self.update(|s| {
            if probe.session.is_some() {
                s.session = probe.session.clone();
            }
            if restarted {
                s.reload_failed = false;
                s.quieting_down = None;
            }
            match &probe.health {
                Health::Up => {
                    s.health = "up";
                    s.successes = s.successes.saturating_add(1);
                    s.failures = 0;
                    s.last_error = None;
                }
                Health::GettingReady => {
                    s.health = "reloading";
                    s.failures = s.failures.saturating_add(1);
                    s.successes = 0;
                    s.last_error = Some("Jenkins answers 503 (getting ready)".into());
                }
                Health::Down(why) => {
                    s.health = "down";
                    s.failures = s.failures.saturating_add(1);
                    s.successes = 0;
                    s.last_error = Some(why.clone());
                }
            }
        });
        let after = self.snapshot();
        if after.failures > 0 {
            tracing::debug!(
                "Jenkins health check failed ({} in a row): {:?}",
                after.failures,
                probe.health
            );
        }
        if (after.failures == self.fall && before.failures < self.fall)
            || (after.successes == self.rise && before.successes < self.rise)
        {
            self.wake.notify_one();
        }
        if probe.health != Health::Up {
            // A standby Jenkins that is slow or flapping must still be kept quiet: ask blindly
            // (quietDown is idempotent; one that times out may still take effect).
            if matches!(goal, JenkinsGoal::Standby { .. })
                && self.snapshot().quieting_down != Some(true)
                && !matches!(probe.health, Health::GettingReady)
            {
                if let Err(e) = self.client.quiet_down().await {
                    tracing::debug!("quietDown of an unhealthy standby Jenkins: {e}");
                }
            }
            return;
        }
        match goal {
            JenkinsGoal::Leave => {}
            JenkinsGoal::Standby { prepare } => {
                if self.snapshot().reload_failed {
                    return;
                }
                self.ensure_quiet(true, None).await;
                if let Some(term) = prepare {
                    if self.snapshot().prepared_for != Some(*term) {
                        tracing::info!(
                            "preparing to take over term {term}: full reload while still quiet"
                        );
                        let pending = self.flush_watch(home_watch).await;
                        if self.full_reload("full (switchover)", None, goal_rx).await
                            == ReloadEnd::Done
                        {
                            self.reload_items(&pending).await;
                            self.update(|s| s.prepared_for = Some(*term));
                        }
                    }
                }
            }
            JenkinsGoal::Active {
                term,
                until,
                reload,
                quiet,
            } => {
                if self.snapshot().promoted_term != Some(*term) {
                    self.promote(*term, *until, *reload, *quiet, goal_rx, home_watch)
                        .await;
                    return;
                }
                self.ensure_quiet(*quiet, Some(*until)).await;
                if *quiet {
                    match self.client.busy_executors().await {
                        Ok(busy) => self.update(|s| s.busy_executors = Some(busy)),
                        Err(e) => self.note_error(&e),
                    }
                }
            }
        }
    }

    /// Puts Jenkins into quiet-down or out of it, if it is not already; never after `until`.
    async fn ensure_quiet(&self, quiet: bool, until: Option<Instant>) {
        let info = match self.client.info().await {
            Ok(info) => Some(info),
            Err(e) => {
                self.note_error(&e);
                None
            }
        };
        if let Some(info) = &info {
            self.update(|s| s.quieting_down = Some(info.quieting_down));
            if info.quieting_down == quiet {
                return;
            }
        } else if !quiet {
            // Unknown state: never cancel quiet-down blindly; quiet-down itself is safe to repeat.
            return;
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            return;
        }
        let result = if quiet {
            tracing::info!("putting Jenkins into quiet-down");
            self.client.quiet_down().await
        } else {
            tracing::info!("the active Jenkins was quieting down; cancelling it");
            self.client.cancel_quiet_down().await
        };
        match result {
            Ok(()) => self.update(|s| s.quieting_down = Some(quiet)),
            Err(e) => tracing::warn!(
                "{} failed: {e}",
                if quiet {
                    "quietDown"
                } else {
                    "cancelQuietDown"
                }
            ),
        }
    }

    fn note_error(&self, e: &JenkinsError) {
        let text = e.to_string();
        let changed = self.snapshot().last_error.as_deref() != Some(text.as_str());
        if changed {
            tracing::warn!("Jenkins: {text}");
        }
        self.update(|s| s.last_error = Some(text));
    }

    /// Fence the peer's Jenkins, reload ours (unless a switchover just did), wait until it is
    /// ready, cancel quiet-down (unless the switchover keeps it quiet). Never after `until`.
    async fn promote(
        &self,
        term: u64,
        until: Instant,
        reload: bool,
        quiet: bool,
        goal_rx: &mut watch::Receiver<JenkinsGoal>,
        home_watch: &mut Option<HomeWatch>,
    ) {
        // Fence the old master (quiet-down) while our own reload runs; it must be done, or have
        // failed, before our Jenkins leaves quiet-down.
        let fence = async {
            if let Some(peer) = &self.peer_client {
                match peer.quiet_down().await {
                    Ok(()) => tracing::info!(
                        "fenced the peer's Jenkins at {}: quiet-down",
                        peer.base_url()
                    ),
                    Err(e) => tracing::info!(
                        "could not quiet the peer's Jenkins ({e}); it is down or unreachable"
                    ),
                }
            }
        };
        let (_, proceed) = tokio::join!(
            fence,
            self.promotion_reload(term, reload, goal_rx, home_watch)
        );
        if !proceed {
            return;
        }
        self.finish_promotion(term, until, quiet).await;
    }

    /// The reload part of a promotion; false when it did not finish.
    async fn promotion_reload(
        &self,
        term: u64,
        reload: bool,
        goal_rx: &mut watch::Receiver<JenkinsGoal>,
        home_watch: &mut Option<HomeWatch>,
    ) -> bool {
        if reload {
            tracing::info!(
                "promoting Jenkins for term {term}: full reload, then cancel quiet-down"
            );
            self.update(|s| s.promoting = true);
            // Edits not yet applied (still debounced, or not yet scanned) go along with this
            // reload. Nested ones need their own reload (a full one keeps the folder children it
            // already has), and it comes first: HAProxy sends users here as soon as the full
            // reload begins, and the first page they get must already show them. A new nested
            // item answers 404 here; the full reload loads it.
            let mut pending = self.flush_watch(home_watch).await;
            self.reload_items(&pending).await;
            let end = self
                .full_reload("full (promotion)", Some(term), goal_rx)
                .await;
            if end == ReloadEnd::Done {
                // The old master may have written more until it was fenced: re-read those
                // items, and any nested item edited meanwhile, before builds may start.
                for item in self.flush_watch(home_watch).await {
                    if !pending.contains(&item) {
                        pending.push(item);
                    }
                }
                self.reload_items(&pending).await;
            }
            self.update(|s| s.promoting = false);
            end == ReloadEnd::Done
        } else {
            tracing::info!("promoting Jenkins for term {term}: already reloaded by the switchover");
            true
        }
    }

    async fn finish_promotion(&self, term: u64, until: Instant, quiet: bool) {
        if Instant::now() >= until {
            tracing::warn!("the lease ran out during the promotion; Jenkins stays quiet");
            return;
        }
        if !quiet {
            if let Err(e) = self.client.cancel_quiet_down().await {
                tracing::warn!("cancelQuietDown failed: {e}");
                return;
            }
        }
        tracing::info!("Jenkins is active for term {term}");
        self.update(|s| {
            s.promoted_term = Some(term);
            s.quieting_down = Some(quiet);
            s.health = "up";
            s.failures = 0;
        });
    }

    /// `POST /reload`, then wait until Jenkins serves again. Abandoned when the goal changes to
    /// something this reload no longer serves. A reload still 503 after the bound has failed:
    /// Jenkins is marked unhealthy and the restart command runs.
    ///
    /// For a promotion (`promotion_of`), the moment the reload has been asked for is recorded
    /// and the decision loop woken: HAProxy sends users here only from then on.
    pub async fn full_reload(
        &self,
        kind: &str,
        promotion_of: Option<u64>,
        goal_rx: &mut watch::Receiver<JenkinsGoal>,
    ) -> ReloadEnd {
        let started = std::time::Instant::now();
        let goal_at_start = goal_rx.borrow().clone();
        let result = async {
            let asked = self.client.reload().await;
            if let Some(term) = promotion_of {
                // Asked, or the asking failed (Jenkins down: HAProxy fails those requests
                // anyway, and the health checks decide what happens next).
                self.update(|s| s.reload_requested_for = Some(term));
                self.wake.notify_one();
            }
            asked?;
            let still_wanted = async {
                loop {
                    if goal_rx.changed().await.is_err() {
                        return;
                    }
                    let now = goal_rx.borrow().clone();
                    if std::mem::discriminant(&now) != std::mem::discriminant(&goal_at_start) {
                        return;
                    }
                }
            };
            tokio::select! {
                ready = self.wait_ready() => ready.map(|_| true),
                _ = still_wanted => Ok(false),
            }
        }
        .await;
        let elapsed = started.elapsed();
        let record = |result: &str| ReloadRecord {
            kind: kind.into(),
            at_unix_ms: unix_ms(),
            duration_ms: elapsed.as_millis() as u64,
            result: result.into(),
        };
        match result {
            Ok(true) => {
                tracing::info!("{kind} reload done in {:.1} s", elapsed.as_secs_f64());
                self.metrics.reload(kind, elapsed.as_secs_f64());
                self.update(|s| {
                    s.full_reloads += 1;
                    s.last_reload = Some(record("ok"));
                });
                ReloadEnd::Done
            }
            Ok(false) => {
                tracing::info!("{kind} reload abandoned: the role changed");
                ReloadEnd::Abandoned
            }
            Err(JenkinsError::ReloadFailed { waited }) => {
                tracing::error!(
                    "Jenkins reload FAILED: still 503 after {:.0} s; Jenkins needs a restart and is never promoted like this",
                    waited.as_secs_f64()
                );
                self.update(|s| {
                    s.full_reloads += 1;
                    s.reload_failed = true;
                    s.last_reload = Some(record("failed: still 503 after the reload timeout"));
                });
                self.wake.notify_one();
                self.run_restart_command().await;
                ReloadEnd::Failed
            }
            Err(e) => {
                tracing::warn!("{kind} reload failed: {e}");
                self.update(|s| s.last_reload = Some(record(&format!("error: {e}"))));
                ReloadEnd::Failed
            }
        }
    }

    /// Waits out the 503 window of a reload we started. Real Jenkins keeps answering (503) while
    /// it reloads, so a Jenkins that stops answering at all for `fall` intervals has died: that is
    /// a failure now, not a slow reload. Still 503 after `reload_timeout`: the reload failed.
    async fn wait_ready(&self) -> Result<(), JenkinsError> {
        let started = std::time::Instant::now();
        let mut down_since: Option<std::time::Instant> = None;
        loop {
            let probe = self.client.probe().await;
            match probe.health {
                Health::Up => return Ok(()),
                Health::GettingReady => down_since = None,
                Health::Down(why) => {
                    let since = *down_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= self.interval * self.fall {
                        self.update(|s| {
                            s.health = "down";
                            s.failures = self.fall;
                            s.successes = 0;
                            s.last_error = Some(why.clone());
                        });
                        return Err(JenkinsError::Http(
                            crate::http_client::HttpError::Transport {
                                method: hyper::Method::GET,
                                url: format!("{}/login", self.client.base_url()),
                                reason: format!(
                                    "Jenkins stopped answering during the reload: {why}"
                                ),
                            },
                        ));
                    }
                }
            }
            if started.elapsed() >= crate::node::live(&self.live).reload_timeout {
                return Err(JenkinsError::ReloadFailed {
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `jenkins.restart_command` after a failed reload.
    pub async fn run_restart_command(&self) {
        let restart_command = crate::node::live(&self.live).restart_command;
        let Some(cmd) = &restart_command else {
            tracing::warn!("no jenkins.restart_command is set: restart Jenkins by hand");
            return;
        };
        tracing::warn!("running jenkins.restart_command: {cmd}");
        let run = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .status();
        match tokio::time::timeout(Duration::from_secs(300), run).await {
            Ok(Ok(status)) if status.success() => {
                tracing::info!("jenkins.restart_command finished")
            }
            Ok(Ok(status)) => tracing::error!("jenkins.restart_command exited with {status}"),
            Ok(Err(e)) => tracing::error!("jenkins.restart_command could not start: {e}"),
            Err(_) => {
                tracing::error!("jenkins.restart_command still runs after 300 s; not waiting")
            }
        }
    }
}
