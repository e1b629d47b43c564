//! The loop: observe → decide → act, one tick per interval (and at once when something the
//! decision waits for happens), then publish the decision for the API.
//!
//! Each tick reads the lease (off the loop, with a deadline), gathers the adapters' reports
//! ([`super::observe`]), asks the pure core what to do, and carries it out ([`super::act`]).
//! After a won claim it decides again at once, so a takeover does not wait for the next tick.
//! Between ticks, a standby peeks at its holder's term record and ticks the moment it moves or
//! goes stale. On stop, it quiets its own Jenkins before anything else, then releases a held
//! term (best effort), and tells the other nodes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::act::Actor;
use super::health::HealthChecks;
use super::jenkins_control::{Handles, JenkinsControl, JenkinsGoal, WatchSetup};
use super::observe;
use super::peer::PeerLink;
use super::routing::{RouteGoal, Routing};
use super::shared::Shared;
use super::shutdown::Stop;
use crate::core::{Command, Core, Decision, Params, ReasonKind};
use crate::io::clock;
use crate::io::jenkins::JenkinsClient;
use crate::io::lease::{FileLease, Lease, LeaseIo, LeaseOp, LeaseSnapshot, TermFile};
use crate::io::lease_etcd::EtcdLease;
use crate::lock;

/// The running daemon's loop, started by [`Node::start`].
pub struct Node {
    shared: Arc<Shared>,
    core: Core,
    actor: Actor,
    jenkins_client: JenkinsClient,
    last_reason: Option<(ReasonKind, String)>,
}

impl Node {
    /// Opens the lease and starts the adapter tasks in `tasks`, each one stopping with `stop`.
    /// Errors are start-up failures, one line each.
    pub fn start(
        shared: Arc<Shared>,
        tasks: &mut JoinSet<()>,
        stop: &Stop,
    ) -> Result<Node, String> {
        let config = &shared.config;
        config.check_home().map_err(|e| e.to_string())?;
        let deadline = config.timing.interval.max(Duration::from_millis(200));
        let lease: Arc<dyn Lease> = match &config.lease_etcd {
            Some(etcd) => Arc::new(EtcdLease::new(
                etcd,
                config.timing.lease_timeout,
                crate::io::lease_etcd::call_budget(deadline),
            )?),
            None => {
                // Never create a lease on a bare mount point: with the shared storage unmounted,
                // a lease made here would be a second, private truth and could let two nodes
                // claim term 1.
                if !config.lease_dir.is_dir() && !config.jenkins.home.join("config.xml").is_file() {
                    return Err(format!(
                        "lease.dir {} does not exist and jenkins.home {} holds no config.xml: is the shared \
                         JENKINS_HOME mounted? (refusing to create a lease outside it)",
                        config.lease_dir.display(),
                        config.jenkins.home.display()
                    ));
                }
                Arc::new(
                    FileLease::open(&config.lease_dir)
                        .map_err(|e| format!("lease.dir {}: {e}", config.lease_dir.display()))?,
                )
            }
        };
        // A store that pushes changes (etcd's watch) wakes the loop at once.
        lease.subscribe(shared.wake.clone());
        let lease = LeaseIo::new(lease, deadline).metered(shared.metrics.clone());
        let _ = shared.lease.set(lease.clone());

        let token = config
            .jenkins
            .api_token
            .as_ref()
            .map(|s| s.expose().to_string());
        let jenkins_client = JenkinsClient::new(
            &config.jenkins.url,
            config.jenkins.user.clone(),
            token.clone(),
            config.jenkins.timeout,
        )
        .map_err(|e| format!("jenkins.url: {e}"))?;
        // Every master shares JENKINS_HOME, hence users and API tokens: the same credentials
        // work on the others. Fencing may meet a slow Jenkins: give it more time.
        let mut peer_clients = Vec::new();
        for peer in &config.peers {
            if let Some(url) = &peer.jenkins_url {
                peer_clients.push(
                    JenkinsClient::new(
                        url,
                        config.jenkins.user.clone(),
                        token.clone(),
                        (config.jenkins.timeout * 3).max(Duration::from_secs(2)),
                    )
                    .map_err(|e| format!("{}'s jenkins_url: {e}", peer.name))?,
                );
            }
        }

        tasks.spawn(
            stop.until(
                HealthChecks {
                    client: jenkins_client.clone(),
                    checks: shared.checks.clone(),
                    interval: config.timing.interval,
                    fall: config.timing.fall,
                    rise: config.timing.rise,
                    wake: shared.wake.clone(),
                }
                .run(),
            ),
        );

        let (jenkins_goal, jenkins_rx) = watch::channel(JenkinsGoal::default());
        let control = JenkinsControl::new(
            jenkins_client.clone(),
            peer_clients,
            config.timing.interval,
            Handles {
                state: shared.jenkins.clone(),
                checks: shared.checks.clone(),
                live: shared.live.clone(),
                metrics: shared.metrics.clone(),
                wake: shared.wake.clone(),
            },
        );
        let setup = WatchSetup {
            home: config.jenkins.home.clone(),
            lease_dir: config.lease_dir.clone(),
            config: config.watch.clone(),
        };
        tasks.spawn(stop.until(control.run(jenkins_rx, Some(setup))));

        let (route_goal, route_rx) = watch::channel(RouteGoal::Observe);
        let routing = Routing {
            live: shared.live.clone(),
            me: config.node.name.clone(),
            others: config.peer_names(),
            interval: config.timing.interval,
            state: shared.routing.clone(),
            metrics: shared.metrics.clone(),
        };
        tasks.spawn(stop.until(routing.run(route_rx)));

        let (peers_now, peers_rx) = watch::channel(0u64);
        for peer in &config.peers {
            let link = PeerLink {
                url: peer.url.clone(),
                peer_name: peer.name.clone(),
                interval: config.timing.interval,
                shared: shared.clone(),
                now: peers_rx.clone(),
            };
            tasks.spawn(stop.until(link.run()));
        }

        let core = Core::new(Params {
            node: config.node.name.clone(),
            priority: config.node.failover_priority,
            peers: config.peer_names(),
            timing: config.timing,
            handover_timeout: config.jenkins.reload_timeout + config.timing.lease_timeout,
            reload_timeout: config.jenkins.reload_timeout,
        });
        let actor = Actor {
            shared: shared.clone(),
            lease,
            route_goal,
            jenkins_goal,
            peers_now,
            record: None,
        };
        Ok(Node {
            shared,
            core,
            actor,
            jenkins_client,
            last_reason: None,
        })
    }

    /// Ticks until `stop` fires, then quiets Jenkins, releases a held term and returns.
    pub async fn run(mut self, mut stop: Stop) {
        let interval = self.shared.config.timing.interval;
        let mut next = tokio::time::Instant::now();
        let watchdog = sd_notify::watchdog_enabled();
        if let Some(usec) = watchdog {
            tracing::info!("systemd watchdog on: pinging every tick (WatchdogSec {usec:?})");
        }
        let mut ready_sent = false;
        let mut status_sent = String::new();
        let peek_every = (interval / 4).max(Duration::from_millis(50));
        loop {
            // Between ticks a standby peeks at its holder's term file (one small read, no
            // listing) and ticks at once when a renewal lands: stillness then counts from
            // within a quarter interval of the holder's last renewal, which is what a takeover
            // after a host death waits out.
            let mut peek = tokio::time::Instant::now() + peek_every;
            let stopping = loop {
                let watched = self.core.watched_renewal();
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break false,
                    _ = self.shared.wake.notified() => break false,
                    _ = stop.wait() => break true,
                    _ = tokio::time::sleep_until(peek), if watched.is_some() && peek < next => {
                        if let Some((term, counter)) = watched {
                            if self.renewal_landed(term, counter).await {
                                break false;
                            }
                        }
                        peek = tokio::time::Instant::now() + peek_every;
                    }
                }
            };
            if stopping {
                self.stop().await;
                return;
            }
            next = tokio::time::Instant::now() + interval;
            let command = lock(&self.shared.commands).take();
            self.tick(command).await;
            // A standby watching a silent holder ticks again the moment that holder's lease
            // is stale, not up to an interval later (1 ms after, against timer rounding).
            next = next_tick(
                next,
                self.core.lease_stale_at(),
                clock::now(),
                tokio::time::Instant::now(),
            );
            // systemd: ready after the first decision, the reason as STATUS, the watchdog ping
            // from the loop itself so that a stuck loop gets the process restarted.
            let reason = lock(&self.shared.published).reason.text.clone();
            let mut states = Vec::new();
            if !ready_sent {
                states.push(sd_notify::NotifyState::Ready);
                ready_sent = true;
            }
            if reason != status_sent {
                states.push(sd_notify::NotifyState::Status(&reason));
            }
            if watchdog.is_some() {
                states.push(sd_notify::NotifyState::Watchdog);
            }
            if !states.is_empty() {
                let _ = sd_notify::notify(&states);
            }
            status_sent = reason;
        }
    }

    /// The stop path: our Jenkins into quiet-down first, before any storage call and whatever
    /// the storage does; then the shutdown decision (a held term is released, best effort:
    /// each storage call has its deadline); then the other nodes hear of it at once.
    async fn stop(&mut self) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        match self.jenkins_client.quiet_down().await {
            Ok(()) => tracing::info!("stopping: our Jenkins is in quiet-down"),
            Err(e) => tracing::warn!("stopping: could not quiet our Jenkins: {e}"),
        }
        self.tick(Some(Command::Shutdown)).await;
        super::peer::tell_everyone(&self.shared).await;
        tracing::info!("stopped");
    }

    /// Whether the watched term file shows a counter the core has not seen. Errors and garbage
    /// say no: the next tick reads it all. (A release also comes by heartbeat, which wakes us.)
    async fn renewal_landed(&self, term: u64, counter: u64) -> bool {
        match self
            .actor
            .lease
            .call(LeaseOp::Read, move |l| l.read(term))
            .await
        {
            Ok(Some(TermFile::Valid(r))) => r.counter != counter,
            _ => false,
        }
    }

    /// One observe → decide → act round (again after a won claim).
    async fn tick(&mut self, mut command: Option<Command>) {
        // SIGHUP may have changed it.
        self.core
            .set_reload_timeout(self.shared.live.get().reload_timeout);
        for _round in 0..3 {
            let snapshot = self.actor.lease.call(LeaseOp::Read, |l| l.observe()).await;
            let obs = observe::observation(&self.shared, &snapshot, command.take(), clock::now());
            let decision = self.core.decide(&obs);
            self.publish(&decision, &snapshot, obs.now, obs.paused);
            let claimed = self.actor.act(&mut self.core, &decision).await;
            if !claimed {
                break;
            }
        }
    }

    /// Logs the reason when it changes, and publishes the decision for the API.
    fn publish(
        &mut self,
        decision: &Decision,
        snapshot: &Result<LeaseSnapshot, crate::io::lease::LeaseError>,
        now: crate::core::Mono,
        paused: bool,
    ) {
        let reason = &decision.reason;
        let shape = strip_numbers(&reason.text);
        let changed = self
            .last_reason
            .as_ref()
            .is_none_or(|(kind, last)| *kind != reason.kind || *last != shape);
        if changed {
            if reason.kind.is_error() {
                tracing::error!("{reason}");
            } else {
                tracing::info!("{reason}");
            }
            self.last_reason = Some((reason.kind, shape));
        } else {
            tracing::debug!("{reason}");
        }
        if let Some(session) = decision.actions.iter().find_map(|a| match a {
            crate::core::Action::RestartJenkins { session } => Some(*session),
            _ => None,
        }) {
            tracing::error!(
                "Jenkins reload FAILED: still 503 after {}; Jenkins needs a restart and is never promoted like this (JVM {session})",
                crate::config::show(self.core.params().reload_timeout)
            );
        }
        if let Ok(snapshot) = snapshot.as_ref() {
            if let Some(TermFile::Garbage { term, why }) = &snapshot.newest {
                tracing::debug!("term-{term} is not a record (yet): {why}");
            }
        }
        let mut p = lock(&self.shared.published);
        let (lease, facts) =
            observe::lease_status(snapshot, self.core.lease_still_for(now), &p.lease);
        p.role = decision.role;
        p.held_term = self.core.held_term();
        if p.held_term.is_none() {
            // A hand-over is over once we hold no term: no heartbeat says it any more.
            p.handover_to = None;
        }
        p.valid_until = self.core.valid_until();
        p.serving_until = decision.serving_until;
        p.reason = decision.reason.clone();
        p.jenkins_healthy = decision.jenkins_healthy;
        p.jenkins_broken = decision.jenkins_broken;
        p.jenkins_reloading = decision.jenkins_reloading;
        p.lease = lease;
        p.lease_facts = facts;
        p.paused = paused;
        p.last_tick = now;
    }
}

/// When the loop ticks next: at `next` (an interval after the tick that just ran), or 1 ms
/// after the watched lease goes stale (`stale_at`, on the daemon's clock, read as `now` at
/// `now_instant`) when that comes sooner. A stale instant already past changes nothing: the tick
/// that just ran saw the lease stale, and a standby that could not claim (its Jenkins unhealthy,
/// the cluster paused, a better-ranked node first, an etcd key not yet expired) waits for the
/// next interval or a wake-up like any other, instead of ticking again every millisecond.
fn next_tick(
    next: tokio::time::Instant,
    stale_at: Option<crate::core::Mono>,
    now: crate::core::Mono,
    now_instant: tokio::time::Instant,
) -> tokio::time::Instant {
    match stale_at {
        Some(at) if at > now => next.min(now_instant + (at - now) + Duration::from_millis(1)),
        _ => next,
    }
}

/// The shape of a reason sentence without its numbers: a sentence is logged again only when
/// its kind or its shape changes, not on every tick.
fn strip_numbers(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_ascii_digit() && *c != '.')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_ticks_at_a_stale_instant_ahead_but_never_again_for_one_past() {
        let now_instant = tokio::time::Instant::now();
        let now = Duration::from_secs(100);
        let next = now_instant + Duration::from_secs(1);
        let ms = Duration::from_millis;
        // Stale in 300 ms: tick 1 ms after.
        assert_eq!(
            next_tick(next, Some(now + ms(300)), now, now_instant),
            now_instant + ms(301)
        );
        // Stale after the next interval anyway: the interval.
        assert_eq!(
            next_tick(next, Some(now + ms(1500)), now, now_instant),
            next
        );
        // Stale already (the tick that just ran saw it, and could not claim): the interval, not
        // a tick every millisecond.
        for past in [now, now - ms(1), now - ms(4000)] {
            assert_eq!(next_tick(next, Some(past), now, now_instant), next);
        }
        assert_eq!(next_tick(next, None, now, now_instant), next);
    }
}
