//! The API's edge under random input: REST query parameters, GraphQL arguments and WebSocket
//! frames, thrown at one running app (SQLite, no workers) by proptest for a bounded number of
//! cases (`FUZZ_CASES`, 256 by default, a few seconds; raise it for a longer hunt).
//!
//! Nothing may panic: a panic hook counts every panic in this process (its own binary, so no
//! other test's failures count), every answer must be a 2xx or 4xx, never a 5xx or a
//! dropped connection, and the app must still answer `/healthz` after every case.

#![allow(clippy::unwrap_used)]
#![allow(unused_macros)]

#[path = "../common/mod.rs"]
#[allow(dead_code, reason = "the fuzz tests use a part of the shared helpers")]
mod common;
#[allow(
    unused_imports,
    reason = "helpers.rs reaches them as crate::…, not all from this binary"
)]
use common::{client, db, fake, services, tls};

#[path = "../api/helpers.rs"]
#[allow(
    dead_code,
    unused_imports,
    reason = "the fuzz tests use a part of the API tests' helpers"
)]
mod helpers;

use futures::{SinkExt, StreamExt};
use helpers::{Backend, TestApp};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Panics anywhere in this process since the hook was set.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// One runtime and one app for every case: starting an app per case would spend the budget
/// on start-up.
struct World {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
    job: String,
    http: reqwest::Client,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (app, job) = runtime.block_on(async {
            let app = TestApp::spawn_api(Backend::Sqlite, &[]).await;
            let job = app.create_job("fuzz", &["a.test", "b.test"]).await;
            (app, job)
        });
        World {
            runtime,
            app,
            job,
            http: reqwest::Client::new(),
        }
    })
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

/// Any text a client might put in a parameter: digits (huge, negative), words, and bytes
/// that need escaping.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[a-zA-Z_]{0,12}",
        ".{0,40}",
        Just("9223372036854775807".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("99999999999999999999999".to_owned()),
    ]
}

/// Any JSON value a GraphQL variable might be given.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,30}".prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        Just(json!([1, "x", null])),
        Just(json!({"a": 1})),
    ]
}

/// The answer must be ours: not a server error, and not a dropped connection.
fn check_answer(what: &str, status: reqwest::StatusCode) {
    assert!(
        !status.is_server_error(),
        "{what}: answered {status}, a server error"
    );
}

/// No panic so far, and the app still answers.
fn no_panics(what: &str) {
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic after {what}");
    let w = world();
    let health = w.runtime.block_on(async {
        w.http
            .get(format!("{}/healthz", w.app.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map(|r| r.status())
    });
    assert!(
        health.as_ref().is_ok_and(|s| s.is_success()),
        "the app stopped answering after {what}: {health:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Every query parameter of the results page, as any text.
    #[test]
    fn rest_query_parameters(
        names in proptest::collection::vec(
            prop_oneof![
                Just("page"), Just("per_page"), Just("first"), Just("after"), Just("status"),
                Just("error_code"), Just("domain"), Just("size"), Just("format"),
                Just("fallback"), Just("expires"), Just("sig"),
            ],
            0..5,
        ),
        values in proptest::collection::vec(text(), 5),
        path in prop_oneof![Just("results"), Just("download"), Just("icon"), Just("job")],
    ) {
        let w = world();
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(names.iter().zip(values.iter()))
            .finish();
        let url = match path {
            "results" => format!("{}/jobs/{}/results?{query}", w.app.base, w.job),
            "download" => format!("{}/jobs/{}/download?{query}", w.app.base, w.job),
            "icon" => format!("{}/icons/a.test?{query}", w.app.base),
            _ => format!("{}/jobs/{}?{query}", w.app.base, w.job),
        };
        let status = w.runtime.block_on(async {
            w.http.get(&url).timeout(Duration::from_secs(30)).send().await.map(|r| r.status())
        });
        let status = status.unwrap_or_else(|e| panic!("{url}: no answer: {e}"));
        check_answer(&url, status);
        no_panics(&url);
    }

    /// The arguments of the paged and filtered GraphQL fields, as any JSON.
    #[test]
    fn graphql_arguments(
        field in 0..4usize,
        a in value(),
        b in value(),
        c in value(),
    ) {
        let w = world();
        let queries = [
            "query($a: Int!, $b: Int!) { jobs(clientId: \"fuzz\", page: $a, perPage: $b) { total } }",
            "query($j: ID!, $a: Int!, $b: Int!, $c: String) { results(jobId: $j, page: $a, perPage: $b, domain: $c) { total } }",
            "query($j: ID!, $a: Int!, $c: String) { resultsConnection(jobId: $j, first: $a, after: $c) { edges { cursor } } }",
            "query($a: ID!) { job(id: $a) { id } }",
        ];
        let body = json!({
            "query": queries[field],
            "variables": {"j": w.job, "a": a, "b": b, "c": c},
        });
        let status = w.runtime.block_on(async {
            w.http
                .post(format!("{}/graphql", w.app.base))
                .json(&body)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map(|r| r.status())
        });
        let status = status.unwrap_or_else(|e| panic!("{body}: no answer: {e}"));
        check_answer(&body.to_string(), status);
        no_panics(&body.to_string());
    }

    /// Frames on an initialised socket: known message types with any ids and payloads, and
    /// text that is not a message at all.
    #[test]
    fn websocket_frames(
        frames in proptest::collection::vec(
            prop_oneof![
                (
                    prop_oneof![
                        Just("subscribe"), Just("start"), Just("complete"), Just("stop"),
                        Just("ping"), Just("pong"), Just("connection_init"), Just("other"),
                    ],
                    value(),
                    value(),
                ).prop_map(|(kind, id, payload)| json!({"type": kind, "id": id, "payload": payload}).to_string()),
                (value(), value()).prop_map(|(id, after)| json!({
                    "type": "subscribe", "id": id,
                    "payload": {"query": "subscription($j: ID!, $a: Int) { jobProgress(jobId: $j, after: $a) { cursor } }",
                                "variables": {"j": "not-a-job", "a": after}},
                }).to_string()),
                ".{0,60}",
            ],
            1..8,
        ),
    ) {
        let w = world();
        w.runtime.block_on(async {
            let mut ws = w.app.ws().await;
            for frame in &frames {
                if ws.send(Message::Text(frame.clone().into())).await.is_err() {
                    break;
                }
            }
            // Reads what comes back until the server is quiet or closes: a close with a
            // protocol code is an answer; the process must be unharmed.
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout(Duration::from_millis(200), ws.next()).await
            {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        });
        no_panics(&format!("{frames:?}"));
    }
}
