//! cache-analytics: one snapshot of every tier every 15 minutes into a history, and exports of
//! it (JSON, CSV, and the Prometheus text format for node_exporter's textfile collector).

pub mod collect;
pub mod dashboard;
pub mod export;
pub mod predict;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use cache_core::app::{self, ToolCli};
use cache_core::cli::{CommonArgs, CompletionsArgs};
use cache_core::exit::Convention;
use clap::{Parser, Subcommand};

/// Metrics of every cache tier: collection into a history, and export.
#[derive(Debug, Parser)]
#[command(
    name = "cache-analytics",
    bin_name = "cache-analytics",
    version,
    about = "Metrics of every cache tier: collection into a history, and export"
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The latest snapshot as one JSON document
    Json,
    /// Every snapshot's figures, one `timestamp,tier,target,metric,value` row each
    Csv,
    /// The Prometheus text exposition format (classic), with job run times
    Prometheus,
}

/// cache-analytics's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take one snapshot of every tier and append it to the history
    Collect {
        /// Output format of the snapshot printed
        #[arg(long, value_enum, default_value = "text")]
        format: cache_core::cli::TextOrJson,
    },
    /// Write the dashboard: one self-contained HTML page with the status cards and charts
    Dashboard {
        /// Write the page here instead of `analytics/dashboard.html` in the state directory
        #[arg(long, short, value_name = "FILE", conflicts_with = "serve")]
        output: Option<PathBuf>,
        /// With --output: a symbolic link is written where it points (refused otherwise)
        #[arg(long, requires = "output")]
        follow_symlinks: bool,
        /// Serve the page, and `/api/cache/metrics`, on this address until stopped
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
        serve: Option<String>,
    },
    /// Export the history
    Export {
        /// What to write
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Write here (atomically, mode 0644) instead of stdout; a directory (node_exporter's
        /// textfile collector, e.g. /var/lib/prometheus/node-exporter/) gets
        /// `cache-toolkit-<project>.prom`, so several installations never collide
        #[arg(long, short, value_name = "FILE|DIR")]
        output: Option<PathBuf>,
        /// With --output: a symbolic link is written where it points (refused otherwise)
        #[arg(long, requires = "output")]
        follow_symlinks: bool,
    },
    /// Write a report: seed 002's daily metrics, the weekly analysis, or the monthly capacity
    /// report with 6-month projections; each with insights and anomalies
    Generate {
        /// Which report
        #[arg(long, value_enum, default_value = "day")]
        period: report::Period,
        /// The last UTC day the report covers (YYYY-MM-DD); today by default
        #[arg(long, value_name = "DATE")]
        date: Option<chrono::NaiveDate>,
        /// Output format of what is printed (the report file is always JSON)
        #[arg(long, value_enum, default_value = "text")]
        format: cache_core::cli::TextOrJson,
    },
    /// Forecast each Redis target 7 days ahead: memory (and when it reaches maxmemory), hit
    /// ratio, latency
    Forecast {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: cache_core::cli::TextOrJson,
    },
    /// Find the low-usage windows of the day and leave them for the scheduler
    Windows {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: cache_core::cli::TextOrJson,
    },
    /// Print shell completions
    Completions(CompletionsArgs),
}

impl ToolCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn runs_a_job(&self) -> bool {
        matches!(self.command, Command::Collect { .. } | Command::Generate { .. })
    }
}

/// The process entry point, shared by the binary and the test shim.
pub fn main() -> ExitCode {
    app::main::<Cli, _, _>(Convention::Standard, run)
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Collect { format } => collect::run(&cli.common, format.into()).await,
        Command::Dashboard { output, serve, follow_symlinks } => {
            dashboard::run(&cli.common, output.as_deref(), serve.as_deref(), follow_symlinks)
        }
        Command::Export { format, output, follow_symlinks } => {
            export::run(&cli.common, format, output.as_deref(), follow_symlinks)
        }
        Command::Generate { period, date, format } => report::run(&cli.common, format.into(), period, date).await,
        Command::Forecast { format } => predict::run_forecast(&cli.common, format.into()),
        Command::Windows { format } => predict::run_windows(&cli.common, format.into()),
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
        Cli::try_parse_from(["cache-analytics", "export", "--format", "prometheus", "-o", "x.prom"]).unwrap();
        assert!(Cli::try_parse_from(["cache-analytics", "export", "--format", "xml"]).is_err());
    }
}
