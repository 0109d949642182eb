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
fn max_memories() -> u64 {
    DEFAULT_MAX_MEMORIES
}
fn list_timeout() -> Duration {
    Duration::from_secs(300)
}
fn list_cap() -> usize {
    SELF_HOSTED_LIST_CAP
}

/// Default of `max_memories`: the most memories one listing reads, page after page, before it
/// stops and says the list is incomplete.
pub(super) const DEFAULT_MAX_MEMORIES: u64 = 100_000;

/// Default of `list_cap`: the most memories the official self-hosted server answers a
/// `GET /memories` with (its `Memory.get_all` limit; 20 in mem0 2.x), with no pages beyond.
pub(super) const SELF_HOSTED_LIST_CAP: usize = 100;

/// Which memory-API dialect a target speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryDialect {
    /// Hosted platform: `/v1/...`, `/v2/...` or `/v3/...`, `Authorization: Token KEY`.
    #[default]
    Platform,
    /// Self-hosted REST server: `/memories`, `/search`, `X-API-Key: KEY`.
    SelfHosted,
}

/// Platform API version for listing and searching (deleting is `/v1/` in every version, as in
/// the SDKs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryApiVersion {
    /// `GET /v1/memories/`, `POST /v1/memories/search/` with `user_id`.
    #[default]
    V1,
    /// `POST /v2/memories/`, `POST /v2/memories/search/` with `filters: {"AND": [...]}`.
    V2,
    /// `POST /v3/memories/`, `POST /v3/memories/search/` with `filters: {"user_id": ...}`:
    /// what mem0ai 2.x speaks, and the default for the hosted platform's URL.
    V3,
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
    /// Platform API version; unset: [`MemoryTarget::api_version`] decides from the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<MemoryApiVersion>,
    /// Platform organization id, sent with `project_id` as the SDKs up to 1.0 do (query of a
    /// GET or DELETE, body of a POST); `"auto"`: the ones `GET /v1/ping/` names for the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// Platform project id; see `org_id` (both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// User id whose memories are managed (default: `project_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Budget of one request and of a health probe (default 10 s).
    #[serde(default = "memory_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Most memories one listing reads before it stops, saying the list is incomplete.
    #[serde(default = "max_memories")]
    pub max_memories: u64,
    /// Budget of one whole listing, every page (default 5 min).
    #[serde(default = "list_timeout", with = "humantime_serde")]
    pub list_timeout: Duration,
    /// Self-hosted: the most memories the server answers `GET /memories` with; an answer that
    /// long may be truncated (default 100; 20 for a mem0 2.x server).
    #[serde(default = "list_cap")]
    pub list_cap: usize,
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

    /// The platform API version spoken: `api_version`, else `v3` on the hosted platform's URL
    /// (`api.mem0.ai`, what its current SDK speaks) and `v1` elsewhere (a proxy or an older
    /// deployment, as before `v3` existed).
    pub fn api_version(&self) -> MemoryApiVersion {
        self.api_version.unwrap_or_else(|| {
            if self.url.url().host_str().is_some_and(|h| h.eq_ignore_ascii_case("api.mem0.ai")) {
                MemoryApiVersion::V3
            } else {
                MemoryApiVersion::V1
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosted_platform_defaults_to_v3_and_others_to_v1() {
        assert_eq!(MemoryTarget::new("m").api_version(), MemoryApiVersion::V3);
        let mut proxy = MemoryTarget::new("m");
        proxy.url = SafeUrl::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(proxy.api_version(), MemoryApiVersion::V1);
        proxy.api_version = Some(MemoryApiVersion::V2);
        assert_eq!(proxy.api_version(), MemoryApiVersion::V2);
    }
}
