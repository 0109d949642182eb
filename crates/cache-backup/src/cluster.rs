//! A Redis Cluster's layout as a backup needs it: every primary that holds slots, with its node
//! id and slot ranges, failed or not, so the backup tries each and says when it cannot reach
//! one. (cache-core's `cluster_primaries` gives only the addresses; the manifest also records
//! node ids and slots.)

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;

/// One primary of a cluster (cache-core's parsed `CLUSTER NODES` line).
pub type Node = cache_core::clients::redis::ClusterNode;

/// The primaries holding slots, from `CLUSTER NODES`, when the server behind `conn` is in
/// cluster mode (`cluster_enabled` in `info`); `None` for a standalone server.
pub async fn primaries(
    conn: &mut MultiplexedConnection,
    info: &BTreeMap<String, String>,
) -> redis::RedisResult<Option<Vec<Node>>> {
    if info.get("cluster_enabled").map(String::as_str) != Some("1") {
        return Ok(None);
    }
    let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    Ok(Some(parse_nodes(&text)))
}

/// The primaries with slots in the text of `CLUSTER NODES`, failed or not, sorted by address.
pub fn parse_nodes(text: &str) -> Vec<Node> {
    cache_core::clients::redis::parse_cluster_nodes(text)
        .into_iter()
        .filter(|n| n.is_primary() && !n.slots.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_primaries_with_slots_are_listed_replicas_are_not() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host2 master,fail - 1 1 2 disconnected 5461-10000 10001-10922 [5500->-c3]
c3 127.0.0.1:7003@17003 master - 0 0 3 connected 10923 10924-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 :0@0 master,noaddr - 0 0 0 disconnected
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert_eq!(
            (nodes[0].id.as_str(), nodes[0].addr(), nodes[0].slots.clone()),
            ("a1", "127.0.0.1:7001".into(), vec![(0, 5460)])
        );
        assert_eq!((nodes[1].flags.as_str(), nodes[1].slots.clone()), ("master,fail", vec![(5461, 10922)]));
        assert_eq!(nodes[2].slots, [(10923, 16383)]);
    }
}
