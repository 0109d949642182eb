//! A stand-in for Upstash's REST API in front of a real `redis-server`.
//!
//! It speaks the protocol as Upstash documents it and its official clients use it: a command
//! as a JSON array POSTed to `/` (or its words as the path, `GET /set/k/v`), a batch to
//! `/pipeline`, a transaction to `/multi-exec`; `Authorization: Bearer <token>` required
//! (401 otherwise); `{"result": …}` or `{"error": "…"}` (400) per command; with
//! `Upstash-Encoding: base64`, every string of a result base64-encoded except the status
//! `OK`. Each command is forwarded to the redis-server as it came, so what a tool sees over it
//! is what the server holds. Commands named in `refused` are answered with Upstash's error
//! for a command it does not offer, as a hosted tier refuses them. The official Python client
//! (`upstash-redis` from PyPI) is run against it in the test suite.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;
use serde_json::{Value as Json, json};

/// What the stand-in forwards to and how.
struct Shared {
    redis: redis::Client,
    token: String,
    refused: Vec<String>,
    /// Idle connections to the redis-server.
    pool: Mutex<Vec<redis::Connection>>,
    /// Commands forwarded (every command of a batch counts).
    commands: AtomicU64,
    /// HTTP requests answered, refused ones included.
    requests: AtomicU64,
    /// Requests still to be answered `502 Bad Gateway` (as a proxy in front of the API does
    /// when it loses its upstream) when they carry the command named, and requests that
    /// carried it, failed or not.
    failing: Mutex<Option<(String, u32)>>,
    carried: Mutex<Vec<String>>,
}

/// The stand-in, serving until dropped.
pub struct UpstashStandIn {
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl UpstashStandIn {
    /// Serves `redis_url` behind `token`, refusing the commands in `refused` (upper case).
    pub fn start(redis_url: &str, token: &str, refused: &[&str]) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let shared = Arc::new(Shared {
            redis: redis::Client::open(redis_url).unwrap(),
            token: token.to_owned(),
            refused: refused.iter().map(|c| c.to_ascii_uppercase()).collect(),
            pool: Mutex::new(Vec::new()),
            commands: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failing: Mutex::new(None),
            carried: Mutex::new(Vec::new()),
        });
        let thread = {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let shared = Arc::clone(&shared);
                    // One thread per request: the tools keep several in flight.
                    std::thread::spawn(move || serve(&shared, request));
                }
            })
        };
        Self { server, shared, thread: Some(thread) }
    }

    /// The REST endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.server_addr().to_ip().unwrap())
    }

    /// Commands forwarded so far.
    pub fn commands(&self) -> u64 {
        self.shared.commands.load(Ordering::Relaxed)
    }

    /// HTTP requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Answers the next `times` requests that carry `command` (upper case) with
    /// `502 Bad Gateway`, forwarding nothing of them; from now on, counts such requests.
    pub fn fail_next(&self, command: &str, times: u32) {
        *self.shared.failing.lock().unwrap() = Some((command.to_owned(), times));
        self.shared.carried.lock().unwrap().clear();
    }

    /// The bodies of the requests that carried the command of [`Self::fail_next`] since it
    /// was called, in order: a request sent twice shows twice.
    pub fn carried(&self) -> Vec<String> {
        self.shared.carried.lock().unwrap().clone()
    }
}

impl Drop for UpstashStandIn {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(shared: &Shared, mut request: tiny_http::Request) {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.to_string())
    };
    let base64 = header("Upstash-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("base64"));
    let authorized = header("Authorization").is_some_and(|v| v == format!("Bearer {}", shared.token));
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let path = request.url().split('?').next().unwrap_or("/").to_owned();
    if authorized && fails(shared, &body) {
        // As a proxy answers: a page, not the API's JSON.
        let page = "<html><body><h1>502 Bad Gateway</h1></body></html>";
        let _ = request.respond(tiny_http::Response::from_string(page).with_status_code(502));
        return;
    }
    let (status, answer) =
        if !authorized { (401, json!({"error": "Unauthorized"})) } else { route(shared, &path, &body, base64) };
    let response = tiny_http::Response::from_string(answer.to_string())
        .with_status_code(status)
        .with_header("Content-Type: application/json".parse::<tiny_http::Header>().unwrap());
    let _ = request.respond(response);
}

/// Whether this request is one [`UpstashStandIn::fail_next`] fails; counts the requests that
/// carry its command.
fn fails(shared: &Shared, body: &str) -> bool {
    let mut failing = shared.failing.lock().unwrap();
    let Some((command, left)) = failing.as_mut() else { return false };
    let needle = format!("\"{command}\"");
    if !body.to_ascii_uppercase().contains(&needle) {
        return false;
    }
    shared.carried.lock().unwrap().push(body.to_owned());
    if *left == 0 {
        return false;
    }
    *left -= 1;
    true
}

fn route(shared: &Shared, path: &str, body: &str, base64: bool) -> (u16, Json) {
    let parsed: Result<Json, _> = if body.trim().is_empty() { Ok(Json::Null) } else { serde_json::from_str(body) };
    let Ok(parsed) = parsed else {
        return (400, json!({"error": "ERR failed to parse the request body as JSON"}));
    };
    match path.trim_end_matches('/') {
        "/pipeline" | "/multi-exec" => {
            let Some(commands) = parsed.as_array().map(|c| c.iter().map(words).collect::<Option<Vec<_>>>()) else {
                return (400, json!({"error": "ERR the body must be an array of commands"}));
            };
            let Some(commands) = commands.filter(|c| !c.is_empty()) else {
                return (400, json!({"error": "ERR each command must be a non-empty array of strings"}));
            };
            let atomic = path.starts_with("/multi-exec");
            (200, Json::Array(batch(shared, &commands, atomic, base64)))
        }
        "" => match words(&parsed) {
            Some(command) => one(shared, &command, base64),
            None => (400, json!({"error": "ERR the body must be a command: an array of strings"})),
        },
        // The command in the path: `/set/key/value` (seed 000 calls `/ping` so).
        other => {
            let command: Vec<String> = other
                .trim_start_matches('/')
                .split('/')
                .map(|w| url::form_urlencoded::parse(format!("x={w}").as_bytes()).next().unwrap().1.into_owned())
                .collect();
            one(shared, &command, base64)
        }
    }
}

/// A command's words: strings, and numbers as their text (the clients send integers so).
fn words(command: &Json) -> Option<Vec<String>> {
    let words: Vec<String> = command
        .as_array()?
        .iter()
        .map(|w| match w {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!words.is_empty()).then_some(words)
}

fn one(shared: &Shared, command: &[String], base64: bool) -> (u16, Json) {
    let reply = batch(shared, std::slice::from_ref(&command.to_vec()), false, base64).remove(0);
    (if reply.get("error").is_some() { 400 } else { 200 }, reply)
}

/// Forwards `commands` (as MULTI/EXEC when `atomic`), one `{result}` or `{error}` each.
fn batch(shared: &Shared, commands: &[Vec<String>], atomic: bool, base64: bool) -> Vec<Json> {
    shared.commands.fetch_add(commands.len() as u64, Ordering::Relaxed);
    if let Some(name) = commands.iter().map(|c| c[0].to_ascii_uppercase()).find(|n| shared.refused.contains(n)) {
        let refusal = json!({"error": format!("ERR Command is not available: '{}'", name.to_ascii_lowercase())});
        if atomic {
            return commands.iter().map(|_| refusal.clone()).collect();
        }
        // Only the refused ones fail in a pipeline.
        return commands
            .iter()
            .map(|c| {
                if shared.refused.contains(&c[0].to_ascii_uppercase()) {
                    refusal.clone()
                } else {
                    forward(shared, std::slice::from_ref(c), false, base64).remove(0)
                }
            })
            .collect();
    }
    forward(shared, commands, atomic, base64)
}

fn forward(shared: &Shared, commands: &[Vec<String>], atomic: bool, base64: bool) -> Vec<Json> {
    let mut conn = shared.pool.lock().unwrap().pop().unwrap_or_else(|| shared.redis.get_connection().unwrap());
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    if atomic {
        pipe.atomic();
    }
    for command in commands {
        let mut cmd = redis::cmd(&command[0]);
        for arg in &command[1..] {
            cmd.arg(arg.as_bytes());
        }
        pipe.add_command(cmd);
    }
    let answers = match pipe.query::<Vec<redis::Value>>(&mut conn) {
        Ok(values) => values.iter().map(|v| reply(v, base64)).collect(),
        Err(e) => {
            let text = error_text(&e);
            commands.iter().map(|_| json!({"error": text})).collect()
        }
    };
    shared.pool.lock().unwrap().push(conn);
    answers
}

fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => e.to_string(),
    }
}

fn reply(value: &redis::Value, base64: bool) -> Json {
    match value {
        redis::Value::ServerError(e) => json!({"error": match e.details() {
            Some(detail) => format!("{} {detail}", e.code()),
            None => e.code().to_owned(),
        }}),
        other => json!({"result": result(other, base64)}),
    }
}

fn result(value: &redis::Value, base64: bool) -> Json {
    let text = |bytes: &[u8]| {
        if base64 {
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            Json::String(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    match value {
        redis::Value::Nil => Json::Null,
        redis::Value::Int(i) => json!(i),
        redis::Value::Okay => json!("OK"),
        redis::Value::SimpleString(s) if s == "OK" => json!("OK"),
        redis::Value::SimpleString(s) => text(s.as_bytes()),
        redis::Value::BulkString(b) => text(b),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Json::Array(items.iter().map(|v| result(v, base64)).collect())
        }
        redis::Value::ServerError(e) => json!({"error": e.code()}),
        redis::Value::Double(d) => text(d.to_string().as_bytes()),
        redis::Value::Boolean(b) => json!(i64::from(*b)),
        other => text(format!("{other:?}").as_bytes()),
    }
}
