//! Dark variants of icons: `result.dark_icon_sha256` points at the stored bytes of the icon a
//! site declares for `prefers-color-scheme: dark` (kept beside the chosen one, served by
//! `GET /icons/{domain}?theme=dark`), and `domain_cache` keeps it like `icon_sha256`.
//!
//! The partial indexes make the icon collector's "is this blob still referenced" an index
//! probe for dark variants too, as `idx_result_icon` and `idx_domain_cache_icon` do for the
//! chosen icons.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Result {
    Table,
    DarkIconSha256,
}

#[derive(DeriveIden)]
enum DomainCache {
    Table,
    DarkIconSha256,
}

/// Partial indexes, written out because the queries repeat their clauses (SQLite uses a
/// partial index only when the query's terms imply its clause).
const INDEXES: [(&str, &str, &str); 2] = [
    (
        "idx_result_dark_icon",
        "result (dark_icon_sha256)",
        "dark_icon_sha256 IS NOT NULL",
    ),
    (
        "idx_domain_cache_dark_icon",
        "domain_cache (dark_icon_sha256)",
        "dark_icon_sha256 IS NOT NULL",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Result::Table)
                    .add_column(string_len_null(Result::DarkIconSha256, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(DomainCache::Table)
                    .add_column(string_len_null(DomainCache::DarkIconSha256, 64))
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
                    .table(DomainCache::Table)
                    .drop_column(DomainCache::DarkIconSha256)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Result::Table)
                    .drop_column(Result::DarkIconSha256)
                    .to_owned(),
            )
            .await
    }
}
