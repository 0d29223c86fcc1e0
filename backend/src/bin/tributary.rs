//! The `tributary` binary: see `tributary --help` and `docs/CLI.md`.

fn main() -> std::process::ExitCode {
    tributary_backend::cli::main()
}
