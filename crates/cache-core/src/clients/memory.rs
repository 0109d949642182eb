//! A Mem0-style memory API client, speaking both dialects.
//!
//! - Platform (hosted): `Authorization: Token KEY`. Listing: v1 `GET /v1/memories/?user_id=`,
//!   v2 `POST /v2/memories/` (`filters: {"AND": [{"user_id"}]}`), v3 `POST /v3/memories/`
//!   (`filters: {"user_id"}`), each with `page`/`page_size` in the query and answering a page
//!   object (`count`, `next`, `previous`, `results`) that is followed by `next`. Searching:
//!   `POST /v{1,2,3}/memories/search/` with `top_k`. Deleting: `DELETE /v1/batch/` in every
//!   version, as the SDKs do. `org_id`/`project_id`, when set (or discovered by `GET /v1/ping/`),
//!   go in the query of a GET and the body of a POST, as the SDKs up to 1.0 sent them.
//! - Self-hosted REST server (mem0's `server/main.py`): `GET /memories?user_id=`, `POST /search`,
//!   `DELETE /memories/{id}`. It has no pages and caps its answer (`list_cap`): an answer that
//!   long may be truncated, and the listing says so. The key goes as `X-API-Key`, which the
//!   server reads only in its releases with `server/auth.py` (older ones read no header at all).
//!
//! Responses are either a JSON array of memories or an object holding them under `results`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::config::{MemoryApiVersion, MemoryDialect, MemoryTarget};

/// Memories asked for per page when listing everything.
pub const PAGE_SIZE: usize = 100;

/// What one listing read, and whether it is every memory of the user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    /// The memories read, as the API returned them.
    pub memories: Vec<Value>,
    /// The total the API stated (`count`), when it did.
    pub count: Option<u64>,
    /// Pages read.
    pub pages: usize,
    /// Why the list may not hold every memory of the user; `None` when it does.
    pub incomplete: Option<String>,
}

impl Listing {
    /// Whether the list holds every memory of the user.
    pub fn complete(&self) -> bool {
        self.incomplete.is_none()
    }

    /// How many memories the user has, as far as known: the stated `count` when complete or
    /// larger, else those read (then a floor: "at least").
    pub fn total(&self) -> u64 {
        self.count.unwrap_or(0).max(self.memories.len() as u64)
    }

    /// `"250 memories"`, or `"at least 100 memories (why)"`.
    pub fn describe(&self) -> String {
        match &self.incomplete {
            None => format!("{} memories", self.total()),
            Some(why) => format!("at least {} memories ({why})", self.total()),
        }
    }
}

/// The organization and project sent with platform requests.
#[derive(Clone, Debug, PartialEq)]
struct OrgProject {
    org_id: String,
    project_id: String,
}

/// A client for one memory-API target.
#[derive(Clone, Debug)]
pub struct MemoryClient {
    http: reqwest::Client,
    target: MemoryTarget,
    user_id: String,
    /// `org_id`/`project_id` once resolved (`"auto"`: by `GET /v1/ping/`, once per client).
    scope: Arc<Mutex<Option<Option<OrgProject>>>>,
}

impl MemoryClient {
    /// A client for `target`, acting for `user_id`. Blocking the first time the process needs
    /// an HTTP client: from code that times requests, use [`MemoryClient::open`].
    pub fn new(target: &MemoryTarget, user_id: &str) -> anyhow::Result<Self> {
        Self::with(super::http::client()?, target, user_id)
    }

    /// A client for `target`, acting for `user_id`, its HTTP client built on a blocking thread
    /// ([`super::http::client_async`]). Requests share the process's kept-alive connections.
    pub async fn open(target: &MemoryTarget, user_id: &str) -> anyhow::Result<Self> {
        Self::with(super::http::client_async().await?, target, user_id)
    }

    fn with(http: reqwest::Client, target: &MemoryTarget, user_id: &str) -> anyhow::Result<Self> {
        let (org, project) = (target.org_id.as_deref(), target.project_id.as_deref());
        let scope = match (org, project) {
            (None, None) => Some(None),
            _ if target.dialect == MemoryDialect::SelfHosted => {
                bail!("memory target `{}`: `org_id`/`project_id` apply to the hosted platform only", target.name)
            }
            (Some("auto"), None | Some("auto")) | (None, Some("auto")) => None,
            (Some(org), Some(project)) if org != "auto" && project != "auto" => {
                Some(Some(OrgProject { org_id: org.to_owned(), project_id: project.to_owned() }))
            }
            _ => bail!("memory target `{}`: set both `org_id` and `project_id`, or `org_id = \"auto\"`", target.name),
        };
        Ok(Self { http, target: target.clone(), user_id: user_id.to_owned(), scope: Arc::new(Mutex::new(scope)) })
    }

    fn url(&self, path: &str) -> anyhow::Result<url::Url> {
        let mut base = self.target.url.url().clone();
        if !base.path().ends_with('/') {
            let with_slash = format!("{}/", base.path());
            base.set_path(&with_slash);
        }
        base.join(path.trim_start_matches('/')).with_context(|| format!("joining `{path}` to the base URL"))
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.target.api_key, self.target.dialect) {
            (None, _) => request,
            (Some(key), MemoryDialect::Platform) => request.header("Authorization", format!("Token {}", key.expose())),
            (Some(key), MemoryDialect::SelfHosted) => request.header("X-API-Key", key.expose()),
        }
    }

    /// The organization and project to send: the configured ones, or (`"auto"`) those
    /// `GET /v1/ping/` names for the key, asked once; none when it names none.
    async fn org_project(&self) -> anyhow::Result<Option<OrgProject>> {
        if let Some(known) = self.scope.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(known);
        }
        let response = self.checked(self.http.get(self.url("v1/ping/")?), "discovering org_id/project_id").await?;
        let body: Value = response.json().await.context("GET /v1/ping/: the response is not JSON")?;
        let field = |key: &str| body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let found = match (field("org_id"), field("project_id")) {
            (Some(org_id), Some(project_id)) => Some(OrgProject { org_id, project_id }),
            _ => None,
        };
        *self.scope.lock().unwrap_or_else(|e| e.into_inner()) = Some(found.clone());
        Ok(found)
    }

    /// Adds `org_id`/`project_id` as the SDKs did: to the body of a POST, else to the query.
    async fn scoped(
        &self,
        request: reqwest::RequestBuilder,
        body: Option<Value>,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let scope = match self.target.dialect {
            MemoryDialect::Platform => self.org_project().await?,
            MemoryDialect::SelfHosted => None,
        };
        Ok(match (body, scope) {
            (Some(mut body), Some(scope)) => {
                body["org_id"] = json!(scope.org_id);
                body["project_id"] = json!(scope.project_id);
                request.json(&body)
            }
            (Some(body), None) => request.json(&body),
            (None, Some(scope)) => {
                request.query(&[("org_id", scope.org_id.as_str()), ("project_id", scope.project_id.as_str())])
            }
            (None, None) => request,
        })
    }

    /// The request for page `page` of `size` memories of the user (the self-hosted server has
    /// no pages: its one answer).
    async fn page_request(&self, page: usize, size: usize) -> anyhow::Result<reqwest::RequestBuilder> {
        let user = self.user_id.as_str();
        let paging = [("page", page.to_string()), ("page_size", size.to_string())];
        match (self.target.dialect, self.target.api_version()) {
            (MemoryDialect::SelfHosted, _) => Ok(self.http.get(self.url("memories")?).query(&[("user_id", user)])),
            (MemoryDialect::Platform, MemoryApiVersion::V1) => {
                let request = self.http.get(self.url("v1/memories/")?).query(&[("user_id", user)]).query(&paging);
                self.scoped(request, None).await
            }
            (MemoryDialect::Platform, MemoryApiVersion::V2) => {
                let request = self.http.post(self.url("v2/memories/")?).query(&paging);
                self.scoped(request, Some(json!({ "filters": { "AND": [{ "user_id": user }] } }))).await
            }
            (MemoryDialect::Platform, MemoryApiVersion::V3) => {
                let request = self.http.post(self.url("v3/memories/")?).query(&paging);
                self.scoped(request, Some(json!({ "filters": { "user_id": user } }))).await
            }
        }
    }

    /// One page: its memories, the stated `count` and `next`, and whether the answer said
    /// anything about paging at all.
    async fn read_page(&self, page: usize, size: usize, budget: Duration) -> anyhow::Result<Page> {
        let request = self.page_request(page, size).await?;
        let response = self.checked_within(request, "listing memories", budget.min(self.target.timeout)).await?;
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("listing memories at {}: the response is not JSON", self.target.url))?;
        let count = body.get("count").and_then(Value::as_u64);
        let next = body.get("next").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let paged = body.get("next").is_some() || count.is_some();
        let memories = memories_of(body)
            .with_context(|| format!("listing memories at {}: unexpected response shape", self.target.url))?;
        Ok(Page { memories, count, next, paged })
    }

    /// The first page of up to `limit` memories (the self-hosted server: its whole answer),
    /// with what it says about the rest: the health check's and the latency samples' list.
    pub async fn list_page(&self, limit: usize) -> anyhow::Result<Listing> {
        let page = self.read_page(1, limit.max(1), self.target.timeout).await?;
        let incomplete = self.truncation(&page, limit.max(1), page.memories.len());
        let mut memories = page.memories;
        let seen = memories.len() as u64;
        memories.truncate(limit);
        // The self-hosted server's one answer is everything it gives: its length is its count.
        let count = page.count.or((self.target.dialect == MemoryDialect::SelfHosted).then_some(seen));
        Ok(Listing { memories, count, pages: 1, incomplete })
    }

    /// Lists up to `limit` memories of the user.
    pub async fn list(&self, limit: usize) -> anyhow::Result<Vec<Value>> {
        Ok(self.list_page(limit).await?.memories)
    }

    /// Why the answers so far (`seen` memories, ending with `page`, asked `size` at a time) may
    /// not be all of the user's memories; `None` when the last page ends the list.
    fn truncation(&self, page: &Page, size: usize, seen: usize) -> Option<String> {
        if page.next.is_some() {
            return None;
        }
        if let Some(count) = page.count {
            return (seen < count as usize)
                .then(|| format!("the API counts {count} memories but has no page after the {seen} listed"));
        }
        if page.paged {
            return None;
        }
        match self.target.dialect {
            MemoryDialect::SelfHosted => (page.memories.len() == self.target.list_cap.max(1)).then(|| {
                format!(
                    "the self-hosted server answers at most {} memories and has no pages: more may exist",
                    self.target.list_cap
                )
            }),
            MemoryDialect::Platform => (page.memories.len() == size)
                .then(|| format!("a full page of {size} memories came without `next` or `count`: more may exist")),
        }
    }

    /// Searches the user's memories for `query`, returning at most `limit` (sent as `top_k`).
    pub async fn search(&self, query: &str, limit: usize) -> anyhow::Result<Vec<Value>> {
        let user = self.user_id.as_str();
        let request = match (self.target.dialect, self.target.api_version()) {
            (MemoryDialect::SelfHosted, _) => {
                self.http.post(self.url("search")?).json(&json!({ "query": query, "user_id": user, "top_k": limit }))
            }
            (MemoryDialect::Platform, MemoryApiVersion::V1) => {
                let body = json!({ "query": query, "user_id": user, "top_k": limit });
                self.scoped(self.http.post(self.url("v1/memories/search/")?), Some(body)).await?
            }
            (MemoryDialect::Platform, MemoryApiVersion::V2) => {
                let body = json!({ "query": query, "filters": { "AND": [{ "user_id": user }] }, "top_k": limit });
                self.scoped(self.http.post(self.url("v2/memories/search/")?), Some(body)).await?
            }
            (MemoryDialect::Platform, MemoryApiVersion::V3) => {
                let body = json!({ "query": query, "filters": { "user_id": user }, "top_k": limit });
                self.scoped(self.http.post(self.url("v3/memories/search/")?), Some(body)).await?
            }
        };
        let mut memories = self.send(request, "searching memories").await?;
        memories.truncate(limit);
        Ok(memories)
    }

    /// Every memory of the user, page by page (what was read: see [`MemoryClient::list_pages`]
    /// for whether it is all).
    pub async fn list_all(&self) -> anyhow::Result<Vec<Memory>> {
        Ok(self.list_all_json().await?.iter().filter_map(Memory::from_json).collect())
    }

    /// Every memory of the user, page by page, as the API returned them (what an undo journal
    /// or a backup keeps: id, text, user, categories, metadata, times). A list that may be
    /// incomplete is logged as a warning; [`MemoryClient::list_pages`] says so to its caller.
    pub async fn list_all_json(&self) -> anyhow::Result<Vec<Value>> {
        let listing = self.list_pages().await?;
        if let Some(why) = &listing.incomplete {
            tracing::warn!(target = %self.target.name, "memory list incomplete: {why}");
        }
        Ok(listing.memories)
    }

    /// Every memory of the user: page after page while the API names a `next` one, within
    /// `max_memories` and `list_timeout`, each request within `timeout`. The listing says when
    /// it may not hold them all (a bound stopped it, or an answer may be truncated).
    pub async fn list_pages(&self) -> anyhow::Result<Listing> {
        let user = self.user_id.as_str();
        anyhow::ensure!(!user.trim().is_empty(), "refusing to list memories without a user id");
        let started = Instant::now();
        let max = self.target.max_memories.max(1) as usize;
        let mut listing = Listing::default();
        let mut page_number = 1usize;
        loop {
            let budget = self.target.list_timeout.saturating_sub(started.elapsed());
            if budget.is_zero() {
                listing.incomplete = Some(format!(
                    "stopped after {} pages: the listing's `list_timeout` of {} ran out",
                    listing.pages,
                    humantime::format_duration(self.target.list_timeout)
                ));
                break;
            }
            let page = self.read_page(page_number, PAGE_SIZE, budget).await?;
            listing.pages += 1;
            listing.count = page.count.or(listing.count);
            listing.memories.extend(page.memories.iter().cloned());
            let seen = listing.memories.len();
            if self.target.dialect == MemoryDialect::SelfHosted {
                listing.incomplete = self.truncation(&page, PAGE_SIZE, seen);
                break;
            }
            let Some(next) = &page.next else {
                listing.incomplete = self.truncation(&page, PAGE_SIZE, seen);
                break;
            };
            if seen >= max {
                listing.incomplete = Some(format!("stopped at `max_memories` = {max} after {} pages", listing.pages));
                break;
            }
            match self.next_page_number(next, page_number) {
                Ok(n) => page_number = n,
                Err(e) => {
                    listing.incomplete = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        Ok(listing)
    }

    /// The page number `next` asks for: a later page on the target's own origin (the key goes
    /// only there).
    fn next_page_number(&self, next: &str, current: usize) -> anyhow::Result<usize> {
        let base = self.target.url.url();
        let url = base.join(next).with_context(|| format!("the API's `next` ({next}) is not a URL"))?;
        if url.origin() != base.origin() {
            bail!("the API's `next` points to another origin ({}); not followed", url.origin().ascii_serialization());
        }
        let page = url.query_pairs().find(|(k, _)| k == "page").and_then(|(_, v)| v.parse::<usize>().ok());
        match page {
            Some(page) if page > current => Ok(page),
            _ => bail!("the API's `next` names no later page than {current}; not followed"),
        }
    }

    /// Stores `text` verbatim as a new memory of the user (`infer: false`: no extraction, no
    /// merging), with `metadata` and `categories`. Platform: `POST /v3/memories/add/` on v3 (as
    /// mem0ai 2.x adds), `POST /v1/memories/` on v1 and v2; self-hosted: `POST /memories`, with
    /// the same body. Returns the API's answer.
    pub async fn add(&self, text: &str, categories: &[String], metadata: &Value) -> anyhow::Result<Value> {
        let user = self.user_id.as_str();
        anyhow::ensure!(!user.trim().is_empty(), "refusing to add a memory without a user id");
        let body = json!({
            "messages": [{ "role": "user", "content": text }],
            "user_id": user,
            "metadata": metadata,
            "categories": categories,
            "infer": false,
        });
        let path = match (self.target.dialect, self.target.api_version()) {
            (MemoryDialect::Platform, MemoryApiVersion::V3) => "v3/memories/add/",
            (MemoryDialect::Platform, _) => "v1/memories/",
            (MemoryDialect::SelfHosted, _) => "memories",
        };
        let request = self.scoped(self.http.post(self.url(path)?), Some(body)).await?.timeout(self.target.timeout);
        let response =
            self.authorize(request).send().await.with_context(|| format!("adding a memory at {}", self.target.url))?;
        let status = response.status();
        if !status.is_success() {
            let body: String = response.text().await.unwrap_or_default().chars().take(200).collect();
            bail!("adding a memory at {}: HTTP {status}: {body}", self.target.url);
        }
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// Re-creates `memories` (a restore: from a backup or an undo journal), a few at a time;
    /// returns how many were created, and the first error (the others still go).
    pub async fn add_all(&self, memories: Vec<Restoring>) -> (u64, Option<anyhow::Error>) {
        use futures::StreamExt as _;
        /// Memories created at once.
        const CONCURRENT_ADDS: usize = 8;
        let mut results = futures::stream::iter(memories)
            .map(|m| async move { self.add(&m.text, &m.categories, &m.metadata).await })
            .buffer_unordered(CONCURRENT_ADDS);
        let (mut created, mut first_error) = (0, None);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => created += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        (created, first_error)
    }

    /// Deletes memories by id, `batch` per request where the API has a batch endpoint.
    /// Returns how many were deleted; stops at the first failed request.
    pub async fn delete(&self, ids: &[String], batch: usize) -> anyhow::Result<usize> {
        let mut deleted = 0;
        match self.target.dialect {
            MemoryDialect::Platform => {
                for chunk in ids.chunks(batch.clamp(1, 1000)) {
                    let body: Vec<Value> = chunk.iter().map(|id| json!({ "memory_id": id })).collect();
                    let request = self.http.delete(self.url("v1/batch/")?).json(&json!({ "memories": body }));
                    self.send_empty(request, "deleting memories").await?;
                    deleted += chunk.len();
                }
            }
            MemoryDialect::SelfHosted => {
                for id in ids {
                    let path =
                        format!("memories/{}", url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>());
                    self.send_empty(self.http.delete(self.url(&path)?), "deleting a memory").await?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Sends `request` within the target's timeout; a status other than 2xx is an error
    /// quoting the start of the body.
    async fn checked(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<reqwest::Response> {
        self.checked_within(request, what, self.target.timeout).await
    }

    /// [`Self::checked`] within `timeout` (at most the target's).
    async fn checked_within(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        timeout: Duration,
    ) -> anyhow::Result<reqwest::Response> {
        let response = self
            .authorize(request)
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("{what} at {}", self.target.url))?;
        let status = response.status();
        if !status.is_success() {
            let body: String = response.text().await.unwrap_or_default().chars().take(200).collect();
            bail!("{what} at {}: HTTP {status}: {body}", self.target.url);
        }
        Ok(response)
    }

    async fn send_empty(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<()> {
        self.checked(request, what).await.map(|_| ())
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Vec<Value>> {
        let response = self.checked(request, what).await?;
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("{what} at {}: the response is not JSON", self.target.url))?;
        memories_of(body).with_context(|| format!("{what} at {}: unexpected response shape", self.target.url))
    }
}

/// One answer of a listing.
struct Page {
    memories: Vec<Value>,
    count: Option<u64>,
    next: Option<String>,
    /// Whether it said anything of pages (`count` or `next`, even null).
    paged: bool,
}

/// The text of a memory as the API returned it (`memory`, or `text`).
pub fn text_of(memory: &Value) -> &str {
    memory.get("memory").or_else(|| memory.get("text")).and_then(Value::as_str).unwrap_or_default()
}

/// A memory to re-create: what a restore sends to [`MemoryClient::add`].
#[derive(Clone, Debug, PartialEq)]
pub struct Restoring {
    /// Its text, stored verbatim.
    pub text: String,
    /// Its categories.
    pub categories: Vec<String>,
    /// Its metadata, with `restored_from`.
    pub metadata: Value,
}

impl Restoring {
    /// From `memory` as the API returned it: its text, categories and metadata (a metadata that
    /// is not an object is kept under `original`), plus `metadata.restored_from` = `origin` with
    /// the memory's original `id` and `created_at`.
    pub fn from_memory(memory: &Value, mut origin: serde_json::Map<String, Value>) -> Self {
        let categories: Vec<String> = memory["categories"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let mut metadata = match memory.get("metadata") {
            Some(Value::Object(object)) => object.clone(),
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(other) => serde_json::Map::from_iter([("original".to_owned(), other.clone())]),
        };
        origin.insert("id".into(), memory["id"].clone());
        origin.insert("created_at".into(), memory["created_at"].clone());
        metadata.insert("restored_from".into(), Value::Object(origin));
        Self { text: text_of(memory).to_owned(), categories, metadata: Value::Object(metadata) }
    }
}

/// One memory, as the cleanup needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Memory {
    /// Its id.
    pub id: String,
    /// Its text.
    pub text: String,
    /// Its user, when the API says.
    pub user_id: Option<String>,
    /// Its categories.
    pub categories: Vec<String>,
    /// Creation time.
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Last update (creation time when never updated).
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Memory {
    /// Reads a memory object; `None` without an id.
    pub fn from_json(v: &Value) -> Option<Self> {
        let time = |key: &str| {
            v.get(key)?.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|t| t.to_utc())
        };
        let created_at = time("created_at");
        Some(Self {
            id: v.get("id")?.as_str()?.to_owned(),
            text: v.get("memory").or_else(|| v.get("text")).and_then(Value::as_str).unwrap_or_default().to_owned(),
            user_id: v.get("user_id").and_then(Value::as_str).map(str::to_owned),
            categories: v
                .get("categories")
                .and_then(Value::as_array)
                .map(|c| c.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            created_at,
            updated_at: time("updated_at").or(created_at),
        })
    }
}

/// The memories in a response: an array, or an object with `results` (or `memories`).
pub fn memories_of(body: Value) -> anyhow::Result<Vec<Value>> {
    match body {
        Value::Array(items) => Ok(items),
        Value::Object(mut object) => match object.remove("results").or_else(|| object.remove("memories")) {
            Some(Value::Array(items)) => Ok(items),
            _ => bail!("expected an array or an object with `results`"),
        },
        _ => bail!("expected an array or an object with `results`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_response_shapes_are_read() {
        assert_eq!(memories_of(json!([{"id": "a"}])).unwrap().len(), 1);
        assert_eq!(memories_of(json!({"results": [{"id": "a"}, {"id": "b"}]})).unwrap().len(), 2);
        assert!(memories_of(json!({"detail": "nope"})).is_err());
    }
}
