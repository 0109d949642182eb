//! `[debug]`: settings of cache-debug's diagnostics: the span a security score is compared over.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// cache-debug.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugSettings {
    /// A security audit's score is compared with the best score of the audits within this span
    /// before it (cache-health's `security_score_drop`).
    #[serde(with = "humantime_serde")]
    pub security_baseline: Duration,
}

impl Default for DebugSettings {
    fn default() -> Self {
        Self { security_baseline: Duration::from_secs(35 * 86_400) }
    }
}
