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

/// What the decision wants from the local Jenkins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JenkinsGoal {
    /// Starting: leave it as it is.
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
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    /// Running builds, polled while a switchover drains this Jenkins.
    pub busy_executors: Option<u32>,
    pub full_reloads: u64,
    pub item_reloads: u64,
    pub last_reload: Option<ReloadRecord>,
}

impl JenkinsState {
    /// Healthy enough to serve users: up, or in the reload of its own promotion.
    pub fn serving(&self) -> bool {
        !self.reload_failed && (self.promoting || (self.health == "up" && self.failures == 0))
    }
}

/// The task and its shared state.
pub struct JenkinsControl {
    client: JenkinsClient,
    peer_client: Option<JenkinsClient>,
    state: Arc<Mutex<JenkinsState>>,
    interval: Duration,
    fall: u32,
    reload_timeout: Duration,
    restart_command: Option<String>,
    metrics: Arc<Metrics>,
}

impl JenkinsControl {
    pub fn new(
        config: &Config,
        state: Arc<Mutex<JenkinsState>>,
        metrics: Arc<Metrics>,
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
        let peer_client = match &config.peer.jenkins_url {
            Some(url) => Some(JenkinsClient::new(
                url,
                config.jenkins.user.clone(),
                token,
                config.jenkins.timeout,
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
            reload_timeout: config.jenkins.reload_timeout,
            restart_command: config.jenkins.restart_command.clone(),
            metrics,
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

    /// Runs until the goal channel closes.
    pub async fn run(self, mut goal: watch::Receiver<JenkinsGoal>) {
        loop {
            let current = goal.borrow_and_update().clone();
            self.check(&current, &mut goal).await;
            tokio::select! {
                changed = goal.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One probe, then whatever the goal needs.
    async fn check(&self, goal: &JenkinsGoal, goal_rx: &mut watch::Receiver<JenkinsGoal>) {
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
        if probe.health != Health::Up {
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
                        if self.full_reload("full (switchover)", goal_rx).await == ReloadEnd::Done {
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
                    self.promote(*term, *until, *reload, *quiet, goal_rx).await;
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
            Ok(info) => info,
            Err(e) => return self.note_error(&e),
        };
        self.update(|s| s.quieting_down = Some(info.quieting_down));
        if info.quieting_down == quiet || until.is_some_and(|u| Instant::now() >= u) {
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
    ) {
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
        if reload {
            tracing::info!(
                "promoting Jenkins for term {term}: full reload, then cancel quiet-down"
            );
            self.update(|s| s.promoting = true);
            let end = self.full_reload("full (promotion)", goal_rx).await;
            self.update(|s| s.promoting = false);
            if end != ReloadEnd::Done {
                return;
            }
        } else {
            tracing::info!("promoting Jenkins for term {term}: already reloaded by the switchover");
        }
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
    pub async fn full_reload(
        &self,
        kind: &str,
        goal_rx: &mut watch::Receiver<JenkinsGoal>,
    ) -> ReloadEnd {
        let started = std::time::Instant::now();
        let goal_at_start = goal_rx.borrow().clone();
        let result = async {
            self.client.reload().await?;
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
            if started.elapsed() >= self.reload_timeout {
                return Err(JenkinsError::ReloadFailed {
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `jenkins.restart_command` after a failed reload.
    pub async fn run_restart_command(&self) {
        let Some(cmd) = &self.restart_command else {
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
