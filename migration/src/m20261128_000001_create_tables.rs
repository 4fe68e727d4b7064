//! The three tables: client, job and result (the result row is also the unit of work).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
#[expect(
    clippy::enum_variant_names,
    reason = "column names from the data model"
)]
enum Client {
    Table,
    Id,
    ClientId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Job {
    Table,
    Id,
    ClientId,
    Status,
    Total,
    Completed,
    Failed,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Result {
    Table,
    Id,
    JobId,
    Position,
    Domain,
    Status,
    FaviconUrl,
    Error,
    ErrorCode,
    Tries,
    FinalUrl,
    Mime,
    Width,
    Height,
    Candidates,
    FetchedAt,
    RunAt,
    LeaseOwner,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Client::Table)
                    .col(pk_uuid(Client::Id))
                    .col(string_len_uniq(Client::ClientId, 255))
                    .col(timestamp_with_time_zone(Client::CreatedAt))
                    .col(timestamp_with_time_zone(Client::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Job::Table)
                    .col(pk_uuid(Job::Id))
                    .col(uuid(Job::ClientId))
                    .col(string_len(Job::Status, 16))
                    .col(integer(Job::Total))
                    .col(integer(Job::Completed).default(0))
                    .col(integer(Job::Failed).default(0))
                    .col(timestamp_with_time_zone(Job::CreatedAt))
                    .col(timestamp_with_time_zone(Job::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_job_client")
                            .from(Job::Table, Job::ClientId)
                            .to(Client::Table, Client::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_job_client_created")
                    .table(Job::Table)
                    .col(Job::ClientId)
                    .col(Job::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Result::Table)
                    .col(pk_uuid(Result::Id))
                    .col(uuid(Result::JobId))
                    .col(integer(Result::Position))
                    .col(string_len(Result::Domain, 253))
                    .col(string_len(Result::Status, 16))
                    .col(text_null(Result::FaviconUrl))
                    .col(text_null(Result::Error))
                    .col(string_len_null(Result::ErrorCode, 32))
                    .col(integer(Result::Tries).default(0))
                    .col(text_null(Result::FinalUrl))
                    .col(string_len_null(Result::Mime, 64))
                    .col(integer_null(Result::Width))
                    .col(integer_null(Result::Height))
                    .col(json_binary_null(Result::Candidates))
                    .col(timestamp_with_time_zone_null(Result::FetchedAt))
                    .col(timestamp_with_time_zone(Result::RunAt))
                    .col(uuid_null(Result::LeaseOwner))
                    .col(timestamp_with_time_zone_null(Result::LeaseUntil))
                    .col(timestamp_with_time_zone(Result::CreatedAt))
                    .col(timestamp_with_time_zone(Result::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_result_job")
                            .from(Result::Table, Result::JobId)
                            .to(Job::Table, Job::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A domain appears once per job; also serves lookups by (job, domain).
        manager
            .create_index(
                Index::create()
                    .name("uq_result_job_domain")
                    .table(Result::Table)
                    .col(Result::JobId)
                    .col(Result::Domain)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Pages and the CSV read a job's rows in submission order.
        manager
            .create_index(
                Index::create()
                    .name("idx_result_job_position")
                    .table(Result::Table)
                    .col(Result::JobId)
                    .col(Result::Position)
                    .to_owned(),
            )
            .await?;
        // The claim scans due pending rows in order.
        manager
            .create_index(
                Index::create()
                    .name("idx_result_claim")
                    .table(Result::Table)
                    .col(Result::Status)
                    .col(Result::RunAt)
                    .to_owned(),
            )
            .await?;
        // Heartbeats and releases find a worker's own rows.
        manager
            .create_index(
                Index::create()
                    .name("idx_result_lease_owner")
                    .table(Result::Table)
                    .col(Result::LeaseOwner)
                    .to_owned(),
            )
            .await?;
        // The cross-job cache looks up a domain's most recent result.
        manager
            .create_index(
                Index::create()
                    .name("idx_result_domain_updated")
                    .table(Result::Table)
                    .col(Result::Domain)
                    .col(Result::UpdatedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Result::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Job::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Client::Table).to_owned())
            .await
    }
}
