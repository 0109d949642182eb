//! Which backups to keep: the newest `keep_last`, the newest of each of `keep_daily` days and
//! of `keep_weekly` ISO weeks, nothing older than `max_age`, and never the newest verified one.

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
    let newest_verified = newest_first.iter().find(|c| c.verified).map(|c| c.id.clone());
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
                (true, "the newest verified backup is never deleted".to_owned())
            } else if too_old {
                let max = policy.max_age.unwrap_or_default();
                (false, format!("older than max-age {}", humantime::format_duration(max)))
            } else if reasons.is_empty() {
                (false, "kept by no rule".to_owned())
            } else {
                (true, reasons.join(", "))
            };
            Decision { id: c.id.clone(), keep, reason }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn candidates(times: &[(&str, bool)]) -> Vec<Candidate> {
        times.iter().map(|(t, v)| Candidate { id: (*t).to_owned(), created_at: at(t), verified: *v }).collect()
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
        assert!(decisions[1].reason.contains("newest verified"));
        assert!(decisions[2].reason.contains("older than max-age"));
        assert!(plan(&[], policy, now).is_empty());
    }
}
