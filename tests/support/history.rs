//! Synthetic analytics histories: what `cache-analytics collect` would have appended every 15
//! minutes, with figures the test chooses, so reports can be checked against known answers.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Timelike, Utc};

/// The figures of one Redis target at one snapshot.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Bytes in use.
    pub used_memory: f64,
    /// `maxmemory` (0 for none).
    pub maxmemory: f64,
    /// Cumulative keyspace hits.
    pub hits: f64,
    /// Cumulative keyspace misses.
    pub misses: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Mean PING latency, milliseconds.
    pub latency_ms: f64,
    /// The hit ratio INFO gave (since the server started); from the counters when `None`.
    pub hit_ratio: Option<f64>,
}

/// Snapshots every 15 minutes from `start` for `days` days; `at(step, time)` gives each one's
/// figures. Returns the JSON Lines text of `analytics/history.jsonl`.
pub fn history(start: &str, days: i64, mut at: impl FnMut(i64, DateTime<Utc>) -> Sample) -> String {
    let start = DateTime::parse_from_rfc3339(start).expect("an RFC 3339 start").to_utc();
    let mut out = String::new();
    for step in 0..days * 96 {
        let t = start + Duration::minutes(15 * step);
        let s = at(step, t);
        let hit_ratio = s.hit_ratio.unwrap_or(if s.hits + s.misses > 0.0 { s.hits / (s.hits + s.misses) } else { 0.0 });
        let line = serde_json::json!({
            "schema_version": 1,
            "timestamp": t,
            "redis": [{
                "name": "main",
                "info": {
                    "used_memory": s.used_memory,
                    "used_memory_peak": s.used_memory,
                    "maxmemory": s.maxmemory,
                    "keyspace_hits": s.hits,
                    "keyspace_misses": s.misses,
                    "total_commands_processed": s.hits + s.misses,
                    "instantaneous_ops_per_sec": s.ops_per_sec,
                    "evicted_keys": 0.0,
                    "connected_clients": 3.0,
                },
                "keys": 1000,
                "hit_ratio": hit_ratio,
                "latency": { "avg_ms": s.latency_ms, "min_ms": s.latency_ms, "max_ms": s.latency_ms, "samples": 10 },
                "prefixes": [],
                "sampled": 0,
            }],
            "postgres": [],
            "memory": [],
            "dirs": [],
            "host": { "load1": 0.1, "memory_percent": 20.0, "cpus": 2 },
        });
        writeln!(out, "{line}").expect("writing to a String");
    }
    out
}

/// The week the analytics tests use, 2026-03-01 to 2026-03-07 (UTC), with known answers:
///
/// - 1000 lookups per 15 minutes, 90% hits for six days and 80% on the last one
///   (a performance decline of 11.1% over the last 24 hours);
/// - memory 100 MiB growing by 15 MiB a day (15%/day of the start: a capacity insight),
///   `maxmemory` 2 GiB;
/// - operations per second 100 (with a little jitter), 5 from 02:00 to 05:00 (low-usage
///   windows at 02:00 and 03:00);
/// - latency about 1 ms, with one spike of 50 ms at 2026-03-05 12:00 (the only latency anomaly).
pub fn known_week(days: i64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let (mut hits, mut misses) = (0.0, 0.0);
    history("2026-03-01T00:00:00Z", days, |step, t| {
        let day = step / 96;
        let ratio = if day == days - 1 { 0.8 } else { 0.9 };
        hits += 1000.0 * ratio;
        misses += 1000.0 * (1.0 - ratio);
        let spike = t == DateTime::parse_from_rfc3339("2026-03-05T12:00:00Z").expect("a time").to_utc();
        Sample {
            used_memory: 100.0 * MIB + 15.0 * MIB * step as f64 / 96.0,
            maxmemory: 2048.0 * MIB,
            hits,
            misses,
            ops_per_sec: if (2..5).contains(&t.hour()) { 5.0 } else { 100.0 + (step % 7) as f64 },
            latency_ms: if spike { 50.0 } else { 1.0 + 0.01 * (step % 10) as f64 },
            hit_ratio: None,
        }
    })
}
