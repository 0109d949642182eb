//! A real S3-compatible server: moto's server mode (`moto_server`, from PyPI `moto[server]`),
//! on a free loopback port, with a bucket made for the test. Killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{find_binary, free_port, missing, wait_until};

/// A running `moto_server` and the bucket the test uses.
pub struct S3Server {
    child: Child,
    port: u16,
    bucket: String,
}

impl S3Server {
    /// Starts the server and creates `bucket`. `None` (test skipped) when moto is missing.
    pub fn start(bucket: &str) -> Option<Self> {
        let Some(binary) = find_binary("moto_server", &[]) else {
            missing("moto_server (pip install 'moto[server]')")?;
            unreachable!()
        };
        let port = free_port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, port, bucket: bucket.to_owned() };
        let up = wait_until(Duration::from_secs(30), || server.request("GET", "/").is_some_and(|s| s == 200));
        assert!(up, "moto_server did not start on port {port}");
        assert_eq!(server.request("PUT", &format!("/{bucket}")), Some(200), "creating bucket {bucket}");
        Some(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// An unsigned request (moto accepts them), returning the status.
    pub fn request(&self, method: &str, path: &str) -> Option<u16> {
        self.request_with_body(method, path, &[]).map(|(status, _)| status)
    }

    /// An unsigned request with `body`, returning the status and the answer.
    pub fn request_with_body(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).ok()?;
        let text = String::from_utf8_lossy(&answer);
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body =
            answer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| answer[i + 4..].to_vec()).unwrap_or_default();
        Some((status, body))
    }

    /// Writes `body` at `key` of the bucket, signed as an S3 client signs (with boto3, which
    /// moto brings): an unsigned overwrite of an object uploaded signed is refused.
    pub fn put_object(&self, key: &str, body: &[u8]) {
        let script = "import boto3, sys\n\
            c = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='AKIATEST', \
            aws_secret_access_key='test', region_name='us-east-1')\n\
            c.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=sys.stdin.buffer.read())\n";
        let mut child = Command::new("python3")
            .args(["-c", script, &self.endpoint(), &self.bucket, key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), body).unwrap();
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "boto3 put_object {key}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The keys of the bucket (ListObjectsV2, read from its XML).
    pub fn keys(&self) -> Vec<String> {
        let (_, body) = self.request_with_body("GET", &format!("/{}?list-type=2", self.bucket), &[]).unwrap();
        let text = String::from_utf8_lossy(&body);
        let mut keys: Vec<String> =
            text.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_owned).collect();
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
