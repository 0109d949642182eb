//! The blast-radius cap: the most one run may delete from one target.
//!
//! Every destructive pass asks [`Cap::admit`] before it deletes an item. Past
//! `cleanup.max_delete_share` of the target's entries (counted when the run starts) or
//! `cleanup.max_delete_bytes`, the pass stops, the target's report says which cap it hit, and
//! the run is recorded `partial`. `--force` lifts the cap, only at a terminal and never for a
//! scheduled run or a remediation (see [`lifted`]).

use cache_core::config::CleanupSettings;
use cache_core::error::UsageError;
use cache_core::output::bytes;
use serde::Serialize;

/// The cap of one target in one run, and what it has admitted so far.
#[derive(Clone, Debug, Serialize)]
pub struct Cap {
    /// Items this run may delete (`None`: lifted by `--force`).
    pub max_items: Option<u64>,
    /// Bytes this run may delete (`None`: lifted).
    pub max_bytes: Option<u64>,
    /// Items admitted.
    pub items: u64,
    /// Bytes admitted.
    pub bytes: u64,
    /// Which cap stopped the run, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit: Option<String>,
}

impl Cap {
    /// The cap for a target holding `entries` entries when the run starts.
    pub fn new(settings: &CleanupSettings, entries: u64, lifted: bool) -> Self {
        if lifted {
            return Self { max_items: None, max_bytes: None, items: 0, bytes: 0, hit: None };
        }
        let max_items = (entries as f64 * settings.max_delete_share).floor() as u64;
        Self {
            max_items: Some(max_items),
            max_bytes: Some(settings.max_delete_bytes.as_u64()),
            items: 0,
            bytes: 0,
            hit: None,
        }
    }

    /// No cap (items that are already dead, such as expired rows, are not capped).
    pub fn none() -> Self {
        Self { max_items: None, max_bytes: None, items: 0, bytes: 0, hit: None }
    }

    /// Whether one more item of `size` bytes may go; records it when so, and the cap hit when not.
    /// Once the cap is hit, nothing more is admitted.
    pub fn admit(&mut self, size: u64) -> bool {
        if self.hit.is_some() {
            return false;
        }
        if let Some(max) = self.max_items
            && self.items + 1 > max
        {
            self.hit = Some(format!(
                "stopped at the blast-radius cap of {max} entries (cleanup.max_delete_share); the rest waits for the next run"
            ));
            return false;
        }
        if let Some(max) = self.max_bytes
            && self.bytes + size > max
        {
            self.hit = Some(format!(
                "stopped at the blast-radius cap of {} (cleanup.max_delete_bytes); the rest waits for the next run",
                bytes(max)
            ));
            return false;
        }
        self.items += 1;
        self.bytes += size;
        true
    }

    /// How many more items may go (`u64::MAX` when uncapped by count).
    pub fn room(&self) -> u64 {
        if self.hit.is_some() {
            return 0;
        }
        self.max_items.map_or(u64::MAX, |m| m.saturating_sub(self.items))
    }

    /// Marks the cap as hit by count (a pass that selected more than [`Cap::room`]).
    pub fn hit_by_count(&mut self) {
        if self.hit.is_none() {
            let max = self.max_items.unwrap_or(0);
            self.hit = Some(format!(
                "stopped at the blast-radius cap of {max} entries (cleanup.max_delete_share); the rest waits for the next run"
            ));
        }
    }
}

/// Whether `--force` lifts the cap: only for a person at a terminal. A scheduled run or one
/// without a terminal (cron, a remediation) asking for it is a usage error, so that an
/// unattended run can never delete past the cap.
pub fn lifted(force: bool, scheduled: bool) -> anyhow::Result<bool> {
    use std::io::IsTerminal;
    if !force {
        return Ok(false);
    }
    if scheduled {
        return Err(UsageError(
            "--force is refused for a --scheduled run: unattended runs keep the blast-radius cap".into(),
        )
        .into());
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            "--force is refused without a terminal: unattended runs keep the blast-radius cap (cleanup.max_delete_share)"
                .into(),
        )
        .into());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_admits_up_to_its_share_and_bytes_then_nothing() {
        let settings = CleanupSettings::default();
        let mut cap = Cap::new(&settings, 1000, false);
        assert_eq!(cap.max_items, Some(250));
        assert!((0..250).all(|_| cap.admit(10)));
        assert!(!cap.admit(10));
        assert!(cap.hit.as_deref().is_some_and(|h| h.contains("250 entries")), "{cap:?}");
        let mut cap = Cap::new(&settings, 1_000_000, false);
        assert!(cap.admit(settings.max_delete_bytes.as_u64()));
        assert!(!cap.admit(1));
        assert!(cap.hit.as_deref().is_some_and(|h| h.contains("max_delete_bytes")));
        assert!(!cap.admit(0), "nothing more once hit");
        let mut lifted = Cap::new(&settings, 10, true);
        assert!((0..100).all(|_| lifted.admit(1 << 40)));
    }
}
