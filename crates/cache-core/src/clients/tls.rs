//! TLS connectors, built once per process for each way of trusting a peer, never on the async
//! runtime's threads.
//!
//! Building an OpenSSL context parses the whole system CA bundle (native-tls loads it twice),
//! tens of milliseconds of CPU. Done on a runtime thread, it stalls every task scheduled there,
//! and a probe being timed on that thread measures the stall, not its server. So each
//! connector is built once per [`Trust`] (a CA file is re-read when it changes, for the
//! long-running monitor), the async entry point [`connector`] builds on a blocking thread,
//! and [`prepare`] lets a caller build them all before it starts timing anything.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::Context as _;

/// How a connection verifies its peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Trust {
    /// A CA certificate (PEM) trusted on top of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate for any host name: encrypted, not authenticated.
    pub accept_invalid: bool,
}

/// A built connector and what it was built from.
struct Built {
    trust: Trust,
    /// The CA file's modification time and length when it was read.
    ca_stamp: Option<(SystemTime, u64)>,
    connector: native_tls::TlsConnector,
}

/// The connectors built so far. The lock is held while one is built, so each is built once
/// even when several connections ask at the same moment; only blocking threads take it.
static BUILT: Mutex<Vec<Built>> = Mutex::new(Vec::new());

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn build(trust: &Trust) -> anyhow::Result<native_tls::TlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(ca) = &trust.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("reading CA file `{}`", ca.display()))?;
        builder.add_root_certificate(
            native_tls::Certificate::from_pem(&pem).with_context(|| format!("parsing CA file `{}`", ca.display()))?,
        );
    }
    if trust.accept_invalid {
        builder.danger_accept_invalid_certs(true).danger_accept_invalid_hostnames(true);
    }
    builder.build().context("building the TLS context")
}

/// The connector for `trust`, built the first time and then shared. Blocking (it may parse
/// certificates): from async code, use [`connector`]. A failure is not kept: the next call
/// tries again.
pub fn connector_blocking(trust: &Trust) -> anyhow::Result<native_tls::TlsConnector> {
    let ca_stamp = trust.ca_file.as_deref().and_then(stamp);
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(b) = built.iter().find(|b| b.trust == *trust && b.ca_stamp == ca_stamp) {
        return Ok(b.connector.clone());
    }
    let connector = build(trust)?;
    built.retain(|b| b.trust != *trust);
    built.push(Built { trust: trust.clone(), ca_stamp, connector: connector.clone() });
    Ok(connector)
}

/// The connector for `trust`, looked up or built on a blocking thread, so that the runtime's
/// threads never parse certificates.
pub async fn connector(trust: &Trust) -> anyhow::Result<native_tls::TlsConnector> {
    let trust = trust.clone();
    tokio::task::spawn_blocking(move || connector_blocking(&trust)).await.context("building the TLS context")?
}

/// Builds the connectors for `trusts` on a blocking thread, for a caller to run before it
/// times anything. Failures are left for the connections themselves to report.
pub async fn prepare(trusts: Vec<Trust>) {
    if trusts.is_empty() {
        return;
    }
    let built = tokio::task::spawn_blocking(move || {
        for trust in &trusts {
            if let Err(e) = connector_blocking(trust) {
                tracing::debug!("preparing the TLS context {trust:?}: {e:#}");
            }
        }
    });
    let _ = built.await;
}

/// The process's TLS connector with the system's trust roots and default verification.
/// Blocking the first time: from async code, use [`connector`] with the default [`Trust`].
pub fn shared() -> anyhow::Result<native_tls::TlsConnector> {
    connector_blocking(&Trust::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (P-256, valid until 2126), only ever parsed.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBljCCAT2gAwIBAgIUB8ZJaxycLtkUlxdM3gKDcMfkwPIwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVY2FjaGUtdG9vbGtpdC10ZXN0LWNhMCAXDTI2MTIwMTEyMzQx
N1oYDzIxMjYxMTA3MTIzNDE3WjAgMR4wHAYDVQQDDBVjYWNoZS10b29sa2l0LXRl
c3QtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQy+VvROHkslgHpqIereIeU
RO6hE9thXOSsQzkEeTFC9jNwtCtdBhVd8NwSEs+f9IrGEDJEbkvsXpuMNFytcGr2
o1MwUTAdBgNVHQ4EFgQUerfuwxdnCCaopJAruJAAwd5iV30wHwYDVR0jBBgwFoAU
erfuwxdnCCaopJAruJAAwd5iV30wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNHADBEAiBjSZYT8gF00HrrPgzZADySI0N4QY/mjuZBeyZNQAbHmQIgIuIOHiAq
aGsX2cJMoRGmXkGbBYl/+L3hjysxyMubBRE=
-----END CERTIFICATE-----
";

    fn entries(trust: &Trust) -> Vec<Option<(SystemTime, u64)>> {
        BUILT.lock().unwrap().iter().filter(|b| b.trust == *trust).map(|b| b.ca_stamp).collect()
    }

    #[test]
    fn each_trust_is_built_once_and_a_changed_ca_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let trust = Trust { ca_file: Some(ca.clone()), accept_invalid: false };
        // Not a certificate: refused, and the failure is not kept.
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = connector_blocking(&trust).unwrap_err();
        assert!(format!("{e:#}").contains("parsing CA file"), "{e:#}");
        assert_eq!(entries(&trust), []);
        // Fixed: built once, however often asked.
        std::fs::write(&ca, CA).unwrap();
        connector_blocking(&trust).unwrap();
        connector_blocking(&trust).unwrap();
        assert_eq!(entries(&trust), [stamp(&ca)]);
        // Replaced (a rotated CA, under a running monitor): read again, the old one dropped.
        std::fs::write(&ca, format!("{CA}\n")).unwrap();
        connector_blocking(&trust).unwrap();
        assert_eq!(entries(&trust), [stamp(&ca)]);
        // Other trusts are entries of their own, each kept once.
        let lenient = Trust { ca_file: None, accept_invalid: true };
        connector_blocking(&lenient).unwrap();
        connector_blocking(&lenient).unwrap();
        assert_eq!(entries(&lenient).len(), 1);
    }

    #[tokio::test]
    async fn prepared_connectors_are_the_ones_connections_find() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, CA).unwrap();
        let trust = Trust { ca_file: Some(ca.clone()), accept_invalid: true };
        prepare(vec![trust.clone()]).await;
        assert_eq!(entries(&trust), [stamp(&ca)]);
        connector(&trust).await.unwrap();
        assert_eq!(entries(&trust), [stamp(&ca)]);
    }
}
