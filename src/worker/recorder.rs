//! The recorder: writes finished rows in batches, retrying while the database is down, and
//! publishes the progress each write made; and its health, which `/healthz` reads.

use super::db_backoff;
use crate::events::{Events, ProgressEvent};
use crate::metrics::Metrics;
use crate::store::{Claimed, Disposition, Recorded, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Outcomes written per transaction at most.
const RECORD_BATCH: usize = 256;
/// How long the recorder waits to fill a batch before writing what it has.
const RECORD_LINGER: Duration = Duration::from_millis(20);

/// Whether the recorder keeps up: finished outcomes waiting to be written, and since when it
/// has made no progress. `/healthz` reads it, so a worker whose writes are stuck (a database
/// refusing them, a lock held forever) is taken out of service instead of looking fine.
#[derive(Debug)]
pub struct RecorderHealth {
    /// Longer than this without progress while outcomes wait is a stall: the rows' leases
    /// are running out, so other workers will soon redo them.
    lease: Duration,
    /// Outcomes found and not yet written.
    waiting: AtomicU64,
    /// Milliseconds after `epoch` of the last write, or of the hand-over that ended an idle
    /// spell (waiting for nothing is no stall).
    since_ms: AtomicU64,
    /// The clock's origin.
    epoch: std::time::Instant,
}

impl RecorderHealth {
    /// A recorder that has nothing waiting.
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            waiting: AtomicU64::new(0),
            since_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// An outcome is ready to be written.
    pub(super) fn handed_over(&self) {
        if self.waiting.fetch_add(1, Ordering::AcqRel) == 0 {
            self.since_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    /// A write of `rows` outcomes ended.
    pub(super) fn wrote(&self, rows: usize) {
        self.since_ms.store(self.now_ms(), Ordering::Release);
        self.waiting.fetch_sub(rows as u64, Ordering::AcqRel);
    }

    /// `Some(why)` when outcomes have waited longer than a lease with no write succeeding.
    pub fn stalled(&self) -> Option<String> {
        let waiting = self.waiting.load(Ordering::Acquire);
        if waiting == 0 {
            return None;
        }
        let idle = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.since_ms.load(Ordering::Acquire)),
        );
        (idle > self.lease).then(|| {
            format!(
                "the recorder has written nothing for {} s while {waiting} finished domains wait (lease {} s)",
                idle.as_secs(),
                self.lease.as_secs()
            )
        })
    }
}

/// Writes outcomes in batches and publishes the resulting progress; counts in `finished` the
/// rows its writes finished.
pub(super) async fn record_loop(
    store: Store,
    events: Events,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<(Claimed, Disposition)>,
    finished: Arc<AtomicU64>,
    health: Arc<RecorderHealth>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    loop {
        let Some(first) = rx.recv().await else { break };
        batch.push(first);
        let linger = tokio::time::sleep(RECORD_LINGER);
        tokio::pin!(linger);
        while batch.len() < RECORD_BATCH {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(item) => batch.push(item),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        metrics.record_batch.observe(batch.len() as f64);
        let transaction = sentry::start_transaction(sentry::TransactionContext::new(
            "record batch",
            "worker.record_batch",
        ));
        transaction.set_tag("batch_size", batch.len());
        let mut jobs: Vec<_> = batch.iter().map(|(c, _)| c.job_id).collect();
        jobs.dedup();
        if let [job] = jobs.as_slice() {
            transaction.set_tag("job_id", job);
        }
        let rows = batch.len();
        let span = tracing::debug_span!("worker.record_batch", rows);
        crate::telemetry::link_traces(&span, batch.iter().map(|(c, _)| c.trace_context.as_deref()));
        let n = tracing::Instrument::instrument(
            write_batch(&store, &events, &metrics, &mut batch),
            span,
        )
        .await;
        health.wrote(rows);
        finished.fetch_add(n, Ordering::Relaxed);
        transaction.finish();
    }
}

/// Records one batch, retrying while the database is down: outcomes are never dropped here.
/// If our leases expire meanwhile, the guarded write simply changes nothing. A row the
/// database refuses for good is not retried: the store records it as failed and writes the
/// rest (see [`Store::record`]). Returns how many rows the write finished.
pub(super) async fn write_batch(
    store: &Store,
    events: &Events,
    metrics: &Metrics,
    batch: &mut Vec<(Claimed, Disposition)>,
) -> u64 {
    let mut failures = 0u32;
    let mut finished = 0;
    loop {
        let mut recorded = Recorded::default();
        let result = store.record_into(batch.clone(), &mut recorded).await;
        // Published whether or not the write ended in an error: parts that committed before
        // it are not counted again by the retry, so this is their only chance.
        metrics
            .record_failures
            .with_label_values(&["permanent"])
            .inc_by(recorded.refused.len() as u64);
        finished += recorded
            .updates
            .iter()
            .map(|u| u.finished.len() as u64)
            .sum::<u64>();
        for update in recorded.updates {
            if update.job.status.is_final() {
                let job = &update.job;
                tracing::info_span!("job", job_id = %job.id).in_scope(|| {
                    tracing::info!(
                        status = job.status.as_str(),
                        total = job.total,
                        completed = job.completed,
                        failed = job.failed,
                        "job finished"
                    )
                });
            }
            events.publish_progress(ProgressEvent::from(update));
        }
        match result {
            Ok(()) => {
                batch.clear();
                return finished;
            }
            Err(err) => {
                metrics.database_errors.inc();
                metrics
                    .record_failures
                    .with_label_values(&["transient"])
                    .inc();
                failures += 1;
                let wait = db_backoff(failures);
                tracing::warn!(error = %err, rows = batch.len(), retry_in = ?wait, "recording failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
