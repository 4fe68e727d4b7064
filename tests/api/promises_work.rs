//! Promises about how work is done that no other test held the service to: a transient
//! failure that succeeds on retry, `Retry-After` honoured, a domain that finishes within the
//! shutdown grace being recorded, and the cross-job cache's "most recent outcome decides"
//! and "answered only from cached failures is `failed`" rules.

use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A site whose answers a test changes while it runs (the shared fake internet's are fixed
/// at start): per host, how many `429`s to send before the icon page, a `Retry-After` for
/// them, whether it has an icon at all, and a delay; and when each home page was asked for.
#[derive(Clone, Default)]
struct Flaky {
    plans: Arc<Mutex<HashMap<String, Plan>>>,
    visits: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    /// Whether icons are served (cleared to turn every site into a permanent `no_icon`).
    icons: Arc<AtomicBool>,
}

#[derive(Clone, Default)]
struct Plan {
    refusals: usize,
    retry_after: Option<&'static str>,
    delay: Duration,
}

impl Flaky {
    async fn start() -> (Self, SocketAddr) {
        let flaky = Self::default();
        flaky.icons.store(true, Ordering::SeqCst);
        let state = flaky.clone();
        let app = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, uri: axum::http::Uri| {
                let state = state.clone();
                async move { state.answer(&headers, uri.path()).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (flaky, addr)
    }

    fn plan(&self, host: &str, plan: Plan) {
        self.plans.lock().unwrap().insert(host.to_owned(), plan);
    }

    fn visits(&self, host: &str) -> Vec<Instant> {
        self.visits
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .unwrap_or_default()
    }

    async fn answer(
        &self,
        headers: &axum::http::HeaderMap,
        path: &str,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        if path == "/i.png" && self.icons.load(Ordering::SeqCst) {
            return ([("content-type", "image/png")], crate::fake::png(16, 16)).into_response();
        }
        if path != "/" {
            return axum::http::StatusCode::NOT_FOUND.into_response();
        }
        let seen = {
            let mut visits = self.visits.lock().unwrap();
            let list = visits.entry(host.clone()).or_default();
            list.push(Instant::now());
            list.len()
        };
        let plan = self
            .plans
            .lock()
            .unwrap()
            .get(&host)
            .cloned()
            .unwrap_or_default();
        if seen <= plan.refusals {
            let mut response =
                (axum::http::StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
            if let Some(secs) = plan.retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", secs.parse().unwrap());
            }
            return response;
        }
        // A fake server's delay: the worker under test meets it on a real socket.
        tokio::time::sleep(plan.delay).await;
        let page = if self.icons.load(Ordering::SeqCst) {
            "<html><head><link rel=icon href=/i.png></head></html>"
        } else {
            "<html><head><title>no icon here</title></head></html>"
        };
        axum::response::Html(page).into_response()
    }
}

fn resolve(addr: SocketAddr, hosts: &[&str]) -> String {
    hosts
        .iter()
        .flat_map(|h| [format!("{h}={addr}"), format!("www.{h}={addr}")])
        .collect::<Vec<_>>()
        .join(",")
}

async fn results(app: &TestApp, job: &str) -> Vec<Value> {
    let (status, page) = app
        .get_json(&format!("/jobs/{job}/results?per_page=100"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["results"].as_array().unwrap().clone()
}

fn by_domain<'a>(results: &'a [Value], domain: &str) -> &'a Value {
    results.iter().find(|r| r["domain"] == domain).unwrap()
}

async fn transient_failures_succeed_on_retry_after_the_wait_asked(backend: Backend) {
    let (flaky, addr) = Flaky::start().await;
    flaky.plan(
        "once.test",
        Plan {
            refusals: 1,
            ..Plan::default()
        },
    );
    flaky.plan(
        "wait.test",
        Plan {
            refusals: 1,
            retry_after: Some("2"),
            ..Plan::default()
        },
    );
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &resolve(addr, &["once.test", "wait.test"])),
            ("FETCH_MAX_TRIES", "3"),
            ("FETCH_RETRY_BACKOFF_MS", "50"),
        ],
    )
    .await;
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "retry", "domains": ["once.test", "wait.test"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let job = created["job_id"].as_str().unwrap().to_owned();
    let done = app.wait_for_job(&job, Duration::from_secs(30)).await;
    assert_eq!(done["completed"], 2, "{done}");
    let rows = results(&app, &job).await;
    for domain in ["once.test", "wait.test"] {
        let row = by_domain(&rows, domain);
        assert_eq!(row["status"], "success", "{row}");
        assert_eq!(row["tries"], 2, "refused once, then found: {row}");
        assert!(
            row["error"].is_null(),
            "a success keeps no retry error: {row}"
        );
    }
    // The second try of wait.test came no sooner than its Retry-After; once.test, with no
    // Retry-After, was retried after the short backoff.
    let gap = |host: &str| {
        let visits = flaky.visits(host);
        assert_eq!(visits.len(), 2, "{host}: {visits:?}");
        visits[1] - visits[0]
    };
    let (waited, backoff) = (gap("wait.test"), gap("once.test"));
    eprintln!("retry: wait.test retried after {waited:?}, once.test after {backoff:?}");
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(backoff < Duration::from_secs(2), "{backoff:?}");
    app.stop().await;
}
both_backends!(
    retry_after,
    transient_failures_succeed_on_retry_after_the_wait_asked
);

/// A domain whose fetch ends within `SHUTDOWN_GRACE_SECS` of a SIGTERM is recorded by the
/// stopping worker, not handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_finishing_within_the_grace_is_recorded() {
    let (flaky, addr) = Flaky::start().await;
    flaky.plan(
        "late.test",
        Plan {
            delay: Duration::from_millis(1500),
            ..Plan::default()
        },
    );
    let app = TestApp::spawn_api(
        Backend::Sqlite,
        &[
            ("FETCH_RESOLVE", &resolve(addr, &["late.test"])),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let (_, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "grace", "domains": ["late.test"]}),
        )
        .await;
    let job = created["job_id"].as_str().unwrap().to_owned();
    let mut worker =
        app.spawn_worker_process(&[("WORKER_CONCURRENCY", "2"), ("SHUTDOWN_GRACE_SECS", "10")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while flaky.visits("late.test").is_empty() {
        assert!(Instant::now() < deadline, "the worker never fetched");
        // Wall-clock: the worker is another process.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.terminate();
    let exit = worker.exited(Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    // Recorded by the stopped worker itself: nothing else runs on this database.
    let (_, job) = app.get_json(&format!("/jobs/{job}")).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["completed"], 1, "{job}");
    assert_eq!(flaky.visits("late.test").len(), 1, "fetched once");
    app.stop().await;
}

async fn the_cache_follows_the_most_recent_outcome(backend: Backend) {
    let (flaky, addr) = Flaky::start().await;
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &resolve(addr, &["flip.test"])),
            ("CACHE_FAILURE_MAX_AGE_SECS", "3600"),
        ],
    )
    .await;
    let run = |max_age: Option<i64>| {
        let app = &app;
        async move {
            let mut body = json!({"client_id": "cache", "domains": ["flip.test"]});
            if let Some(age) = max_age {
                body["max_age_seconds"] = json!(age);
            }
            let (status, created) = app.post_json("/jobs", &body).await;
            assert_eq!(status, 201, "{created}");
            let id = created["job_id"].as_str().unwrap().to_owned();
            let job = app.wait_for_job(&id, Duration::from_secs(30)).await;
            (created, job, results(app, &id).await.remove(0))
        }
    };
    // Found, then (fetched again) gone: the failure is newer, so it is what the cache gives.
    let (_, _, found) = run(None).await;
    assert_eq!(found["status"], "success", "{found}");
    flaky.icons.store(false, Ordering::SeqCst);
    let (_, _, gone) = run(Some(0)).await;
    assert_eq!(gone["error_code"], "no_icon", "{gone}");
    let visits = flaky.visits("flip.test").len();
    let (created, job, cached) = run(None).await;
    assert_eq!(cached["cached"], true, "{cached}");
    assert_eq!(
        cached["error_code"], "no_icon",
        "the newer outcome decides: {cached}"
    );
    assert_eq!(flaky.visits("flip.test").len(), visits, "no request");
    // A job answered only from cached failures is created already failed.
    assert_eq!(created["status"], "failed", "{created}");
    assert_eq!(job["failed"], 1, "{job}");

    // And back: found again, so the success is newer and decides.
    flaky.icons.store(true, Ordering::SeqCst);
    let (_, _, again) = run(Some(0)).await;
    assert_eq!(again["status"], "success", "{again}");
    let (created, _, cached) = run(None).await;
    assert_eq!(cached["cached"], true, "{cached}");
    assert_eq!(
        cached["status"], "success",
        "the newer outcome decides: {cached}"
    );
    assert_eq!(created["status"], "completed", "{created}");
    app.stop().await;
}
both_backends!(cache_most_recent, the_cache_follows_the_most_recent_outcome);
