//! The state directory: JSON documents and JSON Lines histories, written safely.
//!
//! Resolved as the first of `--state-dir`, `CACHE_STATE_DIR`, `$STATE_DIRECTORY` (systemd),
//! `/var/lib/cache-toolkit` for root, `$XDG_STATE_HOME/cache-toolkit`,
//! `~/.local/state/cache-toolkit`. Directories are 0700 and files 0600. Every document carries
//! `schema_version`; every write is atomic (temp file in the same directory, fsync, rename, fsync
//! of the directory); histories are appended one line at a time. A file that cannot be parsed is
//! a [`StateError`] naming it, and it is never replaced; a directory that cannot be used at all
//! is a [`StateDirError`].
//!
//! Histories stay bounded. An append rotates a history past [`ROTATE_BYTES`], or whose first
//! record is from an earlier month, to a [`Segment`] (`runs.2026-11.001.jsonl`) under an `flock`
//! on the file, so concurrent appenders neither lose a line nor rotate twice. Readers read the
//! current file and the segments their [`Span`] reaches, newest first, up to a byte cap
//! ([`READ_CAP_BYTES`]), and skip bad lines (counted, with a warning naming the file) instead
//! of refusing the file; what the cap leaves unread is a warning too. Monthly archival
//! ([`StateDir::archive_histories`]) compresses the segments of past months and removes those
//! past the retention ([`KEEP_MONTHS`]).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Env;
use crate::env::EnvVars;
use crate::error::{StateDirError, StateError};
use crate::output::bytes;
use crate::redact;

/// The schema version written into every state document.
pub const SCHEMA_VERSION: u64 = 1;

/// An opened state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
    /// Histories past this size are rotated at the next append ([`ROTATE_BYTES`]).
    rotate_bytes: u64,
}

/// Picks the state directory from the flag, the environment and the user.
pub fn resolve(explicit: Option<&Path>, env: &dyn Env) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env.var(EnvVars::CACHE_STATE_DIR) {
        return Ok(PathBuf::from(path));
    }
    if let Some(list) = env.var(EnvVars::STATE_DIRECTORY) {
        // systemd passes a colon-separated list when several directories are configured.
        if let Some(first) = list.split(':').find(|s| !s.is_empty()) {
            return Ok(PathBuf::from(first));
        }
    }
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/cache-toolkit"));
    }
    if let Some(xdg) = env.var(EnvVars::XDG_STATE_HOME) {
        return Ok(Path::new(&xdg).join("cache-toolkit"));
    }
    let home = env.var(EnvVars::HOME).ok_or_else(|| StateDirError {
        path: PathBuf::from("~/.local/state/cache-toolkit"),
        message: "cannot be found: HOME is not set".into(),
    })?;
    Ok(Path::new(&home).join(".local/state/cache-toolkit"))
}

impl StateDir {
    /// Opens (creating, mode 0700) the state directory at `root`. A directory that cannot be
    /// created, is something else, or is not writable is a [`StateDirError`].
    pub fn open(root: PathBuf) -> anyhow::Result<Self> {
        let unusable = |message: String| StateDirError { path: root.clone(), message };
        match fs::metadata(&root) {
            Ok(meta) if !meta.is_dir() => return Err(unusable("is not a directory".into()).into()),
            Ok(_) => {}
            // Missing, or under something that is not a directory: creating it says which.
            Err(_) => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&root)
                    .map_err(|e| unusable(format!("cannot be created ({e})")))?;
            }
        }
        // Checked now, not at the first write: a run that cannot record itself must not start.
        rustix::fs::access(&root, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK)
            .map_err(|e| unusable(format!("is not writable ({e})")))?;
        Ok(Self { root, rotate_bytes: ROTATE_BYTES })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `rel` inside the state directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Reads a JSON document; `Ok(None)` when it does not exist.
    ///
    /// A document that is not valid JSON, lacks `schema_version`, has a newer one, or does not
    /// match `T` is a [`StateError`], and the file is left untouched.
    pub fn read_json<T: DeserializeOwned>(&self, rel: &str) -> anyhow::Result<Option<T>> {
        let path = self.path(rel);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StateError { path, message: format!("cannot be read: {e}") }.into());
            }
        };
        let corrupt = |message: String| StateError { path: path.clone(), message };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("is not valid JSON ({e})")))?;
        check_version(&value).map_err(corrupt)?;
        let doc =
            serde_json::from_value(value).map_err(|e| corrupt(format!("does not have the expected shape ({e})")))?;
        Ok(Some(doc))
    }

    /// Writes a JSON document atomically, adding `schema_version`.
    pub fn write_json<T: Serialize>(&self, rel: &str, doc: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&versioned(doc)?)? + "\n";
        let path = self.path(rel);
        write_atomic(&path, text.as_bytes())?;
        if let Some(dir) = path.parent() {
            remove_abandoned_temporaries(dir);
        }
        Ok(())
    }

    /// Appends one JSON line (with `schema_version`) to a history file.
    ///
    /// Under an exclusive `flock` on the file (one appender at a time checks, rotates and
    /// writes), a history past its size bound ([`ROTATE_BYTES`]) or whose first record is from
    /// an earlier calendar month (UTC) is first renamed to a segment (see [`Segment`]) and the
    /// line starts a fresh file. A rotation that cannot be made is a warning, and the line is
    /// appended to the file as it is.
    pub fn append_jsonl<T: Serialize>(&self, rel: &str, record: &T) -> anyhow::Result<()> {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        let mut line = serde_json::to_string(&versioned(record)?)?;
        line = redact::scrub(&line).into_owned();
        line.push('\n');
        let rotates = !NOT_ROTATED.contains(&rel);
        let (mut file, rotated) = self.open_for_append(&path, rotates)?;
        cut_torn_tail(&file, &path)?;
        // One write call per line: with O_APPEND, concurrent writers never interleave a line;
        // synced, so a crash after the call never leaves half of it.
        file.write_all(line.as_bytes()).with_context(|| format!("appending to history `{}`", path.display()))?;
        file.sync_data().with_context(|| format!("syncing history `{}`", path.display()))?;
        if rotated {
            // The fresh file's name, like the segment's, survives a crash.
            sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        }
        Ok(())
    }

    /// The bound past which [`StateDir::append_jsonl`] rotates a history: [`ROTATE_BYTES`]
    /// unless [`StateDir::with_rotate_bytes`] set another.
    pub fn rotate_bytes(&self) -> u64 {
        self.rotate_bytes
    }

    /// This state directory with histories rotated past `bytes` instead of [`ROTATE_BYTES`]
    /// (tests and drills that need rotations without writing 32 MiB).
    pub fn with_rotate_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = bytes.max(1);
        self
    }

    /// Opens the history at `path` for one append, locked, rotating it first when it is due.
    /// Returns the file and whether a rotation was made.
    fn open_for_append(&self, path: &Path, rotates: bool) -> anyhow::Result<(File, bool)> {
        let mut rotated = false;
        for attempt in 0.. {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("opening history `{}`", path.display()))?;
            file.lock().with_context(|| format!("locking history `{}`", path.display()))?;
            // Past a few rounds (a history rotated again and again under us, which one
            // rotation per append cannot do), the line goes where we stand: never lost.
            let settled = attempt >= 8;
            // Rotated (or replaced) while we waited for the lock: the file at the path now.
            if !settled && !is_at(&file, path) {
                continue;
            }
            if rotates && !rotated && !settled {
                let now = crate::clock::now().unwrap_or_else(|_| Utc::now());
                match self.rotation_due(&file, now) {
                    Ok(None) => {}
                    Ok(Some(due)) => match rotate(path, &due) {
                        Ok(segment) => {
                            tracing::info!(
                                "history `{}`: rotated to `{}` ({})",
                                path.display(),
                                segment.display(),
                                due.why
                            );
                            rotated = true;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!("history `{}`: not rotated ({e:#}); appending to it", path.display());
                        }
                    },
                    Err(e) => {
                        tracing::warn!(
                            "history `{}`: cannot tell whether it is due for rotation ({e})",
                            path.display()
                        );
                    }
                }
            }
            return Ok((file, rotated));
        }
        unreachable!("the loop returns")
    }

    /// Whether the history open as `file` is due for rotation at `now`, and into which month.
    fn rotation_due(&self, file: &File, now: DateTime<Utc>) -> std::io::Result<Option<Due>> {
        let meta = file.metadata()?;
        let len = meta.len();
        if len == 0 {
            return Ok(None);
        }
        // The month the file started in: its first record's, or (no record says when) its
        // creation time's, or its last change's.
        let started = first_stamp(file)?
            .or_else(|| meta.created().ok().map(DateTime::<Utc>::from))
            .or_else(|| meta.modified().ok().map(DateTime::<Utc>::from));
        let month = started.map_or_else(|| Month::of(now), Month::of);
        if len > self.rotate_bytes {
            let why = format!("{} over the bound of {}", bytes(len), bytes(self.rotate_bytes));
            return Ok(Some(Due { month, why }));
        }
        if month < Month::of(now) {
            return Ok(Some(Due {
                month,
                why: format!("its first record is from {month}, before {}", Month::of(now)),
            }));
        }
        Ok(None)
    }

    /// Removes a document; a missing one is fine.
    pub fn remove(&self, rel: &str) -> anyhow::Result<()> {
        match fs::remove_file(self.path(rel)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing `{}`", self.path(rel).display()))
            }
            _ => Ok(()),
        }
    }

    /// A history as it stands: its segments, oldest first, and its current file, open. The
    /// current file is opened before the segments are listed and checked to still be at its
    /// path after, so a rotation meanwhile is seen (the listing is taken again): the segments
    /// and the current file never miss or repeat a line.
    pub fn history_files(&self, rel: &str) -> anyhow::Result<HistoryFiles> {
        let path = self.path(rel);
        for _ in 0..8 {
            let current = match File::open(&path) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(StateError { path, message: format!("cannot be read: {e}") }.into());
                }
            };
            let segments = segments_of(&path)
                .map_err(|e| StateError { path: path.clone(), message: format!("cannot list its segments: {e}") })?;
            let settled = match &current {
                Some(file) => is_at(file, &path),
                None => !path.exists(),
            };
            if settled {
                return Ok(HistoryFiles { path, segments, current });
            }
        }
        Err(StateError { path, message: "keeps being rotated while it is read".into() }.into())
    }

    /// Reads a history within `span`, newest first, until `max_bytes` of lines are read (a
    /// compressed segment's counted uncompressed), across the current file and the segments
    /// the span reaches. Returns the records, oldest first, and what was left out: bad lines
    /// (skipped and counted, never an error) and what the cap left unread. Logs nothing; the
    /// `read_jsonl*` functions log what this returns.
    pub fn read_history<T: DeserializeOwned>(
        &self,
        rel: &str,
        span: Span,
        max_bytes: u64,
    ) -> anyhow::Result<History<T>> {
        let files = self.history_files(rel)?;
        let mut out = History {
            records: Vec::new(),
            path: files.path.clone(),
            bad_lines: 0,
            bad_bytes: 0,
            first_bad: None,
            read_bytes: 0,
            unread_bytes: 0,
            unread_files: 0,
            cap: max_bytes,
        };
        let mut cutoff = match span {
            Span::Since(t) => Some(t),
            Span::All | Span::Last(_) => None,
        };
        let mut budget = max_bytes;
        // Newest first: the current file, then the segments from the newest.
        let mut sources: Vec<Source<'_>> = files.current.iter().map(|f| Source::Current(f, &files.path)).collect();
        sources.extend(files.segments.iter().rev().map(Source::Segment));
        let mut parts: Vec<Vec<(Option<DateTime<Utc>>, T)>> = Vec::new();
        for source in &sources {
            if let (Some(c), Source::Segment(s)) = (cutoff, source)
                && s.month.next().start() <= c
            {
                // All of this segment is older than the span, and every older one too.
                break;
            }
            let size = source.len();
            if size == 0 {
                continue;
            }
            if budget == 0 {
                out.unread_bytes += size;
                out.unread_files += 1;
                continue;
            }
            let start = size.saturating_sub(budget);
            let Some(reader) = source.open_at(start).map_err(|e| StateError {
                path: source.path().to_path_buf(),
                message: format!("cannot be read: {e}"),
            })?
            else {
                continue;
            };
            let label = match source {
                Source::Current(..) => String::new(),
                Source::Segment(s) => {
                    format!("`{}` ", s.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
                }
            };
            let part = read_lines(reader.take(size - start), start > 0, &label, &mut out).map_err(|e| StateError {
                path: source.path().to_path_buf(),
                message: format!("cannot be read: {e}"),
            })?;
            budget = budget.saturating_sub(size - start);
            out.read_bytes += size - start;
            if start > 0 {
                out.unread_bytes += start;
                out.unread_files += 1;
            }
            if let (Span::Last(d), None) = (span, cutoff) {
                cutoff = part.iter().filter_map(|(t, _)| *t).max().map(|newest| newest - d);
            }
            parts.push(part);
        }
        out.records = parts
            .into_iter()
            .rev()
            .flatten()
            .filter(|(t, _)| match (cutoff, t) {
                (Some(c), Some(t)) => *t >= c,
                _ => true,
            })
            .map(|(_, r)| r)
            .collect();
        Ok(out)
    }

    /// Reads the records of a history, across its segments, newest first up to
    /// [`READ_CAP_BYTES`]. Bad lines are skipped with a warning naming the file; what the cap
    /// left unread is a warning too.
    pub fn read_jsonl<T: DeserializeOwned>(&self, rel: &str) -> anyhow::Result<Vec<T>> {
        Ok(self.read_history(rel, Span::All, READ_CAP_BYTES)?.logged(true).records)
    }

    /// Reads the records of a history from `since` on (records that say when they are from;
    /// the others are kept), across the segments that reach back that far, up to `max_bytes`.
    /// Bad lines and what the cap left unread of the span are warnings.
    pub fn read_jsonl_since<T: DeserializeOwned>(
        &self,
        rel: &str,
        since: DateTime<Utc>,
        max_bytes: u64,
    ) -> anyhow::Result<Vec<T>> {
        Ok(self.read_history(rel, Span::Since(since), max_bytes)?.logged(true).records)
    }

    /// Reads the last `span` of a history, counted back from its newest record (a history
    /// that stopped still has its last days), up to `max_bytes`, like
    /// [`StateDir::read_jsonl_since`].
    pub fn read_jsonl_last<T: DeserializeOwned>(
        &self,
        rel: &str,
        span: chrono::Duration,
        max_bytes: u64,
    ) -> anyhow::Result<Vec<T>> {
        Ok(self.read_history(rel, Span::Last(span), max_bytes)?.logged(true).records)
    }

    /// Reads the records of the last `max_bytes` of a history, across its segments (the line
    /// cut at the start is left out): for readers that need only recent records of a growing
    /// file. Bad lines are warnings; what lies before the tail is left unread by design.
    pub fn read_jsonl_tail<T: DeserializeOwned>(&self, rel: &str, max_bytes: u64) -> anyhow::Result<Vec<T>> {
        Ok(self.read_history(rel, Span::All, max_bytes)?.logged(false).records)
    }

    /// Reads only the last good record of a JSON Lines history (from the end of the file, so
    /// the cost does not grow with the history); `Ok(None)` when there is none. Bad lines at
    /// the end (a torn append) are skipped with a warning, like [`StateDir::read_jsonl`]'s. A
    /// current file without a good record (just rotated, or garbage) gives the newest
    /// uncompressed segment's last record.
    pub fn read_last_jsonl<T: DeserializeOwned>(&self, rel: &str) -> anyhow::Result<Option<T>> {
        let files = self.history_files(rel)?;
        if let Some(file) = &files.current
            && let Some(record) = last_record(file, &files.path)?
        {
            return Ok(Some(record));
        }
        if let Some(segment) = files.segments.iter().rev().find(|s| !s.compressed)
            && let Ok(file) = File::open(&segment.path)
        {
            return last_record(&file, &segment.path);
        }
        Ok(None)
    }

    /// Monthly archival of every history in the state directory (its files and those of its
    /// subdirectories): segments of months before `now`'s are compressed (`.gz`, written as
    /// `.gz.tmp`, synced, renamed, then the plain segment removed), and segments more than
    /// `keep_months` months before `now`'s month are removed. What a killed run left (a
    /// `.gz.tmp`, or a `.gz` beside its plain segment) is cleaned up first. Current files are
    /// never touched.
    pub fn archive_histories(&self, now: DateTime<Utc>, keep_months: u32) -> anyhow::Result<Archived> {
        let this_month = Month::of(now);
        let mut done = Archived::default();
        let mut dirs = vec![self.root.clone()];
        for entry in fs::read_dir(&self.root).with_context(|| format!("listing `{}`", self.root.display()))? {
            let entry = entry.with_context(|| format!("listing `{}`", self.root.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !entry.file_name().to_string_lossy().starts_with('.') {
                dirs.push(entry.path());
            }
        }
        for dir in dirs {
            let mut found: std::collections::BTreeMap<(String, Month, u32), [bool; 3]> = Default::default();
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("listing `{}`", dir.display())),
            };
            for entry in entries {
                let entry = entry.with_context(|| format!("listing `{}`", dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some((stem, month, seq, kind)) = parse_segment(&name) else { continue };
                found.entry((stem.to_owned(), month, seq)).or_default()[kind as usize] = true;
            }
            for ((stem, month, seq), [plain, gz, tmp]) in found {
                let plain_path = dir.join(segment_name(&stem, month, seq));
                let gz_path = with_suffix(&plain_path, ".gz");
                let tmp_path = with_suffix(&plain_path, ".gz.tmp");
                if tmp {
                    // A compression killed before its rename: done again below.
                    remove_file(&tmp_path)?;
                    done.recovered.push(tmp_path.clone());
                }
                if month.months_until(this_month) > i64::from(keep_months) {
                    for (exists, path) in [(plain, &plain_path), (gz, &gz_path)] {
                        if exists {
                            done.freed_bytes += fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                            remove_file(path)?;
                            done.pruned.push(path.clone());
                        }
                    }
                    sync_dir(&dir)?;
                    continue;
                }
                if month >= this_month || !plain {
                    continue;
                }
                if gz {
                    // Renamed into place (so whole) before the plain segment was removed.
                    remove_file(&plain_path)?;
                    sync_dir(&dir)?;
                    done.recovered.push(plain_path);
                    continue;
                }
                let before = fs::metadata(&plain_path).map(|m| m.len()).unwrap_or(0);
                compress(&plain_path, &tmp_path, &gz_path)?;
                let after = fs::metadata(&gz_path).map(|m| m.len()).unwrap_or(0);
                done.freed_bytes += before.saturating_sub(after);
                done.compressed.push(gz_path);
            }
        }
        Ok(done)
    }
}

/// Cuts a last line without its newline (an append torn by a full disk or a crash: never a
/// whole record) back to the last newline, saying so, so the next line starts on its own.
fn cut_torn_tail(file: &File, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Back to the last newline, block by block.
    let mut end = len;
    let keep = loop {
        let start = end.saturating_sub(64 * 1024);
        let mut block = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut block, start)?;
        if let Some(i) = block.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    file.set_len(keep).with_context(|| format!("cutting the torn last line of `{}`", path.display()))?;
    tracing::warn!("history `{}`: cut a torn last line of {} bytes", path.display(), len - keep);
    Ok(())
}

fn versioned<T: Serialize>(doc: &T) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(doc)?;
    let object = value.as_object_mut().context("state documents must be JSON objects")?;
    object.insert("schema_version".into(), SCHEMA_VERSION.into());
    Ok(value)
}

fn check_version(value: &serde_json::Value) -> Result<(), String> {
    match value.get("schema_version").and_then(serde_json::Value::as_u64) {
        None => Err("has no `schema_version`".into()),
        Some(v) if v > SCHEMA_VERSION => {
            Err(format!("has schema_version {v}, newer than this build understands ({SCHEMA_VERSION})"))
        }
        Some(_) => Ok(()),
    }
}

/// Writes what `-o PATH` asks for, respecting what `PATH` is: `-` is stdout; a regular file
/// (or none yet) is replaced atomically with `mode`; a device, FIFO or socket (`/dev/null`,
/// `/dev/stdout`, a pipe) is written in place, never renamed over; a symbolic link to a file is
/// refused unless `follow` (then the file it points to is replaced, the link kept).
pub fn write_output(path: &Path, bytes: &[u8], mode: u32, follow: bool) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        return Ok(out.flush()?);
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading `{}`", path.display())),
    };
    let kind = match meta {
        Some(m) if m.file_type().is_symlink() => {
            let target = fs::metadata(path).ok().map(|m| m.file_type());
            // A link to a device or a pipe (`/dev/stdout`) is written in place below; one to a
            // file (or nowhere) would be replaced by a regular file: refused unless asked.
            if !follow && target.is_none_or(|t| t.is_file() || t.is_dir()) {
                anyhow::bail!(
                    "`{}` is a symbolic link: refusing to replace it (pass --follow-symlinks to write where it points)",
                    path.display()
                );
            }
            target
        }
        m => m.map(|m| m.file_type()),
    };
    match kind {
        Some(k) if !k.is_file() && !k.is_dir() => {
            // A device or a pipe: written in place, as `>` would.
            let mut f =
                OpenOptions::new().write(true).open(path).with_context(|| format!("opening `{}`", path.display()))?;
            f.write_all(bytes).with_context(|| format!("writing `{}`", path.display()))?;
            Ok(())
        }
        Some(k) if k.is_dir() => anyhow::bail!("`{}` is a directory", path.display()),
        _ => {
            let target =
                if follow { fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()) } else { path.to_path_buf() };
            write_atomic_mode(&target, bytes, mode)
        }
    }
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating directory `{}`", dir.display()))
}

/// Writes `bytes` to `path` atomically with mode 0600: temp file in the same directory, fsync,
/// rename over the target, fsync of the directory. Secrets are scrubbed from text first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a state file needs a parent directory")?;
    create_private_dir(dir)?;
    write_atomic_mode(path, bytes, 0o600)
}

/// A temporary file of an atomic write this old was left by a process killed between its write
/// and its rename (tempfile removes its file on drop, which SIGKILL skips): no write takes so long.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Removes the `.tmp-*` files of atomic writes in the state directory `dir` older than
/// [`ABANDONED_AFTER`], saying so; errors are only logged (another run may remove them first).
fn remove_abandoned_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let old = entry
            .metadata()
            .ok()
            .filter(fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > ABANDONED_AFTER);
        if old {
            match fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!("removed `{}`, left by a write that was killed", entry.path().display()),
                Err(e) => tracing::debug!("removing `{}`: {e}", entry.path().display()),
            }
        }
    }
}

/// [`write_atomic`] with another mode, into an existing directory (e.g. 0644 for a file another
/// program reads, like node_exporter's textfile collector).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let scrubbed;
    let bytes = match std::str::from_utf8(bytes) {
        Ok(text) => {
            scrubbed = redact::scrub(text).into_owned();
            scrubbed.as_bytes()
        }
        Err(_) => bytes,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in `{}`", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing `{}`", path.display()))?;
    tmp.persist(path).with_context(|| format!("replacing `{}`", path.display()))?;
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing `{}`", dir.display()))
}

/// A history is rotated by the append that finds it past this size (32 MiB): the append renames
/// it to a segment and starts a fresh file.
pub const ROTATE_BYTES: u64 = 32 * 1024 * 1024;

/// The most of a history a reader of a whole span reads by default (64 MiB of lines, newest
/// first; a compressed segment counts uncompressed). What the cap leaves unread is a warning
/// naming the file and how much.
pub const READ_CAP_BYTES: u64 = 64 * 1024 * 1024;

/// A line longer than this (4 MiB) is a bad line, skipped without being held in memory: a
/// history of garbage without newlines is never read into memory whole.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Months of segments monthly archival keeps by default before the current month (13: a year
/// and the month a year ago, for year-on-year comparisons); older segments are removed.
pub const KEEP_MONTHS: u32 = 13;

/// Histories never rotated: the lookup ledger's totals need every line, and the ledger
/// compacts itself ([`crate::ledger::COMPACT_AT`]).
const NOT_ROTATED: &[&str] = &[crate::ledger::FILE];

/// The fields a record may say when it is from, in the order looked for.
const STAMP_FIELDS: &[&str] = &["timestamp", "time", "at", "started_at", "ended_at", "queued_at", "created_at"];

/// A calendar month (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(i64);

impl Month {
    /// The month of `t`.
    pub fn of(t: DateTime<Utc>) -> Self {
        Self(i64::from(t.year()) * 12 + i64::from(t.month0()))
    }

    /// `year`-`month` (1 to 12).
    pub fn new(year: i32, month: u32) -> Option<Self> {
        (1..=12).contains(&month).then(|| Self(i64::from(year) * 12 + i64::from(month) - 1))
    }

    /// The year.
    pub fn year(self) -> i32 {
        i32::try_from(self.0.div_euclid(12)).unwrap_or(i32::MAX)
    }

    /// The month of the year, 1 to 12.
    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    /// The month after.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// Its first instant.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year(), self.month(), 1, 0, 0, 0).single().unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Months from this one to `later` (negative when `later` is earlier).
    pub fn months_until(self, later: Self) -> i64 {
        later.0 - self.0
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

/// One rotated-out part of a history: `<stem>.<YYYY-MM>.<NNN>.jsonl` beside `<stem>.jsonl`,
/// holding the lines appended in that month (UTC) from the file's start (or its previous
/// segment's end) to the rotation; `NNN` counts from `001` within the month (a size rotation
/// makes several). Names sort in time order, never replace one another (a rotation picks the
/// next free number, and renames with `RENAME_NOREPLACE`), and keep `.jsonl` recognisable;
/// monthly archival makes `<...>.jsonl.gz` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The segment's path (the plain one's, `.jsonl`, unless `compressed`).
    pub path: PathBuf,
    /// The month its lines are from.
    pub month: Month,
    /// Its number within the month, from 1.
    pub seq: u32,
    /// Whether it is gzip-compressed (`.jsonl.gz`).
    pub compressed: bool,
}

impl Segment {
    /// Its lines' size in bytes: a compressed one's from the gzip trailer (its size modulo
    /// 4 GiB, which a segment never reaches).
    pub fn len(&self) -> u64 {
        match self.file() {
            Ok((file, false)) => file.metadata().map(|m| m.len()).unwrap_or(0),
            Ok((file, true)) => gzip_size(&file).unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its lines from byte `offset` on (uncompressed bytes). A plain segment compressed
    /// since it was listed is read from its `.gz`.
    pub fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send>> {
        let (mut file, compressed) = self.file()?;
        if compressed {
            let mut reader = flate2::read::MultiGzDecoder::new(BufReader::new(file));
            std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())?;
            Ok(Box::new(reader))
        } else {
            file.seek(SeekFrom::Start(offset))?;
            Ok(Box::new(file))
        }
    }

    /// The file and whether it is compressed.
    fn file(&self) -> std::io::Result<(File, bool)> {
        if self.compressed {
            return File::open(&self.path).map(|f| (f, true));
        }
        match File::open(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                File::open(with_suffix(&self.path, ".gz")).map(|f| (f, true))
            }
            other => other.map(|f| (f, false)),
        }
    }
}

/// A history as it stands ([`StateDir::history_files`]).
#[derive(Debug)]
pub struct HistoryFiles {
    /// The current file's path.
    pub path: PathBuf,
    /// Its segments, oldest first.
    pub segments: Vec<Segment>,
    /// The current file, open; `None` when there is none.
    pub current: Option<File>,
}

/// How much of a history a reader needs ([`StateDir::read_history`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// All of it.
    All,
    /// Records from this time on.
    Since(DateTime<Utc>),
    /// The last this long of it, counted back from its newest record.
    Last(chrono::Duration),
}

/// What a reader got from a history and what it left out ([`StateDir::read_history`]).
#[derive(Debug)]
pub struct History<T> {
    /// The records, oldest first.
    pub records: Vec<T>,
    /// The history's current file.
    pub path: PathBuf,
    /// Lines skipped: not JSON, not a record, a newer schema, longer than [`MAX_LINE_BYTES`].
    pub bad_lines: u64,
    /// Their bytes.
    pub bad_bytes: u64,
    /// Where the first bad line was, and why it was bad.
    pub first_bad: Option<String>,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes of the span the cap left unread.
    pub unread_bytes: u64,
    /// Files (the current one, segments) left unread whole or in part.
    pub unread_files: usize,
    /// The cap read under.
    pub cap: u64,
}

impl<T> History<T> {
    /// The warning about bad lines, if there were any.
    pub fn bad_lines_warning(&self) -> Option<String> {
        (self.bad_lines > 0).then(|| {
            format!(
                "history `{}`: skipped {} bad line(s) ({}), the first {}",
                self.path.display(),
                self.bad_lines,
                bytes(self.bad_bytes),
                crate::messages::clip(self.first_bad.as_deref().unwrap_or("unknown"), 200)
            )
        })
    }

    /// The warning about what the cap left unread, if it left anything.
    pub fn unread_warning(&self) -> Option<String> {
        (self.unread_bytes > 0).then(|| {
            format!(
                "history `{}`: read the newest {} of it and left {} in {} file(s) unread (at most {} is read)",
                self.path.display(),
                bytes(self.read_bytes),
                bytes(self.unread_bytes),
                self.unread_files,
                bytes(self.cap)
            )
        })
    }

    /// Both warnings, those that apply.
    pub fn warnings(&self) -> Vec<String> {
        self.bad_lines_warning().into_iter().chain(self.unread_warning()).collect()
    }

    /// Logs the warnings (what was left unread only when `unread` says it matters, at debug
    /// level otherwise), and returns the history.
    fn logged(self, unread: bool) -> Self {
        if let Some(w) = self.bad_lines_warning() {
            tracing::warn!("{w}");
        }
        if let Some(w) = self.unread_warning() {
            if unread {
                tracing::warn!("{w}");
            } else {
                tracing::debug!("{w}");
            }
        }
        self
    }
}

/// What monthly archival did ([`StateDir::archive_histories`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Archived {
    /// Segments compressed (the `.gz` made).
    pub compressed: Vec<PathBuf>,
    /// Segments removed, past the retention.
    pub pruned: Vec<PathBuf>,
    /// What a killed run had left, cleaned up (a `.gz.tmp`, or a plain segment beside its
    /// finished `.gz`).
    pub recovered: Vec<PathBuf>,
    /// Bytes freed on disk.
    pub freed_bytes: u64,
}

impl Archived {
    /// One line for people: what was done, or that nothing was due.
    pub fn summary(&self) -> String {
        if self.compressed.is_empty() && self.pruned.is_empty() && self.recovered.is_empty() {
            return "archival: no history segment due".into();
        }
        let mut text = format!(
            "archival: compressed {} history segment(s), removed {} past the retention, {} freed",
            self.compressed.len(),
            self.pruned.len(),
            bytes(self.freed_bytes)
        );
        if !self.recovered.is_empty() {
            text.push_str(&format!("; cleaned up {} left by an interrupted run", self.recovered.len()));
        }
        text
    }
}

/// Why and into which month a history is rotated.
struct Due {
    month: Month,
    why: String,
}

/// A file of a history being read.
enum Source<'a> {
    Current(&'a File, &'a Path),
    Segment(&'a Segment),
}

impl Source<'_> {
    fn path(&self) -> &Path {
        match self {
            Self::Current(_, path) => path,
            Self::Segment(s) => &s.path,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Self::Current(file, _) => file.metadata().map(|m| m.len()).unwrap_or(0),
            Self::Segment(s) => s.len(),
        }
    }

    /// Its lines from `offset`; `None` when it is gone (a segment pruned meanwhile).
    fn open_at(&self, offset: u64) -> std::io::Result<Option<Box<dyn Read + Send + '_>>> {
        match self {
            Self::Current(file, _) => {
                let mut file = file.try_clone()?;
                file.seek(SeekFrom::Start(offset))?;
                Ok(Some(Box::new(file)))
            }
            Self::Segment(s) => match s.open_at(offset) {
                Ok(reader) => Ok(Some(reader)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        }
    }
}

/// One line read by [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, in [`LineReader::text`].
    Text {
        /// Its bytes with the newline.
        bytes: u64,
        /// Whether it ended with a newline (not with the input).
        ended: bool,
    },
    /// A line longer than the limit, skipped.
    TooLong {
        /// Its bytes with the newline.
        bytes: u64,
        /// Whether it ended with a newline (not with the input).
        ended: bool,
    },
}

/// Reads lines of at most a given length: a longer one is skipped as it streams by, never held.
pub struct LineReader<R> {
    reader: BufReader<R>,
    max: usize,
    buf: Vec<u8>,
}

impl<R: Read> LineReader<R> {
    /// Lines of `reader` up to `max` bytes each.
    pub fn new(reader: R, max: usize) -> Self {
        Self { reader: BufReader::with_capacity(64 * 1024, reader), max, buf: Vec::new() }
    }

    /// The last [`Line::Text`]'s bytes, without its newline.
    pub fn text(&self) -> &[u8] {
        &self.buf
    }

    /// The next line; `None` at the end.
    pub fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let (mut n, mut too_long) = (0u64, false);
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok((n > 0).then_some(if too_long {
                    Line::TooLong { bytes: n, ended: false }
                } else {
                    Line::Text { bytes: n, ended: false }
                }));
            }
            let (chunk, used, ended) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long {
                if self.buf.len() + chunk.len() > self.max {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            n += used as u64;
            self.reader.consume(used);
            if ended {
                return Ok(Some(if too_long {
                    Line::TooLong { bytes: n, ended }
                } else {
                    Line::Text { bytes: n, ended }
                }));
            }
        }
    }
}

/// Reads the lines of one file of a history into records with their times, counting bad
/// lines in `out`. `cut`: the reading starts inside a line, which is left out (unless it is
/// longer than [`MAX_LINE_BYTES`] or runs to the end: then it is a bad line too).
fn read_lines<T: DeserializeOwned, R: Read>(
    reader: R,
    cut: bool,
    label: &str,
    out: &mut History<T>,
) -> std::io::Result<Vec<(Option<DateTime<Utc>>, T)>> {
    let mut lines = LineReader::new(reader, MAX_LINE_BYTES);
    let mut records = Vec::new();
    let mut number = 0u64;
    let bad = |out: &mut History<T>, bytes: u64, at: String| {
        out.bad_lines += 1;
        out.bad_bytes += bytes;
        out.first_bad.get_or_insert(at);
    };
    if cut {
        match lines.next_line()? {
            Some(Line::Text { ended: true, .. }) | None => {}
            Some(Line::Text { bytes, ended: false } | Line::TooLong { bytes, .. }) => {
                bad(out, bytes, format!("{label}in the last part: {} without a line end", self::bytes(bytes)));
            }
        }
    }
    let part = if cut { " of the last part" } else { "" };
    while let Some(line) = lines.next_line()? {
        number += 1;
        let at = || format!("{label}line {number}{part}");
        match line {
            Line::TooLong { bytes, .. } => {
                bad(out, bytes, format!("{}: longer than {}", at(), self::bytes(MAX_LINE_BYTES as u64)));
            }
            Line::Text { bytes, .. } => {
                let text = lines.text();
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match parse_line::<T>(text) {
                    Ok(record) => records.push(record),
                    Err(why) => bad(out, bytes, format!("{}: {why}", at())),
                }
            }
        }
    }
    Ok(records)
}

/// One line as a record, with the time it says it is from.
fn parse_line<T: DeserializeOwned>(line: &[u8]) -> Result<(Option<DateTime<Utc>>, T), String> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| format!("is not valid JSON ({e})"))?;
    check_version(&value)?;
    let stamp = stamp_of(&value);
    let record = serde_json::from_value(value).map_err(|e| format!("does not have the expected shape ({e})"))?;
    Ok((stamp, record))
}

/// When a record says it is from: the first of [`STAMP_FIELDS`] that is an RFC 3339 time.
fn stamp_of(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    STAMP_FIELDS.iter().find_map(|k| {
        let text = value.get(*k)?.as_str()?;
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
    })
}

/// When the first record of `file` (the first line that is JSON, within its first 256 KiB)
/// says it is from; `None` when it does not say, or no line there is JSON.
fn first_stamp(file: &File) -> std::io::Result<Option<DateTime<Utc>>> {
    use std::os::unix::fs::FileExt as _;
    for size in [16 * 1024, 256 * 1024] {
        let mut block = vec![0u8; size];
        let mut n = 0;
        while n < size {
            match file.read_at(&mut block[n..], n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let block = &block[..n];
        let whole = block.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in block[..whole].split(|b| *b == b'\n') {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) {
                return Ok(stamp_of(&value));
            }
        }
        if whole > 0 || n < size {
            // Whole lines and none is JSON, or the file is all here.
            return Ok(None);
        }
    }
    Ok(None)
}

/// Whether `file` is the file at `path` now (not renamed away, or replaced, since it was
/// opened).
fn is_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// `<stem>` and the extension of a history's file name (`runs.jsonl` → `runs`).
fn stem_of(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_suffix(".jsonl") {
        Some(stem) => stem.to_owned(),
        None => name,
    }
}

/// The plain segment's file name.
fn segment_name(stem: &str, month: Month, seq: u32) -> String {
    format!("{stem}.{month}.{seq:03}.jsonl")
}

/// What a segment's file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain = 0,
    Gz = 1,
    GzTmp = 2,
}

/// A segment's file name taken apart: stem, month, number, kind.
fn parse_segment(name: &str) -> Option<(&str, Month, u32, Kind)> {
    let (rest, kind) = if let Some(rest) = name.strip_suffix(".jsonl.gz.tmp") {
        (rest, Kind::GzTmp)
    } else if let Some(rest) = name.strip_suffix(".jsonl.gz") {
        (rest, Kind::Gz)
    } else {
        (name.strip_suffix(".jsonl")?, Kind::Plain)
    };
    let (rest, seq) = rest.rsplit_once('.')?;
    let (stem, month) = rest.rsplit_once('.')?;
    if seq.len() < 3 || !seq.bytes().all(|b| b.is_ascii_digit()) || stem.is_empty() {
        return None;
    }
    let (year, m) = month.split_once('-')?;
    if year.len() != 4 || m.len() != 2 || !year.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem, Month::new(year.parse().ok()?, m.parse().ok()?)?, seq.parse().ok()?, kind))
}

/// The segments of the history at `path`, oldest first (a segment both plain and compressed,
/// as a killed archival leaves it, once, plain).
fn segments_of(path: &Path) -> std::io::Result<Vec<Segment>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = stem_of(path);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found: std::collections::BTreeMap<(Month, u32), bool> = Default::default();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some((s, month, seq, kind)) = parse_segment(&name) else { continue };
        if s != stem || kind == Kind::GzTmp {
            continue;
        }
        let compressed = found.entry((month, seq)).or_insert(true);
        *compressed &= kind == Kind::Gz;
    }
    Ok(found
        .into_iter()
        .map(|((month, seq), compressed)| {
            let plain = dir.join(segment_name(&stem, month, seq));
            let path = if compressed { with_suffix(&plain, ".gz") } else { plain };
            Segment { path, month, seq, compressed }
        })
        .collect())
}

/// Renames the history at `path` to its next segment of `due.month`, never over an existing
/// one, and syncs the directory. The caller holds the history's lock.
fn rotate(path: &Path, due: &Due) -> anyhow::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = stem_of(path);
    let taken = |seq: u32| -> bool {
        let plain = dir.join(segment_name(&stem, due.month, seq));
        [".gz", ".gz.tmp"].iter().any(|s| with_suffix(&plain, s).exists()) || plain.exists()
    };
    let mut seq = segments_of(path)
        .with_context(|| format!("listing the segments of `{}`", path.display()))?
        .iter()
        .filter(|s| s.month == due.month)
        .map(|s| s.seq)
        .max()
        .unwrap_or(0)
        + 1;
    loop {
        while taken(seq) {
            seq += 1;
        }
        let target = dir.join(segment_name(&stem, due.month, seq));
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            path,
            rustix::fs::CWD,
            &target,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                seq += 1;
                continue;
            }
            // A filesystem without RENAME_NOREPLACE: `taken` said the name is free, and every
            // rotation of this history holds its lock.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::NOTSUP) => {
                fs::rename(path, &target)
                    .with_context(|| format!("renaming `{}` to `{}`", path.display(), target.display()))?;
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("renaming `{}` to `{}`", path.display(), target.display()));
            }
        }
        sync_dir(dir)?;
        return Ok(target);
    }
}

/// Compresses the segment `plain` to `gz` through `tmp` (written, synced, renamed, the
/// directory synced), then removes `plain`.
fn compress(plain: &Path, tmp: &Path, gz: &Path) -> anyhow::Result<()> {
    let dir = plain.parent().unwrap_or(Path::new("."));
    let mut input = File::open(plain).with_context(|| format!("reading `{}`", plain.display()))?;
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .with_context(|| format!("creating `{}`", tmp.display()))?;
    let mut encoder = flate2::write::GzEncoder::new(std::io::BufWriter::new(out), flate2::Compression::default());
    std::io::copy(&mut input, &mut encoder)
        .and_then(|_| encoder.finish())
        .and_then(|w| w.into_inner().map_err(std::io::IntoInnerError::into_error))
        .and_then(|f| f.sync_all())
        .with_context(|| format!("compressing `{}` into `{}`", plain.display(), tmp.display()))?;
    fs::rename(tmp, gz).with_context(|| format!("renaming `{}` to `{}`", tmp.display(), gz.display()))?;
    sync_dir(dir)?;
    remove_file(plain)?;
    sync_dir(dir)
}

/// A gzip file's uncompressed size, from its trailer.
fn gzip_size(file: &File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt as _;
    let len = file.metadata()?.len();
    if len < 18 {
        return Ok(0);
    }
    let mut trailer = [0u8; 4];
    file.read_exact_at(&mut trailer, len - 4)?;
    Ok(u64::from(u32::from_le_bytes(trailer)))
}

/// The last good record of the history file `file`, read block by block from its end.
fn last_record<T: DeserializeOwned>(file: &File, path: &Path) -> anyhow::Result<Option<T>> {
    use std::os::unix::fs::FileExt as _;
    let len = file.metadata()?.len();
    let mut pos = len;
    let mut tail: Vec<u8> = Vec::new();
    let mut skipped: usize;
    // Block by block from the end, newest line first, until a line parses.
    loop {
        let step = pos.min(64 * 1024);
        pos -= step;
        let mut block = vec![0u8; step as usize];
        file.read_exact_at(&mut block, pos)?;
        block.extend_from_slice(&tail);
        tail = block;
        // Whole lines only: the first may be cut unless the block starts the file.
        let first_whole =
            if pos == 0 { 0 } else { tail.iter().position(|b| *b == b'\n').map_or(tail.len(), |i| i + 1) };
        skipped = 0;
        for line in tail[first_whole..].split(|b| *b == b'\n').rev() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_line::<T>(line) {
                Ok((_, record)) => {
                    if skipped > 0 {
                        tracing::warn!("history `{}`: skipped {skipped} bad line(s) at its end", path.display());
                    }
                    return Ok(Some(record));
                }
                Err(_) => skipped += 1,
            }
        }
        if pos == 0 || tail.len() > 16 << 20 {
            break;
        }
    }
    if skipped > 0 {
        tracing::warn!(
            "history `{}`: skipped {skipped} bad line(s) in its last {} and found no good one",
            path.display(),
            bytes(tail.len() as u64)
        );
    } else if pos > 0 {
        tracing::warn!("history `{}`: found no line end in its last {}", path.display(), bytes(tail.len() as u64));
    }
    Ok(None)
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a file; a missing one is fine.
fn remove_file(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing `{}`", path.display()))
        }
        _ => Ok(()),
    }
}

/// Syncs a directory, so that renames and new names in it survive a crash.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing `{}`", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Doc {
        n: u32,
    }

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("state")).unwrap();
        (dir, state)
    }

    #[test]
    fn round_trip_with_modes_and_version() {
        let (_dir, state) = state();
        state.write_json("a/doc.json", &Doc { n: 7 }).unwrap();
        assert_eq!(state.read_json::<Doc>("a/doc.json").unwrap(), Some(Doc { n: 7 }));
        let text = fs::read_to_string(state.path("a/doc.json")).unwrap();
        assert!(text.contains("\"schema_version\": 1"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state.path("a/doc.json")), 0o600);
        assert_eq!(mode(&state.path("a")), 0o700);
        assert_eq!(mode(state.root()), 0o700);
        assert_eq!(state.read_json::<Doc>("missing.json").unwrap(), None);
    }

    #[test]
    fn corrupt_document_is_named_and_left_alone() {
        let (_dir, state) = state();
        fs::write(state.path("bad.json"), "{\"schema_version\": 1, \"n\": ").unwrap();
        let err = state.read_json::<Doc>("bad.json").unwrap_err();
        let err = err.downcast_ref::<StateError>().unwrap();
        assert_eq!(err.path, state.path("bad.json"));
        assert_eq!(fs::read_to_string(state.path("bad.json")).unwrap(), "{\"schema_version\": 1, \"n\": ");
        fs::write(state.path("new.json"), "{\"schema_version\": 9, \"n\": 1}").unwrap();
        let err = state.read_json::<Doc>("new.json").unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        fs::write(state.path("nov.json"), "{\"n\": 1}").unwrap();
        assert!(state.read_json::<Doc>("nov.json").is_err());
    }

    #[test]
    fn a_history_heals_from_a_torn_line_and_skips_bad_ones() {
        let (_dir, state) = state();
        state.append_jsonl("h.jsonl", &Doc { n: 1 }).unwrap();
        state.append_jsonl("h.jsonl", &Doc { n: 2 }).unwrap();
        assert_eq!(state.read_jsonl::<Doc>("h.jsonl").unwrap(), vec![Doc { n: 1 }, Doc { n: 2 }]);
        // Garbage in the middle is skipped; the lines around it are read.
        let mut f = OpenOptions::new().append(true).open(state.path("h.jsonl")).unwrap();
        f.write_all(b"garbage\n").unwrap();
        state.append_jsonl("h.jsonl", &Doc { n: 3 }).unwrap();
        assert_eq!(state.read_jsonl::<Doc>("h.jsonl").unwrap(), vec![Doc { n: 1 }, Doc { n: 2 }, Doc { n: 3 }]);
        // Half a line left by a full disk: the next append cuts it and starts a whole line.
        f.write_all(b"{\"schema_version\":1,\"n\":4").unwrap();
        state.append_jsonl("h.jsonl", &Doc { n: 5 }).unwrap();
        let text = fs::read_to_string(state.path("h.jsonl")).unwrap();
        assert!(text.ends_with("{\"n\":3,\"schema_version\":1}\n{\"n\":5,\"schema_version\":1}\n"), "{text}");
        assert_eq!(
            state.read_jsonl::<Doc>("h.jsonl").unwrap(),
            vec![Doc { n: 1 }, Doc { n: 2 }, Doc { n: 3 }, Doc { n: 5 }]
        );
    }

    #[test]
    fn the_last_record_is_read_from_the_end() {
        let (_dir, state) = state();
        assert_eq!(state.read_last_jsonl::<Doc>("h.jsonl").unwrap(), None);
        for n in 0..5000 {
            state.append_jsonl("h.jsonl", &Doc { n }).unwrap();
        }
        assert_eq!(state.read_last_jsonl::<Doc>("h.jsonl").unwrap(), Some(Doc { n: 4999 }));
        let mut f = OpenOptions::new().append(true).open(state.path("h.jsonl")).unwrap();
        f.write_all(b"\n\n").unwrap();
        assert_eq!(state.read_last_jsonl::<Doc>("h.jsonl").unwrap(), Some(Doc { n: 4999 }));
        std::fs::write(state.path("one.jsonl"), "{\"schema_version\":1,\"n\":7}").unwrap();
        assert_eq!(state.read_last_jsonl::<Doc>("one.jsonl").unwrap(), Some(Doc { n: 7 }));
        // A bad last line (a torn append) is skipped: the last good record is read.
        std::fs::write(state.path("bad.jsonl"), "{\"schema_version\":1,\"n\":7}\ngarbage\n{\"schema_ver").unwrap();
        assert_eq!(state.read_last_jsonl::<Doc>("bad.jsonl").unwrap(), Some(Doc { n: 7 }));
    }

    #[test]
    fn the_tail_of_a_history_skips_the_line_it_cuts() {
        let (_dir, state) = state();
        for n in 0..100 {
            state.append_jsonl("h.jsonl", &Doc { n }).unwrap();
        }
        let line = std::fs::read_to_string(state.path("h.jsonl")).unwrap().lines().last().unwrap().len() as u64 + 1;
        // Three whole lines and part of a fourth.
        let tail: Vec<Doc> = state.read_jsonl_tail("h.jsonl", 3 * line + 5).unwrap();
        assert_eq!(tail, [Doc { n: 97 }, Doc { n: 98 }, Doc { n: 99 }]);
        assert_eq!(state.read_jsonl_tail::<Doc>("h.jsonl", 1 << 20).unwrap().len(), 100);
        assert!(state.read_jsonl_tail::<Doc>("none.jsonl", 10).unwrap().is_empty());
    }

    #[test]
    fn an_unusable_directory_is_a_state_dir_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        for (root, said) in [(file.clone(), "is not a directory"), (file.join("sub"), "cannot be created")] {
            let err = StateDir::open(root.clone()).unwrap_err();
            let typed = err.downcast_ref::<StateDirError>().unwrap_or_else(|| panic!("{err:#}"));
            assert_eq!(typed.path, root);
            assert!(err.to_string().contains(said), "{err}");
        }
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
        // Without any variable, a user other than root has nowhere to keep state.
        struct NoEnv;
        impl Env for NoEnv {
            fn var(&self, _: &str) -> Option<String> {
                None
            }
        }
        if !rustix::process::geteuid().is_root() {
            let no_home = resolve(None, &NoEnv).unwrap_err();
            assert!(no_home.downcast_ref::<StateDirError>().is_some(), "{no_home:#}");
        }
    }

    #[test]
    fn output_respects_what_the_path_is() {
        let dir = tempfile::tempdir().unwrap();
        // A FIFO is written in place, never renamed over.
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(&fifo).unwrap())
        };
        write_output(&fifo, b"through the pipe", 0o644, false).unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fs::symlink_metadata(&fifo).unwrap().file_type()));
        // A link to a file is refused, and both stay as they were; with `follow` the file
        // it points to is replaced and the link kept.
        let file = dir.path().join("real.prom");
        fs::write(&file, "old").unwrap();
        let link = dir.path().join("link.prom");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = write_output(&link, b"new", 0o644, false).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&file).unwrap(), b"old");
        write_output(&link, b"new", 0o644, true).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&file).unwrap(), b"new");
        // A regular file is replaced atomically, with the mode asked for.
        let plain = dir.path().join("plain.html");
        write_output(&plain, b"page", 0o640, false).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(fs::metadata(&plain).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let (_dir, state) = state();
        for n in 0..3 {
            state.write_json("d.json", &Doc { n }).unwrap();
        }
        let names: Vec<_> = fs::read_dir(state.root()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("d.json")]);
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
    struct Rec {
        n: u32,
        timestamp: DateTime<Utc>,
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// Writes a plain segment of `rel` (`h.jsonl`) for `month` with records `ns` at `t`.
    fn segment(state: &StateDir, stem: &str, month: Month, seq: u32, ns: std::ops::Range<u32>) -> PathBuf {
        let path = state.path(&segment_name(stem, month, seq));
        let mut text = String::new();
        for n in ns {
            let t = month.start() + chrono::Duration::hours(i64::from(n % 100));
            text.push_str(&serde_json::to_string(&versioned(&Rec { n, timestamp: t }).unwrap()).unwrap());
            text.push('\n');
        }
        fs::write(&path, text).unwrap();
        path
    }

    fn names(state: &StateDir) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(state.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn segment_names_sort_in_time_and_parse_back() {
        let m = Month::new(2026, 11).unwrap();
        assert_eq!(m.to_string(), "2026-11");
        assert_eq!(Month::of(at("2026-11-30T23:59:59Z")), m);
        assert_eq!(m.next(), Month::new(2026, 12).unwrap());
        assert_eq!(m.next().next().start(), at("2027-01-01T00:00:00Z"));
        assert_eq!(m.months_until(Month::new(2027, 12).unwrap()), 13);
        assert_eq!(segment_name("runs", m, 1), "runs.2026-11.001.jsonl");
        for (name, want) in [
            ("runs.2026-11.001.jsonl", Some(("runs", m, 1, Kind::Plain))),
            ("history.2026-11.012.jsonl.gz", Some(("history", m, 12, Kind::Gz))),
            ("a.b.2026-11.1000.jsonl.gz.tmp", Some(("a.b", m, 1000, Kind::GzTmp))),
            ("runs.jsonl", None),
            ("runs.2026-13.001.jsonl", None),
            ("runs.2026-11.1.jsonl", None),
            ("runs.2026-11.001.json", None),
            (".2026-11.001.jsonl", None),
        ] {
            assert_eq!(parse_segment(name), want, "{name}");
        }
        let mut sorted = ["h.2026-11.002.jsonl", "h.2027-01.001.jsonl", "h.2026-11.001.jsonl", "h.2026-12.001.jsonl"];
        sorted.sort();
        let parsed: Vec<_> = sorted.iter().map(|n| parse_segment(n).map(|(_, m, s, _)| (m, s))).collect();
        assert!(parsed.is_sorted(), "{sorted:?}");
    }

    #[test]
    fn a_history_past_its_bound_rotates_and_every_line_is_read_back() {
        let (_dir, state) = state();
        let state = state.with_rotate_bytes(1000);
        for n in 0..200 {
            state.append_jsonl("h.jsonl", &Doc { n }).unwrap();
        }
        let this_month = Month::of(Utc::now());
        let segments = state.history_files("h.jsonl").unwrap().segments;
        assert!(segments.len() >= 5, "{:?}", names(&state));
        for (i, s) in segments.iter().enumerate() {
            assert_eq!((s.month, s.seq, s.compressed), (this_month, i as u32 + 1, false));
            // Rotated past the bound, by the one append that found it there.
            assert!(s.len() > 1000 && s.len() < 1100, "{s:?}: {}", s.len());
        }
        assert!(fs::metadata(state.path("h.jsonl")).unwrap().len() <= 1100);
        let all: Vec<Doc> = state.read_jsonl("h.jsonl").unwrap();
        assert_eq!(all, (0..200).map(|n| Doc { n }).collect::<Vec<_>>());
        // The ledger is never rotated: its totals need every line.
        for n in 0..100 {
            state.append_jsonl(crate::ledger::FILE, &Doc { n }).unwrap();
        }
        assert!(state.history_files(crate::ledger::FILE).unwrap().segments.is_empty());
    }

    #[test]
    fn a_history_begun_in_an_earlier_month_rotates_into_that_months_segment() {
        let (_dir, state) = state();
        let last_month = Month(Month::of(Utc::now()).0 - 1);
        // The month already has two segments, one of them compressed: the next number is taken.
        segment(&state, "h", last_month, 1, 0..3);
        let two = segment(&state, "h", last_month, 2, 3..6);
        compress(&two, &with_suffix(&two, ".gz.tmp"), &with_suffix(&two, ".gz")).unwrap();
        let old = Rec { n: 6, timestamp: last_month.start() + chrono::Duration::days(3) };
        fs::write(state.path("h.jsonl"), serde_json::to_string(&versioned(&old).unwrap()).unwrap() + "\n").unwrap();
        state.append_jsonl("h.jsonl", &Rec { n: 7, timestamp: Utc::now() }).unwrap();
        let third = state.path(&segment_name("h", last_month, 3));
        assert!(fs::read_to_string(&third).unwrap().contains("\"n\":6"), "{:?}", names(&state));
        assert_eq!(fs::read_to_string(state.path("h.jsonl")).unwrap().lines().count(), 1);
        // Once a month: the fresh file is this month's.
        state.append_jsonl("h.jsonl", &Rec { n: 8, timestamp: Utc::now() }).unwrap();
        assert_eq!(state.history_files("h.jsonl").unwrap().segments.len(), 3);
        let all: Vec<Rec> = state.read_jsonl("h.jsonl").unwrap();
        assert_eq!(all.iter().map(|r| r.n).collect::<Vec<_>>(), (0..9).collect::<Vec<_>>());
        // A history whose records do not say when they are from goes by the file's times.
        fs::write(state.path("plain.jsonl"), "{\"schema_version\":1,\"n\":1}\n").unwrap();
        state.append_jsonl("plain.jsonl", &Doc { n: 2 }).unwrap();
        assert!(state.history_files("plain.jsonl").unwrap().segments.is_empty(), "{:?}", names(&state));
    }

    #[test]
    fn concurrent_appenders_across_rotations_lose_and_repeat_nothing() {
        let (_dir, state) = state();
        let state = state.with_rotate_bytes(64 * 1024);
        const EACH: u32 = 10_000;
        #[derive(Serialize, Deserialize, Debug)]
        struct Line {
            writer: u32,
            n: u32,
        }
        std::thread::scope(|s| {
            for writer in 0..2 {
                // Each thread its own StateDir, as two processes would have.
                let state = state.clone();
                s.spawn(move || {
                    for n in 0..EACH {
                        state.append_jsonl("runs.jsonl", &Line { writer, n }).unwrap();
                    }
                });
            }
        });
        let read: History<Line> = state.read_history("runs.jsonl", Span::All, u64::MAX).unwrap();
        assert_eq!((read.bad_lines, read.unread_bytes), (0, 0));
        for writer in 0..2 {
            let ns: Vec<u32> = read.records.iter().filter(|l| l.writer == writer).map(|l| l.n).collect();
            assert_eq!(ns, (0..EACH).collect::<Vec<_>>(), "writer {writer}: lost, repeated or reordered");
        }
        // Never rotated twice: every segment went past the bound before its rotation.
        let segments = state.history_files("runs.jsonl").unwrap().segments;
        assert!(segments.len() > 5, "{segments:?}");
        for s in &segments {
            assert!(s.len() > 64 * 1024 && s.len() < 64 * 1024 + 100, "{s:?}: {}", s.len());
        }
    }

    #[test]
    fn bounded_reads_span_segments_newest_first_and_say_what_they_left() {
        let (_dir, state) = state();
        let (sep, oct, nov) =
            (Month::new(2026, 9).unwrap(), Month::new(2026, 10).unwrap(), Month::new(2026, 11).unwrap());
        segment(&state, "h", sep, 1, 0..100);
        let compressed = segment(&state, "h", oct, 1, 100..200);
        compress(&compressed, &with_suffix(&compressed, ".gz.tmp"), &with_suffix(&compressed, ".gz")).unwrap();
        segment(&state, "h", nov, 1, 200..300);
        let mut current = String::new();
        for n in 300..310 {
            let t = at("2026-12-01T00:00:00Z") + chrono::Duration::hours(i64::from(n - 300));
            current.push_str(&serde_json::to_string(&versioned(&Rec { n, timestamp: t }).unwrap()).unwrap());
            current.push('\n');
        }
        fs::write(state.path("h.jsonl"), &current).unwrap();
        let ns = |h: &History<Rec>| h.records.iter().map(|r| r.n).collect::<Vec<_>>();
        // Everything, the compressed segment included, oldest first.
        let all: History<Rec> = state.read_history("h.jsonl", Span::All, u64::MAX).unwrap();
        assert_eq!(ns(&all), (0..310).collect::<Vec<_>>());
        assert!(all.warnings().is_empty(), "{:?}", all.warnings());
        // From a time: the segments before it are not even opened, the records before it left out.
        let since: History<Rec> =
            state.read_history("h.jsonl", Span::Since(oct.start() + chrono::Duration::hours(50)), u64::MAX).unwrap();
        assert_eq!(ns(&since), (150..200).chain(200..310).collect::<Vec<_>>());
        // The last 30 days back from the newest record (2026-12-01T09:00).
        let last: History<Rec> =
            state.read_history("h.jsonl", Span::Last(chrono::Duration::days(30)), u64::MAX).unwrap();
        assert_eq!(ns(&last), (209..310).collect::<Vec<_>>(), "2026-11-01T09:00 on");
        // Under a cap: the newest lines, and what was left unread said.
        let line = current.lines().next().unwrap().len() as u64 + 1;
        let capped: History<Rec> = state.read_history("h.jsonl", Span::All, 20 * line).unwrap();
        assert_eq!(ns(&capped), (291..310).collect::<Vec<_>>(), "the line cut at the start left out");
        assert_eq!(capped.unread_files, 3, "November in part, October and September whole");
        assert!(capped.unread_bytes > 250 * line, "{capped:?}");
        let warning = capped.unread_warning().unwrap();
        assert!(
            warning.contains("h.jsonl") && warning.contains("left") && warning.contains("3 file(s) unread"),
            "{warning}"
        );
        // The tail reader reads across the rotation too.
        let tail: Vec<Rec> = state.read_jsonl_tail("h.jsonl", 15 * line).unwrap();
        assert_eq!(tail.iter().map(|r| r.n).collect::<Vec<_>>(), (296..310).collect::<Vec<_>>());
        // A bad line in a segment is skipped and named with its file.
        let nov_path = state.path(&segment_name("h", nov, 1));
        let mut text = fs::read_to_string(&nov_path).unwrap();
        text.insert_str(0, "garbage\n");
        fs::write(&nov_path, text).unwrap();
        let read: History<Rec> = state.read_history("h.jsonl", Span::Since(nov.start()), u64::MAX).unwrap();
        assert_eq!(read.records.len(), 110);
        let warning = read.bad_lines_warning().unwrap();
        assert!(warning.contains("skipped 1 bad line") && warning.contains("h.2026-11.001.jsonl` line 1"), "{warning}");
    }

    #[test]
    fn garbage_without_line_ends_is_skipped_and_counted_never_held_whole() {
        let (_dir, state) = state();
        let garbage = vec![b'x'; 2 * MAX_LINE_BYTES + 10];
        let mut text = garbage.clone();
        text.extend_from_slice(b"\n{\"schema_version\":1,\"n\":1}\n");
        text.extend_from_slice(&garbage);
        fs::write(state.path("g.jsonl"), &text).unwrap();
        let read: History<Doc> = state.read_history("g.jsonl", Span::All, u64::MAX).unwrap();
        assert_eq!(read.records, [Doc { n: 1 }]);
        assert_eq!(read.bad_lines, 2);
        assert_eq!(read.bad_bytes, 2 * garbage.len() as u64 + 1);
        assert!(read.bad_lines_warning().unwrap().contains("longer than 4.0 MiB"), "{:?}", read.bad_lines_warning());
        // A tail all inside one unterminated line: said, not an empty silence.
        let tail: History<Doc> = state.read_history("g.jsonl", Span::All, 1024 * 1024).unwrap();
        assert!(tail.records.is_empty());
        assert_eq!((tail.bad_lines, tail.bad_bytes), (1, 1024 * 1024));
        assert!(tail.bad_lines_warning().unwrap().contains("without a line end"), "{:?}", tail.bad_lines_warning());
        assert!(tail.unread_warning().is_some());
        // An append heals it: the unterminated garbage is cut, the new line whole.
        state.append_jsonl("g.jsonl", &Doc { n: 2 }).unwrap();
        assert_eq!(state.read_last_jsonl::<Doc>("g.jsonl").unwrap(), Some(Doc { n: 2 }));
    }

    #[test]
    fn the_last_record_of_a_history_just_rotated_is_its_segments() {
        let (_dir, state) = state();
        segment(&state, "h", Month::new(2026, 11).unwrap(), 1, 0..5);
        assert_eq!(state.read_last_jsonl::<Rec>("h.jsonl").unwrap().map(|r| r.n), Some(4));
        fs::write(state.path("h.jsonl"), "garbage\n").unwrap();
        assert_eq!(state.read_last_jsonl::<Rec>("h.jsonl").unwrap().map(|r| r.n), Some(4));
        fs::write(
            state.path("h.jsonl"),
            serde_json::to_string(&versioned(&Rec { n: 9, timestamp: Utc::now() }).unwrap()).unwrap() + "\n",
        )
        .unwrap();
        assert_eq!(state.read_last_jsonl::<Rec>("h.jsonl").unwrap().map(|r| r.n), Some(9));
    }

    #[test]
    fn archival_compresses_past_months_prunes_old_ones_and_recovers_a_killed_run() {
        let (_dir, state) = state();
        let now = at("2026-12-01T06:00:00Z");
        let month = |y, m| Month::new(y, m).unwrap();
        fs::create_dir_all(state.path("analytics")).unwrap();
        let pruned = segment(&state, "runs", month(2025, 10), 1, 0..10);
        let kept = segment(&state, "runs", month(2025, 11), 1, 10..20);
        let oct = segment(&state, "runs", month(2026, 10), 1, 20..30);
        let nov = segment(&state, "runs", month(2026, 11), 1, 30..40);
        let dec = segment(&state, "runs", month(2026, 12), 1, 40..50);
        let nested = segment(&state, "analytics/history", month(2026, 11), 1, 0..10);
        fs::write(state.path("runs.jsonl"), "").unwrap();
        let before: Vec<Rec> = state.read_jsonl("runs.jsonl").unwrap();
        assert_eq!(before.len(), 50);
        // A killed run: one compression cut before its rename, one after it but before the plain
        // segment was removed.
        fs::write(with_suffix(&oct, ".gz.tmp"), b"\x1f\x8b half").unwrap();
        compress(&nov, &with_suffix(&nov, ".gz.tmp"), &with_suffix(&nov, ".gz")).unwrap();
        fs::copy(with_suffix(&nov, ".gz"), with_suffix(&nov, ".gz.keep")).unwrap();
        segment(&state, "runs", month(2026, 11), 1, 30..40);
        assert_eq!(state.read_jsonl::<Rec>("runs.jsonl").unwrap().len(), 50, "plain and .gz read once");
        let done = state.archive_histories(now, KEEP_MONTHS).unwrap();
        assert_eq!(done.pruned, std::slice::from_ref(&pruned));
        let mut compressed = done.compressed.clone();
        compressed.sort();
        let mut want = vec![with_suffix(&nested, ".gz"), with_suffix(&kept, ".gz"), with_suffix(&oct, ".gz")];
        want.sort();
        assert_eq!(compressed, want);
        let mut recovered = done.recovered.clone();
        recovered.sort();
        assert_eq!(recovered, [with_suffix(&oct, ".gz.tmp"), nov.clone()]);
        assert!(done.summary().contains("compressed 3 history segment(s), removed 1"), "{}", done.summary());
        assert_eq!(
            names(&state),
            [
                "analytics",
                "runs.2025-11.001.jsonl.gz",
                "runs.2026-10.001.jsonl.gz",
                "runs.2026-11.001.jsonl.gz",
                "runs.2026-11.001.jsonl.gz.keep",
                "runs.2026-12.001.jsonl",
                "runs.jsonl"
            ]
        );
        assert!(dec.exists(), "this month's segment stays plain");
        let mode = fs::metadata(with_suffix(&oct, ".gz")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Everything kept reads back the same, compressed or not.
        let after: Vec<Rec> = state.read_jsonl("runs.jsonl").unwrap();
        assert_eq!(after, before[10..]);
        let nested_back: Vec<Rec> = state.read_jsonl("analytics/history.jsonl").unwrap();
        assert_eq!(nested_back.len(), 10);
        // Again: nothing due.
        let again = state.archive_histories(now, KEEP_MONTHS).unwrap();
        assert_eq!(again, Archived::default());
        assert_eq!(again.summary(), "archival: no history segment due");
    }
}
