//! Redis: TTL repair, idle, orphaned and oversized keys, and eviction down to a memory target.
//!
//! One streaming pass classifies every key batch by batch (the scanner in cache-core) and acts
//! on the batch at once: UNLINK in one command, `PEXPIRE ... NX` pipelined (never overriding a
//! TTL the application set meanwhile). The cursor is saved as the pass goes, so `--resume`
//! continues an interrupted run. Only the project's keys are touched: those under the target's
//! namespace or one of its prefixes.
//!
//! Eviction to a memory target keeps, while scanning, the coldest keys whose sizes add up to
//! the excess (a bounded streaming top-k, `Coldest`), then deletes them coldest first in
//! batches, re-reading `used_memory` before each batch and sizing the batch to what is still
//! over: it stops at the target, overshooting by at most one batch (in practice one key). Each
//! key's idle time is checked again just before it goes: one used meanwhile stays. Every
//! deletion passes the blast-radius [`Cap`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use cache_core::clients::redis as client;
use cache_core::config::{CleanupSettings, ModePolicy, PrefixRule, RedisTarget, ScanMethod};
use cache_core::keyspace::Keyspace;
use cache_core::output::{ProgressBar, bytes};
use cache_core::scan::{Access, KeyInfo, Method, ScanOptions, Scanner};
use cache_core::state::StateDir;
use cache_core::tier::Tier;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cap::Cap;
use crate::plan::Mode;
use crate::report::{Action, Item, TargetReport};

/// How often the cursor is saved during a pass.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Scans eviction may make to find more candidates when keys changed under it.
const EVICTION_ROUNDS: u32 = 3;

/// Longest eviction waits for the server's lazy-free thread before re-reading memory.
const LAZYFREE_WAIT: Duration = Duration::from_secs(2);

/// Everything a Redis cleanup needs to know.
pub struct RedisJob<'a> {
    /// The target.
    pub target: &'a RedisTarget,
    /// Cleanup settings.
    pub settings: &'a CleanupSettings,
    /// The mode.
    pub mode: Mode,
    /// A category to restrict to.
    pub category: Option<&'a str>,
    /// Change nothing.
    pub dry_run: bool,
    /// Continue from the saved cursor.
    pub resume: bool,
    /// Keys per second at most (0: unpaced).
    pub max_ops_per_sec: u32,
    /// `--force` at a terminal: no blast-radius cap.
    pub cap_lifted: bool,
    /// The target's keyspace: the project's keys, the protected rule, the primaries.
    pub keyspace: Keyspace<'a>,
    /// Where cursors are saved.
    pub state: &'a StateDir,
    /// Keys examined, on a terminal.
    pub progress: ProgressBar,
}

/// A cursor saved mid-pass.
#[derive(Debug, Serialize, Deserialize)]
struct SavedCursor {
    mode: Mode,
    category: Option<String>,
    cursor: u64,
    /// The server's run id: after a restart the hash seed differs and a cursor means nothing.
    run_id: String,
    saved_at: DateTime<Utc>,
}

impl RedisJob<'_> {
    fn cursor_file(&self, node: Option<&str>) -> String {
        match node {
            None => format!("cleanup/redis-{}.cursor.json", self.target.name),
            Some(node) => format!("cleanup/redis-{}-{}.cursor.json", self.target.name, node.replace([':', '/'], "_")),
        }
    }

    fn protected(&self, key: &[u8]) -> bool {
        self.keyspace.is_protected(key)
    }

    fn in_category(&self, key: &[u8]) -> bool {
        self.category.is_none_or(|c| key.split(|b| *b == b':').any(|segment| segment == c.as_bytes()))
    }

    fn prefix(&self, key: &[u8]) -> Option<&PrefixRule> {
        self.keyspace.prefix(key)
    }

    /// The project's key: under the namespace or one of the configured prefixes. Nothing else
    /// is ever deleted or changed.
    fn owned(&self, key: &[u8]) -> bool {
        self.keyspace.owned(key)
    }

    fn policy(&self) -> &ModePolicy {
        self.mode.policy(self.settings)
    }

    /// Runs the cleanup of this target: one pass per primary on a Redis Cluster, under one
    /// blast-radius cap for the whole target.
    pub async fn run(&self) -> TargetReport {
        let mut report = TargetReport::new(Tier::Redis, &self.target.name);
        let primaries = match self.keyspace.primaries().await {
            Ok(primaries) => primaries,
            Err(e) => {
                report.unreachable = true;
                report.errors.push(format!("{e:#}"));
                return report;
            }
        };
        if primaries.cluster {
            report.notes.push(format!("cluster: {}, cleaned one after the other", primaries.coverage()));
        }
        if !primaries.complete() {
            report.unreachable = true;
            report.errors.extend(primaries.missing.iter().cloned());
        }
        let mut nodes: Vec<_> = primaries.nodes.into_iter().map(|p| (p.conn, p.info, p.node)).collect();
        let mut entries = 0;
        for (conn, _, _) in &mut nodes {
            entries += redis::cmd("DBSIZE").query_async::<u64>(conn).await.unwrap_or(0);
        }
        let mut cap = Cap::new(self.settings, entries, self.cap_lifted);
        for (conn, info, node) in nodes {
            self.run_node(conn, &info, node.as_deref(), &mut report, &mut cap).await;
            if cap.hit.is_some() {
                break;
            }
        }
        if report.foreign > 0 {
            report.notes.push(format!(
                "{} keys outside the namespace `{}` and every prefix: another application's, left alone",
                report.foreign,
                self.keyspace.namespace()
            ));
        }
        if let Some(hit) = cap.hit.as_mut() {
            if self.dry_run {
                *hit = hit.replacen("stopped", "would stop", 1);
            }
            report.notes.push(hit.clone());
        }
        report.cap = Some(cap);
        report
    }

    /// Cleans one server (a standalone server, or one primary of a cluster: `node`).
    async fn run_node(
        &self,
        mut conn: cache_core::clients::redis::Connection,
        info: &BTreeMap<String, String>,
        node: Option<&str>,
        report: &mut TargetReport,
        cap: &mut Cap,
    ) {
        let run_id = info.get("run_id").cloned().unwrap_or_default();
        let major: u32 = info.get("redis_version").and_then(|v| v.split('.').next()?.parse().ok()).unwrap_or(7);
        let cursor_file = self.cursor_file(node);
        let keys = client::keyspace_keys(info);
        self.progress.inc_length(keys);
        let pass = Pass {
            job: self,
            run_id: &run_id,
            nx: major >= 7,
            cluster: node.is_some(),
            cursor_file: &cursor_file,
            access: std::sync::OnceLock::new(),
            own: std::sync::Mutex::default(),
        };
        let memory_target = self.policy().memory_target_percent;
        // What eviction will need at most: the excess now (the first pass can only lower it).
        let excess = match memory_target {
            Some(percent) => match Memory::read(&mut conn).await {
                Ok(memory) => memory.excess(percent),
                Err(e) => {
                    report.notes.push(format!("memory target skipped: INFO memory unavailable ({e})"));
                    None
                }
            },
            None => None,
        };
        let average = average_key_bytes(info, keys);
        let mut coldest = excess.filter(|e| *e > 0).map(|need| Coldest::new(need, average, cap.room()));
        let freed_before = report.bytes_freed;
        if self.mode != Mode::Evict {
            let start = match self.start_cursor(&cursor_file, &run_id, report) {
                Ok(start) => start,
                Err(e) => {
                    report.errors.push(format!("{e:#}"));
                    return;
                }
            };
            if self.target.prefixes.is_empty()
                && self.policy().delete_orphans
                && !report.notes.iter().any(|n| n.contains("orphans"))
            {
                report.notes.push("no `prefixes` configured: orphans are not judged".into());
            }
            if !pass.run(conn.clone(), start, report, cap, coldest.as_mut()).await {
                return;
            }
            if !self.dry_run
                && let Err(e) = self.state.remove(&cursor_file)
            {
                report.errors.push(format!("removing the saved cursor: {e:#}"));
            }
        }
        if let Some(percent) = memory_target
            && cap.hit.is_none()
        {
            let freed_here = report.bytes_freed - freed_before;
            let eviction = Eviction { pass: &pass, percent, average, freed_by_first_pass: freed_here };
            eviction.run(conn, coldest, report, cap).await;
        }
    }

    fn start_cursor(&self, cursor_file: &str, run_id: &str, report: &mut TargetReport) -> anyhow::Result<u64> {
        let saved: Option<SavedCursor> = self.state.read_json(cursor_file)?;
        match (self.resume, saved) {
            (false, None) => Ok(0),
            (false, Some(saved)) => {
                report.notes.push(format!(
                    "a run interrupted at cursor {} ({}) was not resumed: starting over (pass --resume to continue it)",
                    saved.cursor, saved.saved_at
                ));
                Ok(0)
            }
            (true, None) => {
                report.notes.push("--resume: no saved cursor, starting from the beginning".into());
                Ok(0)
            }
            (true, Some(saved)) if saved.mode != self.mode || saved.category.as_deref() != self.category => {
                anyhow::bail!(
                    "--resume: the saved cursor belongs to a `{}` run{}; rerun that, or start over without --resume",
                    saved.mode.as_str(),
                    saved.category.map(|c| format!(" of category `{c}`")).unwrap_or_default()
                )
            }
            (true, Some(saved)) if saved.run_id != run_id => {
                report.notes.push(
                    "--resume: the server restarted since the cursor was saved (its run_id changed), so the cursor \
                     is meaningless: starting over; work already done stays done"
                        .into(),
                );
                Ok(0)
            }
            (true, Some(saved)) => {
                report.notes.push(format!("resumed at cursor {}", saved.cursor));
                Ok(saved.cursor)
            }
        }
    }
}

/// The average bytes of a key, for servers that refuse MEMORY USAGE.
fn average_key_bytes(info: &BTreeMap<String, String>, keys: u64) -> u64 {
    let dataset = info
        .get("used_memory_dataset")
        .or_else(|| info.get("used_memory"))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    dataset.checked_div(keys).unwrap_or(0)
}

/// `used_memory` and `maxmemory` as the server says now.
#[derive(Clone, Copy, Debug)]
struct Memory {
    used: u64,
    max: u64,
}

impl Memory {
    /// Reads `INFO memory`, first waiting (briefly) for the lazy-free thread to finish freeing
    /// what was just unlinked, so that the figure counts it.
    async fn read(conn: &mut cache_core::clients::redis::Connection) -> redis::RedisResult<Self> {
        let started = Instant::now();
        loop {
            let text: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
            let info = client::parse_info(&text);
            let num = |k: &str| info.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            if num("lazyfree_pending_objects") == 0 || started.elapsed() >= LAZYFREE_WAIT {
                return Ok(Self { used: num("used_memory"), max: num("maxmemory") });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The target in bytes for `percent` of maxmemory (`None` without maxmemory).
    fn target(self, percent: f64) -> Option<u64> {
        (self.max > 0).then(|| (self.max as f64 * percent / 100.0) as u64)
    }

    /// Bytes over the target (`None` without maxmemory).
    fn excess(self, percent: f64) -> Option<u64> {
        self.target(percent).map(|t| self.used.saturating_sub(t))
    }
}

/// A key eviction may remove, as it was when scanned.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    /// Idle seconds (or the LFU equivalent): larger is colder.
    coldness: u64,
    key: Vec<u8>,
    bytes: u64,
}

/// The coldest keys seen, just enough of them to hold `need` bytes: a streaming top-k by
/// coldness with a byte budget instead of a count, bounded by `max_keys`. Its memory is that
/// of the keys eviction needs, whatever the size of the keyspace.
#[derive(Debug)]
struct Coldest {
    need: u64,
    average: u64,
    max_keys: u64,
    /// Min-heap on coldness: the warmest kept candidate on top, the first to give way.
    heap: BinaryHeap<Reverse<Candidate>>,
    bytes: u64,
}

impl Coldest {
    fn new(need: u64, average: u64, max_keys: u64) -> Self {
        Self { need, average, max_keys, heap: BinaryHeap::new(), bytes: 0 }
    }

    fn offer(&mut self, key: &KeyInfo, coldness: u64) {
        let bytes = key.bytes.unwrap_or(self.average).max(1);
        let full = self.bytes >= self.need || self.heap.len() as u64 >= self.max_keys;
        if full && self.heap.peek().is_some_and(|Reverse(top)| top.coldness >= coldness) {
            return;
        }
        self.heap.push(Reverse(Candidate { coldness, key: key.key.clone(), bytes }));
        self.bytes += bytes;
        // Give way from the warm end while the rest still holds enough.
        while let Some(Reverse(top)) = self.heap.peek() {
            let over_count = self.heap.len() as u64 > self.max_keys;
            if over_count || self.bytes - top.bytes >= self.need {
                self.bytes -= top.bytes;
                self.heap.pop();
            } else {
                break;
            }
        }
    }

    /// The candidates, coldest first.
    fn into_coldest_first(self) -> Vec<Candidate> {
        let mut all: Vec<Candidate> = self.heap.into_iter().map(|Reverse(c)| c).collect();
        all.sort_by(|a, b| b.coldness.cmp(&a.coldness).then_with(|| a.key.cmp(&b.key)));
        all
    }
}

/// Eviction of one server down to its memory target.
struct Eviction<'a> {
    pass: &'a Pass<'a>,
    percent: f64,
    average: u64,
    freed_by_first_pass: u64,
}

impl Eviction<'_> {
    async fn run(
        &self,
        mut conn: cache_core::clients::redis::Connection,
        mut coldest: Option<Coldest>,
        report: &mut TargetReport,
        cap: &mut Cap,
    ) {
        let job = self.pass.job;
        let percent = self.percent;
        let memory = match Memory::read(&mut conn).await {
            Ok(memory) => memory,
            Err(e) => {
                report.notes.push(format!("memory target skipped: INFO memory unavailable ({e})"));
                return;
            }
        };
        let Some(target) = memory.target(percent) else {
            report.notes.push("maxmemory is not set: the memory target does not apply".into());
            return;
        };
        // A dry run freed nothing yet: count what the first pass would have freed.
        let used = if job.dry_run { memory.used.saturating_sub(self.freed_by_first_pass) } else { memory.used };
        if used <= target {
            report.notes.push(format!("memory {} is within the {percent:.0}% target ({})", bytes(used), bytes(target)));
            return;
        }
        let need = used - target;
        report.notes.push(format!(
            "memory {} over the {percent:.0}% target ({}) by {}: evicting the idlest keys",
            bytes(used),
            bytes(target),
            bytes(need)
        ));
        let batch_size = job.settings.batch_size.max(1);
        if job.dry_run {
            let candidates = match self.candidates(&conn, coldest.take(), need, report, cap).await {
                Some(c) => c,
                None => return,
            };
            let mut selected = 0;
            for c in candidates {
                if selected >= need {
                    break;
                }
                if !cap.admit(c.bytes) {
                    break;
                }
                selected += c.bytes;
                self.select(&c, report);
                report.bytes_freed += c.bytes;
            }
            report.notes.push(format!(
                "would evict {} (the excess {} plus at most one batch of {batch_size} keys)",
                bytes(selected),
                bytes(need)
            ));
            return;
        }
        let mut rounds = 0;
        let mut candidates: std::vec::IntoIter<Candidate> = Vec::new().into_iter();
        let mut evicted = 0u64;
        let mut used_now;
        loop {
            let memory = match Memory::read(&mut conn).await {
                Ok(m) => m,
                Err(e) => {
                    report.errors.push(format!("re-reading memory while evicting: {e}"));
                    return;
                }
            };
            used_now = memory.used;
            if used_now <= target {
                break;
            }
            let remaining = used_now - target;
            // This batch: the next coldest keys holding the remaining excess, at most a batch.
            let mut batch: Vec<Candidate> = Vec::new();
            let mut batch_bytes = 0;
            while batch.len() < batch_size && batch_bytes < remaining {
                match candidates.next() {
                    Some(c) => {
                        batch_bytes += c.bytes;
                        batch.push(c);
                    }
                    None => break,
                }
            }
            if batch.is_empty() {
                if cap.room() == 0 {
                    // More is needed, but the cap allows no more: the cap stopped the run.
                    cap.hit_by_count();
                    break;
                }
                if rounds >= EVICTION_ROUNDS {
                    report.notes.push(format!(
                        "memory target not reached after {rounds} scans: no more idle keys of the project to evict"
                    ));
                    break;
                }
                rounds += 1;
                match self.candidates(&conn, coldest.take(), remaining, report, cap).await {
                    Some(found) if !found.is_empty() => candidates = found.into_iter(),
                    Some(_) => {
                        report.notes.push("memory target not reached: no idle key of the project left to evict".into());
                        break;
                    }
                    None => break,
                }
                continue;
            }
            let batch = match self.still_cold(&mut conn, batch).await {
                Ok(batch) => batch,
                Err(e) => {
                    report.unreachable |= e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                    report.errors.push(format!("re-checking idle times before evicting: {e}"));
                    return;
                }
            };
            let mut admitted = Vec::new();
            for c in &batch {
                if !cap.admit(c.bytes) {
                    break;
                }
                admitted.push(c);
            }
            let (mut deletes, mut freed) = (Vec::new(), 0);
            for c in &admitted {
                self.select(c, report);
                deletes.push(c.key.clone());
                freed += c.bytes;
            }
            evicted += deletes.len() as u64;
            let actions = Actions { deletes, expires: Vec::new(), freed };
            if let Err(e) = self.pass.apply(&mut conn, &actions, report).await {
                report.unreachable |= e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                report.errors.push(format!("evicting: {e}"));
                return;
            }
            if cap.hit.is_some() {
                break;
            }
        }
        report.notes.push(format!(
            "evicted {evicted} keys: used memory {} → {} (target {})",
            bytes(used),
            bytes(used_now),
            bytes(target)
        ));
    }

    fn select(&self, c: &Candidate, report: &mut TargetReport) {
        let job = self.pass.job;
        let sample = if job.dry_run { job.settings.dry_run_sample } else { 0 };
        let reason = format!("evicted to reach the memory target (idle {})", secs(c.coldness));
        let item = Item {
            name: String::from_utf8_lossy(&c.key).into_owned(),
            action: Action::Delete,
            reason,
            bytes: Some(c.bytes),
        };
        report.select(item, sample);
    }

    /// The candidates, coldest first: those the first pass kept, or a scan's.
    async fn candidates(
        &self,
        conn: &cache_core::clients::redis::Connection,
        kept: Option<Coldest>,
        need: u64,
        report: &mut TargetReport,
        cap: &Cap,
    ) -> Option<Vec<Candidate>> {
        let coldest = match kept {
            Some(kept) if kept.bytes >= need || kept.heap.len() as u64 >= kept.max_keys => kept,
            _ => {
                let mut fresh = Coldest::new(need, self.average, cap.room());
                let mut quiet = TargetReport::new(Tier::Redis, "");
                if !self.pass.collect(conn.clone(), &mut quiet, &mut fresh).await {
                    report.errors.extend(quiet.errors);
                    report.unreachable |= quiet.unreachable;
                    return None;
                }
                for note in quiet.notes {
                    if !report.notes.contains(&note) {
                        report.notes.push(note);
                    }
                }
                fresh
            }
        };
        if coldest.heap.is_empty() && self.pass.job.dry_run {
            report
                .notes
                .push("memory target: idle times unknown or no idle key of the project, nothing evicted".into());
        }
        Some(coldest.into_coldest_first())
    }

    /// The keys of `batch` still as cold as when they were scanned (one used meanwhile stays;
    /// one already gone is dropped).
    async fn still_cold(
        &self,
        conn: &mut cache_core::clients::redis::Connection,
        batch: Vec<Candidate>,
    ) -> redis::RedisResult<Vec<Candidate>> {
        let freq = self.pass.access.get() == Some(&Access::Freq);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for c in &batch {
            pipe.cmd("OBJECT").arg(if freq { "FREQ" } else { "IDLETIME" }).arg(&c.key);
        }
        let now: Vec<redis::Value> = pipe.query_async(conn).await?;
        // Each OBJECT is a keyspace lookup: the toolkit's, not the application's.
        let mut lookups = cache_core::ledger::Lookups::commands(now.len() as u64);
        for v in &now {
            match v {
                redis::Value::Int(_) => lookups.hits += 1,
                redis::Value::Nil => lookups.misses += 1,
                _ => {}
            }
        }
        self.pass.count(lookups);
        Ok(batch
            .into_iter()
            .zip(now)
            .filter(|(c, v)| match v {
                redis::Value::Int(i) if freq => 255u64.saturating_sub((*i).max(0) as u64) * 3600 >= c.coldness,
                redis::Value::Int(i) => (*i).max(0) as u64 >= c.coldness,
                _ => false,
            })
            .map(|(c, _)| c)
            .collect())
    }
}

/// What to do with one batch.
struct Actions {
    /// Keys to UNLINK.
    deletes: Vec<Vec<u8>>,
    /// Keys to give a TTL (milliseconds).
    expires: Vec<(Vec<u8>, u64)>,
    /// The bytes the deletes hold: freed once they are applied (in a dry run, they would be).
    freed: u64,
}

/// One pass over the keyspace.
struct Pass<'a> {
    job: &'a RedisJob<'a>,
    run_id: &'a str,
    /// The server knows `PEXPIRE ... NX` (Redis 7).
    nx: bool,
    /// A cluster node: no scripts (they may only touch declared keys of one slot) and one
    /// UNLINK per key (a multi-key UNLINK across slots is refused).
    cluster: bool,
    /// Where this pass saves its cursor.
    cursor_file: &'a str,
    /// How the server measures access, once a scan has learnt it.
    access: std::sync::OnceLock<Access>,
    /// The pass's own lookups and commands outside the scanner (re-checks, writes), recorded
    /// in the ledger once, when the pass ends however it ends.
    own: std::sync::Mutex<cache_core::ledger::Lookups>,
}

impl Pass<'_> {
    /// Adds lookups or commands the pass caused.
    fn count(&self, lookups: cache_core::ledger::Lookups) {
        *self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += lookups;
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let own = *self.own.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = cache_core::ledger::record(self.job.state, self.run_id, own) {
            tracing::warn!("recording the toolkit's own lookups: {e:#}");
        }
    }
}

impl Pass<'_> {
    fn options(&self) -> ScanOptions {
        let job = self.job;
        ScanOptions {
            pattern: job.category.map(|c| format!("*{c}*")),
            count: job.settings.batch_size,
            max_keys_per_sec: job.max_ops_per_sec,
            method: match (self.cluster, job.settings.scan_method) {
                (true, _) | (false, ScanMethod::Pipeline) => Some(Method::Pipeline),
                (false, ScanMethod::Script) => Some(Method::Script),
                (false, ScanMethod::Auto) => None,
            },
            budget: self.job.target.scan_budget(),
            ..ScanOptions::default()
        }
    }

    async fn scanner(
        &self,
        conn: cache_core::clients::redis::Connection,
        start: u64,
        report: &mut TargetReport,
    ) -> Option<Scanner> {
        match Scanner::new(conn, self.options(), start).await {
            Ok(scanner) => {
                let scanner = scanner.recording(self.job.state, self.run_id);
                let _ = self.access.set(scanner.access());
                Some(scanner)
            }
            Err(e) => {
                report.unreachable |= e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                report.errors.push(format!("starting the scan: {e}"));
                None
            }
        }
    }

    /// The classifying pass: deletes, TTLs and reports batch by batch, offering the keys it
    /// keeps to `coldest` for eviction. Returns whether the pass completed (a cap hit counts
    /// as completed: the cap says why it stopped).
    async fn run(
        &self,
        conn: cache_core::clients::redis::Connection,
        start: u64,
        report: &mut TargetReport,
        cap: &mut Cap,
        mut coldest: Option<&mut Coldest>,
    ) -> bool {
        let job = self.job;
        let Some(mut scanner) = self.scanner(conn.clone(), start, report).await else { return false };
        let mut writer = conn;
        let mut last_save = Instant::now();
        loop {
            let before = scanner.cursor();
            let batch = match scanner.next_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => {
                    self.save(before, report);
                    report.unreachable |= e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                    report.errors.push(format!(
                        "connection lost mid-scan ({e}); the cursor is saved: rerun with --resume to continue"
                    ));
                    return false;
                }
            };
            job.progress.inc(batch.len() as u64);
            let actions = self.classify(&batch, scanner.access(), report, cap, coldest.as_deref_mut());
            if job.dry_run {
                report.bytes_freed += actions.freed;
            } else if let Err(e) = self.apply(&mut writer, &actions, report).await {
                self.save(before, report);
                report.unreachable |= e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                report.errors.push(format!("{e}; the cursor is saved: rerun with --resume to continue"));
                return false;
            }
            if cap.hit.is_some() {
                break;
            }
            if !job.dry_run && last_save.elapsed() >= SAVE_EVERY {
                self.save(scanner.cursor(), report);
                last_save = Instant::now();
            }
        }
        for missing in scanner.missing() {
            if !report.notes.contains(missing) {
                report.notes.push(missing.clone());
            }
        }
        true
    }

    /// A scan that only finds eviction candidates (changes nothing).
    async fn collect(
        &self,
        conn: cache_core::clients::redis::Connection,
        report: &mut TargetReport,
        coldest: &mut Coldest,
    ) -> bool {
        let Some(mut scanner) = self.scanner(conn, 0, report).await else { return false };
        loop {
            match scanner.next_batch().await {
                Ok(Some(batch)) => {
                    for key in batch.iter().filter(|k| self.evictable(k)) {
                        if let Some(c) = coldness(key, scanner.access()) {
                            coldest.offer(key, c);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    report.unreachable |= e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                    report.errors.push(format!("scanning for eviction candidates: {e}"));
                    return false;
                }
            }
        }
        for missing in scanner.missing() {
            if !report.notes.contains(missing) {
                report.notes.push(missing.clone());
            }
        }
        true
    }

    /// A key eviction may remove: the project's, in the category, not protected.
    fn evictable(&self, key: &KeyInfo) -> bool {
        let job = self.job;
        job.owned(&key.key) && job.in_category(&key.key) && !job.protected(&key.key)
    }

    fn save(&self, cursor: u64, report: &mut TargetReport) {
        let job = self.job;
        if job.dry_run {
            return;
        }
        let saved = SavedCursor {
            mode: job.mode,
            category: job.category.map(str::to_owned),
            cursor,
            run_id: self.run_id.to_owned(),
            saved_at: Utc::now(),
        };
        if let Err(e) = job.state.write_json(self.cursor_file, &saved) {
            report.errors.push(format!("saving the cursor: {e:#}"));
        }
    }

    /// Decides for each key; returns the keys to delete and the (key, TTL ms) to set.
    fn classify(
        &self,
        batch: &[KeyInfo],
        access: Access,
        report: &mut TargetReport,
        cap: &mut Cap,
        mut coldest: Option<&mut Coldest>,
    ) -> Actions {
        let job = self.job;
        let policy = job.policy();
        let sample = if job.dry_run { job.settings.dry_run_sample } else { 0 };
        let now = chrono::Utc::now();
        let (mut deletes, mut expires, mut freed) = (Vec::new(), Vec::new(), 0);
        for key in batch {
            if !job.in_category(&key.key) {
                continue;
            }
            if !job.owned(&key.key) {
                report.foreign += 1;
                continue;
            }
            if job.protected(&key.key) {
                report.protected += 1;
                continue;
            }
            report.examined += 1;
            if cap.hit.is_some() {
                continue;
            }
            let prefix = job.prefix(&key.key);
            let orphan = !job.target.prefixes.is_empty() && prefix.is_none();
            let limit = job.target.max_key_size.as_u64();
            let oversized = key.bytes.is_some_and(|b| b > limit);
            let idle = match (access, key.idle_s, key.freq) {
                (Access::IdleTime, Some(idle), _) => policy
                    .idle
                    .filter(|t| idle >= t.as_secs())
                    .map(|t| format!("idle {} (≥ {})", secs(idle), humantime::format_duration(t))),
                (Access::Freq, _, Some(freq)) => {
                    policy.lfu_max_freq.filter(|max| freq <= *max).map(|max| format!("LFU frequency {freq} (≤ {max})"))
                }
                _ => None,
            };
            // The age the name says, past the rule's `max_age`: in every mode.
            let named = prefix.and_then(|rule| {
                let age = rule.past_named_age(&key.key, now)?;
                Some(format!(
                    "its name dates it {} old (≥ {} under `{}`)",
                    secs(age.as_secs()),
                    humantime::format_duration(rule.max_age.unwrap_or_default()),
                    rule.prefix
                ))
            });
            let reason = if let Some(named) = named {
                Some(named)
            } else if oversized && policy.delete_oversized {
                Some(format!("oversized: {} > {}", bytes(key.bytes.unwrap_or(0)), bytes(limit)))
            } else if orphan && policy.delete_orphans {
                Some("orphan: in the namespace, under no known prefix".to_owned())
            } else {
                idle
            };
            if let Some(reason) = reason {
                if cap.admit(key.bytes.unwrap_or(0)) {
                    self.delete(key, reason, sample, report, (&mut deletes, &mut freed));
                }
            } else {
                if let (Some(coldest), Some(c)) = (coldest.as_deref_mut(), coldness(key, access)) {
                    coldest.offer(key, c);
                }
                if key.ttl_ms.is_none()
                    && let Some(rule) = prefix
                    && let Some(ttl) = rule.ttl
                {
                    let reason = format!("no TTL under `{}`: gets {}", rule.prefix, humantime::format_duration(ttl));
                    report.select(Item { name: key.name(), action: Action::Expire, reason, bytes: key.bytes }, sample);
                    expires.push((key.key.clone(), ttl.as_millis() as u64));
                }
                if orphan {
                    let reason =
                        "orphan: in the namespace, under no known prefix (removed in aggressive mode)".to_owned();
                    report.select(Item { name: key.name(), action: Action::Report, reason, bytes: key.bytes }, sample);
                }
                if oversized {
                    let reason =
                        format!("oversized: {} > {} (kept in this mode)", bytes(key.bytes.unwrap_or(0)), bytes(limit));
                    report.select(Item { name: key.name(), action: Action::Report, reason, bytes: key.bytes }, sample);
                }
            }
        }
        Actions { deletes, expires, freed }
    }

    fn delete(
        &self,
        key: &KeyInfo,
        reason: String,
        sample: usize,
        report: &mut TargetReport,
        (deletes, freed): (&mut Vec<Vec<u8>>, &mut u64),
    ) {
        report.select(Item { name: key.name(), action: Action::Delete, reason, bytes: key.bytes }, sample);
        *freed += key.bytes.unwrap_or(0);
        deletes.push(key.key.clone());
    }

    async fn apply(
        &self,
        conn: &mut cache_core::clients::redis::Connection,
        Actions { deletes, expires, freed }: &Actions,
        report: &mut TargetReport,
    ) -> redis::RedisResult<()> {
        if deletes.is_empty() && expires.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let unlinks = match (self.cluster, deletes.is_empty()) {
            (_, true) => 0,
            (false, false) => {
                pipe.cmd("UNLINK").arg(deletes);
                1
            }
            (true, false) => {
                for key in deletes {
                    pipe.cmd("UNLINK").arg(key);
                }
                deletes.len()
            }
        };
        for (key, ms) in expires {
            pipe.cmd("PEXPIRE").arg(key).arg(*ms);
            if self.nx {
                pipe.arg("NX");
            }
        }
        let replies: Vec<i64> = pipe.query_async(conn).await?;
        // The toolkit's commands, never the application's operations.
        let sent = (unlinks + expires.len()) as u64;
        self.count(cache_core::ledger::Lookups::commands(sent));
        // What the deletes held is freed now that they are applied, never before.
        report.bytes_freed += freed;
        let mut replies = replies.into_iter();
        report.removed += replies.by_ref().take(unlinks).map(|r| r.max(0) as u64).sum::<u64>();
        report.expired += replies.filter(|r| *r == 1).count() as u64;
        Ok(())
    }
}

fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// How cold a key is, in idle seconds (LFU: 255 − frequency, in hours): larger is colder.
fn coldness(key: &KeyInfo, access: Access) -> Option<u64> {
    match access {
        Access::IdleTime => key.idle_s,
        Access::Freq => key.freq.map(|f| 255u64.saturating_sub(f) * 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::{Coldest, KeyInfo};

    fn key(name: &str, bytes: u64) -> KeyInfo {
        KeyInfo {
            key: name.as_bytes().to_vec(),
            kind: "string".into(),
            ttl_ms: None,
            idle_s: None,
            freq: None,
            bytes: Some(bytes),
        }
    }

    #[test]
    fn coldest_keeps_just_the_idlest_keys_that_hold_the_need() {
        let mut c = Coldest::new(250, 1, u64::MAX);
        // 1000 keys of 10 bytes, idle 0..999 s, offered in a scrambled order.
        for i in (0..1000u64).map(|i| (i * 7919) % 1000) {
            c.offer(&key(&format!("k{i}"), 10), i);
        }
        let kept = c.into_coldest_first();
        // 25 keys of 10 bytes hold 250: exactly the 25 idlest, coldest first.
        assert_eq!(kept.len(), 25);
        assert_eq!(kept.first().map(|k| k.coldness), Some(999));
        assert_eq!(kept.last().map(|k| k.coldness), Some(975));
        // Bounded by count too.
        let mut c = Coldest::new(u64::MAX, 1, 10);
        for i in 0..100 {
            c.offer(&key("k", 10), i);
        }
        assert_eq!(c.into_coldest_first().iter().map(|k| k.coldness).min(), Some(90));
    }
}
