//! Webhook work that every worker process of a fleet does: queueing `job.progress` events.
//! Each process looks on its own tick, so several may look at once; one job's progress must
//! still be queued once per interval, whoever looks.

use crate::helpers::{Backend, TestApp, both_backends};
use crate::webhooks_delivery::{SECRET_KEY, register, submit};
use std::time::Duration;

async fn progress_looked_for_at_once_is_queued_once(backend: Backend) {
    // No worker slots: the job stays processing, and no deliverer of this app queues
    // anything of its own.
    let app = TestApp::spawn(backend, &[SECRET_KEY, ("WORKER_CONCURRENCY", "0")]).await;
    let events = ["job.progress"];
    register(&app, "acme", "http://127.0.0.1:9/hook", Some(&events)).await;
    submit(&app, "acme", &["one.test", "two.test"]).await;
    let looks = (0..8).map(|_| {
        app.store
            .enqueue_webhook_progress(Duration::from_secs(60), |_, _, _, _| "{}".to_owned())
    });
    let answers = futures::future::join_all(looks).await;
    let queued: usize = answers.iter().filter_map(|a| a.as_ref().ok()).sum();
    let failed = answers.iter().filter(|a| a.is_err()).count();
    let first_error = answers.iter().find_map(|a| a.as_ref().err());
    eprintln!("8 looks at once: {queued} queued, {failed} failed (first: {first_error:?})");
    // Each look waits for the one before it: none queues a second event, and none fails
    // (SQLite would answer "database is locked" to a look that read before another's write).
    assert_eq!((queued, failed), (1, 0), "{answers:?}");
    assert_eq!(app.count_rows("webhook_delivery").await, 1);
    app.stop().await;
}

both_backends!(
    progress_looked_for_at_once_is_queued_once_on,
    progress_looked_for_at_once_is_queued_once
);
