//! The Redis tier model: one target's keyspace, whether a standalone server or a Redis Cluster.
//!
//! Tools ask a [`Keyspace`] which keys are the project's ([`Keyspace::owned`]), which are
//! protected ([`Keyspace::is_protected`]: `cleanup.protected` and the target's `protected`, the
//! one rule), which prefix rule a key falls under, and for the servers holding the data
//! ([`Keyspace::primaries`]): the server itself, or every primary of a cluster (each with its
//! own connection and INFO), with the primaries that could not be reached said, never skipped in
//! silence.

use std::collections::BTreeMap;

use crate::clients::redis::Connection;

use crate::clients::redis as client;
use crate::config::{Config, PrefixRule, RedisTarget};
use crate::scan::glob_match;

/// One Redis target as the project sees it.
#[derive(Clone, Debug)]
pub struct Keyspace<'a> {
    /// The target.
    pub target: &'a RedisTarget,
    protected: Vec<&'a str>,
    namespace: String,
}

/// A server holding part (or all) of a keyspace.
pub struct Primary {
    /// `host:port` of a cluster node; `None` for a standalone server.
    pub node: Option<String>,
    /// The target pointed at this server.
    pub target: RedisTarget,
    /// A connection to it.
    pub conn: Connection,
    /// Its `INFO` (empty when refused).
    pub info: BTreeMap<String, String>,
}

/// The servers of a keyspace, as far as they could be reached.
pub struct Primaries {
    /// A Redis Cluster (every primary listed), or one standalone server.
    pub cluster: bool,
    /// The servers reached.
    pub nodes: Vec<Primary>,
    /// Primaries that could not be reached (or listed), in words: what the caller did not see.
    pub missing: Vec<String>,
    /// How many primaries are visited at once (the target's `concurrency`).
    concurrency: usize,
}

impl Primary {
    /// The server's INFO `run_id` (empty when INFO was refused): the toolkit's lookups on it
    /// are recorded against this ([`crate::ledger`]).
    pub fn run_id(&self) -> &str {
        self.info.get("run_id").map_or("", String::as_str)
    }

    /// Records `lookups` the caller caused on this server in the state's ledger. A failure
    /// to record is a warning in the log, never the end of the caller's work.
    pub fn record_lookups(&self, state: &crate::state::StateDir, lookups: crate::ledger::Lookups) {
        if let Err(e) = crate::ledger::record(state, self.run_id(), lookups) {
            tracing::warn!("recording the toolkit's own lookups: {e:#}");
        }
    }
}

impl Primaries {
    /// What was covered, for reports: `standalone`, or `3 of 3 primaries`.
    pub fn coverage(&self) -> String {
        if self.cluster {
            let all = self.nodes.len() + self.missing.len();
            format!("{} of {all} primaries", self.nodes.len())
        } else {
            "standalone".to_owned()
        }
    }

    /// Whether every primary was reached.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// Runs `pass` on every primary reached, at most the target's `concurrency` at once, and
    /// returns the results in the primaries' order (so a report reads the same on every run).
    pub async fn visit<'p, T, F, Fut>(&'p self, pass: F) -> Vec<T>
    where
        F: FnMut(&'p Primary) -> Fut,
        Fut: Future<Output = T>,
    {
        use futures::StreamExt as _;
        futures::stream::iter(self.nodes.iter().map(pass)).buffered(self.concurrency).collect().await
    }
}

/// What a scan of every primary ([`Primaries::scan`]) yields, primary by primary.
pub enum ScanEvent {
    /// A batch of keys from a primary.
    Batch(Vec<crate::scan::KeyInfo>),
    /// A primary's scan ended: complete when `error` is `None`. `scanner` is `None` when the
    /// scan could not start; it holds what the scan learned (refusals, calls, batch size).
    End {
        /// The scanner, once done.
        scanner: Option<Box<crate::scan::Scanner>>,
        /// What stopped the scan early.
        error: Option<redis::RedisError>,
    },
}

impl Primaries {
    /// Scans every primary reached, at most the target's `concurrency` at once (each under
    /// its own call budget: the primaries are different servers), with `options(primary)`:
    /// a stream of `(index of the primary, event)`, batches of different primaries
    /// interleaved, each primary's scan ending with one [`ScanEvent::End`]. With `state`, each
    /// scan's lookups are recorded in its ledger ([`crate::ledger`]).
    pub fn scan<'p>(
        &'p self,
        options: impl Fn(&Primary) -> crate::scan::ScanOptions + 'p,
        state: Option<&'p crate::state::StateDir>,
    ) -> impl futures::Stream<Item = (usize, ScanEvent)> + 'p {
        use futures::StreamExt as _;
        let per_primary = move |(index, node): (usize, &'p Primary)| {
            let opts = options(node);
            let start = async move {
                let scanner = crate::scan::Scanner::new(node.conn.clone(), opts, 0).await;
                scanner.map(|s| match state {
                    Some(state) => s.recording(state, node.run_id()),
                    None => s,
                })
            };
            // Boxed: `flatten_unordered` needs each primary's stream to be `Unpin`.
            Box::pin(futures::stream::once(start).flat_map(|started| {
                futures::stream::unfold(Some(started), |step| async move {
                    let event = match step? {
                        Err(error) => ScanEvent::End { scanner: None, error: Some(error) },
                        Ok(mut scanner) => match scanner.next_batch().await {
                            Ok(Some(batch)) => return Some((ScanEvent::Batch(batch), Some(Ok(scanner)))),
                            Ok(None) => ScanEvent::End { scanner: Some(Box::new(scanner)), error: None },
                            Err(error) => ScanEvent::End { scanner: Some(Box::new(scanner)), error: Some(error) },
                        },
                    };
                    Some((event, None))
                })
            }))
            .map(move |event| (index, event))
        };
        futures::stream::iter(self.nodes.iter().enumerate()).map(per_primary).flatten_unordered(self.concurrency)
    }
}

impl<'a> Keyspace<'a> {
    /// The keyspace of `target` under `config`'s cleanup protection and project namespace.
    pub fn new(config: &'a Config, target: &'a RedisTarget) -> Self {
        let protected = config.cleanup.protected.iter().chain(&target.protected).map(String::as_str).collect();
        Self { target, protected, namespace: config.redis_namespace(target) }
    }

    /// The project's namespace (`<project_name>:` unless configured).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether `key` matches a protected pattern (global or the target's): never touched.
    pub fn is_protected(&self, key: &[u8]) -> bool {
        self.protected.iter().any(|p| glob_match(p.as_bytes(), key))
    }

    /// The prefix rule `key` falls under.
    pub fn prefix(&self, key: &[u8]) -> Option<&'a PrefixRule> {
        self.target.prefixes.iter().find(|r| key.starts_with(r.prefix.as_bytes()))
    }

    /// Whether `key` is the project's: under the namespace or one of the prefixes.
    pub fn owned(&self, key: &[u8]) -> bool {
        key.starts_with(self.namespace.as_bytes()) || self.prefix(key).is_some()
    }

    /// The servers holding the keyspace: the target's server, or every primary of its cluster.
    /// `Err` only when the target itself cannot be reached.
    pub async fn primaries(&self) -> anyhow::Result<Primaries> {
        primaries(self.target).await
    }
}

/// The servers holding `target`'s keyspace: the server itself, or every primary of its
/// cluster. `Err` only when the target itself cannot be reached.
pub async fn primaries(target: &RedisTarget) -> anyhow::Result<Primaries> {
    let mut conn = client::connect(target).await?;
    let info = client::info(&mut conn).await.unwrap_or_default();
    let listed = match client::cluster_primaries(&mut conn, &info).await {
        Ok(None) => {
            let target = target.clone();
            return Ok(Primaries {
                cluster: false,
                nodes: vec![Primary { node: None, target, conn, info }],
                missing: Vec::new(),
                concurrency: 1,
            });
        }
        Ok(Some(listed)) => listed,
        Err(e) => anyhow::bail!("listing the cluster's primaries: {e}"),
    };
    // Several primaries at once (the target's `concurrency`): a cluster's connect timeouts do
    // not add up, and a large cluster is not hit on every node together.
    use futures::StreamExt as _;
    let concurrency = target.concurrency.max(1);
    let reached: Vec<_> = futures::stream::iter(listed.into_iter().map(|node| async move {
        let (host, port) = (node.host, node.port);
        let label = format!("{host}:{port}");
        let reached = async {
            let target = client::node_target(target, &host, port)?;
            let mut conn = client::connect(&target).await?;
            let info = client::info(&mut conn).await.unwrap_or_default();
            anyhow::Ok(Primary { node: Some(label.clone()), target, conn, info })
        };
        reached.await.map_err(|e| format!("primary {label}: {e:#}"))
    }))
    .buffered(concurrency)
    .collect()
    .await;
    let mut nodes = Vec::new();
    let mut missing = Vec::new();
    for result in reached {
        match result {
            Ok(primary) => nodes.push(primary),
            Err(e) => missing.push(e),
        }
    }
    Ok(Primaries { cluster: true, nodes, missing, concurrency })
}

/// A server's INFO figures, typed; or a cluster's, summed over its primaries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// `used_memory`.
    pub used_memory: f64,
    /// `used_memory_peak`.
    pub used_memory_peak: f64,
    /// `used_memory_rss`.
    pub used_memory_rss: f64,
    /// `maxmemory` (0: none).
    pub maxmemory: f64,
    /// `mem_fragmentation_ratio` (a cluster: the worst primary's).
    pub fragmentation: f64,
    /// `connected_clients`.
    pub clients: f64,
    /// `maxclients`.
    pub maxclients: f64,
    /// `blocked_clients`.
    pub blocked_clients: f64,
    /// `keyspace_hits`.
    pub hits: f64,
    /// `keyspace_misses`.
    pub misses: f64,
    /// `evicted_keys`.
    pub evicted: f64,
    /// `expired_keys`.
    pub expired: f64,
    /// `instantaneous_ops_per_sec`.
    pub ops_per_sec: f64,
    /// `total_commands_processed`.
    pub commands: f64,
    /// `rejected_connections`.
    pub rejected: f64,
    /// Keys in every database (`# Keyspace`).
    pub keys: u64,
    /// Which INFO fields the server gave (a hosted server may give few): `(name, value)` pairs
    /// are only meaningful for these.
    pub known: std::collections::BTreeSet<&'static str>,
}

/// `(field, accessor)` of the additive figures.
type Field = (&'static str, fn(&mut Figures) -> &mut f64);

const FIELDS: &[Field] = &[
    ("used_memory", |f| &mut f.used_memory),
    ("used_memory_peak", |f| &mut f.used_memory_peak),
    ("used_memory_rss", |f| &mut f.used_memory_rss),
    ("maxmemory", |f| &mut f.maxmemory),
    ("connected_clients", |f| &mut f.clients),
    ("maxclients", |f| &mut f.maxclients),
    ("blocked_clients", |f| &mut f.blocked_clients),
    ("keyspace_hits", |f| &mut f.hits),
    ("keyspace_misses", |f| &mut f.misses),
    ("evicted_keys", |f| &mut f.evicted),
    ("expired_keys", |f| &mut f.expired),
    ("instantaneous_ops_per_sec", |f| &mut f.ops_per_sec),
    ("total_commands_processed", |f| &mut f.commands),
    ("rejected_connections", |f| &mut f.rejected),
];

impl Figures {
    /// The figures of one server's INFO.
    pub fn of(info: &BTreeMap<String, String>) -> Self {
        let mut f = Self { keys: client::keyspace_keys(info), ..Self::default() };
        for (name, field) in FIELDS {
            if let Some(v) = info.get(*name).and_then(|v| v.parse::<f64>().ok()) {
                *field(&mut f) = v;
                f.known.insert(name);
            }
        }
        if let Some(v) = info.get("mem_fragmentation_ratio").and_then(|v| v.parse::<f64>().ok()) {
            f.fragmentation = v;
            f.known.insert("mem_fragmentation_ratio");
        }
        f
    }

    /// Adds another server's figures (fragmentation: the worse of the two).
    pub fn add(&mut self, other: &Self) {
        let mut theirs = other.clone();
        for (_, field) in FIELDS {
            *field(self) += *field(&mut theirs);
        }
        self.fragmentation = self.fragmentation.max(other.fragmentation);
        self.keys += other.keys;
        self.known.extend(other.known.iter().copied());
    }

    /// `used_memory` of `maxmemory`, when set.
    pub fn memory_share(&self) -> Option<f64> {
        (self.maxmemory > 0.0).then(|| self.used_memory / self.maxmemory)
    }

    /// hits / (hits + misses), when there were lookups.
    pub fn hit_ratio(&self) -> Option<f64> {
        client::hit_ratio((self.hits as u64, self.misses as u64))
    }

    /// The figures the server gave, by INFO name (for reports keyed by INFO names).
    pub fn named(&self) -> BTreeMap<&'static str, f64> {
        let mut copy = self.clone();
        let mut out: BTreeMap<&'static str, f64> =
            FIELDS.iter().filter(|(n, _)| self.known.contains(n)).map(|(n, field)| (*n, *field(&mut copy))).collect();
        if self.known.contains("mem_fragmentation_ratio") {
            out.insert("mem_fragmentation_ratio", self.fragmentation);
        }
        out
    }
}

impl Primaries {
    /// The figures of every primary reached, summed.
    pub fn figures(&self) -> Figures {
        let mut sum = Figures::default();
        for node in &self.nodes {
            sum.add(&Figures::of(&node.info));
        }
        sum
    }

    /// The primary using the largest share of its `maxmemory`: (`host:port` or empty, figures).
    pub fn fullest(&self) -> Option<(String, Figures)> {
        self.nodes
            .iter()
            .map(|n| (n.node.clone().unwrap_or_default(), Figures::of(&n.info)))
            .filter(|(_, f)| f.memory_share().is_some())
            .max_by(|a, b| a.1.memory_share().unwrap_or(0.0).total_cmp(&b.1.memory_share().unwrap_or(0.0)))
    }
}

/// Routes keys to the primary that serves their slot: writes to a cluster go to the right node
/// (a standalone server serves every key).
pub struct Router {
    /// (first slot, last slot, index into `conns`), sorted.
    ranges: Vec<(u16, u16, usize)>,
    conns: Vec<Connection>,
    /// Each connection's server `run_id`, for the toolkit's own commands ([`crate::ledger`]).
    run_ids: Vec<String>,
}

impl Router {
    /// Whether the keys go over a REST API ([`Connection::is_rest`]): text arguments only, so
    /// no DUMP payload can be RESTOREd through it.
    pub fn is_rest(&self) -> bool {
        self.conns.iter().any(Connection::is_rest)
    }

    /// The connection serving `key` (`None`: no primary serves its slot).
    pub fn conn_for(&self, key: &[u8]) -> Option<Connection> {
        if self.ranges.is_empty() {
            return self.conns.first().cloned();
        }
        let slot = key_slot(key);
        let i = self.ranges.partition_point(|(_, last, _)| *last < slot);
        self.ranges.get(i).filter(|(first, _, _)| *first <= slot).map(|(_, _, c)| self.conns[*c].clone())
    }

    /// `keys` grouped by the connection serving them, so each group can go in one pipeline.
    pub fn group<'k, K: AsRef<[u8]>>(&self, keys: &'k [K]) -> Vec<(Connection, Vec<&'k K>)> {
        self.group_by_server(keys).into_iter().map(|(conn, _, keys)| (conn, keys)).collect()
    }

    /// [`Router::group`], with each group's server `run_id`.
    pub fn group_by_server<'k, K: AsRef<[u8]>>(&self, keys: &'k [K]) -> Vec<(Connection, String, Vec<&'k K>)> {
        let mut groups: BTreeMap<usize, Vec<&K>> = BTreeMap::new();
        for key in keys {
            let index = if self.ranges.is_empty() {
                Some(0)
            } else {
                let slot = key_slot(key.as_ref());
                let i = self.ranges.partition_point(|(_, last, _)| *last < slot);
                self.ranges.get(i).filter(|(first, _, _)| *first <= slot).map(|(_, _, c)| *c)
            };
            if let Some(index) = index {
                groups.entry(index).or_default().push(key);
            }
        }
        groups
            .into_iter()
            .map(|(i, keys)| (self.conns[i].clone(), self.run_ids.get(i).cloned().unwrap_or_default(), keys))
            .collect()
    }
}

/// The cluster slot of a key: CRC16 (XMODEM) of the key, or of its `{hash tag}`, mod 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|b| *b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|b| *b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Slot ranges per primary (`host:port` → ranges), from `CLUSTER SLOTS`.
async fn slot_ranges(conn: &mut Connection) -> redis::RedisResult<Vec<(u16, u16, String)>> {
    let reply: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut out = Vec::new();
    for entry in reply {
        let redis::Value::Array(fields) = entry else { continue };
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(i)) => u16::try_from(*i).ok(),
            _ => None,
        };
        let (Some(first), Some(last)) = (int(fields.first()), int(fields.get(1))) else { continue };
        let Some(redis::Value::Array(primary)) = fields.get(2) else { continue };
        let host = match primary.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(port) = int(primary.get(1)) else { continue };
        out.push((first, last, format!("{host}:{port}")));
    }
    out.sort();
    Ok(out)
}

impl Primaries {
    /// A router over these primaries (slots from `CLUSTER SLOTS` of the first one).
    pub async fn router(&self) -> anyhow::Result<Router> {
        let conns: Vec<Connection> = self.nodes.iter().map(|n| n.conn.clone()).collect();
        let run_ids: Vec<String> = self.nodes.iter().map(|n| n.run_id().to_owned()).collect();
        if !self.cluster {
            return Ok(Router { ranges: Vec::new(), conns, run_ids });
        }
        let mut first = conns.first().cloned().ok_or_else(|| anyhow::anyhow!("no primary reached"))?;
        let mut ranges = Vec::new();
        for (from, to, node) in slot_ranges(&mut first).await? {
            if let Some(i) = self.nodes.iter().position(|n| n.node.as_deref() == Some(node.as_str())) {
                ranges.push((from, to, i));
            }
        }
        Ok(Router { ranges, conns, run_ids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_typed_and_add_up() {
        let info = |used: &str, max: &str, frag: &str, keys: &str| {
            client::parse_info(&format!(
                "used_memory:{used}\r\nmaxmemory:{max}\r\nmem_fragmentation_ratio:{frag}\r\nkeyspace_hits:30\r\n\
                 keyspace_misses:10\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n"
            ))
        };
        let mut sum = Figures::of(&info("100", "1000", "1.2", "5"));
        sum.add(&Figures::of(&info("900", "1000", "1.5", "7")));
        assert_eq!((sum.used_memory, sum.maxmemory, sum.keys, sum.fragmentation), (1000.0, 2000.0, 12, 1.5));
        assert_eq!(sum.memory_share(), Some(0.5));
        assert_eq!(sum.hit_ratio(), Some(0.75));
        assert_eq!(sum.named().get("used_memory"), Some(&1000.0));
        assert!(!sum.named().contains_key("connected_clients"), "a figure the server did not give is not invented");
    }

    #[test]
    fn key_slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn one_rule_for_protection_ownership_and_prefixes() {
        let text = "project_name = \"app\"\n[cleanup]\nprotected = [\"lock:*\"]\n\
                    [[redis]]\nname = \"main\"\nurl = \"redis://127.0.0.1\"\nprotected = [\"*:session:*\"]\n\
                    prefixes = [{ prefix = \"search:\", ttl = \"30m\" }]\n";
        let config = crate::config::parse(text, "c.toml").unwrap();
        let keyspace = Keyspace::new(&config, &config.redis[0]);
        assert!(keyspace.is_protected(b"lock:x") && keyspace.is_protected(b"app:session:1"));
        assert!(!keyspace.is_protected(b"app:k"));
        assert!(keyspace.owned(b"app:k") && keyspace.owned(b"search:q"));
        assert!(!keyspace.owned(b"zombie:1") && !keyspace.owned(b"ap"));
        assert_eq!(keyspace.prefix(b"search:q").map(|r| r.prefix.as_str()), Some("search:"));
    }
}
