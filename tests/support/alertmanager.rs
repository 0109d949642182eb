//! A real Prometheus Alertmanager (Debian `prometheus-alertmanager`) on a free loopback port,
//! in a temporary directory, clustering off, routing everything to a receiver that sends
//! nothing; and `amtool` pointed at it. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{find_binary, free_port, missing, wait_until};

/// A running Alertmanager, killed on drop.
pub struct Alertmanager {
    child: Child,
    port: u16,
    amtool: Option<PathBuf>,
    dir: tempfile::TempDir,
}

const CONFIG: &str = "route:\n  receiver: \"null\"\n  group_wait: 1s\nreceivers:\n  - name: \"null\"\n";

impl Alertmanager {
    /// Starts one. `None` (test skipped) when the binary is missing, a failure under `CI`.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_binary("prometheus-alertmanager", &[]).or_else(|| find_binary("alertmanager", &[])) else {
            missing("prometheus-alertmanager (Debian package prometheus-alertmanager)")?;
            unreachable!()
        };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let am = Self { child, port, amtool: find_binary("amtool", &[]), dir };
        let ready = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && am.get("/-/ready").is_some_and(|(s, _)| s == 200)
        });
        assert!(ready, "alertmanager did not start:\n{}", am.log());
        Some(am)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// The alerts `GET /api/v2/alerts` lists (active, silenced and inhibited; not resolved).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = self.get("/api/v2/alerts").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap().as_array().unwrap().clone()
    }

    /// Runs `amtool ARGS --alertmanager.url=URL`: its stdout. Panics when amtool is missing or
    /// fails.
    pub fn amtool(&self, args: &[&str]) -> String {
        let amtool = self.amtool.as_ref().expect("amtool (Debian package prometheus-alertmanager) is missing");
        let out = Command::new(amtool).args(args).arg(format!("--alertmanager.url={}", self.url())).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "amtool {args:?} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    /// A GET on its API: status and body; `None` when it does not answer.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        Some((status, if chunked { dechunk(body) } else { body.to_owned() }))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
