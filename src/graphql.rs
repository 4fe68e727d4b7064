//! The GraphQL API: `createJob`, `job`, `jobs` and paginated `results`.
//!
//! Types here are views over the store's rows; every rule (validation, paging, not-found)
//! lives in `jobs` and is shared with the REST API.

use crate::entities::job::JobStatus;
use crate::entities::result::{self as result_entity, ResultStatus};
use crate::error::AppError;
use crate::events::Events;
use crate::events::{COALESCE, ProgressEvent};
use crate::finder::Candidate as FoundCandidate;
use crate::jobs::{self, Entry, Fields, Page};
use crate::store::{JobView, Store};
use async_graphql::{Context, ID, InputObject, Object, Result, Schema, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The assembled schema.
pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// A subscriber that heard nothing for this long re-reads the job from the database, so a
/// lost pub/sub message never leaves a client waiting.
pub const IDLE_REREAD: Duration = Duration::from_secs(3);
/// Finished domains fetched from the database after a re-read, at most.
const REREAD_RESULTS: u64 = 1_000;

/// What resolvers need, put into the schema's data.
#[derive(Clone)]
pub struct ApiContext {
    /// The database.
    pub store: Store,
    /// Wake-ups for workers.
    pub events: Events,
    /// The process configuration (limits, cache defaults).
    pub config: Arc<crate::config::Config>,
    /// Prometheus metrics (the subscription gauge).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Builds the schema with its context.
pub fn build_schema(context: Option<ApiContext>) -> AppSchema {
    let builder = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .extension(crate::graphql_errors::ErrorCodesFactory);
    match context {
        Some(context) => builder
            .limit_depth(context.config.graphql_max_depth)
            .limit_complexity(context.config.graphql_max_complexity)
            .data(context)
            .finish(),
        None => builder.finish(),
    }
}

/// Subscriptions running on one WebSocket connection, against `WS_MAX_SUBSCRIPTIONS`.
#[derive(Clone)]
pub struct ConnectionSubscriptions {
    running: Arc<std::sync::atomic::AtomicUsize>,
    limit: usize,
}

impl ConnectionSubscriptions {
    /// A fresh count for a new connection.
    pub fn new(limit: usize) -> Self {
        Self {
            running: Arc::default(),
            limit,
        }
    }

    /// Takes a slot, or says the connection is full.
    fn enter(&self) -> Result<ConnectionSlot, AppError> {
        use std::sync::atomic::Ordering;
        let taken = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(ConnectionSlot(self.running.clone())),
            Err(_) => Err(AppError::bad_request(
                crate::error::code::TOO_MANY_SUBSCRIPTIONS,
                format!(
                    "this connection already runs {} subscriptions, the most allowed (WS_MAX_SUBSCRIPTIONS); open another connection or stop one",
                    self.limit
                ),
            )),
        }
    }
}

/// A subscription's place on its connection, given back when the stream ends.
struct ConnectionSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The SDL of the schema, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    build_schema(None).sdl()
}

/// A job: a batch of domains being searched.
#[derive(SimpleObject)]
pub struct Job {
    /// The job id.
    id: ID,
    /// The submitting client's `clientId`.
    client_id: String,
    /// Life-cycle state.
    status: JobStatus,
    /// Percent of domains finished, rounded down.
    progress: i32,
    /// Distinct domains in the job.
    total: i32,
    /// Domains finished with an icon.
    completed: i32,
    /// Domains finished without one.
    failed: i32,
    /// When submitted.
    created_at: DateTime<Utc>,
    /// When last changed.
    updated_at: DateTime<Utc>,
}

impl From<JobView> for Job {
    fn from(view: JobView) -> Self {
        let progress = view.job.progress();
        let job = view.job;
        Self {
            id: ID(job.id.to_string()),
            client_id: view.client_name,
            status: job.status,
            progress,
            total: job.total,
            completed: job.completed,
            failed: job.failed,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

/// Where a candidate icon was found.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "CandidateSource", remote = "crate::finder::CandidateSource")]
pub enum CandidateSourceGql {
    /// `<link rel=icon>` or `shortcut icon`.
    Icon,
    /// `apple-touch-icon` (or `-precomposed`).
    AppleTouch,
    /// `rel=fluid-icon`.
    FluidIcon,
    /// Safari's `mask-icon` (never chosen).
    MaskIcon,
    /// The web app manifest.
    Manifest,
    /// `msapplication-TileImage`.
    Tile,
    /// A well-known path such as `/favicon.ico`.
    DefaultPath,
}

/// A possible icon and what verification found.
#[derive(SimpleObject)]
#[graphql(name = "Candidate")]
pub struct CandidateGql {
    /// Absolute URL (http, https or data).
    url: String,
    /// Where it was found.
    source: CandidateSourceGql,
    /// Declared `sizes`, as written.
    declared_sizes: Option<String>,
    /// Declared `type`, as written.
    declared_type: Option<String>,
    /// Found in `<body>` rather than `<head>`.
    in_body: bool,
    /// Sniffed mime, when fetched and an image.
    mime: Option<String>,
    /// Real width, when verified.
    width: Option<i32>,
    /// Real height, when verified.
    height: Option<i32>,
    /// Why it was rejected, when it was.
    error: Option<String>,
    /// The declared `media` query, as written (an icon for a non-default colour scheme is
    /// chosen only when nothing else is).
    media: Option<String>,
}

impl From<FoundCandidate> for CandidateGql {
    fn from(c: FoundCandidate) -> Self {
        Self {
            url: c.url,
            source: c.source.into(),
            declared_sizes: c.declared_sizes,
            declared_type: c.declared_type,
            in_body: c.in_body,
            mime: c.mime,
            width: c.width.map(|w| w as i32),
            height: c.height.map(|h| h as i32),
            error: c.error,
            media: c.media,
        }
    }
}

/// The outcome for one domain of a job.
#[derive(SimpleObject)]
#[graphql(name = "Result")]
pub struct ResultGql {
    /// The normalised domain.
    domain: String,
    /// The chosen icon, on success.
    favicon_url: Option<String>,
    /// `PENDING`, `SUCCESS` or `FAILED`.
    status: ResultStatus,
    /// Category and human message, on failure.
    error: Option<String>,
    /// The failure category code (`dns`, `timeout`, `no_icon`, ...).
    error_code: Option<String>,
    /// Tries so far.
    tries: i32,
    /// The home page after redirects.
    final_url: Option<String>,
    /// Sniffed mime of the chosen icon.
    mime: Option<String>,
    /// Real width of the chosen icon.
    width: Option<i32>,
    /// Real height of the chosen icon.
    height: Option<i32>,
    /// When the stored outcome was fetched (for a cached one, by the earlier job).
    fetched_at: Option<DateTime<Utc>>,
    /// Copied from an earlier job's result instead of fetched.
    cached: bool,
    /// Every candidate found, in rank order (at most a fixed number; see `candidatesDropped`).
    candidates: Vec<CandidateGql>,
    /// How many more candidates the page declared than `candidates` holds.
    candidates_dropped: i32,
}

impl From<result_entity::Model> for ResultGql {
    fn from(row: result_entity::Model) -> Self {
        let candidates: Vec<FoundCandidate> = row
            .candidates
            .and_then(|json| serde_json::from_value(json).ok())
            .unwrap_or_default();
        Self {
            domain: row.domain,
            favicon_url: row.favicon_url,
            status: row.status,
            error: row.error,
            error_code: row.error_code,
            tries: row.tries,
            final_url: row.final_url,
            mime: row.mime,
            width: row.width,
            height: row.height,
            fetched_at: row.fetched_at,
            cached: row.cached,
            candidates: candidates.into_iter().map(Into::into).collect(),
            candidates_dropped: row.candidates_dropped,
        }
    }
}

/// One page of a job's results, in submission order.
#[derive(SimpleObject)]
pub struct ResultPage {
    /// The results on this page.
    results: Vec<ResultGql>,
    /// This page's number (from 1).
    page: i32,
    /// Page size.
    per_page: i32,
    /// Results in the whole job.
    total: i32,
}

/// One page of a client's jobs, newest first.
#[derive(SimpleObject)]
pub struct JobPage {
    /// The jobs on this page.
    jobs: Vec<Job>,
    /// This page's number (from 1).
    page: i32,
    /// Page size.
    per_page: i32,
    /// The client's jobs in all.
    total: i32,
}

/// Input of `createJob`.
#[derive(InputObject)]
pub struct CreateJobInput {
    /// The caller's name for itself.
    client_id: String,
    /// Domains or URLs; normalised, and duplicates merged.
    domains: Vec<String>,
    /// Reuse a domain's result from an earlier job fetched at most this many seconds ago
    /// instead of fetching it (default `CACHE_MAX_AGE_SECS`; 0 always fetches).
    max_age_seconds: Option<i64>,
}

/// The complexity of a paged field: what is selected under it counts once per row the page
/// may hold, so aliases of `results(perPage: 500)` cannot multiply a response past
/// `GRAPHQL_MAX_COMPLEXITY`. An out-of-range `perPage` is refused by the resolver; here it
/// counts as the nearest legal size.
fn page_cost(per_page: i64, child_complexity: usize) -> usize {
    let rows = per_page.clamp(1, jobs::MAX_PER_PAGE as i64) as usize;
    rows.saturating_mul(child_complexity).saturating_add(1)
}

fn ctx<'a>(c: &'a Context<'_>) -> &'a ApiContext {
    c.data_unchecked::<ApiContext>()
}

/// Read operations.
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// One job by id.
    async fn job(&self, c: &Context<'_>, id: ID) -> Result<Job> {
        let id = jobs::parse_job_id(&id).map_err(AppError::into_graphql)?;
        let view = jobs::find_job(&ctx(c).store, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(view.into())
    }

    /// A client's jobs, newest first.
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    async fn jobs(
        &self,
        c: &Context<'_>,
        client_id: String,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 20)] per_page: i64,
    ) -> Result<JobPage> {
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        let (views, total) = ctx(c)
            .store
            .jobs_for_client(client_id.trim(), page.page, page.per_page)
            .await
            .map_err(|e| AppError::from(e).into_graphql())?;
        Ok(JobPage {
            jobs: views.into_iter().map(Into::into).collect(),
            page: page.page as i32,
            per_page: page.per_page as i32,
            total: total as i32,
        })
    }

    /// One page of a job's results, in submission order.
    #[graphql(complexity = "page_cost(per_page, child_complexity)")]
    async fn results(
        &self,
        c: &Context<'_>,
        job_id: ID,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 20)] per_page: i64,
    ) -> Result<ResultPage> {
        let id = jobs::parse_job_id(&job_id).map_err(AppError::into_graphql)?;
        let page = Page::new(page, per_page).map_err(AppError::into_graphql)?;
        let store = &ctx(c).store;
        let view = jobs::find_job(store, id)
            .await
            .map_err(AppError::into_graphql)?;
        let rows = store
            .results_page(id, page.page, page.per_page)
            .await
            .map_err(|e| AppError::from(e).into_graphql())?;
        Ok(ResultPage {
            results: rows.into_iter().map(Into::into).collect(),
            page: page.page as i32,
            per_page: page.per_page as i32,
            total: view.job.total,
        })
    }
}

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
        jobs::check_rate(
            &api.store,
            api.config.rate_limits(),
            &client_id,
            domains.len(),
        )
        .await
        .map_err(AppError::into_graphql)?;
        let view = jobs::create_job(&api.store, &api.events, &client_id, &domains, cache)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(view.into())
    }
}

/// One domain that finished, as carried by a progress event.
#[derive(SimpleObject, Clone)]
pub struct ProgressResult {
    /// The domain.
    domain: String,
    /// `SUCCESS` or `FAILED`.
    status: ResultStatus,
    /// The icon, on success.
    favicon_url: Option<String>,
    /// The failure category, on failure.
    error_code: Option<String>,
}

/// A job's progress at one moment, with the domains finished since the previous event.
#[derive(SimpleObject, Clone)]
pub struct JobProgress {
    /// The job.
    job_id: ID,
    /// Life-cycle state.
    status: JobStatus,
    /// Distinct domains in the job.
    total: i32,
    /// Finished with an icon.
    completed: i32,
    /// Finished without one.
    failed: i32,
    /// Percent finished, rounded down.
    progress: i32,
    /// Domains finished since the previous event (empty in the first, snapshot event).
    results: Vec<ProgressResult>,
}

impl From<&ProgressEvent> for JobProgress {
    fn from(event: &ProgressEvent) -> Self {
        let status = match event.status.as_str() {
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => JobStatus::Processing,
        };
        Self {
            job_id: ID(event.job_id.to_string()),
            status,
            total: event.total,
            completed: event.completed,
            failed: event.failed,
            progress: event.progress,
            results: event
                .finished
                .iter()
                .map(|f| ProgressResult {
                    domain: f.domain.clone(),
                    status: if f.status == ResultStatus::Success.as_str() {
                        ResultStatus::Success
                    } else {
                        ResultStatus::Failed
                    },
                    favicon_url: f.favicon_url.clone(),
                    error_code: f.error_code.clone(),
                })
                .collect(),
        }
    }
}

/// Live operations.
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Live progress of a job: the current state at once, then events (at most about ten a
    /// second) carrying the domains finished since the previous one; completes after the
    /// job's final event.
    async fn job_progress(
        &self,
        c: &Context<'_>,
        job_id: ID,
    ) -> Result<impl Stream<Item = JobProgress> + use<>> {
        let id = jobs::parse_job_id(&job_id).map_err(AppError::into_graphql)?;
        let slot = match c.data_opt::<ConnectionSubscriptions>() {
            Some(connection) => Some(connection.enter().map_err(AppError::into_graphql)?),
            None => None,
        };
        let api = ctx(c).clone();
        // Subscribe before reading the snapshot, so nothing recorded in between is missed.
        let rx = api.events.subscribe_progress();
        let view = jobs::find_job(&api.store, id)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(progress_stream(api, view, rx, slot))
    }
}

/// Keeps the open-subscriptions gauge right: up on creation, down on drop.
struct OpenSubscription(Arc<crate::metrics::Metrics>);

impl OpenSubscription {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.subscriptions.inc();
        Self(metrics)
    }
}

impl Drop for OpenSubscription {
    fn drop(&mut self) {
        self.0.subscriptions.dec();
    }
}

/// What a subscriber waits for next.
enum Heard {
    /// An event of our job.
    Event(ProgressEvent),
    /// Silence, lag or a lost channel: the database must be asked.
    Reread,
    /// The process is shutting down.
    Closed,
}

async fn next_for_job(
    rx: &mut broadcast::Receiver<Arc<ProgressEvent>>,
    job: uuid::Uuid,
    wait: Duration,
) -> Heard {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Ok(event) if event.job_id == job => return Heard::Event(event.as_ref().clone()),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Heard::Reread,
                Err(broadcast::error::RecvError::Closed) => return Heard::Closed,
            },
            _ = &mut deadline => return Heard::Reread,
        }
    }
}

/// The event stream of one subscriber: snapshot, coalesced live events, database re-reads
/// when events stop or are missed, and the end after the final state.
fn progress_stream(
    api: ApiContext,
    view: JobView,
    mut rx: broadcast::Receiver<Arc<ProgressEvent>>,
    slot: Option<ConnectionSlot>,
) -> impl Stream<Item = JobProgress> {
    async_stream::stream! {
        let _slot = slot;
        // Counts this subscription while the stream lives, however it ends.
        let _open = OpenSubscription::new(api.metrics.clone());
        let id = view.job.id;
        let mut last = ProgressEvent::from_job(&view.job, Vec::new());
        let mut read_at = view.job.updated_at;
        yield JobProgress::from(&last);
        if last.is_final() {
            return;
        }
        loop {
            let (mut event, mut reread) = match next_for_job(&mut rx, id, IDLE_REREAD).await {
                Heard::Event(event) => (event, false),
                Heard::Reread => (ProgressEvent { finished: Vec::new(), ..last.clone() }, true),
                Heard::Closed => return,
            };
            // Coalesce: whatever else arrives within the window joins this event.
            let window = tokio::time::Instant::now() + COALESCE;
            while !event.is_final() && !reread {
                let left = window.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match next_for_job(&mut rx, id, left).await {
                    Heard::Event(more) => event.merge(more),
                    Heard::Reread if tokio::time::Instant::now() >= window => break,
                    Heard::Reread => reread = true,
                    Heard::Closed => return,
                }
            }
            if reread {
                match api.store.job(id).await {
                    Ok(Some(now)) => {
                        let db = ProgressEvent::from_job(&now.job, Vec::new());
                        if db.done() > event.done() || (db.is_final() && !event.is_final()) {
                            // Events were missed: the database says what finished meanwhile.
                            let missed = api
                                .store
                                .finished_since(id, read_at, REREAD_RESULTS)
                                .await
                                .unwrap_or_default();
                            let mut fresh = ProgressEvent { finished: std::mem::take(&mut event.finished), ..db };
                            fresh.finished.extend(missed);
                            event = fresh;
                        }
                        read_at = now.job.updated_at;
                    }
                    Ok(None) => return,
                    Err(e) => tracing::warn!(job_id = %id, error = %e, "progress re-read failed"),
                }
            }
            let moved = event.done() > last.done() || event.is_final() != last.is_final();
            if !moved && event.finished.is_empty() {
                continue;
            }
            if event.done() < last.done() && !event.is_final() {
                // A late event from another process: keep its domains, not its older counts.
                event = ProgressEvent { finished: event.finished, ..last.clone() };
            }
            yield JobProgress::from(&event);
            last = ProgressEvent { finished: Vec::new(), ..event };
            if last.is_final() {
                return;
            }
        }
    }
}
