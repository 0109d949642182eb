//! The schedule rendered for cron (a marked block for a user's crontab, or `/etc/cron.d`) and
//! systemd (a service and a timer per job); Kubernetes is [`crate::kubernetes`].
//!
//! Every rendered line runs a tool by absolute path with `--scheduled JOB`, so the run passes
//! the scheduler's gates (automation on, windows, dependencies, fleet lock) and is recorded under
//! the job's name, and with the configuration file and the state directory the installer used
//! (`--config`, `--state-dir`, absolute and quoted), so that cron's bare environment runs the
//! jobs as they were installed and tested ([`Invocation`]). (A command that is no job of its
//! own, such as `cache-debug security`, runs inside job JOB under `--scheduled JOB`.) One more
//! line runs `cache-scheduler tick` every minute: the one-off runs. Cron reads expressions in the system's time zone: set `scheduler.timezone` to it.
//! systemd timers carry the zone explicitly.

use std::fmt::Write as _;
use std::path::PathBuf;

use cache_core::config::SchedulerSettings;
use cache_core::schedule::Effective;

/// First line of the block in a user's crontab.
pub const BEGIN: &str = cache_core::schedule::CRONTAB_BEGIN;
/// Last line of the block.
pub const END: &str = "# END cache-toolkit";
/// The name `tick` has in rendered units (not a job: it records no run of its own).
pub const TICK: &str = "tick";

/// How the installed lines run the tools: from where, with which configuration file and state
/// directory (those the installer resolved, so the installed schedule runs as it was tested).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The tools' directory (absolute); `None`: bare names, found on the `PATH` (a container).
    pub bin_dir: Option<PathBuf>,
    /// `--config`; `None` for the embedded default.
    pub config: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
}

impl Invocation {
    /// The program of `tool`: `<bin_dir>/<tool>`, or its bare name.
    pub fn program(&self, tool: &str) -> String {
        match &self.bin_dir {
            Some(dir) => dir.join(tool).display().to_string(),
            None => tool.to_owned(),
        }
    }

    /// `--config C --state-dir S`, as far as they are known.
    pub fn options(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = &self.config {
            out.extend(["--config".to_owned(), c.display().to_string()]);
        }
        if let Some(s) = &self.state_dir {
            out.extend(["--state-dir".to_owned(), s.display().to_string()]);
        }
        out
    }
}

/// The words a job's line runs: `<bin>/<tool> <args> --scheduled JOB --config C --state-dir S`.
pub fn argv(job: &Effective, inv: &Invocation) -> Vec<String> {
    let mut out = vec![inv.program(job.spec.tool())];
    out.extend(job.spec.words().into_iter().skip(1));
    out.extend(["--scheduled".to_owned(), job.spec.name.to_string()]);
    out.extend(inv.options());
    out
}

/// The words of the every-minute `cache-scheduler tick`.
pub fn tick_argv(inv: &Invocation) -> Vec<String> {
    let mut out = vec![inv.program("cache-scheduler"), "tick".to_owned(), "-q".to_owned()];
    out.extend(inv.options());
    out
}

/// `word` for a POSIX shell: as it is when it is plain, else in single quotes.
pub fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@+,%".contains(&b));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}

/// A command line for a crontab: each word shell-quoted, and `%` (a newline to cron) escaped.
pub fn cron_command(argv: &[String]) -> String {
    argv.iter().map(|w| sh_quote(w)).collect::<Vec<_>>().join(" ").replace('%', "\\%")
}

/// `word` for systemd's `ExecStart=`: specifiers (`%`) and variables (`$`) doubled, and in
/// double quotes when it holds anything but plain characters.
pub fn systemd_quote(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@+,%$".contains(&b));
    if plain { escaped } else { format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\"")) }
}

fn header(inv: &Invocation) -> String {
    let config = inv.config.as_ref().map_or("the embedded default".to_owned(), |c| c.display().to_string());
    let state = inv.state_dir.as_ref().map_or("the default".to_owned(), |s| s.display().to_string());
    format!("# configuration: {config}; state directory: {state}\n")
}

/// The marked block for a user's crontab.
pub fn crontab_block(jobs: &[Effective], inv: &Invocation) -> String {
    let mut out = format!("{BEGIN}: managed by `cache-scheduler install`; change it there, not here\n");
    out.push_str(&header(inv));
    out.push_str("# One-off runs (cache-scheduler run JOB --at TIME, cache-optimizer schedule), when due\n");
    let _ = writeln!(out, "* * * * * {}", cron_command(&tick_argv(inv)));
    for job in jobs {
        let _ = writeln!(out, "# {} ({})", job.spec.description, job.spec.name);
        let line = format!("{} {}", job.schedule, cron_command(&argv(job, inv)));
        if job.enabled {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "# disabled: {line}");
        }
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// `/etc/cron.d/cache-toolkit`: the `SHELL`/`PATH`/`MAILTO` header, the user field, and `test
/// -x` guards so a removed package leaves cron quiet.
pub fn cron_d(jobs: &[Effective], settings: &SchedulerSettings, inv: &Invocation) -> String {
    let mut out = String::from(
        "# /etc/cron.d/cache-toolkit: written by `cache-scheduler install --cron-d`; change it there.\n\
         SHELL=/bin/sh\n",
    );
    let _ = writeln!(out, "PATH={}", settings.path);
    if !settings.mailto.is_empty() {
        let _ = writeln!(out, "MAILTO={}", settings.mailto);
    }
    out.push_str(&header(inv));
    let guarded = |argv: &[String]| format!("test -x {} && {}", cron_command(&argv[..1]), cron_command(argv));
    out.push_str("# One-off runs (cache-scheduler run JOB --at TIME, cache-optimizer schedule), when due\n");
    let _ = writeln!(out, "* * * * * {} {}", settings.user, guarded(&tick_argv(inv)));
    for job in jobs {
        let _ = writeln!(out, "# {} ({})", job.spec.description, job.spec.name);
        let line = format!("{} {} {}", job.schedule, settings.user, guarded(&argv(job, inv)));
        if job.enabled {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "# disabled: {line}");
        }
    }
    out
}

/// The values a cron field stands for, in `lo..=hi`; `None` for `*`.
fn expand(field: &str, lo: u32, hi: u32, names: &[&str]) -> anyhow::Result<Option<Vec<u32>>> {
    if field == "*" {
        return Ok(None);
    }
    let value = |t: &str| -> anyhow::Result<u32> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(i as u32 + lo);
        }
        t.parse().map_err(|_| anyhow::anyhow!("`{t}` in `{field}`"))
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| anyhow::anyhow!("step `{s}`"))?),
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, hi),
                None => (value(r)?, value(r)?),
            },
        };
        out.extend((a..=b).step_by(step.max(1) as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

fn list(values: &[u32], width: usize) -> String {
    values.iter().map(|v| format!("{v:0width$}")).collect::<Vec<_>>().join(",")
}

/// A five-field cron expression as a systemd `OnCalendar=` value in `timezone`.
pub fn on_calendar(expression: &str, timezone: &str) -> anyhow::Result<String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        anyhow::bail!("`{expression}` is not a five-field cron expression");
    };
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let minutes = expand(minute, 0, 59, &[])?;
    let hours = expand(hour, 0, 23, &[])?;
    let doms = expand(dom, 1, 31, &[])?;
    let months = expand(month, 1, 12, &MONTHS)?;
    let dows = expand(dow, 0, 7, &DAYS)?;
    if doms.is_some() && dows.is_some() {
        anyhow::bail!(
            "`{expression}` restricts both the day of the month and of the week, which cron ORs and systemd ANDs"
        );
    }
    let star = |v: &Option<Vec<u32>>, width| v.as_ref().map_or("*".to_owned(), |v| list(v, width));
    let mut out = String::new();
    if let Some(d) = dows {
        const NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        let mut d: Vec<u32> = d.into_iter().map(|d| d % 7).collect();
        d.sort_unstable();
        d.dedup();
        out.push_str(&d.iter().map(|d| NAMES[*d as usize]).collect::<Vec<_>>().join(","));
        out.push(' ');
    }
    let _ = write!(
        out,
        "*-{}-{} {}:{}:00 {timezone}",
        star(&months, 2),
        star(&doms, 2),
        star(&hours, 2),
        star(&minutes, 2)
    );
    Ok(out)
}

/// The unit name stem of a job.
pub fn unit(job: &Effective) -> String {
    format!("cache-toolkit-{}", job.spec.name)
}

fn units(out: &mut Vec<(String, String)>, name: &str, description: &str, argv: &[String], cron: &str, calendar: &str) {
    let service = format!(
        "# Written by `cache-scheduler install --systemd`; change it there.\n\
         [Unit]\nDescription=cache-toolkit: {description}\n\
         After=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=oneshot\nExecStart={cmd}\n",
        cmd = argv.iter().map(|w| systemd_quote(w)).collect::<Vec<_>>().join(" "),
    );
    let timer = format!(
        "# Written by `cache-scheduler install --systemd`; change it there.\n\
         [Unit]\nDescription=cache-toolkit: {description} (cron: {cron})\n\n\
         [Timer]\nOnCalendar={calendar}\nPersistent=true\nUnit={name}.service\n\n\
         [Install]\nWantedBy=timers.target\n",
    );
    out.push((format!("{name}.service"), service));
    out.push((format!("{name}.timer"), timer));
}

/// The service and timer units of each enabled job, and of the every-minute tick:
/// `(file name, content)`.
pub fn systemd(
    jobs: &[Effective],
    settings: &SchedulerSettings,
    inv: &Invocation,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for job in jobs.iter().filter(|j| j.enabled) {
        let description = format!("{} ({})", job.spec.description, job.spec.tool());
        let calendar = on_calendar(&job.schedule, &settings.timezone)?;
        units(&mut out, &unit(job), &description, &argv(job, inv), &job.schedule, &calendar);
    }
    let calendar = on_calendar("* * * * *", &settings.timezone)?;
    units(
        &mut out,
        &format!("cache-toolkit-{TICK}"),
        "one-off runs when due (cache-scheduler tick)",
        &tick_argv(inv),
        "* * * * *",
        &calendar,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_to_on_calendar() {
        assert_eq!(on_calendar("*/15 * * * *", "UTC").unwrap(), "*-*-* *:00,15,30,45:00 UTC");
        assert_eq!(on_calendar("0 */2 * * *", "UTC").unwrap(), "*-*-* 00,02,04,06,08,10,12,14,16,18,20,22:00:00 UTC");
        assert_eq!(on_calendar("0 4 * * 0", "Europe/Berlin").unwrap(), "Sun *-*-* 04:00:00 Europe/Berlin");
        assert_eq!(on_calendar("0 6 1 * *", "UTC").unwrap(), "*-*-01 06:00:00 UTC");
        assert_eq!(on_calendar("30 1 * 1-3 mon-fri", "UTC").unwrap(), "Mon,Tue,Wed,Thu,Fri *-01,02,03-* 01:30:00 UTC");
        assert_eq!(on_calendar("0 0 * * 7", "UTC").unwrap(), "Sun *-*-* 00:00:00 UTC");
        assert!(on_calendar("0 0 1 * 1", "UTC").unwrap_err().to_string().contains("cron ORs"));
    }

    #[test]
    fn words_are_quoted_for_the_shell_cron_and_systemd() {
        assert_eq!(sh_quote("/usr/local/bin/cache-health"), "/usr/local/bin/cache-health");
        assert_eq!(sh_quote("/srv/my state/it's"), "'/srv/my state/it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(cron_command(&["a".into(), "50%".into()]), "a 50\\%");
        assert_eq!(systemd_quote("/srv/a b/%i$x"), "\"/srv/a b/%%i$$x\"");
        assert_eq!(systemd_quote("/srv/ok"), "/srv/ok");
    }

    #[test]
    fn lines_carry_the_configuration_and_state_directory() {
        let settings = SchedulerSettings::default();
        let jobs = cache_core::schedule::configured(&settings).unwrap();
        let inv = Invocation {
            bin_dir: Some("/opt/ct/bin".into()),
            config: Some("/etc/ct/my config.toml".into()),
            state_dir: Some("/var/lib/ct".into()),
        };
        let block = crontab_block(&jobs, &inv);
        assert!(
            block.contains(
                "\n*/30 * * * * /opt/ct/bin/cache-health check -q --scheduled health-check --config \
                 '/etc/ct/my config.toml' --state-dir /var/lib/ct\n"
            ),
            "{block}"
        );
        assert!(block.contains("\n* * * * * /opt/ct/bin/cache-scheduler tick -q --config"), "{block}");
        assert!(block.contains("/opt/ct/bin/cache-debug security -q --scheduled security-audit --config"), "{block}");
        // The embedded default: no --config.
        let bare =
            crontab_block(&jobs, &Invocation { bin_dir: Some("/usr/local/bin".into()), ..Invocation::default() });
        assert!(bare.contains("\n0 1 * * * /usr/local/bin/cache-backup create -q --scheduled backup\n"), "{bare}");
    }
}
