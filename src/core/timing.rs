//! The protocol's timing knobs and every rule derived from them, in one place: how long a holder
//! trusts its own lease (the self-fencing margin), when a lease is stale, and when a peer counts
//! as reachable.

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
    fn a_lease_is_stale_after_the_lease_timeout_a_peer_after_three_missed_heartbeats() {
        let t = t(1000, 5000);
        assert!(!t.stale(Duration::from_millis(4999)));
        assert!(t.stale(Duration::from_secs(5)));
        assert!(t.peer_fresh(Duration::from_secs(3)));
        assert!(!t.peer_fresh(Duration::from_millis(3001)));
    }
}
