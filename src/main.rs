//! The `favicon-finder` binary: parse the command line, load configuration, run.

fn main() -> std::process::ExitCode {
    favicon_finder::cli::main()
}
