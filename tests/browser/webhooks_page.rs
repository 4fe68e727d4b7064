//! The dashboard's Webhooks page end to end: reached from the navigation, it registers an
//! endpoint on the real receiver (tests/common/webhooks.rs, verifying with npm
//! `standardwebhooks`), shows the secret once, sends a test event and a redelivery that the
//! receiver verifies with that secret, shows what users and receivers wrote as text only,
//! deletes after a confirm, shows a disabled endpoint's reason and enables it again, and with
//! accounts on sends the key instead of a client id.

use crate::cdp::{Browser, chromium};
use crate::common::webhooks::Receiver;
use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// `WEBHOOK_SECRET_KEY`: any 32 bytes in base64; without it registering is refused.
const SEALING_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Fills the register form with `url` and `description` (the default events) and submits it.
async fn register(browser: &Browser, url: &str, description: &str) {
    browser
        .eval(&format!(
            "document.querySelector('#webhook-url').value = {}; \
             document.querySelector('#webhook-description').value = {}; \
             document.querySelector('#webhook-form').requestSubmit()",
            json!(url),
            json!(description)
        ))
        .await;
}

/// Waits for the secret panel and returns the secret it shows.
async fn shown_secret(browser: &Browser) -> String {
    let secret = browser
        .wait_for(
            "!document.querySelector('#webhook-secret').hidden && \
             document.querySelector('#secret-value')?.textContent",
            LONG,
            "the secret to be shown",
        )
        .await;
    secret.as_str().unwrap().to_owned()
}

/// The cells' text of every delivered row, each followed by the row's event id.
const ROWS: &str = "[...document.querySelectorAll('#deliveries tbody tr[data-status=delivered]')] \
     .map(r => [...r.cells].map(c => c.textContent.trim()).concat(r.dataset.eventId))";

/// The endpoint of the API's list for `client` other than those in `known`.
async fn new_endpoint(app: &TestApp, client: &str, known: &[&str]) -> Value {
    let (status, listed) = app.get_json(&format!("/webhooks?client_id={client}")).await;
    assert_eq!(status, 200, "{listed}");
    let found: Vec<&Value> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| !known.contains(&w["id"].as_str().unwrap()))
        .collect();
    assert_eq!(found.len(), 1, "{listed}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_registers_an_endpoint_shows_its_secret_once_and_sends_a_verified_test_event() {
    let Some(binary) = chromium() else { return };
    // The secret is not known until the page shows it: the receiver starts with none.
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite, &[("WEBHOOK_SECRET_KEY", SEALING_KEY)]).await;
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
        .eval("document.querySelector('nav a[href=\"#/webhooks\"]').click()")
        .await;
    browser
        .wait_for(
            "document.querySelector('#webhooks-list li.hint')?.textContent.startsWith('No endpoints')",
            LONG,
            "the empty list of endpoints",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('nav a[aria-current=page]')?.textContent")
            .await,
        json!("Webhooks")
    );

    register(&browser, &receiver.url(), "the test receiver").await;
    let secret = shown_secret(&browser).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let note = browser
        .eval("document.querySelector('#secret-note').textContent")
        .await;
    assert!(
        note.as_str().unwrap().contains("will not be shown again"),
        "{note}"
    );
    receiver.set_secrets(&[&secret]).await;

    // The page lists what the API holds for the dashboard's client.
    let hook = new_endpoint(&app, "dashboard", &[]).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(hook["url"], json!(receiver.url()));
    assert_eq!(hook["description"], json!("the test receiver"));
    assert_eq!(
        hook["events"],
        json!([
            "job.completed",
            "job.failed",
            "job.cancelled",
            "icon.changed"
        ])
    );
    let item = browser
        .wait_for(
            &format!(
                "document.querySelector('#webhooks-list li[data-webhook=\"{id}\"]')?.innerText"
            ),
            LONG,
            "the endpoint in the list",
        )
        .await;
    let item = item.as_str().unwrap();
    for part in [
        receiver.url().as_str(),
        "the test receiver",
        "job.completed, job.failed, job.cancelled",
        "Enabled",
    ] {
        assert!(item.contains(part), "{part:?} not in {item:?}");
    }

    // Send test event: the row turns delivered, with what the receiver verified.
    browser
        .wait_for(
            "!document.querySelector('#deliveries-panel').hidden && \
             document.querySelector('#deliveries tbody').textContent.includes('No deliveries yet')",
            LONG,
            "the endpoint's empty deliveries",
        )
        .await;
    browser
        .eval("const b = document.querySelector('#send-test'); b.focus(); b.click()")
        .await;
    let rows = browser
        .wait_for(
            &format!("(() => {{ const r = {ROWS}; return r.length === 1 && r; }})()"),
            LONG,
            "the test event to show as delivered",
        )
        .await;
    let row: Vec<&str> = rows[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(&row[..4], ["webhook.test", "delivered", "1", "HTTP 204"]);
    assert!(row[5].ends_with(" ms"), "latency {:?}", row[5]);
    let got = receiver.wait_for(1, LONG).await;
    assert_eq!(got[0].body["type"], json!("webhook.test"));
    assert_eq!(got[0].verified_with, vec![0], "{:?}", got[0].verify_errors);
    assert_eq!(got[0].header("webhook-id"), row[7]);
    assert_eq!(
        browser.eval("document.activeElement.id").await,
        json!("send-test"),
        "the keyboard focus left the button"
    );

    // Redeliver sends the same event again, under the same webhook-id.
    let first = browser
        .eval(
            "const r = document.querySelector('#deliveries tbody tr[data-status=delivered]'); \
             r.querySelector('button.redeliver').focus(); r.querySelector('button.redeliver').click(); \
             r.dataset.delivery",
        )
        .await;
    browser
        .wait_for(
            &format!("{ROWS}.length === 2"),
            LONG,
            "the redelivery to show as delivered",
        )
        .await;
    browser
        .eval("document.querySelector('#deliveries-panel').scrollIntoView({block: 'end'})")
        .await;
    browser.screenshot("docs/dashboard-webhooks.png").await;
    let got = receiver.wait_for(2, LONG).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].verified_with, vec![0], "{:?}", got[1].verify_errors);
    assert_eq!(got[1].header("webhook-id"), got[0].header("webhook-id"));
    // The table was drawn again under the focus; it stays on the same delivery's button.
    assert_eq!(
        browser
            .eval("document.activeElement.closest('tr')?.dataset.delivery")
            .await,
        first
    );

    // The secret is shown once: gone once dismissed, and not back on a later visit.
    browser
        .eval("document.querySelector('#secret-done').click()")
        .await;
    browser.eval("location.hash = '#/jobs'").await;
    browser
        .wait_for("document.querySelector('#jobs-list')", LONG, "the jobs")
        .await;
    browser.eval("location.hash = '#/webhooks'").await;
    browser
        .wait_for(
            &format!("document.querySelector('#webhooks-list li[data-webhook=\"{id}\"]')"),
            LONG,
            "the list on a later visit",
        )
        .await;
    let page = browser
        .eval(
            "document.documentElement.outerHTML + JSON.stringify({...localStorage}) + \
             JSON.stringify({...sessionStorage})",
        )
        .await;
    assert!(
        !page.as_str().unwrap().contains(&secret),
        "the secret again"
    );
    assert_eq!(
        browser
            .eval("document.querySelector('#webhook-secret').hidden")
            .await,
        json!(true)
    );

    markup_is_text_and_delete_asks_first(&browser, &app, &id).await;

    // At 375 px nothing overflows sideways, long URLs included.
    browser.viewport(375, 800).await;
    let width = browser.eval("document.documentElement.scrollWidth").await;
    let wide = browser
        .eval(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 376) \
             .map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))",
        )
        .await;
    assert!(
        width.as_u64().unwrap() <= 375,
        "the page is {width} px wide at 375: {wide}"
    );
    browser
        .eval("document.querySelector('#deliveries-panel').scrollIntoView()")
        .await;
    browser
        .screenshot("docs/dashboard-webhooks-phone.png")
        .await;
    assert_eq!(browser.blocked(), Vec::<String>::new());
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

/// Markup in a URL, a description and an error message comes out as text; Delete asks, and
/// "Keep it" keeps.
async fn markup_is_text_and_delete_asks_first(browser: &Browser, app: &TestApp, first: &str) {
    let description = "<b id=injected>bold</b><script>window.__xss = 2</script>";
    register(
        browser,
        "http://127.0.0.1:1/<img src=x onerror=window.__xss=1>",
        description,
    )
    .await;
    shown_secret(browser).await;
    let hook = new_endpoint(app, "dashboard", &[first]).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let shown = browser
        .wait_for(
            &format!(
                "(() => {{ const li = document.querySelector('#webhooks-list li[data-webhook=\"{id}\"]'); \
                 return li && [li.querySelector('.url').textContent, li.querySelector('.description').textContent]; }})()"
            ),
            LONG,
            "the endpoint with markup",
        )
        .await;
    assert_eq!(shown, json!([hook["url"], description]));
    assert!(
        hook["url"].as_str().unwrap().contains("img"),
        "{}",
        hook["url"]
    );
    // Refused with an error that quotes the URL as written, markup and all.
    let refused = "http://user:pw@127.0.0.1:1/<img src=x onerror=window.__xss=3>";
    register(browser, refused, "").await;
    let error = browser
        .wait_for(
            "document.querySelector('#webhook-errors').textContent",
            LONG,
            "the refusal",
        )
        .await;
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("<img src=x onerror=window.__xss=3>"),
        "{error}"
    );
    let injected = browser
        .eval(
            "[document.querySelectorAll('main img, main b, main script').length, \
             document.getElementById('injected') === null, window.__xss === undefined]",
        )
        .await;
    assert_eq!(injected, json!([0, true, true]));

    let delete =
        format!("document.querySelector('li[data-webhook=\"{id}\"] button.delete').click()");
    browser.eval(&delete).await;
    let asked = browser
        .wait_for(
            "document.querySelector('#delete-dialog').open && \
             document.activeElement.id === 'delete-cancel' && \
             document.querySelector('#delete-text').textContent",
            LONG,
            "the confirm",
        )
        .await;
    assert!(
        asked
            .as_str()
            .unwrap()
            .contains(hook["url"].as_str().unwrap()),
        "{asked}"
    );
    browser
        .eval("document.querySelector('#delete-cancel').click()")
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#delete-dialog').open")
            .await,
        json!(false)
    );
    assert_eq!(app.get_json(&format!("/webhooks/{id}")).await.0, 200);
    browser.eval(&delete).await;
    browser
        .wait_for(
            "document.querySelector('#delete-dialog').open",
            LONG,
            "the confirm again",
        )
        .await;
    browser
        .eval("document.querySelector('#delete-confirm').click()")
        .await;
    browser
        .wait_for(
            &format!(
                "!document.querySelector('li[data-webhook=\"{id}\"]') && \
                 document.querySelector('li[data-webhook=\"{first}\"]')"
            ),
            LONG,
            "the endpoint to leave the list",
        )
        .await;
    assert_eq!(app.get_json(&format!("/webhooks/{id}")).await.0, 404);
}

/// With accounts on, the page asks for a key and sends it, and names no client: the key does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_accounts_on_the_page_uses_the_key_and_no_client_id() {
    let Some(binary) = chromium() else { return };
    const KEY: &str = "ffk_browser_test_webhooks_key_0123456789abcdef";
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("AUTH_MODE", "required"),
            ("BOOTSTRAP_API_KEY", KEY),
            ("WEBHOOK_SECRET_KEY", SEALING_KEY),
        ],
    )
    .await;
    let browser = Browser::launch(&binary, &app.base).await;
    browser.goto(&app.url("/#/webhooks")).await;
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
            "document.querySelector('#webhooks-list li.hint')",
            LONG,
            "the list with the key",
        )
        .await;
    register(&browser, "http://127.0.0.1:1/hook", "keyed").await;
    shown_secret(&browser).await;
    let listed = browser
        .wait_for(
            "document.querySelector('#webhooks-list li[data-webhook] .url')?.textContent",
            LONG,
            "the keyed endpoint",
        )
        .await;
    assert_eq!(listed, json!("http://127.0.0.1:1/hook"));
    let sent: Vec<_> = browser
        .requests()
        .into_iter()
        .skip(before)
        .filter(|r| r.url.contains("/webhooks"))
        .collect();
    assert!(sent.len() >= 3, "{sent:?}");
    for request in &sent {
        let body = request.body.as_deref().unwrap_or_default();
        assert!(
            !request.url.contains("client_id") && !body.contains("client_id"),
            "{request:?}"
        );
    }
}

/// An endpoint that keeps failing shows as disabled with the reason, while the page follows
/// its waiting delivery; *Enable* sends what waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_endpoint_shows_why_and_enable_delivers_what_waited() {
    let Some(binary) = chromium() else { return };
    let Some(receiver) = Receiver::start(&[], &[500; 30]).await else {
        return;
    };
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("WEBHOOK_SECRET_KEY", SEALING_KEY),
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_DISABLE_AFTER_SECS", "1"),
        ],
    )
    .await;
    let browser = Browser::launch(&binary, &app.base).await;
    browser.goto(&app.url("/#/webhooks")).await;
    browser
        .wait_for(
            "document.querySelector('#webhooks-list li.hint')",
            LONG,
            "the empty list",
        )
        .await;
    register(&browser, &receiver.url(), "").await;
    shown_secret(&browser).await;
    browser
        .wait_for(
            "document.querySelector('#deliveries tbody')?.textContent.includes('No deliveries yet')",
            LONG,
            "the endpoint's deliveries",
        )
        .await;
    browser
        .eval("document.querySelector('#send-test').click()")
        .await;
    // Nothing more is clicked: the page reads the list again while the delivery waits.
    let reason = browser
        .wait_for(
            "document.querySelector('#webhooks-list li[data-webhook] .disabled-reason')?.textContent",
            LONG,
            "the endpoint to show as disabled",
        )
        .await;
    let hook = new_endpoint(&app, "dashboard", &[]).await;
    assert_eq!(hook["enabled"], json!(false), "{hook}");
    let why = hook["disabled_reason"].as_str().unwrap();
    assert!(reason.as_str().unwrap().ends_with(why), "{reason} / {why}");
    let row = browser
        .wait_for(
            "(() => { const r = document.querySelector('#deliveries tbody tr[data-delivery]'); \
             return r && r.cells[1].textContent.startsWith('pending') && r.cells[3].textContent; })()",
            LONG,
            "the waiting delivery's last answer",
        )
        .await;
    assert!(row.as_str().unwrap().starts_with("HTTP 500"), "{row}");

    receiver.set_statuses(&[]).await;
    browser
        .eval("document.querySelector('#webhooks-list li[data-webhook] button.enable').click()")
        .await;
    browser
        .wait_for(
            "document.querySelector('#webhooks-list li[data-webhook] .status.enabled') && \
             document.querySelector('#deliveries tbody tr[data-status=delivered]')",
            LONG,
            "the waiting event to be delivered after Enable",
        )
        .await;
    let got = receiver.deliveries();
    assert_eq!(got.last().unwrap().status, 204, "{got:?}");
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}
