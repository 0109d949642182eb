//! One lock per job, so two cron runs of the same job never run at once.
//!
//! The lock is an advisory `flock` on `locks/<job>.lock` in the state directory. The kernel
//! drops it when the process exits, however it exits, so a crash never leaves a stale lock. The
//! file's content names the holder (pid, host, start, command) for error messages and status.
//!
//! A lock file removed (or replaced) while its holder runs is still that holder's lock: the
//! holder keeps the removed file open and locked. Before a run proceeds on a lock newly taken
//! at the path, the open files of the host's processes are searched for a removed file of the
//! same path that someone still holds locked (as `lsof` finds deleted open files), and the run
//! is refused (or, with `--wait`, waits for that holder) exactly as if the file were still there.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::LockHeld;
use crate::state::{StateDir, create_private_dir};

/// Who holds a job's lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// When the holder took the lock.
    pub started_at: DateTime<Utc>,
    /// The holder's command (tool and subcommand).
    pub command: String,
    /// The job its run is recorded as, once its gates let it run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// What started it.
    #[serde(default)]
    pub trigger: crate::runs::Trigger,
    /// The id its run record will have, once its gates let it run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// A held job lock; released on drop.
#[derive(Debug)]
pub struct JobLock {
    file: File,
    path: PathBuf,
    holder: LockHolder,
    left: Option<LockHolder>,
}

fn lock_path(state: &StateDir, job: &str) -> PathBuf {
    state.path(&format!("locks/{job}.lock"))
}

fn open(path: &PathBuf) -> anyhow::Result<File> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening lock file `{}`", path.display()))
}

/// Whether `file` is still the file at `path` (same device and inode).
fn still_at_path(file: &File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A removed (or replaced) lock file of `path` that another process still holds locked: open on
/// the same file through `/proc/<pid>/fd`, so that its holder can be read and its lock waited
/// for. `None` when there is none, or where `/proc` cannot tell (not Linux, or processes of
/// other users, whose runs do not share this state directory's locks anyway).
fn removed_but_held(path: &std::path::Path) -> Option<File> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return None };
    let wanted = std::fs::canonicalize(dir).ok()?.join(name);
    let wanted = std::ffi::OsString::from(format!("{} (deleted)", wanted.display()));
    let me = std::process::id().to_string();
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = process.file_name();
        if pid.to_str().is_none_or(|p| p == me || !p.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted) {
                let Ok(file) = OpenOptions::new().read(true).open(fd.path()) else { continue };
                if matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)) {
                    return Some(file);
                }
            }
        }
    }
    None
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

impl JobLock {
    /// Takes `job`'s lock, or fails at once with [`LockHeld`].
    pub fn try_acquire(state: &StateDir, job: &str, command: &str) -> anyhow::Result<Self> {
        let path = lock_path(state, job);
        // A lock is only a lock while its file is the one at the path: one removed or replaced
        // between our open and our lock is taken again from the path.
        for _ in 0..3 {
            let mut file = open(&path)?;
            match file.try_lock() {
                Ok(()) if still_at_path(&file, &path) => {
                    if let Some(mut orphan) = removed_but_held(&path) {
                        return Err(LockHeld { job: job.to_owned(), holder: read_holder(&mut orphan) }.into());
                    }
                    return Self::held(file, path, command);
                }
                Ok(()) => continue,
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LockHeld { job: job.to_owned(), holder: read_holder(&mut file) }.into());
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking `{}`", path.display()));
                }
            }
        }
        anyhow::bail!("the lock file `{}` keeps being replaced: another process is removing it", path.display())
    }

    /// Takes `job`'s lock, waiting for the current holder to finish.
    pub async fn acquire_waiting(state: &StateDir, job: &str, command: &str) -> anyhow::Result<Self> {
        let path = lock_path(state, job);
        // A holder whose file was removed is waited for first (its lock ends when it does).
        while let Some(orphan) = removed_but_held(&path) {
            tokio::task::spawn_blocking(move || orphan.lock().map(|()| drop(orphan)))
                .await
                .context("waiting for the job lock")?
                .with_context(|| format!("waiting for the holder of the removed `{}`", path.display()))?;
        }
        let file = open(&path)?;
        let wait_path = path.clone();
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .context("waiting for the job lock")?
            .with_context(|| format!("locking `{}`", wait_path.display()))?;
        if !still_at_path(&file, &path) {
            // The holder's file was removed while we waited: take the lock at the path now.
            return Self::try_acquire_now(path, command).await;
        }
        Self::held(file, path, command)
    }

    async fn try_acquire_now(path: PathBuf, command: &str) -> anyhow::Result<Self> {
        let file = open(&path)?;
        let locked = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .context("waiting for the job lock")??;
        anyhow::ensure!(still_at_path(&locked, &path), "the lock file `{}` keeps being replaced", path.display());
        Self::held(locked, path, command)
    }

    fn held(mut file: File, path: PathBuf, command: &str) -> anyhow::Result<Self> {
        // A holder still named in a lock nobody held had no chance to clear it: it was killed.
        let left = read_holder(&mut file).filter(|h| h.job.is_some());
        let holder = LockHolder {
            pid: std::process::id(),
            host: crate::system::hostname(),
            started_at: Utc::now(),
            command: command.to_owned(),
            job: None,
            trigger: crate::runs::Trigger::default(),
            run_id: None,
        };
        let mut lock = Self { file, path, holder, left };
        lock.write_holder()?;
        Ok(lock)
    }

    fn write_holder(&mut self) -> anyhow::Result<()> {
        let text = serde_json::to_string(&self.holder)?;
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(text.as_bytes()))
            .with_context(|| format!("writing lock file `{}`", self.path.display()))
    }

    /// The run that held this lock before and was killed (SIGKILL, out of memory, power
    /// lost): it left its record in the file, which a run ending in any other way clears.
    pub fn left_by_killed_run(&mut self) -> Option<LockHolder> {
        self.left.take()
    }

    /// Names the run that now holds the lock (recorded as `job`, started by `trigger`, its
    /// record to have id `run_id`), so that if it is killed the next run can record it as
    /// interrupted, and so that the maintenance API can show it running.
    pub fn record_run(&mut self, job: &str, trigger: crate::runs::Trigger, run_id: &str) -> anyhow::Result<()> {
        self.holder.job = Some(job.to_owned());
        self.holder.trigger = trigger;
        self.holder.run_id = Some(run_id.to_owned());
        self.write_holder()
    }

    /// Who holds `job`'s lock now, if anyone. An empty lock file is held by no one (a holder
    /// writes itself into the file as it takes the lock, and clears it before letting go), so
    /// it is not probed: probing takes the lock for an instant, which a run starting in that
    /// instant would find held; the maintenance API and status probe every lock often.
    pub fn holder(state: &StateDir, job: &str) -> anyhow::Result<Option<LockHolder>> {
        let path = lock_path(state, job);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == 0 => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("probing `{}`", path.display())),
        }
        let mut file = open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => Ok(read_holder(&mut file)),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("probing `{}`", path.display())),
        }
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Clear the holder before the kernel releases the lock when the file closes.
        if let Err(e) = self.file.set_len(0) {
            tracing::debug!("clearing lock file `{}`: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_with_holder_until_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let first = JobLock::try_acquire(&state, "job", "tool cmd").unwrap();
        let err = JobLock::try_acquire(&state, "job", "tool other").unwrap_err();
        let held = err.downcast_ref::<LockHeld>().unwrap();
        assert_eq!(held.holder.as_ref().unwrap().pid, std::process::id());
        assert_eq!(held.holder.as_ref().unwrap().command, "tool cmd");
        assert_eq!(JobLock::holder(&state, "job").unwrap().unwrap().command, "tool cmd");
        // Another job is independent.
        let _other = JobLock::try_acquire(&state, "job2", "x").unwrap();
        drop(first);
        assert_eq!(JobLock::holder(&state, "job").unwrap(), None);
        JobLock::try_acquire(&state, "job", "tool again").unwrap();
    }

    #[test]
    fn a_lock_file_replaced_at_its_path_is_no_longer_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/job.lock");
        let file = open(&path).unwrap();
        assert!(still_at_path(&file, &path));
        std::fs::remove_file(&path).unwrap();
        assert!(!still_at_path(&file, &path), "a removed file is no lock");
        std::fs::write(&path, "").unwrap();
        assert!(!still_at_path(&file, &path), "another file at the path is another lock");
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let lock = JobLock::try_acquire(&state, "job", "x").unwrap();
        assert!(still_at_path(&lock.file, &path));
    }

    /// Another process (util-linux `flock`, as a run would) holds the lock; the file is then
    /// removed, and replaced, under it: no second run may take the lock until the holder ends.
    #[tokio::test]
    async fn a_lock_file_removed_under_its_holder_still_keeps_others_out() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        let path = lock_path(&state, "job");
        create_private_dir(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"pid":1,"host":"h","started_at":"2026-01-01T00:00:00Z","command":"holder"}"#)
            .unwrap();
        let mut holder = std::process::Command::new("flock")
            .args(["--nonblock", "--no-fork"])
            .arg(&path)
            .args(["sleep", "30"])
            .spawn()
            .expect("util-linux flock");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while JobLock::holder(&state, "job").unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "flock never took the lock");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::remove_file(&path).unwrap();
        let err = JobLock::try_acquire(&state, "job", "second").unwrap_err();
        let held = err.downcast_ref::<LockHeld>().expect("the removed file's holder still holds the job");
        assert_eq!(held.holder.as_ref().unwrap().command, "holder");
        // Still refused after a third party puts a new file at the path.
        std::fs::write(&path, "").unwrap();
        assert!(JobLock::try_acquire(&state, "job", "third").unwrap_err().downcast_ref::<LockHeld>().is_some());
        // `--wait` waits for the holder of the removed file, then runs.
        let waiting = tokio::spawn({
            let state = StateDir::open(dir.path().to_path_buf()).unwrap();
            async move { JobLock::acquire_waiting(&state, "job", "waiter").await.map(|_lock| ()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "a waiter must wait for the removed file's holder");
        holder.kill().unwrap();
        holder.wait().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
        JobLock::try_acquire(&state, "job", "after").unwrap();
    }
}
