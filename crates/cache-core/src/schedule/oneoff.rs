//! One-off runs: a job of the catalogue run once at a given time, asked for by
//! `cache-optimizer schedule` (an optimization in the next low-usage window) or
//! `cache-scheduler run JOB --at TIME`, kept in `scheduler/oneoff.json` and run by
//! `cache-scheduler tick` (which the installed schedule runs every minute).
//!
//! Every change to the document is made under an exclusive `flock` on `scheduler/oneoff.lock`,
//! read, changed and written atomically ([`update`]). A tick marks a one-off `running` before
//! it starts it and `done` (or `failed`, `skipped`) after: a tick killed in between leaves it
//! `running`, and the next tick marks it `interrupted` instead of running it again, so a
//! one-off never runs twice.

use std::io::Write as _;

use anyhow::Context as _;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::state::StateDir;

/// The one-off runs, in the state directory.
pub const ONEOFF_FILE: &str = "scheduler/oneoff.json";
/// The lock every change to [`ONEOFF_FILE`] is made under.
const LOCK_FILE: &str = "scheduler/oneoff.lock";
/// Finished one-offs are kept this long (for `status` and the dashboard), then dropped.
const KEEP_FINISHED_DAYS: i64 = 30;

/// Where a one-off is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for its time.
    #[default]
    Pending,
    /// Started by a tick (`runner`), not finished yet.
    Running,
    /// Ran and succeeded.
    Done,
    /// Ran and failed (or could not be started).
    Failed,
    /// A gate of its job did not let it run (the reason is in `error`).
    Skipped,
    /// Its tick ended before it finished (killed): never run again.
    Interrupted,
}

impl Status {
    /// Whether it is over, one way or another.
    pub fn finished(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Interrupted => "interrupted",
        })
    }
}

/// One one-off run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneOff {
    /// Its id (`JOB-YYYYMMDD-HHMM`).
    pub id: String,
    /// The job it runs as: its gates, lock and run record.
    pub job: String,
    /// The command line (one of the toolkit's tools with its arguments).
    pub command: String,
    /// When to run it.
    pub at: DateTime<Utc>,
    /// Why then.
    pub reason: String,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Who asked for it (tool and subcommand).
    #[serde(default)]
    pub created_by: String,
    /// Run as an emergency: past the maintenance windows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emergency: bool,
    /// Where it is.
    #[serde(default)]
    pub status: Status,
    /// When a tick started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// The tick that started it: `pid N on HOST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// The exit code of its command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The id of its run record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Why it failed, was skipped or interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OneOff {
    /// A pending one-off of `job` running `command` at `at`, id `JOB-YYYYMMDD-HHMM`.
    pub fn new(job: &str, command: &str, at: DateTime<Utc>, reason: &str, by: &str) -> anyhow::Result<Self> {
        Ok(Self {
            id: format!("{job}-{}", at.format("%Y%m%d-%H%M")),
            job: job.to_owned(),
            command: command.to_owned(),
            at,
            reason: reason.to_owned(),
            created_at: crate::clock::now()?,
            created_by: by.to_owned(),
            emergency: false,
            status: Status::Pending,
            started_at: None,
            runner: None,
            ended_at: None,
            exit_code: None,
            run_id: None,
            error: None,
        })
    }
}

/// The file's document.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OneOffs {
    /// One-off runs, soonest first: pending ones, and finished ones for a while.
    pub jobs: Vec<OneOff>,
}

impl OneOffs {
    /// The pending ones.
    pub fn pending(&self) -> impl Iterator<Item = &OneOff> {
        self.jobs.iter().filter(|j| j.status == Status::Pending)
    }
}

/// The document as it is (read without the lock: for showing).
pub fn read(state: &StateDir) -> anyhow::Result<OneOffs> {
    Ok(state.read_json(ONEOFF_FILE)?.unwrap_or_default())
}

/// Changes the document under its lock: `change` gets it as it is now; when it returns `Ok`
/// the document is written back atomically (sorted by time, finished one-offs older than 30 days
/// dropped), otherwise nothing is written.
pub fn update<T>(state: &StateDir, change: impl FnOnce(&mut OneOffs) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let path = state.path(LOCK_FILE);
    if let Some(parent) = path.parent() {
        crate::state::create_private_dir(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening `{}`", path.display()))?;
    file.lock().with_context(|| format!("locking `{}`", path.display()))?;
    let _ = writeln!(file, "{}", std::process::id());
    let mut doc = read(state)?;
    let out = change(&mut doc)?;
    let now = crate::clock::now()?;
    doc.jobs.retain(|j| !j.status.finished() || j.at > now - Duration::days(KEEP_FINISHED_DAYS));
    doc.jobs.sort_by_key(|j| j.at);
    state.write_json(ONEOFF_FILE, &doc)?;
    // The lock goes with the file, closed here.
    drop(file);
    Ok(out)
}

/// Adds `oneoff`, refusing one with the same id that has not run yet.
pub fn add(state: &StateDir, oneoff: OneOff) -> anyhow::Result<()> {
    update(state, |doc| {
        if let Some(same) = doc.jobs.iter().find(|j| j.id == oneoff.id && !j.status.finished()) {
            return Err(UsageError(format!(
                "`{}` is already scheduled at {} ({})",
                same.job,
                same.at.format("%Y-%m-%d %H:%M UTC"),
                same.id
            ))
            .into());
        }
        doc.jobs.retain(|j| j.id != oneoff.id);
        doc.jobs.push(oneoff);
        Ok(())
    })
}

/// Cancels pending one-off `id`.
pub fn cancel(state: &StateDir, id: &str) -> anyhow::Result<OneOff> {
    update(state, |doc| {
        let i = doc.jobs.iter().position(|j| j.id == id && j.status == Status::Pending).ok_or_else(|| {
            let pending: Vec<&str> = doc.pending().map(|j| j.id.as_str()).collect();
            UsageError(format!(
                "no pending one-off `{id}`; pending: {}",
                if pending.is_empty() { "none".to_owned() } else { pending.join(", ") }
            ))
        })?;
        Ok(doc.jobs.remove(i))
    })
}

/// Parses a time: RFC 3339, or `YYYY-MM-DD HH:MM` in UTC.
pub fn parse_at(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").map(|t| t.and_utc()).map_err(|_| {
        UsageError(format!("--at `{text}`: expected RFC 3339 (2026-11-23T03:00:00Z) or `YYYY-MM-DD HH:MM` (UTC)"))
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_accepts_two_forms() {
        assert_eq!(parse_at("2026-11-23 03:00").unwrap(), parse_at("2026-11-23T03:00:00Z").unwrap());
        assert!(parse_at("tomorrow").is_err());
    }

    #[test]
    fn one_offs_are_added_once_cancelled_and_kept_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let t = |s: &str| parse_at(s).unwrap();
        add(&state, OneOff::new("backup", "cache-backup create -q", t("2026-11-23 03:00"), "test", "test").unwrap())
            .unwrap();
        add(
            &state,
            OneOff::new("optimize", "cache-optimizer run --yes -q", t("2026-11-22 03:00"), "test", "test").unwrap(),
        )
        .unwrap();
        let again = OneOff::new("backup", "cache-backup create -q", t("2026-11-23 03:00"), "test", "test").unwrap();
        assert!(add(&state, again).unwrap_err().to_string().contains("already scheduled"));
        let doc = read(&state).unwrap();
        assert_eq!(
            doc.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            ["optimize-20261122-0300", "backup-20261123-0300"]
        );
        assert!(cancel(&state, "nope").unwrap_err().to_string().contains("optimize-20261122-0300"));
        cancel(&state, "backup-20261123-0300").unwrap();
        assert_eq!(read(&state).unwrap().jobs.len(), 1);
    }
}
