//! What a cleanup did, per tier and target, and how it is shown.

use cache_core::output::{Printer, bytes};
use cache_core::tier::Tier;
use serde::Serialize;

use crate::plan::{Decision, Mode};

/// Characters of an item's name shown in text (the JSON has all of it).
const SHOWN_NAME: usize = 200;

/// What happens to an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Removed (a key, a row, a memory, a file, an old rotation).
    Delete,
    /// Given a TTL.
    Expire,
    /// Rotated (and compressed).
    Rotate,
    /// Only reported.
    Report,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Expire => "expire",
            Action::Rotate => "rotate",
            Action::Report => "report",
        }
    }
}

/// One selected item, with the reason.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// The key, row key, memory id or path.
    pub name: String,
    /// What happens to it.
    pub action: Action,
    /// Why.
    pub reason: String,
    /// Its size, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// The result for one target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// The tier.
    pub tier: Tier,
    /// The target's name.
    pub target: String,
    /// Items looked at.
    pub examined: u64,
    /// Items selected for an action (deletion, TTL, rotation).
    pub selected: u64,
    /// Items removed (0 in a dry run).
    pub removed: u64,
    /// Keys given a TTL (0 in a dry run).
    pub expired: u64,
    /// Logs rotated (0 in a dry run).
    pub rotated: u64,
    /// Bytes freed, or that would be freed in a dry run (estimated where noted).
    pub bytes_freed: u64,
    /// Items only reported (orphans, oversized keys kept by this mode...).
    pub reported: u64,
    /// Items skipped because a protected pattern matched.
    pub protected: u64,
    /// Redis keys outside the project's namespace and prefixes: never touched.
    #[serde(skip_serializing_if = "is_zero")]
    pub foreign: u64,
    /// Selected items: all of them, or a sample in a dry run (see `items_total`).
    pub items: Vec<Item>,
    /// Things worth knowing (facts the server refused, thresholds used...).
    pub notes: Vec<String>,
    /// Errors; the run goes on with the other items and targets.
    pub errors: Vec<String>,
    /// The target could not be reached (or was lost).
    pub unreachable: bool,
    /// The blast-radius cap of this target, and whether it stopped the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<crate::cap::Cap>,
    /// What went into the undo journal before it was deleted (memories, live rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<cache_core::journal::Summary>,
}

impl TargetReport {
    /// An empty report.
    pub fn new(tier: Tier, target: &str) -> Self {
        Self {
            tier,
            target: target.to_owned(),
            examined: 0,
            selected: 0,
            removed: 0,
            expired: 0,
            rotated: 0,
            bytes_freed: 0,
            reported: 0,
            protected: 0,
            foreign: 0,
            items: Vec::new(),
            notes: Vec::new(),
            errors: Vec::new(),
            unreachable: false,
            cap: None,
            journal: None,
        }
    }

    /// Records a selected item, keeping at most `sample` of them for the listing.
    pub fn select(&mut self, item: Item, sample: usize) {
        if item.action == Action::Report {
            self.reported += 1;
        } else {
            self.selected += 1;
        }
        if self.items.len() < sample {
            self.items.push(item);
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct CleanupReport {
    /// The mode that ran.
    pub mode: Mode,
    /// For `smart`: the branch taken and the figures that chose it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// A category restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The run's id: its record's, and its undo journal's (`cache-cleanup undo RUN_ID`).
    pub run_id: String,
    /// Per target.
    pub targets: Vec<TargetReport>,
    /// Configured targets of this mode's tiers a `--tier` filter left out (`tier/name`):
    /// what this run did not clean.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_cleaned: Vec<String>,
}

impl CleanupReport {
    /// Sums over targets: (examined, selected, removed, bytes freed, errors).
    pub fn totals(&self) -> (u64, u64, u64, u64, usize) {
        self.targets.iter().fold((0, 0, 0, 0, 0), |t, r| {
            (t.0 + r.examined, t.1 + r.selected, t.2 + r.removed, t.3 + r.bytes_freed, t.4 + r.errors.len())
        })
    }

    /// The figures kept in the run record.
    pub fn summary(&self) -> serde_json::Value {
        let (examined, selected, removed, freed, errors) = self.totals();
        serde_json::json!({
            "mode": self.mode,
            "dry_run": self.dry_run,
            "examined": examined,
            "selected": selected,
            "removed": removed,
            "bytes_freed": freed,
            "errors": errors,
            "targets": self.targets.iter().map(|t| serde_json::json!({
                "tier": t.tier, "target": t.target, "examined": t.examined, "selected": t.selected,
                "removed": t.removed, "expired": t.expired, "rotated": t.rotated,
                "bytes_freed": t.bytes_freed, "errors": t.errors.len(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The report for people.
    pub fn render(&self, printer: &Printer) -> String {
        let mut out = String::new();
        let dry = if self.dry_run { " (dry run: nothing changed)" } else { "" };
        let category = self.category.as_ref().map(|c| format!(", category `{c}`")).unwrap_or_default();
        out.push_str(&format!("cache-cleanup: {} mode{category}{dry}\n", self.mode.as_str()));
        if let Some(decision) = &self.decision {
            out.push_str(&format!("smart: {} because {}\n", decision.mode.as_str().to_uppercase(), decision.reason));
        }
        let mut table = printer.table();
        table.set_header(["Tier", "Target", "Examined", "Selected", "Removed", "TTL set", "Rotated", "Freed", "Notes"]);
        for t in &self.targets {
            let mut notes: Vec<String> = t.errors.iter().map(|e| format!("error: {e}")).collect();
            notes.extend(t.notes.iter().cloned());
            if t.protected > 0 {
                notes.push(format!("{} protected", t.protected));
            }
            if t.reported > 0 {
                notes.push(format!("{} reported only", t.reported));
            }
            table.add_row(vec![
                t.tier.to_string(),
                t.target.clone(),
                t.examined.to_string(),
                t.selected.to_string(),
                t.removed.to_string(),
                t.expired.to_string(),
                t.rotated.to_string(),
                bytes(t.bytes_freed),
                notes.join("\n"),
            ]);
        }
        out.push_str(&format!("{table}\n"));
        let listed: Vec<(&TargetReport, &Item)> =
            self.targets.iter().flat_map(|t| t.items.iter().map(move |i| (t, i))).collect();
        if !listed.is_empty() {
            out.push_str(if self.dry_run { "\nWould act on:\n" } else { "\nActed on:\n" });
            for (t, item) in listed {
                let size = item.bytes.map(|b| format!(" ({})", bytes(b))).unwrap_or_default();
                out.push_str(&format!(
                    "  {}/{}: {} {}{size}: {}\n",
                    t.tier,
                    t.target,
                    item.action.as_str(),
                    cache_core::messages::printable(&item.name, SHOWN_NAME),
                    item.reason
                ));
            }
            let shown: usize = self.targets.iter().map(|t| t.items.len()).sum();
            let total: u64 = self.targets.iter().map(|t| t.selected + t.reported).sum();
            if (shown as u64) < total {
                out.push_str(&format!("  ... and {} more (totals above count all)\n", total - shown as u64));
            }
        }
        let (examined, selected, removed, freed, errors) = self.totals();
        if !self.not_cleaned.is_empty() {
            out.push_str(&format!("\nnot cleaned (--tier): {}\n", self.not_cleaned.join(", ")));
        }
        out.push_str(&format!(
            "\n{examined} examined, {selected} selected, {removed} removed, {} freed, {errors} errors\n",
            bytes(freed)
        ));
        out
    }
}
