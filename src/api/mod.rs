//! The adapters: the HTTP front doors over the core ([`crate::jobs`]). The router and the
//! one [`AppState`] every handler reaches live here; [`rest`], [`graphql`] and [`ws`] are
//! the APIs, [`ops`] the health and metrics endpoints, [`http`] the server with its timeouts.

pub mod auth;
pub mod dashboard;
pub mod graphiql;
pub mod graphql;
pub mod http;
pub mod icons;
pub mod openapi;
pub mod ops;
pub mod raw_frames;
pub mod rest;
pub mod trace;
pub mod ws;

use crate::auth::{Accounts, Caller};
use crate::config::Config;
use crate::error::AppError;
use crate::events::Events;
use crate::icons::Icons;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::model::Liveness;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use graphql::over_http::Wire;
use ops::{healthz, metrics, process_metrics, readyz};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use ws::{WsConnections, graphql_ws};

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The core: every use case the handlers call.
    pub jobs: Jobs,
    /// The icons core behind `/icons/{domain}`.
    pub icons: Icons,
    /// Progress events and wake-ups.
    pub events: Events,
    /// The process configuration.
    pub config: Arc<Config>,
    /// Prometheus metrics of this process.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the process stops: open WebSockets close cleanly.
    pub shutdown: CancellationToken,
    /// Open WebSocket connections, against `WS_MAX_CONNECTIONS` and
    /// `WS_MAX_CONNECTIONS_PER_IP`.
    pub ws_connections: Arc<WsConnections>,
    /// This process's recorder, when it runs workers: `/healthz` fails while it is stuck.
    pub recorder: Option<Arc<dyn Liveness>>,
    /// Whether the politeness limits are the fleet's, a fallback share, or this process's
    /// (shown by `/readyz`).
    pub politeness: crate::politeness::Politeness,
    /// API keys and signed links: who a request acts for.
    pub accounts: Accounts,
    /// Clients' webhook endpoints and their deliveries.
    pub webhooks: crate::webhooks::Webhooks,
    /// Clients' watches, their domains and changes.
    pub watches: crate::watches::Watches,
}

/// Counts and times one request under its route template (`/jobs/{id}`, never the path
/// with the id, so the series stay as many as the routes).
async fn measure_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(crate::metrics::UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_http(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// All routes: GraphQL, REST, health, the dashboard.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_request_bytes;
    // The schema carries the state in its data for the resolvers, so the state cannot carry
    // the schema (a reference cycle would keep the database pool alive after shutdown); the
    // GraphQL handlers take it as an extension instead.
    let schema = graphql::build_schema(Some(state.clone()));
    let mut router = Router::new()
        .route(
            "/graphql",
            get(graphql::over_http::get).post(graphql::over_http::post),
        )
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::serve));
    // With an ops listener, metrics are served there only.
    if state.config.ops_addr.is_none() {
        router = router.route(
            "/metrics",
            get(metrics).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::metrics_guard,
            )),
        );
    }
    let router = router
        .merge(rest::router())
        .merge(icons::router())
        .merge(dashboard::router())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(Extension(schema))
        .layer(axum::middleware::from_fn(require_json))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // One limit for every body, enforced while reading (not only by Content-Length).
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_deadline,
        ))
        .layer(axum::middleware::from_fn(json_payload_too_large))
        // Around every other layer, so a request refused by one (a 401, a 413) is counted
        // and timed too; inside the CORS layer, whose preflights are not the API's work.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            measure_request,
        ));
    // Outermost, so preflights are answered before authentication and every answer (a 401
    // too) carries the CORS headers a browser needs to read it.
    let router = match cors_layer(&state.config) {
        Some(cors) => router.layer(cors).with_state(state),
        None => router.with_state(state),
    };
    // Around everything: every answer, a refusal by any layer too, has its request id.
    router.layer(axum::middleware::from_fn(trace::traced))
}

/// The CORS layer for `CORS_ALLOWED_ORIGINS`: exact origins, the methods and the two
/// request headers the API uses; none when no origin is allowed (browsers then keep pages of
/// other sites out by themselves).
fn cors_layer(config: &Config) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<header::HeaderValue> = config
        .cors_allowed_origins
        .iter()
        .filter_map(|o| header::HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([
                header::RETRY_AFTER,
                header::CONTENT_DISPOSITION,
                trace::REQUEST_ID,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Health and metrics only: what a worker-only process serves with `WORKER_HTTP_PORT`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(process_metrics).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::ops_metrics_guard,
            )),
        )
        .with_state(state)
}

/// What an API process serves on `OPS_ADDR`: health, and the API's metrics (with the
/// fleet-wide database gauges).
pub fn api_ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(metrics).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::ops_metrics_guard,
            )),
        )
        .with_state(state)
}

/// The body-limit layer answers 413 in plain text; clients get our JSON error instead, in
/// the shape of the API they called.
async fn json_payload_too_large(request: Request, next: Next) -> Response {
    let graphql = is_graphql(&request);
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        error_response(graphql, payload_too_large())
    } else {
        response
    }
}

/// A request's body must arrive whole within `HTTP_BODY_TIMEOUT_MS`: the idle timeout alone
/// lets a body trickled a byte at a time hold a connection and a handler forever. Past the
/// deadline the body ends in an error, and the answer is 408 whatever the handler made of it.
async fn body_deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use axum::body::HttpBody as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let graphql = is_graphql(&request);
    let limit = state.config.http_body_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let late = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let flag = late.clone();
    let timed = futures::stream::unfold(Some(body.into_data_stream()), move |stream| {
        let flag = flag.clone();
        async move {
            let mut stream = stream?;
            match tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut stream)).await {
                Ok(Some(chunk)) => Some((chunk, Some(stream))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "body too slow");
                    Some((Err(axum::Error::new(late)), None))
                }
            }
        }
    });
    let request = Request::from_parts(parts, axum::body::Body::from_stream(timed));
    let response = next.run(request).await;
    if !late.load(std::sync::atomic::Ordering::Relaxed) {
        return response;
    }
    let mut answer = error_response(
        graphql,
        AppError::RequestTimeout(format!(
            "the request body did not arrive within {} ms (HTTP_BODY_TIMEOUT_MS)",
            limit.as_millis()
        )),
    );
    // What is left of the body will not be read: the connection must not be reused.
    answer.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    answer
}

/// The error for a body over `MAX_REQUEST_BYTES`, whichever layer noticed.
pub(crate) fn payload_too_large() -> AppError {
    AppError::PayloadTooLarge(
        "the request body is larger than the limit (MAX_REQUEST_BYTES)".into(),
    )
}

/// The caller the door ([`auth::authenticate`]) put in a request; none only where the door
/// lets a request through without one (a WebSocket upgrade, the GraphiQL page), which no
/// handler that reads jobs serves.
pub(crate) fn caller_of(caller: Option<Extension<Caller>>) -> Result<Caller, AppError> {
    caller
        .map(|Extension(caller)| caller)
        .ok_or_else(|| AppError::Unauthorized("an API key is required".into()))
}

/// A signed link to job `job_id`'s CSV, valid for `DOWNLOAD_URL_TTL_SECS` from now: absolute
/// under `PUBLIC_URL` when that is set, a path otherwise.
pub(crate) fn download_url(state: &AppState, job_id: uuid::Uuid) -> String {
    let path = state.accounts.signer().link(job_id, chrono::Utc::now());
    match &state.config.public_url {
        Some(base) => format!("{base}{path}"),
        None => path,
    }
}

/// An unknown path: the API's JSON error naming it, not an empty 404.
async fn no_route(method: Method, uri: axum::http::Uri) -> Response {
    AppError::NotFound(format!(
        "no such path: {method} {}; the REST API is described at /openapi.json, GraphQL is at /graphql",
        shown_path(&uri)
    ))
    .into_response()
}

/// A known path asked with a method it does not take: 405 in the shape of the API called
/// (the router adds `Allow`).
async fn wrong_method(
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let path = shown_path(&uri);
    let error = AppError::MethodNotAllowed {
        message: format!("{path} does not take {method}; the Allow header lists what it takes"),
        allow: None,
    };
    error_response(graphql_wire(&uri, &headers), error)
}

/// The path as an error shows it: never the query string (it may hold a signature), and
/// not at any length.
fn shown_path(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    match path.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    }
}

/// For a request to the GraphQL endpoint, whose errors have GraphQL's shape, its media type.
fn is_graphql(request: &Request) -> Option<Wire> {
    graphql_wire(request.uri(), request.headers())
}

/// For a request to `/graphql`, the media type its `Accept` asks for (JSON when it allows
/// neither: an error is still read); `None` for every other path.
fn graphql_wire(uri: &axum::http::Uri, headers: &axum::http::HeaderMap) -> Option<Wire> {
    (uri.path() == "/graphql").then(|| graphql::over_http::negotiate(headers).unwrap_or(Wire::Json))
}

/// An error that stopped a request before its handler, in the shape of the API called (and,
/// for GraphQL, in the media type the client accepts).
fn error_response(graphql: Option<Wire>, error: AppError) -> Response {
    match graphql {
        Some(wire) => graphql::over_http::refused(wire, error),
        None => error.into_response(),
    }
}

/// Every POST (`/jobs`, `/graphql`) must say `Content-Type: application/json`: a cross-site
/// HTML form can only send `text/plain`, form-encoded or multipart bodies, so this keeps a
/// browser on another site from creating jobs on an intranet deployment. Refused before the
/// body is read, so nothing is written.
async fn require_json(request: Request, next: Next) -> Response {
    if request.method() == Method::POST && !is_json(request.headers()) {
        let sent = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "no Content-Type".to_owned(), |v| format!("{v:?}"));
        let error = AppError::UnsupportedMediaType(format!(
            "{} takes a JSON body with Content-Type: application/json; this request sent {sent}",
            request.uri().path()
        ));
        return error_response(is_graphql(&request), error);
    }
    next.run(request).await
}

/// Whether the media type is `application/json`, whatever its parameters (`charset=utf-8`).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}
