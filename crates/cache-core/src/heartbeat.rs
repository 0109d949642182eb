//! Heartbeats to a dead-man's switch (healthchecks.io and compatible services): who watches the
//! watcher. A run pings `URL/start` when it begins and, when it ends, the bare `URL` (it went
//! well), `URL/fail` (it failed) or `URL/<exit code>` (it ended with that code); each ping carries
//! `?rid=<run id>` so the service pairs a start with its end and measures the run, and the end's
//! POST body holds the last lines of the run's output or its error (at most [`MAX_BODY`] bytes,
//! scrubbed of every registered secret).
//!
//! A ping is one attempt bounded by [`TIMEOUT`]: a switch that is down must neither hold a run
//! up nor fail it, so a failed ping is only logged as a warning (the switch, missing its ping,
//! raises the alarm by itself). The URL is a [`Secret`]: its path (the check's UUID or ping
//! key) is the credential, and it is never printed.

use std::time::Duration;

use sha2::{Digest, Sha256};
use url::Url;

use crate::redact::{Secret, scrub};

/// Time allowed for one ping, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The most bytes of output a ping carries (healthchecks.io keeps the first 100 kB; the end of
/// a run's output is what says how it went).
pub const MAX_BODY: usize = 10_000;

/// Pings `url/start?rid=RUN`: the run `run_id` began. Never fails: a ping that does not get
/// through is logged as a warning.
pub async fn start(url: &Secret, run_id: &str) {
    ping(url, Some("start"), run_id, String::new()).await;
}

/// Pings the end of run `run_id`: the bare `url` when `success` and `exit_code` is 0,
/// `url/<exit_code>` when the code is not 0, and `url/fail` for a failure that exited 0; the
/// POST body is the tail of `body` (the run's last lines of output, or its error), scrubbed.
/// Never fails: a ping that does not get through is logged as a warning.
pub async fn finish(url: &Secret, run_id: &str, exit_code: u8, success: bool, body: &str) {
    ping(url, end_path(exit_code, success).as_deref(), run_id, tail(body)).await;
}

/// The path segment of a run's last ping (`None`: the bare URL).
pub fn end_path(exit_code: u8, success: bool) -> Option<String> {
    match (exit_code, success) {
        (0, true) => None,
        (0, false) => Some("fail".into()),
        (code, _) => Some(code.to_string()),
    }
}

/// The URL of a ping: `url` with `path` appended as a segment and `rid` added to its query.
pub fn ping_url(url: &str, path: Option<&str>, run_id: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(url).map_err(|e| anyhow::anyhow!("not a valid ping URL: {e}"))?;
    if let Some(path) = path {
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the ping URL cannot take a path"))?
            .pop_if_empty()
            .push(path);
    }
    url.query_pairs_mut().append_pair("rid", &rid(run_id));
    Ok(url)
}

/// A run id as healthchecks.io wants it, a UUID: `run_id` itself when it is one, else a UUID
/// made from its SHA-256 (the same run id always gives the same UUID).
pub fn rid(run_id: &str) -> String {
    let is_uuid = run_id.len() == 36
        && run_id
            .char_indices()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    if is_uuid {
        return run_id.to_ascii_lowercase();
    }
    let mut b: [u8; 16] = Sha256::digest(run_id.as_bytes())[..16].try_into().unwrap_or_default();
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The end of `text`, scrubbed, at most [`MAX_BODY`] bytes, starting on a line when it was cut.
pub fn tail(text: &str) -> String {
    let text = scrub(text);
    if text.len() <= MAX_BODY {
        return text.into_owned();
    }
    let mut cut = text.len() - MAX_BODY;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let rest = &text[cut..];
    rest.find('\n').map_or(rest, |i| &rest[i + 1..]).to_owned()
}

async fn ping(url: &Secret, path: Option<&str>, run_id: &str, body: String) {
    let what = path.unwrap_or("success");
    if let Err(e) = try_ping(url, path, run_id, body).await {
        tracing::warn!("heartbeat ({what}) not sent: {}", scrub(&format!("{e:#}")));
    }
}

async fn try_ping(url: &Secret, path: Option<&str>, run_id: &str, body: String) -> anyhow::Result<()> {
    let target = ping_url(url.expose(), path, run_id)?;
    let response = crate::clients::http::client_async()
        .await?
        .post(target)
        .timeout(TIMEOUT)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body)
        .send()
        .await
        // The URL is the credential: errors are shown without it.
        .map_err(|e| anyhow::anyhow!("{}", e.without_url()))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "the heartbeat service answered {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ping_urls_of_a_run() {
        let base = "https://hc-ping.com/0e7c5f4a-2a1b-4c3d-9e8f-7a6b5c4d3e2f";
        let rid = "5d7f0c1e-3a2b-4c5d-8e9f-0a1b2c3d4e5f";
        let url = |path: Option<String>| ping_url(base, path.as_deref(), rid).unwrap().to_string();
        assert_eq!(url(Some("start".into())), format!("{base}/start?rid={rid}"));
        assert_eq!(url(end_path(0, true)), format!("{base}?rid={rid}"));
        assert_eq!(url(end_path(0, false)), format!("{base}/fail?rid={rid}"));
        assert_eq!(url(end_path(4, false)), format!("{base}/4?rid={rid}"));
        assert_eq!(url(end_path(1, true)), format!("{base}/1?rid={rid}"));
        // A trailing slash and a query of its own are kept apart from what is added.
        let other = ping_url("https://ping.example/p/key/slug/?create=1", Some("start"), rid).unwrap();
        assert_eq!(other.as_str(), format!("https://ping.example/p/key/slug/start?create=1&rid={rid}"));
    }

    #[test]
    fn a_run_id_becomes_a_stable_uuid() {
        let id = rid("20261201T152813.000Z-4242");
        assert_eq!(id, rid("20261201T152813.000Z-4242"));
        assert_eq!(rid(&id), id);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
        assert_ne!(id, rid("20261201T152813.000Z-4243"));
    }

    #[test]
    fn the_body_is_the_scrubbed_tail() {
        let _secret = Secret::new("hb-s3cret-token-42");
        let long: String = (0..2000).map(|i| format!("line {i} hb-s3cret-token-42\n")).collect();
        let body = tail(&long);
        assert!(body.len() <= MAX_BODY && body.starts_with("line ") && body.ends_with("line 1999 ***\n"), "{body}");
        assert!(!body.contains("s3cret"));
        assert_eq!(tail("short"), "short");
    }
}
