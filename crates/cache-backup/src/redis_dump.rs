//! Taking a Redis dataset: the RDB file after a BGSAVE when it is readable from this host,
//! else the RDB over the replication protocol (as `redis-cli --rdb` does), else a logical
//! export for hosted servers that allow neither. And putting one back.
//!
//! The logical export takes each key whole (DUMP and its absolute expiry) when it is small, and
//! a big hash, set, sorted set, list or string in bounded chunks (HSCAN, SSCAN, ZSCAN, LRANGE,
//! GETRANGE), so that no command blocks the server for more than a few milliseconds and the
//! export holds one chunk. A restore reads it record by record and rebuilds a big key under a
//! temporary name in the same slot, then renames it over the key. Format 2 (`LOGICAL_MAGIC`):
//!
//! ```text
//! "CACHE-TOOLKIT-LOGICAL-2\n", then records, big-endian:
//!   'K' key:blob at:i64 dump:blob               a whole key (at: absolute ms, -1: none)
//!   'S' key:blob kind:u8 len:u64 at:i64         a key in chunks begins (kind: 1 string,
//!                                                2 list, 3 set, 4 sorted set, 5 hash)
//!   'C' count:u32 count × item:blob             its next chunk (pairs for sorted sets,
//!                                                member then score, and hashes)
//!   'E' at:i64                                  it ends (at: -1 none, -2 gone meanwhile)
//!   'Z'                                         the end of the export
//! blob = len:u32 bytes
//! ```
//!
//! Format 1 (`LOGICAL_MAGIC_1`, one `key at dump` record per key, ended by a length of
//! `u32::MAX`) is still read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cache_core::archive::GzFile;
use cache_core::clients::redis as client;
use cache_core::clients::redis::Connection;
use cache_core::config::{RedisBackupMethod, RedisTarget};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
    let mut auto = method == RedisBackupMethod::Auto;
    if conn.is_rest() {
        // A REST API carries commands: no dump file to read, no replication stream.
        if matches!(method, RedisBackupMethod::Bgsave | RedisBackupMethod::Replication) {
            bail!(
                "redis/{}: method `{}` needs the Redis protocol; over the REST transport only `logical` (or `auto`) works",
                target.name,
                if method == RedisBackupMethod::Bgsave { "bgsave" } else { "replication" }
            );
        }
        if auto {
            notes.push("over the REST transport neither the dump file nor replication: used a logical export".into());
        }
        auto = false;
    }
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
            Ok(path) if !path.exists() => {
                notes.push(format!("no dump file yet at `{}` (the server has not saved one)", path.display()));
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
    let whole_hashes = field_ttls(&info);
    let by_value = conn.is_rest();
    let written = logical_export(&mut conn, &logical, gzip, whole_hashes, by_value, &mut lookups).await;
    // TYPE, DUMP, PEXPIRETIME and PTTL of every key, and the chunks of big keys, are the
    // toolkit's lookups, not the application's.
    if let Err(e) = cache_core::ledger::record(state, &run_id, lookups) {
        tracing::warn!("recording the toolkit's own lookups: {e:#}");
    }
    let (written, exported) = written?;
    if exported.chunked > 0 {
        notes.push(format!(
            "{} keys over {} taken in {} chunks (HSCAN, SSCAN, ZSCAN, LRANGE, GETRANGE), not whole",
            exported.chunked,
            cache_core::output::bytes(DUMP_MAX_BYTES),
            exported.chunks
        ));
    }
    if exported.by_value > 0 {
        notes.push(format!(
            "{} keys taken by value (GET, LRANGE, SMEMBERS, ZRANGE, HGETALL), not DUMP: the REST transport cannot \
             send a DUMP payload back",
            exported.by_value
        ));
    }
    if exported.dumped_over_rest > 0 {
        notes.push(format!(
            "{} keys with no text form (streams, module types) taken with DUMP: they restore over RESP only",
            exported.dumped_over_rest
        ));
    }
    if whole_hashes {
        notes.push(
            "the server has hash fields with their own TTLs, which HSCAN does not give: hashes taken whole".into(),
        );
    }
    if exported.whole_over > 0 {
        notes.push(format!(
            "{} keys over {} that cannot be taken in chunks (streams, module types) taken whole with DUMP, which \
             blocks the server while it serializes each",
            exported.whole_over,
            cache_core::output::bytes(DUMP_MAX_BYTES)
        ));
    }
    Ok((logical, Taken { method: "logical", content: "redis-logical", notes, version, written }))
}

fn is_local(target: &RedisTarget) -> bool {
    let url = target.url.url();
    matches!(url.scheme(), "redis+unix" | "unix")
        || matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"))
}

async fn dump_path(conn: &mut Connection) -> redis::RedisResult<PathBuf> {
    let dir: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("dir").query_async(conn).await?;
    let file: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("dbfilename").query_async(conn).await?;
    Ok(Path::new(dir.get(1).map_or("", String::as_str)).join(file.get(1).map_or("dump.rdb", String::as_str)))
}

/// Runs BGSAVE (or joins one in progress) and waits for a successful save that started after
/// this call.
async fn bgsave(conn: &mut Connection, timeout: Duration) -> anyhow::Result<()> {
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

/// Magic line of the logical export format written now (format 2): tagged records, a big key
/// as a start record, its chunks and an end record.
pub const LOGICAL_MAGIC: &[u8] = b"CACHE-TOOLKIT-LOGICAL-2\n";
/// Magic line of format 1 (one DUMP per key), still read.
pub const LOGICAL_MAGIC_1: &[u8] = b"CACHE-TOOLKIT-LOGICAL-1\n";
/// Ends a format-1 export (in place of a key's length).
const LOGICAL_END_1: u32 = u32::MAX;

/// Record tags of format 2: a whole key (DUMP), the start of a key taken in chunks, one chunk,
/// the end of that key, the end of the export.
const TAG_KEY: u8 = b'K';
const TAG_START: u8 = b'S';
const TAG_CHUNK: u8 = b'C';
const TAG_END: u8 = b'E';
const TAG_FINISH: u8 = b'Z';

/// Keys whose size by `MEMORY USAGE` (an estimate from a few samples: O(1)) is at most this
/// are taken whole, one DUMP each, and put back with one RESTORE: a DUMP costs the server
/// about 0.5-6 ms per MiB (a hash about 4, a string about 6, as it tries to compress it), so at
/// most 2-3 ms here (of a 16 MiB, 200,000-field hash about 75 ms, during which it serves no
/// one). Bigger hashes, sets, sorted sets, lists and strings are taken in chunks; streams and
/// module types, which cannot be, are taken whole whatever their size.
pub const DUMP_MAX_BYTES: u64 = 512 << 10;
/// Where `MEMORY USAGE` is refused, collections of at most this many elements (HLEN, SCARD,
/// ZCARD, LLEN: O(1)) are taken whole, and strings of at most [`DUMP_MAX_BYTES`] (STRLEN).
pub const DUMP_MAX_ELEMENTS: u64 = 1000;
/// A chunk of a big key holds about this many bytes (a GETRANGE slice of a string exactly)...
pub const CHUNK_BYTES: u64 = 1 << 20;
/// ...and at most this many elements: the COUNT of HSCAN, SSCAN and ZSCAN and the length of an
/// LRANGE slice, each about 1-2 ms of the server's time, as is writing one chunk back.
pub const CHUNK_ELEMENTS: u64 = 1000;
/// Whole keys are DUMPed in pipelines of at most this many bytes (by `MEMORY USAGE`).
const DUMP_BATCH_BYTES: u64 = 16 << 20;
/// A restore sends whole keys in pipelines of at most this many keys...
pub const RESTORE_BATCH_KEYS: usize = 500;
/// ...or this many bytes of DUMP payload; with the chunk in hand, that is what it holds.
pub const RESTORE_BATCH_BYTES: usize = 16 << 20;
/// Records read from a file in one go (at most, and at most [`CHUNK_BYTES`] × 4 of payload).
const READ_BATCH_RECORDS: usize = 256;
/// A key being rebuilt from chunks expires this long after its last chunk unless it is
/// renamed over its key first, so that a restore killed midway leaves nothing for long.
const BUILDING_TTL_MS: u64 = 3_600_000;

/// One key of a dataset: name, absolute expiry in Unix milliseconds (`None`: no TTL), DUMP
/// payload. Absolute times make a restore exact: the keys expire when they would have.
pub type KeyDump = (Vec<u8>, Option<i64>, Vec<u8>);

/// The types of big keys taken in chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string, in GETRANGE slices.
    String,
    /// A list, in LRANGE slices.
    List,
    /// A set, by SSCAN.
    Set,
    /// A sorted set, by ZSCAN: member and score (as Redis writes it, exact) pairs.
    SortedSet,
    /// A hash, by HSCAN: field and value pairs.
    Hash,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::String, Kind::List, Kind::Set, Kind::SortedSet, Kind::Hash];

    /// The kind of a `TYPE` reply, if it can be chunked.
    fn of(type_name: &str) -> Option<Self> {
        match type_name {
            "string" => Some(Kind::String),
            "list" => Some(Kind::List),
            "set" => Some(Kind::Set),
            "zset" => Some(Kind::SortedSet),
            "hash" => Some(Kind::Hash),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Kind::String => 1,
            Kind::List => 2,
            Kind::Set => 3,
            Kind::SortedSet => 4,
            Kind::Hash => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Items per element in a chunk.
    fn arity(self) -> usize {
        match self {
            Kind::SortedSet | Kind::Hash => 2,
            Kind::String | Kind::List | Kind::Set => 1,
        }
    }

    /// The command reading it whole ([`values_into`]).
    fn read_command(self) -> &'static str {
        match self {
            Kind::String => "GET",
            Kind::List => "LRANGE",
            Kind::Set => "SMEMBERS",
            Kind::SortedSet => "ZRANGE",
            Kind::Hash => "HGETALL",
        }
    }

    /// The O(1) command giving its length (a string's bytes, a collection's elements).
    fn length_command(self) -> &'static str {
        match self {
            Kind::String => "STRLEN",
            Kind::List => "LLEN",
            Kind::Set => "SCARD",
            Kind::SortedSet => "ZCARD",
            Kind::Hash => "HLEN",
        }
    }

    /// The command adding a chunk to a key being rebuilt.
    fn add_command(self) -> &'static str {
        match self {
            Kind::String => "SETRANGE",
            Kind::List => "RPUSH",
            Kind::Set => "SADD",
            Kind::SortedSet => "ZADD",
            Kind::Hash => "HSET",
        }
    }
}

/// How a key taken in chunks ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It was still there, with this absolute expiry (Unix milliseconds; `None`: no TTL).
    Kept(Option<i64>),
    /// It was deleted (or expired) while it was being read: it is not in the export.
    Gone,
}

/// One record of a logical export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A whole key.
    Key(KeyDump),
    /// A key taken in chunks begins: its name, kind, length when it began (bytes of a string,
    /// elements of a collection) and absolute expiry then.
    Start {
        /// The key.
        key: Vec<u8>,
        /// Its type.
        kind: Kind,
        /// Its length when the export reached it.
        len: u64,
        /// Its absolute expiry then.
        at: Option<i64>,
    },
    /// The next chunk of the key begun: a string's bytes, a list's elements in order, a set's
    /// members, a sorted set's member and score pairs, a hash's field and value pairs.
    Chunk(Vec<Vec<u8>>),
    /// The key begun is complete.
    End(Ending),
}

impl Record {
    /// Appends the record, in format 2, to `buf`.
    fn encode(&self, buf: &mut Vec<u8>) -> anyhow::Result<()> {
        fn blob(buf: &mut Vec<u8>, data: &[u8]) -> anyhow::Result<()> {
            let len = u32::try_from(data.len()).context("a value of 4 GiB or more cannot be written")?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(data);
            Ok(())
        }
        match self {
            Record::Key((key, at, dump)) => {
                buf.push(TAG_KEY);
                blob(buf, key)?;
                buf.extend_from_slice(&at.unwrap_or(-1).to_be_bytes());
                blob(buf, dump)?;
            }
            Record::Start { key, kind, len, at } => {
                buf.push(TAG_START);
                blob(buf, key)?;
                buf.push(kind.code());
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(&at.unwrap_or(-1).to_be_bytes());
            }
            Record::Chunk(items) => {
                buf.push(TAG_CHUNK);
                buf.extend_from_slice(&(items.len() as u32).to_be_bytes());
                for item in items {
                    blob(buf, item)?;
                }
            }
            Record::End(ending) => {
                buf.push(TAG_END);
                let at = match ending {
                    Ending::Kept(at) => at.unwrap_or(-1),
                    Ending::Gone => -2,
                };
                buf.extend_from_slice(&at.to_be_bytes());
            }
        }
        Ok(())
    }

    /// Bytes of names and values it holds.
    fn payload(&self) -> usize {
        match self {
            Record::Key((key, _, dump)) => key.len() + dump.len(),
            Record::Start { key, .. } => key.len(),
            Record::Chunk(items) => items.iter().map(Vec::len).sum(),
            Record::End(_) => 0,
        }
    }
}

/// Reads a logical export, format 1 or 2, one record at a time (what it holds is one record),
/// checking its structure: a record out of place, or an export without its end mark (cut
/// short), is an error.
pub struct LogicalReader<R> {
    input: R,
    format: u8,
    /// The kind of the key taken in chunks whose records are being read.
    open: Option<Kind>,
    done: bool,
}

/// A compressed export being read: buffered after decompression too, as records are read a
/// few bytes at a time.
type GzInput = std::io::BufReader<flate2::read::MultiGzDecoder<std::io::BufReader<std::fs::File>>>;

impl LogicalReader<GzInput> {
    /// Opens the compressed export at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
        let decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 16, file));
        Self::new(std::io::BufReader::with_capacity(1 << 18, decoder)).with_context(|| format!("`{}`", path.display()))
    }
}

impl<R: Read> LogicalReader<R> {
    /// Reads the magic line from `input`.
    pub fn new(mut input: R) -> anyhow::Result<Self> {
        let mut magic = vec![0u8; LOGICAL_MAGIC.len()];
        input.read_exact(&mut magic).map_err(|_| anyhow::anyhow!("not a logical export: it is too short"))?;
        let format = match &magic[..] {
            m if m == LOGICAL_MAGIC => 2,
            m if m == LOGICAL_MAGIC_1 => 1,
            _ => bail!("not a logical export: the CACHE-TOOLKIT-LOGICAL magic is missing"),
        };
        Ok(Self { input, format, open: None, done: false })
    }

    /// The format: 1 (one DUMP per key) or 2.
    pub fn format(&self) -> u8 {
        self.format
    }

    /// The next record; `None` after the end mark.
    pub fn next_record(&mut self) -> anyhow::Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        if self.format == 1 { self.next_1() } else { self.next_2() }
    }

    /// Records up to 256, or 4 chunks' worth of payload (at least one);
    /// empty after the end mark.
    pub fn next_batch(&mut self) -> anyhow::Result<Vec<Record>> {
        let mut records = Vec::new();
        let mut bytes = 0;
        while records.len() < READ_BATCH_RECORDS && bytes < 4 * CHUNK_BYTES as usize {
            let Some(record) = self.next_record()? else { break };
            bytes += record.payload();
            records.push(record);
        }
        Ok(records)
    }

    /// Whether anything follows the end mark.
    fn trailing(&mut self) -> bool {
        let mut byte = [0u8; 1];
        !matches!(self.input.read(&mut byte), Ok(0))
    }

    fn next_1(&mut self) -> anyhow::Result<Option<Record>> {
        let len = self.u32()?;
        if len == LOGICAL_END_1 {
            self.done = true;
            return Ok(None);
        }
        let key = self.bytes(len)?;
        let at = self.i64()?;
        let len = self.u32()?;
        let dump = self.bytes(len)?;
        Ok(Some(Record::Key((key, (at >= 0).then_some(at), dump))))
    }

    fn next_2(&mut self) -> anyhow::Result<Option<Record>> {
        let tag = self.u8()?;
        let record = match (tag, self.open) {
            (TAG_FINISH, None) => {
                self.done = true;
                return Ok(None);
            }
            (TAG_KEY, None) => {
                let key = self.blob()?;
                let at = self.i64()?;
                let dump = self.blob()?;
                Record::Key((key, (at >= 0).then_some(at), dump))
            }
            (TAG_START, None) => {
                let key = self.blob()?;
                let code = self.u8()?;
                let kind = Kind::from_code(code).with_context(|| format!("a key of unknown type {code}"))?;
                let len = self.u64()?;
                let at = self.i64()?;
                self.open = Some(kind);
                Record::Start { key, kind, len, at: (at >= 0).then_some(at) }
            }
            (TAG_CHUNK, Some(kind)) => {
                let count = self.u32()? as usize;
                if !count.is_multiple_of(kind.arity()) {
                    bail!("a chunk of a {kind:?} with {count} items, not pairs");
                }
                let mut items = Vec::with_capacity(count.min(2 * CHUNK_ELEMENTS as usize));
                for _ in 0..count {
                    items.push(self.blob()?);
                }
                Record::Chunk(items)
            }
            (TAG_END, Some(_)) => {
                self.open = None;
                match self.i64()? {
                    -2 => Record::End(Ending::Gone),
                    at => Record::End(Ending::Kept((at >= 0).then_some(at))),
                }
            }
            (TAG_KEY | TAG_START | TAG_FINISH, Some(_)) => bail!("a key taken in chunks has no end record"),
            (TAG_CHUNK | TAG_END, None) => bail!("a chunk outside any key taken in chunks"),
            (other, _) => bail!("unknown record tag {other:#04x}"),
        };
        Ok(Some(record))
    }

    fn exact(&mut self, buf: &mut [u8]) -> anyhow::Result<()> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => anyhow::anyhow!("cut short: the export ends before its end mark"),
            _ => anyhow::Error::new(e).context("reading the export"),
        })
    }

    fn u8(&mut self) -> anyhow::Result<u8> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> anyhow::Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> anyhow::Result<u64> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    fn i64(&mut self) -> anyhow::Result<i64> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(i64::from_be_bytes(b))
    }

    fn blob(&mut self) -> anyhow::Result<Vec<u8>> {
        let len = self.u32()?;
        self.bytes(len)
    }

    /// `len` bytes. Beyond a chunk's size the buffer grows as they come, so that a damaged
    /// length allocates little.
    fn bytes(&mut self, len: u32) -> anyhow::Result<Vec<u8>> {
        if u64::from(len) <= 2 * CHUNK_BYTES {
            let mut data = vec![0u8; len as usize];
            self.exact(&mut data)?;
            return Ok(data);
        }
        let mut data = Vec::with_capacity(2 * CHUNK_BYTES as usize);
        (&mut self.input).take(u64::from(len)).read_to_end(&mut data).context("reading the export")?;
        if data.len() != len as usize {
            bail!("cut short: the export ends before its end mark");
        }
        Ok(data)
    }
}

/// Reads the logical export at `path` to its end mark, checking every record; returns its
/// format and the keys it holds.
pub fn check_logical(path: &Path) -> anyhow::Result<(u8, u64)> {
    let mut reader = LogicalReader::open(path)?;
    let mut keys = 0;
    while let Some(record) = reader.next_record()? {
        keys += u64::from(matches!(record, Record::Key(_) | Record::Start { .. }));
    }
    if reader.trailing() {
        bail!("data follows the end mark");
    }
    Ok((reader.format(), keys))
}

/// Where an export's records go: a file, or a restore.
pub(crate) trait Sink {
    /// Takes the next record.
    async fn put(&mut self, record: Record) -> anyhow::Result<()>;
}

/// A logical export being written (format 2).
struct FileSink {
    out: GzFile,
    buf: Vec<u8>,
}

impl FileSink {
    fn create(path: &Path, gzip: Gzip) -> anyhow::Result<Self> {
        let out = GzFile::create(path, gzip.level, gzip.threads)?;
        Ok(Self { out, buf: LOGICAL_MAGIC.to_vec() })
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| self.out.write_all(&self.buf))?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<(String, u64)> {
        self.buf.push(TAG_FINISH);
        self.flush()?;
        tokio::task::block_in_place(|| self.out.finish())
    }
}

impl Sink for FileSink {
    async fn put(&mut self, record: Record) -> anyhow::Result<()> {
        record.encode(&mut self.buf)?;
        if self.buf.len() >= CHUNK_BYTES as usize {
            self.flush()?;
        }
        Ok(())
    }
}

/// What an export took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Keys taken.
    pub keys: u64,
    /// Of which, in chunks.
    pub chunked: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Keys over [`DUMP_MAX_BYTES`] taken whole anyway: streams and module types (or hashes,
    /// where the server has hash fields with their own TTLs).
    pub whole_over: u64,
    /// Keys taken by value in one chunk (GET, LRANGE, SMEMBERS, ZRANGE, HGETALL): every small
    /// key over a REST API.
    pub by_value: u64,
    /// Keys taken with DUMP over a REST API (streams, module types): restorable over RESP only.
    pub dumped_over_rest: u64,
}

/// Whether the server holds hash fields with their own TTLs (Redis 7.4 `HEXPIRE`: `subexpiry`
/// in INFO keyspace), which HSCAN does not return: then hashes are taken whole.
fn field_ttls(info: &std::collections::BTreeMap<String, String>) -> bool {
    info.iter().filter(|(k, _)| k.starts_with("db")).any(|(_, v)| {
        v.split(',').any(|kv| kv.strip_prefix("subexpiry=").and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0))
    })
}

/// Writes every key of the server behind `conn` in the logical format (see [`export`]).
async fn logical_export(
    conn: &mut Connection,
    out: &Path,
    gzip: Gzip,
    whole_hashes: bool,
    by_value: bool,
    lookups: &mut cache_core::ledger::Lookups,
) -> anyhow::Result<((String, u64), Exported)> {
    let mut sink = FileSink::create(out, gzip)?;
    let exported = export(conn, &mut sink, whole_hashes, by_value, lookups).await?;
    Ok((sink.finish()?, exported))
}

/// How a key is taken.
enum Plan {
    /// Whole, by DUMP; the estimate of its size.
    Whole(u64),
    /// In chunks; its size by MEMORY USAGE, when known.
    Chunks(Kind, Option<u64>),
    /// By value, in one chunk ([`values_into`]).
    Value(Kind),
}

/// Counts one reply to a command that looked a key up: a command, and a hit or a miss. A
/// refused command (unknown, or denied) counts nothing; WRONGTYPE found the key.
fn count(lookups: &mut cache_core::ledger::Lookups, reply: &redis::Value, found: bool) {
    match reply {
        redis::Value::ServerError(e) if e.code() != "WRONGTYPE" => {}
        redis::Value::ServerError(_) => {
            lookups.commands += 1;
            lookups.hits += 1;
        }
        _ => {
            lookups.commands += 1;
            if found {
                lookups.hits += 1;
            } else {
                lookups.misses += 1;
            }
        }
    }
}

/// [`count`] for a command sent alone, whose server error came back as an error.
fn count_result<T>(
    lookups: &mut cache_core::ledger::Lookups,
    result: redis::RedisResult<T>,
    found: impl FnOnce(&T) -> bool,
) -> anyhow::Result<Option<T>> {
    match result {
        Ok(value) => {
            count(lookups, &redis::Value::Nil, found(&value));
            Ok(Some(value))
        }
        Err(e) if e.code() == Some("WRONGTYPE") => {
            count(lookups, &redis::Value::Okay, true);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes every key of the server behind `conn` (SCAN) into `sink`: keys of at most
/// [`DUMP_MAX_BYTES`] whole (DUMP and the absolute expiry, pipelined), bigger hashes, sets,
/// sorted sets, lists and strings in chunks ([`export_chunked`]). Every command is counted in
/// `lookups` as Redis counts it. `whole_hashes`: hashes are never chunked. `by_value`: small
/// keys are taken by value ([`values_into`]), not DUMP, for a target reached over a REST API.
pub(crate) async fn export(
    conn: &mut Connection,
    sink: &mut impl Sink,
    whole_hashes: bool,
    by_value: bool,
    lookups: &mut cache_core::ledger::Lookups,
) -> anyhow::Result<Exported> {
    let mut exported = Exported::default();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        lookups.commands += 1;
        if !keys.is_empty() {
            export_batch(conn, keys, sink, whole_hashes, by_value, lookups, &mut exported).await?;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(exported);
        }
    }
}

/// Sizes up one SCAN batch (TYPE and MEMORY USAGE, pipelined), takes the small keys whole and
/// the big ones in chunks.
async fn export_batch(
    conn: &mut Connection,
    keys: Vec<Vec<u8>>,
    sink: &mut impl Sink,
    whole_hashes: bool,
    by_value: bool,
    lookups: &mut cache_core::ledger::Lookups,
    exported: &mut Exported,
) -> anyhow::Result<()> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for key in &keys {
        pipe.cmd("TYPE").arg(key).cmd("MEMORY").arg("USAGE").arg(key);
    }
    let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let mut plans = Vec::with_capacity(keys.len());
    let mut kinds = Vec::with_capacity(keys.len());
    let mut size_unknown = Vec::new();
    for (key, r) in keys.into_iter().zip(replies.chunks(2)) {
        let type_name = match &r[0] {
            redis::Value::SimpleString(s) => s.clone(),
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        count(lookups, &r[0], type_name != "none");
        // MEMORY USAGE looks no key up (Redis counts no hit nor miss for it).
        if !matches!(r[1], redis::Value::ServerError(_)) {
            lookups.commands += 1;
        }
        if type_name == "none" || matches!(r[1], redis::Value::Nil) {
            continue; // Gone since SCAN.
        }
        let memory = match r[1] {
            redis::Value::Int(n) => Some(n.max(0) as u64),
            _ => None,
        };
        let plan = match (Kind::of(&type_name), memory) {
            (Some(Kind::Hash), m) if whole_hashes => Plan::Whole(m.unwrap_or(0)),
            (Some(kind), Some(m)) if m > DUMP_MAX_BYTES => Plan::Chunks(kind, Some(m)),
            (Some(kind), None) => {
                size_unknown.push(plans.len());
                Plan::Chunks(kind, None)
            }
            (_, m) => Plan::Whole(m.unwrap_or(0)),
        };
        if matches!(plan, Plan::Whole(m) if m > DUMP_MAX_BYTES) {
            exported.whole_over += 1;
        }
        kinds.push(Kind::of(&type_name));
        plans.push((key, plan));
    }
    // MEMORY USAGE refused: the O(1) length decides.
    if !size_unknown.is_empty() {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for &i in &size_unknown {
            let (key, Plan::Chunks(kind, _)) = &plans[i] else { continue };
            pipe.cmd(kind.length_command()).arg(key);
        }
        let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
        for (&i, reply) in size_unknown.iter().zip(&replies) {
            let (_, plan) = &mut plans[i];
            let Plan::Chunks(kind, _) = *plan else { continue };
            let len = match reply {
                redis::Value::Int(n) => Some(n.max(&0).unsigned_abs()),
                _ => None,
            };
            // An empty string exists; an empty collection does not.
            count(lookups, reply, len.is_some_and(|n| n > 0) || kind == Kind::String);
            let limit = if kind == Kind::String { DUMP_MAX_BYTES } else { DUMP_MAX_ELEMENTS };
            if len.is_none_or(|n| n <= limit) {
                *plan = Plan::Whole(0);
            }
        }
    }
    // Over a REST API a DUMP payload could not be RESTOREd (arguments are text): small keys
    // of the five types go by value, which any target takes back with plain writes.
    let rest = by_value;
    let mut by_value = Vec::new();
    let mut whole: Vec<Vec<u8>> = Vec::new();
    let mut whole_bytes = 0;
    let mut big = Vec::new();
    for ((key, plan), kind) in plans.into_iter().zip(kinds) {
        let plan = match (plan, kind) {
            (Plan::Whole(_), Some(kind)) if rest && !(kind == Kind::Hash && whole_hashes) => Plan::Value(kind),
            (plan, _) => plan,
        };
        match plan {
            Plan::Value(kind) => by_value.push((key, kind)),
            Plan::Whole(_) if rest => {
                exported.dumped_over_rest += 1;
                whole.push(key);
            }
            Plan::Whole(estimate) => {
                if !whole.is_empty() && whole_bytes + estimate > DUMP_BATCH_BYTES {
                    dump_into(conn, std::mem::take(&mut whole), sink, lookups, exported).await?;
                    whole_bytes = 0;
                }
                whole.push(key);
                whole_bytes += estimate;
            }
            Plan::Chunks(kind, memory) => big.push((key, kind, memory)),
        }
    }
    dump_into(conn, whole, sink, lookups, exported).await?;
    for batch in by_value.chunks(VALUE_BATCH_KEYS) {
        // A key whose type changed since TYPE is taken on its own, as a big one.
        for (key, kind) in values_into(conn, batch, sink, lookups, exported).await? {
            big.push((key, kind, None));
        }
    }
    // A big key whose type changed while it was read is taken again, whole.
    let mut changed = Vec::new();
    for (key, kind, memory) in big {
        if !export_chunked(conn, &key, kind, memory, sink, lookups, exported).await? {
            changed.push(key);
        }
    }
    dump_into(conn, changed, sink, lookups, exported).await
}

/// DUMPs `keys` (one pipeline) into `sink`.
async fn dump_into(
    conn: &mut Connection,
    keys: Vec<Vec<u8>>,
    sink: &mut impl Sink,
    lookups: &mut cache_core::ledger::Lookups,
    exported: &mut Exported,
) -> anyhow::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    for key in dump_batch(conn, keys, lookups).await? {
        exported.keys += 1;
        sink.put(Record::Key(key)).await?;
    }
    Ok(())
}

/// The absolute expiry in PEXPIRETIME's reply (Redis 7), else from PTTL's; `None` when the key
/// is gone. Counts the two lookups.
fn expiry(
    pexpiretime: &redis::Value,
    pttl: &redis::Value,
    now: i64,
    lookups: &mut cache_core::ledger::Lookups,
) -> Option<Option<i64>> {
    for reply in [pexpiretime, pttl] {
        count(lookups, reply, !matches!(reply, redis::Value::Int(-2)));
    }
    match (pexpiretime, pttl) {
        (redis::Value::Int(-2), _) => None,
        (redis::Value::Int(at), _) if *at >= 0 => Some(Some(*at)),
        (redis::Value::Int(_), _) => Some(None),
        (_, redis::Value::Int(-2)) => None,
        (_, redis::Value::Int(ttl)) if *ttl >= 0 => Some(Some(now + ttl)),
        _ => Some(None),
    }
}

/// Length and expiry (or nothing: gone) of `key`, pipelined.
async fn length_and_expiry(
    conn: &mut Connection,
    key: &[u8],
    kind: Kind,
    lookups: &mut cache_core::ledger::Lookups,
) -> anyhow::Result<Option<(Option<u64>, Option<i64>)>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd(kind.length_command()).arg(key).cmd("PEXPIRETIME").arg(key).cmd("PTTL").arg(key);
    let r: Vec<redis::Value> = pipe.query_async(conn).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let len = match &r[0] {
        redis::Value::Int(n) => Some(n.max(&0).unsigned_abs()),
        _ => None,
    };
    count(lookups, &r[0], len.is_some_and(|n| n > 0));
    Ok(expiry(&r[1], &r[2], now, lookups).map(|at| (len, at)))
}

/// Takes one big key in chunks: a start record (kind, length, expiry), chunks of about
/// [`CHUNK_BYTES`] and at most [`CHUNK_ELEMENTS`] elements (HSCAN, SSCAN, ZSCAN with COUNT,
/// LRANGE slices, GETRANGE slices), and an end record with the expiry after the last chunk (or
/// `Gone`). Each command costs the server about what one chunk costs, and this holds one
/// chunk. As with SCAN, an element present throughout is taken (a hash, set or sorted set may
/// give one twice, which the restore absorbs); a list changed meanwhile, or a string changed
/// in place, may be taken partly before and partly after the change.
///
/// Returns false, having written nothing or an end record `Gone`, when the key cannot be taken
/// in chunks after all (its type or a string's length changed, or the length command is
/// refused): the caller takes it whole.
async fn export_chunked(
    conn: &mut Connection,
    key: &[u8],
    kind: Kind,
    memory: Option<u64>,
    sink: &mut impl Sink,
    lookups: &mut cache_core::ledger::Lookups,
    exported: &mut Exported,
) -> anyhow::Result<bool> {
    let Some((len, at)) = length_and_expiry(conn, key, kind, lookups).await? else {
        return Ok(true); // Gone since SCAN.
    };
    let Some(len) = len.filter(|n| *n > 0) else { return Ok(false) };
    sink.put(Record::Start { key: key.to_vec(), kind, len, at }).await?;
    exported.keys += 1;
    exported.chunked += 1;
    // Elements per chunk: CHUNK_BYTES at the key's average element size.
    let per_element = memory.map_or(64, |m| m / len).max(1);
    let count_hint = (CHUNK_BYTES / per_element).clamp(16, CHUNK_ELEMENTS);
    let mut first = true;
    let complete = match kind {
        Kind::String => {
            // Exactly `len` bytes, as the restore allocates them at once: a string whose length
            // changes meanwhile is taken again, whole.
            let mut offset = 0u64;
            loop {
                if offset == len {
                    let reply = redis::cmd("STRLEN").arg(key).query_async(conn).await;
                    let now = count_result(lookups, reply, |n: &u64| *n > 0)?;
                    break now == Some(len);
                }
                let end = (offset + CHUNK_BYTES).min(len) - 1;
                let reply = redis::cmd("GETRANGE").arg(key).arg(offset).arg(end).query_async(conn).await;
                let Some(bytes) = count_result(lookups, reply, |b: &Vec<u8>| !b.is_empty())? else {
                    break false;
                };
                let n = bytes.len() as u64;
                if n != end + 1 - offset {
                    break false;
                }
                put_chunk(vec![bytes], sink, exported).await?;
                offset += n;
            }
        }
        Kind::List => {
            let mut start = 0u64;
            loop {
                let stop = start + count_hint - 1;
                let reply = redis::cmd("LRANGE").arg(key).arg(start).arg(stop).query_async(conn).await;
                let Some(items) = count_result(lookups, reply, |i: &Vec<Vec<u8>>| !i.is_empty() || !first)? else {
                    break false;
                };
                first = false;
                let n = items.len() as u64;
                put_chunk(items, sink, exported).await?;
                start += n;
                if n < count_hint {
                    break true;
                }
            }
        }
        Kind::Set | Kind::SortedSet | Kind::Hash => {
            let scan = match kind {
                Kind::Set => "SSCAN",
                Kind::SortedSet => "ZSCAN",
                _ => "HSCAN",
            };
            let mut cursor = 0u64;
            loop {
                let reply = redis::cmd(scan).arg(key).arg(cursor).arg("COUNT").arg(count_hint).query_async(conn).await;
                let found = |(next, items): &(u64, Vec<Vec<u8>>)| !(first && *next == 0 && items.is_empty());
                let Some((next, items)) = count_result(lookups, reply, found)? else { break false };
                first = false;
                if !items.len().is_multiple_of(kind.arity()) {
                    bail!("{scan} of `{}` gave {} items, not pairs", String::from_utf8_lossy(key), items.len());
                }
                put_chunk(items, sink, exported).await?;
                cursor = next;
                if cursor == 0 {
                    break true;
                }
            }
        }
    };
    if !complete {
        sink.put(Record::End(Ending::Gone)).await?;
        return Ok(false);
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("PEXPIRETIME").arg(key).cmd("PTTL").arg(key);
    let r: Vec<redis::Value> = pipe.query_async(conn).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let ending = expiry(&r[0], &r[1], now, lookups).map_or(Ending::Gone, Ending::Kept);
    sink.put(Record::End(ending)).await?;
    Ok(true)
}

/// Keys per pipeline of [`values_into`].
const VALUE_BATCH_KEYS: usize = 200;

/// Takes small `keys` by value, pipelined: GET, LRANGE, SMEMBERS, ZRANGE WITHSCORES or HGETALL
/// with the absolute expiry, each written as a key in one chunk (start, chunk, end), so that
/// a target reached over a REST API (text arguments, no RESTORE of a DUMP payload) takes it
/// back with plain writes. Returns the keys whose type changed since TYPE, for the caller to
/// take on their own.
async fn values_into(
    conn: &mut Connection,
    keys: &[(Vec<u8>, Kind)],
    sink: &mut impl Sink,
    lookups: &mut cache_core::ledger::Lookups,
    exported: &mut Exported,
) -> anyhow::Result<Vec<(Vec<u8>, Kind)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (key, kind) in keys {
        match kind {
            Kind::String => pipe.cmd("GET").arg(key),
            Kind::List => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
            Kind::Set => pipe.cmd("SMEMBERS").arg(key),
            Kind::SortedSet => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
            Kind::Hash => pipe.cmd("HGETALL").arg(key),
        };
        pipe.cmd("PEXPIRETIME").arg(key).cmd("PTTL").arg(key);
    }
    let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut changed = Vec::new();
    for ((key, kind), r) in keys.iter().zip(replies.chunks(3)) {
        let bytes = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => Some(b.clone()),
            redis::Value::SimpleString(s) => Some(s.clone().into_bytes()),
            redis::Value::Int(i) => Some(i.to_string().into_bytes()),
            _ => None,
        };
        let items: Option<Vec<Vec<u8>>> = match (&r[0], kind) {
            (redis::Value::Nil, _) => None,
            (redis::Value::BulkString(b), Kind::String) => Some(vec![b.clone()]),
            (redis::Value::Array(a), k) if *k != Kind::String => a.iter().map(bytes).collect(),
            (redis::Value::ServerError(e), _) if e.code() != "WRONGTYPE" => {
                bail!("{} of `{}`: {}", kind.read_command(), String::from_utf8_lossy(key), e.code())
            }
            _ => {
                changed.push((key.clone(), *kind));
                continue;
            }
        };
        // An empty collection does not exist: gone since TYPE.
        let items = items.filter(|i| !i.is_empty());
        count(lookups, &r[0], items.is_some());
        let Some(at) = expiry(&r[1], &r[2], now, lookups) else { continue };
        let Some(items) = items else { continue };
        if !items.len().is_multiple_of(kind.arity()) {
            bail!(
                "{} of `{}` gave {} items, not pairs",
                kind.read_command(),
                String::from_utf8_lossy(key),
                items.len()
            );
        }
        let len = match kind {
            Kind::String => items[0].len() as u64,
            _ => (items.len() / kind.arity()) as u64,
        };
        sink.put(Record::Start { key: key.clone(), kind: *kind, len, at }).await?;
        exported.keys += 1;
        exported.by_value += 1;
        sink.put(Record::Chunk(items)).await?;
        sink.put(Record::End(Ending::Kept(at))).await?;
    }
    Ok(changed)
}

/// Puts a chunk (unless empty) into `sink`.
async fn put_chunk(items: Vec<Vec<u8>>, sink: &mut impl Sink, exported: &mut Exported) -> anyhow::Result<()> {
    if !items.is_empty() {
        exported.chunks += 1;
        sink.put(Record::Chunk(items)).await?;
    }
    Ok(())
}

/// DUMP and absolute expiry time of `keys` (PEXPIRETIME, Redis 7; PTTL from now before).
async fn dump_batch(
    conn: &mut Connection,
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

/// The slot's hash tag of a temporary name for `key`: Redis hashes a name by its first `{...}`
/// with something inside, else whole. So the key's own tag; else the key itself, unless it
/// holds a `}`, which would end the tag early (or is empty); else the first number whose slot
/// is the key's.
fn same_slot_tag(key: &[u8]) -> Vec<u8> {
    use cache_core::keyspace::key_slot;
    if let Some(open) = key.iter().position(|b| *b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|b| *b == b'}')
        && len > 0
    {
        return key[open + 1..open + 1 + len].to_vec();
    }
    if !key.is_empty() && !key.contains(&b'}') {
        return key.to_vec();
    }
    let slot = key_slot(key);
    (0u32..1 << 24).map(|n| n.to_string().into_bytes()).find(|tag| key_slot(tag) == slot).unwrap_or_default()
}

/// The temporary name a big key is rebuilt under: in the key's slot (so that it is on the same
/// primary of a cluster, and RENAME may move it over the key), and unique to this restore.
fn building_name(key: &[u8], serial: u64) -> Vec<u8> {
    let mut name = b"{".to_vec();
    name.extend(same_slot_tag(key));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    name.extend(format!("}}cache-backup:restoring:{}:{nanos:x}:{serial}", std::process::id()).into_bytes());
    name
}

/// The line for a key the server refused: the reply first, so that `messages::condense` folds
/// the keys of one error.
fn refusal(code: &str, details: Option<&str>, command: &str, key: &[u8]) -> String {
    let reply =
        cache_core::messages::clip(&format!("{code} {}", details.unwrap_or_default()), cache_core::messages::MAX_LINE);
    format!("{} ({command} `{}`)", reply.trim_end(), String::from_utf8_lossy(key))
}

/// A key being rebuilt from its chunks.
struct Building {
    key: Vec<u8>,
    kind: Kind,
    /// The primary and the temporary name it is rebuilt under; `None`: skipped (expired, no
    /// primary serves its slot, or refused).
    into: Option<(Connection, Vec<u8>)>,
    /// Whether a chunk has been written.
    written: bool,
    /// A string's length, allocated with the first chunk, and the bytes written so far.
    len: u64,
    offset: u64,
}

/// Puts a dataset's records back into a target, each key on the primary serving its slot (a
/// standalone server takes them all): whole keys RESTOREd with REPLACE and ABSTTL in pipelines
/// of [`RESTORE_BATCH_KEYS`] keys or [`RESTORE_BATCH_BYTES`]; a key taken in chunks rebuilt
/// chunk by chunk under a temporary name in its slot, then, in one MULTI, the key UNLINKed (so
/// that an old value is freed in the background), the temporary key renamed over it and given
/// the recorded absolute expiry. Keys whose time has passed are skipped; a failure midway
/// removes the temporary key.
pub struct Restorer<'r> {
    router: &'r cache_core::keyspace::Router,
    batch: Vec<KeyDump>,
    batch_bytes: usize,
    building: Option<Building>,
    done: Routed,
    keys: u64,
    serial: u64,
}

impl<'r> Restorer<'r> {
    /// A restore through `router`.
    pub fn new(router: &'r cache_core::keyspace::Router) -> Self {
        Self { router, batch: Vec::new(), batch_bytes: 0, building: None, done: Routed::default(), keys: 0, serial: 0 }
    }

    /// Restores the batched keys and returns what was done, and how many keys were read.
    pub async fn finish(mut self) -> anyhow::Result<(Routed, u64)> {
        if self.building.is_some() {
            self.abandon().await;
            bail!("the dataset ended in the middle of a key taken in chunks");
        }
        self.flush().await?;
        Ok((self.done, self.keys))
    }

    /// After a failure: removes the temporary key of the key being rebuilt, if any.
    pub async fn abandon(&mut self) {
        if let Some(Building { into: Some((mut conn, temp)), .. }) = self.building.take() {
            let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(&temp).query_async(&mut conn).await;
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if self.router.is_rest() {
            // A DUMP payload is binary, and a REST API takes text arguments only.
            for (key, _, _) in &batch {
                self.done.failed += 1;
                self.done.errors.push(format!(
                    "`{}` is a DUMP payload, which the REST transport cannot send (text arguments only): \
                     restore it over RESP, or take the backup over REST, which takes keys by value",
                    String::from_utf8_lossy(key)
                ));
            }
            return Ok(());
        }
        self.done.add(restore_routed(self.router, &batch).await?);
        Ok(())
    }

    async fn start(&mut self, key: Vec<u8>, kind: Kind, len: u64, at: Option<i64>) -> anyhow::Result<()> {
        if self.building.is_some() {
            bail!("a key taken in chunks has no end record");
        }
        self.flush().await?;
        self.keys += 1;
        let now = chrono::Utc::now().timestamp_millis();
        let into = if at.is_some_and(|at| at <= now) {
            self.done.expired += 1;
            None
        } else if let Some(conn) = self.router.conn_for(&key) {
            self.serial += 1;
            Some((conn, building_name(&key, self.serial)))
        } else {
            self.done.unrouted += 1;
            None
        };
        self.building = Some(Building { key, kind, into, written: false, len, offset: 0 });
        Ok(())
    }

    async fn chunk(&mut self, items: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let Some(building) = &mut self.building else { bail!("a chunk outside any key taken in chunks") };
        let Some((conn, temp)) = &mut building.into else { return Ok(()) };
        let kind = building.kind;
        let mut add = redis::cmd(kind.add_command());
        add.arg(&*temp);
        let mut allocate = None;
        match kind {
            // SETRANGE of nothing creates no key: an empty string is SET.
            Kind::String if building.len == 0 && items.iter().all(Vec::is_empty) => {
                add = redis::cmd("SET");
                add.arg(&*temp).arg("");
            }
            Kind::String => {
                // Written in place: APPENDs would make the server copy the string as it grows
                // (hundreds of ms each at 256 MiB), where one allocation costs about 1 ms a MiB.
                let bytes = items.concat();
                if !building.written && building.len > bytes.len() as u64 {
                    allocate = Some(building.len - 1);
                }
                add.arg(building.offset).arg(&bytes);
                building.offset += bytes.len() as u64;
            }
            Kind::SortedSet => {
                for pair in items.chunks(2) {
                    add.arg(&pair[1]).arg(&pair[0]);
                }
            }
            Kind::List | Kind::Set | Kind::Hash => {
                for item in &items {
                    add.arg(item);
                }
            }
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if !building.written {
            // Nothing of an earlier restore under this name (it would have to share the
            // process id, the nanosecond and the serial).
            pipe.cmd("UNLINK").arg(&*temp);
        }
        if let Some(last) = allocate {
            pipe.cmd("SETRANGE").arg(&*temp).arg(last).arg(b"\0");
        }
        pipe.add_command(add).cmd("PEXPIRE").arg(&*temp).arg(BUILDING_TTL_MS);
        let replies: Vec<redis::Value> = match pipe.query_async(conn).await {
            Ok(replies) => replies,
            // Not sent at all: a binary value, which a REST API cannot take. This key fails,
            // the others go on.
            Err(e) if e.kind() == redis::ErrorKind::Client => {
                self.done.failed += 1;
                let what = e.detail().unwrap_or("not sendable");
                self.done.errors.push(format!("{what} (`{}`)", String::from_utf8_lossy(&building.key)));
                if let Some((mut conn, temp)) = building.into.take()
                    && building.written
                {
                    let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(&temp).query_async(&mut conn).await;
                }
                return Ok(());
            }
            Err(e) => return Err(anyhow::Error::new(e).context(kind.add_command())),
        };
        building.written = true;
        let Some(redis::Value::ServerError(e)) = replies.iter().find(|r| matches!(r, redis::Value::ServerError(_)))
        else {
            return Ok(());
        };
        self.done.failed += 1;
        self.done.errors.push(refusal(e.code(), e.details(), kind.add_command(), &building.key));
        // What was written goes; the rest of the key's chunks are skipped.
        if let Some((mut conn, temp)) = building.into.take() {
            let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(&temp).query_async(&mut conn).await;
        }
        Ok(())
    }

    async fn end(&mut self, ending: Ending) -> anyhow::Result<()> {
        let Some(building) = self.building.take() else { bail!("an end record outside any key taken in chunks") };
        let Building { key, kind, into, written, len, offset } = building;
        let Some((mut conn, temp)) = into else { return Ok(()) };
        if kind == Kind::String && written && offset != len {
            self.done.failed += 1;
            self.done.errors.push(format!(
                "its chunks hold {offset} bytes of its {len} (SETRANGE `{}`)",
                String::from_utf8_lossy(&key)
            ));
            let _: () = redis::cmd("UNLINK").arg(&temp).query_async(&mut conn).await.context("UNLINK")?;
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp_millis();
        let at = match ending {
            Ending::Kept(at) if written && at.is_none_or(|at| at > now) => at,
            ending => {
                // Gone while it was taken (not in the dataset), or its time has passed.
                if matches!(ending, Ending::Kept(_)) && written {
                    self.done.expired += 1;
                }
                let _: () = redis::cmd("UNLINK").arg(&temp).query_async(&mut conn).await.context("UNLINK")?;
                return Ok(());
            }
        };
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        pipe.cmd("UNLINK").arg(&key).cmd("RENAME").arg(&temp).arg(&key);
        match at {
            Some(at) => pipe.cmd("PEXPIREAT").arg(&key).arg(at),
            None => pipe.cmd("PERSIST").arg(&key),
        };
        let replies: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(&mut conn).await;
        let refused = match replies {
            Ok(replies) => replies.into_iter().find_map(|r| match r {
                redis::Value::ServerError(e) => Some((e.code().to_owned(), e.details().map(str::to_owned))),
                _ => None,
            }),
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                self.building = Some(Building { key, kind, into: Some((conn, temp)), written, len, offset });
                return Err(anyhow::Error::new(e).context("MULTI/RENAME"));
            }
            Err(e) => Some((e.code().unwrap_or("ERR").to_owned(), e.detail().map(str::to_owned))),
        };
        match refused {
            None => self.done.restored += 1,
            Some((code, details)) => {
                self.done.failed += 1;
                self.done.errors.push(refusal(&code, details.as_deref(), "RENAME", &key));
                let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(&temp).query_async(&mut conn).await;
            }
        }
        Ok(())
    }
}

impl Sink for Restorer<'_> {
    async fn put(&mut self, record: Record) -> anyhow::Result<()> {
        match record {
            Record::Key(key) => {
                if self.building.is_some() {
                    bail!("a key taken in chunks has no end record");
                }
                self.keys += 1;
                self.batch_bytes += key.0.len() + key.2.len();
                self.batch.push(key);
                if self.batch.len() >= RESTORE_BATCH_KEYS || self.batch_bytes >= RESTORE_BATCH_BYTES {
                    self.flush().await?;
                }
                Ok(())
            }
            Record::Start { key, kind, len, at } => self.start(key, kind, len, at).await,
            Record::Chunk(items) => self.chunk(items).await,
            Record::End(ending) => self.end(ending).await,
        }
    }
}

/// Restores the logical export at `path` (format 1 or 2) through `restorer`, reading a few
/// records at a time.
pub async fn restore_logical(path: &Path, restorer: &mut Restorer<'_>) -> anyhow::Result<()> {
    let result = async {
        let mut reader = tokio::task::block_in_place(|| LogicalReader::open(path))?;
        loop {
            let records = tokio::task::block_in_place(|| reader.next_batch())?;
            if records.is_empty() {
                return anyhow::Ok(());
            }
            for record in records {
                restorer.put(record).await?;
            }
        }
    };
    let result = result.await;
    if result.is_err() {
        restorer.abandon().await;
    }
    result
}

/// Restores every key of the server behind `from` (the scratch server holding a backup's RDB)
/// through `restorer`, big keys in chunks as a logical export takes them.
pub async fn copy_keys(from: &mut Connection, restorer: &mut Restorer<'_>) -> anyhow::Result<()> {
    let info = client::info(from).await.unwrap_or_default();
    let by_value = restorer.router.is_rest();
    let lookups = &mut cache_core::ledger::Lookups::default();
    let result = export(from, restorer, field_ttls(&info), by_value, lookups).await;
    if result.is_err() {
        restorer.abandon().await;
    }
    result.map(drop)
}

/// RESTOREs `keys` into the server behind `conn` with REPLACE and their absolute expiry times
/// (ABSTTL), pipelined. Keys whose time has passed are skipped; a key the server refuses is
/// counted with the server's reply, and the others are still restored.
pub async fn restore_keys(conn: &mut Connection, keys: &[KeyDump]) -> anyhow::Result<Routed> {
    let refs: Vec<&KeyDump> = keys.iter().collect();
    restore_refs(conn, &refs).await
}

async fn restore_refs(conn: &mut Connection, keys: &[&KeyDump]) -> anyhow::Result<Routed> {
    let now = chrono::Utc::now().timestamp_millis();
    let (live, gone): (Vec<&KeyDump>, Vec<&KeyDump>) =
        keys.iter().copied().partition(|(_, at, _)| at.is_none_or(|at| at > now));
    let mut done = Routed { expired: gone.len() as u64, ..Routed::default() };
    for chunk in live.chunks(RESTORE_BATCH_KEYS) {
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
                done.errors.push(refusal(e.code(), e.details(), "RESTORE", key));
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

/// What [`replace_dump`] did, and what is left to do by hand.
pub struct Replaced {
    /// What was done.
    pub done: String,
    /// Where `DEBUG RELOAD` was refused: the restart that loads the new dump.
    pub action: Option<String>,
}

/// Puts the RDB `rdb_gz` in place of the dump file of the local server `target` (the old file
/// is kept as `<file>.before-restore-<time>`; the new one has its owner, group and mode) and
/// reloads it with `DEBUG RELOAD NOSAVE`. The server's automatic saves are off meanwhile (see
/// [`DumpSlot::hold_saves`]), and stay off when the reload is refused, until the restart that
/// loads the new dump: its exact command is then the action left.
pub async fn replace_dump(target: &RedisTarget, rdb_gz: &Path, timeout: Duration) -> anyhow::Result<Replaced> {
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
            Ok(Replaced { done: format!("dump file `{dump}` replaced and reloaded{kept}"), action: None })
        }
        Err(e) => {
            // The reply's first sentence: the rest is advice on enable-debug-command.
            let text = e.to_string();
            let why = cache_core::messages::clip(text.split(". ").next().unwrap_or(&text), 80);
            Ok(Replaced {
                done: format!("dump file `{dump}` replaced{kept}; not loaded (DEBUG RELOAD refused: {why})"),
                action: Some(slot.restart_advice(&target.url.to_string())),
            })
        }
    }
}

/// A server whose dump file may be replaced: it is on this host, its AOF is off (else it would
/// load the AOF, not the dump), and its dump file's directory is here. Nothing is written
/// until [`DumpSlot::stage`].
pub struct DumpSlot {
    conn: Connection,
    dump: PathBuf,
    /// The server's `save` setting while [`DumpSlot::hold_saves`] has it off.
    held: Option<String>,
    /// Its INFO when checked (process id, executable, configuration file, port).
    info: std::collections::BTreeMap<String, String>,
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
        Ok(Self { conn, dump, held: None, info })
    }

    /// What to do so that the server at `addr` loads its new dump: restart it, with the exact
    /// command where `/proc` shows how it runs.
    pub fn restart_advice(&self, addr: &str) -> String {
        let command = crate::dump_file::restart_command(&self.info).map(|c| format!(": {c}")).unwrap_or_default();
        format!("restart redis-server on {addr} (its dump is {}){command}", self.dump.display())
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
            // What the server can read: the owner, group and mode of the file it replaces.
            let ownership = crate::dump_file::Ownership::of(&self.dump)?;
            let mut output = cache_core::archive::private_file(&staged.fresh)?;
            ownership.apply(&output, &staged.fresh)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(records: &[Record]) -> Vec<u8> {
        let mut buf = LOGICAL_MAGIC.to_vec();
        for record in records {
            record.encode(&mut buf).unwrap();
        }
        buf.push(TAG_FINISH);
        buf
    }

    fn read_all(data: &[u8]) -> anyhow::Result<Vec<Record>> {
        let mut reader = LogicalReader::new(data)?;
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        Ok(records)
    }

    fn sample() -> Vec<Record> {
        vec![
            Record::Key((b"small".to_vec(), Some(1_800_000_000_000), b"\x00dump".to_vec())),
            Record::Start { key: b"big:hash".to_vec(), kind: Kind::Hash, len: 3, at: None },
            Record::Chunk(vec![b"f1".to_vec(), b"v1".to_vec(), b"f2".to_vec(), Vec::new()]),
            Record::Chunk(vec![b"f3".to_vec(), vec![0xff; 300]]),
            Record::End(Ending::Kept(Some(1_900_000_000_000))),
            Record::Start { key: Vec::new(), kind: Kind::SortedSet, len: 1, at: Some(5) },
            Record::Chunk(vec![b"m".to_vec(), b"-inf".to_vec()]),
            Record::End(Ending::Gone),
            Record::Key((b"k2".to_vec(), None, Vec::new())),
        ]
    }

    #[test]
    fn records_read_back_as_written() {
        let records = sample();
        assert_eq!(read_all(&encoded(&records)).unwrap(), records);
        // In batches too, whatever their bounds.
        let data = encoded(&records);
        let mut reader = LogicalReader::new(&data[..]).unwrap();
        let mut batched = Vec::new();
        loop {
            let batch = reader.next_batch().unwrap();
            if batch.is_empty() {
                break;
            }
            batched.extend(batch);
        }
        assert_eq!(batched, records);
    }

    #[test]
    fn format_1_reads_as_whole_keys() {
        let mut data = LOGICAL_MAGIC_1.to_vec();
        for (key, at, dump) in [(&b"a"[..], -1i64, &b"dump-a"[..]), (b"b", 1_700_000_000_000, b"")] {
            data.extend((key.len() as u32).to_be_bytes());
            data.extend(key);
            data.extend(at.to_be_bytes());
            data.extend((dump.len() as u32).to_be_bytes());
            data.extend(dump);
        }
        data.extend(u32::MAX.to_be_bytes());
        let reader = LogicalReader::new(&data[..]).unwrap();
        assert_eq!(reader.format(), 1);
        assert_eq!(
            read_all(&data).unwrap(),
            [
                Record::Key((b"a".to_vec(), None, b"dump-a".to_vec())),
                Record::Key((b"b".to_vec(), Some(1_700_000_000_000), Vec::new())),
            ]
        );
        assert!(format!("{:#}", read_all(&data[..data.len() - 2]).unwrap_err()).contains("cut short"));
    }

    #[test]
    fn damaged_exports_are_refused_with_the_reason() {
        let data = encoded(&sample());
        // Cut anywhere before the end mark.
        for cut in [LOGICAL_MAGIC.len() + 1, data.len() / 2, data.len() - 1] {
            let e = format!("{:#}", read_all(&data[..cut]).unwrap_err());
            assert!(e.contains("cut short"), "{cut}: {e}");
        }
        assert!(format!("{:#}", read_all(b"REDIS0011").unwrap_err()).contains("not a logical export"));
        let out_of_place = |records: &[Record]| format!("{:#}", read_all(&encoded(records)).unwrap_err());
        assert!(out_of_place(&[Record::Chunk(vec![b"x".to_vec()])]).contains("outside"));
        assert!(out_of_place(&[Record::End(Ending::Gone)]).contains("outside"));
        let start = Record::Start { key: b"k".to_vec(), kind: Kind::Set, len: 1, at: None };
        assert!(out_of_place(std::slice::from_ref(&start)).contains("no end record"));
        assert!(out_of_place(&[start.clone(), start]).contains("no end record"));
        let hash = Record::Start { key: b"h".to_vec(), kind: Kind::Hash, len: 1, at: None };
        assert!(out_of_place(&[hash, Record::Chunk(vec![b"odd".to_vec()])]).contains("not pairs"));
    }

    #[test]
    fn a_key_is_rebuilt_under_a_name_in_its_own_slot() {
        use cache_core::keyspace::key_slot;
        for key in [&b"plain:big"[..], b"{user:7}:big", b"odd}name{", b"a{}b}c", b"{}{x}", b"", b"{", b"}", b"a{b"] {
            let name = building_name(key, 1);
            assert_eq!(key_slot(&name), key_slot(key), "{}", String::from_utf8_lossy(&name));
            assert_ne!(name, building_name(key, 2));
        }
    }

    #[test]
    fn hash_field_ttls_are_seen_in_info() {
        let info = |line: &str| client::parse_info(line);
        assert!(!field_ttls(&info("db0:keys=10,expires=2,avg_ttl=0")));
        assert!(!field_ttls(&info("db0:keys=10,expires=2,avg_ttl=0,subexpiry=0")));
        assert!(field_ttls(&info("db0:keys=1,expires=0,avg_ttl=0\ndb3:keys=10,expires=2,avg_ttl=0,subexpiry=4")));
    }
}
