//! All output goes through [`Printer`]: text for people, one JSON document for programs.
//!
//! Rules, for cron's sake: results go to stdout, diagnostics to stderr; under `-q` a successful
//! run prints nothing (cron mails any output); colour only on a terminal and never with
//! `NO_COLOR`; every line passes through [`crate::redact::scrub`].

use std::io::{IsTerminal, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::env::EnvVars;

use crate::redact;
/// Progress bars, as [`Printer::progress`] makes them.
pub use indicatif::ProgressBar;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Tables and sentences for people.
    Text,
    /// One JSON document on stdout, with `schema_version`.
    Json,
    /// One monitoring-plugin line with performance data (cache-health only).
    Nagios,
}

/// Text results held back under `-q` until the run's outcome is known.
static HELD: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Whether text results are held back under `-q` (not for a daemon, nor past [`MAX_HELD`]).
static HOLDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// The most text held back under `-q` (16 MiB).
const MAX_HELD: usize = 16 << 20;

/// Prints what is held and holds nothing more: for a daemon (`cache-health monitor`), whose
/// results must reach its log as they come, not when it stops.
pub fn stop_holding() {
    HOLDING.store(false, std::sync::atomic::Ordering::SeqCst);
    flush_held(false);
}

/// Prints the results held back under `-q` when the run did not succeed (`succeeded` false),
/// else drops them.
pub fn flush_held(succeeded: bool) {
    let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    if !succeeded && !held.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(held.as_bytes()).and_then(|()| out.flush());
    }
}

/// Writes results and diagnostics.
#[derive(Clone, Debug)]
pub struct Printer {
    format: Format,
    quiet: u8,
    color: bool,
}

impl Printer {
    /// A printer for `format`, with `quiet` levels of `-q`.
    pub fn new(format: Format, quiet: u8) -> Self {
        let color = std::io::stdout().is_terminal() && EnvVars::var_os(EnvVars::NO_COLOR).is_none();
        Self { format, quiet, color }
    }

    /// The output format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether `-q` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet > 0
    }

    /// Whether colour may be used on stdout.
    pub fn color(&self) -> bool {
        self.color
    }

    /// Prints informational text on stdout, unless `-q`.
    pub fn info(&self, text: &str) -> std::io::Result<()> {
        if self.quiet > 0 { Ok(()) } else { self.always(text) }
    }

    /// Prints a result on stdout. Under `-q` text is held back, and printed when the run ends
    /// only if it did not succeed ([`flush_held`]): `-q` prints nothing on success, in every
    /// command, and everything a failing run had to say.
    pub fn always(&self, text: &str) -> std::io::Result<()> {
        let mut line = redact::scrub(text).into_owned();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        if self.quiet > 0 && self.format == Format::Text && HOLDING.load(std::sync::atomic::Ordering::SeqCst) {
            let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            held.push_str(&line);
            if held.len() <= MAX_HELD {
                return Ok(());
            }
            // Memory stays bounded: past the cap, what was held and the rest are printed.
            drop(held);
            stop_holding();
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())?;
        out.flush()
    }

    /// Prints `doc` as one pretty JSON document with `schema_version` first.
    pub fn json<T: Serialize>(&self, doc: &T) -> anyhow::Result<()> {
        let mut value = serde_json::to_value(doc)?;
        if let Some(object) = value.as_object_mut() {
            let mut versioned = serde_json::Map::new();
            versioned.insert("schema_version".into(), crate::state::SCHEMA_VERSION.into());
            versioned.extend(std::mem::take(object));
            *object = versioned;
        }
        self.always(&serde_json::to_string_pretty(&value)?)?;
        Ok(())
    }

    /// Prints a warning on stderr, unless `-qq`: scrubbed, and each line cut at
    /// [`crate::messages::MAX_LINE`] characters.
    pub fn warn(&self, text: &str) {
        if self.quiet < 2 {
            let _ = writeln!(std::io::stderr().lock(), "{}", warning_line(text));
        }
    }

    /// A table in the house style, coloured only where colour is allowed.
    pub fn table(&self) -> Table {
        let mut table = Table::new();
        table.load_style(presets::UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
        if !self.color {
            table.force_no_tty();
        }
        table
    }

    /// A progress bar on stderr; hidden unless stderr is a terminal and the output is text
    /// without `-q`.
    pub fn progress(&self, len: u64, message: &str) -> indicatif::ProgressBar {
        let visible = std::io::stderr().is_terminal() && self.quiet == 0 && self.format == Format::Text;
        let bar = if visible { indicatif::ProgressBar::new(len) } else { indicatif::ProgressBar::hidden() };
        if let Ok(style) = indicatif::ProgressStyle::with_template(PROGRESS_TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_owned());
        bar
    }
}

/// Escapes text for HTML element content and attribute values (the dashboards' pages).
pub fn html_escape(text: &str) -> String {
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

/// Formats a byte count for people (`1.5 GiB`).
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

/// Formats milliseconds for people (`12.3 ms`, `1.20 s`).
pub fn millis(ms: f64) -> String {
    if ms >= 1000.0 { format!("{:.2} s", ms / 1000.0) } else { format!("{ms:.1} ms") }
}

/// The line [`Printer::warn`] prints (scrubbing first: a secret cut in half would no longer be
/// recognised).
fn warning_line(text: &str) -> String {
    format!("warning: {}", crate::messages::clip_lines(&redact::scrub(text), crate::messages::MAX_LINE))
}

/// The progress bar's look.
const PROGRESS_TEMPLATE: &str = "{msg:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}";

#[cfg(test)]
mod tests {
    #[test]
    fn the_progress_template_parses() {
        indicatif::ProgressStyle::with_template(super::PROGRESS_TEMPLATE).unwrap();
    }

    #[test]
    fn warnings_are_clipped_per_line_and_scrubbed() {
        let secret = "warn-pw-77e1a0";
        crate::redact::register(secret);
        let text = format!("recording the run: {}{secret}\nsecond line", "y".repeat(crate::messages::MAX_LINE));
        let line = super::warning_line(&text);
        let lines: Vec<&str> = line.lines().collect();
        assert_eq!(lines.len(), 2, "{line}");
        assert!(lines[0].starts_with("warning: recording the run: ") && lines[0].ends_with("characters in all)"));
        assert!(lines[0].chars().count() < crate::messages::MAX_LINE + 50, "{}", lines[0]);
        assert!(!line.contains("warn-pw"), "{line}");
        assert_eq!(lines[1], "second line");
        assert_eq!(super::warning_line("short"), "warning: short");
    }
}
