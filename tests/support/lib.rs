//! The test kit: real servers and a clean environment for the integration tests.
//!
//! - [`RedisServer`]: a real `redis-server` on a free loopback port and a Unix socket.
//! - [`PgServer`]: a real PostgreSQL (`initdb` + `postgres`), on a Unix socket, run as the
//!   `postgres` user when the tests run as root.
//! - [`Mem0Server`]: a small HTTP server speaking the Mem0 platform and self-hosted dialects.
//! - [`HttpReceiver`], [`SmtpServer`]: notification receivers speaking HTTP and SMTP.
//! - [`S3Server`]: a real S3-compatible server (moto's server mode) with a bucket.
//! - [`UpstashStandIn`]: Upstash's REST API in front of a real redis-server.
//! - [`Alertmanager`]: a real Prometheus Alertmanager (and `amtool`) on a free loopback port.
//! - [`Blackhole`]: a listener that accepts connections and never answers.
//! - [`history`]: synthetic analytics histories with known answers.
//! - [`TestEnv`]: a temporary state directory and config, and a runner that scrubs `CACHE_*`
//!   and the connection variables from the environment and dumps everything on failure.
//!
//! Servers live in temporary directories and are killed on drop. A missing server binary skips
//! the test with a note, except when `CI` is set, where it fails the test.

#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout, reason = "test kit: panics are failures")]
#![allow(clippy::disallowed_methods, reason = "test variables (`CI`, `PATH`, server paths), not `EnvVars`")]

mod alertmanager;
mod cluster;
mod env;
pub mod history;
mod mem0;
mod net;
mod pg;
mod receivers;
mod redis_server;
mod s3;
mod stub_http;
mod tls;
mod upstash;

pub use alertmanager::Alertmanager;
pub use cluster::RedisCluster;
pub use env::{HOST_JUDGED_LOOSELY, RunOutput, TestEnv};
pub use mem0::{Mem0Server, RecordedRequest};
pub use net::{Blackhole, free_port};
pub use pg::{PG_BIN_ENV, PgOptions, PgServer};
pub use receivers::{HttpReceiver, Mail, Received, SmtpServer};
pub use redis_server::{REDIS_SERVER_ENV, RedisServer};
pub use s3::S3Server;
pub use stub_http::StubHttp;
pub use tls::SelfSigned;
pub use upstash::UpstashStandIn;

use std::path::PathBuf;

/// Finds `name` on PATH or in `extra` directories (globs allowed in `extra`).
pub fn find_binary(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .chain(extra.iter().flat_map(|pattern| expand(pattern)).map(|dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn expand(pattern: &str) -> Vec<PathBuf> {
    // Only a trailing `*/bin`-style glob is needed: /usr/lib/postgresql/*/bin.
    match pattern.split_once('*') {
        None => vec![PathBuf::from(pattern)],
        Some((head, tail)) => {
            let mut found: Vec<PathBuf> = std::fs::read_dir(head)
                .map(|rd| rd.filter_map(Result::ok).map(|e| e.path().join(tail.trim_start_matches('/'))).collect())
                .unwrap_or_default();
            found.sort();
            found.reverse(); // Newest version first.
            found
        }
    }
}

/// Called when a server binary is missing: a note and `None` locally, a panic under `CI`.
pub fn missing(what: &str) -> Option<std::convert::Infallible> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed, and CI is set: install it (cargo xtask ci does)");
    }
    eprintln!("note: skipping: {what} is not installed");
    None
}

/// The uid and gid of system user `name` (from `/etc/passwd`), when there is one.
pub fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some(name))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// Polls `ready` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ready()
}
