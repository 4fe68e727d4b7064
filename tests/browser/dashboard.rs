//! The dashboard end to end: submit through the form, follow the job live, the grid, the
//! failure groups, "run these again", the drill-down, the CSV and Stop.

use crate::cdp::{Browser, chromium};
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

/// 300 domains: 240 with a PNG icon, 40 whose pages declare none (`no_icon`) and 20 that do
/// not resolve (`dns`).
fn sites() -> (Sites, Vec<String>) {
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..240 {
        let host = format!("icon{i}.test");
        sites.icon_site(&host);
        domains.push(host);
    }
    for i in 0..40 {
        let host = format!("bare{i}.test");
        sites.page(&host, "<title>no icon here</title>");
        domains.push(host);
    }
    for i in 0..20 {
        domains.push(format!("nowhere{i}.test"));
    }
    (sites, domains)
}

async fn gql(app: &TestApp, query: &str, variables: Value) -> Value {
    let body = app.graphql(query, variables).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"].clone()
}

/// The domains of a job, read through the API page by page.
async fn job_domains(app: &TestApp, job_id: &str, error_code: Option<&str>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let data = gql(
            app,
            "query($jobId: ID!, $after: String, $errorCode: ErrorCategory) {
               resultsConnection(jobId: $jobId, first: 500, after: $after, errorCode: $errorCode) {
                 edges { node { domain } } pageInfo { hasNextPage endCursor } } }",
            json!({"jobId": job_id, "after": after, "errorCode": error_code}),
        )
        .await;
        let connection = &data["resultsConnection"];
        for edge in connection["edges"].as_array().unwrap() {
            found.insert(edge["node"]["domain"].as_str().unwrap().to_owned());
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            return found;
        }
        after = connection["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
    }
}

fn job_id_of(hash: &Value) -> String {
    hash.as_str()
        .unwrap()
        .trim_start_matches("#/jobs/")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_through_the_form_is_followed_live_to_the_end() {
    let Some(binary) = chromium() else { return };
    let (sites, domains) = sites();
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve_exact(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("FETCH_RESOLVE", resolve.as_str()),
            ("WORKER_CONCURRENCY", "8"),
        ],
    )
    .await;
    let browser = Browser::launch(&binary, &app.base).await;

    browser.goto(&app.url("/")).await;
    browser
        .wait_for(
            "document.querySelector('#submit-form')",
            LONG,
            "the submit form",
        )
        .await;
    // The file goes through the drop zone's file input, as a dropped file would.
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("domains.txt");
    std::fs::write(&list, format!("# a comment\n{}\n", domains.join("\n"))).unwrap();
    browser.choose_file("#file", &list).await;
    browser
        .wait_for(
            "document.querySelector('#domain-count').textContent === '300 domains'",
            LONG,
            "the file to be read",
        )
        .await;
    browser.screenshot("docs/dashboard-submit.png").await;
    browser
        .eval("document.querySelector('#submit-form button[type=submit]').click()")
        .await;
    let hash = browser
        .wait_for(
            "location.hash.startsWith('#/jobs/') && location.hash",
            LONG,
            "the job page",
        )
        .await;
    let job_id = job_id_of(&hash);
    browser
        .wait_for(
            "document.querySelector('[data-key=done]')",
            LONG,
            "the job's counts",
        )
        .await;
    browser.screenshot("docs/dashboard-job.png").await;
    browser
        .wait_for(
            "document.querySelector('#job-status').textContent === 'COMPLETED' \
             && document.querySelector('.job progress').value === 100",
            LONG,
            "the job to reach 100 % on the page",
        )
        .await;

    // Progress came over the WebSocket: one socket, and no polling query was sent.
    let sockets = browser.websockets();
    assert!(
        sockets.iter().any(|u| u.ends_with("/graphql/ws")),
        "{sockets:?}"
    );
    let requests = browser.requests();
    let polls: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.body
                .as_deref()
                .is_some_and(|b| b.contains("jobId: id status"))
        })
        .collect();
    assert!(
        polls.is_empty(),
        "polling while the WebSocket was up: {polls:?}"
    );
    let job_reads = requests
        .iter()
        .filter(|r| {
            r.body
                .as_deref()
                .is_some_and(|b| b.contains("failuresByReason"))
        })
        .count();
    assert!(job_reads <= 3, "the job was read {job_reads} times");

    // The failure groups are the API's.
    let api_groups = gql(
        &app,
        "query($id: ID!) { job(id: $id) { failuresByReason { errorCode count } } }",
        json!({"id": job_id}),
    )
    .await["job"]["failuresByReason"]
        .clone();
    let page_groups = browser
        .wait_for(
            "[...document.querySelectorAll('#failure-groups li[data-code]')].map(li => \
             ({errorCode: li.dataset.code, count: Number(li.querySelector('.count').textContent)}))",
            LONG,
            "the failure groups",
        )
        .await;
    assert_eq!(page_groups, api_groups);
    let codes: Vec<&str> = api_groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["errorCode"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"dns") && codes.contains(&"no_icon"),
        "{codes:?}"
    );
    browser
        .eval("document.querySelector('#failure-groups').scrollIntoView()")
        .await;
    browser.screenshot("docs/dashboard-failures.png").await;

    // Icons render from this service, and the DOM holds only what is in view.
    browser
        .wait_for(
            "[...document.querySelectorAll('#grid img')].filter(i => i.complete && i.naturalWidth > 0).length >= 10",
            LONG,
            "icons to render",
        )
        .await;
    let broken = browser
        .eval(
            "new Promise(r => setTimeout(r, 300)).then(() => [...document.querySelectorAll('#grid img')] \
             .filter(i => i.complete && i.naturalWidth === 0).map(i => i.src))",
        )
        .await;
    assert_eq!(broken, json!([]), "icons that did not draw");
    let tiles = browser
        .eval("document.querySelectorAll('#grid .tile').length")
        .await;
    assert!(
        tiles.as_u64().unwrap() < 300,
        "{tiles} tiles in the DOM for 300 results"
    );

    // The drill-down lists the candidates of a found icon.
    browser
        .eval("document.querySelector('#grid .tile.success').click()")
        .await;
    let rows = browser
        .wait_for(
            "document.querySelectorAll('#candidates tbody tr').length",
            LONG,
            "the candidates",
        )
        .await;
    assert!(rows.as_u64().unwrap() >= 1);
    let first = browser
        .eval("document.querySelector('#candidates tbody tr').textContent")
        .await;
    assert!(first.as_str().unwrap().contains("/i.png"), "{first}");
    assert!(first.as_str().unwrap().contains("16×16"), "{first}");
    browser.screenshot("docs/dashboard-drilldown.png").await;
    browser
        .eval("document.querySelector('#drill').close()")
        .await;

    // The CSV link downloads the export with its header.
    let csv = browser
        .eval("fetch(document.querySelector('#csv').href).then(r => r.text())")
        .await;
    let header = csv.as_str().unwrap().lines().next().unwrap().to_owned();
    let expected = app.download(&job_id).await;
    assert_eq!(Some(header.as_str()), expected.lines().next());
    assert!(header.starts_with("domain,"), "{header}");

    // The search narrows the grid through the API.
    browser
        .eval(
            "const s = document.querySelector('#filter-domain'); s.value = 'nowhere1'; \
             s.dispatchEvent(new Event('input'))",
        )
        .await;
    browser
        .wait_for(
            "[...document.querySelectorAll('#grid .tile')].map(t => t.dataset.domain).join() === \
             'nowhere1.test,nowhere10.test,nowhere11.test,nowhere12.test,nowhere13.test,nowhere14.test,\
nowhere15.test,nowhere16.test,nowhere17.test,nowhere18.test,nowhere19.test'",
            LONG,
            "the search to narrow the grid",
        )
        .await;

    // "Run these again" makes a job of exactly that group's domains.
    let failed_dns = job_domains(&app, &job_id, Some("dns")).await;
    assert_eq!(failed_dns.len(), 20);
    browser
        .eval("document.querySelector('#failure-groups li[data-code=dns] button.again').click()")
        .await;
    let again = browser
        .wait_for(
            &format!("location.hash !== '#/jobs/{job_id}' && location.hash"),
            LONG,
            "the new job",
        )
        .await;
    let new_job = job_id_of(&again);
    assert_eq!(job_domains(&app, &new_job, None).await, failed_dns);

    // The jobs list shows both, newest first.
    browser.eval("location.hash = '#/jobs'").await;
    let listed = browser
        .wait_for(
            "(() => { const ids = [...document.querySelectorAll('#jobs-list li[data-job]')] \
             .map(li => li.dataset.job); return ids.length === 2 && ids; })()",
            LONG,
            "the jobs list",
        )
        .await;
    assert_eq!(listed, json!([new_job, job_id]));

    // At 375 px nothing overflows sideways.
    browser.viewport(375, 800).await;
    let width = browser.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_u64().unwrap() <= 375,
        "the page is {width} px wide at 375"
    );

    assert_eq!(
        browser.blocked(),
        Vec::<String>::new(),
        "requests to other origins"
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_and_pending_domains_are_never_fetched() {
    let Some(binary) = chromium() else { return };
    let mut sites = Sites::default();
    let domains: Vec<String> = (0..60).map(|i| format!("slow{i}.test")).collect();
    for host in &domains {
        sites.slow_icon_site(host, Duration::from_millis(400));
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
    let browser = Browser::launch(&binary, &app.base).await;
    browser.goto(&app.url("/")).await;
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
            "!document.querySelector('#stop')?.hidden && \
             Number(document.querySelector('[data-key=done]')?.textContent.split(' ')[0]) >= 2",
            LONG,
            "the first domains to finish",
        )
        .await;
    browser
        .eval("document.querySelector('#stop').click()")
        .await;
    browser
        .wait_for(
            "document.querySelector('#job-status').textContent === 'CANCELLED'",
            LONG,
            "the job to be cancelled",
        )
        .await;
    let hash = browser.eval("location.hash").await;
    let job_id = job_id_of(&hash);
    let cancelled = gql(
        &app,
        "query($jobId: ID!) { resultsConnection(jobId: $jobId, first: 100, errorCode: cancelled) {
           edges { node { domain } } } }",
        json!({"jobId": job_id}),
    )
    .await;
    let cancelled: Vec<String> = cancelled["resultsConnection"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["domain"].as_str().unwrap().to_owned())
        .collect();
    assert!(cancelled.len() >= 30, "only {} cancelled", cancelled.len());
    // Longer than several fetches would take: a claim after the cancel would show. Wall-clock:
    // a negative check against running workers, which claim on their own poll timer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for domain in &cancelled {
        assert_eq!(
            internet.host_hits(domain),
            0,
            "{domain} was fetched after Stop"
        );
    }
    assert_eq!(browser.blocked(), Vec::<String>::new());
}

/// Where WebSockets are refused (a proxy that does not pass them), the job page polls
/// instead and still reaches the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_websockets_the_job_page_polls() {
    let Some(binary) = chromium() else { return };
    let mut sites = Sites::default();
    let domains: Vec<String> = (0..20).map(|i| format!("poll{i}.test")).collect();
    for host in &domains {
        sites.slow_icon_site(host, Duration::from_millis(300));
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
    let browser = Browser::launch(&binary, &app.base).await;
    // Chromium's URL blocking does not cover WebSockets: every socket the page opens fails
    // its handshake instead, as behind a proxy that refuses the upgrade (close 1006, never
    // open).
    browser
        .call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.WebSocket = class { constructor() { \
                setTimeout(() => this.onclose && this.onclose({code: 1006, reason: ''}), 10); } \
                send() {} close() {} }"}),
        )
        .await;
    browser.goto(&app.url("/")).await;
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
            "document.querySelector('#job-status')?.textContent === 'COMPLETED'",
            LONG,
            "the job to complete on the page",
        )
        .await;
    let polls = browser
        .requests()
        .iter()
        .filter(|r| {
            r.body
                .as_deref()
                .is_some_and(|b| b.contains("jobId: id status"))
        })
        .count();
    let state = browser.eval("document.documentElement.dataset.ws").await;
    assert!(
        polls >= 1,
        "the page never polled (socket {state}, {:?})",
        browser.websockets()
    );
    assert_eq!(
        browser.eval("document.documentElement.dataset.ws").await,
        json!("refused")
    );
}

/// With accounts on, the page asks for a key, keeps it for the tab, and sends it with
/// queries and in the subscription's `connection_init`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_accounts_on_the_page_asks_for_a_key_and_uses_it() {
    let Some(binary) = chromium() else { return };
    const KEY: &str = "ffk_browser_test_bootstrap_key_0123456789abcdef";
    let mut sites = Sites::default();
    // Slow enough that the page finds the job running and subscribes with the key.
    sites.slow_icon_site("keyed.test", Duration::from_millis(1500));
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve_exact(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("FETCH_RESOLVE", resolve.as_str()),
            ("AUTH_MODE", "required"),
            ("BOOTSTRAP_API_KEY", KEY),
            ("ICONS_PUBLIC", "true"),
        ],
    )
    .await;
    let browser = Browser::launch(&binary, &app.base).await;
    browser.goto(&app.url("/#/jobs")).await;
    browser
        .wait_for(
            "!document.querySelector('#settings').hidden && document.activeElement.id === 'api-key'",
            LONG,
            "the page to ask for a key",
        )
        .await;
    browser
        .eval(&format!(
            "document.querySelector('#api-key').value = {KEY:?}; \
             document.querySelector('#client-id').value = 'keyed'; \
             document.querySelector('#settings-form').requestSubmit(); \
             location.hash = '#/'"
        ))
        .await;
    assert_eq!(
        browser.eval("sessionStorage.getItem('ff.apiKey')").await,
        json!(KEY)
    );
    browser
        .wait_for("document.querySelector('#domains')", LONG, "the form")
        .await;
    browser
        .eval(
            "const t = document.querySelector('#domains'); t.value = 'keyed.test'; \
             document.querySelector('#submit-form button[type=submit]').click()",
        )
        .await;
    browser
        .wait_for(
            "document.querySelector('#job-status')?.textContent === 'COMPLETED' || \
             document.querySelector('#submit-errors')?.textContent",
            LONG,
            "the keyed job to complete",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#job-status')?.textContent")
            .await,
        json!("COMPLETED"),
        "{}",
        browser.eval("document.body.innerText").await
    );
    assert!(!browser.websockets().is_empty());
}
