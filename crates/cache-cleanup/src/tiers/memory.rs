//! Memory API (seed 000's Mem0 cleanup): duplicate memories (text similarity at or above
//! `cleanup.memory_similarity`, the newest kept) and stale ones, deleted in batches, only ever
//! within the configured user's memories.

use std::collections::BTreeSet;

use cache_core::clients::memory::{Memory, MemoryClient};
use cache_core::config::{CleanupSettings, MemoryTarget};
use cache_core::tier::Tier;
use chrono::Utc;

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
        let memories = match client.list_all().await {
            Ok(memories) => memories,
            Err(e) => {
                report.unreachable = true;
                report.errors.push(format!("{e:#}"));
                return report;
            }
        };
        // Defence in depth: never act on a memory the API says belongs to someone else.
        let (mine, foreign): (Vec<Memory>, Vec<Memory>) =
            memories.into_iter().partition(|m| m.user_id.as_deref().is_none_or(|u| u == self.user_id));
        if !foreign.is_empty() {
            report
                .errors
                .push(format!("the API returned {} memories of other users; they were left alone", foreign.len()));
        }
        let scoped: Vec<Memory> =
            mine.into_iter().filter(|m| self.category.is_none_or(|c| m.categories.iter().any(|mc| mc == c))).collect();
        report.examined = scoped.len() as u64;
        let selected = self.select(&scoped);
        let sample = if self.dry_run { self.settings.dry_run_sample } else { usize::MAX };
        let ids: Vec<String> = selected.iter().map(|(m, _)| m.id.clone()).collect();
        for (memory, reason) in selected {
            report.select(Item { name: memory.id.clone(), action: Action::Delete, reason, bytes: None }, sample);
        }
        if self.dry_run || ids.is_empty() {
            return report;
        }
        match client.delete(&ids, self.settings.memory_batch_size).await {
            Ok(n) => report.removed = n as u64,
            Err(e) => report.errors.push(format!("{e:#}")),
        }
        report
    }

    /// The memories to delete, with reasons: stale ones, then duplicates of newer memories.
    fn select<'m>(&self, memories: &'m [Memory]) -> Vec<(&'m Memory, String)> {
        let policy = self.mode.policy(self.settings);
        let now = Utc::now();
        let mut selected: Vec<(&Memory, String)> = Vec::new();
        let mut newest_first: Vec<&Memory> = memories.iter().collect();
        newest_first.sort_by_key(|m| std::cmp::Reverse(m.created_at));
        let mut kept: Vec<(&Memory, BTreeSet<String>)> = Vec::new();
        for memory in newest_first {
            if let (Some(stale), Some(updated)) = (policy.memory_stale, memory.updated_at) {
                let age = (now - updated).to_std().unwrap_or_default();
                if age >= stale {
                    let days = age.as_secs() / 86400;
                    selected.push((memory, format!("stale: not updated for {days} days")));
                    continue;
                }
            }
            let words = words(&memory.text);
            if policy.memory_duplicates
                && let Some((newer, score)) = kept
                    .iter()
                    .map(|(m, w)| (m, similarity(w, &words)))
                    .find(|(_, score)| *score >= self.settings.memory_similarity)
            {
                selected.push((memory, format!("duplicate of newer `{}` (similarity {score:.2})", newer.id)));
                continue;
            }
            kept.push((memory, words));
        }
        selected
    }
}

/// The words of a text: lowercased runs of letters and digits.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Sørensen–Dice coefficient of two word sets: 2|A∩B| / (|A|+|B|). Words, not characters:
/// "order 1234 shipped" and "order 5678 shipped" differ in what matters, so they are not
/// duplicates, while a restatement with other case and punctuation is.
fn similarity(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let shared = a.intersection(b).count();
    2.0 * shared as f64 / (a.len() + b.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::{similarity, words};

    #[test]
    fn word_similarity() {
        let s = |a: &str, b: &str| similarity(&words(a), &words(b));
        assert_eq!(s("The user prefers green tea.", "the user prefers GREEN tea"), 1.0);
        assert!(s("fact number 10 about topic 790", "fact number 1 about topic 919") < 0.7);
        assert!(s("order 1234 shipped to Lisbon", "order 5678 shipped to Lisbon") < 0.85);
        let near = s(
            "the user prefers green tea in the morning and coffee at night",
            "the user prefers green tea in the morning and coffee at noon",
        );
        assert!(near >= 0.85, "{near}");
    }
}
