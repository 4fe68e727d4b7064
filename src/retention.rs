//! The retention task: every `RETENTION_INTERVAL_SECS`, on one process of a fleet at a time,
//! purge finished jobs older than `RETENTION_DAYS` (and finish deletions a process left
//! half-way), drop per-domain cache rows too old to reuse, collect icon blobs nothing points
//! at, and give the space back (SQLite).
//!
//! Every step works in small batches of its own transactions (`store::lifecycle` states the
//! guarantees), so the workers recording at the same time wait at most one batch. The lease
//! is a database row (`maintenance_lease`), so it holds across processes on PostgreSQL and on
//! a shared SQLite file alike; a process that dies lets it run out.

use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::{Purged, Store, now};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The lease's name in `maintenance_lease`.
const LEASE: &str = "retention";
/// Jobs read per query while purging.
const JOBS_PER_QUERY: u64 = 100;
/// The longest stopping waits to hand the lease back.
const RELEASE_WAIT: Duration = Duration::from_secs(1);
/// A deletion marked this long ago and not finished was left by a process that stopped; a
/// younger one may still be running in its request.
const ABANDONED_DELETE: Duration = Duration::from_secs(300);
/// How long a blob stays marked unreferenced before it is deleted. Far longer than any
/// transaction that could still add a reference it read before the mark (creating a job is
/// seconds), so the sweep never leaves a result pointing at nothing.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3_600);

/// What the retention task does, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct RetentionSettings {
    /// Finished jobs older than this are purged; `None` keeps every job.
    pub max_age: Option<Duration>,
    /// How often a pass runs.
    pub interval: Duration,
    /// Result rows (and cache rows, and blobs) per transaction.
    pub batch_rows: usize,
    /// `CACHE_MAX_AGE_SECS`: a purged job's rows younger than this stay in the cache.
    pub cache_max_age: Duration,
    /// `WATCH_CHECK_RETENTION_HOURS`: a watch's finished checks older than this are purged.
    pub check_max_age: Duration,
    /// `WATCH_HISTORY_DAYS`: icon changes older than this are deleted.
    pub history_max_age: Duration,
}

/// What one pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Jobs and results purged, and the longest transaction doing it.
    pub purged: Purged,
    /// Per-domain cache rows too old to reuse, deleted.
    pub cache_rows: u64,
    /// Icon blobs deleted.
    pub icon_blobs: u64,
    /// Finished webhook deliveries older than the retention age, deleted with their attempts.
    pub webhook_deliveries: u64,
    /// Icon changes older than `WATCH_HISTORY_DAYS`, deleted.
    pub icon_changes: u64,
    /// Deleted watches' rows (their domains, then the watch), deleted.
    pub watch_rows: u64,
}

/// The retention task of one process.
pub struct Retention {
    store: Store,
    settings: RetentionSettings,
    metrics: Arc<Metrics>,
    /// This process's name on the lease.
    owner: Uuid,
}

impl Retention {
    /// The task over this database, reporting to `metrics`.
    pub fn new(store: Store, settings: RetentionSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            settings,
            metrics,
            owner: Uuid::now_v7(),
        }
    }

    /// Runs a pass every interval while this process holds the lease, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.settings.interval) => {}
            }
            // A pass in progress is abandoned at shutdown: each batch is its own transaction,
            // so what committed stays and the rest is done by the next pass, here or elsewhere.
            let pass = tokio::select! {
                () = shutdown.cancelled() => break,
                pass = self.pass_if_leased() => pass,
            };
            match pass {
                Ok(Some(pass)) if pass != Pass::default() => tracing::info!(
                    jobs = pass.purged.jobs,
                    results = pass.purged.results,
                    kept_for_cache = pass.purged.kept_for_cache,
                    cache_rows = pass.cache_rows,
                    icon_blobs = pass.icon_blobs,
                    webhook_deliveries = pass.webhook_deliveries,
                    longest_ms = pass.purged.longest.as_millis() as u64,
                    "retention pass purged data"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; trying again next interval")
                }
            }
        }
        // With the database down, releasing would wait for a connection; the lease runs out
        // by itself, so stopping never waits longer than this for it.
        match tokio::time::timeout(RELEASE_WAIT, self.store.release_lease(LEASE, self.owner)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not release the retention lease; it runs out")
            }
            Err(_) => tracing::debug!("releasing the retention lease timed out; it runs out"),
        }
    }

    /// A pass, if this process holds (or can take) the lease; `None` when another does.
    pub async fn pass_if_leased(&self) -> Result<Option<Pass>, StoreError> {
        if !self.renew().await? {
            return Ok(None);
        }
        self.pass().await.map(Some)
    }

    /// Takes or extends the lease: long enough to outlast the next interval, so the holder
    /// keeps it from pass to pass and the others only take over when it stops.
    async fn renew(&self) -> Result<bool, StoreError> {
        let hold = self.settings.interval * 2 + Duration::from_secs(60);
        let until = now() + chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::MAX);
        self.store.take_lease(LEASE, self.owner, until).await
    }

    /// One pass: jobs, old cache rows, unreferenced blobs, then the space.
    pub async fn pass(&self) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        let at = now();
        let ago = |d: Duration| at - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let finished_before = self.settings.max_age.map(ago);
        let keep_since =
            (!self.settings.cache_max_age.is_zero()).then(|| ago(self.settings.cache_max_age));
        let batch = self.settings.batch_rows;
        loop {
            let ids = self
                .store
                .jobs_to_purge(
                    finished_before,
                    ago(self.settings.check_max_age),
                    ago(ABANDONED_DELETE),
                    JOBS_PER_QUERY,
                )
                .await?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                // Another process may have taken over if this one stalled.
                if !self.renew().await? {
                    return Ok(pass);
                }
                let purged = self.store.purge_job(id, batch, keep_since).await?;
                tracing::info!(
                    job_id = %id,
                    results = purged.results,
                    kept_for_cache = purged.kept_for_cache,
                    longest_ms = purged.longest.as_millis() as u64,
                    "purged a job past retention"
                );
                self.count("jobs", purged.jobs);
                self.count("results", purged.results);
                pass.purged.add(purged);
            }
            self.metrics
                .purge_longest_transaction
                .set(pass.purged.longest.as_secs_f64());
        }
        let cache_before = ago(self.settings.cache_max_age);
        loop {
            let n = self
                .store
                .prune_domain_cache(cache_before, batch as u64)
                .await?;
            pass.cache_rows += n;
            self.count("cache_rows", n);
            if n < batch as u64 {
                break;
            }
        }
        let mut after = String::new();
        while let Some(last) = self.store.mark_orphan_blobs(&after, batch as u64).await? {
            after = last;
        }
        loop {
            let n = self
                .store
                .sweep_orphan_blobs(ago(ORPHAN_GRACE), batch as u64)
                .await?;
            pass.icon_blobs += n;
            self.count("icon_blobs", n);
            if n < batch as u64 {
                break;
            }
        }
        // Webhook deliveries follow the jobs' age: the history of an event is kept as long as
        // the job it reports.
        while let Some(before) = finished_before {
            let n = self
                .store
                .prune_webhook_deliveries(before, batch as u64)
                .await?;
            pass.webhook_deliveries += n;
            self.count("webhook_deliveries", n);
            if n < batch as u64 {
                break;
            }
        }
        // A watch's history is kept for its own limit, and deleted watches' rows go in
        // batches like a deleted job's.
        loop {
            let n = self
                .store
                .prune_icon_changes(ago(self.settings.history_max_age), batch as u64)
                .await?;
            pass.icon_changes += n;
            self.count("icon_changes", n);
            if n < batch as u64 {
                break;
            }
        }
        loop {
            let n = self.store.purge_deleted_watches(batch as u64).await?;
            pass.watch_rows += n;
            self.count("watch_rows", n);
            if n < batch as u64 {
                break;
            }
        }
        if pass != Pass::default() {
            self.store.reclaim_space().await?;
        }
        Ok(pass)
    }

    fn count(&self, kind: &str, n: u64) {
        self.metrics.purged.with_label_values(&[kind]).inc_by(n);
    }
}
