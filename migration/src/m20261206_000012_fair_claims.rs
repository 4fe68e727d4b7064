//! Fair claims: `job.priority` (a job's weight in the workers' fair share, `normal` unless the
//! client asked otherwise), and `idx_job_processing`, the partial index a claim reads the jobs
//! with work left from: only processing jobs are in it, so it stays as small as the set of
//! running jobs however many finished jobs the table keeps.
//!
//! A fair claim takes each planned job's due rows in order, so the claim index now leads with
//! the job: `idx_result_job_due` replaces `idx_result_pending_order`, whose one reader was the
//! old first-in-first-out claim over every job. The other searches of pending rows (queue
//! depth, the reapers, a cancelled job's leftovers) read the new index as well (a job's
//! leftovers better: they name the job), so creating a job maintains one index fewer.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Job {
    Table,
    Priority,
}

/// (name, table and columns, clause) of the new indexes.
const INDEXES: [(&str, &str, &str); 2] = [
    (
        "idx_job_processing",
        "job (client_id, created_at)",
        "status = 'processing'",
    ),
    (
        "idx_result_job_due",
        "result (job_id, run_at, position)",
        "status = 'pending'",
    ),
];

/// The index the new claim index replaces, as `m20261129_000004_partial_indexes` made it.
const REPLACED: (&str, &str, &str) = (
    "idx_result_pending_order",
    "result (run_at, position)",
    "status = 'pending'",
);

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .add_column(string_len(Job::Priority, 16).default("normal"))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for (name, on, clause) in INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX {name} ON {on} WHERE {clause}"))
                .await?;
        }
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {}", REPLACED.0))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        let db = manager.get_connection();
        let (name, on, clause) = REPLACED;
        db.execute_unprepared(&format!("CREATE INDEX {name} ON {on} WHERE {clause}"))
            .await?;
        for (name, _, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .drop_column(Job::Priority)
                    .to_owned(),
            )
            .await
    }
}
