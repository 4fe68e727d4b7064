//! Politeness: however many domains share a host (icons on one CDN), at most
//! `FETCH_PER_HOST_CONCURRENCY` requests to it are in flight at once; however many names point
//! at one address, at most `FETCH_PER_ADDRESS_CONCURRENCY` requests reach that address. The
//! queue those limits make is ours, not the sites': waiting in it is never charged to a
//! site's deadline, so with far more sites than slots every site still finds its icon.
//!
//! These are one process's limits (the embedded default); the same limits across worker
//! processes sharing Redis are `tests/faults/politeness.rs`. The live-worker count a worker's
//! share is made from without Redis is checked here on both databases.

use crate::fake::{FakeInternet, Route, Sites, png};
use crate::helpers::{Backend, TestApp, TestDb, both_backends};
use favicon_finder::domain::Domain;
use favicon_finder::store::{CachePolicy, Store};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

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
    let (job, _) = run_job_at(&internet.resolve(&[]), domains, settings).await;
    (internet, job)
}

/// Runs one job of `domains` with `FETCH_RESOLVE` set to `resolve` and `settings`, to its
/// end; returns the finished job and its failed rows as `domain: error`.
async fn run_job_at(
    resolve: &str,
    domains: &[String],
    settings: &[(&str, &str)],
) -> (serde_json::Value, Vec<String>) {
    let mut vars = vec![("FETCH_RESOLVE", resolve)];
    vars.extend_from_slice(settings);
    let app = TestApp::spawn(Backend::Sqlite, &vars).await;
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "p", "domains": domains}))
        .await;
    let id = created["job_id"].as_str().unwrap();
    let job = app.wait_for_job(id, Duration::from_secs(120)).await;
    let (_, failed) = app
        .get_json(&format!("/jobs/{id}/results?status=failed&per_page=500"))
        .await;
    let failed = failed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{}: {}", r["domain"], r["error"]))
        .collect();
    app.stop().await;
    (job, failed)
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

/// A request's latency in the crowded scenarios below: 50 to 250 ms, 150 on average, varied
/// by site and path so that requests finish out of step.
fn latency(i: usize, salt: usize) -> Duration {
    Duration::from_millis(50 + ((i * 37 + salt * 101) % 201) as u64)
}

/// What the crowded scenarios set: one try (a timeout is a failure, not retried away), a 2 s
/// deadline (well over a site's own time, so a busy machine does not fail one), 128 domains
/// in flight (the README's starting point per core) and the default politeness limits: 4
/// requests per host, 16 per address.
const CROWDED: &[(&str, &str)] = &[
    ("FETCH_MAX_TRIES", "1"),
    ("FETCH_TIMEOUT_SECS", "2"),
    ("WORKER_CONCURRENCY", "128"),
    ("FETCH_PER_HOST_CONCURRENCY", "4"),
    ("FETCH_PER_ADDRESS_CONCURRENCY", "16"),
];

/// Shared hosting: 240 icon sites on one address, every request answered in 50–250 ms, a
/// quarter of the sites behind an apex→www redirect and a quarter behind a bot wall that lets
/// the browser-like retry through. That is more sites than the per-address limit ×
/// (deadline / latency) = 16 × (2 s / 0.15 s) ≈ 213, so they queue for far longer than their
/// own deadline. The queue is ours, not theirs: every site finds its icon, and the server
/// never sees more than the limit in flight at once, redirect hops and retries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowded_shared_address_queues_without_failing_a_site() {
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..240 {
        let host = format!("site{i}.test");
        let home = if i % 4 == 0 {
            sites.route(
                &host,
                "/",
                Route::redirect(301, &format!("http://www.{host}/")).with_delay(latency(i, 2)),
            );
            format!("www.{host}")
        } else {
            host.clone()
        };
        let page = Route::html("<link rel=icon href=/i.png>").with_delay(latency(i, 0));
        if i % 4 == 1 {
            sites.browser_only(&home, "/", page);
        } else {
            sites.route(&home, "/", page);
        }
        sites.route(
            &home,
            "/i.png",
            Route::new(200, "image/png", png(16, 16)).with_delay(latency(i, 1)),
        );
        domains.push(host);
    }
    let internet = FakeInternet::start(sites).await;
    let (job, failed) = run_job_at(&internet.resolve(&[]), &domains, CROWDED).await;
    assert_eq!(
        job["completed"], 240,
        "waiting for our own slots fails no site: {job}\n{failed:#?}"
    );
    let most = internet.max_concurrent_total();
    assert!(most <= 16, "{most} requests at one address at once");
    assert!(
        most >= 12,
        "the limit is reached, so the test can tell: {most}"
    );
}

/// A CDN serving 120 sites' icons, on an address of its own, each icon answered in
/// 50–250 ms: more sites than the per-host limit × (deadline / latency) = 4 × (2 s / 0.15 s)
/// ≈ 53. Every site finds its icon, and the CDN never sees more than 4 requests at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowded_cdn_host_queues_without_failing_a_site() {
    let mut cdn = Sites::default();
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..120 {
        let host = format!("shop{i}.test");
        sites.page(
            &host,
            &format!(r#"<link rel=icon href="http://cdn.test/icons/{i}.png">"#),
        );
        cdn.route(
            "cdn.test",
            &format!("/icons/{i}.png"),
            Route::new(200, "image/png", png(16, 16)).with_delay(latency(i, 0)),
        );
        domains.push(host);
    }
    let cdn = FakeInternet::start_at(cdn, std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    let shops = FakeInternet::start(sites).await;
    let resolve = shops.resolve(&[("cdn.test", cdn.addr)]);
    let (job, failed) = run_job_at(&resolve, &domains, CROWDED).await;
    assert_eq!(
        job["completed"], 120,
        "waiting for the CDN's slots fails no site: {job}\n{failed:#?}"
    );
    let most = cdn.max_concurrent("cdn.test");
    assert!(most <= 4, "{most} requests to one host at once");
    assert!(
        most >= 3,
        "the limit is reached, so the test can tell: {most}"
    );
    assert_eq!(
        cdn.max_concurrent_total(),
        most,
        "the CDN's address is its own"
    );
    assert!(shops.max_concurrent_total() <= 16);
}

/// Without Redis, a worker's share of the politeness limits is made from the live workers:
/// the distinct owners of row leases that have not run out, on both databases.
async fn live_workers_are_the_owners_of_live_leases(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let domains: Vec<Domain> = ["a.test", "b.test", "c.test", "d.test"]
        .iter()
        .map(|d| Domain::parse(d).unwrap())
        .collect();
    store
        .create_job("polite", &domains, CachePolicy::OFF)
        .await
        .unwrap();
    assert_eq!(
        store.live_workers().await.unwrap(),
        0,
        "no lease, no worker"
    );
    let long = Duration::from_secs(30);
    let (a, b, gone) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(store.claim(a, 2, long, 3).await.unwrap().len(), 2);
    assert_eq!(store.claim(b, 1, long, 3).await.unwrap().len(), 1);
    assert_eq!(
        store
            .claim(gone, 1, Duration::from_millis(1), 3)
            .await
            .unwrap()
            .len(),
        1
    );
    // Wall-clock: leases end on the database's timestamps, which no tokio clock moves.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store.live_workers().await.unwrap(),
        2,
        "two rows of one worker count once; a lease run out counts not at all"
    );
}
both_backends!(live_workers, live_workers_are_the_owners_of_live_leases);
