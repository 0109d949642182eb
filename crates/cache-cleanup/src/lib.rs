//! cache-cleanup: smart, safe, fast cleanup of every cache tier.
//!
//! Modes follow seed 000's decision tree (`smart` picks one from the cache's size, recent
//! activity and hit ratio). Every tier's target is cleaned concurrently; each run holds the
//! `cleanup` job lock, records what it did per target, and deletes nothing without `--yes`
//! (or a "y" at the terminal). `--dry-run` lists each selected item with its reason. Memories
//! and live cache rows go into an undo journal before they are deleted; `undo` puts them back.

pub mod cap;
pub mod commands;
pub mod plan;
pub mod report;
pub mod tiers;
pub mod undo;

use std::process::ExitCode;

use cache_core::app::{self, ToolCli};
use cache_core::cli::{CommonArgs, CompletionsArgs, FormatArgs, MutationArgs};
use cache_core::exit::Convention;
use clap::{Parser, Subcommand};

use crate::plan::Mode;

/// Smart, safe, fast cleanup of every cache tier.
#[derive(Debug, Parser)]
#[command(
    name = "cache-cleanup",
    bin_name = "cache-cleanup",
    version,
    about = "Smart, safe, fast cleanup of every cache tier",
    long_about = "Cleans Redis (TTL repair, idle, orphaned and oversized keys, eviction to a memory \
                  target), the PostgreSQL cache table (expired and stale rows, in bounded \
                  statements), the memory API (duplicate and stale memories), file caches (TTL \
                  and size cap) and logs (rotation, gzip, retention).\n\n\
                  Nothing is deleted without --yes (or a \"y\" at the terminal); --dry-run lists \
                  what would be done and why. Protected patterns are never touched. A run deletes \
                  at most cleanup.max_delete_share of a target's entries; memories and live cache \
                  rows go into an undo journal first, and `undo` puts them back.",
    after_help = "Examples:\n  cache-cleanup smart --dry-run\n  cache-cleanup smart --yes -q        \
                  # from cron\n  cache-cleanup category payments --mode targeted --yes\n  \
                  cache-cleanup light --tier redis:main --resume --yes\n  \
                  cache-cleanup undo latest --dry-run"
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Dry run and confirmation.
    #[command(flatten)]
    pub mutation: MutationArgs,
    /// Keys examined per second at most, to spare a busy server [default: cleanup.max_ops_per_sec]
    #[arg(long, global = true, value_name = "N")]
    pub max_ops_per_sec: Option<u32>,
    /// Continue an interrupted Redis pass from its saved cursor
    #[arg(long, global = true)]
    pub resume: bool,
    /// Lift the blast-radius cap (cleanup.max_delete_share, max_delete_bytes) for this run; only
    /// at a terminal, never with --scheduled
    #[arg(long, global = true)]
    pub force: bool,
    /// What to clean.
    #[command(subcommand)]
    pub command: Command,
}

/// cache-cleanup's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pick a mode from the size, recent activity and hit ratio (seed 000), say why, and run it
    Smart,
    /// TTL repair, expired rows, file TTLs, log rotation
    Light,
    /// Light, plus idle keys, stale rows and duplicate memories
    Moderate,
    /// Shorter thresholds than moderate, plus oversized keys
    Targeted,
    /// Orphans, oversized and idle keys, stale memories, down to a memory target
    Aggressive,
    /// Redis only: the idlest keys, until used memory is down to the memory target
    /// (cleanup.modes.evict); what a memory alert's remediation runs
    Evict,
    /// Run a mode on one category only (key segment, category column, memory category)
    Category {
        /// The category, e.g. `payments`
        name: String,
        /// The mode to run
        #[arg(long, value_enum, default_value = "moderate")]
        mode: Mode,
    },
    /// File caches only: TTL and size cap
    Files,
    /// Logs only: rotate, compress, expire
    Logs,
    /// The memory API only: duplicate and stale memories
    Memory {
        /// The mode whose policy applies
        #[arg(long, value_enum, default_value = "moderate")]
        mode: Mode,
    },
    /// Put back what a run deleted (memories, live cache rows) from its undo journal; without a
    /// run, list the journals
    Undo {
        /// The run's id (`run_id` in the report), or `latest`
        run: Option<String>,
        /// List the journals: runs, targets, items, whether undone
        #[arg(long, conflicts_with = "run")]
        list: bool,
    },
    /// Print shell completions
    Completions(CompletionsArgs),
}

impl ToolCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn runs_a_job(&self) -> bool {
        !matches!(self.command, Command::Completions(_))
    }
}

/// The process entry point, shared by the binary and the test shim.
pub fn main() -> ExitCode {
    app::main::<Cli, _, _>(Convention::Standard, run)
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Command::Completions(args) = &cli.command {
        return app::print_completions::<Cli>(args.shell);
    }
    if let Command::Undo { run, list } = &cli.command {
        let run = if *list { None } else { run.clone() };
        return undo::run(&cli, run.as_deref()).await;
    }
    commands::run(cli).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn argument_parsing() {
        let ok: &[&[&str]] = &[
            &["cache-cleanup", "smart", "--dry-run"],
            &["cache-cleanup", "aggressive", "--yes", "--tier", "redis:main"],
            &["cache-cleanup", "category", "payments", "--mode", "targeted", "-y"],
            &["cache-cleanup", "light", "--resume", "--max-ops-per-sec", "5000", "--format", "json"],
            &["cache-cleanup", "memory", "--mode", "aggressive", "--dry-run"],
            &["cache-cleanup", "files", "-q"],
            &["cache-cleanup", "undo", "latest", "--dry-run"],
            &["cache-cleanup", "undo", "20260101T000000.000Z-42", "--yes"],
            &["cache-cleanup", "undo", "--list", "--format", "json"],
            &["cache-cleanup", "undo"],
        ];
        for argv in ok {
            Cli::try_parse_from(*argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        let bad: &[(&[&str], ErrorKind)] = &[
            (&["cache-cleanup", "smart", "--dry-run", "--yes"], ErrorKind::ArgumentConflict),
            (&["cache-cleanup", "category"], ErrorKind::MissingRequiredArgument),
            (&["cache-cleanup", "category", "x", "--mode", "nuclear"], ErrorKind::InvalidValue),
            (&["cache-cleanup", "light", "--max-ops-per-sec", "fast"], ErrorKind::ValueValidation),
            (&["cache-cleanup"], ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand),
            (&["cache-cleanup", "undo", "latest", "--list"], ErrorKind::ArgumentConflict),
        ];
        for (argv, kind) in bad {
            assert_eq!(Cli::try_parse_from(*argv).expect_err("should fail").kind(), *kind, "{argv:?}");
        }
    }
}
