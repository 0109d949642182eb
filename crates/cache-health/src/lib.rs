//! cache-health: checks every cache tier and the host, the way a monitoring plugin does.
//!
//! `check` probes every configured target concurrently, each within its own budget, writes
//! `health/comprehensive-health.json` (seed 000's report) and a history line, prints a table,
//! JSON or one monitoring-plugin line, and exits 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN.
//! `monitor` repeats the probes every interval and evaluates alert rules over them: notices
//! through a durable outbox, auto-actions within a budget (see [`alerts`]); `alerts` lists,
//! acknowledges and tests them.

pub mod alerts;
pub mod commands;
pub mod probes;
pub mod report;

use std::process::ExitCode;

use cache_core::app::{self, ToolCli};
use cache_core::cli::{CommonArgs, CompletionsArgs};
use cache_core::exit::Convention;
use cache_core::output::Format;
use clap::{Parser, Subcommand};

/// Health checks of every cache tier, with monitoring-plugin exit codes.
#[derive(Debug, Parser)]
#[command(
    name = "cache-health",
    bin_name = "cache-health",
    version,
    about = "Health checks of every cache tier, with monitoring-plugin exit codes",
    long_about = "Health checks of every cache tier (Redis, PostgreSQL, the memory API, HTTP \
                  endpoints, file caches, logs) and of the host and its GPUs.\n\n\
                  Exit codes follow the monitoring-plugin convention: 0 OK, 1 WARNING, \
                  2 CRITICAL, 3 UNKNOWN (usage, configuration or state errors), and 75 when \
                  another check holds the job lock.",
    after_help = "Run without any configuration to check the host alone: redis, postgres and \
                  memory then report `not_configured`."
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Output format: a table, one JSON document, or one monitoring-plugin line with perfdata
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// cache-health's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe every configured tier once, write the health report and exit with its status
    Check(commands::check::CheckArgs),
    /// Evaluate the alert rules every interval (or once, for cron): notify, self-heal
    Monitor(commands::monitor::MonitorArgs),
    /// List active alerts, acknowledge one, or send a test notification
    Alerts(commands::alerts::AlertsArgs),
    /// Print shell completions
    Completions(CompletionsArgs),
}

impl ToolCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn runs_a_job(&self) -> bool {
        matches!(self.command, Command::Check(_) | Command::Monitor(_))
    }
}

/// The process entry point, shared by the binary and the test shim.
pub fn main() -> ExitCode {
    app::main::<Cli, _, _>(Convention::MonitoringPlugin, run)
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => commands::check::run(&cli.common, cli.format, args).await,
        Command::Monitor(args) => commands::monitor::run(&cli.common, cli.format, args).await,
        Command::Alerts(args) => commands::alerts::run(&cli.common, cli.format, args).await,
        Command::Completions(args) => app::print_completions::<Cli>(args.shell),
    }
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
            &["cache-health", "check"],
            &["cache-health", "check", "--format", "nagios"],
            &["cache-health", "--format", "json", "check", "-q"],
            &["cache-health", "check", "--tier", "redis:main", "--tier", "system"],
            &["cache-health", "check", "--wait", "--state-dir", "/tmp/x", "--config", "c.toml"],
            &["cache-health", "completions", "zsh"],
        ];
        for argv in ok {
            Cli::try_parse_from(*argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        let bad: &[(&[&str], ErrorKind)] = &[
            (&["cache-health"], ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand),
            (&["cache-health", "check", "--format", "xml"], ErrorKind::InvalidValue),
            (&["cache-health", "check", "--tier", "bogus"], ErrorKind::ValueValidation),
            (&["cache-health", "check", "-q", "-v"], ErrorKind::ArgumentConflict),
            (&["cache-health", "frobnicate"], ErrorKind::InvalidSubcommand),
        ];
        for (argv, kind) in bad {
            let err = Cli::try_parse_from(*argv).expect_err("should fail");
            assert_eq!(err.kind(), *kind, "{argv:?}");
        }
    }
}
