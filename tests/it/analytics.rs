//! `cache-analytics collect` and `export` against real servers, checked by the real promtool.

use cache_tests::{HOST_JUDGED_LOOSELY, PgServer, RedisServer, TestEnv, find_binary, history, missing};
use chrono::Timelike;
use serde_json::Value;

use crate::{ANALYTICS, CLEANUP, HEALTH};

#[tokio::test(flavor = "multi_thread")]
async fn collect_then_export_json_csv_and_prometheus() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(crate::health_table_sql()).await.unwrap();
    pg.client("app")
        .await
        .batch_execute("UPDATE cache_entries SET accessed_at = now() - interval '2 hours' WHERE key IN ('k1', 'k2')")
        .await
        .unwrap();
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET").arg(format!("app:search:{i}")).arg("v").ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("sess:{i}")).arg("v").ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("app:search:1").query(&mut conn).unwrap();
    let _: Option<String> = redis::cmd("GET").arg("missing").query(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nprefixes = [{{ prefix = \"app:search:\" }}]\n\
         [[postgres]]\nname = \"main\"\nurl = \"{url}\"\n",
        redis.url()
    ));
    let out = env.run(ANALYTICS, &["collect", "--format", "json"]);
    out.expect_code(0);
    let snap = out.json();
    let r = &snap["redis"][0];
    assert_eq!(r["keys"], 400);
    assert_eq!(r["hit_ratio"], 0.5);
    assert_eq!(r["latency"]["samples"], 10);
    let prefixes: Vec<(String, u64)> = r["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["prefix"].as_str().unwrap().to_owned(), p["keys"].as_u64().unwrap()))
        .collect();
    assert_eq!(prefixes, [("app:search:".to_owned(), 300), ("sess:".to_owned(), 100)]);
    let p = &snap["postgres"][0];
    assert_eq!(
        (p["total_entries"].as_i64(), p["hot_entries"].as_i64(), p["active_categories"].as_i64()),
        (Some(25), Some(23), Some(3))
    );
    env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
    let history = std::fs::read_to_string(env.state_dir().join("analytics/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2);
    // The sample's own TYPE/PTTL lookups count as hits in Redis, and in the ledger...
    let second: Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    let info = |s: &Value, k: &str| s["redis"][0]["info"][k].as_f64().unwrap();
    let own = info(&second, "toolkit_hits") - info(&snap, "toolkit_hits");
    assert!(own >= 800.0, "the first sample's TYPE and PTTL of 400 keys are the toolkit's: {own}");
    assert_eq!(own, info(&second, "keyspace_hits") - info(&snap, "keyspace_hits"), "{second:#}");
    // ...but not in reports: nothing else looked a key up between the two collects.
    let day = env.run(ANALYTICS, &["generate", "--period", "day", "--format", "json"]).json();
    assert_eq!(day["cache_stats"]["hit_count"], 0.0, "{day:#}");
    assert_eq!(day["cache_stats"]["miss_count"], 0.0, "{day:#}");

    let json = env.run(ANALYTICS, &["export", "--format", "json"]).json();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["redis"][0]["keys"], 400);
    let csv = env.run(ANALYTICS, &["export", "--format", "csv"]);
    assert!(csv.stdout.starts_with("timestamp,tier,target,metric,value\n"));
    assert_eq!(csv.stdout.lines().filter(|l| l.contains(",redis,main,keys,400")).count(), 2);

    let prom = env.path("textfile/cache.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    env.run(ANALYTICS, &["export", "--format", "prometheus", "--output", prom.to_str().unwrap()]).expect_code(0);
    let text = std::fs::read_to_string(&prom).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&prom).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o644, "node_exporter must be able to read it");
    assert!(text.contains("cache_redis_keys{project=\"default\",target=\"main\"} 400\n"), "{text}");
    assert!(
        text.contains("cache_redis_prefix_keys{project=\"default\",target=\"main\",prefix=\"app:search:\"} 300\n"),
        "{text}"
    );
    assert!(
        text.contains("cache_job_last_success_timestamp_seconds{project=\"default\",cache_job=\"analytics-collect\"} "),
        "{text}"
    );
    let Some(promtool) = find_binary("promtool", &[]) else {
        missing("promtool (Debian package prometheus)");
        return;
    };
    let check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The cache table's documented `columns` are honoured: with `access_count` renamed `hits`
/// and the project column `tenant`, seed 000's statistics read those columns, and the
/// project's rows only.
#[tokio::test(flavor = "multi_thread")]
async fn collect_reads_renamed_access_count_and_project_columns() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("renamed").await;
    pg.client("renamed")
        .await
        .batch_execute(
            "CREATE TABLE cache_entries (
                key text PRIMARY KEY, value jsonb NOT NULL, tenant text NOT NULL,
                category text, hits integer NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL DEFAULT now(), accessed_at timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz, metadata jsonb NOT NULL DEFAULT '{}');
             INSERT INTO cache_entries (key, value, tenant, category, hits)
               SELECT 'k' || i, '{}'::jsonb, 'proj', 'cat' || (i % 2), i FROM generate_series(1, 10) i;
             INSERT INTO cache_entries (key, value, tenant, category, hits)
               SELECT 'other' || i, '{}'::jsonb, 'other', 'x' || i, 1000 FROM generate_series(1, 5) i;",
        )
        .await
        .unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "project_name = \"proj\"\n[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n\
         columns = {{ access_count = \"hits\", project = \"tenant\" }}\n"
    ));
    let out = env.run(ANALYTICS, &["collect", "--tier", "postgres", "--format", "json"]);
    out.expect_code(0);
    let snap = out.json();
    let p = &snap["postgres"][0];
    assert!(p.get("error").is_none(), "{p:#}");
    // Hits 1..=10 in project `proj`: a mean of 5.5; the other project's 1000s are not counted.
    assert_eq!(p["avg_access_count"].as_f64(), Some(5.5), "{p:#}");
    assert_eq!(
        (p["total_entries"].as_i64(), p["hot_entries"].as_i64(), p["active_categories"].as_i64()),
        (Some(10), Some(10), Some(2)),
        "{p:#}"
    );
}

#[test]
fn export_before_any_collect_says_so_and_unreachable_targets_are_recorded() {
    let env = TestEnv::new();
    let out = env.run(ANALYTICS, &["export", "--format", "json"]);
    out.expect_code(1);
    assert!(out.stderr.contains("run `cache-analytics collect` first"), "{}", out.dump());
    let hole = cache_tests::Blackhole::new();
    env.write_config(&format!("[[redis]]\nname = \"gone\"\nurl = \"redis://{}\"\ntimeout = \"300ms\"\n", hole.addr()));
    // The only target down: nothing could be collected (4), yet the snapshot records it.
    let out = env.run(ANALYTICS, &["collect", "--format", "json"]);
    out.expect_code(4);
    let snap: Value = out.json();
    assert!(snap["redis"][0]["error"].as_str().unwrap().contains("unreachable"), "{snap:#}");
    // The Prometheus export says the target is down.
    let text = env.run(ANALYTICS, &["export", "--format", "prometheus"]).stdout;
    assert!(text.contains("cache_redis_up{project=\"default\",target=\"gone\"} 0\n"), "{text}");
}

/// Two days of snapshots every 15 minutes: memory grows 10 000 bytes a step towards a 10 MB
/// maxmemory, the hit ratio falls by 1% a day, latency is flat at 2 ms, and the hours 02:00 to
/// 04:59 are quiet.
fn synthetic_history(env: &TestEnv) {
    let lines = history::history("2026-11-01T00:00:00Z", 2, |i, t| history::Sample {
        used_memory: 1_000_000.0 + 10_000.0 * i as f64,
        maxmemory: 10_000_000.0,
        hits: 0.0,
        misses: 0.0,
        ops_per_sec: if (2..5).contains(&t.hour()) { 1.0 } else { 100.0 },
        latency_ms: 2.0,
        hit_ratio: Some(0.9 - 0.01 * i as f64 / 96.0),
    });
    write_history(env, &lines);
}

fn write_history(env: &TestEnv, lines: &str) {
    std::fs::create_dir_all(env.state_dir().join("analytics")).unwrap();
    std::fs::write(env.state_dir().join("analytics/history.jsonl"), lines).unwrap();
}

#[test]
fn forecasts_and_windows_from_a_known_history() {
    let env = TestEnv::new();
    let out = env.run(ANALYTICS, &["forecast"]);
    out.expect_code(1);
    assert!(out.stderr.contains("at least two snapshots"), "{}", out.dump());
    // Under two days of history: no forecast, said (forecast.rs tests the figures of a longer one).
    synthetic_history(&env);
    let out = env.run(ANALYTICS, &["forecast", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["targets"][0]["not_enough_history"], "not enough history (47 h of 48 h)", "{}", out.dump());
    assert!(out.json()["targets"][0]["memory"].is_null(), "{}", out.dump());
    // The minimum is a setting: a day is enough when the operator says so.
    env.write_config("[analytics]\nforecast_min_history = \"24h\"\n");
    let out = env.run(ANALYTICS, &["forecast", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["min_history_hours"], 24, "{}", out.dump());
    assert!(out.json()["targets"][0]["memory"]["value"].is_number(), "{}", out.dump());

    let out = env.run(ANALYTICS, &["windows", "--format", "json"]);
    out.expect_code(0);
    let starts: Vec<u64> =
        out.json()["windows"].as_array().unwrap().iter().map(|w| w["start_hour"].as_u64().unwrap()).collect();
    assert_eq!(starts, [2, 3]);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("analytics/windows.json")).unwrap()).unwrap();
    assert_eq!(saved["windows"].as_array().unwrap().len(), 2);
}

#[test]
fn reports_of_a_known_week_carry_the_expected_figures_insights_and_anomalies() {
    let env = TestEnv::new();
    let out = env.run(ANALYTICS, &["generate", "--period", "week", "--date", "2026-03-07"]);
    out.expect_code(1);
    assert!(out.stderr.contains("no snapshots"), "{}", out.dump());
    write_history(&env, &history::known_week(7));
    let close = |v: &Value, want: f64, tol: f64| (v.as_f64().unwrap() - want).abs() < tol;

    let out = env.run(ANALYTICS, &["generate", "--period", "week", "--date", "2026-03-07", "--format", "json"]);
    out.expect_code(0);
    let week = out.json();
    let saved: Value = serde_json::from_slice(
        &std::fs::read(env.state_dir().join("analytics/reports/weekly_report_2026-03-07.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["hit_rate_analysis"], week["hit_rate_analysis"]);
    let h = &week["hit_rate_analysis"];
    assert!(close(&h["average_hit_rate"], (6.0 * 0.9 + 0.8) / 7.0, 1e-9), "{h:#}");
    assert!(close(&h["min_hit_rate"], 0.8, 1e-9) && close(&h["max_hit_rate"], 0.9, 1e-9), "{h:#}");
    assert_eq!(h["trend"], "declining");
    assert_eq!(week["period"]["days"], 7);
    assert_eq!(week["period"]["snapshots"], 7 * 96);
    // 672 latencies: 671 between 1.00 and 1.09, one of 50: p95 is 1.09.
    assert!(close(&week["latency_analysis"]["p95_latency"], 1.09, 1e-9), "{:#}", week["latency_analysis"]);
    assert!(close(&week["latency_analysis"]["max_latency"], 50.0, 1e-9));
    assert_eq!(week["operation_analysis"]["total_operations"], 7.0 * 96.0 * 1000.0 - 1000.0);
    let kinds: Vec<&str> = week["insights"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["performance_decline", "capacity_planning"], "{:#}", week["insights"]);
    // 90% -> 80% of lookups: 11.1% worse.
    assert!(close(&week["insights"][0]["rate"], 1.0 / 9.0, 1e-9), "{:#}", week["insights"]);
    // 15 MiB a day on 100 MiB.
    assert!(close(&week["insights"][1]["rate"], 0.15, 1e-9), "{:#}", week["insights"]);
    assert_eq!(week["insights"][1]["message"], "Cache growing at 15.0%/day");
    let latency_anomalies: Vec<&Value> =
        week["anomalies"]["found"].as_array().unwrap().iter().filter(|a| a["metric"] == "latency_ms").collect();
    assert_eq!(latency_anomalies.len(), 1, "{:#}", week["anomalies"]);
    assert_eq!(latency_anomalies[0]["timestamp"], "2026-03-05T12:00:00Z");
    assert_eq!(week["anomalies"]["threshold"], 3.5);

    // A day inside the steady part: no decline, one anomaly (the spike).
    let out = env.run(ANALYTICS, &["generate", "--period", "day", "--date", "2026-03-05"]);
    out.expect_code(0);
    assert!(out.stdout.contains("Hit Rate: 90.0%"), "{}", out.dump());
    assert!(out.stdout.contains("Anomalies: 1 "), "{}", out.dump());
    let day: Value = serde_json::from_slice(
        &std::fs::read(env.state_dir().join("analytics/reports/cache_metrics_2026-03-05.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(day["cache_stats"]["total_operations"], 96_000.0);
    assert!(close(&day["cache_stats"]["hit_rate"], 0.9, 1e-9));
    assert_eq!(day["performance_metrics"]["max_latency_ms"], 50.0);
    assert_eq!(day["health_info"]["redis_connected"], true);
    assert!(day["insights"].as_array().unwrap().iter().all(|i| i["type"] != "performance_decline"), "{day:#}");

    // The month: memory at 15 MiB/day reaches 2 GiB in the third projected month.
    let out = env.run(ANALYTICS, &["generate", "--period", "month", "--date", "2026-03-07", "--format", "json"]);
    out.expect_code(0);
    let month = out.json();
    assert!(env.state_dir().join("analytics/reports/capacity_report_2026-03.json").is_file());
    assert_eq!(month["memory_trends"]["trend"], "increasing");
    let over: Vec<bool> = month["growth_projections"]["monthly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["memory_over_maxmemory"].as_bool().unwrap())
        .collect();
    assert_eq!(over, [false, false, true, true, true, true], "{:#}", month["growth_projections"]);
    let issues: Vec<&str> =
        month["capacity_recommendations"].as_array().unwrap().iter().map(|r| r["issue"].as_str().unwrap()).collect();
    assert!(issues.contains(&"Rapid memory growth detected"), "{issues:?}");
    assert!(issues.contains(&"Memory reaches maxmemory in about 3 month(s) at this growth"), "{issues:?}");

    // And the low-usage windows of the same week.
    let out = env.run(ANALYTICS, &["windows", "--format", "json"]);
    let starts: Vec<u64> =
        out.json()["windows"].as_array().unwrap().iter().map(|w| w["start_hour"].as_u64().unwrap()).collect();
    assert_eq!(starts, [2, 3]);
}

/// Runs headless Chromium on `url` with `args`, killed after a minute; returns stdout and the
/// console messages the page logged.
fn chromium(chrome: &std::path::Path, env: &TestEnv, url: &str, args: &[&str]) -> (String, Vec<String>) {
    let mut child = std::process::Command::new(chrome)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", env.path("chromium-profile").display()))
        .args(args)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = cache_tests::wait_until(std::time::Duration::from_secs(60), || child.try_wait().unwrap().is_some());
    if !exited {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "chromium did not finish in 60 s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let console = stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Runs `check` with `cache-analytics dashboard --serve` listening on a loopback port, and
/// stops the server whatever `check` does.
pub(crate) fn with_dashboard_served(env: &TestEnv, check: impl FnOnce(u16) + std::panic::UnwindSafe) {
    let port = cache_tests::free_port();
    let mut server = env.command(ANALYTICS, &["dashboard", "--serve", &format!("127.0.0.1:{port}")]).spawn().unwrap();
    let up = cache_tests::wait_until(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let result = std::panic::catch_unwind(|| {
        assert!(up, "the dashboard server did not listen");
        check(port);
    });
    server.kill().unwrap();
    server.wait().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

pub(crate) fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[test]
fn dashboard_renders_in_headless_chromium_with_its_cards_and_charts() {
    let env = TestEnv::new();
    write_history(&env, &history::known_week(7));
    let dir = env.path("files");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..3 {
        std::fs::write(dir.join(format!("f{i}.bin")), vec![7u8; 10 * 1024]).unwrap();
    }
    env.write_config(&format!(
        "project_name = \"shop <prod>\"\n[[files]]\nname = \"models\"\npath = \"{}\"\nmax_size = \"15 KiB\"\n",
        dir.display()
    ));
    let cleanup = env.run(CLEANUP, &["files", "--yes", "--format", "json"]);
    cleanup.expect_code(0);
    let freed = cleanup.json()["targets"][0]["bytes_freed"].as_u64().unwrap();
    assert!(freed >= 20 * 1024, "{}", cleanup.dump());
    env.run(ANALYTICS, &["generate", "--period", "week", "--date", "2026-03-07", "-q"]).expect_code(0);
    env.run(ANALYTICS, &["windows", "-q"]).expect_code(0);

    let page = env.path("dashboard.html");
    env.run(ANALYTICS, &["dashboard", "--output", page.to_str().unwrap()]).expect_code(0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    // Self-contained: nothing loaded from elsewhere; the project name is escaped.
    for outside in ["src=", "href=", "<link", "@import", "url("] {
        assert!(!html.contains(outside), "the page loads `{outside}`");
    }
    assert!(html.contains("shop &lt;prod&gt;") && !html.contains("shop <prod>"));
    assert!(
        html.contains("Analytics: 0 | Health checks: 0 | Cleanups: 1 | Optimizations: 0 | Backups: 0 | Reports: 1"),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<span class=\"label\" title=\"files:\">files:</span><span class=\"value\">{}</span>",
            cache_core::output::bytes(freed)
        )),
        "{html}"
    );
    assert!(html.contains("Low usage 02:00–04:00 UTC"), "{html}");
    // The last day of the known week: 80% hits.
    assert!(html.contains("<span class=\"value\" id=\"hit-ratio\">80.0%</span>"), "{html}");
    // Without `--output` it goes to the state directory.
    env.run(ANALYTICS, &["dashboard", "-q"]).expect_code(0);
    let in_state = env.state_dir().join("analytics/dashboard.html");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&in_state).unwrap().permissions().mode() & 0o777, 0o600, "a state file is 0600");
    // Nothing installed the schedule: the card says so, never "on".
    assert!(html.contains("<span class=\"value\" id=\"scheduler-status\">not installed</span>"), "{html}");
    let cron_d = env.path("cron.d-cache-toolkit");
    env.run(crate::SCHEDULER, &["install", "--cron-d", cron_d.to_str().unwrap()]).expect_code(0);
    let scheduler_status = || {
        env.run(ANALYTICS, &["dashboard", "-q"]).expect_code(0);
        let page = std::fs::read_to_string(env.state_dir().join("analytics/dashboard.html")).unwrap();
        let open = "<span class=\"value\" id=\"scheduler-status\">";
        let at = page.find(open).unwrap() + open.len();
        page[at..at + page[at..].find("</span>").unwrap()].to_owned()
    };
    assert_eq!(scheduler_status(), format!("on (installed in {})", cron_d.display()));
    // Removed behind the scheduler's back: not installed, and where it was.
    std::fs::remove_file(&cron_d).unwrap();
    assert_eq!(scheduler_status(), format!("not installed: the schedule put in {} is gone", cron_d.display()));
    // Automation turned off shows on the card.
    env.run(crate::SCHEDULER, &["stop", "--reason", "migration"]).expect_code(0);
    env.run(ANALYTICS, &["dashboard", "-q"]).expect_code(0);
    let stopped = std::fs::read_to_string(env.state_dir().join("analytics/dashboard.html")).unwrap();
    assert!(
        stopped.contains("<span class=\"value\" id=\"scheduler-status\">stopped just now (migration)</span>"),
        "{stopped}"
    );

    let Some(chrome) = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| find_binary(b, &[]))
    else {
        missing("chromium (Debian package chromium)");
        return;
    };
    let url = format!("file://{}", page.display());
    let (dom, console) = chromium(&chrome, &env, &url, &["--dump-dom"]);
    assert!(console.is_empty(), "console messages: {console:#?}");
    for range in ["24h", "7d"] {
        for chart in ["hit-ratio", "memory", "latency", "operations"] {
            let id = format!("id=\"chart-{chart}-{range}\"");
            let at = dom.find(&id).unwrap_or_else(|| panic!("no {id} in the rendered page"));
            let svg = &dom[at..at + dom[at..].find("</svg>").unwrap()];
            assert!(svg.contains("<polyline class=\"line\" points=\""), "{id} has no line: {svg}");
        }
    }
    let shot = env.path("dashboard.png");
    let (_, console) =
        chromium(&chrome, &env, &url, &[&format!("--screenshot={}", shot.display()), "--window-size=1400,2200"]);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000, "screenshot of {} bytes", png.len());
    // Kept where people can look at it after the run.
    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"), &png).unwrap();

    // Served: the page and the metrics API, on loopback.
    with_dashboard_served(&env, |port| {
        let (head, body) = http_get(port, "/api/cache/metrics");
        assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{head}");
        let metrics: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(metrics["hit_ratio"], 80.0, "{metrics:#}");
        let (head, _) = http_get(port, "/nope");
        assert!(head.contains(" 404 "), "{head}");
        let (dom, console) = chromium(&chrome, &env, &format!("http://127.0.0.1:{port}/"), &["--dump-dom"]);
        assert!(console.is_empty(), "console messages: {console:#?}");
        assert!(dom.contains("id=\"chart-latency-7d\""));
    });
}

/// Measures, in the page Chromium renders, every card row: its label must be one line (its
/// text's line boxes, and its height against its line height), not cut, not overlapping its
/// value, inside its card; and the page must not scroll sideways. Writes what it found as JSON
/// into `<pre id="layout-check">`, for `--dump-dom` to carry out.
const LAYOUT_CHECK: &str = r#"<script>
(() => {
  const out = { width: window.innerWidth, scroll_width: document.documentElement.scrollWidth, rows: 0, bad: [] };
  for (const row of document.querySelectorAll('.status-card .metrics')) {
    const label = row.querySelector('.label'), value = row.querySelector('.value');
    if (!label || !value) { out.bad.push('a row without label or value: ' + row.textContent); continue; }
    out.rows++;
    const name = JSON.stringify(label.textContent);
    const l = label.getBoundingClientRect(), v = value.getBoundingClientRect();
    const text = document.createRange();
    text.selectNodeContents(label);
    const lines = new Set([...text.getClientRects()].map(r => Math.round(r.top))).size;
    let lineHeight = parseFloat(getComputedStyle(label).lineHeight);
    if (!(lineHeight > 0)) lineHeight = parseFloat(getComputedStyle(label).fontSize) * 1.2;
    if (lines > 1 || l.height > lineHeight * 1.5) {
      out.bad.push(name + ' wraps: ' + lines + ' lines, ' + l.height.toFixed(1) + ' px high for ' + lineHeight.toFixed(1) + ' px lines');
    }
    const across = Math.min(l.right, v.right) - Math.max(l.left, v.left);
    const down = Math.min(l.bottom, v.bottom) - Math.max(l.top, v.top);
    if (value.textContent.length > 0 && across > 0.5 && down > 0.5) {
      out.bad.push(name + ' overlaps its value ' + JSON.stringify(value.textContent));
    }
    if (label.scrollWidth > label.clientWidth + 1) {
      out.bad.push(name + ' is cut: ' + label.scrollWidth + ' px in ' + label.clientWidth + ' px');
    }
    const card = row.closest('.status-card').getBoundingClientRect();
    if (l.right > card.right + 0.5 || v.right > card.right + 0.5) out.bad.push(name + ' or its value runs out of its card');
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"#;

/// Chromium's windows are at least this wide (`--window-size=390,900` lays pages out at 500
/// px): a narrower viewport is an iframe of that width, whose own viewport and media queries
/// are the width asked for.
const NARROWEST_WINDOW: u32 = 500;

/// Renders `page` (a copy with [`LAYOUT_CHECK`] added) in headless Chromium at `width` px and
/// returns what the check found, and a screenshot of the page itself at that width.
fn layout_at(chrome: &std::path::Path, env: &TestEnv, page: &std::path::Path, width: u32) -> (Value, Vec<u8>) {
    let html = std::fs::read_to_string(page).unwrap();
    assert_eq!(html.matches("</body>").count(), 1);
    let checked = env.path(&format!("dashboard-check-{width}.html"));
    std::fs::write(&checked, html.replace("</body>", &format!("{LAYOUT_CHECK}</body>"))).unwrap();
    // The URL showing `shown` at `width` px, and the window's width.
    let at_width = |shown: &std::path::Path, name: &str| -> (String, u32) {
        if width >= NARROWEST_WINDOW {
            return (format!("file://{}", shown.display()), width);
        }
        let frame = env.path(&format!("{name}-{width}.html"));
        std::fs::write(
            &frame,
            format!(
                "<!DOCTYPE html><html><body style=\"margin:0;background:#1e2430\">\
                 <iframe src=\"file://{}\" style=\"border:0;width:{width}px;height:900px\" onload=\"\
                 const found = this.contentDocument.getElementById('layout-check');\
                 const pre = document.createElement('pre'); pre.id = 'layout-check';\
                 pre.textContent = found ? found.textContent : 'null'; document.body.appendChild(pre);\">\
                 </iframe></body></html>",
                shown.display()
            ),
        )
        .unwrap();
        (format!("file://{}", frame.display()), NARROWEST_WINDOW)
    };
    let (url, window) = at_width(&checked, "dashboard-check-frame");
    let size = format!("--window-size={window},900");
    let args = [&size, "--allow-file-access-from-files", "--run-all-compositor-stages-before-draw"];
    let (dom, console) = chromium(chrome, env, &url, &[&args[..], &["--dump-dom"]].concat());
    assert!(console.is_empty(), "console messages at {width} px: {console:#?}");
    let at = dom.find("<pre id=\"layout-check\">").unwrap_or_else(|| panic!("the check did not run: {dom}"));
    let json = &dom[at + "<pre id=\"layout-check\">".len()..];
    let json = json[..json.find("</pre>").unwrap()].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    let found: Value = serde_json::from_str(&json).unwrap();
    let shot = env.path(&format!("dashboard-{width}.png"));
    let (url, _) = at_width(page, "dashboard-frame");
    let (_, console) =
        chromium(chrome, env, &url, &[&args[..], &[format!("--screenshot={}", shot.display()).as_str()]].concat());
    assert!(console.is_empty(), "console messages at {width} px: {console:#?}");
    (found, std::fs::read(&shot).unwrap())
}

/// The `<p>` lines of the Recent Alerts card.
fn alert_lines(page: &str) -> Vec<String> {
    let at = page.find("<div id=\"recent-alerts\">").unwrap();
    let card = &page[at..at + page[at..].find("</div>").unwrap()];
    card.split("<p>").skip(1).map(|p| p.trim_end_matches("</p>").to_owned()).collect()
}

/// The page from its first snapshot on, built by the tools themselves: collect against a real
/// redis-server, a full health check, and monitor rounds while that server is stopped and
/// started again (an alert that flaps), then checked in headless Chromium at a desktop's and a
/// phone's width.
#[test]
fn a_young_dashboard_zooms_to_its_snapshots_collapses_flapping_and_keeps_labels_on_one_line() {
    let Some(mut redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!(
        "project_name = \"shop\"\n[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         {HOST_JUDGED_LOOSELY}\
         [[alerts.rules]]\nname = \"Redis Down\"\ncondition = \"tier_unavailable\"\nseverity = \"critical\"\n\
         tiers = [\"redis\"]\n",
        redis.url()
    ));
    let page = env.path("dashboard.html");
    let render = || {
        env.run(ANALYTICS, &["dashboard", "--output", page.to_str().unwrap()]).expect_code(0);
        std::fs::read_to_string(&page).unwrap()
    };
    let charts = ["hit-ratio", "memory", "latency", "operations"];
    let traffic = |redis: &RedisServer, round: u32| {
        let mut conn = redis.connection();
        for i in 0..50 {
            let _: () =
                redis::cmd("SET").arg(format!("app:k{round}:{i}")).arg("v".repeat(100)).query(&mut conn).unwrap();
            for _ in 0..4 {
                let _: Option<String> = redis::cmd("GET").arg(format!("app:k{round}:{i}")).query(&mut conn).unwrap();
            }
            let _: Option<String> = redis::cmd("GET").arg(format!("app:none:{i}")).query(&mut conn).unwrap();
        }
    };

    // No snapshot yet: every chart is the note, with 0.
    let html = render();
    for chart in charts {
        for range in ["24h", "7d"] {
            let id = format!("id=\"chart-{chart}-{range}\"");
            let at = html.find(&id).unwrap_or_else(|| panic!("no {id}: {html}"));
            let note = &html[at..at + html[at..].find("</p></div>").unwrap()];
            assert!(note.starts_with(&format!("{id} role=\"img\"")), "{id} is no note: {note}");
            assert!(note.ends_with("not enough data yet (0 snapshots)"), "{note}");
        }
    }
    assert!(!html.contains("<svg"), "{html}");
    // Two snapshots: still a note, saying 2.
    for round in 0..2 {
        traffic(&redis, round);
        env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
    }
    let html = render();
    assert_eq!(html.matches("not enough data yet (2 snapshots)").count(), 4, "{html}");
    assert!(!html.contains("<polyline"), "{html}");
    // The third: charts, spanning the snapshots there are (seconds), not 24 hours.
    traffic(&redis, 2);
    env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
    let taken: Vec<chrono::DateTime<chrono::Utc>> =
        std::fs::read_to_string(env.state_dir().join("analytics/history.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let t = serde_json::from_str::<Value>(l).unwrap()["timestamp"].as_str().unwrap().to_owned();
                chrono::DateTime::parse_from_rfc3339(&t).unwrap().to_utc()
            })
            .collect();
    let times: Vec<String> = taken.iter().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).collect();
    assert_eq!(times.len(), 3);
    let html = render();
    for chart in charts {
        let id = format!("id=\"chart-{chart}-24h\"");
        let at = html.find(&id).unwrap_or_else(|| panic!("no {id}: {html}"));
        let svg = &html[at..at + html[at..].find("</svg>").unwrap()];
        let range = format!("data-from=\"{}\" data-to=\"{}\" data-snapshots=\"3\"", times[0], times[2]);
        assert!(svg.contains(&range), "{chart} does not span the snapshots {range}: {svg}");
        assert!(svg.contains("<polyline class=\"line\""), "{chart} has no line: {svg}");
    }
    // The memory line runs from the frame's left edge to its right.
    let at = html.find("id=\"chart-memory-24h\"").unwrap();
    let points = &html[at + html[at..].find("points=\"").unwrap() + 8..];
    let points: Vec<&str> = points[..points.find('"').unwrap()].split(' ').collect();
    assert_eq!(points.len(), 3, "{points:?}");
    assert!(points[0].starts_with("70.0,") && points[2].starts_with("630.0,"), "{points:?}");
    assert!(html.contains("The history so far (3 snapshots, since "), "{html}");
    // The hit ratio is of the minute or so there is: 400 hits of 500 lookups in the last two rounds
    // (the toolkit's own lookups not counted).
    let minutes = (taken[2] - taken[0]).num_minutes().max(1);
    assert!(html.contains(&format!("title=\"Cache Hit Ratio ({minutes} min):\"")), "{html}");
    assert!(html.contains("<span class=\"value\" id=\"hit-ratio\">80.0%</span>"), "{html}");

    // A full check, then monitor rounds with the server stopped and started three times.
    let check = env.run(HEALTH, &["check", "-q"]);
    assert!(check.code() <= 1, "{}", check.dump());
    assert!(env.state_dir().join("health/last-full-check.json").exists());
    let base = chrono::Utc::now() - chrono::Duration::minutes(30);
    let round = |minute: i64| {
        let mut cmd = env.command(HEALTH, &["monitor", "--once", "--tier", "redis", "-q"]);
        cmd.env("CACHE_NOW", (base + chrono::Duration::minutes(minute)).to_rfc3339());
        env.run_command(cmd).expect_code(0);
    };
    round(0);
    for i in 0..3 {
        redis.stop();
        round(1 + 2 * i);
        redis.restart();
        round(2 + 2 * i);
    }
    let log: Vec<Value> = std::fs::read_to_string(env.state_dir().join("alerts/log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = log.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["firing", "resolved", "firing", "resolved", "firing", "resolved"], "{log:#?}");
    let first = chrono::DateTime::parse_from_rfc3339(log[0]["time"].as_str().unwrap()).unwrap().to_utc();

    let html = render();
    let lines = alert_lines(&html);
    // The alert: one line, its six changes counted, since the first, in its latest state.
    let down: Vec<&String> = lines.iter().filter(|l| l.contains("Redis Down")).collect();
    assert_eq!(down.len(), 1, "{lines:#?}");
    assert!(down[0].starts_with("Redis Down on redis/main — flapping: 6 transitions since "), "{lines:#?}");
    assert!(
        down[0].contains(&first.format("%H:%M UTC").to_string()) && down[0].contains(", now resolved ("),
        "{lines:#?}"
    );
    // The health checks saw the same: failed and back three times (and whatever the full
    // check saw before), one line.
    let mut statuses: Vec<String> = Vec::new();
    for line in std::fs::read_to_string(env.state_dir().join("health/history.jsonl")).unwrap().lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        for t in line["targets"].as_array().unwrap() {
            if t["tier"] == "redis" && t["name"] == "main" {
                statuses.push(t["status"].as_str().unwrap().to_owned());
            }
        }
    }
    let changed = statuses.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changed >= 6, "{statuses:?}");
    let status: Vec<&String> = lines.iter().filter(|l| l.starts_with("redis/main")).collect();
    assert_eq!(status.len(), 1, "{lines:#?}");
    assert!(status[0].starts_with(&format!("redis/main — flapping: {changed} status changes since ")), "{lines:#?}");
    assert!(status[0].contains(&format!(", now {} (", statuses.last().unwrap())), "{lines:#?}");

    // In Chromium, at a desktop's width and a phone's: no label wraps, is cut or meets its value.
    let Some(chrome) = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| find_binary(b, &[]))
    else {
        missing("chromium (Debian package chromium)");
        return;
    };
    for width in [1400, 390] {
        let (found, png) = layout_at(&chrome, &env, &page, width);
        assert_eq!(found["width"], width, "the page was laid out at another width: {found:#}");
        assert!(found["rows"].as_u64().unwrap() >= 10, "{found:#}");
        assert_eq!(found["bad"], serde_json::json!([]), "at {width} px: {found:#}");
        assert!(found["scroll_width"].as_u64().unwrap() <= u64::from(width), "the page scrolls sideways: {found:#}");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "screenshot of {} bytes", png.len());
        let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dashboard-young-{width}.png"));
        std::fs::write(kept, &png).unwrap();
    }
}

#[test]
fn on_a_cluster_collect_and_debug_memory_count_every_primary() {
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    // 20,000 keys, each written on the primary serving its slot.
    let mut by_port: std::collections::BTreeMap<u16, Vec<String>> = std::collections::BTreeMap::new();
    for i in 0..20_000 {
        let key = format!("app:k{i}");
        by_port.entry(cluster.node_for(&key).port()).or_default().push(key);
    }
    assert_eq!(by_port.len(), 3, "the seed should fill every primary");
    for node in cluster.nodes() {
        let mut conn = node.connection();
        for chunk in by_port[&node.port()].chunks(1000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("SET").arg(key).arg("value").ignore();
            }
            pipe.query::<()>(&mut conn).unwrap();
        }
    }
    let total: u64 =
        cluster.nodes().iter().map(|n| redis::cmd("DBSIZE").query::<u64>(&mut n.connection()).unwrap()).sum();
    assert_eq!(total, 20_000);
    let used: f64 = cluster
        .nodes()
        .iter()
        .map(|n| {
            let info: String = redis::cmd("INFO").arg("memory").query(&mut n.connection()).unwrap();
            info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse::<f64>().unwrap()
        })
        .sum();
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", cluster.nodes()[0].url()));
    let out = env.run(ANALYTICS, &["collect", "--tier", "redis", "--format", "json"]);
    out.expect_code(0);
    let history = std::fs::read_to_string(env.state_dir().join("analytics/history.jsonl")).unwrap();
    let snapshot: Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    let redis = &snapshot["redis"][0];
    assert_eq!(redis["keys"], total, "{redis:#}");
    assert_eq!(redis["coverage"], "3 of 3 primaries");
    let collected = redis["info"]["used_memory"].as_f64().unwrap();
    assert!((collected - used).abs() / used < 0.05, "used_memory {collected} vs the primaries' {used}");
    let prefixes: u64 = redis["prefixes"].as_array().unwrap().iter().map(|p| p["keys"].as_u64().unwrap()).sum();
    assert!(prefixes.abs_diff(total) <= 3, "per-prefix keys {prefixes} of {total}");
    let debug = env.run(crate::DEBUG, &["memory", "--tier", "redis", "--format", "json"]);
    debug.expect_code(0);
    let section = &debug.json()["redis"][0];
    assert_eq!(section["keys_in_db"], total, "{section:#}");
    assert_eq!(section["scanned"], total);
    assert_eq!(section["coverage"], "3 of 3 primaries");
    // Performance and connections read every primary too, and say so.
    for section in ["performance", "connections"] {
        let out = env.run(crate::DEBUG, &[section, "--tier", "redis", "--format", "json"]);
        out.expect_code(0);
        let redis = &out.json()["redis"][0];
        assert_eq!(redis["coverage"], "3 of 3 primaries", "{section}: {redis:#}");
    }
    let connections = env.run(crate::DEBUG, &["connections", "--tier", "redis", "--format", "json"]).json();
    // maxclients of the three primaries added up.
    let max: u64 = cluster
        .nodes()
        .iter()
        .map(|n| {
            let pair: Vec<String> =
                redis::cmd("CONFIG").arg("GET").arg("maxclients").query(&mut n.connection()).unwrap();
            pair[1].parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(connections["redis"][0]["clients"]["maxclients"], max, "{connections:#}");
    let text = env.run(crate::DEBUG, &["memory", "--tier", "redis"]);
    assert!(
        text.stdout.contains(&format!("{total} of {total} keys scanned")) && text.stdout.contains("3 of 3 primaries"),
        "{}",
        text.dump()
    );
}

#[test]
fn a_history_torn_by_a_full_disk_heals_and_every_reader_goes_on() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    env.run(ANALYTICS, &["collect"]).expect_code(0);
    let history = env.state_dir().join("analytics/history.jsonl");
    // What a write cut by a full disk leaves: half a line, no newline.
    let mut f = std::fs::OpenOptions::new().append(true).open(&history).unwrap();
    std::io::Write::write_all(&mut f, b"{\"schema_version\":1,\"timestamp\":\"2026-").unwrap();
    for (args, code) in [
        (&["export", "--format", "prometheus"][..], 0),
        (&["dashboard"][..], 0),
        (&["generate", "--period", "day", "--format", "json"][..], 0),
    ] {
        let out = env.run(ANALYTICS, args);
        out.expect_code(code);
        assert!(out.stderr.contains("skipped 1 bad line"), "{args:?}: {}", out.dump());
    }
    // The next collect cuts the torn line and appends a whole one.
    env.run(ANALYTICS, &["collect"]).expect_code(0);
    let text = std::fs::read_to_string(&history).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{text}");
    assert!(!env.run(ANALYTICS, &["export", "--format", "prometheus"]).stderr.contains("bad line"));
}

#[test]
fn output_to_dev_stdout_writes_there_and_a_link_to_a_file_is_refused() {
    let env = TestEnv::new();
    write_history(&env, &history::known_week(2));
    let out = env.run(ANALYTICS, &["dashboard", "-o", "/dev/stdout"]);
    out.expect_code(0);
    assert!(out.stdout.contains("<html") || out.stdout.contains("<!DOCTYPE"), "{}", out.dump());
    let file = env.path("real.prom");
    std::fs::write(&file, "old").unwrap();
    let link = env.path("link.prom");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let out = env.run(ANALYTICS, &["export", "--format", "prometheus", "-o", link.to_str().unwrap()]);
    assert_ne!(out.code(), 0, "{}", out.dump());
    assert!(out.stderr.contains("is a symbolic link"), "{}", out.dump());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "old");
    let out =
        env.run(ANALYTICS, &["export", "--format", "prometheus", "-o", link.to_str().unwrap(), "--follow-symlinks"]);
    out.expect_code(0);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&file).unwrap().contains("cache_"), "the file the link points to is written");
}
