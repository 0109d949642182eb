//! The schedule: the catalogue of jobs (seed 000's documented schedule and seeds 002 and 004's
//! routine jobs, as one table, plus the jobs the configuration adds), the changes made to it
//! at run time (`scheduler/schedule.json`), and the one-off runs waiting for their time
//! ([`oneoff`]).
//!
//! Every tool that shows or changes a job's schedule goes through here, and the scheduler
//! renders the same catalogue, so the two never drift apart. Expressions are standard five-field
//! cron (minute hour day-of-month month day-of-week), read by croner, in
//! `scheduler.timezone` (UTC by default).
//!
//! A job's schedule is, in order of precedence: a change made at run time (`scheduler/schedule.json`,
//! by `cache-backup schedule` or `cache-scheduler optimize`), the configuration
//! (`[scheduler.jobs.NAME]`), then this table. `[scheduler.jobs.NAME]` with a name not in the
//! table adds a job: its `command` (one of the toolkit's tools with its arguments) and
//! `schedule` are then required.

pub mod oneoff;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use crate::config::{JobSettings, Requirement, SchedulerSettings};
use crate::error::UsageError;
use crate::state::StateDir;

/// One scheduled job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobSpec {
    /// Its name (also its lock's name where the tool uses it).
    pub name: Cow<'static, str>,
    /// The default cron expression.
    pub schedule: Cow<'static, str>,
    /// The command it runs: one of the toolkit's tools and its arguments (see [`words`]).
    pub command: Cow<'static, str>,
    /// Its kind of task, for maintenance windows.
    pub task: Cow<'static, str>,
    /// Whether it is heavy (runs only inside maintenance windows).
    pub heavy: bool,
    /// What it is, in the seeds' words.
    pub description: Cow<'static, str>,
    /// A job that must have succeeded within so many hours before this one runs (seed 003).
    pub requires: Option<(&'static str, u64)>,
    /// The lock its tool takes (shared by jobs of the same tool, so they never overlap).
    pub lock: Cow<'static, str>,
}

impl JobSpec {
    /// The tool the job runs (`cache-backup`).
    pub fn tool(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or_default()
    }

    /// The command's words, quotes removed (the table's and validated configured commands
    /// always split).
    pub fn words(&self) -> Vec<String> {
        words(&self.command).unwrap_or_else(|_| self.command.split_whitespace().map(str::to_owned).collect())
    }
}

/// The toolkit's tools: the only programs a job may run.
pub fn tools() -> impl Iterator<Item = &'static str> {
    crate::exit::TOOLS.iter().map(|t| t.tool)
}

#[expect(clippy::too_many_arguments, reason = "one row of the table, in its columns' order")]
const fn builtin(
    name: &'static str,
    schedule: &'static str,
    command: &'static str,
    task: &'static str,
    heavy: bool,
    description: &'static str,
    lock: &'static str,
    requires: Option<(&'static str, u64)>,
) -> JobSpec {
    JobSpec {
        name: Cow::Borrowed(name),
        schedule: Cow::Borrowed(schedule),
        command: Cow::Borrowed(command),
        task: Cow::Borrowed(task),
        heavy,
        description: Cow::Borrowed(description),
        requires,
        lock: Cow::Borrowed(lock),
    }
}

/// The table: seed 000's documented jobs, then seeds 002 and 004's routine ones (the daily
/// report, backup verification and pruning, the security audit, cache warming).
pub const DEFAULT_JOBS: &[JobSpec] = &[
    builtin(
        "analytics-collect",
        "*/15 * * * *",
        "cache-analytics collect -q",
        "analytics",
        false,
        "Analytics collection every 15 minutes",
        "analytics-collect",
        None,
    ),
    builtin(
        "health-check",
        "*/30 * * * *",
        "cache-health check -q",
        "health",
        false,
        "Health checks every 30 minutes",
        "health-check",
        None,
    ),
    builtin(
        "cleanup-light",
        "0 */2 * * *",
        "cache-cleanup light --yes -q",
        "cleanup",
        false,
        "Light cleanup every 2 hours",
        "cleanup",
        None,
    ),
    builtin(
        "backup",
        "0 1 * * *",
        "cache-backup create -q",
        "backup",
        true,
        "Backup operations at 1 AM",
        "backup",
        None,
    ),
    // Seed 004's backup verification, after each backup (under the backup lock, so never
    // during one: a backup still running at 1:30 is waited for, not a lock error). `create`
    // also verifies the backup it took before applying retention.
    builtin(
        "backup-verify",
        "30 1 * * *",
        "cache-backup verify --wait -q",
        "backup",
        true,
        "Verification of the night's backup at 1:30 AM",
        "backup",
        Some(("backup", 12)),
    ),
    builtin(
        "cleanup-deep",
        "0 2 * * *",
        "cache-cleanup smart --yes -q",
        "cleanup",
        true,
        "Deep cleanup at 2 AM",
        "cleanup",
        Some(("backup", 12)),
    ),
    builtin(
        "memory-maintenance",
        "0 3 * * *",
        "cache-cleanup memory --yes -q",
        "memory",
        true,
        "Memory-tier maintenance at 3 AM",
        "cleanup",
        None,
    ),
    // Not on Sundays, when optimize-weekly runs at the same time under the same lock.
    builtin(
        "optimize",
        "0 4 * * 1-6",
        "cache-optimizer run --yes -q",
        "optimization",
        true,
        "Performance optimization at 4 AM",
        "optimize",
        None,
    ),
    builtin(
        "optimize-weekly",
        "0 4 * * 0",
        "cache-optimizer run --yes -q",
        "optimization",
        true,
        "Full system optimization on Sundays at 4 AM",
        "optimize",
        None,
    ),
    builtin(
        "reports-weekly",
        "0 5 * * 0",
        "cache-analytics generate --period week -q",
        "reports",
        false,
        "Weekly reports generation",
        "reports-weekly",
        None,
    ),
    // Seed 002's weekly retention: the backups no rule keeps go (never the newest verified).
    builtin(
        "backup-prune",
        "30 5 * * 0",
        "cache-backup prune --yes -q",
        "backup",
        false,
        "Weekly removal of the backups no retention rule keeps",
        "backup",
        None,
    ),
    builtin(
        "archival-monthly",
        "0 6 1 * *",
        "cache-analytics generate --period month -q",
        "archival",
        true,
        "Monthly archival and deep analysis",
        "archival-monthly",
        None,
    ),
    // Issue 18's disaster-recovery drill: the newest backup restored into scratch servers and
    // compared with the figures it recorded, monthly (the `backup.drill_max_age` alert fires
    // when no drill has passed for longer).
    builtin(
        "backup-drill",
        "15 7 1 * *",
        "cache-backup drill -q",
        "backup",
        true,
        "Monthly disaster-recovery drill: the newest backup restored into scratch servers and checked",
        "backup",
        None,
    ),
    // Seed 002's predictive warming, before the busy hours analytics found: ten minutes before
    // every hour, and `warm` itself warms only when the usage profile marks the next hour busy.
    builtin(
        "cache-warm",
        "50 * * * *",
        "cache-optimizer warm --yes -q",
        "warm",
        false,
        "Cache warming before the busy hours",
        "optimize-warm",
        None,
    ),
    // Seeds 002 and 004's security audit, weekly.
    builtin(
        "security-audit",
        "0 6 * * 1",
        "cache-debug security -q",
        "security",
        false,
        "Weekly security audit on Mondays",
        "security-audit",
        None,
    ),
    // Seed 004's daily report, of the day about to end (`generate` reports on today).
    builtin(
        "reports-daily",
        "55 23 * * *",
        "cache-analytics generate --period day -q",
        "reports",
        false,
        "Daily metrics report at 23:55",
        "reports-daily",
        None,
    ),
];

/// The task type of configured jobs that name none.
pub const CUSTOM_TASK: &str = "custom";

const STATE_FILE: &str = "scheduler/schedule.json";

/// A change to one job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Another cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Turned off (or explicitly on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// When and by what it was changed.
    pub changed_at: DateTime<Utc>,
    /// Who changed it (tool and subcommand).
    pub changed_by: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Overrides {
    jobs: BTreeMap<String, Override>,
}

/// A job as it runs now: the catalogue and its changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effective {
    /// The job, with what the configuration changed in it.
    pub spec: JobSpec,
    /// Its cron expression.
    pub schedule: String,
    /// Whether it runs.
    pub enabled: bool,
    /// The run-time change in force, if any.
    pub changed: Option<Override>,
    /// The job that must have succeeded recently, and how recently.
    pub requires: Option<Requirement>,
}

/// The job of the table named `name`.
pub fn job(name: &str) -> anyhow::Result<&'static JobSpec> {
    DEFAULT_JOBS.iter().find(|j| j.name == name).with_context(|| {
        let names: Vec<&str> = DEFAULT_JOBS.iter().map(|j| j.name.as_ref()).collect();
        format!("no job `{name}`; the jobs are: {}", names.join(", "))
    })
}

/// The name of every job of the catalogue: the table's in order, then those the configuration
/// adds, by name.
pub fn names(settings: &SchedulerSettings) -> Vec<String> {
    let mut out: Vec<String> = DEFAULT_JOBS.iter().map(|j| j.name.to_string()).collect();
    out.extend(settings.jobs.keys().filter(|n| !DEFAULT_JOBS.iter().any(|j| j.name == n.as_str())).cloned());
    out
}

/// Every job of the catalogue, with the configuration's changes to it.
pub fn catalogue(settings: &SchedulerSettings) -> anyhow::Result<Vec<JobSpec>> {
    names(settings).iter().map(|n| spec(settings, n)).collect()
}

/// The task types of the catalogue (what a window's `--task` may name), sorted.
pub fn task_types(settings: &SchedulerSettings) -> Vec<String> {
    let tasks: BTreeSet<String> = catalogue(settings).unwrap_or_default().into_iter().map(|j| j.task.into()).collect();
    tasks.into_iter().collect()
}

fn unknown(settings: &SchedulerSettings, name: &str) -> UsageError {
    UsageError(format!("no job `{name}`; the jobs are: {}", names(settings).join(", ")))
}

/// Job `name` of the catalogue, as the configuration makes it.
pub fn spec(settings: &SchedulerSettings, name: &str) -> anyhow::Result<JobSpec> {
    let configured = settings.jobs.get(name);
    let mut spec = match (DEFAULT_JOBS.iter().find(|j| j.name == name), configured) {
        (Some(j), _) => j.clone(),
        (None, Some(c)) => JobSpec {
            name: Cow::Owned(name.to_owned()),
            schedule: Cow::Owned(c.schedule.clone().unwrap_or_default()),
            command: Cow::Owned(c.command.clone().unwrap_or_default()),
            task: Cow::Borrowed(CUSTOM_TASK),
            heavy: false,
            description: Cow::Owned(format!("{name} (configured)")),
            requires: None,
            lock: Cow::Owned(name.to_owned()),
        },
        (None, None) => return Err(unknown(settings, name).into()),
    };
    if let Some(c) = configured {
        let set = |field: &Option<String>, into: &mut Cow<'static, str>| {
            if let Some(v) = field {
                *into = Cow::Owned(v.clone());
            }
        };
        set(&c.command, &mut spec.command);
        set(&c.task, &mut spec.task);
        set(&c.description, &mut spec.description);
        set(&c.lock, &mut spec.lock);
        if let Some(heavy) = c.heavy {
            spec.heavy = heavy;
        }
    }
    Ok(spec)
}

/// Parses a five-field cron expression; a bad one is a usage error naming it.
pub fn parse(expression: &str) -> anyhow::Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| UsageError(format!("`{expression}` is not a five-field cron expression: {e}")).into())
}

/// The next `n` runs of `expression` after `from`.
pub fn next_runs(expression: &str, from: DateTime<Utc>, n: usize) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let cron = parse(expression)?;
    Ok(cron.iter_after(from).take(n).collect())
}

/// Time zone `tz` (IANA name); a bad one is a usage error naming it.
pub fn timezone(tz: &str) -> anyhow::Result<chrono_tz::Tz> {
    tz.parse().map_err(|_| UsageError(format!("`{tz}` is not an IANA time zone")).into())
}

/// The next `n` runs of `expression` after `from`, read in time zone `tz` (IANA name).
pub fn next_runs_in(expression: &str, from: DateTime<Utc>, n: usize, tz: &str) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let cron = parse(expression)?;
    let tz = timezone(tz)?;
    Ok(cron.iter_after(from.with_timezone(&tz)).take(n).map(|t| t.with_timezone(&Utc)).collect())
}

/// Job `name` as it runs now.
pub fn effective(settings: &SchedulerSettings, state: &StateDir, name: &str) -> anyhow::Result<Effective> {
    let changed = state.read_json::<Overrides>(STATE_FILE)?.unwrap_or_default().jobs.remove(name);
    resolve(settings, name, changed)
}

/// Every job as the catalogue and the configuration make it, without run-time changes (what
/// `cargo xtask codegen` renders to `contrib/crontab-cache`).
pub fn configured(settings: &SchedulerSettings) -> anyhow::Result<Vec<Effective>> {
    names(settings).iter().map(|n| resolve(settings, n, None)).collect()
}

fn resolve(settings: &SchedulerSettings, name: &str, changed: Option<Override>) -> anyhow::Result<Effective> {
    let spec = spec(settings, name)?;
    let configured = settings.jobs.get(name);
    let schedule = changed
        .as_ref()
        .and_then(|c| c.schedule.clone())
        .or_else(|| configured.and_then(|c| c.schedule.clone()))
        .unwrap_or_else(|| spec.schedule.to_string());
    let enabled =
        changed.as_ref().and_then(|c| c.enabled).or_else(|| configured.and_then(|c| c.enabled)).unwrap_or(true);
    let requires = requirement(&spec, configured);
    Ok(Effective { spec, schedule, enabled, changed, requires })
}

fn requirement(spec: &JobSpec, configured: Option<&JobSettings>) -> Option<Requirement> {
    configured.and_then(|c| c.requires.clone()).or_else(|| {
        spec.requires.map(|(job, hours)| Requirement {
            job: job.to_owned(),
            within: std::time::Duration::from_secs(hours * 3600),
        })
    })
}

/// Every job as it runs now, in catalogue order.
pub fn all(settings: &SchedulerSettings, state: &StateDir) -> anyhow::Result<Vec<Effective>> {
    let mut overrides = state.read_json::<Overrides>(STATE_FILE)?.unwrap_or_default();
    names(settings).iter().map(|n| resolve(settings, n, overrides.jobs.remove(n))).collect()
}

/// Changes job `name`: a new expression (validated) and/or on/off; `None` keeps what is there.
pub fn change(
    settings: &SchedulerSettings,
    state: &StateDir,
    name: &str,
    schedule: Option<&str>,
    enabled: Option<bool>,
    by: &str,
) -> anyhow::Result<Effective> {
    spec(settings, name)?;
    if let Some(expression) = schedule {
        parse(expression)?;
    }
    let now = crate::clock::now()?;
    let mut overrides = state.read_json::<Overrides>(STATE_FILE)?.unwrap_or_default();
    let entry = overrides.jobs.entry(name.to_owned()).or_insert_with(|| Override {
        changed_at: now,
        changed_by: by.to_owned(),
        ..Override::default()
    });
    if let Some(expression) = schedule {
        entry.schedule = Some(expression.to_owned());
    }
    if enabled.is_some() {
        entry.enabled = enabled;
    }
    entry.changed_at = now;
    entry.changed_by = by.to_owned();
    state.write_json(STATE_FILE, &overrides)?;
    effective(settings, state, name)
}

/// Drops every run-time change to job `name`.
pub fn reset(settings: &SchedulerSettings, state: &StateDir, name: &str) -> anyhow::Result<Effective> {
    spec(settings, name)?;
    let mut overrides = state.read_json::<Overrides>(STATE_FILE)?.unwrap_or_default();
    overrides.jobs.remove(name);
    state.write_json(STATE_FILE, &overrides)?;
    effective(settings, state, name)
}

/// Options the scheduler adds to every job's command line, which a command must not carry.
const ADDED_OPTIONS: &[&str] = &["--scheduled", "--config", "--state-dir", "--trigger", "--emergency"];

/// Splits a job's command into words as a shell would, with single and double quotes, and
/// refuses what would make it more than one program with arguments (`;`, `|`, `&`, `$`,
/// backquotes, redirections, backslashes, parentheses) outside quotes.
pub fn words(command: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let mut quoted = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(q) if c == '"' && matches!(q, '$' | '`' | '\\') => {
                            return Err(format!("`{q}` inside double quotes: use single quotes"));
                        }
                        Some(q) => quoted.push(q),
                        None => return Err(format!("unclosed {c}")),
                    }
                }
                word.get_or_insert_with(String::new).push_str(&quoted);
            }
            c if c.is_whitespace() => out.extend(word.take()),
            ';' | '|' | '&' | '$' | '`' | '<' | '>' | '\\' | '(' | ')' | '#' => {
                return Err(format!(
                    "`{c}`: a job runs one of the toolkit's tools with arguments, not a shell command line"
                ));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    Ok(out)
}

/// Checks a job's command: one of the toolkit's tools (by name, no path) with arguments, none
/// of the options the scheduler adds.
pub fn check_command(command: &str) -> Result<Vec<String>, String> {
    let words = words(command)?;
    let Some(tool) = words.first() else { return Err("is empty".into()) };
    if !tools().any(|t| t == tool) {
        return Err(format!(
            "`{tool}` is not one of the toolkit's tools ({}); a job runs one of them, by name",
            tools().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(added) = words.iter().find(|w| ADDED_OPTIONS.iter().any(|o| w == o || w.starts_with(&format!("{o}="))))
    {
        return Err(format!("`{added}`: the scheduler adds it to every job's command line"));
    }
    if tool == "cache-scheduler"
        && words.iter().skip(1).find(|w| !w.starts_with('-')).is_some_and(|s| s == "run" || s == "tick")
    {
        return Err("a job cannot run the scheduler's `run` or `tick`".into());
    }
    Ok(words)
}

/// Whether `name` can name a job or a lock: lowercase letters, digits and inner `-`, at most
/// 38 characters (it becomes a file name, a systemd unit and, after `cache-toolkit-`, a
/// Kubernetes CronJob name, at most 52).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 38
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The dependency cycle through `start`, if following `requires` from it comes back to a job
/// already met: `["backup", "cleanup-deep", "backup"]`.
fn cycle(requires: &BTreeMap<String, String>, start: &str) -> Option<Vec<String>> {
    let mut path = vec![start.to_owned()];
    let mut at = start;
    while let Some(next) = requires.get(at) {
        if let Some(i) = path.iter().position(|p| p == next) {
            let mut cycle = path[i..].to_vec();
            cycle.push(next.clone());
            return Some(cycle);
        }
        path.push(next.clone());
        at = next;
    }
    None
}

/// Checks `[scheduler.jobs]`: each entry changes a job of the table or adds one (with a
/// `command` of the toolkit and a `schedule`); names, commands, expressions and locks are
/// valid; every dependency names a job and none goes round in a cycle. The error is the
/// dotted key and the message.
pub fn check_settings(settings: &SchedulerSettings) -> Result<(), (String, String)> {
    for (name, job) in &settings.jobs {
        let key = |field: &str| format!("scheduler.jobs.{name}.{field}");
        let builtin = DEFAULT_JOBS.iter().any(|j| j.name == name.as_str());
        if !valid_name(name) {
            return Err((
                format!("scheduler.jobs.{name}"),
                "a job's name is lowercase letters, digits and `-`, at most 38 characters".into(),
            ));
        }
        if name == "tick" {
            return Err((format!("scheduler.jobs.{name}"), "`tick` is the scheduler's own every-minute run".into()));
        }
        if !builtin && (job.command.is_none() || job.schedule.is_none()) {
            let table: Vec<&str> = DEFAULT_JOBS.iter().map(|j| j.name.as_ref()).collect();
            return Err((
                key(if job.command.is_none() { "command" } else { "schedule" }),
                format!(
                    "`{name}` is not in the table ({}), so it adds a job: it needs `command` (one of the toolkit's \
                     tools with its arguments) and `schedule`",
                    table.join(", ")
                ),
            ));
        }
        if let Some(command) = &job.command {
            check_command(command).map_err(|e| (key("command"), e))?;
        }
        if let Some(expr) = &job.schedule {
            parse(expr).map_err(|e| (key("schedule"), e.to_string()))?;
        }
        if let Some(lock) = &job.lock
            && !valid_name(lock)
        {
            return Err((key("lock"), "a lock's name is lowercase letters, digits and `-`".into()));
        }
        if let Some(task) = &job.task
            && !valid_name(task)
        {
            return Err((key("task"), "a task type is lowercase letters, digits and `-`".into()));
        }
        if let Some(r) = &job.requires
            && !builtin_or_configured(settings, &r.job)
        {
            return Err((key("requires"), format!("no job `{}`; the jobs are: {}", r.job, names(settings).join(", "))));
        }
    }
    let requires = dependencies(settings);
    // Configured dependencies first (the likely culprits), then the table's.
    let starts = settings.jobs.keys().cloned().chain(names(settings));
    for start in starts {
        if let Some(cycle) = cycle(&requires, &start) {
            let what = if cycle.len() == 2 { "requires itself" } else { "is a dependency cycle" };
            return Err((format!("scheduler.jobs.{start}.requires"), format!("{} {what}", cycle.join(" -> "))));
        }
    }
    Ok(())
}

fn builtin_or_configured(settings: &SchedulerSettings, name: &str) -> bool {
    DEFAULT_JOBS.iter().any(|j| j.name == name) || settings.jobs.contains_key(name)
}

/// Each job's dependency, by name.
fn dependencies(settings: &SchedulerSettings) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in names(settings) {
        let builtin = DEFAULT_JOBS.iter().find(|j| j.name == name.as_str());
        let configured = settings.jobs.get(&name).and_then(|c| c.requires.as_ref()).map(|r| r.job.clone());
        if let Some(dep) = configured.or_else(|| builtin.and_then(|b| b.requires).map(|(j, _)| j.to_owned())) {
            out.insert(name, dep);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobSettings;

    #[test]
    fn every_default_schedule_parses_and_names_are_unique() {
        let mut names: Vec<&str> = DEFAULT_JOBS.iter().map(|j| j.name.as_ref()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEFAULT_JOBS.len());
        for job in DEFAULT_JOBS {
            parse(&job.schedule).unwrap_or_else(|e| panic!("{}: {e}", job.name));
            check_command(&job.command).unwrap_or_else(|e| panic!("{}: {e}", job.name));
            assert!(valid_name(&job.name) && valid_name(&job.lock) && valid_name(&job.task), "{}", job.name);
        }
        check_settings(&SchedulerSettings::default()).unwrap();
    }

    #[test]
    fn next_runs_and_bad_expressions() {
        let from = DateTime::parse_from_rfc3339("2026-11-22T00:30:00Z").unwrap().to_utc();
        let runs = next_runs("0 1 * * *", from, 2).unwrap();
        assert_eq!(runs[0].to_rfc3339(), "2026-11-22T01:00:00+00:00");
        assert_eq!(runs[1].to_rfc3339(), "2026-11-23T01:00:00+00:00");
        let sunday = next_runs("0 4 * * 0", from, 1).unwrap();
        assert_eq!(sunday[0].to_rfc3339(), "2026-11-22T04:00:00+00:00");
        for bad in ["", "0 1 * *", "0 0 1 * * *", "61 * * * *", "every day"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // 01:00 in Berlin is 00:00 UTC in winter.
        let berlin = next_runs_in("0 1 * * *", from, 1, "Europe/Berlin").unwrap();
        assert_eq!(berlin[0].to_rfc3339(), "2026-11-23T00:00:00+00:00");
    }

    fn settings(jobs: &[(&str, &str)]) -> SchedulerSettings {
        let mut settings = SchedulerSettings::default();
        for (name, toml) in jobs {
            settings.jobs.insert((*name).into(), toml::from_str::<JobSettings>(toml).unwrap());
        }
        settings
    }

    #[test]
    fn changes_are_kept_in_state_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let s = &SchedulerSettings::default();
        assert_eq!(effective(s, &state, "backup").unwrap().schedule, "0 1 * * *");
        let changed = change(s, &state, "backup", Some("30 2 * * *"), None, "test").unwrap();
        assert_eq!((changed.schedule.as_str(), changed.enabled), ("30 2 * * *", true));
        let off = change(s, &state, "backup", None, Some(false), "test").unwrap();
        assert_eq!((off.schedule.as_str(), off.enabled), ("30 2 * * *", false));
        assert!(change(s, &state, "backup", Some("nope"), None, "test").is_err());
        assert!(change(s, &state, "no-such-job", None, Some(true), "test").is_err());
        let back = reset(s, &state, "backup").unwrap();
        assert_eq!((back.schedule.as_str(), back.enabled, back.changed), ("0 1 * * *", true, None));
        // The configuration comes between the table and run-time changes.
        let settings = settings(&[("backup", "schedule = \"15 1 * * *\"\nenabled = false")]);
        let configured = effective(&settings, &state, "backup").unwrap();
        assert_eq!((configured.schedule.as_str(), configured.enabled), ("15 1 * * *", false));
        change(&settings, &state, "backup", Some("45 1 * * *"), Some(true), "test").unwrap();
        let changed = effective(&settings, &state, "backup").unwrap();
        assert_eq!((changed.schedule.as_str(), changed.enabled), ("45 1 * * *", true));
        let deep = effective(&settings, &state, "cleanup-deep").unwrap();
        assert_eq!(deep.requires.unwrap().job, "backup");
    }

    #[test]
    fn the_configuration_adds_jobs_and_changes_commands() {
        let settings = settings(&[
            (
                "audit-nightly",
                "command = \"cache-debug security --format json\"\nschedule = \"0 22 * * *\"\ntask = \"security\"",
            ),
            ("backup", "command = \"cache-backup create --level 9 -q\"\nheavy = false"),
        ]);
        check_settings(&settings).unwrap();
        let names = names(&settings);
        assert_eq!(names.last().map(String::as_str), Some("audit-nightly"));
        let custom = spec(&settings, "audit-nightly").unwrap();
        assert_eq!(
            (custom.tool(), custom.task.as_ref(), custom.lock.as_ref()),
            ("cache-debug", "security", "audit-nightly")
        );
        let backup = spec(&settings, "backup").unwrap();
        assert_eq!((backup.command.as_ref(), backup.heavy), ("cache-backup create --level 9 -q", false));
        assert!(task_types(&settings).contains(&"security".to_owned()));
        assert!(spec(&settings, "nothing").unwrap_err().to_string().contains("audit-nightly"));
    }

    #[test]
    fn bad_jobs_are_refused_naming_the_key() {
        let cases = [
            ("mine", "schedule = \"0 1 * * *\"", "scheduler.jobs.mine.command", "needs `command`"),
            ("mine", "command = \"cache-debug security\"", "scheduler.jobs.mine.schedule", "needs `command`"),
            (
                "mine",
                "command = \"rm -rf /\"\nschedule = \"0 1 * * *\"",
                "scheduler.jobs.mine.command",
                "not one of the toolkit's tools",
            ),
            (
                "mine",
                "command = \"/usr/bin/cache-debug security\"\nschedule = \"0 1 * * *\"",
                "scheduler.jobs.mine.command",
                "not one of",
            ),
            (
                "mine",
                "command = \"cache-debug security; rm x\"\nschedule = \"0 1 * * *\"",
                "scheduler.jobs.mine.command",
                "not a shell command line",
            ),
            (
                "mine",
                "command = \"cache-debug security --config /x\"\nschedule = \"0 1 * * *\"",
                "scheduler.jobs.mine.command",
                "adds it",
            ),
            (
                "Mine",
                "command = \"cache-debug security\"\nschedule = \"0 1 * * *\"",
                "scheduler.jobs.Mine",
                "lowercase",
            ),
            (
                "backup",
                "requires = { job = \"nope\", within = \"1h\" }",
                "scheduler.jobs.backup.requires",
                "no job `nope`",
            ),
            (
                "backup",
                "requires = { job = \"backup\", within = \"1h\" }",
                "scheduler.jobs.backup.requires",
                "backup -> backup requires itself",
            ),
            (
                "backup",
                "requires = { job = \"cleanup-deep\", within = \"1h\" }",
                "scheduler.jobs.backup.requires",
                "backup -> cleanup-deep -> backup is a dependency cycle",
            ),
        ];
        for (name, toml, key, message) in cases {
            let (k, m) = check_settings(&settings(&[(name, toml)])).unwrap_err();
            assert_eq!(k, key, "{toml}: {m}");
            assert!(m.contains(message), "{toml}: {m}");
        }
    }

    #[test]
    fn words_split_as_a_shell_would() {
        assert_eq!(words("cache-cleanup category 'temp *' -q").unwrap(), ["cache-cleanup", "category", "temp *", "-q"]);
        assert_eq!(words("a \"b c\"d").unwrap(), ["a", "b cd"]);
        assert!(words("a 'b").is_err());
        assert!(words("a \"$HOME\"").is_err());
        assert!(words("a > b").is_err());
    }
}

/// Where `cache-scheduler install` put the schedule, kept in the state so that the dashboard
/// and status can say whether it is really installed (and check it still is).
pub const INSTALLED_FILE: &str = "scheduler/installed.json";

/// The first line of the marked block in a user's crontab.
pub const CRONTAB_BEGIN: &str = "# BEGIN cache-toolkit";

/// How the schedule was installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Installed {
    /// The marked block in a user's crontab (`None`: the invoking user's).
    Crontab {
        /// `crontab -u USER`.
        user: Option<String>,
    },
    /// A file in `/etc/cron.d`.
    CronD {
        /// The file.
        path: std::path::PathBuf,
    },
    /// `cache-toolkit-*.timer` units in a directory.
    Systemd {
        /// The directory.
        dir: std::path::PathBuf,
    },
}

/// The installation record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    /// How.
    #[serde(flatten)]
    pub how: Installed,
    /// When.
    pub at: DateTime<Utc>,
    /// What `install --force` let through (heavy jobs no window admits), said again by
    /// `status`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Installed {
    /// Whether the installed schedule is still where it was put.
    pub fn present(&self) -> bool {
        match self {
            Self::CronD { path } => path.is_file(),
            Self::Systemd { dir } => std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("cache-toolkit-") && name.ends_with(".timer")
                })
            }),
            Self::Crontab { user } => {
                let mut cmd = std::process::Command::new("crontab");
                if let Some(u) = user {
                    cmd.args(["-u", u]);
                }
                cmd.arg("-l").stdin(std::process::Stdio::null()).stderr(std::process::Stdio::null());
                cmd.output()
                    .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with(CRONTAB_BEGIN)))
            }
        }
    }

    /// In words: `the crontab`, `/etc/cron.d/cache-toolkit`, `systemd timers in DIR`.
    pub fn describe(&self) -> String {
        match self {
            Self::Crontab { user: None } => "the crontab".to_owned(),
            Self::Crontab { user: Some(u) } => format!("the crontab of {u}"),
            Self::CronD { path } => path.display().to_string(),
            Self::Systemd { dir } => format!("systemd timers in {}", dir.display()),
        }
    }
}

/// Records that the schedule was installed `how`, with the `warnings` `--force` let through
/// (an uninstall removes the record).
pub fn record_installed(state: &StateDir, how: Installed, warnings: Vec<String>) -> anyhow::Result<()> {
    state.write_json(INSTALLED_FILE, &Installation { how, at: crate::clock::now()?, warnings })
}

/// The installation record, if the schedule was installed.
pub fn installation(state: &StateDir) -> anyhow::Result<Option<Installation>> {
    state.read_json(INSTALLED_FILE)
}

/// Whether the schedule is installed, in words for the dashboard and status: `installed in
/// the crontab`, `not installed`, or `not installed: /etc/cron.d/cache-toolkit is gone`.
pub fn installed_status(state: &StateDir) -> anyhow::Result<(bool, String)> {
    let Some(record) = state.read_json::<Installation>(INSTALLED_FILE)? else {
        return Ok((false, "not installed".to_owned()));
    };
    let place = record.how.describe();
    Ok(if record.how.present() {
        (true, format!("installed in {place}"))
    } else {
        (false, format!("not installed: the schedule put in {place} is gone"))
    })
}
