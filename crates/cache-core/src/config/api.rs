//! `[api]`: the maintenance API and dashboard of `cache-scheduler serve`.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::redact::Secret;

/// The maintenance API (`cache-scheduler serve`): where it listens, the bearer token it asks
/// for, and its limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Where it listens (`--listen` overrides): loopback by default; an address beyond
    /// loopback only with a `token`.
    pub listen: String,
    /// The bearer token every request must carry once set (`Authorization: Bearer TOKEN`);
    /// required to listen beyond loopback. A secret: never printed. `CACHE_API_TOKEN`
    /// overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Requests per minute each client address may make, on average (a token bucket).
    pub rate_limit: u32,
    /// Requests a client may make at once before the rate applies (the bucket's size).
    pub burst: u32,
    /// The largest request body taken; a larger one is answered 413.
    pub max_body: ByteSize,
    /// How long a client has to send its whole request (head and body); then 408.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8430".into(),
            token: None,
            rate_limit: 120,
            burst: 30,
            max_body: ByteSize::kib(64),
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// The shortest token taken: anything shorter is guessed too easily.
pub const MIN_TOKEN_LEN: usize = 16;
