//! `dashboard`: one self-contained HTML page (no scripts or styles from the network) with the
//! cards of seed 000's management dashboard and seed 003's maintenance dashboard, and inline
//! SVG line charts of the history; `--serve` serves it with `/api/cache/metrics`.
//!
//! Everything on the page comes from the state directory: the analytics history, run records,
//! the last health report and its history, the low-usage windows and the schedule. Charts end
//! at the last snapshot, so a history that stopped still shows its last day, and the page says
//! how old that snapshot is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::exit::{self, Convention};
use cache_core::jobs::Flag;
use cache_core::output::{Format, bytes};
use cache_core::runs::{Outcome, RUNS_FILE, RunRecord};
use cache_core::schedule;
use cache_core::state::{History, Span, StateDir};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use cache_core::history::WINDOWS_FILE;
use cache_core::history::{HISTORY, Snapshot};
use cache_core::history::{Point, lookups};

/// Where the page is written when no `--output` is given.
pub const DEFAULT_OUTPUT: &str = "analytics/dashboard.html";
/// The page reloads itself this often (seed 000: 30 seconds).
const REFRESH_SECONDS: u32 = 30;
/// The page reads at most this much of the end of each history, across its segments (a week of
/// snapshots, runs and health checks is far less), so building it costs the same however long
/// they grow; what the cap or bad lines left out is said on the page and on stderr.
const TAIL_BYTES: u64 = 32 * 1024 * 1024;
/// A snapshot older than this makes the collection card a warning.
const STALE: Duration = Duration::minutes(45);

/// Card colours (seed 000's status classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Healthy,
    Warning,
    Critical,
}

impl Level {
    fn class(self) -> &'static str {
        match self {
            Self::Healthy => "status-healthy",
            Self::Warning => "status-warning",
            Self::Critical => "status-critical",
        }
    }
}

#[derive(Debug, Deserialize)]
struct HealthLine {
    timestamp: DateTime<Utc>,
    #[serde(default)]
    targets: Vec<HealthTarget>,
}

#[derive(Debug, Deserialize)]
struct HealthTarget {
    tier: String,
    name: String,
    status: String,
}

/// Everything the page shows, read from the state directory.
#[derive(Debug)]
struct Data {
    now: DateTime<Utc>,
    project: String,
    history: Vec<Point>,
    last: Option<Snapshot>,
    runs: Vec<RunRecord>,
    health: Option<Value>,
    health_history: Vec<HealthLine>,
    windows: Option<Value>,
    next_runs: Vec<(String, Option<DateTime<Utc>>, bool)>,
    /// Jobs that never run as scheduled: never admitted by any window, skipped N times in a row.
    job_flags: Vec<(String, String)>,
    /// One-off runs waiting for their time (`cache-scheduler tick` runs them).
    oneoffs: Vec<cache_core::schedule::oneoff::OneOff>,
    automation: Option<cache_core::gate::Automation>,
    /// Whether the schedule is really installed, in words (`cache_core::schedule`).
    installed: (bool, String),
    /// What reading the histories left out: bad lines skipped, what the cap left unread.
    problems: Vec<String>,
}

impl Data {
    fn load(
        state: &StateDir,
        settings: &cache_core::config::SchedulerSettings,
        project: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        // What a history left out (bad lines, what the cap left unread) is shown on the page and
        // printed: a history of garbage must not make an empty page in silence.
        let mut problems = Vec::new();
        let snapshots: History<Snapshot> = state.read_history(HISTORY, Span::Last(Duration::days(7)), TAIL_BYTES)?;
        problems.extend(snapshots.warnings());
        let snapshots = snapshots.records;
        let end = snapshots.last().map_or(now, |s| s.timestamp);
        let history =
            snapshots.iter().filter(|s| s.timestamp > end - Duration::days(7)).filter_map(Point::of).collect();
        let runs: History<RunRecord> =
            state.read_history(RUNS_FILE, Span::Since(now - Duration::days(7)), TAIL_BYTES)?;
        problems.extend(runs.warnings());
        let runs: Vec<RunRecord> =
            runs.records.into_iter().filter(|r| r.started_at > now - Duration::days(7)).collect();
        let health_history: History<HealthLine> =
            state.read_history("health/history.jsonl", Span::Since(now - Duration::days(1)), TAIL_BYTES)?;
        problems.extend(health_history.warnings());
        let health_history: Vec<HealthLine> =
            health_history.records.into_iter().filter(|h| h.timestamp > now - Duration::days(1)).collect();
        // Every job of the catalogue; one no window admits is not upcoming, it is flagged.
        let mut next_runs = Vec::new();
        let mut job_flags = Vec::new();
        for job in cache_core::jobs::statuses(settings, state, now)? {
            for flag in &job.flags {
                if matches!(flag, Flag::NeverAdmitted) || matches!(flag, Flag::Skipped(n) if *n > 1) {
                    job_flags.push((job.name.clone(), flag.to_string()));
                }
            }
            let next = job.next_run.filter(|_| !job.never_admitted);
            next_runs.push((job.name, next, job.heavy));
        }
        let oneoffs = cache_core::schedule::oneoff::read(state)?.pending().cloned().collect();
        Ok(Self {
            now,
            project: project.to_owned(),
            history,
            last: snapshots.into_iter().next_back(),
            runs,
            // The last check of everything: a check of one tier (`--tier`) never stands for the
            // whole (before any full check, the last report of any kind).
            health: match state.read_json(crate::export::HEALTH_FULL_REPORT)? {
                Some(full) => Some(full),
                None => state.read_json(crate::export::HEALTH_REPORT)?,
            },
            health_history,
            windows: state.read_json(WINDOWS_FILE)?,
            next_runs,
            job_flags,
            oneoffs,
            automation: cache_core::gate::automation(state)?,
            installed: schedule::installed_status(state)?,
            problems,
        })
    }

    fn end(&self) -> DateTime<Utc> {
        self.last.as_ref().map_or(self.now, |s| s.timestamp)
    }

    /// The headline figures (also `/api/cache/metrics`).
    fn metrics(&self) -> Value {
        let last = self.last.as_ref();
        let redis: Vec<_> = last.map(|s| s.redis.iter().filter(|r| r.error.is_none()).collect()).unwrap_or_default();
        // The hit ratio of the last day, from the counters; the since-start ratio otherwise (both
        // the applications' alone).
        let from = self.history.iter().position(|p| p.t > self.end() - Duration::days(1)).unwrap_or(self.history.len());
        let (h, m) = lookups(&self.history[from..]);
        let hit_ratio = if h + m > 0.0 {
            Some(h / (h + m))
        } else {
            // The applications' since-start ratio: the toolkit's own lookups taken out.
            let mut info = std::collections::BTreeMap::new();
            for r in &redis {
                for (k, v) in &r.info {
                    *info.entry(k.clone()).or_insert(0.0) += v;
                }
            }
            cache_core::history::application_hit_ratio(&info)
        };
        let latencies: Vec<f64> = redis.iter().map(|r| r.latency.avg_ms).collect();
        let response_time = (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64);
        // Memory efficiency: the share of the memory Redis holds that is data, 1 / fragmentation.
        let frag: Vec<f64> =
            redis.iter().filter_map(|r| r.info.get("mem_fragmentation_ratio").copied()).filter(|f| *f > 0.0).collect();
        let memory_efficiency =
            (!frag.is_empty()).then(|| (1.0 / (frag.iter().sum::<f64>() / frag.len() as f64)).min(1.0));
        let used: f64 = redis.iter().filter_map(|r| r.info.get("used_memory")).sum();
        let round = |v: f64, d: i32| (v * 10f64.powi(d)).round() / 10f64.powi(d);
        json!({
            "timestamp": last.map(|s| s.timestamp),
            "hit_ratio": hit_ratio.map(|v| round(v * 100.0, 1)),
            "response_time": response_time.map(|v| round(v, 2)),
            "memory_efficiency": memory_efficiency.map(|v| round(v * 100.0, 1)),
            "used_memory": used,
            "overall_health": self.health.as_ref().map(|h| h["overall_health"].clone()),
        })
    }
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let d = now - t;
    if d < Duration::zero() {
        return in_(t - now);
    }
    if d < Duration::minutes(1) {
        "just now".into()
    } else if d < Duration::hours(1) {
        format!("{} min ago", d.num_minutes())
    } else if d < Duration::days(2) {
        format!("{} hours ago", d.num_hours())
    } else {
        format!("{} days ago", d.num_days())
    }
}

fn in_(d: Duration) -> String {
    if d < Duration::hours(1) {
        format!("in {} min", d.num_minutes().max(1))
    } else if d < Duration::days(2) {
        format!("in {} hours", d.num_hours())
    } else {
        format!("in {} days", d.num_days())
    }
}

/// One line chart: `series` over `[from, to]`, broken where snapshots are missing.
fn chart(
    id: &str,
    title: &str,
    series: &[(DateTime<Utc>, f64)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    unit: &dyn Fn(f64) -> String,
) -> String {
    const W: f64 = 560.0;
    const H: f64 = 150.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 26.0;
    const BOTTOM: f64 = 25.0;
    let points: Vec<(DateTime<Utc>, f64)> =
        series.iter().filter(|(t, v)| *t >= from && *t <= to && v.is_finite()).copied().collect();
    let mut svg = format!(
        "<svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        W + LEFT,
        H + TOP + BOTTOM,
        esc(title),
        esc(title)
    );
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"16\" class=\"chart-title\">{}</text><rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{W}\" height=\"{H}\" class=\"plot\"/>",
        esc(title)
    );
    if points.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" class=\"empty\">no data in this period</text></svg>",
            LEFT + 20.0,
            TOP + H / 2.0
        );
        return svg;
    }
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if (hi - lo).abs() < f64::EPSILON {
        (lo - lo.abs().max(1.0) * 0.1, hi + hi.abs().max(1.0) * 0.1)
    } else {
        (lo, hi)
    };
    let span = (to - from).num_seconds().max(1) as f64;
    let x = |t: DateTime<Utc>| LEFT + W * (t - from).num_seconds() as f64 / span;
    let y = |v: f64| TOP + H - H * (v - lo) / (hi - lo);
    for (v, label) in [(hi, unit(hi)), (lo, unit(lo))] {
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            LEFT + W,
            LEFT - 6.0,
            y(v) + 4.0,
            esc(&label),
            yy = y(v)
        );
    }
    let fmt = if span > 86_400.0 * 1.5 { "%m-%d" } else { "%m-%d %H:%M" };
    for (t, anchor) in [(from, "start"), (to, "end")] {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"{anchor}\">{}</text>",
            x(t),
            TOP + H + 17.0,
            t.format(fmt)
        );
    }
    // A gap of more than three collection intervals breaks the line.
    let mut runs: Vec<Vec<(DateTime<Utc>, f64)>> = Vec::new();
    for p in points {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|last| p.0 - last.0 <= Duration::minutes(46)) => run.push(p),
            _ => runs.push(vec![p]),
        }
    }
    for run in runs {
        let coords: Vec<String> = run.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
        if coords.len() == 1 {
            let _ =
                write!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" class=\"line-dot\"/>", x(run[0].0), y(run[0].1));
        } else {
            let _ = write!(svg, "<polyline class=\"line\" points=\"{}\"/>", coords.join(" "));
        }
    }
    svg.push_str("</svg>");
    svg
}

fn card(out: &mut String, level: Level, title: &str, rows: &[(String, String, Option<&str>)]) {
    let _ = write!(out, "<div class=\"status-card {}\"><h3>{}</h3>", level.class(), esc(title));
    for (label, value, id) in rows {
        let id = id.map(|id| format!(" id=\"{id}\"")).unwrap_or_default();
        let _ = write!(out, "<div class=\"metrics\"><span>{}</span><span{id}>{}</span></div>", esc(label), esc(value));
    }
    out.push_str("</div>");
}

fn job_family(job: &str) -> &'static str {
    match job {
        "analytics-collect" => "Analytics",
        j if j.starts_with("cleanup") => "Cleanups",
        j if j.starts_with("optimize") => "Optimizations",
        j if j.starts_with("backup") => "Backups",
        j if j.starts_with("health") => "Health checks",
        j if j.starts_with("reports") || j.starts_with("archival") => "Reports",
        _ => "Other",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;background:#1e2430;color:#e8ecf1}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:28px}\
.status-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:20px}\
.status-card{background:rgba(255,255,255,0.08);padding:16px 20px;border-radius:10px}\
.status-card h3{margin:0 0 10px 0;font-size:1.05em}\
.status-healthy{border-left:5px solid #4CAF50}.status-warning{border-left:5px solid #FF9800}\
.status-critical{border-left:5px solid #F44336}\
.metrics{display:flex;justify-content:space-between;margin:6px 0;gap:12px}\
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}\
.chart{width:100%;height:auto;background:rgba(255,255,255,0.04);border-radius:8px}\
.plot{fill:none;stroke:#3a4354}.grid{stroke:#3a4354;stroke-dasharray:3 3}\
.line{fill:none;stroke:#64b5f6;stroke-width:1.6}.line-dot{fill:#64b5f6}\
.axis{fill:#9aa5b5;font-size:11px}.chart-title{fill:#e8ecf1;font-size:13px}.empty{fill:#9aa5b5;font-size:13px}\
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #3a4354;text-align:left}\
footer{margin-top:28px;color:#9aa5b5;font-size:0.85em}";

/// Renders the page.
fn render(d: &Data) -> String {
    let m = d.metrics();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} cache dashboard</title>\
         <style>{STYLE}</style></head><body><h1>{} — automated cache maintenance</h1>",
        esc(&d.project),
        esc(&d.project)
    );
    if !d.problems.is_empty() {
        out.push_str("<div class=\"status-card status-warning\" id=\"history-problems\"><h3>History Problems</h3><ul>");
        for p in &d.problems {
            let _ = write!(out, "<li>{}</li>", esc(p));
        }
        out.push_str("</ul></div>");
    }
    out.push_str("<div class=\"status-grid\">");

    // Automation status (seed 000).
    let last_of = |family: &str| d.runs.iter().rev().find(|r| job_family(&r.job) == family && r.outcome.is_a_run());
    let collect_age = d.last.as_ref().map(|s| d.now - s.timestamp);
    let automation = match collect_age {
        Some(age) if age <= STALE => ("active".to_owned(), Level::Healthy),
        Some(_) => (format!("no snapshot since {}", ago(d.now, d.end())), Level::Warning),
        None => ("no snapshots yet".to_owned(), Level::Warning),
    };
    let (scheduler, automation) = match &d.automation {
        Some(a) if !a.running => (
            format!(
                "stopped {}{}",
                ago(d.now, a.changed_at),
                a.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            (automation.0, Level::Warning),
        ),
        // Automation on, but only as real as what cron or systemd will run.
        _ if !d.installed.0 => (d.installed.1.clone(), (automation.0, Level::Warning)),
        _ => (format!("on ({})", d.installed.1), automation),
    };
    let last_cleanup = last_of("Cleanups")
        .map_or("never".to_owned(), |r| format!("{} ({})", ago(d.now, r.ended_at), outcome_text(r.outcome)));
    let next_opt = d
        .next_runs
        .iter()
        .filter(|(job, _, _)| job.starts_with("optimize"))
        .filter_map(|(_, next, _)| *next)
        .min()
        .map_or("not scheduled".to_owned(), |t| format!("{} ({})", in_(t - d.now), t.format("%Y-%m-%d %H:%M UTC")));
    card(
        &mut out,
        automation.1,
        "Automation Status",
        &[
            ("Scheduler:".into(), scheduler, Some("scheduler-status")),
            ("Collection:".into(), automation.0, None),
            ("Last Cleanup:".into(), last_cleanup, Some("last-cleanup")),
            ("Next Optimization:".into(), next_opt, Some("next-optimization")),
        ],
    );

    // Performance (seed 000).
    let hit = m["hit_ratio"].as_f64();
    let rt = m["response_time"].as_f64();
    let level = match (hit, rt) {
        (Some(h), _) if h < 50.0 => Level::Critical,
        (_, Some(r)) if r > 500.0 => Level::Critical,
        (Some(h), _) if h < 70.0 => Level::Warning,
        (_, Some(r)) if r > 100.0 => Level::Warning,
        _ => Level::Healthy,
    };
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}%"));
    card(
        &mut out,
        level,
        "Performance Metrics",
        &[
            ("Cache Hit Ratio (24 h):".into(), pct(hit), Some("hit-ratio")),
            ("Avg Response Time:".into(), rt.map_or("n/a".to_owned(), |v| format!("{v:.2}ms")), Some("response-time")),
            ("Memory Efficiency:".into(), pct(m["memory_efficiency"].as_f64()), Some("memory-efficiency")),
            // Unknown (no snapshot, INFO refused) says so, never "0 B".
            ("Memory Used:".into(), m["used_memory"].as_f64().map_or("n/a".to_owned(), |v| bytes(v as u64)), None),
        ],
    );

    // Recent alerts: the latest health check's problems and the day's status changes.
    let mut alerts: Vec<String> = Vec::new();
    let mut level = Level::Healthy;
    if let Some(h) = &d.health {
        for t in h["targets"].as_array().into_iter().flatten() {
            let status = t["status"].as_str().unwrap_or("");
            if matches!(status, "degraded" | "failed" | "critical" | "unhealthy") {
                level = if status == "degraded" && level != Level::Critical { Level::Warning } else { Level::Critical };
                alerts.push(format!(
                    "{}/{} {status}: {}",
                    t["tier"].as_str().unwrap_or(""),
                    t["name"].as_str().unwrap_or(""),
                    t["headline"].as_str().unwrap_or("")
                ));
            }
        }
    }
    let mut previous: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut changes = Vec::new();
    for line in &d.health_history {
        for t in &line.targets {
            let key = (t.tier.clone(), t.name.clone());
            if let Some(before) = previous.insert(key, t.status.clone())
                && before != t.status
            {
                changes.push(format!(
                    "{}/{}: {before} → {} ({})",
                    t.tier,
                    t.name,
                    t.status,
                    ago(d.now, line.timestamp)
                ));
            }
        }
    }
    let alert_count = alerts.len() + changes.len();
    alerts.extend(changes.into_iter().rev().take(5));
    if alerts.is_empty() {
        alerts.push(if d.health.is_some() { "All systems healthy".into() } else { "No health check yet".into() });
    }
    let _ =
        write!(out, "<div class=\"status-card {}\"><h3>Recent Alerts</h3><div id=\"recent-alerts\">", level.class());
    for a in &alerts {
        let _ = write!(out, "<p>{}</p>", esc(a));
    }
    out.push_str("</div></div>");

    // Upcoming maintenance (seed 003): low-usage windows and the next heavy jobs.
    let mut rows: Vec<(String, String, Option<&str>)> = Vec::new();
    for w in d.windows.as_ref().and_then(|w| w["windows"].as_array()).into_iter().flatten().take(3) {
        let start = w["start_hour"].as_u64().unwrap_or(0);
        let len = w["duration_hours"].as_u64().unwrap_or(0);
        rows.push((
            format!("Low usage {:02}:00–{:02}:00 UTC", start, (start + len) % 24),
            format!("confidence {:.2}", w["confidence"].as_f64().unwrap_or(0.0)),
            None,
        ));
    }
    if rows.is_empty() {
        rows.push(("Low-usage windows:".into(), "none found yet (cache-analytics windows)".into(), None));
    }
    let mut heavy: Vec<_> = d.next_runs.iter().filter(|(_, next, heavy)| *heavy && next.is_some()).collect();
    heavy.sort_by_key(|(_, next, _)| *next);
    for (job, next, _) in heavy.into_iter().take(4) {
        if let Some(t) = next {
            rows.push((job.clone(), format!("{} ({})", t.format("%m-%d %H:%M UTC"), in_(*t - d.now)), None));
        }
    }
    for o in &d.oneoffs {
        rows.push((
            format!("One-off {}", o.job),
            format!("{} ({})", o.at.format("%m-%d %H:%M UTC"), in_(o.at - d.now)),
            None,
        ));
    }
    for (job, flag) in &d.job_flags {
        rows.push((job.clone(), flag.clone(), None));
    }
    let level = if d.job_flags.is_empty() { Level::Healthy } else { Level::Warning };
    card(&mut out, level, "Upcoming Maintenance", &rows);

    // Space freed per tier, last 7 days (real runs only).
    let mut freed: BTreeMap<String, u64> = BTreeMap::new();
    for r in d.runs.iter().filter(|r| r.job == "cleanup" && r.summary["dry_run"] != true) {
        for t in r.summary["targets"].as_array().into_iter().flatten() {
            *freed.entry(t["tier"].as_str().unwrap_or("?").to_owned()).or_default() +=
                t["bytes_freed"].as_u64().unwrap_or(0);
        }
    }
    let mut rows: Vec<(String, String, Option<&str>)> =
        freed.iter().map(|(tier, b)| (format!("{tier}:"), bytes(*b), None)).collect();
    if rows.is_empty() {
        rows.push(("No cleanup in 7 days".into(), String::new(), None));
    }
    card(&mut out, Level::Healthy, "Space Freed (7 days)", &rows);
    out.push_str("</div>");

    // 24-hour activity (seed 000).
    let mut activity: BTreeMap<&str, usize> = BTreeMap::new();
    for r in d.runs.iter().filter(|r| r.started_at > d.now - Duration::days(1) && r.outcome.is_a_run()) {
        *activity.entry(job_family(&r.job)).or_default() += 1;
    }
    let mut parts: Vec<String> = ["Analytics", "Health checks", "Cleanups", "Optimizations", "Backups", "Reports"]
        .iter()
        .map(|f| format!("{f}: {}", activity.get(f).copied().unwrap_or(0)))
        .collect();
    parts.push(format!("Alerts: {alert_count}"));
    let _ = write!(out, "<h2>24-Hour Activity Summary</h2><p id=\"activity-summary\">{}</p>", esc(&parts.join(" | ")));

    // Task success rate and duration (seed 003).
    let mut per_job: BTreeMap<&str, (u32, u32, u64, Option<&RunRecord>)> = BTreeMap::new();
    for r in d.runs.iter().filter(|r| r.outcome.is_a_run() && r.outcome != Outcome::Skipped) {
        let e = per_job.entry(&r.job).or_default();
        e.0 += 1;
        e.1 += u32::from(r.outcome == Outcome::Success);
        e.2 += r.duration_ms;
        e.3 = Some(r);
    }
    out.push_str("<h2>Tasks (7 days)</h2><table id=\"tasks\"><tr><th>Job</th><th>Runs</th><th>Success rate</th><th>Avg duration</th><th>Last run</th></tr>");
    for (job, (runs, ok, ms, last)) in &per_job {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{runs}</td><td>{:.0}%</td><td>{}</td><td>{}</td></tr>",
            esc(job),
            f64::from(*ok) * 100.0 / f64::from(*runs),
            cache_core::output::millis(*ms as f64 / f64::from(*runs)),
            last.map_or(String::new(), |r| format!("{} ({})", ago(d.now, r.ended_at), outcome_text(r.outcome)))
        );
    }
    if per_job.is_empty() {
        out.push_str("<tr><td colspan=\"5\">no runs recorded in 7 days</td></tr>");
    }
    out.push_str("</table>");

    // Charts.
    let end = d.end();
    let interval_hit = cache_core::history::interval_hit_ratios(&d.history);
    let memory: Vec<_> = d.history.iter().map(|p| (p.t, p.used_memory)).collect();
    let latency: Vec<_> = d.history.iter().map(|p| (p.t, p.latency_ms)).collect();
    let ops: Vec<_> = d.history.iter().map(|p| (p.t, p.ops_per_sec)).collect();
    let percent = |v: f64| format!("{:.1}%", v * 100.0);
    let size = |v: f64| bytes(v.max(0.0) as u64);
    let ms = |v: f64| format!("{v:.2} ms");
    let rate = |v: f64| format!("{v:.0}/s");
    type Unit<'a> = &'a dyn Fn(f64) -> String;
    type Series<'a> = (&'a str, &'a str, &'a [(DateTime<Utc>, f64)], Unit<'a>);
    let series: [Series<'_>; 4] = [
        ("hit-ratio", "Hit ratio", &interval_hit, &percent),
        ("memory", "Memory used", &memory, &size),
        ("latency", "Latency (PING)", &latency, &ms),
        ("operations", "Operations per second", &ops, &rate),
    ];
    for (range, label, span) in [("24h", "last 24 hours", Duration::days(1)), ("7d", "last 7 days", Duration::days(7))]
    {
        let _ = write!(out, "<h2>Charts, {label} (to {})</h2><div class=\"charts\">", end.format("%Y-%m-%d %H:%M UTC"));
        for (id, title, s, unit) in &series {
            out.push_str(&chart(
                &format!("chart-{id}-{range}"),
                &format!("{title}, {label}"),
                s,
                end - span,
                end,
                *unit,
            ));
        }
        out.push_str("</div>");
    }
    let _ = write!(
        out,
        "<footer>Generated {} by cache-analytics dashboard; last snapshot {}; reloads every {REFRESH_SECONDS} s.</footer>",
        d.now.format("%Y-%m-%d %H:%M:%S UTC"),
        d.last.as_ref().map_or("none".to_owned(), |s| ago(d.now, s.timestamp))
    );
    // Served over HTTP, the headline figures refresh in place between reloads (seed 000); opened
    // as a file, there is nothing to fetch.
    out.push_str(
        "<script>\
         if (location.protocol === 'http:' || location.protocol === 'https:') {\
           const show = (id, v, unit) => { if (v !== null && v !== undefined) document.getElementById(id).textContent = v + unit; };\
           setInterval(() => fetch('/api/cache/metrics').then(r => r.json()).then(d => {\
             show('hit-ratio', d.hit_ratio, '%'); show('response-time', d.response_time, 'ms');\
             show('memory-efficiency', d.memory_efficiency, '%');\
           }).catch(() => {}), 10000);\
         }\
         </script></body></html>\n",
    );
    out
}

fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Partial => "partial",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
        Outcome::Locked => "locked out",
        Outcome::Interrupted => "interrupted",
        Outcome::DryRun => "dry run",
    }
}

/// Runs `dashboard`.
pub fn run(
    common: &CommonArgs,
    output: Option<&Path>,
    serve: Option<&str>,
    follow_symlinks: bool,
) -> anyhow::Result<u8> {
    let ctx = Context::load(common, Format::Text, Convention::Standard)?;
    let project = ctx.config.project_name.clone();
    if let Some(addr) = serve {
        return serve_forever(&ctx, &project, addr);
    }
    let data = Data::load(&ctx.state, &ctx.config.scheduler, &project, Utc::now())?;
    for problem in &data.problems {
        ctx.printer.warn(problem);
    }
    let html = render(&data);
    // In the state directory it is a state file (0600, like every other); where the operator
    // sends it (`--output`, a web root) it is readable by others.
    let (path, mode) = match output {
        Some(p) => (p.to_path_buf(), 0o644),
        None => {
            // A state directory with no analytics yet (only a run history) has no `analytics/`.
            let path = ctx.state.path(DEFAULT_OUTPUT);
            if let Some(dir) = path.parent() {
                cache_core::state::create_private_dir(dir)?;
            }
            (path, 0o600)
        }
    };
    cache_core::state::write_output(&path, html.as_bytes(), mode, follow_symlinks)
        .with_context(|| format!("writing the dashboard to `{}`", path.display()))?;
    ctx.printer.info(&format!("dashboard written to {}", path.display()))?;
    Ok(exit::SUCCESS)
}

fn serve_forever(ctx: &Context, project: &str, addr: &str) -> anyhow::Result<u8> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("--serve {addr}: cannot listen there: {e}"))?;
    let local = server.server_addr().to_ip().map_or_else(|| addr.to_owned(), |a| a.to_string());
    ctx.printer.always(&format!("serving the dashboard on http://{local}/ (Ctrl-C stops)"))?;
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("").to_owned();
        let response = match (request.method(), path.as_str()) {
            (tiny_http::Method::Get, "/" | "/index.html") => {
                match Data::load(&ctx.state, &ctx.config.scheduler, project, Utc::now()) {
                    Ok(d) => {
                        for problem in &d.problems {
                            ctx.printer.warn(problem);
                        }
                        respond(200, "text/html; charset=utf-8", render(&d))
                    }
                    Err(e) => respond(500, "text/plain; charset=utf-8", format!("{e:#}\n")),
                }
            }
            (tiny_http::Method::Get, "/api/cache/metrics") => {
                match Data::load(&ctx.state, &ctx.config.scheduler, project, Utc::now()) {
                    Ok(d) => respond(200, "application/json", d.metrics().to_string()),
                    Err(e) => respond(500, "application/json", json!({ "error": format!("{e:#}") }).to_string()),
                }
            }
            (tiny_http::Method::Get, _) => respond(404, "text/plain; charset=utf-8", "not found\n".into()),
            _ => respond(405, "text/plain; charset=utf-8", "only GET\n".into()),
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!("answering a dashboard request: {e}");
        }
    }
    Ok(exit::SUCCESS)
}

fn respond(status: u16, content_type: &str, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response = response.with_header(h);
    }
    if let Ok(h) = tiny_http::Header::from_bytes("Cache-Control", "no-store") {
        response = response.with_header(h);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn charts_break_at_gaps_and_say_when_empty() {
        let t0 = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").unwrap().to_utc();
        let unit = |v: f64| format!("{v}");
        let series = [
            (t0, 1.0),
            (t0 + Duration::minutes(15), 2.0),
            (t0 + Duration::hours(3), 3.0),
            (t0 + Duration::minutes(195), 1.0),
        ];
        let svg = chart("c", "T", &series, t0, t0 + Duration::days(1), &unit);
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        let empty = chart("c", "T", &[], t0, t0 + Duration::days(1), &unit);
        assert!(empty.contains("no data in this period"));
    }
}
