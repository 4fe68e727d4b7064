//! A job's priority over both APIs: created with each word and read back the same, `normal`
//! when none is sent, a bad word refused naming the field and the three words, and `high`
//! only for a key with the `priority` scope (or an admin), made with `keys create`.

use crate::accounts::{BOOTSTRAP, create_key, keys, required_app};
use crate::helpers::{Backend, TestApp, both_backends, json_answer};
use serde_json::{Value, json};

const CREATE: &str =
    "mutation($input: CreateJobInput!) { createJob(input: $input) { id priority } }";
const READ: &str = "query($id: ID!) { job(id: $id) { priority } }";

/// `POST /jobs` with `body`, as `key` when there is one; (status, body).
async fn post_job(app: &TestApp, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut request = app.http.post(app.url("/jobs")).json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A GraphQL operation as `key`; the whole answer.
async fn graphql_as(app: &TestApp, key: Option<&str>, query: &str, variables: Value) -> Value {
    let request = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    json_answer(request, key).await
}

/// Each word, in each API, is stored and read back by both; nothing sent is `normal`.
async fn each_priority_round_trips(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let cases: [(Option<&str>, &str); 5] = [
        (Some("low"), "low"),
        (Some("normal"), "normal"),
        (Some("high"), "high"),
        (Some("High"), "high"),
        (None, "normal"),
    ];
    for (n, (sent, stored)) in cases.into_iter().enumerate() {
        let mut body = json!({"client_id": "acme", "domains": [format!("r{n}.test")]});
        if let Some(word) = sent {
            body["priority"] = json!(word);
        }
        let (status, created) = post_job(&app, body, None).await;
        assert_eq!(status, 201, "{sent:?}: {created}");
        let id = created["job_id"].as_str().unwrap();
        let (status, job) = app.get_json(&format!("/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        assert_eq!(
            job["priority"], stored,
            "REST {sent:?} read over REST: {job}"
        );
        let read = app.graphql(READ, json!({"id": id})).await;
        assert_eq!(
            read["data"]["job"]["priority"],
            stored.to_uppercase(),
            "REST {sent:?} read over GraphQL: {read}"
        );
    }
    let cases: [(Option<&str>, &str); 4] = [
        (Some("LOW"), "low"),
        (Some("NORMAL"), "normal"),
        (Some("HIGH"), "high"),
        (None, "normal"),
    ];
    for (n, (sent, stored)) in cases.into_iter().enumerate() {
        let mut input = json!({"clientId": "acme", "domains": [format!("g{n}.test")]});
        if let Some(word) = sent {
            input["priority"] = json!(word);
        }
        let created = app.graphql(CREATE, json!({"input": input})).await;
        let job = &created["data"]["createJob"];
        assert_eq!(job["priority"], stored.to_uppercase(), "{created}");
        let (_, read) = app
            .get_json(&format!("/jobs/{}", job["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            read["priority"], stored,
            "GraphQL {sent:?} read over REST: {read}"
        );
    }
}
both_backends!(each_priority_round_trips, each_priority_round_trips);

/// A word that is not a priority, or not a word, is a 400 naming `priority` and the three
/// words, and creates nothing.
#[tokio::test]
async fn a_bad_priority_is_a_400_naming_the_field_and_the_words() {
    let app = TestApp::api_only(&[]).await;
    for bad in [
        json!("urgent"),
        json!(""),
        json!(4),
        json!(["high"]),
        json!(true),
    ] {
        let body = json!({"client_id": "acme", "domains": ["a.test"], "priority": bad});
        let (status, answer) = post_job(&app, body, None).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(answer["error"]["code"], "INVALID_INPUT", "{bad}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        for word in ["priority", "low", "normal", "high"] {
            assert!(message.contains(word), "{bad}: {message:?} lacks {word}");
        }
    }
    let wrong = app
        .graphql(
            CREATE,
            json!({"input": {"clientId": "acme", "domains": ["a.test"], "priority": "URGENT"}}),
        )
        .await;
    assert!(wrong["errors"][0]["message"].is_string(), "{wrong}");
    assert_eq!(app.count_rows("job").await, 0, "nothing written");
}

/// `high` needs the `priority` scope: a submit-only key is refused with a 403 naming the
/// scope (over REST and GraphQL) and may still ask for `low` and `normal`; `submit` plus
/// `priority`, or an admin key, may ask for `high`. The CLI makes and lists such a key.
#[tokio::test]
async fn high_needs_the_priority_scope() {
    let app = required_app(Backend::Sqlite, &[]).await;
    let (_, submit) = create_key(&app, "acme", &["submit"]).await;
    let (_, boosted) = create_key(&app, "acme", &["submit", "priority"]).await;
    let (code, listed, stderr) = keys(&app, &["list"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        listed.lines().any(|l| l.contains("priority")),
        "keys list does not show the priority scope: {listed}"
    );

    let high = |n: usize| json!({"domains": [format!("h{n}.test")], "priority": "high"});
    let (status, refused) = post_job(&app, high(0), Some(&submit)).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "FORBIDDEN", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("`priority` scope"), "{message}");
    let refused = graphql_as(
        &app,
        Some(&submit),
        CREATE,
        json!({"input": {"domains": ["h1.test"], "priority": "HIGH"}}),
    )
    .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`priority` scope"),
        "{refused}"
    );
    assert_eq!(
        app.count_rows("job").await,
        0,
        "a refused job is not written"
    );

    for (n, word) in ["low", "normal"].into_iter().enumerate() {
        let body = json!({"domains": [format!("s{n}.test")], "priority": word});
        let (status, answer) = post_job(&app, body, Some(&submit)).await;
        assert_eq!(status, 201, "{word} with submit only: {answer}");
    }
    let (status, answer) = post_job(&app, high(2), Some(&boosted)).await;
    assert_eq!(status, 201, "submit+priority: {answer}");
    let by_boosted = answer["job_id"].as_str().unwrap().to_owned();
    let created = graphql_as(
        &app,
        Some(&boosted),
        CREATE,
        json!({"input": {"domains": ["h3.test"], "priority": "HIGH"}}),
    )
    .await;
    assert_eq!(
        created["data"]["createJob"]["priority"], "HIGH",
        "{created}"
    );
    let mut as_admin = high(4);
    as_admin["client_id"] = json!("acme");
    let (status, answer) = post_job(&app, as_admin, Some(BOOTSTRAP)).await;
    assert_eq!(status, 201, "admin: {answer}");

    let read = json_answer(
        app.http.get(app.url(&format!("/jobs/{by_boosted}"))),
        Some(BOOTSTRAP),
    )
    .await;
    assert_eq!(read["priority"], "high", "{read}");
}
