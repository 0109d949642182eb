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
