//! `cache-health monitor` and `alerts` with real Redis, and real HTTP and SMTP receivers; time
//! is driven with `CACHE_NOW`, so cooldowns and retries take no waiting.

use cache_tests::{HttpReceiver, RedisServer, SmtpServer, TestEnv};
use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::{ANALYTICS, CLEANUP, HEALTH};

const T0: &str = "2026-11-22T10:00:00Z";

fn at(minutes: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(T0).unwrap().to_utc() + chrono::Duration::minutes(minutes);
    t.to_rfc3339()
}

/// One `monitor --once` round at `T0 + minutes`, on the Redis tier only: the host's own memory
/// or load must not add alerts to what a test counts.
fn round(env: &TestEnv, minutes: i64) -> Value {
    let mut cmd = env.command(HEALTH, &["monitor", "--once", "--format", "json", "--tier", "redis"]);
    cmd.env("CACHE_NOW", at(minutes));
    let out = env.run_command(cmd);
    out.expect_code(0);
    out.json()
}

fn used_memory(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}

/// Sets `maxmemory` so that `used_memory` is `share` of it.
pub(crate) fn memory_share(conn: &mut redis::Connection, share: f64) {
    let max = (used_memory(conn) as f64 / share) as u64;
    redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(max).query::<()>(conn).unwrap();
}

#[test]
fn a_rule_fires_on_its_third_bad_round_repeats_after_the_cooldown_and_resolves_once_on_every_channel() {
    let Some(redis) = RedisServer::start() else { return };
    let hook = HttpReceiver::start("");
    let slack = HttpReceiver::start("ok");
    let smtp = SmtpServer::start();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n\
         [system]\ngpu = false\n\
         [alerts.channels.hook]\ntype = \"webhook\"\nurl = \"{}\"\nhmac_secret = \"s3cret-hmac\"\n\
         [alerts.channels.chat]\ntype = \"slack\"\nurl = \"{}\"\n\
         [alerts.channels.mail]\ntype = \"email\"\nserver = \"127.0.0.1\"\nport = {}\nstarttls = \"none\"\n\
         from = \"cache@example.com\"\nto = [\"ops@example.com\"]\n\
         [[alerts.rules]]\nname = \"High Memory Usage\"\ncondition = \"memory_usage > 80%\"\nfor = 3\n\
         channels = [\"log\", \"hook\", \"chat\", \"mail\"]\nrunbook_url = \"https://runbooks.example/memory\"\n\
         message = \"Memory usage of {{target}} is at {{memory_usage:.1%}}.\"\n",
        redis.url(),
        hook.url("/alerts"),
        slack.url("/services/T0/B0/XYZ"),
        smtp.port()
    ));
    let mut conn = redis.connection();
    memory_share(&mut conn, 0.9);
    for minute in 0..2 {
        let r = round(&env, minute);
        assert_eq!(r["notices"].as_array().unwrap().len(), 0, "fired before its third bad round: {r:#}");
    }
    assert!(hook.received().is_empty());
    let r = round(&env, 2);
    assert_eq!(r["notices"][0]["kind"], "firing", "{r:#}");
    assert_eq!(r["delivered"], 4, "{r:#}");

    // Webhook: the Alertmanager payload, signed.
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/alerts"));
    let body = got[0].json();
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "hook");
    let alert = &body["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "High Memory Usage");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["target"], "redis/main");
    assert_eq!(alert["annotations"]["runbook_url"], "https://runbooks.example/memory");
    assert!(alert["annotations"]["summary"].as_str().unwrap().starts_with("Memory usage of redis/main is at "));
    assert_eq!(alert["startsAt"], "2026-11-22T10:02:00Z");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"s3cret-hmac").unwrap();
    mac.update(&got[0].body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(got[0].header("X-Cache-Toolkit-Signature"), Some(want.as_str()));
    // Slack: an incoming-webhook message.
    let chat = slack.received();
    assert_eq!(chat.len(), 1);
    assert_eq!(chat[0].path, "/services/T0/B0/XYZ");
    let text = chat[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("[FIRING] [WARNING] High Memory Usage on redis/main"), "{text}");
    // Email: one message with the headline as its subject.
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        (mails[0].from.as_str(), mails[0].to.as_slice()),
        ("cache@example.com", &["ops@example.com".to_owned()][..])
    );
    assert!(mails[0].data.contains("Subject: [FIRING] [WARNING] High Memory Usage on redis/main"), "{}", mails[0].data);

    // Within the 30-minute cooldown: nothing. Past it: one repeat on each channel.
    assert_eq!(round(&env, 20)["notices"].as_array().unwrap().len(), 0);
    let r = round(&env, 33);
    assert_eq!(r["notices"][0]["kind"], "repeat", "{r:#}");
    assert_eq!((hook.received().len(), slack.received().len(), smtp.mails().len()), (2, 2, 2));
    let listed = env.run(HEALTH, &["alerts", "--format", "json"]).json();
    assert_eq!(listed["alerts"][0]["status"], "firing");
    assert_eq!(listed["alerts"][0]["notifications"], 2);

    // Recovered: one resolved notice, then silence.
    memory_share(&mut conn, 0.3);
    let r = round(&env, 34);
    assert_eq!(r["notices"][0]["kind"], "resolved", "{r:#}");
    let last = hook.received().pop().unwrap().json();
    assert_eq!(last["status"], "resolved");
    assert_eq!(last["alerts"][0]["endsAt"], "2026-11-22T10:34:00Z");
    assert!(smtp.mails().last().unwrap().data.contains("Subject: [RESOLVED]"));
    assert_eq!(round(&env, 35)["notices"].as_array().unwrap().len(), 0);
    assert_eq!((hook.received().len(), slack.received().len(), smtp.mails().len()), (3, 3, 3));
    let log = std::fs::read_to_string(env.state_dir().join("alerts/log.jsonl")).unwrap();
    let kinds: Vec<String> =
        log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["firing", "repeat", "resolved"]);
    // Secrets stay out of the state directory.
    for (path, bytes) in env.state_files() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("s3cret-hmac") && !text.contains("B0/XYZ"), "a secret in {}", path.display());
    }
}

#[test]
fn a_receiver_that_is_down_gets_the_alert_exactly_once_when_it_is_back() {
    let Some(redis) = RedisServer::start() else { return };
    let mut hook = HttpReceiver::down("");
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [alerts.channels.hook]\ntype = \"webhook\"\nurl = \"{}\"\ntimeout = \"2s\"\n\
         [[alerts.rules]]\nname = \"High Memory Usage\"\ncondition = \"memory_usage > 80%\"\nchannels = [\"hook\"]\n",
        redis.url(),
        hook.url("/alerts")
    ));
    let mut conn = redis.connection();
    memory_share(&mut conn, 0.9);
    let r = round(&env, 0);
    assert_eq!((r["delivered"].as_u64(), r["outbox"].as_u64()), (Some(0), Some(1)), "{r:#}");
    assert!(r["failed"][0].as_str().unwrap().starts_with("hook: "), "{r:#}");
    let out = env.run(HEALTH, &["alerts"]);
    assert!(out.stdout.contains("1 notification(s) waiting in the outbox"), "{}", out.dump());
    // Before its backoff (1 minute) nothing is tried.
    hook.up();
    let r = round(&env, 0);
    assert_eq!(r["outbox"], 1, "{r:#}");
    assert!(hook.received().is_empty());
    // Then it is delivered, once.
    let r = round(&env, 2);
    assert_eq!((r["delivered"].as_u64(), r["outbox"].as_u64()), (Some(1), Some(0)), "{r:#}");
    round(&env, 3);
    round(&env, 4);
    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].json()["status"], "firing");
    assert_eq!(got[0].json()["alerts"][0]["startsAt"], "2026-11-22T10:00:00Z");
}

/// A directory with the sibling tools a remediation runs, as `remediation.tools_dir`.
fn tools_dir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.path("tools");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, binary) in [("cache-cleanup", CLEANUP), ("cache-optimizer", crate::OPTIMIZER)] {
        std::os::unix::fs::symlink(binary, dir.join(name)).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn high_memory_evicts_on_that_redis_only_and_the_verification_resolves_the_alert() {
    // The case seen: Redis near its maxmemory beside a cache table and a memory API; one round
    // must free that Redis down to its memory target and touch nothing else.
    let Some(redis) = RedisServer::start_with("maxmemory-policy noeviction") else { return };
    let Some(pg) = cache_tests::PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(crate::health_table_sql()).await.unwrap();
    db.batch_execute(
        "INSERT INTO cache_entries (key, value, category, expires_at, accessed_at, project_name)
           SELECT 'row' || i, '{}', 'c', now() + interval '1 day', now() - interval '30 days', 'proj'
             FROM generate_series(1, 1000) i",
    )
    .await
    .unwrap();
    let checksum = "SELECT count(*)::text || md5(string_agg(t::text, ',' ORDER BY key)) FROM cache_entries t";
    let rows_before: String = db.query_one(checksum, &[]).await.unwrap().get(0);
    let mem0 = cache_tests::Mem0Server::platform("m0-key");
    for i in 0..300 {
        // Restatements of each other: a memory cleanup would take them for duplicates.
        mem0.add_memory(&format!("m{i}"), "proj", "The user prefers green tea", &["food"], "2026-11-01T00:00:00Z");
    }
    // 7000 keys of 1 KiB, key i idle 10·i seconds (spaced wider than the seeding takes, so the
    // order of idle times is the order of i), written in pipelines; and another application's keys.
    let mut conn = redis.connection();
    for i in (0..7000u64).step_by(100) {
        redis.set_aged(&format!("zombie:{i}"), b"v", 0, 86_400);
    }
    let _: () = redis::cmd("SET").arg("seed").arg(&[b'x'; 1024][..]).query(&mut conn).unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("seed").query(&mut conn).unwrap();
    let _: () = redis::cmd("DEL").arg("seed").query(&mut conn).unwrap();
    for chunk in (0..7000u64).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("RESTORE")
                .arg(format!("proj:k{i}"))
                .arg(3_600_000)
                .arg(&payload)
                .arg("IDLETIME")
                .arg(i * 10)
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
    memory_share(&mut conn, 0.9);
    let max: u64 = {
        let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("maxmemory").query(&mut conn).unwrap();
        pair[1].parse().unwrap()
    };
    let env = TestEnv::new();
    // From 90% to the 70% target is about 30% of these keys: the cap is set above that here
    // (the default 25% has its own tests).
    env.write_config(&format!(
        "project_name = \"proj\"\n[[redis]]\nname = \"main\"\nurl = \"{}\"\n\
         [[postgres]]\nname = \"main\"\nurl = \"{url}\"\n\
         [[memory]]\nname = \"mem0\"\nurl = \"{}\"\napi_key = \"m0-key\"\n[system]\ngpu = false\n\
         [alerts.remediation]\nverify_delay = \"0s\"\ntools_dir = \"{}\"\n\
         [cleanup]\nmax_delete_share = \"40%\"\n",
        redis.url(),
        mem0.url(),
        tools_dir(&env).display()
    ));
    // The default rules: "High Memory Usage" evicts on redis/main.
    let mut cmd = env.command(HEALTH, &["monitor", "--once", "--format", "json"]);
    for tier in ["redis", "postgres", "memory"] {
        cmd.args(["--tier", tier]);
    }
    cmd.env("CACHE_NOW", at(0));
    let out = env.run_command(cmd);
    out.expect_code(0);
    let r = out.json();
    let actions: Vec<&str> = r["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(
        actions.iter().any(|a| a.starts_with("High Memory Usage: ran `")
            && a.contains("evict")
            && a.contains("--tier redis:main")),
        "{r:#}"
    );
    assert!(actions.contains(&"High Memory Usage: verified: redis/main recovered"), "{r:#}");
    // Down to the 70% target, not emptied: the idlest keys went, the rest stayed.
    let used = used_memory(&mut conn);
    assert!(used <= max * 7 / 10 && used >= max * 6 / 10, "used {used} of {max}");
    let left: Vec<u64> = redis_keys(&mut conn).iter().filter_map(|k| k.strip_prefix("proj:k")?.parse().ok()).collect();
    eprintln!("one High Memory round: used {used} of {max}, {} of 7000 keys left", left.len());
    assert!(left.len() > 4000, "{} of 7000 keys left", left.len());
    let newest_gone = (0..7000).filter(|i| !left.contains(i)).min().unwrap();
    assert!(left.iter().all(|i| *i < newest_gone), "a kept key is idler than an evicted one");
    assert_eq!(redis_keys(&mut conn).iter().filter(|k| k.starts_with("zombie:")).count(), 70);
    // Nothing in PostgreSQL or the memory API.
    let rows_after: String = db.query_one(checksum, &[]).await.unwrap().get(0);
    assert_eq!(rows_after, rows_before, "the cache table was touched");
    assert_eq!(mem0.ids().len(), 300, "memories were deleted");
    assert!(!mem0.requests().iter().any(|r| r.method == "DELETE"));
    let kinds: Vec<String> = std::fs::read_to_string(env.state_dir().join("alerts/log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|n| n["alert"]["rule"] == "High Memory Usage")
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["firing", "resolved"]);
    let runs = std::fs::read_to_string(env.state_dir().join("runs.jsonl")).unwrap();
    assert!(runs.contains("\"job\":\"cleanup\""), "the cleanup left no run record");
}

fn redis_keys(conn: &mut redis::Connection) -> Vec<String> {
    redis::cmd("KEYS").arg("*").query(conn).unwrap()
}

#[test]
fn a_remediation_past_its_cap_escalates_instead_of_resolving() {
    let Some(redis) = RedisServer::start() else { return };
    let mut conn = redis.connection();
    for i in 0..100 {
        redis.set_aged(&format!("default:k{i}"), &[b'x'; 1024], 0, 0);
    }
    memory_share(&mut conn, 0.9);
    let env = TestEnv::new();
    // A cleanup (here a stand-in command) whose report says it removed more than its cap.
    let report = env.path("report.json");
    std::fs::write(
        &report,
        r#"{"targets":[{"tier":"redis","target":"main","removed":500,"bytes_freed":10,"cap":{"max_items":25,"max_bytes":1073741824}}]}"#,
    )
    .unwrap();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [alerts.remediation]\nverify_delay = \"0s\"\n\
         [alerts.remediation.commands]\ntrigger_cleanup = [\"/bin/sh\", \"-c\", \"cat {}\"]\n",
        redis.url(),
        report.display()
    ));
    let r = round(&env, 0);
    let actions = r["actions"].to_string();
    assert!(actions.contains("escalated: redis/main: removed 500 entries, over its cap of 25"), "{r:#}");
    assert!(!actions.contains("recovered"), "{r:#}");
    let alerts = env.run(HEALTH, &["alerts", "--format", "json"]).json();
    let alert = alerts["alerts"].as_array().unwrap().iter().find(|a| a["rule"] == "High Memory Usage").unwrap();
    assert_eq!(alert["severity"], "critical", "{alerts:#}");
    assert!(alert["message"].as_str().unwrap().contains("blast-radius cap"), "{alerts:#}");
}

#[test]
fn a_remediation_that_never_helps_stops_after_its_budget_and_raises_the_budget_alert() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    let marker = env.path("actions.txt");
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [[alerts.rules]]\nname = \"Always Low\"\ncondition = \"keys >= 0\"\nauto_action = \"trigger_optimization\"\n\
         [alerts.remediation]\nmax_actions = 2\nrounds = 10\nverify_delay = \"0s\"\n\
         [alerts.remediation.commands]\ntrigger_optimization = [\"/bin/sh\", \"-c\", \"echo ran >> {}\"]\n",
        redis.url(),
        marker.display()
    ));
    let mut notices = Vec::new();
    for minute in 0..5 {
        let r = round(&env, minute);
        notices.extend(r["notices"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap().to_owned()));
    }
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(ran.lines().count(), 2, "actions past the budget");
    let alerts = env.run(HEALTH, &["alerts", "--format", "json"]).json();
    let rules: Vec<&str> = alerts["alerts"].as_array().unwrap().iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert!(rules.contains(&"Always Low (remediation budget)"), "{alerts:#}");
    let log: Vec<Value> = std::fs::read_to_string(env.state_dir().join("alerts/log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> =
        log.iter().map(|l| (l["kind"].as_str().unwrap(), l["alert"]["rule"].as_str().unwrap())).collect();
    assert_eq!(
        kinds,
        [("firing", "Always Low"), ("escalated", "Always Low"), ("firing", "Always Low (remediation budget)"),]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_target_is_disabled_the_others_keep_entries_longer_and_the_other_tools_skip_it() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(pg) = cache_tests::PgServer::start() else { return };
    let url = pg.create_database("app").await;
    let db = pg.client("app").await;
    db.batch_execute(crate::health_table_sql()).await.unwrap();
    db.batch_execute("UPDATE cache_entries SET expires_at = '2030-01-01T00:00:00Z' WHERE key = 'k1'").await.unwrap();
    let mut conn = redis.connection();
    redis::cmd("SET").arg("short").arg("v").arg("EX").arg(60).query::<()>(&mut conn).unwrap();
    redis::cmd("SET").arg("forever").arg("v").query::<()>(&mut conn).unwrap();
    let hole = cache_tests::Blackhole::new();
    let env = TestEnv::new();
    env.write_config(&format!(
        "project_name = \"default\"\n\
         [[redis]]\nname = \"gone\"\nurl = \"redis://{}\"\ntimeout = \"300ms\"\nconnect_timeout = \"300ms\"\n\
         [[redis]]\nname = \"main\"\nurl = \"{}\"\n[[postgres]]\nname = \"main\"\nurl = \"{url}\"\n\
         [system]\ngpu = false\n[alerts.remediation]\nextend_ttl = \"1h\"\n",
        hole.addr(),
        redis.url()
    ));
    let r = round(&env, 0);
    let actions: Vec<&str> = r["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(actions.iter().any(|a| a.starts_with("Tier Unavailable: redis/gone disabled until")), "{r:#}");
    assert!(actions.contains(&"redis/main: 1 TTLs extended by 1h while redis/gone is out"), "{actions:#?}");
    assert!(actions.contains(&"postgres/main: 1 rows expire 1h later while redis/gone is out"), "{actions:#?}");
    let ttl: i64 = redis::cmd("TTL").arg("short").query(&mut conn).unwrap();
    assert!(ttl > 3600 && ttl <= 3660, "{ttl}");
    let forever: i64 = redis::cmd("TTL").arg("forever").query(&mut conn).unwrap();
    assert_eq!(forever, -1);
    let expires: String = db
        .query_one(
            "SELECT to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM cache_entries WHERE key = 'k1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(expires, "2030-01-01 01:00");
    // The next round keeps it disabled but extends nothing again.
    let r = round(&env, 1);
    assert!(r["actions"].as_array().unwrap().iter().all(|a| !a.as_str().unwrap().contains("extended")), "{r:#}");

    let mut cmd = env.command(ANALYTICS, &["collect", "--format", "json"]);
    cmd.env("CACHE_NOW", at(2));
    let out = env.run_command(cmd);
    out.expect_code(0);
    assert!(out.stderr.contains("redis/gone is disabled until 2026-11-22 10:11:00 UTC"), "{}", out.dump());
    let snap = out.json();
    let names: Vec<&str> = snap["redis"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["main"]);
    // Once the time has run out, it is back.
    let mut cmd = env.command(ANALYTICS, &["collect", "--format", "json"]);
    cmd.env("CACHE_NOW", at(12));
    let out = env.run_command(cmd);
    assert_eq!(out.json()["redis"][0]["name"], "gone", "{}", out.dump());
}

#[test]
fn alerts_test_sends_to_every_channel_of_the_rule_and_ack_stops_repeats() {
    let Some(redis) = RedisServer::start() else { return };
    let hook = HttpReceiver::start("");
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [alerts.channels.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\
         [[alerts.rules]]\nname = \"Low Hit Ratio\"\ncondition = \"memory_usage > 80%\"\nchannels = [\"hook\", \"log\"]\n",
        redis.url(),
        hook.url("/a")
    ));
    let out = env.run(HEALTH, &["alerts", "test", "Low Hit Ratio"]);
    out.expect_code(0);
    assert!(out.stdout.contains("hook: delivered") && out.stdout.contains("log: delivered"), "{}", out.dump());
    assert_eq!(hook.received()[0].json()["commonAnnotations"]["kind"], "test");
    let out = env.run(HEALTH, &["alerts", "test", "Nope"]);
    out.expect_code(3);
    assert!(out.stderr.contains("no rule `Nope`"), "{}", out.dump());

    let mut conn = redis.connection();
    memory_share(&mut conn, 0.9);
    round(&env, 0);
    let id = env.run(HEALTH, &["alerts", "--format", "json"]).json()["alerts"][0]["id"].as_str().unwrap().to_owned();
    env.run(HEALTH, &["alerts", "--ack", &id]).expect_code(0);
    round(&env, 45);
    assert_eq!(hook.received().len(), 2, "an acknowledged alert repeated");
    env.run(HEALTH, &["alerts", "--ack", "feedbeef"]).expect_code(3);
}

#[test]
fn an_open_maintenance_window_silences_the_rules_it_names() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [[alerts.rules]]\nname = \"High Memory Usage\"\ncondition = \"memory_usage > 80%\"\n",
        redis.url()
    ));
    // Opens at 10:00 every day for an hour.
    std::fs::create_dir_all(env.state_dir().join("scheduler")).unwrap();
    std::fs::write(
        env.state_dir().join("scheduler/windows.json"),
        r#"{"schema_version": 1, "windows": [{"name": "nightly", "start": "0 10 * * *", "duration": "1h", "silence": ["High Memory Usage"]}]}"#,
    )
    .unwrap();
    let mut conn = redis.connection();
    memory_share(&mut conn, 0.9);
    let r = round(&env, 30);
    assert_eq!(r["notices"].as_array().unwrap().len(), 0, "{r:#}");
    assert_eq!(r["firing"], 1, "silenced, the alert still fires");
    // After the window, a firing alert is notified once its cooldown allows.
    let r = round(&env, 90);
    assert_eq!(r["notices"][0]["kind"], "repeat", "{r:#}");
}

#[test]
fn sigterm_stops_the_monitor_after_its_round() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n", redis.url()));
    let mut child = env.command(HEALTH, &["monitor", "--interval", "1h", "-q"]).spawn().unwrap();
    let state = env.state_dir().join("alerts/state.json");
    assert!(cache_tests::wait_until(std::time::Duration::from_secs(20), || state.is_file()), "no round ran");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let stopped = cache_tests::wait_until(std::time::Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    if !stopped {
        child.kill().unwrap();
    }
    assert!(stopped, "the monitor did not stop on SIGTERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let runs = std::fs::read_to_string(env.state_dir().join("runs.jsonl")).unwrap();
    assert!(runs.contains("\"job\":\"health-monitor\"") && runs.contains("\"rounds\":1"), "{runs}");
}

#[test]
fn email_goes_over_starttls_and_is_refused_plaintext_by_default() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(cert) = cache_tests::SelfSigned::generate() else { return };
    let smtp = SmtpServer::start_tls(&cert);
    let config = |extra: &str| {
        format!(
            "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
             [alerts.channels.mail]\ntype = \"email\"\nserver = \"localhost\"\nport = {}\n{extra}\
             from = \"cache@example.com\"\nto = [\"ops@example.com\"]\ntimeout = \"5s\"\n\
             [[alerts.rules]]\nname = \"High Memory Usage\"\ncondition = \"memory_usage > 80%\"\nchannels = [\"mail\"]\n",
            redis.url(),
            smtp.port()
        )
    };
    let env = TestEnv::new();
    // Without trusting the relay's certificate, nothing is sent in the clear: the test fails.
    env.write_config(&config(""));
    let out = env.run(HEALTH, &["alerts", "test", "High Memory Usage"]);
    out.expect_code(2);
    assert!(out.stdout.contains("mail: FAILED"), "{}", out.dump());
    assert!(smtp.mails().is_empty());
    // Trusting its CA: delivered over STARTTLS.
    env.write_config(&config(&format!("ca_file = \"{}\"\n", cert.cert().display())));
    let out = env.run(HEALTH, &["alerts", "test", "High Memory Usage"]);
    out.expect_code(0);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{}", out.dump());
    assert!(mails[0].encrypted, "mail sent before STARTTLS");
    assert!(mails[0].data.contains("Subject: [TEST] [WARNING] High Memory Usage on test"), "{}", mails[0].data);
}

#[test]
fn a_scheduled_job_failing_three_times_in_a_row_raises_an_alert() {
    let hole = cache_tests::Blackhole::new();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"gone\"\nurl = \"redis://{}\"\ntimeout = \"300ms\"\nconnect_timeout = \"300ms\"\n[system]\ngpu = false\n\
         [[alerts.rules]]\nname = \"Scheduled Job Failing\"\ncondition = \"failures >= 3\"\nmessage = \"{{target}} failed {{failures:.0f}} times\"\n",
        hole.addr()
    ));
    for minute in 0..3 {
        let mut cmd = env.command(crate::BACKUP, &["create", "-q", "--scheduled", "backup"]);
        cmd.env("CACHE_NOW", at(minute));
        let out = env.run_command(cmd);
        assert_ne!(out.code(), 0, "{}", out.dump());
    }
    let r = round(&env, 5);
    let notices = r["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{r:#}");
    assert_eq!(notices[0]["alert"]["target"], "job/backup");
    assert_eq!(notices[0]["alert"]["message"], "job/backup failed 3 times");
}
