//! Work whose trace is not sampled builds no spans.
//!
//! The sampler decides at a trace's root, but the tracing layer builds every span of the
//! service (attributes, timestamps, ids, a hand-over to the sampler at its close) whether or
//! not its trace is kept: about eight per domain, so at 1 % sampling nearly all of that work
//! is thrown away. [`in_span`] asks once, at the top of a unit of work (a request, a domain's
//! find), whether its trace is sampled; when it is not, the work runs quiet: while it is
//! polled, the trace layer's filter refuses every new span and event, and the outermost
//! quiet layer (`QuietSpans`) keeps our spans from being made at all unless the logs want
//! them. Quiet is a thread-local set only for the length of one poll, so work on other tasks
//! of the same thread is not affected; a task spawned from quiet work is made quiet with
//! [`crate::quiet::as_quiet_as_now`].

use crate::quiet::quietly;
use opentelemetry::trace::TraceContextExt;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether the configured sampler follows a parent's decision (`parentbased_*`, with traces
/// on): then a child of a `traceparent` whose sampled flag is off is known to be unsampled
/// before any span is made.
static FOLLOWS_PARENTS: AtomicBool = AtomicBool::new(false);

/// Notes, at start, whether the sampler follows a parent's decision.
pub(super) fn follow_parents(follows: bool) {
    FOLLOWS_PARENTS.store(follows, Ordering::Relaxed);
}

/// Whether `span`'s trace is sampled: false when traces are off or `span` is disabled. Asking
/// starts the span in the trace pipeline, so call after its parent is set.
fn sampled(span: &tracing::Span) -> bool {
    !span.is_disabled() && span.context().span().span_context().is_sampled()
}

/// Runs `work` under `span`; when `span`'s trace is not sampled, quietly, so no span or event
/// inside it reaches the trace pipeline (the span itself still frames log lines).
pub async fn in_span<F: Future>(span: tracing::Span, work: F) -> F::Output {
    if sampled(&span) {
        work.instrument(span).await
    } else {
        quietly(work.instrument(span)).await
    }
}

/// Runs `work` under the span `make` makes, a child of the remote span `traceparent` names
/// (see [`super::continue_trace`]), quietly when that trace is not sampled. When the sampler
/// follows parents and `traceparent` declined, that is known at once: the span is made
/// inside the quiet work, so it is not made at all unless the logs want it (a domain's find
/// in an unsampled job costs nothing of tracing's, not even its own span).
pub async fn in_child_span<F: Future>(
    traceparent: Option<&str>,
    make: impl FnOnce() -> tracing::Span,
    work: F,
) -> F::Output {
    let declined = FOLLOWS_PARENTS.load(Ordering::Relaxed)
        && traceparent
            .and_then(super::parse_traceparent)
            .is_some_and(|parent| !parent.is_sampled());
    if declined {
        quietly(async move { work.instrument(make()).await }).await
    } else {
        let span = make();
        super::continue_trace(&span, traceparent);
        in_span(span, work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quiet::{as_quiet_as_now, is_quiet as quiet};

    /// Runs `work` on a runtime of its own under the layers as `telemetry::init` stacks them
    /// (a log layer behind `logs`, a trace layer behind the trace filter, the quiet spans'
    /// layer outermost), the trace layer replaced by one that notes each span it hears of.
    /// Answers those spans' names and what `work` answered.
    fn under_the_layers<T>(logs: &str, work: impl Future<Output = T>) -> (Vec<&'static str>, T) {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::{Layer, registry::LookupSpan};
        struct Names(Arc<Mutex<Vec<&'static str>>>);
        impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Names {
            fn on_new_span(
                &self,
                attrs: &tracing::span::Attributes<'_>,
                _: &tracing::span::Id,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.lock().unwrap().push(attrs.metadata().name());
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(tracing_subscriber::EnvFilter::new(logs)),
            )
            .with(Names(seen.clone()).with_filter(super::super::trace_filter()))
            .with(super::super::QuietSpans {
                logs: tracing_subscriber::EnvFilter::new(logs),
            });
        let answer = tracing::subscriber::with_default(subscriber, || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(work)
        });
        let seen = seen.lock().unwrap().clone();
        (seen, answer)
    }

    /// Quiet work that makes a span itself and in a task it spawns, between two spans made
    /// outside it: answers whether the quiet work's own span was made at all.
    async fn quiet_work() -> bool {
        let _before = tracing::debug_span!("before");
        let made = quietly(async {
            let hidden = tracing::debug_span!("hidden");
            let spawned = as_quiet_as_now(async {
                let _hidden = tracing::debug_span!("hidden.spawned");
            });
            tokio::spawn(spawned).await.unwrap();
            !hidden.is_disabled()
        })
        .await;
        let _after = tracing::debug_span!("after");
        made
    }

    fn run_quiet_work(logs: &str) -> (Vec<&'static str>, bool) {
        under_the_layers(logs, quiet_work())
    }

    #[test]
    fn a_child_of_a_declined_parent_is_quiet_from_its_own_span_on() {
        follow_parents(true);
        let declined = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        let (seen, (quiet, made)) = under_the_layers(
            "warn",
            in_child_span(Some(declined), || tracing::debug_span!("child"), async {
                (quiet(), !tracing::Span::current().is_disabled())
            }),
        );
        assert!(quiet, "the child's work ran quiet");
        assert!(!made, "its own span was not made");
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[test]
    fn quiet_work_makes_no_span_the_logs_do_not_want() {
        let (seen, made) = run_quiet_work("warn");
        assert_eq!(
            seen,
            ["before", "after"],
            "the trace layer heard of no quiet span"
        );
        assert!(
            !made,
            "a span neither the logs nor the traces want is not made at all"
        );
    }

    #[test]
    fn quiet_work_still_makes_the_spans_the_logs_want() {
        let (seen, made) = run_quiet_work("debug");
        assert_eq!(
            seen,
            ["before", "after"],
            "the trace layer heard of no quiet span"
        );
        assert!(made, "the logs still frame their lines with it");
    }
}
