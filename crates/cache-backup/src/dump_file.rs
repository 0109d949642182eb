//! What `--replace-dump` needs of the file system and the process table: the owner, group and
//! mode a new dump file must have to be read by its server (those of the file it replaces, or
//! of the server's directory when there is none yet), and the exact command that restarts a
//! server whose `DEBUG RELOAD` is refused.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::Context as _;

/// The owner, group and mode a file written in place of a dump file gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
}

impl Ownership {
    /// Those of `dump`, or, when there is no such file yet, of its directory (without the
    /// execute bits): what the server wrote, or would write, there.
    pub fn of(dump: &Path) -> anyhow::Result<Self> {
        match std::fs::metadata(dump) {
            Ok(m) => Ok(Self { uid: m.uid(), gid: m.gid(), mode: m.mode() & 0o7777 }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = dump.parent().unwrap_or(Path::new("."));
                let m = std::fs::metadata(dir).with_context(|| format!("reading `{}`", dir.display()))?;
                Ok(Self { uid: m.uid(), gid: m.gid(), mode: m.mode() & 0o666 })
            }
            Err(e) => Err(e).with_context(|| format!("reading `{}`", dump.display())),
        }
    }

    /// Gives the open file `path` this owner, group and mode.
    pub fn apply(self, file: &std::fs::File, path: &Path) -> anyhow::Result<()> {
        let m = file.metadata()?;
        if (m.uid(), m.gid()) != (self.uid, self.gid) {
            std::os::unix::fs::fchown(file, Some(self.uid), Some(self.gid)).with_context(|| {
                format!(
                    "giving `{}` the owner {}:{} of the dump file it replaces, so that the server can read it (run \
                     as root or as the server's user)",
                    path.display(),
                    self.uid,
                    self.gid
                )
            })?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .with_context(|| format!("giving `{}` mode {:04o}", path.display(), self.mode))
    }
}

/// The user name of `uid` (from `/etc/passwd`), else the number.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_owned())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Single-quoted for sh where needed.
fn quoted(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=@".contains(c)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command that restarts the local server whose INFO is `info` so that it loads its new
/// dump file: `systemctl restart UNIT` for a server in a systemd service, else a `SHUTDOWN
/// NOSAVE` (nothing written over the new dump) and the server started again as it was (its
/// executable and configuration file, as its user). `None` when the server is not on this host
/// as far as `/proc` says.
pub fn restart_command(info: &BTreeMap<String, String>) -> Option<String> {
    let pid: u32 = info.get("process_id")?.parse().ok()?;
    let proc_dir = Path::new("/proc").join(pid.to_string());
    if let Ok(cgroup) = std::fs::read_to_string(proc_dir.join("cgroup"))
        && let Some(unit) = cgroup.lines().find_map(|l| l.rsplit('/').next().filter(|u| u.ends_with(".service")))
    {
        return Some(format!("systemctl restart {}", quoted(unit)));
    }
    let uid = std::fs::metadata(&proc_dir).ok()?.uid();
    let executable = info
        .get("executable")
        .filter(|e| !e.is_empty())
        .cloned()
        .or_else(|| std::fs::read_link(proc_dir.join("exe")).ok().map(|p| p.display().to_string()))?;
    let config = info.get("config_file").filter(|c| !c.is_empty())?;
    let port = info.get("tcp_port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
    let shutdown = match port {
        Some(port) => format!("redis-cli -p {port} shutdown nosave"),
        None => format!("kill {pid}"),
    };
    let ours = std::fs::metadata("/proc/self").ok()?.uid();
    let as_user = if uid == ours { String::new() } else { format!("runuser -u {} -- ", quoted(&user_name(uid))) };
    Some(format!("{shutdown} && {as_user}{} {}", quoted(&executable), quoted(config)))
}
