//! The outermost layer of every route: a server span per request (continuing an incoming W3C
//! `traceparent`), an `x-request-id` on every answer (the caller's own when it is safe to
//! echo, a new one otherwise) that error bodies repeat, and a `traceresponse` naming the
//! request's span when it is traced.
//!
//! The span carries the route template (`/jobs/{id}`), never the path or query string (a
//! download link's signature, a domain), and the status.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The request id header, read and answered.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C header that names the server's span of a traced request.
const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");
/// The longest caller's request id echoed.
const MAX_REQUEST_ID: usize = 128;

/// Runs `next` under the request's span and request id, and marks the answer with both.
pub async fn traced(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let method = request.method().clone();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| safe_request_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let span = tracing::debug_span!(
        "http.request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        request_id = %request_id,
    );
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    crate::telemetry::continue_trace(&span, traceparent);
    let mut response = crate::error::with_request_id(
        request_id.clone(),
        crate::telemetry::in_span(span.clone(), next.run(request)),
    )
    .await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Some(value) =
        crate::telemetry::traceparent_of(&span).and_then(|tp| HeaderValue::from_str(&tp).ok())
    {
        headers.insert(TRACERESPONSE, value);
    }
    response
}

/// A caller's request id is echoed (and logged, and put in error bodies) only when it is
/// short and plain: letters, digits, `-`, `_`, `.`, `:`.
fn safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}
