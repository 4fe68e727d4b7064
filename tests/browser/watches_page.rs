//! The dashboard's Watches page end to end: reached from the navigation, its form shows the
//! API's refusals (a bad domain by line, a too short period), creates a watch of two sites on
//! the fake internet, and the watch's view shows a change of one site's icon as it is found,
//! sent over the `iconChanged` subscription, with before and after thumbnails of the exact
//! stored versions that load; a site without an icon shows as gone; a name and a domain with
//! markup come out as text; Delete asks first.

use crate::cdp::{Browser, chromium};
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::{Value, json};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A name a user could type, markup and all.
const NAME: &str = "<b id=injected>bold</b><script>window.__xss = 2</script>";

/// Fills the create form and submits it.
async fn create(browser: &Browser, domains: &str, every: &str, unit: &str, name: &str) {
    browser
        .eval(&format!(
            "document.querySelector('#watch-errors').replaceChildren(); \
             document.querySelector('#watch-domains').value = {}; \
             document.querySelector('#watch-every').value = {}; \
             document.querySelector('#watch-unit').value = {}; \
             document.querySelector('#watch-name').value = {}; \
             document.querySelector('#watch-form').requestSubmit()",
            json!(domains),
            json!(every),
            json!(unit),
            json!(name)
        ))
        .await;
}

/// Waits for the form's error and returns its text.
async fn form_error(browser: &Browser) -> String {
    let error = browser
        .wait_for(
            "document.querySelector('#watch-errors').textContent",
            LONG,
            "the form's error",
        )
        .await;
    error.as_str().unwrap().to_owned()
}

/// The watch's changes as the API holds them.
async fn changes(app: &TestApp, id: &str) -> Vec<Value> {
    let answer = app
        .graphql(
            "query($id: ID!) { watch(id: $id) { changes(perPage: 100) { items { id domain \
             before { status sha256 } after { status sha256 } } } } }",
            json!({"id": id}),
        )
        .await;
    answer["data"]["watch"]["changes"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .clone()
}

// On both databases: the change detection and the subscription's reads are the store's.
both_backends!(
    the_page_creates_a_watch_and_shows_a_change_live_with_before_and_after_thumbnails,
    creates_a_watch_and_shows_a_change_live
);

async fn creates_a_watch_and_shows_a_change_live(backend: Backend) {
    let Some(binary) = chromium() else { return };
    // Each fetch of a home page declares another icon (10 px wider than the last), so every
    // check of `changing.test` after the first finds a change; `noicon.test` has none.
    let internet = FakeInternet::start(Sites::every_host(Duration::ZERO)).await;
    let app = TestApp::spawn_on(
        backend,
        &internet,
        &[("WATCH_MIN_EVERY_SECS", "1"), ("WATCH_TICK_MS", "100")],
    )
    .await;
    let browser = Browser::launch(&binary, &app.base).await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_for(
            "document.querySelector('#submit-form')",
            LONG,
            "the dashboard",
        )
        .await;
    browser
        .eval("document.querySelector('nav a[href=\"#/watches\"]').click()")
        .await;
    browser
        .wait_for(
            "document.querySelector('#watches-list li.hint')?.textContent.startsWith('No watches')",
            LONG,
            "the empty list of watches",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('nav a[aria-current=page]')?.textContent")
            .await,
        json!("Watches")
    );

    // The API's refusals, as text: a domain with markup by its line, then a period too short.
    let bad = "<img src=x onerror=window.__xss=1>";
    create(&browser, &format!("ok.test\n\n{bad}"), "5", "1", "").await;
    let error = form_error(&browser).await;
    assert!(error.contains(bad), "{error}");
    let line = browser
        .eval("document.querySelector('#watch-errors .line-errors li')?.textContent")
        .await;
    assert!(
        line.as_str().unwrap_or_default().starts_with("Line 3: "),
        "{line}"
    );
    create(&browser, "ok.test", "0", "1", "").await;
    let error = form_error(&browser).await;
    assert!(error.contains("every"), "{error}");

    create(&browser, "changing.test\nnoicon.test", "2", "1", NAME).await;
    let id = browser
        .wait_for(
            "location.hash.match(/^#\\/watches\\/([0-9a-f-]{36})$/)?.[1]",
            LONG,
            "the new watch's view",
        )
        .await;
    let id = id.as_str().unwrap().to_owned();
    let title = browser
        .wait_for(
            "document.querySelector('#watch-facts dd') && document.querySelector('#watch-title').textContent",
            LONG,
            "the watch's facts",
        )
        .await;
    assert_eq!(title, json!(format!("Watch {NAME}")));
    assert_eq!(
        browser
            .eval("document.querySelector('#watch-facts [data-key=every]').textContent")
            .await,
        json!("2 s")
    );

    // The first change arrives on the open page, over the subscription.
    let shown = browser
        .wait_for(
            "document.querySelector('#watch-changes tr[data-change]')?.dataset.change",
            LONG,
            "a change to show",
        )
        .await;
    let change_id = shown.as_str().unwrap().to_owned();
    let held = changes(&app, &id).await;
    let change = held
        .iter()
        .find(|c| c["id"] == json!(change_id))
        .unwrap_or_else(|| panic!("{change_id} not in {held:?}"));
    assert_eq!(change["domain"], json!("changing.test"));
    assert_eq!(change["before"]["status"], json!("found"));
    assert_eq!(change["after"]["status"], json!("found"));
    let before = change["before"]["sha256"].as_str().unwrap();
    let after = change["after"]["sha256"].as_str().unwrap();
    assert_ne!(before, after);
    assert!(
        browser
            .ws_received()
            .iter()
            .any(|frame| frame.contains("iconChanged") && frame.contains(&change_id)),
        "the change did not come over the subscription: {:?}",
        browser.ws_received()
    );

    // Both thumbnails name the exact stored version and load.
    let row = format!("document.querySelector('#watch-changes tr[data-change=\"{change_id}\"]')");
    let srcs = browser
        .eval(&format!(
            "[...{row}.querySelectorAll('img.thumb')].map(i => i.getAttribute('src'))"
        ))
        .await;
    assert_eq!(
        srcs,
        json!([
            format!("/icons/changing.test?sha={before}&size=32"),
            format!("/icons/changing.test?sha={after}&size=32"),
        ])
    );
    browser
        .wait_for(
            &format!(
                "[...{row}.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)"
            ),
            LONG,
            "both thumbnails to load",
        )
        .await;
    // What they load is the stored version, not the letter drawn for an unknown one.
    for sha in [before, after] {
        let response = app
            .http
            .get(app.url(&format!("/icons/changing.test?sha={sha}&size=32")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().get("x-icon-fallback").is_none(),
            "{sha}: {:?}",
            response.headers()
        );
    }
    let text = browser.eval(&format!("{row}.textContent")).await;
    let text = text.as_str().unwrap();
    for part in ["changing.test", "found", "image/svg+xml", "by watch"] {
        assert!(text.contains(part), "{part:?} not in {text:?}");
    }

    // The domains: the changing site with its current icon and last check, the one without
    // an icon as gone.
    browser
        .wait_for(
            "document.querySelector('#watch-domains-table tr[data-domain=\"noicon.test\"] .thumb.gone')",
            LONG,
            "the site without an icon to show as gone",
        )
        .await;
    let domain = browser
        .eval(
            "(() => { const r = document.querySelector('#watch-domains-table tr[data-domain=\"changing.test\"]'); \
             return [r.querySelector('img.thumb')?.getAttribute('src') || '', r.cells[2].textContent]; })()",
        )
        .await;
    assert!(
        domain[0]
            .as_str()
            .unwrap()
            .starts_with("/icons/changing.test?sha="),
        "{domain}"
    );
    assert!(domain[1].as_str().unwrap().contains("found"), "{domain}");
    browser.screenshot("docs/dashboard-watch.png").await;

    // At 375 px nothing overflows sideways: the tables scroll in their own box.
    browser.viewport(375, 800).await;
    let width = browser.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_u64().unwrap() <= 375,
        "the page is {width} px wide at 375"
    );
    browser.viewport(1280, 900).await;

    markup_is_text_and_delete_asks_first(&browser, &app, &id).await;
    assert_eq!(browser.blocked(), Vec::<String>::new());
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

/// On the list, the name with markup is text; Delete asks, "Keep it" keeps, Delete deletes.
async fn markup_is_text_and_delete_asks_first(browser: &Browser, app: &TestApp, id: &str) {
    browser.eval("location.hash = '#/watches'").await;
    let item = format!("document.querySelector('#watches-list li[data-watch=\"{id}\"]')");
    let shown = browser
        .wait_for(
            &format!(
                "{item} && [{item}.querySelector('.name').textContent, {item}.querySelector('.domains').textContent]"
            ),
            LONG,
            "the watch in the list",
        )
        .await;
    assert_eq!(shown, json!([NAME, "changing.test, noicon.test"]));
    let injected = browser
        .eval(
            "[document.querySelectorAll('main img, main b, main script').length, \
             document.getElementById('injected') === null, window.__xss === undefined]",
        )
        .await;
    assert_eq!(injected, json!([0, true, true]));

    let delete = format!("{item}.querySelector('button.delete').click()");
    browser.eval(&delete).await;
    let asked = browser
        .wait_for(
            "document.querySelector('#watch-delete-dialog').open && \
             document.activeElement.id === 'watch-delete-cancel' && \
             document.querySelector('#watch-delete-text').textContent",
            LONG,
            "the confirm",
        )
        .await;
    assert!(asked.as_str().unwrap().contains(NAME), "{asked}");
    browser
        .eval("document.querySelector('#watch-delete-cancel').click()")
        .await;
    let query = "query($id: ID!) { watch(id: $id) { id } }";
    assert_eq!(
        app.graphql(query, json!({"id": id})).await["data"]["watch"]["id"],
        json!(id)
    );
    browser.eval(&delete).await;
    browser
        .wait_for(
            "document.querySelector('#watch-delete-dialog').open",
            LONG,
            "the confirm again",
        )
        .await;
    browser
        .eval("document.querySelector('#watch-delete-confirm').click()")
        .await;
    browser
        .wait_for(
            "document.querySelector('#watches-list li.hint')?.textContent.startsWith('No watches')",
            LONG,
            "the watch to leave the list",
        )
        .await;
    assert_eq!(
        app.graphql(query, json!({"id": id})).await["data"]["watch"],
        Value::Null
    );
}

/// With accounts on, the page asks for a key and sends it (the subscription's socket too),
/// naming no client; a watch's domains come page by page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_accounts_on_the_page_uses_the_key_and_pages_the_domains() {
    let Some(binary) = chromium() else { return };
    const KEY: &str = "ffk_browser_test_watches_key_0123456789abcdef";
    let internet = FakeInternet::start(Sites::every_host(Duration::ZERO)).await;
    let app = TestApp::spawn_on(
        Backend::Sqlite,
        &internet,
        &[
            ("AUTH_MODE", "required"),
            ("BOOTSTRAP_API_KEY", KEY),
            ("WATCH_MIN_EVERY_SECS", "1"),
        ],
    )
    .await;
    let browser = Browser::launch(&binary, &app.base).await;
    browser.goto(&app.url("/#/watches")).await;
    browser
        .wait_for(
            "!document.querySelector('#settings').hidden && document.activeElement.id === 'api-key'",
            LONG,
            "the page to ask for a key",
        )
        .await;
    // The first read went without a key (and was refused); count only those after it.
    let before = browser.requests().len();
    browser
        .eval(&format!(
            "document.querySelector('#api-key').value = {KEY:?}; \
             document.querySelector('#settings-form').requestSubmit()"
        ))
        .await;
    browser
        .wait_for(
            "document.querySelector('#watches-list li.hint')",
            LONG,
            "the list with the key",
        )
        .await;
    // 25 domains, checked hourly: the view shows them 20 to a page.
    let domains: Vec<String> = (0..25).map(|i| format!("site{i:02}.test")).collect();
    create(&browser, &domains.join("\n"), "1", "3600", "paged").await;
    let pager = "document.querySelector('#watch-domains-pager')";
    let rows = "[...document.querySelectorAll('#watch-domains-table tr[data-domain]')].map(r => r.dataset.domain)";
    let first = browser
        .wait_for(
            &format!("{pager}?.textContent.includes('Page 1 of 2') && {rows}"),
            LONG,
            "the first page of domains",
        )
        .await;
    assert_eq!(first, json!(domains[..20]));
    assert_eq!(
        browser
            .eval("document.querySelector('#watch-facts [data-key=every]').textContent")
            .await,
        json!("1 h 0 min")
    );
    browser
        .eval(&format!("{pager}.querySelector('button.next').click()"))
        .await;
    let second = browser
        .wait_for(
            &format!("{pager}.textContent.includes('Page 2 of 2') && {rows}"),
            LONG,
            "the second page of domains",
        )
        .await;
    assert_eq!(second, json!(domains[20..]));

    let sent: Vec<_> = browser
        .requests()
        .into_iter()
        .skip(before)
        .filter(|r| r.url.ends_with("/graphql"))
        .collect();
    assert!(sent.len() >= 4, "{sent:?}");
    for request in &sent {
        let body = request.body.as_deref().unwrap_or_default();
        assert!(!body.contains("\"clientId\":\""), "{request:?}");
    }
    let init = browser
        .ws_sent()
        .into_iter()
        .find(|m| m.contains("connection_init"))
        .expect("the subscription's socket opened");
    assert!(init.contains(&format!("Bearer {KEY}")), "{init}");
    assert!(
        browser.ws_sent().iter().any(|m| m.contains("iconChanged")),
        "{:?}",
        browser.ws_sent()
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}
