//! Prometheus metrics (prometheus-client), served on `GET /metrics` in the Prometheus text
//! format (0.0.4) or in OpenMetrics, as the scraper asks ([`Format::from_accept`]).
//!
//! `monitoring/metrics.txt` is the one list of what is exported: names, types, labels and help
//! texts here are those, and the tests hold the two together. Events (reloads, HAProxy writes,
//! failovers, lease calls, scans) are counted where they happen; the gauges that describe the
//! current state (role, term, ages, a timing mismatch) are set from the shared state right
//! before each scrape, so they are never stale. Every counter exists at 0 from the start, for
//! every label value known then; label values are stable identifiers, never free text.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::core::ClaimWhy;
use crate::io::lease::{LeaseMeter, LeaseOp};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The roles `jenkins_ha_role` has a series for.
const ROLES: [&str; 4] = ["starting", "standby", "active", "stepping-down"];
/// The `kind` of `jenkins_ha_jenkins_reloads_total` and its histogram ([`reload_kind`]).
const RELOAD_KINDS: [&str; 4] = ["item", "full", "full_promotion", "full_switchover"];
/// The `kind` of `jenkins_ha_promotions_total`.
const PROMOTION_KINDS: [&str; 2] = ["incremental", "full"];
/// The `mode` of `jenkins_ha_watch_mode`.
const WATCH_MODES: [&str; 2] = ["inotify", "poll"];

/// The stable label value of a reload kind as the Jenkins adapter names it (`item`, `full`,
/// `full (promotion)`, `full (switchover)`).
pub fn reload_kind(kind: &str) -> &'static str {
    match kind {
        "item" => "item",
        "full (promotion)" => "full_promotion",
        "full (switchover)" => "full_switchover",
        _ => "full",
    }
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub role: Family<RoleLabel, Gauge>,
    pub serving: Gauge,
    pub cluster_has_active: Gauge,
    pub term: Gauge,
    pub lease_age: FloatGauge,
    pub lease_timeout: FloatGauge,
    pub interval: FloatGauge,
    pub peer_up: Family<PeerLabel, Gauge>,
    pub peer_heartbeat_age: Family<PeerLabel, FloatGauge>,
    pub peer_rtt: Family<PeerLabel, FloatGauge>,
    pub jenkins_up: Gauge,
    pub jenkins_reload_failed: Gauge,
    pub jenkins_restart_needed: Gauge,
    pub paused: Gauge,
    pub timing_mismatch: Gauge,
    pub build_info: Family<VersionLabel, Gauge>,
    pub watch_mode: Family<ModeLabel, Gauge>,
    pub failovers: Family<ReasonLabel, Counter>,
    pub haproxy_writes: Family<SocketLabel, Counter>,
    pub haproxy_errors: Family<SocketLabel, Counter>,
    pub lease_errors: Family<OpLabel, Counter>,
    pub reloads: Family<KindLabel, Counter>,
    pub promotions: Family<KindLabel, Counter>,
    pub lease_read_seconds: Histogram,
    pub lease_write_seconds: Histogram,
    pub reload_seconds: Family<KindLabel, Histogram>,
    pub watch_scan_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The buckets of the lease call histograms: 1 ms to about 16 s (a hung mount shows in the top
/// buckets, and in `+Inf`).
fn lease_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    /// Every metric, with every label value known without a config at 0.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jenkins_ha");
        // The help texts are those of monitoring/metrics.txt (prometheus-client appends a
        // period, which the rendering takes off again).
        let role = Family::<RoleLabel, Gauge>::default();
        registry.register(
            "role",
            "1 for this node's current role (starting, standby, active or stepping-down), 0 for the others",
            role.clone(),
        );
        let serving = Gauge::default();
        registry.register(
            "serving",
            "1 only on the node HAProxy sends users to: its /active answers 200",
            serving.clone(),
        );
        let cluster_has_active = Gauge::default();
        registry.register(
            "cluster_has_active",
            "1 when, as this node sees it, some node of the cluster is serving",
            cluster_has_active.clone(),
        );
        let term = Gauge::default();
        registry.register(
            "term",
            "The term this node knows as the newest",
            term.clone(),
        );
        let lease_age = FloatGauge::default();
        registry.register(
            "lease_age_seconds",
            "How long the lease counter has been still, on this node's clock",
            lease_age.clone(),
        );
        let lease_timeout = FloatGauge::default();
        registry.register(
            "lease_timeout_seconds",
            "The configured timing.lease_timeout",
            lease_timeout.clone(),
        );
        let interval = FloatGauge::default();
        registry.register(
            "interval_seconds",
            "The configured timing.interval",
            interval.clone(),
        );
        let peer_up = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "peer_up",
            "1 while heartbeats from that peer are fresh",
            peer_up.clone(),
        );
        let peer_heartbeat_age = Family::<PeerLabel, FloatGauge>::default();
        registry.register(
            "peer_heartbeat_age_seconds",
            "Time since that peer was last heard",
            peer_heartbeat_age.clone(),
        );
        let peer_rtt = Family::<PeerLabel, FloatGauge>::default();
        registry.register(
            "peer_rtt_seconds",
            "Round trip of the last heartbeat this node sent to that peer",
            peer_rtt.clone(),
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
            "1 while the local Jenkins is stuck after a failed reload (it needs a restart)",
            jenkins_reload_failed.clone(),
        );
        let jenkins_restart_needed = Gauge::default();
        registry.register(
            "jenkins_restart_needed",
            "1 while a file that only a restart applies (e.g. credentials.xml) changed on disk since the local Jenkins started",
            jenkins_restart_needed.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "paused",
            "1 while automatic failover is paused",
            paused.clone(),
        );
        let timing_mismatch = Gauge::default();
        registry.register(
            "timing_mismatch",
            "1 while a peer's interval, lease_timeout or fall differ from this node's",
            timing_mismatch.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label is the daemon's version",
            build_info.clone(),
        );
        let watch_mode = Family::<ModeLabel, Gauge>::default();
        for mode in WATCH_MODES {
            let _ = watch_mode.get_or_create(&ModeLabel { mode: mode.into() });
        }
        registry.register(
            "watch_mode",
            "1 for the mode the JENKINS_HOME watcher runs in (inotify or poll), 0 for the other",
            watch_mode.clone(),
        );
        let failovers = Family::<ReasonLabel, Counter>::default();
        for why in ClaimWhy::ALL {
            let _ = failovers.get_or_create(&ReasonLabel {
                reason: why.label().into(),
            });
        }
        registry.register(
            "failovers",
            "Terms this node took over, by why",
            failovers.clone(),
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
            "Failed writes of HAProxy state while active, by socket",
            haproxy_errors.clone(),
        );
        let lease_errors = Family::<OpLabel, Counter>::default();
        for op in LeaseOp::ALL {
            let _ = lease_errors.get_or_create(&OpLabel {
                op: op.label().into(),
            });
        }
        registry.register(
            "lease_errors",
            "Failed lease operations on the shared storage, by operation (read, write, claim)",
            lease_errors.clone(),
        );
        let reloads = Family::<KindLabel, Counter>::default();
        let reload_seconds = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 14))
        });
        for kind in RELOAD_KINDS {
            let label = KindLabel { kind: kind.into() };
            let _ = reloads.get_or_create(&label);
            let _ = reload_seconds.get_or_create(&label);
        }
        registry.register(
            "jenkins_reloads",
            "Reloads of the local Jenkins, by kind",
            reloads.clone(),
        );
        let promotions = Family::<KindLabel, Counter>::default();
        for kind in PROMOTION_KINDS {
            let _ = promotions.get_or_create(&KindLabel { kind: kind.into() });
        }
        registry.register(
            "promotions",
            "Promotions of this node's Jenkins, by kind of catch-up: incremental (per-item reloads) or full (a full reload)",
            promotions.clone(),
        );
        let lease_read_seconds = lease_buckets();
        registry.register(
            "lease_read_duration_seconds",
            "How long one read of the lease took",
            lease_read_seconds.clone(),
        );
        let lease_write_seconds = lease_buckets();
        registry.register(
            "lease_write_duration_seconds",
            "How long one write of the lease took",
            lease_write_seconds.clone(),
        );
        registry.register(
            "jenkins_reload_duration_seconds",
            "How long reloads of the local Jenkins took, by kind",
            reload_seconds.clone(),
        );
        let watch_scan_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "watch_scan_duration_seconds",
            "How long one poll of JENKINS_HOME took",
            watch_scan_seconds.clone(),
        );
        let metrics = Metrics {
            registry,
            role,
            serving,
            cluster_has_active,
            term,
            lease_age,
            lease_timeout,
            interval,
            peer_up,
            peer_heartbeat_age,
            peer_rtt,
            jenkins_up,
            jenkins_reload_failed,
            jenkins_restart_needed,
            paused,
            timing_mismatch,
            build_info,
            watch_mode,
            failovers,
            haproxy_writes,
            haproxy_errors,
            lease_errors,
            reloads,
            promotions,
            lease_read_seconds,
            lease_write_seconds,
            reload_seconds,
            watch_scan_seconds,
        };
        metrics.set_role("starting");
        metrics
    }

    /// Every metric, with what `config` tells: the timing, the HAProxy sockets.
    pub fn for_config(config: &Config) -> Self {
        let m = Metrics::new();
        m.lease_timeout
            .set(config.timing.lease_timeout.as_secs_f64());
        m.interval.set(config.timing.interval.as_secs_f64());
        m.known_sockets(&config.haproxy.sockets);
        m
    }

    /// Makes the per-socket counters of these HAProxy sockets exist (at start, and when SIGHUP
    /// brings new ones).
    pub fn known_sockets(&self, sockets: &[impl ToString]) {
        for socket in sockets {
            let label = SocketLabel {
                socket: socket.to_string(),
            };
            let _ = self.haproxy_writes.get_or_create(&label);
            let _ = self.haproxy_errors.get_or_create(&label);
        }
    }

    /// Sets the role gauges: 1 for `current`, 0 for every other role.
    pub fn set_role(&self, current: &str) {
        for role in ROLES {
            self.role
                .get_or_create(&RoleLabel { role: role.into() })
                .set(i64::from(role == current));
        }
    }

    /// Sets the gauges of one other node: `age` is `None` while it was never heard (+Inf),
    /// `rtt` while no heartbeat of ours got an answer (NaN: no value).
    pub fn set_peer(&self, peer: &str, age: Option<f64>, rtt: Option<f64>, up: bool) {
        let label = PeerLabel { peer: peer.into() };
        self.peer_heartbeat_age
            .get_or_create(&label)
            .set(age.unwrap_or(f64::INFINITY));
        self.peer_rtt
            .get_or_create(&label)
            .set(rtt.unwrap_or(f64::NAN));
        self.peer_up.get_or_create(&label).set(i64::from(up));
    }

    /// Counts a promotion by its kind of catch-up.
    pub fn promotion(&self, kind: &str) {
        self.promotions
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Counts a reload of the local Jenkins of `kind` (as the adapter names it) that took
    /// `seconds`.
    pub fn reload(&self, kind: &str, seconds: f64) {
        let label = KindLabel {
            kind: reload_kind(kind).into(),
        };
        self.reloads.get_or_create(&label).inc();
        self.reload_seconds.get_or_create(&label).observe(seconds);
    }

    /// Counts a term this node took over, by why it claimed it.
    pub fn failover(&self, why: ClaimWhy) {
        self.failovers
            .get_or_create(&ReasonLabel {
                reason: why.label().into(),
            })
            .inc();
    }

    /// Sets the watcher's mode gauge: 1 for `mode`.
    pub fn set_watch_mode(&self, mode: &str) {
        for m in WATCH_MODES {
            self.watch_mode
                .get_or_create(&ModeLabel { mode: m.into() })
                .set(i64::from(m == mode));
        }
    }

    /// Every metric in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut openmetrics = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut openmetrics, &self.registry)
            .is_err()
        {
            openmetrics.clear();
        }
        render(&openmetrics, format)
    }
}

impl LeaseMeter for Metrics {
    fn took(&self, op: LeaseOp, took: Duration) {
        match op {
            LeaseOp::Read => self.lease_read_seconds.observe(took.as_secs_f64()),
            LeaseOp::Write | LeaseOp::Claim => self.lease_write_seconds.observe(took.as_secs_f64()),
        }
    }

    fn failed(&self, op: LeaseOp) {
        self.lease_errors
            .get_or_create(&OpLabel {
                op: op.label().into(),
            })
            .inc();
    }
}

/// The exposition formats `GET /metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (with a q above 0, and not below that of `text/plain`),
    /// the text format otherwise (no header, `text/plain`, `*/*`).
    pub fn from_accept(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut text) = (0.0f64, 0.0f64);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Renders prometheus-client's OpenMetrics output in `format`.
///
/// Both: the help texts lose the period prometheus-client appends (they are metrics.txt's), and
/// infinite values read `+Inf`/`-Inf` as both formats spell them. The text format besides: a
/// counter's `# HELP` and `# TYPE` name its samples (`NAME_total`, where OpenMetrics names the
/// family without the suffix), and there is no `# UNIT` and no `# EOF`.
fn render(openmetrics: &str, format: Format) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 256);
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text.strip_suffix('.').unwrap_or(text)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let exposed = if format == Format::Text && kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some((_, text)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str(&format!("# HELP {exposed} {text}\n"));
            }
            out.push_str(&format!("# TYPE {exposed} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") && format == Format::Text {
            continue;
        }
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // A sample: `name{labels} value` (no timestamps, no exemplars here).
        match line.rsplit_once(' ') {
            Some((series, value)) => {
                let value = match value {
                    "inf" | "+inf" => "+Inf",
                    "-inf" => "-Inf",
                    "nan" => "NaN",
                    v => v,
                };
                out.push_str(series);
                out.push(' ');
                out.push_str(value);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_families_in_both_formats() {
        let m = Metrics::new();
        m.set_role("active");
        m.term.set(7);
        m.reload("item", 0.2);
        m.reload("full (promotion)", 3.0);
        m.failover(ClaimWhy::Released);
        let text = m.encode(Format::Text);
        assert!(
            text.contains("jenkins_ha_role{role=\"active\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("jenkins_ha_term 7\n"), "{text}");
        assert!(
            text.contains("jenkins_ha_failovers_total{reason=\"released\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "# HELP jenkins_ha_failovers_total Terms this node took over, by why\n\
                 # TYPE jenkins_ha_failovers_total counter\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("jenkins_ha_jenkins_reloads_total{kind=\"full_promotion\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        let om = m.encode(Format::OpenMetrics);
        assert!(
            om.contains(
                "# HELP jenkins_ha_failovers Terms this node took over, by why\n\
                 # TYPE jenkins_ha_failovers counter\n"
            ),
            "{om}"
        );
        assert!(
            om.contains("jenkins_ha_failovers_total{reason=\"released\"} 1\n"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn counters_exist_at_zero_for_every_label_value_known_at_start() {
        let m = Metrics::new();
        m.known_sockets(&["/run/haproxy/admin.sock", "tcp://10.0.0.5:9999"]);
        let text = m.encode(Format::Text);
        for series in [
            "jenkins_ha_failovers_total{reason=\"first\"} 0",
            "jenkins_ha_failovers_total{reason=\"lease_expired\"} 0",
            "jenkins_ha_failovers_total{reason=\"restart\"} 0",
            "jenkins_ha_lease_errors_total{op=\"read\"} 0",
            "jenkins_ha_lease_errors_total{op=\"write\"} 0",
            "jenkins_ha_lease_errors_total{op=\"claim\"} 0",
            "jenkins_ha_jenkins_reloads_total{kind=\"item\"} 0",
            "jenkins_ha_jenkins_reloads_total{kind=\"full_switchover\"} 0",
            "jenkins_ha_promotions_total{kind=\"incremental\"} 0",
            "jenkins_ha_haproxy_writes_total{socket=\"/run/haproxy/admin.sock\"} 0",
            "jenkins_ha_haproxy_write_errors_total{socket=\"tcp://10.0.0.5:9999\"} 0",
            "jenkins_ha_lease_read_duration_seconds_count 0",
            "jenkins_ha_jenkins_reload_duration_seconds_count{kind=\"full\"} 0",
            &format!(
                "jenkins_ha_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "jenkins_ha_role{role=\"starting\"} 1",
        ] {
            assert!(text.contains(&format!("{series}\n")), "{series}\n{text}");
        }
    }

    #[test]
    fn lease_calls_are_measured_and_their_failures_counted_by_operation() {
        let m = Metrics::new();
        m.took(LeaseOp::Read, Duration::from_millis(3));
        m.took(LeaseOp::Claim, Duration::from_millis(20));
        m.took(LeaseOp::Write, Duration::from_millis(5));
        m.failed(LeaseOp::Write);
        let text = m.encode(Format::Text);
        assert!(
            text.contains("jenkins_ha_lease_read_duration_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jenkins_ha_lease_write_duration_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("jenkins_ha_lease_errors_total{op=\"write\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn a_peer_never_heard_has_an_infinite_age_and_no_round_trip_spelled_as_prometheus_spells_them()
    {
        let m = Metrics::new();
        m.set_peer("jenkins02", None, None, false);
        for format in [Format::Text, Format::OpenMetrics] {
            let out = m.encode(format);
            assert!(
                out.contains("jenkins_ha_peer_heartbeat_age_seconds{peer=\"jenkins02\"} +Inf\n"),
                "{out}"
            );
            assert!(
                out.contains("jenkins_ha_peer_rtt_seconds{peer=\"jenkins02\"} NaN\n"),
                "{out}"
            );
        }
    }

    #[test]
    fn the_accept_header_picks_the_format() {
        for (accept, format) in [
            (None, Format::Text),
            (Some("text/plain"), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"), Format::Text),
            // What Prometheus 2.x sends.
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                Format::OpenMetrics,
            ),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text;q=0.5, text/plain"),
                Format::Text,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Text),
        ] {
            assert_eq!(Format::from_accept(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn failover_labels_come_from_the_claim_kind() {
        for (why, label) in [
            (ClaimWhy::Released, "released"),
            (ClaimWhy::LeaseExpired, "lease_expired"),
            (ClaimWhy::Planned, "planned"),
            (ClaimWhy::Forced, "forced"),
            (ClaimWhy::First, "first"),
            (ClaimWhy::Restart, "restart"),
        ] {
            assert_eq!(why.label(), label);
        }
        let m = Metrics::new();
        m.failover(ClaimWhy::LeaseExpired);
        assert!(m
            .encode(Format::Text)
            .contains("jenkins_ha_failovers_total{reason=\"lease_expired\"} 1\n"));
    }

    /// `monitoring/metrics.txt`: (name, type, labels, help) per metric.
    fn listed() -> Vec<(String, String, String, String)> {
        include_str!("../../monitoring/metrics.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let mut w = l.splitn(4, ' ');
                let mut next = || w.next().unwrap_or("").trim().to_string();
                (next(), next(), next(), next())
            })
            .collect()
    }

    #[test]
    fn the_text_output_has_exactly_the_families_of_metrics_txt() {
        let m = Metrics::new();
        m.known_sockets(&["/s"]);
        m.set_peer("p", Some(0.1), Some(0.01), true);
        let text = m.encode(Format::Text);
        let mut exported = Vec::new();
        let mut help = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap();
                help.insert(name.to_string(), text.to_string());
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                // The labels of its first sample (every family has one here).
                let sample = text
                    .lines()
                    .find(|l| {
                        let series = l.split(['{', ' ']).next().unwrap_or("");
                        !l.starts_with('#')
                            && ["", "_bucket", "_sum", "_count"]
                                .iter()
                                .any(|suffix| series == format!("{name}{suffix}"))
                    })
                    .unwrap_or_else(|| panic!("{name} has no sample"));
                let labels: Vec<&str> = sample
                    .split_once('{')
                    .map(|(_, rest)| {
                        rest.split(',')
                            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
                            .filter(|k| *k != "le")
                            .collect()
                    })
                    .unwrap_or_default();
                let labels = if labels.is_empty() {
                    "-".to_string()
                } else {
                    labels.join(",")
                };
                exported.push((
                    name.to_string(),
                    kind.to_string(),
                    labels,
                    help.get(name).cloned().unwrap_or_default(),
                ));
            }
        }
        let mut want = listed();
        want.sort();
        exported.sort();
        assert_eq!(exported, want);
    }
}
