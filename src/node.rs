//! The runtime loop: observe → decide → act, one tick per interval, plus the state it shares
//! with the API and the adapters.
//!
//! Each tick reads the lease (off the loop, with a deadline), takes the latest Jenkins health and
//! peer heartbeat, asks the pure core what to do, and carries it out: lease writes here, HAProxy
//! and Jenkins goals handed to their tasks through watch channels. After a successful claim it
//! decides again at once, so a takeover does not wait for the next tick.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::Config;
use crate::decide::{
    Action, Command, Core, Decision, JenkinsObs, Observation, Outcome, Params, PeerObs, Role,
};
use crate::haproxy::WriteOrder;
use crate::jenkins_control::{JenkinsControl, JenkinsGoal, JenkinsState};
use crate::lease::{FileLease, Lease, LeaseIo, LeaseSnapshot, TermFile, TermRecord};
use crate::peer::PeerLink;
use crate::routing::{RouteGoal, Routing, RoutingState};
use crate::status::{ClusterStatus, LeaseStatus, NodeStatus};

/// The settings that SIGHUP can change while the daemon runs. Everything else (names, addresses,
/// the lease, timing, the watcher) needs a restart: changing it under a running lease is not safe.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloadable {
    pub cluster_token: crate::config::Secret,
    pub haproxy: crate::config::HaproxyConfig,
    pub restart_command: Option<String>,
    pub reload_timeout: Duration,
}

impl Reloadable {
    pub fn of(config: &Config) -> Self {
        Reloadable {
            cluster_token: config.cluster_token.clone(),
            haproxy: config.haproxy.clone(),
            restart_command: config.jenkins.restart_command.clone(),
            reload_timeout: config.jenkins.reload_timeout,
        }
    }
}

/// What the loop and the API share about the reloadable settings.
pub fn live(shared: &Mutex<Reloadable>) -> Reloadable {
    lock(shared).clone()
}

/// What this node last decided, for the API.
#[derive(Debug, Clone)]
pub struct LocalView {
    pub role: Role,
    pub held_term: Option<u64>,
    /// The lease's deadline while we hold a term.
    pub valid_until: Option<Instant>,
    pub reason: String,
    pub lease: LeaseStatus,
    pub paused: bool,
    pub released: bool,
    pub handover_to: Option<String>,
    pub last_tick: Instant,
}

/// The peer's last heartbeat and when it arrived.
#[derive(Debug, Clone)]
pub struct PeerHeard {
    pub status: NodeStatus,
    pub at: Instant,
    pub rtt: Option<Duration>,
}

/// State shared by the loop, the adapters' tasks and the API.
pub struct Shared {
    pub config: Config,
    pub start: Instant,
    pub local: Mutex<LocalView>,
    pub peer: Mutex<Option<PeerHeard>>,
    pub jenkins: Arc<Mutex<JenkinsState>>,
    pub routing: Arc<Mutex<RoutingState>>,
    /// Wakes the loop for an immediate tick (a peer released its term, an operator command).
    pub wake: Arc<Notify>,
    pub commands: Mutex<Option<Command>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The settings SIGHUP can change while running.
    pub live: Arc<Mutex<Reloadable>>,
    /// The lease, for the API's pause and resume (set once the node started).
    pub lease: std::sync::OnceLock<LeaseIo>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(config: Config) -> Arc<Self> {
        let config_for_live = config.clone();
        let now = Instant::now();
        Arc::new(Shared {
            config,
            start: now,
            local: Mutex::new(LocalView {
                role: Role::Starting,
                held_term: None,
                valid_until: None,
                reason: "starting".into(),
                lease: LeaseStatus {
                    term: None,
                    holder: None,
                    counter: None,
                    still_s: 0.0,
                    released: false,
                    handover_to: None,
                    error: None,
                },
                paused: false,
                released: false,
                handover_to: None,
                last_tick: now,
            }),
            peer: Mutex::new(None),
            jenkins: Arc::new(Mutex::new(JenkinsState::default())),
            routing: Arc::new(Mutex::new(RoutingState::default())),
            wake: Arc::new(Notify::new()),
            commands: Mutex::new(None),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            live: Arc::new(Mutex::new(Reloadable::of(&config_for_live))),
            lease: std::sync::OnceLock::new(),
        })
    }

    /// `GET /active`: we hold the current term, its lease is valid by our clock right now, and
    /// our Jenkins can serve (up, or in the reload of its own promotion).
    pub fn is_active(&self) -> bool {
        let local = lock(&self.local);
        local.role == Role::Active
            && local.valid_until.is_some_and(|u| Instant::now() < u)
            && lock(&self.jenkins).serving(self.config.timing.fall)
    }

    /// `GET /health`: the loop ticked lately.
    pub fn loop_alive(&self) -> bool {
        let limit = self.config.timing.interval * 3 + self.config.timing.lease_timeout;
        lock(&self.local).last_tick.elapsed() < limit
    }

    /// What we say about ourselves (heartbeat body, our row in `status`).
    pub fn own_status(&self) -> NodeStatus {
        let local = lock(&self.local).clone();
        let jenkins = lock(&self.jenkins).clone();
        let routing = lock(&self.routing).clone();
        let mut role = local.role;
        if role == Role::Active && local.valid_until.is_none_or(|u| Instant::now() >= u) {
            role = Role::SteppingDown;
        }
        NodeStatus {
            name: self.config.node.name.clone(),
            role,
            term: local.held_term.or(local.lease.term),
            jenkins: if jenkins.promoting {
                "reloading"
            } else {
                jenkins.health
            }
            .to_string(),
            jenkins_healthy: !jenkins.reload_failed
                && jenkins.failures == 0
                && jenkins.health == "up",
            serving: role == Role::Active && jenkins.serving(self.config.timing.fall),
            reload_failed: jenkins.reload_failed,
            quieting_down: jenkins.quieting_down,
            haproxy: if routing.me.is_empty() {
                "unknown".into()
            } else {
                routing.me.clone()
            },
            reason: local.reason.clone(),
            released: local.released,
            handover_to: local.handover_to.clone(),
            last_heard_s: None,
            rtt_ms: None,
            watch: jenkins.watch.clone(),
            reloads: crate::status::Reloads {
                full: jenkins.full_reloads,
                item: jenkins.item_reloads,
                last: jenkins.last_reload.clone(),
            },
        }
    }

    /// Records a heartbeat from the peer; a release or handover to us wakes the loop at once.
    pub fn heard_peer(&self, status: NodeStatus, rtt: Option<Duration>) {
        let urgent = status.released
            || status.handover_to.as_deref() == Some(self.config.node.name.as_str());
        *lock(&self.peer) = Some(PeerHeard {
            status,
            at: Instant::now(),
            rtt,
        });
        if urgent {
            self.wake.notify_one();
        }
    }

    /// The peer as we last heard it, or `unreachable`.
    pub fn peer_status(&self) -> NodeStatus {
        let stale_after = self.config.timing.interval * 3;
        match lock(&self.peer).clone() {
            Some(heard) => {
                let mut s = heard.status;
                let age = heard.at.elapsed();
                if age > stale_after {
                    s.role = Role::Unreachable;
                }
                s.last_heard_s = Some(age.as_secs_f64());
                s.rtt_ms = heard.rtt.map(|r| r.as_secs_f64() * 1000.0);
                s
            }
            None => NodeStatus::unreachable(&self.config.peer.name),
        }
    }

    /// `GET /status`.
    pub fn cluster_status(&self) -> ClusterStatus {
        let me = self.own_status();
        let peer = self.peer_status();
        let local = lock(&self.local).clone();
        let lease = local.lease.clone();
        // The active node: the one that would answer /active with 200 (it holds the current term,
        // keeps renewing it, and its Jenkins can serve).
        let fresh = lease.still_s < self.config.timing.lease_timeout.as_secs_f64();
        let active = [&me, &peer]
            .into_iter()
            .find(|n| {
                n.role == Role::Active
                    && n.serving
                    && lease.holder.as_deref() == Some(n.name.as_str())
                    && !lease.released
                    && fresh
            })
            .map(|n| n.name.clone());
        ClusterStatus {
            active,
            reporter: me.name.clone(),
            paused: local.paused,
            nodes: vec![me, peer],
            lease,
            haproxy: lock(&self.routing).sockets.clone(),
        }
    }

    /// Sets the state gauges from the current state and renders every metric.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let me = self.own_status();
        let local = lock(&self.local).clone();
        m.set_role(me.role.as_str());
        m.term.set(me.term.unwrap_or(0) as i64);
        m.lease_age.set(local.lease.still_s);
        m.paused.set(i64::from(local.paused));
        m.jenkins_up.set(i64::from(me.jenkins_healthy));
        m.jenkins_reload_failed.set(i64::from(me.reload_failed));
        if let Some(heard) = lock(&self.peer).clone() {
            m.peer_heartbeat_age.set(heard.at.elapsed().as_secs_f64());
            if let Some(rtt) = heard.rtt {
                m.peer_rtt.set(rtt.as_secs_f64());
            }
        } else {
            m.peer_heartbeat_age.set(f64::INFINITY);
        }
        m.encode()
    }

    /// SIGHUP: applies what can change safely from a freshly loaded config, and says which
    /// changes need a restart. Returns the lines it logged.
    pub fn reload_config(&self, new: &Config) -> Vec<String> {
        let old = &self.config;
        let mut lines = Vec::new();
        let fresh = Reloadable::of(new);
        {
            let mut live = lock(&self.live);
            if live.cluster_token != fresh.cluster_token {
                lines.push("applied: auth.token_file (new cluster token)".to_string());
            }
            if live.haproxy.sockets != fresh.haproxy.sockets {
                lines.push("applied: haproxy.sockets".to_string());
            }
            if live.haproxy.backends != fresh.haproxy.backends {
                lines.push("applied: haproxy.backends".to_string());
            }
            if live.haproxy.timeout != fresh.haproxy.timeout {
                lines.push("applied: haproxy.timeout".to_string());
            }
            if live.restart_command != fresh.restart_command {
                lines.push("applied: jenkins.restart_command".to_string());
            }
            if live.reload_timeout != fresh.reload_timeout {
                lines.push("applied: jenkins.reload_timeout".to_string());
            }
            *live = fresh;
        }
        let restart = |field: &str, changed: bool, lines: &mut Vec<String>| {
            if changed {
                lines.push(format!("not applied, needs a restart: {field}"));
            }
        };
        restart(
            "node",
            old.node.name != new.node.name || old.node.listen != new.node.listen,
            &mut lines,
        );
        restart(
            "peer",
            old.peer.name != new.peer.name
                || old.peer.url != new.peer.url
                || old.peer.jenkins_url != new.peer.jenkins_url,
            &mut lines,
        );
        restart(
            "jenkins (url, user, api token, home, timeout)",
            old.jenkins.url != new.jenkins.url
                || old.jenkins.user != new.jenkins.user
                || old.jenkins.api_token != new.jenkins.api_token
                || old.jenkins.home != new.jenkins.home
                || old.jenkins.timeout != new.jenkins.timeout,
            &mut lines,
        );
        restart("lease.dir", old.lease_dir != new.lease_dir, &mut lines);
        restart(
            "lease.backend / lease.etcd",
            old.lease_etcd != new.lease_etcd,
            &mut lines,
        );
        restart("timing", old.timing != new.timing, &mut lines);
        restart(
            "watch",
            old.watch.mode != new.watch.mode
                || old.watch.poll_interval != new.watch.poll_interval
                || old.watch.debounce != new.watch.debounce,
            &mut lines,
        );
        if lines.is_empty() {
            lines.push("nothing changed".into());
        }
        for line in &lines {
            tracing::info!("SIGHUP: {line}");
        }
        lines
    }

    /// Queues an operator command for the next decision and wakes the loop.
    pub fn command(&self, command: Command) {
        *lock(&self.commands) = Some(command);
        self.wake.notify_one();
    }

    fn mono(&self) -> Duration {
        Instant::now().duration_since(self.start)
    }

    fn instant(&self, mono: Duration) -> Instant {
        self.start + mono
    }
}

/// The running daemon's parts, started by [`Node::start`].
pub struct Node {
    shared: Arc<Shared>,
    core: Core,
    lease: LeaseIo,
    route_goal: watch::Sender<RouteGoal>,
    jenkins_goal: watch::Sender<JenkinsGoal>,
    peer_now: Arc<Notify>,
    /// Our current term's record, as last written.
    record: Option<TermRecord>,
    last_reason: String,
    jenkins_client: crate::jenkins::JenkinsClient,
}

impl Node {
    /// Opens the lease and starts the adapter tasks. Errors are start-up failures.
    pub fn start(shared: Arc<Shared>) -> Result<Node, String> {
        let config = &shared.config;
        let deadline = config.timing.interval.max(Duration::from_millis(200));
        let lease: Arc<dyn Lease> = match &config.lease_etcd {
            Some(etcd) => Arc::new(crate::lease_etcd::EtcdLease::new(
                etcd,
                config.timing.lease_timeout,
                crate::lease_etcd::call_budget(deadline),
            )?),
            None => {
                // Never create a lease on a bare mount point: with the shared storage unmounted, a lease
                // made here would be a second, private truth and could let two nodes claim term 1.
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
        let lease = LeaseIo::new(lease, deadline);
        let _ = shared.lease.set(lease.clone());

        let control = JenkinsControl::new(
            config,
            shared.jenkins.clone(),
            shared.metrics.clone(),
            shared.live.clone(),
            shared.wake.clone(),
        )
        .map_err(|e| format!("jenkins.url: {e}"))?;
        let jenkins_client = control.client().clone();
        let (jenkins_goal, jenkins_rx) = watch::channel(JenkinsGoal::Leave);
        let setup = crate::jenkins_control::WatchSetup {
            home: config.jenkins.home.clone(),
            lease_dir: config.lease_dir.clone(),
            config: config.watch.clone(),
        };
        tokio::spawn(control.run(jenkins_rx, Some(setup)));

        let (route_goal, route_rx) = watch::channel(RouteGoal::Observe);
        let routing = Routing {
            live: shared.live.clone(),
            me: config.node.name.clone(),
            peer: config.peer.name.clone(),
            interval: config.timing.interval,
            state: shared.routing.clone(),
            metrics: shared.metrics.clone(),
        };
        tokio::spawn(routing.run(route_rx));

        let peer_now = Arc::new(Notify::new());
        let link = PeerLink {
            url: config.peer.url.clone(),
            peer_name: config.peer.name.clone(),
            live: shared.live.clone(),
            interval: config.timing.interval,
            shared: shared.clone(),
            now: peer_now.clone(),
        };
        tokio::spawn(link.run());

        let core = Core::new(Params {
            node: config.node.name.clone(),
            peer: config.peer.name.clone(),
            timing: config.timing,
            handover_timeout: config.jenkins.reload_timeout + config.timing.lease_timeout,
        });
        Ok(Node {
            shared,
            core,
            lease,
            route_goal,
            jenkins_goal,
            peer_now,
            record: None,
            last_reason: String::new(),
            jenkins_client,
        })
    }

    /// Ticks until `stop` fires, then releases a held term and returns.
    pub async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let interval = self.shared.config.timing.interval;
        let mut next = Instant::now();
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
            let mut peek = Instant::now() + peek_every;
            let shutdown = loop {
                let watched = self.core.watched_renewal();
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break false,
                    _ = self.shared.wake.notified() => break false,
                    _ = &mut stop => break true,
                    _ = tokio::time::sleep_until(peek), if watched.is_some() && peek < next => {
                        if let Some((term, counter)) = watched {
                            if self.renewal_landed(term, counter).await {
                                break false;
                            }
                        }
                        peek = Instant::now() + peek_every;
                    }
                }
            };
            next = Instant::now() + interval;
            if shutdown {
                *lock(&self.shared.commands) = Some(Command::Shutdown);
            }
            let command = lock(&self.shared.commands).take();
            let is_shutdown = command == Some(Command::Shutdown);
            self.tick(command).await;
            // A standby watching a silent holder ticks again the moment that holder's lease
            // is stale, not up to an interval later (1 ms after, against timer rounding).
            if let Some(stale_at) = self.core.lease_stale_at() {
                let at = self.shared.instant(stale_at) + Duration::from_millis(1);
                if at > Instant::now() && at < next {
                    next = at;
                }
            }
            // systemd: ready after the first decision, the reason as STATUS, the watchdog ping from
            // the loop itself so that a stuck loop gets the process restarted.
            let reason = lock(&self.shared.local).reason.clone();
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
            status_sent = reason.clone();
            if is_shutdown {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                self.finish_shutdown().await;
                return;
            }
        }
    }

    /// Whether the watched term file shows a counter the core has not seen. Errors and garbage
    /// say no: the next tick reads it all. (A release also comes by heartbeat, which wakes us.)
    async fn renewal_landed(&self, term: u64, counter: u64) -> bool {
        match self.lease.call(move |l| l.read(term)).await {
            Ok(Some(TermFile::Valid(r))) => r.counter != counter,
            _ => false,
        }
    }

    /// One observe → decide → act round (twice after a won claim).
    async fn tick(&mut self, mut command: Option<Command>) {
        for _round in 0..3 {
            let snapshot = self.lease.call(|l| l.observe()).await;
            let obs = self.observation(&snapshot, command.take());
            let decision = self.core.decide(&obs);
            self.publish(&decision, &snapshot, &obs);
            let claimed = self.act(&decision).await;
            if !claimed {
                break;
            }
        }
    }

    fn observation(
        &self,
        snapshot: &Result<LeaseSnapshot, crate::lease::LeaseError>,
        command: Option<Command>,
    ) -> Observation {
        let jenkins = lock(&self.shared.jenkins).clone();
        let peer = lock(&self.shared.peer).clone().map(|p| PeerObs {
            role: p.status.role,
            term: p.status.term.unwrap_or(0),
            jenkins_healthy: p.status.jenkins_healthy,
            age: p.at.elapsed(),
        });
        let (lease, paused) = match snapshot {
            // Our own term read as garbage (a torn or cached read): that is "cannot read", not
            // "someone else holds it"; our next renewal rewrites it.
            Ok(LeaseSnapshot {
                newest: Some(TermFile::Garbage { term, why }),
                paused,
            }) if Some(*term) == self.core.held_term() => (
                crate::decide::LeaseObs::Unreadable(format!("term-{term} is unreadable: {why}")),
                *paused,
            ),
            Ok(s) => {
                if let Some(TermFile::Garbage { term, why }) = &s.newest {
                    tracing::debug!("term-{term} is not a record (yet): {why}");
                }
                (s.obs(), s.paused)
            }
            Err(e) => (
                crate::decide::LeaseObs::Unreadable(e.to_string()),
                lock(&self.shared.local).paused,
            ),
        };
        Observation {
            now: self.shared.mono(),
            lease,
            jenkins: JenkinsObs {
                failures: if jenkins.promoting {
                    0
                } else {
                    jenkins.failures
                },
                successes: if jenkins.promoting {
                    u32::MAX
                } else {
                    jenkins.successes
                },
                reload_failed: jenkins.reload_failed,
                busy_executors: jenkins.busy_executors,
                prepared_for: jenkins.prepared_for,
                reload_requested_for: jenkins.reload_requested_for,
            },
            peer,
            paused,
            command,
        }
    }

    fn publish(
        &mut self,
        decision: &Decision,
        snapshot: &Result<LeaseSnapshot, crate::lease::LeaseError>,
        obs: &Observation,
    ) {
        if decision.reason != self.last_reason {
            let changed_shape = strip_numbers(&decision.reason) != strip_numbers(&self.last_reason);
            if decision.reason.contains("NO ACTIVE NODE") {
                if changed_shape {
                    tracing::error!("{}", decision.reason);
                }
            } else if changed_shape {
                tracing::info!("{}", decision.reason);
            } else {
                tracing::debug!("{}", decision.reason);
            }
            self.last_reason = decision.reason.clone();
        }
        let mut local = lock(&self.shared.local);
        local.role = decision.role;
        local.held_term = self.core.held_term();
        local.valid_until = self.core.valid_until().map(|m| self.shared.instant(m));
        local.reason = decision.reason.clone();
        local.last_tick = Instant::now();
        local.paused = obs.paused;
        local.lease = match snapshot {
            Ok(s) => {
                let (term, holder, counter, released, handover_to) = match &s.newest {
                    Some(TermFile::Valid(r)) => (
                        Some(r.term),
                        Some(r.node.clone()),
                        Some(r.counter),
                        r.released,
                        r.handover_to.clone(),
                    ),
                    Some(TermFile::Garbage { term, .. }) => (Some(*term), None, None, false, None),
                    None => (None, None, None, false, None),
                };
                let still_s = self.core.lease_still_for(obs.now).as_secs_f64();
                LeaseStatus {
                    term,
                    holder,
                    counter,
                    still_s,
                    released,
                    handover_to,
                    error: match &s.newest {
                        Some(TermFile::Garbage { term, why }) => {
                            Some(format!("term-{term}: {why}"))
                        }
                        _ => None,
                    },
                }
            }
            Err(e) => LeaseStatus {
                error: Some(e.to_string()),
                ..local.lease.clone()
            },
        };
    }

    /// Carries out the actions. Returns true if a claim was won (decide again at once).
    async fn act(&mut self, decision: &Decision) -> bool {
        if let Some(goal) = self.jenkins_goal_of(&decision.actions) {
            self.jenkins_goal.send_if_modified(|g| set(g, goal));
        }
        let mut claimed = false;
        for action in &decision.actions {
            match action {
                Action::Claim { term } => {
                    let record = TermRecord {
                        term: *term,
                        node: self.shared.config.node.name.clone(),
                        counter: 0,
                        state: "active".into(),
                        released: false,
                        handover_to: None,
                        reason: decision.reason.clone(),
                        end_reason: None,
                        started_unix_ms: crate::lease::unix_ms(),
                        renewed_unix_ms: crate::lease::unix_ms(),
                    };
                    let at = self.shared.mono();
                    let to_write = record.clone();
                    match self.lease.call(move |l| l.claim(&to_write)).await {
                        Ok(true) => {
                            tracing::info!("won term {term}");
                            self.shared
                                .metrics
                                .failover(crate::metrics::claim_reason(&decision.reason));
                            self.core.record(Outcome::Claimed { term: *term, at });
                            self.record = Some(record);
                            claimed = true;
                            // Tell the peer at once: an old holder stops routing at its next tick.
                            self.peer_now.notify_one();
                        }
                        Ok(false) => {
                            tracing::info!(
                                "term {term} was taken by another node first; following it"
                            );
                            self.core.record(Outcome::ClaimLost { term: *term });
                        }
                        Err(e) => tracing::warn!("claiming term {term} failed: {e}"),
                    }
                }
                Action::Renew {
                    term,
                    counter,
                    handover_to,
                } => {
                    let Some(mut record) = self.record.clone().filter(|r| r.term == *term) else {
                        continue;
                    };
                    record.counter = *counter;
                    record.handover_to = handover_to.clone();
                    record.renewed_unix_ms = crate::lease::unix_ms();
                    if handover_to.is_some() {
                        record.end_reason = Some(format!(
                            "planned switchover to {}",
                            handover_to.as_deref().unwrap_or_default()
                        ));
                    }
                    let at = self.shared.mono();
                    let to_write = record.clone();
                    match self.lease.call(move |l| l.write(&to_write)).await {
                        Ok(()) => {
                            let done = self.shared.mono();
                            self.core.record(Outcome::Renewed {
                                term: *term,
                                counter: *counter,
                                at,
                                done,
                            });
                            self.record = Some(record);
                        }
                        Err(e) => tracing::warn!("renewing term {term} failed: {e}"),
                    }
                    lock(&self.shared.local).handover_to = handover_to.clone();
                }
                Action::Release { term } => {
                    let Some(mut record) = self.record.clone().filter(|r| r.term == *term) else {
                        continue;
                    };
                    record.released = true;
                    record.state = "released".into();
                    record.end_reason = Some(decision.reason.clone());
                    record.renewed_unix_ms = crate::lease::unix_ms();
                    let to_write = record.clone();
                    match self.lease.call(move |l| l.write(&to_write)).await {
                        Ok(()) => {
                            self.core.record(Outcome::Released { term: *term });
                            lock(&self.shared.local).released = true;
                            self.record = None;
                        }
                        Err(e) => tracing::warn!(
                            "releasing term {term} failed: {e}; the lease will expire instead"
                        ),
                    }
                }
                Action::Route {
                    until,
                    ready_first,
                    serve,
                    ..
                } => {
                    let order = match (*serve, *ready_first) {
                        (false, _) => WriteOrder::FenceOnly,
                        (true, true) => WriteOrder::ReadyFirst,
                        (true, false) => WriteOrder::MaintFirst,
                    };
                    let goal = RouteGoal::Route {
                        until: self.shared.instant(*until),
                        order,
                    };
                    self.route_goal.send_if_modified(|g| set(g, goal));
                    lock(&self.shared.local).released = false;
                }
                Action::StopRouting => {
                    self.route_goal
                        .send_if_modified(|g| set(g, RouteGoal::Observe));
                }
                // The Jenkins goal is taken from the whole list below.
                Action::JenkinsActive { .. }
                | Action::JenkinsStandby
                | Action::PrepareTakeover { .. } => {}
                Action::NotifyPeer => self.peer_now.notify_one(),
            }
        }
        claimed
    }

    /// The one Jenkins goal a decision's actions describe, if any.
    fn jenkins_goal_of(&self, actions: &[Action]) -> Option<JenkinsGoal> {
        let mut goal = None;
        for action in actions {
            match action {
                Action::JenkinsActive {
                    term,
                    until,
                    reload,
                    quiet,
                } => {
                    return Some(JenkinsGoal::Active {
                        term: *term,
                        until: self.shared.instant(*until),
                        reload: *reload,
                        quiet: *quiet,
                    })
                }
                Action::PrepareTakeover { term } => {
                    goal = Some(JenkinsGoal::Standby {
                        prepare: Some(*term),
                    })
                }
                Action::JenkinsStandby if goal.is_none() => {
                    goal = Some(JenkinsGoal::Standby { prepare: None })
                }
                _ => {}
            }
        }
        goal
    }

    /// After the shutdown decision: make sure our Jenkins is quiet and the peer heard of the release.
    async fn finish_shutdown(&self) {
        let released = lock(&self.shared.local).released;
        if released {
            if let Err(e) = self.jenkins_client.quiet_down().await {
                tracing::warn!("could not quiet our Jenkins on the way out: {e}");
            }
            self.peer_now.notify_one();
            // Give the immediate heartbeat a moment to leave.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!("stopped");
    }
}

/// Updates a watch value only when it differs (so tasks wake only on real changes of goal).
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}

/// The shape of a reason sentence without its numbers, to log only when the shape changes.
fn strip_numbers(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_ascii_digit() && *c != '.')
        .collect()
}
