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

/// The configuration key a variable sets (for errors blamed on the variable).
pub(super) fn key_of(var: &str) -> Option<&'static str> {
    Some(match var {
        EnvVars::REDIS_URL => "redis[0].url",
        EnvVars::DATABASE_URL => "postgres[0].url",
        EnvVars::MEM0_URL => "memory[0].url",
        EnvVars::MEM0_API_KEY => "memory[0].api_key",
        EnvVars::PROJECT_NAME => "project_name",
        _ => return None,
    })
}

/// The name of a target created from the environment alone.
const DEFAULT_TARGET: &str = "default";

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
