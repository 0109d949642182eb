//! `[backup]`: where backups go, what they hold, how they are compressed and kept.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DAY, STATE_DIR_PLACEHOLDER};

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
    /// `cache-backup create` applies these rules after a complete backup that verified.
    pub prune_after_create: bool,
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
            prune_after_create: true,
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
