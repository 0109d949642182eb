//! Flapping: an alert (one rule on one target), or one target's health status, that keeps
//! changing state. A list of what happened shows a flapping spell once, with how many changes
//! it made, since when and the state it is in now, instead of one line per change.
//!
//! The rule: [`FLAP_TRANSITIONS`] changes or more in a row, each within [`FLAP_GAP`] of the one
//! before, are one spell. Fewer changes, or changes further apart, are shown each on its own: an
//! alert that fires and resolves once is an incident, one that fires every morning is a pattern,
//! neither is flapping.
//!
//! The alert history is `alerts/log.jsonl`, the `log` channel's JSON Lines (`{"time", "id",
//! "kind", "alert"}`, docs/alerts.md); [`LoggedNotice::change`] says which of its lines are
//! changes of state (`firing` and `resolved`; repeats, escalations and tests are not).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

/// The `log` channel's file, in the state directory: one line per notification.
pub const LOG_FILE: &str = "alerts/log.jsonl";

/// Changes in a row that make a flapping spell: two firing/resolved pairs.
pub const FLAP_TRANSITIONS: usize = 4;

/// The longest wait between two changes of one spell.
pub const FLAP_GAP: Duration = Duration::hours(1);

/// One change of state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change<S> {
    /// When it changed.
    pub at: DateTime<Utc>,
    /// The state it changed to.
    pub state: S,
}

/// What a list of one alert's (or target's) changes shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Episode<S> {
    /// A change on its own.
    Single(Change<S>),
    /// A flapping spell: `transitions` changes from `since` to `until`, the last to `state`.
    Flapping {
        /// Changes in the spell (at least [`FLAP_TRANSITIONS`]).
        transitions: usize,
        /// The first change's time.
        since: DateTime<Utc>,
        /// The last change's time.
        until: DateTime<Utc>,
        /// The state the last change left it in.
        state: S,
    },
}

impl<S> Episode<S> {
    /// When it ended (the change's time, or the spell's last change).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Single(c) => c.at,
            Self::Flapping { until, .. } => *until,
        }
    }
}

/// One alert's (or one target's) changes, in any order, as episodes oldest first: each run of
/// changes within [`FLAP_GAP`] of one another that has [`FLAP_TRANSITIONS`] or more is one
/// [`Episode::Flapping`], every other change an [`Episode::Single`].
pub fn episodes<S: Clone>(changes: &[Change<S>]) -> Vec<Episode<S>> {
    let mut sorted: Vec<&Change<S>> = changes.iter().collect();
    sorted.sort_by_key(|c| c.at);
    let mut runs: Vec<Vec<&Change<S>>> = Vec::new();
    for change in sorted {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|last| change.at - last.at <= FLAP_GAP) => run.push(change),
            _ => runs.push(vec![change]),
        }
    }
    let mut out = Vec::new();
    for run in runs {
        match (run.first(), run.last()) {
            (Some(first), Some(last)) if run.len() >= FLAP_TRANSITIONS => out.push(Episode::Flapping {
                transitions: run.len(),
                since: first.at,
                until: last.at,
                state: last.state.clone(),
            }),
            _ => out.extend(run.into_iter().map(|c| Episode::Single(c.clone()))),
        }
    }
    out
}

/// Where an alert stands after a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    /// It started firing.
    Firing,
    /// It cleared.
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One line of [`LOG_FILE`], as much of it as the history needs.
#[derive(Clone, Debug, Deserialize)]
pub struct LoggedNotice {
    /// When the notification was queued (the monitor round's time).
    pub time: DateTime<Utc>,
    /// Why it was sent: `firing`, `repeat`, `resolved`, `escalated` or `test`.
    pub kind: String,
    /// The alert as it stood.
    pub alert: LoggedAlert,
}

/// The alert of a [`LoggedNotice`].
#[derive(Clone, Debug, Deserialize)]
pub struct LoggedAlert {
    /// The rule's name.
    pub rule: String,
    /// `tier/name`, or `all`.
    pub target: String,
    /// `info`, `warning` or `critical`.
    #[serde(default)]
    pub severity: String,
    /// The rendered message.
    #[serde(default)]
    pub message: String,
}

impl LoggedNotice {
    /// The change of state this notice records: `firing` and `resolved` notices are changes;
    /// a repeat, an escalation (still firing) or a test is none.
    pub fn change(&self) -> Option<Change<AlertState>> {
        let state = match self.kind.as_str() {
            "firing" => AlertState::Firing,
            "resolved" => AlertState::Resolved,
            _ => return None,
        };
        Some(Change { at: self.time, state })
    }
}

/// One alert's changes among a set of notices.
#[derive(Clone, Debug)]
pub struct AlertChanges<'a> {
    /// Its changes, oldest first.
    pub changes: Vec<Change<AlertState>>,
    /// Its last notice that was a change (its message and severity as they stood).
    pub last: &'a LoggedNotice,
}

/// The changes of each alert, by rule and target, among `notices`.
pub fn alert_changes(notices: &[LoggedNotice]) -> BTreeMap<(String, String), AlertChanges<'_>> {
    let mut out: BTreeMap<(String, String), AlertChanges<'_>> = BTreeMap::new();
    for notice in notices {
        let Some(change) = notice.change() else { continue };
        let entry = out
            .entry((notice.alert.rule.clone(), notice.alert.target.clone()))
            .or_insert_with(|| AlertChanges { changes: Vec::new(), last: notice });
        if change.at >= entry.last.time {
            entry.last = notice;
        }
        entry.changes.push(change);
    }
    for alert in out.values_mut() {
        alert.changes.sort_by_key(|c| c.at);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z").unwrap().to_utc() + Duration::minutes(minute)
    }

    /// Lines as the `log` channel writes them.
    fn log(lines: &[(i64, &str, &str, &str)]) -> Vec<LoggedNotice> {
        lines
            .iter()
            .map(|(minute, kind, rule, target)| {
                let line = serde_json::json!({
                    "time": t(*minute),
                    "id": format!("{minute}-{kind}"),
                    "kind": kind,
                    "alert": {
                        "id": "a1b2c3", "fingerprint": format!("{rule}|{target}"), "rule": rule, "target": target,
                        "severity": "critical", "status": kind, "bad_rounds": 1, "since": t(*minute),
                        "notifications": 1, "acked": false, "message": format!("{target} is down"), "values": {}
                    }
                });
                serde_json::from_value(line).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_firing_resolved_series_within_the_gap_is_one_flapping_spell_ending_in_its_latest_state() {
        // A server stopped and started every few minutes: fire, resolve, three times, then fire.
        let notices = log(&[
            (0, "firing", "Tier Unavailable", "redis/main"),
            (2, "repeat", "Tier Unavailable", "redis/main"),
            (3, "resolved", "Tier Unavailable", "redis/main"),
            (10, "firing", "Tier Unavailable", "redis/main"),
            (11, "escalated", "Tier Unavailable", "redis/main"),
            (12, "resolved", "Tier Unavailable", "redis/main"),
            (40, "firing", "Tier Unavailable", "redis/main"),
            (45, "resolved", "Tier Unavailable", "redis/main"),
            (90, "firing", "Tier Unavailable", "redis/main"),
            (91, "test", "Tier Unavailable", "redis/main"),
            (5, "firing", "High Memory Usage", "redis/main"),
        ]);
        let changes = alert_changes(&notices);
        assert_eq!(changes.len(), 2);
        let down = &changes[&("Tier Unavailable".to_owned(), "redis/main".to_owned())];
        assert_eq!(down.changes.len(), 7, "repeats, escalations and tests are no changes");
        assert_eq!(down.last.time, t(90));
        assert_eq!(
            episodes(&down.changes),
            [Episode::Flapping { transitions: 7, since: t(0), until: t(90), state: AlertState::Firing }]
        );
        let memory = &changes[&("High Memory Usage".to_owned(), "redis/main".to_owned())];
        assert_eq!(episodes(&memory.changes), [Episode::Single(Change { at: t(5), state: AlertState::Firing })]);
    }

    #[test]
    fn changes_too_few_or_too_far_apart_are_not_flapping() {
        let change = |minute, state| Change { at: t(minute), state };
        // One incident: fired, resolved.
        let one = [change(0, AlertState::Firing), change(20, AlertState::Resolved)];
        assert!(episodes(&one).iter().all(|e| matches!(e, Episode::Single(_))));
        // Three changes within the gap: still each on its own.
        let three = [change(0, AlertState::Firing), change(5, AlertState::Resolved), change(9, AlertState::Firing)];
        assert_eq!(episodes(&three).len(), 3);
        // Every morning for four days: a pattern, not flapping.
        let daily: Vec<_> = (0..8)
            .map(|i| {
                change(i / 2 * 24 * 60 + i % 2 * 30, if i % 2 == 0 { AlertState::Firing } else { AlertState::Resolved })
            })
            .collect();
        assert!(episodes(&daily).iter().all(|e| matches!(e, Episode::Single(_))));
        // A spell, then a quiet day, then one firing: the spell and the firing apart. Out of order
        // in, oldest first out.
        let mut mixed = vec![change(24 * 60, AlertState::Firing)];
        mixed.extend(
            (0..4).map(|i| change(i * 61 - i, if i % 2 == 0 { AlertState::Firing } else { AlertState::Resolved })),
        );
        assert_eq!(
            episodes(&mixed),
            [
                Episode::Flapping { transitions: 4, since: t(0), until: t(180), state: AlertState::Resolved },
                Episode::Single(change(24 * 60, AlertState::Firing)),
            ]
        );
        // A gap of one minute more than FLAP_GAP breaks the run.
        let broken: Vec<_> = [0, 1, 62, 63, 64].iter().map(|m| change(*m, AlertState::Firing)).collect();
        assert_eq!(episodes(&broken).len(), 5);
    }
}
