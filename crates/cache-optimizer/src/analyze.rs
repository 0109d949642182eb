//! `analyze`: seed 002's CacheOptimizer over the last 7 days of analytics history, plus what
//! the servers themselves show — PostgreSQL unused and bloated indexes, dead tuples and stale
//! statistics on the cache table; Redis eviction policy, maxmemory, fragmentation and the share
//! of keys without a TTL.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::clients::postgres;
use cache_core::config::{OptimizerSettings, PostgresTarget, RedisTarget};
use cache_core::exit::{Convention, Reach, Tally};
use cache_core::history::{self, REPORTS_DIR};
use cache_core::history::{HISTORY, Snapshot};
use cache_core::keyspace::Keyspace;
use cache_core::output::{Format, bytes};
use cache_core::scan::{ScanOptions, Scanner};
use cache_core::tier::{Tier, selected};
use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{Action, Priority, Recommendation};

/// Keys sampled per Redis target for the TTL-less share.
pub const TTL_SAMPLE: u64 = 10_000;
/// Tables with fewer dead tuples than this are not worth a VACUUM whatever the share.
const MIN_DEAD_TUPLES: i64 = 1000;
/// Autovacuum's scale factor recommended for a cache table that churns.
const CHURN_SCALE_FACTOR: &str = "0.05";

/// What `analyze` found.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    /// Recommendations, most urgent first.
    pub recommendations: Vec<Recommendation>,
    /// Targets that could not be read, or facts a server would not give.
    pub notes: Vec<String>,
    /// Seed 002's weekly analysis of the history (absent without history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly: Option<Value>,
    /// How the targets fared: reached, or not (the exit code of `analyze` and `run`).
    #[serde(skip)]
    pub reach: Tally,
}

fn rec(
    category: &str,
    priority: Priority,
    target: Option<String>,
    issue: String,
    recommendation: &str,
    (current, wanted): (Value, Value),
    action: Option<Action>,
) -> Recommendation {
    Recommendation {
        category: category.into(),
        priority,
        target,
        issue,
        recommendation: recommendation.into(),
        current_value: current,
        target_value: wanted,
        action,
    }
}

/// Seed 002's recommendations from the weekly analysis.
pub fn weekly_recommendations(weekly: &Value) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let hit = weekly["hit_rate_analysis"]["average_hit_rate"].as_f64();
    if let Some(h) = hit.filter(|h| *h < 0.7) {
        out.push(rec(
            "hit_rate",
            Priority::High,
            None,
            "Low cache hit rate".into(),
            "Consider increasing TTL values or cache size",
            (json!(h), json!(0.8)),
            None,
        ));
    }
    if let Some(l) = weekly["latency_analysis"]["average_latency"].as_f64().filter(|l| *l > 50.0) {
        out.push(rec(
            "latency",
            Priority::Medium,
            None,
            "High response latency".into(),
            "Optimize Redis configuration or increase connection pool size",
            (json!(l), json!(25)),
            None,
        ));
    }
    if weekly["memory_analysis"]["memory_pressure"] == true {
        out.push(rec(
            "memory",
            Priority::High,
            None,
            "Memory pressure detected".into(),
            "Increase memory allocation or optimize eviction policy",
            (weekly["memory_analysis"]["peak_utilization"].clone(), json!(0.8)),
            None,
        ));
    }
    out
}

/// Everything `analyze` and `run` look at.
pub async fn findings(ctx: &Context) -> anyhow::Result<Findings> {
    let settings = &ctx.config.optimizer;
    let filters = &ctx.common.tiers;
    let mut findings = Findings::default();
    let today = Utc::now().date_naive();
    // The 7 days judged and the day before them (its last snapshot starts the first day's counters).
    let since = (today - chrono::Duration::days(7))
        .and_hms_opt(0, 0, 0)
        .map_or(chrono::DateTime::<Utc>::MIN_UTC, |t| t.and_utc());
    let history: Vec<Snapshot> = ctx.state.read_jsonl_since(HISTORY, since, cache_core::state::READ_CAP_BYTES)?;
    let points = history::load_points(&history, today, 7);
    if !points.is_empty() {
        let days = history::days(&points);
        let first = today - chrono::Duration::days(6);
        let days: Vec<_> = days.into_iter().filter(|d| d.date >= first).collect();
        let points: Vec<_> = points.into_iter().filter(|p| p.t.date_naive() >= first).collect();
        if !points.is_empty() {
            let weekly = history::weekly_analysis(&days, &points);
            findings.recommendations.extend(weekly_recommendations(&weekly));
            findings.weekly = Some(weekly);
        }
    }
    if findings.weekly.is_none() {
        findings.notes.push("no analytics history in the last 7 days: hit rate and latency not judged".into());
    }
    let pg = futures::future::join_all(
        ctx.config
            .postgres
            .iter()
            .filter(|t| selected(filters, Tier::Postgres, &t.name))
            .map(|t| postgres_findings(t, settings)),
    );
    let redis = futures::future::join_all(
        ctx.config
            .redis
            .iter()
            .filter(|t| selected(filters, Tier::Redis, &t.name))
            .map(|t| redis_findings(&ctx.state, t, settings, Keyspace::new(&ctx.config, t))),
    );
    let (pg, redis) = tokio::join!(pg, redis);
    for (recs, notes, reach) in pg.into_iter().chain(redis) {
        findings.reach.add(reach);
        findings.recommendations.extend(recs);
        // Per target, so that one kind of note repeated per primary is one line with a count.
        findings.notes.extend(cache_core::messages::condense(&notes));
    }
    findings.recommendations.sort_by_key(|r| r.priority);
    Ok(findings)
}

async fn postgres_findings(
    target: &PostgresTarget,
    settings: &OptimizerSettings,
) -> (Vec<Recommendation>, Vec<String>, Reach) {
    let mut recs = Vec::new();
    let mut notes = Vec::new();
    let who = format!("postgres/{}", target.name);
    let db = match postgres::connect(target).await {
        Ok(db) => db,
        Err(e) => {
            notes.push(format!("{who}: {e:#}"));
            return (recs, notes, Reach::of_error(&e));
        }
    };
    let table = postgres::quote_ident(&target.table);
    let stats = db
        .query_opt(
            "SELECT n_live_tup, n_dead_tup, n_mod_since_analyze,
                    last_analyze IS NULL AND last_autoanalyze IS NULL,
                    coalesce((SELECT option_value FROM pg_options_to_table(c.reloptions)
                              WHERE option_name = 'autovacuum_vacuum_scale_factor'), '')
               FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
              WHERE s.relid = to_regclass($1)",
            &[&table],
        )
        .await;
    match stats {
        Ok(Some(row)) => {
            let (live, dead, modified): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let never_analyzed: bool = row.get(3);
            let scale: String = row.get(4);
            let dead_ratio = if live + dead > 0 { dead as f64 / (live + dead) as f64 } else { 0.0 };
            if dead >= MIN_DEAD_TUPLES && dead_ratio > settings.dead_tuple_ratio {
                recs.push(rec(
                    "vacuum",
                    Priority::High,
                    Some(who.clone()),
                    format!("{dead} dead tuples in {} ({:.0}% of the table)", target.table, dead_ratio * 100.0),
                    "VACUUM the table to make the space reusable",
                    (json!(dead_ratio), json!(settings.dead_tuple_ratio)),
                    Some(Action::PgVacuum { target: target.name.clone(), table: table.clone() }),
                ));
                if scale.parse::<f64>().map_or(true, |s| s > 0.05) {
                    recs.push(rec(
                        "vacuum",
                        Priority::Medium,
                        Some(who.clone()),
                        format!("autovacuum lets {} reach {:.0}% dead tuples", target.table, dead_ratio * 100.0),
                        "Vacuum this churning cache table sooner (applied with --apply)",
                        (if scale.is_empty() { Value::Null } else { json!(scale) }, json!(CHURN_SCALE_FACTOR)),
                        Some(Action::PgTableSetting {
                            target: target.name.clone(),
                            table: table.clone(),
                            setting: "autovacuum_vacuum_scale_factor".into(),
                            value: CHURN_SCALE_FACTOR.into(),
                        }),
                    ));
                }
            }
            if live + dead > 0 && (never_analyzed || modified as f64 > 0.1 * (live.max(1)) as f64) {
                recs.push(rec(
                    "statistics",
                    Priority::Medium,
                    Some(who.clone()),
                    if never_analyzed {
                        format!("{} has never been analyzed", target.table)
                    } else {
                        format!("{modified} rows of {} changed since the last ANALYZE", target.table)
                    },
                    "ANALYZE the table so the planner's estimates are current",
                    (json!(modified), json!(0)),
                    Some(Action::PgAnalyze { target: target.name.clone(), table: table.clone() }),
                ));
            }
        }
        Ok(None) => {
            notes.push(format!("{who}: table `{}` does not exist", target.table));
            return (recs, notes, Reach::Done);
        }
        Err(e) => {
            notes.push(format!("{who}: table statistics: {}", postgres::error_text(&e)));
            return (recs, notes, Reach::Done);
        }
    }
    let indexes = postgres::index_stats(&db, &table).await;
    match indexes {
        Ok(rows) => {
            // cache-core's one rule, shared with cache-health: never a key, unique, constraint
            // or replica-identity index, and only on enough statistics time.
            match postgres::stats_observed(&db).await {
                Ok(observed) => match postgres::unused_indexes(&rows, observed, settings.unused_index_after) {
                    postgres::UnusedIndexes::Judged(unused) => {
                        for ix in unused {
                            recs.push(rec(
                                "index",
                                Priority::Low,
                                Some(who.clone()),
                                format!(
                                    "index {} ({}) has not been used in {} of statistics",
                                    ix.name,
                                    bytes(ix.bytes as u64),
                                    humantime::format_duration(std::time::Duration::from_secs(observed.as_secs()))
                                ),
                                "Drop it if no query needs it (not done automatically)",
                                (json!(ix.scans), Value::Null),
                                None,
                            ));
                        }
                    }
                    postgres::UnusedIndexes::TooSoon { observed, needed } => notes.push(format!(
                        "{who}: index usage not judged: statistics gathered for {} of the {} needed (optimizer.unused_index_after)",
                        humantime::format_duration(std::time::Duration::from_secs(observed.as_secs())),
                        humantime::format_duration(needed)
                    )),
                },
                Err(e) => notes.push(format!("{who}: statistics age: {}", postgres::error_text(&e))),
            }
            for ix in rows {
                let (name, size) = (ix.name, ix.bytes);
                let Some(waste) = ix.bloat_bytes.map(|b| b as f64) else { continue };
                let ratio = if size > 0 { waste / size as f64 } else { 0.0 };
                if ratio > settings.bloat_ratio && waste >= settings.bloat_min_size.as_u64() as f64 {
                    recs.push(rec(
                        "index",
                        Priority::Medium,
                        Some(who.clone()),
                        format!(
                            "index {name} is about {:.0}% bloated ({} of {})",
                            ratio * 100.0,
                            bytes(waste as u64),
                            bytes(size as u64)
                        ),
                        "Rebuild it without blocking writes (REINDEX INDEX CONCURRENTLY)",
                        (json!(ratio), json!(settings.bloat_ratio)),
                        Some(Action::PgReindex { target: target.name.clone(), index: name }),
                    ));
                }
            }
        }
        Err(e) => notes.push(format!("{who}: index statistics: {}", postgres::error_text(&e))),
    }
    (recs, notes, Reach::Done)
}

async fn redis_findings(
    state: &cache_core::state::StateDir,
    target: &RedisTarget,
    settings: &OptimizerSettings,
    keyspace: Keyspace<'_>,
) -> (Vec<Recommendation>, Vec<String>, Reach) {
    let mut recs = Vec::new();
    let mut notes = Vec::new();
    let who = format!("redis/{}", target.name);
    let primaries = match keyspace.primaries().await {
        Ok(p) => p,
        Err(e) => {
            notes.push(format!("{who}: {e:#}"));
            return (recs, notes, Reach::of_error(&e));
        }
    };
    // A cluster none of whose primaries answered was not reached; one missing some is partial.
    let reach = match (primaries.nodes.is_empty(), primaries.missing.is_empty()) {
        (true, false) => Reach::Unreachable,
        (false, false) => Reach::Failed,
        _ => Reach::Done,
    };
    if primaries.cluster {
        notes.push(format!("{who}: {} judged", primaries.coverage()));
    }
    notes.extend(primaries.missing.iter().map(|m| format!("{who}: not judged: {m}")));
    // Each primary's configuration: the first one found wanting stands for the others (a change
    // is applied to every primary).
    let mut judged = std::collections::BTreeSet::new();
    for node in &primaries.nodes {
        let info = &node.info;
        if info.is_empty() {
            notes.push(format!("{who}: INFO refused by {}", node.node.as_deref().unwrap_or("the server")));
            continue;
        }
        {
            let num = |k: &str| info.get(k).and_then(|v| v.parse::<f64>().ok());
            let maxmemory = num("maxmemory").unwrap_or(0.0);
            let policy = info.get("maxmemory_policy").cloned().unwrap_or_default();
            if maxmemory == 0.0 && judged.insert("maxmemory") {
                let total = cache_core::system::host().map(|h| h.memory_total).unwrap_or(0);
                recs.push(rec(
                    "memory",
                    Priority::Medium,
                    Some(who.clone()),
                    "no maxmemory: Redis grows until the host runs out of memory".into(),
                    "Set maxmemory (e.g. 75% of the memory the host can give Redis) with an eviction policy",
                    (json!(0), if total > 0 { json!((total as f64 * 0.75) as u64) } else { Value::Null }),
                    None,
                ));
            } else if policy == "noeviction" && judged.insert("policy") {
                recs.push(rec(
                    "eviction",
                    Priority::High,
                    Some(who.clone()),
                    "maxmemory-policy is noeviction: writes fail once maxmemory is reached".into(),
                    "Let a cache evict (applied with --apply)",
                    (json!(policy), json!(settings.eviction_policy)),
                    Some(Action::RedisConfig {
                        target: target.name.clone(),
                        parameter: "maxmemory-policy".into(),
                        value: settings.eviction_policy.clone(),
                    }),
                ));
            }
            if let Some(frag) = num("mem_fragmentation_ratio").filter(|f| *f > settings.fragmentation_ratio)
                && judged.insert("fragmentation")
            {
                recs.push(rec(
                    "memory",
                    Priority::Low,
                    Some(who.clone()),
                    format!("memory fragmentation ratio {frag:.2}"),
                    "Hand free memory back to the system (MEMORY PURGE)",
                    (json!(frag), json!(settings.fragmentation_ratio)),
                    Some(Action::RedisMemoryPurge { target: target.name.clone() }),
                ));
            }
        }
    }
    // The share of keys without a TTL, per prefix, from a sample spread over the primaries.
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let (mut sampled, mut ttl_less) = (0u64, 0u64);
    let mut per_prefix: BTreeMap<Option<usize>, u64> = BTreeMap::new();
    let share_each = TTL_SAMPLE / primaries.nodes.len().max(1) as u64;
    for node in &primaries.nodes {
        // A script on a cluster node may only touch declared keys.
        let method = primaries.cluster.then_some(cache_core::scan::Method::Pipeline);
        let opts = ScanOptions {
            count: 1000,
            access: false,
            memory: false,
            method,
            budget: target.scan_budget(),
            ..ScanOptions::default()
        };
        let mut scanner = match Scanner::new(node.conn.clone(), opts, 0).await {
            Ok(s) => s.recording(state, node.run_id()),
            Err(e) => {
                notes.push(format!("{who}: SCAN: {e}"));
                continue;
            }
        };
        let stop = sampled + share_each;
        while sampled < stop && Instant::now() < deadline {
            match scanner.next_batch().await {
                Ok(Some(batch)) => {
                    for key in batch {
                        sampled += 1;
                        if key.ttl_ms.is_some() || keyspace.is_protected(&key.key) {
                            continue;
                        }
                        ttl_less += 1;
                        let rule = target.prefixes.iter().position(|r| key.key.starts_with(r.prefix.as_bytes()));
                        *per_prefix.entry(rule).or_default() += 1;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    notes.push(format!("{who}: SCAN: {e}"));
                    break;
                }
            }
        }
    }
    let share = if sampled > 0 { ttl_less as f64 / sampled as f64 } else { 0.0 };
    if share > settings.ttl_less_share {
        for (rule, count) in per_prefix {
            let rule = rule.and_then(|i| target.prefixes.get(i));
            match rule.and_then(|r| r.ttl.map(|ttl| (r, ttl))) {
                Some((r, ttl)) => recs.push(rec(
                    "ttl",
                    Priority::Medium,
                    Some(who.clone()),
                    format!("{count} of {sampled} sampled keys under `{}` have no TTL", r.prefix),
                    "Give them the prefix's TTL",
                    (json!(share), json!(settings.ttl_less_share)),
                    Some(Action::RedisPatternTtl {
                        target: target.name.clone(),
                        prefix: r.prefix.clone(),
                        ttl_ms: ttl.as_millis() as u64,
                    }),
                )),
                None => recs.push(rec(
                    "ttl",
                    Priority::Low,
                    Some(who.clone()),
                    format!(
                        "{count} of {sampled} sampled keys without a TTL are under {}",
                        rule.map_or("no configured prefix".to_owned(), |r| format!("`{}`, which has no ttl", r.prefix))
                    ),
                    "Configure a prefix with a ttl for them ([[redis]] prefixes), or let the app set TTLs",
                    (json!(share), json!(settings.ttl_less_share)),
                    None,
                )),
            }
        }
    }
    (recs, notes, reach)
}

/// The printed summary (seed 002's `_print_optimization_summary`).
pub fn summary(findings: &Findings) -> String {
    let mut s = String::from("=== Cache Optimization Summary ===\n");
    if let Some(w) = &findings.weekly {
        if let Some(h) = w["hit_rate_analysis"]["average_hit_rate"].as_f64() {
            s.push_str(&format!(
                "Hit Rate: {:.1}% (trend: {})\n",
                h * 100.0,
                w["hit_rate_analysis"]["trend"].as_str().unwrap_or("unknown")
            ));
        }
        if let Some(l) = w["latency_analysis"]["average_latency"].as_f64() {
            s.push_str(&format!(
                "Latency: {l:.1}ms (trend: {})\n",
                w["latency_analysis"]["trend"].as_str().unwrap_or("unknown")
            ));
        }
    }
    if findings.recommendations.is_empty() {
        s.push_str("\n✓ No optimization recommendations at this time\n");
    } else {
        s.push_str(&format!("\nRecommendations ({}):\n", findings.recommendations.len()));
        for (i, r) in findings.recommendations.iter().enumerate() {
            let prio = serde_json::to_value(r.priority).ok().and_then(|v| v.as_str().map(str::to_uppercase));
            let target = r.target.as_ref().map(|t| format!("{t}: ")).unwrap_or_default();
            s.push_str(&format!("  {}. [{}] {target}{}\n", i + 1, prio.unwrap_or_default(), r.issue));
            s.push_str(&format!("     → {}", r.recommendation));
            if let Some(a) = &r.action {
                s.push_str(&format!(" [run: {}{}]", a.describe(), if a.is_safe() { "" } else { ", with --apply" }));
            }
            s.push('\n');
        }
    }
    for n in &findings.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

/// Runs `analyze`.
pub async fn run(common: &CommonArgs, format: Format) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let findings = findings(&ctx).await?;
    let now = Utc::now();
    let doc = json!({
        "generated_at": now,
        "hit_rate_analysis": findings.weekly.as_ref().map(|w| w["hit_rate_analysis"].clone()),
        "latency_analysis": findings.weekly.as_ref().map(|w| w["latency_analysis"].clone()),
        "memory_analysis": findings.weekly.as_ref().map(|w| w["memory_analysis"].clone()),
        "operation_analysis": findings.weekly.as_ref().map(|w| w["operation_analysis"].clone()),
        "recommendations": findings.recommendations,
        "notes": findings.notes,
    });
    let rel = format!("{REPORTS_DIR}/optimization_report_{}.json", now.format("%Y-%m-%d"));
    ctx.state.write_json(&rel, &doc).with_context(|| format!("writing `{rel}`"))?;
    if ctx.printer.format() == Format::Json {
        ctx.printer.json(&doc)?;
    } else {
        ctx.printer.info(&format!("{}Report: {}\n", summary(&findings), ctx.state.path(&rel).display()))?;
    }
    // Every target unreachable: nothing was judged (4); some: partial (1).
    Ok(findings.reach.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_recommendations_follow_seed_002() {
        let weekly = json!({
            "hit_rate_analysis": { "average_hit_rate": 0.6 },
            "latency_analysis": { "average_latency": 60.0 },
            "memory_analysis": { "memory_pressure": true, "peak_utilization": 0.9 },
        });
        let cats: Vec<String> = weekly_recommendations(&weekly).into_iter().map(|r| r.category).collect();
        assert_eq!(cats, ["hit_rate", "latency", "memory"]);
        let fine =
            json!({ "hit_rate_analysis": { "average_hit_rate": 0.9 }, "latency_analysis": { "average_latency": 2.0 } });
        assert!(weekly_recommendations(&fine).is_empty());
    }
}
