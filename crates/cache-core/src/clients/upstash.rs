//! Upstash's REST API as a Redis connection: every tool's commands, pipelines and
//! transactions go over it unchanged.
//!
//! The protocol (<https://upstash.com/docs/redis/features/restapi>): a command is a JSON array
//! of strings POSTed to the endpoint with `Authorization: Bearer <token>`; the answer is
//! `{"result": …}` or `{"error": "…"}`. A pipeline is an array of commands POSTed to
//! `/pipeline`, a transaction the same to `/multi-exec`; each answers an array of those objects.
//! With `Upstash-Encoding: base64` (sent here, as Upstash's own clients do) every string in a
//! result comes base64-encoded except the status `OK`, so binary values survive. Arguments
//! travel as JSON strings: an argument that is not UTF-8 text cannot be sent, and the command
//! fails naming that, before anything is sent.
//!
//! [`RestConnection`] implements the redis crate's [`ConnectionLike`], so `redis::cmd`,
//! `redis::pipe` (atomic or not) and `redis::Script` work on it as on a RESP connection.
//! Server errors keep their Redis codes (`NOSCRIPT`, `WRONGTYPE`, `ERR unknown command`), so
//! script fallback and "refused on this tier" checks behave the same.
//!
//! A request that gets no answer (a dropped connection, a timeout) is sent once more after
//! [`RETRY_PAUSE`] when every command in it only reads (`reads_only`), as Upstash's own
//! clients retry (`rest_retries = 1` in `upstash-redis`); a request that writes is never sent
//! twice, since the first may have been applied.

use std::time::Duration;

use base64::Engine as _;
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use serde_json::Value as Json;

use crate::redact::Secret;

/// The pause before a read-only request that got no answer is sent again.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Commands that only read, by name (besides `CONFIG GET` and `MEMORY USAGE`): a request made
/// of them alone may be sent again after a transport failure.
const READ_ONLY: &[&str] = &[
    "DBSIZE",
    "DUMP",
    "EXISTS",
    "EXPIRETIME",
    "GET",
    "HGET",
    "HGETALL",
    "HLEN",
    "HMGET",
    "HSCAN",
    "HSTRLEN",
    "INFO",
    "LINDEX",
    "LLEN",
    "LRANGE",
    "MGET",
    "OBJECT",
    "PEXPIRETIME",
    "PING",
    "PTTL",
    "RANDOMKEY",
    "SCAN",
    "SCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SSCAN",
    "STRLEN",
    "TTL",
    "TYPE",
    "XINFO",
    "XLEN",
    "ZCARD",
    "ZRANGE",
    "ZSCAN",
    "ZSCORE",
];

/// Whether every command of `commands` (JSON arrays of strings) only reads.
fn reads_only(commands: &[Json]) -> bool {
    commands.iter().all(|command| {
        let word = |i: usize| command.get(i).and_then(Json::as_str).map(str::to_ascii_uppercase);
        match word(0).as_deref() {
            Some("CONFIG") => word(1).as_deref() == Some("GET"),
            Some("MEMORY") => word(1).as_deref() == Some("USAGE"),
            Some(name) => READ_ONLY.contains(&name),
            None => false,
        }
    })
}

/// A connection to one REST endpoint: cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct RestConnection {
    client: reqwest::Client,
    endpoint: url::Url,
    token: Secret,
    timeout: Duration,
}

impl RestConnection {
    /// A connection to `endpoint` (no request is sent yet); every request is bounded by
    /// `timeout`.
    pub fn new(client: reqwest::Client, endpoint: url::Url, token: Secret, timeout: Duration) -> Self {
        Self { client, endpoint, token, timeout }
    }

    /// The endpoint with `path` appended (`pipeline`, `multi-exec`), or itself for "".
    fn url(&self, path: &str) -> url::Url {
        let mut url = self.endpoint.clone();
        if !path.is_empty()
            && let Ok(mut segments) = url.path_segments_mut()
        {
            segments.pop_if_empty().push(path);
        }
        url
    }

    /// POSTs `body` to `path` and returns the JSON answer; HTTP and transport failures as
    /// errors (a refused token as an authentication error), a server error object as-is.
    async fn post(&self, path: &str, body: Json) -> RedisResult<Json> {
        let commands = match &body {
            Json::Array(items) if items.first().is_some_and(Json::is_array) => items.as_slice(),
            _ => std::slice::from_ref(&body),
        };
        let again = path != "multi-exec" && reads_only(commands);
        match self.post_once(path, &body).await {
            Err(e) if again && (e.is_io_error() || e.is_timeout()) => {
                tracing::warn!("REST request to /{path} got no answer ({e}); sending it once more");
                tokio::time::sleep(RETRY_PAUSE).await;
                self.post_once(path, &body).await
            }
            answer => answer,
        }
    }

    /// One POST of `body` to `path`.
    async fn post_once(&self, path: &str, body: &Json) -> RedisResult<Json> {
        let request = self
            .client
            .post(self.url(path))
            .timeout(self.timeout)
            .bearer_auth(self.token.expose())
            .header("Upstash-Encoding", "base64")
            .json(body);
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let json: Option<Json> = serde_json::from_str(&text).ok();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            let said = json.as_ref().and_then(|j| j.get("error")).and_then(Json::as_str).unwrap_or("");
            return Err(RedisError::from((
                redis::ErrorKind::AuthenticationFailed,
                "the REST API refused the token",
                format!("HTTP {status} {said}").trim().to_owned(),
            )));
        }
        match json {
            // Upstash answers a command's error with 400 and its error object.
            Some(json) if status.is_success() || json.get("error").is_some() => Ok(json),
            _ => Err(RedisError::from(std::io::Error::other(format!(
                "the REST API answered HTTP {status}{}",
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", text.chars().take(200).collect::<String>())
                }
            )))),
        }
    }

    async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let answer = self.post("", Json::Array(args(cmd)?)).await?;
        match value_of(&answer) {
            Value::ServerError(e) => Err(e.into()),
            value => Ok(value),
        }
    }

    async fn pipeline(&self, pipeline: &Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        let commands: Vec<Json> = pipeline.cmd_iter().map(|c| args(c).map(Json::Array)).collect::<RedisResult<_>>()?;
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let path = if pipeline.is_transaction() { "multi-exec" } else { "pipeline" };
        let answer = self.post(path, Json::Array(commands)).await?;
        let replies: Vec<Value> = match &answer {
            Json::Array(items) => items.iter().map(value_of).collect(),
            // The whole batch was refused (a transaction aborted, a malformed request).
            other => match value_of(other) {
                Value::ServerError(e) => return Err(e.into()),
                _ => return Err(unexpected(path)),
            },
        };
        if pipeline.is_transaction() {
            // As EXEC answers: one array of the replies (the caller skips MULTI and QUEUED).
            debug_assert_eq!(count, 1);
            let _ = offset;
            return Ok(vec![Value::Array(replies)]);
        }
        if replies.len() != count {
            return Err(unexpected(path));
        }
        Ok(replies)
    }
}

impl ConnectionLike for RestConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.pipeline(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The arguments of `cmd` as JSON strings; an argument that is not UTF-8 text is refused.
fn args(cmd: &Cmd) -> RedisResult<Vec<Json>> {
    let mut out = Vec::with_capacity(cmd.args_iter().len());
    for arg in cmd.args_iter() {
        match arg {
            redis::Arg::Simple(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => out.push(Json::String(text.to_owned())),
                Err(_) => {
                    let name = out.first().and_then(Json::as_str).unwrap_or("command").to_ascii_uppercase();
                    return Err(RedisError::from((
                        redis::ErrorKind::Client,
                        "not sendable over the REST transport",
                        format!(
                            "argument {} of {name} is binary, not UTF-8 text, and Upstash's REST API carries text only",
                            out.len()
                        ),
                    )));
                }
            },
            _ => {
                return Err(RedisError::from((
                    redis::ErrorKind::Client,
                    "cursor arguments are not supported over the REST transport",
                )));
            }
        }
    }
    Ok(out)
}

/// One `{"result": …}` or `{"error": "…"}` object as a Redis reply.
fn value_of(answer: &Json) -> Value {
    match answer.get("error").and_then(Json::as_str) {
        Some(message) => server_error(message),
        None => answer.get("result").map(decode).unwrap_or(Value::Nil),
    }
}

/// A result in base64 encoding as a Redis reply: `"OK"` is the status, any other string a
/// base64 bulk string, numbers integers, `null` nil, arrays arrays.
fn decode(result: &Json) -> Value {
    match result {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Int(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::BulkString(n.to_string().into_bytes()),
        },
        Json::String(s) if s == "OK" => Value::Okay,
        Json::String(s) => match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(bytes) => Value::BulkString(bytes),
            // Not encoded (a server ignoring the header): the text itself.
            Err(_) => Value::BulkString(s.clone().into_bytes()),
        },
        Json::Array(items) => Value::Array(items.iter().map(decode).collect()),
        Json::Object(_) => match result.get("error").and_then(Json::as_str) {
            Some(message) => server_error(message),
            None => Value::Nil,
        },
    }
}

/// A server error with the code and text of `message` (`ERR …`, `NOSCRIPT …`), as the RESP
/// parser makes it, so that its kind is the one the same error has over RESP.
fn server_error(message: &str) -> Value {
    let line: String = message.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    let line = if line.trim().is_empty() { "ERR the REST API gave an empty error".to_owned() } else { line };
    match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
        Ok(value @ Value::ServerError(_)) => value,
        _ => redis::parse_redis_value(b"-ERR the REST API gave an unreadable error\r\n").unwrap_or(Value::Nil),
    }
}

fn unexpected(path: &str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected answer from the REST API",
        format!("to /{path}: not one reply per command"),
    ))
}

/// A failed request as an I/O error (a timeout keeps its kind, so `is_timeout` sees it).
fn transport(e: reqwest::Error) -> RedisError {
    let kind = if e.is_timeout() { std::io::ErrorKind::TimedOut } else { std::io::ErrorKind::Other };
    // Without the URL: it is the endpoint, and reqwest's text would repeat it. With the causes
    // ("error sending request" alone does not say that the connection was reset).
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    RedisError::from(std::io::Error::new(kind, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_decode_as_resp_replies() {
        let b64 = |s: &str| Json::String(base64::engine::general_purpose::STANDARD.encode(s));
        assert_eq!(decode(&Json::String("OK".into())), Value::Okay);
        assert_eq!(decode(&b64("OK")), Value::BulkString(b"OK".to_vec()));
        assert_eq!(decode(&b64("\u{0}\u{ff}")), Value::BulkString("\u{0}\u{ff}".as_bytes().to_vec()));
        assert_eq!(decode(&serde_json::json!(42)), Value::Int(42));
        assert_eq!(decode(&Json::Null), Value::Nil);
        assert_eq!(
            decode(&serde_json::json!(["MA==", ["YQ==", null, 3]])),
            Value::Array(vec![
                Value::BulkString(b"0".to_vec()),
                Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil, Value::Int(3)])
            ])
        );
    }

    #[test]
    fn errors_keep_their_redis_codes() {
        let Value::ServerError(e) = value_of(&serde_json::json!({"error": "NOSCRIPT No matching script."})) else {
            panic!("not an error");
        };
        assert_eq!(e.code(), "NOSCRIPT");
        let e: RedisError = e.into();
        assert_eq!(e.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::NoScript));
        let Value::ServerError(e) = value_of(&serde_json::json!({"error": "ERR unknown command 'config'\nx"})) else {
            panic!("not an error");
        };
        assert!(super::super::redis::is_refused(&e.into()));
    }

    #[test]
    fn only_requests_that_only_read_may_be_sent_again() {
        let request = |commands: &[&[&str]]| -> Vec<Json> { commands.iter().map(|c| serde_json::json!(c)).collect() };
        assert!(reads_only(&request(&[&["SCAN", "0", "COUNT", "100"], &["TYPE", "k"], &["memory", "usage", "k"]])));
        assert!(reads_only(&request(&[&["CONFIG", "GET", "maxmemory-policy"]])));
        assert!(!reads_only(&request(&[&["CONFIG", "SET", "maxmemory", "1"]])));
        assert!(!reads_only(&request(&[&["MEMORY", "PURGE"]])));
        assert!(!reads_only(&request(&[&["TYPE", "k"], &["UNLINK", "k"]])));
        assert!(!reads_only(&request(&[&["EVALSHA", "abc", "0"]])));
        assert!(!reads_only(&[Json::Null]));
    }

    #[test]
    fn binary_arguments_are_refused_before_sending() {
        let mut cmd = redis::cmd("SET");
        cmd.arg("k").arg(&[0xffu8, 0xfe][..]);
        let e = args(&cmd).unwrap_err().to_string();
        assert!(e.contains("argument 2 of SET is binary"), "{e}");
        let mut cmd = redis::cmd("SET");
        cmd.arg("k").arg("\u{0}text");
        assert_eq!(
            args(&cmd).unwrap(),
            [serde_json::json!("SET"), serde_json::json!("k"), serde_json::json!("\u{0}text")]
        );
    }
}
