//! The claim index covers `ORDER BY run_at, position`: without `position` in it, every claim
//! sorted all pending rows of a job (they share `run_at`), which made a job's claims cost
//! O(n²) (see BENCHMARKS.md).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Result {
    Table,
    Status,
    RunAt,
    Position,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_result_claim")
                    .table(Result::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_result_claim_order")
                    .table(Result::Table)
                    .col(Result::Status)
                    .col(Result::RunAt)
                    .col(Result::Position)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_result_claim_order")
                    .table(Result::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_result_claim")
                    .table(Result::Table)
                    .col(Result::Status)
                    .col(Result::RunAt)
                    .to_owned(),
            )
            .await
    }
}
