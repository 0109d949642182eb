//! Auto-actions (seed 000's `auto_recovery_system`): when a rule with an `auto_action` starts
//! firing, `monitor` runs the sibling tool for it (or disables the failing target), waits
//! `remediation.verify_delay`, probes again and checks the rule on that target: recovered, the
//! alert resolves; not, it escalates to critical. A rule gets at most
//! `remediation.max_actions` actions within `remediation.rounds` rounds (Monit's "N restarts
//! within M cycles"); past that it stops acting and a budget alert says so.

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

/// The command line of an action: `remediation.commands.<action>`, or the sibling tool next to
/// this binary (or on PATH).
fn command_of(ctx: &Context, action: AutoAction) -> Vec<String> {
    if let Some(c) = ctx.config.alerts.remediation.commands.get(action_name(action)).filter(|c| !c.is_empty()) {
        return c.clone();
    }
    let sibling = |name: &str| -> String {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(name)))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
            .to_string_lossy()
            .into_owned()
    };
    let words: &[&str] = match action {
        AutoAction::TriggerCleanup => &["cache-cleanup", "smart", "--yes", "-q"],
        AutoAction::TriggerOptimization => &["cache-optimizer", "run", "-q"],
        AutoAction::PostgresMaintenance => &["cache-optimizer", "run", "-q", "--tier", "postgres"],
        AutoAction::DisableTier => &[],
    };
    let mut out: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    if let Some(first) = out.first_mut() {
        *first = sibling(first);
    }
    out
}

async fn run_command(ctx: &Context, argv: &[String]) -> anyhow::Result<String> {
    let (program, args) = argv.split_first().ok_or_else(|| anyhow::anyhow!("empty command"))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).arg("--state-dir").arg(ctx.state.root()).kill_on_drop(true).stdin(std::process::Stdio::null());
    if let ConfigSource::File(path) = &ctx.config_source {
        cmd.arg("--config").arg(path);
    }
    let out = tokio::time::timeout(ACTION_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("`{program}` did not finish within 30 minutes"))?
        .map_err(|e| anyhow::anyhow!("running `{program}`: {e}"))?;
    let code = out.status.code().map_or("a signal".to_owned(), |c| format!("exit {c}"));
    if out.status.success() {
        Ok(format!("`{}` ({code})", argv.join(" ")))
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
    use cache_core::clients::{postgres, redis as redis_client};
    use cache_core::scan::{ScanOptions, Scanner, glob_match};
    use cache_core::tier::Tier;

    let mut done = Vec::new();
    let config = &ctx.config;
    let extra_ms = extra.as_millis() as i64;
    for t in config.redis.iter().filter(|t| format!("redis/{}", t.name) != failed) {
        if disabled.get(Tier::Redis, &t.name, now).is_some() {
            continue;
        }
        let result: anyhow::Result<u64> = async {
            let conn = redis_client::connect(t).await?;
            let opts = ScanOptions { count: 1000, access: false, memory: false, ..ScanOptions::default() };
            let mut scanner = Scanner::new(conn.clone(), opts, 0).await?;
            let protected: Vec<&String> = config.cleanup.protected.iter().chain(&t.protected).collect();
            let mut extended = 0;
            let mut conn = conn;
            while let Some(batch) = scanner.next_batch().await? {
                let mut pipe = redis::pipe();
                for k in batch.iter().filter(|k| !protected.iter().any(|p| glob_match(p.as_bytes(), &k.key))) {
                    if let Some(ttl) = k.ttl_ms.filter(|t| *t > 0) {
                        // GT: never shortens a TTL the application set meanwhile.
                        pipe.cmd("PEXPIRE").arg(&k.key).arg(ttl + extra_ms).arg("GT").ignore();
                        extended += 1;
                    }
                }
                pipe.query_async::<()>(&mut conn).await?;
            }
            Ok(extended)
        }
        .await;
        done.push(match result {
            Ok(n) => format!(
                "redis/{}: {n} TTLs extended by {} while {failed} is out",
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
        let c = &t.columns;
        let q = postgres::quote_ident;
        let result: anyhow::Result<u64> = async {
            let db = postgres::connect(t).await?;
            let seconds = extra.as_secs_f64();
            let n = if c.project.is_empty() {
                let sql = format!(
                    "UPDATE {table} SET {exp} = {exp} + make_interval(secs => $1) WHERE {exp} > now()",
                    table = q(&t.table),
                    exp = q(&c.expires_at)
                );
                db.execute(&sql, &[&seconds]).await
            } else {
                let sql = format!(
                    "UPDATE {table} SET {exp} = {exp} + make_interval(secs => $1) WHERE {exp} > now() AND {project} = $2",
                    table = q(&t.table),
                    exp = q(&c.expires_at),
                    project = q(&c.project)
                );
                db.execute(&sql, &[&seconds, &config.project_name]).await
            }
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
        let argv = command_of(ctx, action);
        match run_command(ctx, &argv).await {
            Ok(text) => done.push(format!("{}: ran {text}", rule.name)),
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
        if still_bad {
            if !entry.escalated {
                entry.escalated = true;
                entry.severity = Severity::Critical;
                entry.last_sent = Some(now);
                entry.notifications += 1;
                entry.message = format!("{} (still so after {}; escalated)", entry.message, action_name(action));
                outbox.enqueue(&[Notice { kind: Kind::Escalated, alert: entry.clone(), channels }], now);
            }
            done.push(format!("{}: not recovered on {}", rule.name, alert.target));
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
