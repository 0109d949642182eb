//! `[optimizer]`: what cache-optimizer judges worth changing, and how it warms Redis.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::ratio;

/// cache-optimizer: what it judges worth changing, and how it warms Redis.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSettings {
    /// An index is bloated when this share of it is estimated to be waste...
    #[serde(deserialize_with = "ratio::deserialize")]
    pub bloat_ratio: f64,
    /// ...and the waste is at least this big.
    pub bloat_min_size: ByteSize,
    /// An index never scanned is worth dropping only after statistics have been collected
    /// this long (since the last `pg_stat_reset`); health and the optimizer both obey it.
    #[serde(with = "humantime_serde")]
    pub unused_index_after: Duration,
    /// A table needs VACUUM when this share of its tuples are dead (autovacuum's default).
    #[serde(deserialize_with = "ratio::deserialize")]
    pub dead_tuple_ratio: f64,
    /// Redis keys without a TTL above this share of a sample are worth a TTL strategy.
    #[serde(deserialize_with = "ratio::deserialize")]
    pub ttl_less_share: f64,
    /// `MEMORY PURGE` runs when `mem_fragmentation_ratio` is above this.
    pub fragmentation_ratio: f64,
    /// The `maxmemory-policy` recommended for a cache (applied only with `run --apply`).
    pub eviction_policy: String,
    /// Keys given a pattern TTL per run at most (each is recorded in the rollback point).
    pub ttl_max_keys: u64,
    /// `warm`: TTL of the entries copied into Redis (shorter when the row expires sooner).
    #[serde(with = "humantime_serde")]
    pub warm_ttl: Duration,
    /// `warm`: entries copied per run at most.
    pub warm_max_entries: u64,
    /// `warm`: bytes of values copied per run at most.
    pub warm_max_bytes: ByteSize,
    /// `warm`: prepended to each cache-table key to make the Redis key.
    pub warm_key_prefix: String,
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        Self {
            bloat_ratio: 0.3,
            bloat_min_size: ByteSize::mib(1),
            unused_index_after: Duration::from_secs(7 * 86_400),
            dead_tuple_ratio: 0.2,
            ttl_less_share: 0.2,
            fragmentation_ratio: 1.5,
            eviction_policy: "allkeys-lru".into(),
            ttl_max_keys: 100_000,
            warm_ttl: Duration::from_secs(3600),
            warm_max_entries: 1000,
            warm_max_bytes: ByteSize::mib(64),
            warm_key_prefix: String::new(),
        }
    }
}
