//! The `cache-health` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    cache_health::main()
}
