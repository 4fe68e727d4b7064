//! The `favicon-finder` binary: parse the command line, load configuration, run.

use std::os::unix::process::CommandExt;

/// mimalloc instead of glibc's malloc: every domain allocates and frees many small buffers
/// across threads, and glibc's malloc/free was ~15 % of the service's CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mimalloc setting the binary runs with unless the operator sets it: arena memory
/// committed as it is used rather than all at once. On Linux an eagerly committed arena gives
/// freed memory back lazily, so its pages stay in the RSS; with this setting a 10,000-domain
/// job peaked at 144–164 MB instead of 223–249 MB, at the same rate (BENCHMARKS.md).
const ALLOCATOR_SETTING: (&str, &str) = ("MIMALLOC_ARENA_EAGER_COMMIT", "0");

fn main() -> std::process::ExitCode {
    restart_with_allocator_setting();
    favicon_finder::cli::main()
}

/// mimalloc reads its settings from the environment when the process starts, before `main`
/// and before the arena they govern is made, so the only way to apply one from here is to
/// start the same binary again, in place (same PID), with it set. Does nothing when the
/// variable is already set (by the operator, or by the first start); when the restart fails,
/// runs on with mimalloc's defaults.
fn restart_with_allocator_setting() {
    let (name, value) = ALLOCATOR_SETTING;
    if std::env::var_os(name).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // Only returns if the exec failed.
    let _ = command.args(args).env(name, value).exec();
}
