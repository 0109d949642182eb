//! `forecast` and `windows`: the history read through [`cache_core::forecast`].
//!
//! Snapshots are taken every 15 minutes, so a day is 96 steps. Per Redis target: memory 7 days
//! ahead by Holt's linear smoothing (and when it reaches `maxmemory`), hit ratio by linear
//! regression over time, PING latency by the moving average of the last day. Low-usage windows
//! come from the hour-of-day profile of operations per second.

use std::collections::BTreeMap;

use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::exit::{self, Convention};
use cache_core::forecast::{self, Estimate, Window};
use cache_core::output::{Format, bytes};
use chrono::{DateTime, Utc};
use serde::Serialize;

use cache_core::history::{HISTORY, Snapshot, WINDOWS_FILE, hourly_profile};

/// How far ahead forecasts look.
pub const HORIZON_DAYS: f64 = 7.0;

/// One Redis target's forecasts.
#[derive(Debug, Serialize)]
pub struct TargetForecast {
    /// Target name.
    pub target: String,
    /// Snapshots used.
    pub points: usize,
    /// `used_memory` in 7 days.
    pub memory: Option<Estimate>,
    /// Days until `used_memory` reaches `maxmemory`, at the current trend.
    pub days_to_maxmemory: Option<f64>,
    /// Hit ratio in 7 days.
    pub hit_ratio: Option<Estimate>,
    /// Mean PING latency over the last day, milliseconds.
    pub latency_ms: Option<f64>,
}

fn series(history: &[Snapshot]) -> BTreeMap<String, Vec<(DateTime<Utc>, &cache_core::history::RedisFigures)>> {
    let mut by_target: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for s in history {
        for r in s.redis.iter().filter(|r| r.error.is_none()) {
            by_target.entry(r.name.clone()).or_default().push((s.timestamp, r));
        }
    }
    by_target
}

/// Forecasts every Redis target of `history`.
pub fn forecasts(history: &[Snapshot]) -> Vec<TargetForecast> {
    let Some(first) = history.first().map(|s| s.timestamp) else { return Vec::new() };
    series(history)
        .into_iter()
        .map(|(target, points)| {
            let memory: Vec<f64> = points.iter().filter_map(|(_, r)| r.info.get("used_memory").copied()).collect();
            let maxmemory = points.last().and_then(|(_, r)| r.info.get("maxmemory").copied()).unwrap_or(0.0);
            let steps_per_day = 96.0;
            let holt = forecast::holt(&memory, 0.5, 0.3);
            let hit: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|(t, r)| Some(((*t - first).num_seconds() as f64 / 86_400.0, r.hit_ratio?)))
                .collect();
            let line = forecast::linear_regression(&hit);
            let latency: Vec<f64> = points.iter().map(|(_, r)| r.latency.avg_ms).collect();
            TargetForecast {
                target,
                points: points.len(),
                memory: holt.map(|h| h.ahead(HORIZON_DAYS * steps_per_day)),
                days_to_maxmemory: holt
                    .filter(|_| maxmemory > 0.0)
                    .and_then(|h| h.steps_to(maxmemory))
                    .map(|steps| steps / steps_per_day),
                hit_ratio: line.map(|l| {
                    let e = l.at(l.last_x + HORIZON_DAYS);
                    Estimate {
                        value: e.value.clamp(0.0, 1.0),
                        low: e.low.clamp(0.0, 1.0),
                        high: e.high.clamp(0.0, 1.0),
                        ..e
                    }
                }),
                latency_ms: forecast::moving_average(&latency, 96),
            }
        })
        .collect()
}

/// Runs `forecast`.
pub fn run_forecast(common: &CommonArgs, format: Format) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let history: Vec<Snapshot> = ctx.state.read_jsonl(HISTORY)?;
    if history.len() < 2 {
        anyhow::bail!("forecasts need at least two snapshots; run `cache-analytics collect` (every 15 minutes) first");
    }
    let results = forecasts(&history);
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&serde_json::json!({ "horizon_days": HORIZON_DAYS, "targets": results }))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = printer.table();
    table.set_header([
        "Target",
        "Memory in 7 days (95%)",
        "Reaches maxmemory",
        "Hit ratio in 7 days",
        "Latency (1 day avg)",
    ]);
    for f in &results {
        let memory = f.memory.map_or("n/a".into(), |e| {
            format!(
                "{} ({} – {})",
                bytes(e.value.max(0.0) as u64),
                bytes(e.low.max(0.0) as u64),
                bytes(e.high.max(0.0) as u64)
            )
        });
        let days = f.days_to_maxmemory.map_or("not at this trend".into(), |d| format!("in ~{d:.1} days"));
        let hit = f.hit_ratio.map_or("n/a".into(), |e| format!("{:.1}%", e.value * 100.0));
        let latency = f.latency_ms.map_or("n/a".into(), |l| format!("{l:.2} ms"));
        table.add_row(vec![f.target.clone(), memory, days, hit, latency]);
    }
    printer.info(&format!("{table}"))?;
    Ok(exit::SUCCESS)
}

/// What `windows` writes for the scheduler.
#[derive(Debug, Serialize)]
struct Windows {
    computed_at: DateTime<Utc>,
    basis: &'static str,
    windows: Vec<Window>,
}

/// Runs `windows`.
pub fn run_windows(common: &CommonArgs, format: Format) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let history: Vec<Snapshot> = ctx.state.read_jsonl(HISTORY)?;
    let profile = hourly_profile(&history)
        .ok_or_else(|| anyhow::anyhow!("low-usage windows need snapshots in every hour of the day; keep collecting"))?;
    let windows = Windows {
        computed_at: Utc::now(),
        basis: "hours under 30% of the daily average of Redis operations per second, 2 hours long, UTC",
        windows: forecast::low_usage_windows(&profile, 0.3, 2),
    };
    ctx.state.write_json(WINDOWS_FILE, &windows)?;
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&windows)?;
    } else {
        let mut text = format!("{} low-usage windows ({}):\n", windows.windows.len(), windows.basis);
        for w in &windows.windows {
            text.push_str(&format!(
                "  {:02}:00–{:02}:00 UTC, confidence {:.2}\n",
                w.start_hour,
                (w.start_hour + w.duration_hours) % 24,
                w.confidence
            ));
        }
        printer.info(&text)?;
    }
    Ok(exit::SUCCESS)
}
