//! The undo journal: what a cleanup deleted, kept so that `cache-cleanup undo` can put it back.
//!
//! Before a cleanup deletes memories or live (not yet expired) cache rows, it appends them to
//! `cleanup/journal/<run id>/<tier>-<target>.jsonl.gz` in the state directory, one JSON record per
//! line, and fsyncs it. Each append is one complete gzip member (a gzip file may hold several,
//! concatenated), so the file is readable after every append, whatever happens next. Beside it,
//! `<tier>-<target>.manifest.json` holds the record count, the length and the SHA-256 of the file
//! as of the last append, and what the records belong to (user, table). The manifest is rewritten
//! atomically after the data is durable and before the delete request is sent: a crash can never
//! leave a deletion without its journal. Bytes past the manifest's length were journaled by a run
//! that stopped before deleting them, and are ignored.
//!
//! Journals are pruned at the start of each cleanup: older than `cleanup.journal_keep`, then the
//! oldest runs' until all of them fit in `cleanup.journal_max_size`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StateError;
use crate::state::{StateDir, create_private_dir};
use crate::tier::Tier;

/// The journals' directory, relative to the state directory.
pub const DIR: &str = "cleanup/journal";

const DATA_SUFFIX: &str = ".jsonl.gz";
const MANIFEST_SUFFIX: &str = ".manifest.json";

/// What the records of a journal belong to, so that an undo puts them back in the same place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Memories: the user they belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Cache rows: the table, as the server names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Cache rows: the project whose rows they were, when the table has a project column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// When and how a journal was undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undone {
    /// When.
    pub at: DateTime<Utc>,
    /// Items put back.
    pub restored: u64,
    /// Items left out (present again, or not this user's).
    pub skipped: u64,
}

/// The manifest of one journal file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The cleanup run that deleted the items.
    pub run_id: String,
    /// The tier.
    pub tier: Tier,
    /// The target's name.
    pub target: String,
    /// The data file's name, in the same directory.
    pub file: String,
    /// What the records belong to.
    pub scope: Scope,
    /// The first append.
    pub created_at: DateTime<Utc>,
    /// The last append.
    pub updated_at: DateTime<Utc>,
    /// Records journaled.
    pub count: u64,
    /// Length of the data file as of the last append.
    pub bytes: u64,
    /// Hex SHA-256 of those bytes.
    pub sha256: String,
    /// Set once `cache-cleanup undo` has put the records back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone: Option<Undone>,
}

/// What a run journaled for one target, for its report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The data file, relative to the state directory.
    pub file: String,
    /// Records journaled.
    pub count: u64,
}

/// The journal directory of one cleanup run. Nothing is created until something is journaled.
#[derive(Clone, Debug)]
pub struct RunJournal {
    state: StateDir,
    run_id: String,
}

impl RunJournal {
    /// The journal of run `run_id` in `state`.
    pub fn new(state: &StateDir, run_id: &str) -> Self {
        Self { state: state.clone(), run_id: run_id.to_owned() }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// A writer for target `target` of `tier`; its files appear with the first append.
    pub fn writer(&self, tier: Tier, target: &str, scope: Scope) -> Writer {
        let base = format!("{}-{}", tier.as_str(), file_safe(target));
        let rel_dir = format!("{DIR}/{}", self.run_id);
        Writer {
            dir: self.state.path(&rel_dir),
            data_rel: format!("{rel_dir}/{base}{DATA_SUFFIX}"),
            data: None,
            manifest_path: self.state.path(&format!("{rel_dir}/{base}{MANIFEST_SUFFIX}")),
            hasher: Sha256::new(),
            manifest: Manifest {
                run_id: self.run_id.clone(),
                tier,
                target: target.to_owned(),
                file: format!("{base}{DATA_SUFFIX}"),
                scope,
                created_at: DateTime::<Utc>::MIN_UTC,
                updated_at: DateTime::<Utc>::MIN_UTC,
                count: 0,
                bytes: 0,
                sha256: String::new(),
                undone: None,
            },
            state: self.state.clone(),
        }
    }
}

/// Appends the records of one target to its journal, each append durable when it returns.
#[derive(Debug)]
pub struct Writer {
    state: StateDir,
    dir: PathBuf,
    data_rel: String,
    data: Option<File>,
    manifest_path: PathBuf,
    hasher: Sha256,
    manifest: Manifest,
}

impl Writer {
    /// Appends `records` (each one JSON document, without a line break) as one gzip member,
    /// fsyncs the file, then rewrites the manifest. When this returns `Ok`, the records are
    /// on disk and may be deleted at the source.
    pub fn append<S: AsRef<str>>(&mut self, records: &[S]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for record in records {
            let record = record.as_ref();
            anyhow::ensure!(!record.contains('\n'), "a journal record must be one line");
            text.push_str(record);
            text.push('\n');
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes())?;
        let member = gz.finish()?;
        let path = self.state.path(&self.data_rel);
        let now = crate::clock::now().unwrap_or_else(|_| Utc::now());
        if self.data.is_none() {
            create_private_dir(&self.dir)?;
            let file = crate::archive::private_file(&path)?;
            // The new file's entry, and the run directory's, must survive a crash too.
            for dir in [Some(self.dir.as_path()), self.dir.parent()].into_iter().flatten() {
                File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing `{}`", dir.display()))?;
            }
            self.data = Some(file);
            self.manifest.created_at = now;
        }
        let file = self.data.as_mut().context("the journal file is open")?;
        file.write_all(&member)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("writing the undo journal `{}`", path.display()))?;
        self.hasher.update(&member);
        self.manifest.count += records.len() as u64;
        self.manifest.bytes += member.len() as u64;
        self.manifest.sha256 = hex(&self.hasher.clone().finalize());
        self.manifest.updated_at = now;
        write_manifest(&self.manifest_path, &self.manifest)
    }

    /// What was journaled; `None` when nothing was.
    pub fn summary(&self) -> Option<Summary> {
        (self.manifest.count > 0).then(|| Summary { file: self.data_rel.clone(), count: self.manifest.count })
    }
}

fn write_manifest(path: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(manifest)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("schema_version".into(), crate::state::SCHEMA_VERSION.into());
    }
    crate::state::write_atomic(path, (serde_json::to_string_pretty(&value)? + "\n").as_bytes())
}

/// One journal file, as found on disk.
#[derive(Clone, Debug)]
pub struct Journal {
    /// Its manifest.
    pub manifest: Manifest,
    /// The manifest's path.
    pub manifest_path: PathBuf,
    /// The data file's path.
    pub data_path: PathBuf,
}

impl Journal {
    /// Checks the data file against the manifest: at least its length, and the SHA-256 of that
    /// many bytes. A mismatch is a [`StateError`] naming the file.
    pub fn verify(&self) -> anyhow::Result<()> {
        let corrupt = |message: String| StateError { path: self.data_path.clone(), message };
        let mut file = File::open(&self.data_path).map_err(|e| corrupt(format!("cannot be read: {e}")))?;
        let mut hasher = Sha256::new();
        let mut left = self.manifest.bytes;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = file.read(&mut buf[..want]).map_err(|e| corrupt(format!("cannot be read: {e}")))?;
            if n == 0 {
                return Err(corrupt(format!(
                    "is shorter than its manifest says ({} of {} bytes): the journal is damaged, nothing was restored",
                    self.manifest.bytes - left,
                    self.manifest.bytes
                ))
                .into());
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        let sha = hex(&hasher.finalize());
        if sha != self.manifest.sha256 {
            return Err(corrupt(format!(
                "has SHA-256 {sha}, not the {} of its manifest: the journal is damaged or was changed, nothing was restored",
                self.manifest.sha256
            ))
            .into());
        }
        Ok(())
    }

    /// The records, in the order they were journaled. Call [`Journal::verify`] first.
    pub fn records(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let corrupt = |message: String| StateError { path: self.data_path.clone(), message };
        let file = File::open(&self.data_path).map_err(|e| corrupt(format!("cannot be read: {e}")))?;
        let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file.take(self.manifest.bytes)));
        let mut records = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| corrupt(format!("cannot be decompressed ({e})")))?;
            if line.trim().is_empty() {
                continue;
            }
            let record =
                serde_json::from_str(&line).map_err(|e| corrupt(format!("line {}: is not valid JSON ({e})", i + 1)))?;
            records.push(record);
        }
        if records.len() as u64 != self.manifest.count {
            return Err(
                corrupt(format!("holds {} records, its manifest says {}", records.len(), self.manifest.count)).into()
            );
        }
        Ok(records)
    }

    /// Records that the journal was undone.
    pub fn mark_undone(&mut self, undone: Undone) -> anyhow::Result<()> {
        self.manifest.undone = Some(undone);
        write_manifest(&self.manifest_path, &self.manifest)
    }
}

/// The journals of one run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The run's id.
    pub run_id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its journal files, by name.
    pub journals: Vec<Journal>,
    /// When it started journaling (the directory's time when no manifest says).
    pub created_at: DateTime<Utc>,
    /// Bytes on disk.
    pub bytes: u64,
}

impl Run {
    /// Records journaled, over every target.
    pub fn count(&self) -> u64 {
        self.journals.iter().map(|j| j.manifest.count).sum()
    }

    /// Whether every journal of the run has been undone.
    pub fn undone(&self) -> bool {
        !self.journals.is_empty() && self.journals.iter().all(|j| j.manifest.undone.is_some())
    }
}

/// Every run with a journal, oldest first. An unreadable manifest is a [`StateError`] naming it.
pub fn runs(state: &StateDir) -> anyhow::Result<Vec<Run>> {
    let root = state.path(DIR);
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StateError { path: root, message: format!("cannot be read: {e}") }.into()),
    };
    let mut runs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading `{}`", root.display()))?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let run_id = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let mut journals = Vec::new();
        let mut bytes = 0;
        let mut names: Vec<String> = fs::read_dir(&dir)
            .with_context(|| format!("reading `{}`", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| {
                bytes += e.metadata().map_or(0, |m| m.len());
                e.file_name().to_string_lossy().into_owned()
            })
            .collect();
        names.sort();
        for name in names.iter().filter(|n| n.ends_with(MANIFEST_SUFFIX)) {
            let rel = format!("{DIR}/{run_id}/{name}");
            let Some(manifest) = state.read_json::<Manifest>(&rel)? else { continue };
            let data_path = dir.join(&manifest.file);
            journals.push(Journal { manifest, manifest_path: state.path(&rel), data_path });
        }
        let created_at = journals.iter().map(|j| j.manifest.created_at).min().unwrap_or_else(|| {
            entry.metadata().and_then(|m| m.modified()).map(DateTime::<Utc>::from).unwrap_or_else(|_| Utc::now())
        });
        runs.push(Run { run_id, dir, journals, created_at, bytes });
    }
    runs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.run_id.cmp(&b.run_id)));
    Ok(runs)
}

/// The run named by `selector`: `latest` (the newest with a journal) or a run id.
pub fn find(state: &StateDir, selector: &str) -> anyhow::Result<Run> {
    let mut runs = runs(state)?;
    let found = if selector == "latest" { runs.pop() } else { runs.into_iter().find(|r| r.run_id == selector) };
    found.ok_or_else(|| {
        crate::error::UsageError(if selector == "latest" {
            format!("there is no undo journal in `{}`", state.path(DIR).display())
        } else {
            format!("no undo journal for run `{selector}` (list them with `cache-cleanup undo --list`)")
        })
        .into()
    })
}

/// Removes the journals of runs older than `keep`, then the oldest runs' until the rest fit
/// in `max_bytes`. Returns the run ids removed.
pub fn prune(state: &StateDir, keep: Duration, max_bytes: u64, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
    let runs = runs(state)?;
    let cutoff = chrono::Duration::from_std(keep)
        .ok()
        .and_then(|keep| now.checked_sub_signed(keep))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut total: u64 = runs.iter().map(|r| r.bytes).sum();
    let mut removed = Vec::new();
    for run in &runs {
        if run.created_at >= cutoff && total <= max_bytes {
            // Oldest first: every later run is newer, and the total only falls.
            break;
        }
        fs::remove_dir_all(&run.dir).with_context(|| format!("removing the undo journal `{}`", run.dir.display()))?;
        total = total.saturating_sub(run.bytes);
        removed.push(run.run_id.clone());
    }
    Ok(removed)
}

/// `name` with anything but letters, digits, `.`, `_` and `-` replaced by `_`.
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("state")).unwrap();
        (dir, state)
    }

    #[test]
    fn appends_are_readable_verified_and_tampering_is_refused() {
        let (_dir, state) = state();
        let run = RunJournal::new(&state, "20260101T000000.000Z-1");
        let mut writer = run.writer(Tier::Memory, "m/1", Scope { user_id: Some("u".into()), ..Scope::default() });
        assert!(writer.summary().is_none());
        writer.append::<&str>(&[]).unwrap();
        assert!(!state.path(DIR).exists(), "nothing journaled, nothing created");
        writer.append(&[r#"{"id":"a"}"#, r#"{"id":"b"}"#]).unwrap();
        writer.append(&[r#"{"id":"c"}"#.to_owned()]).unwrap();
        assert!(writer.append(&["{\n}"]).is_err());
        let summary = writer.summary().unwrap();
        assert_eq!(summary.count, 3);
        assert!(summary.file.ends_with("memory-m_1.jsonl.gz"), "{summary:?}");
        let found = find(&state, "latest").unwrap();
        assert_eq!((found.count(), found.journals.len()), (3, 1));
        let mut journal = found.journals[0].clone();
        assert_eq!(journal.manifest.scope.user_id.as_deref(), Some("u"));
        journal.verify().unwrap();
        let ids: Vec<String> =
            journal.records().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        // Bytes past the manifest's end (journaled, never deleted) are ignored.
        let mut data = fs::read(&journal.data_path).unwrap();
        fs::OpenOptions::new().append(true).open(&journal.data_path).unwrap().write_all(b"tail").unwrap();
        journal.verify().unwrap();
        assert_eq!(journal.records().unwrap().len(), 3);
        // One changed byte is refused, naming the file.
        data[12] ^= 0xff;
        fs::write(&journal.data_path, &data).unwrap();
        let err = journal.verify().unwrap_err();
        let state_err = err.downcast_ref::<StateError>().unwrap();
        assert_eq!(state_err.path, journal.data_path);
        assert!(err.to_string().contains("SHA-256"), "{err}");
        fs::write(&journal.data_path, &data[..10]).unwrap();
        assert!(journal.verify().unwrap_err().to_string().contains("shorter"));
        journal.mark_undone(Undone { at: Utc::now(), restored: 3, skipped: 0 }).unwrap();
        assert!(find(&state, "20260101T000000.000Z-1").unwrap().undone());
        assert!(find(&state, "nope").is_err());
    }

    #[test]
    fn prune_by_age_then_size_oldest_first() {
        let (_dir, state) = state();
        let now = Utc::now();
        for (i, days) in [10i64, 3, 2, 1].iter().enumerate() {
            let run = RunJournal::new(&state, &format!("run-{i}"));
            let mut writer = run.writer(Tier::Postgres, "main", Scope::default());
            let record = format!("{{\"n\":{i}}}");
            writer.append(&[record.as_str()]).unwrap();
            // Age it.
            let mut journal = find(&state, &format!("run-{i}")).unwrap().journals.remove(0);
            journal.manifest.created_at = now - chrono::Duration::days(*days);
            write_manifest(&journal.manifest_path, &journal.manifest).unwrap();
        }
        let removed = prune(&state, Duration::from_secs(7 * 86400), u64::MAX, now).unwrap();
        assert_eq!(removed, ["run-0"]);
        let sizes: Vec<u64> = runs(&state).unwrap().iter().map(|r| r.bytes).collect();
        let removed = prune(&state, Duration::from_secs(7 * 86400), sizes[1] + sizes[2], now).unwrap();
        assert_eq!(removed, ["run-1"]);
        let left: Vec<String> = runs(&state).unwrap().into_iter().map(|r| r.run_id).collect();
        assert_eq!(left, ["run-2", "run-3"]);
    }
}
