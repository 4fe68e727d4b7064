//! Browser tests: the dashboard (`/`) and GraphiQL (`/graphql`) in headless Chromium, driven
//! over the DevTools protocol ([`cdp`]) against the real app and the fake internet on
//! loopback. The page is cut off from every origin but the app's, and each test checks it
//! never tried one.
//!
//! Without Chromium (`/usr/bin/chromium`, or `CHROMIUM`) the tests are skipped with one
//! notice; under `CI=true` that is a failure. `UPDATE_SCREENSHOTS=1` rewrites the PNGs in
//! docs/ that the README shows.

// Test code: a failed unwrap is the test failing, with the value in the message
// (the unwrap_used lint in Cargo.toml is for the service).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
#[allow(
    dead_code,
    reason = "the browser tests use a part of the shared helpers"
)]
mod common;
#[allow(
    unused_imports,
    reason = "helpers.rs reaches them as crate::…, not all from this binary"
)]
use common::{client, db, fake, services, tls};

#[path = "../api/helpers.rs"]
#[allow(
    dead_code,
    unused_imports,
    reason = "the browser tests use a part of the API tests' helpers"
)]
mod helpers;

mod cdp;
mod dashboard;
mod graphiql;
mod job_page;
mod resume;
mod watches_page;
mod webhooks_page;
