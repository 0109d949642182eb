//! The `cache-analytics` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    cache_analytics::main()
}
