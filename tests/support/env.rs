//! A clean environment per test, and a runner whose failures explain themselves.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Variables removed from every child: anything that could point a tool at real systems.
const SCRUBBED: &[&str] = &[
    "REDIS_URL",
    "UPSTASH_REDIS_REST_URL",
    "UPSTASH_REDIS_REST_TOKEN",
    "UPSTASH_URL",
    "UPSTASH_TOKEN",
    "DATABASE_URL",
    "MEM0_URL",
    "MEM0_API_KEY",
    "PROJECT_NAME",
    "STATE_DIRECTORY",
    "XDG_STATE_HOME",
    "XDG_CONFIG_HOME",
    "NO_COLOR",
];

/// `[health]` thresholds that judge the host loosely, for tests whose outcome is a tier's and not
/// the machine's: the load, memory and disk of a shared CI runner (its disk can be 92% full) are
/// not the test's doing.
pub const HOST_JUDGED_LOOSELY: &str = "[health]\n\
    load_per_cpu = { warn = 1000.0, crit = 2000.0 }\n\
    memory_percent = { warn = 99.9, crit = 100.0 }\n\
    disk_percent = { warn = 99.9, crit = 100.0 }\n";

/// A temporary directory with a state directory and an optional config file.
pub struct TestEnv {
    dir: tempfile::TempDir,
    logs: Mutex<Vec<(String, PathBuf)>>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// A new environment.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Self { dir, logs: Mutex::new(Vec::new()) }
    }

    /// The state directory every command uses (`--state-dir` is passed explicitly).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A path inside the temporary directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `config.toml` and returns its path; commands then get `--config` with it.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Adds a server log to the dump printed when a command's check fails.
    pub fn watch_log(&self, name: &str, path: impl AsRef<Path>) {
        self.logs.lock().unwrap().push((name.to_owned(), path.as_ref().to_path_buf()));
    }

    /// A command for `bin` with a scrubbed environment, `HOME` in the temp dir, and
    /// `--state-dir` (and `--config`, once written) appended after `args`.
    pub fn command(&self, bin: &str, args: &[&str]) -> Command {
        let mut command = Command::new(bin);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CACHE_") || SCRUBBED.contains(&key.as_str()) {
                command.env_remove(&key);
            }
        }
        command.env("HOME", self.path("home"));
        command.args(args).arg("--state-dir").arg(self.state_dir());
        let config = self.path("config.toml");
        if config.is_file() {
            command.arg("--config").arg(config);
        }
        command.stdin(Stdio::null());
        command
    }

    /// Runs `bin args...` to completion.
    pub fn run(&self, bin: &str, args: &[&str]) -> RunOutput {
        self.run_command(self.command(bin, args))
    }

    /// Runs a prepared command to completion.
    pub fn run_command(&self, mut command: Command) -> RunOutput {
        let argv = format!("{command:?}");
        let start = Instant::now();
        let output = command.output().unwrap_or_else(|e| panic!("running {argv}: {e}"));
        RunOutput {
            argv,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: start.elapsed(),
            logs: self.logs.lock().unwrap().clone(),
        }
    }

    /// Every file under the state directory, with its content.
    pub fn state_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![self.state_dir()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        files
    }
}

/// What a command did.
pub struct RunOutput {
    /// The command line, for messages.
    pub argv: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
    logs: Vec<(String, PathBuf)>,
}

impl RunOutput {
    /// The exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Everything about the run, and the watched server logs.
    pub fn dump(&self) -> String {
        let mut text = format!(
            "command: {}\nstatus: {}\nelapsed: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.argv, self.status, self.elapsed, self.stdout, self.stderr
        );
        for (name, path) in &self.logs {
            let log = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            text.push_str(&format!("--- {name} log (last 40 lines) ---\n"));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Panics with [`RunOutput::dump`] unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected exit code\n{}", self.dump());
        self
    }

    /// Parses stdout as JSON, panicking with the dump when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.dump()))
    }
}
