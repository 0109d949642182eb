//! `[cleanup]`: the policy every tier's cleanup shares, the modes and `smart`'s thresholds.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{DAY, ratio};

/// What one cleanup mode does beyond what every mode does (TTL repair, expired rows, file TTLs,
/// log rotation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModePolicy {
    /// Remove Redis keys idle this long (OBJECT IDLETIME), and cache rows not accessed this long.
    #[serde(with = "humantime_serde::option")]
    pub idle: Option<Duration>,
    /// Under an LFU policy, remove keys whose access frequency counter is at most this.
    pub lfu_max_freq: Option<u64>,
    /// Remove keys under no known prefix (needs `prefixes` on the target).
    pub delete_orphans: bool,
    /// Remove keys over the target's `max_key_size`.
    pub delete_oversized: bool,
    /// Evict the idlest keys until Redis uses at most this percentage of `maxmemory`.
    pub memory_target_percent: Option<f64>,
    /// Remove duplicate memories (text similarity >= `cleanup.memory_similarity`).
    pub memory_duplicates: bool,
    /// Remove memories not updated this long.
    #[serde(with = "humantime_serde::option")]
    pub memory_stale: Option<Duration>,
}

/// The four modes of seed 000's decision tree.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Modes {
    /// Maintenance: TTL repair and expiry only.
    pub light: ModePolicy,
    /// Low recent activity: idle keys and stale rows go.
    pub moderate: ModePolicy,
    /// Low hit ratio: rarely used and oversized entries go.
    pub targeted: ModePolicy,
    /// Too big: orphans, oversized and idle entries go, down to a memory target.
    pub aggressive: ModePolicy,
    /// `cache-cleanup evict` (what a memory alert's remediation runs): only the idlest Redis
    /// keys, down to the memory target; nothing else in any tier.
    pub evict: ModePolicy,
}

impl Default for Modes {
    fn default() -> Self {
        Self {
            light: ModePolicy::default(),
            moderate: ModePolicy {
                idle: Some(Duration::from_secs(7 * DAY)),
                lfu_max_freq: Some(0),
                memory_duplicates: true,
                ..ModePolicy::default()
            },
            targeted: ModePolicy {
                idle: Some(Duration::from_secs(DAY)),
                lfu_max_freq: Some(1),
                delete_oversized: true,
                memory_duplicates: true,
                ..ModePolicy::default()
            },
            aggressive: ModePolicy {
                idle: Some(Duration::from_secs(6 * 3600)),
                lfu_max_freq: Some(2),
                delete_orphans: true,
                delete_oversized: true,
                memory_target_percent: Some(70.0),
                memory_duplicates: true,
                memory_stale: Some(Duration::from_secs(90 * DAY)),
            },
            evict: ModePolicy { memory_target_percent: Some(70.0), ..ModePolicy::default() },
        }
    }
}

/// How `smart` judges whether the cache is too big.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeBasis {
    /// Against capacity: Redis `used_memory` of `maxmemory`, the cache table's size of
    /// `table_budget`, memories of `memory_budget` (the fullest one counts).
    #[default]
    Capacity,
    /// Seed 000's literal rule: the number of entries in all tiers against `aggressive_size`
    /// and `moderate_size`.
    Entries,
}

/// Seed 000's `cleanup_smart` thresholds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmartThresholds {
    /// What "too big" is judged on (default: capacity).
    pub size_basis: SizeBasis,
    /// `capacity`: the fullest tier above this share of its capacity: aggressive.
    #[serde(deserialize_with = "ratio::deserialize")]
    pub aggressive_usage: f64,
    /// `capacity`: above this share with little recent activity: moderate.
    #[serde(deserialize_with = "ratio::deserialize")]
    pub moderate_usage: f64,
    /// `capacity`: the cache table's size budget (table, indexes and TOAST); unset, the table's
    /// size is not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_budget: Option<ByteSize>,
    /// `capacity`: how many memories the user is meant to hold; unset, not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<u64>,
    /// More entries than this in all tiers: aggressive.
    pub aggressive_size: u64,
    /// More entries than this with little recent activity: moderate.
    pub moderate_size: u64,
    /// "Little recent activity": fewer entries used in the last hour than this.
    pub moderate_recent_activity: u64,
    /// Hit ratio (0..1) under which the cleanup is targeted.
    #[serde(deserialize_with = "ratio::deserialize")]
    pub targeted_hit_ratio: f64,
}

impl Default for SmartThresholds {
    fn default() -> Self {
        Self {
            size_basis: SizeBasis::Capacity,
            aggressive_usage: 0.9,
            moderate_usage: 0.75,
            table_budget: None,
            memory_budget: None,
            aggressive_size: 1500,
            moderate_size: 1000,
            moderate_recent_activity: 50,
            targeted_hit_ratio: 0.6,
        }
    }
}

/// How the keyspace scanner asks about each batch of keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanMethod {
    /// The pipelined method (the gentlest at the same speed; see [`crate::scan`]).
    #[default]
    Auto,
    /// One Lua script per batch (one round trip per batch, but one call as long as its batch);
    /// pipelined commands where scripts are refused.
    Script,
    /// SCAN, then pipelined per-key commands, a bounded window of them in flight.
    Pipeline,
}

/// Cleanup policy shared by every tier.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanupSettings {
    /// Glob patterns of Redis keys never touched, on every target.
    pub protected: Vec<String>,
    /// Keys per SCAN batch, rows per first DELETE batch, memories per delete batch (Redis).
    pub batch_size: usize,
    /// Keys examined per second at most (0: as fast as the server answers); `--max-ops-per-sec`.
    pub max_ops_per_sec: u32,
    /// How each batch of keys is examined.
    pub scan_method: ScanMethod,
    /// Items listed per tier by `--dry-run` (the totals always count everything).
    pub dry_run_sample: usize,
    /// Longest a single DELETE of the cache table may run; batches shrink to stay under it.
    #[serde(with = "humantime_serde")]
    pub max_statement: Duration,
    /// Memories whose texts are at least this similar (0..1) are duplicates; the newest stays.
    #[serde(deserialize_with = "ratio::deserialize")]
    pub memory_similarity: f64,
    /// Memories deleted per request.
    pub memory_batch_size: usize,
    /// The blast-radius cap: most of one target's entries (Redis keys, live cache rows,
    /// memories) one run may delete. The run stops there and is recorded `partial`. Expired
    /// rows do not count. `--force` lifts it at a terminal; a scheduled run or a remediation never.
    #[serde(deserialize_with = "ratio::deserialize")]
    pub max_delete_share: f64,
    /// The same cap in bytes (Redis keys' memory, estimated row sizes).
    pub max_delete_bytes: ByteSize,
    /// The undo journal (memories and live cache rows deleted): kept this long...
    #[serde(with = "humantime_serde")]
    pub journal_keep: Duration,
    /// ...and at most this much, oldest runs' journals removed first.
    pub journal_max_size: ByteSize,
    /// The decision tree of `smart`.
    pub smart: SmartThresholds,
    /// What each mode removes.
    pub modes: Modes,
}

impl Default for CleanupSettings {
    fn default() -> Self {
        Self {
            protected: Vec::new(),
            batch_size: 1000,
            max_ops_per_sec: 0,
            scan_method: ScanMethod::Auto,
            dry_run_sample: 20,
            max_statement: Duration::from_millis(250),
            memory_similarity: 0.85,
            memory_batch_size: 100,
            max_delete_share: 0.25,
            max_delete_bytes: ByteSize::gib(1),
            journal_keep: Duration::from_secs(7 * DAY),
            journal_max_size: ByteSize::mib(512),
            smart: SmartThresholds::default(),
            modes: Modes::default(),
        }
    }
}
