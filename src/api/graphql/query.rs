//! Read operations: `job`, `jobs`, `results`, `resultsConnection`, `webhooks`,
//! `webhookDeliveries`, `watches`, `watch`.

use super::*;
use crate::model::{
    ErrorCategory, Fields, ResultCursor, ResultFilter, ResultStatus, ResultView, parse_first,
};
use crate::webhooks;
use async_graphql::connection::{Connection, Edge};

/// Read operations.
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// One job by id.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn job(&self, c: &Context<'_>, id: ID) -> Result<Job> {
        let id = jobs::parse_job_id(&id).map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        let view = ctx(c)
            .jobs
            .job(caller(c)?, id)
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
        let _turn = db_turn(c).await;
        let (views, total) = ctx(c)
            .jobs
            .jobs_for_client(caller(c)?, client_id.as_deref(), page)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(JobPage {
            jobs: views.into_iter().map(Into::into).collect(),
            // Both fit: a Page ends by MAX_PAGE_END, and a count past i32 is shown capped.
            page: i32::try_from(page.page).unwrap_or(i32::MAX),
            per_page: page.per_page as i32,
            total: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    /// One page of a job's results, in submission order. The filters narrow it (all given
    /// must hold) and `total` counts what they match: `status`, `errorCode` (a finished
    /// failure's `Result.errorCode`, e.g. `dns`, `timeout`, `cancelled`) and `domain` (a
    /// case-insensitive part of the domain).
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    #[expect(clippy::too_many_arguments, reason = "one per GraphQL argument")]
    async fn results(
        &self,
        c: &Context<'_>,
        job_id: ID,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 20)] per_page: i64,
        status: Option<ResultStatus>,
        error_code: Option<ErrorCategory>,
        domain: Option<String>,
    ) -> Result<ResultPage> {
        let id = jobs::parse_job_id(&job_id).map_err(AppError::into_graphql)?;
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        let filter = filter(status, error_code, domain)?;
        let _turn = db_turn(c).await;
        ctx(c)
            .jobs
            .results(caller(c)?, id, page, &filter)
            .await
            .map_err(AppError::into_graphql)
    }

    /// A job's results after the cursor `after` (from the start without it), at most
    /// `first` (1 to 500), in submission order: infinite scroll that costs the same however
    /// far it goes. The filters are those of `results`; keep them the same from slice to
    /// slice.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    #[expect(clippy::too_many_arguments, reason = "one per GraphQL argument")]
    async fn results_connection(
        &self,
        c: &Context<'_>,
        job_id: ID,
        #[graphql(default = 50)] first: i64,
        after: Option<String>,
        status: Option<ResultStatus>,
        error_code: Option<ErrorCategory>,
        domain: Option<String>,
    ) -> Result<Connection<ResultCursor, ResultView>> {
        let id = jobs::parse_job_id(&job_id).map_err(AppError::into_graphql)?;
        let first = parse_first(first, Fields::GRAPHQL).map_err(AppError::into_graphql)?;
        let after = after
            .map(|raw| ResultCursor::decode(&raw, Fields::GRAPHQL))
            .transpose()
            .map_err(AppError::into_graphql)?;
        let filter = filter(status, error_code, domain)?;
        let _turn = db_turn(c).await;
        let slice = ctx(c)
            .jobs
            .results_after(caller(c)?, id, after, first, &filter)
            .await
            .map_err(AppError::into_graphql)?;
        let mut connection = Connection::new(after.is_some(), slice.has_next_page);
        connection.edges.extend(
            slice
                .results
                .into_iter()
                .map(|(cursor, view)| Edge::new(cursor, view)),
        );
        Ok(connection)
    }

    /// The caller's webhook endpoints, oldest first (never their secrets). With an API key
    /// `clientId` may be left out; if given it must be the key's client (an admin key may name
    /// any, and sees every client's without it).
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn webhooks(&self, c: &Context<'_>, client_id: Option<String>) -> Result<Vec<Webhook>> {
        let _turn = db_turn(c).await;
        let list = ctx(c)
            .webhooks
            .list(caller(c)?, client_id.as_deref())
            .await
            .map_err(AppError::into_graphql)?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// A page of a webhook endpoint's deliveries, newest first, each with its attempts
    /// (time, status, latency, error). Another client's endpoint is NOT_FOUND.
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    async fn webhook_deliveries(
        &self,
        c: &Context<'_>,
        webhook_id: ID,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 50)] per_page: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        let id = webhooks::parse_id(&webhook_id, "webhook").map_err(AppError::into_graphql)?;
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        let list = ctx(c)
            .webhooks
            .deliveries(caller(c)?, id, page)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// The watches the caller may see, oldest first: its client's (an admin key, or a caller
    /// without keys, sees every client's).
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn watches(&self, c: &Context<'_>) -> Result<Vec<Watch>> {
        let _turn = db_turn(c).await;
        let list = ctx(c)
            .watches
            .list(caller(c)?, None)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// One watch by id; null when there is none the caller may see (another client's
    /// watch is not told apart from a missing one).
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn watch(&self, c: &Context<'_>, id: ID) -> Result<Option<Watch>> {
        let id = crate::watches::parse_watch_id(&id).map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        match ctx(c).watches.get(caller(c)?, id).await {
            Ok(watch) => Ok(Some(watch.into())),
            Err(AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into_graphql()),
        }
    }
}

/// The result filters of `results` and `resultsConnection`.
fn filter(
    status: Option<ResultStatus>,
    error_code: Option<ErrorCategory>,
    domain: Option<String>,
) -> Result<ResultFilter> {
    ResultFilter::new(status, error_code, domain.as_deref(), Fields::GRAPHQL)
        .map_err(AppError::into_graphql)
}
