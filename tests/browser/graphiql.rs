//! GraphiQL at `/graphql` with the network cut off from everything but the app: it loads from
//! the vendored files, runs a query, and runs a `jobProgress` subscription over
//! graphql-transport-ws.

use crate::cdp::{Browser, chromium};
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Puts `text` in the query editor and presses the run button; waits for the response pane
/// to contain `expect`. Once, on a loaded CI machine, the pane did not show the answer for a
/// whole minute after one press (the cause was not found: the pane's text was not kept), so
/// the press is made again, up to [`PRESSES`] times, and a failure shows what the pane held.
async fn run(browser: &Browser, text: &str, expect: &str) -> String {
    let pane = "document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()";
    let mut shown = String::new();
    for _ in 0..PRESSES {
        browser
            .eval(&format!(
                "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue({text:?}); \
                 document.querySelector('.graphiql-execute-button').click()"
            ))
            .await;
        let deadline = tokio::time::Instant::now() + LONG / PRESSES;
        while tokio::time::Instant::now() < deadline {
            shown = browser
                .eval(pane)
                .await
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if shown.contains(expect) {
                return shown;
            }
            // Wall-clock: the answer is drawn by the browser, another process.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("the response pane never showed {expect:?}; it held {shown:?}");
}

/// How many times [`run`] presses the run button before it gives up.
const PRESSES: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_queries_and_subscriptions_offline() {
    let Some(binary) = chromium() else { return };
    let mut sites = Sites::default();
    sites.icon_site("one.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(Backend::Sqlite, &internet, &[]).await;
    let job_id = app.create_job("graphiql", &["one.test"]).await;
    app.wait_for_job(&job_id, LONG).await;

    let browser = Browser::launch(&binary, &app.base).await;
    browser.goto(&app.url("/graphql")).await;
    browser
        .wait_for(
            "document.querySelector('.graphiql-query-editor .CodeMirror')",
            LONG,
            "GraphiQL to load",
        )
        .await;

    let answer = run(
        &browser,
        &format!("{{ job(id: \"{job_id}\") {{ status total completed }} }}"),
        "\"completed\": 1",
    )
    .await;
    assert!(answer.contains("\"status\": \"COMPLETED\""), "{answer}");

    let answer = run(
        &browser,
        &format!("subscription {{ jobProgress(jobId: \"{job_id}\") {{ status progress }} }}"),
        "\"progress\": 100",
    )
    .await;
    assert!(answer.contains("\"status\": \"COMPLETED\""), "{answer}");
    assert!(
        browser
            .websockets()
            .iter()
            .any(|u| u.ends_with("/graphql/ws")),
        "{:?}",
        browser.websockets()
    );

    let origins: Vec<String> = browser.requests().into_iter().map(|r| r.url).collect();
    assert!(
        origins
            .iter()
            .all(|u| u.starts_with(&app.base) || u.starts_with("data:")),
        "{origins:?}"
    );
    assert_eq!(
        browser.blocked(),
        Vec::<String>::new(),
        "requests to other origins"
    );
}
