//! Running a cleanup: plan the targets, confirm, lock, clean concurrently, report, record.

use std::future::Future;
use std::pin::Pin;

use cache_core::app::{Context, JobResult};
use cache_core::cache_table::CacheTable;
use cache_core::clients::{memory::MemoryClient, postgres};
use cache_core::error::UsageError;
use cache_core::exit::{Convention, Reach, Tally};
use cache_core::journal::{self, RunJournal};
use cache_core::output::Format;
use cache_core::tier::{Tier, selected};

use crate::plan::{self, Figures, Mode, Usage};
use crate::report::{CleanupReport, TargetReport};
use crate::tiers;
use crate::{Cli, Command};

/// The job's name for locks and run records: one cleanup at a time, whatever its mode.
pub const JOB: &str = "cleanup";

type Work<'a> = Pin<Box<dyn Future<Output = TargetReport> + Send + 'a>>;

/// What a command asks for.
struct Request {
    /// `None` for smart (decided later).
    mode: Option<Mode>,
    category: Option<String>,
    /// Tiers the command itself is limited to (on top of `--tier`).
    only: Option<Tier>,
    name: String,
}

fn request(command: &Command) -> anyhow::Result<Request> {
    let r = |mode, only, name: &str| Request { mode, category: None, only, name: name.to_owned() };
    Ok(match command {
        Command::Smart => r(None, None, "smart"),
        Command::Light => r(Some(Mode::Light), None, "light"),
        Command::Moderate => r(Some(Mode::Moderate), None, "moderate"),
        Command::Targeted => r(Some(Mode::Targeted), None, "targeted"),
        Command::Aggressive => r(Some(Mode::Aggressive), None, "aggressive"),
        Command::Evict => r(Some(Mode::Evict), Some(Tier::Redis), "evict"),
        Command::Files => r(Some(Mode::Light), Some(Tier::Files), "files"),
        Command::Logs => r(Some(Mode::Light), Some(Tier::Logs), "logs"),
        Command::Memory { mode } => r(Some(*mode), Some(Tier::Memory), "memory"),
        Command::Category { name, mode } => {
            validate_category(name)?;
            Request { mode: Some(*mode), category: Some(name.clone()), only: None, name: "category".into() }
        }
        Command::Completions(_) | Command::Undo { .. } => unreachable!("handled before"),
    })
}

/// A category must name one segment: empty, glob or separator characters would widen the
/// selection to everything.
fn validate_category(name: &str) -> anyhow::Result<()> {
    if name.trim().is_empty()
        || name.chars().any(|c| matches!(c, '*' | '?' | '[' | ']' | '\\' | ':') || c.is_whitespace())
    {
        return Err(UsageError(format!(
            "category `{name}` is refused: it must be one plain segment (no `*`, `?`, `[`, `]`, `\\`, `:` or spaces), \
             since anything else could select every entry"
        ))
        .into());
    }
    Ok(())
}

/// Runs a cleanup command.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let request = request(&cli.command)?;
    let format: Format = cli.format.format.into();
    let ctx = Context::load(&cli.common, format, Convention::Standard)?;
    let cap_lifted = crate::cap::lifted(cli.force, cli.common.scheduled.is_some())?;
    let apply = cli.mutation.confirm(&format!("clean up ({} mode) the selected tiers", request.name))?;
    let job =
        ctx.begin(cache_core::app::Work::new(JOB, format!("cache-cleanup {}", request.name)).dry_run(!apply)).await?;
    let journal = RunJournal::new(&ctx.state, &job.log().id());
    if apply {
        prune_journals(&ctx);
    }
    let result = clean(&ctx, &cli, &request, !apply, cap_lifted, &journal).await;
    job.finish(&ctx, result).await
}

/// Removes undo journals past `cleanup.journal_keep`, then the oldest past
/// `cleanup.journal_max_size`. A failure is a warning: it never stops a cleanup.
fn prune_journals(ctx: &Context) {
    let settings = &ctx.config.cleanup;
    let now = cache_core::clock::now().unwrap_or_else(|_| chrono::Utc::now());
    match journal::prune(&ctx.state, settings.journal_keep, settings.journal_max_size.as_u64(), now) {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!("removed the undo journals of {} old runs: {}", removed.len(), removed.join(", "));
        }
        Ok(_) => {}
        Err(e) => ctx.printer.warn(&format!("pruning the undo journals: {e:#}")),
    }
}

fn wanted(ctx: &Context, request: &Request, tier: Tier, name: &str) -> bool {
    request.only.is_none_or(|only| only == tier) && selected(&ctx.common.tiers, tier, name)
}

async fn clean(
    ctx: &Context,
    cli: &Cli,
    request: &Request,
    dry_run: bool,
    cap_lifted: bool,
    journal: &RunJournal,
) -> anyhow::Result<JobResult> {
    let config = &ctx.config;
    let settings = &config.cleanup;
    let (mode, decision) = match request.mode {
        Some(mode) => (mode, None),
        None => {
            let decision = plan::decide(figures(ctx, request).await, &settings.smart);
            (decision.mode, Some(decision))
        }
    };
    let category = request.category.as_deref();
    let sample = settings.dry_run_sample;
    let max_ops = cli.max_ops_per_sec.unwrap_or(settings.max_ops_per_sec);
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let mut work: Vec<Work<'_>> = Vec::new();
    for target in config.redis.iter().filter(|t| wanted(ctx, request, Tier::Redis, &t.name)) {
        let job = tiers::redis::RedisJob {
            target,
            settings,
            mode,
            category,
            dry_run,
            resume: cli.resume,
            max_ops_per_sec: max_ops,
            cap_lifted,
            keyspace: cache_core::keyspace::Keyspace::new(config, target),
            state: &ctx.state,
            progress: ctx.printer.progress(0, &format!("redis/{}", target.name)),
        };
        work.push(Box::pin(async move {
            let report = job.run().await;
            job.progress.finish_and_clear();
            report
        }));
    }
    for (index, target) in
        config.postgres.iter().enumerate().filter(|(_, t)| wanted(ctx, request, Tier::Postgres, &t.name))
    {
        let job = tiers::postgres::PostgresJob {
            target,
            index,
            settings,
            mode,
            category,
            project: &config.project_name,
            dry_run,
            cap_lifted,
            journal,
        };
        work.push(Box::pin(async move { job.run().await }));
    }
    for target in config.memory.iter().filter(|t| wanted(ctx, request, Tier::Memory, &t.name)) {
        let user_id = config.memory_user_id(target);
        let job = tiers::memory::MemoryJob { target, user_id, settings, mode, category, dry_run, cap_lifted, journal };
        work.push(Box::pin(async move { job.run().await }));
    }
    // Files and logs have no categories: a category run leaves them alone.
    if category.is_none() {
        for target in config.files.iter().filter(|t| wanted(ctx, request, Tier::Files, &t.name)).cloned() {
            work.push(Box::pin(async move {
                let name = target.name.clone();
                tokio::task::spawn_blocking(move || tiers::files::run(&target, dry_run, sample, threads))
                    .await
                    .unwrap_or_else(|e| panicked(Tier::Files, &name, &e))
            }));
        }
        for target in config.logs.iter().filter(|t| wanted(ctx, request, Tier::Logs, &t.name)).cloned() {
            let state = ctx.state.clone();
            work.push(Box::pin(async move {
                let name = target.name.clone();
                tokio::task::spawn_blocking(move || tiers::logs::run(&target, &state, dry_run, sample, threads))
                    .await
                    .unwrap_or_else(|e| panicked(Tier::Logs, &name, &e))
            }));
        }
    }
    let mut targets = futures::future::join_all(work).await;
    // Readable however a pass failed: one line per kind of error, none over a few hundred
    // characters, in the table, the JSON and the run record alike.
    for t in &mut targets {
        t.errors = cache_core::messages::condense(&t.errors);
        for note in &mut t.notes {
            *note = cache_core::messages::clip(note, cache_core::messages::MAX_LINE);
        }
    }
    let report = CleanupReport {
        mode,
        decision,
        category: request.category.clone(),
        dry_run,
        run_id: journal.run_id().to_owned(),
        targets,
        not_cleaned: ctx
            .config
            .target_ids()
            .into_iter()
            .filter(|(tier, _)| *tier != Tier::System && request.only.is_none_or(|only| only == *tier))
            .filter(|(tier, name)| !selected(&ctx.common.tiers, *tier, name))
            .map(|(tier, name)| format!("{tier}/{name}"))
            .collect(),
    };
    print(ctx, &report)?;
    // Every remote target unreachable: nothing was cleaned (4); some: the run is partial (1). A
    // target stopped by its blast-radius cap did not finish: partial too. Local directories
    // (files, logs) cannot be unreachable: their failures make the run partial, nothing more.
    let failed = |t: &TargetReport| !t.errors.is_empty() || t.cap.as_ref().is_some_and(|c| c.hit.is_some());
    let (local, remote): (Vec<&TargetReport>, Vec<&TargetReport>) =
        report.targets.iter().partition(|t| matches!(t.tier, Tier::Files | Tier::Logs));
    let tally: Tally = remote
        .iter()
        .map(|t| {
            if t.unreachable {
                Reach::Unreachable
            } else if failed(t) {
                Reach::Failed
            } else {
                Reach::Done
            }
        })
        .collect();
    let exit_code = tally.code_with(local.iter().filter(|t| failed(t)).count());
    Ok(JobResult { outcome: Tally::outcome(exit_code), exit_code, summary: report.summary() })
}

fn panicked(tier: Tier, name: &str, e: &tokio::task::JoinError) -> TargetReport {
    let mut report = TargetReport::new(tier, name);
    report.errors.push(format!("the cleanup of this target panicked: {e}"));
    report
}

fn print(ctx: &Context, report: &CleanupReport) -> anyhow::Result<()> {
    let printer = &ctx.printer;
    match printer.format() {
        Format::Json => printer.json(report),
        _ => {
            let failed = report.targets.iter().any(|t| !t.errors.is_empty());
            if printer.is_quiet() && !failed {
                return Ok(());
            }
            Ok(printer.always(&report.render(printer))?)
        }
    }
}

/// Seed 000's figures: entries in every tier, entries used in the last hour, hit ratio.
async fn figures(ctx: &Context, request: &Request) -> Figures {
    let config = &ctx.config;
    let settings = &config.cleanup.smart;
    let mut figures = Figures::default();
    for target in config.redis.iter().filter(|t| wanted(ctx, request, Tier::Redis, &t.name)) {
        // Every primary of a cluster: keys and lookups summed, the fullest primary's memory.
        let primaries = match cache_core::keyspace::primaries(target).await {
            Ok(primaries) => primaries,
            Err(e) => {
                figures.unmeasured.push(format!("redis/{}: {e:#}", target.name));
                continue;
            }
        };
        figures.unmeasured.extend(primaries.missing.iter().map(|m| format!("redis/{}: {m}", target.name)));
        let summed = primaries.figures();
        if let Some((node, fullest)) = primaries.fullest() {
            let on = if node.is_empty() { String::new() } else { format!(" ({node})") };
            figures.usage.push(Usage {
                target: format!("redis/{}{on}", target.name),
                share: fullest.memory_share().unwrap_or(0.0),
                of: "maxmemory".into(),
            });
        }
        figures.total_entries += summed.keys;
        for node in &primaries.nodes {
            let keys = cache_core::keyspace::Figures::of(&node.info).keys;
            let (recent, lookups) = recent_keys(&mut node.conn.clone(), keys).await;
            node.record_lookups(&ctx.state, lookups);
            figures.recent_activity += recent;
        }
    }
    for target in config.postgres.iter().filter(|t| wanted(ctx, request, Tier::Postgres, &t.name)) {
        let db = match postgres::connect(target).await {
            Ok(db) => db,
            Err(e) => {
                figures.unmeasured.push(format!("postgres/{}: {e:#}", target.name));
                continue;
            }
        };
        let row = CacheTable::new(target, &config.project_name).counts(&db).await;
        match row {
            Ok(counts) => {
                figures.total_entries += counts.rows as u64;
                figures.recent_activity += counts.recent as u64;
                if let Some(budget) = settings.table_budget.filter(|b| b.as_u64() > 0) {
                    figures.usage.push(Usage {
                        target: format!("postgres/{}", target.name),
                        share: counts.total_bytes as f64 / budget.as_u64() as f64,
                        of: "cleanup.smart.table_budget".into(),
                    });
                }
            }
            Err(e) => figures.unmeasured.push(format!("postgres/{}: {}", target.name, postgres::error_text(&e))),
        }
    }
    for target in config.memory.iter().filter(|t| wanted(ctx, request, Tier::Memory, &t.name)) {
        let listed = async { MemoryClient::new(target, config.memory_user_id(target))?.list_all().await };
        match listed.await {
            Ok(all) => {
                figures.total_entries += all.len() as u64;
                if let Some(budget) = settings.memory_budget.filter(|b| *b > 0) {
                    figures.usage.push(Usage {
                        target: format!("memory/{}", target.name),
                        share: all.len() as f64 / budget as f64,
                        of: "cleanup.smart.memory_budget".into(),
                    });
                }
            }
            Err(e) => figures.unmeasured.push(format!("memory/{}: {e:#}", target.name)),
        }
    }
    figures.hit_ratio = recent_hit_ratio(ctx);
    figures
}

/// The applications' hit ratio of the analytics history's last interval, when it ended within
/// the hour: counter increases less the toolkit's own lookups (`cache_core::history::lookups`),
/// never the since-start ratio, which the toolkit's own scans inflate. `None`: unknown.
fn recent_hit_ratio(ctx: &Context) -> Option<f64> {
    use cache_core::history::{HISTORY, Point, Snapshot, lookups};
    let snapshots: Vec<Snapshot> = match ctx.state.read_jsonl_tail(HISTORY, 256 * 1024) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("reading the analytics history for the hit ratio: {e:#}");
            return None;
        }
    };
    let points: Vec<Point> = snapshots.iter().filter_map(Point::of).collect();
    let last = points.len().checked_sub(2).map(|i| &points[i..])?;
    let now = cache_core::clock::now().ok()?;
    if now - last[1].t > chrono::Duration::hours(1) {
        return None;
    }
    let (h, m) = lookups(last);
    (h + m > 0.0).then(|| h / (h + m))
}

/// Estimates keys used in the last hour from a random sample of 200 keys' idle times.
/// Also returns the keyspace lookups the sample caused (each OBJECT is one).
async fn recent_keys(
    conn: &mut cache_core::clients::redis::Connection,
    keys: u64,
) -> (u64, cache_core::ledger::Lookups) {
    const SAMPLE: usize = 200;
    let none = cache_core::ledger::Lookups::default();
    if keys == 0 {
        return (0, none);
    }
    let sent = SAMPLE.min(keys as usize);
    let mut pipe = redis::pipe();
    for _ in 0..sent {
        pipe.cmd("RANDOMKEY");
    }
    let Ok(sampled) = pipe.query_async::<Vec<Option<Vec<u8>>>>(conn).await else { return (0, none) };
    let sampled: Vec<Vec<u8>> = sampled.into_iter().flatten().collect();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for key in &sampled {
        pipe.cmd("OBJECT").arg("IDLETIME").arg(key);
    }
    let Ok(idle) = pipe.query_async::<Vec<redis::Value>>(conn).await else { return (0, none) };
    let lookups = cache_core::ledger::Lookups {
        hits: idle.iter().filter(|v| matches!(v, redis::Value::Int(_))).count() as u64,
        misses: idle.iter().filter(|v| matches!(v, redis::Value::Nil)).count() as u64,
        // The RANDOMKEYs and the OBJECTs.
        commands: (sent + idle.len()) as u64,
    };
    let recent = idle.iter().filter(|v| matches!(v, redis::Value::Int(i) if *i < 3600)).count();
    let estimate =
        if sampled.is_empty() { 0 } else { (recent as f64 / sampled.len() as f64 * keys as f64).round() as u64 };
    (estimate, lookups)
}

#[cfg(test)]
mod tests {
    use super::validate_category;

    #[test]
    fn unscoped_categories_are_refused() {
        assert!(validate_category("payments").is_ok());
        for bad in ["", " ", "*", "pay*", "a:b", "x?", "[a]", "a b"] {
            assert!(validate_category(bad).is_err(), "{bad:?}");
        }
    }
}
