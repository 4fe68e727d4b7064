//! Operations endpoints: `/healthz`, `/readyz` and `/metrics`, served by API processes and,
//! with `WORKER_HTTP_PORT`, by worker-only ones.

use super::AppState;
use crate::error::ErrorBody;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// `/metrics` of an API process: its own series plus the fleet-wide database gauges (see
/// [`crate::metrics`]).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "The text exposition format. With `METRICS_TOKEN` set it wants that token as a Bearer credential; without one, `AUTH_MODE=required` wants an admin key. With `OPS_ADDR` set it is served on that listener only.",
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Every series", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "A token or admin key is required", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    if state.metrics.fleet_gauges_due() {
        match (
            state.jobs.job_status_counts().await,
            state.jobs.queue_depth().await,
            state.jobs.work_left_by_job().await,
        ) {
            (Ok(jobs), Ok((queued, leased)), Ok(left)) => {
                state.metrics.set_database_gauges(&jobs, queued, leased);
                state.metrics.set_queue_owners(&left);
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                state.metrics.database_errors.inc();
                tracing::warn!(error = %e, "metrics: database gauges not refreshed");
            }
        }
    }
    process_metrics(State(state)).await
}

/// `/metrics` of a worker-only process: process-local series only, which sum across a fleet.
pub(super) async fn process_metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .set_websocket_connections(state.ws_connections.open());
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
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}`", body = Object),
        (status = 503, description = "`{\"status\": \"unhealthy\", \"reason\"}`: the recorder is stuck", body = Object),
    )
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
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

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness",
    description = "Ready when the database answers and its schema is current. Redis is reported in `checks.redis` but not required: without it the status is `degraded`, still 200. `politeness` says whose per-host and per-address limits this process keeps: `process-local` (no Redis configured), `fleet` (shared through Redis), `fallback` (Redis away: this process's `share` of each limit, from `live_workers`), or `recovering` (back on Redis, and within the share for one lease).",
    responses(
        (status = 200, description = "`{\"status\": \"ok\" | \"degraded\", \"checks\": {\"database\", \"redis\"?}, \"politeness\": {\"mode\", \"reason\"?, \"share\"?, \"live_workers\"?}}`", body = Object),
        (status = 503, description = "`{\"status\": \"unavailable\", \"checks\"}`: the database is unreachable or migrations are pending", body = Object),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    // Each check answers with a fixed word; the error text (which may name hosts, users or
    // SQL) goes to the log only.
    let check_database = async {
        match state.jobs.ping().await {
            Err(e) => {
                tracing::warn!(error = %e, "readyz: database unreachable");
                "unreachable"
            }
            Ok(()) => match state.jobs.migrations_applied().await {
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
            "politeness": state.politeness.status(),
        })),
    )
        .into_response()
}
