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
use cache_core::cli::{CommonArgs, CompletionsArgs, FormatArgs, MutationArgs};
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
                  cache-optimizer run --apply --yes\n  cache-optimizer rollback latest --yes\n  \
                  cache-optimizer warm --dry-run --force\n  cache-optimizer schedule --next-window"
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// `--dry-run` and `--yes`, shared by every command that changes something.
    #[command(flatten)]
    pub mutation: MutationArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// cache-optimizer's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyze the last 7 days and the servers; write `optimization_report_<date>.json`
    Analyze,
    /// Apply the safe recommendations (and configuration changes with --apply), recording a
    /// rollback point first
    Run {
        /// Also apply configuration changes (maxmemory-policy, table storage parameters)
        #[arg(long)]
        apply: bool,
    },
    /// Put back every value a run changed
    Rollback {
        /// The rollback point's id, or `latest`
        #[arg(required_unless_present = "list")]
        id: Option<String>,
        /// List the rollback points instead
        #[arg(long, conflicts_with = "id")]
        list: bool,
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
    let format = cli.format.format;
    // Like every command that changes something: a dry run, `--yes`, or a "y" at the terminal.
    let dry_run = |what: &str| cli.mutation.confirm(what).map(|go| !go);
    match cli.command {
        Command::Analyze => analyze::run(common, format.into()).await,
        Command::Run { apply } => {
            let dry_run = dry_run("apply the safe optimizations")?;
            apply::run(common, format.into(), apply, dry_run).await
        }
        Command::Rollback { id, list } => {
            let dry_run = if list { true } else { dry_run("put back the values the run changed")? };
            apply::rollback(common, format.into(), id.as_deref(), list, dry_run).await
        }
        Command::Warm { from, into, max_entries, force } => {
            let dry_run = dry_run("copy the hottest cache entries into Redis")?;
            warm::run(common, format.into(), warm::WarmOptions { from, into, max_entries, force, dry_run }).await
        }
        Command::Schedule { at, next_window, list, cancel } => {
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
    use cache_core::cli::TextOrJson;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["cache-optimizer", "rollback"]).is_err());
        Cli::try_parse_from(["cache-optimizer", "rollback", "--list"]).unwrap();
        assert!(Cli::try_parse_from(["cache-optimizer", "schedule", "--at", "x", "--next-window"]).is_err());
        // One CLI shape: the format before or after the subcommand, the shared --dry-run/--yes.
        let cli = Cli::try_parse_from(["cache-optimizer", "--format", "json", "analyze"]).unwrap();
        assert_eq!(cli.format.format, TextOrJson::Json);
        assert!(Cli::try_parse_from(["cache-optimizer", "run", "--yes"]).unwrap().mutation.yes);
        assert!(Cli::try_parse_from(["cache-optimizer", "run", "--dry-run", "--yes"]).is_err());
    }
}
