//! File-cache and log directories: size, file count, age range, and usage against `max_size`.

use std::time::{Duration, Instant};

use cache_core::config::{DirTarget, HealthSettings};
use cache_core::output::bytes;
use cache_core::system;
use cache_core::tier::Tier;

use crate::report::{Status, TargetReport, judge, round3};

/// Probes one directory target of `tier` (files or logs), walking for at most `budget`.
pub async fn probe(tier: Tier, target: &dyn DirTarget, health: &HealthSettings, budget: Duration) -> TargetReport {
    let start = Instant::now();
    let mut report = TargetReport::new(tier, target.name());
    report.endpoint = Some(target.path().display().to_string());
    let scope = target.scope();
    let deadline = start + budget.mul_f64(0.8);
    let Ok(usage) = tokio::task::spawn_blocking(move || system::dir_usage_in(&scope, deadline)).await else {
        report.fail("walk", "the directory walk panicked");
        return report;
    };
    if !usage.exists {
        report.check("directory", Status::Healthy, "does not exist yet: nothing stored", None);
        report.headline = "absent (nothing stored yet)".into();
        return report;
    }
    let mut perf = report.perf("size", usage.allocated_bytes as f64, "B").range(0.0, None);
    let partial = if usage.complete { "" } else { " (walk stopped at the deadline; at least)" };
    let summary = format!("{} in {} files{partial}", bytes(usage.allocated_bytes), usage.files);
    match target.max_size() {
        Some(max) if max.as_u64() > 0 => {
            let pct = system::percent(usage.allocated_bytes, max.as_u64());
            let status = judge(pct, health.directory_percent);
            perf.max = Some(max.as_u64() as f64);
            perf.warn = Some(round3(max.as_u64() as f64 * health.directory_percent.warn / 100.0));
            perf.crit = Some(round3(max.as_u64() as f64 * health.directory_percent.crit / 100.0));
            report.check("size", status, format!("{summary}, {pct:.1}% of {}", bytes(max.as_u64())), Some(perf));
            if status != Status::Healthy {
                report.recommendations.push(format!(
                    "{}: {pct:.1}% of its {} cap; run cache-cleanup {tier} to evict the oldest files",
                    report.id(),
                    bytes(max.as_u64())
                ));
            }
        }
        _ => report.check("size", Status::Healthy, summary.clone(), Some(perf)),
    }
    if usage.errors > 0 {
        report.check("walk", Status::Degraded, format!("{} entries could not be read", usage.errors), None);
    }
    report.metric("usage", serde_json::to_value(&usage).unwrap_or_default());
    report.headline = summary;
    report.latency_ms = Some(round3(start.elapsed().as_secs_f64() * 1000.0));
    report
}
