//! `restore --replace-dump` of a Redis Cluster backup: each shard's RDB goes in place of the
//! dump file of the primary that serves exactly the shard's slots, when the cluster has the
//! backup's shape (as many primaries as shards, each with the slots of one shard).
//!
//! Everything is checked before any file is written: the shape, that no primary has replicas,
//! each primary as a standalone `--replace-dump` checks its server ([`DumpSlot::check`]), and
//! that every RDB loads. Then every new dump is written beside its dump file, and only when all
//! are written are they moved in, with every primary's automatic saves off so that none writes
//! its old data over its new dump. A primary loads its new dump on `DEBUG RELOAD` (and gets its
//! saves back), or, where DEBUG is disabled (the default), when it is restarted: the result
//! lists those restarts, and their saves stay off until then.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use cache_core::clients::redis::{self as client, ClusterNode};
use cache_core::config::RedisTarget;
use cache_core::messages::{MAX_LINE, clip};

use crate::manifest::{File, format_ranges};
use crate::redis_dump::{DumpSlot, Staged};

/// What replacing a cluster's dump files did.
#[derive(Debug, Default)]
pub struct Replaced {
    /// One line per primary: its dump file, where the old one is kept, whether it loaded.
    pub done: Vec<String>,
    /// What is left to do by hand: one restart per primary that refused `DEBUG RELOAD`.
    pub actions: Vec<String>,
}

/// How a shard is named in messages: the start of its node id, else its node.
fn shard_name(file: &File) -> String {
    match (&file.node_id, &file.node) {
        (Some(id), _) if id.chars().count() > 8 => format!("{}…", id.chars().take(8).collect::<String>()),
        (Some(id), _) => id.clone(),
        (None, Some(node)) => node.clone(),
        (None, None) => file.path.clone(),
    }
}

/// Pairs each shard file with the one primary serving exactly its slots, or says how the
/// cluster differs from the backup (one message per difference).
pub fn match_shape<'f, 'p>(
    shards: &[&'f File],
    primaries: &'p [ClusterNode],
) -> Result<Vec<(&'f File, &'p ClusterNode)>, Vec<String>> {
    if shards.len() != primaries.len() {
        return Err(vec![format!("backup has {} shards, the cluster {} primaries", shards.len(), primaries.len())]);
    }
    let mut pairs = Vec::new();
    let mut differences = Vec::new();
    for shard in shards {
        let slots = shard.slots.as_deref().unwrap_or_default();
        match primaries.iter().find(|p| p.slots == slots) {
            Some(primary) => pairs.push((*shard, primary)),
            None => differences.push(clip(
                &format!(
                    "shard {} ({} when backed up) slots {} match no primary",
                    shard_name(shard),
                    shard.node.as_deref().unwrap_or("?"),
                    format_ranges(slots)
                ),
                MAX_LINE,
            )),
        }
    }
    for primary in primaries {
        let matched: Vec<&&File> = pairs.iter().filter(|(_, p)| p.id == primary.id).map(|(shard, _)| shard).collect();
        match matched.len() {
            0 => differences.push(clip(
                &format!("primary {} slots {} match no shard", primary.addr(), format_ranges(&primary.slots)),
                MAX_LINE,
            )),
            1 => {}
            _ => differences.push(format!(
                "shards {} all match primary {}",
                matched.iter().map(|f| shard_name(f)).collect::<Vec<_>>().join(", "),
                primary.addr()
            )),
        }
    }
    if differences.is_empty() { Ok(pairs) } else { Err(differences) }
}

/// Replaces the dump file of every primary of the cluster `target` with its shard's RDB from
/// `dir` (see the module's documentation). With `dry_run`, checks everything and writes nothing.
pub async fn replace(
    target: &RedisTarget,
    dir: &Path,
    shards: &[&File],
    timeout: Duration,
    dry_run: bool,
) -> anyhow::Result<Replaced> {
    const INSTEAD: &str = "restore key by key instead (without --replace-dump)";
    if let Some(logical) = shards.iter().find(|f| f.content != "redis-rdb") {
        bail!(
            "--replace-dump needs an RDB per shard, and shard {} holds a logical export: {INSTEAD}",
            shard_name(logical)
        );
    }
    let mut conn = client::connect(target).await?;
    let info = client::info(&mut conn).await.context("INFO")?;
    if info.get("cluster_enabled").map(String::as_str) != Some("1") {
        bail!("backup has {} shards, and the target is a standalone server: {INSTEAD}", shards.len());
    }
    let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await.context("CLUSTER NODES")?;
    let primaries = client::parse_cluster_primaries(&text);
    // Long lists go one item a line: each line of an error is clipped when printed.
    let lines = |items: &[String]| items.iter().map(|i| format!("\n  {i}")).collect::<String>();
    let pairs = match_shape(shards, &primaries).map_err(|differences| {
        anyhow::anyhow!(
            "--replace-dump needs the cluster in the backup's shape, and it differs: {INSTEAD}{}",
            lines(&differences)
        )
    })?;
    // A replica keeps the old data (DEBUG RELOAD is not replicated), and a primary down for a
    // restart would be failed over to it: the new dump would be lost.
    let nodes = client::parse_cluster_nodes(&text);
    let replicated: Vec<String> = primaries
        .iter()
        .filter_map(|p| {
            let replicas: Vec<String> =
                nodes.iter().filter(|n| n.master_id.as_deref() == Some(p.id.as_str())).map(ClusterNode::addr).collect();
            (!replicas.is_empty())
                .then(|| clip(&format!("{} has replicas {}", p.addr(), replicas.join(", ")), MAX_LINE))
        })
        .collect();
    if !replicated.is_empty() {
        bail!(
            "--replace-dump needs primaries without replicas (a replica keeps the old data, and a primary restarted \
             to load its dump may be failed over to one): {INSTEAD}{}",
            lines(&replicated)
        );
    }
    // Every primary passes the checks of a standalone --replace-dump, or nothing is written.
    let checked = futures::future::join_all(pairs.iter().map(|(_, primary)| async move {
        let node = client::node_target(target, &primary.host, primary.port)?;
        DumpSlot::check(&node).await
    }))
    .await;
    let mut slots = Vec::new();
    let mut refused = Vec::new();
    for ((_, primary), result) in pairs.iter().zip(checked) {
        match result {
            Ok(slot) => slots.push(slot),
            Err(e) => refused.push(format!("{}: {e:#}", primary.addr())),
        }
    }
    if !refused.is_empty() {
        bail!(
            "no dump file was replaced, since not every primary can take one:{}",
            lines(&cache_core::messages::condense(&refused))
        );
    }
    // Every RDB loads, as for any restore.
    for (shard, primary) in &pairs {
        let loaded = crate::scratch::Scratch::load(&dir.join(&shard.path), timeout).await;
        drop(loaded.with_context(|| format!("shard {} (for {})", shard_name(shard), primary.addr()))?);
    }
    if dry_run {
        let done = pairs
            .iter()
            .zip(&slots)
            .map(|((shard, primary), slot)| {
                format!("{}: would put `{}` in place of `{}`", primary.addr(), shard.path, slot.dump().display())
            })
            .collect();
        return Ok(Replaced { done, actions: Vec::new() });
    }
    // No save on any primary may write its old data over its new dump: saves are off on every
    // one, and every new dump is written beside its dump file, before any is moved in. On any
    // failure, the saves come back and what was written goes (dropping a `Staged` removes it).
    let mut staged: Vec<Staged> = Vec::new();
    let mut failed = None;
    for ((shard, primary), slot) in pairs.iter().zip(&mut slots) {
        let step = async {
            slot.hold_saves(timeout).await?;
            tokio::task::block_in_place(|| slot.stage(&dir.join(&shard.path)))
        };
        match step.await {
            Ok(written) => staged.push(written),
            Err(e) => {
                failed = Some(e.context(format!("{}: no dump file was replaced", primary.addr())));
                break;
            }
        }
    }
    if let Some(e) = failed {
        drop(staged);
        for slot in &mut slots {
            let _ = slot.resume_saves().await;
        }
        return Err(e);
    }
    let mut kept_names = Vec::new();
    let mut placed = Vec::new();
    for ((_, primary), staged) in pairs.iter().zip(staged) {
        match staged.put_in_place() {
            Ok(kept) => {
                kept_names.push(kept.and_then(|k| k.file_name().map(|n| n.to_string_lossy().into_owned())));
                placed.push(primary.addr());
            }
            Err(e) => {
                // The later ones (dropped here) are not put in place: their saves come back.
                for slot in &mut slots[placed.len()..] {
                    let _ = slot.resume_saves().await;
                }
                let so_far = if placed.is_empty() { "none".to_owned() } else { placed.join(", ") };
                return Err(e.context(format!(
                    "{}: the new dump could not be put in place; replaced (not loaded, saves off): {so_far}",
                    primary.addr()
                )));
            }
        }
    }
    let mut out = Replaced::default();
    for (((_, primary), slot), kept) in pairs.iter().zip(&mut slots).zip(kept_names) {
        let addr = primary.addr();
        let dump = slot.dump().display().to_string();
        // The old dump is kept in the same directory: its name is enough.
        let kept = kept.map(|k| format!(", the old one kept as `{k}`")).unwrap_or_default();
        match slot.reload().await {
            Ok(()) => {
                out.done.push(format!("{addr}: `{dump}` replaced and reloaded{kept}"));
                if let Err(e) = slot.resume_saves().await {
                    out.actions.push(clip(&format!("{addr}: {e:#}"), MAX_LINE));
                }
            }
            Err(e) => {
                // The reply's first sentence: the rest is advice on enable-debug-command.
                let text = e.to_string();
                let why = clip(text.split(". ").next().unwrap_or(&text), 80);
                out.done.push(format!("{addr}: `{dump}` replaced{kept}; not loaded (DEBUG RELOAD refused: {why})"));
                out.actions.push(slot.restart_advice(&addr));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, node: &str, slots: &[(u16, u16)]) -> File {
        File {
            path: format!("redis-main.{node}.rdb.gz"),
            content: "redis-rdb".into(),
            bytes: 1,
            sha256: "0".repeat(64),
            node: Some(node.into()),
            node_id: Some(id.into()),
            slots: Some(slots.to_vec()),
            encrypted: None,
        }
    }

    fn primary(id: &str, port: u16, slots: &[(u16, u16)]) -> ClusterNode {
        ClusterNode {
            id: id.into(),
            host: "127.0.0.1".into(),
            port,
            flags: "master".into(),
            master_id: None,
            slots: slots.to_vec(),
        }
    }

    #[test]
    fn shards_pair_with_the_primaries_serving_exactly_their_slots() {
        let files = [
            shard("aaaaaaaaaaaa", "127.0.0.1:7000", &[(0, 5460)]),
            shard("bbbbbbbbbbbb", "127.0.0.1:7001", &[(5461, 10922)]),
            shard("cccccccccccc", "127.0.0.1:7002", &[(10923, 16383)]),
        ];
        let shards: Vec<&File> = files.iter().collect();
        // Another cluster of the same shape (new node ids, other ports) pairs by slots.
        let same = [
            primary("z", 8002, &[(10923, 16383)]),
            primary("x", 8000, &[(0, 5460)]),
            primary("y", 8001, &[(5461, 10922)]),
        ];
        let pairs = match_shape(&shards, &same).unwrap();
        let ports: Vec<(u16, u16)> = pairs.iter().map(|(f, p)| (f.slots.as_ref().unwrap()[0].0, p.port)).collect();
        assert_eq!(ports, [(0, 8000), (5461, 8001), (10923, 8002)]);

        let four = [
            primary("w", 8000, &[(0, 4095)]),
            primary("x", 8001, &[(4096, 8191)]),
            primary("y", 8002, &[(8192, 12287)]),
            primary("z", 8003, &[(12288, 16383)]),
        ];
        assert_eq!(match_shape(&shards, &four).unwrap_err(), ["backup has 3 shards, the cluster 4 primaries"]);

        let moved = [
            primary("x", 8000, &[(0, 5459)]),
            primary("y", 8001, &[(5460, 10922)]),
            primary("z", 8002, &[(10923, 16383)]),
        ];
        assert_eq!(
            match_shape(&shards, &moved).unwrap_err(),
            [
                "shard aaaaaaaa… (127.0.0.1:7000 when backed up) slots 0-5460 match no primary",
                "shard bbbbbbbb… (127.0.0.1:7001 when backed up) slots 5461-10922 match no primary",
                "primary 127.0.0.1:8000 slots 0-5459 match no shard",
                "primary 127.0.0.1:8001 slots 5460-10922 match no shard",
            ]
        );

        // Two shards claiming the same slots (a damaged manifest) never share a primary.
        let twice = [files[0].clone(), files[0].clone(), files[2].clone()];
        let shards: Vec<&File> = twice.iter().collect();
        let differences = match_shape(&shards, &same).unwrap_err();
        assert!(differences.contains(&"shards aaaaaaaa…, aaaaaaaa… all match primary 127.0.0.1:8000".to_owned()));
        assert!(differences.contains(&"primary 127.0.0.1:8001 slots 5461-10922 match no shard".to_owned()));
    }
}
