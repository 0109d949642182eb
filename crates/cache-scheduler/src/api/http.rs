//! A small HTTP/1.1 server for the maintenance API: one request per connection, every request
//! read within a deadline (head and body), the head and the body capped, the connections at
//! once capped.
//!
//! tiny_http (which `cache-analytics dashboard --serve` uses) has no read timeout and starts a
//! thread for every connection, however many: a client that never finishes its request would
//! hold a thread for ever. Here each accepted socket gets a read and a write timeout, the whole
//! request must arrive within [`Limits::read_timeout`] (408 after), a head over
//! [`Limits::max_head`] is 431, a body over [`Limits::max_body`] is 413 before any of it is
//! read, a body without `Content-Length` is 411, and past [`Limits::max_connections`] a
//! connection is answered 503 at once. The request head is parsed by `httparse`.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a request may take.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The whole request (head and body) arrives within this.
    pub read_timeout: Duration,
    /// The longest request head (request line and headers).
    pub max_head: usize,
    /// The largest body.
    pub max_body: u64,
    /// Connections served at once.
    pub max_connections: usize,
}

/// A request, read whole.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: IpAddr,
}

impl Request {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The query parameter `name`: the first of its values.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length`, `Connection` and the ones every response has.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON document.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self { status, headers: vec![("Content-Type".into(), "application/json".into())], body }
    }

    /// A JSON error: `{"error": {"status": N, "message": "..."}}`.
    pub fn error(status: u16, message: &str) -> Self {
        let message = cache_core::redact::scrub(message);
        Self::json(status, &serde_json::json!({ "error": { "status": status, "message": message } }))
    }

    /// An HTML page (no script; styles inline only).
    pub fn html(body: String) -> Self {
        Self {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/html; charset=utf-8".into()),
                (
                    "Content-Security-Policy".into(),
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
                        .into(),
                ),
            ],
            body: body.into_bytes(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// The reason phrase of `status`.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn write_response(stream: &mut TcpStream, response: &Response) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
    for (name, value) in &response.headers {
        // A value is never allowed to end the head early.
        let value: String = value.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()
}

/// Why a request could not be read.
#[derive(Debug)]
enum ReadError {
    /// The client closed the connection before sending a request: nothing to answer.
    Closed,
    /// Answer this, then close.
    Answer(Response),
}

fn answer(status: u16, message: &str) -> ReadError {
    ReadError::Answer(Response::error(status, message))
}

/// Reads into `buf` until `done(buf)` or the deadline; `Closed` on EOF.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<usize, ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(answer(408, "the request was not sent in time"));
    }
    stream.set_read_timeout(Some(left)).map_err(|_| ReadError::Closed)?;
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk) {
        Ok(0) => Err(ReadError::Closed),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Err(answer(408, "the request was not sent in time"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
        Err(_) => Err(ReadError::Closed),
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Decodes `%XX` (and, in a query, `+` as a space); `None` for a bad escape or bad UTF-8.
pub fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn read_request(stream: &mut TcpStream, peer: IpAddr, limits: &Limits) -> Result<Request, ReadError> {
    let deadline = Instant::now() + limits.read_timeout;
    let mut buf = Vec::with_capacity(4096);
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > limits.max_head {
            return Err(answer(431, &format!("the request head is over {} bytes", limits.max_head)));
        }
        read_more(stream, &mut buf, deadline)?;
    };
    if end > limits.max_head {
        return Err(answer(431, &format!("the request head is over {} bytes", limits.max_head)));
    }
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(answer(400, "the request head is incomplete")),
        Err(httparse::Error::TooManyHeaders) => return Err(answer(431, "more than 64 headers")),
        Err(e) => return Err(answer(400, &format!("the request is no HTTP/1.1 request: {e}"))),
    }
    let method = parsed.method.unwrap_or_default().to_owned();
    let target = parsed.path.unwrap_or_default();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_owned()))
        .collect();
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    if !raw_path.starts_with('/') {
        return Err(answer(400, "the request target must be a path (`/api/...`)"));
    }
    let path = percent_decode(raw_path, false).ok_or_else(|| answer(400, "bad percent-encoding in the path"))?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (percent_decode(k, true), percent_decode(v, true)) {
            (Some(k), Some(v)) => query.push((k, v)),
            _ => return Err(answer(400, "bad percent-encoding in the query")),
        }
    }
    let header = |name: &str| headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    if !header("transfer-encoding").is_empty() {
        return Err(answer(411, "send the body with Content-Length (chunked bodies are not taken)"));
    }
    let lengths = header("content-length");
    let length: u64 = match lengths.as_slice() {
        [] => 0,
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => {
            one.parse().map_err(|_| answer(413, "the body is too large"))?
        }
        _ => return Err(answer(400, "one Content-Length, a number, is needed")),
    };
    if length > limits.max_body {
        return Err(answer(413, &format!("the body is over {} bytes", limits.max_body)));
    }
    let mut body = buf[end..].to_vec();
    if length > 0 && body.is_empty() && header("expect").iter().any(|v| v.eq_ignore_ascii_case("100-continue")) {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    while body.len() < length {
        read_more(stream, &mut body, deadline)?;
    }
    if body.len() > length {
        // A second request after the first on one connection: not taken (one per connection).
        body.truncate(length);
    }
    Ok(Request { method, path, query, headers, body, peer })
}

/// After answering a request whose body was not read (413, say): stops writing and reads
/// what the client still sends, for a second and 1 MiB at most, so that closing with unread
/// data does not reset the connection before the client has read the answer.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut left: usize = 1 << 20;
    let mut chunk = [0u8; 8192];
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The handler of every request.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// Serves connections from `listener` until `stop` is set (and a connection wakes the accept),
/// each in its own thread, at most `limits.max_connections` at once.
pub fn serve(listener: TcpListener, limits: Limits, stop: Arc<AtomicBool>, handler: Arc<Handler>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        let Ok(peer) = stream.peer_addr().map(|a| a.ip()) else { continue };
        let _ = stream.set_write_timeout(Some(limits.read_timeout));
        if active.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = Response::error(503, "too many connections at once; try again").with_header("Retry-After", "1");
            let _ = write_response(&mut stream, &busy);
            continue;
        }
        let (limits, handler, done) = (limits.clone(), Arc::clone(&handler), Arc::clone(&active));
        let spawned = std::thread::Builder::new().name("api-connection".into()).spawn(move || {
            match read_request(&mut stream, peer, &limits) {
                Ok(request) => {
                    let response = handler(&request);
                    tracing::info!("{} {} {} {}", peer, request.method, request.path, response.status);
                    let _ = write_response(&mut stream, &response);
                }
                Err(ReadError::Answer(response)) => {
                    tracing::info!("{peer}: request refused: {}", response.status);
                    let _ = write_response(&mut stream, &response);
                    linger(&mut stream);
                }
                Err(ReadError::Closed) => {}
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            done.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("could not start a thread for a connection from {peer}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz", true), None);
        assert_eq!(percent_decode("%4", true), None);
        assert_eq!(percent_decode("%ff", true), None, "not UTF-8");
    }
}
