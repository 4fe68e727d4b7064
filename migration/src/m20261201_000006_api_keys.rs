//! `api_key`: the keys clients authenticate with. Only a SHA-256 of each key is stored (the
//! keys are long random tokens, so a fast hash is enough and a lookup by hash is an index
//! probe); the hash is unique so one key can never belong to two clients.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
    ClientId,
    Name,
    Scopes,
    Hash,
    Prefix,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKey::Table)
                    .col(pk_uuid(ApiKey::Id))
                    .col(string_len(ApiKey::ClientId, 255))
                    .col(string_len(ApiKey::Name, 255).default(""))
                    .col(string_len(ApiKey::Scopes, 64))
                    .col(string_len_uniq(ApiKey::Hash, 64))
                    .col(string_len(ApiKey::Prefix, 16))
                    .col(timestamp_with_time_zone(ApiKey::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKey::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiKey::RevokedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiKey::Table).to_owned())
            .await
    }
}
