//! Webhook secrets at rest: the database holds each secret sealed, never the secret or its
//! key bytes, and a sealed secret works only for the endpoint it was sealed for, so a copied
//! row signs nothing.

use crate::helpers::{Backend, TestApp, both_backends};
use crate::subscriptions::wait_until;
use base64::Engine;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

/// A key for `WEBHOOK_SECRET_KEY` (32 bytes in base64).
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn register(app: &TestApp, url: &str) -> Value {
    let (status, hook) = app
        .post_json("/webhooks", &json!({"client_id": "vault", "url": url}))
        .await;
    assert_eq!(status, 201, "{hook}");
    hook
}

async fn stored_secret(app: &TestApp, id: &str) -> String {
    let db = app.store.connection();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT secret FROM webhook_endpoint WHERE id = $1",
            [uuid::Uuid::parse_str(id).unwrap().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "secret").unwrap()
}

async fn secrets_are_sealed_for_their_endpoint(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WEBHOOK_SECRET_KEY", KEY)]).await;
    let a = register(&app, "http://127.0.0.1:1/a").await;
    let b = register(&app, "http://127.0.0.1:1/b").await;
    let secret = a["secret"].as_str().unwrap();
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let stored = stored_secret(&app, a["id"].as_str().unwrap()).await;
    assert!(stored.starts_with("v1:"), "{stored}");
    assert!(!stored.contains(secret.strip_prefix("whsec_").unwrap()));
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(stored.strip_prefix("v1:").unwrap())
        .unwrap();
    assert!(
        !sealed
            .windows(key_bytes.len())
            .any(|w| w == key_bytes.as_slice()),
        "the key bytes are in the stored value"
    );

    // A's sealed secret copied onto B: B's events cannot be signed with it.
    let db = app.store.connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE webhook_endpoint SET secret = $1 WHERE id = $2",
        [
            stored.into(),
            uuid::Uuid::parse_str(b["id"].as_str().unwrap())
                .unwrap()
                .into(),
        ],
    ))
    .await
    .unwrap();
    let b_id = b["id"].as_str().unwrap();
    let (status, _) = app
        .post_json(&format!("/webhooks/{b_id}/test"), &json!({}))
        .await;
    assert_eq!(status, 202);
    let attempts = || async {
        let (_, list) = app.get_json(&format!("/webhooks/{b_id}/deliveries")).await;
        list["deliveries"][0].clone()
    };
    wait_until("the test event's first attempt", || async {
        attempts().await["attempts"] == 1
    })
    .await;
    let delivery = attempts().await;
    let error = delivery["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("could not be opened"), "{delivery}");
    assert_eq!(
        delivery["last_status_code"],
        Value::Null,
        "nothing was sent"
    );
}
both_backends!(sealed_secrets, secrets_are_sealed_for_their_endpoint);
