//! A site's deadline on the site's own clock: time spent waiting for one of our own politeness
//! slots (per host, per address) is not charged to the site, so a queue of our making never
//! turns into a timeout, let alone a `no_icon`, for a site that answers in time.
//!
//! One [`Deadline`] per find. Its clock runs while the site is being talked to (DNS,
//! connecting, waiting for an answer, reading a body) and stops while a request waits for a
//! slot ([`Deadline::wait_for`]). Waiting is bounded on its own, in total per find, so a worker
//! slot cannot be held forever: past that bound the wait ends as a transient `timeout`,
//! retried later, never a permanent failure.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How often [`Deadline::passed`] looks again while the clock is stopped: a wait can end at
/// any moment, and the site's time then runs again from where it stopped.
const WAITING_RECHECK: Duration = Duration::from_millis(100);

/// The site time a find may spend, and the clock that measures it; clones share the clock.
#[derive(Clone, Debug)]
pub struct Deadline {
    clock: Arc<Clock>,
    /// Site time allowed before this deadline passes.
    budget: Duration,
}

/// The shared part: when the find started and how long it has waited for slots.
#[derive(Debug)]
struct Clock {
    started: Instant,
    /// The most time the find may wait for slots, in total.
    max_wait: Duration,
    waits: Mutex<Waits>,
}

#[derive(Debug, Default)]
struct Waits {
    /// Time spent in finished waits.
    total: Duration,
    /// Waits in progress now, and since when the clock has been stopped.
    open: usize,
    since: Option<Instant>,
}

impl Waits {
    /// Everything waited so far, the wait in progress included.
    fn waited(&self, now: Instant) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |s| now - s)
    }
}

/// A wait for a slot took longer than the find's total allowance for waiting.
#[derive(Debug, Clone, Copy)]
pub struct WaitedTooLong(
    /// How long the find had waited for slots, in all.
    pub Duration,
);

impl Deadline {
    /// Starts a find's clock now: `budget` of the site's own time, and at most `max_wait` of
    /// waiting for our slots on top.
    pub fn start(budget: Duration, max_wait: Duration) -> Self {
        Self {
            clock: Arc::new(Clock {
                started: Instant::now(),
                max_wait,
                waits: Mutex::new(Waits::default()),
            }),
            budget,
        }
    }

    /// The same clock with `less` less site time: a phase that must leave time for a later one.
    pub fn less(&self, less: Duration) -> Self {
        Self {
            clock: self.clock.clone(),
            budget: self.budget.saturating_sub(less),
        }
    }

    fn waits(&self) -> std::sync::MutexGuard<'_, Waits> {
        self.clock.waits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Site time used so far: time since the start less every wait for a slot.
    pub fn used(&self) -> Duration {
        let now = Instant::now();
        (now - self.clock.started).saturating_sub(self.waits().waited(now))
    }

    /// Site time left, zero once the deadline has passed.
    pub fn remaining(&self) -> Duration {
        self.budget.saturating_sub(self.used())
    }

    /// The longest this find can take in real time: all of its site time and all of its waiting.
    pub fn max_real(&self) -> Duration {
        self.budget + self.clock.max_wait
    }

    /// Awaits `slot` with the clock stopped. Past the find's total allowance for waiting it
    /// gives up with how long the find has waited, so the caller can fail the request as a
    /// transient timeout.
    pub async fn wait_for<F: Future>(&self, slot: F) -> Result<F::Output, WaitedTooLong> {
        let allowance = {
            let now = Instant::now();
            let mut waits = self.waits();
            let allowance = self.clock.max_wait.saturating_sub(waits.waited(now));
            if waits.open == 0 {
                waits.since = Some(now);
            }
            waits.open += 1;
            allowance
        };
        // Restarts the clock however the wait ends, the caller giving up included.
        let _running_again = Resume(self);
        match tokio::time::timeout(allowance, slot).await {
            Ok(got) => Ok(got),
            Err(_) => Err(WaitedTooLong(self.waits().waited(Instant::now()))),
        }
    }

    /// Resolves once the site's time is used up; a wait for a slot in progress holds it off.
    pub async fn passed(&self) {
        loop {
            let (left, waiting) = {
                let now = Instant::now();
                let waits = self.waits();
                let used = (now - self.clock.started).saturating_sub(waits.waited(now));
                (self.budget.saturating_sub(used), waits.open > 0)
            };
            if left.is_zero() && !waiting {
                return;
            }
            // While the clock is stopped the time left stays put, so this only looks again.
            let nap = if waiting {
                left.max(WAITING_RECHECK)
            } else {
                left
            };
            tokio::time::sleep(nap).await;
        }
    }
}

/// Ends one wait when dropped.
struct Resume<'a>(&'a Deadline);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut waits = self.0.waits();
        waits.open = waits.open.saturating_sub(1);
        if waits.open == 0
            && let Some(since) = waits.since.take()
        {
            waits.total += now - since;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time, in tens of milliseconds (the crate's tokio has no paused clock): each check
    // allows for a busy machine in one direction only, the one that cannot hide the bug.
    const MS: Duration = Duration::from_millis(1);

    fn about(got: Duration, want: Duration) -> bool {
        got <= want && got + 40 * MS >= want
    }

    #[tokio::test]
    async fn waiting_for_a_slot_stops_the_sites_clock() {
        let deadline = Deadline::start(1000 * MS, 10_000 * MS);
        // A wait in our own queue, three times the site's whole budget, costs the site nothing.
        let waited = deadline.wait_for(tokio::time::sleep(3000 * MS)).await;
        assert!(waited.is_ok());
        assert!(
            about(deadline.remaining(), 1000 * MS),
            "{:?}",
            deadline.remaining()
        );
        tokio::time::sleep(200 * MS).await;
        let left = deadline.remaining();
        assert!(left <= 800 * MS && left >= 700 * MS, "{left:?}");
        let reserve = deadline.less(300 * MS);
        assert!(reserve.remaining() <= 500 * MS, "{:?}", reserve.remaining());
    }

    #[tokio::test]
    async fn waiting_is_bounded_in_total() {
        let deadline = Deadline::start(1000 * MS, 300 * MS);
        let first = deadline.wait_for(tokio::time::sleep(200 * MS)).await;
        assert!(first.is_ok());
        let started = Instant::now();
        let second = deadline.wait_for(std::future::pending::<()>()).await;
        let WaitedTooLong(total) = second.unwrap_err();
        assert!(total >= 300 * MS, "{total:?}");
        assert!(
            started.elapsed() < 250 * MS,
            "only what was left of the allowance: {:?}",
            started.elapsed()
        );
        assert!(
            about(deadline.remaining(), 1000 * MS),
            "{:?}",
            deadline.remaining()
        );
        assert_eq!(deadline.max_real(), 1300 * MS);
    }

    #[tokio::test]
    async fn the_deadline_passes_on_site_time_only() {
        let deadline = Deadline::start(300 * MS, 10_000 * MS);
        let watch = deadline.clone();
        let started = Instant::now();
        let watchdog = tokio::spawn(async move {
            watch.passed().await;
            started.elapsed()
        });
        tokio::time::sleep(100 * MS).await;
        let _ = deadline.wait_for(tokio::time::sleep(500 * MS)).await;
        let passed_after = watchdog.await.unwrap();
        // 100 ms of site time, 500 ms waiting, then the 200 ms left.
        assert!(passed_after >= 800 * MS, "{passed_after:?}");
    }
}
