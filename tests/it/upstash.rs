//! Redis through Upstash's REST API: the stand-in checked with Upstash's own Python client,
//! then every tool run over it beside the same tool over RESP, on twin servers.

use std::collections::BTreeMap;
use std::process::Command;

use cache_tests::{RedisServer, TestEnv, UpstashStandIn};
use serde_json::Value;

use crate::{ANALYTICS, BACKUP, CLEANUP, DEBUG, HEALTH, OPTIMIZER};

const TOKEN: &str = "AXk1-upstash-token-0d6f3c";

/// Upstash's Python client (`upstash-redis`, PyPI) through the stand-in: every call shape it
/// makes (single commands, pipelines, transactions, scripts, scans) gives the answers
/// redis-server gives, and a wrong token is refused.
const CLIENT_SCRIPT: &str = r#"
import json, sys
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

url, token = sys.argv[1], sys.argv[2]
r = Redis(url=url, token=token, allow_telemetry=False)
out = {}
out["ping"] = r.ping()
out["set"] = r.set("py:s", "hello wörld", ex=600)
out["get"] = r.get("py:s")
out["ttl_ok"] = 0 < r.ttl("py:s") <= 600
out["incr"] = [r.incr("py:n"), r.incrby("py:n", 41)]
r.hset("py:h", values={"a": "1", "b": "2"})
out["hgetall"] = r.hgetall("py:h")
r.zadd("py:z", {"x": 1.5, "y": 2})
out["zrange"] = r.zrange("py:z", 0, -1, withscores=True)
r.rpush("py:l", "1", "2", "3")
out["lrange"] = r.lrange("py:l", 0, -1)
p = r.pipeline()
p.set("py:p1", "a")
p.get("py:p1")
p.exists("py:p1", "py:none")
out["pipeline"] = p.exec()
t = r.multi()
t.incr("py:n")
t.get("py:n")
out["multi"] = t.exec()
out["eval"] = r.eval("return redis.call('GET', KEYS[1])", keys=["py:s"])
keys = set()
cursor = 0
while True:
    cursor, batch = r.scan(cursor, match="py:*", count=2)
    keys.update(batch)
    if cursor == 0:
        break
out["scan"] = sorted(keys)
try:
    r.hgetall("py:s")
    out["wrongtype"] = None
except UpstashError as e:
    out["wrongtype"] = str(e)
try:
    Redis(url=url, token="not-the-token", allow_telemetry=False).get("py:s")
    out["refused"] = None
except UpstashError as e:
    out["refused"] = str(e)
out["deleted"] = r.delete("py:p1")
print(json.dumps(out))
"#;

#[test]
fn the_official_upstash_client_speaks_with_the_stand_in() {
    let has_client =
        Command::new("python3").args(["-c", "import upstash_redis"]).output().is_ok_and(|o| o.status.success());
    if !has_client && cache_tests::missing("python3 with upstash-redis (pip install upstash-redis)").is_none() {
        return;
    }
    let Some(redis) = RedisServer::start() else { return };
    let rest = UpstashStandIn::start(&redis.url(), TOKEN, &[]);
    let env = TestEnv::new();
    let script = env.path("client.py");
    std::fs::write(&script, CLIENT_SCRIPT).unwrap();
    let out = Command::new("python3").arg(&script).arg(rest.url()).arg(TOKEN).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let expected = serde_json::json!({
        "ping": "PONG",
        "set": true,
        "get": "hello wörld",
        "ttl_ok": true,
        "incr": [1, 42],
        "hgetall": {"a": "1", "b": "2"},
        "zrange": [["x", 1.5], ["y", 2.0]],
        "lrange": ["1", "2", "3"],
        "pipeline": [true, "a", 1],
        "multi": [43, "43"],
        "eval": "hello wörld",
        "scan": ["py:h", "py:l", "py:n", "py:p1", "py:s", "py:z"],
        "deleted": 1,
    });
    for (key, want) in expected.as_object().unwrap() {
        assert_eq!(&answer[key], want, "{key}: {answer:#}");
    }
    assert!(answer["wrongtype"].as_str().unwrap().starts_with("WRONGTYPE"), "{answer:#}");
    assert_eq!(answer["refused"], "Unauthorized", "{answer:#}");
    // What the client wrote is what redis-server holds.
    let mut conn = redis.connection();
    let held: String = redis::cmd("GET").arg("py:s").query(&mut conn).unwrap();
    assert_eq!(held, "hello wörld");
    let n: i64 = redis::cmd("GET").arg("py:n").query(&mut conn).unwrap();
    assert_eq!(n, 43);
}

/// The configuration of the comparison tests: the cleanup tests' prefix rules, with `url` (and
/// `token` for a REST target) for the one target, `main`.
fn config(url: &str, token: Option<&str>) -> String {
    let token = token.map(|t| format!("token = \"{t}\"\n")).unwrap_or_default();
    format!(
        "[[redis]]\nname = \"main\"\nurl = \"{url}\"\n{token}max_key_size = \"1 MiB\"\n\
         prefixes = [{{ prefix = \"app:search:\", ttl = \"30m\" }}, {{ prefix = \"app:embedding:\", ttl = \"2h\" }}, \
         {{ prefix = \"app:session:\" }}, {{ prefix = \"app:shape:\" }}]\n\
         protected = [\"app:session:*\"]\nnamespace = \"app:\"\n\
         [cleanup]\nmax_delete_share = \"50%\"\n"
    )
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// 2,500 keys of every class the cleanup modes tell apart, and of every shape a backup takes
/// (strings, hashes, sets, sorted sets, lists), with TTLs and idle times: the same on each
/// server given.
fn seed(redis: &RedisServer) {
    let ttl = 3_600_000;
    for i in 0..250 {
        redis.set_aged(&format!("app:search:fresh-{i}"), b"v", ttl, 0);
        redis.set_aged(&format!("app:search:nottl-{i}"), b"v", 0, 0);
        redis.set_aged(&format!("app:embedding:idle2d-{i}"), b"v", ttl, 2 * DAY);
        redis.set_aged(&format!("app:embedding:idle8d-{i}"), b"v", ttl, 8 * DAY);
        redis.set_aged(&format!("app:search:idle10h-{i}"), b"v", ttl, 10 * HOUR);
        redis.set_aged(&format!("app:orphan-{i}"), b"v", ttl, 0);
        redis.set_aged(&format!("zombie:{i}"), b"v", 0, 30 * DAY);
        redis.set_aged(&format!("app:session:old-{i}"), b"v", 0, 30 * DAY);
    }
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("HSET").arg(format!("app:shape:h{i}")).arg("f1").arg(format!("v{i}")).arg("f2").arg("ü").ignore();
        pipe.cmd("SADD").arg(format!("app:shape:s{i}")).arg("a").arg("b").arg(i).ignore();
        pipe.cmd("ZADD").arg(format!("app:shape:z{i}")).arg(1.5).arg("x").arg(i).arg("y").ignore();
        pipe.cmd("RPUSH").arg(format!("app:shape:l{i}")).arg("1").arg("2").arg(format!("{i}")).ignore();
        pipe.cmd("SET").arg(format!("app:shape:t{i}")).arg(format!("text {i}")).arg("PX").arg(7_200_000 + i).ignore();
    }
    // One big hash, taken in chunks.
    for f in 0..20_000 {
        pipe.cmd("HSET").arg("app:shape:big").arg(format!("field-{f}")).arg("x".repeat(40)).ignore();
    }
    let () = pipe.query(&mut conn).unwrap();
}

/// A RESP target and a REST target over twin servers, each with its own test environment.
struct Twins {
    resp: RedisServer,
    rest_server: RedisServer,
    rest: UpstashStandIn,
    resp_env: TestEnv,
    rest_env: TestEnv,
}

fn twins(refused: &[&str]) -> Option<Twins> {
    let resp = RedisServer::start()?;
    let rest_server = RedisServer::start()?;
    seed(&resp);
    seed(&rest_server);
    let rest = UpstashStandIn::start(&rest_server.url(), TOKEN, refused);
    let resp_env = TestEnv::new();
    resp_env.write_config(&config(&resp.url(), None));
    let rest_env = TestEnv::new();
    rest_env.write_config(&config(&format!("upstash+{}", rest.url()), Some(TOKEN)));
    Some(Twins { resp, rest_server, rest, resp_env, rest_env })
}

impl Twins {
    /// Runs `bin args` on both sides, expecting `code` of each.
    fn run(&self, bin: &str, args: &[&str], code: i32) -> (Value, Value) {
        let resp = self.resp_env.run(bin, args);
        resp.expect_code(code);
        let before = self.rest.commands();
        let rest = self.rest_env.run(bin, args);
        rest.expect_code(code);
        assert!(self.rest.commands() > before, "{bin} {args:?} sent nothing over REST\n{}", rest.dump());
        assert!(!rest.stdout.contains(TOKEN) && !rest.stderr.contains(TOKEN), "token leaked\n{}", rest.dump());
        (resp.json(), rest.json())
    }
}

/// The (name, action) of every item a cleanup report lists, sorted.
fn items(report: &Value) -> Vec<(String, String)> {
    let mut items: Vec<(String, String)> = report["targets"][0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_owned(), i["action"].as_str().unwrap().to_owned()))
        .collect();
    items.sort();
    items
}

/// Every key of `redis` with its TTL in seconds (-1: none).
fn keys_and_ttls(redis: &RedisServer) -> BTreeMap<String, i64> {
    let mut conn = redis.connection();
    redis
        .keys()
        .into_iter()
        .map(|k| {
            let ttl: i64 = redis::cmd("TTL").arg(&k).query(&mut conn).unwrap();
            (k, ttl)
        })
        .collect()
}

/// Twins hold the same keys, each with no TTL on both or TTLs within a few seconds (the twins
/// were seeded, and cleaned, a moment apart).
fn assert_twins(a: &RedisServer, b: &RedisServer) {
    let (a, b) = (keys_and_ttls(a), keys_and_ttls(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, ttl) in &a {
        let other = b[key];
        assert!(
            (*ttl < 0 && other == *ttl) || (*ttl >= 0 && other >= 0 && (ttl - other).abs() <= 5),
            "{key}: {ttl} vs {other}"
        );
    }
}

#[test]
fn every_tool_over_upstash_rest_matches_resp() {
    let Some(t) = twins(&[]) else { return };
    // Health: the same checks, all passing.
    let (resp, rest) = t.run(HEALTH, &["check", "--format", "json", "--tier", "redis"], 0);
    let checks = |r: &Value| -> Vec<(String, String)> {
        r["targets"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_owned(), c["status"].as_str().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(checks(&rest), checks(&resp));
    assert!(checks(&rest).iter().any(|(n, _)| n == "write"), "{rest:#}");
    assert_eq!(rest["targets"][0]["metrics"]["keys"], 2501);
    assert_eq!(rest["overall_health"], "healthy");
    // Debug: the same keys, prefixes, TTL and idle buckets, and the same biggest key.
    let (resp, rest) = t.run(DEBUG, &["memory", "--format", "json", "--tier", "redis"], 0);
    let (resp, rest) = (&resp["redis"][0], &rest["redis"][0]);
    for field in ["keys_in_db", "scanned", "sizes_known", "prefixes"] {
        assert_eq!(rest[field], resp[field], "{field}: {rest:#}");
    }
    assert_eq!(rest["scanned"], 2501);
    assert_eq!(rest["top_keys"][0], resp["top_keys"][0]);
    // Cleanup, dry run: the same selection (the report lists a sample of it).
    let args = ["aggressive", "--dry-run", "--tier", "redis", "--format", "json"];
    let (resp, rest) = t.run(CLEANUP, &args, 0);
    assert_eq!(items(&rest).len(), items(&resp).len());
    for field in ["examined", "selected", "protected", "foreign", "bytes_freed"] {
        assert_eq!(rest["targets"][0][field], resp["targets"][0][field], "{field}");
    }
    assert_eq!(rest["targets"][0]["protected"], 250);
    // Cleanup for real: the same keys go, the same TTLs are given, the rest is untouched.
    let (resp, rest) = t.run(CLEANUP, &["moderate", "--yes", "--tier", "redis", "--format", "json"], 0);
    assert_eq!(rest["targets"][0]["removed"], resp["targets"][0]["removed"], "{rest:#}");
    assert_eq!(rest["targets"][0]["removed"], 250);
    assert_twins(&t.rest_server, &t.resp);
    // Analytics: the same figures of the tier in the snapshot.
    t.run(ANALYTICS, &["collect", "--format", "json"], 0);
    let last = |env: &TestEnv| -> Value {
        let text = std::fs::read_to_string(env.state_dir().join("analytics/history.jsonl")).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    let (resp, rest) = (last(&t.resp_env), last(&t.rest_env));
    for field in ["keys", "prefixes", "sampled"] {
        assert_eq!(rest["redis"][0][field], resp["redis"][0][field], "{field}: {rest:#}");
    }
    assert_eq!(rest["redis"][0]["keys"], 2251);
    assert_eq!(rest["redis"][0]["latency"]["samples"], 10);
    // Optimizer: the same recommendations from the same figures.
    let (resp, rest) = t.run(OPTIMIZER, &["analyze", "--format", "json", "--tier", "redis"], 0);
    let ttl_findings = |r: &Value| -> Vec<String> {
        r["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["category"] == "ttl")
            .map(|x| x["issue"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ttl_findings(&rest), ttl_findings(&resp));
    assert!(ttl_findings(&rest).iter().any(|i| i.contains("401 of 2251 sampled keys")), "{rest:#}");
    // Backup over REST (by value: a DUMP payload could not go back over REST), restored over
    // REST into an empty server: the same dataset, expiry times included.
    let out = t.rest_env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    out.expect_code(0);
    let created = out.json();
    assert_eq!(created["sources"][0]["method"], "logical", "{created:#}");
    assert!(created["notes"].to_string().contains("2250 keys taken by value"), "{created:#}");
    t.rest_env.run(BACKUP, &["verify"]).expect_code(0);
    let Some(empty) = RedisServer::start() else { return };
    let into = UpstashStandIn::start(&empty.url(), TOKEN, &[]);
    t.rest_env.write_config(&config(&format!("upstash+{}", into.url()), Some(TOKEN)));
    let out = t.rest_env.run(BACKUP, &["restore", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert!(into.commands() > 2251, "{}", out.dump());
    assert_eq!(empty.digest(), t.rest_server.digest(), "{}", out.dump());
    // A backup taken over RESP (the dump file) restored over REST: taken by value from the
    // scratch server that loads it, the same dataset again.
    t.resp_env.run(BACKUP, &["create", "--only", "redis"]).expect_code(0);
    let Some(second) = RedisServer::start() else { return };
    let into = UpstashStandIn::start(&second.url(), TOKEN, &[]);
    t.resp_env.write_config(&config(&format!("upstash+{}", into.url()), Some(TOKEN)));
    let out = t.resp_env.run(BACKUP, &["restore", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(second.digest(), t.resp.digest(), "{}", out.dump());
}

/// The commands a hosted tier refuses (Upstash offers none of these to its REST clients).
const HOSTED_REFUSALS: &[&str] = &["CONFIG", "SLOWLOG", "CLIENT", "DEBUG", "OBJECT", "MEMORY", "LATENCY", "BGSAVE"];

#[test]
fn refused_commands_over_rest_degrade_with_a_note_and_binary_values_are_named() {
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    // A value that is not UTF-8 text: readable over REST (base64), not writable back.
    let mut conn = redis.connection();
    let () = redis::cmd("SET").arg("app:shape:binary").arg(&[0xffu8, 0x00, 0xfe][..]).query(&mut conn).unwrap();
    let rest = UpstashStandIn::start(&redis.url(), TOKEN, HOSTED_REFUSALS);
    let env = TestEnv::new();
    env.write_config(&config(&format!("upstash+{}", rest.url()), Some(TOKEN)));
    let health = env.run(HEALTH, &["check", "--format", "json", "--tier", "redis"]);
    let report = health.json();
    assert_eq!(report["targets"][0]["status"], "healthy", "{}", health.dump());
    for (args, says) in [
        (&["memory", "--format", "json", "--tier", "redis"][..], "not supported on this"),
        (&["performance", "--samples", "5", "--format", "json"][..], "not supported on this"),
        (&["connections", "--format", "json"][..], "not supported on this"),
    ] {
        let out = env.run(DEBUG, args);
        out.expect_code(0);
        assert!(out.stdout.contains(says), "{args:?}: {}", out.dump());
    }
    // The audit and the merged configuration: the token is never shown.
    for args in [&["security", "--format", "json"][..], &["config"][..]] {
        let out = env.run(DEBUG, args);
        assert!(out.code() == 0 || out.code() == 1, "{}", out.dump());
        assert!(!out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN), "{}", out.dump());
    }
    // The audit checks that the REST API refuses a wrong token (it does: no finding on it).
    let audit = env.run(DEBUG, &["security", "--format", "json"]).json();
    let on_redis: Vec<&Value> =
        audit["findings"].as_array().unwrap().iter().filter(|f| f["subject"] == "redis/main").collect();
    assert!(on_redis.is_empty(), "{audit:#}");
    assert!(!audit["notes"].to_string().contains("token check not done"), "{audit:#}");
    // Cleanup without OBJECT IDLETIME judges no idleness (and says so), yet still expires.
    let dry = env.run(CLEANUP, &["aggressive", "--dry-run", "--tier", "redis", "--format", "json"]);
    dry.expect_code(0);
    let target = &dry.json()["targets"][0];
    assert_eq!(target["unreachable"], false, "{}", dry.dump());
    // The backup takes every key (the binary one too) by value, and the restore over REST
    // puts back every other key and names the one it could not send.
    let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    out.expect_code(0);
    let Some(empty) = RedisServer::start() else { return };
    let into = UpstashStandIn::start(&empty.url(), TOKEN, HOSTED_REFUSALS);
    env.write_config(&config(&format!("upstash+{}", into.url()), Some(TOKEN)));
    let out = env.run(BACKUP, &["restore", "--yes", "--format", "json"]);
    assert_ne!(out.code(), 0, "{}", out.dump());
    assert!(out.stdout.contains("app:shape:binary") && out.stdout.contains("not UTF-8"), "{}", out.dump());
    let mut restored = empty.keys();
    restored.push("app:shape:binary".into());
    restored.sort();
    assert_eq!(restored, redis.keys());
}

#[test]
fn the_seed_variables_configure_upstash_and_a_bad_token_or_a_dead_endpoint_fail_in_time() {
    let Some(redis) = RedisServer::start() else { return };
    let rest = UpstashStandIn::start(&redis.url(), TOKEN, &[]);
    let env = TestEnv::new();
    // Seed 000's names and no configuration file: the embedded default plus `upstash`.
    let mut command = env.command(HEALTH, &["check", "--format", "json", "--tier", "redis"]);
    command.env("UPSTASH_URL", format!("upstash+{}", rest.url())).env("UPSTASH_TOKEN", TOKEN);
    let out = env.run_command(command);
    let report = out.json();
    let upstash = report["targets"].as_array().unwrap().iter().find(|t| t["name"] == "upstash").cloned();
    assert_eq!(upstash.as_ref().map(|t| t["status"].clone()), Some("healthy".into()), "{}", out.dump());
    assert!(rest.commands() > 0);
    // Half a configuration is an error naming what is missing, not "not configured".
    let mut command = env.command(HEALTH, &["check", "--tier", "redis"]);
    command.env("UPSTASH_REDIS_REST_URL", rest.url());
    let out = env.run_command(command);
    out.expect_code(3);
    assert!(out.stderr.contains("UPSTASH_REDIS_REST_URL") && out.stderr.contains("TOKEN"), "{}", out.dump());
    // A wrong token: the target fails, saying the token was refused, and shows no token.
    env.write_config(&config(&format!("upstash+{}", rest.url()), Some("wrong-token-77")));
    let out = env.run(HEALTH, &["check", "--format", "json", "--tier", "redis"]);
    out.expect_code(2);
    let target = &out.json()["targets"][0];
    assert!(target["error"].as_str().unwrap().contains("refused the token"), "{}", out.dump());
    assert!(!out.stdout.contains("wrong-token-77") && !out.stderr.contains("wrong-token-77"));
    // An endpoint that never answers: every tool gives up within its timeouts.
    let hole = cache_tests::Blackhole::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"upstash+http://{}\"\ntoken = \"{TOKEN}\"\n\
         timeout = \"1s\"\nconnect_timeout = \"1s\"\n",
        hole.addr()
    ));
    for (bin, args) in [
        (HEALTH, &["check", "--tier", "redis"][..]),
        (CLEANUP, &["moderate", "--dry-run", "--tier", "redis"][..]),
        (DEBUG, &["memory", "--tier", "redis"][..]),
        (BACKUP, &["create", "--only", "redis"][..]),
    ] {
        let out = env.run(bin, args);
        assert_ne!(out.code(), 0, "{}", out.dump());
        assert!(out.elapsed < std::time::Duration::from_secs(8), "{bin} {args:?} took {:?}", out.elapsed);
    }
}

/// A request that gets no answer (here a proxy's 502) is sent once more when it only reads, as
/// Upstash's own clients retry; one that writes is never sent twice, since the first may have
/// been applied.
#[test]
fn a_read_without_an_answer_is_sent_once_more_and_a_write_never_twice() {
    let Some(t) = twins(&[]) else { return };
    // The scan's first SCAN fails once: it is sent again, and every key is seen.
    t.rest.fail_next("SCAN", 1);
    let out = t.rest_env.run(DEBUG, &["memory", "--format", "json", "--tier", "redis"]);
    out.expect_code(0);
    assert_eq!(out.json()["redis"][0]["scanned"], 2501, "{}", out.dump());
    let carried = t.rest.carried();
    assert!(carried.len() >= 2 && carried[0] == carried[1], "the SCAN that failed was not sent again: {carried:?}");
    assert_eq!(carried.iter().filter(|b| **b == carried[0]).count(), 2, "{carried:?}");
    assert_eq!(out.json()["redis"][0]["complete"], true, "{}", out.dump());
    // Failing twice, the scan stops there: its figures are a part only, and the exit says so.
    t.rest.fail_next("SCAN", 2);
    let out = t.rest_env.run(DEBUG, &["memory", "--format", "json", "--tier", "redis"]);
    out.expect_code(1);
    let section = &out.json()["redis"][0];
    assert_eq!(section["complete"], false, "{}", out.dump());
    assert!(section["notes"].to_string().contains("stopped after 0 of its keys"), "{}", out.dump());

    // The cleanup's first UNLINK fails: it is not sent again; the run stops there, names the
    // failure, saves its cursor and exits as a target it could not finish (4), nothing removed
    // and nothing counted as freed.
    let before = t.rest_server.keys().len();
    t.rest.fail_next("UNLINK", 1);
    let out = t.rest_env.run(CLEANUP, &["aggressive", "--yes", "--tier", "redis", "--format", "json"]);
    out.expect_code(4);
    let carried = t.rest.carried();
    assert_eq!(carried.len(), 1, "the UNLINK that failed was sent again: {carried:?}\n{}", out.dump());
    let report = &out.json()["targets"][0];
    assert_eq!(report["removed"], 0, "{}", out.dump());
    // What was selected but never removed is not counted as freed.
    assert_eq!(report["bytes_freed"], 0, "{}", out.dump());
    let error = report["errors"][0].as_str().unwrap_or_default();
    assert!(error.contains("HTTP 502") && error.contains("--resume"), "{}", out.dump());
    assert_eq!(t.rest_server.keys().len(), before);
}
