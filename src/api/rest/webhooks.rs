//! The webhooks' REST routes: register, list, delete, rotate a secret, enable, send a test
//! event, list deliveries, redeliver. Who may see what is decided by `webhooks::Webhooks`.

use crate::api::{AppState, caller_of};
use crate::auth::Caller;
use crate::error::{AppError, AppResult, Code, ErrorBody};
use crate::model::Page;
use crate::model::webhook::{Webhook, WebhookDelivery, WebhookEvent};
use crate::webhooks::{NewWebhook, WithSecret};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// The webhook routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/webhooks", post(create_webhook).get(list_webhooks))
        .route("/webhooks/{id}", get(get_webhook).delete(delete_webhook))
        .route("/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/webhooks/{id}/enable", post(enable_webhook))
        .route("/webhooks/{id}/test", post(send_test))
        .route("/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/webhooks/deliveries/{id}/redeliver", post(redeliver))
}

/// What `POST /webhooks` takes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhookRequest {
    /// Where to send events: `http(s)://…`, on a public address (unless the server sets
    /// `FETCH_ALLOW_PRIVATE_NETWORKS`).
    url: Option<String>,
    /// Events to send: `job.completed`, `job.failed`, `job.cancelled`, `job.progress`,
    /// `icon.changed`. Left out: all but `job.progress`.
    #[schema(example = json!(["job.completed", "job.failed"]))]
    events: Option<Vec<String>>,
    /// A note for its owner.
    description: Option<String>,
    /// The client it is for; required without an API key (the key names it otherwise).
    client_id: Option<String>,
}

/// What `POST /webhooks/{id}/rotate-secret` takes (an empty body is fine).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateRequest {
    /// How long the old secret keeps signing beside the new one, in seconds (default
    /// `WEBHOOK_ROTATION_OVERLAP_SECS`, at most 30 days).
    overlap_secs: Option<u64>,
}

/// An endpoint with its secret, answered once when it is made or rotated.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    webhook: Webhook,
    /// The secret that signs its events (`whsec_…`): shown only now.
    secret: String,
}

impl From<WithSecret> for WebhookWithSecret {
    fn from(w: WithSecret) -> Self {
        Self {
            webhook: w.webhook,
            secret: w.secret,
        }
    }
}

/// `GET /webhooks`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookList {
    /// The endpoints, oldest first.
    webhooks: Vec<Webhook>,
}

/// `GET /webhooks/{id}/deliveries`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryList {
    /// The deliveries, newest first, each with its attempts.
    deliveries: Vec<WebhookDelivery>,
}

/// `GET /webhooks` query.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct ListQuery {
    /// Only this client's endpoints (with a key: the key's own client, unless it is an admin's).
    client_id: Option<String>,
}

/// A page of a list.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct PageQuery {
    /// The page, from 1.
    page: Option<i64>,
    /// Deliveries per page (1–500, default 50).
    per_page: Option<i64>,
}

/// The path of every `/webhooks/{id}…` operation.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "describes the path to OpenAPI; `id_of` reads it")]
struct WebhookPath {
    /// The webhook (or, under `/webhooks/deliveries/`, the delivery) id.
    id: Uuid,
}

/// What every operation on one endpoint (or delivery) may answer besides its own outcome.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes answers to OpenAPI; AppError makes them"
)]
enum WebhookErrors {
    /// The id is not a UUID (`INVALID_ID`)
    #[response(status = 400)]
    BadId(ErrorBody),
    /// A key is required and none (or an unknown one) was sent
    #[response(status = 401)]
    NoKey(ErrorBody),
    /// No such endpoint or delivery, or another client's (`NOT_FOUND`)
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// The webhook id in the path of a `/webhooks/{id}…` operation.
fn id_of(raw: &str) -> AppResult<Uuid> {
    crate::webhooks::parse_id(raw, "webhook")
}

/// Reads a JSON body into `T`; an empty body is `T::default()` when `empty` is given.
pub(super) fn json_body<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
    empty: Option<T>,
) -> AppResult<T> {
    let body = body.map_err(|r| AppError::bad_request(Code::InvalidInput, r.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(empty) = empty
    {
        return Ok(empty);
    }
    serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_data() {
            Code::InvalidInput
        } else {
            Code::InvalidJson
        };
        AppError::bad_request(code, format!("the request body is wrong: {e}"))
    })
}

/// The events named in a request, each checked.
fn parse_events(names: Vec<String>) -> AppResult<Vec<WebhookEvent>> {
    names
        .iter()
        .map(|name| {
            WebhookEvent::parse(name.trim())
                .filter(|e| WebhookEvent::SUBSCRIBABLE.contains(e))
                .ok_or_else(|| {
                    AppError::bad_request(
                        Code::InvalidInput,
                        format!(
                            "events: {name:?} is not an event; use job.completed, job.failed, \
                             job.cancelled, job.progress or icon.changed"
                        ),
                    )
                })
        })
        .collect()
}

fn who(caller: Option<Extension<Caller>>) -> AppResult<Caller> {
    caller_of(caller)
}

/// `POST /webhooks` → 201 with the endpoint and its secret, shown only here.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    request_body = CreateWebhookRequest,
    security((), ("api_key" = [])),
    responses(
        (status = 201, description = "Registered; `secret` is shown only now", body = WebhookWithSecret),
        (status = 400, description = "A field is wrong (`INVALID_INPUT`, `INVALID_JSON`), the URL is refused (`WEBHOOK_URL_REFUSED`: not http(s), credentials, does not resolve, or a non-public address), or the server has no `WEBHOOK_SECRET_KEY` (`WEBHOOKS_NOT_CONFIGURED`)", body = ErrorBody),
        (status = 401, description = "A key is required and none (or an unknown one) was sent", body = ErrorBody),
        (status = 403, description = "The key may not submit, or acts for another client", body = ErrorBody),
        (status = 415, description = "No `Content-Type: application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn create_webhook(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, Json<WebhookWithSecret>)> {
    let caller = who(caller)?;
    let request: CreateWebhookRequest = json_body(body, None)?;
    let url = request.url.ok_or_else(|| {
        AppError::bad_request(Code::InvalidInput, "url is required: where to send events")
    })?;
    let events = request.events.map(parse_events).transpose()?;
    let created = state
        .webhooks
        .create(
            &caller,
            NewWebhook {
                client_id: request.client_id.as_deref(),
                url: &url,
                events,
                description: request.description.as_deref(),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// `GET /webhooks` → the caller's endpoints (an admin's: every client's).
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    params(ListQuery),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The endpoints", body = WebhookList),
        (status = 401, description = "A key is required and none (or an unknown one) was sent", body = ErrorBody),
        (status = 403, description = "The key may not read, or acts for another client", body = ErrorBody),
    )
)]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(query): Query<ListQuery>,
) -> AppResult<Json<WebhookList>> {
    let caller = who(caller)?;
    let webhooks = state
        .webhooks
        .list(&caller, query.client_id.as_deref())
        .await?;
    Ok(Json(WebhookList { webhooks }))
}

/// `GET /webhooks/{id}` → one endpoint.
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(WebhookPath),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint", body = Webhook),
        WebhookErrors,
    )
)]
pub(crate) async fn get_webhook(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<Json<Webhook>> {
    let caller = who(caller)?;
    Ok(Json(state.webhooks.get(&caller, id_of(&id)?).await?))
}

/// `DELETE /webhooks/{id}` → 204; its waiting deliveries fail.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(WebhookPath),
    security((), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        WebhookErrors,
    )
)]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let caller = who(caller)?;
    state.webhooks.delete(&caller, id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /webhooks/{id}/rotate-secret` → the endpoint and its new secret; the old one signs
/// beside it until `previous_secret_expires_at`.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    params(WebhookPath),
    request_body(content = Option<RotateRequest>, content_type = "application/json"),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The new secret, shown only now", body = WebhookWithSecret),
        (status = 400, description = "The id is not a UUID (`INVALID_ID`), a field is wrong (`INVALID_INPUT`, `INVALID_JSON`; `overlap_secs` is at most 30 days), or the server has no `WEBHOOK_SECRET_KEY` (`WEBHOOKS_NOT_CONFIGURED`)", body = ErrorBody),
        (status = 401, description = "A key is required and none (or an unknown one) was sent", body = ErrorBody),
        (status = 404, description = "No such endpoint (or another client's)", body = ErrorBody),
        (status = 415, description = "No `Content-Type: application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<WebhookWithSecret>> {
    let caller = who(caller)?;
    let id = id_of(&id)?;
    let request: RotateRequest = json_body(body, Some(RotateRequest::default()))?;
    let rotated = state
        .webhooks
        .rotate(&caller, id, request.overlap_secs.map(Duration::from_secs))
        .await?;
    Ok(Json(rotated.into()))
}

/// `POST /webhooks/{id}/enable` → the endpoint, enabled again after it was disabled.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/enable",
    tag = "webhooks",
    params(WebhookPath),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Enabled; its waiting deliveries are due now", body = Webhook),
        (status = 415, description = "No `Content-Type: application/json`", body = ErrorBody),
        WebhookErrors,
    )
)]
pub(crate) async fn enable_webhook(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<Json<Webhook>> {
    let caller = who(caller)?;
    Ok(Json(state.webhooks.enable(&caller, id_of(&id)?).await?))
}

/// `POST /webhooks/{id}/test` → 202 and the queued `webhook.test` delivery.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/test",
    tag = "webhooks",
    params(WebhookPath),
    security((), ("api_key" = [])),
    responses(
        (status = 202, description = "A `webhook.test` event is queued", body = WebhookDelivery),
        (status = 415, description = "No `Content-Type: application/json`", body = ErrorBody),
        WebhookErrors,
    )
)]
pub(crate) async fn send_test(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<WebhookDelivery>)> {
    let caller = who(caller)?;
    let queued = state.webhooks.send_test(&caller, id_of(&id)?).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

/// `GET /webhooks/{id}/deliveries` → its deliveries, newest first, each with its attempts.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(WebhookPath, PageQuery),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 400, description = "The id is not a UUID (`INVALID_ID`), or a bad page (`INVALID_PAGE`)", body = ErrorBody),
        (status = 401, description = "A key is required and none (or an unknown one) was sent", body = ErrorBody),
        (status = 404, description = "No such endpoint (or another client's)", body = ErrorBody),
    )
)]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> AppResult<Json<DeliveryList>> {
    let caller = who(caller)?;
    let page = Page::new(query.page.unwrap_or(1), query.per_page.unwrap_or(50))?;
    let deliveries = state
        .webhooks
        .deliveries(&caller, id_of(&id)?, page)
        .await?;
    Ok(Json(DeliveryList { deliveries }))
}

/// `POST /webhooks/deliveries/{id}/redeliver` → 202 and the new delivery of the same event
/// (the same `webhook-id`).
#[utoipa::path(
    post,
    path = "/webhooks/deliveries/{id}/redeliver",
    tag = "webhooks",
    params(WebhookPath),
    security((), ("api_key" = [])),
    responses(
        (status = 202, description = "The event is queued again", body = WebhookDelivery),
        (status = 415, description = "No `Content-Type: application/json`", body = ErrorBody),
        WebhookErrors,
    )
)]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<WebhookDelivery>)> {
    let caller = who(caller)?;
    let id = crate::webhooks::parse_id(&id, "delivery")?;
    let queued = state.webhooks.redeliver(&caller, id).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}
