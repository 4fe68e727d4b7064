//! Indexes on the icon hashes the change history names (`icon_change.before_sha256`,
//! `after_sha256`): a version a change replaced stays in `icon_blob`, and is served by
//! `?sha=`, for as long as the history keeps the change, so the blob collector and the
//! `?sha=` check look a hash up in the history as they do in the results and the cache.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, column) of the indexes, each over the rows that name a hash.
const INDEXES: [(&str, &str); 2] = [
    ("idx_icon_change_before_sha256", "before_sha256"),
    ("idx_icon_change_after_sha256", "after_sha256"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, column) in INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON icon_change ({column}) WHERE {column} IS NOT NULL"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
