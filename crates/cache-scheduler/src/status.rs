//! `status`: every job with its schedule, next run, last run, outcome, duration and lock
//! holder, flagged when disabled, overdue (a scheduled run more than `scheduler.grace` ago
//! never started), failing `scheduler.max_failures` times in a row, or finishing suspiciously
//! fast (under a tenth of its median successful duration); and whether automation is on.

use cache_core::app::Context;
use cache_core::exit;
use cache_core::gate;
use cache_core::lock::JobLock;
use cache_core::output::{Format, millis};
use cache_core::runs::{Outcome, RUNS_FILE, RunRecord};
use cache_core::schedule::{self, Effective};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

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
    /// `disabled`, `overdue`, `failing`, `too_fast`, `skipped`.
    pub flags: Vec<String>,
}

/// A job's last run.
#[derive(Debug, Serialize)]
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
    settings: &cache_core::config::SchedulerSettings,
    holder: Option<String>,
) -> anyhow::Result<JobStatus> {
    let mut flags = Vec::new();
    if !job.enabled {
        flags.push("disabled".to_owned());
    }
    let next_run = if job.enabled {
        schedule::next_runs_in(&job.schedule, now, 1, &settings.timezone)?.first().copied()
    } else {
        None
    };
    let last = runs.iter().rev().find(|r| r.outcome != Outcome::Locked);
    if let Some(last) = last {
        // A run scheduled after the last one started, and longer ago than the grace: missed.
        let grace = chrono::Duration::from_std(settings.grace).unwrap_or(chrono::Duration::zero());
        let missed = schedule::next_runs_in(&job.schedule, last.started_at, 1, &settings.timezone)?
            .first()
            .is_some_and(|due| *due + grace < now);
        if job.enabled && missed && holder.is_none() {
            flags.push("overdue".to_owned());
        }
        let failures = runs
            .iter()
            .rev()
            .filter(|r| r.outcome != Outcome::Locked)
            .take_while(|r| r.outcome == Outcome::Failed)
            .count();
        if failures >= settings.max_failures as usize {
            flags.push(format!("failing ({failures} in a row)"));
        }
        if last.outcome == Outcome::Skipped {
            flags.push("skipped".to_owned());
        }
        let earlier: Vec<u64> =
            runs.iter().filter(|r| r.outcome == Outcome::Success && r.id != last.id).map(|r| r.duration_ms).collect();
        if last.outcome == Outcome::Success
            && earlier.len() >= 3
            && let Some(m) = median(earlier)
            && last.duration_ms * 10 < m
        {
            flags.push(format!(
                "too fast ({} against a median of {})",
                millis(last.duration_ms as f64),
                millis(m as f64)
            ));
        }
    }
    Ok(JobStatus {
        name: job.spec.name.to_owned(),
        schedule: job.schedule.clone(),
        command: job.spec.command.to_owned(),
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
    })
}

/// Runs `status`.
pub fn run(ctx: &Context) -> anyhow::Result<u8> {
    let now = cache_core::clock::now()?;
    let settings = &ctx.config.scheduler;
    let all: Vec<RunRecord> = ctx.state.read_jsonl(RUNS_FILE)?;
    let automation = gate::automation(&ctx.state)?;
    let mut jobs = Vec::new();
    for job in schedule::all(settings, &ctx.state)? {
        let runs: Vec<&RunRecord> = all.iter().filter(|r| r.job == job.spec.name).collect();
        let holder = JobLock::holder(&ctx.state, job.spec.lock)?
            .map(|h| format!("pid {} on {} since {} ({})", h.pid, h.host, h.started_at.format("%H:%M:%S"), h.command));
        jobs.push(job_status(&job, &runs, now, settings, holder)?);
    }
    let running = automation.as_ref().is_none_or(|a| a.running);
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({
            "automation": { "running": running, "state": automation },
            "timezone": settings.timezone,
            "jobs": jobs,
        }))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = printer.table();
    table.set_header(["Job", "Schedule", "Next run", "Last run", "Outcome", "Took", "Lock", "Flags"]);
    for j in &jobs {
        table.add_row(vec![
            j.name.clone(),
            j.schedule.clone(),
            j.next_run.map_or("-".into(), |t| t.format("%m-%d %H:%M").to_string()),
            j.last_run.as_ref().map_or("never".into(), |r| r.started_at.format("%m-%d %H:%M").to_string()),
            j.last_run.as_ref().map_or(String::new(), |r| format!("{:?}", r.outcome).to_lowercase()),
            j.last_run.as_ref().map_or(String::new(), |r| millis(r.duration_ms as f64)),
            j.lock_holder.clone().unwrap_or_default(),
            j.flags.join(", "),
        ]);
    }
    let state = match &automation {
        Some(a) if !a.running => format!(
            "automation: STOPPED since {} by {}{}",
            a.changed_at.format("%Y-%m-%d %H:%M UTC"),
            a.changed_by,
            a.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        _ => "automation: on".to_owned(),
    };
    printer.always(&format!("{state}; times in UTC, schedules in {}\n{table}", settings.timezone))?;
    Ok(exit::SUCCESS)
}
