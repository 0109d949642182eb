//! One snapshot of every tier, as stored in `analytics/history.jsonl`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The history file, in the state directory.
pub const HISTORY: &str = "analytics/history.jsonl";

/// Latency of repeated probes (seed 002: ten samples).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Mean, milliseconds.
    pub avg_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Samples taken.
    pub samples: u32,
}

impl Latency {
    /// From samples in milliseconds.
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        Self {
            avg_ms: samples.iter().sum::<f64>() / samples.len() as f64,
            min_ms: samples.iter().copied().fold(f64::MAX, f64::min),
            max_ms: samples.iter().copied().fold(f64::MIN, f64::max),
            samples: samples.len() as u32,
        }
    }
}

/// Keys and bytes under one prefix, estimated from a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrefixFigures {
    /// The prefix (a configured one, or the first `:`-segment).
    pub prefix: String,
    /// Estimated keys.
    pub keys: u64,
    /// Estimated bytes.
    pub bytes: u64,
}

/// A Redis target's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisFigures {
    /// Target name.
    pub name: String,
    /// Error, when the target could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// INFO figures (used_memory, keyspace_hits, instantaneous_ops_per_sec...).
    pub info: BTreeMap<String, f64>,
    /// Keys in every database.
    pub keys: u64,
    /// hits / (hits + misses), when there were lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<f64>,
    /// PING round trips.
    pub latency: Latency,
    /// Per prefix, from a sample of at most `sampled` keys.
    pub prefixes: Vec<PrefixFigures>,
    /// Keys in the sample.
    pub sampled: u64,
}

/// A PostgreSQL cache table's figures (seed 000's statistics query).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PostgresFigures {
    /// Target name.
    pub name: String,
    /// Error, when the target could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows of the project.
    pub total_entries: i64,
    /// Mean `access_count`.
    pub avg_access_count: f64,
    /// Rows accessed in the last hour.
    pub hot_entries: i64,
    /// Distinct categories.
    pub active_categories: i64,
    /// Mean age, seconds.
    pub avg_age_seconds: f64,
    /// Rows whose metadata has `optimized`.
    pub optimized_entries: i64,
    /// `SELECT 1` round trips.
    pub latency: Latency,
}

/// A memory API's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryFigures {
    /// Target name.
    pub name: String,
    /// Error, when the target could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Memories of the user.
    pub memories: u64,
    /// List round trips.
    pub latency: Latency,
}

/// A directory's size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirFigures {
    /// `files` or `logs`.
    pub tier: String,
    /// Target name.
    pub name: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// Files.
    pub files: u64,
}

/// The host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFigures {
    /// One-minute load.
    pub load1: f64,
    /// Memory in use, percent.
    pub memory_percent: f64,
    /// CPUs.
    pub cpus: usize,
}

/// One snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// Redis targets.
    pub redis: Vec<RedisFigures>,
    /// PostgreSQL targets.
    pub postgres: Vec<PostgresFigures>,
    /// Memory-API targets.
    pub memory: Vec<MemoryFigures>,
    /// File-cache and log directories.
    pub dirs: Vec<DirFigures>,
    /// The host.
    pub host: HostFigures,
}
