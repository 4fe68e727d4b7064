//! Render time per client (`ICON_RENDER_MS_PER_MINUTE`): each caller (a key's client, or the
//! address of a caller without a key) has a bucket of milliseconds refilled continuously; a
//! render is admitted while the bucket is not empty and charged what it took when it ends,
//! so one client cannot keep the render slots busy for everyone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The buckets, one per caller, forgotten after two idle minutes (a full bucket by then).
#[derive(Clone)]
pub struct Budgets {
    per_minute_ms: f64,
    buckets: moka::sync::Cache<String, Arc<Mutex<Bucket>>>,
}

/// One caller's bucket.
#[derive(Debug)]
pub struct Bucket {
    /// Milliseconds left; below zero after a render that overran what was left.
    left_ms: f64,
    refilled_at: Instant,
}

/// Callers whose buckets are kept at once: beyond it the idlest are forgotten (a forgotten
/// bucket comes back full, which only gives a busy address back its own minute).
const CALLERS_KEPT: u64 = 100_000;

impl Budgets {
    /// Buckets of `per_minute` of render time.
    pub fn new(per_minute: Duration) -> Self {
        Self {
            per_minute_ms: per_minute.as_secs_f64() * 1000.0,
            buckets: moka::sync::Cache::builder()
                .max_capacity(CALLERS_KEPT)
                .time_to_idle(Duration::from_secs(120))
                .build(),
        }
    }

    /// Buckets of `per_minute` events (a refresh, say), each taken by [`Budgets::take_one`].
    pub fn counted(per_minute: u32) -> Self {
        // One event is one unit, kept as a millisecond of the same arithmetic.
        Self::new(Duration::from_millis(u64::from(per_minute)))
    }

    /// Takes one event from `caller`'s bucket (made by [`Budgets::counted`]), or says in how
    /// many seconds one is back.
    pub fn take_one(&self, caller: &str) -> Result<(), u64> {
        let bucket = self.of(caller);
        let mut b = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.refill(&mut b);
        if b.left_ms >= 1.0 {
            b.left_ms -= 1.0;
            return Ok(());
        }
        let wait_secs = (1.0 - b.left_ms) / self.per_minute_ms * 60.0;
        Err((wait_secs.ceil() as u64).clamp(1, 60))
    }

    /// The bucket of `caller`, to charge later.
    pub fn of(&self, caller: &str) -> Arc<Mutex<Bucket>> {
        let full = self.per_minute_ms;
        self.buckets.get_with(caller.to_owned(), || {
            Arc::new(Mutex::new(Bucket {
                left_ms: full,
                refilled_at: Instant::now(),
            }))
        })
    }

    /// Admits a render of `bucket`'s caller, or says in how many seconds it may try again.
    pub fn admit(&self, bucket: &Mutex<Bucket>) -> Result<(), u64> {
        let mut b = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.refill(&mut b);
        if b.left_ms > 0.0 {
            return Ok(());
        }
        // Refilled at per_minute_ms a minute; the debt is at most one minute's worth.
        let wait_secs = -b.left_ms / self.per_minute_ms * 60.0;
        Err((wait_secs.ceil() as u64).clamp(1, 60))
    }

    /// Charges `spent` to `bucket`, down to at most one minute's debt.
    pub fn charge(&self, bucket: &Mutex<Bucket>, spent: Duration) {
        let mut b = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.refill(&mut b);
        b.left_ms = (b.left_ms - spent.as_secs_f64() * 1000.0).max(-self.per_minute_ms);
    }

    fn refill(&self, b: &mut Bucket) {
        let now = Instant::now();
        let elapsed = now.duration_since(b.refilled_at).as_secs_f64();
        b.left_ms = (b.left_ms + elapsed / 60.0 * self.per_minute_ms).min(self.per_minute_ms);
        b.refilled_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_says_when_to_come_back() {
        let budgets = Budgets::new(Duration::from_secs(6));
        let bucket = budgets.of("client:acme");
        assert_eq!(budgets.admit(&bucket), Ok(()));
        budgets.charge(&bucket, Duration::from_secs(9));
        // Three seconds of debt, refilled at six seconds a minute: half a minute.
        assert_eq!(budgets.admit(&bucket), Err(30));
        // A render far over is a minute's debt at most.
        budgets.charge(&bucket, Duration::from_secs(600));
        assert_eq!(budgets.admit(&bucket), Err(60));
        // Another caller has its own.
        assert_eq!(budgets.admit(&budgets.of("ip:127.0.0.1")), Ok(()));
        budgets.charge(&bucket, Duration::ZERO);
        let mut b = bucket.lock().unwrap();
        b.left_ms = -100.0;
        drop(b);
        // 0.1 s of debt at 0.1 s a second: about one second.
        assert_eq!(budgets.admit(&bucket), Err(1));
    }

    #[test]
    fn counted_events_run_out_and_come_back_one_at_a_time() {
        let budgets = Budgets::counted(2);
        assert_eq!(budgets.take_one("client:acme"), Ok(()));
        assert_eq!(budgets.take_one("client:acme"), Ok(()));
        // Two a minute: the next is back in about thirty seconds.
        assert!(matches!(budgets.take_one("client:acme"), Err(29 | 30)));
        assert_eq!(budgets.take_one("client:other"), Ok(()));
    }
}
