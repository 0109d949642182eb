//! The `cache-debug` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    cache_debug::main()
}
