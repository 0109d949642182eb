//! Configuration: one TOML file, environment overrides, and an embedded default.
//!
//! Precedence, highest first: command-line flags > environment variables (see
//! [`crate::env::EnvVars`]) > the configuration file > the embedded `default-config.toml`.
//!
//! The file is the first found of `--config`, `CACHE_CONFIG`,
//! `$XDG_CONFIG_HOME/cache-toolkit/config.toml` (or `~/.config/...`) and
//! `/etc/cache-toolkit/config.toml`. A file named by `--config` or `CACHE_CONFIG` must exist. With
//! no file at all the embedded default applies: system, files and logs are checked, and the
//! redis, postgres and memory tiers are `not_configured`.
//!
//! Unknown keys and bad values are [`ConfigError`]s naming the file (or the environment
//! variable) and the dotted key.
//!
//! Layout: this module holds [`Config`], [`load`] and [`parse`]; each section's schema is in its
//! own submodule (`redis`, `postgres`, `memory`, `http`, `files`, `system`, `health`, `cleanup`,
//! `backup`, `scheduler`, `alerts`, `optimizer`, `analytics`, `debug`, `api`), re-exported here;
//! `overrides` applies the environment, `validate` checks every section once, up front.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::env::EnvVars;
use crate::error::ConfigError;

mod alerts;
mod analytics;
mod api;
mod backup;
mod cleanup;
mod debug;
mod files;
mod health;
mod http;
mod memory;
mod optimizer;
mod overrides;
mod postgres;
pub mod ratio;
mod redis;
mod scheduler;
mod system;
mod validate;

pub use alerts::{AlertRule, AlertSettings, AutoAction, Channel, RULE_TARGET_KINDS, Remediation, Severity, SmtpTls};
pub use analytics::AnalyticsSettings;
pub use api::{ApiSettings, MIN_TOKEN_LEN};
pub use backup::{BackupSettings, RedisBackupMethod, RemoteKind, RemoteTarget};
pub use cleanup::{CleanupSettings, ModePolicy, Modes, ScanMethod, SizeBasis, SmartThresholds};
pub use debug::{BUILTIN_LOG_PATTERNS, DebugSettings, LogPattern};
pub use files::{DirTarget, FileScope, FilesTarget, LogsTarget};
pub use health::{HealthSettings, LatencyThresholds, Level};
pub use http::HttpTarget;
pub use memory::{MEM0_PLATFORM_URL, MemoryApiVersion, MemoryDialect, MemoryTarget};
pub use optimizer::OptimizerSettings;
pub use overrides::{Env, ProcessEnv};
pub use postgres::{CacheColumns, PostgresTarget, PostgresTls};
pub use redis::{AgeFrom, PrefixRule, RedisTarget, Transport};
pub use scheduler::{JobSettings, Requirement, SchedulerSettings};
pub use system::SystemSettings;

use overrides::apply_env;
use validate::validate;

/// The commented default configuration, embedded in every binary.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default-config.toml");

/// Placeholder in directory paths that expands to the state directory.
pub const STATE_DIR_PLACEHOLDER: &str = "{state_dir}";

/// Seconds in a day, for the defaults.
const DAY: u64 = 86400;

/// The default budget of one request or probe (5 s), shared by several sections.
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Deserializes `T` from just `fields` (key, text), so that every other field takes its serde
/// default: constructors of targets never repeat the defaults the file's schema states.
///
/// Panics only when `T` requires a field missing from `fields` or refuses one of the values,
/// which `targets_new_equal_a_file_entry_with_only_the_required_keys` rules out.
fn from_fields<T: DeserializeOwned>(fields: &[(&str, &str)]) -> T {
    let map = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(fields.iter().copied());
    T::deserialize(map).unwrap_or_else(|e| unreachable!("required fields {fields:?} make a target: {e}"))
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Project name: the memory API's user id and the cache table's `project_name`.
    pub project_name: String,
    /// Thresholds for `cache-health check`.
    pub health: HealthSettings,
    /// Host resources to check.
    pub system: SystemSettings,
    /// Redis targets.
    pub redis: Vec<RedisTarget>,
    /// PostgreSQL cache-table targets.
    pub postgres: Vec<PostgresTarget>,
    /// Mem0-style memory-API targets.
    pub memory: Vec<MemoryTarget>,
    /// HTTP application endpoints.
    pub http: Vec<HttpTarget>,
    /// File-cache directories.
    pub files: Vec<FilesTarget>,
    /// Log directories.
    pub logs: Vec<LogsTarget>,
    /// Cleanup policy: protected patterns, pacing, modes, smart thresholds.
    pub cleanup: CleanupSettings,
    /// Backups: where, what, compression, retention.
    pub backup: BackupSettings,
    /// cache-optimizer.
    pub optimizer: OptimizerSettings,
    /// cache-analytics.
    pub analytics: AnalyticsSettings,
    /// cache-debug: configured log patterns, the security score's baseline.
    pub debug: DebugSettings,
    /// Alert rules, channels and self-healing (`cache-health monitor`).
    pub alerts: AlertSettings,
    /// The schedule and how cache-scheduler renders and gates it.
    pub scheduler: SchedulerSettings,
    /// The maintenance API and dashboard (`cache-scheduler serve`).
    pub api: ApiSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            project_name: "default".into(),
            health: HealthSettings::default(),
            system: SystemSettings::default(),
            redis: Vec::new(),
            postgres: Vec::new(),
            memory: Vec::new(),
            http: Vec::new(),
            files: vec![FilesTarget {
                ttl: Some(Duration::from_secs(90 * DAY)),
                ..FilesTarget::new("toolkit-reports", format!("{STATE_DIR_PLACEHOLDER}/reports"))
            }],
            logs: vec![LogsTarget {
                rotate_size: Some(ByteSize::mib(100)),
                max_age: Some(Duration::from_secs(30 * DAY)),
                ..LogsTarget::new("toolkit", format!("{STATE_DIR_PLACEHOLDER}/logs"))
            }],
            cleanup: CleanupSettings::default(),
            backup: BackupSettings::default(),
            optimizer: OptimizerSettings::default(),
            analytics: AnalyticsSettings::default(),
            debug: DebugSettings::default(),
            alerts: AlertSettings::default(),
            scheduler: SchedulerSettings::default(),
            api: ApiSettings::default(),
        }
    }
}

/// Where the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum ConfigSource {
    /// A file.
    File(PathBuf),
    /// The embedded default.
    Embedded,
}

/// A loaded, validated configuration and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The file it was read from, or the embedded default.
    pub source: ConfigSource,
    /// Environment variables that overrode file values.
    pub env_overrides: Vec<&'static str>,
}

/// Finds, parses, overrides and validates the configuration.
///
/// `explicit` is `--config`. `state_dir` expands `{state_dir}` in directory paths.
pub fn load(explicit: Option<&Path>, env: &dyn Env, state_dir: &Path) -> anyhow::Result<Loaded> {
    let (mut config, source, text) = match find_file(explicit, env)? {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::new(path.display().to_string(), "(file)", format!("cannot read: {e}")))?;
            (parse(&text, &path.display().to_string())?, ConfigSource::File(path), text)
        }
        None => (parse(DEFAULT_CONFIG_TOML, "(embedded default)")?, ConfigSource::Embedded, String::new()),
    };
    let env_overrides = apply_env(&mut config, env)?;
    let source_name = match &source {
        ConfigSource::File(path) => path.display().to_string(),
        ConfigSource::Embedded => "(embedded default)".to_owned(),
    };
    validate(&config, &source_name).map_err(|mut e| {
        // A value the environment set is blamed on the variable; one from the file says its line.
        if let Some(var) =
            env_overrides.iter().find(|v| overrides::key_of(v, &config).as_deref() == Some(e.key.as_str()))
        {
            e.source_name = format!("environment variable {var}");
        } else if let Some(line) = line_of(&text, &e.key) {
            e.message = format!("{} (line {line})", e.message);
        }
        e
    })?;
    expand_state_dir(&mut config, state_dir);
    Ok(Loaded { config, source, env_overrides })
}

fn find_file(explicit: Option<&Path>, env: &dyn Env) -> anyhow::Result<Option<PathBuf>> {
    let named = explicit
        .map(|p| (p.to_path_buf(), "--config"))
        .or_else(|| env.var(EnvVars::CACHE_CONFIG).map(|p| (PathBuf::from(p), EnvVars::CACHE_CONFIG)));
    if let Some((path, from)) = named {
        if !path.is_file() {
            return Err(ConfigError::new(
                path.display().to_string(),
                "(file)",
                format!("the file named by {from} does not exist or is not a file"),
            )
            .into());
        }
        return Ok(Some(path));
    }
    Ok(search_path(env).into_iter().find(|p| p.is_file()))
}

/// Where the configuration is looked for when neither `--config` nor `CACHE_CONFIG` names it,
/// first first: `$XDG_CONFIG_HOME/cache-toolkit/config.toml` (or `~/.config/...`), then
/// `/etc/cache-toolkit/config.toml`.
fn search_path(env: &dyn Env) -> Vec<PathBuf> {
    let xdg = env
        .var(EnvVars::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .or_else(|| env.var(EnvVars::HOME).map(|h| Path::new(&h).join(".config")));
    xdg.map(|base| base.join("cache-toolkit/config.toml")).into_iter().chain([PathBuf::from(SYSTEM_CONFIG)]).collect()
}

const SYSTEM_CONFIG: &str = "/etc/cache-toolkit/config.toml";

/// The file `cache-scheduler init` writes, so that every tool then reads it: `explicit`
/// (`--config`), else `CACHE_CONFIG`, else `$XDG_CONFIG_HOME/cache-toolkit/config.toml` when
/// that is set, else `/etc/cache-toolkit/config.toml` for root and `~/.config/...` for others —
/// each the first place [`load`] looks for that user.
pub fn init_path(explicit: Option<&Path>, env: &dyn Env, root: bool) -> PathBuf {
    if let Some(path) = explicit.map(Path::to_path_buf).or_else(|| env.var(EnvVars::CACHE_CONFIG).map(PathBuf::from)) {
        return path;
    }
    if let Some(xdg) = env.var(EnvVars::XDG_CONFIG_HOME) {
        return Path::new(&xdg).join("cache-toolkit/config.toml");
    }
    match (root, env.var(EnvVars::HOME)) {
        (false, Some(home)) => Path::new(&home).join(".config/cache-toolkit/config.toml"),
        _ => PathBuf::from(SYSTEM_CONFIG),
    }
}

/// Parses `text` (from `source_name`) into a [`Config`], naming the key of any error.
pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| ConfigError::new(source_name, "(syntax)", located(text, &e)))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::new(source_name, key, located(text, &inner))
    })
}

/// The line of the TOML `text` where the dotted `key` (`redis[1].url`, `health.disk_percent`,
/// `alerts.rules[0] ("name").condition`) is set, found by the tables and keys on the way.
fn line_of(text: &str, key: &str) -> Option<usize> {
    // Segments: `redis[1]` → ("redis", Some(1)); a quoted rule name is dropped.
    let segments: Vec<(&str, Option<usize>)> = key
        .split('.')
        .map(|s| s.split(" (").next().unwrap_or(s))
        .map(|s| match s.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (s, None),
        })
        .collect();
    let (last, tables) = segments.split_last()?;
    let header: Vec<&str> = tables.iter().map(|(n, _)| *n).collect();
    let header = header.join(".");
    let index = tables.last().and_then(|(_, i)| *i).unwrap_or(0);
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| {
        let l = l.trim();
        l == format!("[{header}]") || l == format!("[[{header}]]")
    };
    // The index-th `[[header]]` (or the `[header]`), or the top level.
    let start = if header.is_empty() {
        0
    } else {
        lines.iter().enumerate().filter(|(_, l)| is_header(l)).nth(index).map(|(i, _)| i + 1)?
    };
    for (i, line) in lines.iter().enumerate().skip(start) {
        let l = line.trim();
        if i > start && l.starts_with('[') && !header.is_empty() {
            break;
        }
        if header.is_empty() && l.starts_with('[') {
            break;
        }
        if l.split(['=', ' ']).next() == Some(last.0) && l.contains('=') {
            return Some(i + 1);
        }
    }
    (!header.is_empty()).then_some(start)
}

fn located(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().to_owned();
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            // The line first: serde's message may list every key of the section, and a long
            // error line is clipped when printed.
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn expand_state_dir(config: &mut Config, state_dir: &Path) {
    let expand = |path: &mut PathBuf| {
        if let Some(s) = path.to_str()
            && s.contains(STATE_DIR_PLACEHOLDER)
        {
            *path = PathBuf::from(s.replace(STATE_DIR_PLACEHOLDER, &state_dir.to_string_lossy()));
        }
    };
    config.files.iter_mut().for_each(|t| expand(&mut t.path));
    config.logs.iter_mut().for_each(|t| expand(&mut t.path));
    config.system.directories.iter_mut().for_each(expand);
    expand(&mut config.backup.dir);
    config.backup.paths.iter_mut().for_each(expand);
}

impl Config {
    /// Every configured target as `(tier, name)`, the host (`system/host`, `system/gpu`)
    /// included: what a `--tier` filter can select.
    pub fn target_ids(&self) -> Vec<(crate::tier::Tier, String)> {
        use crate::tier::Tier;
        let mut out = Vec::new();
        out.extend(self.redis.iter().map(|t| (Tier::Redis, t.name.clone())));
        out.extend(self.postgres.iter().map(|t| (Tier::Postgres, t.name.clone())));
        out.extend(self.memory.iter().map(|t| (Tier::Memory, t.name.clone())));
        out.extend(self.http.iter().map(|t| (Tier::Http, t.name.clone())));
        out.extend(self.files.iter().map(|t| (Tier::Files, t.name.clone())));
        out.extend(self.logs.iter().map(|t| (Tier::Logs, t.name.clone())));
        out.push((Tier::System, "host".to_owned()));
        out.push((Tier::System, "gpu".to_owned()));
        out
    }

    /// The key namespace of a Redis target: its `namespace`, else `<project_name>:`.
    pub fn redis_namespace(&self, target: &RedisTarget) -> String {
        target.namespace.clone().unwrap_or_else(|| format!("{}:", self.project_name))
    }

    /// The memory API's user id for `target`: its own, else the project name.
    pub fn memory_user_id<'a>(&'a self, target: &'a MemoryTarget) -> &'a str {
        target.user_id.as_deref().unwrap_or(&self.project_name)
    }
}

#[cfg(test)]
mod tests;
