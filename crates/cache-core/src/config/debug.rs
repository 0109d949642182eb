//! `[debug]`: what cache-debug looks for beyond its built-in rules: the log patterns an
//! installation counts (seed 004's "evaluation failed", "CUDA out of memory") and the span a
//! security score is compared over.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The patterns `cache-debug logs` always counts: name and the lower-case fragments that match
/// it. Configured patterns ([`LogPattern`]) come after them and may not reuse their names.
pub const BUILTIN_LOG_PATTERNS: &[(&str, &[&str])] = &[
    ("error", &["error"]),
    ("warning", &["warn"]),
    ("critical", &["critical", "fatal", "panic"]),
    ("timeout", &["timeout", "timed out"]),
    ("connection refused", &["connection refused"]),
    ("out of memory", &["out of memory", "oom"]),
    ("slow", &["slow"]),
];

/// A configured log pattern: a line matches when it holds any of the fragments, compared
/// without regard to case (as the built-in patterns are).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPattern {
    /// The pattern's name, as `cache-debug logs` counts it (unique, built-in names included).
    pub name: String,
    /// The fragments: a line holding any of them matches.
    #[serde(rename = "match")]
    pub fragments: Vec<String>,
}

/// cache-debug.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugSettings {
    /// Patterns `cache-debug logs` counts beside its built-in ones.
    pub log_patterns: Vec<LogPattern>,
    /// A security audit's score is compared with the best score of the audits within this span
    /// before it (cache-health's `security_score_drop`).
    #[serde(with = "humantime_serde")]
    pub security_baseline: Duration,
}

impl Default for DebugSettings {
    fn default() -> Self {
        Self { log_patterns: Vec::new(), security_baseline: Duration::from_secs(35 * 86_400) }
    }
}
