//! PostgreSQL: connect, `SELECT 1`, connections against `max_connections`, and the cache
//! table: existence, rows, size, dead tuples and index usage (seed 000's index-health query).

use cache_core::alerting::Metric;
use std::time::{Duration, Instant};

use cache_core::cache_table::CacheTable;
use cache_core::clients::postgres as client;
use cache_core::config::{HealthSettings, PostgresTarget};
use cache_core::output::bytes;
use cache_core::tier::Tier;
use tokio_postgres::Client;

use super::Timer;
use crate::report::{Status, TargetReport, judge, round3};

/// Below this many estimated rows the table is counted exactly; above, the estimate is used.
const EXACT_COUNT_LIMIT: f64 = 1_000_000.0;

/// What the probe judges the cache table by, besides the target.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    /// The target's place in the configuration (`postgres[N]`), for messages.
    pub index: usize,
    /// The project whose rows the table holds.
    pub project: &'a str,
    /// `optimizer.unused_index_after`.
    pub unused_after: Duration,
}

/// Probes one PostgreSQL target.
pub async fn probe(
    target: &PostgresTarget,
    settings: &HealthSettings,
    table: Table<'_>,
    mut timer: Timer<'_>,
) -> TargetReport {
    let mut report = TargetReport::new(Tier::Postgres, &target.name);
    report.endpoint = Some(target.url.to_string());
    let connect_start = Instant::now();
    let db = match client::connect(target).await {
        Ok(db) => db,
        Err(e) => {
            report.fail("connect", format!("{e:#}"));
            report.recommendations.push(format!(
                "{}: PostgreSQL is unreachable; check that the server runs and accepts this user, database and sslmode",
                report.id()
            ));
            return report;
        }
    };
    // A new backend's first query fills its catalog caches (milliseconds, once per connection,
    // as psql's `\timing` shows on its first query): that is part of connecting.
    if let Err(e) = db.simple_query("SELECT 1").await {
        report.fail("query", client::error_text(&e));
        report.connected(connect_start.elapsed());
        return report;
    }
    // Connecting (TCP, TLS, startup, authentication, the first query) is reported apart; the
    // latency is the next `SELECT 1` on the connection now open.
    let connected = connect_start.elapsed();
    let mut round_trip = None;
    if let Err(e) = checks(&db, target, settings, table, (&mut timer, &mut round_trip), &mut report).await {
        report.fail("query", client::error_text(&e));
    }
    report.connected(connected);
    if let Some(round_trip) = round_trip {
        report.latency(round_trip, target.latency_warn.unwrap_or(settings.latency.postgres));
    }
    report
}

async fn checks(
    db: &Client,
    target: &PostgresTarget,
    settings: &HealthSettings,
    config: Table<'_>,
    (timer, round_trip): (&mut Timer<'_>, &mut Option<Duration>),
    report: &mut TargetReport,
) -> Result<(), tokio_postgres::Error> {
    // The simple-query protocol: one round trip, as psql sends it (a prepared query is two),
    // timed apart from the rest of the check.
    let (answer, elapsed) = timer.time(db.simple_query("SELECT 1")).await;
    let answer = answer?;
    *round_trip = Some(elapsed);
    let one = answer.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    let perf = report.perf("select1", round3(elapsed.as_secs_f64() * 1000.0), "ms").range(0.0, None);
    let status = if one.as_deref() == Some("1") { Status::Healthy } else { Status::Failed };
    report.check("select", status, "SELECT 1", Some(perf));

    let row = db
        .query_one(
            "SELECT current_setting('server_version'), current_setting('max_connections')::int,
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int, pg_is_in_recovery()",
            &[],
        )
        .await?;
    let (version, max_conn, conns, recovery): (String, i32, i32, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    report.metric("server_version", version.clone());
    report.metric("max_connections", max_conn);
    report.metric("connections", conns);
    if max_conn > 0 {
        report.observe(Metric::ConnectionUsage, f64::from(conns) / f64::from(max_conn));
    }
    report.metric("in_recovery", recovery);
    let pct = f64::from(conns) * 100.0 / f64::from(max_conn.max(1));
    let status = judge(pct, settings.postgres_connections_percent);
    let perf = report.perf("connections", f64::from(conns), "").range(0.0, Some(f64::from(max_conn)));
    report.check("connections", status, format!("{conns} of {max_conn} connections ({pct:.1}%)"), Some(perf));
    if status != Status::Healthy {
        report.recommendations.push(format!(
            "{}: {pct:.1}% of max_connections in use; look for idle sessions and pool sizes (cache-debug connections)",
            report.id()
        ));
    }
    let mut headline = vec![format!("PostgreSQL {version}")];

    let table = db.query_one("SELECT to_regclass($1)::text", &[&target.table]).await?;
    let Some(table_name) = table.get::<_, Option<String>>(0) else {
        report.check("cache_table", Status::Degraded, format!("table `{}` does not exist", target.table), None);
        report.recommendations.push(format!(
            "{}: the cache table `{}` is missing; create it (docs/cache-table.md) or set `table` for this target",
            report.id(),
            target.table
        ));
        report.headline = headline.join(", ");
        return Ok(());
    };
    // Columns named in the configuration that the table lacks: every tool would fail on it.
    let missing = CacheTable::new(target, config.project).missing_columns(db).await?;
    if !missing.is_empty() {
        let why = cache_core::cache_table::misconfigured(&target.table, config.index, &missing);
        report.check("columns", Status::Degraded, why.clone(), None);
        report.recommendations.push(format!("{}: {why}", report.id()));
    }
    let stats = db
        .query_one(
            "SELECT c.reltuples::float8, pg_total_relation_size(c.oid)::bigint,
                    coalesce(s.n_live_tup, 0)::bigint, coalesce(s.n_dead_tup, 0)::bigint
               FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
              WHERE c.oid = $1::text::regclass",
            &[&table_name],
        )
        .await?;
    let (estimate, size, live, dead): (f64, i64, i64, i64) = (stats.get(0), stats.get(1), stats.get(2), stats.get(3));
    let rows = if estimate < EXACT_COUNT_LIMIT {
        let sql = format!("SELECT count(*) FROM {}", client::quote_ident(&table_name));
        db.query_one(&sql, &[]).await?.get::<_, i64>(0)
    } else {
        estimate as i64
    };
    report.metric("cache_table", table_name.clone());
    report.metric("rows", rows);
    report.metric("rows_exact", estimate < EXACT_COUNT_LIMIT);
    report.metric("table_bytes", size);
    report.metric("dead_tuples", dead);
    report.observe(Metric::Rows, rows as f64);
    report.observe(Metric::DeadTuples, dead as f64);
    let perf = report.perf("rows", rows as f64, "").range(0.0, None);
    report.check("cache_table", Status::Healthy, format!("{rows} rows, {}", bytes(size.max(0) as u64)), Some(perf));
    headline.push(format!("{rows} rows in {table_name}"));
    if dead > 1000 && dead as f64 > 0.2 * (live + dead) as f64 {
        report.recommendations.push(format!(
            "{}: {dead} dead tuples in `{table_name}` ({:.0}%); run VACUUM (ANALYZE) or check autovacuum",
            report.id(),
            dead as f64 * 100.0 / (live + dead) as f64
        ));
    }

    // Index usage, judged by cache-core's one rule (never a key or constraint index, never
    // on too little statistics time).
    let indexes = client::index_stats(db, &client::quote_ident(&table_name)).await?;
    let observed = client::stats_observed(db).await?;
    let index_metrics: Vec<serde_json::Value> = indexes
        .iter()
        .map(|ix| serde_json::json!({ "name": ix.name, "scans": ix.scans, "bytes": ix.bytes, "required": ix.unique || ix.required }))
        .collect();
    report.metric("indexes", index_metrics);
    report.metric("stats_observed_seconds", observed.as_secs());
    match client::unused_indexes(&indexes, observed, config.unused_after) {
        client::UnusedIndexes::Judged(unused) => {
            let names: Vec<&str> = unused.iter().map(|ix| ix.name.as_str()).collect();
            report.check(
                "indexes",
                Status::Healthy,
                format!("{} indexes, {} never scanned and droppable", indexes.len(), names.len()),
                None,
            );
            if !names.is_empty() && rows > 10_000 {
                report.recommendations.push(format!(
                    "{}: indexes never scanned on `{table_name}` in {} of statistics: {}; consider dropping them (cache-optimizer analyze)",
                    report.id(),
                    humantime::format_duration(std::time::Duration::from_secs(observed.as_secs())),
                    names.join(", ")
                ));
            }
        }
        client::UnusedIndexes::TooSoon { observed, needed } => report.check(
            "indexes",
            Status::Healthy,
            format!(
                "{} indexes; usage not judged: statistics gathered for {} of the {} needed (optimizer.unused_index_after)",
                indexes.len(),
                humantime::format_duration(std::time::Duration::from_secs(observed.as_secs())),
                humantime::format_duration(needed)
            ),
            None,
        ),
    }
    report.headline = headline.join(", ");
    Ok(())
}
