//! The GraphQL API: `createJob`, `job`, `jobs` and paginated `results`.
//!
//! Types here are views over the store's rows; every rule (validation, paging, not-found)
//! lives in `jobs` and is shared with the REST API.

use crate::entities::job::JobStatus;
use crate::entities::result::{self as result_entity, ResultStatus};
use crate::error::AppError;
use crate::events::Events;
use crate::finder::Candidate as FoundCandidate;
use crate::jobs::{self, Entry, Page};
use crate::store::{JobView, Store};
use async_graphql::{
    Context, EmptySubscription, ID, InputObject, Object, Result, Schema, SimpleObject,
};
use chrono::{DateTime, Utc};

/// The assembled schema.
pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// What resolvers need, put into the schema's data.
#[derive(Clone)]
pub struct ApiContext {
    /// The database.
    pub store: Store,
    /// Wake-ups for workers.
    pub events: Events,
    /// `MAX_DOMAINS_PER_JOB`.
    pub max_domains_per_job: usize,
}

/// Builds the schema with its context.
pub fn build_schema(context: Option<ApiContext>) -> AppSchema {
    let builder = Schema::build(QueryRoot, MutationRoot, EmptySubscription);
    match context {
        Some(context) => builder.data(context).finish(),
        None => builder.finish(),
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
    /// When the stored outcome was fetched.
    fetched_at: Option<DateTime<Utc>>,
    /// Every candidate found, in rank order.
    candidates: Vec<CandidateGql>,
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
            candidates: candidates.into_iter().map(Into::into).collect(),
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
        let client_id = jobs::parse_client_id(&input.client_id).map_err(AppError::into_graphql)?;
        let domains = jobs::parse_domains(
            input.domains.iter().map(|d| Entry::Text(d)),
            api.max_domains_per_job,
        )
        .map_err(AppError::into_graphql)?;
        let view = jobs::create_job(&api.store, &api.events, &client_id, &domains)
            .await
            .map_err(AppError::into_graphql)?;
        Ok(view.into())
    }
}
