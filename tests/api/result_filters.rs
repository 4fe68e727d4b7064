//! Reading a job's results the way the dashboard does, in both APIs: filtered by status,
//! error code and part of the domain (with `total` counting what matches), page by page or
//! slice by slice after an opaque cursor, and the job's failures grouped by code.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::{Value, json};
use std::time::Duration;

/// The job's domains in submission order, with how each ends: `ok` has an icon, `bare`
/// has a page without one (`no_icon`), `nx` resolves nowhere (`dns`).
const DOMAINS: [&str; 8] = [
    "alpha-shop.test",
    "nx1.test",
    "bare1.test",
    "beta.test",
    "nx-shop.test",
    "gamma-shop.test",
    "bare-shop.test",
    "nx2.test",
];

/// A finished job over [`DOMAINS`] on `backend`; returns the app and the job id.
async fn finished_job(backend: Backend) -> (TestApp, FakeInternet, String) {
    let mut sites = Sites::default();
    for host in ["alpha-shop.test", "beta.test", "gamma-shop.test"] {
        sites.icon_site(host);
    }
    for host in ["bare1.test", "bare-shop.test"] {
        sites.page(host, "<title>no icon here</title>");
    }
    let internet = FakeInternet::start(sites).await;
    // Exact names only: the `nx` hosts get the finder's "does not resolve".
    let resolve = internet.resolve_exact(&[]);
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", resolve.as_str())]).await;
    let id = app.create_job("filters", &DOMAINS).await;
    let job = app.wait_for_job(&id, Duration::from_secs(30)).await;
    assert_eq!(
        (job["completed"].as_i64(), job["failed"].as_i64()),
        (Some(3), Some(5)),
        "{job}"
    );
    (app, internet, id)
}

fn domains(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {results}"))
        .iter()
        .map(|r| r["domain"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET /jobs/{id}/results?{query}`: the status and body.
async fn rest(app: &TestApp, id: &str, query: &str) -> (u16, Value) {
    app.get_json(&format!("/jobs/{id}/results?{query}")).await
}

/// A REST page's domains and total.
async fn rest_page(app: &TestApp, id: &str, query: &str) -> (Vec<String>, i64) {
    let (status, body) = rest(app, id, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    (domains(&body["results"]), body["total"].as_i64().unwrap())
}

/// GraphQL `results` with these arguments: its domains and total.
async fn graphql_page(app: &TestApp, id: &str, args: &str) -> (Vec<String>, i64) {
    let body = app
        .graphql(
            &format!(
                "query($id: ID!) {{ results(jobId: $id{args}) {{ total results {{ domain }} }} }}"
            ),
            json!({"id": id}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{args}: {body}");
    let page = &body["data"]["results"];
    (domains(&page["results"]), page["total"].as_i64().unwrap())
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Each filter, and filters together, in both APIs: the matching results in submission
/// order, with `total` counting them; a `%` is a character, not a wildcard; a filtered
/// page 2 continues where page 1 ended.
async fn filters_in_both_apis(backend: Backend) {
    let (app, _internet, id) = finished_job(backend).await;
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "status=success",
            ", status: SUCCESS",
            &["alpha-shop.test", "beta.test", "gamma-shop.test"],
        ),
        (
            "status=failed&error_code=dns",
            ", status: FAILED, errorCode: dns",
            &["nx1.test", "nx-shop.test", "nx2.test"],
        ),
        (
            "error_code=NO_ICON",
            ", errorCode: no_icon",
            &["bare1.test", "bare-shop.test"],
        ),
        (
            "domain=SHOP",
            ", domain: \"Shop\"",
            &[
                "alpha-shop.test",
                "nx-shop.test",
                "gamma-shop.test",
                "bare-shop.test",
            ],
        ),
        (
            "domain=shop&status=failed",
            ", domain: \"shop\", status: FAILED",
            &["nx-shop.test", "bare-shop.test"],
        ),
        ("domain=%25", ", domain: \"%\"", &[]),
        ("status=pending", ", status: PENDING", &[]),
    ];
    for (query, args, expected) in cases {
        let want = (names(expected), expected.len() as i64);
        assert_eq!(rest_page(&app, &id, query).await, want, "REST {query}");
        assert_eq!(graphql_page(&app, &id, args).await, want, "GraphQL {args}");
    }
    // Failed in order: nx1, bare1, nx-shop, bare-shop, nx2.
    assert_eq!(
        rest_page(&app, &id, "status=failed&per_page=2&page=2").await,
        (names(&["nx-shop.test", "bare-shop.test"]), 5)
    );
    assert_eq!(
        graphql_page(&app, &id, ", status: FAILED, perPage: 2, page: 3").await,
        (names(&["nx2.test"]), 5)
    );
    // Empty parameters, as a form sends them, filter nothing.
    assert_eq!(
        rest_page(&app, &id, "status=&error_code=&domain=").await,
        (names(&DOMAINS), 8)
    );
}
both_backends!(result_filters, filters_in_both_apis);

/// Walks the REST cursor form with `query`, `first` at a time: every slice's domains and the
/// cursors handed out.
async fn rest_walk(app: &TestApp, id: &str, query: &str, first: usize) -> Vec<Vec<String>> {
    let mut slices = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let cursor = after
            .as_deref()
            .map(|c| format!("&after={c}"))
            .unwrap_or_default();
        let (status, body) = rest(app, id, &format!("{query}&first={first}{cursor}")).await;
        assert_eq!(status, 200, "{body}");
        let slice = domains(&body["results"]);
        let info = &body["page_info"];
        assert!(slice.len() <= first, "{body}");
        slices.push(slice);
        if info["has_next_page"] == false {
            return slices;
        }
        let end = info["end_cursor"].as_str().unwrap().to_owned();
        assert!(end.parse::<i64>().is_err(), "the cursor is opaque: {end}");
        after = Some(end);
        assert!(slices.len() < 10, "no end: {slices:?}");
    }
}

/// Walks GraphQL `resultsConnection` with `args`, `first` at a time.
async fn graphql_walk(app: &TestApp, id: &str, args: &str, first: usize) -> Vec<Vec<String>> {
    let mut slices = Vec::new();
    let mut after = Value::Null;
    loop {
        let body = app
            .graphql(
                &format!(
                    "query($id: ID!, $after: String) {{ resultsConnection(jobId: $id, \
                     first: {first}, after: $after{args}) {{ edges {{ cursor node {{ domain }} }} \
                     pageInfo {{ hasNextPage endCursor }} }} }}"
                ),
                json!({"id": id, "after": after}),
            )
            .await;
        assert!(body.get("errors").is_none(), "{body}");
        let connection = &body["data"]["resultsConnection"];
        let edges = connection["edges"].as_array().unwrap();
        slices.push(
            edges
                .iter()
                .map(|e| e["node"]["domain"].as_str().unwrap().to_owned())
                .collect(),
        );
        let info = &connection["pageInfo"];
        if let Some(last) = edges.last() {
            assert_eq!(last["cursor"], info["endCursor"], "{body}");
        }
        if info["hasNextPage"] == false {
            return slices;
        }
        after = info["endCursor"].clone();
        assert!(slices.len() < 10, "no end: {slices:?}");
    }
}

/// The cursor form walks every matching result once, in order, in slices of `first`, in
/// both APIs, and a cursor from REST continues in GraphQL (one cursor, two APIs); a bad
/// cursor, an out-of-range `first` and mixing the two paging forms are refused, naming the
/// parameter.
async fn cursors_in_both_apis(backend: Backend) {
    let (app, _internet, id) = finished_job(backend).await;
    let all: Vec<Vec<String>> = DOMAINS.chunks(3).map(names).collect();
    assert_eq!(rest_walk(&app, &id, "", 3).await, all);
    assert_eq!(graphql_walk(&app, &id, "", 3).await, all);
    let failed = vec![
        names(&["nx1.test", "bare1.test"]),
        names(&["nx-shop.test", "bare-shop.test"]),
        names(&["nx2.test"]),
    ];
    assert_eq!(rest_walk(&app, &id, "status=failed", 2).await, failed);
    assert_eq!(graphql_walk(&app, &id, ", status: FAILED", 2).await, failed);
    assert_eq!(
        graphql_walk(&app, &id, ", errorCode: \"dns\", domain: \"shop\"", 5).await,
        vec![names(&["nx-shop.test"])]
    );

    let (_, first) = rest(&app, &id, "first=2&domain=shop").await;
    let cursor = first["page_info"]["end_cursor"].as_str().unwrap();
    let body = app
        .graphql(
            "query($id: ID!, $after: String) { resultsConnection(jobId: $id, after: $after, \
             domain: \"shop\") { edges { node { domain } } pageInfo { hasNextPage } } }",
            json!({"id": id, "after": cursor}),
        )
        .await;
    let rest_of: Vec<&str> = body["data"]["resultsConnection"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["domain"].as_str().unwrap())
        .collect();
    assert_eq!(rest_of, ["gamma-shop.test", "bare-shop.test"], "{body}");

    for (query, code, names_param) in [
        ("after=bm90LWEtY3Vyc29y", "INVALID_INPUT", "after"),
        ("after=42", "INVALID_INPUT", "after"),
        ("first=501", "INVALID_PAGE", "first"),
        ("first=0", "INVALID_PAGE", "first"),
        ("first=2&page=1", "INVALID_INPUT", "page"),
    ] {
        let (status, body) = rest(&app, &id, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(names_param), "{query}: {message}");
    }
    for (args, code, names_param) in [
        (", after: \"42\"", "INVALID_INPUT", "after"),
        (", first: 501", "INVALID_PAGE", "first"),
    ] {
        let body = app
            .graphql(
                &format!(
                    "query($id: ID!) {{ resultsConnection(jobId: $id{args}) \
                     {{ edges {{ cursor }} }} }}"
                ),
                json!({"id": id}),
            )
            .await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], code, "{args}: {body}");
        assert!(
            error["message"].as_str().unwrap().starts_with(names_param),
            "{args}: {body}"
        );
    }
}
both_backends!(result_cursors, cursors_in_both_apis);

/// Bad filter values are INVALID_INPUT naming the parameter as each API spells it.
#[tokio::test]
async fn bad_filters_name_the_parameter() {
    let app = TestApp::api_only(&[]).await;
    let id = app.create_job("filters", &["a.test"]).await;
    for (query, names_param) in [
        ("status=done", "status"),
        ("error_code=nope", "error_code"),
        ("first=2&error_code=nope", "error_code"),
        (&format!("domain={}", "a".repeat(254)), "domain"),
    ] {
        let (status, body) = rest(&app, &id, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_INPUT", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(names_param), "{query}: {message}");
    }
    // REST names the bad code and every valid one.
    let (status, body) = rest(&app, &id, "error_code=dns,timeout").await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    let valid = "dns, dns_transient, connect, tls, timeout, http_status, rate_limited, \
                 too_many_redirects, no_icon, blocked, invalid_content, internal, cancelled";
    assert_eq!(
        message,
        format!("error_code must be one of {valid}; got \"dns,timeout\"")
    );
    // GraphQL's `errorCode` is the `ErrorCategory` enum: the schema refuses an unknown code,
    // written in the query or sent as a variable, and names it. Nothing is read.
    for field in ["results", "resultsConnection"] {
        for (query, variables) in [
            (
                format!(
                    "query($id: ID!) {{ {field}(jobId: $id, errorCode: nope) {{ __typename }} }}"
                ),
                json!({"id": id}),
            ),
            (
                format!(
                    "query($id: ID!, $code: ErrorCategory) \
                     {{ {field}(jobId: $id, errorCode: $code) {{ __typename }} }}"
                ),
                json!({"id": id, "code": "nope"}),
            ),
        ] {
            let body = app.graphql(&query, variables).await;
            assert!(body["data"].is_null(), "{body}");
            let error = &body["errors"][0];
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains("ErrorCategory") && message.contains("nope"),
                "{message}"
            );
        }
    }
    // A code in another case is not a value of the enum either (GraphQL is case-sensitive).
    let body = app
        .graphql(
            "query($id: ID!) { results(jobId: $id, errorCode: DNS) { total } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{body}"
    );
    // An unknown status is the schema's to refuse: the enum has three values.
    let body = app
        .graphql(
            "query($id: ID!) { results(jobId: $id, status: DONE) { total } }",
            json!({"id": id}),
        )
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("DONE"),
        "{body}"
    );
    // A job nothing works on: everything is pending, and a filtered total counts it.
    assert_eq!(
        rest_page(&app, &id, "status=pending").await,
        (names(&["a.test"]), 1)
    );
}

/// `GET /jobs/{id}` and GraphQL `Job.failuresByReason` group the finished failures by code,
/// the largest group first, adding up to `failed`; the cancel answers the same shape.
async fn failure_groups_in_both_apis(backend: Backend) {
    let (app, _internet, id) = finished_job(backend).await;
    let expected = json!([
        {"error_code": "dns", "count": 3},
        {"error_code": "no_icon", "count": 2},
    ]);
    let (status, job) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(job["failures_by_reason"], expected, "{job}");
    let (_, cancelled) = app
        .post_json(&format!("/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled["failures_by_reason"], expected, "{cancelled}");

    let body = app
        .graphql(
            "query($id: ID!) { job(id: $id) { failed failuresByReason { errorCode count } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        body["data"]["job"]["failuresByReason"],
        json!([{"errorCode": "dns", "count": 3}, {"errorCode": "no_icon", "count": 2}]),
        "{body}"
    );
    // Each group is what the error-code filter lists.
    for group in expected.as_array().unwrap() {
        let code = group["error_code"].as_str().unwrap();
        let (_, total) = rest_page(&app, &id, &format!("error_code={code}")).await;
        assert_eq!(total, group["count"].as_i64().unwrap(), "{code}");
    }

    // A job without failures has no groups.
    let fresh = app.create_job("filters", &["beta.test"]).await;
    app.wait_for_job(&fresh, Duration::from_secs(30)).await;
    let (_, job) = app.get_json(&format!("/jobs/{fresh}")).await;
    assert_eq!(job["failures_by_reason"], json!([]), "{job}");
}
both_backends!(failure_groups, failure_groups_in_both_apis);
