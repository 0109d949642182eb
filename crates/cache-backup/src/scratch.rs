//! A scratch `redis-server` that loads a backup's RDB, to prove it loads before anything
//! touches the target (seed 002 does this in a container), and to read its keys back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running scratch server; killed on drop.
pub struct Scratch {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

fn redis_server() -> Option<PathBuf> {
    cache_core::system::which("redis-server")
}

impl Scratch {
    /// Decompresses `rdb_gz` and starts a server on it, on a free loopback port, without
    /// persistence; fails with the server's own words when the RDB does not load.
    pub async fn load(rdb_gz: &Path, timeout: Duration) -> anyhow::Result<Self> {
        Self::start(Some(rdb_gz), timeout, false).await
    }

    /// As [`Scratch::load`], but keeping the keys whose expiry time has passed: the server
    /// starts as a replica (of a closed port, so it never syncs), and a replica loads every key
    /// of an RDB and expires none, so `DBSIZE` counts every key the RDB holds. Reads of an
    /// expired key still answer as if it were gone. For a drill's key count.
    pub async fn load_keeping_expired(rdb_gz: &Path, timeout: Duration) -> anyhow::Result<Self> {
        Self::start(Some(rdb_gz), timeout, true).await
    }

    /// Starts an empty server, as [`Scratch::load`] does (for a logical export to be restored
    /// into).
    pub async fn empty(timeout: Duration) -> anyhow::Result<Self> {
        Self::start(None, timeout, false).await
    }

    async fn start(rdb_gz: Option<&Path>, timeout: Duration, as_replica: bool) -> anyhow::Result<Self> {
        let binary = redis_server()
            .context("redis-server is needed to prove the RDB loads: install it (Debian: redis-server)")?;
        let dir = tempfile::tempdir()?;
        let rdb = dir.path().join("dump.rdb");
        if let Some(rdb_gz) = rdb_gz {
            let opened = std::fs::File::open(rdb_gz).with_context(|| format!("opening `{}`", rdb_gz.display()))?;
            let mut input = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(opened));
            let mut output = std::fs::File::create(&rdb)?;
            std::io::copy(&mut input, &mut output).with_context(|| format!("decompressing `{}`", rdb_gz.display()))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = dir.path().join("scratch.log");
        let mut command = tokio::process::Command::new(&binary);
        if as_replica {
            // Port 1 on loopback: nothing listens there, so the replica never replaces its data.
            command.args(["--replicaof", "127.0.0.1", "1"]);
        }
        let child = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--dbfilename", "dump.rdb", "--logfile"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut scratch = Self { child, dir, port };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = scratch.child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                bail!("the RDB does not load ({status}): {}", tail.into_iter().rev().collect::<Vec<_>>().join(" / "));
            }
            if scratch.ready().await {
                return Ok(scratch);
            }
            if Instant::now() > deadline {
                bail!("the scratch server did not finish loading within {}", humantime::format_duration(timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else { return false };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return false };
        // While loading, the server answers -LOADING.
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }

    /// The scratch server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its directory (for logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
