//! favicon-finder: finds the favicons of many websites at once, as background jobs.
//!
//! A client submits a job (a list of domains); workers claim the job's rows from the database,
//! fetch each site, find and verify its icon, and record the outcome; clients read progress
//! and results over GraphQL, a REST API compatible with the original Node service, or CSV.
//!
//! # Layout
//!
//! - [`config`][]: every environment variable, validated at start.
//! - [`telemetry`][]: logging, Sentry, OpenTelemetry traces and W3C trace context.
//! - [`metrics`][]: Prometheus metrics.
//! - [`error`][]: the API error type, its `Code`s, and its REST/GraphQL forms.
//! - [`redact`][]: secrets taken out of URLs before they are shown.
//! - [`model`][]: the shared vocabulary: statuses, error categories, what the finder found,
//!   the progress event, and the one result view every API, the CSV and events use.
//! - [`app`][]: builds the service from a config; runs the API and the worker pool until
//!   shutdown.
//! - [`clean`][]: bounds on every string taken from the web before it is stored.
//! - [`domain`][]: the `Domain` newtype (normalise + validate user input).
//! - [`entities`][]: SeaORM entities; the schema lives in the `migration` crate.
//! - [`store`][]: every query (jobs, results, the work queue) and the delivery guarantees.
//! - [`finder`][]: fetch a site, discover, verify and rank icons, safely.
//! - [`worker`][]: a pool over `step()` (claim → find → record → publish) that tests can drain.
//! - [`politeness`][]: the per-host and per-address limits across a fleet (leased counters in
//!   Redis, each process's share without it), behind the finder's `FleetSlots` seam.
//! - [`events`][]: the transport of progress events and wake-ups (Redis or in-process).
//! - [`jobs`][]: the core: the `Jobs` handle every adapter calls (submit, reads, export,
//!   progress) and every rule.
//! - [`retention`][]: the background purge of old jobs, old cache rows and unreferenced
//!   icon blobs, on one process of a fleet at a time.
//! - [`webhooks`][]: clients' endpoints and their use cases, Standard Webhooks signing, and
//!   the workers' delivery of the outbox (leased, retried, through the SSRF guard).
//! - [`watches`][]: domains re-checked on a schedule (their use cases and the workers'
//!   scheduler); a change of a domain's icon kept, sent as `icon.changed` and subscribable.
//! - [`icons`][]: serving the stored icons: newest icon, resize, fallback, on-demand lookup.
//! - [`api`][]: the adapters: the router and the one `AppState`; the REST and GraphQL APIs,
//!   subscriptions over WebSocket, health and metrics, the HTTP server with its timeouts.
//! - [`auth`][]: API keys, the caller a request acts for, signed download links.
//! - [`cli`][]: the `favicon-finder` command line.

pub mod api;
pub mod app;
pub mod auth;
pub mod clean;
pub mod cli;
pub mod config;
pub mod domain;
pub mod entities;
pub mod error;
pub mod events;
pub mod finder;
pub mod icons;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod politeness;
pub mod quiet;
pub mod redact;
pub mod retention;
pub mod store;
pub mod telemetry;
pub mod watches;
pub mod webhooks;
pub mod worker;
