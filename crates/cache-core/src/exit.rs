//! Exit codes, documented in `docs/exit-codes.md`. Codes are added, never renumbered.
//!
//! Most tools use the standard convention below. `cache-health` follows the monitoring-plugin
//! convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) so that Nagios, Icinga and friends can
//! run it directly; [`Convention`] maps the shared failure kinds onto each convention.

use crate::error::{ConfigError, LockHeld, StateError, Unreachable, UsageError};

/// The run did everything it was asked to.
pub const SUCCESS: u8 = 0;
/// The run finished, but some items failed (each one was reported).
pub const PARTIAL: u8 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: u8 = 2;
/// The configuration file or an environment override is invalid.
pub const CONFIG: u8 = 3;
/// A tier the command needs could not be reached.
pub const UNREACHABLE: u8 = 4;
/// The state directory is unusable, or a state file is corrupt.
pub const STATE: u8 = 5;
/// Another run of the same job holds its lock (`EX_TEMPFAIL`: try again later).
pub const LOCKED: u8 = 75;

/// Monitoring-plugin codes used by `cache-health`.
pub mod plugin {
    /// Every probe is healthy (or not configured).
    pub const OK: u8 = 0;
    /// At least one probe is degraded.
    pub const WARNING: u8 = 1;
    /// At least one probe failed.
    pub const CRITICAL: u8 = 2;
    /// The check could not be run: usage, configuration or state error.
    pub const UNKNOWN: u8 = 3;
}

/// Which exit-code convention a tool follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// The toolkit's own codes (the constants in this module).
    Standard,
    /// The monitoring-plugin codes (see [`plugin`]); the lock code stays [`LOCKED`].
    MonitoringPlugin,
}

impl Convention {
    /// The code for a command-line usage error.
    pub fn usage(self) -> u8 {
        match self {
            Convention::Standard => USAGE,
            Convention::MonitoringPlugin => plugin::UNKNOWN,
        }
    }

    /// The code for an error that ended the run, chosen by the error's kind.
    pub fn for_error(self, error: &anyhow::Error) -> u8 {
        let standard = if error.downcast_ref::<LockHeld>().is_some() {
            LOCKED
        } else if error.downcast_ref::<ConfigError>().is_some() {
            CONFIG
        } else if error.downcast_ref::<StateError>().is_some() {
            STATE
        } else if error.downcast_ref::<Unreachable>().is_some() {
            UNREACHABLE
        } else if error.downcast_ref::<UsageError>().is_some() {
            USAGE
        } else {
            PARTIAL
        };
        match (self, standard) {
            (_, LOCKED) => LOCKED,
            (Convention::Standard, code) => code,
            (Convention::MonitoringPlugin, _) => plugin::UNKNOWN,
        }
    }
}

/// Every documented code with its meaning, for generated documentation and tests.
pub const TABLE: &[(u8, &str, &str)] = &[
    (SUCCESS, "SUCCESS", "the run did everything it was asked to"),
    (PARTIAL, "PARTIAL", "the run finished, but some items failed (each is reported)"),
    (USAGE, "USAGE", "bad command-line usage"),
    (CONFIG, "CONFIG", "the configuration file or an environment override is invalid"),
    (UNREACHABLE, "UNREACHABLE", "a tier the command needs could not be reached"),
    (STATE, "STATE", "the state directory is unusable or a state file is corrupt"),
    (LOCKED, "LOCKED", "another run of the same job holds its lock"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<u8> = TABLE.iter().map(|(code, _, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len());
    }

    #[test]
    fn plugin_convention_maps_failures_to_unknown_but_keeps_lock_code() {
        let config = anyhow::Error::new(ConfigError::new("f.toml", "redis", "bad"));
        assert_eq!(Convention::MonitoringPlugin.for_error(&config), plugin::UNKNOWN);
        assert_eq!(Convention::Standard.for_error(&config), CONFIG);
        let lock = anyhow::Error::new(LockHeld { job: "j".into(), holder: None });
        assert_eq!(Convention::MonitoringPlugin.for_error(&lock), LOCKED);
        let other = anyhow::anyhow!("boom");
        assert_eq!(Convention::Standard.for_error(&other), PARTIAL);
        assert_eq!(Convention::MonitoringPlugin.usage(), plugin::UNKNOWN);
    }
}
