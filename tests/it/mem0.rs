//! The memory tier against the Mem0 stand-in as Mem0 is spoken today: v3 paths, paging by
//! `next`/`count`, the self-hosted server's capped answers, `org_id`/`project_id`, `top_k`, the
//! per-request timeout; and the official Python SDK (mem0ai) against the stand-in.

use std::process::Command;
use std::time::{Duration, Instant};

use cache_tests::{Mem0Server, RecordedRequest, TestEnv};
use serde_json::Value;

use crate::{ANALYTICS, BACKUP, CLEANUP, HEALTH};

/// `n` memories of `proj`, none a duplicate of another, plus `dup-old` (early in the list) and
/// `dup-new` (late: on the last page of 100) restating it, newer.
fn seed(mem0: &Mem0Server, n: usize) {
    let now = chrono::Utc::now();
    let at = |hours: i64| (now - chrono::Duration::hours(hours)).to_rfc3339();
    mem0.add_memory("dup-old", "proj", "The user prefers green tea in the morning", &["food"], &at(48));
    for i in 0..n - 2 {
        let text = format!("fact number {i} about topic {}", i * 7919 % 1000);
        mem0.add_memory(&format!("bulk-{i:03}"), "proj", &text, &[], &at(24));
    }
    mem0.add_memory("dup-new", "proj", "the user prefers green tea in the morning.", &["food"], &at(1));
}

fn config(mem0: &Mem0Server, dialect: &str, extra: &str) -> String {
    format!(
        "project_name = \"proj\"\n[[memory]]\nname = \"m\"\nurl = \"{}\"\napi_key = \"key-1\"\ndialect = \"{dialect}\"\n{extra}",
        mem0.url()
    )
}

fn posts_to<'a>(requests: &'a [RecordedRequest], path: &str) -> Vec<&'a RecordedRequest> {
    requests.iter().filter(|r| r.method == "POST" && r.url.split('?').next() == Some(path)).collect()
}

fn body(request: &RecordedRequest) -> Value {
    serde_json::from_str(&request.body).unwrap_or(Value::Null)
}

fn memory_target(report: &Value) -> &Value {
    report["targets"].as_array().unwrap().iter().find(|t| t["tier"] == "memory").unwrap()
}

#[test]
fn v3_cleanup_pages_through_250_memories_and_judges_duplicates_on_the_whole_list() {
    let mem0 = Mem0Server::platform("key-1");
    seed(&mem0, 250);
    let env = TestEnv::new();
    env.write_config(&config(&mem0, "platform", "api_version = \"v3\"\n"));
    let out = env.run(CLEANUP, &["memory", "--yes", "--format", "json"]);
    out.expect_code(0);
    let report = out.json();
    let target = &report["targets"][0];
    assert_eq!(target["examined"], 250, "{}", out.dump());
    assert_eq!(target["removed"], 1, "{}", out.dump());
    let ids = mem0.ids();
    assert_eq!(ids.len(), 249);
    assert!(!ids.contains(&"dup-old".to_owned()) && ids.contains(&"dup-new".to_owned()), "{ids:?}");
    // Undone through v3's add, as the current SDK adds: the memory is back, verbatim.
    let run_id = report["run_id"].as_str().unwrap();
    env.run(CLEANUP, &["undo", run_id, "--yes"]).expect_code(0);
    let requests = mem0.requests();
    let adds = posts_to(&requests, "/v3/memories/add/");
    assert_eq!(adds.len(), 1, "{requests:?}");
    let add = body(adds[0]);
    assert_eq!((add["user_id"].as_str(), add["infer"].as_bool()), (Some("proj"), Some(false)), "{add}");
    assert!(posts_to(&requests, "/v1/memories/").is_empty(), "no v1 add on v3");
    assert_eq!(mem0.ids().len(), 250);
    mem0.clear_requests();
    env.run(CLEANUP, &["memory", "--yes"]).expect_code(0);
    assert_eq!(mem0.ids().len(), 249);
    // Three pages, followed by `next`, each in v3's shape.
    let requests = mem0.requests();
    let pages = posts_to(&requests, "/v3/memories/");
    let urls: Vec<&str> = pages.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(urls.len(), 3, "{urls:?}");
    for (i, url) in urls.iter().enumerate() {
        assert!(url.contains(&format!("page={}", i + 1)) && url.contains("page_size=100"), "{urls:?}");
    }
    assert!(pages.iter().all(|r| body(r)["filters"]["user_id"] == "proj"), "{pages:?}");
    assert!(requests.iter().all(|r| !r.url.starts_with("/v1/memories/?")), "no v1 listing on v3");
    // Health reads the count from v3's first page: complete.
    let health = env.run(HEALTH, &["check", "--format", "json"]);
    let health = health.json();
    let metrics = &memory_target(&health)["metrics"];
    assert_eq!((metrics["memories"].as_u64(), metrics["memories_complete"].as_bool()), (Some(249), Some(true)));
    let requests = mem0.requests();
    let searches = posts_to(&requests, "/v3/memories/search/");
    assert!(!searches.is_empty() && searches.iter().all(|r| body(r)["top_k"] == 1), "{searches:?}");
    // Analytics counts them all, not a truncated figure.
    let snap = env.run(ANALYTICS, &["collect", "--format", "json"]);
    snap.expect_code(0);
    let figures = &snap.json()["memory"][0];
    assert_eq!(figures["memories"], 249, "{}", snap.dump());
    assert!(figures.get("truncated").is_none_or(|t| t == false), "{figures:#}");
}

#[test]
fn a_capped_self_hosted_server_counts_at_least_100_and_cleanup_refuses_a_partial_list() {
    let mem0 = Mem0Server::self_hosted_capped("key-1", 100);
    seed(&mem0, 250);
    // The newer copy sits beyond the cap: on the partial list, `dup-old` looks unique.
    let env = TestEnv::new();
    env.write_config(&config(&mem0, "self-hosted", ""));
    let out = env.run(CLEANUP, &["memory", "--mode", "aggressive", "--yes", "--format", "json"]);
    out.expect_code(1);
    let target = &out.json()["targets"][0];
    let errors = target["errors"].to_string();
    assert!(errors.contains("incomplete") && errors.contains("at least 100 memories"), "{}", out.dump());
    assert!(errors.contains("nothing deleted"), "{errors}");
    assert_eq!(target["removed"], 0);
    assert_eq!(mem0.ids().len(), 250, "nothing deleted on a partial list");
    assert!(mem0.requests().iter().all(|r| r.method != "DELETE"));
    let runs = env.run(CLEANUP, &["memory", "--dry-run", "--format", "json"]);
    assert!(runs.json()["targets"][0]["items"].as_array().is_none_or(Vec::is_empty), "{}", runs.dump());

    let health = env.run(HEALTH, &["check", "--format", "json"]);
    let report = health.json();
    let memory = memory_target(&report);
    assert_eq!(memory["metrics"]["memories"], 100, "{memory:#}");
    assert_eq!(memory["metrics"]["memories_truncated"], true, "{memory:#}");
    assert_eq!(memory["metrics"]["memories_complete"], false, "{memory:#}");
    assert!(memory.to_string().contains("at least 100 memories"), "{memory:#}");

    let snap = env.run(ANALYTICS, &["collect", "--format", "json"]);
    let figures = &snap.json()["memory"][0];
    assert_eq!((figures["memories"].as_u64(), figures["truncated"].as_bool()), (Some(100), Some(true)), "{figures:#}");
    let text = env.run(ANALYTICS, &["collect"]);
    assert!(text.stdout.contains("at least 100 memories"), "{}", text.dump());
    // A backup of the first 100 would restore as if it were all of them: refused, and said.
    let backup = env.run(BACKUP, &["create", "--only", "memory"]);
    assert_ne!(backup.code(), 0, "{}", backup.dump());
    assert!(backup.stderr.contains("may be incomplete (100 memories listed"), "{}", backup.dump());
    let list = env.run(BACKUP, &["list", "--format", "json"]).json();
    assert_eq!(list["backups"].as_array().map(Vec::len), Some(0), "{list:#}");

    // Under the cap the one answer is everything: cleanup judges and deletes.
    let small = Mem0Server::self_hosted_capped("key-1", 100);
    seed(&small, 60);
    env.write_config(&config(&small, "self-hosted", ""));
    env.run(CLEANUP, &["memory", "--yes"]).expect_code(0);
    assert!(!small.ids().contains(&"dup-old".to_owned()));
    assert_eq!(small.ids().len(), 59);
    let backup = env.run(BACKUP, &["create", "--only", "memory", "--format", "json"]);
    backup.expect_code(0);
    assert!(backup.json()["notes"].to_string().contains("59 memories"), "{}", backup.dump());
}

#[test]
fn org_and_project_are_discovered_and_sent_as_the_sdks_did_and_searches_send_top_k() {
    let mem0 = Mem0Server::platform("key-1").with_org_project("org-7", "proj-9");
    seed(&mem0, 10);
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}org_id = \"auto\"\n\
         [[memory]]\nname = \"v3\"\nurl = \"{}\"\napi_key = \"key-1\"\napi_version = \"v3\"\norg_id = \"org-1\"\nproject_id = \"proj-1\"\n",
        config(&mem0, "platform", ""),
        mem0.url()
    ));
    env.run(HEALTH, &["check", "--format", "json"]);
    let requests = mem0.requests();
    // `auto`: one ping per probe's client, and the v1 GETs carry the pair in the query.
    assert!(requests.iter().any(|r| r.method == "GET" && r.url.starts_with("/v1/ping/")), "{requests:?}");
    let v1_lists: Vec<_> = requests.iter().filter(|r| r.url.starts_with("/v1/memories/?")).collect();
    assert!(!v1_lists.is_empty(), "{requests:?}");
    assert!(v1_lists.iter().all(|r| r.url.contains("org_id=org-7") && r.url.contains("project_id=proj-9")));
    let v1_search = posts_to(&requests, "/v1/memories/search/");
    assert!(v1_search.iter().all(|r| {
        let b = body(r);
        b["top_k"] == 1 && b.get("limit").is_none() && b["org_id"] == "org-7" && b["project_id"] == "proj-9"
    }));
    // Set ones: in the body of v3's POSTs.
    let v3 = posts_to(&requests, "/v3/memories/");
    assert!(!v3.is_empty() && v3.iter().all(|r| body(r)["org_id"] == "org-1" && body(r)["project_id"] == "proj-1"));
    // Half a pair is refused, naming what to set.
    env.write_config(&config(&mem0, "platform", "org_id = \"org-1\"\n"));
    let out = env.run(HEALTH, &["check", "--format", "json"]);
    assert!(out.stdout.contains("set both `org_id` and `project_id`"), "{}", out.dump());
}

#[test]
fn a_slow_memory_api_is_cut_at_the_target_timeout() {
    let mem0 = Mem0Server::platform("key-1");
    seed(&mem0, 5);
    mem0.set_delay(Duration::from_secs(25));
    let env = TestEnv::new();
    env.write_config(&config(&mem0, "platform", "timeout = \"1s\"\napi_version = \"v3\"\n"));
    // One request each for health and cleanup; two for analytics (a latency sample, the count).
    for (bin, args, requests) in [
        (HEALTH, &["check", "--format", "json"][..], 1u64),
        (CLEANUP, &["memory", "--yes", "--format", "json"][..], 1),
        (ANALYTICS, &["collect", "--format", "json"][..], 2),
    ] {
        let start = Instant::now();
        let out = env.run(bin, args);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2 * requests + 3), "{bin} took {took:?}: {}", out.dump());
        assert_ne!(out.code(), 0, "{}", out.dump());
    }
}

/// The official SDK's `MemoryClient` (mem0ai 2.x) against the stand-in: list, search, delete.
const SDK_SCRIPT: &str = r#"
import json, sys
from mem0 import MemoryClient
client = MemoryClient(api_key="key-1", host=sys.argv[1])
listed = client.get_all(filters={"user_id": "proj"}, page=1, page_size=2)
found = client.search("green tea", filters={"user_id": "proj"}, top_k=2)
client.delete("dup-old")
client.add("a memory the SDK adds", user_id="proj", metadata={"via": "sdk"}, infer=False)
print(json.dumps({"count": listed["count"], "next": listed["next"], "listed": len(listed["results"]),
                  "found": [m["id"] for m in found["results"]]}))
"#;

#[test]
fn the_official_mem0ai_client_speaks_with_the_stand_in() {
    let has_sdk =
        Command::new("python3").args(["-c", "import mem0.client.main"]).output().is_ok_and(|o| o.status.success());
    if !has_sdk && cache_tests::missing("python3 with mem0ai (pip install mem0ai)").is_none() {
        return;
    }
    let mem0 = Mem0Server::platform("key-1");
    seed(&mem0, 5);
    let env = TestEnv::new();
    let script = env.path("sdk.py");
    std::fs::write(&script, SDK_SCRIPT).unwrap();
    let out = Command::new("python3").arg(&script).arg(mem0.url()).env("MEM0_TELEMETRY", "False").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((answer["count"].as_u64(), answer["listed"].as_u64()), (Some(5), Some(2)), "{answer}");
    assert!(answer["next"].as_str().is_some_and(|n| n.contains("page=2")), "{answer}");
    assert_eq!(answer["found"].as_array().unwrap().len(), 2, "{answer}");
    // What the SDK sent is what the stand-in, and so our client, speaks.
    let requests = mem0.requests();
    assert!(requests.iter().all(|r| r.header("authorization") == Some("Token key-1")), "{requests:?}");
    let seen: Vec<(String, String)> =
        requests.iter().map(|r| (r.method.clone(), r.url.split('?').next().unwrap().to_owned())).collect();
    for expected in [
        ("GET", "/v1/ping/"),
        ("POST", "/v3/memories/"),
        ("POST", "/v3/memories/search/"),
        ("DELETE", "/v1/memories/dup-old/"),
        ("POST", "/v3/memories/add/"),
    ] {
        assert!(seen.iter().any(|(m, p)| (m.as_str(), p.as_str()) == expected), "{expected:?} not in {seen:?}");
    }
    let list = posts_to(&requests, "/v3/memories/")[0];
    assert!(list.url.contains("page=1") && list.url.contains("page_size=2"), "{list:?}");
    assert_eq!(body(list)["filters"]["user_id"], "proj");
    let search = body(posts_to(&requests, "/v3/memories/search/")[0]);
    assert_eq!((search["top_k"].as_u64(), search["filters"]["user_id"].as_str()), (Some(2), Some("proj")));
    assert!(!mem0.ids().contains(&"dup-old".to_owned()));
    // The SDK adds as our restores add: messages, the user, metadata, no inference.
    let add = body(posts_to(&requests, "/v3/memories/add/")[0]);
    assert_eq!(add["messages"][0]["content"], "a memory the SDK adds");
    assert_eq!((add["user_id"].as_str(), add["infer"].as_bool()), (Some("proj"), Some(false)), "{add}");
}
