//! cache-optimizer: seed 002's CacheOptimizer over a week of analytics history and what the
//! servers show, safe optimizations with rollback points (seed 003), cache warming from the
//! PostgreSQL cache table into Redis, and one-off runs in a low-usage window.

pub mod analyze;
pub mod apply;
pub mod model;
pub mod oneoff;
pub mod warm;

use std::process::ExitCode;

use cache_core::app::{self, ToolCli};
use cache_core::cli::{CommonArgs, CompletionsArgs, TextOrJson};
use cache_core::exit::Convention;
use clap::{Parser, Subcommand};

/// Recommendations, safe optimizations with rollback, and cache warming.
#[derive(Debug, Parser)]
#[command(
    name = "cache-optimizer",
    bin_name = "cache-optimizer",
    version,
    about = "Recommendations, safe optimizations with rollback, and cache warming",
    after_help = "Examples:\n  cache-optimizer analyze\n  cache-optimizer run --dry-run\n  \
                  cache-optimizer run --apply\n  cache-optimizer rollback latest\n  \
                  cache-optimizer warm --dry-run --force\n  cache-optimizer schedule --next-window"
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// cache-optimizer's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyze the last 7 days and the servers; write `optimization_report_<date>.json`
    Analyze {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Apply the safe recommendations (and configuration changes with --apply), recording a
    /// rollback point first
    Run {
        /// Also apply configuration changes (maxmemory-policy, table storage parameters)
        #[arg(long)]
        apply: bool,
        /// Change nothing: list what would be done
        #[arg(long)]
        dry_run: bool,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Put back every value a run changed
    Rollback {
        /// The rollback point's id, or `latest`
        #[arg(required_unless_present = "list")]
        id: Option<String>,
        /// List the rollback points instead
        #[arg(long, conflicts_with = "id")]
        list: bool,
        /// Change nothing: list what would be restored
        #[arg(long)]
        dry_run: bool,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Copy the hottest PostgreSQL cache entries into Redis before a busy hour
    Warm {
        /// PostgreSQL target to read (default: the first)
        #[arg(long, value_name = "NAME")]
        from: Option<String>,
        /// Redis target to fill (default: the first)
        #[arg(long, value_name = "NAME")]
        into: Option<String>,
        /// Entries to copy at most (default: optimizer.warm_max_entries)
        #[arg(long, value_name = "N")]
        max_entries: Option<u64>,
        /// Warm even when the next hour is not busy, or there is no usage profile yet
        #[arg(long)]
        force: bool,
        /// Change nothing: list what would be copied
        #[arg(long)]
        dry_run: bool,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Schedule a one-off optimization at a time or in the next low-usage window
    Schedule {
        /// When: RFC 3339, or `YYYY-MM-DD HH:MM` in UTC
        #[arg(long, value_name = "TIME", group = "what")]
        at: Option<String>,
        /// At the start of the next low-usage window found by `cache-analytics windows`
        #[arg(long, group = "what")]
        next_window: bool,
        /// List the scheduled optimizations
        #[arg(long, group = "what")]
        list: bool,
        /// Cancel a scheduled optimization
        #[arg(long, value_name = "ID", group = "what")]
        cancel: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Print shell completions
    Completions(CompletionsArgs),
}

impl ToolCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn runs_a_job(&self) -> bool {
        matches!(self.command, Command::Run { .. } | Command::Rollback { .. } | Command::Warm { .. })
    }
}

/// The process entry point, shared by the binary and the test shim.
pub fn main() -> ExitCode {
    app::main::<Cli, _, _>(Convention::Standard, run)
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let common = &cli.common;
    match cli.command {
        Command::Analyze { format } => analyze::run(common, format.into()).await,
        Command::Run { apply, dry_run, format } => apply::run(common, format.into(), apply, dry_run).await,
        Command::Rollback { id, list, dry_run, format } => {
            apply::rollback(common, format.into(), id.as_deref(), list, dry_run).await
        }
        Command::Warm { from, into, max_entries, force, dry_run, format } => {
            warm::run(common, format.into(), warm::WarmOptions { from, into, max_entries, force, dry_run }).await
        }
        Command::Schedule { at, next_window, list, cancel, format } => {
            let request = match (at, cancel) {
                (Some(at), _) => oneoff::Request::At(at),
                (_, Some(id)) => oneoff::Request::Cancel(id),
                _ if next_window => oneoff::Request::NextWindow,
                _ if list => oneoff::Request::List,
                _ => oneoff::Request::List,
            };
            oneoff::run(common, format.into(), request)
        }
        Command::Completions(args) => app::print_completions::<Cli>(args.shell),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["cache-optimizer", "rollback"]).is_err());
        Cli::try_parse_from(["cache-optimizer", "rollback", "--list"]).unwrap();
        assert!(Cli::try_parse_from(["cache-optimizer", "schedule", "--at", "x", "--next-window"]).is_err());
    }
}
