//! The quiet flag: whether the future being polled belongs to a trace that is not sampled,
//! so tracing should build nothing for it (`telemetry::sampling` sets it and reads it).
//!
//! A base module of its own, with no dependencies, because the finder needs it too: it runs
//! each find in a task of its own (to contain panics), and a task does not inherit the
//! thread-local of the one that spawned it, so the finder carries the flag across with
//! [`as_quiet_as_now`]. The flag is set only for the length of one poll, so work on other
//! tasks of the same thread is not affected.

use std::cell::Cell;

thread_local! {
    /// Whether the future being polled on this thread belongs to a trace that is not sampled.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Whether the work being polled now is quiet.
pub fn is_quiet() -> bool {
    QUIET.with(Cell::get)
}

/// `work`, to be spawned as a task of its own, made as quiet as the caller is now: without
/// this, the children of an unsampled find would be built again in its task.
pub fn as_quiet_as_now<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let quiet = is_quiet();
    async move {
        if quiet {
            quietly(work).await
        } else {
            work.await
        }
    }
}

/// Polls `work` with the flag set, restoring the thread's previous value after each poll
/// (even one that panics).
pub async fn quietly<F: Future>(work: F) -> F::Output {
    /// Restores the previous value of [`QUIET`] when dropped.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            QUIET.with(|quiet| quiet.set(self.0));
        }
    }
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(move |cx| {
        let _restore = Restore(QUIET.with(|quiet| quiet.replace(true)));
        work.as_mut().poll(cx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn quiet_lasts_only_while_the_quiet_work_is_polled() {
        assert!(!is_quiet());
        let seen = quietly(async {
            let first = is_quiet();
            tokio::task::yield_now().await;
            (first, is_quiet())
        })
        .await;
        assert_eq!(seen, (true, true));
        assert!(!is_quiet(), "quiet outlived its work");
    }

    #[tokio::test]
    async fn a_task_spawned_from_quiet_work_is_quiet_too() {
        let spawned = quietly(async {
            tokio::spawn(as_quiet_as_now(async { is_quiet() }))
                .await
                .unwrap()
        })
        .await;
        assert!(spawned, "the spawned work ran quiet");
        let loud = tokio::spawn(as_quiet_as_now(async { is_quiet() }))
            .await
            .unwrap();
        assert!(!loud, "work spawned outside quiet work is not quiet");
    }

    #[tokio::test]
    async fn a_panic_inside_quiet_work_does_not_leave_the_thread_quiet() {
        let caught =
            futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(quietly(async {
                panic!("inside")
            })))
            .await;
        assert!(caught.is_err());
        assert!(!is_quiet());
    }
}
