//! Write operations: `createJob`.

use super::*;

/// Write operations.
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Submits domains for background favicon search; answers at once.
    async fn create_job(&self, c: &Context<'_>, input: CreateJobInput) -> Result<Job> {
        let api = ctx(c);
        let client_id = jobs::parse_client_id(&input.client_id, Fields::GRAPHQL)
            .map_err(AppError::into_graphql)?;
        let domains = jobs::parse_domains(
            input.domains.iter().map(|d| Entry::Text(d)),
            api.config.max_domains_per_job,
            Fields::GRAPHQL,
        )
        .map_err(AppError::into_graphql)?;
        let max_age = jobs::parse_max_age(input.max_age_seconds, Fields::GRAPHQL)
            .map_err(AppError::into_graphql)?;
        let cache = api.config.cache_policy(max_age);
        api.jobs
            .check_rate(api.config.rate_limits(), &client_id, domains.len())
            .await
            .map_err(AppError::into_graphql)?;
        let view = api
            .jobs
            .create(&client_id, &domains, cache)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(view.into())
    }
}
