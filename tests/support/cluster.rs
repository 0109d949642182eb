//! A real Redis Cluster for one test: three primaries (optionally with a replica each), or any
//! number of primaries with the slots split evenly.
//!
//! Each node's cluster bus port is chosen and set (`cluster-port`) like its client port: by
//! default Redis puts the bus at port + 10000, which a free port above 55535 cannot have.

use std::time::Duration;

use crate::{RedisServer, free_port, wait_until};

/// `redis-server` primaries in cluster mode, slots split evenly (and, from
/// [`RedisCluster::start_with_replicas`], one replica each), killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    replicas: Vec<RedisServer>,
    /// The slots of `nodes[i]`, as the cluster was set up.
    ranges: Vec<(u16, u16)>,
}

/// The slots of `n` primaries split evenly, as `redis-cli --cluster create` splits them (three
/// primaries: 0-5460, 5461-10922, 10923-16383).
fn even_ranges(n: usize) -> Vec<(u16, u16)> {
    let per = 16384.0 / n as f64;
    let mut ranges = Vec::new();
    let mut first = 0u16;
    for i in 0..n {
        let last = if i + 1 == n { 16383 } else { ((per * (i + 1) as f64) - 1.0).round() as u16 };
        ranges.push((first, last));
        first = last + 1;
    }
    ranges
}

/// One cluster node (with `extra` in its configuration) and its bus port.
fn node(extra: &str) -> Option<(RedisServer, u16)> {
    let bus = free_port();
    let server = RedisServer::start_with(&format!(
        "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 2000\n\
         cluster-require-full-coverage yes\ncluster-port {bus}\n{extra}"
    ))?;
    Some((server, bus))
}

fn myid(server: &RedisServer) -> String {
    redis::cmd("CLUSTER").arg("MYID").query(&mut server.connection()).unwrap()
}

/// Whether every node of `nodes` says `cluster_state:ok` and knows `known` nodes.
fn all_ok<'a>(nodes: impl IntoIterator<Item = &'a RedisServer>, known: usize) -> bool {
    let known = format!("cluster_known_nodes:{known}");
    nodes.into_iter().all(|n| {
        let Ok(client) = redis::Client::open(n.url()) else { return false };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else { return false };
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap_or_default();
        info.contains("cluster_state:ok") && info.contains(&known)
    })
}

impl RedisCluster {
    /// Starts and joins the cluster. `None` (test skipped) when redis-server is missing.
    pub fn start() -> Option<Self> {
        Self::start_layout(3, 0, "")
    }

    /// Three primaries and three replicas (`CLUSTER REPLICATE`, one per primary, in sync).
    pub fn start_with_replicas() -> Option<Self> {
        Self::start_layout(3, 3, "")
    }

    /// `n` primaries without replicas, the slots split evenly (four: 0-4095, 4096-8191,
    /// 8192-12287, 12288-16383).
    pub fn start_primaries(n: usize) -> Option<Self> {
        Self::start_layout(n, 0, "")
    }

    /// [`RedisCluster::start_primaries`] with `extra` appended to every node's configuration
    /// (e.g. `enable-debug-command no`, Redis's default, which the kit's servers turn on).
    pub fn start_primaries_with(n: usize, extra: &str) -> Option<Self> {
        Self::start_layout(n, 0, extra)
    }

    fn start_layout(primaries: usize, replicas: usize, extra: &str) -> Option<Self> {
        assert!(primaries > 0 && replicas <= primaries, "at least one primary, and one replica per primary at most");
        let ranges = even_ranges(primaries);
        let mut all = Vec::new();
        for _ in 0..primaries + replicas {
            all.push(node(extra)?);
        }
        for ((node, _), (from, to)) in all.iter().zip(&ranges) {
            let _: () =
                redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(from).arg(to).query(&mut node.connection()).unwrap();
        }
        let mut first = all[0].0.connection();
        for (node, bus) in &all[1..] {
            let _: () =
                redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(node.port()).arg(bus).query(&mut first).unwrap();
        }
        let known = format!("cluster_known_nodes:{}", all.len());
        let met = wait_until(Duration::from_secs(20), || {
            all.iter().all(|(n, _)| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut n.connection()).unwrap_or_default();
                info.contains(&known)
            })
        });
        assert!(met, "the cluster's nodes did not meet");
        let mut all: Vec<RedisServer> = all.into_iter().map(|(n, _)| n).collect();
        let replicas: Vec<RedisServer> = all.split_off(primaries);
        let nodes = all;
        for (replica, primary) in replicas.iter().zip(&nodes) {
            let id = myid(primary);
            let mut conn = replica.connection();
            let replicated = wait_until(Duration::from_secs(10), || {
                redis::cmd("CLUSTER").arg("REPLICATE").arg(&id).query::<()>(&mut conn).is_ok()
            });
            assert!(replicated, "CLUSTER REPLICATE was refused");
        }
        let ready = wait_until(Duration::from_secs(30), || {
            nodes.iter().chain(&replicas).all(|n| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut n.connection()).unwrap_or_default();
                info.contains("cluster_state:ok") && info.contains(&known)
            }) && replicas.iter().all(|r| {
                let info: String = redis::cmd("INFO").arg("replication").query(&mut r.connection()).unwrap_or_default();
                info.contains("master_link_status:up")
            })
        });
        assert!(ready, "the cluster did not come up");
        Some(Self { nodes, replicas, ranges })
    }

    /// The primaries.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The replicas (`replicas()[i]` replicates `nodes()[i]`; none from [`RedisCluster::start`]).
    pub fn replicas(&self) -> &[RedisServer] {
        &self.replicas
    }

    /// The primary serving `slot` (as the cluster was set up).
    pub fn node_for_slot(&self, slot: u16) -> &RedisServer {
        let index = self.ranges.iter().position(|(from, to)| (*from..=*to).contains(&slot)).unwrap();
        &self.nodes[index]
    }

    /// The slots of each primary (`slots()[i]` for `nodes()[i]`), as the cluster was set up.
    pub fn slots(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    /// The node serving `key`'s slot.
    pub fn node_for(&self, key: &str) -> &RedisServer {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut self.nodes[0].connection()).unwrap();
        self.node_for_slot(slot)
    }

    /// Kills primary `index` now (SIGKILL), as a crash would.
    pub fn kill_primary(&mut self, index: usize) {
        self.nodes[index].stop();
    }

    /// Restarts every node, one after the other, each from its own directory with the same
    /// configuration, port, bus port and `nodes.conf` (so it rejoins as the same node with the
    /// same slots), then waits for `cluster_state:ok` everywhere. Each is killed (SIGKILL, and
    /// the kit's servers have `save ""`), so nothing is saved over its dump file on the way
    /// down: each starts from the dump file on disk.
    pub fn restart(&mut self) {
        for node in self.nodes.iter_mut().chain(&mut self.replicas) {
            node.restart();
        }
        let known = self.nodes.len() + self.replicas.len();
        let ok = wait_until(Duration::from_secs(30), || all_ok(self.nodes.iter().chain(&self.replicas), known));
        assert!(ok, "the cluster did not come back after the restart");
    }

    /// Kills replica `index` now (SIGKILL).
    pub fn kill_replica(&mut self, index: usize) {
        self.replicas[index].stop();
    }

    /// Sets `key` on its node with a TTL (0: none) and an idle time.
    pub fn set_aged(&self, key: &str, value: &[u8], ttl_ms: u64, idle_secs: u64) {
        self.node_for(key).set_aged(key, value, ttl_ms, idle_secs);
    }

    /// Every key of every primary, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.nodes.iter().flat_map(RedisServer::keys).collect();
        keys.sort();
        keys
    }
}
