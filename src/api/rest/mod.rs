//! The REST API, compatible with the original Node service: same paths, same field names.
//!
//! `POST /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/results` and `GET /jobs/{id}/download`
//! (CSV streamed from the database in chunks); `POST /jobs/{id}/cancel` and
//! `DELETE /jobs/{id}`. New fields may be added to answers; none of
//! the original ones change meaning.

use crate::api::auth::client_ip;
use crate::api::{AppState, caller_of, download_url};
use crate::auth::Caller;
use crate::auth::signed::DOWNLOAD_ROUTE;
use crate::error::{AppError, AppResult, Code, ErrorBody};
use crate::jobs::{self, NewJob};
use crate::jobs::{FailureGroup, ResultPage};
use crate::model::{
    ErrorCategory, Fields, JobStatus, Page, Priority, QueueStanding, ResultCursor, ResultFilter,
    ResultStatus, ResultView, parse_error_code, parse_first, parse_priority, parse_status,
};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use body::{Domains, Scalar, parse_job_body};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use uuid::Uuid;

mod body;
pub(crate) mod watches;
pub(crate) mod webhooks;

/// The REST routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/jobs", post(create_job))
        .route("/jobs/{id}", get(get_job).delete(delete_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/results", get(get_results))
        .route(DOWNLOAD_ROUTE, get(download))
        .merge(webhooks::router())
        .merge(watches::router())
}

/// What `POST /jobs` takes. The handler reads the body itself (to name each wrong field in
/// its own words); this type only describes it to OpenAPI.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct CreateJobRequest {
    /// Who submits; required without an API key (the key names the client otherwise).
    client_id: Option<String>,
    /// The domain names (or URLs) to find icons for, at most `MAX_DOMAINS_PER_JOB`; each bad
    /// entry is named in the 400's `details`. Duplicates count once.
    #[schema(example = json!(["example.com", "https://www.rust-lang.org/"]))]
    domains: Vec<String>,
    /// Reuse a result fetched this many seconds ago or less instead of fetching again
    /// (default `CACHE_MAX_AGE_SECS`; 0 fetches everything).
    max_age_seconds: Option<i64>,
    /// `low`, `normal` (the default) or `high`: the job's weight in the workers' fair share.
    /// `high` needs a key with the `priority` scope.
    priority: Option<Priority>,
}

/// What `POST /jobs` answers (201).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedJob {
    /// The new job's id.
    job_id: Uuid,
    /// `processing`, or already `completed`/`failed` when every domain was answered from
    /// the cache.
    status: JobStatus,
    /// Distinct domains in the job.
    total: i32,
}

/// `POST /jobs` `{client_id, domains}` → `{job_id, status}`; with an API key `client_id` may
/// be left out (the key names the client).
#[utoipa::path(
    post,
    path = "/jobs",
    tag = "jobs",
    request_body = CreateJobRequest,
    security((), ("api_key" = [])),
    responses(
        (status = 201, description = "The job is queued", body = CreatedJob),
        (status = 400, description = "The body is not valid JSON (`INVALID_JSON`), a field is wrong (`INVALID_INPUT`), domains are not valid public hostnames (`INVALID_DOMAINS`, each named in `details`) or too many (`TOO_MANY_DOMAINS`)", body = ErrorBody),
        (status = 401, description = "A key is required and none (or an unknown one) was sent", body = ErrorBody),
        (status = 413, description = "The body is larger than `MAX_REQUEST_BYTES`", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 429, description = "Over the client's hourly allowance; see `Retry-After`", body = ErrorBody),
    )
)]
pub(crate) async fn create_job(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let caller = caller_of(caller)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge(format!(
                "the request body is larger than {} bytes",
                state.config.max_request_bytes
            ))
        } else {
            AppError::bad_request(Code::InvalidInput, rejection.body_text())
        }
    })?;
    let fields = parse_job_body(&body, state.jobs.max_domains_per_job())?;
    let request = NewJob {
        client_id: match &fields.client_id {
            Scalar::Missing | Scalar::Null => Ok(None),
            Scalar::Text(s) => Ok(Some(s.as_str())),
            Scalar::Int(_) | Scalar::Other(_) => Err(invalid("client_id must be a string")),
        },
        domains: match &fields.domains {
            Domains::Missing | Domains::Null => {
                Err(invalid("domains is required: a list of domain names"))
            }
            Domains::List(items) => Ok(items.iter().map(Scalar::entry).collect()),
            Domains::WrongType => Err(invalid("domains must be an array of strings")),
        },
        max_age_seconds: match fields.max_age_seconds {
            Scalar::Missing | Scalar::Null => Ok(None),
            Scalar::Int(n) => Ok(Some(n)),
            Scalar::Text(_) | Scalar::Other(_) => {
                Err(invalid("max_age_seconds must be a whole number of seconds"))
            }
        },
        priority: match &fields.priority {
            Scalar::Missing | Scalar::Null => Ok(None),
            Scalar::Text(s) => parse_priority(s, Fields::REST).map(Some),
            Scalar::Int(_) | Scalar::Other(_) => {
                Err(invalid("priority must be one of low, normal, high"))
            }
        },
        fields: Fields::REST,
        source_ip: Some(client_ip(
            &headers,
            peer.ip(),
            &state.config.trusted_proxy_headers,
        )),
    };
    let view = state.jobs.submit(&caller, request).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(CreatedJob {
            job_id: view.id,
            status: view.status,
            total: view.total,
        }),
    )
        .into_response())
}

/// The job a `/jobs/{id}…` request names, and who asks: read once for every job route, the
/// id first, so a malformed one is `INVALID_ID` whoever sends it.
pub(crate) struct JobRequest {
    /// Who asks.
    caller: Caller,
    /// The job.
    id: Uuid,
}

impl FromRequestParts<AppState> for JobRequest {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AppResult<Self> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::bad_request(Code::InvalidId, e.body_text()))?;
        let id = jobs::parse_job_id(&id)?;
        let caller = caller_of(parts.extensions.get::<Caller>().cloned().map(Extension))?;
        Ok(Self { caller, id })
    }
}

/// The path of every `/jobs/{id}…` operation, as OpenAPI shows it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(
    dead_code,
    reason = "describes the path to OpenAPI; JobRequest reads it"
)]
struct JobPath {
    /// The job id (`INVALID_ID` when it is not a UUID)
    id: Uuid,
}

/// What every operation on one job may answer besides its own outcome.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes answers to OpenAPI; AppError makes them"
)]
enum JobErrors {
    /// The id is not a UUID (`INVALID_ID`)
    #[response(status = 400)]
    BadId(ErrorBody),
    /// A key is required and none (or an unknown one) was sent
    #[response(status = 401)]
    NoKey(ErrorBody),
    /// No such job, or not the caller's
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// A client error in a request's shape.
fn invalid(message: &str) -> AppError {
    AppError::bad_request(Code::InvalidInput, message)
}

/// `GET /jobs/{id}` → `{job_id, status, priority, progress, total, completed, failed, …,
/// download_url, failures_by_reason, queue}`; `download_url` is a signed link to the CSV that
/// works without a key until it expires; `queue` is the job's standing among the work the
/// workers share (null once final).
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    params(JobPath),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The job and its counts", body = JobAnswer),
        JobErrors,
    )
)]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    JobRequest { caller, id }: JobRequest,
) -> AppResult<Json<JobAnswer>> {
    let view = state.jobs.job(&caller, id).await?;
    Ok(Json(JobAnswer::of(&state, &caller, view).await?))
}

/// `POST /jobs/{id}/cancel` → the job as `GET /jobs/{id}` shows it, now `cancelled` (a
/// finished job unchanged); domains not yet fetched fail with `cancelled`. A key without the
/// `read` scope gets no `download_url` or `failures_by_reason`.
#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    tag = "jobs",
    params(JobPath),
    request_body(
        content = Option<Object>,
        content_type = "application/json",
        description = "Empty or `{}`. The Content-Type must say application/json all the same, so that a cross-site HTML form cannot cancel a job",
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The job, now `cancelled` (a finished job unchanged)", body = JobAnswer),
        (status = 415, description = "No `Content-Type: application/json`", body = ErrorBody),
        JobErrors,
    )
)]
pub(crate) async fn cancel_job(
    State(state): State<AppState>,
    JobRequest { caller, id }: JobRequest,
) -> AppResult<Json<JobAnswer>> {
    let view = state.jobs.cancel(&caller, id).await?;
    Ok(Json(JobAnswer::of(&state, &caller, view).await?))
}

/// `DELETE /jobs/{id}` → 204: the job and its results are gone (a running job is cancelled
/// first); 404 afterwards everywhere.
#[utoipa::path(
    delete,
    path = "/jobs/{id}",
    tag = "jobs",
    params(JobPath),
    security((), ("api_key" = [])),
    responses(
        (status = 204, description = "The job and its results are deleted"),
        JobErrors,
    )
)]
pub(crate) async fn delete_job(
    State(state): State<AppState>,
    JobRequest { caller, id }: JobRequest,
) -> AppResult<axum::http::StatusCode> {
    state.jobs.delete(&caller, id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A job as `GET /jobs/{id}` (and the cancel) answers it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Job)]
pub(crate) struct JobAnswer {
    /// The job's counts and times, as every view shows them.
    #[serde(flatten)]
    job: crate::model::Job,
    /// A signed link to the CSV that works without a key until it expires. Left out for a
    /// key without the `read` scope (a cancel's answer), since the link reads the results.
    #[serde(skip_serializing_if = "Option::is_none")]
    download_url: Option<String>,
    /// The finished failures grouped by `error_code`, the largest group first. Left out for
    /// a key without the `read` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    failures_by_reason: Option<Vec<FailureGroup>>,
    /// Where the job stands among the work the workers share: its domains left and being
    /// fetched, and how many other jobs and clients wait beside it (counts only). Null once
    /// the job is final.
    queue: Option<QueueStanding>,
}

impl JobAnswer {
    /// The answer for a job `caller` was shown.
    async fn of(state: &AppState, caller: &Caller, job: crate::model::Job) -> AppResult<Self> {
        let failures_by_reason = state.jobs.failures_by_reason(caller, &job).await?;
        let queue = state.jobs.queue_standing(&job).await?;
        Ok(Self {
            queue,
            download_url: jobs::Jobs::may_read(caller).then(|| download_url(state, job.id)),
            job,
            failures_by_reason,
        })
    }
}

/// Query string of `GET /jobs/{id}/results`: strings, so a bad value gets our own message
/// naming it. An empty parameter (`status=`, as an HTML form sends) counts as absent.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultsQuery {
    /// The page, from 1 (default 1); not with `first`/`after`. `page × per_page` may be at
    /// most 2147483647, the most items a list can hold (`INVALID_PAGE` beyond).
    #[param(value_type = Option<u64>, minimum = 1)]
    page: Option<String>,
    /// Results per page, 1 to 500 (default 20); not with `first`/`after`.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 500)]
    per_page: Option<String>,
    /// The cursor form: this many results, 1 to 500 (default 50).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 500)]
    first: Option<String>,
    /// The cursor form: the results after this `page_info.end_cursor`.
    after: Option<String>,
    /// Only results in this status.
    #[param(value_type = Option<ResultStatus>)]
    status: Option<String>,
    /// Only failures with this code (in any case); another value is 400 `INVALID_INPUT`,
    /// naming it and the valid codes.
    #[param(value_type = Option<ErrorCategory>)]
    error_code: Option<String>,
    /// Only domains containing this text (case-insensitive).
    domain: Option<String>,
}

/// A query parameter's text, unless it is empty.
fn given(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().filter(|s| !s.trim().is_empty())
}

fn page_param(name: &str, raw: Option<&str>, default: i64) -> AppResult<i64> {
    match raw {
        None => Ok(default),
        Some(s) => s.trim().parse().map_err(|_| {
            AppError::bad_request(
                Code::InvalidPage,
                format!("{name} must be a whole number, got {s:?}"),
            )
        }),
    }
}

/// `GET /jobs/{id}/results` answers one of two shapes, by the paging form asked for.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum ResultsAnswer {
    /// `page` / `per_page` (or neither).
    Page(ResultPage),
    /// `first` / `after`.
    Slice(ResultSliceAnswer),
}

/// The cursor form's answer: a slice of results and where the next one starts.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ResultSliceAnswer {
    /// The results, in submission order.
    results: Vec<ResultView>,
    /// Whether more follow, and the cursor to pass as `after` for them.
    page_info: PageInfo,
}

/// Where a slice of results ends.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PageInfo {
    /// Whether more results match after this slice.
    has_next_page: bool,
    /// The last result's cursor (null for an empty slice): pass it as `after`.
    end_cursor: Option<String>,
}

/// `GET /jobs/{id}/results?page=1&per_page=20` → `{results, page, per_page, total}`, or with
/// `first` / `after` (the cursor form) → `{results, page_info: {has_next_page, end_cursor}}`;
/// either narrowed by `status`, `error_code` and `domain`. Each result is the one view every
/// API shows ([`crate::model::ResultView`]).
#[utoipa::path(
    get,
    path = "/jobs/{id}/results",
    tag = "jobs",
    summary = "A job's results, a page or a slice at a time",
    description = "`?page=1&per_page=20` (the original API's form) answers `{results, page, per_page, total}`; `?first=50&after=<cursor>` answers `{results, page_info: {has_next_page, end_cursor}}`. Either form can be narrowed by `status`, `error_code` and `domain`; `total` then counts the matches.",
    params(JobPath, ResultsQuery),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "A page (`page`/`per_page`) or, with `first`/`after`, a slice and where the next one starts", body = inline(ResultsAnswer)),
        (status = 400, description = "A bad id (`INVALID_ID`), paging value (`INVALID_PAGE`) or filter (`INVALID_INPUT`), or both paging forms at once", body = ErrorBody),
        (status = 401, description = "A key is required and none (or an unknown one) was sent", body = ErrorBody),
        (status = 404, description = "No such job, or not the caller's", body = ErrorBody),
    )
)]
pub(crate) async fn get_results(
    State(state): State<AppState>,
    JobRequest { caller, id }: JobRequest,
    query: Result<Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<ResultsAnswer>> {
    let Query(query) =
        query.map_err(|e| AppError::bad_request(Code::InvalidPage, e.body_text()))?;
    let fields = Fields::REST;
    let status = given(&query.status)
        .map(|raw| parse_status(raw, fields))
        .transpose()?;
    let error_code = given(&query.error_code)
        .map(|raw| parse_error_code(raw, fields))
        .transpose()?;
    let filter = ResultFilter::new(status, error_code, given(&query.domain), fields)?;
    let cursor_form = given(&query.first).is_some() || given(&query.after).is_some();
    if !cursor_form {
        let page = Page::new(
            page_param("page", given(&query.page), 1)?,
            page_param("per_page", given(&query.per_page), 20)?,
        )?;
        let page = state.jobs.results(&caller, id, page, &filter).await?;
        return Ok(Json(ResultsAnswer::Page(page)));
    }
    if given(&query.page).is_some() || given(&query.per_page).is_some() {
        return Err(invalid(
            "page/per_page and first/after are two ways to page: send one of them",
        ));
    }
    let first = parse_first(page_param("first", given(&query.first), 50)?, fields)?;
    let after = given(&query.after)
        .map(|raw| ResultCursor::decode(raw, fields))
        .transpose()?;
    let slice = state
        .jobs
        .results_after(&caller, id, after, first, &filter)
        .await?;
    let end_cursor = slice.end_cursor().map(ResultCursor::encode);
    Ok(Json(ResultsAnswer::Slice(ResultSliceAnswer {
        page_info: PageInfo {
            has_next_page: slice.has_next_page,
            end_cursor,
        },
        results: slice.results.into_iter().map(|(_, view)| view).collect(),
    })))
}

/// `GET /jobs/{id}/download`: every result as CSV, streamed chunk by chunk; the columns are
/// [`crate::model::ResultColumns::NAMES`]. With a key, or a signed link (`?expires=…&sig=…`) instead.
#[utoipa::path(
    get,
    path = DOWNLOAD_ROUTE,
    tag = "jobs",
    params(
        JobPath,
        ("expires" = Option<i64>, Query, description = "A signed link's expiry (Unix seconds), as `download_url` gives it"),
        ("sig" = Option<String>, Query, description = "A signed link's signature, as `download_url` gives it"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Every result, one CSV row each, after a header row of the column names", content_type = "text/csv", body = String),
        (status = 403, description = "The signed link is wrong (`FORBIDDEN`) or has expired (`LINK_EXPIRED`)", body = ErrorBody),
        JobErrors,
    )
)]
pub(crate) async fn download(
    State(state): State<AppState>,
    JobRequest { caller, id }: JobRequest,
) -> AppResult<Response> {
    let chunks = state.jobs.export(&caller, id).await?;
    let body = chunks.map(move |chunk| {
        chunk.map_err(|e| {
            tracing::error!(job_id = %id, error = %e, "CSV stream failed mid-way");
            std::io::Error::other(e)
        })
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"favicons-{id}.csv\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
