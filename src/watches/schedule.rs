//! The worker side of watches: every worker process looks for due watched domains on its
//! tick and makes their check jobs, which its pool (or any other) then claims like any job.

use crate::events::Events;
use crate::store::Store;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Domains scheduled per transaction: a tick that finds more goes round again at once.
pub const BATCH: u64 = 1_000;

/// Makes the check jobs of due watched domains.
pub struct Scheduler {
    store: Store,
    events: Events,
    tick: Duration,
}

impl Scheduler {
    /// A scheduler that looks every `tick` and wakes the workers through `events`.
    pub fn new(store: Store, events: Events, tick: Duration) -> Self {
        Self {
            store,
            events,
            tick,
        }
    }

    /// Schedules until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let made = match self.store.schedule_watch_checks(BATCH).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not schedule watched domains");
                    0
                }
            };
            if made > 0 {
                tracing::debug!(domains = made, "watched domains scheduled");
                self.events.notify_work();
            }
            if made as u64 == BATCH {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.tick) => {}
            }
        }
    }
}
