//! The GraphQL objects and inputs of jobs. A result is [`crate::model::ResultView`] (GraphQL
//! `Result`) and a page of them [`crate::jobs::ResultPage`], shared with REST.

use super::*;

/// A job: a batch of domains being searched.
#[derive(SimpleObject)]
pub struct Job {
    /// The job id.
    id: ID,
    /// The submitting client's `clientId`.
    client_id: String,
    /// Life-cycle state.
    status: JobStatus,
    /// Percent of domains finished, rounded down.
    progress: i32,
    /// Distinct domains in the job.
    total: i32,
    /// Domains finished with an icon.
    completed: i32,
    /// Domains finished without one.
    failed: i32,
    /// When submitted.
    created_at: DateTime<Utc>,
    /// When last changed.
    updated_at: DateTime<Utc>,
}

impl From<JobView> for Job {
    fn from(view: JobView) -> Self {
        let progress = view.job.progress();
        let job = view.job;
        Self {
            id: ID(job.id.to_string()),
            client_id: view.client_name,
            status: job.status,
            progress,
            total: job.total,
            completed: job.completed,
            failed: job.failed,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

/// One page of a client's jobs, newest first.
#[derive(SimpleObject)]
pub struct JobPage {
    /// The jobs on this page.
    pub(super) jobs: Vec<Job>,
    /// This page's number (from 1).
    pub(super) page: i32,
    /// Page size.
    pub(super) per_page: i32,
    /// The client's jobs in all.
    pub(super) total: i32,
}

/// Input of `createJob`.
#[derive(InputObject)]
pub struct CreateJobInput {
    /// The caller's name for itself.
    pub client_id: String,
    /// Domains or URLs; normalised, and duplicates merged.
    pub domains: Vec<String>,
    /// Reuse a domain's result from an earlier job fetched at most this many seconds ago
    /// instead of fetching it (default `CACHE_MAX_AGE_SECS`; 0 always fetches).
    pub max_age_seconds: Option<i64>,
}
