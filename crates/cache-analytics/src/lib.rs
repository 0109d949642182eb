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
    /// Output format: text or json for what a command prints (the default: text); for
    /// `export` what it writes: json (the default), csv or prometheus
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every format of `--format`; each command takes those it can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and sentences for people
    Text,
    /// One JSON document
    Json,
    /// Rows of `timestamp,tier,target,metric,value` (`export` only)
    Csv,
    /// The Prometheus text exposition format (`export` only)
    Prometheus,
}

impl Format {
    /// The format of a command that prints text or JSON (text when none was given).
    fn text_or_json(format: Option<Self>, command: &str) -> anyhow::Result<cache_core::output::Format> {
        match format {
            None | Some(Self::Text) => Ok(cache_core::output::Format::Text),
            Some(Self::Json) => Ok(cache_core::output::Format::Json),
            Some(other) => Err(cache_core::error::UsageError(format!(
                "`{command}` prints text or json, not {}; `export` writes csv and prometheus",
                other.name()
            ))
            .into()),
        }
    }

    /// What `export` writes (JSON when none was given).
    fn export(format: Option<Self>) -> anyhow::Result<ExportFormat> {
        match format {
            None | Some(Self::Json) => Ok(ExportFormat::Json),
            Some(Self::Csv) => Ok(ExportFormat::Csv),
            Some(Self::Prometheus) => Ok(ExportFormat::Prometheus),
            Some(Self::Text) => {
                Err(cache_core::error::UsageError("`export` writes json, csv or prometheus, not text".into()).into())
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Prometheus => "prometheus",
        }
    }
}

/// What `export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    Collect,
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
    },
    /// Forecast each Redis target 7 days ahead: memory (and when it reaches maxmemory), hit
    /// ratio, latency
    Forecast,
    /// Find the low-usage windows of the day and leave them for the scheduler
    Windows,
    /// Print shell completions
    Completions(CompletionsArgs),
}

impl ToolCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn runs_a_job(&self) -> bool {
        matches!(self.command, Command::Collect | Command::Generate { .. })
    }
}

/// The process entry point, shared by the binary and the test shim.
pub fn main() -> ExitCode {
    app::main::<Cli, _, _>(Convention::Standard, run)
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let format = cli.format;
    if format.is_some() && matches!(cli.command, Command::Dashboard { .. }) {
        return Err(cache_core::error::UsageError("`dashboard` writes HTML and takes no --format".into()).into());
    }
    match cli.command {
        Command::Collect => collect::run(&cli.common, Format::text_or_json(format, "collect")?).await,
        Command::Dashboard { output, serve, follow_symlinks } => {
            dashboard::run(&cli.common, output.as_deref(), serve.as_deref(), follow_symlinks)
        }
        Command::Export { output, follow_symlinks } => {
            export::run(&cli.common, Format::export(format)?, output.as_deref(), follow_symlinks)
        }
        Command::Generate { period, date } => {
            report::run(&cli.common, Format::text_or_json(format, "generate")?, period, date).await
        }
        Command::Forecast => predict::run_forecast(&cli.common, Format::text_or_json(format, "forecast")?),
        Command::Windows => predict::run_windows(&cli.common, Format::text_or_json(format, "windows")?),
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
        // Before or after the subcommand alike.
        let cli = Cli::try_parse_from(["cache-analytics", "--format", "json", "forecast"]).unwrap();
        assert_eq!(cli.format, Some(Format::Json));
        assert_eq!(Format::export(None).unwrap(), ExportFormat::Json);
        assert!(Format::text_or_json(Some(Format::Csv), "forecast").is_err());
    }
}
