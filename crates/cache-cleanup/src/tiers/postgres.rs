//! PostgreSQL: expired and stale rows of the cache table, deleted in bounded statements, then
//! `VACUUM (ANALYZE)` when enough rows went.
//!
//! Rows are deleted in chunks of heap pages (`ctid` ranges, a TID range scan on PostgreSQL 14
//! and later): every statement does a bounded amount of work whatever the indexes, each commits
//! on its own, and the chunk grows or shrinks so that no statement runs longer than
//! `cleanup.max_statement`. Sessions set `lock_timeout`, so a cleanup never queues behind the
//! application's locks for long. Older servers get `LIMIT`ed batches with `SKIP LOCKED`.

use std::time::{Duration, Instant};

use cache_core::clients::postgres::{self as client, quote_ident};
use cache_core::config::{CleanupSettings, PostgresTarget};
use cache_core::tier::Tier;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::plan::Mode;
use crate::report::{Action, Item, TargetReport};

/// Delete anyway past this many rows or this share of the table: VACUUM (ANALYZE) then.
const VACUUM_MIN_ROWS: u64 = 10_000;
const VACUUM_MIN_SHARE: f64 = 0.1;

/// A PostgreSQL cleanup.
pub struct PostgresJob<'a> {
    /// The target.
    pub target: &'a PostgresTarget,
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
}

impl PostgresJob<'_> {
    /// Runs the cleanup of this target.
    pub async fn run(&self) -> TargetReport {
        let mut report = TargetReport::new(Tier::Postgres, &self.target.name);
        let db = match client::connect(self.target).await {
            Ok(db) => db,
            Err(e) => {
                report.unreachable = true;
                report.errors.push(format!("{e:#}"));
                return report;
            }
        };
        if let Err(e) = self.clean(&db, &mut report).await {
            report.errors.push(client::error_text(&e));
        }
        report
    }

    /// The condition selecting rows, its parameters, and the reason of each part.
    fn condition(&self) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let c = &self.target.columns;
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut why = vec![format!("{} < now()", quote_ident(&c.expires_at))];
        if let Some(idle) = self.mode.policy(self.settings).idle {
            params.push(Box::new(idle.as_secs_f64()));
            why.push(format!("{} < now() - make_interval(secs => ${})", quote_ident(&c.accessed_at), params.len()));
        }
        let mut condition = format!("({})", why.join(" OR "));
        if let Some(category) = self.category {
            params.push(Box::new(category.to_owned()));
            condition.push_str(&format!(" AND {} = ${}", quote_ident(&c.category), params.len()));
        }
        if !c.project.is_empty() {
            params.push(Box::new(self.project.to_owned()));
            condition.push_str(&format!(" AND {} = ${}", quote_ident(&c.project), params.len()));
        }
        (condition, params)
    }

    async fn clean(&self, db: &Client, report: &mut TargetReport) -> Result<(), tokio_postgres::Error> {
        let Some(table) =
            db.query_one("SELECT to_regclass($1)::text", &[&self.target.table]).await?.get::<_, Option<String>>(0)
        else {
            report.errors.push(format!("the cache table `{}` does not exist", self.target.table));
            return Ok(());
        };
        let t = quote_ident(&table);
        let lock_timeout = (self.settings.max_statement * 4).as_millis();
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
        let (condition, params) = self.condition();
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let c = &self.target.columns;
        report.notes.push("bytes freed are estimated from the average row size".into());
        if !self.dry_run {
            // A real run counts what it removes; only a preview needs to count first.
            report.examined = tuples as u64;
            report.notes.push("examined is the planner's row estimate".into());
        } else {
            let counted = db
                .query_one(
                    &format!("SELECT count(*)::bigint, (SELECT count(*) FROM {t})::bigint FROM {t} WHERE {condition}"),
                    &params,
                )
                .await?;
            let (selected, total): (i64, i64) = (counted.get(0), counted.get(1));
            report.examined = total as u64;
            report.selected = selected as u64;
            report.bytes_freed = (selected as f64 * row_bytes) as u64;
            let rows = db
                .query(
                    &format!(
                        "SELECT {key}::text, CASE WHEN {exp} < now() THEN 'expired at ' || {exp}::text
                                ELSE 'not accessed since ' || {acc}::text END
                           FROM {t} WHERE {condition} LIMIT {sample}",
                        key = quote_ident(&c.key),
                        exp = quote_ident(&c.expires_at),
                        acc = quote_ident(&c.accessed_at),
                        sample = self.settings.dry_run_sample,
                    ),
                    &params,
                )
                .await?;
            for row in rows {
                report.items.push(Item {
                    name: row.get::<_, Option<String>>(0).unwrap_or_default(),
                    action: Action::Delete,
                    reason: row.get::<_, Option<String>>(1).unwrap_or_default(),
                    bytes: Some(row_bytes as u64),
                });
            }
            return Ok(());
        }
        let phase = Instant::now();
        let Statements { count: statements, longest } = if version >= 140_000 {
            self.delete_by_pages(db, &t, &condition, &params, pages, report).await?
        } else {
            self.delete_by_limit(db, &t, &condition, &params, report).await?
        };
        report
            .notes
            .push(format!("deleted in {statements} statements over {:.0} ms", phase.elapsed().as_secs_f64() * 1000.0));
        report.selected = report.removed;
        report.bytes_freed = (report.removed as f64 * row_bytes) as u64;
        report.notes.push(format!("longest DELETE {:.0} ms", longest.as_secs_f64() * 1000.0));
        if report.removed >= VACUUM_MIN_ROWS || report.removed as f64 >= VACUUM_MIN_SHARE * tuples.max(1.0) {
            let start = Instant::now();
            db.batch_execute(&format!("VACUUM (ANALYZE) {t}")).await?;
            report.notes.push(format!("VACUUM (ANALYZE) took {:.0} ms", start.elapsed().as_secs_f64() * 1000.0));
        }
        Ok(())
    }

    /// Deletes in chunks of heap pages.
    async fn delete_by_pages(
        &self,
        db: &Client,
        table: &str,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
        pages: i64,
        report: &mut TargetReport,
    ) -> Result<Statements, tokio_postgres::Error> {
        let mut stats = Statements::default();
        let mut chunk: i64 = 256;
        let mut page: i64 = 0;
        // Rows appended while we work land past `pages`; the next run takes them.
        while page <= pages {
            let end = page + chunk;
            let sql = format!(
                "DELETE FROM {table} WHERE ctid >= '({page},0)'::tid AND ctid < '({end},0)'::tid AND {condition}"
            );
            let (removed, took) = stats.execute(db, &sql, params).await?;
            report.removed += removed;
            page = end;
            chunk = adapt(chunk, took, self.settings.max_statement, 8, 1 << 20);
        }
        Ok(stats)
    }

    /// Deletes `LIMIT`ed batches skipping locked rows (servers before PostgreSQL 14).
    async fn delete_by_limit(
        &self,
        db: &Client,
        table: &str,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
        report: &mut TargetReport,
    ) -> Result<Statements, tokio_postgres::Error> {
        let mut stats = Statements::default();
        let mut batch = self.settings.batch_size as i64;
        loop {
            let sql = format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT {batch} FOR UPDATE SKIP LOCKED))"
            );
            let (removed, took) = stats.execute(db, &sql, params).await?;
            report.removed += removed;
            if removed == 0 {
                return Ok(stats);
            }
            batch = adapt(batch, took, self.settings.max_statement, 10, 100_000);
        }
    }
}

/// DELETE statements run, and the longest one's time.
#[derive(Debug, Default)]
struct Statements {
    count: u64,
    longest: Duration,
}

impl Statements {
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

    use super::adapt;

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
}
