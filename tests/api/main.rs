//! The one integration-test binary: each module is a feature, run against the real app on a
//! random port, a fake internet on loopback, and SQLite or (with `TEST_DATABASE_URL`)
//! PostgreSQL.

// Test code: a failed unwrap is the test failing, with the value in the message
// (the unwrap_used lint in Cargo.toml is for the service).
#![allow(clippy::unwrap_used)]

mod api_limits;
mod cache;
mod cli;
mod config_docs;
#[path = "../common/db.rs"]
mod db;
mod dns;
#[path = "../common/fake.rs"]
mod fake;
mod finder_cases;
mod finder_safety;
mod helpers;
mod https;
mod icons;
mod jobs;
mod limits;
mod migrations;
mod observability;
mod politeness;
mod promises;
mod promises_work;
mod queue;
mod recorder;
mod redis_tls;
mod schema;
mod sentry;
#[path = "../common/services.rs"]
mod services;
mod shutdown;
mod subscriptions;
#[path = "../common/tls.rs"]
mod tls;
mod validation;
