//! The fault suite: tools killed at random points, corrupt state, and the invariants that must
//! hold after each (state parses, protected keys survive, nothing partial looks complete, the
//! next run completes and leaves no leftovers, a corrupt file is never replaced).
//!
//! Every run does a quick subset (a few kills per scenario); `cargo xtask faults` runs the
//! same tests with `FAULT_KILLS` kills each (and `FAULT_SEED` to replay a sequence).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cache_tests::{RedisServer, TestEnv};

use crate::{ANALYTICS, BACKUP, CLEANUP, HEALTH};

/// Kills per scenario: `FAULT_KILLS`, else 4.
#[allow(clippy::disallowed_methods, reason = "a test variable, not one of the toolkit's `EnvVars`")]
fn kills() -> u64 {
    std::env::var_os("FAULT_KILLS").and_then(|v| v.to_str()?.parse().ok()).unwrap_or(4)
}

/// A small deterministic generator (`FAULT_SEED`, else a fixed seed), so a failing sequence
/// can be replayed.
struct Lcg(u64);

impl Lcg {
    #[allow(clippy::disallowed_methods, reason = "a test variable, not one of the toolkit's `EnvVars`")]
    fn new() -> Self {
        let seed = std::env::var_os("FAULT_SEED").and_then(|v| v.to_str()?.parse().ok()).unwrap_or(0x5eed);
        eprintln!("faults: FAULT_SEED={seed}");
        Self(seed)
    }

    /// A delay in `[lo, hi)` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        Duration::from_millis(lo + (self.0 >> 33) % (hi - lo))
    }
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The state directory's invariants after a kill: every JSON document parses, and every line
/// of every history parses except at most a torn last one (which the next append cuts).
fn state_parses(state: &Path) -> Result<usize, String> {
    let mut checked = 0;
    for path in files(state) {
        let name = path.to_string_lossy().into_owned();
        if name.contains(".tmp") || name.ends_with(".lock") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        if name.ends_with(".jsonl") {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            for (i, line) in lines.iter().enumerate() {
                let torn_tail = i == lines.len() - 1 && !line.ends_with('\n');
                if serde_json::from_str::<serde_json::Value>(line.trim()).is_err() && !torn_tail {
                    return Err(format!("{name} line {}: {line:?}", i + 1));
                }
            }
        } else if name.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| format!("{name}: {e}"))?;
        }
        checked += 1;
    }
    Ok(checked)
}

/// Temporary files a finished run must not leave behind.
fn leftovers(state: &Path) -> Vec<PathBuf> {
    files(state).into_iter().filter(|p| p.to_string_lossy().contains(".tmp-")).collect()
}

/// Runs `args` and SIGKILLs it after `after`; whether it was still running (a kill that came
/// after the end proves nothing).
fn kill_after(env: &TestEnv, tool: &str, args: &[&str], after: Duration) -> bool {
    let mut child = env.command(tool, args).spawn().unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    running
}

#[test]
fn a_cleanup_killed_at_random_points_keeps_every_invariant_and_the_next_run_completes() {
    let Some(redis) = RedisServer::start() else { return };
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.cmd("SET").arg(format!("app:search:{i}")).arg("v").ignore();
        if i % 4 == 0 {
            pipe.cmd("SET").arg(format!("app:session:{i}")).arg("v").ignore();
        }
    }
    pipe.query::<()>(&mut redis.connection()).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nnamespace = \"app:\"\n\
         prefixes = [{{ prefix = \"app:search:\", ttl = \"30m\" }}, {{ prefix = \"app:session:\" }}]\n\
         protected = [\"app:session:*\"]\n[cleanup]\nbatch_size = 50\n",
        redis.url()
    ));
    let sessions = || -> usize {
        redis::cmd("KEYS").arg("app:session:*").query::<Vec<String>>(&mut redis.connection()).unwrap().len()
    };
    let mut rng = Lcg::new();
    let (mut kills_done, mut checks) = (0, 0);
    for _ in 0..kills() {
        kills_done += u64::from(kill_after(&env, CLEANUP, &["light", "--yes"], rng.millis(20, 400)));
        assert_eq!(sessions(), 5000, "a protected key was lost to a kill");
        checks += state_parses(&env.state_dir()).unwrap_or_else(|e| panic!("state after a kill: {e}"));
    }
    assert!(kills_done > 0, "no kill came while the cleanup ran");
    let out = env.run(CLEANUP, &["light", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(sessions(), 5000);
    checks += state_parses(&env.state_dir()).unwrap_or_else(|e| panic!("state after the run: {e}"));
    let without_ttl: i64 = redis::Script::new(
        "local n = 0 for _, k in ipairs(redis.call('KEYS', 'app:search:*')) do \
         if redis.call('PTTL', k) == -1 then n = n + 1 end end return n",
    )
    .invoke(&mut redis.connection())
    .unwrap();
    assert_eq!(without_ttl, 0, "the run after the kills did not finish the work");
    assert!(leftovers(&env.state_dir()).is_empty(), "{:?}", leftovers(&env.state_dir()));
    eprintln!("faults: cleanup: {kills_done} kills, {checks} state files checked, all invariants held");
}

#[test]
fn a_backup_killed_at_random_points_never_looks_complete_and_the_next_one_is() {
    let Some(redis) = RedisServer::start() else { return };
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(200_000).arg("key").arg(100).query(&mut redis.connection()).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nlevel = 9\nthreads = 1\nredis_method = \"logical\"\n",
        redis.url()
    ));
    let mut rng = Lcg::new();
    let mut interrupted = 0;
    for _ in 0..kills() {
        interrupted += u64::from(kill_after(&env, BACKUP, &["create"], rng.millis(50, 1500)));
        let list = env.run(BACKUP, &["list", "--format", "json"]).json();
        for b in list["backups"].as_array().unwrap() {
            // Whatever is listed as a backup verifies: a killed one is never among them.
            let id = b["id"].as_str().unwrap();
            env.run(BACKUP, &["verify", id]).expect_code(0);
        }
        state_parses(&env.state_dir()).unwrap_or_else(|e| panic!("state after a kill: {e}"));
    }
    assert!(interrupted > 0, "no kill came while the backup ran");
    let out = env.run(BACKUP, &["create", "--format", "json"]);
    out.expect_code(0);
    env.run(BACKUP, &["verify"]).expect_code(0);
    eprintln!("faults: backup: {interrupted} kills mid-run, every listed backup verified");
}

#[test]
fn a_corrupt_state_file_of_any_kind_is_never_replaced() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    // Every tool writes its state once.
    let runs: &[(&str, &[&str])] = &[
        (HEALTH, &["check"]),
        (HEALTH, &["check"]),
        (ANALYTICS, &["collect"]),
        (CLEANUP, &["light", "--yes"]),
        (BACKUP, &["create"]),
    ];
    for (tool, args) in runs {
        env.run(tool, args);
    }
    let documents: Vec<PathBuf> = files(&env.state_dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.to_string_lossy().contains("/backups/"))
        .collect();
    assert!(documents.len() >= 5, "{documents:?}");
    let garbage = b"{\"schema_version\": 1, \"torn";
    for doc in &documents {
        let before = std::fs::read(doc).unwrap();
        std::fs::write(doc, garbage).unwrap();
        for (tool, args) in runs {
            env.run(tool, args);
            assert_eq!(std::fs::read(doc).unwrap(), garbage, "{args:?} replaced the corrupt {}", doc.display());
        }
        std::fs::write(doc, before).unwrap();
    }
    eprintln!("faults: corrupt state: {} documents x {} runs, none replaced", documents.len(), runs.len());
}

/// A run: tool, arguments, the exit code it must end with.
type Run<'a> = (&'a str, &'a [&'a str], i32);

/// Each run that did not end within 5 s with its code, described.
fn late_or_wrong(env: &TestEnv, runs: &[Run<'_>]) -> Vec<String> {
    let mut failures = Vec::new();
    for (tool, args, code) in runs {
        let out = env.run(tool, args);
        if out.code() != *code || out.elapsed > Duration::from_secs(5) {
            failures.push(format!(
                "{args:?}: exit {} in {:?}, want {code} within 5 s\n{}",
                out.code(),
                out.elapsed,
                out.dump()
            ));
        }
    }
    failures
}

/// Sends `signal` (`STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    assert!(
        std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success()
    );
}

#[test]
fn a_frozen_redis_ends_every_tool_within_its_timeout_with_the_unreachable_code() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\ntimeout = \"500ms\"\nconnect_timeout = \"500ms\"\n",
        redis.url()
    ));
    // Frozen, as a server stuck in a fork or swapped out: connections open, nothing answers.
    signal(redis.pid(), "STOP");
    let runs: &[Run<'_>] = &[
        (HEALTH, &["check", "--tier", "redis"], 2),
        (CLEANUP, &["light", "--yes", "--tier", "redis"], 4),
        (BACKUP, &["create", "--only", "redis"], 4),
        (ANALYTICS, &["collect", "--tier", "redis"], 4),
        (crate::DEBUG, &["memory", "--tier", "redis"], 4),
        (crate::OPTIMIZER, &["run", "--tier", "redis", "--yes"], 4),
    ];
    let failures = late_or_wrong(&env, runs);
    signal(redis.pid(), "CONT");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Thawed, the same runs succeed.
    env.run(HEALTH, &["check", "--tier", "redis"]).expect_code(0);
    eprintln!("faults: frozen redis: {} tools, each ended in time with its code", runs.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_postgres_ends_every_tool_within_its_timeout_with_the_unreachable_code() {
    let Some(pg) = cache_tests::PgServer::start() else { return };
    let url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(crate::health_table_sql()).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[postgres]]\nname = \"main\"\nurl = \"{url}\"\ntimeout = \"500ms\"\nconnect_timeout = \"500ms\"\n"
    ));
    // The postmaster frozen: a new session is never forked, so every connect hangs.
    signal(pg.pid(), "STOP");
    let runs: &[Run<'_>] = &[
        (HEALTH, &["check", "--tier", "postgres"], 2),
        (CLEANUP, &["light", "--yes", "--tier", "postgres"], 4),
        (BACKUP, &["create", "--only", "postgres"], 4),
        (ANALYTICS, &["collect", "--tier", "postgres"], 4),
        (crate::OPTIMIZER, &["run", "--tier", "postgres", "--yes"], 4),
    ];
    let failures = late_or_wrong(&env, runs);
    signal(pg.pid(), "CONT");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    env.run(HEALTH, &["check", "--tier", "postgres"]).expect_code(0);
    eprintln!("faults: frozen postgres: {} tools, each ended in time with its code", runs.len());
}
