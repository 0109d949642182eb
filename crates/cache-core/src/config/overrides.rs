//! Environment overrides: the seed's variables (`REDIS_URL`, `DATABASE_URL`, `MEM0_*`,
//! `PROJECT_NAME`) replace the first target's URL or key, or create a target named `default`
//! with every other field at its serde default.

use super::{Config, MemoryTarget, PostgresTarget, RedisTarget};
use crate::env::EnvVars;
use crate::error::ConfigError;
use crate::redact::{SafeUrl, Secret};

/// Reads environment variables; a trait so tests can pass their own.
pub trait Env {
    /// The variable's value, when set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment, read through [`EnvVars::var`].
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        EnvVars::var(name).filter(|v| !v.is_empty())
    }
}

/// The configuration key a variable sets in `config` (for errors blamed on the variable).
pub(super) fn key_of(var: &str, config: &Config) -> Option<String> {
    let rest = || config.redis.iter().position(RedisTarget::is_rest);
    Some(match var {
        EnvVars::REDIS_URL => "redis[0].url".into(),
        EnvVars::UPSTASH_REDIS_REST_URL | EnvVars::UPSTASH_URL => format!("redis[{}].url", rest()?),
        EnvVars::UPSTASH_REDIS_REST_TOKEN | EnvVars::UPSTASH_TOKEN => format!("redis[{}].token", rest()?),
        EnvVars::DATABASE_URL => "postgres[0].url".into(),
        EnvVars::MEM0_URL => "memory[0].url".into(),
        EnvVars::MEM0_API_KEY => "memory[0].api_key".into(),
        EnvVars::PROJECT_NAME => "project_name".into(),
        EnvVars::CACHE_API_TOKEN => "api.token".into(),
        _ => return None,
    })
}

/// The name of a target created from the environment alone.
const DEFAULT_TARGET: &str = "default";

/// The name of a REST target created from the Upstash variables alone.
const UPSTASH_TARGET: &str = "upstash";

/// Applies the environment to `config`, returning the variables that were used.
pub(super) fn apply_env(config: &mut Config, env: &dyn Env) -> Result<Vec<&'static str>, ConfigError> {
    let mut used = Vec::new();
    let env_url = |name: &'static str, value: &str| {
        SafeUrl::parse(value).map_err(|e| {
            ConfigError::new(format!("environment variable {name}"), name, format!("not a valid URL: {e}"))
        })
    };
    if let Some(project) = env.var(EnvVars::PROJECT_NAME) {
        config.project_name = project;
        used.push(EnvVars::PROJECT_NAME);
    }
    if let Some(raw) = env.var(EnvVars::REDIS_URL) {
        let url = env_url(EnvVars::REDIS_URL, &raw)?;
        match config.redis.first_mut() {
            Some(target) => target.url = url,
            None => config.redis.push(RedisTarget::new(DEFAULT_TARGET, url)),
        }
        used.push(EnvVars::REDIS_URL);
    }
    upstash(config, env, &mut used)?;
    if let Some(token) = env.var(EnvVars::CACHE_API_TOKEN) {
        config.api.token = Some(Secret::new(token));
        used.push(EnvVars::CACHE_API_TOKEN);
    }
    if let Some(raw) = env.var(EnvVars::DATABASE_URL) {
        let url = env_url(EnvVars::DATABASE_URL, &raw)?;
        match config.postgres.first_mut() {
            Some(target) => target.url = url,
            None => config.postgres.push(PostgresTarget::new(DEFAULT_TARGET, url)),
        }
        used.push(EnvVars::DATABASE_URL);
    }
    let mem_url = env.var(EnvVars::MEM0_URL);
    let mem_key = env.var(EnvVars::MEM0_API_KEY);
    if mem_url.is_some() || mem_key.is_some() {
        if config.memory.is_empty() {
            config.memory.push(MemoryTarget::new(DEFAULT_TARGET));
        }
        let target = &mut config.memory[0];
        if let Some(raw) = mem_url {
            target.url = env_url(EnvVars::MEM0_URL, &raw)?;
            used.push(EnvVars::MEM0_URL);
        }
        if let Some(key) = mem_key {
            target.api_key = Some(Secret::new(key));
            used.push(EnvVars::MEM0_API_KEY);
        }
    }
    Ok(used)
}

/// The Upstash variables (Upstash's own names first, then the seed's): they set the URL and
/// token of the first REST Redis target, or create `upstash`. A URL without a token (or the
/// reverse) is an error naming the missing variable, never silently ignored.
fn upstash(config: &mut Config, env: &dyn Env, used: &mut Vec<&'static str>) -> Result<(), ConfigError> {
    let pick = |names: [&'static str; 2]| names.into_iter().find_map(|name| Some((name, env.var(name)?)));
    let url = pick([EnvVars::UPSTASH_REDIS_REST_URL, EnvVars::UPSTASH_URL]);
    let token = pick([EnvVars::UPSTASH_REDIS_REST_TOKEN, EnvVars::UPSTASH_TOKEN]);
    let existing = config.redis.iter().position(RedisTarget::is_rest);
    let (url_var, raw_url, token_var, raw_token) = match (url, token) {
        (None, None) => return Ok(()),
        (Some((u, raw_u)), Some((t, raw_t))) => (Some(u), Some(raw_u), t, raw_t),
        // A token alone may complete a REST target of the file.
        (None, Some((t, raw_t))) if existing.is_some() => (None, None, t, raw_t),
        (Some((u, _)), None) => {
            return Err(ConfigError::new(
                format!("environment variable {u}"),
                u,
                "is set but no token is: set UPSTASH_REDIS_REST_TOKEN (or UPSTASH_TOKEN) too",
            ));
        }
        (None, Some((t, _))) => {
            return Err(ConfigError::new(
                format!("environment variable {t}"),
                t,
                "is set but no REST URL is: set UPSTASH_REDIS_REST_URL (or UPSTASH_URL) too",
            ));
        }
    };
    let url = match (url_var, raw_url) {
        (Some(var), Some(raw)) => {
            // Upstash gives `https://<name>.upstash.io`: the REST transport is implied.
            let raw = if raw.starts_with("upstash+") { raw } else { format!("upstash+{raw}") };
            let url = SafeUrl::parse(&raw).map_err(|e| {
                ConfigError::new(format!("environment variable {var}"), var, format!("not a valid URL: {e}"))
            })?;
            if !matches!(url.scheme(), "upstash+https" | "upstash+http") {
                return Err(ConfigError::new(
                    format!("environment variable {var}"),
                    var,
                    "must be the REST endpoint, https://…",
                ));
            }
            used.push(var);
            Some(url)
        }
        _ => None,
    };
    let token = Secret::new(raw_token);
    used.push(token_var);
    match (existing, url) {
        (Some(i), url) => {
            let target = &mut config.redis[i];
            if let Some(url) = url {
                target.url = url;
            }
            target.token = Some(token);
        }
        (None, Some(url)) => {
            let mut target = RedisTarget::new(UPSTASH_TARGET, url);
            target.token = Some(token);
            config.redis.push(target);
        }
        (None, None) => unreachable!("a token alone is taken only when a REST target exists"),
    }
    Ok(())
}
