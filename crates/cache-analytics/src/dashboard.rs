//! `dashboard`: one self-contained HTML page (no scripts or styles from the network) with the
//! cards of seed 000's management dashboard and seed 003's maintenance dashboard, and inline
//! SVG line charts of the history; `--serve` serves it with `/api/cache/metrics`.
//!
//! Everything on the page comes from the state directory: the analytics history, run records,
//! the last health report and its history, the low-usage windows and the schedule. Charts end
//! at the last snapshot, so a history that stopped still shows its last day, and the page says
//! how old that snapshot is.
//!
//! The page reads well from the first hour: a chart spans the snapshots present (from the first
//! one within its 24 hours or 7 days to the last), and below [`MIN_CHART_SNAPSHOTS`] it is a note
//! saying how many there are; a card's label stays on one line, its value beside it or below;
//! and the alert list shows a flapping alert once (`cache_core::alerting::flapping`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use cache_core::alerting::flapping::{self, AlertState, Change, Episode, LoggedNotice};
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
use cache_core::output::html_escape as esc;

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
/// Fewer snapshots than this within a chart's range make a note ("not enough data yet (2
/// snapshots)") instead of the chart: two points are a segment, not yet a trend, and the hit
/// ratio, a ratio between snapshots, has one point fewer.
pub const MIN_CHART_SNAPSHOTS: usize = 3;
/// The most changes (alerts and status changes, a flapping spell counting once) the alert list shows.
const ALERT_LINES: usize = 6;

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
    /// When each snapshot of the last 7 days back from the last one was taken, Redis read or not.
    snapshot_times: Vec<DateTime<Utc>>,
    last: Option<Snapshot>,
    runs: Vec<RunRecord>,
    health: Option<Value>,
    health_history: Vec<HealthLine>,
    /// The monitor's notifications of the last day (`alerts/log.jsonl`), oldest first.
    alert_log: Vec<LoggedNotice>,
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
        let recent = || snapshots.iter().filter(|s| s.timestamp > end - Duration::days(7));
        let history = recent().filter_map(Point::of).collect();
        let snapshot_times = recent().map(|s| s.timestamp).collect();
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
        let alert_log: History<LoggedNotice> =
            state.read_history(flapping::LOG_FILE, Span::Since(now - Duration::days(1)), TAIL_BYTES)?;
        problems.extend(alert_log.warnings());
        let alert_log = alert_log.records.into_iter().filter(|n| n.time > now - Duration::days(1)).collect();
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
            snapshot_times,
            last: snapshots.into_iter().next_back(),
            runs,
            // The last check of everything: a check of one tier (`--tier`) never stands for the
            // whole (before any full check, the last report of any kind).
            health: match state.read_json(crate::export::HEALTH_FULL_REPORT)? {
                Some(full) => Some(full),
                None => state.read_json(crate::export::HEALTH_REPORT)?,
            },
            health_history,
            alert_log,
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

    /// The applications' hit ratio of the last day, from the counters, or of the history there
    /// is when it is shorter; the since-start ratio when the history has no lookups yet. With
    /// the period it covers, in words ("24 h", "2 h", "since start").
    fn hit_ratio(&self) -> (Option<f64>, String) {
        let from = self.history.iter().position(|p| p.t > self.end() - Duration::days(1)).unwrap_or(self.history.len());
        let span = &self.history[from..];
        let (h, m) = lookups(span);
        if h + m > 0.0 {
            let covered =
                span.last().map(|p| p.t).zip(span.first().map(|p| p.t)).map_or(Duration::zero(), |(b, a)| b - a);
            return (Some(h / (h + m)), period(covered));
        }
        // The applications' since-start ratio: the toolkit's own lookups taken out.
        let mut info = std::collections::BTreeMap::new();
        for r in self.last.iter().flat_map(|s| s.redis.iter().filter(|r| r.error.is_none())) {
            for (k, v) in &r.info {
                *info.entry(k.clone()).or_insert(0.0) += v;
            }
        }
        (cache_core::history::application_hit_ratio(&info), "since start".into())
    }

    /// The headline figures (also `/api/cache/metrics`).
    fn metrics(&self) -> Value {
        let last = self.last.as_ref();
        let redis: Vec<_> = last.map(|s| s.redis.iter().filter(|r| r.error.is_none()).collect()).unwrap_or_default();
        let hit_ratio = self.hit_ratio().0;
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

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let d = now - t;
    if d < Duration::zero() {
        return in_(t - now);
    }
    if d < Duration::minutes(1) {
        "just now".into()
    } else if d < Duration::hours(1) {
        format!("{} min ago", d.num_minutes())
    } else if d < Duration::hours(2) {
        "1 hour ago".into()
    } else if d < Duration::days(2) {
        format!("{} hours ago", d.num_hours())
    } else {
        format!("{} days ago", d.num_days())
    }
}

/// A period in words for a label: "24 h" from 23.5 hours on, else hours or minutes.
fn period(d: Duration) -> String {
    if d >= Duration::minutes(23 * 60 + 30) {
        "24 h".into()
    } else if d >= Duration::minutes(90) {
        format!("{} h", (d.num_minutes() as f64 / 60.0).round())
    } else {
        format!("{} min", d.num_minutes().max(1))
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

/// A chart's x-range and the snapshots within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    snapshots: usize,
}

/// The range of a chart of the last `span` back from `end` (the last snapshot): from the first
/// snapshot within it, not `end - span`, so that a history younger than the span fills the
/// frame instead of being a sliver at its right edge.
fn chart_range(times: &[DateTime<Utc>], end: DateTime<Utc>, span: Duration) -> Range {
    let within: Vec<DateTime<Utc>> = times.iter().copied().filter(|t| *t > end - span && *t <= end).collect();
    Range { from: within.iter().min().copied().unwrap_or(end), to: end, snapshots: within.len() }
}

/// "1 snapshot", "2 snapshots".
fn snapshots(n: usize) -> String {
    format!("{n} snapshot{}", if n == 1 { "" } else { "s" })
}

/// One line chart: `series` over the range, broken where snapshots are missing; with fewer
/// than [`MIN_CHART_SNAPSHOTS`] snapshots in the range, a note saying how many there are.
fn chart(id: &str, title: &str, series: &[(DateTime<Utc>, f64)], range: Range, unit: &dyn Fn(f64) -> String) -> String {
    const W: f64 = 560.0;
    const H: f64 = 150.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 26.0;
    const BOTTOM: f64 = 25.0;
    let Range { from, to, snapshots: count } = range;
    if count < MIN_CHART_SNAPSHOTS {
        return format!(
            "<div class=\"chart chart-note\" id=\"{id}\" role=\"img\" aria-label=\"{t}\"><div class=\"chart-title\">{t}</div>\
             <p class=\"empty\">not enough data yet ({})</p></div>",
            snapshots(count),
            t = esc(title)
        );
    }
    let points: Vec<(DateTime<Utc>, f64)> =
        series.iter().filter(|(t, v)| *t >= from && *t <= to && v.is_finite()).copied().collect();
    let mut svg = format!(
        "<svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" data-from=\"{}\" data-to=\"{}\" data-snapshots=\"{count}\"><title>{}</title>",
        W + LEFT,
        H + TOP + BOTTOM,
        esc(title),
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
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
            "<text x=\"{}\" y=\"{}\" class=\"empty\">no figures in these {}</text></svg>",
            LEFT + 20.0,
            TOP + H / 2.0,
            snapshots(count)
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
    // In milliseconds: snapshots taken seconds apart (collect run by hand) still spread out.
    let span_ms = (to - from).num_milliseconds().max(1) as f64;
    let span = span_ms / 1000.0;
    let x = |t: DateTime<Utc>| LEFT + W * (t - from).num_milliseconds() as f64 / span_ms;
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
    let fmt = if span > 86_400.0 * 1.5 {
        "%m-%d"
    } else if span >= 6.0 * 3600.0 {
        "%m-%d %H:%M"
    } else if span >= 600.0 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
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

/// A card of label and value rows. A label stays on one line (cut with an ellipsis, the whole
/// in its tooltip, where the card is narrower than it); its value goes beside it, or on the
/// line below when both do not fit (see `STYLE`).
fn card(out: &mut String, level: Level, title: &str, rows: &[(String, String, Option<&str>)]) {
    let _ = write!(out, "<div class=\"status-card {}\"><h3>{}</h3>", level.class(), esc(title));
    for (label, value, id) in rows {
        let id = id.map(|id| format!(" id=\"{id}\"")).unwrap_or_default();
        let _ = write!(
            out,
            "<div class=\"metrics\"><span class=\"label\" title=\"{l}\">{l}</span><span class=\"value\"{id}>{}</span></div>",
            esc(value),
            l = esc(label)
        );
    }
    out.push_str("</div>");
}

/// The alert list's changes of the day, newest first.
#[derive(Debug, Default, PartialEq)]
struct Recent {
    /// At most [`ALERT_LINES`] lines, a flapping spell once.
    lines: Vec<String>,
    /// Changes counted one by one (a spell counts all its changes).
    changes: usize,
    /// The severity of each alert whose last change is that it fired.
    firing: Vec<String>,
}

/// The day's alert changes (`firing`, `resolved` in the monitor's log) per rule and target,
/// and health status changes per target, as lines: a flapping spell (the rule is
/// `cache_core::alerting::flapping`'s) is one line with its count, since when and the state
/// it is in now; every other change a line of its own.
fn recent_changes(alert_log: &[LoggedNotice], health_history: &[HealthLine], now: DateTime<Utc>) -> Recent {
    let since = |t: DateTime<Utc>| {
        if t.date_naive() == now.date_naive() { t.format("%H:%M UTC") } else { t.format("%m-%d %H:%M UTC") }
    };
    let mut out = Recent::default();
    let mut lines: Vec<(DateTime<Utc>, String)> = Vec::new();
    for ((rule, target), flapping::AlertChanges { changes, last }) in flapping::alert_changes(alert_log) {
        out.changes += changes.len();
        if changes.last().is_some_and(|c| c.state == AlertState::Firing) {
            out.firing.push(last.alert.severity.clone());
        }
        for episode in flapping::episodes(&changes) {
            let line = match &episode {
                Episode::Single(c) => format!("{rule} on {target}: {} ({})", c.state.name(), ago(now, c.at)),
                Episode::Flapping { transitions, since: from, until, state } => format!(
                    "{rule} on {target} — flapping: {transitions} transitions since {}, now {} ({})",
                    since(*from),
                    state.name(),
                    ago(now, *until)
                ),
            };
            lines.push((episode.at(), line));
        }
    }
    // A target's status changes, from the health checks of the day.
    let mut previous: BTreeMap<(String, String), String> = BTreeMap::new();
    // Per target (tier, name), its changes: (before, after).
    type StatusChange = Change<(String, String)>;
    let mut changes: BTreeMap<(String, String), Vec<StatusChange>> = BTreeMap::new();
    for line in health_history {
        for t in &line.targets {
            let key = (t.tier.clone(), t.name.clone());
            if let Some(before) = previous.insert(key.clone(), t.status.clone())
                && before != t.status
            {
                changes.entry(key).or_default().push(Change { at: line.timestamp, state: (before, t.status.clone()) });
            }
        }
    }
    for ((tier, name), changes) in changes {
        out.changes += changes.len();
        for episode in flapping::episodes(&changes) {
            let line = match &episode {
                Episode::Single(c) => format!("{tier}/{name}: {} → {} ({})", c.state.0, c.state.1, ago(now, c.at)),
                Episode::Flapping { transitions, since: from, until, state } => format!(
                    "{tier}/{name} — flapping: {transitions} status changes since {}, now {} ({})",
                    since(*from),
                    state.1,
                    ago(now, *until)
                ),
            };
            lines.push((episode.at(), line));
        }
    }
    lines.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    out.lines = lines.into_iter().take(ALERT_LINES).map(|(_, line)| line).collect();
    out
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

/// The page's style. The grids wrap whole cards and charts (a column is never wider than the
/// page: `min(300px, 100%)`), never the text inside them. A row of a card is a wrapping flex
/// line: the label never wraps (`nowrap`, an ellipsis past the card's width), the value sits at
/// its right or, when the two do not fit side by side, alone on the next line, breaking
/// anywhere before it would overflow.
const STYLE: &str = "*{box-sizing:border-box}\
body{font-family:system-ui,sans-serif;margin:24px;background:#1e2430;color:#e8ecf1;line-height:1.35}\
@media (max-width:600px){body{margin:12px}}\
h1{font-size:1.5em;overflow-wrap:anywhere}h2{font-size:1.15em;margin-top:28px}\
.status-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(300px,100%),1fr));gap:20px}\
.status-card{background:rgba(255,255,255,0.08);padding:16px 20px;border-radius:10px;min-width:0}\
.status-card h3{margin:0 0 10px 0;font-size:1.05em}\
.status-card p{margin:6px 0;overflow-wrap:anywhere}\
.status-healthy{border-left:5px solid #4CAF50}.status-warning{border-left:5px solid #FF9800}\
.status-critical{border-left:5px solid #F44336}\
.metrics{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;margin:6px 0;column-gap:12px;row-gap:0}\
.metrics .label{flex:0 1 auto;min-width:0;max-width:100%;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;color:#b8c2cf}\
.metrics .value{flex:1 0 auto;max-width:100%;text-align:right;overflow-wrap:anywhere;font-variant-numeric:tabular-nums}\
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(520px,100%),1fr));gap:16px}\
.chart{width:100%;height:auto;background:rgba(255,255,255,0.04);border-radius:8px}\
.chart-note{padding:10px 16px;min-height:96px}.chart-note .chart-title{font-size:13px}\
.note{color:#9aa5b5}.table-wrap{overflow-x:auto}\
.plot{fill:none;stroke:#3a4354}.grid{stroke:#3a4354;stroke-dasharray:3 3}\
.line{fill:none;stroke:#64b5f6;stroke-width:1.6}.line-dot{fill:#64b5f6}\
.axis{fill:#9aa5b5;font-size:11px}.chart-title{fill:#e8ecf1;font-size:13px}.empty{fill:#9aa5b5;color:#9aa5b5;font-size:13px}\
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
    let hit_period = d.hit_ratio().1;
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
            (format!("Cache Hit Ratio ({hit_period}):"), pct(hit), Some("hit-ratio")),
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
    let recent = recent_changes(&d.alert_log, &d.health_history, d.now);
    for firing in &recent.firing {
        level = match (level, firing.as_str()) {
            (_, "critical") | (Level::Critical, _) => Level::Critical,
            _ => Level::Warning,
        };
    }
    let alert_count = alerts.len() + recent.changes;
    alerts.extend(recent.lines);
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

    // Space freed per tier, last 7 days (real runs only), by every job that frees space
    // (`cleanup-light`, `memory-maintenance`, … as well as a manual `cleanup`).
    let freed = cache_core::maintenance::space_freed(d.runs.iter());
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
    out.push_str("<h2>Tasks (7 days)</h2><div class=\"table-wrap\"><table id=\"tasks\"><tr><th>Job</th><th>Runs</th><th>Success rate</th><th>Avg duration</th><th>Last run</th></tr>");
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
    out.push_str("</table></div>");

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
    let day = chart_range(&d.snapshot_times, end, Duration::days(1));
    let week = chart_range(&d.snapshot_times, end, Duration::days(7));
    for (name, label, range) in [("24h", "last 24 hours", day), ("7d", "last 7 days", week)] {
        let _ = write!(out, "<h2>Charts, {label} (to {})</h2>", end.format("%Y-%m-%d %H:%M UTC"));
        if name == "7d" && week.snapshots == day.snapshots && day.snapshots > 0 {
            // A history younger than a day: the week's charts would be the day's again.
            let _ = write!(
                out,
                "<p class=\"note\" id=\"charts-7d-note\">The history so far ({}, since {}) is all in the charts above.</p>",
                snapshots(week.snapshots),
                week.from.format("%Y-%m-%d %H:%M UTC")
            );
            continue;
        }
        out.push_str("<div class=\"charts\">");
        for (id, title, s, unit) in &series {
            out.push_str(&chart(&format!("chart-{id}-{name}"), &format!("{title}, {label}"), s, range, *unit));
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

    fn t(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn charts_break_at_gaps_and_say_when_empty() {
        let t0 = t("2026-03-01T00:00:00Z");
        let unit = |v: f64| format!("{v}");
        let series = [
            (t0, 1.0),
            (t0 + Duration::minutes(15), 2.0),
            (t0 + Duration::hours(3), 3.0),
            (t0 + Duration::minutes(195), 1.0),
        ];
        let times: Vec<_> = series.iter().map(|p| p.0).collect();
        let range = chart_range(&times, t0 + Duration::minutes(195), Duration::days(1));
        let svg = chart("c", "T", &series, range, &unit);
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        // Snapshots enough, but none with the figure (no lookups yet for a hit ratio).
        let empty = chart("c", "T", &[], range, &unit);
        assert!(empty.contains("no figures in these 4 snapshots"), "{empty}");
    }

    /// A snapshot as `collect` writes it, of one Redis target: `keys` keys, `used` bytes, the
    /// applications' lookups so far.
    fn snapshot(at: DateTime<Utc>, used: f64, hits: f64, misses: f64) -> Snapshot {
        serde_json::from_value(json!({
            "timestamp": at,
            "redis": [{
                "name": "main", "keys": 400, "hit_ratio": 0.5, "sampled": 400,
                "latency": {"avg_ms": 0.21, "min_ms": 0.12, "max_ms": 0.4, "samples": 10},
                "prefixes": [{"prefix": "app:", "keys": 400, "bytes": 40_000}],
                "info": {"used_memory": used, "maxmemory": 0.0, "keyspace_hits": hits, "keyspace_misses": misses,
                         "total_commands_processed": (hits + misses) * 3.0, "instantaneous_ops_per_sec": 12.0,
                         "evicted_keys": 0.0, "expired_keys": 0.0, "mem_fragmentation_ratio": 1.4,
                         "connected_clients": 2.0}
            }],
            "postgres": [], "memory": [], "dirs": [],
            "host": {"load1": 0.5, "memory_percent": 41.0, "cpus": 2}
        }))
        .unwrap()
    }

    /// The page's data from `snapshots`, as `Data::load` reads them, with nothing else.
    fn data(snapshots: Vec<Snapshot>, now: DateTime<Utc>) -> Data {
        Data {
            now,
            project: "shop".into(),
            history: snapshots.iter().filter_map(Point::of).collect(),
            snapshot_times: snapshots.iter().map(|s| s.timestamp).collect(),
            last: snapshots.last().cloned(),
            runs: Vec::new(),
            health: None,
            health_history: Vec::new(),
            alert_log: Vec::new(),
            windows: None,
            next_runs: Vec::new(),
            job_flags: Vec::new(),
            oneoffs: Vec::new(),
            automation: None,
            installed: (false, "not installed".into()),
            problems: Vec::new(),
        }
    }

    /// The element with `id` in `page`, up to `end`.
    fn element<'a>(page: &'a str, id: &str, end: &str) -> &'a str {
        let at = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id} in {page}"));
        &page[at..at + page[at..].find(end).unwrap()]
    }

    #[test]
    fn space_freed_counts_every_job_that_freed_space_and_no_dry_run() {
        let now = t("2026-03-01T12:00:00Z");
        let run = |job: &str, dry_run: bool, targets: Value| -> RunRecord {
            serde_json::from_value(serde_json::json!({
                "id": format!("{job}-{dry_run}"), "job": job, "command": "cache-cleanup", "host": "h", "pid": 1,
                "started_at": "2026-03-01T11:00:00Z", "ended_at": "2026-03-01T11:00:01Z", "duration_ms": 1000,
                "outcome": if dry_run { "dry_run" } else { "success" }, "exit_code": 0, "steps": [],
                "summary": { "dry_run": dry_run, "targets": targets },
            }))
            .unwrap()
        };
        let mut d = data(Vec::new(), now);
        d.runs = vec![
            run("cleanup-light", false, serde_json::json!([{ "tier": "redis", "bytes_freed": 3 << 20 }])),
            run("memory-maintenance", false, serde_json::json!([{ "tier": "logs", "bytes_freed": 10_066_329 }])),
            run("cleanup", false, serde_json::json!([{ "tier": "redis", "bytes_freed": 1 << 20 }])),
            run("cleanup-deep", true, serde_json::json!([{ "tier": "postgres", "bytes_freed": 5 << 20 }])),
        ];
        let page = render(&d);
        let card = &page[page.find("Space Freed (7 days)").unwrap()..];
        // The card ends where the next one begins.
        let card = &card[..card.find("status-card").unwrap_or(card.len())];
        assert!(card.contains("redis:") && card.contains(&cache_core::output::bytes(4 << 20)), "{card}");
        assert!(card.contains("logs:") && card.contains(&cache_core::output::bytes(10_066_329)), "{card}");
        assert!(!card.contains("postgres:"), "a dry run frees nothing: {card}");
    }

    #[test]
    fn a_first_hours_charts_span_its_snapshots_and_too_few_make_a_note() {
        // Collection every 15 minutes since 10:00: four snapshots by 10:45, memory growing.
        let t0 = t("2026-03-01T10:00:00Z");
        let history: Vec<Snapshot> = (0..4)
            .map(|i| {
                snapshot(t0 + Duration::minutes(15 * i), 1e6 * (1.0 + i as f64), 100.0 * i as f64, 25.0 * i as f64)
            })
            .collect();
        let now = t0 + Duration::minutes(46);
        let page = render(&data(history.clone(), now));
        for chart in ["hit-ratio", "memory", "latency", "operations"] {
            let svg = element(&page, &format!("chart-{chart}-24h"), "</svg>");
            // The frame is the 45 minutes there are, not 24 hours.
            assert!(svg.contains("data-from=\"2026-03-01T10:00:00Z\" data-to=\"2026-03-01T10:45:00Z\""), "{svg}");
            assert!(svg.contains(">10:00</text>") && svg.contains(">10:45</text>"), "{svg}");
            assert!(svg.contains("<polyline class=\"line\""), "{chart}: {svg}");
            assert!(!page.contains(&format!("id=\"chart-{chart}-7d\"")), "the week's charts would be the day's again");
        }
        // The memory line runs across the whole frame: first point at the left edge, last at the right.
        let memory = element(&page, "chart-memory-24h", "</svg>");
        let points = &memory[memory.find("points=\"").unwrap() + 8..];
        let points: Vec<&str> = points[..points.find('"').unwrap()].split(' ').collect();
        assert_eq!(
            (points[0].split(',').next(), points[3].split(',').next()),
            (Some("70.0"), Some("630.0")),
            "{memory}"
        );
        assert!(
            element(&page, "charts-7d-note", "</p>")
                .contains("The history so far (4 snapshots, since 2026-03-01 10:00 UTC)")
        );
        // The hit ratio is of the 45 minutes there are, and its label says so: 80% of lookups hit.
        assert!(page.contains("title=\"Cache Hit Ratio (45 min):\""), "{page}");
        assert!(page.contains("<span class=\"value\" id=\"hit-ratio\">80.0%</span>"), "{page}");

        // Two snapshots: a note, not a chart, naming how many there are; none: the same, with 0.
        for (n, history) in [(2, history[..2].to_vec()), (1, history[..1].to_vec()), (0, Vec::new())] {
            let page = render(&data(history, now));
            for range in ["24h", "7d"] {
                for chart in ["hit-ratio", "memory", "latency", "operations"] {
                    let note = element(&page, &format!("chart-{chart}-{range}"), "</p></div>");
                    let want = format!("not enough data yet ({n} snapshot{})", if n == 1 { "" } else { "s" });
                    assert!(note.contains(&want), "{n} snapshots: {note}");
                    assert!(!note.contains("<svg") && !note.contains("<polyline"), "{note}");
                }
                if n > 0 {
                    break;
                }
            }
            assert!(!page.contains("<polyline"), "{n} snapshots: {page}");
        }
    }

    #[test]
    fn a_weeks_charts_span_the_day_and_the_week_back_from_the_last_snapshot() {
        // Six days and a half of snapshots every 15 minutes, the last at 12:00.
        let end = t("2026-03-08T12:00:00Z");
        let times: Vec<_> = (0..(6 * 96 + 48)).rev().map(|i| end - Duration::minutes(15 * i)).collect();
        let day = chart_range(&times, end, Duration::days(1));
        assert_eq!((day.from, day.to, day.snapshots), (end - Duration::minutes(23 * 60 + 45), end, 96));
        let week = chart_range(&times, end, Duration::days(7));
        assert_eq!((week.from, week.snapshots), (times[0], times.len()));
        assert_eq!(week.from, t("2026-03-02T00:15:00Z"));
        // Nothing: the range is the instant of the end, with no snapshot.
        assert_eq!(chart_range(&[], end, Duration::days(1)), Range { from: end, to: end, snapshots: 0 });
    }

    /// A line of `alerts/log.jsonl` as cache-health's `log` channel writes it.
    fn logged(at: DateTime<Utc>, kind: &str, rule: &str, target: &str, severity: &str) -> LoggedNotice {
        serde_json::from_value(json!({
            "time": at, "id": format!("{}-{kind}", at.timestamp()), "kind": kind,
            "alert": {
                "id": "5f2c1a", "fingerprint": format!("{rule}|{target}"), "rule": rule, "target": target,
                "severity": severity, "status": if kind == "resolved" { "resolved" } else { "firing" },
                "bad_rounds": 1, "since": at, "started_at": at, "notifications": 1, "acked": false,
                "message": format!("{target} is unavailable"), "values": {"status": 2.0}
            }
        }))
        .unwrap()
    }

    /// A line of `health/history.jsonl` as `cache-health check` writes it.
    fn checked(at: DateTime<Utc>, statuses: &[(&str, &str)]) -> HealthLine {
        let targets: Vec<Value> = statuses
            .iter()
            .map(|(target, status)| {
                let (tier, name) = target.split_once('/').unwrap();
                json!({"tier": tier, "name": name, "status": status, "latency_ms": 0.3})
            })
            .collect();
        serde_json::from_value(json!({"timestamp": at, "overall_health": "healthy", "targets": targets})).unwrap()
    }

    #[test]
    fn the_alert_list_shows_a_flapping_alert_once_with_its_count_and_latest_state() {
        let t0 = t("2026-03-01T09:00:00Z");
        let m = |minutes: i64| t0 + Duration::minutes(minutes);
        let now = m(60);
        // Redis stopped and started three times, a minute apart: fired, resolved, three times,
        // each round repeating while it fired. Memory fired once an hour earlier.
        let mut log = vec![logged(t0 - Duration::minutes(50), "firing", "High Memory Usage", "redis/main", "warning")];
        let mut health = vec![checked(m(0), &[("redis/main", "healthy"), ("system/host", "healthy")])];
        for i in 0..3 {
            log.push(logged(m(10 + 4 * i), "firing", "Redis Down", "redis/main", "critical"));
            log.push(logged(m(11 + 4 * i), "repeat", "Redis Down", "redis/main", "critical"));
            log.push(logged(m(12 + 4 * i), "resolved", "Redis Down", "redis/main", "critical"));
            health.push(checked(m(10 + 4 * i), &[("redis/main", "failed"), ("system/host", "healthy")]));
            health.push(checked(m(12 + 4 * i), &[("redis/main", "healthy"), ("system/host", "healthy")]));
        }
        health.push(checked(m(30), &[("redis/main", "healthy"), ("system/host", "degraded")]));
        let recent = recent_changes(&log, &health, now);
        assert_eq!(
            recent.lines,
            [
                "system/host: healthy → degraded (30 min ago)",
                "Redis Down on redis/main — flapping: 6 transitions since 09:10 UTC, now resolved (40 min ago)",
                "redis/main — flapping: 6 status changes since 09:10 UTC, now healthy (40 min ago)",
                "High Memory Usage on redis/main: firing (1 hour ago)",
            ]
        );
        assert_eq!(recent.changes, 6 + 1 + 6 + 1);
        assert_eq!(recent.firing, ["warning"], "High Memory Usage never resolved; Redis Down did");

        // Down again: the spell goes on, and its latest state is firing.
        log.push(logged(m(58), "firing", "Redis Down", "redis/main", "critical"));
        let recent = recent_changes(&log, &health, now);
        assert_eq!(
            recent.lines[0],
            "Redis Down on redis/main — flapping: 7 transitions since 09:10 UTC, now firing (2 min ago)"
        );
        assert_eq!(recent.firing, ["warning", "critical"]);
        // Shown on the page with the card critical.
        let mut d = data(Vec::new(), now);
        d.alert_log = log;
        let page = render(&d);
        let card = &page[..page.find("<div id=\"recent-alerts\">").unwrap()];
        assert!(card.ends_with("<div class=\"status-card status-critical\"><h3>Recent Alerts</h3>"), "{page}");
        assert!(page.contains(
            "<p>Redis Down on redis/main — flapping: 7 transitions since 09:10 UTC, now firing (2 min ago)</p>"
        ));
    }
}
