//! The `cache-optimizer` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    cache_optimizer::main()
}
