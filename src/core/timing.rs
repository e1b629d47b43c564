//! The protocol's timing knobs and every rule derived from them, in one place: how long a holder
//! trusts its own lease (the self-fencing margin), when a lease is stale, when a peer counts
//! as reachable, and the part of the timing every node must share ([`SharedTiming`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Time on the daemon's own clock (CLOCK_BOOTTIME since the daemon started: it keeps counting
/// while the host is suspended). Wall clocks never enter a decision.
pub type Mono = Duration;

/// The timing knobs of the protocol (`timing.*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Heartbeat, health check and lease renewal period.
    #[serde(with = "millis")]
    pub interval: Duration,
    /// Failed Jenkins health checks in a row before the active steps down.
    pub fall: u32,
    /// Passed checks in a row before a standby may take over.
    pub rise: u32,
    /// A lease not renewed for this long may be taken over.
    #[serde(with = "millis")]
    pub lease_timeout: Duration,
}

impl Timing {
    /// How long before the peer may take over the holder stops trusting its own lease:
    /// max(2 × interval, 20 % of lease_timeout), as `protocol.md` fixes it.
    pub fn margin(&self) -> Duration {
        std::cmp::max(self.interval * 2, self.lease_timeout / 5)
    }

    /// How long after the start of its last successful renewal a holder trusts its lease.
    pub fn trust(&self) -> Duration {
        self.lease_timeout.saturating_sub(self.margin())
    }

    /// Whether a lease whose counter has been still for `still` may be taken over.
    pub fn stale(&self, still: Duration) -> bool {
        still >= self.lease_timeout
    }

    /// Whether another node last heard `age` ago counts as reachable. The one rule for peer
    /// freshness: heartbeats go every interval, and a node that missed three in a row is
    /// `unreachable`, as keepalived counts a dead peer (in `status`, for switchovers, for the
    /// ranking of standbys, and for the holder's release rule). It is never a reason to take
    /// over: only the lease is.
    pub fn peer_fresh(&self, age: Duration) -> bool {
        age <= self.interval * 3
    }

    /// The part of the timing that every node of a cluster must share.
    pub fn shared(&self) -> SharedTiming {
        SharedTiming {
            interval: self.interval,
            lease_timeout: self.lease_timeout,
            fall: self.fall,
        }
    }
}

/// The timing every node must share, as it travels in heartbeats and term records.
///
/// A holder trusts its lease for its own `lease_timeout` less a margin; a standby takes a
/// stale term over after *its* `lease_timeout`. Were the standby's shorter, it could take over
/// while the holder still trusts its lease (Patroni keeps its TTL in the shared store for the
/// same reason). So a node never takes over a stale term whose holder runs another timing.
/// `interval` and `fall` shape how fast a holder renews and how soon it gives up its term, and
/// must agree too; `rise` is each node's own business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SharedTiming {
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    #[serde(rename = "lease_timeout_ms", with = "millis")]
    pub lease_timeout: Duration,
    pub fall: u32,
}

impl SharedTiming {
    /// The names of the fields that differ from `other`'s (`interval`, `lease_timeout`, `fall`),
    /// as in the config's `timing:` section; empty when they agree.
    pub fn differing(&self, other: &SharedTiming) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.interval != other.interval {
            out.push("interval");
        }
        if self.lease_timeout != other.lease_timeout {
            out.push("lease_timeout");
        }
        if self.fall != other.fall {
            out.push("fall");
        }
        out
    }
}

impl std::fmt::Display for SharedTiming {
    /// `interval 1s, lease_timeout 5s, fall 3`: durations as the config writes them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interval {}, lease_timeout {}, fall {}",
            config_duration(self.interval),
            config_duration(self.lease_timeout),
            self.fall
        )
    }
}

/// A duration as it would be written in the config: `5s`, or `500ms` when not whole seconds.
pub fn config_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A duration in seconds with one decimal, for reason sentences.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Durations as whole milliseconds on the wire (heartbeats, term records).
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(interval_ms: u64, lease_ms: u64) -> Timing {
        Timing {
            interval: Duration::from_millis(interval_ms),
            fall: 3,
            rise: 2,
            lease_timeout: Duration::from_millis(lease_ms),
        }
    }

    #[test]
    fn the_margin_is_two_intervals_or_a_fifth_of_the_lease() {
        assert_eq!(t(1000, 5000).margin(), Duration::from_secs(2));
        assert_eq!(t(200, 5000).margin(), Duration::from_secs(1));
        assert_eq!(t(1000, 5000).trust(), Duration::from_secs(3));
    }

    #[test]
    fn shared_timing_names_what_differs_and_reads_like_the_config() {
        let mine = t(1000, 3000).shared();
        let theirs = t(1000, 5000).shared();
        assert_eq!(mine.differing(&theirs), ["lease_timeout"]);
        assert!(mine.differing(&mine).is_empty());
        let mut other = t(500, 5000).shared();
        other.fall = 4;
        assert_eq!(
            mine.differing(&other),
            ["interval", "lease_timeout", "fall"]
        );
        assert_eq!(
            other.to_string(),
            "interval 500ms, lease_timeout 5s, fall 4"
        );
        // On the wire: whole milliseconds, named with their unit.
        let json = serde_json::to_string(&mine).unwrap();
        assert_eq!(
            json,
            r#"{"interval_ms":1000,"lease_timeout_ms":3000,"fall":3}"#
        );
        assert_eq!(serde_json::from_str::<SharedTiming>(&json).unwrap(), mine);
    }

    #[test]
    fn a_lease_is_stale_after_the_lease_timeout_a_peer_after_three_missed_heartbeats() {
        let t = t(1000, 5000);
        assert!(!t.stale(Duration::from_millis(4999)));
        assert!(t.stale(Duration::from_secs(5)));
        assert!(t.peer_fresh(Duration::from_secs(3)));
        assert!(!t.peer_fresh(Duration::from_millis(3001)));
    }
}
