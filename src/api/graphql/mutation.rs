//! Write operations: `createJob`, `cancelJob`, `deleteJob`; `createWebhook`, `deleteWebhook`,
//! `rotateWebhookSecret`, `enableWebhook`, `sendTestWebhook`, `redeliverWebhook`;
//! `refreshIcon`.
//! `createWatch`, `deleteWatch`.

use super::*;
use crate::model::IconRefresh;
use crate::webhooks::{self, NewWebhook};
use std::time::Duration;

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

    /// Registers a webhook endpoint for the caller's client (with the `submit` scope, or an
    /// admin naming any client). Its URL is checked now: a non-public address is refused
    /// (`WEBHOOK_URL_REFUSED`) unless the server allows private networks. The answer carries
    /// the signing secret, shown only now.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn create_webhook(
        &self,
        c: &Context<'_>,
        input: CreateWebhookInput,
    ) -> Result<CreatedWebhook> {
        let new = NewWebhook {
            client_id: input.client_id.as_deref(),
            url: &input.url,
            events: input.events,
            description: input.description.as_deref(),
        };
        let _turn = db_turn(c).await;
        let created = ctx(c)
            .webhooks
            .create(caller(c)?, new)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(created.into())
    }

    /// Creates a watch: its domains are re-checked every `every` seconds (the first checks
    /// spread over one period) and a change of one's icon is sent as `icon.changed`.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn create_watch(&self, c: &Context<'_>, input: CreateWatchInput) -> Result<Watch> {
        let request = crate::watches::NewWatch {
            client_id: input.client_id.as_deref(),
            domains: input.domains.iter().map(|d| Entry::Text(d)).collect(),
            every: input.every,
            name: input.name.as_deref(),
            fields: Fields::GRAPHQL,
        };
        let _turn = db_turn(c).await;
        let watch = ctx(c)
            .watches
            .create(caller(c)?, request)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(watch.into())
    }

    /// Deletes a watch: nothing more is checked for it. True when deleted; another client's
    /// watch is NOT_FOUND.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn delete_watch(&self, c: &Context<'_>, id: ID) -> Result<bool> {
        let id = crate::watches::parse_watch_id(&id).map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        ctx(c)
            .watches
            .delete(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(true)
    }

    /// Deletes a webhook endpoint; its deliveries still waiting fail. True when
    /// deleted; another client's endpoint is NOT_FOUND.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn delete_webhook(&self, c: &Context<'_>, id: ID) -> Result<bool> {
        let id = webhooks::parse_id(&id, "webhook").map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        ctx(c)
            .webhooks
            .delete(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(true)
    }

    /// Gives a webhook endpoint a new secret, answered only now. The old secret keeps signing
    /// beside it for `overlapSeconds` (default `WEBHOOK_ROTATION_OVERLAP_SECS`, at most 30
    /// days), so a receiver can switch without losing an event.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn rotate_webhook_secret(
        &self,
        c: &Context<'_>,
        id: ID,
        overlap_seconds: Option<i64>,
    ) -> Result<CreatedWebhook> {
        let id = webhooks::parse_id(&id, "webhook").map_err(AppError::into_graphql)?;
        let overlap = overlap_seconds
            .map(|s| {
                u64::try_from(s).map(Duration::from_secs).map_err(|_| {
                    AppError::bad_request(Code::InvalidInput, "overlapSeconds must not be negative")
                        .into_graphql()
                })
            })
            .transpose()?;
        let _turn = db_turn(c).await;
        let rotated = ctx(c)
            .webhooks
            .rotate(caller(c)?, id, overlap)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(rotated.into())
    }

    /// Enables a webhook endpoint again after it was disabled for failing; its waiting
    /// deliveries are due at once.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn enable_webhook(&self, c: &Context<'_>, id: ID) -> Result<Webhook> {
        let id = webhooks::parse_id(&id, "webhook").map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        let enabled = ctx(c)
            .webhooks
            .enable(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(enabled.into())
    }

    /// Queues a `webhook.test` event for a webhook endpoint; answers the queued delivery.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn send_test_webhook(&self, c: &Context<'_>, id: ID) -> Result<WebhookDelivery> {
        let id = webhooks::parse_id(&id, "webhook").map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        let queued = ctx(c)
            .webhooks
            .send_test(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(queued.into())
    }

    /// Sends a delivery's event again, with the same `webhook-id`, so a receiver that saw it
    /// can tell; answers the new delivery.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn redeliver_webhook(&self, c: &Context<'_>, delivery_id: ID) -> Result<WebhookDelivery> {
        let id = webhooks::parse_id(&delivery_id, "delivery").map_err(AppError::into_graphql)?;
        let _turn = db_turn(c).await;
        let queued = ctx(c)
            .webhooks
            .redeliver(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(queued.into())
    }

    /// Looks a domain's icon up again now, whatever the cache holds (sharing a lookup already
    /// in flight), and answers the outcome with what `GET /icons/{domain}` serves after it. As
    /// `POST /icons/{domain}/refresh`: the `submit` scope, the client's hourly allowance and
    /// `ICON_REFRESH_PER_MINUTE` (`RATE_LIMITED` over it); a transient failure never replaces
    /// the icon served.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn refresh_icon(&self, c: &Context<'_>, domain: String) -> Result<IconRefresh> {
        let request =
            crate::icons::parse_request(&domain, &[], None).map_err(AppError::into_graphql)?;
        ctx(c)
            .icons
            .refresh(
                Some(caller(c)?),
                c.data_opt::<SourceIp>().map(|ip| ip.0),
                &request.domain,
            )
            .await
            .map_err(AppError::into_graphql)
    }
}
