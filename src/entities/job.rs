//! `job`: one submitted batch of domains and its counters.

use sea_orm::entity::prelude::*;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, async_graphql::Enum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum JobStatus {
    /// Some domains are still pending.
    #[sea_orm(string_value = "processing")]
    Processing,
    /// Every domain finished and at least one has an icon.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Every domain finished and none has an icon.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Stopped on request before finishing.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl JobStatus {
    /// The lowercase name used by the REST API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job will change no more.
    pub fn is_final(self) -> bool {
        self != Self::Processing
    }
}

/// One row of `job`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job")]
pub struct Model {
    /// The job id given to the client.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The submitting client (`client.id`).
    pub client_id: Uuid,
    /// Life-cycle state.
    pub status: JobStatus,
    /// Distinct domains in the job.
    pub total: i32,
    /// Domains finished with an icon.
    pub completed: i32,
    /// Domains finished without one.
    pub failed: i32,
    /// When submitted.
    pub created_at: DateTimeUtc,
    /// When last changed.
    pub updated_at: DateTimeUtc,
}

impl Model {
    /// `floor(100 · (completed + failed) / total)`; an empty job counts as done.
    pub fn progress(&self) -> i32 {
        if self.total == 0 {
            100
        } else {
            ((i64::from(self.completed + self.failed) * 100) / i64::from(self.total)) as i32
        }
    }
}

/// Relations of `job`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The submitting client.
    #[sea_orm(
        belongs_to = "super::client::Entity",
        from = "Column::ClientId",
        to = "super::client::Column::Id"
    )]
    Client,
}

impl Related<super::client::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Client.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
