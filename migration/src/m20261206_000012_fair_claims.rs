//! Fair claims: `job.priority` (a job's weight in the workers' fair share, `normal` unless the
//! client asked otherwise), and `idx_job_processing`, the partial index a claim reads the jobs
//! with work left from: only processing jobs are in it, so it stays as small as the set of
//! running jobs however many finished jobs the table keeps.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Job {
    Table,
    Priority,
}

/// (name, table and columns, clause) of the new indexes.
const INDEXES: [(&str, &str, &str); 1] = [(
    "idx_job_processing",
    "job (created_at)",
    "status = 'processing'",
)];

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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        let db = manager.get_connection();
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
