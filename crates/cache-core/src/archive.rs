//! Backup archives: streaming SHA-256, parallel gzip (pigz-style), tar.gz of directories that
//! never follows symbolic links, extraction that refuses anything escaping its target, and the
//! manifest that lists every file of a backup with its size and checksum.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A writer that hashes (SHA-256) and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The hex SHA-256 and byte count so far, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (hex(&self.hasher.finalize()), self.bytes, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex SHA-256 and size of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hex(&hasher.finalize()), total));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// A gzip writer compressing on `threads` threads (pigz-style blocks) at `level` (1-9).
/// Call `finish` on it: dropping it unfinished loses the tail.
pub fn gzip_writer<W: Write + Send + 'static>(out: W, level: u32, threads: usize) -> Box<dyn gzp::ZWriter<W>> {
    let level = gzp::Compression::new(level.clamp(1, 9));
    gzp::ZBuilder::<gzp::deflate::Gzip, W>::new().num_threads(threads.max(1)).compression_level(level).from_writer(out)
}

/// Writes each `(name, path)` (a directory tree or a single file) as a tar stream into `out`,
/// storing symbolic links as links (never following them) and leaving out every path under
/// one of `exclude`.
pub fn tar_paths<W: Write>(out: W, items: &[(String, PathBuf)], exclude: &[PathBuf]) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    for (name, root) in items {
        let walk = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name();
        let mut entries = walk.into_iter();
        // A file removed while the walk goes (another run's temporary file in the state
        // directory, renamed over its document) is no longer there to archive: skipped, not an
        // error that fails the whole archive. Nothing of it is written before it is opened.
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.io_error().is_some_and(gone) && e.depth() > 0 => continue,
                Err(e) => return Err(io::Error::other(e)),
            };
            if exclude.iter().any(|x| entry.path().starts_with(x)) {
                if entry.file_type().is_dir() {
                    entries.skip_current_dir();
                }
                continue;
            }
            let rel = entry.path().strip_prefix(root).map_err(io::Error::other)?;
            let archived = if rel.as_os_str().is_empty() { PathBuf::from(name) } else { Path::new(name).join(rel) };
            match builder.append_path_with_name(entry.path(), archived) {
                Err(e) if gone(&e) && entry.depth() > 0 => continue,
                done => done?,
            }
        }
    }
    builder.into_inner()
}

/// A new gzip file (mode 0600, never overwriting one): compressed on threads as it is
/// written, and hashed (SHA-256 of the compressed bytes) on the way to the disk, so that the
/// manifest needs no second read.
pub struct GzFile {
    path: PathBuf,
    writer: Box<dyn gzp::ZWriter<HashingWriter<File>>>,
}

impl GzFile {
    /// Creates `path` (it must not exist) for gzip at `level` on `threads` threads.
    pub fn create(path: &Path, level: u32, threads: usize) -> anyhow::Result<Self> {
        let file = private_file(path)?;
        Ok(Self { path: path.to_path_buf(), writer: gzip_writer(HashingWriter::new(file), level, threads) })
    }

    /// Flushes the compressor and fsyncs the file; returns its SHA-256 and size.
    pub fn finish(mut self) -> anyhow::Result<(String, u64)> {
        let hashing =
            self.writer.finish().map_err(|e| anyhow::anyhow!("compressing `{}`: {e}", self.path.display()))?;
        let (sha, bytes, file) = hashing.finish();
        file.sync_all().with_context(|| format!("syncing `{}`", self.path.display()))?;
        Ok((sha, bytes))
    }
}

impl GzFile {
    /// `e`, naming the file (a full disk's ENOSPC says nothing of where).
    fn named(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("writing `{}`: {e}", self.path.display()))
    }
}

impl Write for GzFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf).map_err(|e| self.named(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().map_err(|e| self.named(e))
    }
}

/// Creates `path` with mode 0600, failing if it exists.
pub fn private_file(path: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating `{}`", path.display()))
}

/// Why an archive entry is refused.
fn unsafe_path(path: &Path) -> Option<&'static str> {
    if path.is_absolute() || path.components().any(|c| matches!(c, Component::RootDir | Component::Prefix(_))) {
        return Some("an absolute path");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Some("a `..` component");
    }
    None
}

/// Whether a link at `entry` (relative to the target) pointing to `target` stays inside.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 =
        entry.parent().map_or(0, |p| p.components().filter(|c| matches!(c, Component::Normal(_))).count() as i64);
    for component in target.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// A step of a relative path.
enum Step {
    Up,
    Name(std::ffi::OsString),
}

/// `path` as steps; `None` for an absolute one.
fn steps(path: &Path) -> Option<Vec<Step>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => out.push(Step::Up),
            Component::Normal(n) => out.push(Step::Name(n.to_owned())),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Where `path` (relative to the target) really leads once the archive's own symbolic links
/// (`links`: entry → its target, relative to the target's root) are followed, as components
/// below the target; `None` when it leads outside (or loops). `p/q/r -> ../..` then
/// `e -> p/q/r/..` leads above the target, though each link alone looks inside.
fn resolve(path: &Path, links: &BTreeMap<PathBuf, PathBuf>) -> Option<Vec<std::ffi::OsString>> {
    let mut todo = steps(path)?;
    todo.reverse();
    let mut at: Vec<std::ffi::OsString> = Vec::new();
    let mut followed = 0;
    while let Some(step) = todo.pop() {
        match step {
            Step::Up => {
                at.pop()?;
            }
            Step::Name(name) => {
                at.push(name);
                let so_far: PathBuf = at.iter().collect();
                if let Some(target) = links.get(&so_far) {
                    followed += 1;
                    if followed > 40 {
                        return None;
                    }
                    // The link's target is relative to the root: start from there.
                    at.clear();
                    let mut more = steps(target)?;
                    more.reverse();
                    todo.extend(more);
                }
            }
        }
    }
    Some(at)
}

/// Checks every entry of the tar.gz at `archive`: no absolute path, no `..`, no link (symbolic
/// or hard) that leads outside, followed through the archive's own links, no entry written
/// through a link, no device files. Returns the entries' paths.
pub fn check_tar_gz(archive: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let file = File::open(archive).with_context(|| format!("opening `{}`", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)));
    let mut paths = Vec::new();
    let mut links: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for entry in tar.entries().with_context(|| format!("reading `{}`", archive.display()))? {
        let entry = entry.with_context(|| format!("reading `{}`", archive.display()))?;
        let path = entry.path()?.into_owned();
        if let Some(why) = unsafe_path(&path) {
            bail!("`{}` holds `{}`, {why}: refusing to extract it", archive.display(), path.display());
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
            let inside =
                if kind.is_hard_link() { unsafe_path(&target).is_none() } else { link_stays_inside(&path, &target) };
            if !inside {
                bail!(
                    "`{}` holds the link `{}` -> `{}`, which leads outside: refusing to extract it",
                    archive.display(),
                    path.display(),
                    target.display()
                );
            }
            if kind.is_symlink() {
                let parent = path.parent().unwrap_or(Path::new(""));
                links.insert(path.clone(), parent.join(&target));
            }
        }
        // Followed through every link the archive made so far, the entry (and a link's
        // target) must stay inside; and nothing is written through a link.
        let through = path.parent().and_then(|p| resolve(p, &links)).map(|p| p.iter().collect::<PathBuf>());
        let escapes = path.parent().is_some() && through.is_none()
            || links.get(&path).is_some_and(|t| resolve(t, &links).is_none());
        if escapes {
            bail!(
                "`{}` holds `{}`, which leads outside through the archive's links: refusing to extract it",
                archive.display(),
                path.display()
            );
        }
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            bail!("`{}` holds the device or pipe `{}`: refusing to extract it", archive.display(), path.display());
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Extracts the tar.gz at `archive` into `dest`, all or nothing: after [`check_tar_gz`]
/// accepted every entry, into a fresh directory beside `dest`, whose top-level entries are
/// renamed into `dest` only once every entry was written and none of them is in `dest`
/// already. Setuid, setgid and sticky bits are never kept.
pub fn extract_tar_gz(archive: &Path, dest: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let paths = check_tar_gz(archive)?;
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating `{}`", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in `{}`", parent.display()))?;
    let file = File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)));
    tar.set_preserve_permissions(true);
    tar.set_overwrite(false);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if !entry.unpack_in(staging.path()).with_context(|| format!("extracting `{}`", path.display()))? {
            bail!("`{}` would be written outside `{}`: stopped", path.display(), dest.display());
        }
        let written = staging.path().join(&path);
        if let Ok(meta) = std::fs::symlink_metadata(&written)
            && !meta.file_type().is_symlink()
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode();
            if mode & 0o7000 != 0 {
                std::fs::set_permissions(&written, std::fs::Permissions::from_mode(mode & 0o777))?;
            }
        }
    }
    let top: Vec<std::ffi::OsString> =
        std::fs::read_dir(staging.path())?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    if dest.exists() {
        if let Some(clash) = top.iter().find(|name| std::fs::symlink_metadata(dest.join(name)).is_ok()) {
            bail!(
                "`{}` already holds `{}`: nothing was extracted (extract into an empty directory)",
                dest.display(),
                Path::new(clash).display()
            );
        }
        for name in &top {
            std::fs::rename(staging.path().join(name), dest.join(name))
                .with_context(|| format!("moving `{}` into `{}`", Path::new(name).display(), dest.display()))?;
        }
    } else {
        let staged = staging.keep();
        std::fs::rename(&staged, dest).with_context(|| format!("moving the extraction to `{}`", dest.display()))?;
    }
    Ok(paths)
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the backup's directory.
    pub path: String,
    /// What it holds: `redis-rdb`, `redis-logical`, `postgres-schema`, `postgres-copy`,
    /// `memory-jsonl`, `config`, `state`, `paths`.
    pub content: String,
    /// Size on disk.
    pub bytes: u64,
    /// Hex SHA-256 of the file as stored.
    pub sha256: String,
    /// The Redis Cluster node (`host:port`) this shard was taken from (`None`: no shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's id (`CLUSTER MYID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The slot ranges (inclusive) the node served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<Vec<(u16, u16)>>,
    /// How the file is encrypted (`None`: it is not); `bytes` and `sha256` are then the stored
    /// ciphertext's, checkable without the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<Encrypted>,
}

/// The encryption of a backup file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encrypted {
    /// The scheme: `age` (<https://age-encryption.org/v1>, X25519 recipients).
    pub scheme: String,
    /// The recipients (public keys) it was encrypted to.
    pub recipients: Vec<String>,
    /// Size of the plaintext.
    pub plain_bytes: u64,
    /// Hex SHA-256 of the plaintext.
    pub plain_sha256: String,
}

impl ManifestFile {
    /// A file that is no cluster shard, from its `(sha256, bytes)`.
    pub fn plain(path: String, content: &str, (sha256, bytes): (String, u64)) -> Self {
        Self {
            path,
            content: content.to_owned(),
            bytes,
            sha256,
            node: None,
            node_id: None,
            slots: None,
            encrypted: None,
        }
    }
}

/// One primary of a Redis Cluster when the backup was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestShard {
    /// `host:port`.
    pub node: String,
    /// Its node id, from `CLUSTER NODES`.
    pub node_id: String,
    /// The slot ranges (inclusive) it served.
    pub slots: Vec<(u16, u16)>,
}

/// A configured source, or one shard of a cluster, that could not be backed up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFailure {
    /// Tier.
    pub tier: String,
    /// Target name.
    pub target: String,
    /// The cluster node (`host:port`), for a shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What went wrong.
    pub error: String,
}

impl ManifestFailure {
    /// `redis/main shard 10.0.0.2:6379`, `postgres/main`: what was not backed up.
    pub fn label(&self) -> String {
        match &self.node {
            Some(node) => format!("{}/{} shard {node}", self.tier, self.target),
            None => format!("{}/{}", self.tier, self.target),
        }
    }
}

/// What became of one source a backup was configured to take: a Redis, PostgreSQL or memory
/// target, or an archive (`files`: `config`, `state`, `paths`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTaken {
    /// Tier (`redis`, `postgres`, `memory`, `files`).
    pub tier: String,
    /// Target name (for `files`, the archive: `config`, `state`, `paths`).
    pub target: String,
    /// `ok`, or `failed`.
    pub result: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ManifestTaken {
    /// `redis/main`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.tier, self.target)
    }

    /// Whether it was taken.
    pub fn ok(&self) -> bool {
        self.result == "ok"
    }
}

/// Where a backed-up dataset came from (no secrets: the URL is redacted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSource {
    /// Tier.
    pub tier: String,
    /// Target name.
    pub target: String,
    /// Redacted URL or path.
    pub endpoint: String,
    /// The server's version, when known.
    pub server_version: Option<String>,
    /// How the data was taken (`bgsave`, `replication`, `logical`, `copy`, `tar`, `api`; several
    /// joined with `+` when a cluster's shards were taken differently).
    pub method: String,
    /// For a Redis Cluster: every primary it had, with its slots (`None`: not a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<ManifestShard>>,
    /// What the source held when it was taken, for a disaster-recovery drill to compare the
    /// restored data with (`None`: not recorded, as in backups taken before it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<SourceFigures>,
}

/// What a source held when it was backed up: per Redis dump file its key count and a small
/// sample of keys, for a table its row count and checksum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFigures {
    /// One entry per Redis dump file (one for a standalone server, one per cluster shard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<DumpFigures>,
    /// A table's row count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// A table's checksum: `md5(string_agg(md5(row::text), '' ORDER BY md5(row::text)))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_md5: Option<String>,
}

/// The figures of one Redis dump file, taken from its server around the dump.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFigures {
    /// The dump file's name in the backup (before encryption).
    pub file: String,
    /// `DBSIZE` just before the dump started.
    pub keys_before: u64,
    /// `DBSIZE` just after it ended.
    pub keys_after: u64,
    /// Keys with an expiry time (INFO keyspace `expires`) after the dump: at most this many may
    /// have expired by the time the backup is restored (for the reader; the drill counts the
    /// expired keys themselves).
    pub expiring: u64,
    /// Keys whose value and expiry were the same before and after the dump.
    pub sample: Vec<SampledKey>,
}

/// One sampled key: its type, a SHA-256 of its logical value and its absolute expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampledKey {
    /// The key (UTF-8 keys only are sampled).
    pub key: String,
    /// Its type (`string`, `hash`, `set`, `zset`, `list`).
    #[serde(rename = "type")]
    pub kind: String,
    /// SHA-256 of its value, read element by element (sorted for hashes and sets).
    pub sha256: String,
    /// Its absolute expiry time in Unix milliseconds (`None`: none).
    pub expires_at_ms: Option<i64>,
}

/// The manifest of one backup: written last, so a backup without one is incomplete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format's version ([`crate::state::SCHEMA_VERSION`]).
    pub schema_version: u64,
    /// The backup's id (its directory name).
    pub id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// The host that took it.
    pub host: String,
    /// The toolkit's version.
    pub tool_version: String,
    /// Where each dataset came from.
    pub sources: Vec<ManifestSource>,
    /// Every file, with size and checksum.
    pub files: Vec<ManifestFile>,
    /// What could not be backed up (empty: the backup is complete; absent in manifests written
    /// before it was recorded).
    #[serde(default)]
    pub failed: Vec<ManifestFailure>,
    /// Every source the backup was configured to take, and what became of it (absent in
    /// manifests written before it was recorded: [`Manifest::failed`] says what they lack).
    #[serde(default)]
    pub configured: Vec<ManifestTaken>,
}

impl Manifest {
    /// What the backup lacks of what it was configured to take: every source (or cluster
    /// shard) that failed, with its error. Empty: the backup is complete.
    pub fn missing(&self) -> Vec<ManifestFailure> {
        let mut missing = self.failed.clone();
        for taken in self.configured.iter().filter(|t| !t.ok()) {
            if !missing.iter().any(|f| f.tier == taken.tier && f.target == taken.target) {
                missing.push(ManifestFailure {
                    tier: taken.tier.clone(),
                    target: taken.target.clone(),
                    node: None,
                    error: taken.error.clone().unwrap_or_default(),
                });
            }
        }
        missing
    }

    /// Whether the backup lacks a source it was configured to take.
    pub fn is_partial(&self) -> bool {
        !self.missing().is_empty()
    }
}

/// A problem found by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

/// Re-reads every file of the backup in `dir`: size, SHA-256, gzip integrity of `.gz` files,
/// and the RDB magic of Redis dumps. Returns the problems found (none: the backup is sound).
pub fn verify(dir: &Path, manifest: &Manifest) -> Vec<Problem> {
    let mut problems = Vec::new();
    for file in &manifest.files {
        let mut problem = |p: String| problems.push(Problem { path: file.path.clone(), problem: p });
        if unsafe_path(Path::new(&file.path)).is_some() {
            problem("the manifest names a path outside the backup".into());
            continue;
        }
        let path = dir.join(&file.path);
        // One read of the file: hashed as it is decompressed (a `.gz` file) or read.
        let (sha, bytes, gzip) = match read_once(&path, file.path.ends_with(".gz")) {
            Err(e) => {
                problem(format!("cannot be read: {e}"));
                continue;
            }
            Ok(read) => read,
        };
        if bytes != file.bytes {
            problem(format!("size {bytes} differs from the manifest's {}", file.bytes));
        } else if sha != file.sha256 {
            problem(format!("SHA-256 {sha} differs from the manifest's {}", file.sha256));
        } else {
            match gzip {
                None => {}
                Some(Err(e)) => problem(format!("gzip data is damaged: {e}")),
                Some(Ok(head)) if file.content == "redis-rdb" && !head.starts_with(b"REDIS") => {
                    problem("not an RDB file: the REDIS magic is missing".into());
                }
                Some(Ok(_)) => {}
            }
        }
    }
    problems
}

/// Reads `path` once: its SHA-256 and size, and for a gzip file (`gunzip`) whether the whole
/// of it decompresses (its CRCs checked) with its first bytes. An error reading the file is
/// the `Err`; one in the gzip data is the inner one.
#[expect(clippy::type_complexity, reason = "one private function's answer")]
fn read_once(path: &Path, gunzip: bool) -> io::Result<(String, u64, Option<io::Result<Vec<u8>>>)> {
    let mut reader = HashingReader { inner: File::open(path)?, hasher: Sha256::new(), bytes: 0, failed: None };
    if !gunzip {
        io::copy(&mut reader, &mut io::sink())?;
        return Ok((hex(&reader.hasher.finalize()), reader.bytes, None));
    }
    let mut decoder = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, reader));
    let mut head = vec![0u8; 9];
    let gzip = read_full(&mut decoder, &mut head).and_then(|got| {
        head.truncate(got);
        io::copy(&mut decoder, &mut io::sink()).map(|_| head)
    });
    // Whatever the decoder left (trailing bytes after a damaged member) is hashed too.
    let mut reader = decoder.into_inner().into_inner();
    if let Some(e) = reader.failed.take() {
        return Err(e);
    }
    io::copy(&mut reader, &mut io::sink())?;
    Ok((hex(&reader.hasher.finalize()), reader.bytes, Some(gzip)))
}

/// A reader hashing and counting what passes through it; a read error is kept, so that the
/// file's own failure is told apart from the gzip data's.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    failed: Option<io::Error>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                let kept = io::Error::new(e.kind(), e.to_string());
                self.failed = Some(e);
                Err(kept)
            }
        }
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
