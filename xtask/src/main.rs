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
        /// verify (backup); memory (debug)
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

/// `cargo xtask faults`: the fault tests with `FAULT_KILLS` kills each, their counts printed.
fn faults(kills: u64, seed: Option<u64>) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["test", "-p", "cache-tests", "--test", "it", "faults::", "--", "--nocapture", "--test-threads", "1"])
        .env("FAULT_KILLS", kills.to_string())
        .current_dir(root());
    if let Some(seed) = seed {
        cmd.env("FAULT_SEED", seed.to_string());
    }
    let status = cmd.status()?;
    anyhow::ensure!(status.success(), "the fault suite failed ({status})");
    Ok(())
}
