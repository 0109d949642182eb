//! The analytics history: one [`Snapshot`] of every tier every 15 minutes in
//! `analytics/history.jsonl` (written by `cache-analytics collect`), and the reductions the
//! tools that read it share: a [`Point`] per snapshot (the Redis targets added up), a [`Day`]
//! per UTC day, seed 002's weekly analysis, and the hour-of-day usage profile.
//!
//! Counters (hits, misses, commands, evictions) become increases the way Prometheus's
//! `increase()` does: a drop means a restart, and the value after it counts from zero.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where `cache-analytics windows` leaves the low-usage windows, for the scheduler.
pub const WINDOWS_FILE: &str = "analytics/windows.json";
/// Where reports are written, in the state directory.
pub const REPORTS_DIR: &str = "analytics/reports";

/// The history file, in the state directory.
pub const HISTORY: &str = "analytics/history.jsonl";

/// Latency of repeated probes (seed 002: ten samples).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Mean, milliseconds.
    pub avg_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Samples taken.
    pub samples: u32,
}

impl Latency {
    /// From samples in milliseconds.
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        Self {
            avg_ms: samples.iter().sum::<f64>() / samples.len() as f64,
            min_ms: samples.iter().copied().fold(f64::MAX, f64::min),
            max_ms: samples.iter().copied().fold(f64::MIN, f64::max),
            samples: samples.len() as u32,
        }
    }
}

/// Keys and bytes under one prefix, estimated from a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrefixFigures {
    /// The prefix (a configured one, or the first `:`-segment).
    pub prefix: String,
    /// Estimated keys.
    pub keys: u64,
    /// Estimated bytes.
    pub bytes: u64,
}

/// A Redis target's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisFigures {
    /// Target name.
    pub name: String,
    /// Error, when the target could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// INFO figures (used_memory, keyspace_hits, instantaneous_ops_per_sec...).
    pub info: BTreeMap<String, f64>,
    /// Keys in every database.
    pub keys: u64,
    /// hits / (hits + misses), when there were lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<f64>,
    /// PING round trips.
    pub latency: Latency,
    /// Per prefix, from a sample of at most `sampled` keys.
    pub prefixes: Vec<PrefixFigures>,
    /// Keys in the sample.
    pub sampled: u64,
    /// What was covered on a cluster (`3 of 3 primaries`); figures are summed over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<String>,
}

/// A PostgreSQL cache table's figures (seed 000's statistics query).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PostgresFigures {
    /// Target name.
    pub name: String,
    /// Error, when the target could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows of the project.
    pub total_entries: i64,
    /// Mean `access_count`.
    pub avg_access_count: f64,
    /// Rows accessed in the last hour.
    pub hot_entries: i64,
    /// Distinct categories.
    pub active_categories: i64,
    /// Mean age, seconds.
    pub avg_age_seconds: f64,
    /// Rows whose metadata has `optimized`.
    pub optimized_entries: i64,
    /// `SELECT 1` round trips.
    pub latency: Latency,
}

/// A memory API's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryFigures {
    /// Target name.
    pub name: String,
    /// Error, when the target could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Memories of the user (a floor when `truncated`).
    pub memories: u64,
    /// The list may be incomplete (a capped self-hosted answer, a bound that stopped paging):
    /// `memories` says "at least".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// List round trips.
    pub latency: Latency,
}

/// A directory's size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirFigures {
    /// `files` or `logs`.
    pub tier: String,
    /// Target name.
    pub name: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// Files.
    pub files: u64,
}

/// The host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFigures {
    /// One-minute load.
    pub load1: f64,
    /// Memory in use, percent.
    pub memory_percent: f64,
    /// CPUs.
    pub cpus: usize,
}

/// The GPUs, as NVML saw them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuFigures {
    /// NVML answered. When it did not, `reason` says why and there is no figure: unknown,
    /// never 0.
    pub available: bool,
    /// Why NVML gave nothing (no driver, no GPU, the probe's time out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each GPU's figures (each one `None` where NVML would not give it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<crate::gpu::GpuInfo>,
}

impl GpuFigures {
    /// The figures of a probe's reading: the seam between NVML and the history, so that a
    /// reading is recorded the same whether it came from a device or was made by hand.
    pub fn of(status: &crate::gpu::GpuStatus) -> Self {
        match status {
            crate::gpu::GpuStatus::Available { gpus } if gpus.is_empty() => {
                Self { available: false, reason: Some("NVML found no GPU".into()), gpus: Vec::new() }
            }
            crate::gpu::GpuStatus::Available { gpus } => Self { available: true, reason: None, gpus: gpus.clone() },
            crate::gpu::GpuStatus::NotAvailable { reason } => {
                Self { available: false, reason: Some(reason.clone()), gpus: Vec::new() }
            }
        }
    }
}

/// One snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// Redis targets.
    pub redis: Vec<RedisFigures>,
    /// PostgreSQL targets.
    pub postgres: Vec<PostgresFigures>,
    /// Memory-API targets.
    pub memory: Vec<MemoryFigures>,
    /// File-cache and log directories.
    pub dirs: Vec<DirFigures>,
    /// The host.
    pub host: HostFigures,
    /// The GPUs; `None` when they were not probed (`system.gpu = false`, a `--tier` leaving
    /// the system out, or a history older than the figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuFigures>,
}

/// One snapshot reduced to the figures reports use: the Redis targets added up.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// When.
    pub t: DateTime<Utc>,
    /// `used_memory`, bytes.
    pub used_memory: f64,
    /// `maxmemory`, bytes (0 when any target has none).
    pub maxmemory: f64,
    /// Counter `keyspace_hits`.
    pub hits: f64,
    /// Counter `keyspace_misses`.
    pub misses: f64,
    /// `keyspace_hits` once `collect` had taken its key sample, whose TYPE and PTTL lookups
    /// Redis counts as hits: the next interval's lookups are counted from here (histories
    /// written before the lookup ledger; see `own`).
    pub hits_after: f64,
    /// `keyspace_misses` likewise.
    pub misses_after: f64,
    /// The toolkit's own lookups on these servers so far, from the ledger
    /// ([`crate::ledger`]): every tool's, not only collect's sample. `None` in older histories.
    pub own: Option<(f64, f64)>,
    /// The toolkit's own commands on these servers so far, from the ledger. `None` in older
    /// histories.
    pub own_commands: Option<f64>,
    /// Counter `total_commands_processed`, or hits + misses where not collected.
    pub commands: f64,
    /// Counter `evicted_keys`.
    pub evicted: f64,
    /// `instantaneous_ops_per_sec`.
    pub ops_per_sec: f64,
    /// Mean PING latency, milliseconds.
    pub latency_ms: f64,
    /// Whether every Redis target answered.
    pub connected: bool,
}

impl Point {
    /// Reduces a snapshot; `None` when it has no readable Redis target.
    pub fn of(s: &Snapshot) -> Option<Self> {
        let ok: Vec<_> = s.redis.iter().filter(|r| r.error.is_none()).collect();
        if ok.is_empty() {
            return None;
        }
        let sum = |key: &str| ok.iter().filter_map(|r| r.info.get(key)).sum::<f64>();
        let hits = sum("keyspace_hits");
        let misses = sum("keyspace_misses");
        let after = |key: &str, before: &str| {
            ok.iter().filter_map(|r| r.info.get(key).or_else(|| r.info.get(before))).sum::<f64>()
        };
        let commands = if ok.iter().all(|r| r.info.contains_key("total_commands_processed")) {
            sum("total_commands_processed")
        } else {
            hits + misses
        };
        let maxmemory =
            if ok.iter().all(|r| r.info.get("maxmemory").is_some_and(|m| *m > 0.0)) { sum("maxmemory") } else { 0.0 };
        Some(Self {
            t: s.timestamp,
            used_memory: sum("used_memory"),
            maxmemory,
            hits,
            misses,
            hits_after: after("keyspace_hits_after", "keyspace_hits"),
            misses_after: after("keyspace_misses_after", "keyspace_misses"),
            own: ok
                .iter()
                .all(|r| r.info.contains_key("toolkit_hits"))
                .then(|| (sum("toolkit_hits"), sum("toolkit_misses"))),
            own_commands: ok.iter().all(|r| r.info.contains_key("toolkit_commands")).then(|| sum("toolkit_commands")),
            commands,
            evicted: sum("evicted_keys"),
            ops_per_sec: sum("instantaneous_ops_per_sec"),
            latency_ms: ok.iter().map(|r| r.latency.avg_ms).sum::<f64>() / ok.len() as f64,
            connected: ok.len() == s.redis.len(),
        })
    }
}

/// The increase of a counter over a series, as Prometheus's `increase()` without
/// extrapolation: a value lower than the one before is a reset, and counts from zero.
pub fn increase(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut total = 0.0;
    let mut last: Option<f64> = None;
    for v in values {
        if let Some(prev) = last {
            total += if v >= prev { v - prev } else { v };
        }
        last = Some(v);
    }
    total
}

/// Keyspace hits and misses of the applications between the first and the last of `span`:
/// each interval's counter increases less the toolkit's own lookups in it (the ledger's
/// increase; in histories older than the ledger, counted from the counters left after the
/// earlier point's own sample). A counter lower than where it stood is a restart, and counts
/// from zero.
pub fn lookups(span: &[Point]) -> (f64, f64) {
    span.windows(2).fold((0.0, 0.0), |(h, m), w| {
        let (dh, dm) = interval_lookups(&w[0], &w[1]);
        (h + dh, m + dm)
    })
}

/// The applications' hits and misses between two consecutive points.
fn interval_lookups(a: &Point, b: &Point) -> (f64, f64) {
    let step = |from: f64, to: f64| if to >= from { to - from } else { to };
    match (a.own, b.own) {
        (Some((ah, am)), Some((bh, bm))) => {
            ((step(a.hits, b.hits) - step(ah, bh)).max(0.0), (step(a.misses, b.misses) - step(am, bm)).max(0.0))
        }
        _ => (step(a.hits_after, b.hits), step(a.misses_after, b.misses)),
    }
}

/// The applications' commands over `span`: the increase of `total_commands_processed` less
/// the toolkit's own (the ledger's increase), where every point knows it.
pub fn operations(span: &[Point]) -> f64 {
    let all = increase(span.iter().map(|p| p.commands));
    match span.iter().map(|p| p.own_commands).collect::<Option<Vec<f64>>>() {
        Some(own) => (all - increase(own)).max(0.0),
        None => all,
    }
}

/// The applications' hit ratio since the servers started, from one snapshot's INFO figures
/// (`keyspace_hits` and `keyspace_misses` less the toolkit's `toolkit_hits` and
/// `toolkit_misses`). For display only: judgement uses per-interval ratios.
pub fn application_hit_ratio(info: &BTreeMap<String, f64>) -> Option<f64> {
    let get = |k: &str| info.get(k).copied().unwrap_or(0.0);
    let hits = (get("keyspace_hits") - get("toolkit_hits")).max(0.0);
    let misses = (get("keyspace_misses") - get("toolkit_misses")).max(0.0);
    (hits + misses > 0.0).then(|| hits / (hits + misses))
}

/// The hit ratio of each interval between consecutive points (by [`lookups`]), at the later
/// point's time; intervals without lookups are left out.
pub fn interval_hit_ratios(points: &[Point]) -> Vec<(DateTime<Utc>, f64)> {
    points
        .windows(2)
        .filter_map(|w| {
            let (h, m) = lookups(w);
            (h + m > 0.0).then(|| (w[1].t, h / (h + m)))
        })
        .collect()
}

/// One UTC day of points.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Day {
    /// The day.
    pub date: NaiveDate,
    /// Snapshots in it.
    pub snapshots: usize,
    /// Hits / lookups of the day (`None` without lookups).
    pub hit_rate: Option<f64>,
    /// Keyspace hits of the day.
    pub hit_count: f64,
    /// Keyspace misses of the day.
    pub miss_count: f64,
    /// Commands processed in the day.
    pub total_operations: f64,
    /// Keys evicted in the day.
    pub evicted_keys: f64,
    /// `used_memory` at the last snapshot of the day.
    pub used_memory: f64,
    /// Highest `used_memory` of the day.
    pub peak_memory: f64,
    /// `maxmemory` at the last snapshot.
    pub maxmemory: f64,
    /// Mean, lowest and highest PING latency, milliseconds.
    pub avg_latency_ms: f64,
    /// Lowest.
    pub min_latency_ms: f64,
    /// Highest.
    pub max_latency_ms: f64,
}

/// Groups points (in time order) into UTC days. Counter increases are taken from the last
/// point of the day before, so nothing between midnight snapshots is lost.
pub fn days(points: &[Point]) -> Vec<Day> {
    let mut out: Vec<Day> = Vec::new();
    let mut start = 0;
    while start < points.len() {
        let date = points[start].t.date_naive();
        let end = start + points[start..].iter().take_while(|p| p.t.date_naive() == date).count();
        let from = start.saturating_sub(1);
        let span = &points[from..end];
        let counter = |f: fn(&Point) -> f64| increase(span.iter().map(f));
        let (hit_count, miss_count) = lookups(span);
        let day = &points[start..end];
        let latencies: Vec<f64> = day.iter().map(|p| p.latency_ms).collect();
        out.push(Day {
            date,
            snapshots: day.len(),
            hit_rate: (hit_count + miss_count > 0.0).then(|| hit_count / (hit_count + miss_count)),
            hit_count,
            miss_count,
            total_operations: operations(span),
            evicted_keys: counter(|p| p.evicted),
            used_memory: day[day.len() - 1].used_memory,
            peak_memory: day.iter().map(|p| p.used_memory).fold(0.0, f64::max),
            maxmemory: day[day.len() - 1].maxmemory,
            avg_latency_ms: mean(&latencies).unwrap_or(0.0),
            min_latency_ms: latencies.iter().copied().fold(f64::INFINITY, f64::min),
            max_latency_ms: latencies.iter().copied().fold(0.0, f64::max),
        });
        start = end;
    }
    out
}

/// The arithmetic mean; `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (0 for fewer than two values), as Python's `statistics.stdev`.
fn stdev(values: &[f64]) -> f64 {
    let Some(m) = mean(values) else { return 0.0 };
    if values.len() < 2 {
        return 0.0;
    }
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// The nearest-rank percentile `q` (0–1) of `values`.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// Seed 002's trend of a series from its first to its last value ("stable" when equal).
fn trend(first: f64, last: f64, higher_is_better: bool) -> &'static str {
    if last == first {
        "stable"
    } else if (last > first) == higher_is_better {
        "improving"
    } else {
        "declining"
    }
}

/// Seed 002's weekly analysis of `days` (and the snapshots behind them, for latency p95).
pub fn weekly_analysis(days: &[Day], points: &[Point]) -> Value {
    let rates: Vec<f64> = days.iter().filter_map(|d| d.hit_rate).collect();
    let hit_rate_analysis = match (rates.first(), rates.last()) {
        (Some(first), Some(last)) => json!({
            "average_hit_rate": mean(&rates),
            "min_hit_rate": rates.iter().copied().fold(f64::INFINITY, f64::min),
            "max_hit_rate": rates.iter().copied().fold(0.0, f64::max),
            "trend": trend(*first, *last, true),
            "volatility": stdev(&rates),
        }),
        _ => json!({ "status": "no_data" }),
    };
    let daily_latency: Vec<f64> = days.iter().map(|d| d.avg_latency_ms).collect();
    let all_latency: Vec<f64> = points.iter().map(|p| p.latency_ms).collect();
    let latency_analysis = match (daily_latency.first(), daily_latency.last()) {
        (Some(first), Some(last)) => json!({
            "average_latency": mean(&all_latency),
            "min_latency": all_latency.iter().copied().fold(f64::INFINITY, f64::min),
            "max_latency": all_latency.iter().copied().fold(0.0, f64::max),
            "trend": trend(*first, *last, false),
            "p95_latency": percentile(&all_latency, 0.95),
        }),
        _ => json!({ "status": "no_data" }),
    };
    let peak = days.iter().map(|d| d.peak_memory).fold(0.0, f64::max);
    let maxmemory = days.last().map_or(0.0, |d| d.maxmemory);
    let evicted: f64 = days.iter().map(|d| d.evicted_keys).sum();
    let memory_analysis = if days.is_empty() {
        json!({ "status": "no_data" })
    } else {
        let used: Vec<f64> = days.iter().map(|d| d.used_memory).collect();
        json!({
            "average_used_memory": mean(&used),
            "peak_used_memory": peak,
            "maxmemory": maxmemory,
            "peak_utilization": (maxmemory > 0.0).then(|| peak / maxmemory),
            "evicted_keys": evicted,
            "memory_pressure": (maxmemory > 0.0 && peak > 0.8 * maxmemory) || evicted > 0.0,
        })
    };
    let ops: Vec<f64> = days.iter().map(|d| d.total_operations).collect();
    let operation_analysis = match (ops.first(), ops.last()) {
        (Some(first), Some(last)) => json!({
            "total_operations": ops.iter().sum::<f64>(),
            "average_daily_operations": mean(&ops),
            "peak_daily_operations": ops.iter().copied().fold(0.0, f64::max),
            "peak_ops_per_sec": points.iter().map(|p| p.ops_per_sec).fold(0.0, f64::max),
            "trend": if last > first { "increasing" } else if last < first { "decreasing" } else { "stable" },
        }),
        _ => json!({ "status": "no_data" }),
    };
    json!({
        "hit_rate_analysis": hit_rate_analysis,
        "latency_analysis": latency_analysis,
        "memory_analysis": memory_analysis,
        "operation_analysis": operation_analysis,
    })
}

/// The points of the `days` days ending with UTC day `date`, plus the day before it (the base of
/// the first day's counters), in time order.
pub fn load_points(history: &[Snapshot], date: NaiveDate, days: i64) -> Vec<Point> {
    let end = date + Duration::days(1);
    let start = end - Duration::days(days + 1);
    history
        .iter()
        .filter(|s| {
            let d = s.timestamp.date_naive();
            d >= start && d < end
        })
        .filter_map(Point::of)
        .collect()
}

/// The hour-of-day profile of operations per second (mean over targets and days), UTC.
pub fn hourly_profile(history: &[Snapshot]) -> Option<[f64; 24]> {
    let mut sums = [0.0; 24];
    let mut counts = [0u32; 24];
    for s in history {
        let ops: f64 = s.redis.iter().filter_map(|r| r.info.get("instantaneous_ops_per_sec")).sum();
        let hour = s.timestamp.hour() as usize;
        sums[hour] += ops;
        counts[hour] += 1;
    }
    if counts.contains(&0) {
        return None; // A whole day is needed.
    }
    let mut profile = [0.0; 24];
    for hour in 0..24 {
        profile[hour] = sums[hour] / f64::from(counts[hour]);
    }
    Some(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolkits_own_lookups_are_not_the_applications() {
        let t0 = Utc::now();
        let mut a = point(t0, 1000.0, 1000.0, 0.0, 1.0);
        let mut b = point(t0 + Duration::minutes(15), 21_000.0, 1600.0, 0.0, 1.0);
        // Between the two, the applications looked up 400 hits and 600 misses; a cleanup scan
        // caused 19,600 hits (TYPE, PTTL, OBJECT on every key).
        (a.own, b.own) = (Some((500.0, 0.0)), Some((20_100.0, 0.0)));
        assert_eq!(lookups(&[a.clone(), b.clone()]), (400.0, 600.0));
        assert_eq!(interval_hit_ratios(&[a, b])[0].1, 0.4);
        let info: BTreeMap<String, f64> = [
            ("keyspace_hits".to_owned(), 21_000.0),
            ("keyspace_misses".to_owned(), 1600.0),
            ("toolkit_hits".to_owned(), 20_100.0),
            ("toolkit_misses".to_owned(), 0.0),
        ]
        .into();
        assert_eq!(application_hit_ratio(&info), Some(900.0 / 2500.0));
    }

    fn point(t: DateTime<Utc>, hits: f64, misses: f64, memory: f64, latency: f64) -> Point {
        Point {
            t,
            used_memory: memory,
            maxmemory: 0.0,
            hits,
            misses,
            hits_after: hits,
            misses_after: misses,
            own: None,
            own_commands: None,
            commands: hits + misses,
            evicted: 0.0,
            ops_per_sec: 10.0,
            latency_ms: latency,
            connected: true,
        }
    }

    #[test]
    fn lookups_leave_out_the_toolkits_own_sample() {
        let t0 = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").unwrap().to_utc();
        let mut a = point(t0, 100.0, 10.0, 1.0, 1.0);
        (a.hits_after, a.misses_after) = (600.0, 10.0); // 500 TYPE/PTTL lookups of the sample
        let b = point(t0 + Duration::minutes(15), 650.0, 15.0, 1.0, 1.0);
        assert_eq!(lookups(&[a.clone(), b]), (50.0, 5.0));
        // A restart in between: the new counters count from zero.
        let c = point(t0 + Duration::minutes(15), 30.0, 3.0, 1.0, 1.0);
        assert_eq!(lookups(&[a, c]), (30.0, 3.0));
    }

    #[test]
    fn increase_counts_from_zero_after_a_reset() {
        assert_eq!(increase([10.0, 15.0, 20.0]), 10.0);
        assert_eq!(increase([10.0, 15.0, 3.0, 8.0]), 5.0 + 3.0 + 5.0);
        assert_eq!(increase([7.0]), 0.0);
    }

    #[test]
    fn days_take_counters_from_the_last_point_of_the_day_before() {
        let t0 = DateTime::parse_from_rfc3339("2026-03-01T23:45:00Z").unwrap().to_utc();
        let points = vec![
            point(t0, 100.0, 100.0, 1.0, 1.0),
            point(t0 + Duration::minutes(15), 190.0, 110.0, 2.0, 3.0),
            point(t0 + Duration::minutes(30), 280.0, 120.0, 5.0, 5.0),
        ];
        let d = days(&points);
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].date.to_string(), "2026-03-02");
        assert_eq!((d[1].hit_count, d[1].miss_count), (180.0, 20.0));
        assert_eq!(d[1].hit_rate, Some(0.9));
        assert_eq!((d[1].used_memory, d[1].peak_memory), (5.0, 5.0));
        assert_eq!((d[1].avg_latency_ms, d[1].min_latency_ms, d[1].max_latency_ms), (4.0, 3.0, 5.0));
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.95), Some(19.0));
        assert_eq!(percentile(&v, 1.0), Some(20.0));
        assert_eq!(percentile(&[], 0.95), None);
    }
}
