//! Prometheus metrics (prometheus-client), served as text on `GET /metrics`.
//!
//! Events (reloads, HAProxy writes, failovers, scans) are counted where they happen; the gauges
//! that describe the current state (role, term, ages) are set from the shared state right before
//! each scrape, so they are never stale.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketLabel {
    pub socket: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub role: Family<RoleLabel, Gauge>,
    pub term: Gauge,
    pub lease_age: FloatGauge,
    pub peer_heartbeat_age: Family<PeerLabel, FloatGauge>,
    pub peer_rtt: Family<PeerLabel, FloatGauge>,
    pub peer_up: Family<PeerLabel, Gauge>,
    pub serving: Gauge,
    pub cluster_has_active: Gauge,
    pub jenkins_up: Gauge,
    pub jenkins_reload_failed: Gauge,
    pub jenkins_restart_needed: Gauge,
    pub paused: Gauge,
    pub reloads: Family<KindLabel, Counter>,
    pub reload_seconds: Family<KindLabel, Histogram>,
    pub haproxy_writes: Family<SocketLabel, Counter>,
    pub haproxy_errors: Family<SocketLabel, Counter>,
    pub failovers: Family<ReasonLabel, Counter>,
    pub watch_mode: Family<ModeLabel, Gauge>,
    pub promotions: Family<KindLabel, Counter>,
    pub watch_scan_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jenkins_ha");
        let role = Family::<RoleLabel, Gauge>::default();
        registry.register("role", "1 for this node's current role", role.clone());
        let term = Gauge::default();
        registry.register("term", "The newest term this node knows of", term.clone());
        let lease_age = FloatGauge::default();
        registry.register(
            "lease_age_seconds",
            "How long the lease counter has been still, on this node's clock",
            lease_age.clone(),
        );
        let peer_heartbeat_age = Family::<PeerLabel, FloatGauge>::default();
        registry.register(
            "peer_heartbeat_age_seconds",
            "Time since each other node was last heard",
            peer_heartbeat_age.clone(),
        );
        let peer_rtt = Family::<PeerLabel, FloatGauge>::default();
        registry.register(
            "peer_rtt_seconds",
            "Round trip of the last heartbeat to each other node",
            peer_rtt.clone(),
        );
        let peer_up = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "peer_up",
            "1 while heartbeats from that node are fresh (heard within 3 intervals)",
            peer_up.clone(),
        );
        let serving = Gauge::default();
        registry.register(
            "serving",
            "1 only on the node HAProxy sends users to: its GET /active answers 200",
            serving.clone(),
        );
        let cluster_has_active = Gauge::default();
        registry.register(
            "cluster_has_active",
            "1 when, as this node sees it, some node of the cluster serves",
            cluster_has_active.clone(),
        );
        let jenkins_up = Gauge::default();
        registry.register(
            "jenkins_up",
            "1 while the local Jenkins passes its health checks",
            jenkins_up.clone(),
        );
        let jenkins_reload_failed = Gauge::default();
        registry.register(
            "jenkins_reload_failed",
            "1 while the local Jenkins is stuck after a failed reload (needs a restart)",
            jenkins_reload_failed.clone(),
        );
        let jenkins_restart_needed = Gauge::default();
        registry.register(
            "jenkins_restart_needed",
            "1 while a file that only a restart applies (credentials.xml, a plugin's configuration) changed on disk since the local Jenkins started",
            jenkins_restart_needed.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "paused",
            "1 while automatic failover is paused",
            paused.clone(),
        );
        let reloads = Family::<KindLabel, Counter>::default();
        registry.register(
            "jenkins_reloads",
            "Reloads of the local Jenkins by kind",
            reloads.clone(),
        );
        let reload_seconds = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 14))
        });
        registry.register(
            "jenkins_reload_duration_seconds",
            "How long reloads of the local Jenkins took, by kind",
            reload_seconds.clone(),
        );
        let haproxy_writes = Family::<SocketLabel, Counter>::default();
        registry.register(
            "haproxy_writes",
            "State writes sent to HAProxy, by socket",
            haproxy_writes.clone(),
        );
        let haproxy_errors = Family::<SocketLabel, Counter>::default();
        registry.register(
            "haproxy_write_errors",
            "Failed reconciles of HAProxy state while active, by socket",
            haproxy_errors.clone(),
        );
        let failovers = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "failovers",
            "Terms this node took over, by why (released, lease_expired, planned, forced, restart, first)",
            failovers.clone(),
        );
        let watch_mode = Family::<ModeLabel, Gauge>::default();
        registry.register(
            "watch_mode",
            "1 for the JENKINS_HOME watcher's mode",
            watch_mode.clone(),
        );
        let promotions = Family::<KindLabel, Counter>::default();
        for kind in ["incremental", "full"] {
            let _ = promotions.get_or_create(&KindLabel { kind: kind.into() });
        }
        registry.register(
            "promotions",
            "Promotions of this node's Jenkins by kind of catch-up: incremental (per-item reloads) or full (a full reload)",
            promotions.clone(),
        );
        let watch_scan_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "watch_scan_duration_seconds",
            "How long one poll of JENKINS_HOME took",
            watch_scan_seconds.clone(),
        );
        Metrics {
            registry,
            role,
            term,
            lease_age,
            peer_heartbeat_age,
            peer_rtt,
            peer_up,
            serving,
            cluster_has_active,
            jenkins_up,
            jenkins_reload_failed,
            jenkins_restart_needed,
            paused,
            reloads,
            reload_seconds,
            haproxy_writes,
            haproxy_errors,
            failovers,
            watch_mode,
            promotions,
            watch_scan_seconds,
        }
    }

    /// Sets the role gauges: 1 for `current`, 0 for every other role.
    pub fn set_role(&self, current: &str) {
        for role in ["starting", "standby", "active", "stepping-down"] {
            self.role
                .get_or_create(&RoleLabel { role: role.into() })
                .set(i64::from(role == current));
        }
    }

    /// Sets the gauges of one other node.
    pub fn set_peer(&self, peer: &str, age: f64, rtt: Option<f64>, up: bool) {
        let label = PeerLabel { peer: peer.into() };
        self.peer_heartbeat_age.get_or_create(&label).set(age);
        if let Some(rtt) = rtt {
            self.peer_rtt.get_or_create(&label).set(rtt);
        }
        self.peer_up.get_or_create(&label).set(i64::from(up));
    }

    /// Counts a promotion by its kind of catch-up.
    pub fn promotion(&self, kind: &str) {
        self.promotions
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn reload(&self, kind: &str, seconds: f64) {
        let label = KindLabel { kind: kind.into() };
        self.reloads.get_or_create(&label).inc();
        self.reload_seconds.get_or_create(&label).observe(seconds);
    }

    /// Counts a term this node took over, by why it claimed it.
    pub fn failover(&self, why: crate::core::ClaimWhy) {
        self.failovers
            .get_or_create(&ReasonLabel {
                reason: why.label().into(),
            })
            .inc();
    }

    /// Sets the watcher's mode gauge: 1 for `mode`.
    pub fn set_watch_mode(&self, mode: &str) {
        for m in ["inotify", "poll"] {
            self.watch_mode
                .get_or_create(&ModeLabel { mode: m.into() })
                .set(i64::from(m == mode));
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_text_with_the_families() {
        let m = Metrics::new();
        m.set_role("active");
        m.term.set(7);
        m.reload("item", 0.2);
        m.failover(crate::core::ClaimWhy::Released);
        let text = m.encode();
        assert!(
            text.contains("jenkins_ha_role{role=\"active\"} 1"),
            "{text}"
        );
        assert!(text.contains("jenkins_ha_term 7"), "{text}");
        assert!(
            text.contains("jenkins_ha_failovers_total{reason=\"released\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("jenkins_ha_jenkins_reloads_total{kind=\"item\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn failover_labels_come_from_the_claim_kind() {
        use crate::core::ClaimWhy;
        let m = Metrics::new();
        for (why, label) in [
            (ClaimWhy::Released, "released"),
            (ClaimWhy::LeaseExpired, "lease_expired"),
            (ClaimWhy::Planned, "planned"),
            (ClaimWhy::Forced, "forced"),
            (ClaimWhy::First, "first"),
            (ClaimWhy::Restart, "restart"),
        ] {
            assert_eq!(why.label(), label);
            m.failover(why);
        }
        let text = m.encode();
        assert!(
            text.contains("jenkins_ha_failovers_total{reason=\"lease_expired\"} 1"),
            "{text}"
        );
    }
}
