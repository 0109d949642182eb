//! The current time, which drills and tests may fix with `CACHE_NOW` (RFC 3339) so that
//! cooldowns, retries and budgets can be driven without waiting.

use chrono::{DateTime, Utc};

use crate::config::{Env, ProcessEnv};
use crate::env::EnvVars;
use crate::error::UsageError;

/// Now, or the time `CACHE_NOW` names.
pub fn now() -> anyhow::Result<DateTime<Utc>> {
    now_from(&ProcessEnv)
}

/// [`now`] with an explicit environment.
pub fn now_from(env: &dyn Env) -> anyhow::Result<DateTime<Utc>> {
    match env.var(EnvVars::CACHE_NOW) {
        None => Ok(Utc::now()),
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map(|t| t.to_utc())
            .map_err(|e| UsageError(format!("{}=`{text}` is not an RFC 3339 time ({e})", EnvVars::CACHE_NOW)).into()),
    }
}
