//! Typed errors, only where `main` must pick an exit code from them.
//!
//! Everything else is an `anyhow::Error` with context. These types travel inside `anyhow` and
//! are found again with `downcast_ref` (see [`crate::exit::Convention::for_error`]).

use std::fmt;
use std::path::PathBuf;

/// The configuration is invalid: names the file (or environment variable) and the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration in `{source_name}` at `{key}`: {message}")]
pub struct ConfigError {
    /// The file, or `environment variable NAME`, the bad value came from.
    pub source_name: String,
    /// The dotted key path, e.g. `redis[0].url`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// Builds an error for `key` in `source_name`.
    pub fn new(source_name: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { source_name: source_name.into(), key: key.into(), message: message.into() }
    }
}

/// A state file could not be read or is corrupt; it is left exactly as it was.
#[derive(Debug, thiserror::Error)]
#[error("state file `{}` {message}; it was left unchanged, move it aside to start afresh", path.display())]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

/// Another run of the same job holds the job's lock.
#[derive(Debug, thiserror::Error)]
pub struct LockHeld {
    /// The job name.
    pub job: String,
    /// Who holds it, as recorded in the lock file, when readable.
    pub holder: Option<crate::lock::LockHolder>,
}

impl fmt::Display for LockHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "another run of job `{}` holds its lock", self.job)?;
        if let Some(holder) = &self.holder {
            write!(f, " (pid {} on {}, since {}: {})", holder.pid, holder.host, holder.started_at, holder.command)?;
        }
        write!(f, "; pass --wait to wait for it")
    }
}

/// A tier the command needs could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{tier} target `{target}` is unreachable: {message}")]
pub struct Unreachable {
    /// Tier name (`redis`, `postgres`, ...).
    pub tier: String,
    /// Target name.
    pub target: String,
    /// The underlying failure.
    pub message: String,
}

/// The command line asks for something the tool refuses (exit code `USAGE`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
