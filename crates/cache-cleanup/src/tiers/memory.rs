//! Memory API (seed 000's Mem0 cleanup): duplicate memories (the same numbers, IDs, names and
//! negations, and text similarity at or above `cleanup.memory_similarity`: see
//! [`super::duplicates`]; the newest kept) and stale ones, within the blast-radius cap, journaled
//! for `undo` and then deleted in batches, only ever within the configured user's memories.

use std::collections::HashMap;

use cache_core::clients::memory::{Memory, MemoryClient};
use cache_core::config::{CleanupSettings, MemoryTarget};
use cache_core::journal::{RunJournal, Scope};
use cache_core::tier::Tier;
use chrono::Utc;

use crate::cap::Cap;
use crate::plan::Mode;
use crate::report::{Action, Item, TargetReport};

/// A memory-API cleanup.
pub struct MemoryJob<'a> {
    /// The target.
    pub target: &'a MemoryTarget,
    /// The user whose memories are cleaned: the scope of every request.
    pub user_id: &'a str,
    /// Cleanup settings.
    pub settings: &'a CleanupSettings,
    /// The mode.
    pub mode: Mode,
    /// A category to restrict to.
    pub category: Option<&'a str>,
    /// Change nothing.
    pub dry_run: bool,
    /// `--force` at a terminal: no blast-radius cap.
    pub cap_lifted: bool,
    /// The run's undo journal, which memories go into before they are deleted.
    pub journal: &'a RunJournal,
}

impl MemoryJob<'_> {
    /// Runs the cleanup of this target.
    pub async fn run(&self) -> TargetReport {
        let mut report = TargetReport::new(Tier::Memory, &self.target.name);
        if self.user_id.trim().is_empty() {
            report
                .errors
                .push("refusing to clean memories without a user scope (set `user_id` or `project_name`)".into());
            return report;
        }
        let client = match MemoryClient::new(self.target, self.user_id) {
            Ok(client) => client,
            Err(e) => {
                report.errors.push(format!("{e:#}"));
                return report;
            }
        };
        // As the API returned them: what the undo journal keeps.
        let listing = match client.list_pages().await {
            Ok(listing) => listing,
            Err(e) => {
                report.unreachable = true;
                report.errors.push(format!("{e:#}"));
                return report;
            }
        };
        // Duplicates judged on part of the list would keep an older copy whose newer one was
        // not seen, and the cap's share would be of a wrong total: judge nothing, delete nothing.
        if let Some(why) = &listing.incomplete {
            report.examined = listing.memories.len() as u64;
            report.errors.push(format!(
                "the memory list is incomplete ({}): no duplicates judged and nothing deleted on a partial list",
                listing.describe()
            ));
            report.notes.push(format!(
                "listed {} in {} pages; incomplete: {why}",
                listing.memories.len(),
                listing.pages
            ));
            return report;
        }
        if listing.pages > 1 {
            report.notes.push(format!("listed {} in {} pages", listing.describe(), listing.pages));
        }
        let listed = listing.memories;
        let mut raw: HashMap<String, serde_json::Value> = HashMap::new();
        let mut memories = Vec::new();
        for value in listed {
            if let Some(memory) = Memory::from_json(&value) {
                raw.insert(memory.id.clone(), value);
                memories.push(memory);
            }
        }
        // Defence in depth: never act on a memory the API says belongs to someone else.
        let (mine, foreign): (Vec<Memory>, Vec<Memory>) =
            memories.into_iter().partition(|m| m.user_id.as_deref().is_none_or(|u| u == self.user_id));
        if !foreign.is_empty() {
            report
                .errors
                .push(format!("the API returned {} memories of other users; they were left alone", foreign.len()));
        }
        // The blast-radius cap: a share of the user's memories when the run starts.
        let mut cap = Cap::new(self.settings, mine.len() as u64, self.cap_lifted);
        let scoped: Vec<Memory> =
            mine.into_iter().filter(|m| self.category.is_none_or(|c| m.categories.iter().any(|mc| mc == c))).collect();
        report.examined = scoped.len() as u64;
        let selected = self.select(&scoped);
        let sample = if self.dry_run { self.settings.dry_run_sample } else { usize::MAX };
        let mut ids: Vec<String> = Vec::new();
        let mut over = 0u64;
        for (memory, reason) in selected {
            if !cap.admit(memory.text.len() as u64) {
                over += 1;
                continue;
            }
            ids.push(memory.id.clone());
            report.select(Item { name: memory.id.clone(), action: Action::Delete, reason, bytes: None }, sample);
        }
        if let Some(hit) = cap.hit.as_mut() {
            if self.dry_run {
                *hit = hit.replacen("stopped", "would stop", 1);
            }
            report.notes.push(format!("{hit} ({over} more selected memories)"));
        }
        report.cap = Some(cap);
        if self.dry_run || ids.is_empty() {
            return report;
        }
        let journal = self.journal;
        let scope = Scope { user_id: Some(self.user_id.to_owned()), ..Scope::default() };
        let mut writer = journal.writer(Tier::Memory, &self.target.name, scope);
        // Each batch is journaled (and fsynced) before its delete request.
        for batch in ids.chunks(self.settings.memory_batch_size.max(1)) {
            let records: Vec<String> = batch.iter().filter_map(|id| raw.get(id)).map(|v| v.to_string()).collect();
            if let Err(e) = writer.append(&records) {
                report.errors.push(format!("{e:#}; the memories were not deleted"));
                break;
            }
            match client.delete(batch, self.settings.memory_batch_size).await {
                Ok(n) => report.removed += n as u64,
                Err(e) => {
                    report.errors.push(format!("{e:#}"));
                    break;
                }
            }
        }
        report.journal = writer.summary();
        if let Some(summary) = &report.journal {
            report.notes.push(format!(
                "{} memories journaled in `{}`: undo with `cache-cleanup undo {}`",
                summary.count,
                summary.file,
                journal.run_id()
            ));
        }
        report
    }

    /// The memories to delete, with reasons: stale ones, then duplicates of newer memories (the
    /// same fact restated, judged by [`crate::tiers::duplicates`]; the newest is kept).
    fn select<'m>(&self, memories: &'m [Memory]) -> Vec<(&'m Memory, String)> {
        let policy = self.mode.policy(self.settings);
        let now = Utc::now();
        let mut selected: Vec<(&Memory, String)> = Vec::new();
        let mut newest_first: Vec<&Memory> = memories.iter().collect();
        newest_first.sort_by_key(|m| std::cmp::Reverse(m.created_at));
        // Kept memories, filed by the words duplicates must share: each memory is compared only
        // with the few kept ones of its key, not with every kept memory.
        let mut kept: crate::tiers::duplicates::DuplicateIndex<&Memory> =
            crate::tiers::duplicates::DuplicateIndex::new(self.settings.memory_similarity);
        for memory in newest_first {
            if let (Some(stale), Some(updated)) = (policy.memory_stale, memory.updated_at) {
                let age = (now - updated).to_std().unwrap_or_default();
                if age >= stale {
                    let days = age.as_secs() / 86400;
                    selected.push((memory, format!("stale: not updated for {days} days")));
                    continue;
                }
            }
            if !policy.memory_duplicates {
                continue;
            }
            let fingerprint = crate::tiers::duplicates::Fingerprint::new(&memory.text);
            if let Some((newer, score)) = kept.find(&fingerprint) {
                selected.push((memory, format!("duplicate of newer `{}` (similarity {score:.2})", newer.id)));
                continue;
            }
            kept.insert(memory, fingerprint);
        }
        selected
    }
}
