//! Disaster recovery an operator can bet on (issue 18): restores by tier, honest partial
//! backups, retention run by `create`, `--replace-dump` under a server running as another user,
//! the drill, all against real redis-server and PostgreSQL processes.

use cache_tests::{PgServer, RedisServer, TestEnv};
use serde_json::Value;

use crate::BACKUP;

const TABLE: &str = "CREATE TABLE cache_entries (key text PRIMARY KEY, value jsonb NOT NULL, project_name text NOT NULL DEFAULT 'default',
      category text, access_count integer NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(),
      accessed_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz, metadata jsonb NOT NULL DEFAULT '{}');
    INSERT INTO cache_entries (key, value, category, expires_at)
      SELECT 'k' || i, jsonb_build_object('n', i), 'c' || (i % 4), now() + interval '1 hour' * i
        FROM generate_series(1, 300) i;";

/// 2,000 strings, a tenth with a TTL.
fn seed(redis: &RedisServer, n: usize) {
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("app:{i}")).arg(format!("value-{i}")).ignore();
        if i % 10 == 0 {
            pipe.cmd("PEXPIRE").arg(format!("app:{i}")).arg(3_600_000 + i).ignore();
        }
    }
    pipe.query::<()>(&mut conn).unwrap();
}

fn config(redis_url: &str, pg_url: &str) -> String {
    format!(
        "[[redis]]\nname = \"main\"\nurl = \"{redis_url}\"\n[[postgres]]\nname = \"main\"\nurl = \"{pg_url}\"\n\
         [backup]\nthreads = 2\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_by_tier_needs_no_table_mode_and_reports_no_unselected_tier_as_skipped() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    let pg_url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(TABLE).await.unwrap();
    seed(&redis, 2000);
    let digest = redis.digest();
    let env = TestEnv::new();
    env.write_config(&config(&redis.url(), &pg_url));
    env.run(BACKUP, &["create", "--format", "json"]).expect_code(0);
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.connection()).unwrap();
    pg.client("app").await.batch_execute("DELETE FROM cache_entries WHERE key = 'k1'").await.unwrap();
    for tier in ["redis", "redis:main"] {
        let out = env.run(BACKUP, &["restore", "--tier", tier, "--yes", "--format", "json"]);
        out.expect_code(0);
        let report = out.json();
        assert_eq!(report["skipped"], Value::Array(vec![]), "{}", out.dump());
        assert!(report["restored"].to_string().contains("redis/main: 2000 keys restored"), "{}", out.dump());
        assert!(!report["restored"].to_string().contains("postgres"), "{}", out.dump());
        assert_eq!(redis.digest(), digest);
        // The text says what was not selected without calling it skipped, and is no partial.
        let out = env.run(BACKUP, &["restore", "--tier", tier, "--yes"]);
        out.expect_code(0);
        assert!(!out.stdout.contains("skipped") && !out.stdout.contains("PARTIAL"), "{}", out.dump());
    }
    // The table was left alone.
    let rows: i64 = pg.client("app").await.query_one("SELECT count(*) FROM cache_entries", &[]).await.unwrap().get(0);
    assert_eq!(rows, 299);
    // On a host without the table's target, the keys come back without a table mode, and the
    // table that had nowhere to go makes the restore partial, named.
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    let out = env.run(BACKUP, &["restore", "--yes", "--format", "json"]);
    out.expect_code(1);
    assert_eq!(
        out.json()["skipped"],
        serde_json::json!(["postgres/main: no such target selected in the configuration"]),
        "{}",
        out.dump()
    );
    assert_eq!(redis.digest(), digest);
    env.write_config(&config(&redis.url(), &pg_url));
    // And the table alone needs its mode.
    let out = env.run(BACKUP, &["restore", "--tier", "postgres", "--yes"]);
    out.expect_code(2);
    assert!(out.stderr.contains("--postgres truncate"), "{}", out.dump());
    env.run(BACKUP, &["restore", "--tier", "postgres", "--postgres", "merge", "--yes"]).expect_code(0);
    let rows: i64 = pg.client("app").await.query_one("SELECT count(*) FROM cache_entries", &[]).await.unwrap().get(0);
    assert_eq!(rows, 300);
}

#[test]
fn a_server_that_never_saved_has_no_dump_file_yet_and_a_readable_one_is_copied() {
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis, 100);
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    let dump = redis.dir().join("dump.rdb");
    assert!(!dump.exists());
    let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    out.expect_code(0);
    let notes = out.json()["notes"].to_string();
    assert!(notes.contains(&format!("no dump file yet at `{}`", dump.display())), "{}", out.dump());
    assert!(!notes.contains("not readable"), "{}", out.dump());
    assert_eq!(out.json()["sources"][0]["method"], "replication");
    // Once the server has saved, its dump file is read (after a BGSAVE), with no such note.
    let _: () = redis::cmd("SAVE").query(&mut redis.connection()).unwrap();
    let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["sources"][0]["method"], "bgsave", "{}", out.dump());
    assert!(!out.json()["notes"].to_string().contains("dump file"), "{}", out.dump());
}

fn manifest(env: &TestEnv, id: &str) -> Value {
    let path = env.state_dir().join("backups").join(id).join("manifest.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_missing_a_configured_source_is_partial_everywhere_and_never_restored_as_latest() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(mut pg) = PgServer::start() else { return };
    let pg_url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(TABLE).await.unwrap();
    seed(&redis, 2000);
    let env = TestEnv::new();
    env.write_config(&config(&redis.url(), &pg_url));
    let complete = env.run(BACKUP, &["create", "--format", "json"]);
    complete.expect_code(0);
    let complete_id = complete.json()["id"].as_str().unwrap().to_owned();
    let taken = &manifest(&env, &complete_id)["configured"];
    for (tier, target) in [("redis", "main"), ("postgres", "main"), ("files", "config"), ("files", "state")] {
        assert!(
            taken.as_array().unwrap().iter().any(|t| t["tier"] == tier && t["target"] == target && t["result"] == "ok"),
            "{tier}/{target} in {taken:#}"
        );
    }
    // PostgreSQL goes down; the keys change.
    pg.stop();
    let _: () = redis::cmd("SET").arg("app:new").arg("1").query(&mut redis.connection()).unwrap();
    let digest = redis.digest();
    let out = env.run(BACKUP, &["create"]);
    out.expect_code(1);
    assert!(out.stdout.contains("PARTIAL") && out.stdout.contains("not backed up: postgres/main"), "{}", out.dump());
    assert!(!out.stdout.contains("complete"), "{}", out.dump());
    let out = env.run(BACKUP, &["create", "--format", "json"]);
    out.expect_code(1);
    assert_eq!(out.json()["outcome"], "partial");
    let partial_id = out.json()["id"].as_str().unwrap().to_owned();
    let manifest = manifest(&env, &partial_id);
    let pg_taken = manifest["configured"].as_array().unwrap().iter().find(|t| t["tier"] == "postgres").unwrap().clone();
    assert_eq!(pg_taken["result"], "failed", "{manifest:#}");
    assert!(pg_taken["error"].as_str().unwrap().contains("unreachable"), "{manifest:#}");
    assert!(manifest["configured"].as_array().unwrap().iter().any(|t| t["tier"] == "redis" && t["result"] == "ok"));
    // `list` says so, in text and JSON.
    let list = env.run(BACKUP, &["list", "--format", "json"]).json();
    let outcome =
        |id: &str| list["backups"].as_array().unwrap().iter().find(|b| b["id"] == id).unwrap()["outcome"].clone();
    assert_eq!((outcome(&partial_id), outcome(&complete_id)), ("partial".into(), "complete".into()), "{list:#}");
    let text = env.run(BACKUP, &["list"]);
    let line = text.stdout.lines().find(|l| l.contains(&partial_id)).unwrap().to_owned();
    assert!(line.contains("PARTIAL: not postgres/main"), "{}", text.dump());

    // `restore latest` passes over the partial backups for the newest complete one, and says so.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.connection()).unwrap();
    let out = env.run(
        BACKUP,
        &["restore", "latest", "--tier", "redis:main", "--tier", "postgres", "--dry-run", "--format", "json"],
    );
    out.expect_code(0);
    assert_eq!(out.json()["backup"], complete_id.as_str(), "{}", out.dump());
    assert!(
        out.json()["notes"].to_string().contains(&format!("passed over partial backup {partial_id}")),
        "{}",
        out.dump()
    );
    // Named by its id, a partial backup is refused without --allow-partial, nothing written.
    let out = env.run(BACKUP, &["restore", &partial_id, "--postgres", "merge", "--yes"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("is partial (not backed up: postgres/main)") && out.stderr.contains("--allow-partial"),
        "{}",
        out.dump()
    );
    assert!(redis.keys().is_empty());
    // With it, what the backup holds comes back and what it lacks is reported: partial.
    let out =
        env.run(BACKUP, &["restore", "latest", "--allow-partial", "--postgres", "merge", "--yes", "--format", "json"]);
    out.expect_code(1);
    assert_eq!(out.json()["backup"], partial_id.as_str());
    assert!(out.json()["skipped"].to_string().contains("postgres/main: not in backup"), "{}", out.dump());
    assert_eq!(redis.digest(), digest);
    // The keys alone: the partial backup lacks nothing of them, so it is the latest.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.connection()).unwrap();
    let out = env.run(BACKUP, &["restore", "latest", "--tier", "redis", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["backup"], partial_id.as_str(), "{}", out.dump());
    assert_eq!(redis.digest(), digest);

    // Every target down: exit 4, and still no "complete".
    env.write_config(&format!("[[postgres]]\nname = \"main\"\nurl = \"{pg_url}\"\n"));
    let out = env.run(BACKUP, &["create"]);
    out.expect_code(4);
    assert!(out.stdout.contains("PARTIAL") && !out.stdout.contains("complete"), "{}", out.dump());
}

#[test]
fn a_target_cache_health_disabled_is_a_source_the_backup_lacks() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(spare) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[[redis]]\nname = \"spare\"\nurl = \"{}\"\n",
        redis.url(),
        spare.url()
    ));
    std::fs::create_dir_all(env.state_dir().join("health")).unwrap();
    std::fs::write(
        env.state_dir().join("health/disabled.json"),
        r#"{"schema_version":1,"targets":{"redis/spare":{"until":"2099-01-01T00:00:00Z","reason":"connection refused"}}}"#,
    )
    .unwrap();
    let out = env.run(BACKUP, &["create", "--format", "json"]);
    out.expect_code(1);
    assert_eq!(out.json()["outcome"], "partial", "{}", out.dump());
    let manifest = manifest(&env, out.json()["id"].as_str().unwrap());
    let spare = manifest["configured"].as_array().unwrap().iter().find(|t| t["target"] == "spare").unwrap().clone();
    assert_eq!(spare["result"], "failed");
    assert!(spare["error"].as_str().unwrap().contains("disabled by cache-health until 2099-01-01"), "{manifest:#}");
    // Only the targets the run selects count.
    let out = env.run(BACKUP, &["create", "--tier", "redis:main", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["outcome"], "complete", "{}", out.dump());
}

/// Moves backup `id` back in time by `days` (its manifest's `created_at`, which retention reads).
fn age(env: &TestEnv, id: &str, days: i64) {
    let path = env.state_dir().join("backups").join(id).join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let at = chrono::Utc::now() - chrono::Duration::days(days);
    manifest["created_at"] = Value::String(at.to_rfc3339());
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

fn backup_ids(env: &TestEnv) -> Vec<String> {
    let list = env.run(BACKUP, &["list", "--format", "json"]).json();
    list["backups"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn create_verifies_then_applies_retention_and_never_removes_a_targets_last_copy() {
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis, 500);
    let env = TestEnv::new();
    let settings = "[backup]\nkeep_last = 30\nkeep_daily = 0\nkeep_weekly = 0\nmax_age = \"90days\"\n";
    let redis_target = format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url());
    // 16 backups, the first also of a second Redis target no later backup holds.
    let Some(other) = RedisServer::start() else { return };
    env.write_config(&format!(
        "{redis_target}[[redis]]\nname = \"other\"\nurl = \"{}\"\n{settings}prune_after_create = false\n",
        other.url()
    ));
    let mut ids = vec![env.run(BACKUP, &["create", "--format", "json"]).json()["id"].as_str().unwrap().to_owned()];
    env.write_config(&format!("{redis_target}{settings}prune_after_create = false\n"));
    for _ in 1..16 {
        let out = env.run(BACKUP, &["create", "--format", "json"]);
        out.expect_code(0);
        assert_eq!(out.json()["verified"], Value::Null, "{}", out.dump());
        ids.push(out.json()["id"].as_str().unwrap().to_owned());
    }
    // Three are past max_age: the one of `other`, and two more.
    for id in &ids[..3] {
        age(&env, id, 100);
    }
    // With prune_after_create off, a create adds one: 17.
    let out = env.run(BACKUP, &["create", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(backup_ids(&env).len(), 17);
    // By default, create verifies its backup and prunes: the two past max_age go, and the
    // only backup of redis/other stays, however old.
    env.write_config(&format!("{redis_target}{settings}"));
    let out = env.run(BACKUP, &["create", "--format", "json"]);
    out.expect_code(0);
    let created = out.json();
    assert_eq!(created["verified"], true, "{}", out.dump());
    let mut removed: Vec<String> =
        created["pruned"]["removed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    removed.sort();
    assert_eq!(removed, ids[1..3].to_vec(), "{}", out.dump());
    let left = backup_ids(&env);
    assert_eq!(left.len(), 16);
    assert!(left.contains(&ids[0]) && left.contains(&created["id"].as_str().unwrap().to_owned()));
    let verified: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("backup/verified.json")).unwrap()).unwrap();
    assert_eq!(verified["backups"][created["id"].as_str().unwrap()]["ok"], true);
    // The dry run says why the old one stays; the text output of create names what it pruned.
    let dry = env.run(BACKUP, &["prune", "--dry-run"]);
    assert!(
        dry.stdout.contains(&format!("keep {}: the only backup of redis/other is never deleted", ids[0])),
        "{}",
        dry.dump()
    );
    age(&env, &ids[3], 100);
    let out = env.run(BACKUP, &["create"]);
    out.expect_code(0);
    assert!(out.stdout.contains(&format!("pruned: {} (older than max-age 90days)", ids[3])), "{}", out.dump());
    assert!(out.stdout.contains("complete, verified"), "{}", out.dump());

    // A partial backup applies no retention: nothing is removed while a source is failing.
    age(&env, &ids[4], 100);
    env.write_config(&format!("{redis_target}[[redis]]\nname = \"down\"\nurl = \"redis://127.0.0.1:1/0\"\n{settings}"));
    let before = backup_ids(&env).len();
    let out = env.run(BACKUP, &["create", "--format", "json"]);
    out.expect_code(1);
    assert_eq!(out.json()["pruned"], Value::Null, "{}", out.dump());
    assert_eq!(backup_ids(&env).len(), before + 1);
}

/// Every key's value and absolute expiry, for servers that refuse `DEBUG DIGEST` (strings only,
/// as [`seed`] writes).
fn strings(redis: &RedisServer) -> std::collections::BTreeMap<String, (String, i64)> {
    let mut conn = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("GET").arg(key).cmd("PEXPIRETIME").arg(key);
    }
    let replies: Vec<redis::Value> = pipe.query(&mut conn).unwrap();
    keys.into_iter()
        .zip(replies.chunks(2))
        .map(|(k, r)| {
            let value: String = redis::from_redis_value(r[0].clone()).unwrap();
            let at: i64 = redis::from_redis_value(r[1].clone()).unwrap();
            (k, (value, at))
        })
        .collect()
}

fn ownership(path: &std::path::Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn replace_dump_under_a_server_of_another_user_keeps_its_owner_and_a_restart_loads_it() {
    let Some(mut redis) = RedisServer::start_as_service("save 3600 1") else { return };
    seed(&redis, 3000);
    let data = strings(&redis);
    assert_eq!(data.len(), 3000);
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    env.run(BACKUP, &["create", "--only", "redis"]).expect_code(0);
    let mut conn = redis.connection();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let _: () = redis::cmd("SET").arg("written-after").arg("1").query(&mut conn).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut conn).unwrap();
    let dump = redis.dir().join("dump.rdb");
    std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let owned = ownership(&dump);
    if let Some((uid, gid)) = redis.owner() {
        assert_eq!((owned.0, owned.1), (uid, gid), "the kit's server runs as its own user");
    }

    // DEBUG RELOAD is refused: the new dump is in place, as the server's user would have
    // written it, and the exact restart command is printed (and recorded).
    let out = env.run(BACKUP, &["restore", "--replace-dump", "--yes"]);
    out.expect_code(1);
    assert_eq!(ownership(&dump), owned, "{}", out.dump());
    let config = redis.dir().join("redis.conf");
    let port = redis.port();
    let as_user = match redis.owner() {
        Some(_) => {
            let name = std::fs::read_to_string("/etc/passwd")
                .unwrap()
                .lines()
                .find(|l| l.split(':').nth(2) == Some(&owned.0.to_string()))
                .map(|l| l.split(':').next().unwrap().to_owned())
                .unwrap();
            format!("runuser -u {name} -- ")
        }
        None => String::new(),
    };
    let command = format!("redis-cli -p {port} shutdown nosave && {as_user}");
    assert!(out.stdout.contains("not finished") && out.stdout.contains(&command), "{command}\n{}", out.dump());
    assert!(out.stdout.contains(&format!(" {}", config.display())), "{}", out.dump());
    assert!(out.stdout.contains("DEBUG RELOAD refused"), "{}", out.dump());
    let leftovers: Vec<String> = std::fs::read_dir(redis.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let record = std::fs::read_to_string(env.state_dir().join("backup/restores.jsonl")).unwrap();
    assert!(record.contains("shutdown nosave"), "{record}");
    // The restart loads it: the data is back (and nothing written after the backup).
    assert!(redis.try_restart(), "redis-server could not load its new dump:\n{}", redis.log());
    assert_eq!(strings(&redis), data);

    // No dump file yet: the new one gets the directory's owner and its mode, without x bits.
    let Some(mut fresh) = RedisServer::start_as_service("") else { return };
    let dump = fresh.dir().join("dump.rdb");
    assert!(!dump.exists());
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", fresh.url()));
    env.run(BACKUP, &["restore", "--replace-dump", "--yes"]).expect_code(1);
    let dir = ownership(fresh.dir());
    assert_eq!(ownership(&dump), (dir.0, dir.1, dir.2 & 0o666));
    assert!(fresh.try_restart(), "redis-server could not load its new dump:\n{}", fresh.log());
    assert_eq!(strings(&fresh), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_restore_is_recorded_with_its_time_host_outcome_and_the_health_of_what_it_restored() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    let pg_url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(crate::backup::TABLE).await.unwrap();
    seed(&redis, 2_000);
    let env = TestEnv::new();
    env.write_config(&config(&redis.url(), &pg_url));
    env.run(BACKUP, &["create", "--only", "redis,postgres"]).expect_code(0);
    env.run(BACKUP, &["restore", "--postgres", "merge", "--dry-run"]).expect_code(0);
    env.run(BACKUP, &["restore", "--postgres", "truncate", "--yes"]).expect_code(0);
    let text = std::fs::read_to_string(env.state_dir().join("backup/restores.jsonl")).unwrap();
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2, "the dry run is recorded too: {text}");
    let (dry, real) = (&records[0], &records[1]);
    assert_eq!(
        (dry["kind"].as_str(), dry["outcome"].as_str(), dry["dry_run"].as_bool()),
        (Some("restore"), Some("dry_run"), Some(true))
    );
    assert_eq!(dry["checks"], serde_json::json!([]), "a dry run checks nothing it did not do");
    assert_eq!(
        (real["outcome"].as_str(), real["host"].as_str().is_some_and(|h| !h.is_empty())),
        (Some("complete"), true),
        "{real:#}"
    );
    assert!(real["at"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{real:#}");
    let checks = real["checks"].to_string();
    let keys: u64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
    assert!(
        checks.contains(&format!("redis/main: answers (1 of 1 primaries), {keys} keys after the restore")),
        "{checks}"
    );
    assert!(checks.contains("postgres/main: answers, `cache_entries` holds 500 rows after the restore"), "{checks}");
}
