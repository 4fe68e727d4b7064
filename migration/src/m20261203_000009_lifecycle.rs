//! The data lifecycle (deleting jobs, retention, icon collection):
//!
//! - `job.deleted_at`: a job being deleted is hidden at once, while its results go in small
//!   batches; a process that stops half-way leaves the mark, and the retention task finishes.
//! - `domain_cache`: the newest real fetch of a domain, kept apart from job results when the
//!   job that fetched it is purged or deleted, so the cross-job cache survives purges. One row
//!   per domain, with the columns a cache hit copies.
//! - `idx_result_icon`: which results point at a stored icon, so collecting unreferenced icon
//!   blobs is an index probe per blob, not a scan of every result.
//! - `icon_blob.orphaned_at`: when a blob was first seen unreferenced (mark), so it is
//!   collected only after a grace period (sweep); see `src/store/lifecycle.rs`.
//! - `maintenance_lease`: a named lease, so one process of a fleet runs the retention task at a
//!   time, on either database.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Job {
    Table,
    DeletedAt,
}

#[derive(DeriveIden)]
enum IconBlob {
    Table,
    OrphanedAt,
}

#[derive(DeriveIden)]
enum DomainCache {
    Table,
    Domain,
    Status,
    FaviconUrl,
    Error,
    ErrorCode,
    FinalUrl,
    Mime,
    Width,
    Height,
    Candidates,
    CandidatesDropped,
    FetchedAt,
    IconSha256,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MaintenanceLease {
    Table,
    Name,
    Owner,
    LeaseUntil,
}

/// Partial indexes, written out because the queries repeat their clauses (SQLite uses a
/// partial index only when the query's terms imply its clause).
const INDEXES: [(&str, &str, &str); 2] = [
    (
        "idx_result_icon",
        "result (icon_sha256)",
        "icon_sha256 IS NOT NULL",
    ),
    (
        "idx_domain_cache_icon",
        "domain_cache (icon_sha256)",
        "icon_sha256 IS NOT NULL",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .add_column(timestamp_with_time_zone_null(Job::DeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(IconBlob::Table)
                    .add_column(timestamp_with_time_zone_null(IconBlob::OrphanedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DomainCache::Table)
                    .col(string_len(DomainCache::Domain, 253).primary_key())
                    .col(string_len(DomainCache::Status, 16))
                    .col(text_null(DomainCache::FaviconUrl))
                    .col(text_null(DomainCache::Error))
                    .col(string_len_null(DomainCache::ErrorCode, 32))
                    .col(text_null(DomainCache::FinalUrl))
                    .col(string_len_null(DomainCache::Mime, 64))
                    .col(integer_null(DomainCache::Width))
                    .col(integer_null(DomainCache::Height))
                    .col(json_binary_null(DomainCache::Candidates))
                    .col(integer(DomainCache::CandidatesDropped).default(0))
                    .col(timestamp_with_time_zone(DomainCache::FetchedAt))
                    .col(string_len_null(DomainCache::IconSha256, 64))
                    .col(timestamp_with_time_zone(DomainCache::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_domain_cache_fetched_at")
                    .table(DomainCache::Table)
                    .col(DomainCache::FetchedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MaintenanceLease::Table)
                    .col(string_len(MaintenanceLease::Name, 64).primary_key())
                    .col(uuid(MaintenanceLease::Owner))
                    .col(timestamp_with_time_zone(MaintenanceLease::LeaseUntil))
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
            .drop_table(Table::drop().table(MaintenanceLease::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(DomainCache::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(IconBlob::Table)
                    .drop_column(IconBlob::OrphanedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .drop_column(Job::DeletedAt)
                    .to_owned(),
            )
            .await
    }
}
