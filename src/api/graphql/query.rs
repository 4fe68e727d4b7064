//! Read operations: `job`, `jobs`, `results`.

use super::*;

/// Read operations.
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// One job by id.
    async fn job(&self, c: &Context<'_>, id: ID) -> Result<Job> {
        let id = jobs::parse_job_id(&id).map_err(AppError::into_graphql)?;
        let view = ctx(c)
            .jobs
            .find(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(view.into())
    }

    /// The caller's jobs, newest first. With an API key `clientId` may be left out; if given
    /// it must be the key's client (an admin key may name any).
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    async fn jobs(
        &self,
        c: &Context<'_>,
        client_id: Option<String>,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 20)] per_page: i64,
    ) -> Result<JobPage> {
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        let (views, total) = ctx(c)
            .jobs
            .jobs_for_client(caller(c)?, client_id.as_deref(), page)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(JobPage {
            jobs: views.into_iter().map(Into::into).collect(),
            page: page.page as i32,
            per_page: page.per_page as i32,
            total: total as i32,
        })
    }

    /// One page of a job's results, in submission order.
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    async fn results(
        &self,
        c: &Context<'_>,
        job_id: ID,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 20)] per_page: i64,
    ) -> Result<ResultPage> {
        let id = jobs::parse_job_id(&job_id).map_err(AppError::into_graphql)?;
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        ctx(c)
            .jobs
            .results(caller(c)?, id, page)
            .await
            .map_err(AppError::into_graphql)
    }
}
