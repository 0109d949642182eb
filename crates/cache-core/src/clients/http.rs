//! The HTTP client: one per process, every request bounded by a connect and a total timeout.
//!
//! The client and its TLS context ([`super::tls::shared`]) are built once per process; each
//! request sets its own total timeout.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;

/// The user agent sent with every request.
pub const USER_AGENT: &str = concat!("cache-toolkit/", env!("CARGO_PKG_VERSION"));

/// Longest time allowed to establish a connection, whatever the request's own timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's HTTP client. Callers must set a total timeout on each request
/// (`RequestBuilder::timeout`); connects give up after [`CONNECT_TIMEOUT`] at most.
pub fn client() -> anyhow::Result<reqwest::Client> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let tls = super::tls::shared().map_err(|e| format!("{e:#}"))?;
            reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(Duration::from_secs(300))
                .user_agent(USER_AGENT)
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
        .context("building the HTTP client")
}
