//! Exit codes, documented in `docs/exit-codes.md` (generated from [`TABLE`], [`PLUGIN_TABLE`]
//! and [`TOOLS`]). Codes are added, never renumbered.
//!
//! Most tools use the standard convention below. `cache-health` follows the monitoring-plugin
//! convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) so that Nagios, Icinga and friends can
//! run it directly; [`Convention`] maps the shared failure kinds onto each convention.
//!
//! Two things decide a code, each in one place here: an error that ends the run, by its
//! [`Kind`] ([`Convention::for_error`]); and a run that finished, by how its targets fared
//! ([`Tally`]: every target unreachable is [`UNREACHABLE`], some failed is [`PARTIAL`]).

pub use crate::error::Kind;
use crate::runs::Outcome;

/// The run did everything it was asked to.
pub const SUCCESS: u8 = 0;
/// The run finished, but some items or targets failed (each one was reported).
pub const PARTIAL: u8 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: u8 = 2;
/// The configuration file or an environment override is invalid.
pub const CONFIG: u8 = 3;
/// Nothing could be done: every target the command needed was unreachable.
pub const UNREACHABLE: u8 = 4;
/// The state directory is unusable, or a state file is corrupt.
pub const STATE: u8 = 5;
/// A check found what it checks wrong: a disaster-recovery drill whose restored backup differs
/// from what the backup recorded, or does not load; a security audit scoring under its
/// `--fail-under`.
pub const MISMATCH: u8 = 6;
/// Another run of the same job holds its lock (`EX_TEMPFAIL`: try again later).
pub const LOCKED: u8 = 75;
/// The run passed its deadline (`scheduler.job_deadline`) and was stopped at a safe point,
/// recorded as `interrupted` (`timeout(1)`'s code).
pub const DEADLINE: u8 = 124;
/// The run was stopped by SIGINT (128 + 2) at a safe point, and recorded as `interrupted`.
pub const INTERRUPTED: u8 = 130;
/// The run was stopped by SIGTERM (128 + 15) at a safe point, and recorded as `interrupted`.
pub const TERMINATED: u8 = 143;

/// Monitoring-plugin codes used by `cache-health`.
pub mod plugin {
    /// Every probe is healthy (or not configured).
    pub const OK: u8 = 0;
    /// At least one probe is degraded.
    pub const WARNING: u8 = 1;
    /// At least one probe failed.
    pub const CRITICAL: u8 = 2;
    /// The check could not be run: usage, configuration or state error.
    pub const UNKNOWN: u8 = 3;
}

/// Which exit-code convention a tool follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// The toolkit's own codes (the constants in this module).
    Standard,
    /// The monitoring-plugin codes (see [`plugin`]); the lock code stays [`LOCKED`].
    MonitoringPlugin,
}

/// The standard code of each kind of error: the one place a kind becomes a code.
pub const fn standard(kind: Kind) -> u8 {
    match kind {
        Kind::Usage => USAGE,
        Kind::Config => CONFIG,
        Kind::Unreachable => UNREACHABLE,
        Kind::State => STATE,
        Kind::Locked => LOCKED,
    }
}

impl Convention {
    /// The code for a command-line usage error.
    pub fn usage(self) -> u8 {
        self.code(Some(Kind::Usage))
    }

    /// The code for an error of `kind` that ended the run (`None`: of no particular kind).
    pub fn code(self, kind: Option<Kind>) -> u8 {
        match (self, kind) {
            (_, Some(Kind::Locked)) => LOCKED,
            (Convention::Standard, Some(kind)) => standard(kind),
            (Convention::Standard, None) => PARTIAL,
            (Convention::MonitoringPlugin, _) => plugin::UNKNOWN,
        }
    }

    /// The code for an error that ended the run, chosen by its kind ([`crate::error::kind`]:
    /// wherever the typed error sits in the chain).
    pub fn for_error(self, error: &anyhow::Error) -> u8 {
        self.code(crate::error::kind(error))
    }
}

/// How one target of a run fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Its work was done.
    Done,
    /// It was reached, but some of its work failed.
    Failed,
    /// It could not be reached (or was lost before its work was done).
    Unreachable,
}

impl Reach {
    /// The reach of a target whose work ended with `error`.
    pub fn of_error(error: &anyhow::Error) -> Self {
        if crate::error::kind(error) == Some(Kind::Unreachable) { Reach::Unreachable } else { Reach::Failed }
    }

    /// The reach of a target whose work gave `result`.
    pub fn of<T>(result: &anyhow::Result<T>) -> Self {
        result.as_ref().map_or_else(Reach::of_error, |_| Reach::Done)
    }
}

/// How the targets of a run fared, for its exit code: [`UNREACHABLE`] when every target was
/// unreachable (nothing could be done), [`PARTIAL`] when any failed or was unreachable while
/// others were reached, [`SUCCESS`] otherwise (no target at all included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Targets whose work was done.
    pub done: usize,
    /// Targets reached whose work partly failed.
    pub failed: usize,
    /// Targets not reached.
    pub unreachable: usize,
}

impl Tally {
    /// Counts one more target.
    pub fn add(&mut self, reach: Reach) {
        match reach {
            Reach::Done => self.done += 1,
            Reach::Failed => self.failed += 1,
            Reach::Unreachable => self.unreachable += 1,
        }
    }

    /// Every target was unreachable (and there was at least one).
    pub fn none_reached(&self) -> bool {
        self.unreachable > 0 && self.done == 0 && self.failed == 0
    }

    /// The run's code.
    pub fn code(&self) -> u8 {
        if self.none_reached() {
            UNREACHABLE
        } else if self.failed > 0 || self.unreachable > 0 {
            PARTIAL
        } else {
            SUCCESS
        }
    }

    /// The run's code when `failures` items beyond the targets' own work failed too (a change
    /// an optimizer run could not apply, an archive a backup could not write).
    pub fn code_with(&self, failures: usize) -> u8 {
        match self.code() {
            SUCCESS if failures > 0 => PARTIAL,
            code => code,
        }
    }

    /// The run record's outcome for a run ending with `code` from [`Tally::code`] or
    /// [`Tally::code_with`].
    pub fn outcome(code: u8) -> Outcome {
        match code {
            SUCCESS => Outcome::Success,
            PARTIAL => Outcome::Partial,
            _ => Outcome::Failed,
        }
    }
}

impl FromIterator<Reach> for Tally {
    fn from_iter<I: IntoIterator<Item = Reach>>(iter: I) -> Self {
        let mut tally = Tally::default();
        for reach in iter {
            tally.add(reach);
        }
        tally
    }
}

/// Every standard code with its name and meaning, for generated documentation and tests.
pub const TABLE: &[(u8, &str, &str)] = &[
    (SUCCESS, "SUCCESS", "the run did everything it was asked to"),
    (
        PARTIAL,
        "PARTIAL",
        "the run finished, but some items or targets failed (each is reported), or it failed for a reason no other code names",
    ),
    (USAGE, "USAGE", "bad command-line usage, or a request the tool refuses"),
    (CONFIG, "CONFIG", "the configuration file or an environment override is invalid"),
    (UNREACHABLE, "UNREACHABLE", "nothing could be done: every target the command needed was unreachable"),
    (
        STATE,
        "STATE",
        "the state directory is unusable (cannot be created, not a directory, not writable) or a state file is corrupt",
    ),
    (
        MISMATCH,
        "MISMATCH",
        "a check found what it checks wrong: a disaster-recovery drill's restored backup differs from what the backup recorded, or does not load; a security audit scores under its `--fail-under`",
    ),
    (LOCKED, "LOCKED", "another run of the same job holds its lock"),
    (DEADLINE, "DEADLINE", "the job passed its deadline and was stopped at a safe point; recorded as `interrupted`"),
    (INTERRUPTED, "INTERRUPTED", "stopped by SIGINT at a safe point; the run is recorded as `interrupted`"),
    (TERMINATED, "TERMINATED", "stopped by SIGTERM at a safe point; the run is recorded as `interrupted`"),
];

/// The monitoring-plugin codes of `cache-health`, with their status names and meanings.
pub const PLUGIN_TABLE: &[(u8, &str, &str)] = &[
    (plugin::OK, "OK", "every probed target is healthy"),
    (plugin::WARNING, "WARNING", "at least one target is degraded"),
    (plugin::CRITICAL, "CRITICAL", "at least one target failed"),
    (plugin::UNKNOWN, "UNKNOWN", "the check could not run"),
    (LOCKED, "LOCKED", "another check holds the job lock"),
    (DEADLINE, "DEADLINE", "the check passed its deadline"),
    (INTERRUPTED, "INTERRUPTED", "stopped by SIGINT"),
    (TERMINATED, "TERMINATED", "stopped by SIGTERM"),
];

/// The codes one tool can return, and when.
#[derive(Clone, Copy, Debug)]
pub struct ToolCodes {
    /// The binary.
    pub tool: &'static str,
    /// Its convention.
    pub convention: Convention,
    /// Each code it can return, with when it does, in code order.
    pub codes: &'static [(u8, &'static str)],
}

impl ToolCodes {
    /// The name of `code` in this tool's convention.
    pub fn name(&self, code: u8) -> &'static str {
        let table = match self.convention {
            Convention::Standard => TABLE,
            Convention::MonitoringPlugin => PLUGIN_TABLE,
        };
        table.iter().find(|(c, _, _)| *c == code).map_or("?", |(_, name, _)| name)
    }
}

/// Which codes each tool returns and when: the source of `docs/exit-codes.md` and the man
/// pages, and the list `tests/it/exit_codes.rs` drives one by one.
pub const TOOLS: &[ToolCodes] = &[
    ToolCodes {
        tool: "cache-cleanup",
        convention: Convention::Standard,
        codes: &[
            (SUCCESS, "every selected target was cleaned (a dry run: listed what would be)"),
            (
                PARTIAL,
                "some items or targets failed, a target stopped at its blast-radius cap, or some targets were \
                 unreachable while the others were cleaned; an undo that could not put everything back",
            ),
            (
                USAGE,
                "bad usage; no `--yes` and no terminal to ask; an unscoped category; `--force` without a terminal; \
                 an undo of a run already undone",
            ),
            (CONFIG, "the configuration is invalid"),
            (
                UNREACHABLE,
                "every selected target was unreachable, or lost during its pass (rerun with `--resume`); a Redis \
                 Cluster target counts as lost when any of its primaries is",
            ),
            (STATE, "the state directory is unusable, or a state file or undo journal is corrupt"),
            (LOCKED, "another cleanup or undo holds the `cleanup` lock"),
        ],
    },
    ToolCodes {
        tool: "cache-backup",
        convention: Convention::Standard,
        codes: &[
            (SUCCESS, "the backup, verification, restore or prune did everything"),
            (
                PARTIAL,
                "a partial backup (a target, shard or archive failed, was disabled by cache-health, or some \
                 targets were unreachable while the others were backed up); a backup failing verification; a \
                 restore refusing such a backup or a partial one (without `--allow-partial`), skipping keys, or \
                 leaving out what a partial backup lacks; a prune that could not remove a backup",
            ),
            (
                USAGE,
                "bad usage; nothing selected to back up; a restore of a cache table without `--postgres`; no \
                 `--yes` and no terminal to ask",
            ),
            (CONFIG, "the configuration is invalid"),
            (
                UNREACHABLE,
                "every target to back up was unreachable (whether or not the configuration and state were \
                 archived); a restore whose target cannot be reached",
            ),
            (STATE, "the state directory is unusable, or a state file is corrupt"),
            (
                MISMATCH,
                "a drill whose restored backup differs from the figures its manifest recorded (key or row \
                 counts, sampled values or expiry times, table checksum), or fails to load or verify",
            ),
            (LOCKED, "another cache-backup command holds the `backup` lock"),
        ],
    },
    ToolCodes {
        tool: "cache-analytics",
        convention: Convention::Standard,
        codes: &[
            (
                SUCCESS,
                "collect read every target; export, dashboard, generate, forecast and windows wrote their output",
            ),
            (
                PARTIAL,
                "collect: some targets failed or were unreachable while the others were read; an export before \
                 any collect, a forecast without enough history, a Prometheus export missing a source",
            ),
            (USAGE, "bad usage"),
            (CONFIG, "the configuration is invalid"),
            (UNREACHABLE, "collect: every target was unreachable (the snapshot recording them down is still appended)"),
            (STATE, "the state directory is unusable, or the history or another state file is corrupt"),
            (LOCKED, "another collect, or a generate of the same period, holds its lock"),
        ],
    },
    ToolCodes {
        tool: "cache-optimizer",
        convention: Convention::Standard,
        codes: &[
            (
                SUCCESS,
                "analyze or run read every target and applied every change (a dry run: listed them); rollback \
                 restored every change; warm wrote its entries",
            ),
            (
                PARTIAL,
                "some targets were unreachable while the others were read; a change or a restore failed; warm had \
                 entries refused",
            ),
            (
                USAGE,
                "bad usage; no such rollback point, or one already rolled back; warm without its targets; a \
                 schedule in the past or already taken",
            ),
            (CONFIG, "the configuration is invalid"),
            (
                UNREACHABLE,
                "analyze or run: every target was unreachable, so nothing was judged or changed; warm: its \
                 PostgreSQL or Redis target cannot be reached; rollback: no change could reach its target",
            ),
            (STATE, "the state directory is unusable, or the history or a rollback point is corrupt"),
            (LOCKED, "another run or rollback holds the `optimize` lock (warm: `optimize-warm`)"),
        ],
    },
    ToolCodes {
        tool: "cache-debug",
        convention: Convention::Standard,
        codes: &[
            (SUCCESS, "every selected target was looked at (a section a server refuses says \"not supported\")"),
            (
                PARTIAL,
                "performance, connections, memory: a target's section failed (a missing table, say), or some \
                 targets were unreachable while the others were looked at; security: some targets not reached",
            ),
            (USAGE, "bad usage"),
            (CONFIG, "the configuration is invalid"),
            (UNREACHABLE, "performance, connections, memory, security: every selected target was unreachable"),
            (STATE, "the state directory is unusable, or a state file is corrupt"),
            (
                MISMATCH,
                "security --fail-under SCORE: the audit scored under SCORE (whether or not every target was \
                 reached: the gate fails closed)",
            ),
        ],
    },
    ToolCodes {
        tool: "cache-scheduler",
        convention: Convention::Standard,
        codes: &[
            (SUCCESS, "the command did what it was asked (`run JOB` exits with the job's own code)"),
            (
                PARTIAL,
                "installing or removing the schedule failed (the crontab, the cron.d file or a unit directory); \
                 `tick`: a one-off it ran failed",
            ),
            (
                USAGE,
                "bad usage; init over an existing configuration; a bad cron expression or time zone; no such \
                 window or job; a task type or alert rule no window can name; a heavy job no window admits \
                 (without --force)",
            ),
            (CONFIG, "the configuration is invalid"),
            (STATE, "the state directory is unusable, or a state file is corrupt"),
        ],
    },
    ToolCodes {
        tool: "cache-health",
        convention: Convention::MonitoringPlugin,
        codes: &[
            (
                plugin::OK,
                "every probed target is healthy; tiers with no target (`not_configured`) and a host without GPU \
                 (`not_available`) do not raise the code",
            ),
            (
                plugin::WARNING,
                "at least one target is degraded (over a warning threshold, slow, or only partly usable)",
            ),
            (plugin::CRITICAL, "at least one target failed (unreachable, timed out, over a critical threshold)"),
            (
                plugin::UNKNOWN,
                "the check could not run: usage error, invalid configuration, unusable state directory, corrupt \
                 state file",
            ),
            (
                LOCKED,
                "another `cache-health check` holds the job lock (monitoring systems read any code above 3 as UNKNOWN)",
            ),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ConfigError, LockHeld, StateDirError, Unreachable, UsageError};

    #[test]
    fn codes_are_distinct() {
        for table in [TABLE, PLUGIN_TABLE] {
            let mut codes: Vec<u8> = table.iter().map(|(code, _, _)| *code).collect();
            codes.sort_unstable();
            codes.dedup();
            assert_eq!(codes.len(), table.len());
        }
    }

    #[test]
    fn every_tool_lists_known_codes_in_order_and_always_0_2_3() {
        for tool in TOOLS {
            let codes: Vec<u8> = tool.codes.iter().map(|(code, _)| *code).collect();
            assert!(codes.windows(2).all(|w| w[0] < w[1]), "{}: {codes:?}", tool.tool);
            assert!(codes.iter().all(|c| tool.name(*c) != "?"), "{}: {codes:?}", tool.tool);
            let (usage, config) = (tool.convention.usage(), tool.convention.code(Some(Kind::Config)));
            for code in [0, usage, config] {
                assert!(codes.contains(&code), "{} lacks {code}", tool.tool);
            }
        }
    }

    #[test]
    fn plugin_convention_maps_failures_to_unknown_but_keeps_lock_code() {
        let config = anyhow::Error::new(ConfigError::new("f.toml", "redis", "bad"));
        assert_eq!(Convention::MonitoringPlugin.for_error(&config), plugin::UNKNOWN);
        assert_eq!(Convention::Standard.for_error(&config), CONFIG);
        let lock = anyhow::Error::new(LockHeld { job: "j".into(), holder: None });
        assert_eq!(Convention::MonitoringPlugin.for_error(&lock), LOCKED);
        let other = anyhow::anyhow!("boom");
        assert_eq!(Convention::Standard.for_error(&other), PARTIAL);
        assert_eq!(Convention::MonitoringPlugin.usage(), plugin::UNKNOWN);
        assert_eq!(Convention::Standard.usage(), USAGE);
    }

    #[test]
    fn each_kind_has_its_code_under_context_layers() {
        let layered = |e: anyhow::Error| e.context("reading").context("running the job");
        let unreachable = Unreachable { tier: "redis".into(), target: "main".into(), message: "refused".into() };
        let dir = StateDirError { path: "/s".into(), message: "is not a directory".into() };
        for (error, code) in [
            (layered(unreachable.into()), UNREACHABLE),
            (layered(dir.into()), STATE),
            (layered(UsageError("no".into()).into()), USAGE),
            (layered(LockHeld { job: "j".into(), holder: None }.into()), LOCKED),
        ] {
            assert_eq!(Convention::Standard.for_error(&error), code, "{error:#}");
        }
    }

    #[test]
    fn a_run_is_unreachable_only_when_no_target_was_reached() {
        use Reach::{Done, Failed, Unreachable as Down};
        let code = |reaches: &[Reach]| reaches.iter().copied().collect::<Tally>().code();
        assert_eq!(code(&[]), SUCCESS);
        assert_eq!(code(&[Done, Done]), SUCCESS);
        assert_eq!(code(&[Down]), UNREACHABLE);
        assert_eq!(code(&[Down, Down]), UNREACHABLE);
        assert_eq!(code(&[Done, Down]), PARTIAL);
        assert_eq!(code(&[Failed, Down]), PARTIAL);
        assert_eq!(code(&[Failed]), PARTIAL);
        let tally: Tally = [Done].into_iter().collect();
        assert_eq!(tally.code_with(1), PARTIAL);
        let tally: Tally = [Down].into_iter().collect();
        assert_eq!(tally.code_with(1), UNREACHABLE);
        assert_eq!(Tally::outcome(UNREACHABLE), Outcome::Failed);
        let down: anyhow::Result<()> = Err(anyhow::Error::new(crate::error::NoneReachable("x".into())).context("y"));
        assert_eq!(Reach::of(&down), Down);
        assert_eq!(Reach::of(&anyhow::Ok(())), Done);
        assert_eq!(Reach::of::<()>(&Err(anyhow::anyhow!("boom"))), Failed);
    }
}
