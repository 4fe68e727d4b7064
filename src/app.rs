//! Assembling the service: the router, the worker pool, and running both until shutdown.

use crate::config::Config;
use crate::error::{AppError, code};
use crate::events::Events;
use crate::finder::Finder;
use crate::graphql::{ApiContext, AppSchema, build_schema};
use crate::http::{HttpTimeouts, serve_http};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::worker::{RecorderHealth, WorkerPool, WorkerSettings};
use crate::ws::{WsConnections, graphql_ws};
use async_graphql::ParseRequestError;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Progress events and wake-ups.
    pub events: Events,
    /// The process configuration.
    pub config: Arc<Config>,
    /// The GraphQL schema.
    pub schema: AppSchema,
    /// Prometheus metrics of this process.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the process stops: open WebSockets close cleanly.
    pub shutdown: CancellationToken,
    /// Open WebSocket connections, against `WS_MAX_CONNECTIONS` and
    /// `WS_MAX_CONNECTIONS_PER_IP`.
    pub ws_connections: Arc<WsConnections>,
    /// This process's recorder, when it runs workers: `/healthz` fails while it is stuck.
    pub recorder: Option<Arc<RecorderHealth>>,
}

/// Which parts of the service this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Serve the HTTP API.
    pub api: bool,
    /// Run a worker pool (also needs `WORKER_CONCURRENCY` > 0).
    pub worker: bool,
}

/// A built service, ready to run: connected, migrated, listening.
pub struct Application {
    /// Serve the whole API on the listener, or only health and metrics.
    api: bool,
    state: AppState,
    listener: Option<TcpListener>,
    worker: Option<WorkerPool>,
}

impl Application {
    /// Connects to the database (migrating it unless told not to), builds the finder and binds
    /// the listener, so that failures show before anything runs.
    pub async fn build(config: Config, roles: Roles) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database_url, config.database_pool_size).await?;
        if config.run_migrations {
            store.migrate().await?;
        }
        let metrics = Arc::new(Metrics::new());
        let events = match &config.redis_url {
            Some(url) => Events::redis(
                url,
                &config.redis_prefix,
                config.redis_ca_cert.as_deref(),
                metrics.clone(),
            )?,
            None => Events::in_process(),
        };
        let worker = if roles.worker && config.worker_concurrency > 0 {
            let finder = Arc::new(Finder::new(config.finder())?);
            Some(WorkerPool::new(
                store.clone(),
                finder,
                events.clone(),
                metrics.clone(),
                WorkerSettings {
                    concurrency: config.worker_concurrency,
                    lease: config.worker_lease,
                    poll: config.worker_poll,
                    max_tries: config.fetch_max_tries,
                    backoff: config.fetch_retry_backoff,
                    find_timeout: config.fetch_timeout + std::time::Duration::from_secs(5),
                    shutdown_grace: config.shutdown_grace,
                },
            ))
        } else {
            None
        };
        // A worker-only process serves just health and metrics, and only when asked to.
        let port = match (roles.api, config.worker_http_port) {
            (true, _) => Some(config.port),
            (false, port) => port,
        };
        let listener = if let Some(port) = port {
            let addr = SocketAddr::new(config.host, port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
            )
        } else {
            None
        };
        let ws_connections = Arc::new(WsConnections::new(
            config.ws_max_connections,
            config.ws_max_connections_per_ip,
        ));
        let config = Arc::new(config);
        let schema = build_schema(Some(ApiContext {
            store: store.clone(),
            events: events.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
        }));
        Ok(Self {
            api: roles.api,
            state: AppState {
                store,
                events,
                config,
                schema,
                metrics,
                shutdown: CancellationToken::new(),
                ws_connections,
                recorder: worker.as_ref().map(WorkerPool::health),
            },
            listener,
            worker,
        })
    }

    /// The port the API listens on, if this process serves it.
    pub fn port(&self) -> Option<u16> {
        self.listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// The shared state, for tests and tools.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves the API and runs the workers until `shutdown` is cancelled, then stops both
    /// gracefully and reports how each ended.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state_shutdown = self.state.shutdown.clone();
        let outer = shutdown.clone();
        let stopping = tokio::spawn(async move {
            outer.cancelled().await;
            state_shutdown.cancel();
            Instant::now()
        });
        let worker = self.worker.map(|pool| {
            let token = shutdown.clone();
            tokio::spawn(async move { pool.run(token).await })
        });
        let api = match self.listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let app = if self.api {
                    tracing::info!(%addr, "API listening; GraphiQL at http://{addr}/graphql");
                    router(self.state.clone())
                } else {
                    tracing::info!(%addr, "health and metrics listening");
                    ops_router(self.state.clone())
                };
                let token = shutdown.clone();
                let timeouts = HttpTimeouts {
                    header: self.state.config.http_header_timeout,
                    idle: self.state.config.http_idle_timeout,
                    grace: self.state.config.shutdown_grace,
                };
                Some(tokio::spawn(serve_http(listener, app, timeouts, token)))
            }
            None => None,
        };
        if let Some(api) = api {
            match api.await {
                Ok(()) => tracing::info!("API stopped"),
                Err(e) => tracing::error!(error = %e, "API task panicked"),
            }
            // WebSockets left hyper at their upgrade, so serving HTTP does not wait for them;
            // they complete their subscriptions and close within the same grace period.
            let started = stopping.await.unwrap_or_else(|_| Instant::now());
            let grace = self.state.config.shutdown_grace;
            let cut = self.state.ws_connections.drain(started + grace).await;
            if cut > 0 {
                tracing::warn!(
                    cut,
                    "WebSocket connections still open after SHUTDOWN_GRACE_SECS were cut"
                );
            }
        }
        if let Some(worker) = worker {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "worker task panicked");
            }
        }
        Ok(())
    }
}

/// All routes: GraphQL, REST, health.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_request_bytes;
    Router::new()
        .route("/graphql", get(graphiql_or_subscription).post(graphql))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::rest::router())
        .layer(axum::middleware::from_fn(require_json))
        // One limit for every body, enforced while reading (not only by Content-Length).
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(axum::middleware::from_fn(json_payload_too_large))
        .with_state(state)
}

/// Health and metrics only: what a worker-only process serves with `WORKER_HTTP_PORT`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(process_metrics))
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

fn payload_too_large() -> AppError {
    AppError::PayloadTooLarge(
        "the request body is larger than the limit (MAX_REQUEST_BYTES)".into(),
    )
}

/// Whether a request is for the GraphQL endpoint, whose errors have GraphQL's shape.
fn is_graphql(request: &Request) -> bool {
    request.uri().path() == "/graphql"
}

/// An error that stopped a request before its handler, in the shape of the API called.
fn error_response(graphql: bool, error: AppError) -> Response {
    if graphql {
        error.into_graphql_response()
    } else {
        error.into_response()
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

/// GET `/graphql`: a WebSocket upgrade runs subscriptions (as on `/graphql/ws`), anything
/// else gets the GraphiQL page.
async fn graphiql_or_subscription(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    protocol: Result<GraphQLProtocol, StatusCode>,
) -> Response {
    match (upgrade, protocol) {
        (Ok(upgrade), Ok(protocol)) => graphql_ws(state, peer, protocol, upgrade).await,
        _ => graphiql().await.into_response(),
    }
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("favicon-finder")
            .finish(),
    )
}

/// POST `/graphql`. A body that is not a GraphQL request in JSON gets a GraphQL error with a
/// code, like every other GraphQL error, rather than the extractor's plain-text 400.
async fn graphql(
    State(state): State<AppState>,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    match request {
        Ok(request) => {
            GraphQLResponse::from(state.schema.execute(request.into_inner()).await).into_response()
        }
        Err(GraphQLRejection(err)) => {
            let error = match err {
                ParseRequestError::PayloadTooLarge => payload_too_large(),
                // The body limit cuts a streamed body short while it is being read.
                ParseRequestError::Io(e) if e.to_string().contains("length limit") => {
                    payload_too_large()
                }
                ParseRequestError::Io(e) => AppError::bad_request(
                    code::INVALID_JSON,
                    format!("the request body could not be read: {e}"),
                ),
                other => AppError::bad_request(
                    code::INVALID_JSON,
                    format!(
                        "the body is not a GraphQL request in JSON ({{\"query\": …, \"variables\": …}}): {}",
                        short_reason(&other)
                    ),
                ),
            };
            error.into_graphql_response()
        }
    }
}

/// The parser's reason, without the request text it may quote at length.
fn short_reason(err: &ParseRequestError) -> String {
    let reason = err.to_string();
    match reason.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason,
    }
}

/// `/metrics` of an API process: its own series plus the fleet-wide database gauges (see
/// [`crate::metrics`]).
async fn metrics(State(state): State<AppState>) -> Response {
    if state.metrics.fleet_gauges_due() {
        match (
            state.store.job_status_counts().await,
            state.store.queue_depth().await,
        ) {
            (Ok(jobs), Ok((queued, leased))) => {
                state.metrics.set_database_gauges(&jobs, queued, leased)
            }
            (Err(e), _) | (_, Err(e)) => {
                state.metrics.database_errors.inc();
                tracing::warn!(error = %e, "metrics: database gauges not refreshed");
            }
        }
    }
    process_metrics(State(state)).await
}

/// `/metrics` of a worker-only process: process-local series only, which sum across a fleet.
async fn process_metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `/healthz`: the process is up and serving, and its recorder (if it runs workers) is not
/// stuck: a worker that finds but cannot write would otherwise look alive forever while its
/// leases run out.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.recorder.as_ref().and_then(|r| r.stalled()) {
        None => Json(json!({ "status": "ok" })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "reason": reason })),
        )
            .into_response(),
    }
}

/// `/readyz`: ready when the database answers and its schema is current. Redis, when
/// configured, is reported but not required: without it the service still works (workers
/// poll, subscribers re-read), so a Redis outage marks the process `degraded`, not unready,
/// and does not pull every API instance out of rotation at once.
/// The longest `/readyz` waits for the database: it answers within this, whatever the
/// database does (Redis gets less, see [`crate::events::REDIS_HEALTH_TIMEOUT`]), well inside
/// the probes' 3 s timeout in deploy/k8s.
const READY_DATABASE_TIMEOUT: Duration = Duration::from_millis(1500);

async fn readyz(State(state): State<AppState>) -> Response {
    // Each check answers with a fixed word; the error text (which may name hosts, users or
    // SQL) goes to the log only.
    let check_database = async {
        match state.store.ping().await {
            Err(e) => {
                tracing::warn!(error = %e, "readyz: database unreachable");
                "unreachable"
            }
            Ok(()) => match state.store.migrations_applied().await {
                Ok(true) => "ok",
                Ok(false) => "migrations_pending",
                Err(e) => {
                    tracing::warn!(error = %e, "readyz: cannot read the applied migrations");
                    "error"
                }
            },
        }
    };
    // Both checks run at once and each has its own bound, so the probe answers within
    // READY_DATABASE_TIMEOUT whatever the database and Redis do.
    let (database, redis) = tokio::join!(
        tokio::time::timeout(READY_DATABASE_TIMEOUT, check_database),
        state.events.redis_health()
    );
    let database = database.unwrap_or_else(|_| {
        tracing::warn!(timeout = ?READY_DATABASE_TIMEOUT, "readyz: the database did not answer in time");
        "unreachable"
    });
    let mut checks = json!({ "database": database });
    let ready = database == "ok";
    let mut degraded = false;
    if let Some(redis) = redis {
        checks["redis"] = json!(match redis {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(error = %e, "readyz: Redis unreachable");
                degraded = true;
                "unreachable"
            }
        });
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": match (ready, degraded) {
                (false, _) => "unavailable",
                (true, true) => "degraded",
                (true, false) => "ok",
            },
            "checks": checks,
        })),
    )
        .into_response()
}
