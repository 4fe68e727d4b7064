//! `result.finished_seq`: a domain's place in its job's order of finishing (1, 2, 3, ...), so
//! a subscriber that reconnects can ask for every domain that finished after the last one it
//! heard of (`jobProgress(after:)`), and a feed can tell a missing domain from a late one.
//!
//! The numbers are given under the job row's lock, in the transaction that moves the job's
//! counters, so they are dense, follow commit order, and the largest equals
//! `completed + failed`. Two partial indexes: `idx_result_finished_seq` reads a job's
//! finished domains after a cursor (pending rows never enter it), and `idx_result_unnumbered`
//! finds the rows a transaction has just finished and not yet numbered (it is empty between
//! transactions). Rows finished before this migration are numbered here, in the order they
//! were last written.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Result {
    Table,
    FinishedSeq,
}

/// (name, columns, clause) of the new indexes on `result`.
const INDEXES: [(&str, &str, &str); 2] = [
    (
        "idx_result_finished_seq",
        "job_id, finished_seq",
        "finished_seq IS NOT NULL",
    ),
    (
        "idx_result_unnumbered",
        "job_id, position",
        "finished_seq IS NULL AND status <> 'pending'",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Result::Table)
                    .add_column(integer_null(Result::FinishedSeq))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE result SET finished_seq = s.rn \
             FROM (SELECT id AS rid, row_number() OVER \
                     (PARTITION BY job_id ORDER BY updated_at, position) AS rn \
                   FROM result WHERE status <> 'pending') AS s \
             WHERE result.id = s.rid",
        )
        .await?;
        for (name, columns, clause) in INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON result ({columns}) WHERE {clause}"
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
        manager
            .alter_table(
                Table::alter()
                    .table(Result::Table)
                    .drop_column(Result::FinishedSeq)
                    .to_owned(),
            )
            .await
    }
}
