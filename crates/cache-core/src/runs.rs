//! Run records: every run of every job appends one record to `runs.jsonl`, and the last run
//! of each job is kept in `jobs/<job>.json` for the scheduler's status and the dashboard.
//!
//! The shape follows seed 003's `maintenance_executions`: id, status, start, end, duration,
//! steps, metrics (our `summary`) and error.

use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::StateDir;

/// History of every run.
pub const RUNS_FILE: &str = "runs.jsonl";

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything it was asked to do was done.
    Success,
    /// It finished with warnings or some failed items.
    Partial,
    /// It failed.
    Failed,
    /// It did not run (e.g. automation stopped, outside a window).
    Skipped,
    /// Another run held the job's lock.
    Locked,
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What the step was, e.g. `probe redis/main`.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub duration_ms: u64,
    /// A short description of the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One run of one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique id: start time, host-local pid and a counter-free suffix.
    pub id: String,
    /// Job name (`health-check`, ...).
    pub job: String,
    /// Binary and subcommand, e.g. `cache-health check`.
    pub command: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub ended_at: DateTime<Utc>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The process exit code.
    pub exit_code: u8,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// Figures of the run (per command).
    pub summary: serde_json::Value,
    /// The error that ended it, if any (secrets scrubbed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run in progress: collects steps until [`RunLog::finish`].
#[derive(Debug)]
pub struct RunLog {
    job: String,
    command: String,
    started_at: DateTime<Utc>,
    start: Instant,
    steps: Mutex<Vec<Step>>,
}

impl RunLog {
    /// Starts the record of a run of `job`, at [`crate::clock::now`] (so drills and tests that fix
    /// the clock see their runs at the time they chose).
    pub fn begin(job: &str, command: &str) -> Self {
        Self {
            job: job.to_owned(),
            command: command.to_owned(),
            started_at: crate::clock::now().unwrap_or_else(|_| Utc::now()),
            start: Instant::now(),
            steps: Mutex::new(Vec::new()),
        }
    }

    /// The job name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The id its record will have ([`RunRecord::id`]): start time and process id.
    pub fn id(&self) -> String {
        format!("{}-{}", self.started_at.format("%Y%m%dT%H%M%S%.3fZ"), std::process::id())
    }

    /// Adds a finished step.
    pub fn step(&self, name: impl Into<String>, outcome: Outcome, duration_ms: u64, detail: Option<String>) {
        let step = Step { name: name.into(), outcome, duration_ms, detail };
        self.steps.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(step);
    }

    /// Ends the run and builds its record.
    pub fn finish(
        self,
        outcome: Outcome,
        exit_code: u8,
        summary: serde_json::Value,
        error: Option<String>,
    ) -> RunRecord {
        let elapsed = self.start.elapsed();
        let ended_at = self.started_at + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero());
        let pid = std::process::id();
        RunRecord {
            id: self.id(),
            job: self.job,
            command: self.command,
            host: crate::system::hostname(),
            pid,
            started_at: self.started_at,
            ended_at,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            outcome,
            exit_code,
            steps: self.steps.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
            summary,
            error: error.map(|e| crate::redact::scrub(&e).into_owned()),
        }
    }
}

/// Appends `record` to the history and, unless it was locked out, makes it the job's last run
/// (`jobs/<job>.json`), and its last success (`jobs/<job>.success.json`) when it succeeded, so
/// readers of "last run" and "last success" never read the whole history.
pub fn save(state: &StateDir, record: &RunRecord) -> anyhow::Result<()> {
    state.append_jsonl(RUNS_FILE, record)?;
    // A corrupt last-run file is an error naming it, never replaced in silence.
    last(state, &record.job)?;
    last_success(state, &record.job)?;
    if record.outcome != Outcome::Locked {
        state.write_json(&format!("jobs/{}.json", record.job), record)?;
    }
    if record.outcome == Outcome::Success {
        state.write_json(&format!("jobs/{}.success.json", record.job), record)?;
    }
    Ok(())
}

/// For each job that has run: its last run and its last successful run.
pub fn summary_by_job(
    state: &StateDir,
) -> anyhow::Result<std::collections::BTreeMap<String, (RunRecord, Option<RunRecord>)>> {
    let mut jobs = std::collections::BTreeMap::new();
    let dir = state.path("jobs");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(jobs),
        Err(e) => return Err(anyhow::anyhow!("reading `{}`: {e}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let job = name.strip_suffix(".json")?;
            (!job.ends_with(".success")).then(|| job.to_owned())
        })
        .collect();
    names.sort();
    for job in names {
        if let Some(last) = last(state, &job)? {
            let success = last_success(state, &job)?;
            jobs.insert(job, (last, success));
        }
    }
    Ok(jobs)
}

/// The last successful run of `job`, if any.
pub fn last_success(state: &StateDir, job: &str) -> anyhow::Result<Option<RunRecord>> {
    state.read_json(&format!("jobs/{job}.success.json"))
}

/// The last run of `job`, if any.
pub fn last(state: &StateDir, job: &str) -> anyhow::Result<Option<RunRecord>> {
    state.read_json(&format!("jobs/{job}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_runs_are_history_and_last() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let log = RunLog::begin("health-check", "cache-health check");
        log.step("probe redis/main", Outcome::Success, 3, None);
        let id = log.id();
        let record = log.finish(Outcome::Success, 0, serde_json::json!({"targets": 1}), None);
        assert_eq!(record.id, id);
        save(&state, &record).unwrap();
        let locked = RunLog::begin("health-check", "cache-health check").finish(
            Outcome::Locked,
            75,
            serde_json::Value::Null,
            Some("held".into()),
        );
        save(&state, &locked).unwrap();
        let history: Vec<RunRecord> = state.read_jsonl(RUNS_FILE).unwrap();
        assert_eq!(history, vec![record.clone(), locked]);
        assert_eq!(last(&state, "health-check").unwrap(), Some(record.clone()));
        let failed = RunLog::begin("health-check", "cache-health check").finish(
            Outcome::Failed,
            2,
            serde_json::Value::Null,
            None,
        );
        save(&state, &failed).unwrap();
        let summary = summary_by_job(&state).unwrap();
        assert_eq!(summary["health-check"], (failed, Some(record)));
        assert_eq!(summary.len(), 1);
    }

    #[test]
    fn a_garbled_last_run_file_is_named_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        std::fs::create_dir_all(state.path("jobs")).unwrap();
        let garbled = b"{\"job\": \"cleanup\", \"outc";
        std::fs::write(state.path("jobs/cleanup.json"), garbled).unwrap();
        let record =
            RunLog::begin("cleanup", "cache-cleanup light").finish(Outcome::Success, 0, serde_json::Value::Null, None);
        let e = format!("{:#}", save(&state, &record).unwrap_err());
        assert!(e.contains("jobs/cleanup.json"), "{e}");
        assert_eq!(std::fs::read(state.path("jobs/cleanup.json")).unwrap(), garbled);
    }
}
