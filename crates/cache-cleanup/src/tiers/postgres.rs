//! PostgreSQL: expired and stale rows of the cache table, deleted in bounded statements, then
//! `VACUUM (ANALYZE)` when enough rows went.
//!
//! Expired rows go first, uncapped and unjournaled: they are dead already. Live rows (not
//! expired) that the mode finds stale go next, within the blast-radius cap ([`Cap`], counted on
//! the project's live rows when the run starts), and into the undo journal: each statement is
//! `DELETE ... RETURNING to_jsonb(row)` in its own transaction, and the rows it returns are
//! appended to the journal and fsynced before the transaction commits, so a row is never gone
//! without its journal.
//!
//! Rows are deleted in chunks of heap pages (`ctid` ranges, a TID range scan on PostgreSQL 14
//! and later): every statement does a bounded amount of work whatever the indexes, each commits
//! on its own, and the chunk grows or shrinks so that statements settle near half of
//! `cleanup.max_statement`. The bound is enforced, not only aimed at: each DELETE runs under
//! `statement_timeout = max_statement`, and a statement cancelled there (it rolled back, nothing
//! was deleted) is retried on a chunk four times smaller. `lock_timeout` is half of it, so a
//! cleanup never queues behind the application's locks for long: a chunk whose rows the
//! application holds is retried smaller, down to one page, which is retried after a pause that
//! doubles each time (at most 3 times), then left to the next run. And while the application's
//! sessions wait on locks (`pg_stat_activity`), the cleanup pauses before each next statement
//! rather than add to it. Older servers get `LIMIT`ed batches with `SKIP LOCKED`.

use std::time::{Duration, Instant};

use cache_core::cache_table::{CacheTable, Params};
use cache_core::clients::postgres::{self as client, quote_ident};
use cache_core::config::{CleanupSettings, PostgresTarget};
use cache_core::journal::{RunJournal, Scope, Writer};
use cache_core::tier::Tier;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::cap::Cap;
use crate::plan::Mode;
use crate::report::{Action, Item, TargetReport};

/// Delete anyway past this many rows or this share of the table: VACUUM (ANALYZE) then.
const VACUUM_MIN_ROWS: u64 = 10_000;
const VACUUM_MIN_SHARE: f64 = 0.1;

/// A PostgreSQL cleanup.
pub struct PostgresJob<'a> {
    /// The target.
    pub target: &'a PostgresTarget,
    /// Its place in the configuration (`postgres[N]`).
    pub index: usize,
    /// Cleanup settings.
    pub settings: &'a CleanupSettings,
    /// The mode.
    pub mode: Mode,
    /// A category to restrict to.
    pub category: Option<&'a str>,
    /// The project whose rows are cleaned (when the table has a project column).
    pub project: &'a str,
    /// Change nothing.
    pub dry_run: bool,
    /// `--force` at a terminal: no blast-radius cap.
    pub cap_lifted: bool,
    /// The run's undo journal, which live rows go into before they are deleted.
    pub journal: &'a RunJournal,
}

/// Which rows a statement selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rows {
    /// Expired rows.
    Expired,
    /// Live rows (not expired) the mode finds stale.
    LiveStale,
    /// Every live row, stale or not (what the cap is a share of).
    Live,
    /// Either of the first two (the dry run's listing).
    Selected,
}

impl PostgresJob<'_> {
    /// The cache table, scoped to the project.
    fn table(&self) -> CacheTable {
        CacheTable::new(self.target, self.project)
    }

    /// Runs the cleanup of this target.
    pub async fn run(&self) -> TargetReport {
        let mut report = TargetReport::new(Tier::Postgres, &self.target.name);
        let mut db = match client::connect(self.target).await {
            Ok(db) => db,
            Err(e) => {
                report.unreachable = true;
                report.errors.push(format!("{e:#}"));
                return report;
            }
        };
        if let Err(e) = self.clean(&mut db, &mut report).await {
            report.errors.push(match e.downcast_ref::<tokio_postgres::Error>() {
                // What the cleanup was doing (a context), then the server's words.
                Some(pg) if e.chain().count() > 1 => format!("{e}: {}", client::error_text(pg)),
                Some(pg) => client::error_text(pg),
                None => format!("{e:#}"),
            });
        }
        report
    }

    /// The condition selecting `rows` (within the category and the project), and its parameters.
    fn condition(&self, rows: Rows) -> Option<(String, Params)> {
        let c = self.table();
        let mut params = Params::new();
        let expired = format!("{} < now()", c.expires_at());
        let live = format!("({exp} IS NULL OR {exp} >= now())", exp = c.expires_at());
        let mut stale = || {
            let idle = self.mode.policy(self.settings).idle?;
            let secs = params.push(idle.as_secs_f64());
            Some(format!("{} < now() - make_interval(secs => {secs})", c.accessed_at()))
        };
        let mut condition = match rows {
            Rows::Expired => expired,
            Rows::LiveStale => format!("{live} AND {}", stale()?),
            Rows::Live => live,
            Rows::Selected => match stale() {
                Some(stale) => format!("({expired} OR {stale})"),
                None => expired,
            },
        };
        if let Some(category) = self.category.filter(|_| rows != Rows::Live) {
            let placeholder = params.push(category.to_owned());
            condition.push_str(&format!(" AND {} = {placeholder}", c.category()));
        }
        condition.push_str(&c.scope(&mut params));
        Some((condition, params))
    }

    async fn clean(&self, db: &mut Client, report: &mut TargetReport) -> anyhow::Result<()> {
        let Some(table) =
            db.query_one("SELECT to_regclass($1)::text", &[&self.target.table]).await?.get::<_, Option<String>>(0)
        else {
            report.errors.push(format!("the cache table `{}` does not exist", self.target.table));
            return Ok(());
        };
        let missing = self.table().missing_columns(db).await?;
        if !missing.is_empty() {
            report.errors.push(cache_core::cache_table::misconfigured(&self.target.table, self.index, &missing));
            return Ok(());
        }
        let t = quote_ident(&table);
        // Shorter than the statement bound, so that a wait on the application's rows is told
        // apart from a statement that is too big.
        let lock_timeout = (self.settings.max_statement / 2).as_millis().max(1);
        db.batch_execute(&format!("SET lock_timeout = {lock_timeout}")).await?;
        let stats = db
            .query_one(
                "SELECT greatest(c.reltuples, 0)::float8, pg_relation_size(c.oid)::float8,
                        (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint,
                        current_setting('server_version_num')::int
                   FROM pg_class c WHERE c.oid = $1::text::regclass",
                &[&table],
            )
            .await?;
        let (tuples, heap_bytes, pages, version): (f64, f64, i64, i32) =
            (stats.get(0), stats.get(1), stats.get(2), stats.get(3));
        // A table never analyzed has no row estimate: count it once.
        let tuples = if tuples >= 1.0 {
            tuples
        } else {
            db.query_one(&format!("SELECT count(*)::float8 FROM {t}"), &[]).await?.get::<_, f64>(0)
        };
        let row_bytes = if tuples >= 1.0 { heap_bytes / tuples } else { 0.0 };
        let size = row_bytes as u64;
        report.notes.push("bytes freed are estimated from the average row size".into());
        // The cap is a share of the project's live rows when the run starts; a mode that
        // deletes no live row needs no count.
        let live_stale = self.condition(Rows::LiveStale);
        let mut cap = match &live_stale {
            None => Cap::none(),
            Some(_) => {
                let (live, params) = self.condition(Rows::Live).unwrap_or_default();
                let sql = format!("SELECT count(*)::bigint FROM {t} WHERE {live}");
                let live_rows: i64 = db.query_one(&sql, &params.refs()).await?.get(0);
                Cap::new(self.settings, live_rows as u64, self.cap_lifted)
            }
        };
        if self.dry_run {
            self.preview(db, &t, row_bytes, &mut cap, report).await?;
            report.cap = Some(cap);
            return Ok(());
        }
        // A real run counts what it removes; only a preview needs to count first.
        report.examined = tuples as u64;
        report.notes.push("examined is the planner's row estimate".into());
        let phase = Instant::now();
        let mut stats = Statements::default();
        let walk = Walk { table: &t, pages, by_pages: version >= 140_000 };
        let (expired, params) = self.condition(Rows::Expired).unwrap_or_default();
        walk.delete(self, db, &expired, &params.refs(), None, &mut stats, report).await?;
        let expired_rows = report.removed;
        if let Some((condition, params)) = &live_stale {
            let scope = Scope {
                table: Some(table.clone()),
                project: self.table().scoped_project().map(str::to_owned),
                ..Scope::default()
            };
            let mut writer = self.journal.writer(Tier::Postgres, &self.target.name, scope);
            let mut live = Live { cap: &mut cap, size, journal: &mut writer };
            let done = walk.delete(self, db, condition, &params.refs(), Some(&mut live), &mut stats, report).await;
            report.journal = writer.summary();
            if let Some(journal) = &report.journal {
                report.notes.push(format!(
                    "{} live rows journaled in `{}`: undo with `cache-cleanup undo {}`",
                    journal.count,
                    journal.file,
                    self.journal.run_id()
                ));
            }
            done?;
            if let Some(hit) = &cap.hit {
                report.notes.push(hit.clone());
            }
        }
        report.cap = Some(cap);
        report.notes.push(format!(
            "deleted in {} statements over {:.0} ms",
            stats.count,
            phase.elapsed().as_secs_f64() * 1000.0
        ));
        if live_stale.is_some() {
            report.notes.push(format!(
                "{expired_rows} expired rows (uncapped), {} live rows not accessed within the mode's idle time",
                report.removed - expired_rows
            ));
        }
        report.selected = report.removed;
        report.bytes_freed = (report.removed as f64 * row_bytes) as u64;
        report.notes.push(format!("longest DELETE {:.0} ms", stats.longest.as_secs_f64() * 1000.0));
        if stats.cancelled > 0 {
            report.notes.push(format!(
                "{} DELETE statements reached max_statement ({}) and were retried on smaller chunks",
                stats.cancelled,
                humantime::format_duration(self.settings.max_statement)
            ));
        }
        if stats.lock_waits > 0 || stats.backoffs > 0 {
            report.notes.push(format!(
                "the application's locks: {} chunks waited past lock_timeout and were retried, {} pauses \
                 while the application's sessions waited on locks",
                stats.lock_waits, stats.backoffs
            ));
        }
        if stats.skipped > 0 {
            report.notes.push(format!(
                "{} chunks of pages left to the next run: the application kept their rows locked",
                stats.skipped
            ));
        }
        if report.removed >= VACUUM_MIN_ROWS || report.removed as f64 >= VACUUM_MIN_SHARE * tuples.max(1.0) {
            let start = Instant::now();
            db.batch_execute(&format!("VACUUM (ANALYZE) {t}")).await?;
            report.notes.push(format!("VACUUM (ANALYZE) took {:.0} ms", start.elapsed().as_secs_f64() * 1000.0));
        }
        Ok(())
    }

    /// A dry run: counts what would go, within the cap, and lists a sample with reasons.
    async fn preview(
        &self,
        db: &Client,
        t: &str,
        row_bytes: f64,
        cap: &mut Cap,
        report: &mut TargetReport,
    ) -> anyhow::Result<()> {
        let c = self.table();
        let count = |rows: Rows| {
            let condition = self.condition(rows);
            async move {
                let Some((condition, params)) = condition else { return anyhow::Ok(0u64) };
                let sql = format!("SELECT count(*)::bigint FROM {t} WHERE {condition}");
                Ok(db.query_one(&sql, &params.refs()).await?.get::<_, i64>(0) as u64)
            }
        };
        let expired = count(Rows::Expired).await?;
        let live_stale = count(Rows::LiveStale).await?;
        let total: i64 = db.query_one(&format!("SELECT count(*)::bigint FROM {t}"), &[]).await?.get(0);
        let size = row_bytes as u64;
        let admitted = live_stale.min(limit(cap, size).unwrap_or(u64::MAX));
        cap.items += admitted;
        cap.bytes += admitted * size;
        if admitted < live_stale && !cap.admit(size) {
            let hit = cap.hit.take().unwrap_or_default().replacen("stopped", "would stop", 1);
            report.notes.push(format!("{hit} ({} of {live_stale} stale live rows)", admitted));
            cap.hit = Some(hit);
        }
        report.examined = total as u64;
        report.selected = expired + admitted;
        report.bytes_freed = (report.selected as f64 * row_bytes) as u64;
        let Some((condition, params)) = self.condition(Rows::Selected) else { return Ok(()) };
        let rows = db
            .query(
                &format!(
                    "SELECT {key}::text, CASE WHEN {exp} < now() THEN 'expired at ' || {exp}::text
                            ELSE 'not accessed since ' || {acc}::text END
                       FROM {t} WHERE {condition} LIMIT {sample}",
                    key = c.key(),
                    exp = c.expires_at(),
                    acc = c.accessed_at(),
                    sample = self.settings.dry_run_sample,
                ),
                &params.refs(),
            )
            .await?;
        for row in rows {
            report.items.push(Item {
                name: row.get::<_, Option<String>>(0).unwrap_or_default(),
                action: Action::Delete,
                reason: row.get::<_, Option<String>>(1).unwrap_or_default(),
                bytes: Some(size),
            });
        }
        Ok(())
    }
}

/// The most rows the cap still admits at `size` bytes each; `None` when it is lifted.
fn limit(cap: &Cap, size: u64) -> Option<u64> {
    let by_count = cap.max_items.map(|_| cap.room());
    let by_bytes = cap.max_bytes.map(|max| max.saturating_sub(cap.bytes).checked_div(size).unwrap_or(u64::MAX));
    match (by_count, by_bytes) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX))),
    }
}

/// What deleting live rows takes: the cap, the estimated size of a row, and the journal.
struct Live<'a> {
    cap: &'a mut Cap,
    size: u64,
    journal: &'a mut Writer,
}

/// How a table is walked: chunks of heap pages (PostgreSQL 14 and later), or `LIMIT`ed batches.
struct Walk<'a> {
    table: &'a str,
    pages: i64,
    by_pages: bool,
}

impl Walk<'_> {
    /// Deletes every row matching `condition`; with `live`, only as many as its cap admits, each
    /// statement's rows journaled before its transaction commits.
    #[allow(clippy::too_many_arguments, reason = "one call site per phase; a struct would only rename them")]
    async fn delete(
        &self,
        job: &PostgresJob<'_>,
        db: &mut Client,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
        live: Option<&mut Live<'_>>,
        stats: &mut Statements,
        report: &mut TargetReport,
    ) -> anyhow::Result<()> {
        // Only the DELETEs are time-boxed: counts and VACUUM are not statements the
        // application's rows wait behind.
        let budget = job.settings.max_statement.as_millis().max(1);
        db.batch_execute(&format!("SET statement_timeout = {budget}")).await?;
        let done = self.delete_chunks(job, db, condition, params, live, stats, report).await;
        let reset = db.batch_execute("SET statement_timeout = 0").await;
        done?;
        Ok(reset?)
    }

    #[allow(clippy::too_many_arguments, reason = "the arguments of `delete`")]
    async fn delete_chunks(
        &self,
        job: &PostgresJob<'_>,
        db: &mut Client,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
        mut live: Option<&mut Live<'_>>,
        stats: &mut Statements,
        report: &mut TargetReport,
    ) -> anyhow::Result<()> {
        let table = self.table;
        let budget = job.settings.max_statement;
        let (min, max) = if self.by_pages { (8, 1 << 20) } else { (10, 100_000) };
        let mut chunk: i64 = if self.by_pages { 256 } else { job.settings.batch_size as i64 };
        let mut page: i64 = 0;
        // Consecutive lock timeouts on the same chunk.
        let mut locked = 0u32;
        // Rows appended while we work land past `pages`; the next run takes them.
        while !self.by_pages || page <= self.pages {
            let range = if self.by_pages {
                format!("ctid >= '({page},0)'::tid AND ctid < '({},0)'::tid AND ", page + chunk)
            } else {
                String::new()
            };
            let cap_limit = live.as_deref().and_then(|l| limit(l.cap, l.size));
            if cap_limit == Some(0) {
                // The cap is reached: say so only if a row is still waiting.
                let from = if self.by_pages { format!("ctid >= '({page},0)'::tid AND ") } else { String::new() };
                let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE {from}{condition})");
                // Past `statement_timeout`, whether a row waits is unknown: the cap says it stopped.
                let waiting = match db.query_one(&sql, params).await {
                    Ok(row) => row.get::<_, bool>(0),
                    Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => true,
                    Err(e) => return Err(e.into()),
                };
                if waiting && let Some(l) = live.as_deref_mut() {
                    l.cap.admit(l.size);
                }
                return Ok(());
            }
            let batch = if self.by_pages { cap_limit } else { Some(cap_limit.unwrap_or(u64::MAX).min(chunk as u64)) };
            let selection = match batch {
                None => format!("{range}{condition}"),
                Some(n) => {
                    let skip_locked = if self.by_pages { "" } else { " FOR UPDATE SKIP LOCKED" };
                    format!(
                        "ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {range}{condition} LIMIT {n}{skip_locked})) AND {condition}"
                    )
                }
            };
            let sql = format!("DELETE FROM {table} AS d WHERE {selection}");
            let started = Instant::now();
            let result = match live.as_deref_mut() {
                None => stats.execute(db, &sql, params).await.map_err(anyhow::Error::from),
                Some(l) => stats.execute_journaled(db, &format!("{sql} RETURNING to_jsonb(d)::text"), params, l).await,
            };
            let (removed, took) = match result {
                Ok(done) => {
                    locked = 0;
                    done
                }
                Err(e) => match e.downcast_ref::<tokio_postgres::Error>().and_then(tokio_postgres::Error::code) {
                    // Cancelled at `max_statement`: it rolled back; the same rows, a smaller chunk.
                    Some(&SqlState::QUERY_CANCELED) if chunk > 1 => {
                        stats.note(started.elapsed());
                        stats.cancelled += 1;
                        chunk = (chunk / 4).max(1);
                        continue;
                    }
                    Some(&SqlState::QUERY_CANCELED) => {
                        return Err(e.context(format!(
                            "a DELETE of the smallest chunk ran past cleanup.max_statement ({})",
                            humantime::format_duration(budget)
                        )));
                    }
                    // The application holds some of these rows: wait, then try again; in the
                    // end leave them to the next run.
                    Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                        stats.note(started.elapsed());
                        stats.lock_waits += 1;
                        if chunk > 1 {
                            // Narrow down to the pages the application holds: the rest go.
                            chunk = (chunk / 4).max(1);
                            tokio::time::sleep(budget).await;
                            continue;
                        }
                        locked += 1;
                        if locked <= LOCK_RETRIES {
                            tokio::time::sleep(budget * 2u32.pow(locked)).await;
                        } else if self.by_pages {
                            stats.skipped += 1;
                            locked = 0;
                            page += chunk;
                        } else {
                            return Err(e.context("the application kept the rows locked"));
                        }
                        continue;
                    }
                    _ => return Err(e),
                },
            };
            report.removed += removed;
            if stats.contended(db).await? {
                stats.backoffs += 1;
                tokio::time::sleep(budget.max(took)).await;
            }
            let full = batch.is_some_and(|n| removed >= n);
            if self.by_pages {
                // A chunk cut short by the cap may hold more: take it again.
                if !full {
                    page += chunk;
                }
                chunk = adapt(chunk, took, budget, min, max);
            } else {
                if removed == 0 {
                    return Ok(());
                }
                chunk = adapt(chunk, took, budget, min, max);
            }
        }
        Ok(())
    }
}

/// Times a chunk the application's locks held is tried again.
const LOCK_RETRIES: u32 = 3;

/// DELETE statements run, the longest one's time, and how the application's load was met.
#[derive(Debug, Default)]
struct Statements {
    count: u64,
    longest: Duration,
    /// Statements cancelled at `max_statement` (and retried on a smaller chunk).
    cancelled: u64,
    /// Chunks that waited past `lock_timeout` (and were retried after a pause).
    lock_waits: u64,
    /// Pauses because the application's sessions waited on locks.
    backoffs: u64,
    /// Chunks left to the next run: the application kept their rows locked.
    skipped: u64,
}

impl Statements {
    /// Counts a statement that ended in an error after `took`.
    fn note(&mut self, took: Duration) {
        self.count += 1;
        self.longest = self.longest.max(took);
    }

    /// Whether other sessions of the database wait on a lock now (the application's reads and
    /// writes contending): then the cleanup pauses before its next statement.
    async fn contended(&self, db: &Client) -> Result<bool, tokio_postgres::Error> {
        let row = db
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                                 WHERE wait_event_type = 'Lock' AND datname = current_database()
                                   AND pid <> pg_backend_pid())",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Runs one statement, timing it; returns the rows it affected and its time.
    async fn execute(
        &mut self,
        db: &Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(u64, Duration), tokio_postgres::Error> {
        let start = Instant::now();
        let rows = db.execute(sql, params).await?;
        let took = start.elapsed();
        self.count += 1;
        self.longest = self.longest.max(took);
        Ok((rows, took))
    }

    /// Runs one `DELETE ... RETURNING to_jsonb(row)::text` in a transaction, appends the rows
    /// to the journal (fsynced), then commits; admits each row in the cap. A failure to journal
    /// rolls the statement back, so no row goes unjournaled.
    async fn execute_journaled(
        &mut self,
        db: &mut Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        live: &mut Live<'_>,
    ) -> anyhow::Result<(u64, Duration)> {
        let start = Instant::now();
        let tx = db.transaction().await?;
        let rows = tx.query(sql, params).await?;
        let records: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        live.journal.append(&records)?;
        tx.commit().await?;
        let took = start.elapsed();
        self.count += 1;
        self.longest = self.longest.max(took);
        for _ in &records {
            live.cap.admit(live.size);
        }
        Ok((records.len() as u64, took))
    }
}

/// The next chunk size: proportional to how far the last statement was from half the budget
/// (so statements settle near half the budget, leaving a margin of two), changing by at most
/// four times down or two times up per step.
fn adapt(size: i64, took: Duration, budget: Duration, min: i64, max: i64) -> i64 {
    let target = budget.as_secs_f64() / 2.0;
    let factor = (target / took.as_secs_f64().max(1e-6)).clamp(0.25, 2.0);
    ((size as f64 * factor) as i64).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{adapt, limit};
    use crate::cap::Cap;

    #[test]
    fn chunks_adapt_to_the_statement_budget() {
        let budget = Duration::from_millis(200);
        // Fast statements double the chunk, at most.
        assert_eq!(adapt(100, Duration::from_millis(10), budget, 8, 1000), 200);
        assert_eq!(adapt(800, Duration::from_millis(10), budget, 8, 1000), 1000);
        // Near half the budget the chunk holds; past it, it shrinks in proportion.
        assert_eq!(adapt(100, Duration::from_millis(100), budget, 8, 1000), 100);
        assert_eq!(adapt(100, Duration::from_millis(200), budget, 8, 1000), 50);
        assert_eq!(adapt(100, Duration::from_millis(900), budget, 8, 1000), 25);
        assert_eq!(adapt(10, Duration::from_millis(150), budget, 8, 1000), 8);
    }

    #[test]
    fn the_statement_limit_is_the_tighter_of_the_two_caps() {
        let mut settings = cache_core::config::CleanupSettings::default();
        let mut cap = Cap::new(&settings, 2000, false);
        assert_eq!(limit(&cap, 100), Some(500));
        assert!((0..400).all(|_| cap.admit(100)));
        assert_eq!(limit(&cap, 100), Some(100));
        // One GiB of rows of 4 MiB: 256 rows at most, whatever the count.
        settings.max_delete_share = 1.0;
        let cap = Cap::new(&settings, 1_000_000, false);
        assert_eq!(limit(&cap, 4 << 20), Some(256));
        assert_eq!(limit(&cap, 0), Some(1_000_000));
        assert_eq!(limit(&Cap::new(&settings, 10, true), 100), None);
        assert_eq!(limit(&Cap::none(), 100), None);
    }
}
