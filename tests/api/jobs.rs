//! A whole job, end to end: submitted over REST, worked by the in-process pool against a fake
//! internet, then read back over REST, GraphQL and CSV, field by field.

use crate::fake::{FakeInternet, Route, Sites, dead_addr, ico, png, svg};
use crate::helpers::{Backend, TestApp, both_backends, parse_csv};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// What the job must say about one domain.
#[derive(Clone, Debug)]
struct Expect {
    status: &'static str,
    favicon_url: Option<String>,
    error_code: Option<&'static str>,
    mime: Option<&'static str>,
    size: Option<(i64, i64)>,
    final_url: Option<String>,
    tries: i64,
}

impl Expect {
    fn icon(url: String, mime: &'static str, size: (i64, i64), final_url: String) -> Self {
        Self {
            status: "success",
            favicon_url: Some(url),
            error_code: None,
            mime: Some(mime),
            size: Some(size),
            final_url: Some(final_url),
            tries: 1,
        }
    }

    fn failure(code: &'static str, tries: i64) -> Self {
        Self {
            status: "failed",
            favicon_url: None,
            error_code: Some(code),
            mime: None,
            size: None,
            final_url: None,
            tries,
        }
    }
}

/// 52 sites in eight shapes; returns the fake internet, the submission list and expectations.
/// A loopback port that accepts each connection and closes it at once, counting them: a
/// dead host whose tries can be seen.
struct SlammingDoor {
    addr: std::net::SocketAddr,
    knocks: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SlammingDoor {
    async fn open() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let knocks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = knocks.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { addr, knocks }
    }

    fn knocks(&self) -> usize {
        self.knocks.load(std::sync::atomic::Ordering::SeqCst)
    }
}

type World = (
    FakeInternet,
    SlammingDoor,
    Vec<String>,
    HashMap<String, Expect>,
    String,
);

async fn build_world() -> World {
    let door = SlammingDoor::open().await;
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    let mut expect = HashMap::new();
    for i in 0..20 {
        let host = format!("link{i}.test");
        sites
            .page(&host, r#"<html><head><title>x</title><link rel="icon" href="/icon.png" sizes="32x32"></head><body>hi</body></html>"#)
            .file(&host, "/icon.png", "image/png", &png(32, 32));
        expect.insert(
            host.clone(),
            Expect::icon(
                format!("http://{host}/icon.png"),
                "image/png",
                (32, 32),
                format!("http://{host}/"),
            ),
        );
        domains.push(host);
    }
    for i in 0..10 {
        let host = format!("ico{i}.test");
        sites
            .page(&host, "<html><head><title>no links</title></head></html>")
            .file(&host, "/favicon.ico", "image/x-icon", &ico(&[16, 32, 48]));
        expect.insert(
            host.clone(),
            Expect::icon(
                format!("http://{host}/favicon.ico"),
                "image/x-icon",
                (48, 48),
                format!("http://{host}/"),
            ),
        );
        domains.push(host);
    }
    for i in 0..5 {
        let host = format!("apple{i}.test");
        sites
            .page(
                &host,
                r#"<html><head><LINK REL="apple-touch-icon" HREF="/touch.png"></head></html>"#,
            )
            .file(&host, "/touch.png", "image/png", &png(180, 180));
        expect.insert(
            host.clone(),
            Expect::icon(
                format!("http://{host}/touch.png"),
                "image/png",
                (180, 180),
                format!("http://{host}/"),
            ),
        );
        domains.push(host);
    }
    for i in 0..5 {
        let host = format!("redir{i}.test");
        let www = format!("www.{host}");
        sites
            .route(&host, "/", Route::redirect(301, &format!("http://{www}/")))
            .page(
                &www,
                r#"<html><head><link rel="shortcut icon" href="i.png"></head></html>"#,
            )
            .file(&www, "/i.png", "image/png", &png(64, 64));
        expect.insert(
            host.clone(),
            Expect::icon(
                format!("http://{www}/i.png"),
                "image/png",
                (64, 64),
                format!("http://{www}/"),
            ),
        );
        domains.push(host);
    }
    for i in 0..5 {
        let host = format!("missing{i}.test");
        sites.page(
            &host,
            "<html><head><title>nothing here</title></head></html>",
        );
        expect.insert(host.clone(), Expect::failure("no_icon", 1));
        domains.push(host);
    }
    for i in 0..2 {
        let host = format!("soft{i}.test");
        sites.page(&host, "<html><head></head></html>").route(
            &host,
            "/favicon.ico",
            Route::html("<html>Page not found</html>"),
        );
        expect.insert(host.clone(), Expect::failure("no_icon", 1));
        domains.push(host);
    }
    for i in 0..2 {
        let host = format!("base{i}.test");
        sites
            .page(&host, r#"<html><head><base href="/static/"><link rel="icon" type="image/svg+xml" href="fav.svg"></head></html>"#)
            .file(&host, "/static/fav.svg", "image/svg+xml", &svg());
        expect.insert(
            host.clone(),
            Expect::icon(
                format!("http://{host}/static/fav.svg"),
                "image/svg+xml",
                (64, 64),
                format!("http://{host}/"),
            ),
        );
        domains.push(host);
    }
    let internet = FakeInternet::start(sites).await;
    let mut dead_rules = Vec::new();
    for i in 0..3 {
        let host = format!("dead{i}.test");
        // dead0.test answers every connection by hanging up (so the test can count that it
        // was tried); the others refuse connections outright.
        let addr = if i == 0 { door.addr } else { dead_addr().await };
        dead_rules.push((host.clone(), addr));
        dead_rules.push((format!("www.{host}"), addr));
        expect.insert(host.clone(), Expect::failure("connect", 2));
        domains.push(host);
    }
    let rules: Vec<(&str, std::net::SocketAddr)> =
        dead_rules.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let resolve = internet.resolve(&rules);
    (internet, door, domains, expect, resolve)
}

fn check_result(result: &Value, expect: &Expect) {
    let domain = result["domain"].as_str().unwrap();
    let ctx = format!("{domain}: {result}");
    assert_eq!(result["status"], expect.status, "{ctx}");
    assert_eq!(
        result["favicon_url"].as_str(),
        expect.favicon_url.as_deref(),
        "{ctx}"
    );
    assert_eq!(result["error_code"].as_str(), expect.error_code, "{ctx}");
    assert_eq!(result["tries"], expect.tries, "{ctx}");
    assert_eq!(result["mime"].as_str(), expect.mime, "{ctx}");
    if let Some((w, h)) = expect.size {
        assert_eq!(
            (result["width"].as_i64(), result["height"].as_i64()),
            (Some(w), Some(h)),
            "{ctx}"
        );
    }
    if let Some(final_url) = &expect.final_url {
        assert_eq!(
            result["final_url"].as_str(),
            Some(final_url.as_str()),
            "{ctx}"
        );
    }
    match expect.error_code {
        Some(code) => {
            let error = result["error"].as_str().unwrap_or_default();
            assert!(error.starts_with(&format!("{code}: ")), "{ctx}");
        }
        None => assert!(result["error"].is_null(), "{ctx}"),
    }
}

async fn runs_a_mixed_job_end_to_end(backend: Backend) {
    let (internet, door, domains, expect, resolve) = build_world().await;
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &resolve)]).await;
    // Duplicates in other spellings are merged into the first occurrence.
    let mut submitted = domains.clone();
    submitted.push("HTTP://LINK0.TEST/some/path".into());
    submitted.push("link1.test.".into());
    let (status, created) = app
        .post_json("/jobs", &json!({"client_id": "e2e", "domains": submitted}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "processing");
    let job_id = created["job_id"].as_str().unwrap().to_owned();

    let job = app.wait_for_job(&job_id, Duration::from_secs(60)).await;
    let successes = expect.values().filter(|e| e.status == "success").count() as i64;
    let failures = expect.len() as i64 - successes;
    assert_eq!(job["job_id"], job_id.as_str());
    assert_eq!(job["status"], "completed");
    assert_eq!(job["progress"], 100);
    assert_eq!(job["total"], domains.len() as i64);
    assert_eq!(job["completed"], successes);
    assert_eq!(job["failed"], failures);

    // REST results: pages of 20 in submission order, every field checked.
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, body) = app
            .get_json(&format!("/jobs/{job_id}/results?page={page}&per_page=20"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["page"], page);
        assert_eq!(body["per_page"], 20);
        assert_eq!(body["total"], domains.len() as i64);
        for result in body["results"].as_array().unwrap() {
            let domain = result["domain"].as_str().unwrap().to_owned();
            check_result(result, &expect[&domain]);
            seen.push(domain);
        }
    }
    assert_eq!(
        seen, domains,
        "results must come in submission order, once each"
    );
    let (_, past_the_end) = app
        .get_json(&format!("/jobs/{job_id}/results?page=4&per_page=20"))
        .await;
    assert_eq!(past_the_end["results"], json!([]));
    // Default paging is page 1 of 20.
    let (_, default_page) = app.get_json(&format!("/jobs/{job_id}/results")).await;
    assert_eq!(
        (
            default_page["page"].as_i64(),
            default_page["per_page"].as_i64()
        ),
        (Some(1), Some(20))
    );

    // The sites were really fetched: each home page at least once. The dead host was
    // really tried, at its own address, on each of its two tries (its `connect` failure is
    // not made up), and no request of it reached any site.
    assert!(internet.hits("link0.test", "/") >= 1);
    assert!(internet.hits("link0.test", "/icon.png") >= 1);
    assert!(
        door.knocks() >= 2,
        "dead0.test was connected to {} times",
        door.knocks()
    );
    assert_eq!(internet.host_hits("dead0.test"), 0);

    // GraphQL: the same job and results.
    let answer = app
        .graphql(
            "query($id: ID!) { job(id: $id) { id clientId status progress total completed failed createdAt updatedAt }
               results(jobId: $id, page: 1, perPage: 100) { page perPage total
                 results { domain faviconUrl status error errorCode tries finalUrl mime width height
                           candidates { url source mime width height } } } }",
            json!({"id": job_id}),
        )
        .await;
    assert!(answer["errors"].is_null(), "{answer}");
    let job = &answer["data"]["job"];
    assert_eq!(job["id"], job_id.as_str());
    assert_eq!(job["clientId"], "e2e");
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(job["progress"], 100);
    assert_eq!(job["completed"], successes);
    assert_eq!(job["failed"], failures);
    let page = &answer["data"]["results"];
    assert_eq!(
        (
            page["page"].as_i64(),
            page["perPage"].as_i64(),
            page["total"].as_i64()
        ),
        (Some(1), Some(100), Some(domains.len() as i64))
    );
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), domains.len());
    for result in results {
        let domain = result["domain"].as_str().unwrap();
        let e = &expect[domain];
        assert_eq!(result["status"], e.status.to_uppercase(), "{result}");
        assert_eq!(
            result["faviconUrl"].as_str(),
            e.favicon_url.as_deref(),
            "{result}"
        );
        assert_eq!(result["errorCode"].as_str(), e.error_code, "{result}");
        assert_eq!(result["tries"], e.tries, "{result}");
        assert_eq!(result["mime"].as_str(), e.mime, "{result}");
        if let Some(url) = &e.favicon_url {
            let chosen = result["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["url"] == url.as_str())
                .unwrap_or_else(|| panic!("the chosen icon is among the candidates: {result}"));
            assert_eq!(chosen["mime"].as_str(), e.mime, "{result}");
        }
    }
    let answer = app
        .graphql(
            "query { jobs(clientId: \"e2e\") { total jobs { id status total } } }",
            json!({}),
        )
        .await;
    assert_eq!(answer["data"]["jobs"]["total"], 1, "{answer}");
    assert_eq!(answer["data"]["jobs"]["jobs"][0]["id"], job_id.as_str());

    // CSV: header, then one row per domain in submission order, matching the REST answer.
    let response = app
        .http
        .get(app.url(&format!("/jobs/{job_id}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"favicons-{job_id}.csv\"")
    );
    let text = response.text().await.unwrap();
    let (header, rows) = parse_csv(&text);
    // The contract, written out rather than taken from the code that makes it.
    assert_eq!(
        header.join(","),
        "domain,status,favicon_url,error,tries,error_code,final_url,mime,width,height,fetched_at,cached,icon_url"
    );
    assert_eq!(rows.len(), domains.len());
    for (row, domain) in rows.iter().zip(&domains) {
        let e = &expect[domain];
        assert_eq!(&row[0], domain.as_str());
        assert_eq!(&row[1], e.status);
        assert_eq!(&row[2], e.favicon_url.as_deref().unwrap_or(""));
        assert_eq!(row[3].is_empty(), e.error_code.is_none(), "{row:?}");
        assert_eq!(&row[4], e.tries.to_string().as_str());
        assert_eq!(&row[5], e.error_code.unwrap_or(""));
        assert_eq!(&row[7], e.mime.unwrap_or(""));
        if let Some((w, h)) = e.size {
            assert_eq!(
                (row[8].as_str(), row[9].as_str()),
                (w.to_string().as_str(), h.to_string().as_str())
            );
        }
        assert!(
            !row[10].is_empty(),
            "fetched_at is set for a finished row: {row:?}"
        );
        assert_eq!(&row[11], "false", "nothing came from the cache: {row:?}");
        // A found icon's bytes are stored, so it links to this service's copy.
        let icon_url = match e.status {
            "success" => format!("/icons/{domain}"),
            _ => String::new(),
        };
        assert_eq!(&row[12], icon_url.as_str(), "{row:?}");
    }
    app.stop().await;
}
both_backends!(mixed_job_end_to_end, runs_a_mixed_job_end_to_end);

/// A job whose every domain fails ends `failed`, and the CSV of it is still complete.
async fn all_failures_fail_the_job(backend: Backend) {
    let mut sites = Sites::default();
    sites.page("empty.test", "<html></html>");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[]).await;
    let job_id = app.create_job("f", &["empty.test", "nothing.test"]).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        (job["completed"].as_i64(), job["failed"].as_i64()),
        (Some(0), Some(2))
    );
    app.stop().await;
}
both_backends!(all_failures, all_failures_fail_the_job);
