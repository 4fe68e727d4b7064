//! `GET /icons/{domain}`: the stored icon byte for byte, its validators and safety headers,
//! resizing, the fallbacks, hostile icons, single-flight on-demand lookups, and storage that
//! grows with distinct icons rather than with jobs.

use crate::fake::{FakeInternet, Sites, bomb_png, hostile_svg, huge_svg, ico, png, svg};
use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::{Value, json};
use sha2::Digest;
use std::time::Duration;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; sandbox";

async fn run_job(app: &TestApp, domains: &[&str], extra: Value) -> Value {
    let mut body = json!({"client_id": "icons-test", "domains": domains});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, created) = app.post_json("/jobs", &body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["job_id"].as_str().unwrap().to_owned();
    app.wait_for_job(&id, Duration::from_secs(60)).await
}

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

/// Every icon answer, whatever it is, forbids script and sniffing.
fn assert_safe(response: &reqwest::Response) {
    assert_eq!(header(response, "x-content-type-options"), "nosniff");
    assert_eq!(header(response, "content-security-policy"), CSP);
}

async fn png_size(response: reqwest::Response) -> (u32, u32) {
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "image/png");
    let bytes = response.bytes().await.unwrap();
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
    (image.width(), image.height())
}

async fn serves_stored_icons(backend: Backend) {
    let ico_bytes = ico(&[16, 32]);
    let png_bytes = png(48, 48);
    let svg_bytes = svg();
    let mut sites = Sites::default();
    sites
        .page("ico.test", "<html><head><title>ico</title></head></html>")
        .file(
            "ico.test",
            "/favicon.ico",
            "image/vnd.microsoft.icon",
            &ico_bytes,
        )
        .page("png.test", r#"<link rel=icon href=/i.png>"#)
        .file("png.test", "/i.png", "application/octet-stream", &png_bytes)
        .page("svg.test", r#"<link rel=icon href=/i.svg>"#)
        .file("svg.test", "/i.svg", "text/plain", &svg_bytes)
        .page("xn--bcher-kva.test", r#"<link rel=icon href=/i.png>"#)
        .file("xn--bcher-kva.test", "/i.png", "image/png", &png_bytes)
        .page("bare.test", "<html></html>");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &internet.resolve(&[]))]).await;
    let job = run_job(
        &app,
        &[
            "ico.test",
            "png.test",
            "svg.test",
            "bücher.test",
            "bare.test",
        ],
        json!({}),
    )
    .await;
    assert_eq!(
        (job["completed"].as_i64(), job["failed"].as_i64()),
        (Some(4), Some(1)),
        "{job}"
    );
    // The same PNG on two domains is stored once.
    assert_eq!(app.count_rows("icon_blob").await, 3);

    for (domain, bytes, mime) in [
        ("ico.test", &ico_bytes, "image/x-icon"),
        ("png.test", &png_bytes, "image/png"),
        ("svg.test", &svg_bytes, "image/svg+xml"),
    ] {
        let path = format!("/icons/{domain}");
        let response = get(&app, &path).await;
        assert_eq!(response.status(), 200, "{domain}");
        assert_safe(&response);
        // The sniffed type, not what the site's server claimed.
        assert_eq!(header(&response, "content-type"), mime, "{domain}");
        let etag = format!("\"{}\"", sha(bytes));
        assert_eq!(header(&response, "etag"), etag);
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=86400, stale-while-revalidate=604800"
        );
        assert!(header(&response, "x-icon-fallback").is_empty());
        assert_eq!(
            &response.bytes().await.unwrap()[..],
            &bytes[..],
            "{domain} byte for byte"
        );

        let revalidated = app
            .http
            .get(app.url(&path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), 304, "{domain}");
        assert_eq!(header(&revalidated, "etag"), etag);
        assert_safe(&revalidated);
        assert!(revalidated.bytes().await.unwrap().is_empty());

        let head = app.http.head(app.url(&path)).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(header(&head, "etag"), etag);
        assert_eq!(header(&head, "content-type"), mime);
        assert!(head.bytes().await.unwrap().is_empty());

        let resized = get(&app, &format!("{path}?size=64&format=png")).await;
        assert_safe(&resized);
        assert_ne!(
            header(&resized, "etag"),
            etag,
            "a resize is another representation"
        );
        assert_eq!(png_size(resized).await, (64, 64), "{domain}");
        // The second time from the in-memory cache: the same answer.
        let again = get(&app, &format!("{path}?size=64")).await;
        assert_eq!(png_size(again).await, (64, 64), "{domain}");
    }

    // IDN: the Unicode and punycode spellings name one domain.
    let unicode = get(&app, "/icons/bücher.test").await;
    let punycode = get(&app, "/icons/XN--BCHER-KVA.test").await;
    assert_eq!(unicode.status(), 200);
    assert_eq!(header(&unicode, "etag"), format!("\"{}\"", sha(&png_bytes)));
    assert_eq!(header(&unicode, "etag"), header(&punycode, "etag"));

    // A failed domain and an unknown one: the letter, or a 404 in the error shape.
    for domain in ["bare.test", "never-searched.test"] {
        let letter = get(&app, &format!("/icons/{domain}")).await;
        assert_eq!(letter.status(), 200);
        assert_safe(&letter);
        assert_eq!(header(&letter, "x-icon-fallback"), "letter");
        assert_eq!(header(&letter, "content-type"), "image/svg+xml");
        let body = letter.text().await.unwrap();
        let first = domain[..1].to_uppercase();
        assert!(body.contains(&format!(">{first}</text>")), "{body}");

        let missing = get(&app, &format!("/icons/{domain}?fallback=404")).await;
        assert_eq!(missing.status(), 404);
        assert_safe(&missing);
        assert_eq!(header(&missing, "x-icon-fallback"), "letter");
        let error: Value = missing.json().await.unwrap();
        assert_eq!(error["error"]["code"], "NOT_FOUND", "{error}");
    }
    let idn_letter = get(&app, "/icons/ñandú.test").await.text().await.unwrap();
    assert!(idn_letter.contains(">Ñ</text>"), "{idn_letter}");

    // Bad input: the error shape, 400.
    for query in ["size=0", "size=257", "size=64&format=gif", "fallback=maybe"] {
        let bad = get(&app, &format!("/icons/png.test?{query}")).await;
        assert_eq!(bad.status(), 400, "{query}");
        let error: Value = bad.json().await.unwrap();
        assert_eq!(error["error"]["code"], "INVALID_INPUT", "{error}");
    }
    assert_eq!(get(&app, "/icons/localhost").await.status(), 400);

    // A second job answered from the cache stores nothing new, and its copies still point at
    // the icons.
    let before = internet.host_hits("png.test");
    let again = run_job(&app, &["ico.test", "png.test", "svg.test"], json!({})).await;
    assert_eq!(again["completed"], 3);
    assert_eq!(
        internet.host_hits("png.test"),
        before,
        "answered from the cache"
    );
    assert_eq!(app.count_rows("icon_blob").await, 3);
    let copies = app
        .count_rows("result WHERE cached = true AND icon_sha256 IS NOT NULL")
        .await;
    assert_eq!(copies, 3);
}
both_backends!(stored_icons_are_served, serves_stored_icons);

async fn hostile_icons_get_bounded_answers(backend: Backend) {
    let hostile = hostile_svg();
    let bomb = bomb_png();
    assert!(bomb.len() < 256 * 1024, "the bomb is small enough to store");
    let mut sites = Sites::default();
    sites
        .page("script.test", r#"<link rel=icon href=/i.svg>"#)
        .file("script.test", "/i.svg", "image/svg+xml", &hostile)
        .page("huge.test", r#"<link rel=icon href=/i.svg>"#)
        .file("huge.test", "/i.svg", "image/svg+xml", &huge_svg())
        .page("bomb.test", r#"<link rel=icon href=/i.png>"#)
        .file("bomb.test", "/i.png", "image/png", &bomb)
        .page("evil.test", "<html></html>");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &internet.resolve(&[]))]).await;
    run_job(&app, &["script.test", "huge.test", "bomb.test"], json!({})).await;

    // The hostile SVG is served as the site's bytes, under a CSP that forbids its script and
    // its references; resizing it draws the shapes and follows none of them.
    let served = get(&app, "/icons/script.test").await;
    assert_eq!(served.status(), 200);
    assert_eq!(header(&served, "content-type"), "image/svg+xml");
    assert_safe(&served);
    assert_eq!(&served.bytes().await.unwrap()[..], &hostile[..]);
    let resized = get(&app, "/icons/script.test?size=32&format=png").await;
    assert_safe(&resized);
    assert_eq!(png_size(resized).await, (32, 32));
    assert_eq!(
        internet.host_hits("evil.test"),
        0,
        "no reference was fetched"
    );

    // Declaring an enormous canvas makes it no icon: the finder refused it, so the answer is
    // the fallback.
    let huge = get(&app, "/icons/huge.test").await;
    assert_eq!(header(&huge, "x-icon-fallback"), "letter");
    assert_safe(&huge);

    // The bomb is stored and served as it is, but decoding it is refused within the limits:
    // a 422 in the error shape, quickly.
    let raw = get(&app, "/icons/bomb.test").await;
    assert_eq!(raw.status(), 200);
    assert_eq!(&raw.bytes().await.unwrap()[..], &bomb[..]);
    let started = std::time::Instant::now();
    let refused = get(&app, "/icons/bomb.test?size=64").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(refused.status(), 422);
    assert_safe(&refused);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "ICON_UNDECODABLE", "{error}");
}
both_backends!(hostile_icons, hostile_icons_get_bounded_answers);

async fn concurrent_finds_share_one_lookup(backend: Backend) {
    let icon = png(32, 32);
    let mut sites = Sites::default();
    sites
        .route(
            "slow.test",
            "/",
            crate::fake::Route::html(r#"<link rel=icon href=/i.png>"#)
                .with_delay(Duration::from_millis(300)),
        )
        .file("slow.test", "/i.png", "image/png", &icon);
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &internet.resolve(&[])),
            ("RATE_LIMIT_DOMAINS_PER_HOUR", "3"),
        ],
    )
    .await;
    let requests = (0..20).map(|_| {
        let app = &app;
        async move {
            let response = get(app, "/icons/slow.test?find=1").await;
            (
                response.status().as_u16(),
                header(&response, "etag").to_owned(),
                response.bytes().await.unwrap(),
            )
        }
    });
    let answers = futures::future::join_all(requests).await;
    let etag = format!("\"{}\"", sha(&icon));
    for (status, tag, bytes) in answers {
        assert_eq!((status, tag.as_str()), (200, etag.as_str()));
        assert_eq!(&bytes[..], &icon[..]);
    }
    assert_eq!(
        internet.hits("slow.test", "/"),
        1,
        "one home-page fetch for twenty requests"
    );

    // Stored like a job's: a finished job of the on-demand client, which the next job reuses
    // from the cache without a request.
    let answer = app
        .graphql(
            r#"{ jobs(clientId: "icons") { total jobs { status total } } }"#,
            json!({}),
        )
        .await;
    let jobs = &answer["data"]["jobs"];
    assert_eq!(jobs["total"], 1, "{answer}");
    assert_eq!(jobs["jobs"][0]["status"], "COMPLETED", "{answer}");
    let job = run_job(&app, &["slow.test"], json!({})).await;
    let id = job["job_id"].as_str().unwrap();
    let (_, results) = app.get_json(&format!("/jobs/{id}/results")).await;
    assert_eq!(results["results"][0]["cached"], true, "{results}");
    assert_eq!(internet.hits("slow.test", "/"), 1);

    // A searched domain is not looked up again; a new one counts against the hourly
    // allowance of this address, as any job without a key does (three domains here: the
    // lookup above, the job, and this one; the next is refused).
    let again = get(&app, "/icons/slow.test?find=1").await;
    assert_eq!(again.status(), 200);
    assert_eq!(internet.hits("slow.test", "/"), 1);
    let second = get(&app, "/icons/other.test?find=1").await;
    assert_eq!(header(&second, "x-icon-fallback"), "letter");
    let third = get(&app, "/icons/third.test?find=1").await;
    assert_eq!(third.status(), 429);
    assert_safe(&third);
}
both_backends!(single_flight, concurrent_finds_share_one_lookup);

async fn storage_grows_with_distinct_icons(backend: Backend) {
    let icons: Vec<Vec<u8>> = (0..5).map(|i| png(16 + i, 16 + i)).collect();
    let mut sites = Sites::default();
    let domains: Vec<String> = (0..1000).map(|i| format!("d{i}.test")).collect();
    for (i, domain) in domains.iter().enumerate() {
        sites.page(domain, r#"<link rel=icon href=/i.png>"#).file(
            domain,
            "/i.png",
            "image/png",
            &icons[i % 5],
        );
    }
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &internet.resolve(&[]))]).await;
    let names: Vec<&str> = domains.iter().map(String::as_str).collect();
    let first = run_job(&app, &names, json!({})).await;
    assert_eq!(first["completed"], 1000, "{first}");
    assert_eq!(app.count_rows("icon_blob").await, 5);
    // The second job fetches every domain again (no cache) and still stores nothing new.
    let second = run_job(&app, &names, json!({"max_age_seconds": 0})).await;
    assert_eq!(second["completed"], 1000, "{second}");
    assert_eq!(internet.hits("d0.test", "/i.png"), 2);
    assert_eq!(app.count_rows("icon_blob").await, 5);
    assert_eq!(
        app.count_rows("result WHERE icon_sha256 IS NOT NULL").await,
        2000
    );
}
both_backends!(
    distinct_icons_stored_once,
    storage_grows_with_distinct_icons
);

/// The directives of a `Content-Security-Policy`, each as its words.
fn directives(response: &reqwest::Response) -> Vec<String> {
    header(response, "content-security-policy")
        .split(';')
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|d| !d.is_empty())
        .collect()
}

async fn svg_answers_are_sandboxed(backend: Backend) {
    let mut sites = Sites::default();
    sites
        .page("svg.test", r#"<link rel=icon href=/i.svg>"#)
        .file("svg.test", "/i.svg", "image/svg+xml", &svg())
        .page("png.test", r#"<link rel=icon href=/i.png>"#)
        .file("png.test", "/i.png", "image/png", &png(32, 32));
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &internet.resolve(&[]))]).await;
    run_job(&app, &["svg.test", "png.test"], json!({})).await;

    // A stored SVG opened as a page is a document of this origin: the sandbox gives it an
    // opaque origin and no forms or scripts, and `form-action 'none'` stops a form posting
    // anywhere, so a "paste your key" form drawn by a site cannot send what is typed.
    for path in ["/icons/svg.test", "/icons/never.test"] {
        let response = get(&app, path).await;
        assert_eq!(header(&response, "content-type"), "image/svg+xml", "{path}");
        let policy = directives(&response);
        for wanted in [
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            "form-action 'none'",
            "sandbox",
        ] {
            assert!(policy.iter().any(|d| d == wanted), "{path}: {policy:?}");
        }
    }
    // Raster answers keep their policy as well.
    for path in ["/icons/png.test", "/icons/svg.test?size=16"] {
        let response = get(&app, path).await;
        assert_eq!(header(&response, "content-type"), "image/png", "{path}");
        let policy = directives(&response);
        for wanted in ["default-src 'none'", "style-src 'unsafe-inline'"] {
            assert!(policy.iter().any(|d| d == wanted), "{path}: {policy:?}");
        }
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    }
}
both_backends!(svg_sandbox, svg_answers_are_sandboxed);
