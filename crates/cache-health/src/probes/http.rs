//! HTTP application endpoint (seed 002): the health URL's status, and optionally the JSON
//! metrics endpoint's `hit_rate` and `total_operations`. The latency is a second request to
//! the health URL, on the connection the first left open; connecting is `connect_ms`.

use cache_core::alerting::Metric;
use std::time::Instant;

use cache_core::clients::http;
use cache_core::config::{HealthSettings, HttpTarget};
use cache_core::tier::Tier;
use serde_json::Value;

use super::Timer;
use crate::report::{Status, TargetReport, round3};

/// Probes one HTTP target.
pub async fn probe(target: &HttpTarget, settings: &HealthSettings, mut timer: Timer<'_>) -> TargetReport {
    let mut report = TargetReport::new(Tier::Http, &target.name);
    report.endpoint = Some(target.url.to_string());
    let client = match http::client_async().await {
        Ok(client) => client,
        Err(e) => {
            report.fail("client", format!("{e:#}"));
            return report;
        }
    };
    // The first request opens the connection (TCP, TLS) and is judged; the second goes over
    // the connection it left open (keep-alive) and is the latency. A server that closes every
    // connection has its connect counted in both.
    let connect_start = Instant::now();
    match get(&client, target).await {
        Ok(status) => {
            report.metric("http_status", status);
            report.observe(Metric::HttpStatus, f64::from(status));
            if status == target.expect_status {
                report.check("status", Status::Healthy, format!("HTTP {status}"), None);
            } else {
                report.fail("status", format!("HTTP {status}, expected {}", target.expect_status));
                report.recommendations.push(format!(
                    "{}: the application's health endpoint answers {status}; look at the application's logs",
                    report.id()
                ));
            }
        }
        Err(e) => {
            report.fail("status", format!("GET {}: {e}", target.url));
            report.recommendations.push(format!("{}: the application does not answer; is it running?", report.id()));
            return report;
        }
    }
    let connected = connect_start.elapsed();
    let (answer, took) = timer.time(get(&client, target)).await;
    let round_trip = match answer {
        Ok(_) => Some(took),
        Err(e) => {
            report.fail("latency", format!("GET {} again: {e}", target.url));
            None
        }
    };
    if let Some(metrics_url) = &target.metrics_url {
        metrics(&client, metrics_url, target.timeout, settings, &mut report).await;
    }
    report.connected(connected);
    if let Some(round_trip) = round_trip {
        report.latency(round_trip, target.latency_warn.unwrap_or(settings.latency.http));
    }
    report
}

/// `GET` of the target's URL, its body read to the end (so that the connection goes back to
/// the client's pool); the status.
async fn get(client: &reqwest::Client, target: &HttpTarget) -> reqwest::Result<u16> {
    let response = client.get(target.url.url().clone()).timeout(target.timeout).send().await?;
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok(status)
}

async fn metrics(
    client: &reqwest::Client,
    url: &cache_core::redact::SafeUrl,
    timeout: std::time::Duration,
    settings: &HealthSettings,
    report: &mut TargetReport,
) {
    let body: Result<Value, String> = match client.get(url.url().clone()).timeout(timeout).send().await {
        Ok(response) if response.status().is_success() => response.json().await.map_err(|e| e.to_string()),
        Ok(response) => Err(format!("HTTP {}", response.status())),
        Err(e) => Err(e.to_string()),
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            report.check("metrics", Status::Degraded, format!("metrics endpoint {url}: {e}"), None);
            return;
        }
    };
    let number = |key: &str| match body.get(key) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim_end_matches('%').parse::<f64>().ok(),
        _ => None,
    };
    let operations = number("total_operations");
    if let Some(ops) = operations {
        report.metric("total_operations", ops);
    }
    match number("hit_rate") {
        Some(mut rate) => {
            if rate > 1.0 {
                rate /= 100.0; // Given as a percentage.
            }
            report.metric("hit_rate", round3(rate));
            report.observe(Metric::HitRatio, rate);
            let judged = operations.is_none_or(|ops| ops >= settings.hit_ratio_min_lookups as f64);
            let status = if judged && rate < settings.hit_ratio_min { Status::Degraded } else { Status::Healthy };
            let mut perf = report.perf("hit_rate", round3(rate * 100.0), "%").range(0.0, Some(100.0));
            if judged {
                perf = perf.floor(settings.hit_ratio_min * 100.0);
            }
            report.check("hit_rate", status, format!("application hit rate {:.1}%", rate * 100.0), Some(perf));
            report.headline = format!("hit rate {:.1}%", rate * 100.0);
        }
        None => report.check("metrics", Status::Healthy, "metrics endpoint has no `hit_rate`", None),
    }
}
