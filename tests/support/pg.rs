//! A real PostgreSQL server for one test.
//!
//! `initdb` runs once per PostgreSQL version into a template under the build directory (it is
//! the slow part); each server copies the template into its own temporary directory and starts
//! `postgres` on a Unix socket there, without TCP, with durability off. As root, everything
//! runs as the `postgres` user, since PostgreSQL refuses to run as root.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{find_binary, missing, wait_until};

/// Overrides the directory holding `initdb` and `postgres`.
pub const PG_BIN_ENV: &str = "CACHE_TEST_PG_BIN";

/// A running PostgreSQL, shut down on drop.
pub struct PgServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// How to start a server beyond the defaults (Unix socket only, no TLS).
#[derive(Default)]
pub struct PgOptions<'a> {
    /// Also listen on 127.0.0.1, with TLS using this certificate, and accept TCP clients only
    /// over TLS (`hostssl`), so a plaintext connection is refused.
    pub tls: Option<&'a crate::SelfSigned>,
    /// Run with PostgreSQL's default durability (fsync, synchronous commit, full-page writes)
    /// and shared buffers, as production does: benchmarks. Tests run without, for speed.
    pub durable: bool,
}

struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

fn binaries() -> Option<Binaries> {
    let extra_dir = std::env::var(PG_BIN_ENV).ok();
    let mut extra: Vec<&str> = extra_dir.iter().map(String::as_str).collect();
    extra.push("/usr/lib/postgresql/*/bin");
    let initdb = find_binary("initdb", &extra)?;
    // Use the server from the same installation as initdb.
    let postgres = initdb.with_file_name("postgres");
    postgres.is_file().then_some(Binaries { initdb, postgres })
}

/// uid and gid to run PostgreSQL as: the `postgres` user when we are root.
fn owner() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    Some(
        crate::system_user("postgres").expect(
            "tests run as root need a `postgres` user to run PostgreSQL (apt-get install postgresql creates it)",
        ),
    )
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The template data directory for this PostgreSQL version, made once.
fn template(bins: &Binaries, owner: Option<(u32, u32)>) -> PathBuf {
    let version = Command::new(&bins.postgres).arg("--version").output().unwrap();
    let version: String = String::from_utf8_lossy(&version.stdout)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    // Next to the test binaries: target/<profile>/pg-templates/.
    let exe = std::env::current_exe().unwrap();
    let base = exe.ancestors().nth(2).unwrap().join("pg-templates");
    fs::create_dir_all(&base).unwrap();
    chown(&base, owner);
    let template = base.join(version.trim_matches('-'));
    let lock = File::create(base.join(".lock")).unwrap();
    lock.lock().unwrap();
    // A template the server's user may not read (copied by root from another checkout, say)
    // is built again.
    let readable = owner.is_none_or(|(uid, _)| {
        fs::metadata(template.join("postgresql.conf")).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
    });
    if !template.join("PG_VERSION").is_file() || !readable {
        let building = base.join(format!("building-{}", std::process::id()));
        let _ = fs::remove_dir_all(&building);
        run(
            as_owner(
                Command::new(&bins.initdb)
                    .arg("-D")
                    .arg(&building)
                    .args(["-U", "postgres", "-A", "trust", "-N", "-E", "UTF8", "--locale=C"])
                    .stdin(Stdio::null()),
                owner,
            ),
            "initdb",
        );
        let _ = fs::remove_dir_all(&template);
        fs::rename(&building, &template).unwrap();
    }
    template
}

impl PgServer {
    /// Starts a server. `None` (test skipped) when PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(PgOptions::default())
    }

    /// Starts a server with `options`.
    pub fn start_with(options: PgOptions<'_>) -> Option<Self> {
        let Some(bins) = binaries() else {
            missing("PostgreSQL (initdb, postgres)")?;
            unreachable!()
        };
        let owner = owner();
        let template = template(&bins, owner);
        let dir = tempfile::tempdir().unwrap();
        chown(dir.path(), owner);
        let data = dir.path().join("data");
        run(Command::new("cp").arg("-a").arg(&template).arg(&data), "copying the template data directory");
        let port = crate::free_port();
        let mut settings = vec!["listen_addresses=".to_owned()];
        if let Some(cert) = options.tls {
            // The server insists that its key is private to it.
            for (from, to) in [(cert.cert(), "server.crt"), (cert.key(), "server.key")] {
                let dest = data.join(to);
                fs::copy(from, &dest).unwrap();
                fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
                chown(&dest, owner);
            }
            fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n").unwrap();
            settings = vec!["listen_addresses=127.0.0.1".into(), "ssl=on".into()];
        }
        let log = File::create(dir.path().join("postgres.log")).unwrap();
        let child = as_owner(
            Command::new(&bins.postgres)
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-p", &port.to_string()])
                .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
                .args(if options.durable {
                    ["-c", "shared_buffers=128MB", "-c", "max_connections=40"].as_slice()
                } else {
                    [
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=40",
                        "-c",
                        "shared_buffers=16MB",
                    ]
                    .as_slice()
                })
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
            owner,
        )
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bins.postgres.display()));
        let mut server = Self { child, dir, port };
        let ready = wait_until(Duration::from_secs(30), || {
            server.log().contains("database system is ready to accept connections")
                || matches!(server.child.try_wait(), Ok(Some(_)))
        });
        assert!(
            ready && matches!(server.child.try_wait(), Ok(None)),
            "PostgreSQL did not start; log:\n{}",
            server.log()
        );
        Some(server)
    }

    /// URL of database `db` as the superuser `postgres`, over the Unix socket only (the
    /// socket directory is the percent-encoded host).
    pub fn url(&self, db: &str) -> String {
        let dir: String = url::form_urlencoded::byte_serialize(self.dir.path().to_string_lossy().as_bytes()).collect();
        format!("postgres://postgres@{dir}:{}/{db}", self.port)
    }

    /// URL of database `db` over TCP on 127.0.0.1 (only with [`PgOptions::tls`]).
    pub fn tcp_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The postmaster's process id (to freeze it with SIGSTOP, as a hung server would be).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port (which also names the Unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Connects to `db`, retrying for a few seconds while the server warms up.
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        let mut last = None;
        for _ in 0..50 {
            match tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    return client;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("connecting to PostgreSQL: {last:?}\nlog:\n{}", self.log());
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let admin = self.client("postgres").await;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
        self.url(name)
    }

    /// Shuts the server down (fast shutdown, then SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            }
            if !wait_until(Duration::from_secs(10), || matches!(self.child.try_wait(), Ok(Some(_)))) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
