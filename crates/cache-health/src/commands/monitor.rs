//! `cache-health monitor`: a round every `alerts.interval` (or one with `--once`, for cron):
//! probe everything, evaluate the rules, queue notices in the outbox, run auto-actions, deliver.
//! SIGTERM and SIGINT stop it after the round in progress. A round in which a receiver refused
//! a notice for good (moved to the dead-letter list) exits 1 (WARNING). With `alerts.ping_url`,
//! each round pings that dead-man's switch (`cache_core::heartbeat`): `/start`, then the bare URL
//! or `/<exit code>` (`/fail` when the round failed).

use std::time::Duration;

use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::exit::{self, Convention};
use cache_core::output::Format;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::alerts::channels::{self, OUTBOX_FILE, Outbox};
use crate::alerts::{self, AlertStatus, Book, STATE_FILE, remediate};
use crate::commands::check::probe_and_record;

/// The job (and lock) name: one monitor at a time.
pub const JOB: &str = "health-monitor";

/// Arguments of `monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Evaluate one round and exit (for cron)
    #[arg(long)]
    pub once: bool,
    /// Time between rounds (default: `alerts.interval`)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
}

/// Runs `monitor`.
pub async fn run(common: &CommonArgs, format: Format, args: MonitorArgs) -> anyhow::Result<u8> {
    let ctx = Context::load_all(common, format, Convention::MonitoringPlugin)?;
    let job = ctx.begin_job(JOB, "cache-health monitor").await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // SIGTERM is how a daemon is stopped: after the round in progress, as a success.
    cache_core::app::stops_on_signals_itself();
    let interval = args.interval.unwrap_or(ctx.config.alerts.interval);
    let mut rounds = 0u64;
    let mut code = exit::SUCCESS;
    let run_id = job.log().id();
    let result = loop {
        match pinged_round(&ctx, &format!("{run_id}-{}", rounds + 1)).await {
            Ok(c) => code = code.max(c),
            Err(e) => break Err(e),
        }
        rounds += 1;
        if args.once {
            break Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
        }
    };
    let result = result.map(|()| cache_core::app::JobResult {
        outcome: if code == exit::SUCCESS {
            cache_core::runs::Outcome::Success
        } else {
            cache_core::runs::Outcome::Partial
        },
        exit_code: code,
        summary: json!({ "rounds": rounds }),
    });
    job.finish(&ctx, result).await
}

/// One round between the pings of `alerts.ping_url`, when set (`run_id`: the round's).
async fn pinged_round(ctx: &Context, run_id: &str) -> anyhow::Result<u8> {
    let Some(url) = &ctx.config.alerts.ping_url else { return round(ctx).await.map(|(code, _)| code) };
    cache_core::heartbeat::start(url, run_id).await;
    let result = round(ctx).await;
    match &result {
        Ok((code, text)) => cache_core::heartbeat::finish(url, run_id, *code, true, text).await,
        Err(e) => {
            let code = ctx.convention.for_error(e);
            cache_core::heartbeat::finish(url, run_id, code, false, &format!("error: {e:#}")).await;
        }
    }
    result.map(|(code, _)| code)
}

/// One round: its exit code (WARNING when a receiver refused a notice for good) and its text.
pub async fn round(ctx: &Context) -> anyhow::Result<(u8, String)> {
    let now = cache_core::clock::now()?;
    let settings = &ctx.config.alerts;
    let report = probe_and_record(ctx, None).await?;
    let mut observations = alerts::observe(&report);
    observations.extend(alerts::observe_jobs(&cache_core::jobs::statuses(&ctx.config.scheduler, &ctx.state, now)?));
    let backup = &ctx.config.backup;
    observations.extend(alerts::observe_drill(&ctx.state, &backup.dir, backup.drill_max_age, now)?);
    observations.extend(alerts::observe_security(&ctx.state, ctx.config.debug.security_baseline)?);
    let mut book: Book = ctx.state.read_json(STATE_FILE)?.unwrap_or_default();
    let mut outbox: Outbox = ctx.state.read_json(OUTBOX_FILE)?.unwrap_or_default();
    let rules = alerts::rules(settings);
    let silenced = alerts::silenced(&ctx.state, &rules, now)?;
    let (notices, fired) = alerts::evaluate(&mut book, &rules, settings, &observations, &silenced, now);
    // Durable before anything is sent or done.
    outbox.enqueue(&notices, now);
    ctx.state.write_json(STATE_FILE, &book)?;
    ctx.state.write_json(OUTBOX_FILE, &outbox)?;
    let actions = remediate::run(ctx, &mut book, &mut outbox, &fired, now).await?;
    ctx.state.write_json(STATE_FILE, &book)?;
    ctx.state.write_json(OUTBOX_FILE, &outbox)?;
    let mut attempts = channels::flush(&ctx.state, &ctx.config, &mut outbox, now).await?;
    attempts.extend(channels::refresh(&ctx.config, &book, &rules, &silenced, &notices).await);
    let refused: Vec<String> = attempts
        .iter()
        .filter(|a| a.permanent)
        .filter_map(|a| a.error.as_ref().map(|e| format!("{}: {e}", a.channel)))
        .collect();
    let firing = book.alerts.values().filter(|a| a.status == AlertStatus::Firing).count();
    let delivered = attempts.iter().filter(|a| a.error.is_none()).count();
    let failed: Vec<String> = attempts
        .iter()
        .filter(|a| !a.permanent)
        .filter_map(|a| a.error.as_ref().map(|e| format!("{}: {e}", a.channel)))
        .collect();
    let code = if refused.is_empty() { exit::SUCCESS } else { exit::plugin::WARNING };
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({
            "round": book.round,
            "status": report.status,
            "firing": firing,
            "notices": notices,
            "actions": actions,
            "delivered": delivered,
            "failed": failed,
            "dead_letter": refused,
            "outbox": outbox.items.len(),
        }))?;
        Ok((code, summary_line(&book, firing, notices.len(), delivered, &failed, &refused)))
    } else {
        let mut text = format!(
            "round {}: health {}, {firing} alert(s) firing, {} notice(s), {delivered} delivered, {} waiting in the outbox\n",
            book.round,
            report.overall_health,
            notices.len(),
            outbox.items.len()
        );
        for n in &notices {
            text.push_str(&format!("  {}\n", channels::headline(n)));
        }
        for a in &actions {
            text.push_str(&format!("  action: {a}\n"));
        }
        for f in &failed {
            text.push_str(&format!("  delivery failed, will retry: {f}\n"));
        }
        for f in &refused {
            text.push_str(&format!("  delivery refused, moved to the dead-letter list: {f}\n"));
        }
        if !failed.is_empty() || !refused.is_empty() || !notices.is_empty() || !actions.is_empty() {
            printer.always(&text)?;
        } else {
            printer.info(&text)?;
        }
        Ok((code, text))
    }
}

fn summary_line(
    book: &Book,
    firing: usize,
    notices: usize,
    delivered: usize,
    failed: &[String],
    refused: &[String],
) -> String {
    let mut text =
        format!("round {}: {firing} alert(s) firing, {notices} notice(s), {delivered} delivered\n", book.round);
    for f in failed {
        text.push_str(&format!("delivery failed, will retry: {f}\n"));
    }
    for f in refused {
        text.push_str(&format!("delivery refused, moved to the dead-letter list: {f}\n"));
    }
    text
}
