//! What the API's answers do to deliveries: a rotated secret signs beside the old one for the
//! stated overlap, as a receiver verifying with the npm `standardwebhooks` package sees it, and
//! then alone; an endpoint on a private address is refused when it is registered.

use super::{Api, SEALING_KEY, gql_error, rest_code, secs_from_now};
use crate::common::webhooks::Receiver;
use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::json;
use std::time::Duration;

/// How long a test event may take to reach the receiver.
const ARRIVAL: Duration = Duration::from_secs(10);

/// The overlap asked for: long enough for one test event to arrive inside it, short enough to
/// wait out.
const OVERLAP_SECS: u64 = 3;

/// Registered with secret S1 and rotated to S2 with a 3 s overlap: a receiver holding
/// [S1, S2] verifies the next event with both (two signatures in `webhook-signature`); once
/// the overlap has passed, the next one with S2 alone.
async fn rotation_signs_with_both_secrets_during_the_overlap(backend: Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let app = TestApp::spawn(
        backend,
        &[
            ("WEBHOOK_SECRET_KEY", SEALING_KEY),
            ("WEBHOOK_POLL_MS", "50"),
        ],
    )
    .await;
    let api = Api::anonymous(&app);
    let created = api.create(&receiver.url(), Some("acme")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let first = created["secret"].as_str().unwrap().to_owned();
    receiver.set_secrets(&[&first]).await;
    let (status, _) = api
        .rest("POST", &format!("/webhooks/{id}/test"), None)
        .await;
    assert_eq!(status, 202);
    let seen = receiver.wait_for(1, ARRIVAL).await;
    assert_eq!(seen[0].verified_with, [0], "{:?}", seen[0].verify_errors);

    let (status, rotated) = api
        .rest(
            "POST",
            &format!("/webhooks/{id}/rotate-secret"),
            Some(json!({ "overlap_secs": OVERLAP_SECS })),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    receiver.set_secrets(&[&first, &second]).await;
    let (status, _) = api
        .rest("POST", &format!("/webhooks/{id}/test"), None)
        .await;
    assert_eq!(status, 202);
    let seen = receiver.wait_for(2, ARRIVAL).await;
    let during = &seen[1];
    assert!(
        secs_from_now(&rotated["previous_secret_expires_at"]) > 0.0,
        "the event must arrive inside the overlap for this test to judge it"
    );
    assert_eq!(during.verified_with, [0, 1], "{:?}", during.verify_errors);
    assert_eq!(
        during.header("webhook-signature").split(' ').count(),
        2,
        "{}",
        during.header("webhook-signature")
    );

    // Past the overlap: a wall-clock wait, since the overlap's end is a time in the database.
    let left = secs_from_now(&rotated["previous_secret_expires_at"]);
    tokio::time::sleep(Duration::from_secs_f64(left.max(0.0) + 0.5)).await;
    let (status, _) = api
        .rest("POST", &format!("/webhooks/{id}/test"), None)
        .await;
    assert_eq!(status, 202);
    let seen = receiver.wait_for(3, ARRIVAL).await;
    let after = &seen[2];
    assert_eq!(after.verified_with, [1], "{:?}", after.verify_errors);
    assert_eq!(
        after.header("webhook-signature").split(' ').count(),
        1,
        "{}",
        after.header("webhook-signature")
    );
    let events: Vec<&str> = seen
        .iter()
        .map(|d| d.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["webhook.test"; 3]);
    let ids: std::collections::BTreeSet<&str> =
        seen.iter().map(|d| d.header("webhook-id")).collect();
    assert_eq!(ids.len(), 3, "three events, three webhook-ids");
}
both_backends!(
    rotation,
    rotation_signs_with_both_secrets_during_the_overlap
);

/// With `FETCH_ALLOW_PRIVATE_NETWORKS=false`, a loopback, private, link-local or mapped
/// address, as a literal or as a name that resolves to one, is refused at registration with
/// `WEBHOOK_URL_REFUSED` and a reason; a name resolving to a public address is taken (no
/// worker runs, so nothing is sent to it).
async fn private_addresses_are_refused_at_registration(backend: Backend) {
    let app = TestApp::spawn_api(
        backend,
        &[
            ("WEBHOOK_SECRET_KEY", SEALING_KEY),
            ("FETCH_ALLOW_PRIVATE_NETWORKS", "false"),
            (
                "FETCH_RESOLVE",
                "hooks.example=127.0.0.1:0,intranet.example=10.0.0.7:0,public.example=93.184.215.14:0",
            ),
        ],
    )
    .await;
    let api = Api::anonymous(&app);
    let cases = [
        (
            "http://127.0.0.1:1/hook",
            "127.0.0.1 is not a public address",
        ),
        ("http://[::1]/", "::1 is not a public address"),
        ("http://10.1.2.3/hook", "10.1.2.3 is not a public address"),
        (
            "http://169.254.169.254/latest/meta-data",
            "169.254.169.254 is not a public address",
        ),
        ("http://[::ffff:127.0.0.1]/", "is not a public address"),
        ("http://0.0.0.0/", "0.0.0.0 is not a public address"),
        (
            "http://hooks.example:8080/hook",
            "hooks.example resolves to a non-public address",
        ),
        (
            "http://intranet.example/hook",
            "intranet.example resolves to a non-public address",
        ),
        (
            "https://app.localhost/hook",
            "app.localhost resolves to a non-public address",
        ),
    ];
    let create =
        "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { secret } }";
    for (url, why) in cases {
        let answer = api
            .rest(
                "POST",
                "/webhooks",
                Some(json!({"url": url, "client_id": "acme"})),
            )
            .await;
        assert_eq!(
            rest_code(&answer, 400),
            "WEBHOOK_URL_REFUSED",
            "{url}: {}",
            answer.1
        );
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(why) && message.contains("FETCH_ALLOW_PRIVATE_NETWORKS"),
            "{url}: {message:?} should say {why:?} and how to allow it"
        );
        let body = api
            .gql(create, json!({"input": {"url": url, "clientId": "acme"}}))
            .await;
        let (code, message) = gql_error(&body);
        assert_eq!(code, "WEBHOOK_URL_REFUSED", "{url}: {message}");
        assert!(message.contains(why), "{url}: {message:?}");
    }
    let answer = api
        .rest(
            "POST",
            "/webhooks",
            Some(json!({"url": "http://nowhere.invalid/", "client_id": "acme"})),
        )
        .await;
    assert_eq!(
        rest_code(&answer, 400),
        "WEBHOOK_URL_REFUSED",
        "a name that does not resolve"
    );
    let (_, listed) = api.rest("GET", "/webhooks", None).await;
    assert_eq!(listed["webhooks"], json!([]), "nothing refused was kept");

    let taken = api
        .create("https://public.example/hook", Some("acme"))
        .await;
    assert_eq!(
        taken["url"], "https://public.example/hook",
        "the guard is not a blanket refusal"
    );
}
both_backends!(
    private_addresses,
    private_addresses_are_refused_at_registration
);

/// A delivery as the API shows it agrees with its own attempt log at every instant: while
/// sixty attempts land (thirty test events, each failing once and then delivered), every
/// read of the deliveries shows as many attempts in `attempt_log` as in `attempts`, and the
/// last one's status as `last_status_code`. The log used to be read in a second statement,
/// so an attempt recorded between the two showed in the log of a delivery still `pending`
/// with `attempts: 0`.
async fn the_deliveries_view_agrees_with_itself(backend: Backend) {
    const EVENTS: usize = 30;
    let Some(receiver) = Receiver::start(&[], &[500; EVENTS]).await else {
        return;
    };
    let app = TestApp::spawn(
        backend,
        &[
            ("WEBHOOK_SECRET_KEY", SEALING_KEY),
            ("WEBHOOK_POLL_MS", "10"),
            ("WEBHOOK_RETRY_BASE_MS", "10"),
        ],
    )
    .await;
    let api = Api::anonymous(&app);
    let id = api.create(&receiver.url(), Some("acme")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let test = format!("/webhooks/{id}/test");
    let reads = async {
        let path = format!("/webhooks/{id}/deliveries?per_page=100");
        let mut reads = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, page) = api.rest("GET", &path, None).await;
            assert_eq!(status, 200, "{page}");
            reads += 1;
            let deliveries = page["deliveries"].as_array().unwrap();
            for d in deliveries {
                let log = d["attempt_log"].as_array().unwrap();
                assert_eq!(
                    Some(log.len() as i64),
                    d["attempts"].as_i64(),
                    "read {reads}: the log and the count disagree: {d}"
                );
                let last = log.last().map_or(&json!(null), |a| &a["status_code"]);
                assert_eq!(last, &d["last_status_code"], "read {reads}: {d}");
            }
            let delivered = deliveries
                .iter()
                .filter(|d| d["status"] == "delivered")
                .count();
            if delivered == EVENTS {
                return reads;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{delivered} of {EVENTS} delivered"
            );
        }
    };
    let sends = async {
        for _ in 0..EVENTS {
            let (status, _) = api.rest("POST", &test, None).await;
            assert_eq!(status, 202);
        }
    };
    let (reads, ()) = tokio::join!(reads, sends);
    assert!(reads > 1, "the reads must overlap the attempts");
    assert_eq!(
        receiver.wait_for(2 * EVENTS, ARRIVAL).await.len(),
        2 * EVENTS
    );
}
both_backends!(consistent_view, the_deliveries_view_agrees_with_itself);
