//! Fair claims (issue 28): no client's job waits behind another client's big one, one job of
//! silent sites cannot take every slot, and a high-priority job gets twice a normal one's
//! slots.
//!
//! The end-to-end cases run on SQLite (the embedded app, API and worker in one process) and on
//! PostgreSQL (an API-only app and two `worker` processes). Each web a case needs is a fake
//! internet of its own on its own loopback address, so the per-address politeness of one
//! never slows the other.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, ChildGuard, TestApp, TestDb, both_backends};
use favicon_finder::config::DEFAULT_JOB_SHARE;
use favicon_finder::domain::Domain;
use favicon_finder::model::Priority;
use favicon_finder::model::fair::per_job_cap;
use favicon_finder::store::{CachePolicy, Store};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How long each of alpha's sites takes to answer: slow, as much of the real web is.
const ALPHA_LATENCY: Duration = Duration::from_millis(600);
/// How long each of beta's sites takes.
const BETA_LATENCY: Duration = Duration::from_millis(50);
/// Beta's 20 domains need about one of their sites' latency each, a few at a time; this
/// leaves room for a noisy machine, and is far below the ten minutes alpha's 20,000 slow
/// sites need on the slots beta would otherwise wait behind.
const BETA_WITHIN: Duration = Duration::from_secs(10);
/// The worker slots of the whole deployment in every case, split between its processes.
const SLOTS: usize = 64;

/// The app of a case and its worker processes: on SQLite the app works the queue itself, on
/// PostgreSQL an API-only app and two workers share [`SLOTS`].
async fn fleet(backend: Backend, vars: &[(&str, &str)]) -> (TestApp, Vec<ChildGuard>, usize) {
    match backend {
        Backend::Sqlite => {
            let slots = SLOTS.to_string();
            let mut all = vec![("WORKER_CONCURRENCY", slots.as_str())];
            all.extend_from_slice(vars);
            (TestApp::spawn(backend, &all).await, Vec::new(), 1)
        }
        Backend::Postgres => {
            let app = TestApp::spawn_api(backend, vars).await;
            let slots = (SLOTS / 2).to_string();
            let workers = (0..2)
                .map(|_| app.spawn_worker_process(&[("WORKER_CONCURRENCY", &slots)]))
                .collect();
            (app, workers, 2)
        }
    }
}

/// `n` domains named `{prefix}{i}.test`.
fn hosts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}.test")).collect()
}

/// Waits until `web` has seen home-page requests from at least `n` hosts.
async fn wait_for_arrivals(web: &FakeInternet, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while web.arrived().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} hosts were asked for within {within:?}",
            web.arrived().len()
        );
        // Wall-clock: the workers fetch over real sockets, in this process or others.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a job and says how many of its domains are finished.
async fn finished(app: &TestApp, job: &str) -> i64 {
    let (_, body) = app.get_json(&format!("/jobs/{job}")).await;
    body["completed"].as_i64().unwrap() + body["failed"].as_i64().unwrap()
}

/// Cancels a job, so its sites stop being fetched and the case can end.
async fn cancel(app: &TestApp, job: &str) {
    let (status, body) = app
        .post_json(&format!("/jobs/{job}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
}

fn assert_completed(job: &Value, total: i64) {
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["completed"], total, "{job}");
}

async fn beta_does_not_wait_behind_alphas_big_job(backend: Backend) {
    let alpha_web = FakeInternet::start(Sites::every_host(ALPHA_LATENCY)).await;
    let beta_web =
        FakeInternet::start_at(Sites::every_host(BETA_LATENCY), Ipv4Addr::new(127, 0, 0, 2)).await;
    let beta = hosts("beta", 20);
    let to_beta: Vec<(&str, SocketAddr)> =
        beta.iter().map(|h| (h.as_str(), beta_web.addr)).collect();
    let resolve = alpha_web.resolve(&to_beta);
    let vars = [
        ("FETCH_RESOLVE", resolve.as_str()),
        ("FETCH_PER_ADDRESS_CONCURRENCY", "10000"),
    ];
    let (app, _workers, _) = fleet(backend, &vars).await;
    let alpha_job = app.create_job("alpha", &hosts("alpha", 20_000)).await;
    // Alpha's slow sites hold the slots before beta comes.
    wait_for_arrivals(&alpha_web, SLOTS / 2, Duration::from_secs(30)).await;
    let submitted = Instant::now();
    let beta_job = app.create_job("beta", &beta).await;
    let job = app.wait_for_job(&beta_job, BETA_WITHIN).await;
    let took = submitted.elapsed();
    assert_completed(&job, 20);
    // Alpha's queue is nowhere near drained: beta did not wait its turn behind it.
    let alpha_done = finished(&app, &alpha_job).await;
    assert!(
        alpha_done < 2_000,
        "alpha finished {alpha_done} domains: beta may have waited for alpha's queue"
    );
    eprintln!("beta's 20 domains took {took:?} behind alpha's 20,000 ({alpha_done} done)");
    cancel(&app, &alpha_job).await;
    app.stop().await;
}
both_backends!(beta_behind_alpha, beta_does_not_wait_behind_alphas_big_job);

async fn silent_sites_leave_a_healthy_job_its_pace(backend: Backend) {
    // Accepts every connection and reads the request, then never answers within the test.
    let silent_web = FakeInternet::start(Sites::every_host(Duration::from_secs(3600))).await;
    let healthy_web = FakeInternet::start_at(
        Sites::every_host(Duration::from_millis(200)),
        Ipv4Addr::new(127, 0, 0, 3),
    )
    .await;
    let (first, second) = (hosts("alone", 40), hosts("beside", 40));
    let to_healthy: Vec<(&str, SocketAddr)> = first
        .iter()
        .chain(&second)
        .map(|h| (h.as_str(), healthy_web.addr))
        .collect();
    let resolve = silent_web.resolve(&to_healthy);
    // The silent sites' deadline is far past anything the healthy job may take.
    let vars = [
        ("FETCH_RESOLVE", resolve.as_str()),
        ("FETCH_PER_ADDRESS_CONCURRENCY", "10000"),
        ("FETCH_TIMEOUT_SECS", "120"),
    ];
    let (app, _workers, processes) = fleet(backend, &vars).await;
    // The healthy job's own time, with nothing else queued.
    let started = Instant::now();
    let alone = app.create_job("healthy", &first).await;
    assert_completed(&app.wait_for_job(&alone, Duration::from_secs(30)).await, 40);
    let alone_took = started.elapsed();
    let silent_job = app.create_job("silent", &hosts("silent", SLOTS)).await;
    let capped = processes * per_job_cap(SLOTS / processes, DEFAULT_JOB_SHARE);
    wait_for_arrivals(&silent_web, capped, Duration::from_secs(30)).await;
    let started = Instant::now();
    let beside = app.create_job("healthy", &second).await;
    // Generous for a noisy machine, and a small fraction of the silent sites' deadline.
    let within = alone_took * 3 + Duration::from_secs(5);
    let job = app.wait_for_job(&beside, within).await;
    let beside_took = started.elapsed();
    assert_completed(&job, 40);
    assert_eq!(
        finished(&app, &silent_job).await,
        0,
        "the silent sites must still hold their slots for the case to mean anything"
    );
    eprintln!("healthy job alone {alone_took:?}, beside 64 silent sites {beside_took:?}");
    cancel(&app, &silent_job).await;
    app.stop().await;
}
both_backends!(silent_sites, silent_sites_leave_a_healthy_job_its_pace);

async fn a_high_job_gets_twice_the_slots_of_a_normal_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let domains = |prefix: &str| -> Vec<Domain> {
        hosts(prefix, 100)
            .iter()
            .map(|h| Domain::parse(h).unwrap())
            .collect()
    };
    // The normal job is the older: a first-in-first-out claim would give it every slot.
    let normal = store
        .create_job_from(
            "alpha",
            None,
            Priority::Normal,
            &domains("n"),
            CachePolicy::OFF,
        )
        .await
        .unwrap();
    let high = store
        .create_job_from(
            "beta",
            None,
            Priority::High,
            &domains("h"),
            CachePolicy::OFF,
        )
        .await
        .unwrap();
    let lease = Duration::from_secs(60);
    let claimed = store.claim(Uuid::new_v4(), 60, lease, 3).await.unwrap();
    let mut per_job: HashMap<Uuid, usize> = HashMap::new();
    for claim in &claimed {
        *per_job.entry(claim.job_id).or_default() += 1;
    }
    assert_eq!(per_job.get(&high.id), Some(&40), "{per_job:?}");
    assert_eq!(per_job.get(&normal.id), Some(&20), "{per_job:?}");
}
both_backends!(priorities, a_high_job_gets_twice_the_slots_of_a_normal_one);

/// The measurement behind `WORKER_MAX_SHARE_PER_JOB`'s default (README, "Fair claims"): one
/// bulk job of 3,000 domains on a fast fake web (no latency, no per-address limit), on the
/// embedded app with the default 64 slots, under shares 1.0, 0.75 and 0.5, interleaved over
/// five rounds in one run. Prints each run's domains per second; asserts only that every
/// job completes. Run with `cargo test --test api -- --ignored share_throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run by hand"]
async fn share_throughput() {
    const DOMAINS: usize = 3_000;
    const ROUNDS: usize = 5;
    let web = FakeInternet::start(Sites::every_host(Duration::ZERO)).await;
    let resolve = web.resolve(&[]);
    let mut rates: HashMap<&str, Vec<f64>> = HashMap::new();
    for round in 0..ROUNDS {
        for share in ["1.0", "0.75", "0.5"] {
            let vars = [
                ("FETCH_RESOLVE", resolve.as_str()),
                ("FETCH_PER_ADDRESS_CONCURRENCY", "10000"),
                ("WORKER_CONCURRENCY", "64"),
                ("CACHE_MAX_AGE_SECS", "0"),
                ("WORKER_MAX_SHARE_PER_JOB", share),
            ];
            let app = TestApp::spawn(Backend::Sqlite, &vars).await;
            let started = Instant::now();
            let job = app
                .create_job("bulk", &hosts(&format!("r{round}s{share}-"), DOMAINS))
                .await;
            assert_completed(
                &app.wait_for_job(&job, Duration::from_secs(300)).await,
                DOMAINS as i64,
            );
            let rate = DOMAINS as f64 / started.elapsed().as_secs_f64();
            eprintln!("round {round}, share {share}: {rate:.0} domains/s");
            rates.entry(share).or_default().push(rate);
            app.stop().await;
        }
    }
    for (share, runs) in &rates {
        let mut runs = runs.clone();
        runs.sort_by(f64::total_cmp);
        eprintln!(
            "share {share}: median {:.0} domains/s of {runs:.0?}",
            runs[1]
        );
    }
}
