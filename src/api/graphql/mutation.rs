//! Write operations: `createJob`, `cancelJob`, `deleteJob`.

use super::*;

/// Write operations.
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Submits domains for background favicon search; answers at once. With an API key the
    /// job belongs to the key's client.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn create_job(&self, c: &Context<'_>, input: CreateJobInput) -> Result<Job> {
        let request = NewJob {
            client_id: Ok(input.client_id.as_deref()),
            domains: Ok(input.domains.iter().map(|d| Entry::Text(d)).collect()),
            max_age_seconds: Ok(input.max_age_seconds),
            priority: Ok(input.priority),
            fields: Fields::GRAPHQL,
            source_ip: c.data_opt::<SourceIp>().map(|ip| ip.0),
        };
        let _turn = db_turn(c).await;
        let view = ctx(c)
            .jobs
            .submit(caller(c)?, request)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(view.into())
    }

    /// Cancels a job: domains not yet fetched fail with the error code `cancelled`, domains
    /// being fetched finish, and the job ends `CANCELLED`. A finished job is returned
    /// unchanged. For the job's client (with the `submit` scope) or an admin.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn cancel_job(&self, c: &Context<'_>, id: ID) -> Result<Job> {
        let id = jobs::parse_job_id(&id).map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        let view = ctx(c)
            .jobs
            .cancel(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(view.into())
    }

    /// Deletes a job and its results (a running job is cancelled first); true when deleted.
    /// Afterwards the job is NOT_FOUND everywhere. For the job's client (with the `submit`
    /// scope) or an admin.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn delete_job(&self, c: &Context<'_>, id: ID) -> Result<bool> {
        let id = jobs::parse_job_id(&id).map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        ctx(c)
            .jobs
            .delete(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(true)
    }
}
