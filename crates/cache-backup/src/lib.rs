//! cache-backup: checksummed backups of every cache tier, verified, restorable and pruned.
//!
//! A backup is one directory: the Redis RDB (or a logical export where the server allows
//! neither the dump file nor replication), the PostgreSQL cache table (schema and COPY data),
//! the memories of each memory-API target's user (JSON Lines, through the API), the
//! configuration and the state directory as tar.gz, and a manifest with the size and SHA-256 of
//! every file, written last. A Redis Cluster is backed up on every primary, one dump per
//! primary with its node and slots in the manifest, and restored key by key, routed by slot,
//! or (`--replace-dump`, into a cluster of the same shape) each shard's RDB in place of its
//! primary's dump file.

pub mod cluster_dump;
pub mod commands;
pub mod crypt;
pub mod drill;
pub mod dump_file;
pub mod manifest;
pub mod memory_dump;
pub mod pg_dump;
pub mod redis_dump;
pub mod remote;
pub mod retention;
pub mod scratch;
pub mod store;

use std::process::ExitCode;

use cache_core::app::{self, ToolCli};
use cache_core::cli::{CommonArgs, CompletionsArgs, FormatArgs, MutationArgs};
use cache_core::exit::Convention;
use clap::{Parser, Subcommand};

/// Checksummed backups of every cache tier, verified, restorable and pruned.
#[derive(Debug, Parser)]
#[command(
    name = "cache-backup",
    bin_name = "cache-backup",
    version,
    about = "Checksummed backups of every cache tier, verified, restorable and pruned",
    after_help = "Examples:\n  cache-backup create -q\n  cache-backup verify --all\n  \
                  cache-backup restore latest --postgres merge --yes\n  cache-backup prune --dry-run"
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Dry run and confirmation (restore and prune).
    #[command(flatten)]
    pub mutation: MutationArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What a backup may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Every Redis target's dataset
    Redis,
    /// Every PostgreSQL target's cache table
    Postgres,
    /// Every memory target's memories of the configured user, through the API
    Memory,
    /// The configuration file
    Config,
    /// The state directory (histories, reports; not the backups)
    State,
    /// The directories of `backup.paths`
    Paths,
}

/// cache-backup's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a backup
    Create {
        /// Only these parts [default: all]
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<Part>,
        /// gzip level, 1 (fast) to 9 (small) [default: backup.level]
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=9))]
        level: Option<u32>,
    },
    /// List the backups: age, size, contents, last verification
    List {
        /// The backups on this remote (`[[backup.remote]]` name) instead of the local ones
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// Re-read every file: sizes, SHA-256, gzip integrity, RDB header
    Verify {
        /// `latest`, an id, or a date (YYYY-MM-DD)
        #[arg(default_value = "latest", conflicts_with = "all")]
        backup: String,
        /// Verify every backup
        #[arg(long)]
        all: bool,
        /// Download the backup from this remote and check it there (size, SHA-256, gzip)
        #[arg(long, value_name = "NAME", conflicts_with = "all")]
        remote: Option<String>,
    },
    /// Verify a backup, prove its RDB loads, then restore it into the configured targets
    Restore {
        /// `latest`, an id, or a date (YYYY-MM-DD: the newest of that day)
        #[arg(default_value = "latest")]
        backup: String,
        /// The newest backup of this day (YYYY-MM-DD), instead of naming one
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
        date: Option<String>,
        /// How cache-table rows come back (needed when the backup holds a table)
        #[arg(long, value_enum)]
        postgres: Option<pg_dump::Mode>,
        /// Also extract the configuration, state and path archives into DIR (refusing any
        /// entry that would land outside it)
        #[arg(long, value_name = "DIR")]
        extract_files: Option<std::path::PathBuf>,
        /// For a Redis server on this host: put the RDB in place of its dump file (keeping the
        /// old one beside it) and reload it, instead of restoring key by key; for a cluster of
        /// the backup's shape, each shard's RDB on the primary serving its slots
        #[arg(long)]
        replace_dump: bool,
        /// Bring the backup from this remote (`[[backup.remote]]` name) first: for a host
        /// whose local backups are gone
        #[arg(long, value_name = "NAME")]
        from_remote: Option<String>,
        /// The age identity file that decrypts an encrypted backup [default:
        /// backup.identity_file]
        #[arg(long, value_name = "FILE")]
        identity: Option<std::path::PathBuf>,
        /// Also consider partial backups (a source failed when they were taken): `latest` and
        /// a date then take the newest backup whatever it lacks, and a partial one named by
        /// its id is restored; what it lacks is reported as not restored
        #[arg(long)]
        allow_partial: bool,
    },
    /// Disaster-recovery drill: restore a backup into scratch servers (no configured target
    /// is touched) and compare it with the figures its manifest recorded
    Drill {
        /// `latest` or an id
        #[arg(default_value = "latest")]
        backup: String,
        /// The age identity file that decrypts an encrypted backup [default:
        /// backup.identity_file]
        #[arg(long, value_name = "FILE")]
        identity: Option<std::path::PathBuf>,
    },
    /// Remove backups no retention rule keeps (never the newest verified one)
    Prune,
    /// Show or change when the backup job runs (kept in the scheduler's state)
    Schedule {
        /// A new five-field cron expression, e.g. "30 2 * * *"
        #[arg(long, value_name = "CRON", conflicts_with = "reset")]
        set: Option<String>,
        /// Run the job on schedule
        #[arg(long, conflicts_with_all = ["disable", "reset"])]
        enable: bool,
        /// Stop running the job on schedule
        #[arg(long, conflicts_with = "reset")]
        disable: bool,
        /// Back to the documented schedule
        #[arg(long)]
        reset: bool,
    },
    /// Print shell completions
    Completions(CompletionsArgs),
}

fn parse_day(s: &str) -> Result<String, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|_| s.to_owned())
        .map_err(|e| format!("`{s}`: {e} (expected YYYY-MM-DD)"))
}

impl ToolCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn runs_a_job(&self) -> bool {
        matches!(
            self.command,
            Command::Create { .. }
                | Command::Verify { .. }
                | Command::Restore { .. }
                | Command::Drill { .. }
                | Command::Prune
        )
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
        for argv in [
            &["cache-backup", "create", "--only", "redis,postgres", "--level", "9"][..],
            &["cache-backup", "create", "--only", "memory"],
            &["cache-backup", "restore", "latest", "--tier", "memory", "--dry-run"],
            &["cache-backup", "verify", "--all"],
            &["cache-backup", "restore", "2026-11-20", "--postgres", "merge", "--yes"],
            &["cache-backup", "restore", "--date", "2026-11-20", "--dry-run"],
            &["cache-backup", "restore", "latest", "--allow-partial", "--tier", "redis", "--yes"],
            &["cache-backup", "prune", "--dry-run"],
            &["cache-backup", "drill"],
            &["cache-backup", "drill", "20261130T010002Z", "--identity", "k.txt", "-q"],
            &["cache-backup", "list", "--format", "json"],
            &["cache-backup", "schedule", "--set", "30 2 * * *", "--disable"],
        ] {
            Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        for (argv, kind) in [
            (&["cache-backup", "create", "--level", "0"][..], ErrorKind::ValueValidation),
            (&["cache-backup", "create", "--only", "disk"], ErrorKind::InvalidValue),
            (&["cache-backup", "verify", "x", "--all"], ErrorKind::ArgumentConflict),
            (&["cache-backup", "restore", "--postgres", "upsert"], ErrorKind::InvalidValue),
            (&["cache-backup", "schedule", "--enable", "--disable"], ErrorKind::ArgumentConflict),
            (&["cache-backup", "restore", "--date", "yesterday"], ErrorKind::ValueValidation),
        ] {
            assert_eq!(Cli::try_parse_from(argv).expect_err("should fail").kind(), kind, "{argv:?}");
        }
    }
}
