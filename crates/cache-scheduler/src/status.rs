//! `status`: every job as `cache_core::jobs` sees it (schedule, next and last run, lock holder,
//! flags), and whether automation is on.

use cache_core::app::Context;
use cache_core::exit;
use cache_core::gate;
use cache_core::jobs;
use cache_core::output::{Format, millis};
use serde_json::json;

/// Runs `status`.
pub fn run(ctx: &Context) -> anyhow::Result<u8> {
    let now = cache_core::clock::now()?;
    let settings = &ctx.config.scheduler;
    let automation = gate::automation(&ctx.state)?;
    let jobs = jobs::statuses(settings, &ctx.state, now)?;
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
            j.flags.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
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
