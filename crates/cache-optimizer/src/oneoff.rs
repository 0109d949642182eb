//! `schedule`: a one-off optimization at a given time or in the next low-usage window, left in
//! the scheduler's state (`scheduler/oneoff.json`, [`cache_core::schedule::oneoff`]) for
//! `cache-scheduler tick`, which the installed schedule runs every minute, to run once as the
//! `optimize` job.

use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention};
use cache_core::history::WINDOWS_FILE;
use cache_core::output::Format;
use cache_core::schedule::oneoff;
pub use cache_core::schedule::oneoff::{ONEOFF_FILE, OneOff, OneOffs, parse_at};
use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::Value;

/// The job a one-off optimization runs as (its gates, lock and run record).
const JOB: &str = "optimize";
/// Its command.
const COMMAND: &str = "cache-optimizer run --yes -q";

/// What `schedule` is asked to do.
#[derive(Debug)]
pub enum Request {
    /// Run at this time (RFC 3339, or `YYYY-MM-DD HH:MM` in UTC).
    At(String),
    /// Run at the start of the next low-usage window.
    NextWindow,
    /// List the one-off optimizations.
    List,
    /// Cancel one.
    Cancel(String),
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
    let now = cache_core::clock::now()?;
    let printer = &ctx.printer;
    let (at, reason) = match request {
        Request::List => {
            let doc = oneoff::read(&ctx.state)?;
            let mine: Vec<&OneOff> = doc.jobs.iter().filter(|j| j.job == JOB).collect();
            if printer.format() == Format::Json {
                printer.json(&serde_json::json!({ "jobs": mine }))?;
            } else {
                let mut table = printer.table();
                table.set_header(["Id", "At", "Command", "Status", "Why"]);
                for j in mine {
                    table.add_row(vec![
                        j.id.clone(),
                        j.at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        j.command.clone(),
                        j.status.to_string(),
                        j.reason.clone(),
                    ]);
                }
                printer.always(&format!("{table}"))?;
            }
            return Ok(exit::SUCCESS);
        }
        Request::Cancel(id) => {
            oneoff::cancel(&ctx.state, &id)?;
            printer.info(&format!("cancelled {id}"))?;
            return Ok(exit::SUCCESS);
        }
        Request::At(text) => {
            let at = parse_at(&text)?;
            if at <= now {
                return Err(UsageError(format!("--at {at}: that is in the past")).into());
            }
            (at, "at the time asked for".to_owned())
        }
        Request::NextWindow => {
            let windows: Value = ctx.state.read_json(WINDOWS_FILE)?.ok_or_else(|| {
                UsageError(
                    "no low-usage windows yet: run `cache-analytics windows` after a day of collection, or pass --at"
                        .into(),
                )
            })?;
            next_window(&windows, now)
                .ok_or_else(|| UsageError("cache-analytics found no low-usage window; pass --at".into()))?
        }
    };
    let job = OneOff::new(JOB, COMMAND, at, &reason, "cache-optimizer schedule")?;
    oneoff::add(&ctx.state, job.clone())?;
    if printer.format() == Format::Json {
        printer.json(&job)?;
    } else {
        printer.info(&format!(
            "scheduled {}: `{}` at {} ({}); `cache-scheduler tick` runs it then",
            job.id,
            job.command,
            job.at.format("%Y-%m-%d %H:%M UTC"),
            job.reason
        ))?;
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
