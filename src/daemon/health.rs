//! The health checks of the local Jenkins: an anonymous `GET /login` every interval, whatever
//! else runs. No reload, quiet-down or catch-up ever holds a check up: they run in the Jenkins
//! control task, and this task only probes and counts.
//!
//! Checks overlap: a check that has not answered within an interval makes the next one start
//! anyway, and while a failure is being confirmed checks come every quarter interval (as
//! HAProxy's `fastinter`). So a hung Jenkins (connections accepted, no answer, like a long GC
//! pause) is confirmed `fall` checks after its first check went unanswered, about
//! `jenkins.timeout + (fall − 1) × interval / 4`, rather than `fall × jenkins.timeout`.
//!
//! The counts are raw: a 503 is a failed check, whatever the reason. Only checks started after
//! the last full reload was accepted count as passed, so a Jenkins is healthy only once it
//! served a 200 since its last reload. The decision core knows when a 503 is expected.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::core::Mono;
use crate::io::clock;
use crate::io::jenkins::{Health, JenkinsClient, Probe};
use crate::lock;

/// What the health checks found, as the core and `status` need it.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    /// `up`, `down`, `reloading` (503) or `unknown`.
    pub word: &'static str,
    pub successes: u32,
    pub failures: u32,
    /// Failed checks in a row that got no usable answer at all (not even a 503).
    pub unanswered: u32,
    /// When the last check that got a 200 started.
    pub last_ok_at: Option<Mono>,
    /// How many times `X-Jenkins-Session` changed since we started.
    pub session_epoch: u64,
    pub session: Option<String>,
    pub last_error: Option<String>,
    /// When the last full reload was accepted: 200s of checks started before do not count.
    reload_fence: Option<Mono>,
    /// Start of the newest check whose result was counted (older results arriving late are
    /// dropped, so "in a row" follows the order checks were sent in).
    last_counted_start: Option<Mono>,
}

impl HealthState {
    /// Whether the health is in a state the decision cares about changing: failing at all,
    /// failed (`fall`), risen (`rise`).
    fn class(&self, fall: u32, rise: u32) -> (bool, bool, bool, bool, u64) {
        (
            self.failures > 0,
            self.failures >= fall,
            self.unanswered >= fall,
            self.successes >= rise,
            self.session_epoch,
        )
    }
}

/// The health checks' shared state.
#[derive(Debug, Default)]
pub struct Checks {
    state: Mutex<HealthState>,
}

impl Checks {
    pub fn new() -> Self {
        let checks = Checks::default();
        lock(&checks.state).word = "unknown";
        checks
    }

    pub fn snapshot(&self) -> HealthState {
        lock(&self.state).clone()
    }

    /// A full reload was accepted (302) at `at`: from now on Jenkins answers 503 until it is
    /// over, and only a 200 to a check started after this counts.
    pub fn reload_accepted(&self, at: Mono) {
        let mut s = lock(&self.state);
        s.reload_fence = Some(at);
        s.successes = 0;
    }

    /// Counts one check that started at `started`. Returns whether it was counted.
    fn count(&self, started: Mono, probe: &Probe) -> bool {
        let mut s = lock(&self.state);
        if s.last_counted_start.is_some_and(|last| started < last) {
            return false;
        }
        if probe.health == Health::Up && s.reload_fence.is_some_and(|fence| started < fence) {
            // It answered before the reload began: says nothing about the reloaded Jenkins.
            return false;
        }
        s.last_counted_start = Some(started);
        if let Some(session) = &probe.session {
            if s.session.as_ref().is_some_and(|old| old != session) {
                s.session_epoch += 1;
            }
            s.session = Some(session.clone());
        }
        match &probe.health {
            Health::Up => {
                s.word = "up";
                s.successes = s.successes.saturating_add(1);
                s.failures = 0;
                s.unanswered = 0;
                s.last_ok_at = Some(started);
                s.last_error = None;
            }
            Health::GettingReady => {
                s.word = "reloading";
                s.failures = s.failures.saturating_add(1);
                s.unanswered = 0;
                s.successes = 0;
                s.last_error = Some("Jenkins answers 503 (getting ready)".into());
            }
            Health::Down(why) => {
                s.word = "down";
                s.failures = s.failures.saturating_add(1);
                s.unanswered = s.unanswered.saturating_add(1);
                s.successes = 0;
                s.last_error = Some(why.clone());
            }
        }
        true
    }
}

/// The health-check task.
pub struct HealthChecks {
    pub client: JenkinsClient,
    pub checks: Arc<Checks>,
    pub interval: Duration,
    pub fall: u32,
    pub rise: u32,
    /// Wakes the decision loop when the health crosses a line the decision cares about.
    pub wake: Arc<Notify>,
}

impl HealthChecks {
    /// Runs until the returned future is dropped (the daemon's stop aborts it).
    pub async fn run(self) {
        let mut in_flight: JoinSet<(Mono, Probe)> = JoinSet::new();
        let max_in_flight = (self.fall as usize).max(1) + 1;
        let fast = (self.interval / 4).max(Duration::from_millis(50));
        let mut next = tokio::time::Instant::now();
        let mut oldest_started: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next), if in_flight.len() < max_in_flight => {
                    let client = self.client.clone();
                    in_flight.spawn(async move {
                        let started = clock::now();
                        (started, client.health().await)
                    });
                    oldest_started.get_or_insert_with(tokio::time::Instant::now);
                    next = tokio::time::Instant::now() + self.cadence(fast, oldest_started);
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if in_flight.is_empty() {
                        oldest_started = None;
                    }
                    let Ok((started, probe)) = done else { continue };
                    let before = self.checks.snapshot().class(self.fall, self.rise);
                    if self.checks.count(started, &probe) {
                        let after = self.checks.snapshot();
                        if after.failures > 0 {
                            tracing::debug!(
                                "Jenkins health check failed ({} in a row): {:?}",
                                after.failures,
                                probe.health
                            );
                        }
                        if after.class(self.fall, self.rise) != before {
                            self.wake.notify_one();
                        }
                    }
                    // A failure being confirmed: check again soon.
                    let soon = tokio::time::Instant::now() + self.cadence(fast, oldest_started);
                    if soon < next {
                        next = soon;
                    }
                }
            }
        }
    }

    /// When the next check is due: every interval, every quarter interval while the health is
    /// changing (a failure being confirmed, or a recovery: fewer than `rise` passes since a
    /// failure or a reload, as HAProxy's `fastinter`) or a check has gone unanswered for longer
    /// than an interval.
    fn cadence(&self, fast: Duration, oldest_in_flight: Option<tokio::time::Instant>) -> Duration {
        let s = self.checks.snapshot();
        let confirming = (s.failures > 0 && s.failures < self.fall)
            || (s.successes < self.rise && s.word != "unknown");
        let hanging = oldest_in_flight.is_some_and(|t| t.elapsed() >= self.interval);
        if confirming || hanging {
            fast
        } else {
            self.interval
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(health: Health, session: &str) -> Probe {
        Probe {
            health,
            session: Some(session.into()),
        }
    }

    fn ms(n: u64) -> Mono {
        Duration::from_millis(n)
    }

    #[test]
    fn checks_count_in_a_row_and_tell_no_answer_from_503() {
        let c = Checks::new();
        assert!(c.count(ms(1), &probe(Health::Up, "s1")));
        assert!(c.count(ms(2), &probe(Health::Up, "s1")));
        let s = c.snapshot();
        assert_eq!((s.successes, s.failures, s.word), (2, 0, "up"));
        assert_eq!(s.last_ok_at, Some(ms(2)));
        c.count(ms(3), &probe(Health::GettingReady, "s1"));
        c.count(ms(4), &probe(Health::Down("refused".into()), "s1"));
        let s = c.snapshot();
        assert_eq!((s.successes, s.failures, s.unanswered), (0, 2, 1));
        assert_eq!(s.word, "down");
    }

    #[test]
    fn a_late_answer_to_an_older_check_is_not_counted() {
        let c = Checks::new();
        assert!(c.count(ms(10), &probe(Health::Down("timeout".into()), "s1")));
        assert!(!c.count(ms(5), &probe(Health::Up, "s1")));
        assert_eq!(c.snapshot().failures, 1);
    }

    #[test]
    fn only_a_200_to_a_check_started_after_the_reload_counts() {
        let c = Checks::new();
        c.count(ms(1), &probe(Health::Up, "s1"));
        c.reload_accepted(ms(5));
        assert_eq!(c.snapshot().successes, 0);
        // Sent before the reload began, answered after: not a sign of the reloaded Jenkins.
        assert!(!c.count(ms(4), &probe(Health::Up, "s1")));
        assert!(c.count(ms(6), &probe(Health::GettingReady, "s1")));
        assert!(c.count(ms(9), &probe(Health::Up, "s1")));
        let s = c.snapshot();
        assert_eq!((s.successes, s.last_ok_at), (1, Some(ms(9))));
    }

    #[test]
    fn a_new_session_is_a_new_jvm() {
        let c = Checks::new();
        c.count(ms(1), &probe(Health::Up, "s1"));
        c.count(ms(2), &probe(Health::Up, "s1"));
        assert_eq!(c.snapshot().session_epoch, 0);
        c.count(ms(3), &probe(Health::Up, "s2"));
        assert_eq!(c.snapshot().session_epoch, 1);
        // The 503 page carries no session: that is not a restart.
        c.count(
            ms(4),
            &Probe {
                health: Health::GettingReady,
                session: None,
            },
        );
        assert_eq!(c.snapshot().session_epoch, 1);
    }
}
