//! `run JOB` (seed 003's "execute now": the job now, through all its gates; `--at TIME`: a
//! one-off for `tick`) and `tick` (every one-off that is due, once).
//!
//! The tool runs as the job would from the installed schedule: the same command line, with
//! `--scheduled JOB` (so its gates apply and its run is recorded under the job), `--trigger`
//! (`manual`, `emergency`, `oneoff`) and the configuration and state directory this process
//! uses.
//!
//! `tick` holds the lock `scheduler-tick` (a tick that finds it held leaves the due one-offs to
//! the one running), marks each due one-off `running` before it starts it and `done` after, in
//! `scheduler/oneoff.json` under its own lock ([`cache_core::schedule::oneoff`]): a killed tick
//! never runs a one-off twice; the next tick marks it `interrupted`.

use std::process::Stdio;

use anyhow::Context as _;
use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::error::{Kind, UsageError};
use cache_core::exit::{self, Convention};
use cache_core::lock::JobLock;
use cache_core::output::Format;
use cache_core::runs::{self, Outcome, RunRecord, Trigger};
use cache_core::schedule::oneoff::{self, OneOff, Status};
use cache_core::schedule::{self, Effective};

use crate::render::argv;

/// The lock a tick holds while it runs the due one-offs.
pub const TICK_LOCK: &str = "scheduler-tick";

/// How a run of a job went.
#[derive(Debug)]
pub struct Ran {
    /// The tool's exit code (-1 when it could not be started or was killed).
    pub code: i32,
    /// The run record it left, if any.
    pub record: Option<RunRecord>,
}

/// `--trigger`'s value for `trigger`.
fn trigger_name(trigger: Trigger) -> String {
    clap::ValueEnum::to_possible_value(&trigger).map_or_else(|| "manual".to_owned(), |v| v.get_name().to_owned())
}

/// The command line that runs `job` now as the installed schedule would (its gates applied),
/// started by `trigger`, past the windows with `emergency`, its record to have id `run_id` when
/// given: what `run JOB` and the maintenance API's `execute` run.
pub fn command_line(
    ctx: &Context,
    job: &Effective,
    trigger: Trigger,
    emergency: bool,
    run_id: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let inv = crate::invocation(ctx)?;
    // A command that is no job of its own runs inside job JOB all the same (`--scheduled`).
    let mut words = argv(job, &inv);
    words.extend(["--trigger".to_owned(), trigger_name(trigger)]);
    if emergency {
        words.push("--emergency".to_owned());
    }
    if let Some(id) = run_id {
        words.extend(["--run-id".to_owned(), id.to_owned()]);
    }
    Ok(words)
}

/// Runs `job` now as the installed schedule would, started by `trigger`, past the windows with
/// `emergency`.
pub async fn execute(ctx: &Context, job: &Effective, trigger: Trigger, emergency: bool) -> anyhow::Result<Ran> {
    let name = job.spec.name.to_string();
    let before = runs::last(&ctx.state, &name)?.map(|r| r.id);
    let recorded = |state| -> anyhow::Result<Option<RunRecord>> {
        Ok(runs::last(state, &name)?.filter(|r| Some(&r.id) != before.as_ref()))
    };
    let words = command_line(ctx, job, trigger, emergency, None)?;
    let code = spawn(&words).await?;
    Ok(Ran { code, record: recorded(&ctx.state)? })
}

/// Runs `words` (program first), stdin closed, stdout and stderr passed on; its exit code.
async fn spawn(words: &[String]) -> anyhow::Result<i32> {
    let (program, args) = words.split_first().context("an empty command")?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running `{program}`"))?;
    Ok(status.code().unwrap_or(-1))
}

/// `run JOB [--at TIME]`.
pub async fn run(common: &CommonArgs, name: &str, at: Option<&str>) -> anyhow::Result<u8> {
    let ctx = Context::load_all(common, Format::Text, Convention::Standard)?;
    if let Some(scheduled) = &common.scheduled
        && scheduled != name
    {
        return Err(UsageError(format!("`run {name}` with `--scheduled {scheduled}`: name one job")).into());
    }
    let job = schedule::effective(&ctx.config.scheduler, &ctx.state, name)?;
    let emergency = common.emergency;
    if let Some(at) = at {
        let at = oneoff::parse_at(at)?;
        let now = cache_core::clock::now()?;
        if at <= now {
            return Err(
                UsageError(format!("--at {}: that is not in the future", at.format("%Y-%m-%d %H:%M UTC"))).into()
            );
        }
        let mut one =
            OneOff::new(name, &job.spec.command, at, "asked for with cache-scheduler run --at", "cache-scheduler run")?;
        one.emergency = emergency;
        let id = one.id.clone();
        oneoff::add(&ctx.state, one)?;
        ctx.printer.info(&format!(
            "one-off {id}: `{}` at {}; `cache-scheduler tick` (installed to run every minute) runs it",
            job.spec.command,
            at.format("%Y-%m-%d %H:%M UTC")
        ))?;
        return Ok(exit::SUCCESS);
    }
    let trigger = match (common.trigger, emergency, common.scheduled.is_some()) {
        (Some(t), _, _) => t,
        (None, true, _) => Trigger::Emergency,
        (None, false, true) => Trigger::Cron,
        (None, false, false) => Trigger::Manual,
    };
    let ran = execute(&ctx, &job, trigger, emergency).await?;
    if let Some(r) = &ran.record {
        ctx.printer.info(&format!(
            "{name}: {} ({})",
            r.outcome.name(),
            r.error.as_deref().unwrap_or("see its run record")
        ))?;
    }
    Ok(u8::try_from(ran.code).unwrap_or(exit::PARTIAL))
}

fn runner() -> String {
    format!("pid {} on {}", std::process::id(), cache_core::system::hostname())
}

/// `tick`: runs every one-off that is due, once each; exit 1 when one of them failed.
pub async fn tick(common: &CommonArgs) -> anyhow::Result<u8> {
    let ctx = Context::load_all(common, Format::Text, Convention::Standard)?;
    let _tick = match JobLock::try_acquire(&ctx.state, TICK_LOCK, "cache-scheduler tick") {
        Ok(lock) => lock,
        Err(e) if cache_core::error::kind(&e) == Some(Kind::Locked) => {
            ctx.printer.info("another tick is running the due one-offs")?;
            return Ok(exit::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    // Holding the tick lock, no other tick runs: a one-off still `running` lost its tick.
    oneoff::update(&ctx.state, |doc| {
        let now = cache_core::clock::now()?;
        for j in doc.jobs.iter_mut().filter(|j| j.status == Status::Running) {
            j.status = Status::Interrupted;
            j.ended_at = Some(now);
            j.error = Some(format!(
                "its tick ({}) ended before it finished; not run again",
                j.runner.as_deref().unwrap_or("unknown")
            ));
        }
        Ok(())
    })?;
    let mut failed = 0;
    loop {
        let now = cache_core::clock::now()?;
        let claimed = oneoff::update(&ctx.state, |doc| {
            let Some(next) = doc.jobs.iter_mut().find(|j| j.status == Status::Pending && j.at <= now) else {
                return Ok(None);
            };
            next.status = Status::Running;
            next.started_at = Some(now);
            next.runner = Some(runner());
            Ok(Some(next.clone()))
        })?;
        let Some(one) = claimed else { break };
        let (status, code, record, error) = match run_oneoff(&ctx, &one).await {
            Ok(ran) => {
                let outcome = ran.record.as_ref().map(|r| r.outcome);
                let status = match (outcome, ran.code) {
                    (Some(Outcome::Skipped), _) => Status::Skipped,
                    (Some(Outcome::Success), 0) | (None, 0) => Status::Done,
                    _ => Status::Failed,
                };
                let error = ran.record.as_ref().and_then(|r| r.error.clone());
                (status, Some(ran.code), ran.record.map(|r| r.id), error)
            }
            Err(e) => (Status::Failed, None, None, Some(format!("{e:#}"))),
        };
        if status == Status::Failed {
            failed += 1;
        }
        let id = one.id.clone();
        oneoff::update(&ctx.state, |doc| {
            if let Some(j) = doc.jobs.iter_mut().find(|j| j.id == id) {
                j.status = status;
                j.ended_at = Some(cache_core::clock::now()?);
                j.exit_code = code;
                j.run_id = record;
                j.error = error;
            }
            Ok(())
        })?;
        ctx.printer.info(&format!("one-off {id}: {status}"))?;
    }
    Ok(if failed > 0 { exit::PARTIAL } else { exit::SUCCESS })
}

/// Runs one claimed one-off as its job, with its own command (checked again: the state file
/// is not trusted to name a program).
async fn run_oneoff(ctx: &Context, one: &OneOff) -> anyhow::Result<Ran> {
    schedule::check_command(&one.command)
        .map_err(|e| UsageError(format!("one-off `{}`: {}: {e}", one.id, one.command)))?;
    let mut job = schedule::effective(&ctx.config.scheduler, &ctx.state, &one.job)?;
    job.spec.command = one.command.clone().into();
    execute(ctx, &job, Trigger::Oneoff, one.emergency).await
}
