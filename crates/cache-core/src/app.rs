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
use crate::runs::{self, Outcome, RunLog};
use crate::state::{self, StateDir};

/// A tool's parsed command line.
pub trait ToolCli: clap::Parser {
    /// The options shared by every tool.
    fn common(&self) -> &CommonArgs;
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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            report_error(&anyhow::Error::new(e).context("starting the async runtime"));
            return ExitCode::from(convention.for_error(&anyhow::anyhow!("runtime")));
        }
    };
    let result = runtime.block_on(run(cli));
    // Never wait for stuck blocking work (a hung NFS walk, say): the deadline already passed.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
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

    /// Starts job `job` run by `command`: takes its lock (waiting with `--wait`) and starts its
    /// run record. A run locked out is recorded as such and ends with [`crate::error::LockHeld`].
    pub async fn begin_job(&self, job: &str, command: &str) -> anyhow::Result<Job> {
        let lock = if self.common.wait {
            JobLock::acquire_waiting(&self.state, job, command).await
        } else {
            JobLock::try_acquire(&self.state, job, command)
        };
        // A scheduled run is recorded under its schedule entry's name.
        let record_as = self.common.scheduled.as_deref().unwrap_or(job);
        let lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                if crate::error::kind(&e) == Some(crate::error::Kind::Locked) {
                    let record = RunLog::begin(record_as, command).finish(
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
        let mut pass = None;
        if let Some(name) = &self.common.scheduled {
            match crate::gate::check(self, name, self.common.emergency).await? {
                Ok(p) => pass = Some(p),
                Err(skipped) => {
                    let record = RunLog::begin(record_as, command).finish(
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
        Ok(Job { _lock: lock, log: RunLog::begin(record_as, command), pass })
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

/// A running job: holds the lock and the run record until [`Job::finish`].
#[derive(Debug)]
pub struct Job {
    _lock: JobLock,
    log: RunLog,
    pass: Option<crate::gate::Pass>,
}

impl Job {
    /// The run record in progress, to add steps to.
    pub fn log(&self) -> &RunLog {
        &self.log
    }

    /// Ends the job: saves its run record and passes on the exit code or the error.
    pub async fn finish(self, ctx: &Context, result: anyhow::Result<JobResult>) -> anyhow::Result<u8> {
        if let Some(pass) = self.pass {
            if let Some(token) = pass.fencing_token() {
                tracing::info!("fleet lock fencing token {token}");
            }
            pass.release().await;
        }
        let (record, result) = match result {
            Ok(r) => (self.log.finish(r.outcome, r.exit_code, r.summary, None), Ok(r.exit_code)),
            Err(e) => {
                let code = ctx.convention.for_error(&e);
                // The record keeps what a person can read, like the `error:` line.
                let message = messages::clip_lines(&format!("{e:#}"), messages::MAX_LINE);
                let record = self.log.finish(Outcome::Failed, code, serde_json::Value::Null, Some(message));
                (record, Err(e))
            }
        };
        if let Err(e) = runs::save(&ctx.state, &record) {
            ctx.printer.warn(&format!("recording the run in the state directory: {e:#}"));
        }
        tracing::debug!("run {} ended {:?} at {}", record.id, record.outcome, Utc::now());
        result
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
