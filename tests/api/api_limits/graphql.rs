//! GraphQL's limits: suggestions, aliased fields, a heavy request's share, subscription caps.

use super::*;

/// With introspection off the schema is not browsable, so validation errors must not name
/// the fields and arguments it has either ("Did you mean …?"); with it on they still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_suggests_names_only_with_introspection() {
    for (introspection, suggests) in [("true", true), ("false", false)] {
        let app = TestApp::api_only(&[("INTROSPECTION", introspection)]).await;
        for query in [
            "{ jobz { total } }",
            "{ jobs(clientId: \"c\", perPag: 1) { total } }",
        ] {
            let body = app.graphql(query, json!({})).await;
            let message = body["errors"][0]["message"].as_str().unwrap_or_default();
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
                "{body}"
            );
            assert_eq!(
                message.contains("Did you mean"),
                suggests,
                "INTROSPECTION={introspection}, {query}: {message}"
            );
        }
        app.stop().await;
    }
}

/// Every field that reads the database costs `DB_FIELD_COST`, so aliases multiply it: 4,999
/// aliases of a one-row filtered count, once within the limit, are refused before anything is
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliased_database_fields_are_too_complex() {
    let app = TestApp::api_only(&[]).await;
    let id = app.create_job("cx", &["x.test"]).await;
    let aliases: String = (0..4_999)
        .map(|i| format!("a{i}: results(jobId: \"{id}\", perPage: 1, domain: \"zz\") {{ total }} "))
        .collect();
    let body = app.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "QUERY_TOO_COMPLEX",
        "4,999 database reads in one request: {}",
        body.to_string().chars().take(300).collect::<String>()
    );
    assert!(body["data"].is_null());
    app.stop().await;
}

/// One GraphQL request holds at most a few database connections at once, however many fields
/// read the database: with a pool of 3, another client's `GET /jobs/{id}` stays fast while a
/// request of as many filtered counts over a 100,000-row job as the cost limit allows runs
/// (it used to queue behind all of them).
async fn a_heavy_graphql_request_leaves_the_pool_to_others(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[("WORKER_CONCURRENCY", "0"), ("DATABASE_POOL_SIZE", "3")],
    )
    .await;
    let domains: Vec<String> = (0..100_000).map(|i| format!("d{i}.test")).collect();
    let (status, created) = app
        .post_json("/jobs", &json!({"client_id": "heavy", "domains": domains}))
        .await;
    assert_eq!(status, 201, "{created}");
    let big = created["job_id"].as_str().unwrap().to_owned();
    let small = app.create_job("other", &["other.test"]).await;
    // Just under the default limit (95 × 102 of 10,000): each alias counts the big job's
    // rows matching "zz".
    let aliases: String = (0..95)
        .map(|i| {
            format!("a{i}: results(jobId: \"{big}\", perPage: 1, domain: \"zz\") {{ total }} ")
        })
        .collect();
    let heavy = {
        let request = app
            .http
            .post(app.url("/graphql"))
            .json(&json!({"query": format!("{{ {aliases} }}")}));
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            (started.elapsed(), body)
        })
    };
    // Wall-clock: gives the heavy request time to take its database connections before the
    // light reads start; `reads > 0` below fails the test if it ended first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut slowest = Duration::ZERO;
    let mut reads = 0;
    while !heavy.is_finished() && reads < 20 {
        let started = Instant::now();
        let (status, job) = app.get_json(&format!("/jobs/{small}")).await;
        assert_eq!(status, 200, "{job}");
        slowest = slowest.max(started.elapsed());
        reads += 1;
    }
    let (took, body) = heavy.await.unwrap();
    assert!(
        reads > 0,
        "the heavy request ended within 200 ms ({took:?}), so it proves nothing"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "GET /jobs/{{id}} took {slowest:?} while one GraphQL request ran for {took:?}"
    );
    assert!(
        body["errors"].is_null(),
        "{}",
        body.to_string().chars().take(300).collect::<String>()
    );
    assert_eq!(body["data"]["a94"]["total"], 0);
    app.stop().await;
}
both_backends!(
    heavy_graphql_request,
    a_heavy_graphql_request_leaves_the_pool_to_others
);

/// What the server answered to subscription `id`: `Ok` with its first event, or the error.
async fn subscription_answer(ws: &mut Ws, id: &str) -> Result<Value, Value> {
    loop {
        let Message::Text(text) = next_frame(ws, Duration::from_secs(10)).await else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["id"] != id {
            continue;
        }
        let payload = &frame["payload"];
        return match frame["type"].as_str() {
            Some("error") => Err(payload[0].clone()),
            _ if !payload["errors"].is_null() => Err(payload["errors"][0].clone()),
            _ => Ok(payload["data"].clone()),
        };
    }
}

const PROGRESS: &str = "subscription($id: ID!) { jobProgress(jobId: $id) { status } }";

/// Subscribes as `id` on `ws` and waits for the answer.
async fn subscribe(ws: &mut Ws, id: &str, job: &str) -> Result<Value, Value> {
    crate::helpers::ws_subscribe(ws, Protocol::TransportWs, id, PROGRESS, json!({"id": job})).await;
    subscription_answer(ws, id).await
}

/// Subscriptions are capped per address (default 100) and per key across connections, not
/// only per connection: more connections do not buy more subscriptions. A stopped one gives
/// its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_capped_per_address_and_per_key() {
    let app = TestApp::api_only(&[]).await;
    let job = app.create_job("subs", &["x.test"]).await;
    let mut sockets = Vec::new();
    for _ in 0..10 {
        let mut ws = app.ws().await;
        for i in 0..10 {
            let answer = subscribe(&mut ws, &i.to_string(), &job).await;
            assert!(
                answer.is_ok(),
                "subscription {}: {answer:?}",
                sockets.len() * 10 + i
            );
        }
        sockets.push(ws);
    }
    let mut extra = app.ws().await;
    let error = subscribe(&mut extra, "101", &job)
        .await
        .expect_err("a 101st subscription from one address, on an 11th connection");
    assert_eq!(
        error["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
        "{error}"
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("WS_MAX_SUBSCRIPTIONS_PER_IP"), "{message}");
    let stop = json!({"id": "0", "type": "complete"});
    sockets[0]
        .send(Message::Text(stop.to_string().into()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut attempt = 0;
    while subscribe(&mut extra, &format!("again{attempt}"), &job)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the stopped subscription's place never came back"
        );
        attempt += 1;
        // Wall-clock: the server frees the place when it handles the `complete` frame.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;

    let app = TestApp::api_only(&[
        ("AUTH_MODE", "required"),
        ("WS_MAX_SUBSCRIPTIONS_PER_KEY", "3"),
    ])
    .await;
    let accounts = favicon_finder::auth::Accounts::new(
        app.store.clone(),
        favicon_finder::auth::LinkSigner::new(None, Duration::from_secs(60)),
    );
    let scopes = [
        favicon_finder::auth::Scope::Submit,
        favicon_finder::auth::Scope::Read,
    ];
    let (_, key) = accounts
        .create_key("subs", "watcher", &scopes)
        .await
        .unwrap();
    let (_, other_key) = accounts.create_key("subs", "other", &scopes).await.unwrap();
    let job = json_answer_id(&app, &key).await;
    let mut sockets = Vec::new();
    for (i, (from, key)) in [(2, &key), (3, &key), (4, &key), (5, &key), (6, &other_key)]
        .into_iter()
        .enumerate()
    {
        let mut ws = app.ws_from([127, 0, 0, from]).await;
        let ack = crate::helpers::ws_init_with(&mut ws, json!({"apiKey": key}))
            .await
            .unwrap();
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        let answer = subscribe(&mut ws, "1", &job).await;
        match i {
            3 => {
                let error = answer.expect_err("a key's 4th subscription, from a 4th address");
                assert_eq!(
                    error["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
                    "{error}"
                );
                let message = error["message"].as_str().unwrap();
                assert!(
                    message.contains("WS_MAX_SUBSCRIPTIONS_PER_KEY"),
                    "{message}"
                );
            }
            _ => assert!(answer.is_ok(), "subscription {i}: {answer:?}"),
        }
        sockets.push(ws);
    }
    app.stop().await;
}

/// Creates a one-domain job with `key`; returns its id.
async fn json_answer_id(app: &TestApp, key: &str) -> String {
    let request = app
        .http
        .post(app.url("/jobs"))
        .json(&json!({"domains": ["x.test"]}));
    let body = crate::helpers::json_answer(request, Some(key)).await;
    body["job_id"].as_str().unwrap().to_owned()
}
