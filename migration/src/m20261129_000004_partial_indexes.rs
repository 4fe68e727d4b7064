//! Partial indexes: each of the three secondary indexes the queue and the cache search holds
//! only the rows those searches can find. A finished row leaves the claim index, a row without a
//! lease is not in the lease index, and only fetched (not copied, not pending) results are in
//! the cache's index. Creating a job, and above all copying cached results, then maintains three
//! indexes per row instead of six (see BENCHMARKS.md).
//!
//! The `WHERE` clauses are written out by hand because the queries repeat them word for word
//! (the constants in `src/store/queue.rs`, which a test checks against this schema): SQLite
//! uses a partial index only when the query's terms match its clause.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, columns, clause) of the partial indexes, and the full indexes they replace.
const PARTIAL: [(&str, &str, &str); 3] = [
    (
        "idx_result_pending_order",
        "run_at, position",
        "status = 'pending'",
    ),
    (
        "idx_result_leased",
        "lease_owner",
        "lease_owner IS NOT NULL",
    ),
    (
        "idx_result_fetched",
        "domain, fetched_at",
        "cached = false AND status <> 'pending'",
    ),
];
const FULL: [(&str, &str); 3] = [
    ("idx_result_claim_order", "status, run_at, position"),
    ("idx_result_lease_owner", "lease_owner"),
    ("idx_result_domain_updated", "domain, updated_at"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in FULL {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        for (name, columns, clause) in PARTIAL {
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON result ({columns}) WHERE {clause}"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _, _) in PARTIAL {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        for (name, columns) in FULL {
            db.execute_unprepared(&format!("CREATE INDEX {name} ON result ({columns})"))
                .await?;
        }
        Ok(())
    }
}
