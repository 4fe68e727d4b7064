//! Database migrations for favicon-finder, shared by SQLite and PostgreSQL.
//!
//! This crate never imports the application's entities: a migration describes the schema as
//! it was when written, so later entity changes cannot rewrite history.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_tables;
mod m20261128_000002_result_cached;
mod m20261128_000003_claim_index;
mod m20261129_000004_partial_indexes;
mod m20261201_000005_candidates_dropped;
mod m20261201_000006_api_keys;
mod m20261202_000007_job_source_ip;
mod m20261202_000008_icons;
mod m20261203_000009_lifecycle;
mod m20261205_000010_result_filters;
mod m20261206_000011_finished_seq;
mod m20261206_000012_fair_claims;
mod m20261207_000013_webhooks;
mod m20261207_000014_dark_icons;
mod m20261207_000015_watches;
mod m20261207_000016_job_trace;
mod m20261207_000017_change_blobs;

/// Applies and reverts the schema, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_tables::Migration),
            Box::new(m20261128_000002_result_cached::Migration),
            Box::new(m20261128_000003_claim_index::Migration),
            Box::new(m20261129_000004_partial_indexes::Migration),
            Box::new(m20261201_000005_candidates_dropped::Migration),
            Box::new(m20261201_000006_api_keys::Migration),
            Box::new(m20261202_000007_job_source_ip::Migration),
            Box::new(m20261202_000008_icons::Migration),
            Box::new(m20261203_000009_lifecycle::Migration),
            Box::new(m20261205_000010_result_filters::Migration),
            Box::new(m20261206_000011_finished_seq::Migration),
            Box::new(m20261206_000012_fair_claims::Migration),
            Box::new(m20261207_000013_webhooks::Migration),
            Box::new(m20261207_000014_dark_icons::Migration),
            Box::new(m20261207_000015_watches::Migration),
            Box::new(m20261207_000016_job_trace::Migration),
            Box::new(m20261207_000017_change_blobs::Migration),
        ]
    }
}
