//! Durations as a person says them ("42s", "5h 3m", "0.4 ms"), for the status page and `check`.

use std::time::{Duration, SystemTime};

/// A duration the way a person says it: "42s", "47m", "5h 3m", "2d 4h".
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => match (secs % 3600) / 60 {
            0 => format!("{}h", secs / 3600),
            minutes => format!("{}h {minutes}m", secs / 3600),
        },
        _ => match (secs % 86400) / 3600 {
            0 => format!("{}d", secs / 86400),
            hours => format!("{}d {hours}h", secs / 86400),
        },
    }
}

/// A request's latency in milliseconds: whole ones from 1 ms ("12 ms"), tenths below ("0.4 ms",
/// where whole ones said "0 ms" of every loopback or LAN answer), "< 0.1 ms" below that. Cut,
/// not rounded, like whole milliseconds, so 999 µs never reads "1 ms".
pub fn millis(duration: Duration) -> String {
    let micros = duration.as_micros();
    match micros {
        0..100 => "< 0.1 ms".to_string(),
        100..1000 => format!("0.{} ms", micros / 100),
        _ => format!("{} ms", duration.as_millis()),
    }
}

/// When something expires, from `now`: "in 23 days", "in 5h 3m", "expired 2 days ago".
pub fn until(at: SystemTime, now: SystemTime) -> String {
    let days = |d: Duration| match d.as_secs() / 86400 {
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    };
    match at.duration_since(now) {
        Ok(left) if left.as_secs() >= 86400 => format!("in {}", days(left)),
        Ok(left) => format!("in {}", human(left)),
        Err(past) if past.duration().as_secs() >= 86400 => {
            format!("expired {} ago", days(past.duration()))
        }
        Err(past) => format!("expired {} ago", human(past.duration())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_read_as_days_left_or_ago() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86400);
        assert_eq!(
            until(now + 23 * day + Duration::from_secs(5), now),
            "in 23 days"
        );
        assert_eq!(until(now + day, now), "in 1 day");
        assert_eq!(
            until(now + Duration::from_secs(5 * 3600 + 180), now),
            "in 5h 3m"
        );
        assert_eq!(until(now - 2 * day, now), "expired 2 days ago");
        assert_eq!(until(now - Duration::from_secs(90), now), "expired 1m ago");
    }

    /// Issue 26: a sub-millisecond latency read "0 ms".
    #[test]
    fn latencies_under_a_millisecond_keep_a_decimal() {
        let cases = [
            (0, "< 0.1 ms"),
            (99, "< 0.1 ms"),
            (100, "0.1 ms"),
            (400, "0.4 ms"),
            (999, "0.9 ms"),
            (1_000, "1 ms"),
            (1_999, "1 ms"),
            (12_345, "12 ms"),
            (2_500_000, "2500 ms"),
        ];
        for (micros, text) in cases {
            assert_eq!(millis(Duration::from_micros(micros)), text, "{micros} µs");
        }
    }

    #[test]
    fn durations_read_like_a_person_says_them() {
        let cases = [
            (0, "0s"),
            (42, "42s"),
            (60, "1m"),
            (47 * 60 + 59, "47m"),
            (3600, "1h"),
            (5 * 3600 + 180, "5h 3m"),
            (86400, "1d"),
            (2 * 86400 + 4 * 3600 + 59, "2d 4h"),
        ];
        for (secs, text) in cases {
            assert_eq!(human(Duration::from_secs(secs)), text, "{secs}s");
        }
    }
}
