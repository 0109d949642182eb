//! A real `redis-server` for one test.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{find_binary, free_port, missing, wait_until};

/// Overrides the `redis-server` binary.
pub const REDIS_SERVER_ENV: &str = "CACHE_TEST_REDIS_SERVER";

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: Option<u16>,
    password: Option<String>,
    /// The uid and gid it runs as, when not ours.
    owner: Option<(u32, u32)>,
}

impl RedisServer {
    /// Starts a server with no persistence. `None` (test skipped) when redis-server is missing.
    pub fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// Starts a server that also accepts TLS connections with `cert` on [`RedisServer::tls_url`].
    pub fn start_tls(cert: &crate::SelfSigned) -> Option<Self> {
        let tls_port = free_port();
        let extra = format!(
            "tls-port {tls_port}\ntls-cert-file {c}\ntls-key-file {k}\ntls-ca-cert-file {c}\ntls-auth-clients no\n",
            c = cert.cert().display(),
            k = cert.key().display()
        );
        let mut server = Self::start_with(&extra)?;
        server.tls_port = Some(tls_port);
        Some(server)
    }

    /// Starts a server with `extra` appended to its redis.conf (e.g. `requirepass x`).
    pub fn start_with(extra: &str) -> Option<Self> {
        Self::start_owned(extra, None)
    }

    /// Starts a server as a packaged one runs: as the `redis` user (the Debian package's) when
    /// the tests run as root, in a directory it owns (mode 0750), with `DEBUG` refused (Redis
    /// 7's default) unless `extra` allows it.
    pub fn start_as_service(extra: &str) -> Option<Self> {
        let owner = if rustix::process::geteuid().is_root() {
            Some(
                crate::system_user("redis")
                    .or_else(|| crate::system_user("postgres"))
                    .expect("tests run as root need a `redis` (or `postgres`) user to run redis-server as"),
            )
        } else {
            None
        };
        Self::start_owned(&format!("enable-debug-command no\n{extra}"), owner)
    }

    fn start_owned(extra: &str, owner: Option<(u32, u32)>) -> Option<Self> {
        let binary = match std::env::var_os(REDIS_SERVER_ENV) {
            Some(path) => PathBuf::from(path),
            None => match find_binary("redis-server", &[]) {
                Some(path) => path,
                None => {
                    missing("redis-server")?;
                    unreachable!()
                }
            },
        };
        let password = extra.lines().find_map(|l| l.trim().strip_prefix("requirepass ")).map(|p| p.trim().to_owned());
        for attempt in 1..=5 {
            let dir = tempfile::tempdir().unwrap();
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
                std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
            }
            let port = free_port();
            let conf = dir.path().join("redis.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nunixsocket {sock}\nunixsocketperm 700\nsave \"\"\nappendonly no\n\
                     dir {dir}\nlogfile {log}\ndaemonize no\n{debug}{extra}\n",
                    debug = if owner.is_some() { "" } else { "enable-debug-command yes\n" },
                    sock = dir.path().join("redis.sock").display(),
                    dir = dir.path().display(),
                    log = dir.path().join("redis.log").display(),
                ),
            )
            .unwrap();
            let child = Self::spawn(&binary, &conf, owner);
            let mut server = Self { child, dir, port, tls_port: None, password: password.clone(), owner };
            if wait_until(Duration::from_secs(10), || server.ping()) {
                return Some(server);
            }
            // Most likely the port was taken between choosing and binding it: try another.
            eprintln!("redis-server did not start (attempt {attempt}); log:\n{}", server.log());
        }
        panic!("redis-server would not start");
    }

    fn spawn(binary: &Path, conf: &Path, owner: Option<(u32, u32)>) -> Child {
        let mut command = Command::new(binary);
        command.arg(conf).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = owner {
            command.uid(uid).gid(gid);
        }
        command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()))
    }

    /// The uid and gid it runs as (`None`: as the tests).
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Starts it again as [`RedisServer::restart`] does, and says whether it came up, with its
    /// log (a server that cannot read its dump file exits at once).
    pub fn try_restart(&mut self) -> bool {
        self.stop();
        let binary = std::env::var_os(REDIS_SERVER_ENV)
            .map(PathBuf::from)
            .or_else(|| find_binary("redis-server", &[]))
            .expect("redis-server was found at start");
        self.child = Self::spawn(&binary, &self.dir.path().join("redis.conf"), self.owner);
        wait_until(Duration::from_secs(10), || self.ping())
    }

    fn ping(&mut self) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return false;
        }
        let Ok(client) = redis::Client::open(self.url()) else { return false };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else { return false };
        redis::cmd("PING").query::<String>(&mut conn).is_ok()
    }

    /// `redis://[:password@]127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// `rediss://127.0.0.1:TLS_PORT/0` (only for [`RedisServer::start_tls`]).
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port.expect("started with start_tls"))
    }

    /// `redis+unix:///path/redis.sock`.
    pub fn unix_url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// The Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// A synchronous connection for seeding and assertions.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// Starts the server again on the same port, directory and configuration. It is killed
    /// first ([`RedisServer::stop`]: SIGKILL, and the kit's servers have `save ""`), so nothing
    /// is saved on the way down: it starts from what is on disk, its dump file (or its AOF,
    /// with `appendonly yes` in the configuration), and a cluster node from its `nodes.conf`.
    pub fn restart(&mut self) {
        assert!(self.try_restart(), "redis-server did not restart:\n{}", self.log());
    }

    /// Every key, sorted (for assertions on small keyspaces).
    pub fn keys(&self) -> Vec<String> {
        let mut conn = self.connection();
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        keys.sort();
        keys
    }

    /// `DEBUG DIGEST`: one hash of the whole dataset, TTLs included.
    pub fn digest(&self) -> String {
        redis::cmd("DEBUG").arg("DIGEST").query(&mut self.connection()).unwrap()
    }

    /// Sets `key` to `value` with a TTL (0: none) and an idle time, through DUMP and RESTORE.
    pub fn set_aged(&self, key: &str, value: &[u8], ttl_ms: u64, idle_secs: u64) {
        let mut conn = self.connection();
        let _: () = redis::cmd("SET").arg(key).arg(value).query(&mut conn).unwrap();
        let dump: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut conn).unwrap();
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(ttl_ms)
            .arg(dump)
            .arg("REPLACE")
            .arg("IDLETIME")
            .arg(idle_secs)
            .query(&mut conn)
            .unwrap();
    }

    /// The server process's id (to freeze it with SIGSTOP, as a hung server would be).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server now (as a crash would: SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
