//! `warm`: seed 002's cache warming across tiers. Before an hour the usage profile marks busy,
//! the hottest entries of the PostgreSQL cache table (by access count, then recency; taken
//! round-robin across categories so one category cannot crowd out the rest) are copied into
//! Redis with a TTL, bounded by a count and a byte budget. Keys already in Redis are left as
//! they are (`SET ... NX`), and protected patterns are never written.

use std::collections::HashMap;

use cache_core::app::{Context, JobResult, Work};
use cache_core::cache_table::CacheTable;
use cache_core::cli::CommonArgs;
use cache_core::clients::postgres;
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention};
use cache_core::history::hourly_profile;
use cache_core::history::{HISTORY, Snapshot};
use cache_core::output::{Format, bytes};
use cache_core::runs::Outcome;
use chrono::{Duration, Timelike, Utc};
use serde::Serialize;
use serde_json::json;

/// The job (and lock) name.
pub const JOB: &str = "optimize-warm";
/// The usage profile is the hour-of-day mean of the history's last this many days (back from
/// its last snapshot): what the next hour is judged against.
pub const PROFILE_DAYS: i64 = 28;

/// `warm`'s options.
#[derive(Clone, Debug, Default)]
pub struct WarmOptions {
    /// The PostgreSQL target to read (default: the first).
    pub from: Option<String>,
    /// The Redis target to fill (default: the first).
    pub into: Option<String>,
    /// Overrides `optimizer.warm_max_entries`.
    pub max_entries: Option<u64>,
    /// Warm whatever the usage profile says.
    pub force: bool,
    /// Only list what would be copied.
    pub dry_run: bool,
}

/// One entry chosen for warming.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The Redis key.
    pub key: String,
    /// Its category.
    pub category: Option<String>,
    /// Its access count.
    pub access_count: i64,
    /// Bytes of the value.
    pub bytes: u64,
    /// TTL given, milliseconds.
    pub ttl_ms: u64,
    /// Whether it was written (false: already in Redis, refused, or a dry run).
    pub written: bool,
}

/// Whether the hour after `now` is busy: at or above the day's average operations per second.
/// `Err` says why not (or that there is no profile yet).
pub fn next_hour_busy(history: &[Snapshot], now: chrono::DateTime<Utc>) -> Result<String, String> {
    let Some(profile) = hourly_profile(history) else {
        return Err("there is no usage profile yet (it needs a day of `cache-analytics collect`)".into());
    };
    let hour = (now + Duration::hours(1)).hour() as usize;
    let average = profile.iter().sum::<f64>() / 24.0;
    let text = format!("{hour:02}:00 UTC averages {:.0} ops/s against {average:.0} over the day", profile[hour]);
    if profile[hour] >= average { Ok(text) } else { Err(text) }
}

/// Runs `warm`.
pub async fn run(common: &CommonArgs, format: Format, opts: WarmOptions) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let job = ctx.begin(Work::new(JOB, "cache-optimizer warm").dry_run(opts.dry_run)).await?;
    let result = warm(&ctx, &opts).await;
    job.finish(&ctx, result).await
}

async fn warm(ctx: &Context, opts: &WarmOptions) -> anyhow::Result<JobResult> {
    let config = &ctx.config;
    let settings = &config.optimizer;
    let pick = |name: &Option<String>, names: Vec<&str>, tier: &str| -> anyhow::Result<usize> {
        match name {
            Some(n) => names.iter().position(|t| t == n).ok_or_else(|| {
                UsageError(format!(
                    "--{}: no {tier} target named `{n}` in the configuration",
                    if tier == "postgres" { "from" } else { "into" }
                ))
                .into()
            }),
            None if names.is_empty() => {
                Err(UsageError(format!("warming needs a {tier} target in the configuration")).into())
            }
            None => Ok(0),
        }
    };
    let pg = &config.postgres[pick(&opts.from, config.postgres.iter().map(|t| t.name.as_str()).collect(), "postgres")?];
    let redis_target =
        &config.redis[pick(&opts.into, config.redis.iter().map(|t| t.name.as_str()).collect(), "redis")?];
    let history: Vec<Snapshot> =
        ctx.state.read_jsonl_last(HISTORY, Duration::days(PROFILE_DAYS), cache_core::state::READ_CAP_BYTES)?;
    let reason = match next_hour_busy(&history, cache_core::clock::now()?) {
        Ok(why) => format!("busy hour ahead: {why}"),
        Err(why) if opts.force => format!("forced ({why})"),
        Err(why) => {
            let text = format!("nothing warmed: {why}; --force warms anyway");
            ctx.printer.info(&text)?;
            // The job ran and judged that nothing needed warming: a success, not a skipped run
            // (which is what a gate does, and what the "skipped in a row" rule counts).
            return Ok(JobResult {
                outcome: Outcome::Success,
                exit_code: exit::SUCCESS,
                summary: json!({ "warmed": 0, "reason": text }),
            });
        }
    };
    let max_entries = opts.max_entries.unwrap_or(settings.warm_max_entries);
    let db = postgres::connect(pg).await?;
    let limit = i64::try_from(max_entries).unwrap_or(i64::MAX);
    let rows = CacheTable::new(pg, &config.project_name).hottest(&db, limit).await.map_err(|e| {
        anyhow::anyhow!("postgres/{}: reading the hottest entries: {}", pg.name, postgres::error_text(&e))
    })?;
    let keyspace = cache_core::keyspace::Keyspace::new(config, redis_target);
    let budget = settings.warm_max_bytes.as_u64();
    let ttl_cap = settings.warm_ttl.as_millis() as u64;
    let mut used = 0u64;
    let mut entries: Vec<(Entry, String)> = Vec::new();
    let mut skipped_protected = 0;
    for row in rows {
        let key = format!("{}{}", settings.warm_key_prefix, row.key);
        let value = row.value;
        if keyspace.is_protected(key.as_bytes()) {
            skipped_protected += 1;
            continue;
        }
        let size = (key.len() + value.len()) as u64;
        if used + size > budget {
            break;
        }
        used += size;
        let ttl_ms = row.ttl_ms.map_or(ttl_cap, |t| (t.max(1) as u64).min(ttl_cap));
        let entry = Entry {
            key,
            category: row.category,
            access_count: row.access_count,
            bytes: value.len() as u64,
            ttl_ms,
            written: false,
        };
        entries.push((entry, value));
    }
    // One message per entry the server refused; the others are written all the same.
    let mut errors: Vec<String> = Vec::new();
    if !opts.dry_run && !entries.is_empty() {
        // Each key to the primary serving its slot (every shard of a cluster).
        let primaries = keyspace.primaries().await?;
        let router = primaries.router().await?;
        let keys: Vec<String> = entries.iter().map(|(e, _)| e.key.clone()).collect();
        let index: HashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let groups = router.group_by_server(&keys);
        // Checked before anything is written: a run writes every entry's shard or none.
        let routed: usize = groups.iter().map(|(_, _, g)| g.len()).sum();
        if routed < keys.len() {
            anyhow::bail!(
                "redis/{}: {} entries' slots are served by no reachable primary ({})",
                redis_target.name,
                keys.len() - routed,
                primaries.coverage()
            );
        }
        for (mut conn, run_id, group) in groups {
            for chunk in group.chunks(500) {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for key in chunk {
                    let (e, v) = &entries[index[key.as_str()]];
                    pipe.cmd("SET").arg(&e.key).arg(v).arg("PX").arg(e.ttl_ms).arg("NX");
                }
                let answers: Vec<redis::RedisResult<Option<String>>> = pipe.query_async(&mut conn).await?;
                let own = cache_core::ledger::Lookups::commands(chunk.len() as u64);
                if let Err(e) = cache_core::ledger::record(&ctx.state, &run_id, own) {
                    tracing::warn!("recording the toolkit's own commands: {e:#}");
                }
                for (key, a) in chunk.iter().zip(answers) {
                    match a {
                        Ok(a) => entries[index[key.as_str()]].0.written = a.is_some(),
                        Err(e) => errors.push(format!("SET refused: {e}")),
                    }
                }
            }
        }
    }
    let written = entries.iter().filter(|(e, _)| e.written).count();
    let failed = errors.len();
    // One line per kind of refusal, with its count: not one per entry.
    let errors = cache_core::messages::condense(&errors);
    let entries: Vec<Entry> = entries.into_iter().map(|(e, _)| e).collect();
    let doc = json!({
        "dry_run": opts.dry_run,
        "reason": reason,
        "from": format!("postgres/{}", pg.name),
        "into": format!("redis/{}", redis_target.name),
        "selected": entries.len(),
        "written": written,
        "already_present": if opts.dry_run { 0 } else { entries.len() - written - failed },
        "failed": failed,
        "protected": skipped_protected,
        "bytes": used,
        "errors": errors,
        "entries": entries,
    });
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&doc)?;
    } else {
        let mut text = format!(
            "cache-optimizer warm: {reason}\npostgres/{} → redis/{}: {} entries selected ({}), {written} written{}\n",
            pg.name,
            redis_target.name,
            entries.len(),
            bytes(used),
            if opts.dry_run { " (dry run: nothing written)" } else { "" },
        );
        if failed > 0 {
            text.push_str(&format!("{failed} entries not written:\n"));
            for e in &errors {
                text.push_str(&format!("error: {e}\n"));
            }
        }
        if opts.dry_run {
            let mut table = printer.table();
            table.set_header(["Key", "Category", "Accesses", "Size", "TTL"]);
            for e in entries.iter().take(config.cleanup.dry_run_sample) {
                table.add_row(vec![
                    e.key.clone(),
                    e.category.clone().unwrap_or_default(),
                    e.access_count.to_string(),
                    bytes(e.bytes),
                    cache_core::output::millis(e.ttl_ms as f64),
                ]);
            }
            text.push_str(&format!("{table}\n"));
        }
        if failed > 0 { printer.always(&text)? } else { printer.info(&text)? }
    }
    let (outcome, exit_code) =
        if failed > 0 { (Outcome::Partial, exit::PARTIAL) } else { (Outcome::Success, exit::SUCCESS) };
    Ok(JobResult { outcome, exit_code, summary: json!({ "written": written, "failed": failed, "bytes": used }) })
}
