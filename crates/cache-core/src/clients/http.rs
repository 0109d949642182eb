//! The HTTP client: one per process, every request bounded by a connect and a total timeout.
//!
//! The client and its TLS context ([`super::tls::shared`]) are built once per process; each
//! request sets its own total timeout. Building them parses the system CA bundle, so async
//! code gets the client through [`client_async`], which builds it on a blocking thread. The
//! client keeps connections alive (HTTP/1.1 keep-alive, idle ones for 90 s): a second request
//! to a server that allows it goes over the connection the first opened.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;

/// The user agent sent with every request.
pub const USER_AGENT: &str = concat!("cache-toolkit/", env!("CARGO_PKG_VERSION"));

/// Longest time allowed to establish a connection, whatever the request's own timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();

fn built() -> anyhow::Result<reqwest::Client> {
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

/// The process's HTTP client. Callers must set a total timeout on each request
/// (`RequestBuilder::timeout`); connects give up after [`CONNECT_TIMEOUT`] at most. Blocking
/// the first time (it builds the TLS context): from async code, use [`client_async`].
pub fn client() -> anyhow::Result<reqwest::Client> {
    built()
}

/// The process's HTTP client ([`client`]), built on a blocking thread the first time, so that
/// no runtime thread stalls on the TLS context while other tasks are being timed.
pub async fn client_async() -> anyhow::Result<reqwest::Client> {
    if CLIENT.get().is_some() {
        return built();
    }
    tokio::task::spawn_blocking(built).await.context("building the HTTP client")?
}
