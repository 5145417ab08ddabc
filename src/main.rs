//! The `ferry` binary: everything lives in the library (`ferry::cli`).
fn main() -> std::process::ExitCode {
    ferry::cli::main()
}
