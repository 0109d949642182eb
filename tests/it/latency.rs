//! Probe latency is the wire round trip: tiers probed together stay close to each alone.
//!
//! Every figure compared here is measured in the same test, on the same machine, against the
//! same servers: a tier's latency when every tier is probed at once against its latency when
//! it is probed alone, and a tier's reported latency against a round trip the test takes
//! itself on an open connection. No figure is compared with a fixed number of milliseconds.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Instant;

use cache_tests::{Mem0Server, PgOptions, PgServer, RedisServer, SelfSigned, StubHttp, TestEnv};
use serde_json::Value;

use crate::HEALTH;

/// Together may be this many times slower than alone...
const FACTOR: f64 = 3.0;
/// ...plus this many milliseconds, for figures well under a millisecond, where the scheduler's
/// noise is larger than the figure.
const SLACK_MS: f64 = 5.0;
/// Rounds of (together, each alone); medians are compared, so a hiccup of a busy machine in a
/// run or two is not taken for a slow tier, and a tier slowed in most runs is.
const ROUNDS: usize = 5;

/// The targets of the test: `tier:name`.
const TARGETS: [&str; 5] = ["redis:main", "redis:tls", "postgres:main", "memory:mem0", "http:app"];

struct Tiers {
    _cert: SelfSigned,
    redis: RedisServer,
    _redis_tls: RedisServer,
    pg: PgServer,
    mem0: Mem0Server,
    app: StubHttp,
    env: TestEnv,
}

/// Every tier, local: redis-server, another over TLS (its own server: one busy with a TLS
/// handshake answers its other clients later, which is the server's latency, not the probe's),
/// PostgreSQL accepting TCP over TLS only, verified with a CA file, the Mem0 stand-in and an
/// application's health endpoint.
async fn start() -> Option<Tiers> {
    let cert = SelfSigned::generate()?;
    let redis = RedisServer::start()?;
    let redis_tls = RedisServer::start_tls(&cert)?;
    let pg = PgServer::start_with(PgOptions { tls: Some(&cert), ..Default::default() })?;
    pg.create_database("app").await;
    pg.client("app").await.batch_execute(crate::health_table_sql()).await.unwrap();
    let mem0 = Mem0Server::platform("m0-key");
    mem0.add_memory("m1", "proj", "likes tea", &["food"], "2026-11-01T00:00:00Z");
    let app = StubHttp::new(vec![("/health", 200, "{\"status\":\"ok\"}".into())]);
    let env = TestEnv::new();
    env.watch_log("redis", redis.dir().join("redis.log"));
    env.watch_log("redis (TLS)", redis_tls.dir().join("redis.log"));
    env.watch_log("postgres", pg.socket_dir().join("postgres.log"));
    env.write_config(&format!(
        "project_name = \"proj\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{redis}\"\n\
         [[redis]]\nname = \"tls\"\nurl = \"{redis_tls}#insecure\"\n\
         [[postgres]]\nname = \"main\"\nurl = \"{pg}?sslmode=require\"\ntls = {{ ca_file = \"{ca}\" }}\n\
         [[memory]]\nname = \"mem0\"\nurl = \"{mem0}\"\napi_key = \"m0-key\"\n\
         [[http]]\nname = \"app\"\nurl = \"{app}/health\"\n",
        redis = redis.url(),
        redis_tls = redis_tls.tls_url(),
        pg = pg.tcp_url("app"),
        ca = cert.cert().display(),
        mem0 = mem0.url(),
        app = app.url(),
    ));
    Some(Tiers { _cert: cert, redis, _redis_tls: redis_tls, pg, mem0, app, env })
}

/// Runs `cache-health check --format json` with `args` and returns `tier:name` → latency_ms of
/// the targets in [`TARGETS`], with the whole report.
fn latencies(env: &TestEnv, args: &[&str]) -> (BTreeMap<String, f64>, Value) {
    let mut argv = vec!["check", "--format", "json"];
    argv.extend_from_slice(args);
    let out = env.run(HEALTH, &argv);
    let report = out.json();
    let mut found = BTreeMap::new();
    for t in report["targets"].as_array().unwrap() {
        let id = format!("{}:{}", t["tier"].as_str().unwrap(), t["name"].as_str().unwrap());
        if !TARGETS.contains(&id.as_str()) {
            continue;
        }
        assert_eq!(t["status"], "healthy", "{id} is not healthy\n{}", out.dump());
        let latency = t["latency_ms"].as_f64().unwrap_or_else(|| panic!("{id} has no latency_ms\n{}", out.dump()));
        found.insert(id, latency);
    }
    (found, report)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn within(together: f64, alone: f64) -> bool {
    together <= FACTOR * alone + SLACK_MS
}

#[tokio::test(flavor = "multi_thread")]
async fn tiers_probed_together_answer_as_fast_as_each_alone() {
    let Some(tiers) = start().await else { return };
    let env = &tiers.env;
    let mut together: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut alone: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..ROUNDS {
        // Every tier, the host included, as cron runs it.
        let (all, report) = latencies(env, &[]);
        assert_eq!(all.len(), TARGETS.len(), "{report:#}");
        for (id, ms) in all {
            together.entry(id).or_default().push(ms);
        }
        for id in TARGETS {
            let (one, report) = latencies(env, &["--tier", id]);
            assert_eq!(report["targets"].as_array().unwrap().len(), 1, "{report:#}");
            alone.entry(id.to_owned()).or_default().extend(one.values());
        }
    }
    let mut table =
        format!("{:<16} {:>12} {:>12}   (median of {ROUNDS}; each run's figures)\n", "target", "together", "alone");
    let mut slow = Vec::new();
    for id in TARGETS {
        let (t, a) = (median(together[id].clone()), median(alone[id].clone()));
        table.push_str(&format!("{id:<16} {t:>9.3} ms {a:>9.3} ms   {:?} {:?}\n", together[id], alone[id]));
        if !within(t, a) {
            slow.push(format!("{id}: {t:.3} ms together, {a:.3} ms alone"));
        }
    }
    eprintln!("latency_ms, every tier together and each alone:\n{table}");
    assert!(
        slow.is_empty(),
        "probed together, tiers answered more than {FACTOR}x (+{SLACK_MS} ms) slower than alone: {}\n{table}",
        slow.join("; ")
    );
}

/// One HTTP/1.1 request on `stream`, kept alive; returns the status line.
fn http_get(stream: &mut BufReader<TcpStream>, host: &str, path: &str, headers: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n");
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    let mut status = String::new();
    stream.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    status
}

/// The median of a few timed calls of `call`, milliseconds, after one untimed call that opens
/// and warms the connection.
fn round_trip(mut call: impl FnMut()) -> f64 {
    call();
    median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                call();
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

fn http_round_trip(base: &str, path: &str, headers: &str) -> f64 {
    let host = base.trim_start_matches("http://").to_owned();
    let mut stream = BufReader::new(TcpStream::connect(&host).unwrap());
    stream.get_ref().set_nodelay(true).unwrap();
    round_trip(|| {
        let status = http_get(&mut stream, &host, path, headers);
        assert!(status.contains(" 200 "), "{path}: {status}");
    })
}

fn check<'a>(target: &'a Value, name: &str) -> &'a Value {
    target["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {target:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn reported_latency_is_a_round_trip_and_connecting_is_reported_apart() {
    let Some(tiers) = start().await else { return };
    // The test's own round trips on open connections, as `redis-cli --latency`, psql's
    // `\timing` and curl on a kept-alive connection measure them.
    let mut redis = tiers.redis.connection();
    let redis_rtt = round_trip(|| {
        let _: String = redis::cmd("PING").query(&mut redis).unwrap();
    });
    // PostgreSQL over its socket, without TLS: encryption adds microseconds to a round trip.
    let pg = tiers.pg.client("app").await;
    let mut pg_samples = Vec::new();
    for _ in 0..=ROUNDS {
        let start = Instant::now();
        pg.simple_query("SELECT 1").await.unwrap();
        pg_samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let pg_rtt = median(pg_samples[1..].to_vec());
    let app_rtt = http_round_trip(&tiers.app.url(), "/health", "");
    let mem0_rtt = http_round_trip(&tiers.mem0.url(), "/v1/memories/?user_id=proj", "Authorization: Token m0-key\r\n");
    let ours = [("redis:main", redis_rtt), ("postgres:main", pg_rtt), ("memory:mem0", mem0_rtt), ("http:app", app_rtt)];

    let mut reported: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut report = Value::Null;
    for _ in 0..ROUNDS {
        let (all, last) = latencies(&tiers.env, &[]);
        for (id, ms) in all {
            reported.entry(id).or_default().push(ms);
        }
        report = last;
    }
    let mut table = format!("{:<16} {:>12} {:>12}   (medians of {ROUNDS})\n", "target", "reported", "test's own");
    let mut far = Vec::new();
    for (id, rtt) in ours {
        let got = median(reported[id].clone());
        table.push_str(&format!("{id:<16} {got:>9.3} ms {rtt:>9.3} ms\n"));
        if !within(got, rtt) {
            far.push(format!("{id}: reported {got:.3} ms, one round trip {rtt:.3} ms"));
        }
    }
    eprintln!("latency_ms reported against the test's own round trip:\n{table}");
    assert!(far.is_empty(), "reported latency is not one round trip: {}\n{table}", far.join("; "));

    // Connecting (TCP, TLS, authentication) is reported apart, as `connect_ms` and a `connect`
    // check, and not judged by the latency threshold.
    for id in TARGETS {
        let (tier, name) = id.split_once(':').unwrap();
        let t = report["targets"].as_array().unwrap().iter().find(|t| t["tier"] == tier && t["name"] == name).unwrap();
        let connect_ms = t["metrics"]["connect_ms"].as_f64().unwrap_or_else(|| panic!("{id}: no connect_ms: {t:#}"));
        let connect = check(t, "connect");
        assert_eq!(connect["status"], "healthy", "{id}: {t:#}");
        assert_eq!(connect["perf"]["value"].as_f64(), Some(connect_ms), "{id}: {t:#}");
        assert!(connect["perf"].get("warn").is_none(), "{id}: connecting is judged: {t:#}");
        let latency = check(t, "latency");
        assert_eq!(latency["perf"]["value"], t["latency_ms"], "{id}: {t:#}");
    }
}
