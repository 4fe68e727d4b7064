//! Politeness: however many domains share a host (icons on one CDN), at most
//! `FETCH_PER_HOST_CONCURRENCY` requests to it are in flight at once; however many names point
//! at one address, at most `FETCH_PER_ADDRESS_CONCURRENCY` requests reach that address.

use crate::fake::{FakeInternet, Route, Sites, png};
use crate::helpers::{Backend, TestApp};
use serde_json::json;
use std::time::Duration;

async fn max_in_flight_to_cdn(per_host: &str) -> (usize, serde_json::Value) {
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..24 {
        let host = format!("shop{i}.test");
        sites.page(
            &host,
            &format!(r#"<link rel=icon href="http://cdn.test/icons/{i}.png">"#),
        );
        sites.route(
            "cdn.test",
            &format!("/icons/{i}.png"),
            Route::new(200, "image/png", png(16, 16)).with_delay(Duration::from_millis(150)),
        );
        domains.push(host);
    }
    let (internet, job) = run_job(
        sites,
        &domains,
        &[
            ("WORKER_CONCURRENCY", "24"),
            ("FETCH_PER_HOST_CONCURRENCY", per_host),
        ],
    )
    .await;
    (internet.max_concurrent("cdn.test"), job)
}

/// Runs one job of `domains` against `sites` with `settings`, to its end; returns the fake
/// internet (its counters) and the finished job.
async fn run_job(
    sites: Sites,
    domains: &[String],
    settings: &[(&str, &str)],
) -> (FakeInternet, serde_json::Value) {
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let mut vars = vec![("FETCH_RESOLVE", resolve.as_str())];
    vars.extend_from_slice(settings);
    let app = TestApp::spawn(Backend::Sqlite, &vars).await;
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "p", "domains": domains}))
        .await;
    let job = app
        .wait_for_job(created["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    app.stop().await;
    (internet, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_host_gets_at_most_the_per_host_limit() {
    let (limited, job) = max_in_flight_to_cdn("4").await;
    assert_eq!(
        job["completed"], 24,
        "the limit slows, it does not fail: {job}"
    );
    assert!(limited <= 4, "{limited} requests to one host at once");
    assert!(
        limited >= 2,
        "the limit is reached, so the test can tell: {limited}"
    );
    // Without a tight limit the same job does hit the host harder, so the check above can fail.
    let (loose, _) = max_in_flight_to_cdn("100").await;
    assert!(loose > 4, "{loose}");
}

/// The most requests in flight at once at the fake internet's one address, for 40 distinct
/// names whose home pages and icons are slow, with a per-address limit of `per_address`.
async fn max_in_flight_to_one_address(per_address: &str) -> (usize, serde_json::Value) {
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..40 {
        let host = format!("name{i}.test");
        sites.route(
            &host,
            "/",
            Route::new(
                200,
                "text/html",
                r#"<link rel=icon href="/i.png">"#.as_bytes().to_vec(),
            )
            .with_delay(Duration::from_millis(100)),
        );
        sites.route(
            &host,
            "/i.png",
            Route::new(200, "image/png", png(16, 16)).with_delay(Duration::from_millis(100)),
        );
        domains.push(host);
    }
    let (internet, job) = run_job(
        sites,
        &domains,
        &[
            ("WORKER_CONCURRENCY", "40"),
            ("FETCH_PER_HOST_CONCURRENCY", "4"),
            ("FETCH_PER_ADDRESS_CONCURRENCY", per_address),
            // Waiting for an address slot counts against a domain's deadline; 80 slow requests
            // through 3 slots take about 3 s alone, so the tests' usual 5 s would make a busy
            // machine fail domains this test expects to be only slowed.
            ("FETCH_TIMEOUT_SECS", "30"),
        ],
    )
    .await;
    (internet.max_concurrent_total(), job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_names_on_one_address_share_its_slots() {
    let (limited, job) = max_in_flight_to_one_address("3").await;
    assert_eq!(
        job["completed"], 40,
        "the limit slows, it does not fail: {job}"
    );
    assert!(limited <= 3, "{limited} requests to one address at once");
    assert!(
        limited >= 2,
        "the limit is reached, so the test can tell: {limited}"
    );
    // Each name alone is far under its per-host limit: only the address limit holds them.
    let (loose, _) = max_in_flight_to_one_address("1000").await;
    assert!(loose > 3, "{loose}");
}
