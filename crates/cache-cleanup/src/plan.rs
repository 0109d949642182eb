//! Modes, and seed 000's `cleanup_smart` decision tree.

use cache_core::config::{CleanupSettings, ModePolicy, SmartThresholds};
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
    /// Targets that could not be measured, and why: their entries are not counted.
    pub unmeasured: Vec<String>,
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

/// Seed 000: size > 1500 → aggressive; size > 1000 and recent activity < 50 → moderate;
/// hit ratio < 60% → targeted; else light. Thresholds come from the configuration.
pub fn decide(figures: Figures, t: &SmartThresholds) -> Decision {
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
        let ratio = figures.hit_ratio.map_or("no lookups yet".to_owned(), |r| format!("hit ratio {:.1}%", r * 100.0));
        (
            Mode::Light,
            format!("{size} entries, {} used in the last hour, {ratio}: maintenance only", figures.recent_activity),
        )
    };
    let reason = if figures.unmeasured.is_empty() {
        reason
    } else {
        format!("{reason} (not counted: {})", figures.unmeasured.join("; "))
    };
    Decision { mode, reason, figures }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide_for(total: u64, recent: u64, hit: Option<f64>) -> Mode {
        decide(
            Figures { total_entries: total, recent_activity: recent, hit_ratio: hit, unmeasured: vec![] },
            &SmartThresholds::default(),
        )
        .mode
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
        let figures = Figures { total_entries: 1200, recent_activity: 3, hit_ratio: None, unmeasured: vec![] };
        let d = decide(figures, &SmartThresholds::default());
        assert_eq!(d.reason, "1200 entries > 1000 and 3 used in the last hour < 50");
        let figures = Figures {
            total_entries: 10,
            recent_activity: 0,
            hit_ratio: None,
            unmeasured: vec!["redis/a: down".into()],
        };
        assert!(decide(figures, &SmartThresholds::default()).reason.ends_with("(not counted: redis/a: down)"));
    }
}
