//! GraphQL over HTTP as the spec reads it: the spec's own audit suite (npm `graphql-http`)
//! against the real app, GET queries (never mutations) with the same door and limits as a
//! POST, GraphiQL for browsers, media types from `Accept`, and JSON answers for unknown paths
//! and wrong methods.

use crate::accounts::{BOOTSTRAP, required_app};
use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};

/// Runs tests/js/audit.mjs against the app's `/graphql` (with `key` on every request) and
/// fails naming every audit that is not ok.
async fn audit(app: &TestApp, key: Option<&str>) {
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js");
    let installed = std::path::Path::new(js)
        .join("node_modules/graphql-http")
        .is_dir();
    if !crate::common::services::available(
        "node with tests/js installed (npm ci --prefix tests/js)",
        crate::common::services::on_path("node") && installed,
    ) {
        return;
    }
    let mut command = tokio::process::Command::new("node");
    command
        .arg(format!("{js}/audit.mjs"))
        .arg(app.url("/graphql"))
        .kill_on_drop(true);
    if let Some(key) = key {
        command.arg(key);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("the audit finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{stdout}")))
        .collect();
    let summary = lines.last().expect("a summary line");
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["status"].is_string() && l["status"] != "ok")
        .collect();
    assert!(
        failed.is_empty(),
        "audits not ok:\n{}",
        failed
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The suite has 55 audits in 1.23.1: all ran, so an empty failure list means something.
    assert_eq!(summary["summary"]["ok"], summary["total"], "{stdout}");
    assert!(summary["total"].as_u64().unwrap() >= 50, "{stdout}");
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_audit_passes_without_a_warning() {
    let app = TestApp::api_only(&[]).await;
    audit(&app, None).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_audit_passes_with_keys_required() {
    let app = required_app(Backend::Sqlite, &[]).await;
    audit(&app, Some(BOOTSTRAP)).await;
    app.stop().await;
}

/// `GET /graphql` with `Accept` and optional key; status, headers and JSON body.
async fn get(
    app: &TestApp,
    query: &[(&str, &str)],
    accept: &str,
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = url::Url::parse_with_params(&app.url("/graphql"), query).unwrap();
    let mut request = app.http.get(url).header("accept", accept);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

fn content_type(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get("content-type")
        .map_or("", |v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_runs_queries_with_variables_and_the_operation_named() {
    let app = TestApp::api_only(&[]).await;
    let job_id = app.create_job("getter", &["example.com"]).await;
    let query = "query Other { __typename } query Job($id: ID!) { job(id: $id) { id total } }";
    let variables = json!({ "id": job_id }).to_string();
    let params = [
        ("query", query),
        ("variables", variables.as_str()),
        ("operationName", "Job"),
    ];
    let (status, headers, body) = get(&app, &params, "application/json", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type(&headers).starts_with("application/json"));
    assert_eq!(body["data"]["job"]["id"], job_id, "{body}");
    assert_eq!(body["data"]["job"]["total"], 1, "{body}");

    // The spec's own media type, asked for by name.
    let accept = "application/graphql-response+json";
    let (status, headers, body) = get(&app, &params, accept, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type(&headers).starts_with(accept));
    assert_eq!(body["data"]["job"]["id"], job_id, "{body}");

    // An error while running (no such job) is a field error: 200 with `data`, even in the
    // spec's media type, unlike the request error below.
    let unknown = [(
        "query",
        r#"{ job(id: "00000000-0000-4000-8000-000000000000") { id } }"#,
    )];
    let (status, _, body) = get(&app, &unknown, accept, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("data").is_some(), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );

    // A required variable left out is refused before anything runs: 400, no `data`.
    let params = [("query", query), ("operationName", "Job")];
    let (status, _, body) = get(&app, &params, accept, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_INPUT",
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("$id")
    );
    // The same to a JSON client: 200, as clients before the spec expect.
    let (status, _, body) = get(&app, &params, "application/json", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INVALID_INPUT",
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_never_runs_a_mutation_or_a_subscription() {
    let app = TestApp::api_only(&[]).await;
    let mutation =
        r#"mutation { createJob(input: {clientId: "get", domains: ["example.com"]}) { id } }"#;
    for accept in ["application/json", "application/graphql-response+json"] {
        let (status, headers, body) = get(&app, &[("query", mutation)], accept, None).await;
        assert_eq!(status, 405, "{body}");
        assert_eq!(headers.get("allow").unwrap(), "POST");
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "METHOD_NOT_ALLOWED"
        );
        assert!(body.get("data").is_none(), "{body}");
    }
    assert_eq!(app.count_rows("job").await, 0, "nothing was created");
    // The same mutation by POST runs, so the 405 is about the method alone.
    let body = app.graphql(mutation, json!({})).await;
    assert!(body["data"]["createJob"]["id"].is_string(), "{body}");

    let subscription = "subscription { jobProgress(jobId: \"x\") { progress } }";
    let accept = "application/graphql-response+json";
    let (status, _, body) = get(&app, &[("query", subscription)], accept, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/graphql/ws"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_passes_the_same_door_and_limits_as_post() {
    let app = required_app(Backend::Sqlite, &[("GRAPHQL_MAX_COMPLEXITY", "150")]).await;
    let cheap = [("query", "{ __typename }")];
    let (status, _, body) = get(&app, &cheap, "application/json", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHORIZED");
    let (status, _, body) = get(&app, &cheap, "application/json", Some(BOOTSTRAP)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["__typename"], "QueryRoot", "{body}");

    // Two database reads cost 200 against a limit of 150.
    let costly = [(
        "query",
        r#"{ a: jobs(clientId: "a") { total } b: jobs(clientId: "b") { total } }"#,
    )];
    let accept = "application/graphql-response+json";
    let (status, _, body) = get(&app, &costly, accept, Some(BOOTSTRAP)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX");
    assert!(body.get("data").is_none(), "{body}");
    app.stop().await;
}

/// The door refuses a request before GraphQL sees it (no key, a bad key): its answer is still
/// in the media type the client accepts, or a client that reads only
/// `application/graphql-response+json` cannot read why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_door_answers_in_the_negotiated_media_type() {
    let app = required_app(Backend::Sqlite, &[]).await;
    for (accept, expected) in [
        (
            "application/graphql-response+json",
            "application/graphql-response+json",
        ),
        ("application/json", "application/json"),
    ] {
        for key in [None, Some("ff_not_a_key")] {
            let mut request = app
                .http
                .post(app.url("/graphql"))
                .header("accept", accept)
                .json(&json!({ "query": "{ __typename }" }));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{accept} {key:?}");
            let sent = content_type(response.headers()).to_owned();
            assert!(sent.starts_with(expected), "{accept} {key:?}: {sent}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "UNAUTHORIZED",
                "{body}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_still_get_graphiql_and_strangers_get_406() {
    let app = TestApp::api_only(&[("GRAPHIQL", "true")]).await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let (status, headers, page) = get(&app, &[], browser, None).await;
    assert_eq!(status, 200);
    assert!(content_type(&headers).starts_with("text/html"));
    assert!(page.as_str().unwrap().contains("graphiql"), "{page}");
    // HTML alone, which allows no JSON type, is still a browser asking for the page.
    let (status, headers, _) = get(&app, &[], "text/html", None).await;
    assert_eq!(status, 200);
    assert!(content_type(&headers).starts_with("text/html"));

    // A JSON client without a query is told what to send.
    let (status, _, body) = get(&app, &[], "application/json", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`query` parameter"),
        "{body}"
    );

    // An Accept that allows neither GraphQL media type.
    let query = [("query", "{ __typename }")];
    let (status, _, body) = get(&app, &query, "text/csv", None).await;
    assert_eq!(status, 406, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_ACCEPTABLE");
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("accept", "image/png")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 406);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods_answer_in_json() {
    let app = TestApp::api_only(&[]).await;
    let response = app
        .http
        .get(app.url("/no/such/thing?sig=secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(content_type(response.headers()).starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("GET /no/such/thing"), "{body}");
    assert!(
        !message.contains("secret"),
        "the query string is not shown: {body}"
    );

    let response = app.http.put(app.url("/jobs")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let allow = response.headers().get("allow").unwrap().to_str().unwrap();
    assert!(allow.contains("POST"), "{allow}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED", "{body}");

    // On /graphql the error has GraphQL's shape.
    let response = app.http.delete(app.url("/graphql")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().get("allow").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "METHOD_NOT_ALLOWED"
    );
    app.stop().await;
}
