//! `cache-optimizer` against real redis-server and PostgreSQL: analysis, a run with a rollback
//! point, the rollback, warming and one-off scheduling.

use std::time::Duration;

use cache_tests::{PgServer, RedisServer, TestEnv, history};
use serde_json::Value;

use crate::OPTIMIZER;

const CACHE_TABLE: &str = "CREATE TABLE cache_entries (
    key text PRIMARY KEY, value jsonb NOT NULL, project_name text NOT NULL DEFAULT 'default',
    category text, access_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(), accessed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz, metadata jsonb NOT NULL DEFAULT '{}')";

fn policy(conn: &mut redis::Connection) -> String {
    let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query(conn).unwrap();
    v[1].clone()
}

fn ttls(conn: &mut redis::Connection, pattern: &str) -> Vec<i64> {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(conn).unwrap();
    keys.iter().map(|k| redis::cmd("PTTL").arg(k).query(conn).unwrap()).collect()
}

async fn reloptions(db: &tokio_postgres::Client, table: &str) -> Vec<String> {
    db.query_one("SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = to_regclass($1)", &[&table])
        .await
        .unwrap()
        .get(0)
}

async fn index_size(db: &tokio_postgres::Client, index: &str) -> i64 {
    db.query_one("SELECT pg_relation_size(to_regclass($1))", &[&index]).await.unwrap().get(0)
}

fn actions(recs: &Value) -> Vec<String> {
    let mut out: Vec<String> = recs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.get("action"))
        .map(|a| a["kind"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn run_applies_the_recommendations_and_rollback_restores_every_changed_value() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    // A churning cache table: half its rows deleted, autovacuum off, never analyzed.
    db.batch_execute(CACHE_TABLE).await.unwrap();
    db.batch_execute(
        "ALTER TABLE cache_entries SET (autovacuum_enabled = false);
         INSERT INTO cache_entries (key, value, category) SELECT 'k' || i, '{}', 'c' FROM generate_series(1, 20000) i;
         DELETE FROM cache_entries WHERE key LIKE '%5' OR key LIKE '%0' OR key LIKE '%2' OR key LIKE '%4' OR key LIKE '%6';",
    )
    .await
    .unwrap();
    // An archive whose indexes kept their size after 90% of the rows went.
    db.batch_execute(
        "CREATE TABLE archive (key text PRIMARY KEY, payload text);
         CREATE INDEX archive_payload ON archive (payload);
         INSERT INTO archive SELECT 'key-' || i, 'payload-' || i FROM generate_series(1, 200000) i;
         DELETE FROM archive WHERE right(key, 1) <> '0';",
    )
    .await
    .unwrap();
    db.batch_execute("SELECT pg_stat_force_next_flush()").await.unwrap();
    drop(db);
    // The statistics system reports asynchronously: wait until it shows the dead rows, so they
    // cannot arrive after the VACUUM below.
    let db = pg.client("app").await;
    let dead = |table: &'static str| {
        let db = &db;
        async move {
            let mut n = 0i64;
            for _ in 0..100 {
                n = db
                    .query_one("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = $1", &[&table])
                    .await
                    .unwrap()
                    .get(0);
                if n > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        }
    };
    assert_eq!(dead("cache_entries").await, 10_000);
    assert_eq!(dead("archive").await, 180_000);
    db.batch_execute("VACUUM ANALYZE archive").await.unwrap();
    let pkey_before = index_size(&db, "archive_pkey").await;

    let mut conn = redis.connection();
    redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("100mb").query::<()>(&mut conn).unwrap();
    redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query::<()>(&mut conn).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET").arg(format!("app:search:{i}")).arg("v").ignore();
    }
    for i in 0..10 {
        pipe.cmd("SET").arg(format!("app:search:keep:{i}")).arg("v").ignore();
        pipe.cmd("SET").arg(format!("app:search:own:{i}")).arg("v").arg("PX").arg(3_600_000).ignore();
    }
    for i in 0..50 {
        pipe.cmd("SET").arg(format!("sess:{i}")).arg("v").ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();

    let env = TestEnv::new();
    env.watch_log("postgres", pg.socket_dir().join("postgres.log"));
    env.write_config(&format!(
        "[cleanup]\nprotected = [\"app:search:keep:*\"]\n\
         [optimizer]\nfragmentation_ratio = 0.0\nunused_index_after = \"100ms\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{}\"\nprefixes = [{{ prefix = \"app:search:\", ttl = \"10m\" }}]\n\
         [[postgres]]\nname = \"main\"\nurl = \"{url}\"\n\
         [[postgres]]\nname = \"archive\"\nurl = \"{url}\"\ntable = \"archive\"\n",
        redis.url()
    ));

    let out = env.run(OPTIMIZER, &["analyze", "--format", "json"]);
    out.expect_code(0);
    let report = out.json();
    let recs = &report["recommendations"];
    assert_eq!(
        actions(recs),
        [
            "pg_analyze",
            "pg_reindex",
            "pg_reindex",
            "pg_table_setting",
            "pg_vacuum",
            "redis_config",
            "redis_memory_purge",
            "redis_pattern_ttl"
        ],
        "{recs:#}"
    );
    let issues: Vec<&str> = recs.as_array().unwrap().iter().map(|r| r["issue"].as_str().unwrap()).collect();
    assert!(
        issues.iter().any(|i| i.starts_with("index archive_payload") && i.contains("has not been used")),
        "{issues:?}"
    );
    assert!(!issues.iter().any(|i| i.contains("pkey") && i.contains("has not been used")), "{issues:?}");
    assert!(issues.iter().any(|i| i.contains("10000 dead tuples")), "{issues:?}");
    assert!(issues.iter().any(|i| i.contains("keys without a TTL are under no configured prefix")), "{issues:?}");
    let date = chrono::Utc::now().format("%Y-%m-%d");
    assert!(env.state_dir().join(format!("analytics/reports/optimization_report_{date}.json")).is_file());

    // A dry run changes nothing.
    let out = env.run(OPTIMIZER, &["run", "--dry-run", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["needs_apply"].as_array().unwrap().len(), 2, "{}", out.dump());
    assert_eq!(policy(&mut conn), "noeviction");
    assert!(ttls(&mut conn, "app:search:[0-9]*").iter().all(|t| *t == -1));

    let out = env.run(OPTIMIZER, &["run", "--apply", "--format", "json", "--yes"]);
    out.expect_code(0);
    let run = out.json();
    let id = run["rollback_point"].as_str().unwrap().to_owned();
    assert!(run["changes"].as_array().unwrap().iter().all(|c| c["outcome"] == "applied"), "{run:#}");
    assert_eq!(policy(&mut conn), "allkeys-lru");
    assert_eq!(
        reloptions(&db, "cache_entries").await,
        ["autovacuum_enabled=false", "autovacuum_vacuum_scale_factor=0.05"]
    );
    let given = ttls(&mut conn, "app:search:[0-9]*");
    assert_eq!(given.len(), 300);
    assert!(given.iter().all(|t| *t > 0 && *t <= 600_000), "{given:?}");
    assert!(ttls(&mut conn, "app:search:keep:*").iter().all(|t| *t == -1), "protected keys got a TTL");
    assert!(ttls(&mut conn, "app:search:own:*").iter().all(|t| *t > 600_000), "keys with their own TTL changed");
    assert!(ttls(&mut conn, "sess:*").iter().all(|t| *t == -1));
    let pkey_after = index_size(&db, "archive_pkey").await;
    assert!(pkey_after * 4 < pkey_before, "REINDEX left archive_pkey at {pkey_after} of {pkey_before} bytes");
    let point: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join(format!("optimizer/rollback/{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(point["status"], "applied");

    let out = env.run(OPTIMIZER, &["rollback", &id, "--yes"]);
    out.expect_code(0);
    assert_eq!(policy(&mut conn), "noeviction");
    assert_eq!(reloptions(&db, "cache_entries").await, ["autovacuum_enabled=false"]);
    assert!(ttls(&mut conn, "app:search:[0-9]*").iter().all(|t| *t == -1), "TTLs not removed");
    assert!(ttls(&mut conn, "app:search:own:*").iter().all(|t| *t > 600_000), "rollback touched keys it never changed");
    let out = env.run(OPTIMIZER, &["rollback", &id, "--yes"]);
    out.expect_code(2);
    assert!(out.stderr.contains("already rolled back"), "{}", out.dump());
    let list = env.run(OPTIMIZER, &["rollback", "--list", "--format", "json"]).json();
    assert_eq!(list["points"][0]["status"], "rolled_back");
    let out = env.run(OPTIMIZER, &["rollback", "no-such-point", "--yes"]);
    out.expect_code(2);
    assert!(out.stderr.contains("no rollback point `no-such-point`"), "{}", out.dump());
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_copies_the_hottest_entries_per_category_and_never_overwrites() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(CACHE_TABLE).await.unwrap();
    db.batch_execute(
        "INSERT INTO cache_entries (key, value, project_name, category, access_count, expires_at) VALUES
           ('a1', '{\"v\":\"a1\"}', 'proj', 'a', 100, NULL),
           ('a2', '{\"v\":\"a2\"}', 'proj', 'a', 50, NULL),
           ('a3', '{\"v\":\"a3\"}', 'proj', 'a', 10, NULL),
           ('b1', '{\"v\":\"b1\"}', 'proj', 'b', 80, now() + interval '30 seconds'),
           ('b2', '{\"v\":\"b2\"}', 'proj', 'b', 70, now() - interval '1 minute'),
           ('b3', '{\"v\":\"b3\"}', 'proj', 'b', 5, NULL),
           ('c1', '{\"v\":\"c1\"}', 'proj', 'c', 1, NULL),
           ('x1', '{\"v\":\"x1\"}', 'other', 'a', 1000, NULL)",
    )
    .await
    .unwrap();
    let mut conn = redis.connection();
    redis::cmd("SET").arg("cache:a1").arg("fresher").query::<()>(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "project_name = \"proj\"\n[optimizer]\nwarm_ttl = \"10m\"\nwarm_key_prefix = \"cache:\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{}\"\n[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n",
        redis.url()
    ));
    // No usage profile yet: nothing is warmed without --force.
    let out = env.run(OPTIMIZER, &["warm", "--yes"]);
    out.expect_code(0);
    assert!(out.stdout.contains("no usage profile yet"), "{}", out.dump());
    // A judgement that nothing needs warming is the job's success, not a skipped run (which the
    // "skipped in a row" rule would count against the hourly schedule).
    let job: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("jobs/optimize-warm.json")).unwrap()).unwrap();
    assert_eq!((&job["outcome"], &job["summary"]["warmed"]), (&serde_json::json!("success"), &serde_json::json!(0)));
    let out = env.run(OPTIMIZER, &["warm", "--force", "--dry-run", "--max-entries", "4", "--format", "json"]);
    out.expect_code(0);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert_eq!(keys, ["cache:a1"], "a dry run wrote");
    let dry = out.json();
    let chosen: Vec<&str> = dry["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    // Round-robin over categories, hottest first; the expired b2 and the other project's x1 are not taken.
    assert_eq!(chosen, ["cache:a1", "cache:b1", "cache:c1", "cache:a2"]);

    let out = env.run(OPTIMIZER, &["warm", "--force", "--max-entries", "4", "--format", "json", "--yes"]);
    out.expect_code(0);
    let done = out.json();
    assert_eq!((done["written"].as_u64(), done["already_present"].as_u64()), (Some(3), Some(1)), "{done:#}");
    let a1: String = redis::cmd("GET").arg("cache:a1").query(&mut conn).unwrap();
    assert_eq!(a1, "fresher");
    let b1: String = redis::cmd("GET").arg("cache:b1").query(&mut conn).unwrap();
    assert_eq!(b1, "{\"v\": \"b1\"}");
    let b1_ttl: i64 = redis::cmd("PTTL").arg("cache:b1").query(&mut conn).unwrap();
    assert!(b1_ttl > 0 && b1_ttl <= 30_000, "b1 outlives its row: {b1_ttl}");
    let a2_ttl: i64 = redis::cmd("PTTL").arg("cache:a2").query(&mut conn).unwrap();
    assert!(a2_ttl > 30_000 && a2_ttl <= 600_000, "{a2_ttl}");
    let out = env.run(OPTIMIZER, &["warm", "--force", "--from", "nope", "--yes"]);
    out.expect_code(2);
    assert!(out.stderr.contains("--from: no postgres target named `nope`"), "{}", out.dump());
}

#[test]
fn schedule_puts_a_one_off_run_in_the_next_low_usage_window() {
    let env = TestEnv::new();
    let out = env.run(OPTIMIZER, &["schedule", "--next-window"]);
    out.expect_code(2);
    assert!(out.stderr.contains("no low-usage windows yet"), "{}", out.dump());
    std::fs::create_dir_all(env.state_dir().join("analytics")).unwrap();
    std::fs::write(env.state_dir().join("analytics/history.jsonl"), history::known_week(7)).unwrap();
    env.run(crate::ANALYTICS, &["windows", "-q"]).expect_code(0);
    let out = env.run(OPTIMIZER, &["schedule", "--next-window", "--format", "json"]);
    out.expect_code(0);
    let job = out.json();
    let at = chrono::DateTime::parse_from_rfc3339(job["at"].as_str().unwrap()).unwrap().to_utc();
    let now = chrono::Utc::now();
    assert_eq!(chrono::Timelike::hour(&at), 2);
    assert!(at > now && at - now <= chrono::Duration::days(1), "{at}");
    assert_eq!(job["command"], "cache-optimizer run --yes -q");
    let id = job["id"].as_str().unwrap().to_owned();
    let out = env.run(OPTIMIZER, &["schedule", "--next-window"]);
    out.expect_code(2);
    assert!(out.stderr.contains("already scheduled"), "{}", out.dump());
    let out = env.run(OPTIMIZER, &["schedule", "--at", "2020-01-01 00:00"]);
    out.expect_code(2);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("scheduler/oneoff.json")).unwrap()).unwrap();
    assert_eq!(saved["jobs"].as_array().unwrap().len(), 1);
    env.run(OPTIMIZER, &["schedule", "--cancel", &id]).expect_code(0);
    let list = env.run(OPTIMIZER, &["schedule", "--list", "--format", "json"]).json();
    assert!(list["jobs"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_cluster_run_sets_ttls_on_every_shard_rollback_undoes_them_and_warm_writes_across_slots() {
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    // 9000 TTL-less keys of a TTL prefix, over the three primaries.
    // Every primary with maxmemory and noeviction: the policy change must reach all three.
    for node in cluster.nodes() {
        let mut conn = node.connection();
        let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("100mb").query(&mut conn).unwrap();
        let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query(&mut conn).unwrap();
    }
    let policies = |cluster: &cache_tests::RedisCluster| -> Vec<String> {
        cluster
            .nodes()
            .iter()
            .map(|n| {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query::<Vec<String>>(&mut n.connection())
                    .unwrap()[1]
                    .clone()
            })
            .collect()
    };
    let mut by_node: Vec<Vec<String>> = vec![Vec::new(); 3];
    for i in 0..9000 {
        let key = format!("app:search:k{i}");
        let port = cluster.node_for(&key).port();
        let n = cluster.nodes().iter().position(|node| node.port() == port).unwrap();
        by_node[n].push(key);
    }
    for (node, keys) in cluster.nodes().iter().zip(&by_node) {
        let mut conn = node.connection();
        for chunk in keys.chunks(500) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("SET").arg(key).arg("v").ignore();
            }
            pipe.query::<()>(&mut conn).unwrap();
        }
    }
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(CACHE_TABLE).await.unwrap();
    db.batch_execute(
        "INSERT INTO cache_entries (key, value, project_name, category, access_count, expires_at)
           SELECT 'w' || i, '{}', 'proj', 'c' || (i % 3), 1000 - i, NULL FROM generate_series(1, 300) i",
    )
    .await
    .unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "project_name = \"proj\"\n[optimizer]\nwarm_key_prefix = \"cache:\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{}\"\nprefixes = [{{ prefix = \"app:search:\", ttl = \"30m\" }}]\n\
         [[postgres]]\nname = \"main\"\nurl = \"{url}\"\n",
        cluster.nodes()[0].url()
    ));
    let ttl_less = |cluster: &cache_tests::RedisCluster| -> usize {
        cluster
            .nodes()
            .iter()
            .map(|node| {
                let mut conn = node.connection();
                node.keys()
                    .iter()
                    .filter(|k| k.starts_with("app:search:"))
                    .filter(|k| redis::cmd("PTTL").arg(k).query::<i64>(&mut conn).unwrap() < 0)
                    .count()
            })
            .sum()
    };
    assert_eq!(ttl_less(&cluster), 9000);
    let out = env.run(OPTIMIZER, &["run", "--apply", "--tier", "redis", "--format", "json", "--yes"]);
    out.expect_code(0);
    assert_eq!(policies(&cluster), ["allkeys-lru"; 3], "{}", out.dump());
    let changes = out.json()["changes"].clone();
    let ttl = changes.as_array().unwrap().iter().find(|c| c["action"]["kind"] == "redis_pattern_ttl").unwrap();
    assert_eq!(ttl["before"]["keys"].as_array().unwrap().len(), 9000, "{}", out.dump());
    assert_eq!(ttl_less(&cluster), 0, "a shard kept TTL-less keys of a TTL prefix");
    let rollback = env.run(OPTIMIZER, &["rollback", "latest", "--yes"]);
    rollback.expect_code(0);
    assert_eq!(ttl_less(&cluster), 9000, "rollback left TTLs: {}", rollback.dump());
    assert_eq!(policies(&cluster), ["noeviction"; 3], "{}", rollback.dump());
    // warm writes each entry to the primary of its slot: no MOVED, every shard gets some.
    let out = env.run(OPTIMIZER, &["warm", "--force", "--max-entries", "300", "--format", "json", "--yes"]);
    out.expect_code(0);
    assert_eq!(out.json()["written"], 300, "{}", out.dump());
    for node in cluster.nodes() {
        assert!(node.keys().iter().filter(|k| k.starts_with("cache:w")).count() > 50, "a shard got no warmed entry");
    }
}

/// The longest line of a run's stdout and stderr, in characters.
fn longest_line(out: &cache_tests::RunOutput) -> usize {
    out.stdout.lines().chain(out.stderr.lines()).map(|l| l.chars().count()).max().unwrap_or(0)
}

/// The lines of `text` that mention `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_refused_for_every_key_is_one_line_with_its_count_in_run_and_warm() {
    // PEXPIRE (the pattern TTL) and SET (warming) renamed away: every key is refused.
    let Some(redis) = RedisServer::start_with("rename-command PEXPIRE \"\"\nrename-command SET \"\"") else { return };
    let Some(pg) = PgServer::start() else { return };
    let mut conn = redis.connection();
    // 3000 TTL-less keys of a prefix with a TTL rule (written with MSET: SET is gone).
    let keys: Vec<String> = (0..3000).map(|i| format!("app:search:{i}")).collect();
    for chunk in keys.chunks(500) {
        let mut mset = redis::cmd("MSET");
        for key in chunk {
            mset.arg(key).arg("v");
        }
        mset.query::<()>(&mut conn).unwrap();
    }
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(CACHE_TABLE).await.unwrap();
    db.batch_execute(
        "INSERT INTO cache_entries (key, value, category, access_count)
           SELECT 'w' || i, '{}', 'c', i FROM generate_series(1, 2000) i",
    )
    .await
    .unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[optimizer]\nwarm_key_prefix = \"cache:\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{}\"\nprefixes = [{{ prefix = \"app:search:\", ttl = \"10m\" }}]\n\
         [[postgres]]\nname = \"main\"\nurl = \"{url}\"\n",
        redis.url()
    ));

    let text = env.run(OPTIMIZER, &["run", "--tier", "redis", "--yes"]);
    text.expect_code(1);
    let refused = lines_with(&text.stdout, "PEXPIRE");
    assert_eq!(refused.len(), 1, "{}", text.dump());
    assert!(
        refused[0].contains("TTL set on 0 of 3000 keys") && refused[0].contains("3000× PEXPIRE refused"),
        "{}",
        text.dump()
    );
    assert!(longest_line(&text) <= 400, "a line of {} characters\n{}", longest_line(&text), text.dump());

    let json = env.run(OPTIMIZER, &["run", "--tier", "redis", "--format", "json", "--yes"]);
    json.expect_code(1);
    assert!(longest_line(&json) <= 400, "a line of {} characters\n{}", longest_line(&json), json.dump());
    let doc = json.json();
    let changes = doc["changes"].as_array().unwrap();
    let ttl = changes.iter().find(|c| c["action"]["kind"] == "redis_pattern_ttl").unwrap_or_else(|| panic!("{doc:#}"));
    let outcome = ttl["outcome"].as_str().unwrap();
    assert!(outcome.starts_with("failed: TTL set on 0 of 3000 keys (standalone); 3000× PEXPIRE refused"), "{outcome}");
    assert!(outcome.contains("(and 2999 more like it)"), "{outcome}");
    assert_eq!(ttl["before"]["keys"], serde_json::json!([]), "no key was changed, so none is to be undone");
    assert!(ttls(&mut conn, "app:search:*").iter().all(|t| *t == -1));
    let record: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("jobs/optimize.json")).unwrap()).unwrap();
    assert_eq!(record["outcome"], "partial", "{record:#}");

    // Warming: 1000 entries (optimizer.warm_max_entries), every SET refused.
    let warm = env.run(OPTIMIZER, &["warm", "--force", "--format", "json", "--yes"]);
    warm.expect_code(1);
    assert!(longest_line(&warm) <= 400, "a line of {} characters\n{}", longest_line(&warm), warm.dump());
    let doc = warm.json();
    assert_eq!((doc["written"].as_u64(), doc["failed"].as_u64()), (Some(0), Some(1000)), "{doc:#}");
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = errors[0].as_str().unwrap();
    assert!(error.starts_with("1000× SET refused") && error.ends_with("(and 999 more like it)"), "{error}");
    let warm = env.run(OPTIMIZER, &["warm", "--force", "--yes"]);
    warm.expect_code(1);
    assert_eq!(lines_with(&warm.stdout, "SET refused").len(), 1, "{}", warm.dump());
    assert!(longest_line(&warm) <= 400, "a line of {} characters\n{}", longest_line(&warm), warm.dump());
    assert!(redis.keys().iter().all(|k| !k.starts_with("cache:")));
}
