//! The core: every use case the adapters (REST, GraphQL, health) call, and every rule they
//! follow. An adapter parses its wire format, calls one method of [`Jobs`], and maps the
//! answer; none of them reaches the store.
//!
//! - this module: the [`Jobs`] handle, the [`Rules`] it enforces, the rate check;
//! - `input`: a job request's fields parsed into typed values;
//! - `feed`: one shared progress feed per watched job (coalescing, re-reads, frames);
//! - `progress`: a job's progress as one subscriber's stream (snapshot, then the feed);
//! - `results`: a job's results read by page or by cursor, filtered, and its failure groups.

mod feed;
mod input;
mod progress;
mod results;

pub use feed::{CATCH_UP_PAGE, FEED_BUFFER, IDLE_REREAD, ProgressFrame, Rendered};
pub use input::{
    Entry, Fields, MAX_CACHE_AGE_SECS, NewJob, parse_client_id, parse_domains, parse_job_id,
    parse_max_age,
};
pub use results::{FailureGroup, ResultPage, ResultSlice};

use crate::auth::{Caller, Scope};
use crate::domain::Domain;
use crate::error::{AppError, AppResult, Code};
use crate::events::Events;
use crate::model::{
    CachePolicy, CsvWriter, Job, JobStatus, Page, Priority, ProgressEvent, QueueStanding,
};
use crate::store::{Store, Usage};
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use std::net::IpAddr;
use std::time::Duration;
use uuid::Uuid;

/// Per-client allowances over a rolling hour (0 means no limit).
#[derive(Clone, Copy, Debug, Default)]
pub struct RateLimits {
    /// Jobs per hour.
    pub jobs_per_hour: u64,
    /// Domains per hour.
    pub domains_per_hour: u64,
}

/// What the core enforces, from the configuration (`app` builds it; the core reads no
/// environment).
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// The most distinct domains one job may hold (`MAX_DOMAINS_PER_JOB`).
    pub max_domains_per_job: usize,
    /// Per-client allowances.
    pub rate_limits: RateLimits,
    /// Reuse an earlier success fetched at most this long ago, unless a job asks otherwise.
    pub cache_max_age: Duration,
    /// Reuse an earlier permanent failure fetched at most this long ago.
    pub cache_failure_max_age: Duration,
    /// About how many bytes of CSV one chunk of an export holds.
    pub export_chunk_bytes: usize,
    /// Result rows deleted per transaction when a job is deleted (`RETENTION_BATCH_ROWS`).
    pub purge_batch_rows: usize,
}

impl RateLimits {
    /// Refuses one more job of `domains` domains after `usage` (jobs, domains, the oldest
    /// job's time) in the last hour; `who` names the client or address in the message.
    fn check(&self, who: &str, (jobs, submitted, oldest): Usage, domains: usize) -> AppResult<()> {
        let hour = chrono::Duration::hours(1);
        let retry_after_secs = oldest
            .map(|t| (t + hour - crate::store::now()).num_seconds().max(1) as u64)
            .unwrap_or(1);
        if self.jobs_per_hour > 0 && jobs >= self.jobs_per_hour {
            return Err(AppError::RateLimited {
                message: format!(
                    "{who} created {jobs} jobs in the last hour; the limit is {}",
                    self.jobs_per_hour
                ),
                retry_after_secs,
            });
        }
        if self.domains_per_hour > 0 && submitted + domains as u64 > self.domains_per_hour {
            return Err(AppError::RateLimited {
                message: format!(
                    "{who} submitted {submitted} domains in the last hour; {domains} more would pass the limit of {}",
                    self.domains_per_hour
                ),
                retry_after_secs,
            });
        }
        Ok(())
    }
}

impl Rules {
    /// The cross-job cache policy for a job, from its own `max_age_seconds` or the default.
    fn cache_policy(&self, max_age_secs: Option<u64>) -> CachePolicy {
        let max_age = max_age_secs.map_or(self.cache_max_age, Duration::from_secs);
        CachePolicy {
            max_age,
            failure_max_age: self.cache_failure_max_age.min(max_age),
        }
    }
}

/// Who an admitted on-demand lookup is recorded for (see [`Jobs::admit_lookup`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupPayer {
    /// The client whose one-domain job the lookup becomes.
    pub client_id: String,
    /// The address kept on that job, for a caller without a key.
    pub source_ip: Option<IpAddr>,
}

/// The core's handle; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    /// Wakes the workers when a job has work left, and carries progress to subscribers.
    events: Events,
    rules: Rules,
    /// `PUBLIC_URL`: icon links in the results are absolute under it (unset: paths).
    public_url: Option<std::sync::Arc<str>>,
    /// The progress feeds of watched jobs, shared by their subscribers.
    feeds: feed::Feeds,
    /// Where progress re-reads are counted (none in tests that build the core alone).
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl Jobs {
    /// The use cases over this database and these events, under these rules.
    pub fn new(store: Store, events: Events, rules: Rules) -> Self {
        Self {
            store,
            events,
            rules,
            public_url: None,
            feeds: feed::Feeds::default(),
            metrics: None,
        }
    }

    /// The same handle, counting its work in `metrics`.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts one database re-read made for progress subscribers.
    fn count_reread(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.progress_rereads.inc();
        }
    }

    /// Jobs whose progress feed runs now (one per watched job, however many watch it).
    pub fn progress_feeds(&self) -> usize {
        self.feeds.running()
    }

    /// The same handle, with results' icon links absolute under `public_url` (`PUBLIC_URL`).
    pub fn with_public_url(mut self, public_url: Option<&str>) -> Self {
        self.public_url = public_url.map(std::sync::Arc::from);
        self
    }

    /// The most domains a job may hold: a wire format that reads entries one by one stops
    /// reading after this many.
    pub fn max_domains_per_job(&self) -> usize {
        self.rules.max_domains_per_job
    }

    /// Creates a job for `caller`, who needs the `submit` scope. The client comes from the
    /// caller's key (a `client_id` sent as well must name it; see [`Caller::client_for`]);
    /// without a key it is the `client_id` sent. Then the domains and the cache age are
    /// checked (each error names the field as the caller's API does), then the hourly
    /// allowances: the client's, and for a caller without a key also its address's. The job
    /// is created with whatever the cache answers, and the workers are woken unless it
    /// answered every domain.
    pub async fn submit(&self, caller: &Caller, request: NewJob<'_>) -> AppResult<Job> {
        caller.require(Scope::Submit)?;
        let fields = request.fields;
        let requested = request
            .client_id?
            .map(|raw| parse_client_id(raw, fields))
            .transpose()?;
        let client_id = match (caller, requested) {
            (Caller::Anonymous, None) => {
                return Err(AppError::bad_request(
                    Code::InvalidInput,
                    format!("{} is required when no API key is sent", fields.client_id),
                ));
            }
            (caller, requested) => caller.client_for(requested.as_deref())?,
        };
        let domains = parse_domains(
            request.domains?.into_iter(),
            self.rules.max_domains_per_job,
            fields,
        )?;
        let max_age = parse_max_age(request.max_age_seconds?, fields)?;
        let cache = self.rules.cache_policy(max_age);
        let priority = request.priority?.unwrap_or_default();
        if priority > Priority::Normal && !caller.may(Scope::Priority) {
            return Err(AppError::Forbidden {
                code: Code::Forbidden,
                message: format!(
                    "{} {} needs a key with the `priority` scope; this key may submit low or normal",
                    fields.priority,
                    priority.as_str()
                ),
            });
        }
        // Only a caller without a key can write any client_id, so only its address is counted
        // (and kept on the job).
        let source_ip = match caller {
            Caller::Anonymous => request.source_ip,
            _ => None,
        };
        self.check_rate(&client_id, source_ip, domains.len())
            .await?;
        self.create(&client_id, source_ip, priority, &domains, cache)
            .await
    }

    /// Refuses a new job of `domains` domains when the client, or the address `source_ip`,
    /// is over an hourly allowance.
    ///
    /// Counted from the job table, so the limit holds across every API process of a fleet;
    /// two requests racing at the very edge may both pass.
    async fn check_rate(
        &self,
        client_id: &str,
        source_ip: Option<IpAddr>,
        domains: usize,
    ) -> AppResult<()> {
        let limits = self.rules.rate_limits;
        if limits.jobs_per_hour == 0 && limits.domains_per_hour == 0 {
            return Ok(());
        }
        // Waiting cannot help a job bigger than the whole allowance, so this is not a 429
        // with a Retry-After that would send clients into a retry loop.
        if limits.domains_per_hour > 0 && domains as u64 > limits.domains_per_hour {
            return Err(AppError::bad_request(
                Code::TooManyDomains,
                format!(
                    "this job alone has {domains} domains, more than the {} a client may submit \
                     per hour (RATE_LIMIT_DOMAINS_PER_HOUR); split it into smaller jobs",
                    limits.domains_per_hour
                ),
            ));
        }
        let since = crate::store::now() - chrono::Duration::hours(1);
        let usage = self.store.client_usage_since(client_id, since).await?;
        limits.check(&format!("client {client_id:?}"), usage, domains)?;
        if let Some(ip) = source_ip {
            let usage = self.store.address_usage_since(ip, since).await?;
            limits.check(&format!("address {ip}"), usage, domains)?;
        }
        Ok(())
    }

    /// Creates a job from validated input and wakes the workers (unless the cache answered
    /// all).
    async fn create(
        &self,
        client_id: &str,
        source_ip: Option<IpAddr>,
        priority: Priority,
        domains: &[Domain],
        cache: CachePolicy,
    ) -> AppResult<Job> {
        // The job row keeps this span's trace context: every find of the job continues it.
        let span = tracing::debug_span!(
            "job.create",
            domains = domains.len(),
            job_id = tracing::field::Empty
        );
        let job = tracing::Instrument::instrument(
            self.store
                .create_job_from(client_id, source_ip, priority, domains, cache),
            span.clone(),
        )
        .await?;
        span.record("job_id", tracing::field::display(job.id));
        let cached = job.done();
        if cached < job.total {
            span.in_scope(|| self.events.notify_work());
        }
        let _span = tracing::info_span!("job", job_id = %job.id).entered();
        tracing::info!(client_id, total = job.total, cached, "job created");
        Ok(job)
    }

    /// The cross-job cache policy of a job that asks for no age of its own.
    pub fn default_cache(&self) -> CachePolicy {
        self.rules.cache_policy(None)
    }

    /// Admits an on-demand lookup of one domain (`/icons/{domain}?find=1`) for `caller`: the
    /// same permission as creating a job (`submit`), and counted as a one-domain job against
    /// the hourly allowances of whoever pays for it, which this returns. With a key that is
    /// the key's client; without one (`AUTH_MODE=off`) it is `keyless_client`, shared by every
    /// such caller, and the caller's address `source_ip`, as for a job created without a key.
    pub async fn admit_lookup(
        &self,
        caller: &Caller,
        source_ip: Option<IpAddr>,
        keyless_client: &str,
    ) -> AppResult<LookupPayer> {
        caller.require(Scope::Submit)?;
        let payer = match caller {
            Caller::Anonymous => LookupPayer {
                client_id: keyless_client.to_owned(),
                source_ip,
            },
            caller => LookupPayer {
                client_id: caller.client_for(None)?,
                source_ip: None,
            },
        };
        self.check_rate(&payer.client_id, payer.source_ip, 1)
            .await?;
        Ok(payer)
    }

    /// Admits the background re-find a stale icon's request starts: paid by the caller's
    /// client when its key may submit, else by `keyless_client` and the caller's address (an
    /// `<img>` sends no key); over the payer's allowance, refused (the stale icon is served
    /// without a re-find).
    pub async fn admit_refind(
        &self,
        caller: Option<&Caller>,
        source_ip: Option<IpAddr>,
        keyless_client: &str,
    ) -> AppResult<LookupPayer> {
        let payer = match caller {
            Some(caller @ Caller::Key(_)) if caller.may(Scope::Submit) => LookupPayer {
                client_id: caller.client_for(None)?,
                source_ip: None,
            },
            _ => LookupPayer {
                client_id: keyless_client.to_owned(),
                source_ip,
            },
        };
        self.check_rate(&payer.client_id, payer.source_ip, 1)
            .await?;
        Ok(payer)
    }

    /// A job `caller` may read (the `read` scope, and its own client's job unless it is an
    /// admin), or `NOT_FOUND`.
    pub async fn job(&self, caller: &Caller, id: Uuid) -> AppResult<Job> {
        caller.require(Scope::Read)?;
        self.visible(caller, id).await
    }

    /// A job `caller` may see, or `NOT_FOUND`: a job of another client is answered exactly
    /// as one that does not exist, so ids reveal nothing.
    async fn visible(&self, caller: &Caller, id: Uuid) -> AppResult<Job> {
        match self.store.job(id).await? {
            Some(job) if caller.can_see(id, &job.client) => Ok(job),
            _ => Err(AppError::NotFound(format!("no job with id {id}"))),
        }
    }

    /// One page of the caller's jobs, newest first, and how many there are in all. The
    /// client is the key's; `requested` (GraphQL `clientId`) must name it, unless the caller
    /// is an admin; without a key it is required.
    pub async fn jobs_for_client(
        &self,
        caller: &Caller,
        requested: Option<&str>,
        page: Page,
    ) -> AppResult<(Vec<Job>, u64)> {
        caller.require(Scope::Read)?;
        let requested = requested.map(str::trim);
        let client_id = match (caller, requested) {
            (Caller::Anonymous, None) => {
                return Err(AppError::bad_request(
                    Code::InvalidInput,
                    "clientId is required when no API key is sent",
                ));
            }
            (caller, requested) => caller.client_for(requested)?,
        };
        Ok(self
            .store
            .jobs_for_client(&client_id, page.offset(), page.per_page)
            .await?)
    }

    /// A job's results as CSV (the header row, then one row per result in submission order),
    /// in chunks of at most `EXPORT_CHUNK_BYTES` (a longer row is a chunk of its own), or
    /// `NOT_FOUND` (as [`Jobs::find`]) before anything is read. A signed link to the job
    /// stands in for the `read` scope.
    pub async fn export(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> AppResult<impl Stream<Item = AppResult<Bytes>> + Send + use<>> {
        if !matches!(caller, Caller::Link { .. }) {
            caller.require(Scope::Read)?;
        }
        self.visible(caller, id).await?;
        let chunk_bytes = self.rules.export_chunk_bytes;
        // Room for a chunk and the row that ends it, so the buffer seldom grows.
        let mut csv = CsvWriter::new(self.public_url.as_deref(), chunk_bytes + 4096);
        csv.header();
        Ok(self
            .store
            .export_csv(id, csv, chunk_bytes)
            .map_err(AppError::from))
    }

    /// A job's progress: its state now, then an event (at most about ten a second) carrying
    /// the domains finished since the previous one, until the job's final state; or
    /// `NOT_FOUND` (as [`Jobs::find`]). Events after the first are frames shared by every
    /// subscriber of the job (see `feed`); see `progress` for how nothing is missed. With
    /// `after` (an earlier event's cursor) it starts with every domain finished after it.
    pub async fn progress(
        &self,
        caller: &Caller,
        id: Uuid,
        after: Option<i32>,
    ) -> AppResult<impl Stream<Item = std::sync::Arc<ProgressFrame>> + Send + use<>> {
        progress::stream(self.clone(), caller, id, after).await
    }

    /// Cancels a job for `caller` (the `submit` scope; its own client's job unless it is an
    /// admin; otherwise `NOT_FOUND`): the job turns `cancelled`, its domains no worker holds
    /// fail with the code `cancelled` and are never fetched, domains being fetched finish
    /// normally, and subscribers get a final event. A finished job is answered unchanged.
    pub async fn cancel(&self, caller: &Caller, id: Uuid) -> AppResult<Job> {
        caller.require(Scope::Submit)?;
        let job = self.visible(caller, id).await?;
        if job.status.is_final() {
            return Ok(job);
        }
        match self.store.cancel_job(id).await? {
            Some(job) => {
                self.events.publish_progress(ProgressEvent::from(&job));
                tracing::info!(job_id = %id, key_id = ?caller.key_id(), "job cancelled");
                Ok(job)
            }
            // It finished (or was deleted) meanwhile: answer what it is now.
            None => self.visible(caller, id).await,
        }
    }

    /// Deletes a job for `caller` (the same rule as [`Jobs::cancel`]): a running job is
    /// cancelled first, the job is then hidden from every read (404 everywhere, signed links
    /// too), subscribers get a final `cancelled` event, and its results are deleted in
    /// batches of `RETENTION_BATCH_ROWS`, keeping in the per-domain cache what later jobs may
    /// still reuse. If this stops half-way, the retention task finishes the deletion.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> AppResult<()> {
        caller.require(Scope::Submit)?;
        let job = self.visible(caller, id).await?;
        let job = match job.status {
            JobStatus::Processing => self.store.cancel_job(id).await?.unwrap_or(job),
            _ => job,
        };
        if !self.store.mark_deleted(id).await? {
            // Another request deleted it first.
            return Err(AppError::NotFound(format!("no job with id {id}")));
        }
        self.events.publish_progress(ProgressEvent {
            status: JobStatus::Cancelled,
            ..ProgressEvent::from(&job)
        });
        let keep_since = (!self.rules.cache_max_age.is_zero()).then(|| {
            crate::store::now()
                - chrono::Duration::from_std(self.rules.cache_max_age)
                    .unwrap_or(chrono::Duration::MAX)
        });
        let purged = self
            .store
            .purge_job(id, self.rules.purge_batch_rows, keep_since)
            .await?;
        self.store.reclaim_space().await?;
        tracing::info!(
            job_id = %id,
            key_id = ?caller.key_id(),
            results = purged.results,
            kept_for_cache = purged.kept_for_cache,
            longest_ms = purged.longest.as_millis() as u64,
            "job deleted"
        );
        Ok(())
    }

    /// How many jobs are in each status, fleet-wide (a metrics gauge).
    pub async fn job_status_counts(&self) -> AppResult<Vec<(String, i64)>> {
        Ok(self.store.job_status_counts().await?)
    }

    /// Result rows waiting for a worker, and how many of them are leased now.
    pub async fn queue_depth(&self) -> AppResult<(i64, i64)> {
        Ok(self.store.queue_depth().await?)
    }

    /// Where `job` (which `caller` was shown) stands among the work the workers share, or
    /// `None` once it is final. Counts only, so any caller that may see the job may see this.
    pub async fn queue_standing(&self, job: &Job) -> AppResult<Option<QueueStanding>> {
        if job.status.is_final() {
            return Ok(None);
        }
        Ok(Some(self.store.queue_standing(job.id).await?))
    }

    /// Every processing job with domains left, fleet-wide: (job id, client, domains left),
    /// for the metrics.
    pub async fn work_left_by_job(&self) -> AppResult<Vec<(Uuid, String, i64)>> {
        Ok(self.store.work_left_by_job().await?)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> AppResult<()> {
        Ok(self.store.ping().await?)
    }

    /// Whether every migration has been applied.
    pub async fn migrations_applied(&self) -> AppResult<bool> {
        Ok(self.store.migrations_applied().await?)
    }
}
