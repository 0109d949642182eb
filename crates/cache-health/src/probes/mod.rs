//! One probe per kind of target. Each returns a [`TargetReport`] and never an error: a failure
//! to reach the target is the report's content, not a reason to stop the check.

pub mod dirs;
pub mod http;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod system;

use std::future::Future;
use std::time::{Duration, Instant};

use cache_core::tier::Tier;

use crate::report::TargetReport;

/// Runs `probe` within `budget`; past it, the target is reported failed with what timed out.
pub async fn within_budget<F>(
    tier: Tier,
    name: &str,
    endpoint: Option<String>,
    budget: Duration,
    probe: F,
) -> TargetReport
where
    F: Future<Output = TargetReport>,
{
    let start = Instant::now();
    match tokio::time::timeout(budget, probe).await {
        Ok(report) => report,
        Err(_) => {
            let mut report = TargetReport::new(tier, name);
            report.endpoint = endpoint;
            report.latency_ms = Some(crate::report::round3(start.elapsed().as_secs_f64() * 1000.0));
            report.fail("probe", format!("no answer within {}", humantime_budget(budget)));
            report.recommendations.push(format!(
                "{}: the probe timed out; check that the server is up and not stalled (a full disk, a blocked event loop, a firewall dropping packets)",
                report.id()
            ));
            report
        }
    }
}

fn humantime_budget(d: Duration) -> String {
    cache_core::output::millis(d.as_secs_f64() * 1000.0)
}
