//! A Mem0-style memory API client, speaking both dialects.
//!
//! - Platform (hosted): `Authorization: Token KEY`; v1 lists with `GET /v1/memories/?user_id=`
//!   and searches with `POST /v1/memories/search/`; v2 lists with `POST /v2/memories/` and
//!   searches with `POST /v2/memories/search/`, both taking `filters`.
//! - Self-hosted REST server: `X-API-Key: KEY`; `GET /memories?user_id=`, `POST /search`.
//!
//! Responses are either a JSON array of memories or an object holding them under `results`.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::config::{MemoryApiVersion, MemoryDialect, MemoryTarget};

/// A client for one memory-API target.
#[derive(Clone, Debug)]
pub struct MemoryClient {
    http: reqwest::Client,
    target: MemoryTarget,
    user_id: String,
}

impl MemoryClient {
    /// A client for `target`, acting for `user_id`. Blocking the first time the process needs
    /// an HTTP client: from code that times requests, use [`MemoryClient::open`].
    pub fn new(target: &MemoryTarget, user_id: &str) -> anyhow::Result<Self> {
        Ok(Self { http: super::http::client()?, target: target.clone(), user_id: user_id.to_owned() })
    }

    /// A client for `target`, acting for `user_id`, its HTTP client built on a blocking thread
    /// ([`super::http::client_async`]). Requests share the process's kept-alive connections.
    pub async fn open(target: &MemoryTarget, user_id: &str) -> anyhow::Result<Self> {
        Ok(Self { http: super::http::client_async().await?, target: target.clone(), user_id: user_id.to_owned() })
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

    /// Lists up to `limit` memories of the user.
    pub async fn list(&self, limit: usize) -> anyhow::Result<Vec<Value>> {
        let user = self.user_id.as_str();
        let request = match (self.target.dialect, self.target.api_version) {
            (MemoryDialect::SelfHosted, _) => self.http.get(self.url("memories")?).query(&[("user_id", user)]),
            (MemoryDialect::Platform, MemoryApiVersion::V1) => {
                self.http.get(self.url("v1/memories/")?).query(&[("user_id", user), ("page_size", &limit.to_string())])
            }
            (MemoryDialect::Platform, MemoryApiVersion::V2) => self
                .http
                .post(self.url("v2/memories/")?)
                .query(&[("page", "1"), ("page_size", &limit.to_string())])
                .json(&json!({ "filters": { "AND": [{ "user_id": user }] } })),
        };
        let mut memories = self.send(request, "listing memories").await?;
        memories.truncate(limit);
        Ok(memories)
    }

    /// Searches the user's memories for `query`, returning at most `limit`.
    pub async fn search(&self, query: &str, limit: usize) -> anyhow::Result<Vec<Value>> {
        let user = self.user_id.as_str();
        let request = match (self.target.dialect, self.target.api_version) {
            (MemoryDialect::SelfHosted, _) => {
                self.http.post(self.url("search")?).json(&json!({ "query": query, "user_id": user }))
            }
            (MemoryDialect::Platform, MemoryApiVersion::V1) => self
                .http
                .post(self.url("v1/memories/search/")?)
                .json(&json!({ "query": query, "user_id": user, "limit": limit })),
            (MemoryDialect::Platform, MemoryApiVersion::V2) => self
                .http
                .post(self.url("v2/memories/search/")?)
                .json(&json!({ "query": query, "filters": { "AND": [{ "user_id": user }] }, "top_k": limit })),
        };
        let mut memories = self.send(request, "searching memories").await?;
        memories.truncate(limit);
        Ok(memories)
    }

    /// Every memory of the user, page by page.
    pub async fn list_all(&self) -> anyhow::Result<Vec<Memory>> {
        Ok(self.list_all_json().await?.iter().filter_map(Memory::from_json).collect())
    }

    /// Every memory of the user, page by page, as the API returned them (what an undo journal
    /// or a backup keeps: id, text, user, categories, metadata, times).
    pub async fn list_all_json(&self) -> anyhow::Result<Vec<Value>> {
        const PAGE: usize = 100;
        let user = self.user_id.as_str();
        anyhow::ensure!(!user.trim().is_empty(), "refusing to list memories without a user id");
        let mut all = Vec::new();
        for page in 1.. {
            let request = match (self.target.dialect, self.target.api_version) {
                (MemoryDialect::SelfHosted, _) => self.http.get(self.url("memories")?).query(&[("user_id", user)]),
                (MemoryDialect::Platform, MemoryApiVersion::V1) => self.http.get(self.url("v1/memories/")?).query(&[
                    ("user_id", user),
                    ("page", &page.to_string()),
                    ("page_size", &PAGE.to_string()),
                ]),
                (MemoryDialect::Platform, MemoryApiVersion::V2) => self
                    .http
                    .post(self.url("v2/memories/")?)
                    .query(&[("page", page.to_string()), ("page_size", PAGE.to_string())])
                    .json(&json!({ "filters": { "AND": [{ "user_id": user }] } })),
            };
            let items = self.send(request, "listing memories").await?;
            let full_page = items.len() == PAGE;
            all.extend(items);
            // The self-hosted server has no pages: one answer holds everything.
            if !full_page || self.target.dialect == MemoryDialect::SelfHosted {
                break;
            }
        }
        Ok(all)
    }

    /// Stores `text` verbatim as a new memory of the user (`infer: false`: no extraction, no
    /// merging), with `metadata` and `categories`. Platform: `POST /v1/memories/`; self-hosted:
    /// `POST /memories`, with the same body. Returns the API's answer.
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
        let path = match self.target.dialect {
            MemoryDialect::Platform => "v1/memories/",
            MemoryDialect::SelfHosted => "memories",
        };
        let request = self.http.post(self.url(path)?).json(&body).timeout(self.target.timeout);
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
        let response = self
            .authorize(request)
            .timeout(self.target.timeout)
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
