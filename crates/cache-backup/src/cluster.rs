//! A Redis Cluster's layout as a backup needs it: every primary that holds slots, with its node
//! id and slot ranges, failed or not, so the backup tries each and says when it cannot reach
//! one. (cache-core's `cluster_primaries` gives only the addresses; the manifest also records
//! node ids and slots.)

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;

use crate::manifest::SlotRange;

/// One primary of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its node id.
    pub id: String,
    /// Its host (empty when the cluster knows no address for it).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Its flags, e.g. `master` or `master,fail`.
    pub flags: String,
    /// The slot ranges it serves, sorted and merged.
    pub slots: Vec<SlotRange>,
}

impl Node {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

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

/// The primaries with slots in the text of `CLUSTER NODES`
/// (`id ip:port@cport[,hostname] flags master-id ping pong epoch link slot...`), sorted by
/// address. Slots being imported or migrated (`[slot->-id]`) are not counted.
pub fn parse_nodes(text: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = *fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") {
                return None;
            }
            let mut slots: Vec<SlotRange> = fields
                .get(8..)
                .unwrap_or_default()
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            if slots.is_empty() {
                return None;
            }
            slots.sort_unstable();
            let mut merged: Vec<SlotRange> = Vec::new();
            for (a, b) in slots {
                match merged.last_mut() {
                    Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            let address = fields.get(1)?.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some(Node {
                id: (*fields.first()?).to_owned(),
                host: host.trim_matches(['[', ']']).to_owned(),
                port: port.parse().ok()?,
                flags: flags.to_owned(),
                slots: merged,
            })
        })
        .collect();
    nodes.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    nodes
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
