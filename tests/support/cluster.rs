//! A real three-primary Redis Cluster for one test.

use std::time::Duration;

use crate::{RedisServer, wait_until};

/// Three `redis-server` nodes in cluster mode, slots split evenly, killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

const RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

impl RedisCluster {
    /// Starts and joins the cluster. `None` (test skipped) when redis-server is missing.
    pub fn start() -> Option<Self> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(
                "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 2000\ncluster-require-full-coverage yes",
            )?);
        }
        for (node, (from, to)) in nodes.iter().zip(RANGES) {
            let _: () =
                redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(from).arg(to).query(&mut node.connection()).unwrap();
        }
        let mut first = nodes[0].connection();
        for node in &nodes[1..] {
            let _: () = redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(node.port()).query(&mut first).unwrap();
        }
        let ready = wait_until(Duration::from_secs(20), || {
            nodes.iter().all(|n| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut n.connection()).unwrap_or_default();
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
            })
        });
        assert!(ready, "the cluster did not come up");
        Some(Self { nodes })
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node serving `key`'s slot.
    pub fn node_for(&self, key: &str) -> &RedisServer {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut self.nodes[0].connection()).unwrap();
        let index = RANGES.iter().position(|(from, to)| (*from..=*to).contains(&slot)).unwrap();
        &self.nodes[index]
    }

    /// Sets `key` on its node with a TTL (0: none) and an idle time.
    pub fn set_aged(&self, key: &str, value: &[u8], ttl_ms: u64, idle_secs: u64) {
        self.node_for(key).set_aged(key, value, ttl_ms, idle_secs);
    }

    /// Every key of every node, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.nodes.iter().flat_map(RedisServer::keys).collect();
        keys.sort();
        keys
    }
}
