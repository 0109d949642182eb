//! `[[files]]` and `[[logs]]`: the directory targets, and [`DirTarget`] over both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::from_fields;

/// What a directory target covers: `base`, or only what `pattern` matches inside it (a path
/// given as `/tmp/benchmark_*` is the base `/tmp` and the pattern `benchmark_*`: the matching
/// entries and everything under them, as `find /tmp/benchmark_* -type f` would see; never the
/// rest of the base).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileScope {
    /// The directory walked.
    pub base: PathBuf,
    /// Glob segments (`*`, `?`, `[...]`), one per path component below `base`; empty: all.
    pub pattern: Vec<String>,
}

impl FileScope {
    /// The scope of `path`: its components up to the first that holds a glob character, and
    /// the rest as the pattern.
    pub fn of(path: &Path) -> Self {
        let is_glob = |c: &str| c.contains(['*', '?', '[']);
        let mut base = PathBuf::new();
        let mut pattern = Vec::new();
        for component in path.components() {
            let text = component.as_os_str().to_string_lossy().into_owned();
            if pattern.is_empty() && !is_glob(&text) {
                base.push(component);
            } else {
                pattern.push(text);
            }
        }
        Self { base, pattern }
    }

    /// Whether the entry at `relative` (to `base`) is in the scope: every component of the
    /// pattern matches, and what is below a matching entry is in too.
    pub fn contains(&self, relative: &Path) -> bool {
        let parts: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        parts.len() >= self.pattern.len()
            && self.pattern.iter().zip(&parts).all(|(p, c)| crate::scan::glob_match(p.as_bytes(), c.as_bytes()))
    }

    /// Whether a walk must enter the directory at `relative`: it is in the scope, or it may
    /// lead to entries that are.
    pub fn may_hold(&self, relative: &Path) -> bool {
        let parts: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        self.contains(relative)
            || (parts.len() < self.pattern.len()
                && self.pattern.iter().zip(&parts).all(|(p, c)| crate::scan::glob_match(p.as_bytes(), c.as_bytes())))
    }

    /// Whether the scope is all of `base`.
    pub fn is_whole(&self) -> bool {
        self.pattern.is_empty()
    }
}

/// A directory of cache files.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesTarget {
    /// Name, unique within the tier.
    pub name: String,
    /// The directory; `{state_dir}` expands to the state directory. Its last components may
    /// be a glob (`/tmp/benchmark_*`): then only what it matches is the target (see
    /// [`FileScope`]).
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
    /// Rotated files older than this are removed, whatever `keep` says; so is a live log not
    /// written for this long that no process holds open (an application long gone).
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// A live log not written for this long, that no process holds open, is compressed into
    /// its first rotation with no new empty log left behind (an empty one is removed): seed
    /// 004's inactive logs. The active logs are never touched by this.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub compress_inactive: Option<Duration>,
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
    /// Its directory (as configured: possibly a glob).
    fn path(&self) -> &Path;
    /// Its size cap.
    fn max_size(&self) -> Option<ByteSize>;
    /// What it covers: a directory, or what a glob matches in one.
    fn scope(&self) -> FileScope {
        FileScope { base: self.path().to_path_buf(), pattern: Vec::new() }
    }
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
    fn scope(&self) -> FileScope {
        FileScope::of(&self.path)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_path_scopes_the_target_to_what_it_matches() {
        let scope = FileScope::of(Path::new("/tmp/benchmark_*"));
        assert_eq!(
            (scope.base.as_path(), scope.pattern.as_slice()),
            (Path::new("/tmp"), &["benchmark_*".to_owned()][..])
        );
        assert!(scope.contains(Path::new("benchmark_1")));
        assert!(scope.contains(Path::new("benchmark_1/deep/file.json")));
        assert!(!scope.contains(Path::new("other.txt")));
        assert!(!scope.contains(Path::new("x/benchmark_1")));
        assert!(!scope.may_hold(Path::new("x")));
        let two = FileScope::of(Path::new("/srv/cache/*/tmp-*"));
        assert_eq!(two.base, Path::new("/srv/cache"));
        assert!(two.may_hold(Path::new("job1")) && !two.contains(Path::new("job1")));
        assert!(two.contains(Path::new("job1/tmp-3")) && !two.contains(Path::new("job1/keep")));
        let whole = FileScope::of(Path::new("/var/cache/app"));
        assert!(whole.is_whole() && whole.contains(Path::new("any/thing")));
    }
}
