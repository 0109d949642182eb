//! The schedule rendered for cron (a marked block for a user's crontab, or `/etc/cron.d`),
//! systemd (a service and a timer per job) and Kubernetes (a CronJob per job).
//!
//! Every rendered line runs a tool with `--scheduled JOB`, so the run passes the scheduler's
//! gates (automation on, windows, dependencies, fleet lock) and is recorded under the job's
//! name. Cron reads expressions in the system's time zone: set `scheduler.timezone` to it.
//! systemd timers and CronJobs carry the zone explicitly.

use std::fmt::Write as _;
use std::path::Path;

use cache_core::config::SchedulerSettings;
use cache_core::schedule::Effective;

/// First line of the block in a user's crontab.
pub const BEGIN: &str = cache_core::schedule::CRONTAB_BEGIN;
/// Last line of the block.
pub const END: &str = "# END cache-toolkit";

/// The job's command line with absolute paths: `<bin_dir>/<tool> <args> --scheduled <job>`.
pub fn command(job: &Effective, bin_dir: &Path) -> String {
    format!("{}/{} --scheduled {}", bin_dir.display(), job.spec.command, job.spec.name)
}

/// The marked block for a user's crontab.
pub fn crontab_block(jobs: &[Effective], bin_dir: &Path) -> String {
    let mut out = format!("{BEGIN}: managed by `cache-scheduler install`; change it there, not here\n");
    for job in jobs {
        let _ = writeln!(out, "# {} ({})", job.spec.description, job.spec.name);
        let line = format!("{} {}", job.schedule, command(job, bin_dir));
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

/// `/etc/cron.d/cache-toolkit`: environment header, the user field, and `test -x` guards so a
/// removed package leaves cron quiet.
pub fn cron_d(jobs: &[Effective], settings: &SchedulerSettings, bin_dir: &Path) -> String {
    let mut out = String::from(
        "# /etc/cron.d/cache-toolkit: written by `cache-scheduler install --cron-d`; change it there.\n\
         SHELL=/bin/sh\n",
    );
    let _ = writeln!(out, "PATH={}", settings.path);
    if !settings.mailto.is_empty() {
        let _ = writeln!(out, "MAILTO={}", settings.mailto);
    }
    for job in jobs {
        let tool = job.spec.command.split_whitespace().next().unwrap_or_default();
        let _ = writeln!(out, "# {} ({})", job.spec.description, job.spec.name);
        let line = format!(
            "{} {} test -x {}/{tool} && {}",
            job.schedule,
            settings.user,
            bin_dir.display(),
            command(job, bin_dir)
        );
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

/// The service and timer units of each enabled job: `(file name, content)`.
pub fn systemd(
    jobs: &[Effective],
    settings: &SchedulerSettings,
    bin_dir: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for job in jobs.iter().filter(|j| j.enabled) {
        let name = unit(job);
        let tool = job.spec.command.split_whitespace().next().unwrap_or_default();
        let service = format!(
            "# Written by `cache-scheduler install --systemd`; change it there.\n\
             [Unit]\nDescription=cache-toolkit: {desc} ({tool})\n\
             After=network-online.target\nWants=network-online.target\n\n\
             [Service]\nType=oneshot\nExecStart={cmd}\n",
            desc = job.spec.description,
            cmd = command(job, bin_dir),
        );
        let timer = format!(
            "# Written by `cache-scheduler install --systemd`; change it there.\n\
             [Unit]\nDescription=cache-toolkit: {desc} (cron: {cron})\n\n\
             [Timer]\nOnCalendar={cal}\nPersistent=true\nUnit={name}.service\n\n\
             [Install]\nWantedBy=timers.target\n",
            desc = job.spec.description,
            cron = job.schedule,
            cal = on_calendar(&job.schedule, &settings.timezone)?,
        );
        out.push((format!("{name}.service"), service));
        out.push((format!("{name}.timer"), timer));
    }
    Ok(out)
}

fn quoted(text: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

/// A Kubernetes CronJob per enabled job, as one YAML stream.
pub fn kubernetes(jobs: &[Effective], settings: &SchedulerSettings, image: &str, namespace: Option<&str>) -> String {
    let mut out = String::new();
    for job in jobs.iter().filter(|j| j.enabled) {
        let mut args: Vec<String> = job.spec.command.split_whitespace().map(quoted).collect();
        args.extend(["--scheduled".to_owned(), job.spec.name.to_owned()].iter().map(|a| quoted(a)));
        let namespace = namespace.map(|n| format!("  namespace: {}\n", quoted(n))).unwrap_or_default();
        let _ = write!(
            out,
            "---\n# {desc}\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}\n{namespace}  labels:\n    \
             app.kubernetes.io/name: cache-toolkit\n    app.kubernetes.io/component: {job}\nspec:\n  schedule: {schedule}\n  \
             timeZone: {tz}\n  concurrencyPolicy: Forbid\n  startingDeadlineSeconds: 300\n  successfulJobsHistoryLimit: 3\n  \
             failedJobsHistoryLimit: 3\n  jobTemplate:\n    spec:\n      backoffLimit: 0\n      template:\n        spec:\n          \
             restartPolicy: Never\n          containers:\n            - name: {job}\n              image: {image}\n              \
             args: [{args}]\n",
            desc = job.spec.description,
            name = unit(job),
            job = job.spec.name,
            schedule = quoted(&job.schedule),
            tz = quoted(&settings.timezone),
            image = quoted(image),
            args = args.join(", "),
        );
    }
    out
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
}
