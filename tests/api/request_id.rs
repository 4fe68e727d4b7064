//! Every answer has an `x-request-id` (the caller's own when it is plain, a new one
//! otherwise), and error bodies, REST and GraphQL, quote it.

use crate::helpers::{Backend, TestApp, both_backends};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;

async fn answers_and_errors_carry_the_request_id(backend: Backend) {
    let app = TestApp::spawn_api(backend, &[]).await;

    // A REST error: the body quotes the id the header gives.
    let missing = app
        .http
        .get(app.url("/jobs/00000000-0000-0000-0000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let id = missing.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a new id: {id}");
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
    // No trace pipeline in this process: no traceresponse to give.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(health.headers().contains_key("x-request-id"));
    assert!(!health.headers().contains_key("traceresponse"));

    // A refusal before any handler (an unknown path, the wrong media type) has it too.
    let refused = app
        .http
        .post(app.url("/jobs"))
        .header("x-request-id", "client-req-42")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 415);
    assert_eq!(
        refused.headers()["x-request-id"],
        "client-req-42",
        "the caller's is echoed"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "client-req-42");

    // An id that is not plain is not echoed (it would land in logs and bodies).
    let odd = app
        .http
        .get(app.url("/no/such/path"))
        .header("x-request-id", "<script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 404);
    let replaced = odd.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&replaced).is_ok(),
        "replaced: {replaced}"
    );
    let body: Value = odd.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], replaced.as_str());

    // A GraphQL error quotes it in its extensions, next to the code.
    let graphql = app
        .http
        .post(app.url("/graphql"))
        .header("x-request-id", "gql-7")
        .json(&json!({"query": "{ job(id: \"00000000-0000-0000-0000-000000000000\") { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(graphql.headers()["x-request-id"], "gql-7");
    let body: Value = graphql.json().await.unwrap();
    let error = &body["errors"][0];
    assert!(error["extensions"]["code"].is_string(), "{body}");
    assert_eq!(error["extensions"]["requestId"], "gql-7", "{body}");
    // And a GraphQL request refused before execution (a body that is not JSON).
    let broken = app
        .http
        .post(app.url("/graphql"))
        .header("x-request-id", "gql-8")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let body: Value = broken.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["requestId"], "gql-8",
        "{body}"
    );
}

/// An operation over a WebSocket runs long after the upgrade's request was answered; its
/// errors quote the upgrade's request id, as the 101 answer gave it.
async fn websocket_errors_quote_the_upgrade_request_id(backend: Backend) {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::spawn_api(backend, &[]).await;
    let mut request = app
        .url("/graphql")
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert("x-request-id", "ws-req-9".parse().unwrap());
    let (mut ws, answer) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(answer.headers()["x-request-id"], "ws-req-9");
    let send = |value: Value| Message::Text(value.to_string().into());
    ws.send(send(json!({"type": "connection_init", "payload": {}})))
        .await
        .unwrap();
    ws.send(send(json!({
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "{ job(id: \"00000000-0000-0000-0000-000000000000\") { id } }"},
    })))
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message.unwrap() {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["id"] == "1" {
                    return frame;
                }
            }
        }
        panic!("the socket closed before the operation answered");
    })
    .await
    .expect("an answer within 10 s");
    let error = &answer["payload"]["errors"][0];
    assert!(error["extensions"]["code"].is_string(), "{answer}");
    assert_eq!(error["extensions"]["requestId"], "ws-req-9", "{answer}");
}

both_backends!(request_id, answers_and_errors_carry_the_request_id);
both_backends!(
    websocket_request_id,
    websocket_errors_quote_the_upgrade_request_id
);
