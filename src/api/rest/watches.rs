//! The watches' REST routes: create, list, read one with its domains and changes, delete.
//! Who may see what is decided by `watches::Watches`; the JSON mirrors GraphQL's `Watch`.

use super::webhooks::json_body;
use crate::api::{AppState, caller_of};
use crate::auth::Caller;
use crate::error::{AppResult, ErrorBody};
use crate::jobs::Entry;
use crate::model::watch::{IconChangePage, Watch, WatchedDomainPage};
use crate::model::{Fields, Page};
use crate::watches::{NewWatch, parse_watch_id};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The watch routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/watches", get(list_watches).post(create_watch))
        .route("/watches/{id}", get(get_watch).delete(delete_watch))
        .route("/watches/{id}/domains", get(list_domains))
        .route("/watches/{id}/changes", get(list_changes))
}

/// What `POST /watches` takes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWatchRequest {
    /// The domains to keep fresh (parsed as a job's are; duplicates merged).
    #[schema(value_type = Vec<String>, example = json!(["example.com"]))]
    domains: Vec<Value>,
    /// Seconds between two checks of each domain: at least `WATCH_MIN_EVERY_SECS` (an hour
    /// by default), at most 30 days.
    every: i64,
    /// A name for it.
    name: Option<String>,
    /// The client it is for; required without an API key (the key names it otherwise).
    client_id: Option<String>,
}

/// `GET /watches`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct WatchList {
    /// The watches, oldest first.
    watches: Vec<Watch>,
}

/// `GET /watches` query.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct ListQuery {
    /// Only this client's watches (with a key: the key's own client, unless it is an admin's).
    client_id: Option<String>,
}

/// A page of a list.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct PageQuery {
    /// The page, from 1.
    page: Option<i64>,
    /// Items per page (1–500, default 50).
    per_page: Option<i64>,
}

impl PageQuery {
    /// The page asked for, checked.
    fn page(&self) -> AppResult<Page> {
        Page::new(self.page.unwrap_or(1), self.per_page.unwrap_or(50))
    }
}

/// The path of every `/watches/{id}…` operation.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(
    dead_code,
    reason = "describes the path to OpenAPI; the handlers read it"
)]
struct WatchPath {
    /// The watch id.
    id: Uuid,
}

/// What every operation on one watch may answer besides its own outcome.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes answers to OpenAPI; AppError makes them"
)]
enum WatchErrors {
    /// The id is not a UUID (`INVALID_ID`), or the page is out of range (`INVALID_PAGE`)
    #[response(status = 400)]
    BadId(ErrorBody),
    /// A key is required and none (or an unknown one) was sent
    #[response(status = 401)]
    NoKey(ErrorBody),
    /// No such watch, or another client's (`NOT_FOUND`)
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// A domain entry as the job parser takes it.
fn entry(value: &Value) -> Entry<'_> {
    match value {
        Value::String(s) => Entry::Text(s),
        Value::Null => Entry::NotText("null"),
        Value::Bool(_) => Entry::NotText("boolean"),
        Value::Number(_) => Entry::NotText("number"),
        Value::Array(_) => Entry::NotText("array"),
        Value::Object(_) => Entry::NotText("object"),
    }
}

/// `POST /watches` → 201 with the watch.
#[utoipa::path(
    post,
    path = "/watches",
    tag = "watches",
    request_body = CreateWatchRequest,
    security((), ("api_key" = [])),
    responses(
        (status = 201, description = "Created; its domains are first checked spread over one period", body = Watch),
        (status = 400, description = "A field is wrong (`INVALID_INPUT`: `every` out of range; `INVALID_DOMAINS`; `INVALID_JSON`), or the client's watches would hold more than `WATCH_MAX_DOMAINS` domains (`TOO_MANY_DOMAINS`)", body = ErrorBody),
        (status = 401, description = "A key is required and none (or an unknown one) was sent", body = ErrorBody),
        (status = 403, description = "The key may not submit, or acts for another client", body = ErrorBody),
        (status = 415, description = "No `Content-Type: application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn create_watch(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, Json<Watch>)> {
    let caller = caller_of(caller)?;
    let request: CreateWatchRequest = json_body(body, None)?;
    let watch = state
        .watches
        .create(
            &caller,
            NewWatch {
                client_id: request.client_id.as_deref(),
                domains: request.domains.iter().map(entry).collect(),
                every: request.every,
                name: request.name.as_deref(),
                fields: Fields::REST,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(watch)))
}

/// `GET /watches` → the caller's watches (an admin's: every client's).
#[utoipa::path(
    get,
    path = "/watches",
    tag = "watches",
    params(ListQuery),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The watches", body = WatchList),
        (status = 401, description = "A key is required and none (or an unknown one) was sent", body = ErrorBody),
        (status = 403, description = "The key may not read, or acts for another client", body = ErrorBody),
    )
)]
pub(crate) async fn list_watches(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(query): Query<ListQuery>,
) -> AppResult<Json<WatchList>> {
    let caller = caller_of(caller)?;
    let watches = state
        .watches
        .list(&caller, query.client_id.as_deref())
        .await?;
    Ok(Json(WatchList { watches }))
}

/// `GET /watches/{id}` → one watch.
#[utoipa::path(
    get,
    path = "/watches/{id}",
    tag = "watches",
    params(WatchPath),
    security((), ("api_key" = [])),
    responses((status = 200, description = "The watch", body = Watch), WatchErrors)
)]
pub(crate) async fn get_watch(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<Json<Watch>> {
    let caller = caller_of(caller)?;
    Ok(Json(
        state.watches.get(&caller, parse_watch_id(&id)?).await?,
    ))
}

/// `GET /watches/{id}/domains` → a page of its domains with their last check and icon.
#[utoipa::path(
    get,
    path = "/watches/{id}/domains",
    tag = "watches",
    params(WatchPath, PageQuery),
    security((), ("api_key" = [])),
    responses((status = 200, description = "A page of its domains, in the order given", body = WatchedDomainPage), WatchErrors)
)]
pub(crate) async fn list_domains(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> AppResult<Json<WatchedDomainPage>> {
    let caller = caller_of(caller)?;
    let (id, page) = (parse_watch_id(&id)?, page.page()?);
    Ok(Json(state.watches.domains(&caller, id, page).await?))
}

/// `GET /watches/{id}/changes` → a page of its domains' icon changes, newest first.
#[utoipa::path(
    get,
    path = "/watches/{id}/changes",
    tag = "watches",
    params(WatchPath, PageQuery),
    security((), ("api_key" = [])),
    responses((status = 200, description = "A page of changes, newest first; `reported` is false for a flapping site's return to a recent state", body = IconChangePage), WatchErrors)
)]
pub(crate) async fn list_changes(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> AppResult<Json<IconChangePage>> {
    let caller = caller_of(caller)?;
    let (id, page) = (parse_watch_id(&id)?, page.page()?);
    Ok(Json(state.watches.changes(&caller, id, page).await?))
}

/// `DELETE /watches/{id}` → 204; nothing more is checked for it.
#[utoipa::path(
    delete,
    path = "/watches/{id}",
    tag = "watches",
    params(WatchPath),
    security((), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), WatchErrors)
)]
pub(crate) async fn delete_watch(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let caller = caller_of(caller)?;
    state.watches.delete(&caller, parse_watch_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
