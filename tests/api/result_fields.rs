//! One result, four views: the REST page, the GraphQL `Result`, the CSV download and the
//! `jobProgress` event all carry the same columns, so a column added to the model shows in
//! every one of them. The candidate list is the one documented difference: only the APIs
//! that nest (REST and GraphQL pages) carry it.
//!
//! One column has two shapes: the stored icon is `icon_url` (a URL of this service) in REST
//! and the CSV, and an object `icon { url sha256 mime width height bytes }` in GraphQL
//! (`Result` and `ProgressResult`); `icon.url` is the same value as `icon_url`.

use crate::fake::{FakeInternet, Route, Sites, png};
use crate::helpers::{Backend, TestApp, both_backends, parse_csv};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// What only the page views carry: the candidates, with the count of those left out.
const PAGE_ONLY: [&str; 2] = ["candidates", "candidates_dropped"];

/// GraphQL's `icon` object is the `icon_url` column.
const GRAPHQL_ICON: (&str, &str) = ("icon", "icon_url");
/// What GraphQL's `icon` is selected with.
const ICON_SELECTION: &str = "icon { url sha256 mime width height bytes }";

/// `faviconUrl` → `favicon_url`; `icon` → `icon_url`.
fn snake(name: &str) -> String {
    if name == GRAPHQL_ICON.0 {
        return GRAPHQL_ICON.1.to_owned();
    }
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The fields of a GraphQL object type, by introspection, in declaration order.
async fn graphql_fields(app: &TestApp, type_name: &str) -> Vec<String> {
    let body = app
        .graphql(
            "query($name: String!) { __type(name: $name) { fields { name } } }",
            json!({"name": type_name}),
        )
        .await;
    body["data"]["__type"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no type {type_name}: {body}"))
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

/// The first `jobProgress` event of `job_id` that carries a finished domain, with every
/// `ProgressResult` field selected.
async fn first_finished(app: &TestApp, job_id: &str, fields: &[String]) -> Value {
    let mut ws = app.ws().await;
    let query = format!(
        "subscription($id: ID!) {{ jobProgress(jobId: $id) {{ results {{ {} }} }} }}",
        fields
            .iter()
            .map(|f| if f == GRAPHQL_ICON.0 {
                ICON_SELECTION
            } else {
                f
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    let subscribe = json!({
        "id": "1",
        "type": "subscribe",
        "payload": {"query": query, "variables": {"id": job_id}},
    });
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("an event with a finished domain within 30 s")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        match frame["type"].as_str() {
            Some("next") => {
                let payload = &frame["payload"];
                assert!(payload["errors"].is_null(), "{payload}");
                let results = &payload["data"]["jobProgress"]["results"];
                if let Some(first) = results.as_array().and_then(|r| r.first()) {
                    return first.clone();
                }
            }
            Some("complete") => panic!("the stream ended before carrying a finished domain"),
            _ => {}
        }
    }
}

async fn every_view_carries_every_column(backend: Backend) {
    let mut sites = Sites::default();
    // Slow enough that the subscription is open before the domain finishes.
    let mut page = Route::html(r#"<link rel="icon" href="/i.png">"#);
    page.delay = Duration::from_millis(1500);
    sites
        .route("view.test", "/", page)
        .file("view.test", "/i.png", "image/png", &png(32, 32));
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &resolve)]).await;

    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "views", "domains": ["view.test"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let job_id = created["job_id"].as_str().unwrap().to_owned();

    let progress_fields = graphql_fields(&app, "ProgressResult").await;
    let event = first_finished(&app, &job_id, &progress_fields).await;
    app.wait_for_job(&job_id, Duration::from_secs(30)).await;

    // REST: the page's result object.
    let (status, page) = app.get_json(&format!("/jobs/{job_id}/results")).await;
    assert_eq!(status, 200, "{page}");
    let rest = page["results"][0].clone();
    let rest_fields = keys(&rest);

    // GraphQL: every field of `Result`, by introspection.
    let graphql: BTreeSet<String> = graphql_fields(&app, "Result")
        .await
        .iter()
        .map(|f| snake(f))
        .collect();

    // CSV: the header and the one row.
    let (header, records) = parse_csv(&app.download(&job_id).await);
    let row = &records[0];

    // The event: what the subscription delivered for the finished domain.
    let event_fields: BTreeSet<String> = keys(&event).iter().map(|f| snake(f)).collect();

    let columns: BTreeSet<String> = header.iter().cloned().collect();
    assert_eq!(header.len(), columns.len(), "no column twice: {header:?}");
    let mut paged = columns.clone();
    paged.extend(PAGE_ONLY.map(str::to_owned));
    assert_eq!(rest_fields, paged, "REST = the columns + the candidates");
    assert_eq!(
        graphql, paged,
        "GraphQL Result = the columns + the candidates"
    );
    assert_eq!(event_fields, columns, "a progress event = the columns");
    let introspected: BTreeSet<String> = progress_fields.iter().map(|f| snake(f)).collect();
    assert_eq!(
        introspected, columns,
        "GraphQL ProgressResult = the columns"
    );

    // And the same values: the CSV cell of each column is the REST value as text, and the
    // event (recorded as the row was written) says what the page says.
    for (name, cell) in header.iter().zip(row) {
        let value = &rest[name.as_str()];
        let text = match value {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if name == "fetched_at" {
            let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
            assert_eq!(parse(&text), parse(cell), "{name}");
            let from_event = event["fetchedAt"].as_str().unwrap();
            assert_eq!(parse(&text), parse(from_event), "{name}");
        } else {
            assert_eq!(&text, cell, "{name}");
            let from_event = match &event[progress_name(name, &progress_fields)] {
                icon if name == GRAPHQL_ICON.1 => &icon["url"],
                other => other,
            };
            match from_event {
                // GraphQL spells enum values in capitals.
                Value::String(s) if name == "status" => assert_eq!(s.to_lowercase(), text),
                other => assert_eq!(other, value, "{name}"),
            }
        }
    }
    assert_eq!(rest["status"], "success", "{rest}");
    assert_eq!(rest["icon_url"], "/icons/view.test", "{rest}");
    assert_eq!(event["icon"]["bytes"], png(32, 32).len(), "{event}");
    assert_eq!(event["icon"]["width"], 32, "{event}");
    app.stop().await;
}
both_backends!(four_views, every_view_carries_every_column);

/// The GraphQL spelling of a column.
fn progress_name<'a>(column: &str, fields: &'a [String]) -> &'a str {
    fields
        .iter()
        .find(|f| snake(f) == column)
        .unwrap_or_else(|| panic!("no GraphQL field for {column}"))
}
