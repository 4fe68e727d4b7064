//! One claimed row's find: run the finder under its deadline, with panics contained, a
//! Sentry hub and a span of its own, and decide what to write (the outcome, or a retry).

use super::{MAX_BACKOFF, RecorderHealth, WorkerSettings, backoff};
use crate::finder::{ErrorCategory, FindError, FindOutcome, Finder};
use crate::metrics::Metrics;
use crate::store::{Claimed, Disposition};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// Runs the finder on one claimed row and decides what to write: the outcome, or a retry.
pub(super) async fn find_one(
    finder: Arc<Finder>,
    claim: Claimed,
    settings: WorkerSettings,
    metrics: Arc<Metrics>,
    health: Arc<RecorderHealth>,
) -> (Claimed, Disposition) {
    // A child of the span that created the job, in whichever process that ran.
    let span = || tracing::debug_span!("domain.find", job_id = %claim.job_id, domain = %claim.domain, try_ = claim.tries);
    // Dropped when the find ends, or when the task is aborted at a stop, which no line after
    // the await would see.
    let _in_flight = InFlight::enter(&metrics);
    let started = std::time::Instant::now();
    let outcome = on_domain_hub(
        &claim,
        crate::telemetry::in_child_span(
            claim.trace_context.as_deref(),
            span,
            guarded(finder.find(&claim.domain), settings.find_timeout),
        ),
    )
    .await;
    metrics
        .fetch_seconds
        .observe(started.elapsed().as_secs_f64());
    let disposition = match outcome {
        Err(err) if err.category.is_transient() && (claim.tries as u32) < settings.max_tries => {
            let mut wait = backoff(claim.tries as u32, settings.backoff);
            if let Some(secs) = err.retry_after_secs {
                wait = wait.max(Duration::from_secs(secs)).min(MAX_BACKOFF);
            }
            Disposition::Retry {
                run_at: crate::store::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
                category: err.category,
                message: err.message,
            }
        }
        outcome => Disposition::Finish(outcome),
    };
    let (label, code) = match &disposition {
        Disposition::Finish(Ok(_)) => ("success", ""),
        Disposition::Finish(Err(e)) => ("failed", e.category.as_str()),
        Disposition::Retry { category, .. } => ("retry", category.as_str()),
    };
    metrics.domains.with_label_values(&[label, code]).inc();
    // Waiting from here: the pool's loop may itself be held up by the database before it
    // passes this on.
    health.handed_over();
    (claim, disposition)
}

/// Runs `work` under a Sentry hub of its own, tagged with the row's `job_id` and `domain`, so
/// whatever Sentry hears while this domain is handled (a panic, an error log) carries both.
pub(super) fn on_domain_hub<F: Future>(claim: &Claimed, work: F) -> sentry::SentryFuture<F> {
    let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::current()));
    hub.configure_scope(|scope| {
        scope.set_tag("job_id", claim.job_id);
        scope.set_tag("domain", &claim.domain);
    });
    sentry::SentryFutureExt::bind_hub(work, hub)
}

/// Counts a row in the `in_flight` gauge for as long as it lives.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn enter(metrics: &Metrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Awaits a find, turning a panic or an overrun of `timeout` into a failure of this try, so
/// neither can take the worker down or hold a slot forever.
pub(super) async fn guarded(
    work: impl Future<Output = FindOutcome>,
    timeout: Duration,
) -> FindOutcome {
    match tokio::time::timeout(timeout, AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(panic = %what, "finder panicked");
            Err(FindError::new(
                ErrorCategory::Internal,
                format!("the finder crashed: {what}"),
            ))
        }
        Err(_) => Err(FindError::new(
            ErrorCategory::Timeout,
            format!("no answer within {}s", timeout.as_secs()),
        )),
    }
}
