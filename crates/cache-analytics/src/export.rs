//! `export`: the history as JSON (the latest snapshot), CSV (every figure of every snapshot),
//! or the Prometheus text exposition format (classic: `# HELP` and `# TYPE` once per family,
//! samples of a family together, escaped label values), written atomically and readable by
//! node_exporter's textfile collector, with each job's last run, last success and exit code.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::exit::{self, Convention};
use cache_core::output::Format;
use cache_core::runs;

use crate::ExportFormat;
use cache_core::history::{HISTORY, Snapshot};

/// Runs `export`.
pub fn run(common: &CommonArgs, format: ExportFormat, output: Option<&Path>) -> anyhow::Result<u8> {
    let ctx = Context::load(common, Format::Text, Convention::Standard)?;
    let latest = || ctx.state.read_last_jsonl::<Snapshot>(HISTORY);
    let text = match format {
        ExportFormat::Json => {
            let latest = latest()?.context("no snapshot yet: run `cache-analytics collect` first")?;
            let mut value = serde_json::to_value(&latest)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("schema_version".into(), cache_core::state::SCHEMA_VERSION.into());
            }
            serde_json::to_string_pretty(&value)? + "\n"
        }
        // CSV is the whole history; the others need the latest snapshot only.
        ExportFormat::Csv => csv(&ctx.state.read_jsonl::<Snapshot>(HISTORY)?),
        ExportFormat::Prometheus => prometheus(latest()?.as_ref(), &runs::summary_by_job(&ctx.state)?),
    };
    match output {
        Some(path) => cache_core::state::write_atomic_mode(path, text.as_bytes(), 0o644)
            .with_context(|| format!("writing `{}`", path.display()))?,
        None => ctx.printer.always(&text)?,
    }
    Ok(exit::SUCCESS)
}

/// Every numeric figure, one `timestamp,tier,target,metric,value` row each.
pub fn csv(history: &[Snapshot]) -> String {
    let mut out = String::from("timestamp,tier,target,metric,value\n");
    let mut row = |t: &str, tier: &str, target: &str, metric: &str, value: f64| {
        let _ = writeln!(out, "{t},{tier},{},{metric},{value}", csv_field(target));
    };
    for s in history {
        let t = s.timestamp.to_rfc3339();
        for r in &s.redis {
            row(&t, "redis", &r.name, "keys", r.keys as f64);
            for (k, v) in &r.info {
                row(&t, "redis", &r.name, k, *v);
            }
            if let Some(h) = r.hit_ratio {
                row(&t, "redis", &r.name, "hit_ratio", h);
            }
            row(&t, "redis", &r.name, "latency_avg_ms", r.latency.avg_ms);
        }
        for p in &s.postgres {
            row(&t, "postgres", &p.name, "total_entries", p.total_entries as f64);
            row(&t, "postgres", &p.name, "hot_entries", p.hot_entries as f64);
            row(&t, "postgres", &p.name, "latency_avg_ms", p.latency.avg_ms);
        }
        for m in &s.memory {
            row(&t, "memory", &m.name, "memories", m.memories as f64);
        }
        for d in &s.dirs {
            row(&t, &d.tier, &d.name, "bytes", d.bytes as f64);
        }
        row(&t, "system", "host", "load1", s.host.load1);
        row(&t, "system", "host", "memory_percent", s.host.memory_percent);
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// Metric families in the order first seen.
#[derive(Default)]
struct Families {
    order: Vec<String>,
    families: std::collections::BTreeMap<String, (&'static str, &'static str, Vec<String>)>,
}

impl Families {
    fn add(&mut self, name: &str, kind: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        if !self.families.contains_key(name) {
            self.order.push(name.to_owned());
        }
        let family = self.families.entry(name.to_owned()).or_insert((kind, help, Vec::new()));
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            format!("{{{}}}", parts.join(","))
        };
        family.2.push(format!("{name}{labels} {}", number(value)));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let (kind, help, samples) = &self.families[name];
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for sample in samples {
                out.push_str(sample);
                out.push('\n');
            }
        }
        out
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// The latest snapshot and the jobs' runs in the Prometheus text format.
pub fn prometheus(
    latest: Option<&Snapshot>,
    jobs: &std::collections::BTreeMap<String, (runs::RunRecord, Option<runs::RunRecord>)>,
) -> String {
    let mut f = Families::default();
    if let Some(s) = latest {
        f.add(
            "cache_snapshot_timestamp_seconds",
            "gauge",
            "When the latest snapshot was taken.",
            &[],
            s.timestamp.timestamp() as f64,
        );
        for r in &s.redis {
            let t = [("target", r.name.as_str())];
            f.add(
                "cache_redis_up",
                "gauge",
                "Whether the Redis target answered (1) or not (0).",
                &t,
                if r.error.is_none() { 1.0 } else { 0.0 },
            );
            f.add("cache_redis_keys", "gauge", "Keys in every database.", &t, r.keys as f64);
            let info = |k: &str| r.info.get(k).copied();
            if let Some(v) = info("used_memory") {
                f.add("cache_redis_used_memory_bytes", "gauge", "Memory used by Redis.", &t, v);
            }
            if let Some(v) = info("maxmemory") {
                f.add("cache_redis_maxmemory_bytes", "gauge", "The maxmemory setting (0: none).", &t, v);
            }
            if let Some(v) = info("instantaneous_ops_per_sec") {
                f.add("cache_redis_ops_per_second", "gauge", "Commands per second.", &t, v);
            }
            if let Some(v) = info("connected_clients") {
                f.add("cache_redis_connected_clients", "gauge", "Client connections.", &t, v);
            }
            if let Some(v) = info("evicted_keys") {
                f.add("cache_redis_evicted_keys_total", "counter", "Keys evicted since the server started.", &t, v);
            }
            if let Some(v) = info("expired_keys") {
                f.add("cache_redis_expired_keys_total", "counter", "Keys expired since the server started.", &t, v);
            }
            if let Some(h) = r.hit_ratio {
                f.add("cache_redis_hit_ratio", "gauge", "Keyspace hits over lookups since the server started.", &t, h);
            }
            f.add(
                "cache_redis_latency_seconds",
                "gauge",
                "Mean PING round trip of the snapshot.",
                &t,
                r.latency.avg_ms / 1000.0,
            );
            for p in &r.prefixes {
                let l = [("target", r.name.as_str()), ("prefix", p.prefix.as_str())];
                f.add(
                    "cache_redis_prefix_keys",
                    "gauge",
                    "Keys under a prefix, estimated from a sample.",
                    &l,
                    p.keys as f64,
                );
                f.add(
                    "cache_redis_prefix_bytes",
                    "gauge",
                    "Bytes under a prefix, estimated from a sample.",
                    &l,
                    p.bytes as f64,
                );
            }
        }
        for p in &s.postgres {
            let t = [("target", p.name.as_str())];
            f.add(
                "cache_postgres_up",
                "gauge",
                "Whether the PostgreSQL target answered (1) or not (0).",
                &t,
                if p.error.is_none() { 1.0 } else { 0.0 },
            );
            f.add(
                "cache_postgres_entries",
                "gauge",
                "Rows of the cache table for the project.",
                &t,
                p.total_entries as f64,
            );
            f.add("cache_postgres_hot_entries", "gauge", "Rows accessed in the last hour.", &t, p.hot_entries as f64);
            f.add(
                "cache_postgres_latency_seconds",
                "gauge",
                "Mean SELECT 1 round trip of the snapshot.",
                &t,
                p.latency.avg_ms / 1000.0,
            );
        }
        for m in &s.memory {
            let t = [("target", m.name.as_str())];
            f.add(
                "cache_memory_up",
                "gauge",
                "Whether the memory API answered (1) or not (0).",
                &t,
                if m.error.is_none() { 1.0 } else { 0.0 },
            );
            f.add("cache_memory_memories", "gauge", "Memories of the user.", &t, m.memories as f64);
        }
        for d in &s.dirs {
            let t = [("tier", d.tier.as_str()), ("target", d.name.as_str())];
            f.add("cache_directory_bytes", "gauge", "Bytes on disk in a cache or log directory.", &t, d.bytes as f64);
            f.add("cache_directory_files", "gauge", "Files in a cache or log directory.", &t, d.files as f64);
        }
        f.add("cache_host_load1", "gauge", "One-minute load average of the host.", &[], s.host.load1);
        f.add(
            "cache_host_memory_used_ratio",
            "gauge",
            "Share of the host's memory in use.",
            &[],
            s.host.memory_percent / 100.0,
        );
    }
    for (job, (last, success)) in jobs {
        let t = [("job", job.as_str())];
        f.add(
            "cache_job_last_run_timestamp_seconds",
            "gauge",
            "When the job's last run ended.",
            &t,
            last.ended_at.timestamp() as f64,
        );
        f.add("cache_job_last_exit_code", "gauge", "Exit code of the job's last run.", &t, f64::from(last.exit_code));
        f.add(
            "cache_job_last_duration_seconds",
            "gauge",
            "Wall time of the job's last run.",
            &t,
            last.duration_ms as f64 / 1000.0,
        );
        if let Some(success) = success {
            f.add(
                "cache_job_last_success_timestamp_seconds",
                "gauge",
                "When the job last ended successfully.",
                &t,
                success.ended_at.timestamp() as f64,
            );
        }
    }
    f.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_families_grouped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let mut f = Families::default();
        f.add("x_total", "counter", "X.", &[("t", "a")], 1.0);
        f.add("y", "gauge", "Y.", &[], 2.5);
        f.add("x_total", "counter", "X.", &[("t", "b\"q")], 3.0);
        assert_eq!(
            f.render(),
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{t=\"a\"} 1\nx_total{t=\"b\\\"q\"} 3\n# HELP y Y.\n# TYPE y gauge\ny 2.5\n"
        );
        assert_eq!(
            (number(f64::NAN), number(f64::INFINITY), number(1e20)),
            ("NaN".into(), "+Inf".into(), "100000000000000000000".into())
        );
    }
}
