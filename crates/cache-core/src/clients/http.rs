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

/// An HTTP client trusting `trust`: the process's own ([`client_async`]) for the default
/// trust, else one built on the connector for `trust` ([`super::tls::connector`]), with the
/// same connect timeout and user agent. Callers set a total timeout on each request.
pub async fn client_with(trust: &super::tls::Trust) -> anyhow::Result<reqwest::Client> {
    if *trust == super::tls::Trust::default() {
        return client_async().await;
    }
    reqwest::Client::builder()
        .use_preconfigured_tls(super::tls::connector(trust).await?)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(USER_AGENT)
        .build()
        .context("building the HTTP client")
}

#[cfg(test)]
mod tests {
    /// How far before a `.send()` (or a call of a function sending a builder it was given) the
    /// builder's `.timeout(` must be set: the statement building the request.
    const WINDOW: usize = 12;

    /// The lines (1-based) of `text` that send an HTTP request whose timeout is not set: a
    /// `.send()` with no `.timeout(` in the [`WINDOW`] lines up to it, unless the function it is
    /// in takes a `RequestBuilder` and every call of that function sets one.
    fn untimed(text: &str) -> Vec<usize> {
        let lines: Vec<&str> = text.lines().collect();
        let timed = |at: usize| lines[at.saturating_sub(WINDOW)..=at].iter().any(|l| l.contains(".timeout("));
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let code = !line.trim_start().starts_with("//") && !line.contains("\".send()\"");
            if !code || !line.contains(".send()") || timed(i) {
                continue;
            }
            // The function it is in, when it is handed the builder.
            let handed = lines[..i].iter().rev().find(|l| l.trim_start().contains("fn ")).and_then(|sig| {
                let sig = sig.trim_start();
                let name = sig.split("fn ").nth(1)?.split(['(', '<']).next()?.trim();
                sig.contains("RequestBuilder").then(|| name.to_owned())
            });
            let callers_time_it = handed.is_some_and(|name| {
                let call = format!("{name}(");
                // A call of the function itself: not a method of that name (`client.post(`).
                let calls_it = |l: &str| {
                    l.match_indices(&call).any(|(at, _)| {
                        !l[..at].ends_with(|c: char| c == '.' || c == '_' || c.is_alphanumeric())
                            && !l[..at].ends_with("fn ")
                    })
                };
                let calls: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| calls_it(l)).map(|(j, _)| j).collect();
                // The builder may be the call's argument, on the lines after it.
                let built_timed = |at: usize| {
                    timed(at) || lines[at..(at + 4).min(lines.len())].iter().any(|l| l.contains(".timeout("))
                };
                !calls.is_empty() && calls.into_iter().all(built_timed)
            });
            if !callers_time_it {
                out.push(i + 1);
            }
        }
        out
    }

    #[test]
    fn the_rule_finds_an_untimed_request_and_accepts_timed_ones() {
        let timed = "let r = client.get(url)\n    .timeout(t)\n    .send()\n    .await?;";
        assert!(untimed(timed).is_empty());
        let bare = "let r = client.get(url).send().await?;";
        assert_eq!(untimed(bare), [1]);
        let handed = "async fn post(request: reqwest::RequestBuilder) {\n    request.send().await;\n}\n\
                      fn a() { post(client.post(u).timeout(t)); }";
        assert!(untimed(handed).is_empty());
        let handed_bare = "async fn post(request: reqwest::RequestBuilder) {\n    request.send().await;\n}\n\
                           fn a() { post(client.post(u)); }";
        assert_eq!(untimed(handed_bare), [2]);
        // A method of the same name is no call of the function.
        let method = "async fn post(request: reqwest::RequestBuilder) {\n    request.send().await;\n}\n\
                      fn a() { let r = client.post(u); }";
        assert_eq!(untimed(method), [2]);
    }

    /// The tidy rule "every network call is bounded", for HTTP: in every `.rs` file under
    /// `crates/*/src`, each request sets its own total timeout (the client's 300 s is only a
    /// backstop). Redis and PostgreSQL connections get theirs where they are made
    /// (`clients::redis`, `clients::postgres`).
    #[test]
    fn every_http_request_sets_its_own_timeout() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut stack: Vec<_> = std::fs::read_dir(&crates).unwrap().map(|e| e.unwrap().path().join("src")).collect();
        let (mut offences, mut sends) = (Vec::new(), 0);
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                sends += text.matches(".send()").count();
                offences.extend(untimed(&text).into_iter().map(|line| format!("{}:{line}", path.display())));
            }
        }
        assert!(sends >= 5, "the rule found only {sends} requests: is it reading the sources?");
        assert!(offences.is_empty(), "requests without their own timeout:\n{}", offences.join("\n"));
    }
}
