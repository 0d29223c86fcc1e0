//! The `tributary` binary: see `tributary --help` and `docs/CLI.md`.

/// The server allocates and frees many small buffers across threads (request bodies, events,
/// batches); mimalloc does that with less CPU than glibc's allocator (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tributary_backend::cli::main()
}
