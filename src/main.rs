//! The `favicon-finder` binary: parse the command line, load configuration, run.

/// mimalloc instead of glibc's malloc: every domain allocates and frees many small buffers
/// across threads, and glibc's malloc/free was ~15 % of the service's CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    favicon_finder::cli::main()
}
