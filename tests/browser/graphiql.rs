//! GraphiQL at `/graphql` with the network cut off from everything but the app: it loads from
//! the vendored files, runs a query, and runs a `jobProgress` subscription over
//! graphql-transport-ws.

use crate::cdp::{Browser, chromium};
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Puts `text` in the query editor and presses the run button; waits for the response pane
/// to contain `expect`.
async fn run(browser: &Browser, text: &str, expect: &str) -> String {
    browser
        .eval(&format!(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue({text:?}); \
             document.querySelector('.graphiql-execute-button').click()"
        ))
        .await;
    let shown = browser
        .wait_for(
            &format!(
                "(() => {{ const t = document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue(); \
                 return t.includes({expect:?}) && t; }})()"
            ),
            LONG,
            expect,
        )
        .await;
    shown.as_str().unwrap().to_owned()
}

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
