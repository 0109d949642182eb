//! The `cache-scheduler` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    cache_scheduler::main()
}
