//! Taking a Redis dataset: the RDB file after a BGSAVE when it is readable from this host,
//! else the RDB over the replication protocol (as `redis-cli --rdb` does), else a logical
//! export (SCAN + DUMP + PTTL) for hosted servers that allow neither. And putting one back.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cache_core::archive::GzFile;
use cache_core::clients::redis as client;
use cache_core::config::{RedisBackupMethod, RedisTarget};
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Magic line of the logical export format.
pub const LOGICAL_MAGIC: &[u8] = b"CACHE-TOOLKIT-LOGICAL-1\n";
/// Ends a logical export.
const LOGICAL_END: u32 = u32::MAX;

/// How a dataset was taken.
pub struct Taken {
    /// `bgsave`, `replication` or `logical`.
    pub method: &'static str,
    /// `redis-rdb` or `redis-logical`.
    pub content: &'static str,
    /// Notes for the report (why a method was not used).
    pub notes: Vec<String>,
    /// The server's version.
    pub version: Option<String>,
    /// SHA-256 and size of the file written.
    pub written: (String, u64),
}

/// Compression settings.
#[derive(Clone, Copy)]
pub struct Gzip {
    /// Level 1-9.
    pub level: u32,
    /// Threads.
    pub threads: usize,
}

/// Takes `target`'s dataset into `out_base` + `.rdb.gz` or `.logical.gz`, the way `method`
/// says.
pub async fn take(
    state: &cache_core::state::StateDir,
    target: &RedisTarget,
    out_base: &Path,
    gzip: Gzip,
    timeout: Duration,
    method: RedisBackupMethod,
) -> anyhow::Result<(PathBuf, Taken)> {
    let mut conn = client::connect(target).await?;
    let info = client::info(&mut conn).await.unwrap_or_default();
    let version = info.get("redis_version").cloned();
    let run_id = info.get("run_id").cloned().unwrap_or_default();
    let mut notes = Vec::new();
    let rdb = PathBuf::from(format!("{}.rdb.gz", out_base.display()));
    let auto = method == RedisBackupMethod::Auto;
    if method == RedisBackupMethod::Bgsave {
        let path = dump_path(&mut conn).await.context("CONFIG GET dir/dbfilename (needed for bgsave)")?;
        bgsave(&mut conn, timeout).await?;
        let rdb2 = rdb.clone();
        let written = tokio::task::spawn_blocking(move || copy_gz(&path, &rdb2, gzip)).await??;
        return Ok((rdb, Taken { method: "bgsave", content: "redis-rdb", notes, version, written }));
    }
    if method == RedisBackupMethod::Replication {
        let written = tokio::time::timeout(timeout, replicate(target, &rdb, gzip))
            .await
            .context("replication gave no dump in time")??;
        return Ok((rdb, Taken { method: "replication", content: "redis-rdb", notes, version, written }));
    }
    if auto && is_local(target) {
        match dump_path(&mut conn).await {
            Ok(path) if std::fs::File::open(&path).is_ok() => {
                bgsave(&mut conn, timeout).await?;
                let path2 = path.clone();
                let rdb2 = rdb.clone();
                let written = tokio::task::spawn_blocking(move || copy_gz(&path2, &rdb2, gzip)).await??;
                return Ok((rdb, Taken { method: "bgsave", content: "redis-rdb", notes, version, written }));
            }
            Ok(path) => notes.push(format!("dump file `{}` is not readable here", path.display())),
            Err(e) => notes.push(format!("CONFIG GET refused ({e}): the dump file's place is unknown")),
        }
    }
    if auto && target.url.scheme() != "rediss" {
        match tokio::time::timeout(timeout, replicate(target, &rdb, gzip)).await {
            Ok(Ok(written)) => {
                return Ok((rdb, Taken { method: "replication", content: "redis-rdb", notes, version, written }));
            }
            Ok(Err(e)) => notes.push(format!("replication refused: {e:#}")),
            Err(_) => notes.push("replication gave no dump in time".into()),
        }
        let _ = std::fs::remove_file(&rdb);
    } else if auto {
        notes.push("replication over TLS is not supported: logical export".into());
    }
    if auto {
        notes.push("not supported on this tier: neither the dump file nor replication; used a logical export".into());
    }
    let logical = PathBuf::from(format!("{}.logical.gz", out_base.display()));
    let mut lookups = cache_core::ledger::Lookups::default();
    let written = logical_export(&mut conn, &logical, gzip, &mut lookups).await;
    // DUMP, PEXPIRETIME and PTTL of every key are the toolkit's lookups, not the application's.
    if let Err(e) = cache_core::ledger::record(state, &run_id, lookups) {
        tracing::warn!("recording the toolkit's own lookups: {e:#}");
    }
    let written = written?;
    Ok((logical, Taken { method: "logical", content: "redis-logical", notes, version, written }))
}

fn is_local(target: &RedisTarget) -> bool {
    let url = target.url.url();
    matches!(url.scheme(), "redis+unix" | "unix")
        || matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"))
}

async fn dump_path(conn: &mut MultiplexedConnection) -> redis::RedisResult<PathBuf> {
    let dir: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("dir").query_async(conn).await?;
    let file: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("dbfilename").query_async(conn).await?;
    Ok(Path::new(dir.get(1).map_or("", String::as_str)).join(file.get(1).map_or("dump.rdb", String::as_str)))
}

/// Runs BGSAVE (or joins one in progress) and waits for a successful save that started after
/// this call.
async fn bgsave(conn: &mut MultiplexedConnection, timeout: Duration) -> anyhow::Result<()> {
    let saves = |info: &std::collections::BTreeMap<String, String>| {
        info.get("rdb_saves").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let before = saves(&client::info(conn).await?);
    let started: redis::RedisResult<String> = redis::cmd("BGSAVE").query_async(conn).await;
    let mut wanted = before + 1;
    if let Err(e) = started {
        if !e.to_string().contains("in progress") {
            bail!("BGSAVE failed: {e}");
        }
        // The save in progress began before us: wait for ours after it.
        wanted = before + 2;
        let deadline = Instant::now() + timeout;
        loop {
            let info = client::info(conn).await?;
            if info.get("rdb_bgsave_in_progress").map(String::as_str) == Some("0") {
                let _: String = redis::cmd("BGSAVE").query_async(conn).await.context("BGSAVE")?;
                break;
            }
            if Instant::now() > deadline {
                bail!("a BGSAVE in progress did not finish within {}", humantime::format_duration(timeout));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let info = client::info(conn).await?;
        if saves(&info) >= wanted && info.get("rdb_bgsave_in_progress").map(String::as_str) == Some("0") {
            return match info.get("rdb_last_bgsave_status").map(String::as_str) {
                Some("ok") => Ok(()),
                status => bail!("BGSAVE failed (rdb_last_bgsave_status: {})", status.unwrap_or("unknown")),
            };
        }
        if Instant::now() > deadline {
            bail!("BGSAVE did not finish within {}", humantime::format_duration(timeout));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn copy_gz(from: &Path, to: &Path, gzip: Gzip) -> anyhow::Result<(String, u64)> {
    let mut input = std::fs::File::open(from).with_context(|| format!("opening `{}`", from.display()))?;
    let mut out = GzFile::create(to, gzip.level, gzip.threads)?;
    std::io::copy(&mut input, &mut out).with_context(|| format!("compressing `{}`", from.display()))?;
    out.finish()
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Fetches the RDB as a replica would: AUTH, `REPLCONF rdb-only 1`, SYNC, then the payload
/// (`$<len>` bulk, or the diskless `$EOF:<mark>` form).
async fn replicate(target: &RedisTarget, out: &Path, gzip: Gzip) -> anyhow::Result<(String, u64)> {
    let info = redis::IntoConnectionInfo::into_connection_info(target.url.expose())?;
    let stream: Box<dyn Stream> = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => {
            Box::new(tokio::net::TcpStream::connect((host.as_str(), *port)).await?)
        }
        redis::ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        _ => bail!("replication over TLS is not supported"),
    };
    let mut stream = BufReader::new(stream);
    let settings = info.redis_settings();
    if let Some(password) = settings.password() {
        let mut auth = vec!["AUTH"];
        if let Some(user) = settings.username() {
            auth.push(user);
        }
        auth.push(password);
        command(&mut stream, &auth).await?;
        let reply = line(&mut stream).await?;
        if !reply.starts_with('+') {
            bail!("AUTH: {reply}");
        }
    }
    command(&mut stream, &["REPLCONF", "rdb-only", "1"]).await?;
    let _ = line(&mut stream).await?; // Older servers answer -ERR: the full sync still works.
    command(&mut stream, &["SYNC"]).await?;
    let header = loop {
        let header = line(&mut stream).await?;
        if !header.is_empty() {
            break header; // Empty lines are keep-alives while the server forks.
        }
    };
    let mut out = GzFile::create(out, gzip.level, gzip.threads)?;
    if let Some(mark) = header.strip_prefix("$EOF:") {
        let mark = mark.as_bytes().to_vec();
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                bail!("the connection closed before the end of the RDB");
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.ends_with(&mark) {
                tail.truncate(tail.len() - mark.len());
                tokio::task::block_in_place(|| out.write_all(&tail))?;
                break;
            }
            // Keep enough of the end to recognise the mark when it arrives split.
            if tail.len() > mark.len() {
                let keep = tail.split_off(tail.len() - mark.len());
                tokio::task::block_in_place(|| out.write_all(&tail))?;
                tail = keep;
            }
        }
    } else if let Some(len) = header.strip_prefix('$').and_then(|n| n.parse::<u64>().ok()) {
        let mut left = len;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = stream.read(&mut buf[..want]).await?;
            if n == 0 {
                bail!("the connection closed {left} bytes before the end of the RDB");
            }
            tokio::task::block_in_place(|| out.write_all(&buf[..n]))?;
            left -= n as u64;
        }
    } else {
        bail!("SYNC: {header}");
    }
    tokio::task::block_in_place(|| out.finish())
}

async fn command(stream: &mut BufReader<Box<dyn Stream>>, args: &[&str]) -> std::io::Result<()> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        buf.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        buf.extend_from_slice(arg.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    stream.get_mut().write_all(&buf).await
}

async fn line(stream: &mut BufReader<Box<dyn Stream>>) -> anyhow::Result<String> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        bail!("the server closed the connection");
    }
    Ok(line.trim_end().to_owned())
}

/// Writes every key (SCAN + DUMP + expiry time) in the logical format.
async fn logical_export(
    conn: &mut MultiplexedConnection,
    out: &Path,
    gzip: Gzip,
    lookups: &mut cache_core::ledger::Lookups,
) -> anyhow::Result<(String, u64)> {
    let mut writer = GzFile::create(out, gzip.level, gzip.threads)?;
    tokio::task::block_in_place(|| writer.write_all(LOGICAL_MAGIC))?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        lookups.commands += 1;
        if !keys.is_empty() {
            let mut record = Vec::new();
            for (key, at, dump) in dump_batch(conn, keys, lookups).await? {
                record.extend_from_slice(&(key.len() as u32).to_be_bytes());
                record.extend_from_slice(&key);
                record.extend_from_slice(&at.unwrap_or(-1).to_be_bytes());
                record.extend_from_slice(&(dump.len() as u32).to_be_bytes());
                record.extend_from_slice(&dump);
            }
            tokio::task::block_in_place(|| writer.write_all(&record))?;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    tokio::task::block_in_place(|| {
        writer.write_all(&LOGICAL_END.to_be_bytes())?;
        writer.finish()
    })
}

/// One key of a dataset: name, absolute expiry in Unix milliseconds (`None`: no TTL), DUMP
/// payload. Absolute times make a restore exact: the keys expire when they would have.
pub type KeyDump = (Vec<u8>, Option<i64>, Vec<u8>);

/// DUMP and absolute expiry time of `keys` (PEXPIRETIME, Redis 7; PTTL from now before).
async fn dump_batch(
    conn: &mut MultiplexedConnection,
    keys: Vec<Vec<u8>>,
    lookups: &mut cache_core::ledger::Lookups,
) -> anyhow::Result<Vec<KeyDump>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for key in &keys {
        pipe.cmd("DUMP").arg(key).cmd("PEXPIRETIME").arg(key).cmd("PTTL").arg(key);
    }
    let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::with_capacity(keys.len());
    for (key, r) in keys.into_iter().zip(replies.chunks(3)) {
        // Each of the three is a keyspace lookup (a miss once the key is gone), and a command.
        let counted = r.iter().filter(|v| !matches!(v, redis::Value::ServerError(_))).count() as u64;
        lookups.commands += counted;
        if matches!(r[0], redis::Value::Nil) {
            lookups.misses += counted;
        } else {
            lookups.hits += counted;
        }
        let dump = match &r[0] {
            redis::Value::BulkString(b) => b.clone(),
            redis::Value::Nil => continue, // Gone since SCAN.
            redis::Value::ServerError(e) => bail!("DUMP refused: {e:?}"),
            other => bail!("unexpected DUMP reply {other:?}"),
        };
        let at = match (&r[1], &r[2]) {
            (redis::Value::Int(at), _) if *at >= 0 => Some(*at),
            (redis::Value::Int(_), _) => None,
            (_, redis::Value::Int(ttl)) if *ttl >= 0 => Some(now + ttl),
            _ => None,
        };
        out.push((key, at, dump));
    }
    Ok(out)
}

/// Reads a logical export.
pub fn read_logical(path: &Path) -> anyhow::Result<Vec<KeyDump>> {
    let mut reader = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut magic = vec![0u8; LOGICAL_MAGIC.len()];
    reader.read_exact(&mut magic)?;
    if magic != LOGICAL_MAGIC {
        bail!("`{}` is not a logical export", path.display());
    }
    let mut keys = Vec::new();
    loop {
        let mut n = [0u8; 4];
        reader.read_exact(&mut n)?;
        let len = u32::from_be_bytes(n);
        if len == LOGICAL_END {
            return Ok(keys);
        }
        let mut key = vec![0u8; len as usize];
        reader.read_exact(&mut key)?;
        let mut ttl = [0u8; 8];
        reader.read_exact(&mut ttl)?;
        reader.read_exact(&mut n)?;
        let mut dump = vec![0u8; u32::from_be_bytes(n) as usize];
        reader.read_exact(&mut dump)?;
        let ttl = i64::from_be_bytes(ttl);
        keys.push((key, (ttl >= 0).then_some(ttl), dump));
    }
}

/// Every key of the server behind `conn`, as DUMP payloads with their TTLs, batch by batch.
pub async fn dump_all(conn: &mut MultiplexedConnection, mut each: impl FnMut(Vec<KeyDump>)) -> anyhow::Result<()> {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        if !keys.is_empty() {
            let batch = dump_batch(conn, keys, &mut cache_core::ledger::Lookups::default()).await?;
            each(batch);
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}

/// RESTOREs `keys` into the server behind `conn` with REPLACE and their absolute expiry times
/// (ABSTTL), pipelined. Keys whose time has passed are skipped; a key the server refuses is
/// counted with the server's reply, and the others are still restored.
pub async fn restore_keys(conn: &mut MultiplexedConnection, keys: &[KeyDump]) -> anyhow::Result<Routed> {
    let refs: Vec<&KeyDump> = keys.iter().collect();
    restore_refs(conn, &refs).await
}

async fn restore_refs(conn: &mut MultiplexedConnection, keys: &[&KeyDump]) -> anyhow::Result<Routed> {
    let now = chrono::Utc::now().timestamp_millis();
    let (live, gone): (Vec<&KeyDump>, Vec<&KeyDump>) =
        keys.iter().copied().partition(|(_, at, _)| at.is_none_or(|at| at > now));
    let mut done = Routed { expired: gone.len() as u64, ..Routed::default() };
    for chunk in live.chunks(500) {
        let mut pipe = redis::pipe();
        // One reply per key: a refused key must not hide the others (nor become one error
        // quoting the whole pipeline).
        pipe.ignore_errors();
        for (key, at, dump) in chunk {
            pipe.cmd("RESTORE").arg(key).arg(at.unwrap_or(0)).arg(dump).arg("REPLACE");
            if at.is_some() {
                pipe.arg("ABSTTL");
            }
        }
        let replies: Vec<redis::Value> = pipe.query_async(conn).await.context("RESTORE")?;
        for ((key, _, _), reply) in chunk.iter().zip(&replies) {
            if let redis::Value::ServerError(e) = reply {
                done.failed += 1;
                // The reply first, so that `messages::condense` folds the keys of one error.
                let reply = cache_core::messages::clip(
                    &format!("{} {}", e.code(), e.details().unwrap_or_default()),
                    cache_core::messages::MAX_LINE,
                );
                done.errors.push(format!("{} (RESTORE `{}`)", reply.trim_end(), String::from_utf8_lossy(key)));
            } else {
                done.restored += 1;
            }
        }
    }
    Ok(done)
}

/// What [`restore_routed`] (or [`restore_keys`]) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routed {
    /// Keys restored.
    pub restored: u64,
    /// Keys skipped because their time had passed.
    pub expired: u64,
    /// Keys whose slot no primary serves: not restored.
    pub unrouted: u64,
    /// Keys the server refused: not restored.
    pub failed: u64,
    /// The server's reply for each refused key, naming it (one per key: condense before
    /// showing them).
    pub errors: Vec<String>,
}

impl Routed {
    /// Adds what another batch did.
    pub fn add(&mut self, other: Routed) {
        self.restored += other.restored;
        self.expired += other.expired;
        self.unrouted += other.unrouted;
        self.failed += other.failed;
        self.errors.extend(other.errors);
    }
}

/// A key dump seen by its name, for the router.
struct Named<'a>(&'a KeyDump);

impl AsRef<[u8]> for Named<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.0.0
    }
}

/// RESTOREs `keys` as [`restore_keys`] does, each on the primary serving its slot (a
/// standalone server takes them all): one pipeline per primary, the primaries in parallel.
pub async fn restore_routed(router: &cache_core::keyspace::Router, keys: &[KeyDump]) -> anyhow::Result<Routed> {
    let named: Vec<Named<'_>> = keys.iter().map(Named).collect();
    let groups = router.group(&named);
    let routed: usize = groups.iter().map(|(_, g)| g.len()).sum();
    let results = futures::future::join_all(groups.into_iter().map(|(mut conn, group)| async move {
        let refs: Vec<&KeyDump> = group.into_iter().map(|n| n.0).collect();
        restore_refs(&mut conn, &refs).await
    }))
    .await;
    let mut done = Routed { unrouted: (keys.len() - routed) as u64, ..Routed::default() };
    for result in results {
        done.add(result?);
    }
    Ok(done)
}

/// Puts the RDB `rdb_gz` in place of the dump file of the local server `target` (the old file
/// is kept as `<file>.before-restore-<time>`) and reloads it with `DEBUG RELOAD NOSAVE`. The
/// server's automatic saves are off meanwhile (see [`DumpSlot::hold_saves`]), and stay off when
/// the reload is refused, until the restart that loads the new dump.
pub async fn replace_dump(target: &RedisTarget, rdb_gz: &Path, timeout: Duration) -> anyhow::Result<String> {
    let mut slot = DumpSlot::check(target).await?;
    slot.hold_saves(timeout).await?;
    let placed = slot.stage(rdb_gz).and_then(Staged::put_in_place);
    let kept = match placed {
        Ok(kept) => kept,
        Err(e) => {
            let _ = slot.resume_saves().await;
            return Err(e);
        }
    };
    let dump = slot.dump().display().to_string();
    let kept = kept.map(|k| format!(" (the old one is `{}`)", k.display())).unwrap_or_default();
    match slot.reload().await {
        Ok(()) => {
            slot.resume_saves().await?;
            Ok(format!("dump file `{dump}` replaced and reloaded{kept}"))
        }
        Err(e) => bail!(
            "the dump file `{dump}` is in place{kept}, but DEBUG RELOAD was refused ({e}): restart redis-server to \
             load it (its automatic saves are off until then, so that none writes the old data over it)"
        ),
    }
}

/// A server whose dump file may be replaced: it is on this host, its AOF is off (else it would
/// load the AOF, not the dump), and its dump file's directory is here. Nothing is written
/// until [`DumpSlot::stage`].
pub struct DumpSlot {
    conn: MultiplexedConnection,
    dump: PathBuf,
    /// The server's `save` setting while [`DumpSlot::hold_saves`] has it off.
    held: Option<String>,
}

impl DumpSlot {
    /// Checks that `target`'s dump file can be replaced.
    pub async fn check(target: &RedisTarget) -> anyhow::Result<Self> {
        if !is_local(target) {
            bail!("--replace-dump needs the server on this host; `{}` is not: restore key by key instead", target.url);
        }
        let mut conn = client::connect(target).await?;
        let info = client::info(&mut conn).await?;
        if info.get("aof_enabled").map(String::as_str) == Some("1") {
            bail!("the server has AOF on, so it would load its AOF rather than the dump: restore key by key instead");
        }
        let dump = dump_path(&mut conn).await.context("CONFIG GET dir/dbfilename")?;
        if !dump.parent().is_some_and(Path::is_dir) {
            bail!(
                "the server's dump directory `{}` is not a directory on this host: restore key by key instead",
                dump.parent().unwrap_or(&dump).display()
            );
        }
        Ok(Self { conn, dump, held: None })
    }

    /// The server's dump file.
    pub fn dump(&self) -> &Path {
        &self.dump
    }

    /// Writes the RDB `rdb_gz`, decompressed and synced, beside the dump file, and links the old
    /// dump to its kept name; the dump itself is untouched until [`Staged::put_in_place`], and
    /// dropping the result removes what this wrote.
    pub fn stage(&self, rdb_gz: &Path) -> anyhow::Result<Staged> {
        let mut staged = Staged { fresh: self.dump.with_extension("restore-tmp"), dump: self.dump.clone(), kept: None };
        {
            let mut input = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                std::fs::File::open(rdb_gz).with_context(|| format!("opening `{}`", rdb_gz.display()))?,
            ));
            let mut output = cache_core::archive::private_file(&staged.fresh)?;
            std::io::copy(&mut input, &mut output)
                .and_then(|_| output.sync_all())
                .with_context(|| format!("writing `{}`", staged.fresh.display()))?;
        }
        if self.dump.exists() {
            let kept = PathBuf::from(format!(
                "{}.before-restore-{}",
                self.dump.display(),
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ));
            std::fs::hard_link(&self.dump, &kept)
                .with_context(|| format!("keeping the old dump as `{}`", kept.display()))?;
            staged.kept = Some(kept);
        }
        Ok(staged)
    }

    /// Turns the server's automatic saves off (`CONFIG SET save ""`) and waits for a save in
    /// progress to end, so that no save, scheduled or on shutdown, writes the data in memory
    /// over the new dump before the server loads it. A restart brings back the configured save
    /// points; [`DumpSlot::resume_saves`] brings them back without one.
    pub async fn hold_saves(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("save").query_async(&mut self.conn).await?;
        let save = save.get(1).cloned().unwrap_or_default();
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("save")
            .arg("")
            .query_async(&mut self.conn)
            .await
            .context("CONFIG SET save \"\" (so that no save writes over the new dump)")?;
        self.held = Some(save);
        let deadline = Instant::now() + timeout;
        loop {
            let info = client::info(&mut self.conn).await?;
            if info.get("rdb_bgsave_in_progress").map(String::as_str) != Some("1") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("a save in progress did not end within {}", humantime::format_duration(timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Puts back the `save` setting [`DumpSlot::hold_saves`] turned off (nothing if it did not).
    pub async fn resume_saves(&mut self) -> anyhow::Result<()> {
        if let Some(save) = self.held.take() {
            let set: redis::RedisResult<()> =
                redis::cmd("CONFIG").arg("SET").arg("save").arg(&save).query_async(&mut self.conn).await;
            set.with_context(|| format!("turning its saves back on (CONFIG SET save \"{save}\")"))?;
        }
        Ok(())
    }

    /// `DEBUG RELOAD NOSAVE`: the server loads the dump file now (refused where DEBUG is
    /// disabled, the default since Redis 7: then only a restart loads it).
    pub async fn reload(&mut self) -> redis::RedisResult<()> {
        redis::cmd("DEBUG").arg("RELOAD").arg("NOSAVE").query_async(&mut self.conn).await
    }
}

/// A new dump written beside a server's dump file, and the old one linked to its kept name.
pub struct Staged {
    fresh: PathBuf,
    dump: PathBuf,
    kept: Option<PathBuf>,
}

impl Staged {
    /// Moves the new dump over the old one (a rename); returns where the old one is kept.
    pub fn put_in_place(mut self) -> anyhow::Result<Option<PathBuf>> {
        std::fs::rename(&self.fresh, &self.dump).with_context(|| format!("replacing `{}`", self.dump.display()))?;
        self.fresh = PathBuf::new();
        Ok(self.kept.take())
    }
}

impl Drop for Staged {
    /// Not put in place: removes the new file and the kept link, leaving the dump as it was.
    fn drop(&mut self) {
        if !self.fresh.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.fresh);
        }
        if let Some(kept) = &self.kept {
            let _ = std::fs::remove_file(kept);
        }
    }
}
