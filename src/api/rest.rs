//! The REST API, compatible with the original Node service: same paths, same field names.
//!
//! `POST /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/results` and `GET /jobs/{id}/download`
//! (CSV streamed from the database in chunks); `POST /jobs/{id}/cancel` and
//! `DELETE /jobs/{id}`. New fields may be added to answers; none of
//! the original ones change meaning.

use crate::api::auth::client_ip;
use crate::api::{AppState, caller_of, download_url};
use crate::auth::Caller;
use crate::error::{AppError, AppResult, Code};
use crate::jobs::{self, Entry, Fields, NewJob};
use crate::model::{Page, ResultColumns};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;

/// The REST routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/jobs", post(create_job))
        .route("/jobs/{id}", get(get_job).delete(delete_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/results", get(get_results))
        .route("/jobs/{id}/download", get(download))
}

/// `POST /jobs` `{client_id, domains}` → `{job_id, status}`; with an API key `client_id` may
/// be left out (the key names the client).
async fn create_job(
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
        Json(json!({
            "job_id": view.job.id,
            "status": view.job.status,
            "total": view.job.total,
        })),
    )
        .into_response())
}

/// A client error in a `POST /jobs` body's shape.
fn invalid(message: &str) -> AppError {
    AppError::bad_request(Code::InvalidInput, message)
}

/// Reads a `POST /jobs` body into typed fields in one pass, without building a JSON tree.
///
/// `domains` stops at `max` + 1 entries with TOO_MANY_DOMAINS, so an oversized job costs no
/// more than a legal one. Syntax errors are INVALID_JSON; a body that is not an object is
/// INVALID_INPUT; wrong field types are reported by the caller, field by field.
fn parse_job_body(body: &[u8], max: usize) -> AppResult<JobBody> {
    let too_many = Cell::new(false);
    let mut reader = serde_json::Deserializer::from_slice(body);
    let parsed = BodySeed {
        max,
        too_many: &too_many,
    }
    .deserialize(&mut reader)
    .and_then(|fields| reader.end().map(|()| fields));
    match parsed {
        Ok(fields) => Ok(fields),
        Err(_) if too_many.get() => Err(AppError::bad_request(
            Code::TooManyDomains,
            format!("a job may hold at most {max} domains; this request has more"),
        )),
        Err(e) if e.is_data() => Err(AppError::bad_request(
            Code::InvalidInput,
            "the body must be a JSON object with client_id and domains",
        )),
        Err(e) => Err(AppError::bad_request(
            Code::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// The fields of a `POST /jobs` body, each as the JSON type it arrived in.
#[derive(Default)]
struct JobBody {
    client_id: Scalar,
    domains: Domains,
    max_age_seconds: Scalar,
}

/// One JSON value, kept only when it is a string or a whole number; anything else is read
/// past and named by its type.
#[derive(Default)]
enum Scalar {
    /// The field was absent.
    #[default]
    Missing,
    /// `null`.
    Null,
    /// A string.
    Text(String),
    /// A whole number that fits an `i64`.
    Int(i64),
    /// Another JSON type, named for messages.
    Other(&'static str),
}

/// The `domains` field: a list of entries (at most the limit), or why it is not one.
#[derive(Default)]
enum Domains {
    /// The field was absent.
    #[default]
    Missing,
    /// `null`.
    Null,
    /// The entries, in order.
    List(Vec<Scalar>),
    /// Not an array.
    WrongType,
}

/// Reads the body object; carries the domain limit down to the `domains` field.
struct BodySeed<'a> {
    max: usize,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = JobBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<JobBody, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = JobBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with client_id and domains")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JobBody, A::Error> {
        let mut body = JobBody::default();
        // A repeated key replaces the earlier value, as a JSON object read into a map would.
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "client_id" => body.client_id = map.next_value()?,
                "max_age_seconds" => body.max_age_seconds = map.next_value()?,
                "domains" => {
                    body.domains = map.next_value_seed(DomainsSeed {
                        max: self.max,
                        too_many: self.too_many,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(body)
    }
}

impl Scalar {
    /// A `domains` entry: a string to parse, or the JSON type it is instead.
    fn entry(&self) -> Entry<'_> {
        match self {
            Scalar::Text(s) => Entry::Text(s),
            Scalar::Missing | Scalar::Null => Entry::NotText("null"),
            Scalar::Int(_) => Entry::NotText("number"),
            Scalar::Other(kind) => Entry::NotText(kind),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other("boolean"))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(n).map_or(Scalar::Other("number"), Scalar::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other("number"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("object"))
    }
}

/// Reads `domains`, failing (and flagging `too_many`) at the first entry over `max`.
struct DomainsSeed<'a> {
    max: usize,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for DomainsSeed<'_> {
    type Value = Domains;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Domains, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DomainsSeed<'_> {
    type Value = Domains;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of domain names")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Domains, A::Error> {
        // Never trust a size hint for the allocation: grow as entries really arrive.
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element::<Scalar>()? {
            if entries.len() == self.max {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many domains"));
            }
            entries.push(entry);
        }
        Ok(Domains::List(entries))
    }
    fn visit_unit<E>(self) -> Result<Domains, E> {
        Ok(Domains::Null)
    }
    fn visit_none<E>(self) -> Result<Domains, E> {
        Ok(Domains::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_str<E>(self, _: &str) -> Result<Domains, E> {
        Ok(Domains::WrongType)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Domains, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Domains::WrongType)
    }
}

/// `GET /jobs/{id}` → `{job_id, status, progress, total, completed, failed, …, download_url}`;
/// `download_url` is a signed link to the CSV that works without a key until it expires.
async fn get_job(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let caller = caller_of(caller)?;
    let view = state.jobs.find(&caller, jobs::parse_job_id(&id)?).await?;
    Ok(Json(job_json(&state, &view)))
}

/// `POST /jobs/{id}/cancel` → the job as `GET /jobs/{id}` shows it, now `cancelled` (a
/// finished job unchanged); domains not yet fetched fail with `cancelled`.
async fn cancel_job(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let caller = caller_of(caller)?;
    let view = state.jobs.cancel(&caller, jobs::parse_job_id(&id)?).await?;
    Ok(Json(job_json(&state, &view)))
}

/// `DELETE /jobs/{id}` → 204: the job and its results are gone (a running job is cancelled
/// first); 404 afterwards everywhere.
async fn delete_job(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<axum::http::StatusCode> {
    let caller = caller_of(caller)?;
    state.jobs.delete(&caller, jobs::parse_job_id(&id)?).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A job as `GET /jobs/{id}` (and the cancel) answers it.
fn job_json(state: &AppState, view: &jobs::JobView) -> Value {
    let job = &view.job;
    json!({
        "job_id": job.id,
        "client_id": view.client_name,
        "status": job.status,
        "progress": job.progress(),
        "total": job.total,
        "completed": job.completed,
        "failed": job.failed,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "download_url": download_url(state, job.id),
    })
}

/// Query string of `GET /jobs/{id}/results`; strings so a bad number gets our own message.
#[derive(Deserialize)]
struct PageQuery {
    page: Option<String>,
    per_page: Option<String>,
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

/// `GET /jobs/{id}/results?page=1&per_page=20` → `{results, page, per_page, total}`, each
/// result the one view every API shows ([`crate::model::ResultView`]).
async fn get_results(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Response> {
    let id = jobs::parse_job_id(&id)?;
    let Query(query) =
        query.map_err(|e| AppError::bad_request(Code::InvalidPage, e.body_text()))?;
    let page = Page::new(
        page_param("page", query.page.as_deref(), 1)?,
        page_param("per_page", query.per_page.as_deref(), 20)?,
    )?;
    let caller = caller_of(caller)?;
    Ok(Json(state.jobs.results(&caller, id, page).await?).into_response())
}

/// `GET /jobs/{id}/download`: every result as CSV, streamed chunk by chunk; the columns are
/// [`ResultColumns::NAMES`]. With a key, or a signed link (`?expires=…&sig=…`) instead.
async fn download(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let id = jobs::parse_job_id(&id)?;
    let caller = caller_of(caller)?;
    let chunks = state.jobs.export(&caller, id).await?;
    let header_row = csv_chunk(true, &[]).map_err(anyhow::Error::from)?;
    let rows = chunks.map(move |chunk| {
        let chunk = chunk.map_err(|e| {
            tracing::error!(job_id = %id, error = %e, "CSV stream failed mid-way");
            std::io::Error::other(e)
        })?;
        csv_chunk(false, &chunk).map_err(std::io::Error::other)
    });
    let body =
        futures::stream::once(async move { Ok::<_, std::io::Error>(header_row) }).chain(rows);
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

/// Serialises a chunk of rows, after the header row when `with_header`.
fn csv_chunk(with_header: bool, rows: &[ResultColumns]) -> Result<Bytes, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 120 + 128));
    if with_header {
        writer.write_record(ResultColumns::NAMES)?;
    }
    for row in rows {
        writer.write_record(row.csv_record().iter().map(|cell| cell.as_bytes()))?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(Bytes::from(bytes))
}
