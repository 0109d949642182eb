//! `[scheduler]`: changes to the schedule, how it is rendered, and the gates of a scheduled run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The schedule: changes to the documented jobs, where the tools are, and the gates a scheduled
/// run passes (automation on, maintenance windows, dependencies, the fleet lock).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Time zone of the cron expressions (IANA name).
    pub timezone: String,
    /// Changes per job, by name.
    pub jobs: BTreeMap<String, JobSettings>,
    /// The user field of `/etc/cron.d/cache-toolkit`.
    pub user: String,
    /// `MAILTO` of the rendered crontab (empty: cron's default).
    pub mailto: String,
    /// `PATH` of the rendered crontab.
    pub path: String,
    /// Where the tools are installed (default: beside cache-scheduler).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// A job is overdue this long after a run it missed.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Consecutive failures that flag a job in `status`.
    pub max_failures: u32,
    /// A Redis target holding the fleet lock: heavy jobs then run once per tick across hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_lock: Option<String>,
    /// The fleet lock's lease, renewed every third of it while the job runs.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// `optimize` keeps a repeating job's interval at least this share of the table's...
    pub min_factor: f64,
    /// ...and at most this multiple of it.
    pub max_factor: f64,
    /// The longest any job may run: past it the run is stopped at its next await and recorded
    /// `interrupted` (exit 124), so that nothing hangs unattended for ever. Per job: `deadline`.
    #[serde(with = "humantime_serde")]
    pub job_deadline: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            jobs: BTreeMap::new(),
            user: "root".into(),
            mailto: String::new(),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            bin_dir: None,
            grace: Duration::from_secs(15 * 60),
            max_failures: 3,
            fleet_lock: None,
            lease: Duration::from_secs(60),
            min_factor: 0.25,
            max_factor: 4.0,
            job_deadline: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// Changes to one job of the schedule, or (under a name not in the table) a job of its own,
/// which then needs `command` and `schedule`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// The command: one of the toolkit's tools with its arguments, e.g.
    /// `cache-debug security --format json` (the scheduler adds `--scheduled`, `--config` and
    /// `--state-dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Another cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Its task type, which maintenance windows allow or not (default for a new job: `custom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Heavy: runs only inside a maintenance window allowing its task (default for a new job:
    /// no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heavy: Option<bool>,
    /// The lock it runs under (default for a new job: its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// What it is, for status and the rendered schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Off (or on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Another job that must have succeeded recently (replaces the default dependency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Requirement>,
    /// A dead-man's switch pinged by each `--scheduled` run of the job (healthchecks.io
    /// style: `/start`, then the bare URL, `/fail` or `/<exit code>`; `cache_core::heartbeat`).
    /// A secret: its path is the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_url: Option<crate::redact::Secret>,
    /// This job's deadline, instead of `scheduler.job_deadline`.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Duration>,
}

/// "Run only after `job` succeeded within `within`" (seed 003 dependencies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// The job.
    pub job: String,
    /// How recently.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}
