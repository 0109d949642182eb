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
    /// Ended before it finished: stopped by SIGTERM or SIGINT at a safe point, or found killed
    /// (its lock left with its holder's record) by the next run.
    Interrupted,
    /// A dry run: it changed nothing, so it is neither the job's last run nor a success that
    /// satisfies a dependency.
    DryRun,
}

impl Outcome {
    /// Whether a run that ended so stands for a run of its job (its last run, a failure in a
    /// row, a run on time): a run locked out never ran, and a dry run changed nothing.
    pub fn is_a_run(self) -> bool {
        !matches!(self, Self::Locked | Self::DryRun)
    }

    /// Whether it counts as a failure of its job (one in a row for `failing`).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Partial | Self::Interrupted)
    }

    /// The name runs.jsonl and the status pages use (`dry_run`, `locked`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Locked => "locked",
            Self::Interrupted => "interrupted",
            Self::DryRun => "dry_run",
        }
    }
}

/// What started a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The installed schedule (`--scheduled JOB`).
    Cron,
    /// A person, or a script, at a shell (records written before triggers were kept read as
    /// this).
    #[default]
    Manual,
    /// `--emergency`: a heavy job run outside the maintenance windows.
    Emergency,
    /// A one-off run by `cache-scheduler tick` at its time.
    Oneoff,
    /// An alert rule's automatic action (cache-health monitor).
    Remediation,
    /// A request to the maintenance API (`POST /api/system/maintenance/execute/{task}`).
    Api,
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
    /// What started it.
    #[serde(default)]
    pub trigger: Trigger,
    /// The lock it ran under (`locks/<lock>.lock`), when it differs from the job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// The maintenance window that admitted it, for a heavy scheduled job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// A run in progress: collects steps until [`RunLog::finish`].
#[derive(Debug)]
pub struct RunLog {
    id: Option<String>,
    job: String,
    command: String,
    trigger: Trigger,
    lock: Option<String>,
    window: Option<String>,
    started_at: DateTime<Utc>,
    start: Instant,
    steps: Mutex<Vec<Step>>,
}

impl RunLog {
    /// Starts the record of a run of `job`, at [`crate::clock::now`] (so drills and tests that fix
    /// the clock see their runs at the time they chose).
    pub fn begin(job: &str, command: &str) -> Self {
        Self {
            id: None,
            job: job.to_owned(),
            command: command.to_owned(),
            trigger: Trigger::Manual,
            lock: None,
            window: None,
            started_at: crate::clock::now().unwrap_or_else(|_| Utc::now()),
            start: Instant::now(),
            steps: Mutex::new(Vec::new()),
        }
    }

    /// Records what started the run, the lock it runs under (kept only when it is not the
    /// job's own name) and the window that admitted it.
    #[must_use]
    pub fn started_by(mut self, trigger: Trigger, lock: &str, window: Option<String>) -> Self {
        self.trigger = trigger;
        self.lock = (lock != self.job).then(|| lock.to_owned());
        self.window = window;
        self
    }

    /// Records the maintenance window that admitted the run.
    #[must_use]
    pub fn admitted_by(mut self, window: Option<String>) -> Self {
        self.window = window;
        self
    }

    /// Gives the record the id `id` (one [`parse_run_id`] accepts) instead of its own.
    #[must_use]
    pub fn with_id(mut self, id: Option<String>) -> Self {
        self.id = id;
        self
    }

    /// The job name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The id its record will have ([`RunRecord::id`]): the one given by [`RunLog::with_id`],
    /// else start time and process id.
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| run_id(self.started_at, std::process::id()))
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
            trigger: self.trigger,
            lock: self.lock,
            window: self.window,
        }
    }
}

/// The id of a run that started at `started_at` in process `pid`: `20261122T010000.123Z-4242`.
/// Ids begin with their start time, so that the history can be searched from there.
pub fn run_id(started_at: DateTime<Utc>, pid: u32) -> String {
    format!("{}-{pid}", started_at.format(ID_TIME))
}

/// How a run id begins: its start time.
const ID_TIME: &str = "%Y%m%dT%H%M%S%.3fZ";

/// When the run of id `id` started, read from the id (`None` for an id not made by
/// [`run_id`]).
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let time = id.get(..id.find('Z')? + 1)?;
    chrono::NaiveDateTime::parse_from_str(time, ID_TIME).ok().map(|t| t.and_utc())
}

/// Checks a run id given on the command line (`--run-id`): a time as [`run_id`] makes them,
/// then `-` and letters, digits or `-`, at most 64 characters in all.
pub fn parse_run_id(id: &str) -> Result<String, String> {
    let rest = id_time(id).and_then(|_| id.split_once("Z-")).map(|(_, rest)| rest);
    match rest {
        Some(rest)
            if id.len() <= 64 && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Ok(id.to_owned())
        }
        _ => Err(format!("`{id}` is no run id (like 20261122T010000.123Z-4242)")),
    }
}

/// Appends `record` to the history and, unless it was locked out or a dry run, makes it the
/// job's last run (`jobs/<job>.json`), and its last success (`jobs/<job>.success.json`) when it
/// succeeded, so readers of "last run" and "last success" never read the whole history. A dry
/// run changed nothing: it never stands for the job's run, nor opens a dependency's gate.
pub fn save(state: &StateDir, record: &RunRecord) -> anyhow::Result<()> {
    state.append_jsonl(RUNS_FILE, record)?;
    // A corrupt last-run file is an error naming it, never replaced in silence.
    last(state, &record.job)?;
    last_success(state, &record.job)?;
    if record.outcome.is_a_run() {
        state.write_json(&format!("jobs/{}.json", record.job), record)?;
    }
    if record.outcome == Outcome::Success {
        state.write_json(&format!("jobs/{}.success.json", record.job), record)?;
    }
    Ok(())
}

/// The `interrupted` record of a run killed while it held its lock, from what it left in the
/// lock file (`holder`), found by the next run of the same lock.
pub fn interrupted(holder: &crate::lock::LockHolder, why: &str) -> RunRecord {
    let found = crate::clock::now().unwrap_or_else(|_| Utc::now());
    let job = holder.job.clone().unwrap_or_else(|| holder.command.clone());
    RunRecord {
        id: holder.run_id.clone().unwrap_or_else(|| run_id(holder.started_at, holder.pid)),
        job,
        command: holder.command.clone(),
        host: holder.host.clone(),
        pid: holder.pid,
        started_at: holder.started_at,
        ended_at: found.max(holder.started_at),
        duration_ms: u64::try_from((found - holder.started_at).num_milliseconds()).unwrap_or(0),
        outcome: Outcome::Interrupted,
        exit_code: 137,
        steps: Vec::new(),
        summary: serde_json::Value::Null,
        error: Some(format!("{why} (found at {})", found.format("%Y-%m-%d %H:%M:%S UTC"))),
        trigger: holder.trigger,
        lock: None,
        window: None,
    }
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
    fn run_ids_begin_with_their_time_and_given_ones_are_checked() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T01:00:00.123Z").unwrap().to_utc();
        let id = run_id(t, 4242);
        assert_eq!(id, "20261122T010000.123Z-4242");
        assert_eq!(id_time(&id), Some(t));
        assert_eq!(parse_run_id("20261122T010000.123Z-4242-7").as_deref(), Ok("20261122T010000.123Z-4242-7"));
        for bad in
            ["", "x", "20261122T010000.123Z", "20261122T010000.123Z-", "20261122T010000.123Z-a b", "2026-11-22-1"]
        {
            assert!(parse_run_id(bad).is_err(), "{bad:?}");
        }
        assert!(parse_run_id(&format!("20261122T010000.123Z-{}", "9".repeat(60))).is_err(), "too long");
    }

    #[test]
    fn queries_page_newest_first_and_find_a_run_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-11-22T01:00:00Z").unwrap().to_utc();
        let mut ids = Vec::new();
        for i in 0..5 {
            let mut log = RunLog::begin("backup", "cache-backup create").with_id(None);
            log.started_at = t0 + chrono::Duration::minutes(i);
            let record = log.finish(Outcome::Success, 0, serde_json::Value::Null, None);
            ids.push(record.id.clone());
            save(&state, &record).unwrap();
        }
        let page = |offset, limit| {
            let found = query(&state, &Query { offset, limit, ..Query::default() }).unwrap();
            assert_eq!(found.matched, 5);
            found.executions.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(page(0, 2), [ids[4].clone(), ids[3].clone()]);
        assert_eq!(page(2, 2), [ids[2].clone(), ids[1].clone()]);
        assert_eq!(page(4, 2), [ids[0].clone()]);
        assert!(page(9, 2).is_empty());
        let until =
            query(&state, &Query { until: Some(t0 + chrono::Duration::minutes(2)), ..Query::default() }).unwrap();
        assert_eq!(until.matched, 2);
        assert_eq!(find(&state, &ids[3]).unwrap().map(|r| r.id), Some(ids[3].clone()));
        assert_eq!(find(&state, "20261122T010000.000Z-1").unwrap(), None);
        let given = RunLog::begin("backup", "x").with_id(Some("20261122T010000.000Z-1-0".into()));
        assert_eq!(given.id(), "20261122T010000.000Z-1-0");
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

/// Which run records to list ([`query`]).
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Only this job's runs.
    pub job: Option<String>,
    /// Only runs started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs started before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only runs that ended so.
    pub outcome: Option<Outcome>,
    /// Leave out this many of the newest that matched (paging).
    pub offset: usize,
    /// At most this many, newest first after `offset` (0: all that matched).
    pub limit: usize,
}

/// What [`query`] found, and what it could not read.
#[derive(Clone, Debug, Serialize)]
pub struct Executions {
    /// The runs matched, newest first, at most `limit`.
    pub executions: Vec<RunRecord>,
    /// How many matched in all (more than shown when `offset` or `limit` cut them).
    pub matched: usize,
    /// Lines of the history that were no run record (skipped, counted).
    pub bad_lines: u64,
    /// Bytes of the span the read cap left unread (older runs not seen).
    pub unread_bytes: u64,
}

/// Bytes of run history a query reads at most.
const QUERY_MAX_BYTES: u64 = 64 << 20;

/// The run records matching `q`, newest first, from the history and its rotated segments;
/// the shell's `cache-scheduler history` and the maintenance API read runs through it.
pub fn query(state: &StateDir, q: &Query) -> anyhow::Result<Executions> {
    let span = q.since.map_or(crate::state::Span::All, crate::state::Span::Since);
    let history: crate::state::History<RunRecord> = state.read_history(RUNS_FILE, span, QUERY_MAX_BYTES)?;
    let mut matched: Vec<RunRecord> = history
        .records
        .into_iter()
        .filter(|r| q.job.as_deref().is_none_or(|j| r.job == j))
        .filter(|r| q.since.is_none_or(|t| r.started_at >= t))
        .filter(|r| q.until.is_none_or(|t| r.started_at < t))
        .filter(|r| q.outcome.is_none_or(|o| r.outcome == o))
        .collect();
    matched.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    let total = matched.len();
    matched.drain(..q.offset.min(total));
    if q.limit > 0 {
        matched.truncate(q.limit);
    }
    Ok(Executions {
        executions: matched,
        matched: total,
        bad_lines: history.bad_lines,
        unread_bytes: history.unread_bytes,
    })
}

/// The run record of id `id`, if the history (rotated segments included, under the query's
/// read cap) holds one. The id's time narrows the search to the months from a month before it.
pub fn find(state: &StateDir, id: &str) -> anyhow::Result<Option<RunRecord>> {
    let search = |span| -> anyhow::Result<Option<RunRecord>> {
        let history: crate::state::History<RunRecord> = state.read_history(RUNS_FILE, span, QUERY_MAX_BYTES)?;
        Ok(history.records.into_iter().rev().find(|r| r.id == id))
    };
    // A killed run's record starts when its lock was taken, a moment before its id's time (by
    // the host's clock, where the id has the run's, which tests and drills may fix).
    if let Some(t) = id_time(id)
        && let Some(found) = search(crate::state::Span::Since(t - chrono::Duration::days(31)))?
    {
        return Ok(Some(found));
    }
    search(crate::state::Span::All)
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [Outcome; 7] = [
            Outcome::Success,
            Outcome::Partial,
            Outcome::Failed,
            Outcome::Skipped,
            Outcome::Locked,
            Outcome::Interrupted,
            Outcome::DryRun,
        ];
        ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| {
            format!("`{s}` is no outcome: {}", ALL.iter().map(|o| o.name()).collect::<Vec<_>>().join(", "))
        })
    }
}
