//! Indexes for reading a job's results filtered, in submission order: by status
//! (`idx_result_job_status`), and the job's finished failures by code
//! (`idx_result_job_failure`, partial: only failed rows, so successes and the pending queue
//! never maintain it). A filtered page or slice walks one of them in position order and stops
//! after the rows it needs; the failure groups are counted from the second alone.
//!
//! The partial index's clause is written out because the queries repeat it word for word
//! (`FAILED` in `src/store/queue.rs`, checked against this schema): SQLite uses a partial
//! index only when the query's terms imply its clause.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, columns, clause) of the new indexes on `result`.
const INDEXES: [(&str, &str, Option<&str>); 2] = [
    ("idx_result_job_status", "job_id, status, position", None),
    (
        "idx_result_job_failure",
        "job_id, error_code, position",
        Some("status = 'failed'"),
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, columns, clause) in INDEXES {
            let clause = clause.map(|c| format!(" WHERE {c}")).unwrap_or_default();
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON result ({columns}){clause}"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
