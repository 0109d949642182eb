//! `[[memory]]`: Mem0-style memory-API targets.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::from_fields;
use crate::redact::{SafeUrl, Secret};

/// Base URL of the hosted Mem0 platform.
pub const MEM0_PLATFORM_URL: &str = "https://api.mem0.ai";

fn mem0_platform_url() -> SafeUrl {
    SafeUrl::parse(MEM0_PLATFORM_URL).unwrap_or_else(|_| unreachable!("constant URL parses"))
}
fn memory_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Which memory-API dialect a target speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryDialect {
    /// Hosted platform: `/v1/...` or `/v2/...`, `Authorization: Token KEY`.
    #[default]
    Platform,
    /// Self-hosted REST server: `/memories`, `/search`, `X-API-Key: KEY`.
    SelfHosted,
}

/// Platform API version for listing and searching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryApiVersion {
    /// `GET /v1/memories/`, `POST /v1/memories/search/`.
    #[default]
    V1,
    /// `POST /v2/memories/`, `POST /v2/memories/search/` with `filters`.
    V2,
}

/// A Mem0-style memory API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryTarget {
    /// Name, unique within the tier.
    pub name: String,
    /// Base URL (default the hosted platform).
    #[serde(default = "mem0_platform_url")]
    pub url: SafeUrl,
    /// API key; redacted everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// API dialect.
    #[serde(default)]
    pub dialect: MemoryDialect,
    /// Platform API version.
    #[serde(default)]
    pub api_version: MemoryApiVersion,
    /// User id whose memories are managed (default: `project_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Budget of one request and of a health probe (default 10 s).
    #[serde(default = "memory_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Overrides `health.latency.memory` for this target.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub latency_warn: Option<Duration>,
}

impl MemoryTarget {
    /// A target with just a name, every other field at its default (the hosted platform, no
    /// API key), as if the file held only `name`.
    pub fn new(name: impl Into<String>) -> Self {
        from_fields(&[("name", &name.into())])
    }
}
