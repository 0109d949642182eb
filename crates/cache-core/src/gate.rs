//! The gates a scheduled run passes (`--scheduled JOB`, as the rendered crontab runs every
//! tool): automation must be on (`cache-scheduler start`/`stop`), the job enabled, a heavy job
//! inside a maintenance window that allows its task type and under the window's limit of heavy
//! jobs at once (unless `--emergency`), the job it depends on must have succeeded recently, and
//! with a fleet lock configured, no other host may have run it in this tick.
//!
//! A run that does not pass exits 0 at once, saying why on stderr and in its run record
//! (outcome `skipped`). Runs without `--scheduled` (an operator at a shell) are never gated.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::app::Context;
use crate::lock::JobLock;
use crate::runs;
use crate::schedule::{self, Effective};
use crate::state::StateDir;

/// Automation on or off, in the state directory.
pub const AUTOMATION_FILE: &str = "scheduler/automation.json";
/// Maintenance windows, in the state directory.
pub const WINDOWS_FILE: &str = "scheduler/windows.json";

/// Whether scheduled runs run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Automation {
    /// On (true) or off.
    pub running: bool,
    /// Since when.
    pub changed_at: DateTime<Utc>,
    /// By what.
    pub changed_by: String,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A maintenance window (seed 003).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Its name.
    pub name: String,
    /// When it opens: a five-field cron expression.
    pub start: String,
    /// How long it stays open.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Time zone of `start`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Task types allowed in it (`backup`, `cleanup`...); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// Heavy jobs running at once in it, at most.
    #[serde(default = "one")]
    pub max_heavy: u32,
    /// Alert rules it silences (cache-health monitor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silence: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}
fn one() -> u32 {
    1
}

/// The windows document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    /// The windows.
    #[serde(default)]
    pub windows: Vec<Window>,
}

impl Window {
    /// When the window opened, if it is open at `now`.
    pub fn open_since(&self, now: DateTime<Utc>) -> anyhow::Result<Option<DateTime<Utc>>> {
        let length = chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::zero());
        let start = schedule::next_runs_in(&self.start, now - length, 1, &self.timezone)?;
        Ok(start.first().copied().filter(|s| *s <= now))
    }

    /// Whether it allows task type `task`.
    pub fn allows(&self, task: &str) -> bool {
        self.tasks.is_empty() || self.tasks.iter().any(|t| t == task)
    }
}

/// Whether automation is on (it is unless `cache-scheduler stop` turned it off).
pub fn automation(state: &StateDir) -> anyhow::Result<Option<Automation>> {
    state.read_json(AUTOMATION_FILE)
}

/// What a scheduled run holds while it runs: the heavy-job slot and the fleet lease.
#[derive(Debug, Default)]
pub struct Pass {
    _heavy: Option<JobLock>,
    lease: Option<crate::fleet::Lease>,
}

impl Pass {
    /// The fleet lease's fencing token, when one was taken.
    pub fn fencing_token(&self) -> Option<i64> {
        self.lease.as_ref().map(crate::fleet::Lease::token)
    }

    /// Ends the pass: stops renewing the lease (it stays until it runs out, marking this tick
    /// done for the other hosts).
    pub async fn release(self) {
        if let Some(lease) = self.lease {
            lease.finish().await;
        }
    }
}

/// A scheduled run that does not run, and why.
#[derive(Debug)]
pub struct Skipped(pub String);

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

impl std::error::Error for Skipped {}

fn heavy_slot(job: &str) -> String {
    format!("heavy-{job}")
}

/// Checks every gate of scheduled job `name`; `Ok(Err(reason))` when it must not run.
pub async fn check(ctx: &Context, name: &str, emergency: bool) -> anyhow::Result<Result<Pass, Skipped>> {
    let now = crate::clock::now()?;
    let state = &ctx.state;
    let settings = &ctx.config.scheduler;
    let job: Effective = schedule::effective(settings, state, name)?;
    if let Some(a) = automation(state)?.filter(|a| !a.running) {
        let why = a.reason.map(|r| format!(": {r}")).unwrap_or_default();
        return Ok(Err(Skipped(format!(
            "automation is stopped (since {} by {}{why}); `cache-scheduler start` turns it back on",
            a.changed_at.format("%Y-%m-%d %H:%M UTC"),
            a.changed_by
        ))));
    }
    if !job.enabled {
        return Ok(Err(Skipped(format!("job `{name}` is disabled in the schedule"))));
    }
    if let Some(req) = &job.requires {
        let ran = runs::last_success(state, &req.job)?.map(|r| r.ended_at);
        let within = chrono::Duration::from_std(req.within).unwrap_or(chrono::Duration::MAX);
        if ran.is_none_or(|t| now - t > within) {
            let last = ran.map_or("never".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
            return Ok(Err(Skipped(format!(
                "it needs `{}` to have succeeded within {} (last success: {last})",
                req.job,
                humantime::format_duration(req.within)
            ))));
        }
    }
    let mut pass = Pass::default();
    if job.spec.heavy && !emergency {
        let windows: Windows = state.read_json(WINDOWS_FILE)?.unwrap_or_default();
        if !windows.windows.is_empty() {
            let mut open = None;
            for w in &windows.windows {
                if w.allows(job.spec.task) && w.open_since(now)?.is_some() {
                    open = Some(w);
                    break;
                }
            }
            let Some(window) = open else {
                return Ok(Err(Skipped(format!(
                    "`{name}` is heavy ({} task) and no maintenance window allowing it is open; --emergency runs it anyway",
                    job.spec.task
                ))));
            };
            let busy = schedule::DEFAULT_JOBS
                .iter()
                .filter(|j| j.heavy && j.name != name)
                .map(|j| JobLock::holder(state, &heavy_slot(j.name)).map(|h| h.is_some()))
                .collect::<anyhow::Result<Vec<bool>>>()?
                .into_iter()
                .filter(|held| *held)
                .count();
            if busy >= window.max_heavy as usize {
                return Ok(Err(Skipped(format!(
                    "window `{}` allows {} heavy job(s) at once and {busy} are running",
                    window.name, window.max_heavy
                ))));
            }
        }
        pass._heavy = Some(JobLock::try_acquire(state, &heavy_slot(name), "scheduled heavy job")?);
    }
    if job.spec.heavy
        && let Some(target) = &settings.fleet_lock
    {
        let target = ctx
            .config
            .redis
            .iter()
            .find(|t| &t.name == target)
            .ok_or_else(|| anyhow::anyhow!("scheduler.fleet_lock: no redis target `{target}`"))?;
        let tick = now.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now);
        match crate::fleet::Lease::take(target, &ctx.config.project_name, name, tick, settings.lease).await? {
            Ok(lease) => pass.lease = Some(lease),
            Err(holder) => {
                return Ok(Err(Skipped(format!(
                    "another host runs `{name}` for the {} tick ({holder})",
                    tick.format("%H:%M")
                ))));
            }
        }
    }
    Ok(Ok(pass))
}
