//! cache-scheduler: seed 000's documented schedule (`cache_core::schedule`) rendered for cron,
//! systemd and Kubernetes and installed; automation turned on and off; maintenance windows;
//! and the status of every job.

pub mod crontab;
pub mod optimize;
pub mod render;
pub mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cache_core::app::{self, Context, ToolCli};
use cache_core::cli::{CommonArgs, CompletionsArgs, TextOrJson};
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention};
use cache_core::gate::{AUTOMATION_FILE, Automation, WINDOWS_FILE, Window, Windows};
use cache_core::output::Format;
use cache_core::schedule;
use clap::{Parser, Subcommand};

/// The documented schedule, installed and watched.
#[derive(Debug, Parser)]
#[command(
    name = "cache-scheduler",
    bin_name = "cache-scheduler",
    version,
    about = "The documented schedule, installed for cron, systemd or Kubernetes, and watched",
    after_help = "Examples:\n  cache-scheduler init\n  cache-scheduler install --print\n  cache-scheduler install\n  \
                  cache-scheduler install --cron-d\n  cache-scheduler install --systemd /etc/systemd/system\n  \
                  cache-scheduler status\n  cache-scheduler stop --reason 'migration'\n  \
                  cache-scheduler windows add nightly --start '0 1 * * *' --duration 4h"
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where `install` writes.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Write /etc/cron.d/cache-toolkit (or this file) instead of the user's crontab
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "/etc/cron.d/cache-toolkit", group = "where")]
    pub cron_d: Option<PathBuf>,
    /// Write a systemd service and timer per job into DIR
    #[arg(long, value_name = "DIR", group = "where")]
    pub systemd: Option<PathBuf>,
    /// Print Kubernetes CronJob manifests (concurrencyPolicy: Forbid)
    #[arg(long, group = "where")]
    pub kubernetes: bool,
    /// The crontab of this user instead of one's own (needs root)
    #[arg(long, value_name = "USER", conflicts_with_all = ["cron_d", "systemd", "kubernetes"])]
    pub user: Option<String>,
}

/// cache-scheduler's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the state directory and write a commented default configuration
    Init,
    /// Install the schedule: a marked block in the crontab (kept idempotent), or cron.d, systemd
    /// units, Kubernetes manifests
    Install {
        /// Where
        #[command(flatten)]
        target: Target,
        /// Show what would be written, write nothing
        #[arg(long)]
        print: bool,
        /// Container image of the Kubernetes CronJobs
        #[arg(long, default_value = "cache-toolkit:latest", requires = "kubernetes")]
        image: String,
        /// Namespace of the Kubernetes CronJobs
        #[arg(long, requires = "kubernetes")]
        namespace: Option<String>,
    },
    /// Remove what `install` wrote (only the marked block of a crontab)
    Uninstall {
        /// Where
        #[command(flatten)]
        target: Target,
    },
    /// Turn automation on: scheduled runs run
    Start {
        /// Why, for the record
        #[arg(long)]
        reason: Option<String>,
    },
    /// Turn automation off: scheduled runs exit at once, saying why
    Stop {
        /// Why, for the record
        #[arg(long)]
        reason: Option<String>,
    },
    /// Stop, then start
    Restart {
        /// Why, for the record
        #[arg(long)]
        reason: Option<String>,
    },
    /// Every job: schedule, next run, last run, lock holder, flags; and the automation state
    Status {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Adapt repeating jobs' frequency to the performance score and move heavy jobs into the
    /// low-usage window (seed 000's SmartScheduler)
    Optimize {
        /// Show the changes, make none
        #[arg(long)]
        dry_run: bool,
        /// Also update the installed crontab block
        #[arg(long)]
        install: bool,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Maintenance windows: when heavy jobs may run
    Windows {
        /// What to do
        #[command(subcommand)]
        action: WindowsAction,
    },
    /// Print shell completions
    Completions(CompletionsArgs),
}

/// `windows` subcommands.
#[derive(Debug, Subcommand)]
pub enum WindowsAction {
    /// List the windows
    List {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Add (or replace) a window
    Add {
        /// Its name
        name: String,
        /// When it opens (five-field cron)
        #[arg(long)]
        start: String,
        /// How long it stays open, e.g. 4h
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Time zone of --start (default: scheduler.timezone)
        #[arg(long)]
        timezone: Option<String>,
        /// Task types allowed (repeatable; default: all): backup, cleanup, memory, optimization...
        #[arg(long = "task")]
        tasks: Vec<String>,
        /// Heavy jobs at once, at most
        #[arg(long, default_value_t = 1)]
        max_heavy: u32,
        /// Alert rules it silences (repeatable)
        #[arg(long = "silence")]
        silence: Vec<String>,
    },
    /// Remove a window
    Remove {
        /// Its name
        name: String,
    },
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

/// Where the tools are: `scheduler.bin_dir`, or beside this binary.
pub fn bin_dir(ctx: &Context) -> PathBuf {
    ctx.config.scheduler.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin"))
    })
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let common = &cli.common;
    match cli.command {
        Command::Init => init(common),
        Command::Install { target, print, image, namespace } => {
            let ctx = Context::load_all(common, Format::Text, Convention::Standard)?;
            install(&ctx, &target, print, &image, namespace.as_deref())
        }
        Command::Uninstall { target } => {
            let ctx = Context::load_all(common, Format::Text, Convention::Standard)?;
            uninstall(&ctx, &target)
        }
        Command::Start { reason } => set_automation(common, true, reason, "cache-scheduler start"),
        Command::Stop { reason } => set_automation(common, false, reason, "cache-scheduler stop"),
        Command::Restart { reason } => {
            set_automation(common, false, reason.clone(), "cache-scheduler restart")?;
            set_automation(common, true, reason, "cache-scheduler restart")
        }
        Command::Status { format } => {
            let ctx = Context::load_all(common, format.into(), Convention::Standard)?;
            status::run(&ctx)
        }
        Command::Optimize { dry_run, install, format } => {
            let ctx = Context::load_all(common, format.into(), Convention::Standard)?;
            optimize::run(&ctx, dry_run, install)
        }
        Command::Windows { action } => windows(common, action),
        Command::Completions(args) => app::print_completions::<Cli>(args.shell),
    }
}

fn init(common: &CommonArgs) -> anyhow::Result<u8> {
    // The one resolver every tool reads with, so that the file written is the file read.
    let root = rustix::process::geteuid().is_root();
    let path = cache_core::config::init_path(common.config.as_deref(), &cache_core::config::ProcessEnv, root);
    if path.exists() {
        return Err(UsageError(format!("`{}` exists; init never overwrites a configuration", path.display())).into());
    }
    // Opening the context creates the state directory (0700).
    let ctx = Context::load_all(&CommonArgs { config: None, ..common.clone() }, Format::Text, Convention::Standard)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    }
    cache_core::state::write_atomic_mode(&path, cache_core::config::DEFAULT_CONFIG_TOML.as_bytes(), 0o600)
        .with_context(|| format!("writing `{}`", path.display()))?;
    ctx.printer.info(&format!(
        "wrote {} (every setting, commented) and created the state directory {}\nnext: `cache-scheduler install --print`",
        path.display(),
        ctx.state.root().display()
    ))?;
    Ok(exit::SUCCESS)
}

fn install(ctx: &Context, target: &Target, print: bool, image: &str, namespace: Option<&str>) -> anyhow::Result<u8> {
    let settings = &ctx.config.scheduler;
    let jobs = schedule::all(settings, &ctx.state)?;
    let bin = bin_dir(ctx);
    let printer = &ctx.printer;
    if target.kubernetes {
        printer.always(render::kubernetes(&jobs, settings, image, namespace).trim_end())?;
        return Ok(exit::SUCCESS);
    }
    if let Some(dir) = &target.systemd {
        let units = render::systemd(&jobs, settings, &bin)?;
        for (name, text) in &units {
            if print {
                printer.always(&format!("# {}\n{text}", dir.join(name).display()))?;
            } else {
                std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
                cache_core::state::write_atomic_mode(&dir.join(name), text.as_bytes(), 0o644)?;
            }
        }
        if !print {
            schedule::record_installed(&ctx.state, schedule::Installed::Systemd { dir: dir.clone() })?;
            printer.info(&format!(
                "wrote {} units to {}; then: systemctl daemon-reload && systemctl enable --now 'cache-toolkit-*.timer'",
                units.len(),
                dir.display()
            ))?;
        }
        return Ok(exit::SUCCESS);
    }
    if let Some(path) = &target.cron_d {
        let text = render::cron_d(&jobs, settings, &bin);
        if print {
            printer.always(text.trim_end())?;
        } else {
            cache_core::state::write_atomic_mode(path, text.as_bytes(), 0o644)
                .with_context(|| format!("writing `{}`", path.display()))?;
            schedule::record_installed(&ctx.state, schedule::Installed::CronD { path: path.clone() })?;
            printer.info(&format!("wrote {} ({} jobs)", path.display(), jobs.iter().filter(|j| j.enabled).count()))?;
        }
        return Ok(exit::SUCCESS);
    }
    let block = render::crontab_block(&jobs, &bin);
    let user = target.user.as_deref();
    if print {
        printer.always(block.trim_end())?;
        return Ok(exit::SUCCESS);
    }
    let existing = crontab::read(user)?;
    let merged = crontab::merge(&existing, &block)?;
    schedule::record_installed(&ctx.state, schedule::Installed::Crontab { user: user.map(str::to_owned) })?;
    if merged == existing {
        printer.info("the crontab already has this schedule; nothing changed")?;
    } else {
        crontab::write(user, &merged)?;
        printer.info(&format!(
            "installed {} jobs in the crontab{}",
            jobs.iter().filter(|j| j.enabled).count(),
            user.map(|u| format!(" of {u}")).unwrap_or_default()
        ))?;
    }
    Ok(exit::SUCCESS)
}

fn uninstall(ctx: &Context, target: &Target) -> anyhow::Result<u8> {
    let printer = &ctx.printer;
    if !target.kubernetes {
        ctx.state.remove(schedule::INSTALLED_FILE)?;
    }
    if target.kubernetes {
        return Err(UsageError(
            "remove CronJobs with kubectl: kubectl delete cronjob -l app.kubernetes.io/name=cache-toolkit".into(),
        )
        .into());
    }
    if let Some(dir) = &target.systemd {
        let mut removed = 0;
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading `{}`", dir.display()))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with("cache-toolkit-") && (name.ends_with(".service") || name.ends_with(".timer")) {
                std::fs::remove_file(dir.join(&name))?;
                removed += 1;
            }
        }
        printer.info(&format!("removed {removed} units from {}", dir.display()))?;
        return Ok(exit::SUCCESS);
    }
    if let Some(path) = &target.cron_d {
        match std::fs::remove_file(path) {
            Ok(()) => printer.info(&format!("removed {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                printer.info(&format!("{} was not there", path.display()))?
            }
            Err(e) => return Err(e).with_context(|| format!("removing `{}`", path.display())),
        }
        return Ok(exit::SUCCESS);
    }
    let user = target.user.as_deref();
    match crontab::remove(&crontab::read(user)?)? {
        Some(rest) => {
            crontab::write(user, &rest)?;
            printer.info("removed the cache-toolkit block from the crontab; every other line is as it was")?;
        }
        None => printer.info("the crontab has no cache-toolkit block")?,
    }
    Ok(exit::SUCCESS)
}

fn set_automation(common: &CommonArgs, running: bool, reason: Option<String>, by: &str) -> anyhow::Result<u8> {
    let ctx = Context::load_all(common, Format::Text, Convention::Standard)?;
    let state = Automation { running, changed_at: cache_core::clock::now()?, changed_by: by.to_owned(), reason };
    ctx.state.write_json(AUTOMATION_FILE, &state)?;
    ctx.printer.info(if running {
        "automation is on: scheduled runs run"
    } else {
        "automation is off: scheduled runs exit at once and record why (cache-scheduler start turns it back on)"
    })?;
    Ok(exit::SUCCESS)
}

fn windows(common: &CommonArgs, action: WindowsAction) -> anyhow::Result<u8> {
    let format = match &action {
        WindowsAction::List { format } => (*format).into(),
        _ => Format::Text,
    };
    let ctx = Context::load_all(common, format, Convention::Standard)?;
    let mut doc: Windows = ctx.state.read_json(WINDOWS_FILE)?.unwrap_or_default();
    let printer = &ctx.printer;
    match action {
        WindowsAction::List { .. } => {
            if printer.format() == Format::Json {
                printer.json(&doc)?;
                return Ok(exit::SUCCESS);
            }
            let now = cache_core::clock::now()?;
            let mut table = printer.table();
            table.set_header(["Name", "Opens (cron)", "For", "Zone", "Tasks", "Heavy at once", "Silences", "Now"]);
            for w in &doc.windows {
                table.add_row(vec![
                    w.name.clone(),
                    w.start.clone(),
                    humantime::format_duration(w.duration).to_string(),
                    w.timezone.clone(),
                    if w.tasks.is_empty() { "all".into() } else { w.tasks.join(", ") },
                    w.max_heavy.to_string(),
                    w.silence.join(", "),
                    if w.open_since(now)?.is_some() { "open".into() } else { "closed".into() },
                ]);
            }
            printer.always(&if doc.windows.is_empty() {
                "no maintenance windows: heavy jobs run at their scheduled times".to_owned()
            } else {
                table.to_string()
            })?;
        }
        WindowsAction::Add { name, start, duration, timezone, tasks, max_heavy, silence } => {
            schedule::parse(&start)?;
            let timezone = timezone.unwrap_or_else(|| ctx.config.scheduler.timezone.clone());
            schedule::next_runs_in(&start, chrono::Utc::now(), 1, &timezone)?;
            if duration.is_zero() {
                return Err(UsageError("--duration must be more than zero".into()).into());
            }
            doc.windows.retain(|w| w.name != name);
            doc.windows.push(Window { name: name.clone(), start, duration, timezone, tasks, max_heavy, silence });
            ctx.state.write_json(WINDOWS_FILE, &doc)?;
            printer.info(&format!("window `{name}` saved; heavy jobs now run only inside the windows"))?;
        }
        WindowsAction::Remove { name } => {
            let before = doc.windows.len();
            doc.windows.retain(|w| w.name != name);
            if doc.windows.len() == before {
                return Err(UsageError(format!("no window `{name}` (cache-scheduler windows list)")).into());
            }
            ctx.state.write_json(WINDOWS_FILE, &doc)?;
            printer.info(&format!("window `{name}` removed"))?;
        }
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["cache-scheduler", "install", "--cron-d", "--systemd", "/x"]).is_err());
        let cli = Cli::try_parse_from(["cache-scheduler", "install", "--cron-d"]).unwrap();
        let Command::Install { target, .. } = cli.command else { unreachable!() };
        assert_eq!(target.cron_d.unwrap(), PathBuf::from("/etc/cron.d/cache-toolkit"));
    }
}
