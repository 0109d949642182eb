//! Integration tests: every tool run as a real process against real servers.

#![allow(clippy::unwrap_used, clippy::print_stderr, reason = "tests: panics are failures")]

mod health;

/// The `cache-health` binary built in this package.
pub(crate) const HEALTH: &str = env!("CARGO_BIN_EXE_cache-health-dup");
