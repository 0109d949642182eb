//! cache-debug: the diagnostics an on-call engineer reaches for first (seed 000's
//! `cache-debug performance|connections|memory`, seed 002's monitoring commands, seed 004's
//! memory and log analysis and security audit). Every section that a server refuses (hosted
//! Redis without SLOWLOG, OBJECT, CONFIG or CLIENT) says "not supported on this server" and
//! the rest goes on.

pub mod config_view;
pub mod connections;
pub mod logs;
pub mod memory;
pub mod performance;
pub mod security;

use std::process::ExitCode;

use cache_core::app::{self, Context, ToolCli};
use cache_core::cli::{CommonArgs, CompletionsArgs, FormatArgs};
use cache_core::exit::{Convention, Reach, Tally};
use clap::{Parser, Subcommand};

/// Diagnostics of every cache tier.
#[derive(Debug, Parser)]
#[command(
    name = "cache-debug",
    bin_name = "cache-debug",
    version,
    about = "Diagnostics of every cache tier: performance, connections, memory, logs, security, configuration",
    after_help = "Examples:\n  cache-debug performance --samples 100\n  cache-debug memory --top 20\n  \
                  cache-debug memory --sample 100000 --tier redis:main\n  cache-debug connections\n  \
                  cache-debug logs --days 7\n  cache-debug security\n  cache-debug security --fail-under 80\n  cache-debug config"
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// What to look at.
    #[command(subcommand)]
    pub command: Command,
}

/// cache-debug's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Latency per tier (like redis-cli --latency), SLOWLOG, command statistics,
    /// pg_stat_statements, the cache table's query time
    Performance {
        /// Samples per tier
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        samples: u32,
        /// Entries of each top list
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Redis clients and PostgreSQL backends, summarised against their limits
    Connections,
    /// INFO memory, MEMORY DOCTOR, the biggest keys, memory per prefix with TTL and idle
    /// buckets, table and index sizes, file caches
    Memory {
        /// Look at this many keys instead of all (a SCAN sample)
        #[arg(long, value_name = "N")]
        sample: Option<u64>,
        /// Keys in the top list
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Prefix groups kept (the biggest by memory and by keys); the rest are folded into
        /// `(other)`, so memory and the report stay bounded however many prefixes there are
        #[arg(long, value_name = "N", default_value_t = cache_core::groups::DEFAULT_MAX_GROUPS as u32,
              value_parser = clap::value_parser!(u32).range(2..=100_000))]
        max_groups: u32,
    },
    /// Error patterns in the configured logs over the last days, rotations included
    Logs {
        /// How many days back
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Permissions, authentication and encryption audit with a score and a fix per finding:
    /// configuration, state, backup, cache (model caches included) and log directories, the
    /// toolkit's binaries, Redis, PostgreSQL, the memory API and alert channels
    Security {
        /// Exit 6 (MISMATCH) when the score is under SCORE: a gate for cron and CI
        #[arg(long, value_name = "SCORE", value_parser = clap::value_parser!(u32).range(0..=100))]
        fail_under: Option<u32>,
    },
    /// The merged configuration, secrets redacted, and where each value came from
    Config,
    /// Print shell completions
    Completions(CompletionsArgs),
}

impl ToolCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn runs_a_job(&self) -> bool {
        false
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
    let ctx = Context::load(&cli.common, cli.format.format.into(), Convention::Standard)?;
    match cli.command {
        Command::Performance { samples, top } => performance::run(&ctx, samples, top).await,
        Command::Connections => connections::run(&ctx).await,
        Command::Memory { sample, top, max_groups } => memory::run(&ctx, sample, top, max_groups as usize).await,
        Command::Logs { days } => logs::run(&ctx, days),
        Command::Security { fail_under } => security::run(&ctx, fail_under).await,
        Command::Config => config_view::run(&ctx),
        Command::Completions(_) => unreachable!("handled above"),
    }
}

/// The section of a target that could not be looked at: the error, and `"unreachable": true`
/// when it is one (what [`code`] counts).
pub(crate) fn failed(name: &str, e: &anyhow::Error) -> serde_json::Value {
    let unreachable = Reach::of_error(e) == Reach::Unreachable;
    serde_json::json!({
        "target": name,
        "error": cache_core::messages::clip(&format!("{e:#}"), cache_core::messages::MAX_LINE),
        "unreachable": unreachable,
    })
}

/// The exit code of a command over its targets' `sections`: every target unreachable is
/// `UNREACHABLE` (nothing could be looked at), any section with an error, or with figures of
/// a part only (`"complete": false`), `PARTIAL`.
pub(crate) fn code<'a>(sections: impl IntoIterator<Item = &'a serde_json::Value>) -> u8 {
    let reach = |s: &serde_json::Value| match (s.get("error").is_some(), s["unreachable"] == true) {
        (_, true) => Reach::Unreachable,
        (true, false) => Reach::Failed,
        // A section whose figures are a part only (a scan cut short, a primary not scanned).
        (false, false) if s["complete"] == false => Reach::Failed,
        (false, false) => Reach::Done,
    };
    sections.into_iter().map(reach).collect::<Tally>().code()
}

/// `what`, naming the cluster node it was asked of (``SLOWLOG on `127.0.0.1:7001` ``); plain
/// `what` for a standalone server. The node comes after the words and in backticks, so that the
/// same refusal by every node is one kind of message to [`cache_core::messages::condense`].
pub(crate) fn on(what: &str, node: Option<&str>) -> String {
    match node {
        Some(node) => format!("{what} on `{node}`"),
        None => what.to_owned(),
    }
}

/// A server for notes: `` `host:port` `` of a cluster node, or "the server".
pub(crate) fn server(node: Option<&str>) -> String {
    node.map_or_else(|| "the server".to_owned(), |n| format!("`{n}`"))
}

/// A section a server would not give: `Err(text)` with "not supported on this server", or the
/// error.
pub(crate) fn refused(what: &str, e: &redis::RedisError) -> String {
    if cache_core::clients::redis::is_refused(e) {
        format!("{what}: not supported on this server ({e})")
    } else {
        format!("{what}: {e}")
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_section_unreachable_is_4_and_some_is_1() {
        let down = failed(
            "redis/a",
            &anyhow::Error::new(cache_core::error::Unreachable {
                tier: "redis".into(),
                target: "a".into(),
                message: "refused".into(),
            })
            .context("connecting"),
        );
        let broken = failed("postgres/b", &anyhow::anyhow!("table `t` does not exist"));
        let fine = serde_json::json!({ "target": "redis/c" });
        assert_eq!(down["unreachable"], true);
        assert_eq!(code([&down, &down]), cache_core::exit::UNREACHABLE);
        assert_eq!(code([&down, &fine]), cache_core::exit::PARTIAL);
        assert_eq!(code([&broken]), cache_core::exit::PARTIAL);
        assert_eq!(code([&fine]), cache_core::exit::SUCCESS);
        assert_eq!(code([]), cache_core::exit::SUCCESS);
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["cache-debug", "performance", "--samples", "0"]).is_err());
        assert!(Cli::try_parse_from(["cache-debug", "security", "--fail-under", "101"]).is_err());
        assert!(Cli::try_parse_from(["cache-debug", "security", "--fail-under", "x"]).is_err());
        let cli = Cli::try_parse_from(["cache-debug", "security", "--fail-under", "80"]).unwrap();
        assert!(matches!(cli.command, Command::Security { fail_under: Some(80) }));
    }
}
