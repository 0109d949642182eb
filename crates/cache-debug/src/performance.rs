//! `performance`: latency per tier (N samples → min/avg/p50/p99/max, as `redis-cli --latency`
//! reports; Redis, PostgreSQL, the memory API, HTTP endpoints), Redis SLOWLOG (command lines shortened, secret arguments hidden) and INFO
//! commandstats, PostgreSQL `pg_stat_statements` when installed, and the cache table's
//! lookup time.

use cache_core::app::Context;
use cache_core::cache_table::CacheTable;
use cache_core::clients::memory::MemoryClient;
use cache_core::clients::postgres;
use cache_core::config::{PostgresTarget, RedisTarget};
use cache_core::messages::{MAX_LINE, clip, one_line};
use cache_core::output::Format;
use cache_core::redact;
use cache_core::tier::{Tier, selected};
use serde::Serialize;
use serde_json::json;

use crate::refused;
use cache_core::history::percentile;

/// Latency of one target.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    /// `tier/name`.
    pub target: String,
    /// Samples taken.
    pub samples: usize,
    /// Fastest, milliseconds.
    pub min_ms: f64,
    /// Mean.
    pub avg_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Why sampling stopped, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Latency {
    fn of(target: String, mut samples: Vec<f64>, error: Option<String>) -> Self {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Self {
            target,
            samples: n,
            min_ms: samples.first().copied().unwrap_or(0.0),
            avg_ms: if n == 0 { 0.0 } else { samples.iter().sum::<f64>() / n as f64 },
            p50_ms: percentile(&samples, 0.5).unwrap_or(0.0),
            p99_ms: percentile(&samples, 0.99).unwrap_or(0.0),
            max_ms: samples.last().copied().unwrap_or(0.0),
            error: error.map(|e| clip(&e, MAX_LINE)),
        }
    }
}

async fn sample<F, Fut, T, E>(n: u32, probe: F) -> (Vec<f64>, Option<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    cache_core::clients::time_calls(n as usize, probe).await
}

/// One SLOWLOG entry.
#[derive(Debug, Serialize)]
pub struct SlowEntry {
    /// Its id.
    pub id: i64,
    /// When (Unix time).
    pub time: i64,
    /// How long, microseconds.
    pub duration_us: i64,
    /// The command line, shortened, secrets hidden.
    pub command: String,
    /// The client's address.
    pub client: String,
}

/// Arguments that carry secrets, by command: the positions after which values are hidden.
fn hide(args: &mut [String]) {
    let upper: Vec<String> = args.iter().map(|a| a.to_ascii_uppercase()).collect();
    let mut secret = vec![false; args.len()];
    match upper.first().map(String::as_str) {
        Some("AUTH") => secret.iter_mut().skip(1).for_each(|s| *s = true),
        Some("HELLO") | Some("MIGRATE") => {
            for (i, a) in upper.iter().enumerate() {
                if a == "AUTH" {
                    secret.iter_mut().skip(i + 1).take(2).for_each(|s| *s = true);
                }
                if a == "AUTH2" {
                    secret.iter_mut().skip(i + 1).take(2).for_each(|s| *s = true);
                }
            }
        }
        Some("CONFIG") if upper.get(1).is_some_and(|s| s == "SET") => {
            for i in (2..args.len()).step_by(2) {
                if matches!(upper[i].as_str(), "REQUIREPASS" | "MASTERAUTH" | "MASTERUSER")
                    && let Some(s) = secret.get_mut(i + 1)
                {
                    *s = true;
                }
            }
        }
        Some("ACL") if upper.get(1).is_some_and(|s| s == "SETUSER") => {
            for (i, a) in args.iter().enumerate().skip(3) {
                if a.starts_with('>') || a.starts_with('#') {
                    secret[i] = true;
                }
            }
        }
        _ => {}
    }
    for (a, s) in args.iter_mut().zip(secret) {
        if s {
            *a = "(redacted)".into();
        }
    }
}

/// A command line for people: secrets hidden, each argument at most 40 characters, at most 8.
pub fn command_line(mut args: Vec<String>) -> String {
    hide(&mut args);
    let total = args.len();
    let mut parts: Vec<String> = args
        .into_iter()
        .take(8)
        .map(|a| if a.chars().count() > 40 { format!("{}…", a.chars().take(40).collect::<String>()) } else { a })
        .collect();
    if total > 8 {
        parts.push(format!("… (+{} more)", total - 8));
    }
    redact::scrub(&parts.join(" ")).into_owned()
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn int(v: Option<&redis::Value>) -> i64 {
    match v {
        Some(redis::Value::Int(i)) => *i,
        Some(v) => text(v).parse().unwrap_or(0),
        None => 0,
    }
}

/// Parses SLOWLOG GET's reply.
pub fn slowlog(reply: &redis::Value) -> Vec<SlowEntry> {
    let redis::Value::Array(entries) = reply else { return Vec::new() };
    entries
        .iter()
        .filter_map(|e| {
            let redis::Value::Array(f) = e else { return None };
            let args = match f.get(3) {
                Some(redis::Value::Array(a)) => a.iter().map(text).collect(),
                _ => Vec::new(),
            };
            Some(SlowEntry {
                id: int(f.first()),
                time: int(f.get(1)),
                duration_us: int(f.get(2)),
                command: command_line(args),
                client: f.get(4).map(text).unwrap_or_default(),
            })
        })
        .collect()
}

/// One line of INFO commandstats.
#[derive(Debug, Serialize)]
pub struct CommandStat {
    /// The command.
    pub command: String,
    /// Calls.
    pub calls: u64,
    /// Total time, microseconds.
    pub usec: u64,
    /// Mean per call.
    pub usec_per_call: f64,
}

/// Parses INFO commandstats, most time first.
pub fn commandstats(info: &str) -> Vec<CommandStat> {
    let mut out: Vec<CommandStat> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |k: &str| rest.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
            Some(CommandStat {
                command: name.to_owned(),
                calls: field("calls")?.parse().ok()?,
                usec: field("usec")?.parse().ok()?,
                usec_per_call: field("usec_per_call")?.parse().ok()?,
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.usec));
    out
}

async fn redis_section(t: &RedisTarget, samples: u32, top: usize) -> serde_json::Value {
    let name = format!("redis/{}", t.name);
    let primaries = match cache_core::keyspace::primaries(t).await {
        Ok(p) => p,
        Err(e) => return crate::failed(&name, &e),
    };
    let Some(first) = primaries.nodes.first() else {
        return json!({ "target": name, "error": format!("no primary reached: {}", one_line(&primaries.missing)), "unreachable": true });
    };
    // Latency is sampled on the first primary; the slow log and command statistics of every
    // primary are merged.
    let conn = first.conn.clone();
    let (s, err) = sample(samples, || {
        let mut c = conn.clone();
        async move { redis::cmd("PING").query_async::<String>(&mut c).await }
    })
    .await;
    let latency = Latency::of(name.clone(), s, err);
    let (mut entries, mut slow_notes) = (Vec::new(), Vec::new());
    let mut by_command: std::collections::BTreeMap<String, CommandStat> = std::collections::BTreeMap::new();
    let mut stats_notes = Vec::new();
    // Every primary, several at once (the target's `concurrency`).
    let replies = primaries
        .visit(|node| async move {
            let mut c = node.conn.clone();
            let slow = redis::cmd("SLOWLOG").arg("GET").arg(top).query_async::<redis::Value>(&mut c).await;
            let stats = redis::cmd("INFO").arg("commandstats").query_async::<String>(&mut c).await;
            (node, slow, stats)
        })
        .await;
    for (node, slow, stats) in replies {
        let on = |what: &str| crate::on(what, node.node.as_deref());
        match slow {
            Ok(v) => entries.extend(slowlog(&v)),
            Err(e) => slow_notes.push(refused(&on("SLOWLOG"), &e)),
        }
        match stats {
            Ok(text) => {
                for stat in commandstats(&text) {
                    let sum =
                        by_command.entry(stat.command.clone()).or_insert(CommandStat { calls: 0, usec: 0, ..stat });
                    sum.calls += stat.calls;
                    sum.usec += stat.usec;
                }
            }
            Err(e) => stats_notes.push(refused(&on("INFO commandstats"), &e)),
        }
    }
    // A refusal repeated by every primary is one line with its count; a note stays beside the
    // figures of the primaries that gave them.
    let note = |notes: &[String]| (!notes.is_empty()).then(|| one_line(notes));
    let (slow_note, stats_note) = (note(&slow_notes), note(&stats_notes));
    entries.sort_by_key(|e| std::cmp::Reverse(e.duration_us));
    entries.truncate(top);
    let slow = match slow_note {
        Some(note) if entries.is_empty() => json!({ "note": note }),
        Some(note) => json!({ "entries": entries, "note": note }),
        None => json!({ "entries": entries }),
    };
    let mut commands: Vec<CommandStat> = by_command
        .into_values()
        .map(|mut c| {
            c.usec_per_call = if c.calls > 0 { c.usec as f64 / c.calls as f64 } else { 0.0 };
            c
        })
        .collect();
    commands.sort_by_key(|c| std::cmp::Reverse(c.usec));
    let stats = match stats_note {
        Some(note) if commands.is_empty() => json!({ "note": note }),
        Some(note) => json!({ "commands": commands.into_iter().take(top).collect::<Vec<_>>(), "note": note }),
        None => json!({ "commands": commands.into_iter().take(top).collect::<Vec<_>>() }),
    };
    let notes: Vec<String> =
        cache_core::messages::condense(&primaries.missing.iter().map(|m| format!("not read: {m}")).collect::<Vec<_>>());
    json!({ "target": name, "coverage": primaries.coverage(), "latency": latency, "slowlog": slow, "commandstats": stats,
            "notes": notes })
}

async fn postgres_section(t: &PostgresTarget, project: &str, samples: u32, top: usize) -> serde_json::Value {
    let name = format!("postgres/{}", t.name);
    let db = match postgres::connect(t).await {
        Ok(d) => d,
        Err(e) => return crate::failed(&name, &e),
    };
    let (s, err) = sample(samples, || db.query_one("SELECT 1", &[])).await;
    let latency = Latency::of(name.clone(), s, err);
    let installed = db
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'", &[])
        .await
        .map(|r| r.is_some())
        .unwrap_or(false);
    let statements = if installed {
        let limit = top as i64;
        match db
            .query(
                "SELECT query, calls, total_exec_time, mean_exec_time, rows FROM pg_stat_statements \
                 ORDER BY total_exec_time DESC LIMIT $1",
                &[&limit],
            )
            .await
        {
            Ok(rows) => json!({ "queries": rows.iter().map(|r| {
                let q: String = r.get(0);
                let q: String = redact::scrub(&q.split_whitespace().collect::<Vec<_>>().join(" ")).chars().take(120).collect();
                json!({ "query": q, "calls": r.get::<_, i64>(1), "total_ms": r.get::<_, f64>(2),
                        "mean_ms": r.get::<_, f64>(3), "rows": r.get::<_, i64>(4) })
            }).collect::<Vec<_>>() }),
            Err(e) => json!({ "note": format!("pg_stat_statements: {}", postgres::error_text(&e)) }),
        }
    } else {
        json!({ "note": "pg_stat_statements is not installed: add it to shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements" })
    };
    // The cache table's lookup by key, timed like an application's.
    let cache_table = CacheTable::new(t, project);
    let (table, key_col) = (cache_table.table(), cache_table.key());
    let key: String = db
        .query_opt(&format!("SELECT {key_col}::text FROM {table} LIMIT 1"), &[])
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
        .unwrap_or_else(|| "cache-debug:no-such-key".into());
    let sql = format!("SELECT 1 FROM {table} WHERE {key_col} = $1");
    let lookup = match db.prepare(&sql).await {
        Ok(stmt) => {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
            let (s, err) = sample(samples, || db.query_opt(&stmt, &params)).await;
            json!(Latency::of(format!("{name} {}", t.table), s, err))
        }
        Err(e) => json!({ "note": format!("cache table: {}", postgres::error_text(&e)) }),
    };
    json!({ "target": name, "latency": latency, "statements": statements, "cache_table_lookup": lookup })
}

fn latency_row(l: &serde_json::Value) -> Vec<String> {
    let f = |k: &str| format!("{:.3}", l[k].as_f64().unwrap_or(0.0));
    vec![
        l["target"].as_str().unwrap_or_default().to_owned(),
        l["samples"].to_string(),
        f("min_ms"),
        f("avg_ms"),
        f("p50_ms"),
        f("p99_ms"),
        f("max_ms"),
        l["error"].as_str().unwrap_or_default().to_owned(),
    ]
}

/// Runs `performance`.
pub async fn run(ctx: &Context, samples: u32, top: usize) -> anyhow::Result<u8> {
    let config = &ctx.config;
    let filters = &ctx.common.tiers;
    let redis = futures::future::join_all(
        config.redis.iter().filter(|t| selected(filters, Tier::Redis, &t.name)).map(|t| redis_section(t, samples, top)),
    );
    let pg = futures::future::join_all(
        config
            .postgres
            .iter()
            .filter(|t| selected(filters, Tier::Postgres, &t.name))
            .map(|t| postgres_section(t, &config.project_name, samples, top)),
    );
    let memory = futures::future::join_all(
        config.memory.iter().filter(|t| selected(filters, Tier::Memory, &t.name)).map(|t| async {
            let name = format!("memory/{}", t.name);
            match MemoryClient::new(t, config.memory_user_id(t)) {
                Ok(client) => {
                    // The first failure whole (its cause, and whether it is unreachable).
                    let first = std::sync::Mutex::new(None);
                    let (s, err) = sample(samples.min(20), || async {
                        client.list(1).await.map_err(|e| {
                            let text = format!("{e:#}");
                            first.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
                            text
                        })
                    })
                    .await;
                    let first = first.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match first {
                        // Not one answer: the target failed, as for the other tiers.
                        Some(e) if s.is_empty() => crate::failed(&name, &e),
                        _ => json!({ "target": name, "latency": Latency::of(name.clone(), s, err) }),
                    }
                }
                Err(e) => crate::failed(&name, &e),
            }
        }),
    );
    let http = futures::future::join_all(config.http.iter().filter(|t| selected(filters, Tier::Http, &t.name)).map(
        |t| async {
            let name = format!("http/{}", t.name);
            match cache_core::clients::http::client() {
                Ok(client) => {
                    let (s, err) = sample(samples.min(20), || async {
                        let response = client
                            .get(t.url.expose())
                            .timeout(t.timeout)
                            .send()
                            .await
                            .map_err(|e| e.without_url().to_string())?;
                        let status = response.status();
                        if status.as_u16() == t.expect_status { Ok(()) } else { Err(format!("answered {status}")) }
                    })
                    .await;
                    json!({ "target": name, "latency": Latency::of(name.clone(), s, err) })
                }
                Err(e) => crate::failed(&name, &e),
            }
        },
    ));
    let (redis, pg, memory, http) = tokio::join!(redis, pg, memory, http);
    // Every target unreachable: 4; any section with an error: 1.
    let code = crate::code(redis.iter().chain(&pg).chain(&memory).chain(&http));
    let doc = json!({ "samples": samples, "redis": redis, "postgres": pg, "memory": memory, "http": http });
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&doc)?;
    } else {
        let mut out = String::new();
        let mut lat = printer.table();
        lat.set_header(["Target", "Samples", "Min ms", "Avg ms", "p50 ms", "p99 ms", "Max ms", "Note"]);
        for s in redis.iter().chain(&pg).chain(&memory).chain(&http) {
            if let Some(e) = s["error"].as_str() {
                lat.add_row(vec![
                    s["target"].as_str().unwrap_or_default().to_owned(),
                    "0".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    e.to_owned(),
                ]);
                continue;
            }
            lat.add_row(latency_row(&s["latency"]));
            if s["cache_table_lookup"]["samples"].is_number() {
                lat.add_row(latency_row(&s["cache_table_lookup"]));
            }
        }
        out.push_str(&format!("Latency ({samples} samples per target)\n{lat}\n"));
        for s in &redis {
            let target = s["target"].as_str().unwrap_or_default();
            if let Some(entries) = s["slowlog"]["entries"].as_array() {
                let mut t = printer.table();
                t.set_header(["Id", "When", "µs", "Command", "Client"]);
                for e in entries {
                    let when = chrono::DateTime::from_timestamp(e["time"].as_i64().unwrap_or(0), 0)
                        .map_or(String::new(), |t| t.format("%m-%d %H:%M:%S").to_string());
                    t.add_row(vec![
                        e["id"].to_string(),
                        when,
                        e["duration_us"].to_string(),
                        e["command"].as_str().unwrap_or_default().to_owned(),
                        e["client"].as_str().unwrap_or_default().to_owned(),
                    ]);
                }
                out.push_str(&format!("\nSLOWLOG of {target} ({} entries)\n{t}\n", entries.len()));
                if let Some(n) = s["slowlog"]["note"].as_str() {
                    out.push_str(&format!("note: {n}\n"));
                }
            } else if let Some(n) = s["slowlog"]["note"].as_str() {
                out.push_str(&format!("\n{target}: {n}\n"));
            }
            if let Some(cmds) = s["commandstats"]["commands"].as_array() {
                let mut t = printer.table();
                t.set_header(["Command", "Calls", "Total µs", "µs per call"]);
                for c in cmds {
                    t.add_row(vec![
                        c["command"].as_str().unwrap_or_default().to_owned(),
                        c["calls"].to_string(),
                        c["usec"].to_string(),
                        format!("{:.2}", c["usec_per_call"].as_f64().unwrap_or(0.0)),
                    ]);
                }
                out.push_str(&format!("\nTop commands by time on {target}\n{t}\n"));
                if let Some(n) = s["commandstats"]["note"].as_str() {
                    out.push_str(&format!("note: {n}\n"));
                }
            } else if let Some(n) = s["commandstats"]["note"].as_str() {
                out.push_str(&format!("\n{target}: {n}\n"));
            }
            for n in s["notes"].as_array().into_iter().flatten().filter_map(|n| n.as_str()) {
                out.push_str(&format!("note: {target}: {n}\n"));
            }
        }
        for s in &pg {
            let target = s["target"].as_str().unwrap_or_default();
            if let Some(qs) = s["statements"]["queries"].as_array() {
                let mut t = printer.table();
                t.set_header(["Query", "Calls", "Total ms", "Mean ms", "Rows"]);
                for q in qs {
                    t.add_row(vec![
                        q["query"].as_str().unwrap_or_default().to_owned(),
                        q["calls"].to_string(),
                        format!("{:.1}", q["total_ms"].as_f64().unwrap_or(0.0)),
                        format!("{:.3}", q["mean_ms"].as_f64().unwrap_or(0.0)),
                        q["rows"].to_string(),
                    ]);
                }
                out.push_str(&format!("\nTop queries on {target} (pg_stat_statements)\n{t}\n"));
            } else if let Some(n) = s["statements"]["note"].as_str() {
                out.push_str(&format!("\n{target}: {n}\n"));
            }
        }
        printer.always(out.trim_end())?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_command_lines_are_hidden_and_lines_shortened() {
        let s = |v: &[&str]| command_line(v.iter().map(|a| (*a).to_owned()).collect());
        assert_eq!(s(&["AUTH", "user", "hunter2"]), "AUTH (redacted) (redacted)");
        assert_eq!(
            s(&["CONFIG", "SET", "requirepass", "pw", "maxmemory", "1gb"]),
            "CONFIG SET requirepass (redacted) maxmemory 1gb"
        );
        assert_eq!(s(&["HELLO", "3", "AUTH", "default", "pw"]), "HELLO 3 AUTH (redacted) (redacted)");
        assert_eq!(s(&["ACL", "SETUSER", "bob", "on", ">pw", "~*"]), "ACL SETUSER bob on (redacted) ~*");
        let long = "x".repeat(50);
        assert_eq!(s(&["SET", &long, "v"]), format!("SET {}… v", "x".repeat(40)));
        let many: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        assert!(command_line(many).ends_with("… (+4 more)"));
    }

    #[test]
    fn commandstats_parse_most_time_first() {
        let stats = commandstats(
            "# Commandstats\r\ncmdstat_get:calls=2,usec=15,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_debug:calls=1,usec=50012,usec_per_call=50012.00,rejected_calls=0,failed_calls=0\r\n",
        );
        assert_eq!(stats[0].command, "debug");
        assert_eq!((stats[1].calls, stats[1].usec), (2, 15));
    }
}
