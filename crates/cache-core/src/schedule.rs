//! The documented schedule (seed 000's "Cron-Based Automation") as one table, and the changes
//! made to it, kept in the scheduler's state (`scheduler/schedule.json`).
//!
//! Every tool that shows or changes a job's schedule goes through here, and the scheduler
//! renders the same table, so the two never drift apart. Expressions are standard five-field
//! cron (minute hour day-of-month month day-of-week), read by croner, in
//! `scheduler.timezone` (UTC by default).
//!
//! A job's schedule is, in order of precedence: a change made at run time (`scheduler/schedule.json`,
//! by `cache-backup schedule` or `cache-scheduler optimize`), the configuration
//! (`[scheduler.jobs.NAME]`), then this table.

use std::collections::BTreeMap;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use crate::config::{Requirement, SchedulerSettings};
use crate::error::UsageError;
use crate::state::StateDir;

/// One scheduled job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct JobSpec {
    /// Its name (also its lock's name where the tool uses it).
    pub name: &'static str,
    /// The default cron expression.
    pub schedule: &'static str,
    /// The command it runs.
    pub command: &'static str,
    /// Its kind of task, for maintenance windows.
    pub task: &'static str,
    /// Whether it is heavy (runs only inside maintenance windows).
    pub heavy: bool,
    /// What it is, in seed 000's words.
    pub description: &'static str,
    /// A job that must have succeeded within so many hours before this one runs (seed 003).
    pub requires: Option<(&'static str, u64)>,
    /// The lock its tool takes (shared by jobs of the same tool, so they never overlap).
    pub lock: &'static str,
}

/// Seed 000's jobs.
pub const DEFAULT_JOBS: &[JobSpec] = &[
    JobSpec {
        name: "analytics-collect",
        schedule: "*/15 * * * *",
        command: "cache-analytics collect -q",
        task: "analytics",
        heavy: false,
        description: "Analytics collection every 15 minutes",
        lock: "analytics-collect",
        requires: None,
    },
    JobSpec {
        name: "health-check",
        schedule: "*/30 * * * *",
        command: "cache-health check -q",
        task: "health",
        heavy: false,
        description: "Health checks every 30 minutes",
        lock: "health-check",
        requires: None,
    },
    JobSpec {
        name: "cleanup-light",
        schedule: "0 */2 * * *",
        command: "cache-cleanup light --yes -q",
        task: "cleanup",
        heavy: false,
        description: "Light cleanup every 2 hours",
        lock: "cleanup",
        requires: None,
    },
    JobSpec {
        name: "backup",
        schedule: "0 1 * * *",
        command: "cache-backup create -q",
        task: "backup",
        heavy: true,
        description: "Backup operations at 1 AM",
        lock: "backup",
        requires: None,
    },
    JobSpec {
        name: "cleanup-deep",
        schedule: "0 2 * * *",
        command: "cache-cleanup smart --yes -q",
        task: "cleanup",
        heavy: true,
        description: "Deep cleanup at 2 AM",
        lock: "cleanup",
        requires: Some(("backup", 12)),
    },
    JobSpec {
        name: "memory-maintenance",
        schedule: "0 3 * * *",
        command: "cache-cleanup memory --yes -q",
        task: "memory",
        heavy: true,
        description: "Memory-tier maintenance at 3 AM",
        lock: "cleanup",
        requires: None,
    },
    JobSpec {
        name: "optimize",
        // Not on Sundays, when optimize-weekly runs at the same time under the same lock.
        schedule: "0 4 * * 1-6",
        command: "cache-optimizer run --yes -q",
        task: "optimization",
        heavy: true,
        description: "Performance optimization at 4 AM",
        lock: "optimize",
        requires: None,
    },
    JobSpec {
        name: "optimize-weekly",
        schedule: "0 4 * * 0",
        command: "cache-optimizer run --yes -q",
        task: "optimization",
        heavy: true,
        description: "Full system optimization on Sundays at 4 AM",
        lock: "optimize",
        requires: None,
    },
    JobSpec {
        name: "reports-weekly",
        schedule: "0 5 * * 0",
        command: "cache-analytics generate --period week -q",
        task: "reports",
        heavy: false,
        description: "Weekly reports generation",
        lock: "reports-weekly",
        requires: None,
    },
    JobSpec {
        name: "archival-monthly",
        schedule: "0 6 1 * *",
        command: "cache-analytics generate --period month -q",
        task: "archival",
        heavy: true,
        description: "Monthly archival and deep analysis",
        lock: "archival-monthly",
        requires: None,
    },
];

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

/// A job as it runs now: the table and its changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effective {
    /// The job.
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

/// The job named `name`.
pub fn job(name: &str) -> anyhow::Result<&'static JobSpec> {
    DEFAULT_JOBS.iter().find(|j| j.name == name).with_context(|| {
        let names: Vec<&str> = DEFAULT_JOBS.iter().map(|j| j.name).collect();
        format!("no job `{name}`; the jobs are: {}", names.join(", "))
    })
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

/// The next `n` runs of `expression` after `from`, read in time zone `tz` (IANA name).
pub fn next_runs_in(expression: &str, from: DateTime<Utc>, n: usize, tz: &str) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let cron = parse(expression)?;
    let tz: chrono_tz::Tz = tz.parse().map_err(|_| UsageError(format!("`{tz}` is not an IANA time zone")))?;
    Ok(cron.iter_after(from.with_timezone(&tz)).take(n).map(|t| t.with_timezone(&Utc)).collect())
}

/// Job `name` as it runs now.
pub fn effective(settings: &SchedulerSettings, state: &StateDir, name: &str) -> anyhow::Result<Effective> {
    let changed = state.read_json::<Overrides>(STATE_FILE)?.unwrap_or_default().jobs.remove(name);
    resolve(settings, name, changed)
}

/// Every job as the table and the configuration make it, without run-time changes (what
/// `cargo xtask codegen` renders to `contrib/crontab-cache`).
pub fn configured(settings: &SchedulerSettings) -> anyhow::Result<Vec<Effective>> {
    DEFAULT_JOBS.iter().map(|j| resolve(settings, j.name, None)).collect()
}

fn resolve(settings: &SchedulerSettings, name: &str, changed: Option<Override>) -> anyhow::Result<Effective> {
    let spec = *job(name)?;
    let configured = settings.jobs.get(name);
    let schedule = changed
        .as_ref()
        .and_then(|c| c.schedule.clone())
        .or_else(|| configured.and_then(|c| c.schedule.clone()))
        .unwrap_or_else(|| spec.schedule.to_owned());
    let enabled =
        changed.as_ref().and_then(|c| c.enabled).or_else(|| configured.and_then(|c| c.enabled)).unwrap_or(true);
    let requires = configured.and_then(|c| c.requires.clone()).or_else(|| {
        spec.requires.map(|(job, hours)| Requirement {
            job: job.to_owned(),
            within: std::time::Duration::from_secs(hours * 3600),
        })
    });
    Ok(Effective { spec, schedule, enabled, changed, requires })
}

/// Every job as it runs now, in table order.
pub fn all(settings: &SchedulerSettings, state: &StateDir) -> anyhow::Result<Vec<Effective>> {
    DEFAULT_JOBS.iter().map(|j| effective(settings, state, j.name)).collect()
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
    job(name)?;
    if let Some(expression) = schedule {
        parse(expression)?;
    }
    let mut overrides = state.read_json::<Overrides>(STATE_FILE)?.unwrap_or_default();
    let entry = overrides.jobs.entry(name.to_owned()).or_insert_with(|| Override {
        changed_at: Utc::now(),
        changed_by: by.to_owned(),
        ..Override::default()
    });
    if let Some(expression) = schedule {
        entry.schedule = Some(expression.to_owned());
    }
    if enabled.is_some() {
        entry.enabled = enabled;
    }
    entry.changed_at = Utc::now();
    entry.changed_by = by.to_owned();
    state.write_json(STATE_FILE, &overrides)?;
    effective(settings, state, name)
}

/// Drops every run-time change to job `name`.
pub fn reset(settings: &SchedulerSettings, state: &StateDir, name: &str) -> anyhow::Result<Effective> {
    job(name)?;
    let mut overrides = state.read_json::<Overrides>(STATE_FILE)?.unwrap_or_default();
    overrides.jobs.remove(name);
    state.write_json(STATE_FILE, &overrides)?;
    effective(settings, state, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_schedule_parses_and_names_are_unique() {
        let mut names: Vec<&str> = DEFAULT_JOBS.iter().map(|j| j.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEFAULT_JOBS.len());
        for job in DEFAULT_JOBS {
            parse(job.schedule).unwrap_or_else(|e| panic!("{}: {e}", job.name));
        }
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

    #[test]
    fn changes_are_kept_in_state_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let mut settings = SchedulerSettings::default();
        let s = &settings;
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
        settings.jobs.insert(
            "backup".into(),
            crate::config::JobSettings { schedule: Some("15 1 * * *".into()), enabled: Some(false), requires: None },
        );
        let configured = effective(&settings, &state, "backup").unwrap();
        assert_eq!((configured.schedule.as_str(), configured.enabled), ("15 1 * * *", false));
        change(&settings, &state, "backup", Some("45 1 * * *"), Some(true), "test").unwrap();
        let changed = effective(&settings, &state, "backup").unwrap();
        assert_eq!((changed.schedule.as_str(), changed.enabled), ("45 1 * * *", true));
        let deep = effective(&settings, &state, "cleanup-deep").unwrap();
        assert_eq!(deep.requires.unwrap().job, "backup");
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

/// Records that the schedule was installed `how` (an uninstall removes the record).
pub fn record_installed(state: &StateDir, how: Installed) -> anyhow::Result<()> {
    state.write_json(INSTALLED_FILE, &Installation { how, at: crate::clock::now()? })
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
