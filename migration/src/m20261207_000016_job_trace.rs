//! `job.trace_context`: the W3C `traceparent` of the span that created the job, so each
//! domain's find, in whichever worker process claims it, joins the trace of the request that
//! asked for it. Null when the job was made without a trace (traces off, or not sampled).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Job {
    Table,
    TraceContext,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    // A version-00 traceparent is 55 characters; room for a later version's.
                    .add_column(string_len_null(Job::TraceContext, 128))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> std::result::Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Job::Table)
                    .drop_column(Job::TraceContext)
                    .to_owned(),
            )
            .await
    }
}
