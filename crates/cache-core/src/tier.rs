//! The tiers the toolkit maintains, and `--tier` filters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of cache tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Redis (standalone, TLS, Unix socket).
    Redis,
    /// PostgreSQL cache table.
    Postgres,
    /// Mem0-style memory API.
    Memory,
    /// HTTP application endpoint.
    Http,
    /// File-cache directories.
    Files,
    /// Log directories.
    Logs,
    /// The host: CPU, memory, disks, units, endpoints, GPU.
    System,
}

impl Tier {
    /// Every tier, in report order.
    pub const ALL: [Tier; 7] =
        [Tier::Redis, Tier::Postgres, Tier::Memory, Tier::Http, Tier::Files, Tier::Logs, Tier::System];

    /// The tier's name in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Redis => "redis",
            Tier::Postgres => "postgres",
            Tier::Memory => "memory",
            Tier::Http => "http",
            Tier::Files => "files",
            Tier::Logs => "logs",
            Tier::System => "system",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Tier::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown tier `{s}`; expected one of: {}", names.join(", "))
        })
    }
}

/// `--tier TIER` or `--tier TIER:NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierFilter {
    /// The tier.
    pub tier: Tier,
    /// One target of it, or all.
    pub name: Option<String>,
}

impl FromStr for TierFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tier, name) = match s.split_once(':') {
            Some((tier, name)) if !name.is_empty() => (tier, Some(name.to_owned())),
            Some(_) => return Err(format!("`{s}`: expected TIER or TIER:NAME")),
            None => (s, None),
        };
        Ok(Self { tier: tier.parse()?, name })
    }
}

/// Whether `filters` (empty: everything) select target `name` of `tier`.
pub fn selected(filters: &[TierFilter], tier: Tier, name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.tier == tier && f.name.as_deref().is_none_or(|n| n == name))
}

/// Whether `filters` select any target of `tier`.
pub fn tier_selected(filters: &[TierFilter], tier: Tier) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.tier == tier)
}

/// Refuses filters that select no configured target (`--tier redis:mian`): a run that checks
/// or cleans nothing must not pass for a run that found nothing wrong. The error names the
/// configured targets.
pub fn check_filters(filters: &[TierFilter], targets: &[(Tier, String)]) -> Result<(), crate::error::UsageError> {
    for f in filters {
        if targets.iter().any(|(tier, name)| selected(std::slice::from_ref(f), *tier, name)) {
            continue;
        }
        let wanted = match &f.name {
            Some(name) => format!("{}:{name}", f.tier),
            None => f.tier.to_string(),
        };
        let configured: Vec<String> = targets.iter().map(|(t, n)| format!("{t}:{n}")).collect();
        return Err(crate::error::UsageError(format!(
            "--tier {wanted} matches no configured target; the configured targets are {}",
            configured.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_selects() {
        let f: Vec<TierFilter> = vec!["redis:main".parse().unwrap(), "system".parse().unwrap()];
        assert!(selected(&f, Tier::Redis, "main"));
        assert!(!selected(&f, Tier::Redis, "other"));
        assert!(selected(&f, Tier::System, "host"));
        let targets = [(Tier::Redis, "main".to_owned()), (Tier::System, "host".to_owned())];
        assert!(check_filters(&f, &targets).is_ok());
        let typo: Vec<TierFilter> = vec!["redis:mian".parse().unwrap()];
        let e = check_filters(&typo, &targets).unwrap_err().to_string();
        assert_eq!(
            e,
            "--tier redis:mian matches no configured target; the configured targets are redis:main, system:host"
        );
        assert!(check_filters(&["postgres".parse().unwrap()], &targets).is_err());
        assert!(!selected(&f, Tier::Postgres, "main"));
        assert!(selected(&[], Tier::Postgres, "main"));
        assert!("bogus".parse::<TierFilter>().unwrap_err().contains("unknown tier `bogus`"));
        assert!("redis:".parse::<TierFilter>().is_err());
    }
}

/// Targets `cache-health monitor` took out of service after a connection failure
/// (`auto_action = "disable_tier"`), in the state directory. Every tool but cache-health skips
/// them until their time runs out, and says so.
pub const DISABLED_FILE: &str = "health/disabled.json";

/// The disabled targets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Disabled {
    /// By `tier/name`.
    pub targets: std::collections::BTreeMap<String, DisabledTarget>,
}

/// One disabled target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisabledTarget {
    /// Disabled until then.
    pub until: chrono::DateTime<chrono::Utc>,
    /// Why.
    pub reason: String,
}

impl Disabled {
    /// Whether `tier/name` is disabled at `now`; the reason and end when it is.
    pub fn get(&self, tier: Tier, name: &str, now: chrono::DateTime<chrono::Utc>) -> Option<&DisabledTarget> {
        self.targets.get(&format!("{tier}/{name}")).filter(|d| d.until > now)
    }
}
