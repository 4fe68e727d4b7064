//! Webhook work shared by the worker processes of a fleet. Each process looks for
//! `job.progress` on its own tick, so several may look at once; one job's progress must still
//! be queued once per interval, whoever looks. A worker started without `WEBHOOK_SECRET_KEY`
//! (a fleet half configured) cannot sign: it must leave the deliveries to a worker that can,
//! rather than spend their attempts and blame the endpoint.

use crate::common::webhooks::Receiver;
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp, both_backends};
use crate::webhooks_delivery::{SECRET_KEY, WAIT, deliveries, deliveries_until, register, submit};
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

async fn a_worker_without_the_key_leaves_deliveries_to_one_with_it(backend: Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let mut sites = Sites::default();
    sites.icon_site("one.test");
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn_api(
        backend,
        &[
            SECRET_KEY,
            ("FETCH_RESOLVE", &resolve),
            ("WEBHOOK_POLL_MS", "50"),
        ],
    )
    .await;
    let (webhook, secret) = register(&app, "acme", &receiver.url(), None).await;
    receiver.set_secrets(&[&secret]).await;
    let _keyless = app.spawn_worker_process(&[("WEBHOOK_SECRET_KEY", "")]);
    let job = submit(&app, "acme", &["one.test"]).await;
    let done = app.wait_for_job(&job, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    // Twenty of the keyless worker's polls.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = deliveries(&app, &webhook).await;
    assert_eq!(waiting.len(), 1, "{waiting:#?}");
    assert_eq!(waiting[0]["status"], "pending", "{waiting:#?}");
    assert_eq!(waiting[0]["attempts"], 0, "{waiting:#?}");
    assert!(receiver.deliveries().is_empty());
    let (_, endpoint) = app.get_json(&format!("/webhooks/{webhook}")).await;
    assert_eq!(
        endpoint["failing_since"],
        serde_json::Value::Null,
        "{endpoint}"
    );

    let _keyed = app.spawn_worker_process(&[]);
    let seen = receiver.wait_for(1, WAIT).await;
    assert_eq!(seen[0].verified_with, [0], "{seen:#?}");
    assert_eq!(seen[0].body["data"]["job_id"], job.as_str());
    let found = deliveries_until(&app, &webhook, WAIT, |d| d[0]["status"] == "delivered").await;
    assert_eq!(found[0]["attempts"], 1, "{found:#?}");
    app.stop().await;
}

both_backends!(
    a_worker_without_the_key_leaves_deliveries_to_one_with_it_on,
    a_worker_without_the_key_leaves_deliveries_to_one_with_it
);
