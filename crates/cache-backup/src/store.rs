//! Where backups live: one directory per backup, named by its id, holding its files and a
//! `manifest.json` written last. A backup is built under `.partial-<id>` and renamed into place
//! only once complete, so a failed or killed `create` never looks complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use cache_core::state::{StateDir, create_private_dir};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";

/// An entry of the backup directory that is not a backup: (name, why).
pub type Stray = (String, String);
/// Prefix of a backup being built (or left by a failed create).
pub const PARTIAL_PREFIX: &str = ".partial-";
/// Verification results, in the state directory.
const VERIFIED: &str = "backup/verified.json";

/// A complete backup.
#[derive(Clone, Debug)]
pub struct Backup {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Backup {
    /// Bytes of all its files.
    pub fn bytes(&self) -> u64 {
        self.manifest.files.iter().map(|f| f.bytes).sum()
    }

    /// What it holds, e.g. `redis-rdb, postgres-copy, state`.
    pub fn contents(&self) -> String {
        let mut kinds: Vec<&str> = self.manifest.files.iter().map(|f| f.content.as_str()).collect();
        kinds.dedup();
        kinds.join(", ")
    }
}

/// The last verification of one backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// When.
    pub at: DateTime<Utc>,
    /// Whether every file was sound.
    pub ok: bool,
    /// What was wrong.
    pub problems: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct VerifiedFile {
    backups: BTreeMap<String, Verification>,
}

/// The backup directory.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating, mode 0700) the backup directory.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        create_private_dir(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Complete backups, oldest first. Entries that are not backups (a `lost+found`, a
    /// directory without a readable manifest, a manifest of a newer format) are skipped:
    /// [`Store::strays`] says what they are.
    pub fn backups(&self) -> anyhow::Result<Vec<Backup>> {
        let (backups, _) = self.scan()?;
        Ok(backups)
    }

    /// The entries of the backup directory that are not backups, with why: listed, never used.
    pub fn strays(&self) -> anyhow::Result<Vec<Stray>> {
        let (_, strays) = self.scan()?;
        Ok(strays)
    }

    fn scan(&self) -> anyhow::Result<(Vec<Backup>, Vec<Stray>)> {
        let mut backups = Vec::new();
        let mut strays = Vec::new();
        for entry in std::fs::read_dir(&self.dir).with_context(|| format!("reading `{}`", self.dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // `.partial-*`: see `partials`.
            }
            if !entry.file_type()?.is_dir() {
                strays.push((name, "not a directory".to_owned()));
                continue;
            }
            let path = entry.path().join(MANIFEST);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    strays.push((name, format!("no {MANIFEST}")));
                    continue;
                }
                Err(e) => {
                    strays.push((name, format!("{MANIFEST} unreadable: {e}")));
                    continue;
                }
            };
            match serde_json::from_str::<Manifest>(&text) {
                Ok(m) if m.schema_version > cache_core::state::SCHEMA_VERSION => strays.push((
                    name,
                    format!(
                        "{MANIFEST} has schema_version {}; this toolkit reads {} and older",
                        m.schema_version,
                        cache_core::state::SCHEMA_VERSION
                    ),
                )),
                Ok(manifest) => backups.push(Backup { dir: entry.path(), manifest }),
                Err(e) => strays.push((name, format!("{MANIFEST} is not a valid manifest: {e}"))),
            }
        }
        backups.sort_by_key(|b| b.manifest.created_at);
        strays.sort();
        Ok((backups, strays))
    }

    /// Backups left incomplete by a failed or killed `create`.
    pub fn partials(&self) -> anyhow::Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX))
            .map(|e| e.path())
            .collect())
    }

    /// The backup named by `selector`: `latest`, an id, or a date (`YYYY-MM-DD`: the newest
    /// backup of that day).
    pub fn find(&self, selector: &str) -> anyhow::Result<Backup> {
        let backups = self.backups()?;
        let found = if selector == "latest" {
            backups.last().cloned()
        } else if let Ok(day) = NaiveDate::parse_from_str(selector, "%Y-%m-%d") {
            backups.iter().rev().find(|b| b.manifest.created_at.date_naive() == day).cloned()
        } else {
            backups.iter().find(|b| b.manifest.id == selector).cloned()
        };
        match found {
            Some(backup) => Ok(backup),
            None if backups.is_empty() => bail!("there is no backup in `{}`", self.dir.display()),
            None => bail!("no backup matches `{selector}` (try `cache-backup list`)"),
        }
    }

    /// A fresh id for a backup taken `now`, and its partial directory (mode 0700).
    pub fn begin(&self, now: DateTime<Utc>) -> anyhow::Result<(String, PathBuf)> {
        let base = now.format("%Y%m%dT%H%M%SZ").to_string();
        let mut id = base.clone();
        let mut n = 2;
        while self.dir.join(&id).exists() {
            id = format!("{base}-{n}");
            n += 1;
        }
        let partial = self.dir.join(format!("{PARTIAL_PREFIX}{id}-{}", std::process::id()));
        create_private_dir(&partial)?;
        Ok((id, partial))
    }

    /// Writes the manifest into `partial` and renames it to the backup's final name.
    pub fn commit(&self, partial: &Path, manifest: &Manifest) -> anyhow::Result<PathBuf> {
        let text = serde_json::to_string_pretty(manifest)? + "\n";
        cache_core::state::write_atomic(&partial.join(MANIFEST), text.as_bytes())?;
        let target = self.dir.join(&manifest.id);
        std::fs::rename(partial, &target).with_context(|| format!("moving the backup into `{}`", target.display()))?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all())?;
        Ok(target)
    }
}

/// Verification results kept in the state directory.
pub fn verifications(state: &StateDir) -> anyhow::Result<BTreeMap<String, Verification>> {
    Ok(state.read_json::<VerifiedFile>(VERIFIED)?.unwrap_or_default().backups)
}

/// Records the verification of backup `id`.
pub fn record_verification(state: &StateDir, id: &str, verification: Verification) -> anyhow::Result<()> {
    let mut file = state.read_json::<VerifiedFile>(VERIFIED)?.unwrap_or_default();
    file.backups.insert(id.to_owned(), verification);
    state.write_json(VERIFIED, &file)
}

/// Forgets the verification of removed backups.
pub fn forget_verifications(state: &StateDir, ids: &[String]) -> anyhow::Result<()> {
    let mut file = state.read_json::<VerifiedFile>(VERIFIED)?.unwrap_or_default();
    file.backups.retain(|id, _| !ids.contains(id));
    state.write_json(VERIFIED, &file)
}
