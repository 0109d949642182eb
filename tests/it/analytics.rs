//! `cache-analytics collect` and `export` against real servers, checked by the real promtool.

use cache_tests::{PgServer, RedisServer, TestEnv, find_binary, missing};
use serde_json::Value;

use crate::ANALYTICS;

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
    assert!(text.contains("cache_redis_keys{target=\"main\"} 400\n"), "{text}");
    assert!(text.contains("cache_redis_prefix_keys{target=\"main\",prefix=\"app:search:\"} 300\n"), "{text}");
    assert!(text.contains("cache_job_last_success_timestamp_seconds{job=\"analytics-collect\"} "), "{text}");
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

#[test]
fn export_before_any_collect_says_so_and_unreachable_targets_are_recorded() {
    let env = TestEnv::new();
    let out = env.run(ANALYTICS, &["export", "--format", "json"]);
    out.expect_code(1);
    assert!(out.stderr.contains("run `cache-analytics collect` first"), "{}", out.dump());
    let hole = cache_tests::Blackhole::new();
    env.write_config(&format!("[[redis]]\nname = \"gone\"\nurl = \"redis://{}\"\ntimeout = \"300ms\"\n", hole.addr()));
    let out = env.run(ANALYTICS, &["collect", "--format", "json"]);
    out.expect_code(1);
    let snap: Value = out.json();
    assert!(snap["redis"][0]["error"].as_str().unwrap().contains("unreachable"), "{snap:#}");
    // The Prometheus export says the target is down.
    let text = env.run(ANALYTICS, &["export", "--format", "prometheus"]).stdout;
    assert!(text.contains("cache_redis_up{target=\"gone\"} 0\n"), "{text}");
}
