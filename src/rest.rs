//! The REST API, compatible with the original Node service: same paths, same field names.
//!
//! `POST /jobs`, `GET /jobs/{id}`, `GET /jobs/{id}/results` and `GET /jobs/{id}/download`
//! (CSV streamed from the database in chunks). New fields may be added to answers; none of
//! the original ones change meaning.

use crate::app::AppState;
use crate::entities::result;
use crate::error::{AppError, AppResult, code};
use crate::jobs::{self, Entry, Page};
use crate::store::ExportRow;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

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
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        AppError::bad_request(
            code::INVALID_JSON,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(AppError::bad_request(
            code::INVALID_INPUT,
            "the body must be a JSON object with client_id and domains",
        ));
    };
    let client_id = match fields.get("client_id") {
        None | Some(Value::Null) => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "client_id is required",
            ));
        }
        Some(Value::String(s)) => jobs::parse_client_id(s)?,
        Some(_) => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "client_id must be a string",
            ));
        }
    };
    let entries = match fields.get("domains") {
        None | Some(Value::Null) => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "domains is required: a list of domain names",
            ));
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "domains must be an array of strings",
            ));
        }
    };
    let domains = jobs::parse_domains(
        entries.iter().map(|v| match v {
            Value::String(s) => Entry::Text(s),
            Value::Null => Entry::NotText("null"),
            Value::Bool(_) => Entry::NotText("boolean"),
            Value::Number(_) => Entry::NotText("number"),
            Value::Array(_) => Entry::NotText("array"),
            Value::Object(_) => Entry::NotText("object"),
        }),
        state.config.max_domains_per_job,
    )?;
    let max_age = match fields.get("max_age_seconds") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.is_i64() => jobs::parse_max_age(n.as_i64())?,
        Some(_) => {
            return Err(AppError::bad_request(
                code::INVALID_INPUT,
                "max_age_seconds must be a whole number of seconds",
            ));
        }
    };
    let cache = state.config.cache_policy(max_age);
    jobs::check_rate(
        &state.store,
        state.config.rate_limits(),
        &client_id,
        domains.len(),
    )
    .await?;
    let view = jobs::create_job(&state.store, &state.events, &client_id, &domains, cache).await?;
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

/// `GET /jobs/{id}` → `{job_id, status, progress, total, completed, failed}`.
async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Json<Value>> {
    let view = jobs::find_job(&state.store, jobs::parse_job_id(&id)?).await?;
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
    let view = jobs::find_job(&state.store, id).await?;
    let rows = state
        .store
        .results_page(id, page.page, page.per_page)
        .await?;
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
    jobs::find_job(&state.store, id).await?;
    let header_row = csv_chunk(true, &[]).map_err(anyhow::Error::from)?;
    let rows = state.store.results_stream(id).map(move |chunk| {
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
