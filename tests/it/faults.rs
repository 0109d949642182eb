//! The fault suite: tools killed at random points, corrupt state, full disks, hostile
//! configurations and environments, concurrent runs, and dependencies that are down, refuse,
//! hang or fail, with the invariants that must hold after each (state parses, protected keys
//! survive, nothing partial looks complete, the next run completes and leaves no leftovers, a
//! corrupt or good file is never replaced by a torn one, every wait is bounded, no secret leaks).
//!
//! Every test counts its checks (one asserted property of one run) and prints one line,
//! `faults: <group>: <checks> checks, <passed> passed`, which `cargo xtask faults` gathers into
//! a table. Every run does a quick subset (a few kills per scenario); `cargo xtask faults` runs
//! the same tests with `FAULT_KILLS` kills each (and `FAULT_SEED` to replay a sequence).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cache_core::exit::{Kind, TOOLS};
use cache_tests::{Blackhole, Mem0Server, RedisServer, TestEnv};

use crate::{ANALYTICS, BACKUP, CLEANUP, DEBUG, HEALTH, OPTIMIZER, SCHEDULER};

/// Kills per scenario: `FAULT_KILLS`, else 4.
#[allow(clippy::disallowed_methods, reason = "a test variable, not one of the toolkit's `EnvVars`")]
fn kills() -> u64 {
    std::env::var_os("FAULT_KILLS").and_then(|v| v.to_str()?.parse().ok()).unwrap_or(4)
}

/// Whether `CI` is set: a fault that cannot be set up (no tmpfs) then fails instead of skipping.
#[allow(clippy::disallowed_methods, reason = "a test variable, not one of the toolkit's `EnvVars`")]
fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A small deterministic generator (`FAULT_SEED`, else a fixed seed), so a failing sequence
/// can be replayed.
struct Lcg(u64);

impl Lcg {
    #[allow(clippy::disallowed_methods, reason = "a test variable, not one of the toolkit's `EnvVars`")]
    fn new() -> Self {
        let seed = std::env::var_os("FAULT_SEED").and_then(|v| v.to_str()?.parse().ok()).unwrap_or(0x5eed);
        eprintln!("faults: FAULT_SEED={seed}");
        Self(seed)
    }

    /// A delay in `[lo, hi)` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        Duration::from_millis(lo + (self.0 >> 33) % (hi - lo))
    }
}

/// The checks of one scenario group. A check is one asserted property of one run; a failed one
/// is kept (with what it saw) and the test goes on, so the summary line counts every check, and
/// the test fails at [`Checks::finish`]. A test that panics on the way still prints its line,
/// the panic counted as one failed check.
struct Checks {
    group: &'static str,
    checks: u64,
    failures: Vec<String>,
    finished: bool,
}

impl Checks {
    fn new(group: &'static str) -> Self {
        Self { group, checks: 0, failures: Vec::new(), finished: false }
    }

    /// One check: `ok`, else `what` describes the failure.
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        self.checks += 1;
        if !ok {
            let what = what();
            eprintln!("faults: {}: FAILED: {}", self.group, first_lines(&what, 3));
            self.failures.push(what);
        }
        ok
    }

    /// One check of a result: `Ok`, else the error, after `context`.
    fn ok<T>(&mut self, result: Result<T, String>, context: &str) -> Option<T> {
        match result {
            Ok(v) => {
                self.check(true, String::new);
                Some(v)
            }
            Err(e) => {
                self.check(false, || format!("{context}: {e}"));
                None
            }
        }
    }

    fn line(&self, extra_failed: u64) -> String {
        let checks = self.checks + extra_failed;
        let passed = self.checks - self.failures.len() as u64;
        format!("faults: {}: {checks} checks, {passed} passed", self.group)
    }

    /// Prints the summary line and fails the test if any check failed.
    fn finish(mut self) {
        self.finished = true;
        eprintln!("{}", self.line(0));
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} checks failed:\n{}",
            self.group,
            self.failures.len(),
            self.checks,
            self.failures.join("\n----\n")
        );
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        if !self.finished {
            eprintln!("{}", self.line(u64::from(std::thread::panicking())));
        }
    }
}

/// The first `n` lines of `text`.
fn first_lines(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join(" | ")
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The lines of a JSON Lines history that do not parse, by number; a last line without its
/// newline (a torn append, which the next append cuts) is allowed when `torn_tail_ok`.
fn bad_lines(text: &str, torn_tail_ok: bool) -> Vec<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let torn_tail = i == lines.len() - 1 && !line.ends_with('\n');
        if torn_tail && !torn_tail_ok {
            bad.push(format!("line {} is torn: {:?}", i + 1, first_lines(line, 1)));
        } else if serde_json::from_str::<serde_json::Value>(line.trim()).is_err() && !torn_tail {
            bad.push(format!("line {}: {:?}", i + 1, line.chars().take(200).collect::<String>()));
        }
    }
    bad
}

/// The state directory's invariants after a fault: every JSON document parses, and every line
/// of every history parses except at most a torn last one (which the next append cuts).
fn state_parses(state: &Path) -> Result<usize, String> {
    state_check(state, true)
}

/// [`state_parses`] with no torn line allowed either: after a run completed, histories healed.
fn state_whole(state: &Path) -> Result<usize, String> {
    state_check(state, false)
}

fn state_check(state: &Path, torn_tail_ok: bool) -> Result<usize, String> {
    let mut checked = 0;
    for path in files(state) {
        // Judged by the path inside `state`: the temporary directory's own name has `.tmp` in it.
        let name = path.strip_prefix(state).unwrap_or(&path).to_string_lossy().into_owned();
        if name.contains(".tmp") || name.ends_with(".lock") || name.contains(".partial-") {
            continue;
        }
        if name.ends_with(".jsonl") {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
            if let Some(bad) = bad_lines(&text, torn_tail_ok).first() {
                return Err(format!("{name} {bad}"));
            }
        } else if name.ends_with(".json") {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| format!("{name}: {e}"))?;
        } else {
            continue;
        }
        checked += 1;
    }
    Ok(checked)
}

/// Temporary files a finished run must not leave behind (by their names: the temporary
/// directory's own name has `.tmp` in it), left since `since` (those older are a killed run's,
/// which [`a_temporary_file_left_by_a_killed_write_is_removed_by_the_next_run`] is about).
fn leftovers(dir: &Path, since: std::time::SystemTime) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".tmp")))
        .filter(|p| std::fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|m| m >= since))
        .collect()
}

/// Runs `args` and SIGKILLs it after `after`; whether it was still running (a kill that came
/// after the end proves nothing).
fn kill_after(env: &TestEnv, tool: &str, args: &[&str], after: Duration) -> bool {
    let mut child = env.command(tool, args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    running
}

/// What a run bounded by a deadline did.
struct Ran {
    argv: String,
    /// The exit code; -1 when a signal ended it.
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// It was still running at the deadline, and was killed.
    hung: bool,
    pid: u32,
}

impl Ran {
    fn said(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn dump(&self) -> String {
        let clip = |s: &str| s.chars().take(3000).collect::<String>();
        format!(
            "command: {}\nexit: {}{} in {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.argv,
            self.code,
            if self.hung { " (killed at the deadline)" } else { "" },
            self.elapsed,
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }

    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.stdout).ok()
    }

    /// Ended by itself, without a panic (Rust's code 101, or "panicked" on stderr).
    fn clean_end(&self) -> bool {
        !self.hung && self.code != 101 && self.code >= 0 && !self.stderr.contains("panicked")
    }
}

/// Runs `command` to its end or to `limit` (then SIGKILLs it), capturing its output.
fn run_for(mut command: Command, limit: Duration) -> Ran {
    let argv = format!("{command:?}");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().unwrap_or_else(|e| panic!("running {argv}: {e}"));
    let pid = child.id();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut hung = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            hung = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    Ran {
        argv,
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        elapsed,
        hung,
        pid,
    }
}

/// Runs `bin args` in `env` (with its `--state-dir` and `--config`) within `limit`.
fn run_in(env: &TestEnv, bin: &str, args: &[&str], limit: Duration) -> Ran {
    run_for(env.command(bin, args), limit)
}

/// The code `tool` (`cache-health`, ...) documents for an error of `kind`.
fn code_for(tool: &str, kind: Kind) -> i32 {
    let codes = TOOLS.iter().find(|t| t.tool == tool).unwrap_or_else(|| panic!("{tool} is not in exit::TOOLS"));
    i32::from(codes.convention.code(Some(kind)))
}

/// Whether `code` is one `tool` documents.
fn documented(tool: &str, code: i32) -> bool {
    TOOLS.iter().find(|t| t.tool == tool).is_some_and(|t| t.codes.iter().any(|(c, _)| i32::from(*c) == code))
}

/// Sends `signal` (`STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    assert!(
        std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success()
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (`size=2m`, `ro,size=1m`) on `dir` (created). `None`, with a
    /// note, when this is not root or mounting fails; under `CI` as root a failure panics.
    fn mount(dir: &Path, options: &str) -> Option<Self> {
        let root = rustix::process::geteuid().is_root();
        if !root {
            eprintln!("note: skipping: mounting a tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir).output();
        match out {
            Ok(out) if out.status.success() => Some(Self { dir: dir.to_path_buf() }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(!in_ci(), "mounting a tmpfs on {} failed, and CI is set: {why}", dir.display());
                eprintln!("note: skipping: mounting a tmpfs on {} failed: {why}", dir.display());
                None
            }
        }
    }

    /// Bytes free on it.
    fn free(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.dir).unwrap();
        st.f_bavail * st.f_frsize
    }

    /// Fills it with a file `filler` until `leave` bytes (rounded to pages) are free.
    fn fill(&self, leave: u64) {
        let filler = self.dir.join("filler");
        let _ = std::fs::remove_file(&filler);
        let mut want = self.free().saturating_sub(leave);
        let mut file = std::fs::File::create(&filler).unwrap_or_else(|e| panic!("creating {}: {e}", filler.display()));
        let chunk = vec![0u8; 64 << 10];
        while want > 0 {
            let n = want.min(chunk.len() as u64) as usize;
            if file.write_all(&chunk[..n]).is_err() {
                break;
            }
            want -= n as u64;
        }
    }

    /// Frees what [`Tmpfs::fill`] took.
    fn unfill(&self) {
        let _ = std::fs::remove_file(self.dir.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// An HTTP server answering every request with `status` (a memory API failing on its side).
struct FailingHttp {
    addr: std::net::SocketAddr,
}

impl FailingHttp {
    fn new(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(mut writer) = stream.try_clone() else { return };
                    let mut reader = BufReader::new(stream);
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    let reply = "{\"detail\":\"the stand-in fails on purpose\"}";
                    let _ = writer.write_all(
                        format!(
                            "HTTP/1.1 {status} Failing\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{reply}",
                            reply.len()
                        )
                        .as_bytes(),
                    );
                });
            }
        });
        Self { addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

// ---------------------------------------------------------------------------------------------
// Kills at random points.

#[test]
fn a_cleanup_killed_at_random_points_keeps_every_invariant_and_the_next_run_completes() {
    let Some(redis) = RedisServer::start() else { return };
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.cmd("SET").arg(format!("app:search:{i}")).arg("v").ignore();
        if i % 4 == 0 {
            pipe.cmd("SET").arg(format!("app:session:{i}")).arg("v").ignore();
        }
    }
    pipe.query::<()>(&mut redis.connection()).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\nnamespace = \"app:\"\n\
         prefixes = [{{ prefix = \"app:search:\", ttl = \"30m\" }}, {{ prefix = \"app:session:\" }}]\n\
         protected = [\"app:session:*\"]\n[cleanup]\nbatch_size = 50\n",
        redis.url()
    ));
    let sessions = || -> usize {
        redis::cmd("KEYS").arg("app:session:*").query::<Vec<String>>(&mut redis.connection()).unwrap().len()
    };
    let mut c = Checks::new("cleanup killed");
    let mut rng = Lcg::new();
    let mut kills_done = 0;
    for _ in 0..kills() {
        kills_done += u64::from(kill_after(&env, CLEANUP, &["light", "--yes"], rng.millis(20, 400)));
        let left = sessions();
        c.check(left == 5000, || format!("a protected key was lost to a kill: {left} of 5000 left"));
        c.ok(state_parses(&env.state_dir()), "state after a kill");
    }
    c.check(kills_done > 0, || "no kill came while the cleanup ran".into());
    let since = std::time::SystemTime::now();
    let out = run_in(&env, CLEANUP, &["light", "--yes", "--format", "json"], Duration::from_secs(120));
    c.check(out.code == 0, || out.dump());
    c.check(sessions() == 5000, || "a protected key was lost to the completing run".into());
    c.ok(state_whole(&env.state_dir()), "state after the completing run");
    let without_ttl: i64 = redis::Script::new(
        "local n = 0 for _, k in ipairs(redis.call('KEYS', 'app:search:*')) do \
         if redis.call('PTTL', k) == -1 then n = n + 1 end end return n",
    )
    .invoke(&mut redis.connection())
    .unwrap();
    c.check(without_ttl == 0, || format!("the run after the kills did not finish the work: {without_ttl} keys left"));
    let left = leftovers(&env.state_dir(), since);
    c.check(left.is_empty(), || format!("left over: {left:?}"));
    eprintln!("faults: cleanup: {kills_done} of {} kills came mid-run", kills());
    c.finish();
}

#[test]
fn a_temporary_file_left_by_a_killed_write_is_removed_by_the_next_run() {
    let env = TestEnv::new();
    let mut c = Checks::new("stale temporary files");
    let first = env.run(CLEANUP, &["light", "--yes"]);
    c.check(first.code() == 0, || first.dump());
    // What a kill between the temporary file's write and its rename leaves, a day ago.
    let stale = env.state_dir().join("jobs/.tmp-K1lled");
    std::fs::write(&stale, "{\"schema_version\": 1, \"job\": \"clea").unwrap();
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(24 * 3600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(day_ago).unwrap();
    for (bin, args) in [(CLEANUP, &["light", "--yes"][..]), (ANALYTICS, &["collect"][..])] {
        let out = env.run(bin, args);
        c.check(out.code() == 0, || out.dump());
    }
    c.check(!stale.exists(), || format!("{} is still there after two runs", stale.display()));
    c.finish();
}

#[test]
fn a_backup_killed_at_random_points_never_looks_complete_and_the_next_one_is() {
    let Some(redis) = RedisServer::start() else { return };
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(200_000).arg("key").arg(100).query(&mut redis.connection()).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nlevel = 9\nthreads = 1\nredis_method = \"logical\"\n",
        redis.url()
    ));
    let mut c = Checks::new("backup killed");
    // One complete backup first, so that the list the kills must not add to is not empty.
    let first = run_in(&env, BACKUP, &["create"], Duration::from_secs(120));
    c.check(first.code == 0, || first.dump());
    let mut rng = Lcg::new();
    let mut interrupted = 0;
    for _ in 0..kills() {
        interrupted += u64::from(kill_after(&env, BACKUP, &["create"], rng.millis(50, 1500)));
        let list = env.run(BACKUP, &["list", "--format", "json"]).json();
        let listed = list["backups"].as_array().map_or(0, Vec::len);
        c.check(listed == 1, || format!("{listed} backups listed after a kill, want the complete one only"));
        for b in list["backups"].as_array().into_iter().flatten() {
            // Whatever is listed as a backup verifies: a killed one is never among them.
            let id = b["id"].as_str().unwrap();
            let verify = env.run(BACKUP, &["verify", id]);
            c.check(verify.code() == 0, || format!("listed backup {id} does not verify\n{}", verify.dump()));
        }
        c.ok(state_parses(&env.state_dir()), "state after a kill");
    }
    c.check(interrupted > 0, || "no kill came while the backup ran".into());
    let since = std::time::SystemTime::now();
    let out = run_in(&env, BACKUP, &["create", "--format", "json"], Duration::from_secs(120));
    c.check(out.code == 0, || out.dump());
    let left = leftovers(&env.state_dir(), since);
    c.check(left.is_empty(), || format!("the completing backup left {left:?}"));
    let verify = env.run(BACKUP, &["verify"]);
    c.check(verify.code() == 0, || verify.dump());
    eprintln!("faults: backup: {interrupted} of {} kills came mid-run", kills());
    c.finish();
}

/// Per-key counts of [`a_restore_killed_at_random_points_leaves_whole_keys_and_the_next_one_completes`]:
/// `h:<i>` hashes of 20 fields, `s:<i>` sets of 10 members, `k:<i>` strings of 100 bytes in the
/// backup; before the restore the target "had" 3 fields, 2 members and 3 bytes for even `i`, and
/// nothing for odd `i`. The script returns the keys restored, the keys neither whole nor as the
/// target had them, the first such key, and DBSIZE.
const WHOLE_OR_HAD: &str = r"
local n = tonumber(ARGV[1])
local restored, bad, first = 0, 0, ''
local function judge(key, got, whole, had)
  if got == whole then restored = restored + 1
  elseif got ~= had then
    bad = bad + 1
    if first == '' then first = key .. ' has ' .. got .. ' (whole: ' .. whole .. ', had: ' .. had .. ')' end
  end
end
for i = 0, n - 1 do
  local even = (i % 2 == 0)
  judge('h:' .. i, redis.call('HLEN', 'h:' .. i), 20, even and 3 or 0)
  judge('s:' .. i, redis.call('SCARD', 's:' .. i), 10, even and 2 or 0)
  judge('k:' .. i, redis.call('STRLEN', 'k:' .. i), 100, even and 3 or 0)
end
return {restored, bad, first, redis.call('DBSIZE')}
";

/// What the target "had" before each restore (see [`WHOLE_OR_HAD`]).
const HAD: &str = r"
redis.call('FLUSHALL')
for i = 0, tonumber(ARGV[1]) - 1, 2 do
  redis.call('HSET', 'h:' .. i, 'a', '1', 'b', '2', 'c', '3')
  redis.call('SADD', 's:' .. i, 'x', 'y')
  redis.call('SET', 'k:' .. i, 'old')
end
return 1
";

#[test]
fn a_restore_killed_at_random_points_leaves_whole_keys_and_the_next_one_completes() {
    let Some(redis) = RedisServer::start() else { return };
    let n: usize = 10_000;
    let mut conn = redis.connection();
    for start in (0..n).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..start + 1000 {
            let fields: Vec<(String, String)> = (0..20).map(|f| (format!("f{f}"), format!("value {f}"))).collect();
            pipe.cmd("HSET").arg(format!("h:{i}")).arg(fields).ignore();
            let members: Vec<String> = (0..10).map(|m| format!("m{m}")).collect();
            pipe.cmd("SADD").arg(format!("s:{i}")).arg(members).ignore();
            pipe.cmd("SET").arg(format!("k:{i}")).arg("x".repeat(100)).ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
    let original = redis.digest();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nlevel = 1\nthreads = 1\nredis_method = \"logical\"\n",
        redis.url()
    ));
    let mut c = Checks::new("restore killed");
    let created = env.run(BACKUP, &["create"]);
    c.check(created.code() == 0, || created.dump());
    let restores = env.state_dir().join("backup/restores.jsonl");
    let had = redis::Script::new(HAD);
    let judge = redis::Script::new(WHOLE_OR_HAD);
    // One whole restore first: it works, and its time bounds the kill points.
    let _: i64 = had.arg(n).invoke(&mut conn).unwrap();
    let whole = run_in(&env, BACKUP, &["restore", "--yes"], Duration::from_secs(120));
    c.check(whole.code == 0, || whole.dump());
    let took = u64::try_from(whole.elapsed.as_millis()).unwrap_or(u64::MAX).clamp(100, 10_000);
    let mut rng = Lcg::new();
    let (mut interrupted, mut mid_keys) = (0, 0);
    for _ in 0..kills() {
        let _: i64 = had.arg(n).invoke(&mut conn).unwrap();
        interrupted += u64::from(kill_after(&env, BACKUP, &["restore", "--yes"], rng.millis(10, took)));
        let (restored, bad, first, dbsize): (i64, i64, String, i64) = judge.arg(n).invoke(&mut conn).unwrap();
        // Every key is whole from the backup or as the target had it; no partial hash or set.
        c.check(bad == 0, || format!("{bad} keys are neither restored whole nor as they were, e.g. {first}"));
        c.check(dbsize <= 3 * n as i64, || format!("{dbsize} keys after the kill, more than the backup holds"));
        mid_keys += u64::from(restored > n as i64 / 2 && restored < 3 * n as i64);
        c.ok(state_parses(&env.state_dir()), "state after a kill");
        let text = std::fs::read_to_string(&restores).unwrap_or_default();
        let torn = bad_lines(&text, true);
        c.check(torn.is_empty(), || format!("backup/restores.jsonl torn beyond its last line: {torn:?}"));
    }
    c.check(interrupted > 0, || "no kill came while the restore ran".into());
    let since = std::time::SystemTime::now();
    let out = run_in(&env, BACKUP, &["restore", "--yes", "--format", "json"], Duration::from_secs(120));
    c.check(out.code == 0, || out.dump());
    let left = leftovers(&env.state_dir(), since);
    c.check(left.is_empty(), || format!("the completing restore left {left:?}"));
    let report = out.json().unwrap_or_default();
    let said = report["restored"].to_string();
    c.check(said.contains(&format!("{} keys restored", 3 * n)), || format!("the restore did not say so: {said}"));
    c.check(report["skipped"].as_array().is_some_and(Vec::is_empty), || format!("skipped: {}", report["skipped"]));
    c.check(redis.digest() == original, || "the dataset after the completing restore is not the backup's".into());
    let text = std::fs::read_to_string(&restores).unwrap_or_default();
    let last = text.lines().last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    c.check(bad_lines(&text, false).is_empty() && last.is_some_and(|l| l["restored"] == report["restored"]), || {
        format!("backup/restores.jsonl does not end with the completed restore, whole:\n{text}")
    });
    c.ok(state_whole(&env.state_dir()), "state after the completing restore");
    eprintln!(
        "faults: restore: {interrupted} of {} kills came mid-run, {mid_keys} with part of the keys restored",
        kills()
    );
    c.finish();
}

/// Every line of the logs in `dir` (`app.log`, `app.log.1`, `app.log.N.gz` decompressed): how
/// often each numbered line of `rounds` x `per_round` is there, and the files read.
fn log_line_counts(dir: &Path, rounds: usize, per_round: usize) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut counts = vec![0u8; rounds * per_round];
    let mut read = Vec::new();
    for path in files(dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let rotation = name.strip_prefix("app.log.").and_then(|n| n.strip_suffix(".gz")).map(str::parse::<u32>);
        let text = if name == "app.log" || name == "app.log.1" {
            std::fs::read(&path).map_err(|e| format!("{name}: {e}"))?
        } else if let Some(Ok(_)) = rotation {
            let out = Command::new("gzip").arg("-dc").arg(&path).output().map_err(|e| format!("gzip: {e}"))?;
            if !out.status.success() {
                return Err(format!("{name} does not decompress: {}", String::from_utf8_lossy(&out.stderr)));
            }
            out.stdout
        } else {
            continue; // A `.gz.tmp` is a compression in progress; its log is still there.
        };
        read.push(name.clone());
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = String::from_utf8_lossy(line);
            let mut words = line.split_whitespace();
            let parsed = (words.next(), words.next(), words.next(), words.next());
            let (Some("round"), Some(r), Some("line"), Some(i)) = parsed else {
                return Err(format!("{name}: a line that was never written: {line:?}"));
            };
            let (r, i): (usize, usize) =
                (r.parse().map_err(|_| line.to_string())?, i.parse().map_err(|_| line.to_string())?);
            let slot = counts.get_mut(r * per_round + i).ok_or_else(|| format!("{name}: {line:?}"))?;
            *slot = slot.saturating_add(1);
        }
    }
    Ok((counts, read))
}

#[test]
fn a_rotation_killed_at_random_points_loses_no_line_and_the_next_run_completes() {
    let env = TestEnv::new();
    let dir = env.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    // Big enough that compressing it at level 9 takes a while.
    let per_round = 100_000;
    let rounds = kills() as usize;
    env.write_config(&format!(
        "[[logs]]\nname = \"app\"\npath = \"{}\"\nrotate_size = \"1 MiB\"\nkeep = {}\nmax_age = \"3650days\"\n\
         compress_level = 9\n",
        dir.display(),
        rounds + 10
    ));
    let mut c = Checks::new("rotation killed");
    let mut rng = Lcg::new();
    let mut interrupted = 0;
    for round in 0..rounds {
        // The application writes; a rotation is killed; the next run must finish it.
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("app.log")).unwrap();
        let mut text = String::with_capacity(per_round * 64);
        for i in 0..per_round {
            text.push_str(&format!("round {round} line {i} of the application log, with some words to compress\n"));
        }
        log.write_all(text.as_bytes()).unwrap();
        drop(log);
        let written = (round + 1) * per_round;
        interrupted += u64::from(kill_after(&env, CLEANUP, &["logs", "--yes"], rng.millis(10, 1500)));
        match log_line_counts(&dir, rounds, per_round) {
            Ok((counts, read)) => {
                let lost = counts[..written].iter().filter(|n| **n == 0).count();
                c.check(lost == 0, || format!("round {round}: {lost} lines lost to the kill (read {read:?})"));
            }
            Err(e) => {
                c.check(false, || format!("round {round}: after the kill: {e}"));
            }
        }
        c.ok(state_parses(&env.state_dir()), "state after a kill");
        let since = std::time::SystemTime::now();
        let out = run_in(&env, CLEANUP, &["logs", "--yes", "--format", "json"], Duration::from_secs(120));
        c.check(out.code == 0, || out.dump());
        let left = leftovers(&env.state_dir(), since);
        c.check(left.is_empty(), || format!("round {round}: the completing run left {left:?} in the state"));
        let left: Vec<PathBuf> = files(&dir)
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".tmp") || n == "app.log.1"))
            .collect();
        c.check(left.is_empty(), || format!("round {round}: the run after the kill left {left:?}\n{}", out.dump()));
        match log_line_counts(&dir, rounds, per_round) {
            Ok((counts, read)) => {
                let wrong = counts[..written].iter().filter(|n| **n != 1).count();
                c.check(wrong == 0, || format!("round {round}: {wrong} lines not there exactly once (read {read:?})"));
            }
            Err(e) => {
                c.check(false, || format!("round {round}: after the completing run: {e}"));
            }
        }
        c.ok(state_whole(&env.state_dir()), "state after the completing run");
    }
    c.check(interrupted > 0, || "no kill came while the rotation ran".into());
    eprintln!("faults: rotation: {interrupted} of {rounds} kills came mid-run");
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// Corrupt state.

#[test]
fn a_corrupt_state_file_of_any_kind_is_never_replaced() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", redis.url()));
    // Every tool writes its state once.
    let runs: &[(&str, &[&str])] = &[
        (HEALTH, &["check"]),
        (HEALTH, &["check"]),
        (ANALYTICS, &["collect"]),
        (CLEANUP, &["light", "--yes"]),
        (BACKUP, &["create"]),
    ];
    for (tool, args) in runs {
        env.run(tool, args);
    }
    let documents: Vec<PathBuf> = files(&env.state_dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.to_string_lossy().contains("/backups/"))
        .collect();
    let mut c = Checks::new("corrupt state");
    c.check(documents.len() >= 5, || format!("too few documents to corrupt: {documents:?}"));
    let garbage = b"{\"schema_version\": 1, \"torn";
    for doc in &documents {
        let before = std::fs::read(doc).unwrap();
        std::fs::write(doc, garbage).unwrap();
        for (tool, args) in runs {
            let out = env.run(tool, args);
            let after = std::fs::read(doc).unwrap_or_default();
            c.check(after == garbage, || format!("{args:?} replaced the corrupt {}\n{}", doc.display(), out.dump()));
        }
        std::fs::write(doc, before).unwrap();
    }
    eprintln!("faults: corrupt state: {} documents x {} runs", documents.len(), runs.len());
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// Frozen servers.

/// A run: tool, arguments, the exit code it must end with.
type Run<'a> = (&'a str, &'a [&'a str], i32);

/// Runs each of `runs`, checking it ends with its code, within 5 s.
fn ends_in_time_with_its_code(c: &mut Checks, env: &TestEnv, runs: &[Run<'_>]) {
    for (tool, args, code) in runs {
        let out = run_in(env, tool, args, Duration::from_secs(60));
        c.check(out.code == *code, || format!("exit {}, want {code}\n{}", out.code, out.dump()));
        c.check(out.elapsed <= Duration::from_secs(5), || {
            format!("took {:?}, want 5 s at most\n{}", out.elapsed, out.dump())
        });
    }
}

#[test]
fn a_frozen_redis_ends_every_tool_within_its_timeout_with_the_unreachable_code() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\ntimeout = \"500ms\"\nconnect_timeout = \"500ms\"\n",
        redis.url()
    ));
    let mut c = Checks::new("frozen redis");
    // Frozen, as a server stuck in a fork or swapped out: connections open, nothing answers.
    signal(redis.pid(), "STOP");
    let runs: &[Run<'_>] = &[
        (HEALTH, &["check", "--tier", "redis"], 2),
        (CLEANUP, &["light", "--yes", "--tier", "redis"], 4),
        (BACKUP, &["create", "--only", "redis"], 4),
        (ANALYTICS, &["collect", "--tier", "redis"], 4),
        (DEBUG, &["memory", "--tier", "redis"], 4),
        (OPTIMIZER, &["run", "--tier", "redis", "--yes"], 4),
    ];
    ends_in_time_with_its_code(&mut c, &env, runs);
    signal(redis.pid(), "CONT");
    // Thawed, the same runs succeed.
    let out = env.run(HEALTH, &["check", "--tier", "redis"]);
    c.check(out.code() == 0, || out.dump());
    c.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_postgres_ends_every_tool_within_its_timeout_with_the_unreachable_code() {
    let Some(pg) = cache_tests::PgServer::start() else { return };
    let url = pg.create_database("app").await;
    pg.client("app").await.batch_execute(crate::health_table_sql()).await.unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[postgres]]\nname = \"main\"\nurl = \"{url}\"\ntimeout = \"500ms\"\nconnect_timeout = \"500ms\"\n"
    ));
    let mut c = Checks::new("frozen postgres");
    // The postmaster frozen: a new session is never forked, so every connect hangs.
    signal(pg.pid(), "STOP");
    let runs: &[Run<'_>] = &[
        (HEALTH, &["check", "--tier", "postgres"], 2),
        (CLEANUP, &["light", "--yes", "--tier", "postgres"], 4),
        (BACKUP, &["create", "--only", "postgres"], 4),
        (ANALYTICS, &["collect", "--tier", "postgres"], 4),
        (OPTIMIZER, &["run", "--tier", "postgres", "--yes"], 4),
    ];
    tokio::task::block_in_place(|| ends_in_time_with_its_code(&mut c, &env, runs));
    signal(pg.pid(), "CONT");
    let out = env.run(HEALTH, &["check", "--tier", "postgres"]);
    c.check(out.code() == 0, || out.dump());
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// A full disk.

/// The four tools that write state at every run, with a command that does.
fn state_writers() -> [(&'static str, &'static str, &'static [&'static str]); 4] {
    [
        (HEALTH, "cache-health", &["check", "--tier", "redis"]),
        (ANALYTICS, "cache-analytics", &["collect"]),
        (CLEANUP, "cache-cleanup", &["light", "--yes"]),
        (BACKUP, "cache-backup", &["create"]),
    ]
}

/// The job a state writer's run is recorded as.
fn job_of(tool: &str) -> &'static str {
    match tool {
        "cache-health" => "health-check",
        "cache-analytics" => "analytics-collect",
        "cache-cleanup" => "cleanup",
        _ => "backup",
    }
}

/// Every JSON document under `dir` (backups' partial directories aside) with its bytes.
fn documents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.to_string_lossy().contains("/.partial-"))
        .filter_map(|p| Some((p.clone(), std::fs::read(&p).ok()?)))
        .collect()
}

/// The documents of `before` that are gone, or changed into something that does not parse.
fn replaced_badly(before: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, bytes) in before {
        match std::fs::read(path) {
            Ok(now) if now == *bytes => {}
            Ok(now) if serde_json::from_slice::<serde_json::Value>(&now).is_ok() => {}
            Ok(now) => bad.push(format!("{} replaced by {} bytes that do not parse", path.display(), now.len())),
            Err(e) => bad.push(format!("{} is gone: {e}", path.display())),
        }
    }
    bad
}

/// Whole lines of `runs.jsonl` in `state`.
fn whole_runs(state: &Path) -> usize {
    let text = std::fs::read_to_string(state.join("runs.jsonl")).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && serde_json::from_str::<serde_json::Value>(l.trim()).is_ok())
        .count()
}

/// Every backup `cache-backup list` shows verifies; one check per backup listed.
fn listed_backups_verify(c: &mut Checks, env: &TestEnv, when: &str) {
    let list = env.run(BACKUP, &["list", "--format", "json"]);
    let Some(backups) = c.ok(
        serde_json::from_str::<serde_json::Value>(&list.stdout).map_err(|e| format!("{e}\n{}", list.dump())),
        "cache-backup list",
    ) else {
        return;
    };
    for b in backups["backups"].as_array().into_iter().flatten() {
        let id = b["id"].as_str().unwrap_or_default();
        let verify = env.run(BACKUP, &["verify", id]);
        c.check(verify.code() == 0, || format!("{when}: listed backup {id} does not verify\n{}", verify.dump()));
    }
}

/// Runs the four state writers with `fs` filled to `leave` bytes free, then with it freed;
/// the state directory is on `fs` or not. With `recorded`, only one property is checked: a run
/// that exits 0 was recorded in `runs.jsonl`.
fn full_then_freed(c: &mut Checks, env: &TestEnv, fs: &Tmpfs, leave: u64, recorded: bool) {
    let state = env.state_dir();
    let free_text = format!("{} KiB free", leave >> 10);
    fs.fill(leave);
    for (bin, tool, args) in state_writers() {
        let before = documents(&fs.dir);
        let runs_before = whole_runs(&state);
        let out = run_in(env, bin, args, Duration::from_secs(60));
        let what = || format!("{free_text}: {tool} {args:?}");
        if recorded {
            if out.code == 0 {
                // ... in the history and as the job's last run.
                let last = std::fs::read(state.join(format!("jobs/{}.json", job_of(tool))))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                let pid = last.as_ref().map(|l| l["pid"].clone());
                c.check(pid == Some(out.pid.into()), || {
                    format!("{}: exit 0, but jobs/{}.json is not this run's\n{}", what(), job_of(tool), out.dump())
                });
                let runs_after = whole_runs(&state);
                c.check(runs_after == runs_before + 1, || {
                    format!(
                        "{}: exit 0, but runs.jsonl went from {runs_before} to {runs_after} whole lines\n{}",
                        what(),
                        out.dump()
                    )
                });
            }
            continue;
        }
        c.check(out.clean_end() && documented(tool, out.code), || {
            format!("{}: undocumented end\n{}", what(), out.dump())
        });
        if out.code != 0 || leave == 0 {
            // The file is named through the state directory's link, or on the small disk.
            let named = out.code != 0
                && out.stderr.contains("No space left on device")
                && (out.stderr.contains(&*state.to_string_lossy()) || out.stderr.contains(&*fs.dir.to_string_lossy()));
            c.check(named, || {
                format!("{}: exit {} without naming the file and ENOSPC\n{}", what(), out.code, out.dump())
            });
        }
        let bad = replaced_badly(&before);
        c.check(bad.is_empty(), || format!("{}: {bad:?}", what()));
    }
    fs.unfill();
    listed_backups_verify(c, env, &free_text);
    for (bin, tool, args) in state_writers() {
        let out = run_in(env, bin, args, Duration::from_secs(60));
        c.check(out.code == 0, || format!("{free_text}, then freed: {tool} {args:?}\n{}", out.dump()));
    }
    c.ok(state_whole(&state), &format!("{free_text}, then freed: state"));
    // Keep the file system from filling with good backups.
    let prune = env.run(BACKUP, &["prune", "--yes"]);
    c.check(prune.code() == 0, || prune.dump());
}

/// Free space left by each round: nothing, then a page or a few, where writes start to fail
/// half-way.
const FULL_LEVELS: &[u64] = &[0, 4 << 10, 8 << 10, 12 << 10, 16 << 10, 24 << 10, 32 << 10, 64 << 10];

#[test]
fn a_full_state_directory_fails_runs_with_their_code_and_replaces_no_document() {
    let Some(redis) = RedisServer::start() else { return };
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(2000).arg("key").arg(100).query(&mut redis.connection()).unwrap();
    let env = TestEnv::new();
    let Some(fs) = small_state_dir(&env, &redis) else { return };
    let mut c = Checks::new("disk full (state directory)");
    for (bin, tool, args) in state_writers() {
        let out = env.run(bin, args);
        c.check(out.code() == 0, || format!("{tool} before the disk fills\n{}", out.dump()));
    }
    for leave in FULL_LEVELS {
        full_then_freed(&mut c, &env, &fs, *leave, false);
    }
    c.finish();
}

/// A state directory for the disk-full tests: a link into a small tmpfs, so the filler sits
/// beside it; `None` (skipped) where no tmpfs can be mounted.
fn small_state_dir(env: &TestEnv, redis: &RedisServer) -> Option<Tmpfs> {
    let fs = Tmpfs::mount(&env.path("small"), "size=2m")?;
    std::fs::create_dir(fs.dir.join("state")).unwrap();
    std::os::unix::fs::symlink(fs.dir.join("state"), env.state_dir()).unwrap();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nlevel = 1\nthreads = 1\nredis_method = \"logical\"\n\
         keep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\n",
        redis.url()
    ));
    Some(fs)
}

#[test]
fn a_run_that_cannot_record_itself_on_a_nearly_full_disk_does_not_exit_0() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    let Some(fs) = small_state_dir(&env, &redis) else { return };
    let mut c = Checks::new("disk full (run records)");
    for (bin, _, args) in state_writers() {
        env.run(bin, args);
    }
    // Page by page: whether an append needs a new page depends on where the file ends.
    for pages in 0..=24 {
        full_then_freed(&mut c, &env, &fs, pages * 4096, true);
    }
    c.finish();
}

#[test]
fn a_full_backup_directory_fails_the_backup_with_its_code_and_lists_nothing_partial() {
    let Some(redis) = RedisServer::start() else { return };
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(2000).arg("key").arg(100).query(&mut redis.connection()).unwrap();
    let env = TestEnv::new();
    let Some(fs) = Tmpfs::mount(&env.path("small"), "size=1m") else { return };
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\ndir = \"{}\"\nlevel = 1\nthreads = 1\n\
         redis_method = \"logical\"\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\n\
         prune_after_create = false\n",
        redis.url(),
        fs.dir.join("backups").display()
    ));
    // Backups go only by the explicit prune below (create's own retention would remove the
    // documents whose survival the checks compare).
    let mut c = Checks::new("disk full (backup directory)");
    let first = env.run(BACKUP, &["create"]);
    c.check(first.code() == 0, || first.dump());
    for leave in FULL_LEVELS {
        let free_text = format!("{} KiB free", leave >> 10);
        fs.fill(*leave);
        let before = documents(&fs.dir);
        let out = run_in(&env, BACKUP, &["create"], Duration::from_secs(60));
        c.check(out.clean_end() && documented("cache-backup", out.code), || out.dump());
        if out.code != 0 || *leave == 0 {
            let named = out.code != 0
                && out.stderr.contains("No space left on device")
                && out.stderr.contains(&*fs.dir.to_string_lossy());
            c.check(named, || {
                format!("{free_text}: exit {} without naming the file and ENOSPC\n{}", out.code, out.dump())
            });
        }
        let bad = replaced_badly(&before);
        c.check(bad.is_empty(), || format!("{free_text}: {bad:?}"));
        c.ok(state_parses(&env.state_dir()), &format!("{free_text}: state"));
        fs.unfill();
        listed_backups_verify(&mut c, &env, &free_text);
        let next = run_in(&env, BACKUP, &["create"], Duration::from_secs(60));
        c.check(next.code == 0, || format!("{free_text}, then freed\n{}", next.dump()));
        c.ok(state_whole(&env.state_dir()), &format!("{free_text}, then freed: state"));
        let prune = env.run(BACKUP, &["prune", "--yes"]);
        c.check(prune.code() == 0, || prune.dump());
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// Hostile configuration and environment.

/// A password that must appear in no output.
const SECRET: &str = "Hunter2-s3cr3t-9f1c";

/// Every tool, with a command that loads the configuration and opens the state directory.
const EVERY_TOOL: &[(&str, &str, &[&str])] = &[
    (HEALTH, "cache-health", &["check"]),
    (CLEANUP, "cache-cleanup", &["light", "--yes"]),
    (BACKUP, "cache-backup", &["create"]),
    (ANALYTICS, "cache-analytics", &["collect"]),
    (OPTIMIZER, "cache-optimizer", &["analyze"]),
    (DEBUG, "cache-debug", &["connections"]),
    (SCHEDULER, "cache-scheduler", &["status"]),
];

/// What the configuration file of a case is.
enum Hostile {
    Text(String),
    Bytes(Vec<u8>),
    Directory,
    Fifo,
    SymlinkLoop,
    /// Mode 000 (only hostile when not root: root reads it anyway).
    Unreadable,
}

/// One hostile configuration: the file, and what the message must name besides the file.
struct ConfigCase {
    name: &'static str,
    file: Hostile,
    says: Vec<String>,
}

fn redis_with(extra: &str) -> String {
    format!("[[redis]]\nname = \"main\"\nurl = \"redis://:{SECRET}@127.0.0.1:1/0\"\n{extra}")
}

fn config_cases() -> Vec<ConfigCase> {
    let case = |name, text: String, says: &[&str]| ConfigCase {
        name,
        file: Hostile::Text(text),
        says: says.iter().map(|s| (*s).to_owned()).collect(),
    };
    let special = |name, file| ConfigCase { name, file, says: vec!["does not exist or is not a file".into()] };
    // 10 MB: comments, then one unknown key; and 10 MB of targets, the last one's name taken.
    let mut padded = "# a padded configuration\n".repeat(10_000_000 / 25);
    padded.push_str("no_such_key = 1\n");
    let padded_line = format!("line {}", padded.lines().count());
    let mut targets = String::new();
    let mut i = 0;
    while targets.len() < 10_000_000 {
        targets.push_str(&format!("[[files]]\nname = \"f{i}\"\npath = \"/nonexistent/{i}\"\n"));
        i += 1;
    }
    targets.push_str("[[files]]\nname = \"f0\"\npath = \"/x\"\n");
    let taken = format!("files[{i}].name");
    vec![
        case(
            "bad scheme",
            format!("[[redis]]\nname = \"main\"\nurl = \"http://:{SECRET}@127.0.0.1:1/0\"\n"),
            &["redis[0].url", "line 3"],
        ),
        case(
            "unparsable URL",
            format!("[[redis]]\nname = \"main\"\nurl = \"redis://:{SECRET}@[::1\"\n"),
            &["redis[0].url", "line 3"],
        ),
        case(
            "bad database number",
            format!("[[redis]]\nname = \"main\"\nurl = \"redis://:{SECRET}@127.0.0.1:1/x\"\n"),
            &["redis[0].url", "line 3"],
        ),
        case(
            "bad postgres URL option",
            format!("[[postgres]]\nname = \"main\"\nurl = \"postgres://u:{SECRET}@127.0.0.1:1/db?sslmode=bogus\"\n"),
            &["postgres[0].url", "line 3"],
        ),
        case(
            "bad memory scheme",
            format!("[[memory]]\nname = \"m\"\nurl = \"ftp://u:{SECRET}@h\"\napi_key = \"{SECRET}\"\n"),
            &["memory[0].url"],
        ),
        case("zero timeout", redis_with("timeout = \"0s\"\n"), &["redis[0].timeout", "line 4"]),
        case("negative timeout", redis_with("timeout = \"-1s\"\n"), &["redis[0].timeout", "line 4"]),
        case(
            "huge timeout",
            redis_with("connect_timeout = \"500000000years\"\n"),
            &["redis[0].connect_timeout", "line 4"],
        ),
        case(
            "overflowing timeout",
            redis_with("connect_timeout = \"18446744073709551615s\"\n"),
            &["redis[0].connect_timeout", "line 4"],
        ),
        case("unparsable timeout", redis_with("timeout = \"99999999999999999999 years\"\n"), &["redis[0].timeout"]),
        case("huge system timeout", "[system]\ntimeout = \"18446744073709551615s\"\n".into(), &["system.timeout"]),
        case(
            "huge memory timeout",
            format!(
                "[[memory]]\nname = \"m\"\nurl = \"http://127.0.0.1:1\"\napi_key = \"{SECRET}\"\n\
                 timeout = \"500000000years\"\n"
            ),
            &["memory[0].timeout"],
        ),
        case("duplicate key", redis_with("url = \"redis://127.0.0.1:2/0\"\n"), &["duplicate key", "line 4"]),
        case(
            "duplicate target",
            redis_with("[[redis]]\nname = \"main\"\nurl = \"redis://127.0.0.1:2/0\"\n"),
            &["redis[1].name", "line 5"],
        ),
        case(
            "unknown table",
            format!("[[rediss]]\nname = \"main\"\nurl = \"redis://:{SECRET}@127.0.0.1:1/0\"\n"),
            &["rediss", "line 1"],
        ),
        case(
            "table for an array",
            format!("[redis]\nname = \"main\"\nurl = \"redis://:{SECRET}@127.0.0.1:1/0\"\n"),
            &["`redis`"],
        ),
        case(
            "bad table name",
            format!(
                "[[postgres]]\nname = \"main\"\nurl = \"postgres://u:{SECRET}@127.0.0.1:1/db\"\n\
                 table = \"cache; DROP TABLE x\"\n"
            ),
            &["postgres[0].table", "line 4"],
        ),
        case("unknown nested key", redis_with("[cleanup]\nbatchsize = 10\n"), &["cleanup.batchsize"]),
        case("wrong type", redis_with("timeout = 5\n"), &["redis[0].timeout", "line 4"]),
        case(
            "wrong type of a count",
            "[[logs]]\nname = \"l\"\npath = \"/tmp\"\nkeep = \"seven\"\n".into(),
            &["logs[0].keep", "line 4"],
        ),
        case("wrong type of a name", "project_name = 1\n".into(), &["project_name", "line 1"]),
        case("negative count", redis_with("[cleanup]\nbatch_size = -1\n"), &["cleanup.batch_size", "line 5"]),
        case(
            "a secret where a word goes",
            format!(
                "[[memory]]\nname = \"m\"\nurl = \"http://127.0.0.1:1\"\napi_key = \"{SECRET}\"\n\
                 dialect = \"{SECRET}\"\n"
            ),
            &["memory[0].dialect"],
        ),
        case("10 MB of comments", padded, &["no_such_key", &padded_line]),
        case("10 MB of targets", targets, &[&taken]),
        ConfigCase {
            name: "binary",
            file: Hostile::Bytes(b"\xff\xfe\x00\x01[[redis]]\x00\xc3\x28\x89PNG\r\n\x1a\n".repeat(100)),
            says: vec!["UTF-8".into()],
        },
        special("a directory", Hostile::Directory),
        special("a FIFO", Hostile::Fifo),
        special("a symlink loop", Hostile::SymlinkLoop),
        ConfigCase { name: "unreadable", file: Hostile::Unreadable, says: vec!["cannot read".into()] },
    ]
}

/// Puts `file` at `path`; false when the case cannot be made here.
fn make_config(path: &Path, file: &Hostile) -> bool {
    match file {
        Hostile::Text(text) => std::fs::write(path, text).unwrap(),
        Hostile::Bytes(bytes) => std::fs::write(path, bytes).unwrap(),
        Hostile::Directory => std::fs::create_dir(path).unwrap(),
        Hostile::Fifo => assert!(Command::new("mkfifo").arg(path).status().unwrap().success()),
        Hostile::SymlinkLoop => std::os::unix::fs::symlink(path, path).unwrap(),
        Hostile::Unreadable => {
            if rustix::process::geteuid().is_root() {
                return false;
            }
            std::fs::write(path, redis_with("")).unwrap();
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        }
    }
    true
}

/// A hostile run to judge: what it was, what it did, the code it must end with, what it must say.
type Judged = (String, Ran, i32, Vec<String>);

/// The checks of one hostile run: its code, a clean end, the names it must say, no secret.
fn judge_hostile(c: &mut Checks, what: &str, out: &Ran, code: i32, says: &[String]) {
    c.check(out.code == code, || format!("{what}: exit {}, want {code}\n{}", out.code, out.dump()));
    c.check(out.clean_end(), || format!("{what}: panicked or hung\n{}", out.dump()));
    let said = out.said();
    let missing: Vec<&String> = says.iter().filter(|s| !said.contains(s.as_str())).collect();
    c.check(missing.is_empty(), || format!("{what}: the message does not name {missing:?}\n{}", out.dump()));
    c.check(!said.contains(SECRET), || format!("{what}: the secret is in the output\n{}", out.dump()));
}

#[test]
fn every_tool_refuses_every_hostile_configuration_with_the_config_code_naming_it() {
    let cases = config_cases();
    let envs: Vec<(TestEnv, PathBuf, bool)> = cases
        .iter()
        .map(|case| {
            let env = TestEnv::new();
            let path = env.path("hostile.toml");
            let made = make_config(&path, &case.file);
            if !made {
                eprintln!("note: skipping the `{}` configuration: root reads any file", case.name);
            }
            (env, path, made)
        })
        .collect();
    let mut c = Checks::new("hostile configuration");
    // The tools side by side, each through every case.
    let results: Vec<Vec<Judged>> = std::thread::scope(|scope| {
        let threads: Vec<_> = EVERY_TOOL
            .iter()
            .map(|(bin, tool, args)| {
                let (cases, envs) = (&cases, &envs);
                scope.spawn(move || {
                    let mut ran = Vec::new();
                    for (case, (env, path, made)) in cases.iter().zip(envs) {
                        if !made {
                            continue;
                        }
                        let mut command = env.command(bin, args);
                        command.arg("--config").arg(path);
                        let out = run_for(command, Duration::from_secs(60));
                        let mut says = case.says.clone();
                        says.push(path.display().to_string());
                        ran.push((format!("{tool} with {}", case.name), out, code_for(tool, Kind::Config), says));
                    }
                    ran
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (what, out, code, says) in results.iter().flatten() {
        judge_hostile(&mut c, what, out, *code, says);
    }
    eprintln!("faults: hostile configuration: {} cases x {} tools", cases.len(), EVERY_TOOL.len());
    c.finish();
}

#[test]
fn an_unknown_key_in_a_section_with_many_keys_is_named_with_its_line() {
    let env = TestEnv::new();
    let path = env.write_config(&redis_with("[cleanup]\nbatchsize = 10\n"));
    let mut c = Checks::new("hostile configuration (long messages)");
    for (bin, tool, args) in EVERY_TOOL {
        let out = run_in(&env, bin, args, Duration::from_secs(60));
        let says = ["cleanup.batchsize".to_owned(), "line 5".to_owned(), path.display().to_string()];
        judge_hostile(
            &mut c,
            &format!("{tool} with an unknown key in [cleanup]"),
            &out,
            code_for(tool, Kind::Config),
            &says,
        );
    }
    c.finish();
}

/// One hostile environment: variables, whether `--state-dir` is passed, and the kind of error.
struct EnvCase {
    name: &'static str,
    vars: Vec<(&'static str, String)>,
    state_flag: bool,
    config_flag: bool,
    kind: Kind,
    says: Vec<String>,
}

#[test]
fn every_tool_refuses_every_hostile_environment_with_its_code_naming_the_variable() {
    let env = TestEnv::new();
    let config = env.path("good.toml");
    std::fs::write(&config, redis_with("connect_timeout = \"300ms\"\ntimeout = \"300ms\"\n")).unwrap();
    let a_file = env.path("a-file");
    std::fs::write(&a_file, "not a directory\n").unwrap();
    let read_only = Tmpfs::mount(&env.path("read-only"), "ro,size=1m");
    let unwritable = match &read_only {
        Some(fs) => Some(fs.dir.clone()),
        None if !rustix::process::geteuid().is_root() => {
            let dir = env.path("unwritable");
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
            Some(dir)
        }
        None => None,
    };
    let s = |v: &str| v.to_owned();
    let file = a_file.display().to_string();
    let mut cases = vec![
        EnvCase {
            name: "REDIS_URL garbage",
            vars: vec![("REDIS_URL", format!("garbage-{SECRET}"))],
            state_flag: true,
            config_flag: true,
            kind: Kind::Config,
            says: vec![s("REDIS_URL")],
        },
        EnvCase {
            name: "REDIS_URL unparsable",
            vars: vec![("REDIS_URL", format!("redis://:{SECRET}@[::1"))],
            state_flag: true,
            config_flag: true,
            kind: Kind::Config,
            says: vec![s("REDIS_URL")],
        },
        EnvCase {
            name: "REDIS_URL bad scheme",
            vars: vec![("REDIS_URL", format!("http://:{SECRET}@127.0.0.1:1/0"))],
            state_flag: true,
            config_flag: true,
            kind: Kind::Config,
            says: vec![s("REDIS_URL")],
        },
        EnvCase {
            name: "DATABASE_URL bad port",
            vars: vec![("DATABASE_URL", format!("postgres://u:{SECRET}@127.0.0.1:99999/db"))],
            state_flag: true,
            config_flag: true,
            kind: Kind::Config,
            says: vec![s("DATABASE_URL")],
        },
        EnvCase {
            name: "MEM0_URL bad scheme",
            vars: vec![("MEM0_URL", format!("ftp://u:{SECRET}@h")), ("MEM0_API_KEY", s(SECRET))],
            state_flag: true,
            config_flag: true,
            kind: Kind::Config,
            says: vec![s("MEM0_URL")],
        },
        EnvCase {
            name: "CACHE_CONFIG missing",
            vars: vec![("CACHE_CONFIG", env.path("missing.toml").display().to_string())],
            state_flag: true,
            config_flag: false,
            kind: Kind::Config,
            says: vec![s("CACHE_CONFIG"), env.path("missing.toml").display().to_string()],
        },
        EnvCase {
            name: "CACHE_CONFIG a directory",
            vars: vec![("CACHE_CONFIG", env.path("home").display().to_string())],
            state_flag: true,
            config_flag: false,
            kind: Kind::Config,
            says: vec![s("CACHE_CONFIG"), env.path("home").display().to_string()],
        },
        EnvCase {
            name: "CACHE_STATE_DIR a file",
            vars: vec![("CACHE_STATE_DIR", file.clone())],
            state_flag: false,
            config_flag: true,
            kind: Kind::State,
            says: vec![s("CACHE_STATE_DIR"), file.clone()],
        },
        EnvCase {
            name: "CACHE_STATE_DIR under a file",
            vars: vec![("CACHE_STATE_DIR", format!("{file}/state"))],
            state_flag: false,
            config_flag: true,
            kind: Kind::State,
            says: vec![format!("{file}/state")],
        },
        EnvCase {
            name: "STATE_DIRECTORY a file",
            vars: vec![("STATE_DIRECTORY", file.clone())],
            state_flag: false,
            config_flag: true,
            kind: Kind::State,
            says: vec![file.clone()],
        },
    ];
    match &unwritable {
        Some(dir) => cases.push(EnvCase {
            name: "CACHE_STATE_DIR unwritable",
            vars: vec![("CACHE_STATE_DIR", dir.display().to_string())],
            state_flag: false,
            config_flag: true,
            kind: Kind::State,
            says: vec![dir.display().to_string(), s("not writable")],
        }),
        None => {
            eprintln!("note: skipping the unwritable state directory: no read-only mount, and root writes anywhere")
        }
    }
    let mut c = Checks::new("hostile environment");
    let results: Vec<Vec<Judged>> = std::thread::scope(|scope| {
        let threads: Vec<_> = EVERY_TOOL
            .iter()
            .map(|(bin, tool, args)| {
                let (cases, env, config) = (&cases, &env, &config);
                scope.spawn(move || {
                    let mut ran = Vec::new();
                    for case in cases {
                        // A bare environment: only what the case sets (and a home, a PATH).
                        let mut command = Command::new(bin);
                        command.env_clear().env("HOME", env.path("home")).env("PATH", "/usr/local/bin:/usr/bin:/bin");
                        command.args(*args);
                        if case.state_flag {
                            command.arg("--state-dir").arg(env.state_dir());
                        }
                        if case.config_flag {
                            command.arg("--config").arg(config);
                        }
                        for (name, value) in &case.vars {
                            command.env(name, value);
                        }
                        let out = run_for(command, Duration::from_secs(60));
                        ran.push((
                            format!("{tool} with {}", case.name),
                            out,
                            code_for(tool, case.kind),
                            case.says.clone(),
                        ));
                    }
                    ran
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (what, out, code, says) in results.iter().flatten() {
        judge_hostile(&mut c, what, out, *code, says);
    }
    c.check(std::fs::read_to_string(&a_file).unwrap() == "not a directory\n", || {
        "the file named as state directory changed".into()
    });
    eprintln!("faults: hostile environment: {} cases x {} tools", cases.len(), EVERY_TOOL.len());
    drop(read_only);
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

/// The three jobs run at once, and how each is recorded.
const JOBS: &[(&str, &str, &[&str])] = &[
    (CLEANUP, "cleanup", &["light", "--yes"]),
    (BACKUP, "backup", &["create"]),
    (ANALYTICS, "analytics-collect", &["collect"]),
];

/// Starts `per_job` runs of each of [`JOBS`] at once and waits for them; each run's job, pid,
/// exit code and output.
fn all_at_once(env: &TestEnv, per_job: usize, wait: bool) -> Vec<(&'static str, u32, i32, String)> {
    let mut children = Vec::new();
    for _ in 0..per_job {
        for (bin, job, args) in JOBS {
            let mut args = args.to_vec();
            if wait {
                args.push("--wait");
            }
            let child = env.command(bin, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            children.push((*job, child));
        }
    }
    children
        .into_iter()
        .map(|(job, child)| {
            let pid = child.id();
            let out = child.wait_with_output().unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (job, pid, out.status.code().unwrap_or(-1), said)
        })
        .collect()
}

/// Checks one round of [`all_at_once`] against the run records that `runs.jsonl` gained.
fn judge_concurrent(c: &mut Checks, env: &TestEnv, ran: &[(&str, u32, i32, String)], wait: bool, lines_before: usize) {
    let round = if wait { "with --wait" } else { "without --wait" };
    let text = std::fs::read_to_string(env.state_dir().join("runs.jsonl")).unwrap_or_default();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let new = &lines[lines_before.min(lines.len())..];
    let records: Vec<serde_json::Value> = new.iter().filter_map(|l| serde_json::from_str(l.trim()).ok()).collect();
    c.check(new.len() == ran.len() && records.len() == ran.len() && new.iter().all(|l| l.ends_with('\n')), || {
        format!(
            "{round}: {} runs, and runs.jsonl gained {} lines of which {} parse",
            ran.len(),
            new.len(),
            records.len()
        )
    });
    for (job, pid, code, stderr) in ran {
        let ok = if wait { *code == 0 } else { *code == 0 || (*code == 75 && stderr.contains("lock")) };
        c.check(ok, || format!("{round}: {job} (pid {pid}) exited {code}: {stderr}"));
        let mine = records.iter().filter(|r| r["pid"] == *pid).count();
        c.check(mine == 1, || format!("{round}: {job} (pid {pid}) has {mine} run records"));
    }
    for (_, job, _) in JOBS {
        // The runs of one job that ran (not locked out) never overlap.
        let time = |r: &serde_json::Value, field: &str| {
            r[field].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        let mut spans: Vec<_> = records
            .iter()
            .filter(|r| r["job"] == *job && r["outcome"] != "locked")
            .map(|r| (time(r, "started_at"), time(r, "ended_at")))
            .collect();
        spans.sort();
        let overlaps = spans.windows(2).filter(|w| w[1].0.is_none() || w[1].0 < w[0].1).count();
        c.check(overlaps == 0, || format!("{round}: {job}: {overlaps} runs overlapping another: {spans:?}"));
        // With --wait every run ran; without, at least one did.
        let runs = ran.iter().filter(|r| r.0 == *job).count();
        let want = if wait { runs } else { 1 };
        c.check(spans.len() >= want, || format!("{round}: {job}: {} of {runs} runs ran, want {want}", spans.len()));
    }
    c.ok(state_parses(&env.state_dir()), round);
}

#[test]
fn sixteen_runs_of_each_job_at_once_run_one_at_a_time_and_record_one_whole_line_each() {
    let Some(redis) = RedisServer::start() else { return };
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(2000).arg("key").arg(100).query(&mut redis.connection()).unwrap();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nlevel = 1\nthreads = 1\nredis_method = \"logical\"\n",
        redis.url()
    ));
    let mut c = Checks::new("concurrency");
    for wait in [false, true] {
        let before = std::fs::read_to_string(env.state_dir().join("runs.jsonl")).unwrap_or_default();
        let lines_before = before.split_inclusive('\n').count();
        let ran = all_at_once(&env, 16, wait);
        judge_concurrent(&mut c, &env, &ran, wait, lines_before);
    }
    c.ok(state_whole(&env.state_dir()), "state after both rounds");
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// The memory API down, refusing, blackholed, failing.

/// How the memory API misbehaves.
#[derive(Clone, Copy, Debug)]
enum MemoryFault {
    /// Nothing listens on its port: connection refused.
    Refused,
    /// A listener that accepts and never answers (also what a SIGSTOPped server looks like: the
    /// Mem0 stand-in runs in this process, so the blackhole stands for a frozen one).
    Blackholed,
    /// It answers 500.
    Http500,
    /// It answers 503.
    Http503,
}

/// A tool that talks to the memory API: where its report puts the memory target and the Redis
/// one, and the code a run with the memory target failed and Redis up ends with.
struct MemoryTool {
    bin: &'static str,
    args: &'static [&'static str],
    code: i32,
    /// The memory target as the JSON report has it, failed (not reached), and Redis handled.
    memory_failed: fn(&serde_json::Value) -> bool,
    redis_done: fn(&serde_json::Value) -> bool,
}

fn find<'a>(list: &'a serde_json::Value, key: &str, value: &str) -> Option<&'a serde_json::Value> {
    list.as_array()?.iter().find(|t| t[key] == value)
}

fn memory_tools() -> Vec<MemoryTool> {
    vec![
        MemoryTool {
            bin: HEALTH,
            args: &["check", "--format", "json"],
            code: 2,
            memory_failed: |r| {
                r["targets"].as_array().into_iter().flatten().any(|t| t["tier"] == "memory" && t["status"] == "failed")
            },
            redis_done: |r| {
                r["targets"].as_array().into_iter().flatten().any(|t| t["tier"] == "redis" && t["status"] == "healthy")
            },
        },
        MemoryTool {
            bin: CLEANUP,
            args: &["light", "--yes", "--format", "json"],
            code: 1,
            memory_failed: |r| find(&r["targets"], "tier", "memory").is_some_and(|t| t["unreachable"] == true),
            redis_done: |r| {
                find(&r["targets"], "tier", "redis")
                    .is_some_and(|t| t["unreachable"] == false && t["errors"] == serde_json::json!([]))
            },
        },
        MemoryTool {
            bin: ANALYTICS,
            args: &["collect", "--format", "json"],
            code: 1,
            memory_failed: |r| find(&r["memory"], "name", "mem").is_some_and(|t| t["error"].is_string()),
            redis_done: |r| {
                find(&r["redis"], "name", "main").is_some_and(|t| t.get("error").is_none() && t["info"].is_object())
            },
        },
        MemoryTool {
            bin: BACKUP,
            args: &["create", "--format", "json"],
            code: 1,
            memory_failed: |r| {
                find(&r["failed"], "tier", "memory").is_some() && find(&r["sources"], "tier", "memory").is_none()
            },
            redis_done: |r| find(&r["sources"], "tier", "redis").is_some(),
        },
        MemoryTool {
            bin: DEBUG,
            args: &["performance", "--samples", "5", "--format", "json"],
            code: 1,
            memory_failed: |r| find(&r["memory"], "target", "memory/mem").is_some_and(|t| t["error"].is_string()),
            redis_done: |r| find(&r["redis"], "target", "redis/main").is_some_and(|t| t.get("error").is_none()),
        },
    ]
}

#[test]
fn a_memory_api_down_refusing_blackholed_or_failing_ends_every_tool_in_time_and_the_rest_is_done() {
    let Some(redis) = RedisServer::start() else { return };
    let key = format!("m0-{SECRET}");
    // The stand-in answering, for the baseline: every tool reaches it, and the checks tell.
    let mem0 = Mem0Server::platform(&key);
    mem0.add_memory("m1", "default", "a memory", &["c"], "2026-01-01T00:00:00Z");
    let hole = Blackhole::new();
    let (f500, f503) = (FailingHttp::new(500), FailingHttp::new(503));
    let refused = format!("http://127.0.0.1:{}", cache_tests::free_port());
    let config = |url: &str| {
        format!(
            "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[[memory]]\nname = \"mem\"\nurl = \"{url}\"\n\
             api_key = \"{key}\"\ntimeout = \"1s\"\n[backup]\nlevel = 1\nthreads = 1\nredis_method = \"logical\"\n",
            redis.url()
        )
    };
    let mut c = Checks::new("memory api");
    let tools = memory_tools();
    {
        let env = TestEnv::new();
        env.write_config(&config(&mem0.url()));
        for tool in &tools {
            let out = run_in(&env, tool.bin, tool.args, Duration::from_secs(60));
            let reached = out.json().is_some_and(|r| !(tool.memory_failed)(&r) && (tool.redis_done)(&r));
            c.check(reached, || format!("with the memory API up\n{}", out.dump()));
        }
    }
    for fault in [MemoryFault::Refused, MemoryFault::Blackholed, MemoryFault::Http500, MemoryFault::Http503] {
        let url = match fault {
            MemoryFault::Refused => refused.clone(),
            MemoryFault::Blackholed => format!("http://{}", hole.addr()),
            MemoryFault::Http500 => f500.url(),
            MemoryFault::Http503 => f503.url(),
        };
        let env = TestEnv::new();
        env.write_config(&config(&url));
        for tool in &tools {
            let out = run_in(&env, tool.bin, tool.args, Duration::from_secs(60));
            let what = format!("{fault:?}: {}", tool.args.join(" "));
            c.check(out.code == tool.code, || format!("{what}: exit {}, want {}\n{}", out.code, tool.code, out.dump()));
            // The 1 s timeout, a second request or two, and slack.
            c.check(out.elapsed <= Duration::from_secs(5), || {
                format!("{what}: took {:?}\n{}", out.elapsed, out.dump())
            });
            let report = out.json();
            c.check(report.as_ref().is_some_and(tool.memory_failed), || {
                format!("{what}: the memory target is not reported failed\n{}", out.dump())
            });
            c.check(report.as_ref().is_some_and(tool.redis_done), || {
                format!("{what}: Redis was not handled\n{}", out.dump())
            });
            c.check(!out.said().contains(SECRET), || format!("{what}: the API key is in the output\n{}", out.dump()));
        }
    }
    c.finish();
}
