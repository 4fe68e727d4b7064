//! Retention: old jobs are purged in the background while new ones run, the cross-job cache
//! survives purges and deletes, icon blobs nothing references are collected, and one process
//! of a fleet holds the task's lease.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp, both_backends, number};
use crate::subscriptions::wait_until;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// Runs `sql` with `at` as `$1`.
async fn at(app: &TestApp, sql: &str, at: DateTime<Utc>) {
    let db = app.store.connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [at.into()],
    ))
    .await
    .unwrap();
}

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days)
}

async fn results(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, page) = app.get_json(&format!("/jobs/{id}/results")).await;
    assert_eq!(status, 200, "{page}");
    page["results"].as_array().unwrap().clone()
}

/// A finished job last updated 40 days ago is purged by the background task (counted in
/// `/metrics`) while a new job runs, and the new job finishes untouched.
async fn retention_purges_an_old_job_while_a_new_one_runs(backend: Backend) {
    let mut sites = Sites::default();
    sites.icon_site("old.test");
    for n in 0..6 {
        sites.slow_icon_site(&format!("new{n}.test"), Duration::from_millis(300));
    }
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(
        backend,
        &internet,
        &[
            ("RETENTION_INTERVAL_SECS", "1"),
            ("RETENTION_BATCH_ROWS", "2"),
        ],
    )
    .await;
    let old = app.create_job("ret", &["old.test"]).await;
    app.wait_for_job(&old, Duration::from_secs(30)).await;
    // Old, and fetched long before the cache would reuse it.
    at(
        &app,
        "UPDATE job SET created_at = $1, updated_at = $1",
        days_ago(40),
    )
    .await;
    at(
        &app,
        "UPDATE result SET fetched_at = $1, updated_at = $1",
        days_ago(40),
    )
    .await;

    let new_domains: Vec<String> = (0..6).map(|n| format!("new{n}.test")).collect();
    let new = app.create_job("ret", &new_domains).await;
    wait_until("the old job to be purged", || async {
        app.get_json(&format!("/jobs/{old}")).await.0 == 404
    })
    .await;
    let job = app.wait_for_job(&new, Duration::from_secs(30)).await;
    assert_eq!(
        (&job["status"], &job["completed"]),
        (&"completed".into(), &6.into()),
        "{job}"
    );
    assert_eq!(results(&app, &new).await.len(), 6);
    assert_eq!(app.count_rows("job").await, 1);
    let purged = |kind: &str| format!("favicon_finder_purged_total{{kind=\"{kind}\"}}");
    assert_eq!(app.metric(&purged("jobs")).await, 1.0);
    assert_eq!(app.metric(&purged("results")).await, 1.0);
    assert!(
        app.metrics()
            .await
            .contains_key("favicon_finder_purge_longest_transaction_seconds")
    );
    // Too old for the cache: nothing was kept for it.
    assert_eq!(app.count_rows("domain_cache").await, 0);
}
both_backends!(
    purges_while_running,
    retention_purges_an_old_job_while_a_new_one_runs
);

/// The newest fetch of a domain stays usable after its job is deleted, and after its job is
/// purged by retention: a later job takes it from the cache with no request to the site, and
/// its stored icon is still served.
async fn the_cache_survives_purges(backend: Backend) {
    let mut sites = Sites::default();
    sites.icon_site("deleted.test").icon_site("purged.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[("RETENTION_INTERVAL_SECS", "1")]).await;
    let first = app.create_job("cache", &["deleted.test"]).await;
    app.wait_for_job(&first, Duration::from_secs(30)).await;
    let second = app.create_job("cache", &["purged.test"]).await;
    app.wait_for_job(&second, Duration::from_secs(30)).await;
    let hits = |host: &str| internet.host_hits(host);
    let (deleted_hits, purged_hits) = (hits("deleted.test"), hits("purged.test"));
    let fetched = results(&app, &first).await[0].clone();

    let response = app
        .http
        .delete(app.url(&format!("/jobs/{first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // Finished long ago, fetched recently: past retention, still within the cache's age.
    let job_id = Uuid::parse_str(&second).unwrap();
    let db = app.store.connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE job SET created_at = $1, updated_at = $1 WHERE id = $2",
        [days_ago(40).into(), job_id.into()],
    ))
    .await
    .unwrap();
    wait_until("the second job to be purged", || async {
        app.get_json(&format!("/jobs/{second}")).await.0 == 404
    })
    .await;
    assert_eq!(app.count_rows("result").await, 0);
    assert_eq!(app.count_rows("domain_cache").await, 2);

    let again = app
        .create_job("cache", &["deleted.test", "purged.test"])
        .await;
    let job = app.wait_for_job(&again, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 2, "{job}");
    let rows = results(&app, &again).await;
    for row in &rows {
        assert_eq!(row["cached"], true, "{row}");
        assert_eq!(row["status"], "success", "{row}");
    }
    assert_eq!(rows[0]["favicon_url"], fetched["favicon_url"]);
    assert_eq!(rows[0]["fetched_at"], fetched["fetched_at"]);
    assert_eq!(
        (hits("deleted.test"), hits("purged.test")),
        (deleted_hits, purged_hits),
        "no request for a domain the cache kept"
    );
    let icon = app
        .http
        .get(app.url("/icons/purged.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/png");
}
both_backends!(cache_survives_purges, the_cache_survives_purges);

/// A blob nothing references is marked, then collected once the mark is older than the grace
/// period; a blob a result points at is kept and never marked.
async fn orphaned_icon_blobs_are_collected(backend: Backend) {
    let mut sites = Sites::default();
    sites.icon_site("kept.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[("RETENTION_INTERVAL_SECS", "1")]).await;
    let id = app.create_job("gc", &["kept.test"]).await;
    app.wait_for_job(&id, Duration::from_secs(30)).await;
    assert_eq!(app.count_rows("icon_blob").await, 1);
    let orphan = "f".repeat(64);
    let db = app.store.connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO icon_blob (sha256, mime, bytes, width, height, size, created_at) \
         VALUES ($1, 'image/png', $2, 1, 1, 3, $3)",
        [
            orphan.clone().into(),
            vec![1u8, 2, 3].into(),
            days_ago(2).into(),
        ],
    ))
    .await
    .unwrap();
    let marked = "SELECT COUNT(*) AS n FROM icon_blob WHERE orphaned_at IS NOT NULL";
    wait_until("the orphan to be marked", || async {
        number(db, marked).await == 1
    })
    .await;
    // A mark made more than the grace period ago.
    at(
        &app,
        "UPDATE icon_blob SET orphaned_at = $1 WHERE orphaned_at IS NOT NULL",
        days_ago(1),
    )
    .await;
    wait_until("the orphan to be collected", || async {
        app.count_rows("icon_blob").await == 1
    })
    .await;
    assert_eq!(
        number(db, marked).await,
        0,
        "the referenced blob was never marked"
    );
    let icon = app
        .http
        .get(app.url("/icons/kept.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    let sample = "favicon_finder_purged_total{kind=\"icon_blobs\"}";
    assert_eq!(app.metric(sample).await, 1.0);
}
both_backends!(blobs_collected, orphaned_icon_blobs_are_collected);

/// The retention lease: one owner at a time, renewable by its holder, taken over when it ran
/// out, given up on release; so two processes never purge at once.
async fn one_process_holds_the_lease(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let store = &app.store;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let later = Utc::now() + chrono::Duration::minutes(5);
    assert!(store.take_lease("t", a, later).await.unwrap());
    assert!(!store.take_lease("t", b, later).await.unwrap(), "held by a");
    assert!(store.take_lease("t", a, later).await.unwrap(), "a renews");
    assert!(
        store
            .take_lease("t", a, Utc::now() - chrono::Duration::seconds(1))
            .await
            .unwrap()
    );
    assert!(
        store.take_lease("t", b, later).await.unwrap(),
        "a's lease ran out"
    );
    store.release_lease("t", b).await.unwrap();
    assert!(store.take_lease("t", a, later).await.unwrap(), "b let go");
}
both_backends!(retention_lease, one_process_holds_the_lease);
