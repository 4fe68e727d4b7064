//! `/metrics` describes the API itself: request durations by route template, method and
//! status class, and GraphQL operations by type, with labels that stay bounded.

use crate::helpers::{Backend, TestApp, parse_metrics};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const HTTP: &str = "favicon_finder_http_server_request_duration_seconds_count";
const GRAPHQL: &str = "favicon_finder_graphql_server_operation_duration_seconds_count";

/// The `_count` samples of histogram `name`: label set → count.
async fn counts(app: &TestApp, name: &str) -> BTreeMap<String, f64> {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_metrics(&text)
        .into_iter()
        .filter_map(|(key, n)| Some((key.strip_prefix(name)?.to_owned(), n)))
        .collect()
}

/// The values of `label` among the label sets of `samples`.
fn values(samples: &BTreeMap<String, f64>, label: &str) -> BTreeSet<String> {
    let pattern = format!("{label}=\"");
    samples
        .keys()
        .filter_map(|labels| {
            let rest = &labels[labels.find(&pattern)? + pattern.len()..];
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn three_routes_give_exactly_their_three_templates() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await;
    let id = uuid::Uuid::now_v7();
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let job = app
        .http
        .get(app.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), 404);
    let body = app.graphql("{ __typename }", json!({})).await;
    assert_eq!(body["data"]["__typename"], "QueryRoot", "{body}");

    let http = counts(&app, HTTP).await;
    assert_eq!(
        values(&http, "http_route"),
        BTreeSet::from(["/healthz".into(), "/jobs/{id}".into(), "/graphql".into()]),
        "{http:?}"
    );
    let expect = [
        r#"{http_request_method="GET",http_response_status_class="2xx",http_route="/healthz"}"#,
        r#"{http_request_method="GET",http_response_status_class="4xx",http_route="/jobs/{id}"}"#,
        r#"{http_request_method="POST",http_response_status_class="2xx",http_route="/graphql"}"#,
    ];
    assert_eq!(
        http,
        expect.iter().map(|k| (k.to_string(), 1.0)).collect(),
        "one request each, under its template"
    );
    let graphql = counts(&app, GRAPHQL).await;
    assert_eq!(
        graphql,
        BTreeMap::from([(
            r#"{graphql_operation_type="query",outcome="ok"}"#.to_owned(),
            1.0
        )])
    );
    // Every series, the ones other parts of the service register included, carries the
    // service's prefix, so one selector finds them all.
    let text = app.http.get(app.url("/metrics")).send().await.unwrap();
    let text = text.text().await.unwrap();
    let stray: Vec<_> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.starts_with("favicon_finder_"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // The scrapes themselves are counted once they are answered.
    let http = counts(&app, HTTP).await;
    assert_eq!(values(&http, "http_route").len(), 4, "{http:?}");
    assert!(values(&http, "http_route").contains("/metrics"));
    app.stop().await;
}

#[tokio::test]
async fn labels_stay_bounded_whatever_paths_and_methods_are_asked_for() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await;
    let mut asked = Vec::new();
    for n in 0..25 {
        let id = uuid::Uuid::now_v7();
        asked.push(id.to_string());
        let job = app.http.get(app.url(&format!("/jobs/{id}"))).send().await;
        assert_eq!(job.unwrap().status(), 404);
        let nothing = app.http.get(app.url(&format!("/nothing/{n}"))).send().await;
        assert_eq!(nothing.unwrap().status(), 404);
    }
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let odd = app.http.request(brew, app.url("/healthz")).send().await;
    assert_eq!(odd.unwrap().status(), 405);
    // A mutation, and a document that does not parse.
    let body = app
        .graphql(
            "mutation { cancelJob(id: \"00000000-0000-0000-0000-000000000000\") { id } }",
            json!({}),
        )
        .await;
    assert!(body["errors"].is_array(), "{body}");
    let (status, _) = app.post_json("/graphql", &json!({"query": "{"})).await;
    assert!(status == 200 || status == 400, "{status}");

    let http = counts(&app, HTTP).await;
    let routes = values(&http, "http_route");
    assert_eq!(
        routes,
        BTreeSet::from([
            "/jobs/{id}".into(),
            "unmatched".into(),
            "/healthz".into(),
            "/graphql".into()
        ]),
        "{http:?}"
    );
    let text = format!("{http:?}");
    assert!(asked.iter().all(|id| !text.contains(id)), "{text}");
    assert!(!text.contains("/nothing/"), "{text}");
    assert_eq!(
        http[r#"{http_request_method="GET",http_response_status_class="4xx",http_route="/jobs/{id}"}"#],
        25.0
    );
    assert_eq!(
        http[r#"{http_request_method="GET",http_response_status_class="4xx",http_route="unmatched"}"#],
        25.0
    );
    assert_eq!(
        values(&http, "http_request_method"),
        BTreeSet::from(["GET".into(), "POST".into(), "_OTHER".into()])
    );
    let graphql = counts(&app, GRAPHQL).await;
    assert_eq!(
        graphql,
        BTreeMap::from([
            (
                r#"{graphql_operation_type="invalid",outcome="error"}"#.to_owned(),
                1.0
            ),
            (
                r#"{graphql_operation_type="mutation",outcome="error"}"#.to_owned(),
                1.0
            ),
        ]),
        "{graphql:?}"
    );
    app.stop().await;
}

/// The metric families (`# TYPE` lines) of one scrape.
async fn families(app: &TestApp) -> BTreeSet<String> {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    let text = response.text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// The Grafana dashboard shipped in `deploy/grafana/` asks only for series the service
/// serves: every metric its queries name is a family `/metrics` has once the service has done
/// each kind of work the dashboard shows (a job with one domain still pending, a GraphQL query).
#[tokio::test]
async fn the_grafana_dashboard_names_only_series_the_service_serves() {
    let path = format!(
        "{}/deploy/grafana/favicon-finder.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut asked = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        titles.insert(panel["title"].as_str().unwrap().to_owned());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("favicon_finder_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name);
                asked.insert(family.to_owned());
            }
        }
    }
    assert!(asked.len() >= 10, "{asked:?}");

    let mut sites = crate::fake::Sites::default();
    sites.icon_site("quick.test");
    sites.slow_icon_site("slow.test", std::time::Duration::from_secs(4));
    let internet = crate::fake::FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(Backend::Sqlite, &internet, &[]).await;
    let id = app.create_job("dash", &["quick.test", "slow.test"]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, job) = app.get_json(&format!("/jobs/{id}")).await;
        if job["completed"] == 1 {
            assert_eq!(job["status"], "processing", "{job}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.graphql("{ __typename }", json!({})).await;
    let served = families(&app).await;
    let missing: Vec<_> = asked.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "the dashboard asks for {missing:?}, not served: {served:?}"
    );
    for title in [
        "Request rate by route",
        "Queue depth by client",
        "Failures by reason",
    ] {
        assert!(titles.contains(title), "{titles:?}");
    }
    app.wait_for_job(&id, std::time::Duration::from_secs(30))
        .await;
    app.stop().await;
}
