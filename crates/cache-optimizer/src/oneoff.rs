//! `schedule`: a one-off optimization at a given time or in the next low-usage window, left in
//! the scheduler's state (`scheduler/oneoff.json`) for cache-scheduler to run.

use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention};
use cache_core::history::WINDOWS_FILE;
use cache_core::output::Format;
use chrono::{DateTime, Duration, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The one-off jobs, in the state directory.
pub const ONEOFF_FILE: &str = "scheduler/oneoff.json";

/// One scheduled one-off run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneOff {
    /// Its id.
    pub id: String,
    /// The job it runs as (its lock).
    pub job: String,
    /// The command line.
    pub command: String,
    /// When to run it.
    pub at: DateTime<Utc>,
    /// Why then.
    pub reason: String,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
}

/// The file's document.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OneOffs {
    /// Pending one-off runs, soonest first.
    pub jobs: Vec<OneOff>,
}

/// What `schedule` is asked to do.
#[derive(Debug)]
pub enum Request {
    /// Run at this time (RFC 3339, or `YYYY-MM-DD HH:MM` in UTC).
    At(String),
    /// Run at the start of the next low-usage window.
    NextWindow,
    /// List pending runs.
    List,
    /// Cancel one.
    Cancel(String),
}

/// Parses `--at`.
pub fn parse_at(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").map(|t| t.and_utc()).map_err(|_| {
        UsageError(format!("--at `{text}`: expected RFC 3339 (2026-11-23T03:00:00Z) or `YYYY-MM-DD HH:MM` (UTC)"))
            .into()
    })
}

/// The next start, after `now`, of the best window in `analytics/windows.json`'s document.
pub fn next_window(windows: &Value, now: DateTime<Utc>) -> Option<(DateTime<Utc>, String)> {
    let best = windows["windows"].as_array()?.first()?;
    let hour = u32::try_from(best["start_hour"].as_u64()?).ok()?;
    let today = now.date_naive().and_hms_opt(hour, 0, 0)?.and_utc();
    let at = if today > now { today } else { today + Duration::days(1) };
    let reason = format!(
        "low-usage window {hour:02}:00 UTC for {} h (confidence {:.2})",
        best["duration_hours"].as_u64().unwrap_or(0),
        best["confidence"].as_f64().unwrap_or(0.0)
    );
    Some((at.with_second(0)?, reason))
}

/// Runs `schedule`.
pub fn run(common: &CommonArgs, format: Format, request: Request) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let mut doc: OneOffs = ctx.state.read_json(ONEOFF_FILE)?.unwrap_or_default();
    let now = Utc::now();
    let printer = &ctx.printer;
    let added = match request {
        Request::List => None,
        Request::Cancel(id) => {
            let before = doc.jobs.len();
            doc.jobs.retain(|j| j.id != id);
            if doc.jobs.len() == before {
                return Err(UsageError(format!("no scheduled optimization `{id}` (schedule --list shows them)")).into());
            }
            ctx.state.write_json(ONEOFF_FILE, &doc)?;
            printer.info(&format!("cancelled {id}"))?;
            return Ok(exit::SUCCESS);
        }
        Request::At(text) => {
            let at = parse_at(&text)?;
            if at <= now {
                return Err(UsageError(format!("--at {at}: that is in the past")).into());
            }
            Some((at, "at the time asked for".to_owned()))
        }
        Request::NextWindow => {
            let windows: Value = ctx.state.read_json(WINDOWS_FILE)?.ok_or_else(|| {
                UsageError(
                    "no low-usage windows yet: run `cache-analytics windows` after a day of collection, or pass --at"
                        .into(),
                )
            })?;
            Some(
                next_window(&windows, now)
                    .ok_or_else(|| UsageError("cache-analytics found no low-usage window; pass --at".into()))?,
            )
        }
    };
    if let Some((at, reason)) = added {
        let job = OneOff {
            id: format!("optimize-{}", at.format("%Y%m%d-%H%M")),
            job: "optimize".into(),
            command: "cache-optimizer run --yes -q".into(),
            at,
            reason,
            created_at: now,
        };
        if doc.jobs.iter().any(|j| j.id == job.id) {
            return Err(UsageError(format!("an optimization is already scheduled at {at} ({})", job.id)).into());
        }
        doc.jobs.push(job.clone());
        doc.jobs.sort_by_key(|j| j.at);
        ctx.state.write_json(ONEOFF_FILE, &doc)?;
        if printer.format() == Format::Json {
            printer.json(&job)?;
        } else {
            printer.info(&format!(
                "scheduled {}: `{}` at {} ({})",
                job.id,
                job.command,
                job.at.format("%Y-%m-%d %H:%M UTC"),
                job.reason
            ))?;
        }
        return Ok(exit::SUCCESS);
    }
    if printer.format() == Format::Json {
        printer.json(&doc)?;
    } else {
        let mut table = printer.table();
        table.set_header(["Id", "At", "Command", "Why"]);
        for j in &doc.jobs {
            table.add_row(vec![
                j.id.clone(),
                j.at.format("%Y-%m-%d %H:%M UTC").to_string(),
                j.command.clone(),
                j.reason.clone(),
            ]);
        }
        printer.always(&format!("{table}"))?;
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_window_is_today_or_tomorrow() {
        let w = serde_json::json!({ "windows": [{ "start_hour": 3, "duration_hours": 2, "confidence": 0.8 }] });
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(next_window(&w, t("2026-11-22T01:00:00Z")).unwrap().0, t("2026-11-22T03:00:00Z"));
        assert_eq!(next_window(&w, t("2026-11-22T03:00:00Z")).unwrap().0, t("2026-11-23T03:00:00Z"));
        assert!(next_window(&serde_json::json!({ "windows": [] }), t("2026-11-22T01:00:00Z")).is_none());
    }

    #[test]
    fn at_accepts_two_forms() {
        assert_eq!(parse_at("2026-11-23 03:00").unwrap(), parse_at("2026-11-23T03:00:00Z").unwrap());
        assert!(parse_at("tomorrow").is_err());
    }
}
