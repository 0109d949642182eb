//! `cache-backup` against real redis-server and PostgreSQL processes.

use std::time::Duration;

use cache_tests::{PgServer, RedisServer, TestEnv, wait_until};
use serde_json::Value;

use crate::BACKUP;

/// Strings, hashes, lists, sets and sorted sets, some with TTLs.
fn seed_redis(redis: &RedisServer) {
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("s:{i}")).arg(format!("value-{i}")).ignore();
        pipe.cmd("HSET").arg(format!("h:{i}")).arg("a").arg(i).arg("b").arg("x").ignore();
        pipe.cmd("RPUSH").arg(format!("l:{i}")).arg("1").arg("2").arg(i).ignore();
        pipe.cmd("SADD").arg(format!("set:{i}")).arg("m").arg(i).ignore();
        pipe.cmd("ZADD").arg(format!("z:{i}")).arg(1).arg("a").arg(i).arg("b").ignore();
        if i % 3 == 0 {
            pipe.cmd("PEXPIRE").arg(format!("s:{i}")).arg(3_600_000 + i).ignore();
            pipe.cmd("PEXPIRE").arg(format!("z:{i}")).arg(7_200_000).ignore();
        }
    }
    pipe.query::<()>(&mut conn).unwrap();
}

pub(crate) const TABLE: &str = "CREATE TABLE cache_entries (key text PRIMARY KEY, value jsonb NOT NULL, project_name text NOT NULL DEFAULT 'default',
      category text, access_count integer NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(),
      accessed_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz, metadata jsonb NOT NULL DEFAULT '{}');
    CREATE INDEX cache_entries_expires_at ON cache_entries (expires_at);
    INSERT INTO cache_entries (key, value, category, expires_at)
      SELECT 'k' || i, jsonb_build_object('n', i, 'text', E'tab\\there, newline\\nhere'), 'c' || (i % 4), now() + interval '1 hour' * i
        FROM generate_series(1, 500) i;";

const CHECKSUM: &str = "SELECT md5(string_agg(t::text, ',' ORDER BY key)) FROM cache_entries t";

async fn checksum(pg: &PgServer, db: &str) -> String {
    pg.client(db).await.query_one(CHECKSUM, &[]).await.unwrap().get(0)
}

fn config(redis_url: &str, pg_url: &str, method: &str) -> String {
    format!(
        "[[redis]]\nname = \"main\"\nurl = \"{redis_url}\"\n[[postgres]]\nname = \"main\"\nurl = \"{pg_url}\"\n\
         [backup]\nredis_method = \"{method}\"\nthreads = 2\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_through_every_method_is_exact() {
    let Some(pg) = PgServer::start() else { return };
    let pg_url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(TABLE).await.unwrap();
    let rows = checksum(&pg, "app").await;
    for (method, extra) in
        [("bgsave", ""), ("replication", ""), ("replication", "repl-diskless-sync no"), ("logical", "")]
    {
        let Some(redis) = RedisServer::start_with(extra) else { return };
        seed_redis(&redis);
        let digest = redis.digest();
        let env = TestEnv::new();
        env.watch_log("redis", redis.dir().join("redis.log"));
        env.write_config(&config(&redis.url(), &pg_url, method));
        let out = env.run(BACKUP, &["create", "--format", "json"]);
        out.expect_code(0);
        let created = out.json();
        assert_eq!(created["sources"][0]["method"], method, "{}", out.dump());
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(env.state_dir().join("backups").join(created["id"].as_str().unwrap()).join("manifest.json"))
                .unwrap(),
        )
        .unwrap();
        for file in manifest["files"].as_array().unwrap() {
            assert_eq!(file["sha256"].as_str().unwrap().len(), 64);
        }
        // The manifest holds no secret and names every file.
        assert!(manifest["files"].as_array().unwrap().len() >= 4, "{manifest:#}");
        env.run(BACKUP, &["verify"]).expect_code(0);

        let mut conn = redis.connection();
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
        pg.client("app").await.batch_execute("TRUNCATE cache_entries").await.unwrap();
        let out = env.run(BACKUP, &["restore", "--postgres", "truncate", "--yes", "--format", "json"]);
        out.expect_code(0);
        assert_eq!(redis.digest(), digest, "{method} {extra}: the dataset differs after restore\n{}", out.dump());
        assert_eq!(checksum(&pg, "app").await, rows, "{method}: the table differs after restore");
        let ttl: i64 = redis::cmd("PTTL").arg("s:3").query(&mut conn).unwrap();
        assert!(ttl > 3_500_000, "TTL lost: {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_into_a_second_server_key_by_key_and_merge_rows() {
    let Some(first) = RedisServer::start() else { return };
    let Some(second) = RedisServer::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    let pg_url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(TABLE).await.unwrap();
    seed_redis(&first);
    let env = TestEnv::new();
    env.write_config(&config(&first.url(), &pg_url, "auto"));
    env.run(BACKUP, &["create", "--only", "redis,postgres"]).expect_code(0);
    // Without a choice for the table, nothing happens.
    env.write_config(&config(&second.url(), &pg_url, "auto"));
    let out = env.run(BACKUP, &["restore", "--yes"]);
    out.expect_code(2);
    assert!(out.stderr.contains("--postgres truncate") && out.stderr.contains("--postgres merge"), "{}", out.dump());
    assert!(second.keys().is_empty());
    // Merge: rows missing come back, rows present stay as they are.
    let db = pg.client("app").await;
    db.batch_execute("DELETE FROM cache_entries WHERE key IN ('k1', 'k2'); UPDATE cache_entries SET category = 'changed' WHERE key = 'k3'")
        .await
        .unwrap();
    env.run(BACKUP, &["restore", "--postgres", "merge", "--yes"]).expect_code(0);
    assert_eq!(second.digest(), first.digest());
    let count: i64 = db.query_one("SELECT count(*) FROM cache_entries", &[]).await.unwrap().get(0);
    let changed: String =
        db.query_one("SELECT category FROM cache_entries WHERE key = 'k3'", &[]).await.unwrap().get(0);
    assert_eq!((count, changed.as_str()), (500, "changed"));
    let report = std::fs::read_to_string(env.state_dir().join("backup/restores.jsonl")).unwrap();
    assert!(report.contains("keys restored"), "{report}");
}

#[test]
fn backups_are_private_and_hold_no_secret() {
    use std::os::unix::fs::PermissionsExt;
    let password = "backup-pass-never-shown";
    let Some(redis) = RedisServer::start_with(&format!("requirepass {password}")) else { return };
    seed_redis(&redis);
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    for method in ["bgsave", "replication", "logical"] {
        let config =
            format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nredis_method = \"{method}\"\n", redis.url());
        env.write_config(&config);
        let out = env.run(BACKUP, &["create", "--format", "json"]);
        out.expect_code(0);
        assert!(!out.stdout.contains(password) && !out.stderr.contains(password), "{}", out.dump());
        let dir = env.state_dir().join("backups").join(out.json()["id"].as_str().unwrap());
        let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        assert!(manifest.contains("\"schema_version\": 1") && manifest.contains(":***@"), "{manifest}");
        assert!(!manifest.contains(password), "{manifest}");
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
    // The latest backup of today, by date.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    env.run(BACKUP, &["restore", "--date", &today, "--dry-run"]).expect_code(0);
}

#[test]
fn a_corrupted_byte_fails_verify_and_restore_refuses() {
    let Some(redis) = RedisServer::start() else { return };
    seed_redis(&redis);
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    let id = env.run(BACKUP, &["create", "--format", "json"]).json()["id"].as_str().unwrap().to_owned();
    let rdb = env.state_dir().join("backups").join(&id).join("redis-main.rdb.gz");
    let mut raw = std::fs::read(&rdb).unwrap();
    let middle = raw.len() / 2;
    raw[middle] ^= 0x01;
    std::fs::write(&rdb, raw).unwrap();
    let out = env.run(BACKUP, &["verify"]);
    out.expect_code(1);
    assert!(out.stdout.contains("FAILED") && out.stdout.contains("SHA-256"), "{}", out.dump());
    let list = env.run(BACKUP, &["list"]);
    assert!(list.stdout.contains("FAILED at"), "{}", list.dump());
    let digest = redis.digest();
    let out = env.run(BACKUP, &["restore", "--yes"]);
    out.expect_code(1);
    assert!(out.stderr.contains("failed verification, so nothing was restored"), "{}", out.dump());
    assert_eq!(redis.digest(), digest);
}

#[test]
fn a_killed_create_leaves_nothing_that_looks_complete() {
    let Some(redis) = RedisServer::start() else { return };
    let mut conn = redis.connection();
    // Enough data that the create is still running when it is killed.
    let _: () = redis::cmd("DEBUG").arg("POPULATE").arg(300_000).arg("key").arg(200).query(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nlevel = 9\nthreads = 1\n",
        redis.url()
    ));
    let mut child = env.command(BACKUP, &["create"]).spawn().unwrap();
    let backups = env.state_dir().join("backups");
    let started = wait_until(Duration::from_secs(10), || {
        std::fs::read_dir(&backups)
            .is_ok_and(|rd| rd.filter_map(Result::ok).any(|e| e.path().join("redis-main.rdb.gz").exists()))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(started, "the create never started writing");
    let list = env.run(BACKUP, &["list", "--format", "json"]).json();
    assert_eq!(list["backups"].as_array().unwrap().len(), 0, "{list:#}");
    assert_eq!(list["incomplete"].as_array().unwrap().len(), 1);
    env.run(BACKUP, &["create", "--only", "state"]).expect_code(0);
    env.run(BACKUP, &["prune", "--yes"]).expect_code(0);
    let list = env.run(BACKUP, &["list", "--format", "json"]).json();
    assert_eq!((list["backups"].as_array().unwrap().len(), list["incomplete"].as_array().unwrap().len()), (1, 0));
}

#[test]
fn prune_keeps_by_rule_and_never_the_newest_verified() {
    let env = TestEnv::new();
    env.write_config("[backup]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nprune_after_create = false\n");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            env.run(BACKUP, &["create", "--only", "state", "--format", "json"]).json()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Only the oldest is verified: it survives as the newest verified backup.
    env.run(BACKUP, &["verify", &ids[0]]).expect_code(0);
    let dry = env.run(BACKUP, &["prune", "--dry-run"]);
    dry.expect_code(0);
    assert!(dry.stdout.contains(&format!("would delete {}: kept by no rule", ids[1])), "{}", dry.dump());
    assert!(
        dry.stdout.contains(&format!("keep {}: the newest verified complete backup is never deleted", ids[0])),
        "{}",
        dry.dump()
    );
    assert_eq!(std::fs::read_dir(env.state_dir().join("backups")).unwrap().count(), 3);
    let out = env.run(BACKUP, &["prune"]);
    out.expect_code(2);
    assert!(out.stderr.contains("without --yes"));
    env.run(BACKUP, &["prune", "--yes"]).expect_code(0);
    let mut left: Vec<String> = std::fs::read_dir(env.state_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [ids[0].clone(), ids[2].clone()]);
}

#[test]
fn extraction_from_a_backup_refuses_entries_that_escape() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.state_dir().join("reports")).unwrap();
    std::fs::write(env.state_dir().join("reports/daily.json"), b"{}").unwrap();
    let id =
        env.run(BACKUP, &["create", "--only", "state", "--format", "json"]).json()["id"].as_str().unwrap().to_owned();
    let dest = env.path("restored");
    let out = env.run(BACKUP, &["restore", &id, "--extract-files", dest.to_str().unwrap(), "--yes"]);
    out.expect_code(0);
    assert_eq!(std::fs::read(dest.join("state/reports/daily.json")).unwrap(), b"{}");

    // Swap in an archive whose second entry climbs out, with a manifest that vouches for it.
    let dir = env.state_dir().join("backups").join(&id);
    let evil = dir.join("state.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&evil).unwrap(), flate2::Compression::fast());
        let mut tar = tar_builder(gz);
        for name in ["state/ok.txt", "../../escaped.txt"] {
            let mut header = tar::Header::new_gnu();
            header.set_size(2);
            header.set_mode(0o644);
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            tar.append(&header, &b"hi"[..]).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let (sha, bytes) = cache_core::archive::sha256_file(&evil).unwrap();
    manifest["files"][0]["sha256"] = Value::String(sha);
    manifest["files"][0]["bytes"] = Value::from(bytes);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let elsewhere = env.path("elsewhere/deeper");
    let out = env.run(BACKUP, &["restore", &id, "--extract-files", elsewhere.to_str().unwrap(), "--yes"]);
    out.expect_code(1);
    assert!(out.stderr.contains("../../escaped.txt") && out.stderr.contains("refusing to extract"), "{}", out.dump());
    assert!(!elsewhere.exists(), "something was written");
    assert!(!env.path("escaped.txt").exists() && !env.path("elsewhere/escaped.txt").exists());
}

fn tar_builder<W: std::io::Write>(w: W) -> tar::Builder<W> {
    tar::Builder::new(w)
}

#[test]
fn replace_dump_swaps_the_file_keeps_the_old_one_and_reloads() {
    let Some(redis) = RedisServer::start() else { return };
    seed_redis(&redis);
    let digest = redis.digest();
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    env.run(BACKUP, &["create", "--only", "redis"]).expect_code(0);
    let mut conn = redis.connection();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let _: () = redis::cmd("SET").arg("written-after").arg("1").query(&mut conn).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut conn).unwrap();
    let out = env.run(BACKUP, &["restore", "--replace-dump", "--yes"]);
    out.expect_code(0);
    assert!(out.stdout.contains("replaced and reloaded"), "{}", out.dump());
    assert_eq!(redis.digest(), digest);
    let kept: Vec<_> = std::fs::read_dir(redis.dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("before-restore"))
        .collect();
    assert_eq!(kept.len(), 1, "the old dump is kept beside the new one");
    // With AOF on, the server would not load the dump: refused, nothing replaced.
    let Some(aof) = RedisServer::start_with("appendonly yes") else { return };
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", aof.url()));
    let out = env.run(BACKUP, &["restore", "--replace-dump", "--yes"]);
    out.expect_code(1);
    assert!(out.stderr.contains("AOF on"), "{}", out.dump());
}

#[test]
fn the_backup_schedule_is_shown_and_changed_through_the_scheduler_state() {
    let env = TestEnv::new();
    let shown = env.run(BACKUP, &["schedule", "--format", "json"]).json();
    assert_eq!(shown["job"]["schedule"], "0 1 * * *");
    assert_eq!(shown["job"]["enabled"], true);
    assert_eq!(shown["next_runs"].as_array().unwrap().len(), 3);
    let out = env.run(BACKUP, &["schedule", "--set", "30 2 * * *", "--format", "json"]);
    out.expect_code(0);
    assert!(out.json()["next_runs"][0].as_str().unwrap().contains("T02:30:00"), "{}", out.dump());
    let state: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("scheduler/schedule.json")).unwrap()).unwrap();
    assert_eq!(state["jobs"]["backup"]["schedule"], "30 2 * * *");
    let bad = env.run(BACKUP, &["schedule", "--set", "every night"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("`every night` is not a five-field cron expression"), "{}", bad.dump());
    let off = env.run(BACKUP, &["schedule", "--disable"]);
    assert!(off.stdout.contains("`30 2 * * *`") && off.stdout.contains("DISABLED"), "{}", off.dump());
    let reset = env.run(BACKUP, &["schedule", "--reset", "--format", "json"]).json();
    assert_eq!((reset["job"]["schedule"].as_str(), reset["job"]["enabled"].as_bool()), (Some("0 1 * * *"), Some(true)));
}

#[tokio::test(flavor = "multi_thread")]
async fn memories_round_trip_through_a_backup_and_a_restore_is_idempotent() {
    let Some(pg) = PgServer::start() else { return };
    let pg_url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(TABLE).await.unwrap();
    let mem0 = cache_tests::Mem0Server::self_hosted("key-2");
    crate::cleanup::seed_memories(&mem0);
    let before = crate::cleanup::memory_contents(&mem0, "proj");
    let raw_before = mem0.memories("proj");
    assert_eq!(before.len(), 1000);
    let memory = |name: &str, key: &str| {
        format!(
            "[[memory]]\nname = \"{name}\"\nurl = \"{}\"\napi_key = \"{key}\"\ndialect = \"self-hosted\"\n",
            mem0.url()
        )
    };
    let env = TestEnv::new();
    let base =
        format!("project_name = \"proj\"\n[[postgres]]\nname = \"main\"\nurl = \"{pg_url}\"\n{}", memory("m", "key-2"));
    // A memory source that fails makes the backup partial, like any other source.
    env.write_config(&format!("{base}{}", memory("denied", "wrong-key")));
    let started = std::time::Instant::now();
    let out = env.run(BACKUP, &["create", "--format", "json"]);
    let create_time = started.elapsed();
    out.expect_code(1);
    let created = out.json();
    assert!(
        created["errors"].to_string().contains("memory/denied") && created["errors"].to_string().contains("401"),
        "{}",
        out.dump()
    );
    let file = created["files"].as_array().unwrap().iter().find(|f| f["path"] == "memory-m.jsonl.gz").unwrap().clone();
    assert_eq!((file["content"].as_str(), file["sha256"].as_str().unwrap().len()), (Some("memory-jsonl"), 64));
    assert!(created["sources"].as_array().unwrap().iter().any(|s| s["tier"] == "memory" && s["target"] == "m"));
    env.write_config(&base);
    env.run(BACKUP, &["verify"]).expect_code(0);

    // The memories are gone; a dry run counts them, and changes nothing.
    mem0.clear();
    let dry = env.run(BACKUP, &["restore", "--tier", "memory", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    assert!(dry.json()["restored"].to_string().contains("1000 memories would re-create"), "{}", dry.dump());
    assert!(mem0.memories("proj").is_empty());
    // `--tier memory` restores the memories alone (no table mode needed), with their texts,
    // categories and metadata.
    let started = std::time::Instant::now();
    let out = env.run(BACKUP, &["restore", "--tier", "memory", "--yes", "--format", "json"]);
    let restore_time = started.elapsed();
    out.expect_code(0);
    assert!(out.json()["restored"].to_string().contains("1000 memories re-created"), "{}", out.dump());
    assert_eq!(crate::cleanup::memory_contents(&mem0, "proj"), before);
    let creates = mem0.requests().into_iter().filter(|r| r.method == "POST" && r.url == "/memories").count();
    assert_eq!(creates, 1000);

    // On a populated user, a restore adds only what is missing, and again nothing.
    mem0.clear();
    for memory in raw_before.iter().take(900) {
        mem0.add_memory_json(memory.clone());
    }
    let out = env.run(BACKUP, &["restore", "--tier", "memory", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert!(
        out.json()["restored"].to_string().contains("100 memories re-created for user `proj`, 900 already present"),
        "{}",
        out.dump()
    );
    let out = env.run(BACKUP, &["restore", "--tier", "memory", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert!(
        out.json()["restored"].to_string().contains("0 memories re-created for user `proj`, 1000 already present"),
        "{}",
        out.dump()
    );
    assert_eq!(crate::cleanup::memory_contents(&mem0, "proj"), before);
    // By default the memory tier comes back with the others.
    let out = env.run(BACKUP, &["restore", "--postgres", "merge", "--yes", "--format", "json"]);
    out.expect_code(0);
    let restored = out.json()["restored"].to_string();
    assert!(restored.contains("memory/m:") && restored.contains("postgres/main:"), "{}", out.dump());
    eprintln!("figures: backup create with 1,000 memories {create_time:?}, restore of 1,000 memories {restore_time:?}");
}

/// Every key of every server in `servers`: DUMP payload and absolute expiry (PEXPIRETIME, -1:
/// none), by name.
fn snapshot(servers: &[&RedisServer]) -> std::collections::BTreeMap<String, (Vec<u8>, i64)> {
    let mut all = std::collections::BTreeMap::new();
    for server in servers {
        let mut conn = server.connection();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        for chunk in keys.chunks(5000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("DUMP").arg(key).cmd("PEXPIRETIME").arg(key);
            }
            let replies: Vec<redis::Value> = pipe.query(&mut conn).unwrap();
            for (key, r) in chunk.iter().zip(replies.chunks(2)) {
                let (redis::Value::BulkString(dump), redis::Value::Int(at)) = (&r[0], &r[1]) else {
                    panic!("{key}: {r:?}")
                };
                all.insert(key.clone(), (dump.clone(), *at));
            }
        }
    }
    all
}

/// Compares two snapshots: the same keys, the same values, expiry times within a second.
fn assert_same(
    before: &std::collections::BTreeMap<String, (Vec<u8>, i64)>,
    after: &std::collections::BTreeMap<String, (Vec<u8>, i64)>,
    what: &str,
) {
    assert_eq!(before.len(), after.len(), "{what}: key counts differ");
    let mut worst = 0;
    for (key, (dump, at)) in before {
        let (dump2, at2) = after.get(key).unwrap_or_else(|| panic!("{what}: `{key}` is missing"));
        assert_eq!(dump, dump2, "{what}: `{key}` differs");
        assert_eq!(*at < 0, *at2 < 0, "{what}: `{key}` gained or lost its TTL");
        worst = worst.max((at - at2).abs());
    }
    assert!(worst <= 1000, "{what}: an expiry time moved by {worst} ms");
}

/// Seeds `n` keys over every slot of `cluster`, each on its primary: strings and hashes, a
/// third of them with TTLs.
pub(crate) fn seed_cluster(cluster: &cache_tests::RedisCluster, n: usize) {
    let mut pipes: std::collections::BTreeMap<u16, redis::Pipeline> = std::collections::BTreeMap::new();
    for i in 0..n {
        let key = if i % 2 == 0 { format!("app:s:{i}") } else { format!("app:h:{i}") };
        let port = cluster.node_for_slot(cache_core::keyspace::key_slot(key.as_bytes())).port();
        let pipe = pipes.entry(port).or_insert_with(redis::pipe);
        if i % 2 == 0 {
            pipe.cmd("SET").arg(&key).arg(format!("value-{i}")).ignore();
        } else {
            pipe.cmd("HSET").arg(&key).arg("a").arg(i).arg("b").arg("x").ignore();
        }
        if i % 3 == 0 {
            pipe.cmd("PEXPIRE").arg(&key).arg(3_600_000 + i).ignore();
        }
    }
    for node in cluster.nodes() {
        if let Some(pipe) = pipes.get(&node.port()) {
            pipe.query::<()>(&mut node.connection()).unwrap();
        }
    }
}

fn manifest_of(env: &TestEnv, id: &str) -> (std::path::PathBuf, Value) {
    let path = env.state_dir().join("backups").join(id).join("manifest.json");
    let manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (path, manifest)
}

#[test]
fn a_cluster_is_backed_up_on_every_primary_and_restored_by_slot_into_any_shape() {
    let Some(cluster) = cache_tests::RedisCluster::start_with_replicas() else { return };
    seed_cluster(&cluster, 30_000);
    let primaries: Vec<&RedisServer> = cluster.nodes().iter().collect();
    let before = snapshot(&primaries);
    let per_node: Vec<usize> = primaries.iter().map(|p| p.keys().len()).collect();
    assert!(per_node.iter().all(|n| *n > 9000), "{per_node:?}");
    let digests: Vec<String> = primaries.iter().map(|p| p.digest()).collect();
    let env = TestEnv::new();
    for (i, node) in primaries.iter().enumerate() {
        env.watch_log(&format!("primary-{i}"), node.dir().join("redis.log"));
    }
    let config = |url: &str| format!("[[redis]]\nname = \"main\"\nurl = \"{url}\"\n[backup]\nthreads = 2\n");
    // Through any node, a replica included: the backup is of the primaries.
    env.write_config(&config(&cluster.replicas()[2].url()));
    let started = std::time::Instant::now();
    let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    let create_time = started.elapsed();
    out.expect_code(0);
    let created = out.json();
    assert_eq!(created["outcome"], "complete", "{}", out.dump());
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, manifest) = manifest_of(&env, &id);
    let shards: Vec<&Value> = manifest["files"].as_array().unwrap().iter().filter(|f| f["node"].is_string()).collect();
    assert_eq!(shards.len(), 3, "{manifest:#}");
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for primary in &primaries {
        let node = format!("127.0.0.1:{}", primary.port());
        let shard =
            shards.iter().find(|f| f["node"] == node.as_str()).unwrap_or_else(|| panic!("{node}: {manifest:#}"));
        let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut primary.connection()).unwrap();
        assert_eq!(shard["node_id"], id.as_str());
        assert_eq!(shard["content"], "redis-rdb");
        for r in shard["slots"].as_array().unwrap() {
            ranges.push((r[0].as_u64().unwrap(), r[1].as_u64().unwrap()));
        }
    }
    ranges.sort_unstable();
    assert_eq!(ranges, [(0, 5460), (5461, 10922), (10923, 16383)]);
    assert_eq!(manifest["sources"][0]["shards"].as_array().unwrap().len(), 3);
    assert_eq!(manifest["failed"], serde_json::json!([]));
    env.run(BACKUP, &["verify"]).expect_code(0);

    // Every primary loses everything; the restore puts each key back on its primary.
    for primary in &primaries {
        let _: () = redis::cmd("FLUSHALL").query(&mut primary.connection()).unwrap();
    }
    let dry = env.run(BACKUP, &["restore", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    assert!(
        dry.json()["restored"].to_string().contains("would restore 30000 keys from 3 cluster shards"),
        "{}",
        dry.dump()
    );
    assert!(cluster.keys().is_empty());
    let started = std::time::Instant::now();
    let out = env.run(BACKUP, &["restore", "--yes", "--format", "json"]);
    let restore_time = started.elapsed();
    out.expect_code(0);
    assert!(out.json()["restored"].to_string().contains("30000 keys restored"), "{}", out.dump());
    assert_same(&before, &snapshot(&primaries), "cluster → cluster");
    assert_eq!(primaries.iter().map(|p| p.digest()).collect::<Vec<_>>(), digests, "a primary's dataset differs");

    // Into another shape: one standalone server takes every key...
    let Some(single) = RedisServer::start() else { return };
    env.write_config(&config(&single.url()));
    env.run(BACKUP, &["restore", &id, "--yes"]).expect_code(0);
    assert_same(&before, &snapshot(&[&single]), "cluster → standalone");
    // ...and its own backup goes back into the cluster, routed by slot.
    let standalone =
        env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]).json()["id"].as_str().unwrap().to_owned();
    for primary in &primaries {
        let _: () = redis::cmd("FLUSHALL").query(&mut primary.connection()).unwrap();
    }
    env.write_config(&config(&cluster.nodes()[1].url()));
    env.run(BACKUP, &["restore", &standalone, "--yes"]).expect_code(0);
    assert_same(&before, &snapshot(&primaries), "standalone → cluster");
    assert_eq!(primaries.iter().map(|p| p.digest()).collect::<Vec<_>>(), digests);
    eprintln!(
        "figures: cluster backup of {} keys ({per_node:?} per primary) {create_time:?}, restore {restore_time:?}",
        before.len()
    );
}

#[test]
fn a_dead_primary_makes_the_backup_partial_and_a_missing_shard_fails_verify() {
    let Some(mut cluster) = cache_tests::RedisCluster::start() else { return };
    seed_cluster(&cluster, 3000);
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nthreads = 2\n",
        cluster.nodes()[0].url()
    ));
    let id =
        env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]).json()["id"].as_str().unwrap().to_owned();
    env.run(BACKUP, &["verify", &id]).expect_code(0);
    // Every method works shard by shard, and each round trip is exact.
    let primaries: Vec<&RedisServer> = cluster.nodes().iter().collect();
    let before = snapshot(&primaries);
    for (method, content) in [("replication", "redis-rdb"), ("logical", "redis-logical")] {
        env.write_config(&format!(
            "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nthreads = 2\nredis_method = \"{method}\"\n",
            cluster.nodes()[0].url()
        ));
        let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
        out.expect_code(0);
        let created = out.json();
        assert_eq!(created["sources"][0]["method"], method, "{}", out.dump());
        let shards: Vec<&Value> =
            created["files"].as_array().unwrap().iter().filter(|f| f["node"].is_string()).collect();
        assert!(shards.len() == 3 && shards.iter().all(|f| f["content"] == content), "{}", out.dump());
        for primary in &primaries {
            let _: () = redis::cmd("FLUSHALL").query(&mut primary.connection()).unwrap();
        }
        env.run(BACKUP, &["restore", "--yes"]).expect_code(0);
        assert_same(&before, &snapshot(&primaries), method);
    }
    // A manifest without one of its shards fails verification, naming it.
    let (path, mut manifest) = manifest_of(&env, &id);
    let lost = format!("127.0.0.1:{}", cluster.nodes()[1].port());
    manifest["files"].as_array_mut().unwrap().retain(|f| f["node"] != lost.as_str());
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = env.run(BACKUP, &["verify", &id]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("FAILED")
            && out.stdout.contains(&format!("shard {lost}"))
            && out.stdout.contains("is missing from the backup")
            && out.stdout.contains("5462 of 16384 slots are in no shard file (5461-10922)"),
        "{}",
        out.dump()
    );
    // Without its slot layout either, the slots still give it away.
    manifest["sources"][0]["shards"].as_array_mut().unwrap().retain(|s| s["node"] != lost.as_str());
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = env.run(BACKUP, &["verify", &id]);
    out.expect_code(1);
    assert!(out.stdout.contains("(5461-10922)"), "{}", out.dump());
    let out = env.run(BACKUP, &["restore", &id, "--yes"]);
    out.expect_code(1);
    assert!(out.stderr.contains("failed verification, so nothing was restored"), "{}", out.dump());

    // A primary that is down: the backup is partial, says so, and records it.
    cluster.kill_primary(1);
    let out = env.run(BACKUP, &["create", "--only", "redis"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("PARTIAL") && out.stdout.contains(&format!("redis/main shard {lost}")),
        "{}",
        out.dump()
    );
    let list = env.run(BACKUP, &["list", "--format", "json"]).json();
    let newest = list["backups"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["backups"][0]["failed"], serde_json::json!([format!("redis/main shard {lost}")]), "{list:#}");
    let (_, manifest) = manifest_of(&env, &newest);
    assert_eq!(
        (manifest["failed"][0]["target"].as_str(), manifest["failed"][0]["node"].as_str()),
        (Some("main"), Some(lost.as_str())),
        "{manifest:#}"
    );
    assert_eq!(manifest["files"].as_array().unwrap().iter().filter(|f| f["node"].is_string()).count(), 2);
    let out = env.run(BACKUP, &["verify", &newest]);
    out.expect_code(1);
    assert!(
        out.stdout.contains(&format!("shard {lost}")) && out.stdout.contains("failed at backup time"),
        "{}",
        out.dump()
    );
    let json = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    json.expect_code(1);
    assert_eq!(json.json()["outcome"], "partial");
}

/// Where each key of `servers` lives: key → port.
fn placement(servers: &[&RedisServer]) -> std::collections::BTreeMap<String, u16> {
    servers.iter().flat_map(|s| s.keys().into_iter().map(|k| (k, s.port()))).collect()
}

/// The dump files in `server`'s directory (`dump.rdb`, the old ones kept, anything staged), by
/// name, with their bytes.
fn dump_files(server: &RedisServer) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(server.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dump")))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// A key of `cluster` that lands on the primary `port`.
fn key_on(cluster: &cache_tests::RedisCluster, port: u16, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| cluster.node_for_slot(cache_core::keyspace::key_slot(k.as_bytes())).port() == port)
        .unwrap()
}

fn cluster_config(url: &str) -> String {
    format!("[[redis]]\nname = \"main\"\nurl = \"{url}\"\n[backup]\nthreads = 2\n")
}

#[test]
fn replace_dump_puts_each_shard_on_its_primary_and_a_restart_loads_it() {
    // Redis's defaults: DEBUG is refused, so each node loads its new dump when restarted, and
    // save points are set, so a shutdown would save what is in memory.
    let Some(mut cluster) = cache_tests::RedisCluster::start_primaries_with(3, "enable-debug-command no\nsave 3600 1")
    else {
        return;
    };
    seed_cluster(&cluster, 4000);
    let primaries: Vec<&RedisServer> = cluster.nodes().iter().collect();
    let before = snapshot(&primaries);
    let placed = placement(&primaries);
    assert_eq!(before.len(), 4000);
    assert!(before.values().filter(|(_, at)| *at > 0).count() > 1000, "some keys have a TTL");
    let env = TestEnv::new();
    for (i, node) in primaries.iter().enumerate() {
        env.watch_log(&format!("primary-{i}"), node.dir().join("redis.log"));
    }
    env.write_config(&cluster_config(&primaries[1].url()));
    env.run(BACKUP, &["create", "--only", "redis"]).expect_code(0);

    // Every primary loses everything, and saves that: no dump file on disk holds the data.
    let mut written_after = Vec::new();
    for node in &primaries {
        let key = key_on(&cluster, node.port(), "written-after");
        let mut conn = node.connection();
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
        let _: () = redis::cmd("SET").arg(&key).arg("1").query(&mut conn).unwrap();
        let _: () = redis::cmd("SAVE").query(&mut conn).unwrap();
        written_after.push(key);
    }
    written_after.sort();
    let saved: Vec<_> = primaries.iter().map(|n| dump_files(n)).collect();
    assert!(saved.iter().all(|files| files.len() == 1 && files.contains_key("dump.rdb")), "{:?}", saved[0].keys());

    // A dry run checks everything and writes nothing.
    let dry = env.run(BACKUP, &["restore", "--replace-dump", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    let restored = dry.json()["restored"].to_string();
    assert_eq!(restored.matches("would put").count(), 3, "{}", dry.dump());
    assert_eq!(primaries.iter().map(|n| dump_files(n)).collect::<Vec<_>>(), saved);

    let out = env.run(BACKUP, &["restore", "--replace-dump", "--yes"]);
    out.expect_code(1);
    for node in &primaries {
        let action = format!(
            "restart redis-server on 127.0.0.1:{} (its dump is {})",
            node.port(),
            node.dir().join("dump.rdb").display()
        );
        assert!(out.stdout.contains(&action), "{action}\n{}", out.dump());
    }
    // Nothing is loaded before the restarts; each old dump is kept beside the new one.
    assert_eq!(cluster.keys(), written_after);
    for (node, saved) in primaries.iter().zip(&saved) {
        let files = dump_files(node);
        let kept: Vec<&Vec<u8>> =
            files.iter().filter(|(n, _)| n.starts_with("dump.rdb.before-restore-")).map(|f| f.1).collect();
        assert_eq!(kept, [&saved["dump.rdb"]], "{:?}", files.keys());
        assert_eq!(files.len(), 2, "{:?}", files.keys());
        assert_ne!(files["dump.rdb"], saved["dump.rdb"]);
    }
    let record = std::fs::read_to_string(env.state_dir().join("backup/restores.jsonl")).unwrap();
    assert!(record.contains("\"actions\"") && record.contains("restart redis-server on"), "{record}");

    // Until the restarts, no save writes the old data over a new dump: not even a plain
    // SHUTDOWN, which saves when save points are set.
    for node in &primaries {
        let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("save").query(&mut node.connection()).unwrap();
        assert_eq!(save[1], "", "127.0.0.1:{}: saves are off until the restart", node.port());
        let _ = redis::cmd("SHUTDOWN").query::<()>(&mut node.connection());
    }
    // Each node restarted from its own directory loads its shard: every key, value and expiry
    // time is back, on the primary it was on, and the cluster is whole.
    drop(primaries);
    cluster.restart();
    let primaries: Vec<&RedisServer> = cluster.nodes().iter().collect();
    assert_same(&before, &snapshot(&primaries), "replace-dump, then restart");
    assert_eq!(placement(&primaries), placed, "a key is on another primary");
    for node in &primaries {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut node.connection()).unwrap();
        assert!(info.contains("cluster_state:ok"), "{info}");
    }
}

#[test]
fn replace_dump_refuses_a_cluster_of_another_shape_and_changes_no_file() {
    let Some(cluster) = cache_tests::RedisCluster::start_with_replicas() else { return };
    seed_cluster(&cluster, 3000);
    let primaries: Vec<&RedisServer> = cluster.nodes().iter().collect();
    let env = TestEnv::new();
    env.write_config(&cluster_config(&primaries[0].url()));
    env.run(BACKUP, &["create", "--only", "redis"]).expect_code(0);
    let before = snapshot(&primaries);
    let every_node: Vec<&RedisServer> = cluster.nodes().iter().chain(cluster.replicas()).collect();
    let files = |nodes: &[&RedisServer]| nodes.iter().map(|n| dump_files(n)).collect::<Vec<_>>();
    let untouched = files(&every_node);
    assert!(untouched[..3].iter().all(|f| f.contains_key("dump.rdb")), "the backup's BGSAVE wrote each primary's dump");
    let instead = "restore key by key instead (without --replace-dump)";

    // The same shape, but with replicas: they would keep the old data.
    let out = env.run(BACKUP, &["restore", "--replace-dump", "--yes"]);
    out.expect_code(1);
    let replica = format!("127.0.0.1:{}", cluster.replicas()[1].port());
    assert!(out.stderr.contains("needs primaries without replicas") && out.stderr.contains(&replica), "{}", out.dump());
    assert!(out.stderr.contains(instead), "{}", out.dump());

    // Slot 5460 moves from the first primary to the second: three primaries, other slots.
    let ids: Vec<String> =
        primaries.iter().map(|p| redis::cmd("CLUSTER").arg("MYID").query(&mut p.connection()).unwrap()).collect();
    let mut first = primaries[0].connection();
    let in_slot: Vec<String> =
        redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(5460).arg(1000).query(&mut first).unwrap();
    if !in_slot.is_empty() {
        let _: () = redis::cmd("DEL").arg(&in_slot).query(&mut first).unwrap();
    }
    for primary in &primaries {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(5460)
            .arg("NODE")
            .arg(&ids[1])
            .query(&mut primary.connection())
            .unwrap();
    }
    let out = env.run(BACKUP, &["restore", "--replace-dump", "--yes"]);
    out.expect_code(1);
    let shard = format!(
        "shard {}… (127.0.0.1:{} when backed up) slots 0-5460 match no primary",
        &ids[0][..8],
        primaries[0].port()
    );
    assert!(out.stderr.contains(&shard), "{shard}\n{}", out.dump());
    assert!(
        out.stderr.contains(&format!("primary 127.0.0.1:{} slots 5460-10922 match no shard", primaries[1].port())),
        "{}",
        out.dump()
    );
    assert!(out.stderr.contains(instead), "{}", out.dump());

    // Four primaries.
    let Some(four) = cache_tests::RedisCluster::start_primaries(4) else { return };
    env.write_config(&cluster_config(&four.nodes()[3].url()));
    let out = env.run(BACKUP, &["restore", "--replace-dump", "--yes"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("backup has 3 shards, the cluster 4 primaries") && out.stderr.contains(instead),
        "{}",
        out.dump()
    );

    // No dump file was written, moved or kept anywhere, and no key changed.
    assert_eq!(files(&every_node), untouched);
    assert!(four.nodes().iter().all(|n| dump_files(n).is_empty()));
    let mut expected = before;
    expected.retain(|k, _| !in_slot.contains(k));
    assert_same(&expected, &snapshot(&primaries), "after the refusals");
}

#[test]
fn a_three_primary_backup_restores_key_by_key_into_four_primaries_and_by_dump_into_three() {
    let Some(three) = cache_tests::RedisCluster::start_primaries_with(3, "save 3600 1") else { return };
    seed_cluster(&three, 4000);
    let before = snapshot(&three.nodes().iter().collect::<Vec<_>>());
    let env = TestEnv::new();
    env.write_config(&cluster_config(&three.nodes()[0].url()));
    let id =
        env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]).json()["id"].as_str().unwrap().to_owned();
    let Some(four) = cache_tests::RedisCluster::start_primaries(4) else { return };
    assert_eq!(four.slots(), [(0, 4095), (4096, 8191), (8192, 12287), (12288, 16383)]);
    env.write_config(&cluster_config(&four.nodes()[2].url()));
    let out = env.run(BACKUP, &["restore", &id, "--yes", "--format", "json"]);
    out.expect_code(0);
    let restored = out.json()["restored"].to_string();
    assert!(restored.contains("4000 keys restored") && restored.contains("from 3 cluster shards"), "{}", out.dump());
    let primaries: Vec<&RedisServer> = four.nodes().iter().collect();
    assert_same(&before, &snapshot(&primaries), "3 primaries → 4");
    for (primary, (first, last)) in primaries.iter().zip(four.slots()) {
        let keys = primary.keys();
        assert!(keys.len() > 500, "127.0.0.1:{} holds {} keys", primary.port(), keys.len());
        for key in keys {
            let slot = cache_core::keyspace::key_slot(key.as_bytes());
            assert!((*first..=*last).contains(&slot), "`{key}` (slot {slot}) is on 127.0.0.1:{}", primary.port());
        }
    }

    // Back into the three primaries by dump: where DEBUG RELOAD is allowed (the kit's servers
    // allow it), each primary loads its shard at once, and no restart is needed.
    let primaries: Vec<&RedisServer> = three.nodes().iter().collect();
    let placed = placement(&primaries);
    for primary in &primaries {
        let mut conn = primary.connection();
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
        let _: () = redis::cmd("SAVE").query(&mut conn).unwrap();
    }
    env.write_config(&cluster_config(&primaries[2].url()));
    let out = env.run(BACKUP, &["restore", &id, "--replace-dump", "--yes", "--format", "json"]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["restored"].to_string().matches("replaced and reloaded").count(), 3, "{}", out.dump());
    assert_eq!(report["actions"], serde_json::json!([]), "{}", out.dump());
    assert_same(&before, &snapshot(&primaries), "replace-dump with DEBUG RELOAD");
    assert_eq!(placement(&primaries), placed);
    // Saves were off only while the dumps changed places.
    for primary in &primaries {
        let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("save").query(&mut primary.connection()).unwrap();
        assert_eq!(save[1], "3600 1");
    }
}

#[test]
fn keys_the_target_refuses_are_counted_and_reported_one_line_per_kind() {
    let Some(source) = RedisServer::start() else { return };
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.cmd("SET").arg(format!("big:{i}")).arg(vec![b'x'; 2048]).ignore();
    }
    pipe.query::<()>(&mut source.connection()).unwrap();
    let env = TestEnv::new();
    env.write_config(&cluster_config(&source.url()));
    env.run(BACKUP, &["create", "--only", "redis"]).expect_code(0);
    // 6 MB of values for a server that takes 4 MB and evicts nothing: it refuses the rest.
    let Some(small) = RedisServer::start_with("maxmemory 4mb\nmaxmemory-policy noeviction") else { return };
    env.write_config(&cluster_config(&small.url()));
    let out = env.run(BACKUP, &["restore", "--yes", "--format", "json"]);
    out.expect_code(1);
    let report = out.json();
    let lines: Vec<&str> = report["restored"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["skipped"].as_array().unwrap())
        .map(|l| l.as_str().unwrap())
        .collect();
    let count = |pattern: &str| {
        lines.iter().find_map(|l| regex::Regex::new(pattern).unwrap().captures(l)).map(|c| c[1].parse::<u64>().unwrap())
    };
    let restored = count(r"(\d+) keys restored").unwrap_or_else(|| panic!("{}", out.dump()));
    let refused =
        count(r"(\d+) keys not restored: the target refused them").unwrap_or_else(|| panic!("{}", out.dump()));
    assert!(refused > 0 && restored + refused == 3000, "{restored} + {refused}\n{}", out.dump());
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut small.connection()).unwrap();
    assert_eq!(dbsize, restored);
    // One line for all the refusals of one kind, with their count and one example.
    let oom: Vec<&&str> = lines.iter().filter(|l| l.contains("OOM command not allowed")).collect();
    assert_eq!(oom.len(), 1, "{}", out.dump());
    assert!(oom[0].contains(&format!("{refused}× OOM")) && oom[0].contains("(RESTORE `big:"), "{}", oom[0]);
    assert!(lines.iter().all(|l| l.chars().count() < 400), "{}", out.dump());
    let text = env.run(BACKUP, &["restore", "--yes"]);
    text.expect_code(1);
    assert!(text.stdout.lines().all(|l| l.chars().count() < 400), "{}", text.dump());
}

#[test]
fn entries_that_are_not_backups_are_skipped_by_every_command() {
    let Some(redis) = RedisServer::start() else { return };
    seed_redis(&redis);
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    let id = env.run(BACKUP, &["create", "--format", "json"]).json()["id"].as_str().unwrap().to_owned();
    let backups = env.state_dir().join("backups");
    // A filesystem's lost+found, a directory without a manifest, a stray file, and a backup
    // written by a newer toolkit.
    std::fs::create_dir(backups.join("lost+found")).unwrap();
    std::fs::create_dir(backups.join("20990101T000000Z")).unwrap();
    std::fs::write(backups.join("notes.txt"), "x").unwrap();
    let newer = backups.join("20990102T000000Z");
    std::fs::create_dir(&newer).unwrap();
    let (_, mut manifest) = manifest_of(&env, &id);
    manifest["schema_version"] = 99.into();
    manifest["created_at"] = "2099-01-02T00:00:00Z".into();
    std::fs::write(newer.join("manifest.json"), manifest.to_string()).unwrap();
    let list = env.run(BACKUP, &["list", "--format", "json"]);
    list.expect_code(0);
    let ids: Vec<String> =
        list.json()["backups"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, std::slice::from_ref(&id), "{}", list.dump());
    env.run(BACKUP, &["verify"]).expect_code(0);
    let restore = env.run(BACKUP, &["restore", "latest", "--dry-run"]);
    restore.expect_code(0);
    assert!(restore.stdout.contains(&id), "{}", restore.dump());
    env.run(BACKUP, &["prune", "--dry-run"]).expect_code(0);
    // Nothing that is not a backup is touched.
    for stray in ["lost+found", "20990101T000000Z", "notes.txt", "20990102T000000Z"] {
        assert!(backups.join(stray).exists(), "{stray} was removed");
    }
}
