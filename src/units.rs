//! Bytes, durations and timestamps as the tool shows and stores them: sizes
//! in binary units for people, `H:MM:SS` clocks, RFC 3339 timestamps (UTC,
//! whole seconds) in every file it writes.

use std::time::Duration;

use chrono::{DateTime, Utc};

pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// An RFC 3339 timestamp as the state files carry it.
pub fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A time as the state files write it: `2026-11-30T18:36:23Z`.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Seconds since the epoch (a `creation` property) as a timestamp.
pub fn stamp_epoch(epoch: i64) -> String {
    stamp(DateTime::from_timestamp(epoch, 0).unwrap_or_default())
}

/// Now, as the state files write it.
/// Seconds since the epoch, now (0 before 1970).
pub fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn now_stamp() -> String {
    stamp(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
    }

    #[test]
    fn stamps_round_trip() {
        let t = parse_time("2026-11-30T18:36:23Z").unwrap();
        assert_eq!(stamp(t), "2026-11-30T18:36:23Z");
        assert_eq!(parse_time("yesterday"), None);
    }
}
