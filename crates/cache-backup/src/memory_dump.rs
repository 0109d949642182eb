//! The memory tier of a backup: every memory of the configured user, as the API returned it,
//! one JSON object per line in `memory-<target>.jsonl.gz`; restored by re-creating memories
//! through the API, verbatim (`infer: false`), skipping texts the user already has.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context as _;
use cache_core::archive::GzFile;
use cache_core::clients::memory::{MemoryClient, Restoring, text_of};
use serde_json::{Value, json};

use crate::redis_dump::Gzip;

/// Writes every memory of the client's user into the new file `path`; returns how many, and the
/// file's SHA-256 and size. A list that may not hold them all (a capped self-hosted answer, a
/// bound reached) is refused: part of the memories is no backup of the tier, and a restore
/// from it would be taken for the whole.
pub async fn export(client: &MemoryClient, path: &Path, gzip: Gzip) -> anyhow::Result<(usize, (String, u64))> {
    let listing = client.list_pages().await?;
    if let Some(why) = &listing.incomplete {
        anyhow::bail!(
            "the memory list may be incomplete ({} memories listed: {why}); not taken, since a backup of part of \
             the memories would restore as if it were all of them",
            listing.memories.len()
        );
    }
    let memories = listing.memories;
    let mut file = GzFile::create(path, gzip.level, gzip.threads)?;
    for memory in &memories {
        let mut line = serde_json::to_string(memory)?;
        line.push('\n');
        file.write_all(line.as_bytes()).with_context(|| format!("writing `{}`", path.display()))?;
    }
    Ok((memories.len(), file.finish()?))
}

/// Reads an export back.
pub fn read(path: &Path) -> anyhow::Result<Vec<Value>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file));
    let mut memories = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading `{}`", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        memories.push(
            serde_json::from_str(&line).with_context(|| format!("`{}` line {}: not JSON", path.display(), i + 1))?,
        );
    }
    Ok(memories)
}

/// What a restore of one target did (or would do).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Memories re-created.
    pub restored: u64,
    /// Memories whose text the user already has.
    pub present: u64,
    /// Memories of another user than the configured one, left out.
    pub foreign: u64,
}

/// Re-creates the memories of `memories` that the client's user does not have (by text), with
/// their categories and metadata (plus `metadata.restored_from`: the original id and creation
/// time). Idempotent: a second restore finds every text present.
pub async fn restore(
    client: &MemoryClient,
    user_id: &str,
    memories: &[Value],
    backup_id: &str,
    dry_run: bool,
) -> anyhow::Result<Restored> {
    let mut texts: HashSet<String> = client.list_all_json().await?.iter().map(|m| text_of(m).to_owned()).collect();
    let mut done = Restored::default();
    let mut adds = Vec::new();
    for memory in memories {
        if memory["user_id"].as_str().is_some_and(|u| u != user_id) {
            done.foreign += 1;
            continue;
        }
        let text = text_of(memory);
        if !texts.insert(text.to_owned()) {
            done.present += 1;
            continue;
        }
        let origin = serde_json::Map::from_iter([("backup".to_owned(), json!(backup_id))]);
        adds.push(Restoring::from_memory(memory, origin));
    }
    if dry_run {
        done.restored = adds.len() as u64;
        return Ok(done);
    }
    let (created, first_error) = client.add_all(adds).await;
    done.restored = created;
    match first_error {
        Some(e) => Err(e.context(format!("{} memories were restored before", done.restored))),
        None => Ok(done),
    }
}
