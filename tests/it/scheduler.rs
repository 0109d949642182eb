//! `cache-scheduler` with the real cron (`crontab`), the real `systemd-analyze`, real Redis for
//! the fleet lock and as a target of installed lines run under `env -i`, and `kubernetes-validate`
//! (PyPI) for the manifests; the gates of scheduled runs, one-offs and `tick`, with time fixed by
//! `CACHE_NOW`.

use std::path::Path;
use std::process::Command;

use cache_tests::{RedisServer, TestEnv, find_binary, missing};
use serde_json::Value;

use crate::{ANALYTICS, BACKUP, CLEANUP, DEBUG, SCHEDULER};

const USER: &str = "cachetk";

fn crontab(args: &[&str], input: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new("crontab");
    cmd.args(["-u", USER]).args(args);
    if let Some(text) = input {
        use std::io::Write;
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        return child.wait_with_output().unwrap();
    }
    cmd.output().unwrap()
}

#[test]
fn the_crontab_block_is_accepted_by_cron_idempotent_keeps_other_lines_and_refuses_unbalanced_markers() {
    if find_binary("crontab", &[]).is_none() {
        missing("crontab (Debian package cron)");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        // Skipped locally (it would touch no one's crontab but a test user's); a failure under CI.
        missing("root, to install a test user's crontab");
        return;
    }
    if Command::new("id").arg(USER).output().is_ok_and(|o| !o.status.success()) {
        let out =
            Command::new("useradd").args(["--no-create-home", "--shell", "/usr/sbin/nologin", USER]).output().unwrap();
        assert!(out.status.success(), "useradd: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mine = "MAILTO=ops@example.com\n# my own job\n17 5 * * * /bin/true\n";
    assert!(crontab(&["-"], Some(mine)).status.success());
    let env = TestEnv::new();
    env.write_config("[scheduler]\nbin_dir = \"/usr/local/bin\"\n");
    let block = env.run(SCHEDULER, &["install", "--print"]);
    block.expect_code(0);
    env.run(SCHEDULER, &["install", "--user", USER]).expect_code(0);
    let installed = String::from_utf8(crontab(&["-l"], None).stdout).unwrap();
    assert_eq!(installed, format!("{mine}{}", block.stdout), "cron did not keep what was installed");
    // Each line carries the configuration and the state directory the installer used.
    let config = env.path("config.toml");
    let tail = format!("--config {} --state-dir {}", config.display(), env.state_dir().display());
    assert!(
        installed.contains(&format!(
            "*/15 * * * * /usr/local/bin/cache-analytics collect -q --scheduled analytics-collect {tail}\n"
        )),
        "{installed}"
    );
    assert!(installed.contains(&format!("* * * * * /usr/local/bin/cache-scheduler tick -q {tail}\n")), "{installed}");
    // Twice: one block.
    let again = env.run(SCHEDULER, &["install", "--user", USER]);
    again.expect_code(0);
    assert!(again.stdout.contains("nothing changed"), "{}", again.dump());
    assert_eq!(String::from_utf8(crontab(&["-l"], None).stdout).unwrap(), installed);
    // Uninstall: only the block goes.
    env.run(SCHEDULER, &["uninstall", "--user", USER]).expect_code(0);
    assert_eq!(String::from_utf8(crontab(&["-l"], None).stdout).unwrap(), mine);
    // Unbalanced markers: refused, nothing changed.
    let broken = format!("{mine}# BEGIN cache-toolkit: half a block\n0 1 * * * /bin/true\n");
    assert!(crontab(&["-"], Some(&broken)).status.success());
    let out = env.run(SCHEDULER, &["install", "--user", USER]);
    out.expect_code(2);
    assert!(out.stderr.contains("do not pair up"), "{}", out.dump());
    assert_eq!(String::from_utf8(crontab(&["-l"], None).stdout).unwrap(), broken);
    assert!(crontab(&["-r"], None).status.success());
}

/// A directory with each tool under its real name (links to this package's copies).
pub(crate) fn tool_dir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bin) in [
        ("cache-analytics", ANALYTICS),
        ("cache-health", crate::HEALTH),
        ("cache-cleanup", CLEANUP),
        ("cache-backup", BACKUP),
        ("cache-optimizer", crate::OPTIMIZER),
        ("cache-debug", DEBUG),
        ("cache-scheduler", SCHEDULER),
    ] {
        std::os::unix::fs::symlink(bin, dir.join(name)).unwrap();
    }
    dir
}

/// The next `n` elapses of an `OnCalendar=` value after `base`, by systemd itself.
fn systemd_calendar(analyze: &Path, expr: &str, base: &str, n: usize) -> Vec<String> {
    let out = Command::new(analyze)
        .args(["calendar", &format!("--iterations={n}"), &format!("--base-time={base}"), expr])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "systemd-analyze calendar {expr}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let re =
        regex::Regex::new(r"(?m)^\s*(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$").unwrap();
    re.captures_iter(&text).map(|c| c[1].to_owned()).collect()
}

#[test]
fn systemd_units_verify_and_their_calendars_match_cron_for_20_runs() {
    let Some(analyze) = find_binary("systemd-analyze", &[]) else {
        missing("systemd-analyze (Debian package systemd)");
        return;
    };
    let env = TestEnv::new();
    let bin = tool_dir(&env);
    env.write_config(&format!("[scheduler]\nbin_dir = \"{}\"\n", bin.display()));
    let units = env.path("units");
    env.run(SCHEDULER, &["install", "--systemd", units.to_str().unwrap()]).expect_code(0);
    let mut names: Vec<String> =
        std::fs::read_dir(&units).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    // A service and a timer per job, and for the every-minute tick.
    assert_eq!(names.len(), 2 * (cache_core::schedule::DEFAULT_JOBS.len() + 1), "{names:?}");
    let paths: Vec<String> = names.iter().map(|n| units.join(n).display().to_string()).collect();
    let out = Command::new(&analyze).arg("verify").args(&paths).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only the host's own unit files may draw remarks; ours none.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("cache-toolkit-")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify:\n{stderr}");

    let base = "2026-11-22 10:07:00 UTC";
    let from = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:07:00Z").unwrap().to_utc();
    for job in cache_core::schedule::DEFAULT_JOBS {
        let timer = std::fs::read_to_string(units.join(format!("cache-toolkit-{}.timer", job.name))).unwrap();
        assert!(timer.contains("Persistent=true\n"));
        let expr = timer.lines().find_map(|l| l.strip_prefix("OnCalendar=")).unwrap();
        let systemd = systemd_calendar(&analyze, expr, base, 20);
        let cron: Vec<String> = cache_core::schedule::next_runs_in(&job.schedule, from, 20, "UTC")
            .unwrap()
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .collect();
        assert_eq!(systemd, cron, "{}: `{}` against `{expr}`", job.name, job.schedule);
    }
    env.run(SCHEDULER, &["uninstall", "--systemd", units.to_str().unwrap()]).expect_code(0);
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 0);
}

#[test]
fn cron_d_and_kubernetes_renderings() {
    let env = TestEnv::new();
    let config = env.write_config("[scheduler]\nbin_dir = \"/opt/cache/bin\"\nuser = \"cache\"\nmailto = \"ops@example.com\"\ntimezone = \"Europe/Berlin\"\n");
    let tail = format!("--config {} --state-dir {}", config.display(), env.state_dir().display());
    let file = env.path("cron.d/cache-toolkit");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    env.run(SCHEDULER, &["install", "--cron-d", file.to_str().unwrap()]).expect_code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o644);
    assert!(text.contains("\nSHELL=/bin/sh\nPATH=/usr/local/bin:/usr/bin:/bin\nMAILTO=ops@example.com\n"), "{text}");
    assert!(
        text.contains(&format!(
            "0 1 * * * cache test -x /opt/cache/bin/cache-backup && /opt/cache/bin/cache-backup create -q --scheduled \
             backup {tail}\n"
        )),
        "{text}"
    );
    let k8s = env.run(SCHEDULER, &["install", "--kubernetes", "--image", "registry.example/cache:1.0"]);
    k8s.expect_code(0);
    let cronjobs = cache_core::schedule::DEFAULT_JOBS.len() + 1;
    assert_eq!(k8s.stdout.matches("kind: CronJob").count(), cronjobs);
    assert_eq!(k8s.stdout.matches("concurrencyPolicy: Forbid").count(), cronjobs);
    assert!(k8s.stdout.contains("  schedule: \"*/15 * * * *\"\n  timeZone: \"Europe/Berlin\"\n"), "{}", k8s.stdout);
    assert!(
        k8s.stdout.contains(
            "command: [\"cache-backup\"]\n              args: [\"create\", \"-q\", \"--scheduled\", \"backup\", \"--config\", \
             \"/etc/cache-toolkit/config.toml\", \"--state-dir\", \"/var/lib/cache-toolkit\"]"
        ),
        "{}",
        k8s.stdout
    );
    // A disabled job is commented out, and a bad override is named.
    env.write_config("[scheduler.jobs.backup]\nenabled = false\n");
    let out = env.run(SCHEDULER, &["install", "--print"]);
    assert!(out.stdout.contains("# disabled: 0 1 * * *"), "{}", out.dump());
    env.write_config("[scheduler.jobs.backup]\nschedule = \"every night\"\n");
    let out = env.run(SCHEDULER, &["install", "--print"]);
    out.expect_code(3);
    assert!(out.stderr.contains("scheduler.jobs.backup.schedule"), "{}", out.dump());
}

fn scheduled(env: &TestEnv, bin: &str, args: &[&str], now: &str) -> cache_tests::RunOutput {
    let mut cmd = env.command(bin, args);
    cmd.env("CACHE_NOW", now);
    env.run_command(cmd)
}

fn last_run(env: &TestEnv, job: &str) -> Value {
    serde_json::from_slice(&std::fs::read(env.state_dir().join(format!("jobs/{job}.json"))).unwrap()).unwrap()
}

#[test]
fn stopped_automation_windows_and_dependencies_gate_scheduled_runs() {
    let env = TestEnv::new();
    env.write_config("[system]\ngpu = false\n");
    let now = "2026-11-22T10:00:00Z";
    // Stopped: a scheduled run exits 0 at once and says why; a manual run still runs.
    env.run(SCHEDULER, &["stop", "--reason", "migration"]).expect_code(0);
    let out = scheduled(&env, ANALYTICS, &["collect", "--scheduled", "analytics-collect"], now);
    out.expect_code(0);
    assert!(
        out.stderr.contains("skipped: automation is stopped") && out.stderr.contains("migration"),
        "{}",
        out.dump()
    );
    assert_eq!(last_run(&env, "analytics-collect")["outcome"], "skipped");
    assert!(!env.state_dir().join("analytics/history.jsonl").exists());
    env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
    env.run(SCHEDULER, &["start"]).expect_code(0);
    scheduled(&env, ANALYTICS, &["collect", "-q", "--scheduled", "analytics-collect"], now).expect_code(0);
    assert_eq!(last_run(&env, "analytics-collect")["outcome"], "success");

    // The deep cleanup needs a backup within 12 hours.
    let out = scheduled(&env, CLEANUP, &["smart", "--yes", "--scheduled", "cleanup-deep"], now);
    out.expect_code(0);
    assert!(out.stderr.contains("needs `backup` to have succeeded within 12h (last success: never)"), "{}", out.dump());
    // A window from 01:00 for 4 hours: at 10:00 heavy jobs wait, unless --emergency.
    env.run(
        SCHEDULER,
        &[
            "windows",
            "add",
            "night",
            "--start",
            "0 1 * * *",
            "--duration",
            "4h",
            "--task",
            "backup",
            "--task",
            "cleanup",
            // The other heavy jobs are never admitted by it.
            "--force",
        ],
    )
    .expect_code(0);
    let out = scheduled(&env, BACKUP, &["create", "--scheduled", "backup"], now);
    out.expect_code(0);
    assert!(out.stderr.contains("no maintenance window allowing it is open"), "{}", out.dump());
    assert_eq!(last_run(&env, "backup")["outcome"], "skipped");
    // Under -q (as cron runs it) nothing is printed; the run record says why.
    let out = scheduled(&env, BACKUP, &["create", "-q", "--scheduled", "backup"], now);
    assert_eq!((out.code(), out.stderr.as_str()), (0, ""));
    assert!(last_run(&env, "backup")["error"].as_str().unwrap().contains("no maintenance window"));
    scheduled(&env, BACKUP, &["create", "-q", "--scheduled", "backup"], "2026-11-22T01:30:00Z").expect_code(0);
    assert_eq!(last_run(&env, "backup")["outcome"], "success");
    // Now the deep cleanup may run, inside the window.
    let out =
        scheduled(&env, CLEANUP, &["smart", "--yes", "-q", "--scheduled", "cleanup-deep"], "2026-11-22T02:00:00Z");
    out.expect_code(0);
    assert_eq!(last_run(&env, "cleanup-deep")["outcome"], "success", "{}", out.dump());
    // Outside it, only with --emergency.
    let out = scheduled(
        &env,
        CLEANUP,
        &["smart", "--yes", "-q", "--scheduled", "cleanup-deep", "--emergency"],
        "2026-11-22T09:00:00Z",
    );
    out.expect_code(0);
    assert_eq!(last_run(&env, "cleanup-deep")["outcome"], "success", "{}", out.dump());

    let status = scheduled(&env, SCHEDULER, &["status", "--format", "json"], "2026-11-22T10:05:00Z").json();
    assert_eq!(status["automation"]["running"], true);
    let job = |name: &str| status["jobs"].as_array().unwrap().iter().find(|j| j["name"] == name).unwrap().clone();
    assert_eq!(job("backup")["last_run"]["outcome"], "success");
    assert_eq!(job("backup")["next_run"], "2026-11-23T01:00:00Z");
    assert_eq!(job("health-check")["last_run"], Value::Null);
    // The collection ran at 10:00: at 10:05 nothing is overdue; at 10:40 the 10:15 run is
    // missed by more than the 15-minute grace.
    assert!(job("analytics-collect")["flags"].as_array().unwrap().is_empty(), "{status:#}");
    let later = scheduled(&env, SCHEDULER, &["status", "--format", "json"], "2026-11-22T10:40:00Z").json();
    let flags =
        later["jobs"].as_array().unwrap().iter().find(|j| j["name"] == "analytics-collect").unwrap()["flags"].clone();
    assert_eq!(flags, serde_json::json!(["overdue"]));
}

#[test]
fn three_hosts_running_the_same_heavy_job_at_the_same_tick_run_it_once() {
    let Some(redis) = RedisServer::start() else { return };
    let hosts: Vec<TestEnv> = (0..3).map(|_| TestEnv::new()).collect();
    for env in &hosts {
        env.write_config(&format!(
            "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[scheduler]\nfleet_lock = \"main\"\n",
            redis.url()
        ));
    }
    let children: Vec<_> = hosts
        .iter()
        .map(|env| {
            let mut cmd = env.command(CLEANUP, &["memory", "--yes", "--scheduled", "memory-maintenance"]);
            cmd.env("CACHE_NOW", "2026-11-22T03:00:00Z")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for o in &outputs {
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let outcomes: Vec<String> =
        hosts.iter().map(|env| last_run(env, "memory-maintenance")["outcome"].as_str().unwrap().to_owned()).collect();
    assert_eq!(outcomes.iter().filter(|o| *o == "success").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "skipped").count(), 2, "{outcomes:?}");
    let skipped: Vec<String> =
        outputs.iter().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).filter(|e| !e.is_empty()).collect();
    assert!(
        skipped.iter().all(|e| e.contains("another host runs `memory-maintenance` for the 03:00 tick")),
        "{skipped:#?}"
    );
    // The next tick is free again.
    let mut cmd = hosts[1].command(CLEANUP, &["memory", "--yes", "--scheduled", "memory-maintenance"]);
    cmd.env("CACHE_NOW", "2026-11-23T03:00:00Z");
    hosts[1].run_command(cmd).expect_code(0);
    assert_eq!(last_run(&hosts[1], "memory-maintenance")["outcome"], "success");
}

fn history_with(env: &TestEnv, hit: f64, latency_ms: f64) {
    let (mut hits, mut misses) = (0.0, 0.0);
    let lines = cache_tests::history::history("2026-11-20T00:00:00Z", 2, |_, t| {
        hits += 1000.0 * hit;
        misses += 1000.0 * (1.0 - hit);
        cache_tests::history::Sample {
            used_memory: 100e6,
            maxmemory: 1e9,
            hits,
            misses,
            ops_per_sec: if (2..5).contains(&chrono::Timelike::hour(&t)) { 5.0 } else { 100.0 },
            latency_ms,
            hit_ratio: None,
        }
    });
    std::fs::create_dir_all(env.state_dir().join("analytics")).unwrap();
    std::fs::write(env.state_dir().join("analytics/history.jsonl"), lines).unwrap();
}

#[test]
fn optimize_adapts_frequencies_to_the_score_and_moves_heavy_jobs_into_the_low_usage_window() {
    let now = "2026-11-22T00:00:00Z";
    let env = TestEnv::new();
    let out = scheduled(&env, SCHEDULER, &["optimize"], now);
    out.expect_code(0);
    assert!(
        out.stdout.contains("no analytics history in the last day") && out.stdout.contains("nothing to change"),
        "{}",
        out.dump()
    );
    history_with(&env, 0.95, 1.0);
    env.run(ANALYTICS, &["windows", "-q"]).expect_code(0);
    let dry = scheduled(&env, SCHEDULER, &["optimize", "--dry-run", "--format", "json"], now).json();
    let plan: Vec<(String, String)> = dry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["job"].as_str().unwrap().to_owned(), c["to"].as_str().unwrap().to_owned()))
        .collect();
    let want: Vec<(String, String)> = [
        ("analytics-collect", "*/20 * * * *"),
        ("health-check", "0 * * * *"),
        ("cleanup-light", "0 */3 * * *"),
        ("backup", "0 2 * * *"),
        ("backup-verify", "30 2 * * *"),
        ("cleanup-deep", "0 3 * * *"),
        ("memory-maintenance", "30 3 * * *"),
        ("optimize", "0 4 * * 1-6"),
        ("optimize-weekly", "0 4 * * 0"),
        ("archival-monthly", "30 4 1 * *"),
        ("backup-drill", "0 5 1 * *"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    // The optimizations already sit in their slot (04:00): no change for them.
    let moved: Vec<(String, String)> = want.iter().filter(|(n, _)| !n.starts_with("optimize")).cloned().collect();
    assert_eq!(plan, moved, "{dry:#}");
    assert!(dry["score"]["score"].as_f64().unwrap() > 0.9, "{dry:#}");
    // The dry run changed nothing; the real one records every change with its reason.
    assert!(!env.state_dir().join("scheduler/changes.jsonl").exists());
    scheduled(&env, SCHEDULER, &["optimize", "-q"], now).expect_code(0);
    let changes = std::fs::read_to_string(env.state_dir().join("scheduler/changes.jsonl")).unwrap();
    assert_eq!(changes.lines().count(), 9);
    let status = scheduled(&env, SCHEDULER, &["status", "--format", "json"], now).json();
    let schedules: Vec<(String, String)> = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| want.iter().any(|(n, _)| j["name"] == n.as_str()))
        .map(|j| (j["name"].as_str().unwrap().to_owned(), j["schedule"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(schedules, want);
    let saved = std::fs::read_to_string(env.state_dir().join("scheduler/schedule.json")).unwrap();
    assert!(saved.contains("cache-scheduler optimize: performance score"), "{saved}");
    // A struggling cache: the repeating jobs run 1.5 times more often.
    let env = TestEnv::new();
    history_with(&env, 0.5, 60.0);
    let dry = scheduled(&env, SCHEDULER, &["optimize", "--dry-run", "--format", "json"], now).json();
    let first = &dry["changes"][0];
    assert_eq!(
        (first["job"].as_str(), first["to"].as_str()),
        (Some("analytics-collect"), Some("*/10 * * * *")),
        "{dry:#}"
    );
}

#[test]
fn init_writes_the_commented_default_once() {
    let env = TestEnv::new();
    let path = env.path("etc/config.toml");
    let out = env.run(SCHEDULER, &["init", "--config", path.to_str().unwrap()]);
    out.expect_code(0);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, cache_core::config::DEFAULT_CONFIG_TOML);
    assert!(env.state_dir().is_dir());
    let out = env.run(SCHEDULER, &["init", "--config", path.to_str().unwrap()]);
    out.expect_code(2);
    assert!(out.stderr.contains("never overwrites"), "{}", out.dump());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_lease_is_renewed_while_held_and_marks_its_tick_done() {
    let Some(redis) = RedisServer::start() else { return };
    let target: cache_core::config::RedisTarget =
        toml::from_str(&format!("name = \"main\"\nurl = \"{}\"\n", redis.url())).unwrap();
    let tick = chrono::DateTime::parse_from_rfc3339("2026-11-22T03:00:00Z").unwrap().to_utc();
    let lease = std::time::Duration::from_millis(300);
    let held = cache_core::fleet::Lease::take(&target, "p", "backup", tick, lease).await.unwrap().unwrap();
    let first = held.token();
    // Three leases long: still ours, renewed.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let mut conn = redis.connection();
    let key = "cache-toolkit:p:lease:backup:20261122T0300";
    let value: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
    assert!(value.is_some_and(|v| v.ends_with(&format!(":{first}"))), "the lease was not renewed");
    let other = cache_core::fleet::Lease::take(&target, "p", "backup", tick, lease).await.unwrap();
    assert!(other.unwrap_err().starts_with("held by "));
    held.finish().await;
    let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
    assert!(ttl > 100_000, "a finished tick is kept marked for two minutes: {ttl}");
    // The next tick: a new holder with a larger fencing token.
    let next = cache_core::fleet::Lease::take(&target, "p", "backup", tick + chrono::Duration::days(1), lease)
        .await
        .unwrap()
        .unwrap();
    assert!(next.token() > first);
    next.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_lease_works_on_a_cluster_whatever_node_serves_its_keys() {
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    let tick = chrono::DateTime::parse_from_rfc3339("2026-11-22T03:00:00Z").unwrap().to_utc();
    let lease = std::time::Duration::from_millis(300);
    let key = "cache-toolkit:p:lease:backup:20261122T0300";
    let fence = "cache-toolkit:p:fence:backup";
    // The lease and the fence live on other primaries than (some of) the seeds: every seed works.
    assert_ne!(cluster.node_for(key).port(), cluster.node_for(fence).port(), "pick keys on two shards");
    let mut tokens = Vec::new();
    for (day, seed) in cluster.nodes().iter().enumerate() {
        let target: cache_core::config::RedisTarget =
            toml::from_str(&format!("name = \"main\"\nurl = \"{}\"\n", seed.url())).unwrap();
        let at = tick + chrono::Duration::days(day as i64);
        let held = cache_core::fleet::Lease::take(&target, "p", "backup", at, lease).await.unwrap().unwrap();
        let other = cache_core::fleet::Lease::take(&target, "p", "backup", at, lease).await.unwrap();
        assert!(other.unwrap_err().starts_with("held by "), "seed {}", seed.port());
        tokens.push(held.token());
        held.finish().await;
    }
    assert!(tokens.windows(2).all(|w| w[1] > w[0]), "fencing tokens {tokens:?}");
}

/// The command part of the installed crontab line of `job` (after its five cron fields), as cron
/// hands it to `sh` (`\%` back to `%`).
fn installed_command(block: &str, job: &str) -> String {
    let line = block
        .lines()
        .find(|l| !l.starts_with('#') && l.contains(&format!(" --scheduled {job} ")))
        .unwrap_or_else(|| panic!("no line for `{job}` in\n{block}"));
    line.splitn(6, ' ').nth(5).unwrap().replace("\\%", "%")
}

/// Runs `command` as cron does: `sh -c` with an empty environment.
fn run_as_cron(command: &str, now: &str) -> std::process::Output {
    Command::new("env").args(["-i", &format!("CACHE_NOW={now}"), "/bin/sh", "-c", command]).output().unwrap()
}

#[test]
fn an_installed_crontab_line_run_under_env_i_uses_the_installed_configuration_and_state_directory() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    let bin = tool_dir(&env);
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[scheduler]\nbin_dir = \"{}\"\n",
        redis.url(),
        bin.display()
    ));
    let block = env.run(SCHEDULER, &["install", "--print"]);
    block.expect_code(0);
    let command = installed_command(&block.stdout, "analytics-collect");
    assert!(command.contains(&format!("--state-dir {}", env.state_dir().display())), "{command}");
    // Nothing of the test's environment: no HOME, no PATH, no CACHE_*; only the line.
    let out = run_as_cron(&command, "2026-11-22T10:00:00Z");
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "cron would mail: {out:?}");
    let record = last_run(&env, "analytics-collect");
    assert_eq!((record["outcome"].as_str(), record["trigger"].as_str()), (Some("success"), Some("cron")), "{record:#}");
    // The configured Redis was read, into the installed state directory's history.
    let history = std::fs::read_to_string(env.state_dir().join("analytics/history.jsonl")).unwrap();
    let snapshot: Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(snapshot["redis"][0]["name"], "main", "{snapshot:#}");
    assert!(snapshot["redis"][0]["info"]["used_memory"].as_f64().unwrap() > 0.0, "{snapshot:#}");
    let mut conn = redis.connection();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    let connections: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(connections >= 2, "the collection never connected to the configured redis: {info}");
}

#[test]
fn a_custom_job_is_rendered_and_runs_from_its_crontab_line() {
    let env = TestEnv::new();
    let bin = tool_dir(&env);
    env.write_config(&format!(
        "[scheduler]\nbin_dir = \"{}\"\n[scheduler.jobs.audit-nightly]\ncommand = \"cache-debug security --format json\"\n\
         schedule = \"0 22 * * *\"\ntask = \"security\"\ndescription = \"Nightly security audit\"\n",
        bin.display()
    ));
    let block = env.run(SCHEDULER, &["install", "--print"]);
    block.expect_code(0);
    assert!(block.stdout.contains("# Nightly security audit (audit-nightly)\n0 22 * * * "), "{}", block.dump());
    let command = installed_command(&block.stdout, "audit-nightly");
    let out = run_as_cron(&command, "2026-11-22T22:00:00Z");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"findings\""), "{command}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let record = last_run(&env, "audit-nightly");
    assert_eq!(record["trigger"], "cron", "{record:#}");
    assert_eq!(record["exit_code"].as_i64(), out.status.code().map(i64::from), "{record:#}");
    let status = env.run(SCHEDULER, &["status", "--format", "json"]).json();
    let job = status["jobs"].as_array().unwrap().iter().find(|j| j["name"] == "audit-nightly").unwrap().clone();
    assert_eq!(job["command"], "cache-debug security --format json");
    // A command that is not one of the toolkit's tools is refused, naming the key.
    env.write_config("[scheduler.jobs.mine]\ncommand = \"/bin/rm -rf /\"\nschedule = \"0 1 * * *\"\n");
    let out = env.run(SCHEDULER, &["install", "--print"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("scheduler.jobs.mine.command") && out.stderr.contains("not one of the toolkit's tools"),
        "{}",
        out.dump()
    );
}

#[test]
fn a_dependency_cycle_or_a_job_requiring_itself_is_refused_naming_the_cycle() {
    let env = TestEnv::new();
    env.write_config("[scheduler.jobs.backup]\nrequires = { job = \"cleanup-deep\", within = \"12h\" }\n");
    let out = env.run(SCHEDULER, &["status"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("scheduler.jobs.backup.requires")
            && out.stderr.contains("backup -> cleanup-deep -> backup is a dependency cycle"),
        "{}",
        out.dump()
    );
    env.write_config("[scheduler.jobs.backup]\nrequires = { job = \"backup\", within = \"12h\" }\n");
    let out = env.run(BACKUP, &["create", "--scheduled", "backup"]);
    out.expect_code(3);
    assert!(out.stderr.contains("backup -> backup requires itself"), "{}", out.dump());
    env.write_config("[scheduler.jobs.backup]\nrequires = { job = \"nosuchjob\", within = \"12h\" }\n");
    let out = env.run(SCHEDULER, &["status"]);
    out.expect_code(3);
    assert!(out.stderr.contains("no job `nosuchjob`"), "{}", out.dump());
}

#[test]
fn windows_take_only_known_task_types_and_alert_rules() {
    let env = TestEnv::new();
    let add = |extra: &[&str]| {
        let mut args = vec!["windows", "add", "night", "--start", "0 0 * * *", "--duration", "23h"];
        args.extend(extra);
        env.run(SCHEDULER, &args)
    };
    let out = add(&["--task", "nosuchtask"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("--task `nosuchtask` is no task type of the schedule")
            && out.stderr.contains("backup, cleanup, health, memory, optimization"),
        "{}",
        out.dump()
    );
    let out = add(&["--silence", "Hgh Latency"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("--silence `Hgh Latency` names no alert rule") && out.stderr.contains("High Latency"),
        "{}",
        out.dump()
    );
    assert!(!env.state_dir().join("scheduler/windows.json").exists());
    add(&["--silence", "High Latency"]).expect_code(0);
    // A custom job's task type, and a configured rule, are known.
    env.write_config(
        "[[alerts.rules]]\nname = \"Disk Nearly Full\"\ncondition = \"memory_usage > 90%\"\n\
         [scheduler.jobs.export]\ncommand = \"cache-analytics export\"\nschedule = \"0 3 * * *\"\ntask = \"export\"\n",
    );
    env.run(
        SCHEDULER,
        &[
            "windows",
            "add",
            "exports",
            "--start",
            "0 3 * * *",
            "--duration",
            "1h",
            "--task",
            "export",
            "--silence",
            "Disk Nearly Full",
        ],
    )
    .expect_code(0);
    // With rules configured, the default ones are not judged: silencing one is refused.
    let out = add(&["--silence", "High Latency"]);
    out.expect_code(2);
    assert!(out.stderr.contains("the rules are: Disk Nearly Full"), "{}", out.dump());
}

#[test]
fn a_window_admitting_no_run_of_a_heavy_job_is_refused_and_forced_with_a_recorded_warning() {
    let env = TestEnv::new();
    let file = env.path("cron.d/cache-toolkit");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // The issue's window, 02:00-04:00 in Jakarta (19:00-21:00 UTC), for backups only: the
    // 01:00 UTC backup never falls in it.
    let window =
        ["windows", "add", "jakarta", "--start", "0 2 * * *", "--duration", "2h", "--timezone", "Asia/Jakarta"];
    let with_task =
        |extra: &[&'static str]| -> Vec<&'static str> { [&window[..], &["--task", "backup"], extra].concat() };
    let out = env.run(SCHEDULER, &with_task(&[]));
    out.expect_code(2);
    assert!(
        out.stderr.contains("heavy jobs `backup`, `backup-verify`, `cleanup-deep`, `memory-maintenance`, `optimize`")
            && out.stderr.contains("are never admitted")
            && out.stderr.contains("--force"),
        "{}",
        out.dump()
    );
    assert!(!env.state_dir().join("scheduler/windows.json").exists(), "a refused window was saved");
    let out = env.run(SCHEDULER, &with_task(&["--force"]));
    out.expect_code(0);
    assert!(out.stderr.contains("heavy job `backup` is never admitted"), "{}", out.dump());
    // Installing refuses it, writing nothing; --force installs, warns and records.
    let out = env.run(SCHEDULER, &["install", "--cron-d", file.to_str().unwrap()]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("heavy jobs `backup`, ") && out.stderr.contains("are never admitted"),
        "{}",
        out.dump()
    );
    assert!(!file.exists());
    let out = env.run(SCHEDULER, &["install", "--cron-d", file.to_str().unwrap(), "--force"]);
    out.expect_code(0);
    assert!(out.stderr.contains("heavy job `backup` is never admitted"), "{}", out.dump());
    assert!(file.exists());
    let installed: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("scheduler/installed.json")).unwrap()).unwrap();
    assert!(installed["warnings"].to_string().contains("`backup` is never admitted"), "{installed:#}");
    let warnings = std::fs::read_to_string(env.state_dir().join("scheduler/warnings.jsonl")).unwrap();
    assert!(
        warnings.contains("\"by\":\"cache-scheduler install\"") && warnings.contains("\"job\":\"backup\""),
        "{warnings}"
    );
    // optimize places heavy jobs only inside the window: the backup moves to 19:00 UTC.
    let dry = scheduled(&env, SCHEDULER, &["optimize", "--dry-run", "--format", "json"], "2026-11-22T10:00:00Z").json();
    let backup = dry["changes"].as_array().unwrap().iter().find(|c| c["job"] == "backup").unwrap().clone();
    assert_eq!(backup["to"], "0 19 * * *", "{dry:#}");
    // The window fits the backup: removing it is refused (--force removes it).
    env.run(SCHEDULER, &["optimize", "-q"]).expect_code(0);
    let status = env.run(SCHEDULER, &["status", "--format", "json"]).json();
    let flags = |name: &str| {
        status["jobs"].as_array().unwrap().iter().find(|j| j["name"] == name).unwrap()["flags"].to_string()
    };
    assert!(!flags("backup").contains("never admitted"), "{status:#}");
    // cleanup's task is not allowed by the window: it stays flagged.
    assert!(flags("cleanup-deep").contains("never admitted by any window"), "{status:#}");
}

#[test]
fn status_flags_never_admitted_jobs_and_jobs_skipped_n_times_in_a_row() {
    let env = TestEnv::new();
    env.write_config("[system]\ngpu = false\n");
    env.run(SCHEDULER, &["windows", "add", "night", "--start", "0 1 * * *", "--duration", "2h", "--force"])
        .expect_code(0);
    // Outside the window three nights' runs are skipped; automation stopped in between is no skip
    // of the job's.
    for (i, now) in ["2026-11-20T10:00:00Z", "2026-11-21T10:00:00Z", "2026-11-22T10:00:00Z"].iter().enumerate() {
        if i == 1 {
            env.run(SCHEDULER, &["stop"]).expect_code(0);
            scheduled(&env, BACKUP, &["create", "-q", "--scheduled", "backup"], now).expect_code(0);
            env.run(SCHEDULER, &["start"]).expect_code(0);
        }
        scheduled(&env, BACKUP, &["create", "-q", "--scheduled", "backup"], now).expect_code(0);
    }
    let status = scheduled(&env, SCHEDULER, &["status", "--format", "json"], "2026-11-22T10:05:00Z").json();
    let job = |name: &str| status["jobs"].as_array().unwrap().iter().find(|j| j["name"] == name).unwrap().clone();
    assert_eq!(job("backup")["consecutive_skips"], 3, "{status:#}");
    assert!(job("backup")["flags"].to_string().contains("skipped (3 in a row)"), "{status:#}");
    assert_eq!(job("backup")["never_admitted"], false);
    // A window that lets the backup run never: flagged, and so in text.
    env.run(SCHEDULER, &["windows", "remove", "night", "--force"]).expect_code(0);
    env.run(
        SCHEDULER,
        &[
            "windows",
            "add",
            "jakarta",
            "--start",
            "0 2 * * *",
            "--duration",
            "2h",
            "--timezone",
            "Asia/Jakarta",
            "--task",
            "backup",
            "--force",
        ],
    )
    .expect_code(0);
    let status = scheduled(&env, SCHEDULER, &["status", "--format", "json"], "2026-11-22T10:05:00Z").json();
    let backup = status["jobs"].as_array().unwrap().iter().find(|j| j["name"] == "backup").unwrap().clone();
    assert_eq!(backup["never_admitted"], true, "{status:#}");
    assert!(backup["flags"].to_string().contains("never admitted by any window"), "{status:#}");
    let text = scheduled(&env, SCHEDULER, &["status"], "2026-11-22T10:05:00Z");
    assert!(text.stdout.contains("never admitted by any window"), "{}", text.dump());
    // The dashboard flags it instead of listing it as upcoming, and shows a one-off.
    scheduled(&env, SCHEDULER, &["run", "health-check", "--at", "2026-11-23T08:00:00Z"], "2026-11-22T10:05:00Z")
        .expect_code(0);
    let page = env.path("dashboard.html");
    scheduled(&env, ANALYTICS, &["dashboard", "--output", page.to_str().unwrap()], "2026-11-22T10:05:00Z")
        .expect_code(0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("never admitted by any window") && html.contains("skipped (3 in a row)"), "{html}");
    assert!(html.contains("One-off health-check") && !html.contains("11-23 01:00 UTC"), "{html}");
    // The alert rule sees both.
    let jobs = cache_core::jobs::statuses(
        &cache_core::config::SchedulerSettings::default(),
        &cache_core::state::StateDir::open(env.state_dir()).unwrap(),
        chrono::DateTime::parse_from_rfc3339("2026-11-22T10:05:00Z").unwrap().to_utc(),
    )
    .unwrap();
    let observed = cache_health::alerts::observe_jobs(&jobs);
    let backup = observed.iter().find(|o| o.target == "job/backup").unwrap();
    assert_eq!(backup.metrics[&cache_core::alerting::Metric::Skips], 3.0);
    assert_eq!(backup.metrics[&cache_core::alerting::Metric::NeverAdmitted], 1.0);
}

#[test]
fn the_default_rules_are_the_names_windows_may_silence() {
    let names: Vec<String> = cache_health::alerts::default_rules(&cache_core::config::AlertSettings::default())
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, cache_core::alerting::DEFAULT_RULE_NAMES);
}

fn oneoffs(env: &TestEnv) -> Vec<Value> {
    let doc: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("scheduler/oneoff.json")).unwrap()).unwrap();
    doc["jobs"].as_array().unwrap().clone()
}

fn runs_of(env: &TestEnv, job: &str) -> Vec<Value> {
    std::fs::read_to_string(env.state_dir().join("runs.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["job"] == job)
        .collect()
}

#[test]
fn a_one_off_runs_once_at_its_time_is_recorded_and_a_second_tick_does_not_run_it_again() {
    let env = TestEnv::new();
    let bin = tool_dir(&env);
    env.write_config(&format!("[scheduler]\nbin_dir = \"{}\"\n[system]\ngpu = false\n", bin.display()));
    let out = scheduled(
        &env,
        SCHEDULER,
        &["run", "analytics-collect", "--at", "2026-11-22T10:00:00Z"],
        "2026-11-22T09:00:00Z",
    );
    out.expect_code(0);
    let out =
        scheduled(&env, SCHEDULER, &["run", "analytics-collect", "--at", "2026-11-22 08:00"], "2026-11-22T09:00:00Z");
    out.expect_code(2);
    assert!(out.stderr.contains("not in the future"), "{}", out.dump());
    let status = scheduled(&env, SCHEDULER, &["status", "--format", "json"], "2026-11-22T09:00:00Z").json();
    assert_eq!(status["oneoffs"][0]["status"], "pending", "{status:#}");
    // Not due yet: nothing runs.
    scheduled(&env, SCHEDULER, &["tick", "-q"], "2026-11-22T09:59:00Z").expect_code(0);
    assert!(runs_of(&env, "analytics-collect").is_empty());
    // Due: it runs once, as its job, and is marked done with its run record.
    let out = scheduled(&env, SCHEDULER, &["tick"], "2026-11-22T10:00:00Z");
    out.expect_code(0);
    let runs = runs_of(&env, "analytics-collect");
    assert_eq!(runs.len(), 1, "{}", out.dump());
    assert_eq!((runs[0]["outcome"].as_str(), runs[0]["trigger"].as_str()), (Some("success"), Some("oneoff")));
    let one = &oneoffs(&env)[0];
    assert_eq!((one["status"].as_str(), one["run_id"].as_str()), (Some("done"), runs[0]["id"].as_str()), "{one:#}");
    assert!(env.state_dir().join("analytics/history.jsonl").exists());
    // A second tick does not run it again.
    scheduled(&env, SCHEDULER, &["tick", "-q"], "2026-11-22T10:01:00Z").expect_code(0);
    assert_eq!(runs_of(&env, "analytics-collect").len(), 1);
    let status = scheduled(&env, SCHEDULER, &["status"], "2026-11-22T10:02:00Z");
    assert!(
        status.stdout.contains("analytics-collect-20261122-1000") && status.stdout.contains("done"),
        "{}",
        status.dump()
    );

    // A tick killed while its one-off ran left it `running`: the next tick never runs it again.
    scheduled(&env, SCHEDULER, &["run", "health-check", "--at", "2026-11-22T11:00:00Z"], "2026-11-22T10:30:00Z")
        .expect_code(0);
    let path = env.state_dir().join("scheduler/oneoff.json");
    let text =
        std::fs::read_to_string(&path).unwrap().replacen("\"status\": \"pending\"", "\"status\": \"running\"", 1);
    std::fs::write(&path, text).unwrap();
    scheduled(&env, SCHEDULER, &["tick", "-q"], "2026-11-22T11:01:00Z").expect_code(0);
    assert!(runs_of(&env, "health-check").is_empty());
    let killed = oneoffs(&env).into_iter().find(|o| o["job"] == "health-check").unwrap();
    assert_eq!(killed["status"], "interrupted", "{killed:#}");

    // cache-optimizer schedule's one-off is run by the tick as the optimize job.
    std::fs::create_dir_all(env.state_dir().join("analytics")).unwrap();
    let mut cmd = env.command(crate::OPTIMIZER, &["schedule", "--at", "2026-11-22T12:00:00Z"]);
    cmd.env("CACHE_NOW", "2026-11-22T11:30:00Z");
    env.run_command(cmd).expect_code(0);
    scheduled(&env, SCHEDULER, &["tick", "-q"], "2026-11-22T12:00:30Z");
    let optimize = oneoffs(&env).into_iter().find(|o| o["job"] == "optimize").unwrap();
    assert_eq!(optimize["status"], "done", "{optimize:#}");
    assert_eq!(runs_of(&env, "optimize").last().unwrap_or_else(|| panic!("{optimize:#}"))["trigger"], "oneoff");
}

#[test]
fn run_executes_a_job_now_through_its_gates_and_emergency_passes_the_windows() {
    let env = TestEnv::new();
    let bin = tool_dir(&env);
    env.write_config(&format!("[scheduler]\nbin_dir = \"{}\"\n[system]\ngpu = false\n", bin.display()));
    env.run(SCHEDULER, &["windows", "add", "night", "--start", "0 1 * * *", "--duration", "4h", "--force"])
        .expect_code(0);
    let out = scheduled(&env, SCHEDULER, &["run", "backup"], "2026-11-22T10:00:00Z");
    out.expect_code(0);
    let record = last_run(&env, "backup");
    assert_eq!(
        (record["outcome"].as_str(), record["trigger"].as_str()),
        (Some("skipped"), Some("manual")),
        "{record:#}"
    );
    // The job's command is quiet (`-q`, as cron runs it); `run` says what became of it.
    assert!(out.stdout.contains("backup: skipped") && out.stdout.contains("no maintenance window"), "{}", out.dump());
    scheduled(&env, SCHEDULER, &["run", "backup", "--emergency"], "2026-11-22T10:00:00Z").expect_code(0);
    let record = last_run(&env, "backup");
    assert_eq!(
        (record["outcome"].as_str(), record["trigger"].as_str()),
        (Some("success"), Some("emergency")),
        "{record:#}"
    );
    let out = env.run(SCHEDULER, &["run", "nosuchjob"]);
    out.expect_code(2);
    assert!(out.stderr.contains("no job `nosuchjob`; the jobs are: analytics-collect"), "{}", out.dump());
}

#[test]
fn kubernetes_manifests_are_complete_carry_no_secret_and_validate() {
    let env = TestEnv::new();
    env.write_config(
        "[[redis]]\nname = \"main\"\nurl = \"redis://:redis-pw-81c2@10.0.0.5:6379/0\"\n\
         [[postgres]]\nname = \"main\"\nurl = \"postgres://app:pg-pw-9d1e@db.example:5432/app\"\n\
         [scheduler]\ntimezone = \"Europe/Berlin\"\n",
    );
    let out =
        env.run(SCHEDULER, &["install", "--kubernetes", "--namespace", "cache", "--image", "registry.example/ct:1"]);
    out.expect_code(0);
    let yaml = &out.stdout;
    assert!(!yaml.contains("redis-pw-81c2") && !yaml.contains("pg-pw-9d1e"), "a secret is in the manifests");
    assert!(yaml.contains("kind: ConfigMap") && yaml.contains("kind: PersistentVolumeClaim"), "{yaml}");
    let cronjobs = yaml.matches("kind: CronJob").count();
    assert_eq!(cronjobs, cache_core::schedule::DEFAULT_JOBS.len() + 1);
    for wanted in [
        "concurrencyPolicy: Forbid",
        "claimName: \"cache-toolkit-state\"",
        "name: REDIS_URL\n                  valueFrom:\n                    secretKeyRef:",
        "name: DATABASE_URL",
        "resources:\n                requests:",
    ] {
        assert_eq!(yaml.matches(wanted).count(), cronjobs, "`{wanted}` in every CronJob:\n{yaml}");
    }
    assert!(yaml.contains("# NOTE: the fleet lock is required here"), "{yaml}");
    assert!(yaml.contains("url = \"redis://10.0.0.5:6379/0\""), "{yaml}");
    let file = env.path("manifests.yaml");
    std::fs::write(&file, yaml).unwrap();
    let Some(validator) = find_binary("kubernetes-validate", &[]) else {
        missing("kubernetes-validate (PyPI package kubernetes-validate; cargo xtask ci installs it)");
        return;
    };
    let out = Command::new(validator).args(["--strict", "--quiet"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // With a fleet lock, the note says it is in use; a second target's password moves the whole
    // configuration into a Secret made from the file.
    env.write_config(
        "[[redis]]\nname = \"main\"\nurl = \"redis://127.0.0.1:6379\"\n[[redis]]\nname = \"other\"\n\
         url = \"redis://:other-pw-55aa@10.0.0.6:6379\"\n[scheduler]\nfleet_lock = \"main\"\n",
    );
    let out = env.run(SCHEDULER, &["install", "--kubernetes"]);
    out.expect_code(0);
    assert!(!out.stdout.contains("other-pw-55aa") && !out.stdout.contains("kind: ConfigMap"), "{}", out.stdout);
    assert!(out.stdout.contains("secretName: \"cache-toolkit-config\"") && out.stdout.contains("lock on redis `main`"));
    std::fs::write(&file, &out.stdout).unwrap();
    let check = Command::new(find_binary("kubernetes-validate", &[]).unwrap())
        .args(["--strict", "--quiet"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}
