//! Webhook endpoints, the outbox of their deliveries and the log of attempts.
//!
//! A job's end writes its deliveries in the transaction that ends it ([`super::write::enqueue_job_event`]);
//! here are the endpoints and what their owners read and replay. In `outbox.rs` workers lease
//! due deliveries (one attempt at a time per delivery, across the fleet: `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, the single writer on SQLite) and record each attempt with the
//! delivery's next state in one transaction, guarded by the lease, so a worker that lost its
//! lease records nothing.

use super::changes::insert_delivery;
use super::write::upsert_client;
use super::{Store, StoreResult, now};
use crate::model::webhook::{
    DeliveryAttempt, DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent, message_id,
};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QueryResult, Statement, TransactionTrait, Value};
use std::time::Duration;
use uuid::Uuid;

/// An endpoint's columns as [`endpoint`] reads them.
const ENDPOINT_COLUMNS: &str = "e.id, c.client_id AS client_name, e.url, e.description, \
    e.events, e.secret, e.previous_secret, e.previous_secret_until, e.created_at, \
    e.failing_since, e.disabled_at, e.disabled_reason";

/// A delivery's columns as [`delivery`] reads them.
const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, d.event_id, d.event_type, d.job_id, \
    d.event_at, d.payload, d.status, d.attempts, d.run_at, d.created_at, d.delivered_at, \
    d.last_status_code, d.last_error";

/// An endpoint with its sealed secrets, as the store keeps them.
#[derive(Clone, Debug)]
pub struct StoredEndpoint {
    /// What the APIs show.
    pub view: Webhook,
    /// The current secret, sealed.
    pub secret: String,
    /// The secret before the last rotation, sealed, while it still signs.
    pub previous_secret: Option<String>,
}

/// A leased delivery with what its attempt needs.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    /// The delivery as the APIs show it (its attempts so far counted, not listed).
    pub delivery: WebhookDelivery,
    /// When the event happened (its `timestamp`).
    pub event_at: DateTime<Utc>,
    /// The event's `data` frozen by an earlier attempt, if any.
    pub payload: Option<String>,
    /// The endpoint it goes to.
    pub endpoint: StoredEndpoint,
    /// The W3C `traceparent` of its job's creation, while the job row is kept: the delivery
    /// is part of that job's trace.
    pub trace_context: Option<String>,
}

/// What one attempt ended in.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    /// When it started.
    pub at: DateTime<Utc>,
    /// The endpoint's status, when it answered.
    pub status_code: Option<u16>,
    /// How long it took.
    pub latency: Duration,
    /// Why it failed (`None`: delivered).
    pub error: Option<String>,
    /// When to try again after a failure (`None`: it was the last attempt).
    pub retry_at: Option<DateTime<Utc>>,
}

/// An endpoint's state after an attempt was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Recorded; the endpoint stays enabled.
    Done,
    /// Recorded, and the endpoint has failed for long enough that it is now disabled.
    Disabled,
    /// The lease was lost (another worker took the delivery over): nothing was written.
    LeaseLost,
}

fn endpoint(row: &QueryResult) -> Result<StoredEndpoint, sea_orm::DbErr> {
    let previous_until: Option<DateTime<Utc>> = row.try_get("", "previous_secret_until")?;
    let live_previous = previous_until.filter(|until| *until > now());
    let disabled_at: Option<DateTime<Utc>> = row.try_get("", "disabled_at")?;
    Ok(StoredEndpoint {
        view: Webhook {
            id: row.try_get("", "id")?,
            client_id: row.try_get("", "client_name")?,
            url: row.try_get("", "url")?,
            description: row.try_get("", "description")?,
            events: WebhookEvent::parse_list(&row.try_get::<String>("", "events")?),
            enabled: disabled_at.is_none(),
            disabled_reason: row.try_get("", "disabled_reason")?,
            disabled_at,
            failing_since: row.try_get("", "failing_since")?,
            previous_secret_expires_at: live_previous,
            created_at: row.try_get("", "created_at")?,
        },
        secret: row.try_get("", "secret")?,
        previous_secret: live_previous.and(row.try_get::<Option<String>>("", "previous_secret")?),
    })
}

fn delivery(row: &QueryResult) -> Result<WebhookDelivery, sea_orm::DbErr> {
    let status = DeliveryStatus::parse(&row.try_get::<String>("", "status")?);
    let event_type: String = row.try_get("", "event_type")?;
    Ok(WebhookDelivery {
        id: row.try_get("", "id")?,
        webhook_id: row.try_get("", "endpoint_id")?,
        event_id: message_id(row.try_get("", "event_id")?),
        event_type: WebhookEvent::parse(&event_type).unwrap_or(WebhookEvent::WebhookTest),
        job_id: row.try_get("", "job_id")?,
        status,
        attempts: row.try_get("", "attempts")?,
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| row.try_get("", "run_at"))
            .transpose()?,
        created_at: row.try_get("", "created_at")?,
        delivered_at: row.try_get("", "delivered_at")?,
        last_status_code: row.try_get("", "last_status_code")?,
        last_error: row.try_get("", "last_error")?,
        attempt_log: Vec::new(),
    })
}

/// A span as a reader says it: seconds under an hour, hours under two days, then days.
fn span_words(span: chrono::Duration) -> String {
    match span.num_seconds() {
        s if s < 3_600 => format!("{s} s"),
        s if s < 172_800 => format!("{} hours", s / 3_600),
        s => format!("{} days", s / 86_400),
    }
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend(), sql, values)
    }

    /// Registers an endpoint for the client named `client_name` (created if new), with its
    /// id chosen and its secret sealed by the caller (the seal names the id).
    pub async fn create_webhook(
        &self,
        id: Uuid,
        client_name: &str,
        url: &str,
        description: Option<&str>,
        events: &[WebhookEvent],
        sealed_secret: &str,
    ) -> StoreResult<StoredEndpoint> {
        let now = now();
        let txn = self.db.begin().await?;
        let client = upsert_client(&txn, client_name, now).await?;
        txn.execute_raw(self.statement(
            "INSERT INTO webhook_endpoint (id, client_id, url, description, events, secret, \
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            vec![
                id.into(),
                client.id.into(),
                url.into(),
                description.map(str::to_owned).into(),
                WebhookEvent::format_list(events).into(),
                sealed_secret.into(),
                now.into(),
            ],
        ))
        .await?;
        txn.commit().await?;
        Ok(self
            .webhook(id)
            .await?
            .ok_or(sea_orm::DbErr::RecordNotFound(
                "webhook just created".into(),
            ))?)
    }

    /// The endpoints of the client named `client_name` (`None`: every client's), oldest first.
    pub async fn webhooks(&self, client_name: Option<&str>) -> StoreResult<Vec<StoredEndpoint>> {
        let (filter, values) = match client_name {
            Some(name) => ("AND c.client_id = $1", vec![name.into()]),
            None => ("", vec![]),
        };
        let rows = self
            .db
            .query_all_raw(self.statement(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint e \
                     JOIN client c ON c.id = e.client_id \
                     WHERE e.deleted_at IS NULL {filter} ORDER BY e.created_at, e.id"
                ),
                values,
            ))
            .await?;
        Ok(rows.iter().map(endpoint).collect::<Result<_, _>>()?)
    }

    /// One endpoint, unless deleted.
    pub async fn webhook(&self, id: Uuid) -> StoreResult<Option<StoredEndpoint>> {
        let row = self
            .db
            .query_one_raw(self.statement(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint e \
                     JOIN client c ON c.id = e.client_id \
                     WHERE e.id = $1 AND e.deleted_at IS NULL"
                ),
                vec![id.into()],
            ))
            .await?;
        Ok(row.as_ref().map(endpoint).transpose()?)
    }

    /// Deletes an endpoint; its deliveries still waiting fail. False when it was not there.
    pub async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool> {
        let now = now();
        let txn = self.db.begin().await?;
        let gone = txn
            .execute_raw(self.statement(
                "UPDATE webhook_endpoint SET deleted_at = $2, updated_at = $2 \
                 WHERE id = $1 AND deleted_at IS NULL",
                vec![id.into(), now.into()],
            ))
            .await?;
        txn.execute_raw(self.statement(
            "UPDATE webhook_delivery SET status = 'failed', \
               last_error = 'the endpoint was deleted', lease_owner = NULL, lease_until = NULL \
             WHERE endpoint_id = $1 AND status = 'pending'",
            vec![id.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(gone.rows_affected() == 1)
    }

    /// Makes `sealed` the endpoint's secret; the one it replaces keeps signing until `until`.
    pub async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        sealed: &str,
        until: DateTime<Utc>,
    ) -> StoreResult<Option<StoredEndpoint>> {
        let moved = self
            .db
            .execute_raw(self.statement(
                "UPDATE webhook_endpoint SET previous_secret = secret, \
                   previous_secret_until = $3, secret = $2, updated_at = $4 \
                 WHERE id = $1 AND deleted_at IS NULL",
                vec![id.into(), sealed.into(), until.into(), now().into()],
            ))
            .await?;
        if moved.rows_affected() != 1 {
            return Ok(None);
        }
        self.webhook(id).await
    }

    /// Enables a disabled endpoint again: its waiting deliveries are due at once.
    pub async fn enable_webhook(&self, id: Uuid) -> StoreResult<Option<StoredEndpoint>> {
        let now = now();
        let txn = self.db.begin().await?;
        let changed = txn
            .execute_raw(self.statement(
                "UPDATE webhook_endpoint SET disabled_at = NULL, disabled_reason = NULL, \
                   failing_since = NULL, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
                vec![id.into(), now.into()],
            ))
            .await?;
        txn.execute_raw(self.statement(
            "UPDATE webhook_delivery SET run_at = $2 WHERE endpoint_id = $1 \
               AND status = 'pending' AND run_at > $2",
            vec![id.into(), now.into()],
        ))
        .await?;
        txn.commit().await?;
        if changed.rows_affected() != 1 {
            return Ok(None);
        }
        self.webhook(id).await
    }

    /// An endpoint's deliveries, newest first, `limit` after the first `offset`, each with
    /// its attempts.
    pub async fn webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = self
            .db
            .query_all_raw(self.statement(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_delivery d WHERE d.endpoint_id = $1 \
                     ORDER BY d.created_at DESC, d.id DESC LIMIT $2 OFFSET $3"
                ),
                vec![
                    endpoint_id.into(),
                    (limit as i64).into(),
                    (offset as i64).into(),
                ],
            ))
            .await?;
        let deliveries = rows.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
        self.with_attempts(deliveries).await
    }

    async fn with_attempts(
        &self,
        mut deliveries: Vec<WebhookDelivery>,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        if deliveries.is_empty() {
            return Ok(deliveries);
        }
        let ids: Vec<Value> = deliveries.iter().map(|d| d.id.into()).collect();
        let rows = self
            .db
            .query_all_raw(self.statement(
                &format!(
                    "SELECT delivery_id, attempt, at, status_code, latency_ms, error \
                     FROM webhook_attempt WHERE delivery_id IN ({}) ORDER BY attempt",
                    placeholders(1, ids.len())
                ),
                ids,
            ))
            .await?;
        for row in rows {
            let id: Uuid = row.try_get("", "delivery_id")?;
            let attempt = DeliveryAttempt {
                attempt: row.try_get("", "attempt")?,
                at: row.try_get("", "at")?,
                status_code: row.try_get("", "status_code")?,
                latency_ms: row.try_get("", "latency_ms")?,
                error: row.try_get("", "error")?,
            };
            // The deliveries were read first, in another statement: an attempt recorded
            // since then (its row and the delivery's count commit together) is left out, so
            // the log always matches the delivery it is shown with.
            if let Some(d) = deliveries
                .iter_mut()
                .find(|d| d.id == id && attempt.attempt <= d.attempts)
            {
                d.attempt_log.push(attempt);
            }
        }
        Ok(deliveries)
    }

    /// One delivery with its attempts, and the endpoint's owner, for the caller's check.
    pub async fn webhook_delivery(
        &self,
        id: Uuid,
    ) -> StoreResult<Option<(WebhookDelivery, String)>> {
        let row = self
            .db
            .query_one_raw(self.statement(
                &format!(
                    "SELECT {DELIVERY_COLUMNS}, c.client_id AS client_name \
                     FROM webhook_delivery d JOIN webhook_endpoint e ON e.id = d.endpoint_id \
                     JOIN client c ON c.id = e.client_id \
                     WHERE d.id = $1 AND e.deleted_at IS NULL"
                ),
                vec![id.into()],
            ))
            .await?;
        let Some(row) = row else { return Ok(None) };
        let owner: String = row.try_get("", "client_name")?;
        let found = self.with_attempts(vec![delivery(&row)?]).await?;
        Ok(found.into_iter().next().map(|d| (d, owner)))
    }

    /// Queues delivery `id`'s event again, with the same `webhook-id`, as a new delivery due
    /// now; answers the new one.
    pub async fn redeliver_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookDelivery>> {
        let new_id = Uuid::now_v7();
        let now = now();
        let copied = self
            .db
            .execute_raw(self.statement(
                "INSERT INTO webhook_delivery (id, endpoint_id, event_id, event_type, job_id, \
                   event_at, payload, status, attempts, run_at, created_at) \
                 SELECT $2, endpoint_id, event_id, event_type, job_id, event_at, payload, \
                   'pending', 0, $3, $3 FROM webhook_delivery WHERE id = $1",
                vec![id.into(), new_id.into(), now.into()],
            ))
            .await?;
        if copied.rows_affected() != 1 {
            return Ok(None);
        }
        Ok(self.webhook_delivery(new_id).await?.map(|(d, _)| d))
    }

    /// Queues an event with its `data` already made (a test event, a progress event) for
    /// one endpoint, due now.
    pub async fn enqueue_webhook_event(
        &self,
        endpoint_id: Uuid,
        event: WebhookEvent,
        job_id: Option<Uuid>,
        payload: &str,
    ) -> StoreResult<WebhookDelivery> {
        let id = Uuid::now_v7();
        insert_delivery(
            &self.db,
            id,
            endpoint_id,
            Uuid::now_v7(),
            event,
            job_id,
            Some(payload),
            now(),
        )
        .await?;
        Ok(self.webhook_delivery(id).await?.map(|(d, _)| d).ok_or(
            sea_orm::DbErr::RecordNotFound("delivery just queued".into()),
        )?)
    }

    /// Deletes up to `limit` finished deliveries (delivered or failed) made before `before`,
    /// with their attempts, then endpoints deleted before it that have none left; answers how
    /// many deliveries went. Pending ones are never deleted, so nothing still to send is lost.
    pub async fn prune_webhook_deliveries(
        &self,
        before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<u64> {
        let txn = self.db.begin().await?;
        let old = txn
            .query_all_raw(self.statement(
                "SELECT id FROM webhook_delivery WHERE status <> 'pending' AND created_at < $1 \
                 LIMIT $2",
                vec![before.into(), (limit as i64).into()],
            ))
            .await?;
        let ids: Vec<Value> = old
            .iter()
            .map(|r| r.try_get::<Uuid>("", "id").map(Value::from))
            .collect::<Result<_, _>>()?;
        if !ids.is_empty() {
            let list = placeholders(1, ids.len());
            txn.execute_raw(self.statement(
                &format!("DELETE FROM webhook_attempt WHERE delivery_id IN ({list})"),
                ids.clone(),
            ))
            .await?;
            txn.execute_raw(self.statement(
                &format!("DELETE FROM webhook_delivery WHERE id IN ({list})"),
                ids.clone(),
            ))
            .await?;
        }
        txn.execute_raw(self.statement(
            "DELETE FROM webhook_endpoint WHERE deleted_at < $1 AND NOT EXISTS \
               (SELECT 1 FROM webhook_delivery d WHERE d.endpoint_id = webhook_endpoint.id)",
            vec![before.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(ids.len() as u64)
    }

    /// Deliveries by status, for `/metrics`.
    pub async fn webhook_delivery_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = self
            .db
            .query_all_raw(self.statement(
                "SELECT status, COUNT(*) AS n FROM webhook_delivery GROUP BY status",
                vec![],
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("", "status")?, r.try_get("", "n")?)))
            .collect::<Result<_, sea_orm::DbErr>>()?)
    }
}

mod outbox;
