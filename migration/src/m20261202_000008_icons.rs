//! `icon_blob` and `result.icon_sha256`: the chosen icon's bytes, stored once per distinct
//! content (SHA-256), and each result's pointer to them.
//!
//! Content addressing makes storage grow with distinct icons, not with jobs: two domains (or
//! two jobs, or a cached copy) with the same icon point at one row. There is no foreign key
//! from `result` to `icon_blob`: a blob is written before any row points at it and is never
//! deleted, and SQLite cannot add a column with a foreign key to an existing table.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IconBlob {
    Table,
    Sha256,
    Mime,
    Bytes,
    Width,
    Height,
    Size,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Result {
    Table,
    IconSha256,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IconBlob::Table)
                    .col(string_len(IconBlob::Sha256, 64).primary_key())
                    .col(string_len(IconBlob::Mime, 64))
                    .col(blob(IconBlob::Bytes))
                    .col(integer(IconBlob::Width))
                    .col(integer(IconBlob::Height))
                    .col(integer(IconBlob::Size).check(Expr::col(IconBlob::Size).gte(0)))
                    .col(timestamp_with_time_zone(IconBlob::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Result::Table)
                    .add_column(string_len_null(Result::IconSha256, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Result::Table)
                    .drop_column(Result::IconSha256)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(IconBlob::Table).to_owned())
            .await
    }
}
