//! The gates a scheduled run passes (`--scheduled JOB`, as the rendered crontab runs every
//! tool): automation must be on (`cache-scheduler start`/`stop`), the job enabled, a heavy job
//! inside a maintenance window that allows its task type and under the window's limit of heavy
//! jobs at once (unless `--emergency`), the job it depends on must have succeeded recently, and
//! with a fleet lock configured, no other host may have run it in this tick.
//!
//! A run that does not pass exits 0 at once, saying why on stderr and in its run record
//! (outcome `skipped`). Runs without `--scheduled` (an operator at a shell) are never gated.
//!
//! [`never_admitted`] tells, ahead of time, whether a heavy job's schedule can ever pass the
//! windows: `cache-scheduler install`, `windows` and `optimize` refuse a schedule that leaves a
//! heavy job skipped for ever, and `status` flags one.

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
/// How a skip by stopped automation begins (`status` does not count those against a job).
pub const AUTOMATION_STOPPED: &str = "automation is stopped";
/// How far ahead [`never_admitted`] looks: two weeks of runs (and at least a job's next three).
pub const ADMISSION_DAYS: i64 = 14;

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

/// The maintenance windows (none when there is no document).
pub fn windows(state: &StateDir) -> anyhow::Result<Windows> {
    Ok(state.read_json(WINDOWS_FILE)?.unwrap_or_default())
}

/// Whether no window can ever admit heavy job `job`: windows exist, and none of its runs from
/// `from` for [`ADMISSION_DAYS`] days (at least its next three, at most a year ahead), read in
/// `timezone`, falls inside a window that allows its task type and any heavy job at all.
/// A light or disabled job, or any job when there are no windows, is always admitted.
pub fn never_admitted(job: &Effective, windows: &Windows, timezone: &str, from: DateTime<Utc>) -> anyhow::Result<bool> {
    if !job.spec.heavy || !job.enabled || windows.windows.is_empty() {
        return Ok(false);
    }
    let mut allowing = Vec::new();
    for w in windows.windows.iter().filter(|w| w.allows(&job.spec.task) && w.max_heavy > 0) {
        let length = chrono::Duration::from_std(w.duration).unwrap_or(chrono::Duration::zero());
        allowing.push((schedule::parse(&w.start)?, schedule::timezone(&w.timezone)?, length));
    }
    if allowing.is_empty() {
        return Ok(true);
    }
    let cron = schedule::parse(&job.schedule)?;
    let tz = schedule::timezone(timezone)?;
    let (horizon, limit) = (from + chrono::Duration::days(ADMISSION_DAYS), from + chrono::Duration::days(366));
    for (n, run) in cron.iter_after(from.with_timezone(&tz)).enumerate() {
        let run = run.with_timezone(&Utc);
        if run > limit || (run > horizon && n >= 3) || n >= 50_000 {
            break;
        }
        let open = allowing.iter().any(|(start, wtz, length)| {
            start.iter_after((run - *length).with_timezone(wtz)).next().is_some_and(|s| s.with_timezone(&Utc) <= run)
        });
        if open {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The window that admits a heavy job of task type `task` at `at`: the first open then that
/// allows the task (`None` when none is; with no windows at all, heavy jobs need none).
pub fn admitting<'w>(windows: &'w Windows, task: &str, at: DateTime<Utc>) -> anyhow::Result<Option<&'w Window>> {
    for w in &windows.windows {
        if w.allows(task) && w.open_since(at)?.is_some() {
            return Ok(Some(w));
        }
    }
    Ok(None)
}

/// The enabled heavy jobs of `jobs` that no window of `windows` can ever admit.
pub fn never_admitted_jobs(
    jobs: &[Effective],
    windows: &Windows,
    timezone: &str,
    from: DateTime<Utc>,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for job in jobs {
        if never_admitted(job, windows, timezone, from)? {
            out.push(job.spec.name.to_string());
        }
    }
    Ok(out)
}

/// What a scheduled run holds while it runs: the heavy-job slot and the fleet lease.
#[derive(Debug, Default)]
pub struct Pass {
    _heavy: Option<JobLock>,
    lease: Option<crate::fleet::Lease>,
    window: Option<String>,
}

impl Pass {
    /// The maintenance window that admitted the run, for a heavy job when windows exist.
    pub fn window(&self) -> Option<&str> {
        self.window.as_deref()
    }

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
            "{AUTOMATION_STOPPED} (since {} by {}{why}); `cache-scheduler start` turns it back on",
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
        let windows = windows(state)?;
        if !windows.windows.is_empty() {
            let Some(window) = admitting(&windows, &job.spec.task, now)? else {
                return Ok(Err(Skipped(format!(
                    "`{name}` is heavy ({} task) and no maintenance window allowing it is open; --emergency runs it anyway",
                    job.spec.task
                ))));
            };
            let busy = schedule::catalogue(settings)?
                .iter()
                .filter(|j| j.heavy && j.name != name)
                .map(|j| JobLock::holder(state, &heavy_slot(&j.name)).map(|h| h.is_some()))
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
            pass.window = Some(window.name.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchedulerSettings;

    fn window(start: &str, hours: u64, timezone: &str, tasks: &[&str]) -> Window {
        Window {
            name: "w".into(),
            start: start.into(),
            duration: Duration::from_secs(hours * 3600),
            timezone: timezone.into(),
            tasks: tasks.iter().map(|t| (*t).to_owned()).collect(),
            max_heavy: 1,
            silence: Vec::new(),
        }
    }

    #[test]
    fn a_heavy_job_outside_every_window_is_never_admitted() {
        let settings = SchedulerSettings::default();
        let from = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc();
        let job =
            |name: &str| schedule::configured(&settings).unwrap().into_iter().find(|j| j.spec.name == name).unwrap();
        let never = |name: &str, windows: &[Window]| {
            never_admitted(&job(name), &Windows { windows: windows.to_vec() }, "UTC", from).unwrap()
        };
        // The case: 02:00-04:00 in Jakarta is 19:00-21:00 UTC; the backup runs at 01:00 UTC.
        let jakarta = window("0 2 * * *", 2, "Asia/Jakarta", &[]);
        assert!(never("backup", std::slice::from_ref(&jakarta)));
        assert!(!never("backup", &[window("0 0 * * *", 2, "UTC", &[])]));
        // The window must allow the task, and some heavy job at all.
        assert!(never("backup", &[window("0 0 * * *", 2, "UTC", &["cleanup"])]));
        assert!(never("backup", &[Window { max_heavy: 0, ..window("0 0 * * *", 2, "UTC", &[]) }]));
        // A window opening at the job's minute admits it; one closing then does not.
        assert!(!never("backup", &[window("0 1 * * *", 1, "UTC", &[])]));
        assert!(never("backup", &[window("0 0 * * *", 1, "UTC", &[])]));
        // Sundays only: the daily job is admitted once a week; the monthly one some month.
        assert!(!never("backup", &[window("0 0 * * 0", 2, "UTC", &[])]));
        assert!(!never("archival-monthly", &[window("0 5 * * *", 2, "UTC", &[])]));
        // Light jobs, and any job without windows, are always admitted.
        assert!(!never("analytics-collect", std::slice::from_ref(&jakarta)));
        assert!(!never("backup", &[]));
        assert_eq!(
            never_admitted_jobs(
                &schedule::configured(&settings).unwrap(),
                &Windows { windows: vec![jakarta] },
                "UTC",
                from
            )
            .unwrap(),
            [
                "backup",
                "backup-verify",
                "cleanup-deep",
                "memory-maintenance",
                "optimize",
                "optimize-weekly",
                "archival-monthly",
                "backup-drill"
            ]
        );
    }
}
