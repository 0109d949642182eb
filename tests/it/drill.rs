//! `cache-backup drill`: a backup restored into scratch servers and compared with the figures
//! its manifest recorded, against real redis-server and PostgreSQL processes.

use std::path::{Path, PathBuf};

use cache_tests::{PgServer, RedisServer, TestEnv};
use serde_json::Value;

use crate::BACKUP;

const TABLE: &str = "CREATE TABLE cache_entries (key text PRIMARY KEY, value jsonb NOT NULL, expires_at timestamptz);
    INSERT INTO cache_entries (key, value, expires_at)
      SELECT 'k' || i, jsonb_build_object('n', i), now() + interval '1 hour' * i FROM generate_series(1, 300) i;";

fn seed(redis: &RedisServer) {
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..150 {
        pipe.cmd("SET").arg(format!("s:{i}")).arg(format!("value-{i}")).ignore();
        pipe.cmd("HSET").arg(format!("h:{i}")).arg("a").arg(i).arg("b").arg("x").ignore();
        pipe.cmd("RPUSH").arg(format!("l:{i}")).arg("1").arg(i).ignore();
        pipe.cmd("SADD").arg(format!("set:{i}")).arg("m").arg(i).ignore();
        pipe.cmd("ZADD").arg(format!("z:{i}")).arg(1).arg("a").arg(i).arg("b").ignore();
        if i % 2 == 0 {
            for key in [format!("s:{i}"), format!("h:{i}"), format!("set:{i}"), format!("z:{i}"), format!("l:{i}")] {
                pipe.cmd("PEXPIRE").arg(key).arg(3_600_000 + i).ignore();
            }
        }
    }
    pipe.query::<()>(&mut conn).unwrap();
}

fn config(redis_url: &str, pg_url: &str, method: &str) -> String {
    format!(
        "[[redis]]\nname = \"main\"\nurl = \"{redis_url}\"\n[[postgres]]\nname = \"main\"\nurl = \"{pg_url}\"\n\
         [backup]\nredis_method = \"{method}\"\nthreads = 2\n"
    )
}

fn backup_dir(env: &TestEnv, id: &str) -> PathBuf {
    env.state_dir().join("backups").join(id)
}

fn read_manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn write_manifest(dir: &Path, manifest: &Value) {
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
}

/// The last record of `backup/restores.jsonl`.
fn last_record(env: &TestEnv) -> Value {
    let text = std::fs::read_to_string(env.state_dir().join("backup/restores.jsonl")).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn create(env: &TestEnv) -> String {
    let out = env.run(BACKUP, &["create", "--format", "json"]);
    out.expect_code(0);
    out.json()["id"].as_str().unwrap().to_owned()
}

fn redis_figures(manifest: &Value) -> &Value {
    let source = manifest["sources"].as_array().unwrap().iter().find(|s| s["tier"] == "redis").unwrap();
    &source["figures"]["dumps"][0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_passes_on_good_rdb_and_logical_backups_and_touches_no_target() {
    let Some(pg) = PgServer::start() else { return };
    let pg_url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(TABLE).await.unwrap();
    for method in ["bgsave", "logical"] {
        let Some(redis) = RedisServer::start() else { return };
        seed(&redis);
        let env = TestEnv::new();
        env.write_config(&config(&redis.url(), &pg_url, method));
        let id = create(&env);
        let manifest = read_manifest(&backup_dir(&env, &id));
        let figures = redis_figures(&manifest);
        assert_eq!(figures["keys_after"], 750, "{manifest:#}");
        assert_eq!(figures["expiring"], 375, "{manifest:#}");
        assert_eq!(figures["sample"].as_array().unwrap().len(), 20, "{manifest:#}");
        let table = manifest["sources"].as_array().unwrap().iter().find(|s| s["tier"] == "postgres").unwrap();
        assert_eq!(table["figures"]["rows"], 300, "{manifest:#}");
        // The target changes after the backup: the drill restores the backup, not the target, and
        // leaves the target as it is.
        redis::cmd("SET").arg("after:backup").arg("1").query::<()>(&mut redis.connection()).unwrap();
        let digest = redis.digest();
        let out = env.run(BACKUP, &["drill", "latest", "--format", "json"]);
        out.expect_code(0);
        let drill = out.json();
        assert_eq!(drill["result"], "pass", "{}", out.dump());
        let compared = drill["compared"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect::<Vec<_>>();
        assert!(compared.iter().any(|c| c.contains("750 keys loaded, recorded 750")), "{method}: {}", out.dump());
        assert!(compared.iter().any(|c| c.contains("20 of 20 sampled keys")), "{method}: {}", out.dump());
        assert!(compared.iter().any(|c| c.contains("300 rows loaded, checksum")), "{method}: {}", out.dump());
        assert_eq!(redis.digest(), digest, "the drill touched the configured target");
        let record = last_record(&env);
        assert_eq!((record["kind"].as_str(), record["result"].as_str()), (Some("drill"), Some("pass")), "{record:#}");
        assert_eq!(record["backup"], id.as_str());
        assert!(record["host"].as_str().is_some_and(|h| !h.is_empty()), "{record:#}");
    }
}

/// A shard file swapped for a dump of other data, with its size and SHA-256 fixed in the
/// manifest: verification passes (the file is what the manifest says), and only the drill's
/// comparison with the recorded figures catches it.
#[tokio::test(flavor = "multi_thread")]
async fn a_drill_fails_on_a_dump_swapped_for_other_data_that_verification_passes() {
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nthreads = 2\n", redis.url()));
    let good = create(&env);
    let good_dir = backup_dir(&env, &good);
    let manifest = read_manifest(&good_dir);
    // One sampled key gets another value of its type; then a second backup holds that data.
    let sampled = redis_figures(&manifest)["sample"][0].clone();
    let key = sampled["key"].as_str().unwrap();
    let mut conn = redis.connection();
    match sampled["type"].as_str().unwrap() {
        "string" => redis::cmd("APPEND").arg(key).arg("!").query::<()>(&mut conn),
        "hash" => redis::cmd("HSET").arg(key).arg("extra").arg("1").query::<()>(&mut conn),
        "set" => redis::cmd("SADD").arg(key).arg("extra").query::<()>(&mut conn),
        "zset" => redis::cmd("ZADD").arg(key).arg(9).arg("extra").query::<()>(&mut conn),
        _ => redis::cmd("RPUSH").arg(key).arg("extra").query::<()>(&mut conn),
    }
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let other = create(&env);
    let file = "redis-main.rdb.gz";
    std::fs::copy(backup_dir(&env, &other).join(file), good_dir.join(file)).unwrap();
    let mut manifest = manifest;
    let (sha, bytes) = cache_core::archive::sha256_file(&good_dir.join(file)).unwrap();
    let entry = manifest["files"].as_array_mut().unwrap().iter_mut().find(|f| f["path"] == file).unwrap();
    entry["sha256"] = sha.into();
    entry["bytes"] = bytes.into();
    write_manifest(&good_dir, &manifest);
    env.run(BACKUP, &["verify", &good]).expect_code(0);
    let out = env.run(BACKUP, &["drill", &good]);
    out.expect_code(cache_core::exit::MISMATCH as i32);
    assert!(out.stdout.contains("FAILED"), "{}", out.dump());
    assert!(out.stdout.contains(&format!("key `{key}` has another value than the backup recorded")), "{}", out.dump());
    let record = last_record(&env);
    assert_eq!((record["kind"].as_str(), record["result"].as_str()), (Some("drill"), Some("fail")), "{record:#}");
    assert!(record["failures"].to_string().contains(key), "{record:#}");
    // The untouched second backup passes.
    env.run(BACKUP, &["drill", &other]).expect_code(0);
}

/// Figures that disagree with the data fail the drill (a logical export, and a table); a
/// backup written before figures were recorded still loads, and says what it could not compare.
#[tokio::test(flavor = "multi_thread")]
async fn a_drill_fails_on_figures_that_disagree_and_says_what_old_backups_did_not_record() {
    let Some(pg) = PgServer::start() else { return };
    let pg_url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(TABLE).await.unwrap();
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    let env = TestEnv::new();
    env.write_config(&config(&redis.url(), &pg_url, "logical"));
    let id = create(&env);
    let dir = backup_dir(&env, &id);
    let original = read_manifest(&dir);

    let mut changed = original.clone();
    for source in changed["sources"].as_array_mut().unwrap() {
        if source["tier"] == "redis" {
            source["figures"]["dumps"][0]["keys_before"] = 751.into();
            source["figures"]["dumps"][0]["keys_after"] = 751.into();
        } else {
            source["figures"]["rows_md5"] = "0".repeat(32).into();
        }
    }
    write_manifest(&dir, &changed);
    let out = env.run(BACKUP, &["drill", "--format", "json"]);
    out.expect_code(cache_core::exit::MISMATCH as i32);
    let failures = out.json()["failures"].to_string();
    assert!(failures.contains("750 keys loaded, the backup recorded 751"), "{}", out.dump());
    assert!(failures.contains("differs from the recorded 00000000"), "{}", out.dump());
    assert_eq!(last_record(&env)["result"], "fail");

    let mut old = original.clone();
    for source in old["sources"].as_array_mut().unwrap() {
        source.as_object_mut().unwrap().remove("figures");
    }
    write_manifest(&dir, &old);
    let out = env.run(BACKUP, &["drill"]);
    out.expect_code(cache_core::exit::PARTIAL as i32);
    assert!(out.stdout.contains("key count and sample not recorded in this backup"), "{}", out.dump());
    assert!(out.stdout.contains("row count and checksum not recorded in this backup"), "{}", out.dump());
    assert!(out.stdout.contains("750 keys"), "{}", out.dump());
    assert_eq!(last_record(&env)["result"], "partial");

    write_manifest(&dir, &original);
    env.run(BACKUP, &["drill", &id]).expect_code(0);
}

/// `cache-health monitor`'s default rule Backup Drill Overdue: quiet while the last passing
/// drill is younger than `backup.drill_max_age`, a warning on `backup/drill` once it is older.
#[test]
fn the_drill_alert_fires_once_the_last_passing_drill_is_older_than_drill_max_age() {
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n[backup]\nthreads = 2\ndrill_max_age = \"20days\"\n",
        redis.url()
    ));
    create(&env);
    env.run(BACKUP, &["drill", "-q"]).expect_code(0);
    let passed = chrono::DateTime::parse_from_rfc3339(last_record(&env)["at"].as_str().unwrap()).unwrap().to_utc();
    let drill_notices = |days: i64| {
        let mut cmd = env.command(crate::HEALTH, &["monitor", "--once", "--format", "json", "--tier", "redis"]);
        cmd.env("CACHE_NOW", (passed + chrono::Duration::days(days)).to_rfc3339());
        let out = env.run_command(cmd);
        let round = out.json();
        round["notices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["alert"]["rule"] == "Backup Drill Overdue")
            .map(|n| (n["alert"]["target"].as_str().unwrap().to_owned(), n["alert"]["severity"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(drill_notices(19), []);
    let fired = drill_notices(21);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0, "backup/drill");
    assert_eq!(fired[0].1, "warning");
}

/// An encrypted backup is decrypted with the identity first, then drilled as any other; without
/// the identity nothing could be checked (exit 1, naming what it needs), with another identity
/// it fails.
#[test]
fn an_encrypted_backup_is_drilled_with_its_identity() {
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    let env = TestEnv::new();
    let Some((key, recipient)) = crate::remote::age_key(&env, "backup.key") else { return };
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nthreads = 2\nencrypt_to = [\"{recipient}\"]\n",
        redis.url()
    ));
    create(&env);
    let out = env.run(BACKUP, &["drill"]);
    out.expect_code(cache_core::exit::PARTIAL as i32);
    assert!(out.stdout.contains("give the identity that decrypts it with --identity FILE"), "{}", out.dump());
    assert_eq!(last_record(&env)["result"], "partial");
    let Some((other, _)) = crate::remote::age_key(&env, "other.key") else { return };
    let out = env.run(BACKUP, &["drill", "--identity", other.to_str().unwrap()]);
    out.expect_code(cache_core::exit::MISMATCH as i32);
    assert!(out.stdout.contains("decrypting"), "{}", out.dump());
    let out = env.run(BACKUP, &["drill", "--identity", key.to_str().unwrap(), "--format", "json"]);
    out.expect_code(0);
    let drill = out.json();
    assert_eq!(drill["result"], "pass", "{}", out.dump());
    assert!(drill["compared"].to_string().contains("750 keys loaded, recorded 750"), "{}", out.dump());
    assert!(drill["compared"].to_string().contains("20 of 20 sampled keys"), "{}", out.dump());
}

/// A Redis Cluster backup: each shard file is loaded into its own scratch server and compared
/// with that shard's figures (RDB and logical); a shard whose figures disagree fails the drill,
/// naming its file.
#[test]
fn a_cluster_backup_is_drilled_shard_by_shard() {
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    crate::backup::seed_cluster(&cluster, 3000);
    let env = TestEnv::new();
    for method in ["replication", "logical"] {
        env.write_config(&format!(
            "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nthreads = 2\nredis_method = \"{method}\"\n",
            cluster.nodes()[0].url()
        ));
        let id = create(&env);
        let out = env.run(BACKUP, &["drill", &id, "--format", "json"]);
        out.expect_code(0);
        let drill = out.json();
        let compared: Vec<&str> = drill["compared"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let counts: Vec<&&str> = compared.iter().filter(|c| c.contains(" keys loaded, recorded ")).collect();
        assert_eq!(counts.len(), 3, "{method}: one count per shard: {}", out.dump());
        let dir = backup_dir(&env, &id);
        let manifest = read_manifest(&dir);
        let dumps = manifest["sources"][0]["figures"]["dumps"].as_array().unwrap();
        assert_eq!(dumps.len(), 3, "{manifest:#}");
        let total: u64 = dumps.iter().map(|d| d["keys_after"].as_u64().unwrap()).sum();
        assert_eq!(total, 3000, "{manifest:#}");
        if method == "logical" {
            let mut changed = manifest.clone();
            let shard = &mut changed["sources"][0]["figures"]["dumps"][1];
            let file = shard["file"].as_str().unwrap().to_owned();
            let keys = shard["keys_after"].as_u64().unwrap();
            shard["keys_before"] = (keys - 1).into();
            shard["keys_after"] = (keys - 1).into();
            write_manifest(&dir, &changed);
            let out = env.run(BACKUP, &["drill", &id]);
            out.expect_code(cache_core::exit::MISMATCH as i32);
            assert!(
                out.stdout.contains(&format!("`{file}`: {keys} keys loaded, the backup recorded {}", keys - 1)),
                "{}",
                out.dump()
            );
        }
    }
}

/// Keys that expire between the backup and the drill neither fail nor loosen the count: an RDB
/// is loaded keeping them (a replica expires nothing), a logical restore counts them, and a
/// sampled key among them is "expired since, not compared".
#[test]
fn keys_expiring_between_the_backup_and_the_drill_keep_the_count_exact() {
    for method in ["bgsave", "logical"] {
        let Some(redis) = RedisServer::start() else { return };
        let mut conn = redis.connection();
        let mut pipe = redis::pipe();
        for i in 0..40 {
            // The "a:" keys sort first, so the sample holds them.
            pipe.cmd("SET").arg(format!("a:{i:02}")).arg(i).arg("PX").arg(1500).ignore();
            pipe.cmd("SET").arg(format!("b:{i:02}")).arg(i).ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
        let env = TestEnv::new();
        env.write_config(&format!(
            "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nthreads = 2\nredis_method = \"{method}\"\n",
            redis.url()
        ));
        let id = create(&env);
        let manifest = read_manifest(&backup_dir(&env, &id));
        assert_eq!(redis_figures(&manifest)["keys_after"], 80, "{manifest:#}");
        std::thread::sleep(std::time::Duration::from_millis(1600));
        let out = env.run(BACKUP, &["drill", "--format", "json"]);
        out.expect_code(0);
        let compared = out.json()["compared"].to_string();
        let count = if method == "logical" { "40 keys loaded and 40 expired since" } else { "80 keys loaded" };
        assert!(compared.contains(&format!("{count}, recorded 80")), "{method}: {}", out.dump());
        assert!(compared.contains("(20 expired since, not compared)"), "{method}: {}", out.dump());
        // With one key more recorded than the backup holds, the count fails, expired keys or not.
        let dir = backup_dir(&env, &id);
        let mut changed = manifest.clone();
        changed["sources"][0]["figures"]["dumps"][0]["keys_before"] = 81.into();
        changed["sources"][0]["figures"]["dumps"][0]["keys_after"] = 81.into();
        write_manifest(&dir, &changed);
        env.run(BACKUP, &["drill"]).expect_code(cache_core::exit::MISMATCH as i32);
    }
}
