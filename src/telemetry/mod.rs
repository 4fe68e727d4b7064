//! Logging, error reporting and traces: `tracing` with `RUST_LOG` filtering, text or JSON
//! lines, Sentry when `SENTRY_DSN` is set, and OpenTelemetry traces when `OTEL_*` says where
//! to send them (`traces.rs` the export pipeline, `context.rs` W3C trace context,
//! `sampling.rs` what is built).
//!
//! With Sentry, error-level log events become Sentry events (warnings and info lines become
//! breadcrumbs), panics are reported by the panic integration, and the worker sends a
//! transaction per recorded batch. Per-domain work runs under its own hub tagged with `job_id`
//! and `domain`, so a panic or error while handling a domain carries both. No request bodies,
//! headers or personal data are sent (`send_default_pii` stays off), and configuration values
//! are never logged unredacted.
//!
//! With traces, the service's own spans (ours only, at debug level and above, whatever
//! `RUST_LOG` says: the log filter decides what is written, not what is traced) become
//! OpenTelemetry spans, and a log line written inside a sampled trace carries its `trace_id`
//! and `span_id`. Work whose trace is not sampled (a request, a domain's find) runs quiet and
//! builds no spans (`sampling.rs`).

pub mod context;
pub mod sampling;
mod traces;

use crate::config::{Config, LogFormat};
use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
use std::io::IsTerminal;
use std::time::Duration;
use tracing_subscriber::filter::{FilterExt, LevelFilter};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, format::Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use context::{
    continue_trace, current_traceparent, link_traces, parse_traceparent, traceparent_of,
};
pub use sampling::{in_child_span, in_span};

/// The filter when `RUST_LOG` is unset: our own info, dependencies' warnings.
const DEFAULT_FILTER: &str =
    "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,reqwest=warn";

/// The module path every span of the service starts with: only these are traced (a
/// dependency's spans, the exporter's own HTTP client among them, are not).
const OWN_TARGET: &str = "favicon_finder";

/// What the process keeps until exit: Sentry's guard (queued events are flushed when it is
/// dropped) and the trace pipeline, flushed by [`Telemetry::flush`].
pub struct Telemetry {
    _sentry: Option<sentry::ClientInitGuard>,
    traces: Option<traces::Pipeline>,
}

impl Telemetry {
    /// Sends the spans still queued (waiting at most two seconds: a collector that is down
    /// must not hold up an exit) and stops the pipeline.
    pub async fn flush(&self) {
        if let Some(pipeline) = &self.traces {
            pipeline.flush(Duration::from_secs(2)).await;
            let _ = pipeline.provider.shutdown();
        }
    }
}

/// Installs the global subscriber (and Sentry and the trace pipeline, when configured); call
/// once, early in `main`, inside the Tokio runtime (the trace exporter runs on it), and keep
/// the returned value until exit.
pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
    let sentry = config.sentry_dsn.as_deref().map(|dsn| {
        let mut options = sentry::ClientOptions::default();
        options.release = sentry::release_name!();
        options.environment = config.sentry_environment.clone().map(Into::into);
        options.traces_sampling_strategy =
            sentry::TracesSamplingStrategy::FixedRate(config.sentry_traces_sample_rate);
        options.send_default_pii = false;
        options.attach_stacktrace = true;
        sentry::init((dsn, options))
    });
    let pipeline = config
        .traces
        .as_ref()
        .map(|traces| traces::Pipeline::start(traces, crate::metrics::trace_spans_dropped()))
        .transpose()?;
    let log_filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let with_ids = pipeline.is_some();
    // Colour only for a person at a terminal: piped to a file or a log collector, escape
    // codes are noise. The check is on stderr because that is where the log goes (stdout
    // carries `find`'s results and `schema`'s SDL).
    let (text, json) = match config.log_format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .map_event_format(|inner| WithTraceIds {
                        inner,
                        json: false,
                        on: with_ids,
                    })
                    .with_filter(log_filter()),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .flatten_event(true)
                    .map_event_format(|inner| WithTraceIds {
                        inner,
                        json: true,
                        on: with_ids,
                    })
                    .with_filter(log_filter()),
            ),
        ),
    };
    // Error-level events become Sentry events; warnings and info lines the breadcrumbs that
    // come with them.
    let sentry_errors = sentry
        .as_ref()
        .map(|_| ErrorLayer::new().with_filter(LevelFilter::ERROR.and(log_filter())));
    let sentry_breadcrumbs = sentry
        .as_ref()
        .map(|_| BreadcrumbLayer::new().with_filter(LevelFilter::INFO.and(log_filter())));
    let otel = pipeline.as_ref().map(|pipeline| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(pipeline.provider.tracer("favicon-finder"))
            // Per span and per poll, each of these costs every span, sampled or not (most are
            // not): the source location as attributes, busy and idle time taken on every
            // enter and exit, and the OpenTelemetry context made current on every enter
            // (nothing here reads it: trace context is read from the span).
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(trace_filter())
    });
    let quiet = pipeline.as_ref().map(|_| QuietSpans { logs: log_filter() });
    sampling::follow_parents(config.traces.as_ref().is_some_and(|t| {
        use crate::config::Sampler;
        matches!(
            t.sampler,
            Sampler::ParentBasedAlwaysOn
                | Sampler::ParentBasedAlwaysOff
                | Sampler::ParentBasedTraceIdRatio(_)
        )
    }));
    tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(sentry_errors)
        .with(sentry_breadcrumbs)
        .with(otel)
        .with(quiet)
        .init();
    Ok(Telemetry {
        _sentry: sentry,
        traces: pipeline,
    })
}

/// The outermost layer while traces are on: inside quiet work it turns down our own spans
/// that the log filter (its own copy of it) does not want either, so they are not made at
/// all. A filter on the trace layer alone only stops that layer from hearing of a span: the
/// registry still makes it (and enters, exits and closes it), which was most of what an
/// unsampled span cost.
struct QuietSpans {
    logs: EnvFilter,
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for QuietSpans {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // What every layer together wants: what the traces take (our spans asked again each
        // time), else what the logs take (the Sentry layers take less). "Always" would not
        // do for the rest: over per-layer filters it turns a call site every layer refused
        // into one asked about on every call (a dependency's debug events, many per
        // request).
        if traced(meta) {
            if meta.is_span() {
                tracing::subscriber::Interest::sometimes()
            } else {
                tracing::subscriber::Interest::always()
            }
        } else {
            Layer::<S>::register_callsite(&self.logs, meta)
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        cx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !(meta.is_span() && crate::quiet::is_quiet() && traced(meta))
            || Layer::<S>::enabled(&self.logs, meta, cx)
    }
}

/// What the trace layer sees: asked again for every span and event (not once per call site,
/// as a static filter would be), because inside work whose trace is not sampled nothing is
/// built at all.
fn trace_filter<S: tracing::Subscriber>() -> impl tracing_subscriber::layer::Filter<S> {
    tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
        traced(meta) && !crate::quiet::is_quiet()
    })
    .with_callsite_filter(|meta| {
        if traced(meta) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    })
}

/// Whether the trace layer wants what `meta` describes: our own spans at debug level and
/// above, and our own warnings and errors (as span events).
fn traced(meta: &tracing::Metadata<'_>) -> bool {
    let level = if meta.is_span() {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    meta.target().starts_with(OWN_TARGET) && *meta.level() <= level
}

/// A log line's format with the current trace's `trace_id` and `span_id` added (in front of
/// a text line; as the first fields of a JSON line), when the line is written inside a
/// sampled trace.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
    on: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // The subscriber is the global default, so the current span is found from here.
        let ids = if self.on {
            context::current_ids()
        } else {
            None
        };
        let Some((trace_id, span_id)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}
