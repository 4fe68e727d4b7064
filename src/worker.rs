//! The worker pool: claim → find → record → publish, with leases, retries and panics contained.
//!
//! Delivery is at-least-once for fetching and exactly-once for recording (see `store`): a row
//! may be fetched twice if a lease expires mid-fetch, but only the holder of the current lease
//! can record it. The pool never claims more rows than it has free slots, a heartbeat extends
//! the leases of rows in flight, and on shutdown the pool stops claiming, lets in-flight rows
//! finish within the grace period and releases the rest so any worker can take them at once.
//! A stop never waits on a database that is down: what it cannot write keeps its lease, which
//! expires, and the rows are fetched again.
//!
//! The pool is a loop over [`Running::step`], which hands finished rows to the recorder, claims
//! a row for every free slot and says what it did ([`Outcome`]). Slots that free while rows
//! are still in flight are gathered for a few milliseconds ([`CLAIM_GAP`]), so a busy pool
//! claims for several at once rather than once per finished row. [`WorkerPool::run`] waits
//! between steps for a free slot, a wake-up or the poll; [`WorkerPool::drain`] steps until
//! nothing is due and every outcome is written, so tests need no sleeps. The recorder
//! (`recorder`) writes outcomes in batches and reports its health to `/healthz`; `find` runs
//! one claimed row; `fair` shares each claim's free slots between clients and their jobs
//! (the rule is [`crate::model::fair`]), one job never holding more than
//! [`WorkerSettings::max_share_per_job`] of the slots.

mod fair;
mod find;
mod recorder;

pub use recorder::RecorderHealth;

/// `/healthz` asks the recorder through the shared vocabulary, knowing no worker types.
impl crate::model::Liveness for RecorderHealth {
    fn stalled(&self) -> Option<String> {
        RecorderHealth::stalled(self)
    }
}
use fair::Roster;
use find::find_one;
#[cfg(test)]
use find::guarded;
use recorder::record_loop;

use crate::events::{Events, ProgressEvent};
use crate::finder::{ErrorCategory, FindError, Finder};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::{Claimed, Disposition, Store};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The longest retry delay, whatever the try count or `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// The longest wait between attempts to reach a database that is down: it is the only truth,
/// so once it is back the pool should notice within seconds, not after a site-sized backoff.
const MAX_DB_BACKOFF: Duration = Duration::from_secs(10);
/// The least time a stopping pool gives its last writes (outcomes, releases), even when the
/// grace period is already spent: plenty for a healthy database, short enough that one that is
/// down cannot hold the process.
const FINAL_WRITES: Duration = Duration::from_secs(1);
/// How long a freed slot waits for others before the pool claims: the rows that finish
/// meanwhile share one claim statement (one write transaction) instead of paying one each.
/// Short next to a find, so the queue's latency does not notice it.
const CLAIM_GAP: Duration = Duration::from_millis(5);

/// The knobs of a worker pool.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Domains in flight at once.
    pub concurrency: usize,
    /// The fraction of `concurrency` one job may hold (at least one slot).
    pub max_share_per_job: f64,
    /// Lease length; the heartbeat renews it every third of it.
    pub lease: Duration,
    /// How often an idle pool looks for work without a wake-up.
    pub poll: Duration,
    /// Tries before a transient failure is final.
    pub max_tries: u32,
    /// First retry delay; doubled per try, with jitter.
    pub backoff: Duration,
    /// A backstop over the finder's own deadline.
    pub find_timeout: Duration,
    /// How long a stopping pool lets in-flight rows finish.
    pub shutdown_grace: Duration,
}

/// What one [`Running::step`] did.
#[derive(Debug)]
pub enum Outcome {
    /// Every slot is busy: nothing was claimed.
    Full,
    /// Claimed this many rows, one for every free slot: the queue may hold more.
    Claimed(usize),
    /// Claimed this many rows (maybe none), fewer than there were free slots: nothing more is
    /// due now, so the next claim can wait for a wake-up or the poll.
    EmptyQueue(usize),
    /// The claim failed (the database is down or refused it): wait `retry_in` before the next
    /// step, so a database that is down is not hammered.
    ClaimFailed {
        /// Why the claim failed.
        error: StoreError,
        /// How long to wait before claiming again.
        retry_in: Duration,
    },
}

/// A pool of concurrent finders fed from the database queue.
pub struct WorkerPool {
    store: Store,
    finder: Arc<Finder>,
    events: Events,
    metrics: Arc<Metrics>,
    settings: WorkerSettings,
    owner: Uuid,
    health: Arc<RecorderHealth>,
}

impl WorkerPool {
    /// A pool with a fresh lease-owner id for this process.
    pub fn new(
        store: Store,
        finder: Arc<Finder>,
        events: Events,
        metrics: Arc<Metrics>,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            store,
            finder,
            events,
            metrics,
            health: Arc::new(RecorderHealth::new(settings.lease)),
            settings,
            owner: Uuid::new_v4(),
        }
    }

    /// How this pool's recorder is doing, for `/healthz`.
    pub fn health(&self) -> Arc<RecorderHealth> {
        self.health.clone()
    }

    /// Starts the pool's recorder and heartbeat, with no row in flight yet; drive it with
    /// [`Running::step`] and end it with [`Running::stop`].
    pub fn start(&self) -> Running<'_> {
        self.start_until(CancellationToken::new())
    }

    /// [`WorkerPool::start`] for a pool that stops when `shutdown` is cancelled: from then on a
    /// step no longer waits for the recorder to take an outcome.
    fn start_until(&self, shutdown: CancellationToken) -> Running<'_> {
        let (record_tx, record_rx) =
            mpsc::channel::<(Claimed, Disposition)>(self.settings.concurrency.max(1) * 2);
        let finished = Arc::new(AtomicU64::new(0));
        let recorder = tokio::spawn(record_loop(
            self.store.clone(),
            self.events.clone(),
            self.metrics.clone(),
            record_rx,
            finished.clone(),
            self.health.clone(),
        ));
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.store.clone(),
            self.events.clone(),
            self.owner,
            self.settings.clone(),
            heartbeat_stop.clone(),
        ));
        Running {
            pool: self,
            in_flight: JoinSet::new(),
            claims: HashMap::new(),
            record_tx,
            recorder,
            heartbeat,
            heartbeat_stop,
            finished,
            roster: Roster::new(self.events.clone()),
            db_failures: 0,
            free_since: None,
            shutdown,
        }
    }

    /// Runs until `shutdown` is cancelled, then drains within the grace period.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, concurrency = self.settings.concurrency, "worker pool started");
        let mut running = self.start_until(shutdown.clone());
        while !shutdown.is_cancelled() {
            // Full: only a finished row frees a slot, but a wake-up costs one cheap step.
            let queue_drained = match running.step().await {
                Outcome::Claimed(_) => false,
                Outcome::Full | Outcome::EmptyQueue(_) => true,
                Outcome::ClaimFailed { retry_in, .. } => {
                    tokio::select! {
                        _ = tokio::time::sleep(retry_in) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            tokio::select! {
                // Joining is cancel-safe; handing over is not, so it happens in the branch.
                done = running.in_flight.join_next_with_id(), if !running.in_flight.is_empty() => {
                    if let Some(done) = done {
                        running.forward(done, None).await;
                    }
                }
                _ = self.events.work_available(), if queue_drained => running.roster.mark_stale(),
                _ = tokio::time::sleep(self.settings.poll), if queue_drained => {}
                _ = shutdown.cancelled() => {}
            }
        }
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_grace;
        let finished = running.stop(Some(deadline)).await;
        // How many rows this pool finished (the ones its guarded writes changed): an operator's
        // view of each process's share, and what the fault tests add up across processes.
        tracing::info!(owner = %self.owner, finished, "worker pool stopped");
    }

    /// Works the queue until nothing is due and every outcome is written, then returns how
    /// many rows this drain finished: what tests use instead of waiting for a running pool.
    ///
    /// Rows put back for a later retry are not waited for. A failed claim ends the drain
    /// after the rows already in flight are recorded, with the claim's error.
    pub async fn drain(&self) -> Result<u64, StoreError> {
        let mut running = self.start();
        let mut failed = None;
        loop {
            if let Outcome::ClaimFailed { error, .. } = running.step().await {
                failed = Some(error);
            }
            if failed.is_some() || running.in_flight.is_empty() {
                break;
            }
            running.finish_one().await;
        }
        let finished = running.stop(None).await;
        failed.map_or(Ok(finished), Err)
    }
}

/// A started [`WorkerPool`]: the rows in flight, and the tasks that record their outcomes and
/// keep their leases.
pub struct Running<'a> {
    /// The pool's parts and settings.
    pool: &'a WorkerPool,
    /// One task per claimed row.
    in_flight: JoinSet<(Claimed, Disposition)>,
    /// The claim of each task in flight: what to release, or to fail, if the task cannot
    /// say itself.
    claims: HashMap<tokio::task::Id, Claimed>,
    /// To the recorder; dropping it lets the recorder write what it has and end.
    record_tx: mpsc::Sender<(Claimed, Disposition)>,
    /// Writes outcomes in batches.
    recorder: JoinHandle<()>,
    /// Renews the leases of the rows in flight.
    heartbeat: JoinHandle<()>,
    /// Ends the heartbeat.
    heartbeat_stop: CancellationToken,
    /// Rows the recorder's writes finished.
    finished: Arc<AtomicU64>,
    /// The jobs this pool shares its slots between.
    roster: Roster,
    /// Claims failed in a row, for the backoff.
    db_failures: u32,
    /// When a slot was first seen free since the last claim: the claim waits for others
    /// until [`CLAIM_GAP`] after it.
    free_since: Option<tokio::time::Instant>,
    /// Cancelled when the pool is to stop: a hand-over to a recorder that takes nothing
    /// more then gives up instead of holding the stop.
    shutdown: CancellationToken,
}

impl Running<'_> {
    /// Hands rows that have finished to the recorder, gathering the slots that free within
    /// [`CLAIM_GAP`] of the first, then claims a row for every free slot in one statement and
    /// starts finding them.
    pub async fn step(&mut self) -> Outcome {
        self.gather().await;
        let pool = self.pool;
        let settings = &pool.settings;
        let free = settings.concurrency.saturating_sub(self.in_flight.len());
        if free == 0 {
            return Outcome::Full;
        }
        self.free_since = None;
        let span = tracing::debug_span!("worker.claim", free, claimed = tracing::field::Empty);
        let claim = self.roster.claim(pool, free, self.claims.values());
        let batch = match tracing::Instrument::instrument(claim, span.clone()).await {
            Ok(batch) => batch,
            Err(error) => {
                pool.metrics.database_errors.inc();
                self.db_failures += 1;
                let retry_in = db_backoff(self.db_failures);
                tracing::warn!(error = %error, retry_in = ?retry_in, "claim failed; backing off");
                return Outcome::ClaimFailed { error, retry_in };
            }
        };
        self.db_failures = 0;
        let claimed = batch.len();
        span.record("claimed", claimed);
        crate::telemetry::link_traces(&span, batch.iter().map(|c| c.trace_context.as_deref()));
        if claimed > 0 {
            pool.metrics.claim_batch.observe(claimed as f64);
        }
        for claim in batch {
            let handle = self.in_flight.spawn(find_one(
                pool.finder.clone(),
                claim.clone(),
                settings.clone(),
                pool.metrics.clone(),
                pool.health.clone(),
            ));
            self.claims.insert(handle.id(), claim);
        }
        if claimed < free {
            Outcome::EmptyQueue(claimed)
        } else {
            Outcome::Claimed(claimed)
        }
    }

    /// Hands finished rows to the recorder; while a slot is free and rows are still in
    /// flight, keeps doing so until [`CLAIM_GAP`] after the first free slot was seen, so the
    /// next claim takes every slot freed meanwhile. An idle pool (nothing in flight) and a
    /// stopping one do not wait: no row can free a slot, or nothing more is to be claimed.
    async fn gather(&mut self) {
        while let Some(done) = self.in_flight.try_join_next_with_id() {
            self.forward(done, None).await;
        }
        let concurrency = self.pool.settings.concurrency;
        if self.in_flight.is_empty() || self.in_flight.len() >= concurrency {
            return;
        }
        let due = *self
            .free_since
            .get_or_insert_with(tokio::time::Instant::now)
            + CLAIM_GAP;
        while !self.in_flight.is_empty() && self.in_flight.len() < concurrency {
            tokio::select! {
                // Joining is cancel-safe; handing over is not, so it happens in the branch.
                done = self.in_flight.join_next_with_id() => {
                    if let Some(done) = done {
                        self.forward(done, None).await;
                    }
                }
                _ = tokio::time::sleep_until(due) => break,
                _ = self.shutdown.cancelled() => break,
            }
        }
    }

    /// Waits for the next row in flight to finish and hands it to the recorder; `false` when
    /// nothing was in flight. Not cancel-safe: a row whose outcome is dropped midway is redone
    /// only once this pool has stopped and the row's lease has run out.
    pub async fn finish_one(&mut self) -> bool {
        match self.in_flight.join_next_with_id().await {
            Some(done) => {
                self.forward(done, None).await;
                true
            }
            None => false,
        }
    }

    /// Rows claimed and not yet handed to the recorder.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Stops: lets rows in flight finish (until `deadline`, or all of them with `None`),
    /// releases the rest, and waits for their outcomes to be written. Returns how many rows
    /// the pool's writes finished.
    pub async fn stop(mut self, deadline: Option<tokio::time::Instant>) -> u64 {
        while let Some(done) = until(deadline, self.in_flight.join_next_with_id())
            .await
            .flatten()
        {
            self.forward(done, deadline).await;
        }
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        let unfinished: Vec<Claimed> = self.claims.into_values().collect();
        drop(self.record_tx);
        // The last writes get what is left of the grace period, and at least FINAL_WRITES. They
        // must not wait for a database that is down (the recorder retries for as long as it
        // runs): what is not written keeps its lease, which expires, and any worker fetches those
        // rows again, so giving up loses nothing.
        let writes_by = deadline.map(|d| d.max(tokio::time::Instant::now() + FINAL_WRITES));
        let mut recorder = self.recorder;
        match until(writes_by, &mut recorder).await {
            Some(Ok(())) => {}
            Some(Err(err)) => tracing::error!(error = %err, "recorder task failed"),
            None => {
                recorder.abort();
                tracing::warn!(
                    "could not record every outcome before stopping; their leases will expire and other workers will redo them"
                );
            }
        }
        if !unfinished.is_empty() {
            match until(writes_by, self.pool.store.release(&unfinished)).await {
                Some(Ok(n)) => tracing::info!(released = n, "released unfinished rows"),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "could not release rows; their leases will expire")
                }
                None => tracing::warn!(
                    rows = unfinished.len(),
                    "could not release rows in time; their leases will expire"
                ),
            }
        }
        self.heartbeat_stop.cancel();
        let mut heartbeat = self.heartbeat;
        if until(writes_by, &mut heartbeat).await.is_none() {
            heartbeat.abort();
        }
        self.finished.load(Ordering::Relaxed)
    }

    /// Sends a finished task's outcome to the recorder and forgets its claim.
    ///
    /// The recorder's queue is bounded, and a recorder retrying a database that refuses its
    /// writes takes nothing more: so the wait for room ends at `deadline`, or without one when
    /// the pool is told to stop. An outcome not handed over keeps its claim, which the stop
    /// releases.
    async fn forward(
        &mut self,
        done: Result<(tokio::task::Id, (Claimed, Disposition)), tokio::task::JoinError>,
        deadline: Option<tokio::time::Instant>,
    ) {
        let (id, item) = match done {
            Ok((id, item)) => (id, item),
            // `find_one` catches panics itself; a task still failing here was aborted or broke
            // in a way we cannot attribute, so count it as a failed try of its row.
            Err(err) => {
                let Some(claim) = self.claims.get(&err.id()).cloned() else {
                    return;
                };
                self.pool.health.handed_over();
                let retry = (claim.tries as u32) < self.pool.settings.max_tries;
                let message = format!("worker task failed: {err}");
                let disposition = if retry {
                    Disposition::Retry {
                        run_at: crate::store::now(),
                        category: ErrorCategory::Internal,
                        message,
                    }
                } else {
                    Disposition::Finish(Err(FindError::new(ErrorCategory::Internal, message)))
                };
                (err.id(), (claim, disposition))
            }
        };
        let give_up = {
            let shutdown = self.shutdown.clone();
            async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => shutdown.cancelled_owned().await,
                }
            }
        };
        tokio::select! {
            // Room in the queue wins over a stop that is due at the same moment.
            biased;
            // Fails only once the recorder has ended, which happens after the last send.
            _ = self.record_tx.send(item) => {
                self.claims.remove(&id);
            }
            _ = give_up => {
                tracing::warn!("the recorder took no more outcomes before the stop; giving the row back");
            }
        }
    }
}

/// Awaits `work` until `deadline` (forever with `None`); `None` if the deadline came first.
async fn until<F: Future>(deadline: Option<tokio::time::Instant>, work: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
        None => Some(work.await),
    }
}

/// Renews leases of in-flight rows and finishes rows abandoned by dead workers.
async fn heartbeat_loop(
    store: Store,
    events: Events,
    owner: Uuid,
    settings: WorkerSettings,
    stop: CancellationToken,
) {
    let every = (settings.lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(err) = store.heartbeat(owner, settings.lease).await {
            tracing::warn!(error = %err, "heartbeat failed");
        }
        match store.reap_exhausted(settings.max_tries).await {
            Ok(updates) => {
                for update in updates {
                    for finished in &update.finished {
                        sentry::with_scope(
                            |scope| {
                                scope.set_tag("job_id", update.job.id);
                                scope.set_tag("domain", &finished.domain);
                            },
                            || {
                                tracing::error!(
                                    job_id = %update.job.id,
                                    domain = %finished.domain,
                                    "gave up on a domain: every try ended with its worker gone or past its lease"
                                )
                            },
                        );
                    }
                    events.publish_progress(ProgressEvent::from(update));
                }
            }
            Err(err) => tracing::warn!(error = %err, "reaping exhausted rows failed"),
        }
        if let Err(err) = store.reap_cancelled().await {
            tracing::warn!(error = %err, "finishing the rows of cancelled jobs failed");
        }
    }
}

/// Exponential backoff with jitter: `base · 2^(attempt-1)`, times a factor in [0.5, 1.5),
/// capped at `MAX_BACKOFF` (ten minutes).
pub fn backoff(attempt: u32, base: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let jitter = rand::rng().random_range(0.5..1.5);
    exp.mul_f64(jitter).min(MAX_BACKOFF)
}

/// The wait before retrying a failed database call: exponential from 200 ms with jitter,
/// capped at [`MAX_DB_BACKOFF`].
fn db_backoff(attempt: u32) -> Duration {
    backoff(attempt, Duration::from_millis(200)).min(MAX_DB_BACKOFF)
}

#[cfg(test)]
mod tests;
