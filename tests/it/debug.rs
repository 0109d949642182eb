//! `cache-debug` against real Redis and PostgreSQL: figures exactly as seeded, the slow log,
//! sessions idle in a transaction, refused commands, logs with rotations, the audit, the
//! configuration's sources.

use std::collections::BTreeMap;
use std::io::Write as _;

use cache_tests::{PgServer, RedisServer, TestEnv};
use serde_json::Value;

use crate::DEBUG;

fn usage(conn: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query(conn).unwrap()
}

#[test]
fn memory_top_keys_and_prefixes_are_exactly_as_seeded() {
    let Some(redis) = RedisServer::start() else { return };
    let mut conn = redis.connection();
    let mut expected: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (key, size) in [("big:1", 100_000), ("big:2", 50_000), ("big:3", 20_000)] {
        redis::cmd("SET").arg(key).arg(vec![b'x'; size]).query::<()>(&mut conn).unwrap();
    }
    for i in 0..100 {
        redis::cmd("SET").arg(format!("sess:{i}")).arg("s").arg("EX").arg(1800).query::<()>(&mut conn).unwrap();
    }
    for i in 0..50 {
        redis.set_aged(&format!("app:cfg:{i}"), b"value", 0, 2 * 86_400);
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    for k in &keys {
        let prefix = if k.starts_with("app:") {
            "app:"
        } else if k.starts_with("big:") {
            "big:"
        } else {
            "sess:"
        };
        let e = expected.entry(prefix).or_default();
        e.0 += 1;
        e.1 += usage(&mut conn, k);
    }
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nprefixes = [{{ prefix = \"app:\" }}]\n",
        redis.url()
    ));
    let out = env.run(DEBUG, &["memory", "--top", "3", "--format", "json", "--tier", "redis"]);
    out.expect_code(0);
    let r = &out.json()["redis"][0];
    let top: Vec<(String, u64)> = r["top_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap().to_owned(), k["bytes"].as_u64().unwrap()))
        .collect();
    let want: Vec<(String, u64)> =
        ["big:1", "big:2", "big:3"].iter().map(|k| ((*k).to_owned(), usage(&mut conn, k))).collect();
    assert_eq!(top, want);
    assert_eq!(r["scanned"], 153);
    for (prefix, (n, bytes)) in &expected {
        let p = &r["prefixes"][*prefix];
        assert_eq!((p["keys"].as_u64(), p["bytes"].as_u64()), (Some(*n), Some(*bytes)), "{prefix}: {p:#}");
    }
    assert_eq!(r["prefixes"]["sess:"]["ttl"]["under_1h"], 100);
    assert_eq!(r["prefixes"]["app:"]["ttl"]["no_ttl"], 50);
    assert_eq!(r["prefixes"]["app:"]["idle"]["under_7d"], 50);
    // A sample stops early and says so.
    let sampled = env.run(DEBUG, &["memory", "--sample", "10", "--format", "json", "--tier", "redis"]).json();
    assert_eq!(
        (sampled["redis"][0]["scanned"].as_u64(), sampled["redis"][0]["sampled"].as_bool()),
        (Some(10), Some(true))
    );
    let text = env.run(DEBUG, &["memory", "--tier", "redis"]).stdout;
    assert!(text.contains("Biggest keys") && text.contains("big:1"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slowlog_shows_a_slow_command_and_an_idle_transaction_shows_its_age() {
    let Some(redis) = RedisServer::start_with("slowlog-log-slower-than 10000") else { return };
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(crate::health_table_sql()).await.unwrap();
    let mut conn = redis.connection();
    redis::cmd("DEBUG").arg("SLEEP").arg("0.05").query::<()>(&mut conn).unwrap();
    // A session left idle in a transaction.
    let idle = pg.client("app").await;
    idle.batch_execute("BEGIN; SELECT count(*) FROM cache_entries;").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let app = cache_tests::StubHttp::new(vec![("/health", 200, "{}".into())]);
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n\
         [[http]]\nname = \"app\"\nurl = \"{}/health\"\n",
        redis.url(),
        app.url()
    ));
    let out = env.run(DEBUG, &["performance", "--samples", "20", "--format", "json"]);
    out.expect_code(0);
    let perf = out.json();
    let entries = perf["redis"][0]["slowlog"]["entries"].as_array().unwrap().clone();
    let slow = entries.iter().find(|e| e["command"] == "DEBUG SLEEP 0.05").unwrap_or_else(|| panic!("{perf:#}"));
    assert!(slow["duration_us"].as_i64().unwrap() >= 50_000, "{slow}");
    assert_eq!(perf["redis"][0]["latency"]["samples"], 20);
    let debug = perf["redis"][0]["commandstats"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"] == "debug")
        .cloned();
    assert!(debug.is_some_and(|d| d["usec"].as_u64().unwrap() >= 50_000));
    assert!(
        perf["postgres"][0]["statements"]["note"].as_str().unwrap().contains("pg_stat_statements is not installed")
    );
    assert_eq!(perf["postgres"][0]["cache_table_lookup"]["samples"], 20);
    assert_eq!(perf["http"][0]["latency"]["samples"], 20, "{perf:#}");

    let out = env.run(DEBUG, &["connections", "--format", "json"]);
    out.expect_code(0);
    let c = out.json();
    let idle_tx = c["postgres"][0]["idle_in_transaction"].as_array().unwrap();
    assert_eq!(idle_tx.len(), 1, "{c:#}");
    assert!(idle_tx[0]["age_seconds"].as_f64().unwrap() >= 1.0);
    assert_eq!(idle_tx[0]["last_query"], "BEGIN; SELECT count(*) FROM cache_entries;");
    assert!(c["redis"][0]["clients"]["total"].as_u64().unwrap() >= 2);
    assert!(c["redis"][0]["clients"]["maxclients"].as_u64().unwrap() > 0);
    let text = env.run(DEBUG, &["connections"]).stdout;
    assert!(text.contains("Sessions idle in a transaction"), "{text}");
    drop(idle);
}

#[test]
fn commands_renamed_away_are_not_supported_and_the_rest_goes_on() {
    let Some(redis) = RedisServer::start_with(
        "rename-command SLOWLOG \"\"\nrename-command OBJECT \"\"\nrename-command CONFIG \"\"\nrename-command CLIENT \"\"",
    ) else {
        return;
    };
    let mut conn = redis.connection();
    redis::cmd("SET").arg("k").arg("v").query::<()>(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"hosted\"\nurl = \"{}\"\n", redis.url()));
    let perf = env.run(DEBUG, &["performance", "--samples", "3", "--format", "json"]);
    perf.expect_code(0);
    let p = perf.json();
    assert!(p["redis"][0]["slowlog"]["note"].as_str().unwrap().contains("not supported on this server"), "{p:#}");
    assert_eq!(p["redis"][0]["latency"]["samples"], 3);
    let conns = env.run(DEBUG, &["connections", "--format", "json"]);
    conns.expect_code(0);
    assert!(conns.json()["redis"][0]["clients"]["note"].as_str().unwrap().contains("not supported on this server"));
    let mem = env.run(DEBUG, &["memory", "--format", "json", "--tier", "redis"]);
    mem.expect_code(0);
    let m = mem.json();
    assert_eq!(m["redis"][0]["scanned"], 1);
    let notes: Vec<&str> = m["redis"][0]["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    assert!(notes.iter().any(|n| n.contains("not supported on this server")), "{notes:?}");
    env.run(DEBUG, &["security"]).expect_code(0);
}

#[test]
fn key_sizes_are_unknown_where_memory_usage_is_refused_never_zero() {
    let Some(redis) = RedisServer::start_with("rename-command MEMORY \"\"") else { return };
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET").arg(format!("app:item:{i}")).arg(vec![b'x'; 512]).ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"hosted\"\nurl = \"{}\"\n", redis.url()));
    let m = env.run(DEBUG, &["memory", "--format", "json"]).json();
    let r = &m["redis"][0];
    assert_eq!(r["scanned"], 2000, "{r:#}");
    assert_eq!(r["sizes_known"], false, "{r:#}");
    assert!(r["top_keys"].is_null(), "{r:#}");
    assert!(r["prefixes"]["app:"]["bytes"].is_null(), "{r:#}");
    assert_eq!(r["prefixes"]["app:"]["keys"], 2000, "{r:#}");
    let text = env.run(DEBUG, &["memory"]);
    text.expect_code(0);
    assert!(text.stdout.contains("Biggest keys: unknown (the server refuses MEMORY USAGE)"), "{}", text.dump());
    let redis_part = text.stdout.split("File cache").next().unwrap();
    assert!(!redis_part.contains(" 0 B"), "{}", text.dump());
}

#[test]
fn logs_count_patterns_in_the_last_days_rotations_included() {
    let env = TestEnv::new();
    let dir = env.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("app.log"),
        "10:00 INFO up\n10:01 ERROR db: connection refused\n10:02 WARN slow query 2.1s\n10:03 ERROR newest failure\n",
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("app.log.1.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(b"09:00 ERROR older failure\n09:01 CRITICAL out of memory\n").unwrap();
    gz.finish().unwrap();
    let old = dir.join("app.log.9");
    std::fs::write(&old, "ERROR from last month\n").unwrap();
    let month_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
    std::fs::File::options().write(true).open(&old).unwrap().set_modified(month_ago).unwrap();
    // The rotation is older than the live log.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(dir.join("app.log.1.gz")).unwrap().set_modified(hour_ago).unwrap();
    env.write_config(&format!("[[logs]]\nname = \"app\"\npath = \"{}\"\n", dir.display()));
    let out = env.run(DEBUG, &["logs", "--days", "7", "--format", "json", "--tier", "logs"]);
    out.expect_code(0);
    let t = &out.json()["logs"][0]["tally"];
    assert_eq!(t["counts"]["error"], 3, "{t:#}");
    assert_eq!(t["counts"]["critical"], 1);
    assert_eq!(t["counts"]["out of memory"], 1);
    assert_eq!(t["counts"]["connection refused"], 1);
    assert_eq!(t["counts"]["warning"], 1);
    assert_eq!(t["files"].as_array().unwrap().len(), 2);
    let errors: Vec<&str> = t["examples"]["error"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(
        errors,
        ["09:00 ERROR older failure", "10:01 ERROR db: connection refused", "10:03 ERROR newest failure"]
    );
}

/// Seed 004's error patterns, configured beside the built-in ones, in a live log, a plain
/// rotation and gzipped rotations (two gzip members in one file, as `cat a.gz b.gz` leaves);
/// every example scrubbed of what looks like a credential, though the configuration knows
/// none of them.
#[test]
fn logs_count_configured_patterns_in_rotations_and_scrub_credentials_from_examples() {
    let env = TestEnv::new();
    let dir = env.path("benchmark");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("eval.log"),
        "11:00 INFO run 7 started\n\
         11:01 ERROR run 7: evaluation failed: judge returned 500 (Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig)\n\
         11:02 ERROR CUDA out of memory. Tried to allocate 2.00 GiB; retrying with api_key=sk-live-4242abcd\n\
         11:03 INFO run 7 done\n",
    )
    .unwrap();
    std::fs::write(dir.join("eval.log.1"), "10:00 ERROR Evaluation Failed for model m1 password=hunter2xyz\n").unwrap();
    let gz = |name: &str, members: &[&[u8]]| {
        let mut file = std::fs::File::create(dir.join(name)).unwrap();
        for member in members {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(member).unwrap();
            file.write_all(&enc.finish().unwrap()).unwrap();
        }
    };
    gz(
        "eval.log.2.gz",
        &[
            b"09:00 CRITICAL system overload: queue 900\n09:01 ERROR CUDA out of memory on gpu1 (db redis://eval:s3cr3t-pw@10.0.0.7:6379/0)\n",
            b"09:02 WARNING high latency: 2300 ms {\"client_secret\": \"cs-77xx\"}\n",
        ],
    );
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for (name, at) in [("eval.log.1", hour_ago), ("eval.log.2.gz", two_hours_ago)] {
        std::fs::File::options().write(true).open(dir.join(name)).unwrap().set_modified(at).unwrap();
    }
    env.write_config(&format!(
        "[[logs]]\nname = \"benchmark\"\npath = \"{}\"\n[debug]\nlog_patterns = [\n  \
         {{ name = \"evaluation failed\", match = [\"evaluation failed\"] }},\n  \
         {{ name = \"cuda oom\", match = [\"CUDA out of memory\"] }},\n  \
         {{ name = \"overload\", match = [\"system overload\", \"high latency\"] }},\n]\n",
        dir.display()
    ));
    let out = env.run(DEBUG, &["logs", "--format", "json"]);
    out.expect_code(0);
    let doc = out.json();
    let t = &doc["logs"][0]["tally"];
    assert_eq!(t["files"].as_array().unwrap().len(), 3, "{t:#}");
    assert_eq!(t["lines"], 8, "{t:#}");
    for (name, n) in [
        ("evaluation failed", 2),
        ("cuda oom", 2),
        ("overload", 2),
        ("out of memory", 2),
        ("error", 4),
        ("critical", 1),
        ("warning", 1),
        ("timeout", 0),
    ] {
        assert_eq!(t["counts"][name].as_u64().unwrap_or(0), n, "{name}: {t:#}");
    }
    let sources: Vec<(&str, &str)> = doc["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["source"].as_str().unwrap()))
        .collect();
    assert_eq!(sources[0], ("error", "builtin"));
    assert_eq!(
        &sources[sources.len() - 3..],
        [("evaluation failed", "configured"), ("cuda oom", "configured"), ("overload", "configured")]
    );
    // Oldest first, so the newest examples are kept, each scrubbed.
    let examples = |name: &str| -> Vec<String> {
        t["examples"][name].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        examples("cuda oom"),
        [
            "09:01 ERROR CUDA out of memory on gpu1 (db redis://eval:***@10.0.0.7:6379/0)",
            "11:02 ERROR CUDA out of memory. Tried to allocate 2.00 GiB; retrying with api_key=***",
        ]
    );
    assert_eq!(
        examples("evaluation failed"),
        [
            "10:00 ERROR Evaluation Failed for model m1 password=***",
            "11:01 ERROR run 7: evaluation failed: judge returned 500 (Authorization: Bearer ***)",
        ]
    );
    assert_eq!(examples("overload")[1], "09:02 WARNING high latency: 2300 ms {\"client_secret\": \"***\"}");
    for secret in ["eyJhbGciOiJIUzI1NiJ9", "sk-live-4242abcd", "hunter2xyz", "s3cr3t-pw", "cs-77xx"] {
        assert!(!out.stdout.contains(secret), "{secret} in {}", out.stdout);
    }
    let text = env.run(DEBUG, &["logs"]);
    text.expect_code(0);
    assert!(text.stdout.contains("cuda oom") && text.stdout.contains("evaluation failed"), "{}", text.dump());
    assert!(!text.stdout.contains("hunter2xyz") && !text.stdout.contains("sk-live-4242abcd"), "{}", text.dump());
}

/// A configured pattern with no name, no fragment or an empty one, or a built-in's name, is a
/// configuration error naming the key (exit 3).
#[test]
fn a_log_pattern_without_a_name_or_a_fragment_is_refused_naming_the_key() {
    let env = TestEnv::new();
    for (patterns, key, says) in [
        ("{ name = \"\", match = [\"x\"] }", "debug.log_patterns[0].name", "must not be empty"),
        (
            "{ name = \"a\", match = [\"x\"] }, { name = \"b\", match = [\"y\", \" \"] }",
            "debug.log_patterns[1].match[1]",
            "must not be empty",
        ),
        ("{ name = \"a\", match = [] }", "debug.log_patterns[0].match", "at least one fragment"),
        ("{ name = \"Timeout\", match = [\"x\"] }", "debug.log_patterns[0].name", "a built-in pattern's name"),
        (
            "{ name = \"a\", match = [\"x\"] }, { name = \"a\", match = [\"y\"] }",
            "debug.log_patterns[1].name",
            "used twice",
        ),
        ("{ name = \"a\" }", "debug.log_patterns[0]", "missing field `match`"),
    ] {
        env.write_config(&format!("[debug]\nlog_patterns = [{patterns}]\n"));
        let out = env.run(DEBUG, &["logs"]);
        out.expect_code(3);
        assert!(out.stderr.contains(&format!("`{key}`")) && out.stderr.contains(says), "{patterns}: {}", out.dump());
    }
}

#[test]
fn security_findings_carry_fixes_and_a_score() {
    let Some(redis) = RedisServer::start_with("protected-mode no") else { return };
    let env = TestEnv::new();
    let config = env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[[memory]]\nname = \"m\"\nurl = \"http://mem0.example.com\"\napi_key = \"k-123\"\n",
        redis.url()
    ));
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = env.run(DEBUG, &["security", "--format", "json", "--tier", "redis"]);
    out.expect_code(0);
    let doc = out.json();
    let found: Vec<(String, String)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["severity"].as_str().unwrap().to_owned(), f["finding"].as_str().unwrap().to_owned()))
        .collect();
    let has = |sev: &str, text: &str| found.iter().any(|(s, f)| s == sev && f.contains(text));
    assert!(has("high", "readable or writable by others"), "{found:?}");
    assert!(has("high", "API key goes over plain HTTP"), "{found:?}");
    assert!(has("medium", "without a password"), "{found:?}");
    assert!(has("medium", "protected-mode is off"), "{found:?}");
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(doc["score"], 100 - 25 - 25 - 10 - 10);
    assert!(!out.stdout.contains("k-123"));
}

#[test]
fn config_shows_each_value_with_its_source_and_no_secret() {
    let env = TestEnv::new();
    env.write_config("project_name = \"shop\"\n[[redis]]\nname = \"main\"\nurl = \"redis://:s3cret@127.0.0.1:6390\"\n");
    let mut cmd = env.command(DEBUG, &["config", "--format", "json"]);
    cmd.env("DATABASE_URL", "postgres://app:pg-pass@127.0.0.1/app");
    let out = env.run_command(cmd);
    out.expect_code(0);
    assert!(!out.stdout.contains("s3cret") && !out.stdout.contains("pg-pass"), "{}", out.stdout);
    let doc = out.json();
    let entry = |key: &str| -> Value {
        doc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert_eq!(entry("project_name")["source"], "file");
    assert_eq!(entry("redis[0].url")["source"], "file");
    assert!(entry("redis[0].url")["value"].as_str().unwrap().contains("127.0.0.1:6390"));
    assert_eq!(entry("redis[0].timeout")["source"], "default");
    assert_eq!(entry("postgres[0].url")["source"], "environment (DATABASE_URL)");
    assert_eq!(entry("postgres[0].name")["source"], "environment (DATABASE_URL)");
    assert_eq!(entry("health.latency.redis")["source"], "default");
}

/// The longest line of a run's stdout and stderr, in characters.
fn longest_line(out: &cache_tests::RunOutput) -> usize {
    out.stdout.lines().chain(out.stderr.lines()).map(|l| l.chars().count()).max().unwrap_or(0)
}

/// The subjects of the findings saying `text`, sorted.
fn subjects(doc: &Value, text: &str) -> Vec<String> {
    let mut out: Vec<String> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["finding"].as_str().unwrap().contains(text))
        .map(|f| f["subject"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn security_audits_every_node_of_a_cluster_and_names_the_exposed_ones() {
    let Some(mut cluster) = cache_tests::RedisCluster::start_with_replicas() else { return };
    // Protected mode off on one primary that is not the seed, and on one replica.
    let (primary, replica) = (cluster.nodes()[1].port(), cluster.replicas()[2].port());
    for node in [&cluster.nodes()[1], &cluster.replicas()[2]] {
        redis::cmd("CONFIG").arg("SET").arg("protected-mode").arg("no").query::<()>(&mut node.connection()).unwrap();
    }
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", cluster.nodes()[0].url()));
    let out = env.run(DEBUG, &["security", "--format", "json"]);
    out.expect_code(0);
    let doc = out.json();
    let mut exposed =
        vec![format!("redis/main 127.0.0.1:{primary}"), format!("redis/main 127.0.0.1:{replica} (replica)")];
    exposed.sort();
    assert_eq!(subjects(&doc, "protected-mode is off"), exposed, "{doc:#}");
    assert_eq!(subjects(&doc, "without a password"), ["redis/main"], "a target-wide finding is made once");
    let covered = &doc["redis"][0];
    assert_eq!(covered["coverage"], "3 of 3 primaries and 3 of 3 replicas", "{doc:#}");
    assert_eq!(covered["audited"].as_array().unwrap().len(), 6, "{doc:#}");
    assert!(covered["not_audited"].as_array().unwrap().is_empty(), "{doc:#}");
    let text = env.run(DEBUG, &["security"]);
    text.expect_code(0);
    assert!(text.stdout.contains("audited redis/main: 3 of 3 primaries and 3 of 3 replicas"), "{}", text.dump());
    let rows: Vec<&str> = text.stdout.lines().filter(|l| l.contains("protected-mode is off")).collect();
    assert_eq!(rows.len(), 2, "{}", text.dump());
    assert!(exposed.iter().all(|subject| rows.iter().any(|row| row.contains(&format!("┆ {subject} ")))), "{rows:#?}");

    // A replica that cannot be reached is said, and the coverage counts it out.
    let lost = cluster.replicas()[0].port();
    cluster.kill_replica(0);
    let out = env.run(DEBUG, &["security", "--format", "json"]);
    out.expect_code(0);
    let doc = out.json();
    let covered = &doc["redis"][0];
    assert_eq!(covered["coverage"], "3 of 3 primaries and 2 of 3 replicas", "{doc:#}");
    let not_audited = covered["not_audited"].as_array().unwrap();
    assert_eq!(not_audited.len(), 1, "{doc:#}");
    assert!(not_audited[0].as_str().unwrap().starts_with(&format!("replica 127.0.0.1:{lost}: ")), "{doc:#}");
    let notes = doc["notes"].to_string();
    assert!(notes.contains(&format!("redis/main: not audited: replica 127.0.0.1:{lost}")), "{notes}");
    assert_eq!(subjects(&doc, "protected-mode is off"), exposed, "{doc:#}");
}

#[test]
fn on_a_cluster_a_refusal_by_every_node_is_one_line_with_its_count() {
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    // Every primary refuses SLOWLOG and CLIENT LIST to the toolkit's user.
    for node in cluster.nodes() {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("-slowlog")
            .arg("-client|list")
            .query::<()>(&mut node.connection())
            .unwrap();
    }
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", cluster.nodes()[0].url()));
    let perf = env.run(DEBUG, &["performance", "--samples", "3", "--tier", "redis", "--format", "json"]);
    perf.expect_code(0);
    let doc = perf.json();
    let note = doc["redis"][0]["slowlog"]["note"].as_str().unwrap_or_else(|| panic!("{doc:#}"));
    assert!(note.starts_with("3× SLOWLOG on `127.0.0.1:") && note.contains("not supported on this server"), "{note}");
    assert!(note.ends_with("(and 2 more like it)"), "{note}");
    // Command statistics are not refused: every primary's are there.
    assert!(doc["redis"][0]["commandstats"]["commands"].as_array().is_some_and(|c| !c.is_empty()), "{doc:#}");
    let text = env.run(DEBUG, &["performance", "--samples", "3", "--tier", "redis"]);
    text.expect_code(0);
    assert_eq!(text.stdout.lines().filter(|l| l.contains("SLOWLOG on")).count(), 1, "{}", text.dump());
    assert!(longest_line(&text) <= 400, "a line of {} characters\n{}", longest_line(&text), text.dump());
    let conns = env.run(DEBUG, &["connections", "--tier", "redis", "--format", "json"]);
    conns.expect_code(0);
    let doc = conns.json();
    let note = doc["redis"][0]["clients"]["note"].as_str().unwrap_or_else(|| panic!("{doc:#}"));
    assert!(note.starts_with("3× CLIENT LIST on `127.0.0.1:") && note.ends_with("(and 2 more like it)"), "{note}");
    let text = env.run(DEBUG, &["connections", "--tier", "redis"]);
    text.expect_code(0);
    assert_eq!(text.stdout.lines().filter(|l| l.contains("CLIENT LIST on")).count(), 1, "{}", text.dump());
    assert!(longest_line(&text) <= 400, "a line of {} characters\n{}", longest_line(&text), text.dump());
}

#[test]
fn hostile_key_names_print_escaped_and_short_in_text_and_exact_in_json() {
    let Some(redis) = RedisServer::start() else { return };
    let mut conn = redis.connection();
    let hostile = ["app:\u{1b}[2J\u{1b}[31mred", "app:bell\u{7}\rover", "app:tab\there"];
    for name in hostile {
        redis::cmd("SET").arg(name).arg("v").query::<()>(&mut conn).unwrap();
    }
    for i in 0..5 {
        redis::cmd("SET").arg(format!("app:{i}:{}", "x".repeat(1 << 20))).arg("v").query::<()>(&mut conn).unwrap();
    }
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nnamespace = \"app:\"\nprefixes = [{{ prefix = \"app:\", ttl = \"1h\" }}]\n",
        redis.url()
    ));
    for (tool, args) in [(DEBUG, &["memory"][..]), (crate::CLEANUP, &["light", "--dry-run"][..])] {
        let out = env.run(tool, args);
        assert!(out.code() <= 1, "{}", out.dump());
        for bad in ['\u{1b}', '\u{7}', '\r'] {
            assert!(!out.stdout.contains(bad), "{args:?} printed {bad:?}: {:?}", out.stdout);
        }
        assert!(out.stdout.len() < 64 * 1024, "{args:?} printed {} bytes for five 1 MB names", out.stdout.len());
        assert!(out.stdout.contains("app:\\x1b[2J\\x1b[31mred") || args[0] == "light", "{}", out.stdout);
    }
    // JSON keeps the exact names.
    let json = env.run(DEBUG, &["memory", "--format", "json"]).json();
    let keys: Vec<&str> =
        json["redis"][0]["top_keys"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert!(hostile.iter().all(|h| keys.contains(h)), "{keys:?}");
}

#[test]
fn memory_keeps_a_bounded_number_of_prefix_groups_and_every_key_counted() {
    let Some(redis) = RedisServer::start() else { return };
    let mut conn = redis.connection();
    // 30,000 keys under 28,000 distinct prefixes, plus one heavy prefix spread among them.
    let mut pipe = redis::pipe();
    for i in 0..30_000u32 {
        let key = if i % 15 == 0 { format!("zz-hot:{i}") } else { format!("t{i}:profile") };
        pipe.cmd("SET").arg(key).arg("v").ignore();
    }
    let () = pipe.query(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    let out = env.run(DEBUG, &["memory", "--format", "json", "--tier", "redis", "--max-groups", "50"]);
    out.expect_code(0);
    let section = &out.json()["redis"][0];
    let prefixes = section["prefixes"].as_object().unwrap();
    assert!(prefixes.len() <= 51, "{} groups reported", prefixes.len());
    let total: u64 = prefixes.values().map(|p| p["keys"].as_u64().unwrap()).sum();
    assert_eq!(total, 30_000, "every key is counted, in its group or in (other)");
    assert_eq!(prefixes["zz-hot:"]["keys"], 2_000, "the heavy prefix keeps its whole count");
    assert!(prefixes["(other)"]["keys"].as_u64().unwrap() > 27_000);
    assert!(section["prefix_groups_folded"].as_u64().unwrap() >= 27_900, "{section:#}");
    assert!(section["notes"].to_string().contains("folded into `(other)`"), "{section:#}");
    // The report stays small: a few KB, not one entry per prefix.
    assert!(out.stdout.len() < 64 * 1024, "{} bytes of JSON", out.stdout.len());
}

#[test]
fn scanning_batches_adapt_to_the_call_budget_of_the_target() {
    let Some(redis) = RedisServer::start() else { return };
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..5_000u32 {
        pipe.cmd("SET").arg(format!("app:k{i}")).arg("v").ignore();
    }
    let () = pipe.query(&mut conn).unwrap();
    let env = TestEnv::new();
    let calls = |budget: &str| {
        env.write_config(&format!(
            "[[redis]]\nname = \"main\"\nurl = \"{}\"\ncall_budget = \"{budget}\"\n",
            redis.url()
        ));
        let out = env.run(DEBUG, &["memory", "--format", "json", "--tier", "redis"]);
        out.expect_code(0);
        let section = out.json()["redis"][0].clone();
        assert_eq!(section["scanned"], 5_000, "{section:#}");
        section["calls"].clone()
    };
    // No call can fit a microsecond: the batches go down to the smallest.
    let tight = calls("1us");
    assert_eq!(tight["batch_at_end"], 10, "{tight:#}");
    assert!(tight["over_budget"].as_u64().unwrap() > 0, "{tight:#}");
    // Every call fits ten seconds: the batches grow to the count asked for.
    let loose = calls("10s");
    assert_eq!(loose["batch_at_end"], 1000, "{loose:#}");
    assert_eq!(loose["over_budget"], 0);
    // "0s": fixed batches of the count asked for.
    let fixed = calls("0s");
    assert_eq!((fixed["batch_at_end"].as_u64(), fixed["budget_ms"].is_null()), (Some(1000), true), "{fixed:#}");
}
