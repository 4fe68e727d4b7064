//! The job page of a finished job: nothing is left to stop.

use crate::cdp::{Browser, chromium};
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp};
use serde_json::json;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

/// Whether the page offers Stop: the button exists and is rendered.
const STOP_OFFERED: &str =
    "(() => { const s = document.querySelector('#stop'); return !!s && s.checkVisibility(); })()";

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
