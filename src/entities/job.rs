//! `job`: one submitted batch of domains and its counters.

use sea_orm::entity::prelude::*;

/// The status column's type, from the shared vocabulary.
pub use crate::model::JobStatus;
use crate::model::job::progress;
use crate::model::{Job, Priority};

/// One row of `job`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job")]
pub struct Model {
    /// The job id given to the client.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The submitting client's row (`client.id`); the column keeps its first name,
    /// `client_id`, while everywhere else that name is the client's own name for itself.
    #[sea_orm(column_name = "client_id")]
    pub client_ref: Uuid,
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
    /// The address a job without an API key came from (for per-address allowances); none
    /// for a job made with a key.
    pub source_ip: Option<String>,
    /// The job's weight in the fair share of the workers' slots.
    pub priority: Priority,
    /// The W3C `traceparent` of the span that created the job, which each domain's find
    /// continues; none when the job was made outside a trace.
    pub trace_context: Option<String>,
}

impl Model {
    /// The job as every layer sees it, with its client's name.
    pub fn into_job(self, client: String) -> Job {
        Job {
            id: self.id,
            client,
            status: self.status,
            priority: self.priority,
            progress: progress(self.total, self.completed, self.failed),
            total: self.total,
            completed: self.completed,
            failed: self.failed,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Relations of `job`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The submitting client.
    #[sea_orm(
        belongs_to = "super::client::Entity",
        from = "Column::ClientRef",
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
