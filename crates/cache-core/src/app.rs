//! The life of a tool's process: parse, log setup, runtime, run, exit code.
//!
//! Each tool's `main()` is one call to [`main`]. Commands that are scheduled jobs open a
//! [`Context`] and wrap their work in a [`Job`], which takes the job's lock and records the run.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;

use crate::cli::CommonArgs;
use crate::config::{self, ConfigSource, ProcessEnv};
use crate::exit::Convention;
use crate::lock::JobLock;
use crate::messages;
use crate::output::{Format, Printer};
use crate::redact;
use crate::runs::{self, Outcome, RunLog, Trigger};
use crate::state::{self, StateDir};

/// A tool's parsed command line.
pub trait ToolCli: clap::Parser {
    /// The options shared by every tool.
    fn common(&self) -> &CommonArgs;

    /// Whether the command runs as a job of its own ([`Context::begin`]: a lock, gates and a
    /// run record). Any other command given `--scheduled JOB` (a custom job of the catalogue,
    /// say) is run inside job `JOB` by [`main`], so that `--scheduled` means the same in
    /// every command; and `--wait`, which only waits for a job's lock, is refused for it.
    fn runs_a_job(&self) -> bool;

    /// The tool's name and subcommand, for the run record of a command run as a job by
    /// [`main`].
    fn command_line(&self) -> String {
        let command = Self::command();
        let tool = command.get_name().to_owned();
        let matches = command.try_get_matches_from(std::env::args_os()).ok();
        match matches.as_ref().and_then(clap::ArgMatches::subcommand_name) {
            Some(sub) => format!("{tool} {sub}"),
            None => tool,
        }
    }
}

/// Runs a tool: parses `C`, sets up logging and the runtime, awaits `run`, and turns its result
/// into the exit code of `convention`. A broken pipe on stdout exits 0.
pub fn main<C, F, Fut>(convention: Convention, run: F) -> ExitCode
where
    C: ToolCli,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<u8>>,
{
    let cli = match C::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { convention.usage() } else { 0 });
        }
    };
    init_tracing(cli.common());
    let cli_quiet = cli.common().quiet;
    let as_job = match (cli.runs_a_job(), cli.common().scheduled.clone()) {
        (false, Some(name)) => Some((cli.common().clone(), name, cli.command_line())),
        (false, None) if cli.common().wait => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "error: --wait waits for a job's lock, and `{}` runs no job (it takes no lock)",
                cli.command_line()
            );
            return ExitCode::from(convention.usage());
        }
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            report_error(&anyhow::Error::new(e).context("starting the async runtime"));
            return ExitCode::from(convention.for_error(&anyhow::anyhow!("runtime")));
        }
    };
    // SIGTERM (systemd, Kubernetes, `timeout`) and SIGINT end the run at its next await: the
    // command's future is dropped there, so its guards run and its job records `interrupted`.
    let result = runtime.block_on(async {
        tokio::select! {
            result = async {
                match &as_job {
                    Some((common, name, command)) => run_as_job(common, convention, name, command, run(cli)).await,
                    None => run(cli).await,
                }
            } => result,
            signal = termination() => Err(anyhow::Error::new(crate::error::Interrupted(signal))),
            why = deadline_passed() => Err(anyhow::Error::new(crate::error::Interrupted(why))),
        }
    });
    // Never wait for stuck blocking work (a hung NFS walk, say): the deadline already passed.
    runtime.shutdown_background();
    crate::output::flush_held(
        matches!(result, Ok(0)) || result.as_ref().is_err_and(|e| e.downcast_ref::<crate::gate::Skipped>().is_some()),
    );
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<crate::error::Interrupted>().is_some() => {
            report_error(&e);
            ExitCode::from(interrupted_by().map_or(crate::exit::TERMINATED, exit_code_of))
        }
        Err(e) if e.downcast_ref::<crate::gate::Skipped>().is_some() => {
            // A scheduled run that must not run: not an error, but said (cron mails it unless -q).
            if cli_quiet == 0 {
                let _ = writeln!(std::io::stderr().lock(), "{}", readable(&format!("{e}")));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            report_error(&e);
            ExitCode::from(convention.for_error(&e))
        }
    }
}

/// Runs a command that is no job of its own as scheduled job `name`: under `name`'s lock and
/// gates, recorded as `name`, its outcome read from its exit code.
async fn run_as_job(
    common: &CommonArgs,
    convention: Convention,
    name: &str,
    command: &str,
    run: impl Future<Output = anyhow::Result<u8>>,
) -> anyhow::Result<u8> {
    let ctx = Context::load(common, Format::Text, convention)?;
    // The lock the catalogue gives the job (a custom job may share one), else its name.
    let lock =
        crate::schedule::spec(&ctx.config.scheduler, name).map_or_else(|_| name.to_owned(), |s| s.lock.into_owned());
    let job = ctx.begin(Work::new(&lock, command).recorded_as(name)).await?;
    let result = run.await.map(|code| JobResult {
        outcome: crate::exit::Tally::outcome(code),
        exit_code: code,
        summary: serde_json::Value::Null,
    });
    job.finish(&ctx, result).await
}

fn report_error(e: &anyhow::Error) {
    let _ = writeln!(std::io::stderr().lock(), "{}", error_line(e));
}

/// The `error: ...` line `main` prints: scrubbed of secrets, then each line clipped, so that an
/// error quoting a whole pipeline's replies stays one readable line.
fn error_line(e: &anyhow::Error) -> String {
    format!("error: {}", readable(&format!("{e:#}")))
}

/// `text` scrubbed, then each line cut at [`messages::MAX_LINE`] (scrubbing first: a secret cut
/// in half would no longer be recognised).
fn readable(text: &str) -> String {
    messages::clip_lines(&redact::scrub(text), messages::MAX_LINE)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr: warnings by default, more with `-v`, less with `-q`, or as `CACHE_LOG`
/// says. Every line is scrubbed of secrets.
fn init_tracing(common: &CommonArgs) {
    use tracing_subscriber::EnvFilter;
    let level = match (common.quiet, common.verbose) {
        (q, _) if q >= 2 => "off",
        (1, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = crate::env::EnvVars::var(crate::env::EnvVars::CACHE_LOG)
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    // Colour only on a terminal, and never under NO_COLOR: cron mail and log files get text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && crate::env::EnvVars::var_os(crate::env::EnvVars::NO_COLOR).is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(|| ScrubbingStderr(Vec::new()))
        .with_target(false)
        .try_init();
}

/// Buffers one log event and writes it to stderr, scrubbed, when dropped.
struct ScrubbingStderr(Vec<u8>);

impl Write for ScrubbingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbingStderr {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().lock().write_all(redact::scrub(&text).as_bytes());
    }
}

/// Everything a command needs: configuration, state, printer.
#[derive(Debug)]
pub struct Context {
    /// The validated configuration.
    pub config: config::Config,
    /// Where it came from.
    pub config_source: ConfigSource,
    /// The opened state directory.
    pub state: StateDir,
    /// The printer.
    pub printer: Printer,
    /// The common options.
    pub common: CommonArgs,
    /// The tool's exit-code convention.
    pub convention: Convention,
}

impl Context {
    /// Resolves the state directory, loads the configuration and builds the printer.
    pub fn load(common: &CommonArgs, format: Format, convention: Convention) -> anyhow::Result<Self> {
        let mut ctx = Self::load_all(common, format, convention)?;
        ctx.skip_disabled()?;
        Ok(ctx)
    }

    /// [`Context::load`], keeping the targets cache-health disabled (cache-health itself probes
    /// them, to see them recover).
    pub fn load_all(common: &CommonArgs, format: Format, convention: Convention) -> anyhow::Result<Self> {
        let env = ProcessEnv;
        let state_root = state::resolve(common.state_dir.as_deref(), &env)?;
        let loaded = config::load(common.config.as_deref(), &env, &state_root)?;
        crate::tier::check_filters(&common.tiers, &loaded.config.target_ids())?;
        for name in &loaded.env_overrides {
            tracing::info!("configuration: {name} overrides the file");
        }
        let state = StateDir::open(state_root)?;
        Ok(Self {
            config: loaded.config,
            config_source: loaded.source,
            state,
            printer: Printer::new(format, common.quiet),
            common: common.clone(),
            convention,
        })
    }

    /// Leaves out the targets in [`crate::tier::DISABLED_FILE`] whose time has not run out,
    /// saying so on stderr.
    fn skip_disabled(&mut self) -> anyhow::Result<()> {
        let Some(disabled) = self.state.read_json::<crate::tier::Disabled>(crate::tier::DISABLED_FILE)? else {
            return Ok(());
        };
        let now = crate::clock::now()?;
        let printer = &self.printer;
        let keep = |tier: crate::tier::Tier, name: &str| match disabled.get(tier, name, now) {
            Some(d) => {
                printer.warn(&format!(
                    "{tier}/{name} is disabled until {} ({}); skipping it",
                    d.until.format("%Y-%m-%d %H:%M:%S UTC"),
                    d.reason
                ));
                false
            }
            None => true,
        };
        let c = &mut self.config;
        c.redis.retain(|t| keep(crate::tier::Tier::Redis, &t.name));
        c.postgres.retain(|t| keep(crate::tier::Tier::Postgres, &t.name));
        c.memory.retain(|t| keep(crate::tier::Tier::Memory, &t.name));
        c.http.retain(|t| keep(crate::tier::Tier::Http, &t.name));
        Ok(())
    }

    /// Starts a run of `job` by `command`, under the lock of the same name; see
    /// [`Context::begin`].
    pub async fn begin_job(&self, job: &str, command: &str) -> anyhow::Result<Job> {
        self.begin(Work::new(job, command)).await
    }

    /// Starts `work`: takes its lock (waiting with `--wait`; a lock left by a killed run is
    /// recorded as that run's `interrupted` record first), applies the scheduler's gates to a
    /// `--scheduled` run, and starts its run record. A run locked out is recorded as such and
    /// ends with [`crate::error::LockHeld`].
    pub async fn begin(&self, work: Work<'_>) -> anyhow::Result<Job> {
        let lock = if self.common.wait {
            JobLock::acquire_waiting(&self.state, work.lock, &work.command).await
        } else {
            JobLock::try_acquire(&self.state, work.lock, &work.command)
        };
        // A scheduled run is recorded under its schedule entry's name; a manual one under the
        // job its command does (which only that command's real runs stand for).
        let record_as = self.common.scheduled.as_deref().unwrap_or(&work.record);
        let trigger = self.trigger();
        let run_id = self.common.run_id.clone();
        let begin =
            || RunLog::begin(record_as, &work.command).started_by(trigger, work.lock, None).with_id(run_id.clone());
        let mut lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                if crate::error::kind(&e) == Some(crate::error::Kind::Locked) {
                    let record = begin().finish(
                        Outcome::Locked,
                        crate::exit::LOCKED,
                        serde_json::Value::Null,
                        Some(e.to_string()),
                    );
                    if let Err(save) = runs::save(&self.state, &record) {
                        tracing::warn!("recording the locked-out run: {save:#}");
                    }
                }
                return Err(e);
            }
        };
        if let Some(killed) = lock.left_by_killed_run() {
            let record = runs::interrupted(&killed, "killed: its lock was found left by a process that had ended");
            if let Err(e) = runs::save(&self.state, &record) {
                tracing::warn!("recording the killed run {}: {e:#}", killed.command);
            }
        }
        // The record is begun now, so that the lock names the id it will have.
        let log = begin();
        lock.record_run(record_as, trigger, &log.id())?;
        let mut pass = None;
        if let Some(name) = &self.common.scheduled {
            match crate::gate::check(self, name, self.common.emergency).await? {
                Ok(p) => pass = Some(p),
                Err(skipped) => {
                    let record = log.finish(
                        Outcome::Skipped,
                        crate::exit::SUCCESS,
                        serde_json::Value::Null,
                        Some(skipped.0.clone()),
                    );
                    runs::save(&self.state, &record)?;
                    return Err(skipped.into());
                }
            }
        }
        let log = log.admitted_by(pass.as_ref().and_then(|p| p.window()).map(str::to_owned));
        // Nothing runs unattended for ever: past its deadline the job is stopped at its next
        // await and recorded `interrupted`.
        let limit = self
            .config
            .scheduler
            .jobs
            .get(record_as)
            .and_then(|j| j.deadline)
            .unwrap_or(self.config.scheduler.job_deadline);
        deadline_channel().send_replace(Some(tokio::time::Instant::now() + limit));
        // The job's dead-man's switch hears that it started (and, from `finish`, how it ended).
        let ping =
            self.common.scheduled.as_ref().and_then(|name| self.config.scheduler.jobs.get(name)?.ping_url.clone());
        if let Some(url) = &ping {
            crate::heartbeat::start(url, &log.id()).await;
        }
        Ok(Job { lock: Some(lock), log: Some(log), pass, dry_run: work.dry_run, state: self.state.clone(), ping })
    }

    /// What started this process's run: `--trigger`, else `--emergency`, else `--scheduled`
    /// (cron), else a person.
    pub fn trigger(&self) -> Trigger {
        match (self.common.trigger, self.common.emergency, &self.common.scheduled) {
            (Some(trigger), _, _) => trigger,
            (None, true, _) => Trigger::Emergency,
            (None, false, Some(_)) => Trigger::Cron,
            (None, false, None) => Trigger::Manual,
        }
    }
}

/// What a run is, in three names that differ: the job its record stands for, the lock it
/// takes, and the command; and whether it is a dry run (which stands for no job's run).
#[derive(Clone, Debug)]
pub struct Work<'a> {
    lock: &'a str,
    record: String,
    command: String,
    dry_run: bool,
}

impl<'a> Work<'a> {
    /// A run of `command` under `lock`, recorded as the job of the same name.
    pub fn new(lock: &'a str, command: impl Into<String>) -> Self {
        Self { lock, record: lock.to_owned(), command: command.into(), dry_run: false }
    }

    /// Recorded as `job` (another command under the same lock, e.g. `backup-prune` under
    /// `backup`): its runs then never stand for the lock's job.
    #[must_use]
    pub fn recorded_as(mut self, job: impl Into<String>) -> Self {
        self.record = job.into();
        self
    }

    /// A dry run (when `dry_run`): recorded as `dry_run`, never the job's last run or success.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// What a job's command reports back for its run record.
#[derive(Debug)]
pub struct JobResult {
    /// How the run went.
    pub outcome: Outcome,
    /// The exit code the process ends with.
    pub exit_code: u8,
    /// Figures for the run record.
    pub summary: serde_json::Value,
}

/// A running job: holds the lock and the run record until [`Job::finish`]. A job dropped
/// unfinished (its command's future dropped when SIGTERM or SIGINT ended the process at an
/// await point, or a panic) records an `interrupted` run.
#[derive(Debug)]
pub struct Job {
    lock: Option<JobLock>,
    log: Option<RunLog>,
    pass: Option<crate::gate::Pass>,
    dry_run: bool,
    state: StateDir,
    ping: Option<crate::redact::Secret>,
}

impl Job {
    /// The run record in progress, to add steps to.
    #[expect(
        clippy::missing_panics_doc,
        reason = "the log is taken only by `finish` and `drop`, which consume the job"
    )]
    pub fn log(&self) -> &RunLog {
        self.log.as_ref().expect("a running job has its log")
    }

    /// Ends the job: saves its run record and passes on the exit code or the error.
    pub async fn finish(mut self, ctx: &Context, result: anyhow::Result<JobResult>) -> anyhow::Result<u8> {
        let Some(log) = self.log.take() else { return result.map(|r| r.exit_code) };
        if let Some(pass) = self.pass.take() {
            if let Some(token) = pass.fencing_token() {
                tracing::info!("fleet lock fencing token {token}");
            }
            pass.release().await;
        }
        // A dry run changed nothing, however it went: it is recorded as one, never as the job's run.
        let outcome = |outcome| if self.dry_run { Outcome::DryRun } else { outcome };
        let (record, result) = match result {
            Ok(r) => (log.finish(outcome(r.outcome), r.exit_code, r.summary, None), Ok(r.exit_code)),
            Err(e) => {
                let code = ctx.convention.for_error(&e);
                // The record keeps what a person can read, like the `error:` line.
                let message = messages::clip_lines(&format!("{e:#}"), messages::MAX_LINE);
                let record = log.finish(outcome(Outcome::Failed), code, serde_json::Value::Null, Some(message));
                (record, Err(e))
            }
        };
        // A run that cannot record itself (a full disk, say) did not end well: its dependency
        // gate and status would not know it ran. It ends with the state code, unless it failed
        // already.
        let result = match (runs::save(&ctx.state, &record), result) {
            (Err(e), Ok(_)) => Err(anyhow::Error::new(crate::error::StateError {
                path: ctx.state.path(runs::RUNS_FILE),
                message: format!("could not record the run (it did its work): {e:#}"),
            })),
            (Err(e), Err(failed)) => {
                ctx.printer.warn(&format!("recording the run in the state directory: {e:#}"));
                Err(failed)
            }
            (Ok(()), result) => result,
        };
        if let Some(url) = self.ping.take() {
            let body = match &record.error {
                Some(error) => format!("error: {error}"),
                None => format!("{} {}: {}", record.command, record.outcome.name(), record.summary),
            };
            crate::heartbeat::finish(&url, &record.id, record.exit_code, record.outcome == Outcome::Success, &body)
                .await;
        }
        tracing::debug!("run {} ended {:?} at {}", record.id, record.outcome, Utc::now());
        drop(self.lock.take());
        result
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let Some(log) = self.log.take() else { return };
        let why = match interrupted_by() {
            Some(signal) => format!("interrupted by {signal}"),
            None => "ended before it finished".to_owned(),
        };
        let code = interrupted_by().map_or(crate::exit::PARTIAL, exit_code_of);
        let record = log.finish(Outcome::Interrupted, code, serde_json::Value::Null, Some(why));
        if let Err(e) = runs::save(&self.state, &record) {
            tracing::warn!("recording the interrupted run: {e:#}");
        }
        // The lock is released after the record is written, so the next run sees it.
        drop(self.lock.take());
    }
}

/// Set by a command that ends on SIGTERM and SIGINT by itself, at its own safe point.
static OWN_SIGNALS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that the running command stops on SIGTERM and SIGINT by itself (a daemon such as
/// `cache-health monitor`, for which SIGTERM is the normal end): [`main`] then leaves them to
/// it instead of ending the run at its next await; and prints its results as they come, `-q`
/// or not.
pub fn stops_on_signals_itself() {
    OWN_SIGNALS.store(true, std::sync::atomic::Ordering::SeqCst);
    // A daemon's results reach its log as they come, not when it stops.
    crate::output::stop_holding();
}

/// The signal that ended this process's run, once one has.
static INTERRUPTED: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

fn interrupted_by() -> Option<&'static str> {
    INTERRUPTED.get().copied()
}

/// The shell's code of a run ended by `signal` (128 + its number), or by its deadline
/// (`timeout(1)`'s 124).
fn exit_code_of(signal: &str) -> u8 {
    match signal {
        "SIGINT" => crate::exit::INTERRUPTED,
        DEADLINE_PASSED => crate::exit::DEADLINE,
        _ => crate::exit::TERMINATED,
    }
}

/// What ended a run that passed its deadline, in the words of [`Interrupted`](crate::error::Interrupted).
const DEADLINE_PASSED: &str = "its deadline";

/// When the job this process runs must have ended, once [`Context::begin`] has let it run.
static DEADLINE: std::sync::OnceLock<tokio::sync::watch::Sender<Option<tokio::time::Instant>>> =
    std::sync::OnceLock::new();

fn deadline_channel() -> &'static tokio::sync::watch::Sender<Option<tokio::time::Instant>> {
    DEADLINE.get_or_init(|| tokio::sync::watch::channel(None).0)
}

/// Resolves once the running job is past its deadline (never for a daemon, which runs until
/// stopped, nor before a job began).
async fn deadline_passed() -> &'static str {
    let mut at = deadline_channel().subscribe();
    loop {
        let when = *at.borrow_and_update();
        match when {
            Some(when) => tokio::select! {
                () = tokio::time::sleep_until(when) => {
                    if OWN_SIGNALS.load(std::sync::atomic::Ordering::SeqCst) {
                        return std::future::pending().await;
                    }
                    let _ = INTERRUPTED.set(DEADLINE_PASSED);
                    return DEADLINE_PASSED;
                }
                changed = at.changed() => if changed.is_err() { return std::future::pending().await },
            },
            None => {
                if at.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT and names it. Where the handlers cannot be installed it waits
/// for ever (the default dispositions then stay).
async fn termination() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => loop {
            let signal = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if OWN_SIGNALS.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            // Before the command's future is dropped, so that its job records why it ended.
            let _ = INTERRUPTED.set(signal);
            break signal;
        },
        _ => std::future::pending().await,
    }
}

/// Prints shell completions for `C` on stdout.
pub fn print_completions<C: clap::CommandFactory>(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut command = C::command();
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
    Ok(crate::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_line_is_clipped_and_scrubbed() {
        let secret = "app-pw-2f9c81d";
        redact::register(secret);
        let replies: Vec<String> = (0..1000).map(|i| format!("Index {i}: unknown command 'PEXPIRE'")).collect();
        let e = anyhow::anyhow!("{}", replies.join(", ")).context(format!("connecting with {secret}"));
        let line = error_line(&e);
        assert!(line.starts_with("error: connecting with "), "{line}");
        assert!(!line.contains(secret), "{line}");
        assert!(line.chars().count() < messages::MAX_LINE + 50, "{} characters", line.chars().count());
        assert!(line.ends_with("characters in all)"), "{line}");
        // A secret across the cut is masked whole, not cut in half and left readable.
        let across = anyhow::anyhow!("{}{secret} and more", "x".repeat(messages::MAX_LINE - 12));
        let line = error_line(&across);
        assert!(line.contains("***") && !line.contains("app-pw"), "{line}");
        let short = anyhow::anyhow!("redis/main is unreachable");
        assert_eq!(error_line(&short), "error: redis/main is unreachable");
    }
}
