//! The webhooks' API, REST and GraphQL, on both databases: endpoints made, listed, read,
//! rotated and deleted the same way through either API, the secret shown only when it is made
//! or rotated, bad input refused with a reason a person can act on, another client's endpoints
//! and deliveries answered as not existing (`tenancy`), rotation seen by a real receiver, and
//! private addresses refused at registration (`delivery`).

use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::{Value, json};
use std::collections::BTreeSet;

mod delivery;
mod tenancy;

/// `WEBHOOK_SECRET_KEY`: 32 bytes in base64, as `openssl rand -base64 32` prints them.
pub(crate) const SEALING_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Every field of a GraphQL `Webhook`.
pub(crate) const WEBHOOK: &str = "id clientId url description events enabled disabledReason \
    disabledAt failingSince previousSecretExpiresAt createdAt";

/// Every field of a GraphQL `WebhookDelivery`.
pub(crate) const DELIVERY: &str = "id webhookId eventId eventType jobId status attempts \
    nextAttemptAt createdAt deliveredAt lastStatusCode lastError \
    attemptLog { attempt at statusCode latencyMs error }";

/// Every field REST shows of an endpoint (an answer with its secret adds `secret`).
const REST_FIELDS: [&str; 11] = [
    "id",
    "client_id",
    "url",
    "description",
    "events",
    "enabled",
    "disabled_reason",
    "disabled_at",
    "failing_since",
    "previous_secret_expires_at",
    "created_at",
];

/// One caller of the app's APIs: with an API key, or without one.
#[derive(Clone, Copy)]
pub(crate) struct Api<'a> {
    pub(crate) app: &'a TestApp,
    pub(crate) key: Option<&'a str>,
}

impl<'a> Api<'a> {
    /// A caller without a key.
    pub(crate) fn anonymous(app: &'a TestApp) -> Self {
        Self { app, key: None }
    }

    /// Sends `method path` (with `body` as JSON; a POST without one still says JSON, as the
    /// middleware wants); the status and the raw answer.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, String) {
        let mut request = self
            .app
            .http
            .request(method.parse().unwrap(), self.app.url(path));
        request = match body {
            Some(body) => request.json(body),
            None if method == "POST" => request.header("content-type", "application/json"),
            None => request,
        };
        if let Some(key) = self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// [`Api::send`], the answer parsed (null when empty).
    pub(crate) async fn rest(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.send(method, path, body.as_ref()).await;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, value)
    }

    /// Runs a GraphQL operation; the whole response body.
    pub(crate) async fn gql(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .rest(
                "POST",
                "/graphql",
                Some(json!({"query": query, "variables": variables})),
            )
            .await;
        assert_eq!(status, 200, "GraphQL answered {status}: {body}");
        body
    }

    /// Runs a GraphQL operation that must succeed; its `data`.
    pub(crate) async fn gql_ok(&self, query: &str, variables: Value) -> Value {
        let body = self.gql(query, variables).await;
        assert!(body["errors"].is_null(), "{query}: {body}");
        body["data"].clone()
    }

    /// Registers `url` over REST for `client` (none: the key's); the answer, which must be a 201.
    pub(crate) async fn create(&self, url: &str, client: Option<&str>) -> Value {
        let mut body = json!({ "url": url });
        if let Some(client) = client {
            body["client_id"] = json!(client);
        }
        let (status, created) = self.rest("POST", "/webhooks", Some(body)).await;
        assert_eq!(status, 201, "{created}");
        created
    }
}

/// The `error.code` of a REST error, asserting the status.
pub(crate) fn rest_code(answer: &(u16, Value), status: u16) -> String {
    assert_eq!(answer.0, status, "{}", answer.1);
    answer.1["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The code and message of a GraphQL answer's only error, asserting there is no data.
pub(crate) fn gql_error(body: &Value) -> (String, String) {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert!(
        body["data"].is_null(),
        "an error must not come with data: {body}"
    );
    (
        errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        errors[0]["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A secret as issued: `whsec_` and at least 24 bytes in base64.
fn assert_secret(secret: &str) {
    use base64::Engine;
    let bytes = secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| panic!("not a whsec_ secret: {secret:?}"));
    assert!(bytes.len() >= 24, "{secret:?} is {} bytes", bytes.len());
}

/// Seconds from now to an RFC 3339 time in `value`.
pub(crate) fn secs_from_now(value: &Value) -> f64 {
    let at = chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| {
        panic!("not a time: {value}");
    }))
    .unwrap();
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).as_seconds_f64()
}

/// REST: register (the events deduplicated in order, the defaults when none are named, the
/// URL and description trimmed), list, read, rotate with a stated and the default overlap,
/// send a test event, list its deliveries, redeliver, delete; the secret appears in the
/// create and rotate answers and nowhere else.
async fn rest_manages_endpoints(backend: Backend) {
    let app = TestApp::spawn_api(backend, &[("WEBHOOK_SECRET_KEY", SEALING_KEY)]).await;
    let api = Api::anonymous(&app);
    let (status, created) = api
        .rest(
            "POST",
            "/webhooks",
            Some(json!({
                "url": " http://127.0.0.1:9/hook ",
                "events": ["job.completed", "job.progress", "job.completed"],
                "description": "  nightly export ",
                "client_id": " acme ",
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let fields: BTreeSet<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut expected: BTreeSet<&str> = REST_FIELDS.into_iter().collect();
    expected.insert("secret");
    assert_eq!(fields, expected, "{created}");
    assert_secret(created["secret"].as_str().unwrap());
    assert_eq!(created["client_id"], "acme");
    assert_eq!(created["url"], "http://127.0.0.1:9/hook");
    assert_eq!(created["description"], "nightly export");
    assert_eq!(created["events"], json!(["job.completed", "job.progress"]));
    assert_eq!(created["enabled"], true);
    assert!(created["previous_secret_expires_at"].is_null(), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let first_secret = created["secret"].as_str().unwrap().to_owned();

    let plain = api.create("http://127.0.0.1:9/plain", Some("acme")).await;
    assert_eq!(
        plain["events"],
        json!([
            "job.completed",
            "job.failed",
            "job.cancelled",
            "icon.changed"
        ]),
        "no events named: a job's end, whatever it was"
    );
    assert_ne!(plain["secret"], created["secret"]);

    let (status, listed) = api.send("GET", "/webhooks", None).await;
    assert_eq!(status, 200, "{listed}");
    assert!(
        !listed.contains("\"secret\"") && !listed.contains(&first_secret),
        "a list shows no secret: {listed}"
    );
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [id.as_str(), plain["id"].as_str().unwrap()],
        "oldest first"
    );
    let (status, one) = api.send("GET", &format!("/webhooks/{id}"), None).await;
    assert_eq!(status, 200, "{one}");
    assert!(
        !one.contains("\"secret\"") && !one.contains(&first_secret),
        "a read shows no secret: {one}"
    );
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(serde_json::from_str::<Value>(&one).unwrap(), without_secret);

    let rotate = format!("/webhooks/{id}/rotate-secret");
    let (status, rotated) = api
        .rest("POST", &rotate, Some(json!({"overlap_secs": 60})))
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_secret(rotated["secret"].as_str().unwrap());
    assert_ne!(rotated["secret"].as_str().unwrap(), first_secret);
    let left = secs_from_now(&rotated["previous_secret_expires_at"]);
    assert!(
        (50.0..=61.0).contains(&left),
        "60 s of overlap, {left} left"
    );
    // An empty body takes WEBHOOK_ROTATION_OVERLAP_SECS, a day by default.
    let (status, again) = api.rest("POST", &rotate, None).await;
    assert_eq!(status, 200, "{again}");
    let left = secs_from_now(&again["previous_secret_expires_at"]);
    assert!((86_000.0..=86_401.0).contains(&left), "{left}");
    let (_, one) = api.send("GET", &format!("/webhooks/{id}"), None).await;
    for secret in [&rotated["secret"], &again["secret"]] {
        assert!(!one.contains(secret.as_str().unwrap()), "{one}");
    }
    assert!(!one.contains("\"secret\""), "{one}");

    let (status, queued) = api
        .rest("POST", &format!("/webhooks/{id}/test"), None)
        .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(
        (
            &queued["event_type"],
            &queued["status"],
            &queued["attempts"]
        ),
        (&json!("webhook.test"), &json!("pending"), &json!(0)),
        "{queued}"
    );
    assert_eq!(queued["webhook_id"], id.as_str());
    assert!(queued["job_id"].is_null());
    let (status, deliveries) = api
        .rest("GET", &format!("/webhooks/{id}/deliveries"), None)
        .await;
    assert_eq!(status, 200, "{deliveries}");
    assert_eq!(
        deliveries["deliveries"][0]["id"], queued["id"],
        "{deliveries}"
    );
    let redeliver = format!(
        "/webhooks/deliveries/{}/redeliver",
        queued["id"].as_str().unwrap()
    );
    let (status, again) = api.rest("POST", &redeliver, None).await;
    assert_eq!(status, 202, "{again}");
    assert_ne!(again["id"], queued["id"]);
    assert_eq!(again["event_id"], queued["event_id"], "the same webhook-id");
    let (_, deliveries) = api
        .rest(
            "GET",
            &format!("/webhooks/{id}/deliveries?per_page=1"),
            None,
        )
        .await;
    assert_eq!(deliveries["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(
        deliveries["deliveries"][0]["id"], again["id"],
        "newest first"
    );

    let (status, enabled) = api
        .rest("POST", &format!("/webhooks/{id}/enable"), None)
        .await;
    assert_eq!(
        (status, &enabled["enabled"]),
        (200, &json!(true)),
        "{enabled}"
    );
    let (status, _) = api.rest("DELETE", &format!("/webhooks/{id}"), None).await;
    assert_eq!(status, 204);
    for (method, path) in [
        ("GET", format!("/webhooks/{id}")),
        ("DELETE", format!("/webhooks/{id}")),
        ("GET", format!("/webhooks/{id}/deliveries")),
        ("POST", format!("/webhooks/{id}/test")),
        ("POST", redeliver.clone()),
    ] {
        let answer = api.rest(method, &path, None).await;
        assert_eq!(rest_code(&answer, 404), "NOT_FOUND", "{method} {path}");
    }
    let (_, listed) = api.rest("GET", "/webhooks", None).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1, "{listed}");
}
both_backends!(rest_endpoints, rest_manages_endpoints);

/// GraphQL: the same endpoints, events as the enum, ids as `ID`s; `Webhook` has no secret
/// field at all; what one API made the other reads.
async fn graphql_manages_endpoints(backend: Backend) {
    let app = TestApp::spawn_api(backend, &[("WEBHOOK_SECRET_KEY", SEALING_KEY)]).await;
    let api = Api::anonymous(&app);
    let create = format!(
        "mutation($input: CreateWebhookInput!) {{ createWebhook(input: $input) {{ secret webhook {{ {WEBHOOK} }} }} }}"
    );
    let data = api
        .gql_ok(
            &create,
            json!({"input": {
                "url": "http://127.0.0.1:9/graphql-hook",
                "events": ["JOB_FAILED", "JOB_PROGRESS"],
                "description": "from GraphQL",
                "clientId": "acme",
            }}),
        )
        .await;
    let created = &data["createWebhook"];
    assert_secret(created["secret"].as_str().unwrap());
    let webhook = &created["webhook"];
    assert_eq!(webhook["events"], json!(["JOB_FAILED", "JOB_PROGRESS"]));
    assert_eq!(
        (
            &webhook["clientId"],
            &webhook["enabled"],
            &webhook["description"]
        ),
        (&json!("acme"), &json!(true), &json!("from GraphQL"))
    );
    let id = webhook["id"].as_str().unwrap().to_owned();
    let (status, over_rest) = api.rest("GET", &format!("/webhooks/{id}"), None).await;
    assert_eq!(status, 200, "{over_rest}");
    assert_eq!(over_rest["events"], json!(["job.failed", "job.progress"]));
    let rest_made = api
        .create("http://127.0.0.1:9/rest-hook", Some("acme"))
        .await;
    let rest_id = rest_made["id"].as_str().unwrap();

    let listed = api
        .gql_ok(
            &format!("query($c: String) {{ webhooks(clientId: $c) {{ {WEBHOOK} }} }}"),
            json!({"c": "acme"}),
        )
        .await;
    let ids: Vec<&str> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), rest_id]);
    assert_eq!(
        listed["webhooks"][1]["events"],
        json!([
            "JOB_COMPLETED",
            "JOB_FAILED",
            "JOB_CANCELLED",
            "ICON_CHANGED"
        ])
    );
    let asked = api.gql("{ webhooks { id secret } }", json!({})).await;
    let message = asked["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("secret") && asked["data"].is_null(),
        "a Webhook has no secret to select: {asked}"
    );

    let rotated = api
        .gql_ok(
            "mutation($id: ID!) { rotateWebhookSecret(id: $id, overlapSeconds: 30) { secret webhook { id previousSecretExpiresAt } } }",
            json!({"id": id}),
        )
        .await;
    let rotated = &rotated["rotateWebhookSecret"];
    assert_secret(rotated["secret"].as_str().unwrap());
    assert_ne!(rotated["secret"], created["secret"]);
    let left = secs_from_now(&rotated["webhook"]["previousSecretExpiresAt"]);
    assert!(
        (20.0..=31.0).contains(&left),
        "30 s of overlap, {left} left"
    );

    let sent = api
        .gql_ok(
            &format!("mutation($id: ID!) {{ sendTestWebhook(id: $id) {{ {DELIVERY} }} }}"),
            json!({"id": id}),
        )
        .await;
    let sent = &sent["sendTestWebhook"];
    assert_eq!(
        (
            &sent["eventType"],
            &sent["status"],
            &sent["attempts"],
            &sent["webhookId"]
        ),
        (
            &json!("WEBHOOK_TEST"),
            &json!("PENDING"),
            &json!(0),
            &json!(id)
        ),
        "{sent}"
    );
    assert!(
        sent["jobId"].is_null() && sent["attemptLog"] == json!([]),
        "{sent}"
    );
    assert!(
        sent["eventId"].as_str().unwrap().starts_with("msg_"),
        "{sent}"
    );
    let again = api
        .gql_ok(
            "mutation($d: ID!) { redeliverWebhook(deliveryId: $d) { id eventId status } }",
            json!({"d": sent["id"]}),
        )
        .await;
    let again = &again["redeliverWebhook"];
    assert_ne!(again["id"], sent["id"]);
    assert_eq!(again["eventId"], sent["eventId"], "the same webhook-id");
    let deliveries = api
        .gql_ok(
            &format!("query($id: ID!) {{ webhookDeliveries(webhookId: $id, perPage: 5) {{ {DELIVERY} }} }}"),
            json!({"id": id}),
        )
        .await;
    let ids: Vec<&Value> = deliveries["webhookDeliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, [&again["id"], &sent["id"]], "newest first");
    let (_, over_rest) = api
        .rest("GET", &format!("/webhooks/{id}/deliveries"), None)
        .await;
    assert_eq!(over_rest["deliveries"][1]["event_id"], sent["eventId"]);

    let enabled = api
        .gql_ok(
            "mutation($id: ID!) { enableWebhook(id: $id) { id enabled } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(enabled["enableWebhook"], json!({"id": id, "enabled": true}));
    let delete = "mutation($id: ID!) { deleteWebhook(id: $id) }";
    let deleted = api.gql_ok(delete, json!({"id": id})).await;
    assert_eq!(deleted["deleteWebhook"], true);
    let (code, message) = gql_error(&api.gql(delete, json!({"id": id})).await);
    assert_eq!(code, "NOT_FOUND", "{message}");
    let (code, _) = gql_error(
        &api.gql(
            "query($id: ID!) { webhookDeliveries(webhookId: $id) { id } }",
            json!({"id": id}),
        )
        .await,
    );
    assert_eq!(code, "NOT_FOUND");
    let (status, _) = api.rest("GET", &format!("/webhooks/{id}"), None).await;
    assert_eq!(status, 404, "deleted over GraphQL, gone over REST");
    let listed = api.gql_ok("{ webhooks { id } }", json!({})).await;
    assert_eq!(listed["webhooks"], json!([{"id": rest_id}]));
}
both_backends!(graphql_endpoints, graphql_manages_endpoints);

/// Bad input is refused with a 400 (a GraphQL error) whose code says which kind and whose
/// message names the field and what would do; a server without `WEBHOOK_SECRET_KEY`
/// registers nothing and says what its operator must set.
async fn bad_input_is_refused_with_reasons(backend: Backend) {
    let app = TestApp::spawn_api(backend, &[("WEBHOOK_SECRET_KEY", SEALING_KEY)]).await;
    let api = Api::anonymous(&app);
    let ok = "http://127.0.0.1:9/hook";
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"client_id": "acme"}),
            "INVALID_INPUT",
            "url is required",
        ),
        (
            json!({"url": "ftp://127.0.0.1/hook", "client_id": "acme"}),
            "WEBHOOK_URL_REFUSED",
            "http:// or https://",
        ),
        (
            json!({"url": "javascript:alert(1)", "client_id": "acme"}),
            "WEBHOOK_URL_REFUSED",
            "http:// or https://",
        ),
        (
            json!({"url": "127.0.0.1/hook", "client_id": "acme"}),
            "WEBHOOK_URL_REFUSED",
            "is not a URL",
        ),
        (
            json!({"url": "http://user:pw@127.0.0.1/hook", "client_id": "acme"}),
            "WEBHOOK_URL_REFUSED",
            "credentials",
        ),
        (
            json!({"url": "http://token@127.0.0.1/hook", "client_id": "acme"}),
            "WEBHOOK_URL_REFUSED",
            "credentials",
        ),
        (
            json!({"url": format!("http://127.0.0.1/{}", "a".repeat(2_100)), "client_id": "acme"}),
            "WEBHOOK_URL_REFUSED",
            "longer than",
        ),
        (
            json!({"url": ok, "events": ["job.done"], "client_id": "acme"}),
            "INVALID_INPUT",
            "\"job.done\" is not an event",
        ),
        (
            json!({"url": ok, "events": ["JOB_COMPLETED"], "client_id": "acme"}),
            "INVALID_INPUT",
            "is not an event",
        ),
        (
            json!({"url": ok, "events": ["webhook.test"], "client_id": "acme"}),
            "INVALID_INPUT",
            "is not an event",
        ),
        (
            json!({"url": ok, "events": [], "client_id": "acme"}),
            "INVALID_INPUT",
            "events is empty",
        ),
        (
            json!({"url": ok, "events": "job.completed", "client_id": "acme"}),
            "INVALID_INPUT",
            "expected a sequence",
        ),
        (json!({"url": ok}), "INVALID_INPUT", "client_id is required"),
        (
            json!({"url": ok, "client_id": "  "}),
            "INVALID_INPUT",
            "client_id must not be empty",
        ),
        (
            json!({"url": ok, "client_id": "c".repeat(256)}),
            "INVALID_INPUT",
            "at most 255",
        ),
        (
            json!({"url": ok, "client_id": "acme", "description": "d".repeat(501)}),
            "INVALID_INPUT",
            "description is longer than 500",
        ),
        (
            json!({"url": ok, "client_id": "acme", "secret": "whsec_mine"}),
            "INVALID_INPUT",
            "unknown field `secret`",
        ),
    ];
    for (body, code, says) in cases {
        let answer = api.rest("POST", "/webhooks", Some(body.clone())).await;
        assert_eq!(rest_code(&answer, 400), code, "{body}: {}", answer.1);
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{body}: {message:?} should say {says:?}"
        );
    }
    let answer = api.rest("POST", "/webhooks", None).await;
    assert_eq!(
        rest_code(&answer, 400),
        "INVALID_JSON",
        "JSON is said, but none is sent"
    );
    let (status, listed) = api.rest("GET", "/webhooks", None).await;
    assert_eq!(
        (status, &listed["webhooks"]),
        (200, &json!([])),
        "nothing was registered"
    );

    let id = api.create(ok, Some("acme")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotate = format!("/webhooks/{id}/rotate-secret");
    let answer = api
        .rest("POST", &rotate, Some(json!({"overlap_secs": 2_592_001})))
        .await;
    assert_eq!(rest_code(&answer, 400), "INVALID_INPUT", "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2592000")
    );
    let answer = api
        .rest("POST", &rotate, Some(json!({"overlap_secs": -1})))
        .await;
    assert_eq!(rest_code(&answer, 400), "INVALID_INPUT", "{}", answer.1);
    for path in ["/webhooks/not-an-id", "/webhooks/not-an-id/deliveries"] {
        assert_eq!(
            rest_code(&api.rest("GET", path, None).await, 400),
            "INVALID_ID",
            "{path}"
        );
    }
    let answer = api
        .rest(
            "GET",
            &format!("/webhooks/{id}/deliveries?per_page=0"),
            None,
        )
        .await;
    assert_eq!(rest_code(&answer, 400), "INVALID_PAGE");
    let response = app
        .http
        .post(app.url("/webhooks"))
        .header("content-type", "text/plain")
        .body(json!({"url": ok, "client_id": "acme"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        415,
        "a cross-site form cannot register an endpoint"
    );

    let create =
        "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { secret } }";
    let graphql_cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"url": "ftp://127.0.0.1/hook", "clientId": "acme"}),
            "WEBHOOK_URL_REFUSED",
            "http:// or https://",
        ),
        (
            json!({"url": "http://a:b@127.0.0.1/", "clientId": "acme"}),
            "WEBHOOK_URL_REFUSED",
            "credentials",
        ),
        (
            json!({"url": ok, "events": [], "clientId": "acme"}),
            "INVALID_INPUT",
            "events is empty",
        ),
        (
            json!({"url": ok, "events": ["WEBHOOK_TEST"], "clientId": "acme"}),
            "INVALID_INPUT",
            "webhook.test is sent to every endpoint",
        ),
        (
            json!({"url": ok, "events": ["JOB_DONE"], "clientId": "acme"}),
            "",
            "JOB_DONE",
        ),
        (json!({"url": ok}), "INVALID_INPUT", "client_id is required"),
        (json!({"clientId": "acme"}), "", "url"),
    ];
    for (input, code, says) in graphql_cases {
        let body = api.gql(create, json!({"input": input})).await;
        let (got, message) = gql_error(&body);
        if !code.is_empty() {
            assert_eq!(got, code, "{input}: {body}");
        }
        assert!(
            message.contains(says),
            "{input}: {message:?} should say {says:?}"
        );
    }
    let rotate = "mutation($id: ID!, $s: Int) { rotateWebhookSecret(id: $id, overlapSeconds: $s) { secret } }";
    for (seconds, says) in [(-1, "must not be negative"), (2_592_001, "at most 2592000")] {
        let (code, message) = gql_error(&api.gql(rotate, json!({"id": id, "s": seconds})).await);
        assert_eq!(code, "INVALID_INPUT", "{message}");
        assert!(message.contains(says), "{message}");
    }
    let (code, _) = gql_error(&api.gql(rotate, json!({"id": "nope"})).await);
    assert_eq!(code, "INVALID_ID");
    let (code, _) = gql_error(
        &api.gql(
            "query($id: ID!) { webhookDeliveries(webhookId: $id, perPage: 0) { id } }",
            json!({"id": id}),
        )
        .await,
    );
    assert_eq!(code, "INVALID_PAGE");
    let (code, _) = gql_error(
        &api.gql(
            "mutation { redeliverWebhook(deliveryId: \"x\") { id } }",
            json!({}),
        )
        .await,
    );
    assert_eq!(code, "INVALID_ID");
    let listed = api.gql_ok("{ webhooks { id } }", json!({})).await;
    assert_eq!(
        listed["webhooks"],
        json!([{"id": id}]),
        "only the one made on purpose"
    );

    // Without WEBHOOK_SECRET_KEY nothing can be sealed, so nothing is registered.
    let off = TestApp::spawn_api(backend, &[]).await;
    let api = Api::anonymous(&off);
    let answer = api
        .rest(
            "POST",
            "/webhooks",
            Some(json!({"url": ok, "client_id": "acme"})),
        )
        .await;
    assert_eq!(rest_code(&answer, 400), "WEBHOOKS_NOT_CONFIGURED");
    let message = answer.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("WEBHOOK_SECRET_KEY"), "{message}");
    let (code, message) = gql_error(
        &api.gql(create, json!({"input": {"url": ok, "clientId": "acme"}}))
            .await,
    );
    assert_eq!(code, "WEBHOOKS_NOT_CONFIGURED", "{message}");
    assert!(message.contains("WEBHOOK_SECRET_KEY"), "{message}");
    let (status, listed) = api.rest("GET", "/webhooks", None).await;
    assert_eq!(
        (status, &listed["webhooks"]),
        (200, &json!([])),
        "reads still answer"
    );
}
both_backends!(bad_input, bad_input_is_refused_with_reasons);
