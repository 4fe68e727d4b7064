//! HTTPS end to end, against the fake internet's test CA: https is the finder's first try,
//! an untrusted or misnamed certificate ends `tls`, `FETCH_EXTRA_ROOT_CERTS` is what makes
//! the test CA trusted, and an http icon that cannot be reached is fetched again over https.
//!
//! SQLite only: TLS is the fetcher's business and touches nothing the database does.

use crate::fake::{FakeInternet, Sites, png};
use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Starts an app on `internet`; with `trust`, the app trusts the test CA.
async fn app_on(internet: &FakeInternet, trust: bool) -> TestApp {
    let resolve = internet.resolve_exact(&[]);
    let ca = internet.ca_file().display().to_string();
    let mut vars = vec![
        ("FETCH_RESOLVE", resolve.as_str()),
        // One try: a `tls` failure is not transient, and the request counts below are exact.
        ("FETCH_MAX_TRIES", "1"),
        ("CACHE_MAX_AGE_SECS", "0"),
    ];
    if trust {
        vars.push(("FETCH_EXTRA_ROOT_CERTS", ca.as_str()));
    }
    TestApp::spawn(Backend::Sqlite, &vars).await
}

/// Runs one job over `domains` and returns its result rows by domain.
async fn find(app: &TestApp, domains: &[&str]) -> HashMap<String, Value> {
    let (status, created) = app
        .post_json("/jobs", &json!({"client_id": "https", "domains": domains}))
        .await;
    assert_eq!(status, 201, "{created}");
    let job_id = created["job_id"].as_str().unwrap();
    app.wait_for_job(job_id, Duration::from_secs(30)).await;
    let (status, body) = app
        .get_json(&format!("/jobs/{job_id}/results?per_page=100"))
        .await;
    assert_eq!(status, 200, "{body}");
    let rows: HashMap<String, Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["domain"].as_str().unwrap().to_owned(), row.clone()))
        .collect();
    assert_eq!(rows.len(), domains.len(), "{body}");
    rows
}

/// A site whose home page declares `/i.png`, served over both schemes unless `https_only`.
fn site(sites: &mut Sites, host: &str, https_only: bool) {
    sites
        .page(
            host,
            r#"<html><head><link rel="icon" href="/i.png"></head></html>"#,
        )
        .file(host, "/i.png", "image/png", &png(32, 32));
    if https_only {
        sites.https_only(host);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_the_first_try() {
    let mut sites = Sites::default();
    site(&mut sites, "both.test", false);
    let internet = FakeInternet::start(sites).await;
    let app = app_on(&internet, true).await;
    let rows = find(&app, &["both.test"]).await;
    let row = &rows["both.test"];
    assert_eq!(row["status"], "success", "{row}");
    assert_eq!(row["favicon_url"], "https://both.test/i.png", "{row}");
    assert_eq!(row["final_url"], "https://both.test/", "{row}");
    // The site answers plain HTTP too: http was never needed, so never asked.
    assert_eq!(internet.https_hits("both.test", "/"), 1);
    assert_eq!(internet.hits("both.test", "/"), 1, "no http request");
    assert_eq!(internet.https_hits("both.test", "/i.png"), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_untrusted_ca_is_tls() {
    let mut sites = Sites::default();
    site(&mut sites, "locked.test", true);
    let internet = FakeInternet::start(sites).await;
    // Without FETCH_EXTRA_ROOT_CERTS the test CA is one no client trusts.
    let app = app_on(&internet, false).await;
    let rows = find(&app, &["locked.test"]).await;
    let row = &rows["locked.test"];
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["error_code"], "tls", "{row}");
    // The handshake was refused, so no https request was made; the http fallback was tried,
    // and its dropped connection did not hide the more telling `tls`.
    assert_eq!(internet.https_hits("locked.test", "/"), 0);
    assert_eq!(internet.hits("locked.test", "/"), 1, "the http fallback");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_root_certs_make_the_test_ca_trusted() {
    let mut sites = Sites::default();
    site(&mut sites, "locked.test", true);
    let internet = FakeInternet::start(sites).await;
    // The same https-only site as the untrusted case; only FETCH_EXTRA_ROOT_CERTS differs.
    let app = app_on(&internet, true).await;
    let rows = find(&app, &["locked.test"]).await;
    let row = &rows["locked.test"];
    assert_eq!(row["status"], "success", "{row}");
    assert_eq!(row["favicon_url"], "https://locked.test/i.png", "{row}");
    assert_eq!(internet.https_hits("locked.test", "/"), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_tls() {
    let mut sites = Sites::default();
    site(&mut sites, "misnamed.test", true);
    sites.wrong_certificate("misnamed.test");
    // A site from the same CA in the same job: the CA is trusted, only the name is wrong.
    site(&mut sites, "named.test", true);
    let internet = FakeInternet::start(sites).await;
    let app = app_on(&internet, true).await;
    let rows = find(&app, &["misnamed.test", "named.test"]).await;
    let row = &rows["misnamed.test"];
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["error_code"], "tls", "{row}");
    assert_eq!(internet.https_hits("misnamed.test", "/"), 0);
    assert_eq!(
        rows["named.test"]["status"], "success",
        "{}",
        rows["named.test"]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_http_icon_is_fetched_over_https() {
    let mut sites = Sites::default();
    sites.page(
        "page.test",
        r#"<html><head><link rel="icon" href="http://icons.test/i.png"></head></html>"#,
    );
    sites
        .file("icons.test", "/i.png", "image/png", &png(32, 32))
        .https_only("icons.test");
    let internet = FakeInternet::start(sites).await;
    let app = app_on(&internet, true).await;
    let rows = find(&app, &["page.test"]).await;
    let row = &rows["page.test"];
    assert_eq!(row["status"], "success", "{row}");
    assert_eq!(row["favicon_url"], "https://icons.test/i.png", "{row}");
    // The declared http URL first (its connection dropped), then the same URL over https.
    assert_eq!(internet.hits("icons.test", "/i.png"), 2);
    assert_eq!(internet.https_hits("icons.test", "/i.png"), 1);
    app.stop().await;
}

/// Sites whose icons live on one shared host (a CDN) reuse its connections: they are asked
/// over about as many TLS connections as requests may be in flight to one host, not one or
/// more per site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_icon_host_is_asked_over_few_connections() {
    let mut sites = Sites::default();
    let shops: Vec<String> = (0..40).map(|i| format!("shop{i}.test")).collect();
    for (i, shop) in shops.iter().enumerate() {
        sites
            .page(
                shop,
                &format!(r#"<link rel="icon" href="https://cdn.test/i{i}.png">"#),
            )
            .file("cdn.test", &format!("/i{i}.png"), "image/png", &png(32, 32));
        sites.https_only(shop);
    }
    sites.https_only("cdn.test");
    let internet = FakeInternet::start(sites).await;
    let app = app_on(&internet, true).await;
    let domains: Vec<&str> = shops.iter().map(String::as_str).collect();
    let rows = find(&app, &domains).await;
    for (i, shop) in shops.iter().enumerate() {
        let row = &rows[shop.as_str()];
        assert_eq!(
            row["favicon_url"],
            format!("https://cdn.test/i{i}.png"),
            "{row}"
        );
    }
    let (full, resumed) = internet.tls_handshakes("cdn.test");
    // FETCH_PER_HOST_CONCURRENCY (4) requests at most at once; a few more connections are
    // fine (one may close as another opens), one per site is not.
    assert!(
        full + resumed <= 8,
        "{full} full and {resumed} resumed handshakes for 40 icons on one host"
    );
    app.stop().await;
}
