//! Redis connections (`redis://`, `rediss://` TLS, `redis+unix://`) with explicit timeouts.
//!
//! The redis crate gives async connections a 500 ms response timeout and a 1 s connection
//! timeout by default. Both are set here from the target's configuration instead, so a slow
//! but legitimate command is not cut off and a dead server is not waited on for long.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::config::RedisTarget;
use crate::error::Unreachable;

/// Opens a multiplexed connection to `target`, or fails within its connect timeout (plus one
/// response timeout for the handshake) with [`Unreachable`].
pub async fn connect(target: &RedisTarget) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(target.url.expose())
        .with_context(|| format!("invalid redis URL for target `{}`: {}", target.name, target.url))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(target.connect_timeout))
        .set_response_timeout(Some(target.timeout));
    let budget = target.connect_timeout + target.timeout;
    let unreachable = |message: String| Unreachable {
        tier: "redis".into(),
        target: target.name.clone(),
        message: format!("{message} ({})", target.url),
    };
    match tokio::time::timeout(budget, client.get_multiplexed_async_connection_with_config(&config)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(unreachable(e.to_string()).into()),
        Err(_) => Err(unreachable(format!("no connection within {}", humantime::format_duration(budget))).into()),
    }
}

/// Runs `INFO` (all default sections) and parses it into field → value.
pub async fn info(connection: &mut MultiplexedConnection) -> redis::RedisResult<BTreeMap<String, String>> {
    let text: String = redis::cmd("INFO").query_async(connection).await?;
    Ok(parse_info(&text))
}

/// Parses the text of `INFO` into field → value, skipping section headers.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Whether a Redis error means the server refuses the command (hosted Redis, ACLs,
/// `rename-command`) rather than that the connection failed.
pub fn is_refused(error: &redis::RedisError) -> bool {
    if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
        return false;
    }
    let text = error.to_string().to_ascii_lowercase();
    ["unknown command", "noperm", "not allowed", "unsupported", "disabled", "no permissions"]
        .iter()
        .any(|needle| text.contains(needle))
        || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
}

/// Milliseconds in a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_parsing_skips_headers() {
        let info = parse_info("# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\n\r\n# Stats\r\nkeyspace_hits:5\r\n");
        assert_eq!(info["used_memory"], "1024");
        assert_eq!(info["keyspace_hits"], "5");
        assert_eq!(info.len(), 3);
    }
}
