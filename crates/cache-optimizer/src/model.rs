//! What the optimizer finds and what it may do about it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A change the optimizer can make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// `ANALYZE` the cache table.
    PgAnalyze {
        /// PostgreSQL target.
        target: String,
        /// The table.
        table: String,
    },
    /// `VACUUM` the cache table.
    PgVacuum {
        /// PostgreSQL target.
        target: String,
        /// The table.
        table: String,
    },
    /// `REINDEX INDEX CONCURRENTLY` a bloated index.
    PgReindex {
        /// PostgreSQL target.
        target: String,
        /// The index (qualified, quoted as `regclass` prints it).
        index: String,
    },
    /// A storage parameter of the cache table (`ALTER TABLE ... SET (...)`): a configuration
    /// change, applied only with `--apply`.
    PgTableSetting {
        /// PostgreSQL target.
        target: String,
        /// The table.
        table: String,
        /// The parameter, e.g. `autovacuum_vacuum_scale_factor`.
        setting: String,
        /// Its new value.
        value: String,
    },
    /// `MEMORY PURGE`: hand fragmented free memory back to the system.
    RedisMemoryPurge {
        /// Redis target.
        target: String,
    },
    /// Give the keys of a prefix that have no TTL the prefix's configured TTL.
    RedisPatternTtl {
        /// Redis target.
        target: String,
        /// The prefix.
        prefix: String,
        /// The TTL, milliseconds.
        ttl_ms: u64,
    },
    /// `CONFIG SET`: a configuration change, applied only with `--apply`.
    RedisConfig {
        /// Redis target.
        target: String,
        /// The parameter, e.g. `maxmemory-policy`.
        parameter: String,
        /// Its new value.
        value: String,
    },
}

impl Action {
    /// Whether `run` applies it without `--apply` (it changes no configuration).
    pub fn is_safe(&self) -> bool {
        !matches!(self, Self::PgTableSetting { .. } | Self::RedisConfig { .. })
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        match self {
            Self::PgAnalyze { target, table } => format!("postgres/{target}: ANALYZE {table}"),
            Self::PgVacuum { target, table } => format!("postgres/{target}: VACUUM {table}"),
            Self::PgReindex { target, index } => format!("postgres/{target}: REINDEX INDEX CONCURRENTLY {index}"),
            Self::PgTableSetting { target, table, setting, value } => {
                format!("postgres/{target}: ALTER TABLE {table} SET ({setting} = {value})")
            }
            Self::RedisMemoryPurge { target } => format!("redis/{target}: MEMORY PURGE"),
            Self::RedisPatternTtl { target, prefix, ttl_ms } => {
                format!(
                    "redis/{target}: TTL {} for keys of `{prefix}` without one",
                    cache_core::output::millis(*ttl_ms as f64)
                )
            }
            Self::RedisConfig { target, parameter, value } => format!("redis/{target}: CONFIG SET {parameter} {value}"),
        }
    }
}

/// How urgent a recommendation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Do it now.
    High,
    /// Soon.
    Medium,
    /// When convenient.
    Low,
}

/// One recommendation (seed 002's shape, plus where and what the optimizer can do).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// `hit_rate`, `latency`, `memory`, `index`, `vacuum`, `statistics`, `eviction`, `ttl`...
    pub category: String,
    /// How urgent.
    pub priority: Priority,
    /// `tier/name`, when about one target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What is wrong.
    pub issue: String,
    /// What to do.
    pub recommendation: String,
    /// The measured value.
    #[serde(default)]
    pub current_value: Value,
    /// The value aimed at.
    #[serde(default)]
    pub target_value: Value,
    /// What `run` does about it, when it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}
