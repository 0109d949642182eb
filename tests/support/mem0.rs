//! A small real HTTP server that speaks the Mem0 wire formats.
//!
//! Platform dialect: `Authorization: Token KEY`; `GET /v1/ping/` (the key's `org_id` and
//! `project_id`, see [`Mem0Server::with_org_project`]); `GET /v1/memories/` (an array, or a
//! page object when `page`/`page_size` are given), `POST /v1/memories/search/`,
//! `POST /v2/memories/` and `POST /v3/memories/` (page objects: `count`, `next` as an absolute
//! URL, `previous`, `results`), `POST /v2/memories/search/`, `POST /v3/memories/search/`
//! (`{"results": [...]}`); every search takes `top_k`. v2 filters are `{"AND": [{"user_id"}]}`,
//! v3 ones `{"user_id"}` (either is read). Self-hosted dialect (mem0's `server/main.py`):
//! `X-API-Key: KEY`; `GET /memories` and `POST /search`, both answering `{"results": [...]}`;
//! [`Mem0Server::self_hosted_capped`] answers at most its cap without `next`, as that server
//! does. Memories are created with `POST /v1/memories/` or `POST /v3/memories/add/` (platform) or `POST /memories`
//! (self-hosted), both taking `{"messages": [...], "user_id": ..., "metadata": ...,
//! "infer": false}`; with `infer: false` the text of the messages is stored verbatim under a new
//! id. Every request is recorded for the test to inspect; [`Mem0Server::set_delay`] makes every
//! answer slow.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Self-hosted: the most memories `GET /memories` answers.
    cap: Option<usize>,
    /// `org_id`, `project_id` that `GET /v1/ping/` names (by default `org-stand-in`,
    /// `project-stand-in`).
    org_project: Option<(String, String)>,
    /// Waited before each answer.
    delay: Duration,
    memories: Vec<Value>,
    requests: Vec<RecordedRequest>,
    created: u64,
}

/// The running server; stops on drop.
///
/// It is a small HTTP/1.1 server of its own, a thread per connection with keep-alive: tiny_http's
/// thread pool can leave a new connection queued behind idle keep-alive ones when several open
/// at once, which stalls a client that sends requests concurrently.
pub struct Mem0Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
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

    /// A self-hosted server answering `GET /memories` with at most `cap` memories and no
    /// `next`, as mem0's `server/main.py` does (100; 20 in mem0 2.x).
    pub fn self_hosted_capped(key: &str, cap: usize) -> Self {
        let server = Self::start(Dialect::SelfHosted, key);
        server.state.lock().unwrap().cap = Some(cap);
        server
    }

    /// Makes `GET /v1/ping/` name `org_id` and `project_id` for the key.
    pub fn with_org_project(self, org_id: &str, project_id: &str) -> Self {
        self.state.lock().unwrap().org_project = Some((org_id.to_owned(), project_id.to_owned()));
        self
    }

    /// Waits `delay` before every answer from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    fn start(dialect: Dialect, key: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State {
            dialect,
            key: key.to_owned(),
            cap: None,
            // The platform names them for every key (the SDK refuses a ping without them).
            org_project: Some(("org-stand-in".into(), "project-stand-in".into())),
            delay: Duration::ZERO,
            memories: Vec::new(),
            requests: Vec::new(),
            created: 0,
        }));
        let thread = {
            let (stop, state) = (Arc::clone(&stop), Arc::clone(&state));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || serve(stream, &state));
                }
            })
        };
        Self { addr, stop, state, thread: Some(thread) }
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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

    /// Adds a memory object as is (it needs at least `id` and `user_id`).
    pub fn add_memory_json(&self, memory: Value) {
        self.state.lock().unwrap().memories.push(memory);
    }

    /// The memories of `user_id` held now, in the order they were added.
    pub fn memories(&self, user_id: &str) -> Vec<Value> {
        self.state.lock().unwrap().memories.iter().filter(|m| m["user_id"] == user_id).cloned().collect()
    }

    /// Forgets every memory.
    pub fn clear(&self) {
        self.state.lock().unwrap().memories.clear();
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }
}

impl Drop for Mem0Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves one connection: requests one after another, until the client closes it, asks to, or
/// stays idle for 30 seconds.
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while let Some((recorded, close)) = read_request(&mut reader) {
        let (status, reply, delay) = {
            let mut state = state.lock().unwrap();
            state.requests.push(recorded.clone());
            let (status, reply) = route(&mut state, &recorded);
            (status, reply, state.delay)
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let body = reply.to_string();
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        // One write: a response split in two waits on the client's delayed ACK.
        if writer.write_all((head + &body).as_bytes()).is_err() || close {
            return;
        }
    }
}

/// Reads one request (request line, headers, a `Content-Length` body); `None` at the end of the
/// connection. The flag says whether the client asked to close it.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(RecordedRequest, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, url) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let length: usize = find("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    Some((RecordedRequest { method, url, headers, body: String::from_utf8_lossy(&body).into_owned() }, close))
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
        // Absolute, as the platform's are, keeping the request's other query parameters.
        let host = req.header("host").unwrap_or("127.0.0.1");
        let mut kept: Vec<(String, String)> =
            params.iter().filter(|(k, _)| k != "page" && k != "page_size").cloned().collect();
        kept.push(("page".into(), (number + 1).to_string()));
        kept.push(("page_size".into(), size.to_string()));
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish();
        let next = (number * size < count).then(|| format!("http://{host}{path}?{query}"));
        json!({ "count": count, "next": next, "previous": null, "results": results })
    };
    let no_filter = (400, json!({ "error": "At least one of user_id, agent_id, run_id is required" }));
    match (state.dialect, req.method.as_str(), path) {
        (Dialect::Platform, "GET", "/v1/memories/") => match param("user_id") {
            None => no_filter,
            Some(user) if param("page").is_some() || param("page_size").is_some() => (200, page(of_user(&user))),
            Some(user) => (200, Value::Array(of_user(&user))),
        },
        (Dialect::Platform, "GET", "/v1/ping/") => match &state.org_project {
            Some((org, project)) => (200, json!({ "status": "ok", "org_id": org, "project_id": project })),
            None => (200, json!({ "status": "ok" })),
        },
        (Dialect::Platform, "POST", "/v1/memories/search/") => match body["user_id"].as_str() {
            None => no_filter,
            Some(user) => (200, Value::Array(search(of_user(user), &body))),
        },
        (Dialect::Platform, "POST", "/v3/memories/") => match filter_user(&body["filters"]) {
            None => no_filter,
            Some(user) => (200, page(of_user(&user))),
        },
        (Dialect::Platform, "POST", "/v3/memories/search/") => match filter_user(&body["filters"]) {
            None => no_filter,
            Some(user) => (200, json!({ "results": search(of_user(&user), &body) })),
        },
        (Dialect::Platform, "POST", "/v2/memories/") => match filter_user(&body["filters"]) {
            None => no_filter,
            Some(user) => (200, page(of_user(&user))),
        },
        (Dialect::Platform, "POST", "/v2/memories/search/") => match filter_user(&body["filters"]) {
            None => no_filter,
            Some(user) => (200, Value::Array(search(of_user(&user), &body))),
        },
        (Dialect::Platform, "POST", "/v1/memories/" | "/v3/memories/add/")
        | (Dialect::SelfHosted, "POST", "/memories") => create(state, &body),
        (Dialect::SelfHosted, "GET", "/memories") => match param("user_id") {
            None => (400, json!({ "detail": "At least one identifier is required." })),
            Some(user) => {
                let mut all = of_user(&user);
                all.truncate(state.cap.unwrap_or(usize::MAX));
                (200, json!({ "results": all }))
            }
        },
        (Dialect::SelfHosted, "POST", "/search") => match body["user_id"].as_str() {
            None => (200, json!({ "results": [] })),
            Some(user) => (200, json!({ "results": search(of_user(user), &body) })),
        },
        _ => (404, json!({ "detail": "Not found." })),
    }
}

/// Creates a memory from `{"messages": [...], "user_id": ..., "metadata": ..., "categories":
/// [...], "infer": false}`: the user messages' text, verbatim, under a new id. Mem0 extracts
/// facts with a model when `infer` is true; the stand-in refuses that rather than pretend.
fn create(state: &mut State, body: &Value) -> (u16, Value) {
    let Some(user) = body["user_id"].as_str().filter(|u| !u.is_empty()) else {
        return (400, json!({ "error": "At least one of user_id, agent_id, run_id is required" }));
    };
    let Some(messages) = body["messages"].as_array() else {
        return (400, json!({ "error": "messages is required" }));
    };
    if body["infer"] != false {
        return (400, json!({ "error": "the stand-in stores verbatim only: pass \"infer\": false" }));
    }
    let text: Vec<&str> =
        messages.iter().filter(|m| m["role"] == "user").filter_map(|m| m["content"].as_str()).collect();
    state.created += 1;
    let id = format!("created-{:05}", state.created);
    let now = chrono::Utc::now().to_rfc3339();
    let memory = json!({
        "id": id,
        "memory": text.join("\n"),
        "user_id": user,
        "categories": body.get("categories").cloned().unwrap_or_else(|| json!([])),
        "created_at": now,
        "updated_at": now,
        "metadata": body.get("metadata").cloned().unwrap_or(Value::Null),
    });
    state.memories.push(memory.clone());
    let event = json!({ "id": id, "event": "ADD", "data": { "memory": memory["memory"] } });
    match state.dialect {
        Dialect::Platform => (200, json!([event])),
        Dialect::SelfHosted => (200, json!({ "results": [event] })),
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

/// The memories matching `body.query`, best first, at most `body.top_k` (the SDKs' name; the
/// self-hosted server ignores it and answers its own default).
fn search(memories: Vec<Value>, body: &Value) -> Vec<Value> {
    let query = body["query"].as_str().unwrap_or_default().to_lowercase();
    let limit = body["top_k"].as_u64().unwrap_or(100) as usize;
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
