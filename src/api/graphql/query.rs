//! Read operations: `job`, `jobs`, `results`.

use super::*;

/// Read operations.
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// One job by id.
    async fn job(&self, c: &Context<'_>, id: ID) -> Result<Job> {
        let id = jobs::parse_job_id(&id).map_err(AppError::into_graphql)?;
        let view = ctx(c).jobs.find(id).await.map_err(AppError::into_graphql)?;
        Ok(view.into())
    }

    /// A client's jobs, newest first.
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    async fn jobs(
        &self,
        c: &Context<'_>,
        client_id: String,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 20)] per_page: i64,
    ) -> Result<JobPage> {
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        let (views, total) = ctx(c)
            .jobs
            .jobs_for_client(&client_id, page)
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
            .results(id, page)
            .await
            .map_err(AppError::into_graphql)
    }
}
