//! Assembling the service: the router, the worker pool, and running both until shutdown.

use crate::config::Config;
use crate::error::AppError;
use crate::events::Events;
use crate::finder::Finder;
use crate::graphql::{ApiContext, AppSchema, build_schema};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::worker::{RecorderHealth, WorkerPool, WorkerSettings};
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
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
            Some(url) => Events::redis(url, &config.redis_prefix, metrics.clone())?,
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
        tokio::spawn(async move {
            outer.cancelled().await;
            state_shutdown.cancel();
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
                Some(tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(token.cancelled_owned())
                        .await
                }))
            }
            None => None,
        };
        if let Some(api) = api {
            match api.await {
                Ok(Ok(())) => tracing::info!("API stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "API failed"),
                Err(e) => tracing::error!(error = %e, "API task panicked"),
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
        // One limit for every body, enforced while reading (not only by Content-Length).
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(axum::middleware::map_response(json_payload_too_large))
        .with_state(state)
}

/// Health and metrics only: what a worker-only process serves with `WORKER_HTTP_PORT`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The body-limit layer answers 413 in plain text; clients get our JSON error instead.
async fn json_payload_too_large(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        AppError::PayloadTooLarge(
            "the request body is larger than the limit (MAX_REQUEST_BYTES)".into(),
        )
        .into_response()
    } else {
        response
    }
}

/// GET `/graphql`: a WebSocket upgrade runs subscriptions (as on `/graphql/ws`), anything
/// else gets the GraphiQL page.
async fn graphiql_or_subscription(
    state: State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    protocol: Result<GraphQLProtocol, StatusCode>,
) -> Response {
    match (upgrade, protocol) {
        (Ok(upgrade), Ok(protocol)) => graphql_ws(state, protocol, upgrade).await,
        _ => graphiql().await.into_response(),
    }
}

/// `/graphql/ws`: subscriptions in `graphql-transport-ws` or the legacy `graphql-ws`.
async fn graphql_ws(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(state, protocol, socket))
}

/// Runs one WebSocket connection: a per-connection subscription count, and on shutdown the
/// input ends (so every subscription on it stops) and the socket closes with 1001 "going
/// away" instead of being cut.
async fn serve_socket(state: AppState, protocol: GraphQLProtocol, socket: WebSocket) {
    let (mut to_client, from_client) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if to_client.send(message).await.is_err() {
                return;
            }
        }
        let _ = to_client
            .send(Message::Close(Some(CloseFrame {
                code: axum::extract::ws::close_code::AWAY,
                reason: "server shutting down or connection finished".into(),
            })))
            .await;
    });
    let sink = tokio_util::sync::PollSender::new(tx)
        .sink_map_err(|_| axum::Error::new("the WebSocket writer stopped"));
    let input = from_client.take_until(state.shutdown.clone().cancelled_owned());
    let mut data = async_graphql::Data::default();
    data.insert(crate::graphql::ConnectionSubscriptions::new(
        state.config.ws_max_subscriptions,
    ));
    GraphQLWebSocket::new_with_pair(sink, input, state.schema.clone(), protocol)
        .with_data(data)
        .serve()
        .await;
    let _ = writer.await;
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

async fn graphql(State(state): State<AppState>, request: GraphQLRequest) -> GraphQLResponse {
    state.schema.execute(request.into_inner()).await.into()
}

/// `/metrics`: Prometheus text format; database gauges are read now.
async fn metrics(State(state): State<AppState>) -> Response {
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
async fn readyz(State(state): State<AppState>) -> Response {
    let database = match state.store.ping().await {
        Err(e) => format!("unreachable: {e}"),
        Ok(()) => match state.store.migrations_applied().await {
            Ok(true) => "ok".to_owned(),
            Ok(false) => "migrations pending: run `favicon-finder migrate`".to_owned(),
            Err(e) => format!("cannot read migrations: {e}"),
        },
    };
    let mut checks = json!({ "database": database });
    let ready = database == "ok";
    let mut degraded = false;
    if let Some(redis) = state.events.redis_health().await {
        checks["redis"] = json!(match redis {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                degraded = true;
                format!("unreachable: {e}")
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
