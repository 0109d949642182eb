//! The HTTP client: every request bounded by a connect and a total timeout.

use std::time::Duration;

use anyhow::Context as _;

/// The user agent sent with every request.
pub const USER_AGENT: &str = concat!("cache-toolkit/", env!("CARGO_PKG_VERSION"));

/// A client whose requests time out after `timeout` (connects after at most 5 s of it).
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(USER_AGENT)
        .build()
        .context("building the HTTP client")
}
