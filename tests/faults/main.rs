//! Fault tests: the real `favicon-finder` binary as child processes (so they can be killed,
//! stopped and resumed), a fake internet on loopback, short leases and backoffs — and after
//! each test the invariants checked in SQL (`harness::check_invariants`).
//!
//! PostgreSQL tests need `TEST_DATABASE_URL` (each makes its own `ff_test_<uuid>` database);
//! the tests that stop PostgreSQL need `FAULTS_PG_BIN` and run a server of their own. The
//! SQLite test always runs. Run them with `.ci/faults`, or `cargo test --test faults`.
//!
//! `hostile` meets sites built to stop, crash or bloat a worker, on both databases.
//! `webhooks`: a job's event outlives a worker killed with SIGKILL before sending it.
//! `politeness` runs two workers sharing a Redis of the test's own: the per-host and
//! per-address limits hold across both, with Redis stopped mid-job, and after a SIGKILL.
//!
//! Each test prints what it measured (times, counts); `--nocapture` shows them.
//!
//! The atomic creation of a 100,000-domain job (a bad entry near the end writes nothing) is
//! covered by `tests/api/validation.rs` (`maximum_size_job`), not repeated here. The store-level
//! stale-writer checks are in `tests/api/queue.rs`; here the stale writer is a real process.

// Test code: a failed unwrap is the test failing, with the value in the message
// (the unwrap_used lint in Cargo.toml is for the service).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
use common::{client, db, fake, otlp, redis, services, tls};

mod harness;
mod hostile;
mod pg_restart;
mod politeness;
mod sqlite;
mod trace_sampling;
mod traces;
mod webhooks;
mod workers;
