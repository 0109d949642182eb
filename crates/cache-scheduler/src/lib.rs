//! cache-scheduler: the catalogue of jobs (`cache_core::schedule`) rendered for cron, systemd
//! and Kubernetes and installed, each line with the configuration and state directory the
//! installer used; automation turned on and off; maintenance windows (refusing a schedule that
//! no window admits); jobs run now or once at a time (`run`, `tick`); the status of every
//! job; and the maintenance API and dashboard (`serve`, [`api`]).

pub mod api;
pub mod crontab;
pub mod kubernetes;
pub mod optimize;
pub mod render;
pub mod run;
pub mod status;
pub mod windows;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cache_core::app::{self, Context, ToolCli};
use cache_core::cli::{CommonArgs, CompletionsArgs, FormatArgs};
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention};
use cache_core::gate::{AUTOMATION_FILE, Automation};
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
                  cache-scheduler windows add nightly --start '0 1 * * *' --duration 4h\n  \
                  cache-scheduler run backup\n  cache-scheduler run optimize --at '2026-11-23 03:00'\n  \
                  cache-scheduler serve --listen 127.0.0.1:8430",
    // `run JOB --emergency` needs no `--scheduled`: `run` is a scheduled run of JOB.
    mut_arg("emergency", |a| a.requires(clap::builder::Resettable::<clap::Id>::Reset).help("With run (or --scheduled): run a heavy job even outside the maintenance windows"))
)]
pub struct Cli {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format (before or after the subcommand).
    #[command(flatten)]
    pub format: FormatArgs,
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
    /// Print Kubernetes manifests: a ConfigMap of the configuration, a volume claim for the
    /// state, a CronJob per job (concurrencyPolicy: Forbid)
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
        /// Namespace of the Kubernetes objects
        #[arg(long, requires = "kubernetes")]
        namespace: Option<String>,
        /// Size of the Kubernetes state volume (it holds the backups by default)
        #[arg(long, default_value = "10Gi", requires = "kubernetes")]
        storage: String,
        /// Install even when no maintenance window admits a heavy job (it warns, and records
        /// the warning)
        #[arg(long)]
        force: bool,
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
    Status,
    /// The runs of every job, newest first, from the run records (rotated segments included)
    History {
        /// Only this job's runs
        #[arg(long, value_name = "JOB")]
        job: Option<String>,
        /// Only runs started since: a time (RFC 3339), a date (YYYY-MM-DD) or an age ("7days")
        #[arg(long, value_name = "WHEN", value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only runs started before: a time, a date or an age, as for --since
        #[arg(long, value_name = "WHEN", value_parser = parse_since)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only runs that ended so: success, partial, failed, skipped, locked, interrupted,
        /// dry_run
        #[arg(long, value_name = "OUTCOME")]
        outcome: Option<cache_core::runs::Outcome>,
        /// Leave out this many of the newest (paging)
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// At most this many (0: all)
        #[arg(long, default_value_t = 50)]
        limit: usize,
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
        /// Make the changes even when a heavy job ends up admitted by no maintenance window
        #[arg(long)]
        force: bool,
    },
    /// Run a job now as the schedule would, through all its gates (automation, enabled,
    /// dependency, windows, fleet lock; --emergency passes the windows); or once at --at TIME
    Run {
        /// The job (cache-scheduler status lists them)
        job: String,
        /// Run it once at this time instead (RFC 3339, or `YYYY-MM-DD HH:MM` in UTC): a one-off,
        /// which `tick` runs
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Run every one-off that is due, once (the installed schedule runs this every minute)
    Tick,
    /// Serve the maintenance API (/api/system/maintenance/...) and the maintenance dashboard
    /// (/maintenance) until stopped; docs/api.md
    Serve {
        /// Where to listen [default: api.listen, 127.0.0.1:8430]; beyond loopback only with
        /// an API token (api.token or CACHE_API_TOKEN)
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
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
    List,
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
        /// Task types allowed (repeatable; default: all): those of the catalogue, e.g. backup,
        /// cleanup, memory, optimization
        #[arg(long = "task")]
        tasks: Vec<String>,
        /// Heavy jobs at once, at most
        #[arg(long, default_value_t = 1)]
        max_heavy: u32,
        /// Alert rules it silences (repeatable): names of cache-health's rules
        #[arg(long = "silence")]
        silence: Vec<String>,
        /// Save it even when it leaves a heavy job admitted by no window (it warns, and records
        /// the warning)
        #[arg(long)]
        force: bool,
    },
    /// Remove a window
    Remove {
        /// Its name
        name: String,
        /// Remove it even when that leaves a heavy job admitted by no window
        #[arg(long)]
        force: bool,
    },
}

impl ToolCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn runs_a_job(&self) -> bool {
        // `run` and `tick` start jobs (tools with `--scheduled`), never run inside one.
        matches!(self.command, Command::Run { .. } | Command::Tick)
    }
}

/// The process entry point, shared by the binary and the test shim.
pub fn main() -> ExitCode {
    app::main::<Cli, _, _>(Convention::Standard, run)
}

/// Where the tools are: `scheduler.bin_dir`, or beside this binary; absolute.
pub fn bin_dir(ctx: &Context) -> PathBuf {
    let dir = ctx.config.scheduler.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin"))
    });
    std::path::absolute(&dir).unwrap_or(dir)
}

/// How this process would have the installed lines run the tools: from [`bin_dir`], with the
/// configuration file it read (none for the embedded default) and its state directory, both
/// absolute.
pub fn invocation(ctx: &Context) -> anyhow::Result<render::Invocation> {
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("making `{}` absolute", p.display()));
    let config = match &ctx.config_source {
        cache_core::config::ConfigSource::File(path) => Some(absolute(path)?),
        cache_core::config::ConfigSource::Embedded => None,
    };
    Ok(render::Invocation { bin_dir: Some(bin_dir(ctx)), config, state_dir: Some(absolute(ctx.state.root())?) })
}

/// What is wrong with each of `never`, heavy jobs no window admits.
pub(crate) fn never_admitted_messages(never: &[String]) -> Vec<String> {
    let days = cache_core::gate::ADMISSION_DAYS;
    never
        .iter()
        .map(|job| {
            format!(
                "heavy job `{job}` is never admitted: none of its runs in the next {days} days falls inside a \
                 maintenance window allowing its task, so it would be skipped every time"
            )
        })
        .collect()
}

/// Heavy scheduled jobs no window can ever admit, forced through: a line each, in the state.
pub const WARNINGS_FILE: &str = "scheduler/warnings.jsonl";

/// What to do about the heavy jobs `never` (no window admits them) that a command `by` would
/// leave: refuse, naming them, or with `force` warn and record; the warnings.
pub(crate) fn never_admitted_gate(
    ctx: &Context,
    never: &[String],
    force: bool,
    by: &str,
) -> anyhow::Result<Vec<String>> {
    let messages = never_admitted_messages(never);
    if messages.is_empty() {
        return Ok(messages);
    }
    if !force {
        let names: Vec<String> = never.iter().map(|j| format!("`{j}`")).collect();
        let (jobs, are, their) = if names.len() == 1 { ("job", "is", "its") } else { ("jobs", "are", "their") };
        return Err(UsageError(format!(
            "heavy {jobs} {} {are} never admitted (pass --force to go on): no maintenance window allowing {their} \
             task admits any of {their} runs in the next {} days; change the schedule or the windows",
            names.join(", "),
            cache_core::gate::ADMISSION_DAYS,
        ))
        .into());
    }
    let now = cache_core::clock::now()?;
    for (job, message) in never.iter().zip(&messages) {
        ctx.printer.warn(&format!("{message} (--force)"));
        ctx.state.append_jsonl(
            WARNINGS_FILE,
            &serde_json::json!({ "time": now, "by": by, "job": job, "warning": message }),
        )?;
    }
    Ok(messages)
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let common = &cli.common;
    let format = cli.format.format;
    match cli.command {
        Command::Init => init(common),
        Command::Install { target, print, image, namespace, storage, force } => {
            let ctx = Context::load_all(common, Format::Text, Convention::Standard)?;
            let config_file = match &ctx.config_source {
                cache_core::config::ConfigSource::File(path) => Some(path.as_path()),
                cache_core::config::ConfigSource::Embedded => None,
            };
            let k8s =
                kubernetes::Options { image: &image, namespace: namespace.as_deref(), storage: &storage, config_file };
            install(&ctx, &target, print, &k8s, force)
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
        Command::Status => {
            let ctx = Context::load_all(common, format.into(), Convention::Standard)?;
            status::run(&ctx)
        }
        Command::History { job, since, until, outcome, offset, limit } => {
            let ctx = Context::load_all(common, format.into(), Convention::Standard)?;
            let query = cache_core::runs::Query { job, since, until, outcome, offset, limit };
            status::history(&ctx, &query)
        }
        Command::Optimize { dry_run, install, force } => {
            let ctx = Context::load_all(common, format.into(), Convention::Standard)?;
            optimize::run(&ctx, dry_run, install, force)
        }
        Command::Run { job, at } => run::run(common, &job, at.as_deref()).await,
        Command::Tick => run::tick(common).await,
        Command::Serve { listen } => api::serve(common, listen).await,
        Command::Windows { action } => windows(common, format.into(), action),
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

/// Environment variables that change the configuration here but that cron and systemd do not
/// pass on (an installed line would run with the file's values).
const OVERRIDING: &[&str] = &[
    cache_core::env::EnvVars::REDIS_URL,
    cache_core::env::EnvVars::DATABASE_URL,
    cache_core::env::EnvVars::MEM0_URL,
    cache_core::env::EnvVars::MEM0_API_KEY,
    cache_core::env::EnvVars::PROJECT_NAME,
];

fn install(
    ctx: &Context,
    target: &Target,
    print: bool,
    k8s: &kubernetes::Options<'_>,
    force: bool,
) -> anyhow::Result<u8> {
    let settings = &ctx.config.scheduler;
    let jobs = schedule::all(settings, &ctx.state)?;
    let now = cache_core::clock::now()?;
    let windows = cache_core::gate::windows(&ctx.state)?;
    let never = cache_core::gate::never_admitted_jobs(&jobs, &windows, &settings.timezone, now)?;
    let printer = &ctx.printer;
    // Printing shows what would be installed, problems included; installing refuses them.
    let warnings = if print {
        never_admitted_messages(&never).iter().for_each(|m| printer.warn(m));
        Vec::new()
    } else {
        never_admitted_gate(ctx, &never, force, "cache-scheduler install")?
    };
    let inv = invocation(ctx)?;
    if target.kubernetes {
        printer.always(kubernetes::render(&jobs, &ctx.config, ctx.state.root(), k8s)?.trim_end())?;
        return Ok(exit::SUCCESS);
    }
    for var in OVERRIDING {
        if cache_core::env::EnvVars::var(var).is_some_and(|v| !v.is_empty()) {
            printer.warn(&format!(
                "`{var}` is set here and overrides the configuration, but the installed jobs run without it: \
                 put its value in the configuration file"
            ));
        }
    }
    // Every tool a line runs is where the line says.
    let bin = bin_dir(ctx);
    let mut tools: Vec<String> = jobs.iter().filter(|j| j.enabled).map(|j| j.spec.tool().to_owned()).collect();
    tools.push("cache-scheduler".into());
    tools.sort();
    tools.dedup();
    for tool in tools.iter().filter(|t| !bin.join(t).is_file()) {
        printer.warn(&format!(
            "`{}` is not there: the jobs running it would fail (set scheduler.bin_dir)",
            bin.join(tool).display()
        ));
    }
    if let Some(dir) = &target.systemd {
        let units = render::systemd(&jobs, settings, &inv)?;
        for (name, text) in &units {
            if print {
                printer.always(&format!("# {}\n{text}", dir.join(name).display()))?;
            } else {
                std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
                cache_core::state::write_atomic_mode(&dir.join(name), text.as_bytes(), 0o644)?;
            }
        }
        if !print {
            schedule::record_installed(&ctx.state, schedule::Installed::Systemd { dir: dir.clone() }, warnings)?;
            printer.info(&format!(
                "wrote {} units to {}; then: systemctl daemon-reload && systemctl enable --now 'cache-toolkit-*.timer'",
                units.len(),
                dir.display()
            ))?;
        }
        return Ok(exit::SUCCESS);
    }
    if let Some(path) = &target.cron_d {
        let text = render::cron_d(&jobs, settings, &inv);
        if print {
            printer.always(text.trim_end())?;
        } else {
            cache_core::state::write_atomic_mode(path, text.as_bytes(), 0o644)
                .with_context(|| format!("writing `{}`", path.display()))?;
            schedule::record_installed(&ctx.state, schedule::Installed::CronD { path: path.clone() }, warnings)?;
            printer.info(&format!("wrote {} ({} jobs)", path.display(), jobs.iter().filter(|j| j.enabled).count()))?;
        }
        return Ok(exit::SUCCESS);
    }
    let block = render::crontab_block(&jobs, &inv);
    let user = target.user.as_deref();
    if print {
        printer.always(block.trim_end())?;
        return Ok(exit::SUCCESS);
    }
    let existing = crontab::read(user)?;
    let merged = crontab::merge(&existing, &block)?;
    schedule::record_installed(&ctx.state, schedule::Installed::Crontab { user: user.map(str::to_owned) }, warnings)?;
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

fn windows(common: &CommonArgs, format: Format, action: WindowsAction) -> anyhow::Result<u8> {
    let format = if matches!(action, WindowsAction::List) { format } else { Format::Text };
    let ctx = Context::load_all(common, format, Convention::Standard)?;
    let printer = &ctx.printer;
    let (change, force, by) = match action {
        WindowsAction::List => {
            let doc = cache_core::gate::windows(&ctx.state)?;
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
            return Ok(exit::SUCCESS);
        }
        WindowsAction::Add { name, start, duration, timezone, tasks, max_heavy, silence, force } => {
            let spec = windows::Spec { name, start, duration, timezone, tasks, max_heavy, silence };
            (windows::Change::Add(spec), force, "cache-scheduler windows add")
        }
        WindowsAction::Remove { name, force } => {
            (windows::Change::Remove(name), force, "cache-scheduler windows remove")
        }
    };
    match windows::apply(&ctx, change, force, by)? {
        Ok(applied) => printer.info(&applied.message)?,
        Err(windows::Refused(refusal)) => return Err(UsageError(refusal).into()),
    }
    Ok(exit::SUCCESS)
}

/// `--since`: an RFC 3339 time, a date (midnight UTC), or an age back from now.
pub(crate) fn parse_since(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let age = humantime::parse_duration(raw)
        .map_err(|e| format!("`{raw}` is no time, date or age (\"2026-12-01\", \"7days\"): {e}"))?;
    let now = cache_core::clock::now().map_err(|e| e.to_string())?;
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("`{raw}` is too long ago"))
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
        // `run JOB --emergency` needs no `--scheduled`.
        let cli = Cli::try_parse_from(["cache-scheduler", "run", "backup", "--emergency"]).unwrap();
        assert!(cli.common.emergency && matches!(cli.command, Command::Run { ref job, at: None } if job == "backup"));
        assert!(Cli::try_parse_from(["cache-scheduler", "run"]).is_err());
        assert!(Cli::try_parse_from(["cache-scheduler", "tick", "-q"]).is_ok());
        assert!(Cli::try_parse_from(["cache-scheduler", "install", "--storage", "1Gi"]).is_err());
        assert!(Cli::try_parse_from(["cache-scheduler", "windows", "remove", "x", "--force"]).is_ok());
    }
}
