//! A job's progress as one subscriber sees it: the state now, then the frames of the job's
//! shared feed (see `feed`), until the final state.
//!
//! Events are signals, not truth (see [`crate::events`]): the feed re-reads the database when
//! its job is silent, and a subscriber that fell too far behind the feed re-reads the job and
//! the domains that finished since its last frame, so neither a lost message nor a slow
//! socket leaves a client waiting or holds memory for it.

use super::Jobs;
use super::feed::{ProgressFrame, REREAD_RESULTS};
use crate::auth::Caller;
use crate::error::AppResult;
use crate::model::{JobStatus, ProgressEvent};
use futures::Stream;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// Domains recorded this long before a subscriber's last frame are asked for again when it
/// catches up: a frame is built up to one coalescing window after its domains finished.
const CATCH_UP_OVERLAP: chrono::Duration = chrono::Duration::seconds(1);

/// The progress of job `id`, or `NOT_FOUND` when `caller` may not read it.
pub(super) async fn stream(
    jobs: Jobs,
    caller: &Caller,
    id: Uuid,
) -> AppResult<impl Stream<Item = Arc<ProgressFrame>> + Send + use<>> {
    // Joined before reading the snapshot, so nothing recorded in between is missed.
    let (mut frames, membership) = jobs.feeds.join(&jobs, id);
    let view = jobs.find(caller, id).await?;
    Ok(async_stream::stream! {
        let _member = membership;
        let snapshot = ProgressEvent::from(&view.job);
        let mut last = snapshot.counts_only();
        let mut seen_at = view.job.updated_at;
        let is_final = snapshot.is_final();
        yield ProgressFrame::new(snapshot);
        if is_final {
            return;
        }
        loop {
            let frame = match frames.recv().await {
                Ok(frame) => frame,
                Err(RecvError::Lagged(_)) => match catch_up(&jobs, &last, seen_at).await {
                    Some(frame) => frame,
                    None => continue,
                },
                // The feed stopped without a final event: the process is shutting down.
                Err(RecvError::Closed) => return,
            };
            let event = frame.event();
            // Frames built before our snapshot was read say nothing new.
            if event.done() < last.done() && !event.is_final() {
                continue;
            }
            last = event.counts_only();
            seen_at = frame.built_at();
            let is_final = event.is_final();
            yield frame;
            if is_final {
                return;
            }
        }
    })
}

/// A frame for one subscriber that lost its place in the feed after `last`: the job's counts
/// now and the domains that finished since `since` (its last frame), from the database.
async fn catch_up(
    jobs: &Jobs,
    last: &ProgressEvent,
    since: chrono::DateTime<chrono::Utc>,
) -> Option<Arc<ProgressFrame>> {
    let id = last.job_id;
    jobs.count_reread();
    let event = match jobs.store.job(id).await {
        Ok(Some(now)) => ProgressEvent::from(&now.job),
        Ok(None) => {
            // Deleted meanwhile: the feed's final frame may be among those lost.
            return Some(ProgressFrame::new(ProgressEvent {
                status: JobStatus::Cancelled,
                ..last.counts_only()
            }));
        }
        Err(e) => {
            tracing::warn!(job_id = %id, error = %e, "progress catch-up failed");
            return None;
        }
    };
    let mut finished = jobs
        .store
        .finished_since(id, since - CATCH_UP_OVERLAP, REREAD_RESULTS)
        .await
        .unwrap_or_default();
    for row in &mut finished {
        row.link_icon(jobs.public_url.as_deref());
    }
    // The database may lag events from another process: counts never go back.
    let counts = if event.done() < last.done() && !event.is_final() {
        last.counts_only()
    } else {
        event
    };
    Some(ProgressFrame::new(ProgressEvent { finished, ..counts }))
}
