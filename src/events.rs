//! Progress events and *work available* wake-ups, in-process or across processes over Redis.
//!
//! Events are signals, not truth: PostgreSQL (or SQLite) is. A lost event costs latency only,
//! because workers also poll and subscribers re-read the database when they hear nothing.
//!
//! Publishing is coalesced per job: recorders merge their updates into a pending map, and a
//! flusher sends each job's merged event at most every [`COALESCE`] (a job's final event is
//! sent at once). Nothing on the recording path ever waits for Redis.
//!
//! With `REDIS_URL`, events go to the channel `{prefix}:job:{id}` and wake-ups to
//! `{prefix}:work`; every process keeps one subscriber connection (pattern `{prefix}:job:*`)
//! that feeds the local broadcast, so subscriptions and workers read only local channels. Both
//! Redis clients reconnect forever; the subscriber re-subscribes after every reconnect.

use crate::metrics::Metrics;
pub use crate::model::ProgressEvent;
use fred::prelude::{
    ClientLike, Config as RedisConfig, EventInterface, PubsubInterface, ReconnectPolicy,
};
use fred::types::Builder;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

/// Events buffered per local subscriber before a slow one starts missing some (it then
/// re-reads the database, so nothing is lost for good).
const PROGRESS_BUFFER: usize = 4096;
/// The shortest interval between two published events of one job (10 per second).
pub const COALESCE: Duration = Duration::from_millis(100);
/// How long one Redis command may take before we give up on it (signals are lossy anyway).
const REDIS_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a health check waits for Redis: readiness probes time out after 1 s by
/// default, and a slow Redis must not make a process look dead.
pub const REDIS_HEALTH_TIMEOUT: Duration = Duration::from_millis(300);
/// Commands queued while Redis is unreachable, at most; past that they fail at once.
const REDIS_BUFFER: usize = 1024;

/// The process's event hub; cheap to clone.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    progress: broadcast::Sender<Arc<ProgressEvent>>,
    work: Notify,
    pending: Mutex<HashMap<Uuid, ProgressEvent>>,
    flush_now: Notify,
    redis: Option<RedisLink>,
}

struct RedisLink {
    metrics: Arc<Metrics>,
    publisher: fred::clients::Client,
    subscriber: fred::clients::SubscriberClient,
    prefix: String,
}

impl RedisLink {
    fn job_channel(&self, job: Uuid) -> String {
        format!("{}:job:{job}", self.prefix)
    }

    fn work_channel(&self) -> String {
        format!("{}:work", self.prefix)
    }
}

impl Events {
    /// Events that stay inside this process (the embedded default).
    pub fn in_process() -> Self {
        Self::build(None)
    }

    /// Events shared through Redis. Start-up does not wait for Redis: the service works
    /// without it (slower wake-ups, no live events) and connects when Redis comes.
    /// A `rediss://` URL connects over TLS, trusting `ca_cert` (a PEM file) or else the
    /// system's root certificates.
    pub fn redis(
        url: &str,
        prefix: &str,
        ca_cert: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let builder = redis_builder(url, ca_cert, REDIS_COMMAND_TIMEOUT)?;
        let publisher = builder.build()?;
        let subscriber = builder.build_subscriber_client()?;
        let events = Self::build(Some(RedisLink {
            publisher,
            subscriber,
            prefix: prefix.to_owned(),
            metrics,
        }));
        events.start_redis();
        Ok(events)
    }

    fn build(redis: Option<RedisLink>) -> Self {
        let (progress, _) = broadcast::channel(PROGRESS_BUFFER);
        let events = Self {
            inner: Arc::new(Inner {
                progress,
                work: Notify::new(),
                pending: Mutex::new(HashMap::new()),
                flush_now: Notify::new(),
                redis,
            }),
        };
        tokio::spawn(flush_loop(Arc::downgrade(&events.inner)));
        events
    }

    fn start_redis(&self) {
        let Some(redis) = &self.inner.redis else {
            return;
        };
        // The connection tasks run detached for the life of the process, reconnecting as the
        // policy says; dropping their handles does not stop them.
        drop(redis.publisher.connect());
        drop(redis.subscriber.connect());
        // Re-subscribes to what was subscribed before, after every reconnect.
        drop(redis.subscriber.manage_subscriptions());
        tokio::spawn(subscribe_loop(Arc::downgrade(&self.inner)));
        let publisher = redis.publisher.clone();
        tokio::spawn(async move {
            let mut errors = publisher.error_rx();
            while let Ok((error, _)) = errors.recv().await {
                tracing::warn!(error = %error, "Redis connection error; reconnecting");
            }
        });
    }

    /// Queues a job's progress for publishing; never waits.
    pub fn publish_progress(&self, event: ProgressEvent) {
        let is_final = event.is_final();
        {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            match pending.get_mut(&event.job_id) {
                Some(merged) => merged.merge(event),
                None => {
                    pending.insert(event.job_id, event);
                }
            }
        }
        if is_final {
            self.inner.flush_now.notify_one();
        }
    }

    /// Receives every job's progress events from now on (already coalesced).
    pub fn subscribe_progress(&self) -> broadcast::Receiver<Arc<ProgressEvent>> {
        self.inner.progress.subscribe()
    }

    /// Tells idle workers, here and in other processes, that new work is due. The message
    /// carries the current span's `traceparent` (or `1` outside a trace), so the wake-up
    /// shows in the trace of the work it announces.
    pub fn notify_work(&self) {
        self.inner.work.notify_waiters();
        if let Some(redis) = &self.inner.redis {
            let publisher = redis.publisher.clone();
            let channel = redis.work_channel();
            let metrics = redis.metrics.clone();
            let message = crate::telemetry::current_traceparent().unwrap_or_else(|| "1".into());
            tokio::spawn(async move {
                if let Err(e) = publisher.publish::<(), _, _>(channel, message).await {
                    metrics.redis_errors.inc();
                    tracing::debug!(error = %e, "could not publish a wake-up; workers will poll");
                }
            });
        }
    }

    /// Resolves at the next *work available* signal.
    pub async fn work_available(&self) {
        self.inner.work.notified().await;
    }

    /// `None` without Redis; otherwise whether Redis answers a PING now. Answers within
    /// [`REDIS_HEALTH_TIMEOUT`] whatever Redis does: a client that is not connected is
    /// reported at once without a round trip, and a PING gets that long.
    pub async fn redis_health(&self) -> Option<Result<(), String>> {
        let redis = self.inner.redis.as_ref()?;
        if !redis.publisher.is_connected() {
            return Some(Err("not connected (reconnecting)".to_owned()));
        }
        let ping = redis.publisher.ping::<String>(None);
        Some(
            match tokio::time::timeout(REDIS_HEALTH_TIMEOUT, ping).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer to PING".to_owned()),
            },
        )
    }
}

/// Sends merged events at most every [`COALESCE`], at once when a job finishes. Ends when the
/// hub is dropped.
async fn flush_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(hub) = inner.upgrade() else { return };
        tokio::select! {
            _ = tokio::time::sleep(COALESCE) => {}
            _ = hub.flush_now.notified() => {}
        }
        let batch: Vec<ProgressEvent> = {
            let mut pending = hub.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().map(|(_, e)| e).collect()
        };
        for event in batch {
            match &hub.redis {
                None => {
                    let _ = hub.progress.send(Arc::new(event));
                }
                Some(redis) => {
                    let channel = redis.job_channel(event.job_id);
                    let Ok(payload) = serde_json::to_string(&event) else {
                        continue;
                    };
                    let publisher = redis.publisher.clone();
                    let metrics = redis.metrics.clone();
                    // Off the flush path: a down Redis must not delay other jobs' events.
                    tokio::spawn(async move {
                        if let Err(e) = publisher.publish::<(), _, _>(channel, payload).await {
                            metrics.redis_errors.inc();
                            tracing::debug!(error = %e, "progress event not published; subscribers will re-read");
                        }
                    });
                }
            }
        }
    }
}

/// A builder of Redis clients for `url` (TLS for `rediss://`, trusting `ca_cert` or else the
/// system's roots) that reconnect forever and give up on a command after `command_timeout`:
/// the one way every part of the service connects to Redis.
pub fn redis_builder(
    url: &str,
    ca_cert: Option<&Path>,
    command_timeout: Duration,
) -> anyhow::Result<Builder> {
    // fred builds a default TLS config for `rediss://` while parsing the URL, through
    // rustls' process-wide provider; with two providers linked in there is none unless one
    // is installed. Installing twice is harmless (the first one stays).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut config = RedisConfig::from_url(url)
        .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
    if config.tls.is_some() {
        config.tls = Some(redis_tls(ca_cert)?.into());
    }
    let mut builder = Builder::from_config(config);
    builder
        // max_attempts 0: never give up reconnecting.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
            c.max_command_buffer_len = REDIS_BUFFER;
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
        });
    Ok(builder)
}

/// The TLS client settings for Redis. The provider is named, not taken from the process
/// default: two rustls providers are linked in (sqlx brings ring), so there is no default.
fn redis_tls(ca_cert: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    anyhow::anyhow!("REDIS_CA_CERT: cannot read {}: {e}", path.display())
                })?;
            anyhow::ensure!(
                !certs.is_empty(),
                "REDIS_CA_CERT: {} holds no PEM certificate",
                path.display()
            );
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    anyhow::anyhow!("REDIS_CA_CERT: {}: bad certificate: {e}", path.display())
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system store may hold a certificate rustls cannot use; skip it like
                // every other TLS client does rather than refuse to start.
                let _ = roots.add(cert);
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "rediss:// needs trusted roots: the system has none; set REDIS_CA_CERT"
            );
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Subscribes (retrying until Redis is there), then forwards messages to local channels,
/// surviving lag and reconnects. Ends when the hub is dropped.
async fn subscribe_loop(inner: std::sync::Weak<Inner>) {
    let (subscriber, patterns, work_channel) = {
        let Some(hub) = inner.upgrade() else { return };
        let Some(redis) = &hub.redis else { return };
        (
            redis.subscriber.clone(),
            format!("{}:job:*", redis.prefix),
            redis.work_channel(),
        )
    };
    let mut messages = subscriber.message_rx();
    let mut attempt = 0u32;
    loop {
        let subscribed = async {
            subscriber.psubscribe(patterns.clone()).await?;
            subscriber.subscribe(work_channel.clone()).await
        };
        match subscribed.await {
            Ok(()) => break,
            Err(e) => {
                attempt += 1;
                if attempt == 1 || attempt.is_multiple_of(30) {
                    tracing::warn!(error = %e, "cannot subscribe to Redis yet; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                if inner.upgrade().is_none() {
                    return;
                }
            }
        }
    }
    tracing::info!("subscribed to Redis events");
    loop {
        match messages.recv().await {
            Ok(message) => {
                let Some(hub) = inner.upgrade() else { return };
                if message.channel == work_channel.as_str() {
                    let span = tracing::debug_span!("work.wakeup");
                    crate::telemetry::continue_trace(&span, message.value.as_str().as_deref());
                    span.in_scope(|| hub.work.notify_waiters());
                    continue;
                }
                let Some(text) = message.value.as_str() else {
                    continue;
                };
                match serde_json::from_str::<ProgressEvent>(&text) {
                    Ok(event) => {
                        let _ = hub.progress.send(Arc::new(event));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, channel = %message.channel, "ignoring a malformed event")
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "Redis messages dropped while this process was busy; subscribers will re-read"
                );
            }
            Err(broadcast::error::RecvError::Closed) => {
                if inner.upgrade().is_none() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                messages = subscriber.message_rx();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobStatus;

    fn event(job: Uuid, status: JobStatus, completed: i32, domains: &[&str]) -> ProgressEvent {
        ProgressEvent::sample(job, status, completed, 0, domains)
    }

    #[tokio::test]
    async fn in_process_events_are_coalesced_and_final_ones_flush_at_once() {
        let events = Events::in_process();
        let mut rx = events.subscribe_progress();
        let job = Uuid::new_v4();
        for i in 0..50 {
            events.publish_progress(event(job, JobStatus::Processing, i, &["x"]));
        }
        let first = rx.recv().await.unwrap();
        assert_eq!(first.completed, 49);
        assert_eq!(
            first.finished.len(),
            50,
            "coalescing loses no finished domain"
        );
        let started = tokio::time::Instant::now();
        events.publish_progress(event(job, JobStatus::Completed, 10, &["y"]));
        let last = rx.recv().await.unwrap();
        assert!(last.is_final());
        assert!(
            started.elapsed() < COALESCE,
            "a final event does not wait for the tick"
        );
    }
}
