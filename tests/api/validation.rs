//! Bad input gets a clear 4xx with `{error: {code, message}}` and writes nothing.

use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::{Value, json};

async fn table_counts(app: &TestApp) -> (i64, i64, i64) {
    (
        app.count_rows("client").await,
        app.count_rows("job").await,
        app.count_rows("result").await,
    )
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str, needle: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "message {message:?} should mention {needle:?}"
    );
}

async fn rejects_bad_job_submissions(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[
            ("WORKER_CONCURRENCY", "0"),
            ("MAX_DOMAINS_PER_JOB", "5"),
            ("MAX_REQUEST_BYTES", "4096"),
        ],
    )
    .await;
    // One good job first, so "nothing written" is checked against non-empty tables.
    let (status, body) = app
        .post_json("/jobs", &json!({"client_id": "c1", "domains": ["a.test"]}))
        .await;
    assert_eq!(status, 201, "{body}");
    let before = table_counts(&app).await;
    assert_eq!(before, (1, 1, 1));

    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"domains": ["a.com"]}),
            400,
            "INVALID_INPUT",
            "client_id is required",
        ),
        (
            json!({"client_id": 7, "domains": ["a.com"]}),
            400,
            "INVALID_INPUT",
            "client_id must be a string",
        ),
        (
            json!({"client_id": "  ", "domains": ["a.com"]}),
            400,
            "INVALID_INPUT",
            "client_id must not be empty",
        ),
        (
            json!({"client_id": "c1"}),
            400,
            "INVALID_INPUT",
            "domains is required",
        ),
        (
            json!({"client_id": "c1", "domains": "a.com"}),
            400,
            "INVALID_INPUT",
            "domains must be an array",
        ),
        (
            json!({"client_id": "c1", "domains": []}),
            400,
            "INVALID_INPUT",
            "domains must not be empty",
        ),
        (json!(["a.com"]), 400, "INVALID_INPUT", "JSON object"),
        (
            json!({"client_id": "c1", "domains": ["a.com", "b.com", "c.com", "d.com", "e.com", "f.com"]}),
            400,
            "TOO_MANY_DOMAINS",
            "at most 5",
        ),
        (
            json!({"client_id": "c1", "domains": ["good.com", "localhost", "10.0.0.1", 42]}),
            400,
            "INVALID_DOMAINS",
            "domains[1] \"localhost\"",
        ),
    ];
    for (body, want_status, want_code, needle) in cases {
        let (status, answer) = app.post_json("/jobs", &body).await;
        assert_error(status, &answer, want_status, want_code, needle);
    }

    // Every bad entry is named with its position, in the message and in details.
    let (status, answer) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "c1", "domains": ["good.com", "localhost", "10.0.0.1", 42]}),
        )
        .await;
    assert_eq!(status, 400);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("domains[2] \"10.0.0.1\" is an IP address"),
        "{message}"
    );
    assert!(
        message.contains("domains[3] null is a JSON number"),
        "{message}"
    );
    let details = answer["error"]["details"].as_array().unwrap();
    let positions: Vec<i64> = details
        .iter()
        .map(|d| d["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3]);

    // Malformed JSON.
    let (status, answer) = app
        .post_raw("/jobs", "{\"client_id\": \"c1\", \"domains\": [")
        .await;
    assert_error(status, &answer, 400, "INVALID_JSON", "not valid JSON");

    // A body over MAX_REQUEST_BYTES.
    let huge = format!(
        "{{\"client_id\":\"c1\",\"domains\":[\"{}.com\"]}}",
        "a".repeat(5000)
    );
    let (status, answer) = app.post_raw("/jobs", huge).await;
    assert_error(status, &answer, 413, "PAYLOAD_TOO_LARGE", "larger than");

    // Job ids and pages.
    let (status, answer) = app.get_json("/jobs/not-a-uuid").await;
    assert_error(status, &answer, 400, "INVALID_ID", "not a valid id");
    let unknown = uuid::Uuid::new_v4();
    let (status, answer) = app.get_json(&format!("/jobs/{unknown}")).await;
    assert_error(status, &answer, 404, "NOT_FOUND", &unknown.to_string());
    let (status, answer) = app.get_json(&format!("/jobs/{unknown}/results")).await;
    assert_error(status, &answer, 404, "NOT_FOUND", "no job");
    let (status, answer) = app.get_json(&format!("/jobs/{unknown}/download")).await;
    assert_error(status, &answer, 404, "NOT_FOUND", "no job");
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "c1", "domains": ["b.test"]}))
        .await;
    let id = created["job_id"].as_str().unwrap().to_owned();
    for (query, needle) in [
        ("page=0", "page must be 1 or more"),
        ("page=-3", "page must be 1 or more"),
        ("page=abc", "page must be a whole number"),
        ("per_page=0", "per_page must be between 1 and 500"),
        ("per_page=501", "per_page must be between 1 and 500"),
    ] {
        let (status, answer) = app.get_json(&format!("/jobs/{id}/results?{query}")).await;
        assert_error(status, &answer, 400, "INVALID_PAGE", needle);
    }

    // GraphQL says the same with extensions.code, and writes nothing either.
    let after_second_job = table_counts(&app).await;
    assert_eq!(after_second_job, (1, 2, 2));
    let answer = app
        .graphql(
            "mutation($d: [String!]!) { createJob(input: {clientId: \"c2\", domains: $d}) { id } }",
            json!({"d": ["ok.com", "not a domain"]}),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "INVALID_DOMAINS",
        "{answer}"
    );
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("domains[1]")
    );
    let answer = app
        .graphql("query { job(id: \"nope\") { id } }", json!({}))
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "INVALID_ID",
        "{answer}"
    );
    let answer = app
        .graphql(
            &format!("query {{ job(id: \"{unknown}\") {{ id }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{answer}"
    );
    let answer = app
        .graphql(
            &format!("query {{ results(jobId: \"{id}\", perPage: 900) {{ total }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "INVALID_PAGE",
        "{answer}"
    );

    assert_eq!(
        table_counts(&app).await,
        after_second_job,
        "bad requests wrote rows"
    );
    app.stop().await;
}
both_backends!(
    bad_input_is_refused_and_writes_nothing,
    rejects_bad_job_submissions
);

/// The 109-domain request of the original service's README is accepted as it is.
async fn accepts_the_original_readme_request(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let readme = include_str!("../fixtures/original-readme-request.json");
    let (status, created) = app.post_raw("/jobs", readme.to_owned()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "processing");
    let id = created["job_id"].as_str().unwrap();
    let (status, job) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(job["total"], 109);
    assert_eq!(job["completed"], 0);
    assert_eq!(job["progress"], 0);
    assert_eq!(app.count_rows("result").await, 109);
    app.stop().await;
}
both_backends!(original_readme_request, accepts_the_original_readme_request);

/// A job of 100,000 domains is created in one go (chunked inserts stay under PostgreSQL's
/// bind-parameter cap), and one bad entry at the very end rejects it all.
async fn creates_a_job_of_the_maximum_size(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let mut domains: Vec<String> = (0..100_000)
        .map(|i| format!("site{i}.example.com"))
        .collect();
    *domains.last_mut().unwrap() = "not a domain".into();
    let (status, answer) = app
        .post_json("/jobs", &json!({"client_id": "big", "domains": domains}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("domains[99999]")
    );
    assert_eq!(app.count_rows("result").await, 0);

    *domains.last_mut().unwrap() = "last.example.com".into();
    let (status, created) = app
        .post_json("/jobs", &json!({"client_id": "big", "domains": domains}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["total"], 100_000);
    assert_eq!(app.count_rows("result").await, 100_000);
    let id = created["job_id"].as_str().unwrap();
    let (_, page) = app
        .get_json(&format!("/jobs/{id}/results?page=5000&per_page=20"))
        .await;
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    assert_eq!(results[0]["domain"], "site99980.example.com");
    assert_eq!(results[19]["domain"], "last.example.com");
    app.stop().await;
}
both_backends!(maximum_size_job, creates_a_job_of_the_maximum_size);

/// Pages that start past any list this service can hold (`page × per_page` over
/// 2,147,483,647: every position and count is an i32) are `INVALID_PAGE` by both doors,
/// filtered or not, on both databases: one whose offset overflows i64 (it used to panic and
/// drop the connection), and ones whose offset fits an i64 but not an i32 (they used to wrap).
/// The last page that can exist is an ordinary, empty page.
async fn pages_past_any_list_are_invalid(backend: Backend) {
    let owned = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let app = &owned;
    let id = app.create_job("pager", &["a.test", "b.test"]).await;
    let refused: [(i64, i64); 4] = [
        (i64::MAX, 500),
        (1 << 40, 500),
        (4_294_967_297, 1),
        (2_147_483_648, 1),
    ];
    let mut wrong = Vec::new();
    let id = &id;
    let rest = move |page: i64, per_page: i64, filter: &'static str| {
        let url = app.url(&format!(
            "/jobs/{id}/results?page={page}&per_page={per_page}{filter}"
        ));
        async move {
            match app.http.get(url).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (
                        status,
                        response.json::<Value>().await.unwrap_or(Value::Null),
                    )
                }
                Err(e) => (0, json!(format!("no answer: {e}"))),
            }
        }
    };
    let graphql = move |query: String| {
        let request = app
            .http
            .post(app.url("/graphql"))
            .json(&json!({"query": query}));
        async move {
            match request.send().await {
                Ok(response) => response.json::<Value>().await.unwrap_or(Value::Null),
                Err(e) => json!(format!("no answer: {e}")),
            }
        }
    };
    let queries = move |page: i64, per_page: i64| {
        [
            format!(
                "{{ results(jobId: \"{id}\", page: {page}, perPage: {per_page}) {{ total results {{ domain }} }} }}"
            ),
            format!(
                "{{ results(jobId: \"{id}\", page: {page}, perPage: {per_page}, status: PENDING) {{ total results {{ domain }} }} }}"
            ),
            format!(
                "{{ jobs(clientId: \"pager\", page: {page}, perPage: {per_page}) {{ total jobs {{ id }} }} }}"
            ),
        ]
    };
    for (page, per_page) in refused {
        for filter in ["", "&status=pending"] {
            let (status, body) = rest(page, per_page, filter).await;
            if status != 400 || body["error"]["code"] != "INVALID_PAGE" {
                wrong.push(format!(
                    "REST page={page} per_page={per_page}{filter}: {status} {body}"
                ));
            }
        }
        for query in queries(page, per_page) {
            let body = graphql(query.clone()).await;
            if body["errors"][0]["extensions"]["code"] != "INVALID_PAGE" {
                wrong.push(format!("GraphQL {query}: {body}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let (page, per_page) = (2_147_483_647, 1);
    for filter in ["", "&status=pending"] {
        let (status, body) = rest(page, per_page, filter).await;
        assert_eq!(status, 200, "{filter}: {body}");
        assert_eq!(body["results"], json!([]), "{filter}: {body}");
        assert_eq!(body["page"], page, "{filter}: {body}");
    }
    for query in queries(page, per_page) {
        let body = graphql(query.clone()).await;
        assert!(body["errors"].is_null(), "{query}: {body}");
    }
    owned.stop().await;
}
both_backends!(huge_pages, pages_past_any_list_are_invalid);
