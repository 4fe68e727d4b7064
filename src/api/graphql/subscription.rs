//! `jobProgress`: the current state, then live events, until the job's final event.

use super::*;

/// One domain that finished, as carried by a progress event.
#[derive(SimpleObject, Clone)]
pub struct ProgressResult {
    /// The domain.
    domain: String,
    /// `SUCCESS` or `FAILED`.
    status: ResultStatus,
    /// The icon, on success.
    favicon_url: Option<String>,
    /// The failure category, on failure.
    error_code: Option<String>,
}

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
    /// Domains finished since the previous event (empty in the first, snapshot event).
    results: Vec<ProgressResult>,
}

impl From<&ProgressEvent> for JobProgress {
    fn from(event: &ProgressEvent) -> Self {
        let status = match event.status.as_str() {
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => JobStatus::Processing,
        };
        Self {
            job_id: ID(event.job_id.to_string()),
            status,
            total: event.total,
            completed: event.completed,
            failed: event.failed,
            progress: event.progress,
            results: event
                .finished
                .iter()
                .map(|f| ProgressResult {
                    domain: f.domain.clone(),
                    status: if f.status == ResultStatus::Success.as_str() {
                        ResultStatus::Success
                    } else {
                        ResultStatus::Failed
                    },
                    favicon_url: f.favicon_url.clone(),
                    error_code: f.error_code.clone(),
                })
                .collect(),
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
        let api = ctx(c).clone();
        // Subscribe before reading the snapshot, so nothing recorded in between is missed.
        let rx = api.events.subscribe_progress();
        let view = api.jobs.find(id).await.map_err(AppError::into_graphql)?;
        Ok(progress_stream(api, view, rx, slot))
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

/// What a subscriber waits for next.
enum Heard {
    /// An event of our job.
    Event(ProgressEvent),
    /// Silence, lag or a lost channel: the database must be asked.
    Reread,
    /// The process is shutting down.
    Closed,
}

async fn next_for_job(
    rx: &mut broadcast::Receiver<Arc<ProgressEvent>>,
    job: uuid::Uuid,
    wait: Duration,
) -> Heard {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Ok(event) if event.job_id == job => return Heard::Event(event.as_ref().clone()),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Heard::Reread,
                Err(broadcast::error::RecvError::Closed) => return Heard::Closed,
            },
            _ = &mut deadline => return Heard::Reread,
        }
    }
}

/// The event stream of one subscriber: snapshot, coalesced live events, database re-reads
/// when events stop or are missed, and the end after the final state.
fn progress_stream(
    api: AppState,
    view: JobView,
    mut rx: broadcast::Receiver<Arc<ProgressEvent>>,
    slot: Option<ConnectionSlot>,
) -> impl Stream<Item = JobProgress> {
    async_stream::stream! {
        let _slot = slot;
        // Counts this subscription while the stream lives, however it ends.
        let _open = OpenSubscription::new(api.metrics.clone());
        let id = view.job.id;
        let mut last = ProgressEvent::from_job(&view.job, Vec::new());
        let mut read_at = view.job.updated_at;
        yield JobProgress::from(&last);
        if last.is_final() {
            return;
        }
        loop {
            let (mut event, mut reread) = match next_for_job(&mut rx, id, IDLE_REREAD).await {
                Heard::Event(event) => (event, false),
                Heard::Reread => (ProgressEvent { finished: Vec::new(), ..last.clone() }, true),
                Heard::Closed => return,
            };
            // Coalesce: whatever else arrives within the window joins this event.
            let window = tokio::time::Instant::now() + COALESCE;
            while !event.is_final() && !reread {
                let left = window.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match next_for_job(&mut rx, id, left).await {
                    Heard::Event(more) => event.merge(more),
                    Heard::Reread if tokio::time::Instant::now() >= window => break,
                    Heard::Reread => reread = true,
                    Heard::Closed => return,
                }
            }
            if reread {
                match api.jobs.job(id).await {
                    Ok(Some(now)) => {
                        let db = ProgressEvent::from_job(&now.job, Vec::new());
                        if db.done() > event.done() || (db.is_final() && !event.is_final()) {
                            // Events were missed: the database says what finished meanwhile.
                            let missed = api
                                .jobs
                                .finished_since(id, read_at, REREAD_RESULTS)
                                .await
                                .unwrap_or_default();
                            let mut fresh = ProgressEvent { finished: std::mem::take(&mut event.finished), ..db };
                            fresh.finished.extend(missed);
                            event = fresh;
                        }
                        read_at = now.job.updated_at;
                    }
                    Ok(None) => return,
                    Err(e) => tracing::warn!(job_id = %id, error = %e, "progress re-read failed"),
                }
            }
            let moved = event.done() > last.done() || event.is_final() != last.is_final();
            if !moved && event.finished.is_empty() {
                continue;
            }
            if event.done() < last.done() && !event.is_final() {
                // A late event from another process: keep its domains, not its older counts.
                event = ProgressEvent { finished: event.finished, ..last.clone() };
            }
            yield JobProgress::from(&event);
            last = ProgressEvent { finished: Vec::new(), ..event };
            if last.is_final() {
                return;
            }
        }
    }
}
