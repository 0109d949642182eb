//! Auto-actions (seed 000's `auto_recovery_system`): when a rule with an `auto_action` starts
//! firing, `monitor` runs the sibling tool for it (or disables the failing target), waits
//! `remediation.verify_delay`, probes again and checks the rule on that target: recovered, the
//! alert resolves; not, it escalates to critical. A rule gets at most
//! `remediation.max_actions` actions within `remediation.rounds` rounds (Monit's "N restarts
//! within M cycles"); past that it stops acting and a budget alert says so.
//!
//! An action acts on the alert's target only (`--tier redis:main`) and in the least
//! destructive mode that can fix it: `trigger_cleanup` evicts the idlest keys of that Redis down
//! to its memory target (`cache-cleanup evict`), removes only expired rows of a cache table
//! (`light`), and never runs for the host or an HTTP endpoint. The cleanup's own blast-radius
//! cap applies (an unattended run cannot lift it), and verification also checks that the action
//! stayed within it: one that removed more escalates instead of resolving.

use std::path::PathBuf;
use std::time::Duration;

use cache_core::alerting;
use cache_core::app::Context;
use cache_core::config::{AlertRule, AutoAction, ConfigSource, Severity};
use cache_core::tier::{DISABLED_FILE, Disabled, DisabledTarget};
use chrono::{DateTime, Utc};

use super::channels::Outbox;
use super::{Alert, AlertStatus, Book, Kind, Notice, channels_of, judge, observe};
use crate::commands::check::probe_and_record;

/// Longest an action's command may run.
const ACTION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn action_name(action: AutoAction) -> &'static str {
    match action {
        AutoAction::TriggerCleanup => "trigger_cleanup",
        AutoAction::TriggerOptimization => "trigger_optimization",
        AutoAction::PostgresMaintenance => "postgres_maintenance",
        AutoAction::DisableTier => "disable_tier",
    }
}

/// The command line of an action on `target` (`tier/name`), scoped to it with `--tier`:
/// `remediation.commands.<action>`, or the sibling tool in the least destructive mode that can
/// fix the target. `Err` says why the action does not apply to this target.
fn command_of(ctx: &Context, action: AutoAction, target: &str) -> Result<Vec<String>, String> {
    let (tier, name) = target
        .split_once('/')
        .ok_or_else(|| format!("{} acts on one target, not on `{target}`", action_name(action)))?;
    let words: &[&str] = match (action, tier) {
        (AutoAction::TriggerCleanup, "redis") => &["cache-cleanup", "evict", "--yes", "--format", "json"],
        (AutoAction::TriggerCleanup, "postgres") => &["cache-cleanup", "light", "--yes", "--format", "json"],
        (AutoAction::TriggerCleanup, "memory") => {
            &["cache-cleanup", "memory", "--mode", "moderate", "--yes", "--format", "json"]
        }
        (AutoAction::TriggerCleanup, "files") => &["cache-cleanup", "files", "--yes", "--format", "json"],
        (AutoAction::TriggerCleanup, "logs") => &["cache-cleanup", "logs", "--yes", "--format", "json"],
        (AutoAction::TriggerOptimization, "redis" | "postgres") => &["cache-optimizer", "run", "--yes", "-q"],
        (AutoAction::PostgresMaintenance, "postgres") => &["cache-optimizer", "run", "--yes", "-q"],
        _ => {
            return Err(format!(
                "{} does not apply to {target}: there is no cache of the toolkit's to act on there",
                action_name(action)
            ));
        }
    };
    let remediation = &ctx.config.alerts.remediation;
    let mut out: Vec<String> = match remediation.commands.get(action_name(action)).filter(|c| !c.is_empty()) {
        Some(configured) => configured.clone(),
        None => {
            let mut out: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
            out[0] = sibling(remediation.tools_dir.as_deref(), words[0]);
            out
        }
    };
    out.extend(["--tier".to_owned(), format!("{tier}:{name}")]);
    Ok(out)
}

/// A sibling tool: in `tools_dir`, else next to this binary, else on PATH.
fn sibling(tools_dir: Option<&std::path::Path>, name: &str) -> String {
    let beside = || std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name)));
    [tools_dir.map(|d| d.join(name)), beside()]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| cache_core::system::which(name))
        .unwrap_or_else(|| PathBuf::from(name))
        .to_string_lossy()
        .into_owned()
}

/// What an action's command did.
struct Ran {
    /// In words, for the round's list of actions.
    text: String,
    /// Its standard output (the cleanup's JSON report).
    stdout: String,
}

/// Whether a cleanup's JSON report shows a target past its blast-radius cap.
fn over_cap(stdout: &str) -> Option<String> {
    let report: serde_json::Value = serde_json::from_str(stdout).ok()?;
    report["targets"].as_array()?.iter().find_map(|t| {
        let cap = &t["cap"];
        let removed = t["removed"].as_u64().unwrap_or(0);
        let freed = t["bytes_freed"].as_u64().unwrap_or(0);
        let over_items = cap["max_items"].as_u64().filter(|m| removed > *m);
        let over_bytes = cap["max_bytes"].as_u64().filter(|m| freed > *m);
        let name = format!("{}/{}", t["tier"].as_str().unwrap_or("?"), t["target"].as_str().unwrap_or("?"));
        match (over_items, over_bytes) {
            (Some(max), _) => Some(format!("{name}: removed {removed} entries, over its cap of {max}")),
            (None, Some(max)) => Some(format!("{name}: freed {freed} bytes, over its cap of {max}")),
            (None, None) => None,
        }
    })
}

async fn run_command(ctx: &Context, argv: &[String]) -> anyhow::Result<Ran> {
    let (program, args) = argv.split_first().ok_or_else(|| anyhow::anyhow!("empty command"))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg("--state-dir")
        .arg(ctx.state.root())
        .args(["--trigger", "remediation"])
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    if let ConfigSource::File(path) = &ctx.config_source {
        cmd.arg("--config").arg(path);
    }
    let out = tokio::time::timeout(ACTION_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("`{program}` did not finish within 30 minutes"))?
        .map_err(|e| anyhow::anyhow!("running `{program}`: {e}"))?;
    let code = out.status.code().map_or("a signal".to_owned(), |c| format!("exit {c}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(Ran { text: format!("`{}` ({code})", argv.join(" ")), stdout })
    } else if out.status.code() == Some(i32::from(cache_core::exit::PARTIAL)) {
        // Partial: the cleanup stopped at its cap, or one item failed; verification decides.
        Ok(Ran { text: format!("`{}` ({code}: partial)", argv.join(" ")), stdout })
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!("`{}` failed ({code}): {}", argv.join(" "), stderr.trim())
    }
}

fn budget_alert(rule: &AlertRule, actions: usize, rounds: u32, now: DateTime<Utc>) -> Alert {
    Alert::firing_now(
        format!("{}|remediation-budget", rule.name),
        format!("{} (remediation budget)", rule.name),
        "all",
        Severity::Critical,
        format!(
            "{actions} auto-actions of rule `{}` in the last {rounds} rounds did not keep it from firing; \
             no more actions until the budget frees up: a person is needed",
            rule.name
        ),
        rule.runbook_url.clone(),
        now,
    )
}

/// Seed 000's fallback when a tier fails: the remaining tiers keep their entries `extra`
/// longer. Redis keys that have a TTL get `extra` more (protected keys excepted); cache-table
/// rows with an expiry get it later. Targets that are disabled themselves are left alone.
async fn extend_ttls(
    ctx: &Context,
    failed: &str,
    disabled: &Disabled,
    extra: Duration,
    now: DateTime<Utc>,
) -> Vec<String> {
    use cache_core::cache_table::CacheTable;
    use cache_core::clients::postgres;
    use cache_core::keyspace::Keyspace;
    use cache_core::scan::{Method, ScanOptions, Scanner};
    use cache_core::tier::Tier;

    let mut done = Vec::new();
    let config = &ctx.config;
    let extra_ms = extra.as_millis() as i64;
    for t in config.redis.iter().filter(|t| format!("redis/{}", t.name) != failed) {
        if disabled.get(Tier::Redis, &t.name, now).is_some() {
            continue;
        }
        let result: anyhow::Result<(u64, String)> = async {
            let keyspace = Keyspace::new(config, t);
            let primaries = keyspace.primaries().await?;
            let mut extended = 0;
            for node in &primaries.nodes {
                // Cluster nodes get pipelined commands: a script may only touch declared keys.
                let method = primaries.cluster.then_some(Method::Pipeline);
                let opts = ScanOptions {
                    count: 1000,
                    access: false,
                    memory: false,
                    method,
                    budget: t.scan_budget(),
                    ..ScanOptions::default()
                };
                let mut scanner = Scanner::new(node.conn.clone(), opts, 0).await?.recording(&ctx.state, node.run_id());
                let mut conn = node.conn.clone();
                while let Some(batch) = scanner.next_batch().await? {
                    let mut pipe = redis::pipe();
                    for k in batch.iter().filter(|k| !keyspace.is_protected(&k.key)) {
                        if let Some(ttl) = k.ttl_ms.filter(|t| *t > 0) {
                            // GT: never shortens a TTL the application set meanwhile.
                            pipe.cmd("PEXPIRE").arg(&k.key).arg(ttl + extra_ms).arg("GT").ignore();
                            extended += 1;
                        }
                    }
                    pipe.query_async::<()>(&mut conn).await?;
                }
            }
            let missed = if primaries.complete() {
                String::new()
            } else {
                format!(" (not reached: {})", primaries.missing.join("; "))
            };
            Ok((extended, missed))
        }
        .await;
        done.push(match result {
            Ok((n, missed)) => format!(
                "redis/{}: {n} TTLs extended by {} while {failed} is out{missed}",
                t.name,
                humantime::format_duration(extra)
            ),
            Err(e) => format!("redis/{}: extending TTLs failed: {e:#}", t.name),
        });
    }
    for t in config.postgres.iter().filter(|t| format!("postgres/{}", t.name) != failed) {
        if disabled.get(Tier::Postgres, &t.name, now).is_some() {
            continue;
        }
        let result: anyhow::Result<u64> = async {
            let db = postgres::connect(t).await?;
            let n = CacheTable::new(t, &config.project_name)
                .extend_expiry(&db, extra.as_secs_f64())
                .await
                .map_err(|e| anyhow::anyhow!("{}", postgres::error_text(&e)))?;
            Ok(n)
        }
        .await;
        done.push(match result {
            Ok(n) => format!(
                "postgres/{}: {n} rows expire {} later while {failed} is out",
                t.name,
                humantime::format_duration(extra)
            ),
            Err(e) => format!("postgres/{}: extending expiry failed: {e:#}", t.name),
        });
    }
    done
}

/// Runs the auto-actions of the alerts firing this round; returns what was done.
pub async fn run(
    ctx: &Context,
    book: &mut Book,
    outbox: &mut Outbox,
    fired: &[(AlertRule, Alert)],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<String>> {
    let settings = &ctx.config.alerts;
    let limits = &settings.remediation;
    let mut done = Vec::new();
    for (rule, alert) in fired {
        let Some(action) = rule.auto_action else { continue };
        let round = book.round;
        let recent = book.actions.entry(rule.name.clone()).or_default();
        recent.retain(|r| *r + u64::from(limits.rounds) > round);
        if recent.len() >= limits.max_actions as usize {
            let budget = budget_alert(rule, recent.len(), limits.rounds, now);
            let fresh = book.alerts.get(&budget.fingerprint).is_none_or(|a| a.status != AlertStatus::Firing);
            if fresh {
                let channels = channels_of(rule, settings);
                outbox.enqueue(&[Notice { kind: Kind::Firing, alert: budget.clone(), channels }], now);
                book.alerts.insert(budget.fingerprint.clone(), budget);
            }
            done.push(format!(
                "{}: budget of {} actions in {} rounds spent; not acting",
                rule.name, limits.max_actions, limits.rounds
            ));
            continue;
        }
        recent.push(round);
        if action == AutoAction::DisableTier {
            if alert.target == "all" {
                continue;
            }
            let mut disabled: Disabled = ctx.state.read_json(DISABLED_FILE)?.unwrap_or_default();
            let newly = disabled.targets.get(&alert.target).is_none_or(|d| d.until <= now);
            let until = now + chrono::Duration::from_std(limits.disable_for).unwrap_or(chrono::Duration::MAX);
            disabled.targets.insert(alert.target.clone(), DisabledTarget { until, reason: alert.message.clone() });
            ctx.state.write_json(DISABLED_FILE, &disabled)?;
            done.push(format!("{}: {} disabled until {}", rule.name, alert.target, until.format("%H:%M:%S UTC")));
            if let (true, Some(extra)) = (newly, limits.extend_ttl) {
                done.extend(extend_ttls(ctx, &alert.target, &disabled, extra, now).await);
            }
            continue;
        }
        let argv = match command_of(ctx, action, &alert.target) {
            Ok(argv) => argv,
            Err(why) => {
                recent.pop();
                done.push(format!("{}: not acting: {why}", rule.name));
                continue;
            }
        };
        let mut over = None;
        match run_command(ctx, &argv).await {
            Ok(ran) => {
                done.push(format!("{}: ran {}", rule.name, ran.text));
                over = over_cap(&ran.stdout);
            }
            Err(e) => done.push(format!("{}: {e:#}", rule.name)),
        }
        // Verify: probe again after the delay and judge the rule on the same target.
        tokio::time::sleep(limits.verify_delay).await;
        let report = probe_and_record(ctx, None).await?;
        let observations = observe(&report);
        let still_bad = match (alerting::parse(&rule.condition), observations.iter().find(|o| o.target == alert.target))
        {
            (Ok(condition), Some(obs)) => {
                judge(&condition, obs, observations.iter().any(|o| o.target == "all" && o.unavailable))
            }
            _ => true,
        };
        let channels = channels_of(rule, settings);
        let Some(entry) = book.alerts.get_mut(&alert.fingerprint) else { continue };
        if still_bad || over.is_some() {
            let why = match &over {
                Some(over) => format!("{} went past its blast-radius cap: {over}", action_name(action)),
                None => format!("still so after {}", action_name(action)),
            };
            if !entry.escalated {
                entry.escalated = true;
                entry.severity = Severity::Critical;
                entry.last_sent = Some(now);
                entry.notifications += 1;
                entry.message = format!("{} ({why}; escalated)", entry.message);
                outbox.enqueue(&[Notice { kind: Kind::Escalated, alert: entry.clone(), channels }], now);
            }
            match over {
                Some(over) => done.push(format!("{}: escalated: {over}", rule.name)),
                None => done.push(format!("{}: not recovered on {}", rule.name, alert.target)),
            }
        } else {
            entry.status = AlertStatus::Resolved;
            entry.since = now;
            entry.ended_at = Some(now);
            entry.bad_rounds = 0;
            if rule.send_resolved {
                entry.last_sent = Some(now);
                entry.notifications += 1;
                outbox.enqueue(&[Notice { kind: Kind::Resolved, alert: entry.clone(), channels }], now);
            }
            done.push(format!("{}: verified: {} recovered", rule.name, alert.target));
        }
    }
    Ok(done)
}
