//! The Prometheus export against the real peers: node_exporter's textfile collector and a
//! Prometheus scrape.
//!
//! Two installations (projects `shop` and `blog`) on one host, both with a Redis target called
//! `main` on the same server, export into one textfile directory; node_exporter must read both
//! without a duplicate series, and Prometheus must keep our labels as we wrote them. The state
//! is made by the real tools: `collect`, `cache-health check` and `monitor`, `cache-backup
//! create`, `cache-cleanup files`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cache_tests::{Blackhole, PgServer, RedisServer, TestEnv, find_binary, free_port, missing, wait_until};
use serde_json::Value;

use crate::{ANALYTICS, BACKUP, CLEANUP, HEALTH};

/// A peer process, killed and reaped on drop; its output goes to `log`.
struct Peer {
    child: Child,
    log: PathBuf,
}

impl Peer {
    fn start(mut command: Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        command.stdin(Stdio::null()).stdout(file.try_clone().unwrap()).stderr(file);
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on loopback: (status line and headers, body); `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.to_owned(), body.to_owned()))
}

/// The samples of an exposition: `name{labels}` → value (comments left out).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap_or_else(|e| panic!("`{l}`: {e}")))
        })
        .collect()
}

/// The lines of `text` that belong to a series of `target` (`target="..."`).
fn series_of<'a>(text: &'a str, target: &str) -> Vec<&'a str> {
    let tag = format!("target=\"{target}\"");
    text.lines().filter(|l| !l.starts_with('#') && l.contains(&tag)).collect()
}

fn promtool_accepts(file: &Path) {
    let Some(promtool) = find_binary("promtool", &[]) else {
        missing("promtool (Debian package prometheus)");
        return;
    };
    let check =
        Command::new(promtool).args(["check", "metrics"]).stdin(std::fs::File::open(file).unwrap()).output().unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(file).unwrap()
    );
}

/// Two projects on one host, each with its state directory and the same Redis server as
/// `main`, collected and exported into one textfile directory (`-o DIR`).
struct TwoProjects {
    envs: Vec<TestEnv>,
    dir: PathBuf,
    keys: u64,
}

const PROJECTS: [&str; 2] = ["shop", "blog"];

fn two_projects(redis: &RedisServer) -> TwoProjects {
    let mut conn = redis.connection();
    for i in 0..20 {
        let _: () = redis::cmd("SET").arg(format!("app:{i}")).arg("v").query(&mut conn).unwrap();
    }
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    let envs: Vec<TestEnv> = PROJECTS.iter().map(|_| TestEnv::new()).collect();
    let dir = envs[0].path("textfile");
    std::fs::create_dir(&dir).unwrap();
    for (env, project) in envs.iter().zip(PROJECTS) {
        env.write_config(&format!(
            "project_name = \"{project}\"\n[[redis]]\nname = \"main\"\nurl = \"{}\"\n",
            redis.url()
        ));
        env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
        env.run(ANALYTICS, &["export", "--format", "prometheus", "-o", dir.to_str().unwrap()]).expect_code(0);
    }
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        ["cache-toolkit-blog.prom", "cache-toolkit-shop.prom"],
        "one file per project, nothing left over"
    );
    for file in &files {
        let path = dir.join(file);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions()) & 0o777;
        assert_eq!(mode, 0o644, "node_exporter must be able to read {file}");
    }
    TwoProjects { envs, dir, keys }
}

/// node_exporter with only the textfile collector, on `dir`; `None` where it is not installed.
fn node_exporter(dir: &Path, log: PathBuf) -> Option<(Peer, u16)> {
    let Some(bin) = find_binary("prometheus-node-exporter", &[]).or_else(|| find_binary("node_exporter", &[])) else {
        missing("prometheus-node-exporter (Debian package prometheus-node-exporter)");
        return None;
    };
    let port = free_port();
    let mut command = Command::new(bin);
    command.args([
        "--collector.disable-defaults",
        "--collector.textfile",
        &format!("--collector.textfile.directory={}", dir.display()),
        &format!("--web.listen-address=127.0.0.1:{port}"),
    ]);
    let peer = Peer::start(command, log);
    let up = wait_until(Duration::from_secs(20), || http_get(port, "/metrics").is_some());
    assert!(up, "node_exporter did not listen on {port}:\n{}", peer.log());
    Some((peer, port))
}

#[test]
fn node_exporter_reads_both_projects_from_one_textfile_directory() {
    let Some(redis) = RedisServer::start() else { return };
    let projects = two_projects(&redis);
    let Some((exporter, port)) = node_exporter(&projects.dir, projects.envs[0].path("node_exporter.log")) else {
        return;
    };
    let (head, body) = http_get(port, "/metrics").unwrap();
    assert!(head.contains(" 200 "), "{head}\n{}", exporter.log());
    let metrics = samples(&body);
    for project in PROJECTS {
        let series = |name: &str| format!("{name}{{project=\"{project}\",target=\"main\"}}");
        assert_eq!(metrics.get(&series("cache_redis_up")), Some(&1.0), "{project}:\n{body}");
        assert_eq!(metrics.get(&series("cache_redis_keys")), Some(&(projects.keys as f64)), "{project}:\n{body}");
        let mtime =
            format!("node_textfile_mtime_seconds{{file=\"{}/cache-toolkit-{project}.prom\"}}", projects.dir.display());
        let mtime_short = format!("node_textfile_mtime_seconds{{file=\"cache-toolkit-{project}.prom\"}}");
        assert!(
            metrics.contains_key(&mtime) || metrics.contains_key(&mtime_short),
            "no mtime of {project}'s file:\n{body}"
        );
    }
    assert_eq!(metrics.get("node_textfile_scrape_error"), Some(&0.0), "{body}\n{}", exporter.log());
    assert!(!body.contains("exported_"), "{body}");
    // Every one of our series names its project (node_exporter sorts the labels).
    let ours: Vec<&String> = metrics.keys().filter(|k| k.starts_with("cache_")).collect();
    assert!(ours.len() > 10, "{body}");
    for series in ours {
        let labels = series.split_once('{').unwrap().1;
        assert!(
            PROJECTS
                .iter()
                .any(|p| labels.starts_with(&format!("project=\"{p}\""))
                    || labels.contains(&format!(",project=\"{p}\""))),
            "{series} has no project"
        );
    }
}

/// Runs `query` against Prometheus's HTTP API until `ready` accepts its result vector.
fn query_until(port: u16, query: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    let found = wait_until(Duration::from_secs(60), || {
        let Some((head, body)) = http_get(port, &format!("/api/v1/query?query={query}")) else { return false };
        if !head.contains(" 200 ") {
            return false;
        }
        let doc: Value = serde_json::from_str(&body).unwrap();
        last = doc["data"]["result"].as_array().cloned().unwrap_or_default();
        ready(&last)
    });
    assert!(found, "`{query}` never gave what was expected; last result: {last:#?}");
    last
}

#[test]
fn prometheus_scraping_node_exporter_keeps_the_project_and_job_labels_as_written() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(prometheus) = find_binary("prometheus", &[]) else {
        missing("prometheus (Debian package prometheus)");
        return;
    };
    let projects = two_projects(&redis);
    let env = &projects.envs[0];
    let Some((_exporter, exporter_port)) = node_exporter(&projects.dir, env.path("node_exporter.log")) else { return };
    let config = env.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut command = Command::new(prometheus);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", env.path("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let server = Peer::start(command, env.path("prometheus.log"));
    let instance = format!("127.0.0.1:{exporter_port}");
    let result = std::panic::catch_unwind(|| {
        let up = query_until(port, "cache_redis_up", |r| r.len() == 2);
        let mut seen: Vec<&str> = up.iter().map(|s| s["metric"]["project"].as_str().unwrap()).collect();
        seen.sort();
        assert_eq!(seen, ["blog", "shop"], "{up:#?}");
        for s in &up {
            let labels = s["metric"].as_object().unwrap();
            let mut names: Vec<&str> = labels.keys().map(String::as_str).collect();
            names.sort();
            assert_eq!(names, ["__name__", "instance", "job", "project", "target"], "{s:#}");
            assert_eq!((labels["job"].as_str(), labels["instance"].as_str()), (Some("node"), Some(instance.as_str())));
            assert_eq!(s["value"][1], "1", "{s:#}");
        }
        // The toolkit's job names come through as `cache_job`; Prometheus's `job` stays its own.
        let jobs = query_until(port, "cache_job_last_run_timestamp_seconds", |r| r.len() == 2);
        for s in &jobs {
            let labels = s["metric"].as_object().unwrap();
            assert_eq!(labels["cache_job"], "analytics-collect", "{s:#}");
            assert_eq!(labels["job"], "node", "{s:#}");
            assert!(labels.keys().all(|k| !k.starts_with("exported_")), "{s:#}");
        }
    });
    if let Err(panic) = result {
        eprintln!("prometheus log:\n{}", server.log());
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_down_target_exports_up_0_and_nothing_else_and_a_server_refusing_info_is_up() {
    let Some(hosted) = RedisServer::start_with("rename-command INFO \"\"") else { return };
    let hole = Blackhole::new();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"gone\"\nurl = \"redis://{}\"\ntimeout = \"300ms\"\n\
         [[redis]]\nname = \"hosted\"\nurl = \"{}\"\n",
        hole.addr(),
        hosted.url()
    ));
    env.run(ANALYTICS, &["collect", "-q"]).expect_code(1);
    // cache-health: `gone` failed, `hosted` healthy (INFO not supported on this tier).
    env.run(HEALTH, &["check", "-q", "--tier", "redis"]).expect_code(2);
    let file = env.path("cache.prom");
    env.run(ANALYTICS, &["export", "--format", "prometheus", "-o", file.to_str().unwrap()]).expect_code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    let gone: Vec<&str> = series_of(&text, "gone");
    assert_eq!(
        gone,
        [
            "cache_redis_up{project=\"default\",target=\"gone\"} 0",
            "cache_health_status{project=\"default\",tier=\"redis\",target=\"gone\"} 2",
        ],
        "no keys, latency or figures for a target that did not answer:\n{text}"
    );
    let hosted: Vec<&str> = series_of(&text, "hosted");
    let names: Vec<&str> = hosted.iter().map(|l| l.split('{').next().unwrap()).collect();
    assert_eq!(
        names,
        ["cache_redis_up", "cache_redis_latency_seconds", "cache_redis_info_available", "cache_health_status"],
        "{text}"
    );
    assert!(hosted.contains(&"cache_redis_up{project=\"default\",target=\"hosted\"} 1"), "{text}");
    assert!(hosted.contains(&"cache_redis_info_available{project=\"default\",target=\"hosted\"} 0"), "{text}");
    assert!(hosted.contains(&"cache_health_status{project=\"default\",tier=\"redis\",target=\"hosted\"} 0"), "{text}");
    promtool_accepts(&file);
}

/// Files of 10 KiB each in `dir`, named from `first`.
fn files(dir: &Path, first: usize, n: usize) {
    for i in first..first + n {
        std::fs::write(dir.join(format!("f{i}.bin")), vec![7u8; 10 * 1024]).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_export_carries_lookups_health_alerts_backups_and_cleanups_and_passes_promtool() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(crate::health_table_sql()).await.unwrap();
    db.batch_execute("DELETE FROM cache_entries WHERE key IN ('k1', 'k2', 'k3', 'k4')").await.unwrap();
    drop(db);
    // The statistics reach pg_stat_user_tables shortly after the session ends.
    let stats = pg.client("app").await;
    let flushed = {
        let mut dead = 0;
        for _ in 0..100 {
            let row = stats
                .query_one(
                    "SELECT coalesce(n_dead_tup, 0)::bigint FROM pg_stat_user_tables WHERE relname = 'cache_entries'",
                    &[],
                )
                .await
                .unwrap();
            dead = row.get::<_, i64>(0);
            if dead > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        dead
    };
    assert!(flushed > 0, "the DELETE left no dead tuples in the statistics");
    // The applications' lookups: 5 hits and 3 misses on a fresh server.
    let mut conn = redis.connection();
    for i in 0..5 {
        let _: () = redis::cmd("SET").arg(format!("app:{i}")).arg("v").query(&mut conn).unwrap();
        let _: Option<String> = redis::cmd("GET").arg(format!("app:{i}")).query(&mut conn).unwrap();
    }
    for i in 0..3 {
        let _: Option<String> = redis::cmd("GET").arg(format!("gone:{i}")).query(&mut conn).unwrap();
    }
    let env = TestEnv::new();
    let models_dir = env.path("models");
    std::fs::create_dir(&models_dir).unwrap();
    files(&models_dir, 0, 3);
    env.write_config(&format!(
        "project_name = \"shop\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{}\"\n\
         [[postgres]]\nname = \"main\"\nurl = \"{url}\"\n\
         [[files]]\nname = \"models\"\npath = \"{}\"\nmax_size = \"15 KiB\"\n\
         [[alerts.rules]]\nname = \"Many keys\"\ncondition = \"keys > 2\"\ntiers = [\"redis\"]\nchannels = [\"log\"]\n",
        redis.url(),
        models_dir.display()
    ));
    // Two collects: the second snapshot's counters hold the first one's own key sample too.
    env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
    env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
    env.run(HEALTH, &["monitor", "--once", "-q", "--tier", "redis", "--tier", "postgres"]).expect_code(0);
    let backup = env.run(BACKUP, &["create", "--only", "state", "--format", "json"]);
    backup.expect_code(0);
    let id = backup.json()["id"].as_str().unwrap().to_owned();
    let mut removed = 0;
    let mut freed = 0;
    for added in [0, 2] {
        files(&models_dir, 3, added);
        // A dry run counts nothing.
        env.run(CLEANUP, &["files", "--dry-run", "--format", "json"]).expect_code(0);
        let run = env.run(CLEANUP, &["files", "--yes", "--format", "json"]);
        run.expect_code(0);
        let target = &run.json()["targets"][0];
        removed += target["removed"].as_u64().unwrap();
        freed += target["bytes_freed"].as_u64().unwrap();
    }
    assert_eq!(removed, 4, "2 files over 15 KiB twice");

    let dir = env.path("textfile");
    std::fs::create_dir(&dir).unwrap();
    let export = || {
        env.run(ANALYTICS, &["export", "--format", "prometheus", "-o", dir.to_str().unwrap()]).expect_code(0);
        std::fs::read_to_string(dir.join("cache-toolkit-shop.prom")).unwrap()
    };
    let text = export();
    let got = samples(&text);
    let value = |series: &str| *got.get(series).unwrap_or_else(|| panic!("no `{series}` in\n{text}"));
    let l = |labels: &str| format!("{{project=\"shop\",{labels}}}");
    let redis_main = l("target=\"main\"");

    // The applications' lookups only, whatever the toolkit's sample looked up.
    assert_eq!(value(&format!("cache_redis_keyspace_hits_total{redis_main}")), 5.0);
    assert_eq!(value(&format!("cache_redis_keyspace_misses_total{redis_main}")), 3.0);
    assert!(value(&format!("cache_redis_commands_processed_total{redis_main}")) > 0.0);
    assert!(value(&format!("cache_redis_memory_fragmentation_ratio{redis_main}")) > 0.0);
    assert_eq!(value(&format!("cache_redis_role{}", l("target=\"main\",role=\"master\""))), 1.0);
    for gone in ["cache_redis_hit_ratio", "cache_redis_ops_per_second"] {
        assert!(!text.contains(gone), "{gone} is derived in PromQL from the counters now:\n{text}");
    }

    // The health report, as cache-health wrote it.
    let report: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("health/comprehensive-health.json")).unwrap())
            .unwrap();
    let target = |tier: &str| {
        report["targets"].as_array().unwrap().iter().find(|t| t["tier"] == tier && t["name"] == "main").unwrap()
    };
    for tier in ["redis", "postgres"] {
        let want = match target(tier)["status"].as_str().unwrap() {
            "healthy" => 0.0,
            "degraded" => 1.0,
            _ => 2.0,
        };
        assert_eq!(value(&format!("cache_health_status{}", l(&format!("tier=\"{tier}\",target=\"main\"")))), want);
    }
    let pg_main = l("target=\"main\"");
    let dead = target("postgres")["metrics"]["dead_tuples"].as_f64().unwrap();
    assert!(dead > 0.0, "{report:#}");
    assert_eq!(value(&format!("cache_postgres_dead_tuples{pg_main}")), dead);
    assert_eq!(
        value(&format!("cache_postgres_connections{pg_main}")),
        target("postgres")["metrics"]["connections"].as_f64().unwrap()
    );
    assert_eq!(
        value(&format!("cache_postgres_max_connections{pg_main}")),
        target("postgres")["metrics"]["max_connections"].as_f64().unwrap()
    );

    // The monitor's alert state.
    let book: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("alerts/state.json")).unwrap()).unwrap();
    let firing = book["alerts"].as_object().unwrap().values().filter(|a| a["status"] == "firing").count();
    assert_eq!(value("cache_alerts_firing{project=\"shop\"}"), firing as f64);
    assert_eq!(
        value(&format!(
            "cache_alert_firing{}",
            l("rule=\"Many keys\",tier=\"redis\",target=\"main\",severity=\"warning\"")
        )),
        1.0
    );

    // The newest backup's manifest.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join(format!("backups/{id}/manifest.json"))).unwrap())
            .unwrap();
    let bytes: u64 = manifest["files"].as_array().unwrap().iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    let created = chrono::DateTime::parse_from_rfc3339(manifest["created_at"].as_str().unwrap()).unwrap().timestamp();
    assert_eq!(value("cache_backups{project=\"shop\"}"), 1.0);
    assert_eq!(value("cache_backup_last_size_bytes{project=\"shop\"}"), bytes as f64);
    assert_eq!(value("cache_backup_last_timestamp_seconds{project=\"shop\"}"), created as f64);
    assert_eq!(value("cache_backup_last_complete{project=\"shop\"}"), 1.0);

    // Cleanup counters: both real runs, not the dry ones, and counted once however often exported.
    let models = l("tier=\"files\",target=\"models\"");
    assert_eq!(value(&format!("cache_cleanup_removed_total{models}")), removed as f64);
    assert_eq!(value(&format!("cache_cleanup_freed_bytes_total{models}")), freed as f64);
    let again = samples(&export());
    assert_eq!(again.get(&format!("cache_cleanup_removed_total{models}")), Some(&(removed as f64)));
    assert_eq!(again.get(&format!("cache_cleanup_freed_bytes_total{models}")), Some(&(freed as f64)));
    assert!(got.contains_key(&format!("cache_job_last_run_timestamp_seconds{}", l("cache_job=\"cleanup\""))), "{text}");

    // Counters are counters, every series names the project, and promtool's linter agrees.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
    }
    assert!(got.keys().all(|k| k.contains("{project=\"shop\"")), "{text}");
    promtool_accepts(&dir.join("cache-toolkit-shop.prom"));
}

/// The GPU lines of an exposition (`cache_gpu*`).
fn gpu_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#') && l.starts_with("cache_gpu")).collect()
}

/// On this host (as in CI) there is no NVIDIA driver: collect records why, the export says
/// `cache_gpu_up 0` and no GPU figure (never a 0 utilisation), the CSV has no GPU row, and
/// cache-health reports the GPU not available without raising its code. With `system.gpu =
/// false` the GPU is not probed and not exported at all.
#[test]
fn without_nvml_the_gpus_are_exported_as_down_never_as_idle() {
    if let cache_core::gpu::GpuStatus::Available { gpus } = cache_core::gpu::probe()
        && !gpus.is_empty()
    {
        eprintln!("note: skipping: this host has a GPU (the GPU host's own test covers it)");
        return;
    }
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
    let history = std::fs::read_to_string(env.state_dir().join("analytics/history.jsonl")).unwrap();
    let snapshot: Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(snapshot["gpu"]["available"], false, "{snapshot:#}");
    let reason = snapshot["gpu"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("NVML") || reason.contains("feature") || reason.contains("no GPU"), "{reason}");
    assert!(snapshot["gpu"].get("gpus").is_none(), "{snapshot:#}");
    let text = env.run(ANALYTICS, &["collect"]);
    text.expect_code(0);
    assert!(text.stdout.contains(&format!("not available: {reason}")), "{}", text.dump());

    let file = env.path("cache.prom");
    env.run(ANALYTICS, &["export", "--format", "prometheus", "-o", file.to_str().unwrap()]).expect_code(0);
    let prom = std::fs::read_to_string(&file).unwrap();
    assert_eq!(gpu_lines(&prom), ["cache_gpu_up{project=\"default\"} 0"], "{prom}");
    promtool_accepts(&file);
    let csv = env.run(ANALYTICS, &["export", "--format", "csv"]);
    csv.expect_code(0);
    assert!(!csv.stdout.contains(",gpu"), "{}", csv.stdout);

    let health = env.run(HEALTH, &["check", "--format", "json", "--tier", "system:gpu"]);
    health.expect_code(0);
    let gpu = &health.json()["targets"].as_array().unwrap().iter().find(|t| t["name"] == "gpu").unwrap().clone();
    assert_eq!(gpu["status"], "not_available", "{gpu:#}");
    assert!(gpu["observed"].as_object().is_none_or(serde_json::Map::is_empty), "{gpu:#}");

    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n", redis.url()));
    env.run(ANALYTICS, &["collect", "-q"]).expect_code(0);
    env.run(ANALYTICS, &["export", "--format", "prometheus", "-o", file.to_str().unwrap()]).expect_code(0);
    let prom = std::fs::read_to_string(&file).unwrap();
    assert_eq!(gpu_lines(&prom), Vec::<&str>::new(), "not probed, not exported:\n{prom}");
}

/// A reading of an H200 host, as NVML gives it, through the seam the probe feeds
/// (`GpuFigures::of`): recorded in the history as a collect on that host records it, then
/// exported by the real cache-analytics with Prometheus's base units (ratios, bytes, hertz,
/// Celsius), one series per known throttle reason, nothing for a figure NVML did not give;
/// promtool accepts it and the CSV carries the same figures.
#[test]
fn an_nvml_reading_goes_into_the_history_and_the_export_in_prometheus_units() {
    use cache_core::gpu::{Clocks, GpuInfo, GpuStatus};
    use cache_core::history::{GpuFigures, Snapshot};
    const GIB: u64 = 1 << 30;
    let busy = GpuInfo {
        index: 0,
        name: "NVIDIA H200".into(),
        uuid: Some("GPU-5c1d63a3-1b0e-4a5c-9a51-0b2f3c4d5e6f".into()),
        memory_used: Some(96 * GIB),
        memory_total: Some(141 * GIB),
        utilization_percent: Some(87),
        memory_utilization_percent: Some(42),
        temperature_celsius: Some(64),
        clocks: Clocks { graphics_mhz: Some(1980), sm_mhz: Some(1980), memory_mhz: Some(3201) },
        throttle_reasons: Some(vec!["sw_power_cap".into()]),
    };
    let partial = GpuInfo {
        index: 1,
        uuid: None,
        memory_used: None,
        memory_total: None,
        utilization_percent: None,
        memory_utilization_percent: None,
        temperature_celsius: Some(39),
        clocks: Clocks { graphics_mhz: Some(345), ..Clocks::default() },
        throttle_reasons: None,
        ..busy.clone()
    };
    let figures = GpuFigures::of(&GpuStatus::Available { gpus: vec![busy, partial] });
    assert!(figures.available && figures.reason.is_none());
    let env = TestEnv::new();
    let state = cache_core::state::StateDir::open(env.state_dir()).unwrap();
    let snapshot = Snapshot { timestamp: chrono::Utc::now(), gpu: Some(figures.clone()), ..Snapshot::default() };
    state.append_jsonl(cache_core::history::HISTORY, &snapshot).unwrap();
    // The history keeps the reading as it was, unknown figures left out.
    let line = std::fs::read_to_string(env.state_dir().join("analytics/history.jsonl")).unwrap();
    let back: Snapshot = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(back.gpu.as_ref(), Some(&figures));
    assert!(!line.contains("\"utilization_percent\":null") && !line.contains("\"memory_used\":0"), "{line}");

    let file = env.path("gpu.prom");
    env.run(ANALYTICS, &["export", "--format", "prometheus", "-o", file.to_str().unwrap()]).expect_code(0);
    let prom = std::fs::read_to_string(&file).unwrap();
    let p = |rest: &str| format!("{{project=\"default\",{rest}");
    let mut want = vec![
        "cache_gpu_up{project=\"default\"} 1".to_owned(),
        "cache_gpus{project=\"default\"} 2".to_owned(),
        format!(
            "cache_gpu_info{}",
            p("gpu=\"0\",name=\"NVIDIA H200\",uuid=\"GPU-5c1d63a3-1b0e-4a5c-9a51-0b2f3c4d5e6f\"} 1")
        ),
        format!("cache_gpu_memory_used_bytes{}", p(&format!("gpu=\"0\"}} {}", 96 * GIB))),
        format!("cache_gpu_memory_total_bytes{}", p(&format!("gpu=\"0\"}} {}", 141 * GIB))),
        format!("cache_gpu_utilization_ratio{}", p("gpu=\"0\"} 0.87")),
        format!("cache_gpu_memory_utilization_ratio{}", p("gpu=\"0\"} 0.42")),
        format!("cache_gpu_temperature_celsius{}", p("gpu=\"0\"} 64")),
        format!("cache_gpu_memory_used_ratio{}", p(&format!("gpu=\"0\"}} {}", 96.0 / 141.0))),
        format!("cache_gpu_clock_hertz{}", p("gpu=\"0\",clock=\"graphics\"} 1980000000")),
        format!("cache_gpu_clock_hertz{}", p("gpu=\"0\",clock=\"sm\"} 1980000000")),
        format!("cache_gpu_clock_hertz{}", p("gpu=\"0\",clock=\"memory\"} 3201000000")),
    ];
    for (_, reason) in cache_core::gpu::THROTTLE_REASONS {
        let on = u8::from(*reason == "sw_power_cap");
        want.push(format!("cache_gpu_throttle_reason{}", p(&format!("gpu=\"0\",reason=\"{reason}\"}} {on}"))));
    }
    want.extend([
        format!("cache_gpu_info{}", p("gpu=\"1\",name=\"NVIDIA H200\"} 1")),
        format!("cache_gpu_temperature_celsius{}", p("gpu=\"1\"} 39")),
        format!("cache_gpu_clock_hertz{}", p("gpu=\"1\",clock=\"graphics\"} 345000000")),
    ]);
    let mut got: Vec<String> = gpu_lines(&prom).into_iter().map(str::to_owned).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{prom}");
    promtool_accepts(&file);

    let csv = env.run(ANALYTICS, &["export", "--format", "csv"]);
    csv.expect_code(0);
    let rows: Vec<&str> =
        csv.stdout.lines().filter(|l| l.contains(",gpu")).map(|l| l.split_once(',').unwrap().1).collect();
    assert_eq!(
        rows,
        [
            format!("system,gpu0,memory_used,{}", 96 * GIB),
            format!("system,gpu0,memory_total,{}", 141 * GIB),
            "system,gpu0,utilization_percent,87".to_owned(),
            "system,gpu0,memory_utilization_percent,42".to_owned(),
            "system,gpu0,temperature_celsius,64".to_owned(),
            "system,gpu0,graphics_clock_mhz,1980".to_owned(),
            "system,gpu0,sm_clock_mhz,1980".to_owned(),
            "system,gpu0,memory_clock_mhz,3201".to_owned(),
            "system,gpu1,temperature_celsius,39".to_owned(),
            "system,gpu1,graphics_clock_mhz,345".to_owned(),
        ]
    );
}
