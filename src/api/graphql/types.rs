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

/// A webhook endpoint: where a client's events are sent, signed. Its secret is never shown
/// here: only `createWebhook` and `rotateWebhookSecret` answer it, once.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Webhook {
    /// The endpoint as the core shows it.
    #[graphql(flatten)]
    webhook: crate::model::webhook::Webhook,
}

impl From<crate::model::webhook::Webhook> for Webhook {
    fn from(webhook: crate::model::webhook::Webhook) -> Self {
        Self { webhook }
    }
}

#[async_graphql::ComplexObject]
impl Webhook {
    /// The endpoint's id.
    async fn id(&self) -> ID {
        ID(self.webhook.id.to_string())
    }
}

/// One event on its way to one endpoint, with every attempt made so far.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct WebhookDelivery {
    /// The delivery as the core shows it.
    #[graphql(flatten)]
    delivery: crate::model::webhook::WebhookDelivery,
}

impl From<crate::model::webhook::WebhookDelivery> for WebhookDelivery {
    fn from(delivery: crate::model::webhook::WebhookDelivery) -> Self {
        Self { delivery }
    }
}

#[async_graphql::ComplexObject]
impl WebhookDelivery {
    /// The delivery's id: what `redeliverWebhook` takes.
    async fn id(&self) -> ID {
        ID(self.delivery.id.to_string())
    }

    /// The endpoint it is sent to.
    async fn webhook_id(&self) -> ID {
        ID(self.delivery.webhook_id.to_string())
    }

    /// The job it is about (null for a test event).
    async fn job_id(&self) -> Option<ID> {
        self.delivery.job_id.map(|id| ID(id.to_string()))
    }
}

/// An endpoint with its secret, answered by `createWebhook` and `rotateWebhookSecret` only.
#[derive(SimpleObject)]
pub struct CreatedWebhook {
    /// The endpoint.
    pub(super) webhook: Webhook,
    /// The secret that signs its events from now on (`whsec_…`): keep it, it is shown only
    /// now.
    pub(super) secret: String,
}

impl From<crate::webhooks::WithSecret> for CreatedWebhook {
    fn from(w: crate::webhooks::WithSecret) -> Self {
        Self {
            webhook: w.webhook.into(),
            secret: w.secret,
        }
    }
}

/// Input of `createWebhook`.
#[derive(InputObject)]
pub struct CreateWebhookInput {
    /// Where to send events: `http(s)://…`, on a public address (unless the server sets
    /// `FETCH_ALLOW_PRIVATE_NETWORKS`), without credentials.
    pub url: String,
    /// The events to send; left out: `JOB_COMPLETED`, `JOB_FAILED`, `JOB_CANCELLED` and
    /// `ICON_CHANGED`.
    /// `JOB_PROGRESS` only when named; `WEBHOOK_TEST` is sent to every endpoint and cannot
    /// be named.
    pub events: Option<Vec<WebhookEvent>>,
    /// A note for its owner.
    pub description: Option<String>,
    /// The client it is for; required without an API key (the key names it otherwise, and
    /// only an admin's may name another).
    pub client_id: Option<String>,
}
