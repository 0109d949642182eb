//! Every environment variable the toolkit reads, in one registry.
//!
//! Code never spells a variable's name as a string literal; it names a constant here, so that
//! `docs/environment.md` (generated from [`EnvVars::ALL`]) and this file list the same set. The
//! process environment is read only through [`EnvVars::var`] and [`EnvVars::var_os`]:
//! `clippy.toml` disallows `std::env::var` and `std::env::var_os` everywhere else.

use std::ffi::OsString;

/// Names of the environment variables read by cache-toolkit.
pub struct EnvVars;

impl EnvVars {
    /// Path of the configuration file (after `--config`).
    pub const CACHE_CONFIG: &'static str = "CACHE_CONFIG";
    /// State directory (after `--state-dir`).
    pub const CACHE_STATE_DIR: &'static str = "CACHE_STATE_DIR";
    /// State directory handed over by systemd (`StateDirectory=`).
    pub const STATE_DIRECTORY: &'static str = "STATE_DIRECTORY";
    /// Base of the XDG state directory.
    pub const XDG_STATE_HOME: &'static str = "XDG_STATE_HOME";
    /// Base of the XDG configuration directory.
    pub const XDG_CONFIG_HOME: &'static str = "XDG_CONFIG_HOME";
    /// Home directory, for the XDG fallbacks.
    pub const HOME: &'static str = "HOME";
    /// URL of the first Redis target (seed name).
    pub const REDIS_URL: &'static str = "REDIS_URL";
    /// Upstash's REST endpoint (Upstash's own name).
    pub const UPSTASH_REDIS_REST_URL: &'static str = "UPSTASH_REDIS_REST_URL";
    /// Upstash's REST token (Upstash's own name).
    pub const UPSTASH_REDIS_REST_TOKEN: &'static str = "UPSTASH_REDIS_REST_TOKEN";
    /// Upstash's REST endpoint (seed name).
    pub const UPSTASH_URL: &'static str = "UPSTASH_URL";
    /// Upstash's REST token (seed name).
    pub const UPSTASH_TOKEN: &'static str = "UPSTASH_TOKEN";
    /// URL of the first PostgreSQL target (seed name).
    pub const DATABASE_URL: &'static str = "DATABASE_URL";
    /// Base URL of the first memory-API target (seed name).
    pub const MEM0_URL: &'static str = "MEM0_URL";
    /// API key of the first memory-API target (seed name).
    pub const MEM0_API_KEY: &'static str = "MEM0_API_KEY";
    /// Project name: the memory API's user id and the cache table's `project_name` (seed name).
    pub const PROJECT_NAME: &'static str = "PROJECT_NAME";
    /// Disables colour in output when set to any value (<https://no-color.org>).
    pub const NO_COLOR: &'static str = "NO_COLOR";
    /// Log filter for `tracing` (overrides `-v`/`-q`), e.g. `cache_core=debug`.
    pub const CACHE_LOG: &'static str = "CACHE_LOG";

    /// The maintenance API's bearer token (`[api] token`; a secret).
    pub const CACHE_API_TOKEN: &'static str = "CACHE_API_TOKEN";

    /// A fixed "now" (RFC 3339) for the alert engine's clock: drills and tests drive time with it.
    pub const CACHE_NOW: &'static str = "CACHE_NOW";
    /// The search path, where cache-backup looks for `redis-server` and `redis-check-rdb`.
    pub const PATH: &'static str = "PATH";

    /// Every variable, with a one-line description, for generated documentation.
    pub const ALL: &'static [(&'static str, &'static str)] = &[
        (Self::CACHE_CONFIG, "configuration file, when `--config` is not given"),
        (Self::CACHE_STATE_DIR, "state directory, when `--state-dir` is not given"),
        (Self::STATE_DIRECTORY, "state directory set by systemd's `StateDirectory=`"),
        (Self::XDG_STATE_HOME, "base of the per-user state directory"),
        (Self::XDG_CONFIG_HOME, "base of the per-user configuration file"),
        (Self::HOME, "fallback base of the per-user directories"),
        (Self::REDIS_URL, "URL of the first Redis target (creates `default` when none)"),
        (
            Self::UPSTASH_REDIS_REST_URL,
            "Upstash REST endpoint: the first REST Redis target's URL (creates `upstash` when none)",
        ),
        (Self::UPSTASH_REDIS_REST_TOKEN, "Upstash REST token of that target"),
        (Self::UPSTASH_URL, "`UPSTASH_REDIS_REST_URL` by the seed's name (Upstash's own name wins)"),
        (Self::UPSTASH_TOKEN, "`UPSTASH_REDIS_REST_TOKEN` by the seed's name (Upstash's own name wins)"),
        (Self::DATABASE_URL, "URL of the first PostgreSQL target (creates `default` when none)"),
        (Self::MEM0_URL, "base URL of the first memory-API target"),
        (Self::MEM0_API_KEY, "API key of the first memory-API target"),
        (Self::PROJECT_NAME, "project name: memory-API user id and cache-table project"),
        (Self::NO_COLOR, "disable colour in tables and messages"),
        (Self::CACHE_LOG, "tracing filter for the log on stderr, overriding `-v`/`-q`"),
        (Self::CACHE_API_TOKEN, "bearer token of the maintenance API (`cache-scheduler serve`), over `[api] token`"),
        (Self::CACHE_NOW, "fixed current time (RFC 3339) for `cache-health monitor` and `alerts`: drills and tests"),
        (Self::PATH, "where cache-backup finds `redis-server` and `redis-check-rdb`"),
    ];

    /// The value of `name` in the process environment, when it is set and valid Unicode (set
    /// but empty gives `Some("")`). `name` is one of the constants above.
    #[expect(
        clippy::disallowed_methods,
        reason = "the registry's own reader: the one place the process environment is read"
    )]
    pub fn var(name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// The value of `name` in the process environment, when it is set, in any encoding. `name`
    /// is one of the constants above.
    #[expect(
        clippy::disallowed_methods,
        reason = "the registry's own reader: the one place the process environment is read"
    )]
    pub fn var_os(name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}
