//! `optimize` (seed 000's SmartScheduler):
//!
//! - **Adaptive frequency**: a performance score from the last day of analytics history moves
//!   each repeating job's interval: above 0.9 the cache is fine and the job runs 1.2 times less
//!   often, under 0.7 it needs attention and runs 1.5 times more often; within
//!   `scheduler.min_factor`..`max_factor` of the documented interval, rounded to an interval cron
//!   can express (towards the direction of the change).
//! - **Placement**: heavy jobs move into the best low-usage window `cache-analytics windows`
//!   found, keeping their order, 30 minutes apart; when maintenance windows exist, only to
//!   times one of them admits (the next half hour that one does, else the job stays), and a
//!   heavy job no window admits is moved into one even without a low-usage window. A plan that
//!   would leave a heavy job admitted by no window is refused (or, with `--force`, warned about
//!   and recorded).
//!
//! Every change goes through `schedule::change` with its reason (and into
//! `scheduler/changes.jsonl`); `--install` re-renders the installed crontab block.

use cache_core::app::Context;
use cache_core::exit;
use cache_core::gate::{Windows, never_admitted};
use cache_core::history::{HISTORY, Point, Snapshot, WINDOWS_FILE, lookups};
use cache_core::output::Format;
use cache_core::schedule::{self, Effective};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;

/// Changes made, one line each, in the state directory.
pub const CHANGES_FILE: &str = "scheduler/changes.jsonl";

/// Intervals (minutes) cron expresses evenly: `*/N` minutes, then `0 */N` hours.
const INTERVALS: [u32; 19] = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440];

/// The performance score of the last day, 0 to 1, and how it was made.
#[derive(Debug, Serialize)]
pub struct Score {
    /// The score.
    pub score: f64,
    /// Hit ratio of the applications' lookups.
    pub hit_ratio: Option<f64>,
    /// Mean PING latency, milliseconds.
    pub latency_ms: f64,
    /// `used_memory / maxmemory` at the last snapshot.
    pub memory_usage: Option<f64>,
}

/// Half the hit ratio, a quarter for latency (1 at 0 ms, 0 at 50 ms and over, seed 002's
/// threshold), a quarter for memory (1 up to 80% of maxmemory, 0 at 100%).
pub fn score(points: &[Point]) -> Option<Score> {
    let last = points.last()?;
    let (h, m) = lookups(points);
    let hit_ratio = (h + m > 0.0).then(|| h / (h + m));
    let latency_ms = points.iter().map(|p| p.latency_ms).sum::<f64>() / points.len() as f64;
    let memory_usage = (last.maxmemory > 0.0).then(|| last.used_memory / last.maxmemory);
    let latency_score = (1.0 - latency_ms / 50.0).clamp(0.0, 1.0);
    let memory_score = memory_usage.map_or(1.0, |u| ((1.0 - u) / 0.2).clamp(0.0, 1.0));
    let score = 0.5 * hit_ratio.unwrap_or(1.0) + 0.25 * latency_score + 0.25 * memory_score;
    Some(Score { score, hit_ratio, latency_ms, memory_usage })
}

/// The interval of a repeating expression, in minutes: `*/N * * * *` or `M */N * * *`.
pub fn interval(expression: &str) -> Option<u32> {
    let f: Vec<&str> = expression.split_whitespace().collect();
    match f[..] {
        [m, "*", "*", "*", "*"] => m.strip_prefix("*/")?.parse().ok(),
        [m, h, "*", "*", "*"] if m.parse::<u32>().is_ok() => h.strip_prefix("*/")?.parse::<u32>().ok().map(|n| n * 60),
        _ => None,
    }
}

/// The cron expression repeating every `minutes` (an interval cron expresses evenly).
pub fn every(minutes: u32) -> String {
    match minutes {
        m if m < 60 => format!("*/{m} * * * *"),
        60 => "0 * * * *".into(),
        1440 => "0 0 * * *".into(),
        m => format!("0 */{} * * *", m / 60),
    }
}

/// The adapted interval: `current` scaled by the score's factor, kept within the bounds around
/// `documented`, rounded to an expressible interval in the direction of the change.
pub fn adapt(current: u32, documented: u32, score: f64, min_factor: f64, max_factor: f64) -> u32 {
    let target = if score > 0.9 {
        f64::from(current) * 1.2
    } else if score < 0.7 {
        f64::from(current) / 1.5
    } else {
        return current;
    };
    let (lo, hi) = (f64::from(documented) * min_factor, f64::from(documented) * max_factor);
    let target = target.clamp(lo, hi);
    let fits = |i: &&u32| f64::from(**i) >= lo - 1e-9 && f64::from(**i) <= hi + 1e-9;
    let candidates: Vec<u32> = INTERVALS.iter().filter(fits).copied().collect();
    let pick = if score > 0.9 {
        candidates.iter().copied().find(|i| f64::from(*i) >= target - 1e-9).or(candidates.last().copied())
    } else {
        candidates.iter().rev().copied().find(|i| f64::from(*i) <= target + 1e-9).or(candidates.first().copied())
    };
    pick.unwrap_or(current)
}

/// One planned change.
#[derive(Debug, Serialize)]
pub struct Change {
    /// The job.
    pub job: String,
    /// Its expression now.
    pub from: String,
    /// Its new expression.
    pub to: String,
    /// Why.
    pub reason: String,
}

fn hm(expression: &str) -> Option<(u32, u32)> {
    let f: Vec<&str> = expression.split_whitespace().collect();
    Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?))
}

/// `job` at `minutes` past midnight, its other fields kept.
fn at_minute(job: &Effective, minutes: u32) -> Effective {
    let rest: Vec<&str> = job.schedule.split_whitespace().skip(2).collect();
    let mut moved = job.clone();
    moved.schedule = format!("{} {} {}", minutes % 60, (minutes / 60) % 24, rest.join(" "));
    moved
}

/// The changes `optimize` would make at `now`, given the low-usage windows of the analytics
/// (`windows`) and the maintenance windows.
pub fn plan(
    jobs: &[Effective],
    history: &[Snapshot],
    windows: Option<&serde_json::Value>,
    maintenance: &Windows,
    settings: &cache_core::config::SchedulerSettings,
    now: DateTime<Utc>,
) -> anyhow::Result<(Option<Score>, Vec<Change>)> {
    let day: Vec<Point> = history
        .iter()
        .filter(|s| s.timestamp > now - Duration::days(1) && s.timestamp <= now)
        .filter_map(Point::of)
        .collect();
    let score = score(&day);
    let mut changes = Vec::new();
    if let Some(s) = &score {
        for job in jobs.iter().filter(|j| j.enabled && !j.spec.heavy) {
            let (Some(current), Some(documented)) = (interval(&job.schedule), interval(&job.spec.schedule)) else {
                continue;
            };
            let next = adapt(current, documented, s.score, settings.min_factor, settings.max_factor);
            if next != current {
                changes.push(Change {
                    job: job.spec.name.to_string(),
                    from: job.schedule.clone(),
                    to: every(next),
                    reason: format!(
                        "performance score {:.2} {} 0.{}: every {next} min instead of {current}",
                        s.score,
                        if s.score > 0.9 { "above" } else { "under" },
                        if s.score > 0.9 { 9 } else { 7 }
                    ),
                });
            }
        }
    }
    // Heavy jobs into the best low-usage window, in their order, 30 minutes apart (jobs sharing
    // a time keep sharing it), and only at times a maintenance window admits.
    let best = windows.and_then(|w| w["windows"].as_array()?.first().cloned());
    let restricted = !maintenance.windows.is_empty();
    if best.is_some() || restricted {
        let start = best.as_ref().map(|w| w["start_hour"].as_u64().unwrap_or(0) as u32 * 60);
        let mut heavy: Vec<&Effective> =
            jobs.iter().filter(|j| j.enabled && j.spec.heavy && hm(&j.schedule).is_some()).collect();
        heavy.sort_by_key(|j| hm(&j.schedule).map(|(m, h)| h * 60 + m));
        let mut groups: Vec<(u32, Vec<&Effective>)> = Vec::new();
        for job in heavy {
            let Some((m, h)) = hm(&job.schedule) else { continue };
            match groups.iter_mut().find(|(old, _)| *old == h * 60 + m) {
                Some((_, members)) => members.push(job),
                None => groups.push((h * 60 + m, vec![job])),
            }
        }
        let admits = |members: &[&Effective], minutes: u32| -> anyhow::Result<bool> {
            for job in members {
                if never_admitted(&at_minute(job, minutes), maintenance, &settings.timezone, now)? {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        let mut used: Vec<u32> = Vec::new();
        let mut next = start;
        for (old, members) in groups {
            // From the next slot of the low-usage window, else from where the jobs are.
            let first = next.unwrap_or(old);
            let mut pick = None;
            for k in 0..48 {
                let minutes = (first + 30 * k) % 1440;
                if !used.contains(&minutes) && (!restricted || admits(&members, minutes)?) {
                    pick = Some(minutes);
                    break;
                }
            }
            let Some(minutes) = pick else { continue };
            used.push(minutes);
            if next.is_some() {
                next = Some(minutes + 30);
            }
            let reason = match &best {
                Some(w) => format!(
                    "heavy: into the low-usage window at {:02}:00 UTC (confidence {:.2}){}",
                    start.unwrap_or(0) / 60,
                    w["confidence"].as_f64().unwrap_or(0.0),
                    if restricted { ", at a time a maintenance window admits" } else { "" }
                ),
                None => "heavy: no maintenance window admitted it; moved to the first time one does".to_owned(),
            };
            for job in members {
                let to = at_minute(job, minutes).schedule;
                if to != job.schedule {
                    changes.push(Change {
                        job: job.spec.name.to_string(),
                        from: job.schedule.clone(),
                        to,
                        reason: reason.clone(),
                    });
                }
            }
        }
    }
    Ok((score, changes))
}

/// Runs `optimize`.
pub fn run(ctx: &Context, dry_run: bool, install: bool, force: bool) -> anyhow::Result<u8> {
    let now = cache_core::clock::now()?;
    let settings = &ctx.config.scheduler;
    let jobs = schedule::all(settings, &ctx.state)?;
    // `plan` scores the last day; a day more to spare.
    let history: Vec<Snapshot> =
        ctx.state.read_jsonl_since(HISTORY, now - Duration::days(2), cache_core::state::READ_CAP_BYTES)?;
    let windows: Option<serde_json::Value> = ctx.state.read_json(WINDOWS_FILE)?;
    let maintenance = cache_core::gate::windows(&ctx.state)?;
    let (score, changes) = plan(&jobs, &history, windows.as_ref(), &maintenance, settings, now)?;
    // The schedule after the changes: no heavy job a window admitted may end up admitted by none.
    let after: Vec<Effective> = jobs
        .iter()
        .map(|j| {
            let mut j = j.clone();
            if let Some(c) = changes.iter().find(|c| c.job == j.spec.name) {
                j.schedule = c.to.clone();
            }
            j
        })
        .collect();
    let was = cache_core::gate::never_admitted_jobs(&jobs, &maintenance, &settings.timezone, now)?;
    let will = cache_core::gate::never_admitted_jobs(&after, &maintenance, &settings.timezone, now)?;
    let newly: Vec<String> = will.iter().filter(|j| !was.contains(j)).cloned().collect();
    if !dry_run {
        crate::never_admitted_gate(ctx, &newly, force, "cache-scheduler optimize")?;
    }
    let unplaced: Vec<String> = will.iter().filter(|j| was.contains(j)).cloned().collect();
    if !dry_run {
        for c in &changes {
            schedule::change(
                settings,
                &ctx.state,
                &c.job,
                Some(&c.to),
                None,
                &format!("cache-scheduler optimize: {}", c.reason),
            )?;
            ctx.state.append_jsonl(
                CHANGES_FILE,
                &json!({ "time": now, "job": c.job, "from": c.from, "to": c.to, "reason": c.reason }),
            )?;
        }
    }
    let mut installed = false;
    if install && !dry_run && !changes.is_empty() {
        let existing = crate::crontab::read(None)?;
        if existing.contains(crate::render::BEGIN) {
            let jobs = schedule::all(settings, &ctx.state)?;
            let merged =
                crate::crontab::merge(&existing, &crate::render::crontab_block(&jobs, &crate::invocation(ctx)?))?;
            crate::crontab::write(None, &merged)?;
            installed = true;
        }
    }
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({
            "dry_run": dry_run,
            "score": score,
            "changes": changes,
            "never_admitted": will,
            "reinstalled": installed,
        }))?;
        return Ok(exit::SUCCESS);
    }
    let mut text = match &score {
        Some(s) => format!(
            "performance score {:.2} (hit ratio {}, latency {:.1} ms, memory {})\n",
            s.score,
            s.hit_ratio.map_or("n/a".into(), |h| format!("{:.1}%", h * 100.0)),
            s.latency_ms,
            s.memory_usage.map_or("n/a".into(), |m| format!("{:.0}%", m * 100.0))
        ),
        None => "no analytics history in the last day: frequencies stay\n".to_owned(),
    };
    if windows.is_none() {
        text.push_str("no low-usage windows yet (cache-analytics windows): heavy jobs stay\n");
    }
    for c in &changes {
        text.push_str(&format!("{}: `{}` → `{}` ({})\n", c.job, c.from, c.to, c.reason));
    }
    for job in &unplaced {
        text.push_str(&format!("{job}: no maintenance window admits it at any half hour; it stays\n"));
    }
    if changes.is_empty() {
        text.push_str("nothing to change\n");
    } else if dry_run {
        text.push_str("dry run: nothing changed\n");
    } else if installed {
        text.push_str("the installed crontab block is updated\n");
    } else {
        text.push_str("run `cache-scheduler install` (or pass --install) to put the new times in the crontab\n");
    }
    printer.always(text.trim_end())?;
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_and_written() {
        assert_eq!(interval("*/15 * * * *"), Some(15));
        assert_eq!(interval("0 */2 * * *"), Some(120));
        assert_eq!(interval("0 1 * * *"), None);
        assert_eq!(every(20), "*/20 * * * *");
        assert_eq!(every(60), "0 * * * *");
        assert_eq!(every(180), "0 */3 * * *");
    }

    #[test]
    fn adaptive_frequency_follows_seed_000_within_bounds() {
        // Fine: 1.2 times less often, rounded up to what cron expresses.
        assert_eq!(adapt(15, 15, 0.95, 0.25, 4.0), 20);
        assert_eq!(adapt(30, 30, 0.95, 0.25, 4.0), 60);
        assert_eq!(adapt(120, 120, 0.95, 0.25, 4.0), 180);
        // Needs attention: 1.5 times more often, rounded down.
        assert_eq!(adapt(15, 15, 0.5, 0.25, 4.0), 10);
        assert_eq!(adapt(120, 120, 0.5, 0.25, 4.0), 60);
        // In between: unchanged; and never past the bounds.
        assert_eq!(adapt(15, 15, 0.8, 0.25, 4.0), 15);
        assert_eq!(adapt(60, 15, 0.95, 0.25, 4.0), 60);
        assert_eq!(adapt(4, 15, 0.5, 0.25, 4.0), 4);
    }
}
