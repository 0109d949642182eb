//! `cache-health check` against real redis-server and PostgreSQL processes.

use std::time::{Duration, Instant};

use cache_tests::{Blackhole, HOST_JUDGED_LOOSELY, Mem0Server, PgServer, RedisServer, StubHttp, TestEnv, wait_until};
use serde_json::Value;

use crate::HEALTH;

fn target<'a>(report: &'a Value, tier: &str, name: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == tier && t["name"] == name)
        .unwrap_or_else(|| panic!("no target {tier}/{name} in {report:#}"))
}

fn check_names(target: &Value) -> Vec<String> {
    target["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

const CACHE_TABLE: &str = "CREATE TABLE cache_entries (
    key text PRIMARY KEY, value jsonb NOT NULL, project_name text NOT NULL DEFAULT 'default',
    category text, access_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(), accessed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz, metadata jsonb NOT NULL DEFAULT '{}');
  CREATE INDEX cache_entries_expires_at ON cache_entries (expires_at);
  INSERT INTO cache_entries (key, value, category)
    SELECT 'k' || i, '{}'::jsonb, 'cat' || (i % 3) FROM generate_series(1, 25) i;";

/// The cache table of docs/cache-table.md with 25 fresh rows.
pub(crate) fn health_table_sql() -> &'static str {
    CACHE_TABLE
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_redis_postgres_memory_and_app_exit_ok() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(CACHE_TABLE).await.unwrap();
    let mem0 = Mem0Server::platform("m0-test-key");
    mem0.add_memory("m1", "proj", "likes tea", &["food"], "2026-11-01T00:00:00Z");
    let app = StubHttp::new(vec![
        ("/health", 200, "{\"status\":\"ok\"}".into()),
        ("/metrics/cache", 200, "{\"hit_rate\": 0.93, \"total_operations\": 5000}".into()),
    ]);
    let env = TestEnv::new();
    env.watch_log("redis", redis.dir().join("redis.log"));
    env.watch_log("postgres", pg.socket_dir().join("postgres.log"));
    env.write_config(&format!(
        "project_name = \"proj\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{}\"\n\
         [[redis]]\nname = \"sock\"\nurl = \"{}\"\n\
         [[postgres]]\nname = \"main\"\nurl = \"{url}\"\n\
         [[memory]]\nname = \"mem0\"\nurl = \"{}\"\napi_key = \"m0-test-key\"\n\
         [[http]]\nname = \"app\"\nurl = \"{app}/health\"\nmetrics_url = \"{app}/metrics/cache\"\n\
         {HOST_JUDGED_LOOSELY}",
        redis.url(),
        redis.unix_url(),
        mem0.url(),
        app = app.url(),
    ));
    let out = env.run(HEALTH, &["check", "--format", "json"]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report.as_object().unwrap().keys().next().unwrap(), "schema_version");
    assert_eq!(report["status"], "OK", "{}", out.dump());
    assert_eq!(report["overall_health"], "healthy");
    assert_eq!(report["critical_issues"], 0);
    for tier in ["redis", "postgres", "memory", "http", "system"] {
        assert_eq!(report["systems"][tier], "healthy", "{tier}: {report:#}");
    }
    let main = target(&report, "redis", "main");
    assert_eq!(check_names(main)[..3], ["ping", "write", "memory"]);
    assert!(main["metrics"]["redis_version"].is_string());
    assert_eq!(main["endpoint"], redis.url());
    assert_eq!(target(&report, "redis", "sock")["status"], "healthy");
    let pg_target = target(&report, "postgres", "main");
    assert_eq!(pg_target["metrics"]["rows"], 25);
    assert_eq!(pg_target["metrics"]["cache_table"], "cache_entries");
    assert_eq!(pg_target["metrics"]["indexes"].as_array().unwrap().len(), 2);
    assert_eq!(target(&report, "http", "app")["metrics"]["hit_rate"], 0.93);
    // The memory API was asked with the platform's header, for the project's user.
    let requests = mem0.requests();
    assert!(requests.iter().all(|r| r.header("authorization") == Some("Token m0-test-key")));
    assert!(requests.iter().any(|r| r.url.starts_with("/v1/memories/?user_id=proj")));
    assert!(requests.iter().any(|r| r.url == "/v1/memories/search/" && r.body.contains("\"user_id\":\"proj\"")));
    // The health key was cleaned up after the round trip.
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis.connection()).unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    // The report on disk is the same document, in seed 000's shape.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("health/comprehensive-health.json")).unwrap())
            .unwrap();
    for key in ["timestamp", "overall_health", "critical_issues", "warnings", "systems", "recommendations"] {
        assert!(saved.get(key).is_some(), "missing {key}");
    }
    let history = std::fs::read_to_string(env.state_dir().join("health/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1);
    let run: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("jobs/health-check.json")).unwrap()).unwrap();
    assert_eq!(run["outcome"], "success");
    assert_eq!(run["exit_code"], 0);
    assert!(run["steps"].as_array().unwrap().len() >= 6);
}

#[test]
fn stopped_redis_is_critical() {
    let Some(mut redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    env.run(HEALTH, &["check", "--tier", "redis"]).expect_code(0);
    redis.stop();
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "redis"]);
    out.expect_code(2);
    let report = out.json();
    assert_eq!(report["status"], "CRITICAL");
    assert_eq!(report["critical_issues"], 1);
    let main = target(&report, "redis", "main");
    assert_eq!(main["status"], "failed");
    assert!(main["error"].as_str().unwrap().contains("unreachable"), "{main:#}");
    assert!(!report["recommendations"].as_array().unwrap().is_empty());
    // `since` moved when the status changed.
    let run: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("jobs/health-check.json")).unwrap()).unwrap();
    assert_eq!(run["outcome"], "failed");
    assert_eq!(run["exit_code"], 2);
}

#[test]
fn blackholed_tiers_end_within_their_timeout() {
    let hole = Blackhole::new();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"hole\"\nurl = \"redis://{addr}/0\"\ntimeout = \"1s\"\n\
         [[postgres]]\nname = \"hole\"\nurl = \"postgres://u@{addr}/db?sslmode=disable\"\ntimeout = \"1s\"\n\
         [[memory]]\nname = \"hole\"\nurl = \"http://{addr}\"\napi_key = \"k\"\ntimeout = \"1s\"\n\
         [[http]]\nname = \"hole\"\nurl = \"http://{addr}/health\"\ntimeout = \"1s\"\n",
        addr = hole.addr()
    ));
    let out = env.run(HEALTH, &["check", "--format", "json"]);
    out.expect_code(2);
    assert!(out.elapsed < Duration::from_millis(1500), "took {:?}\n{}", out.elapsed, out.dump());
    let report = out.json();
    for tier in ["redis", "postgres", "memory", "http"] {
        assert_eq!(target(&report, tier, "hole")["status"], "failed", "{tier}");
    }
    assert_eq!(report["critical_issues"], 4);
}

#[test]
fn no_configuration_checks_the_host_and_reports_tiers_not_configured() {
    let env = TestEnv::new();
    let out = env.run(HEALTH, &["check"]);
    // The embedded default judges this machine's load and disks as they are: a busy test host
    // is a WARNING on system/host alone, and then only that.
    let busy_host = out.code() == 1 && {
        let report: Value =
            serde_json::from_slice(&std::fs::read(env.state_dir().join("health/comprehensive-health.json")).unwrap())
                .unwrap();
        let unhealthy: Vec<String> = report["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| !matches!(t["status"].as_str(), Some("healthy" | "not_available")))
            .map(|t| format!("{}/{} {}", t["tier"], t["name"], t["status"]))
            .collect();
        unhealthy == ["\"system\"/\"host\" \"degraded\""]
    };
    if !busy_host {
        out.expect_code(0);
    }
    for tier in ["redis", "postgres", "memory"] {
        let row = out.stdout.lines().find(|l| l.contains(tier)).unwrap_or_else(|| panic!("{}", out.dump()));
        assert!(row.contains("not_configured"), "{row}");
    }
    assert!(out.stdout.contains("host"));
    let report: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("health/comprehensive-health.json")).unwrap())
            .unwrap();
    assert_eq!(report["systems"]["redis"], "not_configured");
    // The seed counts unconfigured tiers as warnings, without raising the exit code (a busy
    // host is one warning more).
    assert_eq!(report["warnings"], 3 + u64::from(busy_host));
    assert_eq!(target(&report, "system", "gpu")["status"], "not_available");
    // Under -q a healthy check prints nothing at all.
    let quiet = env.run(HEALTH, &["check", "-q"]);
    if quiet.code() == 0 {
        assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""));
    } else {
        assert!(busy_host && quiet.stdout.contains("WARNING") && quiet.stdout.contains("host"), "{}", quiet.dump());
    }
}

#[test]
fn quiet_still_prints_problems() {
    let hole = Blackhole::new();
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"hole\"\nurl = \"redis://{}\"\ntimeout = \"300ms\"\n", hole.addr()));
    let out = env.run(HEALTH, &["check", "-q", "--tier", "redis"]);
    out.expect_code(2);
    assert!(out.stdout.contains("CRITICAL") && out.stdout.contains("hole"), "{}", out.dump());
}

#[test]
fn unknown_config_key_is_unknown_naming_file_and_key() {
    let env = TestEnv::new();
    let path = env.write_config("[[redis]]\nname = \"main\"\nurl = \"redis://127.0.0.1:1\"\ntimout = \"1s\"\n");
    let out = env.run(HEALTH, &["check"]);
    out.expect_code(3);
    assert!(out.stderr.contains(&path.display().to_string()), "{}", out.dump());
    assert!(out.stderr.contains("redis[0].timout"), "{}", out.dump());
    assert!(out.stderr.contains("line 4"), "{}", out.dump());
    assert_eq!(out.stdout, "");
}

#[test]
fn usage_errors_are_unknown() {
    let env = TestEnv::new();
    env.run(HEALTH, &["check", "--format", "xml"]).expect_code(3);
    env.run(HEALTH, &["check", "--tier", "nope"]).expect_code(3);
    let help = env.run(HEALTH, &["check", "--help"]);
    help.expect_code(0);
    assert!(help.stdout.contains("Common options"));
}

#[test]
fn a_tier_filter_matching_no_target_is_a_usage_error_and_keeps_the_last_report() {
    let Some(mut redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    // The host's load, memory and disk are this machine's, not the test's: judged loosely here.
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n{HOST_JUDGED_LOOSELY}", redis.url()));
    env.run(HEALTH, &["check"]).expect_code(0);
    let report = env.state_dir().join("health/comprehensive-health.json");
    let before = std::fs::read(&report).unwrap();
    for (args, code) in [(&["check", "--tier", "redis:mian"][..], 3), (&["check", "--tier", "postgres"][..], 3)] {
        let out = env.run(HEALTH, args);
        out.expect_code(code);
        assert!(out.stderr.contains("matches no configured target"), "{}", out.dump());
        assert!(
            out.stderr.contains("the configured targets are redis:main, ") && out.stderr.contains("system:host"),
            "{}",
            out.dump()
        );
        assert_eq!(std::fs::read(&report).unwrap(), before, "the last full report was overwritten");
    }
    // Standard convention: exit 2 (USAGE), in every tool.
    for (tool, command) in [
        (crate::CLEANUP, "light"),
        (crate::DEBUG, "memory"),
        (crate::ANALYTICS, "collect"),
        (crate::BACKUP, "create"),
        (crate::OPTIMIZER, "analyze"),
    ] {
        let out = env.run(tool, &[command, "--tier", "redis:mian"]);
        out.expect_code(2);
        assert!(out.stderr.contains("--tier redis:mian matches no configured target"), "{}", out.dump());
    }
    // A filtered report says what it did not see.
    let out = env.run(HEALTH, &["check", "--tier", "redis:main", "--format", "json"]);
    out.expect_code(0);
    let not_checked = out.json()["not_checked"].clone();
    assert!(not_checked.as_array().unwrap().iter().any(|t| t == "system/host"), "{not_checked:#}");
    assert!(!not_checked.as_array().unwrap().iter().any(|t| t == "redis/main"), "{not_checked:#}");
    let text = env.run(HEALTH, &["check", "--tier", "redis:main"]);
    assert!(
        text.stdout.contains(&format!("{} not checked (--tier)", not_checked.as_array().unwrap().len())),
        "{}",
        text.dump()
    );
    // The last check of everything is kept apart, and the dashboard shows it: a check of one
    // tier never stands for the whole.
    let full: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("health/last-full-check.json")).unwrap()).unwrap();
    assert!(full["not_checked"].as_array().is_none_or(Vec::is_empty), "{full:#}");
    assert!(full["targets"].as_array().unwrap().iter().any(|t| t["tier"] == "system"), "{full:#}");
    // Redis goes down; a check of it alone fails, and the full check's picture stays the one
    // shown (its alerts come from the full check, which saw redis healthy).
    redis.stop();
    env.run(HEALTH, &["check", "--tier", "redis"]).expect_code(2);
    let page = env.path("dashboard.html");
    env.run(crate::ANALYTICS, &["dashboard", "--output", page.to_str().unwrap()]).expect_code(0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("redis/main failed"), "a check of one tier stood for the whole");
    // Once a full check sees it, the dashboard does too.
    let _ = env.run(HEALTH, &["check"]);
    env.run(crate::ANALYTICS, &["dashboard", "--output", page.to_str().unwrap()]).expect_code(0);
    assert!(std::fs::read_to_string(&page).unwrap().contains("redis/main failed"));
}

#[test]
fn corrupt_state_file_is_named_and_left_unchanged() {
    let env = TestEnv::new();
    let report = env.state_dir().join("health/comprehensive-health.json");
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    let garbage = b"{\"schema_version\": 1, \"timestamp\": tru";
    std::fs::write(&report, garbage).unwrap();
    let out = env.run(HEALTH, &["check"]);
    out.expect_code(3);
    assert!(out.stderr.contains(&report.display().to_string()), "{}", out.dump());
    assert!(out.stderr.contains("not valid JSON"), "{}", out.dump());
    assert_eq!(std::fs::read(&report).unwrap(), garbage);
    assert!(!env.state_dir().join("health/history.jsonl").exists());
}

#[test]
fn secrets_appear_in_no_output_or_state_file() {
    let password = "Pa55-w0rd-that-must-not-leak";
    let Some(redis) = RedisServer::start_with(&format!("requirepass {password}")) else { return };
    let mem_key = "m0-secret-api-key-xyz";
    let mem0 = Mem0Server::self_hosted(mem_key);
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n\
         [[redis]]\nname = \"wrong\"\nurl = \"redis://:{password}-wrong@127.0.0.1:{}/0\"\n\
         [[memory]]\nname = \"mem\"\nurl = \"{}\"\napi_key = \"{mem_key}\"\ndialect = \"self-hosted\"\n\
         [[memory]]\nname = \"bad\"\nurl = \"{}/?token={mem_key}\"\napi_key = \"wrong-{mem_key}\"\ndialect = \"self-hosted\"\n",
        redis.url(),
        redis.port(),
        mem0.url(),
        mem0.url(),
    ));
    let mut outputs = Vec::new();
    for format in ["text", "json", "nagios"] {
        let out = env.run(HEALTH, &["check", "-vvv", "--format", format]);
        out.expect_code(2); // The wrong password and the wrong key fail.
        outputs.push(out.stdout.clone() + &out.stderr);
    }
    let json = env.run(HEALTH, &["check", "--format", "json"]).json();
    assert_eq!(target(&json, "redis", "main")["status"], "healthy");
    assert_eq!(target(&json, "memory", "mem")["status"], "healthy");
    assert_eq!(target(&json, "redis", "wrong")["status"], "failed");
    assert!(target(&json, "redis", "main")["endpoint"].as_str().unwrap().contains(":***@"));
    for text in &outputs {
        assert!(!text.contains(password), "password leaked:\n{text}");
        assert!(!text.contains(mem_key), "API key leaked:\n{text}");
    }
    let files = env.state_files();
    assert!(files.len() >= 4);
    for (path, content) in files {
        let content = String::from_utf8_lossy(&content);
        assert!(!content.contains(password) && !content.contains(mem_key), "secret in {}", path.display());
    }
    // The self-hosted dialect sent its key as X-API-Key.
    assert!(mem0.requests().iter().any(|r| r.header("x-api-key") == Some(mem_key) && r.url.starts_with("/memories?")));
}

#[test]
fn a_second_run_of_the_job_gets_the_lock_exit_code() {
    let hole = Blackhole::new();
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"slow\"\nurl = \"redis://{}\"\ntimeout = \"3s\"\n", hole.addr()));
    let mut first = env.command(HEALTH, &["check", "--tier", "redis"]).spawn().unwrap();
    let lock = env.state_dir().join("locks/health-check.lock");
    assert!(wait_until(Duration::from_secs(5), || std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("pid"))));
    let started = Instant::now();
    let second = env.run(HEALTH, &["check", "--tier", "redis"]);
    second.expect_code(75);
    assert!(started.elapsed() < Duration::from_secs(2), "the second run waited");
    assert!(
        second.stderr.contains("holds its lock") && second.stderr.contains(&first.id().to_string()),
        "{}",
        second.dump()
    );
    // With --wait, the next run waits for the first and then runs.
    let third = env.run(HEALTH, &["check", "--tier", "redis", "--wait"]);
    assert_eq!(first.wait().unwrap().code(), Some(2));
    third.expect_code(2);
    let runs = std::fs::read_to_string(env.state_dir().join("runs.jsonl")).unwrap();
    let outcomes: Vec<String> = runs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| *o == "locked").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "failed").count(), 2, "{outcomes:?}");
}

#[test]
fn nagios_output_follows_the_plugin_guidelines() {
    let Some(redis) = RedisServer::start() else { return };
    let hole = Blackhole::new();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[[redis]]\nname = \"down\"\nurl = \"redis://{}\"\ntimeout = \"300ms\"\n\
         [system]\ndisk_paths = [\"/\", \"{}\"]\n",
        redis.url(),
        hole.addr(),
        env.path("").display()
    ));
    // A first check, for the interval to start from; then the application's lookups: 200
    // hits, 1,000 misses (16.7%, judged: over 1,000 lookups).
    env.run(HEALTH, &["check"]);
    let mut conn = redis.connection();
    let _: () = redis::cmd("SET").arg("app:hot").arg("v").query(&mut conn).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..1200 {
        let key = if i < 200 { "app:hot".to_owned() } else { format!("app:cold:{i}") };
        pipe.cmd("GET").arg(key).ignore();
    }
    let _: () = pipe.query(&mut conn).unwrap();
    let out = env.run(HEALTH, &["check", "--format", "nagios"]);
    out.expect_code(2);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", out.dump());
    let (text, perfdata) = lines[0].split_once(" | ").unwrap();
    let head = regex::Regex::new(r"^CACHE (OK|WARNING|CRITICAL|UNKNOWN) - [^|]+$").unwrap();
    assert!(head.is_match(text), "{text}");
    assert!(text.starts_with("CACHE CRITICAL - ") && text.contains("redis/down failed"), "{text}");
    // 'label'=value[UOM];[warn];[crit];[min];[max], separated by single spaces.
    let perf =
        regex::Regex::new(r"^'[^'=]+'=-?[0-9]+(\.[0-9]+)?(us|ms|s|%|B|KB|MB|TB|c)?(;(-?[0-9.]+:?)?){0,4}$").unwrap();
    let items: Vec<&str> = perfdata.split(' ').collect();
    assert!(items.len() >= 6, "{perfdata}");
    for item in &items {
        assert!(perf.is_match(item), "bad perfdata item `{item}` in {perfdata}");
    }
    let labels: Vec<&str> = items.iter().map(|i| i.split('=').next().unwrap()).collect();
    let mut unique = labels.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), labels.len(), "duplicate labels: {labels:?}");
    assert!(labels.contains(&"'redis_main_latency'") && labels.contains(&"'system_host_disk_root'"), "{labels:?}");
    // The hit ratio judged WARNING carries the floor it was judged by.
    let hit = items.iter().find(|i| i.starts_with("'redis_main_hit_ratio'=")).unwrap();
    assert!(hit.ends_with("%;70:;;0;100"), "{hit}");
    assert!(text.contains("hit_ratio"), "{text}");
}

#[test]
fn hosted_redis_refusing_info_stays_healthy() {
    let Some(redis) = RedisServer::start_with("rename-command INFO \"\"\nrename-command CONFIG \"\"") else { return };
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"hosted\"\nurl = \"{}\"\n", redis.url()));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "redis"]);
    out.expect_code(0);
    let hosted = target(&out.json(), "redis", "hosted").clone();
    let info = hosted["checks"].as_array().unwrap().iter().find(|c| c["name"] == "info").unwrap().clone();
    assert_eq!(info["summary"], "INFO not supported on this tier");
    assert_eq!(hosted["status"], "healthy");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_cache_table_is_a_warning_with_advice() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("empty").await;
    let env = TestEnv::new();
    env.write_config(&format!("[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n"));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "postgres"]);
    out.expect_code(1);
    let report = out.json();
    assert_eq!(report["status"], "WARNING");
    assert_eq!(target(&report, "postgres", "main")["status"], "degraded");
    assert!(report["recommendations"][0].as_str().unwrap().contains("cache_entries"), "{report:#}");
}

#[test]
fn memory_api_dialects_and_a_rejected_key() {
    let platform = Mem0Server::platform("good");
    platform.add_memory("a", "default", "cached search result", &[], "2026-11-01T00:00:00Z");
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[memory]]\nname = \"v1\"\nurl = \"{u}\"\napi_key = \"good\"\n\
         [[memory]]\nname = \"v2\"\nurl = \"{u}\"\napi_key = \"good\"\napi_version = \"v2\"\n\
         [[memory]]\nname = \"badkey\"\nurl = \"{u}\"\napi_key = \"rejected-key-123\"\n",
        u = platform.url()
    ));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "memory"]);
    out.expect_code(2);
    let report = out.json();
    assert_eq!(target(&report, "memory", "v1")["status"], "healthy");
    assert_eq!(target(&report, "memory", "v2")["status"], "healthy");
    let bad = target(&report, "memory", "badkey");
    assert_eq!(bad["status"], "failed");
    assert!(bad["error"].as_str().unwrap().contains("401"), "{bad:#}");
    let v2 = platform.requests().into_iter().filter(|r| r.url.starts_with("/v2/")).collect::<Vec<_>>();
    assert!(v2.iter().any(|r| r.url.starts_with("/v2/memories/?") && r.body.contains("\"user_id\":\"default\"")));
    assert!(v2.iter().any(|r| r.url == "/v2/memories/search/" && r.body.contains("\"filters\"")));
}

#[test]
fn directories_over_their_cap_and_failing_app_endpoint() {
    let env = TestEnv::new();
    let cache = env.path("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("blob"), vec![7u8; 64 * 1024]).unwrap();
    let app = StubHttp::new(vec![("/health", 503, "{\"status\":\"down\"}".into())]);
    env.write_config(&format!(
        "[[files]]\nname = \"models\"\npath = \"{}\"\nmax_size = \"64 KiB\"\n\
         [[http]]\nname = \"app\"\nurl = \"{}/health\"\n",
        cache.display(),
        app.url()
    ));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "files", "--tier", "http"]);
    out.expect_code(2);
    let report = out.json();
    let models = target(&report, "files", "models");
    assert_eq!(models["status"], "failed", "{models:#}");
    assert_eq!(models["metrics"]["usage"]["files"], 1);
    let app_target = target(&report, "http", "app");
    assert_eq!(app_target["status"], "failed");
    assert_eq!(app_target["metrics"]["http_status"], 503);
    assert!(report["systems"].get("redis").is_none(), "filtered out: {report:#}");
}

#[test]
fn redis_over_tls_verifies_the_certificate() {
    let Some(cert) = cache_tests::SelfSigned::generate() else { return };
    let Some(redis) = RedisServer::start_tls(&cert) else { return };
    let env = TestEnv::new();
    env.watch_log("redis", redis.dir().join("redis.log"));
    env.write_config(&format!(
        "[[redis]]\nname = \"insecure\"\nurl = \"{u}#insecure\"\n[[redis]]\nname = \"verified\"\nurl = \"{u}\"\n\
         [[redis]]\nname = \"ca\"\nurl = \"{u}\"\nca_file = \"{ca}\"\n",
        u = redis.tls_url(),
        ca = cert.cert().display()
    ));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "redis"]);
    out.expect_code(2);
    let report = out.json();
    // Encrypted and working when the operator opts out of verification...
    let insecure = target(&report, "redis", "insecure");
    assert_eq!(insecure["status"], "healthy", "{}", out.dump());
    assert_eq!(check_names(insecure)[..2], ["ping", "write"]);
    // ...and refused by default: the self-signed certificate is not trusted.
    let verified = target(&report, "redis", "verified");
    assert_eq!(verified["status"], "failed");
    assert!(verified["error"].as_str().unwrap().to_lowercase().contains("certificate"), "{verified:#}");
    // With the CA that signed it, verified and working.
    let ca = target(&report, "redis", "ca");
    assert_eq!(ca["status"], "healthy", "{}", out.dump());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_tls_with_ca_file_or_without_verification() {
    let Some(cert) = cache_tests::SelfSigned::generate() else { return };
    let Some(pg) = PgServer::start_with(cache_tests::PgOptions { tls: Some(&cert), ..Default::default() }) else {
        return;
    };
    pg.create_database("app").await;
    let env = TestEnv::new();
    env.watch_log("postgres", pg.socket_dir().join("postgres.log"));
    let url = pg.tcp_url("app");
    env.write_config(&format!(
        "[[postgres]]\nname = \"plain\"\nurl = \"{url}?sslmode=disable\"\n\
         [[postgres]]\nname = \"untrusted\"\nurl = \"{url}?sslmode=require\"\n\
         [[postgres]]\nname = \"ca\"\nurl = \"{url}?sslmode=require\"\ntls = {{ ca_file = \"{ca}\" }}\n\
         [[postgres]]\nname = \"insecure\"\nurl = \"{url}?sslmode=require\"\ntls = {{ accept_invalid_certs = true }}\n\
         [[postgres]]\nname = \"prefer\"\nurl = \"{url}\"\ntls = {{ ca_file = \"{ca}\" }}\n",
        ca = cert.cert().display()
    ));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "postgres"]);
    out.expect_code(2);
    let report = out.json();
    let status = |name: &str| target(&report, "postgres", name)["status"].as_str().unwrap().to_owned();
    // The server accepts TCP clients only over TLS (hostssl): plaintext is refused.
    assert_eq!(status("plain"), "failed");
    assert!(target(&report, "postgres", "plain")["error"].as_str().unwrap().contains("no encryption"), "{report:#}");
    // Without the CA the certificate does not verify; with it, or with verification off, it works.
    assert_eq!(status("untrusted"), "failed");
    assert_eq!(status("ca"), "degraded", "{}", out.dump()); // Healthy server, no cache table.
    assert_eq!(status("insecure"), "degraded");
    assert_eq!(status("prefer"), "degraded");
}

#[test]
fn thresholds_units_and_endpoints_raise_the_right_status() {
    let Some(redis) = RedisServer::start() else { return };
    let closed = cache_tests::free_port();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"slowish\"\nurl = \"{}\"\nlatency_warn = \"1us\"\n\
         [system]\ndisk_paths = [\"/\"]\nsystemd_units = [\"cache-toolkit-no-such-unit.service\"]\n\
         endpoints = [\"127.0.0.1:{}\", \"127.0.0.1:{closed}\"]\n\
         [health]\ndisk_percent = {{ warn = 0.0, crit = 100.0 }}\n",
        redis.url(),
        redis.port(),
    ));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "redis", "--tier", "system:host"]);
    out.expect_code(2);
    let report = out.json();
    let check = |tier: &str, name: &str, check: &str| -> Value {
        target(&report, tier, name)["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap_or_else(|| panic!("no check {check} in {report:#}"))
            .clone()
    };
    // A latency over its threshold degrades the target; nothing else is wrong with it.
    assert_eq!(target(&report, "redis", "slowish")["status"], "degraded");
    assert_eq!(check("redis", "slowish", "latency")["status"], "degraded");
    assert!(report["recommendations"].to_string().contains("redis/slowish: the probe took"));
    // Any disk usage is at or over a warning level of 0%.
    assert_eq!(check("system", "host", "disk /")["status"], "degraded");
    // A unit that does not exist is not active (or, without systemd, cannot be checked).
    let unit = check("system", "host", "unit cache-toolkit-no-such-unit.service");
    assert_ne!(unit["status"], "healthy", "{unit:#}");
    assert_eq!(check("system", "host", &format!("endpoint 127.0.0.1:{}", redis.port()))["status"], "healthy");
    assert_eq!(check("system", "host", &format!("endpoint 127.0.0.1:{closed}"))["status"], "failed");
    assert_eq!(target(&report, "system", "host")["status"], "failed");
}

#[test]
fn a_cluster_is_judged_on_every_primary_and_a_lost_replica_is_a_warning() {
    let Some(mut cluster) = cache_tests::RedisCluster::start_with_replicas() else { return };
    for i in 0..3000 {
        cluster.set_aged(&format!("app:k{i}"), b"v", 0, 0);
    }
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n",
        cluster.nodes()[0].url()
    ));
    let check = |env: &TestEnv| {
        let out = env.run(HEALTH, &["check", "--tier", "redis", "--format", "json"]);
        let report = out.json();
        (out, target(&report, "redis", "main").clone())
    };
    let (out, main) = check(&env);
    out.expect_code(0);
    // Keys of every primary, no replica counted.
    assert_eq!(main["metrics"]["keys"], 3000, "{main:#}");
    assert_eq!(main["metrics"]["primaries"], 3);
    let checks = main["checks"].to_string();
    assert!(
        checks.contains("3 of 3 primaries") && checks.contains("every primary has a replica (3 replicas)"),
        "{checks}"
    );
    // A failed replica leaves a primary with none: a warning, not OK.
    cluster.kill_replica(0);
    let noticed = wait_until(Duration::from_secs(20), || check(&env).1["status"] == "degraded");
    let (out, main) = check(&env);
    assert!(noticed, "{}", out.dump());
    out.expect_code(1);
    let checks = main["checks"].to_string();
    assert!(checks.contains("failed nodes") && checks.contains("without a healthy replica"), "{checks}");
}

#[test]
fn after_a_failover_losing_the_seed_node_leaves_every_tool_working() {
    let Some(mut cluster) = cache_tests::RedisCluster::start_with_replicas() else { return };
    for i in 0..3000 {
        cluster.set_aged(&format!("app:k{i}"), b"v", 3_600_000, 0);
    }
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nurls = [\"{}\", \"{}\"]\nnamespace = \"app:\"\n[system]\ngpu = false\n",
        cluster.nodes()[0].url(),
        cluster.nodes()[1].url(),
        cluster.nodes()[2].url()
    ));
    // The seed named in `url` dies; its replica takes over.
    cluster.kill_primary(0);
    let promoted = wait_until(Duration::from_secs(30), || {
        let role: String =
            redis::cmd("INFO").arg("replication").query(&mut cluster.replicas()[0].connection()).unwrap_or_default();
        let state: String =
            redis::cmd("CLUSTER").arg("INFO").query(&mut cluster.nodes()[1].connection()).unwrap_or_default();
        role.contains("role:master") && state.contains("cluster_state:ok")
    });
    assert!(promoted, "the replica was not promoted");
    let out = env.run(HEALTH, &["check", "--tier", "redis", "--format", "json"]);
    out.expect_code(1);
    let report = out.json();
    let main = target(&report, "redis", "main");
    assert_eq!(main["metrics"]["keys"], 3000, "{main:#}");
    let checks = main["checks"].to_string();
    assert!(checks.contains("seed nodes unreachable") && checks.contains("cluster_state ok"), "{checks}");
    assert_eq!(main["status"], "degraded", "{main:#}");
    let cleanup = env.run(crate::CLEANUP, &["light", "--yes", "--tier", "redis", "--format", "json"]);
    cleanup.expect_code(0);
    assert!(cleanup.json()["targets"][0]["notes"].to_string().contains("3 of 3 primaries"), "{}", cleanup.dump());
    let collect = env.run(crate::ANALYTICS, &["collect", "--tier", "redis"]);
    collect.expect_code(0);
    let history = std::fs::read_to_string(env.state_dir().join("analytics/history.jsonl")).unwrap();
    let snapshot: Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(snapshot["redis"][0]["keys"], 3000, "{snapshot:#}");
    let debug = env.run(crate::DEBUG, &["memory", "--tier", "redis", "--format", "json"]);
    debug.expect_code(0);
    assert_eq!(debug.json()["redis"][0]["keys_in_db"], 3000);
    // A backup after the promotion is complete: the promoted replica is a primary like the others.
    let backup = env.run(crate::BACKUP, &["create", "--only", "redis", "--format", "json"]);
    backup.expect_code(0);
    let id = backup.json()["id"].as_str().unwrap().to_owned();
    let verify = env.run(crate::BACKUP, &["verify", &id]);
    verify.expect_code(0);
}

/// `check_postgres --action=backends` (the Debian package `check-postgres`): its `current`
/// figure, summed over the databases, from its `--output=simple`.
fn check_postgres_backends(pg: &PgServer) -> Option<u64> {
    let Some(bin) = cache_tests::find_binary("check_postgres", &[]) else {
        cache_tests::missing("check_postgres (Debian package check-postgres)")?;
        return None;
    };
    let out = std::process::Command::new(bin)
        .args(["--action=backends", "--output=simple", "--dbuser=postgres", "--dbname=postgres"])
        .arg(format!("--host={}", pg.socket_dir().display()))
        .arg(format!("--port={}", pg.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.trim().parse().unwrap_or_else(|_| panic!("check_postgres said {text:?} {:?}", out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_connections_count_client_backends_as_check_postgres_does() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(CACHE_TABLE).await.unwrap();
    // Eleven sessions of the application, idle, as a pool keeps them.
    let mut pool = Vec::new();
    for _ in 0..11 {
        pool.push(pg.client("app").await);
    }
    let env = TestEnv::new();
    env.write_config(&format!("[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n"));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "postgres"]);
    let report = out.json();
    let ours = target(&report, "postgres", "main")["metrics"]["connections"].as_u64().unwrap();
    let Some(theirs) = check_postgres_backends(&pg) else { return };
    // Each counts its own session: the eleven plus one; background processes are not clients.
    assert_eq!(ours, 12, "{report:#}");
    assert_eq!(ours, theirs, "check_postgres counts {theirs} backends, we {ours}");
    drop(pool);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_key_is_never_advised_for_dropping_nor_anything_on_fresh_statistics() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(CACHE_TABLE).await.unwrap();
    db.batch_execute(
        "CREATE UNIQUE INDEX cache_entries_meta_uq ON cache_entries ((metadata->>'id'));
         CREATE INDEX cache_entries_category ON cache_entries (category);
         INSERT INTO cache_entries (key, value, metadata)
           SELECT 'row' || i, '{}'::jsonb, jsonb_build_object('id', i) FROM generate_series(1, 20000) i;
         ANALYZE cache_entries;
         SELECT pg_stat_reset();",
    )
    .await
    .unwrap();
    let env = TestEnv::new();
    let config = |after: &str| {
        format!("[optimizer]\nunused_index_after = \"{after}\"\n[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n")
    };
    // Just after the reset, under the default week: nothing is called unused.
    env.write_config(&config("7days"));
    let report = env.run(HEALTH, &["check", "--format", "json", "--tier", "postgres"]).json();
    let check = |report: &Value| {
        let t = target(report, "postgres", "main");
        t["checks"].as_array().unwrap().iter().find(|c| c["name"] == "indexes").unwrap()["summary"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(check(&report).contains("usage not judged: statistics gathered for"), "{report:#}");
    assert!(!report.to_string().contains("consider dropping"), "{report:#}");
    // Once enough time is observed: only the plain, never-scanned index is named.
    env.write_config(&config("1s"));
    std::thread::sleep(Duration::from_millis(1500));
    let report = env.run(HEALTH, &["check", "--format", "json", "--tier", "postgres"]).json();
    let advice: Vec<&str> = report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|r| r.contains("consider dropping"))
        .collect();
    assert_eq!(advice.len(), 1, "{report:#}");
    for name in ["cache_entries_category", "cache_entries_expires_at"] {
        assert!(advice[0].contains(name), "{name} not named: {}", advice[0]);
    }
    for never in ["cache_entries_pkey", "cache_entries_meta_uq"] {
        assert!(!advice[0].contains(never), "{never} advised for dropping: {}", advice[0]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_table_whose_columns_differ_from_the_configuration_is_misconfigured() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    pg.client("app")
        .await
        .batch_execute(
            &CACHE_TABLE
                .replace("key text PRIMARY KEY", "cache_key text PRIMARY KEY")
                .replace("(key, value, category)", "(cache_key, value, category)"),
        )
        .await
        .unwrap();
    let env = TestEnv::new();
    env.write_config(&format!("[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n"));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "postgres"]);
    out.expect_code(1);
    let report = out.json();
    let t = target(&report, "postgres", "main");
    assert_eq!(t["status"], "degraded", "{report:#}");
    let columns = t["checks"].as_array().unwrap().iter().find(|c| c["name"] == "columns").unwrap();
    assert!(columns["summary"].as_str().unwrap().contains("`key` (postgres[0].columns.key)"), "{columns:#}");
    // Named as configured, the same table is healthy.
    env.write_config(&format!("[[postgres]]\nname = \"main\"\nurl = \"{url}\"\ncolumns = {{ key = \"cache_key\" }}\n"));
    let report = env.run(HEALTH, &["check", "--format", "json", "--tier", "postgres"]).json();
    assert_eq!(target(&report, "postgres", "main")["status"], "healthy", "{report:#}");
}
