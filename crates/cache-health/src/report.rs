//! The health report: statuses, checks with performance data, and how a run's targets roll up
//! into `health/comprehensive-health.json` (seed 000's shape plus per-target detail).

use std::collections::BTreeMap;
use std::time::Duration;

use cache_core::config::Level;
use cache_core::tier::Tier;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The status of a check, a target, a tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything within thresholds.
    Healthy,
    /// Working, but something is over a warning threshold (WARNING).
    Degraded,
    /// Down, or over a critical threshold (CRITICAL).
    Failed,
    /// The tier has no target in the configuration.
    NotConfigured,
    /// The thing cannot be probed on this host (no GPU, no NVML); never an error.
    NotAvailable,
}

impl Status {
    /// 0 for fine, 1 for degraded, 2 for failed.
    pub fn severity(self) -> u8 {
        match self {
            Status::Healthy | Status::NotConfigured | Status::NotAvailable => 0,
            Status::Degraded => 1,
            Status::Failed => 2,
        }
    }

    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Failed => "failed",
            Status::NotConfigured => "not_configured",
            Status::NotAvailable => "not_available",
        }
    }

    /// The worse of two statuses; among equally fine ones, `Healthy` wins.
    pub fn worst(self, other: Status) -> Status {
        match self.severity().cmp(&other.severity()) {
            std::cmp::Ordering::Less => other,
            std::cmp::Ordering::Greater => self,
            std::cmp::Ordering::Equal if other == Status::Healthy => other,
            std::cmp::Ordering::Equal => self,
        }
    }
}

/// Judges `value` against a `{ warn, crit }` level where higher is worse.
pub fn judge(value: f64, level: Level) -> Status {
    if value >= level.crit {
        Status::Failed
    } else if value >= level.warn {
        Status::Degraded
    } else {
        Status::Healthy
    }
}

/// One performance-data value (monitoring-plugin `'label'=value[UOM];warn;crit;min;max`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perf {
    /// The label, unique in the report.
    pub label: String,
    /// The value.
    pub value: f64,
    /// Unit: "", "s", "ms", "%", "B" or "c".
    pub uom: String,
    /// Warning threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<f64>,
    /// Critical threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<f64>,
    /// Minimum possible value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Maximum possible value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The thresholds are floors (a hit ratio): a value under them is bad, rendered `70:` in
    /// the plugin range syntax.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub floor: bool,
}

/// One check of a target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Short name: `ping`, `write`, `memory`, `disk /var`...
    pub name: String,
    /// Its status.
    pub status: Status,
    /// What was found, in words.
    pub summary: String,
    /// Performance data, when the check measured a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perf: Option<Perf>,
}

/// The result of probing one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// The tier.
    pub tier: Tier,
    /// The target's name.
    pub name: String,
    /// Worst status of its checks.
    pub status: Status,
    /// Since when the target has had this status (carried over from the previous report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Where it is (redacted URL, path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// One round trip on the probe's open connection, milliseconds: Redis PING, PostgreSQL
    /// `SELECT 1`, a request to an HTTP endpoint or memory API on a kept-alive connection. The
    /// host, GPUs and directories: the probe's wall time. Connecting is in `connect_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// One line about the target when healthy.
    pub headline: String,
    /// The checks.
    pub checks: Vec<Check>,
    /// Figures read from the target, for analytics and people.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// The figures alert rules judge (docs/alerts.md), typed: what the probe measured, and
    /// nothing it did not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observed: cache_core::alerting::Figures,
    /// The lookup counters of the target's servers, for the next check's interval (kept in
    /// `health/lookups.json`, not in the report).
    #[serde(skip)]
    pub seen: cache_core::ledger::Seen,
    /// Why the target failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about it.
    pub recommendations: Vec<String>,
}

impl TargetReport {
    /// An empty report for `tier`/`name`.
    pub fn new(tier: Tier, name: &str) -> Self {
        Self {
            tier,
            name: name.to_owned(),
            status: Status::Healthy,
            since: None,
            endpoint: None,
            latency_ms: None,
            headline: String::new(),
            checks: Vec::new(),
            metrics: BTreeMap::new(),
            observed: BTreeMap::new(),
            seen: BTreeMap::new(),
            error: None,
            recommendations: Vec::new(),
        }
    }

    /// `tier/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.tier, self.name)
    }

    /// Adds a check and folds its status into the target's.
    pub fn check(&mut self, name: &str, status: Status, summary: impl Into<String>, perf: Option<Perf>) {
        self.status = self.status.worst(status);
        self.checks.push(Check { name: name.to_owned(), status, summary: summary.into(), perf });
    }

    /// Marks the target failed with `error`.
    pub fn fail(&mut self, check: &str, error: impl Into<String>) {
        let error = error.into();
        self.check(check, Status::Failed, error.clone(), None);
        self.error = Some(error);
    }

    /// Records a figure alert rules judge.
    pub fn observe(&mut self, metric: cache_core::alerting::Metric, value: f64) {
        self.observed.insert(metric, value);
    }

    /// Records a metric.
    pub fn metric(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.metrics.insert(key.to_owned(), value.into());
    }

    /// A performance-data value labelled after this target.
    pub fn perf(&self, what: &str, value: f64, uom: &str) -> Perf {
        Perf {
            label: perf_label(&format!("{}_{}_{}", self.tier, self.name, what)),
            value,
            uom: uom.to_owned(),
            warn: None,
            crit: None,
            min: None,
            max: None,
            floor: false,
        }
    }

    /// Records the time the probe took to open its connection (TCP, TLS handshake,
    /// authentication; for HTTP, with the first request) as the `connect_ms` metric and a
    /// `connect` check. Judged by no threshold: a TLS handshake is not a slow server, and the
    /// latency threshold is for [`TargetReport::latency`].
    pub fn connected(&mut self, elapsed: Duration) {
        let ms = round3(elapsed.as_secs_f64() * 1000.0);
        self.metric("connect_ms", ms);
        let perf = self.perf("connect", ms, "ms").range(0.0, None);
        self.check("connect", Status::Healthy, format!("connected in {}", cache_core::output::millis(ms)), Some(perf));
    }

    /// Records the probe's latency, one round trip on its open connection (`elapsed`; never
    /// the connect), and judges it against `threshold` (degraded above it).
    pub fn latency(&mut self, elapsed: Duration, threshold: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let limit = threshold.as_secs_f64() * 1000.0;
        self.latency_ms = Some(round3(ms));
        let status = if ms > limit { Status::Degraded } else { Status::Healthy };
        let mut perf = self.perf("latency", round3(ms), "ms").range(0.0, None);
        perf.warn = Some(limit);
        let summary = format!("{} (threshold {})", cache_core::output::millis(ms), cache_core::output::millis(limit));
        self.check("latency", status, summary, Some(perf));
        if status == Status::Degraded {
            self.recommendations.push(format!(
                "{}: the probe took {} for one round trip on an open connection (over {}); look at the server's load, slow commands and the network",
                self.id(),
                cache_core::output::millis(ms),
                cache_core::output::millis(limit)
            ));
        }
    }
}

/// Makes a performance-data label: letters, digits, `_`, `.`, `-` only.
pub fn perf_label(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '_' }).collect()
}

/// Rounds to three decimals, for stable output.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Overall verdict, in monitoring-plugin terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Exit 0.
    Ok,
    /// Exit 1.
    Warning,
    /// Exit 2.
    Critical,
}

impl Verdict {
    /// The plugin exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => cache_core::exit::plugin::OK,
            Verdict::Warning => cache_core::exit::plugin::WARNING,
            Verdict::Critical => cache_core::exit::plugin::CRITICAL,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
        }
    }
}

/// `health/comprehensive-health.json`: seed 000's report plus per-target detail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// When the check ran.
    pub timestamp: DateTime<Utc>,
    /// `healthy`, `degraded` or `critical`.
    pub overall_health: String,
    /// Since when `overall_health` has had its value.
    pub since: DateTime<Utc>,
    /// Monitoring-plugin verdict.
    pub status: Verdict,
    /// Targets that failed.
    pub critical_issues: usize,
    /// Targets that are degraded, plus seed tiers (redis, postgres, memory) not configured.
    pub warnings: usize,
    /// Tier → worst status of its targets, or `not_configured`.
    pub systems: BTreeMap<String, Status>,
    /// Every probed target.
    pub targets: Vec<TargetReport>,
    /// What to do, most urgent first.
    pub recommendations: Vec<String>,
    /// Wall time of the whole check, milliseconds.
    pub duration_ms: f64,
    /// Configured targets a `--tier` filter left out (`tier/name`): what this report did not
    /// see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
}

/// Tiers of seed 000 whose absence the seed counts as a warning.
const SEED_TIERS: [Tier; 3] = [Tier::Redis, Tier::Postgres, Tier::Memory];

/// Rolls `targets` up into a report. `unconfigured` are selected tiers without targets;
/// `previous` is the last report, for `since`.
pub fn assemble(
    mut targets: Vec<TargetReport>,
    unconfigured: &[Tier],
    previous: Option<&HealthReport>,
    now: DateTime<Utc>,
    duration: Duration,
) -> HealthReport {
    let mut systems: BTreeMap<String, Status> = BTreeMap::new();
    for tier in unconfigured {
        systems.insert(tier.to_string(), Status::NotConfigured);
    }
    for target in &mut targets {
        let was = previous.and_then(|p| p.targets.iter().find(|t| t.tier == target.tier && t.name == target.name));
        target.since = match was {
            Some(was) if was.status == target.status => was.since.or(Some(now)),
            _ => Some(now),
        };
        systems.entry(target.tier.to_string()).and_modify(|s| *s = s.worst(target.status)).or_insert(target.status);
    }
    let critical_issues = targets.iter().filter(|t| t.status == Status::Failed).count();
    let degraded = targets.iter().filter(|t| t.status == Status::Degraded).count();
    let warnings = degraded + unconfigured.iter().filter(|t| SEED_TIERS.contains(t)).count();
    let (status, overall) = if critical_issues > 0 {
        (Verdict::Critical, "critical")
    } else if degraded > 0 {
        (Verdict::Warning, "degraded")
    } else {
        (Verdict::Ok, "healthy")
    };
    let since = match previous {
        Some(p) if p.overall_health == overall => p.since,
        _ => now,
    };
    let mut ordered: Vec<&TargetReport> = targets.iter().collect();
    ordered.sort_by_key(|t| std::cmp::Reverse(t.status.severity()));
    let recommendations = ordered.iter().flat_map(|t| t.recommendations.iter().cloned()).collect();
    HealthReport {
        timestamp: now,
        overall_health: overall.to_owned(),
        since,
        status,
        critical_issues,
        warnings,
        systems,
        targets,
        recommendations,
        duration_ms: round3(duration.as_secs_f64() * 1000.0),
        not_checked: Vec::new(),
    }
}

/// Formats a number for performance data: no exponent, at most three decimals.
fn perf_number(x: f64) -> String {
    let s = format!("{:.3}", round3(x));
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_owned() }
}

impl Perf {
    /// Sets the warning and critical thresholds from `level`.
    pub fn levels(mut self, level: Level) -> Self {
        (self.warn, self.crit) = (Some(level.warn), Some(level.crit));
        self
    }

    /// Sets the range of possible values.
    pub fn range(mut self, min: f64, max: Option<f64>) -> Self {
        (self.min, self.max) = (Some(min), max);
        self
    }

    /// A warning when the value falls under `warn` (`warn:` in the plugin syntax).
    pub fn floor(mut self, warn: f64) -> Self {
        (self.warn, self.floor) = (Some(warn), true);
        self
    }

    /// A percentage judged against `level`: thresholds from it, range 0..100.
    pub fn percent(self, level: Level) -> Self {
        self.levels(level).range(0.0, Some(100.0))
    }

    /// `'label'=value[UOM];[warn];[crit];[min];[max]`, trailing empty fields dropped.
    pub fn render(&self) -> String {
        let opt = |x: Option<f64>| x.map(perf_number).unwrap_or_default();
        let threshold = |x: Option<f64>| match x {
            Some(x) if self.floor => format!("{}:", perf_number(x)),
            _ => opt(x),
        };
        let mut s = format!(
            "'{}'={}{};{};{};{};{}",
            self.label,
            perf_number(self.value),
            self.uom,
            threshold(self.warn),
            threshold(self.crit),
            opt(self.min),
            opt(self.max)
        );
        while s.ends_with(';') {
            s.pop();
        }
        s
    }
}

impl HealthReport {
    /// The one-line monitoring-plugin output: `CACHE STATUS - text | perfdata`.
    pub fn nagios_line(&self) -> String {
        let problems: Vec<String> = self
            .targets
            .iter()
            .filter(|t| t.status.severity() > 0)
            .map(|t| {
                let why = t
                    .checks
                    .iter()
                    .filter(|c| c.status == t.status)
                    .map(|c| format!("{} {}", c.name, c.summary))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("{} {}: {}", t.id(), t.status.as_str(), why)
            })
            .collect();
        let mut text = if problems.is_empty() { String::new() } else { problems.join("; ") + "; " };
        text.push_str(&self.counts());
        // The text part may not contain `|`, which starts the performance data.
        let text = text.replace('|', "/").replace('\n', " ");
        let perf: Vec<String> = self
            .targets
            .iter()
            .flat_map(|t| t.checks.iter())
            .filter_map(|c| c.perf.as_ref())
            .map(Perf::render)
            .collect();
        if perf.is_empty() {
            format!("CACHE {} - {text}", self.status.as_str())
        } else {
            format!("CACHE {} - {text} | {}", self.status.as_str(), perf.join(" "))
        }
    }

    /// `3 healthy, 1 degraded, 2 not configured`.
    pub fn counts(&self) -> String {
        let count = |s: Status| self.targets.iter().filter(|t| t.status == s).count();
        let unconfigured = self.systems.values().filter(|s| **s == Status::NotConfigured).count();
        let parts = [
            (count(Status::Healthy), "healthy"),
            (count(Status::Degraded), "degraded"),
            (count(Status::Failed), "failed"),
            (count(Status::NotAvailable), "not available"),
            (unconfigured, "not configured"),
        ];
        let mut text: Vec<String> =
            parts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        if !self.not_checked.is_empty() {
            text.push(format!("{} not checked (--tier)", self.not_checked.len()));
        }
        if text.is_empty() { "nothing checked".into() } else { text.join(", ") }
    }
}

#[cfg(test)]
mod tests;
