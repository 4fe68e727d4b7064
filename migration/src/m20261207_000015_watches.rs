//! Watches: a client's set of domains re-checked on a schedule (`watch`, `watch_domain`), what
//! the service last knew decisively about each domain (`icon_state`, one row per domain,
//! whoever looked), and the history of changes to it (`icon_change`). A watch's re-checks are
//! ordinary jobs marked with `job.watch_id`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Job {
    Table,
    WatchId,
}

#[derive(DeriveIden)]
enum Watch {
    Table,
    Id,
    ClientId,
    Name,
    EverySecs,
    CreatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum WatchDomain {
    Table,
    WatchId,
    Domain,
    Position,
    NextCheckAt,
    LastCheckedAt,
    LastStatus,
    LastErrorCode,
}

#[derive(DeriveIden)]
enum IconState {
    Table,
    Domain,
    Status,
    Url,
    Sha256,
    Mime,
    Width,
    Height,
    Bytes,
    ErrorCode,
    CheckedAt,
    ChangedAt,
}

/// (name, table and columns, clause) of the indexes.
const INDEXES: [(&str, &str, &str); 7] = [
    (
        "idx_watch_client",
        "watch (client_id, created_at)",
        "deleted_at IS NULL",
    ),
    (
        "idx_watch_domain_due",
        "watch_domain (next_check_at)",
        "1 = 1",
    ),
    (
        "idx_watch_domain_order",
        "watch_domain (watch_id, position)",
        "1 = 1",
    ),
    ("idx_watch_domain_domain", "watch_domain (domain)", "1 = 1"),
    (
        "idx_icon_change_domain",
        "icon_change (domain, detected_at)",
        "1 = 1",
    ),
    (
        "idx_icon_change_detected",
        "icon_change (detected_at)",
        "1 = 1",
    ),
    (
        "idx_job_watch",
        "job (watch_id, updated_at)",
        "watch_id IS NOT NULL",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .add_column(uuid_null(Job::WatchId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Watch::Table)
                    .col(pk_uuid(Watch::Id))
                    .col(uuid(Watch::ClientId))
                    .col(text_null(Watch::Name))
                    .col(big_integer(Watch::EverySecs))
                    .col(timestamp_with_time_zone(Watch::CreatedAt))
                    .col(timestamp_with_time_zone_null(Watch::DeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WatchDomain::Table)
                    .col(uuid(WatchDomain::WatchId))
                    .col(text(WatchDomain::Domain))
                    .col(integer(WatchDomain::Position))
                    .col(timestamp_with_time_zone(WatchDomain::NextCheckAt))
                    .col(timestamp_with_time_zone_null(WatchDomain::LastCheckedAt))
                    .col(string_len_null(WatchDomain::LastStatus, 16))
                    .col(string_len_null(WatchDomain::LastErrorCode, 32))
                    .primary_key(
                        Index::create()
                            .col(WatchDomain::WatchId)
                            .col(WatchDomain::Domain),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IconState::Table)
                    .col(text(IconState::Domain).primary_key())
                    .col(string_len(IconState::Status, 16))
                    .col(text_null(IconState::Url))
                    .col(string_len_null(IconState::Sha256, 64))
                    .col(text_null(IconState::Mime))
                    .col(integer_null(IconState::Width))
                    .col(integer_null(IconState::Height))
                    .col(integer_null(IconState::Bytes))
                    .col(string_len_null(IconState::ErrorCode, 32))
                    .col(timestamp_with_time_zone(IconState::CheckedAt))
                    .col(timestamp_with_time_zone(IconState::ChangedAt))
                    .to_owned(),
            )
            .await?;
        let mut change = Table::create();
        change
            .table(Alias::new("icon_change"))
            .col(pk_uuid(Alias::new("id")))
            .col(text(Alias::new("domain")));
        for side in ["before", "after"] {
            let name = |col: &str| Alias::new(format!("{side}_{col}"));
            change
                .col(string_len(name("status"), 16))
                .col(text_null(name("url")))
                .col(string_len_null(name("sha256"), 64))
                .col(text_null(name("mime")))
                .col(integer_null(name("width")))
                .col(integer_null(name("height")))
                .col(integer_null(name("bytes")))
                .col(string_len_null(name("error_code"), 32))
                .col(timestamp_with_time_zone(name("at")));
        }
        change
            .col(timestamp_with_time_zone(Alias::new("detected_at")))
            .col(string_len(Alias::new("source"), 16))
            .col(boolean(Alias::new("reported")));
        manager.create_table(change.to_owned()).await?;
        let db = manager.get_connection();
        for (name, on, clause) in INDEXES {
            let clause = if clause == "1 = 1" {
                String::new()
            } else {
                format!(" WHERE {clause}")
            };
            db.execute_unprepared(&format!("CREATE INDEX {name} ON {on}{clause}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        for table in ["icon_change", "icon_state", "watch_domain", "watch"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS idx_job_watch")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .drop_column(Job::WatchId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
