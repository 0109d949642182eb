//! The maintenance service's views of the state (seed 003's maintenance management service, the
//! side that reads): the task catalogue with what becomes of each job's next run, the runs in
//! progress and how far along they are, the maintenance windows with what each admits, the
//! figures of the last 7 and 30 days (success rate, mean duration, skips, interruptions, window
//! utilisation) and the space each tier really freed.
//!
//! Nothing here is decided anew: a job's next run passes the same gates a scheduled run passes
//! ([`crate::gate`]: automation, enabled, [`crate::gate::never_admitted`], and
//! [`crate::gate::admitting`] for the windows), runs are the run records ([`crate::runs`]) and a
//! run in progress is the holder its lock names ([`crate::lock`]). `cache-scheduler serve`
//! answers its API with these views and draws the maintenance dashboard from them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::SchedulerSettings;
use crate::gate::{self, Window, Windows};
use crate::jobs::{self, Flag, LastRun};
use crate::lock::JobLock;
use crate::runs::{Outcome, RUNS_FILE, RunRecord, Trigger};
use crate::schedule::{self, Effective};
use crate::state::{Span, StateDir};

/// The most of the run history a view reads (a month of runs is far less).
const VIEW_MAX_BYTES: u64 = 64 << 20;
/// How many of a job's scheduled runs are tried for the next one a window admits.
const MAX_CANDIDATE_RUNS: usize = 5000;

/// One job of the catalogue, as the maintenance API lists it (`tasks`).
#[derive(Clone, Debug, Serialize)]
pub struct Task {
    /// The job's name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// The command it runs.
    pub command: String,
    /// Its cron expression.
    pub schedule: String,
    /// Its task type (what maintenance windows allow).
    #[serde(rename = "type")]
    pub task_type: String,
    /// Heavy: it runs only inside a window allowing its type.
    pub heavy: bool,
    /// The lock it runs under.
    pub lock: String,
    /// The job that must have succeeded recently before it runs.
    pub requires: Option<Dependency>,
    /// Enabled in the schedule.
    pub enabled: bool,
    /// Its last run (lock-outs and dry runs do not count).
    pub last_run: Option<LastRun>,
    /// When cron next starts it (whether or not its gates will let it run).
    pub next_scheduled: Option<DateTime<Utc>>,
    /// Its next run that its gates will let run, as far as they can be known now (`None`: none
    /// will, see `skipped`).
    pub next_run: Option<DateTime<Utc>>,
    /// The maintenance window that will admit `next_run`, for a heavy job when windows exist.
    pub window: Option<String>,
    /// Why its scheduled runs (all of them when `next_run` is `None`, else those before it)
    /// will be skipped.
    pub skipped: Option<String>,
    /// Whether a run of it is in progress (its lock is held by a run recorded as it).
    pub running: bool,
    /// What `cache-scheduler status` flags about it.
    pub flags: Vec<Flag>,
}

/// A job's dependency and whether it is met now.
#[derive(Clone, Debug, Serialize)]
pub struct Dependency {
    /// The job that must have succeeded.
    pub job: String,
    /// How recently, in seconds.
    pub within_s: u64,
    /// Whether it has, as of now.
    pub satisfied: bool,
}

/// A run in progress, from the holder its lock names.
#[derive(Clone, Debug, Serialize)]
pub struct Running {
    /// The id its run record will have.
    pub id: String,
    /// The job it is recorded as.
    pub job: String,
    /// Tool and subcommand.
    pub command: String,
    /// The lock it holds.
    pub lock: String,
    /// Its process.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// What started it.
    pub trigger: Trigger,
    /// When it took its lock.
    pub started_at: DateTime<Utc>,
    /// How long it has run.
    pub elapsed_ms: u64,
    /// The median duration of the job's recent successful runs, when it has some.
    pub typical_ms: Option<u64>,
    /// How far along it is: elapsed over typical, at most 0.99 while it runs (`None` without a
    /// typical duration).
    pub progress: Option<f64>,
}

/// A maintenance window and what it admits.
#[derive(Clone, Debug, Serialize)]
pub struct WindowView {
    /// The window as saved.
    #[serde(flatten)]
    pub window: Window,
    /// Whether it is open now.
    pub open: bool,
    /// When it opens next (when it opened, if it is open).
    pub opens_at: Option<DateTime<Utc>>,
    /// When that opening closes.
    pub closes_at: Option<DateTime<Utc>>,
    /// The enabled heavy jobs whose type it allows.
    pub admits: Vec<String>,
    /// The runs of those jobs scheduled inside that opening.
    pub runs: Vec<ScheduledRun>,
}

/// A job's run at a time.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduledRun {
    /// The job.
    pub job: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Whether automation is on, as the status says it.
#[derive(Clone, Debug, Serialize)]
pub struct AutomationView {
    /// Scheduled runs run.
    pub running: bool,
    /// Since when it is so (never changed: `None`).
    pub changed_at: Option<DateTime<Utc>>,
    /// By what.
    pub changed_by: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// Reads what every view needs once.
#[derive(Debug)]
pub struct Snapshot {
    /// When it was read.
    pub now: DateTime<Utc>,
    /// The schedule's settings.
    pub settings: SchedulerSettings,
    /// Every job as it runs now.
    pub jobs: Vec<Effective>,
    /// Their statuses (`cache-scheduler status`).
    pub statuses: Vec<jobs::JobStatus>,
    /// The windows.
    pub windows: Windows,
    /// Automation.
    pub automation: Option<gate::Automation>,
    /// The runs of the last 30 days, oldest first.
    pub runs: Vec<RunRecord>,
    /// What reading the run history left out (bad lines, the cap), in words.
    pub problems: Vec<String>,
}

impl Snapshot {
    /// Reads the schedule, the windows, automation and the last 30 days of runs at `now`.
    pub fn read(settings: &SchedulerSettings, state: &StateDir, now: DateTime<Utc>) -> anyhow::Result<Self> {
        let from = now - Duration::days(30);
        let history: crate::state::History<RunRecord> =
            state.read_history(RUNS_FILE, Span::Since(from), VIEW_MAX_BYTES)?;
        let problems = history.warnings();
        let runs = history.records.into_iter().filter(|r| r.started_at >= from).collect();
        Ok(Self {
            now,
            settings: settings.clone(),
            jobs: schedule::all(settings, state)?,
            statuses: jobs::statuses(settings, state, now)?,
            windows: gate::windows(state)?,
            automation: gate::automation(state)?,
            runs,
            problems,
        })
    }

    /// Automation, for the status.
    pub fn automation(&self) -> AutomationView {
        match &self.automation {
            Some(a) => AutomationView {
                running: a.running,
                changed_at: Some(a.changed_at),
                changed_by: Some(a.changed_by.clone()),
                reason: a.reason.clone(),
            },
            None => AutomationView { running: true, changed_at: None, changed_by: None, reason: None },
        }
    }

    /// The catalogue, each job with its next run and why runs will be skipped; `running` names
    /// the jobs with a run in progress.
    pub fn tasks(&self, state: &StateDir, running: &[Running]) -> anyhow::Result<Vec<Task>> {
        let mut out = Vec::new();
        let stopped = self.automation.as_ref().filter(|a| !a.running);
        for job in &self.jobs {
            let name = job.spec.name.to_string();
            let status = self.statuses.iter().find(|s| s.name == name);
            let next_scheduled = status.and_then(|s| s.next_run);
            let (next_run, window, skipped) = if !job.enabled {
                (None, None, Some(format!("job `{name}` is disabled in the schedule")))
            } else if let Some(a) = stopped {
                let why = a.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default();
                let since = a.changed_at.format("%Y-%m-%d %H:%M UTC");
                (None, None, Some(format!("{} (since {since} by {}{why})", gate::AUTOMATION_STOPPED, a.changed_by)))
            } else if status.is_some_and(|s| s.never_admitted) {
                let days = gate::ADMISSION_DAYS;
                let why = format!(
                    "heavy ({} task) and no maintenance window allowing it admits any of its runs in the next {days} days",
                    job.spec.task
                );
                (None, None, Some(why))
            } else if job.spec.heavy && !self.windows.windows.is_empty() {
                match self.next_admitted(job)? {
                    Some((at, w)) if Some(at) == next_scheduled => (Some(at), Some(w), None),
                    Some((at, w)) => {
                        let why = format!(
                            "heavy ({} task): its runs before {} fall outside every window allowing it",
                            job.spec.task,
                            at.format("%Y-%m-%d %H:%M UTC")
                        );
                        (Some(at), Some(w), Some(why))
                    }
                    None => {
                        (None, None, Some(format!("heavy ({} task): no window admits its coming runs", job.spec.task)))
                    }
                }
            } else {
                (next_scheduled, None, None)
            };
            let requires = match &job.requires {
                Some(r) => {
                    let last = crate::runs::last_success(state, &r.job)?.map(|s| s.ended_at);
                    let within = Duration::from_std(r.within).unwrap_or(Duration::MAX);
                    Some(Dependency {
                        job: r.job.clone(),
                        within_s: r.within.as_secs(),
                        satisfied: last.is_some_and(|t| self.now - t <= within),
                    })
                }
                None => None,
            };
            out.push(Task {
                description: job.spec.description.to_string(),
                command: job.spec.command.to_string(),
                schedule: job.schedule.clone(),
                task_type: job.spec.task.to_string(),
                heavy: job.spec.heavy,
                lock: job.spec.lock.to_string(),
                requires,
                enabled: job.enabled,
                last_run: status.and_then(|s| {
                    s.last_run.as_ref().map(|l| LastRun {
                        started_at: l.started_at,
                        outcome: l.outcome,
                        duration_ms: l.duration_ms,
                        error: l.error.clone(),
                    })
                }),
                next_scheduled,
                next_run,
                window,
                skipped,
                running: running.iter().any(|r| r.job == name),
                flags: status.map(|s| s.flags.clone()).unwrap_or_default(),
                name,
            });
        }
        Ok(out)
    }

    /// A heavy job's next scheduled run inside a window allowing it, and the window.
    fn next_admitted(&self, job: &Effective) -> anyhow::Result<Option<(DateTime<Utc>, String)>> {
        let cron = schedule::parse(&job.schedule)?;
        let tz = schedule::timezone(&self.settings.timezone)?;
        let horizon = self.now + Duration::days(gate::ADMISSION_DAYS);
        for (n, at) in cron.iter_after(self.now.with_timezone(&tz)).enumerate() {
            let at = at.with_timezone(&Utc);
            if (at > horizon && n >= 3) || n >= MAX_CANDIDATE_RUNS {
                break;
            }
            if let Some(w) = gate::admitting(&self.windows, &job.spec.task, at)? {
                return Ok(Some((at, w.name.clone())));
            }
        }
        Ok(None)
    }

    /// Each window: open or not, its next opening, and the heavy jobs and runs it admits.
    pub fn windows(&self) -> anyhow::Result<Vec<WindowView>> {
        let mut out = Vec::new();
        for w in &self.windows.windows {
            let length = Duration::from_std(w.duration).unwrap_or(Duration::zero());
            let open_since = w.open_since(self.now)?;
            let opens_at = match open_since {
                Some(t) => Some(t),
                None => schedule::next_runs_in(&w.start, self.now, 1, &w.timezone)?.first().copied(),
            };
            let closes_at = opens_at.map(|t| t + length);
            let admitted: Vec<&Effective> =
                self.jobs.iter().filter(|j| j.enabled && j.spec.heavy && w.allows(&j.spec.task)).collect();
            let mut runs = Vec::new();
            if let (Some(from), Some(to)) = (opens_at, closes_at) {
                for job in &admitted {
                    let tz = schedule::timezone(&self.settings.timezone)?;
                    let cron = schedule::parse(&job.schedule)?;
                    let start = (from - Duration::seconds(1)).max(self.now - Duration::seconds(1));
                    for at in cron.iter_after(start.with_timezone(&tz)).take(1000) {
                        let at = at.with_timezone(&Utc);
                        if at >= to {
                            break;
                        }
                        runs.push(ScheduledRun { job: job.spec.name.to_string(), at });
                    }
                }
            }
            runs.sort_by(|a, b| a.at.cmp(&b.at).then(a.job.cmp(&b.job)));
            out.push(WindowView {
                window: w.clone(),
                open: open_since.is_some(),
                opens_at,
                closes_at,
                admits: admitted.iter().map(|j| j.spec.name.to_string()).collect(),
                runs,
            });
        }
        Ok(out)
    }

    /// The window open now, else the one opening first.
    pub fn next_window(&self) -> anyhow::Result<Option<WindowView>> {
        let views = self.windows()?;
        Ok(views.into_iter().min_by_key(|v| (!v.open, v.opens_at)))
    }

    /// The runs in progress: every held job lock naming a run, with how far along it is
    /// against the job's recent successful runs.
    pub fn running(&self, state: &StateDir) -> anyhow::Result<Vec<Running>> {
        let mut out = Vec::new();
        for lock in lock_names(state)? {
            let Some(holder) = JobLock::holder(state, &lock)? else { continue };
            let Some(job) = holder.job.clone() else { continue };
            let elapsed = (self.now - holder.started_at).max(Duration::zero());
            let elapsed_ms = u64::try_from(elapsed.num_milliseconds()).unwrap_or(0);
            let typical_ms = median(
                self.runs.iter().filter(|r| r.job == job && r.outcome == Outcome::Success).map(|r| r.duration_ms),
            );
            let progress = typical_ms.filter(|t| *t > 0).map(|t| (elapsed_ms as f64 / t as f64).min(0.99));
            out.push(Running {
                id: holder.run_id.clone().unwrap_or_else(|| crate::runs::run_id(holder.started_at, holder.pid)),
                job,
                command: holder.command.clone(),
                lock,
                pid: holder.pid,
                host: holder.host.clone(),
                trigger: holder.trigger,
                started_at: holder.started_at,
                elapsed_ms,
                typical_ms,
                progress,
            });
        }
        out.sort_by_key(|r| r.started_at);
        Ok(out)
    }

    /// The figures of the last 7 and 30 days.
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        let periods = [7, 30];
        let mut jobs = Vec::new();
        for job in &self.jobs {
            let name = job.spec.name.as_ref();
            let figures = periods.map(|days| Figures::of(self.runs.iter().filter(|r| r.job == name), self.since(days)));
            jobs.push(JobMetrics {
                job: name.to_owned(),
                last_7_days: figures[0].clone(),
                last_30_days: figures[1].clone(),
            });
        }
        // Runs recorded under names the catalogue no longer has (a manual `cache-cleanup light`
        // is job `cleanup`) count in the totals all the same.
        let totals = periods.map(|days| Figures::of(self.runs.iter(), self.since(days)));
        let mut windows = Vec::new();
        for w in &self.windows.windows {
            windows.push(self.utilisation(w, 30)?);
        }
        Ok(Metrics {
            generated_at: self.now,
            jobs,
            totals: Periods { last_7_days: totals[0].clone(), last_30_days: totals[1].clone() },
            windows,
            space_freed: Periods {
                last_7_days: space_freed(self.runs.iter().filter(|r| r.started_at >= self.since(7))),
                last_30_days: space_freed(self.runs.iter()),
            },
        })
    }

    fn since(&self, days: i64) -> DateTime<Utc> {
        self.now - Duration::days(days)
    }

    /// How much of `w`'s open time in the last `days` days the runs it admitted spent running.
    fn utilisation(&self, w: &Window, days: i64) -> anyhow::Result<WindowUse> {
        let from = self.since(days);
        let length = Duration::from_std(w.duration).unwrap_or(Duration::zero());
        let cron = schedule::parse(&w.start)?;
        let tz = schedule::timezone(&w.timezone)?;
        let mut open_ms = 0i64;
        let mut openings = 0u32;
        for start in cron.iter_after((from - length).with_timezone(&tz)) {
            let start = start.with_timezone(&Utc);
            // A window opening every minute opens 43,200 times in 30 days.
            if start > self.now || openings > 50_000 {
                break;
            }
            let (a, b) = (start.max(from), (start + length).min(self.now));
            if b > a {
                open_ms += (b - a).num_milliseconds();
                openings += 1;
            }
        }
        let admitted: Vec<&RunRecord> =
            self.runs.iter().filter(|r| r.started_at >= from && r.window.as_deref() == Some(&w.name)).collect();
        let busy_ms: u64 = admitted.iter().map(|r| r.duration_ms).sum();
        let open_ms = u64::try_from(open_ms).unwrap_or(0);
        Ok(WindowUse {
            window: w.name.clone(),
            days: u32::try_from(days).unwrap_or(0),
            openings,
            open_ms,
            admitted_runs: admitted.len(),
            busy_ms,
            utilisation: (open_ms > 0).then(|| busy_ms as f64 / open_ms as f64),
        })
    }

    /// Runs per day, newest day first, for the last `days` days (at most 30, what the snapshot
    /// holds).
    pub fn daily(&self, days: u32) -> Vec<Day> {
        let mut out = Vec::new();
        let today = self.now.date_naive();
        for back in 0..days.min(30) {
            let Some(date) = today.checked_sub_days(chrono::Days::new(u64::from(back))) else { break };
            let runs: Vec<&RunRecord> = self.runs.iter().filter(|r| r.started_at.date_naive() == date).collect();
            let figures = Figures::of(runs.iter().copied(), DateTime::<Utc>::MIN_UTC);
            out.push(Day {
                date: date.format("%Y-%m-%d").to_string(),
                figures,
                bytes_freed: space_freed(runs.iter().copied()).values().sum(),
            });
        }
        out
    }
}

/// The names of the locks in the state directory (`locks/NAME.lock`), the slots of heavy jobs
/// (`heavy-JOB`, held beside the job's own lock) left out.
fn lock_names(state: &StateDir) -> anyhow::Result<Vec<String>> {
    let dir = state.path("locks");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("reading `{}`: {e}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".lock").map(str::to_owned))
        .filter(|n| !n.starts_with("heavy-"))
        .collect();
    names.sort();
    Ok(names)
}

fn median(values: impl Iterator<Item = u64>) -> Option<u64> {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The figures of some runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    /// Runs that ran (not skipped, locked out or dry).
    pub runs: u32,
    /// Of which succeeded.
    pub successes: u32,
    /// Of which failed or were only partly done.
    pub failures: u32,
    /// Successes over runs (`None` without runs).
    pub success_rate: Option<f64>,
    /// The mean duration of the runs that ran.
    pub mean_duration_ms: Option<u64>,
    /// Runs a gate skipped.
    pub skipped: u32,
    /// Runs ended before they finished (signal, deadline, killed).
    pub interrupted: u32,
    /// Runs locked out by another run of the same lock.
    pub locked: u32,
}

impl Figures {
    fn of<'a>(runs: impl Iterator<Item = &'a RunRecord>, since: DateTime<Utc>) -> Self {
        let mut f = Self::default();
        let mut total_ms = 0u64;
        for r in runs.filter(|r| r.started_at >= since) {
            match r.outcome {
                Outcome::Skipped => f.skipped += 1,
                Outcome::Locked => f.locked += 1,
                Outcome::DryRun => {}
                o => {
                    f.runs += 1;
                    total_ms += r.duration_ms;
                    f.successes += u32::from(o == Outcome::Success);
                    f.failures += u32::from(matches!(o, Outcome::Failed | Outcome::Partial));
                    f.interrupted += u32::from(o == Outcome::Interrupted);
                }
            }
        }
        if f.runs > 0 {
            f.success_rate = Some(f64::from(f.successes) / f64::from(f.runs));
            f.mean_duration_ms = Some(total_ms / u64::from(f.runs));
        }
        f
    }
}

/// One job's figures.
#[derive(Clone, Debug, Serialize)]
pub struct JobMetrics {
    /// The job.
    pub job: String,
    /// Of the last 7 days.
    pub last_7_days: Figures,
    /// Of the last 30 days.
    pub last_30_days: Figures,
}

/// Something over the last 7 and 30 days.
#[derive(Clone, Debug, Serialize)]
pub struct Periods<T> {
    /// The last 7 days.
    pub last_7_days: T,
    /// The last 30 days.
    pub last_30_days: T,
}

/// How a window was used.
#[derive(Clone, Debug, Serialize)]
pub struct WindowUse {
    /// The window.
    pub window: String,
    /// Over how many days.
    pub days: u32,
    /// How many times it opened in them.
    pub openings: u32,
    /// How long it was open in them.
    pub open_ms: u64,
    /// Runs it admitted.
    pub admitted_runs: usize,
    /// How long they ran.
    pub busy_ms: u64,
    /// `busy_ms` over `open_ms` (`None` when it never opened).
    pub utilisation: Option<f64>,
}

/// The figures of the last 7 and 30 days (`metrics`).
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// When.
    pub generated_at: DateTime<Utc>,
    /// Per job of the catalogue.
    pub jobs: Vec<JobMetrics>,
    /// Every run recorded.
    pub totals: Periods<Figures>,
    /// Per window, over 30 days.
    pub windows: Vec<WindowUse>,
    /// Bytes freed per tier.
    pub space_freed: Periods<BTreeMap<String, u64>>,
}

/// One day of runs (`history`).
#[derive(Clone, Debug, Serialize)]
pub struct Day {
    /// The date (UTC).
    pub date: String,
    /// Its runs' figures.
    #[serde(flatten)]
    pub figures: Figures,
    /// Bytes its runs freed.
    pub bytes_freed: u64,
}

/// The bytes each tier really freed in `runs`: the `bytes_freed` of each target in the
/// summaries of runs that changed something (a dry run frees nothing), by tier. What a tier
/// counts is its own: a log rotated and compressed frees what compression saved.
pub fn space_freed<'a>(runs: impl Iterator<Item = &'a RunRecord>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in runs.filter(|r| r.outcome != Outcome::DryRun && r.summary["dry_run"] != true) {
        for t in r.summary["targets"].as_array().into_iter().flatten() {
            if let (Some(tier), Some(freed)) = (t["tier"].as_str(), t["bytes_freed"].as_u64()) {
                *out.entry(tier.to_owned()).or_default() += freed;
            }
        }
    }
    out
}

/// seed 003's overall status: `issues` when a job is failing, overdue or never admitted,
/// `running` while runs are in progress, else `healthy`.
pub fn overall(tasks: &[Task], running: &[Running]) -> &'static str {
    let troubled = |f: &Flag| matches!(f, Flag::Failing(_) | Flag::Overdue | Flag::NeverAdmitted);
    if tasks.iter().any(|t| t.flags.iter().any(troubled)) {
        "issues"
    } else if !running.is_empty() {
        "running"
    } else {
        "healthy"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(job: &str, outcome: Outcome, at: DateTime<Utc>, ms: u64, summary: serde_json::Value) -> RunRecord {
        RunRecord {
            id: crate::runs::run_id(at, 1),
            job: job.into(),
            command: "x".into(),
            host: "h".into(),
            pid: 1,
            started_at: at,
            ended_at: at + Duration::milliseconds(i64::try_from(ms).unwrap()),
            duration_ms: ms,
            outcome,
            exit_code: 0,
            steps: Vec::new(),
            summary,
            error: None,
            trigger: Trigger::Cron,
            lock: None,
            window: None,
        }
    }

    #[test]
    fn a_task_is_coming_at_its_next_admitted_run_or_says_why_it_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let mut settings = SchedulerSettings::default();
        settings.jobs.insert("reports-daily".into(), toml::from_str("enabled = false").unwrap());
        // Sundays 00:00-03:00 UTC, cleanups only: the deep cleanup (daily at 02:00) is admitted
        // on Sunday only; memory maintenance (a `memory` task) never.
        let window = Window {
            name: "sunday".into(),
            start: "0 0 * * 0".into(),
            duration: std::time::Duration::from_secs(3 * 3600),
            timezone: "UTC".into(),
            tasks: vec!["cleanup".into()],
            max_heavy: 1,
            silence: Vec::new(),
        };
        state.write_json(gate::WINDOWS_FILE, &Windows { windows: vec![window] }).unwrap();
        // A Wednesday.
        let now = DateTime::parse_from_rfc3339("2026-11-18T10:00:00Z").unwrap().to_utc();
        let snap = Snapshot::read(&settings, &state, now).unwrap();
        let tasks = snap.tasks(&state, &[]).unwrap();
        let task = |name: &str| tasks.iter().find(|t| t.name == name).unwrap();
        let deep = task("cleanup-deep");
        assert_eq!(deep.next_scheduled.unwrap().to_rfc3339(), "2026-11-19T02:00:00+00:00");
        assert_eq!(deep.next_run.unwrap().to_rfc3339(), "2026-11-22T02:00:00+00:00");
        assert_eq!(deep.window.as_deref(), Some("sunday"));
        assert!(deep.skipped.as_deref().unwrap().contains("fall outside every window"), "{deep:?}");
        let memory = task("memory-maintenance");
        assert!(memory.next_run.is_none() && memory.skipped.as_deref().unwrap().contains("no maintenance window"));
        let report = task("reports-daily");
        assert!(report.next_run.is_none() && report.skipped.as_deref().unwrap().contains("disabled"));
        let light = task("cleanup-light");
        assert_eq!((light.next_run, light.skipped.as_deref()), (light.next_scheduled, None));
        let view = snap.next_window().unwrap().unwrap();
        assert_eq!((view.open, view.opens_at.unwrap().to_rfc3339()), (false, "2026-11-22T00:00:00+00:00".into()));
        assert_eq!(view.admits, ["cleanup-deep"]);
        let runs: Vec<(String, String)> = view.runs.iter().map(|r| (r.job.clone(), r.at.to_rfc3339())).collect();
        assert_eq!(runs, [("cleanup-deep".to_owned(), "2026-11-22T02:00:00+00:00".to_owned())]);
        // Stopped automation skips every run.
        let stop = gate::Automation { running: false, changed_at: now, changed_by: "t".into(), reason: None };
        state.write_json(gate::AUTOMATION_FILE, &stop).unwrap();
        let snap = Snapshot::read(&settings, &state, now).unwrap();
        assert!(snap.tasks(&state, &[]).unwrap().iter().all(|t| t.next_run.is_none() && t.skipped.is_some()));
    }

    #[test]
    fn figures_count_runs_skips_and_interruptions_and_space_is_what_tiers_freed() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc();
        let freed = |n: u64| serde_json::json!({"dry_run": false, "targets": [{"tier": "logs", "bytes_freed": n}]});
        let runs = [
            record("c", Outcome::Success, now - Duration::days(1), 100, freed(9_700_000)),
            record("c", Outcome::Failed, now - Duration::days(2), 300, serde_json::Value::Null),
            record("c", Outcome::Skipped, now - Duration::days(3), 0, serde_json::Value::Null),
            record("c", Outcome::Interrupted, now - Duration::days(10), 200, serde_json::Value::Null),
            record("c", Outcome::DryRun, now - Duration::days(1), 5, freed(1_000)),
            record("c", Outcome::Success, now - Duration::days(20), 100, freed(300)),
        ];
        let week = Figures::of(runs.iter(), now - Duration::days(7));
        assert_eq!((week.runs, week.successes, week.failures, week.skipped, week.interrupted), (2, 1, 1, 1, 0));
        assert_eq!((week.success_rate, week.mean_duration_ms), (Some(0.5), Some(200)));
        let month = Figures::of(runs.iter(), now - Duration::days(30));
        assert_eq!((month.runs, month.interrupted, month.mean_duration_ms), (4, 1, Some(175)));
        assert_eq!(space_freed(runs.iter())["logs"], 9_700_300, "a dry run frees nothing");
        assert_eq!(Figures::of(std::iter::empty(), now).success_rate, None);
    }
}
