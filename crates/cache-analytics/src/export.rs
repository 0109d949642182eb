//! `export`: the history as JSON (the latest snapshot), CSV (every figure of every snapshot),
//! or the Prometheus text exposition format (classic: `# HELP` and `# TYPE` once per family,
//! samples of a family together, escaped label values), written atomically and readable by
//! node_exporter's textfile collector.
//!
//! The Prometheus export follows the textfile collector's and Prometheus's naming practices:
//! every series carries a `project` label (two installations can share one textfile directory
//! and one Prometheus), no label of ours is called `job` or `instance` (Prometheus's own: the
//! toolkit's job names are `cache_job`), a figure that is not known is left out (a target that
//! is down has `cache_redis_up 0` and no keys or latency, never zeros), servers' counters are
//! `_total` counters, and times are Unix timestamps (an age is `time() - ...`). It reads only
//! what the tools left in the state directory: the latest snapshot, the last health report,
//! the monitor's alert state, the newest backup manifest, the run records and the last security
//! audit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Seek as _};
use std::path::Path;

use anyhow::Context as _;
use cache_core::alerting::Metric;
use cache_core::app::Context;
use cache_core::archive::Manifest;
use cache_core::cli::CommonArgs;
use cache_core::exit::{self, Convention};
use cache_core::history::{HISTORY, RedisFigures, Snapshot};
use cache_core::output::Format;
use cache_core::runs;
use cache_core::state::{Line, LineReader, MAX_LINE_BYTES};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ExportFormat;

/// The health report `cache-health check` (and `monitor`) leaves in the state directory.
pub const HEALTH_REPORT: &str = "health/comprehensive-health.json";
/// The last report of a health check of everything (cache-health writes it beside the last).
pub const HEALTH_FULL_REPORT: &str = "health/last-full-check.json";
/// The monitor's alert state, in the state directory.
pub const ALERT_STATE: &str = "alerts/state.json";
/// The manifest of each backup, in its directory (written last: a backup without one is
/// incomplete and not counted).
pub const BACKUP_MANIFEST: &str = "manifest.json";
/// The cleanup totals counted from `runs.jsonl` so far, and where the count stopped.
pub const TOTALS: &str = "analytics/export-totals.json";
/// The job whose runs the cleanup counters add up.
const CLEANUP_JOB: &str = "cleanup";

/// Runs `export`.
pub fn run(
    common: &CommonArgs,
    format: ExportFormat,
    output: Option<&Path>,
    follow_symlinks: bool,
) -> anyhow::Result<u8> {
    let ctx = Context::load(common, Format::Text, Convention::Standard)?;
    let latest = || ctx.state.read_last_jsonl::<Snapshot>(HISTORY);
    let mut code = exit::SUCCESS;
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
        ExportFormat::Prometheus => {
            let (state, problems) = Sources::read(&ctx, latest()?);
            for problem in &problems {
                ctx.printer.warn(problem);
            }
            if !problems.is_empty() {
                code = exit::PARTIAL;
            }
            prometheus(&state)
        }
    };
    match output {
        Some(path) => {
            // A directory (node_exporter's textfile directory) gets a file named after the
            // project, so that two installations writing there never replace each other's.
            let path = if path.is_dir() { path.join(textfile_name(&ctx.config.project_name)) } else { path.into() };
            cache_core::state::write_output(&path, text.as_bytes(), 0o644, follow_symlinks)
                .with_context(|| format!("writing `{}`", path.display()))?;
        }
        None => ctx.printer.always(&text)?,
    }
    Ok(code)
}

/// The file `export --format prometheus -o DIR` writes in `DIR`: `cache-toolkit-<project>.prom`,
/// with characters other than letters, digits, `_`, `-` and `.` replaced by `_` and then a hash
/// of the name, so that two different project names never share a file.
pub fn textfile_name(project: &str) -> String {
    let safe: String = project
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .collect();
    if safe == project && !project.is_empty() && !project.starts_with('.') {
        format!("cache-toolkit-{project}.prom")
    } else {
        // FNV-1a: stable across builds and platforms, which std's hasher is not.
        let hash =
            project.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("cache-toolkit-{}-{:08x}.prom", safe.trim_start_matches('.'), hash as u32)
    }
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
        // Only the figures NVML gave: an unknown one has no row.
        for gpu in s.gpu.iter().filter(|g| g.available).flat_map(|g| &g.gpus) {
            let target = format!("gpu{}", gpu.index);
            let figures = [
                ("memory_used", gpu.memory_used.map(|v| v as f64)),
                ("memory_total", gpu.memory_total.map(|v| v as f64)),
                ("utilization_percent", gpu.utilization_percent.map(f64::from)),
                ("memory_utilization_percent", gpu.memory_utilization_percent.map(f64::from)),
                ("temperature_celsius", gpu.temperature_celsius.map(f64::from)),
            ];
            for (metric, value) in figures {
                if let Some(v) = value {
                    row(&t, "system", &target, metric, v);
                }
            }
            for (clock, mhz) in gpu.clocks.known() {
                row(&t, "system", &target, &format!("{clock}_clock_mhz"), f64::from(mhz));
            }
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// The last health report, as far as the export reads it (cache-health owns the format; no
/// tool depends on another, so only the fields used are named here).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Health {
    /// When the check ran.
    pub timestamp: DateTime<Utc>,
    /// `OK`, `WARNING` or `CRITICAL`.
    pub status: String,
    /// Every target probed.
    #[serde(default)]
    pub targets: Vec<HealthTarget>,
}

/// One target of the health report.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HealthTarget {
    /// Its tier (`redis`, `postgres`, ...).
    pub tier: String,
    /// Its name.
    pub name: String,
    /// `healthy`, `degraded`, `failed`, `not_configured` or `not_available`.
    pub status: String,
    /// The figures alert rules judge, by metric name: only what the probe measured.
    #[serde(default)]
    pub observed: BTreeMap<String, f64>,
    /// Figures read from the target.
    #[serde(default)]
    pub metrics: BTreeMap<String, Value>,
}

/// The monitor's alert state, as far as the export reads it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Alerts {
    /// Alerts by fingerprint.
    #[serde(default)]
    pub alerts: BTreeMap<String, Alert>,
}

/// One alert: a rule on a target.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Alert {
    /// The rule's name.
    pub rule: String,
    /// `tier/name`, or `all`.
    pub target: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `pending`, `firing` or `resolved`.
    pub status: String,
}

/// The newest complete backup.
#[derive(Clone, Debug)]
pub struct Backups {
    /// Complete backups (those with a manifest).
    pub count: usize,
    /// The newest one's manifest.
    pub newest: Manifest,
}

/// What one cleanup target has removed over every recorded run (dry runs left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupTotal {
    /// Its tier.
    pub tier: String,
    /// Its name.
    pub target: String,
    /// Items removed (keys, rows, memories, files).
    pub removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
}

/// The running count of [`TOTALS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Totals {
    /// Bytes of `runs.jsonl` counted.
    offset: u64,
    /// The id of the first run of the file counted (the current one then): the count goes on
    /// in the file that starts with it, which a rotation made a segment; when none does, the
    /// history is counted again from the start past `through`.
    first_id: Option<String>,
    /// The end of the last run counted.
    through: Option<DateTime<Utc>>,
    /// Per cleanup target.
    cleanup: Vec<CleanupTotal>,
}

/// Everything the Prometheus export reads: one installation's state.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// The configuration's `project_name`: the `project` label of every series.
    pub project: String,
    /// The latest snapshot of the history.
    pub snapshot: Option<Snapshot>,
    /// Each job's last run and last success.
    pub jobs: BTreeMap<String, (runs::RunRecord, Option<runs::RunRecord>)>,
    /// The last health report.
    pub health: Option<Health>,
    /// The monitor's alert state.
    pub alerts: Option<Alerts>,
    /// The backups.
    pub backups: Option<Backups>,
    /// Cleanup totals per target.
    pub cleanup: Vec<CleanupTotal>,
    /// The last security audit of the whole configuration.
    pub audit: Option<cache_core::audit::AuditRecord>,
}

impl Sources {
    /// Reads every source; one that cannot be read is left out and named in the problems
    /// returned (the others are still exported).
    fn read(ctx: &Context, snapshot: Option<Snapshot>) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let p = &mut problems;
        let health = keep(p, "the health report", ctx.state.read_json::<Health>(HEALTH_REPORT));
        let alerts = keep(p, "the alert state", ctx.state.read_json::<Alerts>(ALERT_STATE));
        let backups = keep(p, "the backups", newest_backup(&ctx.config.backup.dir));
        let cleanup = keep(p, "the cleanup totals", count_cleanups(&ctx.state).map(Some)).unwrap_or_default();
        let jobs = keep(p, "the job runs", runs::summary_by_job(&ctx.state).map(Some)).unwrap_or_default();
        let audit = keep(p, "the security audits", ctx.state.read_last_jsonl(cache_core::audit::AUDITS));
        let sources =
            Self { project: ctx.config.project_name.clone(), snapshot, jobs, health, alerts, backups, cleanup, audit };
        (sources, problems)
    }
}

/// `result`'s value, or `None` with the error noted in `problems`.
fn keep<T>(problems: &mut Vec<String>, what: &str, result: anyhow::Result<Option<T>>) -> Option<T> {
    result.unwrap_or_else(|e| {
        problems.push(format!("{what} left out of the export: {e:#}"));
        None
    })
}

/// The complete backups in `dir` and the newest one; `None` when there is none (or no
/// directory). A backup being built (`.partial-...`) has no manifest yet and is not counted.
fn newest_backup(dir: &Path) -> anyhow::Result<Option<Backups>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading `{}`", dir.display())),
    };
    let mut count = 0;
    let mut newest: Option<Manifest> = None;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading `{}`", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        let path = entry.path().join(BACKUP_MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading `{}`", path.display())),
        };
        let manifest: Manifest =
            serde_json::from_str(&text).with_context(|| format!("`{}` is not a valid manifest", path.display()))?;
        count += 1;
        if newest.as_ref().is_none_or(|n| manifest.created_at > n.created_at) {
            newest = Some(manifest);
        }
    }
    Ok(newest.map(|newest| Backups { count, newest }))
}

/// One run record, as far as the counters read it.
#[derive(Deserialize)]
struct CountedRun {
    id: String,
    job: String,
    ended_at: DateTime<Utc>,
    #[serde(default)]
    summary: Value,
}

/// The cleanup totals: [`TOTALS`] brought up to date with the runs appended to `runs.jsonl`
/// since, and saved again (a failure to save is a warning: the next export counts again).
///
/// The count goes on from where the last one stopped: in the file whose first run it names,
/// the current file or, once that was rotated, its segment (plain or compressed), then every
/// newer segment and the current file. A history whose counted file is gone (pruned, or
/// replaced by hand) is counted again whole, adding only the runs that ended after the last one
/// counted.
fn count_cleanups(state: &cache_core::state::StateDir) -> anyhow::Result<Vec<CleanupTotal>> {
    let mut totals: Totals = state.read_json(TOTALS)?.unwrap_or_default();
    let files = state.history_files(runs::RUNS_FILE)?;
    let Some(current) = &files.current else { return Ok(totals.cleanup) };
    // Oldest first: the segments, then the current file at its length now (a run being
    // appended after this is counted by the next export).
    let len = current.metadata()?.len();
    let mut sources: Vec<RunsFile<'_>> = files.segments.iter().map(RunsFile::Segment).collect();
    sources.push(RunsFile::Current(current, len));
    let read_err = |e: std::io::Error| anyhow::anyhow!("reading `{}`: {e}", files.path.display());
    let first_ids: Vec<Option<String>> = sources
        .iter()
        .map(|source| match source.open_at(0) {
            Ok(reader) => first_id(reader),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<std::io::Result<_>>()
        .map_err(read_err)?;
    let last = sources.len() - 1;
    let found = totals
        .first_id
        .as_ref()
        .and_then(|id| first_ids.iter().position(|f| f.as_ref() == Some(id)))
        .filter(|at| *at < last || len >= totals.offset);
    let (from, offset, after) = match found {
        Some(at) => (at, totals.offset, None),
        None => (0, 0, totals.through),
    };
    let before = totals.clone();
    let mut counted_current = 0;
    for (i, source) in sources.iter().enumerate().skip(from) {
        let start = if i == from { offset } else { 0 };
        let reader = match source.open_at(start) {
            Ok(reader) => reader,
            // A segment compressed and pruned since it was listed: nothing left to count.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_err(e)),
        };
        let reader: Box<dyn std::io::Read + Send + '_> = match source {
            RunsFile::Current(_, len) => Box::new(reader.take(len.saturating_sub(start))),
            RunsFile::Segment(_) => reader,
        };
        let counted = count_runs(reader, after, &mut totals).map_err(read_err)?;
        if i == last {
            counted_current = start + counted;
        }
    }
    totals.offset = counted_current;
    totals.first_id = first_ids[last].clone();
    if totals != before
        && let Err(e) = state.write_json(TOTALS, &totals)
    {
        tracing::warn!("saving the cleanup totals: {e:#}");
    }
    Ok(totals.cleanup)
}

/// A file of the run history: a segment, or the current file at the length it had.
enum RunsFile<'a> {
    Segment(&'a cache_core::state::Segment),
    Current(&'a std::fs::File, u64),
}

impl RunsFile<'_> {
    /// Its lines from `offset`.
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
        match self {
            Self::Segment(segment) => segment.open_at(offset),
            Self::Current(file, _) => {
                let mut file = file.try_clone()?;
                file.seek(std::io::SeekFrom::Start(offset))?;
                Ok(Box::new(file))
            }
        }
    }
}

/// The id of the first run of a file of the run history (within its first lines: a line of
/// garbage first does not make the file unrecognisable).
fn first_id(reader: impl std::io::Read) -> std::io::Result<Option<String>> {
    let mut lines = LineReader::new(reader, MAX_LINE_BYTES);
    for _ in 0..16 {
        match lines.next_line()? {
            Some(Line::Text { .. }) => {
                if let Ok(run) = serde_json::from_slice::<CountedRun>(lines.text()) {
                    return Ok(Some(run.id));
                }
            }
            Some(Line::TooLong { .. }) => {}
            None => break,
        }
    }
    Ok(None)
}

/// Adds the runs of `reader`'s whole lines (those that ended after `after`, when given) to
/// `totals`; returns the bytes of the whole lines read.
fn count_runs(reader: impl std::io::Read, after: Option<DateTime<Utc>>, totals: &mut Totals) -> std::io::Result<u64> {
    // Line by line, whole lines only: a run being appended is counted by the next export.
    let mut lines = LineReader::new(reader, MAX_LINE_BYTES);
    let mut counted = 0u64;
    while let Some(line) = lines.next_line()? {
        let (n, text) = match line {
            Line::Text { bytes, ended: true } => (bytes, true),
            Line::TooLong { bytes, ended: true } => (bytes, false),
            Line::Text { ended: false, .. } | Line::TooLong { ended: false, .. } => break,
        };
        counted += n;
        if !text {
            continue;
        }
        let Ok(run) = serde_json::from_slice::<CountedRun>(lines.text()) else { continue };
        if after.is_some_and(|t| run.ended_at <= t) {
            continue;
        }
        totals.through = totals.through.max(Some(run.ended_at));
        if run.job == CLEANUP_JOB {
            add_cleanup(&mut totals.cleanup, &run.summary);
        }
    }
    Ok(counted)
}

/// Adds one cleanup run's per-target figures (a dry run, or a run without targets such as an
/// undo, adds nothing).
fn add_cleanup(totals: &mut Vec<CleanupTotal>, summary: &Value) {
    if summary.get("dry_run").and_then(Value::as_bool) != Some(false) {
        return;
    }
    for t in summary.get("targets").and_then(Value::as_array).into_iter().flatten() {
        let (Some(tier), Some(target)) = (t["tier"].as_str(), t["target"].as_str()) else { continue };
        let at = match totals.iter().position(|c| c.tier == tier && c.target == target) {
            Some(at) => at,
            None => {
                totals.push(CleanupTotal {
                    tier: tier.to_owned(),
                    target: target.to_owned(),
                    ..CleanupTotal::default()
                });
                totals.len() - 1
            }
        };
        totals[at].removed += t["removed"].as_u64().unwrap_or(0);
        totals[at].bytes_freed += t["bytes_freed"].as_u64().unwrap_or(0);
    }
}

/// Metric families in the order first seen.
#[derive(Default)]
struct Families {
    order: Vec<String>,
    families: BTreeMap<String, (&'static str, &'static str, Vec<String>)>,
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

/// Families whose every series carries the project's label first.
struct Exposition<'a> {
    project: &'a str,
    families: Families,
}

impl Exposition<'_> {
    fn sample(&mut self, name: &str, kind: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        let mut all = Vec::with_capacity(labels.len() + 1);
        all.push(("project", self.project));
        all.extend_from_slice(labels);
        self.families.add(name, kind, help, &all, value);
    }

    fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, "gauge", help, labels, value);
    }

    fn counter(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, "counter", help, labels, value);
    }

    fn flag(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], value: bool) {
        self.gauge(name, help, labels, if value { 1.0 } else { 0.0 });
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

/// `(reached, all)` from a cluster's coverage (`2 of 3 primaries`).
fn coverage(r: &RedisFigures) -> Option<(f64, f64)> {
    let (reached, rest) = r.coverage.as_deref()?.split_once(" of ")?;
    let all = rest.split_whitespace().next()?;
    Some((reached.parse().ok()?, all.parse().ok()?))
}

/// 0 fine, 1 degraded, 2 failed, as cache-health's severities.
fn severity(status: &str) -> Option<f64> {
    match status {
        "healthy" | "not_configured" | "not_available" | "OK" => Some(0.0),
        "degraded" | "WARNING" => Some(1.0),
        "failed" | "CRITICAL" => Some(2.0),
        _ => None,
    }
}

/// The state of one installation in the Prometheus text format.
pub fn prometheus(sources: &Sources) -> String {
    let mut x = Exposition { project: &sources.project, families: Families::default() };
    if let Some(s) = &sources.snapshot {
        x.gauge(
            "cache_snapshot_timestamp_seconds",
            "When the latest analytics snapshot was taken.",
            &[],
            s.timestamp.timestamp() as f64,
        );
        for r in &s.redis {
            redis(&mut x, r);
        }
        for p in &s.postgres {
            let t = [("target", p.name.as_str())];
            // Answered `SELECT 1`, whatever became of the statistics after.
            let up = p.error.is_none() || p.latency.samples > 0;
            x.flag("cache_postgres_up", "Whether the PostgreSQL target could be reached.", &t, up);
            if !up {
                continue;
            }
            if p.latency.samples > 0 {
                x.gauge(
                    "cache_postgres_latency_seconds",
                    "Mean SELECT 1 round trip of the snapshot.",
                    &t,
                    p.latency.avg_ms / 1000.0,
                );
            }
            x.flag(
                "cache_postgres_statistics_available",
                "Whether the cache table's statistics could be read (a missing table or a refused query: 0).",
                &t,
                p.error.is_none(),
            );
            if p.error.is_none() {
                x.gauge(
                    "cache_postgres_entries",
                    "Rows of the cache table for the project.",
                    &t,
                    p.total_entries as f64,
                );
                x.gauge("cache_postgres_hot_entries", "Rows accessed in the last hour.", &t, p.hot_entries as f64);
            }
        }
        for m in &s.memory {
            let t = [("target", m.name.as_str())];
            let up = m.error.is_none() || m.latency.samples > 0;
            x.flag("cache_memory_up", "Whether the memory API answered.", &t, up);
            if m.latency.samples > 0 {
                x.gauge(
                    "cache_memory_latency_seconds",
                    "Mean list round trip of the snapshot.",
                    &t,
                    m.latency.avg_ms / 1000.0,
                );
            }
            if m.error.is_none() {
                // A list the server may have cut short (a capped self-hosted answer) is a floor,
                // never exported as the count.
                x.flag("cache_memory_list_complete", "Whether the memories were listed to the end.", &t, !m.truncated);
                if m.truncated {
                    x.gauge(
                        "cache_memory_memories_at_least",
                        "Memories listed before the answer stopped: a floor of the user's memories.",
                        &t,
                        m.memories as f64,
                    );
                } else {
                    x.gauge("cache_memory_memories", "Memories of the user.", &t, m.memories as f64);
                }
            }
        }
        for d in &s.dirs {
            let t = [("tier", d.tier.as_str()), ("target", d.name.as_str())];
            x.gauge("cache_directory_bytes", "Bytes on disk in a cache or log directory.", &t, d.bytes as f64);
            x.gauge("cache_directory_files", "Files in a cache or log directory.", &t, d.files as f64);
        }
        // A host that could not be read is recorded with no CPUs: nothing is known.
        if s.host.cpus > 0 {
            x.gauge("cache_host_load1", "One-minute load average of the host.", &[], s.host.load1);
            x.gauge(
                "cache_host_memory_used_ratio",
                "Share of the host's memory in use.",
                &[],
                s.host.memory_percent / 100.0,
            );
        }
        if let Some(g) = &s.gpu {
            gpus(&mut x, g);
        }
    }
    if let Some(h) = &sources.health {
        health_report(&mut x, h);
    }
    if let Some(a) = &sources.alerts {
        alerts(&mut x, a);
    }
    if let Some(b) = &sources.backups {
        let m = &b.newest;
        x.gauge("cache_backups", "Complete backups in the backup directory.", &[], b.count as f64);
        x.gauge(
            "cache_backup_last_timestamp_seconds",
            "When the newest complete backup was taken.",
            &[],
            m.created_at.timestamp() as f64,
        );
        x.gauge(
            "cache_backup_last_size_bytes",
            "Bytes of the newest backup's files.",
            &[],
            m.files.iter().map(|f| f.bytes).sum::<u64>() as f64,
        );
        x.flag(
            "cache_backup_last_complete",
            "Whether the newest backup holds every source (0: some failed and are missing).",
            &[],
            m.failed.is_empty(),
        );
    }
    for c in &sources.cleanup {
        let t = [("tier", c.tier.as_str()), ("target", c.target.as_str())];
        x.counter(
            "cache_cleanup_removed_total",
            "Items (keys, rows, memories, files) removed by cleanup runs, dry runs left out.",
            &t,
            c.removed as f64,
        );
        x.counter(
            "cache_cleanup_freed_bytes_total",
            "Bytes freed by cleanup runs, dry runs left out.",
            &t,
            c.bytes_freed as f64,
        );
    }
    if let Some(a) = &sources.audit {
        x.gauge("cache_security_score", "The last security audit's score (0 to 100).", &[], f64::from(a.score));
        x.gauge(
            "cache_security_audit_timestamp_seconds",
            "When the last security audit ran.",
            &[],
            a.at.timestamp() as f64,
        );
        x.flag(
            "cache_security_audit_complete",
            "Whether the last security audit reached every target (0: its score covers less).",
            &[],
            a.complete,
        );
        x.gauge("cache_security_findings", "Findings of the last security audit.", &[], a.findings.len() as f64);
    }
    for (job, (last, success)) in &sources.jobs {
        let t = [("cache_job", job.as_str())];
        x.gauge(
            "cache_job_last_run_timestamp_seconds",
            "When the job's last run ended.",
            &t,
            last.ended_at.timestamp() as f64,
        );
        x.gauge("cache_job_last_exit_code", "Exit code of the job's last run.", &t, f64::from(last.exit_code));
        x.gauge(
            "cache_job_last_duration_seconds",
            "Wall time of the job's last run.",
            &t,
            last.duration_ms as f64 / 1000.0,
        );
        if let Some(success) = success {
            x.gauge(
                "cache_job_last_success_timestamp_seconds",
                "When the job last ended successfully.",
                &t,
                success.ended_at.timestamp() as f64,
            );
        }
    }
    x.families.render()
}

/// One Redis target of the snapshot.
fn redis(x: &mut Exposition<'_>, r: &RedisFigures) {
    let t = [("target", r.name.as_str())];
    // Reached: no error, or the PING samples were taken (INFO may still have been refused).
    let up = r.error.is_none() || r.latency.samples > 0;
    x.flag("cache_redis_up", "Whether the Redis target could be reached.", &t, up);
    let cluster = coverage(r);
    if let Some((reached, all)) = cluster {
        x.gauge("cache_redis_primaries", "Primaries of the Redis Cluster.", &t, all);
        x.gauge(
            "cache_redis_primaries_reached",
            "Primaries of the Redis Cluster reached by the snapshot.",
            &t,
            reached,
        );
    }
    if !up {
        return;
    }
    if r.latency.samples > 0 {
        x.gauge("cache_redis_latency_seconds", "Mean PING round trip of the snapshot.", &t, r.latency.avg_ms / 1000.0);
    }
    // A cluster's figures are sums over the primaries reached: with one missing they are
    // neither the cluster's nor comparable with the last export's (a counter would seem to
    // reset), so they are left out.
    if cluster.is_some_and(|(reached, all)| reached < all) {
        return;
    }
    // Every primary reached: the only error collect records then is INFO refused.
    let info_available = r.error.is_none();
    x.flag(
        "cache_redis_info_available",
        "Whether the server answered INFO (hosted servers may refuse it: their figures are unknown).",
        &t,
        info_available,
    );
    if !info_available {
        return;
    }
    let info = |k: &str| r.info.get(k).copied();
    x.gauge("cache_redis_keys", "Keys in every database.", &t, r.keys as f64);
    let gauges: [(&str, &str, &'static str); 5] = [
        ("used_memory", "cache_redis_used_memory_bytes", "Memory used by Redis."),
        ("used_memory_peak", "cache_redis_used_memory_peak_bytes", "Peak memory used by Redis since it started."),
        ("maxmemory", "cache_redis_maxmemory_bytes", "The maxmemory setting (0: no limit)."),
        (
            "mem_fragmentation_ratio",
            "cache_redis_memory_fragmentation_ratio",
            "RSS over used memory (a cluster: the worst primary).",
        ),
        ("connected_clients", "cache_redis_connected_clients", "Client connections."),
    ];
    for (key, name, help) in gauges {
        if let Some(v) = info(key) {
            x.gauge(name, help, &t, v);
        }
    }
    // The applications' lookups: the server's counters less the toolkit's own (its scans and
    // samples count as hits in Redis too).
    let lookups: [(&str, &str, &str, &'static str); 2] = [
        (
            "keyspace_hits",
            "toolkit_hits",
            "cache_redis_keyspace_hits_total",
            "Key lookups that found the key, the toolkit's own left out.",
        ),
        (
            "keyspace_misses",
            "toolkit_misses",
            "cache_redis_keyspace_misses_total",
            "Key lookups that found no key, the toolkit's own left out.",
        ),
    ];
    for (key, own, name, help) in lookups {
        let value = info(key).map(|v| v - info(own).unwrap_or(0.0));
        // Below zero the two figures do not describe the same server life: unknown.
        if let Some(v) = value.filter(|v| *v >= 0.0) {
            x.counter(name, help, &t, v);
        }
    }
    let counters: [(&str, &str, &'static str); 3] = [
        (
            "total_commands_processed",
            "cache_redis_commands_processed_total",
            "Commands processed since the server started.",
        ),
        ("evicted_keys", "cache_redis_evicted_keys_total", "Keys evicted since the server started."),
        ("expired_keys", "cache_redis_expired_keys_total", "Keys expired since the server started."),
    ];
    for (key, name, help) in counters {
        if let Some(v) = info(key) {
            x.counter(name, help, &t, v);
        }
    }
    for p in &r.prefixes {
        let l = [t[0], ("prefix", p.prefix.as_str())];
        x.gauge("cache_redis_prefix_keys", "Keys under a prefix, estimated from a sample.", &l, p.keys as f64);
        x.gauge("cache_redis_prefix_bytes", "Bytes under a prefix, estimated from a sample.", &l, p.bytes as f64);
    }
}

/// The GPUs of the snapshot: `cache_gpu_up` 1 when NVML gave figures, 0 when it gave none
/// (no driver, no GPU: then nothing else, never a 0 utilisation), and per GPU only what NVML
/// gave. Ratios are 0..1 and clocks in hertz, as Prometheus's base units want.
fn gpus(x: &mut Exposition<'_>, g: &cache_core::history::GpuFigures) {
    x.flag(
        "cache_gpu_up",
        "Whether NVML gave the GPUs' figures (0: no NVIDIA driver or no GPU, and no GPU figure).",
        &[],
        g.available,
    );
    if !g.available {
        return;
    }
    x.gauge("cache_gpus", "GPUs NVML found.", &[], g.gpus.len() as f64);
    for gpu in &g.gpus {
        let index = gpu.index.to_string();
        let t = [("gpu", index.as_str())];
        let mut info = vec![t[0], ("name", gpu.name.as_str())];
        if let Some(uuid) = &gpu.uuid {
            info.push(("uuid", uuid.as_str()));
        }
        x.gauge("cache_gpu_info", "A GPU's product name and UUID (1).", &info, 1.0);
        let known: [(&str, &'static str, Option<f64>); 6] = [
            ("cache_gpu_memory_used_bytes", "GPU memory in use.", gpu.memory_used.map(|v| v as f64)),
            ("cache_gpu_memory_total_bytes", "GPU memory in total.", gpu.memory_total.map(|v| v as f64)),
            (
                "cache_gpu_utilization_ratio",
                "Share of the last sample period a kernel ran on the GPU.",
                gpu.utilization_percent.map(|v| f64::from(v) / 100.0),
            ),
            (
                "cache_gpu_memory_utilization_ratio",
                "Share of the last sample period the GPU's memory was read or written.",
                gpu.memory_utilization_percent.map(|v| f64::from(v) / 100.0),
            ),
            ("cache_gpu_temperature_celsius", "GPU core temperature.", gpu.temperature_celsius.map(f64::from)),
            (
                "cache_gpu_memory_used_ratio",
                "Share of the GPU's memory in use.",
                gpu.memory_percent().map(|p| p / 100.0),
            ),
        ];
        for (name, help, value) in known {
            if let Some(value) = value {
                x.gauge(name, help, &t, value);
            }
        }
        for (clock, mhz) in gpu.clocks.known() {
            x.gauge(
                "cache_gpu_clock_hertz",
                "A GPU clock's current speed.",
                &[t[0], ("clock", clock)],
                f64::from(mhz) * 1e6,
            );
        }
        if let Some(reasons) = &gpu.throttle_reasons {
            for (_, reason) in cache_core::gpu::THROTTLE_REASONS {
                x.flag(
                    "cache_gpu_throttle_reason",
                    "Whether a reason holds the GPU's clocks down now (NVML's clock throttle reasons).",
                    &[t[0], ("reason", reason)],
                    reasons.iter().any(|r| r == reason),
                );
            }
        }
    }
}

/// The last health report: each target's status, and the figures only the health check reads
/// (Redis replication and cluster state, PostgreSQL dead tuples and connections).
fn health_report(x: &mut Exposition<'_>, h: &Health) {
    x.gauge("cache_health_timestamp_seconds", "When the last health check ran.", &[], h.timestamp.timestamp() as f64);
    if let Some(v) = severity(&h.status) {
        x.gauge("cache_health_overall_status", "The last health check's verdict: 0 OK, 1 warning, 2 critical.", &[], v);
    }
    for target in &h.targets {
        let t = [("tier", target.tier.as_str()), ("target", target.name.as_str())];
        if let Some(v) = severity(&target.status) {
            x.gauge(
                "cache_health_status",
                "A target's status at the last health check: 0 healthy, 1 degraded, 2 failed.",
                &t,
                v,
            );
        }
        let t = [("target", target.name.as_str())];
        let metric = |k: &str| target.metrics.get(k);
        match target.tier.as_str() {
            "redis" => {
                if let Some(role) = metric("role").and_then(Value::as_str) {
                    x.gauge(
                        "cache_redis_role",
                        "The server's replication role at the last health check (1).",
                        &[t[0], ("role", role)],
                        1.0,
                    );
                }
                if let Some(state) = metric("cluster_state").and_then(Value::as_str).filter(|s| *s != "unknown") {
                    x.flag(
                        "cache_redis_cluster_state_ok",
                        "Whether CLUSTER INFO said `cluster_state:ok` at the last health check.",
                        &t,
                        state == "ok",
                    );
                }
                if let Some(n) = metric("cluster_replicas").and_then(Value::as_f64) {
                    x.gauge(
                        "cache_redis_cluster_replicas",
                        "Healthy replicas in the Redis Cluster at the last health check.",
                        &t,
                        n,
                    );
                }
            }
            "postgres" => {
                if let Some(v) = target.observed.get(Metric::DeadTuples.name()) {
                    x.gauge(
                        "cache_postgres_dead_tuples",
                        "Dead tuples of the cache table at the last health check.",
                        &t,
                        *v,
                    );
                }
                if let Some(v) = metric("table_bytes").and_then(Value::as_f64) {
                    x.gauge(
                        "cache_postgres_table_size_bytes",
                        "Size of the cache table with its indexes and TOAST.",
                        &t,
                        v,
                    );
                }
                if let Some(v) = metric("connections").and_then(Value::as_f64) {
                    x.gauge("cache_postgres_connections", "Client backends at the last health check.", &t, v);
                }
                if let Some(v) = metric("max_connections").and_then(Value::as_f64) {
                    x.gauge("cache_postgres_max_connections", "The max_connections setting.", &t, v);
                }
                if let Some(v) = metric("in_recovery").and_then(Value::as_bool) {
                    x.flag(
                        "cache_postgres_in_recovery",
                        "Whether the server is a standby in recovery (a replica).",
                        &t,
                        v,
                    );
                }
            }
            _ => {}
        }
    }
}

/// The monitor's alerts: each one's state, and how many fire.
fn alerts(x: &mut Exposition<'_>, a: &Alerts) {
    let firing = a.alerts.values().filter(|a| a.status == "firing").count();
    x.gauge("cache_alerts_firing", "Alerts firing.", &[], firing as f64);
    for alert in a.alerts.values() {
        let mut l = vec![("rule", alert.rule.as_str())];
        match alert.target.split_once('/') {
            Some((tier, name)) => l.extend([("tier", tier), ("target", name)]),
            None => l.push(("target", alert.target.as_str())),
        }
        l.push(("severity", alert.severity.as_str()));
        x.flag(
            "cache_alert_firing",
            "Whether an alert rule fires on a target (1), or is pending or resolved (0).",
            &l,
            alert.status == "firing",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::history::Latency;

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

    #[test]
    fn textfile_names_differ_for_different_projects() {
        assert_eq!(textfile_name("shop"), "cache-toolkit-shop.prom");
        let odd = ["shop prod", "shop_prod", "shop/prod", ".shop", "", "shop\u{e9}"].map(textfile_name);
        assert_eq!(odd[1], "cache-toolkit-shop_prod.prom");
        for (i, a) in odd.iter().enumerate() {
            assert!(a.ends_with(".prom") && !a.contains('/') && !a.contains(' '), "{a}");
            for b in &odd[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn figures(name: &str) -> RedisFigures {
        RedisFigures { name: name.into(), latency: Latency::of(&[1.0, 3.0]), ..RedisFigures::default() }
    }

    #[test]
    fn unknown_redis_figures_are_left_out() {
        let mut ok = figures("ok");
        ok.keys = 0;
        ok.info = [("used_memory", 1000.0), ("keyspace_hits", 10.0), ("toolkit_hits", 4.0), ("keyspace_misses", 3.0)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        let down = RedisFigures { name: "down".into(), error: Some("unreachable".into()), ..RedisFigures::default() };
        let refused = RedisFigures { error: Some("INFO refused by the server".into()), ..figures("hosted") };
        let partial = RedisFigures {
            error: Some("not every primary was reached (2 of 3 primaries): x".into()),
            coverage: Some("2 of 3 primaries".into()),
            keys: 7,
            info: [("used_memory".to_owned(), 1.0)].into(),
            ..figures("cluster")
        };
        let lagging = RedisFigures {
            info: [("keyspace_hits".to_owned(), 1.0), ("toolkit_hits".to_owned(), 5.0)].into(),
            ..figures("lagging")
        };
        let snapshot = Snapshot { redis: vec![ok, down, refused, partial, lagging], ..Snapshot::default() };
        let text = prometheus(&Sources { project: "p".into(), snapshot: Some(snapshot), ..Sources::default() });
        let of = |target: &str| -> Vec<String> {
            let tag = format!("target=\"{target}\"");
            lines(&text).into_iter().filter(|l| l.contains(&tag)).map(|l| l.replace(&tag, "T")).collect()
        };
        assert_eq!(
            of("ok"),
            [
                "cache_redis_up{project=\"p\",T} 1",
                "cache_redis_latency_seconds{project=\"p\",T} 0.002",
                "cache_redis_info_available{project=\"p\",T} 1",
                "cache_redis_keys{project=\"p\",T} 0",
                "cache_redis_used_memory_bytes{project=\"p\",T} 1000",
                "cache_redis_keyspace_hits_total{project=\"p\",T} 6",
                "cache_redis_keyspace_misses_total{project=\"p\",T} 3",
            ]
        );
        assert_eq!(of("down"), ["cache_redis_up{project=\"p\",T} 0"]);
        assert_eq!(
            of("hosted"),
            [
                "cache_redis_up{project=\"p\",T} 1",
                "cache_redis_latency_seconds{project=\"p\",T} 0.002",
                "cache_redis_info_available{project=\"p\",T} 0",
            ]
        );
        assert_eq!(
            of("cluster"),
            [
                "cache_redis_up{project=\"p\",T} 1",
                "cache_redis_latency_seconds{project=\"p\",T} 0.002",
                "cache_redis_primaries{project=\"p\",T} 3",
                "cache_redis_primaries_reached{project=\"p\",T} 2",
            ]
        );
        // More of the toolkit's lookups than the server counts: not one server life, unknown.
        assert!(!of("lagging").iter().any(|l| l.contains("keyspace_hits")), "{text}");
        // No host figures when the host could not be read.
        assert!(!text.contains("cache_host_"), "{text}");
    }

    #[test]
    fn a_memory_list_cut_short_is_exported_as_a_floor_never_as_the_count() {
        let memory = |name: &str, truncated: bool| cache_core::history::MemoryFigures {
            name: name.into(),
            memories: 100,
            truncated,
            latency: Latency::of(&[2.0]),
            ..Default::default()
        };
        let snapshot = Snapshot { memory: vec![memory("whole", false), memory("capped", true)], ..Snapshot::default() };
        let text = prometheus(&Sources { project: "p".into(), snapshot: Some(snapshot), ..Sources::default() });
        let of = |target: &str| -> Vec<String> {
            let tag = format!("target=\"{target}\"");
            lines(&text)
                .into_iter()
                .filter(|l| l.contains(&tag) && !l.contains("latency"))
                .map(|l| l.replace(&tag, "T"))
                .collect()
        };
        assert_eq!(
            of("whole"),
            [
                "cache_memory_up{project=\"p\",T} 1",
                "cache_memory_list_complete{project=\"p\",T} 1",
                "cache_memory_memories{project=\"p\",T} 100",
            ]
        );
        assert_eq!(
            of("capped"),
            [
                "cache_memory_up{project=\"p\",T} 1",
                "cache_memory_list_complete{project=\"p\",T} 0",
                "cache_memory_memories_at_least{project=\"p\",T} 100",
            ]
        );
    }

    #[test]
    fn health_alerts_and_backups_are_exported_from_what_they_hold() {
        let health: Health = serde_json::from_value(serde_json::json!({
            "timestamp": "2026-11-22T10:00:00Z", "status": "WARNING", "targets": [
                {"tier": "redis", "name": "main", "status": "degraded",
                 "metrics": {"role": "master", "cluster_state": "fail", "cluster_replicas": 2}},
                {"tier": "postgres", "name": "pg", "status": "healthy", "observed": {"dead_tuples": 12.0},
                 "metrics": {"connections": 3, "max_connections": 100, "in_recovery": false}},
                {"tier": "system", "name": "host", "status": "not_available"}]
        }))
        .unwrap();
        let alerts: Alerts = serde_json::from_value(serde_json::json!({ "alerts": {
            "a": {"rule": "Many keys", "target": "redis/main", "severity": "critical", "status": "firing"},
            "b": {"rule": "Budget", "target": "all", "severity": "warning", "status": "resolved"}}}))
        .unwrap();
        let snapshot = Snapshot { redis: vec![figures("main")], ..Snapshot::default() };
        let text = prometheus(&Sources {
            project: "p".into(),
            snapshot: Some(snapshot),
            health: Some(health),
            alerts: Some(alerts),
            ..Sources::default()
        });
        for want in [
            "cache_redis_role{project=\"p\",target=\"main\",role=\"master\"} 1",
            "cache_redis_cluster_state_ok{project=\"p\",target=\"main\"} 0",
            "cache_redis_cluster_replicas{project=\"p\",target=\"main\"} 2",
            "cache_health_overall_status{project=\"p\"} 1",
            "cache_health_status{project=\"p\",tier=\"redis\",target=\"main\"} 1",
            "cache_health_status{project=\"p\",tier=\"system\",target=\"host\"} 0",
            "cache_postgres_dead_tuples{project=\"p\",target=\"pg\"} 12",
            "cache_postgres_connections{project=\"p\",target=\"pg\"} 3",
            "cache_postgres_max_connections{project=\"p\",target=\"pg\"} 100",
            "cache_postgres_in_recovery{project=\"p\",target=\"pg\"} 0",
            "cache_alerts_firing{project=\"p\"} 1",
            "cache_alert_firing{project=\"p\",rule=\"Many keys\",tier=\"redis\",target=\"main\",severity=\"critical\"} 1",
            "cache_alert_firing{project=\"p\",rule=\"Budget\",target=\"all\",severity=\"warning\"} 0",
        ] {
            assert!(lines(&text).contains(&want), "no `{want}` in\n{text}");
        }
        // What the report does not hold is not exported.
        assert!(!text.contains("cache_postgres_table_size_bytes"), "{text}");
        assert!(!text.contains("cache_backup"), "{text}");
    }

    #[test]
    fn cleanup_totals_count_every_real_run_once() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("cache-analytics-totals-{}-{nanos}", std::process::id()));
        let state = cache_core::state::StateDir::open(dir.join("state")).unwrap();
        let run = |id: &str, job: &str, minute: u32, dry_run: bool, removed: u64| {
            serde_json::json!({
                "schema_version": 1, "id": id, "job": job, "ended_at": format!("2026-11-22T10:{minute:02}:00Z"),
                "summary": {"dry_run": dry_run, "targets": [
                    {"tier": "files", "target": "models", "removed": removed, "bytes_freed": removed * 10}]}
            })
            .to_string()
                + "\n"
        };
        let path = state.path(runs::RUNS_FILE);
        let append = |line: String| {
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(line.as_bytes())
                .unwrap();
        };
        assert_eq!(count_cleanups(&state).unwrap(), []);
        append(run("r1", "cleanup", 1, false, 2));
        append(run("r2", "cleanup", 2, true, 100));
        append(run("r3", "backup", 3, false, 100));
        let want = |removed: u64| {
            vec![CleanupTotal { tier: "files".into(), target: "models".into(), removed, bytes_freed: removed * 10 }]
        };
        assert_eq!(count_cleanups(&state).unwrap(), want(2));
        // Counted once, however often exported; a line being written waits for the next export.
        assert_eq!(count_cleanups(&state).unwrap(), want(2));
        let next = run("r4", "cleanup", 4, false, 3);
        append(next[..10].to_owned());
        assert_eq!(count_cleanups(&state).unwrap(), want(2));
        append(next[10..].to_owned());
        assert_eq!(count_cleanups(&state).unwrap(), want(5));
        // A rotated file: only the runs after the last one counted are added.
        std::fs::write(&path, run("r4", "cleanup", 4, false, 3) + &run("r5", "cleanup", 5, false, 1)).unwrap();
        assert_eq!(count_cleanups(&state).unwrap(), want(6));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cleanup_totals_go_on_across_rotations_and_compression() {
        let dir = tempfile_dir("rotation");
        let state = cache_core::state::StateDir::open(dir.join("state")).unwrap().with_rotate_bytes(700);
        let mut minute = 0;
        let mut append = |removed: u64| {
            minute += 1;
            let run = serde_json::json!({
                "id": format!("r{minute}"), "job": "cleanup",
                "ended_at": chrono::Utc::now() + chrono::Duration::seconds(minute),
                "summary": {"dry_run": false, "targets": [
                    {"tier": "files", "target": "models", "removed": removed, "bytes_freed": removed * 10}]}
            });
            state.append_jsonl(runs::RUNS_FILE, &run).unwrap();
        };
        let removed = |state: &cache_core::state::StateDir| count_cleanups(state).unwrap()[0].removed;
        append(1);
        assert_eq!(removed(&state), 1);
        // Runs appended after the count, then the file rotated (twice over) before the next.
        for _ in 0..10 {
            append(1);
        }
        assert!(state.history_files(runs::RUNS_FILE).unwrap().segments.len() >= 2);
        assert_eq!(removed(&state), 11);
        assert_eq!(removed(&state), 11, "counted once");
        for _ in 0..10 {
            append(1);
        }
        // The segments compressed by a monthly archival meanwhile: counted on in the `.gz`.
        let done = state.archive_histories(chrono::Utc::now() + chrono::Duration::days(40), 13).unwrap();
        assert!(!done.compressed.is_empty(), "{done:?}");
        append(1);
        assert_eq!(removed(&state), 22);
        // The file counted last rotated and pruned past the retention before the next count:
        // the runs of the segments pruned are gone; those left are counted, once.
        for _ in 0..10 {
            append(1);
        }
        state.archive_histories(chrono::Utc::now() + chrono::Duration::days(800), 13).unwrap();
        assert!(state.history_files(runs::RUNS_FILE).unwrap().segments.is_empty());
        let left = std::fs::read_to_string(state.path(runs::RUNS_FILE)).unwrap().lines().count() as u64;
        assert!(left < 10, "{left}");
        assert_eq!(removed(&state), 22 + left);
        append(5);
        assert_eq!(removed(&state), 27 + left);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(what: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        std::env::temp_dir().join(format!("cache-analytics-{what}-{}-{nanos}", std::process::id()))
    }
}
