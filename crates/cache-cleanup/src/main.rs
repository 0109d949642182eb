//! The `cache-cleanup` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    cache_cleanup::main()
}
