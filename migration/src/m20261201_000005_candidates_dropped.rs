//! `result.candidates_dropped`: how many candidates a page declared beyond those kept.
//!
//! The check makes a negative count (a conversion gone wrong) a write the database refuses,
//! instead of a number nobody can explain later.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Result {
    Table,
    CandidatesDropped,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Result::Table)
                    .add_column(
                        integer(Result::CandidatesDropped)
                            .default(0)
                            .check(Expr::col(Result::CandidatesDropped).gte(0)),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Result::Table)
                    .drop_column(Result::CandidatesDropped)
                    .to_owned(),
            )
            .await
    }
}
