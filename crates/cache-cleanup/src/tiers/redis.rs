//! Redis: TTL repair, idle, orphaned and oversized keys, and eviction down to a memory target.
//!
//! One streaming pass classifies every key batch by batch (the scanner in cache-core) and acts
//! on the batch at once: UNLINK in one command, `PEXPIRE ... NX` pipelined (never overriding a
//! TTL the application set meanwhile). The cursor is saved as the pass goes, so `--resume`
//! continues an interrupted run. Eviction to a memory target needs a global order by idle
//! time: the first pass builds a histogram of bytes by idle time, which gives the cutoff, and a
//! second pass removes the keys past it. Memory use stays flat in the number of keys.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cache_core::clients::redis as client;
use cache_core::config::{CleanupSettings, ModePolicy, PrefixRule, RedisTarget, ScanMethod};
use cache_core::output::{ProgressBar, bytes};
use cache_core::scan::{Access, KeyInfo, Method, ScanOptions, Scanner, glob_match};
use cache_core::state::StateDir;
use cache_core::tier::Tier;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::Mode;
use crate::report::{Action, Item, TargetReport};

/// How often the cursor is saved during a pass.
const SAVE_EVERY: Duration = Duration::from_secs(1);

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
    /// The project's key namespace: no key outside it (and outside every prefix) is touched.
    pub namespace: String,
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
        self.settings.protected.iter().chain(&self.target.protected).any(|p| glob_match(p.as_bytes(), key))
    }

    fn in_category(&self, key: &[u8]) -> bool {
        self.category.is_none_or(|c| key.split(|b| *b == b':').any(|segment| segment == c.as_bytes()))
    }

    fn prefix(&self, key: &[u8]) -> Option<&PrefixRule> {
        self.target.prefixes.iter().find(|r| key.starts_with(r.prefix.as_bytes()))
    }

    fn policy(&self) -> &ModePolicy {
        self.mode.policy(self.settings)
    }

    /// Runs the cleanup of this target: one pass per primary on a Redis Cluster.
    pub async fn run(&self) -> TargetReport {
        let mut report = TargetReport::new(Tier::Redis, &self.target.name);
        let mut conn = match client::connect(self.target).await {
            Ok(conn) => conn,
            Err(e) => {
                report.unreachable = true;
                report.errors.push(format!("{e:#}"));
                return report;
            }
        };
        let info = client::info(&mut conn).await.unwrap_or_default();
        match client::cluster_primaries(&mut conn, &info).await {
            Ok(None) => self.run_node(conn, &info, None, &mut report).await,
            Ok(Some(primaries)) => {
                report.notes.push(format!("cluster: {} primaries, cleaned one after the other", primaries.len()));
                for (host, port) in primaries {
                    let node = match client::node_target(self.target, &host, port) {
                        Ok(node) => node,
                        Err(e) => {
                            report.errors.push(format!("{e:#}"));
                            continue;
                        }
                    };
                    let mut node_conn = match client::connect(&node).await {
                        Ok(conn) => conn,
                        Err(e) => {
                            report.unreachable = true;
                            report.errors.push(format!("{e:#}"));
                            continue;
                        }
                    };
                    let node_info = client::info(&mut node_conn).await.unwrap_or_default();
                    self.run_node(node_conn, &node_info, Some(&format!("{host}:{port}")), &mut report).await;
                }
            }
            Err(e) => report.errors.push(format!("listing the cluster's primaries: {e}")),
        }
        report
    }

    /// Cleans one server (a standalone server, or one primary of a cluster: `node`).
    async fn run_node(
        &self,
        conn: redis::aio::MultiplexedConnection,
        info: &BTreeMap<String, String>,
        node: Option<&str>,
        report: &mut TargetReport,
    ) {
        let run_id = info.get("run_id").cloned().unwrap_or_default();
        let major: u32 = info.get("redis_version").and_then(|v| v.split('.').next()?.parse().ok()).unwrap_or(7);
        let cursor_file = self.cursor_file(node);
        let keys = client::keyspace_keys(info);
        self.progress.inc_length(keys);
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
        let mut histogram = Histogram::default();
        let pass =
            Pass { job: self, run_id: &run_id, nx: major >= 7, cluster: node.is_some(), cursor_file: &cursor_file };
        let freed_before = report.bytes_freed;
        if !pass.run(conn.clone(), start, None, report, &mut histogram).await {
            return;
        }
        if !self.dry_run
            && let Err(e) = self.state.remove(&cursor_file)
        {
            report.errors.push(format!("removing the saved cursor: {e:#}"));
        }
        if let Some(percent) = self.policy().memory_target_percent {
            let freed_here = report.bytes_freed - freed_before;
            self.evict_to_target(&pass, conn, percent, &histogram, freed_here, report).await;
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

    async fn evict_to_target(
        &self,
        pass: &Pass<'_>,
        mut conn: redis::aio::MultiplexedConnection,
        percent: f64,
        histogram: &Histogram,
        freed_by_first_pass: u64,
        report: &mut TargetReport,
    ) {
        let info = match client::info(&mut conn).await {
            Ok(info) => info,
            Err(e) => {
                report.notes.push(format!("memory target skipped: INFO unavailable ({e})"));
                return;
            }
        };
        let num = |k: &str| info.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let (used, max) = (num("used_memory"), num("maxmemory"));
        if max <= 0.0 {
            report.notes.push("maxmemory is not set: the memory target does not apply".into());
            return;
        }
        // In a dry run nothing was freed yet: count what the first pass would have freed.
        let used = if self.dry_run { used - freed_by_first_pass as f64 } else { used };
        let target = max * percent / 100.0;
        if used <= target {
            report.notes.push(format!("memory {} is within the {percent:.0}% target", bytes(used as u64)));
            return;
        }
        let need = (used - target) as u64;
        let Some(cutoff) = histogram.cutoff(need) else {
            report.notes.push("memory target: idle times unknown, nothing evicted".into());
            return;
        };
        report.notes.push(format!(
            "memory {} over the {percent:.0}% target by {}: evicting keys idle at least {}",
            bytes(used as u64),
            bytes(need),
            humantime::format_duration(Duration::from_secs(cutoff))
        ));
        pass.run(conn, 0, Some(cutoff), report, &mut Histogram::default()).await;
    }
}

/// What to do with one batch.
struct Actions {
    /// Keys to UNLINK.
    deletes: Vec<Vec<u8>>,
    /// Keys to give a TTL (milliseconds).
    expires: Vec<(Vec<u8>, u64)>,
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
}

impl Pass<'_> {
    /// Returns whether the pass completed. `evict_from`: the eviction pass, removing keys idle
    /// at least this many seconds.
    async fn run(
        &self,
        conn: redis::aio::MultiplexedConnection,
        start: u64,
        evict_from: Option<u64>,
        report: &mut TargetReport,
        histogram: &mut Histogram,
    ) -> bool {
        let job = self.job;
        let pattern = job.category.map(|c| format!("*{c}*"));
        let opts = ScanOptions {
            pattern,
            count: job.settings.batch_size,
            max_keys_per_sec: job.max_ops_per_sec,
            method: match (self.cluster, job.settings.scan_method) {
                (true, _) | (false, ScanMethod::Pipeline) => Some(Method::Pipeline),
                (false, ScanMethod::Script) => Some(Method::Script),
                (false, ScanMethod::Auto) => None,
            },
            ..ScanOptions::default()
        };
        let mut scanner = match Scanner::new(conn.clone(), opts, start).await {
            Ok(scanner) => scanner,
            Err(e) => {
                report.unreachable = e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                report.errors.push(format!("starting the scan: {e}"));
                return false;
            }
        };
        let mut writer = conn;
        let mut last_save = Instant::now();
        loop {
            let before = scanner.cursor();
            let batch = match scanner.next_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => {
                    self.save(before, report);
                    report.unreachable = e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                    report.errors.push(format!(
                        "connection lost mid-scan ({e}); the cursor is saved: rerun with --resume to continue"
                    ));
                    return false;
                }
            };
            if evict_from.is_none() {
                job.progress.inc(batch.len() as u64);
            }
            let actions = self.classify(&batch, scanner.access(), evict_from, report, histogram);
            if !job.dry_run
                && let Err(e) = self.apply(&mut writer, &actions, report).await
            {
                self.save(before, report);
                report.unreachable = e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
                report.errors.push(format!("{e}; the cursor is saved: rerun with --resume to continue"));
                return false;
            }
            if !job.dry_run && evict_from.is_none() && last_save.elapsed() >= SAVE_EVERY {
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
        evict_from: Option<u64>,
        report: &mut TargetReport,
        histogram: &mut Histogram,
    ) -> Actions {
        let job = self.job;
        let policy = job.policy();
        let sample = if job.dry_run { job.settings.dry_run_sample } else { 0 };
        let (mut deletes, mut expires) = (Vec::new(), Vec::new());
        for key in batch {
            if !job.in_category(&key.key) {
                continue;
            }
            if job.protected(&key.key) {
                report.protected += u64::from(evict_from.is_none());
                continue;
            }
            let coldness = match access {
                Access::IdleTime => key.idle_s,
                Access::Freq => key.freq.map(|f| 255u64.saturating_sub(f) * 3600),
            };
            if let Some(cutoff) = evict_from {
                if coldness.is_some_and(|c| c >= cutoff) {
                    let reason = format!("evicted to reach the memory target (idle ≥ {cutoff}s)");
                    self.delete(key, reason, sample, report, &mut deletes);
                }
                continue;
            }
            report.examined += 1;
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
            if oversized && policy.delete_oversized {
                let reason = format!("oversized: {} > {}", bytes(key.bytes.unwrap_or(0)), bytes(limit));
                self.delete(key, reason, sample, report, &mut deletes);
            } else if orphan && policy.delete_orphans {
                self.delete(key, "orphan: under no known prefix".into(), sample, report, &mut deletes);
            } else if let Some(reason) = idle {
                self.delete(key, reason, sample, report, &mut deletes);
            } else {
                if let Some(c) = coldness {
                    histogram.add(c, key.bytes.unwrap_or(0));
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
                    let reason = "orphan: under no known prefix (removed in aggressive mode)".to_owned();
                    report.select(Item { name: key.name(), action: Action::Report, reason, bytes: key.bytes }, sample);
                }
                if oversized {
                    let reason =
                        format!("oversized: {} > {} (kept in this mode)", bytes(key.bytes.unwrap_or(0)), bytes(limit));
                    report.select(Item { name: key.name(), action: Action::Report, reason, bytes: key.bytes }, sample);
                }
            }
        }
        Actions { deletes, expires }
    }

    fn delete(
        &self,
        key: &KeyInfo,
        reason: String,
        sample: usize,
        report: &mut TargetReport,
        deletes: &mut Vec<Vec<u8>>,
    ) {
        report.select(Item { name: key.name(), action: Action::Delete, reason, bytes: key.bytes }, sample);
        report.bytes_freed += key.bytes.unwrap_or(0);
        deletes.push(key.key.clone());
    }

    async fn apply(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        Actions { deletes, expires }: &Actions,
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
        let mut replies = replies.into_iter();
        report.removed += replies.by_ref().take(unlinks).map(|r| r.max(0) as u64).sum::<u64>();
        report.expired += replies.filter(|r| *r == 1).count() as u64;
        Ok(())
    }
}

fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// Bytes of kept keys by idle time, in power-of-two buckets of seconds.
#[derive(Debug, Default)]
struct Histogram {
    bytes: BTreeMap<u32, u64>,
}

impl Histogram {
    fn add(&mut self, idle_s: u64, bytes: u64) {
        let bucket = 64 - idle_s.leading_zeros();
        *self.bytes.entry(bucket).or_default() += bytes.max(1);
    }

    /// The smallest idle time whose keys, with all idler ones, hold at least `need` bytes.
    fn cutoff(&self, need: u64) -> Option<u64> {
        let mut freed = 0;
        let mut cutoff = None;
        for (bucket, b) in self.bytes.iter().rev() {
            freed += b;
            cutoff = Some(if *bucket == 0 { 0 } else { 1u64 << (bucket - 1) });
            if freed >= need {
                break;
            }
        }
        cutoff
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn histogram_cutoff_frees_enough_from_the_idlest() {
        let mut h = Histogram::default();
        h.add(10, 100); // bucket [8, 16)
        h.add(1000, 300); // bucket [512, 1024)
        h.add(100_000, 500); // bucket [65536, 131072)
        // The idlest bucket alone holds 500 bytes; more than that reaches into the next one.
        assert_eq!(h.cutoff(400), Some(65536));
        assert_eq!(h.cutoff(500), Some(65536));
        assert_eq!(h.cutoff(501), Some(512));
        assert_eq!(h.cutoff(10_000), Some(8));
        assert_eq!(Histogram::default().cutoff(1), None);
    }
}
