//! Run records: what stands for a job's run (dependencies, last success), what started a run,
//! and runs that ended early (SIGTERM, SIGINT, SIGKILL) recorded as `interrupted`.

use std::time::Duration;

use cache_tests::{RedisServer, TestEnv};
use serde_json::Value;

use crate::{ANALYTICS, BACKUP, CLEANUP, HEALTH, OPTIMIZER};

fn runs(env: &TestEnv) -> Vec<Value> {
    std::fs::read_to_string(env.state_dir().join("runs.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn job_file(env: &TestEnv, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(env.state_dir().join("jobs").join(name)).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

/// Sends `signal` (`TERM`, `INT`, `KILL`, `STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    assert!(
        std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success()
    );
}

fn redis_config(env: &TestEnv, redis: &RedisServer, timeout: &str) {
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\ntimeout = \"{timeout}\"\nconnect_timeout = \"{timeout}\"\n\
         [system]\ngpu = false\n",
        redis.url()
    ));
}

/// `cleanup-deep` needs a backup within 12 hours. Neither a dry run of any backup command nor
/// another backup command (prune, verify) is that backup; only `cache-backup create` is.
#[test]
fn only_a_real_backup_opens_the_deep_cleanup_gate() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    redis_config(&env, &redis, "5s");
    let deep = |env: &TestEnv| {
        env.run(CLEANUP, &["smart", "--yes", "--tier", "redis", "--scheduled", "cleanup-deep"]).expect_code(0);
        job_file(env, "cleanup-deep.json").unwrap()["outcome"].as_str().unwrap().to_owned()
    };
    // No backup exists: prune has nothing to do, in a dry run and for real.
    env.run(BACKUP, &["prune", "--dry-run"]).expect_code(0);
    env.run(BACKUP, &["prune", "--yes"]).expect_code(0);
    assert!(job_file(&env, "backup.success.json").is_none(), "a prune stood for the backup job");
    assert_eq!(deep(&env), "skipped", "the gate opened without a backup");
    let all = runs(&env);
    let prunes: Vec<(&str, &str)> = all
        .iter()
        .filter(|r| r["command"] == "cache-backup prune")
        .map(|r| (r["job"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(prunes, [("backup-prune", "dry_run"), ("backup-prune", "success")]);
    assert!(all.iter().all(|r| r["trigger"] == "manual" || r["job"] == "cleanup-deep"), "{all:#?}");
    let skipped = all.iter().find(|r| r["job"] == "cleanup-deep").unwrap();
    assert_eq!((&skipped["trigger"], &skipped["lock"]), (&Value::from("cron"), &Value::from("cleanup")));

    // The optimizer's dry run is no run of the optimize job either.
    env.run(OPTIMIZER, &["run", "--dry-run", "--tier", "redis"]).expect_code(0);
    assert!(job_file(&env, "optimize.success.json").is_none());
    assert!(job_file(&env, "optimize.json").is_none(), "a dry run became the job's last run");
    assert_eq!(runs(&env).last().unwrap()["outcome"], "dry_run");

    // A real backup does open it.
    env.run(BACKUP, &["create", "--only", "redis"]).expect_code(0);
    assert_eq!(job_file(&env, "backup.success.json").unwrap()["command"], "cache-backup create");
    assert_eq!(deep(&env), "success");
}

/// A run stopped by SIGTERM (or SIGINT) while it waits on a server ends at once with 143
/// (130), records `interrupted` and releases its lock.
#[test]
fn a_run_stopped_by_sigterm_or_sigint_is_recorded_as_interrupted() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    // A long timeout: the run waits on the frozen server until the signal comes.
    redis_config(&env, &redis, "60s");
    signal(redis.pid(), "STOP");
    for (name, code) in [("TERM", 143), ("INT", 130)] {
        let mut child = env.command(ANALYTICS, &["collect", "--tier", "redis", "--trigger", "oneoff"]).spawn().unwrap();
        let lock = env.state_dir().join("locks/analytics-collect.lock");
        let holding = cache_tests::wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("analytics-collect"))
        });
        assert!(holding, "the run never took its lock");
        std::thread::sleep(Duration::from_millis(300));
        signal(child.id(), name);
        let ended = cache_tests::wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
        if !ended {
            child.kill().unwrap();
        }
        assert!(ended, "SIG{name} did not end the run");
        assert_eq!(child.wait().unwrap().code(), Some(code), "SIG{name}");
        let last = runs(&env).pop().unwrap();
        assert_eq!(last["job"], "analytics-collect");
        assert_eq!(last["outcome"], "interrupted", "{last:#}");
        assert_eq!(last["trigger"], "oneoff");
        assert_eq!(last["exit_code"], code);
        assert!(last["error"].as_str().unwrap().contains(&format!("SIG{name}")), "{last:#}");
        assert_eq!(job_file(&env, "analytics-collect.json").unwrap()["outcome"], "interrupted");
        // The lock is free, and its holder cleared: nothing is taken for a killed run.
        assert_eq!(std::fs::read_to_string(&lock).unwrap(), "");
    }
    signal(redis.pid(), "CONT");
    env.run(ANALYTICS, &["collect", "--tier", "redis"]).expect_code(0);
    let outcomes: Vec<String> = runs(&env).iter().map(|r| r["outcome"].as_str().unwrap().to_owned()).collect();
    assert_eq!(outcomes, ["interrupted", "interrupted", "success"]);
}

/// A run killed with SIGKILL cannot write anything; the next run of its lock finds the
/// holder's record left in the lock file and records the killed run as `interrupted`.
#[test]
fn a_killed_run_is_recorded_as_interrupted_by_the_next_run() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    redis_config(&env, &redis, "60s");
    signal(redis.pid(), "STOP");
    let mut child = env.command(HEALTH, &["check", "--tier", "redis", "--scheduled", "health-check"]).spawn().unwrap();
    let killed_pid = child.id();
    let lock = env.state_dir().join("locks/health-check.lock");
    let holding = cache_tests::wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("\"job\":\"health-check\""))
    });
    assert!(holding, "the run never named itself in its lock");
    signal(killed_pid, "KILL");
    child.wait().unwrap();
    signal(redis.pid(), "CONT");
    assert!(runs(&env).is_empty(), "a killed run wrote its own record");
    env.run(HEALTH, &["check", "--tier", "redis", "--scheduled", "health-check"]).expect_code(0);
    let all = runs(&env);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!((&all[0]["outcome"], &all[0]["pid"]), (&Value::from("interrupted"), &Value::from(killed_pid)));
    assert_eq!((&all[0]["job"], &all[0]["trigger"]), (&Value::from("health-check"), &Value::from("cron")));
    assert!(all[0]["error"].as_str().unwrap().contains("killed"), "{:#}", all[0]);
    assert_eq!(all[1]["outcome"], "success");
    // Only once: the run that recorded it cleared the lock when it ended.
    env.run(HEALTH, &["check", "--tier", "redis"]).expect_code(0);
    assert_eq!(runs(&env).iter().filter(|r| r["outcome"] == "interrupted").count(), 1);
}

/// `--scheduled` means the same in every command: one that is no job of its own (a custom
/// job of the catalogue such as `cache-debug security`) runs inside the scheduled job, under
/// its gates and with a run record; `--wait`, meaningless there, is refused.
#[test]
fn any_command_run_as_a_scheduled_job_is_gated_and_recorded() {
    let env = TestEnv::new();
    env.write_config("[system]\ngpu = false\n");
    let audit = &["security", "--scheduled", "security-audit", "-q"];
    let ran = env.run(crate::DEBUG, audit);
    assert!(matches!(ran.code(), 0 | 1), "{}", ran.dump());
    let first = runs(&env).pop().unwrap();
    assert_eq!((&first["job"], &first["trigger"]), (&Value::from("security-audit"), &Value::from("cron")));
    assert_eq!(first["command"], "cache-debug security");
    assert_eq!(first["exit_code"], ran.code());
    // Automation stopped: the gate holds it like any scheduled job.
    env.run(crate::SCHEDULER, &["stop", "--reason", "maintenance"]).expect_code(0);
    env.run(crate::DEBUG, audit).expect_code(0);
    let skipped = runs(&env).pop().unwrap();
    assert_eq!((&skipped["job"], &skipped["outcome"]), (&Value::from("security-audit"), &Value::from("skipped")));
    let refused = env.run(crate::DEBUG, &["security", "--wait"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("--wait") && refused.stderr.contains("runs no job"), "{}", refused.dump());
}

/// `-q` prints nothing when a command succeeds, listings and tables included; a run that
/// does not succeed still says everything it had to say.
#[test]
fn quiet_prints_nothing_on_success_in_every_command_and_everything_otherwise() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    redis_config(&env, &redis, "5s");
    env.run(BACKUP, &["create", "--only", "redis", "-q"]).expect_code(0);
    for (bin, args) in [
        (BACKUP, &["list", "-q"][..]),
        (crate::SCHEDULER, &["status", "-q"]),
        (crate::DEBUG, &["config", "-q"]),
        (OPTIMIZER, &["rollback", "--list", "-q"]),
        (BACKUP, &["verify", "latest", "-q"]),
    ] {
        let out = env.run(bin, args);
        out.expect_code(0);
        assert_eq!(out.stdout, "", "{}", out.dump());
    }
    // Without -q the same listing prints.
    assert!(env.run(BACKUP, &["list"]).expect_code(0).stdout.contains("redis"));
    // A check that does not succeed prints its table under -q.
    drop(redis);
    let failed = env.run(HEALTH, &["check", "--tier", "redis", "-q"]);
    failed.expect_code(2);
    assert!(failed.stdout.contains("redis"), "{}", failed.dump());
}

/// A scheduled job with a `ping_url` tells its dead-man's switch when it starts and how it
/// ended (success, or its exit code), with its run id; and a run admitted by a maintenance
/// window records that window.
#[test]
fn a_scheduled_job_pings_its_dead_mans_switch_and_records_its_window() {
    let Some(redis) = RedisServer::start() else { return };
    let ping = cache_tests::HttpReceiver::start("OK");
    let check = "/ping/5b1f0d3e-2c4a-4f6b-9d8e-7a6c5b4d3e2f";
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [scheduler.jobs.backup]\nping_url = \"{}\"\n",
        redis.url(),
        ping.url(check)
    ));
    env.run(crate::SCHEDULER, &["windows", "add", "night", "--start", "0 0 * * *", "--duration", "24h"]).expect_code(0);
    env.run(BACKUP, &["create", "--only", "redis", "--scheduled", "backup", "-q"]).expect_code(0);
    let pings = ping.received();
    assert_eq!(pings.len(), 2, "{pings:#?}");
    let rid = pings[0].path.rsplit_once("rid=").unwrap().1.to_owned();
    assert_eq!(pings[0].path, format!("{check}/start?rid={rid}"));
    assert_eq!(pings[1].path, format!("{check}?rid={rid}"));
    let record = runs(&env).pop().unwrap();
    assert_eq!((&record["outcome"], &record["window"]), (&Value::from("success"), &Value::from("night")));
    // A run that fails reports its exit code.
    drop(redis);
    let failed = env.run(BACKUP, &["create", "--only", "redis", "--scheduled", "backup", "-q"]);
    assert_ne!(failed.code(), 0, "{}", failed.dump());
    let pings = ping.received();
    assert_eq!(pings.len(), 4, "{pings:#?}");
    assert!(pings[3].path.starts_with(&format!("{check}/{}?rid=", failed.code())), "{:?}", pings[3].path);
    assert!(String::from_utf8_lossy(&pings[3].body).contains("error"), "{:?}", pings[3]);
}

/// Nothing runs unattended for ever: a job past its deadline (`scheduler.job_deadline`, or the
/// job's own `deadline`) is stopped at its next await, exits 124 and is recorded `interrupted`.
#[test]
fn a_job_past_its_deadline_is_stopped_and_recorded_interrupted() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\ntimeout = \"60s\"\nconnect_timeout = \"60s\"\n\
         [system]\ngpu = false\n[scheduler.jobs.analytics-collect]\ndeadline = \"1s\"\n",
        redis.url()
    ));
    // The server frozen: without the deadline the run would wait a minute on it.
    signal(redis.pid(), "STOP");
    let out = env.run(ANALYTICS, &["collect", "--tier", "redis"]);
    signal(redis.pid(), "CONT");
    out.expect_code(124);
    assert!(out.elapsed < Duration::from_secs(10), "took {:?}", out.elapsed);
    assert!(out.stderr.contains("deadline"), "{}", out.dump());
    let last = runs(&env).pop().unwrap();
    assert_eq!((&last["job"], &last["outcome"]), (&Value::from("analytics-collect"), &Value::from("interrupted")));
    assert!(last["error"].as_str().unwrap().contains("deadline"), "{last:#}");
    // A deadline that is no bound is refused at load, naming the key.
    env.write_config("[scheduler]\njob_deadline = \"30days\"\n");
    let refused = env.run(ANALYTICS, &["collect"]);
    refused.expect_code(3);
    assert!(refused.stderr.contains("scheduler.job_deadline"), "{}", refused.dump());
}

#[test]
fn history_lists_runs_newest_first_by_job_outcome_and_time() {
    let env = cache_tests::TestEnv::new();
    let dead = cache_tests::free_port();
    env.write_config(&format!(
        "[[redis]]\nname = \"gone\"\nurl = \"redis://127.0.0.1:{dead}/0\"\nconnect_timeout = \"200ms\"\n"
    ));
    // Two failed health checks (the server is gone), then a mark, then a third, and a dry run.
    for _ in 0..2 {
        assert_ne!(env.run(crate::HEALTH, &["check", "--tier", "redis"]).code(), 0);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mark = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_ne!(env.run(crate::HEALTH, &["check", "--tier", "redis"]).code(), 0);
    env.run(crate::CLEANUP, &["light", "--dry-run", "--tier", "files"]).expect_code(0);
    let history = |args: &[&str]| {
        let mut all = vec!["history", "--format", "json"];
        all.extend_from_slice(args);
        let out = env.run(crate::SCHEDULER, &all);
        out.expect_code(0);
        out.json()
    };
    let all = history(&[]);
    assert_eq!(all["matched"], 4, "{all:#}");
    let started: Vec<&str> =
        all["executions"].as_array().unwrap().iter().map(|r| r["started_at"].as_str().unwrap()).collect();
    let mut sorted = started.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(started, sorted, "newest first");
    let failed = history(&["--job", "health-check", "--outcome", "failed"]);
    assert_eq!(failed["matched"], 3, "{failed:#}");
    assert!(failed["executions"].as_array().unwrap().iter().all(|r| r["job"] == "health-check"));
    let dry = history(&["--outcome", "dry_run"]);
    assert_eq!(dry["matched"], 1, "{dry:#}");
    let recent = history(&["--since", &mark, "--job", "health-check"]);
    assert_eq!(recent["matched"], 1, "{recent:#}");
    let one = history(&["--limit", "1"]);
    assert_eq!((one["matched"].as_u64(), one["executions"].as_array().unwrap().len()), (Some(4), 1));
    // Bad input names the argument and what it takes.
    let out = env.run(crate::SCHEDULER, &["history", "--outcome", "fine"]);
    out.expect_code(2);
    assert!(out.stderr.contains("--outcome") && out.stderr.contains("interrupted"), "{}", out.dump());
    let out = env.run(crate::SCHEDULER, &["history", "--since", "last tuesday"]);
    out.expect_code(2);
    assert!(out.stderr.contains("--since"), "{}", out.dump());
    // The text table says how many it shows.
    let text = env.run(crate::SCHEDULER, &["history", "--job", "health-check"]);
    assert!(text.stdout.contains("3 of 3 runs"), "{}", text.dump());
}
