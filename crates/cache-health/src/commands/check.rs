//! `cache-health check`: probe everything concurrently, report, record, exit with the verdict.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use cache_core::app::{Context, JobResult};
use cache_core::cli::CommonArgs;
use cache_core::clients::{self, tls};
use cache_core::config::DirTarget;
use cache_core::exit::Convention;
use cache_core::ledger::Seen;
use cache_core::output::{Format, Printer, millis};
use cache_core::runs::Outcome;
use cache_core::tier::{Tier, selected, tier_selected};
use chrono::Utc;
use comfy_table::{Cell, Color};
use serde::Serialize;

use crate::probes::{self, Stopwatch, within_budget};
use crate::report::{self, HealthReport, Status, TargetReport, Verdict};

/// The report seed 000 writes, relative to the state directory.
pub const REPORT_FILE: &str = "health/comprehensive-health.json";
/// The last report of a check of everything (no `--tier` filter): what the dashboard shows, so
/// that a check of one tier never stands for the whole.
pub const FULL_REPORT_FILE: &str = "health/last-full-check.json";
/// One line per check.
pub const HISTORY_FILE: &str = "health/history.jsonl";
/// The job's name for locks and run records.
pub const JOB: &str = "health-check";
/// The lookup counters each Redis target's servers had at the last check (by target id),
/// from which the next check measures the hit ratio of the interval.
pub const LOOKUPS_FILE: &str = "health/lookups.json";

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

/// [`LOOKUPS_FILE`]: each target's servers' counters, by target id (`redis/main`).
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct LookupsFile {
    targets: BTreeMap<String, Seen>,
}

/// No counters yet.
static NONE: Seen = Seen::new();

type Probe<'a> = Pin<Box<dyn Future<Output = TargetReport> + Send + 'a>>;

/// Runs the check.
pub async fn run(common: &CommonArgs, format: Format, _args: CheckArgs) -> anyhow::Result<u8> {
    let ctx = Context::load_all(common, format, Convention::MonitoringPlugin)?;
    let job = ctx.begin_job(JOB, "cache-health check").await?;
    let result = check(&ctx, &job).await;
    job.finish(&ctx, result).await
}

async fn check(ctx: &Context, job: &cache_core::app::Job) -> anyhow::Result<JobResult> {
    let report = probe_and_record(ctx, Some(job)).await?;
    print(&ctx.printer, &report)?;
    let outcome = match report.status {
        Verdict::Ok => Outcome::Success,
        Verdict::Warning => Outcome::Partial,
        Verdict::Critical => Outcome::Failed,
    };
    Ok(JobResult {
        outcome,
        exit_code: report.status.exit_code(),
        summary: serde_json::json!({
            "status": report.status,
            "critical_issues": report.critical_issues,
            "warnings": report.warnings,
            "targets": report.targets.len(),
        }),
    })
}

/// Probes every selected target concurrently, assembles the report, and records it (the report
/// file and a history line); steps go to `job`'s run record when given.
pub async fn probe_and_record(ctx: &Context, job: Option<&cache_core::app::Job>) -> anyhow::Result<HealthReport> {
    // Read the previous report first: a corrupt one stops the check before anything is written.
    let previous: Option<HealthReport> = ctx.state.read_json(REPORT_FILE)?;
    // And the last full one, which a full check replaces: a corrupt one is named, never replaced.
    let _: Option<HealthReport> = ctx.state.read_json(FULL_REPORT_FILE)?;
    let mut seen = ctx.state.read_json::<LookupsFile>(LOOKUPS_FILE)?.unwrap_or_default().targets;
    let start = Instant::now();
    let stopwatch = Stopwatch::new();
    let (probes, unconfigured) = plan(ctx, &seen, &stopwatch);
    // The probes are futures not yet started: nothing is timed before they are awaited.
    prepare(ctx).await;
    // Each probe's wall time, for the run record (a target's latency is one round trip).
    let timed = probes.into_iter().map(|probe| async move {
        let start = Instant::now();
        let report = probe.await;
        (report, start.elapsed())
    });
    let (targets, took): (Vec<TargetReport>, Vec<Duration>) =
        futures::future::join_all(timed).await.into_iter().unzip();
    if let Some(job) = job {
        for (target, took) in targets.iter().zip(&took) {
            let outcome = match target.status.severity() {
                0 => Outcome::Success,
                1 => Outcome::Partial,
                _ => Outcome::Failed,
            };
            let detail = target.error.clone().or_else(|| Some(target.status.as_str().to_owned()));
            job.log().step(format!("probe {}", target.id()), outcome, took.as_millis() as u64, detail);
        }
    }
    // Every target probed leaves its servers' counters for the next interval; a target not
    // probed this time (a `--tier` filter) keeps the ones it had.
    let mut targets = targets;
    for t in &mut targets {
        if !t.seen.is_empty() {
            seen.insert(t.id(), std::mem::take(&mut t.seen));
        }
    }
    ctx.state.write_json(LOOKUPS_FILE, &LookupsFile { targets: seen })?;
    let mut report = report::assemble(targets, &unconfigured, previous.as_ref(), Utc::now(), start.elapsed());
    let filters = &ctx.common.tiers;
    report.not_checked = ctx
        .config
        .target_ids()
        .into_iter()
        .filter(|(tier, name)| !selected(filters, *tier, name))
        .filter(|(tier, name)| !(*tier == Tier::System && name == "gpu"))
        .map(|(tier, name)| format!("{tier}/{name}"))
        .collect();
    ctx.state.write_json(REPORT_FILE, &report)?;
    if filters.is_empty() {
        ctx.state.write_json(FULL_REPORT_FILE, &report)?;
    }
    ctx.state.append_jsonl(HISTORY_FILE, &HistoryLine::of(&report))?;
    Ok(report)
}

/// Builds, before any probe starts, what the probes would otherwise build while the others
/// are being timed: the TLS connectors of the selected Redis and PostgreSQL targets and the
/// HTTP client of the memory and HTTP targets, each on a blocking thread and once per
/// process (the monitor's later rounds find them built). Failures are left to the probes.
async fn prepare(ctx: &Context) {
    let config = &ctx.config;
    let filters = &ctx.common.tiers;
    let mut trusts: Vec<tls::Trust> = Vec::new();
    let redis = config.redis.iter().filter(|t| selected(filters, Tier::Redis, &t.name));
    let postgres = config.postgres.iter().filter(|t| selected(filters, Tier::Postgres, &t.name));
    for trust in redis.flat_map(clients::redis::trusts).chain(postgres.filter_map(clients::postgres::trust)) {
        if !trusts.contains(&trust) {
            trusts.push(trust);
        }
    }
    let wants_http = config.memory.iter().any(|t| selected(filters, Tier::Memory, &t.name))
        || config.http.iter().any(|t| selected(filters, Tier::Http, &t.name));
    let http = async {
        if wants_http {
            let _ = clients::http::client_async().await;
        }
    };
    tokio::join!(tls::prepare(trusts), http);
}

/// Builds one budgeted probe per selected target, and lists selected tiers with no target.
/// The probes that time a round trip share `stopwatch`.
fn plan<'a>(
    ctx: &'a Context,
    seen: &'a BTreeMap<String, Seen>,
    stopwatch: &'a Stopwatch,
) -> (Vec<Probe<'a>>, Vec<Tier>) {
    let config = &ctx.config;
    let health = &config.health;
    let filters = &ctx.common.tiers;
    let mut probes: Vec<Probe<'_>> = Vec::new();
    let mut unconfigured = Vec::new();
    let mut note_empty = |tier: Tier, count: usize| {
        if count == 0 && tier_selected(filters, tier) {
            unconfigured.push(tier);
        }
    };
    note_empty(Tier::Redis, config.redis.len());
    note_empty(Tier::Postgres, config.postgres.len());
    note_empty(Tier::Memory, config.memory.len());

    for t in config.redis.iter().filter(|t| selected(filters, Tier::Redis, &t.name)) {
        let endpoint = Some(t.url.to_string());
        probes.push(Box::pin(within_budget(
            Tier::Redis,
            &t.name,
            endpoint,
            t.timeout,
            probes::redis::probe(
                t,
                health,
                probes::redis::Lookback {
                    state: &ctx.state,
                    before: seen.get(&format!("redis/{}", t.name)).unwrap_or(&NONE),
                },
                stopwatch.timer(t.timeout),
            ),
        )));
    }
    for (index, t) in config.postgres.iter().enumerate().filter(|(_, t)| selected(filters, Tier::Postgres, &t.name)) {
        let endpoint = Some(t.url.to_string());
        let table = probes::postgres::Table {
            index,
            project: &config.project_name,
            unused_after: config.optimizer.unused_index_after,
        };
        probes.push(Box::pin(within_budget(
            Tier::Postgres,
            &t.name,
            endpoint,
            t.timeout,
            probes::postgres::probe(t, health, table, stopwatch.timer(t.timeout)),
        )));
    }
    for t in config.memory.iter().filter(|t| selected(filters, Tier::Memory, &t.name)) {
        let endpoint = Some(t.url.to_string());
        let user = config.memory_user_id(t);
        probes.push(Box::pin(within_budget(
            Tier::Memory,
            &t.name,
            endpoint,
            t.timeout,
            probes::memory::probe(t, user, health, stopwatch.timer(t.timeout)),
        )));
    }
    for t in config.http.iter().filter(|t| selected(filters, Tier::Http, &t.name)) {
        let endpoint = Some(t.url.to_string());
        let probe = probes::http::probe(t, health, stopwatch.timer(t.timeout));
        probes.push(Box::pin(within_budget(Tier::Http, &t.name, endpoint, t.timeout, probe)));
    }
    let dir_budget = config.system.timeout;
    let dirs = config
        .files
        .iter()
        .map(|t| (Tier::Files, t as &dyn DirTarget))
        .chain(config.logs.iter().map(|t| (Tier::Logs, t as &dyn DirTarget)));
    for (tier, t) in dirs.filter(|(tier, t)| selected(filters, *tier, t.name())) {
        let endpoint = Some(t.path().display().to_string());
        probes.push(Box::pin(within_budget(
            tier,
            t.name(),
            endpoint,
            dir_budget + Duration::from_millis(500),
            probes::dirs::probe(tier, t, health, dir_budget),
        )));
    }
    if selected(filters, Tier::System, "host") {
        probes.push(Box::pin(within_budget(
            Tier::System,
            "host",
            None,
            config.system.timeout + Duration::from_millis(500),
            probes::system::host(&config.system, health),
        )));
    }
    if config.system.gpu && selected(filters, Tier::System, "gpu") {
        probes.push(Box::pin(probes::system::gpus(health, config.system.timeout)));
    }
    (probes, unconfigured)
}

/// A compact line of `health/history.jsonl`.
#[derive(Debug, Serialize)]
struct HistoryLine<'a> {
    timestamp: chrono::DateTime<Utc>,
    status: Verdict,
    overall_health: &'a str,
    duration_ms: f64,
    targets: Vec<HistoryTarget<'a>>,
}

#[derive(Debug, Serialize)]
struct HistoryTarget<'a> {
    tier: Tier,
    name: &'a str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
}

impl<'a> HistoryLine<'a> {
    fn of(report: &'a HealthReport) -> Self {
        Self {
            timestamp: report.timestamp,
            status: report.status,
            overall_health: &report.overall_health,
            duration_ms: report.duration_ms,
            targets: report
                .targets
                .iter()
                .map(|t| HistoryTarget { tier: t.tier, name: &t.name, status: t.status, latency_ms: t.latency_ms })
                .collect(),
        }
    }
}

fn print(printer: &Printer, report: &HealthReport) -> anyhow::Result<()> {
    match printer.format() {
        Format::Json => printer.json(report),
        Format::Nagios => Ok(printer.always(&report.nagios_line())?),
        Format::Text => {
            // Silent on success under -q: cron mails whatever a job prints.
            if printer.is_quiet() && report.status == Verdict::Ok {
                return Ok(());
            }
            Ok(printer.always(&render_text(printer, report))?)
        }
    }
}

fn status_cell(printer: &Printer, status: Status) -> Cell {
    let cell = Cell::new(status.as_str());
    if !printer.color() {
        return cell;
    }
    match status {
        Status::Healthy => cell.fg(Color::Green),
        Status::Degraded => cell.fg(Color::Yellow),
        Status::Failed => cell.fg(Color::Red),
        Status::NotConfigured | Status::NotAvailable => cell.fg(Color::DarkGrey),
    }
}

fn render_text(printer: &Printer, report: &HealthReport) -> String {
    let mut table = printer.table();
    table.set_header(["Tier", "Target", "Status", "Latency", "Details"]);
    for tier in Tier::ALL {
        if report.systems.get(tier.as_str()) == Some(&Status::NotConfigured) {
            table.add_row(vec![
                Cell::new(tier),
                Cell::new("-"),
                status_cell(printer, Status::NotConfigured),
                Cell::new(""),
                Cell::new("no target configured"),
            ]);
        }
        for target in report.targets.iter().filter(|t| t.tier == tier) {
            let mut details: Vec<String> = target
                .checks
                .iter()
                .filter(|c| c.status.severity() > 0)
                .map(|c| format!("{}: {}", c.name, c.summary))
                .collect();
            if details.is_empty() {
                details.push(target.headline.clone());
            }
            table.add_row(vec![
                Cell::new(tier),
                Cell::new(&target.name),
                status_cell(printer, target.status),
                Cell::new(target.latency_ms.map(millis).unwrap_or_default()),
                Cell::new(details.join("\n")),
            ]);
        }
    }
    let mut out = format!(
        "cache-health: {} ({}), checked in {}\n{table}\n",
        report.status.as_str(),
        report.counts(),
        millis(report.duration_ms)
    );
    if !report.recommendations.is_empty() {
        out.push_str("\nRecommendations:\n");
        for r in &report.recommendations {
            out.push_str(&format!("  - {r}\n"));
        }
    }
    out
}
