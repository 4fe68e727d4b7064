//! The REST API, compatible with the original Node service: same paths, same field names.
//!
//! `POST /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/results` and `GET /jobs/{id}/download`
//! (CSV streamed from the database in chunks). New fields may be added to answers; none of
//! the original ones change meaning.

use crate::api::AppState;
use crate::entities::result;
use crate::error::{AppError, AppResult, code};
use crate::jobs::{self, Entry, ExportRow, Fields, Page};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use std::cell::Cell;
use std::fmt;

/// The columns of the CSV download, original fields first.
pub const CSV_HEADER: [&str; 12] = [
    "domain",
    "status",
    "favicon_url",
    "error",
    "tries",
    "error_code",
    "final_url",
    "mime",
    "width",
    "height",
    "fetched_at",
    "cached",
];

/// The REST routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/jobs", post(create_job))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/results", get(get_results))
        .route("/jobs/{id}/download", get(download))
}

/// `POST /jobs` `{client_id, domains}` → `{job_id, status}`.
async fn create_job(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge(format!(
                "the request body is larger than {} bytes",
                state.config.max_request_bytes
            ))
        } else {
            AppError::bad_request(code::INVALID_INPUT, rejection.body_text())
        }
    })?;
    let max = state.config.max_domains_per_job;
    let fields = parse_job_body(&body, max)?;
    let client_id = match fields.client_id {
        Scalar::Missing | Scalar::Null => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "client_id is required",
            ));
        }
        Scalar::Text(s) => jobs::parse_client_id(&s, Fields::REST)?,
        Scalar::Int(_) | Scalar::Other(_) => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "client_id must be a string",
            ));
        }
    };
    let entries = match fields.domains {
        Domains::Missing | Domains::Null => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "domains is required: a list of domain names",
            ));
        }
        Domains::List(items) => items,
        Domains::WrongType => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "domains must be an array of strings",
            ));
        }
    };
    let domains = jobs::parse_domains(
        entries.iter().map(|v| match v {
            Scalar::Text(s) => Entry::Text(s),
            Scalar::Missing | Scalar::Null => Entry::NotText("null"),
            Scalar::Int(_) => Entry::NotText("number"),
            Scalar::Other(kind) => Entry::NotText(kind),
        }),
        max,
        Fields::REST,
    )?;
    let max_age = match fields.max_age_seconds {
        Scalar::Missing | Scalar::Null => None,
        Scalar::Int(n) => jobs::parse_max_age(Some(n), Fields::REST)?,
        Scalar::Text(_) | Scalar::Other(_) => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "max_age_seconds must be a whole number of seconds",
            ));
        }
    };
    let cache = state.config.cache_policy(max_age);
    state
        .jobs
        .check_rate(state.config.rate_limits(), &client_id, domains.len())
        .await?;
    let view = state.jobs.create(&client_id, &domains, cache).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({
            "job_id": view.job.id,
            "status": view.job.status.as_str(),
            "total": view.job.total,
        })),
    )
        .into_response())
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
            code::TOO_MANY_DOMAINS,
            format!("a job may hold at most {max} domains; this request has more"),
        )),
        Err(e) if e.is_data() => Err(AppError::bad_request(
            code::INVALID_INPUT,
            "the body must be a JSON object with client_id and domains",
        )),
        Err(e) => Err(AppError::bad_request(
            code::INVALID_JSON,
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

/// `GET /jobs/{id}` → `{job_id, status, progress, total, completed, failed}`.
async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Json<Value>> {
    let view = state.jobs.find(jobs::parse_job_id(&id)?).await?;
    let job = &view.job;
    Ok(Json(json!({
        "job_id": job.id,
        "client_id": view.client_name,
        "status": job.status.as_str(),
        "progress": job.progress(),
        "total": job.total,
        "completed": job.completed,
        "failed": job.failed,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    })))
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
                code::INVALID_PAGE,
                format!("{name} must be a whole number, got {s:?}"),
            )
        }),
    }
}

/// `GET /jobs/{id}/results?page=1&per_page=20` → `{results, page, per_page, total}`.
async fn get_results(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<Value>> {
    let id = jobs::parse_job_id(&id)?;
    let Query(query) =
        query.map_err(|e| AppError::bad_request(code::INVALID_PAGE, e.body_text()))?;
    let page = Page::new(
        page_param("page", query.page.as_deref(), 1)?,
        page_param("per_page", query.per_page.as_deref(), 20)?,
    )?;
    let view = state.jobs.find(id).await?;
    let rows = state.jobs.results_page(id, page).await?;
    let results: Vec<Value> = rows.iter().map(result_json).collect();
    Ok(Json(json!({
        "results": results,
        "page": page.page,
        "per_page": page.per_page,
        "total": view.job.total,
    })))
}

/// One result as the REST API shows it: the original fields, then what the finder learned.
fn result_json(row: &result::Model) -> Value {
    json!({
        "domain": row.domain,
        "favicon_url": row.favicon_url,
        "status": row.status.as_str(),
        "error": row.error,
        "tries": row.tries,
        "error_code": row.error_code,
        "final_url": row.final_url,
        "mime": row.mime,
        "width": row.width,
        "height": row.height,
        "fetched_at": row.fetched_at,
        "cached": row.cached,
        "candidates": row.candidates.clone().unwrap_or_else(|| json!([])),
        "candidates_dropped": row.candidates_dropped,
    })
}

/// `GET /jobs/{id}/download`: every result as CSV, streamed chunk by chunk.
async fn download(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Response> {
    let id = jobs::parse_job_id(&id)?;
    state.jobs.find(id).await?;
    let header_row = csv_chunk(true, &[]).map_err(anyhow::Error::from)?;
    let rows = state
        .jobs
        .export(id, state.config.export_chunk_bytes)
        .map(move |chunk| {
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
fn csv_chunk(with_header: bool, rows: &[ExportRow]) -> Result<Bytes, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 120 + 128));
    if with_header {
        writer.write_record(CSV_HEADER)?;
    }
    for row in rows {
        writer.write_record([
            row.domain.as_str(),
            row.status.as_str(),
            row.favicon_url.as_deref().unwrap_or(""),
            row.error.as_deref().unwrap_or(""),
            &row.tries.to_string(),
            row.error_code.as_deref().unwrap_or(""),
            row.final_url.as_deref().unwrap_or(""),
            row.mime.as_deref().unwrap_or(""),
            &row.width.map(|w| w.to_string()).unwrap_or_default(),
            &row.height.map(|h| h.to_string()).unwrap_or_default(),
            &row.fetched_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            if row.cached { "true" } else { "false" },
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(Bytes::from(bytes))
}
