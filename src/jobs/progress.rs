//! A job's progress as one subscriber sees it: the state now (or, resuming, every domain that
//! finished after its cursor), then the frames of the job's shared feed (see `feed`), until
//! the final state.
//!
//! Events are signals, not truth (see [`crate::events`]). Every finished domain has a place
//! in its job's order of finishing, given in the transaction that finishes it, and every event
//! carries a cursor: the place up to which the subscriber has heard of every domain. So a
//! client that reconnects with `after: cursor`, and a subscriber that fell too far behind the
//! feed, read the same thing: every domain after the cursor, from the database, page by page;
//! neither a lost message nor a slow socket nor a reconnect leaves a domain unnamed, and none
//! holds memory for it.

use super::Jobs;
use super::feed::{CATCH_UP_PAGE, ProgressFrame};
use crate::auth::Caller;
use crate::error::{AppError, AppResult, Code};
use crate::model::{JobStatus, ProgressEvent};
use futures::Stream;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// The progress of job `id`, or `NOT_FOUND` when `caller` may not read it. With `after`, the
/// stream starts with every domain that finished after that place (in pages), instead of the
/// counts alone.
pub(super) async fn stream(
    jobs: Jobs,
    caller: &Caller,
    id: Uuid,
    after: Option<i32>,
) -> AppResult<impl Stream<Item = Arc<ProgressFrame>> + Send + use<>> {
    if after.is_some_and(|cursor| cursor < 0) {
        return Err(AppError::bad_request(
            Code::InvalidInput,
            "after must be a cursor from an earlier event (0 or more)",
        ));
    }
    // Joined before reading the snapshot, so nothing recorded in between is missed.
    let (mut frames, membership) = jobs.feeds.join(&jobs, id);
    let view = jobs.job(caller, id).await?;
    Ok(async_stream::stream! {
        let _member = membership;
        let snapshot = ProgressEvent::from(&view);
        let mut last = snapshot.counts_only();
        let mut cursor = snapshot.cursor;
        let mut catch_up = false;
        if let Some(after) = after {
            cursor = after;
            catch_up = true;
        } else {
            yield ProgressFrame::new(snapshot);
        }
        loop {
            if catch_up {
                catch_up = false;
                // Every domain after our cursor, from the database: the one path for a client
                // that resumes and for a subscriber that lost its place in the feed.
                for await frame in pages(jobs.clone(), last.clone(), cursor) {
                    let event = frame.event();
                    cursor = event.cursor;
                    last = event.counts_only();
                    // Only the last page says the job's final status: all is told.
                    let is_final = event.is_final();
                    yield frame;
                    if is_final {
                        return;
                    }
                }
            }
            if last.is_final() && cursor >= last.done() {
                return;
            }
            let frame = match frames.recv().await {
                Ok(frame) => frame,
                Err(RecvError::Lagged(_)) => {
                    catch_up = true;
                    continue;
                }
                // The feed stopped without a final event: the process is shutting down, or the
                // job was deleted before the feed first read it, which sends nothing; a
                // subscriber that has its snapshot hears the end all the same.
                Err(RecvError::Closed) => {
                    if let Ok(None) = jobs.store.job(id).await {
                        yield ProgressFrame::new(ProgressEvent {
                            status: JobStatus::Cancelled,
                            cursor,
                            ..last.clone()
                        });
                    }
                    return;
                }
            };
            let event = frame.event();
            let first = event.finished.iter().find_map(|done| done.seq);
            if first.map_or(event.cursor > cursor, |seq| seq > cursor + 1) {
                // The feed is past our place with nothing in this frame to bridge the gap (it
                // started after our snapshot, or this is a final count): what lies between
                // comes from the database, this frame included.
                catch_up = true;
                continue;
            }
            // Frames from before our snapshot or catch-up say nothing new.
            if !event.is_final() && event.cursor <= cursor && event.done() <= last.done() {
                continue;
            }
            let is_final = event.is_final();
            cursor = cursor.max(event.cursor);
            if event.done() < last.done() && !is_final {
                // Read before counts we have already shown: its domains, with our counts.
                let frame = ProgressFrame::new(ProgressEvent {
                    finished: event.finished.clone(),
                    cursor,
                    ..last.clone()
                });
                yield frame;
                continue;
            }
            last = event.counts_only();
            yield frame;
            if is_final {
                return;
            }
        }
    })
}

/// Every domain of `last`'s job that finished after `cursor`, as frames of at most
/// [`CATCH_UP_PAGE`] domains with the job's counts; at least one frame, unless the database
/// cannot be read (then the feed's next frame or re-read brings the subscriber on).
fn pages(
    jobs: Jobs,
    mut last: ProgressEvent,
    mut cursor: i32,
) -> impl Stream<Item = Arc<ProgressFrame>> + Send {
    async_stream::stream! {
        while let Some(page) = next_page(&jobs, &mut last, &mut cursor).await {
            let more = page.more;
            yield page.frame;
            if !more {
                break;
            }
        }
    }
}

/// One page of a catch-up, and whether more follow.
struct CatchUpPage {
    frame: Arc<ProgressFrame>,
    more: bool,
}

/// The next page of domains finished after `cursor`, with the job's counts (which never go
/// back from `last`); moves both on. A page that is not the last says `PROCESSING`, so a
/// client that stops at a final status reads every page. `None` when the database cannot be
/// read (the feed's next frame or re-read brings the subscriber on).
async fn next_page(jobs: &Jobs, last: &mut ProgressEvent, cursor: &mut i32) -> Option<CatchUpPage> {
    let id = last.job_id;
    jobs.count_reread();
    let counts = match jobs.store.job(id).await {
        Ok(Some(now)) => ProgressEvent::from(&now),
        // Deleted meanwhile: the feed's final frame may be among those lost.
        Ok(None) => {
            *last = ProgressEvent {
                status: JobStatus::Cancelled,
                ..last.counts_only()
            };
            return Some(CatchUpPage {
                frame: ProgressFrame::new(ProgressEvent {
                    cursor: *cursor,
                    ..last.clone()
                }),
                more: false,
            });
        }
        Err(e) => {
            tracing::warn!(job_id = %id, error = %e, "progress catch-up failed");
            return None;
        }
    };
    let finished = match jobs.store.finished_after(id, *cursor, CATCH_UP_PAGE).await {
        Ok(finished) => finished,
        Err(e) => {
            tracing::warn!(job_id = %id, error = %e, "progress catch-up failed");
            return None;
        }
    };
    let more = finished.len() as u64 == CATCH_UP_PAGE;
    if let Some(seq) = finished.last().and_then(|done| done.seq) {
        *cursor = seq;
    }
    // The database may lag events from another process: counts never go back.
    if counts.done() >= last.done() || counts.is_final() {
        *last = counts.counts_only();
    }
    let mut event = ProgressEvent {
        finished,
        cursor: *cursor,
        ..last.clone()
    };
    for row in &mut event.finished {
        row.link_icon(jobs.public_url.as_deref());
    }
    if more {
        event.status = JobStatus::Processing;
    }
    Some(CatchUpPage {
        frame: ProgressFrame::new(event),
        more,
    })
}
