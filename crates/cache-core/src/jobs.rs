//! The status of each scheduled job, from its schedule and its run records: next run, last
//! run, who holds its lock, and flags: disabled, overdue (a run due more than
//! `scheduler.grace` ago never started), failing (`scheduler.max_failures` or more runs in a row
//! failed or only partly done), too fast (under a tenth of its median successful duration),
//! skipped (N in a row, not counting skips while automation was stopped), never admitted (a
//! heavy job no maintenance window can ever let run, [`crate::gate::never_admitted`]).
//! cache-scheduler shows them; cache-health's alert rules read them (`job/NAME` targets).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::SchedulerSettings;
use crate::lock::JobLock;
use crate::output::millis;
use crate::runs::{Outcome, RUNS_FILE, RunRecord};
use crate::schedule::{self, Effective};
use crate::state::StateDir;

/// One job's line.
#[derive(Debug, Serialize)]
pub struct JobStatus {
    /// The job.
    pub name: String,
    /// Its cron expression.
    pub schedule: String,
    /// Its command.
    pub command: String,
    /// Enabled.
    pub enabled: bool,
    /// Heavy (windows apply).
    pub heavy: bool,
    /// Next run.
    pub next_run: Option<DateTime<Utc>>,
    /// Last run (not counting lock-outs).
    pub last_run: Option<LastRun>,
    /// Who holds its lock now.
    pub lock_holder: Option<String>,
    /// What is wrong with it, if anything.
    pub flags: Vec<Flag>,
    /// Runs in a row, up to the last one, that failed or were only partly done.
    pub consecutive_failures: u32,
    /// Runs in a row, up to the last one, that a gate skipped (skips while automation was
    /// stopped neither count nor end the row).
    pub consecutive_skips: u32,
    /// A heavy job that no maintenance window can ever admit.
    pub never_admitted: bool,
}

/// Something worth flagging about a job. Shown (and serialized) as text, read by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flag {
    /// Turned off in the schedule.
    Disabled,
    /// A run due more than the grace ago never started.
    Overdue,
    /// This many runs in a row failed or were only partly done.
    Failing(usize),
    /// The last run was skipped by a gate; this many in a row (at least 1).
    Skipped(usize),
    /// A heavy job no maintenance window can ever admit: it would be skipped for ever.
    NeverAdmitted,
    /// The last successful run took under a tenth of the median of the earlier ones (ms).
    TooFast {
        /// The last run's duration.
        last_ms: u64,
        /// The median of the earlier successful runs.
        median_ms: u64,
    },
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flag::Disabled => f.write_str("disabled"),
            Flag::Overdue => f.write_str("overdue"),
            Flag::Failing(n) => write!(f, "failing ({n} in a row)"),
            Flag::Skipped(n) if *n > 1 => write!(f, "skipped ({n} in a row)"),
            Flag::Skipped(_) => f.write_str("skipped"),
            Flag::NeverAdmitted => f.write_str("never admitted by any window"),
            Flag::TooFast { last_ms, median_ms } => {
                write!(f, "too fast ({} against a median of {})", millis(*last_ms as f64), millis(*median_ms as f64))
            }
        }
    }
}

impl Serialize for Flag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JobStatus {
    /// Whether it is overdue.
    pub fn overdue(&self) -> bool {
        self.flags.contains(&Flag::Overdue)
    }

    /// Whether its last run was suspiciously fast.
    pub fn too_fast(&self) -> bool {
        self.flags.iter().any(|f| matches!(f, Flag::TooFast { .. }))
    }

    /// Whether its last run was skipped.
    pub fn skipped(&self) -> bool {
        self.flags.iter().any(|f| matches!(f, Flag::Skipped(_)))
    }
}

/// A job's last run.
#[derive(Clone, Debug, Serialize)]
pub struct LastRun {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub duration_ms: u64,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied().filter(|_| !v.is_empty())
}

/// The status of `job` given its runs (oldest first) at `now`.
pub fn job_status(
    job: &Effective,
    runs: &[&RunRecord],
    now: DateTime<Utc>,
    settings: &SchedulerSettings,
    holder: Option<String>,
) -> anyhow::Result<JobStatus> {
    let mut flags = Vec::new();
    let mut consecutive_failures = 0;
    let mut consecutive_skips = 0;
    if !job.enabled {
        flags.push(Flag::Disabled);
    }
    let next_run = if job.enabled {
        schedule::next_runs_in(&job.schedule, now, 1, &settings.timezone)?.first().copied()
    } else {
        None
    };
    let last = runs.iter().rev().find(|r| r.outcome.is_a_run());
    if let Some(last) = last {
        // A run scheduled after the last one started, and longer ago than the grace: missed.
        let grace = chrono::Duration::from_std(settings.grace).unwrap_or(chrono::Duration::zero());
        let missed = schedule::next_runs_in(&job.schedule, last.started_at, 1, &settings.timezone)?
            .first()
            .is_some_and(|due| *due + grace < now);
        if job.enabled && missed && holder.is_none() {
            flags.push(Flag::Overdue);
        }
        let failures =
            runs.iter().rev().filter(|r| r.outcome.is_a_run()).take_while(|r| r.outcome.is_failure()).count();
        consecutive_failures = failures as u32;
        if failures >= settings.max_failures as usize {
            flags.push(Flag::Failing(failures));
        }
        let stopped = |r: &RunRecord| {
            r.outcome == Outcome::Skipped
                && r.error.as_deref().is_some_and(|e| e.starts_with(crate::gate::AUTOMATION_STOPPED))
        };
        let skips = runs
            .iter()
            .rev()
            .filter(|r| r.outcome.is_a_run() && !stopped(r))
            .take_while(|r| r.outcome == Outcome::Skipped)
            .count();
        consecutive_skips = skips as u32;
        if last.outcome == Outcome::Skipped {
            flags.push(Flag::Skipped(skips.max(1)));
        }
        let earlier: Vec<u64> =
            runs.iter().filter(|r| r.outcome == Outcome::Success && r.id != last.id).map(|r| r.duration_ms).collect();
        if last.outcome == Outcome::Success
            && earlier.len() >= 3
            && let Some(m) = median(earlier)
            && last.duration_ms * 10 < m
        {
            flags.push(Flag::TooFast { last_ms: last.duration_ms, median_ms: m });
        }
    }
    Ok(JobStatus {
        name: job.spec.name.to_string(),
        schedule: job.schedule.clone(),
        command: job.spec.command.to_string(),
        enabled: job.enabled,
        heavy: job.spec.heavy,
        next_run,
        last_run: last.map(|r| LastRun {
            started_at: r.started_at,
            outcome: r.outcome,
            duration_ms: r.duration_ms,
            error: r.error.clone(),
        }),
        lock_holder: holder,
        flags,
        consecutive_failures,
        consecutive_skips,
        never_admitted: false,
    })
}

/// How much of the end of the run history status reads (days of runs, however long the
/// history has grown; across a rotation, the newest segment's end too).
pub const RECENT_RUNS_BYTES: u64 = 4 * 1024 * 1024;

/// Every job's status at `now`, from the last [`RECENT_RUNS_BYTES`] of the run history.
pub fn statuses(settings: &SchedulerSettings, state: &StateDir, now: DateTime<Utc>) -> anyhow::Result<Vec<JobStatus>> {
    let all: Vec<RunRecord> = state.read_jsonl_tail(RUNS_FILE, RECENT_RUNS_BYTES)?;
    let mut out = Vec::new();
    let windows = crate::gate::windows(state)?;
    for job in schedule::all(settings, state)? {
        let runs: Vec<&RunRecord> = all.iter().filter(|r| r.job == job.spec.name).collect();
        let holder = JobLock::holder(state, &job.spec.lock)?
            .map(|h| format!("pid {} on {} since {} ({})", h.pid, h.host, h.started_at.format("%H:%M:%S"), h.command));
        let mut status = job_status(&job, &runs, now, settings, holder)?;
        if crate::gate::never_admitted(&job, &windows, &settings.timezone, now)? {
            status.never_admitted = true;
            status.flags.push(Flag::NeverAdmitted);
        }
        out.push(status);
    }
    Ok(out)
}
