//! Fresh icons: `POST /icons/{domain}/refresh` (and GraphQL `refreshIcon`) in one flight with
//! `?find=1`, limited per client; a transient failure never replacing a good icon; a stale
//! icon served at once while one background re-find runs; `?theme=dark`; and `?sha=`, one
//! exact stored version of a domain's icon, kept while a result, the cache or the change history
//! names it.

use crate::fake::{FakeInternet, Route, Sites, png, svg};
use crate::helpers::{Backend, TestApp, both_backends, number};
use crate::icons_access::key;
use crate::subscriptions::wait_until;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use sha2::Digest;
use std::time::{Duration, Instant};

fn sha(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap())
}

/// The status, the `ETag` and the body of `GET path`.
async fn fetch(app: &TestApp, path: &str) -> (u16, String, Vec<u8>) {
    let response = get(app, path).await;
    let status = response.status().as_u16();
    let etag = header(&response, "etag").to_owned();
    (status, etag, response.bytes().await.unwrap().to_vec())
}

async fn refresh(app: &TestApp, domain: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url(&format!("/icons/{domain}/refresh")))
        .json(&json!({}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

/// A site whose icon is `/i.png`.
fn icon_page() -> &'static str {
    r#"<html><head><link rel=icon href=/i.png></head></html>"#
}

/// A fake internet where `host` declares `/i.png`, served as `icon`, and an app that resolves
/// into it, with `env` besides.
async fn icon_site_app(
    backend: Backend,
    host: &str,
    icon: &[u8],
    env: &[(&str, &str)],
) -> (FakeInternet, TestApp) {
    let mut sites = Sites::default();
    sites
        .page(host, icon_page())
        .file(host, "/i.png", "image/png", icon);
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let mut overrides = vec![("FETCH_RESOLVE", resolve.as_str())];
    overrides.extend_from_slice(env);
    let app = TestApp::spawn(backend, &overrides).await;
    (internet, app)
}

async fn refresh_replaces_the_icon_and_a_transient_failure_keeps_it(backend: Backend) {
    let old = png(32, 32);
    let new = png(48, 48);
    let (internet, app) = icon_site_app(backend, "a.test", &old, &[]).await;

    let (status, etag, _) = fetch(&app, "/icons/a.test?find=1").await;
    assert_eq!((status, etag), (200, format!("\"{}\"", sha(&old))));

    // The site changes its icon: the cache still serves the old one until a refresh.
    internet.set_route(
        "a.test",
        "/i.png",
        Route::new(200, "image/png", new.clone()),
    );
    assert_eq!(fetch(&app, "/icons/a.test").await.2, old);
    let answer = refresh(&app, "a.test", None).await;
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["domain"], "a.test", "{answer}");
    assert_eq!(answer["status"], "success", "{answer}");
    assert_eq!(answer["favicon_url"], "http://a.test/i.png", "{answer}");
    assert_eq!(answer["sha256"], sha(&new), "{answer}");
    assert_eq!(answer["mime"], "image/png", "{answer}");
    assert_eq!(
        (answer["width"].as_i64(), answer["height"].as_i64()),
        (Some(48), Some(48))
    );
    assert_eq!(answer["changed"], true, "{answer}");
    assert_eq!(answer["served"], sha(&new), "{answer}");
    assert!(
        answer["error"].is_null() && answer["error_code"].is_null(),
        "{answer}"
    );
    let (status, etag, bytes) = fetch(&app, "/icons/a.test").await;
    assert_eq!((status, etag), (200, format!("\"{}\"", sha(&new))));
    assert_eq!(bytes, new);

    // The site fails transiently: the refresh says so, and the good icon stays served.
    internet.set_route("a.test", "/", Route::new(500, "text/html", "down"));
    internet.set_route(
        "a.test",
        "/favicon.ico",
        Route::new(500, "text/html", "down"),
    );
    let answer: Value = refresh(&app, "a.test", None).await.json().await.unwrap();
    assert_eq!(answer["status"], "failed", "{answer}");
    assert!(answer["error_code"].is_string(), "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("500"),
        "{answer}"
    );
    assert_eq!(answer["changed"], false, "{answer}");
    assert_eq!(answer["served"], sha(&new), "{answer}");
    assert_eq!(fetch(&app, "/icons/a.test").await.2, new);
    // GraphQL's refreshIcon answers the same.
    let answer = app
        .graphql(
            r#"mutation { refreshIcon(domain: "A.test") {
                domain status faviconUrl sha256 errorCode changed served } }"#,
            json!({}),
        )
        .await;
    let refreshed = &answer["data"]["refreshIcon"];
    assert_eq!(refreshed["domain"], "a.test", "{answer}");
    assert_eq!(refreshed["status"], "FAILED", "{answer}");
    assert_eq!(refreshed["errorCode"], "rate_limited", "{answer}");
    assert_eq!(refreshed["changed"], false, "{answer}");
    assert_eq!(refreshed["served"], sha(&new), "{answer}");
    assert_eq!(fetch(&app, "/icons/a.test").await.2, new);

    // The old version is still there by its hash, for a before/after view: immutable.
    let before = get(&app, &format!("/icons/a.test?sha={}", sha(&old))).await;
    assert_eq!(before.status(), 200);
    assert_eq!(header(&before, "etag"), format!("\"{}\"", sha(&old)));
    assert!(
        header(&before, "cache-control").contains("immutable"),
        "{:?}",
        before.headers()
    );
    assert_eq!(before.bytes().await.unwrap().to_vec(), old);
    let small = get(&app, &format!("/icons/a.test?sha={}&size=16", sha(&old))).await;
    assert_eq!(small.status(), 200);
    let small = image::load_from_memory(&small.bytes().await.unwrap()).unwrap();
    assert_eq!((small.width(), small.height()), (16, 16));
    // A hash the domain never had (here, another domain's icon) is not served under it.
    let unknown = get(
        &app,
        &format!("/icons/b.test?sha={}&fallback=404", sha(&old)),
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let bad = get(&app, "/icons/a.test?sha=nothex").await;
    assert_eq!(bad.status(), 400);

    // A permanent answer is decisive: the site now has no icon at all, so the fallback is
    // served, while the versions before stay there by their hashes.
    internet.set_route("a.test", "/", Route::html("<html><head></head></html>"));
    internet.set_route("a.test", "/favicon.ico", Route::new(404, "text/html", "no"));
    internet.set_route("a.test", "/i.png", Route::new(404, "text/html", "no"));
    let answer: Value = refresh(&app, "a.test", None).await.json().await.unwrap();
    assert_eq!(answer["error_code"], "no_icon", "{answer}");
    assert_eq!(answer["changed"], true, "{answer}");
    assert!(answer["served"].is_null(), "{answer}");
    let gone = get(&app, "/icons/a.test?fallback=404").await;
    assert_eq!(gone.status(), 404);
    let kept = get(&app, &format!("/icons/a.test?sha={}", sha(&new))).await;
    assert_eq!(kept.bytes().await.unwrap().to_vec(), new);
}
both_backends!(
    refresh_and_transient_failures,
    refresh_replaces_the_icon_and_a_transient_failure_keeps_it
);

async fn a_refresh_and_a_find_share_one_lookup(backend: Backend) {
    let icon = png(32, 32);
    let mut sites = Sites::default();
    sites
        .route(
            "slow.test",
            "/",
            Route::html(icon_page()).with_delay(Duration::from_millis(800)),
        )
        .file("slow.test", "/i.png", "image/png", &icon);
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &internet.resolve(&[]))]).await;
    let refreshing = refresh(&app, "slow.test", None);
    let finding = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fetch(&app, "/icons/slow.test?find=1").await
    };
    let (refreshed, found) = tokio::join!(refreshing, finding);
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    assert_eq!(refreshed["status"], "success", "{refreshed}");
    assert_eq!(found, (200, format!("\"{}\"", sha(&icon)), icon.clone()));
    assert_eq!(
        internet.hits("slow.test", "/"),
        1,
        "the find joined the refresh's lookup"
    );
    // And a refresh joins a find in flight the same way.
    let finding = fetch(&app, "/icons/slow2.test?find=1");
    let refreshing = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        refresh(&app, "slow.test", None).await
    };
    let _ = tokio::join!(finding, refreshing);
    assert_eq!(
        internet.hits("slow.test", "/"),
        2,
        "a refresh always looks again"
    );
}
both_backends!(refresh_single_flight, a_refresh_and_a_find_share_one_lookup);

async fn refreshes_are_limited_per_client(backend: Backend) {
    let (_internet, app) = icon_site_app(
        backend,
        "r.test",
        &png(16, 16),
        &[("AUTH_MODE", "required"), ("ICON_REFRESH_PER_MINUTE", "2")],
    )
    .await;
    let first = key(&app, "acme", "read submit").await;
    let second = key(&app, "acme", "submit").await;
    let other = key(&app, "globex", "submit").await;
    let read_only = key(&app, "globex", "read").await;
    assert_eq!(refresh(&app, "r.test", None).await.status(), 401);
    assert_eq!(
        refresh(&app, "r.test", Some(&read_only)).await.status(),
        403
    );
    assert_eq!(refresh(&app, "r.test", Some(&first)).await.status(), 200);
    assert_eq!(refresh(&app, "r.test", Some(&second)).await.status(), 200);
    // Both keys are one client's: its third refresh this minute is refused.
    let over = refresh(&app, "r.test", Some(&first)).await;
    assert_eq!(over.status(), 429);
    let retry: u64 = header(&over, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ICON_REFRESH_PER_MINUTE"),
        "{body}"
    );
    // Another client has its own.
    assert_eq!(refresh(&app, "r.test", Some(&other)).await.status(), 200);
}
both_backends!(refresh_rate_limit, refreshes_are_limited_per_client);

async fn a_stale_icon_is_served_at_once_and_found_again_once(backend: Backend) {
    let old = png(32, 32);
    let new = png(48, 48);
    let (internet, app) = icon_site_app(
        backend,
        "stale.test",
        &old,
        &[("ICON_REFRESH_AFTER_SECS", "1")],
    )
    .await;
    assert_eq!(fetch(&app, "/icons/stale.test?find=1").await.2, old);
    assert_eq!(internet.hits("stale.test", "/"), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Now older than ICON_REFRESH_AFTER_SECS, and the site has become slow and changed.
    let delay = Duration::from_secs(3);
    internet.set_route(
        "stale.test",
        "/",
        Route::html(icon_page()).with_delay(delay),
    );
    internet.set_route(
        "stale.test",
        "/i.png",
        Route::new(200, "image/png", new.clone()),
    );
    let requests = (0..12).map(|_| async {
        let started = Instant::now();
        let response = get(&app, "/icons/stale.test").await;
        let took = started.elapsed();
        let cache_control = header(&response, "cache-control").to_owned();
        (
            took,
            cache_control,
            response.bytes().await.unwrap().to_vec(),
        )
    });
    for (took, cache_control, bytes) in futures::future::join_all(requests).await {
        assert!(took < delay / 3, "a stale answer waited: {took:?}");
        assert_eq!(bytes, old, "the stale icon is served");
        assert!(
            cache_control.contains("stale-while-revalidate=1"),
            "{cache_control}"
        );
    }
    // One re-find for the twelve requests, whose outcome is served once it lands.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fetch(&app, "/icons/stale.test").await.2 != new {
        assert!(Instant::now() < deadline, "the re-find never landed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(internet.hits("stale.test", "/"), 2, "one re-find");
    // Fresh again: more requests start nothing.
    for _ in 0..3 {
        assert_eq!(fetch(&app, "/icons/stale.test").await.2, new);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(internet.hits("stale.test", "/"), 2);
}
both_backends!(
    stale_while_revalidate,
    a_stale_icon_is_served_at_once_and_found_again_once
);

async fn theme_dark_serves_the_dark_variant_or_says_it_fell_back(backend: Backend) {
    let light = png(32, 32);
    let dark = svg();
    let page = r#"<html><head><link rel=icon href=/light.png sizes=32x32>
        <link rel=icon href=/dark.svg type=image/svg+xml media="(prefers-color-scheme: dark)">
        </head></html>"#;
    let mut sites = Sites::default();
    for host in ["dual.test", "lookup.test"] {
        sites
            .page(host, page)
            .file(host, "/light.png", "image/png", &light)
            .file(host, "/dark.svg", "image/svg+xml", &dark);
    }
    sites
        .page("plain.test", r#"<link rel=icon href=/light.png>"#)
        .file("plain.test", "/light.png", "image/png", &light);
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &internet.resolve(&[]))]).await;
    // Through a job (the workers' recorder) and through an on-demand lookup.
    let id = app.create_job("themes", &["dual.test", "plain.test"]).await;
    let job = app.wait_for_job(&id, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 2, "{job}");
    assert_eq!(fetch(&app, "/icons/lookup.test?find=1").await.2, light);

    for domain in ["dual.test", "lookup.test"] {
        let response = get(&app, &format!("/icons/{domain}?theme=dark")).await;
        assert_eq!(response.status(), 200, "{domain}");
        assert_eq!(header(&response, "content-type"), "image/svg+xml");
        assert_eq!(header(&response, "etag"), format!("\"{}\"", sha(&dark)));
        assert_eq!(header(&response, "x-icon-theme-fallback"), "", "{domain}");
        assert_eq!(response.bytes().await.unwrap().to_vec(), dark, "{domain}");
        // The default is still the light one.
        assert_eq!(fetch(&app, &format!("/icons/{domain}")).await.2, light);
        assert_eq!(
            fetch(&app, &format!("/icons/{domain}?theme=light")).await.2,
            light
        );
    }
    // Resized too, under its own validator.
    let resized = get(&app, "/icons/dual.test?theme=dark&size=16").await;
    assert_eq!(resized.status(), 200);
    assert_eq!(header(&resized, "etag"), format!("\"{}-16\"", sha(&dark)));
    // A site without a dark icon: the default one, saying so.
    let response = get(&app, "/icons/plain.test?theme=dark").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-icon-theme-fallback"), "default");
    assert_eq!(response.bytes().await.unwrap().to_vec(), light);
    assert_eq!(
        get(&app, "/icons/plain.test?theme=blue").await.status(),
        400
    );
    // The dark variant is stored once, like any icon.
    assert_eq!(app.count_rows("icon_blob").await, 2);
}
both_backends!(
    theme_dark,
    theme_dark_serves_the_dark_variant_or_says_it_fell_back
);

async fn private_versions_are_read_by_the_client_that_found_them(backend: Backend) {
    let icon = png(32, 32);
    let (_internet, app) = icon_site_app(
        backend,
        "p.test",
        &icon,
        &[("AUTH_MODE", "required"), ("ICONS_PUBLIC", "false")],
    )
    .await;
    let acme = key(&app, "acme", "read submit").await;
    let globex = key(&app, "globex", "read submit").await;
    let answer: Value = refresh(&app, "p.test", Some(&acme))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["served"], sha(&icon), "{answer}");
    let path = format!("/icons/p.test?sha={}&fallback=404", sha(&icon));
    let read = |key: String| {
        let request = app.http.get(app.url(&path)).bearer_auth(key);
        async move { request.send().await.unwrap() }
    };
    let own = read(acme.clone()).await;
    assert_eq!(own.status(), 200);
    assert_eq!(
        header(&own, "cache-control"),
        "private, max-age=31536000, immutable"
    );
    assert_eq!(own.bytes().await.unwrap().to_vec(), icon);
    // Another client is answered as if the domain never had that icon.
    assert_eq!(read(globex.clone()).await.status(), 404);
    // Its own refresh answers what it is served: nothing before, the icon after.
    let answer: Value = refresh(&app, "p.test", Some(&globex))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&answer["changed"], &answer["served"]),
        (&json!(true), &json!(sha(&icon)))
    );
    assert_eq!(read(globex).await.status(), 200);
}
both_backends!(
    private_versions,
    private_versions_are_read_by_the_client_that_found_them
);

/// The dark variant is kept with the domain's cache when its job is purged: still served, and
/// its blob is never taken for unreferenced by the collector.
async fn a_dark_variant_survives_its_jobs_purge(backend: Backend) {
    let light = png(32, 32);
    let dark = svg();
    let mut sites = Sites::default();
    sites
        .page(
            "kept.test",
            r#"<link rel=icon href=/light.png>
               <link rel=icon href=/dark.svg media="(prefers-color-scheme: dark)">"#,
        )
        .file("kept.test", "/light.png", "image/png", &light)
        .file("kept.test", "/dark.svg", "image/svg+xml", &dark);
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &internet.resolve(&[])),
            ("RETENTION_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let id = app.create_job("purged", &["kept.test"]).await;
    app.wait_for_job(&id, Duration::from_secs(30)).await;
    let db = app.store.connection();
    age(&app, "job", "created_at = $1, updated_at = $1", 40).await;
    wait_until("the job to be purged", || async {
        app.get_json(&format!("/jobs/{id}")).await.0 == 404
    })
    .await;
    assert_eq!(app.count_rows("result").await, 0);
    // Past a few more passes of the collector.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let marked = "SELECT COUNT(*) AS n FROM icon_blob WHERE orphaned_at IS NOT NULL";
    assert_eq!(number(db, marked).await, 0, "both blobs are referenced");
    assert_eq!(app.count_rows("icon_blob").await, 2);
    let response = get(&app, "/icons/kept.test?theme=dark").await;
    assert_eq!(header(&response, "x-icon-theme-fallback"), "");
    assert_eq!(response.bytes().await.unwrap().to_vec(), dark);
    assert_eq!(fetch(&app, "/icons/kept.test").await.2, light);
}
both_backends!(dark_survives_purge, a_dark_variant_survives_its_jobs_purge);

/// Sets `columns` (each `= $1`) of every row of `table` to `days` ago.
async fn age(app: &TestApp, table: &str, columns: &str, days: i64) {
    let db = app.store.connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("UPDATE {table} SET {columns}"),
        [(chrono::Utc::now() - chrono::Duration::days(days)).into()],
    ))
    .await
    .unwrap();
}

/// A version of an icon that a change replaced is named by that change for as long as the
/// history keeps it: after the jobs that found it are purged, `?sha=` still serves it (a
/// change's "before" thumbnail) and the collector keeps its blob; once the change itself is
/// purged, the blob is marked for collection and the version is no longer served.
async fn a_replaced_version_lives_as_long_as_its_change(backend: Backend) {
    let old = png(32, 32);
    let new = png(48, 48);
    let (internet, app) =
        icon_site_app(backend, "h.test", &old, &[("RETENTION_INTERVAL_SECS", "1")]).await;
    assert_eq!(fetch(&app, "/icons/h.test?find=1").await.2, old);
    internet.set_route(
        "h.test",
        "/i.png",
        Route::new(200, "image/png", new.clone()),
    );
    let answer: Value = refresh(&app, "h.test", None).await.json().await.unwrap();
    assert_eq!(answer["changed"], true, "{answer}");
    assert_eq!(app.count_rows("icon_change").await, 1);

    // Both lookups' rows are purged; the cache keeps only the new version.
    let db = app.store.connection();
    age(&app, "job", "created_at = $1, updated_at = $1", 40).await;
    wait_until("the lookups to be purged", || async {
        app.count_rows("result").await == 0
    })
    .await;
    // Past a few more passes of the collector.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let marked = "SELECT COUNT(*) AS n FROM icon_blob WHERE orphaned_at IS NOT NULL";
    assert_eq!(number(db, marked).await, 0, "the change names the old blob");
    assert_eq!(app.count_rows("icon_blob").await, 2);
    let before = get(
        &app,
        &format!("/icons/h.test?sha={}&fallback=404", sha(&old)),
    )
    .await;
    assert_eq!(before.status(), 200);
    assert_eq!(before.bytes().await.unwrap().to_vec(), old);

    // The history's retention ends the change, and with it the old version.
    age(&app, "icon_change", "detected_at = $1", 100).await;
    wait_until("the change to be purged", || async {
        app.count_rows("icon_change").await == 0
    })
    .await;
    wait_until("the old blob to be marked", || async {
        number(app.store.connection(), marked).await == 1
    })
    .await;
    let gone = get(
        &app,
        &format!("/icons/h.test?sha={}&fallback=404", sha(&old)),
    )
    .await;
    assert_eq!(gone.status(), 404);
    assert_eq!(fetch(&app, "/icons/h.test").await.2, new);
}
both_backends!(
    replaced_version_lives_with_its_change,
    a_replaced_version_lives_as_long_as_its_change
);
