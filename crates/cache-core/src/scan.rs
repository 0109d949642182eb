//! The keyspace scanner: SCAN in batches, with each key's type, TTL, idle time (or LFU
//! frequency) and memory, streaming, paced and resumable. Never KEYS.
//!
//! The default ([`Method::Pipeline`]) runs SCAN, then asks TYPE, PTTL, OBJECT and MEMORY USAGE
//! of the keys it found in one pipeline, and keeps a bounded window of such pipelines in flight
//! while the next SCAN runs: no server call is long (SCAN COUNT adapts to the call budget; each
//! pipelined command is O(1), MEMORY USAGE sampling at most 5 elements of a collection), and the
//! server is kept busy between round trips. [`Method::Script`] (a Lua script that runs SCAN and
//! asks about every key server-side, one round trip per batch) is used only when configured: a
//! script is one call as long as its whole batch, so under a 1 ms budget its batch shrinks below
//! what the pipeline gets for the same harm, and it costs the server more CPU than the same
//! commands pipelined. Where scripts are refused (hosted Redis, ACLs) or cannot work (Redis
//! Cluster checks the slots of keys a script touches) the pipeline is used. Facts the server
//! refuses (OBJECT or MEMORY on hosted Redis) are recorded in [`Scanner::missing`] and the scan
//! goes on with the rest.

use crate::ledger::Lookups;
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::clients::redis::Connection;
use redis::Value;

/// What is known of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key, as bytes (keys are binary-safe).
    pub key: Vec<u8>,
    /// `string`, `hash`, `list`, `set`, `zset`, `stream`...
    pub kind: String,
    /// Milliseconds to live; `None` when the key has no TTL.
    pub ttl_ms: Option<i64>,
    /// Seconds since last access (OBJECT IDLETIME), when known.
    pub idle_s: Option<u64>,
    /// LFU access-frequency counter (OBJECT FREQ), when the policy is LFU.
    pub freq: Option<u64>,
    /// Bytes used (MEMORY USAGE), when known.
    pub bytes: Option<u64>,
}

impl KeyInfo {
    /// The key for people (lossy UTF-8).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}

/// How access recency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// OBJECT IDLETIME (LRU policies and no eviction).
    IdleTime,
    /// OBJECT FREQ (LFU policies, where idle time is not tracked).
    Freq,
}

/// How batches are fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// One Lua script per batch (only when configured).
    Script,
    /// SCAN, then one pipelined round of per-key commands, a bounded window of them in flight
    /// (the default).
    Pipeline,
}

/// What to scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// A MATCH pattern; `None` scans everything.
    pub pattern: Option<String>,
    /// SCAN COUNT.
    pub count: usize,
    /// Keys examined per second at most (0: unpaced).
    pub max_keys_per_sec: u32,
    /// Ask MEMORY USAGE of every key.
    pub memory: bool,
    /// Ask OBJECT IDLETIME or FREQ of every key.
    pub access: bool,
    /// Force a method (configuration, tests and benchmarks); `None` is [`Method::Pipeline`].
    pub method: Option<Method>,
    /// Pipelines of per-key commands in flight at once ([`Method::Pipeline`]): the next SCAN
    /// runs while the facts of the keys found before are asked.
    pub window: usize,
    /// The longest one call may take ([`crate::config::RedisTarget::call_budget`]): the
    /// batch adapts, within `count`, so that each round trip stays under it; `None` keeps
    /// `count` fixed.
    pub budget: Option<Duration>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            pattern: None,
            count: 1000,
            max_keys_per_sec: 0,
            memory: true,
            access: true,
            method: None,
            window: DEFAULT_WINDOW,
            budget: Some(DEFAULT_BUDGET),
        }
    }
}

/// Pipelines in flight at once by default: enough to keep the server busy between our round
/// trips, few enough that the application's requests never queue behind much of ours.
pub const DEFAULT_WINDOW: usize = 4;

/// The default budget of one call: the application's requests queue behind it.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(1);

/// The smallest batch an adapting scan goes down to.
const MIN_BATCH: usize = 10;

/// The batch size of a scan that keeps each call under a budget: it shrinks in proportion
/// when a call took longer, and grows (at most twice) when calls take under half of it.
#[derive(Clone, Copy, Debug)]
struct Pacer {
    budget: Option<Duration>,
    max: usize,
    count: usize,
    /// The longest call so far.
    slowest: Duration,
    /// Calls that took longer than the budget.
    over: u64,
    /// The last call's cost per key, in seconds.
    last_per_key: Option<f64>,
}

impl Pacer {
    fn new(budget: Option<Duration>, max: usize) -> Self {
        let max = max.max(1);
        // Start small under a budget: the first call must not be the long one.
        let count = if budget.is_some() { max.min(100) } else { max };
        Self { budget, max, count, slowest: Duration::ZERO, over: 0, last_per_key: None }
    }

    /// Learns from one call that took `took` for `keys` keys (SCAN COUNT `count` asked).
    fn learn(&mut self, took: Duration, keys: usize) {
        self.slowest = self.slowest.max(took);
        let Some(budget) = self.budget else { return };
        if took > budget {
            self.over += 1;
        }
        // Per key (at least the keys asked for: SCAN visits buckets, empty or not). The
        // smaller of this call's cost and the last one's: a round trip measures the server's
        // time plus our own process's, and one late wake-up of a busy client is no reason to
        // shrink (two slow calls in a row are).
        let now = took.as_secs_f64() / keys.max(self.count / 2).max(1) as f64;
        let per = self.last_per_key.map_or(now, |last| now.min(last));
        self.last_per_key = Some(now);
        let fits = if per > 0.0 { (budget.as_secs_f64() * 0.8 / per) as usize } else { self.max };
        self.count = fits.clamp(MIN_BATCH.min(self.max), (self.count * 2).min(self.max));
    }
}

const BATCH_SCRIPT: &str = r"
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {r[1], 0}
local access = ARGV[4]
local memory = ARGV[5] == '1'
for _, k in ipairs(r[2]) do
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then
    out[2] = out[2] + 1
  else
    local a = -1
    if access ~= '' then
      a = redis.pcall('OBJECT', access, k)
      if type(a) ~= 'number' then a = -2 end
    end
    local m = -1
    if memory then
      m = redis.pcall('MEMORY', 'USAGE', k, 'SAMPLES', '5')
      if type(m) ~= 'number' then m = -2 end
    end
    out[#out + 1] = k
    out[#out + 1] = t
    out[#out + 1] = redis.call('PTTL', k)
    out[#out + 1] = a
    out[#out + 1] = m
  end
end
return out
";

/// Error codes that mean the server cannot answer for the key now, whatever the command.
const UNAVAILABLE: &[&str] = &["CLUSTERDOWN", "MOVED", "ASK", "TRYAGAIN", "LOADING", "MASTERDOWN", "BUSY"];

/// A scan in progress.
pub struct Scanner {
    conn: Connection,
    opts: ScanOptions,
    cursor: u64,
    finished: bool,
    method: Method,
    access: Access,
    script: redis::Script,
    missing: BTreeSet<String>,
    started: Instant,
    examined: u64,
    lookups: Lookups,
    /// Where the lookups are recorded when the scan ends: the state and the server's `run_id`.
    ledger: Option<(crate::state::StateDir, String)>,
    pacer: Pacer,
    /// Batches scanned ahead of the caller, oldest first, their facts being asked.
    ahead: VecDeque<Ahead>,
    /// Whether the last SCAN sent returned cursor 0.
    scanned_all: bool,
    /// The cursor the next SCAN starts from.
    scan_cursor: u64,
}

/// One batch scanned ahead: the cursor after it, its keys, and the pipeline asking about them.
struct Ahead {
    cursor: u64,
    found: Vec<Vec<u8>>,
    replies: Option<tokio::task::JoinHandle<redis::RedisResult<Vec<Value>>>>,
}

impl Drop for Scanner {
    fn drop(&mut self) {
        // Pipelines sent ahead and never read (the caller stopped early) ran on the server all
        // the same, or most likely did: their lookups are ours, never the application's. Counted
        // as hits (the keys were there when SCAN saw them); a pipeline aborted before it was
        // sent overcounts ours, which errs against inflating the application's ratio.
        let word = self.access_word();
        let per_key = 2 + u64::from(!word.is_empty());
        let commands = per_key + u64::from(self.opts.memory);
        for ahead in &self.ahead {
            if let Some(replies) = &ahead.replies {
                replies.abort();
                let keys = ahead.found.len() as u64;
                self.lookups.hits += keys * per_key;
                self.lookups.commands += keys * commands;
            }
        }
        if let Some((state, run_id)) = &self.ledger
            && let Err(e) = crate::ledger::record(state, run_id, self.lookups)
        {
            tracing::warn!("recording the toolkit's own lookups: {e:#}");
        }
    }
}

impl Scanner {
    /// Starts a scan at `cursor` (0 for a new one). Learns whether the policy is LFU, and
    /// which method the server allows.
    pub async fn new(mut conn: Connection, opts: ScanOptions, cursor: u64) -> redis::RedisResult<Self> {
        let mut missing = BTreeSet::new();
        let policy: redis::RedisResult<Vec<String>> =
            redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut conn).await;
        let access = match policy {
            Ok(pair) if pair.get(1).is_some_and(|p| p.contains("lfu")) => Access::Freq,
            Ok(_) => Access::IdleTime,
            Err(e) if e.is_io_error() || e.is_timeout() => return Err(e),
            Err(_) => {
                missing.insert("CONFIG GET refused: eviction policy unknown, assuming LRU".to_owned());
                Access::IdleTime
            }
        };
        let method = opts.method.unwrap_or(Method::Pipeline);
        let pacer = Pacer::new(opts.budget.filter(|b| !b.is_zero()), opts.count);
        Ok(Self {
            pacer,
            conn,
            opts,
            cursor,
            finished: false,
            method,
            access,
            script: redis::Script::new(BATCH_SCRIPT),
            missing,
            started: Instant::now(),
            examined: 0,
            lookups: Lookups::default(),
            ledger: None,
            ahead: VecDeque::new(),
            scanned_all: false,
            scan_cursor: cursor,
        })
    }

    /// The cursor to resume from after the batches returned so far.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The method in use.
    pub fn method(&self) -> Method {
        self.method
    }

    /// How access is measured.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Facts the server refused, in words.
    pub fn missing(&self) -> &BTreeSet<String> {
        &self.missing
    }

    /// Keys examined so far.
    pub fn examined(&self) -> u64 {
        self.examined
    }

    /// The batch size the next call asks for (adapted to the budget).
    pub fn batch(&self) -> usize {
        self.pacer.count
    }

    /// The longest call so far, and how many took longer than the budget.
    pub fn slowest_call(&self) -> (Duration, u64) {
        (self.pacer.slowest, self.pacer.over)
    }

    /// Records the scan's lookups in `state`'s ledger against the server `run_id` when the
    /// scan ends, however it ends (see [`crate::ledger`]).
    #[must_use]
    pub fn recording(mut self, state: &crate::state::StateDir, run_id: &str) -> Self {
        self.ledger = Some((state.clone(), run_id.to_owned()));
        self
    }

    /// The keyspace lookups the scan caused so far, as Redis counts them (see
    /// [`crate::ledger`]): the caller records them against the server's `run_id`.
    pub fn lookups(&self) -> Lookups {
        self.lookups
    }

    /// The next batch of keys, or `None` when the scan is complete.
    pub async fn next_batch(&mut self) -> redis::RedisResult<Option<Vec<KeyInfo>>> {
        if self.finished {
            return Ok(None);
        }
        if self.method == Method::Script {
            self.pace(self.examined).await;
            match self.script_batch().await {
                Ok((next, keys)) => {
                    self.cursor = next;
                    self.scan_cursor = next;
                    self.finished = next == 0;
                    self.examined += keys.len() as u64;
                    return Ok(Some(keys));
                }
                Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => return Err(e),
                Err(e) => {
                    self.missing.insert(format!("scripts refused ({e}): used pipelined commands"));
                    self.method = Method::Pipeline;
                }
            }
        }
        self.pipelined_batch().await
    }

    /// [`Method::Pipeline`]: fills the window (each SCAN in turn, its keys' facts asked in a
    /// pipeline that runs while the next SCAN does), then returns the oldest batch.
    async fn pipelined_batch(&mut self) -> redis::RedisResult<Option<Vec<KeyInfo>>> {
        while self.ahead.len() < self.opts.window.max(1) && !self.scanned_all {
            let queued: u64 = self.ahead.iter().map(|a| a.found.len() as u64).sum();
            self.pace(self.examined + queued).await;
            let (cursor, found) = self.scan_once().await?;
            self.scan_cursor = cursor;
            self.scanned_all = cursor == 0;
            let replies = (!found.is_empty()).then(|| self.ask(&found));
            self.ahead.push_back(Ahead { cursor, found, replies });
        }
        let Some(Ahead { cursor, found, replies }) = self.ahead.pop_front() else {
            self.finished = true;
            return Ok(None);
        };
        let keys = match replies {
            None => Vec::new(),
            Some(replies) => {
                let replies = replies.await.map_err(|e| {
                    redis::RedisError::from((redis::ErrorKind::Io, "the pipeline's task ended", e.to_string()))
                })??;
                self.take(found, &replies)?
            }
        };
        self.cursor = cursor;
        self.finished = cursor == 0;
        self.examined += keys.len() as u64;
        Ok(Some(keys))
    }

    /// Waits until `count` keys are within `--max-ops-per-sec` of the scan's start.
    async fn pace(&self, count: u64) {
        let rate = self.opts.max_keys_per_sec;
        if rate == 0 {
            return;
        }
        let due = self.started + Duration::from_secs_f64(count as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
    }

    fn access_word(&self) -> &'static str {
        match (self.opts.access, self.access) {
            (false, _) => "",
            (true, Access::IdleTime) => "IDLETIME",
            (true, Access::Freq) => "FREQ",
        }
    }

    async fn script_batch(&mut self) -> redis::RedisResult<(u64, Vec<KeyInfo>)> {
        let started = Instant::now();
        let reply: Value = self
            .script
            .arg(self.cursor)
            .arg(self.opts.pattern.as_deref().unwrap_or("*"))
            .arg(self.pacer.count)
            .arg(self.access_word())
            .arg(if self.opts.memory { "1" } else { "0" })
            .invoke_async(&mut self.conn)
            .await?;
        let took = started.elapsed();
        let Value::Array(items) = reply else { return Err(unexpected("script reply is not an array")) };
        let mut items = items.into_iter();
        let cursor = parse_cursor(items.next())?;
        // Keys gone since SCAN saw them: TYPE missed them.
        let vanished = items.next().as_ref().and_then(int).unwrap_or(0).max(0) as u64;
        self.lookups.misses += vanished;
        // The script, its SCAN and each vanished key's TYPE.
        self.lookups.commands += 2 + vanished;
        let mut keys = Vec::new();
        let rest: Vec<Value> = items.collect();
        self.pacer.learn(took, rest.len() / 5);
        for chunk in rest.chunks(5) {
            let [key, kind, ttl, access, bytes] = chunk else { return Err(unexpected("short script reply")) };
            let (access, bytes) = (int(access), int(bytes));
            // TYPE and PTTL, and OBJECT unless refused (MEMORY USAGE counts as no lookup, but
            // as a command).
            self.lookups.hits += 2 + u64::from(access.is_some_and(|a| a >= 0));
            self.lookups.commands +=
                2 + u64::from(access.is_some_and(|a| a >= 0)) + u64::from(bytes.is_some_and(|b| b >= 0));
            self.note_refusals(access == Some(-2), bytes == Some(-2));
            keys.push(self.info(bytes_of(key)?, text(kind), int(ttl), access, bytes));
        }
        Ok((cursor, keys))
    }

    /// One SCAN from the scan's cursor: the next cursor and the keys found. Its round trip is
    /// what the budget bounds: the per-key commands pipelined after it are each O(1).
    async fn scan_once(&mut self) -> redis::RedisResult<(u64, Vec<Vec<u8>>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(self.scan_cursor).arg("COUNT").arg(self.pacer.count);
        if let Some(pattern) = &self.opts.pattern {
            scan.arg("MATCH").arg(pattern);
        }
        let started = Instant::now();
        let (cursor, found): (u64, Vec<Vec<u8>>) = scan.query_async(&mut self.conn).await?;
        self.pacer.learn(started.elapsed(), found.len());
        self.lookups.commands += 1;
        Ok((cursor, found))
    }

    /// Sends the pipeline asking about `found` (TYPE, PTTL, OBJECT, MEMORY USAGE of each) on
    /// its own task: it runs while the scan goes on.
    fn ask(&self, found: &[Vec<u8>]) -> tokio::task::JoinHandle<redis::RedisResult<Vec<Value>>> {
        let word = self.access_word();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in found {
            pipe.cmd("TYPE").arg(key).cmd("PTTL").arg(key);
            if !word.is_empty() {
                pipe.cmd("OBJECT").arg(word).arg(key);
            }
            if self.opts.memory {
                pipe.cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(5);
            }
        }
        let mut conn = self.conn.clone();
        tokio::spawn(async move { pipe.query_async(&mut conn).await })
    }

    /// The facts of `found` from the pipeline's `replies`.
    fn take(&mut self, found: Vec<Vec<u8>>, replies: &[Value]) -> redis::RedisResult<Vec<KeyInfo>> {
        let word = self.access_word();
        let per_key = 2 + usize::from(!word.is_empty()) + usize::from(self.opts.memory);
        // A cluster that is down (or a slot moving) answers every key with an error: that is the
        // batch failing, never a property of the keys ("no TTL", "OBJECT refused").
        if let Some(e) = replies.iter().find_map(|v| match v {
            Value::ServerError(e) if UNAVAILABLE.contains(&e.code()) => Some(e.clone()),
            _ => None,
        }) {
            return Err(e.into());
        }
        // A refused command (renamed away, or denied) never runs; every other one counts.
        self.lookups.commands += replies
            .iter()
            .filter(|v| !matches!(v, Value::ServerError(e) if matches!(e.code(), "ERR" | "NOPERM")))
            .count() as u64;
        let mut keys = Vec::with_capacity(found.len());
        for (key, r) in found.into_iter().zip(replies.chunks(per_key)) {
            let kind = text(&r[0]);
            // TYPE, PTTL and OBJECT are lookups (a refused OBJECT is none); MEMORY USAGE is not.
            let object = !word.is_empty() && !matches!(r[2], Value::ServerError(_));
            let lookups = 2 + u64::from(object);
            if kind == "none" {
                self.lookups.misses += lookups;
                continue; // Deleted or expired since SCAN saw it.
            }
            self.lookups.hits += lookups;
            let access = if word.is_empty() { Some(-1) } else { Some(int(&r[2]).unwrap_or(-2)) };
            let bytes = if self.opts.memory { Some(int(&r[per_key - 1]).unwrap_or(-2)) } else { Some(-1) };
            self.note_refusals(access == Some(-2), bytes == Some(-2));
            keys.push(self.info(key, kind, int(&r[1]), access, bytes));
        }
        Ok(keys)
    }

    fn note_refusals(&mut self, access_refused: bool, memory_refused: bool) {
        if access_refused {
            self.missing.insert(format!("OBJECT {} refused: idle keys cannot be judged", self.access_word()));
        }
        if memory_refused {
            self.missing.insert("MEMORY USAGE refused: key sizes unknown".to_owned());
        }
    }

    fn info(&self, key: Vec<u8>, kind: String, ttl: Option<i64>, access: Option<i64>, bytes: Option<i64>) -> KeyInfo {
        let access = access.filter(|a| *a >= 0).map(|a| a as u64);
        let (idle_s, freq) = match self.access {
            Access::IdleTime => (access, None),
            Access::Freq => (None, access),
        };
        KeyInfo {
            key,
            kind,
            ttl_ms: ttl.filter(|t| *t >= 0),
            idle_s,
            freq,
            bytes: bytes.filter(|b| *b >= 0).map(|b| b as u64),
        }
    }
}

fn unexpected(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, what))
}

fn parse_cursor(value: Option<Value>) -> redis::RedisResult<u64> {
    match value {
        Some(Value::BulkString(b)) => {
            std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| unexpected("bad cursor"))
        }
        Some(Value::Int(i)) if i >= 0 => Ok(i as u64),
        _ => Err(unexpected("missing cursor")),
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::SimpleString(s) => s.clone(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Okay => "OK".into(),
        _ => String::new(),
    }
}

fn bytes_of(value: &Value) -> redis::RedisResult<Vec<u8>> {
    match value {
        Value::BulkString(b) => Ok(b.clone()),
        Value::SimpleString(s) => Ok(s.clone().into_bytes()),
        _ => Err(unexpected("key is not a string")),
    }
}

/// Whether `key` matches a Redis-style glob (`*`, `?`, `[abc]`, `\` escapes).
pub fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    let (mut star_p, mut star_k) = (None, 0);
    while k < key.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star_p = Some(p);
                    star_k = k;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    k += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(&pattern[p..], key[k]) {
                        if matched {
                            p += next;
                            k += 1;
                            continue;
                        }
                    } else if key[k] == b'[' {
                        p += 1;
                        k += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == key[k] => {
                    p += 2;
                    k += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c == key[k] => {
                    p += 1;
                    k += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star_p {
            Some(sp) => {
                p = sp + 1;
                star_k += 1;
                k = star_k;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Matches `c` against the class at the start of `pattern` (`[...]`); returns whether it
/// matched and the class's length, or `None` when the class is not closed.
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = pattern.get(1) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (pattern[i].min(pattern[i + 2]), pattern[i].max(pattern[i + 2]));
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    (i < pattern.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::{Pacer, glob_match};
    use std::time::Duration;

    #[test]
    fn the_batch_fits_the_budget_and_one_late_round_trip_does_not_shrink_it() {
        let us = Duration::from_micros;
        let mut pacer = Pacer::new(Some(Duration::from_millis(1)), 1000);
        assert_eq!(pacer.count, 100, "a budgeted scan starts small");
        // 1 µs a key: grows, at most twice a call, up to the cap.
        for _ in 0..5 {
            let count = pacer.count;
            pacer.learn(us(count as u64), count);
        }
        assert_eq!(pacer.count, 800, "80% of 1 ms at 1 µs a key");
        // One round trip 20× late (the client was descheduled): the batch holds.
        pacer.learn(us(16_000), 800);
        assert_eq!(pacer.count, 800);
        assert_eq!(pacer.over, 1);
        // The server really got slower (two slow calls in a row): the batch shrinks to fit.
        pacer.learn(us(8_000), 800);
        assert_eq!(pacer.count, 80, "10 µs a key: 800 µs / 10 µs");
        assert_eq!(pacer.slowest, us(16_000));
        // Without a budget, the batch is fixed.
        let mut fixed = Pacer::new(None, 1000);
        fixed.learn(us(50_000), 1000);
        assert_eq!(fixed.count, 1000);
    }

    #[test]
    fn globs_match_like_redis() {
        let m = |p: &str, k: &str| glob_match(p.as_bytes(), k.as_bytes());
        assert!(m("*", "anything"));
        assert!(m("app:session:*", "app:session:42"));
        assert!(!m("app:session:*", "app:search:42"));
        assert!(m("*:lock:*", "x:lock:y"));
        assert!(m("h?llo", "hello") && !m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("k[a-c]", "kb") && !m("k[a-c]", "kd"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("", "") && !m("", "x"));
        assert!(m("*a*b*", "xxaxxbxx"));
    }
}
