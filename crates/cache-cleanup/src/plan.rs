//! Modes, and seed 000's `cleanup_smart` decision tree.

use cache_core::config::{CleanupSettings, ModePolicy, SizeBasis, SmartThresholds};
use serde::{Deserialize, Serialize};

/// A cleanup mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// TTL repair, expired rows, file TTLs, log rotation
    Light,
    /// Light, plus idle keys, stale rows and duplicate memories
    Moderate,
    /// Moderate with shorter thresholds, plus oversized keys
    Targeted,
    /// Everything: orphans, oversized, idle, stale memories, down to a memory target
    Aggressive,
    /// Only the idlest Redis keys, down to the memory target
    #[value(skip)]
    Evict,
}

impl Mode {
    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Light => "light",
            Mode::Moderate => "moderate",
            Mode::Targeted => "targeted",
            Mode::Aggressive => "aggressive",
            Mode::Evict => "evict",
        }
    }

    /// The mode's policy in the configuration.
    pub fn policy(self, settings: &CleanupSettings) -> &ModePolicy {
        let modes = &settings.modes;
        match self {
            Mode::Light => &modes.light,
            Mode::Moderate => &modes.moderate,
            Mode::Targeted => &modes.targeted,
            Mode::Aggressive => &modes.aggressive,
            Mode::Evict => &modes.evict,
        }
    }
}

/// The figures `smart` decides on.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Entries in every tier: Redis keys, cache-table rows, memories.
    pub total_entries: u64,
    /// Entries used in the last hour (rows by `accessed_at`; Redis keys estimated from a sample).
    pub recent_activity: u64,
    /// Redis hit ratio (0..1), when there were lookups.
    pub hit_ratio: Option<f64>,
    /// Each measured target's share of its capacity, e.g. (`redis/main`, 0.92, `maxmemory`).
    pub usage: Vec<Usage>,
    /// Targets that could not be measured, and why: their entries are not counted.
    pub unmeasured: Vec<String>,
}

/// One target's share of its capacity.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    /// `tier/name`.
    pub target: String,
    /// Used share (0..1, above 1 when over).
    pub share: f64,
    /// Of what: `maxmemory`, `cleanup.smart.table_budget`, `cleanup.smart.memory_budget`.
    pub of: String,
}

impl Figures {
    /// The fullest target.
    pub fn fullest(&self) -> Option<&Usage> {
        self.usage.iter().max_by(|a, b| a.share.total_cmp(&b.share))
    }
}

/// The branch `smart` took, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// The mode chosen.
    pub mode: Mode,
    /// Why, in words, with the figures.
    pub reason: String,
    /// The figures.
    pub figures: Figures,
}

/// Seed 000's tree: too big → aggressive; big and little recent activity (< 50 used in the
/// last hour) → moderate; hit ratio < 60% → targeted; else light. "Big" is judged, by default,
/// against capacity (the fullest target above 90% / 75% of its capacity), or with
/// `size_basis = "entries"` as seed 000 wrote it (more than 1500 / 1000 entries in all tiers).
/// Thresholds come from the configuration.
pub fn decide(figures: Figures, t: &SmartThresholds) -> Decision {
    match t.size_basis {
        SizeBasis::Entries => decide_by_entries(figures, t),
        SizeBasis::Capacity => decide_by_capacity(figures, t),
    }
}

fn decide_by_capacity(figures: Figures, t: &SmartThresholds) -> Decision {
    let recent = figures.recent_activity;
    let fullest = figures.fullest().cloned();
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let at = |u: &Usage| format!("{} at {} of {}", u.target, pct(u.share), u.of);
    let (mode, reason) = match &fullest {
        Some(u) if u.share > t.aggressive_usage => {
            (Mode::Aggressive, format!("{} > {}", at(u), pct(t.aggressive_usage)))
        }
        Some(u) if u.share > t.moderate_usage && recent < t.moderate_recent_activity => (
            Mode::Moderate,
            format!(
                "{} > {} and {recent} used in the last hour < {}",
                at(u),
                pct(t.moderate_usage),
                t.moderate_recent_activity
            ),
        ),
        _ => match figures.hit_ratio.filter(|r| *r < t.targeted_hit_ratio) {
            Some(ratio) => (Mode::Targeted, format!("hit ratio {} < {}", pct(ratio), pct(t.targeted_hit_ratio))),
            None => {
                let ratio =
                    figures.hit_ratio.map_or("hit ratio unknown (no recent analytics interval)".to_owned(), |r| {
                        format!("hit ratio {}", pct(r))
                    });
                let size = fullest.as_ref().map_or(
                    "capacity unknown (no maxmemory, table_budget or memory_budget): size not judged".to_owned(),
                    |u| format!("fullest: {}", at(u)),
                );
                (
                    Mode::Light,
                    format!(
                        "{} entries, {size}, {recent} used in the last hour, {ratio}: maintenance only",
                        figures.total_entries
                    ),
                )
            }
        },
    };
    finish(mode, reason, figures)
}

fn finish(mode: Mode, reason: String, figures: Figures) -> Decision {
    let reason = if figures.unmeasured.is_empty() {
        reason
    } else {
        format!("{reason} (not counted: {})", figures.unmeasured.join("; "))
    };
    Decision { mode, reason, figures }
}

fn decide_by_entries(figures: Figures, t: &SmartThresholds) -> Decision {
    let size = figures.total_entries;
    let (mode, reason) = if size > t.aggressive_size {
        (Mode::Aggressive, format!("{size} entries > {}", t.aggressive_size))
    } else if size > t.moderate_size && figures.recent_activity < t.moderate_recent_activity {
        (
            Mode::Moderate,
            format!(
                "{size} entries > {} and {} used in the last hour < {}",
                t.moderate_size, figures.recent_activity, t.moderate_recent_activity
            ),
        )
    } else if let Some(ratio) = figures.hit_ratio.filter(|r| *r < t.targeted_hit_ratio) {
        (Mode::Targeted, format!("hit ratio {:.1}% < {:.0}%", ratio * 100.0, t.targeted_hit_ratio * 100.0))
    } else {
        let ratio = figures.hit_ratio.map_or("hit ratio unknown (no recent analytics interval)".to_owned(), |r| {
            format!("hit ratio {:.1}%", r * 100.0)
        });
        (
            Mode::Light,
            format!("{size} entries, {} used in the last hour, {ratio}: maintenance only", figures.recent_activity),
        )
    };
    finish(mode, reason, figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> SmartThresholds {
        SmartThresholds { size_basis: SizeBasis::Entries, ..SmartThresholds::default() }
    }

    fn decide_for(total: u64, recent: u64, hit: Option<f64>) -> Mode {
        decide(
            Figures { total_entries: total, recent_activity: recent, hit_ratio: hit, ..Figures::default() },
            &entries(),
        )
        .mode
    }

    fn usage(share: f64) -> Vec<Usage> {
        vec![Usage { target: "redis/main".into(), share, of: "maxmemory".into() }]
    }

    #[test]
    fn capacity_judges_size_by_how_full_the_fullest_target_is() {
        let t = SmartThresholds::default();
        let at = |total, share: Option<f64>, recent, hit| {
            let usage = share.map(usage).unwrap_or_default();
            decide(
                Figures { total_entries: total, recent_activity: recent, hit_ratio: hit, usage, unmeasured: vec![] },
                &t,
            )
        };
        // A healthy 50k-key cache: light, whatever seed 000's 1500 entries say.
        let d = at(50_000, Some(0.2), 10, Some(0.9));
        assert_eq!(d.mode, Mode::Light);
        assert!(d.reason.contains("fullest: redis/main at 20.0% of maxmemory"), "{}", d.reason);
        assert_eq!(at(500, Some(0.92), 1000, Some(0.99)).mode, Mode::Aggressive);
        assert_eq!(at(500, Some(0.92), 1000, Some(0.99)).reason, "redis/main at 92.0% of maxmemory > 90.0%");
        assert_eq!(at(500, Some(0.8), 10, Some(0.99)).mode, Mode::Moderate);
        assert_eq!(at(500, Some(0.8), 100, Some(0.99)).mode, Mode::Light);
        assert_eq!(at(500, Some(0.8), 100, Some(0.5)).mode, Mode::Targeted);
        let unknown = at(50_000, None, 0, None);
        assert_eq!(unknown.mode, Mode::Light);
        assert!(unknown.reason.contains("capacity unknown"), "{}", unknown.reason);
    }

    #[test]
    fn the_seed_decision_tree() {
        assert_eq!(decide_for(1501, 1000, Some(0.99)), Mode::Aggressive);
        assert_eq!(decide_for(1500, 10, Some(0.99)), Mode::Moderate);
        assert_eq!(decide_for(1001, 49, Some(0.1)), Mode::Moderate);
        assert_eq!(decide_for(1001, 50, Some(0.59)), Mode::Targeted);
        assert_eq!(decide_for(1000, 0, Some(0.59)), Mode::Targeted);
        assert_eq!(decide_for(1000, 0, Some(0.60)), Mode::Light);
        assert_eq!(decide_for(10, 0, None), Mode::Light);
        let figures = Figures { total_entries: 1200, recent_activity: 3, ..Figures::default() };
        let d = decide(figures, &entries());
        assert_eq!(d.reason, "1200 entries > 1000 and 3 used in the last hour < 50");
        let figures = Figures { total_entries: 10, unmeasured: vec!["redis/a: down".into()], ..Figures::default() };
        assert!(decide(figures, &entries()).reason.ends_with("(not counted: redis/a: down)"));
    }
}
