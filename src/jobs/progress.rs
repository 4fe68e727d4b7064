//! A job's progress as a stream: the state now, then live events, until the final state.
//!
//! Events are signals, not truth (see [`crate::events`]): a subscriber that hears nothing for
//! [`IDLE_REREAD`], or falls behind the local channel, re-reads the job from the database and
//! adds the domains that finished meanwhile, so a lost message never leaves a client waiting.
//! Events that arrive within [`COALESCE`] of each other are merged into one
//! ([`ProgressEvent::merge`], the same rule the publishers use).

use super::Jobs;
use crate::auth::Caller;
use crate::error::AppResult;
use crate::events::COALESCE;
use crate::model::ProgressEvent;
use futures::Stream;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// A subscriber that heard nothing for this long re-reads the job from the database.
pub const IDLE_REREAD: Duration = Duration::from_secs(3);
/// Finished domains fetched from the database after a re-read, at most.
pub const REREAD_RESULTS: u64 = 1_000;

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
    job: Uuid,
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

/// The progress of job `id`, or `NOT_FOUND` when `caller` may not read it.
pub(super) async fn stream(
    jobs: Jobs,
    caller: &Caller,
    id: Uuid,
) -> AppResult<impl Stream<Item = ProgressEvent> + Send + use<>> {
    // Subscribe before reading the snapshot, so nothing recorded in between is missed.
    let mut rx = jobs.events.subscribe_progress();
    let view = jobs.find(caller, id).await?;
    Ok(async_stream::stream! {
        let mut last = ProgressEvent::from(&view.job);
        let mut read_at = view.job.updated_at;
        yield last.clone();
        if last.is_final() {
            return;
        }
        loop {
            let (mut event, mut reread) = match next_for_job(&mut rx, id, IDLE_REREAD).await {
                Heard::Event(event) => (event, false),
                Heard::Reread => (last.counts_only(), true),
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
                match jobs.store.job(id).await {
                    Ok(Some(now)) => {
                        let db = ProgressEvent::from(&now.job);
                        if db.done() > event.done() || (db.is_final() && !event.is_final()) {
                            // Events were missed: the database says what finished meanwhile.
                            let missed = jobs
                                .store
                                .finished_since(id, read_at, REREAD_RESULTS)
                                .await
                                .unwrap_or_default();
                            let mut fresh = ProgressEvent {
                                finished: std::mem::take(&mut event.finished),
                                ..db
                            };
                            fresh.finished.extend(missed);
                            event = fresh;
                        }
                        read_at = now.job.updated_at;
                    }
                    // Deleted: its subscribers hear a final event all the same.
                    Ok(None) => {
                        yield ProgressEvent {
                            status: crate::model::JobStatus::Cancelled,
                            ..last.counts_only()
                        };
                        return;
                    }
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
            last = event.counts_only();
            let is_final = event.is_final();
            yield event;
            if is_final {
                return;
            }
        }
    })
}
