//! Write operations: `createJob`.

use super::*;

/// Write operations.
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Submits domains for background favicon search; answers at once. With an API key the
    /// job belongs to the key's client.
    async fn create_job(&self, c: &Context<'_>, input: CreateJobInput) -> Result<Job> {
        let request = NewJob {
            client_id: Ok(input.client_id.as_deref()),
            domains: Ok(input.domains.iter().map(|d| Entry::Text(d)).collect()),
            max_age_seconds: Ok(input.max_age_seconds),
            fields: Fields::GRAPHQL,
            source_ip: c.data_opt::<SourceIp>().map(|ip| ip.0),
        };
        let view = ctx(c)
            .jobs
            .submit(caller(c)?, request)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(view.into())
    }
}
