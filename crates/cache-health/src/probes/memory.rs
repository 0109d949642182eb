//! Memory API: list one memory and run one search, as seed 000's health check does, in the
//! target's dialect; the list's answer gives the user's memory count (`memories`, with
//! `memories_complete`/`memories_truncated` when the server may have cut its answer). The first list opens the connection (`connect_ms`); the latency is a
//! second list of one memory on the connection it left open (keep-alive).

use std::time::Instant;

use cache_core::clients::memory::MemoryClient;
use cache_core::config::{HealthSettings, MemoryTarget};
use cache_core::tier::Tier;

use super::Timer;
use crate::report::{Status, TargetReport, round3};

/// Probes one memory-API target for `user_id`.
pub async fn probe(
    target: &MemoryTarget,
    user_id: &str,
    settings: &HealthSettings,
    mut timer: Timer<'_>,
) -> TargetReport {
    let mut report = TargetReport::new(Tier::Memory, &target.name);
    report.endpoint = Some(target.url.to_string());
    let client = match MemoryClient::open(target, user_id).await {
        Ok(client) => client,
        Err(e) => {
            report.fail("client", format!("{e:#}"));
            return report;
        }
    };
    let list_start = Instant::now();
    match client.list_page(1).await {
        Ok(listing) => {
            let ms = round3(list_start.elapsed().as_secs_f64() * 1000.0);
            let perf = report.perf("list", ms, "ms").range(0.0, None);
            // The platform's page states its `count`; the self-hosted server's one answer is all
            // it gives, and at its cap it may be truncated: then the count is a floor.
            let message = match listing.count {
                Some(_) => format!("listed {} memory of {}", listing.memories.len(), listing.describe()),
                None => format!("listed {} memory", listing.memories.len()),
            };
            report.check("list", Status::Healthy, message, Some(perf));
            if let Some(count) = listing.count {
                report.metric("memories", count);
                report.metric("memories_complete", listing.complete());
            }
            if !listing.complete() {
                report.metric("memories_truncated", true);
                report.recommendations.push(format!(
                    "{}: {}; counts are floors and cleanup will not judge or delete on a partial list",
                    report.id(),
                    listing.describe()
                ));
            }
        }
        Err(e) => {
            report.fail("list", format!("{e:#}"));
            report.recommendations.push(format!(
                "{}: the memory API did not answer a list request; check the URL, the API key and the dialect (`platform` or `self-hosted`)",
                report.id()
            ));
            return report;
        }
    }
    let connected = list_start.elapsed();
    let (listed, took) = timer.time(client.list(1)).await;
    let round_trip = match listed {
        Ok(_) => Some(took),
        Err(e) => {
            report.fail("latency", format!("listing again: {e:#}"));
            None
        }
    };
    let search_start = Instant::now();
    match client.search("health check", 1).await {
        Ok(found) => {
            let ms = round3(search_start.elapsed().as_secs_f64() * 1000.0);
            let perf = report.perf("search", ms, "ms").range(0.0, None);
            report.check("search", Status::Healthy, format!("search returned {}", found.len()), Some(perf));
        }
        Err(e) => report.fail("search", format!("{e:#}")),
    }
    report.metric("user_id", user_id.to_owned());
    report.headline = format!("{:?} API, user `{user_id}`", target.dialect).to_lowercase();
    report.connected(connected);
    if let Some(round_trip) = round_trip {
        report.latency(round_trip, target.latency_warn.unwrap_or(settings.latency.memory));
    }
    report
}
