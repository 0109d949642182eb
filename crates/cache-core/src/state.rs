//! The state directory: JSON documents and JSON Lines histories, written safely.
//!
//! Resolved as the first of `--state-dir`, `CACHE_STATE_DIR`, `$STATE_DIRECTORY` (systemd),
//! `/var/lib/cache-toolkit` for root, `$XDG_STATE_HOME/cache-toolkit`,
//! `~/.local/state/cache-toolkit`. Directories are 0700 and files 0600. Every document carries
//! `schema_version`; every write is atomic (temp file in the same directory, fsync, rename, fsync
//! of the directory); histories are appended one line at a time. A file that cannot be parsed is
//! a [`StateError`] naming it, and it is never replaced; a directory that cannot be used at all
//! is a [`StateDirError`].

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Env;
use crate::env::EnvVars;
use crate::error::{StateDirError, StateError};
use crate::redact;

/// The schema version written into every state document.
pub const SCHEMA_VERSION: u64 = 1;

/// An opened state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
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
        Ok(Self { root })
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
        write_atomic(&self.path(rel), text.as_bytes())
    }

    /// Appends one JSON line (with `schema_version`) to a history file.
    pub fn append_jsonl<T: Serialize>(&self, rel: &str, record: &T) -> anyhow::Result<()> {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        let mut line = serde_json::to_string(&versioned(record)?)?;
        line = redact::scrub(&line).into_owned();
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening history `{}`", path.display()))?;
        cut_torn_tail(&file, &path)?;
        // One write call per line: with O_APPEND, concurrent writers never interleave a line;
        // synced, so a crash after the call never leaves half of it.
        file.write_all(line.as_bytes()).with_context(|| format!("appending to history `{}`", path.display()))?;
        file.sync_data().with_context(|| format!("syncing history `{}`", path.display()))
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

    /// Reads only the last good record of a JSON Lines history (from the end of the file, so
    /// the cost does not grow with the history); `Ok(None)` when there is none. Bad lines at
    /// the end (a torn append) are skipped with a warning, like [`StateDir::read_jsonl`]'s.
    pub fn read_last_jsonl<T: DeserializeOwned>(&self, rel: &str) -> anyhow::Result<Option<T>> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path(rel);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError { path, message: format!("cannot be read: {e}") }.into()),
        };
        let len = file.metadata()?.len();
        let mut pos = len;
        let mut tail: Vec<u8> = Vec::new();
        let mut skipped: usize;
        // Block by block from the end, newest line first, until a line parses.
        loop {
            let step = pos.min(64 * 1024);
            pos -= step;
            file.seek(SeekFrom::Start(pos))?;
            let mut block = vec![0u8; step as usize];
            file.read_exact(&mut block)?;
            block.extend_from_slice(&tail);
            tail = block;
            // Whole lines only: the first may be cut unless the block starts the file.
            let first_whole =
                if pos == 0 { 0 } else { tail.iter().position(|b| *b == b'\n').map_or(tail.len(), |i| i + 1) };
            let lines: Vec<&[u8]> = tail[first_whole..].split(|b| *b == b'\n').collect();
            skipped = 0;
            for line in lines.iter().rev() {
                let line = String::from_utf8_lossy(line);
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let parsed = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .filter(|v| check_version(v).is_ok())
                    .and_then(|v| serde_json::from_value::<T>(v).ok());
                match parsed {
                    Some(record) => {
                        if skipped > 0 {
                            tracing::warn!("history `{}`: skipped {skipped} bad line(s) at its end", path.display());
                        }
                        return Ok(Some(record));
                    }
                    None => skipped += 1,
                }
            }
            if pos == 0 || tail.len() > 16 << 20 {
                break;
            }
        }
        if skipped > 0 {
            tracing::warn!("history `{}`: skipped {skipped} bad line(s) and found no good one", path.display());
        }
        Ok(None)
    }

    /// Reads every record of a JSON Lines history; a bad line is an error naming file and line.
    pub fn read_jsonl<T: DeserializeOwned>(&self, rel: &str) -> anyhow::Result<Vec<T>> {
        self.read_jsonl_from(rel, 0)
    }

    /// Reads the records of the last `max_bytes` of a JSON Lines history (the line cut at the
    /// start is left out): for readers that need only recent records of a growing file.
    pub fn read_jsonl_tail<T: DeserializeOwned>(&self, rel: &str, max_bytes: u64) -> anyhow::Result<Vec<T>> {
        let len = fs::metadata(self.path(rel)).map(|m| m.len()).unwrap_or(0);
        self.read_jsonl_from(rel, len.saturating_sub(max_bytes))
    }

    fn read_jsonl_from<T: DeserializeOwned>(&self, rel: &str, offset: u64) -> anyhow::Result<Vec<T>> {
        use std::io::{Seek, SeekFrom};
        let path = self.path(rel);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StateError { path, message: format!("cannot be read: {e}") }.into());
            }
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut lines = BufReader::new(file).lines();
        if offset > 0 {
            // The first line is cut: skip it.
            lines.next();
        }
        // A history heals: a bad line (torn by a full disk, garbage) is skipped and counted, and
        // the rest is read; the file is never refused whole for one line.
        let mut records = Vec::new();
        let (mut bad, mut first_bad) = (0usize, None::<String>);
        for (i, line) in lines.enumerate() {
            let at = if offset > 0 { format!("line {} of the last part", i + 1) } else { format!("line {}", i + 1) };
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    bad += 1;
                    first_bad.get_or_insert(format!("{at}: cannot be read ({e})"));
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<serde_json::Value>(&line)
                .map_err(|e| format!("is not valid JSON ({e})"))
                .and_then(|value| check_version(&value).map(|()| value))
                .and_then(|value| {
                    serde_json::from_value(value).map_err(|e| format!("does not have the expected shape ({e})"))
                });
            match parsed {
                Ok(record) => records.push(record),
                Err(why) => {
                    bad += 1;
                    first_bad.get_or_insert(format!("{at}: {why}"));
                }
            }
        }
        if let Some(first) = first_bad {
            tracing::warn!(
                "history `{}`: skipped {bad} bad line(s), the first {}",
                path.display(),
                crate::messages::clip(&first, 200)
            );
        }
        Ok(records)
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
}
