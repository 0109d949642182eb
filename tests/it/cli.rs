//! One command-line shape across the tools: common options before or after the subcommand,
//! the shared `--dry-run`/`--yes`, and one configuration-file resolver for reading and `init`.

use cache_tests::TestEnv;

use crate::{ANALYTICS, DEBUG, OPTIMIZER, SCHEDULER};

/// `--format` goes before or after the subcommand, in every tool.
#[test]
fn the_format_goes_before_or_after_the_subcommand() {
    let env = TestEnv::new();
    env.write_config("[system]\ngpu = false\n");
    for (bin, sub) in [(OPTIMIZER, "schedule"), (ANALYTICS, "collect"), (DEBUG, "config"), (SCHEDULER, "status")] {
        for args in [["--format", "json", sub], [sub, "--format", "json"]] {
            let out = env.run(bin, &args);
            assert_ne!(out.code(), 2, "{}", out.dump());
            assert!(out.stdout.trim_start().starts_with('{'), "{}", out.dump());
        }
    }
    // A format a command cannot write is a usage error naming both.
    let out = env.run(ANALYTICS, &["--format", "csv", "forecast"]);
    out.expect_code(2);
    assert!(out.stderr.contains("forecast") && out.stderr.contains("csv"), "{}", out.dump());
}

/// The optimizer's changing commands take the shared `--dry-run`/`--yes`, like every other:
/// without a terminal and without `--yes` nothing is changed and the refusal says why.
#[test]
fn the_optimizer_asks_like_every_changing_command() {
    let env = TestEnv::new();
    env.write_config("[system]\ngpu = false\n");
    for args in [&["run"][..], &["warm", "--force"], &["rollback", "latest"]] {
        let out = env.run(OPTIMIZER, args);
        out.expect_code(2);
        assert!(out.stderr.contains("--yes") && out.stderr.contains("--dry-run"), "{}", out.dump());
    }
    env.run(OPTIMIZER, &["run", "--dry-run", "--yes"]).expect_code(2);
    let runs = env.state_dir().join("runs.jsonl");
    assert!(!runs.exists(), "a refused command ran: {}", std::fs::read_to_string(&runs).unwrap());
    env.run(OPTIMIZER, &["run", "--yes"]).expect_code(0);
    let text = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"outcome\":\"success\"") && text.contains("\"job\":\"optimize\""), "{text}");
}

/// `cache-scheduler init` writes the file the tools then read, `XDG_CONFIG_HOME` included.
#[test]
fn init_writes_the_file_every_tool_reads() {
    let env = TestEnv::new();
    let xdg = env.path("xdg");
    let mut init = env.command(SCHEDULER, &["init"]);
    init.env("XDG_CONFIG_HOME", &xdg);
    env.run_command(init).expect_code(0);
    let written = xdg.join("cache-toolkit/config.toml");
    assert!(written.is_file(), "init did not write {}", written.display());
    let mut read = env.command(DEBUG, &["config", "--format", "json"]);
    read.env("XDG_CONFIG_HOME", &xdg);
    let shown = env.run_command(read);
    shown.expect_code(0);
    assert_eq!(shown.json()["file"], written.to_str().unwrap(), "{}", shown.dump());
    // Never over an existing file.
    let mut again = env.command(SCHEDULER, &["init"]);
    again.env("XDG_CONFIG_HOME", &xdg);
    env.run_command(again).expect_code(2);
}
