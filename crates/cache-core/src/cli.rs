//! Command-line arguments shared by every tool, flattened into each tool's `Cli`.

use std::path::PathBuf;

use clap::ArgAction;

use crate::tier::TierFilter;

/// Options every tool accepts, before or after the subcommand.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Common options")]
pub struct CommonArgs {
    /// Configuration file [default: $CACHE_CONFIG, then ~/.config/cache-toolkit/config.toml,
    /// then /etc/cache-toolkit/config.toml, then the embedded default]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// State directory [default: $CACHE_STATE_DIR, $STATE_DIRECTORY, /var/lib/cache-toolkit for
    /// root, else ~/.local/state/cache-toolkit]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Only these tiers, or one target of a tier (repeatable): redis, postgres, memory, http,
    /// files, logs, system; e.g. `--tier redis:main`
    #[arg(long = "tier", global = true, value_name = "TIER[:NAME]")]
    pub tiers: Vec<TierFilter>,

    /// Wait for another run of the same job to finish instead of exiting at once
    #[arg(long, global = true)]
    pub wait: bool,

    /// Run as scheduled job JOB (the rendered crontab passes it): the scheduler's gates apply
    /// (automation on, windows, dependencies, fleet lock) and the run is recorded as JOB
    #[arg(long, global = true, value_name = "JOB")]
    pub scheduled: Option<String>,

    /// With --scheduled: run a heavy job even outside the maintenance windows
    #[arg(long, global = true, requires = "scheduled")]
    pub emergency: bool,

    /// What started the run, for its record (passed by the scheduler and by cache-health's
    /// automatic actions) [default: cron with --scheduled, else manual]
    #[arg(long, global = true, value_enum, hide = true)]
    pub trigger: Option<crate::runs::Trigger>,

    /// The id the run's record takes (passed by the maintenance API, which answers with it
    /// before the run starts) [default: start time and process id]
    #[arg(long, global = true, hide = true, value_name = "ID", value_parser = crate::runs::parse_run_id)]
    pub run_id: Option<String>,

    /// More log output on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less output: -q prints nothing on success, -qq not even warnings
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
}

/// `--format text|json`, for tools without a third format.
#[derive(clap::Args, Clone, Debug)]
pub struct FormatArgs {
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = TextOrJson::Text)]
    pub format: TextOrJson,
}

/// The two formats every tool has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TextOrJson {
    /// Tables and sentences for people
    Text,
    /// One JSON document on stdout, with `schema_version`
    Json,
}

impl From<TextOrJson> for crate::output::Format {
    fn from(f: TextOrJson) -> Self {
        match f {
            TextOrJson::Text => crate::output::Format::Text,
            TextOrJson::Json => crate::output::Format::Json,
        }
    }
}

/// The `completions` subcommand's argument.
#[derive(clap::Args, Clone, Debug)]
pub struct CompletionsArgs {
    /// Shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of every command that changes or deletes something.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Safety")]
pub struct MutationArgs {
    /// Change nothing: list what would be done, with the reason for each item
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Do it without asking (needed when stdin is not a terminal, as under cron)
    #[arg(long, short = 'y', global = true, conflicts_with = "dry_run")]
    pub yes: bool,
}

impl MutationArgs {
    /// Whether the run may change things: a dry run may not; otherwise `--yes`, or a "y"
    /// typed at the terminal, is needed. Without a terminal and without `--yes` this is a
    /// usage error, so that nothing is ever deleted by default.
    pub fn confirm(&self, what: &str) -> anyhow::Result<bool> {
        use std::io::{BufRead, IsTerminal, Write};
        if self.dry_run {
            return Ok(false);
        }
        if self.yes {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            return Err(crate::error::UsageError(format!(
                "refusing to {what} without --yes (stdin is not a terminal); pass --dry-run to preview"
            ))
            .into());
        }
        let mut stderr = std::io::stderr().lock();
        write!(stderr, "{what}? [y/N] ")?;
        stderr.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            Ok(true)
        } else {
            Err(crate::error::UsageError("cancelled at the prompt".into()).into())
        }
    }
}
