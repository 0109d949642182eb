//! `collect`: one snapshot of every configured target, taken concurrently, appended to the
//! history. Cheap enough for every 15 minutes on a large keyspace: per-prefix figures come from
//! a sample of at most [`SAMPLE_KEYS`] keys, taken within [`SAMPLE_TIME`].

use std::time::{Duration, Instant};

use cache_core::app::{Context, JobResult};
use cache_core::cache_table::CacheTable;
use cache_core::cli::CommonArgs;
use cache_core::clients::memory::MemoryClient;
use cache_core::clients::postgres;
use cache_core::config::{Config, DirTarget, PostgresTarget, RedisTarget};
use cache_core::exit::{Convention, Reach, Tally};
use cache_core::keyspace::{Keyspace, Primary};
use cache_core::ledger;
use cache_core::messages::{MAX_LINE, clip, one_line};
use cache_core::output::{Format, bytes};
use cache_core::scan::{ScanOptions, Scanner};
use cache_core::state::StateDir;
use cache_core::tier::{Tier, selected};
use chrono::Utc;

use cache_core::history::{
    self as history, DirFigures, GpuFigures, HISTORY, HostFigures, Latency, MemoryFigures, PostgresFigures,
    PrefixFigures, RedisFigures, Snapshot,
};

/// Keys sampled per Redis target for the per-prefix figures.
pub const SAMPLE_KEYS: u64 = 10_000;
/// Time allowed for that sample.
pub const SAMPLE_TIME: Duration = Duration::from_secs(5);
/// Latency samples per tier (seed 002).
const LATENCY_SAMPLES: usize = 10;

/// Runs `collect`.
pub async fn run(common: &CommonArgs, format: Format) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let job = ctx.begin_job("analytics-collect", "cache-analytics collect").await?;
    let result = collect(&ctx).await;
    job.finish(&ctx, result).await
}

async fn collect(ctx: &Context) -> anyhow::Result<JobResult> {
    let config = &ctx.config;
    let filters = &ctx.common.tiers;
    let redis = futures::future::join_all(
        config
            .redis
            .iter()
            .filter(|t| selected(filters, Tier::Redis, &t.name))
            .map(|t| redis_figures(config, &ctx.state, t)),
    );
    let pg = futures::future::join_all(
        config
            .postgres
            .iter()
            .filter(|t| selected(filters, Tier::Postgres, &t.name))
            .map(|t| postgres_figures(t, &config.project_name)),
    );
    let memory = futures::future::join_all(
        config.memory.iter().filter(|t| selected(filters, Tier::Memory, &t.name)).map(|t| async {
            let mut figures = MemoryFigures { name: t.name.clone(), ..MemoryFigures::default() };
            let client = MemoryClient::new(t, config.memory_user_id(t));
            let mut reach = Reach::Done;
            match client {
                Ok(client) => {
                    let (samples, error) = cache_core::clients::time_calls(LATENCY_SAMPLES, || client.list(1)).await;
                    figures.latency = Latency::of(&samples);
                    figures.error = error.map(|e| clip(&e, MAX_LINE));
                    match client.list_pages().await {
                        Ok(listing) => {
                            figures.memories = listing.total();
                            figures.truncated = !listing.complete();
                        }
                        Err(e) => {
                            reach = Reach::of_error(&e);
                            figures.error = Some(clip(&format!("{e:#}"), MAX_LINE));
                        }
                    }
                }
                Err(e) => {
                    reach = Reach::of_error(&e);
                    figures.error = Some(clip(&format!("{e:#}"), MAX_LINE));
                }
            }
            if figures.error.is_some() && reach == Reach::Done {
                reach = Reach::Failed;
            }
            (figures, reach)
        }),
    );
    let (redis, postgres, memory) = tokio::join!(redis, pg, memory);
    // How each target fared: every one unreachable is exit 4, some is partial.
    let tally: Tally =
        redis.iter().map(|r| r.1).chain(postgres.iter().map(|p| p.1)).chain(memory.iter().map(|m| m.1)).collect();
    let redis = redis.into_iter().map(|r| r.0).collect();
    let postgres = postgres.into_iter().map(|p| p.0).collect();
    let memory = memory.into_iter().map(|m| m.0).collect();
    let mut dirs = Vec::new();
    let deadline = Instant::now() + SAMPLE_TIME;
    for (tier, t) in config
        .files
        .iter()
        .map(|t| (Tier::Files, t as &dyn DirTarget))
        .chain(config.logs.iter().map(|t| (Tier::Logs, t as &dyn DirTarget)))
        .filter(|(tier, t)| selected(filters, *tier, t.name()))
    {
        let usage = cache_core::system::dir_usage_in(&t.scope(), deadline);
        dirs.push(DirFigures {
            tier: tier.to_string(),
            name: t.name().to_owned(),
            bytes: usage.allocated_bytes,
            files: usage.files,
        });
    }
    let host = cache_core::system::host()
        .map(|h| HostFigures { load1: h.load[0], memory_percent: h.memory_percent, cpus: h.cpus })
        .unwrap_or_default();
    // NVML's figures, each unknown one left unknown; without NVML the snapshot says why.
    let gpu = if config.system.gpu && selected(filters, Tier::System, "gpu") {
        Some(GpuFigures::of(&cache_core::gpu::probe_within(config.system.timeout).await))
    } else {
        None
    };
    let snapshot = Snapshot { timestamp: Utc::now(), redis, postgres, memory, dirs, host, gpu };
    ctx.state.append_jsonl(HISTORY, &snapshot)?;
    let errors: Vec<String> = snapshot
        .redis
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("redis/{}: {e}", r.name)))
        .chain(snapshot.postgres.iter().filter_map(|p| p.error.as_ref().map(|e| format!("postgres/{}: {e}", p.name))))
        .chain(snapshot.memory.iter().filter_map(|m| m.error.as_ref().map(|e| format!("memory/{}: {e}", m.name))))
        .collect();
    // One line per target (each already condensed), none over a few hundred characters, in the
    // table, the JSON and the run record alike.
    let errors: Vec<String> = errors.iter().map(|e| clip(e, MAX_LINE)).collect();
    print(ctx, &snapshot, &errors)?;
    let exit_code = tally.code();
    Ok(JobResult { outcome: Tally::outcome(exit_code), exit_code, summary: serde_json::json!({ "errors": errors }) })
}

/// Times up to [`LATENCY_SAMPLES`] calls of `probe`, stopping at the first failure (the
/// failure itself is reported by the figures' own queries).
async fn sample_latency<F, Fut, T, E>(probe: F) -> Latency
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    Latency::of(&cache_core::clients::time_calls(LATENCY_SAMPLES, probe).await.0)
}

/// INFO figures kept in the history, summed over a cluster's primaries (the fragmentation
/// ratio, not additive, is the worst primary's: `keyspace::Figures`).
const INFO_FIGURES: &[&str] = &[
    "used_memory",
    "used_memory_peak",
    "maxmemory",
    "mem_fragmentation_ratio",
    "keyspace_hits",
    "keyspace_misses",
    "instantaneous_ops_per_sec",
    "total_commands_processed",
    "connected_clients",
    "evicted_keys",
    "expired_keys",
];

/// The figures of one Redis target, and whether it was reached: fully (an error of its own
/// makes it [`Reach::Failed`]), partly (some primaries of a cluster), or not at all.
async fn redis_figures(config: &Config, state: &StateDir, target: &RedisTarget) -> (RedisFigures, Reach) {
    let mut figures = RedisFigures { name: target.name.clone(), ..RedisFigures::default() };
    let keyspace = Keyspace::new(config, target);
    let primaries = match keyspace.primaries().await {
        Ok(primaries) => primaries,
        Err(e) => {
            figures.error = Some(clip(&format!("{e:#}"), MAX_LINE));
            return (figures, Reach::of_error(&e));
        }
    };
    if primaries.cluster {
        figures.coverage = Some(primaries.coverage());
    }
    if !primaries.complete() {
        // One line however many primaries are down: a count and the first of each kind.
        figures.error =
            Some(format!("not every primary was reached ({}): {}", primaries.coverage(), one_line(&primaries.missing)));
    }
    let Some(first) = primaries.nodes.first() else {
        // A cluster none of whose primaries answered.
        let reach = if primaries.missing.is_empty() { Reach::Failed } else { Reach::Unreachable };
        return (figures, reach);
    };
    let first = first.conn.clone();
    figures.latency = sample_latency(|| {
        let mut conn = first.clone();
        async move { redis::cmd("PING").query_async::<String>(&mut conn).await }
    })
    .await;
    let refused: Vec<String> = primaries
        .nodes
        .iter()
        .filter(|n| n.info.is_empty())
        .map(|n| format!("INFO refused by {}", n.node.as_deref().map_or("the server".to_owned(), |n| format!("`{n}`"))))
        .collect();
    if !refused.is_empty() {
        figures.error.get_or_insert_with(|| one_line(&refused));
    }
    let summed = primaries.figures();
    figures.keys = summed.keys;
    figures.info =
        summed.named().into_iter().filter(|(k, _)| INFO_FIGURES.contains(k)).map(|(k, v)| (k.to_owned(), v)).collect();
    // The toolkit's own lookups on these servers up to the INFO just read (this collect's
    // sample comes after, and is in the next snapshot's counters and ledger figure alike), so
    // every hit ratio computed from the history is the applications' (`cache_core::ledger`).
    match ledger::totals(state) {
        Ok(totals) => {
            let own = ledger::total_of(&totals, primaries.nodes.iter().map(Primary::run_id));
            figures.info.insert("toolkit_hits".into(), own.hits as f64);
            figures.info.insert("toolkit_misses".into(), own.misses as f64);
            figures.info.insert("toolkit_commands".into(), own.commands as f64);
        }
        Err(e) => tracing::warn!("reading the toolkit's own lookups: {e:#}"),
    }
    figures.hit_ratio = history::application_hit_ratio(&figures.info);
    let share = SAMPLE_KEYS / primaries.nodes.len().max(1) as u64;
    // Every primary sampled, several at once (the target's `concurrency`), then added up.
    let keyspace = &keyspace;
    let samples = primaries
        .visit(|node| async move {
            let mut sample = Sample::default();
            sample_prefixes(keyspace, state, node, primaries.cluster, share, &mut sample).await;
            sample
        })
        .await;
    let mut sample = Sample::default();
    for s in samples {
        sample.add(s);
    }
    sample.finish(&mut figures);
    let reach = if figures.error.is_some() { Reach::Failed } else { Reach::Done };
    (figures, reach)
}

/// Keys and bytes per prefix, from the samples of every primary.
/// (Bounded however many prefixes there are: the smallest are folded into `(other)`.)
#[derive(Default)]
struct Sample {
    per: cache_core::groups::Groups<cache_core::groups::KeysBytes>,
    sampled: u64,
}

impl Sample {
    /// Adds another primary's sample.
    fn add(&mut self, other: Self) {
        self.per.absorb(other.per);
        self.sampled += other.sampled;
    }

    /// Scales the sample to the whole keyspace.
    fn finish(self, figures: &mut RedisFigures) {
        let scale = if self.sampled == 0 { 0.0 } else { figures.keys.max(self.sampled) as f64 / self.sampled as f64 };
        figures.sampled = self.sampled;
        let finished = self.per.finish();
        let other = finished.other.map(|o| (cache_core::groups::OTHER.to_owned(), o));
        let mut prefixes: Vec<PrefixFigures> = finished
            .groups
            .into_iter()
            .chain(other)
            .map(|(prefix, f)| PrefixFigures {
                prefix,
                keys: (f.keys as f64 * scale).round() as u64,
                bytes: (f.bytes as f64 * scale).round() as u64,
            })
            .collect();
        prefixes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        figures.prefixes = prefixes;
    }
}

/// Samples at most `limit` keys of one primary (within `SAMPLE_TIME`) into `sample`.
async fn sample_prefixes(
    keyspace: &Keyspace<'_>,
    state: &StateDir,
    node: &Primary,
    cluster: bool,
    limit: u64,
    sample: &mut Sample,
) {
    // A script on a cluster node may only touch declared keys.
    let method = cluster.then_some(cache_core::scan::Method::Pipeline);
    let opts = ScanOptions {
        count: 1000,
        access: false,
        method,
        budget: keyspace.target.scan_budget(),
        ..ScanOptions::default()
    };
    let Ok(scanner) = Scanner::new(node.conn.clone(), opts, 0).await else { return };
    let mut scanner = scanner.recording(state, node.run_id());
    let deadline = Instant::now() + SAMPLE_TIME;
    let mut sampled = 0u64;
    while sampled < limit && Instant::now() < deadline {
        let Ok(Some(batch)) = scanner.next_batch().await else { break };
        for key in batch {
            let entry = sample.per.entry(cache_core::groups::group_of(keyspace.target, &key.key));
            entry.keys += 1;
            entry.bytes += key.bytes.unwrap_or(0);
            sampled += 1;
        }
    }
    sample.sampled += sampled;
}

/// The figures of one PostgreSQL target, and whether it was reached.
async fn postgres_figures(target: &PostgresTarget, project: &str) -> (PostgresFigures, Reach) {
    let mut figures = PostgresFigures { name: target.name.clone(), ..PostgresFigures::default() };
    let db = match postgres::connect(target).await {
        Ok(db) => db,
        Err(e) => {
            figures.error = Some(clip(&format!("{e:#}"), MAX_LINE));
            return (figures, Reach::of_error(&e));
        }
    };
    figures.latency = sample_latency(|| db.query_one("SELECT 1", &[])).await;
    // Seed 000's statistics query.
    match CacheTable::new(target, project).statistics(&db).await {
        Ok(stats) => {
            figures.total_entries = stats.total_entries;
            figures.avg_access_count = stats.avg_access_count;
            figures.hot_entries = stats.hot_entries;
            figures.active_categories = stats.active_categories;
            figures.avg_age_seconds = stats.avg_age_seconds;
            figures.optimized_entries = stats.optimized_entries;
        }
        Err(e) => figures.error = Some(clip(&postgres::error_text(&e), MAX_LINE)),
    }
    let reach = if figures.error.is_some() { Reach::Failed } else { Reach::Done };
    (figures, reach)
}

/// One GPU's figures for the table; "unknown" for each NVML would not give.
fn gpu_line(gpu: &cache_core::gpu::GpuInfo) -> String {
    let known = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
    format!(
        "{}: memory {}, utilization {}, {}",
        gpu.name,
        known(gpu.memory_used.zip(gpu.memory_total).map(|(u, t)| format!("{} of {}", bytes(u), bytes(t)))),
        known(gpu.utilization_percent.map(|u| format!("{u}%"))),
        known(gpu.temperature_celsius.map(|t| format!("{t} °C"))),
    )
}

fn print(ctx: &Context, snapshot: &Snapshot, errors: &[String]) -> anyhow::Result<()> {
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        return printer.json(snapshot);
    }
    if printer.is_quiet() && errors.is_empty() {
        return Ok(());
    }
    let mut table = printer.table();
    table.set_header(["Tier", "Target", "Figures"]);
    for r in &snapshot.redis {
        let figures = r.error.clone().unwrap_or_else(|| {
            format!(
                "{} keys, {} used, hit ratio {}, {:.2} ms avg{}",
                r.keys,
                bytes(r.info.get("used_memory").copied().unwrap_or(0.0) as u64),
                r.hit_ratio.map_or("n/a".into(), |h| format!("{:.1}%", h * 100.0)),
                r.latency.avg_ms,
                r.coverage.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
            )
        });
        table.add_row(vec!["redis".to_owned(), r.name.clone(), figures]);
    }
    for p in &snapshot.postgres {
        let figures = p.error.clone().unwrap_or_else(|| {
            format!(
                "{} entries, {} hot, {} categories, {:.2} ms avg",
                p.total_entries, p.hot_entries, p.active_categories, p.latency.avg_ms
            )
        });
        table.add_row(vec!["postgres".to_owned(), p.name.clone(), figures]);
    }
    for m in &snapshot.memory {
        let figures = m.error.clone().unwrap_or_else(|| {
            let floor = if m.truncated { "at least " } else { "" };
            format!("{floor}{} memories, {:.1} ms avg", m.memories, m.latency.avg_ms)
        });
        table.add_row(vec!["memory".to_owned(), m.name.clone(), figures]);
    }
    for d in &snapshot.dirs {
        table.add_row(vec![d.tier.clone(), d.name.clone(), format!("{} in {} files", bytes(d.bytes), d.files)]);
    }
    if let Some(g) = &snapshot.gpu {
        if g.available {
            for gpu in &g.gpus {
                table.add_row(vec!["system".to_owned(), format!("gpu{}", gpu.index), gpu_line(gpu)]);
            }
        } else {
            let why = g.reason.as_deref().unwrap_or("NVML gave nothing");
            table.add_row(vec!["system".to_owned(), "gpu".to_owned(), format!("not available: {why}")]);
        }
    }
    printer.always(&format!(
        "snapshot at {} appended to the history\n{table}",
        snapshot.timestamp.format("%Y-%m-%d %H:%M:%S UTC")
    ))?;
    Ok(())
}
