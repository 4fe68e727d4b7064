//! `job`: one submitted batch of domains and its counters.

use sea_orm::entity::prelude::*;

/// The status column's type, from the shared vocabulary.
pub use crate::model::JobStatus;
use crate::model::ProgressEvent;

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
    /// The address a job without an API key came from (for per-address allowances); none
    /// for a job made with a key.
    pub source_ip: Option<String>,
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

/// The event that says where the job stands, with no finished domains.
impl From<&Model> for ProgressEvent {
    fn from(job: &Model) -> Self {
        Self {
            job_id: job.id,
            status: job.status,
            total: job.total,
            completed: job.completed,
            failed: job.failed,
            progress: job.progress(),
            finished: Vec::new(),
            // Finished domains are numbered in the transaction that counts them.
            cursor: job.completed + job.failed,
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
