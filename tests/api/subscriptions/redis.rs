//! Events over Redis: across processes, `/readyz` whatever Redis does, a Redis restart mid-job.

use super::*;
use crate::redis::OwnRedis;

/// Distributed mode: the API in this process, the worker in another, events over Redis.
async fn redis_api(prefix: &str, redis_url: &str, resolve: &str) -> TestApp {
    TestApp::spawn_api(
        Backend::Postgres,
        &[
            ("FETCH_RESOLVE", resolve),
            ("REDIS_URL", redis_url),
            ("REDIS_PREFIX", prefix),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_processes_over_redis() {
    let redis_url = std::env::var("TEST_REDIS_URL").ok();
    if !crate::services::available("TEST_DATABASE_URL", postgres_url().is_some())
        || !crate::services::available("TEST_REDIS_URL", redis_url.is_some())
    {
        return;
    }
    let redis_url = redis_url.unwrap_or_default();
    let (internet, domains) = slow_world(24, Duration::from_millis(150)).await;
    let resolve = internet.resolve(&[]);
    let prefix = format!("ff-test-{}", uuid::Uuid::new_v4().simple());
    let app = redis_api(&prefix, &redis_url, &resolve).await;
    // The Redis connection is made in the background; on a loaded machine it can take longer
    // than `/readyz`'s probe, so wait for it (with a deadline) before relying on pub/sub.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, ready) = app.get_json("/readyz").await;
        if ready["checks"]["redis"] == "ok" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis never became ready: {ready}"
        );
        // Wall-clock: the app's connection to a real Redis.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _worker: ChildGuard = app.spawn_worker_process(&[("WORKER_CONCURRENCY", "4")]);
    let job_id = app.create_job("live", &domains).await;
    let delivery = watch(app.ws().await, Protocol::TransportWs, &job_id).await;
    check_delivery(&app, &job_id, &domains, &delivery).await;
    assert!(
        delivery.events.len() >= 3,
        "live events, not only re-reads: {:?}",
        delivery.events
    );
    app.stop().await;
}

/// Readiness probes give up after 1 s by default: `/readyz` must answer well within that while
/// Redis hangs (process stopped: connected, silent) and after it died (connection refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_quickly_whatever_redis_does() {
    if !crate::services::available("redis-server", crate::services::on_path("redis-server")) {
        return;
    }
    let redis = OwnRedis::start_on_free_port().expect("redis-server starts on a free port");
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[("REDIS_URL", &redis.url()), ("REDIS_PREFIX", "ff-readyz")],
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get_json("/readyz").await.1["checks"]["redis"] != "ok" {
        assert!(tokio::time::Instant::now() < deadline, "Redis never ok");
        // Wall-clock: the app's connection to a real Redis.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let timed = |app: &TestApp| {
        let url = app.url("/readyz");
        let http = app.http.clone();
        async move {
            let started = std::time::Instant::now();
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (started.elapsed(), status, body)
        }
    };
    let pid = redis.pid();
    crate::helpers::signal(pid, rustix::process::Signal::STOP);
    let (took, status, body) = timed(&app).await;
    crate::helpers::signal(pid, rustix::process::Signal::CONT);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(took < Duration::from_millis(900), "a hung Redis: {took:?}");

    drop(redis);
    let (took, status, body) = timed(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(took < Duration::from_millis(900), "Redis gone: {took:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_job_still_ends_the_subscription_correctly() {
    if !crate::services::available("TEST_DATABASE_URL", postgres_url().is_some())
        || !crate::services::available("redis-server", crate::services::on_path("redis-server"))
    {
        return;
    }
    let mut redis = OwnRedis::start_on_free_port().expect("redis-server starts on a free port");
    let (internet, domains) = slow_world(40, Duration::from_millis(200)).await;
    let resolve = internet.resolve(&[]);
    let app = redis_api("ff-restart", &redis.url(), &resolve).await;
    let _worker = app.spawn_worker_process(&[("WORKER_CONCURRENCY", "4")]);
    let job_id = app.create_job("live", &domains).await;
    let watcher = tokio::spawn({
        let base = app.base.clone();
        let job_id = job_id.clone();
        async move {
            let ws = ws_connect(&base, "/graphql/ws", Protocol::TransportWs).await;
            watch(ws, Protocol::TransportWs, &job_id).await
        }
    });
    // Redis goes away mid-job (some rows done, most not) and stays away while the job moves
    // on by a third of its rows.
    wait_until("the job to be under way", || async {
        rows_done(&app, &job_id).await >= 5
    })
    .await;
    redis.stop();
    wait_until("/readyz to see Redis gone", || async {
        app.get_json("/readyz").await.1["status"] == "degraded"
    })
    .await;
    let (_, ready) = app.get_json("/readyz").await;
    assert!(
        ready["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{ready}"
    );
    let at_outage = rows_done(&app, &job_id).await;
    wait_until("the job to move on without Redis", || async {
        rows_done(&app, &job_id).await >= at_outage + 12
    })
    .await;
    assert!(
        rows_done(&app, &job_id).await < domains.len() as i64,
        "the job must still be running when Redis comes back"
    );
    redis.restart();
    let delivery = watcher.await.unwrap();
    assert!(
        delivery.completed && delivery.errors.is_empty(),
        "{delivery:?}"
    );
    let (_, job) = app.get_json(&format!("/jobs/{job_id}")).await;
    assert_eq!(
        job["status"], "completed",
        "the job finished without restarting anything"
    );
    let last = delivery.events.last().unwrap();
    assert_eq!(last["status"], "COMPLETED");
    assert_eq!(last["completed"], job["completed"]);
    assert_eq!(last["completed"], domains.len() as i64);
    app.stop().await;
}
