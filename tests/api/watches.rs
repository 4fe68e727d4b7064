//! Watches over REST and GraphQL, on both databases: bad input is refused naming what was
//! wrong, a client's watches are bounded by `WATCH_MAX_DOMAINS`, first checks are spread
//! over one period, lists page, deletion; tenancy as for jobs; and a watch's checks as
//! background work: low priority, no allowance spent, hidden from the client's jobs, and
//! purged with the history and deleted watches by the retention task.

use crate::helpers::{Backend, TestApp, both_backends, number};
use crate::watches_events::{FAST, create_watch, icon, wait_until, world};
use chrono::{DateTime, Utc};
use favicon_finder::auth::{Accounts, LinkSigner, Scope};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::time::Duration;

/// `POST /watches` with `body`.
async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    app.post_json("/watches", &body).await
}

/// The error code and message of a refused request.
fn refused(answer: &(u16, Value)) -> (u16, &str, &str) {
    (
        answer.0,
        answer.1["error"]["code"].as_str().unwrap_or_default(),
        answer.1["error"]["message"].as_str().unwrap_or_default(),
    )
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

async fn rest_api(backend: Backend) {
    // No workers: nothing is checked while the test reads the schedule.
    let app = TestApp::spawn_api(backend, &[("WATCH_MAX_DOMAINS", "5")]).await;
    let base = json!({"client_id": "acme", "domains": ["a.test"], "every": 3600});

    let short = post(&app, with(&base, "every", json!(60))).await;
    let (status, code, message) = refused(&short);
    assert_eq!((status, code), (400, "INVALID_INPUT"), "{}", short.1);
    assert!(
        message.contains("every") && message.contains("WATCH_MIN_EVERY_SECS"),
        "{message}"
    );
    let long = post(&app, with(&base, "every", json!(31 * 86_400))).await;
    assert_eq!(refused(&long).1, "INVALID_INPUT", "{}", long.1);
    let bad = post(
        &app,
        with(&base, "domains", json!(["ok.test", "not a domain", 5])),
    )
    .await;
    let (status, code, message) = refused(&bad);
    assert_eq!((status, code), (400, "INVALID_DOMAINS"), "{}", bad.1);
    assert!(
        message.contains("domains[1]") && message.contains("domains[2]"),
        "{message}"
    );
    let missing = post(&app, json!({"client_id": "acme", "domains": ["a.test"]})).await;
    let (status, code, message) = refused(&missing);
    assert_eq!((status, code), (400, "INVALID_INPUT"), "{}", missing.1);
    assert!(message.contains("every"), "{message}");
    let empty = post(&app, with(&base, "domains", json!([]))).await;
    assert_eq!(refused(&empty).1, "INVALID_INPUT", "{}", empty.1);

    // Four domains, hourly: first due a quarter of an hour apart, the first at once.
    let domains = ["a.test", "b.test", "c.test", "d.test", "A.test"];
    let (status, watch) = post(
        &app,
        json!({"client_id": "acme", "domains": domains, "every": 3600, "name": " brands "}),
    )
    .await;
    assert_eq!(status, 201, "{watch}");
    assert_eq!(watch["domain_count"], 4, "duplicates merged: {watch}");
    assert_eq!(watch["name"], "brands");
    assert_eq!(watch["every"], 3600);
    assert_eq!(watch["client_id"], "acme");
    assert_eq!(
        (&watch["change_count"], &watch["last_change_at"]),
        (&json!(0), &Value::Null)
    );
    let id = watch["id"].as_str().unwrap().to_owned();
    let created = time(&watch["created_at"]);
    let (status, page) = app.get_json(&format!("/watches/{id}/domains")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (&page["total"], &page["page"], &page["per_page"]),
        (&json!(4), &json!(1), &json!(50))
    );
    for (i, item) in page["items"].as_array().unwrap().iter().enumerate() {
        assert_eq!(item["domain"], domains[i]);
        let offset = time(&item["next_check_at"]) - created;
        assert_eq!(offset.num_seconds(), 900 * i as i64, "{item}");
        assert_eq!(
            (&item["last_status"], &item["current"]),
            (&Value::Null, &Value::Null)
        );
    }
    let (_, second) = app
        .get_json(&format!("/watches/{id}/domains?page=2&per_page=3"))
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["items"][0]["domain"], "d.test");
    let (status, bad_page) = app
        .get_json(&format!("/watches/{id}/changes?per_page=501"))
        .await;
    assert_eq!(
        (status, &bad_page["error"]["code"]),
        (400, &json!("INVALID_PAGE"))
    );

    // The client's watches hold at most five domains together.
    let over = post(&app, with(&base, "domains", json!(["e.test", "f.test"]))).await;
    let (status, code, message) = refused(&over);
    assert_eq!((status, code), (400, "TOO_MANY_DOMAINS"), "{}", over.1);
    assert!(message.contains("WATCH_MAX_DOMAINS"), "{message}");
    let (status, other) = post(
        &app,
        json!({"client_id": "other", "domains": ["e.test", "f.test"], "every": 3600}),
    )
    .await;
    assert_eq!(status, 201, "another client has its own bound: {other}");

    let (_, listed) = app.get_json("/watches?client_id=acme").await;
    assert_eq!(listed["watches"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["watches"][0]["id"], id.as_str());
    let (status, one) = app.get_json(&format!("/watches/{id}")).await;
    assert_eq!((status, &one["id"]), (200, &json!(id)));
    let gone = app
        .http
        .delete(app.url(&format!("/watches/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(app.get_json(&format!("/watches/{id}")).await.0, 404);
    assert_eq!(app.get_json(&format!("/watches/{id}/domains")).await.0, 404);
    let (_, listed) = app.get_json("/watches?client_id=acme").await;
    assert_eq!(listed["watches"], json!([]));
    // A deleted watch no longer counts against the bound.
    let again = post(&app, with(&base, "domains", json!(["e.test", "f.test"]))).await;
    assert_eq!(again.0, 201, "{}", again.1);
    app.stop().await;
}
both_backends!(rest_watches, rest_api);

/// `base` with field `name` set to `value`.
fn with(base: &Value, name: &str, value: Value) -> Value {
    let mut body = base.clone();
    body[name] = value;
    body
}

async fn tenancy(backend: Backend) {
    let app = TestApp::spawn_api(backend, &[("AUTH_MODE", "required")]).await;
    let accounts = Accounts::new(
        app.store.clone(),
        LinkSigner::new(None, Duration::from_secs(60)),
    );
    let key = |client: &'static str, scopes: &'static [Scope]| {
        let accounts = accounts.clone();
        async move {
            accounts
                .create_key(client, "watches", scopes)
                .await
                .unwrap()
                .1
        }
    };
    let acme = key("acme", &[Scope::Submit, Scope::Read]).await;
    let rival = key("rival", &[Scope::Submit, Scope::Read]).await;
    let reader = key("acme", &[Scope::Read]).await;
    let admin = key("ops", &[Scope::Admin]).await;
    let call = |key: String, method: &'static str, path: String, body: Option<Value>| {
        let app = &app;
        async move {
            let mut request = app
                .http
                .request(method.parse().unwrap(), app.url(&path))
                .bearer_auth(key);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let body = json!({"domains": ["a.test"], "every": 3600});
    let (status, watch) = call(acme.clone(), "POST", "/watches".into(), Some(body.clone())).await;
    assert_eq!(
        (status, &watch["client_id"]),
        (201, &json!("acme")),
        "{watch}"
    );
    let id = watch["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        reader.clone(),
        "POST",
        "/watches".into(),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 403, "creating needs the submit scope");
    assert_eq!(
        call(reader.clone(), "GET", format!("/watches/{id}"), None)
            .await
            .0,
        200
    );

    for path in [
        format!("/watches/{id}"),
        format!("/watches/{id}/domains"),
        format!("/watches/{id}/changes"),
    ] {
        let (status, answer) = call(rival.clone(), "GET", path.clone(), None).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (404, &json!("NOT_FOUND")),
            "{path}"
        );
        assert_eq!(call(admin.clone(), "GET", path, None).await.0, 200);
    }
    assert_eq!(
        call(rival.clone(), "DELETE", format!("/watches/{id}"), None)
            .await
            .0,
        404
    );
    let (_, theirs) = call(rival.clone(), "GET", "/watches".into(), None).await;
    assert_eq!(theirs["watches"], json!([]));
    let (_, all) = call(admin.clone(), "GET", "/watches".into(), None).await;
    assert_eq!(all["watches"].as_array().unwrap().len(), 1);
    let gql = |key: String, query: &'static str, variables: Value| {
        call(
            key,
            "POST",
            "/graphql".into(),
            Some(json!({"query": query, "variables": variables})),
        )
    };
    let (_, seen) = gql(
        rival.clone(),
        "query($id: ID!) { watch(id: $id) { id } watches { id } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        seen["data"],
        json!({"watch": null, "watches": []}),
        "{seen}"
    );
    let (_, deleted) = gql(
        rival.clone(),
        "mutation($id: ID!) { deleteWatch(id: $id) }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        deleted["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{deleted}"
    );
    let (_, mine) = gql(
        acme.clone(),
        "query($id: ID!) { watch(id: $id) { id clientId domains { total } } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(mine["data"]["watch"]["domains"]["total"], 1, "{mine}");
    assert_eq!(
        call(acme, "DELETE", format!("/watches/{id}"), None).await.0,
        204
    );
    app.stop().await;
}
both_backends!(watch_tenancy, tenancy);

/// Runs `sql` with one time value.
async fn at(app: &TestApp, sql: &str, at: DateTime<Utc>) {
    let db = app.store.connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [at.into()],
    ))
    .await
    .unwrap();
}

/// Waits until `sql` (a `COUNT(*) AS n`) answers `n`.
async fn until_count(app: &TestApp, sql: &str, done: impl Fn(i64) -> bool) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = number(app.store.connection(), sql).await;
        if done(n) {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql} stayed at {n}"
        );
        // Wall-clock: the scheduler and the retention task run on their own timers.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn checks_are_background_work(backend: Backend) {
    let internet = world().await;
    let mut vars = FAST.to_vec();
    vars.extend([
        ("RATE_LIMIT_JOBS_PER_HOUR", "1"),
        ("RETENTION_INTERVAL_SECS", "1"),
    ]);
    let app = TestApp::spawn_on(backend, &internet, &vars).await;
    let id = create_watch(&app, "watcher", &["watched.test"], 1).await;
    // The scheduler keeps making checks, one a second.
    let finished =
        "SELECT COUNT(*) AS n FROM job WHERE watch_id IS NOT NULL AND status <> 'processing'";
    until_count(&app, finished, |n| n >= 3).await;
    let not_low = "SELECT COUNT(*) AS n FROM job WHERE watch_id IS NOT NULL AND priority <> 'low'";
    assert_eq!(number(app.store.connection(), not_low).await, 0);
    internet.set_route("watched.test", "/i.png", icon(32));
    wait_until(&app, &id, "the change", |_, changes| changes.len() == 1).await;

    // The checks spend none of the client's hourly allowance of one job, and are not its jobs.
    let (status, job) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "watcher", "domains": ["watched.test"]}),
        )
        .await;
    // 201: answered at once from the cache the checks filled.
    assert_eq!(status, 201, "{job}");
    let (status, _) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "watcher", "domains": ["watched.test"]}),
        )
        .await;
    assert_eq!(status, 429, "the allowance is one job an hour");
    let jobs = app
        .graphql(
            "{ jobs(clientId: \"watcher\") { total jobs { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        jobs["data"]["jobs"]["jobs"],
        json!([{"id": job["job_id"]}]),
        "{jobs}"
    );

    // Deleted: no more checks; the retention task purges old checks, old changes and the
    // deleted watch's rows, and the icon is still served.
    let gone = app
        .http
        .delete(app.url(&format!("/watches/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    until_count(
        &app,
        "SELECT COUNT(*) AS n FROM job WHERE watch_id IS NOT NULL AND status = 'processing'",
        |n| n == 0,
    )
    .await;
    let checks = number(app.store.connection(), finished).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        number(app.store.connection(), finished).await,
        checks,
        "no check after the delete"
    );
    until_count(&app, "SELECT COUNT(*) AS n FROM watch_domain", |n| n == 0).await;
    until_count(&app, "SELECT COUNT(*) AS n FROM watch", |n| n == 0).await;
    let recent = "SELECT COUNT(*) AS n FROM job WHERE watch_id IS NOT NULL";
    assert_eq!(
        number(app.store.connection(), recent).await,
        checks,
        "young checks stay"
    );
    assert_eq!(
        number(
            app.store.connection(),
            "SELECT COUNT(*) AS n FROM icon_change"
        )
        .await,
        1
    );
    let long_ago = Utc::now() - chrono::Duration::days(100);
    at(
        &app,
        "UPDATE job SET updated_at = $1 WHERE watch_id IS NOT NULL",
        long_ago,
    )
    .await;
    at(&app, "UPDATE icon_change SET detected_at = $1", long_ago).await;
    until_count(&app, recent, |n| n == 0).await;
    until_count(&app, "SELECT COUNT(*) AS n FROM icon_change", |n| n == 0).await;
    let (status, submitted) = app
        .get_json(&format!("/jobs/{}", job["job_id"].as_str().unwrap()))
        .await;
    assert_eq!(
        status, 200,
        "the client's own job is not a check: {submitted}"
    );
    let served = app
        .http
        .get(app.url("/icons/watched.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    app.stop().await;
}
both_backends!(watch_checks_are_background_work, checks_are_background_work);
