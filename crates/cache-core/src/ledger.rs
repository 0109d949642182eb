//! The toolkit's own keyspace lookups, per Redis server.
//!
//! Redis counts a TYPE, PTTL, OBJECT or DUMP of a key as a keyspace hit (a miss when the key is
//! gone), exactly as it counts the application's GET. A scan of every key by cleanup, the
//! optimizer or `cache-debug memory` would otherwise read as a burst of cache hits, and a hit
//! ratio computed from INFO would be the toolkit's as much as the application's. So every tool
//! that looks keys up records the lookups it caused here, per server (by INFO's `run_id`, which
//! a restart changes, like the counters), and every hit-ratio figure subtracts them.
//!
//! The ledger is `ledger/redis-lookups.jsonl` in the state directory: one line per record
//! (appended in one write, under a shared lock), compacted to one line per server (under an
//! exclusive lock) once it grows past [`COMPACT_AT`]; servers not seen for [`FORGET_AFTER`] are
//! dropped then.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{StateDir, create_private_dir, write_atomic};

/// The ledger, in the state directory.
pub const FILE: &str = "ledger/redis-lookups.jsonl";
const LOCK: &str = "ledger/redis-lookups.lock";
/// Size past which the ledger is compacted.
pub const COMPACT_AT: u64 = 256 * 1024;
/// Servers whose last record is older than this are forgotten at compaction (days).
pub const FORGET_AFTER: i64 = 35;

/// Keyspace lookups: what Redis counts in `keyspace_hits` and `keyspace_misses`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookups {
    /// Lookups of keys that existed.
    pub hits: u64,
    /// Lookups of keys that did not.
    pub misses: u64,
    /// Commands sent per key (TYPE, PTTL, OBJECT, MEMORY USAGE, DUMP, UNLINK, PEXPIRE, SET...)
    /// and per batch (SCAN, a script): what Redis counts in `total_commands_processed`, less
    /// the few each run sends once (connecting, INFO), which are not counted.
    #[serde(default)]
    pub commands: u64,
}

impl Lookups {
    /// `hits` hits and no misses.
    pub fn hits(hits: u64) -> Self {
        Self { hits, ..Self::default() }
    }

    /// `n` commands that looked no key up (writes such as UNLINK or PEXPIRE).
    pub fn commands(n: u64) -> Self {
        Self { commands: n, ..Self::default() }
    }

    /// Whether there were none.
    pub fn is_zero(&self) -> bool {
        self.hits == 0 && self.misses == 0 && self.commands == 0
    }
}

impl std::ops::AddAssign for Lookups {
    fn add_assign(&mut self, other: Self) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.commands += other.commands;
    }
}

/// One record: lookups a tool caused on one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    /// The server's INFO `run_id`.
    run_id: String,
    /// When recorded.
    at: DateTime<Utc>,
    #[serde(flatten)]
    lookups: Lookups,
}

/// Records `lookups` caused on the server whose INFO `run_id` is `run_id`. A server that gave
/// no `run_id` (INFO refused) cannot be matched later and is not recorded.
pub fn record(state: &StateDir, run_id: &str, lookups: Lookups) -> anyhow::Result<()> {
    if run_id.is_empty() || lookups.is_zero() {
        return Ok(());
    }
    let lock = lock_file(state)?;
    lock.lock_shared().context("locking the lookup ledger")?;
    let entry = Entry { run_id: run_id.to_owned(), at: crate::clock::now()?, lookups };
    state.append_jsonl(FILE, &entry)?;
    drop(lock);
    if std::fs::metadata(state.path(FILE)).map(|m| m.len()).unwrap_or(0) > COMPACT_AT {
        compact(state)?;
    }
    Ok(())
}

/// The toolkit's lookups on each server since it started, by `run_id`.
pub fn totals(state: &StateDir) -> anyhow::Result<BTreeMap<String, Lookups>> {
    let mut out: BTreeMap<String, Lookups> = BTreeMap::new();
    for e in entries(state)? {
        *out.entry(e.run_id).or_default() += e.lookups;
    }
    Ok(out)
}

/// The toolkit's lookups on the servers `run_ids`, added up.
pub fn total_of<'a>(totals: &BTreeMap<String, Lookups>, run_ids: impl IntoIterator<Item = &'a str>) -> Lookups {
    let mut sum = Lookups::default();
    for id in run_ids {
        if let Some(l) = totals.get(id) {
            sum += *l;
        }
    }
    sum
}

/// One server's lookup counters as a check saw them: INFO's and the toolkit's share of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// `keyspace_hits`.
    pub hits: u64,
    /// `keyspace_misses`.
    pub misses: u64,
    /// The toolkit's own lookups on the server so far (the ledger's total).
    pub own: Lookups,
    /// When read.
    pub at: DateTime<Utc>,
}

/// Counters by server `run_id`.
pub type Seen = BTreeMap<String, Counters>;

/// The applications' lookups in one interval, over the servers of a target.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Interval {
    /// The applications' lookups: counter increases less the toolkit's.
    pub lookups: Lookups,
    /// Servers measured (seen at the start of the interval with the same `run_id`).
    pub measured: usize,
    /// Servers not measured: first seen now, or restarted since.
    pub unmeasured: usize,
    /// Length of the interval (the longest of the servers'), seconds.
    pub seconds: i64,
}

impl Interval {
    /// hits / lookups; `None` when nothing was measured or there were no lookups.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.lookups.hits + self.lookups.misses;
        (self.measured > 0 && total > 0).then(|| self.lookups.hits as f64 / total as f64)
    }
}

/// The applications' lookups between `before` and `now`, for the servers in `now`.
pub fn interval(before: &Seen, now: &Seen) -> Interval {
    let mut out = Interval::default();
    for (run_id, n) in now {
        let Some(b) = before.get(run_id).filter(|b| n.hits >= b.hits && n.misses >= b.misses) else {
            out.unmeasured += 1;
            continue;
        };
        let own_hits = n.own.hits.saturating_sub(b.own.hits);
        let own_misses = n.own.misses.saturating_sub(b.own.misses);
        out.lookups += Lookups {
            hits: (n.hits - b.hits).saturating_sub(own_hits),
            misses: (n.misses - b.misses).saturating_sub(own_misses),
            commands: 0,
        };
        out.measured += 1;
        out.seconds = out.seconds.max((n.at - b.at).num_seconds());
    }
    out
}

fn entries(state: &StateDir) -> anyhow::Result<Vec<Entry>> {
    state.read_jsonl(FILE)
}

fn lock_file(state: &StateDir) -> anyhow::Result<std::fs::File> {
    let path = state.path(LOCK);
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening `{}`", path.display()))
}

/// Rewrites the ledger with one line per server, forgetting servers not seen for
/// [`FORGET_AFTER`] days.
fn compact(state: &StateDir) -> anyhow::Result<()> {
    let lock = lock_file(state)?;
    lock.lock().context("locking the lookup ledger")?;
    let now = crate::clock::now()?;
    let mut by_server: BTreeMap<String, Entry> = BTreeMap::new();
    for e in entries(state)? {
        match by_server.get_mut(&e.run_id) {
            Some(sum) => {
                sum.lookups += e.lookups;
                sum.at = sum.at.max(e.at);
            }
            None => {
                by_server.insert(e.run_id.clone(), e);
            }
        }
    }
    let mut text = String::new();
    for e in by_server.into_values().filter(|e| (now - e.at).num_days() < FORGET_AFTER) {
        let mut value = serde_json::to_value(&e)?;
        if let Some(o) = value.as_object_mut() {
            o.insert("schema_version".into(), crate::state::SCHEMA_VERSION.into());
        }
        text.push_str(&serde_json::to_string(&value)?);
        text.push('\n');
    }
    write_atomic(&state.path(FILE), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_counts_the_applications_lookups_only_and_never_across_a_restart() {
        let at = |m: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + m * 60, 0).unwrap();
        let c = |hits, misses, own_hits, m| Counters { hits, misses, own: Lookups::hits(own_hits), at: at(m) };
        let before: Seen = [("a".to_owned(), c(100, 100, 0, 0)), ("b".to_owned(), c(50, 0, 10, 0))].into();
        // a: the application 395 hits, 605 misses, a scan 3,000 hits; b restarted (new run_id).
        let now: Seen = [("a".to_owned(), c(3495, 705, 3000, 15)), ("c".to_owned(), c(5, 5, 0, 15))].into();
        let i = interval(&before, &now);
        assert_eq!(i.lookups, Lookups { hits: 395, misses: 605, commands: 0 });
        assert_eq!((i.measured, i.unmeasured, i.seconds), (1, 1, 900));
        assert_eq!(i.hit_ratio(), Some(0.395));
        assert_eq!(interval(&Seen::new(), &now).hit_ratio(), None);
    }

    #[test]
    fn records_add_up_per_server_and_survive_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        record(&state, "aaa", Lookups { hits: 5, misses: 1, commands: 6 }).unwrap();
        record(&state, "bbb", Lookups::hits(7)).unwrap();
        record(&state, "aaa", Lookups { hits: 2, ..Lookups::default() }).unwrap();
        record(&state, "", Lookups::hits(100)).unwrap();
        let t = totals(&state).unwrap();
        assert_eq!(t["aaa"], Lookups { hits: 7, misses: 1, commands: 6 });
        assert_eq!(total_of(&t, ["aaa", "bbb", "ccc"]), Lookups { hits: 14, misses: 1, commands: 6 });
        compact(&state).unwrap();
        assert_eq!(totals(&state).unwrap(), t);
        assert_eq!(std::fs::read_to_string(state.path(FILE)).unwrap().lines().count(), 2);
    }
}
