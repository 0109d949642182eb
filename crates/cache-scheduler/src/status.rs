//! `status`: every job as `cache_core::jobs` sees it (schedule, next and last run, lock holder,
//! flags: never admitted by any window, skipped N times in a row...), the one-off runs (pending
//! and recently finished), what `install --force` let through, and whether automation is on.

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
    let oneoffs = cache_core::schedule::oneoff::read(&ctx.state)?.jobs;
    let warnings = cache_core::schedule::installation(&ctx.state)?.map(|i| i.warnings).unwrap_or_default();
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({
            "automation": { "running": running, "state": automation },
            "timezone": settings.timezone,
            "jobs": jobs,
            "oneoffs": oneoffs,
            "install_warnings": warnings,
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
    let mut text = format!("{state}; times in UTC, schedules in {}\n{table}", settings.timezone);
    if !oneoffs.is_empty() {
        let mut once = printer.table();
        once.set_header(["One-off", "Job", "At", "Status", "Why"]);
        for o in &oneoffs {
            let status = match &o.error {
                Some(e) if o.status.finished() => format!("{}: {e}", o.status),
                _ => o.status.to_string(),
            };
            once.add_row(vec![
                o.id.clone(),
                o.job.clone(),
                o.at.format("%m-%d %H:%M").to_string(),
                status,
                o.reason.clone(),
            ]);
        }
        text.push_str(&format!("\none-off runs (cache-scheduler tick runs them when due):\n{once}"));
    }
    for w in &warnings {
        text.push_str(&format!("\ninstalled with --force: {w}"));
    }
    printer.always(&text)?;
    Ok(exit::SUCCESS)
}

/// Runs `history`: the run records `query` matches, newest first.
pub fn history(ctx: &Context, query: &cache_core::runs::Query) -> anyhow::Result<u8> {
    let found = cache_core::runs::query(&ctx.state, query)?;
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&found)?;
        return Ok(exit::SUCCESS);
    }
    let mut table = printer.table();
    table.set_header(["Started", "Job", "Outcome", "Trigger", "Duration", "Exit", "Id"]);
    for r in &found.executions {
        table.add_row(vec![
            r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.job.clone(),
            r.outcome.name().to_owned(),
            format!("{:?}", r.trigger).to_lowercase(),
            millis(r.duration_ms as f64),
            r.exit_code.to_string(),
            r.id.clone(),
        ]);
    }
    let mut text = format!("{} of {} runs\n{table}\n", found.executions.len(), found.matched);
    if found.bad_lines > 0 {
        text.push_str(&format!("note: {} lines of the run history were no run record (skipped)\n", found.bad_lines));
    }
    if found.unread_bytes > 0 {
        text.push_str(&format!(
            "note: older runs not read: {} of history past the read cap\n",
            cache_core::output::bytes(found.unread_bytes)
        ));
    }
    printer.info(&text)?;
    Ok(exit::SUCCESS)
}
