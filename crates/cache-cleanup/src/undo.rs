//! `cache-cleanup undo`: puts back what a cleanup run deleted, from its undo journal.
//!
//! Every journal file of the run is verified against its manifest (SHA-256 and length) before
//! anything is restored; a damaged one refuses the whole undo, naming the file (exit 5).
//! Memories are re-created through the API, verbatim, with their categories and metadata plus
//! `metadata.restored_from` (the original id and creation time), and only ever for the user the
//! journal and the configuration both name. Rows go back with `INSERT ... SELECT * FROM
//! jsonb_populate_record(...) ON CONFLICT DO NOTHING`, in one transaction per target, so a row
//! the application re-created meanwhile wins. A journal that was undone is marked so, and a
//! second undo of the run is refused (exit 2). The undo holds the `cleanup` job lock.

use std::collections::HashSet;

use anyhow::{Context as _, bail};
use cache_core::app::{Context, JobResult, Work};
use cache_core::cache_table::CacheTable;
use cache_core::clients::memory::{MemoryClient, Restoring, text_of};
use cache_core::clients::postgres::{self as client, quote_ident};
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention, Reach, Tally};
use cache_core::journal::{self, Journal, Run, Undone};
use cache_core::output::{Format, bytes};
use cache_core::tier::Tier;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Cli;
use crate::commands::JOB;

/// Rows per `INSERT` statement.
const ROWS_PER_STATEMENT: usize = 500;

/// What the undo of one journal file did.
#[derive(Debug, Serialize)]
struct Restored {
    tier: Tier,
    target: String,
    file: String,
    journaled: u64,
    restored: u64,
    /// Present again (re-created by the application, or restored before).
    skipped: u64,
    /// Another user's memories, never restored.
    refused: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What `undo` reports.
#[derive(Debug, Serialize)]
struct UndoReport {
    run_id: String,
    dry_run: bool,
    journals: Vec<Restored>,
}

/// Runs `cache-cleanup undo [RUN]`: lists the journals without a run, else undoes it.
pub async fn run(cli: &Cli, run: Option<&str>) -> anyhow::Result<u8> {
    let format: Format = cli.format.format.into();
    let ctx = Context::load(&cli.common, format, Convention::Standard)?;
    let Some(selector) = run else { return list(&ctx) };
    let found = journal::find(&ctx.state, selector)?;
    // Verify before asking anything: a damaged journal is refused whatever the answer.
    for journal in &found.journals {
        journal.verify()?;
    }
    refuse_undone(&found)?;
    let apply = cli.mutation.confirm(&format!(
        "put back the {} memories and rows run `{}` deleted",
        found.count(),
        found.run_id
    ))?;
    let job = ctx
        .begin(
            Work::new(JOB, format!("cache-cleanup undo {}", found.run_id)).recorded_as("cleanup-undo").dry_run(!apply),
        )
        .await?;
    let result = async {
        // Under the lock: another undo may have finished meanwhile.
        let found = journal::find(&ctx.state, &found.run_id)?;
        refuse_undone(&found)?;
        undo(&ctx, found, !apply).await
    }
    .await;
    job.finish(&ctx, result).await
}

fn refuse_undone(run: &Run) -> anyhow::Result<()> {
    if run.undone() {
        let at = run.journals.iter().filter_map(|j| j.manifest.undone.as_ref()).map(|u| u.at).max();
        return Err(UsageError(format!(
            "run `{}` was already undone{}: its memories and rows are back, so a second undo is refused",
            run.run_id,
            at.map(|at| format!(" at {}", at.format("%Y-%m-%d %H:%M:%S UTC"))).unwrap_or_default()
        ))
        .into());
    }
    Ok(())
}

async fn undo(ctx: &Context, run: Run, dry_run: bool) -> anyhow::Result<JobResult> {
    let mut report = UndoReport { run_id: run.run_id.clone(), dry_run, journals: Vec::new() };
    let mut tally = Tally::default();
    for mut journal in run.journals {
        let m = &journal.manifest;
        let mut restored = Restored {
            tier: m.tier,
            target: m.target.clone(),
            file: m.file.clone(),
            journaled: m.count,
            restored: 0,
            skipped: 0,
            refused: 0,
            error: None,
        };
        if m.undone.is_some() {
            restored.error = Some("already undone".into());
            restored.skipped = m.count;
            report.journals.push(restored);
            tally.add(Reach::Failed);
            continue;
        }
        let mut reach = Reach::Done;
        let done = match m.tier {
            Tier::Memory => memories(ctx, &journal, dry_run, &mut restored).await,
            Tier::Postgres => rows(ctx, &journal, dry_run, &mut restored).await,
            other => Err(anyhow::anyhow!("tier `{other}` has no undo")),
        };
        match done {
            Ok(()) if !dry_run => {
                let undone = Undone {
                    at: cache_core::clock::now().unwrap_or_else(|_| chrono::Utc::now()),
                    restored: restored.restored,
                    skipped: restored.skipped + restored.refused,
                };
                journal.mark_undone(undone)?;
            }
            Ok(()) => {}
            Err(e) => {
                reach = Reach::of_error(&e);
                restored.error = Some(format!("{e:#}"));
            }
        }
        tally.add(if restored.error.is_some() && reach == Reach::Done { Reach::Failed } else { reach });
        report.journals.push(restored);
    }
    print(ctx, &report)?;
    // Every journal's target unreachable: nothing was put back (4); some failed: partial (1).
    let exit_code = tally.code();
    Ok(JobResult { outcome: Tally::outcome(exit_code), exit_code, summary: serde_json::to_value(&report)? })
}

/// Re-creates the journal's memories that are not present again.
async fn memories(ctx: &Context, journal: &Journal, dry_run: bool, out: &mut Restored) -> anyhow::Result<()> {
    let m = &journal.manifest;
    let target = ctx
        .config
        .memory
        .iter()
        .find(|t| t.name == m.target)
        .with_context(|| format!("memory target `{}` is not configured", m.target))?;
    let user = ctx.config.memory_user_id(target);
    let journaled_user = m.scope.user_id.as_deref().unwrap_or_default();
    if user.trim().is_empty() || journaled_user != user {
        bail!(
            "the journal holds memories of user `{journaled_user}`, and memory target `{}` is configured for user `{user}`: \
             refusing to restore them for another user",
            m.target
        );
    }
    let client = MemoryClient::new(target, user)?;
    let present = client.list_all_json().await?;
    let mut ids: HashSet<String> = HashSet::new();
    let mut texts: HashSet<String> = HashSet::new();
    for memory in &present {
        if let Some(id) = memory["id"].as_str() {
            ids.insert(id.to_owned());
        }
        if let Some(from) = memory["metadata"]["restored_from"]["id"].as_str() {
            ids.insert(from.to_owned());
        }
        texts.insert(text_of(memory).to_owned());
    }
    let mut adds = Vec::new();
    for record in journal.records()? {
        // Never another user's memory, whatever the file says.
        if record["user_id"].as_str().is_some_and(|u| u != user) {
            out.refused += 1;
            continue;
        }
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        let text = text_of(&record).to_owned();
        if ids.contains(&id) || texts.contains(&text) {
            out.skipped += 1;
            continue;
        }
        texts.insert(text);
        let origin = serde_json::Map::from_iter([("run_id".to_owned(), json!(m.run_id))]);
        adds.push(Restoring::from_memory(&record, origin));
    }
    if dry_run {
        out.restored = adds.len() as u64;
        return Ok(());
    }
    let (created, first_error) = client.add_all(adds).await;
    out.restored = created;
    match first_error {
        Some(e) => Err(e.context(format!("{} memories were restored before", out.restored))),
        None => Ok(()),
    }
}

/// Re-inserts the journal's rows, in one transaction; rows present again are left alone.
async fn rows(ctx: &Context, journal: &Journal, dry_run: bool, out: &mut Restored) -> anyhow::Result<()> {
    let m = &journal.manifest;
    let target = ctx
        .config
        .postgres
        .iter()
        .find(|t| t.name == m.target)
        .with_context(|| format!("postgres target `{}` is not configured", m.target))?;
    let table = m.scope.table.as_deref().context("the journal's manifest names no table")?;
    let mut db = client::connect(target).await?;
    let configured: Option<String> =
        db.query_one("SELECT to_regclass($1)::text", &[&target.table]).await.map_err(pg)?.get(0);
    if configured.as_deref() != Some(table) {
        bail!(
            "the journal holds rows of `{table}`, and postgres target `{}` names table `{}`{}",
            m.target,
            target.table,
            if configured.is_none() { " (which does not exist)" } else { "" }
        );
    }
    let cache_table = CacheTable::new(target, &ctx.config.project_name);
    if let Some(project) = &m.scope.project
        && cache_table.scoped_project().is_some_and(|configured| configured != project)
    {
        bail!(
            "the journal holds rows of project `{project}`, and the configuration is for project `{}`: \
             refusing to restore them into another project",
            ctx.config.project_name
        );
    }
    let t = quote_ident(table);
    let records: Vec<String> = journal.records()?.iter().map(Value::to_string).collect();
    let tx = db.transaction().await.map_err(pg)?;
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        let array = format!("[{}]", chunk.join(","));
        let n = chunk.len() as u64;
        let done = if dry_run {
            // Count the rows whose key is taken again.
            let key = cache_table.key();
            let sql = format!(
                "SELECT count(*)::bigint FROM jsonb_array_elements($1::text::jsonb) AS e,
                        LATERAL jsonb_populate_record(NULL::{t}, e) AS r
                  WHERE EXISTS (SELECT 1 FROM {t} AS x WHERE x.{key} = r.{key})"
            );
            let present: i64 = tx.query_one(&sql, &[&array]).await.map_err(pg)?.get(0);
            n - present as u64
        } else {
            let sql = format!(
                "INSERT INTO {t} SELECT r.* FROM jsonb_array_elements($1::text::jsonb) AS e,
                        LATERAL jsonb_populate_record(NULL::{t}, e) AS r
                 ON CONFLICT DO NOTHING"
            );
            tx.execute(&sql, &[&array]).await.map_err(pg)?
        };
        out.restored += done;
        out.skipped += n - done;
    }
    if dry_run {
        tx.rollback().await.map_err(pg)?;
    } else {
        tx.commit().await.map_err(pg)?;
    }
    Ok(())
}

fn pg(e: tokio_postgres::Error) -> anyhow::Error {
    anyhow::anyhow!(client::error_text(&e))
}

fn print(ctx: &Context, report: &UndoReport) -> anyhow::Result<()> {
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        return printer.json(report);
    }
    let failed = report.journals.iter().any(|j| j.error.is_some());
    if printer.is_quiet() && !failed {
        return Ok(());
    }
    let dry = if report.dry_run { " (dry run: nothing changed)" } else { "" };
    let verb = if report.dry_run { "would restore" } else { "restored" };
    let mut text = format!("undo of run {}{dry}:\n", report.run_id);
    for j in &report.journals {
        text.push_str(&format!(
            "  {}/{}: {} of {} journaled {verb}, {} present again (skipped)",
            j.tier, j.target, j.restored, j.journaled, j.skipped
        ));
        if j.refused > 0 {
            text.push_str(&format!(", {} of another user refused", j.refused));
        }
        if let Some(e) = &j.error {
            text.push_str(&format!("\n    error: {e}"));
        }
        text.push('\n');
    }
    Ok(printer.always(&text)?)
}

/// One run's journals, for `--list`.
#[derive(Debug, Serialize)]
struct Listed {
    run_id: String,
    created_at: chrono::DateTime<chrono::Utc>,
    bytes: u64,
    items: u64,
    undone: bool,
    journals: Vec<ListedFile>,
}

#[derive(Debug, Serialize)]
struct ListedFile {
    tier: Tier,
    target: String,
    file: String,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    undone: Option<Undone>,
}

fn list(ctx: &Context) -> anyhow::Result<u8> {
    let runs: Vec<Listed> = journal::runs(&ctx.state)?
        .into_iter()
        .rev()
        .map(|r| Listed {
            run_id: r.run_id.clone(),
            created_at: r.created_at,
            bytes: r.bytes,
            items: r.count(),
            undone: r.undone(),
            journals: r
                .journals
                .iter()
                .map(|j| ListedFile {
                    tier: j.manifest.tier,
                    target: j.manifest.target.clone(),
                    file: j.manifest.file.clone(),
                    count: j.manifest.count,
                    undone: j.manifest.undone.clone(),
                })
                .collect(),
        })
        .collect();
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({ "journals": runs }))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = printer.table();
    table.set_header(["Run", "Created", "Items", "Size", "Targets", "Undone"]);
    for r in &runs {
        let targets: Vec<String> = r.journals.iter().map(|j| format!("{}/{}: {}", j.tier, j.target, j.count)).collect();
        table.add_row(vec![
            r.run_id.clone(),
            r.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            r.items.to_string(),
            bytes(r.bytes),
            targets.join("\n"),
            if r.undone { "yes".into() } else { "no".into() },
        ]);
    }
    printer.info(&format!(
        "{} undo journals in {}\n{table}\nundo one with `cache-cleanup undo RUN_ID` (or `latest`)\n",
        runs.len(),
        ctx.state.path(journal::DIR).display()
    ))?;
    Ok(exit::SUCCESS)
}
