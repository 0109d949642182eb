//! `[[postgres]]`: PostgreSQL databases holding the cache table.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{default_timeout, from_fields};
use crate::redact::SafeUrl;

fn postgres_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_table() -> String {
    "cache_entries".into()
}

/// PostgreSQL TLS settings, on top of the URL's `sslmode`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresTls {
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (encryption without authentication, like libpq's `require`).
    pub accept_invalid_certs: bool,
}

/// A PostgreSQL database holding the cache table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    /// Name, unique within the tier.
    pub name: String,
    /// Connection URL (`postgres://`; `?host=/dir` for a Unix socket; `sslmode=` honoured).
    pub url: SafeUrl,
    /// The cache table (default `cache_entries`).
    #[serde(default = "default_table")]
    pub table: String,
    /// Time allowed to connect (default 2 s).
    #[serde(default = "postgres_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// `statement_timeout` of the session, and the budget of a health probe (default 5 s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// TLS settings.
    #[serde(default)]
    pub tls: PostgresTls,
    /// Column names of the cache table.
    #[serde(default)]
    pub columns: CacheColumns,
    /// Overrides `health.latency.postgres` for this target.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub latency_warn: Option<Duration>,
}

impl PostgresTarget {
    /// A target with just a name and a URL, every other field at its default (as if the file
    /// held only these two keys).
    pub fn new(name: impl Into<String>, url: SafeUrl) -> Self {
        let name = name.into();
        Self { url: url.clone(), ..from_fields(&[("name", &name), ("url", url.expose())]) }
    }
}

/// Column names of the cache table (the defaults are seed 000's).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheColumns {
    /// The key (`text`), shown in dry-run listings.
    pub key: String,
    /// Expiry time (`timestamptz`, NULL: never).
    pub expires_at: String,
    /// Last access time (`timestamptz`).
    pub accessed_at: String,
    /// Category (`text`).
    pub category: String,
    /// Project (`text`); empty: the table holds one project.
    pub project: String,
    /// The cached value (any type with a text form; `jsonb` in seed 000), copied by `warm`.
    pub value: String,
    /// How often the entry was read (`integer`), ranking entries for `warm`.
    pub access_count: String,
}

impl Default for CacheColumns {
    fn default() -> Self {
        Self {
            key: "key".into(),
            expires_at: "expires_at".into(),
            accessed_at: "accessed_at".into(),
            category: "category".into(),
            project: "project_name".into(),
            value: "value".into(),
            access_count: "access_count".into(),
        }
    }
}
