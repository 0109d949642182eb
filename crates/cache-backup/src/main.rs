//! The `cache-backup` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    cache_backup::main()
}
