//! Maintenance windows added and removed: one function for `cache-scheduler windows add|remove`
//! and the maintenance API's `POST`/`DELETE /api/system/maintenance/windows`, so that both check
//! the same things (a five-field start, a time zone, a duration, known task types and alert
//! rules) and both refuse a change that leaves a heavy job admitted by no window, unless forced.

use std::time::Duration;

use cache_core::app::Context;
use cache_core::error::UsageError;
use cache_core::gate::{WINDOWS_FILE, Window};
use cache_core::schedule;

/// A window to add (or replace, by name).
#[derive(Clone, Debug)]
pub struct Spec {
    /// Its name.
    pub name: String,
    /// When it opens (five-field cron).
    pub start: String,
    /// How long it stays open.
    pub duration: Duration,
    /// Time zone of `start` (default: `scheduler.timezone`).
    pub timezone: Option<String>,
    /// Task types allowed (empty: all).
    pub tasks: Vec<String>,
    /// Heavy jobs at once, at most.
    pub max_heavy: u32,
    /// Alert rules it silences.
    pub silence: Vec<String>,
}

/// A change to the windows.
#[derive(Clone, Debug)]
pub enum Change {
    /// Add or replace a window.
    Add(Spec),
    /// Remove the window of this name.
    Remove(String),
}

/// What a change did.
#[derive(Clone, Debug)]
pub struct Applied {
    /// In a sentence.
    pub message: String,
    /// The window saved, for an addition.
    pub window: Option<Window>,
    /// Heavy jobs left admitted by no window: forced through (recorded), or already so before.
    pub warnings: Vec<String>,
}

/// A change refused because it would leave heavy jobs admitted by no window; `force` makes it.
#[derive(Clone, Debug)]
pub struct Refused(pub String);

/// Whether a window of this name exists.
pub fn exists(ctx: &Context, name: &str) -> anyhow::Result<bool> {
    Ok(cache_core::gate::windows(&ctx.state)?.windows.iter().any(|w| w.name == name))
}

/// Checks and makes `change`, by `by` (for the record of what `force` let through). Bad input
/// is a [`UsageError`] naming the value; a change leaving a heavy job admitted by no window is
/// [`Refused`] without `force`.
pub fn apply(ctx: &Context, change: Change, force: bool, by: &str) -> anyhow::Result<Result<Applied, Refused>> {
    let settings = &ctx.config.scheduler;
    let mut doc = cache_core::gate::windows(&ctx.state)?;
    let before = doc.clone();
    let (message, window) = match change {
        Change::Add(Spec { name, start, duration, timezone, tasks, max_heavy, silence }) => {
            if name.is_empty()
                || name.len() > 64
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(UsageError(format!(
                    "window name `{name}`: letters, digits, `-`, `_` and `.`, at most 64 characters"
                ))
                .into());
            }
            schedule::parse(&start)?;
            let timezone = timezone.unwrap_or_else(|| settings.timezone.clone());
            schedule::timezone(&timezone)?;
            if duration.is_zero() {
                return Err(UsageError("--duration must be more than zero".into()).into());
            }
            if duration > Duration::from_secs(7 * 86_400) {
                return Err(UsageError("--duration must be at most 7 days".into()).into());
            }
            let known = schedule::task_types(settings);
            if let Some(bad) = tasks.iter().find(|t| !known.contains(t)) {
                return Err(UsageError(format!(
                    "--task `{bad}` is no task type of the schedule; the task types are: {}",
                    known.join(", ")
                ))
                .into());
            }
            let rules = cache_core::alerting::rule_names(&ctx.config.alerts);
            if let Some(bad) = silence.iter().find(|r| !rules.contains(r)) {
                return Err(UsageError(format!(
                    "--silence `{bad}` names no alert rule; the rules are: {}",
                    if rules.is_empty() { "none".to_owned() } else { rules.join(", ") }
                ))
                .into());
            }
            doc.windows.retain(|w| w.name != name);
            let message = format!("window `{name}` saved; heavy jobs now run only inside the windows");
            let window = Window { name, start, duration, timezone, tasks, max_heavy, silence };
            doc.windows.push(window.clone());
            (message, Some(window))
        }
        Change::Remove(name) => {
            let count = doc.windows.len();
            doc.windows.retain(|w| w.name != name);
            if doc.windows.len() == count {
                return Err(UsageError(format!("no window `{name}` (cache-scheduler windows list)")).into());
            }
            (format!("window `{name}` removed"), None)
        }
    };
    // Refused (or forced through) when the change leaves a heavy job that was admitted before
    // admitted by no window.
    let now = cache_core::clock::now()?;
    let jobs = schedule::all(settings, &ctx.state)?;
    let was = cache_core::gate::never_admitted_jobs(&jobs, &before, &settings.timezone, now)?;
    let will = cache_core::gate::never_admitted_jobs(&jobs, &doc, &settings.timezone, now)?;
    let newly: Vec<String> = will.iter().filter(|j| !was.contains(j)).cloned().collect();
    let mut warnings = match crate::never_admitted_gate(ctx, &newly, force, by) {
        Ok(warnings) => warnings,
        Err(e) => match e.downcast::<UsageError>() {
            Ok(UsageError(refusal)) => return Ok(Err(Refused(refusal))),
            Err(e) => return Err(e),
        },
    };
    let already: Vec<String> = was.iter().filter(|j| will.contains(j)).cloned().collect();
    for message in crate::never_admitted_messages(&already) {
        let message = format!("{message} (already before this change)");
        ctx.printer.warn(&message);
        warnings.push(message);
    }
    ctx.state.write_json(WINDOWS_FILE, &doc)?;
    Ok(Ok(Applied { message, window, warnings }))
}
