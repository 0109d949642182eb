//! The host: CPU load, memory, disks, directory sizes, systemd units, TCP endpoints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The first `name` in a directory of `PATH`: the one PATH lookup of the toolkit.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = crate::env::EnvVars::var_os(crate::env::EnvVars::PATH).unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The name of user `uid` in `/etc/passwd` (`None` when it has none there: a directory service
/// user, or a uid of no user).
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// User `uid` for a message: `` `redis` (uid 109) ``, or `uid 109`.
pub fn user_label(uid: u32) -> String {
    user_name(uid).map_or_else(|| format!("uid {uid}"), |name| format!("`{name}` (uid {uid})"))
}

/// This host's name (`unknown` when it cannot be read).
pub fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into())
}

/// CPU and memory of the host at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct HostSnapshot {
    /// Logical CPUs.
    pub cpus: usize,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Total memory, bytes.
    pub memory_total: u64,
    /// Memory in use (total minus available), bytes.
    pub memory_used: u64,
    /// Memory in use, percent.
    pub memory_percent: f64,
    /// Total swap, bytes.
    pub swap_total: u64,
    /// Swap in use, bytes.
    pub swap_used: u64,
    /// Seconds since boot.
    pub uptime_seconds: u64,
}

/// Reads CPU count, load and memory.
pub fn host() -> anyhow::Result<HostSnapshot> {
    let mut sys = sysinfo::System::new().context("reading system information")?;
    sys.refresh_memory();
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let load = sysinfo::System::load_average().context("reading the load average")?;
    let total = sys.total_memory();
    let used = total.saturating_sub(sys.available_memory());
    Ok(HostSnapshot {
        cpus: sys.cpus().len().max(1),
        load: [load.one, load.five, load.fifteen],
        memory_total: total,
        memory_used: used,
        memory_percent: percent(used, total),
        swap_total: sys.total_swap(),
        swap_used: sys.used_swap(),
        uptime_seconds: sysinfo::System::uptime().unwrap_or(0),
    })
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// Space on the file system holding a path, as `df` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct DiskUsage {
    /// The path asked about.
    pub path: PathBuf,
    /// Size of the file system, bytes.
    pub total_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
    /// `used / (used + available)`, percent, like `df`'s Use%.
    pub used_percent: f64,
}

/// Reads the usage of the file system holding `path` (statvfs).
pub fn disk_usage(path: &Path) -> anyhow::Result<DiskUsage> {
    let st = rustix::fs::statvfs(path).with_context(|| format!("statvfs `{}`", path.display()))?;
    let block = st.f_frsize.max(1);
    let total = st.f_blocks * block;
    let used = st.f_blocks.saturating_sub(st.f_bfree) * block;
    let available = st.f_bavail * block;
    Ok(DiskUsage {
        path: path.to_path_buf(),
        total_bytes: total,
        used_bytes: used,
        available_bytes: available,
        used_percent: percent(used, used + available),
    })
}

/// The size of a directory tree, like `du -s`, without following symbolic links.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirUsage {
    /// The directory.
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Bytes allocated on disk (what `du` shows).
    pub allocated_bytes: u64,
    /// Sum of file lengths.
    pub apparent_bytes: u64,
    /// Regular files.
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Modification time of the oldest file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<DateTime<Utc>>,
    /// Modification time of the newest file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<DateTime<Utc>>,
    /// Entries that could not be read.
    pub errors: u64,
    /// False when the walk stopped at its deadline; the figures are then lower bounds.
    pub complete: bool,
}

/// Walks `path` until done or until `deadline`.
pub fn dir_usage(path: &Path, deadline: Instant) -> DirUsage {
    dir_usage_in(&crate::config::FileScope { base: path.to_path_buf(), pattern: Vec::new() }, deadline)
}

/// [`dir_usage`] of what `scope` covers: only the entries its pattern matches in its base
/// (and what is under them) are counted, and the walk enters no directory that cannot lead
/// to one.
pub fn dir_usage_in(scope: &crate::config::FileScope, deadline: Instant) -> DirUsage {
    use std::os::unix::fs::MetadataExt;
    let path = scope.base.as_path();
    let mut usage = DirUsage { path: path.to_path_buf(), complete: true, ..DirUsage::default() };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => usage.exists = true,
        Ok(_) | Err(_) => return usage,
    }
    let relative = |e: &walkdir::DirEntry| e.path().strip_prefix(path).map(Path::to_path_buf).unwrap_or_default();
    let walk = walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || scope.may_hold(&relative(e)));
    for (i, entry) in walk.enumerate() {
        if i % 1024 == 0 && Instant::now() >= deadline {
            usage.complete = false;
            break;
        }
        let Ok(entry) = entry else {
            usage.errors += 1;
            continue;
        };
        if !scope.is_whole() && (entry.depth() == 0 || !scope.contains(&relative(&entry))) {
            continue; // The base itself, or a directory on the way to matches.
        }
        let Ok(meta) = entry.metadata() else {
            usage.errors += 1;
            continue;
        };
        usage.allocated_bytes += meta.blocks() * 512;
        if meta.is_dir() {
            usage.dirs += 1;
        } else if meta.is_file() {
            usage.files += 1;
            usage.apparent_bytes += meta.len();
            if let Ok(modified) = meta.modified() {
                let at = DateTime::<Utc>::from(modified);
                usage.oldest = Some(usage.oldest.map_or(at, |o| o.min(at)));
                usage.newest = Some(usage.newest.map_or(at, |n| n.max(at)));
            }
        }
    }
    usage
}

/// The state of a systemd unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum UnitState {
    /// `systemctl is-active` says `active`.
    Active,
    /// Any other answer: `inactive`, `failed`, `activating`...
    NotActive(String),
    /// The state could not be learnt (no systemd, timeout).
    Unknown(String),
}

/// Asks systemd for `unit`'s state, within `timeout`.
pub async fn unit_state(unit: &str, timeout: Duration) -> UnitState {
    let mut command = tokio::process::Command::new("systemctl");
    command.args(["is-active", "--", unit]).kill_on_drop(true).stdin(std::process::Stdio::null());
    match tokio::time::timeout(timeout, command.output()).await {
        Err(_) => {
            UnitState::Unknown(format!("systemctl gave no answer within {}", humantime::format_duration(timeout)))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            UnitState::Unknown("systemctl not found (no systemd on this host)".into())
        }
        Ok(Err(e)) => UnitState::Unknown(format!("running systemctl: {e}")),
        Ok(Ok(output)) => {
            let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            match answer.as_str() {
                "active" => UnitState::Active,
                "" => UnitState::Unknown(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
                other if other.contains("System has not been booted with systemd") => {
                    UnitState::Unknown(other.to_owned())
                }
                other => UnitState::NotActive(other.to_owned()),
            }
        }
    }
}

/// Opens a TCP connection to `endpoint` (`host:port`) within `timeout`; returns the connect time.
pub async fn tcp_connect(endpoint: &str, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(endpoint)).await {
        Ok(Ok(_stream)) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("connecting to `{endpoint}`"))),
        Err(_) => anyhow::bail!("connecting to `{endpoint}`: no answer within {}", humantime::format_duration(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_usage_counts_files_and_respects_deadline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 5000]).unwrap();
        std::fs::write(dir.path().join("sub/b"), b"xyz").unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("link")).unwrap();
        let usage = dir_usage(dir.path(), Instant::now() + Duration::from_secs(10));
        assert!(usage.exists && usage.complete);
        assert_eq!((usage.files, usage.dirs, usage.apparent_bytes), (2, 2, 5003));
        let missing = dir_usage(&dir.path().join("nope"), Instant::now() + Duration::from_secs(1));
        assert!(!missing.exists);
        let late = dir_usage(dir.path(), Instant::now() - Duration::from_secs(1));
        assert!(!late.complete);
    }

    #[test]
    fn disk_usage_of_root_is_sane() {
        let usage = disk_usage(Path::new("/")).unwrap();
        assert!(usage.total_bytes > 0 && usage.used_percent >= 0.0 && usage.used_percent <= 100.0);
    }
}
