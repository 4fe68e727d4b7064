//! `jobProgress` fan-out: one shared feed per job, whatever the number of subscribers.
//! Each event is rendered once per distinct selection, and the database is re-read once per
//! silence of the job, not once per subscriber. (Every subscriber of 200 hearing the end is
//! checked here too.)

use crate::helpers::{Backend, Protocol, TestApp, ws_subscribe};
use crate::subscriptions::{slow_world, watch, watch_query};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_subscribers_share_one_rendering_of_each_event() {
    let (internet, domains) = slow_world(40, Duration::from_millis(50)).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("FETCH_RESOLVE", &resolve),
            ("WORKER_CONCURRENCY", "8"),
            // All 200 come from 127.0.0.1.
            ("WS_MAX_SUBSCRIPTIONS_PER_IP", "200"),
        ],
    )
    .await;
    let job_id = app.create_job("fan", &domains).await;
    let watchers =
        (0..200).map(|_| async { watch(app.ws().await, Protocol::TransportWs, &job_id).await });
    let deliveries = futures::future::join_all(watchers).await;
    let (_, job) = app.get_json(&format!("/jobs/{job_id}")).await;
    let mut most_events = 0;
    for delivery in &deliveries {
        assert!(
            delivery.completed && delivery.errors.is_empty(),
            "{delivery:?}"
        );
        let last = delivery.events.last().unwrap();
        assert_eq!(last["status"], "COMPLETED");
        assert_eq!(last["completed"], job["completed"]);
        assert_eq!(last["completed"], 40);
        most_events = most_events.max(delivery.events.len());
    }
    // Each subscriber's snapshot is its own; every later event is rendered once for all 200
    // (with a rendering per subscriber this would be about 200 × the events).
    let renders = app.metric("favicon_finder_progress_renders_total").await as usize;
    assert!(
        renders <= 200 + most_events,
        "{renders} renderings for 200 subscribers of at most {most_events} events"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_job_is_re_read_once_per_silence_for_all_its_subscribers() {
    // One domain that takes 7 s: two silences of 3 s before it finishes.
    let (internet, domains) = slow_world(1, Duration::from_secs(7)).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[("FETCH_RESOLVE", &resolve), ("FETCH_TIMEOUT_SECS", "20")],
    )
    .await;
    let job_id = app.create_job("fan", &domains).await;
    let started = tokio::time::Instant::now();
    let watchers =
        (0..20).map(|_| async { watch(app.ws().await, Protocol::TransportWs, &job_id).await });
    let deliveries = futures::future::join_all(watchers).await;
    let elapsed = started.elapsed();
    for delivery in &deliveries {
        assert!(delivery.completed, "{delivery:?}");
        assert_eq!(delivery.events.last().unwrap()["status"], "COMPLETED");
    }
    let rereads = app.metric("favicon_finder_progress_rereads_total").await;
    let silences = (elapsed.as_secs_f64() / 3.0).floor();
    assert!(
        rereads >= 1.0 && rereads <= silences,
        "{rereads} re-reads over {elapsed:?} for 20 subscribers: one per silence of the job"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_with_different_selections_each_get_their_own_fields() {
    let (internet, domains) = slow_world(6, Duration::from_millis(100)).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[("FETCH_RESOLVE", &resolve), ("WORKER_CONCURRENCY", "2")],
    )
    .await;
    let job_id = app.create_job("fan", &domains).await;
    let full = {
        let (ws, job_id) = (app.ws().await, job_id.clone());
        tokio::spawn(async move { watch(ws, Protocol::TransportWs, &job_id).await })
    };
    // Aliases, a fragment, __typename and a directive on a variable, on one socket.
    let mut ws = app.ws().await;
    let narrow = "subscription($id: ID!, $withResults: Boolean!) { p: jobProgress(jobId: $id) {
        __typename done: completed ...F results @include(if: $withResults) { d: domain } } }
        fragment F on JobProgress { status }";
    ws_subscribe(
        &mut ws,
        Protocol::TransportWs,
        "a",
        narrow,
        json!({"id": job_id, "withResults": true}),
    )
    .await;
    ws_subscribe(
        &mut ws,
        Protocol::TransportWs,
        "b",
        narrow,
        json!({"id": job_id, "withResults": false}),
    )
    .await;
    let mut seen: std::collections::HashMap<String, Vec<Value>> = Default::default();
    let mut open = 2;
    while open > 0 {
        let message = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("events within a minute")
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        let id = frame["id"].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str().unwrap() {
            "next" => seen.entry(id).or_default().push(frame["payload"].clone()),
            "complete" => open -= 1,
            "ping" | "pong" => {}
            other => panic!("unexpected {other}: {frame}"),
        }
    }
    let full = full.await.unwrap();
    assert!(full.completed && full.errors.is_empty(), "{full:?}");
    assert!(full.events.last().unwrap()["jobId"].is_string());
    for (id, with_results) in [("a", true), ("b", false)] {
        let mut domains_seen = 0;
        for payload in &seen[id] {
            let p = &payload["data"]["p"];
            // (serde_json's map sorts the keys.)
            let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
            let expected: &[&str] = if with_results {
                &["__typename", "done", "results", "status"]
            } else {
                &["__typename", "done", "status"]
            };
            assert_eq!(keys, expected, "{id}: {payload}");
            assert_eq!(p["__typename"], "JobProgress");
            if with_results {
                for row in p["results"].as_array().unwrap() {
                    assert_eq!(row.as_object().unwrap().len(), 1, "{row}");
                    assert!(row["d"].as_str().unwrap().ends_with(".test"));
                    domains_seen += 1;
                }
            }
        }
        let last = &seen[id].last().unwrap()["data"]["p"];
        assert_eq!(last["status"], "COMPLETED", "{id}");
        assert_eq!(last["done"], 6, "{id}");
        if with_results {
            assert_eq!(domains_seen, 6, "every domain reached {id}");
        }
    }
    app.stop().await;
}

/// The rendering is keyed on what decides it, the normalised selection: variables the
/// selection never reads (one extra each, as a client that stamps a request id sends), the
/// field's own arguments such as `after`, and where the selection sits in the text split
/// nothing. Sixty subscribers that differ only in those share each rendering (a variable a directive reads still splits it:
/// `subscribers_with_different_selections_each_get_their_own_fields`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_variables_do_not_split_the_rendering() {
    let (internet, domains) = slow_world(40, Duration::from_millis(50)).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[("FETCH_RESOLVE", &resolve), ("WORKER_CONCURRENCY", "8")],
    )
    .await;
    let job_id = app.create_job("fan", &domains).await;
    let query = "subscription($id: ID!, $after: Int, $full: Boolean!) {
        jobProgress(jobId: $id, after: $after) { status completed ...F
          results @include(if: $full) { domain } } }
        fragment F on JobProgress { failed }";
    let app_ref = &app;
    let watchers = (0..60).map(|i| {
        let job_id = job_id.clone();
        async move {
            let mut variables = json!({"id": job_id, "full": true});
            variables[format!("extra{i}")] = json!(i);
            if i % 2 == 0 {
                variables["after"] = json!(0);
            }
            // Laid out differently too: where the selection sits in the text changes nothing.
            let query = format!("{}{query}", " ".repeat(i % 3));
            watch_query(app_ref.ws().await, Protocol::TransportWs, &query, variables).await
        }
    });
    let deliveries = futures::future::join_all(watchers).await;
    let mut most_events = 0;
    for delivery in &deliveries {
        assert!(
            delivery.completed && delivery.errors.is_empty(),
            "{delivery:?}"
        );
        assert_eq!(delivery.events.last().unwrap()["status"], "COMPLETED");
        most_events = most_events.max(delivery.events.len());
    }
    let renders = app.metric("favicon_finder_progress_renders_total").await as usize;
    assert!(
        renders <= 60 + most_events,
        "{renders} renderings for 60 subscribers of at most {most_events} events that differ only in unused variables"
    );
    app.stop().await;
}
