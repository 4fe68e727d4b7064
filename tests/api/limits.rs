//! Limits that protect the service: per-client rates, GraphQL depth and complexity, and
//! subscriptions per WebSocket connection.

use crate::helpers::{Backend, Protocol, TestApp, both_backends, ws_subscribe};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Each client sends from an address of its own: without a key the allowances hold per
/// address as well (`tenancy.rs` tests that), which this test is not about.
fn from_address(ip: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", ip.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn client_rates_are_limited(backend: Backend) {
    let mut app = TestApp::spawn(
        backend,
        &[
            ("WORKER_CONCURRENCY", "0"),
            ("RATE_LIMIT_JOBS_PER_HOUR", "2"),
            ("RATE_LIMIT_DOMAINS_PER_HOUR", "5"),
            ("TRUSTED_PROXY_HEADERS", "x-forwarded-for"),
        ],
    )
    .await;
    app.http = from_address("192.0.2.1");
    let job = |client: &str, domains: &[&str]| json!({"client_id": client, "domains": domains});
    assert_eq!(
        app.post_json("/jobs", &job("a", &["1.test", "2.test"]))
            .await
            .0,
        201
    );
    assert_eq!(app.post_json("/jobs", &job("a", &["3.test"])).await.0, 201);
    let rows = app.count_rows("result").await;

    // A third job in the hour: 429 with Retry-After, and nothing written.
    let response = app
        .http
        .post(app.url("/jobs"))
        .json(&job("a", &["4.test"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit is 2"),
        "{body}"
    );
    assert_eq!(app.count_rows("result").await, rows);

    // GraphQL says the same.
    let answer = app
        .graphql(
            r#"mutation { createJob(input: {clientId: "a", domains: ["5.test"]}) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{answer}"
    );
    assert!(
        answer["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            >= 3500
    );

    // Domains per hour, for another client: 3 fit, 3 more do not, and a job bigger than the
    // whole allowance is refused outright.
    app.http = from_address("192.0.2.2");
    assert_eq!(
        app.post_json("/jobs", &job("b", &["1.test", "2.test", "3.test"]))
            .await
            .0,
        201
    );
    let (status, body) = app
        .post_json("/jobs", &job("b", &["4.test", "5.test", "6.test"]))
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submitted 3 domains"),
        "{body}"
    );
    let six = ["a.test", "b.test", "c.test", "d.test", "e.test", "f.test"];
    let response = app
        .http
        .post(app.url("/jobs"))
        .json(&job("c", &six))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "retrying could never succeed");
    assert!(response.headers().get("retry-after").is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TOO_MANY_DOMAINS", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("alone"),
        "{body}"
    );
    app.stop().await;
}
both_backends!(client_rates, client_rates_are_limited);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_depth_and_complexity_are_limited() {
    let app = TestApp::api_only(&[
        ("GRAPHQL_MAX_DEPTH", "3"),
        ("GRAPHQL_MAX_COMPLEXITY", "112"),
    ])
    .await;
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "g", "domains": ["x.test"]}))
        .await;
    let id = created["job_id"].as_str().unwrap();
    let shallow = app
        .graphql(
            &format!("{{ job(id: \"{id}\") {{ status total }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(shallow["data"]["job"]["total"], 1, "{shallow}");
    let deep = app
        .graphql(
            // One row per page, so the depth is what is over, not the row-scaled complexity.
            &format!(
                "{{ results(jobId: \"{id}\", perPage: 1) {{ results {{ candidates {{ url }} }} }} }}"
            ),
            json!({}),
        )
        .await;
    assert!(deep["data"].is_null(), "{deep}");
    assert!(
        deep["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{deep}"
    );
    // Two reads of the job (100 each) and their fields: over 112.
    let wide = app
        .graphql(
            &format!("{{ job(id: \"{id}\") {{ id clientId status progress total completed failed createdAt updatedAt }} a: job(id: \"{id}\") {{ id status total }} }}"),
            json!({}),
        )
        .await;
    assert!(
        wide["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too complex"),
        "{wide}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_introspection_works_within_the_default_limits() {
    let app = TestApp::api_only(&[]).await;
    // The shape of GraphiQL's own introspection query: the deepest query a browser sends.
    let query = "query IntrospectionQuery { __schema { queryType { name } mutationType { name }
        subscriptionType { name } types { ...FullType } directives { name description locations
        args { ...InputValue } } } }
      fragment FullType on __Type { kind name description fields(includeDeprecated: true) {
        name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
        inputFields { ...InputValue } interfaces { ...TypeRef }
        enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
        possibleTypes { ...TypeRef } }
      fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
      fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind
        name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";
    let answer = app.graphql(query, json!({})).await;
    assert!(answer["errors"].is_null(), "{answer}");
    assert_eq!(
        answer["data"]["__schema"]["subscriptionType"]["name"],
        "SubscriptionRoot"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_limited() {
    let app = TestApp::api_only(&[("WS_MAX_SUBSCRIPTIONS", "2")]).await;
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "w", "domains": ["x.test"]}))
        .await;
    let id = created["job_id"].as_str().unwrap().to_owned();
    let query = "subscription($id: ID!) { jobProgress(jobId: $id) { status } }";
    let mut ws = app.ws().await;
    for n in ["1", "2", "3"] {
        ws_subscribe(&mut ws, Protocol::TransportWs, n, query, json!({"id": id})).await;
    }
    // Two snapshots arrive; the third subscription is refused with a clear code.
    let mut snapshots = 0;
    let mut refused = None;
    while snapshots < 2 || refused.is_none() {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap();
        // A refused subscription is an error, as an `error` frame or a `next` with errors.
        match frame["type"].as_str().unwrap() {
            "next" if frame["payload"]["errors"].is_null() => snapshots += 1,
            "next" => refused = Some(frame["payload"]["errors"].clone()),
            "error" => refused = Some(frame["payload"].clone()),
            _ => {}
        }
    }
    let refused = refused.unwrap();
    assert_eq!(
        refused[0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
        "{refused}"
    );
    // Ending one frees its slot on the same connection. The server does not answer a
    // `complete`, so the freed slot shows only in the next subscription being let in: retry
    // until it is, within a deadline.
    ws.send(Message::Text(
        json!({"id": "1", "type": "complete"}).to_string().into(),
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for n in 4.. {
        let id_n = n.to_string();
        ws_subscribe(
            &mut ws,
            Protocol::TransportWs,
            &id_n,
            query,
            json!({"id": id}),
        )
        .await;
        let frame = loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("an answer to the new subscription in time")
                .unwrap()
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["id"] == id_n.as_str() {
                break frame;
            }
        };
        if frame["type"] == "next" && frame["payload"]["errors"].is_null() {
            break;
        }
        assert!(
            frame.to_string().contains("TOO_MANY_SUBSCRIPTIONS"),
            "{frame}"
        );
        // Wall-clock: the server frees the place when it sees the closed socket.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

/// Every GraphQL error has `extensions.code`, whichever phase refused the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_graphql_error_has_a_code() {
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("GRAPHQL_MAX_DEPTH", "3"),
            ("GRAPHQL_MAX_COMPLEXITY", "200"),
        ],
    )
    .await;
    let deep = "{ results(jobId: \"x\") { results { candidates { url } } } }";
    let aliases: String = (0..150)
        .map(|i| format!("j{i}: job(id: \"x\") {{ id }} "))
        .collect();
    let complex = format!("{{ {aliases} }}");
    let typed = "query ($p: Int!) { results(jobId: \"x\", page: $p) { total } }";
    for (query, variables, code) in [
        ("{ jobs(clientId: ", json!({}), "GRAPHQL_PARSE_FAILED"),
        ("{ nosuchfield }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        ("{ job { id } }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        (typed, json!({"p": "one"}), "GRAPHQL_VALIDATION_FAILED"),
        (deep, json!({}), "QUERY_TOO_DEEP"),
        (complex.as_str(), json!({}), "QUERY_TOO_COMPLEX"),
        (
            "{ job(id: \"not-a-uuid\") { id } }",
            json!({}),
            "INVALID_ID",
        ),
    ] {
        let body = app.graphql(query, variables).await;
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {body}"));
        assert!(!errors.is_empty(), "{query}: {body}");
        for error in errors {
            assert_eq!(error["extensions"]["code"], code, "{query}: {body}");
        }
    }
    app.stop().await;
}

/// Requests refused before any GraphQL runs still answer in GraphQL's shape, with a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_http_errors_have_graphql_shape_and_a_code() {
    let app = TestApp::spawn(Backend::Sqlite, &[("MAX_REQUEST_BYTES", "2048")]).await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        let request = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", content_type)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let big = format!(
        r#"{{"query": "{{ jobs(clientId: \"{}\") {{ total }} }}"}}"#,
        "x".repeat(4096)
    );
    for (body, content_type, status, code) in [
        (
            b"{not json".to_vec(),
            "application/json",
            400,
            "INVALID_JSON",
        ),
        (b"[1, 2]".to_vec(), "application/json", 400, "INVALID_JSON"),
        (
            big.into_bytes(),
            "application/json",
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            b"query=x".to_vec(),
            "text/plain",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ] {
        let sent = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let (got, body) = post(body, content_type).await;
        assert_eq!(got, status, "{sent}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
        assert!(body.get("error").is_none(), "not the REST shape: {body}");
    }
    // REST keeps its own shape for the same refusals.
    let response = app
        .http
        .post(app.url("/jobs"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNSUPPORTED_MEDIA_TYPE", "{body}");

    // Validation messages name the GraphQL fields, not REST's.
    let answer = app
        .graphql(
            r#"mutation { createJob(input: {clientId: "c", domains: ["ok.test", "localhost"]}) { id } }"#,
            json!({}),
        )
        .await;
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("input.domains[1]"), "{message}");
    let answer = app
        .graphql(
            r#"mutation { createJob(input: {clientId: " ", domains: ["ok.test"]}) { id } }"#,
            json!({}),
        )
        .await;
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("input.clientId"), "{message}");
    app.stop().await;
}
