//! Configuration: one TOML file, environment overrides, and an embedded default.
//!
//! Precedence, highest first: command-line flags > environment variables (see
//! [`crate::env::EnvVars`]) > the configuration file > the embedded `default-config.toml`.
//!
//! The file is the first found of `--config`, `CACHE_CONFIG`,
//! `$XDG_CONFIG_HOME/cache-toolkit/config.toml` (or `~/.config/...`) and
//! `/etc/cache-toolkit/config.toml`. A file named by `--config` or `CACHE_CONFIG` must exist. With
//! no file at all the embedded default applies: system, files and logs are checked, and the
//! redis, postgres and memory tiers are `not_configured`.
//!
//! Unknown keys and bad values are [`ConfigError`]s naming the file (or the environment
//! variable) and the dotted key.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::env::EnvVars;
use crate::error::ConfigError;
use crate::redact::{SafeUrl, Secret};

/// The commented default configuration, embedded in every binary.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default-config.toml");

/// Placeholder in directory paths that expands to the state directory.
pub const STATE_DIR_PLACEHOLDER: &str = "{state_dir}";

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Project name: the memory API's user id and the cache table's `project_name`.
    pub project_name: String,
    /// Thresholds for `cache-health check`.
    pub health: HealthSettings,
    /// Host resources to check.
    pub system: SystemSettings,
    /// Redis targets.
    pub redis: Vec<RedisTarget>,
    /// PostgreSQL cache-table targets.
    pub postgres: Vec<PostgresTarget>,
    /// Mem0-style memory-API targets.
    pub memory: Vec<MemoryTarget>,
    /// HTTP application endpoints.
    pub http: Vec<HttpTarget>,
    /// File-cache directories.
    pub files: Vec<FilesTarget>,
    /// Log directories.
    pub logs: Vec<LogsTarget>,
    /// Cleanup policy: protected patterns, pacing, modes, smart thresholds.
    pub cleanup: CleanupSettings,
    /// Backups: where, what, compression, retention.
    pub backup: BackupSettings,
    /// cache-optimizer.
    pub optimizer: OptimizerSettings,
    /// Alert rules, channels and self-healing (`cache-health monitor`).
    pub alerts: AlertSettings,
    /// The schedule and how cache-scheduler renders and gates it.
    pub scheduler: SchedulerSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            project_name: "default".into(),
            health: HealthSettings::default(),
            system: SystemSettings::default(),
            redis: Vec::new(),
            postgres: Vec::new(),
            memory: Vec::new(),
            http: Vec::new(),
            files: vec![FilesTarget {
                name: "toolkit-reports".into(),
                path: PathBuf::from(format!("{STATE_DIR_PLACEHOLDER}/reports")),
                max_size: None,
                ttl: Some(Duration::from_secs(90 * 86400)),
                use_atime: false,
                protected: Vec::new(),
            }],
            logs: vec![LogsTarget {
                name: "toolkit".into(),
                path: PathBuf::from(format!("{STATE_DIR_PLACEHOLDER}/logs")),
                max_size: None,
                pattern: default_log_pattern(),
                rotate_size: Some(ByteSize::mib(100)),
                rotate_age: None,
                keep: default_keep(),
                max_age: Some(Duration::from_secs(30 * 86400)),
                copytruncate: false,
                compress_level: default_compress_level(),
            }],
            cleanup: CleanupSettings::default(),
            backup: BackupSettings::default(),
            optimizer: OptimizerSettings::default(),
            alerts: AlertSettings::default(),
            scheduler: SchedulerSettings::default(),
        }
    }
}

/// A warning and a critical level for one measure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// At or above this the measure is degraded (WARNING).
    pub warn: f64,
    /// At or above this the measure failed (CRITICAL).
    pub crit: f64,
}

impl Level {
    const fn new(warn: f64, crit: f64) -> Self {
        Self { warn, crit }
    }
}

/// Latency above which a tier is degraded (seed 000 defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyThresholds {
    /// Redis probe (default 500 ms).
    #[serde(with = "humantime_serde")]
    pub redis: Duration,
    /// PostgreSQL probe (default 1000 ms).
    #[serde(with = "humantime_serde")]
    pub postgres: Duration,
    /// Memory-API probe (default 2000 ms).
    #[serde(with = "humantime_serde")]
    pub memory: Duration,
    /// HTTP application probe (default 1000 ms).
    #[serde(with = "humantime_serde")]
    pub http: Duration,
}

impl Default for LatencyThresholds {
    fn default() -> Self {
        Self {
            redis: Duration::from_millis(500),
            postgres: Duration::from_millis(1000),
            memory: Duration::from_millis(2000),
            http: Duration::from_millis(1000),
        }
    }
}

/// Thresholds of `cache-health check`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Probe latency above which a tier is degraded.
    pub latency: LatencyThresholds,
    /// Host memory in use, percent.
    pub memory_percent: Level,
    /// Disk space in use on each checked path, percent.
    pub disk_percent: Level,
    /// One-minute load average divided by the number of CPUs.
    pub load_per_cpu: Level,
    /// Redis `used_memory` as a percentage of `maxmemory` (when set).
    pub redis_memory_percent: Level,
    /// Redis hit ratio (0..1) below which the target is degraded.
    #[serde(deserialize_with = "ratio::deserialize")]
    pub hit_ratio_min: f64,
    /// Lookups (hits + misses) needed before the hit ratio is judged.
    pub hit_ratio_min_lookups: u64,
    /// PostgreSQL connections as a percentage of `max_connections`.
    pub postgres_connections_percent: Level,
    /// Redis clients as a percentage of `maxclients`.
    pub redis_clients_percent: Level,
    /// A directory's size as a percentage of its `max_size`.
    pub directory_percent: Level,
    /// GPU temperature, degrees Celsius.
    pub gpu_temperature_celsius: Level,
    /// GPU memory in use, percent.
    pub gpu_memory_percent: Level,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            latency: LatencyThresholds::default(),
            memory_percent: Level::new(85.0, 95.0),
            disk_percent: Level::new(85.0, 95.0),
            load_per_cpu: Level::new(2.0, 4.0),
            redis_memory_percent: Level::new(80.0, 95.0),
            hit_ratio_min: 0.7,
            hit_ratio_min_lookups: 1000,
            postgres_connections_percent: Level::new(80.0, 90.0),
            redis_clients_percent: Level::new(80.0, 90.0),
            directory_percent: Level::new(85.0, 100.0),
            gpu_temperature_celsius: Level::new(85.0, 95.0),
            gpu_memory_percent: Level::new(90.0, 98.0),
        }
    }
}

/// Host resources checked by the `system` tier.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemSettings {
    /// Paths whose file system's usage is checked.
    pub disk_paths: Vec<PathBuf>,
    /// Directories whose total size is reported (like `du -s`).
    pub directories: Vec<PathBuf>,
    /// systemd units that must be active.
    pub systemd_units: Vec<String>,
    /// `host:port` endpoints that must accept a TCP connection.
    pub endpoints: Vec<String>,
    /// Budget for the system probe as a whole (directory walks, unit queries, connects).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Probe GPUs through NVML when the library is present.
    pub gpu: bool,
}

impl Default for SystemSettings {
    fn default() -> Self {
        Self {
            disk_paths: vec![PathBuf::from("/")],
            directories: Vec::new(),
            systemd_units: Vec::new(),
            endpoints: Vec::new(),
            timeout: Duration::from_secs(5),
            gpu: true,
        }
    }
}

fn redis_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn memory_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_table() -> String {
    "cache_entries".into()
}
fn default_status() -> u16 {
    200
}
fn mem0_platform_url() -> SafeUrl {
    SafeUrl::parse(MEM0_PLATFORM_URL).unwrap_or_else(|_| unreachable!("constant URL parses"))
}

/// Base URL of the hosted Mem0 platform.
pub const MEM0_PLATFORM_URL: &str = "https://api.mem0.ai";

/// A Redis server (`redis://`, `rediss://` for TLS, `redis+unix://`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTarget {
    /// Name, unique within the tier.
    pub name: String,
    /// Connection URL; the password is redacted everywhere.
    pub url: SafeUrl,
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
}

fn default_max_key_size() -> ByteSize {
    ByteSize::mib(1)
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
    #[serde(default = "redis_connect_timeout", with = "humantime_serde")]
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

/// A directory of cache files.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesTarget {
    /// Name, unique within the tier.
    pub name: String,
    /// The directory; `{state_dir}` expands to the state directory.
    pub path: PathBuf,
    /// Size cap (e.g. `"10 GiB"`): cleanup evicts the oldest files down to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    /// Files not modified (or, with `use_atime`, not read) for this long are removed.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Judge age by access time instead of modification time.
    #[serde(default)]
    pub use_atime: bool,
    /// Glob patterns (relative to `path`) of files never removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
}

fn default_log_pattern() -> String {
    "*.log".into()
}
fn default_keep() -> u32 {
    7
}
fn default_compress_level() -> u32 {
    6
}

/// A directory of log files, rotated like logrotate does.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsTarget {
    /// Name, unique within the tier.
    pub name: String,
    /// The directory; `{state_dir}` expands to the state directory.
    pub path: PathBuf,
    /// Size cap of the whole directory, judged by cache-health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    /// Which files are logs (a glob on the file name; default `*.log`).
    #[serde(default = "default_log_pattern")]
    pub pattern: String,
    /// Rotate a log once it reaches this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_size: Option<ByteSize>,
    /// Rotate a log once its last rotation is this old (`"1d"` is logrotate's `daily`).
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub rotate_age: Option<Duration>,
    /// Rotated files kept per log (`log.1.gz` ... `log.N.gz`).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Rotated files older than this are removed, whatever `keep` says.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Copy the log and truncate it in place instead of renaming it (for programs that never
    /// reopen their log; lines written during the copy can be lost).
    #[serde(default)]
    pub copytruncate: bool,
    /// gzip level, 1 (fast) to 9 (small); 0 leaves rotated files uncompressed.
    #[serde(default = "default_compress_level")]
    pub compress_level: u32,
}

/// A directory target of either tier, as cache-health sees it.
pub trait DirTarget: Send + Sync {
    /// Its name.
    fn name(&self) -> &str;
    /// Its directory.
    fn path(&self) -> &Path;
    /// Its size cap.
    fn max_size(&self) -> Option<ByteSize>;
}

impl DirTarget for FilesTarget {
    fn name(&self) -> &str {
        &self.name
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn max_size(&self) -> Option<ByteSize> {
        self.max_size
    }
}

impl DirTarget for LogsTarget {
    fn name(&self) -> &str {
        &self.name
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn max_size(&self) -> Option<ByteSize> {
        self.max_size
    }
}

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

const DAY: u64 = 86400;

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

/// Backups: where they go, what they hold, how they are compressed and kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSettings {
    /// Where backups are written; `{state_dir}` is the state directory.
    pub dir: PathBuf,
    /// gzip level, 1 (fast) to 9 (small).
    pub level: u32,
    /// Compression threads (0: one per CPU).
    pub threads: usize,
    /// Extra directories archived with every backup (never following links).
    pub paths: Vec<PathBuf>,
    /// How long to wait for a BGSAVE to finish.
    #[serde(with = "humantime_serde")]
    pub bgsave_timeout: Duration,
    /// How Redis datasets are taken.
    pub redis_method: RedisBackupMethod,
    /// Keep this many newest backups.
    pub keep_last: u32,
    /// Keep the newest backup of each of this many days.
    pub keep_daily: u32,
    /// Keep the newest backup of each of this many ISO weeks.
    pub keep_weekly: u32,
    /// Remove backups older than this, whatever the other rules say (never the newest verified).
    #[serde(with = "humantime_serde::option")]
    pub max_age: Option<Duration>,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(format!("{STATE_DIR_PLACEHOLDER}/backups")),
            level: 6,
            threads: 0,
            paths: Vec::new(),
            bgsave_timeout: Duration::from_secs(600),
            redis_method: RedisBackupMethod::Auto,
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            max_age: Some(Duration::from_secs(90 * DAY)),
        }
    }
}

/// The schedule: changes to the documented jobs, where the tools are, and the gates a scheduled
/// run passes (automation on, maintenance windows, dependencies, the fleet lock).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Time zone of the cron expressions (IANA name).
    pub timezone: String,
    /// Changes per job, by name.
    pub jobs: BTreeMap<String, JobSettings>,
    /// The user field of `/etc/cron.d/cache-toolkit`.
    pub user: String,
    /// `MAILTO` of the rendered crontab (empty: cron's default).
    pub mailto: String,
    /// `PATH` of the rendered crontab.
    pub path: String,
    /// Where the tools are installed (default: beside cache-scheduler).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// A job is overdue this long after a run it missed.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Consecutive failures that flag a job in `status`.
    pub max_failures: u32,
    /// A Redis target holding the fleet lock: heavy jobs then run once per tick across hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_lock: Option<String>,
    /// The fleet lock's lease, renewed every third of it while the job runs.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// `optimize` keeps a repeating job's interval at least this share of the table's...
    pub min_factor: f64,
    /// ...and at most this multiple of it.
    pub max_factor: f64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            jobs: BTreeMap::new(),
            user: "root".into(),
            mailto: String::new(),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            bin_dir: None,
            grace: Duration::from_secs(15 * 60),
            max_failures: 3,
            fleet_lock: None,
            lease: Duration::from_secs(60),
            min_factor: 0.25,
            max_factor: 4.0,
        }
    }
}

/// Changes to one job of the schedule.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Another cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Off (or on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Another job that must have succeeded recently (replaces the default dependency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Requirement>,
}

/// "Run only after `job` succeeded within `within`" (seed 003 dependencies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// The job.
    pub job: String,
    /// How recently.
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

/// Alerting: rules over the health metrics, where notifications go, and self-healing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Time between two rounds of `monitor` (seed 002: 60 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A firing alert is sent again after this (seed 002: 30 minutes); rules may override.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Seed 000's and seed 002's rules apply when `rules` is empty.
    pub default_rules: bool,
    /// Channels of rules that name none (and of the default rules).
    pub default_channels: Vec<String>,
    /// The rules.
    pub rules: Vec<AlertRule>,
    /// Named channels; `log` (JSON Lines in the state directory) always exists.
    pub channels: BTreeMap<String, Channel>,
    /// Self-healing limits.
    pub remediation: Remediation,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            cooldown: Duration::from_secs(30 * 60),
            default_rules: true,
            default_channels: vec!["log".into()],
            rules: Vec::new(),
            channels: BTreeMap::new(),
            remediation: Remediation::default(),
        }
    }
}

/// How bad an alert is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention.
    #[default]
    Warning,
    /// Needs attention now.
    Critical,
}

/// What `monitor` does by itself when a rule fires (seed 000 `auto_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoAction {
    /// `cache-cleanup smart --yes -q`
    TriggerCleanup,
    /// `cache-optimizer run -q`
    TriggerOptimization,
    /// `cache-optimizer run -q --tier postgres`: the index and statistics maintenance
    PostgresMaintenance,
    /// Mark the failing target disabled for `remediation.disable_for`, so other tools skip it
    DisableTier,
}

/// One alert rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Its name, unique.
    pub name: String,
    /// When it is bad (see `cache_core::alerting`).
    pub condition: String,
    /// How bad.
    #[serde(default)]
    pub severity: Severity,
    /// Where notifications go (default: `alerts.default_channels`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// The message, with `{metric:.1%}` placeholders and `{target}`, `{rule}`.
    #[serde(default = "default_message")]
    pub message: String,
    /// Where the runbook is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// Consecutive bad rounds before it fires.
    #[serde(default = "one", rename = "for")]
    pub for_rounds: u32,
    /// Overrides `alerts.cooldown`.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// Send a notice when the condition clears.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// What to do by itself when it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_action: Option<AutoAction>,
    /// Only targets of these kinds (`redis`, `postgres`, `memory`, `http`, `files`, `logs`,
    /// `system`, `job`); empty: every target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<String>,
}

/// The kinds of target a rule's `tiers` may name: the part before `/` of `tier/name`.
pub const RULE_TARGET_KINDS: &[&str] = &["redis", "postgres", "memory", "http", "files", "logs", "system", "job"];

impl AlertRule {
    /// Whether the rule judges `target` (`tier/name`, or `all`).
    pub fn applies_to(&self, target: &str) -> bool {
        self.tiers.is_empty() || target == "all" || self.tiers.iter().any(|t| target.split('/').next() == Some(t))
    }
}

fn default_message() -> String {
    "{rule} on {target}".into()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// A notification channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Channel {
    /// JSON Lines in `alerts/log.jsonl`.
    Log,
    /// A POST of the Alertmanager webhook JSON.
    Webhook {
        /// Where to POST.
        url: Secret,
        /// Signs the body: `X-Cache-Toolkit-Signature: sha256=<hex HMAC>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hmac_secret: Option<Secret>,
        /// Time allowed for the request.
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    /// A Slack incoming webhook.
    Slack {
        /// The webhook URL (a secret: its path is the credential).
        url: Secret,
        /// Time allowed for the request.
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    /// Email over SMTP.
    Email {
        /// SMTP server host.
        server: String,
        /// Port (587 for STARTTLS).
        #[serde(default = "smtp_port")]
        port: u16,
        /// `required` (STARTTLS or nothing), `opportunistic`, or `none`.
        #[serde(default)]
        starttls: SmtpTls,
        /// An extra CA certificate (PEM) to trust, for a relay with a private CA.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<PathBuf>,
        /// Login, when the server wants one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// Its password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
        /// Sender.
        from: String,
        /// Recipients.
        to: Vec<String>,
        /// Time allowed for the whole exchange.
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
}

fn smtp_port() -> u16 {
    587
}

/// SMTP transport security.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, or no mail at all.
    #[default]
    Required,
    /// STARTTLS when offered.
    Opportunistic,
    /// Plain SMTP (a relay on localhost).
    None,
}

/// Self-healing limits (Monit's "if N restarts within M cycles").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Remediation {
    /// At most this many auto-actions per rule...
    pub max_actions: u32,
    /// ...within this many rounds; past it the rule's actions stop and an alert says so.
    pub rounds: u32,
    /// Time between an action and the check that verifies it.
    #[serde(with = "humantime_serde")]
    pub verify_delay: Duration,
    /// How long `disable_tier` keeps a target disabled.
    #[serde(with = "humantime_serde")]
    pub disable_for: Duration,
    /// When a target is disabled, the entries of the remaining tiers live this much longer
    /// (seed 000: Redis TTLs when the memory API or PostgreSQL fails, cache-table expiry when
    /// Redis fails); none by default.
    #[serde(with = "humantime_serde::option")]
    pub extend_ttl: Option<Duration>,
    /// The command lines of the actions; empty: the sibling binaries next to this one. The
    /// alert's target is always appended as `--tier TIER:NAME`.
    pub commands: BTreeMap<String, Vec<String>>,
    /// Where the sibling tools are (default: beside this binary, then PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_dir: Option<PathBuf>,
}

impl Default for Remediation {
    fn default() -> Self {
        Self {
            max_actions: 3,
            rounds: 10,
            verify_delay: Duration::from_secs(30),
            disable_for: Duration::from_secs(600),
            extend_ttl: None,
            commands: BTreeMap::new(),
            tools_dir: None,
        }
    }
}

/// cache-optimizer: what it judges worth changing, and how it warms Redis.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSettings {
    /// An index is bloated when this share of it is estimated to be waste...
    #[serde(deserialize_with = "ratio::deserialize")]
    pub bloat_ratio: f64,
    /// ...and the waste is at least this big.
    pub bloat_min_size: ByteSize,
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

/// How a Redis dataset is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisBackupMethod {
    /// BGSAVE when the dump file is readable here, else replication, else logical.
    #[default]
    Auto,
    /// BGSAVE, then copy the dump file (the server must be on this host).
    Bgsave,
    /// The RDB over the replication protocol, as `redis-cli --rdb` fetches it.
    Replication,
    /// SCAN + DUMP + expiry times, in the toolkit's own format (any server that allows DUMP).
    Logical,
}

/// How the keyspace scanner asks about each batch of keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanMethod {
    /// A script per batch where the server allows it, else pipelined commands.
    #[default]
    Auto,
    /// One Lua script per batch (one round trip, fewest commands parsed).
    Script,
    /// SCAN, then one pipelined round of per-key commands (for servers that restrict EVAL).
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

/// Where the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum ConfigSource {
    /// A file.
    File(PathBuf),
    /// The embedded default.
    Embedded,
}

/// A loaded, validated configuration and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The file it was read from, or the embedded default.
    pub source: ConfigSource,
    /// Environment variables that overrode file values.
    pub env_overrides: Vec<&'static str>,
}

/// Reads environment variables; a trait so tests can pass their own.
pub trait Env {
    /// The variable's value, when set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// Finds, parses, overrides and validates the configuration.
///
/// `explicit` is `--config`. `state_dir` expands `{state_dir}` in directory paths.
pub fn load(explicit: Option<&Path>, env: &dyn Env, state_dir: &Path) -> anyhow::Result<Loaded> {
    let (mut config, source) = match find_file(explicit, env)? {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::new(path.display().to_string(), "(file)", format!("cannot read: {e}")))?;
            (parse(&text, &path.display().to_string())?, ConfigSource::File(path))
        }
        None => (parse(DEFAULT_CONFIG_TOML, "(embedded default)")?, ConfigSource::Embedded),
    };
    let env_overrides = apply_env(&mut config, env)?;
    let source_name = match &source {
        ConfigSource::File(path) => path.display().to_string(),
        ConfigSource::Embedded => "(embedded default)".to_owned(),
    };
    validate(&config, &source_name)?;
    expand_state_dir(&mut config, state_dir);
    Ok(Loaded { config, source, env_overrides })
}

fn find_file(explicit: Option<&Path>, env: &dyn Env) -> anyhow::Result<Option<PathBuf>> {
    let named = explicit
        .map(|p| (p.to_path_buf(), "--config"))
        .or_else(|| env.var(EnvVars::CACHE_CONFIG).map(|p| (PathBuf::from(p), EnvVars::CACHE_CONFIG)));
    if let Some((path, from)) = named {
        if !path.is_file() {
            return Err(ConfigError::new(
                path.display().to_string(),
                "(file)",
                format!("the file named by {from} does not exist or is not a file"),
            )
            .into());
        }
        return Ok(Some(path));
    }
    let xdg = env
        .var(EnvVars::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .or_else(|| env.var(EnvVars::HOME).map(|h| Path::new(&h).join(".config")));
    let candidates = xdg
        .map(|base| base.join("cache-toolkit/config.toml"))
        .into_iter()
        .chain([PathBuf::from("/etc/cache-toolkit/config.toml")]);
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// Parses `text` (from `source_name`) into a [`Config`], naming the key of any error.
pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| ConfigError::new(source_name, "(syntax)", located(text, &e)))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::new(source_name, key, located(text, &inner))
    })
}

fn located(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().to_owned();
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{message} (line {line})")
        }
        None => message,
    }
}

fn apply_env(config: &mut Config, env: &dyn Env) -> Result<Vec<&'static str>, ConfigError> {
    let mut used = Vec::new();
    let env_url = |name: &'static str, value: &str| {
        SafeUrl::parse(value).map_err(|e| {
            ConfigError::new(format!("environment variable {name}"), name, format!("not a valid URL: {e}"))
        })
    };
    if let Some(project) = env.var(EnvVars::PROJECT_NAME) {
        config.project_name = project;
        used.push(EnvVars::PROJECT_NAME);
    }
    if let Some(raw) = env.var(EnvVars::REDIS_URL) {
        let url = env_url(EnvVars::REDIS_URL, &raw)?;
        match config.redis.first_mut() {
            Some(target) => target.url = url,
            None => config.redis.push(RedisTarget {
                name: "default".into(),
                url,
                connect_timeout: redis_connect_timeout(),
                timeout: default_timeout(),
                latency_warn: None,
                prefixes: Vec::new(),
                protected: Vec::new(),
                max_key_size: default_max_key_size(),
                urls: Vec::new(),
                namespace: None,
            }),
        }
        used.push(EnvVars::REDIS_URL);
    }
    if let Some(raw) = env.var(EnvVars::DATABASE_URL) {
        let url = env_url(EnvVars::DATABASE_URL, &raw)?;
        match config.postgres.first_mut() {
            Some(target) => target.url = url,
            None => config.postgres.push(PostgresTarget {
                name: "default".into(),
                url,
                table: default_table(),
                connect_timeout: redis_connect_timeout(),
                timeout: default_timeout(),
                tls: PostgresTls::default(),
                columns: CacheColumns::default(),
                latency_warn: None,
            }),
        }
        used.push(EnvVars::DATABASE_URL);
    }
    let mem_url = env.var(EnvVars::MEM0_URL);
    let mem_key = env.var(EnvVars::MEM0_API_KEY);
    if mem_url.is_some() || mem_key.is_some() {
        if config.memory.is_empty() {
            config.memory.push(MemoryTarget {
                name: "default".into(),
                url: mem0_platform_url(),
                api_key: None,
                dialect: MemoryDialect::default(),
                api_version: MemoryApiVersion::default(),
                user_id: None,
                timeout: memory_timeout(),
                latency_warn: None,
            });
        }
        let target = &mut config.memory[0];
        if let Some(raw) = mem_url {
            target.url = env_url(EnvVars::MEM0_URL, &raw)?;
            used.push(EnvVars::MEM0_URL);
        }
        if let Some(key) = mem_key {
            target.api_key = Some(Secret::new(key));
            used.push(EnvVars::MEM0_API_KEY);
        }
    }
    Ok(used)
}

fn validate_scheduler(config: &Config, source: &str) -> Result<(), ConfigError> {
    let s = &config.scheduler;
    if s.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ConfigError::new(
            source,
            "scheduler.timezone",
            format!("`{}` is not an IANA time zone", s.timezone),
        ));
    }
    for (name, job) in &s.jobs {
        let key = |field: &str| format!("scheduler.jobs.{name}.{field}");
        if crate::schedule::job(name).is_err() {
            let names: Vec<&str> = crate::schedule::DEFAULT_JOBS.iter().map(|j| j.name).collect();
            return Err(ConfigError::new(
                source,
                format!("scheduler.jobs.{name}"),
                format!("no such job; the jobs are {}", names.join(", ")),
            ));
        }
        if let Some(expr) = &job.schedule {
            crate::schedule::parse(expr).map_err(|e| ConfigError::new(source, key("schedule"), e.to_string()))?;
        }
        if let Some(r) = &job.requires
            && crate::schedule::job(&r.job).is_err()
        {
            return Err(ConfigError::new(source, key("requires"), format!("no job `{}`", r.job)));
        }
    }
    if let Some(target) = &s.fleet_lock
        && !config.redis.iter().any(|t| &t.name == target)
    {
        return Err(ConfigError::new(source, "scheduler.fleet_lock", format!("no [[redis]] target named `{target}`")));
    }
    positive(source, "scheduler.lease".into(), s.lease)?;
    if !(s.min_factor > 0.0 && s.min_factor <= 1.0 && s.max_factor >= 1.0) {
        return Err(ConfigError::new(source, "scheduler.min_factor", "need 0 < min_factor <= 1 <= max_factor"));
    }
    Ok(())
}

fn validate_alerts(alerts: &AlertSettings, source: &str) -> Result<(), ConfigError> {
    let channel_known = |c: &str| c == "log" || alerts.channels.contains_key(c);
    for (i, c) in alerts.default_channels.iter().enumerate() {
        if !channel_known(c) {
            return Err(ConfigError::new(
                source,
                format!("alerts.default_channels[{i}]"),
                format!("no channel `{c}` in [alerts.channels]"),
            ));
        }
    }
    positive(source, "alerts.interval".into(), alerts.interval)?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, rule) in alerts.rules.iter().enumerate() {
        let key = |field: &str| format!("alerts.rules[{i}] (\"{}\").{field}", rule.name);
        let err = |field: &str, msg: String| ConfigError::new(source, key(field), msg);
        if rule.name.trim().is_empty() {
            return Err(ConfigError::new(source, format!("alerts.rules[{i}].name"), "must not be empty"));
        }
        if !seen.insert(rule.name.as_str()) {
            return Err(err("name", "another rule has this name".into()));
        }
        let condition = crate::alerting::parse(&rule.condition).map_err(|e| err("condition", e.to_string()))?;
        crate::alerting::check_ratios(&condition).map_err(|e| err("condition", e.to_string()))?;
        for t in &rule.tiers {
            if !RULE_TARGET_KINDS.contains(&t.as_str()) {
                return Err(err("tiers", format!("`{t}` is not one of {}", RULE_TARGET_KINDS.join(", "))));
            }
        }
        crate::alerting::check_template(&rule.message).map_err(|e| err("message", e.to_string()))?;
        for c in &rule.channels {
            if !channel_known(c) {
                return Err(err("channels", format!("no channel `{c}` in [alerts.channels]")));
            }
        }
        if rule.for_rounds == 0 {
            return Err(err("for", "must be at least 1 (rounds in a row)".into()));
        }
    }
    for (name, channel) in &alerts.channels {
        let err = |field: &str, msg: &str| ConfigError::new(source, format!("alerts.channels.{name}.{field}"), msg);
        match channel {
            Channel::Webhook { url, .. } | Channel::Slack { url, .. } => {
                if !(url.expose().starts_with("http://") || url.expose().starts_with("https://")) {
                    return Err(err("url", "must be an http:// or https:// URL"));
                }
            }
            Channel::Email { to, from, .. } => {
                if to.is_empty() {
                    return Err(err("to", "needs at least one recipient"));
                }
                if !from.contains('@') {
                    return Err(err("from", "must be an email address"));
                }
            }
            Channel::Log => {}
        }
    }
    Ok(())
}

fn validate(config: &Config, source: &str) -> Result<(), ConfigError> {
    let err = |key: String, msg: &str| ConfigError::new(source, key, msg);
    validate_alerts(&config.alerts, source)?;
    validate_scheduler(config, source)?;
    if config.project_name.trim().is_empty() {
        return Err(err("project_name".into(), "must not be empty"));
    }
    check_names(source, "redis", config.redis.iter().map(|t| t.name.as_str()))?;
    check_names(source, "postgres", config.postgres.iter().map(|t| t.name.as_str()))?;
    check_names(source, "memory", config.memory.iter().map(|t| t.name.as_str()))?;
    check_names(source, "http", config.http.iter().map(|t| t.name.as_str()))?;
    check_names(source, "files", config.files.iter().map(|t| t.name.as_str()))?;
    check_names(source, "logs", config.logs.iter().map(|t| t.name.as_str()))?;
    for (i, t) in config.redis.iter().enumerate() {
        if !matches!(t.url.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
            return Err(err(format!("redis[{i}].url"), "scheme must be redis://, rediss:// or redis+unix://"));
        }
        for (j, seed) in t.urls.iter().enumerate() {
            if seed.scheme() != t.url.scheme() {
                return Err(err(format!("redis[{i}].urls[{j}]"), "must use the same scheme as `url`"));
            }
        }
        positive(source, format!("redis[{i}].timeout"), t.timeout)?;
        positive(source, format!("redis[{i}].connect_timeout"), t.connect_timeout)?;
    }
    for (i, t) in config.postgres.iter().enumerate() {
        if !matches!(t.url.scheme(), "postgres" | "postgresql") {
            return Err(err(format!("postgres[{i}].url"), "scheme must be postgres://"));
        }
        let valid_ident = !t.table.is_empty()
            && t.table.split('.').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !part.starts_with(|c: char| c.is_ascii_digit())
            });
        if !valid_ident {
            return Err(err(
                format!("postgres[{i}].table"),
                "must be a plain identifier, optionally schema-qualified (letters, digits, _)",
            ));
        }
        positive(source, format!("postgres[{i}].timeout"), t.timeout)?;
        positive(source, format!("postgres[{i}].connect_timeout"), t.connect_timeout)?;
    }
    for (i, t) in config.memory.iter().enumerate() {
        if !matches!(t.url.scheme(), "http" | "https") {
            return Err(err(format!("memory[{i}].url"), "scheme must be http:// or https://"));
        }
        positive(source, format!("memory[{i}].timeout"), t.timeout)?;
    }
    for (i, t) in config.http.iter().enumerate() {
        for (field, url) in [("url", Some(&t.url)), ("metrics_url", t.metrics_url.as_ref())] {
            if let Some(url) = url
                && !matches!(url.scheme(), "http" | "https")
            {
                return Err(err(format!("http[{i}].{field}"), "scheme must be http:// or https://"));
            }
        }
        if !(100..=599).contains(&t.expect_status) {
            return Err(err(format!("http[{i}].expect_status"), "must be an HTTP status (100-599)"));
        }
        positive(source, format!("http[{i}].timeout"), t.timeout)?;
    }
    for (i, endpoint) in config.system.endpoints.iter().enumerate() {
        let valid =
            endpoint.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(err(format!("system.endpoints[{i}]"), "must be `host:port`"));
        }
    }
    positive(source, "system.timeout".into(), config.system.timeout)?;
    for (i, t) in config.postgres.iter().enumerate() {
        let c = &t.columns;
        for (field, name) in [
            ("key", &c.key),
            ("expires_at", &c.expires_at),
            ("accessed_at", &c.accessed_at),
            ("category", &c.category),
            ("project", &c.project),
        ] {
            let plain = name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !plain || (name.is_empty() && field != "project") {
                return Err(err(
                    format!("postgres[{i}].columns.{field}"),
                    "must be a plain column name (letters, digits, _)",
                ));
            }
        }
    }
    for (i, t) in config.redis.iter().enumerate() {
        for (j, rule) in t.prefixes.iter().enumerate() {
            if rule.prefix.is_empty() {
                return Err(err(
                    format!("redis[{i}].prefixes[{j}].prefix"),
                    "must not be empty: every key would match",
                ));
            }
            if rule.ttl.is_some_and(|d| d.as_secs() == 0) {
                return Err(err(format!("redis[{i}].prefixes[{j}].ttl"), "must be at least one second"));
            }
        }
    }
    for (i, t) in config.logs.iter().enumerate() {
        if t.compress_level > 9 {
            return Err(err(format!("logs[{i}].compress_level"), "must be 0 (no compression) to 9"));
        }
        if t.keep == 0 {
            return Err(err(format!("logs[{i}].keep"), "must be at least 1 (rotated logs are kept)"));
        }
        if t.pattern.is_empty() || t.pattern.contains('/') {
            return Err(err(format!("logs[{i}].pattern"), "must be a file-name glob such as `*.log`"));
        }
    }
    if !(1..=9).contains(&config.backup.level) {
        return Err(err("backup.level".into(), "must be 1 (fast) to 9 (small)"));
    }
    positive(source, "backup.bgsave_timeout".into(), config.backup.bgsave_timeout)?;
    let c = &config.cleanup;
    if c.batch_size == 0 || c.batch_size > 100_000 {
        return Err(err("cleanup.batch_size".into(), "must be between 1 and 100000"));
    }
    if c.memory_batch_size == 0 || c.memory_batch_size > 1000 {
        return Err(err("cleanup.memory_batch_size".into(), "must be between 1 and 1000"));
    }
    if !(0.0..=1.0).contains(&c.memory_similarity) || c.memory_similarity < 0.5 {
        return Err(err("cleanup.memory_similarity".into(), "must be between 0.5 and 1"));
    }
    positive(source, "cleanup.max_statement".into(), c.max_statement)?;
    if c.max_delete_share <= 0.0 {
        return Err(err("cleanup.max_delete_share".into(), "must be above 0 (0 would forbid every deletion)"));
    }
    if c.smart.moderate_usage > c.smart.aggressive_usage {
        return Err(err("cleanup.smart.moderate_usage".into(), "must not be above `aggressive_usage`"));
    }
    for (i, t) in config.redis.iter().enumerate() {
        if t.namespace.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(err(
                format!("redis[{i}].namespace"),
                "must not be empty: every key of the database would be the project's",
            ));
        }
    }
    for (name, mode) in [
        ("light", &c.modes.light),
        ("moderate", &c.modes.moderate),
        ("targeted", &c.modes.targeted),
        ("aggressive", &c.modes.aggressive),
        ("evict", &c.modes.evict),
    ] {
        // A zero idle time would select every key: an unscoped delete-everything.
        if mode.idle.is_some_and(|d| d.is_zero()) {
            return Err(err(
                format!("cleanup.modes.{name}.idle"),
                "must be greater than zero (zero selects every key)",
            ));
        }
        if mode.memory_stale.is_some_and(|d| d.is_zero()) {
            return Err(err(format!("cleanup.modes.{name}.memory_stale"), "must be greater than zero"));
        }
        if mode.memory_target_percent.is_some_and(|p| !(1.0..=100.0).contains(&p)) {
            return Err(err(format!("cleanup.modes.{name}.memory_target_percent"), "must be between 1 and 100"));
        }
    }
    let h = &config.health;
    for (key, level) in [
        ("memory_percent", h.memory_percent),
        ("disk_percent", h.disk_percent),
        ("load_per_cpu", h.load_per_cpu),
        ("redis_memory_percent", h.redis_memory_percent),
        ("postgres_connections_percent", h.postgres_connections_percent),
        ("redis_clients_percent", h.redis_clients_percent),
        ("directory_percent", h.directory_percent),
        ("gpu_temperature_celsius", h.gpu_temperature_celsius),
        ("gpu_memory_percent", h.gpu_memory_percent),
    ] {
        if !(level.warn >= 0.0 && level.warn <= level.crit) {
            return Err(err(format!("health.{key}"), "needs 0 <= warn <= crit"));
        }
    }
    if !(0.0..=1.0).contains(&h.hit_ratio_min) {
        return Err(err("health.hit_ratio_min".into(), "must be between 0 and 1"));
    }
    Ok(())
}

fn check_names<'a>(source: &str, tier: &str, names: impl Iterator<Item = &'a str>) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.enumerate() {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ConfigError::new(
                source,
                format!("{tier}[{i}].name"),
                "must be non-empty letters, digits, `-`, `_` or `.`",
            ));
        }
        if !seen.insert(name) {
            return Err(ConfigError::new(
                source,
                format!("{tier}[{i}].name"),
                format!("`{name}` is used twice in [[{tier}]]"),
            ));
        }
    }
    Ok(())
}

fn positive(source: &str, key: String, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::new(source, key, "must be greater than zero"));
    }
    Ok(())
}

fn expand_state_dir(config: &mut Config, state_dir: &Path) {
    let expand = |path: &mut PathBuf| {
        if let Some(s) = path.to_str()
            && s.contains(STATE_DIR_PLACEHOLDER)
        {
            *path = PathBuf::from(s.replace(STATE_DIR_PLACEHOLDER, &state_dir.to_string_lossy()));
        }
    };
    config.files.iter_mut().for_each(|t| expand(&mut t.path));
    config.logs.iter_mut().for_each(|t| expand(&mut t.path));
    config.system.directories.iter_mut().for_each(expand);
    expand(&mut config.backup.dir);
    config.backup.paths.iter_mut().for_each(expand);
}

impl Config {
    /// The key namespace of a Redis target: its `namespace`, else `<project_name>:`.
    pub fn redis_namespace(&self, target: &RedisTarget) -> String {
        target.namespace.clone().unwrap_or_else(|| format!("{}:", self.project_name))
    }

    /// The memory API's user id for `target`: its own, else the project name.
    pub fn memory_user_id<'a>(&'a self, target: &'a MemoryTarget) -> &'a str {
        target.user_id.as_deref().unwrap_or(&self.project_name)
    }
}

pub mod ratio;

#[cfg(test)]
mod tests;
