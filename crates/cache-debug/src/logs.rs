//! `logs`: error patterns over the last N days in the configured log directories, rotated and
//! gzipped files included (seed 004's LogManager), with the newest examples of each pattern.
//! The patterns are the built-in ones (`cache_core::config::BUILTIN_LOG_PATTERNS`) and those
//! of `debug.log_patterns`; the examples are scrubbed of credential-looking values
//! (`cache_core::redact::scrub_credentials`), whatever the configuration knows of them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, SystemTime};

use cache_core::app::Context;
use cache_core::config::{BUILTIN_LOG_PATTERNS, LogPattern};
use cache_core::exit;
use cache_core::output::Format;
use cache_core::tier::{Tier, selected};
use serde::Serialize;
use serde_json::json;

/// Examples kept per pattern.
const EXAMPLES: usize = 3;

/// One pattern counted: its name and the lower-case fragments that match it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pattern {
    /// Its name.
    pub name: String,
    /// Lower-case fragments: a line holding any of them matches.
    #[serde(rename = "match")]
    pub fragments: Vec<String>,
    /// `builtin` or `configured`.
    pub source: &'static str,
}

/// The patterns counted: the built-in ones, then the configured ones in their order.
pub fn patterns(configured: &[LogPattern]) -> Vec<Pattern> {
    let builtin = BUILTIN_LOG_PATTERNS.iter().map(|(name, fragments)| Pattern {
        name: (*name).to_owned(),
        fragments: fragments.iter().map(|f| (*f).to_owned()).collect(),
        source: "builtin",
    });
    let configured = configured.iter().map(|p| Pattern {
        name: p.name.clone(),
        fragments: p.fragments.iter().map(|f| f.to_lowercase()).collect(),
        source: "configured",
    });
    builtin.chain(configured).collect()
}

/// Counts and newest examples per pattern.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    /// The patterns counted.
    #[serde(skip)]
    patterns: Vec<Pattern>,
    /// Lines matching, per pattern.
    pub counts: BTreeMap<String, u64>,
    /// The newest matching lines, per pattern (newest last), credentials scrubbed.
    pub examples: BTreeMap<String, Vec<String>>,
    /// Files read.
    pub files: Vec<String>,
    /// Lines read.
    pub lines: u64,
}

impl Tally {
    /// A tally of `patterns`.
    pub fn new(patterns: Vec<Pattern>) -> Self {
        Self { patterns, ..Self::default() }
    }

    /// Counts one line.
    pub fn line(&mut self, line: &str) {
        self.lines += 1;
        let lower = line.to_lowercase();
        for p in &self.patterns {
            if p.fragments.iter().any(|f| lower.contains(f.as_str())) {
                *self.counts.entry(p.name.clone()).or_default() += 1;
                let ex = self.examples.entry(p.name.clone()).or_default();
                // Scrubbed whole, then cut: a credential cut in half would no longer be seen.
                let text: String = cache_core::redact::scrub_credentials(line.trim()).chars().take(200).collect();
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
    let patterns = patterns(&ctx.config.debug.log_patterns);
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
        let mut tally = Tally::new(patterns.clone());
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
        printer.json(&json!({ "patterns": patterns, "logs": out }))?;
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
        for p in &patterns {
            let name = p.name.as_str();
            let n = t["counts"][name].as_u64().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let examples: Vec<&str> =
                t["examples"][name].as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
            table.add_row(vec![name.to_owned(), n.to_string(), examples.join("\n")]);
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
        let mut t = Tally::new(patterns(&[]));
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

    #[test]
    fn configured_patterns_count_beside_the_built_in_ones_ignoring_case() {
        let configured = [LogPattern { name: "cuda oom".into(), fragments: vec!["CUDA out of memory".into()] }];
        let mut t = Tally::new(patterns(&configured));
        t.line("ERROR torch: cuda OUT OF MEMORY on device 0 (token=abc123 in env)");
        t.line("INFO all good");
        assert_eq!((t.counts["cuda oom"], t.counts["out of memory"], t.counts["error"]), (1, 1, 1));
        assert_eq!(t.examples["cuda oom"], ["ERROR torch: cuda OUT OF MEMORY on device 0 (token=*** in env)"]);
    }
}
