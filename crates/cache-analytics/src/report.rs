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
//!   ending on the date, with projections for each of the next 6 months.
//!
//! Every report carries seed 000's insights (performance decline over the last 24 hours,
//! capacity growth over 10% a day) and the anomalies of its period (median/MAD modified
//! z-score over [`ANOMALY_THRESHOLD`]). Counters (hits, misses, commands, evictions) are
//! turned into increases the way Prometheus's `increase()` does: a drop means a restart, and
//! the value after it counts from zero.

use anyhow::Context as _;
use cache_core::app::{Context, JobResult};
use cache_core::cli::CommonArgs;
use cache_core::exit::{self, Convention};
use cache_core::forecast::{self, ANOMALY_THRESHOLD};
use cache_core::output::{Format, bytes};
use cache_core::runs::Outcome;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
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
    /// Its modified z-score.
    pub score: f64,
}

/// Anomalies of each metric over `points`: latency, memory, and the hit ratio of each
/// 15-minute interval. Operations per second are left out: their daily cycle would make every
/// quiet night an anomaly (the quiet hours are what `windows` looks for).
pub fn anomalies(points: &[Point]) -> Vec<AnomalyReport> {
    let mut out = Vec::new();
    let mut check = |metric: &'static str, series: Vec<(DateTime<Utc>, f64)>| {
        let values: Vec<f64> = series.iter().map(|s| s.1).collect();
        for a in forecast::anomalies(&values, ANOMALY_THRESHOLD) {
            out.push(AnomalyReport { metric, timestamp: series[a.index].0, value: a.value, score: a.score });
        }
    };
    check("latency_ms", points.iter().map(|p| (p.t, p.latency_ms)).collect());
    check("used_memory", points.iter().map(|p| (p.t, p.used_memory)).collect());
    check("hit_ratio", cache_core::history::interval_hit_ratios(points));
    out.sort_by_key(|a| a.timestamp);
    out
}

/// Growth per month (fraction) of a daily series, from its least-squares line.
fn monthly_growth(series: &[f64]) -> f64 {
    let points: Vec<(f64, f64)> = series.iter().enumerate().map(|(i, v)| (i as f64, *v)).collect();
    daily_growth(&points).map_or(0.0, |g| g * 30.0)
}

/// Seed 002's capacity analysis of `days`, with a projection for each of the next 6 months.
pub fn capacity_analysis(days: &[Day]) -> Value {
    if days.is_empty() {
        return json!({ "memory_trends": { "status": "no_data" }, "operation_trends": { "status": "no_data" } });
    }
    let used: Vec<f64> = days.iter().map(|d| d.used_memory).collect();
    let ops: Vec<f64> = days.iter().map(|d| d.total_operations).collect();
    let memory_growth = monthly_growth(&used);
    let ops_growth = monthly_growth(&ops);
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
            "average_daily_operations": mean(&ops),
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

/// Builds the report of `period` ending on `date`; returns its file name (in [`REPORTS_DIR`])
/// and document.
pub fn build(history: &[Snapshot], date: NaiveDate, period: Period) -> anyhow::Result<(String, Value)> {
    let all = load_points(history, date, period.days());
    let first_day = date - Duration::days(period.days() - 1);
    let days: Vec<Day> = days(&all).into_iter().filter(|d| d.date >= first_day).collect();
    let points: Vec<Point> = all.iter().filter(|p| p.t.date_naive() >= first_day).cloned().collect();
    if points.is_empty() {
        anyhow::bail!(
            "no snapshots with a readable Redis target between {first_day} and {date} in the history; \
             `cache-analytics collect` (every 15 minutes) builds it"
        );
    }
    let insights = insights(&points);
    let anomalies = anomalies(&points);
    let period_doc = json!({ "from": first_day, "to": date, "days": days.len(), "snapshots": points.len() });
    let anomaly_doc = json!({
        "method": "modified z-score 0.6745 (x - median) / MAD over the period's snapshots",
        "threshold": ANOMALY_THRESHOLD,
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
            let mut doc = capacity_analysis(&days);
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
    match period {
        Period::Day => {
            s.push_str(&format!("=== Daily Metrics {} ({} snapshots) ===\n", text(&doc["date"]), p["snapshots"]));
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
    s.push_str(&format!("Anomalies: {found} (modified z-score > {ANOMALY_THRESHOLD})\n"));
    for a in doc["anomalies"]["found"].as_array().into_iter().flatten().take(10) {
        s.push_str(&format!(
            "  {} {} = {:.3} (score {:.1})\n",
            a["timestamp"].as_str().unwrap_or(""),
            a["metric"].as_str().unwrap_or(""),
            num(&a["value"]),
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
    let date = date.unwrap_or_else(|| Utc::now().date_naive());
    let history: Vec<Snapshot> = ctx.state.read_jsonl(HISTORY)?;
    let (name, doc) = build(&history, date, period)?;
    let rel = format!("{REPORTS_DIR}/{name}");
    ctx.state.write_json(&rel, &doc).with_context(|| format!("writing report `{rel}`"))?;
    let path = ctx.state.path(&rel);
    if ctx.printer.format() == Format::Json {
        ctx.printer.json(&doc)?;
    } else {
        ctx.printer.info(&format!("{}Report: {}\n", summary(period, &doc), path.display()))?;
    }
    Ok(JobResult {
        outcome: Outcome::Success,
        exit_code: exit::SUCCESS,
        summary: json!({ "report": path, "insights": doc["insights"].as_array().map_or(0, Vec::len) }),
    })
}

/// Figures per Redis target, for callers (dashboard) that chart targets together.
pub fn points_since(history: &[Snapshot], since: DateTime<Utc>) -> Vec<Point> {
    history.iter().filter(|s| s.timestamp >= since).filter_map(Point::of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monthly_growth_of_a_straight_line() {
        // 100, 102, 104...: 2% of the first value a day, 60% a month.
        let series: Vec<f64> = (0..30).map(|i| 100.0 + 2.0 * f64::from(i)).collect();
        assert!((monthly_growth(&series) - 0.6).abs() < 1e-9);
        assert_eq!(monthly_growth(&[5.0; 10]), 0.0);
    }
}
