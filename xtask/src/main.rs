//! Project automation: `cargo xtask codegen [--check]`, `cargo xtask ci`, `cargo xtask bench`.
//!
//! Generated files (shell completions, man pages, the environment reference) come from the
//! tools' own clap definitions and registries, are committed, and are checked in CI.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::exit, reason = "xtask is a terminal program")]
#![allow(clippy::disallowed_methods, reason = "build variables (`CARGO`, `PATH`), not `EnvVars` settings")]

mod bench;
mod ci;
mod codegen;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "cache-toolkit project automation")]
struct Xtask {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Regenerate completions, man pages and docs/environment.md (or check them with --check)
    Codegen {
        /// Write nothing; fail with a diff when a generated file is stale
        #[arg(long)]
        check: bool,
    },
    /// Run exactly what CI runs, installing missing test servers first
    Ci,
    /// Measure a tool against the standard tools, in the same run (a command, not a test)
    Bench {
        /// Which benchmark: `cleanup`, `backup` or `debug`
        what: String,
        /// Run only these stages: analysis, unlink, evict, postgres, files, logs (cleanup); archive,
        /// verify, bigkey (backup: a 500 MB hash, the server's worst stall and the RSS); memory,
        /// mixed (1M keys of mixed shapes, with the harm bounds), rss (100k against 3M keys),
        /// cluster (a 3-primary cluster against one node) (debug)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Run the fault suite (`tests/it/faults.rs`) with many kills per scenario; every test run
    /// does a quick subset of it
    Faults {
        /// Kills per scenario
        #[arg(long, default_value_t = 25)]
        kills: u64,
        /// Seed of the kill times (replays a sequence)
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() {
    let result = match Xtask::parse().command {
        Task::Codegen { check } => codegen::run(if check { codegen::Mode::Check } else { codegen::Mode::Write }),
        Task::Ci => ci::run(),
        Task::Bench { what, only } => bench::run(&what, &only),
        Task::Faults { kills, seed } => faults(kills, seed),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (xtask's parent directory).
fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// `cargo xtask faults`: the fault tests with `FAULT_KILLS` kills each. The tests' output is
/// shown as it comes and read for each test's `faults: <group>: <checks> checks, <passed>
/// passed` line, and a table of the groups ends the run; it fails when a test failed, a group
/// has a failed check, or no group reported at all.
fn faults(kills: u64, seed: Option<u64>) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["test", "-p", "cache-tests", "--test", "it", "faults::", "--", "--nocapture", "--test-threads", "1"])
        .env("FAULT_KILLS", kills.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .current_dir(root());
    if let Some(seed) = seed {
        cmd.env("FAULT_SEED", seed.to_string());
    }
    let mut child = cmd.spawn()?;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    // Both streams echoed line by line as they come (the harness's `test ... ok` lines are on
    // stdout, the tests' own lines on stderr) and kept for the summary.
    let echo = |pipe: Box<dyn std::io::Read + Send>, to_stdout: bool| {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if to_stdout {
                    let _ = writeln!(std::io::stdout().lock(), "{line}");
                } else {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
                seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
            }
        })
    };
    let stdout = echo(Box::new(child.stdout.take().expect("piped")), true);
    let stderr = echo(Box::new(child.stderr.take().expect("piped")), false);
    let status = child.wait()?;
    let _ = (stdout.join(), stderr.join());
    let lines = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let groups = fault_groups(&lines);
    let failed_tests: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("test ").filter(|l| l.ends_with(" FAILED")))
        .map(|l| l.trim_end_matches(" FAILED").trim_end_matches(" ..."))
        .collect();
    println!("\nfault suite, FAULT_KILLS={kills}: checks per scenario group");
    println!("{:<32} {:>8} {:>8}", "group", "checks", "passed");
    let (mut checks, mut passed) = (0, 0);
    for (group, (c, p)) in &groups {
        println!("{group:<32} {c:>8} {p:>8}{}", if p < c { "  FAILED" } else { "" });
        checks += c;
        passed += p;
    }
    println!("{:<32} {checks:>8} {passed:>8}", "total");
    anyhow::ensure!(status.success() && failed_tests.is_empty(), "the fault suite failed ({status}): {failed_tests:?}");
    anyhow::ensure!(!groups.is_empty(), "no fault test reported its checks (were the tests filtered out?)");
    anyhow::ensure!(passed == checks, "{} of {checks} checks failed", checks - passed);
    Ok(())
}

/// The groups of the `faults: <group>: <checks> checks, <passed> passed` lines, in order of
/// their first line, with the checks and passed summed per group.
fn fault_groups(lines: &[String]) -> Vec<(String, (u64, u64))> {
    let mut groups: Vec<(String, (u64, u64))> = Vec::new();
    for line in lines {
        let Some(rest) = line.find("faults: ").map(|i| &line[i + "faults: ".len()..]) else { continue };
        let Some((group, counts)) = rest.rsplit_once(": ") else { continue };
        let Some((checks, passed)) = counts.split_once(" checks, ") else { continue };
        let (Ok(checks), Some(Ok(passed))) =
            (checks.parse::<u64>(), passed.strip_suffix(" passed").map(str::parse::<u64>))
        else {
            continue;
        };
        match groups.iter_mut().find(|(g, _)| g == group) {
            Some((_, (c, p))) => {
                *c += checks;
                *p += passed;
            }
            None => groups.push((group.to_owned(), (checks, passed))),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    #[test]
    fn fault_groups_are_read_from_the_summary_lines_and_summed() {
        let lines: Vec<String> = [
            "test faults::a ... faults: FAULT_SEED=1",
            "faults: cleanup killed: 10 checks, 10 passed",
            "faults: disk full (state directory): 7 checks, 5 passed",
            "faults: cleanup: 4 of 4 kills came mid-run",
            "faults: cleanup killed: 2 checks, 1 passed",
            "test faults::b ... ok",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            super::fault_groups(&lines),
            vec![("cleanup killed".to_owned(), (12, 11)), ("disk full (state directory)".to_owned(), (7, 5))]
        );
    }
}
