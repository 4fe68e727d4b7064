//! The job page of a finished job: nothing is left to stop, and the counts panel keeps each
//! label with its value, on a desktop and on a phone.

use crate::cdp::{Browser, chromium};
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

/// Whether the page offers Stop: the button exists and is rendered.
const STOP_OFFERED: &str =
    "(() => { const s = document.querySelector('#stop'); return !!s && s.checkVisibility(); })()";

/// Each count of the panel: its label's text, its key, and both boxes.
const COUNT_BOXES: &str = "[...document.querySelectorAll('#job-counts dd')].map(dd => { \
     const dt = dd.previousElementSibling; \
     const box = (e) => { const r = e.getBoundingClientRect(); \
       return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; }; \
     return {key: dd.dataset.key, label: dt && dt.tagName === 'DT' ? dt.textContent : null, \
             dt: dt ? box(dt) : null, dd: box(dd)}; })";

/// A job of `domains` through the API, waited for until it ends.
async fn finished_job(app: &TestApp, domains: &[String]) -> String {
    let id = app.create_job("dashboard", domains).await;
    app.wait_for_job(&id, LONG).await;
    id
}

/// Opens job `id`'s page and waits for it to show `status`.
async fn open_job(browser: &Browser, app: &TestApp, id: &str, status: &str) {
    browser.goto(&app.url(&format!("/#/jobs/{id}"))).await;
    browser
        .wait_for(
            &format!(
                "document.querySelector('#job-status')?.textContent === {status:?} && \
                 document.querySelector('#job-counts dd')"
            ),
            LONG,
            &format!("the page of the {status} job"),
        )
        .await;
}

/// Every count's value sits with its own label: directly under it (same left edge, just
/// below) or directly beside it (same line, just after). Panics with the boxes otherwise.
fn assert_counts_paired(boxes: &Value, width: u32) {
    let pairs = boxes.as_array().unwrap();
    let keys: Vec<&str> = pairs.iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        ["done", "found", "failed", "rate", "eta"],
        "at {width} px"
    );
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    for pair in pairs {
        let key = pair["key"].as_str().unwrap();
        assert_eq!(
            pair["label"].as_str().map(str::to_lowercase).as_deref(),
            Some(key),
            "at {width} px the value {key} follows no label of its own: {pair}"
        );
        let (dt, dd) = (&pair["dt"], &pair["dd"]);
        let under = (f(dd, "left") - f(dt, "left")).abs() <= 1.0
            && f(dd, "top") >= f(dt, "bottom") - 1.0
            && f(dd, "top") - f(dt, "bottom") <= 8.0;
        let beside = (f(dd, "top") - f(dt, "top")).abs() <= 4.0
            && f(dd, "left") >= f(dt, "right") - 1.0
            && f(dd, "left") - f(dt, "right") <= 24.0;
        assert!(
            under || beside,
            "at {width} px the value of {key} is neither under nor beside its label: {pair}"
        );
    }
    // No two counts overlap.
    for (i, a) in pairs.iter().enumerate() {
        for b in &pairs[i + 1..] {
            for (x, y) in [
                (&a["dt"], &b["dt"]),
                (&a["dd"], &b["dd"]),
                (&a["dd"], &b["dt"]),
            ] {
                let apart = f(x, "right") <= f(y, "left") + 0.5
                    || f(y, "right") <= f(x, "left") + 0.5
                    || f(x, "bottom") <= f(y, "top") + 0.5
                    || f(y, "bottom") <= f(x, "top") + 0.5;
                assert!(apart, "at {width} px {a} overlaps {b}");
            }
        }
    }
}

/// An app whose workers reach `sites`, two at a time.
async fn app_over(sites: Sites) -> (FakeInternet, TestApp) {
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve_exact(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("FETCH_RESOLVE", resolve.as_str()),
            ("WORKER_CONCURRENCY", "2"),
        ],
    )
    .await;
    (internet, app)
}

/// Completed, failed as a whole or cancelled: the page hides Stop (issue 25, point 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_jobs_page_offers_no_stop() {
    let Some(binary) = chromium() else { return };
    let mut sites = Sites::default();
    let found: Vec<String> = (0..4).map(|i| format!("done{i}.test")).collect();
    for host in &found {
        sites.icon_site(host);
    }
    // Slow enough that the cancel below lands while they are still pending.
    let slow: Vec<String> = (0..6).map(|i| format!("stopped{i}.test")).collect();
    for host in &slow {
        sites.slow_icon_site(host, Duration::from_secs(3));
    }
    // Not in the fake internet: they do not resolve, so their job fails as a whole.
    let unresolved: Vec<String> = (0..3).map(|i| format!("nowhere{i}.test")).collect();
    let (_internet, app) = app_over(sites).await;

    let completed = finished_job(&app, &found).await;
    let failed = finished_job(&app, &unresolved).await;
    let cancelled = app.create_job("dashboard", &slow).await;
    let answer = app
        .graphql(
            "mutation($id: ID!) { cancelJob(id: $id) { status } }",
            json!({"id": cancelled}),
        )
        .await;
    assert_eq!(
        answer["data"]["cancelJob"]["status"], "CANCELLED",
        "{answer}"
    );

    let browser = Browser::launch(&binary, &app.base).await;
    browser.viewport(1280, 1000).await;
    for (id, status) in [
        (&completed, "COMPLETED"),
        (&failed, "FAILED"),
        (&cancelled, "CANCELLED"),
    ] {
        open_job(&browser, &app, id, status).await;
        assert_eq!(
            browser.eval(STOP_OFFERED).await,
            json!(false),
            "Stop is offered on a {status} job"
        );
    }
    assert_eq!(browser.blocked(), Vec::<String>::new());
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

/// At 1280 px the counts once ran on in one grid of labels and values, so a value could
/// wrap under another count's label; at 375 px too, each value stays with its own label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_count_keeps_its_label_on_a_desktop_and_a_phone() {
    let Some(binary) = chromium() else { return };
    let mut sites = Sites::default();
    let found: Vec<String> = (0..4).map(|i| format!("done{i}.test")).collect();
    for host in &found {
        sites.icon_site(host);
    }
    let (_internet, app) = app_over(sites).await;
    let completed = finished_job(&app, &found).await;

    let browser = Browser::launch(&binary, &app.base).await;
    browser.viewport(1280, 1000).await;
    open_job(&browser, &app, &completed, "COMPLETED").await;
    browser
        .screenshot("target/screenshots/job-finished-1280.png")
        .await;
    assert_counts_paired(&browser.eval(COUNT_BOXES).await, 1280);

    // The same page on a phone: the layout follows the viewport without a reload.
    browser.viewport(375, 800).await;
    browser
        .screenshot("target/screenshots/job-finished-375.png")
        .await;
    assert_counts_paired(&browser.eval(COUNT_BOXES).await, 375);
    let width = browser.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_u64().unwrap() <= 375,
        "the page is {width} px wide at 375"
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

/// A running job's page says who it shares the workers with instead of a silent 0 %: here no
/// worker runs, so beta's job waits beside alpha's, and the page says so (counts only, no
/// name), with the job's priority; once the job is final the line goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_job_says_who_it_shares_the_workers_with() {
    let Some(binary) = chromium() else { return };
    // The API alone: nothing fetches, so the queue stays as created.
    let app = TestApp::spawn_api(Backend::Sqlite, &[]).await;
    let alpha: Vec<String> = (0..1200).map(|i| format!("alpha{i}.test")).collect();
    app.create_job("alpha", &alpha).await;
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "beta", "domains": ["beta0.test", "beta1.test"], "priority": "high"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let beta = created["job_id"].as_str().unwrap().to_owned();

    let browser = Browser::launch(&binary, &app.base).await;
    browser.viewport(1280, 1000).await;
    open_job(&browser, &app, &beta, "PROCESSING").await;
    let line = browser
        .wait_for(
            "document.querySelector('#job-queue')?.textContent || null",
            LONG,
            "the job's standing",
        )
        .await;
    assert_eq!(
        line,
        json!(
            "Waiting for a worker. Sharing the workers with 1 other client \
             (1,200 of their domains waiting)."
        )
    );
    assert!(!line.to_string().contains("alpha"), "{line}");
    assert_eq!(
        browser
            .eval("document.querySelector('#job-priority').textContent")
            .await,
        json!("high priority")
    );

    // The other wordings, from the page's own module: a job being fetched beside others,
    // alone, and between two of its fetches.
    let words = browser
        .eval(
            "import('/assets/js/job.js').then((m) => [\
               m.standingText({pending: 30, inFlight: 12, otherJobs: 4, otherClients: 3, \
                               otherClientsPending: 20000}, 5), \
               m.standingText({pending: 3, inFlight: 1, otherJobs: 0, otherClients: 0, \
                               otherClientsPending: 0}, 0), \
               m.standingText({pending: 3, inFlight: 0, otherJobs: 1, otherClients: 1, \
                               otherClientsPending: 7}, 2), \
               m.standingText(null, 0)])",
        )
        .await;
    assert_eq!(
        words,
        json!([
            "Sharing the workers with 3 other clients (20,000 of their domains waiting); \
             12 of this job's domains are being fetched now.",
            "No other client's work is waiting; 1 of this job's domains is being fetched now.",
            "Sharing the workers with 1 other client (7 of their domains waiting); \
             none of this job's domains is being fetched at this moment.",
            "",
        ])
    );

    let answer = app
        .graphql(
            "mutation($id: ID!) { cancelJob(id: $id) { status } }",
            json!({"id": beta}),
        )
        .await;
    assert_eq!(
        answer["data"]["cancelJob"]["status"], "CANCELLED",
        "{answer}"
    );
    open_job(&browser, &app, &beta, "CANCELLED").await;
    assert_eq!(
        browser
            .eval("document.querySelector('#job-queue').checkVisibility()")
            .await,
        json!(false),
        "a final job still shows its standing"
    );
    assert_eq!(browser.blocked(), Vec::<String>::new());
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}
