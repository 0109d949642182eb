//! A real three-primary Redis Cluster for one test, optionally with a replica per primary.
//!
//! Each node's cluster bus port is chosen and set (`cluster-port`) like its client port: by
//! default Redis puts the bus at port + 10000, which a free port above 55535 cannot have.

use std::time::Duration;

use crate::{RedisServer, free_port, wait_until};

/// Three `redis-server` primaries in cluster mode, slots split evenly (and, from
/// [`RedisCluster::start_with_replicas`], one replica each), killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    replicas: Vec<RedisServer>,
}

const RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

/// One cluster node and its bus port.
fn node() -> Option<(RedisServer, u16)> {
    let bus = free_port();
    let server = RedisServer::start_with(&format!(
        "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 2000\n\
         cluster-require-full-coverage yes\ncluster-port {bus}"
    ))?;
    Some((server, bus))
}

fn myid(server: &RedisServer) -> String {
    redis::cmd("CLUSTER").arg("MYID").query(&mut server.connection()).unwrap()
}

impl RedisCluster {
    /// Starts and joins the cluster. `None` (test skipped) when redis-server is missing.
    pub fn start() -> Option<Self> {
        Self::start_n(0)
    }

    /// Three primaries and three replicas (`CLUSTER REPLICATE`, one per primary, in sync).
    pub fn start_with_replicas() -> Option<Self> {
        Self::start_n(3)
    }

    fn start_n(replicas: usize) -> Option<Self> {
        let mut all = Vec::new();
        for _ in 0..3 + replicas {
            all.push(node()?);
        }
        for ((node, _), (from, to)) in all.iter().zip(RANGES) {
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
        let replicas: Vec<RedisServer> = all.split_off(3);
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
        Some(Self { nodes, replicas })
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
        let index = RANGES.iter().position(|(from, to)| (*from..=*to).contains(&slot)).unwrap();
        &self.nodes[index]
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
