//! `cache-health monitor`: a round every `alerts.interval` (or one with `--once`, for cron):
//! probe everything, evaluate the rules, queue notices in the outbox, run auto-actions, deliver.
//! SIGTERM and SIGINT stop it after the round in progress.

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
    let result = loop {
        if let Err(e) = round(&ctx).await {
            break Err(e);
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
        outcome: cache_core::runs::Outcome::Success,
        exit_code: exit::SUCCESS,
        summary: json!({ "rounds": rounds }),
    });
    job.finish(&ctx, result).await
}

/// One round.
pub async fn round(ctx: &Context) -> anyhow::Result<()> {
    let now = cache_core::clock::now()?;
    let settings = &ctx.config.alerts;
    let report = probe_and_record(ctx, None).await?;
    let mut observations = alerts::observe(&report);
    observations.extend(alerts::observe_jobs(&cache_core::jobs::statuses(&ctx.config.scheduler, &ctx.state, now)?));
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
    let attempts = channels::flush(&ctx.state, settings, &mut outbox, now).await?;
    let firing = book.alerts.values().filter(|a| a.status == AlertStatus::Firing).count();
    let delivered = attempts.iter().filter(|a| a.error.is_none()).count();
    let failed: Vec<String> =
        attempts.iter().filter_map(|a| a.error.as_ref().map(|e| format!("{}: {e}", a.channel))).collect();
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
            "outbox": outbox.items.len(),
        }))?;
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
        if !failed.is_empty() || !notices.is_empty() || !actions.is_empty() {
            printer.always(&text)?;
        } else {
            printer.info(&text)?;
        }
    }
    Ok(())
}
