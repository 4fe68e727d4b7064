//! The one integration-test binary: each module is a feature, run against the real app on a
//! random port, a fake internet on loopback, and SQLite or (with `TEST_DATABASE_URL`)
//! PostgreSQL.

// Test code: a failed unwrap is the test failing, with the value in the message
// (the unwrap_used lint in Cargo.toml is for the service).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
use common::{client, db, fake, redis, services, tls};

mod accounts;
mod api_limits;
mod cache;
mod cli;
mod config_docs;
mod dashboard;
mod deploy_config;
mod dns;
mod docs_truth;
mod documented;
mod documented_process;
mod exposure;
mod fairness;
mod fanout;
mod finder_cases;
mod finder_safety;
mod first_start;
mod graphql_http;
mod helpers;
mod https;
mod icons;
mod icons_access;
mod icons_fresh;
mod icons_render;
mod jobs;
mod lifecycle;
mod limits;
mod migrations;
mod observability;
mod openapi;
mod openapi_scopes;
mod politeness;
mod priority;
mod promises;
mod promises_work;
mod queue;
mod queue_standing;
mod recorder;
mod redis_tls;
mod request_id;
mod request_metrics;
mod result_fields;
mod result_filters;
mod retention;
mod schema;
mod sentry;
mod shutdown;
mod subscriptions;
mod tenancy;
mod validation;
mod watches;
mod watches_events;
mod webhook_receiver;
mod webhooks_api;
mod webhooks_delivery;
mod webhooks_fleet;
mod webhooks_readme;
mod webhooks_safety;
mod webhooks_secrets;
