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
    /// A client for `target`, acting for `user_id`.
    pub fn new(target: &MemoryTarget, user_id: &str) -> anyhow::Result<Self> {
        Ok(Self { http: super::http::client()?, target: target.clone(), user_id: user_id.to_owned() })
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

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Vec<Value>> {
        let response =
            self.authorize(request).send().await.with_context(|| format!("{what} at {}", self.target.url))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            bail!("{what} at {}: HTTP {status}: {body}", self.target.url);
        }
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("{what} at {}: the response is not JSON", self.target.url))?;
        memories_of(body).with_context(|| format!("{what} at {}: unexpected response shape", self.target.url))
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
