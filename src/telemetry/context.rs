//! W3C trace context: a span continued from a `traceparent`, the current span's
//! `traceparent` to store or send on, and the ids a log line carries.
//!
//! Without a tracing pipeline (traces off) no span has an OpenTelemetry context, so each of
//! these answers `None` and continuing a trace does nothing.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The longest `traceparent` read: version 00's is 55 characters; a later version may add
/// fields, but nothing legitimate is this long.
const MAX_TRACEPARENT: usize = 512;

/// The span context a `traceparent` header value names, if it is well-formed and valid.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    if value.len() > MAX_TRACEPARENT {
        return None;
    }
    let carrier = std::collections::HashMap::from([("traceparent".to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let remote = cx.span().span_context().clone();
    remote.is_valid().then_some(remote)
}

/// Makes `span` a child of the remote span `traceparent` names; does nothing when it names
/// none (absent, malformed) or traces are off. Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(remote) = traceparent.and_then(parse_traceparent) {
        let parent = opentelemetry::Context::new().with_remote_span_context(remote);
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` of `span`, when it is traced.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    format_context(span.context().span().span_context())
}

/// The `traceparent` of the current span, when it is traced: what a job row or a Redis
/// message carries so the work it starts joins the same trace.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The W3C form of a span context: `00-{trace id}-{span id}-{flags}`.
fn format_context(context: &SpanContext) -> Option<String> {
    context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        )
    })
}

/// The trace id and span id of the current span, in hex, when it is traced and sampled (a log
/// line points at a trace only when the trace is kept).
pub fn current_ids() -> Option<(String, String)> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let context = span.span_context();
    (context.is_valid() && context.is_sampled()).then(|| {
        (
            context.trace_id().to_string(),
            context.span_id().to_string(),
        )
    })
}

/// The most links one span gets to the traces of the jobs it worked for.
const MAX_LINKS: usize = 16;

/// Links `span` to the traces of the `contexts` (`traceparent`s, none or malformed skipped),
/// each once and at most [`MAX_LINKS`]: a claim or a recorded batch serves several jobs, so
/// it is no job's child, but each job's trace can lead to it.
pub fn link_traces<'a>(span: &tracing::Span, contexts: impl IntoIterator<Item = Option<&'a str>>) {
    if span.is_disabled() {
        return;
    }
    let mut seen: Vec<&str> = Vec::new();
    for context in contexts.into_iter().flatten() {
        if seen.len() == MAX_LINKS {
            break;
        }
        if seen.contains(&context) {
            continue;
        }
        seen.push(context);
        if let Some(remote) = parse_traceparent(context) {
            span.add_link(remote);
        }
    }
}
