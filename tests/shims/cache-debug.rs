//! `cache-debug` built inside the test package, so the integration tests can run it.

fn main() -> std::process::ExitCode {
    cache_debug::main()
}
