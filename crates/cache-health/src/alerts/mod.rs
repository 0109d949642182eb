//! The alert engine: rules evaluated over a health report, per target, with `for` (bad rounds
//! in a row before firing), cooldown between repeats, resolved notices and acknowledgement.
//!
//! Alert state lives in `alerts/state.json`: one entry per rule and target (the fingerprint),
//! with its status, since when, when it was last sent and how often. [`evaluate`] is pure: a
//! round's observations and the clock in, notices out, so the rules are tested without time
//! passing.

pub mod channels;
pub mod remediate;

use std::collections::BTreeMap;

use cache_core::alerting::{self, Condition, Figures, Metric};
use cache_core::config::{AlertRule, AlertSettings, AutoAction, Severity};
use cache_core::tier::Tier;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::report::{HealthReport, Status};

/// Alert state, in the state directory.
pub const STATE_FILE: &str = "alerts/state.json";

/// Where an alert stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Bad, but not yet for `for` rounds.
    Pending,
    /// Firing.
    Firing,
    /// Was firing; the condition cleared.
    Resolved,
}

/// One alert: a rule on a target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Short id for `alerts --ack`.
    pub id: String,
    /// `rule|target`.
    pub fingerprint: String,
    /// The rule's name.
    pub rule: String,
    /// `tier/name`, or `all`.
    pub target: String,
    /// The rule's severity (raised to critical when an auto-action did not help).
    pub severity: Severity,
    /// Where it stands.
    pub status: AlertStatus,
    /// Bad rounds in a row.
    pub bad_rounds: u32,
    /// When the status last changed.
    pub since: DateTime<Utc>,
    /// When it started firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// When a notification was last queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent: Option<DateTime<Utc>>,
    /// Notifications queued.
    pub notifications: u32,
    /// Acknowledged: no repeats until it resolves.
    pub acked: bool,
    /// The rendered message.
    pub message: String,
    /// The runbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// The figures the condition read.
    pub values: BTreeMap<String, f64>,
    /// An auto-action did not fix it: raised to critical, notified once.
    #[serde(default)]
    pub escalated: bool,
}

impl Alert {
    /// An alert that fires now and is notified once (the budget alert, `alerts test`).
    pub fn firing_now(
        fingerprint: String,
        rule: String,
        target: &str,
        severity: Severity,
        message: String,
        runbook_url: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: short_id(&fingerprint),
            fingerprint,
            rule,
            target: target.to_owned(),
            severity,
            status: AlertStatus::Firing,
            bad_rounds: 0,
            since: now,
            started_at: Some(now),
            ended_at: None,
            last_sent: Some(now),
            notifications: 1,
            acked: false,
            message,
            runbook_url,
            values: BTreeMap::new(),
            escalated: false,
        }
    }
}

/// All alert state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// Rounds evaluated so far.
    pub round: u64,
    /// Alerts by fingerprint.
    pub alerts: BTreeMap<String, Alert>,
    /// Per rule, the rounds in which an auto-action ran.
    #[serde(default)]
    pub actions: BTreeMap<String, Vec<u64>>,
}

/// Why a notification is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// It started firing.
    Firing,
    /// Still firing after the cooldown.
    Repeat,
    /// It cleared.
    Resolved,
    /// An auto-action did not fix it.
    Escalated,
    /// `alerts test`.
    Test,
}

/// A notification to deliver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Why.
    pub kind: Kind,
    /// The alert as it stands.
    pub alert: Alert,
    /// The channels to deliver to.
    pub channels: Vec<String>,
}

/// What one target looked like in a round.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// `tier/name`, or `all` for the system as a whole.
    pub target: String,
    /// Numeric figures, by metric.
    pub metrics: Figures,
    /// Failed (`tier_unavailable`).
    pub unavailable: bool,
    /// Degraded or failed (`tier_degraded`).
    pub degraded: bool,
}

/// Slow rounds in a row before a default latency rule fires.
pub const LATENCY_ROUNDS: u32 = 3;

/// The tiers whose `latency_ms` is a round trip on an open connection, judged by the default
/// "High Latency" rule.
const LATENCY_TIERS: [&str; 4] = ["redis", "postgres", "memory", "http"];

/// Seed 000's `ALERT_RULES` and seed 002's thresholds, the rules used when none are configured.
pub fn default_rules(settings: &AlertSettings) -> Vec<AlertRule> {
    let rule = |name: &str, condition: &str, severity: Severity, message: &str, action: Option<AutoAction>| AlertRule {
        name: name.into(),
        condition: condition.into(),
        severity,
        channels: Vec::new(),
        message: message.into(),
        runbook_url: None,
        for_rounds: 1,
        cooldown: None,
        send_resolved: true,
        auto_action: action,
        tiers: Vec::new(),
    };
    let _ = settings;
    vec![
        rule(
            "Critical System Down",
            "all_tiers_unavailable",
            Severity::Critical,
            "CRITICAL: All cache tiers are down. Immediate attention required.",
            None,
        ),
        rule(
            "Tier Unavailable",
            "tier_unavailable",
            Severity::Critical,
            "{target} is unavailable.",
            Some(AutoAction::DisableTier),
        ),
        // Redis only: the host's memory is not a cache's to free.
        AlertRule {
            tiers: vec!["redis".into()],
            ..rule(
                "High Memory Usage",
                "memory_usage > 80%",
                Severity::Warning,
                "Memory usage of {target} is at {memory_usage:.1%}. Evicting the idlest keys down to the memory target.",
                Some(AutoAction::TriggerCleanup),
            )
        },
        rule(
            "Low Hit Ratio",
            "hit_ratio < 70%",
            Severity::Warning,
            "Cache hit ratio of {target} dropped to {hit_ratio:.1%}.",
            Some(AutoAction::TriggerOptimization),
        ),
        // Latency rules judge the wire round trip of the network tiers (the host's and the
        // directories' figures are their probes' wall time), and fire on the third slow round
        // in a row: one slow round (a busy moment, a GC pause) is not an incident.
        AlertRule {
            tiers: LATENCY_TIERS.iter().map(|t| (*t).into()).collect(),
            for_rounds: LATENCY_ROUNDS,
            ..rule(
                "High Latency",
                "latency_ms > 50",
                Severity::Warning,
                "{target} answers in {latency_ms:.0f} ms.",
                None,
            )
        },
        AlertRule {
            for_rounds: LATENCY_ROUNDS,
            ..rule(
                "Slow Cache Table",
                "rows >= 0 and latency_ms > 1000",
                Severity::Warning,
                "{target} answers in {latency_ms:.0f} ms: running index and statistics maintenance.",
                Some(AutoAction::PostgresMaintenance),
            )
        },
        rule(
            "Scheduled Job Failing",
            "failures >= 3",
            Severity::Warning,
            "{target} failed {failures:.0f} times in a row.",
            None,
        ),
        rule("Scheduled Job Overdue", "overdue >= 1", Severity::Warning, "{target} missed its scheduled run.", None),
        // A job its gates keep from running (a heavy job outside every window) is as missing
        // as one that fails, and says so with exit 0.
        rule(
            "Scheduled Job Skipped",
            "skips >= 3 or never_admitted >= 1",
            Severity::Warning,
            "{target} was skipped {skips:.0f} times in a row (cache-scheduler status says why).",
            None,
        ),
        rule(
            "Connection Usage",
            "connection_usage > 90% or clients_usage > 90%",
            Severity::Warning,
            "{target} uses {connection_usage:.0%} of its connections.",
            None,
        ),
        rule(
            "Backup Drill Overdue",
            "drill_overdue >= 1",
            Severity::Warning,
            "No disaster-recovery drill has passed within backup.drill_max_age: run `cache-backup drill` \
             (backup/restores.jsonl has the last ones).",
            None,
        ),
        // The weekly audit (job security-audit) scored lower than its best of the baseline: a
        // new finding, or an old one back.
        rule(
            "Security Score Drop",
            "security_score_drop > 0",
            Severity::Warning,
            "The security audit scores {security_score:.0f}/100, {security_score_drop:.0f} below its best of \
             debug.security_baseline: run `cache-debug security` for the findings (security/audits.jsonl has \
             the audits).",
            None,
        ),
        // A GPU busy every round for five minutes (one-minute rounds): work waits for it. One
        // busy round is a GPU doing its job.
        AlertRule {
            for_rounds: GPU_ROUNDS,
            ..rule(
                "GPU Saturated",
                "gpu_utilization >= 95%",
                Severity::Warning,
                "The busiest GPU of {target} has been at {gpu_utilization:.0%} for 5 rounds: work waiting for it \
                 queues.",
                None,
            )
        },
    ]
}

/// Busy rounds in a row before the default GPU rule fires.
pub const GPU_ROUNDS: u32 = 5;

/// The default latency rules on hand-made rounds. (Here rather than in `tests.rs`, beside
/// the rules they pin.)
#[cfg(test)]
mod default_latency_rules {
    use super::*;
    use cache_core::alerting::Metric;

    fn at(round: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(round)
    }

    fn observation(target: &str, latency_ms: f64, rows: Option<f64>) -> Observation {
        let mut metrics: Figures = [(Metric::LatencyMs, latency_ms)].into();
        if let Some(rows) = rows {
            metrics.insert(Metric::Rows, rows);
        }
        Observation { target: target.into(), metrics, unavailable: false, degraded: false }
    }

    /// One round of every default latency rule; the (rule, target) pairs notified as firing.
    fn round(book: &mut Book, minute: i64, observations: &[Observation]) -> Vec<(String, String)> {
        let settings = AlertSettings::default();
        let rules: Vec<AlertRule> = default_rules(&settings)
            .into_iter()
            .filter(|r| ["High Latency", "Slow Cache Table"].contains(&r.name.as_str()))
            .collect();
        assert_eq!(rules.len(), 2);
        let (notices, _) = evaluate(book, &rules, &settings, observations, &[], at(minute));
        notices
            .iter()
            .filter(|n| n.kind == Kind::Firing)
            .map(|n| (n.alert.rule.clone(), n.alert.target.clone()))
            .collect()
    }

    #[test]
    fn one_slow_round_does_not_fire_the_third_in_a_row_does() {
        let slow = [observation("redis/main", 120.0, None), observation("postgres/main", 1500.0, Some(25.0))];
        let fast = [observation("redis/main", 0.4, None), observation("postgres/main", 0.6, Some(25.0))];
        let mut book = Book::default();
        // One slow round, then fast ones: nothing fires, nothing is left pending.
        assert_eq!(round(&mut book, 0, &slow), []);
        assert_eq!(round(&mut book, 1, &fast), []);
        assert!(book.alerts.is_empty(), "{book:#?}");
        // Two slow rounds are still not an incident; the third in a row is, for both rules.
        assert_eq!(round(&mut book, 2, &slow), []);
        assert_eq!(round(&mut book, 3, &slow), []);
        let fired = round(&mut book, 4, &slow);
        let expected: Vec<(String, String)> =
            [("High Latency", "redis/main"), ("High Latency", "postgres/main"), ("Slow Cache Table", "postgres/main")]
                .iter()
                .map(|(r, t)| ((*r).to_owned(), (*t).to_owned()))
                .collect();
        assert_eq!(fired, expected);
    }

    #[test]
    fn the_hosts_probe_time_is_not_judged_as_latency() {
        // The host's and a directory's latency_ms are their probes' wall time (disk walks).
        let slow = [observation("system/host", 900.0, None), observation("files/models", 900.0, None)];
        let mut book = Book::default();
        for minute in 0..5 {
            assert_eq!(round(&mut book, minute, &slow), []);
        }
        assert!(book.alerts.is_empty(), "{book:#?}");
    }
}

/// The rules in force: the configured ones, or the defaults.
pub fn rules(settings: &AlertSettings) -> Vec<AlertRule> {
    if settings.rules.is_empty() && settings.default_rules { default_rules(settings) } else { settings.rules.clone() }
}

/// What each target of a health report looks like to the rules: the figures its probe
/// observed (typed, [`Metric`]), its status and its latency.
pub fn observe(report: &HealthReport) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut cache_targets = 0;
    let mut cache_down = 0;
    for t in &report.targets {
        if matches!(t.status, Status::NotConfigured | Status::NotAvailable) {
            continue;
        }
        let mut m = t.observed.clone();
        m.insert(Metric::Status, f64::from(t.status.severity()));
        if let Some(l) = t.latency_ms {
            m.insert(Metric::LatencyMs, l);
        }
        if matches!(t.tier, Tier::Redis | Tier::Postgres | Tier::Memory) {
            cache_targets += 1;
            cache_down += usize::from(t.status == Status::Failed);
        }
        out.push(Observation {
            target: format!("{}/{}", t.tier, t.name),
            metrics: m,
            unavailable: t.status == Status::Failed,
            degraded: t.status.severity() >= 1,
        });
    }
    out.push(Observation {
        target: "all".into(),
        metrics: Figures::new(),
        unavailable: cache_targets > 0 && cache_down == cache_targets,
        degraded: cache_down > 0,
    });
    out
}

/// Scheduled jobs as targets `job/NAME`: `overdue`, `too_fast`, `skipped`, `never_admitted`
/// (0 or 1), `failures` and `skips` (in a row), from `cache_core::jobs`.
pub fn observe_jobs(statuses: &[cache_core::jobs::JobStatus]) -> Vec<Observation> {
    statuses
        .iter()
        .filter(|j| j.enabled)
        .map(|j| {
            let flag = |set: bool| f64::from(u8::from(set));
            let metrics = [
                (Metric::Overdue, flag(j.overdue())),
                (Metric::TooFast, flag(j.too_fast())),
                (Metric::Skipped, flag(j.skipped())),
                (Metric::Failures, f64::from(j.consecutive_failures)),
                (Metric::Skips, f64::from(j.consecutive_skips)),
                (Metric::NeverAdmitted, flag(j.never_admitted)),
            ]
            .into();
            Observation { target: format!("job/{}", j.name), metrics, unavailable: false, degraded: false }
        })
        .collect()
}

/// The backups as target `backup/drill`: `drill_overdue` is 1 when the last drill that passed
/// (`kind: "drill"`, `result: "pass"` in `backup/restores.jsonl`) is older than `max_age`, or
/// when none ever passed and the oldest backup in `backup_dir` (ids are UTC times,
/// `YYYYMMDDTHHMMSSZ`) is older than that. No observation while there is no backup.
pub fn observe_drill(
    state: &cache_core::state::StateDir,
    backup_dir: &std::path::Path,
    max_age: std::time::Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Observation>> {
    let oldest_backup = std::fs::read_dir(backup_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("manifest.json").is_file())
        .filter_map(|e| chrono::NaiveDateTime::parse_from_str(&e.file_name().to_string_lossy(), "%Y%m%dT%H%M%SZ").ok())
        .map(|t| t.and_utc())
        .min();
    let Some(oldest_backup) = oldest_backup else { return Ok(None) };
    let records: Vec<serde_json::Value> = state.read_jsonl("backup/restores.jsonl")?;
    let last_pass = records
        .iter()
        .filter(|r| r["kind"] == "drill" && r["result"] == "pass")
        .filter_map(|r| r["at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()))
        .map(|t| t.to_utc())
        .max();
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    let overdue = now - last_pass.unwrap_or(oldest_backup) > max_age;
    Ok(Some(Observation {
        target: "backup/drill".into(),
        metrics: [(Metric::DrillOverdue, f64::from(u8::from(overdue)))].into(),
        unavailable: false,
        degraded: false,
    }))
}

/// The security audits as target `security/audit`: `security_score` of the latest complete
/// audit and `security_score_drop` below the best complete audit within `baseline` before it
/// (`cache_core::audit::score_drop`), from `security/audits.jsonl`. No observation while no
/// complete audit is recorded.
pub fn observe_security(
    state: &cache_core::state::StateDir,
    baseline: std::time::Duration,
) -> anyhow::Result<Option<Observation>> {
    let records: Vec<cache_core::audit::AuditRecord> = state.read_jsonl(cache_core::audit::AUDITS)?;
    Ok(cache_core::audit::score_drop(&records, baseline).map(|drop| Observation {
        target: "security/audit".into(),
        metrics: [
            (Metric::SecurityScore, f64::from(drop.score)),
            (Metric::SecurityScoreDrop, f64::from(drop.points())),
        ]
        .into(),
        unavailable: false,
        degraded: false,
    }))
}

/// A short stable id of a fingerprint.
pub fn short_id(fingerprint: &str) -> String {
    hex::encode(&Sha256::digest(fingerprint.as_bytes())[..4])
}

/// The channels a rule notifies.
pub fn channels_of(rule: &AlertRule, settings: &AlertSettings) -> Vec<String> {
    if rule.channels.is_empty() { settings.default_channels.clone() } else { rule.channels.clone() }
}

/// Evaluates every rule against a round's observations at `now`, updating `book`. Rules named
/// in `silenced` (maintenance windows) change state but send nothing. Returns the notices
/// and the alerts firing after this round (for auto-actions, which act on every bad round
/// until their budget is spent, as Monit restarts a failing service every cycle).
pub fn evaluate(
    book: &mut Book,
    rules: &[AlertRule],
    settings: &AlertSettings,
    observations: &[Observation],
    silenced: &[String],
    now: DateTime<Utc>,
) -> (Vec<Notice>, Vec<(AlertRule, Alert)>) {
    book.round += 1;
    let mut notices = Vec::new();
    let mut fired = Vec::new();
    for rule in rules {
        // Validated when the configuration was loaded.
        let Ok(condition) = alerting::parse(&rule.condition) else { continue };
        let global = condition.is_global();
        let all_down = observations.iter().any(|o| o.target == "all" && o.unavailable);
        for obs in observations.iter().filter(|o| (o.target == "all") == global && rule.applies_to(&o.target)) {
            let bad = judge(&condition, obs, all_down);
            let fingerprint = format!("{}|{}", rule.name, obs.target);
            let values = values_of(&condition, &obs.metrics);
            let cooldown =
                chrono::Duration::from_std(rule.cooldown.unwrap_or(settings.cooldown)).unwrap_or(chrono::Duration::MAX);
            let channels = channels_of(rule, settings);
            let quiet = silenced.contains(&rule.name);
            let notify = |kind: Kind, alert: &mut Alert, notices: &mut Vec<Notice>| {
                if quiet {
                    return;
                }
                alert.last_sent = Some(now);
                alert.notifications += 1;
                notices.push(Notice { kind, alert: alert.clone(), channels: channels.clone() });
            };
            if bad {
                let alert = book.alerts.entry(fingerprint.clone()).or_insert_with(|| Alert {
                    id: short_id(&fingerprint),
                    fingerprint: fingerprint.clone(),
                    rule: rule.name.clone(),
                    target: obs.target.clone(),
                    severity: rule.severity,
                    status: AlertStatus::Pending,
                    bad_rounds: 0,
                    since: now,
                    started_at: None,
                    ended_at: None,
                    last_sent: None,
                    notifications: 0,
                    acked: false,
                    message: String::new(),
                    runbook_url: rule.runbook_url.clone(),
                    values: BTreeMap::new(),
                    escalated: false,
                });
                if alert.status == AlertStatus::Resolved {
                    alert.status = AlertStatus::Pending;
                    alert.bad_rounds = 0;
                    alert.since = now;
                    alert.acked = false;
                    alert.ended_at = None;
                    alert.severity = rule.severity;
                    alert.escalated = false;
                }
                alert.bad_rounds += 1;
                alert.values = values;
                alert.message = render(rule, obs, &alert.values);
                if alert.status == AlertStatus::Pending && alert.bad_rounds >= rule.for_rounds {
                    alert.status = AlertStatus::Firing;
                    alert.since = now;
                    alert.started_at = Some(now);
                    notify(Kind::Firing, alert, &mut notices);
                } else if alert.status == AlertStatus::Firing
                    && !alert.acked
                    && alert.last_sent.is_none_or(|t| now - t >= cooldown)
                {
                    notify(Kind::Repeat, alert, &mut notices);
                }
                if alert.status == AlertStatus::Firing {
                    fired.push((rule.clone(), alert.clone()));
                }
            } else if let Some(alert) = book.alerts.get_mut(&fingerprint) {
                match alert.status {
                    AlertStatus::Firing => {
                        alert.status = AlertStatus::Resolved;
                        alert.since = now;
                        alert.ended_at = Some(now);
                        alert.bad_rounds = 0;
                        alert.values = values;
                        if rule.send_resolved {
                            notify(Kind::Resolved, alert, &mut notices);
                        }
                    }
                    AlertStatus::Pending => {
                        book.alerts.remove(&fingerprint);
                    }
                    AlertStatus::Resolved => {}
                }
            }
        }
    }
    (notices, fired)
}

/// The rules silenced at `now` by an open maintenance window (`cache-scheduler windows`).
pub fn silenced(
    state: &cache_core::state::StateDir,
    rules: &[AlertRule],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<String>> {
    let windows: cache_core::gate::Windows = state.read_json(cache_core::gate::WINDOWS_FILE)?.unwrap_or_default();
    let mut out = Vec::new();
    for w in windows.windows {
        if w.open_since(now)?.is_some() {
            out.extend(w.silence.iter().filter(|r| rules.iter().any(|rule| &rule.name == *r)).cloned());
        }
    }
    Ok(out)
}

/// Whether `condition` holds for `obs` (`all_down`: every cache target failed this round).
pub fn judge(condition: &Condition, obs: &Observation, all_down: bool) -> bool {
    condition.eval(&obs.metrics, &|n| match n {
        "all_tiers_unavailable" => all_down,
        "tier_unavailable" => obs.unavailable,
        "tier_degraded" => obs.degraded,
        _ => false,
    })
}

fn values_of(condition: &Condition, metrics: &Figures) -> BTreeMap<String, f64> {
    condition.metrics().into_iter().filter_map(|m| metrics.get(&m).map(|v| (m.name().to_owned(), *v))).collect()
}

fn render(rule: &AlertRule, obs: &Observation, _values: &BTreeMap<String, f64>) -> String {
    let labels: BTreeMap<&str, String> = [("target", obs.target.clone()), ("rule", rule.name.clone())].into();
    alerting::render(&rule.message, &obs.metrics, &labels).unwrap_or_else(|_| rule.message.clone())
}

#[cfg(test)]
mod tests;
