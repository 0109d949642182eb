//! Every exit code each tool documents, driven one by one (`cache_core::exit::TOOLS`, from which
//! `docs/exit-codes.md` is generated): one small redis-server for a target that is up, a
//! [`Blackhole`] for one that is not, an invalid configuration, a state directory that is a
//! regular file, and the job's lock held by this test through its lock file's `flock`.
//!
//! The cases of one tool run one after the other (two backups of one server at once would
//! compete for its BGSAVE); the tools run side by side.

use std::collections::BTreeSet;
use std::fs::File;
use std::time::Duration;

use cache_core::exit::{self, TOOLS};
use cache_tests::{Blackhole, RedisServer, RunOutput, TestEnv};

use crate::{ANALYTICS, BACKUP, CLEANUP, DEBUG, HEALTH, OPTIMIZER, SCHEDULER};

/// What a case sets up before running the tool.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// The one Redis target is up.
    Up,
    /// The one Redis target is up, judged slow by a latency threshold no server meets.
    Slow,
    /// Two Redis targets: one up, one blackholed.
    Partial,
    /// The only Redis target is blackholed.
    Down,
    /// The configuration has a key that does not exist.
    BadConfig,
    /// The state directory is a regular file.
    StateIsAFile,
    /// The target is up and backed up, and the backup's manifest then records one key more
    /// than it holds (for a drill to find).
    AlteredBackup,
    /// The target is up and this test holds the job's lock.
    Locked(&'static str),
}

/// One run of a tool and the code it must end with.
struct Case {
    bin: &'static str,
    tool: &'static str,
    setup: Setup,
    args: &'static [&'static str],
    code: u8,
    /// Said on stdout or stderr (empty: not checked).
    says: &'static str,
}

const fn case(
    (bin, tool): (&'static str, &'static str),
    setup: Setup,
    args: &'static [&'static str],
    code: u8,
    says: &'static str,
) -> Case {
    Case { bin, tool, setup, args, code, says }
}

/// The table: each documented code of each tool at least once.
fn cases() -> Vec<Case> {
    use Setup::*;
    use exit::{CONFIG, LOCKED, MISMATCH, PARTIAL, STATE, SUCCESS, UNREACHABLE, USAGE, plugin};
    let cleanup = (CLEANUP, "cache-cleanup");
    let backup = (BACKUP, "cache-backup");
    let analytics = (ANALYTICS, "cache-analytics");
    let optimizer = (OPTIMIZER, "cache-optimizer");
    let debug = (DEBUG, "cache-debug");
    let scheduler = (SCHEDULER, "cache-scheduler");
    let health = (HEALTH, "cache-health");
    vec![
        case(cleanup, Up, &["light", "--yes"], SUCCESS, ""),
        case(cleanup, Partial, &["light", "--yes"], PARTIAL, "unreachable"),
        case(cleanup, Up, &["light", "--no-such-flag"], USAGE, ""),
        case(cleanup, Up, &["light"], USAGE, "--yes"),
        case(cleanup, BadConfig, &["light", "--yes"], CONFIG, "no_such_key"),
        case(cleanup, Down, &["light", "--yes"], UNREACHABLE, "unreachable"),
        case(cleanup, StateIsAFile, &["light", "--yes"], STATE, "is not a directory"),
        case(cleanup, Locked("cleanup"), &["light", "--yes"], LOCKED, "holds its lock"),
        case(backup, Up, &["create"], SUCCESS, ""),
        case(backup, Partial, &["create"], PARTIAL, "PARTIAL"),
        case(backup, Up, &["create", "--level", "0"], USAGE, ""),
        case(backup, Up, &["create", "--only", "memory"], USAGE, "no part selected"),
        case(backup, BadConfig, &["create"], CONFIG, "no_such_key"),
        // The configuration and state were archived, but no target was reached.
        case(backup, Down, &["create"], UNREACHABLE, "unreachable"),
        // Nothing at all was backed up.
        case(backup, Down, &["create", "--only", "redis"], UNREACHABLE, "every target was unreachable"),
        case(backup, StateIsAFile, &["create"], STATE, "is not a directory"),
        case(backup, Locked("backup"), &["create"], LOCKED, "holds its lock"),
        case(backup, AlteredBackup, &["drill"], MISMATCH, "the backup recorded"),
        case(analytics, Up, &["collect"], SUCCESS, ""),
        case(analytics, Partial, &["collect"], PARTIAL, "unreachable"),
        case(analytics, Up, &["collect", "--no-such-flag"], USAGE, ""),
        case(analytics, BadConfig, &["collect"], CONFIG, "no_such_key"),
        case(analytics, Down, &["collect"], UNREACHABLE, "unreachable"),
        case(analytics, StateIsAFile, &["collect"], STATE, "is not a directory"),
        case(analytics, Locked("analytics-collect"), &["collect"], LOCKED, "holds its lock"),
        case(optimizer, Up, &["run", "--yes"], SUCCESS, ""),
        case(optimizer, Partial, &["run", "--yes"], PARTIAL, "unreachable"),
        case(optimizer, Up, &["run", "--no-such-flag"], USAGE, ""),
        case(optimizer, BadConfig, &["run", "--yes"], CONFIG, "no_such_key"),
        // Every tier unreachable: cron must hear of it.
        case(optimizer, Down, &["run", "--yes"], UNREACHABLE, "unreachable"),
        case(optimizer, Down, &["analyze"], UNREACHABLE, "unreachable"),
        case(optimizer, StateIsAFile, &["run", "--yes"], STATE, "is not a directory"),
        case(optimizer, Locked("optimize"), &["run", "--yes"], LOCKED, "holds its lock"),
        case(debug, Up, &["connections"], SUCCESS, ""),
        case(debug, Partial, &["connections"], PARTIAL, "unreachable"),
        case(debug, Up, &["connections", "--no-such-flag"], USAGE, ""),
        case(debug, BadConfig, &["connections"], CONFIG, "no_such_key"),
        case(debug, Down, &["connections"], UNREACHABLE, "unreachable"),
        case(debug, Down, &["memory"], UNREACHABLE, "unreachable"),
        case(debug, Down, &["security"], UNREACHABLE, "not audited"),
        // A target without a password and a configuration others may read score under 100.
        case(debug, Up, &["security", "--fail-under", "100"], MISMATCH, "is under --fail-under 100"),
        case(debug, StateIsAFile, &["connections"], STATE, "is not a directory"),
        case(scheduler, Up, &["status"], SUCCESS, ""),
        case(scheduler, Up, &["install", "--cron-d", "/nonexistent-cache-toolkit-dir/cache-toolkit"], PARTIAL, ""),
        case(scheduler, Up, &["status", "--no-such-flag"], USAGE, ""),
        case(scheduler, BadConfig, &["status"], CONFIG, "no_such_key"),
        case(scheduler, StateIsAFile, &["status"], STATE, "is not a directory"),
        case(health, Up, &["check", "--tier", "redis"], plugin::OK, ""),
        case(health, Slow, &["check", "--tier", "redis"], plugin::WARNING, ""),
        case(health, Down, &["check", "--tier", "redis"], plugin::CRITICAL, ""),
        case(health, Up, &["check", "--no-such-flag"], plugin::UNKNOWN, ""),
        case(health, BadConfig, &["check", "--tier", "redis"], plugin::UNKNOWN, "no_such_key"),
        case(health, StateIsAFile, &["check", "--tier", "redis"], plugin::UNKNOWN, "is not a directory"),
        case(health, Locked("health-check"), &["check", "--tier", "redis"], exit::LOCKED, "holds its lock"),
    ]
}

/// A Redis target; a blackholed one answers nothing within a short timeout.
fn redis_target(name: &str, url: &str, extra: &str) -> String {
    format!("[[redis]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}")
}

/// Runs one case in its own environment.
fn run(case: &Case, redis: &RedisServer, hole: &Blackhole) -> RunOutput {
    let env = TestEnv::new();
    let up = redis_target("main", &redis.url(), "");
    let down =
        redis_target("gone", &format!("redis://{}", hole.addr()), "connect_timeout = \"300ms\"\ntimeout = \"300ms\"\n");
    let mut lock = None;
    match case.setup {
        Setup::Up => env.write_config(&up),
        Setup::Slow => env.write_config(&redis_target("main", &redis.url(), "latency_warn = \"1us\"\n")),
        Setup::Partial => env.write_config(&format!("{up}{down}")),
        Setup::Down => env.write_config(&down),
        Setup::BadConfig => env.write_config(&format!("{up}no_such_key = 1\n")),
        Setup::StateIsAFile => {
            std::fs::write(env.state_dir(), "not a directory\n").unwrap();
            env.write_config(&up)
        }
        Setup::AlteredBackup => {
            let written = env.write_config(&up);
            redis::cmd("SET").arg("drill:key").arg("1").query::<()>(&mut redis.connection()).unwrap();
            env.run(case.bin, &["create", "--only", "redis"]).expect_code(0);
            let backups = env.state_dir().join("backups");
            let dir = std::fs::read_dir(&backups).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
            let path = dir.join("manifest.json");
            let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let dump = &mut manifest["sources"][0]["figures"]["dumps"][0];
            let keys = dump["keys_after"].as_u64().unwrap() + 1;
            dump["keys_before"] = keys.into();
            dump["keys_after"] = keys.into();
            std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
            written
        }
        Setup::Locked(job) => {
            let dir = env.state_dir().join("locks");
            std::fs::create_dir_all(&dir).unwrap();
            let file = File::create(dir.join(format!("{job}.lock"))).unwrap();
            file.try_lock().unwrap();
            lock = Some(file);
            env.write_config(&up)
        }
    };
    let out = env.run(case.bin, case.args);
    if matches!(case.setup, Setup::StateIsAFile) {
        // An unusable state directory is refused, never replaced.
        assert_eq!(std::fs::read_to_string(env.state_dir()).unwrap(), "not a directory\n", "{}", out.dump());
    }
    drop(lock);
    out
}

#[test]
fn every_tool_returns_each_documented_code() {
    let Some(redis) = RedisServer::start() else { return };
    let hole = Blackhole::new();
    let cases = cases();

    // The table drives exactly the codes each tool documents.
    for tool in TOOLS {
        let documented: BTreeSet<u8> = tool.codes.iter().map(|(code, _)| *code).collect();
        let driven: BTreeSet<u8> = cases.iter().filter(|c| c.tool == tool.tool).map(|c| c.code).collect();
        assert_eq!(driven, documented, "{}: the cases' codes against cache_core::exit::TOOLS", tool.tool);
    }
    assert!(cases.iter().all(|c| TOOLS.iter().any(|t| t.tool == c.tool)));

    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = TOOLS
            .iter()
            .map(|tool| {
                let (cases, redis, hole) = (&cases, &redis, &hole);
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for case in cases.iter().filter(|c| c.tool == tool.tool) {
                        let out = run(case, redis, hole);
                        let said = format!("{}{}", out.stdout, out.stderr);
                        let name = tool.name(case.code);
                        let line = format!(
                            "{:<16} {:<12} {:>3} {name:<12} {:?}",
                            case.tool,
                            format!("{:?}", case.setup).split('(').next().unwrap_or_default(),
                            case.code,
                            case.args
                        );
                        if out.code() != i32::from(case.code) || !said.contains(case.says) {
                            failures.push(format!(
                                "{line}: got {}, wanted {} saying {:?}\n{}",
                                out.code(),
                                case.code,
                                case.says,
                                out.dump()
                            ));
                        } else {
                            eprintln!("ok {line} in {:?}", out.elapsed);
                        }
                        // Every run ends within its bounded waits.
                        assert!(out.elapsed < Duration::from_secs(20), "{line}: took {:?}", out.elapsed);
                    }
                    failures
                })
            })
            .collect();
        runs.into_iter().flat_map(|run| run.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}
