//! `cache-health alerts`: active and recent alerts, `--ack ID`, and `alerts test RULE`.

use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention};
use cache_core::output::Format;
use serde_json::json;

use crate::alerts::channels::{self, DEAD_LETTER_FILE, DeadLetters, OUTBOX_FILE, Outbox};
use crate::alerts::{self, Alert, AlertStatus, Book, Kind, Notice, STATE_FILE};

/// Arguments of `alerts`.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Acknowledge an alert (by id): no repeats until it resolves
    #[arg(long, value_name = "ID")]
    pub ack: Option<String>,
    /// Also list alerts that have resolved
    #[arg(long)]
    pub all: bool,
    /// Send a test instead
    #[command(subcommand)]
    pub command: Option<AlertsCommand>,
}

/// `alerts` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Send a test notification of RULE to its channels now
    Test {
        /// The rule's name
        rule: String,
    },
}

/// Runs `alerts`.
pub async fn run(common: &CommonArgs, format: Format, args: AlertsArgs) -> anyhow::Result<u8> {
    let ctx = Context::load_all(common, format, Convention::MonitoringPlugin)?;
    let mut book: Book = ctx.state.read_json(STATE_FILE)?.unwrap_or_default();
    let printer = &ctx.printer;
    if let Some(AlertsCommand::Test { rule }) = args.command {
        return test(&ctx, &rule).await;
    }
    if let Some(id) = args.ack {
        let alert = book
            .alerts
            .values_mut()
            .find(|a| a.id == id || a.fingerprint == id)
            .ok_or_else(|| UsageError(format!("no alert `{id}` (cache-health alerts lists them)")))?;
        alert.acked = true;
        let text =
            format!("acknowledged {} ({} on {}): no repeats until it resolves", alert.id, alert.rule, alert.target);
        ctx.state.write_json(STATE_FILE, &book)?;
        printer.info(&text)?;
        return Ok(exit::SUCCESS);
    }
    let outbox: Outbox = ctx.state.read_json(OUTBOX_FILE)?.unwrap_or_default();
    let dead: DeadLetters = ctx.state.read_json(DEAD_LETTER_FILE)?.unwrap_or_default();
    let mut list: Vec<&Alert> =
        book.alerts.values().filter(|a| args.all || a.status != AlertStatus::Resolved).collect();
    list.sort_by_key(|a| std::cmp::Reverse(a.since));
    if printer.format() == Format::Json {
        printer.json(&json!({ "alerts": list, "outbox": outbox.items, "dead_letter": dead.items }))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = printer.table();
    table.set_header(["Id", "Rule", "Target", "Severity", "Status", "Since", "Sent", "Message"]);
    for a in &list {
        let status = format!("{:?}{}", a.status, if a.acked { " (acked)" } else { "" }).to_lowercase();
        table.add_row(vec![
            a.id.clone(),
            a.rule.clone(),
            a.target.clone(),
            serde_json::to_value(a.severity)?.as_str().unwrap_or_default().to_owned(),
            status,
            a.since.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            a.notifications.to_string(),
            a.message.clone(),
        ]);
    }
    let mut text = if list.is_empty() { "no active alerts\n".to_owned() } else { format!("{table}\n") };
    if !outbox.items.is_empty() {
        text.push_str(&format!(
            "{} notification(s) waiting in the outbox for a channel to come back\n",
            outbox.items.len()
        ));
    }
    if !dead.items.is_empty() {
        text.push_str(&format!(
            "{} notification(s) refused for good by their receiver ({DEAD_LETTER_FILE}), newest last:\n",
            dead.items.len()
        ));
        for item in dead.items.iter().rev().take(10).rev() {
            text.push_str(&format!(
                "  {} {} {}: {}\n",
                item.dead_at.unwrap_or(item.queued_at).format("%Y-%m-%d %H:%M:%S UTC"),
                item.channel,
                channels::headline(&item.notice),
                item.last_error.as_deref().unwrap_or("refused")
            ));
        }
    }
    printer.always(&text)?;
    Ok(exit::SUCCESS)
}

async fn test(ctx: &Context, rule_name: &str) -> anyhow::Result<u8> {
    let settings = &ctx.config.alerts;
    let rules = alerts::rules(settings);
    let rule = rules.iter().find(|r| r.name == rule_name).ok_or_else(|| {
        UsageError(format!(
            "no rule `{rule_name}` (rules: {})",
            rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let now = cache_core::clock::now()?;
    let alert = Alert::firing_now(
        format!("{}|test", rule.name),
        rule.name.clone(),
        "test",
        rule.severity,
        format!("Test notification of rule `{}` from cache-health alerts test", rule.name),
        rule.runbook_url.clone(),
        now,
    );
    let notice = Notice { kind: Kind::Test, alert, channels: alerts::channels_of(rule, settings) };
    let mut outbox = Outbox::default();
    outbox.enqueue(&[notice], now);
    let mut failed = 0;
    let mut text = String::new();
    for item in &outbox.items {
        match channels::deliver(&ctx.state, &ctx.config, item).await {
            Ok(()) => text.push_str(&format!("{}: delivered\n", item.channel)),
            Err(e) => {
                failed += 1;
                text.push_str(&format!("{}: FAILED: {e:#}\n", item.channel));
            }
        }
    }
    ctx.printer.always(&text)?;
    Ok(if failed == 0 { exit::SUCCESS } else { exit::plugin::CRITICAL })
}
