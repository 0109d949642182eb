//! Histories that rotate by size and month, read within bounds: a big garbage run history, an
//! analytics history in segments (compressed by the monthly archival), the export's cleanup
//! totals across a rotation, and the monthly archival itself, with a killed run's leftovers.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use cache_tests::{RunOutput, TestEnv, history};
use serde_json::{Value, json};

use crate::ANALYTICS;

/// Runs `bin args` with `CACHE_NOW` at `now`.
fn run_at(env: &TestEnv, now: &str, args: &[&str]) -> RunOutput {
    let mut command = env.command(ANALYTICS, args);
    command.env("CACHE_NOW", now);
    env.run_command(command)
}

/// The names of the files in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".tmp-"))
        .collect();
    names.sort();
    names
}

/// Writes `lines` (JSON Lines with a `timestamp` or `ended_at`) as the history `dir/stem.jsonl`
/// the way rotations leave it: one segment per month but the last, whose lines are the current
/// file. Returns the segments written.
fn write_rotated(dir: &Path, stem: &str, lines: &str) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut by_month: BTreeMap<String, String> = BTreeMap::new();
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let t = v["timestamp"].as_str().or(v["ended_at"].as_str()).unwrap();
        let text = by_month.entry(t[..7].to_owned()).or_default();
        text.push_str(line);
        text.push('\n');
    }
    let last = by_month.keys().next_back().unwrap().clone();
    let mut segments = Vec::new();
    for (month, text) in by_month {
        let path = if month == last {
            dir.join(format!("{stem}.jsonl"))
        } else {
            let path = dir.join(format!("{stem}.{month}.001.jsonl"));
            segments.push(path.clone());
            path
        };
        std::fs::write(path, text).unwrap();
    }
    segments
}

/// The value of `text`'s sample of `metric` whose labels include `label`.
fn sample(text: &str, metric: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[test]
fn a_big_garbage_run_history_makes_a_dashboard_that_says_what_it_skipped() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.state_dir()).unwrap();
    let runs = env.state_dir().join("runs.jsonl");
    // 40 MiB of lines that are not run records, then 24 MiB with no line end at all.
    let mut file = std::fs::File::create(&runs).unwrap();
    let line = format!("{}\n", "not a run record ".repeat(60));
    let block = line.repeat((1 << 20) / line.len());
    for _ in 0..40 {
        file.write_all(block.as_bytes()).unwrap();
    }
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..24 {
        file.write_all(&zeros).unwrap();
    }
    drop(file);
    let out = env.run(ANALYTICS, &["dashboard"]);
    out.expect_code(0);
    assert!(out.elapsed < std::time::Duration::from_secs(60), "{}", out.dump());
    let said = out.stderr.lines().filter(|l| l.contains("runs.jsonl")).collect::<Vec<_>>().join("\n");
    assert!(said.contains("skipped") && said.contains("bad line(s)"), "{}", out.dump());
    assert!(said.contains("unread"), "what the cap left unread is said: {}", out.dump());
    let page = std::fs::read_to_string(env.state_dir().join("analytics/dashboard.html")).unwrap();
    assert!(page.contains("id=\"history-problems\"") && page.contains("runs.jsonl"), "{page}");
    // The next run record rotates the garbage out of the way (it is far past the bound).
    let job = env.run(ANALYTICS, &["generate", "--period", "day", "--date", "2026-11-30"]);
    assert_ne!(job.code(), 0, "no history to report on: {}", job.dump());
    let segments: Vec<String> =
        names(&env.state_dir()).into_iter().filter(|n| n.starts_with("runs.") && n != "runs.jsonl").collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let current = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(current.lines().count(), 1, "{current}");
    assert!(current.contains("\"job\":\"reports-daily\""), "{current}");
}

/// A report without the time it was made.
fn stable(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(o) = doc.as_object_mut() {
        o.remove("generated_at");
        o.remove("timestamp");
    }
    doc
}

/// 50 days of snapshots from 2026-09-20: memory growing, 90% hits.
fn months_of_history() -> String {
    history::history("2026-09-20T00:00:00Z", 50, |step, _| history::Sample {
        used_memory: 1e8 + 1e4 * step as f64,
        maxmemory: 1e9,
        hits: 900.0 * step as f64,
        misses: 100.0 * step as f64,
        ops_per_sec: 10.0 + (step % 96) as f64,
        latency_ms: 1.0,
        hit_ratio: None,
    })
}

#[test]
fn reports_and_forecasts_see_their_horizon_across_segments_compressed_or_not() {
    let lines = months_of_history();
    // The same history in one file, and in segments as rotations left them.
    let whole = TestEnv::new();
    std::fs::create_dir_all(whole.state_dir().join("analytics")).unwrap();
    std::fs::write(whole.state_dir().join("analytics/history.jsonl"), &lines).unwrap();
    let rotated = TestEnv::new();
    let dir = rotated.state_dir().join("analytics");
    let segments = write_rotated(&dir, "history", &lines);
    assert_eq!(names(&dir), ["history.2026-09.001.jsonl", "history.2026-10.001.jsonl", "history.jsonl"]);
    let now = "2026-12-01T06:00:00Z";
    let same = |args: &[&str], part: &dyn Fn(&Value) -> Value| {
        let a = run_at(&whole, now, args);
        a.expect_code(0);
        let b = run_at(&rotated, now, args);
        b.expect_code(0);
        assert_eq!(part(&a.json()), part(&b.json()), "{args:?}:\n{}\n{}", a.dump(), b.dump());
        assert!(!b.stderr.contains("unread") && !b.stderr.contains("bad line"), "{}", b.dump());
        b.json()
    };
    // The monthly report spans October's segment and the current file; its run archives the
    // segments of months before December (gzip).
    let month = same(&["generate", "--period", "month", "--date", "2026-11-08", "--format", "json"], &stable);
    assert!(month["period"]["covers"].as_str().unwrap().contains("30 whole days"), "{month:#}");
    let gz: Vec<PathBuf> = segments.iter().map(|s| PathBuf::from(format!("{}.gz", s.display()))).collect();
    assert_eq!(
        names(&dir),
        ["history.2026-09.001.jsonl.gz", "history.2026-10.001.jsonl.gz", "history.jsonl", "reports"]
    );
    assert!(gz.iter().all(|g| g.is_file()));
    // Forecasts fit the last 28 days back from the last snapshot: October's compressed segment.
    let forecast = same(&["forecast", "--format", "json"], &|d| d["targets"].clone());
    let target = &forecast["targets"][0];
    assert!(target["memory"].is_object() && target["hit_ratio"].is_object(), "{target:#}");
    assert!(target["history_hours"].as_f64().unwrap() > 28.0 * 24.0, "{target:#}");
    // A day of September, from its compressed segment; the week across the month's end.
    same(&["generate", "--period", "day", "--date", "2026-09-25", "--format", "json"], &stable);
    same(&["generate", "--period", "week", "--date", "2026-10-03", "--format", "json"], &stable);
    same(&["windows", "--format", "json"], &|d| d["windows"].clone());
}

/// A cleanup run record that removed `removed` files.
fn cleanup_run(id: &str, ended_at: &str, removed: u64) -> String {
    json!({
        "schema_version": 1, "id": id, "job": "cleanup", "command": "cache-cleanup light", "host": "h",
        "pid": 1, "started_at": ended_at, "ended_at": ended_at, "duration_ms": 1, "outcome": "success",
        "exit_code": 0, "steps": [],
        "summary": {"dry_run": false, "targets": [
            {"tier": "files", "target": "models", "removed": removed, "bytes_freed": removed * 100}]}
    })
    .to_string()
        + "\n"
}

#[test]
fn the_exports_cleanup_totals_count_each_run_once_across_rotation_and_archival() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.state_dir()).unwrap();
    let runs = env.state_dir().join("runs.jsonl");
    let append = |line: String| {
        std::fs::OpenOptions::new().create(true).append(true).open(&runs).unwrap().write_all(line.as_bytes()).unwrap();
    };
    let removed = |now: &str| {
        let out = run_at(&env, now, &["export", "--format", "prometheus"]);
        sample(&out.stdout, "cache_cleanup_removed_total", "target=\"models\"")
            .unwrap_or_else(|| panic!("no cleanup total: {}", out.dump()))
    };
    for (i, day) in [10, 11, 12].into_iter().enumerate() {
        append(cleanup_run(&format!("r{i}"), &format!("2026-11-{day}T03:00:00Z"), 2));
    }
    assert_eq!(removed("2026-11-30T12:00:00Z"), 6.0);
    // A cleanup that ended after that export, then the first run of December rotates the file.
    append(cleanup_run("r3", "2026-11-30T23:00:00Z", 3));
    run_at(&env, "2026-12-01T00:05:00Z", &["generate", "--period", "day", "--date", "2026-11-30"]);
    assert_eq!(names(&env.state_dir()).iter().filter(|n| *n == "runs.2026-11.001.jsonl").count(), 1);
    assert_eq!(removed("2026-12-01T00:10:00Z"), 9.0, "the rotated runs not counted again, the last one counted");
    append(cleanup_run("r4", "2026-12-02T03:00:00Z", 1));
    assert_eq!(removed("2026-12-02T04:00:00Z"), 10.0);
    assert_eq!(removed("2026-12-02T04:00:00Z"), 10.0);
    // January's monthly run compresses November's segment, and its run record rotates
    // December's file: the totals stay.
    run_at(&env, "2027-01-01T06:00:00Z", &["generate", "--period", "month", "-q"]);
    let files = names(&env.state_dir());
    assert!(files.contains(&"runs.2026-11.001.jsonl.gz".to_owned()), "{files:?}");
    assert!(files.contains(&"runs.2026-12.001.jsonl".to_owned()), "{files:?}");
    assert_eq!(removed("2027-01-01T07:00:00Z"), 10.0);
    append(cleanup_run("r5", "2027-01-02T03:00:00Z", 5));
    assert_eq!(removed("2027-01-02T04:00:00Z"), 15.0);
}

#[test]
fn the_monthly_archival_compresses_prunes_and_recovers_a_killed_run() {
    let env = TestEnv::new();
    let state = env.state_dir();
    // A month of analytics history to report on (the current file), and old segments of the
    // run, health and analytics histories.
    std::fs::create_dir_all(state.join("analytics")).unwrap();
    std::fs::create_dir_all(state.join("health")).unwrap();
    let lines = history::history("2026-10-31T00:00:00Z", 31, |step, _| history::Sample {
        used_memory: 1e8,
        maxmemory: 1e9,
        hits: 900.0 * step as f64,
        misses: 100.0 * step as f64,
        ops_per_sec: 10.0,
        latency_ms: 1.0,
        hit_ratio: None,
    });
    std::fs::write(state.join("analytics/history.jsonl"), &lines).unwrap();
    let one = |at: &str| format!("{{\"schema_version\":1,\"timestamp\":\"{at}\",\"status\":\"OK\"}}\n");
    let write = |rel: &str, at: &str| std::fs::write(state.join(rel), one(at)).unwrap();
    write("health/history.2025-06.001.jsonl", "2025-06-03T00:00:00Z");
    write("health/history.2025-11.001.jsonl", "2025-11-03T00:00:00Z");
    write("health/history.2026-10.001.jsonl", "2026-10-03T00:00:00Z");
    write("health/history.2026-11.001.jsonl", "2026-11-03T00:00:00Z");
    write("health/history.2026-11.002.jsonl", "2026-11-20T00:00:00Z");
    write("health/history.2026-12.001.jsonl", "2026-12-01T00:00:00Z");
    write("health/history.jsonl", "2026-12-01T05:00:00Z");
    write("analytics/history.2026-09.001.jsonl", "2026-09-03T00:00:00Z");
    // A killed archival: a compression cut short.
    std::fs::write(state.join("health/history.2026-10.001.jsonl.gz.tmp"), b"\x1f\x8b\x08 cut").unwrap();
    let out = run_at(&env, "2026-12-01T06:00:00Z", &["generate", "--period", "month", "--date", "2026-11-30", "-q"]);
    out.expect_code(0);
    assert_eq!(out.stdout, "", "cron mails any output: {}", out.dump());
    assert_eq!(
        names(&state.join("health")),
        [
            "history.2025-11.001.jsonl.gz",
            "history.2026-10.001.jsonl.gz",
            "history.2026-11.001.jsonl.gz",
            "history.2026-11.002.jsonl.gz",
            "history.2026-12.001.jsonl",
            "history.jsonl",
        ],
        "June 2025 is past the 13 months kept; this month's segment and the current file stay plain"
    );
    assert!(names(&state.join("analytics")).contains(&"history.2026-09.001.jsonl.gz".to_owned()));
    // Recorded in the run record.
    let runs = std::fs::read_to_string(state.join("runs.jsonl")).unwrap();
    let record: Value = serde_json::from_str(runs.lines().last().unwrap()).unwrap();
    let archival = &record["summary"]["archival"];
    assert_eq!(record["job"], "archival-monthly");
    assert_eq!(archival["compressed"].as_array().unwrap().len(), 5, "{archival:#}");
    assert_eq!(archival["pruned"].as_array().unwrap().len(), 1, "{archival:#}");
    assert!(archival["recovered"].to_string().contains("history.2026-10.001.jsonl.gz.tmp"), "{archival:#}");
    // Compressed segments read back: November's health lines are all there.
    let gz = std::fs::File::open(state.join("health/history.2026-11.002.jsonl.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(gz), &mut text).unwrap();
    assert_eq!(text, one("2026-11-20T00:00:00Z"));
    // Without -q it says what it did; a second run has nothing left to do.
    let again = run_at(&env, "2026-12-01T07:00:00Z", &["generate", "--period", "month", "--date", "2026-11-30"]);
    again.expect_code(0);
    assert!(again.stdout.contains("archival: no history segment due"), "{}", again.dump());
}
