//! The replication schedule: parsing intervals and placing sync times on it.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// An interval that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an interval: use a whole number with a unit, e.g. 1m, 5m, 1h, 1d, 30s, or a sum such as 1h30m"
)]
pub struct IntervalError(pub String);

/// Parses an interval as Ramen's DRPolicy writes it (`^\d+[mhd]$`, e.g. `1m`, `1d`) and as Go's
/// `time.ParseDuration` writes one (`1m0s`, `90s`, `1h30m`). Go itself has no `d`; Ramen's
/// policies do, and a storage system scheduling snapshots by them takes a day as 24 h.
pub fn parse_interval(text: &str) -> Result<Duration, IntervalError> {
    let err = || IntervalError(text.to_owned());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| err())?)
            .ok_or_else(err)?;
        total = total.checked_add(part).ok_or_else(err)?;
    }
    if total.is_zero() {
        return Err(err());
    }
    Ok(total)
}

/// Formats a duration as Go's `time.Duration.String()` does for whole seconds and above
/// (`0s`, `1s`, `1m0s`, `1h30m0s`), which is how `metav1.Duration` appears in JSON.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let nanos = d.subsec_nanos();
    let sec = if nanos == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{nanos:09}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => sec,
        (0, m) => format!("{m}m{sec}"),
        (h, m) => format!("{h}h{m}m{sec}"),
    }
}

/// Truncates to whole seconds: `metav1.Time` carries no more, and comparing a status we
/// computed with the one read back must not differ in nanoseconds.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The latest sync on the schedule that started at `last` with period `interval`, as of `now`:
/// `last + k·interval` for the largest `k ≥ 0` not after `now`. A storage system keeps syncing
/// while its CSI controller is away, so after a gap the time jumps to the latest tick rather
/// than crawling forward one interval per reconcile.
pub fn latest_sync(last: Timestamp, interval: Duration, now: Timestamp) -> Timestamp {
    let Ok(step) = SignedDuration::try_from(interval) else {
        return last;
    };
    if step.is_zero() || now <= last {
        return last;
    }
    let elapsed = now.duration_since(last);
    let k = elapsed.as_nanos() / step.as_nanos();
    let Ok(k) = i32::try_from(k) else {
        return whole_seconds(now);
    };
    step.checked_mul(k)
        .and_then(|d| last.checked_add(d).ok())
        .unwrap_or(last)
}

/// How long until the sync after `last`, as of `now` (at least one second, so a clock a little
/// behind does not spin).
pub fn until_next_sync(last: Timestamp, interval: Duration, now: Timestamp) -> Duration {
    let next = SignedDuration::try_from(interval)
        .ok()
        .and_then(|d| latest_sync(last, interval, now).checked_add(d).ok());
    match next {
        Some(next) if next > now => Duration::try_from(next.duration_since(now))
            .unwrap_or(interval)
            .max(Duration::from_secs(1)),
        _ => Duration::from_secs(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn intervals_as_ramen_and_go_write_them() {
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_interval("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_interval("1m0s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_interval("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["", "m", "1", "1x", "0m", "-1m", "1.5m", "m1", "1m 2s"] {
            assert!(parse_interval(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn go_duration_strings() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn sync_times_stay_on_the_schedule() {
        let i = Duration::from_secs(60);
        assert_eq!(latest_sync(ts(1000), i, ts(1000)), ts(1000));
        assert_eq!(latest_sync(ts(1000), i, ts(1059)), ts(1000));
        assert_eq!(latest_sync(ts(1000), i, ts(1060)), ts(1060));
        assert_eq!(latest_sync(ts(1000), i, ts(1185)), ts(1180));
        // A clock behind the last sync never moves it backwards.
        assert_eq!(latest_sync(ts(1000), i, ts(900)), ts(1000));
        assert_eq!(
            until_next_sync(ts(1000), i, ts(1000)),
            Duration::from_secs(60)
        );
        assert_eq!(
            until_next_sync(ts(1000), i, ts(1185)),
            Duration::from_secs(55)
        );
        // A clock behind waits for the next tick after the last sync.
        assert_eq!(
            until_next_sync(ts(1000), i, ts(900)),
            Duration::from_secs(160)
        );
    }
}
