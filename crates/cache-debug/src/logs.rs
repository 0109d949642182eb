//! `logs`: error patterns over the last N days in the configured log directories, rotated and
//! gzipped files included (seed 004's LogManager), with the newest examples of each pattern.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, SystemTime};

use cache_core::app::Context;
use cache_core::exit;
use cache_core::output::Format;
use cache_core::tier::{Tier, selected};
use serde::Serialize;
use serde_json::json;

/// The patterns counted: name and the lower-case fragments that match it.
pub const PATTERNS: &[(&str, &[&str])] = &[
    ("error", &["error"]),
    ("warning", &["warn"]),
    ("critical", &["critical", "fatal", "panic"]),
    ("timeout", &["timeout", "timed out"]),
    ("connection refused", &["connection refused"]),
    ("out of memory", &["out of memory", "oom"]),
    ("slow", &["slow"]),
];

/// Examples kept per pattern.
const EXAMPLES: usize = 3;

/// Counts and newest examples per pattern.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    /// Lines matching, per pattern.
    pub counts: BTreeMap<&'static str, u64>,
    /// The newest matching lines, per pattern (newest last).
    pub examples: BTreeMap<&'static str, Vec<String>>,
    /// Files read.
    pub files: Vec<String>,
    /// Lines read.
    pub lines: u64,
}

impl Tally {
    /// Counts one line.
    pub fn line(&mut self, line: &str) {
        self.lines += 1;
        let lower = line.to_ascii_lowercase();
        for (name, needles) in PATTERNS {
            if needles.iter().any(|n| lower.contains(n)) {
                *self.counts.entry(name).or_default() += 1;
                let ex = self.examples.entry(name).or_default();
                let text: String = cache_core::redact::scrub(line.trim()).chars().take(200).collect();
                ex.push(text);
                if ex.len() > EXAMPLES {
                    ex.remove(0);
                }
            }
        }
    }

    /// Counts every line of a reader.
    pub fn read(&mut self, reader: impl Read) {
        for line in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
            self.line(&String::from_utf8_lossy(&line));
        }
    }
}

/// Runs `logs`.
pub fn run(ctx: &Context, days: u32) -> anyhow::Result<u8> {
    let since = SystemTime::now() - Duration::from_secs(u64::from(days) * 86_400);
    let mut out = Vec::new();
    for t in ctx.config.logs.iter().filter(|t| selected(&ctx.common.tiers, Tier::Logs, &t.name)) {
        let mut files: Vec<(SystemTime, std::path::PathBuf)> = walkdir::WalkDir::new(&t.path)
            .follow_links(false)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let modified = meta.modified().ok()?;
                (meta.is_file() && modified >= since).then(|| (modified, e.into_path()))
            })
            .collect();
        // Oldest first, so the examples kept are the newest.
        files.sort();
        let mut tally = Tally::default();
        let mut unreadable = Vec::new();
        for (_, path) in &files {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    // The error first, the path after it: one kind per error however many files.
                    unreadable.push(format!("{e}: `{}`", path.display()));
                    continue;
                }
            };
            if path.extension().is_some_and(|x| x == "gz") {
                tally.read(flate2::read::MultiGzDecoder::new(file));
            } else {
                tally.read(file);
            }
            tally.files.push(path.display().to_string());
        }
        let unreadable = cache_core::messages::condense(&unreadable);
        out.push(json!({ "target": format!("logs/{}", t.name), "path": t.path, "days": days, "tally": tally, "unreadable": unreadable }));
    }
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({ "logs": out }))?;
        return Ok(exit::SUCCESS);
    }
    let mut text = String::new();
    for l in &out {
        let t = &l["tally"];
        text.push_str(&format!(
            "{} ({}): {} lines in {} files of the last {days} days\n",
            l["target"].as_str().unwrap_or_default(),
            l["path"].as_str().unwrap_or_default(),
            t["lines"],
            t["files"].as_array().map_or(0, Vec::len)
        ));
        let mut table = printer.table();
        table.set_header(["Pattern", "Lines", "Newest examples"]);
        for (name, _) in PATTERNS {
            let n = t["counts"][name].as_u64().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let examples: Vec<&str> =
                t["examples"][name].as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
            table.add_row(vec![(*name).to_owned(), n.to_string(), examples.join("\n")]);
        }
        text.push_str(&format!("{table}\n"));
        for u in l["unreadable"].as_array().into_iter().flatten() {
            text.push_str(&format!("note: cannot read: {}\n", u.as_str().unwrap_or_default()));
        }
    }
    if out.is_empty() {
        text.push_str("no log directories configured ([[logs]])\n");
    }
    printer.always(text.trim_end())?;
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_count_and_keep_the_newest_examples() {
        let mut t = Tally::default();
        for i in 0..5 {
            t.line(&format!("2026-11-22 ERROR request {i} failed: connection refused"));
        }
        t.line("WARNING slow query took 2s");
        t.line("all good");
        assert_eq!(t.counts["error"], 5);
        assert_eq!(t.counts["connection refused"], 5);
        assert_eq!((t.counts["warning"], t.counts["slow"]), (1, 1));
        assert_eq!(t.examples["error"].len(), 3);
        assert!(t.examples["error"][2].contains("request 4"));
        assert_eq!(t.lines, 7);
    }
}
