//! The state the decision loop shares with the API, the peer link and the metrics: what the loop
//! last decided ([`Published`]), what the other nodes last said, and the adapters' reports.
//!
//! Everything the API answers comes from here and from the core's pure views
//! ([`crate::core::cluster`]): `/active` is the core's `serving_until` against the daemon's
//! clock, roles shown for other nodes are checked against the lease.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::health::Checks;
use super::jenkins_control::JenkinsState;
use super::live::Live;
use super::metrics::{Format, Metrics};
use super::routing::RoutingState;
use crate::config::Config;
use crate::core::cluster::{self, Heard, LeaseFacts};
use crate::core::{Command, Mono, Reason, ReasonKind, Role};
use crate::io::clock;
use crate::io::lease::LeaseIo;
use crate::lock;
use crate::status::{ClusterStatus, LeaseStatus, NodeStatus, Reloads};

/// What this node last decided, for the API and the heartbeats.
#[derive(Debug, Clone)]
pub struct Published {
    pub role: Role,
    pub held_term: Option<u64>,
    /// Our lease's deadline while we hold a term.
    pub valid_until: Option<Mono>,
    /// `/active` answers 200 until then.
    pub serving_until: Option<Mono>,
    pub reason: Reason,
    pub jenkins_healthy: bool,
    pub jenkins_broken: bool,
    pub jenkins_reloading: bool,
    pub lease: LeaseStatus,
    pub lease_facts: LeaseFacts,
    pub paused: bool,
    pub released: bool,
    pub handover_to: Option<String>,
    pub last_tick: Mono,
}

/// Another node's last heartbeat and when it arrived.
#[derive(Debug, Clone)]
pub struct PeerHeard {
    pub status: NodeStatus,
    pub at: Mono,
    pub rtt: Option<Duration>,
}

/// State shared by the loop, the adapters' tasks and the API.
pub struct Shared {
    pub config: Config,
    pub published: Mutex<Published>,
    /// The other nodes' last heartbeats, by name.
    pub peers: Mutex<BTreeMap<String, PeerHeard>>,
    /// Why our last heartbeat to each other node failed, by name (absent once one goes through).
    pub heartbeat_errors: Mutex<BTreeMap<String, String>>,
    pub jenkins: Arc<Mutex<JenkinsState>>,
    pub checks: Arc<Checks>,
    pub routing: Arc<Mutex<RoutingState>>,
    /// Wakes the loop for an immediate tick (a release, an operator command, a health change).
    pub wake: Arc<Notify>,
    pub commands: Mutex<Option<Command>>,
    pub metrics: Arc<Metrics>,
    /// The settings SIGHUP can change while running.
    pub live: Arc<Live>,
    /// The lease, for the API's pause and resume (set once the node started).
    pub lease: OnceLock<LeaseIo>,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Self> {
        let live = Arc::new(Live::new(&config));
        let metrics = Arc::new(Metrics::for_config(&config));
        Arc::new(Shared {
            config,
            published: Mutex::new(Published {
                role: Role::Starting,
                held_term: None,
                valid_until: None,
                serving_until: None,
                reason: Reason::new(ReasonKind::Starting, "starting"),
                jenkins_healthy: false,
                jenkins_broken: false,
                jenkins_reloading: false,
                lease: LeaseStatus {
                    term: None,
                    holder: None,
                    counter: None,
                    still_s: 0.0,
                    released: false,
                    handover_to: None,
                    error: None,
                    timing: None,
                },
                lease_facts: LeaseFacts::default(),
                paused: false,
                released: false,
                handover_to: None,
                last_tick: clock::now(),
            }),
            peers: Mutex::new(BTreeMap::new()),
            heartbeat_errors: Mutex::new(BTreeMap::new()),
            jenkins: Arc::new(Mutex::new(JenkinsState::default())),
            checks: Arc::new(Checks::new()),
            routing: Arc::new(Mutex::new(RoutingState::default())),
            wake: Arc::new(Notify::new()),
            commands: Mutex::new(None),
            metrics,
            live,
            lease: OnceLock::new(),
        })
    }

    pub fn published(&self) -> Published {
        lock(&self.published).clone()
    }

    /// `GET /active`: the core said we serve, until our lease's deadline, and that deadline has
    /// not passed on the daemon's clock.
    pub fn is_active(&self) -> bool {
        lock(&self.published)
            .serving_until
            .is_some_and(|until| !clock::passed(until))
    }

    /// `GET /health`: the loop ticked lately.
    pub fn loop_alive(&self) -> bool {
        let t = &self.config.timing;
        let limit = t.interval * 3 + t.lease_timeout;
        clock::now().saturating_sub(lock(&self.published).last_tick) < limit
    }

    /// What we say about ourselves (heartbeat body, our row in `status`).
    pub fn own_status(&self) -> NodeStatus {
        let p = self.published();
        let jenkins = lock(&self.jenkins).clone();
        let health = self.checks.snapshot();
        let routing = lock(&self.routing).clone();
        let mut role = p.role;
        if role == Role::Active && p.valid_until.is_none_or(clock::passed) {
            role = Role::SteppingDown;
        }
        NodeStatus {
            name: self.config.node.name.clone(),
            role,
            term: p.held_term.or(p.lease.term),
            jenkins: if p.jenkins_reloading {
                "reloading"
            } else {
                health.word
            }
            .to_string(),
            jenkins_healthy: p.jenkins_healthy,
            serving: self.is_active(),
            reload_failed: p.jenkins_broken,
            quieting_down: jenkins.quieting_down,
            haproxy: if routing.me.is_empty() {
                "unknown".into()
            } else {
                routing.me.clone()
            },
            reason: p.reason.text.clone(),
            released: p.released,
            handover_to: p.handover_to.clone(),
            last_heard_s: None,
            rtt_ms: None,
            priority: self.config.node.failover_priority,
            current: jenkins.current,
            contradiction: None,
            loaded: Some(jenkins.knowledge.describe()),
            promotion: jenkins.last_promotion.clone(),
            restart_needed: jenkins
                .restart_needed
                .iter()
                .map(|(file, since)| crate::status::RestartNeeded {
                    file: file.clone(),
                    since_unix_ms: *since,
                })
                .collect(),
            watch: jenkins.watch.clone(),
            reloads: Reloads {
                full: jenkins.full_reloads,
                item: jenkins.item_reloads,
                last: jenkins.last_reload.clone(),
            },
            version: env!("CARGO_PKG_VERSION").to_string(),
            heartbeat_error: None,
            timing: Some(self.config.timing.shared()),
            timing_differs: Vec::new(),
        }
    }

    /// The timing to write into our term records: ours, unless another node's heartbeats show
    /// that it runs a version from before timing travelled (it says none): such a version
    /// refuses records with keys it does not know, and would read ours as a term nobody renews.
    pub fn record_timing(&self) -> Option<crate::core::SharedTiming> {
        let old_peer = lock(&self.peers)
            .values()
            .any(|heard| heard.status.timing.is_none());
        (!old_peer).then(|| self.config.timing.shared())
    }

    /// Records a heartbeat from another node; news of a release, or of a hand-over to us, wakes
    /// the loop. Only the news: a node goes on saying so in every heartbeat after, and a holder
    /// that hands over sends a heartbeat on each tick, whose answer would wake it again at once
    /// (a renewal storm until the target claims).
    pub fn heard_peer(&self, status: NodeStatus, rtt: Option<Duration>) {
        let me = self.config.node.name.as_str();
        let says = |s: &NodeStatus| (s.released, s.handover_to.as_deref() == Some(me));
        let name = status.name.clone();
        let mut peers = lock(&self.peers);
        // A heartbeat it sent us measures no round trip: keep the one our last heartbeat took.
        let rtt = rtt.or_else(|| peers.get(&name).and_then(|p| p.rtt));
        let (released_before, handing_before) = peers
            .get(&name)
            .map(|h| says(&h.status))
            .unwrap_or_default();
        let (released, handing) = says(&status);
        let urgent = (released && !released_before) || (handing && !handing_before);
        peers.insert(
            name,
            PeerHeard {
                status,
                at: clock::now(),
                rtt,
            },
        );
        drop(peers);
        if urgent {
            self.wake.notify_one();
        }
    }

    /// Records how our last heartbeat to `peer` went: `None` when it went through.
    pub fn heartbeat_result(&self, peer: &str, error: Option<String>) {
        let mut errors = lock(&self.heartbeat_errors);
        match error {
            Some(e) => {
                errors.insert(peer.to_string(), e);
            }
            None => {
                errors.remove(peer);
            }
        }
    }

    /// Every other node as `status` shows it: its role checked against the lease (a heartbeat
    /// that contradicts the lease is flagged, not believed), `unreachable` after three missed
    /// heartbeats, and its timing (from its heartbeats, or for the holder its term record)
    /// compared with ours.
    pub fn peer_statuses(&self) -> Vec<NodeStatus> {
        let (facts, lease) = {
            let p = lock(&self.published);
            (p.lease_facts.clone(), p.lease.clone())
        };
        let heard = lock(&self.peers).clone();
        let errors = lock(&self.heartbeat_errors).clone();
        let now = clock::now();
        let mine = self.config.timing.shared();
        self.config
            .peers
            .iter()
            .map(|peer| {
                let mut shown = self.peer_status(peer, heard.get(&peer.name), &facts, now);
                shown.heartbeat_error = errors.get(&peer.name).cloned();
                if lease.holder.as_deref() == Some(peer.name.as_str()) && lease.timing.is_some() {
                    shown.timing = lease.timing;
                }
                shown.timing_differs = shown
                    .timing
                    .map(|theirs| mine.differing(&theirs))
                    .unwrap_or_default()
                    .into_iter()
                    .map(String::from)
                    .collect();
                shown
            })
            .collect()
    }

    /// One other node as `status` shows it, from its last heartbeat (if any).
    fn peer_status(
        &self,
        peer: &crate::config::PeerConfig,
        heard: Option<&PeerHeard>,
        facts: &LeaseFacts,
        now: Mono,
    ) -> NodeStatus {
        match heard {
            Some(h) => {
                let age = now.saturating_sub(h.at);
                let said = Heard {
                    role: h.status.role,
                    term: h.status.term,
                    serving: h.status.serving,
                    age,
                };
                let shown =
                    cluster::shown_role(&peer.name, Some(&said), facts, &self.config.timing);
                let mut s = h.status.clone();
                s.role = shown.role;
                s.serving = shown.serving;
                s.contradiction = shown.contradiction;
                s.last_heard_s = Some(age.as_secs_f64());
                s.rtt_ms = h.rtt.map(|r| r.as_secs_f64() * 1000.0);
                s
            }
            None => NodeStatus::unreachable(&peer.name),
        }
    }

    /// `GET /status`.
    pub fn cluster_status(&self) -> ClusterStatus {
        let me = self.own_status();
        let peers = self.peer_statuses();
        let p = self.published();
        let active = std::iter::once(&me)
            .chain(&peers)
            .find(|n| n.serving)
            .map(|n| n.name.clone());
        let mut nodes = vec![me];
        nodes.extend(peers);
        ClusterStatus {
            active,
            reporter: self.config.node.name.clone(),
            paused: p.paused,
            nodes,
            lease: p.lease,
            haproxy: lock(&self.routing).sockets.clone(),
        }
    }

    /// Sets the state gauges from the current state and renders every metric in `format`.
    pub fn render_metrics(&self, format: Format) -> String {
        let m = &self.metrics;
        let status = self.cluster_status();
        let me = &status.nodes[0];
        let p = self.published();
        m.set_role(me.role.as_str());
        m.term.set(me.term.unwrap_or(0) as i64);
        m.lease_age.set(p.lease.still_s);
        m.paused.set(i64::from(p.paused));
        m.jenkins_up.set(i64::from(me.jenkins_healthy));
        m.jenkins_reload_failed.set(i64::from(me.reload_failed));
        m.jenkins_restart_needed
            .set(i64::from(!me.restart_needed.is_empty()));
        m.serving.set(i64::from(me.serving));
        m.cluster_has_active.set(i64::from(status.active.is_some()));
        m.timing_mismatch.set(i64::from(
            status.nodes.iter().any(|n| !n.timing_differs.is_empty()),
        ));
        let now = clock::now();
        let heard = lock(&self.peers).clone();
        for peer in &self.config.peers {
            match heard.get(&peer.name) {
                Some(h) => m.set_peer(
                    &peer.name,
                    Some(now.saturating_sub(h.at).as_secs_f64()),
                    h.rtt.map(|r| r.as_secs_f64()),
                    self.config.timing.peer_fresh(now.saturating_sub(h.at)),
                ),
                None => m.set_peer(&peer.name, None, None, false),
            }
        }
        m.encode(format)
    }

    /// A client for calls to other sidecars: `https://` with the current `node.tls` (the
    /// cluster CA, this node's certificate as the client certificate).
    pub fn sidecar_client(&self) -> crate::io::http_client::HttpClient {
        crate::io::http_client::HttpClient::with_tls(self.live.tls().map(|t| t.client))
    }

    /// Queues an operator command for the next decision and wakes the loop.
    pub fn command(&self, command: Command) {
        *lock(&self.commands) = Some(command);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn shared() -> (tempfile::TempDir, Arc<Shared>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let token = dir.path().join("cluster.token");
        std::fs::File::create(&token)
            .unwrap()
            .write_all(b"s3cret\n")
            .unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let yaml = "node:\n  name: jenkins01\n  listen: 127.0.0.1:7070\n\
                    peers:\n  - {name: jenkins02, url: http://127.0.0.1:7071}\n  - {name: jenkins03, url: http://127.0.0.1:7072}\n\
                    auth:\n  token_file: cluster.token\njenkins:\n  url: http://127.0.0.1:8080\n  home: home\n\
                    haproxy:\n  sockets: [/run/haproxy/admin.sock]\n";
        let config = Config::parse(&dir.path().join("config.yaml"), yaml).unwrap();
        (dir, Shared::new(config))
    }

    async fn woken(shared: &Shared) -> bool {
        tokio::time::timeout(Duration::from_millis(50), shared.wake.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_release_or_a_hand_over_to_us_wakes_the_loop_once_not_on_every_heartbeat() {
        let (_dir, shared) = shared();
        let mut two = NodeStatus::unreachable("jenkins02");
        two.role = Role::Standby;
        shared.heard_peer(two.clone(), None);
        assert!(!woken(&shared).await, "nothing new");
        two.released = true;
        shared.heard_peer(two.clone(), None);
        assert!(woken(&shared).await, "the release is news");
        shared.heard_peer(two.clone(), None);
        assert!(!woken(&shared).await, "the same release again is not");

        let mut three = NodeStatus::unreachable("jenkins03");
        three.role = Role::Active;
        three.handover_to = Some("jenkins01".into());
        shared.heard_peer(three.clone(), Some(Duration::from_millis(1)));
        assert!(woken(&shared).await, "a hand-over to us is news");
        for _ in 0..3 {
            shared.heard_peer(three.clone(), Some(Duration::from_millis(1)));
            assert!(!woken(&shared).await, "the same hand-over again is not");
        }
        // A hand-over to another node never wakes us; a new one to us does.
        three.handover_to = Some("jenkins02".into());
        shared.heard_peer(three.clone(), None);
        assert!(!woken(&shared).await);
        three.handover_to = Some("jenkins01".into());
        shared.heard_peer(three, None);
        assert!(woken(&shared).await);
    }
}
