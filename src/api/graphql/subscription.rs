//! `jobProgress`: the core's progress stream ([`crate::jobs::Jobs::progress`]) as GraphQL
//! objects, held against the connection's subscription limit.

use super::*;

/// A job's progress at one moment, with the domains finished since the previous event.
#[derive(SimpleObject, Clone)]
pub struct JobProgress {
    /// The job.
    job_id: ID,
    /// Life-cycle state.
    status: JobStatus,
    /// Distinct domains in the job.
    total: i32,
    /// Finished with an icon.
    completed: i32,
    /// Finished without one.
    failed: i32,
    /// Percent finished, rounded down.
    progress: i32,
    /// Domains finished since the previous event (empty in the first, snapshot event), with
    /// the same columns as a `Result` short of its candidates.
    results: Vec<ResultColumns>,
}

impl From<ProgressEvent> for JobProgress {
    fn from(event: ProgressEvent) -> Self {
        Self {
            job_id: ID(event.job_id.to_string()),
            status: event.status,
            total: event.total,
            completed: event.completed,
            failed: event.failed,
            progress: event.progress,
            results: event.finished,
        }
    }
}

/// Live operations.
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Live progress of a job: the current state at once, then events (at most about ten a
    /// second) carrying the domains finished since the previous one; completes after the
    /// job's final event.
    async fn job_progress(
        &self,
        c: &Context<'_>,
        job_id: ID,
    ) -> Result<impl Stream<Item = JobProgress> + use<>> {
        let id = jobs::parse_job_id(&job_id).map_err(AppError::into_graphql)?;
        let slot = match c.data_opt::<ConnectionSubscriptions>() {
            Some(connection) => Some(connection.enter().map_err(AppError::into_graphql)?),
            None => None,
        };
        let api = ctx(c);
        let open = OpenSubscription::new(api.metrics.clone());
        let progress = api
            .jobs
            .progress(caller(c)?, id)
            .await
            .map_err(AppError::into_graphql)?;
        // The slot and the gauge are held by the stream, so both are given back however it
        // ends.
        Ok(progress.map(move |event| {
            let _held = (&slot, &open);
            JobProgress::from(event)
        }))
    }
}

/// Keeps the open-subscriptions gauge right: up on creation, down on drop.
struct OpenSubscription(Arc<crate::metrics::Metrics>);

impl OpenSubscription {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.subscriptions.inc();
        Self(metrics)
    }
}

impl Drop for OpenSubscription {
    fn drop(&mut self) {
        self.0.subscriptions.dec();
    }
}
