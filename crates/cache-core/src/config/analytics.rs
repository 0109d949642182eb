//! `[analytics]`: what cache-analytics needs before it forecasts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// cache-analytics.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsSettings {
    /// No forecast from less history than this (its first to its last snapshot): the 7-day
    /// forecast says "not enough history (N h of 48 h)" instead of a figure.
    #[serde(with = "humantime_serde")]
    pub forecast_min_history: Duration,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self { forecast_min_history: Duration::from_secs(48 * 3600) }
    }
}
