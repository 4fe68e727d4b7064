//! `result`: one domain of one job — its outcome, and while pending, the unit of work.

use sea_orm::entity::prelude::*;

/// Where one domain is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, async_graphql::Enum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum ResultStatus {
    /// Not finished yet (queued, leased, or waiting for a retry).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// A verified favicon was found.
    #[sea_orm(string_value = "success")]
    Success,
    /// Finished without a favicon.
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl ResultStatus {
    /// The lowercase name used by the REST API, the CSV and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }
}

/// One row of `result`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "result")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The job it belongs to.
    pub job_id: Uuid,
    /// The domain's place among the job's distinct domains (0-based, dense), for ordering.
    pub position: i32,
    /// The normalised domain.
    pub domain: String,
    /// Outcome so far.
    pub status: ResultStatus,
    /// The chosen icon, on success.
    pub favicon_url: Option<String>,
    /// Human-readable failure (or the last transient failure while retrying).
    pub error: Option<String>,
    /// Failure category code (see `finder::ErrorCategory`).
    pub error_code: Option<String>,
    /// Tries started so far (stamped at claim).
    pub tries: i32,
    /// The home page after redirects.
    pub final_url: Option<String>,
    /// Sniffed mime of the chosen icon.
    pub mime: Option<String>,
    /// Real width of the chosen icon.
    pub width: Option<i32>,
    /// Real height of the chosen icon.
    pub height: Option<i32>,
    /// Every candidate found, as JSON (`Vec<finder::Candidate>`).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub candidates: Option<Json>,
    /// How many candidates the page declared beyond those kept in `candidates`.
    pub candidates_dropped: i32,
    /// When the finder produced the stored outcome (for a cached one: the original fetch).
    pub fetched_at: Option<DateTimeUtc>,
    /// Copied from an earlier job's result instead of fetched (the cross-job cache).
    pub cached: bool,
    /// Not to be claimed before this time (retry backoff).
    pub run_at: DateTimeUtc,
    /// The worker process holding the row, while leased.
    pub lease_owner: Option<Uuid>,
    /// The lease's end; after it any worker may claim the row again.
    pub lease_until: Option<DateTimeUtc>,
    /// The stored bytes of the chosen icon (`icon_blob.sha256`), on success when kept.
    pub icon_sha256: Option<String>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `result`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owning job.
    #[sea_orm(
        belongs_to = "super::job::Entity",
        from = "Column::JobId",
        to = "super::job::Column::Id"
    )]
    Job,
}

impl ActiveModelBehavior for ActiveModel {}
