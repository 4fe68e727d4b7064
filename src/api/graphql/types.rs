//! The GraphQL objects and inputs: views over the store's rows and the finder's candidates.

use super::*;

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
    pub(super) results: Vec<ResultGql>,
    /// This page's number (from 1).
    pub(super) page: i32,
    /// Page size.
    pub(super) per_page: i32,
    /// Results in the whole job.
    pub(super) total: i32,
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
    /// The caller's name for itself.
    pub client_id: String,
    /// Domains or URLs; normalised, and duplicates merged.
    pub domains: Vec<String>,
    /// Reuse a domain's result from an earlier job fetched at most this many seconds ago
    /// instead of fetching it (default `CACHE_MAX_AGE_SECS`; 0 always fetches).
    pub max_age_seconds: Option<i64>,
}
