//! Real servers standing in for notification receivers: an HTTP receiver (Alertmanager-style
//! webhooks, Slack incoming webhooks) that records every request, and an SMTP server that
//! speaks RFC 5321 (EHLO, MAIL, RCPT, DATA, QUIT, and STARTTLS per RFC 3207) and records every
//! message.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A recorded HTTP request.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on a fixed loopback port, which can be stopped and started again on the
/// same port (a receiver that is down refuses connections).
pub struct HttpReceiver {
    port: u16,
    answer: &'static str,
    status: u16,
    received: Arc<Mutex<Vec<Received>>>,
    running: Option<(Arc<tiny_http::Server>, JoinHandle<()>)>,
}

impl HttpReceiver {
    /// Starts a receiver answering 200 with `answer` (Slack answers `ok`).
    pub fn start(answer: &'static str) -> Self {
        Self::start_with_status(200, answer)
    }

    /// Starts a receiver answering `status` with `answer` to every request (400: a receiver
    /// refusing the payload for good; 503: one that is overloaded).
    pub fn start_with_status(status: u16, answer: &'static str) -> Self {
        let mut r = Self { port: crate::free_port(), answer, status, received: Arc::default(), running: None };
        r.up();
        r
    }

    /// A receiver on a free port that is down until [`HttpReceiver::up`].
    pub fn down(answer: &'static str) -> Self {
        Self { port: crate::free_port(), answer, status: 200, received: Arc::default(), running: None }
    }

    /// Starts listening (again).
    pub fn up(&mut self) {
        if self.running.is_some() {
            return;
        }
        let server = Arc::new(tiny_http::Server::http(("127.0.0.1", self.port)).unwrap());
        let received = Arc::clone(&self.received);
        let answer = self.answer;
        let status = self.status;
        let thread = {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    received.lock().unwrap().push(Received {
                        method: request.method().to_string(),
                        path: request.url().to_owned(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_owned()))
                            .collect(),
                        body,
                    });
                    let _ = request.respond(tiny_http::Response::from_string(answer).with_status_code(status));
                }
            })
        };
        self.running = Some((server, thread));
    }

    /// Stops listening.
    pub fn stop(&mut self) {
        if let Some((server, thread)) = self.running.take() {
            server.unblock();
            let _ = thread.join();
        }
    }

    /// Its URL, with `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A message an [`SmtpServer`] accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    /// `MAIL FROM` address.
    pub from: String,
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message (headers and body), dot-unstuffed.
    pub data: String,
    /// Whether it came over a STARTTLS-encrypted session.
    pub encrypted: bool,
}

/// An SMTP server on loopback, one session at a time. With a certificate it offers STARTTLS
/// and refuses mail until the session is encrypted.
pub struct SmtpServer {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    _thread: JoinHandle<()>,
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

impl SmtpServer {
    /// Starts a plain server.
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// Starts a server that requires STARTTLS with this certificate.
    pub fn start_tls(cert: &crate::SelfSigned) -> Self {
        let pem = std::fs::read(cert.cert()).unwrap();
        let key = std::fs::read(cert.key()).unwrap();
        let identity = native_tls::Identity::from_pkcs8(&pem, &key).unwrap();
        Self::spawn(Some(native_tls::TlsAcceptor::new(identity).unwrap()))
    }

    fn spawn(tls: Option<native_tls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let sink = Arc::clone(&mails);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = session(stream, tls.as_ref(), &sink);
            }
        });
        Self { port, mails, _thread: thread }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Messages accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn read_line(stream: &mut dyn Stream) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte)? == 0 {
            return Ok(if line.is_empty() { None } else { Some(String::from_utf8_lossy(&line).into_owned()) });
        }
        line.push(byte[0]);
        if byte[0] == b'\n' {
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

fn session(stream: TcpStream, tls: Option<&native_tls::TlsAcceptor>, sink: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut plain = Some(stream);
    let mut secure: Option<native_tls::TlsStream<TcpStream>> = None;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut greeted = false;
    loop {
        let s: &mut dyn Stream = match (&mut secure, &mut plain) {
            (Some(t), _) => t,
            (None, Some(p)) => p,
            (None, None) => return Ok(()),
        };
        if !greeted {
            s.write_all(b"220 localhost ESMTP test\r\n")?;
            greeted = true;
        }
        let Some(line) = read_line(s)? else { return Ok(()) };
        let upper = line.trim_end().to_ascii_uppercase();
        let encrypted = secure.is_some();
        let s: &mut dyn Stream = match (&mut secure, &mut plain) {
            (Some(t), _) => t,
            (None, Some(p)) => p,
            (None, None) => return Ok(()),
        };
        if upper.starts_with("EHLO") {
            if tls.is_some() && !encrypted {
                s.write_all(b"250-localhost\r\n250-STARTTLS\r\n250 8BITMIME\r\n")?;
            } else {
                s.write_all(b"250-localhost\r\n250 8BITMIME\r\n")?;
            }
        } else if upper == "STARTTLS" && tls.is_some() && !encrypted {
            s.write_all(b"220 Ready to start TLS\r\n")?;
            let (Some(acceptor), Some(tcp)) = (tls, plain.take()) else { return Ok(()) };
            secure = Some(acceptor.accept(tcp).map_err(std::io::Error::other)?);
        } else if upper.starts_with("MAIL FROM:") {
            if tls.is_some() && !encrypted {
                s.write_all(b"530 Must issue a STARTTLS command first\r\n")?;
                continue;
            }
            from = addr(&line);
            to.clear();
            s.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(addr(&line));
            s.write_all(b"250 OK\r\n")?;
        } else if upper == "DATA" {
            s.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = String::new();
            while let Some(l) = read_line(s)? {
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            sink.lock().unwrap().push(Mail { from: from.clone(), to: to.clone(), data, encrypted });
            s.write_all(b"250 OK queued\r\n")?;
        } else if upper == "QUIT" {
            s.write_all(b"221 Bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            s.write_all(b"250 OK\r\n")?;
        } else {
            s.write_all(b"502 Command not implemented\r\n")?;
        }
    }
}

fn addr(line: &str) -> String {
    line.split_once('<').and_then(|(_, r)| r.split_once('>')).map(|(a, _)| a.to_owned()).unwrap_or_default()
}
