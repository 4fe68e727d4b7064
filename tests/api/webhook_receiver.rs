//! The webhook receiver the webhook tests rely on (tests/common/webhooks.rs), checked on its
//! own: requests signed here by the Standard Webhooks scheme verify with the right secret
//! only, a tampered body, a stale timestamp or a wrong secret verify with none, two signatures
//! verify with both secrets, secrets change at runtime, and the planned statuses are answered
//! in turn. Without these, a webhook test's `verified_with == [0]` could pass on a receiver
//! that accepts anything.

use crate::common::webhooks::Receiver;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Two secrets as the service would issue them: `whsec_` and 24 random-looking bytes.
const FIRST: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECOND: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const WAIT: Duration = Duration::from_secs(10);

/// The `v1,…` signature of `body` sent as message `id` at `timestamp` with `secret`.
fn sign(secret: &str, id: &str, timestamp: u64, body: &str) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POSTs `body` to the receiver with the three webhook headers; the status it answered.
async fn post(url: &str, id: &str, timestamp: u64, signature: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn event() -> String {
    json!({"type": "job.completed", "timestamp": "2026-12-06T00:00:00Z", "data": {"id": 1}})
        .to_string()
}

#[tokio::test]
async fn only_the_signing_secret_verifies_a_delivery() {
    let Some(receiver) = Receiver::start(&[FIRST], &[]).await else {
        return;
    };
    let body = event();
    let ts = now();
    let good = sign(FIRST, "msg_1", ts, &body);
    assert_eq!(post(&receiver.url(), "msg_1", ts, &good, &body).await, 204);
    let tampered = body.replace("\"id\":1", "\"id\":2");
    assert_ne!(tampered, body);
    post(&receiver.url(), "msg_1", ts, &good, &tampered).await;
    // Replayed under another id: the id is signed too.
    post(&receiver.url(), "msg_2", ts, &good, &body).await;
    let wrong = sign(SECOND, "msg_3", ts, &body);
    post(&receiver.url(), "msg_3", ts, &wrong, &body).await;
    // Correctly signed, but older than the library's five minutes of tolerance.
    let old = ts - 600;
    let stale = sign(FIRST, "msg_4", old, &body);
    post(&receiver.url(), "msg_4", old, &stale, &body).await;

    let seen = receiver.wait_for(5, WAIT).await;
    let first = &seen[0];
    assert_eq!(first.verified_with, [0], "{first:#?}");
    assert_eq!(first.path, "/hook");
    assert_eq!(first.method, "POST");
    assert_eq!(first.raw_body, body);
    assert_eq!(first.body["data"]["id"], 1);
    assert_eq!(first.header("webhook-id"), "msg_1");
    assert_eq!(first.header("webhook-signature"), good);
    assert_eq!(first.header("content-type"), "application/json");
    let arrived = first.received_at.duration_since(UNIX_EPOCH).unwrap();
    assert!(arrived.as_secs().abs_diff(ts) <= 2, "{arrived:?} vs {ts}");
    for rejected in &seen[1..] {
        assert!(rejected.verified_with.is_empty(), "{rejected:#?}");
        assert_eq!(rejected.verify_errors.len(), 1, "{rejected:#?}");
    }
    assert!(
        seen[4].verify_errors[0].contains("too old"),
        "{:?}",
        seen[4]
    );
}

#[tokio::test]
async fn each_secret_is_tried_on_its_own() {
    let Some(receiver) = Receiver::start(&[FIRST, SECOND], &[]).await else {
        return;
    };
    let body = event();
    let ts = now();
    let (one, two) = (
        sign(FIRST, "msg_1", ts, &body),
        sign(SECOND, "msg_1", ts, &body),
    );
    // During a rotation the service signs with both, space-separated.
    post(&receiver.url(), "msg_1", ts, &format!("{one} {two}"), &body).await;
    post(&receiver.url(), "msg_1", ts, &two, &body).await;
    post(&receiver.url(), "msg_1", ts, &one, &body).await;
    let seen = receiver.wait_for(3, WAIT).await;
    let verified: Vec<&[usize]> = seen.iter().map(|d| d.verified_with.as_slice()).collect();
    assert_eq!(verified, [&[0, 1][..], &[1], &[0]]);
}

#[tokio::test]
async fn secrets_change_while_it_runs() {
    let Some(receiver) = Receiver::start(&[FIRST], &[]).await else {
        return;
    };
    let body = event();
    let ts = now();
    let two = sign(SECOND, "msg_1", ts, &body);
    post(&receiver.url(), "msg_1", ts, &two, &body).await;
    receiver.set_secrets(&[FIRST, SECOND]).await;
    post(&receiver.url(), "msg_1", ts, &two, &body).await;
    receiver.set_secrets(&[SECOND]).await;
    post(&receiver.url(), "msg_1", ts, &two, &body).await;
    let seen = receiver.wait_for(3, WAIT).await;
    let verified: Vec<&[usize]> = seen.iter().map(|d| d.verified_with.as_slice()).collect();
    assert_eq!(verified, [&[][..], &[1], &[0]]);
}

#[tokio::test]
async fn planned_statuses_are_answered_in_turn() {
    let Some(receiver) = Receiver::start(&[FIRST], &[500, 500]).await else {
        return;
    };
    let body = event();
    let ts = now();
    let good = sign(FIRST, "msg_1", ts, &body);
    let mut answered = Vec::new();
    for _ in 0..3 {
        answered.push(post(&receiver.url(), "msg_1", ts, &good, &body).await);
    }
    assert_eq!(answered, [500, 500, 204]);
    receiver.set_statuses(&[410]).await;
    answered.push(post(&receiver.url(), "msg_1", ts, &good, &body).await);
    answered.push(post(&receiver.url(), "msg_1", ts, &good, &body).await);
    assert_eq!(answered[3..], [410, 204]);
    let recorded: Vec<u16> = receiver
        .wait_for(5, WAIT)
        .await
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(recorded, answered);
    assert!(receiver.deliveries().iter().all(|d| d.verified_with == [0]));
}

#[tokio::test]
async fn a_delayed_answer_is_recorded_before_it_is_sent() {
    let Some(receiver) = Receiver::start(&[FIRST], &[]).await else {
        return;
    };
    receiver.set_delay(Duration::from_secs(30)).await;
    let body = event();
    let ts = now();
    let good = sign(FIRST, "msg_1", ts, &body);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let sent = client
        .post(receiver.url())
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", good)
        .body(body)
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    let seen = receiver.wait_for(1, WAIT).await;
    assert_eq!(seen[0].verified_with, [0]);
}

#[tokio::test]
async fn waiting_for_more_than_arrived_fails_naming_what_did() {
    let Some(receiver) = Receiver::start(&[FIRST], &[]).await else {
        return;
    };
    post(&receiver.url(), "msg_1", now(), "v1,bm9wZQ==", "{}").await;
    let waited = tokio::spawn(async move {
        receiver.wait_for(2, Duration::from_millis(300)).await;
    })
    .await
    .unwrap_err();
    let message = waited.into_panic();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("for 2 webhook deliveries, got 1"),
        "{message}"
    );
    assert!(message.contains("msg_1"), "{message}");
}
