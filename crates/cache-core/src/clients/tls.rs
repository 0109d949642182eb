//! One TLS context per process, shared by the HTTP client and PostgreSQL connections.
//!
//! OpenSSL parses the whole system CA bundle when a context is built, which costs tens of
//! milliseconds of CPU; a check touching several tiers would pay it once per client. The
//! context is built on first use, so runs that need no TLS never pay it.

use std::sync::OnceLock;

use anyhow::Context as _;

/// The process's TLS connector with the system's trust roots and default verification.
pub fn shared() -> anyhow::Result<native_tls::TlsConnector> {
    static CONNECTOR: OnceLock<Result<native_tls::TlsConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| native_tls::TlsConnector::new().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
        .context("building the TLS context")
}
