//! Timer trigger specs and their epoch-aligned fire slots.
//!
//! Jenkins' `TimerTrigger` takes a cron spec. The stand-in understands one stand-in extension,
//! `@every <humantime duration>` (e.g. `@every 3s`), which fires at the wall-clock instants that are
//! multiples of the period since the Unix epoch. Two controllers with the same job therefore fire at
//! the same instants, and each fire has an identity shared by both: its slot (job, instant in ms).
//! Blank lines and `#` comments are skipped, as in a cron spec; any other line is unsupported.

use std::time::Duration;

/// The shortest period accepted.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);

/// The period of a spec, or why it is not understood.
pub fn parse_spec(spec: &str) -> Result<Duration, String> {
    let mut period = None;
    for line in spec.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix("@every") else {
            return Err(format!(
                "unsupported timer spec line {line:?} (the stand-in knows only \"@every <duration>\")"
            ));
        };
        let d = humantime::parse_duration(rest.trim())
            .map_err(|e| format!("bad duration in timer spec line {line:?}: {e}"))?;
        if d < MIN_PERIOD {
            return Err(format!(
                "timer period {d:?} in {line:?} is shorter than {MIN_PERIOD:?}"
            ));
        }
        if period.is_some() {
            return Err("more than one @every line in a timer spec".into());
        }
        period = Some(d);
    }
    period.ok_or_else(|| "empty timer spec".to_string())
}

/// The latest slot at or before `now_ms` for a period.
pub fn slot_at(now_ms: u64, period_ms: u64) -> u64 {
    now_ms - now_ms % period_ms.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_slots() {
        assert_eq!(parse_spec("@every 3s"), Ok(Duration::from_secs(3)));
        assert_eq!(
            parse_spec("# nightly\n\n  @every 500ms \n"),
            Ok(Duration::from_millis(500))
        );
        assert!(parse_spec("H/5 * * * *").is_err());
        assert!(parse_spec("@every 10ms").is_err());
        assert!(parse_spec("@every soon").is_err());
        assert!(parse_spec("").is_err());
        assert!(parse_spec("@every 1s\n@every 2s").is_err());
        assert_eq!(slot_at(10_999, 1000), 10_000);
        assert_eq!(slot_at(12_000, 3000), 12_000);
    }
}
