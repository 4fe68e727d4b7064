//! What a pool knows for its fair claims: the jobs with work left, re-read at most every
//! [`JOBS_FRESH_FOR`] and at once after a *work available* wake-up, so a claim does not pay a
//! second round trip each time while a new job is still claimed within a claim or two.

use super::WorkerPool;
use crate::events::Events;
use crate::model::fair::{ActiveJob, Share, per_job_cap};
use crate::store::{Claimed, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a read of the active jobs serves claims before it is read again.
const JOBS_FRESH_FOR: Duration = Duration::from_millis(250);

/// The active jobs as last read, and whether they must be read again.
pub(super) struct Roster {
    /// The jobs with work left, oldest first.
    jobs: Vec<ActiveJob>,
    /// When they were read; `None` before the first read.
    read_at: Option<Instant>,
    /// Set by a wake-up: a job may have been created since the read.
    stale: Arc<AtomicBool>,
    /// Hears the wake-ups while the pool is busy (its loop listens only when idle).
    listener: JoinHandle<()>,
}

impl Roster {
    /// An empty roster that listens for wake-ups on `events`.
    pub(super) fn new(events: Events) -> Self {
        let stale = Arc::new(AtomicBool::new(true));
        let flag = stale.clone();
        let listener = tokio::spawn(async move {
            loop {
                events.work_available().await;
                flag.store(true, Ordering::Relaxed);
            }
        });
        Self {
            jobs: Vec::new(),
            read_at: None,
            stale,
            listener,
        }
    }

    /// Makes the next claim read the active jobs again.
    pub(super) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// Claims up to `free` rows for `pool`, shared fairly given what it holds (`in_flight`).
    pub(super) async fn claim<'c>(
        &mut self,
        pool: &WorkerPool,
        free: usize,
        in_flight: impl Iterator<Item = &'c Claimed>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let settings = &pool.settings;
        let expired = self.read_at.is_none_or(|at| at.elapsed() >= JOBS_FRESH_FOR);
        // An empty roster is read every time: an idle pool's claim is then one cheap read.
        if self.stale.swap(false, Ordering::Relaxed) || expired || self.jobs.is_empty() {
            self.jobs = pool.store.active_jobs(settings.max_tries).await?;
            self.read_at = Some(Instant::now());
        }
        let mut held: HashMap<uuid::Uuid, usize> = HashMap::new();
        for claim in in_flight {
            *held.entry(claim.job_id).or_default() += 1;
        }
        let share = Share {
            free,
            per_job: per_job_cap(settings.concurrency, settings.max_share_per_job),
            held,
        };
        pool.store
            .claim_share(
                pool.owner,
                &share,
                &self.jobs,
                settings.lease,
                settings.max_tries,
            )
            .await
    }
}

impl Drop for Roster {
    fn drop(&mut self) {
        self.listener.abort();
    }
}
