//! The toolkit's own keyspace lookups: recorded exactly as Redis counts them, and never counted
//! as the application's in any hit ratio.

use cache_tests::{RedisServer, TestEnv};
use serde_json::Value;

use crate::{ANALYTICS, BACKUP, CLEANUP, DEBUG, HEALTH, OPTIMIZER};

/// `keyspace_hits` and `keyspace_misses` of the server.
pub(crate) fn counters(conn: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO").arg("stats").query(conn).unwrap();
    let get = |name: &str| -> u64 {
        info.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).unwrap().trim().parse().unwrap()
    };
    (get("keyspace_hits"), get("keyspace_misses"))
}

/// The ledger's total for every server, added up.
pub(crate) fn ledger(env: &TestEnv) -> (u64, u64) {
    let text = std::fs::read_to_string(env.state_dir().join("ledger/redis-lookups.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .fold((0, 0), |(h, m), e| (h + e["hits"].as_u64().unwrap(), m + e["misses"].as_u64().unwrap()))
}

/// 3,000 keys: 1,000 TTL-less under a prefix with a TTL rule, 1,000 with a TTL, 1,000 of the
/// project's namespace; and the configuration naming them.
fn seeded() -> Option<(RedisServer, TestEnv)> {
    let redis = RedisServer::start()?;
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("app:search:{i}")).arg("v").ignore();
        pipe.cmd("SET").arg(format!("sess:{i}")).arg("v").arg("EX").arg(3600).ignore();
        pipe.cmd("SET").arg(format!("proj:item:{i}")).arg(i).ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "project_name = \"proj\"\n\
         [backup]\nredis_method = \"logical\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{}\"\n\
         prefixes = [{{ prefix = \"app:search:\", ttl = \"10m\" }}, {{ prefix = \"sess:\" }}]\n",
        redis.url()
    ));
    Some((redis, env))
}

#[test]
fn every_tool_records_exactly_the_lookups_redis_counted_for_it() {
    let Some((redis, env)) = seeded() else { return };
    let mut conn = redis.connection();
    let runs: &[(&str, &[&str])] = &[
        (DEBUG, &["memory"]),
        (CLEANUP, &["light", "--dry-run"]),
        (CLEANUP, &["light", "--yes"]),
        (OPTIMIZER, &["analyze"]),
        (OPTIMIZER, &["run", "--apply", "--yes"]),
        (ANALYTICS, &["collect"]),
        (BACKUP, &["create"]),
        (HEALTH, &["check"]),
    ];
    for (tool, args) in runs {
        let (before, own_before) = (counters(&mut conn), ledger(&env));
        let out = env.run(tool, args);
        assert!(out.code() <= 1, "{}", out.dump());
        let (after, own_after) = (counters(&mut conn), ledger(&env));
        let counted = (after.0 - before.0, after.1 - before.1);
        let recorded = (own_after.0 - own_before.0, own_after.1 - own_before.1);
        assert!(counted.0 > 0, "{args:?} looked nothing up: {}", out.dump());
        assert_eq!(recorded, counted, "{args:?}: Redis counted {counted:?} lookups, the ledger {recorded:?}");
    }
}

#[test]
fn the_reported_hit_ratio_is_the_applications_after_cleanup_optimizer_and_debug_scans() {
    let Some((redis, env)) = seeded() else { return };
    let mut conn = redis.connection();
    // The application: 39.5% of its lookups hit.
    let traffic = |conn: &mut redis::Connection| {
        let mut pipe = redis::pipe();
        for i in 0..10_000 {
            let key = if i % 200 < 79 { format!("proj:item:{}", i % 1000) } else { format!("proj:absent:{i}") };
            pipe.cmd("GET").arg(key).ignore();
        }
        pipe.query::<()>(conn).unwrap();
    };
    env.run(ANALYTICS, &["collect"]).expect_code(0);
    // The first health check has no interval to measure: the ratio is unknown, not INFO's.
    let first = env.run(HEALTH, &["check", "--format", "json", "--tier", "redis"]).json();
    assert!(first["targets"][0]["metrics"]["hit_ratio"].is_null(), "{first:#}");
    traffic(&mut conn);
    for (tool, args) in [
        (CLEANUP, &["light", "--yes"][..]),
        (OPTIMIZER, &["run", "--apply", "--yes"][..]),
        (DEBUG, &["memory"][..]),
        (CLEANUP, &["light", "--dry-run"][..]),
    ] {
        let out = env.run(tool, args);
        assert!(out.code() <= 1, "{}", out.dump());
    }
    traffic(&mut conn);
    env.run(ANALYTICS, &["collect"]).expect_code(0);
    // Redis's own counters say otherwise: the toolkit's scans count as hits there.
    let (hits, misses) = counters(&mut conn);
    let raw = hits as f64 / (hits + misses) as f64;
    assert!(raw > 0.6, "the scans should have inflated INFO's ratio, it is {raw}");
    // Operations are the application's too: its 20,000 GETs, not the scans' tens of thousands.
    let day = env.run(ANALYTICS, &["generate", "--period", "day", "--format", "json"]).json();
    let ops = day["cache_stats"]["total_operations"].as_f64().unwrap();
    assert!((ops - 20_000.0).abs() <= 200.0, "{ops} operations counted for the application's 20000: {day:#}");
    let health = env.run(HEALTH, &["check", "--format", "json", "--tier", "redis"]).json();
    let judged = health["targets"][0]["metrics"]["hit_ratio"].as_f64().unwrap() * 100.0;
    assert!((judged - 39.5).abs() <= 1.0, "health judged {judged}%, the application's is 39.5%: {health:#}");
    assert_eq!(health["status"], "WARNING", "39.5% is under the 70% minimum: {health:#}");

    crate::analytics::with_dashboard_served(&env, |port| {
        let (_, body) = crate::analytics::http_get(port, "/api/cache/metrics");
        let metrics: Value = serde_json::from_str(&body).unwrap();
        let shown = metrics["hit_ratio"].as_f64().unwrap();
        assert!((shown - 39.5).abs() <= 1.0, "hit ratio shown {shown}%, the application's is 39.5%: {metrics:#}");
    });
}
