//! The `alertmanager` channel against a real Prometheus Alertmanager (and `amtool`), webhook
//! fidelity (Alertmanager's fingerprints, grouping, headers), receivers refusing for good (the
//! dead-letter list, exit 1) and the monitor's heartbeat to a dead-man's switch.

use cache_tests::{Alertmanager, HttpReceiver, RedisServer, TestEnv, wait_until};
use serde_json::Value;

use crate::HEALTH;
use crate::monitor::memory_share;

/// One `monitor --once` round, on the Redis tier, at the real time plus `minutes` (Alertmanager
/// judges `endsAt` by its own clock): its exit code and JSON.
fn round(env: &TestEnv, minutes: i64) -> (i32, Value) {
    let mut cmd = env.command(HEALTH, &["monitor", "--once", "--format", "json", "--tier", "redis"]);
    cmd.env("CACHE_NOW", (chrono::Utc::now() + chrono::Duration::minutes(minutes)).to_rfc3339());
    let out = env.run_command(cmd);
    (out.code(), out.json())
}

const RULE: &str = "[[alerts.rules]]\nname = \"High Memory Usage\"\ncondition = \"memory_usage > 80%\"\n\
                    tiers = [\"redis\"]\nchannels = [\"am\", \"hook\"]\n\
                    message = \"Memory usage of {target} is at {memory_usage:.1%}.\"\n";

fn ours(alerts: &[Value]) -> Vec<&Value> {
    alerts.iter().filter(|a| a["labels"]["alertname"] == "High Memory Usage").collect()
}

#[test]
fn alerts_reach_a_real_alertmanager_while_firing_resolve_there_and_respect_its_silences() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(am) = Alertmanager::start() else { return };
    let hook = HttpReceiver::start("");
    let env = TestEnv::new();
    env.write_config(&format!(
        "project_name = \"shop\"\n[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [alerts]\nexternal_url = \"https://dash.example/cache\"\n\
         [alerts.channels.am]\ntype = \"alertmanager\"\nurl = \"{}\"\nbearer_token = \"am-t0ken-secret\"\n\
         [alerts.channels.hook]\ntype = \"webhook\"\nurl = \"{}\"\n{RULE}",
        redis.url(),
        am.url(),
        hook.url("/hook"),
    ));
    let mut conn = redis.connection();
    memory_share(&mut conn, 0.9);
    let (code, r) = round(&env, 0);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["delivered"], 2, "{r:#}");

    // Firing in Alertmanager, with Prometheus's labels and annotations.
    let listed = am.alerts();
    let firing = ours(&listed);
    assert_eq!(firing.len(), 1, "{listed:#?}\n{}", am.log());
    let a = firing[0];
    assert_eq!(a["labels"]["target"], "redis/main");
    assert_eq!(a["labels"]["severity"], "warning");
    assert_eq!(a["labels"]["project"], "shop");
    assert!(a["annotations"]["summary"].as_str().unwrap().starts_with("Memory usage of redis/main is at "), "{a:#}");
    assert!(a["annotations"]["description"].as_str().unwrap().contains("memory_usage"), "{a:#}");
    assert_eq!(a["generatorURL"], "https://dash.example/cache");
    assert_eq!(a["status"]["state"], "active", "{a:#}");
    let ends = a["endsAt"].as_str().unwrap().to_owned();
    let shown = am.amtool(&["alert", "query", "alertname=High Memory Usage"]);
    assert!(shown.contains("High Memory Usage"), "{shown}");
    // The webhook's fingerprint is the one Alertmanager computes from the same labels.
    let sent = hook.received();
    assert_eq!(sent.len(), 1);
    let body = sent[0].json();
    assert_eq!(body["alerts"][0]["fingerprint"], a["fingerprint"], "{body:#}");
    assert_eq!(body["externalURL"], "https://dash.example/cache");
    assert_eq!(body["alerts"][0]["generatorURL"], "https://dash.example/cache");

    // Still firing, no notice (cooldown), yet Alertmanager hears of it again: endsAt moves on.
    let (code, r) = round(&env, 1);
    assert_eq!((code, r["notices"].as_array().unwrap().len()), (0, 0), "{r:#}");
    assert_eq!(hook.received().len(), 1, "the webhook is not re-sent each round");
    let again = am.alerts();
    let a = ours(&again)[0].clone();
    assert!(a["endsAt"].as_str().unwrap() > ends.as_str(), "{a:#} (was {ends})");

    // A silence made with amtool suppresses it.
    let id = am.amtool(&[
        "silence",
        "add",
        "alertname=High Memory Usage",
        "--comment=maintenance",
        "--author=test",
        "--duration=1h",
    ]);
    assert!(!id.trim().is_empty());
    let suppressed = wait_until(std::time::Duration::from_secs(10), || {
        ours(&am.alerts()).first().is_some_and(|a| a["status"]["state"] == "suppressed")
    });
    assert!(suppressed, "{:#?}", am.alerts());
    let a = ours(&am.alerts())[0].clone();
    assert_eq!(a["status"]["silencedBy"][0].as_str().unwrap(), id.trim(), "{a:#}");

    // Recovered: the resolved notice ends it at once.
    memory_share(&mut conn, 0.3);
    let (code, r) = round(&env, 0);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["notices"][0]["kind"], "resolved", "{r:#}");
    let gone = wait_until(std::time::Duration::from_secs(10), || ours(&am.alerts()).is_empty());
    assert!(gone, "still listed after the resolve: {:#?}", am.alerts());
    // The bearer token stays out of the state directory.
    for (path, bytes) in env.state_files() {
        assert!(!String::from_utf8_lossy(&bytes).contains("am-t0ken-secret"), "a secret in {}", path.display());
    }
}

#[test]
fn alertmanager_refusing_the_payload_is_a_dead_letter_and_a_warning() {
    let Some(redis) = RedisServer::start() else { return };
    // A receiver answering as Alertmanager does to a body that is no alert list.
    let refusing = HttpReceiver::start_with_status(400, "{\"code\":400,\"message\":\"cannot unmarshal object\"}");
    let ping = HttpReceiver::start("OK");
    let check = "/ping/2f1e6c9a-8b7d-4e3f-a1b2-c3d4e5f60718";
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [alerts]\nping_url = \"{}\"\n\
         [alerts.channels.am]\ntype = \"webhook\"\nurl = \"{}\"\n\
         authorization = \"Bearer wh-t0ken-secret\"\nheaders = {{ X-Scope-OrgID = \"team-cache\" }}\n\
         [alerts.channels.hook]\ntype = \"log\"\n{RULE}",
        redis.url(),
        ping.url(check),
        refusing.url("/api/v2/alerts"),
    ));
    let mut conn = redis.connection();
    // A quiet round: the heartbeat's start and its success.
    memory_share(&mut conn, 0.3);
    let (code, r) = round(&env, 0);
    assert_eq!(code, 0, "{r:#}");
    let pings = ping.received();
    assert_eq!(pings.len(), 2, "{pings:#?}");
    let rid = pings[0].path.rsplit_once("rid=").unwrap().1.to_owned();
    assert_eq!(pings[0].path, format!("{check}/start?rid={rid}"));
    assert_eq!(pings[1].path, format!("{check}?rid={rid}"));
    assert!(String::from_utf8_lossy(&pings[1].body).contains("round 1"), "{:?}", pings[1]);

    // Firing: the receiver refuses it for good; the item leaves the outbox, the round warns.
    memory_share(&mut conn, 0.9);
    let (code, r) = round(&env, 1);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["outbox"], 0, "{r:#}");
    assert!(r["dead_letter"][0].as_str().unwrap().contains("400"), "{r:#}");
    let got = refusing.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("Authorization"), Some("Bearer wh-t0ken-secret"));
    assert_eq!(got[0].header("X-Scope-OrgID"), Some("team-cache"));
    let fingerprint = got[0].json()["alerts"][0]["fingerprint"].as_str().unwrap().to_owned();
    assert!(fingerprint.len() == 16 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()), "{fingerprint}");
    let pings = ping.received();
    assert_eq!(pings.len(), 4, "{pings:#?}");
    assert!(pings[3].path.starts_with(&format!("{check}/1?rid=")), "{:?}", pings[3].path);
    assert!(String::from_utf8_lossy(&pings[3].body).contains("dead-letter"), "{:?}", pings[3]);

    // Shown by `alerts`, and never sent again.
    let listed = env.run(HEALTH, &["alerts", "--format", "json"]).json();
    assert_eq!(listed["dead_letter"].as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed["outbox"].as_array().unwrap().len(), 0, "{listed:#}");
    let text = env.run(HEALTH, &["alerts"]).stdout.clone();
    assert!(text.contains("refused for good"), "{text}");
    let (code, _) = round(&env, 40);
    assert_eq!(refusing.received().len(), 2, "a repeat is a new notice, not a retry");
    assert_eq!(code, 1);
    for (path, bytes) in env.state_files() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("wh-t0ken-secret") && !text.contains("2f1e6c9a-8b7d"), "a secret in {}", path.display());
    }
}

#[test]
fn a_webhook_gets_one_post_per_rule_per_round() {
    let Some(one) = RedisServer::start() else { return };
    let Some(two) = RedisServer::start() else { return };
    let hook = HttpReceiver::start("");
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"one\"\nurl = \"{}\"\n[[redis]]\nname = \"two\"\nurl = \"{}\"\n[system]\ngpu = false\n\
         [alerts.channels.am]\ntype = \"log\"\n[alerts.channels.hook]\ntype = \"webhook\"\nurl = \"{}\"\n{RULE}",
        one.url(),
        two.url(),
        hook.url("/hook"),
    ));
    memory_share(&mut one.connection(), 0.9);
    memory_share(&mut two.connection(), 0.9);
    let (code, r) = round(&env, 0);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["notices"].as_array().unwrap().len(), 2, "{r:#}");
    let got = hook.received();
    assert_eq!(got.len(), 1, "one request for the rule's group");
    let body = got[0].json();
    assert_eq!(body["groupLabels"], serde_json::json!({ "alertname": "High Memory Usage" }), "{body:#}");
    assert_eq!(body["groupKey"], "{}:{alertname=\"High Memory Usage\"}", "{body:#}");
    assert_eq!(body["commonLabels"]["alertname"], "High Memory Usage");
    assert!(body["commonLabels"].get("target").is_none(), "{body:#}");
    let alerts = body["alerts"].as_array().unwrap();
    let targets: Vec<&str> = alerts.iter().map(|a| a["labels"]["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["redis/one", "redis/two"]);
    assert_ne!(alerts[0]["fingerprint"], alerts[1]["fingerprint"]);
}
