//! The daemon's clock: CLOCK_BOOTTIME, read as time since the process first asked.
//!
//! Every lease deadline, every `/active` answer and every "no write after" check compares values
//! of this clock ([`crate::core::Mono`]). CLOCK_BOOTTIME is monotonic like CLOCK_MONOTONIC but
//! keeps counting while the host is suspended. A holder suspended for an hour has, on resume,
//! a lease that ran out an hour ago: its first look at this clock says so, before it writes
//! anything or answers `/active` with 200. With CLOCK_MONOTONIC (tokio's `Instant`), which stops
//! during a suspend, it would trust its lease for up to `lease_timeout − margin` more while the
//! other node, whose clock kept running, has already taken over.
//!
//! Timers (sleeps) still run on tokio's clock; they only decide *when* to look, never what is
//! true, so a timer that fires late after a resume is harmless.

use std::sync::OnceLock;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use crate::core::Mono;

fn boottime() -> Duration {
    // CLOCK_BOOTTIME exists on every Linux since 2.6.39; fall back to CLOCK_MONOTONIC only if the
    // call fails (it cannot, short of seccomp denying it).
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
        .map(Duration::from)
        .unwrap_or_default()
}

fn origin() -> Duration {
    static ORIGIN: OnceLock<Duration> = OnceLock::new();
    *ORIGIN.get_or_init(boottime)
}

/// Now, on the daemon's clock.
pub fn now() -> Mono {
    let origin = origin();
    boottime().saturating_sub(origin)
}

/// The tokio instant at which the daemon's clock will read `at` (for timers), or now if that is
/// past.
pub fn instant_of(at: Mono) -> tokio::time::Instant {
    tokio::time::Instant::now() + at.saturating_sub(now())
}

/// Whether the daemon's clock has reached `deadline`.
pub fn passed(deadline: Mono) -> bool {
    now() >= deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_with_real_time() {
        let a = now();
        let wall = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        let b = now();
        let elapsed = wall.elapsed();
        assert!(b > a);
        // BOOTTIME advances at least as fast as MONOTONIC (they differ only across a suspend).
        assert!(
            b - a + Duration::from_millis(2) >= Duration::from_millis(30),
            "{:?}",
            b - a
        );
        assert!(
            b - a <= elapsed + Duration::from_millis(5),
            "{:?} vs {elapsed:?}",
            b - a
        );
    }

    #[test]
    fn deadlines_and_timer_instants_agree() {
        let deadline = now() + Duration::from_millis(40);
        assert!(!passed(deadline));
        let at = instant_of(deadline);
        let left = at.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            left <= Duration::from_millis(40) && left >= Duration::from_millis(30),
            "{left:?}"
        );
        std::thread::sleep(Duration::from_millis(45));
        assert!(passed(deadline));
        // A past deadline maps to a timer that fires at once.
        assert!(instant_of(Duration::ZERO) <= tokio::time::Instant::now());
    }
}
