//! A small real HTTP server that speaks the Mem0 wire formats.
//!
//! Platform dialect: `Authorization: Token KEY`; `GET /v1/memories/` (an array, or a page
//! object when `page`/`page_size` are given), `POST /v1/memories/search/`, `POST /v2/memories/`
//! (a page object), `POST /v2/memories/search/`. Self-hosted dialect: `X-API-Key: KEY`;
//! `GET /memories` and `POST /search`, both answering `{"results": [...]}`. Every request is
//! recorded for the test to inspect.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};

/// Which API the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Platform,
    SelfHosted,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub url: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl RecordedRequest {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct State {
    dialect: Dialect,
    key: String,
    memories: Vec<Value>,
    requests: Vec<RecordedRequest>,
}

/// The running server; stops on drop.
pub struct Mem0Server {
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
}

impl Mem0Server {
    /// A hosted-platform server accepting `Authorization: Token key`.
    pub fn platform(key: &str) -> Self {
        Self::start(Dialect::Platform, key)
    }

    /// A self-hosted server accepting `X-API-Key: key`.
    pub fn self_hosted(key: &str) -> Self {
        Self::start(Dialect::SelfHosted, key)
    }

    fn start(dialect: Dialect, key: &str) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let state =
            Arc::new(Mutex::new(State { dialect, key: key.to_owned(), memories: Vec::new(), requests: Vec::new() }));
        let thread = {
            let (server, state) = (Arc::clone(&server), Arc::clone(&state));
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(request, &state);
                }
            })
        };
        Self { server, state, thread: Some(thread) }
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.server_addr().to_ip().unwrap())
    }

    /// Adds a memory of `user_id`.
    pub fn add_memory(&self, id: &str, user_id: &str, text: &str, categories: &[&str], created_at: &str) {
        self.state.lock().unwrap().memories.push(json!({
            "id": id,
            "memory": text,
            "user_id": user_id,
            "categories": categories,
            "created_at": created_at,
            "updated_at": created_at,
            "metadata": null,
        }));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for Mem0Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(mut request: tiny_http::Request, state: &Mutex<State>) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let recorded = RecordedRequest {
        method: request.method().as_str().to_owned(),
        url: request.url().to_owned(),
        headers: request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_owned()))
            .collect(),
        body: body.clone(),
    };
    let (status, reply) = {
        let mut state = state.lock().unwrap();
        state.requests.push(recorded.clone());
        route(&mut state, &recorded)
    };
    let response = tiny_http::Response::from_string(reply.to_string())
        .with_status_code(status)
        .with_header("Content-Type: application/json".parse::<tiny_http::Header>().unwrap());
    let _ = request.respond(response);
}

fn route(state: &mut State, req: &RecordedRequest) -> (u16, Value) {
    let authorized = match state.dialect {
        Dialect::Platform => req.header("authorization") == Some(&format!("Token {}", state.key)),
        Dialect::SelfHosted => req.header("x-api-key") == Some(state.key.as_str()),
    };
    if !authorized {
        return (401, json!({ "detail": "Invalid API key" }));
    }
    let (path, query) = req.url.split_once('?').unwrap_or((&req.url, ""));
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
    if req.method == "DELETE" {
        return delete(state, path, &body);
    }
    let of_user =
        |user: &str| -> Vec<Value> { state.memories.iter().filter(|m| m["user_id"] == user).cloned().collect() };
    let page = |items: Vec<Value>| {
        let size = param("page_size").and_then(|s| s.parse().ok()).unwrap_or(100usize).max(1);
        let number = param("page").and_then(|s| s.parse().ok()).unwrap_or(1usize).max(1);
        let count = items.len();
        let results: Vec<Value> = items.into_iter().skip((number - 1) * size).take(size).collect();
        let next = (number * size < count).then(|| format!("{path}?page={}&page_size={size}", number + 1));
        json!({ "count": count, "next": next, "previous": null, "results": results })
    };
    let no_filter = (400, json!({ "error": "At least one of user_id, agent_id, run_id is required" }));
    match (state.dialect, req.method.as_str(), path) {
        (Dialect::Platform, "GET", "/v1/memories/") => match param("user_id") {
            None => no_filter,
            Some(user) if param("page").is_some() || param("page_size").is_some() => (200, page(of_user(&user))),
            Some(user) => (200, Value::Array(of_user(&user))),
        },
        (Dialect::Platform, "POST", "/v1/memories/search/") => match body["user_id"].as_str() {
            None => no_filter,
            Some(user) => (200, Value::Array(search(of_user(user), &body, "limit"))),
        },
        (Dialect::Platform, "POST", "/v2/memories/") => match filter_user(&body["filters"]) {
            None => no_filter,
            Some(user) => (200, page(of_user(&user))),
        },
        (Dialect::Platform, "POST", "/v2/memories/search/") => match filter_user(&body["filters"]) {
            None => no_filter,
            Some(user) => (200, Value::Array(search(of_user(&user), &body, "top_k"))),
        },
        (Dialect::SelfHosted, "GET", "/memories") => match param("user_id") {
            None => (400, json!({ "detail": "At least one identifier is required." })),
            Some(user) => (200, json!({ "results": of_user(&user) })),
        },
        (Dialect::SelfHosted, "POST", "/search") => match body["user_id"].as_str() {
            None => (200, json!({ "results": [] })),
            Some(user) => (200, json!({ "results": search(of_user(user), &body, "limit") })),
        },
        _ => (404, json!({ "detail": "Not found." })),
    }
}

/// `DELETE /v1/batch/` (`{"memories": [{"memory_id": ...}]}`, at most 1000), `DELETE
/// /v1/memories/{id}/` (platform), `DELETE /memories/{id}` (self-hosted).
fn delete(state: &mut State, path: &str, body: &Value) -> (u16, Value) {
    let ids: Vec<String> = match (state.dialect, path) {
        (Dialect::Platform, "/v1/batch/") => {
            let Some(list) = body["memories"].as_array() else {
                return (400, json!({ "error": "memories is required" }));
            };
            if list.len() > 1000 {
                return (400, json!({ "error": "at most 1000 memories per batch" }));
            }
            list.iter().filter_map(|m| m["memory_id"].as_str().map(str::to_owned)).collect()
        }
        (Dialect::Platform, p) if p.starts_with("/v1/memories/") => {
            vec![p.trim_start_matches("/v1/memories/").trim_end_matches('/').to_owned()]
        }
        (Dialect::SelfHosted, p) if p.starts_with("/memories/") => vec![p.trim_start_matches("/memories/").to_owned()],
        _ => return (404, json!({ "detail": "Not found." })),
    };
    let before = state.memories.len();
    state.memories.retain(|m| !ids.iter().any(|id| m["id"] == id.as_str()));
    if before - state.memories.len() != ids.len() {
        return (404, json!({ "error": "Memory not found!" }));
    }
    (200, json!({ "message": "Memories deleted successfully!" }))
}

/// The ids of every memory held now.
impl Mem0Server {
    /// Ids of the memories it holds.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.state.lock().unwrap().memories.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect();
        ids.sort();
        ids
    }
}

/// The `user_id` in a v2 filter: `{"user_id": X}` or nested in `AND`/`OR` lists.
fn filter_user(filters: &Value) -> Option<String> {
    if let Some(user) = filters.get("user_id").and_then(Value::as_str) {
        return Some(user.to_owned());
    }
    ["AND", "OR"].iter().filter_map(|k| filters.get(*k)?.as_array()).flatten().find_map(filter_user)
}

fn search(memories: Vec<Value>, body: &Value, limit_key: &str) -> Vec<Value> {
    let query = body["query"].as_str().unwrap_or_default().to_lowercase();
    let limit = body[limit_key].as_u64().unwrap_or(100) as usize;
    let mut scored: Vec<(usize, Value)> = memories
        .into_iter()
        .map(|mut m| {
            let text = m["memory"].as_str().unwrap_or_default().to_lowercase();
            let score = query.split_whitespace().filter(|w| text.contains(w)).count();
            m["score"] = json!(score as f64 / query.split_whitespace().count().max(1) as f64);
            (score, m)
        })
        .collect();
    scored.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    scored.into_iter().take(limit).map(|(_, m)| m).collect()
}
