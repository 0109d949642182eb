//! A throwaway self-signed certificate for `localhost` and `127.0.0.1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{find_binary, missing};

/// A certificate and its key, in a temporary directory.
pub struct SelfSigned {
    dir: tempfile::TempDir,
}

impl SelfSigned {
    /// Generates one with the `openssl` command. `None` (test skipped) when it is missing.
    pub fn generate() -> Option<Self> {
        let Some(openssl) = find_binary("openssl", &[]) else {
            missing("openssl")?;
            unreachable!()
        };
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(openssl)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
        Some(Self { dir })
    }

    /// The certificate (PEM); it is its own CA.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The private key (PEM).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The directory holding both.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
