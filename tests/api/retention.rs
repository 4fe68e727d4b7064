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

/// A cache row too old to reuse is dropped by retention and counted as `cache_rows`.
async fn old_cache_rows_are_dropped_and_counted(backend: Backend) {
    let mut sites = Sites::default();
    sites.icon_site("cached.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[("RETENTION_INTERVAL_SECS", "1")]).await;
    let id = app.create_job("rows", &["cached.test"]).await;
    app.wait_for_job(&id, Duration::from_secs(30)).await;
    assert_eq!(app.delete_job(&id).await, 204);
    assert_eq!(
        app.count_rows("domain_cache").await,
        1,
        "kept for the cache"
    );
    // Older than CACHE_MAX_AGE_SECS (a day): no job may reuse it now.
    at(&app, "UPDATE domain_cache SET fetched_at = $1", days_ago(2)).await;
    wait_until("the old cache row to be dropped", || async {
        app.count_rows("domain_cache").await == 0
    })
    .await;
    let sample = "favicon_finder_purged_total{kind=\"cache_rows\"}";
    assert_eq!(app.metric(sample).await, 1.0);
}
both_backends!(cache_rows_counted, old_cache_rows_are_dropped_and_counted);

/// A webhook delivery as old as a purged job is deleted with its attempts, and counted; one
/// still pending is kept however old, so nothing still to send is lost.
async fn old_webhook_deliveries_are_pruned(backend: Backend) {
    let mut sites = Sites::default();
    sites.icon_site("hooked.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(
        backend,
        &internet,
        &[
            ("RETENTION_INTERVAL_SECS", "1"),
            (
                "WEBHOOK_SECRET_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
            // Nothing listens there: every attempt fails at once and is retried much later.
            ("WEBHOOK_RETRY_BASE_MS", "3600000"),
        ],
    )
    .await;
    let (status, hook) = app
        .post_json(
            "/webhooks",
            &serde_json::json!({"client_id": "hooks", "url": "http://127.0.0.1:1/hook"}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let job = app.create_job("hooks", &["hooked.test"]).await;
    app.wait_for_job(&job, Duration::from_secs(30)).await;
    wait_until("the first attempt to be recorded", || async {
        app.count_rows("webhook_attempt").await == 1
    })
    .await;
    // Old, but still waiting for its next attempt: kept.
    at(
        &app,
        "UPDATE webhook_delivery SET created_at = $1",
        days_ago(40),
    )
    .await;
    at(
        &app,
        "UPDATE job SET created_at = $1, updated_at = $1",
        days_ago(40),
    )
    .await;
    wait_until("the old job to be purged", || async {
        app.count_rows("job").await == 0
    })
    .await;
    assert_eq!(
        app.count_rows("webhook_delivery").await,
        1,
        "a pending one stays"
    );
    // Given up on: now it goes, with its attempt.
    at(
        &app,
        "UPDATE webhook_delivery SET status = 'failed', created_at = $1",
        days_ago(40),
    )
    .await;
    wait_until("the old delivery to be pruned", || async {
        app.count_rows("webhook_delivery").await == 0
    })
    .await;
    assert_eq!(app.count_rows("webhook_attempt").await, 0);
    let sample = "favicon_finder_purged_total{kind=\"webhook_deliveries\"}";
    assert_eq!(app.metric(sample).await, 1.0);
}
both_backends!(webhook_deliveries_pruned, old_webhook_deliveries_are_pruned);

/// A recorder that stores an icon whose blob is marked unreferenced clears the mark, so the
/// sweep leaves the blob. (The default interval: no retention pass runs during the test, so
/// only the recorder can clear it.)
async fn a_recorder_reusing_a_marked_blob_clears_the_mark(backend: Backend) {
    let mut sites = Sites::default();
    sites.icon_site("reused.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[]).await;
    let first = app.create_job("mark", &["reused.test"]).await;
    app.wait_for_job(&first, Duration::from_secs(30)).await;
    let marked = "SELECT COUNT(*) AS n FROM icon_blob WHERE orphaned_at IS NOT NULL";
    // Marked half an hour ago, as a pass that found it unreferenced would have: within the
    // grace period, so nothing deletes it meanwhile.
    let half_hour_ago = Utc::now() - chrono::Duration::minutes(30);
    at(&app, "UPDATE icon_blob SET orphaned_at = $1", half_hour_ago).await;
    let db = app.store.connection();
    assert_eq!(number(db, marked).await, 1);
    let (status, created) = app
        .post_json(
            "/jobs",
            &serde_json::json!({"client_id": "mark", "domains": ["reused.test"], "max_age_seconds": 0}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let again = created["job_id"].as_str().unwrap();
    let job = app.wait_for_job(again, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 1, "{job}");
    assert_eq!(
        results(&app, again).await[0]["cached"],
        false,
        "fetched again"
    );
    assert_eq!(
        app.count_rows("icon_blob").await,
        1,
        "the same content, one blob"
    );
    assert_eq!(number(db, marked).await, 0, "the recorder cleared the mark");
}
both_backends!(
    mark_cleared,
    a_recorder_reusing_a_marked_blob_clears_the_mark
);

/// A delete that a stopped process left half-done (the job hidden, its results still there)
/// is finished by the retention task, even with `RETENTION_DAYS=0`; other jobs stay.
async fn a_half_done_delete_is_finished(backend: Backend) {
    let mut sites = Sites::default();
    for host in ["left1.test", "left2.test", "left3.test", "kept.test"] {
        sites.icon_site(host);
    }
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(
        backend,
        &internet,
        &[
            ("RETENTION_DAYS", "0"),
            ("RETENTION_INTERVAL_SECS", "1"),
            ("RETENTION_BATCH_ROWS", "1"),
        ],
    )
    .await;
    let left = app
        .create_job("half", &["left1.test", "left2.test", "left3.test"])
        .await;
    let kept = app.create_job("half", &["kept.test"]).await;
    app.wait_for_job(&left, Duration::from_secs(30)).await;
    app.wait_for_job(&kept, Duration::from_secs(30)).await;
    // What `DELETE` writes first (the job hidden), an hour ago, and then nothing: the
    // process stopped before deleting a single result.
    let db = app.store.connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE job SET deleted_at = $1 WHERE id = $2",
        [
            (Utc::now() - chrono::Duration::hours(1)).into(),
            Uuid::parse_str(&left).unwrap().into(),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        app.get_json(&format!("/jobs/{left}")).await.0,
        404,
        "hidden"
    );
    wait_until("the half-done delete to be finished", || async {
        app.count_rows("job").await == 1
    })
    .await;
    assert_eq!(
        app.count_rows("result").await,
        1,
        "only the kept job's result"
    );
    assert_eq!(app.get_json(&format!("/jobs/{kept}")).await.0, 200);
    let purged = |kind: &str| format!("favicon_finder_purged_total{{kind=\"{kind}\"}}");
    assert_eq!(app.metric(&purged("jobs")).await, 1.0);
    assert_eq!(app.metric(&purged("results")).await, 3.0);
}
both_backends!(half_done_delete, a_half_done_delete_is_finished);

/// SQLite's WAL, grown past 16 MiB by one large write, is cut back to at most 16 MiB
/// (`journal_size_limit`) at the next write after a checkpoint, as the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_wal_is_cut_back_to_its_limit() {
    let app = TestApp::spawn(Backend::Sqlite, &[("WORKER_CONCURRENCY", "0")]).await;
    let url = url::Url::parse(&app.database_url()).unwrap();
    let wal = std::path::PathBuf::from(format!("{}-wal", url.path()));
    let limit = favicon_finder::store::WAL_SIZE_LIMIT;
    assert_eq!(limit, 16 << 20, "the README's figure");
    let db = app.store.connection();
    let insert = |n: u8| {
        Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO icon_blob (sha256, mime, bytes, width, height, size, created_at) \
             VALUES ($1, 'image/png', $2, 1, 1, $3, $4)",
            [
                format!("{n:064x}").into(),
                vec![n; 24 << 20].into(),
                (24i32 << 20).into(),
                Utc::now().into(),
            ],
        )
    };
    db.execute_raw(insert(1)).await.unwrap();
    let grown = std::fs::metadata(&wal).unwrap().len();
    assert!(
        grown > limit,
        "the write grew the WAL past the limit: {grown}"
    );
    db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
        .await
        .unwrap();
    db.execute_unprepared("DELETE FROM icon_blob")
        .await
        .unwrap();
    let cut = std::fs::metadata(&wal).unwrap().len();
    assert!(cut <= limit, "the WAL kept {cut} bytes after a checkpoint");
}
