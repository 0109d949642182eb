//! `cargo xtask ci`: exactly what CI runs, on a fresh Debian machine too.
//!
//! It first installs what the tests need and the machine lacks (redis-server, PostgreSQL,
//! promtool, alertmanager, chromium, cron, systemd-analyze; with apt-get when root; kubernetes-validate,
//! mem0ai, upstash-redis, moto (an S3-compatible server) and openapi-spec-validator (which checks
//! docs/api/openapi.json) from PyPI with pip), then runs formatting, lints with and without default features, the
//! generated-files check, the whole test suite (with `CI` set, so no server test can skip), and
//! the documentation build.

use std::process::Command;

use anyhow::{Context as _, bail};

/// Debian packages providing each binary the tests run.
const NEEDED: &[(&str, &str)] = &[
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("initdb", "postgresql"),
    ("pkg-config", "pkg-config"),
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
    ("prometheus-node-exporter", "prometheus-node-exporter"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
    ("amtool", "prometheus-alertmanager"),
    ("chromium", "chromium"),
    ("crontab", "cron"),
    ("systemd-analyze", "systemd"),
    ("check_postgres", "check-postgres"),
    ("age", "age"),
];

/// PyPI packages providing each program the tests run (pip installs them; Debian's own Python
/// is externally managed, PEP 668, so pip there needs `--break-system-packages`). A
/// `python3:MODULE` entry is a module `python3` must import (mem0ai: the official Mem0 SDK that
/// `tests/it/mem0.rs` runs against the stand-in; upstash-redis: Upstash's Python client, which
/// `tests/it/upstash.rs` runs against the REST stand-in).
const NEEDED_PYPI: &[(&str, &str)] = &[
    ("kubernetes-validate", "kubernetes-validate"),
    ("python3:mem0.client.main", "mem0ai"),
    ("python3:upstash_redis", "upstash-redis"),
    ("moto_server", "moto[server]"),
    ("openapi-spec-validator", "openapi-spec-validator"),
];

pub(crate) fn run() -> anyhow::Result<()> {
    install_missing()?;
    let root = crate::root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let step = |title: &str, args: &[&str], env: &[(&str, &str)]| -> anyhow::Result<()> {
        println!("\n==> {title}");
        let status = Command::new(&cargo)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&root)
            .status()
            .with_context(|| format!("running cargo {}", args.join(" ")))?;
        if !status.success() {
            bail!("{title} failed ({status})");
        }
        Ok(())
    };
    step("cargo fmt --check", &["fmt", "--all", "--check"], &[])?;
    step(
        "clippy (all features)",
        &["clippy", "--workspace", "--all-targets", "--all-features", "--locked", "--", "-D", "warnings"],
        &[],
    )?;
    step(
        "clippy (no default features)",
        &["clippy", "--workspace", "--all-targets", "--no-default-features", "--locked", "--", "-D", "warnings"],
        &[],
    )?;
    println!("\n==> codegen --check");
    crate::codegen::run(crate::codegen::Mode::Check)?;
    let nextest = Command::new(&cargo).args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success());
    if nextest {
        step("tests (nextest)", &["nextest", "run", "--workspace", "--profile", "ci", "--locked"], &[("CI", "true")])?;
    } else {
        step("tests (cargo test)", &["test", "--workspace", "--locked"], &[("CI", "true")])?;
    }
    step("rustdoc", &["doc", "--no-deps", "--workspace", "--locked"], &[("RUSTDOCFLAGS", "-D warnings")])?;
    println!("\nci: all steps passed");
    Ok(())
}

fn on_path(binary: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(binary).is_file())
        || (binary == "initdb"
            && std::fs::read_dir("/usr/lib/postgresql")
                .is_ok_and(|versions| versions.filter_map(Result::ok).any(|v| v.path().join("bin/initdb").is_file())))
}

fn install_missing() -> anyhow::Result<()> {
    install(NEEDED)?;
    if !Command::new("pkg-config").args(["--exists", "openssl"]).status().is_ok_and(|s| s.success()) {
        install_packages(&["libssl-dev"])?;
    }
    install_pypi(NEEDED_PYPI)
}

/// The packages of the (program, package) pairs whose program is missing: a binary not on
/// `PATH`, or a `python3:MODULE` that `python3` cannot import.
fn missing<'a>(needed: &[(&str, &'a str)]) -> Vec<&'a str> {
    let present = |bin: &str| match bin.strip_prefix("python3:") {
        Some(module) => {
            Command::new("python3").args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
        }
        None => on_path(bin),
    };
    let mut packages: Vec<&str> = needed.iter().filter(|(bin, _)| !present(bin)).map(|(_, pkg)| *pkg).collect();
    packages.dedup();
    packages
}

/// Installs with pip the PyPI package of each (program, package) whose program is missing.
fn install_pypi(needed: &[(&str, &str)]) -> anyhow::Result<()> {
    let packages = missing(needed);
    if packages.is_empty() {
        return Ok(());
    }
    let has_pip =
        || Command::new("python3").args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_pip() {
        install_packages(&["python3-pip"])?;
    }
    println!("==> installing missing PyPI packages: {}", packages.join(" "));
    let pip = |extra: &[&str]| -> anyhow::Result<bool> {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(extra)
            .args(&packages)
            .status()
            .context("running python3 -m pip (install python3-pip)")?;
        Ok(status.success())
    };
    // A virtual environment or pyenv's Python takes the packages as they are; Debian's wants
    // the flag.
    if !pip(&[])? && !pip(&["--break-system-packages"])? {
        bail!("pip install {} failed; install it by hand", packages.join(" "));
    }
    Ok(())
}

/// Installs the Debian package of each (binary, package) whose binary is missing.
pub(crate) fn install(needed: &[(&str, &str)]) -> anyhow::Result<()> {
    let packages = missing(needed);
    install_packages(&packages)
}

fn install_packages(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    println!("==> installing missing packages: {}", packages.join(" "));
    let root = rustix_is_root();
    let (program, prefix): (&str, Vec<&str>) = if root { ("apt-get", vec![]) } else { ("sudo", vec!["-n", "apt-get"]) };
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new(program)
            .args(&prefix)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| {
            format!("running {program} (install {} by hand if this machine has no apt-get)", packages.join(" "))
        })?;
        if !status.success() {
            bail!("apt-get {} failed ({status}); install {} by hand", args.join(" "), packages.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(packages);
    apt(&install)
}

fn rustix_is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
