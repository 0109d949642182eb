//! `[[redis]]`: Redis targets and their known key prefixes.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{default_timeout, from_fields};
use crate::redact::{SafeUrl, Secret};

fn redis_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

/// A Redis server (`redis://`, `rediss://` for TLS, `redis+unix://`), or Upstash through its
/// REST API (`upstash+https://`, or `https://` with a `token`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTarget {
    /// Name, unique within the tier.
    pub name: String,
    /// Connection URL; the password is redacted everywhere. `rest_url` is another name for it
    /// (Upstash's REST endpoint).
    #[serde(alias = "rest_url")]
    pub url: SafeUrl,
    /// The bearer token of a REST target (Upstash's `UPSTASH_REDIS_REST_TOKEN`); else the URL's
    /// password is the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// A CA certificate (PEM) trusted on top of the system's roots, for `rediss://` and REST
    /// targets whose server certificate a private CA signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Time allowed to establish the connection (default 2 s).
    #[serde(default = "redis_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for one response, and for a whole health probe (default 5 s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Overrides `health.latency.redis` for this target.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub latency_warn: Option<Duration>,
    /// Known key prefixes; a prefix with a `ttl` requires one (seed 002's TTL-required patterns).
    /// Keys under no known prefix are orphans. With no prefixes, orphans are not judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixRule>,
    /// Glob patterns of keys never touched, on top of `cleanup.protected`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    /// Keys larger than this are oversized (default 1 MiB).
    #[serde(default = "default_max_key_size")]
    pub max_key_size: ByteSize,
    /// More nodes of the same Redis Cluster, tried in order when `url` is unreachable (after a
    /// failover); each with the same credentials as `url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<SafeUrl>,
    /// The project's keys: those starting with this (default `<project_name>:`) or with one of
    /// `prefixes`. Cleanup never deletes any other key in any mode, and orphans are judged only
    /// inside it: another application's keys in the same database are not orphans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The longest one scanning call may take: batches adapt (within `cleanup.batch_size` or
    /// the tool's count) so that each round trip stays under it, since every application
    /// request waits behind a call on Redis's one thread (default 1 ms; `"0s"`: fixed batches).
    #[serde(default = "default_call_budget", with = "humantime_serde")]
    pub call_budget: Duration,
    /// Cluster primaries visited at once (connects, INFO and read-only passes), default 4: a
    /// large cluster is neither walked one node at a time nor hit on every node together.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_call_budget() -> Duration {
    crate::scan::DEFAULT_BUDGET
}

fn default_concurrency() -> usize {
    4
}

impl RedisTarget {
    /// A target with just a name and a URL, every other field at its default (as if the file
    /// held only these two keys).
    pub fn new(name: impl Into<String>, url: SafeUrl) -> Self {
        let name = name.into();
        Self { url: url.clone(), ..from_fields(&[("name", &name), ("url", url.expose())]) }
    }

    /// How the target is reached: RESP over TCP, TLS or a socket, or Upstash's REST API.
    pub fn transport(&self) -> Transport {
        match self.url.scheme() {
            "upstash+https" | "upstash+http" | "https" | "http" => Transport::Rest,
            _ => Transport::Resp,
        }
    }

    /// The budget of one scanning call, for [`crate::scan::ScanOptions::budget`] (`None`:
    /// fixed batches).
    pub fn scan_budget(&self) -> Option<Duration> {
        (!self.call_budget.is_zero()).then_some(self.call_budget)
    }

    /// Whether the target is reached through a REST API ([`Transport::Rest`]).
    pub fn is_rest(&self) -> bool {
        self.transport() == Transport::Rest
    }

    /// The REST endpoint (`https://…`, without the `upstash+` and without a password) and its
    /// bearer token, for a REST target; `None` for a RESP one or when no token is known.
    pub fn rest_endpoint(&self) -> Option<(url::Url, Secret)> {
        if !self.is_rest() {
            return None;
        }
        let raw = self.url.expose();
        let mut url = url::Url::parse(raw.strip_prefix("upstash+").unwrap_or(raw)).ok()?;
        let from_url = url.password().map(|p| {
            url::form_urlencoded::parse(format!("x={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        });
        let token = match (&self.token, from_url) {
            (Some(token), _) => token.clone(),
            (None, Some(password)) if !password.is_empty() => Secret::new(password),
            _ => return None,
        };
        let _ = url.set_password(None);
        let _ = url.set_username("");
        Some((url, token))
    }
}

/// How a Redis target is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The Redis protocol (`redis://`, `rediss://`, `redis+unix://`).
    Resp,
    /// Commands as JSON arrays POSTed to a REST API, Upstash's protocol (`upstash+https://`).
    Rest,
}

/// A known key prefix and the TTL its keys must have.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRule {
    /// The prefix, e.g. `app:search:`.
    pub prefix: String,
    /// The TTL given to keys under it that have none (seed 002 `_get_default_ttl_for_key`).
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// The key's age is in its name: its last `:` segment is a Unix time (`timestamp`, in
    /// seconds or milliseconds) or a date (`date`: `YYYY-MM-DD`, `YYYYMMDD`, or RFC 3339), as
    /// seed 004's `evaluation:*:<ts>`. With `max_age`, a key older than that goes in every mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_from: Option<AgeFrom>,
    /// With `age_from`: keys whose name is older than this are removed.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

/// Where a key's age is written in its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgeFrom {
    /// A Unix time, seconds or milliseconds.
    Timestamp,
    /// A date (`YYYY-MM-DD`, `YYYYMMDD`) or an RFC 3339 time.
    Date,
}

impl PrefixRule {
    /// When `key` says it was made, by its last `:` segment (`None`: the rule reads no age, or
    /// the segment is not one). Idle time is no substitute: reading a key resets it.
    pub fn named_time(&self, key: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::{NaiveDate, TimeZone as _, Utc};
        let from = self.age_from?;
        let last = key.rsplit(|&b| b == b':').next()?;
        let last = std::str::from_utf8(last).ok()?;
        match from {
            AgeFrom::Timestamp => {
                let n: i64 = last.parse().ok().filter(|_| last.chars().all(|c| c.is_ascii_digit()))?;
                // Milliseconds from 2001-09 on are above 10^12; seconds stay below until 33658.
                if n >= 1_000_000_000_000 {
                    Utc.timestamp_millis_opt(n).single()
                } else {
                    Utc.timestamp_opt(n, 0).single()
                }
            }
            AgeFrom::Date => {
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(last) {
                    return Some(t.with_timezone(&Utc));
                }
                let day = NaiveDate::parse_from_str(last, "%Y-%m-%d")
                    .or_else(|_| NaiveDate::parse_from_str(last, "%Y%m%d"))
                    .ok()?;
                Some(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?))
            }
        }
    }

    /// How much older than `max_age` the name says `key` is, at `now` (`None`: not past it,
    /// no age in the name, or no `max_age`).
    pub fn past_named_age(&self, key: &[u8], now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let max = self.max_age?;
        let age = (now - self.named_time(key)?).to_std().ok()?;
        (age >= max).then_some(age)
    }
}

fn default_max_key_size() -> ByteSize {
    ByteSize::mib(1)
}
