//! The job page across a dropped socket: it reconnects, resubscribes after the cursor of the
//! last event it had (issue 25, point 2), and the grid ends with every domain's final state.

use crate::cdp::{Browser, chromium};
use crate::common::relay::Cable;
use crate::fake::{FakeInternet, Route, Sites};
use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);
/// Each home page answers this late: with two workers, a domain finishes every 0.6 s or so.
const DELAY: Duration = Duration::from_millis(1200);
/// How long the socket stays down: several domains finish meanwhile.
const OUTAGE: Duration = Duration::from_secs(3);

/// The domains finished on the page so far, from the counts panel.
const DONE_ON_PAGE: &str =
    "Number(document.querySelector('[data-key=done]')?.textContent.split(' ')[0] || 0)";

/// Each tile of the grid: its domain and the status its class shows.
const TILES: &str = "Object.fromEntries([...document.querySelectorAll('#grid .tile')].map(t => \
     [t.dataset.domain, t.classList.contains('success') ? 'SUCCESS' : \
      t.classList.contains('failed') ? 'FAILED' : 'PENDING']))";

/// The variables of every `jobProgress` subscribe message the page sent, in order.
fn progress_subscriptions(sent: &[String]) -> Vec<Value> {
    sent.iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .filter(|m| {
            m["type"] == "subscribe"
                && m["payload"]["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("jobProgress"))
        })
        .map(|m| m["payload"]["variables"].clone())
        .collect()
}

/// Every domain of job `id` with its status, from the API.
async fn statuses(app: &TestApp, id: &str) -> BTreeMap<String, String> {
    let body = app
        .graphql(
            "query($jobId: ID!) { resultsConnection(jobId: $jobId, first: 100) {
               edges { node { domain status } } } }",
            json!({"jobId": id}),
        )
        .await;
    body["data"]["resultsConnection"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| {
            let node = &e["node"];
            let text = |k: &str| node[k].as_str().unwrap().to_owned();
            (text("domain"), text("status"))
        })
        .collect()
}

/// The cable is cut mid-job for long enough that domains finish unseen; the page must show
/// them all once it is back. Needs the server's `jobProgress(after:)` and `cursor`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_dropped_socket_the_grid_still_ends_with_every_final_state() {
    let Some(binary) = chromium() else { return };
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..16 {
        let host = format!("resumed{i}.test");
        sites.slow_icon_site(&host, DELAY);
        domains.push(host);
    }
    // Pages without an icon: these end FAILED (no_icon), so the grid has both final states.
    for i in 0..8 {
        let host = format!("iconless{i}.test");
        sites.route(
            &host,
            "/",
            Route::html("<title>no icon here</title>").with_delay(DELAY),
        );
        domains.push(host);
    }
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
    let cable = Cable::start(&app.base).await;
    let browser = Browser::launch(&binary, &cable.base).await;
    // Tall enough that every tile of the job is drawn at once.
    browser.viewport(1280, 1000).await;

    // Submitted through the form, so the page follows the job from its first domain.
    browser.goto(&cable.url("/")).await;
    browser
        .wait_for("document.querySelector('#domains')", LONG, "the form")
        .await;
    browser
        .eval(&format!(
            "const t = document.querySelector('#domains'); t.value = {:?}; \
             t.dispatchEvent(new Event('input')); \
             document.querySelector('#submit-form button[type=submit]').click()",
            domains.join("\n")
        ))
        .await;
    browser
        .wait_for(
            &format!("{DONE_ON_PAGE} >= 4 || document.querySelector('#job-message')?.textContent"),
            LONG,
            "the first domains on the page",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#job-message').textContent")
            .await,
        json!(""),
        "the page reports an error"
    );
    let hash = browser.eval("location.hash").await;
    let job_id = hash
        .as_str()
        .unwrap()
        .trim_start_matches("#/jobs/")
        .to_owned();
    let done_at_cut = browser.eval(DONE_ON_PAGE).await.as_u64().unwrap();

    cable.cut(OUTAGE);
    // The outage's length is the scenario (domains finish while the page is cut off), and
    // the relay keeps it on its own real clock.
    tokio::time::sleep(OUTAGE).await;
    let job = app
        .graphql(
            "query($id: ID!) { job(id: $id) { completed failed } }",
            json!({"id": job_id}),
        )
        .await;
    let job = &job["data"]["job"];
    let done_in_outage = job["completed"].as_u64().unwrap() + job["failed"].as_u64().unwrap();
    assert!(
        done_in_outage > done_at_cut,
        "no domain finished while the socket was down ({done_at_cut} before, {done_in_outage} after)"
    );
    browser
        .wait_for(
            "document.documentElement.dataset.ws === 'open'",
            LONG,
            "the socket to come back",
        )
        .await;
    browser
        .wait_for(
            "document.querySelector('#job-status').textContent === 'COMPLETED' || \
             document.querySelector('#job-message').textContent",
            LONG,
            "the job to complete on the page",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#job-message').textContent")
            .await,
        json!(""),
        "the page reports an error"
    );

    // Every tile shows its domain's final state, without a reload.
    let expected = statuses(&app, &job_id).await;
    assert_eq!(expected.len(), domains.len());
    assert!(expected.values().all(|s| s != "PENDING"), "{expected:?}");
    let shown = browser
        .wait_for(
            &format!(
                "(() => {{ const t = {TILES}; const n = Object.keys(t).length; \
                 return n === {} && !Object.values(t).includes('PENDING') && t; }})()",
                domains.len()
            ),
            Duration::from_secs(10),
            "every tile to show a final state",
        )
        .await;
    let shown: BTreeMap<String, String> = serde_json::from_value(shown).unwrap();
    assert_eq!(shown, expected);

    // The first subscription starts after the finished count the page read before its grid
    // (a number, so nothing finished in between is missed); the one after the cut resumes
    // after the cursor of the last event the page had.
    let subscriptions = progress_subscriptions(&browser.ws_sent());
    assert!(subscriptions.len() >= 2, "{subscriptions:?}");
    assert!(subscriptions[0]["after"].is_u64(), "{subscriptions:?}");
    let resumed = subscriptions[1]["after"].as_u64();
    assert!(
        resumed.is_some_and(|after| after >= 1),
        "resubscribed without a cursor: {subscriptions:?}"
    );

    // The failure groups agree with the API.
    let groups = browser
        .wait_for(
            "[...document.querySelectorAll('#failure-groups li[data-code]')].map(li => \
             ({errorCode: li.dataset.code, count: Number(li.querySelector('.count').textContent)}))",
            LONG,
            "the failure groups",
        )
        .await;
    assert_eq!(groups, json!([{"errorCode": "no_icon", "count": 8}]));

    assert_eq!(browser.blocked(), Vec::<String>::new());
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}
