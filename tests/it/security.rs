//! `cache-debug security` beyond the servers: real cache, model-cache and log directories made
//! world-writable or given to another user, the toolkit's binaries in a world-writable
//! directory, the `--fail-under` gate, and cache-health's Security Score Drop rule over the audits
//! recorded, against a real redis-server.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use cache_core::exit;
use cache_tests::{RedisServer, TestEnv};
use serde_json::Value;

use crate::{DEBUG, HEALTH};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The findings of an audit as `(severity, subject, finding)`.
fn findings(doc: &Value) -> Vec<(String, String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap().to_owned();
            (text("severity"), text("subject"), text("finding"))
        })
        .collect()
}

/// A Redis target with a password (no finding of its own) and `extra` configuration; the
/// configuration file private, as the audit wants it.
fn config(env: &TestEnv, redis: &RedisServer, extra: &str) {
    let path = env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n{extra}", redis.url()));
    chmod(&path, 0o600);
}

/// Another user's uid for a directory, when this test may give one away (as root, as CI runs).
fn give_away(path: &Path) -> bool {
    match std::os::unix::fs::chown(path, Some(65534), Some(65534)) {
        Ok(()) => true,
        // CI runs as root: there the owner check must be exercised.
        Err(e) => cache_tests::missing(&format!("root, to give a directory away ({e})")).is_some(),
    }
}

#[test]
fn security_flags_world_writable_and_foreign_cache_model_and_log_directories() {
    let Some(redis) = RedisServer::start_with("requirepass audit-pass-0417") else { return };
    let env = TestEnv::new();
    let models = env.path("models");
    let logs = env.path("logs");
    let scratch = env.path("scratch");
    for dir in [&models, &logs, &scratch.join("benchmark_1"), &scratch.join("other")] {
        std::fs::create_dir_all(dir).unwrap();
        chmod(dir, 0o750);
    }
    std::fs::create_dir_all(models.join("llama")).unwrap();
    std::fs::write(models.join("llama/weights.bin"), b"weights").unwrap();
    chmod(&models.join("llama/weights.bin"), 0o644);
    config(
        &env,
        &redis,
        &format!(
            "[[files]]\nname = \"models\"\npath = \"{}\"\n[[files]]\nname = \"bench\"\npath = \"{}/benchmark_*\"\n\
             [[logs]]\nname = \"app\"\npath = \"{}\"\n",
            models.display(),
            scratch.display(),
            logs.display()
        ),
    );
    // Everything private and ours: nothing to find, and a gate at 100 passes.
    let out = env.run(DEBUG, &["security", "--format", "json", "--fail-under", "100"]);
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(findings(&doc), [], "{doc:#}");
    assert_eq!((doc["score"].as_u64(), doc["passed"].as_bool()), (Some(100), Some(true)));

    // The model cache and a glob match world-writable, a model file inside too; the base of the
    // glob and what it does not match are not the target's.
    chmod(&models, 0o777);
    chmod(&models.join("llama/weights.bin"), 0o666);
    chmod(&scratch.join("benchmark_1"), 0o1777);
    chmod(&scratch, 0o777);
    chmod(&scratch.join("other"), 0o777);
    let foreign = give_away(&logs);
    let out = env.run(DEBUG, &["security", "--format", "json"]);
    out.expect_code(0);
    let doc = out.json();
    let found = findings(&doc);
    let mut want = vec![
        ("high".to_owned(), format!("files/models {}", models.display()), "mode 0777: world-writable".to_owned()),
        (
            "high".to_owned(),
            format!("files/models {}", models.display()),
            format!("1 world-writable entries inside (first: `{}`)", models.join("llama/weights.bin").display()),
        ),
        (
            "high".to_owned(),
            format!("files/bench {}", scratch.join("benchmark_1").display()),
            "mode 1777: world-writable (sticky: others cannot replace what is there, but can add to it)".to_owned(),
        ),
    ];
    if foreign {
        want.push((
            "medium".to_owned(),
            format!("logs/app {}", logs.display()),
            "owned by `nobody` (uid 65534), neither the running user (`root` (uid 0)) nor root: its owner can change \
             what is in it"
                .to_owned(),
        ));
    }
    assert_eq!(found, want, "{doc:#}");
    assert_eq!(doc["score"], 100 - 3 * 25 - if foreign { 10 } else { 0 });
    let fixes: Vec<&str> = doc["findings"].as_array().unwrap().iter().map(|f| f["fix"].as_str().unwrap()).collect();
    assert!(fixes.contains(&format!("chmod o-w {}", models.display()).as_str()), "{fixes:?}");
    assert!(fixes.contains(&format!("chmod -R o-w {}", models.display()).as_str()), "{fixes:?}");
    if foreign {
        assert!(fixes.iter().any(|f| f.starts_with(&format!("chown root {} (or run", logs.display()))), "{fixes:?}");
    }

    // The gate: under the score is exit 6, said in text too; at or above it, the usual code.
    let out = env.run(DEBUG, &["security", "--fail-under", "80"]);
    out.expect_code(exit::MISMATCH.into());
    assert!(
        out.stdout.contains(&format!("security score {} is under --fail-under 80", doc["score"])),
        "{}",
        out.dump()
    );
    // Quiet, a passed gate prints nothing; a failed one prints the audit (cron mails it).
    let out = env.run(DEBUG, &["security", "-q", "--fail-under", "10"]);
    out.expect_code(0);
    assert_eq!(out.stdout, "", "{}", out.dump());
    let out = env.run(DEBUG, &["security", "-q", "--fail-under", "90"]);
    out.expect_code(exit::MISMATCH.into());
    assert!(out.stdout.contains("world-writable"), "{}", out.dump());
    // An audit of one tier looks at no directory, and is not recorded as the whole.
    let before = std::fs::read_to_string(env.state_dir().join("security/audits.jsonl")).unwrap().lines().count();
    let out = env.run(DEBUG, &["security", "--format", "json", "--tier", "redis"]);
    out.expect_code(0);
    assert_eq!(findings(&out.json()), [], "{}", out.dump());
    assert_eq!(out.json()["recorded"], false);
    let after = std::fs::read_to_string(env.state_dir().join("security/audits.jsonl")).unwrap();
    assert_eq!(after.lines().count(), before, "{after}");
    let last: Value = serde_json::from_str(after.lines().last().unwrap()).unwrap();
    assert_eq!((last["score"].clone(), last["complete"].clone()), (doc["score"].clone(), Value::Bool(true)));
}

#[test]
fn security_flags_the_toolkits_binaries_and_their_directory_when_world_writable() {
    let Some(redis) = RedisServer::start_with("requirepass audit-pass-0418") else { return };
    let env = TestEnv::new();
    config(&env, &redis, "");
    // This build's cache-debug, installed into a directory of its own, then a sibling tool.
    let bin = env.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let debug = bin.join("cache-debug");
    std::fs::copy(DEBUG, &debug).unwrap();
    chmod(&bin, 0o755);
    chmod(&debug, 0o755);
    std::fs::write(bin.join("cache-cleanup"), b"#!/bin/sh\n").unwrap();
    chmod(&bin.join("cache-cleanup"), 0o755);
    let debug = debug.to_str().unwrap();
    let out = env.run(debug, &["security", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(findings(&out.json()), [], "{}", out.dump());

    chmod(&bin, 0o777);
    chmod(&bin.join("cache-cleanup"), 0o777);
    let out = env.run(debug, &["security", "--format", "json"]);
    out.expect_code(0);
    let found = findings(&out.json());
    let writable = "world-writable: anyone can replace what cron runs";
    assert_eq!(
        found,
        [
            ("high".to_owned(), format!("binary directory {}", bin.display()), format!("mode 0777: {writable}")),
            (
                "high".to_owned(),
                format!("binary {}", bin.join("cache-cleanup").display()),
                format!("mode 0777: {writable}")
            ),
        ],
        "{}",
        out.dump()
    );
    chmod(&bin, 0o755);
    chmod(Path::new(debug), 0o757);
    let out = env.run(debug, &["security", "--format", "json"]);
    let found = findings(&out.json());
    assert_eq!(found.len(), 2, "{}", out.dump());
    assert!(found.iter().any(|(_, s, f)| s == &format!("binary {debug}") && f.starts_with("mode 0757")), "{found:?}");

    // `scheduler.bin_dir` (where the installed schedule runs the tools from) is checked too.
    let other = env.path("installed");
    std::fs::create_dir(&other).unwrap();
    chmod(&other, 0o777);
    config(&env, &redis, &format!("[scheduler]\nbin_dir = \"{}\"\n", other.display()));
    let out = env.run(DEBUG, &["security", "--format", "json"]);
    let subjects: Vec<String> = findings(&out.json()).into_iter().map(|f| f.1).collect();
    assert_eq!(subjects, [format!("binary directory {}", other.display())], "{}", out.dump());
}

/// The weekly audit's scores, and cache-health's default rule Security Score Drop: quiet on a
/// first audit and on a steady score, firing on `security/audit` once an audit scores lower than
/// the best of the baseline (and still on the week after, the score unchanged), resolved once
/// the finding is fixed.
#[test]
fn a_security_score_drop_fires_the_alert_and_fixing_the_finding_resolves_it() {
    let Some(redis) = RedisServer::start_with("requirepass audit-pass-0419") else { return };
    let env = TestEnv::new();
    let models = env.path("models");
    std::fs::create_dir(&models).unwrap();
    chmod(&models, 0o750);
    config(
        &env,
        &redis,
        &format!("[system]\ngpu = false\n[[files]]\nname = \"models\"\npath = \"{}\"\n", models.display()),
    );
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-02T06:00:00Z").unwrap().to_utc();
    let at = |week: i64| (start + chrono::Duration::weeks(week)).to_rfc3339();
    let audit = |week: i64| {
        let mut cmd = env.command(DEBUG, &["security", "-q", "--scheduled", "security-audit"]);
        cmd.env("CACHE_NOW", at(week));
        env.run_command(cmd).expect_code(0);
    };
    // One monitor round after the week's audit: the Security Score Drop notices, as
    // (kind, target, message).
    let round = |week: i64| -> Vec<(String, String, String)> {
        let mut cmd = env.command(HEALTH, &["monitor", "--once", "--format", "json", "--tier", "redis"]);
        cmd.env("CACHE_NOW", at(week));
        let out = env.run_command(cmd);
        let round = out.json();
        round["notices"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", out.dump()))
            .iter()
            .filter(|n| n["alert"]["rule"] == "Security Score Drop")
            .map(|n| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (text(&n["kind"]), text(&n["alert"]["target"]), text(&n["alert"]["message"]))
            })
            .collect()
    };
    audit(0);
    assert_eq!(round(0), []);
    audit(1);
    assert_eq!(round(1), []);
    chmod(&models, 0o777);
    audit(2);
    let fired = round(2);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0].0.as_str(), fired[0].1.as_str()), ("firing", "security/audit"), "{fired:?}");
    assert!(fired[0].2.starts_with("The security audit scores 75/100, 25 below its best"), "{fired:?}");
    // Still 25 below the best of the baseline a week later: still firing, nothing resolved.
    audit(3);
    assert!(round(3).iter().all(|n| n.0 != "resolved"), "the drop is not over");
    chmod(&models, 0o750);
    audit(4);
    let resolved = round(4);
    assert_eq!(resolved.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(), ["resolved"], "{resolved:?}");
    let records = std::fs::read_to_string(env.state_dir().join("security/audits.jsonl")).unwrap();
    let scores: Vec<u64> =
        records.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["score"].as_u64().unwrap()).collect();
    assert_eq!(scores, [100, 100, 75, 75, 100]);
    // The export carries the last audit.
    let out = env.run(crate::ANALYTICS, &["export", "--format", "prometheus"]);
    out.expect_code(0);
    for want in [
        "cache_security_score{project=\"default\"} 100",
        "cache_security_audit_complete{project=\"default\"} 1",
        "cache_security_findings{project=\"default\"} 0",
    ] {
        assert!(out.stdout.lines().any(|l| l == want), "no `{want}` in\n{}", out.stdout);
    }
    // The weekly job recorded its runs as itself.
    let job: Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("jobs/security-audit.json")).unwrap()).unwrap();
    assert_eq!((job["job"].as_str(), job["exit_code"].as_i64()), (Some("security-audit"), Some(0)), "{job:#}");
}
