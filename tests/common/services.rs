//! Whether a test may run without a service it needs, shared by both test binaries.
//!
//! A plain `cargo test` on a laptop without PostgreSQL or Redis runs what it can and says what
//! it skipped. Under `REQUIRE_SERVICES=1` (set by `.ci/run`) a missing service fails the test
//! instead, so CI can never report green over tests that did not run.

/// True when the service is there. When it is not: panics under `REQUIRE_SERVICES=1`,
/// otherwise says on stderr that the calling test is skipped and returns false.
pub fn available(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("REQUIRE_SERVICES=1 but {what} is missing");
    }
    eprintln!("skipped: {what} is missing (set it, or REQUIRE_SERVICES=1 to make this fail)");
    false
}

/// Whether a program can be started from `PATH`.
#[allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
