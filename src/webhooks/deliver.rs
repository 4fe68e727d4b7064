//! The worker side of webhooks: lease due deliveries from the outbox, send each once at a
//! time, record every attempt.
//!
//! Every attempt resolves the endpoint's host again through the SSRF guard, on a client that
//! keeps no idle connection, so a name that later points at a private address is refused
//! before anything is sent, and the address that was checked is the one connected to.
//! Redirects are not followed; at most [`MAX_ANSWER_BYTES`] of an answer are read, and only
//! its first [`KEPT_ANSWER_CHARS`] characters are kept, in the attempt's error.

use super::sign::{Sealer, Secret, signature_header};
use super::{WebhookSettings, Webhooks, guard_target};
use crate::auth::LinkSigner;
use crate::finder::ErrorCategory;
use crate::finder::fetch::{classify, extra_root_certs};
use crate::finder::resolve::{GuardedResolver, ResolveError};
use crate::metrics::Metrics;
use crate::model::webhook::WebhookEvent;
use crate::store::{AttemptOutcome, AttemptRecord, ClaimedDelivery, Store, now};
use futures::StreamExt;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

/// The most of an endpoint's answer that is read.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024;
/// The most of an answer kept, in a failed attempt's error.
const KEPT_ANSWER_CHARS: usize = 200;
/// How often running jobs are looked at for `job.progress` events.
const PROGRESS_TICK: Duration = Duration::from_secs(5);
/// A lease outlives an attempt's timeout by this much, so a live worker never loses it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Sends this process's share of the due deliveries.
pub struct Deliverer {
    store: Store,
    sealer: Option<Sealer>,
    settings: WebhookSettings,
    guard: GuardedResolver,
    client: reqwest::Client,
    signer: LinkSigner,
    public_url: Option<String>,
    metrics: Arc<Metrics>,
    /// This process's name on the leases.
    owner: Uuid,
}

impl Deliverer {
    /// A deliverer for the endpoints `webhooks` manages; `signer` and `public_url` make the
    /// download links the job events carry.
    pub fn new(
        webhooks: &Webhooks,
        signer: LinkSigner,
        public_url: Option<String>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let settings = webhooks.settings().clone();
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(webhooks.guard.clone()))
            // A proxy would resolve names itself and bypass the guard.
            .no_proxy()
            // A pooled connection would skip the next attempt's guarded lookup.
            .pool_max_idle_per_host(0)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(
                "favicon-finder-webhooks/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(path) = &settings.extra_root_certs {
            client = client.tls_certs_merge(extra_root_certs(path)?);
        }
        let client = client.build()?;
        Ok(Self {
            store: webhooks.store.clone(),
            sealer: webhooks.sealer.clone(),
            guard: webhooks.guard.clone(),
            settings,
            client,
            signer,
            public_url,
            metrics,
            owner: Uuid::now_v7(),
        })
    }

    /// Sends due deliveries until `shutdown`; attempts in flight then finish (each is bounded
    /// by `WEBHOOK_TIMEOUT_SECS`) so none is left half-recorded. A worker without
    /// `WEBHOOK_SECRET_KEY` sends nothing.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.settings.concurrency == 0 {
            return;
        }
        if self.sealer.is_none() {
            // Its attempts could only fail: they would spend the deliveries' retries and
            // count against endpoints that did nothing wrong. Left alone, the deliveries wait
            // for a worker that can sign them.
            // A warning only where it matters: on a service that never registered an
            // endpoint (the embedded default) the missing key is not a mistake.
            let registered = self.store.webhooks(None).await.map(|w| !w.is_empty());
            if registered.unwrap_or(true) {
                tracing::warn!(
                    "this worker sends no webhooks: WEBHOOK_SECRET_KEY is not set here, so it \
                     cannot sign them; they wait for a worker that has it"
                );
            } else {
                tracing::debug!("webhooks are off: WEBHOOK_SECRET_KEY is not set");
            }
            return;
        }
        let this = Arc::new(self);
        let mut inflight = JoinSet::new();
        let mut next_progress = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_progress {
                this.queue_progress().await;
                // From now, not from the last due time: a slow pass does not make the next
                // ones run back to back.
                next_progress = tokio::time::Instant::now()
                    + PROGRESS_TICK.min(this.settings.progress_interval);
            }
            let free = this.settings.concurrency.saturating_sub(inflight.len());
            let mut claimed = 0;
            if free > 0 {
                let until = now()
                    + chrono::Duration::from_std(this.settings.timeout + LEASE_MARGIN)
                        .unwrap_or_default();
                match this
                    .store
                    .claim_webhook_deliveries(this.owner, free, until)
                    .await
                {
                    Ok(due) => {
                        claimed = due.len();
                        for delivery in due {
                            let this = this.clone();
                            let span = tracing::debug_span!(
                                "webhook.deliver",
                                otel.kind = "client",
                                webhook.id = %delivery.endpoint.view.id,
                                webhook.delivery.id = %delivery.delivery.id,
                                webhook.event.type = delivery.delivery.event_type.as_str(),
                                webhook.attempt = delivery.delivery.attempts + 1,
                                http.response.status_code = tracing::field::Empty,
                                webhook.outcome = tracing::field::Empty,
                            );
                            // Part of its job's life: a child of the job's creation.
                            crate::telemetry::continue_trace(
                                &span,
                                delivery.trace_context.as_deref(),
                            );
                            inflight.spawn(crate::telemetry::in_span(span, async move {
                                this.attempt(delivery).await
                            }));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim webhook deliveries"),
                }
            }
            if claimed == free && free > 0 {
                // A full claim: more may be due at once.
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(this.settings.poll) => {}
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            }
        }
        while inflight.join_next().await.is_some() {}
    }

    async fn queue_progress(&self) {
        let queued = self
            .store
            .enqueue_webhook_progress(
                self.settings.progress_interval,
                |job, total, done, failed| {
                    serde_json::json!({
                        "job_id": job,
                        "status": "processing",
                        "total": total,
                        "completed": done,
                        "failed": failed,
                        "progress": crate::model::job::progress(total, done, failed),
                    })
                    .to_string()
                },
            )
            .await;
        if let Err(e) = queued {
            tracing::warn!(error = %e, "could not queue job.progress events");
        }
    }

    /// One attempt of one leased delivery, recorded whatever happens.
    async fn attempt(&self, claimed: ClaimedDelivery) {
        let delivery = &claimed.delivery;
        let attempt = delivery.attempts + 1;
        let at = now();
        let started = Instant::now();
        let sent = self.send(&claimed).await;
        let (status_code, error, refused) = match sent {
            Ok(code) if (200..300).contains(&code) => (Some(code), None, false),
            Ok(code) => (Some(code), Some(format!("HTTP {code}")), false),
            Err(Failure::Answer(code, text)) if text.trim().is_empty() => {
                (Some(code), Some(format!("HTTP {code}")), false)
            }
            Err(Failure::Answer(code, text)) => (
                Some(code),
                Some(format!("HTTP {code}: {}", text.trim())),
                false,
            ),
            Err(Failure::Refused(why)) => (None, Some(format!("refused: {why}")), true),
            Err(Failure::Other(why)) => (None, Some(why), false),
        };
        let retry_at = error.as_ref().and_then(|_| {
            let jitter = rand::rng().random::<f64>();
            self.settings
                .backoff
                .after(attempt as u32, jitter)
                .map(|wait| at + chrono::Duration::from_std(wait).unwrap_or_default())
        });
        let outcome = match (&error, retry_at, refused) {
            (None, _, _) => "delivered",
            (Some(_), _, true) => "refused",
            (Some(_), Some(_), false) => "retry",
            (Some(_), None, false) => "failed",
        };
        self.metrics
            .webhook_attempts
            .with_label_values(&[outcome])
            .inc();
        let span = tracing::Span::current();
        span.record("webhook.outcome", outcome);
        if let Some(code) = status_code {
            span.record("http.response.status_code", code);
        }
        let record = AttemptRecord {
            at,
            status_code,
            latency: started.elapsed(),
            error: error.clone(),
            retry_at,
        };
        let disable_before =
            at - chrono::Duration::from_std(self.settings.disable_after).unwrap_or_default();
        let endpoint = claimed.endpoint.view.id;
        match self
            .store
            .record_webhook_attempt(
                delivery.id,
                endpoint,
                self.owner,
                attempt,
                &record,
                disable_before,
            )
            .await
        {
            Ok(AttemptOutcome::Disabled) => {
                self.metrics.webhooks_disabled.inc();
                tracing::warn!(webhook = %endpoint, error = ?error, "webhook endpoint disabled: every attempt failed for too long");
            }
            Ok(AttemptOutcome::LeaseLost) => {
                tracing::warn!(delivery = %delivery.id, "webhook delivery's lease was lost; its attempt is not recorded");
            }
            Ok(AttemptOutcome::Done) => {}
            Err(e) => {
                tracing::warn!(delivery = %delivery.id, error = %e, "could not record a webhook attempt")
            }
        }
        tracing::debug!(delivery = %delivery.id, webhook = %endpoint, attempt, outcome, "webhook attempt");
    }

    /// Sends the event; the endpoint's status code, or why nothing usable came back.
    async fn send(&self, claimed: &ClaimedDelivery) -> Result<u16, Failure> {
        let secrets = self.secrets(claimed)?;
        let body = self.body(claimed).await?;
        let url = Url::parse(&claimed.endpoint.view.url)
            .map_err(|e| Failure::Other(format!("the stored URL does not parse: {e}")))?;
        guard_target(&self.guard, self.settings.allow_private, &url)
            .await
            .map_err(Failure::Refused)?;
        let id = &claimed.delivery.event_id;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature_header(&secrets, id, timestamp, body.as_bytes());
        let answer = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| self.classify(&e))?;
        let code = answer.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(code);
        }
        let text = read_prefix(answer).await;
        Err(Failure::Answer(code, text))
    }

    /// The secrets that sign now: the current one, and the one before a rotation while it
    /// still does.
    fn secrets(&self, claimed: &ClaimedDelivery) -> Result<Vec<Secret>, Failure> {
        let sealer = self
            .sealer
            .as_ref()
            .ok_or_else(|| Failure::Other("WEBHOOK_SECRET_KEY is not set on this worker".into()))?;
        let endpoint = &claimed.endpoint;
        let id = endpoint.view.id;
        let mut secrets = vec![
            sealer
                .open(id, &endpoint.secret)
                .map_err(|e| Failure::Other(e.to_string()))?,
        ];
        if let Some(previous) = &endpoint.previous_secret {
            secrets.push(
                sealer
                    .open(id, previous)
                    .map_err(|e| Failure::Other(e.to_string()))?,
            );
        }
        Ok(secrets)
    }

    /// The body: `{"type", "timestamp", "data"}`. A job event's data is made by its first
    /// attempt and kept, so every attempt reports the same counts; its download link is
    /// signed afresh each time, so a late retry still carries one that works.
    async fn body(&self, claimed: &ClaimedDelivery) -> Result<String, Failure> {
        let delivery = &claimed.delivery;
        let mut data: serde_json::Value = match &claimed.payload {
            Some(frozen) => serde_json::from_str(frozen)
                .map_err(|e| Failure::Other(format!("the stored event does not parse: {e}")))?,
            None => {
                let data = self.job_data(delivery.job_id).await?;
                if let Err(e) = self
                    .store
                    .freeze_webhook_payload(delivery.id, &data.to_string())
                    .await
                {
                    tracing::warn!(delivery = %delivery.id, error = %e, "could not keep a webhook event's data");
                }
                data
            }
        };
        let is_final = matches!(
            delivery.event_type,
            WebhookEvent::JobCompleted | WebhookEvent::JobFailed | WebhookEvent::JobCancelled
        );
        if let (true, Some(job_id), Some(fields)) =
            (is_final, delivery.job_id, data.as_object_mut())
        {
            let path = self.signer.link(job_id, chrono::Utc::now());
            let link = match &self.public_url {
                Some(base) => format!("{base}{path}"),
                None => path,
            };
            fields.insert("download_url".into(), link.into());
        }
        Ok(serde_json::json!({
            "type": delivery.event_type.as_str(),
            "timestamp": claimed.event_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string())
    }

    /// A job event's data: the job's counts and its failures by reason.
    async fn job_data(&self, job_id: Option<Uuid>) -> Result<serde_json::Value, Failure> {
        let Some(job_id) = job_id else {
            return Ok(serde_json::json!({}));
        };
        let store_error = |e: crate::store::StoreError| Failure::Other(format!("database: {e}"));
        let Some(job) = self.store.job(job_id).await.map_err(store_error)? else {
            return Ok(serde_json::json!({ "job_id": job_id, "deleted": true }));
        };
        let failures: serde_json::Map<String, serde_json::Value> = self
            .store
            .failures_by_reason(job_id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|(category, n)| (category.as_str().to_owned(), n.into()))
            .collect();
        Ok(serde_json::json!({
            "job_id": job.id,
            "client_id": job.client,
            "status": job.status,
            "total": job.total,
            "completed": job.completed,
            "failed": job.failed,
            "progress": job.progress,
            "created_at": job.created_at,
            "finished_at": job.updated_at,
            "failures_by_reason": failures,
        }))
    }

    /// What a failed send says: the guard's refusal, a timeout, a certificate not trusted, a
    /// refused connection.
    fn classify(&self, e: &reqwest::Error) -> Failure {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if let Some(resolve) = err.downcast_ref::<ResolveError>() {
                return match resolve {
                    ResolveError::Blocked { .. } => Failure::Refused(format!(
                        "{resolve} (set FETCH_ALLOW_PRIVATE_NETWORKS to allow it)"
                    )),
                    _ => Failure::Other(resolve.to_string()),
                };
            }
            source = err.source();
        }
        if e.is_timeout() {
            Failure::Other(format!(
                "no answer within {} s",
                self.settings.timeout.as_secs()
            ))
        } else {
            // The innermost cause (rustls', the socket's), as the finder words a fetch's: the
            // endpoint's owner is told which certificate or connection failed, not only that
            // one did.
            let (category, why) = classify(e);
            let why: String = why.chars().take(KEPT_ANSWER_CHARS).collect();
            if category == ErrorCategory::Tls {
                Failure::Other(format!("TLS failed: {why}"))
            } else if e.is_connect() {
                Failure::Other(format!("could not connect: {why}"))
            } else {
                Failure::Other("the request failed before an answer came".into())
            }
        }
    }
}

/// Why an attempt failed.
enum Failure {
    /// A non-2xx answer, with the start of its body.
    Answer(u16, String),
    /// The SSRF guard refused the address.
    Refused(String),
    /// Anything else: a timeout, a refused connection, a secret that does not open.
    Other(String),
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer and keeps its first characters, so an
/// endless or huge answer costs nothing.
async fn read_prefix(answer: reqwest::Response) -> String {
    let mut stream = answer.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= MAX_ANSWER_BYTES {
            bytes.truncate(MAX_ANSWER_BYTES);
            break;
        }
    }
    String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(KEPT_ANSWER_CHARS)
        .collect()
}
