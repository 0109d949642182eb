//! The manifest of a backup: cache-core's [`archive::Manifest`] plus what a Redis Cluster
//! needs. Each shard file carries its node (`host:port`), node id and slot ranges; each cluster
//! source lists the primaries the cluster had when the backup was taken; and the sources (or
//! shards) that failed are recorded, so a partial backup says so.
//!
//! Standalone servers leave the cluster fields out, so older manifests read as they are.

use std::collections::BTreeSet;

use cache_core::archive;

/// Number of slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// An inclusive range of cluster slots, `[first, last]`.
pub type SlotRange = (u16, u16);

/// One file of a backup (cache-core's type: a shard file carries its node, node id and slots).
pub type File = archive::ManifestFile;
/// One primary of a cluster when the backup was taken.
pub type Shard = archive::ManifestShard;
/// Where a backed-up dataset came from (a cluster lists its shards).
pub type Source = archive::ManifestSource;
/// A source, or one shard, that could not be backed up.
pub type Failed = archive::ManifestFailure;
/// The manifest of one backup.
pub type Manifest = archive::Manifest;

/// What a Redis Cluster adds to reading a manifest.
pub trait ClusterLayout {
    /// The Redis files of `target`: its one dump, or one per cluster shard.
    fn redis_files(&self, target: &str) -> Vec<&File>;
    /// What makes a cluster backup incomplete: a primary of the cluster without its file, a
    /// shard that failed, slots that no shard file covers. Empty for standalone sources.
    fn cluster_problems(&self) -> Vec<String>;
}

impl ClusterLayout for Manifest {
    fn redis_files(&self, target: &str) -> Vec<&File> {
        self.files
            .iter()
            .filter(|f| {
                let base = match &f.node {
                    None => format!("redis-{target}"),
                    Some(node) => shard_base(target, node),
                };
                f.content.starts_with("redis-")
                    && (f.path == format!("{base}.rdb.gz") || f.path == format!("{base}.logical.gz"))
            })
            .collect()
    }

    fn cluster_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for source in self.sources.iter().filter(|s| s.tier == "redis") {
            let files = self.redis_files(&source.target);
            let shard_files: Vec<&&File> = files.iter().filter(|f| f.node.is_some()).collect();
            let Some(shards) = &source.shards else {
                if !shard_files.is_empty() {
                    problems.push(format!(
                        "redis/{}: the manifest has shard files but no cluster layout for them",
                        source.target
                    ));
                }
                continue;
            };
            for shard in shards {
                if !shard_files.iter().any(|f| f.node.as_deref() == Some(shard.node.as_str())) {
                    let why = self
                        .failed
                        .iter()
                        .find(|f| f.target == source.target && f.node.as_deref() == Some(shard.node.as_str()))
                        .map(|f| format!(": it failed at backup time ({})", f.error))
                        .unwrap_or_default();
                    problems.push(format!(
                        "redis/{}: shard {} (node id {}, slots {}) is missing from the backup{why}",
                        source.target,
                        shard.node,
                        shard.node_id,
                        format_ranges(&shard.slots)
                    ));
                }
            }
            let covered = shard_files.iter().flat_map(|f| f.slots.iter().flatten().copied());
            let missing = uncovered(covered);
            if !missing.is_empty() {
                let count: u32 = missing.iter().map(|(a, b)| u32::from(*b) - u32::from(*a) + 1).sum();
                problems.push(format!(
                    "redis/{}: {count} of {SLOTS} slots are in no shard file ({}): the shards cover {} of {} primaries",
                    source.target,
                    format_ranges(&missing),
                    shard_files.len(),
                    shards.len().max(shard_files.len()),
                ));
            }
        }
        problems
    }
}

/// The file name (without `.rdb.gz` or `.logical.gz`) of `target`'s shard taken from `node`.
pub fn shard_base(target: &str, node: &str) -> String {
    let slug: String =
        node.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect();
    format!("redis-{target}.{slug}")
}

/// The slots of `0..SLOTS` in none of `ranges`, as sorted ranges.
pub fn uncovered(ranges: impl IntoIterator<Item = SlotRange>) -> Vec<SlotRange> {
    let mut sorted: BTreeSet<SlotRange> = ranges.into_iter().filter(|(a, b)| a <= b).collect();
    let mut missing = Vec::new();
    let mut next: u32 = 0;
    for (first, last) in std::mem::take(&mut sorted) {
        if u32::from(first) > next {
            missing.push((next as u16, first - 1));
        }
        next = next.max(u32::from(last) + 1);
    }
    if next < u32::from(SLOTS) {
        missing.push((next as u16, SLOTS - 1));
    }
    missing
}

/// `0-5460, 5461-10922`: ranges for people.
pub fn format_ranges(ranges: &[SlotRange]) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_slots() {
        assert_eq!(uncovered([(0, 5460), (5461, 10922), (10923, 16383)]), []);
        assert_eq!(uncovered([(10923, 16383), (0, 5460)]), [(5461, 10922)]);
        assert_eq!(uncovered([]), [(0, 16383)]);
        assert_eq!(uncovered([(0, 100), (50, 200), (202, 16383)]), [(201, 201)]);
        assert_eq!(uncovered([(1, 16382)]), [(0, 0), (16383, 16383)]);
        assert_eq!(format_ranges(&[(0, 0), (5, 9)]), "0, 5-9");
    }

    fn manifest() -> Manifest {
        let shard = |node: &str, id: &str, slots: SlotRange| Shard {
            node: node.into(),
            node_id: id.into(),
            slots: vec![slots],
        };
        let file = |node: &str, id: &str, slots: SlotRange| File {
            path: format!("{}.rdb.gz", shard_base("main", node)),
            content: "redis-rdb".into(),
            bytes: 1,
            sha256: "0".repeat(64),
            node: Some(node.into()),
            node_id: Some(id.into()),
            slots: Some(vec![slots]),
            encrypted: None,
        };
        let layout = [
            ("127.0.0.1:7000", "a", (0, 5460)),
            ("127.0.0.1:7001", "b", (5461, 10922)),
            ("h:7002", "c", (10923, 16383)),
        ];
        Manifest {
            schema_version: 1,
            id: "x".into(),
            created_at: chrono::Utc::now(),
            host: "h".into(),
            tool_version: "0".into(),
            sources: vec![Source {
                tier: "redis".into(),
                target: "main".into(),
                endpoint: "redis://h".into(),
                server_version: None,
                method: "bgsave".into(),
                shards: Some(layout.iter().map(|(n, i, s)| shard(n, i, *s)).collect()),
                figures: None,
            }],
            files: layout.iter().map(|(n, i, s)| file(n, i, *s)).collect(),
            failed: vec![],
            configured: vec![],
        }
    }

    #[test]
    fn a_cluster_backup_needs_every_shard_and_every_slot() {
        let full = manifest();
        assert_eq!(full.cluster_problems(), Vec::<String>::new());
        assert_eq!(full.redis_files("main").len(), 3);
        assert_eq!(full.files[0].path, "redis-main.127.0.0.1-7000.rdb.gz");
        let mut lacking = full.clone();
        lacking.files.remove(1);
        let problems = lacking.cluster_problems().join("\n");
        assert!(problems.contains("shard 127.0.0.1:7001 (node id b, slots 5461-10922) is missing"), "{problems}");
        assert!(problems.contains("5462 of 16384 slots are in no shard file (5461-10922)"), "{problems}");
        // Without its layout, the coverage still fails.
        lacking.sources[0].shards.as_mut().unwrap().remove(1);
        assert!(lacking.cluster_problems().join("\n").contains("5461-10922"));
        // A standalone manifest of old reads as it was, with no problem.
        let old = r#"{"schema_version":1,"id":"x","created_at":"2026-01-01T00:00:00Z","host":"h","tool_version":"0",
            "sources":[{"tier":"redis","target":"main","endpoint":"e","server_version":null,"method":"bgsave"}],
            "files":[{"path":"redis-main.rdb.gz","content":"redis-rdb","bytes":1,"sha256":"0"}]}"#;
        let old: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!(old.cluster_problems(), Vec::<String>::new());
        assert_eq!(old.redis_files("main").len(), 1);
        assert!(!serde_json::to_string(&old).unwrap().contains("node"));
    }
}
