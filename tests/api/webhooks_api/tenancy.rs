//! Webhooks under keys: an endpoint belongs to its key's client; another client is told that
//! it, and its deliveries, do not exist, on every REST route and GraphQL field, in the very
//! words it is told of an id that was never made; its list never shows them; an admin sees
//! every client's.

use super::{Api, SEALING_KEY, WEBHOOK, gql_error, rest_code};
use crate::helpers::{Backend, TestApp, both_backends};
use favicon_finder::auth::{Accounts, LinkSigner, Scope};
use serde_json::{Value, json};
use std::time::Duration;

/// The REST routes of endpoint `id` and delivery `delivery`, each as method, path and body.
fn routes(id: &str, delivery: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", format!("/webhooks/{id}"), None),
        ("DELETE", format!("/webhooks/{id}"), None),
        (
            "POST",
            format!("/webhooks/{id}/rotate-secret"),
            Some(json!({"overlap_secs": 5})),
        ),
        ("POST", format!("/webhooks/{id}/enable"), None),
        ("POST", format!("/webhooks/{id}/test"), None),
        ("GET", format!("/webhooks/{id}/deliveries"), None),
        (
            "POST",
            format!("/webhooks/deliveries/{delivery}/redeliver"),
            None,
        ),
    ]
}

/// The GraphQL fields that take an endpoint (`$id`) or a delivery (`$d`), one per operation.
const OPERATIONS: [&str; 6] = [
    "query($id: ID!) { webhookDeliveries(webhookId: $id) { id } }",
    "mutation($id: ID!) { deleteWebhook(id: $id) }",
    "mutation($id: ID!) { rotateWebhookSecret(id: $id, overlapSeconds: 5) { secret } }",
    "mutation($id: ID!) { enableWebhook(id: $id) { id } }",
    "mutation($id: ID!) { sendTestWebhook(id: $id) { id } }",
    "mutation($d: ID!) { redeliverWebhook(deliveryId: $d) { id } }",
];

/// What `api` is told on every route and field about endpoint `id` and delivery `delivery`,
/// with the ids taken out: (REST status, code, message) per route, then (code, message) per
/// GraphQL field.
async fn told(api: Api<'_>, id: &str, delivery: &str) -> Vec<(u16, String, String)> {
    let mut answers = Vec::new();
    for (method, path, body) in routes(id, delivery) {
        let (status, answer) = api.rest(method, &path, body).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        answers.push((
            status,
            format!(
                "{method} {} {}",
                path.replace(id, "ID").replace(delivery, "D"),
                answer["error"]["code"]
            ),
            message.replace(id, "ID").replace(delivery, "D"),
        ));
    }
    for operation in OPERATIONS {
        let body = api.gql(operation, json!({"id": id, "d": delivery})).await;
        let (code, message) = gql_error(&body);
        answers.push((
            0,
            format!("{operation} {code}"),
            message.replace(id, "ID").replace(delivery, "D"),
        ));
    }
    answers
}

/// Ids of the endpoints in a REST list answer.
fn ids(list: &Value) -> Vec<String> {
    list["webhooks"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Two clients and an admin, with `AUTH_MODE=required`: acme's endpoint and delivery are
/// NOT_FOUND for rival everywhere, told exactly as ids never made are, and nothing rival
/// tried changed them; rival's list is its own; the admin reads and lists both.
async fn another_clients_endpoint_does_not_exist(backend: Backend) {
    let app = TestApp::spawn_api(
        backend,
        &[
            ("AUTH_MODE", "required"),
            ("WEBHOOK_SECRET_KEY", SEALING_KEY),
        ],
    )
    .await;
    let accounts = Accounts::new(
        app.store.clone(),
        LinkSigner::new(None, Duration::from_secs(60)),
    );
    let key = |client: &'static str, scopes: &'static [Scope]| {
        let accounts = accounts.clone();
        async move {
            accounts
                .create_key(client, "webhooks", scopes)
                .await
                .unwrap()
                .1
        }
    };
    let acme_key = key("acme", &[Scope::Submit, Scope::Read]).await;
    let rival_key = key("rival", &[Scope::Submit, Scope::Read]).await;
    let admin_key = key("ops", &[Scope::Admin]).await;
    let acme = Api {
        app: &app,
        key: Some(&acme_key),
    };
    let rival = Api {
        app: &app,
        key: Some(&rival_key),
    };
    let admin = Api {
        app: &app,
        key: Some(&admin_key),
    };
    let nobody = Api::anonymous(&app);

    let mine = acme.create("http://127.0.0.1:9/acme", None).await;
    assert_eq!(mine["client_id"], "acme", "the key names the client");
    let id = mine["id"].as_str().unwrap().to_owned();
    let (status, queued) = acme
        .rest("POST", &format!("/webhooks/{id}/test"), None)
        .await;
    assert_eq!(status, 202, "{queued}");
    let delivery = queued["id"].as_str().unwrap().to_owned();
    let theirs = rival.create("http://127.0.0.1:9/rival", None).await;
    let their_id = theirs["id"].as_str().unwrap().to_owned();

    // The owner reaches every route: the 404s below are about who asks, not what exists.
    for (method, path, body) in routes(&id, &delivery) {
        if method == "DELETE" {
            continue;
        }
        let (status, answer) = acme.rest(method, &path, body).await;
        assert!(
            (200..300).contains(&status),
            "acme: {method} {path}: {status} {answer}"
        );
    }
    let (_, before) = acme.rest("GET", &format!("/webhooks/{id}"), None).await;
    let rival_told = told(rival, &id, &delivery).await;
    for (status, what, message) in &rival_told {
        assert!(what.contains("NOT_FOUND"), "rival: {what}: {message}");
        assert!(matches!(status, 0 | 404), "rival: {what} answered {status}");
    }
    let never = told(
        rival,
        &uuid::Uuid::now_v7().to_string(),
        &uuid::Uuid::now_v7().to_string(),
    )
    .await;
    assert_eq!(
        rival_told, never,
        "another client's ids are told as ids never made"
    );
    for (method, path, body) in routes(&id, &delivery) {
        let answer = nobody.rest(method, &path, body).await;
        assert_eq!(
            rest_code(&answer, 401),
            "UNAUTHORIZED",
            "no key: {method} {path}"
        );
    }

    // Nothing rival tried reached acme's endpoint: not rotated (its rotation time is
    // acme's own), not deleted, no new delivery.
    let (status, still) = acme.rest("GET", &format!("/webhooks/{id}"), None).await;
    assert_eq!((status, &still), (200, &before));
    let (_, deliveries) = acme
        .rest("GET", &format!("/webhooks/{id}/deliveries"), None)
        .await;
    let count = deliveries["deliveries"].as_array().unwrap().len();
    assert_eq!(
        count, 3,
        "acme's two tests and its redelivery: {deliveries}"
    );

    let (_, listed) = rival.rest("GET", "/webhooks", None).await;
    assert_eq!(ids(&listed), [their_id.as_str()]);
    let listed = rival
        .gql_ok(&format!("{{ webhooks {{ {WEBHOOK} }} }}"), json!({}))
        .await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["webhooks"][0]["id"], their_id.as_str());
    let answer = rival.rest("GET", "/webhooks?client_id=acme", None).await;
    assert_eq!(
        rest_code(&answer, 403),
        "FORBIDDEN",
        "rival cannot name acme"
    );
    let (code, _) = gql_error(
        &rival
            .gql("{ webhooks(clientId: \"acme\") { id } }", json!({}))
            .await,
    );
    assert_eq!(code, "FORBIDDEN");
    let answer = rival
        .rest(
            "POST",
            "/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/x", "client_id": "acme"})),
        )
        .await;
    assert_eq!(rest_code(&answer, 403), "FORBIDDEN", "nor register for it");
    let (status, _) = acme
        .rest("GET", &format!("/webhooks/{their_id}"), None)
        .await;
    assert_eq!(status, 404, "and the other way round");

    let (_, listed) = admin.rest("GET", "/webhooks", None).await;
    assert_eq!(
        ids(&listed),
        [id.clone(), their_id.clone()],
        "the admin sees both"
    );
    let (_, listed) = admin.rest("GET", "/webhooks?client_id=acme", None).await;
    assert_eq!(ids(&listed), [id.as_str()]);
    let listed = admin
        .gql_ok("{ webhooks { id clientId } }", json!({}))
        .await;
    assert_eq!(
        listed["webhooks"],
        json!([{"id": id, "clientId": "acme"}, {"id": their_id, "clientId": "rival"}])
    );
    let (status, _) = admin
        .rest("GET", &format!("/webhooks/{id}/deliveries"), None)
        .await;
    assert_eq!(status, 200);
    let made = admin
        .rest(
            "POST",
            "/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/y", "client_id": "acme"})),
        )
        .await;
    assert_eq!(made.0, 201, "an admin registers for any client: {}", made.1);
    let deleted = admin
        .gql_ok(
            "mutation($id: ID!) { deleteWebhook(id: $id) }",
            json!({"id": their_id}),
        )
        .await;
    assert_eq!(deleted["deleteWebhook"], true);
    let (status, _) = rival
        .rest("GET", &format!("/webhooks/{their_id}"), None)
        .await;
    assert_eq!(status, 404, "deleted by the admin");
}
both_backends!(tenancy, another_clients_endpoint_does_not_exist);
