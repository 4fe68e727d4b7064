//! Progress events and *work available* wake-ups.
//!
//! Embedded mode carries both over in-process channels. Events are signals, not truth: a lost
//! one costs latency only, because workers also poll and subscribers re-read the database.

use crate::entities::job;
use crate::store::{FinishedDomain, JobUpdate};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

/// Events buffered per subscriber before a slow one starts missing some (it then re-reads).
const PROGRESS_BUFFER: usize = 1024;

/// The state of a job after a recorded batch, with the domains that batch finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// The job.
    pub job_id: Uuid,
    /// Its status after the batch.
    pub status: String,
    /// Distinct domains in the job.
    pub total: i32,
    /// Finished with an icon.
    pub completed: i32,
    /// Finished without one.
    pub failed: i32,
    /// `floor(100 · (completed + failed) / total)`.
    pub progress: i32,
    /// Domains finished by this batch.
    pub finished: Vec<FinishedDomain>,
}

impl ProgressEvent {
    /// The event for a job as it stands, carrying `finished`.
    pub fn from_job(job: &job::Model, finished: Vec<FinishedDomain>) -> Self {
        Self {
            job_id: job.id,
            status: job.status.as_str().to_owned(),
            total: job.total,
            completed: job.completed,
            failed: job.failed,
            progress: job.progress(),
            finished,
        }
    }
}

impl From<JobUpdate> for ProgressEvent {
    fn from(update: JobUpdate) -> Self {
        Self::from_job(&update.job, update.finished)
    }
}

/// The process's event hub.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    progress: broadcast::Sender<Arc<ProgressEvent>>,
    work: Notify,
}

impl Events {
    /// Events that stay inside this process (the embedded default).
    pub fn in_process() -> Self {
        let (progress, _) = broadcast::channel(PROGRESS_BUFFER);
        Self {
            inner: Arc::new(Inner {
                progress,
                work: Notify::new(),
            }),
        }
    }

    /// Publishes a job's progress to every subscriber; nobody listening is fine.
    pub fn publish_progress(&self, event: ProgressEvent) {
        let _ = self.inner.progress.send(Arc::new(event));
    }

    /// Receives every job's progress events from now on.
    pub fn subscribe_progress(&self) -> broadcast::Receiver<Arc<ProgressEvent>> {
        self.inner.progress.subscribe()
    }

    /// Tells idle workers that new work is due.
    pub fn notify_work(&self) {
        self.inner.work.notify_waiters();
    }

    /// Resolves at the next *work available* signal.
    pub async fn work_available(&self) {
        self.inner.work.notified().await;
    }
}
