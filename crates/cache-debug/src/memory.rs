//! `memory`: Redis INFO memory and MEMORY DOCTOR, the biggest keys and memory per prefix with
//! TTL and idle buckets (a full scan through the cache-core scanner, or `--sample N` keys),
//! PostgreSQL table and index sizes with bloat estimates, and the file caches (size, files,
//! oldest, newest, use of the cap; seed 004).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Instant;

use cache_core::app::Context;
use cache_core::clients::postgres;
use cache_core::config::{PostgresTarget, RedisTarget};
use cache_core::keyspace::{Keyspace, ScanEvent};
use cache_core::messages::condense;
use cache_core::output::{Format, bytes};
use cache_core::scan::{Method, ScanOptions};
use cache_core::tier::{Tier, selected};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};

use crate::refused;

/// TTL buckets: none, under an hour, a day, a week, more.
pub const TTL_BUCKETS: [&str; 5] = ["no_ttl", "under_1h", "under_1d", "under_7d", "7d_or_more"];
/// Idle buckets: under an hour, a day, a week, more, unknown (OBJECT refused or LFU).
pub const IDLE_BUCKETS: [&str; 5] = ["under_1h", "under_1d", "under_7d", "7d_or_more", "unknown"];

/// The characters of a key name (or prefix) the text tables show.
const SHOWN_KEY: usize = 120;

/// Keys and bytes under one prefix.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Prefix {
    /// Keys seen.
    pub keys: u64,
    /// Bytes (MEMORY USAGE).
    pub bytes: u64,
    /// Keys per TTL bucket.
    pub ttl: BTreeMap<&'static str, u64>,
    /// Keys per idle bucket.
    pub idle: BTreeMap<&'static str, u64>,
}

fn ttl_bucket(ttl_ms: Option<i64>) -> &'static str {
    match ttl_ms {
        None => TTL_BUCKETS[0],
        Some(t) if t < 3_600_000 => TTL_BUCKETS[1],
        Some(t) if t < 86_400_000 => TTL_BUCKETS[2],
        Some(t) if t < 604_800_000 => TTL_BUCKETS[3],
        Some(_) => TTL_BUCKETS[4],
    }
}

fn idle_bucket(idle_s: Option<u64>) -> &'static str {
    match idle_s {
        None => IDLE_BUCKETS[4],
        Some(s) if s < 3600 => IDLE_BUCKETS[0],
        Some(s) if s < 86_400 => IDLE_BUCKETS[1],
        Some(s) if s < 604_800 => IDLE_BUCKETS[2],
        Some(_) => IDLE_BUCKETS[3],
    }
}

impl cache_core::groups::Figures for Prefix {
    fn keys(&self) -> u64 {
        self.keys
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn absorb(&mut self, other: Self) {
        self.keys += other.keys;
        self.bytes += other.bytes;
        for (bucket, n) in other.ttl {
            *self.ttl.entry(bucket).or_default() += n;
        }
        for (bucket, n) in other.idle {
            *self.idle.entry(bucket).or_default() += n;
        }
    }
}

async fn redis_section(ctx: &Context, t: &RedisTarget, sample: Option<u64>, top: usize, max_groups: usize) -> Value {
    let name = format!("redis/{}", t.name);
    let primaries = match Keyspace::new(&ctx.config, t).primaries().await {
        Ok(p) => p,
        Err(e) => return crate::failed(&name, &e),
    };
    let mut notes: Vec<String> = primaries.missing.iter().map(|m| format!("not scanned: {m}")).collect();
    // A server's scan refused or cut short: the figures are a part only (and the exit says so).
    let mut stopped = false;
    // INFO figures summed over the primaries (fragmentation: the worst one; policy: the first).
    const SHOWN: &[&str] =
        &["used_memory", "used_memory_peak", "used_memory_rss", "maxmemory", "mem_fragmentation_ratio", "evicted_keys"];
    let mut info: BTreeMap<&str, Value> = primaries
        .figures()
        .named()
        .into_iter()
        .filter(|(k, _)| SHOWN.contains(k))
        .map(|(k, v)| (k, json!(v)))
        .collect();
    for node in &primaries.nodes {
        if node.info.is_empty() {
            notes.push(format!("INFO refused by {}", crate::server(node.node.as_deref())));
        }
        if let Some(policy) = node.info.get("maxmemory_policy") {
            info.entry("maxmemory_policy").or_insert_with(|| json!(policy));
        }
    }
    let doctor = match primaries.nodes.first() {
        Some(node) => match redis::cmd("MEMORY").arg("DOCTOR").query_async::<String>(&mut node.conn.clone()).await {
            Ok(text) => Some(text),
            Err(e) => {
                notes.push(refused("MEMORY DOCTOR", &e));
                None
            }
        },
        None => None,
    };
    let mut dbsize = 0u64;
    for node in &primaries.nodes {
        dbsize += redis::cmd("DBSIZE").query_async::<u64>(&mut node.conn.clone()).await.unwrap_or(0);
    }
    // Bounded however many distinct prefixes there are (`--max-groups`).
    let mut groups: cache_core::groups::Groups<Prefix> = cache_core::groups::Groups::new(max_groups);
    let mut biggest: BinaryHeap<Reverse<(u64, String)>> = BinaryHeap::new();
    let mut seen = 0u64;
    // Keys whose size the server told (MEMORY USAGE may be refused: then sizes are unknown,
    // never 0 B).
    let mut sized = 0u64;
    // The calls: the slowest, how many went over the target's budget, the last batch size.
    let (mut slowest, mut over, mut batch) = (std::time::Duration::ZERO, 0u64, None);
    let limit = sample.unwrap_or(u64::MAX);
    let started = Instant::now();
    let bar = ctx.printer.progress(limit.min(dbsize), &format!("scanning {name}"));
    // Every primary of a cluster at once (the target's `concurrency`), each under its budget.
    let options = |_: &cache_core::keyspace::Primary| ScanOptions {
        count: 1000,
        memory: true,
        access: true,
        // A script on a cluster node may only touch declared keys.
        method: primaries.cluster.then_some(Method::Pipeline),
        budget: t.scan_budget(),
        ..ScanOptions::default()
    };
    let mut events = std::pin::pin!(primaries.scan(options, Some(&ctx.state)));
    while let Some((index, event)) = events.next().await {
        let server = crate::server(primaries.nodes[index].node.as_deref());
        match event {
            ScanEvent::Batch(batch) => {
                for k in batch {
                    let p = groups.entry(cache_core::groups::group_of(t, &k.key));
                    p.keys += 1;
                    let size = k.bytes.unwrap_or(0);
                    sized += u64::from(k.bytes.is_some());
                    p.bytes += size;
                    *p.ttl.entry(ttl_bucket(k.ttl_ms)).or_default() += 1;
                    *p.idle.entry(idle_bucket(k.idle_s)).or_default() += 1;
                    biggest.push(Reverse((size, k.name())));
                    if biggest.len() > top {
                        biggest.pop();
                    }
                    seen += 1;
                    if seen >= limit {
                        break;
                    }
                }
                bar.set_position(seen.min(limit.min(dbsize)));
                if seen >= limit {
                    break;
                }
            }
            ScanEvent::End { scanner: None, error } => {
                stopped = true;
                let error = error.map_or_else(String::new, |e| e.to_string());
                notes.push(format!("SCAN refused by {server}: {error}"));
            }
            ScanEvent::End { scanner: Some(scanner), error } => {
                if let Some(e) = error {
                    stopped = true;
                    notes.push(format!("scan of {server} stopped after {} of its keys: {e}", scanner.examined()));
                }
                let (node_slowest, node_over) = scanner.slowest_call();
                slowest = slowest.max(node_slowest);
                over += node_over;
                batch = Some(batch.map_or(scanner.batch(), |b: usize| b.min(scanner.batch())));
                for missing in scanner.missing() {
                    let note = format!("{missing}: not supported on this server; its figures are missing");
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    let finished = groups.finish();
    let kept = finished.groups.len();
    let mut prefixes: BTreeMap<String, Prefix> = finished.groups.into_iter().collect();
    if let Some(other) = finished.other {
        notes.push(format!(
            "more than {max_groups} prefixes: the {kept} biggest by memory and by keys are shown, {} prefix groups \
             were folded into `{}` (a prefix folded and seen again restarts, so the groups shown are at least \
             their figures)",
            finished.folded,
            cache_core::groups::OTHER
        ));
        prefixes.insert(cache_core::groups::OTHER.to_owned(), other);
    }
    // One line per kind of note (a refusal repeated on every primary is one line with a count).
    let notes = condense(&notes);
    let mut top_keys: Vec<(u64, String)> = biggest.into_iter().map(|Reverse(x)| x).collect();
    top_keys.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let sizes_known = sized > 0 || seen == 0;
    let mut prefixes = json!(prefixes);
    let top_keys = if sizes_known {
        json!(top_keys.iter().map(|(b, k)| json!({ "key": k, "bytes": b })).collect::<Vec<_>>())
    } else {
        for p in prefixes.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
            p["bytes"] = Value::Null;
        }
        Value::Null
    };
    json!({
        "target": name,
        "coverage": primaries.coverage(),
        "info": info,
        "doctor": doctor,
        "keys_in_db": dbsize,
        "scanned": seen,
        "complete": !stopped && primaries.missing.is_empty(),
        "sampled": sample.is_some() && seen < dbsize,
        "scan_seconds": started.elapsed().as_secs_f64(),
        "sizes_known": sizes_known,
        "top_keys": top_keys,
        "prefixes": prefixes,
        "prefix_groups_folded": finished.folded,
        "calls": {
            "budget_ms": t.scan_budget().map(|b| b.as_secs_f64() * 1000.0),
            "slowest_ms": slowest.as_secs_f64() * 1000.0,
            "over_budget": over,
            "batch_at_end": batch,
        },
        "notes": notes,
    })
}

async fn postgres_section(t: &PostgresTarget) -> Value {
    let name = format!("postgres/{}", t.name);
    let db = match postgres::connect(t).await {
        Ok(d) => d,
        Err(e) => return crate::failed(&name, &e),
    };
    let table = postgres::quote_ident(&t.table);
    let stats = db
        .query_opt(
            "SELECT pg_relation_size(c.oid), pg_total_relation_size(c.oid), coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0)
               FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = to_regclass($1)",
            &[&table],
        )
        .await;
    let table_doc = match stats {
        Ok(Some(r)) => {
            let (heap, total, live, dead): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
            let dead_share = if live + dead > 0 { dead as f64 / (live + dead) as f64 } else { 0.0 };
            json!({ "name": t.table, "heap_bytes": heap, "total_bytes": total, "live_rows": live, "dead_rows": dead,
                    "estimated_bloat_bytes": (heap as f64 * dead_share) as i64 })
        }
        Ok(None) => return json!({ "target": name, "error": format!("table `{}` does not exist", t.table) }),
        Err(e) => return json!({ "target": name, "error": postgres::error_text(&e) }),
    };
    let indexes: Vec<Value> = postgres::index_stats(&db, &table)
        .await
        .map(|list| {
            list.into_iter()
                .map(|ix| json!({ "name": ix.name, "bytes": ix.bytes, "method": ix.method, "estimated_bloat_bytes": ix.bloat_bytes }))
                .collect()
        })
        .unwrap_or_default();
    json!({ "target": name, "table": table_doc, "indexes": indexes })
}

fn files_section(t: &cache_core::config::FilesTarget) -> Value {
    // What the target covers (a glob path: only what it matches).
    let usage = cache_core::system::dir_usage_in(
        &cache_core::config::DirTarget::scope(t),
        std::time::Instant::now() + std::time::Duration::from_secs(60),
    );
    let (size, files) = (usage.apparent_bytes, usage.files);
    let time =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let (oldest, newest) = (usage.oldest, usage.newest);
    let cap = t.max_size.map(|c| c.as_u64());
    json!({
        "target": format!("files/{}", t.name),
        "path": t.path,
        "exists": t.path.exists(),
        "bytes": size,
        "files": files,
        "oldest": time(oldest),
        "newest": time(newest),
        "max_size": cap,
        "utilization": cap.filter(|c| *c > 0).map(|c| size as f64 / c as f64),
    })
}

/// Runs `memory`.
pub async fn run(ctx: &Context, sample: Option<u64>, top: usize, max_groups: usize) -> anyhow::Result<u8> {
    let filters = &ctx.common.tiers;
    let config = &ctx.config;
    let mut redis = Vec::new();
    for t in config.redis.iter().filter(|t| selected(filters, Tier::Redis, &t.name)) {
        redis.push(redis_section(ctx, t, sample, top, max_groups).await);
    }
    let pg = futures::future::join_all(
        config.postgres.iter().filter(|t| selected(filters, Tier::Postgres, &t.name)).map(postgres_section),
    )
    .await;
    let files: Vec<Value> =
        config.files.iter().filter(|t| selected(filters, Tier::Files, &t.name)).map(files_section).collect();
    // Every target unreachable: 4; any section with an error, or a scan cut short: 1.
    let code = crate::code(redis.iter().chain(&pg));
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({ "redis": redis, "postgres": pg, "files": files }))?;
        return Ok(code);
    }
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut out = String::new();
    for s in &redis {
        let target = s["target"].as_str().unwrap_or_default();
        if let Some(e) = s["error"].as_str() {
            out.push_str(&format!("{target}: {e}\n\n"));
            continue;
        }
        let i = &s["info"];
        out.push_str(&format!(
            "{target}: used {} (peak {}, RSS {}), fragmentation {:.2}, maxmemory {}, {} evicted\n",
            bytes(num(&i["used_memory"]) as u64),
            bytes(num(&i["used_memory_peak"]) as u64),
            bytes(num(&i["used_memory_rss"]) as u64),
            num(&i["mem_fragmentation_ratio"]),
            if num(&i["maxmemory"]) > 0.0 { bytes(num(&i["maxmemory"]) as u64) } else { "none".into() },
            num(&i["evicted_keys"])
        ));
        if let Some(d) = s["doctor"].as_str() {
            out.push_str(&format!("MEMORY DOCTOR: {}\n", d.trim()));
        }
        out.push_str(&format!(
            "{} of {} keys {} in {:.1} s ({})\n",
            s["scanned"],
            s["keys_in_db"],
            if s["sampled"] == true { "sampled" } else { "scanned" },
            num(&s["scan_seconds"]),
            s["coverage"].as_str().unwrap_or("standalone")
        ));
        if s["sizes_known"] == false {
            out.push_str("Biggest keys: unknown (the server refuses MEMORY USAGE)\n");
        } else {
            let mut t = printer.table();
            t.set_header(["Key", "Bytes"]);
            for k in s["top_keys"].as_array().into_iter().flatten() {
                // A key name can be megabytes long: the table shows its start (the JSON all of it).
                t.add_row(vec![
                    cache_core::messages::printable(k["key"].as_str().unwrap_or_default(), SHOWN_KEY),
                    bytes(num(&k["bytes"]) as u64),
                ]);
            }
            out.push_str(&format!("Biggest keys\n{t}\n"));
        }
        let size = |v: &Value| if v.is_null() { "unknown".to_owned() } else { bytes(num(v) as u64) };
        let mut t = printer.table();
        let mut header = vec!["Prefix".to_owned(), "Keys".into(), "Bytes".into()];
        header.extend(TTL_BUCKETS.iter().map(|b| format!("ttl {b}")));
        header.extend(IDLE_BUCKETS.iter().map(|b| format!("idle {b}")));
        t.set_header(header);
        let mut rows: Vec<(&String, &Value)> = s["prefixes"].as_object().into_iter().flatten().collect();
        rows.sort_by(|a, b| num(&b.1["bytes"]).total_cmp(&num(&a.1["bytes"])));
        for (p, v) in rows {
            let mut row = vec![cache_core::messages::printable(p, SHOWN_KEY), v["keys"].to_string(), size(&v["bytes"])];
            row.extend(TTL_BUCKETS.iter().map(|b| v["ttl"][b].as_u64().unwrap_or(0).to_string()));
            row.extend(IDLE_BUCKETS.iter().map(|b| v["idle"][b].as_u64().unwrap_or(0).to_string()));
            t.add_row(row);
        }
        out.push_str(&format!("Per prefix\n{t}\n"));
        for n in s["notes"].as_array().into_iter().flatten() {
            out.push_str(&format!("note: {}\n", n.as_str().unwrap_or_default()));
        }
        out.push('\n');
    }
    for s in &pg {
        let target = s["target"].as_str().unwrap_or_default();
        if let Some(e) = s["error"].as_str() {
            out.push_str(&format!("{target}: {e}\n\n"));
            continue;
        }
        let tb = &s["table"];
        out.push_str(&format!(
            "{target}: table {} {} (with indexes and TOAST {}), {} live and {} dead rows, about {} reclaimable\n",
            tb["name"].as_str().unwrap_or_default(),
            bytes(num(&tb["heap_bytes"]) as u64),
            bytes(num(&tb["total_bytes"]) as u64),
            tb["live_rows"],
            tb["dead_rows"],
            bytes(num(&tb["estimated_bloat_bytes"]) as u64)
        ));
        let mut t = printer.table();
        t.set_header(["Index", "Size", "Estimated bloat"]);
        for ix in s["indexes"].as_array().into_iter().flatten() {
            t.add_row(vec![
                ix["name"].as_str().unwrap_or_default().to_owned(),
                bytes(num(&ix["bytes"]) as u64),
                ix["estimated_bloat_bytes"].as_f64().map_or("n/a (no statistics)".into(), |b| bytes(b as u64)),
            ]);
        }
        out.push_str(&format!("{t}\n\n"));
    }
    if !files.is_empty() {
        let mut t = printer.table();
        t.set_header(["File cache", "Size", "Files", "Oldest", "Newest", "Of cap"]);
        for f in &files {
            t.add_row(vec![
                f["target"].as_str().unwrap_or_default().to_owned(),
                bytes(num(&f["bytes"]) as u64),
                f["files"].to_string(),
                f["oldest"].as_str().unwrap_or("-").to_owned(),
                f["newest"].as_str().unwrap_or("-").to_owned(),
                f["utilization"].as_f64().map_or("no cap".into(), |u| format!("{:.1}%", u * 100.0)),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    printer.always(out.trim_end())?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(ttl_bucket(None), "no_ttl");
        assert_eq!(ttl_bucket(Some(59_000)), "under_1h");
        assert_eq!(ttl_bucket(Some(90_000_000)), "under_7d");
        assert_eq!(idle_bucket(Some(7200)), "under_1d");
        assert_eq!(idle_bucket(None), "unknown");
    }
}
