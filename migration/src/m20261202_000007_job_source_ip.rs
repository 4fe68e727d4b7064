//! `job.source_ip`: the address a job without an API key came from, so the hourly allowances
//! can also be counted per address when anyone may write any `client_id` (`AUTH_MODE=off`).
//!
//! Null for jobs made with a key: their allowance follows the key's client, and an address
//! the service has no use for is not kept. The index serves the one query that reads the
//! column (an address's jobs in the last hour).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Job {
    Table,
    SourceIp,
    CreatedAt,
}

const INDEX: &str = "idx_job_source_ip_created_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    // The longest text form of an IPv6 address is 45 characters.
                    .add_column(string_len_null(Job::SourceIp, 45))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Job::Table)
                    .col(Job::SourceIp)
                    .col(Job::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        // SQLite will not drop a column an index still names.
        manager
            .drop_index(Index::drop().name(INDEX).table(Job::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .drop_column(Job::SourceIp)
                    .to_owned(),
            )
            .await
    }
}
