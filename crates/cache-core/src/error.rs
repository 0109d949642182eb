//! Typed errors, only where `main` must pick an exit code from them.
//!
//! Everything else is an `anyhow::Error` with context. Each type here carries its [`Kind`]
//! ([`Coded`]), and [`kind`] finds the kind of an error wherever the coded error sits: the
//! error itself, under any number of `.context(...)` layers, as the source of another error,
//! or as a context itself. [`crate::exit`] maps each kind to its code; nothing else decides.

use std::fmt;
use std::path::PathBuf;

/// The configuration is invalid: names the file (or environment variable) and the key.
#[derive(Clone, Debug, thiserror::Error)]
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

/// The run was stopped by a signal (SIGTERM or SIGINT) at a safe point.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {0} at a safe point; the run is recorded as interrupted")]
pub struct Interrupted(pub &'static str);

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

/// The state directory itself is unusable: it cannot be found or created, it is not a
/// directory, or it is not writable.
#[derive(Debug, thiserror::Error)]
#[error("state directory `{}` {message}; pass --state-dir or set CACHE_STATE_DIR to a usable one", path.display())]
pub struct StateDirError {
    /// The directory.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

/// Nothing could be done because every target the command needed was unreachable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoneReachable(pub String);

/// The kinds of failure that decide an exit code; [`crate::exit`] gives each its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The command line asks for something the tool refuses.
    Usage,
    /// The configuration is invalid.
    Config,
    /// A tier the command needs could not be reached.
    Unreachable,
    /// The state directory is unusable, or a state file is corrupt.
    State,
    /// Another run of the job holds its lock.
    Locked,
}

/// An error type that carries its [`Kind`].
pub trait Coded: std::error::Error + Send + Sync + 'static {
    /// The kind of every error of this type.
    const KIND: Kind;
}

/// Declares the coded types, once: their [`Coded`] impls and the two lookups of [`kind`].
macro_rules! coded {
    ($($ty:ty => $kind:ident),* $(,)?) => {
        $(impl Coded for $ty {
            const KIND: Kind = Kind::$kind;
        })*

        /// The kind of one cause of an error chain, when it is a coded type.
        fn kind_of_cause(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
            $(if cause.is::<$ty>() {
                return Some(Kind::$kind);
            })*
            None
        }

        /// The kind of a coded error attached as a context (`.context(ConfigError { .. })`):
        /// the chain shows it only as anyhow's wrapper, but `downcast_ref` sees it.
        fn kind_of_context(error: &anyhow::Error) -> Option<Kind> {
            $(if error.downcast_ref::<$ty>().is_some() && !error.chain().any(|cause| cause.is::<$ty>()) {
                return Some(Kind::$kind);
            })*
            None
        }
    };
}

coded! {
    LockHeld => Locked,
    ConfigError => Config,
    StateError => State,
    StateDirError => State,
    Unreachable => Unreachable,
    NoneReachable => Unreachable,
    UsageError => Usage,
}

/// The kind of `error`, `None` for an error of no particular kind. A coded error attached as
/// a context wraps what it is attached to, so it comes first; then the outermost coded error
/// in the chain of causes (text contexts never hide it), where a request to an HTTP API that
/// failed to connect or timed out is [`Kind::Unreachable`].
pub fn kind(error: &anyhow::Error) -> Option<Kind> {
    kind_of_context(error)
        .or_else(|| error.chain().find_map(|cause| kind_of_cause(cause).or_else(|| http_unreachable(cause))))
}

/// A request that never got an answer: the connection failed or timed out.
fn http_unreachable(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    let e = cause.downcast_ref::<reqwest::Error>()?;
    (e.is_connect() || e.is_timeout()).then_some(Kind::Unreachable)
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    fn unreachable() -> Unreachable {
        Unreachable { tier: "redis".into(), target: "main".into(), message: "refused".into() }
    }

    /// A library error that keeps a coded error as its source.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapper(#[source] Unreachable);

    #[test]
    fn the_kind_survives_every_layer() {
        let bare = anyhow::Error::new(unreachable());
        assert_eq!(kind(&bare), Some(Kind::Unreachable));
        let layered = anyhow::Error::new(unreachable()).context("connecting").context("collecting").context("run");
        assert_eq!(kind(&layered), Some(Kind::Unreachable));
        let result: Result<(), Unreachable> = Err(unreachable());
        let from_result = result.context("connecting").context("again").unwrap_err();
        assert_eq!(kind(&from_result), Some(Kind::Unreachable));
        let sourced = anyhow::Error::new(Wrapper(unreachable())).context("outer");
        assert_eq!(kind(&sourced), Some(Kind::Unreachable));
        let as_context = anyhow::anyhow!("bad toml").context(ConfigError::new("f.toml", "(syntax)", "bad"));
        assert_eq!(kind(&as_context), Some(Kind::Config));
        let dir = anyhow::Error::new(StateDirError { path: "/x".into(), message: "is not a directory".into() })
            .context("opening");
        assert_eq!(kind(&dir), Some(Kind::State));
        assert_eq!(kind(&anyhow::anyhow!("boom").context("more")), None);
    }

    #[test]
    fn the_outermost_coded_error_wins() {
        // A state file found corrupt while handling an unreachable target is a state error.
        let e = anyhow::Error::new(unreachable())
            .context(StateError { path: "/s/f.json".into(), message: "is not valid JSON".into() });
        assert_eq!(kind(&e), Some(Kind::State));
        let e = anyhow::Error::new(Wrapper(unreachable())).context(LockHeld { job: "j".into(), holder: None });
        assert_eq!(kind(&e), Some(Kind::Locked));
        assert_eq!(<UsageError as Coded>::KIND, Kind::Usage);
    }
}
