//! `jobProgress` over WebSocket, with a real client, in both subprotocols and both event modes.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{
    Backend, ChildGuard, Protocol, TestApp, Ws, both_backends, postgres_url, ws_connect,
    ws_subscribe,
};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub(crate) const SUBSCRIPTION: &str = "subscription($id: ID!) { jobProgress(jobId: $id) {
    jobId status total completed failed progress results { domain status faviconUrl errorCode } } }";

/// What a subscription delivered before it ended.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pub events: Vec<Value>,
    pub errors: Vec<Value>,
    pub completed: bool,
}

/// Subscribes to `jobProgress` and reads until the server completes the operation.
/// `ws` is initialised in `protocol` (`TestApp::ws`, `TestApp::ws_with`).
pub(crate) async fn watch(ws: Ws, protocol: Protocol, job_id: &str) -> Delivery {
    watch_query(ws, protocol, SUBSCRIPTION, json!({"id": job_id})).await
}

/// Runs subscription `query` with `variables` and reads until the server completes it.
pub(crate) async fn watch_query(
    mut ws: Ws,
    protocol: Protocol,
    query: &str,
    variables: Value,
) -> Delivery {
    ws_subscribe(&mut ws, protocol, "1", query, variables).await;
    let mut delivery = Delivery::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the subscription ends within a minute")
            .expect("the server keeps the socket open until completion")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        match frame["type"].as_str().unwrap() {
            "ka" | "ping" | "pong" => {}
            "next" | "data" => {
                let payload = &frame["payload"];
                if let Some(errors) = payload["errors"].as_array() {
                    delivery.errors.extend(errors.iter().cloned());
                }
                if !payload["data"].is_null() {
                    delivery.events.push(payload["data"]["jobProgress"].clone());
                }
            }
            "error" => match &frame["payload"] {
                Value::Array(errors) => delivery.errors.extend(errors.iter().cloned()),
                other => delivery.errors.push(other.clone()),
            },
            "complete" => {
                delivery.completed = true;
                break;
            }
            other => panic!("unexpected frame {other}: {frame}"),
        }
    }
    let _ = ws.close(None).await;
    delivery
}

/// `count` slow sites (each home page takes `delay`), all with an icon.
pub(crate) async fn slow_world(count: usize, delay: Duration) -> (FakeInternet, Vec<String>) {
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..count {
        let host = format!("live{i}.test");
        sites.slow_icon_site(&host, delay);
        domains.push(host);
    }
    (FakeInternet::start(sites).await, domains)
}

/// Checks a delivery against the job's final state in the database: a snapshot first,
/// counts that never go back, every domain's result carried by some event, and a last event
/// equal to the database's final counts.
async fn check_delivery(app: &TestApp, job_id: &str, domains: &[String], delivery: &Delivery) {
    assert!(delivery.errors.is_empty(), "{:?}", delivery.errors);
    assert!(
        delivery.completed,
        "the stream completes after the final event"
    );
    let events = &delivery.events;
    assert!(
        events.len() >= 2,
        "snapshot plus at least one live event: {events:?}"
    );
    assert_eq!(
        events[0]["results"],
        json!([]),
        "the first event is the snapshot"
    );
    let mut done = -1;
    let mut carried = HashSet::new();
    for event in events {
        assert_eq!(event["jobId"], job_id);
        let now = event["completed"].as_i64().unwrap() + event["failed"].as_i64().unwrap();
        assert!(now >= done, "counts never go back: {events:?}");
        done = now;
        for result in event["results"].as_array().unwrap() {
            carried.insert(result["domain"].as_str().unwrap().to_owned());
            assert_eq!(result["status"], "SUCCESS");
            assert!(result["faviconUrl"].as_str().unwrap().ends_with("/i.png"));
        }
    }
    let expected: HashSet<String> = domains.iter().cloned().collect();
    assert_eq!(
        carried, expected,
        "every finished domain reached the subscriber"
    );
    let (_, job) = app.get_json(&format!("/jobs/{job_id}")).await;
    let last = events.last().unwrap();
    assert_eq!(last["status"], "COMPLETED");
    assert_eq!(last["completed"], job["completed"]);
    assert_eq!(last["failed"], job["failed"]);
    assert_eq!(last["total"], job["total"]);
    assert_eq!(last["progress"], 100);
}

async fn both_protocols_see_snapshot_events_and_completion(backend: Backend) {
    let (internet, domains) = slow_world(24, Duration::from_millis(150)).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn(
        backend,
        &[("FETCH_RESOLVE", &resolve), ("WORKER_CONCURRENCY", "4")],
    )
    .await;
    let job_id = app.create_job("live", &domains).await;
    let (modern, legacy) = tokio::join!(
        watch(app.ws().await, Protocol::TransportWs, &job_id),
        // The legacy protocol, through the upgrade on /graphql itself.
        watch(
            app.ws_with("/graphql", Protocol::LegacyWs).await,
            Protocol::LegacyWs,
            &job_id
        ),
    );
    check_delivery(&app, &job_id, &domains, &modern).await;
    check_delivery(&app, &job_id, &domains, &legacy).await;
    assert!(
        modern.events.len() >= 3,
        "progress arrives in steps: {:?}",
        modern.events
    );

    // Subscribing after completion: the final state at once, then completion.
    let late = watch(app.ws().await, Protocol::TransportWs, &job_id).await;
    assert!(late.completed && late.errors.is_empty(), "{late:?}");
    assert_eq!(late.events.len(), 1, "{late:?}");
    assert_eq!(late.events[0]["status"], "COMPLETED");
    assert_eq!(late.events[0]["completed"], 24);
    app.stop().await;
}
both_backends!(
    live_progress,
    both_protocols_see_snapshot_events_and_completion
);

/// A subscription lives as long as its job, however short the socket's timers: the init
/// deadline, many pings and several idle timeouts all pass while the job runs, on both
/// protocols, and each subscriber still ends with the final counts and every domain named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_outlive_every_socket_timer() {
    let (internet, domains) = slow_world(40, Duration::from_millis(250)).await;
    let resolve = internet.resolve(&[]);
    // The first ping after the init deadline, as with the defaults (10 s, then 15 s): the
    // deadline must not depend on anything else waking the connection first.
    let (init, ping, idle) = (300, 700, 1_600);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("FETCH_RESOLVE", &resolve),
            ("WORKER_CONCURRENCY", "2"),
            ("WS_INIT_TIMEOUT_MS", &init.to_string()),
            ("WS_PING_INTERVAL_MS", &ping.to_string()),
            ("WS_IDLE_TIMEOUT_MS", &idle.to_string()),
        ],
    )
    .await;
    let job_id = app.create_job("long", &domains).await;
    let started = tokio::time::Instant::now();
    let (modern, legacy) = tokio::join!(
        watch(app.ws().await, Protocol::TransportWs, &job_id),
        watch(
            app.ws_with("/graphql", Protocol::LegacyWs).await,
            Protocol::LegacyWs,
            &job_id
        ),
    );
    let lived = started.elapsed();
    assert!(
        lived > Duration::from_millis(2 * idle),
        "the job must outlive every timer for this test to mean anything: {lived:?}"
    );
    check_delivery(&app, &job_id, &domains, &modern).await;
    check_delivery(&app, &job_id, &domains, &legacy).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids_get_errors_not_hangs() {
    let app = TestApp::api_only(&[]).await;
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let unknown = uuid::Uuid::new_v4().to_string();
        let ws = app.ws_with("/graphql/ws", protocol).await;
        let delivery = watch(ws, protocol, &unknown).await;
        assert!(delivery.events.is_empty(), "{delivery:?}");
        assert_eq!(
            delivery.errors[0]["extensions"]["code"], "NOT_FOUND",
            "{delivery:?}"
        );
        let ws = app.ws_with("/graphql/ws", protocol).await;
        let delivery = watch(ws, protocol, "not-an-id").await;
        assert_eq!(
            delivery.errors[0]["extensions"]["code"], "INVALID_ID",
            "{delivery:?}"
        );
    }
    app.stop().await;
}

mod redis;

/// Rows of the job finished so far, as the API reports them.
async fn rows_done(app: &TestApp, job_id: &str) -> i64 {
    let (_, job) = app.get_json(&format!("/jobs/{job_id}")).await;
    job["completed"].as_i64().unwrap_or(0) + job["failed"].as_i64().unwrap_or(0)
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after 20 s.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        // Wall-clock: what is waited for happens on real sockets (the fake internet, the
        // app's WebSockets, other processes).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const RESUMING: &str =
    "subscription($id: ID!, $after: Int) { jobProgress(jobId: $id, after: $after) {
    status total completed failed cursor results { domain status } } }";

/// Reads `jobProgress` events on an initialised socket until the operation completes or
/// `stop` says enough; returns them.
pub(crate) async fn read_events(
    ws: &mut Ws,
    mut stop: impl FnMut(&[Value]) -> bool,
) -> (Vec<Value>, bool) {
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("an event within a minute")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        match frame["type"].as_str().unwrap() {
            "next" => {
                assert!(frame["payload"]["errors"].is_null(), "{frame}");
                events.push(frame["payload"]["data"]["jobProgress"].clone());
                if stop(&events) {
                    return (events, false);
                }
            }
            "complete" => return (events, true),
            "ping" | "pong" | "ka" => {}
            other => panic!("unexpected frame {other}: {frame}"),
        }
    }
}

/// A client that leaves mid-job and comes back with the cursor of the last event it read
/// hears of every domain: those that finished while it was away first, then the rest live.
/// `after: 0` on a finished job names every domain; a negative cursor is refused.
async fn resuming_with_the_cursor_misses_no_domain(backend: Backend) {
    let (internet, domains) = slow_world(30, Duration::from_millis(150)).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn(
        backend,
        &[("FETCH_RESOLVE", &resolve), ("WORKER_CONCURRENCY", "3")],
    )
    .await;
    let job_id = app.create_job("resume", &domains).await;
    let mut heard: HashSet<String> = HashSet::new();
    let name = |events: &[Value], heard: &mut HashSet<String>| {
        for event in events {
            for result in event["results"].as_array().unwrap() {
                heard.insert(result["domain"].as_str().unwrap().to_owned());
            }
        }
    };

    let mut ws = app.ws().await;
    ws_subscribe(
        &mut ws,
        Protocol::TransportWs,
        "1",
        RESUMING,
        json!({"id": job_id}),
    )
    .await;
    // Leaves once some domains were named and the job is still running.
    let (events, completed) = read_events(&mut ws, |events| {
        events
            .iter()
            .any(|e| !e["results"].as_array().unwrap().is_empty())
    })
    .await;
    assert!(!completed, "the job must still run when the client leaves");
    let cursor = events.last().unwrap()["cursor"].as_i64().unwrap();
    assert!(cursor > 0, "{events:?}");
    name(&events, &mut heard);
    drop(ws);
    // Away while more domains finish.
    wait_until("more domains finish while the client is away", || async {
        rows_done(&app, &job_id).await >= cursor + 5
    })
    .await;

    let mut ws = app.ws().await;
    ws_subscribe(
        &mut ws,
        Protocol::TransportWs,
        "2",
        RESUMING,
        json!({"id": job_id, "after": cursor}),
    )
    .await;
    let (events, completed) = read_events(&mut ws, |_| false).await;
    assert!(completed);
    let first: Vec<_> = events[0]["results"].as_array().unwrap().to_vec();
    assert!(
        first.len() >= 5,
        "the first event after resuming names what finished meanwhile: {:?}",
        events[0]
    );
    name(&events, &mut heard);
    let expected: HashSet<String> = domains.iter().cloned().collect();
    assert_eq!(heard, expected, "every domain was named");
    let last = events.last().unwrap();
    assert_eq!(last["status"], "COMPLETED");
    assert_eq!(last["cursor"], 30);

    // From the start, after the end: every domain, then completion.
    let mut ws = app.ws().await;
    ws_subscribe(
        &mut ws,
        Protocol::TransportWs,
        "3",
        RESUMING,
        json!({"id": job_id, "after": 0}),
    )
    .await;
    let (events, completed) = read_events(&mut ws, |_| false).await;
    assert!(completed);
    let mut all = HashSet::new();
    name(&events, &mut all);
    assert_eq!(all, expected);

    // A cursor no event ever carried is refused with a reason.
    let mut ws = app.ws().await;
    ws_subscribe(
        &mut ws,
        Protocol::TransportWs,
        "4",
        RESUMING,
        json!({"id": job_id, "after": -1}),
    )
    .await;
    let frame: Value = loop {
        let Message::Text(text) = ws.next().await.unwrap().unwrap() else {
            continue;
        };
        break serde_json::from_str(&text).unwrap();
    };
    let said = frame.to_string();
    assert!(said.contains("after must be"), "{said}");
    app.stop().await;
}
both_backends!(resume, resuming_with_the_cursor_misses_no_domain);

/// The npm `graphql-ws` client, with retries, following a job while the network drops its
/// socket twice mid-job (a relay cuts the TCP connections; the server never says goodbye):
/// it reconnects, resumes with the cursor it keeps in its variables, and ends having heard of
/// every domain, with the final counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_ws_client_resumes_after_its_socket_is_cut() {
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js");
    let installed = std::path::Path::new(js)
        .join("node_modules/graphql-ws")
        .is_dir();
    if !crate::common::services::available(
        "node with tests/js installed (npm ci --prefix tests/js)",
        crate::common::services::on_path("node") && installed,
    ) {
        return;
    }
    let (internet, domains) = slow_world(60, Duration::from_millis(250)).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[("FETCH_RESOLVE", &resolve), ("WORKER_CONCURRENCY", "2")],
    )
    .await;
    let relay = crate::common::relay::Cable::start(&app.base).await;
    let job_id = app.create_job("npm", &domains).await;
    let url = relay.url("/graphql/ws").replace("http://", "ws://");
    let client = tokio::process::Command::new("node")
        .arg(format!("{js}/resume.mjs"))
        .arg(&url)
        .arg(&job_id)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for (cut, cut_at) in [10, 30].into_iter().enumerate() {
        // Each cut hits a connection: the client's first, then the one it came back on.
        wait_until(
            "domains finish, the client connected, before the cut",
            || async { relay.websockets() > cut && rows_done(&app, &job_id).await >= cut_at },
        )
        .await;
        relay.cut(Duration::ZERO);
    }
    assert!(
        rows_done(&app, &job_id).await < 60,
        "the job must still run after the cuts for this test to mean anything"
    );
    let output = tokio::time::timeout(Duration::from_secs(90), client.wait_with_output())
        .await
        .expect("the client finishes")
        .unwrap();
    let said: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stdout)));
    assert!(output.status.success(), "{said}");
    assert!(said["errors"].as_array().unwrap().is_empty(), "{said}");
    assert!(
        said["closes"].as_i64().unwrap() >= 2 && relay.websockets() >= 3,
        "the socket was cut twice and the client came back: {said}, {} connections",
        relay.websockets()
    );
    let named: HashSet<String> = said["named"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    let expected: HashSet<String> = domains.iter().cloned().collect();
    assert_eq!(named, expected, "every domain was named: {said}");
    assert_eq!(said["last"]["status"], "COMPLETED", "{said}");
    assert_eq!(said["last"]["completed"], 60, "{said}");
    app.stop().await;
}
