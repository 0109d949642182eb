//! `[[http]]`: HTTP application endpoints.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::default_timeout;
use crate::redact::SafeUrl;

fn default_status() -> u16 {
    200
}

/// An HTTP application endpoint (seed 002's `/health`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTarget {
    /// Name, unique within the tier.
    pub name: String,
    /// URL of the health endpoint.
    pub url: SafeUrl,
    /// Optional JSON metrics endpoint (`hit_rate`, `total_operations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<SafeUrl>,
    /// Expected status code (default 200).
    #[serde(default = "default_status")]
    pub expect_status: u16,
    /// Budget of the probe (default 5 s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Overrides `health.latency.http` for this target.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub latency_warn: Option<Duration>,
}
