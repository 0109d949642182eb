//! `cache-cleanup` against real redis-server and PostgreSQL processes, and a Mem0 stand-in.

use std::collections::BTreeSet;
use std::time::Duration;

use cache_tests::{Mem0Server, PgServer, RedisServer, TestEnv, wait_until};
use serde_json::Value;

use crate::CLEANUP;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Prefix rules and protection used by the Redis tests. These keyspaces are tiny, so the
/// blast-radius cap is lifted to 100% here; the cap has its own tests at realistic sizes.
fn redis_config(url: &str) -> String {
    format!(
        "[[redis]]\nname = \"main\"\nurl = \"{url}\"\nmax_key_size = \"1 MiB\"\n\
         prefixes = [{{ prefix = \"app:search:\", ttl = \"30m\" }}, {{ prefix = \"app:embedding:\", ttl = \"2h\" }}, {{ prefix = \"app:session:\" }}]\n\
         protected = [\"app:session:*\"]\nnamespace = \"app:\"\n\
         [cleanup]\nbatch_size = 7\nmax_delete_share = \"100%\"\n"
    )
}

/// A keyspace with one small class of keys per rule, so each mode's selection is exact.
fn seed(redis: &RedisServer) {
    let ttl = 3_600_000;
    for i in 0..3 {
        redis.set_aged(&format!("app:search:fresh-{i}"), b"v", ttl, 0);
        redis.set_aged(&format!("app:search:nottl-{i}"), b"v", 0, 0);
        redis.set_aged(&format!("app:embedding:idle2d-{i}"), b"v", ttl, 2 * DAY);
        redis.set_aged(&format!("app:embedding:idle8d-{i}"), b"v", ttl, 8 * DAY);
        redis.set_aged(&format!("app:search:idle10h-{i}"), b"v", ttl, 10 * HOUR);
        redis.set_aged(&format!("app:orphan-{i}"), b"v", ttl, 0);
        // Another application's keys in the same database: idle, TTL-less, under no prefix.
        redis.set_aged(&format!("zombie:{i}"), b"v", 0, 30 * DAY);
        redis.set_aged(&format!("app:session:old-{i}"), b"v", 0, 30 * DAY);
    }
    redis.set_aged("app:search:big", &vec![b'x'; 2 << 20], ttl, 0);
    redis.set_aged("zombie:big", &vec![b'x'; 2 << 20], 0, 30 * DAY);
}

fn class_keys(redis: &RedisServer, class: &str) -> usize {
    redis.keys().iter().filter(|k| k.contains(class)).count()
}

#[test]
fn each_mode_removes_exactly_its_classes_and_never_protected_keys() {
    // (mode, classes removed)
    let cases: &[(&str, &[&str])] = &[
        ("light", &[]),
        ("moderate", &["idle8d"]),
        ("targeted", &["idle8d", "idle2d", "app:search:big"]),
        ("aggressive", &["idle8d", "idle2d", "app:search:big", "idle10h", "orphan"]),
    ];
    let classes =
        ["fresh", "nottl", "idle2d", "idle8d", "idle10h", "orphan", "session:old", "app:search:big", "zombie:"];
    for (mode, removed) in cases {
        let Some(redis) = RedisServer::start() else { return };
        seed(&redis);
        let env = TestEnv::new();
        env.watch_log("redis", redis.dir().join("redis.log"));
        env.write_config(&redis_config(&redis.url()));
        let out = env.run(CLEANUP, &[mode, "--yes", "--tier", "redis", "--format", "json"]);
        out.expect_code(0);
        let report = out.json();
        let target = &report["targets"][0];
        for class in classes {
            let left = class_keys(&redis, class);
            let expected = if removed.contains(&class) {
                0
            } else if class == "app:search:big" {
                1
            } else if class == "zombie:" {
                4
            } else {
                3
            };
            assert_eq!(left, expected, "{mode}: `{class}` keys left\n{}", out.dump());
        }
        // Every mode gives the TTL-less keys of a TTL-requiring prefix their pattern's TTL.
        let mut conn = redis.connection();
        for i in 0..3 {
            let ttl: i64 = redis::cmd("TTL").arg(format!("app:search:nottl-{i}")).query(&mut conn).unwrap();
            assert!((1..=1800).contains(&ttl), "{mode}: nottl-{i} has TTL {ttl}");
        }
        assert_eq!(target["expired"], 3, "{mode}");
        assert_eq!(target["protected"], 3, "{mode}");
        let removed_count = removed.iter().map(|c| if *c == "app:search:big" { 1 } else { 3 }).sum::<u64>();
        // Another application's keys are never the project's: untouched, and said.
        assert_eq!(target["foreign"], 4, "{mode}");
        assert!(target["notes"].to_string().contains("outside the namespace `app:`"), "{mode}: {target:#}");
        assert_eq!(target["removed"], removed_count, "{mode}");
        // Orphans are reported by every mode that keeps them.
        if !removed.contains(&"orphan") {
            assert!(target["reported"].as_u64().unwrap() >= 3, "{mode}: {target:#}");
        }
        let run: Value =
            serde_json::from_slice(&std::fs::read(env.state_dir().join("jobs/cleanup.json")).unwrap()).unwrap();
        assert_eq!(run["summary"]["removed"], removed_count, "{mode}");
        assert!(!env.state_dir().join("cleanup/redis-main.cursor.json").exists(), "a finished pass keeps no cursor");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing_and_says_why() {
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(crate::health_table_sql()).await.unwrap();
    db.batch_execute(
        "INSERT INTO cache_entries (key, value, category, expires_at, accessed_at)
           SELECT 'row' || i, '{}', 'c' || (i % 2), now() - interval '1 day' * (i % 3), now() - interval '10 days'
             FROM generate_series(1, 300) i",
    )
    .await
    .unwrap();
    let checksum = "SELECT md5(string_agg(t::text, ',' ORDER BY key)) FROM cache_entries t";
    let before_rows: String = db.query_one(checksum, &[]).await.unwrap().get(0);
    let before_digest = redis.digest();
    let env = TestEnv::new();
    env.write_config(&format!("{}\n[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n", redis_config(&redis.url())));
    let out = env.run(CLEANUP, &["aggressive", "--dry-run", "--tier", "redis", "--tier", "postgres"]);
    out.expect_code(0);
    assert_eq!(redis.digest(), before_digest, "dry run changed Redis");
    let after_rows: String = db.query_one(checksum, &[]).await.unwrap().get(0);
    assert_eq!(after_rows, before_rows, "dry run changed the table");
    assert!(out.stdout.contains("dry run: nothing changed"), "{}", out.dump());
    assert!(out.stdout.contains("delete app:search:big (") && out.stdout.contains("> 1.0 MiB"), "{}", out.dump());
    assert!(out.stdout.contains("orphan: in the namespace, under no known prefix"), "{}", out.dump());
    assert!(out.stdout.contains("expire app:search:nottl-"), "{}", out.dump());
    let json = env.run(CLEANUP, &["aggressive", "--dry-run", "--tier", "postgres", "--format", "json"]).json();
    let pg_target = &json["targets"][0];
    // 200 rows have expired (i % 3 != 0) and every row was last used 10 days ago (> 6h).
    assert_eq!(pg_target["selected"], 300, "{json:#}");
    assert_eq!(pg_target["removed"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_rows_go_in_bounded_statements_by_mode_and_category() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(crate::health_table_sql()).await.unwrap();
    // 25 rows from the health fixture (not expired, fresh) plus four classes here.
    db.batch_execute(
        "INSERT INTO cache_entries (key, value, category, expires_at, accessed_at) SELECT 'expired-' || i, '{}', 'pay', now() - interval '1 hour', now() FROM generate_series(1, 4000) i;
         INSERT INTO cache_entries (key, value, category, expires_at, accessed_at) SELECT 'stale-' || i, '{}', 'pay', NULL, now() - interval '8 days' FROM generate_series(1, 300) i;
         INSERT INTO cache_entries (key, value, category, expires_at, accessed_at) SELECT 'other-' || i, '{}', 'search', now() - interval '1 hour', now() FROM generate_series(1, 50) i;
         INSERT INTO cache_entries (key, value, project_name, category, expires_at) SELECT 'foreign-' || i, '{}', 'someone-else', 'pay', now() - interval '1 hour' FROM generate_series(1, 20) i;",
    )
    .await
    .unwrap();
    let env = TestEnv::new();
    env.watch_log("postgres", pg.socket_dir().join("postgres.log"));
    // The blast-radius cap is lifted to the whole table here: this test is about statements.
    env.write_config(&format!(
        "[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n[cleanup]\nmax_statement = \"100ms\"\nmax_delete_share = 1.0\n"
    ));
    let count = |prefix: &'static str| {
        let db = &db;
        async move {
            db.query_one("SELECT count(*) FROM cache_entries WHERE key LIKE $1", &[&format!("{prefix}%")])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // A category run touches only its category: expired `pay` rows go, expired `search` rows stay.
    let out = env.run(CLEANUP, &["category", "pay", "--mode", "light", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!((count("expired-").await, count("other-").await, count("stale-").await), (0, 50, 300));
    // Another project's rows are never touched.
    assert_eq!(count("foreign-").await, 20);
    let target = &out.json()["targets"][0];
    assert_eq!(target["removed"], 4000, "{target:#}");
    let notes = target["notes"].to_string();
    let longest: f64 = notes.split("longest DELETE ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(longest <= 250.0, "a statement ran {longest} ms: {notes}");
    // Moderate also removes rows not accessed for a week.
    env.run(CLEANUP, &["moderate", "--yes"]).expect_code(0);
    assert_eq!((count("stale-").await, count("other-").await, count("k").await), (0, 0, 25));
}

/// The statement bound is enforced, not only aimed at: rows that cost far more to delete than
/// the first chunk assumes (a trigger sleeps 0.5 ms per row, about 900 rows in the first chunk of
/// 256 pages) are deleted in statements cancelled at `max_statement` and retried smaller.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_statements_past_max_statement_are_cancelled_and_retried_smaller() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(crate::health_table_sql()).await.unwrap();
    db.batch_execute(
        "INSERT INTO cache_entries (key, value, category, expires_at, accessed_at)
           SELECT 'expired-' || i, jsonb_build_object('v', repeat('x', 2000)), 'pay', now() - interval '1 hour', now()
             FROM generate_series(1, 3000) i;
         CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.0005); RETURN OLD; END $$;
         CREATE TRIGGER slow BEFORE DELETE ON cache_entries FOR EACH ROW EXECUTE FUNCTION slow_delete();",
    )
    .await
    .unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n[cleanup]\nmax_statement = \"100ms\"\nmax_delete_share = 1.0\n"
    ));
    let out = env.run(CLEANUP, &["light", "--yes", "--tier", "postgres", "--format", "json"]);
    out.expect_code(0);
    let target = &out.json()["targets"][0];
    assert_eq!(target["removed"], 3000, "{target:#}");
    let left: i64 =
        db.query_one("SELECT count(*) FROM cache_entries WHERE key LIKE 'expired-%'", &[]).await.unwrap().get(0);
    assert_eq!(left, 0);
    let notes = target["notes"].to_string();
    assert!(notes.contains("reached max_statement (100ms) and were retried on smaller chunks"), "{notes}");
    let longest: f64 = notes.split("longest DELETE ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    // Cancelled at 100 ms; the margin is the cancel's round trip on a busy machine.
    assert!(longest <= 160.0, "a statement ran {longest} ms: {notes}");
}

/// Rows the application holds locked: the cleanup waits at most `lock_timeout` per try (half
/// its `max_statement`), narrows the chunk to the held page, retries it after growing pauses,
/// and leaves the chunk to the next run rather than queue behind the application; the rows the
/// application released go on the next run.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_rows_the_application_holds_wait_briefly_then_go_on_the_next_run() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(crate::health_table_sql()).await.unwrap();
    db.batch_execute(
        "INSERT INTO cache_entries (key, value, category, expires_at, accessed_at)
           SELECT 'expired-' || i, '{}', 'pay', now() - interval '1 hour', now() FROM generate_series(1, 5000) i",
    )
    .await
    .unwrap();
    // The application holds one expired row in an open transaction.
    let mut app = pg.client("app").await;
    let tx = app.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM cache_entries WHERE key = 'expired-2500' FOR UPDATE", &[]).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n[cleanup]\nmax_statement = \"100ms\"\nmax_delete_share = 1.0\n"
    ));
    let started = std::time::Instant::now();
    let out = env.run(CLEANUP, &["light", "--yes", "--tier", "postgres", "--format", "json"]);
    out.expect_code(0);
    // The chunk narrows to the held row's page, which is tried four times (pauses of 200, 400
    // and 800 ms, tries of at most 100 ms each): never the application's whole transaction.
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    let target = &out.json()["targets"][0];
    let notes = target["notes"].to_string();
    let waits: u64 =
        notes.split("the application's locks: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(waits >= 4, "{notes}");
    assert!(
        notes.contains("1 chunks of pages left to the next run: the application kept their rows locked"),
        "{notes}"
    );
    let left: i64 =
        db.query_one("SELECT count(*) FROM cache_entries WHERE key LIKE 'expired-%'", &[]).await.unwrap().get(0);
    let removed = target["removed"].as_i64().unwrap();
    assert_eq!(removed + left, 5000);
    // One page of about 70 rows stays: the rest went.
    assert!((1..=200).contains(&left), "the rows beside the held one go: {left} left");
    let held: i64 =
        db.query_one("SELECT count(*) FROM cache_entries WHERE key = 'expired-2500'", &[]).await.unwrap().get(0);
    assert_eq!(held, 1, "the row the application holds is never waited for");
    tx.rollback().await.unwrap();
    env.run(CLEANUP, &["light", "--yes", "--tier", "postgres"]).expect_code(0);
    let left: i64 =
        db.query_one("SELECT count(*) FROM cache_entries WHERE key LIKE 'expired-%'", &[]).await.unwrap().get(0);
    assert_eq!(left, 0, "released, they go on the next run");
}

#[test]
fn unscoped_selections_are_refused() {
    let env = TestEnv::new();
    for bad in ["*", "", "a:b"] {
        let out = env.run(CLEANUP, &["category", bad, "--yes"]);
        out.expect_code(2);
        assert!(out.stderr.contains("is refused"), "{}", out.dump());
    }
    env.write_config("[cleanup.modes.aggressive]\nidle = \"0s\"\n");
    let out = env.run(CLEANUP, &["aggressive", "--yes"]);
    out.expect_code(3);
    assert!(out.stderr.contains("cleanup.modes.aggressive.idle") && out.stderr.contains("every key"), "{}", out.dump());
    // Without --yes, and with no terminal to ask on, nothing is deleted.
    std::fs::remove_file(env.path("config.toml")).unwrap();
    let out = env.run(CLEANUP, &["light"]);
    out.expect_code(2);
    assert!(out.stderr.contains("without --yes"), "{}", out.dump());
}

fn keys_after_uninterrupted(seed_keys: impl Fn(&RedisServer)) -> Option<Vec<String>> {
    let control = RedisServer::start()?;
    seed_keys(&control);
    let env = TestEnv::new();
    env.write_config(&redis_config(&control.url()));
    env.run(CLEANUP, &["moderate", "--yes", "--tier", "redis"]).expect_code(0);
    Some(control.keys())
}

fn many_keys(redis: &RedisServer) {
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.cmd("SET").arg(format!("app:search:k{i}")).arg("v").arg("EX").arg(3600).ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    for i in 0..300 {
        redis.set_aged(&format!("app:embedding:old{i}"), b"v", 3_600_000, 9 * DAY);
    }
}

#[test]
fn an_interrupted_run_resumes_from_its_cursor() {
    let Some(expected) = keys_after_uninterrupted(many_keys) else { return };
    let Some(redis) = RedisServer::start() else { return };
    many_keys(&redis);
    let env = TestEnv::new();
    env.write_config(&redis_config(&redis.url()));
    // 3300 keys at 1000 keys/s take over three seconds: stop the run after the first save.
    let mut child =
        env.command(CLEANUP, &["moderate", "--yes", "--tier", "redis", "--max-ops-per-sec", "1000"]).spawn().unwrap();
    let cursor = env.state_dir().join("cleanup/redis-main.cursor.json");
    assert!(wait_until(Duration::from_secs(10), || cursor.exists()), "no cursor saved");
    child.kill().unwrap();
    child.wait().unwrap();
    let saved: Value = serde_json::from_slice(&std::fs::read(&cursor).unwrap()).unwrap();
    assert_ne!(saved["cursor"], 0);
    let out = env.run(CLEANUP, &["moderate", "--yes", "--tier", "redis", "--resume", "--format", "json"]);
    out.expect_code(0);
    let notes = out.json()["targets"][0]["notes"].to_string();
    assert!(notes.contains(&format!("resumed at cursor {}", saved["cursor"])), "{}", out.dump());
    assert_eq!(redis.keys(), expected);
    assert!(!cursor.exists());
}

#[test]
fn redis_stopped_mid_scan_fails_clearly_and_resume_completes_the_work() {
    let Some(expected) = keys_after_uninterrupted(many_keys) else { return };
    let Some(mut redis) = RedisServer::start_with("appendonly yes\nappendfsync always") else { return };
    many_keys(&redis);
    let env = TestEnv::new();
    env.watch_log("redis", redis.dir().join("redis.log"));
    env.write_config(&redis_config(&redis.url()));
    let child = env.command(CLEANUP, &["moderate", "--yes", "--tier", "redis", "--max-ops-per-sec", "1000"]);
    let run = std::thread::spawn({
        let mut child = child;
        move || child.output().unwrap()
    });
    let cursor = env.state_dir().join("cleanup/redis-main.cursor.json");
    assert!(wait_until(Duration::from_secs(10), || cursor.exists()), "no cursor saved");
    redis.stop();
    let output = run.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("rerun with --resume"), "{stderr}");
    redis.restart();
    let out = env.run(CLEANUP, &["moderate", "--yes", "--tier", "redis", "--resume", "--format", "json"]);
    out.expect_code(0);
    assert!(out.json()["targets"][0]["notes"].to_string().contains("server restarted"), "{}", out.dump());
    assert_eq!(redis.keys(), expected);
}

#[test]
fn memory_api_duplicates_and_stale_memories_within_the_user_only() {
    let old = "2020-01-01T00:00:00Z";
    let recent = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let newer = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    for dialect in ["platform", "self-hosted"] {
        let mem0 = if dialect == "platform" { Mem0Server::platform("key-1") } else { Mem0Server::self_hosted("key-1") };
        mem0.add_memory("dup-old", "proj", "The user prefers green tea in the morning", &["food"], &recent);
        mem0.add_memory("dup-new", "proj", "the user prefers green tea in the morning.", &["food"], &newer);
        mem0.add_memory("unique", "proj", "Deploys happen on Fridays", &["work"], &recent);
        mem0.add_memory("ancient", "proj", "Used to live in Lisbon", &["bio"], old);
        mem0.add_memory("other-user", "someone", "The user prefers green tea in the morning", &["food"], &recent);
        for i in 0..150 {
            mem0.add_memory(
                &format!("bulk-{i:03}"),
                "proj",
                &format!("fact number {i} about topic {}", i * 7919 % 1000),
                &[],
                &recent,
            );
        }
        let env = TestEnv::new();
        env.write_config(&format!(
            "project_name = \"proj\"\n[[memory]]\nname = \"m\"\nurl = \"{}\"\napi_key = \"key-1\"\ndialect = \"{dialect}\"\n",
            mem0.url()
        ));
        let dry = env.run(CLEANUP, &["memory", "--mode", "aggressive", "--dry-run"]);
        dry.expect_code(0);
        assert!(
            dry.stdout.contains("delete dup-old") && dry.stdout.contains("duplicate of newer `dup-new`"),
            "{}",
            dry.dump()
        );
        assert!(
            dry.stdout.contains("delete ancient") && dry.stdout.contains("stale: not updated for"),
            "{}",
            dry.dump()
        );
        assert_eq!(mem0.ids().len(), 155, "dry run deleted");
        // Moderate removes duplicates only.
        env.run(CLEANUP, &["memory", "--yes"]).expect_code(0);
        let ids = mem0.ids();
        assert!(!ids.contains(&"dup-old".to_owned()) && ids.contains(&"dup-new".to_owned()), "{dialect}: {ids:?}");
        assert!(ids.contains(&"ancient".to_owned()) && ids.contains(&"other-user".to_owned()));
        assert_eq!(ids.len(), 154, "{dialect}: the bulk facts are not duplicates: {ids:?}");
        env.run(CLEANUP, &["memory", "--mode", "aggressive", "--yes"]).expect_code(0);
        let ids = mem0.ids();
        assert!(!ids.contains(&"ancient".to_owned()) && ids.contains(&"other-user".to_owned()), "{ids:?}");
        // Every delete named only this user's memories; the platform's in one batch request.
        let deletes: Vec<_> = mem0.requests().into_iter().filter(|r| r.method == "DELETE").collect();
        assert!(deletes.iter().all(|r| !r.url.contains("other-user") && !r.body.contains("other-user")));
        if dialect == "platform" {
            assert!(deletes.iter().all(|r| r.url == "/v1/batch/" && r.body.contains("\"memory_id\"")), "{deletes:?}");
            // Listing went through every page (155 memories, 100 a page).
            assert!(mem0.requests().iter().any(|r| r.url.contains("page=2")));
        } else {
            assert!(deletes.iter().all(|r| r.url.starts_with("/memories/")), "{deletes:?}");
        }
    }
}

fn touch(path: &std::path::Path, bytes: usize, age: Duration) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
    let when = std::time::SystemTime::now() - age;
    std::fs::File::options().write(true).open(path).unwrap().set_modified(when).unwrap();
}

#[test]
fn files_past_ttl_and_over_the_cap_go_oldest_first() {
    let env = TestEnv::new();
    let dir = env.path("cache");
    for i in 0..20 {
        touch(&dir.join(format!("old/{i}.bin")), 100, Duration::from_secs(10 * DAY));
    }
    touch(&dir.join("keep/important.bin"), 100, Duration::from_secs(30 * DAY));
    for i in 0..10 {
        // Ten 8 KiB files, aged 1..10 hours: the cap keeps the newest.
        touch(&dir.join(format!("new/{i}.bin")), 8192, Duration::from_secs((i + 1) * HOUR));
    }
    std::os::unix::fs::symlink("/etc/passwd", dir.join("link-to-outside")).unwrap();
    env.write_config(&format!(
        "[[files]]\nname = \"models\"\npath = \"{}\"\nttl = \"7days\"\nmax_size = \"40 KiB\"\nprotected = [\"keep/**\"]\n",
        dir.display()
    ));
    let dry = env.run(CLEANUP, &["files", "--dry-run", "--format", "json"]).json();
    assert_eq!(dry["targets"][0]["selected"], 25, "{dry:#}");
    assert_eq!(std::fs::read_dir(dir.join("old")).unwrap().count(), 20);
    let out = env.run(CLEANUP, &["files", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(std::fs::read_dir(dir.join("old")).unwrap().count(), 0);
    assert!(dir.join("keep/important.bin").exists(), "protected file removed");
    let mut left: Vec<String> = std::fs::read_dir(dir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["0.bin", "1.bin", "2.bin", "3.bin", "4.bin"], "the newest five fit 40 KiB");
    assert!(
        std::fs::symlink_metadata(dir.join("link-to-outside")).is_ok() && std::path::Path::new("/etc/passwd").exists()
    );
    assert_eq!(out.json()["targets"][0]["removed"], 25);
}

fn gunzip(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn logs_rotate_compress_keep_and_a_second_run_changes_nothing() {
    let env = TestEnv::new();
    let dir = env.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let big = b"line of a busy log\n".repeat(600);
    std::fs::write(dir.join("app.log"), &big).unwrap();
    std::fs::write(dir.join("quiet.log"), b"small\n").unwrap();
    std::fs::write(dir.join("empty.log"), b"").unwrap();
    std::fs::write(dir.join("notes.txt"), &big).unwrap();
    for n in 1..=3 {
        touch(&dir.join(format!("app.log.{n}.gz")), 10, Duration::from_secs(n * DAY));
    }
    touch(&dir.join("quiet.log.1.gz"), 10, Duration::from_secs(40 * DAY));
    std::fs::set_permissions(dir.join("app.log"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    env.write_config(&format!(
        "[[logs]]\nname = \"app\"\npath = \"{}\"\nrotate_size = \"10 KiB\"\nkeep = 3\nmax_age = \"30days\"\n",
        dir.display()
    ));
    let out = env.run(CLEANUP, &["logs", "--yes", "--format", "json"]);
    out.expect_code(0);
    let target = &out.json()["targets"][0];
    assert_eq!(target["rotated"], 1, "{target:#}");
    // The new rotation holds the log; the older ones moved up; the fourth went (keep = 3).
    assert_eq!(gunzip(&dir.join("app.log.1.gz")), big);
    // Freed: what compression saved, the rotation past `keep` and the expired one (10 B each).
    let gz = std::fs::metadata(dir.join("app.log.1.gz")).unwrap().len();
    assert_eq!(target["bytes_freed"].as_u64(), Some(big.len() as u64 - gz + 10 + 10), "{target:#}");
    assert!(dir.join("app.log.2.gz").exists() && dir.join("app.log.3.gz").exists());
    assert!(!dir.join("app.log.4.gz").exists());
    // Create mode: a new empty log with the old one's permissions.
    let meta = std::fs::metadata(dir.join("app.log")).unwrap();
    assert_eq!((meta.len(), std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777), (0, 0o640));
    // Small and empty logs stay; other files are not logs; old rotations past max_age go.
    assert_eq!(std::fs::read(dir.join("quiet.log")).unwrap(), b"small\n");
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), big);
    assert!(!dir.join("quiet.log.1.gz").exists());
    let snapshot = |d: &std::path::Path| -> BTreeSet<(String, u64)> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
            .collect()
    };
    let before = snapshot(&dir);
    let again = env.run(CLEANUP, &["logs", "--yes", "--format", "json"]);
    again.expect_code(0);
    assert_eq!(again.json()["targets"][0]["rotated"], 0);
    assert_eq!(snapshot(&dir), before, "a second run changed something");
}

/// Seed 004's inactive logs: a log nobody writes any more is compressed with no empty log left
/// behind, one past `max_age` goes, and the active ones (written lately, or held open by a
/// process however old) are never touched; the dry run says all of it first.
#[test]
fn inactive_logs_are_compressed_or_removed_and_active_ones_never_touched() {
    let env = TestEnv::new();
    let dir = env.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let text = b"evaluation finished: accuracy 0.91\n".repeat(60_000);
    std::fs::write(dir.join("active.log"), &text).unwrap();
    let days = |n: u64| Duration::from_secs(n * DAY);
    let write_aged = |name: &str, body: &[u8], age: Duration| {
        std::fs::write(dir.join(name), body).unwrap();
        let when = std::time::SystemTime::now() - age;
        std::fs::File::options().write(true).open(dir.join(name)).unwrap().set_modified(when).unwrap();
    };
    write_aged("idle.log", &text, days(10));
    write_aged("empty.log", b"", days(10));
    write_aged("ancient.log", &text[..100_000], days(100));
    write_aged("held.log", &text[..50_000], days(100));
    // Another process (this test) holds `held.log` open, as a long-running writer would.
    let _writer = std::fs::File::options().append(true).open(dir.join("held.log")).unwrap();
    env.write_config(&format!(
        "[[logs]]\nname = \"eval\"\npath = \"{}\"\ncompress_inactive = \"7days\"\nmax_age = \"90days\"\n",
        dir.display()
    ));
    let listing = |d: &std::path::Path| -> BTreeSet<String> {
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    let before = listing(&dir);
    let dry = env.run(CLEANUP, &["logs", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    assert_eq!(listing(&dir), before, "the dry run changed the directory");
    let items = dry.json()["targets"][0]["items"].to_string();
    for (file, why) in [
        ("idle.log", "(compress_inactive), held open by no process"),
        ("empty.log", "(compress_inactive, and empty)"),
        ("ancient.log", "(max_age)"),
    ] {
        assert!(items.contains(file) && items.contains(why), "{file}: {items}");
    }
    assert!(!items.contains("held.log") && !items.contains("active.log"), "{items}");

    let out = env.run(CLEANUP, &["logs", "--yes", "--format", "json"]);
    out.expect_code(0);
    let target = &out.json()["targets"][0];
    // Compressed into its first rotation, and no new empty log in its place.
    assert_eq!(gunzip(&dir.join("idle.log.1.gz")), text);
    assert!(!dir.join("idle.log").exists(), "an empty log was left behind");
    assert!(!dir.join("empty.log").exists() && !dir.join("ancient.log").exists());
    // The active logs are as they were.
    assert_eq!(std::fs::read(dir.join("active.log")).unwrap(), text);
    assert_eq!(std::fs::read(dir.join("held.log")).unwrap(), &text[..50_000]);
    // Freed: what compressing the idle log saved, and the removed log's bytes.
    let gz = std::fs::metadata(dir.join("idle.log.1.gz")).unwrap().len();
    assert_eq!(target["bytes_freed"].as_u64(), Some(text.len() as u64 - gz + 100_000), "{target:#}");
    assert_eq!((target["rotated"].as_u64(), target["removed"].as_u64()), (Some(1), Some(2)), "{target:#}");
}

#[test]
fn logs_copytruncate_keeps_the_same_file() {
    let env = TestEnv::new();
    let dir = env.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let content = b"0123456789\n".repeat(2000);
    std::fs::write(dir.join("svc.log"), &content).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join("svc.log")).unwrap());
    env.write_config(&format!(
        "[[logs]]\nname = \"svc\"\npath = \"{}\"\nrotate_size = \"1 KiB\"\ncopytruncate = true\ncompress_level = 9\n",
        dir.display()
    ));
    env.run(CLEANUP, &["logs", "--yes"]).expect_code(0);
    let meta = std::fs::metadata(dir.join("svc.log")).unwrap();
    assert_eq!((std::os::unix::fs::MetadataExt::ino(&meta), meta.len()), (inode, 0));
    assert_eq!(gunzip(&dir.join("svc.log.1.gz")), content);
}

#[tokio::test(flavor = "multi_thread")]
async fn smart_says_which_branch_and_why() {
    let Some((redis, env)) = smart_by_entries(1600) else { return };
    let mut conn = redis.connection();
    let out = env.run(CLEANUP, &["smart", "--dry-run", "--format", "json"]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["mode"], "aggressive", "{report:#}");
    assert_eq!(report["decision"]["figures"]["total_entries"], 1600);
    assert_eq!(report["decision"]["reason"], "1600 entries > 1500");
    let text = env.run(CLEANUP, &["smart", "--dry-run"]);
    assert!(text.stdout.contains("smart: AGGRESSIVE because 1600 entries > 1500"), "{}", text.dump());
    // Below the thresholds, with no lookups yet: light.
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let light = env.run(CLEANUP, &["smart", "--dry-run", "--format", "json"]).json();
    assert_eq!(light["mode"], "light", "{light:#}");
}

/// A server with `keys` fresh `app:search:` keys (TTL 10 min), and smart judging size by
/// entries.
fn smart_by_entries(keys: usize) -> Option<(RedisServer, TestEnv)> {
    let redis = RedisServer::start()?;
    let mut pipe = redis::pipe();
    for i in 0..keys {
        pipe.cmd("SET").arg(format!("app:search:k{i}")).arg("v").arg("EX").arg(600).ignore();
    }
    pipe.query::<()>(&mut redis.connection()).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!("{}[cleanup.smart]\nsize_basis = \"entries\"\n", redis_config(&redis.url())));
    Some((redis, env))
}

/// `used_memory` of a server, from INFO memory.
fn used_memory(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}

/// Writes keys `{prefix}{i}` for `i` in `keys`, of `size` bytes with a TTL of an hour, key `i` idle
/// `idle(i)` seconds, in pipelines of RESTORE (one DUMP payload for all).
fn fill_aged(redis: &RedisServer, prefix: &str, keys: std::ops::Range<u64>, size: usize, idle: impl Fn(u64) -> u64) {
    let mut conn = redis.connection();
    let _: () = redis::cmd("SET").arg("seed:payload").arg(vec![b'v'; size]).query(&mut conn).unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("seed:payload").query(&mut conn).unwrap();
    let _: () = redis::cmd("DEL").arg("seed:payload").query(&mut conn).unwrap();
    for chunk in keys.collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("RESTORE")
                .arg(format!("{prefix}{i}"))
                .arg(3_600_000)
                .arg(&payload)
                .arg("REPLACE")
                .arg("IDLETIME")
                .arg(idle(*i))
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
}

#[test]
fn smart_judges_size_against_capacity_by_default() {
    // A healthy 50k-key cache, a fifth of its maxmemory: light, not seed 000's "50000 > 1500".
    let Some(redis) = RedisServer::start_with("maxmemory 64mb\nmaxmemory-policy noeviction") else { return };
    fill_aged(&redis, "app:search:k", 0..50_000, 100, |_| 0);
    let env = TestEnv::new();
    env.write_config(&redis_config(&redis.url()));
    let report = env.run(CLEANUP, &["smart", "--dry-run", "--format", "json"]).json();
    assert_eq!(report["mode"], "light", "{report:#}");
    let reason = report["decision"]["reason"].as_str().unwrap();
    assert!(reason.contains("fullest: redis/main at") && reason.contains("of maxmemory"), "{reason}");
    // The same cache near its limit: aggressive, and the branch says how full.
    fill_aged(&redis, "app:embedding:k", 0..6000, 8000, |_| 0);
    let mut conn = redis.connection();
    assert!(used_memory(&mut conn) as f64 > 0.9 * 64.0 * 1024.0 * 1024.0, "the seed should pass 90%");
    let report = env.run(CLEANUP, &["smart", "--dry-run", "--format", "json"]).json();
    assert_eq!(report["mode"], "aggressive", "{report:#}");
    assert!(report["decision"]["reason"].as_str().unwrap().ends_with("of maxmemory > 90.0%"), "{report:#}");
}

#[test]
fn eviction_stops_at_the_memory_target_within_one_batch() {
    // The case seen: 62 MB of a 64 MB maxmemory, ~7000 keys of 8 KB all used within the
    // last 4 hours (so only eviction applies), and another application's keys beside them.
    let Some(redis) = RedisServer::start_with("maxmemory 64mb\nmaxmemory-policy noeviction") else { return };
    let mut conn = redis.connection();
    fill_aged(&redis, "zombie:", 0..100, 8000, |_| 86_400);
    let mut count = 0;
    while used_memory(&mut conn) < 62 * 1024 * 1024 {
        fill_aged(&redis, "app:cache:k", count..count + 100, 8000, |i| 2 * i);
        count += 100;
    }
    let max = 64 * 1024 * 1024u64;
    let target = (max as f64 * 0.7) as u64;
    let key_bytes: u64 = redis::cmd("MEMORY").arg("USAGE").arg("app:cache:k0").query(&mut conn).unwrap();
    let batch_size = 1000u64;
    let one_batch = batch_size * key_bytes;
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nnamespace = \"app:\"\n[cleanup]\nmax_delete_share = \"50%\"\n",
        redis.url()
    ));
    // The dry run states what it would free: the excess, plus at most one batch.
    let before = used_memory(&mut conn);
    let digest = redis.digest();
    let dry = env.run(CLEANUP, &["aggressive", "--dry-run", "--tier", "redis", "--format", "json"]);
    dry.expect_code(0);
    assert_eq!(redis.digest(), digest, "the dry run changed Redis");
    let would = dry.json()["targets"][0]["bytes_freed"].as_u64().unwrap();
    let excess = before - target;
    assert!(would >= excess && would <= excess + one_batch, "would free {would}, excess {excess}\n{}", dry.dump());
    assert!(would < before, "the dry run selected more bytes than are in use");
    let out = env.run(CLEANUP, &["aggressive", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(0);
    let after = used_memory(&mut conn);
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    eprintln!(
        "eviction: {before} → {after} bytes (target {target}, one batch {one_batch}), {} of {count} keys left",
        keys - 100
    );
    assert!(after <= target && after + one_batch >= target, "{before} → {after}, target {target}\n{}", out.dump());
    // In practice the last batch is sized to what is left over: a few keys, not a batch.
    assert!(after + 20 * key_bytes >= target, "overshoot {} bytes\n{}", target - after, out.dump());
    let kept: BTreeSet<u64> = redis.keys().iter().filter_map(|k| k.strip_prefix("app:cache:k")?.parse().ok()).collect();
    let removed: BTreeSet<u64> = (0..count).filter(|i| !kept.contains(i)).collect();
    assert!(!removed.is_empty() && !kept.is_empty());
    assert!(kept.last() < removed.first(), "a kept key is idler than an evicted one");
    assert_eq!(redis.keys().iter().filter(|k| k.starts_with("zombie:")).count(), 100, "another application's keys");
    let notes = out.json()["targets"][0]["notes"].to_string();
    assert!(notes.contains("evicted") && notes.contains("used memory"), "{notes}");
}

#[test]
fn the_blast_radius_cap_stops_a_run_and_says_why() {
    let Some(redis) = RedisServer::start() else { return };
    // 4000 keys idle 8 days: moderate would remove them all; the default cap is 25%.
    fill_aged(&redis, "app:search:k", 0..4000, 100, |_| 8 * DAY);
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\nnamespace = \"app:\"\n", redis.url()));
    let out = env.run(CLEANUP, &["moderate", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(1);
    let target = &out.json()["targets"][0];
    assert_eq!(target["removed"], 1000, "{}", out.dump());
    assert_eq!(target["cap"]["max_items"], 1000);
    assert!(target["cap"]["hit"].as_str().unwrap().contains("cleanup.max_delete_share"), "{target:#}");
    assert_eq!(redis.keys().len(), 3000);
    let run: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("jobs/cleanup.json")).unwrap()).unwrap();
    assert_eq!(run["outcome"], "partial", "{run:#}");
    // --force lifts the cap only for a person at a terminal: never without one, never scheduled.
    let forced = env.run(CLEANUP, &["moderate", "--yes", "--force", "--tier", "redis"]);
    forced.expect_code(2);
    assert!(forced.stderr.contains("--force is refused without a terminal"), "{}", forced.dump());
    let scheduled =
        env.run(CLEANUP, &["moderate", "--yes", "--force", "--scheduled", "cleanup-deep", "--tier", "redis"]);
    scheduled.expect_code(2);
    assert_eq!(redis.keys().len(), 3000, "a refused --force deleted something");
    // Eviction is capped too: from 99% to 70% needs more than a quarter of these small keys.
    let mut conn = redis.connection();
    let max = (used_memory(&mut conn) as f64 / 0.99) as u64;
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(max).query(&mut conn).unwrap();
    let out = env.run(CLEANUP, &["evict", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(1);
    let target = &out.json()["targets"][0];
    assert_eq!(target["removed"], 750, "{}", out.dump());
    assert!(target["cap"]["hit"].as_str().unwrap().contains("750 entries"), "{target:#}");
}

#[test]
fn aggressive_evicts_the_idlest_keys_down_to_the_memory_target() {
    let Some(redis) = RedisServer::start_with("maxmemory 4mb\nmaxmemory-policy noeviction") else { return };
    // 400 keys of 4 KiB, idle 0 to 399 minutes.
    for i in 0..400u64 {
        redis.set_aged(&format!("app:search:k{i:03}"), &vec![b'v'; 4096], 3_600_000, i * 60);
    }
    let mut conn = redis.connection();
    let used = |conn: &mut redis::Connection| -> f64 {
        let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
        info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
    };
    let target = 4.0 * 1024.0 * 1024.0 * 0.5;
    assert!(used(&mut conn) > target, "the seed should be over the target");
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}\n[cleanup.modes.aggressive]\nidle = \"30days\"\nmemory_target_percent = 50.0\n",
        redis_config(&redis.url())
    ));
    let out = env.run(CLEANUP, &["aggressive", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(0);
    let notes = out.json()["targets"][0]["notes"].to_string();
    assert!(notes.contains("evicting the idlest keys"), "{}", out.dump());
    assert!(used(&mut conn) <= target, "still over the target: {}", out.dump());
    let kept: BTreeSet<u64> =
        redis.keys().iter().filter_map(|k| k.strip_prefix("app:search:k")?.parse().ok()).collect();
    let removed: BTreeSet<u64> = (0..400).filter(|i| !kept.contains(i)).collect();
    assert!(!removed.is_empty() && !kept.is_empty(), "kept {}", kept.len());
    assert!(kept.last() < removed.first(), "a kept key is idler than an evicted one: {kept:?} / {removed:?}");
}

#[test]
fn a_cluster_is_cleaned_on_every_primary() {
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    for i in 0..60 {
        cluster.set_aged(&format!("app:embedding:old{i}"), b"v", 3_600_000, 9 * DAY);
        cluster.set_aged(&format!("app:search:fresh{i}"), b"v", 3_600_000, 0);
        cluster.set_aged(&format!("app:search:nottl{i}"), b"v", 0, 0);
    }
    // The keys really are spread over the three primaries.
    assert!(cluster.nodes().iter().all(|n| n.keys().iter().any(|k| k.contains(":old"))));
    let env = TestEnv::new();
    env.write_config(&redis_config(&cluster.nodes()[0].url()));
    let out = env.run(CLEANUP, &["moderate", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(0);
    let target = &out.json()["targets"][0];
    assert_eq!((target["removed"].as_u64(), target["expired"].as_u64()), (Some(60), Some(60)), "{}", out.dump());
    assert!(target["notes"].to_string().contains("cluster: 3 of 3 primaries"));
    let keys = cluster.keys();
    assert!(!keys.iter().any(|k| k.contains(":old")), "{keys:?}");
    assert_eq!(keys.len(), 120);
    for node in cluster.nodes() {
        let mut conn = node.connection();
        for key in node.keys().iter().filter(|k| k.contains("nottl")) {
            let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut conn).unwrap();
            assert!(ttl > 0, "{key} has no TTL");
        }
    }
    // The health check sees the whole cluster through any node: its state is ok, and a cluster
    // whose primaries have no replica is a warning (one failure loses a third of the slots).
    let health = env.run(crate::HEALTH, &["check", "--tier", "redis", "--format", "json"]);
    health.expect_code(1);
    let checks = health.json()["targets"][0]["checks"].to_string();
    assert!(checks.contains("cluster_state ok, 16384 of 16384 slots assigned"), "{checks}");
    assert!(checks.contains("primaries without a healthy replica"), "{checks}");
}

#[test]
fn eviction_on_a_cluster_brings_every_primary_to_its_target() {
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    // 3000 keys of 8 KB over the three primaries, key i idle 10·i seconds (spaced wider than the
    // seeding takes, so the order of idle times is the order of i).
    for i in 0..3000u64 {
        cluster.set_aged(&format!("app:cache:k{i}"), &[b'x'; 8000], 3_600_000, i * 10);
    }
    // One connection per node held for the whole test: a new one would add its own buffers to
    // the figure it reads.
    let mut conns: Vec<redis::Connection> = cluster.nodes().iter().map(RedisServer::connection).collect();
    let mut maxima = Vec::new();
    for conn in &mut conns {
        let max = (used_memory(conn) as f64 / 0.9) as u64;
        let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(max).query(conn).unwrap();
        maxima.push(max);
    }
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nnamespace = \"app:\"\n[cleanup]\nmax_delete_share = \"50%\"\n",
        cluster.nodes()[0].url()
    ));
    let out = env.run(CLEANUP, &["evict", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(0);
    for ((node, max), conn) in cluster.nodes().iter().zip(maxima).zip(&mut conns) {
        let used = used_memory(conn);
        let target = (max as f64 * 0.7) as u64;
        assert!(
            used <= target && used + 20 * 8300 >= target,
            "node {}: {used} of target {target}\n{}",
            node.port(),
            out.dump()
        );
        // On each node the idlest keys went.
        let kept: BTreeSet<u64> =
            node.keys().iter().filter_map(|k| k.strip_prefix("app:cache:k")?.parse().ok()).collect();
        let gone = (0..3000u64)
            .filter(|i| !kept.contains(i) && cluster.node_for(&format!("app:cache:k{i}")).port() == node.port());
        let gone: BTreeSet<u64> = gone.collect();
        assert!(
            !gone.is_empty() && kept.last() < gone.first(),
            "node {}: a kept key is idler than an evicted one",
            node.port()
        );
    }
}

/// Writes keys `{prefix}{i}` for `i` in `keys` to the primaries serving them (slots from `CLUSTER
/// KEYSLOT`), `size` bytes each with a TTL of an hour, idle `idle` seconds, in pipelines of
/// RESTORE; with `only`, just the keys of that primary. The keys written on each primary.
fn fill_cluster(
    cluster: &cache_tests::RedisCluster,
    prefix: &str,
    keys: std::ops::Range<u64>,
    size: usize,
    idle: u64,
    only: Option<usize>,
) -> Vec<u64> {
    let nodes = cluster.nodes();
    let holder = cluster.node_for("seed:payload");
    let mut conn = holder.connection();
    let _: () = redis::cmd("SET").arg("seed:payload").arg(vec![b'v'; size]).query(&mut conn).unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("seed:payload").query(&mut conn).unwrap();
    let _: () = redis::cmd("DEL").arg("seed:payload").query(&mut conn).unwrap();
    let names: Vec<String> = keys.map(|i| format!("{prefix}{i}")).collect();
    let mut slots = redis::pipe();
    for name in &names {
        slots.cmd("CLUSTER").arg("KEYSLOT").arg(name);
    }
    let slots: Vec<u16> = slots.query(&mut nodes[0].connection()).unwrap();
    let mut pipes: Vec<redis::Pipeline> = nodes.iter().map(|_| redis::pipe()).collect();
    let mut written = vec![0u64; nodes.len()];
    for (name, slot) in names.iter().zip(slots) {
        let port = cluster.node_for_slot(slot).port();
        let index = nodes.iter().position(|n| n.port() == port).unwrap();
        if only.is_some_and(|o| o != index) {
            continue;
        }
        pipes[index].cmd("RESTORE").arg(name).arg(3_600_000).arg(&payload).arg("REPLACE").arg("IDLETIME").arg(idle);
        pipes[index].ignore();
        written[index] += 1;
    }
    for ((node, pipe), n) in nodes.iter().zip(pipes).zip(&written) {
        if *n > 0 {
            pipe.query::<()>(&mut node.connection()).unwrap();
        }
    }
    written
}

#[test]
fn smart_on_a_cluster_sums_the_keys_and_judges_the_fullest_primary() {
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    // 3000 small keys over the three primaries, and 20 MB of 8 KB keys on the middle primary
    // only; every key idle two days (nothing used in the last hour).
    let small = fill_cluster(&cluster, "app:search:k", 0..3000, 200, 2 * DAY, None);
    let full = 1;
    let big = fill_cluster(&cluster, "app:embedding:k", 0..7500, 8000, 2 * DAY, Some(full));
    assert!(small.iter().all(|&n| n > 500) && big[full] > 2000, "{small:?} {big:?}");
    let nodes = cluster.nodes();
    // The seed in the URL is the last primary: neither the full one nor the first listed.
    let seed = 2;
    let env = TestEnv::new();
    env.write_config(&redis_config(&nodes[seed].url()));
    // One connection per node held for the whole test: a new one would add its own buffers to
    // the figure it reads.
    let mut conns: Vec<redis::Connection> = nodes.iter().map(RedisServer::connection).collect();
    let dbsize: u64 = conns.iter_mut().map(|c| redis::cmd("DBSIZE").query::<u64>(c).unwrap()).sum();
    assert_eq!(dbsize, small.iter().sum::<u64>() + big[full]);
    // Sets each primary's maxmemory so that it uses `shares[i]` of it: (used, maxmemory) each.
    let mut set_shares = |shares: [f64; 3]| -> Vec<(u64, u64)> {
        let mut set = Vec::new();
        for (conn, share) in conns.iter_mut().zip(shares) {
            let used = used_memory(conn);
            let max = (used as f64 / share) as u64;
            let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(max).query(conn).unwrap();
            set.push((used, max));
        }
        set
    };
    let smart = |env: &TestEnv| {
        let out = env.run(CLEANUP, &["smart", "--dry-run", "--format", "json"]);
        out.expect_code(0);
        out.json()
    };
    // The one usage figure: the primary at `index`, using `used` of its `max` (give or take the
    // buffers of the tool's own connections, at most 128 KiB), and the keys summed over the
    // primaries.
    let fullest_is = |report: &Value, index: usize, (used, max): (u64, u64)| {
        let figures = &report["decision"]["figures"];
        assert_eq!(figures["total_entries"], dbsize, "{report:#}");
        assert_eq!(figures["unmeasured"], serde_json::json!([]), "{report:#}");
        let usage = figures["usage"].as_array().unwrap();
        assert_eq!(usage.len(), 1, "{report:#}");
        assert_eq!(usage[0]["target"], format!("redis/main (127.0.0.1:{})", nodes[index].port()), "{report:#}");
        assert_eq!(usage[0]["of"], "maxmemory");
        let reported = usage[0]["share"].as_f64().unwrap();
        let seen = reported * max as f64;
        assert!(
            seen >= used as f64 - 4096.0 && seen <= (used + 128 * 1024) as f64,
            "share {reported}: {seen} bytes of {max}, {used} used when set\n{report:#}"
        );
        format!("redis/main (127.0.0.1:{}) at {:.1}% of maxmemory", nodes[index].port(), reported * 100.0)
    };

    // One primary at 95%, the others at 20%: aggressive, on the fullest primary's share (the
    // cluster as a whole is far below 90%).
    let shares = set_shares([0.2, 0.95, 0.2]);
    let report = smart(&env);
    assert_eq!(report["mode"], "aggressive", "{report:#}");
    assert_eq!(report["decision"]["mode"], "aggressive");
    let at = fullest_is(&report, full, shares[full]);
    assert_eq!(report["decision"]["reason"], format!("{at} > 90.0%"), "{report:#}");
    // The text says the same (its share read anew, a little higher for the runs before it).
    let text = env.run(CLEANUP, &["smart", "--dry-run"]);
    let line = text.stdout.lines().find(|l| l.starts_with("smart: ")).unwrap_or_default();
    let named = format!("smart: AGGRESSIVE because redis/main (127.0.0.1:{}) at ", nodes[full].port());
    assert!(line.starts_with(&named) && line.ends_with(" of maxmemory > 90.0%"), "{}", text.dump());

    // The same primary at 82% and nothing used in the last hour: moderate.
    let shares = set_shares([0.2, 0.82, 0.2]);
    let report = smart(&env);
    assert_eq!(report["mode"], "moderate", "{report:#}");
    assert_eq!(report["decision"]["figures"]["recent_activity"], 0, "{report:#}");
    let at = fullest_is(&report, full, shares[full]);
    assert_eq!(report["decision"]["reason"], format!("{at} > 75.0% and 0 used in the last hour < 50"));

    // No primary over the thresholds, the first now the fullest at 60%: light, naming it.
    let shares = set_shares([0.6, 0.4, 0.2]);
    let report = smart(&env);
    assert_eq!(report["mode"], "light", "{report:#}");
    let at = fullest_is(&report, 0, shares[0]);
    let reason = report["decision"]["reason"].as_str().unwrap();
    assert!(reason.starts_with(&format!("{dbsize} entries, fullest: {at}, 0 used in the last hour")), "{reason}");
    // Dry runs all: every key is still there.
    let after: u64 = conns.iter_mut().map(|c| redis::cmd("DBSIZE").query::<u64>(c).unwrap()).sum();
    assert_eq!(after, dbsize);
}

#[test]
fn a_server_refusing_object_and_memory_is_cleaned_with_what_it_allows() {
    let Some(redis) =
        RedisServer::start_with("rename-command OBJECT \"\"\nrename-command MEMORY \"\"\nrename-command CONFIG \"\"")
    else {
        return;
    };
    seed(&redis);
    let env = TestEnv::new();
    env.write_config(&redis_config(&redis.url()));
    let out = env.run(CLEANUP, &["aggressive", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(0);
    let target = &out.json()["targets"][0];
    let notes = target["notes"].to_string();
    assert!(notes.contains("OBJECT IDLETIME refused") && notes.contains("MEMORY USAGE refused"), "{notes}");
    // Without idle times and sizes, only what needs neither happens: orphans go, TTLs are set.
    assert_eq!(class_keys(&redis, "orphan"), 0);
    assert_eq!(class_keys(&redis, "idle8d"), 3);
    assert_eq!(class_keys(&redis, "app:search:big"), 1);
    assert_eq!(class_keys(&redis, "zombie:"), 4);
    assert_eq!(target["expired"], 3);
}

#[test]
fn under_an_lfu_policy_the_coldest_keys_go() {
    let Some(redis) = RedisServer::start_with("maxmemory-policy allkeys-lfu") else { return };
    let mut conn = redis.connection();
    for (name, freq) in [("cold", 0), ("warm", 40), ("hot", 200)] {
        for i in 0..4 {
            let key = format!("app:search:{name}-{i}");
            let _: () = redis::cmd("SET").arg(&key).arg("v").arg("EX").arg(3600).query(&mut conn).unwrap();
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut conn).unwrap();
            let _: () = redis::cmd("RESTORE")
                .arg(&key)
                .arg(3_600_000)
                .arg(dump)
                .arg("REPLACE")
                .arg("FREQ")
                .arg(freq)
                .query(&mut conn)
                .unwrap();
        }
    }
    let env = TestEnv::new();
    env.write_config(&redis_config(&redis.url()));
    let out = env.run(CLEANUP, &["moderate", "--dry-run", "--tier", "redis"]);
    assert!(out.stdout.contains("LFU frequency 0 (≤ 0)"), "{}", out.dump());
    env.run(CLEANUP, &["moderate", "--yes", "--tier", "redis"]).expect_code(0);
    assert_eq!((class_keys(&redis, "cold"), class_keys(&redis, "warm"), class_keys(&redis, "hot")), (0, 4, 4));
}

#[test]
fn logs_rotate_by_age_from_the_last_rotation() {
    let env = TestEnv::new();
    let dir = env.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("daily.log"), b"a few lines\n").unwrap();
    std::fs::write(dir.join("fresh.log"), b"a few lines\n").unwrap();
    env.write_config(&format!("[[logs]]\nname = \"d\"\npath = \"{}\"\nrotate_age = \"1day\"\n", dir.display()));
    // First sight: like logrotate, a log's age counts from now.
    env.run(CLEANUP, &["logs", "--yes"]).expect_code(0);
    assert!(!dir.join("daily.log.1.gz").exists());
    // Pretend `daily.log` was last rotated two days ago.
    let status = env.state_dir().join("cleanup/logs-d.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    doc["rotated"]["daily.log"] = Value::String((chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339());
    std::fs::write(&status, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = env.run(CLEANUP, &["logs", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["targets"][0]["rotated"], 1, "{}", out.dump());
    assert_eq!(gunzip(&dir.join("daily.log.1.gz")), b"a few lines\n");
    assert!(!dir.join("fresh.log.1.gz").exists());
}

/// The cache table with 2,450 rows: 400 of `proj` expired, 1,000 live but not accessed for eight
/// days or more, 1,000 live and fresh, and 50 stale rows of another project. Values, metadata and
/// times differ per row, so a restored row can be compared byte for byte.
const CAPPED_TABLE: &str = "CREATE TABLE cache_entries (
    key text PRIMARY KEY, value jsonb NOT NULL, project_name text NOT NULL DEFAULT 'default',
    category text, access_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(), accessed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz, metadata jsonb NOT NULL DEFAULT '{}');
  INSERT INTO cache_entries (key, value, project_name, category, access_count, accessed_at, expires_at)
    SELECT 'expired-' || i, jsonb_build_object('n', i), 'proj', 'c' || (i % 3), i, now() - interval '10 days', now() - interval '1 hour'
      FROM generate_series(1, 400) i;
  INSERT INTO cache_entries (key, value, project_name, category, access_count, created_at, accessed_at, expires_at, metadata)
    SELECT 'stale-' || lpad(i::text, 4, '0'),
           jsonb_build_object('n', i, 'text', E'tab\\there, newline\\nhere ' || md5(i::text), 'list', jsonb_build_array(i, i * 1.5, null, true)),
           'proj', 'c' || (i % 3), i * 7, now() - interval '30 days' - i * interval '1 minute',
           now() - interval '8 days' - i * interval '1 second',
           CASE WHEN i % 2 = 0 THEN NULL ELSE now() + interval '1 day' END,
           jsonb_build_object('origin', 'seed', 'i', i)
      FROM generate_series(1, 1000) i;
  INSERT INTO cache_entries (key, value, project_name, category)
    SELECT 'fresh-' || i, jsonb_build_object('n', i), 'proj', 'c' || (i % 3) FROM generate_series(1, 1000) i;
  INSERT INTO cache_entries (key, value, project_name, category, accessed_at)
    SELECT 'foreign-' || i, '{}', 'someone-else', 'c0', now() - interval '30 days' FROM generate_series(1, 50) i;";

/// Every row's `to_jsonb` text, by key.
async fn rows_by_key(db: &tokio_postgres::Client) -> std::collections::BTreeMap<String, String> {
    db.query("SELECT key, to_jsonb(t)::text FROM cache_entries t", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect()
}

/// 1,000 memories of `proj` with categories and metadata, 400 of them not updated since 2020,
/// and 10 of another user.
pub(crate) fn seed_memories(mem0: &Mem0Server) {
    let recent = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    for i in 0..1000u32 {
        let time = if i % 5 < 2 { "2020-03-01T10:00:00Z".to_owned() } else { recent.clone() };
        mem0.add_memory_json(serde_json::json!({
            "id": format!("mem-{i:04}"),
            "memory": format!("user fact {i}: code {} room {}", i * 7919 % 10007, i * 104_729 % 1009),
            "user_id": "proj",
            "categories": [format!("cat{}", i % 4), "seeded"],
            "created_at": time,
            "updated_at": time,
            "metadata": { "source": "chat", "n": i, "tags": ["t", i % 3] },
        }));
    }
    for i in 0..10 {
        mem0.add_memory(
            &format!("foreign-{i}"),
            "someone",
            &format!("another user's fact {i}"),
            &[],
            "2020-03-01T10:00:00Z",
        );
    }
}

/// The user's memories as (text, categories, metadata without `restored_from`), sorted.
pub(crate) fn memory_contents(mem0: &Mem0Server, user: &str) -> Vec<(String, Value, Value)> {
    let mut contents: Vec<(String, Value, Value)> = mem0
        .memories(user)
        .into_iter()
        .map(|m| {
            let mut metadata = m["metadata"].clone();
            if let Some(object) = metadata.as_object_mut() {
                object.remove("restored_from");
            }
            (m["memory"].as_str().unwrap().to_owned(), m["categories"].clone(), metadata)
        })
        .collect();
    contents.sort_by(|a, b| a.0.cmp(&b.0));
    contents
}

fn target_of<'a>(report: &'a Value, tier: &str) -> &'a Value {
    report["targets"].as_array().unwrap().iter().find(|t| t["tier"] == tier).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cap_stops_aggressive_runs_at_a_quarter_and_undo_restores_exactly_what_went() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(CAPPED_TABLE).await.unwrap();
    let mem0 = Mem0Server::platform("key-1");
    seed_memories(&mem0);
    let env = TestEnv::new();
    env.watch_log("postgres", pg.socket_dir().join("postgres.log"));
    env.write_config(&format!(
        "project_name = \"proj\"\n[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n\
         [[memory]]\nname = \"m\"\nurl = \"{}\"\napi_key = \"key-1\"\n",
        mem0.url()
    ));
    let rows_before = rows_by_key(&db).await;
    let memories_before = memory_contents(&mem0, "proj");
    assert_eq!((rows_before.len(), memories_before.len()), (2450, 1000));

    // A dry run says what would go within the cap, and that the cap would stop the run.
    let dry = env.run(CLEANUP, &["aggressive", "--dry-run", "--format", "json"]);
    // Exit 1, as the real run will be: partial, stopped by the cap.
    dry.expect_code(1);
    let report = dry.json();
    let (rows, memories) = (target_of(&report, "postgres"), target_of(&report, "memory"));
    assert_eq!(rows["selected"], 400 + 500, "{}", dry.dump());
    assert_eq!(memories["selected"], 250, "{}", dry.dump());
    for target in [rows, memories] {
        assert!(target["cap"]["hit"].as_str().unwrap().starts_with("would stop"), "{target:#}");
    }
    assert_eq!(rows_by_key(&db).await, rows_before, "the dry run changed rows");
    assert_eq!(mem0.memories("proj").len(), 1000, "the dry run deleted memories");

    // The real run: expired rows all go (uncapped); live stale rows and stale memories stop at a
    // quarter of the live rows (2,000) and of the user's memories (1,000).
    let started = std::time::Instant::now();
    let out = env.run(CLEANUP, &["aggressive", "--yes", "--format", "json"]);
    let cleanup_time = started.elapsed();
    out.expect_code(1);
    let report = out.json();
    let run_id = report["run_id"].as_str().unwrap().to_owned();
    let (rows, memories) = (target_of(&report, "postgres"), target_of(&report, "memory"));
    assert_eq!(rows["removed"], 900, "{}", out.dump());
    assert_eq!(rows["cap"]["max_items"], 500);
    assert!(rows["cap"]["hit"].as_str().unwrap().contains("500 entries (cleanup.max_delete_share)"), "{rows:#}");
    assert_eq!(memories["removed"], 250, "{}", out.dump());
    assert!(memories["cap"]["hit"].as_str().unwrap().contains("250 entries (cleanup.max_delete_share)"));
    assert_eq!((rows["journal"]["count"].as_u64(), memories["journal"]["count"].as_u64()), (Some(500), Some(250)));
    assert!(rows["notes"].to_string().contains(&format!("undo with `cache-cleanup undo {run_id}`")), "{rows:#}");
    let record: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("jobs/cleanup.json")).unwrap()).unwrap();
    assert_eq!((record["outcome"].as_str(), record["id"].as_str()), (Some("partial"), Some(run_id.as_str())));
    let after = rows_by_key(&db).await;
    let count = |prefix: &str| after.keys().filter(|k| k.starts_with(prefix)).count();
    assert_eq!(
        (count("expired-"), count("stale-"), count("fresh-"), count("foreign-")),
        (0, 500, 1000, 50),
        "rows left"
    );
    assert_eq!(mem0.memories("proj").len(), 750);
    assert_eq!(mem0.memories("someone").len(), 10, "another user's memories were touched");
    let journal_dir = env.state_dir().join("cleanup/journal").join(&run_id);
    let journal_bytes: u64 =
        std::fs::read_dir(&journal_dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();

    // The journals are listed with their counts.
    let listed = env.run(CLEANUP, &["undo", "--list", "--format", "json"]);
    listed.expect_code(0);
    let journals = listed.json()["journals"].clone();
    assert_eq!((journals[0]["run_id"].as_str(), journals[0]["items"].as_u64()), (Some(run_id.as_str()), Some(750)));

    // A dry run of the undo changes nothing.
    let dry = env.run(CLEANUP, &["undo", "latest", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    let restored: Vec<u64> =
        dry.json()["journals"].as_array().unwrap().iter().map(|j| j["restored"].as_u64().unwrap()).collect();
    assert_eq!(restored.iter().sum::<u64>(), 750, "{}", dry.dump());
    assert_eq!(rows_by_key(&db).await, after);
    assert_eq!(mem0.memories("proj").len(), 750);

    // Undo puts back exactly what went: every live row byte for byte, every memory with its
    // text, categories and metadata. Expired rows were never journaled and stay gone.
    let started = std::time::Instant::now();
    let undo = env.run(CLEANUP, &["undo", &run_id, "--yes", "--format", "json"]);
    let undo_time = started.elapsed();
    undo.expect_code(0);
    for journal in undo.json()["journals"].as_array().unwrap() {
        assert_eq!(journal["restored"], journal["journaled"], "{journal:#}");
        assert_eq!(journal["skipped"], 0);
    }
    let mut expected = rows_before.clone();
    expected.retain(|k, _| !k.starts_with("expired-"));
    assert_eq!(rows_by_key(&db).await, expected, "restored rows differ from the originals");
    assert_eq!(memory_contents(&mem0, "proj"), memories_before, "restored memories differ");
    let restored_from: BTreeSet<String> = mem0
        .memories("proj")
        .iter()
        .filter_map(|m| m["metadata"]["restored_from"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(restored_from.len(), 250);
    let creates: Vec<_> =
        mem0.requests().into_iter().filter(|r| r.method == "POST" && r.url == "/v1/memories/").collect();
    assert_eq!(creates.len(), 250);
    for create in &creates {
        let body: Value = serde_json::from_str(&create.body).unwrap();
        assert_eq!(
            (create.header("authorization"), &body["user_id"], &body["infer"]),
            (Some("Token key-1"), &Value::from("proj"), &Value::Bool(false))
        );
    }
    assert_eq!(mem0.memories("someone").len(), 10);

    // A second undo of the same run is refused.
    let again = env.run(CLEANUP, &["undo", &run_id, "--yes"]);
    again.expect_code(2);
    assert!(again.stderr.contains("already undone"), "{}", again.dump());
    assert_eq!(mem0.memories("proj").len(), 1000);

    // A tampered journal is refused, naming the file, and nothing is restored.
    let out = env.run(CLEANUP, &["aggressive", "--yes", "--format", "json"]);
    out.expect_code(1);
    let second = out.json()["run_id"].as_str().unwrap().to_owned();
    // Memories are never restored for another user than the journal's.
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(&config.replace("project_name = \"proj\"", "project_name = \"intruder\""));
    let creates_before = mem0.requests().iter().filter(|r| r.method == "POST").count();
    let rows_now = rows_by_key(&db).await;
    let intruder = env.run(CLEANUP, &["undo", &second, "--yes"]);
    intruder.expect_code(1);
    assert!(intruder.stdout.contains("refusing to restore them for another user"), "{}", intruder.dump());
    assert!(intruder.stdout.contains("refusing to restore them into another project"), "{}", intruder.dump());
    assert_eq!(rows_by_key(&db).await, rows_now);
    assert_eq!(mem0.requests().iter().filter(|r| r.method == "POST").count(), creates_before);
    assert!(mem0.memories("intruder").is_empty());
    env.write_config(&config);
    let file = env.state_dir().join("cleanup/journal").join(&second).join("postgres-main.jsonl.gz");
    let mut data = std::fs::read(&file).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x01;
    std::fs::write(&file, &data).unwrap();
    let (rows_now, memories_now) = (rows_by_key(&db).await, mem0.memories("proj").len());
    let refused = env.run(CLEANUP, &["undo", "latest", "--yes"]);
    refused.expect_code(5);
    assert!(refused.stderr.contains(&file.display().to_string()), "{}", refused.dump());
    assert_eq!((rows_by_key(&db).await, mem0.memories("proj").len()), (rows_now, memories_now));
    eprintln!(
        "figures: cleanup of 2,450 rows and 1,000 memories {cleanup_time:?}, journal {journal_bytes} bytes for 750 items, undo {undo_time:?}"
    );
}

/// Kills primary `index` (which has no replica) and waits until the others flag it failed;
/// returns its port.
fn kill_primary_until_flagged(cluster: &mut cache_tests::RedisCluster, index: usize) -> u16 {
    let lost = cluster.nodes()[index].port();
    cluster.kill_primary(index);
    let flagged = wait_until(Duration::from_secs(20), || {
        let nodes: String =
            redis::cmd("CLUSTER").arg("NODES").query(&mut cluster.nodes()[0].connection()).unwrap_or_default();
        nodes.lines().any(|l| l.contains(&format!(":{lost}@")) && l.contains("fail") && !l.contains("fail?"))
    });
    assert!(flagged, "the cluster did not flag the killed primary");
    lost
}

#[test]
fn a_lost_primary_is_reported_never_skipped() {
    let Some(mut cluster) = cache_tests::RedisCluster::start() else { return };
    for i in 0..300 {
        cluster.set_aged(&format!("app:search:k{i}"), b"v", 0, 9 * DAY);
    }
    // The others flag it failed; its slots have no other primary.
    let lost = kill_primary_until_flagged(&mut cluster, 2);
    let env = TestEnv::new();
    env.write_config(&redis_config(&cluster.nodes()[0].url()));
    let out = env.run(CLEANUP, &["light", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(4);
    let target = &out.json()["targets"][0];
    assert!(target["notes"].to_string().contains("2 of 3 primaries"), "{target:#}");
    assert!(target["errors"].to_string().contains(&format!("primary 127.0.0.1:{lost}")), "{target:#}");
}

#[test]
fn a_lost_primary_is_never_replaced_by_a_seed_node_nor_its_errors_read_as_key_facts() {
    let Some(mut cluster) = cache_tests::RedisCluster::start() else { return };
    for i in 0..900 {
        cluster.set_aged(&format!("app:embedding:k{i}"), b"v", 3_600_000, DAY);
    }
    let lost = kill_primary_until_flagged(&mut cluster, 2);
    // Seeds: the lost node's per-node connection must not fall back to one of these.
    let (first, second) = (cluster.nodes()[0].url(), cluster.nodes()[1].url());
    let env = TestEnv::new();
    env.write_config(
        &redis_config(&first)
            .replace("namespace = \"app:\"\n", &format!("namespace = \"app:\"\nurls = [\"{second}\", \"{first}\"]\n")),
    );
    let out = env.run(crate::DEBUG, &["memory", "--format", "json"]);
    let report = out.json();
    let text = report.to_string();
    assert!(text.contains("2 of 3 primaries"), "{}", out.dump());
    assert!(!text.contains("3 of 3 primaries"), "{}", out.dump());
    assert!(text.contains(&format!("127.0.0.1:{lost}")), "the lost primary is not named: {}", out.dump());
    assert!(!out.stderr.contains('\u{1b}'), "colour codes in a log that is no terminal: {:?}", out.stderr);
    // The live primaries answer CLUSTERDOWN: their keys are not "without a TTL".
    let out = env.run(CLEANUP, &["light", "--dry-run", "--tier", "redis", "--format", "json"]);
    let target = &out.json()["targets"][0];
    assert_ne!(out.code(), 0, "{}", out.dump());
    assert!(!target.to_string().contains("gets 2h"), "TTLs offered to keys that have one: {target:#}");
    for refusal in ["OBJECT IDLETIME refused", "MEMORY USAGE refused"] {
        assert!(!target.to_string().contains(refusal), "CLUSTERDOWN read as a refusal: {target:#}");
    }
    assert!(target["errors"].to_string().contains("The cluster is down"), "{target:#}");
}

#[test]
fn smart_judges_the_applications_hit_ratio_of_the_last_interval_not_its_own_scans() {
    let Some((redis, env)) = smart_by_entries(1000) else { return };
    let mut conn = redis.connection();
    // No analytics interval yet: the hit ratio is unknown, not INFO's since-start figure.
    let first = env.run(CLEANUP, &["smart", "--dry-run", "--format", "json"]).json();
    assert_eq!(first["mode"], "light", "{first:#}");
    assert!(first["decision"]["reason"].as_str().unwrap().contains("hit ratio unknown"), "{first:#}");
    env.run(crate::ANALYTICS, &["collect"]).expect_code(0);
    // The application: 395 hits of 1,000 lookups; the toolkit: a full scan of every key.
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        let key = if i < 395 { format!("app:search:k{i}") } else { format!("app:absent:{i}") };
        pipe.cmd("GET").arg(key).ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    env.run(CLEANUP, &["light", "--dry-run"]).expect_code(0);
    env.run(crate::ANALYTICS, &["collect"]).expect_code(0);
    let out = env.run(CLEANUP, &["smart", "--dry-run", "--format", "json"]);
    let report = out.json();
    assert_eq!(report["mode"], "targeted", "{report:#}");
    assert_eq!(report["decision"]["reason"], "hit ratio 39.5% < 60%", "{report:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_table_without_the_configured_columns_is_misconfigured_naming_the_setting() {
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    pg.client("app")
        .await
        .batch_execute(
            "CREATE TABLE cache_entries (cache_key text PRIMARY KEY, value jsonb, project_name text,
               category text, access_count int, accessed_at timestamptz, expires_at timestamptz);
             INSERT INTO cache_entries SELECT 'k' || i, '{}', 'default', 'c', 0, now(), now() - interval '1 day'
               FROM generate_series(1, 2000) i;",
        )
        .await
        .unwrap();
    let env = TestEnv::new();
    env.write_config(&format!("[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n"));
    let out = env.run(CLEANUP, &["light", "--yes", "--tier", "postgres", "--format", "json"]);
    let errors = out.json()["targets"][0]["errors"].to_string();
    assert!(errors.contains("`key` (postgres[0].columns.key)"), "{}", out.dump());
    assert!(!errors.contains("does not exist"), "{}", out.dump());
    assert_ne!(out.code(), 0);
    let rows: i64 = pg.client("app").await.query_one("SELECT count(*) FROM cache_entries", &[]).await.unwrap().get(0);
    assert_eq!(rows, 2000, "nothing is deleted from a misconfigured table");
}

#[test]
fn a_rotation_killed_mid_compression_is_completed_by_the_next_run() {
    let env = TestEnv::new();
    let dir = env.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let old = b"the rotated log the kill left uncompressed\n".repeat(500);
    let live = b"line of a busy log\n".repeat(800);
    // What a kill during the compression leaves: the renamed log and a half-written .gz.tmp.
    std::fs::write(dir.join("app.log.1"), &old).unwrap();
    std::fs::write(dir.join("app.log.1.gz.tmp"), b"\x1f\x8b\x08half").unwrap();
    touch(&dir.join("app.log.2.gz"), 10, Duration::from_secs(DAY));
    std::fs::write(dir.join("app.log"), &live).unwrap();
    env.write_config(&format!(
        "[[logs]]\nname = \"app\"\npath = \"{}\"\nrotate_size = \"10 KiB\"\nkeep = 5\n",
        dir.display()
    ));
    let out = env.run(CLEANUP, &["logs", "--yes", "--format", "json"]);
    out.expect_code(0);
    let target = &out.json()["targets"][0];
    assert!(target["notes"].to_string().contains("completed the interrupted rotation"), "{target:#}");
    assert_eq!(target["rotated"], 1, "{target:#}");
    // Nothing lost, nothing left over: the live log is .1.gz, the interrupted one .2.gz.
    assert_eq!(gunzip(&dir.join("app.log.1.gz")), live);
    assert_eq!(gunzip(&dir.join("app.log.2.gz")), old);
    assert!(dir.join("app.log.3.gz").exists());
    for leftover in ["app.log.1", "app.log.1.gz.tmp"] {
        assert!(!dir.join(leftover).exists(), "{leftover} left behind");
    }
}

#[test]
fn a_run_filtered_by_tier_says_which_configured_targets_it_did_not_clean() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&redis_config(&redis.url()));
    let out = env.run(CLEANUP, &["light", "--dry-run", "--tier", "redis", "--format", "json"]);
    out.expect_code(0);
    let not_cleaned = out.json()["not_cleaned"].clone();
    assert_eq!(not_cleaned, serde_json::json!(["files/toolkit-reports", "logs/toolkit"]), "{}", out.dump());
    let text = env.run(CLEANUP, &["light", "--dry-run", "--tier", "redis"]);
    assert!(text.stdout.contains("not cleaned (--tier): files/toolkit-reports, logs/toolkit"), "{}", text.dump());
    // Unfiltered, nothing is left out.
    let all = env.run(CLEANUP, &["light", "--dry-run", "--format", "json"]).json();
    assert!(all.get("not_cleaned").is_none(), "{all:#}");
}

#[test]
fn keys_whose_name_dates_them_go_past_their_max_age_in_every_mode() {
    let Some(redis) = RedisServer::start() else { return };
    let now = chrono::Utc::now();
    let secs_ago = |days: i64| (now - chrono::Duration::days(days)).timestamp();
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        // Seed 004: evaluation results named by their time, read often (never idle).
        pipe.cmd("SET").arg(format!("evaluation:run{i}:{}", secs_ago(10))).arg("r").ignore();
        pipe.cmd("SET").arg(format!("evaluation:run{i}:{}", secs_ago(2))).arg("r").ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("evaluation:ms{i}:{}", secs_ago(8) * 1000)).arg("r").ignore();
        pipe.cmd("SET").arg(format!("evaluation:keep:{i}:{}", secs_ago(30))).arg("r").ignore();
    }
    let old_day = (now - chrono::Duration::days(40)).format("%Y-%m-%d");
    let today = now.format("%Y%m%d");
    for i in 0..50 {
        pipe.cmd("SET").arg(format!("report:{i}:{old_day}")).arg("r").ignore();
        pipe.cmd("SET").arg(format!("report:{i}:{today}")).arg("r").ignore();
    }
    pipe.cmd("SET").arg("evaluation:odd:not-a-time").arg("r").ignore();
    let () = pipe.query(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nnamespace = \"evaluation:\"\n\
         prefixes = [{{ prefix = \"evaluation:\", age_from = \"timestamp\", max_age = \"7days\" }}, \
         {{ prefix = \"report:\", age_from = \"date\", max_age = \"30days\" }}]\n\
         protected = [\"evaluation:keep:*\"]\n[cleanup]\nmax_delete_share = \"60%\"\n",
        redis.url()
    ));
    // The dry run says why, and changes nothing.
    let dry = env.run(CLEANUP, &["light", "--dry-run", "--tier", "redis", "--format", "json"]);
    dry.expect_code(0);
    let target = &dry.json()["targets"][0];
    assert_eq!(target["selected"], 450, "{}", dry.dump());
    assert!(target["items"].to_string().contains("its name dates it"), "{target:#}");
    assert_eq!(redis.keys().len(), 901);
    // Even the lightest mode removes them: it is the pattern's rule, not a judgement of use.
    let out = env.run(CLEANUP, &["light", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(0);
    let keys = redis.keys();
    let count = |f: &dyn Fn(&str) -> bool| keys.iter().filter(|k| f(k)).count();
    assert_eq!(count(&|k| k.ends_with(&secs_ago(10).to_string()) && k.starts_with("evaluation:run")), 0);
    assert_eq!(count(&|k| k.starts_with("evaluation:run")), 300, "the 2-day-old ones stay");
    assert_eq!(count(&|k| k.starts_with("evaluation:ms")), 0, "millisecond timestamps read too");
    assert_eq!(count(&|k| k.starts_with("evaluation:keep:")), 100, "protected keys stay, however old");
    assert_eq!(count(&|k| k.starts_with("report:") && k.ends_with(&old_day.to_string())), 0);
    assert_eq!(count(&|k| k.starts_with("report:")), 50);
    assert!(keys.contains(&"evaluation:odd:not-a-time".to_owned()), "no time in the name: kept");
    // A rule missing half is refused, naming the key.
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nprefixes = [{{ prefix = \"evaluation:\", age_from = \"timestamp\" }}]\n",
        redis.url()
    ));
    let out = env.run(CLEANUP, &["light", "--dry-run"]);
    out.expect_code(3);
    assert!(out.stderr.contains("redis[0].prefixes[0].max_age"), "{}", out.dump());
}

#[test]
fn a_files_target_given_as_a_glob_touches_only_what_it_matches() {
    let env = TestEnv::new();
    let base = env.path("tmp");
    // Seed 004's `find /tmp/benchmark_* -type f -mtime +1 -delete`.
    for (rel, age) in [
        ("benchmark_1/run.json", 3 * DAY),
        ("benchmark_1/deep/trace.bin", 3 * DAY),
        ("benchmark_2.log", 3 * DAY),
        ("benchmark_3.log", HOUR),
        ("other/benchmark_9.json", 3 * DAY),
        ("unrelated.txt", 3 * DAY),
    ] {
        let path = base.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        touch(&path, 4096, Duration::from_secs(age));
    }
    env.write_config(&format!(
        "[[files]]\nname = \"bench\"\npath = \"{}/benchmark_*\"\nttl = \"1day\"\nmax_size = \"1 MiB\"\n",
        base.display()
    ));
    // Health sees what the pattern matches: four files, not the six of the base.
    let health = env.run(crate::HEALTH, &["check", "--tier", "files", "--format", "json"]);
    let report = health.json();
    let target = report["targets"].as_array().unwrap().iter().find(|t| t["name"] == "bench").unwrap().clone();
    assert!(target["checks"].to_string().contains("in 4 files"), "{target:#}");
    let out = env.run(CLEANUP, &["files", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["targets"][0]["examined"], 4, "{}", out.dump());
    for (rel, left) in [
        ("benchmark_1/run.json", false),
        ("benchmark_1/deep/trace.bin", false),
        ("benchmark_2.log", false),
        ("benchmark_3.log", true),
        ("other/benchmark_9.json", true),
        ("unrelated.txt", true),
    ] {
        assert_eq!(base.join(rel).exists(), left, "{rel}");
    }
}
