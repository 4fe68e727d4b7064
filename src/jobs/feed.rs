//! One shared progress feed per watched job, so a job costs the same with 1 or 1,000
//! watchers.
//!
//! The first subscriber of a job starts its feed: a task that owns the job's slice of the
//! process's event channel, merges what is queued, re-reads the database after [`IDLE_REREAD`] of
//! silence (once per job, however many watch), links icons, and sends each event once, as an
//! [`Arc<ProgressFrame>`], on a bounded per-job channel of [`FEED_BUFFER`] frames. Every
//! subscriber reads the same frames; a frame is rendered once per distinct rendering (see
//! [`ProgressFrame::rendered`]). A subscriber that falls more than [`FEED_BUFFER`] frames
//! behind loses its place in the channel, not memory: it catches up from the database alone
//! (see `progress`). The feed ends with the job's final event, or when its last subscriber
//! leaves.

use super::Jobs;
use crate::model::{JobStatus, ProgressEvent};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A feed that heard nothing of its job for this long re-reads the job from the database.
pub const IDLE_REREAD: Duration = Duration::from_secs(3);
/// Finished domains read from the database at a time when a feed or a subscriber fills a
/// gap; a larger gap is read, and sent, page by page.
pub const CATCH_UP_PAGE: u64 = 1_000;
/// Frames a feed keeps for subscribers that have not read them yet; one further behind
/// catches up from the database instead (over 6 s of events at the coalescing rate).
pub const FEED_BUFFER: usize = 64;

/// One progress event of a job, shared by every subscriber of the job, with its renderings.
pub struct ProgressFrame {
    event: ProgressEvent,
    /// Each distinct rendering (e.g. one per GraphQL selection), made once, by key.
    rendered: Mutex<Vec<(Arc<str>, Slot)>>,
}

/// One rendering of a frame, filled by its first reader.
type Slot = Arc<OnceCell<Arc<str>>>;

impl ProgressFrame {
    /// A frame of `event`, built now.
    pub fn new(event: ProgressEvent) -> Arc<Self> {
        Arc::new(Self {
            event,
            rendered: Mutex::new(Vec::new()),
        })
    }

    /// The event.
    pub fn event(&self) -> &ProgressEvent {
        &self.event
    }

    /// The rendering of this frame under `key`, made by `render` for the first caller with
    /// that key and shared with the others (who wait for it); `fresh` says whether this call
    /// made it. A failed rendering is not kept.
    pub async fn rendered<E, F, Fut>(&self, key: &Arc<str>, render: F) -> Result<Rendered, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, E>>,
    {
        let cell = {
            let mut rendered = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
            match rendered.iter().find(|(k, _)| k == key) {
                Some((_, cell)) => cell.clone(),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    rendered.push((key.clone(), cell.clone()));
                    cell
                }
            }
        };
        let mut fresh = false;
        let text = cell
            .get_or_try_init(|| async {
                fresh = true;
                render().await.map(Arc::from)
            })
            .await?;
        Ok(Rendered {
            text: text.clone(),
            fresh,
        })
    }
}

/// A frame's rendering, shared.
pub struct Rendered {
    /// The rendered text.
    pub text: Arc<str>,
    /// Whether this call rendered it (for the renderings counter).
    pub fresh: bool,
}

/// The feeds of this process, by job; cheap to clone.
#[derive(Clone)]
pub(super) struct Feeds(Arc<Mutex<FeedMap>>);

impl Default for Feeds {
    fn default() -> Self {
        Self::with_buffer(FEED_BUFFER)
    }
}

struct FeedMap {
    /// Frames each feed keeps ([`FEED_BUFFER`]; fewer in tests).
    buffer: usize,
    by_job: HashMap<Uuid, FeedSlot>,
    /// Tells a feed that ended from its successor for the same job.
    generation: u64,
}

/// One watched job's feed: its frames, how many subscribers share it, and its stop switch.
struct FeedSlot {
    frames: broadcast::Sender<Arc<ProgressFrame>>,
    members: usize,
    stop: CancellationToken,
    generation: u64,
}

/// A subscriber's place in a feed; leaving (on drop) stops the feed with its last member.
pub(super) struct Membership {
    feeds: Feeds,
    job: Uuid,
    generation: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut map = self.feeds.lock();
        let Some(entry) = map.by_job.get_mut(&self.job) else {
            return;
        };
        if entry.generation != self.generation {
            return;
        }
        entry.members -= 1;
        if entry.members == 0 {
            entry.stop.cancel();
            map.by_job.remove(&self.job);
        }
    }
}

impl Feeds {
    /// No feeds yet; each will keep `buffer` frames.
    fn with_buffer(buffer: usize) -> Self {
        Self(Arc::new(Mutex::new(FeedMap {
            buffer,
            by_job: HashMap::new(),
            generation: 0,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedMap> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Jobs with a running feed (for tests and metrics).
    pub(super) fn running(&self) -> usize {
        self.lock().by_job.len()
    }

    /// Joins the feed of job `job`, starting it if none runs. Call it before reading the
    /// job's snapshot, so nothing recorded in between is missed.
    pub(super) fn join(
        &self,
        jobs: &Jobs,
        job: Uuid,
    ) -> (broadcast::Receiver<Arc<ProgressFrame>>, Membership) {
        let mut map = self.lock();
        if let Some(entry) = map.by_job.get_mut(&job) {
            entry.members += 1;
            let generation = entry.generation;
            return (entry.frames.subscribe(), self.member(job, generation));
        }
        map.generation += 1;
        let generation = map.generation;
        let (frames, receiver) = broadcast::channel(map.buffer);
        let stop = CancellationToken::new();
        // Subscribed here, under the lock, so the feed misses nothing from this moment on.
        let events = jobs.events.subscribe_progress();
        map.by_job.insert(
            job,
            FeedSlot {
                frames: frames.clone(),
                members: 1,
                stop: stop.clone(),
                generation,
            },
        );
        let feed = Feed {
            jobs: jobs.clone(),
            job,
            events,
            frames,
        };
        let feeds = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = feed.run() => {}
                () = stop.cancelled() => {}
            }
            feeds.ended(job, generation);
        });
        (receiver, self.member(job, generation))
    }

    fn member(&self, job: Uuid, generation: u64) -> Membership {
        Membership {
            feeds: self.clone(),
            job,
            generation,
        }
    }

    /// Forgets a feed that ended; its frame sender drops with it, so its subscribers read
    /// what is left and then see the channel closed.
    fn ended(&self, job: Uuid, generation: u64) {
        let mut map = self.lock();
        if map
            .by_job
            .get(&job)
            .is_some_and(|e| e.generation == generation)
        {
            map.by_job.remove(&job);
        }
    }
}

/// What a feed waits for next.
enum Wake {
    /// An event of our job.
    Event(ProgressEvent),
    /// Silence, lag or a lost channel: the database must be asked.
    Reread,
    /// The process is shutting down.
    Closed,
}

/// One job's feed task.
struct Feed {
    jobs: Jobs,
    job: Uuid,
    events: broadcast::Receiver<Arc<ProgressEvent>>,
    frames: broadcast::Sender<Arc<ProgressFrame>>,
}

impl Feed {
    async fn next(&mut self, wait: Duration) -> Wake {
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                got = self.events.recv() => match got {
                    Ok(event) if event.job_id == self.job => {
                        return Wake::Event(event.as_ref().clone());
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return Wake::Reread,
                    Err(broadcast::error::RecvError::Closed) => return Wake::Closed,
                },
                _ = &mut deadline => return Wake::Reread,
            }
        }
    }

    /// Sends one frame to every subscriber; the icon links are made absolute here, once.
    fn send(&self, mut event: ProgressEvent) {
        for row in &mut event.finished {
            row.link_icon(self.jobs.public_url.as_deref());
        }
        // No receiver left: the last member is leaving and stops the feed.
        let _ = self.frames.send(ProgressFrame::new(event));
    }

    /// The job's state now, or `None` once it is deleted; retries while the database fails.
    async fn state(&self) -> Option<ProgressEvent> {
        loop {
            match self.jobs.store.job(self.job).await {
                Ok(Some(now)) => return Some(ProgressEvent::from(&now)),
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(job_id = %self.job, error = %e, "progress feed cannot read the job");
                    tokio::time::sleep(IDLE_REREAD).await;
                }
            }
        }
    }

    async fn run(mut self) {
        let Some(mut last) = self.state().await else {
            return;
        };
        // Every domain up to here has been sent, or finished before the feed began (and so is
        // in every subscriber's snapshot or catch-up).
        let mut cursor = last.cursor;
        if last.is_final() {
            // Subscribers that read an older snapshot hear the end from here.
            self.send(last);
            return;
        }
        loop {
            let (mut event, mut reread) = match self.next(IDLE_REREAD).await {
                Wake::Event(event) => (event, false),
                Wake::Reread => (last.counts_only(), true),
                Wake::Closed => return,
            };
            // Coalesce what is already queued, without waiting for more: the publishers send a
            // job's events at most every [`crate::events::COALESCE`] each, so a second window here would only
            // add its length to every event's delay (it did: a p99 of 299 ms, commit to
            // subscriber, in the harness).
            while !event.is_final() && !reread {
                match self.events.try_recv() {
                    Ok(more) if more.job_id == self.job => event.merge(more.as_ref().clone()),
                    Ok(_) => {}
                    Err(broadcast::error::TryRecvError::Lagged(_)) => reread = true,
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Closed) => return,
                }
            }
            // Domains already sent go (a late event from another process); the rest must go on
            // from the cursor without a hole. A hole means an event is late or lost, and the
            // domains in it are committed (numbers follow commit order), so the database
            // fills it; so it does for a final event whose counts are ahead of the names.
            event
                .finished
                .retain(|done| done.seq.is_none_or(|seq| seq > cursor));
            event.finished.sort_by_key(|done| done.seq);
            let follows = (cursor + 1..).zip(event.finished.iter().filter_map(|d| d.seq));
            if follows.clone().any(|(next, seq)| seq != next)
                || (event.is_final() && event.done() > cursor + event.finished.len() as i32)
            {
                reread = true;
            }
            if reread {
                match self.fill(&mut event, &mut cursor).await {
                    Filled::Yes => {}
                    Filled::Deleted => {
                        // Its subscribers hear a final event all the same.
                        self.send(ProgressEvent {
                            status: JobStatus::Cancelled,
                            ..last.counts_only()
                        });
                        return;
                    }
                }
            } else if let Some(seq) = event.finished.iter().filter_map(|d| d.seq).next_back() {
                cursor = seq;
            }
            let moved = event.done() > last.done() || event.is_final() != last.is_final();
            if !moved && event.finished.is_empty() {
                continue;
            }
            if event.done() < last.done() && !event.is_final() {
                // A late event from another process: keep its domains, not its older counts.
                event = ProgressEvent {
                    finished: event.finished,
                    ..last.clone()
                };
            }
            event.cursor = cursor;
            last = event.counts_only();
            let is_final = event.is_final();
            self.send(event);
            if is_final {
                return;
            }
        }
    }

    /// Replaces `event`'s domains by those the database has after `cursor`, and its counts by
    /// the database's when they are further on. Every page but the last is sent at once (so a
    /// large gap is never held whole); the last stays in `event` for the caller to send.
    async fn fill(&self, event: &mut ProgressEvent, cursor: &mut i32) -> Filled {
        self.jobs.count_reread();
        let db = match self.jobs.store.job(self.job).await {
            Ok(Some(now)) => ProgressEvent::from(&now),
            Ok(None) => return Filled::Deleted,
            Err(e) => {
                tracing::warn!(job_id = %self.job, error = %e, "progress re-read failed");
                return Filled::Yes;
            }
        };
        if db.done() > event.done() || (db.is_final() && !event.is_final()) {
            *event = ProgressEvent {
                finished: std::mem::take(&mut event.finished),
                ..db
            };
        }
        // Numbers end at the job's finished count: nothing after the cursor, no query.
        if event.done() <= *cursor {
            return Filled::Yes;
        }
        // Domains of an older process carry no place; they are kept as they came. The rest
        // come again from the database, or stay as they are if it cannot be read (then each
        // subscriber sees the hole and fills it itself).
        let (numbered, unnumbered) = std::mem::take(&mut event.finished)
            .into_iter()
            .partition(|done| done.seq.is_some());
        event.finished = unnumbered;
        let mut numbered: Vec<crate::model::ResultColumns> = numbered;
        let mut tries = 0;
        loop {
            let page = match self
                .jobs
                .store
                .finished_after(self.job, *cursor, CATCH_UP_PAGE)
                .await
            {
                Ok(page) => page,
                // The end of a job is worth a few tries: after it nothing re-reads.
                Err(e) if event.is_final() && tries < FINAL_FILL_TRIES => {
                    tries += 1;
                    tracing::warn!(job_id = %self.job, error = %e, "progress re-read failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job_id = %self.job, error = %e, "progress re-read failed");
                    event.finished.append(&mut numbered);
                    return Filled::Yes;
                }
            };
            numbered.clear();
            let full = page.len() as u64 == CATCH_UP_PAGE;
            if let Some(seq) = page.last().and_then(|done| done.seq) {
                *cursor = seq;
            }
            event.finished.extend(page);
            if !full {
                return Filled::Yes;
            }
            // More to come: this page goes now, with counts that are not yet final.
            let page = ProgressEvent {
                status: JobStatus::Processing,
                finished: std::mem::take(&mut event.finished),
                cursor: *cursor,
                ..event.counts_only()
            };
            self.send(page);
        }
    }
}

/// How often a feed tries to read the last domains of a finished job before it sends the end
/// without them (each subscriber then reads them itself).
const FINAL_FILL_TRIES: u32 = 3;

/// What filling a gap from the database found.
enum Filled {
    /// The event holds what the database has (or what could be read).
    Yes,
    /// The job is gone.
    Deleted,
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
