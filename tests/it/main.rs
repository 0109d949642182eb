//! Integration tests: every tool run as a real process against real servers.

#![allow(clippy::unwrap_used, clippy::print_stderr, reason = "tests: panics are failures")]

mod alertmanager;
mod analytics;
mod api;
mod backup;
mod bigkeys;
mod cleanup;
mod cli;
mod debug;
mod drill;
mod exit_codes;
mod export;
mod faults;
mod forecast;
mod health;
mod latency;
mod ledger;
mod mem0;
mod monitor;
mod optimizer;
mod recovery;
mod remote;
mod rotation;
mod runs;
mod scheduler;
mod security;
mod upstash;

pub(crate) use health::health_table_sql;

/// The `cache-health` binary built in this package.
pub(crate) const HEALTH: &str = env!("CARGO_BIN_EXE_cache-health-dup");

/// The `cache-cleanup` binary built in this package.
pub(crate) const CLEANUP: &str = env!("CARGO_BIN_EXE_cache-cleanup-dup");

/// The `cache-backup` binary built in this package.
pub(crate) const BACKUP: &str = env!("CARGO_BIN_EXE_cache-backup-dup");

/// The `cache-analytics` binary built in this package.
pub(crate) const ANALYTICS: &str = env!("CARGO_BIN_EXE_cache-analytics-dup");

/// The `cache-optimizer` binary built in this package.
pub(crate) const OPTIMIZER: &str = env!("CARGO_BIN_EXE_cache-optimizer-dup");

/// The `cache-scheduler` binary built in this package.
pub(crate) const SCHEDULER: &str = env!("CARGO_BIN_EXE_cache-scheduler-dup");

/// The `cache-debug` binary built in this package.
pub(crate) const DEBUG: &str = env!("CARGO_BIN_EXE_cache-debug-dup");
