//! Per-prefix figures in bounded memory, however many distinct prefixes a keyspace has.
//!
//! A keyspace of a million keys may have a million prefixes (`t<i>:profile`): one group each
//! would make memory and reports grow with them. [`Groups`] keeps at most `2 × max` groups
//! while it counts, and whenever it reaches that, folds all but the `max` biggest into
//! `(other)`: the biggest by bytes for half of the places, by keys for the rest (a heavy
//! hitter by either measure stays). Totals stay exact: what is folded is added to `(other)`,
//! never lost. A prefix folded and seen again starts afresh, so a group's figures are a lower
//! bound once anything was folded, which the report says.

use std::collections::HashMap;

use crate::config::RedisTarget;

/// The name of the group everything folded goes into.
pub const OTHER: &str = "(other)";

/// Groups kept by default.
pub const DEFAULT_MAX_GROUPS: usize = 500;

/// The group a key is counted under: its configured prefix (the longest that matches is the
/// first in configuration order, as everywhere), else its first `:` segment with the colon,
/// else `(no prefix)`.
pub fn group_of(target: &RedisTarget, key: &[u8]) -> String {
    if let Some(rule) = target.prefixes.iter().find(|r| key.starts_with(r.prefix.as_bytes())) {
        return rule.prefix.clone();
    }
    match key.iter().position(|&b| b == b':') {
        Some(i) => format!("{}:", String::from_utf8_lossy(&key[..i])),
        None => "(no prefix)".to_owned(),
    }
}

/// Figures a group adds up.
pub trait Figures: Default {
    /// Keys counted.
    fn keys(&self) -> u64;
    /// Bytes counted.
    fn bytes(&self) -> u64;
    /// Adds `other` into `self`.
    fn absorb(&mut self, other: Self);
}

/// Figures per group, at most `max` of them (plus `(other)`) once finished.
pub struct Groups<T> {
    max: usize,
    groups: HashMap<String, T>,
    other: Option<T>,
    folded: u64,
}

/// What [`Groups::finish`] gives.
pub struct Finished<T> {
    /// The groups kept, biggest by bytes first.
    pub groups: Vec<(String, T)>,
    /// Everything folded (`None`: nothing was).
    pub other: Option<T>,
    /// Groups folded into `(other)` (a prefix folded twice counts twice).
    pub folded: u64,
}

impl<T: Figures> Default for Groups<T> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_GROUPS)
    }
}

/// Keys and bytes, the figures of a group that needs no more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeysBytes {
    /// Keys.
    pub keys: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Figures for KeysBytes {
    fn keys(&self) -> u64 {
        self.keys
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn absorb(&mut self, other: Self) {
        self.keys += other.keys;
        self.bytes += other.bytes;
    }
}

impl<T: Figures> Groups<T> {
    /// Keeps at most `max` groups (at least 2).
    pub fn new(max: usize) -> Self {
        Self { max: max.max(2), groups: HashMap::new(), other: None, folded: 0 }
    }

    /// The figures of `group`, created empty when new.
    pub fn entry(&mut self, group: String) -> &mut T {
        if !self.groups.contains_key(&group) && self.groups.len() >= 2 * self.max {
            self.compact();
        }
        self.groups.entry(group).or_default()
    }

    /// Adds another count of the same shape (another primary's) into this one.
    pub fn absorb(&mut self, other: Groups<T>) {
        for (name, figures) in other.groups {
            self.entry(name).absorb(figures);
        }
        if let Some(o) = other.other {
            self.other.get_or_insert_with(T::default).absorb(o);
        }
        self.folded += other.folded;
    }

    /// Folds all but the `max` biggest into `(other)`.
    fn compact(&mut self) {
        if self.groups.len() <= self.max {
            return;
        }
        let mut names: Vec<(&String, u64, u64)> = self.groups.iter().map(|(n, f)| (n, f.bytes(), f.keys())).collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
        let mut keep: std::collections::HashSet<String> =
            names.iter().take(self.max / 2).map(|(n, _, _)| (*n).clone()).collect();
        names.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(b.0)));
        for (name, _, _) in &names {
            if keep.len() >= self.max {
                break;
            }
            keep.insert((*name).clone());
        }
        let all = std::mem::take(&mut self.groups);
        for (name, figures) in all {
            if keep.contains(&name) {
                self.groups.insert(name, figures);
            } else {
                self.folded += 1;
                self.other.get_or_insert_with(T::default).absorb(figures);
            }
        }
    }

    /// The groups kept (at most `max`), biggest by bytes first, and what was folded.
    pub fn finish(mut self) -> Finished<T> {
        self.compact();
        let mut groups: Vec<(String, T)> = self.groups.into_iter().collect();
        groups.sort_by(|a, b| b.1.bytes().cmp(&a.1.bytes()).then(b.1.keys().cmp(&a.1.keys())).then(a.0.cmp(&b.0)));
        Finished { groups, other: self.other, folded: self.folded }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Kb(u64, u64);

    impl Figures for Kb {
        fn keys(&self) -> u64 {
            self.0
        }
        fn bytes(&self) -> u64 {
            self.1
        }
        fn absorb(&mut self, other: Self) {
            self.0 += other.0;
            self.1 += other.1;
        }
    }

    #[test]
    fn a_million_prefixes_keep_the_heavy_ones_and_every_total() {
        let mut groups: Groups<Kb> = Groups::new(100);
        let mut peak = 0;
        for i in 0..1_000_000u64 {
            // Two heavy hitters among a million singletons, both arriving late and spread out,
            // and named to sort last (no tie is decided in their favour): one by keys (2% of
            // the keys), one by bytes (a few big keys).
            let name = if i > 500_000 && i % 50 == 0 {
                "zz-many:".to_owned()
            } else if i > 500_000 && i % 100_000 == 1 {
                "zz-big:".to_owned()
            } else {
                format!("t{i}:")
            };
            let bytes = if name == "zz-big:" { 1_000_000 } else { 10 };
            let e = groups.entry(name);
            e.0 += 1;
            e.1 += bytes;
            peak = peak.max(groups.groups.len());
        }
        assert!(peak <= 200, "{peak} groups held at once");
        let done = groups.finish();
        assert_eq!(done.groups.len(), 100);
        let names: Vec<&str> = done.groups.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "zz-big:");
        let many = done.groups.iter().find(|(n, _)| n == "zz-many:").map(|(_, f)| f.0);
        assert_eq!(many, Some(9_999), "{names:?}");
        let keys: u64 = done.groups.iter().map(|(_, f)| f.0).sum::<u64>() + done.other.as_ref().unwrap().0;
        assert_eq!(keys, 1_000_000);
        assert!(done.folded >= 989_000, "{}", done.folded);
    }

    #[test]
    fn groups_follow_the_configured_prefixes_then_the_first_segment() {
        let mut t = RedisTarget::new("t", crate::redact::SafeUrl::parse("redis://h").unwrap());
        t.prefixes =
            vec![crate::config::PrefixRule { prefix: "app:search:".into(), ttl: None, age_from: None, max_age: None }];
        assert_eq!(group_of(&t, b"app:search:q1"), "app:search:");
        assert_eq!(group_of(&t, b"app:other:1"), "app:");
        assert_eq!(group_of(&t, b"plain"), "(no prefix)");
        let mut few: Groups<Kb> = Groups::new(10);
        few.entry("a:".into()).0 += 1;
        let done = few.finish();
        assert_eq!((done.groups.len(), done.folded, done.other), (1, 0, None));
    }
}
