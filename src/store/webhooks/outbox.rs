//! The deliverer's side of the outbox: lease due deliveries, record each attempt with the
//! delivery's next state (and the endpoint's, which fails and may be disabled), queue
//! `job.progress` events.

use super::super::changes::insert_delivery;
use super::super::{Store, StoreResult, now};
use super::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, DELIVERY_COLUMNS, delivery, placeholders,
    span_words,
};
use crate::model::webhook::{DeliveryStatus, WebhookEvent};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait, Value};
use std::time::Duration;
use uuid::Uuid;

/// The PostgreSQL advisory lock key that makes the fleet's looks for progress take turns
/// ("webhookp" in ASCII).
const PROGRESS_LOCK: i64 = 0x7765_6268_6f6f_6b70;

impl Store {
    /// Leases up to `n` due deliveries of enabled endpoints to `owner` until `until`.
    pub async fn claim_webhook_deliveries(
        &self,
        owner: Uuid,
        n: usize,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let now = now();
        let lock = match self.backend() {
            DbBackend::Postgres => "FOR UPDATE OF d SKIP LOCKED",
            _ => "",
        };
        let claimed = self
            .db
            .query_all_raw(self.statement(
                &format!(
                    "UPDATE webhook_delivery SET lease_owner = $1, lease_until = $2 \
                     WHERE id IN (SELECT d.id FROM webhook_delivery d \
                       JOIN webhook_endpoint e ON e.id = d.endpoint_id \
                       WHERE d.status = 'pending' AND d.run_at <= $3 \
                         AND (d.lease_until IS NULL OR d.lease_until < $3) \
                         AND e.deleted_at IS NULL AND e.disabled_at IS NULL \
                       ORDER BY d.run_at LIMIT $4 {lock}) \
                     RETURNING id"
                ),
                vec![owner.into(), until.into(), now.into(), (n as i64).into()],
            ))
            .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Value> = claimed
            .iter()
            .map(|r| r.try_get::<Uuid>("", "id").map(Value::from))
            .collect::<Result<_, _>>()?;
        let rows = self
            .db
            .query_all_raw(self.statement(
                &format!(
                    "SELECT {DELIVERY_COLUMNS}, j.trace_context FROM webhook_delivery d \
                     LEFT JOIN job j ON j.id = d.job_id WHERE d.id IN ({})",
                    placeholders(1, ids.len())
                ),
                ids,
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let delivery = delivery(row)?;
            // A claim holds few endpoints; one primary-key read each.
            let Some(endpoint) = self.webhook(delivery.webhook_id).await? else {
                continue;
            };
            out.push(ClaimedDelivery {
                delivery,
                event_at: row.try_get("", "event_at")?,
                payload: row.try_get("", "payload")?,
                endpoint,
                trace_context: row.try_get("", "trace_context")?,
            });
        }
        Ok(out)
    }

    /// Keeps the `data` an attempt made, so every later attempt sends the same.
    pub async fn freeze_webhook_payload(&self, id: Uuid, payload: &str) -> StoreResult<()> {
        self.db
            .execute_raw(self.statement(
                "UPDATE webhook_delivery SET payload = $2 WHERE id = $1 AND payload IS NULL",
                vec![id.into(), payload.into()],
            ))
            .await?;
        Ok(())
    }

    /// Records attempt number `attempt` of delivery `id`, leased by `owner`, and the
    /// delivery's next state; an endpoint whose failures began at or before `disable_before`
    /// is disabled with the last error as its reason.
    pub async fn record_webhook_attempt(
        &self,
        id: Uuid,
        endpoint_id: Uuid,
        owner: Uuid,
        attempt: i32,
        record: &AttemptRecord,
        disable_before: DateTime<Utc>,
    ) -> StoreResult<AttemptOutcome> {
        let now = now();
        let txn = self.db.begin().await?;
        let (status, run_at) = match (&record.error, record.retry_at) {
            (None, _) => (DeliveryStatus::Delivered, now),
            (Some(_), Some(at)) => (DeliveryStatus::Pending, at),
            (Some(_), None) => (DeliveryStatus::Failed, now),
        };
        let status_code = record.status_code.map(i32::from);
        let moved = txn
            .execute_raw(self.statement(
                "UPDATE webhook_delivery SET attempts = $3, status = $4, run_at = $5, \
                   delivered_at = $6, last_status_code = $7, last_error = $8, \
                   lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2",
                vec![
                    id.into(),
                    owner.into(),
                    attempt.into(),
                    status.as_str().into(),
                    run_at.into(),
                    (status == DeliveryStatus::Delivered).then_some(now).into(),
                    status_code.into(),
                    record.error.clone().into(),
                ],
            ))
            .await?;
        if moved.rows_affected() != 1 {
            txn.rollback().await?;
            return Ok(AttemptOutcome::LeaseLost);
        }
        txn.execute_raw(self.statement(
            "INSERT INTO webhook_attempt (id, delivery_id, attempt, at, status_code, \
               latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                Uuid::now_v7().into(),
                id.into(),
                attempt.into(),
                record.at.into(),
                status_code.into(),
                (record.latency.as_millis().min(i32::MAX as u128) as i32).into(),
                record.error.clone().into(),
            ],
        ))
        .await?;
        let mut outcome = AttemptOutcome::Done;
        match &record.error {
            None => {
                txn.execute_raw(self.statement(
                    "UPDATE webhook_endpoint SET failing_since = NULL WHERE id = $1",
                    vec![endpoint_id.into()],
                ))
                .await?;
            }
            Some(error) => {
                txn.execute_raw(self.statement(
                    "UPDATE webhook_endpoint SET failing_since = COALESCE(failing_since, $2) \
                     WHERE id = $1",
                    vec![endpoint_id.into(), record.at.into()],
                ))
                .await?;
                let disabled = txn
                    .execute_raw(self.statement(
                        "UPDATE webhook_endpoint SET disabled_at = $2, disabled_reason = $3, \
                           updated_at = $2 \
                         WHERE id = $1 AND disabled_at IS NULL AND failing_since <= $4",
                        vec![
                            endpoint_id.into(),
                            now.into(),
                            format!(
                                "every attempt failed for {}; the last one: {error}",
                                span_words(now - disable_before)
                            )
                            .into(),
                            disable_before.into(),
                        ],
                    ))
                    .await?;
                if disabled.rows_affected() == 1 {
                    // Its waiting deliveries leave the claim's way until it is enabled again
                    // (which makes them due at once): a disabled endpoint's backlog would
                    // otherwise be walked past on every claim.
                    txn.execute_raw(self.statement(
                        "UPDATE webhook_delivery SET run_at = $2 \
                         WHERE endpoint_id = $1 AND status = 'pending'",
                        vec![
                            endpoint_id.into(),
                            (now + chrono::Duration::days(36_500)).into(),
                        ],
                    ))
                    .await?;
                    outcome = AttemptOutcome::Disabled;
                }
            }
        }
        txn.commit().await?;
        Ok(outcome)
    }

    /// Queues a `job.progress` event for each endpoint that asked for them and each running
    /// job of its client that moved since the endpoint's last one, unless that was less than
    /// `interval` ago; `data` makes each event's data from the job's id, total, completed
    /// and failed. Answers how many were queued.
    pub async fn enqueue_webhook_progress(
        &self,
        interval: Duration,
        data: impl Fn(Uuid, i32, i32, i32) -> String,
    ) -> StoreResult<usize> {
        // Every worker process looks on its own tick. Looking and queueing in one
        // transaction that waits for the others' is what keeps two looks at once from
        // queueing the same progress twice: on PostgreSQL a transaction-scoped advisory lock;
        // on SQLite a write first, which takes the database's write lock (waiting for it as
        // any write does) before anything is read, so the look never reads a snapshot that
        // another write makes stale (its insert would fail with "database is locked").
        let txn = self.db.begin().await?;
        let turn = match self.backend() {
            DbBackend::Postgres => format!("SELECT pg_advisory_xact_lock({PROGRESS_LOCK})"),
            _ => "DELETE FROM webhook_delivery WHERE 1 = 0".to_owned(),
        };
        txn.execute_raw(self.statement(&turn, vec![])).await?;
        let now = now();
        let cutoff = now - chrono::Duration::from_std(interval).unwrap_or_default();
        let rows = txn
            .query_all_raw(self.statement(
                "SELECT e.id AS endpoint_id, j.id AS job_id, j.total, j.completed, j.failed \
                 FROM webhook_endpoint e JOIN job j ON j.client_id = e.client_id \
                 WHERE e.deleted_at IS NULL AND e.disabled_at IS NULL \
                   AND (',' || e.events || ',') LIKE '%,job.progress,%' \
                   AND j.status = 'processing' AND j.deleted_at IS NULL \
                   AND j.watch_id IS NULL \
                   AND NOT EXISTS (SELECT 1 FROM webhook_delivery d \
                     WHERE d.endpoint_id = e.id AND d.job_id = j.id \
                       AND d.event_type = 'job.progress' \
                       AND (d.created_at > $1 OR d.created_at >= j.updated_at))",
                vec![cutoff.into()],
            ))
            .await?;
        for row in &rows {
            let job_id: Uuid = row.try_get("", "job_id")?;
            let payload = data(
                job_id,
                row.try_get("", "total")?,
                row.try_get("", "completed")?,
                row.try_get("", "failed")?,
            );
            insert_delivery(
                &txn,
                Uuid::now_v7(),
                row.try_get("", "endpoint_id")?,
                Uuid::now_v7(),
                WebhookEvent::JobProgress,
                Some(job_id),
                Some(&payload),
                now,
            )
            .await?;
        }
        txn.commit().await?;
        Ok(rows.len())
    }
}
