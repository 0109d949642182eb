//! The user's crontab, read with `crontab -l` and written with `crontab -`: our block is put in
//! or taken out, every other line kept as it was. Markers that do not pair up are a refusal,
//! never a guess.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use cache_core::error::UsageError;

use crate::render::{BEGIN, END};

fn crontab(user: Option<&str>) -> Command {
    let mut cmd = Command::new("crontab");
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    cmd
}

/// The current crontab (empty when there is none).
pub fn read(user: Option<&str>) -> anyhow::Result<String> {
    let out =
        crontab(user).arg("-l").stdin(Stdio::null()).output().context("running `crontab -l` (is cron installed?)")?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no crontab for") {
        return Ok(String::new());
    }
    anyhow::bail!("`crontab -l` failed: {}", stderr.trim())
}

/// Replaces the crontab.
pub fn write(user: Option<&str>, text: &str) -> anyhow::Result<()> {
    let mut child =
        crontab(user).arg("-").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().context("running `crontab -`")?;
    child.stdin.take().context("crontab's stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("`crontab -` refused the new crontab: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Where our block is: `(first line, last line)`, or `None`; an error when markers are unbalanced.
fn find(lines: &[&str]) -> anyhow::Result<Option<(usize, usize)>> {
    let begins: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.starts_with(BEGIN)).map(|(i, _)| i).collect();
    let ends: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.trim_end() == END).map(|(i, _)| i).collect();
    match (begins.as_slice(), ends.as_slice()) {
        ([], []) => Ok(None),
        ([b], [e]) if b < e => Ok(Some((*b, *e))),
        _ => Err(UsageError(format!(
            "the crontab has {} `{BEGIN}` and {} `{END}` lines that do not pair up; fix it by hand (crontab -e), \
             nothing was changed",
            begins.len(),
            ends.len()
        ))
        .into()),
    }
}

/// `existing` with `block` in place of ours (or added at the end).
pub fn merge(existing: &str, block: &str) -> anyhow::Result<String> {
    let lines: Vec<&str> = existing.lines().collect();
    let mut out = String::new();
    match find(&lines)? {
        Some((b, e)) => {
            for l in &lines[..b] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(block);
            for l in &lines[e + 1..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        None => {
            out.push_str(existing);
            if !existing.is_empty() && !existing.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
        }
    }
    Ok(out)
}

/// `existing` without our block; `None` when it has none.
pub fn remove(existing: &str) -> anyhow::Result<Option<String>> {
    let lines: Vec<&str> = existing.lines().collect();
    let Some((b, e)) = find(&lines)? else { return Ok(None) };
    let mut out = String::new();
    for l in lines[..b].iter().chain(&lines[e + 1..]) {
        out.push_str(l);
        out.push('\n');
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "# BEGIN cache-toolkit: x\n* * * * * a\n# END cache-toolkit\n";

    #[test]
    fn merge_is_idempotent_and_keeps_other_lines() {
        let mine = "MAILTO=me\n0 5 * * * backup-home\n";
        let once = merge(mine, BLOCK).unwrap();
        assert_eq!(once, format!("{mine}{BLOCK}"));
        assert_eq!(merge(&once, BLOCK).unwrap(), once);
        let changed = merge(&once, &BLOCK.replace("* * * * * a", "1 * * * * b")).unwrap();
        assert!(changed.contains("1 * * * * b") && !changed.contains("* * * * * a"));
        assert_eq!(remove(&once).unwrap().unwrap(), mine);
        assert_eq!(remove(mine).unwrap(), None);
    }

    #[test]
    fn unbalanced_markers_are_refused() {
        for bad in [
            "# BEGIN cache-toolkit\n",
            "# END cache-toolkit\n",
            "# END cache-toolkit\n# BEGIN cache-toolkit\n",
            &format!("{BLOCK}{BLOCK}"),
        ] {
            assert!(merge(bad, BLOCK).is_err(), "{bad:?}");
            assert!(remove(bad).is_err(), "{bad:?}");
        }
    }
}
