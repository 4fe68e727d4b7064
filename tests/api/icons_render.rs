//! Resizing hostile SVGs (`/icons/{domain}?size=N`): a document whose drawing would run away
//! is refused before it is drawn, the refusal is remembered per (icon, size), the CPU the
//! process spends stops with the answer, and each client's render time is budgeted.

use crate::fake::{FakeInternet, Sites, svg};
use crate::helpers::{Backend, TestApp, both_backends};
use crate::icons_access::key;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A 1.5 KB document that expands to 8⁵ blurred circles through nested `<use>`: each blur
/// works on a region up to 25 times the canvas, so drawing it takes minutes.
fn use_bomb() -> Vec<u8> {
    let mut svg = String::from(
        r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64" viewBox="0 0 64 64"><defs><filter id="b" x="-2" y="-2" width="5" height="5"><feGaussianBlur stdDeviation="40"/></filter><circle id="a0" cx="32" cy="32" r="20" fill="red" filter="url(#b)"/>"##,
    );
    for level in 1..=5 {
        svg.push_str(&format!(r#"<g id="a{level}">"#));
        for _ in 0..8 {
            svg.push_str(&format!(r##"<use xlink:href="#a{}"/>"##, level - 1));
        }
        svg.push_str("</g>");
    }
    svg.push_str(r##"</defs><use xlink:href="#a5"/></svg>"##);
    svg.into_bytes()
}

/// One element whose filter is quadratic in its radius: a dilation with a window as wide as
/// the region it covers.
fn morphology() -> Vec<u8> {
    br##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><filter id="m" x="-1" y="-1" width="3" height="3"><feMorphology operator="dilate" radius="64"/></filter><circle cx="32" cy="32" r="20" fill="blue" filter="url(#m)"/></svg>"##.to_vec()
}

/// A real icon with a soft shadow: a blur over its own small region, which is drawn.
fn shadowed() -> Vec<u8> {
    br##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><filter id="s"><feGaussianBlur stdDeviation="2"/></filter><circle cx="32" cy="34" r="26" fill="#0004" filter="url(#s)"/><circle cx="32" cy="32" r="26" fill="#2a6"/></svg>"##.to_vec()
}

/// The CPU time this process (the test and the app it hosts) has used: utime + stime of
/// /proc/self/stat, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name may hold spaces; the fields after it are fixed: state is the first,
    // utime the 12th and stime the 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux build this runs on.
    ticks as f64 / 100.0
}

/// The resident memory of this process, in MB (VmRSS of /proc/self/status), for the log.
fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// The value of `favicon_finder_icon_renders_total{outcome="…"}` in /metrics.
async fn renders(app: &TestApp, outcome: &str) -> u64 {
    renders_with(app, outcome, None).await
}

/// [`renders`] with `METRICS_TOKEN`'s value, when the app wants one.
async fn renders_with(app: &TestApp, outcome: &str, token: Option<&str>) -> u64 {
    let mut request = app.http.get(app.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    // A refused scrape must not read as zero renders.
    assert_eq!(response.status(), 200, "/metrics: {response:?}");
    let text = response.text().await.unwrap();
    let series = format!("favicon_finder_icon_renders_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn sites(pairs: &[(&str, Vec<u8>)]) -> FakeInternet {
    let mut sites = Sites::default();
    for (host, bytes) in pairs {
        sites.page(host, r#"<link rel=icon href=/i.svg>"#).file(
            host,
            "/i.svg",
            "image/svg+xml",
            bytes,
        );
    }
    FakeInternet::start(sites).await
}

async fn find(app: &TestApp, domains: &[&str]) {
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "render-test", "domains": domains}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["job_id"].as_str().unwrap().to_owned();
    let job = app.wait_for_job(&id, Duration::from_secs(60)).await;
    assert_eq!(job["completed"], domains.len(), "{job}");
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn hostile_resizes_stop_with_their_answer(backend: Backend) {
    let internet = sites(&[
        ("bomb.test", use_bomb()),
        ("morph.test", morphology()),
        ("fine.test", svg()),
        ("shadow.test", shadowed()),
    ])
    .await;
    assert!(use_bomb().len() < 2048, "{}", use_bomb().len());
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &internet.resolve(&[]))]).await;
    find(
        &app,
        &["bomb.test", "morph.test", "fine.test", "shadow.test"],
    )
    .await;

    // Eight resizes at once, each a new (icon, size): every answer is a bounded failure.
    let rss_before = rss_mb();
    let started = Instant::now();
    let requests = (0..8u32).map(|i| {
        let app = &app;
        let domain = if i % 2 == 0 {
            "bomb.test"
        } else {
            "morph.test"
        };
        async move {
            let path = format!("/icons/{domain}?size={}", 200 + i);
            status_and_code(app.http.get(app.url(&path)).send().await.unwrap()).await
        }
    });
    let answers = futures::future::join_all(requests).await;
    let answered = cpu_seconds();
    let took = started.elapsed();
    for answer in &answers {
        assert_eq!(answer, &(422, "ICON_UNDECODABLE".to_owned()), "{answers:?}");
    }
    assert!(took < Duration::from_secs(10), "answered in {took:?}");

    // After the answers no render goes on: over five idle seconds the process's CPU grows by
    // less than one render's deadline (2 s), where eight renders running on would take
    // whatever share of the cores they can get.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let spent = cpu_seconds() - answered;
    eprintln!(
        "hostile resizes: answered in {took:?}, then {spent:.2} s of CPU in 5 s; \
         RSS {rss_before} MB before, {} MB after",
        rss_mb()
    );
    assert!(
        spent < 2.0,
        "{spent:.2} s of CPU in the 5 s after the answers ({took:?} to answer)"
    );

    // A repeat is the remembered failure, at once and without drawing.
    let drawn = renders(&app, "rendered").await + renders(&app, "refused").await;
    let remembered = renders(&app, "cached_failure").await;
    let started = Instant::now();
    let again = app
        .http
        .get(app.url("/icons/bomb.test?size=200"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("hostile resizes: the repeat answered in {took:?}");
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["code"], "ICON_UNDECODABLE", "{error}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(renders(&app, "cached_failure").await, remembered + 1);
    assert_eq!(
        renders(&app, "rendered").await + renders(&app, "refused").await,
        drawn,
        "nothing was measured or drawn again"
    );

    // Real icons, a soft shadow included, are still drawn at every size.
    for domain in ["fine.test", "shadow.test"] {
        for size in [16, 64, 256] {
            let path = format!("/icons/{domain}?size={size}");
            let ok = app.http.get(app.url(&path)).send().await.unwrap();
            assert_eq!(ok.status(), 200, "{path}");
            assert_eq!(ok.headers()["content-type"].to_str().unwrap(), "image/png");
        }
    }
    app.stop().await;
}
both_backends!(hostile_resizes, hostile_resizes_stop_with_their_answer);

/// The `/metrics` token of the budget test, whose API wants keys.
const METRICS_TOKEN: &str = "metrics-token-for-the-render-budget";

async fn render_time_is_budgeted_per_client(backend: Backend) {
    let internet = sites(&[("shadow.test", shadowed())]).await;
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &internet.resolve(&[])),
            ("AUTH_MODE", "required"),
            ("ICON_RENDER_MS_PER_MINUTE", "10"),
            ("METRICS_TOKEN", METRICS_TOKEN),
        ],
    )
    .await;
    let acme = key(&app, "acme", "read submit").await;
    let other = key(&app, "other", "read").await;
    let get = |path: String, key: String| {
        let request = app.http.get(app.url(&path)).bearer_auth(key);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        get("/icons/shadow.test?find=1".into(), acme.clone())
            .await
            .status(),
        200
    );

    // Each new size is a render; 10 ms a minute runs out within a few.
    let mut limited = None;
    for size in (200..=256).rev() {
        let response = get(format!("/icons/shadow.test?size={size}"), acme.clone()).await;
        if response.status() == 429 {
            limited = Some((size, response));
            break;
        }
        assert_eq!(response.status(), 200, "size {size}");
    }
    let (size, response) = limited.expect("the budget ran out");
    assert!(size < 256, "the first render is always allowed");
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    assert_eq!(
        status_and_code(response).await,
        (429, "RATE_LIMITED".to_owned())
    );
    // What was drawn already is served without drawing (no render is counted, and the
    // spent budget does not refuse it); another client has its own budget.
    let drawn = renders_with(&app, "rendered", Some(METRICS_TOKEN)).await;
    assert!(drawn > 0, "the renders are counted");
    let cached = get("/icons/shadow.test?size=256".into(), acme.clone()).await;
    assert_eq!(cached.status(), 200);
    assert_eq!(
        renders_with(&app, "rendered", Some(METRICS_TOKEN)).await,
        drawn,
        "the cached size was drawn again"
    );
    let theirs = get(format!("/icons/shadow.test?size={size}"), other.clone()).await;
    assert_eq!(theirs.status(), 200);
    app.stop().await;
}
both_backends!(render_budget, render_time_is_budgeted_per_client);
