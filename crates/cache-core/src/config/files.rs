//! `[[files]]` and `[[logs]]`: the directory targets, and [`DirTarget`] over both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::from_fields;

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

impl FilesTarget {
    /// A target with just a name and a directory, every other field at its default.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self { path: path.clone(), ..from_fields(&[("name", &name.into()), ("path", &path.to_string_lossy())]) }
    }
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

impl LogsTarget {
    /// A target with just a name and a directory, every other field at its default.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self { path: path.clone(), ..from_fields(&[("name", &name.into()), ("path", &path.to_string_lossy())]) }
    }
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
