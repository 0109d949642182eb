//! The maintenance dashboard (`GET /maintenance`): one self-contained page (no script, styles
//! inline, nothing from the network) with seed 003's maintenance views: the windows and what
//! each admits, the runs in progress with their progress, the runs coming and the jobs whose
//! runs will be skipped (never listed as coming), the executions with outcomes and durations,
//! the space each tier really freed, and the figures of 7 and 30 days. It reloads itself every
//! 30 seconds and reads well from 390 pixels wide.

use std::fmt::Write as _;

use cache_core::maintenance::{AutomationView, Metrics, Running, Task, WindowView};
use cache_core::output::html_escape as esc;
use cache_core::output::{bytes, millis};
use cache_core::runs::{Outcome, RunRecord};
use chrono::{DateTime, Utc};

/// Everything the page shows.
pub(super) struct Data {
    pub(super) project: String,
    pub(super) now: DateTime<Utc>,
    pub(super) automation: AutomationView,
    /// Whether the schedule is installed, and in words.
    pub(super) installed: (bool, String),
    pub(super) tasks: Vec<Task>,
    pub(super) windows: Vec<WindowView>,
    pub(super) running: Vec<Running>,
    pub(super) recent: Vec<RunRecord>,
    pub(super) metrics: Metrics,
    pub(super) problems: Vec<String>,
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{:.0}%", v * 100.0))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:16px;background:#1e2430;color:#e8ecf1}\
h1{font-size:1.4em;margin:0 0 12px}h2{font-size:1.1em;margin:26px 0 8px}\
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px}\
.card{background:rgba(255,255,255,0.08);padding:12px 16px;border-radius:8px;border-left:5px solid #4CAF50}\
.card.warn{border-left-color:#FF9800}.card.bad{border-left-color:#F44336}\
.card b{display:block;font-size:1.3em;margin-top:4px}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:0.92em}\
td,th{padding:5px 8px;border-bottom:1px solid #3a4354;text-align:left;vertical-align:top}\
th{color:#9aa5b5;font-weight:600;white-space:nowrap}\
.outcome-success{color:#81c784}.outcome-failed,.outcome-interrupted{color:#e57373}\
.outcome-partial,.outcome-skipped,.outcome-locked{color:#ffb74d}.outcome-dry_run{color:#9aa5b5}\
.skip{color:#ffb74d}.muted{color:#9aa5b5}\
.bar{background:#3a4354;border-radius:4px;height:10px;min-width:120px}\
.bar span{display:block;height:10px;border-radius:4px;background:#64b5f6}\
footer{margin-top:26px;color:#9aa5b5;font-size:0.85em}";

fn outcome(o: Outcome) -> String {
    format!("<span class=\"outcome-{}\">{}</span>", o.name(), o.name().replace('_', " "))
}

fn freed_of(r: &RunRecord) -> u64 {
    cache_core::maintenance::space_freed(std::iter::once(r)).values().sum()
}

/// Renders the page.
pub(super) fn render(d: &Data) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} maintenance</title>\
         <style>{STYLE}</style></head><body><h1>{} — maintenance</h1>",
        esc(&d.project),
        esc(&d.project)
    );
    if !d.problems.is_empty() {
        out.push_str("<div class=\"card warn\" id=\"problems\">");
        for p in &d.problems {
            let _ = write!(out, "<p>{}</p>", esc(p));
        }
        out.push_str("</div>");
    }

    // Headline cards.
    let overall = cache_core::maintenance::overall(&d.tasks, &d.running);
    let automation = if d.automation.running {
        "on".to_owned()
    } else {
        format!("stopped{}", d.automation.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())
    };
    let week = &d.metrics.totals.last_7_days;
    let freed_week: u64 = d.metrics.space_freed.last_7_days.values().sum();
    let flagged = d.tasks.iter().filter(|t| !t.flags.is_empty()).count();
    let overall_text =
        if overall == "issues" { format!("issues ({flagged} tasks flagged)") } else { overall.to_owned() };
    let cards = [
        ("overall", "Status", overall_text, if overall == "issues" { "bad" } else { "" }),
        ("automation", "Automation", automation, if d.automation.running { "" } else { "warn" }),
        ("schedule", "Schedule", d.installed.1.clone(), if d.installed.0 { "" } else { "warn" }),
        ("running-count", "Running now", d.running.len().to_string(), ""),
        ("success-rate", "Success rate (7 days)", pct(week.success_rate), ""),
        ("freed-total", "Space freed (7 days)", bytes(freed_week), ""),
    ];
    out.push_str("<div class=\"cards\">");
    for (id, label, value, class) in cards {
        let _ = write!(out, "<div class=\"card {class}\" id=\"card-{id}\">{}<b>{}</b></div>", esc(label), esc(&value));
    }
    out.push_str("</div>");

    // Windows.
    out.push_str("<h2>Maintenance windows</h2>");
    if d.windows.is_empty() {
        out.push_str(
            "<p id=\"windows\" class=\"muted\">No maintenance windows: heavy jobs run at their scheduled times.</p>",
        );
    } else {
        out.push_str(
            "<div class=\"scroll\"><table id=\"windows\"><tr><th>Window</th><th>Opens</th><th>For</th><th>Now</th>\
             <th>Allows</th><th>Admits</th><th>Runs in it</th></tr>",
        );
        for w in &d.windows {
            let now = match (w.open, w.opens_at, w.closes_at) {
                (true, _, Some(close)) => format!("open until {}", time(close)),
                (false, Some(open), _) => format!("closed; opens {}", time(open)),
                _ => "closed".to_owned(),
            };
            let allows =
                if w.window.tasks.is_empty() { "every task type".to_owned() } else { w.window.tasks.join(", ") };
            let admits = if w.admits.is_empty() { "no heavy job".to_owned() } else { w.admits.join(", ") };
            let runs: Vec<String> = w.runs.iter().map(|r| format!("{} {}", r.job, r.at.format("%H:%M"))).collect();
            let _ = write!(
                out,
                "<tr class=\"window\" data-window=\"{n}\"><td>{n}</td><td><code>{}</code> {}</td><td>{}</td><td>{}</td>\
                 <td>{} (at most {} heavy at once)</td><td>{}</td><td>{}</td></tr>",
                esc(&w.window.start),
                esc(&w.window.timezone),
                humantime::format_duration(w.window.duration),
                esc(&now),
                esc(&allows),
                w.window.max_heavy,
                esc(&admits),
                esc(&if runs.is_empty() { "none".to_owned() } else { runs.join(", ") }),
                n = esc(&w.window.name),
            );
        }
        out.push_str("</table></div>");
    }

    // Running.
    out.push_str("<h2>Running now</h2>");
    if d.running.is_empty() {
        out.push_str("<p id=\"running\" class=\"muted\">Nothing is running.</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table id=\"running\"><tr><th>Task</th><th>Started</th><th>Running for</th>\
             <th>Progress</th><th>By</th><th>Process</th></tr>",
        );
        for r in &d.running {
            let progress = match (r.progress, r.typical_ms) {
                (Some(p), Some(t)) => format!(
                    "<div class=\"bar\" title=\"{:.0}%\"><span style=\"width:{:.0}%\"></span></div>{:.0}% of a typical {}",
                    p * 100.0,
                    p * 100.0,
                    p * 100.0,
                    esc(&millis(t as f64))
                ),
                _ => "<span class=\"muted\">no successful run yet to compare with</span>".to_owned(),
            };
            let _ = write!(
                out,
                "<tr class=\"running\" data-execution=\"{}\" data-task=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{progress}</td>\
                 <td>{}</td><td>pid {} on {}</td></tr>",
                esc(&r.id),
                esc(&r.job),
                esc(&r.job),
                time(r.started_at),
                esc(&millis(r.elapsed_ms as f64)),
                esc(&format!("{:?}", r.trigger).to_lowercase()),
                r.pid,
                esc(&r.host),
            );
        }
        out.push_str("</table></div>");
    }

    // Coming and skipped: a job whose runs will be skipped is said so, never listed as coming.
    let mut coming: Vec<&Task> = d.tasks.iter().filter(|t| t.next_run.is_some()).collect();
    coming.sort_by_key(|t| t.next_run);
    out.push_str(
        "<h2>Coming runs</h2><div class=\"scroll\"><table id=\"upcoming\"><tr><th>Task</th><th>Next run</th><th>Type</th>\
         <th>Window</th><th>Last run</th><th>Flags</th></tr>",
    );
    for t in &coming {
        let last = t.last_run.as_ref().map_or("never".to_owned(), |l| {
            format!("{} {} ({})", time(l.started_at), l.outcome.name(), millis(l.duration_ms as f64))
        });
        let _ = write!(
            out,
            "<tr class=\"upcoming\" data-task=\"{n}\"><td>{n}{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td>\
             <td class=\"skip\">{}</td></tr>",
            if t.running { " <span class=\"muted\">(running)</span>" } else { "" },
            t.next_run.map(time).unwrap_or_default(),
            esc(&t.task_type),
            if t.heavy { ", heavy" } else { "" },
            esc(t.window.as_deref().unwrap_or("–")),
            esc(&last),
            esc(&t.flags.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
            n = esc(&t.name),
        );
    }
    out.push_str("</table></div>");
    let skipped: Vec<&Task> = d.tasks.iter().filter(|t| t.skipped.is_some()).collect();
    out.push_str("<h2>Skipped runs</h2>");
    if skipped.is_empty() {
        out.push_str("<p id=\"skipped\" class=\"muted\">No job's runs will be skipped.</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table id=\"skipped\"><tr><th>Task</th><th>Will be skipped because</th>\
             <th>Next run that runs</th></tr>",
        );
        for t in skipped {
            let _ = write!(
                out,
                "<tr class=\"skipped\" data-task=\"{n}\"><td>{n}</td><td class=\"skip\">skipped: {}</td><td>{}</td></tr>",
                esc(t.skipped.as_deref().unwrap_or_default()),
                t.next_run.map_or("none".to_owned(), time),
                n = esc(&t.name),
            );
        }
        out.push_str("</table></div>");
    }

    // Executions.
    out.push_str(
        "<h2>Executions</h2><div class=\"scroll\"><table id=\"executions\"><tr><th>Started</th><th>Task</th>\
         <th>Outcome</th><th>Took</th><th>By</th><th>Window</th><th>Freed</th><th>Note</th></tr>",
    );
    for r in &d.recent {
        let freed = freed_of(r);
        let _ = write!(
            out,
            "<tr class=\"execution\" data-execution=\"{}\" data-outcome=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.id),
            r.outcome.name(),
            time(r.started_at),
            esc(&r.job),
            outcome(r.outcome),
            esc(&millis(r.duration_ms as f64)),
            esc(&format!("{:?}", r.trigger).to_lowercase()),
            esc(r.window.as_deref().unwrap_or("–")),
            if freed > 0 { bytes(freed) } else { "–".to_owned() },
            esc(&cache_core::messages::clip(r.error.as_deref().unwrap_or_default(), 160)),
        );
    }
    if d.recent.is_empty() {
        out.push_str("<tr><td colspan=\"8\" class=\"muted\">no runs recorded yet</td></tr>");
    }
    out.push_str("</table></div>");

    // Space freed, by what each tier really freed.
    out.push_str(
        "<h2>Space freed</h2><div class=\"scroll\"><table id=\"space-freed\"><tr><th>Tier</th><th>7 days</th>\
         <th>30 days</th></tr>",
    );
    let freed = &d.metrics.space_freed;
    for (tier, month) in &freed.last_30_days {
        let week = freed.last_7_days.get(tier).copied().unwrap_or(0);
        let _ = write!(
            out,
            "<tr class=\"freed\" data-tier=\"{t}\"><td>{t}</td><td>{}</td><td>{}</td></tr>",
            bytes(week),
            bytes(*month),
            t = esc(tier)
        );
    }
    if freed.last_30_days.is_empty() {
        out.push_str("<tr><td colspan=\"3\" class=\"muted\">nothing freed in 30 days</td></tr>");
    }
    out.push_str("</table></div>");

    // Figures per job and per window.
    out.push_str(
        "<h2>Tasks, 7 and 30 days</h2><div class=\"scroll\"><table id=\"metrics\"><tr><th>Task</th><th>Runs 7 d</th>\
         <th>Success 7 d</th><th>Runs 30 d</th><th>Success 30 d</th><th>Mean duration</th><th>Skipped</th>\
         <th>Interrupted</th></tr>",
    );
    for j in d.metrics.jobs.iter().filter(|j| j.last_30_days.runs + j.last_30_days.skipped > 0) {
        let (w, m) = (&j.last_7_days, &j.last_30_days);
        let _ = write!(
            out,
            "<tr data-task=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.runs,
            pct(w.success_rate),
            m.runs,
            pct(m.success_rate),
            m.mean_duration_ms.map_or("–".to_owned(), |ms| millis(ms as f64)),
            m.skipped,
            m.interrupted,
            n = esc(&j.job),
        );
    }
    out.push_str("</table></div>");
    if !d.metrics.windows.is_empty() {
        out.push_str(
            "<h2>Window use, 30 days</h2><div class=\"scroll\"><table id=\"window-use\"><tr><th>Window</th>\
             <th>Openings</th><th>Runs admitted</th><th>Busy</th><th>Use</th></tr>",
        );
        for w in &d.metrics.windows {
            let _ = write!(
                out,
                "<tr data-window=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                w.openings,
                w.admitted_runs,
                esc(&millis(w.busy_ms as f64)),
                w.utilisation.map_or("–".to_owned(), |u| format!("{:.2}%", u * 100.0)),
                n = esc(&w.window),
            );
        }
        out.push_str("</table></div>");
    }
    let _ = writeln!(
        out,
        "<footer>Generated {} by cache-scheduler serve; reloads every 30 s. The same figures: \
         /api/system/maintenance/status, /tasks, /executions, /windows, /metrics.</footer></body></html>",
        time(d.now)
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(super::esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
    }
}
