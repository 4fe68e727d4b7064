//! What operators watch: `/metrics` after a job, `/healthz`, `/readyz`.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::json;
use std::time::Duration;

async fn metrics_describe_a_finished_job(backend: Backend) {
    let mut sites = Sites::default();
    for host in ["m1.test", "m2.test"] {
        sites.icon_site(host);
    }
    sites.page("m3.test", "<html></html>");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[]).await;
    let id = app
        .create_job("m", &["m1.test", "m2.test", "m3.test"])
        .await;
    app.wait_for_job(&id, Duration::from_secs(30)).await;

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = crate::helpers::parse_metrics(&response.text().await.unwrap());
    let get = |key: &str| {
        metrics
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("{key} missing: {metrics:?}"))
    };
    assert_eq!(
        get(r#"favicon_finder_domains_total{error_code="",outcome="success"}"#),
        2.0
    );
    assert_eq!(
        get(r#"favicon_finder_domains_total{error_code="no_icon",outcome="failed"}"#),
        1.0
    );
    assert_eq!(get("favicon_finder_fetch_duration_seconds_count"), 3.0);
    assert_eq!(get(r#"favicon_finder_jobs{status="completed"}"#), 1.0);
    assert_eq!(get(r#"favicon_finder_jobs{status="processing"}"#), 0.0);
    assert_eq!(get(r#"favicon_finder_queue_rows{state="queued"}"#), 0.0);
    assert_eq!(get(r#"favicon_finder_queue_rows{state="leased"}"#), 0.0);
    assert_eq!(get("favicon_finder_in_flight_fetches"), 0.0);
    assert_eq!(get("favicon_finder_subscriptions"), 0.0);
    assert!(get("favicon_finder_claim_batch_size_count") >= 1.0);
    assert_eq!(get("favicon_finder_record_batch_size_sum"), 3.0);
    assert_eq!(get("favicon_finder_database_errors_total"), 0.0);

    let (status, health) = app.get_json("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        ready,
        json!({
            "status": "ok",
            "checks": {"database": "ok"},
            "politeness": {"mode": "process-local"},
        })
    );
    app.stop().await;
}
both_backends!(metrics_after_a_job, metrics_describe_a_finished_job);

/// A worker-only process serves health and its own metrics on `WORKER_HTTP_PORT`, and
/// nothing of the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_its_own_metrics_when_asked() {
    let mut sites = Sites::default();
    sites.icon_site("w1.test");
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let worker = TestApp::spawn_with(
        Backend::Sqlite,
        &[("FETCH_RESOLVE", &resolve), ("WORKER_HTTP_PORT", "0")],
        favicon_finder::app::Roles {
            api: false,
            worker: true,
        },
    )
    .await;
    let domains = [favicon_finder::domain::Domain::parse("w1.test").unwrap()];
    let job = worker
        .store
        .create_job("w", &domains, favicon_finder::store::CachePolicy::OFF)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let view = worker.store.job(job.id).await.unwrap().unwrap();
        if view.status.is_final() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker did not finish the job"
        );
        // Wall-clock: the worker is another process, working on real sockets.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = worker.metrics().await;
    assert_eq!(
        metrics[r#"favicon_finder_domains_total{error_code="",outcome="success"}"#],
        1.0
    );
    for fleet_wide in ["favicon_finder_queue_rows", "favicon_finder_jobs"] {
        assert!(
            !metrics.keys().any(|name| name.starts_with(fleet_wide)),
            "a worker serves only process-local series, so sums over pods are right: {metrics:?}"
        );
    }
    assert_eq!(worker.get_json("/healthz").await.0, 200);
    assert_eq!(worker.get_json("/readyz").await.0, 200);
    assert_eq!(
        worker.get_json(&format!("/jobs/{}", job.id)).await.0,
        404,
        "no API on a worker"
    );
    worker.stop().await;
}

/// The fleet-wide gauges run `COUNT` queries: scrapes within the TTL reuse the last reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_gauges_are_read_at_most_once_per_ttl() {
    let app = TestApp::api_only(&[]).await;
    let queued = r#"favicon_finder_queue_rows{state="queued"}"#;
    assert_eq!(app.metric(queued).await, 0.0);
    let first_read = tokio::time::Instant::now();
    let (status, _) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "g", "domains": ["a.test", "b.test", "c.test"]}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        app.metric(queued).await,
        0.0,
        "within the TTL: the cached reading"
    );
    let ttl = favicon_finder::metrics::FLEET_GAUGES_TTL;
    // Waiting out the TTL is what is tested, so it is a plain wait.
    tokio::time::sleep_until(first_read + ttl).await;
    assert_eq!(app.metric(queued).await, 3.0, "after the TTL: read again");
    app.stop().await;
}

/// A database that hangs (a lock held on the migrations table, so the readiness query
/// waits) must not hang `/readyz`: it answers 503 within its stated bound (1.5 s) instead of
/// letting the probe time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_in_time_while_the_database_hangs() {
    if !crate::services::available(
        "TEST_DATABASE_URL",
        crate::helpers::postgres_url().is_some(),
    ) {
        return;
    }
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
    let app = TestApp::spawn(Backend::Postgres, &[("WORKER_CONCURRENCY", "0")]).await;
    assert_eq!(app.get_json("/readyz").await.0, 200);
    // One connection of the app's own pool holds the lock; the probe gets another.
    let txn = app.store.connection().begin().await.unwrap();
    txn.execute_raw(Statement::from_string(
        DbBackend::Postgres,
        "LOCK TABLE seaql_migrations IN ACCESS EXCLUSIVE MODE",
    ))
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), app.get_json("/readyz")).await;
    let took = started.elapsed();
    txn.rollback().await.unwrap();
    let (status, body) = answer.expect("/readyz answered while the database hung");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["database"], "unreachable", "{body}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(
        took >= Duration::from_millis(1400),
        "it waited its bound: {took:?}"
    );
    // And once the lock is gone it is ready again.
    assert_eq!(app.get_json("/readyz").await.0, 200);
    app.stop().await;
}
