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
    /// cache-health warns (`drill_overdue`) when no disaster-recovery drill (`cache-backup
    /// drill`) has passed for longer than this.
    #[serde(with = "humantime_serde")]
    pub drill_max_age: Duration,
    /// Encrypt every file of every backup to these age recipients (`age1…` public keys); empty:
    /// no encryption. Only a restore needs the identity.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encrypt_to: Vec<String>,
    /// The age identity file (`age-keygen`'s output) that decrypts the backups for a restore
    /// (`restore --identity` overrides it). Keep it off the host the backups protect too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// Off-host copies: every backup is uploaded to each after it verifies, and pruned there by
    /// the same retention rules.
    #[serde(rename = "remote", skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteTarget>,
}

/// Where off-host copies of the backups go (`[[backup.remote]]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteTarget {
    /// Name, unique among the remotes (`list --remote NAME`, `restore --from-remote NAME`).
    pub name: String,
    /// The kind of storage.
    #[serde(rename = "type")]
    pub kind: RemoteKind,
    /// S3: the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// S3: a key prefix inside the bucket (e.g. `prod`); none: the bucket's root.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// S3: the endpoint, for storage other than AWS (`https://minio.example:9000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<crate::redact::SafeUrl>,
    /// S3: the region.
    #[serde(default = "default_region")]
    pub region: String,
    /// S3: the access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// S3: the secret access key; redacted everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<crate::redact::Secret>,
    /// A directory remote: the directory (a mounted NAS, another disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Time allowed for one request (one file's upload or download).
    #[serde(default = "remote_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn remote_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}

/// A remote's kind of storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteKind {
    /// S3-compatible object storage (AWS S3, MinIO, Ceph, R2...): `bucket`, `access_key_id`,
    /// `secret_access_key`, optional `endpoint`, `region`, `prefix`.
    S3,
    /// A directory with the backup directory's layout: `path`.
    Dir,
}

fn default_region() -> String {
    "us-east-1".into()
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
            drill_max_age: Duration::from_secs(35 * DAY),
            encrypt_to: Vec::new(),
            identity_file: None,
            remotes: Vec::new(),
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
