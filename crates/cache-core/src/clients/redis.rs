//! Redis connections (`redis://`, `rediss://` TLS, `redis+unix://`, and Upstash's REST API)
//! with explicit timeouts.
//!
//! The redis crate gives async connections a 500 ms response timeout and a 1 s connection
//! timeout by default. Both are set here from the target's configuration instead, so a slow
//! but legitimate command is not cut off and a dead server is not waited on for long.
//!
//! Every tool holds a [`Connection`]: a multiplexed RESP connection or a REST one
//! ([`super::upstash`]); both take `redis::cmd`, pipelines and scripts alike.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, ConnectionAddr};

use super::tls::Trust;
use super::upstash::RestConnection;

use crate::config::RedisTarget;
use crate::error::Unreachable;

/// A connection to a Redis target, over RESP or Upstash's REST API. Cheap to clone: clones
/// share the connection.
#[derive(Clone)]
pub enum Connection {
    /// The Redis protocol, multiplexed.
    Resp(MultiplexedConnection),
    /// Upstash's REST API.
    Rest(RestConnection),
}

impl Connection {
    /// Whether commands go over the REST API: text arguments only, no replication stream, no
    /// dump file to read.
    pub fn is_rest(&self) -> bool {
        matches!(self, Self::Rest(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Resp(c) => c.req_packed_command(cmd),
            Self::Rest(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Resp(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Rest(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Resp(c) => c.get_db(),
            Self::Rest(c) => c.get_db(),
        }
    }
}

/// Opens a connection to `target`, or fails within its connect timeout (plus one response
/// timeout for the handshake) with [`Unreachable`]. A cluster target with seed `urls` falls
/// back to them, in order, when its `url` is unreachable (after a failover the node named
/// first may be gone): any node serves to read the topology. A REST target is checked with a
/// PING, so that a wrong endpoint or token fails here as a RESP handshake would.
pub async fn connect(target: &RedisTarget) -> anyhow::Result<Connection> {
    if target.is_rest() {
        return connect_rest(target).await.map(Connection::Rest);
    }
    let first = match connect_url(target, &target.url).await {
        Ok(connection) => return Ok(Connection::Resp(connection)),
        Err(e) => e,
    };
    for seed in &target.urls {
        if let Ok(connection) = connect_url(target, seed).await {
            tracing::warn!("redis/{}: {} is unreachable ({first:#}); using the seed {seed}", target.name, target.url);
            return Ok(Connection::Resp(connection));
        }
    }
    Err(first)
}

async fn connect_rest(target: &RedisTarget) -> anyhow::Result<RestConnection> {
    let unreachable = |message: String| Unreachable {
        tier: "redis".into(),
        target: target.name.clone(),
        message: format!("{message} ({})", target.url),
    };
    let (endpoint, token) =
        target.rest_endpoint().ok_or_else(|| unreachable("a REST target needs its token".into()))?;
    let trust = Trust { ca_file: target.ca_file.clone(), accept_invalid: false };
    let client = super::http::client_with(&trust).await.map_err(|e| unreachable(format!("{e:#}")))?;
    let mut connection = RestConnection::new(client, endpoint, token, target.timeout);
    let budget = target.connect_timeout + target.timeout;
    let ping = redis::cmd("PING");
    match tokio::time::timeout(budget, ping.query_async::<String>(&mut connection)).await {
        Ok(Ok(_)) => Ok(connection),
        Ok(Err(e)) => Err(unreachable(e.to_string()).into()),
        Err(_) => Err(unreachable(format!("no answer within {}", humantime::format_duration(budget))).into()),
    }
}

/// The seeds of `target` (`url` and `urls`) that do not answer; empty when it has no seed
/// `urls`. For reports that must say a seed is lost while the others serve.
pub async fn lost_seeds(target: &RedisTarget) -> Vec<String> {
    if target.urls.is_empty() {
        return Vec::new();
    }
    // All at once: a blackholed seed costs one connect timeout, not one each.
    let seeds: Vec<&crate::redact::SafeUrl> = std::iter::once(&target.url).chain(&target.urls).collect();
    let answers = futures::future::join_all(seeds.iter().map(|url| connect_url(target, url))).await;
    seeds.iter().zip(answers).filter(|(_, a)| a.is_err()).map(|(url, _)| url.to_string()).collect()
}

async fn connect_url(target: &RedisTarget, url: &crate::redact::SafeUrl) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(url.expose())
        .with_context(|| format!("invalid redis URL for target `{}`: {}", target.name, target.url))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(target.connect_timeout))
        .set_response_timeout(Some(target.timeout));
    let budget = target.connect_timeout + target.timeout;
    let unreachable = |message: String| Unreachable {
        tier: "redis".into(),
        target: target.name.clone(),
        message: format!("{message} ({url})"),
    };
    let connecting = async {
        match client.get_connection_info().addr() {
            ConnectionAddr::TcpTls { host, port, insecure, .. } => {
                let trust = Trust { ca_file: target.ca_file.clone(), accept_invalid: *insecure };
                connect_tls(host, *port, &trust, client.get_connection_info().redis_settings(), config, target).await
            }
            _ => client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| e.to_string()),
        }
    };
    match tokio::time::timeout(budget, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(unreachable(e).into()),
        Err(_) => Err(unreachable(format!("no connection within {}", humantime::format_duration(budget))).into()),
    }
}

/// A `rediss://` connection through the process's TLS connector for `trust`
/// ([`super::tls::connector`]). The redis crate would build a TLS context (parsing the system
/// CA bundle) for every connection, on the runtime's thread; here it is built once, on a
/// blocking thread. TCP, TLS and the handshake (AUTH, SELECT...) share the connect timeout.
async fn connect_tls(
    host: &str,
    port: u16,
    trust: &Trust,
    settings: &redis::RedisConnectionInfo,
    config: AsyncConnectionConfig,
    target: &RedisTarget,
) -> Result<MultiplexedConnection, String> {
    use tokio_postgres::tls::TlsConnect as _;
    let connector = super::tls::connector(trust).await.map_err(|e| format!("{e:#}"))?;
    let open = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        // tokio-native-tls's stream, as the PostgreSQL client already uses it: any async
        // stream serves the redis crate.
        let stream = postgres_native_tls::TlsConnector::new(connector, host)
            .connect(tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (connection, driver) =
            MultiplexedConnection::new_with_config(settings, stream, config).await.map_err(|e| e.to_string())?;
        // Ends once every clone of the connection is dropped.
        tokio::spawn(driver);
        Ok(connection)
    };
    match tokio::time::timeout(target.connect_timeout, open).await {
        Ok(result) => result,
        Err(_) => Err(format!("no connection within {}", humantime::format_duration(target.connect_timeout))),
    }
}

/// How the connections to `target` verify the server, for each of its seeds that uses TLS
/// (`rediss://`); for callers that build the connectors before timing anything
/// ([`super::tls::prepare`]).
pub fn trusts(target: &RedisTarget) -> Vec<Trust> {
    if target.is_rest() {
        return vec![Trust { ca_file: target.ca_file.clone(), accept_invalid: false }];
    }
    let mut trusts: Vec<Trust> = std::iter::once(&target.url)
        .chain(&target.urls)
        .filter_map(|url| redis::IntoConnectionInfo::into_connection_info(url.expose()).ok())
        .filter_map(|info| match info.addr() {
            ConnectionAddr::TcpTls { insecure, .. } => {
                Some(Trust { ca_file: target.ca_file.clone(), accept_invalid: *insecure })
            }
            _ => None,
        })
        .collect();
    trusts.dedup();
    trusts
}

/// Runs `INFO` (all default sections) and parses it into field → value.
pub async fn info(connection: &mut Connection) -> redis::RedisResult<BTreeMap<String, String>> {
    let text: String = redis::cmd("INFO").query_async(connection).await?;
    Ok(parse_info(&text))
}

/// Parses the text of `INFO` into field → value, skipping section headers.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Keys in every database, from the `# Keyspace` lines of `info` (`db0:keys=12,expires=3,...`).
pub fn keyspace_keys(info: &BTreeMap<String, String>) -> u64 {
    info.iter()
        .filter(|(k, _)| k.strip_prefix("db").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
        .filter_map(|(_, v)| v.split(',').find_map(|kv| kv.strip_prefix("keys=")?.parse::<u64>().ok()))
        .sum()
}

/// hits / (hits + misses), when there were lookups.
pub fn hit_ratio((hits, misses): (u64, u64)) -> Option<f64> {
    (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64)
}

/// Whether a Redis error means the server refuses the command (hosted Redis, ACLs,
/// `rename-command`) rather than that the connection failed.
pub fn is_refused(error: &redis::RedisError) -> bool {
    if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
        return false;
    }
    let text = error.to_string().to_ascii_lowercase();
    ["unknown command", "noperm", "not allowed", "unsupported", "disabled", "no permissions"]
        .iter()
        .any(|needle| text.contains(needle))
        || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
}

/// The primaries of a Redis Cluster holding slots (failed or not), from `CLUSTER NODES`;
/// `None` when the server is not in cluster mode (`cluster_enabled` in `info`).
pub async fn cluster_primaries(
    connection: &mut Connection,
    info: &BTreeMap<String, String>,
) -> redis::RedisResult<Option<Vec<ClusterNode>>> {
    if info.get("cluster_enabled").map(String::as_str) != Some("1") {
        return Ok(None);
    }
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(connection).await?;
    Ok(Some(parse_cluster_primaries(&nodes)))
}

/// One node of a Redis Cluster, from a line of `CLUSTER NODES`
/// (`id ip:port@cport[,hostname] flags master-id ping pong epoch link slot...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its node id.
    pub id: String,
    /// Its host (empty when the cluster knows no address for it).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Its flags, e.g. `master`, `myself,master`, `slave`, `master,fail`.
    pub flags: String,
    /// The primary it replicates (`None` for a primary).
    pub master_id: Option<String>,
    /// The slot ranges it serves, sorted and merged; slots being imported or migrated
    /// (`[slot->-id]`) are not counted.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A primary (whether or not it serves slots).
    pub fn is_primary(&self) -> bool {
        self.flags.split(',').any(|f| f == "master")
    }

    /// Flagged failed, or suspected (`fail?`).
    pub fn failed(&self) -> bool {
        self.flags.split(',').any(|f| f == "fail" || f == "fail?")
    }
}

/// Every node in the text of `CLUSTER NODES`, sorted by address.
pub fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    let mut nodes: Vec<ClusterNode> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let mut slots: Vec<(u16, u16)> = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            slots.sort_unstable();
            let mut merged: Vec<(u16, u16)> = Vec::new();
            for (a, b) in slots {
                match merged.last_mut() {
                    Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            let address = fields[1].split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some(ClusterNode {
                id: fields[0].to_owned(),
                host: host.trim_matches(['[', ']']).to_owned(),
                port: port.parse().ok()?,
                flags: fields[2].to_owned(),
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots: merged,
            })
        })
        .collect();
    nodes.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    nodes
}

/// Primaries in the text of `CLUSTER NODES`, skipping those without slots. A failed primary
/// that still owns slots is listed: its slots are lost until a failover, and a caller that
/// cannot reach it must say so, not skip it.
pub fn parse_cluster_primaries(nodes: &str) -> Vec<ClusterNode> {
    parse_cluster_nodes(nodes).into_iter().filter(|n| n.is_primary() && !n.slots.is_empty()).collect()
}

/// `target` pointed at one node (`host:port`), with the same scheme, credentials and timeouts.
pub fn node_target(target: &RedisTarget, host: &str, port: u16) -> anyhow::Result<RedisTarget> {
    let mut url = target.url.url().clone();
    url.set_host(Some(host)).map_err(|e| anyhow::anyhow!("cluster node `{host}`: {e}"))?;
    url.set_port(Some(port)).map_err(|()| anyhow::anyhow!("cluster node port {port}"))?;
    url.set_path("/0");
    let mut node = target.clone();
    node.url = crate::redact::SafeUrl::parse(url.as_str())?;
    node.name = format!("{}@{host}:{port}", target.name);
    // This node and no other: falling back to a seed would serve another shard's keys (or the
    // same shard twice) in place of a primary that is down.
    node.urls.clear();
    Ok(node)
}

/// Milliseconds in a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_parsing_keeps_serving_primaries() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 127.0.0.1:7005@17005 master - 0 0 5 connected
";
        // The failed c3 still owns its slots: listed, so that not reaching it is reported.
        let addrs: Vec<String> = parse_cluster_primaries(nodes).iter().map(ClusterNode::addr).collect();
        assert_eq!(addrs, ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]);
    }

    #[test]
    fn cluster_nodes_parsing_merges_slots_and_skips_migrations() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host2 master,fail - 1 1 2 disconnected 5461-10000 10001-10922 [5500->-c3]
c3 127.0.0.1:7003@17003 master - 0 0 3 connected 10923 10924-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 :0@0 master,noaddr - 0 0 0 disconnected
";
        let nodes = parse_cluster_primaries(text);
        assert_eq!(nodes.len(), 3);
        assert_eq!(
            (nodes[0].id.as_str(), nodes[0].addr(), nodes[0].slots.clone()),
            ("a1", "127.0.0.1:7001".into(), vec![(0, 5460)])
        );
        assert_eq!((nodes[1].flags.as_str(), nodes[1].slots.clone()), ("master,fail", vec![(5461, 10922)]));
        assert!(nodes[1].failed());
        assert_eq!(nodes[2].slots, [(10923, 16383)]);
        let all = parse_cluster_nodes(text);
        assert_eq!(all.iter().find(|n| n.id == "d4").and_then(|n| n.master_id.as_deref()), Some("a1"));
    }

    #[test]
    fn info_parsing_skips_headers() {
        let info = parse_info("# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\n\r\n# Stats\r\nkeyspace_hits:5\r\n");
        assert_eq!(info["used_memory"], "1024");
        assert_eq!(info["keyspace_hits"], "5");
        assert_eq!(info.len(), 3);
        assert_eq!(hit_ratio((3, 1)), Some(0.75));
        assert_eq!(hit_ratio((0, 0)), None);
        let keyspace =
            parse_info("# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=0\r\ndb5:keys=3,expires=0\r\ndbx:keys=9\r\n");
        assert_eq!(keyspace_keys(&keyspace), 15);
    }
}
