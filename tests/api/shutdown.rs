//! Graceful shutdown of `serve`, with the real binary: on SIGTERM it closes open WebSockets
//! cleanly (1001), hands back the rows it was fetching, and exits 0 within the grace period.

use crate::fake::{FakeInternet, Route, Sites, png};
use crate::helpers::ChildGuard;
use futures::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_cleanly_on_sigterm() {
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..6 {
        let host = format!("slow{i}.test");
        sites
            .route(
                &host,
                "/",
                Route::html("<link rel=icon href=/i.png>").with_delay(Duration::from_secs(20)),
            )
            .file(&host, "/i.png", "image/png", &png(16, 16));
        domains.push(host);
    }
    let internet = FakeInternet::start(sites).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("serve.db").display()
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .arg("serve")
        .env("DATABASE_URL", &db_url)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("FETCH_RESOLVE", internet.resolve(&[]))
        .env("FETCH_ALLOW_PRIVATE_NETWORKS", "true")
        .env("FETCH_TIMEOUT_SECS", "30")
        .env("WORKER_CONCURRENCY", "4")
        .env("SHUTDOWN_GRACE_SECS", "1")
        // The app's start-up line says which port it was given.
        .env("RUST_LOG", "warn,favicon_finder::app=info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = crate::helpers::listening_addr(child.stderr.take().unwrap());
    let mut child = ChildGuard(child);
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created: Value = http
        .post(format!("{base}/jobs"))
        .json(&json!({"client_id": "stop", "domains": domains}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = created["job_id"].as_str().unwrap().to_owned();

    // A live subscription, then wait until the worker holds rows.
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "connection_init"}).to_string().into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text(
        json!({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { jobProgress(jobId: $id) { status completed } }",
            "variables": {"id": job_id}}})
        .to_string()
        .into(),
    ))
    .await
    .unwrap();
    let store = favicon_finder::store::Store::connect(&db_url, 1)
        .await
        .unwrap();
    let leased = || async {
        let row = store
            .connection()
            .query_one_raw(Statement::from_string(
                store.connection().get_database_backend(),
                "SELECT COUNT(*) AS n FROM result WHERE lease_owner IS NOT NULL".to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    while leased().await < 4 {
        assert!(Instant::now() < deadline, "the worker never claimed rows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stopped_at = Instant::now();
    let pid = child.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

    // The WebSocket ends with a close frame saying "going away", not a cut connection.
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));

    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "serve did not exit in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    // Grace of 1 s for the in-flight fetches (20 s each), then the rows are handed back.
    assert!(
        stopped_at.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopped_at.elapsed()
    );
    assert_eq!(
        leased().await,
        0,
        "unfinished rows were released, not left leased"
    );
    let tries: i64 = store
        .connection()
        .query_one_raw(Statement::from_string(
            store.connection().get_database_backend(),
            "SELECT COALESCE(MAX(tries), 0) AS n FROM result".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(tries, 0, "a released try does not count");
    // New connections are refused once it is gone.
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
}
