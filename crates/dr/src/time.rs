//! Scheduling intervals and human-readable ages.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A `schedulingInterval` that is not `<n>m`, `<n>h` or `<n>d`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduling interval {0:?} is not <number>m, <number>h or <number>d (e.g. 5m, 1h, 1d)")]
pub struct BadInterval(pub String);

/// Parses a DRPolicy `schedulingInterval` as Ramen does (`GetSecondsFromSchedulingInterval`),
/// restricted to what Ramen's CRD admits (`^(|\d+[mhd])$`). Empty means synchronous
/// replication (Metro DR) and gives `None`, as does a zero interval.
pub fn parse_scheduling_interval(s: &str) -> Result<Option<Duration>, BadInterval> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || BadInterval(s.to_string());
    let (digits, unit) = s.split_at(s.len() - 1);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(bad)?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// How long ago `t` was, at `now` (zero for a time in the future: clocks differ).
pub fn age(now: Timestamp, t: &Time) -> Duration {
    let secs = now.as_second() - t.0.as_second();
    Duration::from_secs(secs.max(0) as u64)
}

/// A short human duration: `45s`, `4m10s`, `37m`, `5h12m`, `3d4h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=599 => match s % 60 {
            0 => format!("{}m", s / 60),
            r => format!("{}m{r}s", s / 60),
        },
        600..=3599 => format!("{}m", s / 60),
        3600..=86_399 => match (s % 3600) / 60 {
            0 => format!("{}h", s / 3600),
            m => format!("{}h{m}m", s / 3600),
        },
        _ => match (s % 86_400) / 3600 {
            0 => format!("{}d", s / 86_400),
            h => format!("{}d{h}h", s / 86_400),
        },
    }
}

/// `2026-11-27T10:00:00Z (3m ago)`.
pub fn when(now: Timestamp, t: &Time) -> String {
    format!("{} ({} ago)", rfc3339(t), human(age(now, t)))
}

/// RFC 3339 with second precision, as Kubernetes writes times.
pub fn rfc3339(t: &Time) -> String {
    let secs = t.0.as_second();
    Timestamp::from_second(secs)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| t.0.to_string())
}

/// Parses an RFC 3339 time (for example the `drbridge.io/unreachable-since` annotation).
pub fn parse_time(s: &str) -> Option<Time> {
    s.parse::<Timestamp>().ok().map(Time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_as_ramen_reads_them() {
        assert_eq!(
            parse_scheduling_interval("5m"),
            Ok(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            parse_scheduling_interval("1h"),
            Ok(Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            parse_scheduling_interval("2d"),
            Ok(Some(Duration::from_secs(172_800)))
        );
        assert_eq!(parse_scheduling_interval(""), Ok(None));
        assert_eq!(parse_scheduling_interval("0m"), Ok(None));
        for bad in ["5", "m", "5s", "1h30m", "-1m", " 5m", "5M"] {
            assert!(parse_scheduling_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_durations() {
        let h = |s| human(Duration::from_secs(s));
        assert_eq!(h(0), "0s");
        assert_eq!(h(45), "45s");
        assert_eq!(h(119), "119s");
        assert_eq!(h(120), "2m");
        assert_eq!(h(250), "4m10s");
        assert_eq!(h(2220), "37m");
        assert_eq!(h(3600), "1h");
        assert_eq!(h(18_720), "5h12m");
        assert_eq!(h(86_400 * 3 + 3600 * 4), "3d4h");
    }

    #[test]
    fn ages_never_negative() {
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let past = parse_time("2026-11-27T09:57:00Z").unwrap();
        let future = parse_time("2026-11-27T10:00:05Z").unwrap();
        assert_eq!(age(now, &past), Duration::from_secs(180));
        assert_eq!(age(now, &future), Duration::ZERO);
        assert_eq!(when(now, &past), "2026-11-27T09:57:00Z (3m ago)");
    }
}
