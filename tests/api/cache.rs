//! The cross-job cache: a domain found recently is answered from the stored result, without
//! a request; permanent failures are reused for a shorter time, transient ones never.

use crate::fake::{FakeInternet, Route, Sites, dead_addr, png};
use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::{Value, json};
use std::time::Duration;

async fn run_job(app: &TestApp, domains: &[&str], extra: Value) -> (Value, Vec<Value>) {
    let mut body = json!({"client_id": "cache", "domains": domains});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, created) = app.post_json("/jobs", &body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["job_id"].as_str().unwrap().to_owned();
    let job = app.finish_job(&id, Duration::from_secs(30)).await;
    let (_, page) = app
        .get_json(&format!("/jobs/{id}/results?per_page=100"))
        .await;
    (job, page["results"].as_array().unwrap().clone())
}

fn by_domain<'a>(results: &'a [Value], domain: &str) -> &'a Value {
    results.iter().find(|r| r["domain"] == domain).unwrap()
}

async fn second_job_is_served_from_the_cache(backend: Backend) {
    let mut sites = Sites::default();
    sites
        .page("good.test", r#"<link rel=icon href=/i.png>"#)
        .file("good.test", "/i.png", "image/png", &png(32, 32));
    sites.page("bare.test", "<html></html>");
    let internet = FakeInternet::start(sites).await;
    let dead = dead_addr().await;
    let resolve = internet.resolve(&[("dead.test", dead), ("www.dead.test", dead)]);
    let app = TestApp::spawn_drained(
        backend,
        &[
            ("FETCH_RESOLVE", &resolve),
            ("CACHE_FAILURE_MAX_AGE_SECS", "2"),
            // One try: the transient failure is final at once, so a drain finishes the job.
            ("FETCH_MAX_TRIES", "1"),
        ],
    )
    .await;
    let domains = ["good.test", "bare.test", "dead.test"];

    let (first_job, first) = run_job(&app, &domains, json!({})).await;
    assert_eq!(
        (
            first_job["completed"].as_i64(),
            first_job["failed"].as_i64()
        ),
        (Some(1), Some(2))
    );
    assert!(first.iter().all(|r| r["cached"] == false));
    assert_eq!(by_domain(&first, "bare.test")["error_code"], "no_icon");
    assert_eq!(by_domain(&first, "dead.test")["error_code"], "connect");
    let hits_after_first = (
        internet.host_hits("good.test"),
        internet.host_hits("bare.test"),
    );

    // Second job: the success and the permanent failure come from the cache with no request;
    // the transient failure is fetched again.
    let (second_job, second) = run_job(&app, &domains, json!({})).await;
    assert_eq!(second_job["status"], "completed");
    assert_eq!(
        (
            internet.host_hits("good.test"),
            internet.host_hits("bare.test")
        ),
        hits_after_first
    );
    for domain in ["good.test", "bare.test"] {
        let (before, now) = (by_domain(&first, domain), by_domain(&second, domain));
        assert_eq!(now["cached"], true, "{now}");
        assert_eq!(now["tries"], 0, "{now}");
        assert_eq!(
            now["fetched_at"], before["fetched_at"],
            "the time the data was fetched"
        );
        assert_eq!(now["favicon_url"], before["favicon_url"]);
        assert_eq!(now["error_code"], before["error_code"]);
        assert_eq!(now["width"], before["width"]);
    }
    let dead_now = by_domain(&second, "dead.test");
    assert_eq!(
        dead_now["cached"], false,
        "transient failures are never reused: {dead_now}"
    );
    assert!(dead_now["tries"].as_i64().unwrap() >= 1);

    // max_age_seconds 0 always fetches.
    let (_, fresh) = run_job(&app, &["good.test"], json!({"max_age_seconds": 0})).await;
    assert_eq!(fresh[0]["cached"], false);
    assert!(internet.host_hits("good.test") > hits_after_first.0);

    // A permanent failure is reused for a shorter time than a success: waiting out its
    // shorter age is the scenario, and the age is measured by the database's clock, which
    // paused tokio time cannot move, so it is a wall-clock wait.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let bare_hits = internet.host_hits("bare.test");
    let (_, later) = run_job(&app, &["good.test", "bare.test"], json!({})).await;
    assert_eq!(by_domain(&later, "good.test")["cached"], true);
    assert_eq!(by_domain(&later, "bare.test")["cached"], false);
    assert!(internet.host_hits("bare.test") > bare_hits);

    // GraphQL says so too, and a bad max age is refused.
    let answer = app
        .graphql(
            r#"mutation { createJob(input: {clientId: "g", domains: ["good.test"], maxAgeSeconds: 3600}) { id status completed } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        answer["data"]["createJob"]["status"], "COMPLETED",
        "{answer}"
    );
    let id = answer["data"]["createJob"]["id"].as_str().unwrap();
    let answer = app
        .graphql(
            &format!("{{ results(jobId: \"{id}\") {{ results {{ cached fetchedAt }} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(
        answer["data"]["results"]["results"][0]["cached"], true,
        "{answer}"
    );
    let (status, error) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "c", "domains": ["a.test"], "max_age_seconds": -1}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("INVALID_INPUT"))
    );
    app.stop().await;
}
both_backends!(cross_job_cache, second_job_is_served_from_the_cache);

/// A page links `/i.png` and `/i.png` never answers: nobody said it is not an icon, so the
/// domain is a transient `timeout` (retried with backoff), never `no_icon`, and a later job
/// asks the site again instead of reusing the failure.
async fn a_linked_icon_that_never_answers_is_retried_and_never_cached(backend: Backend) {
    let mut sites = Sites::default();
    sites
        .page("silent.test", "<link rel=icon href=/i.png>")
        .route(
            "silent.test",
            "/i.png",
            Route::new(200, "image/png", png(16, 16)).with_delay(Duration::from_secs(3600)),
        );
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(
        backend,
        &internet,
        &[
            ("FETCH_TIMEOUT_SECS", "2"),
            ("FETCH_MAX_TRIES", "2"),
            ("CACHE_FAILURE_MAX_AGE_SECS", "3600"),
        ],
    )
    .await;

    let (job, first) = run_job(&app, &["silent.test"], json!({})).await;
    assert_eq!(job["failed"], 1, "{job}");
    let row = &first[0];
    assert_eq!(row["error_code"], "timeout", "{row}");
    assert_eq!(row["tries"], 2, "a transient failure is retried: {row}");
    assert_eq!(internet.hits("silent.test", "/i.png"), 2);

    let (_, second) = run_job(&app, &["silent.test"], json!({})).await;
    let row = &second[0];
    assert_eq!(row["cached"], false, "never reused as a negative: {row}");
    assert_eq!(row["error_code"], "timeout", "{row}");
    assert_eq!(internet.hits("silent.test", "/i.png"), 4);
    app.stop().await;
}
both_backends!(
    unanswered_icon_is_transient,
    a_linked_icon_that_never_answers_is_retried_and_never_cached
);
