//! The GraphQL objects and inputs of jobs. A result is [`crate::model::ResultView`] (GraphQL
//! `Result`) and a page of them [`crate::jobs::ResultPage`], shared with REST.

use super::*;
use crate::jobs::FailureGroup;

/// A job: a batch of domains being searched.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Job {
    /// The job as read for the caller, its fields shown as they are.
    #[graphql(flatten)]
    job: crate::model::Job,
}

impl From<crate::model::Job> for Job {
    fn from(job: crate::model::Job) -> Self {
        Self { job }
    }
}

#[async_graphql::ComplexObject]
impl Job {
    /// The job id.
    async fn id(&self) -> ID {
        ID(self.job.id.to_string())
    }

    /// A signed link to the job's CSV that works without a key (a browser can open it) until
    /// it expires (`DOWNLOAD_URL_TTL_SECS`, 15 minutes by default); absolute under
    /// `PUBLIC_URL` when that is set, a path otherwise. Null for a key without the `read`
    /// scope (what `createJob` and `cancelJob` answer it), since the link reads the results.
    async fn download_url(&self, c: &Context<'_>) -> Result<Option<String>> {
        Ok(jobs::Jobs::may_read(caller(c)?).then(|| crate::api::download_url(ctx(c), self.job.id)))
    }

    /// Where the job stands among the work the workers share: its domains left and being
    /// fetched, and how many other jobs and clients wait beside it (counts only, never who).
    /// Null once the job is final.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn queue(&self, c: &Context<'_>) -> Result<Option<crate::model::QueueStanding>> {
        let _turn = db_turn(c).await;
        ctx(c)
            .jobs
            .queue_standing(&self.job)
            .await
            .map_err(AppError::into_graphql)
    }

    /// The job's finished failures grouped by error code, the largest group first: each
    /// group's domains are `results(jobId, errorCode: …)`. Null for a key without the `read`
    /// scope.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn failures_by_reason(&self, c: &Context<'_>) -> Result<Option<Vec<FailureGroup>>> {
        let _turn = db_turn(c).await;
        ctx(c)
            .jobs
            .failures_by_reason(caller(c)?, &self.job)
            .await
            .map_err(AppError::into_graphql)
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
    /// The client the job is for. With an API key it may be left out (the key names the
    /// client) and, if given, must be the key's client; without a key it is required.
    pub client_id: Option<String>,
    /// Domains or URLs; normalised, and duplicates merged.
    pub domains: Vec<String>,
    /// Reuse a domain's result from an earlier job fetched at most this many seconds ago
    /// instead of fetching it (default `CACHE_MAX_AGE_SECS`; 0 always fetches).
    pub max_age_seconds: Option<i64>,
    /// The job's weight in the workers' fair share (default `NORMAL`); `HIGH` needs a key with
    /// the `priority` scope.
    pub priority: Option<Priority>,
}
