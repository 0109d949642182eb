//! Forecasts, reports and anomalies on synthetic histories with a known truth.

use cache_tests::{TestEnv, history};
use chrono::{DateTime, Timelike};
use serde_json::Value;

use crate::ANALYTICS;

fn write_history(env: &TestEnv, lines: &str) {
    std::fs::create_dir_all(env.state_dir().join("analytics")).unwrap();
    std::fs::write(env.state_dir().join("analytics/history.jsonl"), lines).unwrap();
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - want).abs() < 1e-6 * want.abs().max(1.0))
}

/// The INFO figures of a flat cache at `latency_ms`: 1000 lookups per 15 minutes, 90% hits,
/// 100 MiB; `step` counts the snapshots.
fn steady(step: i64, latency_ms: f64) -> history::Sample {
    history::Sample {
        used_memory: 100.0 * 1_048_576.0,
        maxmemory: 0.0,
        hits: 900.0 * step as f64,
        misses: 100.0 * step as f64,
        ops_per_sec: 1.0,
        latency_ms,
        hit_ratio: None,
    }
}

#[test]
fn a_minute_of_history_gives_no_forecast_and_says_how_much_there_is() {
    let env = TestEnv::new();
    // Two snapshots a minute apart, memory up by a megabyte: once "reaches maxmemory in ~1.9 days".
    let lines = history::history("2026-11-01T00:00:00Z", 1, |i, _| history::Sample {
        used_memory: 1e8 + 1e6 * i as f64,
        maxmemory: 3e8,
        ..steady(i, 0.3)
    });
    let two: Vec<&str> = lines.lines().take(2).collect();
    write_history(&env, &format!("{}\n{}\n", two[0], two[1].replace("T00:15:00Z", "T00:01:00Z")));
    let out = env.run(ANALYTICS, &["forecast"]);
    out.expect_code(0);
    assert!(out.stdout.contains("not enough history (0 h of 48 h)"), "{}", out.dump());
    assert!(!out.stdout.contains("in ~"), "{}", out.dump());
    let out = env.run(ANALYTICS, &["forecast", "--format", "json"]);
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(doc["min_history_hours"], 48);
    let f = &doc["targets"][0];
    assert_eq!(f["not_enough_history"], "not enough history (0 h of 48 h)", "{f:#}");
    assert!(f["memory"].is_null() && f["days_to_maxmemory"].is_null() && f["hit_ratio"].is_null(), "{f:#}");
}

/// Three days of snapshots every 15 minutes: memory grows 10 000 bytes a step towards a 10 MB
/// maxmemory; the applications' lookups hit 1% less each day, from 90%, while INFO's lifetime
/// ratio says 99%.
#[test]
fn forecasts_of_a_known_history_follow_its_trend_and_the_intervals_hit_ratio() {
    let env = TestEnv::new();
    let (mut hits, mut misses) = (0.0, 0.0);
    write_history(
        &env,
        &history::history("2026-11-01T00:00:00Z", 3, |i, _| {
            let ratio = 0.9 - 0.01 * i as f64 / 96.0;
            hits += 1000.0 * ratio;
            misses += 1000.0 * (1.0 - ratio);
            history::Sample {
                used_memory: 1_000_000.0 + 10_000.0 * i as f64,
                maxmemory: 10_000_000.0,
                hits,
                misses,
                ops_per_sec: 100.0,
                latency_ms: 2.0,
                hit_ratio: Some(0.99),
            }
        }),
    );
    let out = env.run(ANALYTICS, &["forecast", "--format", "json"]);
    out.expect_code(0);
    let f = &out.json()["targets"][0];
    assert!(f.get("not_enough_history").is_none(), "{f:#}");
    // Last value 3 870 000 at step 287, +10 000 a step, 672 steps in 7 days.
    assert!(close(&f["memory"]["value"], 3_870_000.0 + 10_000.0 * 672.0), "{f:#}");
    assert!(close(&f["memory"]["step"], 7.0), "{f:#}");
    // (10 000 000 - 3 870 000) / 10 000 = 613 steps = 6.385 days.
    assert!(close(&f["days_to_maxmemory"], 613.0 / 96.0), "{f:#}");
    // The last interval ends at day 287/96; seven days later its ratio has fallen 7% more.
    assert!(close(&f["hit_ratio"]["value"], 0.9 - 0.01 * (287.0 / 96.0 + 7.0)), "{f:#}");
    assert!(close(&f["latency_ms"], 2.0));
    let text = env.run(ANALYTICS, &["forecast"]).stdout;
    assert!(text.contains("in ~6.4 days") && text.contains("80.0%"), "{text}");
}

/// A server that ran for months at 95% hits, whose applications now hit 57% of the time: the
/// forecast is 57%, not the lifetime ratio's 94% (issue 14 saw "71.1%, truth 57%").
#[test]
fn the_hit_ratio_forecast_is_the_applications_not_the_servers_lifetime() {
    let env = TestEnv::new();
    write_history(
        &env,
        &history::history("2026-11-01T00:00:00Z", 3, |i, _| history::Sample {
            hits: 9.5e8 + 570.0 * i as f64,
            misses: 0.5e8 + 430.0 * i as f64,
            ..steady(i, 0.3)
        }),
    );
    let out = env.run(ANALYTICS, &["forecast", "--format", "json"]);
    out.expect_code(0);
    let hit = &out.json()["targets"][0]["hit_ratio"];
    assert!(close(&hit["value"], 0.57) && close(&hit["low"], 0.57) && close(&hit["high"], 0.57), "{hit:#}");
    let text = env.run(ANALYTICS, &["forecast"]).stdout;
    assert!(text.contains("57.0%") && !text.contains("94."), "{text}");
}

/// Flat traffic collected from Nov 1 10:00 to Dec 1 09:45, the report run on Dec 1: the
/// partial days are left out, and flat traffic projects flat (once −164% growth and 0
/// operations a day).
#[test]
fn the_monthly_report_covers_whole_days_only_and_flat_traffic_projects_flat() {
    let env = TestEnv::new();
    write_history(&env, &history::history("2026-11-01T10:00:00Z", 30, |i, _| steady(i, 0.3)));
    let out = env.run(ANALYTICS, &["generate", "--period", "month", "--date", "2026-12-01"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("covers 2026-11-02 to 2026-11-30, 29 whole days; partial days left out: 2026-12-01"),
        "{}",
        out.dump()
    );
    assert!(out.stdout.contains("96000 operations/day"), "{}", out.dump());
    let out = env.run(ANALYTICS, &["generate", "--period", "month", "--date", "2026-12-01", "--format", "json"]);
    out.expect_code(0);
    let month = out.json();
    assert_eq!(month["period"]["days"], 29);
    assert_eq!(month["period"]["partial_days_left_out"], serde_json::json!(["2026-12-01"]));
    let o = &month["operation_trends"];
    assert!(close(&o["growth_rate_percent"], 0.0) && close(&o["average_daily_operations"], 96_000.0), "{o:#}");
    assert!(close(&month["growth_projections"]["6_month_operations_projection"], 96_000.0), "{month:#}");
    assert!(close(&month["memory_trends"]["growth_rate_percent"], 0.0), "{month:#}");

    // The week ending on Dec 1, still running, covers the six days before it.
    let out = env.run(ANALYTICS, &["generate", "--period", "week", "--date", "2026-12-01", "--format", "json"]);
    out.expect_code(0);
    let week = out.json();
    assert_eq!(
        week["period"]["covers"],
        "covers 2026-11-25 to 2026-11-30, 6 whole days; partial days left out: 2026-12-01"
    );
    assert!(close(&week["operation_analysis"]["total_operations"], 6.0 * 96_000.0), "{week:#}");
}

/// PINGs of 0.307 ms with a 0.314 ms now and then are no anomaly; a jump to 5 ms is.
#[test]
fn a_latency_wobble_is_no_anomaly_and_a_jump_is() {
    let env = TestEnv::new();
    let spike = DateTime::parse_from_rfc3339("2026-11-03T14:00:00Z").unwrap().to_utc();
    write_history(
        &env,
        &history::history("2026-11-02T00:00:00Z", 2, |i, t| {
            let wobble = if t.minute() == 30 && t.hour() % 5 == 0 { 0.314 } else { 0.307 };
            steady(i, if t == spike { 5.0 } else { wobble })
        }),
    );
    let out = env.run(ANALYTICS, &["generate", "--period", "day", "--date", "2026-11-02", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["anomalies"]["found"], serde_json::json!([]), "{}", out.dump());
    let out = env.run(ANALYTICS, &["generate", "--period", "day", "--date", "2026-11-03", "--format", "json"]);
    out.expect_code(0);
    let day = out.json();
    let found = day["anomalies"]["found"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{:#}", day["anomalies"]);
    assert_eq!(
        (&found[0]["metric"], &found[0]["timestamp"]),
        (&Value::from("latency_ms"), &Value::from("2026-11-03T14:00:00Z"))
    );
    assert_eq!(day["anomalies"]["min_relative_change"], 0.2);
    assert_eq!(day["anomalies"]["floors"]["latency_ms"], 1.0);
}
