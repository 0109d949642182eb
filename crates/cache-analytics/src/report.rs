//! `generate --period day|week|month`: reports over the history.
//!
//! The history holds one [`Snapshot`] every 15 minutes. Reports reduce it first to one
//! [`Point`] per snapshot (the Redis targets added up), then to one [`Day`] per UTC day, the
//! unit seed 002's daily metrics files have:
//!
//! - `day`: `cache_metrics_<date>.json`, seed 002's `DailyMetricsCollector` shape;
//! - `week`: `weekly_report_<date>.json`, seed 002's weekly analysis (hit rate, latency,
//!   memory, operations) over the 7 days ending on the date;
//! - `month`: `capacity_report_<YYYY-MM>.json`, seed 002's `CapacityPlanner` over the 30 days
//!   ending on the date, with projections for each of the next 6 months. The monthly run (the
//!   `archival-monthly` job) also archives the state directory's histories
//!   ([`cache_core::state::StateDir::archive_histories`]): segments of past months gzipped,
//!   those over [`KEEP_MONTHS`] months old removed.
//!
//! A report reads only the history its period needs (the days of the period and the one
//! before), across the history's segments.
//!
//! Reports cover whole UTC days only ([`Coverage`]): the day the history starts in and the day
//! still running are left out of the weekly and monthly figures, growth and projections (a
//! quarter of a day of operations is not a fall of traffic), and each report says which days it
//! covered. A daily report of a day not yet over says so.
//!
//! Every report carries seed 000's insights (performance decline over the last 24 hours,
//! capacity growth over 10% a day) and the anomalies of its period (median/MAD modified
//! z-score over [`ANOMALY_THRESHOLD`], and a change of at least [`MIN_RELATIVE_CHANGE`] of the
//! median and the metric's floor in [`ANOMALY_FLOORS`]). Counters (hits, misses, commands,
//! evictions) are turned into increases the way Prometheus's `increase()` does: a drop means a
//! restart, and the value after it counts from zero.

use anyhow::Context as _;
use cache_core::app::{Context, JobResult};
use cache_core::cli::CommonArgs;
use cache_core::exit::{self, Convention};
use cache_core::forecast::{self, ANOMALY_THRESHOLD, MIN_RELATIVE_CHANGE, MinEffect};
use cache_core::output::{Format, bytes};
use cache_core::runs::Outcome;
use cache_core::state::{KEEP_MONTHS, READ_CAP_BYTES};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use cache_core::history::{
    Day, HISTORY, Point, REPORTS_DIR, Snapshot, days, load_points, lookups, mean, weekly_analysis,
};

/// A report's period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Period {
    /// Seed 002's daily metrics file for one UTC day
    Day,
    /// The weekly analysis of the 7 days ending on the date
    Week,
    /// The capacity report of the 30 days ending on the date, with 6-month projections
    Month,
}

impl Period {
    fn days(self) -> i64 {
        match self {
            Self::Day => 1,
            Self::Week => 7,
            Self::Month => 30,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The job (and lock) name of a run.
    fn job(self) -> &'static str {
        match self {
            Self::Day => "reports-daily",
            Self::Week => "reports-weekly",
            Self::Month => "archival-monthly",
        }
    }
}

/// Growth per day relative to the level: the slope of a least-squares line through
/// `(day, value)` divided by the line's value at the first day. `None` without a line or when
/// that value is not positive.
fn daily_growth(series: &[(f64, f64)]) -> Option<f64> {
    let line = forecast::linear_regression(series)?;
    let base = line.intercept + line.slope * series.first()?.0;
    (base > 0.0).then(|| line.slope / base)
}

/// A seed 000 insight.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Insight {
    /// `performance_decline` or `capacity_planning`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `warning` or `info`.
    pub severity: &'static str,
    /// What was seen.
    pub message: String,
    /// The measured rate (a fraction).
    pub rate: f64,
    /// What to do.
    pub recommendations: Vec<&'static str>,
}

/// A relative fall of the hit ratio, or rise of latency, from one day to the next beyond
/// which performance is "declining".
pub const DECLINE_THRESHOLD: f64 = 0.05;
/// Memory growth per day beyond which capacity needs planning (seed 000: 10%/day).
pub const GROWTH_THRESHOLD: f64 = 0.10;

/// Seed 000's insights at the end of `points`: performance over the last 24 hours against the
/// 24 before (hit ratio down, or latency up, by more than [`DECLINE_THRESHOLD`]), and memory
/// growth per day over the whole series (over [`GROWTH_THRESHOLD`]).
pub fn insights(points: &[Point]) -> Vec<Insight> {
    let mut out = Vec::new();
    let Some(last) = points.last() else { return out };
    let day = Duration::hours(24);
    let recent: Vec<Point> = points.iter().filter(|p| p.t > last.t - day).cloned().collect();
    // The day before, with its last point as the base of the recent day's counters.
    let before: Vec<Point> = points.iter().filter(|p| p.t <= last.t - day && p.t > last.t - day * 2).cloned().collect();
    if !recent.is_empty() && !before.is_empty() {
        let ratio = |span: &[Point]| {
            let (h, m) = lookups(span);
            (h + m > 0.0).then(|| h / (h + m))
        };
        let mut recent_span = vec![before[before.len() - 1].clone()];
        recent_span.extend(recent.iter().cloned());
        let hit_fall = match (ratio(&before), ratio(&recent_span)) {
            (Some(b), Some(r)) if b > 0.0 => (b - r) / b,
            _ => 0.0,
        };
        let lat = |span: &[Point]| mean(&span.iter().map(|p| p.latency_ms).collect::<Vec<_>>()).unwrap_or(0.0);
        let latency_rise = if lat(&before) > 0.0 { (lat(&recent) - lat(&before)) / lat(&before) } else { 0.0 };
        let rate = hit_fall.max(latency_rise);
        if rate > DECLINE_THRESHOLD {
            let what = if hit_fall >= latency_rise { "hit ratio" } else { "latency" };
            out.push(Insight {
                kind: "performance_decline",
                severity: "warning",
                message: format!("Performance declining by {:.1}% over last 24h ({what})", rate * 100.0),
                rate,
                recommendations: vec![
                    "Run cache optimization",
                    "Check for memory leaks",
                    "Review recent configuration changes",
                ],
            });
        }
    }
    let first = points[0].t;
    let memory: Vec<(f64, f64)> =
        points.iter().map(|p| ((p.t - first).num_seconds() as f64 / 86_400.0, p.used_memory)).collect();
    if last.t - first >= Duration::hours(12)
        && let Some(growth) = daily_growth(&memory)
        && growth > GROWTH_THRESHOLD
    {
        out.push(Insight {
            kind: "capacity_planning",
            severity: "info",
            message: format!("Cache growing at {:.1}%/day", growth * 100.0),
            rate: growth,
            recommendations: vec![
                "Plan for additional capacity",
                "Review retention policies",
                "Consider implementing archival",
            ],
        });
    }
    out
}

/// An anomalous snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnomalyReport {
    /// The metric.
    pub metric: &'static str,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// Its value.
    pub value: f64,
    /// The period's median of the metric.
    pub median: f64,
    /// Its modified z-score.
    pub score: f64,
}

/// The least change from the period's median an anomaly must show in each metric's unit,
/// besides a z-score over [`ANOMALY_THRESHOLD`] and a change of [`MIN_RELATIVE_CHANGE`] (20%)
/// of the median: 1 ms of PING latency (a 0.307 against 0.314 ms wobble is noise however many
/// MADs it is), 1 MiB of memory, 5 points of hit ratio.
pub const ANOMALY_FLOORS: [(&str, f64); 3] = [("latency_ms", 1.0), ("used_memory", 1_048_576.0), ("hit_ratio", 0.05)];

fn floor(metric: &str) -> f64 {
    ANOMALY_FLOORS.iter().find(|(m, _)| *m == metric).map_or(0.0, |(_, f)| *f)
}

/// Anomalies of each metric over `points`: latency, memory, and the hit ratio of each
/// 15-minute interval, by z-score and effect size. Operations per second are left out: their
/// daily cycle would make every quiet night an anomaly (the quiet hours are what `windows`
/// looks for).
pub fn anomalies(points: &[Point]) -> Vec<AnomalyReport> {
    let mut out = Vec::new();
    let mut check = |metric: &'static str, series: Vec<(DateTime<Utc>, f64)>| {
        let values: Vec<f64> = series.iter().map(|s| s.1).collect();
        for a in forecast::anomalies(&values, ANOMALY_THRESHOLD, MinEffect::at_least(floor(metric))) {
            out.push(AnomalyReport {
                metric,
                timestamp: series[a.index].0,
                value: a.value,
                median: a.median,
                score: a.score,
            });
        }
    };
    check("latency_ms", points.iter().map(|p| (p.t, p.latency_ms)).collect());
    check("used_memory", points.iter().map(|p| (p.t, p.used_memory)).collect());
    check("hit_ratio", cache_core::history::interval_hit_ratios(points));
    out.sort_by_key(|a| a.timestamp);
    out
}

/// Growth per month (fraction) of a daily series of `(day, value)`, from its least-squares line.
fn monthly_growth(series: &[(f64, f64)]) -> f64 {
    daily_growth(series).map_or(0.0, |g| g * 30.0)
}

/// Seed 002's capacity analysis of whole `days`, with a projection for each of the next 6
/// months. `operations_per_day` are the days' operations scaled to 24 hours of counters (the
/// first day of a history has no snapshot before it to count from).
pub fn capacity_analysis(days: &[Day], operations_per_day: &[f64]) -> Value {
    if days.is_empty() {
        return json!({ "memory_trends": { "status": "no_data" }, "operation_trends": { "status": "no_data" } });
    }
    let x = |d: &Day| (d.date - days[0].date).num_days() as f64;
    let used: Vec<f64> = days.iter().map(|d| d.used_memory).collect();
    let ops = operations_per_day;
    let memory_growth = monthly_growth(&days.iter().map(|d| (x(d), d.used_memory)).collect::<Vec<_>>());
    let ops_growth = monthly_growth(&days.iter().zip(ops).map(|(d, o)| (x(d), *o)).collect::<Vec<_>>());
    let peak_memory = days.iter().map(|d| d.peak_memory).fold(0.0, f64::max);
    let peak_ops = ops.iter().copied().fold(0.0, f64::max);
    let maxmemory = days.last().map_or(0.0, |d| d.maxmemory);
    let growth_percent = memory_growth * 100.0;
    // Seed 002's linear projection: current * (1 + monthly growth * months).
    let monthly: Vec<Value> = (1..=6)
        .map(|m| {
            let memory = peak_memory * (1.0 + memory_growth * f64::from(m)).max(0.0);
            json!({
                "month": m,
                "memory_bytes": memory,
                "daily_operations": peak_ops * (1.0 + ops_growth * f64::from(m)).max(0.0),
                "memory_over_maxmemory": maxmemory > 0.0 && memory > maxmemory,
            })
        })
        .collect();
    let memory_full_in_month =
        monthly.iter().find(|m| m["memory_over_maxmemory"] == true).and_then(|m| m["month"].as_u64());
    let projected_memory = peak_memory * (1.0 + memory_growth * 6.0).max(0.0);
    let projected_ops = peak_ops * (1.0 + ops_growth * 6.0).max(0.0);
    let mut recommendations = Vec::new();
    if growth_percent > 10.0 {
        recommendations.push(json!({
            "category": "memory",
            "priority": "high",
            "issue": "Rapid memory growth detected",
            "recommendation": "Plan for memory upgrade within 3 months",
            "projected_requirement": format!("{:.1} GB", projected_memory / 1024f64.powi(3)),
        }));
    }
    if let Some(month) = memory_full_in_month {
        recommendations.push(json!({
            "category": "memory",
            "priority": "high",
            "issue": format!("Memory reaches maxmemory in about {month} month(s) at this growth"),
            "recommendation": "Raise maxmemory, add shards, or shorten TTLs before then",
            "current_value": peak_memory,
            "target_value": maxmemory,
        }));
    }
    if ops_growth * 100.0 > 15.0 {
        recommendations.push(json!({
            "category": "performance",
            "priority": "medium",
            "issue": "Rapid operation volume growth",
            "recommendation": "Consider horizontal scaling or performance optimization",
            "projected_ops_per_second": format!("{:.0}", projected_ops / 86_400.0),
        }));
    }
    json!({
        "memory_trends": {
            "average_usage": mean(&used),
            "peak_usage": peak_memory,
            "maxmemory": maxmemory,
            "growth_rate_percent": growth_percent,
            "trend": if growth_percent > 5.0 { "increasing" } else if growth_percent > -5.0 { "stable" } else { "decreasing" },
        },
        "operation_trends": {
            "average_daily_operations": mean(ops),
            "peak_daily_operations": peak_ops,
            "growth_rate_percent": ops_growth * 100.0,
            "operations_per_second_peak": peak_ops / 86_400.0,
        },
        "growth_projections": {
            "6_month_memory_projection": projected_memory,
            "6_month_operations_projection": projected_ops,
            "memory_growth_monthly": memory_growth,
            "operations_growth_monthly": ops_growth,
            "monthly": monthly,
        },
        "capacity_recommendations": recommendations,
    })
}

/// Which UTC days of a report's range have whole figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Days whose snapshots run from midnight to midnight (the first and the last within
    /// [`EDGE_INTERVALS`] collection intervals of it).
    pub whole: Vec<NaiveDate>,
    /// Days whose snapshots start or end further from midnight: the day a history starts on,
    /// the day still running.
    pub partial: Vec<NaiveDate>,
}

/// How many collection intervals from midnight a whole day's first and last snapshots may be:
/// two, so that one snapshot missed at either end leaves the day whole.
pub const EDGE_INTERVALS: i32 = 2;

/// The usual time between snapshots: the median gap of `points` (15 minutes with fewer than
/// two).
fn collection_interval(points: &[Point]) -> Duration {
    let mut gaps: Vec<Duration> =
        points.windows(2).map(|w| w[1].t - w[0].t).filter(|g| *g > Duration::zero()).collect();
    gaps.sort();
    gaps.get(gaps.len() / 2).copied().unwrap_or(Duration::minutes(15))
}

/// The whole and partial UTC days of `points` (in time order) from `from` on.
pub fn coverage(points: &[Point], from: NaiveDate) -> Coverage {
    let edge = collection_interval(points) * EDGE_INTERVALS;
    let mut out = Coverage::default();
    let mut start = 0;
    while start < points.len() {
        let date = points[start].t.date_naive();
        let end = start + points[start..].iter().take_while(|p| p.t.date_naive() == date).count();
        if date >= from {
            let midnight = date.and_time(NaiveTime::MIN).and_utc();
            let whole = points[start].t - midnight <= edge && midnight + Duration::days(1) - points[end - 1].t <= edge;
            if whole { &mut out.whole } else { &mut out.partial }.push(date);
        }
        start = end;
    }
    out
}

/// Operations of each of `days` scaled to 24 hours: a day's counters run from the snapshot
/// before its first (the first itself when the history starts that day) to its last, as
/// [`cache_core::history::days`] counts them.
fn operations_per_day(points: &[Point], days: &[Day]) -> Vec<f64> {
    days.iter()
        .map(|d| {
            let first = points.iter().position(|p| p.t.date_naive() == d.date);
            let last = points.iter().rposition(|p| p.t.date_naive() == d.date);
            let hours = match (first, last) {
                (Some(first), Some(last)) => {
                    (points[last].t - points[first.saturating_sub(1)].t).num_seconds() as f64 / 3600.0
                }
                _ => 0.0,
            };
            if hours > 0.0 { d.total_operations * 24.0 / hours } else { d.total_operations }
        })
        .collect()
}

/// What a report says it covered: "covers 2026-11-02 to 2026-11-30, 29 whole days; partial days
/// left out: 2026-12-01", or, for a daily report of a day not over, its snapshots' times.
fn covers(covered: &[NaiveDate], whole: usize, left_out: &[NaiveDate], points: &[Point]) -> String {
    let (Some(first), Some(last)) = (covered.first(), covered.last()) else { return "covers no day".into() };
    if whole == 0 {
        let time = |p: Option<&Point>| p.map_or(String::new(), |p| p.t.format("%H:%M").to_string());
        return format!(
            "covers {first}, a partial day (snapshots from {} to {} UTC)",
            time(points.first()),
            time(points.last())
        );
    }
    let mut text = if first == last { format!("covers {first}") } else { format!("covers {first} to {last}") };
    text.push_str(&format!(", {whole} whole day{}", if whole == 1 { "" } else { "s" }));
    if !left_out.is_empty() {
        let list: Vec<String> = left_out.iter().map(NaiveDate::to_string).collect();
        text.push_str(&format!("; partial days left out: {}", list.join(", ")));
    }
    text
}

/// Builds the report of `period` ending on `date`; returns its file name (in [`REPORTS_DIR`])
/// and document. Weekly and monthly reports cover the whole days of the period only; a daily
/// report covers its day, whole or not, and says which.
pub fn build(history: &[Snapshot], date: NaiveDate, period: Period) -> anyhow::Result<(String, Value)> {
    let all = load_points(history, date, period.days());
    let first_day = date - Duration::days(period.days() - 1);
    let coverage = coverage(&all, first_day);
    if coverage.whole.is_empty() && coverage.partial.is_empty() {
        anyhow::bail!(
            "no snapshots with a readable Redis target between {first_day} and {date} in the history; \
             `cache-analytics collect` (every 15 minutes) builds it"
        );
    }
    let (covered, left_out): (Vec<NaiveDate>, Vec<NaiveDate>) = match period {
        Period::Day => (coverage.whole.iter().chain(&coverage.partial).copied().collect(), Vec::new()),
        Period::Week | Period::Month => (coverage.whole.clone(), coverage.partial.clone()),
    };
    if covered.is_empty() {
        let list: Vec<String> = left_out.iter().map(NaiveDate::to_string).collect();
        anyhow::bail!(
            "no whole UTC day between {first_day} and {date} in the history (partial: {}); a {} report covers \
             whole days only",
            list.join(", "),
            period.name()
        );
    }
    let days: Vec<Day> = days(&all).into_iter().filter(|d| covered.contains(&d.date)).collect();
    let points: Vec<Point> = all.iter().filter(|p| covered.contains(&p.t.date_naive())).cloned().collect();
    let whole = covered.iter().filter(|d| coverage.whole.contains(d)).count();
    let insights = insights(&points);
    let anomalies = anomalies(&points);
    let period_doc = json!({
        "from": first_day,
        "to": date,
        "days": days.len(),
        "snapshots": points.len(),
        "covered": { "from": covered.first(), "to": covered.last() },
        "whole_days": whole,
        "partial_days_left_out": left_out,
        "covers": covers(&covered, whole, &left_out, &points),
    });
    let floors: serde_json::Map<String, Value> =
        ANOMALY_FLOORS.iter().map(|(m, f)| ((*m).to_owned(), json!(f))).collect();
    let anomaly_doc = json!({
        "method": "modified z-score 0.6745 (x - median) / MAD over the period's snapshots, and a change from the \
                   median of at least min_relative_change of it and the metric's floor",
        "threshold": ANOMALY_THRESHOLD,
        "min_relative_change": MIN_RELATIVE_CHANGE,
        "floors": floors,
        "found": anomalies,
    });
    let now = Utc::now();
    let (name, doc) = match period {
        Period::Day => {
            let d = &days[days.len() - 1];
            let last = &points[points.len() - 1];
            let snapshot = history.iter().rev().find(|s| s.timestamp == last.t);
            let tier_stats = snapshot.map(|s| {
                json!({
                    "redis": s.redis.iter().map(|r| json!({
                        "name": r.name, "keys": r.keys, "hit_ratio": r.hit_ratio, "error": r.error,
                        "prefixes": r.prefixes,
                    })).collect::<Vec<_>>(),
                    "postgres": s.postgres,
                    "memory": s.memory,
                    "dirs": s.dirs,
                })
            });
            let doc = json!({
                "timestamp": now.timestamp_millis() as f64 / 1000.0,
                "date": date,
                "generated_at": now,
                "period": period_doc,
                "cache_stats": {
                    "hit_rate": d.hit_rate,
                    "miss_rate": d.hit_rate.map(|h| 1.0 - h),
                    "total_operations": d.total_operations,
                    "hit_count": d.hit_count,
                    "miss_count": d.miss_count,
                    "evicted_count": d.evicted_keys,
                },
                "health_info": {
                    "status": if last.connected { "healthy" } else { "degraded" },
                    "redis_connected": last.connected,
                    "redis_ping_time": last.latency_ms,
                    "memory_usage": {
                        "used_memory": d.used_memory,
                        "used_memory_peak": d.peak_memory,
                        "maxmemory": d.maxmemory,
                    },
                },
                "tier_stats": tier_stats,
                "performance_metrics": {
                    "avg_latency_ms": d.avg_latency_ms,
                    "max_latency_ms": d.max_latency_ms,
                    "min_latency_ms": d.min_latency_ms,
                },
                "insights": insights,
                "anomalies": anomaly_doc,
            });
            (format!("cache_metrics_{date}.json"), doc)
        }
        Period::Week => {
            let mut doc = weekly_analysis(&days, &points);
            let extra = json!({
                "date": date,
                "generated_at": now,
                "period": period_doc,
                "daily": days,
                "insights": insights,
                "anomalies": anomaly_doc,
            });
            merge(&mut doc, extra);
            (format!("weekly_report_{date}.json"), doc)
        }
        Period::Month => {
            let mut doc = capacity_analysis(&days, &operations_per_day(&all, &days));
            let extra = json!({
                "month": format!("{:04}-{:02}", date.year(), date.month()),
                "generated_at": now,
                "period": period_doc,
                "insights": insights,
                "anomalies": anomaly_doc,
            });
            merge(&mut doc, extra);
            (format!("capacity_report_{:04}-{:02}.json", date.year(), date.month()), doc)
        }
    };
    Ok((name, doc))
}

fn merge(doc: &mut Value, extra: Value) {
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        doc.extend(extra);
    }
}

/// The readable summary of a report (seed 002's printed summaries).
pub fn summary(period: Period, doc: &Value) -> String {
    let mut s = String::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let pct = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |v| format!("{:.1}%", v * 100.0));
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let p = &doc["period"];
    let covered = format!("Report {}\n", text(&p["covers"]));
    match period {
        Period::Day => {
            s.push_str(&format!("=== Daily Metrics {} ({} snapshots) ===\n", text(&doc["date"]), p["snapshots"]));
            s.push_str(&covered);
            let c = &doc["cache_stats"];
            s.push_str(&format!("Hit Rate: {}\n", pct(&c["hit_rate"])));
            s.push_str(&format!("Operations: {:.0}\n", num(&c["total_operations"])));
            let l = &doc["performance_metrics"];
            s.push_str(&format!(
                "Latency: {:.2} ms avg ({:.2}–{:.2})\n",
                num(&l["avg_latency_ms"]),
                num(&l["min_latency_ms"]),
                num(&l["max_latency_ms"])
            ));
            let m = &doc["health_info"]["memory_usage"];
            s.push_str(&format!(
                "Memory: {} (peak {})\n",
                bytes(num(&m["used_memory"]) as u64),
                bytes(num(&m["used_memory_peak"]) as u64)
            ));
        }
        Period::Week => {
            s.push_str(&format!("=== Weekly Analysis {} to {} ===\n", text(&p["from"]), text(&p["to"])));
            s.push_str(&covered);
            let h = &doc["hit_rate_analysis"];
            if h.get("average_hit_rate").is_some() {
                s.push_str(&format!(
                    "Hit Rate: {} (trend: {}, min {}, max {})\n",
                    pct(&h["average_hit_rate"]),
                    h["trend"].as_str().unwrap_or("unknown"),
                    pct(&h["min_hit_rate"]),
                    pct(&h["max_hit_rate"])
                ));
            }
            let l = &doc["latency_analysis"];
            if l.get("average_latency").is_some() {
                s.push_str(&format!(
                    "Latency: {:.2} ms (p95 {:.2} ms, trend: {})\n",
                    num(&l["average_latency"]),
                    num(&l["p95_latency"]),
                    l["trend"].as_str().unwrap_or("unknown")
                ));
            }
            let m = &doc["memory_analysis"];
            s.push_str(&format!(
                "Memory: peak {}{}\n",
                bytes(num(&m["peak_used_memory"]) as u64),
                if m["memory_pressure"] == true { " — memory pressure" } else { "" }
            ));
            s.push_str(&format!(
                "Operations: {:.0} in the week\n",
                num(&doc["operation_analysis"]["total_operations"])
            ));
        }
        Period::Month => {
            s.push_str(&format!("=== Capacity Planning Summary {} ===\n", doc["month"].as_str().unwrap_or("")));
            s.push_str(&covered);
            let m = &doc["memory_trends"];
            s.push_str(&format!(
                "Memory Usage: {} average, growth {:.1}% monthly\n",
                bytes(num(&m["average_usage"]) as u64),
                num(&m["growth_rate_percent"])
            ));
            let o = &doc["operation_trends"];
            s.push_str(&format!(
                "Daily Operations: {:.0} average, growth {:.1}% monthly\n",
                num(&o["average_daily_operations"]),
                num(&o["growth_rate_percent"])
            ));
            let g = &doc["growth_projections"];
            s.push_str(&format!(
                "6-Month Projections: memory {}, {:.0} operations/day\n",
                bytes(num(&g["6_month_memory_projection"]) as u64),
                num(&g["6_month_operations_projection"])
            ));
            for r in doc["capacity_recommendations"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "  [{}] {} → {}\n",
                    r["priority"].as_str().unwrap_or("").to_uppercase(),
                    r["issue"].as_str().unwrap_or(""),
                    r["recommendation"].as_str().unwrap_or("")
                ));
            }
        }
    }
    for i in doc["insights"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "Insight [{}]: {}\n",
            i["severity"].as_str().unwrap_or(""),
            i["message"].as_str().unwrap_or("")
        ));
    }
    let found = doc["anomalies"]["found"].as_array().map_or(0, Vec::len);
    let floors: Vec<String> = ANOMALY_FLOORS.iter().map(|(m, f)| format!("{m} {f}")).collect();
    s.push_str(&format!(
        "Anomalies: {found} (modified z-score > {ANOMALY_THRESHOLD}, and a change of at least {:.0}% of the median \
         and the metric's floor: {})\n",
        MIN_RELATIVE_CHANGE * 100.0,
        floors.join(", ")
    ));
    for a in doc["anomalies"]["found"].as_array().into_iter().flatten().take(10) {
        s.push_str(&format!(
            "  {} {} = {:.3} (median {:.3}, score {:.1})\n",
            a["timestamp"].as_str().unwrap_or(""),
            a["metric"].as_str().unwrap_or(""),
            num(&a["value"]),
            num(&a["median"]),
            num(&a["score"])
        ));
    }
    s
}

/// Runs `generate`.
pub async fn run(common: &CommonArgs, format: Format, period: Period, date: Option<NaiveDate>) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let job = ctx.begin_job(period.job(), &format!("cache-analytics generate --period {}", period.name())).await?;
    let result = generate(&ctx, period, date);
    job.finish(&ctx, result).await
}

fn generate(ctx: &Context, period: Period, date: Option<NaiveDate>) -> anyhow::Result<JobResult> {
    // The monthly run archives the histories first, whatever becomes of the report.
    let archived = (period == Period::Month).then(|| archive(ctx));
    let date = date.unwrap_or_else(|| Utc::now().date_naive());
    let history: Vec<Snapshot> = ctx.state.read_jsonl_since(HISTORY, since(date, period), READ_CAP_BYTES)?;
    let (name, doc) = build(&history, date, period)?;
    let rel = format!("{REPORTS_DIR}/{name}");
    ctx.state.write_json(&rel, &doc).with_context(|| format!("writing report `{rel}`"))?;
    let path = ctx.state.path(&rel);
    let mut summary_json = json!({ "report": path, "insights": doc["insights"].as_array().map_or(0, Vec::len) });
    let mut outcome = (Outcome::Success, exit::SUCCESS);
    match &archived {
        Some(Ok(done)) => merge(&mut summary_json, json!({ "archival": serde_json::to_value(done)? })),
        Some(Err(e)) => {
            let text = format!("archiving the histories: {e:#}");
            ctx.printer.warn(&text);
            merge(&mut summary_json, json!({ "archival_error": text }));
            outcome = (Outcome::Partial, exit::PARTIAL);
        }
        None => {}
    }
    if ctx.printer.format() == Format::Json {
        ctx.printer.json(&doc)?;
    } else {
        let archival = match &archived {
            Some(Ok(done)) => format!("{}\n", done.summary()),
            _ => String::new(),
        };
        ctx.printer.info(&format!("{}{archival}Report: {}\n", summary(period, &doc), path.display()))?;
    }
    Ok(JobResult { outcome: outcome.0, exit_code: outcome.1, summary: summary_json })
}

/// The first instant of history a report of `period` ending on `date` reads
/// ([`cache_core::history::load_points`]'s first day: the day before the period, whose last
/// snapshot the first day's counters start from).
fn since(date: NaiveDate, period: Period) -> DateTime<Utc> {
    let first = date - Duration::days(period.days());
    first.and_hms_opt(0, 0, 0).map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
}

/// Monthly archival of the histories ([`cache_core::state::StateDir::archive_histories`]): the
/// segments of past months compressed, those more than [`KEEP_MONTHS`] months old removed.
fn archive(ctx: &Context) -> anyhow::Result<cache_core::state::Archived> {
    let now = cache_core::clock::now()?;
    let done = ctx.state.archive_histories(now, KEEP_MONTHS)?;
    for path in &done.compressed {
        tracing::info!("archival: compressed `{}`", path.display());
    }
    for path in &done.pruned {
        tracing::info!("archival: removed `{}`, past the retention of {KEEP_MONTHS} months", path.display());
    }
    for path in &done.recovered {
        tracing::info!("archival: cleaned up `{}`, left by an interrupted run", path.display());
    }
    Ok(done)
}

/// Figures per Redis target, for callers (dashboard) that chart targets together.
pub fn points_since(history: &[Snapshot], since: DateTime<Utc>) -> Vec<Point> {
    history.iter().filter(|s| s.timestamp >= since).filter_map(Point::of).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cache_core::history::{Latency, RedisFigures};
    use chrono::Timelike;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// Snapshots every 15 minutes from `from` to `to` (inclusive) of one Redis target: `figures`
    /// gives, from the snapshot's time, its memory, the commands processed in the 15 minutes
    /// before it (counted into `total_commands_processed`) and its PING latency.
    fn history(from: &str, to: &str, mut figures: impl FnMut(DateTime<Utc>) -> (f64, f64, f64)) -> Vec<Snapshot> {
        let (mut t, end) = (at(from), at(to));
        let mut commands = 5.0e9; // The server has run long before.
        let mut out = Vec::new();
        while t <= end {
            let (memory, ops, latency) = figures(t);
            commands += ops;
            let info = BTreeMap::from([
                ("used_memory".to_owned(), memory),
                ("keyspace_hits".to_owned(), commands * 0.9),
                ("keyspace_misses".to_owned(), commands * 0.1),
                ("total_commands_processed".to_owned(), commands),
            ]);
            let redis =
                RedisFigures { name: "main".into(), info, latency: Latency::of(&[latency]), ..RedisFigures::default() };
            out.push(Snapshot { timestamp: t, redis: vec![redis], ..Snapshot::default() });
            t += Duration::minutes(15);
        }
        out
    }

    fn points(history: &[Snapshot]) -> Vec<Point> {
        history.iter().filter_map(Point::of).collect()
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn whole_days_run_from_midnight_to_midnight_give_or_take_a_missed_snapshot() {
        let mut points = points(&history("2026-11-01T10:00:00Z", "2026-11-05T06:00:00Z", |_| (1.0, 1.0, 1.0)));
        let c = coverage(&points, date("2026-11-01"));
        assert_eq!(c.whole, [date("2026-11-02"), date("2026-11-03"), date("2026-11-04")]);
        assert_eq!(c.partial, [date("2026-11-01"), date("2026-11-05")]);
        assert_eq!(coverage(&points, date("2026-11-03")).partial, [date("2026-11-05")]);
        // One snapshot missed at 23:45 leaves Nov 2 whole; two (23:30 too) do not.
        points.retain(|p| p.t != at("2026-11-02T23:45:00Z"));
        assert!(coverage(&points, date("2026-11-01")).whole.contains(&date("2026-11-02")));
        points.retain(|p| p.t != at("2026-11-02T23:30:00Z"));
        assert!(coverage(&points, date("2026-11-01")).partial.contains(&date("2026-11-02")));
        // Nov 3 from 00:30 (two missed) is whole, from 00:45 it is not.
        points.retain(|p| p.t != at("2026-11-03T00:00:00Z") && p.t != at("2026-11-03T00:15:00Z"));
        assert!(coverage(&points, date("2026-11-01")).whole.contains(&date("2026-11-03")));
        points.retain(|p| p.t != at("2026-11-03T00:30:00Z"));
        assert!(coverage(&points, date("2026-11-01")).partial.contains(&date("2026-11-03")));
    }

    /// Flat traffic and flat memory, collected from Nov 1 10:00 to Dec 1 06:00, the monthly
    /// job's time: the partial Dec 1 (a quarter of a day of operations) once made a fall of
    /// traffic, and projected 0 operations a day.
    #[test]
    fn the_monthly_report_leaves_partial_days_out_and_flat_traffic_projects_flat() {
        const MIB: f64 = 1_048_576.0;
        let flat = history("2026-11-01T10:00:00Z", "2026-12-01T06:00:00Z", |_| (100.0 * MIB, 1000.0, 0.3));
        let (name, month) = build(&flat, date("2026-12-01"), Period::Month).unwrap();
        assert_eq!(name, "capacity_report_2026-12.json");
        assert_eq!(
            month["period"]["covers"],
            "covers 2026-11-02 to 2026-11-30, 29 whole days; partial days left out: 2026-12-01"
        );
        assert_eq!((month["period"]["days"].as_u64(), month["period"]["whole_days"].as_u64()), (Some(29), Some(29)));
        assert_eq!(month["period"]["snapshots"], 29 * 96);
        let o = &month["operation_trends"];
        assert_eq!(
            (o["growth_rate_percent"].as_f64(), o["average_daily_operations"].as_f64()),
            (Some(0.0), Some(96_000.0))
        );
        assert_eq!(month["growth_projections"]["6_month_operations_projection"], 96_000.0);
        assert_eq!(month["memory_trends"]["growth_rate_percent"], 0.0);
        assert_eq!(month["memory_trends"]["trend"], "stable");
        let text = summary(Period::Month, &month);
        assert!(
            text.contains("Report covers 2026-11-02 to 2026-11-30, 29 whole days; partial days left out"),
            "{text}"
        );
        assert!(text.contains("6-Month Projections: memory 100.0 MiB, 96000 operations/day"), "{text}");

        // Growing memory (1 MiB an hour) grows by its slope over the whole days' last snapshots,
        // 24 MiB a day on the line's 137.75 MiB at Nov 2 23:45.
        let start = at("2026-11-01T10:00:00Z");
        let growing = history("2026-11-01T10:00:00Z", "2026-12-01T06:00:00Z", |t| {
            (100.0 * MIB + MIB * (t - start).num_minutes() as f64 / 60.0, 1000.0, 0.3)
        });
        let (_, month) = build(&growing, date("2026-12-01"), Period::Month).unwrap();
        let growth = month["memory_trends"]["growth_rate_percent"].as_f64().unwrap();
        assert!((growth - 100.0 * 30.0 * 24.0 / 137.75).abs() < 1e-6, "{growth}");

        // A history that starts at midnight has no snapshot before its first day to count from:
        // its 95 intervals are scaled to 24 hours, and traffic stays flat.
        let from_midnight = history("2026-11-02T00:00:00Z", "2026-12-01T06:00:00Z", |_| (100.0 * MIB, 1000.0, 0.3));
        let (_, month) = build(&from_midnight, date("2026-12-01"), Period::Month).unwrap();
        assert_eq!(month["period"]["whole_days"], 29);
        let o = &month["operation_trends"];
        assert!(o["growth_rate_percent"].as_f64().unwrap().abs() < 1e-9, "{o:#}");
        assert!((o["peak_daily_operations"].as_f64().unwrap() - 96_000.0).abs() < 1e-6, "{o:#}");

        // No whole day at all: a weekly report says so rather than reporting a part of one.
        let err = build(&flat, date("2026-11-01"), Period::Week).unwrap_err().to_string();
        assert!(err.contains("no whole UTC day between 2026-10-26 and 2026-11-01"), "{err}");
    }

    #[test]
    fn a_daily_report_of_a_day_not_over_says_so() {
        let today = history("2026-11-05T00:00:00Z", "2026-11-05T12:15:00Z", |_| (1.0e6, 1000.0, 0.3));
        let (_, day) = build(&today, date("2026-11-05"), Period::Day).unwrap();
        assert_eq!(day["period"]["covers"], "covers 2026-11-05, a partial day (snapshots from 00:00 to 12:15 UTC)");
        assert_eq!(day["period"]["whole_days"], 0);
        assert!(summary(Period::Day, &day).contains("Report covers 2026-11-05, a partial day"));
    }

    /// Every PING took 0.307 ms but a few 0.314 ms: "5 MADs" by the z-score alone, 0.007 ms in
    /// fact. A jump from 0.3 to 5 ms is an anomaly still.
    #[test]
    fn anomalies_need_an_effect_as_well_as_a_z_score() {
        let wobble = history("2026-11-05T00:00:00Z", "2026-11-05T23:45:00Z", |t| {
            (1.0e8, 1000.0, if t.minute() == 30 && t.hour() % 5 == 0 { 0.314 } else { 0.307 })
        });
        let wobble = points(&wobble);
        let latency: Vec<f64> = wobble.iter().map(|p| p.latency_ms).collect();
        assert!(!forecast::anomalies(&latency, ANOMALY_THRESHOLD, MinEffect::NONE).is_empty(), "not a wobble");
        assert_eq!(anomalies(&wobble), []);

        let jump = history("2026-11-05T00:00:00Z", "2026-11-05T23:45:00Z", |t| {
            (1.0e8, 1000.0, if t == at("2026-11-05T14:00:00Z") { 5.0 } else { 0.3 + 0.001 * f64::from(t.minute() % 7) })
        });
        let found = anomalies(&points(&jump));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].metric, found[0].timestamp, found[0].value),
            ("latency_ms", at("2026-11-05T14:00:00Z"), 5.0)
        );
        assert!(found[0].score > ANOMALY_THRESHOLD && (found[0].median - 0.303).abs() < 0.002, "{found:?}");
    }

    #[test]
    fn monthly_growth_of_a_straight_line() {
        // 100, 102, 104...: 2% of the first value a day, 60% a month.
        let series: Vec<(f64, f64)> = (0..30).map(|i| (f64::from(i), 100.0 + 2.0 * f64::from(i))).collect();
        assert!((monthly_growth(&series) - 0.6).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 5.0)).collect();
        assert_eq!(monthly_growth(&flat), 0.0);
    }
}
