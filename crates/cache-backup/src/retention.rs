//! Which backups to keep: the newest `keep_last`, the newest of each of `keep_daily` days and
//! of `keep_weekly` ISO weeks, nothing older than `max_age`; and whatever those rules say, never
//! the newest verified complete backup, nor the newest backup holding a source (so never the
//! only backup of a tier's target).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

/// One backup as retention sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its id.
    pub id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Whether its last verification passed.
    pub verified: bool,
    /// Whether it holds every source it was configured to take.
    pub complete: bool,
    /// The sources it holds (`redis/main`, `postgres/main`).
    pub holds: Vec<String>,
}

/// The decision for one backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The backup's id.
    pub id: String,
    /// Keep it?
    pub keep: bool,
    /// Why.
    pub reason: String,
}

/// The rules.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Newest backups kept.
    pub keep_last: u32,
    /// Days whose newest backup is kept.
    pub keep_daily: u32,
    /// ISO weeks whose newest backup is kept.
    pub keep_weekly: u32,
    /// Nothing older is kept (but the newest verified backup).
    pub max_age: Option<Duration>,
}

/// Decides for every backup, newest first.
pub fn plan(candidates: &[Candidate], policy: Policy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut newest_first: Vec<&Candidate> = candidates.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    // The newest verified complete backup; where none is complete, the newest verified one.
    let newest_verified = newest_first
        .iter()
        .find(|c| c.verified && c.complete)
        .or_else(|| newest_first.iter().find(|c| c.verified))
        .map(|c| c.id.clone());
    // The newest backup of each source, verified ones first: the last copy of a tier's data.
    let mut last_copies: std::collections::BTreeMap<&str, (&str, usize)> = Default::default();
    for verified in [true, false] {
        for c in newest_first.iter().filter(|c| c.verified == verified) {
            for source in &c.holds {
                last_copies.entry(source.as_str()).or_insert((c.id.as_str(), 0)).1 += 1;
            }
        }
    }
    let last_copy = |id: &str| -> Option<String> {
        let sources: Vec<String> = last_copies
            .iter()
            .filter(|(_, (newest, _))| *newest == id)
            .map(|(source, (_, n))| {
                if *n == 1 { format!("the only backup of {source}") } else { format!("the newest backup of {source}") }
            })
            .collect();
        (!sources.is_empty()).then(|| format!("{} is never deleted", sources.join(", ")))
    };
    let mut days = BTreeSet::new();
    let mut weeks = BTreeSet::new();
    newest_first
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut reasons = Vec::new();
            if (i as u32) < policy.keep_last {
                reasons.push(format!("keep-last {}", policy.keep_last));
            }
            let day = c.created_at.date_naive();
            if !days.contains(&day) && (days.len() as u32) < policy.keep_daily {
                days.insert(day);
                reasons.push(format!("newest of {day} (keep-daily {})", policy.keep_daily));
            }
            let week = (c.created_at.iso_week().year(), c.created_at.iso_week().week());
            if !weeks.contains(&week) && (weeks.len() as u32) < policy.keep_weekly {
                weeks.insert(week);
                reasons.push(format!("newest of week {}-W{:02} (keep-weekly {})", week.0, week.1, policy.keep_weekly));
            }
            let age = (now - c.created_at).to_std().unwrap_or_default();
            let too_old = policy.max_age.is_some_and(|max| age > max);
            let (keep, reason) = if newest_verified.as_deref() == Some(c.id.as_str()) {
                let what =
                    if c.complete { "the newest verified complete backup" } else { "the newest verified backup" };
                (true, format!("{what} is never deleted"))
            } else if !too_old && !reasons.is_empty() {
                (true, reasons.join(", "))
            } else if let Some(reason) = last_copy(&c.id) {
                (true, reason)
            } else if too_old {
                let max = policy.max_age.unwrap_or_default();
                (false, format!("older than max-age {}", as_configured(max)))
            } else {
                (false, "kept by no rule".to_owned())
            };
            Decision { id: c.id.clone(), keep, reason }
        })
        .collect()
}

/// A duration as one writes it in the configuration: `90days` rather than humantime's
/// `2months 29days 2h 52m 48s`.
fn as_configured(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 86400 == 0 => format!("{}day{}", s / 86400, if s == 86400 { "" } else { "s" }),
        _ => humantime::format_duration(d).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn candidates(times: &[(&str, bool)]) -> Vec<Candidate> {
        times
            .iter()
            .map(|(t, v)| Candidate {
                id: (*t).to_owned(),
                created_at: at(t),
                verified: *v,
                complete: true,
                holds: vec!["redis/main".into()],
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<&str> {
        decisions.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn keep_last_daily_and_weekly() {
        let now = at("2026-11-22T12:00:00Z");
        let backups = candidates(&[
            ("2026-11-22T01:00:00Z", true),
            ("2026-11-21T13:00:00Z", true),
            ("2026-11-21T01:00:00Z", true),
            ("2026-11-20T01:00:00Z", true),
            ("2026-11-12T01:00:00Z", true),
            ("2026-11-01T01:00:00Z", true),
        ]);
        let policy = Policy { keep_last: 1, keep_daily: 2, keep_weekly: 3, max_age: None };
        let decisions = plan(&backups, policy, now);
        // Newest (last + daily + weekly: ISO week 47), newest of the 21st (daily), newest of
        // weeks 46 (the 12th) and 44 (the 1st). The 20th's week 47 is covered by the 22nd.
        assert_eq!(
            kept(&decisions),
            ["2026-11-22T01:00:00Z", "2026-11-21T13:00:00Z", "2026-11-12T01:00:00Z", "2026-11-01T01:00:00Z"]
        );
        assert_eq!(decisions[2].reason, "kept by no rule");
        assert_eq!(decisions[3].reason, "kept by no rule");
        assert!(decisions[4].reason.contains("keep-weekly"), "{:?}", decisions[4]);
    }

    #[test]
    fn max_age_wins_but_never_over_the_newest_verified() {
        let now = at("2026-11-22T12:00:00Z");
        let policy =
            Policy { keep_last: 10, keep_daily: 10, keep_weekly: 10, max_age: Some(Duration::from_secs(7 * 86400)) };
        let backups = candidates(&[
            ("2026-11-21T01:00:00Z", false),
            ("2026-11-01T01:00:00Z", true),
            ("2026-10-01T01:00:00Z", false),
        ]);
        let decisions = plan(&backups, policy, now);
        assert_eq!(kept(&decisions), ["2026-11-21T01:00:00Z", "2026-11-01T01:00:00Z"]);
        assert!(decisions[1].reason.contains("newest verified complete"));
        assert!(decisions[2].reason.contains("older than max-age"));
        assert!(plan(&[], policy, now).is_empty());
    }

    #[test]
    fn never_the_newest_verified_complete_backup_nor_a_sources_last_copy() {
        let now = at("2026-11-22T12:00:00Z");
        let policy = Policy { keep_last: 1, keep_daily: 0, keep_weekly: 0, max_age: Some(Duration::from_secs(86400)) };
        let mut backups = candidates(&[
            ("2026-11-22T01:00:00Z", true),
            ("2026-11-10T01:00:00Z", true),
            ("2026-11-01T01:00:00Z", true),
            ("2026-10-01T01:00:00Z", false),
        ]);
        // The newest is partial (PostgreSQL was down); the second is the newest complete one;
        // only the oldest holds the memories, and it was never verified.
        backups[0].complete = false;
        for b in &mut backups[1..] {
            b.holds.push("postgres/main".into());
        }
        backups[3].holds.push("memory/m".into());
        let decisions = plan(&backups, policy, now);
        assert_eq!(kept(&decisions), ["2026-11-22T01:00:00Z", "2026-11-10T01:00:00Z", "2026-10-01T01:00:00Z"]);
        assert_eq!(decisions[0].reason, "keep-last 1");
        assert_eq!(decisions[1].reason, "the newest verified complete backup is never deleted");
        assert_eq!(decisions[2].reason, "older than max-age 1day");
        assert_eq!(decisions[3].reason, "the only backup of memory/m is never deleted");
    }
}
