//! The security audit's rules shared by the tools: a finding's severity, the score (100 less 25
//! per high, 10 per medium and 5 per low finding), the audit history and the score drop.
//!
//! `cache-debug security` audits (and its weekly job); every audit of the whole configuration
//! (no `--tier`) appends an [`AuditRecord`] to [`AUDITS`] in the state directory. cache-health
//! reads them for `security_score` and `security_score_drop` ([`score_drop`]), and the
//! Prometheus export for `cache_security_score`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The audit history, in the state directory.
pub const AUDITS: &str = "security/audits.jsonl";

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fix now.
    High,
    /// Fix soon.
    Medium,
    /// Worth fixing.
    Low,
}

impl Severity {
    /// The points a finding of this severity takes off the score.
    pub fn points(self) -> u32 {
        match self {
            Severity::High => 25,
            Severity::Medium => 10,
            Severity::Low => 5,
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What it is about.
    pub subject: String,
    /// What is wrong.
    pub finding: String,
    /// How to fix it.
    pub fix: String,
}

/// The score of a set of findings: 100 less each one's [`Severity::points`], at least 0.
pub fn score(findings: &[Finding]) -> u32 {
    100u32.saturating_sub(findings.iter().map(|f| f.severity.points()).sum())
}

/// One audit of the whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Its score.
    pub score: u32,
    /// Every target was reached: the score covers everything configured. An audit that missed
    /// a target scores what it saw, and is never compared (a target back would read as a drop).
    pub complete: bool,
    /// Its findings (the fix left out: it is in the audit's own output).
    pub findings: Vec<RecordedFinding>,
}

/// A finding as the history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFinding {
    /// How bad.
    pub severity: Severity,
    /// What it is about.
    pub subject: String,
    /// What is wrong.
    pub finding: String,
}

impl AuditRecord {
    /// The record of an audit at `at` that found `findings`.
    pub fn new(at: DateTime<Utc>, findings: &[Finding], complete: bool) -> Self {
        Self {
            at,
            score: score(findings),
            complete,
            findings: findings
                .iter()
                .map(|f| RecordedFinding {
                    severity: f.severity,
                    subject: f.subject.clone(),
                    finding: f.finding.clone(),
                })
                .collect(),
        }
    }
}

/// How the latest complete audit compares with the best one of the span before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreDrop {
    /// The latest complete audit's score.
    pub score: u32,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// The best score of the complete audits within the baseline before it; `None` when there
    /// is none (a first audit drops from nothing).
    pub best: Option<u32>,
}

impl ScoreDrop {
    /// Points below the best score of the baseline (0 when none, or none better).
    pub fn points(&self) -> u32 {
        self.best.map_or(0, |best| best.saturating_sub(self.score))
    }
}

/// The latest complete audit of `records` (in any order) against the best complete audit
/// within `baseline` before it. `None` when no complete audit was recorded.
pub fn score_drop(records: &[AuditRecord], baseline: std::time::Duration) -> Option<ScoreDrop> {
    let latest = records.iter().filter(|r| r.complete).max_by_key(|r| r.at)?;
    let span = chrono::Duration::from_std(baseline).unwrap_or(chrono::Duration::MAX);
    let since = latest.at.checked_sub_signed(span).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let best = records.iter().filter(|r| r.complete && r.at < latest.at && r.at >= since).map(|r| r.score).max();
    Some(ScoreDrop { score: latest.score, at: latest.at, best })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity) -> Finding {
        Finding { severity, subject: String::new(), finding: String::new(), fix: String::new() }
    }

    #[test]
    fn score_loses_by_severity() {
        assert_eq!(score(&[]), 100);
        assert_eq!(score(&[finding(Severity::High), finding(Severity::Medium), finding(Severity::Low)]), 60);
        assert_eq!(score(&vec![finding(Severity::High); 5]), 0);
    }

    #[test]
    fn the_drop_is_from_the_best_complete_audit_of_the_baseline() {
        let day =
            |d: i64| DateTime::parse_from_rfc3339("2026-11-01T06:00:00Z").unwrap().to_utc() + chrono::Duration::days(d);
        let audit =
            |d: i64, score: u32, complete: bool| AuditRecord { at: day(d), score, complete, findings: Vec::new() };
        let weeks = std::time::Duration::from_secs(35 * 86_400);
        assert_eq!(score_drop(&[], weeks), None);
        assert_eq!(score_drop(&[audit(0, 90, false)], weeks), None);
        // A first audit drops from nothing.
        let first = score_drop(&[audit(0, 60, true)], weeks).unwrap();
        assert_eq!((first.score, first.best, first.points()), (60, None, 0));
        // The best of the span, not the one before: two weeks at 65 after 90 are still 25 down.
        let records = [audit(0, 90, true), audit(7, 65, true), audit(14, 65, true)];
        let drop = score_drop(&records, weeks).unwrap();
        assert_eq!((drop.score, drop.best, drop.points()), (65, Some(90), 25));
        // Out of the span, the 90 no longer counts; an incomplete audit never does.
        let records = [audit(0, 90, true), audit(40, 95, false), audit(41, 70, true), audit(50, 65, true)];
        let drop = score_drop(&records, weeks).unwrap();
        assert_eq!((drop.score, drop.best, drop.points()), (65, Some(70), 5));
        // Better than before is no drop.
        let drop = score_drop(&[audit(0, 70, true), audit(7, 80, true)], weeks).unwrap();
        assert_eq!(drop.points(), 0);
    }
}
