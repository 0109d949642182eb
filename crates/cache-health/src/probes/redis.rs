//! Redis: connect, PING, a SET/GET/DEL round trip on a health key with a TTL, then INFO
//! (memory against maxmemory, clients against maxclients, hit ratio). Servers that refuse INFO
//! (hosted Redis) are reported with that fact and stay healthy. The latency is the PING on the
//! open connection; connecting is reported apart (`connect_ms`).

use std::time::Instant;

use cache_core::alerting::Metric;
use cache_core::clients::redis as client;
use cache_core::config::{HealthSettings, RedisTarget};
use cache_core::keyspace::Figures;
use cache_core::ledger::{self, Counters, Lookups, Seen};
use cache_core::output::bytes;
use cache_core::state::StateDir;
use cache_core::tier::Tier;
use redis::AsyncCommands as _;

use super::Timer;
use crate::report::{Status, TargetReport, judge, round3};

/// TTL of the health key, seconds: it disappears even if the DEL never arrives.
const HEALTH_KEY_TTL: u64 = 60;

/// What the hit ratio of an interval is measured with: the state (the toolkit's own lookups,
/// `cache_core::ledger`) and the counters the previous check saw on this target's servers.
#[derive(Clone, Copy)]
pub struct Lookback<'a> {
    /// The state directory.
    pub state: &'a StateDir,
    /// The previous check's counters of this target.
    pub before: &'a Seen,
}

/// Probes one Redis target.
pub async fn probe(
    target: &RedisTarget,
    settings: &HealthSettings,
    lookback: Lookback<'_>,
    mut timer: Timer<'_>,
) -> TargetReport {
    let mut report = TargetReport::new(Tier::Redis, &target.name);
    report.endpoint = Some(target.url.to_string());
    let connect_start = Instant::now();
    let mut connection = match client::connect(target).await {
        Ok(connection) => connection,
        Err(e) => {
            report.fail("connect", format!("{e:#}"));
            report.recommendations.push(format!(
                "{}: Redis is unreachable; check that redis-server runs and that the URL, password and TLS setting are right",
                report.id()
            ));
            return report;
        }
    };

    // Connecting (TCP, TLS, AUTH, SELECT) is reported apart; the latency is one PING on the
    // connection now open, timed apart from the rest of the check: the wire round trip.
    let connected = connect_start.elapsed();
    let (pong, round_trip) = timer.time(redis::cmd("PING").query_async::<String>(&mut connection)).await;
    let round_trip = match pong {
        Ok(pong) => {
            if pong == "PONG" {
                let perf = report.perf("ping", round3(client::ms(round_trip)), "ms").range(0.0, None);
                report.check("ping", Status::Healthy, "PONG", Some(perf));
            } else {
                report.fail("ping", format!("unexpected reply to PING: {pong}"));
            }
            round_trip
        }
        Err(e) => {
            report.fail("ping", format!("PING failed: {e}"));
            report.connected(connected);
            return report;
        }
    };

    let lost = client::lost_seeds(target).await;
    if !lost.is_empty() {
        report.check(
            "seeds",
            Status::Degraded,
            format!("seed nodes unreachable: {}; served through the others", lost.join(", ")),
            None,
        );
    }
    let own = write_round_trip(&mut connection, &target.name, &mut report).await;
    info(target, &mut connection, &mut report, settings, lookback, own).await;
    report.connected(connected);
    report.latency(round_trip, target.latency_warn.unwrap_or(settings.latency.redis));
    report
}

/// Returns the keyspace lookups it caused (the GET), which are the toolkit's.
async fn write_round_trip(
    connection: &mut cache_core::clients::redis::Connection,
    target: &str,
    report: &mut TargetReport,
) -> Lookups {
    // Unique per host, process and target: several targets may point at one server, and
    // several hosts may check the same server at the same moment.
    let key = format!("cache-toolkit:health:{}:{}:{target}", cache_core::system::hostname(), std::process::id());
    let value = format!("{}", chrono::Utc::now().timestamp_millis());
    let set: redis::RedisResult<()> = connection.set_ex(&key, &value, HEALTH_KEY_TTL).await;
    match set {
        Ok(()) => {}
        Err(e) if e.to_string().contains("READONLY") => {
            report.check("write", Status::Healthy, "read-only replica: write test skipped", None);
            return Lookups::default();
        }
        Err(e) if e.redirect_node().is_some() => {
            report.check(
                "write",
                Status::Healthy,
                "cluster node: the health key's slot is served by another node",
                None,
            );
            return Lookups::default();
        }
        Err(e) if client::is_refused(&e) => {
            report.check("write", Status::Degraded, format!("SET refused: {e}"), None);
            report.recommendations.push(format!(
                "{}: the server refuses writes to the health key ({e}); grant SET/GET/DEL on `cache-toolkit:*`",
                report.id()
            ));
            return Lookups::default();
        }
        Err(e) => {
            report.fail("write", format!("SET failed: {e}"));
            return Lookups::default();
        }
    }
    let read: redis::RedisResult<Option<String>> = connection.get(&key).await;
    let own = match &read {
        Ok(Some(_)) => Lookups::hits(1),
        Ok(None) => Lookups { misses: 1, ..Lookups::default() },
        Err(_) => Lookups::default(),
    };
    let deleted: redis::RedisResult<i64> = connection.del(&key).await;
    match (read, deleted) {
        (Ok(Some(got)), Ok(_)) if got == value => {
            report.check("write", Status::Healthy, "SET/GET/DEL round trip", None);
        }
        (Err(e), _) | (_, Err(e)) => report.fail("write", format!("GET/DEL failed: {e}")),
        (Ok(got), Ok(_)) => report.fail("write", format!("read back {got:?} instead of the value written")),
    }
    own
}

async fn info(
    target: &RedisTarget,
    connection: &mut cache_core::clients::redis::Connection,
    report: &mut TargetReport,
    settings: &HealthSettings,
    lookback: Lookback<'_>,
    own: Lookups,
) {
    let info = match client::info(connection).await {
        Ok(info) => info,
        Err(e) if client::is_refused(&e) => {
            report.check("info", Status::Healthy, "INFO not supported on this tier", None);
            report.headline = "INFO not supported on this tier".into();
            return;
        }
        Err(e) => {
            report.fail("info", format!("INFO failed: {e}"));
            return;
        }
    };
    // Typed figures: the server's own, or a cluster's summed over every primary.
    let mut fullest = None;
    // The health key's GET is the toolkit's lookup, on the server this connection reaches.
    let seed_run_id = info.get("run_id").cloned().unwrap_or_default();
    if let Err(e) = ledger::record(lookback.state, &seed_run_id, own) {
        tracing::warn!("recording the toolkit's own lookups: {e:#}");
    }
    let mut servers = vec![server_counters(&info)];
    let figures = if info.get("cluster_enabled").map(String::as_str) == Some("1") {
        cluster(connection, report).await;
        match summed(target, report).await {
            Some((summed, full, counters)) => {
                fullest = full;
                servers = counters;
                summed
            }
            None => Figures::of(&info),
        }
    } else {
        Figures::of(&info)
    };
    for key in ["redis_version", "role", "maxmemory_policy"] {
        if let Some(v) = info.get(key) {
            report.metric(key, v.clone());
        }
    }
    for (key, value) in figures.named() {
        report.metric(key, value);
    }
    let keys = figures.keys;
    report.metric("keys", keys);
    report.observe(Metric::Keys, keys as f64);
    let known = |name: &str| figures.known.contains(name);
    if known("used_memory") {
        report.observe(Metric::UsedMemory, figures.used_memory);
    }
    if known("mem_fragmentation_ratio") {
        report.observe(Metric::Fragmentation, figures.fragmentation);
    }
    if known("evicted_keys") {
        report.observe(Metric::EvictedKeys, figures.evicted);
    }

    let used = figures.used_memory;
    let mut headline = vec![
        format!("v{}", info.get("redis_version").map_or("?", String::as_str)),
        format!("{} used", bytes(used as u64)),
        format!("{keys} keys"),
    ];
    // On a cluster maxmemory is per primary: the fullest one is judged.
    let memory = match fullest {
        Some((node, used, max)) => Some((used, max, format!(" on the fullest primary {node}"))),
        None => figures.memory_share().map(|_| (used, figures.maxmemory, String::new())),
    };
    if let Some((used, max, _)) = &memory {
        report.metric("memory_usage", round3(used / max));
        report.observe(Metric::MemoryUsage, used / max);
    }
    match memory {
        Some((used, max, on)) => {
            let pct = used * 100.0 / max;
            let status = judge(pct, settings.redis_memory_percent);
            let perf = report.perf("memory", round3(pct), "%").percent(settings.redis_memory_percent);
            report.check(
                "memory",
                status,
                format!("{} of {} ({pct:.1}%){on}", bytes(used as u64), bytes(max as u64)),
                Some(perf),
            );
            if status != Status::Healthy {
                report.recommendations.push(format!(
                    "{}: memory at {pct:.1}% of maxmemory; expire or evict idle keys, or raise maxmemory",
                    report.id()
                ));
            }
        }
        None => {
            let perf = report.perf("memory_used", used, "B").range(0.0, None);
            report.check(
                "memory",
                Status::Healthy,
                format!("{} used, no maxmemory set", bytes(used as u64)),
                Some(perf),
            );
        }
    }
    if known("connected_clients") && figures.maxclients > 0.0 {
        let (clients, max) = (figures.clients, figures.maxclients);
        report.observe(Metric::ClientsUsage, clients / max);
        let pct = clients * 100.0 / max;
        let status = judge(pct, settings.redis_clients_percent);
        let perf = report.perf("clients", clients, "").range(0.0, Some(max));
        report.check("clients", status, format!("{clients} of {max} clients ({pct:.1}%)"), Some(perf));
        headline.push(format!("{clients} clients"));
    }
    // The applications' hit ratio since the last check: counter increases less the toolkit's
    // own lookups, per server (never INFO's since-start ratio, which the toolkit's scans
    // inflate and which hides today's traffic under months of history).
    let totals = ledger::totals(lookback.state).unwrap_or_else(|e| {
        tracing::warn!("reading the toolkit's own lookups: {e:#}");
        Default::default()
    });
    let now = chrono::Utc::now();
    let seen: Seen = servers
        .into_iter()
        .flatten()
        .map(|(run_id, hits, misses)| {
            let own = totals.get(&run_id).copied().unwrap_or_default();
            (run_id, Counters { hits, misses, own, at: now })
        })
        .collect();
    let interval = ledger::interval(lookback.before, &seen);
    report.seen = seen;
    let lookups = interval.lookups.hits + interval.lookups.misses;
    let Some(ratio) = interval.hit_ratio() else {
        let why = if interval.measured == 0 && lookback.before.is_empty() {
            "unknown until the next check: the first check has no interval to measure".to_owned()
        } else if interval.measured == 0 {
            "unknown: the server restarted since the last check".to_owned()
        } else {
            format!("no lookups by the applications in the last {} s", interval.seconds)
        };
        report.check("hit_ratio", Status::Healthy, why, None);
        report.headline = headline.join(", ");
        return;
    };
    report.metric("hit_ratio", round3(ratio));
    report.metric("hit_ratio_interval_seconds", interval.seconds);
    report.observe(Metric::HitRatio, ratio);
    headline.push(format!("hit ratio {:.1}%", ratio * 100.0));
    let judged = lookups >= settings.hit_ratio_min_lookups;
    let status = if judged && ratio < settings.hit_ratio_min { Status::Degraded } else { Status::Healthy };
    let mut perf = report.perf("hit_ratio", round3(ratio * 100.0), "%").range(0.0, Some(100.0));
    if judged {
        perf = perf.floor(settings.hit_ratio_min * 100.0);
    }
    let of = format!("{:.1}% of the applications' {lookups} lookups in the last {} s", ratio * 100.0, interval.seconds);
    let summary = if judged {
        format!("{of} (minimum {:.0}%)", settings.hit_ratio_min * 100.0)
    } else {
        format!("{of} (too few to judge)")
    };
    report.check("hit_ratio", status, summary, Some(perf));
    if status == Status::Degraded {
        report.recommendations.push(format!(
            "{}: hit ratio {:.1}% is under {:.0}%; review TTLs and warm the hottest keys",
            report.id(),
            ratio * 100.0,
            settings.hit_ratio_min * 100.0
        ));
    }
    report.headline = headline.join(", ");
}

/// A cluster's INFO summed over every primary (keys, memory, lookups...), and its fullest
/// primary (`host:port`, used, maxmemory). Primaries that cannot be reached are a warning: their
/// figures are missing.
async fn summed(
    target: &RedisTarget,
    report: &mut TargetReport,
) -> Option<(Figures, Option<(String, f64, f64)>, Vec<Option<(String, u64, u64)>>)> {
    let primaries = match cache_core::keyspace::primaries(target).await {
        Ok(p) => p,
        Err(e) => {
            report.check("primaries", Status::Degraded, format!("the primaries could not be listed: {e:#}"), None);
            return None;
        }
    };
    primaries.nodes.first()?;
    let summed = primaries.figures();
    let fullest = primaries.fullest().map(|(node, f)| (node, f.used_memory, f.maxmemory));
    report.metric("primaries", primaries.nodes.len() as u64);
    if primaries.complete() {
        report.check("primaries", Status::Healthy, format!("{}: figures summed over them", primaries.coverage()), None);
    } else {
        report.check(
            "primaries",
            Status::Degraded,
            format!("{}; not reached: {}", primaries.coverage(), primaries.missing.join("; ")),
            None,
        );
    }
    let counters = primaries.nodes.iter().map(|n| server_counters(&n.info)).collect();
    Some((summed, fullest, counters))
}

/// A server's `run_id`, `keyspace_hits` and `keyspace_misses`, when INFO gave them.
fn server_counters(info: &std::collections::BTreeMap<String, String>) -> Option<(String, u64, u64)> {
    let num = |k: &str| info.get(k).and_then(|v| v.parse::<u64>().ok());
    Some((info.get("run_id")?.clone(), num("keyspace_hits")?, num("keyspace_misses")?))
}

/// A cluster node: the cluster's state and slot coverage, from `CLUSTER INFO`.
async fn cluster(connection: &mut cache_core::clients::redis::Connection, report: &mut TargetReport) {
    let text: redis::RedisResult<String> = redis::cmd("CLUSTER").arg("INFO").query_async(connection).await;
    let Ok(text) = text else {
        report.check("cluster", Status::Healthy, "CLUSTER INFO not supported on this tier", None);
        return;
    };
    let info = client::parse_info(&text);
    let state = info.get("cluster_state").map_or("unknown", String::as_str);
    let assigned = info.get("cluster_slots_assigned").map_or("?", String::as_str);
    let failing = info.get("cluster_slots_fail").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    report.metric("cluster_state", state.to_owned());
    let summary = format!("cluster_state {state}, {assigned} of 16384 slots assigned, {failing} failing");
    if let Ok(nodes) = redis::cmd("CLUSTER").arg("NODES").query_async::<String>(connection).await {
        redundancy(&nodes, report);
    }
    if state == "ok" {
        report.check("cluster", Status::Healthy, summary, None);
    } else {
        report.check("cluster", Status::Failed, summary, None);
        report.recommendations.push(format!(
            "{}: the cluster is `{state}`; see CLUSTER NODES for failed primaries and unassigned slots",
            report.id()
        ));
    }
}

/// Failed nodes, and primaries serving slots with no healthy replica, from `CLUSTER NODES`
/// (`id addr flags master-id ping pong epoch link slots...`): each a warning, since the
/// cluster still serves every slot but one more failure loses data or slots.
fn redundancy(nodes: &str, report: &mut TargetReport) {
    let nodes = client::parse_cluster_nodes(nodes);
    let failed: Vec<String> = nodes.iter().filter(|n| n.failed()).map(client::ClusterNode::addr).collect();
    let lonely: Vec<String> = nodes
        .iter()
        .filter(|p| p.is_primary() && !p.failed() && !p.slots.is_empty())
        .filter(|p| !nodes.iter().any(|r| r.master_id.as_deref() == Some(p.id.as_str()) && !r.failed()))
        .map(client::ClusterNode::addr)
        .collect();
    let replicas = nodes.iter().filter(|n| n.master_id.is_some() && !n.failed()).count();
    report.metric("cluster_replicas", replicas as u64);
    if failed.is_empty() && lonely.is_empty() {
        report.check("redundancy", Status::Healthy, format!("every primary has a replica ({replicas} replicas)"), None);
        return;
    }
    let mut parts = Vec::new();
    if !failed.is_empty() {
        parts.push(format!("failed nodes: {}", failed.join(", ")));
    }
    if !lonely.is_empty() {
        parts.push(format!("primaries without a healthy replica: {}", lonely.join(", ")));
    }
    report.check("redundancy", Status::Degraded, parts.join("; "), None);
    report.recommendations.push(format!(
        "{}: {}; one more failure loses data or slots: replace the failed nodes or add replicas",
        report.id(),
        parts.join("; ")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_nodes_and_primaries_without_replicas_are_warnings() {
        let nodes = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b1 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
                     c1 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383\n\
                     a2 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n\
                     b2 127.0.0.1:7004@17004 slave b1 0 0 2 connected\n\
                     c2 127.0.0.1:7005@17005 slave,fail c1 0 0 3 disconnected\n";
        let mut report = TargetReport::new(Tier::Redis, "main");
        redundancy(nodes, &mut report);
        let check = report.checks.iter().find(|c| c.name == "redundancy").unwrap();
        assert_eq!(check.status, Status::Degraded);
        assert!(check.summary.contains("failed nodes: 127.0.0.1:7005"), "{}", check.summary);
        assert!(check.summary.contains("without a healthy replica: 127.0.0.1:7002"), "{}", check.summary);
        let mut report = TargetReport::new(Tier::Redis, "main");
        redundancy(&nodes.replace("slave,fail", "slave").replace("disconnected", "connected"), &mut report);
        assert_eq!(report.checks.iter().find(|c| c.name == "redundancy").unwrap().status, Status::Healthy);
    }
}
